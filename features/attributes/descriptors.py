"""Full-resolution garment descriptors, and their late fusion with the attribute network.

The network reads a packshot letterboxed to about 160x112: enough for silhouette and
hue, too coarse for what separates jersey (``K-CIRCULAR``) from knitwear
(``T-TRICOT``) and woven fabric (``P-PLANA``), or a white garment from a grey one on a
light background.  :func:`garment_descriptors` measures those directly at about the
photo's own resolution (long side :data:`DESCRIPTOR_SIDE`), on the garment's
pixels only (a background-difference foreground, eroded so the outline does not
count as texture):

* **texture**: rotation-invariant uniform local binary patterns (8 neighbours at
  radius 1, 2 and 3 px; 10-bin histograms; Ojala et al. 2002), a histogram of
  log gradient magnitude (Sobel) and its mean / median / 90th percentile, band-pass
  energy ``|g - G_s * g|`` at s = 0.7, 1.5 and 3 px (mean and 75th percentile), and
  structure-tensor coherence ``sqrt((Jxx - Jyy)^2 + 4 Jxy^2) / (Jxx + Jyy)`` (ribs,
  stripes and twill are oriented, jersey is not);
* **colour**: CIELAB L, a, b and chroma at the 5/25/50/75/95th percentiles of the
  garment's pixels, a 12-bin hue histogram of its chromatic pixels (chroma > 8), a
  10-bin lightness histogram, the background's L, a, b, the garment's median
  lightness minus the background's, and the chromatic share;
* **silhouette**: foreground share of the frame, bounding-box height and width
  (relative to the frame), aspect, and fill of the box.

:class:`DescriptorFusion` learns, per attribute head, a LightGBM classifier on
these descriptors (trained on the network's training products; rounds by early
stopping on a grouped hold-out of them) and a weight ``w`` for a product of experts,
``log p = log p_net + w log p_desc`` (renormalised), with ``w`` chosen on the
validation products by log-loss.  A head whose best weight is 0 keeps the network's
probabilities alone.  On MANGO the colour and fabric heads gain most (see
``benchmarks/mango_attributes.toml``).

A head that is not fused directly (too many classes for a booster per class, or no
gain) can still take the descriptors' evidence through a fused head whose classes it
predicts: the fabric tells knitwear from woven shirts, and so a sweater from a shirt.
With ``P(s | t)`` the share of head ``t``'s class with class ``s`` of a fused head in
the training labels (add-half smoothed) and ``L(s) = p_desc(s) / prior(s)`` the
descriptor classifier's likelihood ratio (Bayes' rule up to a constant),

    ``log p(t) = log p_net(t) + a * log sum_s P(s | t) L(s)``   (renormalised),

with ``a`` chosen on the validation rows by log-loss like a direct weight (one source
head after another).  On MANGO the fabric's evidence got weight 0.7 for family and
type on two networks of the same recipe, and lowered their validation log-loss by 6-8%.
Test accuracy, pooled over colour variants, moved by less than its noise: family 0.859
-> 0.861 and 0.854 -> 0.853 (macro-F1 0.742 -> 0.765 and 0.755 -> 0.760), type 0.811 ->
0.815 and 0.812 -> 0.817 (validation family 0.860 -> 0.881 and 0.860 -> 0.863).

Examples
--------
>>> import numpy as np
>>> img = np.full((120, 90, 3), 235, np.uint8); img[20:100, 20:70] = (30, 40, 120)
>>> d = garment_descriptors(img)
>>> d.shape == (len(DESCRIPTOR_NAMES),)
True
>>> round(float(d[DESCRIPTOR_NAMES.index("box_h")]), 2)   # 80 of 120 rows
0.67
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from features.attributes.regions import background_difference
from features.exceptions import BundleError, InputError, NotFoundError, SchemaError
from features.files import atomic_files
from features.imaging import load_rgb, resize_to, rgb_to_lab
from features.settings import check_value

#: Version of the descriptor definition (cache keys and saved fusions carry it).
DESCRIPTOR_VERSION = 1
#: Images are resized so their long side is this many pixels before measuring (MANGO
#: packshots are 334x239), so texture scales mean the same for every caller.
DESCRIPTOR_SIDE = 336
#: Channel difference from the background's median border colour that marks the garment.
FOREGROUND_TOL = 12
FUSION_SCHEMA = "mixmatch-descriptor-fusion/1"

_LBP_RADII = (1, 2, 3)
_BANDS = (0.7, 1.5, 3.0)
_PCTS = (5, 25, 50, 75, 95)


def _names() -> list[str]:
    n = []
    for r in _LBP_RADII:
        n += [f"lbp{r}_{k}" for k in range(10)]
    n += [f"grad_hist_{k}" for k in range(10)] + ["grad_mean", "grad_median", "grad_p90"]
    for s in _BANDS:
        n += [f"band{s}_mean", f"band{s}_p75"]
    n += ["coherence_mean", "coherence_median", "anisotropy"]
    for q in _PCTS:
        n += [f"L_p{q}", f"a_p{q}", f"b_p{q}", f"chroma_p{q}"]
    n += [f"hue_hist_{k}" for k in range(12)] + [f"L_hist_{k}" for k in range(10)]
    n += ["bg_L", "bg_a", "bg_b", "L_minus_bg", "chromatic_share"]
    n += ["fg_share", "box_h", "box_w", "box_aspect", "box_fill"]
    return n


#: Names of the columns :func:`garment_descriptors` returns, in order.
DESCRIPTOR_NAMES: list[str] = _names()


def _lbp_table(p: int = 8) -> np.ndarray:
    """Code -> rotation-invariant uniform label: number of set bits when the circular
    pattern has at most two 0/1 transitions, else ``p + 1``."""
    t = np.zeros(2 ** p, np.int64)
    for v in range(2 ** p):
        bits = [(v >> i) & 1 for i in range(p)]
        flips = sum(bits[i] != bits[(i + 1) % p] for i in range(p))
        t[v] = sum(bits) if flips <= 2 else p + 1
    return t


_LBP_TABLE = _lbp_table()


def _lbp(g: np.ndarray, r: int) -> np.ndarray:
    """Rotation-invariant uniform LBP labels (0..9) of the pixels at least ``r`` from
    the edge; a neighbour counts as set when it is at least 2 grey levels brighter
    (ignores JPEG noise on flat fabric)."""
    h, w = g.shape
    c = g[r:h - r, r:w - r]
    code = np.zeros(c.shape, np.uint8)
    offs = ((-r, -r), (-r, 0), (-r, r), (0, r), (r, r), (r, 0), (r, -r), (0, -r))
    for i, (dy, dx) in enumerate(offs):
        n = g[r + dy:h - r + dy, r + dx:w - r + dx]
        code |= (n >= c + 2).astype(np.uint8) << i
    return _LBP_TABLE[code]


def garment_descriptors(rgb: np.ndarray, side: int = DESCRIPTOR_SIDE) -> np.ndarray:
    """Texture, colour and silhouette descriptors of one packshot (see module doc):
    float32 ``(len(DESCRIPTOR_NAMES),)``.  ``rgb`` is uint8 ``(H, W, 3)`` (extra
    channels ignored); it is resized to ``side`` pixels on its long side first."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[-1] < 3 or a.dtype != np.uint8 or min(a.shape[:2]) < 8:
        raise InputError(f"image must be uint8 (H, W, 3) of at least 8x8; got {a.dtype} "
                         f"{a.shape}", field="image", value=list(a.shape))
    h, w = a.shape[:2]
    scale = side / max(h, w)
    rgb = resize_to(np.ascontiguousarray(a[..., :3]),
                    (max(1, round(h * scale)), max(1, round(w * scale))))
    h, w = rgb.shape[:2]
    fg, bg = background_difference(rgb, FOREGROUND_TOL)
    fg = ndi.binary_opening(fg, iterations=1)
    fg = ndi.binary_fill_holes(ndi.binary_closing(fg, iterations=2))
    inner = ndi.binary_erosion(fg, iterations=4)
    if inner.sum() < 200:                       # thin jewellery: take what there is
        inner = fg if fg.sum() > 50 else np.ones_like(fg)
    g = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    out: list[float] = []
    for r in _LBP_RADII:
        lab_r = _lbp(g, r)[inner[r:h - r, r:w - r]]
        hist = np.bincount(lab_r, minlength=10)[:10].astype(float)
        out += list(hist / max(hist.sum(), 1.0))
    gx, gy = ndi.sobel(g, 1), ndi.sobel(g, 0)
    gm = np.hypot(gx, gy)[inner]
    out += list(np.histogram(np.log1p(gm), bins=10, range=(0, 7))[0] / max(len(gm), 1))
    out += [float(gm.mean()), float(np.median(gm)), float(np.percentile(gm, 90))]
    for s in _BANDS:
        d = np.abs(g - ndi.gaussian_filter(g, s))[inner]
        out += [float(d.mean()), float(np.percentile(d, 75))]
    jxx = ndi.gaussian_filter(gx * gx, 2)[inner]
    jyy = ndi.gaussian_filter(gy * gy, 2)[inner]
    jxy = ndi.gaussian_filter(gx * gy, 2)[inner]
    tr = jxx + jyy + 1e-6
    coh = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / tr
    out += [float(coh.mean()), float(np.median(coh)), float(np.mean(np.abs(jxx - jyy) / tr))]
    lab = rgb_to_lab(rgb[inner]).astype(float)
    lab_bg = rgb_to_lab(bg / 255.0).astype(float)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    for q in _PCTS:
        out += list(np.percentile(lab, q, axis=0)) + [float(np.percentile(chroma, q))]
    hue = np.arctan2(lab[:, 2], lab[:, 1])
    chromatic = chroma > 8
    out += list(np.histogram(hue[chromatic], bins=12, range=(-np.pi, np.pi))[0]
                / max(len(hue), 1))
    out += list(np.histogram(lab[:, 0], bins=10, range=(0, 100))[0] / max(len(lab), 1))
    out += list(lab_bg) + [float(np.median(lab[:, 0]) - lab_bg[0]), float(chromatic.mean())]
    ys, xs = np.nonzero(fg)
    if len(ys):
        bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        out += [float(fg.mean()), bh / h, bw / w, bh / bw, float(fg.sum() / (bh * bw))]
    else:
        out += [0.0, 0.0, 0.0, 0.0, 0.0]
    return np.asarray(out, np.float32)


