"""Images and labels for the attribute network: loading, caching, batching, augmenting.

Images are decoded and letterboxed **once** into a uint8 array ``(N, H, W, 3)``
(optionally cached as ``.npy`` on disk and memory-mapped), so training epochs never
re-decode JPEGs.  Augmentation then runs on whole batches as tensor ops.

Augmentation is chosen so that it cannot change a label:

* horizontal flip (garments are near-symmetric; no head is about left/right),
* a small affine (scale 0.9-1.1, shift up to 6%, rotation up to 5 degrees) that
  replicates the border (the light packshot background) into the revealed area,
* brightness/contrast jitter applied **equally to the three channels**: hue and
  saturation are left alone, because the colour head must not be taught that a
  red dress can look orange.

One augmentation does change a label, on request (``recolour``, off by default):
:func:`recolour` turns a garment another hue and saturation, and training drops the
recoloured rows' colour labels (:func:`colour_heads`), so the shape heads see each
garment in new colours while the colour head is never taught a wrong one.

Examples
--------
>>> import numpy as np
>>> img = np.zeros((30, 20, 3), np.uint8)
>>> letterbox(img, (16, 16)).shape
(16, 16, 3)
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from features.exceptions import InputError
from features.files import ContentHashes, atomic_files, content_hashes
from features.imaging import (TRANSPOSING, decoding_stamp, exif_orientation, open_image,
                              pil_to_rgb_array)

#: Mean and scale used to normalise uint8 pixels (roughly centred for packshots).
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


#: How an image is framed before it is letterboxed to the network's size: the whole
#: frame, or the garment's box (:func:`garment_box`).
CROPS = ("frame", "garment")
#: Margin around the garment's mask box, as a share of the box's longer side.
GARMENT_MARGIN = 0.06
#: The garment box never magnifies the garment more than this against the whole frame
#: (a ring stays a small thing in a large field, not a blob filling it).
MAX_GARMENT_ZOOM = 3.0
#: Below this mask quality (:func:`features.mask.garment_mask`) the whole frame is kept.
MIN_CROP_QUALITY = 0.5
#: Side the mask for the box is computed at (a box needs no fine outline).
CROP_WORK_SIDE = 160
#: Part of a garment-crop cache file's name: bump it when the box's rule changes, so
#: that no image array cut by an older rule is read back.
CROP_VERSION = 1


def check_crop(crop) -> str:
    """``crop`` if it is one of :data:`CROPS`, else an :class:`InputError` naming it."""
    if crop not in CROPS:
        raise InputError(f"crop must be one of {list(CROPS)}; got {crop!r}", field="crop",
                         value=crop, allowed=list(CROPS))
    return crop


def garment_box(rgb: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The box ``(top, left, bottom, right)`` of ``rgb`` to letterbox to ``size`` so that
    the garment fills the network's input, or None to keep the whole frame.

    The garment's mask (:func:`features.mask.garment_mask` at a
    :data:`CROP_WORK_SIDE` working size) gives its bounding box, widened by
    :data:`GARMENT_MARGIN` of its longer side on every side, then grown to ``size``'s
    aspect (real background instead of padding) and to at least ``1 /``
    :data:`MAX_GARMENT_ZOOM` of the frame, and shifted inside the image.  None when
    the mask scores below :data:`MIN_CROP_QUALITY` or is empty: a doubtful mask could
    cut the garment, and the whole frame never does.  The mask rather than
    :func:`features.attributes.regions.foreground_box` (the detail crop's box: pixels
    far from the median border colour), because the mask holds up on white garments
    against a light background and on graded backgrounds, and scores itself.

    >>> img = np.full((200, 140, 3), 235, np.uint8); img[60:140, 50:90] = 40
    >>> garment_box(img, (160, 112))
    (55, 38, 145, 102)
    """
    from features.mask import garment_mask

    h, w = rgb.shape[:2]
    if min(h, w) < 8:
        return None
    res = garment_mask(np.ascontiguousarray(rgb[..., :3]), work_side=CROP_WORK_SIDE)
    if res.quality < MIN_CROP_QUALITY:
        return None
    rows, cols = np.flatnonzero(res.mask.any(1)), np.flatnonzero(res.mask.any(0))
    if not len(rows):
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1.0, cols[0], cols[-1] + 1.0
    margin = GARMENT_MARGIN * max(bottom - top, right - left)
    bh, bw = bottom - top + 2 * margin, right - left + 2 * margin
    th, tw = size
    bh = max(bh, bw * th / tw)                                  # the network's aspect
    bh = max(bh, th / (MAX_GARMENT_ZOOM * min(th / h, tw / w)))  # zoom cap
    bw = bh * tw / th
    bh, bw = min(bh, h), min(bw, w)

    def place(lo: float, hi: float, length: float, limit: int) -> tuple[int, int]:
        start = min(max((lo + hi - length) / 2, 0.0), limit - length)
        return int(math.floor(start)), min(int(math.ceil(start + length)), limit)

    t, b = place(top, bottom, bh, h)
    lft, rgt = place(left, right, bw, w)
    return t, lft, b, rgt


