"""Default strategy: the garment graph's compatibility edges.

The edges were chosen at build time by the compatibility model (or, in a bundle
without one, the documented content scorer) among generated candidates, so a
request reads one precomputed row per category.
"""
from __future__ import annotations

import numpy as np

from recommender.strategies.base import Strategy


class DefaultStrategy(Strategy):
    """Graph + compatibility model.

    >>> DefaultStrategy().name
    'default'
    """

    name = "default"
    kind = "compat"

    def candidates(self, state, item_idx, category, k):
        idx, w, r = super().candidates(state, item_idx, category, k)
        if len(idx) == 0 and state.graph.has("visual", category):
            # an item with no compat row (e.g. a category added to the pairing matrix
            # after the build) falls back to visual neighbours, weights in 0..1
            idx, w = state.graph.row("visual", category, int(item_idx))
            keep = idx != item_idx
            idx, w = idx[keep][:k], (w[keep][:k] + 1) / 2
            r = [""] * len(idx)
        return idx.astype(np.int64), np.asarray(w, dtype=float), r
