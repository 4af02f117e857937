"""AttributeModel contract: shapes, persistence, errors, masking, determinism, learning."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from features.attributes import AttributeModel, AttributeNet, AttributeNetConfig, Taxonomy
from features.attributes.evaluate import fashionai_ap, head_metrics
from features.attributes.model import BasicBlock
from features.attributes.train import masked_multitask_loss
from features.exceptions import InputError, NotFittedError, SchemaError
from tests.faults import disk_full

SIZE = (24, 16)


def separable_set(n=48, seed=0):
    """Images whose colour decides head ``colour`` and whose upper/lower half being
    bright decides head ``half``: a known answer a working net must learn."""
    rng = np.random.default_rng(seed)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    imgs = np.full((n, *SIZE, 3), 235, np.uint8)
    col, half = [], []
    for i in range(n):
        c = ["red", "blue"][i % 2]
        h = ["top", "bottom"][(i // 2) % 2]
        rows = slice(2, 11) if h == "top" else slice(13, 22)
        imgs[i, rows, 3:13] = colours[c]
        imgs[i] = np.clip(imgs[i].astype(int) + rng.integers(-10, 10, imgs[i].shape), 0, 255)
        col.append(c)
        half.append(h)
    return imgs, pd.DataFrame({"colour": col, "half": half})


def tiny(**kw):
    args = dict(preset="tiny", image_size=SIZE, embed_dim=32, epochs=2, batch_size=16,
                random_state=0, num_threads=1)
    args.update(kw)
    return AttributeModel(**args)


@pytest.fixture(scope="module")
def fitted():
    imgs, labels = separable_set()
    return tiny().fit(imgs, labels), imgs, labels


def test_shapes_and_types(fitted):
    model, imgs, _ = fitted
    probs = model.predict_proba(imgs[:5])
    assert set(probs) == {"colour", "half"}
    assert probs["colour"].shape == (5, 2) and probs["colour"].dtype == np.float32
    np.testing.assert_allclose(probs["half"].sum(1), 1.0, rtol=1e-5)
    emb = model.embed(imgs[:5])
    assert emb.shape == (5, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    pred = model.predict(imgs[:5])
    assert list(pred.columns) == ["colour", "colour_conf", "half", "half_conf"]
    assert set(pred["colour"]) <= {"red", "blue"}
    assert model.n_train_ == 48 and len(model.history_) == 2


def test_eval_set_is_scored_every_eval_every_epochs_and_after_the_last():
    imgs, labels = separable_set(32)
    model = tiny(epochs=7, eval_every=3).fit(imgs, labels, eval_set=(imgs[:8], labels[:8]))
    scored = [h["epoch"] for h in model.history_ if "val_accuracy" in h]
    assert len(model.history_) == 7 and scored == [3, 6, 7]
    assert set(model.history_[-1]["val_accuracy"]) == {"colour", "half"}


def test_the_epoch_a_time_budget_ends_is_scored(monkeypatch):
    import features.attributes.train as train_mod

    clock = iter(range(10**6))   # a clock that moves a second each time it is read
    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: float(next(clock)))
    imgs, labels = separable_set(32)
    model = tiny(epochs=50, eval_every=100, time_budget_s=20).fit(
        imgs, labels, eval_set=(imgs[:8], labels[:8]))
    assert 1 < len(model.history_) < 50
    scored = [h["epoch"] for h in model.history_ if "val_accuracy" in h]
    assert scored == [model.history_[-1]["epoch"]]


def test_network_shapes():
    cfg = AttributeNetConfig(heads={"a": 3, "b": 7}, preset="tiny", image_size=SIZE,
                             embed_dim=16)
    net = AttributeNet(cfg).eval()
    out = net(torch.zeros(4, 3, *SIZE))
    assert out["a"].shape == (4, 3) and out["b"].shape == (4, 7)
    assert net.embed(torch.zeros(4, 3, *SIZE)).shape == (4, 16)


def test_save_load_round_trip(fitted, tmp_path):
    model, imgs, _ = fitted
    paths = model.save(tmp_path, "attributes")
    assert [p.name for p in paths] == ["attributes.pt", "attributes.json"]
    meta = json.loads((tmp_path / "attributes.json").read_text())
    assert meta["taxonomy"]["heads"][0]["name"] == "colour"
    loaded = AttributeModel.load(tmp_path)
    a, b = model.predict_proba(imgs), loaded.predict_proba(imgs)
    for h in a:
        np.testing.assert_array_equal(a[h], b[h])
    np.testing.assert_array_equal(model.embed(imgs), loaded.embed(imgs))


def test_a_save_that_fails_half_way_leaves_the_previous_model_whole(fitted, tmp_path,
                                                                     monkeypatch):
    import pathlib

    model, imgs, labels = fitted
    model.save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = tiny(random_state=1).fit(imgs, labels)

    # the json is written after the state_dict: fail there, as a full disk would
    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "write_text", disk_full)
        with pytest.raises(OSError, match="No space"):
            other.save(tmp_path)
    # both files as they were (no new network beside the old config), no temporaries
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    np.testing.assert_array_equal(AttributeModel.load(tmp_path).embed(imgs),
                                  model.embed(imgs))


def test_a_fusion_file_the_model_was_not_saved_with_is_ignored(fitted, tmp_path):
    """A stale attributes.fusion.json (a fused model's, left by an interrupted save)
    is not paired with a network saved without fusion."""
    model, imgs, _ = fitted
    model.save(tmp_path)
    (tmp_path / "attributes.fusion.json").write_text('{"stale": true}')
    loaded = AttributeModel.load(tmp_path)
    assert loaded.fused_heads == []
    np.testing.assert_array_equal(loaded.embed(imgs), model.embed(imgs))


@pytest.mark.parametrize("name", ["attributes.pt", "attributes.json"])
def test_a_model_file_cut_short_is_refused_by_name(fitted, tmp_path, name):
    """An interrupted copy of the bundle: a BundleError naming the file (the CLI's
    exit 2 with a message), not torch's or json's raw error (a traceback)."""
    from features.exceptions import BundleError

    model, _, _ = fitted
    model.save(tmp_path)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=name):
        AttributeModel.load(tmp_path)


def test_a_fusion_file_cut_short_is_refused_by_name(fitted, tmp_path):
    from features.exceptions import BundleError

    model, _, _ = fitted
    model.save(tmp_path)
    meta = json.loads((tmp_path / "attributes.json").read_text())
    meta["fusion"] = True
    (tmp_path / "attributes.json").write_text(json.dumps(meta))
    (tmp_path / "attributes.fusion.json").write_text('{"schema": 1, "heads": {"mat')
    with pytest.raises(BundleError, match="attributes.fusion.json"):
        AttributeModel.load(tmp_path)


class Pickled:
    """Not a tensor: torch.load(weights_only=True) must refuse to rebuild it."""


def test_weights_that_are_not_plain_tensors_are_refused(fitted, tmp_path):
    """weights_only: a .pt carrying pickled objects is refused, never run."""
    from features.exceptions import BundleError

    model, _, _ = fitted
    model.save(tmp_path)
    torch.save({"x": Pickled()}, tmp_path / "attributes.pt")
    with pytest.raises(BundleError, match="attributes.pt"):
        AttributeModel.load(tmp_path)


def test_load_checks_schema(fitted, tmp_path):
    model, _, _ = fitted
    model.save(tmp_path)
    meta = json.loads((tmp_path / "attributes.json").read_text())
    meta["schema"] = 99
    (tmp_path / "attributes.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError):
        AttributeModel.load(tmp_path)


def test_tta_zoom_averages_the_zoomed_views(tmp_path):
    """tta_zoom adds the image and its mirror zoomed about the centre to the average
    of the heads' probabilities; the embedding stays that of the first two views."""
    from features.attributes.data import to_tensor, zoom

    imgs, labels = separable_set(64)
    # trained to confident answers, so that a zoomed view moves them
    model = tiny(epochs=12, lr=5e-3, ema_decay=0.0, augment=False,
                 label_smoothing=0.0, sampling_mix=0.0).fit(imgs, labels)
    plain = model.predict_proba(imgs[:6])
    model.tta_zoom = 1.25
    try:
        got = model.predict_proba(imgs[:6])
        emb = model.embed(imgs[:6])
        model.save(tmp_path, "attributes")
    finally:
        model.tta_zoom = 1.0
    net = model.net_.eval()
    x = to_tensor(imgs[:6])
    with torch.no_grad():
        views = [x, torch.flip(x, dims=[3]), zoom(x, 1.25), torch.flip(zoom(x, 1.25), dims=[3])]
        each = [{h: torch.softmax(out, 1).numpy() for h, out in net(v).items()}
                for v in views]
    for h in plain:
        np.testing.assert_allclose(got[h], np.mean([e[h] for e in each], 0),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(plain[h], np.mean([e[h] for e in each[:2]], 0),
                                   rtol=1e-5, atol=1e-6)
    assert any(np.abs(got[h] - plain[h]).max() > 1e-4 for h in plain)
    np.testing.assert_allclose(emb, model.embed(imgs[:6]), rtol=1e-6)
    loaded = AttributeModel.load(tmp_path)
    assert loaded.tta_zoom == 1.25
    np.testing.assert_allclose(loaded.predict_proba(imgs[:6])["colour"], got["colour"],
                               rtol=1e-6)


def test_tta_zoom_is_checked(fitted, tmp_path):
    imgs, labels = separable_set(8)
    with pytest.raises(InputError) as e:
        tiny(tta_zoom=3).fit(imgs, labels)
    assert e.value.field == "tta_zoom" and "3" in str(e.value)
    model, _, _ = fitted
    model.save(tmp_path)
    meta = json.loads((tmp_path / "attributes.json").read_text())
    meta["params"]["tta_zoom"] = "big"
    (tmp_path / "attributes.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="tta_zoom.*'big'"):
        AttributeModel.load(tmp_path)


def test_unfitted_raises():
    with pytest.raises(NotFittedError):
        tiny().predict_proba(np.zeros((1, *SIZE, 3), np.uint8))
    with pytest.raises(NotFittedError):
        tiny().embed(np.zeros((1, *SIZE, 3), np.uint8))


def test_bad_inputs_named():
    imgs, labels = separable_set(8)
    with pytest.raises(InputError) as e:
        tiny().fit(imgs, labels.iloc[:4])
    assert e.value.field == "labels"
    with pytest.raises(InputError) as e:
        tiny(preset="huge").fit(imgs, labels)
    assert e.value.field == "preset"
    with pytest.raises(InputError) as e:
        tiny(device="gpu0").fit(imgs, labels)
    assert e.value.field == "device" and "gpu0" in str(e.value)
    if not torch.cuda.is_available():
        with pytest.raises(InputError) as e:
            tiny(device="cuda").fit(imgs, labels)
        assert e.value.field == "device"
    tax = Taxonomy.from_labels(labels, ["colour"])
    with pytest.raises(InputError) as e:
        tax.encode(pd.DataFrame({"colour": ["green"]}))
    assert e.value.field == "colour"


def test_determinism_with_random_state():
    imgs, labels = separable_set(32)
    a = tiny(epochs=1, random_state=3).fit(imgs, labels).predict_proba(imgs)
    b = tiny(epochs=1, random_state=3).fit(imgs, labels).predict_proba(imgs)
    c = tiny(epochs=1, random_state=4).fit(imgs, labels).predict_proba(imgs)
    np.testing.assert_array_equal(a["colour"], b["colour"])
    assert not np.array_equal(a["colour"], c["colour"])


def test_masked_heads_ignore_missing_rows():
    tax = Taxonomy((("a", ("x", "y")), ("b", ("p", "q", "r"))))
    logits = {"a": torch.tensor([[2.0, 0.0], [0.0, 5.0]]),
              "b": torch.tensor([[0.0, 0.0, 0.0], [9.0, -9.0, 0.0]])}
    targets = torch.tensor([[0, 1], [1, -1]])        # row 1 has no label for head b
    maybe = torch.zeros(2, 5, dtype=torch.bool)
    loss = masked_multitask_loss(logits, targets, maybe, tax)
    ce_a = torch.nn.functional.cross_entropy(logits["a"], torch.tensor([0, 1]))
    ce_b = torch.nn.functional.cross_entropy(logits["b"][:1], torch.tensor([1]))
    torch.testing.assert_close(loss, ce_a + ce_b)
    # Changing the unlabelled row's logits for head b changes nothing.
    logits["b"][1] = torch.tensor([-3.0, 4.0, 1.0])
    torch.testing.assert_close(masked_multitask_loss(logits, targets, maybe, tax), loss)


def test_maybe_classes_leave_the_softmax():
    tax = Taxonomy.fashionai(["pant_length_labels"])
    t, m = tax.encode(pd.DataFrame({"pant_length_labels": ["nnnnmy", "Short Pant", None]}))
    assert t[:, 0].tolist() == [5, 1, -1]
    assert m[0].tolist() == [False] * 4 + [True, False] and not m[1].any()
    logits = {"pant_length_labels": torch.tensor([[0.0, 0, 0, 0, 7.0, 1.0]])}
    loss = masked_multitask_loss(logits, torch.tensor([[5]]), torch.as_tensor(m[:1]), tax)
    # Without the maybe class the target competes with four zeros only.
    expected = torch.nn.functional.cross_entropy(torch.tensor([[0.0, 0, 0, 0, 1.0]]),
                                                 torch.tensor([4]))
    torch.testing.assert_close(loss, expected)


def test_learns_trivially_separable_set():
    imgs, labels = separable_set(64)
    model = tiny(epochs=12, lr=5e-3, ema_decay=0.0, augment=False, label_smoothing=0.0,
                 progressive_resize=False,
                 sampling_mix=0.0).fit(imgs, labels)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0] * 0.5
    test_imgs, test_labels = separable_set(32, seed=1)
    pred = model.predict(test_imgs)
    assert (pred["colour"] == test_labels["colour"]).mean() >= 0.9
    assert (pred["half"] == test_labels["half"]).mean() >= 0.9


def test_metrics_known_answers():
    tax = Taxonomy((("c", ("x", "y", "z")),))
    probs = {"c": np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]}
    res = head_metrics(tax, probs, np.array([[0], [1], [1], [-1]]))
    assert res["heads"]["c"]["n"] == 3
    assert res["heads"]["c"]["accuracy"] == pytest.approx(2 / 3)
    # classes x: f1 1, y: p=1 r=.5 -> 2/3, z: 0  -> macro (1 + 2/3 + 0) / 3
    assert res["heads"]["c"]["macro_f1"] == pytest.approx((1 + 2 / 3) / 3)
    # AP (mean precision over confidence thresholds): all correct is 1; a wrong top
    # class at a lower threshold halves that threshold's precision; 'maybe' is skipped.
    p = np.array([[0.9, 0.1], [0.3, 0.7]])
    assert fashionai_ap(p, np.array([0, 1]), np.zeros((2, 2), bool)) == 1.0
    maybe = np.array([[False, False], [True, False], [False, False]])
    assert fashionai_ap(np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]]), np.array([0, 1, 1]),
                        maybe) == 1.0
    assert fashionai_ap(np.array([[0.4, 0.6], [0.3, 0.7]]), np.array([0, 1]),
                        np.zeros((2, 2), bool)) == 0.75


