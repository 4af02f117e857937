"""Dominant colours (CIELAB k-means over the garment's pixels) and a named colour group.

The colour groups are MANGO's ``des_agrup_color_eng`` vocabulary. Note how that
vocabulary is drawn: black, charcoal and silver are ``GREY``; off-white, cream,
beige, sand, camel and gold are ``WHITE``; khaki and olive are ``BROWN``.
:func:`colour_group` follows it with a nearest-prototype rule over Lab
prototypes written down here (several per group, named after MANGO's own colour
descriptions such as "CRUDO" or "TEJANO OSCURO"), the weights of the dominant
colours voting for their groups. Below L* 30 the distance compares saturation
(chroma relative to lightness) rather than raw a*/b*: a navy photographed at
L* 12 has a chroma of only about 8, and compared raw it is nearer black than
any blue.

Examples
--------
>>> import numpy as np
>>> img = np.zeros((20, 20, 3), np.uint8); img[:, :14] = (20, 40, 110); img[:, 14:] = 245
>>> cols = dominant_colours(img, np.ones((20, 20), bool), k=2)
>>> [round(c[3], 1) for c in cols]  # the outer pixel ring is left out
[0.7, 0.3]
>>> colour_group(cols)
'BLUE'
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from features.exceptions import InputError
from features.imaging import rgb_to_lab

#: MANGO's colour groups (``des_agrup_color_eng``), a closed vocabulary.
COLOUR_GROUPS: tuple[str, ...] = ("BLUE", "BROWN", "GREEN", "GREY", "ORANGE", "PINK",
                                  "PURPLE", "RED", "WHITE", "YELLOW")

#: Lab prototypes per group: (name, L, a, b). Hand-set from colour science and
#: MANGO's colour descriptions; packshot lighting makes whites read at L 88-95.
PROTOTYPES: tuple[tuple[str, str, float, float, float], ...] = (
    ("WHITE", "blanco", 95, 0, 2), ("WHITE", "offwhite", 91, 0, 6),
    ("WHITE", "crudo", 87, 1, 11), ("WHITE", "beige", 78, 4, 15),
    ("WHITE", "arena", 70, 5, 17), ("WHITE", "camel", 62, 11, 30),
    ("WHITE", "oro", 68, 5, 38), ("WHITE", "piedra", 72, 1, 8),
    ("GREY", "negro", 12, 0, 0), ("GREY", "negro_claro", 22, 0, -1),
    ("GREY", "antracita", 35, 0, -2), ("GREY", "gris", 55, 0, -1),
    ("GREY", "gris_claro", 72, -1, -1), ("GREY", "plata", 80, 0, -3),
    ("BLUE", "navy", 22, 3, -16), ("BLUE", "azul", 42, 10, -45),
    ("BLUE", "tejano_medio", 50, -2, -18), ("BLUE", "tejano_oscuro", 32, 0, -14),
    ("BLUE", "celeste", 76, -5, -16), ("BLUE", "turquesa", 60, -28, -18),
    ("BROWN", "marron", 35, 10, 20), ("BROWN", "chocolate", 24, 8, 10),
    ("BROWN", "khaki", 50, -1, 22), ("BROWN", "oliva", 42, -8, 24),
    ("BROWN", "cuero", 45, 20, 35), ("BROWN", "topo", 48, 4, 9),
    ("GREEN", "verde", 50, -40, 25), ("GREEN", "botella", 30, -22, 6),
    ("GREEN", "verde_pastel", 80, -16, 10), ("GREEN", "agua", 75, -22, -2),
    ("PINK", "rosa", 70, 30, 2), ("PINK", "fucsia", 50, 65, -10),
    ("PINK", "rosa_pastel", 85, 13, 4), ("PINK", "nude", 76, 13, 13),
    ("PINK", "coral", 64, 42, 24),
    ("RED", "rojo", 45, 65, 45), ("RED", "granate", 28, 32, 12),
    ("RED", "burdeos", 24, 24, 5),
    ("ORANGE", "naranja", 65, 45, 65), ("ORANGE", "terracota", 50, 30, 35),
    ("ORANGE", "peach", 80, 18, 25),
    ("PURPLE", "morado", 35, 25, -25), ("PURPLE", "malva", 55, 18, -8),
    ("PURPLE", "lila", 70, 12, -18),
    ("YELLOW", "mostaza", 62, 10, 55), ("YELLOW", "amarillo", 85, -5, 70),
    ("YELLOW", "amarillo_pastel", 90, -5, 30), ("YELLOW", "lima", 85, -20, 60),
)
_PROTO_GROUP = np.array([p[0] for p in PROTOTYPES])
_PROTO_LAB = np.array([p[2:] for p in PROTOTYPES], dtype=float)
#: Lightness counts less than hue for a colour name, except among neutrals where
#: the a/b distances are small anyway and L decides.
_WEIGHTS = np.array([0.6, 1.0, 1.0])
#: Below this lightness a*/b* are compared scaled by ``DARK_L / L``. The CIELAB
#: gamut narrows to a point at black, so the chroma a dark colour can have shrinks
#: with L: packshot navies read L 10-15 with a chroma of 7-9, blacks a chroma
#: under 3. Scaling compares C/L (CIELAB's correlate of saturation) there, which
#: keeps navy, bottle green and dark purple apart from black and from each other.
#: Chosen on the training products of the MANGO bundle's split: any value in
#: 25-40 scores within 0.1 point of it (benchmarks/mango_mask_colour.py --bundle).
DARK_L = 30.0
#: Lightness floor of that scaling (at most 3x): below L 10 the sensor's noise,
#: not the dye, makes most of a*/b*.
DARK_L_FLOOR = 10.0


def _saturation_scaled(lab: np.ndarray) -> np.ndarray:
    """``lab`` (..., 3) with a*/b* scaled by ``DARK_L / L`` where L < ``DARK_L``."""
    lab = np.array(lab, dtype=float)
    f = np.maximum(1.0, DARK_L / np.maximum(lab[..., 0], DARK_L_FLOOR))
    lab[..., 1:] *= f[..., None]
    return lab


_PROTO_SCALED = _saturation_scaled(_PROTO_LAB)

#: At most this many pixels enter k-means (evenly strided, so deterministic).
MAX_PIXELS = 4000


def _kmeans(x: np.ndarray, k: int, iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Plain Lloyd k-means with a deterministic farthest-point initialisation."""
    # Start from the pixel nearest the median colour, then repeatedly the pixel
    # farthest from the chosen centres: no randomness, and small but distinct
    # colours (a print) still get a centre.
    med = np.median(x, axis=0)
    centres = [x[np.argmin(((x - med) ** 2).sum(1))]]
    d = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        if d.max() <= 1e-9:
            break
        centres.append(x[np.argmax(d)])
        d = np.minimum(d, ((x - centres[-1]) ** 2).sum(1))
    c = np.array(centres, dtype=np.float64)
    labels = np.zeros(len(x), int)
    for _ in range(iters):
        dist = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        new = dist.argmin(1)
        if _ > 0 and np.array_equal(new, labels):
            break
        labels = new
        for j in range(len(c)):
            sel = labels == j
            if sel.any():
                c[j] = x[sel].mean(0)
    return c, labels


