import json

import numpy as np
import pandas as pd
import pytest

from features.exceptions import BundleError, InputError
from recommender.compat.model import CompatibilityModel, outfit_index_lists
from recommender.evaluation.metrics import fitb_accuracy
from tests.recommender.compat.synthetic import make_bundle, palette_of

FAST = dict(num_boost_round=60, num_leaves=7, min_data_in_leaf=5, learning_rate=0.1,
            early_stopping_rounds=20)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    b = make_bundle(root, per_sub=30, n_outfits=200)
    catalog = pd.read_parquet(b.path("catalog.parquet"))
    outfits = pd.read_parquet(b.path("outfits.parquet"))
    model = CompatibilityModel(**FAST).fit(catalog, outfits)
    return b, catalog, outfits, model


def cold_fitb(model, catalog, outfits, seed=0):
    """FITB on items never used in an outfit: only content can answer."""
    rng = np.random.default_rng(seed)
    used = set(outfits["item_id"])
    cold = catalog[~catalog["item_id"].isin(used)]
    pal = catalog["colour"].map(palette_of).to_numpy()
    qs, ans = [], []
    tops = np.flatnonzero(catalog["category"] == "top")
    for _ in range(150):
        anchor = int(rng.choice(tops))
        sub = cold[cold["category"] == "bottom"]
        right = sub.index[pal[sub.index] == pal[anchor]]
        wrong = sub.index[pal[sub.index] != pal[anchor]]
        qs.append([anchor])
        ans.append([int(rng.choice(right))] + [int(x) for x in rng.choice(wrong, 3)])
    return fitb_accuracy(model.score_fitb(qs, ans), np.zeros(len(qs), int))


def test_learns_the_hidden_colour_rule_on_cold_items(fitted):
    _, catalog, outfits, model = fitted
    r = cold_fitb(model, catalog, outfits)
    assert r["expected_accuracy"] > 0.6   # random is 0.25
    assert model.metrics_["val_auc"] > 0.8
    # validation FITB is also reported for warm and cold answers apart
    warm = model.metrics_["val_fitb_warm"]
    assert 0.25 < warm <= 1 and "val_fitb_cold_answer" in model.metrics_


def test_pairs_are_symmetric_and_outfits_aggregate(fitted):
    _, catalog, _, model = fitted
    a, b = np.arange(0, 60), np.arange(60, 120)
    np.testing.assert_allclose(model.score_pairs(a, b), model.score_pairs(b, a))
    score, mat = model.score_outfit([0, 70, 130])
    assert mat.shape == (3, 3) and np.isnan(mat[0, 0]) and mat[0, 1] == mat[1, 0]
    pairs = mat[np.triu_indices(3, 1)]
    logit = np.log(pairs / (1 - pairs))
    # the item mean log-odds of rows 0, 70, 130 (pairs 01, 02, 12)
    item = np.array([logit[0] + logit[1], logit[0] + logit[2], logit[1] + logit[2]]) / 2
    expected = {"mean": pairs.mean(), "mean_logit": 1 / (1 + np.exp(-logit.mean())),
                "worst": 1 / (1 + np.exp(-item.min())),
                "blend": 1 / (1 + np.exp(-(logit.mean() + item.min()) / 2))}
    assert model.aggregate_ in expected
    assert score == pytest.approx(expected[model.aggregate_])
    assert 0 < score < 1
    assert model.score_outfits([[0, 70, 130]])[0] == pytest.approx(score)
    for how, value in expected.items():
        assert model.score_outfits([[0, 70, 130]], how)[0] == pytest.approx(value)
    with pytest.raises(InputError):
        model.score_pairs([0], [10_000])


