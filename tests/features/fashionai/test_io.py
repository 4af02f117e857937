"""FashionAI label formats read and written exactly: hand-made files and the real ones."""
import io

import numpy as np
import pandas as pd
import pytest

from features.exceptions import SchemaError
from features.fashionai.io import (keypoints_from_arrays, keypoints_to_arrays,
                                   read_attribute_dir, read_attribute_file,
                                   read_keypoints_csv, write_attribute_file,
                                   write_keypoints_csv)
from features.fashionai.schema import (ATTRIBUTE_TASKS, CATEGORY_KEYPOINTS, KEYPOINT_INDEX,
                                       KEYPOINT_NAMES)

HEADER = "image_id,image_category," + ",".join(KEYPOINT_NAMES)


def _line(image_id="a.jpg", cat="skirt", cells=None):
    cells = cells or {}
    return ",".join([image_id, cat] + [cells.get(n, "-1_-1_-1") for n in KEYPOINT_NAMES])


def test_read_cells_and_arrays():
    text = "\r\n".join([HEADER, _line(cells={"waistband_left": "10_20_1",
                                             "hemline_right": "7_8_0"}), ""])
    df = read_keypoints_csv(io.StringIO(text, newline=""))
    assert df.loc[0, ["waistband_left_x", "waistband_left_y", "waistband_left_v"]].tolist() \
        == [10, 20, 1]
    xy, vis = keypoints_to_arrays(df)
    assert xy.shape == (1, 24, 2) and vis[0, KEYPOINT_INDEX["hemline_right"]] == 0
    assert xy[0, KEYPOINT_INDEX["hemline_right"]].tolist() == [7.0, 8.0]


@pytest.mark.parametrize("cell, match", [
    ("10_20", r"line 2: keypoint waistband_left cell '10_20' is not x_y_visibility"),
    ("a_2_1", r"line 2: keypoint waistband_left cell 'a_2_1'"),
    ("1_2_3_4", r"line 2: keypoint waistband_left cell '1_2_3_4'"),
    ("1_2_5", r"line 2: keypoint waistband_left visibility 5 not in -1, 0, 1"),
])
def test_malformed_cells_name_line_and_cell(cell, match):
    text = "\n".join([HEADER, _line(cells={"waistband_left": cell}), ""])
    with pytest.raises(SchemaError, match=match):
        read_keypoints_csv(io.StringIO(text))


def test_bad_header_and_category():
    with pytest.raises(SchemaError, match="header"):
        read_keypoints_csv(io.StringIO("image_id,cat\n"))
    with pytest.raises(SchemaError, match="line 3: unknown image_category 'hat'"):
        read_keypoints_csv(io.StringIO("\n".join([HEADER, _line(), _line(cat="hat"), ""])))


def test_write_then_read_hand_made():
    rng = np.random.default_rng(0)
    cats = ["blouse", "dress", "outwear", "skirt", "trousers"]
    xy = rng.integers(0, 500, (5, 24, 2)).astype(float)
    vis = np.full((5, 24), -1)
    for i, c in enumerate(cats):
        for n in CATEGORY_KEYPOINTS[c]:
            vis[i, KEYPOINT_INDEX[n]] = rng.integers(0, 2)
    df = keypoints_from_arrays([f"Images/{c}/{i}.jpg" for i, c in enumerate(cats)], cats,
                               xy, vis)
    buf = io.StringIO(newline="")
    write_keypoints_csv(df, buf)
    text = buf.getvalue()
    assert text.startswith(HEADER + "\r\n") and "-1_-1_-1" in text
    back = read_keypoints_csv(io.StringIO(text, newline=""))
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_attribute_file_round_trip_and_errors():
    text = ("Images/skirt_length_labels/a.jpg,skirt_length_labels,nnynnn\n"
            "Images/skirt_length_labels/b.jpg,skirt_length_labels,nmnnyn\n")
    df = read_attribute_file(io.StringIO(text))
    assert df["labels"].tolist() == ["nnynnn", "nmnnyn"]
    buf = io.StringIO(newline="")
    write_attribute_file(df, buf)
    assert buf.getvalue() == text
    with pytest.raises(SchemaError, match="line 1: label 'nny' of task skirt_length_labels"):
        read_attribute_file(io.StringIO("a.jpg,skirt_length_labels,nny\n"))
    with pytest.raises(SchemaError, match="unknown task 'hat_labels'"):
        read_attribute_file(io.StringIO("a.jpg,hat_labels,ny\n"))


# -- the real files: read once per module ----------------------------------------------------
@pytest.fixture(scope="module")
def real_keypoints(request):
    d = request.getfixturevalue("fashionai_dir")
    path = d / "keypoints" / "train.csv"
    return path, read_keypoints_csv(path)


