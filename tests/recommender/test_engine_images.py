"""Image paths of the engine (analyze, search by photo, cold start from a photo) on
demo bundles built by the real pipeline.

Two bundles:

- ``pipeline_bundle`` (tests/recommender/conftest.py): the quick demo build. Its
  attribute network is barely trained, so the known answers checked on it do not
  depend on the network being good: a catalogue image analysed through the engine
  must reproduce that item's row of the features table and its embedding (the
  photo goes through the same chain as the build).
- ``trained_bundle``: a copy whose attribute network is retrained for 20 epochs on
  two heads (about 15 s here), then features, compatibility and graph re-run. On it
  the recognition answers are checked: an item's own catalogue image gives its
  category and the item itself as the first visual match.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from features.exceptions import InputError, StageNotAvailable
from features.fashionai.schema import CATEGORY_KEYPOINTS
from features.imaging import load_rgb
from recommender.bundle import Bundle
from recommender.engine import Engine
from recommender.pipeline import BuildContext, run_stages
from recommender.rules import parse_rules

RETRAIN = {"epochs": 20, "ema_decay": 0.0, "lr": 0.01, "augment": False,
           "weight_decay": 0.0, "heads": ["subcategory", "sleeve_length_labels"]}


@pytest.fixture(scope="module")
def quick_engine(pipeline_bundle):
    return Engine.load(pipeline_bundle)


@pytest.fixture(scope="module")
def trained_bundle(pipeline_bundle, tmp_path_factory):
    dst = tmp_path_factory.mktemp("trained") / "bundle"
    shutil.copytree(pipeline_bundle, dst, symlinks=True)
    b = Bundle.open(dst)
    cfg = dict(b.manifest["config"], stages={"attributes": RETRAIN})
    # the classical features are reused from the copied part files; only the
    # network's outputs are recomputed
    run_stages(BuildContext(b, cfg, log=lambda m: None),
               ["attributes", "features", "compatibility", "graph"])
    return dst


@pytest.fixture(scope="module")
def engine_t(trained_bundle):
    return Engine.load(trained_bundle)


def photo(engine, i: int) -> np.ndarray:
    return load_rgb(engine.bundle.image_root / engine.catalog["image_path"].iloc[i])


def test_analyze_reproduces_the_items_feature_row(quick_engine):
    e = quick_engine
    f = e.features
    cats = e.table.category
    # one item with FashionAI keypoints (a top) and one without (shoes)
    picks = [int(np.flatnonzero(cats == "top")[0]), int(np.flatnonzero(cats == "shoes")[0])]
    for i in picks:
        rgb = photo(e, i)
        out = e.analyze_image(rgb)
        json.dumps(out, allow_nan=False)
        assert out["category"] in e.categories
        assert out["colour_group"] == f["colour_group"].iloc[i]
        assert sum(c["weight"] for c in out["colours"]) == pytest.approx(1.0, abs=1e-3)
        for h, a in out["attributes"].items():
            assert a["value"] == f[f"attr_{h}"].iloc[i]
            assert a["confidence"] == pytest.approx(f[f"attr_{h}_conf"].iloc[i], abs=1e-3)
        feats, z = e.image_features(rgb)
        assert float(z @ np.asarray(e.emb[i])) > 0.9999
        if out["keypoints"] is None:
            continue
        # apparel: keypoints and shape as the features stage computed them, when the
        # photo's recognised category gives the same FashionAI category
        kp = out["keypoints"]
        assert [p["name"] for p in kp["points"]] == list(CATEGORY_KEYPOINTS[kp["category"]])
        h, w = rgb.shape[:2]
        assert all(0 <= p["x"] <= w and 0 <= p["y"] <= h for p in kp["points"]
                   if p["x"] is not None)
        if kp["category"] == f["kp_category"].iloc[i]:
            assert kp["mean_confidence"] == pytest.approx(f["kp_conf"].iloc[i], abs=1e-3)
            for name, v in out["shape"].items():
                assert v == pytest.approx(f[f"shape_{name}"].iloc[i], abs=1e-3)


def test_own_image_gives_category_and_itself_first(engine_t):
    e = engine_t
    sample = list(range(0, len(e.catalog), 25))  # 12 items across categories
    right = 0
    for i in sample:
        rgb = photo(e, i)
        out = e.analyze_image(rgb)
        if out["category"] != e.table.category[i]:
            continue
        right += 1
        res = e.search_by_image(rgb, {}, k=5)
        assert res["items"][0]["item_id"] == e.table.ids[i]
        assert all(it["category"] == out["category"] for it in res["items"])
    assert right >= 0.8 * len(sample)


def test_search_by_image_with_an_override(engine_t):
    """"This top, but with another sleeve length": every result has the override and
    the photo's category; the first is the visually nearest item satisfying the
    filters the engine reports."""
    e = engine_t
    tops = np.flatnonzero(e.table.category == "top")
    sleeve = e.table.column("sleeve_length_labels")
    i = int(tops[0])
    other = [v for v in pd.unique(sleeve[tops]) if v and v != sleeve[i]][0]
    rgb = photo(e, i)
    if e.analyze_image(rgb)["category"] != "top":
        pytest.skip("the retrained network does not recognise this top")
    res = e.search_by_image(rgb, {"sleeve_length_labels": other}, k=4)
    json.dumps(res, allow_nan=False)
    assert res["overrides"] == {"sleeve_length_labels": [other]}
    assert res["filters"]["category"] == ["top"]
    assert "attr_sleeve_length_labels" not in res["filters"]  # the override releases it
    got = [it["item_id"] for it in res["items"]]
    assert got and e.table.ids[i] not in got
    rows = e.table.index_of(got)
    assert (sleeve[rows] == other).all() and (e.table.category[rows] == "top").all()
    scores = [it["score"] for it in res["items"]]
    assert scores == sorted(scores, reverse=True)
    # recompute the ranking from the reported filters
    m = np.ones(len(e.catalog), bool)
    for field, vals in res["filters"].items():
        m &= np.isin(e.table.column(field), vals)
    assert m.sum() == res["n_matches"]
    _, z = e.image_features(rgb)
    cand = np.flatnonzero(m)
    best = cand[np.argmax(np.asarray(e.emb[cand]) @ z)]
    assert got[0] == e.table.ids[best]


def test_search_by_image_counts_only_what_the_rules_allow(engine_t):
    e = engine_t
    i = int(np.flatnonzero(e.table.category == "top")[0])
    rgb = photo(e, i)
    cat = e.search_by_image(rgb, {}, k=3)["recognised"]["category"]
    if cat is None:
        pytest.skip("the retrained network recognises no category for this top")
    r = parse_rules({"version": "x", "filters": {"exclude_categories": [cat]}})
    res = e.search_by_image(rgb, {}, k=3, rules=r)
    # every match is of the excluded category: none may be shown, none is counted
    assert res["items"] == [] and res["n_matches"] == 0


def test_image_errors_name_the_field(engine_t):
    e = engine_t
    rgb = photo(e, 0)
    with pytest.raises(InputError) as err:
        e.search_by_image(rgb, {"sleve": "Long Sleeves"})
    assert err.value.field == "sleve"
    with pytest.raises(InputError) as err:
        e.search_by_image(rgb, {"sleeve_length_labels": "Very Long"})
    assert err.value.field == "sleeve_length_labels"
    with pytest.raises(InputError) as err:
        e.search_by_image(rgb, {}, k=0)
    assert err.value.field == "k"
    for bad in (rgb.astype(float), rgb[..., :2], np.zeros((4, 4, 3), np.uint8),
                np.zeros((8, 900, 3), np.uint8), "x"):
        with pytest.raises(InputError) as err:
            e.analyze_image(bad)
        assert err.value.field == "image"


def test_a_photo_shrunk_while_decoded_is_answered_in_its_own_pixels(quick_engine):
    """The API decodes an upload shrunk to photo_max_side and passes the photo's size:
    the answer is the one for the whole photo (keypoints and image_size in its
    pixels), and a size that cannot be the photo's is refused, naming it."""
    from PIL import Image

    from features.imaging import resize_max_side

    e = quick_engine
    i = int(np.flatnonzero(e.table.category == "top")[0])
    p = Image.fromarray(photo(e, i))
    k = -(-1100 // max(p.size))
    whole = np.asarray(p.resize((p.width * k, p.height * k), Image.BILINEAR))
    small = resize_max_side(whole, e.photo_max_side)
    out = e.analyze_image(small, size=whole.shape[:2])
    assert out == e.analyze_image(whole)
    assert out["image_size"] == list(whole.shape[:2])
    for bad in ((10, 10), (whole.shape[0],), "x", (True, 3000)):
        with pytest.raises(InputError, match="size must be the photo's") as err:
            e.analyze_image(small, size=bad)
        assert err.value.field == "size"
    # too thin at max_side: said in the photo's size, not the shrunk array's
    thin = resize_max_side(np.zeros((40, 5000, 3), np.uint8), e.photo_max_side)
    with pytest.raises(InputError, match="image 5000x40 is too thin"):
        e.analyze_image(thin, size=(40, 5000))


def test_a_too_small_photo_is_refused_with_its_size(engine):
    """A 1x1 upload (a tracking pixel, a broken thumbnail) is a 400 whose message
    says the photo's size and the least one taken, not that "an RGB uint8 array"
    was expected: the shopper's page sent a PNG, never an array. Checked before the
    models are needed (the tiny bundle has none)."""
    for h, w in ((1, 1), (7, 40)):
        with pytest.raises(InputError, match=f"image is {w}x{h} pixels; at least 8x8") \
                as err:
            engine.analyze_image(np.zeros((h, w, 3), np.uint8))
        assert err.value.field == "image"
    with pytest.raises(InputError, match="at least 8x8"):
        engine.search_by_image(np.zeros((1, 1, 3), np.uint8), {}, 3)


def test_no_attribute_network_is_stage_not_available(engine):
    # the tiny bundle has embeddings but no models/attributes.pt
    with pytest.raises(StageNotAvailable, match="attributes.pt"):
        engine.analyze_image(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(StageNotAvailable):
        engine.search_by_image(np.zeros((32, 32, 3), np.uint8), {}, 3)


def test_cold_start_from_a_photo_uses_the_compatibility_model(engine_t):
    e = engine_t
    assert e.compat is not None
    i = int(np.flatnonzero(e.table.category == "top")[0])
    rgb = photo(e, i)
    if e.analyze_image(rgb)["category"] != "top":
        pytest.skip("the retrained network does not recognise this top")
    out = e.complements_for_image(rgb, k=3)
    json.dumps(out, allow_nan=False)
    assert out["recognised"]["category"] == "top"
    cats = [g["category"] for g in out["groups"]]
    assert cats and "top" not in cats and "dress" not in cats
    feats, z = e.image_features(rgb)
    for g in out["groups"]:
        ids = [it["item_id"] for it in g["items"]]
        assert len(ids) == len(set(ids)) and len(ids) <= 3
        rows = e.table.index_of(ids)
        assert (e.table.category[rows] == g["category"]).all()
        want = e.compat.score_pairs_rows(pd.DataFrame([feats]), z[None, :], rows)
        assert [it["score"] for it in g["items"]] == pytest.approx(want, abs=1e-4)
