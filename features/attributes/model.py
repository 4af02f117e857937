"""The attribute network: a compact convolutional backbone with one head per attribute.

A config dataclass plus an ``nn.Module`` (the nanoGPT layout); the training loop lives
in :mod:`features.attributes.train` and the sklearn-style wrapper in
:mod:`features.attributes.estimator`.

The backbone is an EfficientNetV2-flavoured stack designed for a 2-core CPU: fused
inverted-residual blocks (a full 3x3 expansion conv, cheap at high resolution where
depthwise convs are memory-bound) for the first stages, then depthwise-separable
inverted-residual blocks with squeeze-excitation, SiLU and BatchNorm.  Features are
pooled by global average *and* max (max keeps small details such as a print or a
buckle that an average washes out), projected to the embedding and fed to the heads.
The embedding (the penultimate layer) is the item's visual descriptor; it is returned
L2-normalised by :meth:`AttributeNet.embed`.

Examples
--------
>>> import torch
>>> cfg = AttributeNetConfig(heads={"colour": 3, "family": 5}, preset="tiny", embed_dim=64,
...                          image_size=(32, 24))
>>> net = AttributeNet(cfg).eval()
>>> out = net(torch.zeros(2, 3, 32, 24))
>>> out["colour"].shape, net.embed(torch.zeros(2, 3, 32, 24)).shape
(torch.Size([2, 3]), torch.Size([2, 64]))
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from features.exceptions import BundleError


def _resnet(blocks: int) -> dict[str, Any]:
    """A ResNet at half width (stages of 32, 64, 128, 256 channels) with ``blocks``
    basic blocks a stage: 2 is ResNet-18's layout, 1 ResNet-10's."""
    widths = (32, 64, 128, 256)
    return {"stem": 24, "stem_pool": True, "head_channels": 384,
            "stages": tuple(("basic", 1, w, blocks, 1 if i == 0 else 2, False)
                            for i, w in enumerate(widths))}


#: Stage specifications: (block, expansion, out_channels, repeats, stride, squeeze-excite).
#: ``fused`` = 3x3 conv expand + 1x1 project; ``mb`` = 1x1 expand, depthwise 3x3, SE,
#: 1x1 project; ``basic`` = ResNet's two 3x3 convs with ReLU (expansion and SE unused).
#: A preset with ``stem_pool`` max-pools after the stem (ResNet's 1/4-resolution body).
#: Multiply-adds at 160x112 and backbone parameters: "base" ~0.21 G (2.1M), "small"
#: ~0.08 G (0.7M), "resnet18" ~0.16 G (2.9M), "resnet10" ~0.07 G (1.3M).  The "resnet"
#: presets are ResNet-18 and -10 at half width: dense 3x3 convs that bf16 autocast runs
#: 1.5-1.7x faster on a CPU with AVX512-BF16, where the depthwise convs of "small" run
#: slower in bf16 than in float32 (``precision`` in
#: :class:`~features.attributes.estimator.AttributeModel`).
PRESETS: dict[str, dict[str, Any]] = {
    "base": {
        "stem": 24,
        "stages": (("fused", 1, 24, 1, 1, False),
                   ("fused", 4, 32, 2, 2, False),
                   ("fused", 4, 48, 2, 2, False),
                   ("mb", 4, 96, 3, 2, True),
                   ("mb", 6, 128, 3, 1, True),
                   ("mb", 6, 192, 2, 2, True)),
        "head_channels": 512,
    },
    "small": {
        "stem": 16,
        "stages": (("fused", 1, 16, 1, 1, False),
                   ("fused", 4, 24, 1, 2, False),
                   ("fused", 4, 40, 2, 2, False),
                   ("mb", 4, 80, 2, 2, True),
                   ("mb", 4, 112, 2, 1, True),
                   ("mb", 6, 160, 1, 2, True)),
        "head_channels": 384,
    },
    "resnet18": _resnet(blocks=2),
    "resnet10": _resnet(blocks=1),
    # For tests and quick builds: a few thousand parameters, still every block kind.
    "tiny": {
        "stem": 8,
        "stages": (("fused", 1, 8, 1, 1, False),
                   ("fused", 2, 16, 1, 2, False),
                   ("mb", 2, 24, 1, 2, True),
                   ("mb", 2, 32, 1, 2, True)),
        "head_channels": 64,
    },
}


#: How the network's first layer reads the image.  ``"conv"``: a 3x3 stride-2 conv on
#: the image.  ``"space_to_depth"``: each 2x2 block of pixels folded into 12 channels
#: (``nn.PixelUnshuffle``) before that conv, so the body sees the same grid as "conv"
#: at half the ``image_size`` (an image of 320x224 costs the body what 160x112 costs
#: with "conv") while the stem still reads every pixel (TResNet's space-to-depth stem,
#: Ridnik et al. 2021): the detail of a full-size MANGO packshot (334x239) for about
#: the compute of half its size.
STEMS = ("conv", "space_to_depth")

#: How the last feature map ``(B, C, h, w)`` becomes the vector the embedding is
#: projected from.  ``"avgmax"``: its global average and maximum (2C).  ``"parts"``:
#: those plus the averages of four parts of a centred packshot (6C), each unchanged by
#: a mirror image: the centre strip of columns and the two flanks together (a
#: cardigan's opening or a shirt's placket against a sweater's plain front), the top
#: rows (neckline, collar, shoulders) and the bottom rows (hem, cuffs).  A global
#: average can tell that a front opening is there, not where.
POOLS = ("avgmax", "parts")


def pool_parts(f: torch.Tensor) -> torch.Tensor:
    """The four part averages of :data:`POOLS`' ``"parts"``: ``(B, C, h, w)`` -> ``(B,
    4C)``, in the order centre, flanks, top, bottom.  The centre strip is the middle
    half of the columns (at least one), the flanks the rest (the centre again where
    none is left: a map one column wide), top and bottom the first and last third of
    the rows (at least one).

    >>> f = torch.arange(20.0).view(1, 1, 5, 4)   # rows 0..4, columns 0..3
    >>> pool_parts(f).tolist()   # centre cols 1-2, flanks 0 and 3, top row 0, bottom row 4
    [[9.5, 9.5, 1.5, 17.5]]
    >>> tuple(pool_parts(torch.ones(2, 3, 1, 1)).shape)
    (2, 12)
    """
    h, w = f.shape[-2:]
    c0 = w // 4
    c1 = max(w - c0, c0 + 1)
    centre = f[..., c0:c1].mean((2, 3))
    flanks = (torch.cat([f[..., :c0], f[..., c1:]], 3).mean((2, 3)) if c1 - c0 < w
              else centre)
    r = max(1, h // 3)
    return torch.cat([centre, flanks, f[..., :r, :].mean((2, 3)),
                      f[..., h - r:, :].mean((2, 3))], 1)


def read_model_json(path: str | os.PathLike) -> dict:
    """The json config saved beside a network; BundleError naming the file when it
    is cut short or damaged (an interrupted copy of the bundle), not a raw
    JSONDecodeError (a traceback from the build, an unexplained 500 from /analyze)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise BundleError(f"cannot read {path} ({e.__class__.__name__}: {e}): copy it "
                          f"again or retrain") from None