def _one(item) -> np.ndarray | None:
    try:
        if isinstance(item, (str, os.PathLike)):
            item = load_rgb(item)
        return garment_descriptors(np.asarray(item))
    except (OSError, InputError, NotFoundError):
        return None


def _cache_file(items: Sequence, cache: str | os.PathLike | None) -> Path | None:
    """Where :func:`descriptor_table` keeps the table of ``items`` (None: not cached,
    because no cache folder is given or some item is not a path)."""
    if cache is None or not items or \
            not all(isinstance(p, (str, os.PathLike)) for p in items):
        return None
    from features.attributes.data import file_stamps

    # the files' contents too: an image replaced at the same path is measured again
    key = hashlib.sha256(("\n".join(map(str, items)) + f"|{DESCRIPTOR_SIDE}"
                          + file_stamps(items, cache)).encode()).hexdigest()[:16]
    return Path(cache) / f"descriptors_v{DESCRIPTOR_VERSION}_{key}.npy"


def cached_descriptors(paths: Sequence, cache: str | os.PathLike | None
                       ) -> np.ndarray | None:
    """The table :func:`descriptor_table` stored in ``cache`` for exactly these
    ``paths`` (same order), or None when there is none: nothing is measured."""
    return _load_cached(_cache_file(list(paths), cache), len(paths))


