import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features import extract as X
from features.extract import BASE_COLUMNS, extract_features, run_stage, stage_inputs
from features.fashionai.io import read_keypoints_csv
from features.shape import SHAPE_FEATURES
from tests.features.synth import packshot
from tests.faults import save_dies_half_way


def _catalogue(tmp_path, n_ok=6):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    rows = []
    specs = [("top", "T-shirt", "tshirt", (180, 30, 40)),
             ("bottom", "Trousers", "trousers", (30, 30, 30)),
             ("bottom", "Skirts", "rect", (30, 60, 150)),
             ("shoes", "Sneakers", "rect", (120, 80, 40))]
    for i in range(n_ok):
        slot, sub, shape, fg = specs[i % len(specs)]
        img, _ = packshot(shape=shape, fg=fg, seed=i)
        Image.fromarray(img).save(img_dir / f"i{i}.jpg", quality=92)
        rows.append((f"i{i}", slot, sub, f"images/i{i}.jpg"))
    (img_dir / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 corrupt")
    rows.append(("bad", "top", "Shirt", "images/bad.jpg"))
    rows.append(("gone", "dress", "Dresses", "images/gone.jpg"))
    rows.append(("noimg", "bag", "Bags", ""))
    df = pd.DataFrame(rows, columns=["item_id", "category", "subcategory", "image_path"])
    for c in ("colour", "material", "gender"):
        df[c] = ""
    return df


def _tiny_attribute_model(tmp_path, cat):
    """A one-epoch tiny network trained to tell the slots of the catalogue's images."""
    from features.attributes import AttributeModel

    ok = cat["item_id"].str.startswith("i")
    imgs = [np.asarray(Image.open(tmp_path / p).convert("RGB")) for p in cat.loc[ok, "image_path"]]
    labels = pd.DataFrame({"slot": cat.loc[ok, "category"].tolist()})
    return AttributeModel(preset="tiny", image_size=(24, 16), embed_dim=16, epochs=1,
                          batch_size=8, random_state=0, num_threads=1).fit(imgs, labels)


def _run_features_stage(tmp_path, cat, model, source):
    """The features stage on a bundle holding ``cat`` and the saved ``model``."""
    from recommender.bundle import Bundle
    from recommender.pipeline import BuildContext, run_stages

    b = Bundle.create(tmp_path / "bundle", source=source, image_root=tmp_path)
    cat.to_parquet(b.path("catalog.parquet"))
    model.save(b.path("models"))
    ctx = BuildContext(bundle=b, config={"stages": {"features": {"workers": 1}}},
                       log=lambda m: None)
    return b, run_stages(ctx, ["features"])["features"]


def test_extract_rows_columns_and_failures(tmp_path):
    cat = _catalogue(tmp_path)
    out = tmp_path / "feat"
    s = extract_features(cat, tmp_path, out, progress=False, workers=1, chunk_size=4)
    assert s["n_items"] == 9 and s["n_failed"] == 3
    assert "absent" in s["embedding"]
    t = pd.read_parquet(out / "features.parquet")
    assert list(t.columns) == list(BASE_COLUMNS)
    assert t["item_id"].tolist() == cat["item_id"].tolist()
    bad = t.set_index("item_id")
    assert not bad.loc["bad", "feat_ok"] and "unreadable" in bad.loc["bad", "feat_error"]
    assert "not found" in bad.loc["gone", "feat_error"]
    assert bad.loc["noimg", "feat_error"] == "no image"
    good = t[t["feat_ok"]]
    assert (good["feat_error"] == "").all() and (good["mask_quality"] > 0.8).all()
    w = good[[f"colour{i}_w" for i in (1, 2, 3)]].fillna(0).sum(axis=1)
    np.testing.assert_allclose(w, 1.0, atol=1e-9)
    assert bad.loc["i0", "colour_group"] == "RED" and bad.loc["i2", "colour_group"] == "BLUE"
    # keypoints only for apparel; shoes get NaN shape features and kp_conf
    assert bad.loc["i1", "kp_category"] == "trousers" and bad.loc["i2", "kp_category"] == "skirt"
    assert bad.loc["i3", "kp_category"] == "" and np.isnan(bad.loc["i3", "kp_conf"])
    assert np.isnan(bad.loc["i3", SHAPE_FEATURES].astype(float)).all()
    assert 0 < bad.loc["i1", "kp_conf"] <= 1 and bad.loc["i1", "shape_rise"] > 0
    kp = read_keypoints_csv(out / "keypoints.csv")
    assert kp["image_id"].tolist() == ["images/i0.jpg", "images/i1.jpg", "images/i2.jpg",
                                       "images/i4.jpg", "images/i5.jpg"]
    assert set(kp["image_category"]) == {"blouse", "trousers", "skirt"}
    conf = pd.read_parquet(out / "keypoint_confidence.parquet")
    assert conf["item_id"].tolist() == ["i0", "i1", "i2", "i4", "i5"]
    assert conf.filter(like="conf_").shape[1] == 24


def test_extract_is_idempotent_and_resumable(tmp_path):
    cat = _catalogue(tmp_path)
    out = tmp_path / "feat"
    extract_features(cat, tmp_path, out, progress=False, workers=1, chunk_size=4)
    first = (out / "features.parquet").read_bytes(), (out / "keypoints.csv").read_bytes()
    parts = sorted((out / "parts").rglob("part_*.parquet"))
    assert len(parts) == 2  # 8 items with an image path in chunks of 4 (+ no_image)
    parts[1].unlink()  # an interrupted run: one chunk never finished
    s = extract_features(cat, tmp_path, out, progress=False, workers=1, chunk_size=4)
    assert s["parts_resumed"] == 1
    assert ((out / "features.parquet").read_bytes(), (out / "keypoints.csv").read_bytes()) \
        == first
    s = extract_features(cat, tmp_path, out, progress=False, workers=1, chunk_size=4)
    assert s["parts_resumed"] == 2


def test_a_fresh_extraction_computes_every_part_again(tmp_path):
    # before: `mixmatch features --force` said "running it again" and re-assembled
    # the cached parts, so a part damaged or made by other code stayed in the table
    cat = _catalogue(tmp_path)
    out = tmp_path / "feat"
    extract_features(cat, tmp_path, out, progress=False, workers=1, chunk_size=4)
    first = pd.read_parquet(out / "features.parquet")
    part = sorted((out / "parts").rglob("part_*.parquet"))[0]
    stale = pd.read_parquet(part)
    stale["colour_group"] = "STALE"
    stale.to_parquet(part)
    s = extract_features(cat, tmp_path, out, progress=False, workers=1, chunk_size=4)
    assert s["parts_resumed"] == 2
    assert (pd.read_parquet(out / "features.parquet")["colour_group"] == "STALE").sum() == 4
    s = extract_features(cat, tmp_path, out, progress=False, workers=1, chunk_size=4,
                         fresh=True)
    assert s["parts_resumed"] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "features.parquet"), first)


