"""Table form: large catalogues as tables, pictures for a sample only."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from features.fashionai.io import read_keypoints_csv
from recommender.catalog import validate_catalog
from recommender.demo import generate_demo


def test_table_form_50k_with_20_images(tmp_path):
    counts = generate_demo(tmp_path, n_items=50_000, seed=0, image_sample=20,
                           fashionai_keypoints=False)
    assert counts["items"] == 50_000 and counts["images"] == 20
    cat = pd.read_parquet(tmp_path / "catalog.parquet")
    csv = pd.read_csv(tmp_path / "catalog.csv", dtype={"item_id": str}, keep_default_na=False)
    assert len(cat) == len(csv) == 50_000
    assert cat["item_id"].is_unique
    has = cat["image_path"] != ""
    assert has.sum() == 20
    assert len(list((tmp_path / "images").iterdir())) == 20
    assert len(list((tmp_path / "masks").iterdir())) == 20
    clean, report = validate_catalog(cat, tmp_path, check_images=True)
    assert report.ok and not report.row_issues
    assert clean["image_ok"].sum() == 20
    kp = read_keypoints_csv(tmp_path / "fashionai" / "keypoints.csv")
    assert set(kp["image_id"]) <= set(cat.loc[has, "image_path"])
    outfits = pd.read_parquet(tmp_path / "outfits.parquet")
    assert outfits["outfit_id"].nunique() == 50_000 // 3
    assert outfits["item_id"].isin(cat["item_id"]).all()
    meta = json.loads((tmp_path / "demo.json").read_text())
    assert meta["table_form"] is True
    # the same item looks the same whatever the sample (per-item random streams)
    assert np.isfinite(cat["price"]).all() and (cat["price"] > 0).all()


def test_image_for_item_independent_of_sample(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    generate_demo(a, n_items=30, seed=4, fashionai_keypoints=False)
    generate_demo(b, n_items=30, seed=4, image_sample=10, fashionai_keypoints=False)
    cat_b = pd.read_csv(b / "catalog.csv", dtype={"item_id": str}, keep_default_na=False)
    for p in cat_b.loc[cat_b["image_path"] != "", "image_path"]:
        assert (a / p).read_bytes() == (b / p).read_bytes()
