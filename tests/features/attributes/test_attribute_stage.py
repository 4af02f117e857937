"""The pipeline's attributes stage and `evaluate_bundle` on a tiny generated bundle."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features.attributes import AttributeModel
from features.attributes.evaluate import evaluate_bundle
from features.attributes.train import run_stage, stage_inputs
from recommender.bundle import Bundle
from recommender.pipeline import BuildContext


@pytest.fixture()
def tiny_bundle(tmp_path):
    rng = np.random.default_rng(0)
    img_dir = tmp_path / "src" / "images"
    img_dir.mkdir(parents=True)
    rows = []
    colours = {"RED": (200, 30, 30), "BLUE": (30, 30, 200)}
    for i in range(40):
        c = ["RED", "BLUE"][i % 2]
        sub = ["Dress", "Skirt"][(i // 2) % 2]
        img = np.full((70, 50, 3), 240, np.uint8)
        img[10:60 if sub == "Dress" else 35, 15:35] = colours[c]
        img = np.clip(img + rng.integers(-5, 5, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(img_dir / f"D{i:03d}.png")
        sleeve = "" if sub == "Skirt" else ["Sleeveless", "Long Sleeves"][i % 2]
        rows.append({"item_id": f"D{i:03d}", "category": "dress", "subcategory": sub,
                     "colour": c, "material": "", "gender": "Female",
                     "image_path": f"images/D{i:03d}.png", "image_ok": True,
                     "sleeve_length_labels": sleeve})
    b = Bundle.create(tmp_path / "bundle", source="demo", image_root=tmp_path / "src")
    pd.DataFrame(rows).to_parquet(b.path("catalog.parquet"), index=False)
    return b


def test_stage_writes_model_split_and_metrics(tiny_bundle):
    ctx = BuildContext(bundle=tiny_bundle, config={"source": "demo", "quick": True, "seed": 0},
                       log=lambda m: None)
    inputs = stage_inputs(ctx)
    assert inputs["quick"] is True and inputs["catalog"]
    out = run_stage(ctx)
    for rel in out["outputs"]:
        assert tiny_bundle.path(rel).is_file(), rel
    m = out["metrics"]
    # material is empty everywhere, so it is not a head; the FashionAI column is.
    assert m["heads"] == ["subcategory", "colour", "sleeve_length_labels"]
    assert m["n_train"] + m["n_val"] + m["n_test"] == 40
    split = pd.read_parquet(tiny_bundle.path("models", "attributes_split.parquet"))
    assert set(split["split"]) <= {"train", "val", "test"} and len(split) == 40
    model = AttributeModel.load(tiny_bundle.path("models"))
    assert model.taxonomy_.classes("colour") == ("BLUE", "RED")
    res = evaluate_bundle(tiny_bundle.root)
    assert set(res["heads"]) == {"subcategory", "colour", "sleeve_length_labels"}
    assert res["heads"]["colour"]["n"] == m["n_test"]
    # Skirts have no sleeve label: that head is scored on dresses only.
    assert res["heads"]["sleeve_length_labels"]["n"] <= m["n_test"]
    assert 0.0 <= res["fashionai_map"] <= 1.0
    for v in res["heads"].values():
        assert 0.0 <= v["accuracy"] <= 1.0 and 0.0 <= v["macro_f1"] <= 1.0
