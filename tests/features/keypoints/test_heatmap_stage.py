"""The pipeline's keypoints stage on a tiny FashionAI-format source folder."""
from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from features.exceptions import BundleError, InputError
from features.fashionai.io import keypoints_from_arrays, read_keypoints_csv, write_keypoints_csv
from features.keypoints.heatmap import HeatmapKeypointDetector
from features.keypoints.train import _csv_path, run_stage, stage_inputs
from recommender.bundle import Bundle
from recommender.pipeline import BuildContext
from tests.features.keypoints.test_heatmap import skirts


def _skirts_bundle(tmp_path, n, src=None):
    """A demo bundle whose source holds ``n`` skirt packshots and their keypoints: its
    own ``source/``, or the folder ``src`` (a catalogue made elsewhere, ``--data``)."""
    src = src or tmp_path / "bundle" / "source"
    b = Bundle.create(tmp_path / "bundle", source="demo", image_root=src)
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


def test_the_stage_trains_on_the_csv_of_a_demo_source_outside_the_bundle(tmp_path):
    # before: `mixmatch build --source demo --data DIR` failed here with
    # "BUNDLE/source/fashionai/keypoints.csv missing": the CSV was read at a path fixed
    # relative to the bundle, not in DIR, where `mixmatch demo` wrote it
    src = tmp_path / "elsewhere" / "demo"
    b = _skirts_bundle(tmp_path, 12, src)
    assert not b.path("source").exists()
    ctx = BuildContext(bundle=b, config={"source": "demo", "quick": True, "seed": 0,
                                         "data": str(src)}, log=lambda m: None)
    assert _csv_path(ctx) == src / "fashionai" / "keypoints.csv"
    m = run_stage(ctx)["metrics"]
    assert m["n_train"] + m["n_val"] + m["n_test"] == 12


def test_a_bundle_with_its_own_source_reads_the_csv_it_always_read(tmp_path):
    # its stage inputs (the CSV's bytes) are those of a bundle built before the source
    # folder was looked up: a finished keypoints stage stays up to date
    b = _skirts_bundle(tmp_path, 3)
    before = b.path("source/fashionai/keypoints.csv")   # the old fixed path
    contexts = [BuildContext(bundle=b, config={"source": "demo", "seed": 0, **data})
                for data in ({}, {"data": None}, {"data": str(b.path("source"))})]
    assert {_csv_path(ctx) for ctx in contexts} == {before}
    inputs = [stage_inputs(ctx) for ctx in contexts]
    assert inputs[0]["csv"] is not None and all(i == inputs[0] for i in inputs)


def test_a_missing_csv_is_named_with_the_source_folder_it_was_looked_for_in(tmp_path):
    b = Bundle.create(tmp_path / "bundle", source="demo", image_root=None)
    gone = tmp_path / "gone"
    ctx = BuildContext(bundle=b, config={"source": "demo", "quick": True,
                                         "data": str(gone)}, log=lambda m: None)
    with pytest.raises(BundleError) as exc:
        run_stage(ctx)
    assert str(exc.value).startswith(
        f"{gone / 'fashionai' / 'keypoints.csv'} missing: the keypoints stage trains on a "
        f"FashionAI keypoint CSV, read from the source folder {gone} (which does not "
        f"exist; `mixmatch demo` writes fashionai/keypoints.csv there)")
    gone.mkdir()
    with pytest.raises(BundleError, match=r"\(which has no such file; "):
        run_stage(ctx)
    # a CSV the stage config names is refused by its setting
    ctx.config["stages"] = {"keypoints": {"csv": "labels/kp.csv"}}
    with pytest.raises(InputError) as exc:
        run_stage(ctx)
    assert exc.value.field == "stages.keypoints.csv" and exc.value.value == "labels/kp.csv"
    assert f"{b.path('labels', 'kp.csv')} missing" in str(exc.value)
