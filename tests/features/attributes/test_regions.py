"""Region inputs: the keypoint-guided neck box of known layouts, the garment-centred
detail box, crops, geometry, and networks that read a detail only their crop can see."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.attributes import AttributeModel
from features.attributes.model import AttributeNetConfig
from features.attributes.regions import (GEOMETRY_DIM, RegionInputs, crop, detail_box,
                                         detail_inputs, foreground_box, keypoint_geometry,
                                         neck_box, region_inputs)
from features.exceptions import InputError
from features.fashionai.schema import KEYPOINT_INDEX as K


def layout(points: dict) -> tuple[np.ndarray, np.ndarray]:
    xy, vis = np.full((24, 2), -1.0), np.full(24, -1)
    for name, p in points.items():
        xy[K[name]], vis[K[name]] = p, 1
    return xy, vis


TOP = {"neckline_left": (130, 100), "neckline_right": (170, 100), "center_front": (150, 130),
       "shoulder_left": (95, 110), "shoulder_right": (205, 110),
       "armpit_left": (100, 200), "armpit_right": (200, 200)}


def test_neck_box_of_a_known_layout():
    # u = armpit distance 100: side 130 centred on x 150, top 45 above the neckline.
    assert neck_box(*layout(TOP)) == (85.0, 55.0, 215.0, 185.0)


def test_neck_box_falls_back_to_shoulders_and_center_front():
    pts = {k: v for k, v in TOP.items() if not k.startswith(("armpit", "neckline"))}
    # u = shoulder distance 110 / 1.1 = 100; centre from center_front; top 45 above the
    # highest of the shoulders and center_front (110).
    assert neck_box(*layout(pts)) == pytest.approx((85.0, 65.0, 215.0, 195.0))


def test_occluded_points_still_place_the_box():
    xy, vis = layout(TOP)
    vis[K["armpit_left"]] = 0
    assert neck_box(xy, vis) == (85.0, 55.0, 215.0, 185.0)


def test_bottoms_have_no_neck_box():
    xy, vis = layout({"waistband_left": (10, 20), "waistband_right": (30, 20),
                      "hemline_left": (5, 60), "hemline_right": (35, 60)})
    assert neck_box(xy, vis) is None


def test_neck_box_rejects_bad_shapes():
    with pytest.raises(InputError):
        neck_box(np.zeros((5, 2)), np.zeros(5))


def test_crop_is_the_box_and_pads_with_the_background():
    img = np.full((50, 40, 3), 200, np.uint8)
    img[10:20, 5:15] = (255, 0, 0)
    out = crop(img, (5, 10, 15, 20), (10, 10))
    assert (out == (255, 0, 0)).all()
    # Half outside the left edge: the outside half is the border colour.
    out = crop(img, (-10, 10, 10, 20), (10, 20))
    assert (out[:, :10] == 200).all() and (out[:, 15:] == (255, 0, 0)).all()
    with pytest.raises(InputError):
        crop(img, (5, 5, 5, 9), (4, 4))


def test_geometry_is_translation_and_scale_free():
    xy, vis = layout(TOP)
    g = keypoint_geometry(xy, vis)
    assert g.shape == (GEOMETRY_DIM,)
    moved = np.where(vis[:, None] >= 0, xy * 2.5 + (40, -7), -1.0)
    assert np.allclose(keypoint_geometry(moved, vis), g, atol=1e-6)
    r = g.reshape(24, 3)
    # Armpits at (-0.5, 0) and (0.5, 0) of the pair; the neckline 1 unit above them.
    assert r[K["armpit_right"]].tolist() == [0.5, 0.0, 1.0]
    assert r[K["neckline_left"]].tolist() == pytest.approx([-0.2, -1.0, 1.0])
    assert (r[K["waistband_left"]] == 0).all()                   # absent point
    assert not keypoint_geometry(*layout({"crotch": (3, 3)})).any()  # no pair: all zero


def test_region_inputs_rows_without_keypoints():
    img = np.full((300, 300, 3), 90, np.uint8)
    xy, vis = layout(TOP)
    reg = region_inputs([img, img], np.stack([xy, np.full((24, 2), -1.0)]),
                        np.stack([vis, np.full(24, -1)]), (26, 26))
    assert reg.has_crop.tolist() == [True, False]
    assert reg.geometry[1].sum() == 0 and reg.geometry[0].any()
    assert (reg.crops[0] == 90).all()
    with pytest.raises(InputError):
        RegionInputs(reg.crops, reg.geometry[:1], reg.has_crop)


def _marker_set(n: int, seed: int):
    """Packshots whose class is the direction of a striped 9x9 px mark at the neck
    (same mean colour either way): gone once the whole image is letterboxed to
    16x16, plain in the 32x32 neck crop."""
    rng = np.random.default_rng(seed)
    imgs, xys, viss, labels = [], [], [], []
    for i in range(n):
        img = np.full((192, 144, 3), 235, np.uint8)
        img[40:170, 30:114] = rng.integers(60, 120, 3)          # the garment
        cls = i % 2
        mark = np.zeros((9, 9, 3), np.uint8)
        if cls:
            mark[3:6] = 255
        else:
            mark[:, 3:6] = 255
        img[44:53, 67:76] = mark
        imgs.append(img)
        xy, vis = layout({"neckline_left": (62, 42), "neckline_right": (80, 42),
                          "armpit_left": (56, 80), "armpit_right": (88, 80)})
        xys.append(xy)
        viss.append(vis)
        labels.append(["Turtle Neck", "Draped Collar"][cls])
    return imgs, np.stack(xys), np.stack(viss), pd.DataFrame({"neck_design_labels": labels})


def test_network_reads_what_only_the_crop_shows():
    imgs, xy, vis, labels = _marker_set(48, 0)
    kw = dict(preset="tiny", image_size=(16, 16), embed_dim=16, epochs=25, batch_size=16,
              lr=5e-3, augment=False, tta=False, region_preset="tiny", region_dim=16,
              region_dropout=0.0, random_state=0)
    from features.attributes.taxonomy import Taxonomy

    tax = Taxonomy.fashionai(["neck_design_labels"])
    reg = region_inputs(imgs, xy, vis, (32, 32))
    with_regions = AttributeModel(tax, **kw).fit(imgs, labels, regions=reg)
    timg, txy, tvis, tlab = _marker_set(20, 1)
    treg = with_regions.region_inputs(timg, txy, tvis)
    truth = tlab["neck_design_labels"].to_numpy()
    acc = (with_regions.predict(timg, treg)["neck_design_labels"].to_numpy() == truth).mean()
    plain = AttributeModel(tax, **kw).fit(imgs, labels)
    acc_plain = (plain.predict(timg)["neck_design_labels"].to_numpy() == truth).mean()
    assert with_regions.uses_regions and not plain.uses_regions
    assert plain.region_inputs(timg, txy, tvis) is None
    assert acc == 1.0 and acc_plain <= 0.75
    # Without keypoints the region model still answers (rows as if keypoint-less).
    p = with_regions.predict_proba(timg)["neck_design_labels"]
    assert p.shape == (20, len(tax.classes("neck_design_labels")))
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)


def test_region_model_round_trips(tmp_path):
    imgs, xy, vis, labels = _marker_set(8, 2)
    m = AttributeModel(preset="tiny", image_size=(16, 16), embed_dim=16, epochs=1,
                       region_preset="tiny", region_dim=8, random_state=0)
    reg = region_inputs(imgs, xy, vis, (12, 12))
    m.fit(imgs, labels, regions=reg)
    m.save(tmp_path)
    back = AttributeModel.load(tmp_path)
    assert back.uses_regions and back.config_.region_size == (12, 12)
    a = m.predict_proba(imgs, reg)["neck_design_labels"]
    b = back.predict_proba(imgs, back.region_inputs(imgs, xy, vis))["neck_design_labels"]
    assert np.allclose(a, b, atol=1e-6)
    assert back.embed(imgs).shape == (8, 16)
    with pytest.raises(InputError):
        m.fit(imgs, labels, regions=reg.take(slice(0, 4)))


# -- detail crops (no keypoints) ------------------------------------------------------------

def test_foreground_and_detail_box_of_a_known_garment():
    img = np.full((300, 200, 3), 245, np.uint8)
    img[50:250, 40:160] = (90, 60, 40)                  # 120 x 200 px garment
    img[10, 10] = 0                                      # one stray dark pixel: ignored
    assert foreground_box(img) == (40.0, 50.0, 160.0, 250.0)
    # Square of half the shorter side (60 px) at the garment's centre (100, 150).
    assert detail_box(img) == (70.0, 120.0, 130.0, 180.0)
    assert detail_box(img, side=0.25) == (85.0, 135.0, 115.0, 165.0)
    # A white garment on a light background still stands out by more than the tolerance.
    img2 = np.full((100, 80, 3), 250, np.uint8)
    img2[20:80, 20:60] = 215
    assert foreground_box(img2) == (20.0, 20.0, 60.0, 80.0)
    assert foreground_box(np.full((50, 40, 3), 250, np.uint8)) is None
    assert detail_box(np.full((50, 40, 3), 250, np.uint8)) is None


def _texture_set(n: int, seed: int):
    """Packshots whose class is the direction of 1 px stripes over the whole garment
    (same mean colour either way): a flat patch once letterboxed to 16x16, plain in
    the full-resolution detail crop."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for i in range(n):
        img = np.full((160, 120, 3), 240, np.uint8)
        h0, w0 = rng.integers(15, 30), rng.integers(10, 20)
        g = np.empty((160 - 2 * h0, 120 - 2 * w0, 3), np.uint8)
        base = rng.integers(40, 90)
        g[:] = base
        cls = i % 2
        if cls:
            g[::2] = base + 80
        else:
            g[:, ::2] = base + 80
        img[h0:160 - h0, w0:120 - w0] = g
        imgs.append(img)
        labels.append(["knit", "jersey"][cls])
    return imgs, pd.DataFrame({"material": labels})


