"""Co-occurrence statistics from TRAINING outfits, with leave-one-outfit-out lookups.

Two levels:

* **item level**: how many training outfits hold an item, and how many hold a pair.
  Strong for items with history, silent for new arrivals.
* **content level**: for categorical fields (subcategory, colour, material, ...),
  how often values are worn together (a smoothed PMI table), and for each item with
  history how often its partners had a given value (an item-by-value "affinity").
  These generalise: a new white shirt inherits what white shirts are worn with.

Leakage. A training row built from outfit ``o`` must not see ``o`` in its
statistics, else a positive pair "co-occurs" because of itself. Every lookup takes
optional per-row outfit indices. Item-level counts (items, pairs, an item's
partners) subtract that outfit's own contribution exactly, computed from a dense
outfit-by-value count table: what is left is a whole count of *other* outfits, the
same quantity a held-out pair sees. The value-level tables (the PMI joint and
marginals, the affinity prior) are instead taken out *by fold* (``folds``
seeded folds of the outfits; a row reads the tables without its outfit's fold).
Exact leave-one-out there is a label leak: a positive's own outfit always holds
both of its values, a negative's often not, so its table is nudged down for
positives and up for negatives, a tiny float shift that trees learn perfectly
and that no held-out pair has (on the generated catalogue the model then
stopped at its first tree). Out of fold, the value depends on the values and the
fold only, never on the label. At test time the held-out outfits were never
counted, so no subtraction is needed.

Examples
--------
>>> import numpy as np
>>> st = CooccurrenceStats().fit([[0, 1, 2], [0, 1], [2, 3]], n_items=4,
...                               fields={"colour": np.array([1, 1, 2, 2])}, n_values={"colour": 3})
>>> st.pair_count(np.array([0, 0]), np.array([1, 3])).tolist()
[2.0, 0.0]
>>> st.pair_count(np.array([0]), np.array([1]), outfit=np.array([1])).tolist()  # outfit 1 left out
[1.0]
"""
from __future__ import annotations

import numpy as np

from features.exceptions import BundleError, NotFittedError

#: Additive smoothing of the PMI and affinity tables (in counts).
ALPHA = 1.0


def compact_counts(x: np.ndarray) -> np.ndarray:
    """Whole non-negative counts in the smallest unsigned type that holds them (else float32).

    The per-item and per-outfit value tables are counts; at a million items they
    are gigabytes in float32, and the Dask build sends one copy to every worker.
    Lookups read them back as float64, so the values are the same.

    >>> compact_counts(np.array([[0., 3.], [255., 1.]])).dtype.name
    'uint8'
    >>> compact_counts(np.array([70000.])).dtype.name, compact_counts(np.array([0.5])).dtype.name
    ('float32', 'float32')
    """
    x = np.asarray(x)
    if x.size and (x.min() < 0 or not np.array_equal(x, np.floor(x))):
        return x.astype(np.float32)
    top = x.max() if x.size else 0
    for t in (np.uint8, np.uint16):
        if top <= np.iinfo(t).max:
            return x.astype(t)
    return x.astype(np.float32)


