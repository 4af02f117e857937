"""Same seed, byte-identical files; another seed, another catalogue."""
from __future__ import annotations

import hashlib

from recommender.demo import generate_demo

FILES = ("catalog.csv", "outfits.csv", "demo.json", "fashionai/keypoints.csv",
         "fashionai/attributes/sleeve_length_labels.csv",
         "fashionai/attributes/neckline_design_labels.csv")


def _hashes(d, extra):
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in FILES + extra}


def test_same_seed_same_bytes(tmp_path):
    a = generate_demo(tmp_path / "a", n_items=60, seed=11, fashionai_keypoints=False)
    b = generate_demo(tmp_path / "b", n_items=60, seed=11, fashionai_keypoints=False)
    c = generate_demo(tmp_path / "c", n_items=60, seed=12, fashionai_keypoints=False)
    assert a["items"] == b["items"] == 60
    pics = tuple(f"{k}/D{i:06d}.{e}" for i in (0, 7, 31, 59)
                 for k, e in (("images", "jpg"), ("masks", "png")))
    ha = _hashes(tmp_path / "a", pics)
    assert ha == _hashes(tmp_path / "b", pics)
    hc = _hashes(tmp_path / "c", pics)
    assert ha["catalog.csv"] != hc["catalog.csv"]
    assert ha["outfits.csv"] != hc["outfits.csv"]


def test_rerun_into_same_folder_replaces_everything(tmp_path):
    generate_demo(tmp_path, n_items=40, seed=1, fashionai_keypoints=False)
    generate_demo(tmp_path, n_items=20, seed=1, fashionai_keypoints=False)
    assert len(list((tmp_path / "images").iterdir())) == 20
    assert len(list((tmp_path / "masks").iterdir())) == 20


def test_tiny_catalogues_and_bad_sizes(tmp_path):
    import pytest

    from features.exceptions import InputError

    c = generate_demo(tmp_path / "eight", n_items=8, seed=0, fashionai_keypoints=False)
    assert len(c["per_category"]) == 8          # every slot present
    assert c["outfits"] == 2 and c["outfit_size"]["min"] >= 3
    c = generate_demo(tmp_path / "none", n_items=12, seed=0, n_outfits=0, image_sample=0,
                      fashionai_keypoints=False)
    assert c["outfits"] == 0 and c["images"] == 0 and c["keypoint_rows"] == 0
    with pytest.raises(InputError, match="n_items"):
        generate_demo(tmp_path / "bad", n_items=0)
