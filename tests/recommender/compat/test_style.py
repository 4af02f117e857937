import numpy as np
import pandas as pd
import pytest

from features.exceptions import BundleError, InputError, NotFittedError
from recommender.compat.model import outfit_index_lists
from recommender.compat.pair_features import PairFeaturizer
from recommender.compat.style import StyleConfig, StyleEmbedding, same_group_swap
from tests.recommender.compat.synthetic import (palette_of, synthetic_catalog,
                                                synthetic_outfits)

FAST = StyleConfig(epochs=15, hidden=16, dim=8, batch_size=256, lr=1e-2, patience=3)


@pytest.fixture(scope="module")
def data():
    catalog = synthetic_catalog(per_sub=30)
    outfits = synthetic_outfits(catalog, n_outfits=200)
    lists = outfit_index_lists(outfits, catalog)
    colours = sorted(catalog["colour"].unique())
    codes = {"colour": catalog["colour"].map({c: k + 1 for k, c in enumerate(colours)})
             .to_numpy(np.int64),
             "category": catalog["category"].map({"top": 1, "bottom": 2, "shoes": 3})
             .to_numpy(np.int64)}
    subs = pd.factorize(catalog["subcategory"])[0].astype(np.int64)
    used = np.zeros(len(catalog), bool)
    for o in lists:
        used[o] = True
    return catalog, lists, codes, subs, used


def test_style_vectors_learn_the_palette_rule_for_cold_items(data):
    catalog, lists, codes, subs, used = data
    st = StyleEmbedding(FAST).fit(codes, {"colour": 7, "category": 4}, None, lists, subs)
    v = st.transform(codes, None)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)
    pal = catalog["colour"].map(palette_of).to_numpy()
    cold = np.flatnonzero(~used)
    cos = v[cold] @ v.T
    same = pal[cold][:, None] == pal[None, :]
    # items never in an outfit: same-palette partners score higher than the others
    assert cos[same].mean() > cos[~same].mean() + 0.3
    assert st.history_ and len(st.history_) <= FAST.epochs


def test_style_round_trip_and_errors(data):
    catalog, lists, codes, subs, _ = data
    with pytest.raises(NotFittedError):
        StyleEmbedding().transform(codes, None)
    num = np.c_[np.arange(len(catalog), dtype=float), np.full(len(catalog), np.nan)]
    st = StyleEmbedding(StyleConfig(epochs=2, hidden=0, dim=4)).fit(
        codes, {"colour": 7, "category": 4}, num, lists, subs)
    back = StyleEmbedding.from_saved(st.to_json(), st.to_arrays())
    np.testing.assert_allclose(back.transform(codes, num), st.transform(codes, num), rtol=1e-6)
    with pytest.raises(InputError, match="numeric"):
        st.transform(codes, None)
    with pytest.raises(InputError, match="outfits"):
        StyleEmbedding().fit(codes, {"colour": 7, "category": 4}, None, lists[:1], subs)
    with pytest.raises(BundleError):
        StyleEmbedding.from_saved({"config": {}}, {})


def test_style_settings_are_checked_by_name_kind_and_range():
    # before: StyleConfig(**table) was a TypeError for a misspelt key, and dim = "x",
    # epochs = 0 (no weights kept: a torch error at the end of the fit) or
    # batch_size = 0 failed only inside training
    for bad, said in (({"dimm": 8}, r"unknown style settings \['dimm'\]"),
                      ({"dim": "x"}, "style dim must be a whole number >= 1, got 'x'"),
                      ({"epochs": 0}, "style epochs must be a whole number >= 1, got 0"),
                      ({"batch_size": 0}, "style batch_size must be a whole number >= 1"),
                      ({"hidden": -1}, "style hidden must be a whole number >= 0, got -1"),
                      ({"val_fraction": 1.0}, "style val_fraction must be a number > 0 and "
                                              "< 1, got 1.0"),
                      ({"weight_decay": -1e-5}, "style weight_decay must be a number >= 0")):
        with pytest.raises(InputError, match=said):
            StyleConfig.from_dict(bad)
    assert StyleConfig.from_dict({"hidden": 0, "lr": 1}) == StyleConfig(hidden=0, lr=1)
    assert StyleConfig.from_dict(None) == StyleConfig()


