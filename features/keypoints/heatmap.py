"""Heatmap keypoint detector for the FashionAI 24-point schema.

A "simple baseline"-style network (Xiao et al. 2018) on this project's compact
backbone: the image is letterboxed to ``image_size``, encoded down to 1/16 resolution,
then decoded back to 1/4 with two upsample + conv steps that add the 1/8 and 1/4
encoder features (so the heatmaps keep fine localisation).  It predicts 24 heatmaps
at 1/4 of the input resolution.

Training loss per annotated point (``v`` of 0 or 1; absent points, ``v == -1``, are
masked out): the cross-entropy between the heatmap's spatial softmax and a Gaussian
target centred on the true point (sigma = 1 heatmap cell), plus an L1 term on the
soft-argmax coordinate (integral regression, Sun et al. 2018) that makes the decoded
point sub-pixel accurate.

Decoding: the peak cell, refined by the probability-weighted mean of the 5x5
window around it (a local soft-argmax: sub-pixel, and not pulled towards a second
mode the way a global soft-argmax is).  ``conf`` is the probability mass in that
window.  Coordinates are mapped back to the original image's pixels.  The
visibility written is 1 for the points of the image's category and -1 for the rest.
With ``flip_test`` (default) the heatmaps are averaged with those of the mirrored
image (maps mirrored back, left/right channels swapped) before decoding.

Examples
--------
>>> import torch
>>> net = HeatmapNet(HeatmapNetConfig(preset="tiny", image_size=(64, 48))).eval()
>>> net(torch.zeros(1, 3, 64, 48)).shape
torch.Size([1, 24, 16, 12])
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from features.attributes.data import PIXEL_MEAN, PIXEL_STD, letterbox
from features.attributes.model import (ConvBNAct, InvertedResidual, read_model_json,
                                       read_state_dict)
from features.exceptions import BundleError, InputError, NotFittedError, SchemaError
from features.fashionai.io import keypoints_from_arrays
from features.fashionai.schema import (CATEGORY_KEYPOINTS, KEYPOINT_CATEGORIES,
                                       KEYPOINT_INDEX, KEYPOINT_NAMES, NORMALISING_PAIR)
from features.imaging import open_image, pil_to_rgb_array
from features.settings import check_size, check_value

MODEL_SCHEMA = 1
N_KEYPOINTS = len(KEYPOINT_NAMES)
STRIDE = 4

#: Index permutation that swaps left and right points (for horizontal flips).
FLIP_PERM = np.array([KEYPOINT_INDEX[n.replace("left", "#").replace("right", "left")
                                     .replace("#", "right")] for n in KEYPOINT_NAMES])

#: (block, expansion, out_channels, repeats, stride, se) per encoder stage; stages 1-3
#: end at 1/4, 1/8, 1/16 of the input.
PRESETS = {
    "base": {"stem": 24, "stages": (("fused", 2, 32, 2, 2, False),
                                    ("fused", 4, 64, 2, 2, False),
                                    ("mb", 4, 128, 3, 2, True)), "decoder": 64},
    "tiny": {"stem": 8, "stages": (("fused", 2, 12, 1, 2, False),
                                   ("fused", 2, 16, 1, 2, False),
                                   ("mb", 2, 24, 1, 2, True)), "decoder": 16},
}


@dataclasses.dataclass
class HeatmapNetConfig:
    """Shape of the detector (saved beside its state_dict)."""

    preset: str = "base"
    image_size: tuple[int, int] = (160, 112)
    n_keypoints: int = N_KEYPOINTS

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HeatmapNetConfig":
        d = dict(d)
        d["image_size"] = tuple(d["image_size"])
        return cls(**d)


class HeatmapNet(nn.Module):
    """Encoder (1/16) -> decoder with skips (1/4) -> one heatmap logit map per point."""

    def __init__(self, config: HeatmapNetConfig):
        super().__init__()
        if config.preset not in PRESETS:
            raise InputError(f"unknown preset {config.preset!r}", field="preset",
                             allowed=PRESETS)
        self.config = config
        spec = PRESETS[config.preset]
        self.stem = ConvBNAct(3, spec["stem"], 3, 2)
        cin = spec["stem"]
        stages, widths = [], []
        for kind, exp, cout, reps, stride, se in spec["stages"]:
            blocks = []
            for r in range(reps):
                blocks.append(InvertedResidual(cin, cout, exp, stride if r == 0 else 1, se,
                                               fused=kind == "fused"))
                cin = cout
            stages.append(nn.Sequential(*blocks))
            widths.append(cout)
        self.stages = nn.ModuleList(stages)
        d = spec["decoder"]
        self.lat16 = ConvBNAct(widths[2], d, 1)
        self.lat8 = ConvBNAct(widths[1], d, 1)
        self.lat4 = ConvBNAct(widths[0], d, 1)
        self.fuse8 = nn.Sequential(ConvBNAct(d, d, 3, groups=d), ConvBNAct(d, d, 1))
        self.fuse4 = nn.Sequential(ConvBNAct(d, d, 3, groups=d), ConvBNAct(d, d, 1),
                                   ConvBNAct(d, d, 3))
        self.out = nn.Conv2d(d, config.n_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Heatmap logits ``(B, K, H/4, W/4)`` of normalised images ``(B, 3, H, W)``."""
        f4 = self.stages[0](self.stem(x))                       # (B, C1, H/4, W/4)
        f8 = self.stages[1](f4)                                 # (B, C2, H/8, W/8)
        f16 = self.stages[2](f8)                                # (B, C3, H/16, W/16)
        y = F.interpolate(self.lat16(f16), size=f8.shape[-2:], mode="bilinear",
                          align_corners=False) + self.lat8(f8)  # (B, D, H/8, W/8)
        y = self.fuse8(y)
        y = F.interpolate(y, size=f4.shape[-2:], mode="bilinear",
                          align_corners=False) + self.lat4(f4)  # (B, D, H/4, W/4)
        return self.out(self.fuse4(y))                          # (B, K, H/4, W/4)