def read_state_dict(path: str | os.PathLike) -> dict:
    """A saved ``state_dict`` (``weights_only``: tensors only, no pickled code runs);
    BundleError naming the file when it is cut short or damaged, not torch's
    ``PytorchStreamReader failed reading zip archive``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as e:
        raise BundleError(f"cannot read the network weights {path} "
                          f"({e.__class__.__name__}: {e}): copy it again or retrain") from None


@dataclasses.dataclass
class AttributeNetConfig:
    """Everything that defines the network's shape (saved beside every state_dict).

    Parameters
    ----------
    heads : dict[str, int]
        Head name -> number of classes, in the taxonomy's order.
    preset : str
        Backbone size, a key of :data:`PRESETS`.
    image_size : (int, int)
        Input (height, width); images are letterboxed to it (aspect preserved).
    embed_dim : int
        Size of the penultimate layer, the visual embedding.  ``None`` uses the
        preset's ``head_channels``.
    dropout : float
        Dropout before the heads (training only).
    region_size : (int, int), optional
        Size of the region crop (keypoint-guided neck or detail crop, see
        ``region_kind`` and :mod:`features.attributes.regions`);
        ``None`` (the default, and MANGO's) builds no region path.
    region_preset : str
        Backbone of the crop (a key of :data:`PRESETS`).
    region_dim : int
        Size of the crop's feature vector.
    geometry_dim : int
        Length of the keypoint geometry vector fed to the heads (0: none;
        :data:`features.attributes.regions.GEOMETRY_DIM` when used).
    region_kind : {"neck", "detail"}
        What the region path reads (:data:`features.attributes.regions.REGION_KINDS`):
        the keypoint-guided neck crop, or the garment-centred detail crop that the
        model cuts from the image itself.
    stem : {"conv", "space_to_depth"}
        How the first layer reads the image (:data:`STEMS`); networks saved before
        the setting existed read "conv".
    pool : {"avgmax", "parts"}
        How the last feature map is pooled (:data:`POOLS`); networks saved before the
        setting existed pool "avgmax".
    """

    heads: dict[str, int]
    preset: str = "base"
    image_size: tuple[int, int] = (160, 112)
    embed_dim: int | None = 256
    dropout: float = 0.2
    region_size: tuple[int, int] | None = None
    region_preset: str = "small"
    region_dim: int = 128
    geometry_dim: int = 0
    region_kind: str = "neck"
    stem: str = "conv"
    pool: str = "avgmax"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        d["region_size"] = list(self.region_size) if self.region_size else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AttributeNetConfig":
        d = dict(d)
        d["image_size"] = tuple(d["image_size"])
        if d.get("region_size"):
            d["region_size"] = tuple(d["region_size"])
        d["heads"] = {str(k): int(v) for k, v in d["heads"].items()}
        return cls(**d)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: bool | str = True):
        activation = (nn.ReLU(inplace=True) if act == "relu"
                      else nn.SiLU(inplace=True) if act else nn.Identity())
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            activation,
        )


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled context (Hu et al. 2018)."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)                        # (B, C, 1, 1)
        s = torch.sigmoid(self.fc2(F.silu(self.fc1(s))))
        return x * s                                             # (B, C, H, W)


class InvertedResidual(nn.Module):
    """MBConv (``fused=False``) or Fused-MBConv block with an identity shortcut
    when shape allows."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int, se: bool,
                 fused: bool):
        super().__init__()
        mid = cin * expansion
        layers: list[nn.Module] = []
        if fused:
            if expansion == 1:
                layers.append(ConvBNAct(cin, cout, 3, stride))
            else:
                layers += [ConvBNAct(cin, mid, 3, stride), ConvBNAct(mid, cout, 1, act=False)]
        else:
            layers += [ConvBNAct(cin, mid, 1), ConvBNAct(mid, mid, 3, stride, groups=mid)]
            if se:
                layers.append(SqueezeExcite(mid, max(8, cin // 4)))
            layers.append(ConvBNAct(mid, cout, 1, act=False))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class BasicBlock(nn.Module):
    """ResNet's basic block (He et al. 2016): two 3x3 conv-BN, ReLU, and a shortcut
    (a 1x1 conv-BN where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(ConvBNAct(cin, cout, 3, stride, act="relu"),
                                   ConvBNAct(cout, cout, 3, act=False))
        self.shortcut = (None if stride == 1 and cin == cout
                         else ConvBNAct(cin, cout, 1, stride, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class SpaceToDepth(nn.Module):
    """``(B, C, H, W)`` -> ``(B, 4C, ceil(H/2), ceil(W/2))``: each 2x2 block of pixels
    folded into channels, an odd side first padded by repeating its last row or
    column (a progressively resized or odd-sized input).

    >>> x = torch.arange(12.0).view(1, 1, 3, 4)
    >>> tuple(SpaceToDepth()(x).shape)
    (1, 4, 2, 2)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
        return F.pixel_unshuffle(x, 2)


def _backbone(preset: str, stem: str = "conv") -> tuple[nn.Sequential, int]:
    """The convolutional stack of ``preset`` with the first layer ``stem``
    (:data:`STEMS`) and its output channels."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (allowed: {', '.join(PRESETS)})")
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r} (allowed: {', '.join(STEMS)})")
    spec = PRESETS[preset]
    layers: list[nn.Module] = (
        [SpaceToDepth(), ConvBNAct(12, spec["stem"], 3, 2)] if stem == "space_to_depth"
        else [ConvBNAct(3, spec["stem"], 3, 2)])
    if spec.get("stem_pool"):
        layers.append(nn.MaxPool2d(3, 2, 1))
    cin = spec["stem"]
    for kind, exp, cout, reps, stride, se in spec["stages"]:
        for r in range(reps):
            s = stride if r == 0 else 1
            layers.append(BasicBlock(cin, cout, s) if kind == "basic" else
                          InvertedResidual(cin, cout, exp, s, se, fused=kind == "fused"))
            cin = cout
    layers.append(ConvBNAct(cin, spec["head_channels"], 1))
    return nn.Sequential(*layers), spec["head_channels"]


class AttributeNet(nn.Module):
    """Backbone -> avg+max pool -> embedding -> one linear head per attribute.

    With ``config.region_size`` a second, smaller backbone reads the region crop (the
    keypoint-guided neck crop, or the garment-centred detail crop), and with
    ``config.geometry_dim`` a small MLP reads the keypoint geometry; their features join the embedding at the heads' input (the embedding
    itself stays the whole image's, so its size and meaning do not depend on
    keypoints).  Rows without a crop have its features zeroed, the state the heads
    also learn from bottoms and from rows dropped in training.
    """

    def __init__(self, config: AttributeNetConfig):
        super().__init__()
        self.config = config
        self.backbone, feat = _backbone(config.preset, config.stem)
        self.embed_dim = config.embed_dim or feat
        if config.pool not in POOLS:
            raise ValueError(f"unknown pool {config.pool!r} (allowed: {', '.join(POOLS)})")
        pooled = (6 if config.pool == "parts" else 2) * feat
        self.project = nn.Sequential(nn.Linear(pooled, self.embed_dim, bias=False),
                                     nn.BatchNorm1d(self.embed_dim))
        head_in = self.embed_dim
        self.region_backbone = self.region_project = self.geometry = None
        if config.region_size:
            self.region_backbone, rfeat = _backbone(config.region_preset)
            self.region_project = nn.Sequential(
                nn.Linear(2 * rfeat, config.region_dim, bias=False),
                nn.BatchNorm1d(config.region_dim))
            head_in += config.region_dim
        if config.geometry_dim:
            self.geometry = nn.Sequential(nn.Linear(config.geometry_dim, 128), nn.SiLU(),
                                          nn.Linear(128, 64), nn.SiLU())
            head_in += 64
        self.dropout = nn.Dropout(config.dropout)
        # A list, not a ModuleDict: head names are free text ("type", "half", "a.b")
        # and must not collide with Module attributes.
        self.head_names = tuple(config.heads)
        self.heads = nn.ModuleList([nn.Linear(head_in, n) for n in config.heads.values()])
        self._init_weights()
        if self.geometry is not None:
            # Default (Kaiming-uniform) init for the geometry MLP: its inputs are a
            # few units in size, and std 0.01 weights would start it silent.
            for m in self.geometry:
                if isinstance(m, nn.Linear):
                    m.reset_parameters()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Zero-init the last BN of each residual branch: blocks start as identities,
        # which trains deeper stacks stably from scratch (Goyal et al. 2017).
        for m in self.modules():
            if isinstance(m, BasicBlock) or (isinstance(m, InvertedResidual)
                                             and m.residual):
                last = m.block[-1]
                if isinstance(last, ConvBNAct):
                    nn.init.zeros_(last[1].weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-normalisation embedding ``(B, D)`` of normalised images ``(B, 3, H, W)``."""
        f = self.backbone(x)                                     # (B, C, h, w)
        pooled = [f.mean((2, 3)), f.amax((2, 3))]                # (B, 2C)
        if self.config.pool == "parts":
            pooled.append(pool_parts(f))                         # (B, 6C)
        return F.silu(self.project(torch.cat(pooled, 1)))        # (B, D)

    def head_input(self, z: torch.Tensor, region: torch.Tensor | None = None,
                   has_region: torch.Tensor | None = None,
                   geometry: torch.Tensor | None = None) -> torch.Tensor:
        """The heads' input: embedding ``z (B, D)`` joined with the crop's features
        (``region (B, 3, h, w)``, zeroed where ``has_region (B,)`` is False or when
        None) and the geometry MLP's (``geometry (B, G)``, zeros when None)."""
        parts = [z]
        b = z.shape[0]
        if self.region_backbone is not None:
            if region is None:
                parts.append(z.new_zeros(b, self.config.region_dim))
            else:
                f = self.region_backbone(region)                     # (B, C, h, w)
                r = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)   # (B, 2C)
                r = F.silu(self.region_project(r))                   # (B, R)
                if has_region is not None:
                    r = r * has_region.to(r.dtype)[:, None]
                parts.append(r)
        if self.geometry is not None:
            g = geometry if geometry is not None else z.new_zeros(b, self.config.geometry_dim)
            parts.append(self.geometry(g))                           # (B, 64)
        return torch.cat(parts, 1) if len(parts) > 1 else z

    def forward(self, x: torch.Tensor, region: torch.Tensor | None = None,
                has_region: torch.Tensor | None = None,
                geometry: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits per head: ``{head: (B, C_head)}`` (region inputs: see
        :meth:`head_input`)."""
        z = self.head_input(self.features(x), region, has_region, geometry)
        z = self.dropout(z)
        return {h: head(z) for h, head in zip(self.head_names, self.heads)}

    def forward_all(self, x: torch.Tensor, region: torch.Tensor | None = None,
                    has_region: torch.Tensor | None = None,
                    geometry: torch.Tensor | None = None
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Logits per head and the L2-normalised embedding from one pass."""
        z = self.features(x)                                     # (B, D)
        zh = self.dropout(self.head_input(z, region, has_region, geometry))
        logits = {h: head(zh) for h, head in zip(self.head_names, self.heads)}
        return logits, F.normalize(z, dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised visual embedding ``(B, D)``."""
        return F.normalize(self.features(x), dim=1)
