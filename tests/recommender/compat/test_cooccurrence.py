import numpy as np
import pytest

from recommender.compat.cooccurrence import CooccurrenceStats

OUTFITS = [[0, 1, 2], [0, 1], [2, 3], [0, 3, 4]]
COLOUR = np.array([1, 1, 2, 2, 1])


def fit(outfits):
    return CooccurrenceStats().fit(outfits, n_items=5, fields={"colour": COLOUR},
                                   n_values={"colour": 3})


def test_counts_hand_worked():
    st = fit(OUTFITS)
    assert st.item_count(np.arange(5)).tolist() == [3, 2, 2, 2, 1]
    assert st.pair_count(np.array([0, 1, 0, 3]), np.array([1, 0, 2, 4])).tolist() == [2, 2, 1, 1]


def test_leave_one_outfit_out_counts_hand_worked():
    st = fit(OUTFITS)
    # pair (0, 1) seen in outfits 0 and 1: leaving out outfit 1 leaves 1
    assert st.pair_count(np.array([0]), np.array([1]), outfit=np.array([1])).tolist() == [1]
    # leaving out an outfit that lacks the pair changes nothing; -1 leaves none out
    assert st.pair_count(np.array([0, 0]), np.array([1, 1]),
                         outfit=np.array([2, -1])).tolist() == [2, 2]
    assert st.item_count(np.array([4, 0]), outfit=np.array([3, 3])).tolist() == [0, 2]


@pytest.mark.parametrize("left_out", range(len(OUTFITS)))
def test_leave_one_out_equals_refitting_without_the_outfit(left_out):
    # four outfits, five folds: every outfit is its own fold, so the value-level
    # tables are left out exactly too
    st = fit(OUTFITS)
    ref = fit([o for k, o in enumerate(OUTFITS) if k != left_out])
    va, vb = np.array([1, 1, 2, 2, 0]), np.array([1, 2, 1, 2, 1])
    o = np.full(len(va), left_out)
    np.testing.assert_allclose(st.pmi("colour", va, vb, o), ref.pmi("colour", va, vb))
    items = np.array([0, 1, 2, 3, 4])
    np.testing.assert_allclose(st.affinity("colour", items, vb, o),
                               ref.affinity("colour", items, vb))
    np.testing.assert_allclose(st.pair_count(items, items[::-1], o),
                               ref.pair_count(items, items[::-1]))


def _random_outfits(n_outfits=40, n_items=12, seed=0):
    rng = np.random.default_rng(seed)
    return [sorted(rng.choice(n_items, int(rng.integers(2, 5)), replace=False).tolist())
            for _ in range(n_outfits)]


def test_value_tables_are_out_of_fold_and_item_counts_leave_one_out():
    outfits = _random_outfits()
    colour = np.arange(12) % 3 + 1
    kw = dict(n_items=12, fields={"colour": colour}, n_values={"colour": 4})
    st = CooccurrenceStats().fit(outfits, **kw)
    assert sorted(set(st.fold_of_outfit_.tolist())) == list(range(CooccurrenceStats.folds))
    va, vb = np.array([1, 1, 2, 3]), np.array([1, 2, 3, 3])
    items = np.array([0, 4, 7, 11])
    for left_out in (0, 17, 39):
        fold = st.fold_of_outfit_[left_out]
        without_fold = CooccurrenceStats().fit(
            [o for k, o in enumerate(outfits) if st.fold_of_outfit_[k] != fold], **kw)
        without_one = CooccurrenceStats().fit(
            [o for k, o in enumerate(outfits) if k != left_out], **kw)
        o = np.full(len(va), left_out)
        np.testing.assert_allclose(st.pmi("colour", va, vb, o), without_fold.pmi("colour", va, vb))
        # affinity: the item's own counts without the outfit, the prior without the fold
        aff = without_one.affinity_["colour"][items, vb].astype(float)
        partners = without_one.partners_[items]
        prior = ((without_fold.row_marg_["colour"][vb] + 1.0)
                 / (without_fold.total_pairs_ + 1.0))
        want = np.log((aff + 2 * prior) / ((partners + 2) * prior))
        np.testing.assert_allclose(st.affinity("colour", items, vb, o), want)
        np.testing.assert_allclose(st.pair_count(items, items[::-1], o),
                                   without_one.pair_count(items, items[::-1]))


