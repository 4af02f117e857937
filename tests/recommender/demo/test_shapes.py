"""Shape statistics: built-in, recovered from keypoints (known answer), real FashionAI."""
from __future__ import annotations

import numpy as np
import pytest

from recommender.demo import generate_demo
from recommender.demo.garments import (builtin_shape_stats, build_garment,
                                       fashionai_shape_stats)
from recommender.demo.generate import resolve_shape_stats


def test_no_data_path_uses_builtin(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXMATCH_DATA", str(tmp_path / "nowhere"))
    assert resolve_shape_stats(None).source == "builtin"
    assert resolve_shape_stats(False).source == "builtin"
    assert resolve_shape_stats("none").source == "builtin"


def test_missing_explicit_file_is_named(tmp_path):
    from features.exceptions import NotFoundError
    with pytest.raises(NotFoundError, match="keypoint file not found"):
        resolve_shape_stats(tmp_path / "train.csv")


def test_stats_recovered_from_generated_keypoints(demo_dir):
    """Known answer: measuring the generated keypoints gives back the proportions
    they were drawn from (pixel rounding and silhouettes only blur them)."""
    d, _ = demo_dir
    got = fashionai_shape_stats(d / "fashionai" / "keypoints.csv")
    assert got.source == "fashionai:keypoints.csv"
    ref = builtin_shape_stats().values
    for name in ("shoulder_half", "armpit_depth", "neck_half", "shoulder_drop"):
        assert got.values["blouse"][name][0] == pytest.approx(ref["blouse"][name][0], abs=0.03)
    assert got.values["trousers"]["crotch_depth"][0] == pytest.approx(
        ref["trousers"]["crotch_depth"][0], abs=0.04)


def test_seeded_shapes_change_geometry(demo_dir, tmp_path):
    """A catalogue generated from measured statistics is a valid catalogue too."""
    d, _ = demo_dir
    counts = generate_demo(tmp_path, n_items=40, seed=3,
                           fashionai_keypoints=d / "fashionai" / "keypoints.csv")
    import json
    meta = json.loads((tmp_path / "demo.json").read_text())
    assert meta["shape_stats"]["source"] == "fashionai:keypoints.csv"
    assert counts["images"] == 40


@pytest.mark.realdata
def test_real_fashionai_statistics(fashionai_dir, tmp_path):
    path = fashionai_dir / "keypoints" / "train.csv"
    stats = fashionai_shape_stats(path)
    assert stats.source == "fashionai:train.csv"
    assert min(stats.n_rows.values()) > 1000
    sh, spread = stats.values["blouse"]["shoulder_half"]
    assert 0.5 <= sh <= 0.75 and spread > 0
    rng = np.random.default_rng(0)
    g = build_garment({"subcategory": "coat", "silhouette": "regular",
                       "sleeve_length_labels": "Long Sleeves", "coat_length_labels": "Knee Length",
                       "lapel_design_labels": "Notched"}, stats, rng)
    assert g.fa_category == "outwear" and len(g.keypoints) == 14
    counts = generate_demo(tmp_path, n_items=30, seed=0, fashionai_keypoints=path)
    assert counts["images"] == 30