def test_extract_with_two_worker_processes_matches_one(tmp_path, monkeypatch):
    cat = _catalogue(tmp_path)
    extract_features(cat, tmp_path, tmp_path / "one", progress=False, workers=1,
                     chunk_size=3)
    monkeypatch.setattr(X, "MIN_ITEMS_FOR_WORKERS", 2)
    s = extract_features(cat, tmp_path, tmp_path / "two", progress=False, workers=2,
                         chunk_size=3)
    assert s["workers"] == 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one" / "features.parquet"),
                                  pd.read_parquet(tmp_path / "two" / "features.parquet"))


def test_bad_settings(tmp_path):
    cat = _catalogue(tmp_path)
    from features.exceptions import InputError
    with pytest.raises(InputError):
        extract_features(cat, tmp_path, tmp_path / "o", progress=False, workers=0)
    with pytest.raises(InputError):
        extract_features(cat.drop(columns="image_path"), tmp_path, tmp_path / "o",
                         progress=False)


def test_features_stage_in_a_bundle(tmp_path):
    from recommender.bundle import Bundle
    from recommender.pipeline import BuildContext, STAGES, run_stages

    cat = _catalogue(tmp_path)
    b = Bundle.create(tmp_path / "bundle", source="csv", image_root=tmp_path)
    cat.to_parquet(b.path("catalog.parquet"))
    logs = []
    ctx = BuildContext(bundle=b, config={"source": "csv", "stages": {
        "features": {"workers": 1, "chunk_size": 4}}}, log=logs.append)
    res = run_stages(ctx, ["features"])
    m = res["features"]
    assert m["n_failed"] == 3 and "absent" in m["embedding"]
    rec = b.stage_record("features")
    assert "features/features.parquet" in rec["outputs"]
    assert not b.path("features/embeddings.npy").exists()
    assert any("3 of 9 items failed" in line for line in logs)
    # unchanged inputs: skipped
    run_stages(ctx, ["features"])
    assert any("up to date" in line for line in logs)
    bad = BuildContext(bundle=b, config={"stages": {"features": {"nope": 1}}})
    from features.exceptions import InputError
    with pytest.raises(InputError):
        stage_inputs(bad)