def frame(rgb: np.ndarray, size: tuple[int, int], crop: str = "frame") -> np.ndarray:
    """Letterbox ``rgb`` to ``size``, first cut to :func:`garment_box` when ``crop`` is
    ``"garment"`` (see :data:`CROPS`)."""
    if check_crop(crop) == "garment":
        box = garment_box(rgb, size)
        if box is not None:
            t, lft, b, rgt = box
            rgb = rgb[t:b, lft:rgt]
    return letterbox(rgb, size)


def load_image(path: str | os.PathLike, size: tuple[int, int] | None = None,
               crop: str = "frame") -> np.ndarray:
    """Decode an image file to uint8 RGB ``(H, W, 3)``; framed (:func:`frame`) and
    letterboxed to ``size`` if given.

    JPEG decoding uses PIL's draft mode to decode directly at a reduced scale when the
    target is much smaller (several times faster, same quality after resampling); a
    garment crop asks for a larger scale, since only part of the frame is kept.
    """
    with open_image(path) as im:
        if size is not None and im.format == "JPEG":
            f = 2 if check_crop(crop) == "frame" else 3
            want = (size[1] * f, size[0] * f)
            # draft() sizes the stored pixels: a photo turned 90 degrees upright
            # asks for the target's height across them
            im.draft("RGB", want[::-1] if exif_orientation(im) in TRANSPOSING else want)
        # Decoded as load_rgb does (alpha on white, 16-bit greyscale scaled), so the
        # network trains on what the features stage and the API show it.
        rgb = pil_to_rgb_array(im)
    return frame(rgb, size, crop) if size is not None else rgb