@pytest.mark.parametrize("setting, value, said", [
    ("weight_decay", -0.05, "weight_decay must be a number >= 0, got -0.05"),
    ("warmup_epochs", -1, "warmup_epochs must be a number >= 0, got -1"),
    ("sampling_power", -0.5, "sampling_power must be a number >= 0, got -0.5"),
    ("embed_dim", 0, "embed_dim must be a whole number >= 1, got 0"),
    ("time_budget_s", 0, "time_budget_s must be a number > 0, got 0"),
    ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
    # before: NaN passed ``float(x) < 0`` and reached the keypoint-guided path's noise
    ("geometry_noise", float("nan"), "geometry_noise must be a finite number >= 0, got nan"),
    ("geometry_noise", float("inf"), "geometry_noise must be a finite number >= 0, got inf"),
    ("geometry_noise", -0.1, "geometry_noise must be a number >= 0, got -0.1"),
    ("weight_decay", float("inf"), "weight_decay must be a finite number >= 0, got inf"),
    # before: int() cut 2.7 to 2 epochs without a word, and NaN was int()'s ValueError
    ("epochs", 2.7, "epochs must be a whole number >= 1, got 2.7"),
    ("batch_size", float("nan"), "batch_size must be a whole number >= 1, got nan"),
    ("region_dim", 0, "region_dim must be a whole number >= 1, got 0"),
    ("erase", 1.5, "erase must be a share in [0, 1], got 1.5"),
    ("erase", -0.1, "erase must be a number >= 0, got -0.1"),
    ("cutmix", 2, "cutmix must be a share in [0, 1], got 2"),
    ("cutmix", float("nan"), "cutmix must be a finite number >= 0, got nan"),
    ("recolour", 1.5, "recolour must be a share in [0, 1], got 1.5"),
    ("eval_every", 0, "eval_every must be a whole number >= 1, got 0"),
    ("group_power", -1, "group_power must be a number >= 0, got -1"),
])
def test_fit_refuses_an_out_of_range_number_by_name(setting, value, said):
    # before: AdamW's ValueError after the images were framed (weight_decay, lr NaN),
    # or training quietly did something else: embed_dim = 0 the backbone's width,
    # warmup_epochs < 0 no warmup, sampling_power < 0 the common classes drawn more,
    # time_budget_s = 0 no budget
    imgs, labels = separable_set(8)
    with pytest.raises(InputError) as e:
        tiny(**{setting: value}).fit(imgs, labels)
    assert str(e.value) == said and e.value.field == setting


