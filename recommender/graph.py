"""The garment graph: the pipeline's ``graph`` stage, its networkx record and serving arrays.

Nodes are catalogue items. Edges, each with a ``kind`` and a ``weight``:

``compat``
    For every item and every category that completes it (the pairing matrix of the
    rules), the top ``k_compat`` items by the compatibility model, scored only on
    generated candidates (:mod:`recommender.candidates`: embedding neighbours,
    co-occurrence, two-hop co-occurrence, popular items). Without a trained
    compatibility model in the bundle the :class:`ContentScorer` weighs the pairs
    and ``graph.json`` says so (``"scorer": "content"``).
``cooc``
    Items worn together in *training* outfits (``eval/train_outfits.parquet``;
    all outfits only when the bundle has no split, which ``graph.json`` records),
    weight = number of shared outfits, top ``k_cooc`` per item and category.
``visual``
    Nearest items by visual-embedding cosine, top ``k_visual`` per item in each
    complementary category and in its own category (up-sell and "more like this").

Files written (relative to the bundle)::

    graph/edges.parquet      src, dst (item ids), weight, kind: the graph of record
    graph/graph.json         config, counts, scorer, build time (and CPU seconds
                             by phase), networkx stats
    graph/csr_<kind>_<category>_{indptr,indices,weights}.npy
                             per kind and target category: CSR rows over all
                             catalogue rows (int64 indptr, int32 indices, float32
                             weights, each row sorted by weight, best first);
                             the engine memory-maps them and reads a row per request.

networkx is the graph of record for building and analysis: :func:`to_networkx`
rebuilds it from ``edges.parquet``; the stage builds it (for its statistics) when
the graph has at most ``networkx_max_edges`` edges, and says when it did not.

Examples
--------
>>> import pandas as pd
>>> cat = pd.DataFrame({"item_id": list("abcd"), "category": ["top", "top", "bottom",
...                     "bottom"], "colour": ["WHITE", "RED", "BLUE", "BLUE"]})
>>> emb = np.eye(4, dtype=np.float32)
>>> out = pd.DataFrame({"outfit_id": ["1", "1"], "item_id": ["a", "c"]})
>>> g = build_graph(cat, emb, out, {"top": ("bottom",), "bottom": ("top",)},
...                 config=GraphConfig(k_compat=1))
>>> e = g.edges_frame()
>>> sorted(e[(e.kind == "cooc")][["src", "dst", "weight"]].values.tolist())
[['a', 'c', 1.0], ['c', 'a', 1.0]]
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.exceptions import BundleError, InputError
from recommender.bundle import atomic_files, atomic_write_text, read_bundle_file
from recommender.candidates import CategoryIndex, cooccurrence_matrix, row_topk_sparse
from recommender.catalog import CATEGORIES

EDGE_KINDS = ("compat", "cooc", "visual")
#: Colour groups that go with anything (MANGO's groups and the demo's names).
NEUTRAL_COLOURS = frozenset({"BLACK", "WHITE", "GREY", "GRAY", "BEIGE", "BROWN", "NAVY",
                             "CREAM", "NEUTRAL", "DENIM"})


@dataclasses.dataclass
class GraphConfig:
    """Sizes of the graph build (stage config ``[stages.graph]`` overrides them)."""

    k_compat: int = 20       # compat edges kept per (item, complementary category)
    k_visual: int = 20       # visual edges per (item, category)
    k_cooc: int = 20         # co-occurrence edges per (item, category)
    k_candidates: int = 40   # embedding neighbours scored per (item, category)
    k_hop: int = 5           # same-category neighbours whose partners are candidates
    k_hop_candidates: int = 10
    k_popular: int = 5
    exact_max: int = 4_096   # exact search up to this many target items, IVF above
    list_size: int = 512
    n_probe: int = 3
    chunk: int = 20_000      # queries scored per batch (bounds memory)
    # queries per nearest-neighbour search: larger than ``chunk`` because every
    # batch scans each IVF list it touches once, and at 10^6 items a 20,000-query
    # batch touched nearly all ~500 lists with ~40 queries each (the Python loop
    # and small products grew with n); rounded up to a multiple of ``chunk``
    search_chunk: int = 65_536
    networkx_max_edges: int = 2_000_000
    seed: int = 0


def colour_keys(catalog: pd.DataFrame, features: pd.DataFrame | None = None) -> np.ndarray:
    """The colour family of each item: the features' ``colour_group`` when present,
    else the catalogue's ``colour`` (upper case)."""
    if features is not None and "colour_group" in features.columns:
        col = features["colour_group"].astype(object).fillna("")
    elif "colour" in catalog.columns:
        col = catalog["colour"].astype(object).fillna("")
    else:
        col = pd.Series([""] * len(catalog))
    return col.astype(str).str.upper().to_numpy(dtype=object)


