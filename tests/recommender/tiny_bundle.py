"""A tiny bundle with a known answer, built with the real code (Bundle, catalogue
validation, the graph stage); features and embeddings are computed from a stated
construction, not read from real data.

Six styles s0..s5. Each has a top t<s>, bottom p<s>, shoes h<s>, bag g<s> (and a
dress d<s> for s < 3); the items of a style share its colour and lie close in
embedding space, and are worn together in the outfits. Extras: a pricier near
copy of t0 (t0_plus, 1.3x), a far pricier one (t0_lux, 2.5x), five near-identical
black bags (nb0..nb4) never worn, and one out-of-stock bottom (p0_oos).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recommender.bundle import Bundle
from recommender.catalog import validate_catalog
from recommender.pipeline import BuildContext, run_stages

COLOURS = ["BLACK", "WHITE", "RED", "BLUE", "GREEN", "PINK"]
CATS = {"t": ("top", "Shirt", 30.0), "p": ("bottom", "Trousers", 40.0),
        "h": ("shoes", "Sneakers", 50.0), "g": ("bag", "Tote", 35.0),
        "d": ("dress", "Dress", 60.0)}
DIM = 16
CAT_DIM = {"top": 6, "bottom": 7, "shoes": 8, "bag": 9, "dress": 10}


def _rows():
    rows = []
    for s in range(6):
        for pre, (cat, sub, price) in CATS.items():
            if pre == "d" and s >= 3:
                continue
            rows.append(dict(item_id=f"{pre}{s}", category=cat, subcategory=sub,
                             colour=COLOURS[s], price=price * (1 + 0.1 * s), style=s,
                             sleeve="Long Sleeves" if (pre in "td" and s % 2 == 0) else
                             ("Short Sleeves" if pre in "td" else "")))
    rows.append(dict(item_id="t0_plus", category="top", subcategory="Shirt", colour="BLACK",
                     price=39.0, style=0, sleeve="Long Sleeves"))
    rows.append(dict(item_id="t0_lux", category="top", subcategory="Shirt", colour="BLACK",
                     price=75.0, style=0, sleeve="Long Sleeves"))
    for i in range(5):
        rows.append(dict(item_id=f"nb{i}", category="bag", subcategory="Tote", colour="BLACK",
                         price=35.0, style=0, sleeve="", near=True))
    rows.append(dict(item_id="p0_oos", category="bottom", subcategory="Wide Trousers",
                     colour="BLACK", price=40.0, style=0, sleeve="", oos=True))
    return rows


def make_tiny_bundle(root: Path, *, with_price: bool = True,
                     unknown_price: tuple[str, ...] = (), id_prefix: str = "") -> Path:
    """Build the bundle under ``root``; ``unknown_price``: ids whose price cell is
    blank (loaded as NaN: unknown), in a catalogue that has prices. ``id_prefix``
    starts every item id (``"x"``: ``xt0``...), for a second bundle whose items the
    first does not hold."""
    rows = _rows()
    for r in rows:
        r["item_id"] = id_prefix + r["item_id"]
    rng = np.random.default_rng(0)
    emb = np.zeros((len(rows), DIM), dtype=np.float32)
    for i, r in enumerate(rows):
        emb[i, r["style"]] = 1.0
        emb[i, CAT_DIM[r["category"]]] = 0.5
        emb[i, 11:] = rng.normal(scale=0.01 if r.get("near") else 0.15, size=DIM - 11)
        if r["item_id"] == id_prefix + "t0_lux":
            emb[i, 11] += 0.5
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cat = pd.DataFrame({
        "item_id": [r["item_id"] for r in rows],
        "category": [r["category"] for r in rows],
        "subcategory": [r["subcategory"] for r in rows],
        "colour": [r["colour"] for r in rows],
        "material": ["" for _ in rows], "gender": ["Female" for _ in rows],
        "image_path": ["" for _ in rows],
        "in_stock": [not r.get("oos", False) for r in rows],
    })
    if with_price:
        cat["price"] = [None if r["item_id"] in unknown_price else r["price"] for r in rows]
    cat, report = validate_catalog(cat, check_images=False)
    assert report.ok, report.summary()
    outfits = []
    for s in range(6):
        outfits += [(f"o{s}a", id_prefix + x) for x in (f"t{s}", f"p{s}", f"h{s}", f"g{s}")]
        outfits += [(f"o{s}b", id_prefix + x) for x in (f"t{s}", f"p{s}", f"h{s}")]
        if s < 3:
            outfits += [(f"o{s}c", id_prefix + x) for x in (f"d{s}", f"h{s}", f"g{s}")]
    outfits = pd.DataFrame(outfits, columns=["outfit_id", "item_id"])
    held = outfits["outfit_id"].isin(["o1b", "o4b"])
    b = Bundle.create(root, source="test", image_root=None)
    cat.to_parquet(b.path("catalog.parquet"))
    outfits.to_parquet(b.path("outfits.parquet"))
    b.path("eval").mkdir(exist_ok=True)
    outfits[~held].to_parquet(b.path("eval", "train_outfits.parquet"))
    outfits[held].to_parquet(b.path("eval", "test_outfits.parquet"))
    b.path("features").mkdir(exist_ok=True)
    feats = pd.DataFrame({"item_id": cat["item_id"], "feat_ok": True,
                          "colour_group": cat["colour"],
                          "attr_sleeve_length_labels": [r["sleeve"] for r in rows],
                          "attr_sleeve_length_labels_conf": 0.9})
    feats.to_parquet(b.path("features", "features.parquet"))
    np.save(b.path("features", "embeddings.npy"), emb)
    ctx = BuildContext(b, {"source": "test", "seed": 0, "quick": True,
                           "stages": {"graph": {"k_compat": 10, "k_visual": 10}}},
                       log=lambda m: None)
    run_stages(ctx, ["graph"])
    return Path(root)
