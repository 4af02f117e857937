"""Sample the demo catalogue's item table, vectorised (a million rows in seconds).

Every item gets its canonical fields (category = outfit slot, subcategory,
colour = MANGO colour group, material, gender), the style-grammar fields
(``formality``, ``colour_name``, ``silhouette``, ``pattern``), the FashionAI
attribute classes that apply to it (one column per task file name holding the
class NAME, "" when the task does not apply) and the simulated commerce fields
``price`` and ``in_stock`` (recorded as simulated in ``demo.json``).

The attribute classes are drawn here; :mod:`recommender.demo.garments` then
draws a shape whose geometry realises them exactly (a "Long Sleeves" shirt has
sleeves reaching the wrist), so the attribute labels can be learned from pixels. The FashionAI class
"Invisible" is never drawn: every packshot shows the whole garment.

Which tasks apply: sleeve length (tops, dresses, outerwear); coat length (tops
and outerwear); skirt length (skirts, dresses); pant length (trousers, jeans,
shorts); lapel design (outerwear); and for tops and dresses exactly one of
neckline, collar or neck design, by the kind of neck drawn.

Examples
--------
>>> import numpy as np
>>> t = sample_items(50, np.random.default_rng(0))
>>> sorted(set(t.category)) <= sorted(SUBCATEGORIES)
True
>>> bool(t.loc[t.category == "shoes", "sleeve_length_labels"].eq("").all())
True
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.fashionai.schema import ATTRIBUTE_TASKS
from recommender.demo.palette import COLOUR_NAMES, PALETTE_GROUP, PALETTE_NEUTRAL

FORMALITIES: tuple[str, ...] = ("casual", "smart", "formal")
SILHOUETTES: tuple[str, ...] = ("slim", "regular", "wide", "oversized")
PATTERNS: tuple[str, ...] = ("solid", "stripes", "dots", "check", "print")

#: Category (outfit slot) shares of the catalogue.
CATEGORY_SHARE: dict[str, float] = {
    "top": 0.22, "bottom": 0.17, "dress": 0.08, "outerwear": 0.10, "shoes": 0.14,
    "bag": 0.10, "jewellery": 0.09, "accessory": 0.10,
}
#: Subcategories of each slot with their shares within it.
SUBCATEGORIES: dict[str, dict[str, float]] = {
    "top": {"t-shirt": 0.3, "shirt": 0.25, "sweater": 0.25, "blouse": 0.2},
    "bottom": {"trousers": 0.35, "jeans": 0.3, "skirt": 0.25, "shorts": 0.1},
    "dress": {"dress": 1.0},
    "outerwear": {"coat": 0.35, "blazer": 0.35, "jacket": 0.3},
    "shoes": {"sneakers": 0.28, "heels": 0.24, "boots": 0.24, "flats": 0.24},
    "bag": {"tote": 0.4, "crossbody": 0.35, "clutch": 0.25},
    "jewellery": {"necklace": 0.4, "earrings": 0.3, "bracelet": 0.3},
    "accessory": {"belt": 0.3, "hat": 0.2, "scarf": 0.3, "sunglasses": 0.2},
}
SUBCAT_LIST: tuple[str, ...] = tuple(s for c in SUBCATEGORIES.values() for s in c)
SUBCAT_CATEGORY: dict[str, str] = {s: c for c, d in SUBCATEGORIES.items() for s in d}

#: FashionAI keypoint category of each apparel subcategory.
KEYPOINT_CATEGORY: dict[str, str] = {
    "t-shirt": "blouse", "shirt": "blouse", "sweater": "blouse", "blouse": "blouse",
    "coat": "outwear", "blazer": "outwear", "jacket": "outwear", "dress": "dress",
    "trousers": "trousers", "jeans": "trousers", "shorts": "trousers", "skirt": "skirt",
}

#: P(casual, smart, formal) per subcategory.
FORMALITY_PRIOR: dict[str, tuple[float, float, float]] = {
    "t-shirt": (.8, .2, 0), "shirt": (.2, .5, .3), "sweater": (.5, .4, .1),
    "blouse": (.1, .5, .4), "trousers": (.15, .45, .4), "jeans": (.8, .2, 0),
    "skirt": (.3, .4, .3), "shorts": (.9, .1, 0), "dress": (.3, .35, .35),
    "coat": (.15, .45, .4), "blazer": (0, .45, .55), "jacket": (.6, .35, .05),
    "sneakers": (.9, .1, 0), "heels": (0, .3, .7), "boots": (.4, .45, .15),
    "flats": (.3, .5, .2), "tote": (.5, .45, .05), "crossbody": (.6, .35, .05),
    "clutch": (0, .3, .7), "necklace": (.2, .4, .4), "earrings": (.2, .4, .4),
    "bracelet": (.35, .4, .25), "belt": (.3, .5, .2), "hat": (.7, .25, .05),
    "scarf": (.4, .45, .15), "sunglasses": (.7, .3, 0),
}
#: P(slim, regular, wide, oversized) per apparel subcategory.
SILHOUETTE_PRIOR: dict[str, tuple[float, float, float, float]] = {
    "t-shirt": (.25, .45, .1, .2), "shirt": (.3, .45, .1, .15),
    "sweater": (.15, .35, .15, .35), "blouse": (.3, .4, .2, .1),
    "trousers": (.3, .35, .3, .05), "jeans": (.4, .35, .2, .05),
    "skirt": (.35, .35, .3, 0), "shorts": (.3, .5, .2, 0), "dress": (.35, .35, .25, .05),
    "coat": (.2, .4, .1, .3), "blazer": (.35, .45, 0, .2), "jacket": (.25, .4, .05, .3),
}
MATERIALS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("cotton", "jersey", "linen"), "shirt": ("cotton", "linen", "silk"),
    "sweater": ("knit", "wool", "cashmere"), "blouse": ("silk", "viscose", "polyester"),
    "trousers": ("wool", "cotton", "linen", "polyester"), "jeans": ("denim",),
    "skirt": ("cotton", "wool", "polyester", "leather"), "shorts": ("cotton", "denim", "linen"),
    "dress": ("viscose", "cotton", "silk", "polyester"), "coat": ("wool", "polyester"),
    "blazer": ("wool", "linen", "polyester"), "jacket": ("denim", "leather", "cotton", "polyester"),
    "sneakers": ("canvas", "leather", "synthetic"), "heels": ("leather", "suede"),
    "boots": ("leather", "suede"), "flats": ("leather", "suede", "synthetic"),
    "tote": ("leather", "faux leather", "canvas"), "crossbody": ("leather", "faux leather"),
    "clutch": ("leather", "satin", "faux leather"), "necklace": ("metal", "pearl", "resin"),
    "earrings": ("metal", "pearl", "resin"), "bracelet": ("metal", "resin"),
    "belt": ("leather", "faux leather"), "hat": ("straw", "wool", "cotton"),
    "scarf": ("silk", "wool", "cotton"), "sunglasses": ("acetate", "metal"),
}
PRICE_BASE: dict[str, float] = {
    "t-shirt": 15, "shirt": 35, "sweater": 40, "blouse": 35, "trousers": 40, "jeans": 40,
    "skirt": 30, "shorts": 25, "dress": 50, "coat": 120, "blazer": 80, "jacket": 70,
    "sneakers": 50, "heels": 60, "boots": 90, "flats": 40, "tote": 40, "crossbody": 35,
    "clutch": 30, "necklace": 20, "earrings": 15, "bracelet": 15, "belt": 20, "hat": 25,
    "scarf": 20, "sunglasses": 25,
}
_PREMIUM = {"leather", "wool", "silk", "cashmere", "suede"}

# -- FashionAI attribute classes per subcategory --------------------------------------
SLEEVE = ATTRIBUTE_TASKS["sleeve_length_labels"][1:]  # without "Invisible"
SLEEVE_PRIOR: dict[str, tuple[float, ...]] = {
    "t-shirt": (.05, .1, .6, .15, .05, 0, .05, 0),
    "shirt": (.02, 0, .25, .08, .15, .1, .4, 0),
    "sweater": (0, 0, .05, .05, .15, .15, .45, .15),
    "blouse": (.2, .15, .2, .1, .15, .05, .15, 0),
    "dress": (.3, .1, .2, .1, .1, .05, .15, 0),
    "coat": (0, 0, 0, 0, .05, .2, .6, .15),
    "blazer": (0, 0, 0, .05, .15, .2, .6, 0),
    "jacket": (0, 0, .05, .05, .1, .2, .5, .1),
}
#: The neck of a top or dress: (task, class, weight). Exactly one task applies.
NECK_PRIOR: dict[str, tuple[tuple[str, str, float], ...]] = {
    "t-shirt": (("neckline", "Round Neckline", .6), ("neckline", "V Neckline", .25),
                ("neckline", "Straight Neck", .1), ("neckline", "Square Neckline", .05)),
    "shirt": (("collar", "Shirt Collar", .72), ("collar", "Puritan Collar", .1),
              ("collar", "Peter Pan", .1), ("collar", "Rib Collar", .08)),
    "sweater": (("neckline", "Round Neckline", .35), ("neckline", "V Neckline", .2),
                ("neck", "Turtle Neck", .2), ("neck", "Low Turtle Neck", .15),
                ("neck", "Draped Collar", .05), ("collar", "Rib Collar", .05)),
    "blouse": (("neckline", "V Neckline", .15), ("neckline", "Deep V Neckline", .1),
               ("neckline", "Round Neckline", .1), ("neckline", "Square Neckline", .08),
               ("neckline", "Sweat Heart Neck", .05), ("neckline", "Off Shoulder", .1),
               ("neckline", "One Shoulder Neckline", .04),
               ("neckline", "Strapless Neck", .03), ("neckline", "Straight Neck", .05),
               ("collar", "Peter Pan", .08), ("collar", "Shirt Collar", .07),
               ("neck", "Ruffle Semi-High Collar", .1), ("neck", "Draped Collar", .05)),
    "dress": (("neckline", "Round Neckline", .15), ("neckline", "V Neckline", .15),
              ("neckline", "Deep V Neckline", .08), ("neckline", "Square Neckline", .08),
              ("neckline", "Sweat Heart Neck", .07), ("neckline", "Off Shoulder", .08),
              ("neckline", "One Shoulder Neckline", .05),
              ("neckline", "Strapless Neck", .07), ("neckline", "Straight Neck", .07),
              ("collar", "Shirt Collar", .07), ("collar", "Peter Pan", .05),
              ("neck", "Turtle Neck", .04), ("neck", "Ruffle Semi-High Collar", .04)),
}
LAPEL_PRIOR: dict[str, dict[str, float]] = {
    "blazer": {"Notched": .85, "Shawl Collar": .1, "Collarless": .05},
    "coat": {"Notched": .35, "Shawl Collar": .2, "Plus Size Shawl": .15, "Collarless": .3},
    "jacket": {"Notched": .2, "Collarless": .5, "Shawl Collar": .15, "Plus Size Shawl": .15},
}
COAT_LENGTH_PRIOR: dict[str, dict[str, float]] = {
    **{s: {"High Waist Length": .12, "Regular Length": .7, "Long Length": .18}
       for s in ("t-shirt", "shirt", "sweater", "blouse")},
    "blazer": {"Regular Length": .6, "Long Length": .35, "Micro Length": .05},
    "jacket": {"High Waist Length": .3, "Regular Length": .55, "Long Length": .15},
    "coat": {"Long Length": .05, "Micro Length": .2, "Knee Length": .35,
             "Midi Length": .3, "Ankle&Floor Length": .1},
}
SKIRT_LENGTH_PRIOR: dict[str, dict[str, float]] = {
    "skirt": {"Short Length": .3, "Knee Length": .3, "Midi Length": .25,
              "Ankle Length": .1, "Floor Length": .05},
    "dress": {"Short Length": .3, "Knee Length": .3, "Midi Length": .2,
              "Ankle Length": .1, "Floor Length": .1},
}
PANT_LENGTH_PRIOR: dict[str, dict[str, float]] = {
    "trousers": {"3/4 Length": .1, "Cropped Pant": .3, "Full Length": .6},
    "jeans": {"3/4 Length": .05, "Cropped Pant": .35, "Full Length": .6},
    "shorts": {"Short Pant": .7, "Mid Length": .3},
}
#: Neck designs that leave no room for sleeves.
SLEEVELESS_NECKS = ("Strapless Neck", "One Shoulder Neckline")

ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(ATTRIBUTE_TASKS)
GRAMMAR_COLUMNS: tuple[str, ...] = ("pattern", "formality", "silhouette", "colour_name")


def _pick(rng: np.random.Generator, choices, weights, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    idx = rng.choice(len(w), size=n, p=w / w.sum())
    return np.asarray(choices, dtype=object)[idx]


def _colour_weights(subcat: str, formality: str) -> np.ndarray:
    """Palette weights: neutrals dominate (as in real catalogues), formal more so."""
    neutral = PALETTE_NEUTRAL.astype(float)
    names = np.array(COLOUR_NAMES)
    w = np.where(neutral, 1.6, 0.9)
    metal = np.isin(names, ("gold", "silver"))
    w[metal] = 0.0
    if subcat == "jeans":
        w = np.isin(names, ("denim", "light denim", "navy", "black", "white")) * 1.0
        w[np.isin(names, ("denim", "light denim"))] = 4.0
    elif subcat in ("necklace", "earrings", "bracelet"):
        w = metal * 5.0 + np.isin(names, ("white", "black", "red", "turquoise", "pink"))
    if formality == "formal":
        w = w * np.where(neutral, 1.8, 0.6)
    elif formality == "casual":
        w = w * np.where(neutral, 1.0, 1.3)
    return w


def sample_items(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Sample ``n`` catalogue rows (canonical + grammar + FashionAI attribute columns).

    Vectorised: each random field is drawn per group of equal subcategory (and
    formality), so the cost is a few numpy calls per group, not per item.
    """
    cats = list(CATEGORY_SHARE)
    category = _pick(rng, cats, [CATEGORY_SHARE[c] for c in cats], n)
    if n >= len(cats):  # even a tiny catalogue can dress a full look
        category[rng.choice(n, size=len(cats), replace=False)] = cats
    subcat = np.empty(n, dtype=object)
    for c in cats:
        m = category == c
        d = SUBCATEGORIES[c]
        subcat[m] = _pick(rng, list(d), list(d.values()), int(m.sum()))

    formality = np.empty(n, dtype=object)
    silhouette = np.full(n, "", dtype=object)
    material = np.empty(n, dtype=object)
    attrs = {t: np.full(n, "", dtype=object) for t in ATTRIBUTE_COLUMNS}
    for s in SUBCAT_LIST:
        m = np.flatnonzero(subcat == s)
        k = len(m)
        if not k:
            continue
        formality[m] = _pick(rng, FORMALITIES, FORMALITY_PRIOR[s], k)
        material[m] = _pick(rng, MATERIALS[s], np.ones(len(MATERIALS[s])), k)
        if s in SILHOUETTE_PRIOR:
            silhouette[m] = _pick(rng, SILHOUETTES, SILHOUETTE_PRIOR[s], k)
        if s in NECK_PRIOR:
            spec = NECK_PRIOR[s]
            j = rng.choice(len(spec), size=k, p=np.array([w for *_, w in spec]) / sum(
                w for *_, w in spec))
            for task in ("neckline", "collar", "neck"):
                col = np.array([cls if t == task else "" for t, cls, _ in spec], dtype=object)
                attrs[f"{task}_design_labels"][m] = col[j]
        if s in LAPEL_PRIOR:
            d = LAPEL_PRIOR[s]
            attrs["lapel_design_labels"][m] = _pick(rng, list(d), list(d.values()), k)
        if s in SLEEVE_PRIOR:
            sl = _pick(rng, SLEEVE, SLEEVE_PRIOR[s], k)
            if s in NECK_PRIOR:
                forced = np.isin(attrs["neckline_design_labels"][m], SLEEVELESS_NECKS)
                sl[forced] = "Sleeveless"
            attrs["sleeve_length_labels"][m] = sl
        for prior, task in ((COAT_LENGTH_PRIOR, "coat_length_labels"),
                            (SKIRT_LENGTH_PRIOR, "skirt_length_labels"),
                            (PANT_LENGTH_PRIOR, "pant_length_labels")):
            if s in prior:
                d = prior[s]
                attrs[task][m] = _pick(rng, list(d), list(d.values()), k)

    colour_name = np.empty(n, dtype=object)
    for s in SUBCAT_LIST:
        for f in FORMALITIES:
            m = np.flatnonzero((subcat == s) & (formality == f))
            if len(m):
                colour_name[m] = _pick(rng, COLOUR_NAMES, _colour_weights(s, f), len(m))
    colour_idx = np.searchsorted(np.array(COLOUR_NAMES), colour_name.astype(str),
                                 sorter=np.argsort(COLOUR_NAMES))
    colour_idx = np.argsort(COLOUR_NAMES)[colour_idx]

    # Patterns: garments and scarves carry them; formal items mostly plain.
    pattern = np.full(n, "solid", dtype=object)
    patterned = np.isin(category, ("top", "bottom", "dress", "outerwear")) | (subcat == "scarf")
    patterned &= subcat != "jeans"
    p_pat = np.where(formality == "formal", 0.15, 0.42)
    has = patterned & (rng.random(n) < p_pat)
    pattern[has] = _pick(rng, PATTERNS[1:], (.3, .2, .25, .25), int(has.sum()))
    soft = np.isin(category, ("bag", "shoes")) & (rng.random(n) < 0.06)
    pattern[soft] = _pick(rng, ("dots", "print"), (.5, .5), int(soft.sum()))

    base = np.array([PRICE_BASE[s] for s in subcat], dtype=float)
    fmul = np.select([formality == "smart", formality == "formal"], [1.25, 1.6], 1.0)
    mmul = np.where(np.isin(material, list(_PREMIUM)), 1.4, 1.0)
    price = np.floor(base * fmul * mmul * rng.lognormal(0.0, 0.25, n)) + 0.99
    in_stock = rng.random(n) < 0.9

    width = max(6, len(str(n - 1)))
    df = pd.DataFrame({
        "item_id": [f"D{i:0{width}d}" for i in range(n)],
        "category": category.astype(str),
        "subcategory": subcat.astype(str),
        "colour": PALETTE_GROUP[colour_idx].astype(str),
        "material": material.astype(str),
        "gender": "Female",
        "image_path": "",
        "price": price,
        "in_stock": in_stock,
        "pattern": pattern.astype(str),
        "formality": formality.astype(str),
        "silhouette": silhouette.astype(str),
        "colour_name": colour_name.astype(str),
    })
    for t in ATTRIBUTE_COLUMNS:
        df[t] = attrs[t].astype(str)
    return df
