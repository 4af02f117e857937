"""Candidate generation: which pairs the compatibility model scores when the graph is built.

Scoring every pair of a million-item catalogue is out of reach (10^12 pairs), and
most pairs are nonsense, so the graph scores only candidates, per category pair:

- **embedding neighbours**: the ``k`` items of the target category whose visual
  embedding is closest (cosine) to the query item's. Exact blocked matrix products
  while the target category is small (``exact_max`` items); above that an
  inverted-file (IVF) index: k-means lists of about ``list_size`` items, each
  query scanning the ``n_probe`` lists nearest to it. Lists of constant size make
  the scan cost per query constant, so the build grows near-linearly. Choosing
  the lists is ``n / list_size`` dot products and ``n_probe`` argmax passes per
  query, the one per-query cost that grows with ``n``: ~0.3 us at 10^5 items,
  ~0.6 us at 10^6, against ~15 us for the scan. Recall against exact search falls
  as a category outgrows a few lists (``benchmarks/graph_build.py`` measures it);
  ``n_probe`` buys it back at a cost proportional to it.
- **co-occurrence**: items worn with the query in training outfits.
- **two-hop co-occurrence**: items worn with the query's nearest same-category
  neighbours -- how a new item with no outfit history inherits partners.
- **popular**: the target category's most-worn items, a safety net.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> emb = rng.normal(size=(50, 8)).astype(np.float32)
>>> emb /= np.linalg.norm(emb, axis=1, keepdims=True)
>>> nbr, sim = exact_neighbours(emb[:3], emb, 2, exclude=np.arange(3))
>>> nbr.shape, bool((nbr[:, 0] != np.arange(3)).all())
((3, 2), True)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def _topk_unordered(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices (m, k) of each row's ``k`` largest entries, in column order.

    ``np.partition`` finds each row's k-th largest value (values only: about five
    times cheaper than ``argpartition``), then one ``nonzero`` pass collects the
    entries at or above it; ties at the threshold keep the lowest columns.
    Requires ``k < scores.shape[1]``.
    """
    m, n = scores.shape
    th = np.partition(scores, n - k, axis=1)[:, n - k]
    r, c = np.nonzero(scores >= th[:, None])
    if len(r) != m * k:
        # ties at the threshold: everything above it, then the lowest columns equal to it
        above = scores[r, c] > th[r]
        need = k - np.bincount(r[above], minlength=m)
        eq = (~above).astype(np.int64)
        cs = np.cumsum(eq)
        start = np.searchsorted(r, np.arange(m))
        eq_rank = cs - (cs[start] - eq[start])[r] - 1
        c = c[above | (eq_rank < need[r])]
    return c.reshape(m, k)


def _topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's ``k`` largest entries, best first
    (ties: lower column first)."""
    m, n = scores.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((m, 0), np.int64), np.zeros((m, 0), scores.dtype)
    part = _topk_unordered(scores, k) if k < n else np.broadcast_to(np.arange(n), (m, n))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return (np.take_along_axis(part, order, axis=1).astype(np.int64),
            np.take_along_axis(vals, order, axis=1))


def exact_neighbours(queries: np.ndarray, base: np.ndarray, k: int, *,
                     exclude: np.ndarray | None = None, block: int = 2048
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``base`` by inner product with each query, exactly.

    ``exclude[q]`` is a row of ``base`` never returned for query ``q`` (the query
    itself; -1 for none). Blocks of ``block`` queries bound the memory.
    Returns ``(idx (nq, k) into base, sims (nq, k))``; -1/-inf pad when base is short.
    """
    nq = len(queries)
    k_eff = min(k, len(base))
    idx = np.full((nq, k), -1, dtype=np.int64)
    sims = np.full((nq, k), -np.inf, dtype=np.float32)
    for s in range(0, nq, block):
        q = np.asarray(queries[s:s + block], dtype=np.float32)
        sc = q @ np.asarray(base, dtype=np.float32).T
        if exclude is not None:
            ex = exclude[s:s + block]
            rows = np.flatnonzero(ex >= 0)
            sc[rows, ex[rows]] = -np.inf
        i, v = _topk_rows(sc, k_eff)
        idx[s:s + len(q), :k_eff] = i
        sims[s:s + len(q), :k_eff] = v
    idx[~np.isfinite(sims)] = -1
    return idx, sims


#: Scores computed at once when a list is scanned (float32: 128 MB).
SCORE_BLOCK = 32_000_000