def test_sgd_trains_the_heads_and_is_saved_with_the_model(tmp_path, monkeypatch):
    steps = []
    sgd_step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step",
                        lambda self, *a, **k: steps.append(1) or sgd_step(self, *a, **k))
    imgs, labels = separable_set(64)
    model = tiny(optimizer="sgd", lr=0.1, weight_decay=5e-4, epochs=12, ema_decay=0.0,
                 label_smoothing=0.0, sampling_mix=0.0).fit(imgs, labels)
    test_imgs, test_labels = separable_set(64, seed=1)
    pred = model.predict(test_imgs)
    for head in ("colour", "half"):
        assert (pred[head] == test_labels[head]).mean() >= 0.9, head
    assert len(steps) == 12 * 4   # every step of 12 epochs of 64 rows by 16 was SGD's
    model.save(tmp_path)
    assert AttributeModel.load(tmp_path).optimizer == "sgd"


def test_fit_refuses_an_unknown_optimizer_by_name():
    imgs, labels = separable_set(8)
    with pytest.raises(InputError) as e:
        tiny(optimizer="adam").fit(imgs, labels)
    assert str(e.value).startswith("unknown optimizer 'adam'")
    assert e.value.field == "optimizer" and list(e.value.allowed) == ["adamw", "sgd"]


