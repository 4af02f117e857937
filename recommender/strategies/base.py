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

Under merchandiser rules that exclude items (the engine's widening,
``Engine._merged_allowed``) the state says which items may be shown
(``state.allowed``): a top-up then takes and scores only those, and counts the
row by its allowed items -- scoring an item the rules drop afterwards is wasted
(it was most of a widened request's time). The graph row and the history are
returned as they are; the rules step drops what they exclude.

Contract (checked for every strategy by tests/recommender/strategies/test_contract.py):

- returns ``(idx, scores, reasons)``: ``idx`` int64 catalogue rows, all of
  ``category``, unique, never ``item_idx`` itself, at most ``k``; ``scores``
  float, same length, finite and non-increasing; ``reasons`` a list of str of
  the same length (may be empty strings: the engine explains the shown items);
- ``fill`` (<= ``k``): when the graph gives fewer, the strategy may add items
  beyond it, up to ``fill``, scored on the row's own scale; with ``state.allowed``
  the added items are allowed ones, up to ``fill`` allowed in all (at most ``k``);
- deterministic: the same call gives the same answer;
- exceptions from ``state`` pass through: the engine stops a call whose pairs it
  wants to score together with other calls' (``recommender.engine._Deferred``, a
  ``BaseException``, so an ``except Exception`` fallback does not catch it; an answer
  given after catching it anyway is asked for again, not kept);
- an unknown category simply yields nothing (the engine validates names).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

#: popular items among the top-up's candidates (the build's ``k_popular`` is 5)
POPULAR_EXTRAS = 10


class EngineState(Protocol):
    """What a strategy may read: the engine's loaded, read-only state.

    A state may also carry a request's rules: ``allowed(rows)``, a boolean mask of
    the rows that may be shown, and ``neighbours`` then only among those (read
    through :func:`allowed_mask`; the engine itself has none: everything is).
    """

    graph: Any           # recommender.graph.ServingGraph
    emb: np.ndarray      # (N, D) memory map

    def popular(self, category: str) -> tuple[np.ndarray, np.ndarray]: ...

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray: ...

    def neighbours(self, item_idx: int, category: str, n: int
                   ) -> tuple[np.ndarray, np.ndarray]: ...


def allowed_mask(state: EngineState, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` the state's rules let be shown (all without rules).

    >>> allowed_mask(object(), np.array([3, 1])).tolist()
    [True, True]
    """
    allowed = getattr(state, "allowed", None)
    if allowed is None:
        return np.ones(len(rows), dtype=bool)
    return np.asarray(allowed(np.asarray(rows, dtype=np.int64)), dtype=bool)


def compat_extras(state: EngineState, item_idx: int, category: str, exclude: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` items of ``category`` outside ``exclude``, best first by the
    compatibility scorer (``state.pair_scores``, which weighed the graph's
    ``compat`` edges at build time).

    Candidates as the build generates them, only more: the item's embedding
    neighbours in the category, its co-occurrence partners, a few popular items
    (the scorer's per-pair cost is what a topped-up request pays). Under rules
    (``state.allowed``) only items they allow are candidates: the neighbours are
    the nearest allowed ones, and partners or popular items the rules exclude are
    dropped before they are scored.
    """
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    # enough neighbours for n once ``exclude`` and the item are set aside; under
    # rules as many, all allowed: more of them to choose from at the same cost
    near, _ = state.neighbours(item_idx, category, n + len(exclude) + 1)
    cooc, _ = state.graph.row("cooc", category, int(item_idx))
    pop, _ = state.popular(category)
    cand = np.unique(np.concatenate([near, cooc, pop[:POPULAR_EXTRAS]]).astype(np.int64))
    cand = cand[(cand != item_idx) & ~np.isin(cand, exclude)]
    cand = cand[allowed_mask(state, cand)]
    if len(cand) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    sc = np.asarray(state.pair_scores(np.full(len(cand), int(item_idx)), cand), dtype=float)
    order = np.lexsort((cand, -sc))[:n]
    return cand[order], sc[order]


def visual_extras(state: EngineState, item_idx: int, category: str, exclude: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` items of ``category`` outside ``exclude``, nearest first by
    embedding cosine (the ``visual`` edges' weight); under rules (``state.allowed``)
    the nearest items they allow."""
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    near, cos = state.neighbours(item_idx, category, n + len(exclude) + 1)
    keep = (near != item_idx) & ~np.isin(near, exclude) & allowed_mask(state, near)
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
        score up to ``min(fill, k)`` items; unchanged when the row is long enough.

        Under rules (``state.allowed``) the row counts by the items they allow and the
        extras are allowed ones, up to ``min(fill, k)`` allowed items and ``k`` in all:
        a row of excluded items gets as many items that may be shown as an empty row.
        """
        want = min(int(fill), int(k))
        have = int(allowed_mask(state, idx).sum())
        n = min(want - have, int(k) - len(idx))
        if n <= 0:
            return idx, w
        more, s = extras(state, int(item_idx), category, idx, n)
        return merge_by_score(idx, w, more, scale(s))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
