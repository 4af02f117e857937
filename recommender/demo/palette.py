"""The demo colour palette: named colours with sRGB and CIELAB values.

Each colour belongs to one of MANGO's ten colour groups (``des_agrup_color_eng``:
GREY, WHITE, BLUE, BROWN, PINK, RED, GREEN, YELLOW, ORANGE, PURPLE), so the
catalogue's ``colour`` column can be scored exactly like MANGO's, and is either a
*neutral* (black, white, cream, beige, camel, navy, denim, brown, grey, gold,
silver) or an *accent* with a hue angle used by the style grammar's palette rules.

CIELAB values are computed from sRGB (D65, the standard formulas), never typed in.

Examples
--------
>>> p = palette_table()
>>> p.loc[p.name == "white", "group"].item(), bool(p.loc[p.name == "red", "neutral"].item())
('WHITE', False)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: (name, sRGB 0-255, MANGO colour group, neutral?)
PALETTE: tuple[tuple[str, tuple[int, int, int], str, bool], ...] = (
    # neutrals
    ("black", (28, 28, 30), "GREY", True),
    ("charcoal", (64, 64, 68), "GREY", True),
    ("grey", (140, 140, 142), "GREY", True),
    ("light grey", (196, 196, 198), "GREY", True),
    ("white", (247, 247, 245), "WHITE", True),
    ("off-white", (240, 237, 228), "WHITE", True),
    ("cream", (238, 229, 207), "WHITE", True),
    ("beige", (214, 196, 164), "WHITE", True),
    ("camel", (193, 154, 107), "WHITE", True),
    ("navy", (32, 42, 78), "BLUE", True),
    ("denim", (72, 98, 138), "BLUE", True),
    ("light denim", (128, 156, 190), "BLUE", True),
    ("brown", (104, 70, 46), "BROWN", True),
    ("khaki", (150, 138, 96), "BROWN", True),
    ("gold", (206, 170, 74), "WHITE", True),
    ("silver", (186, 188, 194), "GREY", True),
    # accents
    ("red", (196, 30, 44), "RED", False),
    ("burgundy", (112, 28, 44), "RED", False),
    ("coral", (240, 120, 100), "PINK", False),
    ("pink", (236, 160, 180), "PINK", False),
    ("fuchsia", (200, 40, 130), "PINK", False),
    ("orange", (236, 120, 36), "ORANGE", False),
    ("terracotta", (188, 90, 60), "ORANGE", False),
    ("mustard", (214, 166, 40), "YELLOW", False),
    ("yellow", (244, 214, 70), "YELLOW", False),
    ("green", (46, 130, 70), "GREEN", False),
    ("bottle green", (20, 76, 50), "GREEN", False),
    ("sage", (160, 180, 150), "GREEN", False),
    ("sky blue", (140, 186, 226), "BLUE", False),
    ("royal blue", (40, 70, 180), "BLUE", False),
    ("turquoise", (40, 170, 176), "BLUE", False),
    ("purple", (100, 50, 130), "PURPLE", False),
    ("lilac", (186, 160, 210), "PURPLE", False),
)

COLOUR_NAMES: tuple[str, ...] = tuple(p[0] for p in PALETTE)
COLOUR_INDEX: dict[str, int] = {n: i for i, n in enumerate(COLOUR_NAMES)}


def srgb_to_lab(rgb) -> np.ndarray:
    """CIELAB (D65) of sRGB values in 0..255, shape (..., 3) -> (..., 3).

    >>> np.round(srgb_to_lab([255, 255, 255]), 1).tolist() == [100.0, 0.0, 0.0]
    True
    """
    c = np.asarray(rgb, dtype=float) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                    200 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab + 0.0  # no negative zeros in printed values


def palette_table() -> pd.DataFrame:
    """The palette as a table: name, r, g, b, L, a, b_, hue (degrees), group, neutral."""
    rgb = np.array([p[1] for p in PALETTE], dtype=float)
    lab = srgb_to_lab(rgb)
    hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1])) % 360
    return pd.DataFrame({
        "name": COLOUR_NAMES, "r": rgb[:, 0].astype(int), "g": rgb[:, 1].astype(int),
        "b": rgb[:, 2].astype(int), "L": lab[:, 0], "a": lab[:, 1], "b_": lab[:, 2],
        "hue": hue, "group": [p[2] for p in PALETTE],
        "neutral": [p[3] for p in PALETTE]})


PALETTE_RGB = np.array([p[1] for p in PALETTE], dtype=np.float32)
PALETTE_LAB = srgb_to_lab(PALETTE_RGB)
PALETTE_HUE = np.degrees(np.arctan2(PALETTE_LAB[:, 2], PALETTE_LAB[:, 1])) % 360
PALETTE_NEUTRAL = np.array([p[3] for p in PALETTE], dtype=bool)
PALETTE_GROUP = np.array([p[2] for p in PALETTE], dtype=object)
