"""Training of the attribute network, and the pipeline's ``attributes`` stage.

:func:`train_network` is the loop (AdamW or SGD, linear warmup + cosine decay per step,
mixed uniform / square-root class-balanced sampling, masked multi-task cross-entropy
with label smoothing, weight EMA).  :func:`run_stage` trains on a bundle's catalogue
with a seeded split of products grouped by model code, and writes::

    models/attributes.pt            state_dict (weights_only loadable)
    models/attributes.json          network config + taxonomy + training params/history
    models/attributes.fusion.json   descriptor classifiers + fusion weights (``descriptors = true``)
    models/attributes_split.parquet item_id, split (train / val / test)

Stage config (``ctx.stage_config("attributes")``, all optional): ``heads`` (list of
catalogue columns), ``preset``, ``image_size``, ``stem``, ``epochs``, ``batch_size``,
``lr``, ``optimizer``, ``precision``, ``time_budget_s`` (``"none"``: no budget, as a
JSON / YAML null; MANGO's default is 1,460 s), ``eval_every`` (MANGO's default 5),
``num_threads``, ``device``, ``sampling_power``, ``sampling_mix``, ``group_power``
(counts the split's groups), ``group_sep`` (split grouping; default "-" for MANGO,
none otherwise; "" for none), ``cache`` (directory for the decoded-image cache;
default ``<bundle>/cache``), ``regions`` ("auto", "detail" or false), ``region_size``,
``keypoints_csv``, ``descriptors`` (true: fuse full-resolution texture / colour
descriptors with the network).

Descriptor fusion (``descriptors = true``; :mod:`features.attributes.descriptors`):
after the network is trained, every product's full-resolution texture, colour and
silhouette descriptors are measured (cached in the bundle), per-head LightGBM
classifiers are fitted on them on the training products, and each head's fusion
weight is chosen on the validation products' log-loss; the stage's figures and every
later prediction use the fused probabilities (``models/attributes.fusion.json``).

Detail crops (``regions = "detail"``): a garment-centred square cut from each image
at full resolution (:func:`features.attributes.regions.detail_box`), read by a second
small backbone, for catalogues without keypoints: the fabric's texture and the
front's fastening that the letterboxed whole view blurs (knit against jersey,
cardigan against sweater).  The model cuts them itself at prediction.

Keypoint-guided regions (:mod:`features.attributes.regions`): when the heads include
FashionAI tasks and the source ships a FashionAI keypoint CSV (the demo catalogue's
``fashionai/keypoints.csv``, in its ``--data`` folder or ``<bundle>/source``: see
:mod:`features.source_files`), the network gets the neck-crop and geometry
path, trained on those labelled keypoints; the features stage then feeds it the
keypoints it extracts (the trained detector's).  The stage's own val/test figures
use the labelled keypoints (the detector is trained after this stage);
``mixmatch evaluate --attributes`` uses the features stage's when they exist.

Examples
--------
>>> round(lr_at(0.0, warmup=0.1), 3), round(lr_at(0.55, warmup=0.1), 3), lr_at(1.0, 0.1)
(0.0, 0.5, 0.0)
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from features.attributes.data import (augment, class_balanced_weights, colour_heads,
                                      cutmix, group_keys, grouped_split, load_images,
                                      random_window, recolour, to_tensor)
from features.attributes.taxonomy import Taxonomy
from features.exceptions import BundleError, InputError
from features.fashionai.schema import ATTRIBUTE_TASKS
from features.files import read_bundle_file
from features.settings import (ONE_NAME, TIME_BUDGET_WORDS, canonical_settings,
                               check_settings, check_size, check_time_budget,
                               parameter_defaults, parameter_kinds, said_of_stage,
                               spelled, spelled_since)
from features.source_files import ATTRIBUTE_DIR, KEYPOINTS_CSV, build_config, source_file

#: ``keypoints_csv`` stated at the bundle's own source file: for a build on the bundle's
#: own source what the stage reads without it, so recorded as left out (the file's hash
#: is among the inputs whichever way it is found).
KEYPOINTS_DEFAULT = "source/" + KEYPOINTS_CSV

#: Bumped when training changes in a way that should invalidate finished stages.
TRAIN_VERSION = 2
#: The same for the descriptor fusion, part of the stage's inputs only when the stage
#: fuses (``descriptors = true``), so other bundles keep their finished networks.
#: 2: heads not fused directly take the fused heads' evidence.
FUSION_VERSION = 2

#: Neck crop size of the region path (80 px: a ruffled edge, ~1 px in the whole-image
#: view, spans ~3 px; see the crops in benchmarks/demo_perception.py).
REGION_SIZE = (80, 80)
#: Detail crop size of ``regions = "detail"`` (64 px: about the garment centre's
#: native resolution in a 334x239 MANGO packshot; 96 px scored no better on a GPU sweep).
DETAIL_SIZE = (64, 64)
#: Stage config keys that are not AttributeModel parameters, with the kind of value
#: each takes (features.settings; None: any, e.g. ``regions = "auto"`` or ``false``).
_STAGE_ONLY = {"heads": list, "group_sep": None, "cache": str, "regions": None,
               "region_size": list, "keypoints_csv": str, "descriptors": bool}
#: What ``regions`` takes: "auto" (keypoint regions when the source has them; true
#: too), "detail" crops, or none (false, "none", "off").
REGION_MODES = ("auto", "detail", "none", "off", True, False)
#: The modes of :data:`REGION_MODES` that train alike, recorded as one word in the
#: stage's inputs (features.settings.canonical_settings): true is "auto", false and
#: "off" are "none".
REGION_WORDS = {"regions": ((True, "auto"), (False, "none"), ("off", "none"))}
#: AttributeModel parameters the stage sets itself (the seed is the build's).
_SET_BY_STAGE = ("taxonomy", "random_state", "verbose")

#: ``group_sep`` of no grouping (:func:`_group_sep`: the default of every source but
#: MANGO, whose ids group by "-").
NO_GROUPING = ""

#: Catalogue columns tried as heads when the stage config names none.
DEFAULT_HEAD_CANDIDATES = ("subcategory", "product_type", "colour", "material", "pattern")


def lr_at(progress: float, warmup: float) -> float:
    """Learning-rate multiplier: linear warmup over the first ``warmup`` fraction of
    training, then cosine decay to 0 at ``progress == 1``."""
    if progress < warmup:
        return progress / warmup
    p = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * p))


#: Progressive resizing (Tan & Le 2021; FixRes): (progress from, input scale).  Early
#: training at lower resolution costs ~40% of the pixels, and the last phase at full
#: resolution matches what the model sees at test time.
RESIZE_SCHEDULE = ((0.0, 0.6), (0.35, 0.8), (0.7, 1.0))


def resize_scale(progress: float) -> float:
    """Input scale of :data:`RESIZE_SCHEDULE` at ``progress`` (0..1)."""
    scale = 1.0
    for start, s in RESIZE_SCHEDULE:
        if progress >= start:
            scale = s
    return scale


def masked_multitask_loss(logits: dict[str, torch.Tensor], targets: torch.Tensor,
                          maybe: torch.Tensor, taxonomy: Taxonomy,
                          smoothing: float = 0.0,
                          weights: Sequence[float] | None = None) -> torch.Tensor:
    """Sum over heads of the mean cross-entropy over the rows labelled for that head,
    each head's term times its entry of ``weights`` (in the taxonomy's order; 1 each
    when None).

    Rows with target -1 are ignored by that head.  Classes flagged "maybe" for a row
    are removed from its softmax (see :mod:`features.attributes.taxonomy`); label
    smoothing spreads ``smoothing`` over the remaining classes.
    """
    off = taxonomy.offsets()
    total = logits[taxonomy.names[0]].new_zeros(())
    for j, h in enumerate(taxonomy.names):
        t = targets[:, j]
        m = t >= 0
        if not bool(m.any()):
            continue
        lg = logits[h][m].float()                                   # (b, C)
        mm = maybe[m, off[j]:off[j + 1]]                            # (b, C) bool
        lg = lg.masked_fill(mm, float("-inf"))
        logp = F.log_softmax(lg, dim=1)
        nll = -logp.gather(1, t[m][:, None]).squeeze(1)             # (b,)
        allowed = ~mm
        smooth = -torch.where(allowed, logp, torch.zeros_like(logp)).sum(1) / allowed.sum(1)
        term = ((1 - smoothing) * nll + smoothing * smooth).mean()
        total = total + (term if weights is None else float(weights[j]) * term)
    return total


def cutmix_loss(logits: dict[str, torch.Tensor], targets: torch.Tensor, maybe: torch.Tensor,
                perm: torch.Tensor, lam: float, taxonomy: Taxonomy,
                smoothing: float = 0.0,
                weights: Sequence[float] | None = None) -> torch.Tensor:
    """Loss of a CutMix batch (:func:`features.attributes.data.cutmix`): row ``i`` shows
    ``lam`` of its own image and ``1 - lam`` of image ``perm[i]``, so its own labels
    weigh ``lam`` and its partner's ``1 - lam`` (each :func:`masked_multitask_loss`,
    a head's rows unlabelled on either side left out of that side's mean).

    >>> tax = Taxonomy((("colour", ("red", "blue")),))
    >>> logits = {"colour": torch.log(torch.tensor([[0.8, 0.2], [0.3, 0.7]]))}
    >>> t, no = torch.tensor([[0], [1]]), torch.zeros(2, 2, dtype=torch.bool)
    >>> own = -(math.log(0.8) + math.log(0.7)) / 2        # row 0 red, row 1 blue
    >>> partner = -(math.log(0.2) + math.log(0.3)) / 2    # the other way round
    >>> got = cutmix_loss(logits, t, no, torch.tensor([1, 0]), 0.75, tax)
    >>> abs(float(got) - (0.75 * own + 0.25 * partner)) < 1e-6
    True
    """
    return (lam * masked_multitask_loss(logits, targets, maybe, taxonomy, smoothing,
                                        weights)
            + (1 - lam) * masked_multitask_loss(logits, targets[perm], maybe[perm],
                                                taxonomy, smoothing, weights))


def _param_groups(net: torch.nn.Module, weight_decay: float) -> list[dict]:
    # No decay on norms and biases: decaying BN scales only fights the normalisation.
    decay, no_decay = [], []
    for p in net.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


#: The optimizers :func:`make_optimizer` builds (``AttributeModel(optimizer=...)``).
OPTIMIZERS = ("adamw", "sgd")


def make_optimizer(name: str, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """``"adamw"``: AdamW, betas (0.9, 0.999), each group's ``weight_decay`` decoupled
    from the gradient.  ``"sgd"``: SGD with Nesterov momentum 0.9, the decay an L2 term
    of the gradient.  ValueError on any other name (the estimator checks it first).

    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> type(make_optimizer("sgd", [{"params": [p], "weight_decay": 0.0}], 0.1)).__name__
    'SGD'
    """
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; one of {OPTIMIZERS}")


#: Number formats of the training step's forward pass (``AttributeModel(precision=...)``):
#: "float32" throughout, or "bfloat16" autocast: convolutions and matrix products run in
#: bfloat16, and the batch norms and activations after them read their bfloat16
#: outputs; the weights, their gradients, the BatchNorm running statistics, the loss,
#: the optimizer and the EMA stay float32.  Prediction is always float32.
PRECISIONS = ("float32", "bfloat16")


def autocast(precision: str, device: torch.device):
    """The autocast context of ``precision`` (:data:`PRECISIONS`) on ``device``.

    >>> with autocast("bfloat16", torch.device("cpu")):
    ...     y = torch.nn.functional.linear(torch.ones(1, 2), torch.ones(3, 2))
    >>> y.dtype
    torch.bfloat16
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; one of {PRECISIONS}")
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=precision == "bfloat16")


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    # One fused call per kind instead of a kernel per tensor (~300 of them): on a GPU
    # the per-tensor launches cost about as much as the small network's step.
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1.0 - decay)
    torch._foreach_copy_(list(ema.buffers()), list(net.buffers()))


