"""FashionAI keypoints from a garment mask alone, by geometric rules.

For packshots where no trained detector fits. The rules read the silhouette:

* the row profile (left-most / right-most mask pixel of each row and the runs of
  mask pixels in it) gives the torso's side edges (median over the lower rows),
* **gaps**: background reaching into the silhouette from below between two
  parts of it; the top of the central gap of trousers is the **crotch**, the
  top of the gap between a hanging sleeve and the torso is an **armpit**,
* without such a gap, an armpit is where the side contour, coming back from a
  sleeve that sticks out, meets the torso edge (or, sleeveless, where the
  armhole curve reaches it),
* **shoulders** where the torso's side edges meet the top contour, **neckline**
  corners at the highest points of the top contour on each side of the centre,
  ``center_front`` where the top contour crosses the centre line,
* **cuffs** at the sleeve's extremity (the sleeve pixels farthest from the
  shoulder), ``out`` and ``in`` across the sleeve's direction,
* **waistband** and **hem** corners at the extremes of the top and bottom rows,
  the **waistline** at the narrowest torso row between armpits and hem, the
  trouser **bottoms** at each leg's lowest row.

FashionAI's left/right are image left/right (checked on the real labels:
``waistband_left`` has the smaller x in >99.9% of rows).

Examples
--------
>>> import numpy as np
>>> m = np.zeros((100, 80), bool); m[10:90, 20:60] = True
>>> xy, vis, conf = estimate_keypoints(m, "skirt")
>>> from features.fashionai.schema import KEYPOINT_INDEX as K
>>> xy[K["waistband_left"]].tolist(), xy[K["hemline_right"]].tolist()
([20.0, 10.0], [59.0, 89.0])
>>> int(vis[K["crotch"]]), float(conf[K["waistband_left"]]) > 0.5
(-1, True)
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from features.exceptions import InputError
from features.fashionai.schema import (CATEGORY_KEYPOINTS, KEYPOINT_CATEGORIES,
                                       KEYPOINT_INDEX, KEYPOINT_NAMES)

K = KEYPOINT_INDEX
N_POINTS = len(KEYPOINT_NAMES)


class _Points:
    """Collects estimated points; only the category's points are kept."""

    def __init__(self, category: str):
        self.allowed = set(CATEGORY_KEYPOINTS[category])
        self.xy = np.full((N_POINTS, 2), -1.0)
        self.vis = np.full(N_POINTS, -1, dtype=int)
        self.conf = np.zeros(N_POINTS)

    def set(self, name: str, x, y, conf: float) -> None:
        if name not in self.allowed or x is None or y is None:
            return
        i = K[name]
        self.xy[i] = (float(x), float(y))
        self.vis[i] = 1
        self.conf[i] = float(np.clip(conf, 0.0, 1.0))


