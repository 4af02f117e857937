"""Heatmap keypoint detector: shapes, geometry, persistence, errors, learning."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from features.exceptions import InputError, NotFittedError, SchemaError
from features.fashionai.io import read_keypoints_csv, write_keypoints_csv
from features.fashionai.schema import KEYPOINT_INDEX
from features.keypoints.heatmap import (FLIP_PERM, STRIDE, HeatmapKeypointDetector,
                                        HeatmapNet, HeatmapNetConfig, flip_logits,
                                        letterbox_transform, local_soft_argmax,
                                        normalized_error, quadratic_peak)
from features.keypoints.train import mean_shape_predict
from tests.faults import disk_full

WB_L, WB_R = KEYPOINT_INDEX["waistband_left"], KEYPOINT_INDEX["waistband_right"]
HEM_L, HEM_R = KEYPOINT_INDEX["hemline_left"], KEYPOINT_INDEX["hemline_right"]


def skirts(n, seed=0, h=80, w=60):
    """Dark trapezoid 'skirts' at random places on a light background; the four skirt
    points are its corners (a known answer)."""
    rng = np.random.default_rng(seed)
    imgs = np.full((n, h, w, 3), 235, np.uint8)
    xy = np.full((n, 24, 2), -1.0)
    vis = np.full((n, 24), -1)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        top, bot = rng.uniform(8, 30), rng.uniform(50, 72)
        cx = rng.uniform(22, 38)
        half_top, half_bot = rng.uniform(6, 10), rng.uniform(11, 18)
        frac = np.clip((yy - top) / (bot - top), 0, 1)
        half = half_top + frac * (half_bot - half_top)
        inside = (yy >= top) & (yy <= bot) & (np.abs(xx - cx) <= half)
        imgs[i][inside] = (60, 40, 120)
        # FashionAI "left" is the wearer's left: the right side of the picture.
        xy[i, WB_L], xy[i, WB_R] = (cx + half_top, top), (cx - half_top, top)
        xy[i, HEM_L], xy[i, HEM_R] = (cx + half_bot, bot), (cx - half_bot, bot)
        vis[i, [WB_L, WB_R, HEM_L, HEM_R]] = 1
    return imgs, xy, vis, ["skirt"] * n


def tiny(**kw):
    args = dict(preset="tiny", image_size=(64, 48), epochs=2, batch_size=16, lr=5e-3,
                random_state=0, num_threads=1)
    args.update(kw)
    return HeatmapKeypointDetector(**args)


@pytest.fixture(scope="module")
def trained():
    imgs, xy, vis, cats = skirts(96)
    det = tiny(epochs=14, augment=False).fit(list(imgs), xy, vis)
    return det


def test_network_output_is_quarter_resolution():
    net = HeatmapNet(HeatmapNetConfig(preset="tiny", image_size=(64, 48))).eval()
    assert net(torch.zeros(2, 3, 64, 48)).shape == (2, 24, 16, 12)


def test_flip_permutation_swaps_sides():
    assert FLIP_PERM[WB_L] == WB_R and FLIP_PERM[HEM_R] == HEM_L
    assert FLIP_PERM[KEYPOINT_INDEX["crotch"]] == KEYPOINT_INDEX["crotch"]
    assert sorted(FLIP_PERM) == list(range(24))


def test_letterbox_transform_maps_corners():
    scale, left, top = letterbox_transform(80, 60, (64, 48))
    assert scale == pytest.approx(0.8) and left == 0 and top == 0
    scale, left, top = letterbox_transform(40, 60, (64, 48))
    assert scale == pytest.approx(0.8) and top == 16


def test_local_soft_argmax_is_sub_cell():
    logits = torch.full((1, 1, 8, 8), -30.0)
    logits[0, 0, 3, 4] = 5.0
    logits[0, 0, 3, 5] = 5.0            # two equal cells: the point is between them
    xy, mass = local_soft_argmax(logits)
    assert xy[0, 0].tolist() == pytest.approx([4.5, 3.0])
    assert float(mass[0, 0]) == pytest.approx(1.0, abs=1e-6)


def gaussian_logits(cx, cy, h=10, w=8, sigma=1.0):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    return (-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))[None, None]


@pytest.mark.parametrize("cx, cy", [(3.3, 4.8), (2.0, 6.0), (4.45, 2.55)])
def test_quadratic_peak_recovers_gaussian_centre(cx, cy):
    # The log of a Gaussian is a quadratic: the Taylor step lands on its centre.
    xy, mass = quadratic_peak(gaussian_logits(cx, cy))
    assert xy[0, 0].tolist() == pytest.approx([cx, cy], abs=1e-4)
    assert 0.9 < float(mass[0, 0]) <= 1.0
    # A wide heatmap overflows the 5x5 window, whose mean is pulled towards the
    # peak cell; the quadratic step is not.
    wide = gaussian_logits(3.4, 4.0, h=10, w=10, sigma=2.5)
    assert float(local_soft_argmax(wide)[0][0, 0, 0]) < 3.35
    assert float(quadratic_peak(wide)[0][0, 0, 0]) == pytest.approx(3.4, abs=1e-4)
    # On the border there is no neighbour on one side: the cell itself is returned.
    assert quadratic_peak(gaussian_logits(0.3, 4.0))[0][0, 0].tolist() == [0.0, 4.0]


def test_quadratic_peak_offset_is_bounded():
    # A flat ridge has no curvature across x: the offset stays at 0, never explodes.
    logits = torch.zeros(1, 1, 6, 6)
    logits[0, 0, 2, :] = 1.0
    xy, _ = quadratic_peak(logits)
    assert float(xy[0, 0, 0]) == 0.0 and float(xy[0, 0, 1]) == pytest.approx(2.0)


def test_flip_logits_maps_mirrored_cells_back():
    w = 48
    logits = torch.full((1, 24, 16, w // STRIDE), -20.0)
    logits[0, WB_L, 5, 2] = 10.0                # waistband_left at cell (2, 5)
    mirrored = logits.flip(-1)[:, torch.as_tensor(FLIP_PERM)]   # as the mirror image shows it
    back = flip_logits(mirrored)
    assert torch.equal(back, logits)
    # in the mirror image the wearer's left point sits in the right channel, mirrored
    assert float(mirrored[0, WB_R, 5, w // STRIDE - 1 - 2]) == 10.0


def test_flip_test_averages_both_views(trained):
    imgs, xy, vis, cats = skirts(8, seed=3)
    plain = trained.predict(list(imgs), cats, flip_test=False)[0]
    both = trained.predict(list(imgs), cats, flip_test=True)[0]
    mirrored = trained.predict(list(imgs[:, :, ::-1]), cats, flip_test=False)[0]
    w = imgs.shape[2]
    # the mirrored image's points, mapped back, are a second estimate of each point
    back = mirrored[:, FLIP_PERM].copy()
    back[..., 0] = w - 1 - back[..., 0]
    on = vis == 1
    assert not np.allclose(plain[on], both[on])
    err = lambda p: normalized_error(xy, vis, p, cats)[0]
    assert err(both) <= max(err(plain), err(np.where(on[..., None], back, -1))) + 1e-9
    with pytest.raises(InputError) as e:
        trained.predict(list(imgs), cats, decoder="median")
    assert e.value.field == "decoder"


def test_cpu_budget_counts_process_time():
    imgs, xy, vis, cats = skirts(32)
    det = tiny(epochs=50, time_budget_s=0.5, budget_clock="cpu").fit(list(imgs), xy, vis)
    assert len(det.history_) < 50 and det.history_[-1]["seconds"] < 5


def test_normalized_error_known_answer():
    xy = np.full((1, 24, 2), -1.0)
    vis = np.full((1, 24), -1)
    xy[0, [WB_L, WB_R, HEM_L]] = [(10, 0), (0, 0), (0, 20)]
    vis[0, [WB_L, WB_R, HEM_L]] = 1
    pred = xy.copy()
    pred[0, HEM_L] = (3, 24)          # off by 5, waistband distance 10
    ne, n = normalized_error(xy, vis, pred, ["skirt"])
    assert n == 3 and ne == pytest.approx(0.5 / 3)
    assert normalized_error(xy, vis, xy, ["skirt"])[0] == 0.0


def test_learns_better_than_mean_shape(trained):
    losses = [h["loss"] for h in trained.history_]
    assert losses[-1] < losses[0]
    imgs, xy, vis, cats = skirts(32, seed=1)
    pxy, pvis, conf = trained.predict(list(imgs), cats)
    assert pxy.shape == (32, 24, 2) and pvis.shape == (32, 24) and conf.shape == (32, 24)
    assert (pvis[:, WB_L] == 1).all() and (pvis[:, 0] == -1).all()
    assert ((conf >= 0) & (conf <= 1)).all() and (conf[:, 0] == 0).all()
    ne = normalized_error(xy, vis, pxy, cats)[0]
    txy, tvis, tcats = skirts(96)[1:]
    base = normalized_error(xy, vis, mean_shape_predict(txy, tvis, np.array(tcats),
                                                        np.array(cats)), cats)[0]
    assert ne < 0.6 * base


def test_save_load_round_trip_and_csv(trained, tmp_path):
    imgs, xy, vis, cats = skirts(4, seed=2)
    trained.save(tmp_path)
    loaded = HeatmapKeypointDetector.load(tmp_path)
    np.testing.assert_array_equal(trained.predict(list(imgs), cats)[0],
                                  loaded.predict(list(imgs), cats)[0])
    frame = loaded.predict_frame(list(imgs), [f"images/{i}.jpg" for i in range(4)], cats)
    write_keypoints_csv(frame, tmp_path / "pred.csv")
    back = read_keypoints_csv(tmp_path / "pred.csv")
    assert back["image_category"].tolist() == cats
    assert (back["neckline_left_v"] == -1).all() and (back["waistband_left_v"] == 1).all()


def test_a_save_that_fails_half_way_leaves_the_previous_detector_whole(trained, tmp_path,
                                                                        monkeypatch):
    import copy
    import pathlib

    imgs, _, _, cats = skirts(4, seed=2)
    trained.save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = copy.deepcopy(trained)
    with torch.no_grad():
        for v in other.net_.parameters():
            v.add_(0.5)

    # the json is written after the state_dict: fail there, as a full disk would
    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "write_text", disk_full)
        with pytest.raises(OSError, match="No space"):
            other.save(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    np.testing.assert_array_equal(HeatmapKeypointDetector.load(tmp_path).predict(
        list(imgs), cats)[0], trained.predict(list(imgs), cats)[0])


@pytest.mark.parametrize("name", ["keypoints.pt", "keypoints.json"])
def test_a_detector_file_cut_short_is_refused_by_name(trained, tmp_path, name):
    from features.exceptions import BundleError

    trained.save(tmp_path)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=name):
        HeatmapKeypointDetector.load(tmp_path)


def test_load_checks_schema(trained, tmp_path):
    trained.save(tmp_path)
    (tmp_path / "keypoints.json").write_text('{"schema": 7, "kind": "heatmap_keypoints"}')
    with pytest.raises(SchemaError):
        HeatmapKeypointDetector.load(tmp_path)


def test_errors():
    imgs, xy, vis, cats = skirts(4)
    with pytest.raises(NotFittedError):
        tiny().predict(list(imgs), cats)
    with pytest.raises(InputError) as e:
        tiny().fit(list(imgs), xy[:2], vis[:2])
    assert e.value.field == "images"
    with pytest.raises(InputError) as e:
        tiny(epochs=1).fit(list(imgs), xy, vis).predict(list(imgs), ["hat"] * 4)
    assert e.value.field == "image_category"


def test_image_paths_decode_like_the_features_stage(tmp_path):
    """The detector trains on image paths (the keypoints stage) and predicts on what
    load_rgb gives (the features stage): a transparent cut-out must be on white in both."""
    from PIL import Image

    from features.imaging import load_rgb
    from features.keypoints.heatmap import _prepare

    rgba = np.zeros((80, 60, 4), np.uint8)            # transparent black background
    rgba[20:60, 15:45] = (30, 30, 120, 255)
    p = tmp_path / "cut.png"
    Image.fromarray(rgba).save(p)
    from_path, tf_path = _prepare([str(p)], (64, 48))
    from_array, tf_array = _prepare([load_rgb(p)], (64, 48))
    np.testing.assert_array_equal(from_path, from_array)
    np.testing.assert_array_equal(tf_path, tf_array)
    assert from_path[0, 0, 0].tolist() == [255, 255, 255]


def test_a_turned_catalogue_photo_trains_upright(tmp_path):
    """The keypoints stage decodes image paths itself: a photo with an EXIF
    orientation tag is letterboxed upright, as load_rgb gives the features stage."""
    from features.imaging import load_rgb
    from features.keypoints.heatmap import _prepare
    from tests.features.synth import turned_photo

    p = turned_photo(tmp_path / "turned.jpg")
    from_path, tf_path = _prepare([str(p)], (64, 48))
    from_array, tf_array = _prepare([load_rgb(p)], (64, 48))
    np.testing.assert_array_equal(from_path, from_array)
    np.testing.assert_array_equal(tf_path, tf_array)
    # portrait 80 x 40 letterboxed to 64 x 32 between white side bands, dark band on top
    img = from_path[0]
    assert (img[:, :6] == 255).all() and (img[:, -6:] == 255).all()
    assert img[:14, 18:30].mean() < 40 and img[24:, 18:30].mean() > 215


@pytest.mark.parametrize("setting, value, said", [
    ("lr", 0, "lr must be a number > 0, got 0"),     # before: kept the random init
    ("sigma", 0, "sigma must be a number > 0, got 0"),   # before: all-zero targets
    ("weight_decay", -1e-4, "weight_decay must be a number >= 0, got -0.0001"),
    ("coord_weight", -0.5, "coord_weight must be a number >= 0, got -0.5"),
    ("time_budget_s", 0, "time_budget_s must be a number > 0, got 0"),  # before: none
    ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
    ("sigma", float("inf"), "sigma must be a finite number > 0, got inf"),  # before: taken
    # before: int() cut 2.7 to 2 epochs without a word, and NaN was int()'s ValueError
    ("epochs", 2.7, "epochs must be a whole number >= 1, got 2.7"),
    ("batch_size", float("nan"), "batch_size must be a whole number >= 1, got nan"),
    ("num_threads", 0, "num_threads must be a whole number >= 1, got 0"),
])
def test_fit_refuses_an_out_of_range_number_by_name(setting, value, said):
    imgs, xy, vis, cats = skirts(4)
    with pytest.raises(InputError) as e:
        tiny(**{setting: value}).fit(list(imgs), xy, vis)
    assert str(e.value) == said and e.value.field == setting