def region_batch(regions, idx, device) -> dict[str, torch.Tensor]:
    """Network keyword inputs (``region``, ``has_region``, ``geometry``) of rows ``idx``
    of a :class:`~features.attributes.regions.RegionInputs` (empty dict for None)."""
    if regions is None:
        return {}
    return {"region": to_tensor(regions.crops[idx]).to(device),
            "has_region": torch.as_tensor(np.asarray(regions.has_crop[idx])).to(device),
            "geometry": torch.as_tensor(np.asarray(regions.geometry[idx],
                                                   np.float32)).to(device)}


@torch.no_grad()
def _val_accuracy(net, x: np.ndarray, targets: np.ndarray, names, batch: int = 128,
                  regions=None) -> dict[str, float]:
    net.eval()
    device = next(net.parameters()).device
    preds = {h: [] for h in names}
    for s in range(0, len(x), batch):
        out = net(to_tensor(x[s:s + batch]).to(device),
                  **region_batch(regions, slice(s, s + batch), device))
        for h in names:
            preds[h].append(out[h].argmax(1).cpu().numpy())
    res = {}
    for j, h in enumerate(names):
        t = targets[:, j]
        m = t != -1
        if m.any():
            res[h] = float((np.concatenate(preds[h])[m] == t[m]).mean())
    return res