# -- geometry -----------------------------------------------------------------------------

def letterbox_transform(h: int, w: int, size: tuple[int, int]) -> tuple[float, float, float]:
    """(scale, left, top) of :func:`features.attributes.data.letterbox`: a point
    (x, y) of the original maps to (x * scale + left, y * scale + top)."""
    th, tw = size
    scale = min(th / h, tw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    # The resize maps the original extent onto nh x nw pixels exactly.
    return nw / w, float((tw - nw) // 2), float((th - nh) // 2)


def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Expected (x, y) in heatmap cells of the spatial softmax: ``(B, K, 2)``."""
    b, k, h, w = logits.shape
    p = torch.softmax(logits.reshape(b, k, h * w).float(), -1).reshape(b, k, h, w)
    xs = torch.arange(w, dtype=p.dtype)
    ys = torch.arange(h, dtype=p.dtype)
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], -1)


def local_soft_argmax(logits: torch.Tensor, radius: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak refined by the weighted mean of its (2r+1)^2 window: (xy cells (B, K, 2),
    window probability mass (B, K))."""
    b, k, h, w = logits.shape
    p = torch.softmax(logits.reshape(b, k, h * w).float(), -1).reshape(b, k, h, w)
    peak = p.reshape(b, k, -1).argmax(-1)
    py, px = peak // w, peak % w
    offs = torch.arange(-radius, radius + 1)
    yy = (py[..., None] + offs).clamp(0, h - 1)                      # (B, K, R)
    xx = (px[..., None] + offs).clamp(0, w - 1)
    valid_y = (py[..., None] + offs >= 0) & (py[..., None] + offs < h)
    valid_x = (px[..., None] + offs >= 0) & (px[..., None] + offs < w)
    bi = torch.arange(b)[:, None, None, None]
    ki = torch.arange(k)[None, :, None, None]
    win = p[bi, ki, yy[..., :, None], xx[..., None, :]]              # (B, K, R, R)
    win = win * (valid_y[..., :, None] & valid_x[..., None, :])
    mass = win.sum((-1, -2)).clamp_min(1e-12)
    x = (win.sum(-2) * xx).sum(-1) / mass
    y = (win.sum(-1) * yy).sum(-1) / mass
    return torch.stack([x, y], -1), mass


def quadratic_peak(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak refined by a second-order Taylor expansion of the log-probability around
    it (DARK, Zhang et al. 2020): ``offset = -H^-1 g`` with the gradient ``g`` and
    Hessian ``H`` from central differences of ``log p`` at the peak cell.

    A Gaussian heatmap's log is a quadratic, so this recovers its centre exactly
    wherever the 3x3 neighbourhood is inside the map; the offset is clamped to
    half a cell per axis (beyond that the neighbouring cell would be the peak) and
    left at 0 on the border or where ``H`` is not negative definite.  Returns
    (xy cells (B, K, 2), probability mass of the 5x5 window (B, K)) like
    :func:`local_soft_argmax`.

    >>> ys, xs = torch.meshgrid(torch.arange(8.), torch.arange(6.), indexing="ij")
    >>> lg = -((xs - 2.3) ** 2 + (ys - 4.6) ** 2) / 2
    >>> [round(v, 4) for v in quadratic_peak(lg[None, None])[0][0, 0].tolist()]
    [2.3, 4.6]
    """
    b, k, h, w = logits.shape
    logp = torch.log_softmax(logits.reshape(b, k, h * w).float(), -1).reshape(b, k, h, w)
    peak = logp.reshape(b, k, -1).argmax(-1)
    py, px = peak // w, peak % w
    inner = (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1)
    cy, cx = py.clamp(1, max(1, h - 2)), px.clamp(1, max(1, w - 2))
    bi = torch.arange(b)[:, None]
    ki = torch.arange(k)[None, :]

    def at(dy, dx):
        return logp[bi, ki, (cy + dy).clamp(0, h - 1), (cx + dx).clamp(0, w - 1)]

    c = at(0, 0)
    gx, gy = (at(0, 1) - at(0, -1)) / 2, (at(1, 0) - at(-1, 0)) / 2
    hxx, hyy = at(0, 1) - 2 * c + at(0, -1), at(1, 0) - 2 * c + at(-1, 0)
    hxy = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / 4
    det = hxx * hyy - hxy ** 2
    ok = inner & (hxx < 0) & (det > 1e-9)
    safe = torch.where(ok, det, torch.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / safe
    oy = -(hxx * gy - hxy * gx) / safe
    ox = torch.where(ok, ox.clamp(-0.5, 0.5), torch.zeros_like(ox))
    oy = torch.where(ok, oy.clamp(-0.5, 0.5), torch.zeros_like(oy))
    xy = torch.stack([px.float() + ox, py.float() + oy], -1)
    _, mass = local_soft_argmax(logits)
    return xy, mass


def flip_logits(logits: torch.Tensor) -> torch.Tensor:
    """Heatmaps of a mirrored image mapped back to the original: mirror the maps and
    swap left/right channels.  Heatmap cell ``j`` of the mirrored image (width ``W``,
    a multiple of :data:`STRIDE`) covers the pixels of cell ``W/STRIDE - 1 - j``."""
    return logits.flip(-1)[:, torch.as_tensor(FLIP_PERM)]


DECODERS = ("quadratic", "local", "global")


def normalized_error(xy_true: np.ndarray, vis_true: np.ndarray, xy_pred: np.ndarray,
                     categories: Sequence[str]) -> tuple[float, int]:
    """FashionAI NE (mean over ground-truth-visible points of distance / the image's
    normalising distance); a local copy for training logs. Images whose normalising
    pair is not annotated are skipped. Returns (ne, number of points scored)."""
    errs = []
    for i, cat in enumerate(categories):
        a, b = (KEYPOINT_INDEX[n] for n in NORMALISING_PAIR[cat])
        if vis_true[i, a] < 0 or vis_true[i, b] < 0:
            continue
        s = float(np.linalg.norm(xy_true[i, a] - xy_true[i, b]))
        if s <= 0:
            continue
        m = vis_true[i] == 1
        errs.extend(np.linalg.norm(xy_pred[i, m] - xy_true[i, m], axis=1) / s)
    return (float(np.mean(errs)) if errs else float("nan")), len(errs)


def category_visibility(categories: Sequence[str]) -> np.ndarray:
    """(N, 24) visibility: 1 for the points of each row's category, -1 otherwise."""
    vis = np.full((len(categories), N_KEYPOINTS), -1, np.int64)
    for i, c in enumerate(categories):
        if c not in CATEGORY_KEYPOINTS:
            raise InputError(f"unknown keypoint category {c!r}", field="image_category",
                             value=c, allowed=KEYPOINT_CATEGORIES)
        vis[i, [KEYPOINT_INDEX[n] for n in CATEGORY_KEYPOINTS[c]]] = 1
    return vis


def _prepare(images, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Letterboxed uint8 (N, H, W, 3) and per-image (scale, left, top)."""
    out = np.zeros((len(images), size[0], size[1], 3), np.uint8)
    tf = np.zeros((len(images), 3))
    for i, im in enumerate(images):
        if isinstance(im, (str, os.PathLike)):
            with open_image(im) as pil:
                im = pil_to_rgb_array(pil)     # as load_rgb gives the features stage
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[-1] < 3 or a.dtype != np.uint8:
            raise InputError(f"image {i} must be uint8 (H, W, 3) or a path; got "
                             f"{a.dtype} {a.shape}", field="images")
        out[i] = letterbox(a[..., :3], size)
        tf[i] = letterbox_transform(a.shape[0], a.shape[1], size)
    return out, tf


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    # Channels-last memory: CPU convolutions of these narrow layers run ~1.4x faster.
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    return ((x / 255.0 - PIXEL_MEAN) / PIXEL_STD).contiguous(memory_format=torch.channels_last)


def _augment(x: torch.Tensor, pts: torch.Tensor, gen: torch.Generator, flip: bool = True,
             max_scale: float = 0.1, max_shift: float = 0.05, max_rot_deg: float = 8.0):
    """Affine + flip of images (B, 3, H, W) and their points (B, K, 2) in input pixels."""
    b, _, h, w = x.shape

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    s = u(1 - max_scale, 1 + max_scale)
    r = u(-max_rot_deg, max_rot_deg) * math.pi / 180
    sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    t = torch.stack([u(-max_shift, max_shift), u(-max_shift, max_shift)], 1) * 2
    a = torch.stack([torch.stack([torch.cos(r) * sign, -torch.sin(r)], 1),
                     torch.stack([torch.sin(r) * sign, torch.cos(r)], 1)], 1) / s[:, None, None]
    theta = torch.cat([a, t[:, :, None]], 2)                          # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Output point q satisfies p = A q + t (normalised coords), so q = A^-1 (p - t).
    wh = torch.tensor([w, h], dtype=pts.dtype)
    p = (2 * pts + 1) / wh - 1
    q = torch.linalg.solve(a, (p - t[:, None, :]).transpose(1, 2)).transpose(1, 2)
    pts = ((q + 1) * wh - 1) / 2
    flipped = sign < 0
    perm = torch.as_tensor(FLIP_PERM)
    pts = torch.where(flipped[:, None, None], pts[:, perm], pts)
    return x, pts, flipped


class HeatmapKeypointDetector:
    """Trainable FashionAI keypoint detector (sklearn-style wrapper of HeatmapNet).

    Parameters
    ----------
    preset : {"base", "tiny"}
    image_size : (int, int)
        Network input (height, width); heatmaps are 1/4 of it.
    epochs, batch_size, lr, weight_decay : training schedule (AdamW, warmup + cosine).
    sigma : float
        Gaussian target width in heatmap cells.
    coord_weight : float
        Weight of the soft-argmax L1 term (in heatmap cells).
    augment : bool
        Flip (left/right points swapped), scale, shift, rotation.
    flip_test : bool
        Average the heatmaps of the image and of its mirror (left/right channels
        swapped back) before decoding.
    decoder : {"quadratic", "local", "global"}
        Sub-cell decoding of the heatmaps: :func:`local_soft_argmax` ("local",
        the default), :func:`quadratic_peak` or the global :func:`soft_argmax`.
        On the demo's test split (600 CPU s of training, flip on) they scored NE
        0.0206, 0.0222 and 0.0212: the learned maps are not Gaussian enough in
        log space for the Taylor step to pay off.
    time_budget_s : float, optional
        Stop (annealed) at this many seconds of training.
    budget_clock : {"wall", "cpu"}
        What ``time_budget_s`` counts: wall-clock seconds, or this process's CPU
        seconds (same compute whatever else runs on the machine).
    num_threads, random_state, verbose : as in :class:`features.attributes.AttributeModel`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> imgs = [rng.integers(0, 255, (80, 60, 3), dtype=np.uint8) for _ in range(4)]
    >>> xy = np.full((4, 24, 2), -1.0); vis = np.full((4, 24), -1)
    >>> xy[:, 15:19] = [(40, 10), (20, 10), (45, 70), (15, 70)]; vis[:, 15:19] = 1
    >>> det = HeatmapKeypointDetector(preset="tiny", image_size=(64, 48), epochs=1)
    >>> pxy, pvis, conf = det.fit(imgs, xy, vis).predict(imgs, ["skirt"] * 4)
    >>> pxy.shape, int(pvis[0, 15]), int(pvis[0, 0])
    ((4, 24, 2), 1, -1)
    """

    def __init__(self, *, preset: str = "base", image_size: tuple[int, int] = (160, 112),
                 epochs: int = 30, batch_size: int = 32, lr: float = 2e-3,
                 weight_decay: float = 1e-4, sigma: float = 1.0, coord_weight: float = 0.5,
                 augment: bool = True, flip_test: bool = True, decoder: str = "local",
                 time_budget_s: float | None = None, budget_clock: str = "wall",
                 num_threads: int = 1, random_state: int = 0,
                 verbose: bool | Callable[[str], None] = False):
        self.preset = preset
        self.image_size = image_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.sigma = sigma
        self.coord_weight = coord_weight
        self.augment = augment
        self.flip_test = flip_test
        self.decoder = decoder
        self.time_budget_s = time_budget_s
        self.budget_clock = budget_clock
        self.num_threads = num_threads
        self.random_state = random_state
        self.verbose = verbose

    _PARAMS = ("preset", "image_size", "epochs", "batch_size", "lr", "weight_decay", "sigma",
               "coord_weight", "augment", "flip_test", "decoder", "time_budget_s",
               "budget_clock", "num_threads", "random_state")

    def get_params(self) -> dict:
        d = {k: getattr(self, k) for k in self._PARAMS}
        d["image_size"] = list(self.image_size)
        return d

    def _log(self, msg: str) -> None:
        if callable(self.verbose):
            self.verbose(msg)
        elif self.verbose:
            print(msg, file=sys.stderr, flush=True)

    def _loss(self, logits: torch.Tensor, pts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, k, h, w = logits.shape
        cells = (pts - (STRIDE - 1) / 2) / STRIDE                      # (B, K, 2) cell coords
        xs = torch.arange(w, dtype=torch.float32)
        ys = torch.arange(h, dtype=torch.float32)
        g = torch.exp(-((xs[None, None, None, :] - cells[..., 0, None, None]) ** 2
                        + (ys[None, None, :, None] - cells[..., 1, None, None]) ** 2)
                      / (2 * self.sigma ** 2))                         # (B, K, h, w)
        g = g / g.sum((-1, -2), keepdim=True).clamp_min(1e-12)
        logp = torch.log_softmax(logits.reshape(b, k, -1).float(), -1)
        ce = -(g.reshape(b, k, -1) * logp).sum(-1)                     # (B, K)
        l1 = (soft_argmax(logits) - cells).abs().sum(-1)               # (B, K)
        m = mask.float()
        return ((ce + self.coord_weight * l1) * m).sum() / m.sum().clamp_min(1.0)

    def _validate_params(self) -> None:
        """InputError naming a parameter out of range (``fit`` calls this first, the
        keypoints stage before it starts): ``epochs = 0`` trained nothing and saved an
        untrained detector, and a batch of 0 or less did the same."""
        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}", field="preset",
                             value=self.preset, allowed=PRESETS)
        # [64] was an IndexError and [0, 48] a torch error once training started; 16,
        # as the attribute network: a heatmap (1/4 of the input) of at least 4x4
        check_size("image_size", self.image_size, least=16)
        for name in ("epochs", "batch_size", "num_threads"):
            # whole numbers: int() cut epochs = 2.7 to 2 and was a ValueError on NaN
            check_value(name, getattr(self, name), int, least=1)
        # Each passed a kind-only check and misbehaved in training: lr = 0 kept the
        # random initialisation (saved as trained), sigma = 0 made every target map 0
        # off its centre cell, coord_weight < 0 rewarded a point far from the truth,
        # weight_decay < 0 (or lr NaN) was AdamW's ValueError once the images were
        # decoded, and time_budget_s = 0 meant no budget at all (None says that).
        check_value("lr", self.lr, float, above=0)
        check_value("weight_decay", self.weight_decay, float, least=0)
        check_value("sigma", self.sigma, float, above=0)
        check_value("coord_weight", self.coord_weight, float, least=0)
        if self.time_budget_s is not None:
            check_value("time_budget_s", self.time_budget_s, float, above=0)
        if self.decoder not in DECODERS:
            raise InputError(f"unknown decoder {self.decoder!r}", field="decoder",
                             value=self.decoder, allowed=DECODERS)
        if self.budget_clock not in ("wall", "cpu"):
            raise InputError(f"unknown budget_clock {self.budget_clock!r}",
                             field="budget_clock", value=self.budget_clock,
                             allowed=("wall", "cpu"))

    def fit(self, images, xy: np.ndarray, vis: np.ndarray, *,
            eval_set: tuple | None = None) -> "HeatmapKeypointDetector":
        """Train on images (paths or uint8 arrays of any size), their points ``xy``
        (N, 24, 2) in original pixels and visibility ``vis`` (N, 24) (-1 absent).

        ``eval_set=(images, xy, vis, categories)`` is scored (NE) after each epoch.
        """
        self._validate_params()
        xy = np.asarray(xy, dtype=np.float64)
        vis = np.asarray(vis)
        if xy.shape != (len(vis), N_KEYPOINTS, 2) or vis.shape != (len(xy), N_KEYPOINTS):
            raise InputError(f"xy must be (N, 24, 2) and vis (N, 24); got {xy.shape} and "
                             f"{vis.shape}", field="xy")
        if len(images) != len(xy):
            raise InputError(f"{len(images)} images but {len(xy)} keypoint rows",
                             field="images")
        size = tuple(int(s) for s in self.image_size)
        imgs, tf = _prepare(images, size)
        pts = xy * tf[:, None, :1] + tf[:, None, 1:3]                  # input pixels
        mask = vis >= 0
        prev = torch.get_num_threads()
        torch.set_num_threads(int(self.num_threads))
        torch.manual_seed(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        self.config_ = HeatmapNetConfig(preset=self.preset, image_size=size)
        net = HeatmapNet(self.config_)
        net = net.to(memory_format=torch.channels_last)
        try:
            self.history_ = self._train(net, imgs, pts, mask, gen, eval_set)
        finally:
            torch.set_num_threads(prev)
        self.net_ = net.eval()
        self.n_train_ = len(imgs)
        return self

    def _train(self, net, imgs, pts, mask, gen, eval_set) -> list[dict]:
        from features.attributes.train import lr_at

        n = len(imgs)
        bs = int(min(self.batch_size, n))
        steps = max(1, math.ceil(n / bs))
        total = int(self.epochs) * steps
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        pts_t = torch.as_tensor(pts, dtype=torch.float32)
        mask_t = torch.as_tensor(mask)
        # "cpu": the budget counts this process's CPU seconds (all threads), so a
        # run gets the same compute on a shared, loaded machine as on an idle one.
        clock = time.process_time if self.budget_clock == "cpu" else time.perf_counter
        history, step, t0 = [], 0, clock()
        for epoch in range(int(self.epochs)):
            net.train()
            perm = torch.randperm(n, generator=gen).numpy()
            tot, nb, stop = 0.0, 0, False
            for s in range(0, n, bs):
                prog = step / total
                if self.time_budget_s:
                    prog = max(prog, (clock() - t0) / float(self.time_budget_s))
                if prog >= 1.0:
                    stop = True
                    break
                lr = self.lr * lr_at(prog, min(0.2, 1.0 / max(1, int(self.epochs))))
                for g in opt.param_groups:
                    g["lr"] = lr
                idx = np.sort(perm[s:s + bs])
                x = _to_tensor(imgs[idx])
                p, m = pts_t[idx], mask_t[idx]
                if self.augment:
                    x, p, flipped = _augment(x, p, gen)
                    x = x.contiguous(memory_format=torch.channels_last)
                    m = torch.where(flipped[:, None], m[:, torch.as_tensor(FLIP_PERM)], m)
                loss = self._loss(net(x), p, m)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach())
                nb += 1
                step += 1
            if nb == 0:
                break
            rec = {"epoch": epoch + 1, "loss": tot / nb, "seconds": round(clock() - t0, 1)}
            if eval_set is not None:
                self.net_, self.config_ = net.eval(), self.config_
                pxy, _, _ = self.predict(eval_set[0], eval_set[3])
                rec["val_ne"] = normalized_error(np.asarray(eval_set[1], float),
                                                 np.asarray(eval_set[2]), pxy, eval_set[3])[0]
                del self.net_
            history.append(rec)
            self._log(f"  keypoints epoch {epoch + 1}/{self.epochs} loss {rec['loss']:.4f}"
                      + (f" val NE {rec['val_ne']:.4f}" if "val_ne" in rec else "")
                      + f" ({rec['seconds']:.0f}s)")
            if stop:
                break
        return history

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("this HeatmapKeypointDetector is not fitted yet: call fit() "
                                 "or HeatmapKeypointDetector.load() first")

    @torch.no_grad()
    def heatmaps(self, x: torch.Tensor, flip_test: bool | None = None) -> torch.Tensor:
        """Heatmap logits of a normalised batch; with ``flip_test`` (default: the
        detector's) averaged with those of the mirrored batch mapped back."""
        flip_test = self.flip_test if flip_test is None else flip_test
        out = self.net_(x)
        if flip_test:
            out = (out + flip_logits(self.net_(x.flip(-1)))) / 2
        return out

    def decode(self, logits: torch.Tensor, decoder: str | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(xy in heatmap cells (B, K, 2), confidence (B, K)) by ``decoder`` (one of
        :data:`DECODERS`; default: the detector's)."""
        decoder = self.decoder if decoder is None else decoder
        if decoder == "quadratic":
            return quadratic_peak(logits)
        if decoder == "local":
            return local_soft_argmax(logits)
        if decoder == "global":
            return soft_argmax(logits), local_soft_argmax(logits)[1]
        raise InputError(f"unknown decoder {decoder!r}", field="decoder", value=decoder,
                         allowed=DECODERS)

    @torch.no_grad()
    def predict(self, images, categories: Sequence[str], batch_size: int = 64, *,
                flip_test: bool | None = None, decoder: str | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points of each image: ``xy`` (N, 24, 2) float in original pixels, ``vis``
        (N, 24) int (1 for the category's points, -1 otherwise), ``conf`` (N, 24) in
        0..1 (0 where vis is -1).  ``flip_test`` and ``decoder`` override the
        detector's settings for this call."""
        self._check_fitted()
        if len(categories) != len(images):
            raise InputError(f"{len(images)} images but {len(categories)} categories",
                             field="categories")
        vis = category_visibility(categories)
        imgs, tf = _prepare(images, self.config_.image_size)
        self.net_.eval()
        prev = torch.get_num_threads()
        torch.set_num_threads(int(self.num_threads))
        try:
            xy_cells, conf = [], []
            for s in range(0, len(imgs), batch_size):
                c, m = self.decode(self.heatmaps(_to_tensor(imgs[s:s + batch_size]),
                                                 flip_test), decoder)
                xy_cells.append(c.numpy())
                conf.append(m.numpy())
        finally:
            torch.set_num_threads(prev)
        if not xy_cells:
            return np.zeros((0, N_KEYPOINTS, 2)), vis, np.zeros((0, N_KEYPOINTS))
        cells = np.concatenate(xy_cells).astype(np.float64)
        pts = cells * STRIDE + (STRIDE - 1) / 2                         # input pixels
        xy = (pts - tf[:, None, 1:3]) / tf[:, None, :1]                # original pixels
        conf = np.where(vis > 0, np.concatenate(conf), 0.0)
        xy = np.where(vis[..., None] > 0, xy, -1.0)
        return xy, vis, conf

    def predict_frame(self, images, image_ids: Sequence[str], categories: Sequence[str]
                      ) -> pd.DataFrame:
        """Predictions as the FashionAI wide table (write with
        :func:`features.fashionai.io.write_keypoints_csv`)."""
        xy, vis, _ = self.predict(images, categories)
        return keypoints_from_arrays(list(image_ids), list(categories), xy, vis)

    def save(self, directory: str | os.PathLike, name: str = "keypoints") -> list[Path]:
        """Write ``<name>.pt`` (state_dict) and ``<name>.json`` (config, params)."""
        self._check_fitted()
        from features.files import atomic_files

        d = Path(directory)
        pt, js = d / f"{name}.pt", d / f"{name}.json"
        # renamed into place once both are written, the json last: a failure or a kill
        # half way leaves the previous detector whole, never a new state_dict beside
        # the old config
        with atomic_files(pt, js) as (tmp_pt, tmp_js):
            torch.save({k: v.detach().clone() for k, v in self.net_.state_dict().items()},
                       tmp_pt)
            tmp_js.write_text(json.dumps({"schema": MODEL_SCHEMA, "kind": "heatmap_keypoints",
                                          "config": self.config_.to_dict(),
                                          "params": self.get_params(),
                                          "keypoints": KEYPOINT_NAMES,
                                          "history": self.history_, "n_train": self.n_train_},
                                         indent=2, default=float))
        return [pt, js]

    @classmethod
    def load(cls, path: str | os.PathLike, name: str = "keypoints") -> "HeatmapKeypointDetector":
        """Load from a directory or either file; checks the schema and keypoint list."""
        p = Path(path)
        js, pt = ((p / f"{name}.json", p / f"{name}.pt") if p.is_dir()
                  else (p.with_suffix(".json"), p.with_suffix(".pt")))
        if not js.is_file() or not pt.is_file():
            raise BundleError(f"keypoint model files not found: {js} and {pt}")
        meta = read_model_json(js)
        if meta.get("schema") != MODEL_SCHEMA or meta.get("kind") != "heatmap_keypoints" \
                or tuple(meta.get("keypoints", ())) != KEYPOINT_NAMES:
            raise SchemaError(f"{js} is not a heatmap keypoint model of schema "
                              f"{MODEL_SCHEMA} for the FashionAI points", field="schema")
        params = {k: v for k, v in meta.get("params", {}).items() if k in cls._PARAMS}
        params["image_size"] = tuple(params.get("image_size", meta["config"]["image_size"]))
        det = cls(**params)
        det.config_ = HeatmapNetConfig.from_dict(meta["config"])
        net = HeatmapNet(det.config_)
        state = read_state_dict(pt)    # a BundleError (a RuntimeError too) of its own
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise SchemaError(f"{pt} does not match {js}: {exc}", field="state_dict") from exc
        det.net_ = net.to(memory_format=torch.channels_last).eval()
        det.history_ = meta.get("history", [])
        det.n_train_ = int(meta.get("n_train", 0))
        return det


def load_detector(path: str | os.PathLike, name: str = "keypoints") -> HeatmapKeypointDetector:
    """Load a trained detector (``<path>/<name>.pt`` + ``.json``); the hook
    :mod:`features.extract` uses when a bundle has ``models/keypoints.pt``."""
    return HeatmapKeypointDetector.load(path, name)
