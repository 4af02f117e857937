"""Contact sheet of garment masks: image | mask overlay, worst quality first.

For eyeballing the mask on a real catalogue; the sheet is a PNG.

Usage::

    python -m features.contact_sheet --images DIR [--filter white] --n 48 --out sheet.png

``--filter white`` keeps images whose product row says ``des_agrup_color_eng ==
WHITE`` (read from ``product_data.csv`` next to the images folder, MANGO layout)
and otherwise does nothing. The sample is drawn with ``--seed`` from the folder
(``--sample`` images, default 400), masked, and the ``--n`` lowest-quality shown.
"""
from __future__ import annotations

import argparse
import heapq
import sys
from pathlib import Path

import numpy as np

from features.exceptions import InputError
from features.imaging import load_rgb_alpha, resize_to
from features.mask import garment_mask, sanity_failures


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the background dimmed and tinted, the boundary in red.

    >>> import numpy as np
    >>> o = overlay(np.full((4, 4, 3), 200, np.uint8), np.eye(4, dtype=bool))
    >>> o.shape, o.dtype
    ((4, 4, 3), dtype('uint8'))
    """
    from scipy import ndimage as ndi

    out = rgb.astype(np.float32).copy()
    bgc = np.array([40, 120, 200], np.float32)
    out[~mask] = 0.45 * out[~mask] + 0.55 * bgc
    edge = mask & ~ndi.binary_erosion(mask, border_value=1)
    edge = ndi.binary_dilation(edge)
    out[edge] = (255, 0, 0)
    return np.clip(out, 0, 255).astype(np.uint8)


def white_filter(images_dir: Path) -> set[str] | None:
    """File names of WHITE products per MANGO's product table, or None if absent."""
    import pandas as pd

    table = images_dir.parent / "product_data.csv"
    if not table.is_file():
        return None
    df = pd.read_csv(table, usecols=["des_agrup_color_eng", "des_filename"])
    df = df[df["des_agrup_color_eng"] == "WHITE"]
    return {Path(f).name for f in df["des_filename"]}


def make_sheet(paths: list[Path], n: int, tile_h: int = 200) -> tuple[np.ndarray, list]:
    """Mask every path, keep the ``n`` worst by quality, return (sheet, rows)."""
    from PIL import Image, ImageDraw

    # rows[:n] with n < 0 would silently keep all but the |n| best instead
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n must be a whole number >= 1 (tiles on the sheet), got {n!r}",
                         field="n", value=n)
    # the n worst so far, on a heap whose top is the best of them: only those images
    # and masks are held (all of them were, to the end: ~0.4 MB a MANGO packshot, for
    # every image of --sample); ties keep the earlier path, as a stable sort would
    worst: list = []     # (-quality, -index, path, image, mask); (-q, -i) unique
    for i, p in enumerate(paths):
        rgb, alpha = load_rgb_alpha(p)     # a cut-out's alpha is its mask, as in features
        r = garment_mask(rgb, alpha=alpha)
        if len(worst) < n:
            heapq.heappush(worst, (-r.quality, -i, p, rgb, r))
        elif (-r.quality, -i) > worst[0][:2]:
            heapq.heapreplace(worst, (-r.quality, -i, p, rgb, r))
        del rgb, alpha, r
    rows = [(-q, p, rgb, r) for q, _, p, rgb, r in sorted(worst, reverse=True)]
    tiles = []
    for q, p, rgb, r in rows:
        h, w = rgb.shape[:2]
        tw = max(1, round(w * tile_h / h))
        a = resize_to(rgb, (tile_h, tw))
        b = resize_to(overlay(rgb, r.mask), (tile_h, tw))
        tile = Image.fromarray(np.concatenate([a, b], axis=1))
        d = ImageDraw.Draw(tile)
        fails = ",".join(sanity_failures(r.checks)) or "ok"
        d.rectangle([0, 0, 2 * tw, 24], fill=(255, 255, 255))
        d.text((2, 1), f"{p.stem[-14:]} q={q:.2f} {r.method}", fill=(0, 0, 0))
        d.text((2, 12), fails[:40], fill=(200, 0, 0))
        tiles.append(np.asarray(tile))
    if not tiles:
        return np.zeros((tile_h, tile_h, 3), np.uint8), rows
    tw_max = max(t.shape[1] for t in tiles)
    cols = 6
    nrow = (len(tiles) + cols - 1) // cols
    sheet = np.full((nrow * (tile_h + 4), cols * (tw_max + 4), 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        y, x = (i // cols) * (tile_h + 4), (i % cols) * (tw_max + 4)
        sheet[y:y + t.shape[0], x:x + t.shape[1]] = t
    return sheet, rows


def _positive_int(text: str) -> int:
    """argparse type of ``--n`` and ``--sample``: a count of at least one."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    ap = argparse.ArgumentParser(prog="python -m features.contact_sheet",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, type=Path, help="folder of images")
    ap.add_argument("--filter", choices=["white"], default=None)
    # a negative --n kept all but the best |n| (rows[:n]); a negative --sample was a
    # numpy traceback: both are refused by name (argparse: exit 2)
    ap.add_argument("--n", type=_positive_int, default=48, help="tiles on the sheet")
    ap.add_argument("--sample", type=_positive_int, default=400,
                    help="images masked to pick from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    if not args.images.is_dir():
        ap.error(f"--images: no such folder: {args.images}")
    paths = sorted(p for p in args.images.iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if args.filter == "white":
        names = white_filter(args.images)
        if names is None:
            print("--filter white: no product_data.csv beside the images folder",
                  file=sys.stderr)
            return 2
        paths = [p for p in paths if p.name in names]
    rng = np.random.default_rng(args.seed)
    if len(paths) > args.sample:
        paths = [paths[i] for i in sorted(rng.choice(len(paths), args.sample,
                                                     replace=False))]
    sheet, rows = make_sheet(paths, args.n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out)
    fails = sum(bool(sanity_failures(r.checks)) for *_, r in rows)
    print(f"{len(paths)} images masked; sheet of the {len(rows)} worst -> {args.out} "
          f"({fails} of them fail a sanity check)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