def sampling_weights(targets: np.ndarray, power: float, mix: float, groups=None,
                     group_power: float = 0.0) -> np.ndarray:
    """The training sampler's draw probability of each row: a ``mix`` share
    class-balanced (:func:`~features.attributes.data.class_balanced_weights` with
    ``power``), the rest uniform over rows, each row weighed by ``n ** -group_power``
    (``n`` the rows of its group in ``groups``; without groups, or where a key is
    missing, each row is its own).

    >>> t = np.array([[0], [0], [0], [1]])
    >>> sampling_weights(t, 0.5, 0.0).tolist()
    [0.25, 0.25, 0.25, 0.25]
    >>> sampling_weights(t, 0.5, 0.0, ["a", "a", "b", "c"], 1.0).round(4).tolist()
    [0.1667, 0.1667, 0.3333, 0.3333]
    >>> sampling_weights(t, 0.5, 0.0, ["a", "a", None, None], 1.0).round(4).tolist()
    [0.1667, 0.1667, 0.3333, 0.3333]
    """
    bal = class_balanced_weights(targets, power)
    if groups is None or group_power == 0:
        return (1 - mix) / len(targets) + mix * bal / max(bal.sum(), 1e-12)
    codes = pd.factorize(pd.Series(list(groups)))[0]
    lone = codes < 0   # a missing key: a group of its own
    codes[lone] = codes.max(initial=-1) + 1 + np.arange(int(lone.sum()))
    uni = np.bincount(codes)[codes].astype(float) ** -float(group_power)
    return (1 - mix) * uni / uni.sum() + mix * bal / max(bal.sum(), 1e-12)


def _said(rec: dict) -> str:
    return " ".join(f"{h}={a:.3f}" for h, a in rec.get("val_accuracy", {}).items())


