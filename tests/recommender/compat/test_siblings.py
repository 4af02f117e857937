"""Model-level ("sibling") co-occurrence: colour variants of one garment share history."""
import numpy as np
import pandas as pd
import pytest

from recommender.compat.pair_features import PairFeaturizer, sibling_key_source, sibling_keys


def _catalog():
    # models m1 (two colours), m2 (two colours), m3 (one colour); ids <model>-<colour>
    ids = ["m1-01", "m1-02", "m2-01", "m2-02", "m3-01"]
    return pd.DataFrame({"item_id": ids, "category": ["top", "top", "bottom", "bottom", "shoes"],
                         "subcategory": ["Shirt", "Shirt", "Jeans", "Jeans", "Boots"],
                         "colour": ["WHITE", "NAVY", "BLUE", "BLACK", "BLACK"],
                         "material": "", "gender": "", "image_path": ""})


# outfits over catalogue rows: m1-01 with m2-01 twice; m3-01 with m1-01, then m1-02
OUTFITS = [np.array([0, 2]), np.array([0, 2, 4]), np.array([1, 4])]


def _column(fz, X, name):
    return X[:, fz.feature_names_.index(name)]


def test_key_source_from_column_or_id():
    cat = _catalog()
    assert sibling_key_source(cat) == "item_id"
    assert sibling_keys(cat, "item_id").tolist() == ["m1", "m1", "m2", "m2", "m3"]
    assert sibling_key_source(cat.assign(model_code=["a", "a", "b", "c", "d"])) == "model_code"
    # every id its own model: no sibling groups, no such features
    assert sibling_key_source(cat.assign(item_id=list("abcde"))) is None


def test_a_new_colour_inherits_its_siblings_history():
    cat = _catalog()
    fz = PairFeaturizer(("metadata", "cooccurrence")).fit(cat, None, None, OUTFITS)
    assert "sib_pair_count" in fz.feature_names_
    items = fz.item_table(cat)
    # m2-02 (row 3) was never worn; its sibling m2-01 was worn with m1-01 twice
    X = fz.transform(items, np.array([0, 1, 0]), items, np.array([3, 3, 4]))
    assert _column(fz, X, "cooc_pair_count").tolist() == [0, 0, 1]
    # m1 and m3 met in outfits 1 (m1-01) and 2 (m1-02)
    assert _column(fz, X, "sib_pair_count").tolist() == [2, 2, 2]
    # a row from outside the catalogue: its id names the model
    new = fz.item_table(pd.DataFrame({"item_id": ["m2-99"], "category": ["bottom"],
                                      "subcategory": ["Jeans"], "colour": ["RED"]}),
                        stat_idx=np.array([-1]))
    Xn = fz.transform(new, np.array([0]), items, np.array([0]))
    assert _column(fz, Xn, "sib_pair_count").tolist() == [2]
    assert _column(fz, Xn, "cooc_pair_count").tolist() == [0]


@pytest.mark.parametrize("left_out", range(len(OUTFITS)))
def test_sibling_counts_leave_the_rows_outfit_out_exactly(left_out):
    cat = _catalog()
    fz = PairFeaturizer(("metadata", "cooccurrence")).fit(cat, None, None, OUTFITS)
    ref = PairFeaturizer(("metadata", "cooccurrence")).fit(
        cat, None, None, [o for k, o in enumerate(OUTFITS) if k != left_out])
    a, b = np.repeat(np.arange(5), 5), np.tile(np.arange(5), 5)
    got = fz.transform(fz.item_table(cat), a, outfit=np.full(len(a), left_out), ib=b)
    want = ref.transform(ref.item_table(cat), a, ib=b)
    # the counts (graph vectors are cross-fitted by fold instead: test_graph_vectors)
    sib = [k for k, n in enumerate(fz.feature_names_)
           if n.startswith("sib_") and "graph" not in n]
    np.testing.assert_allclose(got[:, sib], want[:, sib])


def test_sibling_arrays_survive_save_and_load(tmp_path):
    cat = _catalog()
    fz = PairFeaturizer(("metadata", "cooccurrence")).fit(cat, None, None, OUTFITS)
    np.savez(tmp_path / "c.npz", **fz.to_arrays())
    with np.load(tmp_path / "c.npz", allow_pickle=False) as arrs:
        back = PairFeaturizer.from_saved(fz.to_json(), arrs)
    a, b = np.array([0, 1, 3]), np.array([2, 3, 4])
    np.testing.assert_allclose(back.transform(back.item_table(cat), a, ib=b),
                               fz.transform(fz.item_table(cat), a, ib=b))


def test_numeric_model_codes_give_the_code_gap():
    cat = _catalog().assign(model_code=["57043812", "57043812", "57083800", "53012000",
                                        "5701abcd"])
    fz = PairFeaturizer(("metadata",)).fit(cat, None, None, OUTFITS)
    assert fz.code_gap_ and "model_code_gap_low" in fz.feature_names_
    X = fz.transform(fz.item_table(cat), np.array([0, 0, 0]), ib=np.array([2, 3, 4]))
    np.testing.assert_allclose(_column(fz, X, "model_code_gap"),
                               [np.log1p(39_988), np.log1p(4_031_812), np.nan], rtol=1e-6)
    np.testing.assert_allclose(_column(fz, X, "model_code_gap_low"),
                               [np.log1p(12), np.log1p(1812), np.nan], rtol=1e-6)
    off = PairFeaturizer(("metadata",), model_code_gap=False).fit(cat, None, None, OUTFITS)
    assert "model_code_gap" not in off.feature_names_
    # codes that are not numbers: no gap feature
    words = PairFeaturizer(("metadata",)).fit(cat.assign(model_code=list("aabcd")), None,
                                              None, OUTFITS)
    assert not words.code_gap_ and "model_code_gap" not in words.feature_names_


def test_explanations_name_sibling_history():
    from recommender.compat.model import CompatibilityModel

    cat = _catalog()
    # m1-01 and m2-01 worn together in 30 looks; m2-02 never worn
    outfits = pd.DataFrame({"outfit_id": [str(k) for k in range(30) for _ in (0, 1)],
                            "item_id": ["m1-01", "m2-01"] * 30})
    m = CompatibilityModel(groups=("metadata", "cooccurrence"), negatives="random",
                           num_boost_round=5, min_data_in_leaf=2).fit(cat, outfits)
    reasons = m.explain_pair(0, 3, max_reasons=5)
    assert any("other colours of these pieces were worn together in 30 looks" in r
               for r in reasons), reasons


@pytest.mark.parametrize("graph_dim", [0, 3])
def test_scoring_path_equals_the_per_field_path_with_siblings(graph_dim):
    cat = _catalog()
    fz = PairFeaturizer(("metadata", "cooccurrence"), style_folds=0,
                        graph_dim=graph_dim).fit(cat, None, None, OUTFITS)
    items = fz.item_table(cat)
    a, b = np.repeat(np.arange(5), 5), np.tile(np.arange(5), 5)
    fast = fz.transform(items, a, items, b)
    ref = fz.transform(items, a, items, b, outfit=np.full(len(a), -1))
    assert fast.dtype == ref.dtype and np.array_equal(fast, ref, equal_nan=True)
    assert "sib_two_hop" in fz.feature_names_
