"""The pipeline's attributes stage and `evaluate_bundle` on a tiny generated bundle."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features.attributes import AttributeModel
from features.attributes.evaluate import evaluate_bundle
from features.attributes.train import run_stage, stage_inputs
from features.exceptions import InputError
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
    assert "fusion_version" not in inputs  # a change to fusion never retrains this one
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
    res = evaluate_bundle(tiny_bundle)
    assert set(res["heads"]) == {"subcategory", "colour", "sleeve_length_labels"}
    assert res["heads"]["colour"]["n"] == m["n_test"]
    # Skirts have no sleeve label: that head is scored on dresses only.
    assert res["heads"]["sleeve_length_labels"]["n"] <= m["n_test"]
    assert 0.0 <= res["fashionai_map"] <= 1.0
    for v in res["heads"].values():
        assert 0.0 <= v["accuracy"] <= 1.0 and 0.0 <= v["macro_f1"] <= 1.0


def test_evaluate_cli_on_demo_bundle(demo_bundle, capsys):
    """`mixmatch evaluate --bundle B --attributes --json` on the session's demo bundle."""
    import json

    from api.cli import main

    assert main(["evaluate", "--bundle", str(demo_bundle), "--attributes", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"subcategory", "colour", "sleeve_length_labels"} <= set(res["heads"])
    for v in res["heads"].values():
        assert set(v) == {"accuracy", "macro_f1", "n"}
    assert 0.0 <= res["fashionai_map"] <= 1.0


def test_demo_bundle_model_uses_keypoint_regions_end_to_end(demo_bundle):
    """The demo source ships labelled keypoints: the attributes stage trains the
    region path on them, and evaluation feeds it the features stage's keypoints."""
    import json

    model = AttributeModel.load(demo_bundle / "models")
    assert model.uses_regions and model.config_.region_size == (32, 32)
    metrics = json.loads((demo_bundle / "manifest.json").read_text())
    assert "regions" in json.dumps(metrics)
    res = evaluate_bundle(Bundle.open(demo_bundle))
    assert res["regions_from"] == "features stage keypoints"
    assert 0.0 <= res["fashionai_map"] <= 1.0


def test_tiny_bundle_without_keypoints_has_no_region_path(tiny_bundle):
    """No keypoint file (MANGO's case): the whole-image network, as before."""
    ctx = BuildContext(bundle=tiny_bundle, config={"source": "demo", "quick": True, "seed": 0},
                       log=lambda m: None)
    assert run_stage(ctx)["metrics"]["regions"] == "none"
    assert not AttributeModel.load(tiny_bundle.path("models")).uses_regions
    assert evaluate_bundle(tiny_bundle)["regions_from"] == "none"


def test_stage_with_detail_crops_end_to_end(tiny_bundle):
    """``regions = "detail"``: crops cut from the images, no keypoints needed; the
    saved model cuts them itself when evaluated."""
    ctx = BuildContext(bundle=tiny_bundle, config={
        "source": "demo", "quick": True, "seed": 0,
        "stages": {"attributes": {"regions": "detail", "region_size": [16, 16]}}},
        log=lambda m: None)
    assert run_stage(ctx)["metrics"]["regions"] == "detail crops"
    model = AttributeModel.load(tiny_bundle.path("models"))
    assert model.region_kind == "detail" and model.config_.region_size == (16, 16)
    assert list(tiny_bundle.path("cache").glob("detail_16x16_*.npz"))
    res = evaluate_bundle(tiny_bundle)
    assert res["regions_from"] == "detail crops" and "subcategory" in res["heads"]


def test_stage_with_descriptor_fusion_end_to_end(tiny_bundle, capsys):
    """``descriptors = true``: every head gets a fusion report, the descriptors are
    cached, the fused heads (and only they) are saved, and evaluation uses them."""
    ctx = BuildContext(bundle=tiny_bundle, config={
        "source": "demo", "quick": True, "seed": 0,
        "stages": {"attributes": {"descriptors": True}}}, log=lambda m: None)
    assert stage_inputs(ctx)["fusion_version"] >= 2  # fusion changes retrain this one
    out = run_stage(ctx)
    report = out["metrics"]["descriptor_fusion"]
    heads = out["metrics"]["heads"]
    assert set(report) == set(heads)
    assert all("weight" in r or "skipped" in r for r in report.values())
    assert list(tiny_bundle.path("cache").glob("descriptors_v*_*.npy"))
    model = AttributeModel.load(tiny_bundle.path("models"))
    fused = {h for h, r in report.items() if r.get("weight", 0) > 0}
    # The quick two-epoch network is at chance; the descriptors see the red / blue
    # colour and the block's height, so both heads fuse.
    assert {"subcategory", "colour"} <= fused
    # The heads not fused directly may take the fused heads' evidence instead.
    taking = {h: r["propagated"] for h, r in report.items() if r.get("propagated")}
    assert not fused & set(taking)
    assert all(set(src) <= fused for src in taking.values())
    assert set(model.fused_heads) == fused | set(taking)
    assert tiny_bundle.path("models", "attributes.fusion.json").is_file() == bool(fused)
    assert ("models/attributes.fusion.json" in out["outputs"]) == bool(fused)
    res = evaluate_bundle(tiny_bundle)
    assert set(res["heads"]) == set(heads)
    assert res["descriptor_fusion"] == {**{h: report[h]["weight"] for h in fused}, **taking}
    # The CLI's table names both kinds.
    from api.cli import main

    capsys.readouterr()
    assert main(["evaluate", "--bundle", str(tiny_bundle.root), "--attributes"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("fused with")][0]
    assert f"colour (weight {report['colour']['weight']:g})" in line
    for h, src in taking.items():
        assert f"{h} (evidence of " + ", ".join(f"{k} weight {v:g}" for k, v in src.items()) \
            in line
    assert res["heads"]["colour"]["accuracy"] == 1.0
    assert res["heads"]["subcategory"]["accuracy"] == \
        pytest.approx(out["metrics"]["test"]["heads"]["subcategory"]["accuracy"])


def test_mango_bundle_trains_the_whole_image_network(mango_subset_bundle):
    """MANGO has no keypoints: its attribute network has no region path."""
    model = AttributeModel.load(mango_subset_bundle / "models")
    assert not model.uses_regions and model.config_.geometry_dim == 0
    res = evaluate_bundle(Bundle.open(mango_subset_bundle))
    assert res["regions_from"] == "none"
    assert {"subcategory", "colour"} <= set(res["heads"])


def _ctx(bundle, source, table):
    return BuildContext(bundle=bundle, config={"source": source, "quick": True,
                                               "stages": {"attributes": table}})


def test_a_group_sep_no_item_id_contains_is_refused_before_the_stage(tiny_bundle):
    # before: the split grouped nothing without a word (ids D000..D039 have no "_"), so
    # colour variants of one garment could straddle train and test
    with pytest.raises(InputError) as e:
        stage_inputs(_ctx(tiny_bundle, "demo", {"group_sep": "_"}))
    assert str(e.value).startswith(
        "[stages.attributes] group_sep '_' is in none of the catalogue's item ids (e.g. "
        "'D000', 'D001', 'D002'), so the split would group nothing"), str(e.value)
    assert e.value.field == "stages.attributes.group_sep"
    assert not tiny_bundle.stage_record("attributes")


def test_a_group_sep_some_ids_contain_or_none_passes(tiny_bundle):
    cat = pd.read_parquet(tiny_bundle.path("catalog.parquet"))
    cat.loc[:1, "item_id"] = ["D000_a", "D000_b"]      # one group of two, the rest alone
    cat.to_parquet(tiny_bundle.path("catalog.parquet"), index=False)
    for table in ({"group_sep": "_"}, {"group_sep": ""}, {}):
        stage_inputs(_ctx(tiny_bundle, "demo", table))


def test_the_mango_default_group_sep_is_checked_too(tiny_bundle):
    # the default "-" of a MANGO build groups by model code; on ids without it the
    # split would group nothing as silently as a group_sep the user set
    with pytest.raises(InputError, match="group_sep '-' is in none of the catalogue's"):
        stage_inputs(_ctx(tiny_bundle, "mango", {}))
    stage_inputs(_ctx(tiny_bundle, "mango", {"group_sep": ""}))
