"""Full-resolution garment descriptors and their fusion with the attribute network:
what they measure, the table and its cache, and a fusion that recovers a texture the
letterboxed network cannot see."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features.attributes import AttributeModel
from features.attributes.descriptors import (
    DESCRIPTOR_NAMES,
    DescriptorFusion,
    descriptor_table,
    garment_descriptors,
)
from features.exceptions import InputError, SchemaError


def _col(d, name):
    return float(d[DESCRIPTOR_NAMES.index(name)])


def _garment(h=160, w=120, colour=(60, 60, 60), stripes=False, seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 240, np.uint8)
    h0, w0 = int(rng.integers(h // 10, h // 5)), int(rng.integers(w // 10, w // 6))
    g = np.empty((h - 2 * h0, w - 2 * w0, 3), np.uint8)
    g[:] = colour
    if stripes:                       # 1 px stripes, the same mean as the plain fabric
        g[::2] = np.clip(np.array(colour) + 40, 0, 255)
        g[1::2] = np.clip(np.array(colour) - 40, 0, 255)
    img[h0:h - h0, w0:w - w0] = g
    return img


def test_descriptors_have_their_names_and_measure_the_garment():
    img = np.full((200, 100, 3), 245, np.uint8)
    img[50:150, 25:75] = (200, 30, 30)                       # a red block, half the height
    d = garment_descriptors(img)
    assert d.shape == (len(DESCRIPTOR_NAMES),) and d.dtype == np.float32
    assert len(set(DESCRIPTOR_NAMES)) == len(DESCRIPTOR_NAMES)
    assert _col(d, "box_h") == pytest.approx(0.5, abs=0.02)
    assert _col(d, "box_w") == pytest.approx(0.5, abs=0.03)
    assert _col(d, "fg_share") == pytest.approx(0.25, abs=0.02)
    assert _col(d, "a_p50") > 40                              # red: strongly positive a*
    assert _col(d, "bg_L") > 95 and _col(d, "L_minus_bg") < -40
    assert _col(d, "chromatic_share") > 0.95


def test_descriptors_do_not_depend_on_the_image_size():
    """Images are measured at one long side, so a packshot and its 2x version agree
    on colour and silhouette."""
    img = _garment(colour=(180, 150, 60))
    big = np.asarray(Image.fromarray(img).resize((240, 320), Image.NEAREST))
    a, b = garment_descriptors(img), garment_descriptors(big)
    for name in ("L_p50", "a_p50", "b_p50", "box_h", "box_w", "fg_share", "bg_L"):
        assert _col(a, name) == pytest.approx(_col(b, name), abs=0.02 * max(1, abs(_col(a, name))))


def test_texture_columns_tell_stripes_from_plain_fabric():
    plain = garment_descriptors(_garment(stripes=False))
    striped = garment_descriptors(_garment(stripes=True))
    assert _col(striped, "grad_mean") > 5 * max(_col(plain, "grad_mean"), 1.0)
    assert _col(striped, "band0.7_mean") > 5 * max(_col(plain, "band0.7_mean"), 0.5)
    # Flat fabric: nearly every pixel is a uniform LBP pattern of no set bits.
    assert _col(plain, "lbp1_0") > 0.9 > _col(striped, "lbp1_0")


def test_bad_images_are_rejected_by_name():
    with pytest.raises(InputError, match="uint8"):
        garment_descriptors(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(InputError, match="8x8"):
        garment_descriptors(np.zeros((4, 20, 3), np.uint8))


def test_table_flags_unreadable_images_and_caches(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"g{i}.png"
        Image.fromarray(_garment(seed=i)).save(p)
        paths.append(str(p))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    paths.append(str(tmp_path / "broken.png"))
    x, ok = descriptor_table(paths, cache=tmp_path / "cache")
    assert ok.tolist() == [True, True, True, False]
    assert np.isnan(x[3]).all() and not np.isnan(x[:3]).any()
    cached = list((tmp_path / "cache").glob("descriptors_v*_*.npy"))
    assert len(cached) == 1
    np.save(cached[0], np.where(np.isnan(x), x, x + 1))       # marks a re-read
    again, ok2 = descriptor_table(paths, cache=tmp_path / "cache")
    assert np.allclose(again[:3], x[:3] + 1) and ok2.tolist() == ok.tolist()
    # Arrays give the same rows as their files.
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:3]]
    assert np.allclose(descriptor_table(arrays)[0], x[:3])


def _texture_set(n: int, seed: int):
    """Garments whose class is their fabric: 1 px stripes or plain, the same mean
    colour either way -- the same flat patch once letterboxed to 16x16."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for i in range(n):
        colour = tuple(int(v) for v in rng.integers(60, 180, 3))
        imgs.append(_garment(colour=colour, stripes=bool(i % 2), seed=int(rng.integers(1e6))))
        labels.append(["woven", "knit"][i % 2])
    return imgs, pd.DataFrame({"material": labels})