def dominant_colours(rgb: np.ndarray, mask: np.ndarray | None = None,
                     k: int = 3) -> list[tuple[float, float, float, float]]:
    """The ``k`` dominant colours of the masked pixels, in CIELAB, by weight.

    Parameters
    ----------
    rgb : np.ndarray uint8 (H, W, 3)
    mask : np.ndarray bool (H, W), optional
        Garment pixels (default: all). Its outermost pixel ring is dropped when
        enough remain, since boundary pixels blend with the background.
    k : int
        Number of clusters (fewer are returned when the pixels have fewer
        distinct colours). Empty clusters are dropped.

    Returns
    -------
    list of (L, a, b, weight)
        Sorted by weight, descending; weights sum to 1. Empty list when the mask
        is empty.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((10, 10, 3), 255, np.uint8)
    >>> [round(v, 1) for v in dominant_colours(img, k=3)[0]]
    [100.0, 0.0, 0.0, 1.0]
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"expected RGB (H, W, 3), got shape {rgb.shape}", field="rgb")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}", field="k", value=k)
    if mask is None:
        mask = np.ones(rgb.shape[:2], bool)
    mask = np.asarray(mask, bool)
    if mask.shape != rgb.shape[:2]:
        raise InputError(f"mask shape {mask.shape} does not match image {rgb.shape[:2]}",
                         field="mask")
    inner = ndi.binary_erosion(mask, iterations=1)
    if inner.sum() >= 50:
        mask = inner
    px = rgb[mask]
    if len(px) == 0:
        return []
    if len(px) > MAX_PIXELS:
        px = px[:: int(np.ceil(len(px) / MAX_PIXELS))]
    lab = rgb_to_lab(px).astype(np.float64)
    centres, labels = _kmeans(lab, int(k))
    counts = np.bincount(labels, minlength=len(centres)).astype(float)
    order = np.argsort(-counts, kind="stable")
    out = [(float(centres[j, 0]), float(centres[j, 1]), float(centres[j, 2]),
            float(counts[j] / counts.sum())) for j in order if counts[j] > 0]
    return out


def nearest_group(L: float, a: float, b: float) -> str:
    """The colour group of the nearest prototype to one Lab colour.

    Dark colours (L < :data:`DARK_L`) are compared by saturation, so a navy as
    dark as black is still blue.

    >>> nearest_group(15, 0, 0), nearest_group(93, 0, 4), nearest_group(30, 2, -20)
    ('GREY', 'WHITE', 'BLUE')
    >>> nearest_group(12, 2, -8), nearest_group(12, 1, -1)
    ('BLUE', 'GREY')
    """
    x = _saturation_scaled(np.array([L, a, b], dtype=float))
    d = (((_PROTO_SCALED - x) * _WEIGHTS) ** 2).sum(1)
    return str(_PROTO_GROUP[int(np.argmin(d))])


def colour_group(colours) -> str:
    """Name the colour group of a garment from its dominant colours.

    Each dominant colour votes for the group of its nearest prototype with its
    weight; the group with the most weight wins (ties: the heavier colour's).

    Parameters
    ----------
    colours : sequence of (L, a, b, weight) or of (L, a, b)
        As returned by :func:`dominant_colours` (without weights, equal votes).

    Returns
    -------
    str
        One of :data:`COLOUR_GROUPS`; ``""`` when ``colours`` is empty.

    Examples
    --------
    >>> colour_group([(12, 0, 0, 0.8), (95, 0, 2, 0.2)])
    'GREY'
    """
    votes: dict[str, float] = {}
    first: list[str] = []
    for c in colours:
        if len(c) not in (3, 4):
            raise InputError(f"a colour is (L, a, b[, weight]), got {c!r}", field="colours")
        w = float(c[3]) if len(c) == 4 else 1.0
        if not np.isfinite(w) or not all(np.isfinite(c[:3])):
            continue
        g = nearest_group(*c[:3])
        votes[g] = votes.get(g, 0.0) + w
        first.append(g)
    if not votes:
        return ""
    best = max(votes.values())
    for g in first:  # deterministic tie-break: the heavier colour's group
        if votes[g] == best:
            return g
    return first[0]


def colourfulness(rgb: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Hasler and Suesstrunk's colourfulness M of the masked pixels (0: grey).

    ``rg = R - G``, ``yb = (R + G) / 2 - B``;
    ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2)``
    on 0..255 values. About 0 for neutrals, 30-60 for typical coloured
    garments, above 100 for saturated prints.

    >>> import numpy as np
    >>> colourfulness(np.full((4, 4, 3), 128, np.uint8))
    0.0
    """
    rgb = np.asarray(rgb)
    px = rgb.reshape(-1, 3) if mask is None else rgb[np.asarray(mask, bool)]
    if len(px) == 0:
        return float("nan")
    px = px.astype(np.float64)
    rg = px[:, 0] - px[:, 1]
    yb = 0.5 * (px[:, 0] + px[:, 1]) - px[:, 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