def test_network_reads_the_texture_only_its_detail_crop_shows():
    imgs, labels = _texture_set(48, 0)
    kw = dict(preset="tiny", image_size=(16, 16), embed_dim=16, epochs=25, batch_size=16,
              lr=5e-3, augment=False, tta=False, region_preset="tiny", region_dim=16,
              region_dropout=0.0, random_state=0)
    reg = detail_inputs(imgs, (24, 24))
    assert reg.kind == "detail" and reg.has_crop.all() and not reg.geometry.any()
    with_detail = AttributeModel(**kw).fit(imgs, labels, regions=reg)
    assert with_detail.region_kind == "detail" and with_detail.config_.geometry_dim == 0
    timg, tlab = _texture_set(20, 1)
    truth = tlab["material"].to_numpy()
    # Without ``regions`` the model cuts the crops from the images itself.
    pred = with_detail.predict(timg)["material"].to_numpy()
    assert (pred == truth).mean() == 1.0
    explicit = with_detail.predict_proba(timg, with_detail.region_inputs(timg))["material"]
    assert np.allclose(with_detail.predict_proba(timg)["material"], explicit, atol=1e-6)
    plain = AttributeModel(**kw).fit(imgs, labels)
    assert plain.region_kind is None
    assert (plain.predict(timg)["material"].to_numpy() == truth).mean() <= 0.75