KW = dict(preset="tiny", image_size=(16, 16), embed_dim=16, epochs=6, batch_size=16,
          augment=False, random_state=0)


def test_fusion_recovers_a_texture_the_network_cannot_see(tmp_path):
    imgs, labels = _texture_set(80, 0)
    vimgs, vlab = _texture_set(30, 1)
    timgs, tlab = _texture_set(30, 2)
    model = AttributeModel(**KW).fit(imgs, labels)
    truth = tlab["material"].to_numpy()
    plain = model.predict(timgs)["material"].to_numpy()
    assert (plain == truth).mean() <= 0.75
    xt, xv = descriptor_table(imgs)[0], descriptor_table(vimgs)[0]
    model.fit_fusion(xt, labels, [f"g{i}" for i in range(len(imgs))], xv, vlab,
                     model.predict_proba(vimgs), max_rounds=200)
    assert model.fused_heads == ["material"]
    assert model.fusion_.report_["material"]["weight"] > 0
    fused = model.predict(timgs)["material"].to_numpy()        # descriptors measured here
    assert (fused == truth).mean() >= 0.95
    # Explicit descriptors give the same answer; so does a save / load round trip.
    xte = descriptor_table(timgs)[0]
    p = model.predict_proba(timgs, descriptors=xte)["material"]
    assert np.allclose(model.predict_proba(timgs)["material"], p, atol=1e-6)
    files = model.save(tmp_path, "attributes")
    assert (tmp_path / "attributes.fusion.json") in files
    back = AttributeModel.load(tmp_path)
    assert back.fused_heads == ["material"]
    assert np.allclose(back.predict_proba(timgs, descriptors=xte)["material"], p, atol=1e-6)
    # Rows without descriptors (unreadable images) keep the network's answer.
    nan = np.full_like(xte, np.nan)
    assert np.allclose(back.predict_proba(timgs, descriptors=nan)["material"],
                       back._forward_net(timgs)[0]["material"], atol=1e-6)
    # A model saved without fusion removes the old fusion file beside it.
    model.fusion_ = None
    model.save(tmp_path, "attributes")
    assert not (tmp_path / "attributes.fusion.json").exists()
    assert AttributeModel.load(tmp_path).fused_heads == []


def test_uninformative_descriptors_get_weight_zero():
    """When the descriptors know nothing the network does not, the head is not fused."""
    rng = np.random.default_rng(0)
    n, c = 400, 3
    y = rng.integers(0, c, n)
    x = rng.normal(size=(n, len(DESCRIPTOR_NAMES))).astype(np.float32)
    # A calibrated network: its top class (0.7) is right 70% of the time.
    top = np.where(rng.random(n) < 0.7, y, (y + rng.integers(1, c, n)) % c)
    net = np.full((n, c), 0.15)
    net[np.arange(n), top] = 0.7
    f = DescriptorFusion(max_rounds=100).fit(
        x[:300], y[:300, None], [str(i) for i in range(300)], x[300:], {"h": net[300:]},
        y[300:, None], ["h"], {"h": c})
    assert f.report_["h"]["weight"] == 0.0 and f.heads_ == {}
    out = f.fuse({"h": net[300:]}, x[300:])
    assert np.array_equal(out["h"], net[300:])


def test_fusion_checks_its_inputs_and_its_file():
    f = DescriptorFusion()
    with pytest.raises(InputError, match="descriptors must be"):
        f.fuse({"h": np.ones((3, 2)) / 2}, np.zeros((3, 5)))
    with pytest.raises(InputError, match="max_classes"):
        DescriptorFusion(max_classes=1)
    with pytest.raises(InputError, match="holdout"):
        DescriptorFusion(holdout=0.7)
    # before: NaN passed ``w < 0``, and a NaN or infinite weight fused into NaN logits
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InputError, match="weights must be finite and non-negative"):
            DescriptorFusion(weights=(0.0, bad))
    # before: unchecked, met as LightGBM errors at the attribute stage's end (or, for
    # min_gain NaN, no head fused without a word)
    for kw, said in (({"learning_rate": 0}, "learning_rate must be a number > 0, got 0"),
                     ({"learning_rate": float("nan")}, "learning_rate must be a finite"),
                     ({"num_leaves": 1}, "num_leaves must be a whole number >= 2, got 1"),
                     ({"max_rounds": 2.5}, "max_rounds must be a whole number >= 1"),
                     ({"min_gain": float("nan")}, "min_gain must be a finite number >= 0")):
        with pytest.raises(InputError, match=re.escape(said)):
            DescriptorFusion(**kw)
    meta = json.loads(f.to_json())
    meta["descriptor_version"] = 0
    with pytest.raises(SchemaError, match="descriptor version 0"):
        DescriptorFusion.from_json(json.dumps(meta), "old.fusion.json")
    with pytest.raises(SchemaError, match="not a descriptor fusion"):
        DescriptorFusion.from_json(json.dumps({"schema": "x"}), "other.json")


