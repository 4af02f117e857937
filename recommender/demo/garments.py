"""Garment geometry: shapes built FROM FashionAI keypoints, so the keypoints are exact.

Each apparel item is laid out in a unit frame (x right, y down; tops measured in
armpit widths, bottoms in waistband widths), as a list of polygon *layers*
(bottom to top: hanging sleeves, body, a sleeve folded across the body, collars
and lapels) whose vertices include the FashionAI keypoints of its category.
:mod:`recommender.demo.render` scales the layout into the image, rounds every
vertex to whole pixels and draws the polygons, so a keypoint written to the CSV
is a vertex of the drawn mask. A keypoint is *occluded* (visibility 0) when it
lies strictly inside a layer drawn above its own (e.g. the armpit under a sleeve
folded across the body), otherwise visible (1).

Shape parameters realise the FashionAI attribute classes drawn in
:mod:`recommender.demo.items` (bins of one continuous quantity per task, see
``*_BINS``): sleeve length = distance shoulder -> cuff along the sleeve in units
of the arm length :data:`ARM`; coat length = shoulder line -> hem; skirt and
pant length = waistband -> hem in waistband widths. The neck design picks the
neck polygon (round, V, square, ... cut; shirt, Peter Pan, puritan, rib collar;
turtle and other high necks; notched and shawl lapels). A value near the edge of
its bin marks the neighbouring class ``m`` (maybe), as the challenge's labels do.

The free proportions (shoulder width, armpit depth, neck width, waist drop,
crotch depth, hem flare) come from :class:`ShapeStats`: built-in values, or the
median and robust spread measured on the real FashionAI ``train.csv`` when it is
available (:func:`fashionai_shape_stats`).

Examples
--------
>>> import numpy as np
>>> g = build_garment({"subcategory": "skirt", "silhouette": "wide",
...                    "skirt_length_labels": "Midi Length"}, builtin_shape_stats(),
...                   np.random.default_rng(0))
>>> g.fa_category, sorted(g.keypoints)
('skirt', ['hemline_left', 'hemline_right', 'waistband_left', 'waistband_right'])
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path

import numpy as np

from features.exceptions import SchemaError
from features.fashionai.schema import (ATTRIBUTE_TASKS, CATEGORY_KEYPOINTS, KEYPOINT_NAMES,
                                       NORMALISING_PAIR)
from recommender.demo.items import KEYPOINT_CATEGORY

#: Arm length (shoulder to wrist) in armpit widths.
ARM = 1.5

#: Ordered classes and the interval of the shape quantity that realises each.
SLEEVE_BINS: dict[str, tuple[float, float]] = {
    "Sleeveless": (0.0, 0.0), "Cup Sleeves": (0.08, 0.14), "Short Sleeves": (0.2, 0.32),
    "Elbow Sleeves": (0.4, 0.5), "3/4 Sleeves": (0.58, 0.7), "Wrist Length": (0.8, 0.9),
    "Long Sleeves": (0.97, 1.05), "Extra Long Sleeves": (1.12, 1.25),
}
COAT_BINS: dict[str, tuple[float, float]] = {
    "High Waist Length": (1.05, 1.25), "Regular Length": (1.55, 1.8),
    "Long Length": (2.0, 2.3), "Micro Length": (2.45, 2.7), "Knee Length": (2.95, 3.25),
    "Midi Length": (3.5, 3.9), "Ankle&Floor Length": (4.3, 4.7),
}
SKIRT_BINS: dict[str, tuple[float, float]] = {
    "Short Length": (0.85, 1.35), "Knee Length": (1.75, 2.1), "Midi Length": (2.45, 2.85),
    "Ankle Length": (3.2, 3.45), "Floor Length": (3.65, 3.9),
}
PANT_BINS: dict[str, tuple[float, float]] = {
    "Short Pant": (1.1, 1.35), "Mid Length": (1.7, 2.0), "3/4 Length": (2.4, 2.7),
    "Cropped Pant": (2.9, 3.15), "Full Length": (3.35, 3.6),
}
#: Nominal classes that are easily confused: a share of labels mark the pair ``m``.
SIMILAR: dict[str, str] = {
    "V Neckline": "Deep V Neckline", "Deep V Neckline": "V Neckline",
    "Round Neckline": "Straight Neck", "Straight Neck": "Round Neckline",
    "Square Neckline": "Straight Neck", "Sweat Heart Neck": "Square Neckline",
    "Turtle Neck": "Low Turtle Neck", "Low Turtle Neck": "Turtle Neck",
    "Ruffle Semi-High Collar": "Low Turtle Neck", "Draped Collar": "Round Neckline",
    "Shirt Collar": "Puritan Collar", "Puritan Collar": "Shirt Collar",
    "Peter Pan": "Puritan Collar", "Shawl Collar": "Plus Size Shawl",
    "Plus Size Shawl": "Shawl Collar", "Notched": "Shawl Collar", "Collarless": "Notched",
    "Off Shoulder": "Strapless Neck", "Strapless Neck": "Off Shoulder",
}
MAYBE_MARGIN = 0.15   # fraction of a bin's width at each edge that reads as ambiguous
MAYBE_NOMINAL = 0.06  # share of nominal labels with an 'm' on the similar class


@dataclasses.dataclass
class Layer:
    """One filled polygon. ``fill``: "main" (the item's colour and pattern), "plain"
    (its colour, no pattern), "lining" (darker inside), "contrast" (white/black
    detail), "metal", "sole", "lens". ``shade`` multiplies the colour."""

    pts: np.ndarray
    fill: str = "main"
    shade: float = 1.0


@dataclasses.dataclass
class Ink:
    """A detail stroke or dot drawn inside the mask only (seams, buttons, folds)."""

    pts: np.ndarray          # (k, 2) polyline, or (1, 2) centre of a dot
    width: float             # stroke width or dot radius, in unit-frame units
    colour: str = "dark"     # "dark", "light", "stitch", "metal"
    alpha: float = 0.3


@dataclasses.dataclass
class Garment:
    """A laid-out item: layers bottom to top, ink details, keypoints in unit frame."""

    layers: list[Layer]
    ink: list[Ink]
    keypoints: dict[str, tuple[float, float]]
    kp_layer: dict[str, int]          # index of the layer each keypoint belongs to
    fa_category: str | None = None
    maybe: dict[str, str] = dataclasses.field(default_factory=dict)


# -- shape statistics ------------------------------------------------------------------
@dataclasses.dataclass
class ShapeStats:
    """Free proportions per FashionAI category: name -> (median, spread).

    Units: the category's NORMALISING_PAIR distance (armpit width for tops,
    waistband width for bottoms). ``source`` says where they came from.
    """

    values: dict[str, dict[str, tuple[float, float]]]
    source: str = "builtin"
    n_rows: dict[str, int] = dataclasses.field(default_factory=dict)

    def draw(self, cat: str, name: str, rng: np.random.Generator,
             lo: float | None = None, hi: float | None = None) -> float:
        m, s = self.values[cat][name]
        v = m + s * float(np.clip(rng.standard_normal(), -2.0, 2.0))
        lo = m - 2 * s if lo is None else lo
        hi = m + 2 * s if hi is None else hi
        return float(min(max(v, lo), hi))

    def to_dict(self) -> dict:
        return {"source": self.source, "n_rows": self.n_rows,
                "values": {c: {k: [round(a, 4), round(b, 4)] for k, (a, b) in d.items()}
                           for c, d in self.values.items()}}


#: Plausible ranges: real annotations include odd poses; stats are clipped here.
_STAT_RANGES: dict[str, tuple[float, float, float, float]] = {
    # name: (lo_median, hi_median, lo_spread, hi_spread)
    "shoulder_half": (0.5, 0.75, 0.01, 0.08),
    "shoulder_drop": (0.0, 0.2, 0.01, 0.06),
    "armpit_depth": (0.35, 0.75, 0.02, 0.1),
    "neck_half": (0.12, 0.3, 0.01, 0.05),
    "neck_depth": (0.08, 0.4, 0.02, 0.1),
    "waist_drop": (0.4, 1.0, 0.03, 0.15),
    "waist_half": (0.36, 0.55, 0.01, 0.06),
    "hem_half": (0.42, 0.7, 0.02, 0.08),
    "crotch_depth": (0.6, 1.2, 0.03, 0.12),
    "hem_ratio": (1.0, 1.8, 0.05, 0.3),
}


def builtin_shape_stats() -> ShapeStats:
    """Hand-set proportions used when no FashionAI annotations are available."""
    top = {"shoulder_half": (0.6, 0.03), "shoulder_drop": (0.07, 0.025),
           "armpit_depth": (0.5, 0.05), "neck_half": (0.2, 0.025),
           "neck_depth": (0.16, 0.04), "hem_half": (0.52, 0.04)}
    return ShapeStats(values={
        "blouse": dict(top),
        "outwear": {**top, "shoulder_half": (0.62, 0.03), "waist_drop": (0.6, 0.06),
                    "waist_half": (0.48, 0.03), "hem_half": (0.54, 0.04)},
        "dress": {**top, "waist_drop": (0.55, 0.06), "waist_half": (0.44, 0.03)},
        "skirt": {"hem_ratio": (1.35, 0.15)},
        "trousers": {"crotch_depth": (0.85, 0.07)},
    }, source="builtin")


def _robust(v: np.ndarray, name: str) -> tuple[float, float]:
    lo_m, hi_m, lo_s, hi_s = _STAT_RANGES[name]
    v = v[np.isfinite(v)]
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    return float(np.clip(med, lo_m, hi_m)), float(np.clip(mad, lo_s, hi_s))


def _read_keypoint_arrays(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xy (N,24,2), vis (N,24), categories) of a FashionAI keypoint CSV.

    Vectorised: the 63,765-row ``train.csv`` reads in about a second, several
    times faster than the row-wise validating reader of ``features.fashionai.io``,
    which reads a file this one cannot (a malformed cell, not UTF-8) to say where
    (SchemaError naming the file, line and cell) rather than pandas' bare ValueError.
    """
    try:
        return _read_keypoint_arrays_fast(path)
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, SchemaError):
            raise
        from features.fashionai.io import keypoints_to_arrays, read_keypoints_csv

        df = read_keypoints_csv(path)
        xy, vis = keypoints_to_arrays(df)
        return xy, vis, df["image_category"].to_numpy(dtype=object)


