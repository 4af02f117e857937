"""Shape features: ratios of distances between FashionAI keypoints.

Every feature is a ratio of two Euclidean distances between keypoints (or
midpoints of keypoint pairs), so it does not change when the keypoints are
translated, scaled or rotated together. A feature whose points are missing
(``vis == -1``) or whose denominator is zero is NaN, never guessed.

Notation: ``|P Q|`` is the distance between points P and Q; ``mid(P, Q)`` their
midpoint; ``_l``/``_r`` the left/right point of a pair. Derived points:

* ``shoulder_mid = mid(shoulder_l, shoulder_r)``
* ``hem_mid = mid(top_hem_l, top_hem_r)`` (blouse, outwear) or
  ``mid(hemline_l, hemline_r)`` (dress, skirt)
* ``torso_length = |shoulder_mid hem_mid|``
* ``waistband_mid = mid(waistband_l, waistband_r)``,
  ``waistband_width = |waistband_l waistband_r|``

Features (``shape_`` + name), each the mean over the two sides where a side is
named and both exist (one side alone is used when only one exists):

``sleeve_length``  ``|shoulder cuff_mid| / torso_length`` with
    ``cuff_mid = mid(cuff_in, cuff_out)`` of the same side (tops, dresses).
``cuff_width``  ``|cuff_in cuff_out| / |armpit_l armpit_r|`` (sleeve opening).
``neck_width``  ``|neckline_l neckline_r| / |shoulder_l shoulder_r|``.
``neck_depth``  ``|mid(neckline_l, neckline_r) center_front| / torso_length``
    (blouse, dress: outwear has no ``center_front``).
``body_taper``  ``|hem_l hem_r| / |armpit_l armpit_r|`` (hem width relative to
    chest width; tops and dresses).
``hem_flare``  ``|hem_l hem_r| / |waistline_l waistline_r|`` (dress, outwear);
    for skirts ``|hemline_l hemline_r| / waistband_width``.
``waist_position``  ``|shoulder_mid mid(waistline_l, waistline_r)| / torso_length``.
``length_ratio``  garment length / width: tops and dresses
    ``|mid(neckline_l, neckline_r) hem_mid| / |armpit_l armpit_r|``; skirts
    ``|waistband_mid hem_mid| / waistband_width``; trousers
    ``|waistband_mid bottom_mid| / waistband_width`` with ``bottom_mid`` the
    midpoint of the two legs' opening midpoints.
``skirt_length``  ``|waistband_mid hem_mid| / waistband_width`` (skirts; same as
    ``length_ratio`` there, named for the merchandiser's vocabulary).
``leg_taper``  ``mean(|bottom_out bottom_in|) / (waistband_width / 2)``: the leg
    opening relative to each leg's share of the waist (FashionAI has no thigh
    points; the half waist stands in for the thigh width).
``rise``  ``|waistband_mid crotch| / |waistband_mid bottom_mid|`` (trousers).

Examples
--------
>>> import numpy as np
>>> from features.fashionai.schema import KEYPOINT_INDEX as K
>>> xy = np.full((24, 2), -1.0); vis = np.full(24, -1)
>>> for n, p in {"waistband_left": (0, 0), "waistband_right": (40, 0),
...              "hemline_left": (-10, 60), "hemline_right": (50, 60)}.items():
...     xy[K[n]] = p; vis[K[n]] = 1
>>> f = shape_features(xy, vis, "skirt")
>>> f["shape_hem_flare"], f["shape_skirt_length"], bool(np.isnan(f["shape_leg_taper"]))
(1.5, 1.5, True)
"""
from __future__ import annotations

import numpy as np

from features.exceptions import InputError
from features.fashionai.schema import KEYPOINT_CATEGORIES, KEYPOINT_INDEX

#: Every feature name, in column order (all present in every result, NaN if n/a).
SHAPE_FEATURES: tuple[str, ...] = tuple("shape_" + n for n in (
    "sleeve_length", "cuff_width", "neck_width", "neck_depth", "body_taper", "hem_flare",
    "waist_position", "length_ratio", "skirt_length", "leg_taper", "rise"))

_NAN = float("nan")


class _Pts:
    def __init__(self, xy, vis):
        self.xy, self.vis = xy, vis

    def __call__(self, name):
        i = KEYPOINT_INDEX[name]
        return self.xy[i] if self.vis[i] >= 0 else None

    def mid(self, a, b):
        pa, pb = (self(a) if isinstance(a, str) else a), (self(b) if isinstance(b, str) else b)
        if pa is None or pb is None:
            return None
        return (pa + pb) / 2.0


def _dist(p, q) -> float:
    if p is None or q is None:
        return _NAN
    return float(np.hypot(*(np.asarray(p, float) - np.asarray(q, float))))


def _ratio(num: float, den: float) -> float:
    if not (np.isfinite(num) and np.isfinite(den)) or den <= 0:
        return _NAN
    return float(num / den)


