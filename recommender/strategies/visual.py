"""Visual strategy: nearest items by visual-embedding cosine in the target category.

An item without an embedding (its image failed feature extraction) has no visual
neighbours; its compatibility edges (outfit history, popular items) stand in.
"""
from __future__ import annotations

import numpy as np

from recommender.strategies.base import Strategy


class VisualStrategy(Strategy):
    """Visual-embedding similarity (style and colour as the attribute network sees them).

    >>> VisualStrategy().kind
    'visual'
    """

    name = "visual"
    kind = "visual"

    def candidates(self, state, item_idx, category, k):
        idx, w, r = super().candidates(state, item_idx, category, k)
        if len(idx) == 0:
            # no visual row (an image-less item is nobody's neighbour and has none):
            # without this the shop page showed empty groups and one-item looks
            idx, w = state.graph.row("compat", category, int(item_idx))
            keep = idx != item_idx
            idx, w = idx[keep][:k], w[keep][:k]
            r = [""] * len(idx)
        return idx.astype(np.int64), np.asarray(w, dtype=float), r
