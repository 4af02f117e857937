"""A tiny catalogue with a KNOWN compatibility rule, for compatibility and evaluation tests.

Rule: every outfit draws all its items' colours from one palette; palettes are
disjoint. So a pair is compatible iff the two colours share a palette, a rule a
model can only learn from content (colour) and which holds for items never seen
in an outfit (cold items). Each outfit is a top, a bottom and shoes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

PALETTES = (("WHITE", "NAVY"), ("RED", "BLACK"), ("GREEN", "YELLOW"))
SUBCATEGORIES = {"top": ("Shirt", "Tee"), "bottom": ("Jeans", "Skirt"), "shoes": ("Sneaker",)}


def synthetic_catalog(per_sub: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colours = [c for p in PALETTES for c in p]
    rows = []
    for cat, subs in SUBCATEGORIES.items():
        for sub in subs:
            for k in range(per_sub):
                rows.append({"item_id": f"{sub[:2].lower()}{k:03d}", "category": cat,
                             "subcategory": sub, "colour": colours[rng.integers(len(colours))],
                             "material": ["cotton", "denim"][rng.integers(2)],
                             "gender": "Female", "image_path": ""})
    return pd.DataFrame(rows)


def palette_of(colour: str) -> int:
    return next(k for k, p in enumerate(PALETTES) if colour in p)


def synthetic_outfits(catalog: pd.DataFrame, n_outfits: int = 200, seed: int = 0,
                      unused_fraction: float = 0.3) -> pd.DataFrame:
    """Outfits obeying the palette rule; ``unused_fraction`` of items never used."""
    rng = np.random.default_rng(seed + 1)
    cat = catalog.copy()
    cat["palette"] = cat["colour"].map(palette_of)
    used = cat.sample(frac=1 - unused_fraction, random_state=seed)
    rows = []
    for o in range(n_outfits):
        p = int(rng.integers(len(PALETTES)))
        for slot in SUBCATEGORIES:
            pool = used[(used["category"] == slot) & (used["palette"] == p)]
            rows.append({"outfit_id": str(o), "item_id": pool["item_id"].iloc[
                rng.integers(len(pool))]})
    return pd.DataFrame(rows)


def make_bundle(root, per_sub: int = 30, n_outfits: int = 200, seed: int = 0):
    """A bundle folder holding the synthetic catalogue and outfits (ingest's outputs)."""
    from recommender.bundle import Bundle
    from recommender.catalog import validate_catalog

    catalog = synthetic_catalog(per_sub, seed)
    outfits = synthetic_outfits(catalog, n_outfits, seed)
    clean, report = validate_catalog(catalog, check_images=False)
    b = Bundle.create(root, source="synthetic", image_root=None,
                      config={"source": "synthetic", "seed": seed, "quick": True})
    clean.to_parquet(b.path("catalog.parquet"), index=False)
    outfits.to_parquet(b.path("outfits.parquet"), index=False)
    return b
