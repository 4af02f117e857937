"""`mixmatch ingest` and the build's ingest stage, on sources written by the tests."""
import json
import os
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from api.cli import main
from features.exceptions import InputError
from recommender.bundle import Bundle
from recommender.catalog import CatalogError
from recommender.pipeline import BuildContext, run_stages
from tests.recommender.adapters.test_mango import _product, write_mango
from tests.recommender.test_catalog import BAD_IMAGE_OPTIONS


def _jpeg(path, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((30, 20, 3)) * 255).astype("uint8")).save(path, "JPEG")


@pytest.fixture
def mango(tmp_path):
    folder = write_mango(tmp_path / "mango",
                         [_product("11-01", "Shirt"), _product("22-TO", "Jeans", "Bottoms"),
                          _product("33-99", "Footwear", "Accesories, Swim and Intimate")],
                         [[1, "11-01"], [1, "22-TO"], [1, "33-99"], [2, "11-01"],
                          [2, "22-TO"], [3, "11-01"], [3, "99-99"]])
    _jpeg(folder / "images" / "2019_11_01.jpg")
    _jpeg(folder / "images" / "2019_22_TO.jpg")
    (folder / "images" / "2019_33_99.jpg").write_bytes(b"garbage" * 20)
    return folder


def _demo(folder, *, dup=False):
    """A canonical demo-style source folder: catalog.csv, outfits.csv, images/."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = ["d1", "d2", "d3", "d1" if dup else "d4"]
    pd.DataFrame({"item_id": ids, "category": ["top", "bottom", "shoes", "bag"],
                  "subcategory": ["Tee", "Jeans", "Sneakers", "Tote"],
                  "colour": ["WHITE", "BLUE", "GREY", "BROWN"], "material": [""] * 4,
                  "gender": ["Female"] * 4,
                  "image_path": [f"images/{i}.jpg" for i in ["d1", "d2", "d3", "d4"]],
                  "price": ["10", "30.5", "", "25"], "in_stock": ["true", "false", "1", "0"],
                  }).to_csv(folder / "catalog.csv", index=False)
    pd.DataFrame({"outfit_id": ["o1", "o1", "o1", "o2", "o2"],
                  "item_id": ["d1", "d2", "d3", "d1", "d4"]}).to_csv(
                      folder / "outfits.csv", index=False)
    for k, i in enumerate(["d1", "d2", "d3", "d4"]):
        _jpeg(folder / "images" / f"{i}.jpg", k)
    return folder


def test_cli_mango(mango, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ingest", "--source", "mango", "--data", str(mango), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "items: 3" in text and "images usable: 2, missing or unreadable: 1" in text
    assert "item 33-99: image unreadable" in text
    assert "outfits: 3, items per outfit: min 1, median 2, max 3" in text
    assert "1 outfit row(s) name item ids absent from the catalogue (e.g. 99-99)" in text
    cat = pd.read_parquet(out / "catalog.parquet")
    assert cat["item_id"].tolist() == ["11-01", "22-TO", "33-99"]
    assert cat["image_ok"].tolist() == [True, True, False]
    outfits = pd.read_parquet(out / "outfits.parquet")
    assert len(outfits) == 6 and outfits.dtypes.map(str).tolist() in (
        ["object", "object"], ["str", "str"])
    meta = json.loads((out / "ingest.json").read_text())
    assert meta["image_root"] == str(mango.resolve()) and meta["metrics"]["n_items"] == 3


def test_cli_demo_folder_and_no_check_images(tmp_path, capsys):
    src = _demo(tmp_path / "demo")
    assert main(["ingest", "--source", "demo", "--data", str(src), "--out",
                 str(tmp_path / "o"), "--no-check-images"]) == 0
    assert "not opened (--no-check-images)" in capsys.readouterr().out
    cat = pd.read_parquet(tmp_path / "o" / "catalog.parquet")
    assert cat["price"].tolist()[:2] == [10.0, 30.5] and np.isnan(cat["price"][2])
    assert cat["in_stock"].tolist() == [True, False, True, False]


def test_cli_catalogue_errors_exit_1_and_write_nothing(tmp_path, capsys):
    src = _demo(tmp_path / "demo", dup=True)
    assert main(["ingest", "--source", "demo", "--data", str(src), "--out",
                 str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "duplicate item_id(s): d1 (x2)" in err and "nothing written" in err
    assert not (tmp_path / "o" / "catalog.parquet").exists()


def test_cli_csv_with_mapping(tmp_path, capsys):
    pd.DataFrame({"sku": ["a", "b"], "kind": ["Tee", "Jeans"]}).to_csv(tmp_path / "s.csv",
                                                                       index=False)
    (tmp_path / "m.toml").write_text('catalog = "s.csv"\n[columns]\nitem_id = "sku"\n'
                                     'category = "kind"\n[category_map]\nTee = "top"\n'
                                     'Jeans = "bottom"\n')
    assert main(["ingest", "--source", "csv", "--mapping", str(tmp_path / "m.toml"),
                 "--out", str(tmp_path / "o")]) == 0
    assert "items: 2" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "o" / "outfits.parquet")) == 0


def test_cli_input_errors_exit_2(tmp_path, capsys):
    assert main(["ingest", "--source", "csv", "--out", str(tmp_path)]) == 2
    assert "--mapping" in capsys.readouterr().err
    assert main(["ingest", "--source", "demo", "--out", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["ingest", "--source", "mango", "--data", str(tmp_path / "nope"),
                 "--out", str(tmp_path)]) == 2
    assert "product_data.csv" in capsys.readouterr().err


def _ctx(bundle_dir, **config):
    b = Bundle.create(bundle_dir, source=config["source"], image_root=None, config=config)
    return BuildContext(bundle=b, config=config, log=lambda m: None)


def test_stage_demo_writes_tables_and_skips_when_unchanged(tmp_path):
    bdir = tmp_path / "bundle"
    src = _demo(bdir / "source")                  # the demo generator's location
    ctx = _ctx(bdir, source="demo")
    m = run_stages(ctx, ["ingest"])["ingest"]
    assert m["n_items"] == 4 and m["n_outfits"] == 2 and m["images_missing"] == 0
    assert m["per_category"] == {"top": 1, "bottom": 1, "shoes": 1, "bag": 1}
    b = Bundle.open(bdir)
    assert b.image_root == src.resolve()
    assert b.stage_record("ingest")["outputs"] == ["catalog.parquet", "outfits.parquet"]
    finished = b.stage_record("ingest")["finished"]

    logs = []
    ctx2 = BuildContext(bundle=b, config=ctx.config, log=logs.append)
    run_stages(ctx2, ["ingest"])
    assert any("up to date, skipped" in line for line in logs)

    # a replaced image (new size/mtime) makes the stage run again
    img = src / "images" / "d2.jpg"
    _jpeg(img, seed=9)
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    logs.clear()
    run_stages(BuildContext(bundle=Bundle.open(bdir), config=ctx.config, log=logs.append),
               ["ingest"])
    assert not any("skipped" in line for line in logs)
    assert Bundle.open(bdir).stage_record("ingest")["finished"] >= finished


def test_stage_mango_and_csv(mango, tmp_path):
    m = run_stages(_ctx(tmp_path / "b1", source="mango", data=str(mango)), ["ingest"])["ingest"]
    assert m["n_items"] == 3 and m["images_missing"] == 1 and m["n_outfits"] == 3
    assert m["outfit_problems"] and "99-99" in m["outfit_problems"][0]
    assert Bundle.open(tmp_path / "b1").image_root == mango.resolve()
    with pytest.raises(InputError, match="mapping"):
        run_stages(_ctx(tmp_path / "b2", source="csv"), ["ingest"])


def test_stage_records_the_declared_currency(mango, tmp_path):
    """The ingest stage's metrics say which currency the prices are in: the mapping's
    ``currency``, None where no source declares one (MANGO, a mapping without it)."""
    (tmp_path / "s.csv").write_text("sku;kind;price\na;top;€23,99\nb;bottom;5,00 EUR\n")
    toml = ('catalog = "s.csv"\nsep = ";"\ndecimal = ","\n{currency}[columns]\n'
            'item_id = "sku"\ncategory = "kind"\nprice = "price"\n')
    (tmp_path / "m.toml").write_text(toml.format(currency='currency = "EUR"\n'))
    ctx = _ctx(tmp_path / "b", source="csv", mapping=str(tmp_path / "m.toml"))
    assert run_stages(ctx, ["ingest"])["ingest"]["currency"] == "EUR"
    b = Bundle.open(tmp_path / "b")
    assert b.stage_record("ingest")["metrics"]["currency"] == "EUR"
    assert pd.read_parquet(b.path("catalog.parquet"))["price"].tolist() == [23.99, 5.0]

    (tmp_path / "s.csv").write_text("sku;kind;price\na;top;23,99\nb;bottom;5,00\n")
    (tmp_path / "m.toml").write_text(toml.format(currency=""))
    assert run_stages(BuildContext(bundle=Bundle.open(tmp_path / "b"), config=ctx.config,
                                   log=lambda m: None), ["ingest"])["ingest"]["currency"] \
        is None
    m = run_stages(_ctx(tmp_path / "b1", source="mango", data=str(mango)), ["ingest"])
    assert m["ingest"]["currency"] is None


def test_stage_refuses_a_bad_catalogue(tmp_path):
    _demo(tmp_path / "b" / "source", dup=True)
    with pytest.raises(CatalogError, match="duplicate item_id"):
        run_stages(_ctx(tmp_path / "b", source="demo"), ["ingest"])


@pytest.mark.realdata
def test_real_mango_cli(mango_dir, tmp_path, capsys):
    assert main(["ingest", "--source", "mango", "--data", str(mango_dir), "--out",
                 str(tmp_path), "--no-check-images"]) == 0
    text = capsys.readouterr().out
    assert "items: 9222" in text
    assert "outfits: 6274, items per outfit: min 2, median 5, max 15" in text
    cat = pd.read_parquet(tmp_path / "catalog.parquet")
    assert len(cat) == 9222 and "price" not in cat.columns


def test_rebuild_keeps_the_image_root_recorded_by_ingest(mango, tmp_path):
    from recommender.build import build_bundle

    out = tmp_path / "bundle"
    for _ in range(2):      # the second build skips ingest
        build_bundle(out, source="mango", data=mango, stages=["ingest"], log=lambda m: None)
    assert Bundle.open(out).image_root == mango.resolve()


def test_stage_settings_check_images_and_sample(tmp_path):
    bdir = tmp_path / "b"
    src = _demo(bdir / "source")
    (src / "images" / "d3.jpg").unlink()           # row 2 of 4
    runs = {}
    for name, conf in [("default", {}), ("no_check", {"check_images": False}),
                       ("sample", {"image_sample": 2})]:   # opens rows 0 and 3 only
        ctx = _ctx(bdir, source="demo", stages={"ingest": conf})
        runs[name] = run_stages(ctx, ["ingest"])["ingest"]["image_problems"]
    assert runs == {"default": 1, "no_check": 0, "sample": 0}


@pytest.mark.parametrize("table, said, field, value", [
    # before: ignored, and every image opened
    ({"check_image": False}, "unknown [stages.ingest] setting 'check_image' (allowed: "
     "check_images, image_sample)", "stages.ingest", "check_image"),
    ({"image_samples": 2}, "unknown [stages.ingest] setting 'image_samples' (allowed: "
     "check_images, image_sample)", "stages.ingest", "image_samples"),
    # before: bool("false") is true, so every image was opened
    ({"check_images": "false"}, "[stages.ingest] check_images must be true or false, "
     "got 'false'", "stages.ingest.check_images", "false"),
    ({"check_images": 0}, "[stages.ingest] check_images must be true or false, got 0",
     "stages.ingest.check_images", 0),
    ({"check_images": None}, "[stages.ingest] check_images must be true or false, got None",
     "stages.ingest.check_images", None),
    # before: opened no image and flagged every row with a path usable
    ({"image_sample": 0}, "[stages.ingest] image_sample must be a whole number >= 1, got 0",
     "stages.ingest.image_sample", 0),
    # before: numpy's ValueError, once the stage had started
    ({"image_sample": -3}, "[stages.ingest] image_sample must be a whole number >= 1, "
     "got -3", "stages.ingest.image_sample", -3),
    # before: TypeErrors from numpy and from comparing a string with the row count
    ({"image_sample": 2.5}, "[stages.ingest] image_sample must be a whole number >= 1, "
     "got 2.5", "stages.ingest.image_sample", 2.5),
    ({"image_sample": "ten"}, "[stages.ingest] image_sample must be a whole number >= 1, "
     "got 'ten'", "stages.ingest.image_sample", "ten"),
    # before: opened one image
    ({"image_sample": True}, "[stages.ingest] image_sample must be a whole number >= 1, "
     "got True", "stages.ingest.image_sample", True),
    # a whole number written as a float: refused as every stage's whole-number setting
    # is (features.settings.check_settings); before, a TypeError below the row count
    ({"image_sample": 2.0}, "[stages.ingest] image_sample must be a whole number >= 1, "
     "got 2.0", "stages.ingest.image_sample", 2.0),
])
def test_a_bad_stage_table_is_refused_before_the_stage_starts(tmp_path, table, said,
                                                              field, value):
    from recommender.ingest import check_config

    bdir = tmp_path / "b"
    _demo(bdir / "source")
    ctx = _ctx(bdir, source="demo")
    run_stages(ctx, ["ingest"])                       # a bundle built on a good table
    manifest = (bdir / "manifest.json").read_text()
    catalog = (bdir / "catalog.parquet").read_bytes()
    (bdir / "source" / "images" / "d3.jpg").unlink()  # the stage would run again
    logs = []
    ctx = BuildContext(bundle=Bundle.open(bdir), config={
        **ctx.config, "stages": {"ingest": table}}, log=logs.append)
    with pytest.raises(InputError) as e:
        check_config(ctx)
    assert str(e.value) == said
    assert (e.value.field, e.value.value) == (field, value)
    for names in (["ingest"], None):                  # the stage alone, or a whole build
        with pytest.raises(InputError, match=re.escape(said)):
            run_stages(ctx, names)
    assert logs == []                                 # no stage started
    assert (bdir / "manifest.json").read_text() == manifest
    assert (bdir / "catalog.parquet").read_bytes() == catalog


@pytest.mark.parametrize("name, value, said", BAD_IMAGE_OPTIONS)
def test_the_python_ingest_refuses_what_the_stage_refuses_in_its_words(tmp_path, name,
                                                                        value, said):
    """``ingest(...)`` (``mixmatch ingest``, notebooks) refuses the image options the
    build's ``[stages.ingest]`` table refuses, by the same rules and in the same words
    less the table's name, before the source is read."""
    from types import SimpleNamespace as NS

    from recommender.ingest import ingest, stage_settings

    with pytest.raises(InputError) as stage:
        stage_settings(NS(stage_config=lambda stage_name: {name: value}))
    assert str(stage.value) == f"[stages.ingest] {said}"
    for data in (tmp_path / "nowhere", _demo(tmp_path / "src")):
        with pytest.raises(InputError) as exc:
            ingest("demo", data, **{name: value})
        assert str(exc.value) == said
        assert (exc.value.field, exc.value.value) == (name, value)
        assert stage.value.field == f"stages.ingest.{name}"