class CooccurrenceStats:
    """Item and content co-occurrence counts of a list of outfits (catalogue indices)."""

    #: Seeded folds of the outfits for the value-level tables' out-of-fold lookups.
    folds = 5
    # Read-only views of the fitted arrays, built on first use (a loaded model pays
    # for them once, not per scoring call); fit() clears them.
    _adj = _rows = _served = None

    def fit(self, outfits: list[list[int]], n_items: int, fields: dict[str, np.ndarray],
            n_values: dict[str, int]) -> "CooccurrenceStats":
        """Count items, pairs and field values over ``outfits``.

        Parameters
        ----------
        outfits : list of lists of catalogue row indices (one list per outfit)
        n_items : catalogue size
        fields : name -> (n_items,) int codes of a categorical field (0 = unknown)
        n_values : name -> number of codes of that field
        """
        from scipy import sparse

        self._adj = self._rows = self._served = None
        outfits = [np.unique(np.asarray(o, dtype=np.int64)) for o in outfits]
        self.n_items_ = int(n_items)
        self.n_outfits_ = len(outfits)
        sizes = np.array([len(o) for o in outfits], np.int64)
        # every (outfit, member) once: the counts below are sums over these
        mem_outfit = np.repeat(np.arange(len(outfits)), sizes)
        mem_item = np.concatenate(outfits) if outfits else np.zeros(0, np.int64)
        item_count = np.bincount(mem_item, minlength=n_items).astype(np.float64)
        keys = []
        for o in outfits:
            if len(o) > 1:
                a, b = np.meshgrid(o, o, indexing="ij")
                m = a != b
                keys.append(a[m] * n_items + b[m])
        self.item_count_ = item_count
        allk = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        self.pair_keys_, self.pair_vals_ = np.unique(allk, return_counts=True)
        self.pair_vals_ = self.pair_vals_.astype(np.float64)
        # partners: number of (outfit, other item) slots next to each item
        self.partners_ = np.bincount(mem_item, (sizes - 1)[mem_outfit].astype(np.float64),
                                     minlength=n_items)
        self.fields_ = list(fields)
        self.n_values_ = {f: int(n_values[f]) for f in fields}
        self.codes_ = {f: np.asarray(fields[f], dtype=np.int32) for f in fields}
        # Counts are whole numbers, so the two big tables (outfits x values, items x
        # values: ~2 GB at a million items in float64) are kept in the smallest type
        # that holds them exactly (compact_counts) and read back as float64.
        self.outfit_values_ = {}   # f -> (n_outfits, V) counts of each value in each outfit
        self.joint_ = {}           # f -> (V, V) ordered-pair counts
        self.affinity_ = {}        # f -> (n_items, V) partner value counts
        sizes = sizes.astype(np.float64)
        self.outfit_sizes_ = sizes
        self.total_pairs_ = float((sizes * (sizes - 1)).sum())
        member = sparse.csr_matrix((np.ones(len(mem_item)), (mem_item, mem_outfit)),
                                   shape=(n_items, len(outfits)))
        for f in fields:
            V = self.n_values_[f]
            codes = self.codes_[f]
            ov = np.bincount(mem_outfit * V + codes[mem_item],
                             minlength=len(outfits) * V).astype(np.float64).reshape(-1, V)
            self.outfit_values_[f] = compact_counts(ov)
            joint = ov.T @ ov - np.diag(ov.sum(axis=0))   # ordered pairs i != j
            self.joint_[f] = joint
            # partners of item i: the value counts of its outfits, minus itself once each
            aff = np.asarray(member @ ov)
            aff[np.arange(n_items), codes] -= item_count
            self.affinity_[f] = compact_counts(aff)
        self.row_marg_ = {f: self.joint_[f].sum(axis=1) for f in fields}
        # out-of-fold value tables (module docstring): fold k's own joint counts,
        # marginals and pair total, subtracted for training rows of fold k
        k = max(1, min(int(self.folds), len(outfits)))
        self.fold_of_outfit_ = (np.random.default_rng(0x0F01D).permutation(len(outfits)) % k
                                ).astype(np.int64)
        self.fold_total_ = np.bincount(self.fold_of_outfit_, sizes * (sizes - 1), minlength=k)
        self.fold_joint_, self.fold_marg_ = {}, {}
        for f in fields:
            ov = self.outfit_values_[f].astype(np.float64)
            fj = np.stack([ov[self.fold_of_outfit_ == j].T @ ov[self.fold_of_outfit_ == j]
                           - np.diag(ov[self.fold_of_outfit_ == j].sum(axis=0))
                           for j in range(k)]) if len(outfits) else \
                np.zeros((k, self.n_values_[f], self.n_values_[f]))
            self.fold_joint_[f] = fj
            self.fold_marg_[f] = fj.sum(axis=2)
        self.set_outfits(outfits)
        return self

    def _out_of_fold(self, outfit):
        """(rows with an outfit, their folds) for the value-level tables."""
        m = outfit >= 0
        return m, self.fold_of_outfit_[outfit[m]]

    def _check(self):
        if not hasattr(self, "item_count_"):
            raise NotFittedError("CooccurrenceStats used before fit/load")

    # -- lookups (vectorised over rows; ``outfit`` = per-row outfit to leave out, -1 none)
    def _in_outfit(self, idx, outfit):
        """1.0 where item ``idx`` is in outfit ``outfit`` (row-wise), else 0."""
        res = np.zeros(len(idx), np.float64)
        if outfit is None:
            return res
        m = outfit >= 0
        if m.any():
            res[m] = self._outfit_member(idx[m], outfit[m])
        return res

    def _outfit_member(self, idx, outfit):
        keys = outfit * self.n_items_ + idx
        pos = np.searchsorted(self.member_keys_, keys)
        pos = np.clip(pos, 0, len(self.member_keys_) - 1)
        return (self.member_keys_[pos] == keys).astype(np.float64)

    def outfit_members(self, outfits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every member of each given outfit: ``(row, item)`` with ``row[j]`` the position
        in ``outfits`` whose outfit holds ``item[j]`` (for leave-one-outfit-out sums)."""
        n = self.n_items_
        lo = np.searchsorted(self.member_keys_, outfits * n)
        hi = np.searchsorted(self.member_keys_, (outfits + 1) * n)
        size = hi - lo
        row = np.repeat(np.arange(len(outfits)), size)
        start = np.repeat(lo - np.r_[0, np.cumsum(size)[:-1]], size)
        return row, self.member_keys_[np.arange(len(row)) + start] % n

    def set_outfits(self, outfits: list[list[int]]) -> None:
        """Remember outfit membership (needed only for leave-one-out lookups in training)."""
        keys = [k * self.n_items_ + np.unique(np.asarray(o, np.int64))
                for k, o in enumerate(outfits)]
        self.member_keys_ = np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.int64)

    def item_count(self, idx, outfit=None):
        """Training outfits holding each item (minus the row's own outfit)."""
        self._check()
        return self.item_count_[idx] - self._in_outfit(idx, outfit)

    def pair_count(self, a, b, outfit=None):
        """Training outfits holding both items (minus the row's own outfit)."""
        self._check()
        a = np.asarray(a, np.int64)
        b = np.asarray(b, np.int64)
        keys = a * self.n_items_ + b
        if len(self.pair_keys_):
            pos = np.clip(np.searchsorted(self.pair_keys_, keys), 0, len(self.pair_keys_) - 1)
            val = np.where(self.pair_keys_[pos] == keys, self.pair_vals_[pos], 0.0)
        else:
            val = np.zeros(len(a))
        if outfit is not None:
            val = val - self._in_outfit(a, outfit) * self._in_outfit(b, outfit) * (a != b)
        return val

    def pmi(self, field: str, va, vb, outfit=None):
        """Smoothed PMI of values ``va`` and ``vb`` of ``field`` being worn together."""
        self._check()
        joint = self.joint_[field][va, vb]
        ra = self.row_marg_[field][va]
        rb = self.row_marg_[field][vb]
        total = np.full(len(va), self.total_pairs_)
        if outfit is not None and (outfit >= 0).any():
            m, k = self._out_of_fold(outfit)   # the tables without the row's fold
            joint, ra, rb = joint.astype(np.float64), ra.astype(np.float64), rb.astype(np.float64)
            joint[m] -= self.fold_joint_[field][k, va[m], vb[m]]
            ra[m] -= self.fold_marg_[field][k, va[m]]
            rb[m] -= self.fold_marg_[field][k, vb[m]]
            total[m] -= self.fold_total_[k]
        expected = ra * rb / np.maximum(total, 1.0)
        return np.log((joint + ALPHA) / (expected + ALPHA))

    def affinity(self, field: str, idx, v_other, outfit=None):
        """Lift of value ``v_other`` among item ``idx``'s training partners (0 if none).

        log((partners with that value + a*prior) / ((partners + a) * prior)), where
        prior is the value's share of all partner slots.
        """
        self._check()
        aff = self.affinity_[field][idx, v_other].astype(np.float64)
        partners = self.partners_[idx].copy()
        marg = self.row_marg_[field][v_other].astype(np.float64)
        total = np.full(len(idx), self.total_pairs_)
        if outfit is not None and (outfit >= 0).any():
            m = outfit >= 0
            inside = np.zeros(len(idx))
            inside[m] = self._outfit_member(idx[m], outfit[m])
            ov = self.outfit_values_[field]
            own = np.zeros(len(idx))
            own[m] = (ov[outfit[m], v_other[m]].astype(np.float64)
                      - (self.codes_[field][idx[m]] == v_other[m]))
            aff = aff - inside * own
            sizes = np.zeros(len(idx))
            sizes[m] = self.outfit_sizes_[outfit[m]]
            partners = partners - inside * (sizes - 1)
            # the prior (a value's share of all partner slots) out of fold, as in pmi()
            _, k = self._out_of_fold(outfit)
            marg[m] -= self.fold_marg_[field][k, v_other[m]]
            total[m] -= self.fold_total_[k]
        prior = (marg + ALPHA) / (total + ALPHA)
        return np.log((aff + 2 * ALPHA * prior) / ((partners + 2 * ALPHA) * prior))

    def _partner_starts(self):
        """Where each item's partners start in the pair table: item i's pairs are
        ``pair_keys_[start[i]:start[i + 1]]`` (sorted keys ``i * n + partner``), a CSR
        row pointer over the saved arrays, built once (n + 1 integers)."""
        if self._rows is None:
            self._rows = np.searchsorted(self.pair_keys_,
                                         np.arange(self.n_items_ + 1) * self.n_items_)
        return self._rows

    def _shared_partners(self, a, b):
        """``sum_c A[a, c] * A[b, c]`` row-wise (A: pair counts), without sparse matrices.

        Slicing rows of a scipy CSR matrix and multiplying them costs ~0.15 ms per
        call whatever the number of rows (index checks, four matrices built), paid
        on every scoring call. Here each pair walks the partners of its item with
        fewer partners and looks each up in the other's row (the sum is over the
        partners both share). The terms are products of whole counts, so their
        float64 sum is exact in any order: the value is the matrix product's.
        """
        start = self._partner_starts()
        la, lb = start[a + 1] - start[a], start[b + 1] - start[b]
        walk_a = la <= lb
        walk, other = np.where(walk_a, a, b), np.where(walk_a, b, a)
        size = np.minimum(la, lb)
        row = np.repeat(np.arange(len(a)), size)
        # position of each walked entry in the pair table: its row's start + its rank
        first = np.repeat(start[walk] - np.r_[0, np.cumsum(size)[:-1]], size)
        pos = np.arange(len(row)) + first
        partner = self.pair_keys_[pos] % self.n_items_
        prod = self.pair_vals_[pos] * self.pair_count(other[row], partner)
        return np.bincount(row, prod, minlength=len(a))

    def _serving_tables(self):
        """Per field, the PMI of every value pair and each value's partner-slot prior,
        with no outfit left out (what every scoring call outside training reads).

        The same float64 operations as :meth:`pmi` and :meth:`affinity` on the whole
        tables at once (V x V with V at most a few hundred values), so a lookup
        is one gather and gives the very same numbers.
        """
        if self._served is None:
            total = np.maximum(self.total_pairs_, 1.0)
            served = {}
            for f in self.fields_:
                marg = self.row_marg_[f]
                expected = marg[:, None] * marg[None, :] / total
                pmi = np.log((self.joint_[f] + ALPHA) / (expected + ALPHA))
                prior = (marg.astype(np.float64) + ALPHA) / (self.total_pairs_ + ALPHA)
                served[f] = (pmi, prior)
            self._served = served
        return self._served

    def value_features(self, fields, va: dict, vb: dict, a, b) -> list[np.ndarray]:
        """``[pmi(f, va[f], vb[f]), affinity(f, a, vb[f]), affinity(f, b, va[f])]`` of
        each field in turn, with no outfit left out; 0 affinity where ``a`` (``b``) is
        -1 (no history).

        The scoring path: the per-field calls cost ~0.4 ms of numpy overhead for a
        handful of pairs; here the PMI is a table lookup and the affinities of all
        fields are one array expression, element by element the same as theirs.
        """
        self._check()
        a = np.asarray(a, np.int64)
        b = np.asarray(b, np.int64)
        served = self._serving_tables()
        fields = list(fields)
        n, F = len(a), len(fields)
        ia, ib = np.maximum(a, 0), np.maximum(b, 0)
        # (side, field, row): side 0 is a's affinity for b's values, 1 the mirror
        aff = np.empty((2, F, n))
        prior = np.empty((2, F, n))
        for k, f in enumerate(fields):
            aff[0, k] = self.affinity_[f][ia, vb[f]]
            aff[1, k] = self.affinity_[f][ib, va[f]]
            prior[0, k] = served[f][1][vb[f]]
            prior[1, k] = served[f][1][va[f]]
        partners = np.stack([self.partners_[ia], self.partners_[ib]])[:, None, :]
        lift = np.log((aff + 2 * ALPHA * prior) / ((partners + 2 * ALPHA) * prior))
        lift[0][:, a < 0] = 0.0
        lift[1][:, b < 0] = 0.0
        out = []
        for k, f in enumerate(fields):
            out += [served[f][0][va[f], vb[f]], lift[0, k], lift[1, k]]
        return out

    def _adjacency(self):
        """Sparse (n, n) matrix of pair counts (built once, from the saved pair table)."""
        if getattr(self, "_adj", None) is None:
            from scipy import sparse

            n = self.n_items_
            rows, cols = np.divmod(self.pair_keys_, n)
            self._adj = sparse.csr_matrix((self.pair_vals_, (rows, cols)), shape=(n, n))
        return self._adj

    def two_hop(self, a, b, outfit=None):
        """Shared partners: sum over items c of pair_count(a, c) * pair_count(b, c).

        Two items never worn together may still share many partners (the same
        collection, styled around the same pieces). With ``outfit``, the row's own
        outfit is taken out exactly: with A the pair-count matrix and M the
        outfit's clique, (A - M)^2[a, b] = A^2[a, b] - sum_c M[a, c] A[b, c] -
        sum_c M[b, c] A[a, c] + sum_c M[a, c] M[b, c].

        >>> st = CooccurrenceStats().fit([[0, 1], [1, 2], [0, 2, 3]], 4, {}, {})
        >>> st.two_hop(np.array([0]), np.array([2])).tolist()   # via 1 and 3
        [2.0]
        >>> st.two_hop(np.array([0]), np.array([2]), outfit=np.array([2])).tolist()
        [1.0]
        """
        self._check()
        a = np.asarray(a, np.int64)
        b = np.asarray(b, np.int64)
        val = self._shared_partners(a, b)
        if outfit is None or not (np.asarray(outfit) >= 0).any():
            return val
        o = np.asarray(outfit, np.int64)
        m = np.flatnonzero(o >= 0)
        rep, c = self.outfit_members(o[m])
        ra, rb = a[m][rep], b[m][rep]
        in_a = self._outfit_member(a[m], o[m])
        in_b = self._outfit_member(b[m], o[m])
        # sum over c in o, c != a of A[b, c] (and the mirror), in pair-count lookups
        s_b = np.bincount(rep, self.pair_count(rb, c) * (c != ra), len(m))
        s_a = np.bincount(rep, self.pair_count(ra, c) * (c != rb), len(m))
        size = np.bincount(rep, minlength=len(m))
        # sum_c M[a, c] M[b, c]: the outfit's other members (a == b happens at model
        # level, two colours of one garment)
        both = np.where(a[m] != b[m], in_a * in_b * np.maximum(size - 2, 0),
                        in_a * np.maximum(size - 1, 0))
        val[m] = val[m] - in_a * s_b - in_b * s_a + both
        return np.maximum(val, 0.0)

    # -- persistence -------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (no pickle)."""
        self._check()
        out = {"item_count": self.item_count_, "pair_keys": self.pair_keys_,
               "pair_vals": self.pair_vals_, "partners": self.partners_,
               "outfit_sizes": self.outfit_sizes_,
               "meta": np.array([self.n_items_, self.n_outfits_], np.int64),
               "total_pairs": np.array([self.total_pairs_])}
        for f in self.fields_:
            out[f"joint__{f}"] = self.joint_[f]
            out[f"affinity__{f}"] = self.affinity_[f].astype(np.float32)
            out[f"codes__{f}"] = self.codes_[f]
        return out

    @classmethod
    def from_arrays(cls, arrs) -> "CooccurrenceStats":
        """Inverse of :meth:`to_arrays` (outfit tables are not kept: no leave-one-out)."""
        st = cls()
        try:
            st.item_count_ = np.asarray(arrs["item_count"])
            st.pair_keys_ = np.asarray(arrs["pair_keys"])
            st.pair_vals_ = np.asarray(arrs["pair_vals"])
            st.partners_ = np.asarray(arrs["partners"])
            st.outfit_sizes_ = np.asarray(arrs["outfit_sizes"])
            st.n_items_, st.n_outfits_ = (int(x) for x in arrs["meta"])
            st.total_pairs_ = float(arrs["total_pairs"][0])
            st.fields_ = [k.split("__", 1)[1] for k in arrs.files if k.startswith("joint__")] \
                if hasattr(arrs, "files") else [k.split("__", 1)[1] for k in arrs
                                                if k.startswith("joint__")]
            st.joint_ = {f: np.asarray(arrs[f"joint__{f}"]) for f in st.fields_}
            st.affinity_ = {f: compact_counts(np.asarray(arrs[f"affinity__{f}"]))
                            for f in st.fields_}
            st.codes_ = {f: np.asarray(arrs[f"codes__{f}"]) for f in st.fields_}
        except KeyError as exc:
            raise BundleError(f"co-occurrence file lacks array {exc}") from exc
        st.n_values_ = {f: st.joint_[f].shape[0] for f in st.fields_}
        st.row_marg_ = {f: st.joint_[f].sum(axis=1) for f in st.fields_}
        st.outfit_values_ = {}
        return st
