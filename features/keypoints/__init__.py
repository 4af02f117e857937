"""FashionAI keypoints for catalogue items: a silhouette-based estimator
(:mod:`features.keypoints.silhouette`) for packshots, and -- where one is
trained -- a heatmap detector (``features.keypoints.heatmap``).

:func:`category_for` maps a catalogue item (its outfit slot and subcategory) to
the FashionAI keypoint category whose points it gets, or None (shoes, bags...).

>>> category_for("bottom", "Skirts"), category_for("bottom", "Jeans"), category_for("bag", "")
('skirt', 'trousers', None)
"""
from __future__ import annotations

#: Catalogue slot -> FashionAI keypoint category (bottoms are refined by name).
SLOT_TO_KEYPOINT_CATEGORY = {"top": "blouse", "outerwear": "outwear", "dress": "dress",
                             "bottom": "trousers"}
_SKIRT_WORDS = ("skirt", "falda")
_DRESS_WORDS = ("dress", "vestido")


def category_for(slot: str, subcategory: str = "") -> str | None:
    """The FashionAI keypoint category of a catalogue item, or None if it has none.

    Bottoms whose subcategory names a skirt are ``skirt``; other bottoms are
    ``trousers``; tops are ``blouse``; outerwear ``outwear``; dresses ``dress``.
    """
    base = SLOT_TO_KEYPOINT_CATEGORY.get(str(slot).lower())
    if base is None:
        return None
    sub = str(subcategory).lower()
    if base == "trousers" and any(w in sub for w in _SKIRT_WORDS):
        return "skirt"
    return base