def test_value_lookup_of_a_training_row_does_not_depend_on_its_label():
    """The leak that exact leave-one-out had: two rows with the same values and fold,
    one from an outfit that holds both values (a positive), one from an outfit that
    does not (a negative swap), must read the same PMI."""
    outfits = _random_outfits(n_outfits=60)
    colour = np.arange(12) % 3 + 1
    st = CooccurrenceStats().fit(outfits, n_items=12, fields={"colour": colour},
                                 n_values={"colour": 4})
    values = [set(colour[o].tolist()) for o in outfits]
    found = 0
    for fold in range(st.folds):
        ks = np.flatnonzero(st.fold_of_outfit_ == fold)
        holds = [k for k in ks if {1, 2} <= values[k]]
        lacks = [k for k in ks if 2 not in values[k] and 1 in values[k]]
        if holds and lacks:
            found += 1
            o = np.array([holds[0], lacks[0]])
            p = st.pmi("colour", np.array([1, 1]), np.array([2, 2]), o)
            assert p[0] == p[1]
    assert found >= 2


def test_compact_counts_keep_every_value():
    from recommender.compat.cooccurrence import compact_counts

    for x, kind in ((np.array([0, 255.0]), np.uint8), (np.array([256.0, 3]), np.uint16),
                    (np.array([65536.0]), np.float32), (np.array([1.5]), np.float32),
                    (np.array([-1.0]), np.float32)):
        c = compact_counts(x)
        assert c.dtype == kind and np.array_equal(c.astype(np.float64), x)


def test_arrays_round_trip(tmp_path):
    st = fit(OUTFITS)
    np.savez(tmp_path / "c.npz", **st.to_arrays())
    with np.load(tmp_path / "c.npz") as arrs:
        back = CooccurrenceStats.from_arrays(arrs)
    v = np.array([1, 2])
    np.testing.assert_allclose(back.pmi("colour", v, v), st.pmi("colour", v, v))
    assert back.pair_count(np.array([0]), np.array([1])).tolist() == [2]


def test_two_hop_leave_one_outfit_out_is_exact():
    rng = np.random.default_rng(3)
    n = 12
    outfits = [rng.choice(n, size=rng.integers(2, 6), replace=False) for _ in range(25)]
    st = CooccurrenceStats().fit(outfits, n, {}, {})
    for k in (0, 7, 19):
        rest = CooccurrenceStats().fit([o for j, o in enumerate(outfits) if j != k], n, {}, {})
        a = np.repeat(np.arange(n), n)
        b = np.tile(np.arange(n), n)
        want = rest.two_hop(a, b)
        got = st.two_hop(a, b, outfit=np.full(len(a), k))
        np.testing.assert_allclose(got[a != b], want[a != b])
    # brute force without leave-one-out: A @ A
    A = np.zeros((n, n))
    for o in outfits:
        for i in o:
            for j in o:
                if i != j:
                    A[i, j] += 1
    a, b = np.array([0, 3, 5]), np.array([1, 4, 11])
    np.testing.assert_allclose(st.two_hop(a, b), (A @ A)[a, b])


def test_vectorised_tables_equal_the_per_outfit_loops():
    """The outfit-by-value and item-by-value tables equal the per-outfit loops
    they replaced (kept as float32: the counts are exact)."""
    rng = np.random.default_rng(4)
    n, V = 300, 7
    codes = rng.integers(0, V, n)
    outfits = [rng.choice(n, int(rng.integers(1, 7)), replace=False) for _ in range(150)]
    outfits.append(np.array([5, 5, 9]))  # a repeated item counts once
    st = CooccurrenceStats().fit(outfits, n, {"f": codes}, {"f": V})
    uniq = [np.unique(o) for o in outfits]
    ov = np.zeros((len(uniq), V))
    for k, o in enumerate(uniq):
        np.add.at(ov[k], codes[o], 1)
    aff = np.zeros((n, V))
    partners = np.zeros(n)
    count = np.zeros(n)
    for k, o in enumerate(uniq):
        rows = np.tile(ov[k], (len(o), 1))
        rows[np.arange(len(o)), codes[o]] -= 1
        np.add.at(aff, o, rows)
        partners[o] += len(o) - 1
        count[o] += 1
    # small whole counts: stored as uint8 (compact_counts), exactly
    assert st.outfit_values_["f"].dtype == np.uint8 == st.affinity_["f"].dtype
    assert np.array_equal(st.outfit_values_["f"], ov) and np.array_equal(st.affinity_["f"], aff)
    assert np.array_equal(st.partners_, partners) and np.array_equal(st.item_count_, count)
    assert np.array_equal(st.joint_["f"], ov.T @ ov - np.diag(ov.sum(axis=0)))
    # lookups read them as float64, with the row's outfit left out
    idx = rng.integers(0, n, 50)
    v = rng.integers(0, V, 50)
    o = rng.integers(-1, len(uniq), 50)
    assert st.affinity("f", idx, v, o).dtype == np.float64
    assert st.pmi("f", codes[idx], v, o).dtype == np.float64