class ContentScorer:
    """Pair score from content and history when no compatibility model is trained.

    ``score = 0.4 * (cos + 1) / 2 + 0.4 * (1 - exp(-cooc / 2)) + 0.2 * colour``
    where ``cos`` is the embedding cosine, ``cooc`` the number of shared training
    outfits, and ``colour`` is 1 when the two share a colour family or either is
    neutral (:data:`NEUTRAL_COLOURS`), else 0.5. In 0..1; a documented heuristic,
    not a learned model -- the compatibility model replaces it when present.
    """

    name = "content"

    def __init__(self, emb: np.ndarray, colours: np.ndarray):
        self.emb = emb
        self.colours = colours
        self.neutral = np.isin(colours, list(NEUTRAL_COLOURS))
        # integer codes: comparing Python strings pair by pair chased pointers to
        # scattered string objects (the score step grew faster than n)
        codes = pd.factorize(pd.Series(colours, dtype=object))[0].astype(np.int64)
        missing = codes < 0  # a missing colour matches nothing, as NaN != NaN
        codes[missing] = -1 - np.arange(int(missing.sum()))
        self._codes = codes

    def __call__(self, src: np.ndarray, dst: np.ndarray, cooc: np.ndarray | None = None
                 ) -> np.ndarray:
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        cos = np.empty(len(src), dtype=np.float32)
        for s in range(0, len(src), 100_000):
            a = np.asarray(self.emb[src[s:s + 100_000]], dtype=np.float32)
            b = np.asarray(self.emb[dst[s:s + 100_000]], dtype=np.float32)
            cos[s:s + 100_000] = np.einsum("ij,ij->i", a, b)
        c = np.zeros(len(src)) if cooc is None else np.asarray(cooc, dtype=float)
        col = np.where((self._codes[src] == self._codes[dst]) | self.neutral[src]
                       | self.neutral[dst], 1.0, 0.5)
        return (0.4 * (cos + 1) / 2 + 0.4 * (1 - np.exp(-c / 2)) + 0.2 * col).astype(np.float32)


class CompatScorer:
    """Adapter: a :class:`recommender.compat.CompatibilityModel` as a pair scorer."""

    name = "compat_model"

    def __init__(self, model):
        self.model = model

    def __call__(self, src, dst, cooc=None):
        return np.asarray(self.model.score_pairs(np.asarray(src), np.asarray(dst)),
                          dtype=np.float32)


@dataclasses.dataclass
class GraphResult:
    item_ids: np.ndarray
    categories: np.ndarray
    edges: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # kind -> src, dst, w
    stats: dict

    def edges_frame(self) -> pd.DataFrame:
        """All edges with item ids (small graphs; large ones go through :func:`write_edges`)."""
        parts = []
        for kind, (s, d, w) in self.edges.items():
            parts.append(pd.DataFrame({"src": self.item_ids[s], "dst": self.item_ids[d],
                                       "weight": w.astype(float), "kind": kind}))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=["src", "dst", "weight", "kind"])


def _dedupe_pairs(src, dst, cnt, n):
    """Unique (src, dst) pairs, keeping the largest co-occurrence count."""
    key = src.astype(np.int64) * n + dst
    order = np.lexsort((-cnt, key))
    key, cnt = key[order], cnt[order]
    first = np.concatenate([[True], key[1:] != key[:-1]])
    key, cnt = key[first], cnt[first]
    return key // n, key % n, cnt


def _topk_per_src(src, dst, w, k):
    """Keep each source's ``k`` heaviest edges, sorted by src then weight (ties: dst).

    Vectorised over sources: the edges are laid out as a padded (sources x most
    edges of a source) matrix and each row is sorted at once -- candidate lists
    are short (tens), so this is cheaper than a global three-key sort.
    """
    if len(src) == 0:
        return src, dst, w
    w = np.asarray(w)
    key = src.astype(np.int64) * (int(dst.max()) + 1) + dst
    if (np.diff(key) < 0).any():  # by source, then dst (the tie order); usually sorted
        o = np.argsort(key, kind="stable")
        src, dst, w = src[o], dst[o], w[o]
    starts = np.flatnonzero(np.concatenate([[True], src[1:] != src[:-1]]))
    counts = np.diff(np.append(starts, len(src)))
    g = np.repeat(np.arange(len(starts)), counts)
    rank = np.arange(len(src)) - starts[g]
    W = np.full((len(starts), int(counts.max())), -np.inf, dtype=np.float64)
    W[g, rank] = w
    order = np.argsort(-W, axis=1, kind="stable")[:, :k]
    pos = starts[:, None] + order
    keep = order < counts[:, None]
    pos = pos[keep]
    return src[pos], dst[pos], w[pos]