def _main_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask, structure=np.ones((3, 3)))
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    # Keep every component at least a fifth of the largest (two legs cut apart,
    # a detached sleeve), drop specks.
    keep = np.nonzero(sizes >= 0.2 * sizes.max())[0]
    return np.isin(lab, keep)


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """(start, end inclusive) of each run of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    starts = np.nonzero(d == 1)[0]
    ends = np.nonzero(d == -1)[0] - 1
    return list(zip(starts.tolist(), ends.tolist()))


def _run_at(row: np.ndarray, x: float):
    """The run of ``row`` containing column ``x`` (or the nearest run)."""
    runs = _runs(row)
    if not runs:
        return None
    best = min(runs, key=lambda r: 0 if r[0] <= x <= r[1] else min(abs(r[0] - x),
                                                                   abs(r[1] - x)))
    return best


def _edge_row(mask: np.ndarray, y: int, side: str):
    xs = np.nonzero(mask[y])[0]
    if len(xs) == 0:
        return None
    return int(xs.min()) if side == "left" else int(xs.max())


def _apex(ys: np.ndarray, xs: np.ndarray, top: int, bottom: int, y_min: int = 0,
          span: int = 40):
    """Where the two walls of a wedge-shaped pocket meet, extrapolated upward.

    The narrow tip of a wedge (between the legs, under a sleeve) is closed by
    the mask's smoothing and the image's blur, so the pocket's first row lies
    below the true apex. Straight lines fitted to the pocket's left and right
    walls over its upper ``span`` rows meet at the apex. Returns (x, y), or
    (None, None) when the pocket is too shallow to fit its walls.

    The extrapolation is trusted nearly in full up to about ``reach`` (half
    the pocket's depth) above its first row, and less and less beyond, so that
    walls that barely converge (meeting far above) give about the first row;
    walls that do not converge upward give the first row. A hard cut (the apex
    up to ``reach``, else the first row) made the point jump by tens of rows
    between two nearly equal masks: walls that diverge slowly meet far above,
    and a pixel of noise on a wall moved the meeting point across the cut (on
    MANGO trousers, ±1 grey level of noise moved the crotch by up to 20% of the
    garment's height). Never above ``y_min`` (the garment's top row).
    """
    depth = bottom - top + 1
    n = max(4, min(depth, span))
    # Each row's left-most and right-most pixel at once: the pixels come in
    # row order (np.nonzero), so a row's are one run of the arrays.
    sel = ys < top + n
    yy, xx = ys[sel], xs[sel]
    starts = np.flatnonzero(np.diff(yy, prepend=yy[0] - 1))
    if len(starts) < 4:
        return None, None
    ry = yy[starts].astype(float)
    lx = np.minimum.reduceat(xx, starts).astype(float)
    rx = np.maximum.reduceat(xx, starts).astype(float)
    x_top = float(xs[ys == top].mean())
    bl, al = np.polyfit(ry, lx, 1)
    br, ar = np.polyfit(ry, rx, 1)
    if br - bl <= 0:  # walls not diverging downward: no wedge
        return x_top, float(top)
    y = (al - ar) / (br - bl)
    x = al + bl * y
    # How far above the first row the walls meet (below it: the first row).
    up = max(0.0, top - y)
    reach = 0.5 * depth + 2
    # Soft saturation: about ``up`` while well inside ``reach``, falling back
    # towards the first row beyond it. It never moves by more than ``up`` does,
    # so a pixel of noise on a wall cannot make it jump.
    t = up / (1.0 + (up / reach) ** 4)
    ya = max(top - t, float(min(y_min, top)))
    frac = (top - ya) / up if up > 0 else 0.0
    return float(x_top + frac * (x - x_top)), float(ya)


def _gap_tops(mask: np.ndarray, y0: int, y1: int):
    """Background pockets open to the bottom between parts of the silhouette.

    Returns a list of (top_y, top_x, depth_rows, mean_x, apex_x, apex_y) for every
    connected
    pocket of background lying strictly between the left-most and right-most
    mask pixels of its rows and connected to the area below the garment.
    """
    h, w = mask.shape
    rows = np.arange(h)
    has = mask.any(1)
    left = np.where(has, mask.argmax(1), w)
    right = np.where(has, w - 1 - mask[:, ::-1].argmax(1), -1)
    inside = (np.arange(w)[None, :] > left[:, None]) & (np.arange(w)[None, :] < right[:, None])
    pocket = inside & ~mask
    lab, n = ndi.label(pocket)
    out = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        comp = lab[sl] == i
        ys, xs = np.nonzero(comp)
        ys, xs = ys + sl[0].start, xs + sl[1].start
        bottom = ys.max()
        # Open to the bottom: below its lowest pixels lies background outside
        # the silhouette's row extent (or nothing: the garment ended).
        below = bottom + 1
        bx = xs[ys == bottom]
        if below <= y1 and not (~inside[below, bx] & ~mask[below, bx]).any():
            continue  # closed below: a dip in the top contour or a hole
        top = ys.min()
        top_xs = xs[ys == top]
        # The walls over 30% of the garment's height: a fixed count of rows (40,
        # before) read a different part of the wedge when the same photo came
        # larger, and the longer fit is steadier under a wall's ragged pixels.
        ax, ay = _apex(ys, xs, top, bottom, y0, span=int(round(0.3 * (y1 - y0 + 1))))
        if ay is None:
            ax, ay = float(top_xs.mean()), float(top)
        out.append((int(top), float(top_xs.mean()), int(bottom - top + 1), float(xs.mean()),
                    ax, ay))
    return out


def _solid_row(mask, y0, y1, H, from_top: bool) -> int:
    """The outermost row (top or bottom) that is a real edge of the garment.

    A tiny protrusion (a label, a bow, a slightly uneven hem) must not become
    the corner row: take the outermost row at least 60% as wide as the median
    row of the outer 12% of the garment.
    """
    band = max(2, int(round(0.12 * H)))
    rows = range(y0, min(y0 + band, y1 + 1)) if from_top else range(y1, max(y1 - band, y0 - 1), -1)
    rows = list(rows)
    widths = np.array([np.count_nonzero(mask[y]) for y in rows])
    ref = np.median(widths)
    for y, wd in zip(rows, widths):
        if wd >= 0.6 * ref:
            return y
    return rows[0]


def _edge_corners(mask, y0, y1, H, top: bool, weight: float):
    """The outermost solid row (see :func:`_solid_row`) and the two corners of
    the edge there, ``[(x, y) left, (x, y) right]``, or None without pixels.

    Each corner is the extreme mask pixel in a diagonal direction (for the left
    corner the least ``x + weight * rows inward``), among the rows from
    the solid row 20% of the height inward: so a curved edge's corners, which
    sit further in than its middle, are found where they are, and a ragged
    edge's last rows (a speck, a thread) cannot decide them.
    """
    y = _solid_row(mask, y0, y1, H, from_top=top)
    span = max(2, int(round(0.2 * H)))
    rows = slice(y, min(y + span, y1) + 1) if top else slice(max(y - span, y0), y + 1)
    ys, xs = np.nonzero(mask[rows])
    if len(ys) == 0:
        return y, None
    ys = ys + rows.start
    inward = (ys - y) if top else (y - ys)      # 0 on the outermost row, growing inward
    out = []
    for sx in (1.0, -1.0):
        i = int(np.argmin(sx * xs + weight * inward))
        out.append((int(xs[i]), int(ys[i])))
    return y, out


def _corners(P: _Points, mask, y0, y1, H, name: str, top: bool):
    """The two corners of the top (waistband) or bottom (hem) edge
    (:func:`_edge_corners`): left and 0.5 down for the bottom-left corner, left
    and 2 up for the top-left."""
    # A waistband is a straight top edge over a body that may flare: stay near
    # the top row. A hem curves up at its corners: follow them further.
    _, corners = _edge_corners(mask, y0, y1, H, top, weight=2.0 if top else 0.5)
    if corners is None:
        return
    for side, (x, y) in zip(("left", "right"), corners):
        P.set(f"{name}_{side}", x, y, 0.85)


def _trousers(P: _Points, mask, y0, y1, H, W):
    _corners(P, mask, y0, y1, H, "waistband", top=True)
    gaps = _gap_tops(mask, y0, y1)
    # The centre line from the waistband's rows (2-10% down: the median row
    # midpoint, see _centre_x). One row just under the top, as before, was a
    # label's or a belt loop's when it stuck up a row more: the centre moved
    # onto it, the central gap was no longer near it, and the crotch went to a
    # belt's end hanging beside a leg. A mask one row high has only that row.
    yc = y0 + 1 if y0 + 1 <= y1 and mask[y0 + 1].any() else y0
    cx = _centre_x(mask, y0, H,
                   0.5 * (_edge_row(mask, yc, "left") + _edge_row(mask, yc, "right")))
    central = [g for g in gaps if g[2] >= 0.05 * H]
    if not central:
        return
    near = [g for g in central if abs(g[3] - cx) < 0.25 * W] or central
    g = max(near, key=lambda g: (g[2], -abs(g[3] - cx)))
    crotch_y, crotch_x, depth = g[5], g[4], g[2]
    # A deep gap is a clear cue; a shallow one may be a slit or a fold.
    P.set("crotch", crotch_x, crotch_y, 0.5 + 0.45 * min(1.0, depth / (0.4 * H)))
    # Each leg's opening: the corners of its bottom edge, as a hem's, on its
    # lowest solid row. The two ends of the row 1% of the height above the
    # leg's lowest pixel, as before, were a thread's or a ragged hem's when
    # that pixel hung below the rest: one row more of it moved bottom_in by a
    # leg's width.
    yc = int(np.ceil(crotch_y))
    cols = np.arange(mask.shape[1])
    for side, keep in (("left", cols < crotch_x), ("right", cols > crotch_x)):
        leg = mask[yc:] & keep          # rows from the crotch's down
        rows = np.nonzero(leg.any(1))[0]
        if len(rows) == 0:
            continue
        yb, corners = _edge_corners(leg, int(rows[0]), int(rows[-1]), H,
                                    top=False, weight=0.5)
        if corners is None:
            continue
        (xl, _), (xr, _) = corners
        out_x, in_x = (xl, xr) if side == "left" else (xr, xl)
        P.set(f"bottom_{side}_out", out_x, yc + yb, 0.8)
        P.set(f"bottom_{side}_in", in_x, yc + yb, 0.75)


def _concave_corner(edge: np.ndarray, y0: int, H: int, side: str,
                    rows: tuple[float, float] | None = None):
    """Row of the sharpest concave turn of a side contour ``edge[y]`` (x per row).

    Looks in ``rows`` (first, last) or else the upper 60% of the garment, below its
    first 8%. The turn at row y is the cross product of the contour's directions
    before and after it over a step of 5% of the height; for the left side concave
    is negative.
    """
    s = max(2, int(round(0.05 * H)))
    lo, hi = rows if rows is not None else (y0 + max(s, int(0.08 * H)), y0 + int(0.6 * H))
    ys = np.arange(int(lo), int(hi) + 1)
    ys = ys[(ys - s >= 0) & (ys + s < len(edge))]
    if len(ys) == 0:
        return None
    x = edge.astype(float)
    v1x, v2x = x[ys] - x[ys - s], x[ys + s] - x[ys]
    cross = (v1x * s - s * v2x) / (np.hypot(v1x, s) * np.hypot(v2x, s))
    if side == "right":
        cross = -cross
    i = int(np.argmin(cross))
    return int(ys[i]) if cross[i] < -0.1 else None


def _top_width(mask: np.ndarray, y0: int, H: int) -> float:
    """Median width (extent of the mask) of the rows 5-15% down the garment."""
    widths = []
    for y in range(y0 + int(0.05 * H), y0 + max(int(0.15 * H), int(0.05 * H) + 1)):
        xs = np.nonzero(mask[y])[0]
        if len(xs):
            widths.append(xs.max() - xs.min() + 1)
    return float(np.median(widths)) if widths else float(H)


#: Marks the side whose armpit was mirrored from the other side's pocket.
MIRRORED = "mirrored"


def _centre_x(mask: np.ndarray, y0: int, H: int, default: float) -> float:
    """The garment's symmetry axis from its top rows (neck and shoulder line), which
    no hanging sleeve reaches: the median midpoint of each row's extent."""
    rows = range(y0 + max(1, int(0.02 * H)), y0 + max(2, int(0.1 * H)))
    mids = []
    for y in rows:
        xs = np.nonzero(mask[y])[0]
        if len(xs):
            mids.append(0.5 * (xs.min() + xs.max()))
    return float(np.median(mids)) if mids else default


def _tops(P: _Points, mask, y0, y1, H, W, category):
    h, w = mask.shape
    has = mask.any(1)
    # An empty row inside the garment (a separate piece above the body) takes the
    # contour of the nearest row above it: a placeholder x there would read as a
    # sleeve sticking out on one side and land points off the image.
    src = np.maximum.accumulate(np.where(has, np.arange(h), 0))
    left = mask.argmax(1)[src]
    right = (w - 1 - mask[:, ::-1].argmax(1))[src]
    ys_all, xs_all = np.nonzero(mask)
    # The centre line from the upper body (a flared skirt or one long sleeve
    # would shift a whole-mask estimate).
    upper = ys_all < y0 + 0.4 * H
    cx = float(np.median(xs_all[upper])) if upper.any() else float(np.median(xs_all))
    # Torso side edges just below the armpit region, where sleeves are usually
    # clear of the body: the run containing the centre line.
    tl, tr = [], []
    for y in range(y0 + int(0.3 * H), y0 + int(0.5 * H) + 1):
        r = _run_at(mask[y], cx)
        if r is not None and r[0] <= cx <= r[1]:
            tl.append(r[0])
            tr.append(r[1])
    if not tl:
        return
    xl_t, xr_t = float(np.median(tl)), float(np.median(tr))
    tw = max(xr_t - xl_t, 1.0)
    tol = max(2.0, 0.04 * tw)

    # -- armpits -------------------------------------------------------------
    # A sleeve (hanging or angled down) leaves a pocket of background between
    # its underside and the torso, open downwards; the armpit is its top.
    gaps = _gap_tops(mask, y0, y1)
    armpit, pocket = {}, {}
    for side in ("left", "right"):
        cand = [g for g in gaps if g[2] >= 0.04 * H and g[0] < y0 + 0.65 * H
                and (g[3] < cx if side == "left" else g[3] > cx)]
        if cand:
            g = max(cand, key=lambda g: (g[2], -g[0]))
            armpit[side] = (g[4], g[5], 0.5 + 0.3 * min(1.0, g[2] / (0.2 * H)))
            pocket[side] = g
            continue
        edge = left if side == "left" else right
        out = (xl_t - edge) if side == "left" else (edge - xr_t)  # >0: sticks out
        rows = np.arange(y0, y0 + int(0.6 * H))
        sticking = rows[out[rows] > tol]
        last = None
        if len(sticking) >= max(2, 0.03 * H):
            # The first run of rows from the top (a flared skirt lower down
            # sticks out too, but is not the sleeve).
            breaks = np.nonzero(np.diff(sticking) > 1)[0]
            last = int(sticking[breaks[0]] if len(breaks) else sticking[-1])
            # A dress's sleeve ends in a step (its underside); the bodice of a
            # sleeveless dress tapering to the waist only drifts inward row by
            # row. (Not for tops: their short spread sleeves have slanted
            # undersides, and their bodies do not taper.)
            below = min(last + max(2, int(round(0.03 * H))), y1)
            if category == "dress" and out[last] - out[below] < 0.08 * tw:
                last = None
        if last is not None:
            y = min(last + 1, y1)
            armpit[side] = (float(edge[y]), y, 0.6)
            pocket[side] = None
        else:
            # Sleeveless: the armhole curve meets the side seam in a concave
            # corner; find the sharpest inward turn of the side contour at armhole
            # depth (a dress's waist lower down turns more sharply), measured in
            # chest widths A: the width across the top of a sleeveless garment.
            # A straight-sided armhole shows no corner: the armpit then sits at
            # the usual depth, 0.57 A below the top (shoulder drop 0.07 + armhole
            # 0.5, the median proportions of laid-flat tops).
            A = _top_width(mask, y0, H)
            y = _concave_corner(edge, y0, H, side, (y0 + 0.3 * A, y0 + 0.9 * A))
            conf = 0.45
            if y is None:
                y, conf = min(int(round(y0 + 0.57 * A)), y1), 0.3
            armpit[side] = (float(edge[y]), y, conf)
    # A garment laid flat is symmetric: its armpits mirror each other about the
    # centre line. A sleeve hanging flush against the body leaves no pocket on its
    # side, and the fallbacks above then land on the sleeve; when exactly one side
    # has a pocket, mirror it (on the demo catalogue 1 in 5 tops has one such side).
    found = [sd for sd in ("left", "right") if pocket.get(sd) is not None]
    if len(found) == 1:
        sd = found[0]
        other = "right" if sd == "left" else "left"
        x, y, c = armpit[sd]
        # Never past the garment's own extent: an off-centre axis (a collar turned
        # aside) would mirror the point off the garment, even off the image.
        xm = float(np.clip(2 * _centre_x(mask, y0, H, cx) - x, xs_all.min(), xs_all.max()))
        armpit[other] = (xm, y, 0.8 * c)
        pocket[other] = MIRRORED
    for side, (x, y, c) in armpit.items():
        P.set(f"armpit_{side}", x, y, c)

    # -- shoulders, neckline ---------------------------------------------------
    top = np.where(mask.any(0), mask.argmax(0), h)
    for side, xe in (("left", xl_t), ("right", xr_t)):
        # Above the armpit where there is one: the shoulder seam ends there.
        xs_ = armpit[side][0] if side in armpit else xe
        x = int(np.clip(round(xs_), 0, w - 1))
        if top[x] < h:
            P.set(f"shoulder_{side}", x, top[x], 0.55)
    sl_x = P.xy[K["shoulder_left"]][0] if P.vis[K["shoulder_left"]] >= 0 else xl_t
    sr_x = P.xy[K["shoulder_right"]][0] if P.vis[K["shoulder_right"]] >= 0 else xr_t
    a, b = int(sl_x + 0.1 * (cx - sl_x)), int(cx - 0.04 * tw)
    c_, d = int(cx + 0.04 * tw), int(sr_x - 0.1 * (sr_x - cx))
    for side, (s, e) in (("left", (a, b)), ("right", (c_, d))):
        if e <= s:
            continue
        seg = top[s:e + 1]
        if seg.min() >= h:
            continue
        best = seg.min()
        cols = np.nonzero(seg <= best + 1)[0] + s
        x = cols.max() if side == "left" else cols.min()  # the corner nearest the neck
        P.set(f"neckline_{side}", x, top[x], 0.5)
    xc = int(round(cx))
    if top[xc] < h:
        P.set("center_front", xc, top[xc], 0.3)

    # -- hem and waistline -------------------------------------------------------
    yb_torso = None
    for y in range(y1, y0, -1):
        r = _run_at(mask[y], cx)
        if r is not None and r[0] <= cx <= r[1]:
            yb_torso = y
            break
    if yb_torso is not None:
        yb = max(yb_torso - max(1, int(round(0.01 * H))), y0)
        r = _run_at(mask[yb], cx)
        hem = "hemline" if category == "dress" else "top_hem"
        if r is not None:
            P.set(f"{hem}_left", r[0], yb_torso, 0.8)
            P.set(f"{hem}_right", r[1], yb_torso, 0.8)
        ya = min((v[1] for v in armpit.values()), default=y0 + 0.25 * H)
        best, best_y = None, None
        if category == "dress":
            # A dress is cut in at the waist: its narrowest row below the armpits.
            s, e = int(ya + 0.1 * (yb - ya)), int(ya + 0.55 * (yb - ya))
            for y in range(s, max(e, s + 1)):
                r = _run_at(mask[y], cx)
                if r is not None and (best is None or r[1] - r[0] < best[1] - best[0]):
                    best, best_y = r, y
        else:
            # Outerwear hangs straight or widens from the armpits down, so its
            # narrowest row is just the top of any search window; its waistline
            # sits at the usual waist drop, 0.6 armpit widths below the armpits
            # (at most halfway to the hem), on the side contour.
            if len(armpit) == 2:
                width = abs(armpit["right"][0] - armpit["left"][0])
            else:
                width = tw
            best_y = int(round(min(ya + 0.6 * width, ya + 0.5 * (yb - ya))))
            best = _run_at(mask[min(max(best_y, y0), y1)], cx)
        if best is not None:
            P.set("waistline_left", best[0], best_y, 0.4)
            P.set("waistline_right", best[1], best_y, 0.4)

    # -- cuffs -----------------------------------------------------------------
    for side in ("left", "right"):
        sh = P.xy[K[f"shoulder_{side}"]]
        if P.vis[K[f"shoulder_{side}"]] < 0 or side not in armpit:
            continue
        ax, ay = armpit[side][0], armpit[side][1]
        if side not in pocket:
            # Sleeveless: FashionAI puts the "cuff" on the armhole, its inner end
            # at the armpit and its outer end at the shoulder.
            P.set(f"cuff_{side}_in", ax, ay, 0.3)
            P.set(f"cuff_{side}_out", *sh, 0.3)
            continue
        sel = (xs_all < ax - tol) if side == "left" else (xs_all > ax + tol)
        g = pocket[side]
        if g is MIRRORED:   # the sleeve is as long as the other side's
            g = pocket["right" if side == "left" else "left"]
        # The sleeve ends where its pocket opens (a flared body further down is
        # not sleeve); a spread sleeve lies above its armpit.
        sel &= ys_all <= (g[0] + g[2] if g is not None else ay)
        if sel.sum() < 5:
            continue
        px = np.stack([xs_all[sel], ys_all[sel]], 1).astype(float)
        # The sleeve's axis is the principal direction of its pixels, pointing
        # away from the shoulder; the cuff is the slab of pixels at its far end.
        centred = px - px.mean(0)
        _, vecs = np.linalg.eigh(centred.T @ centred)
        u = vecs[:, -1]
        if u @ (px.mean(0) - sh) < 0:
            u = -u
        proj = (px - sh) @ u
        band = px[proj >= proj.max() - max(2.0, 0.03 * H)]
        n = np.array([-u[1], u[0]]) if side == "left" else np.array([u[1], -u[0]])
        # Ties across the sleeve are broken towards the sleeve's far end.
        P.set(f"cuff_{side}_out", *band[np.argmax(band @ n + 1e-3 * (band @ u))], 0.55)
        P.set(f"cuff_{side}_in", *band[np.argmin(band @ n - 1e-3 * (band @ u))], 0.5)


def estimate_keypoints(mask: np.ndarray, category: str
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate the FashionAI keypoints of ``category`` from a garment mask.

    Parameters
    ----------
    mask : np.ndarray of bool, (H, W)
        Garment mask (e.g. :func:`features.mask.garment_mask`).
    category : str
        One of ``blouse``, ``outwear``, ``dress``, ``skirt``, ``trousers``.

    Returns
    -------
    xy : float (24, 2)
        Pixel coordinates; ``-1`` for points not estimated.
    vis : int (24,)
        1 where estimated, -1 elsewhere (every point outside the category's
        subset, and points whose cue is absent, e.g. a crotch without a gap).
    conf : float (24,)
        0..1, how clear the cue of each point is (0 where not estimated).

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((60, 60), bool); m[5:20, 10:50] = True
    >>> m[20:55, 10:28] = True; m[20:55, 32:50] = True       # two legs
    >>> xy, vis, conf = estimate_keypoints(m, "trousers")
    >>> from features.fashionai.schema import KEYPOINT_INDEX as K
    >>> xy[K["crotch"]].tolist(), xy[K["bottom_left_in"]].tolist()
    ([29.5, 20.0], [27.0, 54.0])
    """
    if category not in KEYPOINT_CATEGORIES:
        raise InputError(f"unknown keypoint category {category!r}", field="category",
                         value=category, allowed=KEYPOINT_CATEGORIES)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"mask must be 2-D, got shape {mask.shape}", field="mask")
    mask = mask.astype(bool)
    P = _Points(category)
    if mask.sum() < 20:
        return P.xy, P.vis, P.conf
    mask = _main_component(mask)
    ys = np.nonzero(mask.any(1))[0]
    xs = np.nonzero(mask.any(0))[0]
    y0, y1 = int(ys.min()), int(ys.max())
    H, W = y1 - y0 + 1, xs.max() - xs.min() + 1
    if category == "skirt":
        _corners(P, mask, y0, y1, H, "waistband", top=True)
        _corners(P, mask, y0, y1, H, "hemline", top=False)
    elif category == "trousers":
        _trousers(P, mask, y0, y1, H, W)
    else:
        _tops(P, mask, y0, y1, H, W, category)
    return P.xy, P.vis, P.conf