def train_network(net: torch.nn.Module, x: np.ndarray, targets: np.ndarray,
                  maybe: np.ndarray, taxonomy: Taxonomy, params: dict[str, Any], *,
                  val: tuple | None = None,
                  log: Callable[[str], None] = lambda m: None,
                  regions=None, groups=None) -> tuple[torch.nn.Module, list[dict]]:
    """Train ``net`` on uint8 images ``x`` (N, H, W, 3) and encoded targets.

    ``regions`` (:class:`~features.attributes.regions.RegionInputs`, row-aligned with
    ``x``) feeds a network built with a region path: crops get the same kind of
    augmentation as the images (drawn independently: a shifted, rescaled crop is
    what an imprecise keypoint gives), geometry gets Gaussian noise of
    ``geometry_noise`` (in normalising-pair units, about a detector's error), and a
    ``region_dropout`` share of rows loses both, so the heads also work without
    keypoints.  ``val`` is ``(images, targets)`` or ``(images, targets, regions)``.
    ``groups`` (row-aligned keys, or None: each row its own) is what the uniform
    draws' ``group_power`` counts images by (:func:`sampling_weights`).

    Returns the network to predict with (the EMA copy when ``ema_decay > 0``) and a
    history of per-epoch dicts (loss, lr, seconds, and val accuracy per head after
    every ``eval_every``-th epoch and the last).
    """
    seed = int(params["random_state"])
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pool = np.flatnonzero((targets >= 0).any(1))
    bs = int(min(params["batch_size"], max(2, len(pool))))
    steps_per_epoch = max(1, math.ceil(len(pool) / bs))
    total_steps = int(params["epochs"]) * steps_per_epoch
    warmup = min(0.3, float(params["warmup_epochs"]) / max(1, int(params["epochs"])))
    budget = params.get("time_budget_s")
    # Sampling: a mixture of uniform and class-balanced draws (see AttributeModel doc).
    w = sampling_weights(targets[pool], float(params["sampling_power"]),
                         float(params["sampling_mix"]),
                         None if groups is None else np.asarray(groups, dtype=object)[pool],
                         float(params.get("group_power", 0.0)))
    w_t = torch.as_tensor(w, dtype=torch.float64)
    device = torch.device(params.get("device") or "cpu")
    net = net.to(device, memory_format=torch.channels_last)
    opt = make_optimizer(params.get("optimizer", "adamw"),
                         _param_groups(net, float(params["weight_decay"])),
                         float(params["lr"]))
    ema = None
    if float(params["ema_decay"]) > 0:
        ema = copy.deepcopy(net).eval()
        for p in ema.parameters():
            p.requires_grad_(False)
    share_mixed = float(params.get("cutmix", 0.0))
    smoothing = float(params["label_smoothing"])
    given = params.get("head_weights") or {}
    head_weights = ([float(given.get(h, 1.0)) for h in taxonomy.names] if given
                    else None)
    tgt_t = torch.as_tensor(targets).to(device)
    colour_cols = torch.tensor(colour_heads(taxonomy.names), dtype=torch.long,
                               device=device)   # the labels recolouring makes wrong
    maybe_t = torch.as_tensor(maybe).to(device)
    history: list[dict] = []
    scoring = val is not None and len(val[0]) > 0
    every = int(params.get("eval_every", 1))
    precision = params.get("precision", "float32")

    def score() -> dict[str, float]:
        return _val_accuracy(ema if ema is not None else net, val[0], val[1],
                             taxonomy.names, regions=val[2] if len(val) > 2 else None)

    t0 = time.perf_counter()
    step = 0
    done = False
    for epoch in range(int(params["epochs"])):
        net.train()
        run_loss, n_b, te = 0.0, 0, time.perf_counter()
        for _ in range(steps_per_epoch):
            progress = step / total_steps
            if budget:
                progress = max(progress, (time.perf_counter() - t0) / float(budget))
            if progress >= 1.0:
                done = True
                break
            lr = float(params["lr"]) * lr_at(progress, warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            draw = torch.multinomial(w_t, bs, replacement=True, generator=gen).numpy()
            idx = np.sort(pool[draw])
            idx_t = torch.as_tensor(idx, device=device)
            xb = to_tensor(x[idx]).to(device)                          # (B, 3, H, W)
            j = float(params.get("jitter", 0.1))
            if params["augment"]:
                xb = augment(xb, gen, brightness=j, contrast=j,
                             erase=float(params.get("erase", 0.0)))
            tgt_b = tgt_t[idx_t]
            if float(params.get("recolour", 0.0)) > 0:
                xb, moved = recolour(xb, gen, float(params["recolour"]))
                if len(colour_cols) and bool(moved.any()):   # those labels no longer hold
                    tgt_b = tgt_b.clone()
                    tgt_b[moved.nonzero().to(device), colour_cols] = -1
            if progress < float(params.get("window_phase", 0.0)):
                xb = random_window(xb, gen)
            scale = resize_scale(progress) if params.get("progressive_resize") else 1.0
            if scale < 1.0:
                xb = F.interpolate(xb, scale_factor=scale, mode="bilinear", antialias=True,
                                   align_corners=False, recompute_scale_factor=False
                                   ).contiguous(memory_format=torch.channels_last)
            # drawn only when asked for: a draw per step would shift every later
            # augmentation of the seed's stream, and so every network trained before
            mixed = bool(share_mixed > 0 and torch.rand((), generator=gen) < share_mixed)
            if mixed:
                xb, perm, lam = cutmix(xb, gen)
            extra = region_batch(regions, idx, device)
            if extra:
                if params["augment"]:
                    extra["region"] = augment(extra["region"], gen, brightness=j,
                                              contrast=j, max_scale=0.12, max_shift=0.08)
                keep = (torch.rand(len(idx), generator=gen)
                        >= float(params.get("region_dropout", 0.1))).to(device)
                if mixed:   # a crop of one garment of two: the heads answer without
                    keep[:] = False
                extra["has_region"] = extra["has_region"] & keep
                noise = torch.randn(extra["geometry"].shape, generator=gen).to(device)
                g = extra["geometry"].view(len(idx), -1, 3)
                g = torch.cat([g[..., :2] + float(params.get("geometry_noise", 0.03))
                               * noise.view_as(g)[..., :2] * g[..., 2:], g[..., 2:]], -1)
                extra["geometry"] = g.view(len(idx), -1) * keep[:, None].to(g.dtype)
            with autocast(precision, device):
                logits = net(xb, **extra)
            logits = {h: v.float() for h, v in logits.items()}
            if mixed:
                loss = cutmix_loss(logits, tgt_b, maybe_t[idx_t], perm.to(device),
                                   lam, taxonomy, smoothing, head_weights)
            else:
                loss = masked_multitask_loss(logits, tgt_b, maybe_t[idx_t],
                                             taxonomy, smoothing, head_weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                # The averaging horizon (1 / (1 - decay) steps) is capped at a tenth of
                # the run's expected length: a fixed 0.998 on a short run averages in
                # the untrained early weights (seen on a 1,200-image demo: 250 steps).
                expected = (step + 1) / max(progress, 1e-9) if step else total_steps
                d = min(float(params["ema_decay"]), (1.0 + step) / (10.0 + step),
                        1.0 - 10.0 / max(expected, 10.0))
                _ema_update(ema, net, d)
            run_loss += float(loss.detach())
            n_b += 1
            step += 1
        if n_b == 0:   # the budget ran out at the last epoch's end: that one is last
            if history and "val_accuracy" not in history[-1] and scoring:
                history[-1]["val_accuracy"] = score()
                log(f"  epoch {history[-1]['epoch']} {_said(history[-1])}")
            break
        rec = {"epoch": epoch + 1, "loss": run_loss / n_b, "lr": lr, "steps": step,
               "seconds": round(time.perf_counter() - t0, 1)}
        last = done or epoch + 1 == int(params["epochs"])
        if scoring and (last or (epoch + 1) % every == 0):
            rec["val_accuracy"] = score()
        history.append(rec)
        log(f"  epoch {epoch + 1}/{params['epochs']} loss {rec['loss']:.4f} lr {lr:.2e} "
            f"{time.perf_counter() - te:.0f}s {_said(rec)}")
        if done:
            break
    out = ema if ema is not None else net
    # Predictions run on the CPU (serving has no accelerator), whatever trained it.
    return out.to("cpu", memory_format=torch.contiguous_format).eval(), history


# -- pipeline stage ------------------------------------------------------------------------

def _default_heads(catalog: pd.DataFrame) -> list[str]:
    cols = [c for c in DEFAULT_HEAD_CANDIDATES if c in catalog.columns]
    cols += [c for c in ATTRIBUTE_TASKS if c in catalog.columns]
    keep = []
    for c in cols:
        v = catalog[c].dropna().astype(str).str.strip()
        if (v != "").sum() and v[v != ""].nunique() >= 2:
            keep.append(c)
    return keep


def _stage_settings(ctx) -> dict[str, Any]:
    """The stage's ``[stages.attributes]`` table; InputError naming a key that is
    neither an AttributeModel parameter nor one of :data:`_STAGE_ONLY` (it was a
    TypeError traceback from the constructor), or a value of the wrong kind."""
    from features.attributes.estimator import AttributeModel

    kinds = {**parameter_kinds(AttributeModel, leave_out=_SET_BY_STAGE), **_STAGE_ONLY,
             "time_budget_s": None}   # a number or "none": check_time_budget
    cfg = check_time_budget("attributes", check_settings(
        "attributes", ctx.stage_config("attributes"), kinds))
    # a misspelt mode (regions = "detial") trained the keypoint regions ("auto") silently
    regions = cfg.get("regions", "auto")
    if not any(regions is m if isinstance(m, bool) else regions == m for m in REGION_MODES):
        raise InputError(f"[stages.attributes] unknown regions {regions!r}",
                         field="stages.attributes.regions", value=regions,
                         allowed=["auto", "detail", "none", "off", "true", "false"])
    _check_stage_only(cfg)
    return cfg


#: Smallest region crop side: the crops the tests train on are 8 to 32 px.
MIN_REGION_SIZE = 8


def _check_stage_only(cfg: dict[str, Any]) -> None:
    """InputError naming a stage-only setting whose contents the stage cannot use,
    before the first stage: each was a traceback (or a silent default) once the stage
    had started, after the ingest and split stages and the images' decoding
    (``heads = [1]`` a KeyError, ``region_size = [-1, 5]`` a numpy ValueError,
    ``group_sep = 5`` a TypeError; ``heads = []`` trained the default heads, an
    empty ``cache`` wrote the decoded images into the working directory). Whether the
    heads are catalogue columns is known only once the catalogue is ingested:
    :func:`check_heads`."""
    heads = cfg.get("heads")
    if heads is not None and (not heads or not all(isinstance(h, str) and h.strip()
                                                   for h in heads)
                              or len(set(heads)) != len(heads)):
        raise InputError(f"[stages.attributes] heads must be a list of distinct catalogue "
                         f"column names (leave it out for the default heads), got {heads!r}",
                         field="stages.attributes.heads", value=heads)
    if "group_sep" in cfg and not isinstance(cfg["group_sep"], str):
        raise InputError(f"[stages.attributes] group_sep must be a string (the separator "
                         f"after an item id's group, \"-\" for MANGO's model code; \"\" for "
                         f"none), got {cfg['group_sep']!r}",
                         field="stages.attributes.group_sep", value=cfg["group_sep"])
    if "region_size" in cfg:
        with said_of_stage("attributes"):
            check_size("region_size", cfg["region_size"], least=MIN_REGION_SIZE)
    for key in ("cache", "keypoints_csv"):
        if cfg.get(key) == "":
            raise InputError(f"[stages.attributes] {key} must name a path (leave it out "
                             f"for the default), got ''", field=f"stages.attributes.{key}",
                             value="")


def check_heads(catalog_columns, heads) -> None:
    """InputError naming a ``heads`` entry that is not a column of the bundle's
    catalogue, with the columns it has (it was a pandas KeyError traceback after the
    images of the whole catalogue had been decoded)."""
    unknown = [h for h in heads if h not in catalog_columns]
    if unknown:
        allowed = [c for c in catalog_columns if c not in _NOT_HEADS]
        raise InputError(f"[stages.attributes] heads names {unknown[0]!r}, not a column of "
                         f"the catalogue", field="stages.attributes.heads",
                         value=unknown[0], allowed=allowed)


#: Catalogue columns that are no labels to train a head on.
_NOT_HEADS = ("item_id", "image_path", "image_ok")


def _group_sep(ctx) -> str | None:
    """The separator the split groups item ids by: the stage's ``group_sep``, else
    "-" for MANGO (its ids are ``MODEL-COLOUR``) and none for other sources."""
    return ctx.stage_config("attributes").get("group_sep",
                                              "-" if ctx.source == "mango" else None)


def check_group_sep(item_ids, group_sep: str) -> None:
    """InputError when no item id contains ``group_sep``: the split then grouped
    nothing, without a word, so colour variants of one garment fell on both sides of
    it and the test accuracy the manifest records was inflated by near-duplicates.

    Refused rather than logged: the setting exists only to group, a user who wants no
    grouping writes ``""``, and a warning among a half-hour build's log lines would
    leave the inflated figures in the bundle. Ids without it are allowed (each is its
    own group), so one catalogue may mix grouped and single items.

    >>> check_group_sep(["41085800-02", "41085800-05"], "-")
    >>> check_group_sep(["41085800-02"], "_")
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: [stages.attributes] group_sep '_' is in none of the catalogue's item ids (e.g. '41085800-02'), so the split would group nothing and variants of one item could fall on both sides of it; set it to the separator after the group part of the ids, or "" for no grouping
    """
    ids = pd.Series(item_ids, dtype=object).astype(str)
    if len(ids) and not ids.str.contains(group_sep, regex=False).any():
        examples = ", ".join(repr(i) for i in ids.head(3))
        raise InputError(f"[stages.attributes] group_sep {group_sep!r} is in none of the "
                         f"catalogue's item ids (e.g. {examples}), so the split would group "
                         f"nothing and variants of one item could fall on both sides of it; "
                         f"set it to the separator after the group part of the ids, or \"\" "
                         f"for no grouping", field="stages.attributes.group_sep",
                         value=group_sep)


def _stage_base(quick: bool) -> dict[str, Any]:
    """The AttributeModel parameters the stage trains with where its table is silent."""
    return ({"preset": "tiny", "image_size": [64, 48], "epochs": 2, "batch_size": 32,
             "num_threads": 1, "embed_dim": 64, "region_preset": "tiny", "region_dim": 32}
            if quick else
            {"preset": "base", "image_size": [160, 112], "epochs": 20, "batch_size": 64,
             "num_threads": 2, "embed_dim": 256})


def _region_size(regions: Any, quick: bool) -> tuple[int, int]:
    """The crop size of ``regions`` where ``region_size`` is left out."""
    return DETAIL_SIZE if regions == "detail" else (32, 32) if quick else REGION_SIZE


def _stage_params(ctx) -> dict[str, Any]:
    cfg = _stage_settings(ctx)
    base = _stage_base(bool(ctx.config.get("quick")))
    base.update({k: v for k, v in cfg.items() if k not in _STAGE_ONLY})
    base["random_state"] = int(ctx.config.get("seed", 0) or 0)
    return base


def checked_params(ctx) -> dict[str, Any]:
    """The stage's AttributeModel parameters, checked as ``fit`` would check them, so
    that a bad ``[stages.attributes]`` setting is refused (InputError naming it) by
    ``stage_inputs``, before the stage starts and leaves the bundle marked: by name
    and kind (:func:`_stage_settings`), then by range."""
    from features.attributes.estimator import AttributeModel

    params = _stage_params(ctx)
    with said_of_stage("attributes"):     # "epochs must be a whole number >= 1": say where
        AttributeModel(**params)._validate_params()
    return params


#: Checked before any stage of a build starts (recommender.pipeline).
check_config = checked_params


#: The image root says where the images are; their content is in ``images``
#: (:meth:`recommender.bundle.Bundle.catalog_images`): moved or copied elsewhere with
#: the same bytes, the stage is not run again (recommender.pipeline.data_moved).
LOCATION_INPUTS = ("image_root",)
#: It reads the images: refused while they are not where the bundle says (its image
#: folder moved away or unmounted), not run on none
#: (recommender.pipeline.images_refusal).
READS_IMAGES = True


def stage_inputs(ctx) -> dict:
    from features.files import file_hash

    checked_params(ctx)   # refused here, before the stage starts
    cat = ctx.bundle.path("catalog.parquet")
    heads = ctx.stage_config("attributes").get("heads")
    if heads and cat.is_file():   # the catalogue's columns, once ingested
        import pyarrow.parquet as pq

        check_heads(read_bundle_file(cat, pq.read_schema).names, heads)
    weights = ctx.stage_config("attributes").get("head_weights")
    if weights and cat.is_file():   # the heads are known once the catalogue is ingested
        from features.attributes.estimator import check_head_weights

        trained = list(heads) if heads else catalogue_default_heads(ctx.bundle)
        try:
            check_head_weights(weights, trained)
        except InputError as exc:   # its message names the allowed heads already
            raise InputError(f"[stages.attributes] {exc}", field="stages.attributes."
                             "head_weights", value=exc.value) from exc
    group_sep = _group_sep(ctx)
    if group_sep and cat.is_file():   # the catalogue's ids, once ingested
        check_group_sep(read_bundle_file(cat, lambda p: pd.read_parquet(
            p, columns=["item_id"]))["item_id"], group_sep)
    kcsv = label_keypoints_csv(ctx.bundle, ctx.config)
    deps = {"catalog": file_hash(cat) if cat.is_file() else None,
            "image_root": str(ctx.bundle.image_root), "images": ctx.bundle.catalog_images(),
            "quick": bool(ctx.config.get("quick")),
            "seed": ctx.config.get("seed", 0), "stage": recorded_settings(ctx),
            "keypoints": file_hash(kcsv) if kcsv.is_file() else None,
            "version": TRAIN_VERSION}
    if ctx.stage_config("attributes").get("descriptors", False):
        deps["fusion_version"] = FUSION_VERSION
    return deps


def recorded_settings(ctx) -> dict[str, Any]:
    """The stage's ``[stages.attributes]`` table as its inputs record it: one spelling
    for each setting (:func:`features.settings.canonical_settings`), so that
    ``label_smoothing = 0`` or ``0.0``, ``time_budget_s = "none"`` or null,
    ``regions = false`` or ``"off"``, and a key stated at the value the stage uses
    without it (``dropout = 0.2``, ``regions = "auto"``, ``preset = "base"``, the
    heads it picks from the catalogue in their order, ``group_sep = ""`` where the
    source groups nothing) do not retrain the network. The source's own settings
    (MANGO's recipe) are recorded whatever their value, as before, so its bundles
    stay up to date.

    Heads in another order are another network (each head's layer is drawn from the
    seeded generator in that order, and the taxonomy keeps it), so they are recorded.
    ``group_sep = ""`` and no ``group_sep`` group nothing alike
    (:func:`features.attributes.data.group_keys`); for MANGO, whose ids are grouped
    by ``"-"``, ``""`` is another split.

    A table already spelled so is recorded as it is (``stage_inputs`` recorded the
    table as written before).
    """
    from features.attributes.estimator import AttributeModel

    cfg = ctx.stage_config("attributes")
    quick = bool(ctx.config.get("quick"))
    regions = spelled("regions", cfg.get("regions", "auto"), REGION_WORDS)
    defaults = {**parameter_defaults(AttributeModel, leave_out=_SET_BY_STAGE),
                **_stage_base(quick),
                "group_sep": ("-" if ctx.source == "mango" else
                              NO_GROUPING if spelled_since(ONE_NAME) else None),
                "cache": str(ctx.bundle.path("cache")), "regions": "auto",
                "region_size": _region_size(regions, quick),
                "keypoints_csv": KEYPOINTS_DEFAULT, "descriptors": False}
    if "heads" in cfg and spelled_since(ONE_NAME):
        heads = catalogue_default_heads(ctx.bundle)
        if heads is not None:   # before the ingest: recorded as written
            defaults["heads"] = heads
    return canonical_settings(cfg, defaults, keep=ctx.source_defaults("attributes"),
                              words={**TIME_BUDGET_WORDS, **REGION_WORDS})


def catalogue_default_heads(bundle) -> list[str] | None:
    """The heads the stage trains on ``bundle``'s catalogue where ``heads`` is left
    out (:func:`_default_heads`), read from the columns that may be heads only; None
    when the catalogue is not ingested yet."""
    import pyarrow.parquet as pq

    path = bundle.path("catalog.parquet")
    if not path.is_file():
        return None
    names = read_bundle_file(path, pq.read_schema).names
    columns = [c for c in (*DEFAULT_HEAD_CANDIDATES, *ATTRIBUTE_TASKS) if c in names]
    return _default_heads(read_bundle_file(path, lambda p: pd.read_parquet(
        p, columns=columns)))


def label_keypoints_csv(bundle, config: dict | None = None) -> Path:
    """The labelled keypoints the region path trains on: ``[stages.attributes]
    keypoints_csv`` (relative to the bundle) when set, else the source's FashionAI
    keypoint CSV (:func:`features.source_files.source_file`; it may be absent).
    ``config`` is the build's (None: the one the bundle's manifest recorded)."""
    cfg = build_config(bundle, config)
    setting = ((cfg.get("stages") or {}).get("attributes") or {}).get("keypoints_csv")
    return source_file(bundle, cfg, KEYPOINTS_CSV, setting)


def _attach_fashionai_labels(bundle, cat: pd.DataFrame, heads: list[str],
                             config: dict | None = None) -> None:
    """Replace FashionAI task columns by the challenge's y/m/n label strings when the
    source ships the label files (``fashionai/attributes/`` in the source's folder:
    :func:`features.source_files.source_dir`), so "maybe" classes are known to training
    and to the mAP (the catalogue columns hold only the ``y`` class)."""
    from features.fashionai.io import read_attribute_dir

    label_dir = source_file(bundle, config, ATTRIBUTE_DIR)
    tasks = [h for h in heads if h in ATTRIBUTE_TASKS]
    if not tasks or not label_dir.is_dir() or not any(label_dir.glob("*.csv")):
        return
    labels = read_attribute_dir(label_dir)
    labels["item_id"] = labels["image_path"].map(lambda p: Path(p).stem)
    for task in tasks:
        lab = labels[labels["task"] == task].drop_duplicates("item_id", keep="last")
        by_id = dict(zip(lab["item_id"], lab["labels"]))
        ids = cat["item_id"].astype(str)
        has = ids.isin(by_id.keys())
        cat[task] = cat[task].astype(object)
        cat.loc[has, task] = ids[has].map(by_id)


def load_training_table(bundle, heads: list[str] | None = None, config: dict | None = None
                        ) -> tuple[pd.DataFrame, list[str]]:
    """Catalogue rows with a usable image, their absolute image paths and the heads.

    ``config``: the build's (None: the one the bundle's manifest recorded), which says
    where the source's FashionAI label files are."""
    path = bundle.path("catalog.parquet")
    if not path.is_file():
        raise BundleError(f"{path} missing: run the ingest stage first")
    cat = read_bundle_file(path, pd.read_parquet)   # named when cut short
    if heads:
        check_heads(list(cat.columns), heads)
    heads = list(heads) if heads else _default_heads(cat)
    if not heads:
        raise InputError("the catalogue has no labelled column to train attribute heads on "
                         f"(looked for {', '.join(DEFAULT_HEAD_CANDIDATES)} and the FashionAI"
                         " task columns)", field="heads")
    ok = cat["image_path"].fillna("").astype(str).str.len() > 0
    if "image_ok" in cat.columns:
        ok &= cat["image_ok"].fillna(False).astype(bool)
    cat = cat[ok].reset_index(drop=True)
    _attach_fashionai_labels(bundle, cat, heads, config)
    root = bundle.image_root
    cat["abs_path"] = [str((root / p) if root is not None and not str(p).startswith("/") else p)
                       for p in cat["image_path"].astype(str)]
    return cat, heads


def keypoints_by_item(csv: Path, item_ids) -> tuple[np.ndarray, np.ndarray] | None:
    """``(xy (N, 24, 2), vis (N, 24))`` of ``item_ids`` from a FashionAI keypoint CSV
    whose image file names are the item ids (vis -1 for items it lacks); None when
    the file does not exist."""
    from features.fashionai.io import keypoints_to_arrays, read_keypoints_csv

    if not Path(csv).is_file():
        return None
    df = read_keypoints_csv(csv)
    xy, vis = keypoints_to_arrays(df)
    row = {Path(str(p)).stem: i for i, p in enumerate(df["image_id"])}
    ids = [str(i) for i in item_ids]
    out_xy = np.full((len(ids), 24, 2), -1.0)
    out_vis = np.full((len(ids), 24), -1)
    for k, it in enumerate(ids):
        if it in row:
            out_xy[k], out_vis[k] = xy[row[it]], vis[row[it]]
    return out_xy, out_vis


def _stage_regions(ctx, cat: pd.DataFrame, heads: list[str]):
    """(xy, vis) label keypoints for the region path, or None when it is off."""
    cfg = ctx.stage_config("attributes")
    if cfg.get("regions", "auto") in (False, "none", "off") or \
            not any(h in ATTRIBUTE_TASKS for h in heads):
        return None
    kp = keypoints_by_item(label_keypoints_csv(ctx.bundle, ctx.config), cat["item_id"])
    if kp is None or not (kp[1] >= 0).any():
        return None
    return kp


def _fit_fusion(ctx, model, cat: pd.DataFrame, labels: pd.DataFrame, images, reg: dict,
                tr: np.ndarray, va: np.ndarray, groups: pd.Series, cache: str,
                workers: int) -> np.ndarray:
    """Measure every product's full-resolution descriptors and fuse them with the
    fitted network (``descriptors = true``; see features.attributes.descriptors).
    ``groups`` are the split's group keys, row-aligned with ``cat``.  Returns the
    descriptor table, row-aligned with ``cat``."""
    from features.attributes.descriptors import descriptor_table

    t0 = time.perf_counter()
    ctx.log(f"[attributes] measuring full-resolution descriptors of {len(cat)} images ...")
    desc, _ = descriptor_table(cat["abs_path"].tolist(), workers=max(1, workers),
                               cache=cache, progress=True)
    t1 = time.perf_counter()
    net_val = model.predict_proba(np.asarray(images[va]), reg.get("val"))
    model.fit_fusion(desc[tr], labels.iloc[tr], groups.iloc[tr].tolist(), desc[va],
                     labels.iloc[va], net_val)
    for h, r in model.fusion_.report_.items():
        msg = (f"skipped ({r['skipped']})" if "skipped" in r else
               f"{r['rounds']} rounds, weight {r['weight']} (validation log-loss "
               f"{r['val_log_loss']['0.0']:.4f} -> {r['val_log_loss'][str(r['weight'])]:.4f})")
        if "propagated" in r:
            before, after = r["propagation_val_log_loss"]
            msg += (f"; evidence of fused heads {r['propagated'] or 'none'} (validation "
                    f"log-loss {before:.4f} -> {after:.4f})")
        ctx.log(f"[attributes] descriptor fusion {h}: " + msg)
    ctx.log(f"[attributes] descriptors {t1 - t0:.0f} s, fusion {time.perf_counter() - t1:.0f} s")
    return desc


def run_stage(ctx) -> dict:
    """Train the attribute network on the bundle's catalogue (see module doc)."""
    from features.attributes.regions import region_inputs
    from features.attributes.estimator import AttributeModel
    from features.attributes.evaluate import grouped_head_metrics

    t0 = time.perf_counter()
    cfg = ctx.stage_config("attributes")
    cat, heads = load_training_table(ctx.bundle, cfg.get("heads"), ctx.config)
    seed = int(ctx.config.get("seed", 0) or 0)
    group_sep = _group_sep(ctx)
    split = grouped_split(cat["item_id"], seed=seed, group_sep=group_sep)
    cat["split"] = split.to_numpy()
    params = _stage_params(ctx)
    size = tuple(params["image_size"])
    cache = cfg.get("cache", str(ctx.bundle.path("cache")))
    ctx.log(f"[attributes] decoding {len(cat)} images at {size[0]}x{size[1]}"
            f"{', cut to the garment' if params.get('crop') == 'garment' else ''} (cached in "
            f"{cache}) ...")
    crop = params.get("crop", "frame")
    images, ok = load_images(cat["abs_path"].tolist(), size, cache=cache, progress=True,
                             crop=crop, workers=int(params.get("num_threads", 1)))
    labels = cat[heads].copy()
    taxonomy = Taxonomy.from_labels(labels, heads)
    tr = np.flatnonzero((cat["split"] == "train").to_numpy() & ok)
    va = np.flatnonzero((cat["split"] == "val").to_numpy() & ok)
    te = np.flatnonzero((cat["split"] == "test").to_numpy() & ok)
    ctx.log(f"[attributes] heads {heads}; train/val/test = {len(tr)}/{len(va)}/{len(te)}")
    kp = _stage_regions(ctx, cat, heads)
    reg = {}
    regions_used = "label keypoints"
    if cfg.get("regions") == "detail":
        from features.attributes.regions import detail_inputs

        rsize = tuple(int(v) for v in cfg.get("region_size", _region_size(
            "detail", bool(ctx.config.get("quick")))))
        paths = cat["abs_path"].tolist()
        for name, idx in (("train", tr), ("val", va), ("test", te)):
            reg[name] = detail_inputs([paths[i] for i in idx], rsize, cache=cache)
        regions_used = "detail crops"
        ctx.log(f"[attributes] detail crops {rsize[0]}x{rsize[1]}: "
                f"{int(reg['train'].has_crop.sum())} of {len(tr)} training images")
    elif kp is not None:
        rsize = tuple(int(v) for v in cfg.get("region_size", _region_size(
            "auto", bool(ctx.config.get("quick")))))
        paths = cat["abs_path"].tolist()
        for name, idx in (("train", tr), ("val", va), ("test", te)):
            reg[name] = region_inputs([paths[i] for i in idx], kp[0][idx], kp[1][idx], rsize)
        ctx.log(f"[attributes] keypoint-guided neck crops {rsize[0]}x{rsize[1]}: "
                f"{int(reg['train'].has_crop.sum())} of {len(tr)} training images")
    model = AttributeModel(taxonomy, verbose=ctx.log, **params)
    groups = group_keys(cat["item_id"], group_sep)
    model.fit(np.asarray(images[tr]), labels.iloc[tr],
              eval_set=(np.asarray(images[va]), labels.iloc[va], reg.get("val")),
              regions=reg.get("train"),
              groups=groups.iloc[tr].tolist())
    metrics: dict[str, Any] = {"heads": heads, "n_train": int(len(tr)), "n_val": int(len(va)),
                               "n_test": int(len(te)), "epochs": len(model.history_),
                               "regions": (regions_used if reg else "none")}
    desc = None
    if cfg.get("descriptors", False) and len(va):
        desc = _fit_fusion(ctx, model, cat, labels, images, reg, tr, va, groups, cache,
                           int(params.get("num_threads", 1)))
        metrics["descriptor_fusion"] = model.fusion_.report_
    for name, idx in (("val", va), ("test", te)):
        if len(idx):
            probs = model.predict_proba(np.asarray(images[idx]), reg.get(name),
                                        descriptors=None if desc is None else desc[idx])
            targets, maybe = taxonomy.encode(labels.iloc[idx].reset_index(drop=True),
                                             unknown="keep")
            metrics[name] = grouped_head_metrics(taxonomy, probs, targets, maybe,
                                                 cat.iloc[idx], cat.iloc[tr])
    out_dir = ctx.bundle.path("models")
    model.save(out_dir, "attributes")
    split_df = pd.DataFrame({"item_id": cat["item_id"].astype(str), "split": cat["split"]})
    split_df.to_parquet(out_dir / "attributes_split.parquet", index=False)
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    for name in ("val", "test"):
        for h, v in metrics.get(name, {}).get("heads", {}).items():
            raw = metrics[name].get("per_image", {}).get("heads", {}).get(h)
            note = (f" (per image {raw['accuracy']:.3f} / {raw['macro_f1']:.3f}; pooled over "
                    f"colour variants)") if raw and h in metrics[name]["pooled_heads"] else ""
            ctx.log(f"[attributes] {name} {h}: accuracy {v['accuracy']:.3f} "
                    f"macro-F1 {v['macro_f1']:.3f} (n={v['n']}){note}")
    outputs = ["models/attributes.pt", "models/attributes.json",
               "models/attributes_split.parquet"]
    if model.fused_heads:
        outputs.append("models/attributes.fusion.json")
    return {"outputs": outputs, "metrics": metrics}