@pytest.mark.parametrize("options, problems", [
    ({}, 1), ({"check_images": False}, 0), ({"image_sample": 2}, 0),  # rows 0 and 3
    ({"image_sample": 3}, 0), ({"image_sample": 4}, 1),              # rows 0, 1, 3; all
    ({"check_images": True, "image_sample": None}, 1),
])
def test_the_python_ingest_opens_the_images_it_did(tmp_path, options, problems):
    from recommender.ingest import ingest

    src = _demo(tmp_path / "src")
    (src / "images" / "d3.jpg").unlink()           # row 2 of 4
    catalog, outfits, root, report, _ = ingest("demo", src, **options)
    assert report.ok and len(catalog) == 4 and root == src
    assert len(report.row_issues) == problems


@pytest.mark.parametrize("table, check, sample", [
    ({}, True, None), ({"check_images": True}, True, None),
    ({"check_images": False}, False, None), ({"image_sample": 1}, True, 1),
    ({"image_sample": None}, True, None),   # JSON's and YAML's null: every image
    ({"check_images": False, "image_sample": 500}, False, 500),
])
def test_a_good_stage_table_is_recorded_as_before(tmp_path, table, check, sample):
    """The stage's inputs hold ``check_images`` and ``image_sample`` as the stage
    recorded them before its table was checked (the value, true and null where left
    out), so a bundle built on a good table stays up to date."""
    from recommender.ingest import stage_inputs, stage_settings

    bdir = tmp_path / "b"
    _demo(bdir / "source")
    ctx = _ctx(bdir, source="demo", stages={"ingest": table})
    assert stage_settings(ctx) == (check, sample)
    inputs = stage_inputs(ctx)
    assert (inputs["check_images"], inputs["image_sample"]) == (check, sample)
    assert type(inputs["check_images"]) is bool