def _load_cached(cfile: Path | None, n: int) -> np.ndarray | None:
    if cfile is None or not cfile.is_file():
        return None
    x = np.load(cfile)
    return x if x.shape == (n, len(DESCRIPTOR_NAMES)) else None


def descriptor_table(images: Sequence, *, workers: int = 1,
                     cache: str | os.PathLike | None = None, progress: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of many images (paths or uint8 arrays): float32 ``(N, D)`` and an
    ``ok`` mask; an unreadable image gives a row of NaN and ``ok=False`` instead of
    stopping the run.  ``workers`` > 1 measures in that many processes.  With ``cache``
    (a directory) and paths, the table is stored as
    ``<cache>/descriptors_v<version>_<hash of the paths>.npy`` and re-used."""
    items = list(images)
    n, d = len(items), len(DESCRIPTOR_NAMES)
    cfile = _cache_file(items, cache)
    x = _load_cached(cfile, n)
    if x is not None:
        return x, ~np.isnan(x).all(1)
    if workers > 1 and n > 64:
        with ProcessPoolExecutor(workers) as ex:
            rows = []
            for i, r in enumerate(ex.map(_one, items, chunksize=32)):
                rows.append(r)
                if progress and (i + 1) % 1000 == 0:
                    print(f"  described {i + 1}/{n} images", file=sys.stderr, flush=True)
    else:
        rows = [_one(it) for it in items]
    x = np.full((n, d), np.nan, np.float32)
    ok = np.array([r is not None for r in rows], bool)
    for i in np.flatnonzero(ok):
        x[i] = rows[i]
    if cfile is not None:
        with atomic_files(cfile) as (tmp,):
            np.save(tmp, x)
    return x, ok


def _normalise_log(lp: np.ndarray) -> np.ndarray:
    lp = lp - lp.max(1, keepdims=True)
    return lp - np.log(np.exp(lp).sum(1, keepdims=True))


class DescriptorFusion:
    """Per-head descriptor classifiers fused with the network (see module doc).

    Parameters
    ----------
    max_classes : heads with more classes are left to the network alone.  A multiclass
        booster grows one tree per class per round: on MANGO the 39 families made a
        24 MB model that left accuracy unchanged and cost macro-F1 (test 0.743 ->
        0.700), and the 123 product types would cost more still.
    weights : candidate fusion weights, chosen per head on validation log-loss
    holdout : share of the training groups held out for early stopping
    min_gain : a head is fused only when its best weight lowers the validation log-loss
        by at least this share of the network's own (MANGO's fused heads gain 6-11%);
        the same bar holds for a head that takes a fused head's evidence
    propagate : let heads that are not fused directly take the fused heads' evidence
        through the joint label distribution (see the module doc)

    Attributes
    ----------
    heads_ : head -> {"weight", "rounds", "booster", "n_classes"}: the fused heads
    propagated_ : head -> {source head -> {"weight", "joint" (C_head, C_source) array of
        P(source class | head class), "prior" (C_source,) array}}: heads that take a
        fused head's evidence
    report_ : head -> what the fit found (weights, validation log-loss, or why skipped)
    """

    def __init__(self, *, max_classes: int = 20, num_leaves: int = 31,
                 learning_rate: float = 0.05, max_rounds: int = 2000,
                 weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0),
                 holdout: float = 0.1, min_gain: float = 0.01, num_threads: int = 2,
                 seed: int = 0, propagate: bool = True):
        if max_classes < 2:
            raise InputError(f"max_classes must be at least 2; got {max_classes}",
                             field="max_classes", value=max_classes)
        # NaN passed ``w < 0``: a NaN or infinite weight fused into NaN logits
        if not weights or any(not 0 <= w < math.inf for w in weights):
            raise InputError(f"weights must be finite and non-negative; got "
                             f"{list(weights)}",
                             field="weights", value=list(weights))
        if not 0 < holdout < 0.5:
            raise InputError(f"holdout must be in (0, 0.5); got {holdout}",
                             field="holdout", value=holdout)
        # unchecked before: learning_rate 0 or NaN and num_leaves 1 were LightGBM
        # errors inside the attribute stage's last minute, min_gain NaN fused no head
        check_value("num_leaves", num_leaves, int, least=2)
        check_value("learning_rate", learning_rate, float, above=0)
        check_value("max_rounds", max_rounds, int, least=1)
        check_value("min_gain", min_gain, float, least=0)
        check_value("num_threads", num_threads, int, least=1)
        self.max_classes = int(max_classes)
        self.num_leaves = int(num_leaves)
        self.learning_rate = float(learning_rate)
        self.max_rounds = int(max_rounds)
        self.weights = tuple(float(w) for w in weights)
        self.holdout = float(holdout)
        self.min_gain = float(min_gain)
        self.num_threads = int(num_threads)
        self.seed = int(seed)
        self.propagate = bool(propagate)
        self.heads_: dict[str, dict] = {}
        self.propagated_: dict[str, dict] = {}
        self.report_: dict[str, dict] = {}

    def fit(self, x_train: np.ndarray, targets_train: np.ndarray, groups_train,
            x_val: np.ndarray, net_probs_val: dict[str, np.ndarray],
            targets_val: np.ndarray, head_names: Sequence[str],
            n_classes: dict[str, int]) -> "DescriptorFusion":
        """Fit each head's classifier on the training rows and its weight on the
        validation rows.  ``targets_*`` are ``(N, H)`` class indices (-1: no label) in
        ``head_names`` order; ``groups_train`` keeps colour variants of one garment on
        one side of the early-stopping hold-out."""
        import lightgbm as lgb

        x_train = np.asarray(x_train, np.float32)
        x_val = np.asarray(x_val, np.float32)
        if x_train.shape[1] != len(DESCRIPTOR_NAMES) or x_val.shape[1] != len(DESCRIPTOR_NAMES):
            raise InputError(f"descriptor tables must have {len(DESCRIPTOR_NAMES)} columns; "
                             f"got {x_train.shape[1]} and {x_val.shape[1]}", field="descriptors")
        groups = np.asarray([str(g) for g in groups_train])
        uniq = np.unique(groups)
        rng = np.random.default_rng(self.seed)
        held = set(rng.choice(uniq, max(1, round(self.holdout * len(uniq))),
                              replace=False))
        is_held = np.array([g in held for g in groups])
        self.heads_, self.propagated_, self.report_ = {}, {}, {}
        desc_val: dict[str, np.ndarray] = {}    # fused heads' descriptor probabilities
        for j, h in enumerate(head_names):
            c = int(n_classes[h])
            if c > self.max_classes:
                self.report_[h] = {"skipped": f"{c} classes > max_classes {self.max_classes}"}
                continue
            y = targets_train[:, j]
            fit_rows = np.flatnonzero((y >= 0) & ~is_held)
            stop_rows = np.flatnonzero((y >= 0) & is_held)
            yv = targets_val[:, j]
            val_rows = np.flatnonzero(yv >= 0)
            if len(fit_rows) < 20 or not len(stop_rows) or not len(val_rows):
                self.report_[h] = {"skipped": "too few labelled rows"}
                continue
            params = {"objective": "multiclass", "num_class": c,
                      "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                      "min_data_in_leaf": 10, "feature_fraction": 0.5,
                      "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
                      "verbose": -1, "num_threads": self.num_threads, "seed": self.seed,
                      "deterministic": True, "force_row_wise": True}
            booster = lgb.train(
                params, lgb.Dataset(x_train[fit_rows], y[fit_rows]), self.max_rounds,
                valid_sets=[lgb.Dataset(x_train[stop_rows], y[stop_rows])],
                callbacks=[lgb.early_stopping(50, verbose=False)])
            rounds = int(booster.best_iteration or booster.current_iteration())
            pd_val = booster.predict(x_val[val_rows], num_iteration=rounds)
            ln = np.log(np.asarray(net_probs_val[h], float)[val_rows] + 1e-9)
            ld = np.log(pd_val + 1e-9)
            nll = {}
            for w in sorted({0.0, *self.weights}):
                lp = _normalise_log(ln + w * ld)
                nll[w] = float(-lp[np.arange(len(val_rows)), yv[val_rows]].mean())
            best = min(nll, key=lambda w: (nll[w], w))
            if nll[best] > (1 - self.min_gain) * nll[0.0]:
                best = 0.0              # a gain within noise does not earn a second model
            self.report_[h] = {"rounds": rounds, "weight": best,
                               "val_log_loss": {str(k): round(v, 4) for k, v in nll.items()}}
            if best > 0:       # keep the early-stopped rounds only
                booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))
                self.heads_[h] = {"weight": best, "rounds": rounds, "booster": booster,
                                  "n_classes": c}
                desc_val[h] = booster.predict(x_val)
        if self.propagate and self.heads_:
            self._fit_propagation(targets_train, x_val, net_probs_val, targets_val,
                                  list(head_names), n_classes, desc_val)
        return self

    def _fit_propagation(self, targets_train, x_val, net_probs_val, targets_val, head_names,
                         n_classes, desc_val) -> None:
        """Weights of the fused heads' evidence for each head not fused directly
        (module doc), one source head after another, on validation log-loss."""
        col = {h: j for j, h in enumerate(head_names)}
        good = ~np.isnan(x_val).all(1)
        for t in head_names:
            if t in self.heads_ or t not in net_probs_val:
                continue
            yv = targets_val[:, col[t]]
            rows = np.flatnonzero((yv >= 0) & good)
            if not len(rows):
                continue
            base = np.log(np.asarray(net_probs_val[t], float)[rows] + 1e-9)

            def nll(lp):
                lp = _normalise_log(lp)
                return float(-lp[np.arange(len(rows)), yv[rows]].mean())

            start = cur = nll(base)
            chosen: dict[str, dict] = {}
            for src in self.heads_:
                spec = _joint_spec(targets_train[:, col[t]], targets_train[:, col[src]],
                                   int(n_classes[t]), int(n_classes[src]))
                if spec is None:
                    continue
                ev = _evidence(spec, desc_val[src][rows])
                tried = {w: nll(base + w * ev) for w in sorted({0.0, *self.weights})}
                w = min(tried, key=lambda k: (tried[k], k))
                if w > 0 and tried[w] <= (1 - self.min_gain) * cur:
                    chosen[src] = {"weight": w, **spec}
                    base, cur = base + w * ev, tried[w]
            rep = self.report_.setdefault(t, {})
            rep["propagated"] = {src: v["weight"] for src, v in chosen.items()}
            rep["propagation_val_log_loss"] = [round(start, 4), round(cur, 4)]
            if chosen:
                self.propagated_[t] = chosen

    def fuse(self, net_probs: dict[str, np.ndarray], descriptors: np.ndarray
             ) -> dict[str, np.ndarray]:
        """The network's probabilities with the fused heads, and the heads that take
        their evidence, replaced (float32, rows sum to 1).  Rows whose descriptors are
        all NaN (unreadable) keep the network's."""
        x = np.asarray(descriptors, np.float32)
        n = len(next(iter(net_probs.values()))) if net_probs else 0
        if x.ndim != 2 or x.shape != (n, len(DESCRIPTOR_NAMES)):
            raise InputError(f"descriptors must be ({n}, {len(DESCRIPTOR_NAMES)}); got "
                             f"{x.shape}", field="descriptors", value=list(x.shape))
        out = dict(net_probs)
        good = ~np.isnan(x).all(1)
        if not n or not good.any():
            return out
        pdesc = {h: spec["booster"].predict(x[good]) for h, spec in self.heads_.items()}
        for h, spec in self.heads_.items():
            if h not in net_probs:
                continue
            p = np.asarray(net_probs[h], float).copy()
            ld = np.log(pdesc[h] + 1e-9)
            lp = _normalise_log(np.log(p[good] + 1e-9) + spec["weight"] * ld)
            p[good] = np.exp(lp)
            out[h] = p.astype(np.float32)
        for t, sources in self.propagated_.items():
            if t not in net_probs:
                continue
            p = np.asarray(net_probs[t], float).copy()
            lp = np.log(p[good] + 1e-9)
            for src, spec in sources.items():
                lp = lp + spec["weight"] * _evidence(spec, pdesc[src])
            p[good] = np.exp(_normalise_log(lp))
            out[t] = p.astype(np.float32)
        return out

    @property
    def weights_(self) -> dict:
        """What each head takes from the descriptors: a fused head its weight, a head
        that takes fused heads' evidence ``{source head: weight}``."""
        out: dict = {h: s["weight"] for h, s in self.heads_.items()}
        out.update({t: {src: v["weight"] for src, v in srcs.items()}
                    for t, srcs in self.propagated_.items()})
        return out

    # -- persistence ----------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "schema": FUSION_SCHEMA, "descriptor_version": DESCRIPTOR_VERSION,
            "descriptor_side": DESCRIPTOR_SIDE, "descriptor_names": DESCRIPTOR_NAMES,
            "report": self.report_,
            "heads": {h: {"weight": s["weight"], "rounds": s["rounds"],
                          "n_classes": s["n_classes"],
                          "model": s["booster"].model_to_string()}
                      for h, s in self.heads_.items()},
            "propagated": {t: {src: {"weight": v["weight"], "joint": v["joint"].tolist(),
                                     "prior": v["prior"].tolist()}
                               for src, v in srcs.items()}
                           for t, srcs in self.propagated_.items()}})

    @classmethod
    def from_json(cls, text: str, source: str = "fusion") -> "DescriptorFusion":
        import lightgbm as lgb

        try:
            meta = json.loads(text)
        except ValueError as e:   # cut short: an interrupted copy of the bundle
            raise BundleError(f"cannot read {source} ({e}): copy it again or retrain the "
                              "attributes stage") from None
        if meta.get("schema") != FUSION_SCHEMA:
            raise SchemaError(f"{source} is not a descriptor fusion of schema "
                              f"{FUSION_SCHEMA} (found {meta.get('schema')!r})", field="schema")
        if meta.get("descriptor_version") != DESCRIPTOR_VERSION or \
                meta.get("descriptor_names") != DESCRIPTOR_NAMES:
            raise SchemaError(f"{source} was fitted on descriptor version "
                              f"{meta.get('descriptor_version')}, this code measures "
                              f"version {DESCRIPTOR_VERSION}: retrain the attributes stage",
                              field="descriptor_version")
        f = cls()
        f.report_ = meta.get("report", {})
        f.heads_ = {h: {"weight": float(s["weight"]), "rounds": int(s["rounds"]),
                        "n_classes": int(s["n_classes"]),
                        "booster": lgb.Booster(model_str=s["model"])}
                    for h, s in meta["heads"].items()}
        # files from before propagation have no entry: their heads fused directly only
        f.propagated_ = {}
        for t, srcs in meta.get("propagated", {}).items():
            for src, v in srcs.items():
                if src not in f.heads_:
                    raise SchemaError(f"{source}: head {t!r} takes evidence from {src!r}, "
                                      "which is not a fused head", field="propagated")
                c = f.heads_[src]["n_classes"]
                shapes = (np.shape(v.get("joint")), np.shape(v.get("prior")))
                if len(shapes[0]) != 2 or shapes[0][1] != c or shapes[1] != (c,):
                    raise SchemaError(f"{source}: the evidence of {src!r} ({c} classes) for "
                                      f"head {t!r} has tables of shape {shapes}",
                                      field="propagated")
            f.propagated_[t] = {src: {"weight": float(v["weight"]),
                                      "joint": np.asarray(v["joint"], float),
                                      "prior": np.asarray(v["prior"], float)}
                                for src, v in srcs.items()}
        return f