def test_space_to_depth_stem_reads_every_pixel_and_round_trips(tmp_path):
    # twice the image's sides, the body's grid unchanged: the stem folds 2x2 blocks
    imgs, labels = separable_set(64)
    big = imgs.repeat(2, axis=1).repeat(2, axis=2)                    # (64, 48, 32, 3)
    model = tiny(stem="space_to_depth", image_size=(48, 32), epochs=12, lr=5e-3,
                 ema_decay=0.0, augment=False, label_smoothing=0.0,
                 sampling_mix=0.0).fit(big, labels)
    conv = AttributeNet(AttributeNetConfig(heads={"a": 2}, preset="tiny", image_size=SIZE))
    s2d = model.net_
    with torch.no_grad():
        assert (s2d.backbone(torch.zeros(1, 3, 48, 32)).shape[2:]
                == conv.backbone(torch.zeros(1, 3, *SIZE)).shape[2:])
    test_imgs, test_labels = separable_set(32, seed=1)
    pred = model.predict(test_imgs.repeat(2, axis=1).repeat(2, axis=2))
    assert (pred["colour"] == test_labels["colour"]).mean() >= 0.9
    assert (pred["half"] == test_labels["half"]).mean() >= 0.9
    model.save(tmp_path)
    assert json.loads((tmp_path / "attributes.json").read_text())["config"]["stem"] \
        == "space_to_depth"
    loaded = AttributeModel.load(tmp_path)
    assert loaded.stem == "space_to_depth"
    np.testing.assert_array_equal(loaded.embed(big[:4]), model.embed(big[:4]))
    # an odd side (a progressively resized batch) is padded, not refused
    with torch.no_grad():
        assert s2d.eval()(torch.zeros(2, 3, 47, 31))["colour"].shape == (2, 2)