def _read_keypoint_arrays_fast(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import io

    import pandas as pd

    from features.fashionai.io import KEYPOINT_HEADER

    with open(path, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
        if tuple(header) != KEYPOINT_HEADER:
            raise SchemaError(f"{path}: not a FashionAI keypoint CSV (header "
                              f"{','.join(KEYPOINT_HEADER[:3])},...)", field="header")
        cats, cells = [], []
        for line in fh:
            parts = line.rstrip("\n").split(",", 2)
            if len(parts) == 3:
                cats.append(parts[1])
                cells.append(parts[2])
    # one C-parsed numeric table of the x_y_v cells (underscores made separators)
    text = "\n".join(cells).replace("_", ",")
    vals = pd.read_csv(io.StringIO(text), header=None).to_numpy(dtype=float) if cells else \
        np.zeros((0, 3 * len(KEYPOINT_NAMES)))
    vals = vals.reshape(len(cells), len(KEYPOINT_NAMES), 3)
    return vals[:, :, :2], vals[:, :, 2].astype(int), np.asarray(cats, dtype=object)


@functools.lru_cache(maxsize=4)
def _cached_stats(path: str, mtime: float, size: int) -> "ShapeStats":
    return _fashionai_shape_stats(path)


def fashionai_shape_stats(path: str | os.PathLike) -> ShapeStats:
    """Median and robust spread of the free proportions on a FashionAI ``train.csv``
    (cached per file version within a process; see :func:`_fashionai_shape_stats`)."""
    st = Path(path).stat()
    return _cached_stats(str(path), st.st_mtime, st.st_size)


def _fashionai_shape_stats(path: str | os.PathLike) -> ShapeStats:
    """Median and robust spread of the free proportions on a FashionAI ``train.csv``.

    Each row is normalised by its category's NORMALISING_PAIR (origin at the
    pair's midpoint, unit = the pair's distance); only rows whose points used are
    all visible and whose pair is near horizontal (|dy| < 0.15 of its length,
    i.e. an upright garment) count. Proportions that need ``center_front`` etc.
    use the rows that have it; fewer than 20 such rows keep the built-in value.
    """
    from features.fashionai.schema import KEYPOINT_INDEX as K

    xy, vis, cats = _read_keypoint_arrays(path)
    base = builtin_shape_stats()
    values: dict[str, dict[str, tuple[float, float]]] = {}
    n_rows: dict[str, int] = {}
    for cat, d in base.values.items():
        m = cats == cat
        p, v = xy[m], vis[m]
        a, b = (K[n] for n in NORMALISING_PAIR[cat])
        vec = p[:, b] - p[:, a]
        dist = np.hypot(vec[:, 0], vec[:, 1])
        ok = (v[:, a] == 1) & (v[:, b] == 1) & (dist > 5) & (np.abs(vec[:, 1]) < 0.15 * dist)
        mid = (p[:, a] + p[:, b]) / 2
        q = (p - mid[:, None, :]) / np.where(dist > 0, dist, 1)[:, None, None]

        def meas(names, fn):
            sel = ok.copy()
            for nm in names:
                sel &= v[:, K[nm]] == 1
            return fn(q[sel]) if sel.any() else np.array([])

        out: dict[str, tuple[float, float]] = {}
        n_rows[cat] = int(ok.sum())
        for name in d:
            if name == "shoulder_half":
                r = meas(("shoulder_left", "shoulder_right"),
                         lambda q: (q[:, K["shoulder_right"], 0] - q[:, K["shoulder_left"], 0]) / 2)
            elif name == "shoulder_drop":
                r = meas(("shoulder_left", "shoulder_right", "neckline_left", "neckline_right"),
                         lambda q: (q[:, K["shoulder_left"], 1] + q[:, K["shoulder_right"], 1]
                                    - q[:, K["neckline_left"], 1] - q[:, K["neckline_right"], 1]) / 2)
            elif name == "armpit_depth":
                r = meas(("shoulder_left", "shoulder_right"),
                         lambda q: -(q[:, K["shoulder_left"], 1] + q[:, K["shoulder_right"], 1]) / 2)
            elif name == "neck_half":
                r = meas(("neckline_left", "neckline_right"),
                         lambda q: (q[:, K["neckline_right"], 0] - q[:, K["neckline_left"], 0]) / 2)
            elif name == "neck_depth":
                if cat == "outwear":
                    out[name] = d[name]
                    continue
                r = meas(("neckline_left", "neckline_right", "center_front"),
                         lambda q: q[:, K["center_front"], 1]
                         - (q[:, K["neckline_left"], 1] + q[:, K["neckline_right"], 1]) / 2)
            elif name == "waist_drop":
                r = meas(("waistline_left", "waistline_right"),
                         lambda q: (q[:, K["waistline_left"], 1] + q[:, K["waistline_right"], 1]) / 2)
            elif name == "waist_half":
                r = meas(("waistline_left", "waistline_right"),
                         lambda q: (q[:, K["waistline_right"], 0] - q[:, K["waistline_left"], 0]) / 2)
            elif name == "hem_half":
                hl, hr = (("hemline_left", "hemline_right") if cat == "dress"
                          else ("top_hem_left", "top_hem_right"))
                if cat == "dress":
                    out[name] = d[name]
                    continue
                r = meas((hl, hr), lambda q: (q[:, K[hr], 0] - q[:, K[hl], 0]) / 2)
            elif name == "hem_ratio":
                r = meas(("hemline_left", "hemline_right"),
                         lambda q: q[:, K["hemline_right"], 0] - q[:, K["hemline_left"], 0])
            elif name == "crotch_depth":
                r = meas(("crotch",), lambda q: q[:, K["crotch"], 1])
            else:  # pragma: no cover - every name above is handled
                r = np.array([])
            out[name] = _robust(np.asarray(r, dtype=float), name) if len(r) >= 20 else d[name]
        values[cat] = out
    return ShapeStats(values=values, source=f"fashionai:{Path(path).name}", n_rows=n_rows)


# -- small geometry helpers ------------------------------------------------------------
def _arc(cx, cy, rx, ry, a0, a1, n=12) -> np.ndarray:
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _stroke(line, w) -> np.ndarray:
    """Polygon of a polyline thickened to width ``w`` (a thin strap, chain, lens rim)."""
    p = np.asarray(line, dtype=float)
    d = np.gradient(p, axis=0)
    d /= np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    n = np.stack([-d[:, 1], d[:, 0]], axis=1) * (w / 2)
    return np.concatenate([p + n, (p - n)[::-1]])


def _ring(cx, cy, rx, ry, w, a0=0, a1=360, n=36) -> np.ndarray:
    outer = _arc(cx, cy, rx + w / 2, ry + w / 2, a0, a1, n)
    inner = _arc(cx, cy, rx - w / 2, ry - w / 2, a1, a0, n)
    return np.concatenate([outer, inner])


def _bin_value(bins: dict[str, tuple[float, float]], cls: str, rng: np.random.Generator,
               maybe: dict[str, str], task: str) -> float:
    """A value in ``cls``'s bin; near an edge the neighbouring class is marked maybe."""
    lo, hi = bins[cls]
    v = float(rng.uniform(lo, hi))
    names = list(bins)
    i = names.index(cls)
    if hi > lo:
        f = (v - lo) / (hi - lo)
        if f < MAYBE_MARGIN and i > 0 and names[i - 1] != "Sleeveless":
            maybe[task] = names[i - 1]
        elif f > 1 - MAYBE_MARGIN and i + 1 < len(names):
            maybe[task] = names[i + 1]
    return v


def _nominal_maybe(task: str, cls: str, rng: np.random.Generator, maybe: dict[str, str]):
    other = SIMILAR.get(cls)
    if other and other in ATTRIBUTE_TASKS[task] and rng.random() < MAYBE_NOMINAL:
        maybe[task] = other


def _point_in_poly(pt, poly) -> tuple[bool, float]:
    """(inside, distance to the boundary) of a point and a polygon."""
    x, y = pt
    p = np.asarray(poly, dtype=float)
    q = np.roll(p, -1, axis=0)
    cond = (p[:, 1] > y) != (q[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = p[:, 0] + (y - p[:, 1]) * (q[:, 0] - p[:, 0]) / (q[:, 1] - p[:, 1])
    inside = bool(np.count_nonzero(cond & (x < xint)) % 2)
    d = q - p
    L2 = np.maximum((d ** 2).sum(1), 1e-12)
    t = np.clip(((x - p[:, 0]) * d[:, 0] + (y - p[:, 1]) * d[:, 1]) / L2, 0, 1)
    proj = p + t[:, None] * d
    dist = float(np.min(np.hypot(proj[:, 0] - x, proj[:, 1] - y)))
    return inside, dist


def visibility(layers_px: list[np.ndarray], kp_px: dict[str, np.ndarray],
               kp_layer: dict[str, int], margin: float = 1.0) -> dict[str, int]:
    """1 if a keypoint is uncovered, 0 if strictly inside (> ``margin`` px from the
    edge of) a layer drawn above its own layer."""
    out = {}
    for name, pt in kp_px.items():
        v = 1
        for j in range(kp_layer[name] + 1, len(layers_px)):
            inside, dist = _point_in_poly(pt, layers_px[j])
            if inside and dist > margin:
                v = 0
                break
        out[name] = v
    return out


# -- necklines -------------------------------------------------------------------------
def _neck_curve(kind: str, nl, nr, depth: float) -> np.ndarray:
    """Points from ``nr`` to ``nl`` (exclusive of both) through center_front."""
    cf = np.array([0.0, nl[1] + depth])
    if kind in ("V Neckline", "Deep V Neckline"):
        return cf[None]
    if kind == "Square Neckline":
        return np.array([[nr[0], cf[1]], cf, [nl[0], cf[1]]])
    if kind == "Sweat Heart Neck":
        r = (nr[0] - nl[0]) / 4
        right = _arc(r, cf[1] - r * 0.2, r, depth * 0.6, 0, 180, 9)[1:-1]
        left = _arc(-r, cf[1] - r * 0.2, r, depth * 0.6, 0, 180, 9)[1:-1]
        return np.concatenate([right, cf[None], left])
    # round, straight and everything with a soft curve: half ellipse through cf
    half = (nr[0] - nl[0]) / 2
    a = _arc(0, nl[1], half, depth, 0, 180, 15)[1:-1]
    a[len(a) // 2] = cf
    return a


# -- tops, dresses, outerwear ----------------------------------------------------------
def _sleeve(side: int, sh, ap, frac: float, width: float, theta: float,
            crossed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(polygon, cuff_in, cuff_out) of the ``side`` (-1 left, +1 right) sleeve."""
    sh, ap = np.asarray(sh, float), np.asarray(ap, float)
    if frac <= 0:
        return np.array([sh, ap]), ap.copy(), sh.copy()
    L = frac * ARM
    if not crossed:
        d = np.array([side * math.sin(theta), math.cos(theta)])
        n_in = np.array([-side * math.cos(theta), math.sin(theta)])
        out = sh + L * d
        inn = out + width * n_in
        return np.array([sh, out, inn, ap]), inn, out
    # folded across the body: the root widens past the armpit (which it covers)
    d = np.array([-side * math.sin(theta), math.cos(theta)])
    r2 = ap + np.array([side * 0.09, 0.15])
    out = sh + L * d
    inn = r2 + (L - float(np.dot(r2 - sh, d))) * d
    return np.array([sh, out, inn, r2]), inn, out


def _upper(item: dict, stats: ShapeStats, rng: np.random.Generator, cat: str,
           maybe: dict[str, str]):
    """Shoulders, armpits, neck and sleeves shared by blouse, outwear and dress."""
    sil = item.get("silhouette") or "regular"
    sh_half = stats.draw(cat, "shoulder_half", rng)
    drop = stats.draw(cat, "shoulder_drop", rng, lo=0.02)
    ad = stats.draw(cat, "armpit_depth", rng)
    nh = stats.draw(cat, "neck_half", rng)
    if sil == "oversized":
        sh_half += 0.1
        ad += 0.08
    elif sil == "slim":
        sh_half -= 0.03
    neckline = item.get("neckline_design_labels", "")
    sleeve_cls = item.get("sleeve_length_labels") or "Long Sleeves"
    frac = _bin_value(SLEEVE_BINS, sleeve_cls, rng, maybe, "sleeve_length_labels")
    if frac == 0 and sil != "oversized":
        sh_half = min(sh_half, 0.52)   # sleeveless: narrower, strap-like shoulders
    nl = np.array([-nh, 0.0])
    nr = np.array([nh, 0.0])
    sl = np.array([-sh_half, drop])
    sr = np.array([sh_half, drop])
    al = np.array([-0.5, drop + ad])
    ar = np.array([0.5, drop + ad])
    return dict(sil=sil, nl=nl, nr=nr, sl=sl, sr=sr, al=al, ar=ar, frac=frac,
                neckline=neckline, ad=ad, drop=drop)


def _body_garment(item: dict, stats: ShapeStats, rng: np.random.Generator) -> Garment:
    sub = item["subcategory"]
    cat = KEYPOINT_CATEGORY[sub]
    maybe: dict[str, str] = {}
    u = _upper(item, stats, rng, cat, maybe)
    nl, nr, sl, sr, al, ar = u["nl"], u["nr"], u["sl"], u["sr"], u["al"], u["ar"]
    sil, frac, drop = u["sil"], u["frac"], u["drop"]
    ink: list[Ink] = []
    neckline = u["neckline"]
    collar = item.get("collar_design_labels", "")
    neck = item.get("neck_design_labels", "")
    lapel = item.get("lapel_design_labels", "")
    for task, cls in (("neckline_design_labels", neckline), ("collar_design_labels", collar),
                      ("neck_design_labels", neck), ("lapel_design_labels", lapel)):
        if cls:
            _nominal_maybe(task, cls, rng, maybe)

    # -- neck line and its keypoints
    depth = stats.draw(cat, "neck_depth", rng, lo=0.08) if cat != "outwear" else 0.15
    kind = neckline or "Round Neckline"
    if neckline == "V Neckline":
        depth = rng.uniform(0.28, 0.38)
    elif neckline == "Deep V Neckline":
        depth = rng.uniform(0.55, 0.75)
    elif neckline == "Round Neckline":
        depth = rng.uniform(0.13, 0.2)
    elif neckline == "Square Neckline":
        depth = rng.uniform(0.22, 0.3)
    elif neckline == "Straight Neck":
        nl, nr = np.array([-0.32, 0.0]), np.array([0.32, 0.0])
        depth = rng.uniform(0.03, 0.06)
    elif neckline == "Sweat Heart Neck":
        nl, nr = np.array([-0.28, 0.0]), np.array([0.28, 0.0])
        depth = rng.uniform(0.3, 0.38)
    elif neckline == "Off Shoulder":
        y0 = drop + 0.08
        nl, nr = np.array([sl[0] + 0.04, y0]), np.array([sr[0] - 0.04, y0])
        sl, sr = np.array([sl[0], y0 + 0.05]), np.array([sr[0], y0 + 0.05])
        depth = rng.uniform(0.03, 0.06)
    elif neckline == "Strapless Neck":
        y0 = al[1] - 0.22
        sl, sr = np.array([-0.5, y0]), np.array([0.5, y0])
        nl, nr = sl.copy(), sr.copy()
        depth = rng.uniform(0.02, 0.05)
        kind = "Straight Neck"
    elif collar or neck:
        depth = rng.uniform(0.1, 0.16) if neck != "Draped Collar" else rng.uniform(0.22, 0.3)
        if neck == "Draped Collar":
            nl, nr = np.array([-0.27, 0.0]), np.array([0.27, 0.0])
    one_shoulder = neckline == "One Shoulder Neckline"
    if one_shoulder:
        y1 = ar[1] - 0.25
        nr = np.array([0.5, y1])
        sr = nr.copy()
        neck_pts = np.array([[0.0, (nl[1] + y1) / 2 + 0.02]])  # center_front on the diagonal
        cf = neck_pts[0]
    elif cat == "outwear" and lapel and lapel != "Collarless":
        brk = rng.uniform(0.65, 1.0) if item["subcategory"] == "blazer" else rng.uniform(0.45, 0.8)
        cf = np.array([0.0, drop + brk])
        neck_pts = cf[None]
    else:
        neck_pts = _neck_curve(kind, nl, nr, depth)
        cf = np.array([0.0, nl[1] + depth])

    # -- body below the armpits
    hem_half = stats.draw(cat, "hem_half", rng) if cat != "dress" else 0.5
    hem_half += {"slim": -0.05, "regular": 0.0, "wide": 0.08, "oversized": 0.05}[sil]
    kp: dict[str, np.ndarray] = {}
    if cat == "dress":
        wd = stats.draw(cat, "waist_drop", rng)
        wh = stats.draw(cat, "waist_half", rng) + (0.06 if sil == "oversized" else 0.0)
        wy = al[1] + wd
        wl, wr = np.array([-wh, wy]), np.array([wh, wy])
        ww = 2 * wh
        L = _bin_value(SKIRT_BINS, item["skirt_length_labels"], rng, maybe,
                       "skirt_length_labels") * ww
        flare = {"slim": 0.05, "regular": 0.16, "wide": 0.32, "oversized": 0.12}[sil]
        hh = wh * 1.15 + flare * L
        hl, hr = np.array([-hh, wy + L]), np.array([hh, wy + L])
        sag = 0.04 * hh if sil in ("wide", "regular") else 0.0
        hem = _arc(0, wy + L, hh, sag, 0, 180, 11)[1:-1] if sag else np.zeros((0, 2))
        left_side = [al, wl, hl]
        right_side = [hr, wr, ar]
        kp.update(waistline_left=wl, waistline_right=wr, hemline_left=hl, hemline_right=hr)
    else:
        L = _bin_value(COAT_BINS, item["coat_length_labels"], rng, maybe, "coat_length_labels")
        hy = drop + L
        long_ = L > 2.4
        if long_:  # coats below the hip flare out a little, more when wide
            hem_half += 0.05 * (L - 2.4) * (2.0 if sil == "wide" else 1.0)
        hl, hr = np.array([-hem_half, hy]), np.array([hem_half, hy])
        hem = np.zeros((0, 2))
        if cat == "outwear":
            wy = min(al[1] + stats.draw(cat, "waist_drop", rng), (al[1] + hy) / 2)
            t = (wy - al[1]) / max(hy - al[1], 1e-6)
            wx = stats.draw(cat, "waist_half", rng) + (0.08 if sil == "oversized" else 0.0)
            wx = max(wx, 0.5 + t * (hem_half - 0.5) - 0.06)
            wl, wr = np.array([-wx, wy]), np.array([wx, wy])
            left_side, right_side = [al, wl, hl], [hr, wr, ar]
            kp.update(waistline_left=wl, waistline_right=wr)
        else:
            left_side, right_side = [al, hl], [hr, ar]
        kp.update(top_hem_left=hl, top_hem_right=hr)

    if neckline == "Strapless Neck" or one_shoulder:
        frac = 0.0
    body = np.array([nl, sl] + left_side + list(hem[::-1] if len(hem) else [])
                    + right_side + [sr, nr] + list(neck_pts), dtype=float)
    if one_shoulder:
        body = np.array([nl, sl] + left_side + list(hem[::-1] if len(hem) else [])
                        + right_side + [nr] + list(neck_pts), dtype=float)
    if neckline == "Strapless Neck":
        body = np.array([sl] + left_side + list(hem[::-1] if len(hem) else [])
                        + right_side + [sr] + list(neck_pts), dtype=float)

    # -- sleeves
    layers: list[Layer] = []
    kp_layer: dict[str, int] = {}
    cuff_w = {"slim": 0.2, "regular": 0.24, "wide": 0.3, "oversized": 0.32}[sil]
    crossed_side = 0
    if frac >= 0.8 and cat != "dress" and rng.random() < 0.15:
        crossed_side = -1 if rng.random() < 0.5 else 1
    sleeve_polys = {}
    for side, shp, app in ((-1, sl, al), (1, sr, ar)):
        crossed = side == crossed_side
        w = cuff_w if frac >= 0.4 else float(np.hypot(*(shp - app))) * 0.8
        if frac <= 0:
            theta = 0.0
        elif crossed:
            theta = math.radians(rng.uniform(20, 32))
        else:
            lo = 8 if frac >= 0.8 else (15 if frac >= 0.4 else (30 if frac >= 0.15 else 50))
            theta = math.radians(rng.uniform(lo, lo + 14))
            # keep the inner cuff clear of the body (a hanging sleeve beside it)
            for _ in range(40):
                poly, inn, out = _sleeve(side, shp, app, frac, w, theta, False)
                side_x = abs(hl[0]) if inn[1] > al[1] else 0.5
                if abs(inn[0]) > side_x + 0.04 or inn[1] <= al[1] + 0.02:
                    break
                theta += math.radians(2)
        poly, inn, out = _sleeve(side, shp, app, frac, w, theta, crossed)
        sleeve_polys[side] = (poly, inn, out, crossed)
        nm = "left" if side < 0 else "right"
        kp[f"cuff_{nm}_in"] = inn
        kp[f"cuff_{nm}_out"] = out
        if frac >= 0.15:  # cuff seam, a little up the sleeve
            back = (shp - out) if not crossed else (shp - out)
            back = back / max(float(np.hypot(*back)), 1e-9) * 0.06
            ink.append(Ink(np.array([out + back, inn + back]), 0.012, "dark", 0.2))
    for side in (-1, 1):
        poly, inn, out, crossed = sleeve_polys[side]
        if frac > 0 and not crossed:
            layers.append(Layer(poly, "main", 0.93))
            nm = "left" if side < 0 else "right"
            kp_layer[f"cuff_{nm}_in"] = kp_layer[f"cuff_{nm}_out"] = len(layers) - 1
    body_idx = len(layers)
    layers.append(Layer(body, "main", 1.0))
    for side in (-1, 1):
        poly, inn, out, crossed = sleeve_polys[side]
        nm = "left" if side < 0 else "right"
        if frac > 0 and crossed:
            layers.append(Layer(poly, "main", 0.96))
            kp_layer[f"cuff_{nm}_in"] = kp_layer[f"cuff_{nm}_out"] = len(layers) - 1
            ink.append(Ink(np.array([poly[0], poly[1]]), 0.014, "dark", 0.3))
            ink.append(Ink(np.array([poly[3], poly[2]]), 0.014, "dark", 0.3))
        elif frac <= 0:
            kp_layer[f"cuff_{nm}_in"] = kp_layer[f"cuff_{nm}_out"] = body_idx
    # armhole seams
    if frac > 0:
        for shp, app in ((sl, al), (sr, ar)):
            ink.append(Ink(np.array([shp, app]), 0.012, "dark", 0.25))

    kp.update(neckline_left=nl, neckline_right=nr, shoulder_left=sl, shoulder_right=sr,
              armpit_left=al, armpit_right=ar, center_front=cf)
    for name in kp:
        kp_layer.setdefault(name, body_idx)

    # -- collars, high necks, lapels (layers above the body)
    cls_layers = _neck_layers(cat, item, nl, nr, cf, neck_pts, drop, rng, ink, hl)
    layers.extend(cls_layers)

    # -- hem and side details
    ink.append(Ink(np.array([hl + [0, -0.05], hr + [0, -0.05]]), 0.01, "dark", 0.15))
    if cat == "dress" or cat == "outwear":
        if cat == "dress" and sil != "oversized":
            ink.append(Ink(np.array([wl, wr]), 0.014, "dark", 0.22))
    keep = [n for n in CATEGORY_KEYPOINTS[cat]]
    kp = {n: (float(kp[n][0]), float(kp[n][1])) for n in keep}
    return Garment(layers, ink, kp, {n: kp_layer[n] for n in keep}, cat, maybe)


def _neck_layers(cat, item, nl, nr, cf, neck_pts, drop, rng, ink, hl) -> list[Layer]:
    collar = item.get("collar_design_labels", "")
    neck = item.get("neck_design_labels", "")
    lapel = item.get("lapel_design_labels", "")
    out: list[Layer] = []
    curve = np.array([nr] + list(neck_pts) + [nl])
    hy = hl[1]
    if cat == "outwear":
        if lapel and lapel != "Collarless":
            band = np.array([nl, nl + [0.03, -0.08], nr + [-0.03, -0.08], nr])
            out.append(Layer(np.concatenate([band, [cf]]), "lining", 0.55))
            out.append(Layer(np.array([nl, nl + [0.03, -0.08], nr + [-0.03, -0.08], nr]),
                             "plain", 0.9))
            for s in (-1, 1):
                n0 = nl if s < 0 else nr
                if lapel == "Notched":
                    pts = [n0, n0 + [s * 0.1, 0.14], n0 + [s * 0.05, 0.18],
                           [s * 0.36, drop + 0.28], cf]
                elif lapel == "Shawl Collar":
                    pts = [n0] + list(_arc(0, cf[1] * 0.35, 0.3, cf[1] * 0.65,
                                           180 if s < 0 else 0, 90, 10)[:, :] * [1, 1]
                                      ) + [cf]
                    pts = [n0] + [p for p in pts[1:-1] if abs(p[0]) >= 0.02] + [cf]
                    pts = [n0] + [np.array([s * abs(p[0]), p[1]]) for p in pts[1:-1]] + [cf]
                else:  # Plus Size Shawl: wide, reaching the shoulders
                    pts = [n0] + [np.array([s * abs(p[0]), p[1]])
                                  for p in _arc(0, cf[1] * 0.3, 0.46, cf[1] * 0.7,
                                                180, 90, 10)] + [cf]
                pts = np.array(pts, dtype=float)
                out.append(Layer(pts, "main", 1.04))
                ink.append(Ink(pts[1:], 0.012, "dark", 0.3))
            ink.append(Ink(np.array([cf, [0.0, hy]]), 0.012, "dark", 0.35))
            nb = 1 if item["subcategory"] == "blazer" else 3
            for k in range(nb):
                y = cf[1] + 0.05 + k * 0.35
                if y < hy - 0.05:
                    ink.append(Ink(np.array([[0.04, y]]), 0.03, "dark", 0.55))
        else:
            ink.append(Ink(np.array([cf, [0.0, hy]]), 0.012, "dark", 0.35))
            for k in range(5):
                y = cf[1] + 0.12 + k * 0.3
                if y < hy - 0.05:
                    ink.append(Ink(np.array([[0.0, y]]), 0.025, "dark", 0.5))
        return out
    if collar == "Shirt Collar":
        band = np.array([nl, nl + [0.02, -0.08], nr + [-0.02, -0.08]] + list(curve[:-1]))
        out.append(Layer(band, "plain", 0.85))
        for s in (-1, 1):
            n0 = nl if s < 0 else nr
            out.append(Layer(np.array([n0 + [-s * 0.01, -0.07], n0,
                                       n0 + [s * 0.06, cf[1] + 0.07], cf]), "main", 1.04))
        ink.append(Ink(np.array([cf, [0.0, hy]]), 0.012, "dark", 0.3))
        for k in range(6):
            y = cf[1] + 0.12 + k * 0.28
            if y < hy - 0.04:
                ink.append(Ink(np.array([[0.0, y]]), 0.018, "light", 0.7))
    elif collar in ("Peter Pan", "Puritan Collar"):
        fill = "contrast" if rng.random() < 0.5 else "main"
        for s in (-1, 1):
            n0 = nl if s < 0 else nr
            if collar == "Peter Pan":
                rim = [np.array([s * abs(p[0]), p[1]])
                       for p in _arc(0, n0[1], abs(n0[0]) + 0.12, cf[1] + 0.1, 180, 90, 9)]
            else:
                rim = [n0 + [s * 0.2, 0.02], n0 + [s * 0.2, cf[1] + 0.18],
                       np.array([s * 0.04, cf[1] + 0.2])]
            pts = np.array([n0] + list(rim[1:]) + [cf], dtype=float)
            out.append(Layer(pts, fill, 1.0))
            ink.append(Ink(pts, 0.01, "dark", 0.25))
    elif collar == "Rib Collar":
        outer = np.array([nr + [0.05, -0.01]] + [p * [1.25, 1.0] + [0, 0.06]
                                                   for p in curve[1:-1]] + [nl + [-0.05, -0.01]])
        ring = np.concatenate([outer, curve[::-1]])
        out.append(Layer(ring, "plain", 0.9))
        for t in np.linspace(0.1, 0.9, 9):
            i = int(t * (len(curve) - 1))
            ink.append(Ink(np.array([curve[i], outer[min(i, len(outer) - 1)]]), 0.008,
                           "dark", 0.2))
    elif neck in ("Turtle Neck", "Low Turtle Neck", "Ruffle Semi-High Collar"):
        h = {"Turtle Neck": 0.3, "Low Turtle Neck": 0.15, "Ruffle Semi-High Collar": 0.14}[neck]
        if neck == "Ruffle Semi-High Collar":
            xs = np.linspace(nr[0] - 0.02, nl[0] + 0.02, 9)
            top = [np.array([x, -h - (0.035 if k % 2 else 0.0)]) for k, x in enumerate(xs)]
        else:
            top = [nr + [-0.02, -h], nl + [0.02, -h]]
        tube = np.array([nl] + list(reversed(top)) + list(curve[:-1]), dtype=float)
        out.append(Layer(tube, "plain", 0.92))
        for k in range(1, 4 if neck == "Turtle Neck" else 2):
            y = -h * k / (4 if neck == "Turtle Neck" else 2)
            ink.append(Ink(np.array([[nl[0] + 0.03, y], [nr[0] - 0.03, y]]), 0.01, "dark", 0.2))
    elif neck == "Draped Collar":
        fill = np.array([nl, nr] + list(neck_pts), dtype=float)
        out.append(Layer(fill, "main", 0.9))
        for k in range(1, 4):
            a = _arc(0, nl[1], abs(nl[0]) * (1 - 0.2 * k), (cf[1] - nl[1]) * (0.3 + 0.2 * k),
                     20, 160, 12)
            ink.append(Ink(a, 0.012, "dark", 0.3))
    return out


# -- bottoms ---------------------------------------------------------------------------
def _skirt(item: dict, stats: ShapeStats, rng: np.random.Generator) -> Garment:
    maybe: dict[str, str] = {}
    sil = item.get("silhouette") or "regular"
    L = _bin_value(SKIRT_BINS, item["skirt_length_labels"], rng, maybe, "skirt_length_labels")
    ratio = stats.draw("skirt", "hem_ratio", rng, lo=1.0)
    hh = {"slim": 0.55 + 0.02 * L, "regular": 0.5 * ratio + 0.1 * L,
          "wide": 0.5 * ratio + 0.3 * L, "oversized": 0.5 * ratio + 0.25 * L}[sil]
    wl, wr = np.array([-0.5, 0.0]), np.array([0.5, 0.0])
    hl, hr = np.array([-hh, L]), np.array([hh, L])
    pts = [wl]
    if sil == "slim":
        pts.append(np.array([-0.6, min(0.5, L * 0.5)]))
    pts.append(hl)
    if sil in ("wide", "regular", "oversized"):
        pts += list(_arc(0, L, hh, 0.05 * hh, 180, 0, 11)[1:-1])
    pts.append(hr)
    if sil == "slim":
        pts.append(np.array([0.6, min(0.5, L * 0.5)]))
    pts.append(wr)
    body = np.array(pts, dtype=float)
    band = np.array([wl, wr, wr + [0.005, 0.1], wl + [-0.005, 0.1]])
    ink = [Ink(np.array([[-0.5, 0.1], [0.5, 0.1]]), 0.012, "dark", 0.3)]
    if sil == "wide" or rng.random() < 0.25:
        for x in np.linspace(-0.35, 0.35, 6):
            ink.append(Ink(np.array([[x, 0.12], [x * hh / 0.5, L * 0.97]]), 0.01, "dark", 0.18))
    kp = {"waistband_left": wl, "waistband_right": wr, "hemline_left": hl, "hemline_right": hr}
    kp = {k: (float(v[0]), float(v[1])) for k, v in kp.items()}
    return Garment([Layer(body, "main"), Layer(band, "plain", 0.9)], ink, kp,
                   {k: 0 for k in kp}, "skirt", maybe)


def _trousers(item: dict, stats: ShapeStats, rng: np.random.Generator) -> Garment:
    maybe: dict[str, str] = {}
    sil = item.get("silhouette") or "regular"
    L = _bin_value(PANT_BINS, item["pant_length_labels"], rng, maybe, "pant_length_labels")
    cd = stats.draw("trousers", "crotch_depth", rng)
    L = max(L, cd + 0.2)
    ow = {"slim": 0.16, "regular": 0.2, "wide": 0.3, "oversized": 0.34}[sil]
    if L < 2.2:   # shorts: the opening follows the thigh
        ow = max(ow, 0.26 + 0.04 * (sil in ("wide", "oversized")))
    cx = max(ow + 0.06, 0.3 + 0.05 * (L - cd))
    hip = 0.58 + (0.04 if sil in ("wide", "oversized") else 0.0)
    wl, wr = np.array([-0.5, 0.0]), np.array([0.5, 0.0])
    crotch = np.array([0.0, cd])
    blo, bli = np.array([-cx - ow, L]), np.array([-cx + ow, L])
    bri, bro = np.array([cx - ow, L]), np.array([cx + ow, L])
    hy = min(0.45, cd * 0.6)
    body = np.array([wl, [-hip, hy], blo, bli, crotch, bri, bro, [hip, hy], wr], dtype=float)
    band = np.array([wl, wr, wr + [0.01, 0.1], wl + [-0.01, 0.1]])
    jeans = item["subcategory"] == "jeans" or item.get("material") == "denim"
    st = "stitch" if jeans else "dark"
    ink = [Ink(np.array([[0.0, 0.1], [0.0, cd * 0.8]]), 0.012, st, 0.5 if jeans else 0.3),
           Ink(np.array([[-0.5, 0.1], [0.5, 0.1]]), 0.012, st, 0.4 if jeans else 0.25)]
    for s in (-1, 1):
        ink.append(Ink(_arc(s * 0.5, 0.1, 0.22, 0.22, 90 if s < 0 else 90, 0 if s < 0 else 180,
                            8), 0.012, st, 0.4 if jeans else 0.2))
        if L > 2.2 and sil != "oversized":   # pressed crease down each leg
            ink.append(Ink(np.array([[s * 0.3, 0.3], [s * cx, L - 0.02]]), 0.01, "dark", 0.12))
    for x in (-0.35, 0.0, 0.35):
        ink.append(Ink(np.array([[x, 0.0], [x, 0.1]]), 0.02, "dark", 0.25))
    kp = {"waistband_left": wl, "waistband_right": wr, "crotch": crotch,
          "bottom_left_in": bli, "bottom_left_out": blo, "bottom_right_in": bri,
          "bottom_right_out": bro}
    kp = {k: (float(v[0]), float(v[1])) for k, v in kp.items()}
    return Garment([Layer(body, "main"), Layer(band, "plain", 0.9)], ink, kp,
                   {k: 0 for k in kp}, "trousers", maybe)


# -- shoes, bags, jewellery, accessories -----------------------------------------------
def _shoe(kind: str, rng: np.random.Generator, dx: float = 0.0, dy: float = 0.0):
    """One shoe seen from the side, toe to the left, unit length 1 (x 0..1)."""
    L = []
    ink = []
    if kind == "sneakers":
        upper = [[0.02, 0.78], [0.05, 0.6], [0.3, 0.5], [0.55, 0.32], [0.8, 0.3], [0.95, 0.42],
                 [0.98, 0.78]]
        sole = [[0.0, 0.77], [1.0, 0.77], [1.0, 0.9], [0.04, 0.9], [0.0, 0.84]]
        L.append(Layer(np.array(upper), "main"))
        L.append(Layer(np.array(sole), "sole"))
        for k in range(4):
            x = 0.35 + 0.08 * k
            ink.append(Ink(np.array([[x, 0.48 - 0.06 * k], [x + 0.1, 0.52 - 0.06 * k]]),
                           0.015, "light", 0.8))
    elif kind == "heels":
        upper = [[0.0, 0.74], [0.08, 0.62], [0.35, 0.6], [0.55, 0.52], [0.8, 0.35],
                 [0.95, 0.32], [0.97, 0.5], [0.85, 0.6]]
        L.append(Layer(np.array(upper), "main"))
        L.append(Layer(np.array([[0.85, 0.55], [0.94, 0.5], [0.9, 0.92], [0.87, 0.92]]), "main",
                       0.8))
        ink.append(Ink(np.array([[0.0, 0.74], [0.4, 0.7], [0.85, 0.58]]), 0.015, "dark", 0.4))
    elif kind == "boots":
        upper = [[0.0, 0.8], [0.05, 0.62], [0.35, 0.56], [0.55, 0.45], [0.58, 0.0],
                 [0.95, 0.0], [0.97, 0.8]]
        L.append(Layer(np.array(upper), "main"))
        L.append(Layer(np.array([[0.0, 0.79], [0.98, 0.79], [0.98, 0.9], [0.72, 0.9],
                                 [0.7, 0.84], [0.02, 0.84]]), "sole"))
        ink.append(Ink(np.array([[0.62, 0.04], [0.62, 0.5]]), 0.012, "dark", 0.3))
    else:  # flats
        upper = [[0.0, 0.82], [0.05, 0.68], [0.4, 0.62], [0.7, 0.6], [0.97, 0.6],
                 [0.99, 0.82]]
        L.append(Layer(np.array(upper), "main"))
        L.append(Layer(np.array([[0.0, 0.81], [0.99, 0.81], [0.99, 0.85], [0.02, 0.85]]),
                       "sole", 0.7))
        ink.append(Ink(_arc(0.22, 0.66, 0.05, 0.03, 0, 360, 10), 0.012, "dark", 0.4))
    for lay in L:
        lay.pts = lay.pts + [dx, dy]
    for i in ink:
        i.pts = i.pts + [dx, dy]
    return L, ink


def _accessory(item: dict, rng: np.random.Generator) -> Garment:
    sub = item["subcategory"]
    layers: list[Layer] = []
    ink: list[Ink] = []
    if sub in ("sneakers", "heels", "boots", "flats"):
        back, bi = _shoe(sub, rng, 0.18, -0.12)
        for lay in back:
            lay.shade *= 0.85
        front, fi = _shoe(sub, rng)
        layers, ink = back + front, bi + fi
    elif sub == "tote":
        layers.append(Layer(_ring(0.5, 0.3, 0.22, 0.28, 0.04, 180, 360), "plain", 0.9))
        layers.append(Layer(np.array([[0.1, 0.3], [0.9, 0.3], [0.98, 1.0], [0.02, 1.0]]), "main"))
        ink.append(Ink(np.array([[0.1, 0.38], [0.9, 0.38]]), 0.012, "dark", 0.3))
    elif sub == "crossbody":
        layers.append(Layer(_stroke(_arc(0.5, 0.55, 0.42, 0.5, 200, 340, 30), 0.025), "plain"))
        layers.append(Layer(np.array([[0.2, 0.5], [0.8, 0.5], [0.82, 0.95], [0.18, 0.95]]), "main"))
        layers.append(Layer(np.array([[0.2, 0.5], [0.8, 0.5], [0.8, 0.7], [0.5, 0.78],
                                      [0.2, 0.7]]), "main", 0.9))
        ink.append(Ink(np.array([[0.5, 0.74]]), 0.025, "metal", 0.9))
    elif sub == "clutch":
        layers.append(Layer(np.array([[0.0, 0.3], [1.0, 0.3], [1.0, 0.75], [0.0, 0.75]]), "main"))
        layers.append(Layer(np.array([[0.0, 0.3], [1.0, 0.3], [0.5, 0.55]]), "main", 0.9))
        ink.append(Ink(np.array([[0.5, 0.53]]), 0.02, "metal", 0.9))
    elif sub == "necklace":
        chain = _arc(0.5, 0.05, 0.42, 0.6, 10, 170, 40)
        layers.append(Layer(_stroke(chain, 0.012), "metal"))
        layers.append(Layer(_arc(0.5, 0.7, 0.06, 0.075, 0, 360, 20), "main"))
    elif sub == "earrings":
        for cx in (0.3, 0.7):
            layers.append(Layer(_stroke(_arc(cx, 0.18, 0.05, 0.07, 180, 400, 16), 0.012),
                                "metal"))
            layers.append(Layer(np.array([[cx - 0.004, 0.24], [cx + 0.004, 0.24],
                                          [cx + 0.004, 0.4], [cx - 0.004, 0.4]]), "metal"))
            layers.append(Layer(_arc(cx, 0.5, 0.07, 0.11, 0, 360, 20), "main"))
    elif sub == "bracelet":
        layers.append(Layer(_ring(0.5, 0.5, 0.38, 0.3, 0.035), "metal"))
        for a in np.linspace(0, 330, 12):
            x = 0.5 + 0.38 * math.cos(math.radians(a))
            y = 0.5 + 0.3 * math.sin(math.radians(a))
            layers.append(Layer(_arc(x, y, 0.03, 0.03, 0, 360, 10), "main"))
    elif sub == "belt":
        layers.append(Layer(np.array([[0.0, 0.45], [0.82, 0.45], [0.82, 0.55], [0.0, 0.55]]),
                            "main"))
        layers.append(Layer(np.concatenate([
            np.array([[0.8, 0.42], [0.92, 0.42], [0.92, 0.58], [0.8, 0.58]]),
        ]), "metal"))
        layers.append(Layer(np.array([[0.92, 0.45], [1.0, 0.45], [1.0, 0.55], [0.92, 0.55]]),
                            "main", 0.9))
        for x in np.linspace(0.2, 0.7, 5):
            ink.append(Ink(np.array([[x, 0.5]]), 0.01, "dark", 0.6))
    elif sub == "hat":
        layers.append(Layer(_arc(0.5, 0.65, 0.5, 0.12, 0, 360, 40), "main", 0.95))
        layers.append(Layer(np.array([[0.27, 0.65], [0.3, 0.25], [0.5, 0.2], [0.7, 0.25],
                                      [0.73, 0.65]]), "main"))
        layers.append(Layer(np.array([[0.28, 0.52], [0.72, 0.52], [0.725, 0.62], [0.275, 0.62]]),
                            "contrast", 0.9))
    elif sub == "scarf":
        band = np.array([[0.3, 0.0], [0.7, 0.0], [0.62, 0.95], [0.38, 0.95]])
        layers.append(Layer(band, "main"))
        for x in np.linspace(0.4, 0.6, 7):
            layers.append(Layer(np.array([[x - 0.006, 0.94], [x + 0.006, 0.94],
                                          [x + 0.006, 1.04], [x - 0.006, 1.04]]), "main"))
        for k in range(3):
            ink.append(Ink(np.array([[0.34 + 0.1 * k, 0.05], [0.4 + 0.07 * k, 0.9]]), 0.012,
                           "dark", 0.2))
    else:  # sunglasses
        for cx in (0.28, 0.72):
            layers.append(Layer(_arc(cx, 0.5, 0.2, 0.15, 0, 360, 30), "main"))
            layers.append(Layer(_arc(cx, 0.5, 0.17, 0.12, 0, 360, 30), "lens"))
        layers.append(Layer(_stroke(_arc(0.5, 0.47, 0.07, 0.04, 200, 340, 10), 0.025), "main"))
        for s in (0.06, 0.94):
            layers.append(Layer(_stroke(np.array([[s, 0.45], [s + (0.02 if s > 0.5 else -0.02),
                                                               0.4]]), 0.02), "main"))
    return Garment(layers, ink, {}, {}, None, {})


def build_garment(item: dict, stats: ShapeStats, rng: np.random.Generator) -> Garment:
    """Lay out one item (a catalogue row as a dict) in its unit frame.

    Apparel gets FashionAI keypoints of its category; other slots get none.
    """
    sub = item["subcategory"]
    cat = KEYPOINT_CATEGORY.get(sub)
    if cat in ("blouse", "outwear", "dress"):
        return _body_garment(item, stats, rng)
    if cat == "skirt":
        return _skirt(item, stats, rng)
    if cat == "trousers":
        return _trousers(item, stats, rng)
    return _accessory(item, rng)