def letterbox(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``rgb`` (H, W, 3) to fit ``size`` = (height, width) keeping its aspect,
    padding with the image's own border colour (the packshot background)."""
    th, tw = size
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise InputError("empty image", field="image")
    scale = min(th / h, tw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    im = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    small = np.asarray(im.resize((nw, nh), Image.BILINEAR, reducing_gap=2.0))
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    fill = np.median(border, axis=0).astype(np.uint8)
    out = np.empty((th, tw, 3), np.uint8)
    out[:] = fill
    top, left = (th - nh) // 2, (tw - nw) // 2
    out[top:top + nh, left:left + nw] = small
    return out


def file_stamp(path: str | os.PathLike, index: ContentHashes | None = None) -> str:
    """``|<content hash>`` of a file (``|missing``), for cache keys that must change
    when a file is replaced at the same path and stay when only its times change (a
    copy without ``-p``, a re-provisioned data folder); the hash is ``index``'s
    (:class:`features.files.ContentHashes`, rehashing only a file whose stat
    changed; None: the process's in-memory one). With
    :func:`features.imaging.decoding_stamp` after it for a photo its EXIF tag turns
    or a file of a kind whose decoding changed, whose caches from before hold it
    otherwise decoded (nothing added for the rest: those caches stay current).
    Caches keyed on ``|size:mtime_ns``, before, are made once more."""
    index = index if index is not None else content_hashes(None)
    try:
        digest = index.digest(path)
    except (TypeError, ValueError):   # not a path (an array, a NUL in the name)
        return "|missing"
    return "|missing" if digest is None else f"|{digest}" + decoding_stamp(path)


def file_stamps(paths: Sequence[str | os.PathLike], cache: str | os.PathLike) -> str:
    """:func:`file_stamp` of every path, joined, with the content-hash index kept in
    the ``cache`` folder (:func:`features.files.content_hashes`), saved when it grew:
    the cache keys of decoded images, descriptor tables and detail crops."""
    index = content_hashes(cache)
    stamps = "".join(file_stamp(p, index) for p in paths)
    index.save()
    return stamps


def load_images(paths: Sequence[str | os.PathLike], size: tuple[int, int], *,
                cache: str | os.PathLike | None = None, progress: bool = False,
                crop: str = "frame", workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Decode, frame (``crop``, see :func:`frame`) and letterbox many images into
    ``(N, H, W, 3)`` uint8, plus an ``ok`` mask.

    Unreadable images become a mid-grey frame with ``ok=False`` instead of stopping
    the run.  ``workers`` > 1 decodes in that many processes (the garment crop's mask
    costs about 13 ms an image, decoding alone 1-2 ms).  With ``cache`` (a directory),
    the array is stored as ``<cache>/images_<H>x<W>_<hash of the paths>.npy`` (with
    ``_garment_v<CROP_VERSION>`` before the hash for the garment crop) and re-used
    (memory-mapped) the next time the same paths are asked at the same size and crop.
    """
    paths = [str(p) for p in paths]
    check_crop(crop)
    tag = "" if crop == "frame" else f"_{crop}_v{CROP_VERSION}"
    key = hashlib.sha256(("\n".join(paths) + f"|{size}").encode()).hexdigest()[:16]
    if cache is not None:
        # and of the files' contents: an image replaced at the same path must not be
        # served from the decoded array of the old one (a touched one still is)
        key = hashlib.sha256((key + file_stamps(paths, cache)).encode()).hexdigest()[:16]
        cdir = Path(cache)
        arr_path = cdir / f"images_{size[0]}x{size[1]}{tag}_{key}.npy"
        ok_path = cdir / f"images_{size[0]}x{size[1]}{tag}_{key}.ok.npy"
        if arr_path.is_file() and ok_path.is_file():
            return np.load(arr_path, mmap_mode="r"), np.load(ok_path)
    arr = np.full((len(paths), size[0], size[1], 3), 128, np.uint8)
    ok = np.zeros(len(paths), bool)
    job = functools.partial(_load_or_none, size=tuple(size), crop=crop)
    with contextlib.ExitStack() as stack:
        if int(workers) > 1 and len(paths) > 64:
            pool = stack.enter_context(ProcessPoolExecutor(int(workers)))
            decoded = pool.map(job, paths, chunksize=32)
        else:
            decoded = map(job, paths)
        for i, im in enumerate(decoded):
            if im is not None:
                arr[i], ok[i] = im, True
            if progress and (i + 1) % 500 == 0:
                print(f"  decoded {i + 1}/{len(paths)} images", file=sys.stderr, flush=True)
    if cache is not None:
        # the mask last and both whole: the pair is taken as decoded when both exist
        with atomic_files(arr_path, ok_path) as (arr_tmp, ok_tmp):
            np.save(arr_tmp, arr)
            np.save(ok_tmp, ok)
    return arr, ok


def _load_or_none(path: str, size: tuple[int, int], crop: str) -> np.ndarray | None:
    try:
        return load_image(path, size, crop)
    except (OSError, ValueError, InputError):
        return None


def as_image_array(images, size: tuple[int, int], crop: str = "frame") -> np.ndarray:
    """Accept a uint8 array ``(N, H, W, 3)`` or a list of paths / arrays; return uint8
    ``(N, *size, 3)``, framing (``crop``, :func:`frame`) and letterboxing whatever is
    not already at ``size``.  An array already at ``size`` is taken as framed: the
    output of :func:`load_images` with the same ``crop``."""
    check_crop(crop)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.dtype != np.uint8 or images.shape[-1] != 3:
            raise InputError(f"image array must be uint8 (N, H, W, 3); got {images.dtype} "
                             f"{images.shape}", field="images")
        if images.shape[1:3] == tuple(size):
            return images
        return np.stack([frame(im, size, crop) for im in images]) if len(images) else \
            np.zeros((0, size[0], size[1], 3), np.uint8)
    if isinstance(images, (str, os.PathLike)) or not hasattr(images, "__len__"):
        raise InputError("images must be an array (N, H, W, 3) or a list of paths/arrays",
                         field="images")
    out = np.zeros((len(images), size[0], size[1], 3), np.uint8)
    for i, im in enumerate(images):
        if isinstance(im, (str, os.PathLike)):
            out[i] = load_image(im, size, crop)
        else:
            a = np.asarray(im)
            if a.ndim != 3 or a.shape[-1] < 3 or a.dtype != np.uint8:
                raise InputError(f"image {i} must be uint8 (H, W, 3); got {a.dtype} "
                                 f"{a.shape}", field="images")
            out[i] = frame(a, size, crop)
    return out


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> normalised float ``(B, 3, H, W)`` (channels-last memory)."""
    # The (B, H, W, 3) array seen as (B, 3, H, W) is channels-last already; two
    # passes over the pixels instead of four (a 320x224 batch: 75 -> 30 ms).
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    x = torch.mul(x, 1.0 / (255.0 * PIXEL_STD)).sub_(PIXEL_MEAN / PIXEL_STD)
    return x.contiguous(memory_format=torch.channels_last)   # a no-op: it is already


def augment(x: torch.Tensor, gen: torch.Generator, *, flip: bool = True,
            max_scale: float = 0.1, max_shift: float = 0.06, max_rot_deg: float = 5.0,
            brightness: float = 0.1, contrast: float = 0.1,
            erase: float = 0.0) -> torch.Tensor:
    """Label-preserving augmentation of a normalised batch ``(B, 3, H, W)`` (see module
    doc for why there is no hue or saturation jitter); ``erase``: the share of images
    that also get a random rectangle set to the mean pixel (:func:`random_erase`)."""
    b = x.shape[0]

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(b, *shape, generator=gen)

    s = u(1 - max_scale, 1 + max_scale)
    rot = u(-max_rot_deg, max_rot_deg) * math.pi / 180
    sign = torch.ones(b)
    if flip:
        sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    tx, ty = u(-max_shift, max_shift) * 2, u(-max_shift, max_shift) * 2
    cos, sin = torch.cos(rot) / s, torch.sin(rot) / s
    theta = torch.stack([torch.stack([cos * sign, -sin, tx], 1),
                         torch.stack([sin * sign, cos, ty], 1)], 1)     # (B, 2, 3)
    # Random draws come from the (CPU) generator so a seed means the same augmentation
    # on any device; only the finished parameters move to the batch's device.
    theta = theta.to(x.device)
    h, w = x.shape[-2:]
    # F.affine_grid's sampling grid as one batched matmul with a cached base grid:
    # the same grid, in a third of the time (at 320x224 affine_grid alone took 50 ms
    # of a 64-image batch).
    grid = torch.matmul(_base_grid(h, w, x.device), theta.transpose(1, 2)).view(b, h, w, 2)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Same factor on every channel: brightness and contrast change, hue does not.
    mean = x.mean((1, 2, 3), keepdim=True)
    c = u(1 - contrast, 1 + contrast, 1, 1, 1).to(x.device)
    br = (u(-brightness, brightness, 1, 1, 1) / PIXEL_STD).to(x.device)
    # (x - mean) * c + mean + br in one pass, written channels-last for the network
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    out = torch.addcmul(mean * (1 - c) + br, x, c, out=out)
    return random_erase(out, gen, erase) if erase > 0 else out


def colour_heads(names: Sequence[str]) -> list[int]:
    """Positions of the heads whose labels name a colour (their name holds "colo":
    ``colour``, ``color``, MANGO's ``des_agrup_color_eng``): the labels
    :func:`recolour` makes wrong.

    >>> colour_heads(["subcategory", "colour", "material", "des_agrup_color_eng"])
    [1, 3]
    """
    return [j for j, n in enumerate(names) if "colo" in n.lower()]


def recolour(x: torch.Tensor, gen: torch.Generator, share: float,
             saturation: tuple[float, float] = (0.6, 1.4)
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``share`` of the images of a normalised batch ``(B, 3, H, W)`` recoloured:
    the RGB vector of every pixel turned by a uniform random angle about the grey
    axis (``R``, Rodrigues' formula about ``u = (1, 1, 1) / sqrt 3``) and its distance
    from that axis scaled by ``s`` uniform in ``saturation``: ``M = (1 - s) u u^T +
    s R``.  Greys, whites and blacks stay as they are, and so does each pixel's
    channel mean (but for clipping to the pixel range).  Returns the batch
    (channels-last) and a bool ``(B,)`` of the rows recoloured: their colour labels
    no longer hold.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.zeros(8, 3, 4, 2)
    >>> x[:, 0] = 1.0                                     # reddish on mid grey
    >>> y, rows = recolour(x, g, 0.5)
    >>> bool(torch.equal(y[~rows], x[~rows])), bool((y[rows] != x[rows]).any())
    (True, True)
    >>> torch.allclose(y.mean(1), x.mean(1), atol=1e-6)
    True
    """
    b = x.shape[0]
    pick = torch.rand(b, generator=gen) < share
    theta = (torch.rand(b, generator=gen) * 2 - 1) * math.pi
    s = saturation[0] + (saturation[1] - saturation[0]) * torch.rand(b, generator=gen)
    u = torch.full((3,), 3 ** -0.5)
    cross = torch.tensor([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    eye, axis = torch.eye(3), torch.outer(u, u)
    c, sn = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    rot = c * eye + sn * cross + (1 - c) * axis                            # (B, 3, 3)
    m = (1 - s)[:, None, None] * axis + s[:, None, None] * rot
    # Pixels are normalised alike on every channel, so M (which fixes greys) applies
    # to them as it would to raw RGB.
    m = m.to(x.device, x.dtype)
    # (B, H, W, 3) @ (B, 1, 3, 3): a channels-last batch's own layout, no copy
    out = torch.matmul(x.permute(0, 2, 3, 1), m.transpose(1, 2)[:, None])
    out = out.clamp_(-PIXEL_MEAN / PIXEL_STD, (1 - PIXEL_MEAN) / PIXEL_STD)
    out = out.permute(0, 3, 1, 2)
    out[~pick] = x[~pick]             # the rows not picked, as they were
    return out, pick


def random_erase(x: torch.Tensor, gen: torch.Generator, share: float, *,
                 area: tuple[float, float] = (0.02, 0.25),
                 aspect: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """``share`` of the images of a normalised batch ``(B, 3, H, W)`` with one random
    rectangle set to 0, the mean pixel (random erasing, Zhong et al. 2020): its area a
    uniform share in ``area`` of the image's, its height / width log-uniform in
    ``aspect``, clipped to the image. Changes ``x`` in place and returns it.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = random_erase(torch.ones(4, 3, 20, 10), g, 1.0)
    >>> [int((x[i, 0] == 0).sum()) > 0 for i in range(4)], bool((x[:, 0] == x[:, 2]).all())
    ([True, True, True, True], True)
    >>> bool((random_erase(torch.ones(4, 3, 20, 10), g, 0.0) == 1).all())
    True
    """
    b, _, h, w = x.shape
    pick = torch.rand(b, generator=gen) < share
    s = area[0] + (area[1] - area[0]) * torch.rand(b, generator=gen)
    lo, hi = math.log(aspect[0]), math.log(aspect[1])
    r = torch.exp(lo + (hi - lo) * torch.rand(b, generator=gen))
    eh = (torch.sqrt(s * h * w * r)).clamp(1, h)
    ew = (torch.sqrt(s * h * w / r)).clamp(1, w)
    y0 = torch.rand(b, generator=gen) * (h - eh)
    x0 = torch.rand(b, generator=gen) * (w - ew)
    ys = torch.arange(h, dtype=torch.float32)[None, :, None]
    xs = torch.arange(w, dtype=torch.float32)[None, None, :]
    inside = ((ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
              & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None])
              & pick[:, None, None])                                   # (B, H, W)
    return x.masked_fill_(inside[:, None].to(x.device), 0.0)


def cutmix_box(h: int, w: int, gen: torch.Generator
               ) -> tuple[float, tuple[int, int, int, int]]:
    """A CutMix rectangle (Yun et al. 2019) for an ``h`` x ``w`` image: its kept share
    ``lam`` drawn uniform in (0, 1), its area ``1 - lam`` of the image with the image's
    aspect, centred anywhere and clipped to the image. Returns the share of the image
    *outside* the clipped box (the weight of the first image's labels) and the box
    ``(y0, y1, x0, x1)``.

    >>> g = torch.Generator().manual_seed(0)
    >>> lam, (y0, y1, x0, x1) = cutmix_box(40, 28, g)
    >>> 0 <= y0 < y1 <= 40 and 0 <= x0 < x1 <= 28
    True
    >>> abs(lam - (1 - (y1 - y0) * (x1 - x0) / (40 * 28))) < 1e-9
    True
    """
    lam = float(torch.rand((), generator=gen))
    cut = math.sqrt(1.0 - lam)
    ch, cw = max(1, round(h * cut)), max(1, round(w * cut))
    cy = int(torch.randint(h, (), generator=gen))
    cx = int(torch.randint(w, (), generator=gen))
    y0, y1 = max(0, cy - ch // 2), min(h, cy + (ch + 1) // 2)
    x0, x1 = max(0, cx - cw // 2), min(w, cx + (cw + 1) // 2)
    return 1.0 - (y1 - y0) * (x1 - x0) / (h * w), (y0, y1, x0, x1)


def cutmix(x: torch.Tensor, gen: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix of a batch ``(B, 3, H, W)``: one rectangle (:func:`cutmix_box`) of every
    image replaced by the same rectangle of another image of the batch (a seeded
    permutation). Returns the mixed batch (a new tensor), the permutation and ``lam``,
    the share of each image that is still its own: the loss weighs the image's own
    labels by ``lam`` and its partner's by ``1 - lam``.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.arange(4.0)[:, None, None, None].expand(4, 3, 8, 6)
    >>> y, perm, lam = cutmix(x, g)
    >>> moved = perm != torch.arange(4)          # rows paired with another image
    >>> own = float((y[moved] == x[moved]).float().mean())
    >>> bool(((y == x) | (y == x[perm])).all()), int(moved.sum()) > 0, abs(own - lam) < 1e-6
    (True, True, True)
    """
    b, _, h, w = x.shape
    perm = torch.randperm(b, generator=gen)
    lam, (y0, y1, x0, x1) = cutmix_box(h, w, gen)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm.to(x.device), :, y0:y1, x0:x1]
    return out, perm, lam


_BASE_GRIDS: dict = {}


def _base_grid(h: int, w: int, device) -> torch.Tensor:
    """``(1, h*w, 3)`` pixel centres in [-1, 1] with a column of ones: what
    ``F.affine_grid(theta, align_corners=False)`` multiplies by ``theta``.

    >>> theta = torch.tensor([[[0.9, -0.1, 0.2], [0.1, 1.1, -0.05]]])
    >>> ref = F.affine_grid(theta, [1, 3, 5, 4], align_corners=False)
    >>> got = torch.matmul(_base_grid(5, 4, "cpu"), theta.transpose(1, 2)).view(1, 5, 4, 2)
    >>> bool(torch.allclose(got, ref, atol=1e-6))
    True
    """
    key = (h, w, str(device))
    if key not in _BASE_GRIDS:
        xs = (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1
        ys = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
        g = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w)], -1)
        _BASE_GRIDS[key] = g.view(1, h * w, 3).to(device)
    return _BASE_GRIDS[key]


#: Side of :func:`random_window`'s windows, a fraction of the image's (0.64 of its
#: pixels).
WINDOW_SIDE = 0.8


def random_window(x: torch.Tensor, gen: torch.Generator,
                  side: float = WINDOW_SIDE) -> torch.Tensor:
    """A window of ``side`` of each side of a batch ``(B, C, H, W)`` at a random place
    (one for the batch; the augmentation has shifted each image already), at the
    batch's own scale: what ``window_phase`` trains on.

    >>> x = torch.arange(100.0).view(1, 1, 10, 10)
    >>> w = random_window(x, torch.Generator().manual_seed(0))
    >>> tuple(w.shape), float(w[0, 0, 0, 1] - w[0, 0, 0, 0])   # one pixel: the scale kept
    ((1, 1, 8, 8), 1.0)
    """
    h, w = x.shape[-2:]
    wh, ww = max(1, round(h * side)), max(1, round(w * side))
    y0 = int(torch.randint(h - wh + 1, (1,), generator=gen))
    x0 = int(torch.randint(w - ww + 1, (1,), generator=gen))
    return x[:, :, y0:y0 + wh, x0:x0 + ww].contiguous(memory_format=torch.channels_last)


def zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """A normalised batch ``(B, 3, H, W)`` zoomed about its centre by ``factor`` (above 1
    magnifies and cuts the border; below 1 shrinks and replicates the border), at the
    same size: the view :class:`~features.attributes.estimator.AttributeModel`'s
    ``tta_zoom`` adds at prediction.

    >>> x = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4)
    >>> bool(torch.equal(zoom(x, 1.0), x)), tuple(zoom(x, 2.0).shape)
    (True, (1, 3, 4, 4))
    >>> zoom(x, 2.0)[0, 0, 1].tolist()    # a row through the centre block [[5, 6], [9, 10]]
    [5.75, 6.25, 6.75, 7.25]
    """
    if factor == 1.0:
        return x
    theta = torch.tensor([[1.0 / factor, 0.0, 0.0], [0.0, 1.0 / factor, 0.0]],
                         dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                         align_corners=False).contiguous(memory_format=torch.channels_last)


def class_balanced_weights(targets: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Per-row sampling weights that flatten the class distributions of all heads.

    ``targets`` is ``(N, H)`` int with -1 for a missing label.  Each row gets the mean
    over its labelled heads of ``count(class) ** -power``, normalised per head so that
    heads count equally.  ``power=0.5`` is square-root sampling (Mahajan et al. 2018):
    rare classes are seen more often without repeating a handful of images endlessly
    as full balancing (``power=1``) would.  Rows with no label get weight 0.
    """
    n, h = targets.shape
    w = np.zeros(n)
    used = np.zeros(n)
    for j in range(h):
        t = targets[:, j]
        m = t >= 0
        if not m.any():
            continue
        counts = np.bincount(t[m])
        wj = np.zeros(n)
        wj[m] = counts[t[m]].astype(float) ** -power
        wj[m] /= wj[m].mean()
        w += wj
        used += m
    return np.where(used > 0, w / np.maximum(used, 1), 0.0)


def group_keys(item_ids: Sequence[str], group_sep: str | None = "-") -> pd.Series:
    """The part of each id before ``group_sep`` (MANGO's model code: colour variants
    of one garment share it); the ids themselves when ``group_sep`` is None.

    >>> group_keys(["a-1", "a-2", "b"]).tolist()
    ['a', 'a', 'b']
    """
    ids = pd.Series([str(i) for i in item_ids])
    return ids.str.split(group_sep).str[0] if group_sep else ids


def grouped_split(item_ids: Sequence[str], *, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                  group_sep: str | None = "-") -> pd.Series:
    """Seeded train/val/test split of items **grouped** by the part of the id before
    ``group_sep`` (MANGO's model code), so colour variants of one garment never
    straddle the split.  Returns a Series of "train"/"val"/"test" aligned with the ids.

    >>> s = grouped_split(["a-1", "a-2", "b-1", "c-1"], fractions=(0.5, 0.25, 0.25))
    >>> s[0] == s[1], len(s)
    (True, 4)
    """
    groups = group_keys(item_ids, group_sep)
    uniq = np.array(sorted(groups.unique()))
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    n = len(uniq)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    which = {g: ("train" if k < n_train else "val" if k < n_train + n_val else "test")
             for k, g in enumerate(uniq)}
    return pd.Series([which[g] for g in groups], index=range(len(groups)), name="split")
