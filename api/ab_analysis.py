"""A/B results: per-variant rates with confidence intervals, lift over control, SRM.

Pure functions over tables, so the notebook, a report job and the tests share them.
Inputs are plain DataFrames read from the event store: exposures (one row per
served response: ``request_id, experiment, variant, unit``) and events (``request_id,
type`` with type in impression, click, add_to_cart, purchase).

Rates are per exposed unit: a unit converts for an event type when any of its
exposed requests has that event. An exposure without a unit (a QA request forcing a
variant with ``?variant=`` and no ``user_id``/``session_id``; the store logs its unit
as NULL) is its own unit, named ``request:<request_id>``.

Intervals: Wilson score for a rate; Newcombe's hybrid score interval for a difference
of two independent rates; the sample-ratio mismatch check is Pearson's chi-square of
unit counts against the configured weights.

Examples
--------
>>> lo, hi = wilson_interval(50, 100)
>>> round(lo, 3), round(hi, 3)
(0.404, 0.596)
>>> srm_check({"a": 500, "b": 500}, {"a": 0.5, "b": 0.5})["p_value"]
1.0
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from features.exceptions import InputError

EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (nan, nan) when n == 0."""
    if n < 0 or successes < 0 or successes > n:
        raise InputError(f"need 0 <= successes <= n; got successes={successes}, n={n}",
                         field="successes", value=successes)
    if n == 0:
        return (math.nan, math.nan)
    z = float(stats.norm.ppf(0.5 + confidence / 2))  # plain floats, as annotated
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe_diff_interval(x1: int, n1: int, x0: int, n0: int,
                           confidence: float = 0.95) -> tuple[float, float]:
    """Interval of p1 - p0 (Newcombe 1998, method 10: hybrid Wilson score)."""
    if n1 == 0 or n0 == 0:
        return (math.nan, math.nan)
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1, confidence)
    l0, u0 = wilson_interval(x0, n0, confidence)
    d = p1 - p0
    lower = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return (lower, upper)


def srm_check(counts: dict[str, int], weights: dict[str, float],
              alpha: float = 0.001) -> dict:
    """Sample-ratio mismatch: chi-square of observed unit counts vs expected weights.

    Returns ``{"chi2", "p_value", "mismatch": p < alpha, "alpha", "expected": {...}}``
    (``alpha`` kept so a report can say which p-values it flags).
    """
    missing = set(weights) - set(counts)
    counts = {**{k: 0 for k in missing}, **counts}
    unknown = set(counts) - set(weights)
    if unknown:
        raise InputError(f"variant(s) {sorted(unknown)} have no configured weight",
                         field="variant", value=sorted(unknown)[0], allowed=sorted(weights))
    names = sorted(weights)
    obs = np.array([counts[k] for k in names], dtype=float)
    w = np.array([weights[k] for k in names], dtype=float)
    total = obs.sum()
    if total == 0:
        return {"chi2": 0.0, "p_value": 1.0, "mismatch": False, "alpha": alpha,
                "expected": {k: 0.0 for k in names}}
    exp = total * w / w.sum()
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    p = float(stats.chi2.sf(chi2, df=len(names) - 1)) if len(names) > 1 else 1.0
    return {"chi2": chi2, "p_value": p, "mismatch": p < alpha, "alpha": alpha,
            "expected": dict(zip(names, exp.round(1).tolist()))}


def with_units(exposures: pd.DataFrame) -> pd.DataFrame:
    """``exposures`` with a missing ``unit`` replaced by ``request:<request_id>``.

    Only a forced QA request can be exposed without a unit. Left missing, pandas drops
    it from every grouping: its clicks vanished from the rates and all such requests
    counted as one unit (or none). A request is the only unit it is known to be.
    """
    missing = exposures["unit"].isna()
    if not missing.any():
        return exposures
    out = exposures.copy()
    out["unit"] = out["unit"].astype(object)
    out.loc[missing, "unit"] = "request:" + out.loc[missing, "request_id"].astype(str)
    return out