def test_save_load_round_trip_and_feature_check(fitted, tmp_path):
    b, catalog, _, model = fitted
    model.save(b.path("models"))
    meta = json.loads(b.path("models", "compat.json").read_text())
    assert meta["feature_names"] == model.feature_names_
    assert set(meta["feature_importance"]) == set(model.feature_names_)
    back = CompatibilityModel.load(b.root)
    a, c = np.arange(0, 50), np.arange(50, 100)
    np.testing.assert_allclose(back.score_pairs(a, c), model.score_pairs(a, c), rtol=1e-6)
    # a manifest whose feature list differs from the model's is refused
    meta["feature_names"] = meta["feature_names"][:-1] + ["something_else"]
    b.path("models", "compat.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="feature list"):
        CompatibilityModel.load(b.root)
    model.save(b.path("models"))


def test_a_save_that_fails_half_way_leaves_the_previous_model_whole(fitted, tmp_path,
                                                                     monkeypatch):
    b, catalog, outfits, model = fitted
    models = tmp_path / "models"
    model.save(models)
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    other = CompatibilityModel(**dict(FAST, num_boost_round=10, random_state=1)
                               ).fit(catalog, outfits)
    real = np.savez_compressed

    def fail_after_the_booster(file, **arrays):
        # compat.txt is written before cooc.npz: fail between the two, as a kill would
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez_compressed", fail_after_the_booster)
    with pytest.raises(OSError, match="No space"):
        other.save(models)
    monkeypatch.setattr(np, "savez_compressed", real)
    # every file as it was, and no temporary file left beside them
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before
    for name in before:
        b.path("models", name).write_bytes(before[name])
    back = CompatibilityModel.load(b.root)
    a, c = np.arange(0, 50), np.arange(50, 100)
    np.testing.assert_allclose(back.score_pairs(a, c), model.score_pairs(a, c), rtol=1e-6)


def test_a_compat_json_of_another_format_is_refused(fitted, tmp_path):
    """compat.json names its format; one this code does not read (a newer mixmatch's,
    or a file that is not a compat manifest) was loaded as if it were version 1."""
    import shutil

    b, _, _, model = fitted
    root = tmp_path / "bundle"
    shutil.copytree(b.root, root)
    model.save(root / "models")
    meta = json.loads((root / "models" / "compat.json").read_text())
    meta["format"] = "mixmatch-compat/2"
    (root / "models" / "compat.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="format 'mixmatch-compat/2'.*mixmatch-compat/1"):
        CompatibilityModel.load(root)
    (root / "models" / "compat.json").write_text("[]")
    with pytest.raises(BundleError, match="format 'list'"):
        CompatibilityModel.load(root)


def _load_in_a_subprocess(root):
    """CompatibilityModel.load in a fresh interpreter: LightGBM aborts the process
    that reads a truncated text model, which must not take the test session down."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom recommender.compat.model import CompatibilityModel\n"
            "from features.exceptions import BundleError\n"
            "try:\n    CompatibilityModel.load(sys.argv[1])\n    print('LOADED')\n"
            "except BundleError as e:\n    print('BundleError:', e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_model_files_cut_short_are_refused_by_name(fitted, tmp_path):
    """A compat.txt cut short (an interrupted copy of the bundle) made LightGBM abort
    the whole process (a serving worker reloading it died); a cut cooc.npz or
    compat.json gave a raw BadZipFile / JSONDecodeError instead of a BundleError."""
    import shutil

    b, _, _, model = fitted
    root = tmp_path / "bundle"
    shutil.copytree(b.root, root)
    model.save(root / "models")
    models = root / "models"
    meta = json.loads((models / "compat.json").read_text())
    assert set(meta["files"]) >= {"compat.txt", "cooc.npz"}
    txt = (models / "compat.txt").read_bytes()
    (models / "compat.txt").write_bytes(txt[: len(txt) // 2])
    r = _load_in_a_subprocess(root)
    assert r.returncode == 0, r.stderr[-500:]
    assert "BundleError: models/compat.txt does not match compat.json" in r.stdout
    # saved before the hashes: the missing parameters block at the end tells
    del meta["files"]
    (models / "compat.json").write_text(json.dumps(meta))
    r = _load_in_a_subprocess(root)
    assert r.returncode == 0, r.stderr[-500:]
    assert "BundleError: the compatibility model" in r.stdout and "cut short" in r.stdout
    (models / "compat.txt").write_bytes(txt)
    cooc = (models / "cooc.npz").read_bytes()
    (models / "cooc.npz").write_bytes(cooc[: len(cooc) // 2])
    with pytest.raises(BundleError, match="cooc.npz"):
        CompatibilityModel.load(root)
    (models / "cooc.npz").write_bytes(cooc)
    (models / "compat.json").write_text(json.dumps(meta)[:100])
    with pytest.raises(BundleError, match="compat.json"):
        CompatibilityModel.load(root)


def test_cold_start_rows_match_catalogue_items_without_history(fitted):
    _, catalog, outfits, model = fitted
    unused = np.flatnonzero(~catalog["item_id"].isin(set(outfits["item_id"])))
    i = int(unused[0])
    others = np.arange(len(catalog))
    row = catalog.iloc[[i]].drop(columns=["item_id"])
    np.testing.assert_allclose(model.score_pairs_rows(row, None, others),
                               model.score_pairs(np.full(len(others), i), others), rtol=1e-6)


def test_explain_pair_names_history(fitted):
    _, catalog, outfits, model = fitted
    idx = outfit_index_lists(outfits, catalog)[0]
    n = int(model.featurizer_.stats_.pair_count(idx[:1], idx[1:2])[0])
    reasons = model.explain_pair(int(idx[0]), int(idx[1]))
    assert any(f"worn together in {n} look" in r for r in reasons)
    assert all(isinstance(r, str) and r for r in reasons)


def test_unfitted_model_and_bad_settings():
    from features.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        CompatibilityModel().score_pairs([0], [1])
    with pytest.raises(InputError, match="negatives"):
        CompatibilityModel(negatives="some").fit(pd.DataFrame({"item_id": []}),
                                                 pd.DataFrame({"outfit_id": [], "item_id": []}))


@pytest.mark.parametrize("settings, said", [
    (dict(style={"dim": 0}), "style dim must be a whole number >= 1, got 0"),
    (dict(style={"depth": 2}), r"unknown style settings \['depth'\]"),
    (dict(context_params={"heads": 0}), "context heads must be a whole number >= 1, got 0"),
    (dict(lgb_params={"bogus_leaves": 3}), "unknown LightGBM parameter 'bogus_leaves' in "
                                           "lgb_params"),
    (dict(lgb_params={"lambda_l2": "1"}), "lgb_params lambda_l2 must be a number, got '1'"),
    (dict(lgb_params={"deterministic": 1}),
     "lgb_params deterministic must be true or false, got 1"),
    (dict(ranker_params={"history": "yes"}),
     "ranker_params history must be true or false, got 'yes'"),
    # before: a LightGBMError / "needs at least 2 questions" at the end of validation
    (dict(ranker_params={"num_leaves": 1}),
     "ranker_params num_leaves must be a whole number >= 2, got 1"),
    (dict(ranker_params={"folds": 1}), "ranker_params folds must be a whole number >= 2"),
    # before: inf passed ``not learning_rate > 0`` and NaN the kind-only check of a
    # LightGBM parameter (TOML writes both: ``lambda_l2 = nan``)
    (dict(learning_rate=float("inf")), "learning_rate must be a finite number > 0, "
                                       "got inf"),
    (dict(lgb_params={"lambda_l2": float("nan")}),
     "lgb_params lambda_l2 must be a finite number, got nan"),
])
def test_nested_settings_are_refused_before_any_training(settings, said):
    # before: fit prepared the outfits and statistics and refused these (a torch
    # ZeroDivisionError, a TypeError, a LightGBMError) only when it reached the style
    # tower, the context networks or the booster; the unknown LightGBM parameter was
    # ignored without a word (verbosity -1)
    with pytest.raises(InputError, match=said):
        CompatibilityModel(**settings).fit(pd.DataFrame({"item_id": []}),
                                           pd.DataFrame({"outfit_id": [], "item_id": []}))


@pytest.mark.parametrize("lgb_params, both", [
    ({"eta": 0.1, "learning_rate": 0.1}, ["eta", "learning_rate"]),
    ({"num_leaf": 31, "max_leaves": 31}, ["num_leaf", "max_leaves"]),
    ({"reg_lambda": 1.0, "lambda_l2": 2.0}, ["reg_lambda", "lambda_l2"]),
    ({"seed": 1, "cat_smooth": 5, "random_state": 1}, ["seed", "random_state"]),
])
def test_one_lightgbm_parameter_named_twice_is_refused_naming_both(lgb_params, both):
    # before: passed on to LightGBM, which warned and took one of them (its own name's)
    with pytest.raises(InputError) as e:
        CompatibilityModel(lgb_params=lgb_params)._validate_params()
    assert str(e.value).startswith(f"lgb_params {both[0]} and {both[1]} both set "
                                   f"LightGBM's "), str(e.value)
    assert e.value.value == both and e.value.field == both[1]


def test_an_lgb_params_alias_trains_as_the_parameter_it_names():
    """LightGBM takes a parameter's own name over an alias, and the model always sets
    ``learning_rate``, ``num_leaves``, ``lambda_l2``, ``seed``... itself: before,
    ``lgb_params = {eta = 0.5}`` was ignored (the booster trained at 0.05) while
    ``{learning_rate = 0.5}`` was not. Now the alias is its parameter."""
    import lightgbm as lgb

    from recommender.compat.model import lightgbm_aliases, lightgbm_main_names

    own = CompatibilityModel()._own_params()
    assert all(lightgbm_aliases()[k] == k for k in own)    # the model's own: main names
    assert lightgbm_main_names({"eta": 0.5, "min_child_samples": 9, "sub_feature": 0.5,
                                "reg_lambda": 2, "random_state": 3, "num_leaf": 5,
                                "cat_smooth": 5}) == {
        "learning_rate": 0.5, "min_data_in_leaf": 9, "feature_fraction": 0.5,
        "lambda_l2": 2, "seed": 3, "num_leaves": 5, "cat_smooth": 5}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(int)

    def predictions(model):
        params = {**model._params(), "force_row_wise": True}
        return lgb.train(params, lgb.Dataset(x, y), num_boost_round=3).predict(x[:20])

    by_alias = predictions(CompatibilityModel(lgb_params={"eta": 0.5, "num_leaf": 4}))
    by_name = predictions(CompatibilityModel(lgb_params={"learning_rate": 0.5,
                                                         "num_leaves": 4}))
    default = predictions(CompatibilityModel())
    np.testing.assert_array_equal(by_alias, by_name)
    assert not np.allclose(by_alias, default)


def test_fitb_scores_by_mean_probability_or_mean_log_odds(fitted):
    _, _, _, model = fitted
    q, ans = [0, 70], [130, 131]
    p = model.score_pairs(np.repeat(ans, 2), np.tile(q, 2)).reshape(2, 2)
    np.testing.assert_allclose(model.score_fitb([q], [ans], "mean")[0], p.mean(axis=1))
    np.testing.assert_allclose(model.score_fitb([q], [ans], "mean_logit")[0],
                               np.log(p / (1 - p)).mean(axis=1), rtol=1e-6)
    assert model.fitb_aggregate_ in ("mean", "mean_logit")
    assert model.metrics_["fitb_aggregate_chosen"] == model.fitb_aggregate_
    with pytest.raises(InputError, match="aggregate"):
        model.score_fitb([q], [ans], "median")


def test_style_vectors_do_not_depend_on_the_block_size(fitted, monkeypatch):
    """The item table runs the style tower in blocks of rows (bounded memory at a
    million items); the vectors are those of one pass over all rows, up to the last
    bits of a float32 (BLAS sums a 7-row block in another order; 65,536-row blocks gave
    bit-identical vectors on the MANGO and 1M bundles)."""
    import recommender.compat.pair_features as pf

    _, catalog, _, model = fitted
    fz = model.featurizer_
    assert getattr(fz, "style_", None) is not None and len(catalog) > 3 * 7
    whole = fz.style_.transform(*fz._style_inputs(model.items_))
    monkeypatch.setattr(pf, "STYLE_BLOCK", 7)
    blocked = fz.item_table(catalog).style
    assert blocked.shape == whole.shape
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(model.items_.style, whole)


def test_validation_negatives_never_reuse_the_outfits_own_items():
    """Validation AUC (it picks the aggregate and, with negatives="auto", the negatives
    mode) scores each validation outfit against a copy with every item swapped and one
    with one item swapped for another of its subcategory. A swap drawn from the whole
    subcategory could draw the item itself back (a "negative" equal to its outfit) or
    another item of the outfit; the test files' negatives never do (make_eval draws
    from the subcategory minus the outfit)."""
    subs = np.repeat(np.arange(6), 3)                # 6 subcategories of 3 rows each
    rng = np.random.default_rng(5)
    val = [np.array([3 * s + int(rng.integers(3)) for s in (0, 2, 4)]) for _ in range(40)]
    val += [np.array([3 * s + int(rng.integers(3)) for s in (1, 3, 5)]) for _ in range(40)]
    m = CompatibilityModel(aggregate="mean")
    m.aggregate_ = m.fitb_aggregate_ = "mean"
    scored = []
    m.score_fitb = lambda qs, ans, how=None: np.zeros((len(qs), 4))
    m.score_outfits = lambda outfits, how=None: (scored.append([list(o) for o in outfits])
                                                 or np.arange(len(outfits), dtype=float))
    m._validation_metrics(val, [], subs, np.random.default_rng(0))
    pos, neg, hard = scored
    assert len(pos) == len(neg) == len(hard) == len(val)
    for p, n, h in zip(pos, neg, hard):
        assert not set(n) & set(p), (p, n)                     # every item swapped
        diff = [k for k in range(len(p)) if h[k] != p[k]]
        assert len(diff) == 1 and h[diff[0]] not in p, (p, h)  # one item, a new one
        assert all(subs[a] == subs[b] for a, b in zip(p, n)) and \
            all(subs[a] == subs[b] for a, b in zip(p, h))


def _same_floats(x, y):
    return x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)


def test_scoring_features_equal_the_per_field_reference_path(fitted):
    """Scoring (no outfit) reads cached tables and batched lookups; training rows
    (an outfit per row, -1: none left out) take the per-field path. Same floats."""
    _, catalog, _, model = fitted
    fz, items = model.featurizer_, model.items_
    rng = np.random.default_rng(11)
    n = len(items)
    a = np.r_[rng.integers(0, n, 500), np.arange(10)]
    b = np.r_[rng.integers(0, n, 500), np.arange(10)]     # ends with a == b
    ref = fz.transform(items, a, items, b, outfit=np.full(len(a), -1))
    assert _same_floats(fz.transform(items, a, items, b), ref)
    # rows from outside the catalogue have no history (stat_idx -1)
    tab = fz.item_table(catalog.iloc[:3], stat_idx=np.full(3, -1))
    ia = rng.integers(0, 3, 200)
    assert _same_floats(fz.transform(tab, ia, items, b[:200]),
                        fz.transform(tab, ia, items, b[:200], outfit=np.full(200, -1)))
    # a pair at a time (the serving calls) scores as the batch does
    one = np.concatenate([model.score_pairs(a[k:k + 1], b[k:k + 1]) for k in range(40)])
    assert _same_floats(one, model.score_pairs(a[:40], b[:40]))


def test_cooccurrence_features_alone_equal_the_reference_path(fitted):
    # without the metadata group transform gathers no codes to share with the lookups
    from recommender.compat.pair_features import PairFeaturizer

    b_, catalog, outfits, _ = fitted
    fz = PairFeaturizer(("cooccurrence",), style_folds=0).fit(
        catalog, None, None, outfit_index_lists(outfits, catalog))
    items = fz.item_table(catalog)
    rng = np.random.default_rng(12)
    a, b = rng.integers(0, len(catalog), 300), rng.integers(0, len(catalog), 300)
    assert _same_floats(fz.transform(items, a, items, b),
                        fz.transform(items, a, items, b, outfit=np.full(300, -1)))


def test_scoring_a_few_pairs_slices_no_sparse_matrix(fitted, monkeypatch):
    """The fixed cost of a scoring call: slicing rows of the scipy pair-count matrix
    (shared partners, of items and of models) cost ~0.3 ms a call on MANGO however
    few the pairs; the lookups read the pair table's arrays instead."""
    from scipy import sparse

    _, _, _, model = fitted

    def refuse(self, key):
        raise AssertionError("the scoring path sliced a sparse matrix")

    want = model.score_pairs(np.arange(5), np.arange(60, 65))
    monkeypatch.setattr(sparse.csr_matrix, "__getitem__", refuse)
    assert _same_floats(model.score_pairs(np.arange(5), np.arange(60, 65)), want)
