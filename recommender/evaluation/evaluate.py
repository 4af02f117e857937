"""Score FITB and compatibility files against a bundle: the model beside the baselines.

``mixmatch evaluate --bundle B --fitb F [--compat C] [--ablations] [--json]``.

* FITB accuracy with ties broken at random (fixed seed) and the expected accuracy
  under random tie-breaking; split into questions whose true answer was / was not
  in the bundle's training outfits (``warm`` / ``cold``).
* Compatibility AUC (each outfit's score from its pair scores).
* Unknown item ids: the question or outfit line is skipped and counted
  (``n_fitb_skipped``, ``n_compat_skipped``, ``n_unknown_ids``), never a crash.
* Baselines (random, popularity, item co-occurrence) from the bundle's TRAINING
  outfits (``eval/train_outfits.parquet``), in the same run.
* When the model has an outfit context model, its FITB score alone is printed as a
  row of its own ("context only", and ``context_model`` in the JSON): what the
  set-level component contributes before the ranker combines it with the pairs.
* ``--ablations`` retrains the model on the bundle's split once per step of the
  feature-group ladder and scores the bundle's four evaluation files.

Examples
--------
>>> idx = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}
>>> q = [{"question": ["a"], "answers": ["b", "c", "d", "zz"], "label": 0, "outfit_id": "1"},
...      {"question": ["a"], "answers": ["b", "c", "d", "e"], "label": 1, "outfit_id": "2"}]
>>> data = index_fitb(q, idx)
>>> data["n_skipped"], sorted(data["unknown_ids"])
(1, ['zz'])
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from features.exceptions import BundleError
from recommender.evaluation.metrics import fitb_outcomes, roc_auc
from recommender.json_output import json_safe

EVAL_FILE_NAMES = {"fitb": "fitb.jsonl", "fitb_cold": "fitb_cold.jsonl",
                   "compatibility": "compatibility.tsv",
                   "compatibility_hard": "compatibility_hard.tsv"}


# -- reading files against a catalogue index ------------------------------------------
def index_fitb(questions: list[dict], index: dict[str, int]) -> dict:
    """Map FITB questions to catalogue rows; questions naming unknown ids are skipped."""
    qs, ans, labels, answer_ids, unknown = [], [], [], [], set()
    skipped = 0
    for q in questions:
        ids = list(q["question"]) + list(q["answers"])
        missing = [i for i in ids if i not in index]
        if missing or not q["question"]:
            unknown.update(missing)
            skipped += 1
            continue
        qs.append([index[i] for i in q["question"]])
        ans.append([index[i] for i in q["answers"]])
        labels.append(int(q["label"]))
        answer_ids.append(q["answers"][q["label"]])
    return {"questions": qs, "answers": ans, "labels": np.array(labels, int),
            "answer_rows": np.array([a[l] for a, l in zip(ans, labels)], int),
            "n_skipped": skipped, "unknown_ids": unknown}


def index_compat(rows: list[tuple[int, list[str]]], index: dict[str, int]) -> dict:
    """Map compatibility rows to catalogue rows; lines naming unknown ids are skipped."""
    outfits, labels, unknown = [], [], set()
    skipped = 0
    for label, ids in rows:
        missing = [i for i in ids if i not in index]
        if missing or len(ids) < 2:
            unknown.update(missing)
            skipped += 1
            continue
        outfits.append([index[i] for i in ids])
        labels.append(label)
    return {"outfits": outfits, "labels": np.array(labels, int), "n_skipped": skipped,
            "unknown_ids": unknown}


# -- scoring ---------------------------------------------------------------------------
def fitb_metrics(scorer, data: dict, seen: np.ndarray, seed: int = 0,
                 scores: np.ndarray | None = None) -> dict:
    """FITB accuracy (seeded ties), expected accuracy, and warm/cold answer splits.

    ``scores``: the scorer's ``(questions, answers)`` scores when the caller has
    them already (it keeps them for a further breakdown); else the scorer is asked.
    """
    n = len(data["labels"])
    out = {"n_fitb": n, "n_fitb_skipped": data["n_skipped"]}
    if n == 0:
        out.update(fitb_accuracy=float("nan"), fitb_expected_accuracy=float("nan"))
        return out
    if scores is None:
        scores = scorer.score_fitb(data["questions"], data["answers"])
    correct, expected = fitb_outcomes(scores, data["labels"], seed)
    warm = seen[data["answer_rows"]]
    out.update(fitb_accuracy=float(correct.mean()), fitb_expected_accuracy=float(expected.mean()))
    for name, m in (("warm", warm), ("cold", ~warm)):
        out[f"n_fitb_{name}"] = int(m.sum())
        out[f"fitb_{name}_accuracy"] = float(correct[m].mean()) if m.any() else float("nan")
        out[f"fitb_{name}_expected_accuracy"] = (float(expected[m].mean()) if m.any()
                                                 else float("nan"))
    return out


def compat_metrics(scorer, data: dict) -> dict:
    """AUC of outfit scores against the 0/1 labels."""
    n = len(data["labels"])
    out = {"n_compat": n, "n_compat_skipped": data["n_skipped"]}
    if n == 0:
        out["compat_auc"] = float("nan")
        return out
    out["compat_auc"] = roc_auc(data["labels"], scorer.score_outfits(data["outfits"]))
    return out


def load_eval_state(bundle_path):
    """Open the bundle at ``bundle_path`` with what scoring its evaluation files needs.

    Returns ``(bundle, catalog, index, train, seen)``: the opened
    :class:`~recommender.bundle.Bundle`, its catalogue (``catalog.parquet``), ``index``
    (item id -> catalogue row), the training outfits (``eval/train_outfits.parquet``)
    as lists of catalogue rows, and ``seen`` (a boolean per catalogue row: the item is
    in a training outfit; the warm/cold split reads it).

    Raises :class:`~features.exceptions.NotFoundError` when there is no bundle at
    ``bundle_path`` and :class:`~features.exceptions.BundleError` when its manifest is
    unreadable or of another schema, or the ingest or split stage has not run.
    ``mixmatch evaluate`` and the model report both read the bundle through here, so
    that the report's figures are those of the same catalogue and split.

    >>> load_eval_state("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    features.exceptions.NotFoundError: no bundle at /nonexistent (no manifest.json)
    """
    from recommender.bundle import Bundle, read_bundle_file
    from recommender.compat.model import outfit_index_lists

    b = Bundle.open(bundle_path)
    cp = b.path("catalog.parquet")
    tp = b.path("eval", "train_outfits.parquet")
    if not cp.is_file():
        raise BundleError(f"bundle {b.root} has no catalog.parquet: run the ingest stage")
    if not tp.is_file():
        raise BundleError(f"bundle {b.root} has no eval/train_outfits.parquet: run the "
                          "split stage (baselines and warm/cold need the training outfits)")
    # a file cut short by an interrupted copy is named (BundleError), not Arrow's traceback
    catalog = read_bundle_file(cp, pd.read_parquet)
    index = {k: i for i, k in enumerate(catalog["item_id"].astype(str))}
    train = outfit_index_lists(read_bundle_file(tp, pd.read_parquet).astype(str), catalog)
    seen = np.zeros(len(catalog), bool)
    for o in train:
        seen[o] = True
    return b, catalog, index, train, seen


class _ContextOnly:
    """FITB by the compatibility model's outfit context model alone."""

    name = "context only"

    def __init__(self, model):
        self.model = model

    def score_fitb(self, questions, answers):
        return self.model.score_fitb(questions, answers, "context")


def load_compat_model(b):
    """The compatibility model of the open bundle ``b``, or None when it has none.

    None when ``models/compat.txt`` is absent (the train stage has not run): the
    caller then scores the baselines only, which is what ``mixmatch evaluate`` prints
    for such a bundle rather than an error. Otherwise
    :meth:`~recommender.compat.model.CompatibilityModel.load`, which raises
    :class:`~features.exceptions.BundleError` when the model's files are incomplete
    or disagree with ``models/compat.json``.
    """
    from recommender.compat.model import CompatibilityModel

    if not b.path("models", "compat.txt").is_file():
        return None
    return CompatibilityModel.load(b)


def evaluate_attributes(bundle_path, split: str = "test") -> dict:
    """``mixmatch evaluate --attributes``: the bundle at ``bundle_path`` opened here
    and its attribute network scored by
    :func:`features.attributes.evaluate.evaluate_bundle` (``features`` does not
    import ``recommender``, so it takes the bundle open)."""
    from features.attributes.evaluate import evaluate_bundle
    from recommender.bundle import Bundle

    return evaluate_bundle(Bundle.open(bundle_path), split)


def evaluate_bundle_files(bundle_path, fitb=None, compat=None, ablations: bool = False,
                          seed: int = 0, print_text: bool = True) -> dict:
    """Score FITB/compatibility files with the bundle's model and the baselines.

    Returns ``{"fitb_accuracy", "fitb_expected_accuracy", "n_fitb", "fitb_warm_accuracy",
    "fitb_cold_accuracy", "compat_auc", "n_compat", "n_unknown_ids", "model",
    "baselines": {name: {...}}, "ablations": {...}}`` (keys for what was asked).
    """
    b, catalog, index, train, seen = load_eval_state(bundle_path)
    return evaluate_loaded(b, catalog, index, train, seen, load_compat_model(b), fitb=fitb,
                           compat=compat, ablations=ablations, seed=seed,
                           print_text=print_text)


def evaluate_loaded(b, catalog, index, train, seen, model, fitb=None, compat=None,
                    ablations: bool = False, seed: int = 0, print_text: bool = True,
                    fitb_scores: dict | None = None) -> dict:
    """:func:`evaluate_bundle_files` on a bundle already loaded: its catalogue, row
    ``index``, training outfits (``train``, rows), ``seen`` (rows in a training
    outfit) and compatibility ``model`` (None: baselines only), as
    :func:`recommender.report.load_report_data` holds them. The model report scores
    two pairs of files; loading the bundle and its model for each took seconds on
    MANGO.

    The baselines are fitted here on every call: the random baseline's draws then
    start from ``seed`` each time, so the scores are those of a fresh load.

    ``fitb_scores``: a dict to fill, when ``fitb`` is given, with ``"data"`` (the
    questions as :func:`index_fitb` maps them) and ``"scores"`` (``{scorer name:
    (questions, answers) array}``, the model and the baselines): the model report
    breaks FITB down by category from them instead of scoring the file again.
    """
    from recommender.evaluation.baselines import make_baselines
    from recommender.evaluation.make_eval import read_compat, read_fitb

    scorers = ([("model", model)] if model is not None else []) + [
        (s.name, s) for s in make_baselines(train, len(catalog), seed)]
    result: dict = {"model": "lightgbm" if model is not None else None}
    unknown: set = set()
    per: dict[str, dict] = {name: {} for name, _ in scorers}
    fdata = cdata = None
    if fitb:
        fdata = index_fitb(read_fitb(fitb), index)
        unknown |= fdata["unknown_ids"]
        kept: dict = {}
        for name, s in scorers:
            # scored here, once, so that the caller may keep the scores; in the
            # scorers' order as before (the random baseline's draws depend on it)
            kept[name] = (s.score_fitb(fdata["questions"], fdata["answers"])
                          if len(fdata["labels"]) else None)
            per[name].update(fitb_metrics(s, fdata, seen, seed, scores=kept[name]))
        if fitb_scores is not None:
            fitb_scores.update(data=fdata, scores=kept)
        if model is not None and getattr(model, "context_", None) is not None:
            per[_ContextOnly.name] = fitb_metrics(_ContextOnly(model), fdata, seen, seed)
    if compat:
        cdata = index_compat(read_compat(compat), index)
        unknown |= cdata["unknown_ids"]
        for name, s in scorers:
            per[name].update(compat_metrics(s, cdata))
    if fitb or compat:
        main = per["model"] if model is not None else {}
        result.update(main)
        result["baselines"] = {k: v for k, v in per.items()
                               if k not in ("model", _ContextOnly.name)}
        if _ContextOnly.name in per:
            result["context_model"] = per[_ContextOnly.name]
        result["n_unknown_ids"] = len(unknown)
        result["files"] = {"fitb": str(fitb) if fitb else None,
                           "compat": str(compat) if compat else None}
        if print_text:
            print(format_table(per, fitb, compat, len(unknown), model is None))
    if ablations:
        result["ablations"] = run_ablations(b, catalog, index, seen, seed, print_text)
    return json_safe(result)  # NaN (an empty split) as None: --json prints valid JSON


def _usable_groups(groups, features, embeddings) -> list[str]:
    """The groups a model would actually use given the bundle's data."""
    f = features if features is not None else pd.DataFrame()
    has = {"embedding": embeddings is not None,
           "shape": any(c.startswith("shape_") or c in ("bbox_aspect", "mask_area", "kp_conf")
                        for c in f.columns),
           "attributes": any(c.startswith("attr_") or c == "colour_group" for c in f.columns)}
    return [g for g in groups if has.get(g, True)]


def format_table(per: dict, fitb, compat, n_unknown: int, no_model: bool) -> str:
    lines = []
    if no_model:
        lines.append("note: the bundle has no compatibility model (models/compat.txt); "
                     "baselines only")
    if fitb:
        any_row = next(iter(per.values()))
        lines.append(f"FITB {fitb}: {any_row.get('n_fitb', 0)} questions "
                     f"({any_row.get('n_fitb_warm', 0)} with a training-seen answer, "
                     f"{any_row.get('n_fitb_cold', 0)} unseen), "
                     f"{any_row.get('n_fitb_skipped', 0)} skipped for unknown ids")
    if compat:
        any_row = next(iter(per.values()))
        lines.append(f"compatibility {compat}: {any_row.get('n_compat', 0)} outfits, "
                     f"{any_row.get('n_compat_skipped', 0)} skipped for unknown ids")
    if n_unknown:
        lines.append(f"unknown item ids: {n_unknown} (their lines skipped)")
    head = f"{'scorer':<14}"
    if fitb:
        head += f"{'FITB':>8}{'expected':>10}{'warm':>8}{'cold':>8}"
    if compat:
        head += f"{'AUC':>8}"
    lines.append(head)
    for name, v in per.items():
        row = f"{name:<14}"
        if fitb:
            row += (f"{v.get('fitb_accuracy', float('nan')):>8.3f}"
                    f"{v.get('fitb_expected_accuracy', float('nan')):>10.3f}"
                    f"{v.get('fitb_warm_accuracy', float('nan')):>8.3f}"
                    f"{v.get('fitb_cold_accuracy', float('nan')):>8.3f}")
        if compat:
            # a scorer of FITB answers only (the context model) has no outfit score
            row += (f"{v['compat_auc']:>8.3f}" if "compat_auc" in v else f"{'-':>8}")
        lines.append(row)
    return "\n".join(lines)


# -- ablations -------------------------------------------------------------------------
def run_ablations(b, catalog, index, seen, seed: int = 0, print_text: bool = True,
                  quick: bool = False) -> dict:
    """Retrain on the bundle's split for each step of the ladder; score the four files."""
    from recommender.compat.model import CompatibilityModel
    from recommender.compat.pair_features import ABLATION_LADDER
    from recommender.compat.train import load_inputs, model_settings
    from recommender.evaluation.make_eval import read_compat, read_fitb

    files = {k: b.path("eval", v) for k, v in EVAL_FILE_NAMES.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise BundleError(f"ablations need the bundle's evaluation files; missing {missing[0]}")
    data = {"fitb": index_fitb(read_fitb(files["fitb"]), index),
            "fitb_cold": index_fitb(read_fitb(files["fitb_cold"]), index),
            "compatibility": index_compat(read_compat(files["compatibility"]), index),
            "compatibility_hard": index_compat(read_compat(files["compatibility_hard"]),
                                               index)}
    if not (len(data["fitb"]["labels"]) or len(data["compatibility"]["labels"])):
        raise BundleError(f"bundle {b.root} holds out no outfits (built with --holdout 0): "
                          "its evaluation files are empty, so ablations would measure "
                          "nothing; run them on a bundle built with a holdout")
    catalog_, train_df, features, embeddings = load_inputs(b)
    settings = model_settings(b.manifest.get("config", {}), quick=quick)
    settings.update(learning_rate=max(settings.get("learning_rate", 0.05), 0.1))
    # the ladder measures the pair features; the outfit context model reads whole
    # outfits, so it is left out of every step (the bundle's model has it)
    settings["context"] = "off"
    out: dict = {}
    if print_text:
        print(f"{'ablation':<18}{'FITB':>8}{'cold':>8}{'AUC':>8}{'hard AUC':>10}"
              f"{'features':>10}  groups")
    previous = None
    for step, groups in ABLATION_LADDER:
        m = CompatibilityModel(groups=groups, **settings)
        usable = _usable_groups(groups, features, embeddings)
        if previous is not None and usable == previous["groups"]:
            # the added group has no data in this bundle: same model as the step before
            r = dict(previous, note="no data for the added group; same as the previous step")
        else:
            m.fit(catalog_, train_df, features, embeddings)
            r = {"groups": list(m.featurizer_.groups_), "n_features": len(m.feature_names_),
                 "fitb": fitb_metrics(m, data["fitb"], seen, seed)["fitb_accuracy"],
                 "fitb_cold": fitb_metrics(m, data["fitb_cold"], seen, seed)["fitb_accuracy"],
                 "auc": compat_metrics(m, data["compatibility"])["compat_auc"],
                 "auc_hard": compat_metrics(m, data["compatibility_hard"])["compat_auc"]}
            r.pop("note", None)
        out[step] = r
        previous = r
        if print_text:
            print(f"{step:<18}{r['fitb']:>8.3f}{r['fitb_cold']:>8.3f}{r['auc']:>8.3f}"
                  f"{r['auc_hard']:>10.3f}{r['n_features']:>10}  {'+'.join(r['groups'])}",
                  flush=True)
    return out
