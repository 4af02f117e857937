"""FashionAI folder adapter: counts, Parquet tables, and `mixmatch ingest --source fashionai`."""
import numpy as np
import pandas as pd
import pytest

from api.cli import main
from features.exceptions import NotFoundError, SchemaError
from features.fashionai.io import (keypoints_from_arrays, write_attribute_file,
                                   write_keypoints_csv)
from features.fashionai.schema import KEYPOINT_INDEX
from recommender.adapters.fashionai import read_fashionai, read_tables, write_tables


def _kp_table(cats):
    n = len(cats)
    xy = np.full((n, 24, 2), -1.0)
    vis = np.full((n, 24), -1)
    for i, c in enumerate(cats):
        pair = ("armpit_left", "armpit_right") if c != "skirt" else ("waistband_left",
                                                                     "waistband_right")
        for k, name in enumerate(pair):
            xy[i, KEYPOINT_INDEX[name]] = (10 + 20 * k, 30 + i)
            vis[i, KEYPOINT_INDEX[name]] = 1
    return keypoints_from_arrays([f"Images/{c}/{i}.jpg" for i, c in enumerate(cats)],
                                 cats, xy, vis)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "keypoints").mkdir()
    (tmp_path / "attributes").mkdir()
    write_keypoints_csv(_kp_table(["blouse", "skirt", "skirt"]),
                        tmp_path / "keypoints" / "train.csv")
    write_attribute_file(pd.DataFrame({
        "image_path": ["Images/pant_length_labels/a.jpg", "Images/pant_length_labels/b.jpg"],
        "task": ["pant_length_labels"] * 2, "labels": ["nnnnny", "nmnnyn"]}),
        tmp_path / "attributes" / "pant_length_labels_train.csv")
    write_attribute_file(pd.DataFrame({
        "image_path": ["Images/neck_design_labels/c.jpg"], "task": ["neck_design_labels"],
        "labels": ["nynnn"]}), tmp_path / "attributes" / "neck_design_labels_test.csv")
    return tmp_path


def test_counts(folder):
    c = read_fashionai(folder).counts()
    assert c["keypoints"] == {"rows": 3, "per_category": {"blouse": 1, "skirt": 2},
                              "per_file": {"train.csv": 3}}
    assert c["attributes"]["rows"] == 3 and c["attributes"]["rows_with_maybe"] == 1
    assert c["attributes"]["per_task"] == {"neck_design_labels": 1, "pant_length_labels": 2}
    assert c["attributes"]["per_file"] == {"neck_design_labels_test.csv": 1,
                                           "pant_length_labels_train.csv": 2}


def test_tables_round_trip(folder, tmp_path):
    labels = read_fashionai(folder)
    write_tables(labels, tmp_path / "out")
    back = read_tables(tmp_path / "out")
    pd.testing.assert_frame_equal(back.keypoints, labels.keypoints)
    pd.testing.assert_frame_equal(back.attributes, labels.attributes)


def test_malformed_file_is_named(folder):
    with open(folder / "attributes" / "pant_length_labels_train.csv", "a") as f:
        f.write("Images/x.jpg,pant_length_labels,nny\n")
    with pytest.raises(SchemaError, match=r"pant_length_labels_train.csv: line 3"):
        read_fashionai(folder)


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(NotFoundError, match="no FashionAI labels"):
        read_fashionai(tmp_path)


def test_cli_ingest_writes_tables(folder, tmp_path, capsys):
    assert main(["ingest", "--source", "fashionai", "--data", str(folder),
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "keypoint rows: 3" in out and "attribute rows: 3" in out
    assert len(pd.read_parquet(tmp_path / "o" / "keypoints.parquet")) == 3


@pytest.fixture(scope="module")
def real(request):
    fashionai_dir = request.getfixturevalue("fashionai_dir")
    return read_fashionai(fashionai_dir)


@pytest.mark.realdata
def test_real_counts(real):
    c = real.counts()
    assert c["keypoints"]["rows"] == 63765 and c["attributes"]["rows"] == 89683
    assert c["keypoints"]["per_category"] == {"blouse": 14027, "dress": 11250,
                                              "outwear": 11659, "skirt": 13839,
                                              "trousers": 12990}
    assert c["attributes"]["per_task"]["skirt_length_labels"] == 19333
    assert len(c["attributes"]["per_file"]) == 16


@pytest.mark.realdata
def test_real_parquet_round_trip(real, tmp_path):
    write_tables(real, tmp_path)
    back = read_tables(tmp_path)
    pd.testing.assert_frame_equal(back.keypoints, real.keypoints)
    pd.testing.assert_frame_equal(back.attributes, real.attributes)
