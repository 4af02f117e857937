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

    stages = ("decode", "load", "mask", "colours", "keypoints", "shape")
    t = {k: 0.0 for k in stages}      # wall clock
    c = {k: 0.0 for k in stages}      # CPU time of this process (robust to a loaded machine)
    n_kp = 0
    clock = lambda: (time.perf_counter(), time.process_time())  # noqa: E731
    for p, slot, sub in zip(paths_ok, catalog["category"], catalog["subcategory"]):
        marks = [clock()]
        with Image.open(p) as im:
            im.load()
        marks.append(clock())
        rgb = load_rgb(p, max_side=args.max_side)
        marks.append(clock())
        m = garment_mask(rgb)
        marks.append(clock())
        cols = dominant_colours(rgb, m.mask)
        colour_group(cols)
        colourfulness(rgb, m.mask)
        marks.append(clock())
        kc = category_for(slot, sub)
        if kc is not None:
            xy, vis, conf = estimate_keypoints(m.mask, kc)
            marks.append(clock())
            shape_features(xy, vis, kc)
            marks.append(clock())
            n_kp += 1
        else:
            marks += [marks[-1], marks[-1]]
        for i, k in enumerate(stages):
            t[k] += marks[i + 1][0] - marks[i][0]
            c[k] += marks[i + 1][1] - marks[i][1]
    total = sum(v for k, v in t.items() if k != "decode")
    ctotal = sum(v for k, v in c.items() if k != "decode")
    print("\nper stage, one process (images/second over the images the stage ran on;"
          " wall clock, and CPU time of this process):")
    for k in stages:
        cnt = n_kp if k in ("keypoints", "shape") else n
        print(f"  {k:10s} wall {cnt / max(t[k], 1e-9):8.1f} img/s ({t[k]:7.1f} s)   "
              f"cpu {cnt / max(c[k], 1e-9):8.1f} img/s ({c[k]:7.1f} s)  over {cnt} images")
    print(f"  overall    wall {n / total:8.1f} img/s ({total:7.1f} s)   "
          f"cpu {n / ctotal:8.1f} img/s ({ctotal:7.1f} s); "
          f"{ctotal / max(c['decode'], 1e-9):.1f}x the plain-decoding CPU time")
    print(f"  CPU-bound projection, full catalogue ({n_all} items) on 2 cores: "
          f"{n_all * ctotal / n / 2 / 60:.1f} min")

    if not args.skip_extract:
        print("\nextract_features (all stages, part files, assembly):", flush=True)
        import resource

        rates = {}
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                s = extract_features(catalog, root, tmp, progress=False, workers=workers,
                                     max_side=args.max_side)
                dt = time.perf_counter() - t0
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
                   + k1.ru_utime + k1.ru_stime - k0.ru_utime - k0.ru_stime)
            rates[workers] = len(catalog) / dt
            print(f"  workers={workers} (used {s['workers']}): wall {dt:7.1f} s, "
                  f"{rates[workers]:6.1f} img/s; CPU {cpu:7.1f} s "
                  f"({len(catalog) / max(cpu, 1e-9):.1f} img/s per core); "
                  f"failed {s['n_failed']}", flush=True)
        best = max(rates.values())
        print(f"  speed-up with 2 processes: {rates[2] / rates[1]:.2f}x; projected full "
              f"catalogue ({n_all} items) at {best:.1f} img/s: {n_all / best / 60:.1f} min")
    print("\nafter:", _uptime())
    return 0


if __name__ == "__main__":
    sys.exit(main())
