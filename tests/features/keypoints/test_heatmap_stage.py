"""The pipeline's keypoints stage on a tiny FashionAI-format source folder."""
from __future__ import annotations

import pandas as pd
from PIL import Image

from features.fashionai.io import keypoints_from_arrays, read_keypoints_csv, write_keypoints_csv
from features.keypoints.heatmap import HeatmapKeypointDetector
from features.keypoints.train import run_stage
from recommender.bundle import Bundle
from recommender.pipeline import BuildContext
from tests.features.keypoints.test_heatmap import skirts


def _skirts_bundle(tmp_path, n):
    """A demo bundle whose source holds ``n`` skirt packshots and their keypoints."""
    b = Bundle.create(tmp_path / "bundle", source="demo", image_root=tmp_path / "bundle" /
                      "source")
    src = b.path("source")
    (src / "images").mkdir(parents=True)
    (src / "fashionai").mkdir()
    imgs, xy, vis, cats = skirts(n)
    ids = [f"images/D{i:03d}.jpg" for i in range(n)]
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(src / ids[i], quality=95)
    write_keypoints_csv(keypoints_from_arrays(ids, cats, xy, vis),
                        src / "fashionai" / "keypoints.csv")
    return b


def test_keypoints_stage(tmp_path):
    b = _skirts_bundle(tmp_path, 30)
    ctx = BuildContext(bundle=b, config={"source": "demo", "quick": True, "seed": 0},
                       log=lambda m: None)
    out = run_stage(ctx)
    for rel in out["outputs"]:
        assert b.path(rel).is_file(), rel
    m = out["metrics"]
    assert m["n_train"] + m["n_val"] + m["n_test"] == 30
    assert m["test_ne"] >= 0 and m["test_ne_mean_shape"] > 0
    pred = read_keypoints_csv(b.path("eval", "keypoints_pred_test.csv"))
    truth = read_keypoints_csv(b.path("eval", "keypoints_truth_test.csv"))
    assert pred["image_id"].tolist() == truth["image_id"].tolist()
    from features.keypoints.heatmap import load_detector
    assert load_detector(b.path("models")).n_train_ == m["n_train"]


def test_the_stage_trains_without_a_budget_when_its_config_says_none(tmp_path):
    # before: a full build's keypoints stage always stopped at its default 300 CPU
    # seconds: ``time_budget_s = "none"`` was refused as "must be a number"
    import json

    b = _skirts_bundle(tmp_path, 12)
    # not quick: the full build's defaults (with their budget), made tiny to train fast
    stage = {"preset": "tiny", "image_size": [64, 48], "epochs": 1, "batch_size": 8,
             "flip_test": False, "time_budget_s": "none"}
    ctx = BuildContext(bundle=b, config={"source": "demo", "quick": False, "seed": 0,
                                         "stages": {"keypoints": stage}},
                       log=lambda m: None)
    run_stage(ctx)
    params = json.loads(b.path("models", "keypoints.json").read_text())["params"]
    assert params["time_budget_s"] is None and params["budget_clock"] == "cpu"
