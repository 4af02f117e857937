import json

import numpy as np
import pandas as pd
import pytest

from features.exceptions import BundleError, InputError, NotFittedError
from recommender.compat.model import RANKER_FILE, CompatibilityModel, redraw_negatives
from recommender.compat.ranker import (FitbRanker, candidate_features, cross_fit_scores,
                                       question_folds)
from recommender.evaluation.metrics import fitb_accuracy
from tests.recommender.compat.synthetic import make_bundle

FAST = dict(num_boost_round=40, num_leaves=7, min_data_in_leaf=5, learning_rate=0.1,
            early_stopping_rounds=10, negatives="random")
SMALL_RANKER = dict(num_boost_round=40, min_data_in_leaf=5)


def test_candidate_features_known_values():
    # question 0: candidate 0 pairs (0.9, 0.1), candidate 1 pairs (0.5, 0.5)
    p = np.array([0.9, 0.1, 0.5, 0.5])
    cooc = np.array([3.0, 0.0, 1.0, 1.0])
    F, names = candidate_features(p, {"cooc_pair_count": cooc}, np.array([0, 0, 1, 1]), 1, 2,
                                  np.log1p(np.array([4.0, 0.0])), np.array([2]))
    f = [dict(zip(names, row)) for row in F]
    assert f[0]["p_mean"] == pytest.approx(0.5) and f[1]["p_mean"] == pytest.approx(0.5)
    assert f[0]["p_min"] == pytest.approx(0.1) and f[0]["p_max"] == pytest.approx(0.9)
    assert f[0]["p_std"] == pytest.approx(0.4) and f[1]["p_std"] == pytest.approx(0.0)
    assert f[0]["logit_mean"] == pytest.approx(0.0, abs=1e-6)
    assert f[0]["cooc_pair_count_max"] == 3 and f[1]["cooc_pair_count_mean"] == 1
    assert f[0]["own_log_count"] == pytest.approx(np.log(5)) and f[1]["own_log_count"] == 0
    assert f[0]["n_question_items"] == 2
    # relative to the question's best: candidate 1 has the better minimum
    assert f[1]["p_min_rank"] == 0 and f[0]["p_min_rank"] == 1
    assert f[0]["p_min_gap"] == pytest.approx(-0.4) and f[1]["p_min_gap"] == 0
    # without history the count column is left out
    _, names2 = candidate_features(p, {}, np.array([0, 0, 1, 1]), 1, 2, np.zeros(2),
                                   np.array([2]), history=False)
    assert "own_log_count" not in names2 and "cooc_pair_count_max" not in names2


def _planted_questions(n, rng):
    """FITB questions where the answer never clashes with a question item (its
    WORST pair is good) while a decoy has the highest MEAN (one great pair, one
    clash): averaging picks the decoy, a ranker can learn to look at the minimum."""
    A, k = 4, 3
    p = rng.uniform(0.2, 0.5, size=(n, A, k))
    p[:, 0, :] = rng.uniform(0.55, 0.62, size=(n, k))       # the answer: all fine
    p[:, 1, 0] = 0.99                                      # the decoy: two great pairs
    p[:, 1, 1] = 0.99
    p[:, 1, 2] = 0.02                                      # ... and one clash
    perm = np.argsort(rng.random((n, A)), axis=1)          # shuffle the answer's slot
    p = np.take_along_axis(p, perm[:, :, None], axis=1)
    labels = np.argmax(perm == 0, axis=1)
    g = np.repeat(np.arange(n * A), k)
    return p.reshape(-1), g, labels, A, k


def test_ranker_picks_the_planted_answer_the_mean_misses():
    rng = np.random.default_rng(0)
    p, g, labels, A, k = _planted_questions(300, rng)
    F, names = candidate_features(p, {}, g, len(labels), A, np.zeros(len(labels) * A),
                                  np.full(len(labels), k))
    plain = p.reshape(len(labels), A, k).mean(axis=2)
    assert fitb_accuracy(plain, labels)["expected_accuracy"] < 0.05
    folds = np.arange(len(labels)) % 3
    oof = cross_fit_scores(F, labels, A, names, folds, SMALL_RANKER)
    assert fitb_accuracy(oof, labels)["expected_accuracy"] > 0.95
    r = FitbRanker(**SMALL_RANKER).fit(F, labels, A, names)
    p2, g2, labels2, _, _ = _planted_questions(50, np.random.default_rng(1))
    F2, _ = candidate_features(p2, {}, g2, 50, A, np.zeros(50 * A), np.full(50, k))
    assert (r.predict(F2, A).argmax(axis=1) == labels2).mean() > 0.95


