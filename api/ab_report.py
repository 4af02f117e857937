"""Reading an events database for A/B analysis (the A/B notebook's data layer).

:mod:`api.ab_analysis` computes rates, intervals and the SRM check from plain
tables; this module gets those tables out of the SQLite store written by
:mod:`api.events`, opened read-only so an analysis can never change what the
server recorded, and picks an experiment's exposures, control and weights from
the experiments config.

Config versions. The experiments config is reloadable, so one experiment's exposures
may span several versions of it (``exposures.experiments_version``; rows logged before
that column existed form one version, ``"unknown"``). The server records each
version's weights in the ``experiments_configs`` table (:func:`read_experiments_configs`).
When an experiment's allocation (its variants' shares) differs between versions,
pooling them confounds time with the share of traffic each variant got (Simpson's
paradox) and the sample-ratio check compares traffic that followed two sets of weights
against one: :func:`ab_summary` then analyses the latest version only, with a note,
unless asked to pool them or to analyse another version; its ``versions`` table gives
each version's exposures, units, first and last time and its own sample-ratio check.
A version with no recorded weights takes the weights passed in (the config the server
runs now) when it is the latest, and is otherwise of unknown allocation, which counts
as a change: whether it differs cannot be told.

Examples
--------
>>> import os, tempfile
>>> from api.events import EventStore
>>> db = os.path.join(tempfile.mkdtemp(), "events.db")
>>> store = EventStore(db)
>>> _ = store.add_exposures("r1", "u1", [("ranking", "s", "a", False)], endpoint="complements",
...                         bundle_version="b", rules_version="1")
>>> _ = store.add_events([{"type": "click", "request_id": "r1", "item_id": "x"}])
>>> exposures, events = read_event_tables(db)
>>> len(exposures), events["type"].tolist()
(1, ['click'])
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path

import pandas as pd

from features.exceptions import InputError, NotFoundError
from api.ab_analysis import srm_check, variant_report, with_units
from api.experiments import HOLDOUT, Experiments

EXPOSURE_COLUMNS = ["request_id", "unit", "layer", "experiment", "variant", "forced",
                    "endpoint", "ts", "bundle_version", "rules_version",
                    "client_request_id", "experiments_version"]
EVENT_COLUMNS = ["request_id", "type", "item_id", "user_id", "session_id", "value",
                 "quantity", "ts"]
#: The version of exposures logged before ``experiments_version`` was (NULL there).
UNKNOWN_VERSION = "unknown"


def _open_read_only(db_path: str | os.PathLike) -> sqlite3.Connection:
    """A read-only connection to the events database; NotFoundError naming it when
    there is no such file (SQLite would create an empty one)."""
    p = Path(db_path)
    if not p.is_file():
        raise NotFoundError(f"events database not found: {p}", field="events_db",
                            value=str(p))
    # as_uri() percent-encodes the path: spliced in raw, a '#' or '?' in it ended the
    # file name early and dropped mode=ro, so another file was opened read-write
    return sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)


def read_event_tables(db_path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(exposures, events) from an events database, opened read-only.

    A database written before ``client_request_id`` was logged reads with that column
    empty. Events are tied to requests by :func:`tie_client_request_ids`.
    """
    con = _open_read_only(db_path)
    try:
        have = {r[1] for r in con.execute("PRAGMA table_info(exposures)")}
        cols = [c if c in have else f"NULL AS {c}" for c in EXPOSURE_COLUMNS]
        exposures = pd.read_sql_query(
            f"SELECT {', '.join(cols)} FROM exposures ORDER BY id", con)
        events = pd.read_sql_query(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY id", con)
    finally:
        con.close()
    return exposures, tie_client_request_ids(exposures, events)


def read_experiments_configs(db_path: str | os.PathLike
                             ) -> dict[str, dict[str, dict[str, float]]]:
    """``{version: {experiment: {variant: weight}}}`` of every experiments config
    version the server logged exposures with, from the database's
    ``experiments_configs`` table (opened read-only); ``{}`` for a database written
    before the server recorded them."""
    con = _open_read_only(db_path)
    try:
        if con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                       "AND name = 'experiments_configs'").fetchone() is None:
            return {}
        rows = con.execute("SELECT version, allocation FROM experiments_configs").fetchall()
    finally:
        con.close()
    return {version: json.loads(allocation) for version, allocation in rows}