def test_feature_extraction_fuses_like_the_model(tmp_path, monkeypatch):
    """The features stage's batch path hands the model the descriptors it measured up
    front; the columns it writes are the fused predictions."""
    from features.extract import extract_features

    imgs, labels = _texture_set(80, 0)
    vimgs, vlab = _texture_set(30, 1)
    model = AttributeModel(**KW).fit(imgs, labels)
    model.fit_fusion(descriptor_table(imgs)[0], labels, [f"g{i}" for i in range(len(imgs))],
                     descriptor_table(vimgs)[0], vlab, model.predict_proba(vimgs),
                     max_rounds=200)
    assert model.fused_heads == ["material"]
    timgs, tlab = _texture_set(12, 3)
    (tmp_path / "images").mkdir()
    rows = []
    for i, img in enumerate(timgs):
        Image.fromarray(img).save(tmp_path / "images" / f"t{i}.png")
        rows.append({"item_id": f"t{i}", "category": "top", "subcategory": "Tops",
                     "image_path": f"images/t{i}.png", "colour": "", "material": "",
                     "gender": ""})
    extract_features(pd.DataFrame(rows), tmp_path, tmp_path / "out", attribute_model=model,
                     progress=False, workers=1)
    got = pd.read_parquet(tmp_path / "out" / "features.parquet")
    want = model.predict([str(tmp_path / r["image_path"]) for r in rows])
    # Any sequence of paths is measured, not only a list.
    series = model.predict(pd.Series([str(tmp_path / r["image_path"]) for r in rows]))
    np.testing.assert_allclose(series["material_conf"], want["material_conf"], rtol=1e-6)
    assert got["attr_material"].tolist() == want["material"].tolist()
    np.testing.assert_allclose(got["attr_material_conf"], want["material_conf"], rtol=1e-4)
    assert (got["attr_material"].to_numpy() == tlab["material"].to_numpy()).mean() >= 0.9
    # With a cache folder the descriptors are stored there and a later run (the
    # features stage after the attribute stage) reads them instead of measuring again.
    extract_features(pd.DataFrame(rows), tmp_path, tmp_path / "out2", attribute_model=model,
                     progress=False, workers=1, descriptor_cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("descriptors_v*_*.npy"))) == 1
    def no_measuring(*a, **k):
        raise AssertionError("descriptors measured again")

    monkeypatch.setattr("features.attributes.descriptors.garment_descriptors", no_measuring)
    extract_features(pd.DataFrame(rows), tmp_path, tmp_path / "out3", attribute_model=model,
                     progress=False, workers=1, descriptor_cache=tmp_path / "cache")
    again = pd.read_parquet(tmp_path / "out3" / "features.parquet")
    assert again["attr_material"].tolist() == got["attr_material"].tolist()
    # The partitioned path (a Dask build's executor) ships each part its rows of the
    # cached table; parts of 5 rows split the 12 items unevenly.
    class InProcess:                        # DaskExecutor's map contract, in order
        def map(self, func, jobs):
            return [func(j) for j in jobs]

    extract_features(pd.DataFrame(rows), tmp_path, tmp_path / "out4", attribute_model=model,
                     progress=False, workers=1, descriptor_cache=tmp_path / "cache",
                     executor=InProcess(), chunk_size=5, batch_size=5)
    parts = pd.read_parquet(tmp_path / "out4" / "features.parquet")
    assert parts["attr_material"].tolist() == got["attr_material"].tolist()
    np.testing.assert_allclose(parts["attr_material_conf"], got["attr_material_conf"],
                               rtol=1e-4)


