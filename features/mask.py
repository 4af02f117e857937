"""Garment mask for packshots on plain backgrounds, with a quality score.

Three paths, the better one kept by quality:

``classical``
    The background is modelled from the image borders in CIELAB as a smooth
    quadratic surface (packshot backgrounds carry vignettes and gradients, so a
    single colour would be wrong at the corners), fitted robustly so that a
    garment touching the border does not drag it. A pixel is garment when its
    colour distance to the background model, or the local gradient magnitude,
    is clearly above what the border shows as noise. Then: a small closing,
    selective hole filling (a hole that looks like background, such as the gap
    between trouser legs sealed by the closing or a bag handle's opening, stays
    background), removal of soft low-chroma shadows below the object, and
    removal of specks by area only -- never by opening, which would erase thin
    jewellery chains and straps.
``edges``
    For low-quality results (typically white and cream garments on a light
    background, whose colour distance is within a few units of the noise): weak
    but coherent edges and small colour differences are closed with a larger
    structuring element, everything not reachable from the border through
    background is garment, and background-like holes are reopened.

``alpha``
    A cut-out (a transparent PNG or WebP packshot) carries its garment mask: its
    alpha channel, given as ``alpha``, is the mask wherever it holds real
    transparency (:data:`ALPHA_THRESHOLD`). The colours cannot say it: a white
    garment composited on white is white on white. Used unless it is degenerate
    (scores below the retry quality while a classical path scores better).

The quality score (0..1) multiplies soft scores of sanity checks: plausible
area fraction, little contact with the image border, little fragmentation,
boundary aligned with strong image gradients, and solidity (area / convex hull
area). :func:`sanity_failures` lists the hard checks a mask fails.

Examples
--------
>>> import numpy as np
>>> img = np.full((120, 90, 3), 235, np.uint8)
>>> img[30:90, 25:65] = (40, 60, 150)
>>> res = garment_mask(img)
>>> res.method, abs(int(res.mask.sum()) - 60 * 40) <= 8, res.quality > 0.8
('classical', True, True)
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage as ndi

from features.exceptions import InputError
from features.imaging import resize_max_side, resize_to, rgb_to_lab

#: Longest side the mask is computed at; the result is scaled back to the input.
WORK_SIDE = 256
#: Below this quality the better (edge-driven) path is also tried.
RETRY_QUALITY = 0.75
#: A cut-out's pixel is garment when its alpha is at least this (0..255): half
#: covered or more, as a rasterised outline takes a pixel whose centre is inside.
#: Lower would take the faint drop shadow and the feathered halo that cut-out tools
#: leave around a garment (pale pixels, composited on white, in its colours); 255
#: would drop the anti-aliased rim and every sheer fabric.
ALPHA_THRESHOLD = 128

#: Hard sanity limits (see :func:`sanity_failures`).
MIN_AREA, MAX_AREA = 0.01, 0.92
MAX_BORDER_TOUCH = 0.15
MIN_EDGE_ALIGNMENT = 0.5
MIN_SOLIDITY = 0.25
MAX_FRAGMENT_AREA = 0.25


@dataclasses.dataclass
class MaskResult:
    """A garment mask and how much to trust it.

    Attributes
    ----------
    mask : np.ndarray of bool, (H, W)
        True on the garment, same size as the input image.
    quality : float
        0..1, product of soft sanity scores (1: every check comfortably passed).
    method : str
        ``"classical"``, ``"edges"`` or ``"alpha"`` (the path that produced the mask;
        ``"alpha"``: a cut-out's transparency).
    checks : dict
        The raw sanity measures (area, border_touch, fragments, edge_alignment,
        solidity), for reports and contact sheets.
    tried : dict
        Quality of every path tried, by name (``classical``, ``edges_r5``, ...),
        so a report can compare the classical path with the final choice.
    tried_checks : dict
        The checks of every path tried, by the same names.
    """

    mask: np.ndarray
    quality: float
    method: str
    checks: dict = dataclasses.field(default_factory=dict)
    tried: dict = dataclasses.field(default_factory=dict)
    tried_checks: dict = dataclasses.field(default_factory=dict)


# -- image evidence ------------------------------------------------------------
@dataclasses.dataclass
class _Evidence:
    lab: np.ndarray        # (h, w, 3) smoothed CIELAB
    bg: np.ndarray         # (h, w, 3) background model
    de: np.ndarray         # (h, w) colour distance to the background
    dl: np.ndarray         # (h, w) lightness difference (pixel - background)
    dab: np.ndarray        # (h, w) chroma-plane distance to the background
    grad: np.ndarray       # (h, w) gradient magnitude in Lab units per pixel
    noise_de: float        # robust spread of ``de`` on the border
    noise_grad: float      # high percentile of ``grad`` on the border
    noise_de5: float       # high percentile of the 5x5-averaged ``de`` on the border
    border_outliers: float  # fraction of border pixels unlike the background


def _border_band(h: int, w: int) -> np.ndarray:
    b = max(2, int(round(0.02 * min(h, w))))
    band = np.zeros((h, w), bool)
    band[:b] = band[-b:] = True
    band[:, :b] = band[:, -b:] = True
    return band


def _median3(img: np.ndarray) -> np.ndarray:
    """3x3 median (edges replicated): the same as ``ndi.median_filter(img, 3)``,
    computed with one partition over the nine shifted copies (several times
    faster than scipy's generic rank filter at this size)."""
    p = np.pad(img, 1, mode="edge")
    h, w = img.shape
    stack = np.stack([p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
    return np.partition(stack, 4, axis=0)[4]


def _design(h: int, w: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    y = ys / max(h - 1, 1) * 2 - 1
    x = xs / max(w - 1, 1) * 2 - 1
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def _evidence(rgb: np.ndarray) -> _Evidence:
    lab_raw = rgb_to_lab(rgb)
    # JPEG block noise dominates single-pixel differences on smooth backgrounds;
    # the gradient is taken on a smoothed copy, the colour distance on a median
    # filtered one (edge preserving, so the mask does not grow by the blur).
    lab = ndi.uniform_filter(lab_raw, size=(3, 3, 1), mode="nearest")
    h, w = lab.shape[:2]
    band = _border_band(h, w)
    ys, xs = np.nonzero(band)
    A = _design(h, w, ys.astype(np.float32), xs.astype(np.float32))
    vals = lab[ys, xs]
    # Seed the fit with the border pixels near the band's median colour: a
    # least-squares fit over the whole band bends towards a garment that touches
    # the border, and then every residual, the garment's included, looks alike.
    d0 = np.linalg.norm(vals - np.median(vals, axis=0), axis=1)
    keep = d0 < max(6.0, 4 * 1.4826 * np.median(d0))
    if keep.sum() < 0.3 * len(vals):
        keep = np.ones(len(vals), bool)
    coef = None
    for _ in range(3):
        # Robust refit: border pixels far from the current fit are the garment or
        # a label touching the border, not background.
        # Normal equations: a 6x6 solve, far cheaper than lstsq's SVD here.
        Ak = A[keep]
        coef = np.linalg.solve(Ak.T @ Ak + 1e-6 * np.eye(A.shape[1]), Ak.T @ vals[keep])
        r = np.linalg.norm(vals - A @ coef, axis=1)
        s = 1.4826 * np.median(r[keep]) + 1e-3
        new_keep = r < max(3.0, 4 * s)
        if new_keep.sum() < 0.3 * len(vals) or np.array_equal(new_keep, keep):
            keep = new_keep if new_keep.sum() >= 0.3 * len(vals) else keep
            break
        keep = new_keep
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = (_design(h, w, yy, xx) @ coef).astype(np.float32)
    diff = lab_raw - bg
    de = _median3(np.sqrt((diff * diff).sum(-1)))
    dab = np.linalg.norm(diff[..., 1:], axis=-1)
    gx = ndi.sobel(lab, axis=1, mode="nearest") / 8
    gy = ndi.sobel(lab, axis=0, mode="nearest") / 8
    grad = np.sqrt((gx ** 2 + gy ** 2).sum(-1))
    r_border = de[band][keep]
    noise_de = float(1.4826 * np.median(r_border)) if len(r_border) else 1.0
    g_border = grad[band][keep]
    noise_grad = float(np.percentile(g_border, 99)) if len(g_border) else 1.0
    de5 = ndi.uniform_filter(de, size=5, mode="nearest")[band][keep]
    noise_de5 = float(np.percentile(de5, 99)) if len(de5) else 1.0
    return _Evidence(lab=lab, bg=bg, de=de, dl=diff[..., 0], dab=dab, grad=grad,
                     noise_de=noise_de, noise_grad=noise_grad, noise_de5=noise_de5,
                     border_outliers=float(1 - keep.mean()))


# -- morphology helpers --------------------------------------------------------
def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r + r


def _close(mask: np.ndarray, r: int) -> np.ndarray:
    # Pad so that the closing does not glue the garment to the image border.
    p = r + 1
    m = np.pad(mask, p)
    m = ndi.binary_closing(m, structure=_disk(r))
    return m[p:-p, p:-p]


def _outside(mask: np.ndarray) -> np.ndarray:
    """Background reachable from the image border without crossing ``mask``."""
    lab, _ = ndi.label(~mask)
    border_labels = np.unique(np.concatenate(
        [lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    border_labels = border_labels[border_labels > 0]
    return np.isin(lab, border_labels)


def _fill_holes_selectively(mask: np.ndarray, ev: _Evidence, raw_outside: np.ndarray,
                            bg_de: float, bg_grad: float, strict: bool) -> np.ndarray:
    """Fill the holes of ``mask`` except those that look like background.

    A hole is kept open (background) when most of its pixels have background
    colour and no texture; the bar is lower when the hole was connected to the
    outside before the closing sealed it (the gap between trouser legs).
    """
    outside = _outside(mask)
    holes = ~mask & ~outside
    if not holes.any():
        return mask
    lab, n = ndi.label(holes)
    idx = np.arange(1, n + 1)
    size = ndi.sum(np.ones_like(lab), lab, idx)
    bg_like = (ev.de < bg_de) & (ev.grad < bg_grad)
    frac_bg = ndi.mean(bg_like, lab, idx)
    frac_out = ndi.mean(raw_outside, lab, idx)
    min_hole = 0.0015 * mask.size
    bar = np.where(frac_out > 0.5, 0.5 if not strict else 0.6,
                   0.8 if not strict else 0.95)
    keep_open = (size >= min_hole) & (frac_bg >= bar)
    fill_labels = idx[~keep_open]
    out = mask.copy()
    out[np.isin(lab, fill_labels)] = True
    return out


def _remove_shadows(mask: np.ndarray, ev: _Evidence, t_grad: float,
                    anywhere: bool = True) -> np.ndarray:
    """Drop soft, low-chroma, darker regions where the object meets the background.

    A cast shadow (below the object, or a drop shadow beside it) has the
    background's chroma, is darker, is smooth inside and fades into the
    background without a sharp edge; a grey garment has the same colour traits
    but a sharp outline, so the outline test separates them. With
    ``anywhere=False`` only regions in the lower half that reach the object's
    bottom are considered (the edge-driven path: there a white garment's own
    soft shading looks like a shadow).
    """
    if not mask.any():
        return mask
    ys = np.nonzero(mask)[0]
    y_mid, y_bottom = np.median(ys), ys.max()
    cand = mask & (ev.dl < -1.0) & (ev.dab < 4.0 + 0.1 * np.abs(ev.dl)) & (ev.dl > -35) \
        & (ev.grad < t_grad)
    if not cand.any():
        return mask
    lab, n = ndi.label(cand)
    ring_out = ndi.binary_dilation(mask, iterations=2) & ~mask
    out = mask.copy()
    area = mask.sum()
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        sl2 = tuple(slice(max(s_.start - 3, 0), s_.stop + 3) for s_ in sl)
        comp2 = lab[sl2] == i
        size = comp2.sum()
        if size < 0.0005 * mask.size or size > 0.5 * area:
            continue
        if not anywhere:
            cy = sl2[0].start + np.nonzero(comp2)[0].mean()
            if cy < y_mid or sl[0].stop < y_bottom - 0.02 * mask.shape[0]:
                continue
        # Sharpness of its outline where it meets the background.
        touch = ndi.binary_dilation(comp2, iterations=2) & ring_out[sl2]
        if touch.sum() < 3:
            continue
        edge = np.percentile(ev.grad[sl2][touch], 75)
        if edge < 0.6 * t_grad:
            out[sl2] &= ~comp2
    return out


def _peel_chroma_bleed(mask: np.ndarray, ev: _Evidence) -> np.ndarray:
    """Remove the rim of background-lightness pixels that JPEG chroma bleed adds.

    JPEG stores colour at half resolution, so a garment's colour leaks 1-3 px
    into the background while lightness stays sharp. Where the garment differs
    from the background mainly in lightness, a boundary pixel with the
    background's lightness is background, whatever its chroma says.
    """
    inner = ndi.binary_erosion(mask, iterations=3)
    if not inner.any():
        return mask
    band = mask & ~inner
    w = ndi.uniform_filter(inner.astype(np.float32), size=11, mode="constant")
    local_dl = ndi.uniform_filter(np.where(inner, ev.dl, 0).astype(np.float32), size=11,
                                  mode="constant") / np.maximum(w, 1e-6)
    # Anti-aliased rim pixels blend garment and background: they belong to the
    # side whose lightness they are nearer (the ground truth of a rasterised
    # outline takes a pixel when its centre is inside).
    bleed = band & (w > 0.05) & (np.abs(local_dl) > 12.0) \
        & (np.abs(ev.dl) < np.maximum(2.5, 0.5 * np.abs(local_dl)))
    return mask & ~bleed


def _keep_significant(mask: np.ndarray) -> np.ndarray:
    """Remove specks by area only; keep thin but long structures (chains, straps)."""
    lab, n = ndi.label(mask, structure=np.ones((3, 3)))
    if n <= 1:
        return mask
    idx = np.arange(1, n + 1)
    area = ndi.sum(np.ones_like(lab), lab, idx)
    objs = ndi.find_objects(lab)
    extent = np.array([np.hypot(s[0].stop - s[0].start, s[1].stop - s[1].start)
                       for s in objs])
    diag = np.hypot(*mask.shape)
    min_px = max(4, 0.0004 * mask.size)
    big = area >= 0.02 * area.max()
    long_thin = (extent >= 0.12 * diag) & (area >= min_px)
    keep = idx[(big | long_thin) & (area >= min_px)]
    return np.isin(lab, keep)


# -- quality -------------------------------------------------------------------
def _convex_hull_area(mask: np.ndarray) -> float:
    from scipy.spatial import ConvexHull, QhullError

    edge = mask & ~ndi.binary_erosion(mask)
    ys, xs = np.nonzero(edge)
    if len(xs) < 3:
        return float(mask.sum())
    pts = np.stack([xs, ys], 1).astype(float)
    try:
        hull = ConvexHull(pts)
    except QhullError:
        return float(mask.sum())
    # Hull of pixel centres, grown by half a pixel all round (a filled
    # rectangle then has solidity ~1): area + perimeter / 2 + 1.
    return float(hull.volume + 0.5 * hull.area + 1.0)


def mask_checks(mask: np.ndarray, grad: np.ndarray | None = None,
                edge_threshold: float | None = None) -> dict:
    """Raw sanity measures of a mask (all in 0..1 except ``n_components``).

    ``area`` fraction of the image; ``border_touch`` fraction of the image's
    border pixels covered; ``fragments`` fraction of the mask outside its largest
    component; ``edge_alignment`` fraction of boundary pixels on a gradient above
    ``edge_threshold`` (NaN without ``grad``); ``solidity`` area / convex hull area.
    """
    h, w = mask.shape
    area = float(mask.mean())
    out = {"area": area, "border_touch": 0.0, "fragments": 0.0, "n_components": 0,
           "edge_alignment": float("nan"), "solidity": 0.0}
    if not mask.any():
        return out
    border = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    out["border_touch"] = float(border.mean())
    lab, n = ndi.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(lab.ravel())[1:]
    out["n_components"] = int(n)
    # Pairs (earrings, shoes) are two similar components, not fragmentation.
    out["fragments"] = float(sizes[sizes < 0.3 * sizes.max()].sum() / sizes.sum())
    if grad is not None and edge_threshold is not None:
        boundary = mask & ~ndi.binary_erosion(mask, border_value=1)
        if boundary.any():
            # A boundary pixel is aligned when a strong gradient lies within 1 px.
            strong = ndi.maximum_filter(grad, size=3) > edge_threshold
            out["edge_alignment"] = float(strong[boundary].mean())
    out["solidity"] = float(min(1.0, mask.sum() / max(_convex_hull_area(mask), 1.0)))
    return out


def _ramp(x: float, bad: float, good: float) -> float:
    """0 at ``bad``, 1 at ``good``, linear between (either order)."""
    if np.isnan(x):
        return 1.0
    t = (x - bad) / (good - bad)
    return float(np.clip(t, 0.0, 1.0))


def quality_from_checks(c: dict) -> float:
    """Combine :func:`mask_checks` measures into one score in 0..1."""
    a = c["area"]
    s_area = min(_ramp(a, 0.004, 0.03), _ramp(a, 0.97, 0.8))
    s_border = _ramp(c["border_touch"], 0.3, 0.05)
    s_frag = _ramp(c["fragments"], 0.4, 0.1)
    s_edge = _ramp(c["edge_alignment"], 0.3, 0.8)
    # Thin jewellery is legitimately far from convex: solidity only penalises
    # the very ragged masks that white garments give when the outline leaks.
    s_solid = _ramp(c["solidity"], 0.15, 0.45)
    return float(s_area * s_border * s_frag * s_edge * s_solid)


def sanity_failures(checks: dict) -> list[str]:
    """Names of the hard sanity checks that a mask's measures fail.

    >>> sanity_failures({"area": 0.0, "border_touch": 0, "fragments": 0,
    ...                  "edge_alignment": 1, "solidity": 1})
    ['area']
    """
    fails = []
    if not MIN_AREA <= checks["area"] <= MAX_AREA:
        fails.append("area")
    if checks["border_touch"] > MAX_BORDER_TOUCH:
        fails.append("border_touch")
    if checks["fragments"] > MAX_FRAGMENT_AREA:
        fails.append("fragments")
    ea = checks["edge_alignment"]
    if not np.isnan(ea) and ea < MIN_EDGE_ALIGNMENT:
        fails.append("edge_alignment")
    if checks["solidity"] < MIN_SOLIDITY:
        fails.append("solidity")
    return fails


# -- the two paths -------------------------------------------------------------
def _edge_threshold(ev: _Evidence) -> float:
    return max(2.0, 2.0 * ev.noise_grad)


def _classical(ev: _Evidence) -> np.ndarray:
    t_col = max(7.0, 5.0 * ev.noise_de)
    t_grad = max(5.0, 3.0 * ev.noise_grad)
    # Gradient evidence counts only where the colour also departs a little from
    # the background, else the blur of the edge would grow the mask outward.
    # Nor where the pixel looks like a faint shadow (background chroma, a little
    # darker): next to a dark garment the gradient is strong there, but the
    # pixel is background in shade.
    shadowish = (ev.dl < 0) & (ev.dl > -12) & (ev.dab < 2.5 + 0.1 * np.abs(ev.dl))
    raw = (ev.de > t_col) | ((ev.grad > t_grad) & (ev.de > 0.35 * t_col) & ~shadowish)
    raw_outside = _outside(raw)
    m = _close(raw, 2)
    # The closing must not seal narrow background wedges that reach in from
    # outside (the tip of the gap between trouser legs, under a sleeve): pixels
    # that were outside before it and look like background stay background.
    wedge = raw_outside & ~raw & (ev.de < 0.5 * t_col) & (ev.grad < t_grad)
    m &= ~wedge
    m = _fill_holes_selectively(m, ev, raw_outside, bg_de=0.6 * t_col,
                                bg_grad=0.5 * t_grad, strict=False)
    m = _remove_shadows(m, ev, t_grad)
    m = _peel_chroma_bleed(m, ev)
    return _keep_significant(m)


def _edge_driven(ev: _Evidence, close_radius: int = 5) -> np.ndarray:
    # White on white: the interior differs from the background by about the
    # noise, only its outline (fold shadows, seams) and a faint average shift
    # show. So: hysteresis edges (weak edges kept when connected to strong
    # ones), a locally averaged colour distance with a low threshold, a larger
    # closing, and every enclosed hole filled except one that was open to the
    # outside before the closing and looks like background (trouser-leg gap).
    de5 = ndi.uniform_filter(ev.de, size=5, mode="nearest")
    t_de = max(1.5, 1.3 * ev.noise_de5)
    strong = ev.grad > max(3.0, 2.5 * ev.noise_grad)
    weak = ev.grad > max(1.2, 1.2 * ev.noise_grad)
    wl, n = ndi.label(weak, structure=np.ones((3, 3)))
    if n:
        has_strong = np.zeros(n + 1, bool)
        has_strong[np.unique(wl[strong & weak])] = True
        has_strong[0] = False
        edges = has_strong[wl]
    else:
        edges = weak
    raw = (de5 > t_de) | edges
    raw = _keep_significant(raw)
    raw_outside = _outside(raw)
    m = _close(raw, close_radius)
    m = _fill_holes_selectively(m, ev, raw_outside, bg_de=t_de, bg_grad=1.2 * ev.noise_grad,
                                strict=True)
    m = _remove_shadows(m, ev, max(5.0, 3.0 * ev.noise_grad), anywhere=False)
    # The gradient of the smoothed image spreads about a pixel beyond the outline.
    m = ndi.binary_erosion(m, iterations=1)
    return _keep_significant(m)


def _score(mask: np.ndarray, ev: _Evidence) -> tuple[float, dict]:
    c = mask_checks(mask, ev.grad, _edge_threshold(ev))
    return quality_from_checks(c), c


def garment_mask(rgb: np.ndarray, *, retry_quality: float = RETRY_QUALITY,
                 work_side: int = WORK_SIDE, alpha: np.ndarray | None = None
                 ) -> MaskResult:
    """Segment the garment of a packshot on a plain background, or of a cut-out.

    Parameters
    ----------
    rgb : np.ndarray, uint8 (H, W, 3)
        The image (a cut-out composited on white, as
        :func:`features.imaging.load_rgb_alpha` gives it).
    retry_quality : float
        When the classical mask scores below this, the edge-driven path is tried
        too and the better of the two (by quality) is returned. 0 disables it;
        1 always tries both.
    work_side : int
        Longest side the computation runs at (the mask is returned full size).
    alpha : np.ndarray, uint8 (H, W), optional
        The image's transparency (:func:`features.imaging.load_rgb_alpha`). When it
        has both garment (at least :data:`ALPHA_THRESHOLD`) and transparent pixels,
        the mask is the garment pixels (``method`` ``"alpha"``, read at full size),
        scored by the sanity checks; only when that score is below
        ``retry_quality`` are the classical paths tried too, the best kept.

    Returns
    -------
    MaskResult

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((60, 40, 3), 240, np.uint8); img[10:50, 10:30] = 30
    >>> r = garment_mask(img)
    >>> bool(r.mask[30, 20]), bool(r.mask[2, 2])
    (True, False)

    A white garment cut out on transparency, white on white once composited:

    >>> white = np.full((60, 40, 3), 255, np.uint8)
    >>> a = np.zeros((60, 40), np.uint8); a[10:50, 10:30] = 255
    >>> r = garment_mask(white, alpha=a)
    >>> r.method, int(r.mask.sum()) == 40 * 20, r.quality
    ('alpha', True, 1.0)
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"garment_mask expects uint8 RGB (H, W, 3), got {rgb.dtype} "
                         f"{rgb.shape}", field="rgb")
    if min(rgb.shape[:2]) < 8:
        raise InputError(f"image too small for a mask: {rgb.shape[:2]}", field="rgb")
    tried: dict = {}
    tried_checks: dict = {}
    cut = _alpha_mask(alpha, rgb.shape[:2], work_side)
    if cut is not None:
        mask, q, checks = cut
        tried["alpha"], tried_checks["alpha"] = q, checks
        if q >= retry_quality:
            return MaskResult(mask=mask, quality=round(q, 4), method="alpha",
                              checks=checks, tried=tried, tried_checks=tried_checks)
    small = resize_max_side(rgb, work_side)
    ev = _evidence(small)
    mask = _classical(ev)
    q, checks = _score(mask, ev)
    method = "classical"
    tried["classical"], tried_checks["classical"] = q, checks
    for radius in (5, 8):
        # A larger closing bridges wider gaps in a faint outline at the price of
        # rounding concave corners, so it is only tried when still needed.
        if q >= retry_quality:
            break
        mask2 = _edge_driven(ev, radius)
        q2, checks2 = _score(mask2, ev)
        tried[f"edges_r{radius}"], tried_checks[f"edges_r{radius}"] = q2, checks2
        if q2 > q:
            mask, q, checks, method = mask2, q2, checks2, "edges"
    if small.shape[:2] != rgb.shape[:2]:
        mask = resize_to(mask, rgb.shape[:2])
    if cut is not None and cut[1] >= q:
        # a poor alpha still beats a poorer guess from the colours
        mask, q, checks, method = cut[0], cut[1], cut[2], "alpha"
    return MaskResult(mask=mask, quality=round(q, 4), method=method, checks=checks,
                      tried=tried, tried_checks=tried_checks)


def _alpha_mask(alpha: np.ndarray | None, shape: tuple[int, int], work_side: int
                ) -> tuple[np.ndarray, float, dict] | None:
    """(mask, quality, checks) of a cut-out's transparency; None when ``alpha`` is
    None or holds no real transparency (all garment or all transparent: no outline)."""
    if alpha is None:
        return None
    alpha = np.asarray(alpha)
    if alpha.shape != tuple(shape) or alpha.dtype != np.uint8:
        raise InputError(f"alpha must be uint8 (H, W) = {tuple(shape)}, the image's "
                         f"size; got {alpha.dtype} {alpha.shape}", field="alpha",
                         value=list(alpha.shape))
    mask = alpha >= ALPHA_THRESHOLD
    if mask.all() or not mask.any():
        return None
    # stray opaque specks a cut-out tool leaves go, as in the classical path (by
    # area only: a thin strap or chain stays)
    mask = _keep_significant(mask)
    # Scored at the working size, like the classical paths (comparable when both
    # run). No image gradient to align with: the outline is the alpha's own. Nor is
    # touching the border a leak here: cut-outs are often trimmed to the garment.
    checks = mask_checks(resize_max_side(mask, work_side))
    q = quality_from_checks({**checks, "border_touch": 0.0})
    return mask, q, checks