def unit_outcomes(exposures: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, variant, unit) with a 0/1 column per event type."""
    need = {"request_id", "experiment", "variant", "unit"}
    if need - set(exposures.columns):
        raise InputError("exposures table lacks column(s) "
                         f"{sorted(need - set(exposures.columns))}", field="exposures")
    exposures = with_units(exposures)
    # one request is exposed once per experiment layer it ran in
    exp = exposures[["request_id", "experiment", "variant", "unit"]].drop_duplicates(
        ["request_id", "experiment"])
    units = exp[["experiment", "variant", "unit"]].drop_duplicates()
    if len(events):
        ev = events.merge(exp, on="request_id", how="inner")
        flags = (ev.assign(one=1)
                 .pivot_table(index=["experiment", "variant", "unit"], columns="type",
                              values="one", aggfunc="max", fill_value=0))
        units = units.merge(flags.reset_index(), on=["experiment", "variant", "unit"],
                            how="left")
    for t in EVENT_TYPES:
        units[t] = units[t].fillna(0).astype(int) if t in units.columns else 0
    return units


def variant_report(exposures: pd.DataFrame, events: pd.DataFrame, experiment: str,
                   control: str, weights: dict[str, float] | None = None,
                   confidence: float = 0.95) -> dict:
    """Per-variant units, rates with intervals, differences to ``control``, and SRM.

    Returns ``{"variants": DataFrame, "srm": dict | None}``; the DataFrame has, per
    variant and event type, ``units``, ``rate``, ``rate_lo``, ``rate_hi``, ``diff``,
    ``diff_lo``, ``diff_hi``. A variant with exposures but no weight in ``weights``
    keeps its rows and is left out of the SRM check, which then carries
    ``unconfigured`` (variant -> units) and a ``note`` saying so.
    """
    u = unit_outcomes(exposures, events)
    u = u[u["experiment"] == experiment]
    if u.empty:
        raise InputError(f"no exposures for experiment {experiment!r}", field="experiment",
                         value=experiment)
    if control not in set(u["variant"]):
        raise InputError(f"control variant {control!r} has no exposures",
                         field="control", value=control, allowed=sorted(set(u["variant"])))
    agg = u.groupby("variant")[list(EVENT_TYPES)].agg(["sum", "count"])
    rows = []
    for variant in agg.index:
        for t in EVENT_TYPES:
            x, n = int(agg.loc[variant, (t, "sum")]), int(agg.loc[variant, (t, "count")])
            x0 = int(agg.loc[control, (t, "sum")])
            n0 = int(agg.loc[control, (t, "count")])
            lo, hi = wilson_interval(x, n, confidence)
            dlo, dhi = ((0.0, 0.0) if variant == control
                        else newcombe_diff_interval(x, n, x0, n0, confidence))
            rows.append({"variant": variant, "event": t, "units": n, "conversions": x,
                         "rate": x / n if n else math.nan, "rate_lo": lo, "rate_hi": hi,
                         "diff": (x / n - x0 / n0) if n and n0 else math.nan,
                         "diff_lo": dlo, "diff_hi": dhi})
    counts = u.groupby("variant").size().to_dict()
    srm = None
    if weights:
        # a variant logged but no longer configured (removed or renamed since): its rows
        # above stand, but no weight says how many units it should have had, so the
        # check compares the configured variants among themselves
        unconfigured = {v: int(n) for v, n in counts.items() if v not in weights}
        srm = srm_check({v: n for v, n in counts.items() if v in weights}, weights)
        if unconfigured:
            srm["unconfigured"] = unconfigured
            srm["note"] = (f"variant(s) {sorted(unconfigured)} have exposures but no "
                           f"configured weight (removed from the config?): their "
                           f"{sum(unconfigured.values())} unit(s) are left out of the "
                           f"sample-ratio check")
    return {"variants": pd.DataFrame(rows), "srm": srm}