def _part(src, dst, w):
    """Edges as compact arrays (int32 rows, float32 weights): 12 bytes an edge."""
    return (np.asarray(src).astype(np.int32), np.asarray(dst).astype(np.int32),
            np.asarray(w).astype(np.float32))


def _keep_columns(m: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """``m`` with the entries of columns where ``keep`` is False removed (O(nnz))."""
    out = m.copy()
    out.data = np.where(keep[out.indices], out.data, 0).astype(out.data.dtype)
    out.eliminate_zeros()
    return out


def _score_chunk(q, nb, cooc_b, hop_b, top_pop, scorer, cfg, n, edges, lap) -> int:
    """Candidates of queries ``q`` in one target category (their embedding
    neighbours ``nb``, co-occurrence, two-hop, popular), scored; appends the
    ``cooc`` and ``compat`` edges and returns the number of pairs scored."""
    all_cols = np.ones(n, dtype=bool)
    r, col, v = row_topk_sparse(cooc_b, q, all_cols, max(cfg.k_cooc, cfg.k_candidates))
    keep = np.zeros(len(r), dtype=bool)
    if len(r):
        first = np.concatenate([[0], np.flatnonzero(np.diff(r)) + 1])
        rank = np.arange(len(r)) - np.repeat(first, np.diff(np.append(first, len(r))))
        keep = rank < cfg.k_cooc
    edges["cooc"].append(_part(q[r[keep]], col[keep], v[keep]))
    hr, hc, _ = row_topk_sparse(hop_b, q, all_cols, cfg.k_hop_candidates)
    me = nb[:, :cfg.k_candidates] >= 0
    cs = [np.repeat(q, me.sum(1)), q[r], q[hr], np.repeat(q, len(top_pop))]
    cd = [nb[:, :cfg.k_candidates][me], col, hc, np.tile(top_pop, len(q))]
    cc = [np.zeros(me.sum()), v.astype(float), np.zeros(len(hr)),
          np.zeros(len(q) * len(top_pop))]
    ps, pd_, pc = _dedupe_pairs(np.concatenate(cs).astype(np.int64),
                                np.concatenate(cd).astype(np.int64),
                                np.concatenate(cc), n)
    lap("history_candidates")
    w = np.asarray(scorer(ps, pd_, pc), dtype=np.float32)
    lap("score")
    edges["compat"].append(_part(*_topk_per_src(ps, pd_, w, cfg.k_compat)))
    lap("top_k")
    return len(ps)


def _target_batch(job: tuple) -> tuple[dict, int, dict]:
    """Second-pass work for one batch of queries and one target category.

    ``job`` = (shared, emb, scorer, queries); ``shared`` holds the target's
    :class:`CategoryIndex`, history columns, popular items, the config and ``n``.
    ``emb`` and ``scorer`` may be worker-cached handles. Returns the batch's edges
    by kind (lists of parts, in build order), the pairs scored and CPU seconds by
    phase. The local build calls it in a loop, the Dask build on the workers.
    """
    shared, emb, scorer, q_s = job
    emb, scorer = _resolve(emb), _resolve(scorer)
    cfg, index = shared["cfg"], shared["index"]
    clock = PhaseClock()

    edges: dict[str, list] = {k: [] for k in EDGE_KINDS}
    kk = max(cfg.k_candidates, cfg.k_visual)
    nb_s, sim_s = index.search(emb, q_s, kk)
    m = nb_s[:, :cfg.k_visual] >= 0
    edges["visual"].append(_part(np.repeat(q_s, m.sum(1)), nb_s[:, :cfg.k_visual][m],
                                 sim_s[:, :cfg.k_visual][m]))
    clock.lap("search_targets")
    n_scored = 0
    for s in range(0, len(q_s), cfg.chunk):
        n_scored += _score_chunk(q_s[s:s + cfg.chunk], nb_s[s:s + cfg.chunk],
                                 shared["cooc_b"], shared["hop_b"], shared["top_pop"], scorer,
                                 cfg, shared["n"], edges, clock.lap)
    return edges, n_scored, clock.phase


def _resolve(x):
    """The object behind a worker-cached handle (:class:`WorkerCached`), else ``x``."""
    from recommender.distributed import WorkerCached  # imports no Dask

    return x.get() if isinstance(x, WorkerCached) else x


class PhaseClock:
    """CPU seconds of this process by named phase: ``lap(name)`` books the time since
    the previous lap (or the start) to ``name``; ``restart()`` drops it unbooked."""

    def __init__(self):
        self.phase: dict[str, float] = {}
        self.restart()

    def restart(self) -> None:
        self._last = time.process_time()

    def lap(self, name: str) -> None:
        now = time.process_time()
        self.phase[name] = self.phase.get(name, 0.0) + now - self._last
        self._last = now


def build_graph(catalog: pd.DataFrame, emb: np.ndarray, train_outfits: pd.DataFrame | None,
                pairing: dict[str, tuple[str, ...]], *, scorer: Callable | None = None,
                features: pd.DataFrame | None = None, config: GraphConfig | None = None,
                log: Callable[[str], None] = lambda m: None, executor=None,
                remote: dict | None = None) -> GraphResult:
    """Build the garment graph's edges from candidates (never all pairs).

    Parameters
    ----------
    catalog : DataFrame with ``item_id``, ``category`` (and ``colour``), row-aligned
        with ``emb``.
    emb : (N, D) L2-normalised embeddings (a memory map is fine).
    train_outfits : ``outfit_id, item_id`` of training outfits (None: no history).
    pairing : category -> categories that complete it (the rules' matrix).
    scorer : callable(src, dst, cooc_count) -> scores in 0..1; default
        :class:`ContentScorer`.
    executor, remote : optional
        The Dask build's ``ctx.executor`` and worker-side handles
        ``{"emb": ..., "scorer": ...}`` (:meth:`DaskExecutor.cached` of the same
        embeddings and scorer). Candidate generation and scoring of the second
        pass -- one job per target category and query batch, the same batches as
        here -- then run on the workers, with each category's index and history
        columns sent once per worker; the edges are the same, in the same order.
    """
    cfg = config or GraphConfig()
    t0 = time.perf_counter()
    # CPU seconds per phase (graph.json, benchmarks): which step grows with n
    clock = PhaseClock()
    lap = clock.lap
    ids = catalog["item_id"].astype(str).to_numpy()
    cats = catalog["category"].astype(str).to_numpy()
    n = len(ids)
    if emb.shape[0] != n:
        raise BundleError(f"embeddings have {emb.shape[0]} rows, catalogue {n}")
    scorer = scorer or ContentScorer(emb, colour_keys(catalog, features))
    cooc = cooccurrence_matrix(train_outfits, ids)
    popularity = np.asarray(cooc.sum(axis=1)).ravel()
    log(f"co-occurrence: {cooc.nnz // 2} item pairs from training outfits")
    lap("cooccurrence")
    present = [c for c in CATEGORIES if (cats == c).any()]
    by_cat = {c: np.flatnonzero(cats == c) for c in present}
    edges: dict[str, list] = {k: [] for k in EDGE_KINDS}
    n_scored = 0

    # one nearest-neighbour index per category, searched by every query batch
    # (fitting one per batch made the build quadratic)
    index = {c: CategoryIndex(emb, by_cat[c], exact_max=cfg.exact_max,
                              list_size=cfg.list_size, n_probe=cfg.n_probe,
                              random_state=cfg.seed) for c in present}
    t_index = time.perf_counter() - t0
    lap("index")

    # pass 1: same-category neighbours (visual edges, and the two-hop bridge)
    k1 = max(cfg.k_visual, cfg.k_hop)
    hop_rows, hop_cols = [], []
    for c in present:
        q = by_cat[c]
        nb, sim = index[c].search(emb, q, k1)
        m = nb[:, :cfg.k_visual] >= 0
        edges["visual"].append(_part(np.repeat(q, m.sum(1)), nb[:, :cfg.k_visual][m],
                                     sim[:, :cfg.k_visual][m]))
        mh = nb[:, :cfg.k_hop] >= 0
        hop_rows.append(np.repeat(q, mh.sum(1)))
        hop_cols.append(nb[:, :cfg.k_hop][mh])
    lap("search_same_category")
    hop = sp.csr_matrix((np.ones(sum(map(len, hop_rows)), np.int32),
                         (np.concatenate(hop_rows), np.concatenate(hop_cols))), shape=(n, n))
    two_hop = (hop @ cooc).tocsr()
    t_same = time.perf_counter() - t0
    lap("two_hop")

    # pass 2: each target category b, for the items it completes
    for b in present:
        src_cats = [c for c in present if c != b and b in pairing.get(c, ())]
        if not src_cats:
            continue
        q_all = np.concatenate([by_cat[c] for c in src_cats])
        # history restricted to target columns once, not per batch
        cooc_b = _keep_columns(cooc, cats == b)
        hop_b = _keep_columns(two_hop, cats == b)
        top_pop = by_cat[b][np.argsort(-popularity[by_cat[b]], kind="stable")[:cfg.k_popular]]
        top_pop = top_pop[popularity[top_pop] > 0]
        lap("history_columns")
        # a whole number of scoring chunks: the same batches, so the same edges in
        # the same order, as one search per scoring chunk
        search_chunk = -(-max(cfg.search_chunk, cfg.chunk) // cfg.chunk) * cfg.chunk
        shared = {"index": index[b], "cooc_b": cooc_b, "hop_b": hop_b, "top_pop": top_pop,
                  "cfg": cfg, "n": n}
        batches = [q_all[s0:s0 + search_chunk] for s0 in range(0, len(q_all), search_chunk)]
        if executor is None:
            done = (_target_batch((shared, emb, scorer, q_s)) for q_s in batches)
        else:
            # one copy of the index and history columns per worker, not per job
            # (in a list: a scattered dict becomes a dict of futures, one per key)
            [ref] = executor.client.scatter([shared], broadcast=True, hash=False)
            try:
                done = executor.map(_target_batch,
                                    [(ref, remote["emb"], remote["scorer"], q_s)
                                     for q_s in batches])
            finally:
                ref.release()
        for part_edges, part_n, part_phase in done:
            for kind, parts in part_edges.items():
                edges[kind].extend(parts)
            n_scored += part_n
            for k, v in part_phase.items():  # the workers' CPU seconds, by phase
                clock.phase[k] = clock.phase.get(k, 0.0) + v
        if executor is None:
            clock.restart()  # the batches' own laps counted this process
        else:
            lap("targets_driver")  # sending jobs and gathering edges
        log(f"graph: target {b}: {len(q_all)} queries"
            + (f" in {len(batches)} jobs on the cluster" if executor is not None else ""))

    out = {}
    for kind, parts in edges.items():
        if parts:
            s = np.concatenate([p[0] for p in parts])
            d = np.concatenate([p[1] for p in parts])
            w = np.concatenate([p[2] for p in parts])
            parts.clear()
        else:
            s = d = np.zeros(0, np.int32)
            w = np.zeros(0, np.float32)
        out[kind] = (s, d, w)
    lap("assemble")
    elapsed = time.perf_counter() - t0
    stats = {
        "n_items": int(n), "categories": {c: int(len(by_cat[c])) for c in present},
        "edges": {k: int(len(v[0])) for k, v in out.items()},
        "pairs_scored": int(n_scored),
        "pairs_scored_per_item": round(n_scored / max(n, 1), 2),
        "all_pairs_would_be": int(n) * (int(n) - 1),
        "cooc_pairs": int(cooc.nnz // 2),
        "scorer": getattr(scorer, "name", type(scorer).__name__),
        "seconds": round(elapsed, 3), "seconds_index": round(t_index, 3),
        "seconds_same_category": round(t_same, 3),
        "cpu_seconds_by_phase": {k: round(v, 3) for k, v in clock.phase.items()},
        "config": dataclasses.asdict(cfg),
    }
    return GraphResult(ids, cats, out, stats)


# --------------------------------------------------------------------------- export
def csr_name(kind: str, category: str, part: str) -> str:
    return f"csr_{kind}_{category}_{part}.npy"


def export_serving_arrays(result: GraphResult, out_dir: str | Path) -> list[Path]:
    """Write per (kind, target category) CSR arrays; returns the paths written.

    Each source's edges were generated contiguously and best first (weight
    descending, ties by destination), so a stable sort by target category and then
    by source is all the layout needs: integer sorts, no per-edge strings.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(result.item_ids)
    codes = pd.Categorical(result.categories, categories=list(CATEGORIES)).codes
    written = []
    for kind, (s, d, w) in result.edges.items():
        dc = codes[d] if len(d) else np.zeros(0, np.int8)
        by_cat = np.argsort(dc, kind="stable")
        bounds = np.searchsorted(dc[by_cat], np.arange(len(CATEGORIES) + 1))
        for ci, c in enumerate(CATEGORIES):
            sel = by_cat[bounds[ci]:bounds[ci + 1]]
            if len(sel) == 0:
                continue
            sel = sel[np.argsort(s[sel], kind="stable")]
            ss = s[sel]
            indptr = np.concatenate([[0], np.cumsum(np.bincount(ss, minlength=n))]
                                    ).astype(np.int64)
            for part, arr in (("indptr", indptr), ("indices", d[sel].astype(np.int32)),
                              ("weights", w[sel].astype(np.float32))):
                p = out_dir / csr_name(kind, c, part)
                with atomic_files(p) as (tmp,):  # never half an array under its name
                    np.save(tmp, arr)
                written.append(p)
    return written


def write_edges(result: GraphResult, path: str | Path) -> None:
    """Write ``edges.parquet``: src and dst item ids as plain strings, weight, kind.

    The ids are gathered from one arrow array of the catalogue's ids in C++ (no
    per-edge Python strings) and written without a parquet dictionary: parquet
    re-encodes a dictionary column value by value through a hash table of all the
    ids, which at 10^6 items no longer fits in cache: 560 ns an edge against 163
    ns at 10^5, plain 165 and 104 ns (1.2 x 10^7 edges; peak memory lower too).
    ``kind`` (three values) stays dictionary-encoded.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not result.edges:
        return
    ids = pa.array(result.item_ids.astype(str))
    writer = None
    # written beside ``path`` and renamed over it once closed: a build killed half way
    # leaves the old edges whole, not a parquet without its footer
    with atomic_files(path) as (tmp,):
        try:
            for kind, (s, d, w) in result.edges.items():
                # 2M-edge batches: the gathered id strings (~11 bytes an edge per
                # column) stay a transient of tens of MB
                for a in range(0, max(len(s), 1), 2_000_000):
                    sl = slice(a, a + 2_000_000)
                    tbl = pa.table({
                        "src": ids.take(pa.array(s[sl].astype(np.int32))),
                        "dst": ids.take(pa.array(d[sl].astype(np.int32))),
                        "weight": pa.array(w[sl].astype(np.float32)),
                        # one dictionary entry, no per-edge Python strings
                        "kind": pa.DictionaryArray.from_arrays(
                            pa.array(np.zeros(len(s[sl]), np.int32)), pa.array([kind])),
                    })
                    if writer is None:
                        writer = pq.ParquetWriter(str(tmp), tbl.schema, use_dictionary=["kind"])
                    writer.write_table(tbl)
        finally:
            if writer is not None:
                writer.close()


def to_networkx(edges: pd.DataFrame, item_ids=None, categories=None):
    """The graph of record as a ``networkx.MultiDiGraph`` (edge key = kind).

    >>> g = to_networkx(pd.DataFrame({"src": ["a"], "dst": ["b"], "weight": [0.5],
    ...                               "kind": ["compat"]}))
    >>> g["a"]["b"]["compat"]["weight"]
    0.5
    """
    import networkx as nx

    g = nx.MultiDiGraph()
    if item_ids is not None:
        if categories is not None:
            g.add_nodes_from((i, {"category": c}) for i, c in zip(item_ids, categories))
        else:
            g.add_nodes_from(item_ids)
    g.add_edges_from((s, d, k, {"weight": float(w)}) for s, d, w, k in zip(
        edges["src"].astype(str), edges["dst"].astype(str), edges["weight"],
        edges["kind"].astype(str)))
    return g


def graph_stats(g) -> dict:
    """Summary statistics of the networkx graph (for graph.json and notebooks)."""
    import networkx as nx

    und = nx.Graph(g)
    comps = [len(c) for c in nx.connected_components(und)] if len(und) else []
    return {"nodes": g.number_of_nodes(), "edges": g.number_of_edges(),
            "components": len(comps), "largest_component": max(comps, default=0),
            "isolated": int(sum(1 for _ in nx.isolates(und))),
            "mean_out_degree": round(g.number_of_edges() / max(g.number_of_nodes(), 1), 2)}


# --------------------------------------------------------------------------- serving
def _mapped(path: Path) -> np.ndarray:
    """A memory-mapped .npy; BundleError naming it when it is cut short."""
    from recommender.bundle import read_bundle_file

    return read_bundle_file(path, lambda p: np.load(p, mmap_mode="r"))


class ServingGraph:
    """Memory-mapped CSR arrays of a bundle's graph: one row read per request.

    >>> # sg = ServingGraph(bundle.path("graph")); sg.row("compat", "shoes", 12)
    """

    def __init__(self, graph_dir: str | Path, n_items: int):
        self.dir = Path(graph_dir)
        self.n_items = n_items
        self._arrays: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for kind in EDGE_KINDS:
            for c in CATEGORIES:
                p = self.dir / csr_name(kind, c, "indptr")
                if p.is_file():
                    indptr = _mapped(p)
                    if len(indptr) != n_items + 1:
                        raise BundleError(f"{p} has {len(indptr) - 1} rows; the catalogue "
                                          f"has {n_items} items: rebuild the graph")
                    self._arrays[(kind, c)] = (
                        indptr, _mapped(self.dir / csr_name(kind, c, "indices")),
                        _mapped(self.dir / csr_name(kind, c, "weights")))
        if not self._arrays:
            raise BundleError(f"no graph arrays in {self.dir}: run `mixmatch graph`")

    def has(self, kind: str, category: str) -> bool:
        return (kind, category) in self._arrays

    def paired_categories(self, categories: np.ndarray) -> dict[str, frozenset[str]]:
        """Category -> the categories its items have compatibility neighbours in: the
        pairs of the pairing matrix the graph was built with, read from the arrays
        (``categories``: each row's category). Read from what the graph holds, not
        from a record: the stage records the matrix only inside its inputs hash, and
        the arrays are what the engine reads.
        """
        cats = np.asarray(categories)
        out: dict[str, set[str]] = {}
        for (kind, target), (indptr, _, _) in self._arrays.items():
            if kind != "compat":
                continue
            for c in np.unique(cats[np.flatnonzero(np.diff(indptr))]):
                out.setdefault(str(c), set()).add(target)
        return {c: frozenset(t) for c, t in out.items()}

    def row(self, kind: str, category: str, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of item row ``i`` in ``category`` (best first) and weights."""
        a = self._arrays.get((kind, category))
        if a is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        indptr, ind, w = a
        s, e = int(indptr[i]), int(indptr[i + 1])
        return np.asarray(ind[s:e], dtype=np.int64), np.asarray(w[s:e], dtype=np.float32)


# --------------------------------------------------------------------------- stage
#: Settings of ``[stages.graph]`` that must be at least 1 (the others at least 0): no
#: popular fallback left an empty edge table to deduplicate (IndexError), and a search
#: or scoring batch of 0 never ends.
_GRAPH_AT_LEAST_ONE = ("k_popular", "list_size", "n_probe", "chunk", "search_chunk")


def _config(ctx) -> GraphConfig:
    """The stage's GraphConfig; InputError naming a ``[stages.graph]`` setting that is
    unknown (a misspelt one was ignored) or not a whole number in range, before the
    stage starts (``stage_inputs`` calls this)."""
    over = ctx.stage_config("graph")
    names = sorted(f.name for f in dataclasses.fields(GraphConfig))
    unknown = sorted(set(over) - set(names))
    if unknown:
        raise InputError(f"unknown [stages.graph] setting {unknown[0]!r}",
                         field="stages.graph", value=unknown[0], allowed=names)
    for k, v in over.items():
        low = 1 if k in _GRAPH_AT_LEAST_ONE else 0
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InputError(f"[stages.graph] {k} must be a whole number >= {low}, got "
                             f"{v!r}", field=f"stages.graph.{k}", value=v)
    cfg = GraphConfig(**over)
    if ctx.config.get("quick"):
        cfg.k_candidates = min(cfg.k_candidates, 20)
    cfg.seed = int(ctx.config.get("seed", cfg.seed))
    return cfg


def _train_outfits_path(bundle) -> tuple[Path, bool]:
    p = bundle.path("eval", "train_outfits.parquet")
    if p.is_file():
        return p, True
    return bundle.path("outfits.parquet"), False


#: Bump when the serving arrays' layout changes (see stage_inputs of the compat stage).
#: 3: edges.parquet src/dst are plain strings, no longer dictionary (categorical) columns.
#: 4: items without an embedding (no usable image) get and give no visual neighbours.
GRAPH_VERSION = 4


#: Checked before any stage of a build starts (recommender.pipeline).
check_config = _config


def stage_inputs(ctx) -> dict:
    from recommender.bundle import file_hash

    b = ctx.bundle
    files = ["catalog.parquet", "features/embeddings.npy", "features/features.parquet",
             "models/compat.txt", "models/compat.json"]
    tp, _ = _train_outfits_path(b)
    hashes = {f: (file_hash(b.path(f)) if b.path(f).is_file() else None) for f in files}
    hashes["train_outfits"] = file_hash(tp) if tp.is_file() else None
    # of the rules the graph reads only the pairing matrix: the rules file's hash made
    # every merchandiser edit (an excluded id, a boost) rebuild the graph and had a
    # stage command call it out of date, while a changed packaged default went unseen
    return {"files": hashes, "pairing": bundle_pairing(b),
            "config": dataclasses.asdict(_config(ctx)), "version": GRAPH_VERSION}


def _load_scorer(bundle, emb, catalog, features, log):
    if not bundle.path("models", "compat.txt").is_file():
        log("graph: no compatibility model in the bundle; edges weighted by the content "
            "scorer (see recommender.graph.ContentScorer)")
        return ContentScorer(emb, colour_keys(catalog, features))
    from recommender.compat import CompatibilityModel

    return CompatScorer(CompatibilityModel.load(bundle))


def load_embeddings(path: str) -> np.ndarray:
    """A bundle's embeddings, memory-mapped (what a worker loads once)."""
    return np.load(path, mmap_mode="r")


def load_scorer(bundle_root: str):
    """The pair scorer of a bundle, as the graph stage builds it (once per worker)."""
    from recommender.bundle import Bundle

    b = Bundle.open(bundle_root)
    ep, fp = b.path("features", "embeddings.npy"), b.path("features", "features.parquet")
    catalog = features = None
    if not b.path("models", "compat.txt").is_file():  # the content scorer reads these
        catalog = read_bundle_file(b.path("catalog.parquet"), pd.read_parquet)
        features = read_bundle_file(fp, pd.read_parquet) if fp.is_file() else None
    return _load_scorer(b, _mapped(ep), catalog, features, lambda m: None)


def bundle_pairing(bundle) -> dict[str, tuple[str, ...]]:
    """The pairing matrix: the bundle's rules file when valid, else the defaults."""
    from recommender.rules import default_rules, load_rules

    p = bundle.path("rules", "rules.toml")
    return (load_rules(p) if p.is_file() else default_rules()).pairing


def run_stage(ctx) -> dict:
    """Build the graph of ``ctx.bundle`` and write its files (module docstring)."""
    b = ctx.bundle
    cfg = _config(ctx)
    # a file cut short (an interrupted copy) is named as the bundle's damage, as the
    # server and evaluate name it, not Arrow's or numpy's traceback
    catalog = read_bundle_file(b.path("catalog.parquet"), pd.read_parquet)
    ep = b.path("features", "embeddings.npy")
    if not ep.is_file():
        raise BundleError(f"{ep} missing: run the features stage first")
    emb = _mapped(ep)
    fp = b.path("features", "features.parquet")
    features = read_bundle_file(fp, pd.read_parquet) if fp.is_file() else None
    tp, from_split = _train_outfits_path(b)
    outfits = read_bundle_file(tp, pd.read_parquet) if tp.is_file() else None
    if not from_split:
        ctx.log("graph: no eval/train_outfits.parquet; co-occurrence uses ALL outfits "
                "(held-out retrieval metrics on this bundle would leak)")
    scorer = _load_scorer(b, emb, catalog, features, ctx.log)
    ex = getattr(ctx, "executor", None)  # the Dask build scores candidates on the cluster
    remote = None
    if ex is not None:
        from recommender.bundle import file_hash

        stamp = file_hash(ep)
        cp = b.path("models", "compat.txt")
        remote = {"emb": ex.cached(load_embeddings, str(ep), stamp),
                  "scorer": ex.cached(load_scorer, str(b.root),
                                      stamp + (file_hash(cp) if cp.is_file() else ""))}
    res = build_graph(catalog, emb, outfits, bundle_pairing(b), scorer=scorer,
                      features=features, config=cfg, log=ctx.log, executor=ex, remote=remote)
    gdir = b.path("graph")
    gdir.mkdir(parents=True, exist_ok=True)
    for old in gdir.glob("csr_*.npy"):
        old.unlink()
    written = export_serving_arrays(res, gdir)
    write_edges(res, gdir / "edges.parquet")
    stats = dict(res.stats)
    stats["cooc_source"] = "train_outfits" if from_split else "all_outfits"
    n_edges = sum(stats["edges"].values())
    if n_edges <= cfg.networkx_max_edges:
        g = to_networkx(pd.read_parquet(gdir / "edges.parquet"), res.item_ids, res.categories)
        stats["networkx"] = graph_stats(g)
    else:
        stats["networkx"] = (f"not built: {n_edges} edges > networkx_max_edges "
                             f"{cfg.networkx_max_edges}; edges.parquet is the record")
    atomic_write_text(gdir / "graph.json", json.dumps(stats, indent=2, sort_keys=True))
    outputs = ["graph/edges.parquet", "graph/graph.json"] + [
        str(p.relative_to(b.root)) for p in written]
    metrics = {"n_edges": n_edges, "pairs_scored_per_item": stats["pairs_scored_per_item"],
               "scorer": stats["scorer"], "seconds": stats["seconds"]}
    return {"outputs": outputs, "metrics": metrics}
