"""Render a laid-out garment as a packshot: image, exact mask and pixel keypoints.

The packshot is about 240 x 336 px like a real catalogue photo: a plain light
background (slightly off-white, mild noise and vignette, sometimes a faint soft
shadow offset from the garment) and the garment drawn with PIL in its colour and
pattern (solid, stripes, dots, check, print), with gentle lighting and details
(seams, buttons, pleats). The mask is the exact union of the drawn polygons:
shadows and background noise are outside it, and details are drawn only inside
it, so mask IoU against it is exact. Polygon vertices are rounded to whole pixels
before drawing, so every keypoint is a vertex of the drawn mask.

Examples
--------
>>> import numpy as np
>>> from recommender.demo.garments import build_garment, builtin_shape_stats
>>> item = {"subcategory": "jeans", "silhouette": "slim", "pant_length_labels":
...         "Full Length", "colour_name": "denim", "pattern": "solid", "material": "denim"}
>>> rng = np.random.default_rng(0)
>>> shot = render_item(item, build_garment(item, builtin_shape_stats(), rng), rng)
>>> drawn = shot.keypoints_xy[shot.keypoints_xy[:, 0] >= 0].astype(int)  # (-1, -1): absent
>>> shot.image.shape, shot.mask.dtype.name, bool(shot.mask[drawn[:, 1], drawn[:, 0]].all())
((336, 240, 3), 'bool', True)
"""
from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from features.fashionai.schema import CATEGORY_KEYPOINTS, KEYPOINT_INDEX, KEYPOINT_NAMES
from recommender.demo.garments import Garment, visibility
from recommender.demo.palette import COLOUR_INDEX, PALETTE_RGB

WIDTH, HEIGHT = 240, 336


@dataclasses.dataclass
class Packshot:
    image: np.ndarray          # uint8 (H, W, 3)
    mask: np.ndarray           # bool (H, W), exact
    keypoints_xy: np.ndarray   # float (24, 2) pixel coordinates (integers), -1 where absent
    keypoints_vis: np.ndarray  # int (24,) 1 visible, 0 occluded, -1 absent
    fa_category: str | None


def _place(g: Garment, rng: np.random.Generator, w: int, h: int):
    """Scale and translate the unit frame into the image; returns a mapping function."""
    pts = np.concatenate([lay.pts for lay in g.layers])
    lo, hi = pts.min(0), pts.max(0)
    size = np.maximum(hi - lo, 1e-6)
    mx, my = 0.09 * w, 0.07 * h
    s = min((w - 2 * mx) / size[0], (h - 2 * my) / size[1]) * rng.uniform(0.86, 1.0)
    c = (lo + hi) / 2
    free = np.array([w, h]) - size * s
    jitter = rng.uniform(-0.25, 0.25, 2) * np.maximum(free - 2 * np.array([mx, my]), 0)
    off = np.array([w / 2, h / 2]) + jitter

    def f(p):
        return np.rint((np.asarray(p, float) - c) * s + off)
    return f, s


_CACHE: dict = {}


def _grids(w: int, h: int):
    """Per-size constants: coordinate grids, vignette radius, a bank of noise.

    The noise bank comes from a fixed seed; each image takes a random window of
    it, which is far cheaper than drawing fresh Gaussian noise per image.
    """
    key = (w, h)
    if key not in _CACHE:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        bank = np.random.default_rng(20240601).normal(0, 1, (2 * h, 2 * w)).astype(np.float32)
        _CACHE[key] = (yy, xx, r2, bank)
    return _CACHE[key]


def _noise(rng: np.random.Generator, h: int, w: int, full: tuple[int, int]) -> np.ndarray:
    bank = _grids(*full)[3]
    oy = int(rng.integers(0, bank.shape[0] - h + 1))
    ox = int(rng.integers(0, bank.shape[1] - w + 1))
    return bank[oy:oy + h, ox:ox + w]


