"""Keypoint-guided inputs of the attribute network: a neck crop and a geometry vector.

The whole-garment view (letterboxed to ~160x112) leaves a neck a dozen pixels wide
on a long dress: a turtle neck and a low turtle neck differ by ~3 px, a ruffled edge
by ~1 px.  The FashionAI challenge's strong entries cropped the attribute's region
with keypoints; this module does the same, and is optional (MANGO has no keypoints,
and a model trained with regions still predicts without them, see
:class:`RegionInputs`):

* **neck crop** -- a square around the neck from the neckline, shoulder and armpit
  keypoints, cut from the full-resolution image (:func:`neck_box`), for the collar,
  neckline, neck and lapel tasks;
* **geometry** -- every keypoint relative to the category's normalising pair
  (armpits for tops, waistband for bottoms), in units of its length
  (:func:`keypoint_geometry`): translation- and scale-free, so a skirt's length in
  waistband widths or a sleeve's reach below the shoulder is read directly rather
  than estimated from pixels.

Both come from the item's keypoints: the ground truth when training on a
FashionAI-format source, the detector's (or silhouette estimator's) at prediction.

Examples
--------
>>> import numpy as np
>>> from features.fashionai.schema import KEYPOINT_INDEX as K
>>> xy, vis = np.full((24, 2), -1.0), np.full(24, -1)
>>> for name, p in {"neckline_left": (130, 100), "neckline_right": (170, 100),
...                 "armpit_left": (100, 200), "armpit_right": (200, 200)}.items():
...     xy[K[name]], vis[K[name]] = p, 1
>>> neck_box(xy, vis)
(85.0, 55.0, 215.0, 185.0)
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
from PIL import Image

from features.exceptions import InputError
from features.fashionai.schema import KEYPOINT_INDEX, KEYPOINT_NAMES
from features.files import atomic_files

#: What a region path reads: the keypoint-guided neck crop plus geometry ("neck"), or
#: the garment-centred detail crop that needs no keypoints ("detail", for catalogues
#: such as MANGO's; :func:`detail_inputs`).
REGION_KINDS = ("neck", "detail")

#: Length of :func:`keypoint_geometry`'s vector: (dx, dy, present) per keypoint.
GEOMETRY_DIM = 3 * len(KEYPOINT_NAMES)

#: The neck box in units of the armpit distance ``u``: side, and how far its top
#: edge sits above the neckline (a turtle neck rises 0.3 u, a ruffle a bit more);
#: the rest (0.85 u) goes below it, down to a deep V or a lapel's notch.
NECK_SIDE, NECK_ABOVE = 1.3, 0.45

_K = KEYPOINT_INDEX


def _pt(xy: np.ndarray, vis: np.ndarray, name: str) -> np.ndarray | None:
    i = _K[name]
    if vis[i] < 0 or not np.all(np.isfinite(xy[i])):
        return None
    return np.asarray(xy[i], float)


def _check(xy, vis) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(xy, float)
    vis = np.asarray(vis)
    if xy.shape != (len(KEYPOINT_NAMES), 2) or vis.shape != (len(KEYPOINT_NAMES),):
        raise InputError(f"keypoints must be xy (24, 2) and vis (24,); got {xy.shape} and "
                         f"{vis.shape}", field="keypoints")
    return xy, vis


def neck_box(xy, vis) -> tuple[float, float, float, float] | None:
    """The neck region ``(x0, y0, x1, y1)`` in the keypoints' pixel frame, or None.

    With ``u`` the armpit distance (else shoulder distance / 1.1, else 2.5 x the
    neckline width: the demo's and FashionAI's median proportions), the box is the
    square of side ``1.3 u`` centred on the neckline's midpoint (else
    ``center_front``, else the shoulders') whose top edge is ``0.45 u`` above the
    highest neckline point.  None for bottoms and whenever no such points exist.
    Occluded points (visibility 0) still place the box: their position is known.
    """
    xy, vis = _check(xy, vis)
    p = {n: _pt(xy, vis, n) for n in ("neckline_left", "neckline_right", "center_front",
                                      "shoulder_left", "shoulder_right", "armpit_left",
                                      "armpit_right")}
    u = None
    for a, b, k in (("armpit_left", "armpit_right", 1.0),
                    ("shoulder_left", "shoulder_right", 1 / 1.1),
                    ("neckline_left", "neckline_right", 2.5)):
        if p[a] is not None and p[b] is not None:
            d = float(np.hypot(*(p[b] - p[a]))) * k
            if d > 0:
                u = d
                break
    if u is None:
        return None
    necks = [q for q in (p["neckline_left"], p["neckline_right"]) if q is not None]
    if len(necks) == 2:
        cx = (necks[0][0] + necks[1][0]) / 2
    elif p["center_front"] is not None:
        cx = p["center_front"][0]
    elif p["shoulder_left"] is not None and p["shoulder_right"] is not None:
        cx = (p["shoulder_left"][0] + p["shoulder_right"][0]) / 2
    else:
        return None
    tops = [q[1] for q in necks] or [q[1] for q in (p["shoulder_left"], p["shoulder_right"],
                                                    p["center_front"]) if q is not None]
    y0 = min(tops) - NECK_ABOVE * u
    side = NECK_SIDE * u
    x0 = cx - side / 2
    return (float(x0), float(y0), float(x0 + side), float(y0 + side))


#: The detail crop's side as a fraction of the garment box's shorter side.
DETAIL_SIDE = 0.5
#: A pixel is garment when a channel differs from the border colour by more than this.
FOREGROUND_TOL = 24


def background_difference(rgb: np.ndarray, tol: int = FOREGROUND_TOL
                          ) -> tuple[np.ndarray, np.ndarray]:
    """``(fg, bg)``: the bool ``(H, W)`` mask of pixels that differ from the image's
    median border colour (the packshot background) by more than ``tol`` in some
    channel, and that colour (float RGB, 0..255).

    >>> img = np.full((4, 4, 3), 250, np.uint8); img[1, 2] = 40
    >>> fg, bg = background_difference(img)
    >>> int(fg.sum()), bg.tolist()
    (1, [250.0, 250.0, 250.0])
    """
    rgb = np.asarray(rgb)[..., :3]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    bg = np.median(border, axis=0)
    fg = (np.abs(rgb.astype(np.int16) - bg.astype(np.int16)) > tol).any(-1)
    return fg, bg


def foreground_box(rgb: np.ndarray, tol: int = FOREGROUND_TOL
                   ) -> tuple[float, float, float, float] | None:
    """Bounding box ``(x0, y0, x1, y1)`` of the pixels that differ from the image's
    median border colour (the packshot background) by more than ``tol`` in some
    channel; rows and columns with under 0.5% such pixels are ignored (sensor noise,
    a stray shadow).  None when nothing stands out.

    >>> img = np.full((20, 10, 3), 250, np.uint8); img[5:15, 2:8] = 40
    >>> foreground_box(img)
    (2.0, 5.0, 8.0, 15.0)
    """
    fg, _ = background_difference(rgb, tol)
    h, w = fg.shape
    rows = np.flatnonzero(fg.sum(1) > max(1, 0.005 * w))
    cols = np.flatnonzero(fg.sum(0) > max(1, 0.005 * h))
    if not len(rows) or not len(cols):
        return None
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def detail_box(rgb: np.ndarray, side: float = DETAIL_SIDE
               ) -> tuple[float, float, float, float] | None:
    """A square at the centre of the garment (:func:`foreground_box`) whose side is
    ``side`` x the box's shorter side: the fabric's texture and the front's
    fastening at the image's full resolution, which the whole-garment view
    (letterboxed to ~160x112) blurs away (knit against jersey, cardigan against
    sweater).  None when no garment is found.

    >>> img = np.full((40, 20, 3), 250, np.uint8); img[2:38, 2:18] = 30
    >>> detail_box(img)
    (6.0, 16.0, 14.0, 24.0)
    """
    box = foreground_box(rgb)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    s = max(8.0, side * min(x1 - x0, y1 - y0))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)


def crop(rgb: np.ndarray, box: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """``box`` of ``rgb`` resized (antialiased) to ``size`` = (height, width); the part
    outside the image is filled with the image's median border colour (the
    packshot background), as :func:`features.attributes.data.letterbox` pads.

    >>> img = np.zeros((10, 10, 3), np.uint8); img[2:4, 2:4] = 255
    >>> crop(img, (2, 2, 4, 4), (2, 2))[..., 0].tolist()
    [[255, 255], [255, 255]]
    """
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"empty crop box {tuple(box)}", field="box")
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    out[:] = np.median(border[:, :3], axis=0).astype(np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1, :3]
    if out.shape[:2] == tuple(size):
        return out
    return np.asarray(Image.fromarray(out).resize((size[1], size[0]), Image.BILINEAR,
                                                  reducing_gap=2.0))


def keypoint_geometry(xy, vis) -> np.ndarray:
    """``(GEOMETRY_DIM,)`` float32: per keypoint ``(dx / u, dy / u, present)`` relative to
    the midpoint of the normalising pair (armpits, else waistband) of length ``u``;
    all zeros when neither pair is there.

    >>> from features.fashionai.schema import KEYPOINT_INDEX as K
    >>> xy, vis = np.full((24, 2), -1.0), np.full(24, -1)
    >>> for n, p in {"waistband_left": (10, 20), "waistband_right": (30, 20),
    ...              "hemline_left": (5, 60)}.items():
    ...     xy[K[n]], vis[K[n]] = p, 1
    >>> keypoint_geometry(xy, vis).reshape(24, 3)[K["hemline_left"]].tolist()
    [-0.75, 2.0, 1.0]
    """
    xy, vis = _check(xy, vis)
    out = np.zeros((len(KEYPOINT_NAMES), 3), np.float32)
    for a, b in (("armpit_left", "armpit_right"), ("waistband_left", "waistband_right")):
        pa, pb = _pt(xy, vis, a), _pt(xy, vis, b)
        if pa is None or pb is None:
            continue
        u = float(np.hypot(*(pb - pa)))
        if u <= 0:
            continue
        c = (pa + pb) / 2
        present = (vis >= 0) & np.isfinite(xy).all(1)
        out[present, :2] = (xy[present] - c) / u
        out[present, 2] = 1.0
        break
    return out.reshape(-1)


@dataclasses.dataclass
class RegionInputs:
    """Keypoint-derived inputs, row-aligned with the images they belong to.

    ``crops`` uint8 ``(N, h, w, 3)``: the neck crops (background-coloured where
    ``has_crop`` is False); ``geometry`` float32 ``(N, GEOMETRY_DIM)`` (zeros where
    an item has no keypoints); ``has_crop`` bool ``(N,)``.  A model trained with
    regions and given none predicts as for items without keypoints (it sees such
    rows in training: bottoms have no neck, and a share of rows is dropped).
    """

    crops: np.ndarray
    geometry: np.ndarray
    has_crop: np.ndarray
    kind: str = "neck"

    def __post_init__(self):
        if self.kind not in REGION_KINDS:
            raise InputError(f"unknown region kind {self.kind!r}", field="kind",
                             value=self.kind, allowed=REGION_KINDS)
        n = len(self.crops)
        if (self.crops.ndim != 4 or self.crops.dtype != np.uint8 or self.crops.shape[-1] != 3
                or self.geometry.shape != (n, GEOMETRY_DIM) or self.has_crop.shape != (n,)):
            raise InputError(f"RegionInputs need crops uint8 (N, h, w, 3), geometry (N, "
                             f"{GEOMETRY_DIM}) and has_crop (N,); got {self.crops.dtype} "
                             f"{self.crops.shape}, {self.geometry.shape}, "
                             f"{self.has_crop.shape}", field="regions")

    def __len__(self) -> int:
        return len(self.crops)

    def take(self, idx) -> "RegionInputs":
        return RegionInputs(np.asarray(self.crops[idx]), np.asarray(self.geometry[idx]),
                            np.asarray(self.has_crop[idx]), self.kind)

    @classmethod
    def empty(cls, n: int, size: tuple[int, int], kind: str = "neck") -> "RegionInputs":
        """``n`` rows without keypoints (or, for ``kind="detail"``, without a garment)."""
        return cls(np.full((n, size[0], size[1], 3), 128, np.uint8),
                   np.zeros((n, GEOMETRY_DIM), np.float32), np.zeros(n, bool), kind)


def region_inputs(images: Sequence, xy: np.ndarray | None, vis: np.ndarray | None,
                  size: tuple[int, int]) -> RegionInputs:
    """Neck crops and geometry of ``images`` (uint8 ``(H, W, 3)`` arrays or paths, full
    resolution) from their keypoints ``xy (N, 24, 2)`` / ``vis (N, 24)`` in each
    image's own pixel frame (visibility -1 or NaN: absent; a row of all -1: no
    keypoints).  Images are decoded only where a crop exists.
    """
    from features.attributes.data import load_image

    n = len(images)
    out = RegionInputs.empty(n, size)
    if xy is None or vis is None:
        return out
    xy = np.asarray(xy, float)
    vis = np.nan_to_num(np.asarray(vis, float), nan=-1).astype(int)
    if xy.shape != (n, len(KEYPOINT_NAMES), 2) or vis.shape != (n, len(KEYPOINT_NAMES)):
        raise InputError(f"keypoints for {n} images must be (N, 24, 2) and (N, 24); got "
                         f"{xy.shape} and {vis.shape}", field="keypoints")
    for i in range(n):
        out.geometry[i] = keypoint_geometry(xy[i], vis[i])
        box = neck_box(xy[i], vis[i])
        if box is None:
            continue
        im = images[i]
        rgb = load_image(im) if isinstance(im, (str, os.PathLike)) else np.asarray(im)
        out.crops[i] = crop(rgb, box, size)
        out.has_crop[i] = True
    return out


def detail_inputs(images: Sequence, size: tuple[int, int], *, side: float = DETAIL_SIDE,
                  cache: str | os.PathLike | None = None) -> RegionInputs:
    """Detail crops (:func:`detail_box`, resized to ``size``) of ``images`` (uint8
    ``(H, W, 3)`` arrays or paths, at full resolution: a crop of an already
    letterboxed image holds no more detail than the image), as
    :class:`RegionInputs` of kind ``"detail"`` (zero geometry; ``has_crop`` False
    where no garment stands out of the background or the file is unreadable).

    With ``cache`` (a directory) and paths, the crops are stored as
    ``<cache>/detail_<h>x<w>_<hash>.npz`` and re-used for the same paths, size and
    side (the attribute stage's val/test figures and a re-run decode nothing).
    """
    import hashlib

    from features.attributes.data import file_stamps, load_image

    n = len(images)
    all_paths = all(isinstance(im, (str, os.PathLike)) for im in images)
    cfile = None
    if cache is not None and all_paths and n:
        # the files' contents too: an image replaced at the same path is cut again
        key = hashlib.sha256(("\n".join(map(str, images)) + f"|{tuple(size)}|{side}"
                              + file_stamps(images, cache)).encode()).hexdigest()[:16]
        cfile = os.path.join(cache, f"detail_{size[0]}x{size[1]}_{key}.npz")
        if os.path.isfile(cfile):
            with np.load(cfile) as z:
                return RegionInputs(z["crops"], np.zeros((n, GEOMETRY_DIM), np.float32),
                                    z["has_crop"], "detail")
    out = RegionInputs.empty(n, size, "detail")
    for i, im in enumerate(images):
        try:
            rgb = load_image(im) if isinstance(im, (str, os.PathLike)) else np.asarray(im)
        except (OSError, ValueError, InputError):
            continue
        box = detail_box(rgb, side)
        if box is None:
            continue
        out.crops[i] = crop(rgb, box, size)
        out.has_crop[i] = True
    if cfile is not None:
        with atomic_files(cfile) as (tmp,):
            np.savez(tmp, crops=out.crops, has_crop=out.has_crop)
    return out