def _random_stats(seed=5, n=60, V=6):
    rng = np.random.default_rng(seed)
    codes = {"f": rng.integers(0, V, n), "g": rng.integers(0, V + 3, n)}
    outfits = [rng.choice(n - 5, int(rng.integers(2, 6)), replace=False) for _ in range(80)]
    # items n-5..n-1 are never worn: empty rows of the pair table, the last one too
    st = CooccurrenceStats().fit(outfits, n, codes, {"f": V, "g": V + 3})
    return st, codes, rng


def test_two_hop_equals_the_pair_matrix_product_exactly():
    st, _, rng = _random_stats()
    n = st.n_items_
    A = st._adjacency().toarray()
    a = np.concatenate([rng.integers(0, n, 400), np.arange(n), [n - 1, 0]])
    b = np.concatenate([rng.integers(0, n, 400), np.arange(n), [0, n - 1]])  # a == b too
    assert np.array_equal(st.two_hop(a, b), (A @ A)[a, b])
    # one pair, no pair: the per-call path
    assert np.array_equal(st.two_hop(a[:1], b[:1]), (A @ A)[a[:1], b[:1]])
    assert st.two_hop(a[:0], b[:0]).shape == (0,)


def test_value_features_equal_pmi_and_affinity_bit_for_bit():
    """The scoring path's batched lookups give the per-field methods' very floats."""
    st, codes, rng = _random_stats()
    n = st.n_items_
    a, b = rng.integers(0, n, 300), rng.integers(0, n, 300)
    a[:5] = -1      # rows without history (new items): affinity 0
    b[3:9] = -1
    va = {f: codes[f][np.maximum(a, 0)] for f in codes}
    vb = {f: codes[f][np.maximum(b, 0)] for f in codes}
    got = st.value_features(["f", "g"], va, vb, a, b)
    want = []
    for f in ("f", "g"):
        aff_a, aff_b = np.zeros(len(a)), np.zeros(len(a))
        aff_a[a >= 0] = st.affinity(f, a[a >= 0], vb[f][a >= 0])
        aff_b[b >= 0] = st.affinity(f, b[b >= 0], va[f][b >= 0])
        want += [st.pmi(f, va[f], vb[f]), aff_a, aff_b]
    assert len(got) == len(want) == 6
    for g, w in zip(got, want):
        assert g.dtype == np.float64 and np.array_equal(g, w)


def test_refitting_rebuilds_the_cached_lookup_tables():
    """A refit object scores like a fresh one: no table cached from the first fit."""
    st, codes, rng = _random_stats(seed=6)
    a, b = rng.integers(0, st.n_items_, 200), rng.integers(0, st.n_items_, 200)
    va = {f: codes[f][a] for f in codes}
    vb = {f: codes[f][b] for f in codes}
    st.two_hop(a, b), st.value_features(["f", "g"], va, vb, a, b)   # fill the caches
    other = [rng.choice(st.n_items_, 4, replace=False) for _ in range(50)]
    kw = dict(n_items=st.n_items_, fields=codes, n_values={"f": 6, "g": 9})
    st.fit(other, **kw)
    fresh = CooccurrenceStats().fit(other, **kw)
    assert np.array_equal(st.two_hop(a, b), fresh.two_hop(a, b))
    for g, w in zip(st.value_features(["f", "g"], va, vb, a, b),
                    fresh.value_features(["f", "g"], va, vb, a, b)):
        assert np.array_equal(g, w)


def test_loaded_statistics_serve_the_same_lookups(tmp_path):
    st, codes, rng = _random_stats(seed=7)
    np.savez(tmp_path / "c.npz", **st.to_arrays())
    with np.load(tmp_path / "c.npz") as arrs:
        back = CooccurrenceStats.from_arrays(arrs)
    a, b = rng.integers(0, st.n_items_, 200), rng.integers(0, st.n_items_, 200)
    va = {f: codes[f][a] for f in codes}
    vb = {f: codes[f][b] for f in codes}
    assert np.array_equal(back.two_hop(a, b), st.two_hop(a, b))
    for g, w in zip(back.value_features(["f", "g"], va, vb, a, b),
                    st.value_features(["f", "g"], va, vb, a, b)):
        assert np.array_equal(g, w)
