"""Model report computations: what the model-report notebook shows, as tables.

Everything reads a built bundle (its catalogue, training outfits, evaluation files
and compatibility model) and returns DataFrames or plain dicts; pictures are drawn
by :mod:`recommender.viz`.

- :func:`evaluation_tables` -- FITB and compatibility AUC of the model beside the
  baselines (what ``mixmatch evaluate`` computes,
  :func:`recommender.evaluation.evaluate.evaluate_loaded`, on the bundle's four
  evaluation files), and the cold-start view of the same run;
- :func:`fitb_by_category` -- FITB accuracy per category of the blank's answer;
- :func:`calibration_bins` / :func:`expected_calibration_error` -- how well
  compatibility scores match observed frequencies; :func:`pair_calibration_data`
  builds labelled pairs from held-out outfits (positives) and same-category swaps
  (negatives) to feed them;
- :func:`feature_importance` -- gain per feature and per feature group
  (``models/compat.json``);
- :func:`outfit_examples` -- the evaluation outfits the model likes most and least.

Examples
--------
>>> import numpy as np
>>> bins = calibration_bins(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]), n_bins=2)
>>> bins[["n", "mean_score", "positive_rate"]].values.tolist()
[[2.0, 0.15000000000000002, 0.0], [2.0, 0.8500000000000001, 1.0]]
>>> round(expected_calibration_error(bins), 3)
0.15
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.exceptions import BundleError, InputError
from recommender.bundle import Bundle

SCORER_ORDER = ("model", "cooccurrence", "popularity", "random")


@dataclasses.dataclass
class ReportData:
    """A bundle opened once for the report: catalogue, index, training outfits, model
    (None when the bundle has none) and the baselines.

    ``fitb_scores``: the FITB files as :func:`evaluation_tables` scored them, by
    ``(file key, seed)``: ``{"data": indexed questions, "scores": {scorer: array}}``.
    :func:`fitb_by_category` reads them instead of scoring the file again.
    """

    bundle: Bundle
    catalog: pd.DataFrame
    index: dict
    train: list
    seen: np.ndarray
    model: Any
    baselines: list
    fitb_scores: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def scorers(self) -> list[tuple[str, Any]]:
        own = [("model", self.model)] if self.model is not None else []
        return own + [(s.name, s) for s in self.baselines]

    def eval_path(self, key: str) -> Path:
        from recommender.evaluation.evaluate import EVAL_FILE_NAMES

        return self.bundle.path("eval", EVAL_FILE_NAMES[key])


def load_report_data(bundle_path: str | os.PathLike, seed: int = 0) -> ReportData:
    """Open a built bundle for the report (needs the ingest and split stages)."""
    from recommender.evaluation.baselines import make_baselines
    # evaluate's own loaders: evaluation_tables hands these fields to evaluate_loaded,
    # which must get the catalogue, training outfits and model mixmatch evaluate reads
    from recommender.evaluation.evaluate import load_compat_model, load_eval_state

    b, catalog, index, train, seen = load_eval_state(bundle_path)
    return ReportData(b, catalog, index, train, seen, load_compat_model(b),
                      make_baselines(train, len(catalog), seed))


# -- evaluation with baselines ---------------------------------------------------------
def evaluation_tables(data: "ReportData | str | os.PathLike", seed: int = 0) -> dict:
    """The model and the baselines on the bundle's evaluation files, as tables.

    ``data``: the bundle as :func:`load_report_data` returned it (the notebook's
    ``data``: the bundle and its model are not loaded again), or the bundle's path.

    Returns ``{"metrics": DataFrame, "cold_start": DataFrame, "raw": {...}}``:

    - ``metrics``: one row per scorer with ``fitb`` (``fitb.jsonl``), its expected
      value under random tie-breaking, ``auc`` (``compatibility.tsv``) and
      ``auc_hard`` (``compatibility_hard.tsv``: negatives that keep the categories);
    - ``cold_start``: per scorer, FITB on questions whose answer was / was not in a
      training outfit (``warm`` / ``cold``) and on ``fitb_cold.jsonl``, with counts.
    """
    from recommender.evaluation.evaluate import EVAL_FILE_NAMES, evaluate_loaded

    if not isinstance(data, ReportData):
        data = load_report_data(data, seed=seed)
    files = {k: data.eval_path(k) for k in EVAL_FILE_NAMES}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise BundleError(f"the bundle lacks evaluation file {missing[0]}: run the split "
                          "stage")

    def run(key: str, compat: Path) -> dict:
        # fresh baselines per run (evaluate_loaded), not data.baselines: the random
        # baseline's draws would go on from where the previous file left them.
        # The questions' scores are kept for fitb_by_category: scoring the file
        # again with the model and the baselines took seconds on MANGO
        kept: dict = {}
        out = evaluate_loaded(data.bundle, data.catalog, data.index, data.train,
                              data.seen, data.model, fitb=files[key], compat=compat,
                              seed=seed, print_text=False, fitb_scores=kept)
        data.fitb_scores[(key, seed)] = kept
        return out

    main = run("fitb", files["compatibility"])
    cold = run("fitb_cold", files["compatibility_hard"])

    def per_scorer(result: dict) -> dict[str, dict]:
        out = {"model": {k: v for k, v in result.items()
                         if k not in ("baselines", "files", "model", "n_unknown_ids")}
               } if result.get("model") else {}
        out.update(result.get("baselines", {}))
        return out

    pm, pc = per_scorer(main), per_scorer(cold)
    names = [n for n in SCORER_ORDER if n in pm] + [n for n in pm if n not in SCORER_ORDER]
    metrics = pd.DataFrame([{
        "scorer": n, "fitb": pm[n].get("fitb_accuracy"),
        "fitb_expected": pm[n].get("fitb_expected_accuracy"),
        "auc": pm[n].get("compat_auc"), "auc_hard": pc.get(n, {}).get("compat_auc"),
        "n_fitb": pm[n].get("n_fitb"), "n_compat": pm[n].get("n_compat"),
        "n_compat_hard": pc.get(n, {}).get("n_compat")} for n in names])
    cold_start = pd.DataFrame([{
        "scorer": n, "fitb_warm": pm[n].get("fitb_warm_accuracy"),
        "fitb_cold": pm[n].get("fitb_cold_accuracy"),
        "fitb_cold_file": pc.get(n, {}).get("fitb_accuracy"),
        "n_warm": pm[n].get("n_fitb_warm"), "n_cold": pm[n].get("n_fitb_cold"),
        "n_cold_file": pc.get(n, {}).get("n_fitb")} for n in names])
    return {"metrics": metrics, "cold_start": cold_start, "raw": {"main": main, "cold": cold}}


# -- FITB by category ------------------------------------------------------------------
def accuracy_by_group(correct: np.ndarray, expected: np.ndarray, groups: np.ndarray
                      ) -> pd.DataFrame:
    """Mean ``correct`` and ``expected`` per value of ``groups`` (with counts).

    >>> accuracy_by_group(np.array([1, 0, 1]), np.array([1, 0, .5]),
    ...                   np.array(["bag", "bag", "top"])).values.tolist()
    [['bag', 2, 0.5, 0.5], ['top', 1, 1.0, 0.5]]
    """
    df = pd.DataFrame({"group": np.asarray(groups), "correct": np.asarray(correct, float),
                       "expected": np.asarray(expected, float)})
    out = df.groupby("group", sort=True).agg(n=("correct", "size"),
                                            accuracy=("correct", "mean"),
                                            expected_accuracy=("expected", "mean"))
    return out.reset_index()


def fitb_by_category(data: ReportData, seed: int = 0, which: str = "fitb") -> pd.DataFrame:
    """FITB accuracy of every scorer per category of the true answer.

    Columns: ``category, scorer, n, accuracy, expected_accuracy``. ``which`` is
    ``"fitb"`` or ``"fitb_cold"``. The random baseline draws from ``seed`` afresh on
    every call, as in :func:`evaluation_tables`: the same figures however often it
    is asked. After :func:`evaluation_tables` with the same ``seed``, the scores it
    kept on ``data`` are read, not computed again (the same figures: the same
    scorers, the random one drawing from the same seed on the same questions).
    """
    from recommender.evaluation.baselines import RandomBaseline
    from recommender.evaluation.evaluate import index_fitb
    from recommender.evaluation.make_eval import read_fitb
    from recommender.evaluation.metrics import fitb_outcomes

    if which not in ("fitb", "fitb_cold"):
        # not a KeyError from the file names' table, which named no choice
        raise InputError(f"unknown FITB file {which!r}", field="which", value=which,
                         allowed=["fitb", "fitb_cold"])
    kept = data.fitb_scores.get((which, seed))
    fd = kept["data"] if kept else index_fitb(read_fitb(data.eval_path(which)), data.index)
    if len(fd["labels"]) == 0:
        return pd.DataFrame(columns=["category", "scorer", "n", "accuracy",
                                     "expected_accuracy"])
    cats = data.catalog["category"].astype(str).to_numpy()[fd["answer_rows"]]
    frames = []
    for name, scorer in data.scorers:
        if kept:
            scores = kept["scores"][name]
        else:
            if name == RandomBaseline.name:
                # data's own would go on drawing from where the previous call left it
                scorer = RandomBaseline(seed)
            scores = scorer.score_fitb(fd["questions"], fd["answers"])
        correct, expected = fitb_outcomes(scores, fd["labels"], seed)
        t = accuracy_by_group(correct, expected, cats).rename(columns={"group": "category"})
        t.insert(1, "scorer", name)
        frames.append(t)
    return pd.concat(frames, ignore_index=True)


# -- calibration -----------------------------------------------------------------------
def calibration_bins(scores: np.ndarray, labels: np.ndarray, n_bins: int = 10,
                     strategy: str = "uniform") -> pd.DataFrame:
    """Reliability table: per score bin, the mean score and the observed positive rate.

    ``strategy``: ``"uniform"`` (equal-width bins on [0, 1]) or ``"quantile"``
    (equal-count bins). Empty bins are left out. Columns: ``lo, hi, n, mean_score,
    positive_rate``.
    """
    s = np.asarray(scores, float)
    y = np.asarray(labels, float)
    if s.shape != y.shape or s.ndim != 1:
        raise InputError(f"scores and labels must be 1-D of one length; got {s.shape} and "
                         f"{y.shape}", field="scores")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise InputError(f"n_bins must be a positive integer, got {n_bins!r}",
                         field="n_bins", value=n_bins)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(s, np.linspace(0, 1, n_bins + 1))) if len(s) else \
            np.array([0.0, 1.0])
    else:
        raise InputError(f"unknown strategy {strategy!r}", field="strategy", value=strategy,
                         allowed=["uniform", "quantile"])
    # right-closed last bin: a score of exactly 1.0 belongs to the top bin
    b = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for k in range(len(edges) - 1):
        m = b == k
        if m.any():
            rows.append({"lo": float(edges[k]), "hi": float(edges[k + 1]), "n": float(m.sum()),
                         "mean_score": float(s[m].mean()),
                         "positive_rate": float(y[m].mean())})
    return pd.DataFrame(rows, columns=["lo", "hi", "n", "mean_score", "positive_rate"])


def expected_calibration_error(bins: pd.DataFrame) -> float:
    """Count-weighted mean of ``|mean_score - positive_rate|`` over the bins."""
    if bins.empty:
        return float("nan")
    w = bins["n"].to_numpy(float)
    gap = np.abs(bins["mean_score"].to_numpy(float) - bins["positive_rate"].to_numpy(float))
    return float((w * gap).sum() / w.sum())


def pair_calibration_data(data: ReportData, seed: int = 0, negatives: int = 1
                          ) -> pd.DataFrame:
    """Labelled pairs from the held-out outfits, scored by the model.

    Positives: every pair of items of different categories worn together in a
    held-out outfit. Negatives: each positive ``(a, b)`` with ``b`` swapped for a
    random item of ``b``'s category that is not in the outfit (``negatives`` per
    positive) -- the base rate is ``1 / (1 + negatives)`` by construction.
    Columns: ``a, b, label, score``.
    """
    if data.model is None:
        raise BundleError("the bundle has no compatibility model (models/compat.txt)")
    tp = data.bundle.path("eval", "test_outfits.parquet")
    if not tp.is_file():
        raise BundleError(f"{tp} missing: run the split stage")
    test = pd.read_parquet(tp).astype(str)
    if test.empty:
        raise BundleError(f"{tp} holds no outfits (the bundle was built with --holdout 0): "
                          "there are no held-out pairs to score")
    cats = data.catalog["category"].astype(str).to_numpy()
    by_cat = {c: np.flatnonzero(cats == c) for c in np.unique(cats)}
    rng = np.random.default_rng(seed)
    a_, b_, y_ = [], [], []
    for _, g in test.groupby("outfit_id", sort=True):
        rows = [data.index[i] for i in g["item_id"] if i in data.index]
        for x in range(len(rows)):
            for z in range(x + 1, len(rows)):
                a, b = rows[x], rows[z]
                if cats[a] == cats[b]:
                    continue
                a_.append(a), b_.append(b), y_.append(1)
                pool = by_cat[cats[b]]
                pool = pool[~np.isin(pool, rows)]
                for n in rng.choice(pool, size=min(negatives, len(pool)), replace=False):
                    a_.append(a), b_.append(int(n)), y_.append(0)
    a, b = np.array(a_, np.int64), np.array(b_, np.int64)
    scores = data.model.score_pairs(a, b) if len(a) else np.zeros(0)
    ids = data.catalog["item_id"].astype(str).to_numpy()
    return pd.DataFrame({"a": ids[a] if len(a) else [], "b": ids[b] if len(b) else [],
                         "label": np.array(y_, int), "score": np.asarray(scores, float)})


# -- feature importance ----------------------------------------------------------------
def feature_importance(bundle_path: str | os.PathLike) -> dict:
    """Gain importance of the compatibility model, per feature and per group.

    Returns ``{"features": DataFrame(feature, group, gain, share),
    "groups": DataFrame(group, gain, share, n_features)}`` sorted by gain; shares
    sum to 1.
    """
    b = Bundle.open(bundle_path)
    p = b.path("models", "compat.json")
    if not p.is_file():
        raise BundleError(f"{p} missing: run the compatibility stage")
    meta = json.loads(p.read_text())
    imp = meta.get("feature_importance") or {}
    groups = meta.get("feature_groups") or {}
    return importance_tables(imp, groups)


def importance_tables(importance: dict, groups: dict) -> dict:
    """Per-feature and per-group tables from ``{feature: gain}`` and ``{feature: group}``.

    >>> t = importance_tables({"x": 3.0, "y": 1.0, "z": 0.0}, {"x": "a", "y": "b", "z": "b"})
    >>> t["groups"][["group", "share", "n_features"]].values.tolist()
    [['a', 0.75, 1], ['b', 0.25, 2]]
    """
    f = pd.DataFrame({"feature": list(importance),
                      "gain": [float(v) for v in importance.values()]})
    f["group"] = [groups.get(n, "other") for n in f["feature"]]
    total = f["gain"].sum()
    f["share"] = f["gain"] / total if total > 0 else 0.0
    f = f.sort_values(["gain", "feature"], ascending=[False, True]).reset_index(drop=True)
    g = (f.groupby("group").agg(gain=("gain", "sum"), share=("share", "sum"),
                                n_features=("feature", "size"))
         .reset_index().sort_values(["gain", "group"], ascending=[False, True])
         .reset_index(drop=True))
    return {"features": f[["feature", "group", "gain", "share"]], "groups": g}


# -- examples --------------------------------------------------------------------------
def outfit_examples(data: ReportData, n: int = 4) -> dict:
    """The evaluation outfits the model scores highest (``likes``) and lowest
    (``dislikes``), from ``compatibility.tsv`` and ``compatibility_hard.tsv``.

    Each example: ``{"items": [ids], "score": float, "label": 1 (a real look) or 0
    (a corrupted one), "source": file name}``; the label shows where the model is
    right and where it is fooled.
    """
    from recommender.evaluation.evaluate import index_compat
    from recommender.evaluation.make_eval import read_compat

    if data.model is None:
        raise BundleError("the bundle has no compatibility model (models/compat.txt)")
    ids = data.catalog["item_id"].astype(str).to_numpy()
    rows = []
    for key in ("compatibility", "compatibility_hard"):
        p = data.eval_path(key)
        if not p.is_file():
            continue
        cd = index_compat(read_compat(p), data.index)
        if not cd["outfits"]:
            continue
        scores = data.model.score_outfits(cd["outfits"])
        for o, y, s in zip(cd["outfits"], cd["labels"], scores):
            rows.append({"items": [str(ids[i]) for i in o], "score": float(s),
                         "label": int(y), "source": p.name})
    # dedupe: the same outfit may appear in both files
    seen, uniq = set(), []
    for r in sorted(rows, key=lambda r: (-r["score"], r["items"])):
        key = tuple(sorted(r["items"]))
        if key not in seen:
            seen.add(key)
            uniq.append(r)
    n = min(n, len(uniq) // 2) if len(uniq) < 2 * n else n
    return {"likes": uniq[:n], "dislikes": uniq[::-1][:n]}