def read_experiments_params(db_path: str | os.PathLike
                            ) -> dict[str, dict[str, dict[str, dict]] | None]:
    """``{version: {experiment: {variant: params}}}``: the engine params (a variant's
    ``params``, e.g. ``diversity``) each logged experiments config version set, from
    ``experiments_configs`` (opened read-only); a version's value is None when its row
    was written before the server recorded params (unknown, not "none set"), and the
    result ``{}`` for a database without the table."""
    con = _open_read_only(db_path)
    try:
        if con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                       "AND name = 'experiments_configs'").fetchone() is None:
            return {}
        cols = {r[1] for r in con.execute("PRAGMA table_info(experiments_configs)")}
        if "params" not in cols:
            return {v: None for (v,) in con.execute(
                "SELECT version FROM experiments_configs")}
        rows = con.execute("SELECT version, params FROM experiments_configs").fetchall()
    finally:
        con.close()
    return {version: (json.loads(params) if params is not None else None)
            for version, params in rows}


def tie_client_request_ids(exposures: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """``events`` with a client's X-Request-ID replaced by the server's request id,
    where that client id named exactly one request.

    Events carry the body's ``request_id`` (the server's, unique per response). A page
    that sent its own X-Request-ID and posts events with it (what it got back in the
    header) is tied when its id was unique; an id the client reused for several
    requests (per session, constant) says nothing about which of them an event
    followed, and is left untied rather than credited to all or the first of them.
    """
    if events.empty or "client_request_id" not in exposures.columns:
        return events
    known = set(exposures["request_id"])
    pairs = (exposures.dropna(subset=["client_request_id"])
             [["client_request_id", "request_id"]].drop_duplicates())
    per_client = pairs.groupby("client_request_id")["request_id"]
    unique = per_client.first()[per_client.nunique() == 1]
    untied = ~events["request_id"].isin(known) & events["request_id"].isin(unique.index)
    if not untied.any():
        return events
    out = events.copy()
    out.loc[untied, "request_id"] = events.loc[untied, "request_id"].map(unique)
    return out


def experiment_exposures(exposures: pd.DataFrame, experiment: str,
                         include_forced: bool = False) -> pd.DataFrame:
    """The exposures of one experiment (one row per request), QA-forced ones left out
    unless ``include_forced``: a forced variant is not a random assignment. A forced
    request without a unit counts as the unit ``request:<request_id>``
    (:func:`api.ab_analysis.with_units`)."""
    e = exposures[exposures["experiment"] == experiment]
    if not include_forced and "forced" in e.columns:
        e = e[e["forced"] == 0]
    return with_units(e.drop_duplicates("request_id"))


def experiment_names(exposures: pd.DataFrame, include_forced: bool = False) -> list[str]:
    """Experiments with exposures, holdout excluded, most exposed first; QA-forced
    exposures are not counted unless ``include_forced`` (as :func:`ab_summary`)."""
    e = exposures[exposures["experiment"] != HOLDOUT]
    if not include_forced and "forced" in e.columns:
        # an experiment QA forced but no unit was assigned to has nothing to analyse:
        # named here, it was the notebook's default and ab_summary refused it
        e = e[e["forced"] == 0]
    return e["experiment"].value_counts().index.tolist()


def most_exposed_experiment(exposures: pd.DataFrame, source: str | os.PathLike = "") -> str:
    """The experiment with the most exposures, holdout and QA-forced ones excluded (the
    notebook's default).

    A database with none (the server ran without an ``EXPERIMENTS`` config, or every
    unit fell in the holdout, or only QA forced variants) is a :class:`NotFoundError`
    naming ``source``.
    """
    names = experiment_names(exposures)
    if not names:
        where = f" in {source}" if str(source) else ""
        raise NotFoundError(
            f"no experiment has exposures{where} ({len(exposures)} exposure rows, all in "
            f"the holdout, forced by QA, or none): did the server run with an "
            f"EXPERIMENTS config?", field="experiment")
    return names[0]


def experiment_design(experiments: Experiments | str | os.PathLike | None,
                      experiment: str) -> tuple[str | None, dict[str, float] | None]:
    """(control variant, weights) of ``experiment`` from the config: the control is
    the first variant listed. ``(None, None)`` when no config is given."""
    if experiments is None:
        return None, None
    if not isinstance(experiments, Experiments):
        experiments = load_experiments_for_analysis(experiments)
    exp = experiments.experiment(experiment)
    if exp is None:
        raise InputError(f"experiment {experiment!r} is not in the config", field="experiment",
                         value=experiment,
                         allowed=[e.name for l in experiments.layers for e in l.experiments])
    return exp.variants[0].name, {v.name: v.weight for v in exp.variants}


def load_experiments_for_analysis(path: str | os.PathLike) -> Experiments:
    """Load an experiments file for its design only: the ``model``/``rules`` names its
    variants use are accepted as they are, since this process does not know the
    server's MODELS and RULES_FILES."""
    from api.experiments import parse_config_text, read_config_file

    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"experiments file not found: {p}", field="experiments",
                            value=str(p))
    data = parse_config_text(read_config_file(p, "experiments"), p.suffix.lower(), str(p))
    names: dict[str, set] = {"model": set(), "rules": set()}
    for layer in (data.get("layers") or []) if isinstance(data, dict) else []:
        for exp in (layer.get("experiments") or []) if isinstance(layer, dict) else []:
            for var in (exp.get("variants") or []) if isinstance(exp, dict) else []:
                for key in names:
                    if isinstance(var, dict) and isinstance(var.get(key), str):
                        names[key].add(var[key])
    return Experiments.from_dict(data, models=names["model"], rules=names["rules"],
                                 source=str(p))


