"""Reading an events database for A/B analysis (the A/B notebook's data layer).

:mod:`api.ab_analysis` computes rates, intervals and the SRM check from plain
tables; this module gets those tables out of the SQLite store written by
:mod:`api.events`, opened read-only so an analysis can never change what the
server recorded, and picks an experiment's exposures, control and weights from
the experiments config.

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

import os
import sqlite3
from pathlib import Path

import pandas as pd

from features.exceptions import InputError, NotFoundError
from api.ab_analysis import variant_report, with_units
from api.experiments import HOLDOUT, Experiments

EXPOSURE_COLUMNS = ["request_id", "unit", "layer", "experiment", "variant", "forced",
                    "endpoint", "ts", "bundle_version", "rules_version",
                    "client_request_id", "experiments_version"]
EVENT_COLUMNS = ["request_id", "type", "item_id", "user_id", "session_id", "value",
                 "quantity", "ts"]


def read_event_tables(db_path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(exposures, events) from an events database, opened read-only.

    A database written before ``client_request_id`` was logged reads with that column
    empty. Events are tied to requests by :func:`tie_client_request_ids`.
    """
    p = Path(db_path)
    if not p.is_file():
        raise NotFoundError(f"events database not found: {p}", field="events_db",
                            value=str(p))
    # as_uri() percent-encodes the path: spliced in raw, a '#' or '?' in it ended the
    # file name early and dropped mode=ro, so another file was opened read-write
    con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
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
               confidence: float = 0.95, include_forced: bool = False) -> dict:
    """Per-variant report of one experiment (see :func:`api.ab_analysis.variant_report`)
    plus ``exposures`` (requests) and ``units`` per variant.

    ``control`` defaults to the variant with the most units when not given.
    """
    exp = experiment_exposures(exposures, experiment, include_forced)
    if exp.empty:
        raise InputError(f"no exposures for experiment {experiment!r}", field="experiment",
                         value=experiment,
                         allowed=experiment_names(exposures, include_forced))
    if control is None:
        control = exp.groupby("variant")["unit"].nunique().idxmax()
    rep = variant_report(exp, events, experiment, control, weights, confidence)
    counts = (exp.groupby("variant")
              .agg(exposures=("request_id", "size"), units=("unit", "nunique"))
              .reset_index())
    return {"experiment": experiment, "control": control, "variants": rep["variants"],
            "srm": rep["srm"], "counts": counts}
