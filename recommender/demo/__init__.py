"""The generated demo catalogue: the default for a fresh machine and the known answer
for every other part's tests.

``mixmatch demo --out DIR --items N --seed S`` writes packshots (PIL) of every
outfit slot with exact masks, exact FashionAI keypoints and attribute labels,
a canonical ``catalog.csv`` and outfits composed by a documented style grammar
(:mod:`recommender.demo.grammar`). Deterministic by seed. Above 20,000 items it
writes the table form (Parquet as well, images for a sample only).

Modules: :mod:`~recommender.demo.palette` (colours), :mod:`~recommender.demo.items`
(vectorised item table), :mod:`~recommender.demo.garments` (shapes from keypoints),
:mod:`~recommender.demo.render` (packshots), :mod:`~recommender.demo.grammar`
(outfits), :mod:`~recommender.demo.generate` (the folder).

Example::

    from recommender.demo import generate_demo
    counts = generate_demo("data/demo", n_items=2000, seed=0)
"""
from __future__ import annotations

import sys
from pathlib import Path

from recommender.demo.generate import GENERATOR_VERSION, generate_demo

__all__ = ["generate_demo", "cli_demo", "GENERATOR_VERSION"]


def cli_demo(args) -> int:
    """``mixmatch demo``: generate, validate what was written, print a summary.

    Returns 0 when the catalogue validates, 1 otherwise.
    """
    import pandas as pd

    from recommender.catalog import catalog_summary, validate_catalog, validate_outfits

    out = Path(args.out)
    fa = getattr(args, "fashionai_keypoints", None)
    step = max(1, (args.image_sample or min(args.items, 20_000)) // 10)

    def progress(done, total):
        if done % step == 0 or done == total:
            print(f"\r  rendered {done}/{total}", end="" if done < total else "\n",
                  file=sys.stderr, flush=True)

    try:
        counts = generate_demo(out, n_items=args.items, seed=args.seed,
                               n_outfits=getattr(args, "outfits", None),
                               image_sample=getattr(args, "image_sample", None),
                               fashionai_keypoints=fa, progress=progress)
    except MemoryError as exc:
        # --items 100000000000 was a numpy allocation traceback (exit 1)
        from features.exceptions import InputError

        raise InputError(f"not enough memory for a demo catalogue of --items "
                         f"{args.items} ({exc}); give fewer items", field="items",
                         value=args.items) from None
    cat = pd.read_csv(out / "catalog.csv", dtype={"item_id": str}, keep_default_na=False)
    # every image written is opened once; items without one are skipped quickly
    clean, report = validate_catalog(cat, out)
    outfits, problems = validate_outfits(pd.read_csv(out / "outfits.csv", dtype=str),
                                         clean["item_id"])
    print(f"demo catalogue written to {out} in {counts['seconds']['total']:.1f} s "
          f"(seed {args.seed})")
    print(catalog_summary(clean, outfits))
    if counts["images"] < counts["items"]:
        print(f"table form: images, masks and keypoints for a sample of {counts['images']} "
              f"items; the other {counts['items'] - counts['images']} have image_path \"\" "
              "(catalog.parquet and outfits.parquet written too)")
    sec = counts["seconds"]
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sec.items()))
    print(f"keypoint rows: {counts['keypoint_rows']}, attribute rows: "
          f"{sum(counts['attribute_rows'].values())}, cold items: {counts['cold_items']}")
    print(report.summary())
    for p in problems:
        print(f"  outfits: {p}")
    return 0 if report.ok and not report.row_issues and not problems else 1