def test_same_group_swap_stays_in_group():
    groups = np.array([0, 0, 1, 1, 1, 2])
    rng = np.random.default_rng(0)
    items = np.repeat(np.arange(6), 20)
    out = same_group_swap(items, groups, rng)
    np.testing.assert_array_equal(groups[out], groups[items])
    assert set(out[items == 2]) == {2, 3, 4}


def test_training_rows_use_out_of_fold_vectors(data):
    catalog, lists, _, _, _ = data
    fz = PairFeaturizer(("metadata", "style"), style=dict(vars(FAST), epochs=3),
                        style_folds=2).fit(catalog, None, None, lists)
    items = fz.item_table(catalog)
    assert fz.style_fold_vecs_.shape[:2] == (2, len(catalog))
    a, b = lists[0][:1], lists[0][1:2]
    k = fz.feature_names_.index("style_cos")
    served = fz.transform(items, a, items, b)[0, k]
    in_training = fz.transform(items, a, items, b, outfit=np.array([0]))[0, k]
    fold = fz.style_fold_vecs_[0]   # outfit 0 is in fold 0: the tower that never saw it
    assert in_training == pytest.approx(float(fold[a[0]] @ fold[b[0]]), abs=1e-5)
    assert served == pytest.approx(float(items.style[a[0]] @ items.style[b[0]]), abs=1e-5)
    # a new item gets its vector from content alone: same as its catalogue twin
    row = fz.item_table(catalog.iloc[[a[0]]], stat_idx=np.array([-1]))
    np.testing.assert_allclose(row.style[0], items.style[a[0]], rtol=1e-5)


def test_partner_feature_leaves_the_rows_outfit_out(data):
    catalog, lists, _, _, _ = data
    fz = PairFeaturizer(("metadata", "cooccurrence", "style"), style=dict(vars(FAST), epochs=2),
                        style_folds=2).fit(catalog, None, None, lists)
    items = fz.item_table(catalog)
    k_a = fz.feature_names_.index("style_partner_a")
    k_b = fz.feature_names_.index("style_partner_b")
    o = 3
    a, b = int(lists[o][0]), int(lists[o][1])
    row = fz.transform(items, [a], items, [b], outfit=np.array([o]))[0]
    fold = fz.style_fold_vecs_[o % 2]

    def partner_cos(x, y):
        # y's partners in every outfit but o, by brute force
        acc = np.zeros(fold.shape[1])
        for j, other in enumerate(lists):
            if j != o and y in other:
                acc += sum(fold[c] for c in other if c != y)
        return float(fold[x] @ acc / np.linalg.norm(acc))

    swap = fz._order(items, np.array([a]), items, np.array([b]))[0]
    got = (row[k_b], row[k_a]) if swap else (row[k_a], row[k_b])
    assert got[0] == pytest.approx(partner_cos(a, b), abs=1e-4)
    assert got[1] == pytest.approx(partner_cos(b, a), abs=1e-4)
    # served (no outfit): the full tower and all partners
    served = fz.transform(items, [a], items, [b])[0]
    full = items.style
    acc = sum(full[c] * 1.0 for other in lists if b in other for c in other if c != b)
    want = float(full[a] @ acc / np.linalg.norm(acc))
    assert (served[k_b] if swap else served[k_a]) == pytest.approx(want, abs=1e-4)


def test_transform_in_blocks_matches_one_pass(data, monkeypatch):
    """Long inputs run in blocks of rows (bounded memory at a million items); the
    vectors are those of one pass, up to a float32's last bits (BLAS sums small
    blocks in another order)."""
    from recommender.compat import style

    catalog, lists, codes, subs, _ = data
    num = np.c_[np.arange(len(catalog), dtype=float) % 7, np.ones(len(catalog))]
    st = StyleEmbedding(FAST).fit(codes, {"colour": 7, "category": 4}, num, lists, subs)
    whole = st.transform(codes, num)
    monkeypatch.setattr(style, "TRANSFORM_BLOCK", 9)
    blocked = st.transform(codes, num)
    assert blocked.shape == whole.shape == (len(catalog), FAST.dim)
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-6)
