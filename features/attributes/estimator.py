"""AttributeModel: the scikit-learn-style wrapper around :class:`AttributeNet`.

``__init__`` stores arguments unchanged; :meth:`AttributeModel.fit` validates, builds
the taxonomy and network and trains (the loop lives in
:mod:`features.attributes.train`); fitted attributes end in ``_``; an unfitted model
raises :class:`~features.exceptions.NotFittedError`.  Artifacts are a ``state_dict``
(``<name>.pt``, loaded with ``weights_only=True``) and a JSON file with the network
config, the taxonomy, the preprocessing and a schema number checked on load.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> imgs = rng.integers(0, 255, (8, 24, 16, 3), dtype=np.uint8)
>>> labels = pd.DataFrame({"colour": ["a", "b"] * 4})
>>> m = AttributeModel(preset="tiny", image_size=(24, 16), embed_dim=64,
...                    epochs=1).fit(imgs, labels)
>>> m.predict_proba(imgs)["colour"].shape, m.embed(imgs).shape
((8, 2), (8, 64))
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from features.attributes.data import as_image_array, check_crop, to_tensor, zoom
from features.attributes.model import (POOLS, PRESETS, STEMS, AttributeNet,
                                       AttributeNetConfig, read_model_json,
                                       read_state_dict)
from features.attributes.regions import (GEOMETRY_DIM, RegionInputs, detail_inputs,
                                         region_inputs)
from features.attributes.taxonomy import Taxonomy
from features.attributes.train import OPTIMIZERS, PRECISIONS, train_network
from features.exceptions import BundleError, InputError, NotFittedError, SchemaError
from features.settings import check_size, check_value

MODEL_SCHEMA = 1


def check_head_weights(weights, heads: Sequence[str] | None = None) -> None:
    """Refuse ``head_weights`` (:class:`AttributeModel`) that is not a table of numbers
    >= 0, or (given the network's ``heads``) names a head it does not have or leaves
    every head at weight 0.

    >>> check_head_weights({"colour": 2.0}, ["colour", "fabric"])
    >>> check_head_weights({"color": 2.0}, ["colour", "fabric"])
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: head_weights names 'color', which is not a head of this network (allowed: colour, fabric)
    """
    if weights is None:
        return
    if not isinstance(weights, dict):
        raise InputError(f"head_weights must be a table of head -> weight, got {weights!r}",
                         field="head_weights", value=weights)
    for h, v in weights.items():
        check_value(f"head_weights.{h}", v, float, least=0)
    if heads is None:
        return
    unknown = [h for h in weights if h not in heads]
    if unknown:
        raise InputError(f"head_weights names {unknown[0]!r}, which is not a head of this "
                         f"network", field="head_weights", value=unknown[0],
                         allowed=list(heads))
    if not any(float(weights.get(h, 1.0)) > 0 for h in heads):
        raise InputError("head_weights leaves every head at weight 0: nothing would train",
                         field="head_weights", value=weights)


class AttributeModel:
    """Multi-task attribute classifier whose penultimate layer is a visual embedding.

    Parameters
    ----------
    taxonomy : Taxonomy, optional
        Heads and classes.  ``None``: built in :meth:`fit` from the label columns.
    preset : {"base", "small", "resnet18", "resnet10", "tiny"}
        Backbone (see :data:`features.attributes.model.PRESETS`).
    image_size : (int, int)
        Network input (height, width); images are letterboxed to it.
    stem : {"conv", "space_to_depth"}
        How the network's first layer reads the image
        (:data:`features.attributes.model.STEMS`): "space_to_depth" folds 2x2 pixel
        blocks into channels first, so an ``image_size`` twice as large in each side
        costs the network's body what the "conv" stem's costs (the stem and the
        augmentation of four times the pixels come on top).
    pool : {"avgmax", "parts"}
        How the network pools its last feature map
        (:data:`features.attributes.model.POOLS`): "parts" adds the averages of the
        centre strip, the flanks, the top and the bottom of the garment's map.
    crop : {"frame", "garment"}
        What is letterboxed: the whole frame, or the garment's box from its mask
        (:func:`features.attributes.data.garment_box`; the whole frame where the mask
        is doubtful), so that the garment gets more of the network's pixels.  Arrays
        already at ``image_size`` are taken as framed (by
        :func:`~features.attributes.data.load_images` with the same ``crop``); paths
        and other arrays are framed here.
    embed_dim : int
        Embedding size (penultimate layer).
    epochs, batch_size, lr, weight_decay, warmup_epochs : training schedule
        Linear warmup then cosine decay to zero, stepped per batch.
    optimizer : {"adamw", "sgd"}
        AdamW (decoupled ``weight_decay``), or SGD with Nesterov momentum 0.9 and
        ``weight_decay`` as an L2 term of the gradient (the usual setting is then
        ``lr`` about 0.1 and ``weight_decay`` about 5e-4).  Norms and biases are
        never decayed.
    precision : {"float32", "bfloat16"}
        Number format of the training step's forward pass
        (:data:`features.attributes.train.PRECISIONS`): "bfloat16" autocasts the
        convolutions and matrix products; the weights, the optimizer and the EMA stay
        float32.  On a CPU with AVX512-BF16 (an AMD EPYC of 2026) the dense convs of
        the "resnet" presets step 1.5-1.7x faster in it; the depthwise convs of "small"
        step slower.  Prediction is float32 either way.
    label_smoothing : float
        Spread over the classes allowed for the row (not the ``m`` ones).
    sampling_power : float
        Class-balanced sampling exponent: 0 uniform, 0.5 square-root, 1 balanced.
    sampling_mix : float
        Fraction of each batch drawn from the balanced sampler; the rest uniform
        ("mixed" epochs keep head-class accuracy while rare classes get seen).
    group_power : float
        The draws that are not class-balanced weigh each image by ``n ** -group_power``,
        ``n`` the number of training images of its group (:meth:`fit`'s ``groups``:
        for MANGO the colour variants of one model, which share a shape): 0 (the
        default) each image alike, 1 each group alike, so a garment sold in six
        colours is not drawn six times as often as one sold in one.
    ema_decay : float
        Exponential moving average of the weights used for prediction (0: off).
    augment : bool
        Flip / small affine / brightness-contrast (hue-preserving) augmentation.
    jitter : float
        Largest brightness shift and contrast change of the augmentation (fraction of
        the pixel range).  Packshots are lit alike; a large shift blurs white, cream
        and light grey, which colour labels keep apart.
    erase : float
        Share of training images that get one random rectangle (2-25% of the image,
        aspect 0.3-3.3) set to the mean pixel (random erasing, Zhong et al. 2020):
        the heads learn not to rest on one part of a garment.  0 (the default): none.
    cutmix : float
        Share of training batches mixed by CutMix (Yun et al. 2019,
        :func:`features.attributes.data.cutmix`): a rectangle of each image is
        replaced by the same rectangle of another image of the batch, and the loss
        weighs both images' labels by their shares of the pixels.  A mixed batch trains
        without the region path's crops and geometry (a crop would show one garment
        of two).  0 (the default): none.
    recolour : float
        Share of training images turned another hue and saturation
        (:func:`features.attributes.data.recolour`: greys and the background stay),
        whose colour heads' labels (:func:`features.attributes.data.colour_heads`)
        are then left out of the loss: every garment is also seen in colours it is
        not sold in, so the shape heads cannot lean on colour.  0 (the default):
        none.
    head_weights : dict, optional
        Head name -> weight of its term in the training loss (heads not named weigh
        1): a head the heads beside it crowd out (a 39-class family beside a 123-class
        type, whose loss is the larger) can be given more of the network.
    progressive_resize : bool
        Train the first 35% of the schedule at 0.6x, the next 35% at 0.8x and the
        rest at full resolution (about 65% of the compute of full-size training).
        Off by default: downscaling whole packshots makes garments *smaller* than
        at test time (the opposite of FixRes' crops), and on MANGO the validation
        accuracy of shape heads stayed near chance until the full-size phase.
    window_phase : float
        Share of the schedule (0: none) trained on random windows of each image,
        :data:`features.attributes.data.WINDOW_SIDE` of each side at the image's own
        scale (:func:`features.attributes.data.random_window`), before full images:
        the steps cost the windows' share of the pixels, so more of them fit a time
        budget, and garments stay the size they are at test time (the crops FixRes
        trains on, where ``progressive_resize`` shrinks them).
    tta : bool
        Average predictions over the image and its mirror.
    tta_zoom : float
        With ``tta``, a factor other than 1 adds the image and its mirror zoomed
        about the centre by it (:func:`features.attributes.data.zoom`) to the
        average of the heads' probabilities; the embedding stays the average of the
        first two views.  On MANGO, 1.08 (the recipe's) lifted validation accuracy
        (pooled, after fusion) family 0.873 -> 0.879, type 0.815 -> 0.819, fabric
        0.836 -> 0.847, and every factor from 1.04 to 1.16 gained alike; it doubles the
        network's prediction cost.
    region_preset, region_dim : str, int
        Backbone and feature size of the region crop's path, built when
        :meth:`fit` is given ``regions`` (see :mod:`features.attributes.regions`):
        a keypoint-guided neck crop with geometry (``kind="neck"``) or a
        garment-centred detail crop at full resolution (``kind="detail"``, no
        keypoints needed); without, the network is the whole-image one alone.
    region_dropout : float
        Share of training rows whose crop and geometry are withheld, so the heads
        also answer for items without keypoints.
    geometry_noise : float
        Standard deviation of the noise added to the training keypoint geometry, in
        units of the normalising pair (training uses exact keypoints, prediction a
        detector's: 0.03 is about the detector's NE on the demo).
    eval_every : int
        Score :meth:`fit`'s ``eval_set`` after every ``eval_every``-th epoch and after
        the last one.  Scoring is a full pass over the evaluation images without
        learning: on MANGO (910 images, 2 threads) 1.7-1.9 s, so scoring every epoch
        spends about 5% of the recipe's 1,460 s budget (the MANGO recipe scores every
        fifth).
    time_budget_s : float, optional
        Wall-clock budget of training: the cosine schedule then runs on
        ``max(step fraction, time fraction)`` and stops at the budget, so training
        always finishes annealed in time on a loaded machine (at the cost of
        bit-exact reproducibility).
    num_threads : int
        ``torch.set_num_threads`` during fit/predict.
    device : str
        Torch device to *train* on ("cpu", "cuda", "cuda:1", ...).  Prediction, saving
        and serving always run on the CPU, so a model trained on a GPU loads and
        predicts anywhere.
    random_state : int
        Seeds initialisation, sampling, augmentation and dropout.
    verbose : bool or callable
        Progress lines to stderr (or to the callable).
    """

    def __init__(self, taxonomy: Taxonomy | None = None, *, preset: str = "base",
                 image_size: tuple[int, int] = (160, 112), crop: str = "frame",
                 stem: str = "conv", pool: str = "avgmax", embed_dim: int = 256,
                 dropout: float = 0.2, epochs: int = 20, batch_size: int = 64,
                 lr: float = 2e-3, weight_decay: float = 0.05, warmup_epochs: float = 1.0,
                 optimizer: str = "adamw", precision: str = "float32",
                 label_smoothing: float = 0.1, sampling_power: float = 0.5,
                 sampling_mix: float = 0.5, group_power: float = 0.0,
                 ema_decay: float = 0.998, augment: bool = True,
                 jitter: float = 0.1, erase: float = 0.0, cutmix: float = 0.0,
                 recolour: float = 0.0,
                 head_weights: dict[str, float] | None = None,
                 progressive_resize: bool = False, window_phase: float = 0.0,
                 tta: bool = True, tta_zoom: float = 1.0,
                 region_preset: str = "small", region_dim: int = 128,
                 region_dropout: float = 0.1, geometry_noise: float = 0.03,
                 eval_every: int = 1, time_budget_s: float | None = None,
                 num_threads: int = 1,
                 device: str = "cpu", random_state: int = 0, verbose: bool | Callable[[str], None] = False):
        self.taxonomy = taxonomy
        self.preset = preset
        self.image_size = image_size
        self.crop = crop
        self.stem = stem
        self.pool = pool
        self.embed_dim = embed_dim
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.optimizer = optimizer
        self.precision = precision
        self.label_smoothing = label_smoothing
        self.sampling_power = sampling_power
        self.sampling_mix = sampling_mix
        self.group_power = group_power
        self.ema_decay = ema_decay
        self.augment = augment
        self.jitter = jitter
        self.erase = erase
        self.cutmix = cutmix
        self.recolour = recolour
        self.head_weights = head_weights
        self.progressive_resize = progressive_resize
        self.window_phase = window_phase
        self.tta = tta
        self.tta_zoom = tta_zoom
        self.region_preset = region_preset
        self.region_dim = region_dim
        self.region_dropout = region_dropout
        self.geometry_noise = geometry_noise
        self.eval_every = eval_every
        self.time_budget_s = time_budget_s
        self.num_threads = num_threads
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- parameters ---------------------------------------------------------------------
    _PARAMS = ("preset", "image_size", "crop", "stem", "pool", "embed_dim", "dropout",
               "epochs", "batch_size", "lr", "weight_decay", "warmup_epochs",
               "optimizer", "precision", "label_smoothing", "sampling_power",
               "sampling_mix", "group_power", "ema_decay", "augment",
               "jitter", "erase", "cutmix", "recolour", "head_weights",
               "progressive_resize", "window_phase", "tta", "tta_zoom",
               "region_preset", "region_dim", "region_dropout", "geometry_noise",
               "eval_every", "time_budget_s", "num_threads", "device", "random_state")

    def get_params(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self._PARAMS}
        out["image_size"] = list(self.image_size)
        return out

    def _validate_params(self) -> None:
        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}", field="preset",
                             value=self.preset, allowed=PRESETS)
        check_size("image_size", self.image_size, least=16)
        if self.stem not in STEMS:
            raise InputError(f"unknown stem {self.stem!r}", field="stem", value=self.stem,
                             allowed=STEMS)
        if self.pool not in POOLS:
            raise InputError(f"unknown pool {self.pool!r}", field="pool", value=self.pool,
                             allowed=POOLS)
        for name in ("epochs", "batch_size", "num_threads", "eval_every"):
            # whole numbers: int() cut epochs = 2.7 to 2 and was a ValueError on NaN
            check_value(name, getattr(self, name), int, least=1)
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {self.optimizer!r}", field="optimizer",
                             value=self.optimizer, allowed=OPTIMIZERS)
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}", field="precision",
                             value=self.precision, allowed=PRECISIONS)
        if self.region_preset not in PRESETS:
            raise InputError(f"unknown region_preset {self.region_preset!r}",
                             field="region_preset", value=self.region_preset, allowed=PRESETS)
        # NaN passed ``float(x) < 0`` and reached the keypoint-guided path's noise
        check_value("geometry_noise", self.geometry_noise, float, least=0)
        check_value("window_phase", self.window_phase, float, least=0, below=1)
        for name in ("erase", "cutmix", "recolour"):
            share = getattr(self, name)
            check_value(name, share, float, least=0)
            if float(share) > 1:
                raise InputError(f"{name} must be a share in [0, 1], got {share!r}",
                                 field=name, value=share)
        check_head_weights(self.head_weights)
        check_value("region_dim", self.region_dim, int, least=1)
        for name in ("sampling_mix", "ema_decay", "label_smoothing", "dropout", "jitter",
                     "region_dropout"):
            v = float(getattr(self, name))
            top_ok = v <= 1.0 if name == "sampling_mix" else v < 1.0
            if not (0.0 <= v and top_ok):
                raise InputError(f"{name} must be in [0, 1{']' if name == 'sampling_mix' else ')'}",
                                 field=name, value=v)
        # Each passed a kind-only check and misbehaved in training: lr NaN and
        # weight_decay < 0 were AdamW's ValueError once the images were decoded,
        # embed_dim = 0 silently built the backbone's width instead, warmup_epochs < 0
        # skipped the warmup, sampling_power < 0 drew the common classes more often, and
        # time_budget_s = 0 meant no budget at all (None says that).
        check_value("lr", self.lr, float, above=0)
        check_value("weight_decay", self.weight_decay, float, least=0)
        check_value("warmup_epochs", self.warmup_epochs, float, least=0)
        check_value("sampling_power", self.sampling_power, float, least=0)
        check_value("group_power", self.group_power, float, least=0)
        check_value("embed_dim", self.embed_dim, int, least=1)
        if self.time_budget_s is not None:
            check_value("time_budget_s", self.time_budget_s, float, above=0)
        self._check_tta_zoom()
        check_crop(self.crop)
        try:
            dev = torch.device(str(self.device))
        except (RuntimeError, TypeError) as exc:
            raise InputError(f"unknown torch device {self.device!r}", field="device",
                             value=self.device, allowed=["cpu", "cuda"]) from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {self.device!r} asked for but this torch has no CUDA "
                             f"device (torch {torch.__version__})", field="device",
                             value=self.device, allowed=["cpu"])

    def _check_tta_zoom(self) -> None:
        try:
            z = float(self.tta_zoom)
        except (TypeError, ValueError):
            z = float("nan")
        if not 0.5 <= z <= 2.0:
            raise InputError(f"tta_zoom must be a factor in [0.5, 2]; got {self.tta_zoom!r}",
                             field="tta_zoom", value=self.tta_zoom)

    def _log(self, msg: str) -> None:
        if callable(self.verbose):
            self.verbose(msg)
        elif self.verbose:
            import sys
            print(msg, file=sys.stderr, flush=True)

    # -- fitting ------------------------------------------------------------------------
    def fit(self, images, labels: pd.DataFrame, *, eval_set: tuple | None = None,
            regions: RegionInputs | None = None, groups=None) -> "AttributeModel":
        """Train on ``images`` (uint8 array ``(N, H, W, 3)`` or paths) and ``labels``
        (DataFrame, one column per head; missing cells are ignored by that head).

        ``eval_set=(images, labels)`` or ``(images, labels, regions)`` is scored after
        every ``eval_every``-th epoch and the last (logged, kept in ``history_``); it
        never influences training.
        ``regions`` (row-aligned :class:`~features.attributes.regions.RegionInputs`)
        adds the keypoint-guided path; prediction then takes regions too.
        ``groups`` (row-aligned keys, e.g. model codes) is what ``group_power`` counts
        images by; without it each image is its own group.
        """
        self._validate_params()
        if not isinstance(labels, pd.DataFrame):
            raise InputError("labels must be a pandas DataFrame with one column per head",
                             field="labels")
        size = tuple(int(s) for s in self.image_size)
        taxonomy = self.taxonomy
        if taxonomy is None:
            taxonomy = Taxonomy.from_labels(labels, list(labels.columns))
        x = as_image_array(images, size, self.crop)
        if len(x) != len(labels):
            raise InputError(f"{len(x)} images but {len(labels)} label rows", field="labels")
        if regions is not None and len(regions) != len(x):
            raise InputError(f"{len(regions)} region rows for {len(x)} images",
                             field="regions")
        check_head_weights(self.head_weights, taxonomy.names)
        if groups is not None:
            groups = np.asarray(groups, dtype=object)
            if len(groups) != len(x):
                raise InputError(f"{len(groups)} groups for {len(x)} images", field="groups")
        targets, maybe = taxonomy.encode(labels.reset_index(drop=True))
        if (targets < 0).all():
            raise InputError("no labelled rows to train on", field="labels")
        val = None
        if eval_set is not None:
            vx = as_image_array(eval_set[0], size, self.crop)
            vt, _ = taxonomy.encode(eval_set[1].reset_index(drop=True), unknown="keep")
            val = (vx, vt)
            if regions is not None:
                rsize = tuple(regions.crops.shape[1:3])
                vreg = eval_set[2] if len(eval_set) > 2 else None
                if vreg is None:
                    vreg = (detail_inputs(eval_set[0], rsize) if regions.kind == "detail"
                            else RegionInputs.empty(len(vx), rsize))
                val = (vx, vt, vreg)
        torch.manual_seed(self.random_state)
        config = AttributeNetConfig(heads=taxonomy.n_classes(), preset=self.preset,
                                    image_size=size, embed_dim=self.embed_dim,
                                    dropout=self.dropout, stem=self.stem,
                                    pool=self.pool,
                                    region_size=(tuple(int(v) for v in regions.crops.shape[1:3])
                                                 if regions is not None else None),
                                    region_preset=self.region_preset,
                                    region_dim=int(self.region_dim),
                                    geometry_dim=(GEOMETRY_DIM if regions is not None
                                                  and regions.kind == "neck" else 0),
                                    region_kind=regions.kind if regions is not None
                                    else "neck")
        net = AttributeNet(config)
        prev = torch.get_num_threads()
        torch.set_num_threads(int(self.num_threads))
        try:
            net, history = train_network(net, x, targets, maybe, taxonomy, self.get_params(),
                                         val=val, log=self._log, regions=regions,
                                         groups=groups)
        finally:
            torch.set_num_threads(prev)
        self.taxonomy_ = taxonomy
        self.config_ = config
        self.net_ = net.eval()
        self.history_ = history
        self.n_train_ = int(len(x))
        self.fusion_ = None
        return self

    def fit_fusion(self, descriptors_train: np.ndarray, labels_train: pd.DataFrame,
                   groups_train, descriptors_val: np.ndarray, labels_val: pd.DataFrame,
                   net_probs_val: dict[str, np.ndarray], **params) -> "AttributeModel":
        """Fuse full-resolution garment descriptors with the fitted network
        (:class:`features.attributes.descriptors.DescriptorFusion`, ``params`` go to
        it): per-head descriptor classifiers on the training rows, fusion weights on
        the validation rows, where ``net_probs_val`` are this network's probabilities
        (:meth:`predict_proba` before fusion).  Afterwards every prediction fuses; a
        caller holding the descriptors passes them, else they are measured from the
        images given (see :meth:`predict_proba`)."""
        from features.attributes.descriptors import DescriptorFusion

        self._check_fitted()
        if len(descriptors_train) != len(labels_train) or \
                len(descriptors_val) != len(labels_val):
            raise InputError(f"descriptor rows ({len(descriptors_train)}, "
                             f"{len(descriptors_val)}) do not match label rows "
                             f"({len(labels_train)}, {len(labels_val)})", field="descriptors")
        tt, _ = self.taxonomy_.encode(labels_train.reset_index(drop=True), unknown="keep")
        tv, _ = self.taxonomy_.encode(labels_val.reset_index(drop=True), unknown="keep")
        params.setdefault("num_threads", int(self.num_threads))
        params.setdefault("seed", int(self.random_state))
        self.fusion_ = DescriptorFusion(**params).fit(
            descriptors_train, tt, groups_train, descriptors_val, net_probs_val, tv,
            list(self.taxonomy_.names), self.taxonomy_.n_classes())
        return self

    @property
    def fused_heads(self) -> list[str]:
        """Heads whose probabilities fuse full-resolution descriptors, directly or
        through a fused head's evidence (empty: none)."""
        f = getattr(self, "fusion_", None)
        return list(f.heads_) + list(f.propagated_) if f is not None else []

    # -- inference ----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("this AttributeModel is not fitted yet: call fit() or "
                                 "AttributeModel.load() first")

    @property
    def uses_regions(self) -> bool:
        """Whether the fitted network has a region path (then :meth:`predict_proba`
        and friends take ``regions``)."""
        self._check_fitted()
        return bool(self.config_.region_size)

    @property
    def region_kind(self) -> str | None:
        """``"neck"`` (keypoint-guided: callers pass keypoints through
        :meth:`region_inputs`), ``"detail"`` (cut from the images themselves, so a
        call without ``regions`` makes them) or None (no region path)."""
        return self.config_.region_kind if self.uses_regions else None

    def region_inputs(self, images, xy=None, vis=None) -> RegionInputs | None:
        """The ``regions`` argument for ``images`` (full-resolution arrays or paths)
        and, for a neck path, their keypoints in each image's pixel frame; None for
        a model without a region path.  A detail path ignores keypoints."""
        if not self.uses_regions:
            return None
        if self.config_.region_kind == "detail":
            return detail_inputs(images, self.config_.region_size)
        return region_inputs(images, xy, vis, self.config_.region_size)

    def _forward(self, images, batch_size: int = 128, regions: RegionInputs | None = None,
                 descriptors: np.ndarray | None = None
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        self._check_fitted()
        probs, z = self._forward_net(images, batch_size, regions)     # validates images
        if self.fused_heads:
            if descriptors is None:
                # Measured from the images as given: paths or full-resolution arrays
                # give the descriptors the fusion was fitted on; images already
                # letterboxed to the network's size give blurrier texture.
                from features.attributes.descriptors import descriptor_table

                descriptors = descriptor_table(list(images))[0]
            probs = self.fusion_.fuse(probs, descriptors)
        return probs, z

    @torch.no_grad()
    def _forward_net(self, images, batch_size: int = 128,
                     regions: RegionInputs | None = None
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        from features.attributes.train import region_batch

        if regions is None and self.region_kind == "detail":
            # Cut from the images as given: full-resolution paths or arrays give the
            # crops the network was trained on; images already letterboxed to the
            # network's size give coarser ones.
            regions = detail_inputs(images, self.config_.region_size)
        x = as_image_array(images, self.config_.image_size, self.crop)
        if regions is not None and not self.config_.region_size:
            regions = None   # a whole-image model has no use for them
        if regions is not None and len(regions) != len(x):
            raise InputError(f"{len(regions)} region rows for {len(x)} images",
                             field="regions")
        net = self.net_.eval()
        probs: dict[str, list[np.ndarray]] = {h: [] for h in self.taxonomy_.names}
        embs = []
        prev = torch.get_num_threads()
        torch.set_num_threads(int(self.num_threads))
        try:
            for s in range(0, len(x), batch_size):
                xb = to_tensor(x[s:s + batch_size])                 # (B, 3, H, W)
                extra = region_batch(regions, slice(s, s + batch_size), "cpu")
                logits, z = net.forward_all(xb, **extra)
                p = {h: torch.softmax(v, 1) for h, v in logits.items()}
                if self.tta:
                    mirror = dict(extra)
                    if extra:
                        mirror["region"] = torch.flip(extra["region"], dims=[3])
                    lf, zf = net.forward_all(torch.flip(xb, dims=[3]), **mirror)
                    views = [p, {h: torch.softmax(v, 1) for h, v in lf.items()}]
                    z = torch.nn.functional.normalize(z + zf, dim=1)
                    if float(self.tta_zoom) != 1.0:
                        # Only the whole image is zoomed: a region crop is already
                        # cut at the garment's own scale.
                        xz = zoom(xb, float(self.tta_zoom))
                        for xv, ex in ((xz, extra), (torch.flip(xz, dims=[3]), mirror)):
                            views.append({h: torch.softmax(v, 1)
                                          for h, v in net.forward_all(xv, **ex)[0].items()})
                    p = {h: sum(v[h] for v in views) / len(views) for h in p}
                for h in probs:
                    probs[h].append(p[h].numpy().astype(np.float32))
                embs.append(z.numpy().astype(np.float32))
        finally:
            torch.set_num_threads(prev)
        d = self.net_.embed_dim
        out = {h: (np.concatenate(v) if v else np.zeros((0, self.config_.heads[h]), np.float32))
               for h, v in probs.items()}
        return out, (np.concatenate(embs) if embs else np.zeros((0, d), np.float32))

    def predict_proba(self, images, regions: RegionInputs | None = None,
                      descriptors: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Class probabilities per head: ``{head: (N, C_head)}`` float32, rows sum to 1.
        ``regions``: see :meth:`region_inputs` (None: predicted as without keypoints).
        ``descriptors``: row-aligned :func:`~features.attributes.descriptors.descriptor_table`
        rows for a model with fused heads (:meth:`fit_fusion`); None measures them from
        ``images`` (paths or full-resolution arrays; letterboxed ones blur texture)."""
        return self._forward(images, regions=regions, descriptors=descriptors)[0]

    def predict(self, images, regions: RegionInputs | None = None,
                descriptors: np.ndarray | None = None) -> pd.DataFrame:
        """Most probable class name per head, and its probability (``<head>_conf``)."""
        probs = self.predict_proba(images, regions, descriptors)
        cols = {}
        for h, p in probs.items():
            classes = np.array(self.taxonomy_.classes(h), dtype=object)
            cols[h] = classes[p.argmax(1)] if len(p) else np.array([], dtype=object)
            cols[f"{h}_conf"] = p.max(1) if len(p) else np.array([], np.float32)
        return pd.DataFrame(cols)

    def embed(self, images) -> np.ndarray:
        """L2-normalised visual embedding ``(N, D)`` float32 (the penultimate layer)."""
        return self._forward_net(images)[1]

    def predict_all(self, images, regions: RegionInputs | None = None,
                    descriptors: np.ndarray | None = None
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``(predict_proba(images, regions, descriptors), embed(images))`` from one
        forward pass."""
        return self._forward(images, regions=regions, descriptors=descriptors)

    # -- persistence --------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, name: str = "attributes") -> list[Path]:
        """Write ``<directory>/<name>.pt`` (state_dict), ``<name>.json`` and, with fused
        heads, ``<name>.fusion.json``; return the paths."""
        self._check_fitted()
        from features.files import atomic_files

        d = Path(directory)
        pt, js, fusion = d / f"{name}.pt", d / f"{name}.json", d / f"{name}.fusion.json"
        fused = bool(self.fused_heads)
        state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
        meta = {"schema": MODEL_SCHEMA, "kind": "attribute_net",
                "config": self.config_.to_dict(), "taxonomy": self.taxonomy_.to_dict(),
                "params": self.get_params(), "n_train": self.n_train_,
                "history": self.history_, "torch": torch.__version__,
                # whether <name>.fusion.json belongs to this network: load never
                # pairs it with a stale one left beside it
                "fusion": fused}
        written = [pt] + ([fusion] if fused else []) + [js]
        # renamed into place once all are written, the json last: a failure or a kill
        # half way leaves the previous model whole, never a new network beside the old
        # config (a state_dict that no longer matches it, or a truncated file)
        with atomic_files(*written) as tmps:
            tmp = dict(zip(written, tmps))
            torch.save(state, tmp[pt])
            if fused:
                tmp[fusion].write_text(self.fusion_.to_json())
            tmp[js].write_text(json.dumps(meta, indent=2, default=float))
        if not fused:
            fusion.unlink(missing_ok=True)
        return [pt, js] + ([fusion] if fused else [])

    @classmethod
    def load(cls, path: str | os.PathLike, name: str = "attributes") -> "AttributeModel":
        """Load from a directory (``<name>.pt`` + ``<name>.json``) or either file's path."""
        p = Path(path)
        if p.is_dir():
            js, pt = p / f"{name}.json", p / f"{name}.pt"
        else:
            js, pt = p.with_suffix(".json"), p.with_suffix(".pt")
        if not js.is_file() or not pt.is_file():
            raise BundleError(f"attribute model files not found: {js} and {pt}")
        meta = read_model_json(js)
        if meta.get("schema") != MODEL_SCHEMA or meta.get("kind") != "attribute_net":
            raise SchemaError(f"{js} is not an attribute model of schema {MODEL_SCHEMA} "
                              f"(found kind={meta.get('kind')!r} schema={meta.get('schema')!r})",
                              field="schema")
        taxonomy = Taxonomy.from_dict(meta["taxonomy"])
        config = AttributeNetConfig.from_dict(meta["config"])
        if config.heads != taxonomy.n_classes():
            raise SchemaError(f"{js}: network heads {config.heads} disagree with the taxonomy",
                              field="heads")
        params = dict(meta.get("params", {}))
        params.pop("image_size", None)
        params.pop("stem", None)   # the network's own (older files have none: "conv")
        params.pop("pool", None)   # likewise (older files have none: "avgmax")
        model = cls(taxonomy, image_size=config.image_size, stem=config.stem,
                    pool=config.pool,
                    **{k: v for k, v in params.items() if k in cls._PARAMS})
        try:
            model._check_tta_zoom()
            check_crop(model.crop)
        except InputError as exc:
            raise SchemaError(f"{js}: {exc}", field=exc.field) from exc
        net = AttributeNet(config)
        state = read_state_dict(pt)
        # Early files keyed heads by name ("heads.<name>.weight"); map to list order.
        pos = {h: i for i, h in enumerate(taxonomy.names)}
        state = {(f"heads.{pos[k.split('.')[1]]}.{k.rsplit('.', 1)[1]}"
                  if k.startswith("heads.") and k.split(".")[1] in pos else k): v
                 for k, v in state.items()}
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise SchemaError(f"{pt} does not match its config {js}: {exc}",
                              field="state_dict") from exc
        model.taxonomy_ = taxonomy
        model.config_ = config
        model.net_ = net.eval()
        model.history_ = meta.get("history", [])
        model.n_train_ = int(meta.get("n_train", 0))
        model.fusion_ = None
        fusion = js.with_name(js.name[:-len(".json")] + ".fusion.json")
        # "fusion" says whether the network was saved with one: a file beside a model
        # saved without (a stale one) is not its. Models saved before the entry: the
        # file, if there is one.
        fused = meta.get("fusion", fusion.is_file())
        if fused and not fusion.is_file():
            raise BundleError(f"{js} was saved with a descriptor fusion but {fusion} "
                              f"is missing: retrain the attributes stage")
        if fused:
            from features.attributes.descriptors import DescriptorFusion

            model.fusion_ = DescriptorFusion.from_json(fusion.read_text(), str(fusion))
        return model
