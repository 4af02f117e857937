"""The compatibility stage at catalogue scale: bounded training rows, blockwise
pair features, pool views for the validation questions; each checked against the
plain computation it replaces."""
import numpy as np
import pandas as pd
import pytest

from recommender.compat.model import (CompatibilityModel, SubPools, train_booster,
                                      training_sample, transform_blocks, validation_fitb)
from tests.recommender.compat.synthetic import make_bundle

FAST = dict(num_boost_round=30, num_leaves=7, min_data_in_leaf=5, learning_rate=0.1,
            early_stopping_rounds=10, negatives="mixed")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    b = make_bundle(tmp_path_factory.mktemp("scale"), per_sub=30, n_outfits=200)
    return pd.read_parquet(b.path("catalog.parquet")), pd.read_parquet(b.path("outfits.parquet"))


def _reference_validation_fitb(outfits, subs, rng, seen=None):
    """The list-copying version the pool views replaced."""
    pools = {}
    for i, s in enumerate(subs):
        pools.setdefault(int(s), []).append(i)
    qs, ans, labels = [], [], []
    for o in outfits:
        cand = [i for i in o if seen is None or not seen[i]]
        rng.shuffle(cand)
        for blank in cand:
            pool = [c for c in pools[int(subs[blank])] if c not in set(o)
                    and (seen is None or not seen[c])]
            if len(pool) >= 3:
                negs = list(rng.choice(pool, 3, replace=False))
                qs.append([i for i in o if i != blank])
                ans.append([blank] + negs)
                labels.append(0)
    return qs, ans, labels


@pytest.mark.parametrize("cold", [False, True])
def test_validation_questions_match_the_list_copying_draw(cold):
    rng = np.random.default_rng(3)
    subs = np.r_[rng.integers(0, 6, 600), [6, 6, 6, 7]]  # two tiny pools (skips)
    seen = rng.random(len(subs)) < 0.5
    outfits = [np.unique(rng.choice(len(subs), int(rng.integers(2, 6)), replace=False))
               for _ in range(120)]
    outfits += [np.array([600, 601, 602, 603])]
    pools = SubPools(subs, keep=~seen) if cold else SubPools(subs)
    new = validation_fitb(outfits, subs, np.random.default_rng(9), pools, seen if cold else None)
    ref = _reference_validation_fitb(outfits, subs, np.random.default_rng(9),
                                     seen if cold else None)
    assert len(new[0]) > 50
    assert [list(map(int, a)) for a in new[1]] == [list(map(int, a)) for a in ref[1]]
    assert new[0] == ref[0] and new[2] == ref[2]


def test_sub_pools_view_is_the_filtered_list():
    rng = np.random.default_rng(0)
    subs = rng.integers(0, 3, 200)
    keep = rng.random(200) < 0.7
    p = SubPools(subs, keep=keep)
    for _ in range(50):
        s = int(rng.integers(0, 4))
        drop = rng.choice(200, 5, replace=False)
        want = [i for i in range(200) if subs[i] == s and keep[i] and i not in set(drop)]
        v = p.without(s, drop)
        assert len(v) == len(want)
        assert v[np.arange(len(v))].tolist() == want
    with pytest.raises(IndexError):
        p.without(0, [])[np.array([10_000])]


def test_training_sample_is_seeded_and_bounded():
    assert training_sample(100, None, 0) is None and training_sample(100, 100, 0) is None
    a, b = training_sample(1000, 50, 1), training_sample(1000, 50, 1)
    assert np.array_equal(a, b) and len(np.unique(a)) == 50 and a.max() < 1000
    assert not np.array_equal(a, training_sample(1000, 50, 2))


def test_blockwise_pair_features_equal_one_call(data):
    catalog, outfits = data
    m = CompatibilityModel(**FAST).fit(catalog, outfits)
    fz, items = m.featurizer_, m.items_
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, len(catalog), (2, 1000))
    o = rng.integers(-1, 50, 1000)
    whole = fz.transform(items, a, items, b, outfit=o)
    blocks = transform_blocks(fz, items, a, b, o, block=77)
    assert blocks.dtype == np.float32 and np.array_equal(whole, blocks, equal_nan=True)


def test_capped_training_rows_come_from_the_sampled_outfits(data):
    catalog, outfits = data
    seen = {}

    def recording_trainer(params, fz, items, train, val, **kw):
        seen["train"] = train
        return train_booster(params, fz, items, train, val, **kw)

    m = CompatibilityModel(max_train_outfits=40, **FAST).fit(catalog, outfits,
                                                             trainer=recording_trainer)
    met = m.metrics_
    assert met["n_pair_outfits"] == 40 and met["n_fit_outfits"] == 170
    a, b, o, y = seen["train"]
    # the outfit numbers index the full fit list (leave-one-out reads them):
    # 40 distinct outfits, and each positive pair lies in the outfit it names
    from recommender.compat.model import outfit_index_lists

    lists = outfit_index_lists(outfits, catalog)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(lists))
    fit = [lists[k] for k in sorted(perm[30:])]
    assert len(np.unique(o)) == 40
    for ai, bi, oi in zip(a[y == 1], b[y == 1], o[y == 1]):
        assert ai in fit[oi] and bi in fit[oi]
    # uncapped (the cap above the count) is the very model the default gives
    full = CompatibilityModel(**FAST).fit(catalog, outfits)
    same = CompatibilityModel(max_train_outfits=10_000, **FAST).fit(catalog, outfits)
    assert full.booster_.model_to_string() == same.booster_.model_to_string()
    assert full.metrics_["n_pair_outfits"] == 170


def test_validation_outfits_capped(data):
    catalog, outfits = data
    m = CompatibilityModel(max_val_outfits=12, **FAST).fit(catalog, outfits)
    assert m.metrics_["n_val_outfits"] == 12 and m.metrics_["n_fit_outfits"] == 188


def test_category_centroids_equal_the_per_outfit_loop(data):
    """The mean partner-category embeddings, bit for bit what the loop summed."""
    catalog, outfits = data
    from recommender.compat.model import outfit_index_lists
    from recommender.compat.pair_features import ItemTable, PairFeaturizer

    lists = outfit_index_lists(outfits, catalog)
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(len(catalog), 8)).astype(np.float32)
    fz = PairFeaturizer(groups=("metadata", "embedding")).fit(catalog, None, emb, lists)
    items = fz.item_table(catalog, None, emb)
    C = len(fz.vocab_["category"]) + 1
    acc, cnt = np.zeros((C, C, 8)), np.zeros((C, C))
    cat = items.codes["category"]
    for o in lists:
        o = np.unique(o)
        for i in o:
            for c2 in np.unique(cat[o[o != i]]):
                acc[cat[i], c2] += items.emb[i]
                cnt[cat[i], c2] += 1
    cen = acc / np.maximum(cnt[..., None], 1)
    norm = np.linalg.norm(cen, axis=-1, keepdims=True)
    want = (cen / np.where(norm > 0, norm, 1)).astype(np.float32)
    assert cnt.sum() > 100 and np.array_equal(fz.centroids_, want)
