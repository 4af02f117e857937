"""Visual strategy: nearest items by visual-embedding cosine in the target category.

An item without an embedding (its image failed feature extraction) has no visual
neighbours; its compatibility edges (outfit history, popular items) stand in. A
request for more items than the row holds (``fill``) tops it up with the next
nearest items (or, for such an item, the next best by the compatibility scorer).
"""
from __future__ import annotations

from recommender.strategies.base import Strategy, visual_extras


class VisualStrategy(Strategy):
    """Visual-embedding similarity (style and colour as the attribute network sees them).

    >>> VisualStrategy().kind
    'visual'
    """

    name = "visual"
    kind = "visual"

    def candidates(self, state, item_idx, category, k, fill=0):
        idx, w = self.row(state, "visual", item_idx, category, k)
        if len(idx):
            idx, w = self.top_up(state, item_idx, category, idx, w, k, fill,
                                 extras=visual_extras)
        else:
            # no visual row (an image-less item is nobody's neighbour and has none):
            # without this the shop page showed empty groups and one-item looks
            idx, w = self.row(state, "compat", item_idx, category, k)
            idx, w = self.top_up(state, item_idx, category, idx, w, k, fill)
        return idx, w, [""] * len(idx)
