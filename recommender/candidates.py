"""Candidate generation: which pairs the compatibility model scores when the graph is built.

Scoring every pair of a million-item catalogue is out of reach (10^12 pairs), and
most pairs are nonsense, so the graph scores only candidates, per category pair:

- **embedding neighbours**: the ``k`` items of the target category whose visual
  embedding is closest (cosine) to the query item's. Exact blocked matrix products
  while the target category is small (``exact_max`` items); above that an
  inverted-file (IVF) index: k-means lists of about ``list_size`` items, each
  query scanning the ``n_probe`` lists nearest to it. Lists of constant size make
  the scan cost per query constant, so the build grows near-linearly (the
  centroid step is ``n / list_size`` dot products per query, small below ~10^7).
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


def _topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's ``k`` largest entries, best first."""
    n = scores.shape[1]
    k = min(k, n)
    if k == 0:
        return (np.zeros((scores.shape[0], 0), np.int64), np.zeros((scores.shape[0], 0),
                                                                    scores.dtype))
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else \
        np.tile(np.arange(n), (scores.shape[0], 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


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

    def search(self, queries: np.ndarray, k: int, *, n_probe: int = 2,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` (rows of the fitted ``x``), best first; -1 pads."""
        q = np.asarray(queries, dtype=np.float32)
        nq = len(q)
        n_lists = len(self.centroids_)
        n_probe = min(n_probe, n_lists)
        probes = np.empty((nq, n_probe), dtype=np.int64)
        for s in range(0, nq, 8192):
            probes[s:s + 8192] = _topk_rows(q[s:s + 8192] @ self.centroids_.T, n_probe)[0]
        best_i = np.full((nq, k), -1, dtype=np.int64)
        best_v = np.full((nq, k), -np.inf, dtype=np.float32)
        # group queries by probed list: one dense product per (list, probe rank)
        for r in range(n_probe):
            lists = probes[:, r]
            order = np.argsort(lists, kind="stable")
            bounds = np.searchsorted(lists[order], np.arange(n_lists + 1))
            for l in np.flatnonzero(np.diff(bounds)):
                qs = order[bounds[l]:bounds[l + 1]]
                a, b = self.offsets_[l], self.offsets_[l + 1]
                if a == b:
                    continue
                sc = q[qs] @ self.base_[a:b].T
                rows = self.order_[a:b]
                if exclude is not None:
                    sc[exclude[qs][:, None] == rows[None, :]] = -np.inf
                ii, vv = _topk_rows(sc, min(k, b - a))
                cand_i = np.concatenate([best_i[qs], rows[ii]], axis=1)
                cand_v = np.concatenate([best_v[qs], vv], axis=1)
                ti, tv = _topk_rows(cand_v, k)
                best_i[qs] = np.take_along_axis(cand_i, ti, axis=1)
                best_v[qs] = tv
        best_i[~np.isfinite(best_v)] = -1
        return best_i, best_v


def neighbours_in(emb: np.ndarray, query_idx: np.ndarray, base_idx: np.ndarray, k: int, *,
                  exact_max: int = 20_000, list_size: int = 512, n_probe: int = 3,
                  random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embedding neighbours of catalogue rows ``query_idx`` among rows ``base_idx``.

    Exact while ``len(base_idx) <= exact_max``, IVF above. A query never gets
    itself. Returns catalogue row indices (nq, k) (-1 pads) and cosines.
    """
    base_idx = np.asarray(base_idx, dtype=np.int64)
    query_idx = np.asarray(query_idx, dtype=np.int64)
    if len(base_idx) == 0 or len(query_idx) == 0:
        return (np.full((len(query_idx), k), -1, np.int64),
                np.full((len(query_idx), k), -np.inf, np.float32))
    pos = np.full(len(emb), -1, dtype=np.int64)
    pos[base_idx] = np.arange(len(base_idx))
    exclude = pos[query_idx]
    base = np.asarray(emb[base_idx], dtype=np.float32)
    queries = np.asarray(emb[query_idx], dtype=np.float32)
    if len(base_idx) <= exact_max:
        loc, sims = exact_neighbours(queries, base, k, exclude=exclude)
    else:
        ivf = IVFIndex(list_size=list_size, random_state=random_state).fit(base)
        loc, sims = ivf.search(queries, k, n_probe=n_probe, exclude=exclude)
    out = np.where(loc >= 0, base_idx[np.maximum(loc, 0)], -1)
    return out, sims


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