def test_detail_model_round_trips_and_caches_its_crops(tmp_path):
    from PIL import Image

    imgs, labels = _texture_set(8, 2)
    paths = []
    for i, im in enumerate(imgs):
        paths.append(str(tmp_path / f"i{i}.png"))
        Image.fromarray(im).save(paths[-1])
    reg = detail_inputs(paths, (12, 12), cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("detail_12x12_*.npz"))) == 1
    again = detail_inputs(paths, (12, 12), cache=tmp_path / "cache")
    assert np.array_equal(reg.crops, again.crops) and np.array_equal(reg.crops,
                                                                     detail_inputs(imgs, (12, 12)).crops)
    m = AttributeModel(preset="tiny", image_size=(16, 16), embed_dim=16, epochs=1,
                       region_preset="tiny", region_dim=8, random_state=0)
    m.fit(paths, labels, regions=reg)
    m.save(tmp_path / "model")
    back = AttributeModel.load(tmp_path / "model")
    assert back.region_kind == "detail" and back.config_.region_size == (12, 12)
    assert np.allclose(m.predict_proba(paths)["material"], back.predict_proba(imgs)["material"],
                       atol=1e-6)
    # An unreadable file gets no crop; the others are unchanged.
    bad = detail_inputs(paths[:2] + [str(tmp_path / "missing.png")], (12, 12))
    assert bad.has_crop.tolist() == [True, True, False]
    assert np.array_equal(bad.crops[:2], reg.crops[:2])


def test_region_kind_is_checked_and_old_configs_read_as_neck():
    with pytest.raises(InputError, match="'sleeve'"):
        RegionInputs.empty(2, (8, 8), kind="sleeve")
    cfg = AttributeNetConfig(heads={"a": 2}, region_size=(8, 8)).to_dict()
    cfg.pop("region_kind")                  # a model saved before detail crops existed
    assert AttributeNetConfig.from_dict(cfg).region_kind == "neck"