def _family_of_fabric_set(n, seed, linked=True):
    """Descriptors that see the fabric (3 classes) and a network that sees only a
    family's cut: family = 2 * fabric + cut when ``linked``, else 2 * random + cut."""
    rng = np.random.default_rng(seed)
    fabric = rng.integers(0, 3, n)
    cut = rng.integers(0, 2, n)
    family = 2 * (fabric if linked else rng.integers(0, 3, n)) + cut
    x = rng.normal(size=(n, len(DESCRIPTOR_NAMES))).astype(np.float32)
    x[:, 0] = fabric + 0.25 * rng.normal(size=n)
    net_fabric = np.full((n, 3), 1 / 3)
    net_family = np.full((n, 6), 0.02)
    for k in range(3):                 # the right cut, any fabric
        net_family[np.arange(n), 2 * k + cut] = (1 - 3 * 0.02) / 3
    return x, np.c_[family, fabric], {"family": net_family, "fabric": net_fabric}


def test_a_head_too_wide_to_fuse_takes_a_fused_heads_evidence():
    """The family head has more classes than ``max_classes`` so gets no booster, but
    the fabric's descriptor evidence reaches it through P(fabric | family)."""
    x, y, net = _family_of_fabric_set(900, 0)
    tr, va, te = slice(0, 500), slice(500, 700), slice(700, 900)
    f = DescriptorFusion(max_classes=4, max_rounds=200).fit(
        x[tr], y[tr], [str(i) for i in range(500)], x[va],
        {h: p[va] for h, p in net.items()}, y[va], ["family", "fabric"],
        {"family": 6, "fabric": 3})
    assert "skipped" in f.report_["family"] and list(f.heads_) == ["fabric"]
    assert f.report_["family"]["propagated"]["fabric"] > 0
    before, after = f.report_["family"]["propagation_val_log_loss"]
    assert after < 0.8 * before
    assert f.weights_ == {"fabric": f.heads_["fabric"]["weight"],
                          "family": {"fabric": f.report_["family"]["propagated"]["fabric"]}}
    out = f.fuse({h: p[te] for h, p in net.items()}, x[te])
    plain = (net["family"][te].argmax(1) == y[te, 0]).mean()
    fused = (out["family"].argmax(1) == y[te, 0]).mean()
    assert plain < 0.45 and fused > 0.85
    assert np.allclose(out["family"].sum(1), 1, atol=1e-5)
    # A save / load round trip predicts the same; rows without descriptors keep the
    # network's probabilities.
    back = DescriptorFusion.from_json(f.to_json())
    again = back.fuse({h: p[te] for h, p in net.items()}, x[te])
    assert np.allclose(again["family"], out["family"], atol=1e-6)
    nan = np.full_like(x[te], np.nan)
    assert np.allclose(back.fuse({h: p[te] for h, p in net.items()}, nan)["family"],
                       net["family"][te])
    # A file naming a source head that is not fused is refused.
    meta = json.loads(f.to_json())
    meta["propagated"]["family"]["colour"] = meta["propagated"]["family"]["fabric"]
    with pytest.raises(SchemaError, match="'colour', which is not a fused head"):
        DescriptorFusion.from_json(json.dumps(meta), "bad.fusion.json")
    meta = json.loads(f.to_json())
    meta["propagated"]["family"]["fabric"]["prior"] = [0.5, 0.5]
    with pytest.raises(SchemaError, match="'fabric' \\(3 classes\\) for head 'family'"):
        DescriptorFusion.from_json(json.dumps(meta), "bad.fusion.json")
    # Older files, without the entry, load with no propagation.
    del meta["propagated"]
    assert DescriptorFusion.from_json(json.dumps(meta)).propagated_ == {}


def test_evidence_is_not_propagated_to_an_unrelated_head_or_when_switched_off():
    x, y, net = _family_of_fabric_set(900, 1, linked=False)
    args = (x[:500], y[:500], [str(i) for i in range(500)], x[500:],
            {h: p[500:] for h, p in net.items()}, y[500:], ["family", "fabric"],
            {"family": 6, "fabric": 3})
    f = DescriptorFusion(max_classes=4, max_rounds=200).fit(*args)
    assert list(f.heads_) == ["fabric"]
    assert f.report_["family"]["propagated"] == {} and f.propagated_ == {}
    x, y, net = _family_of_fabric_set(900, 1)
    off = DescriptorFusion(max_classes=4, max_rounds=200, propagate=False).fit(
        x[:500], y[:500], [str(i) for i in range(500)], x[500:],
        {h: p[500:] for h, p in net.items()}, y[500:], ["family", "fabric"],
        {"family": 6, "fabric": 3})
    assert off.propagated_ == {} and "propagated" not in off.report_["family"]
