"""Throughput of feature extraction on the MANGO catalogue, per stage and overall.

Part 1 (one process, per image): plain image decoding (the baseline: PIL
decode only), then each stage -- load (decode + RGB array + shrink), mask,
colours, keypoints (silhouette, apparel only), shape -- timed separately;
images/second per stage, overall, and overall time relative to the baseline.

Part 2: the real :func:`features.extract.extract_features` on the same items
with 1 and with 2 worker processes (wall clock), and the projected time for
the full catalogue.

The machine is shared: the load average (``uptime``) is printed before and after.

Usage::

    nice -n 10 python benchmarks/extract_throughput.py --data /work/shared/data/mango \\
        [--limit N] [--skip-extract]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None) -> int:
    from PIL import Image

    from features.colour import colour_group, colourfulness, dominant_colours
    from features.extract import extract_features
    from features.imaging import load_rgb
    from features.keypoints import category_for
    from features.keypoints.silhouette import estimate_keypoints
    from features.mask import garment_mask
    from features.shape import shape_features
    from recommender.adapters.mango import load_mango

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/mango"))
    ap.add_argument("--limit", type=int, default=None, help="items (default: all)")
    ap.add_argument("--skip-extract", action="store_true")
    ap.add_argument("--max-side", type=int, default=512)
    args = ap.parse_args(argv)

    print("before:", _uptime(), flush=True)
    catalog, _, root = load_mango(args.data)
    catalog = catalog[catalog["image_path"] != ""].reset_index(drop=True)
    n_all = len(catalog)
    if args.limit and args.limit < n_all:
        catalog = catalog.sample(args.limit, random_state=0).reset_index(drop=True)
    paths = [Path(root) / p for p in catalog["image_path"]]
    paths_ok = [p for p in paths if p.is_file()]
    n = len(paths_ok)
    print(f"{n} images (catalogue has {n_all} with an image path)", flush=True)

    t = {k: 0.0 for k in ("decode", "load", "mask", "colours", "keypoints", "shape")}
    n_kp = 0
    for p, slot, sub in zip(paths_ok, catalog["category"], catalog["subcategory"]):
        t0 = time.perf_counter()
        with Image.open(p) as im:
            im.load()
        t1 = time.perf_counter()
        rgb = load_rgb(p, max_side=args.max_side)
        t2 = time.perf_counter()
        m = garment_mask(rgb)
        t3 = time.perf_counter()
        cols = dominant_colours(rgb, m.mask)
        colour_group(cols)
        colourfulness(rgb, m.mask)
        t4 = time.perf_counter()
        kc = category_for(slot, sub)
        if kc is not None:
            xy, vis, conf = estimate_keypoints(m.mask, kc)
            t5 = time.perf_counter()
            shape_features(xy, vis, kc)
            t6 = time.perf_counter()
            n_kp += 1
        else:
            t5 = t6 = t4
        for k, a, b in (("decode", t0, t1), ("load", t1, t2), ("mask", t2, t3),
                        ("colours", t3, t4), ("keypoints", t4, t5), ("shape", t5, t6)):
            t[k] += b - a
    total = sum(v for k, v in t.items() if k != "decode")
    print("\nper stage, one process (images/second over the images the stage ran on):")
    for k, v in t.items():
        cnt = n_kp if k in ("keypoints", "shape") else n
        print(f"  {k:10s} {cnt / max(v, 1e-9):9.1f} img/s   ({v:7.1f} s over {cnt} images)")
    print(f"  overall    {n / total:9.1f} img/s   ({total:7.1f} s); "
          f"{total / max(t['decode'], 1e-9):.1f}x the plain-decoding time")

    if not args.skip_extract:
        print("\nextract_features (all stages, part files, assembly):", flush=True)
        rates = {}
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                s = extract_features(catalog, root, tmp, progress=False, workers=workers,
                                     max_side=args.max_side)
                dt = time.perf_counter() - t0
            rates[workers] = len(catalog) / dt
            print(f"  workers={workers} (used {s['workers']}): {dt:7.1f} s, "
                  f"{rates[workers]:6.1f} img/s, failed {s['n_failed']}", flush=True)
        best = max(rates.values())
        print(f"  speed-up with 2 processes: {rates[2] / rates[1]:.2f}x; projected full "
              f"catalogue ({n_all} items) at {best:.1f} img/s: {n_all / best / 60:.1f} min")
    print("\nafter:", _uptime())
    return 0


if __name__ == "__main__":
    sys.exit(main())
