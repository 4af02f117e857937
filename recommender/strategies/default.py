"""Default strategy: the garment graph's compatibility edges.

The edges were chosen at build time by the compatibility model (or, in a bundle
without one, the documented content scorer) among generated candidates, so a
request reads one precomputed row per category. A request for more items than
the row holds (``fill``) tops it up with further items of the category scored by
the same scorer (:func:`recommender.strategies.base.compat_extras`).
"""
from __future__ import annotations

from recommender.strategies.base import Strategy, compat_extras, visual_extras


class DefaultStrategy(Strategy):
    """Graph + compatibility model.

    >>> DefaultStrategy().name
    'default'
    """

    name = "default"
    kind = "compat"

    def candidates(self, state, item_idx, category, k, fill=0):
        idx, w = self.row(state, "compat", item_idx, category, k)
        extras, scale = compat_extras, (lambda s: s)
        if len(idx) == 0 and state.graph.has("visual", category):
            # an item with no compat row (e.g. a category added to the pairing matrix
            # after the build) falls back to visual neighbours, weights in 0..1
            v_idx, v_w = self.row(state, "visual", item_idx, category, k)
            if len(v_idx):
                idx, w = v_idx, (v_w + 1) / 2
                extras, scale = visual_extras, (lambda s: (s + 1) / 2)
        idx, w = self.top_up(state, item_idx, category, idx, w, k, fill, extras=extras,
                             scale=scale)
        return idx, w, [""] * len(idx)