def _mean_sides(values) -> float:
    vals = [v for v in values if np.isfinite(v)]
    return float(np.mean(vals)) if vals else _NAN


def shape_features(xy: np.ndarray, vis: np.ndarray, category: str) -> dict[str, float]:
    """Shape features of one garment from its FashionAI keypoints (see module doc).

    Parameters
    ----------
    xy : array (24, 2)
        Keypoint coordinates in FashionAI order.
    vis : array (24,)
        Visibility codes (1 visible, 0 occluded, -1 absent); absent points are
        not used, occluded ones are (their position is annotated/estimated).
    category : str
        FashionAI keypoint category: blouse, outwear, dress, skirt, trousers.

    Returns
    -------
    dict
        Every name of :data:`SHAPE_FEATURES`; NaN where not applicable or where
        the points it needs are missing.

    Examples
    --------
    >>> import numpy as np
    >>> r = shape_features(np.zeros((24, 2)), np.full(24, -1), "blouse")
    >>> sorted(r) == sorted(SHAPE_FEATURES), all(np.isnan(v) for v in r.values())
    (True, True)
    """
    if category not in KEYPOINT_CATEGORIES:
        raise InputError(f"unknown keypoint category {category!r}", field="category",
                         value=category, allowed=KEYPOINT_CATEGORIES)
    xy = np.asarray(xy, dtype=float)
    vis = np.asarray(vis)
    if xy.shape != (24, 2) or vis.shape != (24,):
        raise InputError(f"expected xy (24, 2) and vis (24,), got {xy.shape} and "
                         f"{vis.shape}", field="keypoints")
    P = _Pts(xy, vis)
    out = {k: _NAN for k in SHAPE_FEATURES}

    if category in ("blouse", "outwear", "dress"):
        hem = "hemline" if category == "dress" else "top_hem"
        shoulder_mid = P.mid("shoulder_left", "shoulder_right")
        hem_mid = P.mid(f"{hem}_left", f"{hem}_right")
        torso = _dist(shoulder_mid, hem_mid)
        chest = _dist(P("armpit_left"), P("armpit_right"))
        neck_mid = P.mid("neckline_left", "neckline_right")
        out["shape_sleeve_length"] = _mean_sides(
            _ratio(_dist(P(f"shoulder_{s}"), P.mid(f"cuff_{s}_in", f"cuff_{s}_out")), torso)
            for s in ("left", "right"))
        out["shape_cuff_width"] = _mean_sides(
            _ratio(_dist(P(f"cuff_{s}_in"), P(f"cuff_{s}_out")), chest)
            for s in ("left", "right"))
        out["shape_neck_width"] = _ratio(_dist(P("neckline_left"), P("neckline_right")),
                                         _dist(P("shoulder_left"), P("shoulder_right")))
        if category != "outwear":
            out["shape_neck_depth"] = _ratio(_dist(neck_mid, P("center_front")), torso)
        hem_w = _dist(P(f"{hem}_left"), P(f"{hem}_right"))
        out["shape_body_taper"] = _ratio(hem_w, chest)
        if category in ("dress", "outwear"):
            out["shape_hem_flare"] = _ratio(
                hem_w, _dist(P("waistline_left"), P("waistline_right")))
            out["shape_waist_position"] = _ratio(
                _dist(shoulder_mid, P.mid("waistline_left", "waistline_right")), torso)
        out["shape_length_ratio"] = _ratio(_dist(neck_mid, hem_mid), chest)
    elif category == "skirt":
        wb_mid = P.mid("waistband_left", "waistband_right")
        wb_w = _dist(P("waistband_left"), P("waistband_right"))
        hem_mid = P.mid("hemline_left", "hemline_right")
        out["shape_hem_flare"] = _ratio(_dist(P("hemline_left"), P("hemline_right")), wb_w)
        out["shape_length_ratio"] = _ratio(_dist(wb_mid, hem_mid), wb_w)
        out["shape_skirt_length"] = out["shape_length_ratio"]
    else:  # trousers
        wb_mid = P.mid("waistband_left", "waistband_right")
        wb_w = _dist(P("waistband_left"), P("waistband_right"))
        leg_mids = [P.mid(f"bottom_{s}_in", f"bottom_{s}_out") for s in ("left", "right")]
        leg_mids = [m for m in leg_mids if m is not None]
        bottom_mid = np.mean(leg_mids, axis=0) if leg_mids else None
        length = _dist(wb_mid, bottom_mid)
        out["shape_length_ratio"] = _ratio(length, wb_w)
        openings = [_dist(P(f"bottom_{s}_out"), P(f"bottom_{s}_in")) for s in ("left", "right")]
        out["shape_leg_taper"] = _ratio(_mean_sides(openings), wb_w / 2)
        out["shape_rise"] = _ratio(_dist(wb_mid, P("crotch")), length)
    return out
