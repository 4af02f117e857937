"""The one small interface every recommendation strategy implements.

A strategy answers one question: *which items of ``category`` go with catalogue
row ``item_idx``, best first?* It reads precomputed graph rows (never the whole
catalogue), so it is cheap enough to run per request. Diversity, rules and
reasons are the engine's business, applied the same way whatever the strategy.

A graph row holds at most the build's ``k_compat``/``k_visual`` edges (20 by
default). When a request needs more (``fill``: a shop page asking for 40 matches
a group), a strategy that can score any item of the category tops the row up:
the compatibility scorer for ``compat`` rows, embedding cosine for ``visual``
rows -- the measures the build ranked the edges by, so the extra items merge
with the row's by score instead of trailing it unranked. ``cooc`` rows (counts,
then popular items) have no such measure for items never worn with the item:
the compatibility scorer ranks those below the whole history.

Contract (checked for every strategy by tests/recommender/strategies/test_contract.py):

- returns ``(idx, scores, reasons)``: ``idx`` int64 catalogue rows, all of
  ``category``, unique, never ``item_idx`` itself, at most ``k``; ``scores``
  float, same length, finite and non-increasing; ``reasons`` a list of str of
  the same length (may be empty strings: the engine explains the shown items);
- ``fill`` (<= ``k``): when the graph gives fewer, the strategy may add items
  beyond it, up to ``fill``, scored on the row's own scale;
- deterministic: the same call gives the same answer;
- an unknown category simply yields nothing (the engine validates names).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

#: popular items among the top-up's candidates (the build's ``k_popular`` is 5)
POPULAR_EXTRAS = 10


class EngineState(Protocol):
    """What a strategy may read: the engine's loaded, read-only state."""

    graph: Any           # recommender.graph.ServingGraph
    emb: np.ndarray      # (N, D) memory map

    def popular(self, category: str) -> tuple[np.ndarray, np.ndarray]: ...

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray: ...

    def neighbours(self, item_idx: int, category: str, n: int
                   ) -> tuple[np.ndarray, np.ndarray]: ...


def compat_extras(state: EngineState, item_idx: int, category: str, exclude: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` items of ``category`` outside ``exclude``, best first by the
    compatibility scorer (``state.pair_scores``, which weighed the graph's
    ``compat`` edges at build time).

    Candidates as the build generates them, only more: the item's embedding
    neighbours in the category, its co-occurrence partners, a few popular items
    (the scorer's per-pair cost is what a topped-up request pays).
    """
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    near, _ = state.neighbours(item_idx, category, n + len(exclude) + 1)
    cooc, _ = state.graph.row("cooc", category, int(item_idx))
    pop, _ = state.popular(category)
    cand = np.unique(np.concatenate([near, cooc, pop[:POPULAR_EXTRAS]]).astype(np.int64))
    cand = cand[(cand != item_idx) & ~np.isin(cand, exclude)]
    if len(cand) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    sc = np.asarray(state.pair_scores(np.full(len(cand), int(item_idx)), cand), dtype=float)
    order = np.lexsort((cand, -sc))[:n]
    return cand[order], sc[order]


def visual_extras(state: EngineState, item_idx: int, category: str, exclude: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` items of ``category`` outside ``exclude``, nearest first by
    embedding cosine (the ``visual`` edges' weight)."""
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    near, cos = state.neighbours(item_idx, category, n + len(exclude) + 1)
    keep = (near != item_idx) & ~np.isin(near, exclude)
    return near[keep][:n].astype(np.int64), np.asarray(cos[keep][:n], dtype=float)


def merge_by_score(idx: np.ndarray, w: np.ndarray, extra_idx: np.ndarray,
                   extra_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row and the extras in one ranking, best first; on a tie the row's item
    (the build's choice) stays ahead."""
    idx = np.concatenate([idx, extra_idx]).astype(np.int64)
    w = np.concatenate([w, extra_w]).astype(float)
    order = np.argsort(-w, kind="stable")
    return idx[order], w[order]


class Strategy:
    """Base class; subclasses set ``name`` and ``kind`` or override :meth:`candidates`."""

    name: str = "base"
    #: the graph edge kind the strategy reads
    kind: str = ""
    #: what the ``reason`` of an item says when nothing more specific applies
    default_reason: str = ""

    def candidates(self, state: EngineState, item_idx: int, category: str, k: int,
                   fill: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
        idx, w = self.row(state, self.kind, item_idx, category, k)
        return idx, w, [""] * len(idx)

    @staticmethod
    def row(state: EngineState, kind: str, item_idx: int, category: str, k: int
            ) -> tuple[np.ndarray, np.ndarray]:
        """The graph row of ``kind`` without the item itself, at most ``k`` long."""
        idx, w = state.graph.row(kind, category, int(item_idx))
        keep = idx != item_idx
        return idx[keep][:k].astype(np.int64), w[keep][:k].astype(float)

    @staticmethod
    def top_up(state: EngineState, item_idx: int, category: str, idx: np.ndarray,
               w: np.ndarray, k: int, fill: int, extras=compat_extras,
               scale=lambda s: s) -> tuple[np.ndarray, np.ndarray]:
        """``idx, w`` with ``extras`` (``scale``-d onto the row's scale) merged in by
        score up to ``min(fill, k)`` items; unchanged when the row is long enough."""
        want = min(int(fill), int(k))
        if len(idx) >= want:
            return idx, w
        more, s = extras(state, int(item_idx), category, idx, want - len(idx))
        return merge_by_score(idx, w, more, scale(s))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
