"""Known-answer measurement on the generated demo catalogue.

Prints the garment mask's IoU against the exact masks (mean per catalogue
category) and the silhouette keypoint estimator's FashionAI NE against the exact
keypoints (per FashionAI category), using features.fashionai.metrics.

Usage::

    python -m recommender.demo ... or generate_demo("/tmp/demo", n_items=600, seed=0)
    nice -n 10 python benchmarks/demo_perception.py --demo /tmp/demo600
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from features.fashionai.io import keypoints_from_arrays, read_keypoints_csv
from features.fashionai.metrics import normalized_error
from features.imaging import load_rgb
from features.keypoints import category_for
from features.keypoints.silhouette import estimate_keypoints
from features.mask import garment_mask


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    cat = pd.read_csv(args.demo / "catalog.csv", dtype=str, keep_default_na=False)
    cat = cat[cat["image_path"] != ""]
    if args.limit:
        cat = cat.head(args.limit)
    truth = read_keypoints_csv(args.demo / "fashionai" / "keypoints.csv")
    tcat = dict(zip(truth["image_id"], truth["image_category"]))
    ious, rows, agree = [], [], []
    pred_ids, pred_cats, pred_xy, pred_vis = [], [], [], []
    for _, r in cat.iterrows():
        rgb = load_rgb(args.demo / r["image_path"])
        truth_mask = np.asarray(Image.open(args.demo / "masks" / f"{r['item_id']}.png")) > 127
        m = garment_mask(rgb)
        inter = (m.mask & truth_mask).sum()
        union = (m.mask | truth_mask).sum()
        ious.append((r["category"], inter / union if union else 1.0, m.quality))
        kc = tcat.get(r["image_path"])
        if kc is not None:
            agree.append(category_for(r["category"], r["subcategory"]) == kc)
            xy, vis, conf = estimate_keypoints(m.mask, kc)
            pred_ids.append(r["image_path"])
            pred_cats.append(kc)
            pred_xy.append(xy)
            pred_vis.append(vis)
    df = pd.DataFrame(ious, columns=["category", "iou", "quality"])
    print(f"mask IoU over {len(df)} demo images: mean {df['iou'].mean():.4f}, "
          f"median {df['iou'].median():.4f}")
    print(df.groupby("category")["iou"].agg(["count", "mean", "min"]).round(4).to_string())
    print(f"corr(quality, IoU) = {np.corrcoef(df['quality'], df['iou'])[0, 1]:.3f}")
    print(f"keypoint category from catalogue slot/subcategory agrees with the demo's "
          f"FashionAI category: {np.mean(agree):.3f} ({sum(agree)}/{len(agree)})")
    pred = keypoints_from_arrays(pred_ids, pred_cats, np.array(pred_xy), np.array(pred_vis))
    # An absent prediction is written -1_-1_-1; the metric scores it where the
    # truth is visible, so misses count against the estimator.
    sub_truth = truth[truth["image_id"].isin(pred_ids)]
    res = normalized_error(sub_truth, pred)
    print(f"silhouette keypoints NE = {res['ne']:.4f} over {res['n_keypoints']} points, "
          f"{res['n_images']} images")
    for c, v in sorted(res["per_category"].items()):
        print(f"  {c:9s} NE {v['ne']:.4f}  points {v['n_keypoints']}  images {v['n_images']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