def ab_summary(exposures: pd.DataFrame, events: pd.DataFrame, experiment: str, *,
               control: str | None = None, weights: dict[str, float] | None = None,
               confidence: float = 0.95, include_forced: bool = False,
               configs: dict[str, dict[str, dict[str, float]]] | None = None,
               version: str | None = None, pool_versions: bool = False,
               params: dict[str, dict | None] | None = None) -> dict:
    """Per-variant report of one experiment (see :func:`api.ab_analysis.variant_report`)
    plus ``exposures`` (requests) and ``units`` per variant, and its config versions.

    ``control`` defaults to the variant with the most units when not given.
    ``configs`` are the weights each config version had (:func:`read_experiments_configs`);
    ``weights`` (the config the server runs now) stand for the latest version's when
    ``configs`` has none for it. When the experiment's allocation differs between the
    versions its exposures span, only the latest version is analysed and ``note`` says
    so; ``pool_versions=True`` analyses them all (the sample-ratio check is then per
    version only), ``version`` one of them (``"unknown"``: rows logged before versions
    were). ``versions`` has one row per version: ``exposures``, ``units``,
    ``first_ts``/``last_ts``, ``weights``, its own SRM ``srm_p_value`` and
    ``srm_mismatch`` (NaN/None without weights), ``params`` (variant -> the engine
    params it set under that version, from ``params``:
    :func:`read_experiments_params`; None where not recorded) and ``analysed``.
    Versions whose variants set other params are not pooled either (each arm was
    another treatment in each), as versions with other allocations are not.

    Examples
    --------
    >>> exposures = pd.DataFrame({"request_id": ["r1", "r2", "r3"],
    ...     "unit": ["u1", "u2", "u3"], "experiment": "e", "variant": ["a", "b", "a"],
    ...     "forced": 0, "experiments_version": ["v1", "v1", "v2"]})
    >>> configs = {"v1": {"e": {"a": 1, "b": 1}}, "v2": {"e": {"a": 9, "b": 1}}}
    >>> rep = ab_summary(exposures, pd.DataFrame(columns=["request_id", "type"]), "e",
    ...                  control="a", configs=configs)
    >>> rep["versions"]["version"].tolist(), rep["analysed_versions"]
    (['v1', 'v2'], ['v2'])
    """
    exp = experiment_exposures(exposures, experiment, include_forced)
    if exp.empty:
        raise InputError(f"no exposures for experiment {experiment!r}", field="experiment",
                         value=experiment,
                         allowed=experiment_names(exposures, include_forced))
    versions, exp, weights, note = _pick_versions(exp, experiment, configs or {}, weights,
                                                  version, pool_versions, params or {})
    if control is None:
        control = exp.groupby("variant")["unit"].nunique().idxmax()
    rep = variant_report(exp, events, experiment, control, weights, confidence)
    counts = (exp.groupby("variant")
              .agg(exposures=("request_id", "size"), units=("unit", "nunique"))
              .reset_index())
    return {"experiment": experiment, "control": control, "variants": rep["variants"],
            "srm": rep["srm"], "counts": counts, "versions": versions,
            "analysed_versions": versions.loc[versions["analysed"], "version"].tolist(),
            "note": note, "confidence": confidence}


