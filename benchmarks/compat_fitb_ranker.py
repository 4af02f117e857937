"""The second-stage FITB ranker on a built bundle: validation (cross-fitted) and test figures.

``fit`` mode trains the compatibility model on the bundle's training outfits with
the compatibility stage's settings (plus ``--set key=json`` overrides), exactly as
the stage does (its final model goes to the bundle's ``models/``), and keeps, for
each negatives mode it fits, the model as it was when its ranker was cross-fitted
(final trees, statistics of the fit outfits only) and the validation questions.
``variants`` mode re-fits only the ranker on those under other settings: each row
gives the cross-fitted validation FITB (mixed, cold: what chooses) beside the test
FITB of the bundle's files scored with the final model (only reported, never used).

Usage::

    python benchmarks/compat_fitb_ranker.py fit --bundle B --val-bundle V --cache C \
        [--set negatives='"random"']
    python benchmarks/compat_fitb_ranker.py variants --bundle B --val-bundle V --cache C \
        [--tag random] [--json]

``V`` is a folder linking B's catalog.parquet, features/, eval/ and manifest.json (its
``models/<negatives mode>/`` receive the validation-time models). The cache files
``C.<mode>.npz`` hold catalogue row numbers of the validation questions only.

Measured here (MANGO, seeded split of /tmp/mb, 2 shared cores; validation = 4203
mixed + 640 cold questions cross-fitted in 5 folds by outfit; test = the bundle's
fitb.jsonl, 1255 questions, and fitb_cold.jsonl, 828; expected accuracy):

=====================================================  =====  =====  =====  =====
pair model at main 624d798 (negatives "random")        val    val    test   test
                                                       FITB   cold   FITB   cold
=====================================================  =====  =====  =====  =====
plain aggregate (mean_logit), what "auto" kept          0.886  0.714  0.881  0.696
first ranker (lambdarank, 200 rounds, 15 leaves)        0.878  0.688  0.881  0.685
ranker defaults (from logit_mean, 100 r, 7 leaves, +    0.888  0.709  0.884  0.708
gap/season/colour columns, 2 extra negative draws)
=====================================================  =====  =====  =====  =====

The ranker was level with the plain aggregate on validation (gain -0.001), so the
stage does not keep it there; every variant in :data:`VARIANTS` stayed within about
a point of the plain aggregate on both splits.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from recommender.json_output import dumps  # NaN (an empty split) as null


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fit(bundle: str, val_bundle: str, cache: str, overrides: dict) -> dict:
    """Fit as the stage does; keep the validation-time model and questions for re-use.

    ``val_bundle`` is a bundle folder sharing the catalogue and features of
    ``bundle`` (links will do) whose ``models/`` receives the model as it was when the
    ranker was cross-fitted: trees of the final model, statistics of the fit outfits
    only. ``bundle``'s ``models/`` receives the final model, as the stage writes it.
    """
    from recommender.bundle import Bundle
    from recommender.compat import model as cm
    from recommender.compat.ranker import pool_questions
    from recommender.compat.train import load_inputs, model_settings

    t0, c0 = time.time(), cpu_seconds()
    b = Bundle.open(bundle)
    catalog, train, features, embeddings = load_inputs(b)
    settings = {**model_settings(b.manifest.get("config", {})), **overrides}
    vb = Bundle.open(val_bundle)

    class Recording(cm.CompatibilityModel):
        def _fit_fitb_ranker(self, log):
            qs, ans, labels, which = pool_questions(self._val_questions)
            # one cache per negatives mode "auto" tries, named after it
            tag = self.negatives
            # importance is only filled in by the final fit; save() writes it
            self.feature_importance_ = getattr(self, "feature_importance_", {})
            self.save(vb.path("models", tag))
            np.savez_compressed(f"{cache}.{tag}.npz", labels=labels, which=which,
                                **_ragged(qs, "q"), **_ragged(ans, "a"))
            return super()._fit_fitb_ranker(log)

    model = Recording(**settings).fit(catalog, train, features, embeddings, log=print)
    model.save(b.path("models"))
    out = {"settings": {k: v for k, v in settings.items() if k != "style"},
           "metrics": {k: v for k, v in model.metrics_.items()
                       if isinstance(v, (int, float, str, bool))},
           "wall_s": round(time.time() - t0, 1), "cpu_s": round(cpu_seconds() - c0, 1)}
    return out


def _ragged(lists, key):
    return {f"{key}_flat": np.concatenate([np.asarray(x, np.int64) for x in lists]),
            f"{key}_len": np.array([len(x) for x in lists], np.int64)}


def _unragged(z, key):
    return [x.tolist() for x in np.split(z[f"{key}_flat"], np.cumsum(z[f"{key}_len"])[:-1])]


def load_val_model(val_bundle: str, tag: str):
    """The validation-time model saved by :func:`fit` (a ``models/<tag>`` folder)."""
    import shutil
    import tempfile
    from pathlib import Path

    from recommender.compat.model import CompatibilityModel

    # Bundle layout expects models/compat.*: a scratch copy of the bundle's links
    root = Path(tempfile.mkdtemp(prefix="fitb_val_"))
    for f in Path(val_bundle).iterdir():
        if f.name != "models":
            (root / f.name).symlink_to(f.resolve())
    shutil.copytree(Path(val_bundle) / "models" / tag, root / "models")
    return CompatibilityModel.load(root)


def pair_table(model, qs, ans):
    """Pair probabilities and every pair feature of the FITB questions, in one pass."""
    from recommender.compat.model import PAIR_BLOCK
    from recommender.evaluation.metrics import fitb_pairs

    a, b, g, A = fitb_pairs(qs, ans)
    X = np.empty((len(a), len(model.feature_names_)), np.float32)
    p = np.empty(len(a))
    for s in range(0, len(a), PAIR_BLOCK):
        X[s:s + PAIR_BLOCK] = model.featurizer_.transform(
            model.items_, a[s:s + PAIR_BLOCK], model.items_, b[s:s + PAIR_BLOCK])
        p[s:s + PAIR_BLOCK] = model._predict(X[s:s + PAIR_BLOCK])
    counts = model.featurizer_.stats_.item_count_
    own = np.log1p(counts[np.asarray(ans, np.int64).reshape(-1)].astype(float))
    return {"p": p, "X": X, "g": g, "A": A, "own": own, "nq": np.array([len(q) for q in qs]),
            "names": list(model.feature_names_)}


def features_of(t, columns, history):
    from recommender.compat.ranker import candidate_features

    pos = {n: k for k, n in enumerate(t["names"])}
    cols = {c: t["X"][:, pos[c]] for c in columns if c in pos}
    return candidate_features(t["p"], cols, t["g"], len(t["nq"]), t["A"], t["own"], t["nq"],
                              history=history)


#: The first ranker recipe tried (before the defaults changed): every variant below
#: is this plus its own settings, so the table reads the same whatever the defaults.
FIRST = {"objective": "lambdarank", "num_boost_round": 200, "learning_rate": 0.05,
         "num_leaves": 15, "min_data_in_leaf": 40, "base": None, "history": True,
         "pair_columns": ("cooc_pair_count", "cooc_pair_norm", "sib_pair_count",
                          "sib_pair_norm", "cooc_two_hop_norm", "sib_two_hop_norm",
                          "style_cos", "emb_cos"),
         "extra_draws": 0}
#: Columns added by the "+ gap/season/colour" variants.
MORE = ("model_code_gap", "model_code_gap_low", "same_season", "pmi_season",
        "same_colour_name", "pmi_colour")
FROM_LOGIT = {"base": "logit_mean", "num_boost_round": 100, "num_leaves": 7}
VARIANTS = {
    "first (lambdarank, 200 rounds, 15 leaves)": {},
    "no own history": {"history": False},
    "binary objective": {"objective": "binary"},
    "7 leaves, 100 min leaf, lr 0.02, 300 rounds": {"num_leaves": 7, "min_data_in_leaf": 100,
                                                     "learning_rate": 0.02,
                                                     "num_boost_round": 300},
    "from logit_mean, 100 rounds, 15 leaves": {"base": "logit_mean", "num_boost_round": 100},
    "from logit_mean, 50 rounds, 7 leaves": {"base": "logit_mean", "num_boost_round": 50,
                                             "num_leaves": 7},
    "from logit_mean, 200 rounds, lr 0.02, 7 leaves, 100 min leaf": {
        "base": "logit_mean", "num_boost_round": 200, "learning_rate": 0.02,
        "num_leaves": 7, "min_data_in_leaf": 100},
    "+ gap/season/colour columns": {"pair_columns": FIRST["pair_columns"] + MORE},
    "+ gap/season/colour, from logit_mean, 100 rounds, 7 leaves": {
        **FROM_LOGIT, "pair_columns": FIRST["pair_columns"] + MORE},
    "+ gap/season/colour, 2 extra negative draws": {
        "pair_columns": FIRST["pair_columns"] + MORE, "extra_draws": 2},
    "+ gap/season/colour, from logit_mean, 100 r, 7 l, 2 extra draws (model default)": {
        **FROM_LOGIT, "pair_columns": FIRST["pair_columns"] + MORE, "extra_draws": 2},
    "  the same, no own history": {
        **FROM_LOGIT, "pair_columns": FIRST["pair_columns"] + MORE, "extra_draws": 2,
        "history": False},
    "  the same, 4 extra draws": {
        **FROM_LOGIT, "pair_columns": FIRST["pair_columns"] + MORE, "extra_draws": 4},
}


def variants(val_bundle: str, bundle: str, cache: str, tag: str, only=None) -> list[dict]:
    from recommender.bundle import Bundle
    from recommender.compat.model import RANKER_DEFAULTS, CompatibilityModel, redraw_negatives
    from recommender.compat.ranker import FitbRanker, cross_fit_scores, question_folds
    from recommender.evaluation.evaluate import EVAL_FILE_NAMES, index_fitb
    from recommender.evaluation.make_eval import read_fitb
    from recommender.evaluation.metrics import fitb_outcomes

    z = np.load(f"{cache}.{tag}.npz", allow_pickle=False)
    qs, ans = _unragged(z, "q"), _unragged(z, "a")
    labels, which = z["labels"], z["which"]
    vmodel = load_val_model(val_bundle, tag)
    fmodel = CompatibilityModel.load(bundle)
    vt = pair_table(vmodel, qs, ans)
    A = vt["A"]
    folds = question_folds(qs, ans, labels, RANKER_DEFAULTS["folds"], vmodel.random_state)
    extra_tables = {}

    def extra_table(n):
        # the model's own draws (same stream as CompatibilityModel._fit_fitb_ranker)
        if n not in extra_tables:
            subs = vmodel.items_.codes["subcategory"]
            seen = vmodel.featurizer_.stats_.item_count_ > 0
            xq, xa, xl, xo = redraw_negatives(qs, ans, labels, which == "fitb_cold", subs, seen,
                                              n, np.random.default_rng([vmodel.random_state, 2]))
            extra_tables[n] = (pair_table(vmodel, xq, xa), xl, folds[xo])
        return extra_tables[n]

    test = {}
    for key in ("fitb", "fitb_cold"):
        d = index_fitb(read_fitb(Bundle.open(bundle).path("eval", EVAL_FILE_NAMES[key])),
                       fmodel.index_)
        if not len(d["labels"]):
            continue
        test[key] = (pair_table(fmodel, d["questions"], d["answers"]), d["labels"],
                     fmodel.score_fitb(d["questions"], d["answers"], vmodel.fitb_aggregate_))
    rows = []
    plain = vmodel.score_fitb(qs, ans, vmodel.fitb_aggregate_)
    _, e = fitb_outcomes(plain, labels, 0)
    row = {"variant": f"plain aggregate ({vmodel.fitb_aggregate_}, no ranker)"}
    for n in ("fitb", "fitb_cold"):
        row[f"val_{n}"] = float(e[which == n].mean())
        row[f"test_{n}"] = (float(fitb_outcomes(test[n][2], test[n][1], 0)[1].mean())
                            if n in test else float("nan"))
    rows.append(row)
    for name, v in VARIANTS.items():
        if only and not any(o in name for o in only):
            continue
        t0, c0 = time.time(), cpu_seconds()
        cfg = {**FIRST, **v}
        columns = cfg["pair_columns"]
        params = {k: cfg[k] for k in ("objective", "num_boost_round", "learning_rate",
                                      "num_leaves", "min_data_in_leaf", "base")}
        F, cols = features_of(vt, columns, cfg["history"])
        extra = None
        if cfg["extra_draws"]:
            xt, xl, xf = extra_table(cfg["extra_draws"])
            extra = (features_of(xt, columns, cfg["history"])[0], xl, xf)
        oof = cross_fit_scores(F, labels, A, cols, folds, params, extra)
        _, e = fitb_outcomes(oof, labels, 0)
        row = {"variant": name, "test_fitb": float("nan"), "test_fitb_cold": float("nan")}
        for n in ("fitb", "fitb_cold"):
            row[f"val_{n}"] = float(e[which == n].mean())
        if extra is not None:
            F, lab = np.vstack([F, extra[0]]), np.r_[labels, extra[1]]
        else:
            lab = labels
        r = FitbRanker(**params).fit(F, lab, A, cols)
        for n in test:
            Ft, _ = features_of(test[n][0], columns, cfg["history"])
            row[f"test_{n}"] = float(fitb_outcomes(r.predict(Ft, A), test[n][1], 0)[1].mean())
        row["cpu_s"] = round(cpu_seconds() - c0, 1)
        row["wall_s"] = round(time.time() - t0, 1)
        rows.append(row)
        print(row, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("fit", "variants"))
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--val-bundle", required=True)
    ap.add_argument("--cache", required=True, help="path prefix of the question caches")
    ap.add_argument("--tag", default="random", help="negatives mode whose cache to use")
    ap.add_argument("--only", action="append", help="variants whose name holds this")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.mode == "fit":
        overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
        print(dumps(fit(args.bundle, args.val_bundle, args.cache, overrides), indent=1,
                    default=str))
        return 0
    rows = variants(args.val_bundle, args.bundle, args.cache, args.tag, args.only)
    if args.json:
        print(dumps(rows, indent=1))
    else:
        print(f"{'variant':80s} {'val FITB':>8s} {'val cold':>8s} {'test FITB':>9s} "
              f"{'test cold':>9s}")
        for r in rows:
            print(f"{r['variant']:80s} {r['val_fitb']:8.3f} {r['val_fitb_cold']:8.3f} "
                  f"{r['test_fitb']:9.3f} {r['test_fitb_cold']:9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