def test_resnet_blocks_start_as_identities_and_the_body_reads_a_32nd_grid():
    # zero-initialised last BN of each branch: an untrained block passes relu(x) on
    net = AttributeNet(AttributeNetConfig(heads={"a": 2}, preset="resnet18",
                                          image_size=(160, 112))).eval()
    block = next(m for m in net.modules()
                 if isinstance(m, BasicBlock) and m.shortcut is None)
    x = torch.randn(2, 32, 40, 28)                     # the first stage's width
    with torch.no_grad():
        np.testing.assert_allclose(block(x).numpy(), torch.relu(x).numpy(), atol=1e-6)
        assert net.backbone(torch.zeros(1, 3, 160, 112)).shape == (1, 384, 5, 4)


def test_bfloat16_steps_run_the_convs_in_bfloat16_and_predict_in_float32(tmp_path):
    seen = []
    imgs, labels = separable_set(64)
    model = tiny(preset="resnet10", precision="bfloat16", epochs=12, lr=5e-3,
                 ema_decay=0.0, label_smoothing=0.0, sampling_mix=0.0)
    real_build = AttributeNet.__init__

    def build(net, config):
        real_build(net, config)
        net.backbone[0][0].register_forward_hook(
            lambda m, i, o: seen.append((m.training, o.dtype)))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AttributeNet, "__init__", build)
        model.fit(imgs, labels)
        assert {d for training, d in seen if training} == {torch.bfloat16}
        seen.clear()
        test_imgs, test_labels = separable_set(64, seed=1)
        pred = model.predict(test_imgs)
        assert seen and {d for _, d in seen} == {torch.float32}
    for head in ("colour", "half"):
        assert (pred[head] == test_labels[head]).mean() >= 0.9, head
    model.save(tmp_path)
    loaded = AttributeModel.load(tmp_path)
    assert (loaded.preset, loaded.precision) == ("resnet10", "bfloat16")
    np.testing.assert_array_equal(loaded.embed(test_imgs[:4]), model.embed(test_imgs[:4]))


def test_fit_refuses_an_unknown_precision_by_name():
    imgs, labels = separable_set(8)
    with pytest.raises(InputError) as e:
        tiny(precision="float16").fit(imgs, labels)
    assert str(e.value).startswith("unknown precision 'float16'")
    assert e.value.field == "precision"
    assert list(e.value.allowed) == ["float32", "bfloat16"]


@pytest.mark.parametrize("setting, default", [("stem", "conv"), ("pool", "avgmax")])
def test_a_network_saved_before_a_shape_setting_reads_its_default(fitted, tmp_path,
                                                                  setting, default):
    model, imgs, _ = fitted
    model.save(tmp_path)
    meta = json.loads((tmp_path / "attributes.json").read_text())
    del meta["config"][setting], meta["params"][setting]        # a file from before it
    (tmp_path / "attributes.json").write_text(json.dumps(meta))
    loaded = AttributeModel.load(tmp_path)
    assert getattr(loaded, setting) == default
    np.testing.assert_array_equal(loaded.embed(imgs[:4]), model.embed(imgs[:4]))


@pytest.mark.parametrize("setting, value", [("stem", "patchify"), ("pool", "gem")])
def test_an_unknown_stem_or_pool_is_refused_by_name(setting, value):
    imgs, labels = separable_set(8)
    with pytest.raises(InputError) as e:
        tiny(**{setting: value}).fit(imgs, labels)
    assert e.value.field == setting and value in str(e.value)


def test_part_pooling_trains_round_trips_and_is_unchanged_by_a_mirror(tmp_path):
    from features.attributes.model import pool_parts

    imgs, labels = separable_set(64)
    model = tiny(pool="parts", epochs=12, lr=5e-3, ema_decay=0.0, augment=False,
                 label_smoothing=0.0, sampling_mix=0.0).fit(imgs, labels)
    feat = model.net_.backbone[-1][0].out_channels
    assert model.net_.project[0].in_features == 6 * feat   # avg, max and four parts
    test_imgs, test_labels = separable_set(32, seed=1)
    pred = model.predict(test_imgs)
    assert (pred["colour"] == test_labels["colour"]).mean() >= 0.9
    assert (pred["half"] == test_labels["half"]).mean() >= 0.9
    model.save(tmp_path)
    assert json.loads((tmp_path / "attributes.json").read_text())["config"]["pool"] == "parts"
    loaded = AttributeModel.load(tmp_path)
    assert loaded.pool == "parts"
    np.testing.assert_array_equal(loaded.embed(imgs[:4]), model.embed(imgs[:4]))
    # centre, flanks, top and bottom are each the same for the mirror image (the
    # prediction averages the two views); a map with columns 0..4 tells centre from
    # flanks
    f = torch.randn(3, 5, 5, 4)
    torch.testing.assert_close(pool_parts(f), pool_parts(torch.flip(f, dims=[3])))
    cols = torch.arange(5.0).expand(1, 1, 4, 5)
    assert pool_parts(cols).tolist() == [[2.0, 2.0, 2.0, 2.0]]
    assert pool_parts(cols ** 2)[0, :2].tolist() == pytest.approx([(1 + 4 + 9) / 3, 16 / 2])