def test_ranker_started_from_the_plain_score_only_corrects_it():
    rng = np.random.default_rng(0)
    p, g, labels, A, k = _planted_questions(300, rng)
    F, names = candidate_features(p, {}, g, len(labels), A, np.zeros(len(labels) * A),
                                  np.full(len(labels), k))
    base = F[:, names.index("logit_mean")]
    r = FitbRanker(num_boost_round=1, learning_rate=1e-6, min_data_in_leaf=5,
                   base="logit_mean").fit(F, labels, A, names)
    # one near-zero step: the scores are the base column (the plain aggregate)
    np.testing.assert_allclose(r.predict(F, A).ravel(), base, atol=1e-4)
    # with enough rounds the corrections find the planted answer
    r = FitbRanker(**SMALL_RANKER, base="logit_mean").fit(F, labels, A, names)
    assert (r.predict(F, A).argmax(axis=1) == labels).mean() > 0.95
    with pytest.raises(InputError, match="base"):
        FitbRanker(base="nope").fit(F, labels, A, names)


def test_ranker_checks_its_input():
    with pytest.raises(NotFittedError):
        FitbRanker().predict(np.zeros((4, 2)), 4)
    with pytest.raises(InputError, match="objective"):
        FitbRanker(objective="regression").fit(np.zeros((8, 1)), np.zeros(2, int), 4, ["x"])
    with pytest.raises(InputError, match="F must be"):
        FitbRanker().fit(np.zeros((8, 2)), np.zeros(2, int), 4, ["x"])


def test_redrawn_negatives_keep_the_blank_and_its_subcategory():
    subs = np.array([0] * 8 + [1] * 2)
    seen = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1], bool)
    # outfit {8, 0} with 0 blanked; a cold question: outfit {9, 3} with 3 blanked
    qs, ans, labels = [[8], [9]], [[1, 0, 2, 4], [3, 4, 5, 6]], [1, 0]
    xq, xa, xl, src = redraw_negatives(qs, ans, labels, np.array([False, True]), subs, seen,
                                       3, np.random.default_rng(0))
    assert (xl == 0).all() and sorted(src.tolist()) == [0, 0, 0, 1, 1, 1]
    for q, a, k in zip(xq, xa, src):
        assert q == qs[k] and a[0] == ans[k][labels[k]]
        negs = a[1:]
        assert len(set(negs)) == 3 and a[0] not in negs
        assert all(subs[n] == 0 and n not in q for n in negs)
        if k == 1:
            assert not seen[negs].any()   # cold questions keep unseen negatives
    # a pool of fewer than three others gives no question
    none = redraw_negatives([[9]], [[6, 7, 3, 4]], [0], np.array([True]),
                            np.array([0] * 8 + [1] * 2), np.arange(10) < 5, 2,
                            np.random.default_rng(0))
    assert none[0] == [] and len(none[3]) == 0


def test_extra_training_questions_help_and_are_never_scored():
    rng = np.random.default_rng(3)
    p, g, labels, A, k = _planted_questions(40, rng)
    F, names = candidate_features(p, {}, g, 40, A, np.zeros(40 * A), np.full(40, k))
    px, gx, lx, _, _ = _planted_questions(400, rng)
    Fx, _ = candidate_features(px, {}, gx, 400, A, np.zeros(400 * A), np.full(400, k))
    folds = np.arange(40) % 2
    params = dict(num_boost_round=40, min_data_in_leaf=20)
    few = cross_fit_scores(F, labels, A, names, folds, params)
    more = cross_fit_scores(F, labels, A, names, folds, params,
                            extra=(Fx, lx, np.arange(400) % 2))
    assert more.shape == few.shape == (40, A)
    acc = [fitb_accuracy(s, labels)["expected_accuracy"] for s in (few, more)]
    assert acc[1] > 0.95 and acc[1] >= acc[0]


def test_question_folds_keep_an_outfit_together():
    # outfit {1, 2, 3} blanked twice, outfit {7, 8, 5} once
    qs, ans = [[1, 2], [1, 3], [7, 8]], [[3, 9], [2, 9], [5, 6]]
    for seed in range(5):
        f = question_folds(qs, ans, [0, 0, 0], 2, seed)
        assert f[0] == f[1] and set(f.tolist()) <= {0, 1}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    b = make_bundle(tmp_path_factory.mktemp("bundle"), per_sub=20, n_outfits=150)
    catalog = pd.read_parquet(b.path("catalog.parquet"))
    outfits = pd.read_parquet(b.path("outfits.parquet"))
    model = CompatibilityModel(**FAST, ranker_params=SMALL_RANKER).fit(catalog, outfits)
    return b, catalog, outfits, model


def _questions(model, n=40, seed=0):
    rng = np.random.default_rng(seed)
    N = len(model.items_)
    qs = [rng.choice(N, 2, replace=False).tolist() for _ in range(n)]
    ans = [rng.choice(N, 4, replace=False).tolist() for _ in range(n)]
    return qs, ans


def test_model_cross_fits_the_ranker_on_validation_and_reports_it(fitted):
    _, _, _, model = fitted
    m = model.metrics_
    for k in ("val_fitb_ranker_cv", "val_fitb_plain", "fitb_ranker_gain"):
        assert 0 <= abs(m[k]) <= 1
    kept = m["fitb_ranker_chosen"]
    assert kept == (m["fitb_ranker_gain"] > 0) == (model.fitb_ranker_ is not None)
    # the headline validation FITB is the scorer actually used
    assert m["val_fitb"] == (m["val_fitb_ranker_cv"] if kept else m["val_fitb_plain"])