class IVFIndex:
    """A flat inverted-file index over L2-normalised vectors (numpy only).

    Parameters
    ----------
    list_size : int
        Target items per list (the number of lists is ``n / list_size``).
    n_iter : int
        k-means iterations, on a sample of at most ``sample`` vectors.
    random_state : int

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 16)).astype(np.float32)
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> ivf = IVFIndex(list_size=100).fit(x)
    >>> idx, sim = ivf.search(x[:5], 3, n_probe=4)
    >>> bool((idx[:, 0] == np.arange(5)).all())
    True
    """

    def __init__(self, list_size: int = 512, n_iter: int = 6, sample: int = 50_000,
                 random_state: int = 0):
        self.list_size = list_size
        self.n_iter = n_iter
        self.sample = sample
        self.random_state = random_state

    def fit(self, x: np.ndarray) -> "IVFIndex":
        x = np.asarray(x, dtype=np.float32)
        rng = np.random.default_rng(self.random_state)
        n_lists = max(1, int(np.ceil(len(x) / self.list_size)))
        sample = x[rng.choice(len(x), min(len(x), max(self.sample, 4 * n_lists)),
                              replace=False)]
        cent = sample[rng.choice(len(sample), n_lists, replace=False)].copy()
        for _ in range(self.n_iter):  # spherical k-means
            assign = self._assign(sample, cent)
            sums = np.zeros_like(cent)
            np.add.at(sums, assign, sample)
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            empty = norms[:, 0] == 0
            cent = np.where(empty[:, None], cent, sums / np.maximum(norms, 1e-12))
        assign = self._assign(x, cent)
        order = np.argsort(assign, kind="stable")
        self.centroids_ = cent
        self.order_ = order  # base rows grouped by list
        self.where_ = np.empty(len(order), dtype=np.int64)  # row -> position in base_
        self.where_[order] = np.arange(len(order))
        self.offsets_ = np.concatenate([[0], np.cumsum(np.bincount(assign,
                                                                   minlength=n_lists))])
        self.base_ = x[order]
        return self

    @staticmethod
    def _assign(x: np.ndarray, cent: np.ndarray, block: int = 8192) -> np.ndarray:
        out = np.empty(len(x), dtype=np.int64)
        for s in range(0, len(x), block):
            out[s:s + block] = np.argmax(x[s:s + block] @ cent.T, axis=1)
        return out

    def probes(self, queries: np.ndarray, n_probe: int, *, block: int = 2048
               ) -> np.ndarray:
        """The ``n_probe`` lists nearest each query, (nq, n_probe), ascending list id.

        In blocks of ``block`` queries: the (block, n_lists) centroid scores stay
        in cache however many lists there are (at 10^6 items, 65,536 queries x
        489 lists was a 128 MB matrix partitioned from main memory). This is the
        one step whose cost per query grows with ``n`` (``n / list_size`` lists):
        ~0.3 us a query at 10^5 items, ~0.6 us at 10^6.
        """
        q = np.asarray(queries, dtype=np.float32)
        n_lists = len(self.centroids_)
        n_probe = min(n_probe, n_lists)
        if n_probe == n_lists:
            return np.broadcast_to(np.arange(n_lists), (len(q), n_lists))
        out = np.empty((len(q), n_probe), dtype=np.int64)
        for s in range(0, len(q), block):
            cs = q[s:s + block] @ self.centroids_.T
            if n_probe > 8:
                out[s:s + block] = _topk_unordered(cs, n_probe)
                continue
            # a few probes: repeated argmax is ~4x cheaper than a partition over
            # hundreds of lists, and picks the same lists (ties: lowest id first)
            rows = np.arange(len(cs))
            for j in range(n_probe):
                best = cs.argmax(axis=1)
                out[s + rows, j] = best
                cs[rows, best] = -np.inf
            out[s:s + block].sort(axis=1)
        return out

    def search(self, queries: np.ndarray, k: int, *, n_probe: int = 2,
               exclude: np.ndarray | None = None, block: int = 65_536
               ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` (rows of the fitted ``x``), best first; -1 pads.

        ``exclude[q]`` is a row of ``x`` never returned for query ``q`` (-1: none).
        Queries go in blocks of ``block``; within a block every (query, probe)
        pair is grouped by list, so each list is scanned once per block with one
        dense product for all the queries that probe it, and its top ``k`` go to a
        ``(query, probe rank)`` slot. One vectorised top-``k`` over the
        ``n_probe * k`` slots of each query finishes the block. The Python loop
        runs over lists, never over queries or items.
        """
        q = np.asarray(queries, dtype=np.float32)
        nq = len(q)
        n_lists = len(self.centroids_)
        n_probe = min(n_probe, n_lists)
        best_i = np.full((nq, k), -1, dtype=np.int64)
        best_v = np.full((nq, k), -np.inf, dtype=np.float32)
        kk = min(k, int(np.diff(self.offsets_).max(initial=0)))
        if nq == 0 or kk == 0:
            return best_i, best_v
        for s in range(0, nq, block):
            qb = q[s:s + block]
            nb = len(qb)
            ex = None if exclude is None else np.asarray(exclude[s:s + block], np.int64)
            probes = self.probes(qb, n_probe)                             # (nb, n_probe)
            cand_i = np.full((nb, n_probe, kk), -1, dtype=np.int64)
            cand_v = np.full((nb, n_probe, kk), -np.inf, dtype=np.float32)
            flat = probes.ravel()                                         # qi * n_probe + r
            order = np.argsort(flat, kind="stable")
            bounds = np.searchsorted(flat[order], np.arange(n_lists + 1))
            for l in np.flatnonzero(np.diff(bounds)):
                a, b = int(self.offsets_[l]), int(self.offsets_[l + 1])
                if a == b:
                    continue
                pos_all = order[bounds[l]:bounds[l + 1]]
                # the queries probing one list in pieces of at most SCORE_BLOCK scores:
                # lists are not always balanced (a million image-less items share one
                # zero embedding, so one list held 219k of them, and 65k queries x
                # 219k scores was 53 GB)
                step = max(1, SCORE_BLOCK // (b - a))
                for p0 in range(0, len(pos_all), step):
                    pos = pos_all[p0:p0 + step]
                    qi, r = pos // n_probe, pos % n_probe
                    sc = qb[qi] @ self.base_[a:b].T                       # (len(qi), b - a)
                    if ex is not None:
                        e = ex[qi]
                        loc = np.where(e >= 0, self.where_[np.maximum(e, 0)] - a, -1)
                        hit = np.flatnonzero((loc >= 0) & (loc < b - a))
                        sc[hit, loc[hit]] = -np.inf
                    if kk < b - a:  # unordered: the merge below sorts the survivors
                        ii = _topk_unordered(sc, kk)
                        vv = np.take_along_axis(sc, ii, axis=1)
                    else:
                        ii, vv = np.broadcast_to(np.arange(b - a), sc.shape), sc
                    cand_i[qi, r, :ii.shape[1]] = self.order_[a:b][ii]
                    cand_v[qi, r, :ii.shape[1]] = vv
            ti, tv = _topk_rows(cand_v.reshape(nb, -1), min(k, n_probe * kk))
            best_i[s:s + nb, :ti.shape[1]] = np.take_along_axis(cand_i.reshape(nb, -1), ti, 1)
            best_v[s:s + nb, :ti.shape[1]] = tv
        best_i[~np.isfinite(best_v)] = -1
        return best_i, best_v


class CategoryIndex:
    """Nearest-neighbour search among a fixed set of catalogue rows (one category).

    Built once and searched by every batch of queries (the graph build searches
    each category from many others): exact blocked products up to ``exact_max``
    rows, an :class:`IVFIndex` above. A query never gets itself.

    >>> rng = np.random.default_rng(0)
    >>> emb = rng.normal(size=(30, 4)).astype(np.float32)
    >>> ix = CategoryIndex(emb, np.arange(10, 30))
    >>> nb, _ = ix.search(emb, np.array([10, 0]), 3)
    >>> bool(nb.min() >= 10 and 10 not in nb[0])
    True
    """

    def __init__(self, emb: np.ndarray, base_idx: np.ndarray, *, exact_max: int = 20_000,
                 list_size: int = 512, n_probe: int = 3, random_state: int = 0):
        base_idx = np.asarray(base_idx, dtype=np.int64)
        base = np.asarray(emb[base_idx], dtype=np.float32)
        # Items without an embedding (no usable image: an all-zero row) are nobody's
        # visual neighbour and have none: every cosine with them is 0, so they only
        # filled result lists with ties, and in the IVF index they all fell into one
        # list that every such query scanned (a million image-less items: quadratic).
        has = np.abs(base).max(axis=1) > 0 if len(base) else np.zeros(0, bool)
        self.base_idx = base_idx[has]
        base = base[has]
        self.n_probe = n_probe
        self.exact = len(self.base_idx) <= exact_max
        if self.exact:
            self.base = base
            self.ivf = None
        else:
            self.base = None
            self.ivf = IVFIndex(list_size=list_size, random_state=random_state).fit(base)
        self._sorted = np.sort(self.base_idx)
        self._sorted_pos = np.argsort(self.base_idx, kind="stable")

    def local(self, rows: np.ndarray) -> np.ndarray:
        """Position in the base of each catalogue row (-1 when not in it)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(self._sorted) == 0:
            return np.full(len(rows), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, rows), len(self._sorted) - 1)
        return np.where(self._sorted[at] == rows, self._sorted_pos[at], -1)

    def search(self, emb: np.ndarray, query_idx: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Catalogue rows (nq, k) of the nearest base items (-1 pads) and cosines."""
        query_idx = np.asarray(query_idx, dtype=np.int64)
        if len(self.base_idx) == 0 or len(query_idx) == 0:
            return (np.full((len(query_idx), k), -1, np.int64),
                    np.full((len(query_idx), k), -np.inf, np.float32))
        out_i = np.full((len(query_idx), k), -1, np.int64)
        out_v = np.full((len(query_idx), k), -np.inf, np.float32)
        queries = np.asarray(emb[query_idx], dtype=np.float32)
        live = np.flatnonzero(np.abs(queries).max(axis=1) > 0)  # no embedding: no neighbours
        if len(live) == 0:
            return out_i, out_v
        exclude = self.local(query_idx[live])
        if self.exact:
            loc, sims = exact_neighbours(queries[live], self.base, k, exclude=exclude)
        else:
            loc, sims = self.ivf.search(queries[live], k, n_probe=self.n_probe, exclude=exclude)
        out_i[live, :loc.shape[1]] = np.where(loc >= 0, self.base_idx[np.maximum(loc, 0)], -1)
        out_v[live, :sims.shape[1]] = sims
        return out_i, out_v


def neighbours_in(emb: np.ndarray, query_idx: np.ndarray, base_idx: np.ndarray, k: int, *,
                  exact_max: int = 20_000, list_size: int = 512, n_probe: int = 3,
                  random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embedding neighbours of catalogue rows ``query_idx`` among rows ``base_idx``.

    Exact while ``len(base_idx) <= exact_max``, IVF above. A query never gets
    itself. Returns catalogue row indices (nq, k) (-1 pads) and cosines.
    """
    index = CategoryIndex(emb, base_idx, exact_max=exact_max, list_size=list_size,
                          n_probe=n_probe, random_state=random_state)
    return index.search(emb, query_idx, k)


def cooccurrence_matrix(outfits: pd.DataFrame, item_ids: np.ndarray) -> sp.csr_matrix:
    """Symmetric item x item count of shared outfits (diagonal zero), catalogue order.

    >>> m = cooccurrence_matrix(pd.DataFrame({"outfit_id": ["1", "1", "2", "2"],
    ...     "item_id": ["a", "b", "a", "b"]}), np.array(["a", "b", "c"]))
    >>> m.toarray().tolist()
    [[0, 2, 0], [2, 0, 0], [0, 0, 0]]
    """
    n = len(item_ids)
    if outfits is None or len(outfits) == 0:
        return sp.csr_matrix((n, n), dtype=np.int32)
    pos = pd.Index(item_ids).get_indexer(outfits["item_id"].astype(str))
    keep = pos >= 0
    o = pd.Categorical(outfits["outfit_id"].astype(str)[keep]).codes
    m = sp.csr_matrix((np.ones(keep.sum(), dtype=np.int32), (o, pos[keep])),
                      shape=(int(o.max()) + 1 if len(o) else 0, n))
    m.data[:] = 1
    m.sum_duplicates()
    m.data[:] = 1  # an item listed twice in one outfit still counts once
    c = (m.T @ m).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    return c.astype(np.int32)


def row_topk_sparse(m: sp.csr_matrix, rows: np.ndarray, col_mask: np.ndarray, k: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``rows``, its ``k`` largest entries among columns where ``col_mask``.

    Returns flat ``(row_pos, col, value)`` (row_pos indexes ``rows``), largest first per row.
    """
    sub = m[rows]
    sub = sub.multiply(col_mask[None, :].astype(sub.dtype)).tocsr() if not col_mask.all() \
        else sub.tocsr()
    sub.eliminate_zeros()
    counts = np.diff(sub.indptr)
    r = np.repeat(np.arange(len(rows)), counts)
    if len(r) == 0:
        return (np.zeros(0, np.int64),) * 2 + (np.zeros(0, sub.dtype),)
    order = np.lexsort((sub.indices, -sub.data, r))
    r, c, v = r[order], sub.indices[order].astype(np.int64), sub.data[order]
    rank = np.arange(len(r)) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]),
                                         counts)
    keep = rank < k
    return r[keep], c[keep], v[keep]