def test_random_erasing_trains_and_is_recorded(tmp_path):
    imgs, labels = separable_set(64)
    model = tiny(erase=0.5, epochs=12, lr=5e-3, ema_decay=0.0, label_smoothing=0.0,
                 sampling_mix=0.0).fit(imgs, labels)
    test_imgs, test_labels = separable_set(32, seed=1)
    assert (model.predict(test_imgs)["colour"] == test_labels["colour"]).mean() >= 0.9
    model.save(tmp_path)
    assert AttributeModel.load(tmp_path).erase == 0.5


def test_recolour_turns_the_garment_s_hue_and_leaves_the_grey_background():
    from features.attributes.data import recolour, to_tensor

    u8 = np.full((300, 20, 14, 3), 235, np.uint8)                # light grey background
    u8[:, 5:15, 4:10] = (180, 90, 90)                            # a red garment
    x = to_tensor(u8)
    y, rows = recolour(x, torch.Generator().manual_seed(0), 0.5)
    assert 110 <= int(rows.sum()) <= 190                         # about half
    assert torch.equal(y[~rows], x[~rows])
    torch.testing.assert_close(y[:, :, 0, 0], x[:, :, 0, 0])     # grey stays grey
    # the channel mean (the value along the grey axis) is kept, the hue is not
    torch.testing.assert_close(y.mean(1), x.mean(1), atol=1e-5, rtol=0)
    g = y[rows][:, :, 10, 7] - y[rows][:, :, 10, 7].mean(1, keepdim=True)
    hue = torch.rad2deg(torch.atan2(3 ** 0.5 * (g[:, 1] - g[:, 2]),
                                    2 * g[:, 0] - g[:, 1] - g[:, 2]))   # red is 0
    assert float(hue.min()) < -150 and float(hue.max()) > 150
    assert 0.3 < float((hue.abs() < 90).float().mean()) < 0.7    # uniform round the circle
    sat = g.norm(dim=1) / (x[0, :, 10, 7] - x[0, :, 10, 7].mean()).norm()
    assert 0.6 - 1e-4 <= float(sat.min()) and float(sat.max()) <= 1.4 + 1e-4
    again, rows2 = recolour(x, torch.Generator().manual_seed(0), 0.5)
    assert torch.equal(again, y) and torch.equal(rows2, rows)    # seeded
    assert again.is_contiguous(memory_format=torch.channels_last)


def test_recolour_leaves_only_the_recoloured_images_colour_labels_out(monkeypatch):
    import features.attributes.train as train

    moved, seen = [], []
    real_recolour, real_loss = train.recolour, train.masked_multitask_loss

    def spy_recolour(x, gen, share):
        out, rows = real_recolour(x, gen, share)
        moved.append(rows.clone())
        return out, rows

    def spy_loss(logits, targets, *a, **k):
        seen.append(targets.clone())
        return real_loss(logits, targets, *a, **k)

    monkeypatch.setattr(train, "recolour", spy_recolour)
    monkeypatch.setattr(train, "masked_multitask_loss", spy_loss)
    imgs, labels = separable_set(64)
    model = tiny(recolour=0.5, epochs=3, ema_decay=0.0).fit(imgs, labels)
    cols = model.taxonomy_.names.index("colour"), model.taxonomy_.names.index("half")
    assert len(moved) == len(seen) == 12
    for rows, t in zip(moved, seen):
        assert bool((t[rows, cols[0]] == -1).all())          # recoloured: no colour label
        assert bool((t[~rows, cols[0]] >= 0).all())          # the others keep theirs
        assert bool((t[:, cols[1]] >= 0).all())              # and every row its half
    share = float(torch.cat(moved).float().mean())
    assert 0.35 < share < 0.65, share


def test_recolour_trains_the_shape_heads_and_still_the_colour_head(tmp_path):
    # half of the red and blue squares recoloured: the colour head learns from the
    # other half, the half head from all of them
    imgs, labels = separable_set(64)
    test_imgs, test_labels = separable_set(64, seed=1)
    model = tiny(recolour=0.5, epochs=12, lr=5e-3, ema_decay=0.0, label_smoothing=0.0,
                 sampling_mix=0.0).fit(imgs, labels)
    pred = model.predict(test_imgs)
    for h in ("colour", "half"):
        assert (pred[h] == test_labels[h]).mean() >= 0.9, h
    model.save(tmp_path)
    assert AttributeModel.load(tmp_path).recolour == 0.5


def test_random_erasing_blanks_one_rectangle_per_chosen_image():
    from features.attributes.data import random_erase

    g = torch.Generator().manual_seed(0)
    x = random_erase(torch.ones(200, 3, 40, 28), g, 0.5)
    blank = (x[:, 0] == 0)
    hit = blank.flatten(1).any(1)
    assert 70 <= int(hit.sum()) <= 130                      # about half the images
    share = blank.flatten(1).float().mean(1)[hit]
    # 2-25% of the image, give or take the pixel rows and columns a side is cut at
    assert float(share.min()) > 0.005 and float(share.max()) <= 0.32
    for i in torch.nonzero(hit).flatten()[:20]:              # one solid rectangle
        rows, cols = torch.nonzero(blank[i], as_tuple=True)
        box = blank[i, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert bool(box.all())


def test_to_tensor_normalises_into_channels_last():
    from features.attributes.data import PIXEL_MEAN, PIXEL_STD, to_tensor

    u8 = np.random.default_rng(0).integers(0, 256, (3, 10, 7, 3), dtype=np.uint8)
    x = to_tensor(u8)
    ref = torch.from_numpy(u8).permute(0, 3, 1, 2).float()
    ref = (ref / 255.0 - PIXEL_MEAN) / PIXEL_STD
    assert x.shape == (3, 3, 10, 7) and x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x, ref)


