"""Co-occurrence strategy: items worn together in training outfits, most often first.

An item with no outfit history gets the category's most-worn items (popularity,
itself co-occurrence), reason "often worn in looks". Past the history (a request
for more than it holds, or an allow-list in the rules that keeps few worn items)
the compatibility scorer ranks the rest of the category below every worn item
(:func:`recommender.strategies.base.compat_extras`, as the default strategy tops up).
"""
from __future__ import annotations

import numpy as np

from recommender.strategies.base import Strategy, allowed_mask


class CooccurrenceStrategy(Strategy):
    """Co-occurrence first (history), then compatibility for items never worn with it.

    >>> CooccurrenceStrategy().kind
    'cooc'
    """

    name = "cooccurrence"
    kind = "cooc"

    def candidates(self, state, item_idx, category, k, fill=0):
        # history only: the popular items already fill the row up to ``k``
        idx, w, r = super().candidates(state, item_idx, category, k)
        if len(idx) < k:
            pop_idx, pop_w = state.popular(category)
            # numpy, not a walk in Python over the 200 popular items: a completion
            # asks once per anchor, slot and widening round
            new = ~np.isin(pop_idx, idx) & (pop_idx != int(item_idx))
            extra, extra_w = pop_idx[new][:k - len(idx)], pop_w[new][:k - len(idx)]
            if len(extra):
                # below any direct partner: scores < 1 (a shared look counts 1)
                top = float(extra_w.max())
                idx = np.concatenate([idx, extra.astype(np.int64)])
                w = np.concatenate([w, 0.5 * np.asarray(extra_w, dtype=float) / max(top, 1e-9)])
                r = r + ["often worn in looks"] * len(extra)
        if allowed_mask(state, idx).sum() < min(int(fill), int(k)):
            # the popular list stops at 200 worn items: under an allow-list of a rare
            # colour none of them may be shown, and the group came back short although
            # the category had the items. The scorer's 0..1 is squeezed below the
            # least history score so that history keeps ranking first
            floor = float(w.min()) if len(w) else 1.0
            reason = dict(zip(idx.tolist(), r))
            idx, w = self.top_up(state, item_idx, category, idx, np.asarray(w, dtype=float),
                                 k, fill, scale=lambda s: 0.5 * floor * np.clip(s, 0, 1))
            r = [reason.get(i, "") for i in idx.tolist()]
        return idx.astype(np.int64), np.asarray(w, dtype=float), r
