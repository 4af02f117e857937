"""The generated folder: layout, validation, exact keypoints and masks, attributes."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features.fashionai.io import (keypoints_to_arrays, label_index, read_attribute_dir,
                                   read_attribute_file, read_keypoints_csv)
from features.fashionai.schema import (ATTRIBUTE_TASKS, CATEGORY_KEYPOINTS, KEYPOINT_INDEX,
                                       KEYPOINT_NAMES, NORMALISING_PAIR)
from recommender.catalog import REQUIRED_COLUMNS, validate_catalog, validate_outfits
from recommender.demo.garments import COAT_BINS, PANT_BINS, SKIRT_BINS, SLEEVE_BINS
from recommender.demo.items import KEYPOINT_CATEGORY

from .conftest import N_ITEMS, SEED


def _catalog(d):
    return pd.read_csv(d / "catalog.csv", dtype={"item_id": str}, keep_default_na=False)


def _mask(d, image_id):
    p = d / image_id.replace("images/", "masks/").replace(".jpg", ".png")
    return np.asarray(Image.open(p)) > 127


def test_catalog_validates_with_images(demo_dir):
    d, counts = demo_dir
    cat = _catalog(d)
    assert len(cat) == N_ITEMS == counts["items"]
    for c in REQUIRED_COLUMNS + ("price", "in_stock", "pattern", "formality", "silhouette",
                                 "colour_name") + tuple(ATTRIBUTE_TASKS):
        assert c in cat.columns
    clean, report = validate_catalog(cat, d, check_images=True)
    assert report.ok, report.summary()
    assert not report.row_issues
    assert clean["image_ok"].all()
    assert (cat["image_path"] == "images/" + cat["item_id"] + ".jpg").all()
    # every slot is present, and the hard white/cream garments are there
    assert set(cat["category"]) == {"top", "bottom", "dress", "outerwear", "shoes", "bag",
                                    "jewellery", "accessory"}
    assert cat["colour_name"].isin(["white", "off-white", "cream"]).any()
    meta = json.loads((d / "demo.json").read_text())
    assert meta["seed"] == SEED and meta["counts"]["items"] == N_ITEMS
    assert {"price", "in_stock"} <= set(meta["simulated_fields"])
    assert "palette_rules" in meta["grammar"]
    assert meta["shape_stats"]["source"] == "builtin"


def test_images_and_masks(demo_dir):
    d, _ = demo_dir
    cat = _catalog(d)
    for p in cat["image_path"].iloc[:25]:
        im = Image.open(d / p)
        assert im.size == (240, 336) and im.mode == "RGB"
        m = _mask(d, p)
        assert m.shape == (336, 240)
        frac = m.mean()
        assert 0.003 < frac < 0.8
        # the background (outside the mask, away from its edge) is light and plain
        rgb = np.asarray(im, dtype=float)
        border = np.concatenate([rgb[:4].reshape(-1, 3), rgb[-4:].reshape(-1, 3)])
        assert border.mean() > 200 and border.std() < 12


def test_keypoints_exact_on_masks(demo_dir):
    d, counts = demo_dir
    cat = _catalog(d).set_index("image_path")
    kp = read_keypoints_csv(d / "fashionai" / "keypoints.csv")
    assert len(kp) == counts["keypoint_rows"]
    apparel = cat["subcategory"].isin(KEYPOINT_CATEGORY)
    assert set(kp["image_id"]) == set(cat.index[apparel])
    xy, vis = keypoints_to_arrays(kp)
    n_occluded = 0
    for i, (image_id, fa_cat) in enumerate(zip(kp["image_id"], kp["image_category"])):
        assert fa_cat == KEYPOINT_CATEGORY[cat.loc[image_id, "subcategory"]]
        subset = {KEYPOINT_INDEX[n] for n in CATEGORY_KEYPOINTS[fa_cat]}
        for j in range(len(KEYPOINT_NAMES)):
            if j not in subset:
                assert vis[i, j] == -1 and (xy[i, j] == -1).all()
            else:
                assert vis[i, j] in (0, 1)
        m = _mask(d, image_id)
        pad = np.pad(m, 2)
        for j in subset:
            x, y = int(xy[i, j, 0]) + 2, int(xy[i, j, 1]) + 2
            win = pad[y - 1:y + 2, x - 1:x + 2]
            assert win.any(), (image_id, KEYPOINT_NAMES[j])   # on or in the drawn mask
            if vis[i, j] == 0:                                 # covered: strictly inside
                assert win.all(), (image_id, KEYPOINT_NAMES[j])
                n_occluded += 1
        # outline points are on the mask's edge: background within 2 px
        for name in ("shoulder_left", "waistband_right", "hemline_left", "bottom_left_out"):
            j = KEYPOINT_INDEX[name]
            if j in subset and vis[i, j] == 1:
                x, y = int(xy[i, j, 0]) + 2, int(xy[i, j, 1]) + 2
                assert not pad[y - 2:y + 3, x - 2:x + 3].all(), (image_id, name)
        # the normalising pair is a real distance (NE is defined)
        a, b = (KEYPOINT_INDEX[n] for n in NORMALISING_PAIR[fa_cat])
        assert np.hypot(*(xy[i, a] - xy[i, b])) > 10
    assert n_occluded > 0   # sleeves folded across the body occlude armpits


def test_attribute_files_match_catalogue(demo_dir):
    d, counts = demo_dir
    cat = _catalog(d).set_index("image_path")
    allrows = read_attribute_dir(d / "fashionai" / "attributes")
    assert sorted(allrows["file"].unique()) == sorted(f"{t}.csv" for t in ATTRIBUTE_TASKS)
    n_maybe = 0
    for task, names in ATTRIBUTE_TASKS.items():
        rows = read_attribute_file(d / "fashionai" / "attributes" / f"{task}.csv")
        assert len(rows) == counts["attribute_rows"][task] > 0
        assert (rows["task"] == task).all()
        expected = cat.index[cat[task] != ""]
        assert set(rows["image_path"]) == set(expected)
        for path, labels in zip(rows["image_path"], rows["labels"]):
            assert labels.count("y") == 1 and labels.count("m") <= 1
            assert names[label_index(labels)] == cat.loc[path, task]
            n_maybe += labels.count("m")
    assert 0 < n_maybe < 0.4 * len(allrows)
    # one neck task per top or dress, a lapel for outerwear only
    body = cat[cat["category"].isin(["top", "dress"])]
    nk = (body[["neckline_design_labels", "collar_design_labels", "neck_design_labels"]]
          != "").sum(axis=1)
    assert (nk == 1).all()
    assert (cat.loc[cat["lapel_design_labels"] != "", "category"] == "outerwear").all()


def _measure(kp, name_a, name_b, norm):
    xy, vis = keypoints_to_arrays(kp)
    a, b = (KEYPOINT_INDEX[n] for n in (name_a, name_b))
    p, q = (KEYPOINT_INDEX[n] for n in norm)
    return (np.hypot(*(xy[:, a] - xy[:, b]).T) / np.hypot(*(xy[:, p] - xy[:, q]).T))


@pytest.mark.parametrize("task,cats,pts,bins", [
    ("sleeve_length_labels", ("blouse", "outwear", "dress"),
     ("shoulder_left", "cuff_left_out"), SLEEVE_BINS),
    ("pant_length_labels", ("trousers",), ("waistband_left", "bottom_left_out"), PANT_BINS),
    ("skirt_length_labels", ("skirt",), ("waistband_left", "hemline_left"), SKIRT_BINS),
    ("coat_length_labels", ("blouse", "outwear"), ("shoulder_left", "top_hem_left"), COAT_BINS),
])
def test_length_attributes_follow_the_drawn_shape(demo_dir, task, cats, pts, bins):
    """Known answer: the measured length (pixels, from the exact keypoints) orders the
    classes exactly as the attribute bins do, so a network can learn them from pixels."""
    d, _ = demo_dir
    cat = _catalog(d).set_index("image_path")
    kp = read_keypoints_csv(d / "fashionai" / "keypoints.csv")
    kp = kp[kp["image_category"].isin(cats)].reset_index(drop=True)
    norm = NORMALISING_PAIR[cats[0]]
    ratio = _measure(kp, *pts, norm)
    cls = cat.loc[kp["image_id"], task].to_numpy()
    med = pd.Series(ratio).groupby(cls).median()
    order = [c for c in bins if c in med.index]
    assert len(order) >= 3
    assert np.all(np.diff(med[order].to_numpy()) > 0), med[order]


def test_outfits_follow_the_layout(demo_dir):
    d, counts = demo_dir
    cat = _catalog(d)
    outfits = pd.read_csv(d / "outfits.csv", dtype=str)
    assert list(outfits.columns) == ["outfit_id", "item_id"]
    clean, problems = validate_outfits(outfits, cat["item_id"])
    assert not problems and len(clean) == len(outfits)
    sizes = outfits.groupby("outfit_id").size()
    assert len(sizes) == N_ITEMS // 3 == counts["outfits"]
    assert sizes.min() >= 3 and sizes.max() <= 7
    slots = outfits.merge(cat[["item_id", "category"]], on="item_id")
    per = slots.groupby("outfit_id")["category"].agg(list)
    for cats in per:
        assert cats.count("shoes") == 1
        assert ("dress" in cats) != ("top" in cats and "bottom" in cats)
        assert len(set(cats)) == len(cats)
    used = outfits["item_id"].value_counts()
    assert counts["cold_items"] == N_ITEMS - len(used) > 0
    assert used.max() >= 4 * used.median()   # popularity is skewed


def test_an_interrupted_regeneration_is_not_trusted_by_the_build(tmp_path):
    # before: regenerating a folder (another seed) deleted its images but kept the old
    # demo.json until the end, so after a Ctrl-C `mixmatch build` found the old seed's
    # marker, said "already at" and ingested a half-rendered catalogue with no keypoints
    from recommender.build import prepare_demo_source
    from recommender.demo import generate_demo

    src = tmp_path / "source"
    generate_demo(src, n_items=12, seed=0, fashionai_keypoints=False)

    def stop(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_demo(src, n_items=12, seed=1, fashionai_keypoints=False, progress=stop)
    log = []
    prepare_demo_source(src, 12, 0, log.append)
    assert log[0].startswith("[demo] generating 12 items (seed 0)")
    assert len(list((src / "images").iterdir())) == 12
    assert json.loads((src / "demo.json").read_text())["seed"] == 0