def test_features_stage_with_an_attribute_model(tmp_path):
    """With models/attributes.pt the table gets attr_* columns and embeddings.npy
    (L2-normalised rows; failed items are zero rows)."""
    pytest.importorskip("torch")
    cat = _catalogue(tmp_path)
    b, m = _run_features_stage(tmp_path, cat, _tiny_attribute_model(tmp_path, cat), "csv")
    assert m["attributes"] == ["attr_slot"] and m["embedding"].startswith("16-d")
    t = pd.read_parquet(b.path("features/features.parquet"))
    assert set(t.loc[t["feat_ok"], "attr_slot"]) <= {"top", "bottom", "shoes"}
    assert ((t.loc[t["feat_ok"], "attr_slot_conf"] > 0) & (t.loc[t["feat_ok"], "attr_slot_conf"] <= 1)).all()
    emb = np.load(b.path("features/embeddings.npy"))
    assert emb.shape == (len(cat), 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb[t["feat_ok"].to_numpy()], axis=1), 1.0,
                               atol=1e-5)
    assert (emb[~t["feat_ok"].to_numpy()] == 0).all()
    assert "features/embeddings.npy" in b.stage_record("features")["outputs"]


def test_features_stage_uses_a_trained_keypoint_detector(tmp_path):
    """With models/keypoints.pt apparel keypoints come from the heatmap detector."""
    pytest.importorskip("torch")
    from features.keypoints.heatmap import HeatmapKeypointDetector
    from features.keypoints.silhouette import estimate_keypoints

    cat = _catalogue(tmp_path)
    # train briefly on the synthetic skirts' silhouette points (a known, simple target)
    imgs, xys, viss = [], [], []
    for s in range(6):
        img, m = packshot(shape="rect", fg=(30, 60, 150), seed=10 + s)
        xy, vis, _ = estimate_keypoints(m, "skirt")
        imgs.append(img)
        xys.append(xy)
        viss.append(vis)
    det = HeatmapKeypointDetector(preset="tiny", image_size=(64, 48), epochs=1,
                                  batch_size=6, random_state=0, num_threads=1)
    det.fit(imgs, np.array(xys), np.array(viss))
    b, m = _run_features_stage(tmp_path, cat, det, "demo")
    assert m["keypoint_source"].startswith("heatmap")
    t = pd.read_parquet(b.path("features/features.parquet")).set_index("item_id")
    assert t.loc["i2", "kp_method"] == "heatmap" and t.loc["i3", "kp_method"] == ""
    conf = pd.read_parquet(b.path("features/keypoint_confidence.parquet"))
    assert set(conf["kp_method"]) == {"heatmap"}


def test_features_made_before_a_decoding_change_are_not_reused(tmp_path, monkeypatch):
    """Part files are keyed on each image's content hash and decoding_stamp: a
    colour-keyed PNG extracted before such keys were read opaque (a garment on
    black), so its parts, keyed then as a plain file is, must not be found again;
    a catalogue of JPEGs keeps its key (MANGO's ~10 min extraction is reused)."""
    from features import imaging

    a = np.zeros((30, 20, 3), np.uint8)
    a[5:25, 5:15] = (30, 60, 150)
    Image.fromarray(a).save(tmp_path / "keyed.png", transparency=(0, 0, 0))
    Image.fromarray(a).save(tmp_path / "plain.jpg")
    keyed = [("k", str(tmp_path / "keyed.png"), "bottom", "Skirts")]
    plain = [("p", str(tmp_path / "plain.jpg"), "bottom", "Skirts")]
    settings = {"max_side": 512, "chunk_size": 64}
    now = X._signature(keyed, settings), X._signature(plain, settings)
    # the key before: content and the orientation tag alone (no decoding revised)
    monkeypatch.setattr(imaging, "DECODING_REVISIONS", {})
    before = X._signature(keyed, settings), X._signature(plain, settings)
    assert now[0] != before[0] and now[1] == before[1]