def _joint_spec(target: np.ndarray, source: np.ndarray, n_target: int, n_source: int
                ) -> dict | None:
    """``{"joint": P(source class | target class), "prior": P(source class)}`` from
    the training rows labelled on both heads (add-half smoothed), or None when none is.

    >>> s = _joint_spec(np.array([0, 0, 1]), np.array([1, 1, 0]), 2, 2)
    >>> s["joint"].round(2).tolist(), s["prior"].round(2).tolist()
    ([[0.17, 0.83], [0.75, 0.25]], [0.38, 0.62])
    """
    both = (target >= 0) & (source >= 0)
    if not both.any():
        return None
    counts = np.full((n_target, n_source), 0.5)
    np.add.at(counts, (target[both], source[both]), 1.0)
    prior = np.bincount(source[both], minlength=n_source) + 0.5
    return {"joint": counts / counts.sum(1, keepdims=True), "prior": prior / prior.sum()}


def _evidence(spec: dict, p_source: np.ndarray) -> np.ndarray:
    """``log sum_s P(s | t) p_desc(s) / prior(s)`` for every target class ``t``
    (rows of ``p_source``, the source head's descriptor probabilities), each row
    shifted so its largest value is 0 (renormalisation drops the shift)."""
    ratio = np.asarray(p_source, float) / spec["prior"]
    ratio /= ratio.sum(1, keepdims=True)
    ev = np.log(ratio @ spec["joint"].T + 1e-12)
    return ev - ev.max(1, keepdims=True)