def test_cli_refuses_to_write_its_tables_into_a_bundle(tmp_path, capsys):
    # before: `mixmatch ingest --out B` over a built bundle replaced its catalogue beside
    # the features and graph of the old one, unmarked and unlocked: the bundle passed
    # check_complete and stale_stages said nothing, but no server could load it again
    # (features not row-aligned with catalog.parquet)
    from recommender.bundle import Bundle

    src = _demo(tmp_path / "demo")
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    assert main(["ingest", "--source", "demo", "--data", str(src), "--out",
                 str(b.root)]) == 2
    err = capsys.readouterr().err
    assert f"{b.root} holds a bundle" in err and "mixmatch build" in err
    assert not b.path("catalog.parquet").exists()


def _csv_source(folder):
    """A shop's catalogue with a mapping beside it, images under ``photos/``."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"sku": ["a", "b"], "kind": ["Tee", "Jeans"],
                  "pic": ["a.jpg", "b.jpg"]}).to_csv(folder / "s.csv", index=False)
    (folder / "m.toml").write_text('catalog = "s.csv"\nimage_root = "photos"\n[columns]\n'
                                   'item_id = "sku"\ncategory = "kind"\nimage_path = "pic"\n'
                                   '[category_map]\nTee = "top"\nJeans = "bottom"\n')
    for k, i in enumerate("ab"):
        _jpeg(folder / "photos" / f"{i}.jpg", k)
    return folder


@pytest.mark.parametrize("source", ["demo", "mango", "csv"])
def test_a_source_moved_with_the_same_files_records_only_its_new_image_root(
        tmp_path, source, request):
    # before: the stage's inputs held the data folder's path, so a source moved or
    # copied elsewhere (same bytes) was ingested again, and the image stages after it
    # retrained on identical images
    import shutil

    if source == "demo":
        old = _demo(tmp_path / "data")
    elif source == "mango":
        old = request.getfixturevalue("mango")
    else:
        old = _csv_source(tmp_path / "data")
    where = {"csv": lambda f: {"mapping": str(f / "m.toml")}}.get(
        source, lambda f: {"data": str(f)})
    images = {"csv": "photos", "mango": "."}.get(source, ".")
    config = {"source": source, **where(old)}
    ctx = _ctx(tmp_path / "b", **config)
    run_stages(ctx, ["ingest"])
    b = Bundle.open(tmp_path / "b")
    assert b.image_root == (old / images).resolve()
    tables = {p: b.path(p).stat().st_mtime_ns for p in ("catalog.parquet", "outfits.parquet")}
    new = tmp_path / "elsewhere" / "moved"
    new.parent.mkdir()
    shutil.move(old, new)
    logs = []
    run_stages(BuildContext(bundle=b, config={"source": source, **where(new)},
                            log=logs.append), ["ingest"])
    b = Bundle.open(tmp_path / "b")
    assert b.image_root == (new / images).resolve()
    assert logs[0].startswith("[ingest] same content at a new place (")
    assert logs[0].endswith(f"): recorded the new image root {(new / images).resolve()}; "
                            f"not run again")
    assert {p: b.path(p).stat().st_mtime_ns for p in tables} == tables   # not rewritten
    # a file changed at the new place: ingested again
    first = sorted((new / images).rglob("*.jpg"))[0]
    _jpeg(first, seed=9)
    logs.clear()
    run_stages(BuildContext(bundle=b, config={"source": source, **where(new)},
                            log=logs.append), ["ingest"])
    assert logs[0].startswith("[ingest] inputs changed since it ran: images.hash ")
    assert logs[0].endswith("; running it again")
