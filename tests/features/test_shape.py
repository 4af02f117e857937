import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.exceptions import InputError
from features.fashionai.schema import CATEGORY_KEYPOINTS, KEYPOINT_INDEX as K
from features.shape import SHAPE_FEATURES, shape_features


def _kp(points):
    xy = np.full((24, 2), -1.0)
    vis = np.full(24, -1)
    for n, p in points.items():
        xy[K[n]] = p
        vis[K[n]] = 1
    return xy, vis


BLOUSE = {  # a T-shirt drawn on squared paper (known answers below)
    "neckline_left": (40, 0), "neckline_right": (60, 0), "center_front": (50, 15),
    "shoulder_left": (20, 5), "shoulder_right": (80, 5),
    "armpit_left": (25, 30), "armpit_right": (75, 30),
    "cuff_left_out": (0, 30), "cuff_left_in": (10, 40),
    "cuff_right_out": (100, 30), "cuff_right_in": (90, 40),
    "top_hem_left": (25, 105), "top_hem_right": (75, 105),
}
TROUSERS = {
    "waistband_left": (0, 0), "waistband_right": (40, 0), "crotch": (20, 30),
    "bottom_left_out": (0, 120), "bottom_left_in": (10, 120),
    "bottom_right_in": (30, 120), "bottom_right_out": (40, 120),
}


def test_blouse_known_answers():
    f = shape_features(*_kp(BLOUSE), "blouse")
    torso = 100.0  # shoulder mid (50, 5) -> hem mid (50, 105)
    cuff_mid = np.array([5, 35])
    assert f["shape_sleeve_length"] == pytest.approx(np.hypot(*(cuff_mid - (20, 5))) / torso)
    assert f["shape_cuff_width"] == pytest.approx(np.hypot(10, 10) / 50)
    assert f["shape_neck_width"] == pytest.approx(20 / 60)
    assert f["shape_neck_depth"] == pytest.approx(15 / torso)
    assert f["shape_body_taper"] == pytest.approx(1.0)
    assert f["shape_length_ratio"] == pytest.approx(105 / 50)
    assert np.isnan(f["shape_hem_flare"]) and np.isnan(f["shape_leg_taper"])


def test_trousers_known_answers():
    f = shape_features(*_kp(TROUSERS), "trousers")
    assert f["shape_length_ratio"] == pytest.approx(120 / 40)
    assert f["shape_leg_taper"] == pytest.approx(10 / 20)
    assert f["shape_rise"] == pytest.approx(30 / 120)
    assert np.isnan(f["shape_sleeve_length"])


def test_missing_points_give_nan_never_invented():
    pts = dict(BLOUSE)
    del pts["cuff_left_in"], pts["cuff_right_in"], pts["center_front"]
    f = shape_features(*_kp(pts), "blouse")
    assert np.isnan(f["shape_sleeve_length"]) and np.isnan(f["shape_neck_depth"])
    assert f["shape_neck_width"] == pytest.approx(20 / 60)
    # one side only: that side's value
    pts = dict(BLOUSE)
    del pts["cuff_left_in"]
    f1 = shape_features(*_kp(pts), "blouse")
    f2 = shape_features(*_kp(BLOUSE), "blouse")
    assert f1["shape_sleeve_length"] == pytest.approx(f2["shape_sleeve_length"])
    # zero-length denominators are NaN, not inf
    z = {n: (0, 0) for n in CATEGORY_KEYPOINTS["skirt"]}
    assert all(np.isnan(v) for v in shape_features(*_kp(z), "skirt").values())


def test_every_result_has_every_column():
    for cat, pts in (("blouse", BLOUSE), ("trousers", TROUSERS)):
        assert list(shape_features(*_kp(pts), cat)) == list(SHAPE_FEATURES)


def test_bad_input():
    with pytest.raises(InputError):
        shape_features(np.zeros((24, 2)), np.zeros(24), "hat")
    with pytest.raises(InputError):
        shape_features(np.zeros((23, 2)), np.zeros(23), "skirt")


@settings(max_examples=60, deadline=None)
@given(cat=st.sampled_from(["blouse", "dress", "outwear", "skirt", "trousers"]),
       seed=st.integers(0, 10_000),
       dx=st.floats(-1e3, 1e3), dy=st.floats(-1e3, 1e3),
       scale=st.floats(0.05, 20.0))
def test_invariant_to_translation_and_scale(cat, seed, dx, dy, scale):
    rng = np.random.default_rng(seed)
    xy = np.full((24, 2), -1.0)
    vis = np.full(24, -1)
    for n in CATEGORY_KEYPOINTS[cat]:
        if rng.random() < 0.9:
            xy[K[n]] = rng.uniform(0, 300, 2)
            vis[K[n]] = int(rng.integers(0, 2))
    a = shape_features(xy, vis, cat)
    moved = xy * scale + np.array([dx, dy])
    b = shape_features(moved, vis, cat)
    for k in SHAPE_FEATURES:
        if np.isnan(a[k]):
            assert np.isnan(b[k]), k
        else:
            assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-9), k