def test_ranker_off_and_bad_settings(fitted):
    _, catalog, outfits, _ = fitted
    off = CompatibilityModel(**FAST, fitb_ranker="off").fit(catalog, outfits)
    assert off.fitb_ranker_ is None and "fitb_ranker_gain" not in off.metrics_
    qs, ans = _questions(off)
    with pytest.raises(InputError, match="no FITB ranker"):
        off.score_fitb(qs, ans, "ranker")
    with pytest.raises(InputError, match="fitb_ranker"):
        CompatibilityModel(fitb_ranker="always").fit(catalog, outfits)
    with pytest.raises(InputError, match="ranker_params"):
        CompatibilityModel(ranker_params={"depth": 3}).fit(catalog, outfits)


def test_saved_ranker_round_trips_and_is_checked(fitted):
    b, _, _, model = fitted
    qs, ans = _questions(model)
    labels = np.zeros(len(qs), int)
    kept = model.fitb_ranker_
    # a ranker fitted by the real code on the model's own candidate features
    F, names, A = model._fitb_candidate_features(qs, ans)
    model.fitb_ranker_ = FitbRanker(**SMALL_RANKER).fit(F, labels, A, names)
    model.save(b.path("models"))
    assert b.path("models", RANKER_FILE).is_file()
    back = CompatibilityModel.load(b.root)
    assert back.fitb_ranker_ is not None
    np.testing.assert_allclose(back.score_fitb(qs, ans), model.score_fitb(qs, ans, "ranker"),
                               rtol=1e-6)
    meta_path = b.path("models", "compat.json")
    meta = json.loads(meta_path.read_text())
    # a manifest whose ranker features differ from the text model is refused
    bad = dict(meta, fitb_ranker=dict(meta["fitb_ranker"],
                                      feature_names=meta["fitb_ranker"]["feature_names"][:-1]))
    meta_path.write_text(json.dumps(bad))
    with pytest.raises(BundleError, match="ranker feature list"):
        CompatibilityModel.load(b.root)
    # a bundle from before the ranker (no entry) loads and scores by the plain aggregate
    old = {k: v for k, v in meta.items() if k != "fitb_ranker"}
    meta_path.write_text(json.dumps(old))
    b.path("models", RANKER_FILE).unlink()
    legacy = CompatibilityModel.load(b.root)
    assert legacy.fitb_ranker_ is None
    np.testing.assert_allclose(legacy.score_fitb(qs, ans),
                               model.score_fitb(qs, ans, model.fitb_aggregate_), rtol=1e-6)
    # the manifest names a ranker whose file is gone: refused
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="missing"):
        CompatibilityModel.load(b.root)
    # saving a model without a ranker removes a stale ranker file
    model.save(b.path("models"))
    model.fitb_ranker_ = None
    model.save(b.path("models"))
    assert not b.path("models", RANKER_FILE).is_file()
    assert json.loads(meta_path.read_text())["fitb_ranker"] is None
    model.fitb_ranker_ = kept


def test_pair_columns_naming_no_column_of_the_model_are_refused_at_fit(fitted):
    # before: dropped without a word (the ranker trained without them); which columns
    # a model has depends on its groups (no style group: no style_cos)
    _, catalog, outfits, _ = fitted
    groups = ("metadata", "colour", "cooccurrence")
    for entry in ("style_cos", "cooc_pair_cnt"):
        with pytest.raises(InputError) as e:
            CompatibilityModel(**FAST, groups=groups, ranker_params={
                "pair_columns": ["cooc_pair_count", entry]}).fit(catalog, outfits)
        said = str(e.value)
        assert said.startswith(f"ranker_params pair_columns names {entry!r}, not a pair "
                               f"feature of this model (groups used: metadata, colour, "
                               f"cooccurrence) (allowed: "), said
        assert e.value.field == "pair_columns" and e.value.value == entry
        assert "cooc_pair_count" in e.value.allowed and "style_cos" not in e.value.allowed


def test_default_pair_columns_keep_those_the_model_has(tmp_path):
    # None (the default, RANKER_DEFAULTS) names every PAIR_COLUMNS entry, style_cos
    # too: a model without the style group must still fit, on the columns it has
    from recommender.compat.model import RANKER_DEFAULTS

    assert RANKER_DEFAULTS["pair_columns"] is None
    b = make_bundle(tmp_path, per_sub=10, n_outfits=60)
    catalog = pd.read_parquet(b.path("catalog.parquet"))
    outfits = pd.read_parquet(b.path("outfits.parquet"))
    model = CompatibilityModel(**FAST, groups=("metadata", "colour", "cooccurrence"),
                               ranker_params=SMALL_RANKER).fit(catalog, outfits)
    assert "style_cos" not in model.feature_names_