def _shares(weights: dict[str, float] | None) -> dict[str, float] | None:
    if not weights:
        return None
    total = sum(weights.values())
    return {v: w / total for v, w in weights.items()}


def _same_allocation(a: dict[str, float] | None, b: dict[str, float] | None) -> bool:
    """Both known, the same variants and the same shares (weights 1:1 and 2:2 are one
    allocation: a version bump alone changes nothing a unit sees)."""
    sa, sb = _shares(a), _shares(b)
    return (sa is not None and sb is not None and sa.keys() == sb.keys()
            and all(math.isclose(sa[v], sb[v], rel_tol=1e-9, abs_tol=1e-12) for v in sa))


def _pick_versions(exp: pd.DataFrame, experiment: str, configs: dict,
                   weights: dict[str, float] | None, version: str | None,
                   pool_versions: bool, params: dict):
    """(versions table, the exposures to analyse, their weights, note) for
    :func:`ab_summary`."""
    col = (exp["experiments_version"] if "experiments_version" in exp.columns
           else pd.Series(None, index=exp.index, dtype=object))
    exp = exp.assign(experiments_version=col.astype(object).where(col.notna(),
                                                                  UNKNOWN_VERSION))
    ts = (pd.to_numeric(exp["ts"], errors="coerce") if "ts" in exp.columns
          else pd.Series(math.nan, index=exp.index))
    # the latest is the version of the last exposure: a config reverted to an
    # earlier version is that version again
    order = exp.assign(_ts=ts.fillna(-math.inf).to_numpy(), _row=range(len(exp)))
    latest = order.sort_values(["_ts", "_row"])["experiments_version"].iloc[-1]
    first_row = order.groupby("experiments_version")["_row"].min().sort_values()
    names = first_row.index.tolist()

    def weights_of(v: str) -> dict[str, float] | None:
        recorded = configs.get(v, {}).get(experiment)
        return recorded or (weights if v == latest else None)

    def params_of(v: str) -> dict | None:
        # None: not recorded (an older server, or no record of this version)
        recorded = params.get(v)
        return None if recorded is None else recorded.get(experiment, {})

    rows = []
    for v in names:
        e = exp[exp["experiments_version"] == v]
        w = weights_of(v)
        units = e.groupby("variant")["unit"].nunique().to_dict()
        srm = (srm_check({k: n for k, n in units.items() if k in w}, w) if w else None)
        t = ts[e.index]
        rows.append({"version": v, "exposures": len(e), "units": e["unit"].nunique(),
                     "first_ts": pd.to_datetime(t.min(), unit="s", utc=True),
                     "last_ts": pd.to_datetime(t.max(), unit="s", utc=True),
                     "weights": w,
                     "srm_p_value": srm["p_value"] if srm else math.nan,
                     "srm_mismatch": srm["mismatch"] if srm else None,
                     "params": params_of(v)})
    table = pd.DataFrame(rows)
    changed = any(not _same_allocation(weights_of(v), weights_of(latest)) for v in names)
    # a variant whose params changed between versions was another treatment in each
    # (known on both sides only: an older record says nothing)
    treated = any(params_of(v) is not None and params_of(latest) is not None
                  and params_of(v) != params_of(latest) for v in names)

    note = None
    if version is not None:
        if version not in names:
            raise InputError(f"experiment {experiment!r} has no exposures under config "
                             f"version {version!r}", field="version", value=version,
                             allowed=names)
        picked = [version]
        if len(names) > 1:
            note = (f"only config version {version!r} is analysed, as asked "
                    f"({int(table.set_index('version').loc[version, 'exposures'])} of "
                    f"{len(exp)} exposures)")
    elif pool_versions or not (changed or treated):
        picked = names
        if changed or treated:
            differ = " and ".join(w for w, d in (("allocations", changed),
                                                 ("variants' params", treated)) if d)
            mixed = " and ".join(w for w, d in (("shares of traffic", changed),
                                                ("treatments", treated)) if d)
            note = (f"config versions {names} of experiment {experiment!r} pooled, as "
                    f"asked, although their {differ} differ: the rates mix periods "
                    f"with different {mixed} per variant, and the sample-ratio check "
                    f"is per version only (see versions)")
    else:
        picked = [latest]
        unknown = [v for v in names if weights_of(v) is None]
        why = (f"; the weights of {unknown} are not recorded, so whether they "
               f"differ cannot be told" if unknown else "")
        n = int(table.set_index("version").loc[latest, "exposures"])
        differ = " and ".join(w for w, d in (("allocations", changed),
                                             ("params of its variants", treated)) if d)
        what = " and ".join(w for w, d in (("share of traffic", changed),
                                           ("treatment", treated)) if d)
        note = (f"experiment {experiment!r} ran under config versions {names} with "
                f"different {differ}{why}: pooling them would confound time with "
                f"each variant's {what}, so only the latest version "
                f"{latest!r} is analysed ({n} of {len(exp)} exposures); pass "
                f"pool_versions=True to pool them or version=... to pick one")
    table["analysed"] = table["version"].isin(picked)
    # one set of weights for the sample-ratio check of what is analysed; none when
    # pooled versions had different ones (each version's check is in the table)
    srm_weights = (weights_of(picked[0]) if len(picked) == 1 or not changed else None)
    return (table, exp[exp["experiments_version"].isin(picked)], srm_weights, note)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def explain_split(result: dict) -> str:
    """The sample-ratio check of an :func:`ab_summary` result in plain sentences: the
    units per variant against the configured shares, how often chance alone splits
    units this unevenly, and what a mismatch means for the rates.

    >>> import pandas as pd
    >>> counts = pd.DataFrame({"variant": ["a", "b"], "units": [90, 110]})
    >>> srm = {"chi2": 2.0, "p_value": 0.157, "mismatch": False, "alpha": 0.001,
    ...        "expected": {"a": 100.0, "b": 100.0}}
    >>> print(explain_split({"srm": srm, "counts": counts}))
    Units per variant: a 90 (45.0%), b 110 (55.0%); the config expects a 50.0%, b 50.0%.
    A split at least this uneven happens by chance in 15.7% of experiments split as configured (p = 0.157): no sign of a sample-ratio mismatch (flagged below p = 0.001).
    """
    srm = result.get("srm")
    counts = result["counts"].set_index("variant")["units"]
    total = counts.sum()
    head = "Units per variant: " + ", ".join(
        f"{v} {n} ({_pct(n / total) if total else 'n/a'})" for v, n in counts.items())
    if not srm:
        if len(result.get("analysed_versions") or ()) > 1:
            # pooled config versions with different weights: no one split to expect
            return (head + ".\nThe analysed config versions had different weights: "
                    "each version's split is checked against its own weights in the "
                    "versions table above (srm_p_value, srm_mismatch).")
        return (head + ".\nNo experiments config given and no weights recorded: whether "
                "the units split as configured is not checked.")
    exp_total = sum(srm["expected"].values())
    lines = [head + "; the config expects " + ", ".join(
        f"{v} {_pct(e / exp_total) if exp_total else 'n/a'}"
        for v, e in srm["expected"].items()) + "."]
    chance = (f"A split at least this uneven happens by chance in {_pct(srm['p_value'])} "
              f"of experiments split as configured (p = {srm['p_value']:.3g})")
    alpha = srm.get("alpha", 0.001)
    if srm["mismatch"]:
        lines.append(f"{chance}: SAMPLE-RATIO MISMATCH (p < {alpha:g}). Units are not split "
                     "as configured: assignment or logging is broken, so the rates below "
                     "are not comparable. Find the cause before reading them.")
    else:
        lines.append(f"{chance}: no sign of a sample-ratio mismatch (flagged below "
                     f"p = {alpha:g}).")
    if srm.get("note"):
        lines.append(srm["note"] + ".")
    return "\n".join(lines)