def test_augment_is_the_affine_warp_and_contrast_it_draws():
    # the one-pass version against the textbook one, on the same draws
    import math

    import torch.nn.functional as F

    from features.attributes.data import PIXEL_STD, augment, to_tensor

    u8 = np.random.default_rng(1).integers(0, 256, (5, 20, 14, 3), dtype=np.uint8)
    x = to_tensor(u8)
    got = augment(x, torch.Generator().manual_seed(7), brightness=0.2, contrast=0.3)
    g = torch.Generator().manual_seed(7)

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(5, *shape, generator=g)

    s, rot = u(0.9, 1.1), u(-5.0, 5.0) * math.pi / 180
    sign = torch.where(torch.rand(5, generator=g) < 0.5, -1.0, 1.0)
    tx, ty = u(-0.06, 0.06) * 2, u(-0.06, 0.06) * 2
    cos, sin = torch.cos(rot) / s, torch.sin(rot) / s
    theta = torch.stack([torch.stack([cos * sign, -sin, tx], 1),
                         torch.stack([sin * sign, cos, ty], 1)], 1)
    warped = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False),
                           mode="bilinear", padding_mode="border", align_corners=False)
    mean = warped.mean((1, 2, 3), keepdim=True)
    c = u(0.7, 1.3, 1, 1, 1)
    br = u(-0.2, 0.2, 1, 1, 1) / PIXEL_STD
    torch.testing.assert_close(got, (warped - mean) * c + mean + br, atol=1e-4, rtol=1e-4)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_window_phase_trains_on_windows_then_whole_images(monkeypatch):
    import features.attributes.train as train

    seen = []
    real = train.random_window

    def spy(x, gen):
        out = real(x, gen)
        seen.append((tuple(x.shape[2:]), tuple(out.shape[2:])))
        return out

    monkeypatch.setattr(train, "random_window", spy)
    imgs, labels = separable_set(64)
    model = tiny(window_phase=0.5, epochs=4, batch_size=16, augment=False, lr=5e-3,
                 ema_decay=0.0).fit(imgs, labels)
    # 4 epochs of 4 steps: the first half on 19x13 windows of the 24x16 images
    assert seen == [((24, 16), (19, 13))] * 8
    assert len(model.history_) == 4
    with pytest.raises(InputError) as e:
        tiny(window_phase=1.0).fit(imgs, labels)
    assert e.value.field == "window_phase"


def solid_set(n=64, seed=0):
    """Plain red or blue images, labelled by their colour."""
    rng = np.random.default_rng(seed)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    names = [["red", "blue"][i % 2] for i in range(n)]
    imgs = np.stack([np.full((*SIZE, 3), colours[c], np.uint8) for c in names])
    imgs = np.clip(imgs.astype(int) + rng.integers(-10, 10, imgs.shape), 0, 255)
    return imgs.astype(np.uint8), pd.DataFrame({"colour": names})


