"""Framing before letterboxing: the garment crop (``crop="garment"``), its cache and the
model parameter that carries it from training to prediction."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features.attributes import AttributeModel
from features.attributes.data import (GARMENT_MARGIN, MAX_GARMENT_ZOOM, as_image_array, frame,
                                      garment_box, load_images)
from features.exceptions import InputError, SchemaError

SIZE = (40, 28)


def packshot(h=200, w=140, box=(60, 50, 140, 90), colour=(40, 40, 40), bg=235):
    """A light background with one dark garment rectangle ``box`` = (top, left, bottom,
    right)."""
    img = np.full((h, w, 3), bg, np.uint8)
    t, lft, b, r = box
    img[t:b, lft:r] = colour
    return img


def dark_share(img):
    return float((img.mean(2) < 128).mean())


def test_box_holds_the_garment_with_margin_at_the_network_aspect():
    img = packshot()
    t, lft, b, r = garment_box(img, (160, 112))
    assert t <= 60 and b >= 140 and lft <= 50 and r >= 90            # the whole garment
    margin = GARMENT_MARGIN * 80                                      # of the longer side
    assert 60 - t >= margin - 1 and b - 140 >= margin - 1
    assert abs((b - t) / (r - lft) - 160 / 112) < 0.05                # network's aspect
    # centred on the garment
    assert abs((t + b) / 2 - 100) <= 1 and abs((lft + r) / 2 - 70) <= 1


def test_box_stays_inside_the_image_and_caps_the_zoom():
    # a garment in a corner: the box shifts inside the frame rather than padding
    t, lft, b, r = garment_box(packshot(box=(5, 5, 60, 45)), (160, 112))
    assert t >= 0 and lft >= 0 and b <= 200 and r <= 140
    assert t <= 5 and b >= 60 and lft <= 5 and r >= 45
    # a small item (a ring): at most MAX_GARMENT_ZOOM times the whole frame's scale
    t, lft, b, r = garment_box(packshot(box=(88, 60, 112, 80)), (160, 112))
    frame_scale = min(160 / 200, 112 / 140)
    assert 160 / (b - t) <= MAX_GARMENT_ZOOM * frame_scale + 1e-6
    assert t <= 88 and b >= 112 and lft <= 60 and r >= 80


def test_no_box_without_a_garment():
    assert garment_box(np.full((120, 90, 3), 235, np.uint8), (160, 112)) is None


def test_garment_crop_gives_the_garment_more_pixels():
    img = packshot()
    whole, cut = frame(img, SIZE), frame(img, SIZE, "garment")
    assert whole.shape == cut.shape == (*SIZE, 3)
    assert dark_share(cut) > 1.8 * dark_share(whole)
    # a blank frame is letterboxed as a whole either way
    blank = np.full((120, 90, 3), 235, np.uint8)
    np.testing.assert_array_equal(frame(blank, SIZE, "garment"), frame(blank, SIZE))


def test_bad_crop_is_named():
    with pytest.raises(InputError) as e:
        frame(packshot(), SIZE, "face")
    assert e.value.field == "crop" and "face" in str(e.value)
    with pytest.raises(InputError) as e:
        load_images([], SIZE, crop="tight")
    assert e.value.field == "crop"


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(70):
        top = 20 + (i % 5) * 10
        img = packshot(box=(top, 30 + i % 7, top + 90, 80 + i % 7),
                       colour=(200 if i % 2 else 30, 40, 40))
        p = tmp_path / f"img{i}.jpg"
        Image.fromarray(img).save(p, quality=95)
        paths.append(str(p))
    return paths


def test_load_images_crops_caches_per_crop_and_decodes_in_processes(files, tmp_path):
    cache = tmp_path / "cache"
    whole, ok1 = load_images(files, SIZE, cache=cache)
    cut, ok2 = load_images(files, SIZE, cache=cache, crop="garment", workers=2)
    assert ok1.all() and ok2.all()
    assert np.mean([dark_share(c) for c in cut]) > 1.5 * np.mean([dark_share(w) for w in whole])
    # each crop has its own cache file, read back unchanged
    names = sorted(p.name for p in cache.glob("*.ok.npy"))
    assert len(names) == 2 and any("_garment_" in n for n in names)
    np.testing.assert_array_equal(load_images(files, SIZE, cache=cache, crop="garment")[0], cut)
    np.testing.assert_array_equal(load_images(files, SIZE, cache=cache)[0], whole)
    # the processes decode exactly what one process does
    np.testing.assert_array_equal(load_images(files, SIZE, crop="garment")[0], cut)
    # paths framed on the fly match the loaded array
    np.testing.assert_array_equal(as_image_array(files[:3], SIZE, "garment"), cut[:3])


def test_model_carries_its_crop_to_prediction(files, tmp_path):
    labels = pd.DataFrame({"colour": ["red" if i % 2 else "dark" for i in range(len(files))]})
    cut, _ = load_images(files, SIZE, crop="garment")
    whole, _ = load_images(files, SIZE)
    model = AttributeModel(preset="tiny", image_size=SIZE, embed_dim=16, epochs=3,
                           batch_size=16, crop="garment", ema_decay=0.0,
                           random_state=0).fit(cut, labels)
    from_paths = model.predict_proba(files[:6])["colour"]
    np.testing.assert_allclose(from_paths, model.predict_proba(cut[:6])["colour"], rtol=1e-5)
    # the embedding (which any input moves) shows what the network was shown
    emb = model.embed(files[:6])
    np.testing.assert_allclose(emb, model.embed(cut[:6]), rtol=1e-5, atol=1e-6)
    assert np.abs(emb - model.embed(whole[:6])).max() > 1e-3
    # full-resolution arrays are framed the same way as paths
    full = [np.asarray(Image.open(p).convert("RGB")) for p in files[:6]]
    np.testing.assert_allclose(model.embed(full), emb, atol=2e-3)
    model.save(tmp_path / "m")
    loaded = AttributeModel.load(tmp_path / "m")
    assert loaded.crop == "garment"
    np.testing.assert_allclose(loaded.predict_proba(files[:6])["colour"], from_paths, rtol=1e-5)
    # a bad value is refused when fitting and when loading
    with pytest.raises(InputError) as e:
        AttributeModel(preset="tiny", image_size=SIZE, crop="centre").fit(cut[:8], labels[:8])
    assert e.value.field == "crop"
    meta = json.loads((tmp_path / "m" / "attributes.json").read_text())
    meta["params"]["crop"] = "centre"
    (tmp_path / "m" / "attributes.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="attributes.json.*centre"):
        AttributeModel.load(tmp_path / "m")


def test_old_model_files_frame_the_whole_image(files, tmp_path):
    """Files saved before the parameter existed have no ``crop``: they keep the whole
    frame, as they were trained."""
    whole, _ = load_images(files[:16], SIZE)
    labels = pd.DataFrame({"colour": ["red" if i % 2 else "dark" for i in range(16)]})
    model = AttributeModel(preset="tiny", image_size=SIZE, embed_dim=16, epochs=1,
                           batch_size=16, random_state=0).fit(whole, labels)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "attributes.json").read_text())
    del meta["params"]["crop"]
    (tmp_path / "attributes.json").write_text(json.dumps(meta))
    loaded = AttributeModel.load(tmp_path)
    assert loaded.crop == "frame"
    np.testing.assert_allclose(loaded.predict_proba(files[:4])["colour"],
                               model.predict_proba(whole[:4])["colour"], rtol=1e-5)


def test_training_images_decode_like_the_features_stage(tmp_path):
    """The attribute network trains and is evaluated on what load_images gives, and
    predicts in the features stage and the API on what load_rgb / decode_upload give:
    a transparent cut-out (composited on white there) and a 16-bit greyscale image
    must come out the same from both, or the network sees another background."""
    from features.attributes.data import load_image
    from features.imaging import load_rgb

    rgba = np.zeros((60, 40, 4), np.uint8)          # transparent black around the garment
    rgba[15:45, 10:30] = (200, 30, 30, 255)
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    g16 = np.full((60, 40), 60000, np.uint16)
    g16[15:45, 10:30] = 20000
    Image.fromarray(g16).save(tmp_path / "g16.png")
    for name in ("cut.png", "g16.png"):
        p = tmp_path / name
        np.testing.assert_array_equal(load_image(p), load_rgb(p), err_msg=name)
    framed, ok = load_images([str(tmp_path / "cut.png")], SIZE)
    assert ok.all() and framed[0][0, 0].tolist() == [255, 255, 255]


def test_a_turned_catalogue_photo_is_loaded_upright(tmp_path):
    """The attribute stage's loaders turn a photo with an EXIF orientation tag upright
    (as load_rgb and uploads do), also when JPEG draft mode decodes it smaller; the
    decoded-image cache of such a photo is keyed apart from one read on its side."""
    from features.attributes.data import file_stamp, load_image
    from features.imaging import load_rgb
    from tests.features.synth import turned_photo

    p = turned_photo(tmp_path / "turned.jpg", h=200, w=400)
    full = load_image(p)
    assert full.shape == (400, 200, 3) and full[:20].mean() < 40
    np.testing.assert_array_equal(full, load_rgb(p))
    small = load_image(p, size=(40, 20))
    assert small.shape == (40, 20, 3)
    assert small[:1].mean() < 60 and small[10:].mean() > 200
    arr, ok = load_images([str(p)], (40, 20), cache=tmp_path / "cache")
    assert ok.all()
    np.testing.assert_array_equal(arr[0], small)
    assert file_stamp(p).endswith("|exif6")