def explain_differences(result: dict,
                        events: tuple[str, ...] = ("click", "add_to_cart", "purchase")
                        ) -> str:
    """Per event type and variant of an :func:`ab_summary` result, in plain sentences:
    the variant's rate and the control's, the difference in percentage points with its
    interval, and whether that interval rules out "no difference".

    >>> import pandas as pd
    >>> rows = [{"variant": v, "event": "click", "rate": r, "diff": d, "diff_lo": dl,
    ...          "diff_hi": dh} for v, r, d, dl, dh in (("a", .1, 0, 0, 0),
    ...                                                  ("b", .3, .2, .09, .31),
    ...                                                  ("c", .12, .02, -.06, .1))]
    >>> counts = pd.DataFrame({"variant": ["a", "b", "c"], "units": [100, 100, 100]})
    >>> print(explain_differences({"control": "a", "variants": pd.DataFrame(rows),
    ...                            "counts": counts, "confidence": 0.95}, events=("click",)))
    click: b 30.0% of units vs a 10.0%, a difference of +20.0 points (95% interval +9.0 to +31.0): b is higher; the interval leaves out 0.
    click: c 12.0% of units vs a 10.0%, a difference of +2.0 points (95% interval -6.0 to +10.0): the interval includes 0, so these units show no difference either way (more units would narrow it).
    """
    control = result["control"]
    level = f"{100 * result.get('confidence', 0.95):g}%"
    table = result["variants"].set_index(["variant", "event"])
    lines = []
    for ev in events:
        for v in [v for v in result["counts"]["variant"] if v != control]:
            if (v, ev) not in table.index or (control, ev) not in table.index:
                continue
            r, c = table.loc[(v, ev)], table.loc[(control, ev)]
            if pd.isna(r["diff_lo"]) or pd.isna(r["diff_hi"]):
                continue
            if r["diff_lo"] > 0:
                verdict = f"{v} is higher; the interval leaves out 0."
            elif r["diff_hi"] < 0:
                verdict = f"{v} is lower; the interval leaves out 0."
            else:
                verdict = ("the interval includes 0, so these units show no difference "
                           "either way (more units would narrow it).")
            lines.append(f"{ev}: {v} {_pct(r['rate'])} of units vs {control} "
                         f"{_pct(c['rate'])}, a difference of {_points(r['diff'])} points "
                         f"({level} interval {_points(r['diff_lo'])} to "
                         f"{_points(r['diff_hi'])}): {verdict}")
    return "\n".join(lines)