def test_cutmix_trains_a_network_that_answers_a_half_and_half_image_in_between(tmp_path):
    # Trained on plain red and blue images only, a network is sure of an image half
    # red and half blue (0.85-0.99 red on three seeds of this set); always mixed, each
    # image's labels weighed by its share of the pixels, it learns the shares.
    imgs, labels = solid_set()
    model = tiny(cutmix=1.0, epochs=25, lr=5e-3, ema_decay=0.0, label_smoothing=0.0,
                 sampling_mix=0.0, augment=False, tta=False).fit(imgs, labels)
    h, w = SIZE
    red, blue = np.array([220, 30, 30], np.uint8), np.array([30, 30, 220], np.uint8)
    probe = np.empty((4, h, w, 3), np.uint8)
    probe[0], probe[1] = red, blue
    probe[2, :, :w // 2], probe[2, :, w // 2:] = red, blue
    probe[3, :h // 2], probe[3, h // 2:] = blue, red
    p_red = model.predict_proba(probe)["colour"][:, model.taxonomy_.classes("colour")
                                                   .index("red")]
    assert p_red[0] > 0.9 and p_red[1] < 0.1, p_red
    assert 0.3 < p_red[2] < 0.7 and 0.3 < p_red[3] < 0.7, p_red
    model.save(tmp_path)
    assert AttributeModel.load(tmp_path).cutmix == 1.0


def test_cutmix_pastes_one_box_of_a_partner_and_reports_the_share_left():
    from features.attributes.data import cutmix

    g = torch.Generator().manual_seed(0)
    x = torch.arange(16.0)[:, None, None, None].expand(16, 3, 40, 28).contiguous()
    lams = []
    for _ in range(200):
        y, perm, lam = cutmix(x, g)
        assert sorted(perm.tolist()) == list(range(16))
        moved = torch.nonzero(perm != torch.arange(16)).flatten()
        i = int(moved[0])
        own = y[i, 0] == x[i, 0]
        # the partner's pixels are one solid rectangle, the same for every image
        rows, cols = torch.nonzero(~own, as_tuple=True)
        if len(rows):
            box = own[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert not bool(box.any())
            assert bool((y[i, :, rows, cols] == x[int(perm[i]), 0, 0, 0]).all())
        assert float(own.float().mean()) == pytest.approx(lam, abs=1e-6)
        lams.append(lam)
    assert bool((x == torch.arange(16.0)[:, None, None, None]).all())   # input untouched
    # the kept share is drawn uniform in (0, 1) (clipping at the edges only raises it)
    assert 0.5 < np.mean(lams) < 0.8 and min(lams) < 0.25 and max(lams) > 0.95


def test_head_weights_weigh_each_head_s_term_of_the_loss():
    tax = Taxonomy((("a", ("x", "y")), ("b", ("x", "y", "z"))))
    logits = {"a": torch.tensor([[2.0, 0.0]]), "b": torch.tensor([[0.0, 1.0, 3.0]])}
    t, no = torch.tensor([[1, 0]]), torch.zeros(1, 5, dtype=torch.bool)
    la = float(masked_multitask_loss({"a": logits["a"]}, t[:, :1], no[:, :2],
                                     Taxonomy((("a", ("x", "y")),))))
    both = float(masked_multitask_loss(logits, t, no, tax))
    lb = both - la
    got = float(masked_multitask_loss(logits, t, no, tax, weights=(3.0, 0.5)))
    assert got == pytest.approx(3 * la + 0.5 * lb, rel=1e-6)


def test_a_head_weighed_zero_is_not_trained_and_the_others_are(tmp_path):
    imgs, labels = separable_set(64)
    model = tiny(head_weights={"colour": 0.0}, epochs=12, lr=5e-3, ema_decay=0.0,
                 label_smoothing=0.0, sampling_mix=0.0).fit(imgs, labels)
    test_imgs, test_labels = separable_set(64, seed=1)
    pred = model.predict(test_imgs)
    assert (pred["half"] == test_labels["half"]).mean() >= 0.9
    # its layer stays at its random start: no better than a coin on a balanced set
    assert (pred["colour"] == test_labels["colour"]).mean() <= 0.75
    model.save(tmp_path)
    assert AttributeModel.load(tmp_path).head_weights == {"colour": 0.0}


@pytest.mark.parametrize("weights, said", [
    ({"size": 2.0}, "head_weights names 'size', which is not a head of this network "
                     "(allowed: colour, half)"),
    ({"colour": -1}, "head_weights.colour must be a number >= 0, got -1"),
    ({"colour": 0, "half": 0}, "head_weights leaves every head at weight 0: nothing "
                               "would train"),
    ([2.0], "head_weights must be a table of head -> weight, got [2.0]"),
])
def test_fit_refuses_head_weights_it_cannot_apply(weights, said):
    imgs, labels = separable_set(8)
    with pytest.raises(InputError) as e:
        tiny(head_weights=weights).fit(imgs, labels)
    assert str(e.value) == said


def test_group_power_draws_each_group_alike_and_fit_passes_the_groups(monkeypatch):
    from features.attributes.train import sampling_weights

    t = np.array([[0, 1], [0, 0], [1, 0], [1, 1], [0, 1], [1, 0]])
    groups = ["a", "a", "a", "b", "c", "c"]
    plain = sampling_weights(t, 0.5, 0.3)
    by_group = sampling_weights(t, 0.5, 0.3, groups, 1.0)
    assert by_group.sum() == pytest.approx(1.0)
    uniform = (by_group - (plain - 0.7 / 6)) / 0.7   # the draws that are not balanced
    np.testing.assert_allclose(uniform, [1 / 9] * 3 + [1 / 3] + [1 / 6] * 2)
    np.testing.assert_allclose(sampling_weights(t, 0.5, 0.3, groups, 0.0), plain)

    seen = []
    real = torch.multinomial
    monkeypatch.setattr(torch, "multinomial",
                        lambda w, *a, **k: seen.append(w.numpy().copy()) or real(w, *a, **k))
    imgs, labels = separable_set(12)
    keys = ["m0"] * 6 + [f"m{i}" for i in range(1, 7)]
    tiny(epochs=1, batch_size=4, group_power=1.0, sampling_mix=0.0).fit(
        imgs, labels, groups=keys)
    np.testing.assert_allclose(seen[0], [1 / 42] * 6 + [1 / 7] * 6)
    with pytest.raises(InputError, match="11 groups for 12 images"):
        tiny(group_power=1.0).fit(imgs, labels, groups=keys[:11])


def test_a_seed_draws_the_training_batches_it_drew_before(monkeypatch):
    # The batches a seed draws, pinned: each step's other draws (augmentation, erasing,
    # windows, CutMix) come from the same generator, so a draw added to the loop for an
    # option left off shifts every later batch, and with it every network trained
    # before. 5bd94e3 did so with CutMix's coin and no test failed (its second batch
    # began [10, 16, 16, 15]).
    real, seen = torch.multinomial, []

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out.tolist())
        return out

    monkeypatch.setattr(torch, "multinomial", spy)
    imgs, labels = separable_set(32)
    tiny(epochs=2, batch_size=8).fit(imgs, labels)
    assert seen[:4] == [[31, 22, 14, 29, 20, 25, 5, 11], [18, 15, 25, 11, 8, 1, 23, 10],
                        [13, 23, 0, 8, 6, 5, 15, 4], [27, 7, 22, 14, 17, 4, 21, 1]]
