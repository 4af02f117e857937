"""Co-occurrence graph vectors: communities beyond two hops, cross-fitted for training rows."""
import numpy as np
import pandas as pd

from recommender.compat.cooccurrence import CooccurrenceStats
from recommender.compat.pair_features import PairFeaturizer, graph_vectors


def _two_communities(n_outfits=40, seed=0):
    """Items 0-9 are only worn among themselves, items 10-19 likewise; 20-23 never."""
    rng = np.random.default_rng(seed)
    return [rng.choice(10, 3, replace=False) + 10 * ((k // 2) % 2) for k in range(n_outfits)]


def test_vectors_separate_communities_and_leave_unworn_items_empty():
    st = CooccurrenceStats().fit(_two_communities(), 24, {}, {})
    # two components: the top two vectors say which one an item is in
    v = graph_vectors(st, 2)
    same = [v[i] @ v[j] for i in range(10) for j in range(10) if i != j]
    other = [v[i] @ v[j] for i in range(10) for j in range(10, 20)]
    np.testing.assert_allclose(same, 1, atol=1e-5)
    np.testing.assert_allclose(other, 0, atol=1e-5)
    assert not np.abs(v[20:]).any()


def test_training_rows_read_the_fold_without_their_outfit():
    cat = pd.DataFrame({"item_id": [f"i{k}" for k in range(24)], "category": "top",
                        "subcategory": "Shirt", "colour": "WHITE"})
    outfits = _two_communities()
    fz = PairFeaturizer(("metadata", "cooccurrence"), style_folds=2, graph_dim=4).fit(
        cat, None, None, outfits)
    assert "graph_cos" in fz.feature_names_ and "sib_graph_cos" not in fz.feature_names_
    col = fz.feature_names_.index("graph_cos")
    items = fz.item_table(cat)
    a, b = np.array([0, 0, 0, 20]), np.array([1, 11, 2, 1])
    for fold in (0, 1):
        # outfit index `fold` is in fold `fold`: its rows read the other folds' graph
        got = fz.transform(items, a, ib=b, outfit=np.full(4, fold))[:, col]
        rest = CooccurrenceStats().fit([o for m, o in enumerate(outfits) if m % 2 != fold],
                                       24, {}, {})
        v = graph_vectors(rest, 4)
        # an item without history in those folds has no vector: NaN, not a cosine
        want = [v[i] @ v[j] if np.abs(v[i]).sum() and np.abs(v[j]).sum() else np.nan
                for i, j in zip(a[:3], b[:3])]
        np.testing.assert_allclose(got[:3], want, rtol=1e-5, atol=1e-6)
        assert np.isnan(got[3])   # item 20 has no history
    # scoring rows (no outfit) read the graph of all outfits
    full = graph_vectors(CooccurrenceStats().fit(outfits, 24, {}, {}), 4)
    np.testing.assert_allclose(fz.transform(items, a[:1], ib=b[:1])[:, col], [full[0] @ full[1]],
                               rtol=1e-5, atol=1e-6)
    off = PairFeaturizer(("metadata", "cooccurrence"), graph_dim=0).fit(cat, None, None, outfits)
    assert "graph_cos" not in off.feature_names_
