"""The one small interface every recommendation strategy implements.

A strategy answers one question: *which items of ``category`` go with catalogue
row ``item_idx``, best first?* It reads precomputed graph rows (never the whole
catalogue), so it is cheap enough to run per request. Diversity, rules and
reasons are the engine's business, applied the same way whatever the strategy.

Contract (checked for every strategy by tests/recommender/strategies/test_contract.py):

- returns ``(idx, scores, reasons)``: ``idx`` int64 catalogue rows, all of
  ``category``, unique, never ``item_idx`` itself, at most ``k``; ``scores``
  float, same length, finite and non-increasing; ``reasons`` a list of str of
  the same length (may be empty strings: the engine explains the shown items);
- deterministic: the same call gives the same answer;
- an unknown category simply yields nothing (the engine validates names).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class EngineState(Protocol):
    """What a strategy may read: the engine's loaded, read-only state."""

    graph: Any           # recommender.graph.ServingGraph
    emb: np.ndarray      # (N, D) memory map


class Strategy:
    """Base class; subclasses set ``name`` and ``kind`` or override :meth:`candidates`."""

    name: str = "base"
    #: the graph edge kind the strategy reads
    kind: str = ""
    #: what the ``reason`` of an item says when nothing more specific applies
    default_reason: str = ""

    def candidates(self, state: EngineState, item_idx: int, category: str, k: int
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        idx, w = state.graph.row(self.kind, category, int(item_idx))
        keep = idx != item_idx
        idx, w = idx[keep][:k], w[keep][:k]
        return idx.astype(np.int64), w.astype(float), [""] * len(idx)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