class _FractionDetector:
    """A stand-in keypoint detector with a known answer: every point at (30 %, 60 %)
    of the image it is given; it records the sizes it was given."""

    def __init__(self):
        self.shapes = []

    def predict(self, images, categories):
        n = len(images)
        xy, vis, conf = np.zeros((n, 24, 2)), np.ones((n, 24), int), np.full((n, 24), 0.9)
        for i, im in enumerate(images):
            h, w = np.asarray(im).shape[:2]
            self.shapes.append((h, w))
            xy[i] = (0.3 * w, 0.6 * h)
        return xy, vis, conf


def test_keypoint_detector_gets_images_at_max_side_and_points_in_the_files_frame(tmp_path):
    """A batch of large photos (a 6000 x 8000 phone packshot is 144 MB decoded; 64 of
    them were held at once, ~9 GB) reaches the detector shrunk to ``max_side``, like
    every other step of the stage; its points are written in the image file's pixels,
    as FashionAI keypoints are, and an image within ``max_side`` is given as it is."""
    for name, (w, h) in {"big": (900, 1200), "small": (150, 200)}.items():
        img = np.full((h, w, 3), 235, np.uint8)
        img[h // 5:h * 4 // 5, w // 4:w * 3 // 4] = (30, 60, 150)
        Image.fromarray(img).save(tmp_path / f"{name}.jpg")
    cat = pd.DataFrame({"item_id": ["big", "small"], "category": ["bottom"] * 2,
                        "subcategory": ["Skirts"] * 2,
                        "image_path": ["big.jpg", "small.jpg"]})
    det = _FractionDetector()
    extract_features(cat, tmp_path, tmp_path / "out", keypoint_model=det, progress=False,
                     workers=1, max_side=300)
    assert det.shapes == [(300, 225), (200, 150)]
    kp = read_keypoints_csv(tmp_path / "out" / "keypoints.csv").set_index("image_id")
    assert kp.loc["big.jpg", ["hemline_left_x", "hemline_left_y"]].tolist() == [270, 720]
    assert kp.loc["small.jpg", ["hemline_left_x", "hemline_left_y"]].tolist() == [45, 120]


def test_attributes_pooled_over_colour_variants(tmp_path):
    """Rows of one group (colour variants of a garment) get one answer for a pooled
    head: the argmax of their renormalised geometric-mean probabilities."""
    pytest.importorskip("torch")
    from features.attributes.grouping import pool_probabilities
    from features.imaging import load_rgb

    cat = _catalogue(tmp_path)
    ok = cat["item_id"].str.startswith("i").to_numpy()
    model = _tiny_attribute_model(tmp_path, cat)
    groups = ["g0", "g0", "g0", "g1", "g1", None, None, None, None]
    kw = dict(attribute_model=model, progress=False, workers=1)
    extract_features(cat, tmp_path, tmp_path / "plain", **kw)
    extract_features(cat, tmp_path, tmp_path / "pooled", groups=groups, pooled_heads=["slot"], **kw)
    plain = pd.read_parquet(tmp_path / "plain" / "features.parquet")
    pooled = pd.read_parquet(tmp_path / "pooled" / "features.parquet")
    probs = model.predict_proba([load_rgb(tmp_path / p) for p in cat.loc[ok, "image_path"]])
    want = pool_probabilities(probs, groups[:6], ["slot"])["slot"]
    classes = np.array(model.taxonomy_.classes("slot"), dtype=object)
    assert pooled.loc[:5, "attr_slot"].tolist() == classes[want.argmax(1)].tolist()
    np.testing.assert_allclose(pooled.loc[:5, "attr_slot_conf"], want.max(1), rtol=1e-4)
    assert pooled.loc[:2, "attr_slot"].nunique() == 1 and pooled.loc[3:4, "attr_slot"].nunique() == 1
    # the ungrouped row and failed rows are as without pooling
    assert pooled.loc[5:, "attr_slot"].tolist() == plain.loc[5:, "attr_slot"].tolist()


def test_items_without_an_image_are_one_part_with_the_chunk_rows(tmp_path):
    """Image-less items (interleaved with imaged ones) get exactly the rows the
    per-item path gives them, in catalogue order; only imaged items are chunked."""
    cat = _catalogue(tmp_path, n_ok=4)
    extra = pd.DataFrame({"item_id": [f"t{k}" for k in range(5)],
                          "category": ["top", "bottom", "dress", "shoes", "outerwear"],
                          "subcategory": ["Shirt", "Jeans", "Dresses", "Sneakers", "Coats"],
                          "image_path": "", "colour": "", "material": "", "gender": ""})
    cat = pd.concat([extra.iloc[:2], cat.iloc[:3], extra.iloc[2:], cat.iloc[3:]],
                    ignore_index=True)
    out = tmp_path / "feat"
    s = extract_features(cat, tmp_path, out, progress=False, workers=1, chunk_size=2)
    # 6 items have an image path (4 images, one corrupt, one missing): 3 chunks
    assert s["parts"] == 3 and s["n_items"] == len(cat)
    parts = list((out / "parts").glob("*/*.parquet"))
    assert sorted(p.name for p in parts) == ["no_image.parquet", "part_000000.parquet",
                                             "part_000001.parquet", "part_000002.parquet"]
    t = pd.read_parquet(out / "features.parquet")
    assert t["item_id"].tolist() == cat["item_id"].tolist()
    items = [(r.item_id, X._resolve(r.image_path, tmp_path), r.category, r.subcategory)
             for r in cat.itertuples()]
    ref = X._process_items(items, 512)[list(BASE_COLUMNS)]
    for c in ("feat_ok", "feat_error", "mask_method", "colour_group", "kp_category",
              "kp_method"):
        ref[c] = ref[c].fillna("").astype(bool if c == "feat_ok" else str)
    pd.testing.assert_frame_equal(t[list(BASE_COLUMNS)], ref, check_dtype=False)
    noimg = t.set_index("item_id").loc[["t0", "t2", "noimg"]]
    assert (noimg["feat_error"] == "no image").all() and not noimg["feat_ok"].any()
    assert noimg.loc["t2", "kp_category"] == "dress"


def test_an_image_replaced_at_the_same_path_reruns_the_stages_that_read_images(tmp_path):
    # before: the ingest stage saw the new picture (its inputs fingerprint the images)
    # but wrote the same catalog.parquet, so attributes, keypoints and features said
    # "up to date, skipped" and the bundle kept colours, attributes and embeddings of
    # the old picture; the decoded-image caches (keyed by paths) would have too
    from features.attributes.data import load_images
    from features.attributes.train import stage_inputs as attribute_inputs
    from features.keypoints.train import stage_inputs as keypoint_inputs
    from recommender.bundle import Bundle
    from recommender.pipeline import BuildContext

    cat = _catalogue(tmp_path)
    b = Bundle.create(tmp_path / "bundle", source="csv", image_root=tmp_path)
    cat.to_parquet(b.path("catalog.parquet"))
    ctx = BuildContext(bundle=b, config={"source": "csv"}, log=lambda m: None)
    cache = tmp_path / "cache"
    paths = [str(tmp_path / "images" / "i0.jpg")]
    before = [f(ctx) for f in (stage_inputs, attribute_inputs, keypoint_inputs)]
    first = np.array(load_images(paths, (16, 12), cache=cache)[0])

    img, _ = packshot(shape="rect", fg=(20, 200, 20), seed=9)
    Image.fromarray(img).save(tmp_path / "images" / "i0.jpg", quality=92)
    after = [f(ctx) for f in (stage_inputs, attribute_inputs, keypoint_inputs)]
    assert all(a != b_ for a, b_ in zip(after, before))
    again = np.array(load_images(paths, (16, 12), cache=cache)[0])
    assert np.array_equal(again, load_images(paths, (16, 12))[0])
    assert not np.array_equal(again, first)


def test_only_photos_an_exif_tag_turns_change_the_image_keys(tmp_path):
    """Catalogue photos are turned upright by their EXIF orientation tag: the stages
    and caches that read such a photo on its side must run again, while catalogues
    without one (no MANGO image has a turning tag) keep their fingerprint and cache
    keys, so their bundles stay current."""
    import hashlib

    from features.attributes.data import file_stamp
    from features.files import file_hash
    from recommender.bundle import image_fingerprint
    from tests.features.synth import turned_photo

    def as_before(paths):   # the fingerprint of the images' contents alone
        h = hashlib.sha256()
        for p in sorted(paths):
            h.update(f"{p}\t{file_hash(tmp_path / p)}\n".encode())
        return {"n": len(paths), "hash": h.hexdigest()[:16]}

    cat = _catalogue(tmp_path)
    turned_photo(tmp_path / "images" / "upright_as_stored.jpg", orientation=1)
    plain = [p for p in cat["image_path"] if p and p != "images/gone.jpg"]
    plain.append("images/upright_as_stored.jpg")
    assert image_fingerprint(plain, tmp_path) == as_before(plain)
    assert file_stamp(tmp_path / plain[0]) == f"|{file_hash(tmp_path / plain[0])}"
    turned_photo(tmp_path / "images" / "turned.jpg")
    with_turned = plain + ["images/turned.jpg"]
    assert image_fingerprint(with_turned, tmp_path) != as_before(with_turned)


def test_a_decoded_image_cache_cut_short_is_decoded_again(tmp_path, monkeypatch):
    # before: the decoded array was renamed into place and its ``ok`` mask written in
    # place after it; a run dying while writing the mask left both names, so every
    # later run took the pair as cached and np.load failed on the half mask
    from features.attributes.data import load_images

    cat = _catalogue(tmp_path)
    paths = [str(tmp_path / p) for p in cat["image_path"] if p]
    cache = tmp_path / "cache"
    monkeypatch.setattr(np, "save", save_dies_half_way(np.save, fail_on=2))
    with pytest.raises(OSError, match="No space"):
        load_images(paths, (16, 12), cache=cache)
    monkeypatch.undo()
    arr, ok = load_images(paths, (16, 12), cache=cache)
    fresh, fresh_ok = load_images(paths, (16, 12))
    assert np.array_equal(arr, fresh) and np.array_equal(ok, fresh_ok) and ok.sum() == 6
    assert len(list(cache.iterdir())) == 2  # the array and its mask, no temporaries


def test_a_catalogue_of_white_cutouts_is_masked_by_their_alpha(tmp_path):
    """Transparent packshots of white garments: composited on white they are white on
    white, and the colours gave an empty mask (quality 0) whose fallback, the whole
    frame, made the colours, keypoints and shape describe the picture, not the
    garment. The alpha is read as the mask, by the features stage's own loader."""
    from tests.features.synth import cutout

    (tmp_path / "images").mkdir()
    rows, truths = [], []
    for i, (slot, sub, shape) in enumerate([("top", "T-shirt", "tshirt"),
                                            ("bottom", "Trousers", "trousers"),
                                            ("bottom", "Skirts", "rect")]):
        rgba, truth = cutout(shape=shape, fg=(254, 254, 253), seed=i)
        Image.fromarray(rgba, "RGBA").save(tmp_path / "images" / f"c{i}.png")
        rows.append((f"c{i}", slot, sub, f"images/c{i}.png"))
        truths.append(truth)
    cat = pd.DataFrame(rows, columns=["item_id", "category", "subcategory", "image_path"])
    extract_features(cat, tmp_path, tmp_path / "out", progress=False, workers=1)
    f = pd.read_parquet(tmp_path / "out" / "features.parquet")
    assert f["feat_ok"].all()
    assert f["mask_method"].tolist() == ["alpha"] * 3
    assert (f["mask_quality"] > 0.8).all()
    assert f["mask_area"].to_numpy() == pytest.approx([t.mean() for t in truths], abs=1e-6)
    assert f["colour_group"].tolist() == ["WHITE"] * 3
    ys, xs = np.nonzero(truths[0])
    assert f["bbox_aspect"].iloc[0] == pytest.approx(
        (np.ptp(ys) + 1) / (np.ptp(xs) + 1))
    assert (f["kp_conf"].iloc[:2] > 0.2).all()    # the silhouette keypoints found it