@pytest.mark.realdata
def test_real_keypoints_read_and_subsets(real_keypoints):
    _, df = real_keypoints
    assert len(df) == 63765
    _, vis = keypoints_to_arrays(df)
    cats = df["image_category"].to_numpy()
    for c, names in CATEGORY_KEYPOINTS.items():
        annotated = (vis[cats == c] != -1).any(axis=0)
        assert {KEYPOINT_NAMES[j] for j in np.flatnonzero(annotated)} == set(names), c


@pytest.mark.realdata
def test_real_keypoints_write_is_byte_exact(real_keypoints):
    path, df = real_keypoints
    buf = io.StringIO(newline="")
    write_keypoints_csv(df, buf)
    assert buf.getvalue().encode("utf-8") == path.read_bytes()
    back = read_keypoints_csv(io.StringIO(buf.getvalue(), newline=""))
    pd.testing.assert_frame_equal(back, df)


@pytest.mark.realdata
def test_real_attributes_read_and_write_exactly(fashionai_dir):
    df = read_attribute_dir(fashionai_dir / "attributes")
    assert len(df) == 89683
    assert set(df["task"]) == set(ATTRIBUTE_TASKS)
    assert (df["labels"].str.count("y") == 1).all()
    for name, part in df.groupby("file"):
        buf = io.StringIO(newline="")
        write_attribute_file(part, buf)
        assert buf.getvalue().encode() == (fashionai_dir / "attributes" / name).read_bytes()


def test_ids_that_need_quoting_round_trip():
    xy = np.zeros((1, 24, 2))
    vis = np.full((1, 24), -1)
    df = keypoints_from_arrays(['Images/skirt/a,"b".jpg'], ["skirt"], xy, vis)
    buf = io.StringIO(newline="")
    write_keypoints_csv(df, buf)
    assert '"Images/skirt/a,""b"".jpg"' in buf.getvalue()
    back = read_keypoints_csv(io.StringIO(buf.getvalue(), newline=""))
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_keypoint_and_attribute_files_with_a_utf8_bom(tmp_path):
    # Excel and other Windows tools save "CSV UTF-8" with a byte-order mark.
    kp = tmp_path / "kp.csv"
    kp.write_text("\r\n".join([HEADER, _line(cells={"waistband_left": "10_20_1"}), ""]),
                  encoding="utf-8-sig", newline="")
    df = read_keypoints_csv(kp)
    assert df.loc[0, "image_id"] == "a.jpg" and df.loc[0, "waistband_left_x"] == 10
    with open(kp, encoding="utf-8", newline="") as fh:      # an open stream keeps the BOM
        assert read_keypoints_csv(fh).loc[0, "image_id"] == "a.jpg"
    attr = tmp_path / "skirt_length_labels_train.csv"
    attr.write_text("Images/skirt_length_labels/a.jpg,skirt_length_labels,nnynnn\n",
                    encoding="utf-8-sig", newline="")
    assert read_attribute_file(attr)["image_path"].tolist() == [
        "Images/skirt_length_labels/a.jpg"]


def test_files_that_are_not_utf8_text_are_schema_errors(tmp_path):
    kp = tmp_path / "kp.csv"
    kp.write_bytes("\n".join([HEADER, _line(image_id="caf\xe9.jpg"), ""]).encode("latin-1"))
    with pytest.raises(SchemaError, match=r"kp\.csv is not UTF-8 text"):
        read_keypoints_csv(kp)
    png = tmp_path / "labels.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(SchemaError, match=r"labels\.csv is not UTF-8 text"):
        read_attribute_file(png)


def test_keypoints_from_arrays_refuses_nan_coordinates_of_annotated_points():
    xy = np.zeros((2, 24, 2))
    vis = np.full((2, 24), -1)
    vis[:, KEYPOINT_INDEX["hemline_left"]] = 1
    xy[1, KEYPOINT_INDEX["hemline_left"]] = (np.nan, 5)
    with pytest.raises(SchemaError, match=r"b\.jpg.*hemline_left.*not finite"):
        keypoints_from_arrays(["a.jpg", "b.jpg"], ["skirt", "skirt"], xy, vis)
    # an absent point's coordinates are not used: NaN there is fine (written -1_-1_-1)
    xy[1, KEYPOINT_INDEX["hemline_left"]] = 0
    xy[:, KEYPOINT_INDEX["crotch"]] = np.nan
    df = keypoints_from_arrays(["a.jpg", "b.jpg"], ["skirt", "skirt"], xy, vis)
    assert df["crotch_x"].tolist() == [-1, -1]
