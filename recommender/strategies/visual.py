"""Visual strategy: nearest items by visual-embedding cosine in the target category."""
from __future__ import annotations

from recommender.strategies.base import Strategy


class VisualStrategy(Strategy):
    """Visual-embedding similarity (style and colour as the attribute network sees them).

    >>> VisualStrategy().kind
    'visual'
    """

    name = "visual"
    kind = "visual"