def _texture(rgb: np.ndarray, pattern: str, rng: np.random.Generator,
             box: tuple[int, int, int, int], full: tuple[int, int]) -> np.ndarray:
    """Float (h, w, 3) 0..1 fabric of colour ``rgb`` (0..1) with its pattern, for the
    image window ``box`` = (y0, y1, x0, x1) (patterns use image coordinates)."""
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    base = np.broadcast_to(rgb.astype(np.float32), (h, w, 3))
    if pattern == "solid":
        return base
    light = float(rgb.mean()) > 0.55
    second = np.array([0.12, 0.14, 0.2] if light else [0.96, 0.95, 0.92], np.float32)
    if rng.random() < 0.3:
        second = PALETTE_RGB[rng.integers(len(PALETTE_RGB))] / 255.0
    gy, gx = _grids(*full)[:2]
    yy, xx = gy[y0:y1, x0:x1], gx[y0:y1, x0:x1]
    if pattern == "stripes":
        period = rng.uniform(7, 16)
        coord = yy if rng.random() < 0.6 else xx
        on = (coord % period) < period * rng.uniform(0.3, 0.5)
        return np.where(on[..., None], second, base)
    if pattern == "check":
        period = rng.uniform(10, 20)
        a = (yy % period) < period * 0.4
        b = (xx % period) < period * 0.4
        t = (a.astype(np.float32) + b.astype(np.float32))[..., None] * 0.35
        return base * (1 - t) + second * t
    if pattern == "dots":
        period = rng.uniform(9, 16)
        r = period * rng.uniform(0.15, 0.25)
        dy = (yy % period) - period / 2
        dx = ((xx + (yy // period) % 2 * period / 2) % period) - period / 2
        on = dx * dx + dy * dy < r * r
        return np.where(on[..., None], second, base)
    # print: scattered leaf-like blobs in two colours
    im = Image.new("RGB", (w, h), tuple(int(v * 255) for v in rgb))
    d = ImageDraw.Draw(im)
    third = PALETTE_RGB[rng.integers(len(PALETTE_RGB))]
    cols = [tuple(int(v) for v in second * 255), tuple(int(v) for v in third)]
    n = int(rng.integers(50, 90))
    xs, ys = rng.uniform(0, full[0], n) - x0, rng.uniform(0, full[1], n) - y0
    rs, qs = rng.uniform(3, 9, n), rng.uniform(0.4, 1.0, n)
    ks = rng.integers(0, 2, n)
    for x, y, r, q, k in zip(xs, ys, rs, qs, ks):
        d.ellipse([x - r, y - r * q, x + r, y + r * q], fill=cols[k])
    return np.asarray(im, dtype=np.float32) / 255.0


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    r2 = _grids(w, h)[2]
    tint = (rng.uniform(-3, 3, 3) + rng.uniform(238, 250)).astype(np.float32)
    vign = 1 - rng.uniform(0.015, 0.05) * r2 / 2
    bg = vign[..., None] * tint + 1.2 * _noise(rng, h, w, (w, h))[..., None]
    return bg / 255.0


def render_item(item: dict, g: Garment, rng: np.random.Generator,
                size: tuple[int, int] = (WIDTH, HEIGHT)) -> Packshot:
    """Draw ``g`` (built for ``item``) into a packshot; see the module docstring."""
    w, h = size
    f, s = _place(g, rng, w, h)
    layers_px = [f(lay.pts) for lay in g.layers]
    lab = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(lab)
    for i, poly in enumerate(layers_px):
        d.polygon([tuple(p) for p in poly.tolist()], fill=i + 1)
    label_full = np.asarray(lab)
    mask_full = label_full > 0
    xs = np.flatnonzero(mask_full.any(0))
    ys = np.flatnonzero(mask_full.any(1))
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    box = (y0, y1, x0, x1)
    label = label_full[y0:y1, x0:x1]
    mask = mask_full[y0:y1, x0:x1]
    bh, bw = y1 - y0, x1 - x0

    colour = PALETTE_RGB[COLOUR_INDEX[item.get("colour_name") or "black"]] / 255.0
    colour = np.clip(colour * rng.uniform(0.96, 1.03), 0, 1)
    tex = _texture(colour, item.get("pattern") or "solid", rng, box, (w, h))
    metal = np.array([0.83, 0.69, 0.3] if rng.random() < 0.55 else [0.76, 0.77, 0.8], np.float32)
    kinds = {"main": None, "plain": colour, "lining": colour * 0.6 + 0.05,
             "contrast": np.array([0.97, 0.97, 0.95] if colour.mean() < 0.7
                                  else [0.1, 0.1, 0.12]),
             "metal": metal, "sole": np.array([0.96, 0.96, 0.95] if rng.random() < 0.7
                                              else [0.15, 0.15, 0.15]),
             "lens": np.array([0.08, 0.08, 0.1])}
    n = len(g.layers) + 1
    solid = np.zeros((n, 3), np.float32)
    use_tex = np.zeros(n, bool)
    shade = np.ones(n, np.float32)
    for i, lay in enumerate(g.layers, start=1):
        k = kinds[lay.fill]
        if k is None:
            use_tex[i] = True
        else:
            solid[i] = k
        shade[i] = lay.shade
    # lighting: a soft cylinder across the garment and a slight top light
    gx = 1 - 0.07 * ((np.arange(bw, dtype=np.float32) - (bw - 1) / 2) / max(bw / 2, 1)) ** 2
    gy = 1.02 - 0.04 * np.arange(bh, dtype=np.float32) / max(bh, 1)
    light = shade[label] * gy[:, None] * gx[None, :]
    garment = np.where(use_tex[label][..., None], tex, solid[label]) * light[..., None]

    # ink details (seams, buttons, folds) drawn inside the mask only
    if g.ink:
        ink_rgb = Image.new("RGB", (bw, bh), (0, 0, 0))
        ink_a = Image.new("L", (bw, bh), 0)
        di, da = ImageDraw.Draw(ink_rgb), ImageDraw.Draw(ink_a)
        ink_cols = {"dark": (0, 0, 0), "light": (250, 250, 250), "stitch": (214, 160, 60),
                    "metal": tuple(int(v * 255) for v in metal)}
        shift = np.array([x0, y0])
        for ink in g.ink:
            col, a = ink_cols[ink.colour], int(255 * ink.alpha)
            px = (f(ink.pts) - shift).tolist()
            wd = max(1, int(round(ink.width * s)))
            if len(px) == 1:
                (x, y), r = px[0], max(1.0, ink.width * s)
                di.ellipse([x - r, y - r, x + r, y + r], fill=col)
                da.ellipse([x - r, y - r, x + r, y + r], fill=a)
            else:
                di.line([tuple(p) for p in px], fill=col, width=wd)
                da.line([tuple(p) for p in px], fill=a, width=wd)
        a = (np.asarray(ink_a, np.float32) / 255.0)[..., None]
        garment = garment * (1 - a) + np.asarray(ink_rgb, np.float32) * (a / 255.0)
    # fine fabric grain so flat colours are not perfectly flat
    garment = garment + 0.008 * _noise(rng, bh, bw, (w, h))[..., None]

    bg = _background(rng, w, h)
    if rng.random() < 0.35:   # a faint soft shadow, outside the mask by construction
        dx, dy = rng.integers(2, 7), rng.integers(3, 9)
        sh = Image.fromarray((mask_full * 255).astype(np.uint8)).transform(
            (w, h), Image.AFFINE, (1, 0, -int(dx), 0, 1, -int(dy)))
        sh = np.asarray(sh.filter(ImageFilter.GaussianBlur(5)), np.float32) / 255.0
        bg *= (1 - rng.uniform(0.05, 0.12) * sh)[..., None]
    win = bg[y0:y1, x0:x1]
    win[mask] = garment[mask]
    image = np.clip(bg * 255 + 0.5, 0, 255).astype(np.uint8)

    xy = np.full((len(KEYPOINT_NAMES), 2), -1.0)
    vis = np.full(len(KEYPOINT_NAMES), -1, dtype=int)
    if g.fa_category:
        kp_px = {n: f(p) for n, p in g.keypoints.items()}
        v = visibility(layers_px, kp_px, g.kp_layer)
        for n in CATEGORY_KEYPOINTS[g.fa_category]:
            xy[KEYPOINT_INDEX[n]] = kp_px[n]
            vis[KEYPOINT_INDEX[n]] = v[n]
    return Packshot(image, mask_full, xy, vis, g.fa_category)
