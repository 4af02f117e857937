"""Tiny synthetic packshots with a known mask, built from shapes (no real data)."""
from __future__ import annotations

import numpy as np


def packshot(h=160, w=120, bg=(238, 236, 232), fg=(40, 60, 150), shape="rect",
             noise=1.5, seed=0, vignette=0.0):
    """A garment-like shape on a plain (optionally vignetted, noisy) background.

    Returns (rgb uint8, mask bool). Shapes: rect, trousers (two legs joined at
    the waist, open gap between them), tshirt (body + sleeves), ring (thin loop),
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    if shape == "rect":
        m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
    elif shape == "trousers":
        top, crotch, bottom = int(0.15 * h), int(0.4 * h), int(0.9 * h)
        l, r = int(0.25 * w), int(0.75 * w)
        m[top:crotch, l:r] = True
        m[crotch:bottom, l:int(0.47 * w)] = True
        m[crotch:bottom, int(0.53 * w):r] = True
    elif shape == "tshirt":
        m[int(0.2 * h):int(0.85 * h), int(0.3 * w):int(0.7 * w)] = True
        m[int(0.2 * h):int(0.4 * h), int(0.12 * w):int(0.88 * w)] = True
    elif shape == "ring":
        cy, cx, rad = h / 2, w / 2, 0.3 * min(h, w)
        d = np.hypot(yy - cy, xx - cx)
        m = np.abs(d - rad) < 1.6
    else:
        raise ValueError(shape)
    base = np.array(bg, float)[None, None] * (1 - vignette * (((yy - h / 2) / h) ** 2
                                                          + ((xx - w / 2) / w) ** 2))[..., None]
    img = np.where(m[..., None], np.array(fg, float)[None, None], base)
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), m


def iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a & b).sum() / max((a | b).sum(), 1))


def turned_photo(path, orientation=6, h=40, w=80):
    """A JPEG stored as ``h x w`` landscape pixels, a dark band over its left 20
    columns, with EXIF ``orientation`` (6: turn 90 degrees clockwise to view, as a
    phone stores a portrait photo). Upright, it is ``w x h`` with the band on top."""
    from PIL import Image

    stored = np.full((h, w, 3), 255, np.uint8)
    stored[:, :20] = 0
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def oversized_png(path, w=15_000, h=15_000):
    """A PNG of a few bytes whose header declares ``w x h`` RGB pixels (15000 x 15000
    = 225 M: past PIL's hard limit of 2 x ``Image.MAX_IMAGE_PIXELS``, so that
    ``Image.open`` itself raises ``DecompressionBombError``, a decompression bomb
    or a scan far too large to decode)."""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))
    return path


def cutout(h=160, w=120, fg=(255, 255, 255), shape="tshirt", seed=0, outside=(0, 0, 0)):
    """A transparent cut-out of :func:`packshot`'s ``shape``: the garment opaque, all
    else fully transparent (its colour ``outside``, black as many tools save it).

    Returns (rgba uint8 (H, W, 4), mask bool). Composited on white, a white garment
    is white on white: only the alpha knows its outline."""
    img, m = packshot(h=h, w=w, fg=fg, shape=shape, seed=seed, noise=1.0)
    rgb = np.where(m[..., None], img, np.array(outside, np.uint8))
    return np.dstack([rgb, np.where(m, 255, 0)]).astype(np.uint8), m


def on_white(rgba):
    """``rgba`` composited on white, as the decoders give it (uint8 RGB)."""
    a = rgba[..., 3:].astype(float) / 255
    return np.round(rgba[..., :3] * a + 255 * (1 - a)).astype(np.uint8)
