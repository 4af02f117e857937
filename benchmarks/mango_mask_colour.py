"""Measure the garment mask and the colour group on the real MANGO images.

Prints: how many masks fail a sanity check, overall and among WHITE items,
with the classical path alone ("before") and with the better path for
low-quality cases ("after"); how many are low-quality (< 0.5); and the
agreement of :func:`features.colour.colour_group` with ``des_agrup_color_eng``
with a confusion summary.

Usage::

    nice -n 10 python benchmarks/mango_mask_colour.py --data /work/shared/data/mango \\
        [--limit N] [--workers 2] [--cache /tmp/mango_mc.parquet]

Per-image results are cached (``--cache``) so the colour rules can be re-scored
without re-masking (``--rescore``).

``--bundle DIR`` scores a built MANGO bundle instead (seconds, no images read):
the group is recomputed with the current :func:`~features.colour.colour_group` from
the dominant Lab colours in its features table (the stored ``colour_group`` may
come from older rules), and the agreement is printed on all items and per split
of the bundle's attribute split (``models/attributes_split.parquet``, by model
code) so rule changes can be chosen on the training products alone::

    python benchmarks/mango_mask_colour.py --bundle /tmp/mb33
"""
from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

from features.colour import colour_group, dominant_colours
from features.imaging import load_rgb
from features.mask import garment_mask, sanity_failures


def _one(path: str) -> dict:
    rgb = load_rgb(path)
    r = garment_mask(rgb)
    cols = dominant_colours(rgb, r.mask, k=3)
    out = {"path": path, "quality": r.quality, "method": r.method,
           "fail_after": ",".join(sanity_failures(r.checks)),
           "q_classical": r.tried["classical"],
           "fail_before": ",".join(sanity_failures(r.tried_checks["classical"]))}
    for i in range(3):
        c = cols[i] if i < len(cols) else (np.nan,) * 4
        for j, n in enumerate("Labw"):
            out[f"c{i + 1}_{n}"] = c[j]
    return out


def _colours_of(row, name: str = "c{}_{}") -> list:
    return [tuple(row[name.format(i, n)] for n in "Labw") for i in (1, 2, 3)
            if np.isfinite(row[name.format(i, "w")])]


def _agreement(df: pd.DataFrame, label: str = "des_agrup_color_eng") -> None:
    """Print the agreement of ``df["pred"]`` with ``df[label]``, per label and confusion."""
    agree = df["pred"] == df[label]
    print(f"colour group agreement: {agree.mean():.4f} ({agree.sum()}/{len(df)})")
    per = df.groupby(label).apply(
        lambda g: pd.Series({"n": len(g), "recall": (g["pred"] == g.name).mean()}),
        include_groups=False)
    print(per.round(3).to_string())
    conf = pd.crosstab(df[label], df["pred"])
    print("confusion (rows: label, cols: predicted):")
    print(conf.to_string())


def score_bundle(bundle: Path) -> pd.DataFrame:
    """Recompute the colour group of a built bundle's items from their stored colours."""
    feats = pd.read_parquet(bundle / "features" / "features.parquet")
    cat = pd.read_parquet(bundle / "catalog.parquet", columns=["item_id", "colour"])
    df = cat.merge(feats, on="item_id")
    split = bundle / "models" / "attributes_split.parquet"
    df["split"] = (df["item_id"].map(pd.read_parquet(split).set_index("item_id")["split"])
                   if split.is_file() else "all")
    df["pred"] = [colour_group(_colours_of(r, "colour{}_{}")) for _, r in df.iterrows()]
    return df


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/mango"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/mango_mask_colour.parquet"))
    ap.add_argument("--rescore", action="store_true", help="only re-score the cache")
    ap.add_argument("--bundle", type=Path, default=None,
                    help="score a built bundle's stored colours (no masking)")
    args = ap.parse_args(argv)
    if args.bundle is not None:
        df = score_bundle(args.bundle)
        for name, part in [("all", df), *df.groupby("split")]:
            ok = part["pred"] == part["colour"]
            print(f"{name:5s} agreement {ok.mean():.4f} ({ok.sum()}/{len(part)})")
        _agreement(df, "colour")
        return 0
    prod = pd.read_csv(args.data / "product_data.csv")
    prod["path"] = [str(args.data / "images" / Path(f).name) for f in prod["des_filename"]]
    prod = prod[[Path(p).is_file() for p in prod["path"]]].reset_index(drop=True)
    if args.limit:
        prod = prod.sample(args.limit, random_state=0).reset_index(drop=True)
    if args.rescore:
        res = pd.read_parquet(args.cache)
    else:
        t0 = time.perf_counter()
        with Pool(args.workers) as pool:
            rows = pool.map(_one, prod["path"].tolist(), chunksize=16)
        res = pd.DataFrame(rows)
        res.to_parquet(args.cache)
        print(f"masked {len(res)} images in {time.perf_counter() - t0:.0f}s "
              f"({args.workers} workers)")
    df = prod.merge(res, on="path")
    white = df["des_agrup_color_eng"] == "WHITE"
    for when in ("before", "after"):
        fail = df[f"fail_{when}"].fillna("") != ""
        print(f"sanity failures {when:6s}: all {fail.sum()}/{len(df)} ({fail.mean():.1%}), "
              f"WHITE {fail[white].sum()}/{white.sum()} ({fail[white].mean():.1%})")
    for col, name in (("q_classical", "classical"), ("quality", "final")):
        low = df[col] < 0.5
        print(f"quality < 0.5 ({name:9s}): all {low.sum()} ({low.mean():.1%}), "
              f"WHITE {low[white].sum()} ({low[white].mean():.1%})")
    print("methods:", df["method"].value_counts().to_dict())
    df["pred"] = [colour_group(_colours_of(r)) for _, r in df.iterrows()]
    _agreement(df)
    return 0


if __name__ == "__main__":
    sys.exit(main())
