"""What a build runs with: a source's own stage defaults under the user's config, and
config files refused by name when they are not tables of stage tables."""
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from api.cli import main
from features.attributes.train import _stage_params
from features.exceptions import InputError
from recommender.adapters.mango import STAGE_DEFAULTS
from recommender.build import build_bundle, read_config_file, resolve_stage_config
from recommender.bundle import Bundle
from recommender.pipeline import BuildContext
from tests.recommender.test_ingest import mango  # noqa: F401  (the fixture)

RECIPE = Path(__file__).resolve().parents[2] / "benchmarks" / "mango_attributes.toml"


def test_the_mango_default_is_the_measured_recipe_file():
    """The recipe's figures were measured with the toml's table; the default a MANGO
    build trains with must be that table, not a copy that drifted."""
    table = tomllib.loads(RECIPE.read_text())["stages"]["attributes"]
    assert table == STAGE_DEFAULTS["attributes"]


def _params(source, quick, stages):
    config = {"source": source, "quick": quick,
              "stages": resolve_stage_config(source, quick, stages)}
    return _stage_params(BuildContext(bundle=None, config=config))


def test_a_mango_build_trains_the_recipe_and_the_config_overrides_key_by_key():
    p = _params("mango", False, {})
    assert (p["preset"], p["image_size"], p["time_budget_s"], p["tta_zoom"]) == (
        "small", [160, 112], 1460, 1.08)
    p = _params("mango", False, {"attributes": {"epochs": 3, "preset": "base"}})
    assert (p["epochs"], p["preset"], p["time_budget_s"], p["sampling_mix"]) == (
        3, "base", 1460, 0.3)
    cfg = resolve_stage_config("mango", False, {"attributes": {"epochs": 3}})
    assert cfg["attributes"]["descriptors"] is True          # a stage-only key, kept too
    cfg["attributes"]["image_size"].append(1)
    assert STAGE_DEFAULTS["attributes"]["epochs"] == 47       # the defaults are copies
    assert STAGE_DEFAULTS["attributes"]["image_size"] == [160, 112]


def test_quick_builds_and_other_sources_keep_the_generic_defaults():
    quick = _params("mango", True, {})
    assert (quick["preset"], quick["epochs"]) == ("tiny", 2)
    assert "time_budget_s" not in quick
    demo = _params("demo", False, {})
    assert (demo["preset"], demo["epochs"]) == ("base", 20)
    assert resolve_stage_config("csv", False, {"split": {"test_fraction": 0.0}}) == {
        "split": {"test_fraction": 0.0}}


def test_the_manifest_records_the_recipe_a_mango_build_ran_with(mango, tmp_path):  # noqa: F811
    out = tmp_path / "b"
    build_bundle(out, source="mango", data=mango, stages=["ingest"], log=lambda m: None,
                 overrides={"stages": {"attributes": {"epochs": 5}}}, holdout=0.0)
    stages = Bundle.open(out).manifest["config"]["stages"]
    assert stages["attributes"] == {**STAGE_DEFAULTS["attributes"], "epochs": 5}
    assert stages["split"] == {"test_fraction": 0.0}


@pytest.mark.parametrize("text, message", [
    ("stages = 3\n", "[stages] must be a table of stage tables, got 3"),
    ("[stages]\nattributes = 3\n", "[stages.attributes] must be a table, got 3"),
    ("[stages.atributes]\nepochs = 3\n", "unknown stage 'atributes' in [stages]"),
    # before: a top-level table other than [stages] and [dask] was ignored, so a typo
    # ([stage.graph], [graph]) built with the defaults and exited 0
    ("[stage.graph]\nk_visual = 5\n", "unknown key 'stage' (allowed: dask, stages)"),
    ("seed = 3\n", "unknown key 'seed' (allowed: dask, stages)"),
])
def test_a_config_that_is_not_stage_tables_is_refused_by_name(tmp_path, capsys, text,
                                                              message):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(InputError) as exc:
        read_config_file(f)
    assert message in str(exc.value)
    assert main(["build", "--out", str(tmp_path / "b"), "--config", str(f)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("overrides, said", [
    ({"stage": {"graph": {"k_visual": 5}}},
     "build config: unknown key 'stage' (allowed: dask, stages)"),
    ({"stages": {"ingset": {"check_images": False}}},
     "build config: unknown stage 'ingset' in [stages] (allowed: ingest, split,"),
    ({"stages": {"graph": 5}}, "build config: [stages.graph] must be a table, got 5"),
    ({"dask": {"n_workers": "three"}}, "[dask] n_workers must be a whole number >= 1, "
     "got 'three'"),
])
def test_overrides_from_python_are_checked_as_a_config_file_is(tmp_path, overrides, said):
    # before: build_bundle(overrides=...) ignored a key other than stages and dask and a
    # table of an unknown stage, and built with the defaults
    from recommender.build import plan_build

    for call in (build_bundle, plan_build):
        with pytest.raises(InputError) as e:
            call(tmp_path / "b", quick=True, items=20, stages=["ingest"],
                 overrides=overrides)
        assert str(e.value).startswith(said), str(e.value)
    assert not (tmp_path / "b").exists()


def test_a_json_config_must_be_an_object(tmp_path):
    f = tmp_path / "c.json"
    f.write_text("[1, 2]")
    with pytest.raises(InputError, match="must hold a table of settings, got list"):
        read_config_file(f)


def test_a_json_config_giving_a_key_twice_is_refused_naming_it(tmp_path, capsys):
    """Before: ``json.loads`` kept the last ``stages`` object, so the graph's k_visual
    above it was dropped without a word and the build ran the graph with its default
    (exit 0). Refused like a syntax error, naming the file, the key and both lines."""
    f = tmp_path / "c.json"
    f.write_text('{"stages": {"graph": {"k_visual": 5}},\n'
                 ' "stages": {"split": {"test_fraction": 0.0}}}\n')
    said = (f"config file {f} is not valid: line 2: duplicate key 'stages' (first at "
            f"line 1)")
    with pytest.raises(InputError) as exc:
        read_config_file(f)
    assert said in str(exc.value) and exc.value.field == "config", str(exc.value)
    assert main(["build", "--out", str(tmp_path / "b"), "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
    # a repeat inside a stage table is named with its table's path
    f.write_text('{"stages": {"graph": {"k_visual": 5,\n  "k_visual": 8}}}')
    with pytest.raises(InputError, match="line 2: duplicate key 'k_visual' of "
                                         r"stages\.graph \(first at line 1\)"):
        read_config_file(f)


def test_a_failed_rebuild_leaves_the_manifest_of_the_existing_bundle(tmp_path):
    """A build into an existing bundle that fails before any stage ran (here: a mapping
    naming an absent column) must not rewrite the manifest's source and config."""
    (tmp_path / "p.csv").write_text("sku,type\n1,Jeans\n2,Tee\n")
    (tmp_path / "good.toml").write_text(
        'catalog = "p.csv"\n[columns]\nitem_id = "sku"\ncategory = "type"\n'
        '[category_map]\nJeans = "bottom"\nTee = "top"\n')
    (tmp_path / "bad.toml").write_text(
        'catalog = "p.csv"\n[columns]\nitem_id = "sku"\ncategory = "kind"\n')
    out = tmp_path / "b"
    build_bundle(out, source="csv", mapping=tmp_path / "good.toml", stages=["ingest"],
                 log=lambda m: None)
    before = (out / "manifest.json").read_text()
    with pytest.raises(InputError, match="columns.category names column 'kind'"):
        build_bundle(out, source="csv", mapping=tmp_path / "bad.toml", holdout=0.0,
                     stages=["ingest"], log=lambda m: None)
    assert (out / "manifest.json").read_text() == before
    b = Bundle.open(out)
    assert b.manifest["config"]["mapping"] == str(tmp_path / "good.toml")
    assert "split" not in b.manifest["config"]["stages"]


def test_a_bundles_manifest_is_read_as_the_config_its_build_recorded(tmp_path):
    # the config a bundle's build ran with is in its manifest: `--config B/manifest.json`
    # builds with it (the build named to record B's new data folder, or another bundle)
    import json

    from features.exceptions import BundleError

    tables = {"graph": {"k_visual": 5}, "split": {"test_fraction": 0.5}}
    b = Bundle.create(tmp_path / "b", source="mango", image_root=None, config={
        "source": "mango", "seed": 3, "stages": resolve_stage_config("mango", False, tables),
        "dask": {"n_workers": 2}})
    manifest = b.path("manifest.json")
    recorded = read_config_file(manifest)
    assert recorded == {"stages": b.manifest["config"]["stages"], "dask": {"n_workers": 2}}
    assert recorded["stages"]["graph"] == {"k_visual": 5}
    # merged over the source's defaults, as a build merges a config: the tables it had
    assert resolve_stage_config("mango", False, recorded["stages"]) == b.manifest[
        "config"]["stages"]
    # a manifest of another schema is named as such, not read as unknown config keys
    manifest.write_text(json.dumps({**b.manifest, "schema_version": 99}))
    with pytest.raises(BundleError, match="has schema_version 99"):
        read_config_file(manifest)
    # a config file of one's own named manifest.json is a config file
    own = tmp_path / "mine" / "manifest.json"
    own.parent.mkdir()
    own.write_text(json.dumps({"stages": {"graph": {"k_visual": 8}}}))
    assert read_config_file(own) == {"stages": {"graph": {"k_visual": 8}}}


def test_a_config_that_is_not_utf8_is_refused_by_name(tmp_path, capsys):
    # before: UnicodeDecodeError traceback (exit 1)
    f = tmp_path / "c.toml"
    f.write_bytes('[stages.attributes]\nnote = "caf\xe9"\n'.encode("latin-1"))
    assert main(["build", "--out", str(tmp_path / "B"), "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"config file {f} is not UTF-8 text" in err and "Traceback" not in err
    assert not (tmp_path / "B").exists()


def test_a_stage_command_config_overrides_the_bundles_tables_key_by_key(tmp_path, capsys):
    """``mixmatch graph --config`` setting one key keeps the rest of the tables the
    bundle recorded, and the manifest records what the stage ran with. Before, the
    config replaced the recorded tables (the graph ran with k_compat 20, not the
    bundle's 3; the split table was gone) and the manifest kept the old ones, so the
    next ``mixmatch graph`` reran the stage on them."""
    import json

    from tests.recommender.tiny_bundle import make_tiny_bundle

    root = make_tiny_bundle(tmp_path / "b")
    b = Bundle.open(root)
    b.manifest["config"] = {"source": "test", "seed": 0, "quick": True, "stages": {
        "graph": {"k_compat": 3, "k_visual": 3}, "split": {"test_fraction": 0.0}}}
    b.save()
    f = tmp_path / "c.toml"
    f.write_text("[stages.graph]\nk_cooc = 2\n")
    assert main(["graph", "--bundle", str(root), "--config", str(f)]) == 0
    ran = json.loads((root / "graph" / "graph.json").read_text())["config"]
    assert (ran["k_compat"], ran["k_visual"], ran["k_cooc"]) == (3, 3, 2)
    stages = Bundle.open(root).manifest["config"]["stages"]
    assert stages == {"graph": {"k_compat": 3, "k_visual": 3, "k_cooc": 2},
                      "split": {"test_fraction": 0.0}}
    capsys.readouterr()
    assert main(["graph", "--bundle", str(root)]) == 0
    assert "[graph] up to date, skipped" in capsys.readouterr().err


@pytest.fixture(scope="module")
def split_bundle(tmp_path_factory):
    """A quick demo bundle through the split stage (every later stage's settings are
    refused before it starts, so the tests below share it)."""
    out = tmp_path_factory.mktemp("settings") / "b"
    assert main(["build", "--out", str(out), "--items", "20", "--quick",
                 "--stages", "ingest,split"]) == 0
    return out


def _build_refused(tmp_path, capsys, table: str, said: str) -> str:
    """``mixmatch build`` of a quick demo with ``table`` as its config: exit 2 saying
    ``said``, without a traceback, before the first stage (no ingest, no catalogue).
    Returns what it wrote to stderr."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(table)
    out = tmp_path / "b"
    assert main(["build", "--out", str(out), "--items", "20", "--quick",
                 "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch build: error: {said}" in err, err
    assert "Traceback" not in err and "[ingest]" not in err
    assert not (out / "catalog.parquet").exists()
    return err


@pytest.mark.parametrize("stage, table, said", [
    ("attributes", 'epochs = "two"',
     "[stages.attributes] epochs must be a whole number, got 'two'"),
    ("attributes", "epohcs = 2",
     "unknown [stages.attributes] setting 'epohcs' (allowed: augment, batch_size, cache, "
     "crop, cutmix, descriptors, device,"),
    ("attributes", "epochs = 0", "[stages.attributes] epochs must be a whole number >= 1"),
    # before the images are decoded: the heads are the catalogue's
    ("attributes", "head_weights = {sleeve = 2.0}",
     "[stages.attributes] head_weights names 'sleeve', which is not a head of this network "
     "(allowed: "),
    ("attributes", "head_weights = 2", "[stages.attributes] head_weights must be a table"),
    ("attributes", "descriptors = \"yes\"",
     "[stages.attributes] descriptors must be true or false, got 'yes'"),
    ("attributes", 'regions = "detial"',     # before: trained the "auto" regions
     "[stages.attributes] unknown regions 'detial' (allowed: auto, detail, none, off, true, "
     "false)"),
    ("keypoints", 'epochs = "two"', "[stages.keypoints] epochs must be a whole number, got "
                                    "'two'"),
    ("keypoints", "epochs = 0", "[stages.keypoints] epochs must be a whole number >= 1"),
    ("keypoints", 'decoder = "nearest"', "[stages.keypoints] unknown decoder 'nearest' "
                                         "(allowed: quadratic, local, global)"),
    ("keypoints", "random_state = 1",
     "unknown [stages.keypoints] setting 'random_state' (allowed: augment, batch_size, "
     "budget_clock, coord_weight, csv, decoder,"),
    ("compatibility", 'num_leaves = "x"',
     "[stages.compatibility] num_leaves must be a whole number, got 'x'"),
    ("compatibility", "num_leavs = 7",
     "unknown [stages.compatibility] setting 'num_leavs' (allowed: aggregate, context,"),
    ("compatibility", 'negatives = "bogus"',
     "[stages.compatibility] unknown negatives mode 'bogus' (allowed: "),
    ("compatibility", "val_fraction = 2.0",
     "[stages.compatibility] val_fraction must be a number strictly between 0 and 1, "
     "got 2.0"),
    ("compatibility", "num_leaves = 1",
     "[stages.compatibility] num_leaves must be a whole number >= 2, got 1"),
    ("features", 'batch_size = "x"',
     "[stages.features] batch_size must be a whole number >= 1, got 'x'"),
    ("features", "workers = 0", "[stages.features] workers must be a whole number >= 1, "
                                "got 0"),
])
def test_stage_settings_are_checked_before_the_stage_starts(split_bundle, tmp_path, capsys,
                                                            stage, table, said):
    # before: an unknown key was a TypeError traceback from the estimator's constructor
    # and a string where a number belongs a ValueError (LightGBMError for the
    # compatibility model) traceback, after the stage had started (exit 1); keypoints'
    # epochs = 0 saved an untrained detector (exit 0), an unknown decoder was refused
    # only when the trained detector first predicted
    manifest = (split_bundle / "manifest.json").read_text()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[stages.{stage}]\n{table}\n")
    capsys.readouterr()
    assert main(["build", "--out", str(split_bundle), "--items", "20", "--quick",
                 "--stages", stage, "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch build: error: {said}" in err and "Traceback" not in err, err
    assert f"[{stage}] " not in err                     # refused before the stage started
    assert (split_bundle / "manifest.json").read_text() == manifest


@pytest.mark.parametrize("regions", ["auto", "detail", "none", "off", True, False])
def test_every_regions_mode_passes_the_attributes_check(regions):
    from features.attributes.train import checked_params

    checked_params(BuildContext(bundle=None, config={
        "source": "demo", "stages": {"attributes": {"regions": regions}}}))


def test_the_mango_defaults_the_recipe_and_nested_settings_pass_the_stage_checks():
    """Every key the MANGO defaults, the recipe file and ``mixmatch up`` use is an
    allowed setting of the kind it has there, and lists and tables (image_size, style,
    lgb_params) are passed on as they are."""
    from features.attributes.train import checked_params
    from features.extract import _stage_settings as features_settings
    from features.keypoints.train import _stage_settings as keypoint_settings
    from recommender.compat.train import model_settings

    recipe = tomllib.loads(RECIPE.read_text())["stages"]
    for stages in (recipe, resolve_stage_config("mango", False, {})):
        params = checked_params(BuildContext(bundle=None, config={
            "source": "mango", "quick": False, "stages": stages}))
        assert {k: params[k] for k in ("preset", "image_size", "tta_zoom")} == {
            "preset": "small", "image_size": [160, 112], "tta_zoom": 1.08}
    stages = {"keypoints": {"image_size": [64, 48], "csv": "k.csv", "lr": 1},
              "compatibility": {"style": {"dim": 16}, "lgb_params": {"cat_smooth": 50},
                                "groups": ["metadata", "colour"], "learning_rate": 0.1},
              "features": {"workers": 1}}
    ctx = BuildContext(bundle=None, config={"source": "demo", "stages": stages})
    assert keypoint_settings(ctx) == stages["keypoints"]
    settings = model_settings(ctx.config)
    assert (settings["style"], settings["lgb_params"], settings["groups"]) == (
        {"dim": 16}, {"cat_smooth": 50}, ["metadata", "colour"])
    assert features_settings(ctx)["workers"] == 1
    from api.cli import UP_PROFILE                       # what `mixmatch up` trains with

    ctx = BuildContext(bundle=None, config={"source": "demo", "stages": UP_PROFILE})
    assert checked_params(ctx)["epochs"] == 8 and keypoint_settings(ctx)["epochs"] == 20
    assert model_settings(ctx.config)["context_params"] == {"members": 1, "num_threads": 2}


@pytest.mark.parametrize("value", [",", "", " , "])
def test_a_stage_list_naming_no_stage_is_refused(tmp_path, capsys, value):
    # before: build --stages , generated the demo source (~25 s), ran nothing, exit 0
    # (and --stages "" ran every stage)
    from tests.recommender.tiny_bundle import make_tiny_bundle

    assert main(["build", "--out", str(tmp_path / "b"), "--quick", "--stages", value]) == 2
    err = capsys.readouterr().err
    assert f"build: error: no stage named in {value!r} (allowed: ingest," in err, err
    assert not (tmp_path / "b").exists()
    root = make_tiny_bundle(tmp_path / "t")
    manifest = (root / "manifest.json").read_text()
    if value:   # train --stage "" trains its three stages, as with no --stage
        assert main(["train", "--bundle", str(root), "--stage", value]) == 2
        assert f"train: error: no stage named in {value!r}" in capsys.readouterr().err
    assert (root / "manifest.json").read_text() == manifest


@pytest.mark.parametrize("table", ["[stages.graph]\nk_visul = 3\n",
                                   "[stages.compatibility]\nnum_leaves = \"x\"\n",
                                   # before: refused by the compatibility stage's fit
                                   "[stages.compatibility]\ngroups = [\"metadata\", "
                                   "\"colours\"]\n",
                                   "[stages.split]\ntest_fraction = 1.5\n",
                                   # before: ignored, and "false" read as true (bool):
                                   # every image opened
                                   "[stages.ingest]\ncheck_image = false\n",
                                   "[stages.ingest]\ncheck_images = \"false\"\n"])
def test_every_stages_settings_are_checked_before_the_first_stage_runs(tmp_path, capsys,
                                                                        table):
    # before: a whole build ran ingest, split, attributes, keypoints, features (and
    # compatibility) before refusing a misspelt [stages.graph] key: on MANGO about an
    # hour of training before the error
    err = _build_refused(tmp_path, capsys, table, "")
    stage = table.split("]")[0].split(".")[1]
    assert f"[stages.{stage}]" in err, err


DASK_KEYS = "memory_limit, min_pairs_per_part, n_workers, parts_per_worker, threads_per_worker"
MEMORY_WORDS = 'a size ("2GiB", "auto"), a number of bytes or a fraction of memory'


@pytest.mark.parametrize("table, said, field, value", [
    # before: with --engine local none of these was looked at, and with --engine dask
    # the typo was refused without its value once the cluster started, "three" was a
    # TypeError from inside Dask and "lots" a ValueError from its byte parser
    ("[dask]\nn_worker = 3\n", f"unknown [dask] setting 'n_worker' (allowed: {DASK_KEYS})",
     "dask", "n_worker"),
    ('[dask]\nn_workers = "three"\n', "[dask] n_workers must be a whole number >= 1, "
     "got 'three'", "dask.n_workers", "three"),
    ("[dask]\nn_workers = 0\n", "[dask] n_workers must be a whole number >= 1, got 0",
     "dask.n_workers", 0),
    ("[dask]\nthreads_per_worker = 1.5\n", "[dask] threads_per_worker must be a whole "
     "number >= 1, got 1.5", "dask.threads_per_worker", 1.5),
    ("[dask]\nparts_per_worker = true\n", "[dask] parts_per_worker must be a whole "
     "number >= 1, got True", "dask.parts_per_worker", True),
    # 0 divided the pair count (ZeroDivisionError in the compatibility stage)
    ("[dask]\nmin_pairs_per_part = 0\n", "[dask] min_pairs_per_part must be a whole "
     "number >= 1, got 0", "dask.min_pairs_per_part", 0),
    ('[dask]\nmemory_limit = "lots"\n', f"[dask] memory_limit must be {MEMORY_WORDS}, "
     "got 'lots'", "dask.memory_limit", "lots"),
    ("[dask]\nmemory_limit = -1\n", f"[dask] memory_limit must be {MEMORY_WORDS}, got -1",
     "dask.memory_limit", -1),
    ("[dask]\nmemory_limit = true\n", f"[dask] memory_limit must be {MEMORY_WORDS}, "
     "got True", "dask.memory_limit", True),
    ("dask = 3\n", "[dask] must be a table of settings, got 3", "dask", 3),
])
@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_bad_dask_table_is_refused_before_the_first_stage_whatever_the_engine(
        tmp_path, capsys, table, said, field, value, engine):
    cfg = tmp_path / "c.toml"
    cfg.write_text(table)
    with pytest.raises(InputError) as exc:
        read_config_file(cfg)
    assert str(exc.value) == said and exc.value.field == field
    assert exc.value.value == value and type(exc.value.value) is type(value)
    out = tmp_path / "b"
    # --engine dask: refused as the local engine refuses it, before a cluster starts
    assert main(["build", "--out", str(out), "--items", "20", "--quick", "--engine",
                 engine, "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch build: error: {said}" in err, err
    assert "Traceback" not in err and "[ingest]" not in err and "[demo]" not in err
    assert not out.exists()


@pytest.mark.parametrize("table", [
    {}, {"min_pairs_per_part": 400},                               # the Dask build test's
    {"n_workers": 4, "memory_limit": "3GiB"},                       # the benchmark's
    {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "5.5GiB",
     "parts_per_worker": 2, "min_pairs_per_part": 20_000},         # every key
    {"memory_limit": "auto"}, {"memory_limit": "500 MB"}, {"memory_limit": 4_000_000_000},
    {"memory_limit": 0.5}, {"memory_limit": 0}, {"memory_limit": None},
])
def test_the_dask_tables_dask_takes_pass_as_they_are(table):
    from recommender.distributed import check_dask_settings

    assert read_config_file(None) == {}
    assert check_dask_settings(table) == table


def test_a_dask_table_a_local_build_does_not_use_is_said_in_the_log(tmp_path, capsys):
    """A ``[dask]`` table sizes the Dask engine only; on the local engine the build
    runs as before and says it did not use it (a user may take it to have)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[dask]\nn_workers = 3\nmemory_limit = \"2GiB\"\n")
    out = tmp_path / "b"
    assert main(["build", "--out", str(out), "--items", "20", "--quick", "--stages",
                 "ingest", "--config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert ("[dask] memory_limit, n_workers not used: engine local runs the stages in "
            "this process") in err, err
    assert Bundle.open(out).manifest["config"]["dask"] == {"n_workers": 3,
                                                           "memory_limit": "2GiB"}
    # none said without a table
    assert main(["build", "--out", str(out), "--stages", "ingest"]) == 0
    assert "[dask]" not in capsys.readouterr().err


def test_the_local_cluster_sizes_are_said_unused_on_a_schedulers_cluster():
    from recommender.distributed import dask_settings_unused

    config = {"engine": "dask", "scheduler": "tcp://host:8786",
              "dask": {"n_workers": 3, "min_pairs_per_part": 400}}
    assert dask_settings_unused(config) == (
        "[dask] n_workers not used: they size a local cluster, and the stages run on "
        "the cluster at tcp://host:8786")
    assert dask_settings_unused({**config, "scheduler": None}) is None
    assert dask_settings_unused({**config, "dask": {"min_pairs_per_part": 400}}) is None
    assert dask_settings_unused({"engine": "local", "dask": {}}) is None


def test_a_stage_commands_dask_table_is_used_and_recorded(tmp_path, capsys):
    """``mixmatch graph --config`` with a ``[dask]`` table: checked as a build's, run
    with (here: said unused, the engine being local) and recorded. Before, it was
    dropped without a word and the table the bundle recorded was used."""
    from tests.recommender.tiny_bundle import make_tiny_bundle

    root = make_tiny_bundle(tmp_path / "b")
    b = Bundle.open(root)
    b.manifest["config"] = {"source": "test", "seed": 0, "quick": True,
                            "dask": {"n_workers": 2}}
    b.save()
    f = tmp_path / "c.toml"
    f.write_text("[dask]\nn_workers = 3\n")
    assert main(["graph", "--bundle", str(root), "--config", str(f)]) == 0
    assert ("[dask] n_workers not used: engine local runs the stages in this process"
            in capsys.readouterr().err)
    assert Bundle.open(root).manifest["config"]["dask"] == {"n_workers": 3}
    f.write_text("[dask]\nn_worker = 3\n")
    manifest = (root / "manifest.json").read_text()
    assert main(["graph", "--bundle", str(root), "--config", str(f)]) == 2
    assert "graph: error: unknown [dask] setting 'n_worker'" in capsys.readouterr().err
    assert (root / "manifest.json").read_text() == manifest


@pytest.mark.parametrize("nested, said, field", [
    ({"context_params": {"epocs": 3}},
     "unknown [stages.compatibility.context_params] setting 'epocs' (allowed: batch_size, "
     "dim, dropout, epochs,", "stages.compatibility.context_params"),
    ({"context_params": {"members": "three"}},
     "[stages.compatibility.context_params] members must be a whole number, got 'three'",
     "stages.compatibility.context_params.members"),
    ({"context_params": {"dim": -1}},
     "[stages.compatibility.context_params] dim must be a whole number >= 1, got -1",
     "stages.compatibility.context_params.dim"),
    ({"context_params": {"heads": 0}},
     "[stages.compatibility.context_params] heads must be a whole number >= 1, got 0",
     "stages.compatibility.context_params.heads"),
    ({"context_params": {"dim": 30}},
     "[stages.compatibility.context_params] dim 30 is not a multiple of heads 4",
     "stages.compatibility.context_params.dim"),
    ({"context_params": {"dropout": 1.0}},
     "[stages.compatibility.context_params] dropout must be a number >= 0 and < 1, got 1.0",
     "stages.compatibility.context_params.dropout"),
    ({"context_params": {"lr": 0}},
     "[stages.compatibility.context_params] lr must be a number > 0, got 0",
     "stages.compatibility.context_params.lr"),
    ({"context_params": 3}, "[stages.compatibility] context_params must be a table, got 3",
     "stages.compatibility.context_params"),
    ({"style": {"dimm": 8}},
     "unknown [stages.compatibility.style] setting 'dimm' (allowed: batch_size, dim,",
     "stages.compatibility.style"),
    ({"style": {"epochs": 0}},
     "[stages.compatibility.style] epochs must be a whole number >= 1, got 0",
     "stages.compatibility.style.epochs"),
    ({"style": {"val_fraction": 1}},
     "[stages.compatibility.style] val_fraction must be a number > 0 and < 1, got 1",
     "stages.compatibility.style.val_fraction"),
    ({"style": "wide"}, "[stages.compatibility] style must be a table, got 'wide'",
     "stages.compatibility.style"),
    ({"ranker_params": {"folds": "five"}},
     "[stages.compatibility.ranker_params] folds must be a whole number, got 'five'",
     "stages.compatibility.ranker_params.folds"),
    ({"ranker_params": {"fold": 5}},
     "unknown [stages.compatibility.ranker_params] setting 'fold' (allowed: base,",
     "stages.compatibility.ranker_params"),
    # before: each range passed the check and failed when the ranker was cross-fitted,
    # at the end of the stage's validation: a LightGBMError (num_leaves, learning_rate,
    # min_data_in_leaf), a ValueError (num_boost_round), "the ranker needs at least 2
    # questions, got 0" (folds = 1); folds = -2 cross-fitted on 2 folds without a word
    ({"ranker_params": {"folds": 1}},
     "[stages.compatibility.ranker_params] folds must be a whole number >= 2, got 1",
     "stages.compatibility.ranker_params.folds"),
    ({"ranker_params": {"folds": -2}},
     "[stages.compatibility.ranker_params] folds must be a whole number >= 2, got -2",
     "stages.compatibility.ranker_params.folds"),
    ({"ranker_params": {"num_leaves": 1}},
     "[stages.compatibility.ranker_params] num_leaves must be a whole number >= 2, got 1",
     "stages.compatibility.ranker_params.num_leaves"),
    ({"ranker_params": {"num_boost_round": 0}},
     "[stages.compatibility.ranker_params] num_boost_round must be a whole number >= 1, "
     "got 0", "stages.compatibility.ranker_params.num_boost_round"),
    ({"ranker_params": {"learning_rate": 0}},
     "[stages.compatibility.ranker_params] learning_rate must be a number > 0, got 0",
     "stages.compatibility.ranker_params.learning_rate"),
    ({"ranker_params": {"min_data_in_leaf": -1}},
     "[stages.compatibility.ranker_params] min_data_in_leaf must be a whole number >= 0, "
     "got -1", "stages.compatibility.ranker_params.min_data_in_leaf"),
    ({"ranker_params": {"extra_draws": -1}},          # before: silently none
     "[stages.compatibility.ranker_params] extra_draws must be a whole number >= 0, got -1",
     "stages.compatibility.ranker_params.extra_draws"),
    ({"ranker_params": {"objective": "rank"}},
     "[stages.compatibility.ranker_params] unknown objective 'rank' (allowed: lambdarank, "
     "binary)", "stages.compatibility.ranker_params.objective"),
    ({"ranker_params": {"base": "logit_maen"}},
     "[stages.compatibility.ranker_params] base 'logit_maen' is not a ranker feature "
     "(allowed: p_mean, p_min,", "stages.compatibility.ranker_params.base"),
    ({"ranker_params": {"base": "own_log_count", "history": False}},
     "[stages.compatibility.ranker_params] base 'own_log_count' is not a ranker feature",
     "stages.compatibility.ranker_params.base"),
    ({"ranker_params": {"pair_columns": ["style_cos", 3]}},
     "[stages.compatibility.ranker_params] pair_columns must be a list of pair-feature "
     "names, got ['style_cos', 3]", "stages.compatibility.ranker_params.pair_columns"),
    ({"lgb_params": {"cat_smoth": 50}},
     "unknown [stages.compatibility.lgb_params] setting 'cat_smoth' (not a LightGBM "
     "parameter or alias: see https://lightgbm.readthedocs.io/",
     "stages.compatibility.lgb_params"),
    ({"lgb_params": {"cat_smooth": "x"}},
     "[stages.compatibility.lgb_params] cat_smooth must be a number, got 'x'",
     "stages.compatibility.lgb_params.cat_smooth"),
    ({"lgb_params": {"reg_lambda": True}},        # an alias of lambda_l2, a number
     "[stages.compatibility.lgb_params] reg_lambda must be a number, got True",
     "stages.compatibility.lgb_params.reg_lambda"),
    ({"lgb_params": {"learning_rate": 0.1, "eta": 0.2}},   # before: LightGBM took one
     "[stages.compatibility.lgb_params] learning_rate and eta both set LightGBM's "
     "learning_rate: give it once", "stages.compatibility.lgb_params.eta"),
    ({"lgb_params": {"min_child_samples": 5, "min_data": 5}},
     "[stages.compatibility.lgb_params] min_child_samples and min_data both set "
     "LightGBM's min_data_in_leaf", "stages.compatibility.lgb_params.min_data"),
    ({"lgb_params": {"max_bin_by_feature": {"a": 1}}},
     "[stages.compatibility.lgb_params] max_bin_by_feature must be a number, a string, "
     "true or false, or a list of them", "stages.compatibility.lgb_params.max_bin_by_feature"),
])
def test_nested_compatibility_settings_are_checked_by_their_path(nested, said, field):
    # before: context_params epocs was named only as "[stages.compatibility] unknown
    # outfit context settings", members = "three" was a ValueError and heads = 0 a
    # ZeroDivisionError traceback; dim = 0, dropout = 1.0, lr = 0, every style key and
    # value and every lgb_params key (LightGBM at verbosity -1 ignores unknown ones)
    # passed the check, failing (or ignored) only once the stage fitted, after the
    # earlier stages had run; a style that is not a table was a ValueError
    from recommender.compat.train import model_settings

    with pytest.raises(InputError) as e:
        model_settings({"source": "demo", "stages": {"compatibility": nested}})
    assert str(e.value).startswith(said), str(e.value)
    assert e.value.field == field


def test_good_nested_compatibility_settings_pass_as_they_are():
    from recommender.compat.train import model_settings

    nested = {"style": {"dim": 8, "hidden": 0, "lr": 1},
              "context_params": {"dim": 32, "heads": 2, "layers": 0, "members": 1,
                                 "dropout": 0.0, "interaction": "query"},
              "ranker_params": {"folds": 3, "pair_columns": ["style_cos"],
                                "base": "style_cos_mean", "min_data_in_leaf": 0,
                                "num_leaves": 2, "extra_draws": 0, "objective": "binary"},
              "lgb_params": {"cat_smooth": 50, "reg_lambda": 2.5, "extra_trees": True,
                             "monotone_constraints": [1, 0], "metric": "auc"}}
    settings = model_settings({"source": "demo", "stages": {"compatibility": nested}})
    assert {k: settings[k] for k in nested} == nested


@pytest.mark.parametrize("table, said", [
    ('[stages.compatibility.context_params]\nmembers = "three"\n',
     "[stages.compatibility.context_params] members must be a whole number, got 'three'"),
    ("[stages.compatibility.style]\ndimm = 8\n",
     "unknown [stages.compatibility.style] setting 'dimm' (allowed: batch_size, dim,"),
])
def test_a_bad_nested_setting_stops_a_build_before_its_first_stage(tmp_path, capsys, table,
                                                                    said):
    # before: members = "three" was a ValueError traceback (exit 1); a misspelt style
    # key passed the check, so the build ran ingest to features (on MANGO about an
    # hour) before the compatibility stage's TypeError traceback
    _build_refused(tmp_path, capsys, table, said)


@pytest.mark.parametrize("stage, table, said, field", [
    ("attributes", {"image_size": [160]},        # before: refused, but so was [0, 112]
     "[stages.attributes] image_size must be two whole numbers [height, width] >= 16, got "
     "[160]", "image_size"),
    ("attributes", {"image_size": ["a", 1]},     # before: TypeError traceback
     "[stages.attributes] image_size must be two whole numbers [height, width] >= 16, got "
     "['a', 1]", "image_size"),
    ("attributes", {"image_size": [16.5, 20]},   # before: cut to 16 without a word
     "[stages.attributes] image_size must be two whole numbers", "image_size"),
    ("attributes", {"region_size": [-1, 5], "regions": "detail"},  # before: numpy error
     "[stages.attributes] region_size must be two whole numbers [height, width] >= 8, got "
     "[-1, 5]", "region_size"),
    ("attributes", {"region_size": ["a"]},
     "[stages.attributes] region_size must be two whole numbers", "region_size"),
    ("attributes", {"region_size": -1}, "[stages.attributes] region_size must be a list, "
                                        "got -1", "region_size"),
    ("attributes", {"heads": [1]},               # before: KeyError traceback
     "[stages.attributes] heads must be a list of distinct catalogue column names (leave it "
     "out for the default heads), got [1]", "heads"),
    ("attributes", {"heads": []},                # before: trained the default heads
     "[stages.attributes] heads must be a list of distinct catalogue column names", "heads"),
    ("attributes", {"heads": ["colour", "colour"]},
     "[stages.attributes] heads must be a list of distinct catalogue column names", "heads"),
    ("attributes", {"group_sep": 5},             # before: TypeError traceback
     "[stages.attributes] group_sep must be a string (the separator after an item id's "
     "group, \"-\" for MANGO's model code; \"\" for none), got 5", "group_sep"),
    ("attributes", {"cache": ""},   # before: decoded images cached in the working folder
     "[stages.attributes] cache must name a path (leave it out for the default), got ''",
     "cache"),
    ("attributes", {"keypoints_csv": ""},
     "[stages.attributes] keypoints_csv must name a path", "keypoints_csv"),
    ("keypoints", {"image_size": [64]},          # before: IndexError traceback
     "[stages.keypoints] image_size must be two whole numbers [height, width] >= 16, got "
     "[64]", "image_size"),
    ("keypoints", {"image_size": [0, 48]},       # before: torch error once training
     "[stages.keypoints] image_size must be two whole numbers [height, width] >= 16, got "
     "[0, 48]", "image_size"),
    ("keypoints", {"image_size": ["a", 1]},      # before: ValueError from int('a')
     "[stages.keypoints] image_size must be two whole numbers", "image_size"),
    ("keypoints", {"csv": ""},                   # before: "<bundle> missing" after training
     "[stages.keypoints] csv must name a keypoint CSV file (relative to the bundle), got ''",
     "csv"),
])
def test_list_and_string_settings_are_checked_inside_before_the_first_stage(stage, table,
                                                                            said, field):
    # before: every one of these passed the check (kind only, or none) and failed, or
    # silently did something else, once its stage ran, after the stages before it
    from features.attributes.train import checked_params as attribute_params
    from features.keypoints.train import checked_params as keypoint_params

    check = attribute_params if stage == "attributes" else keypoint_params
    with pytest.raises(InputError) as e:
        check(BuildContext(bundle=None, config={"source": "demo", "quick": True,
                                                "stages": {stage: table}}))
    assert str(e.value).startswith(said), str(e.value)
    assert e.value.field == f"stages.{stage}.{field}"



@pytest.mark.parametrize("stage, table, said", [
    ("keypoints", {"lr": 0}, "[stages.keypoints] lr must be a number > 0, got 0"),
    ("keypoints", {"sigma": 0}, "[stages.keypoints] sigma must be a number > 0, got 0"),
    ("keypoints", {"weight_decay": -0.1},
     "[stages.keypoints] weight_decay must be a number >= 0, got -0.1"),
    ("keypoints", {"coord_weight": -1},
     "[stages.keypoints] coord_weight must be a number >= 0, got -1"),
    ("keypoints", {"time_budget_s": 0},
     "[stages.keypoints] time_budget_s must be a number > 0, or \"none\" for no time "
     "budget, got 0"),
    ("attributes", {"lr": 0}, "[stages.attributes] lr must be a number > 0, got 0"),
    ("attributes", {"weight_decay": -0.05},
     "[stages.attributes] weight_decay must be a number >= 0, got -0.05"),
    ("attributes", {"warmup_epochs": -1},
     "[stages.attributes] warmup_epochs must be a number >= 0, got -1"),
    ("attributes", {"sampling_power": -0.5},
     "[stages.attributes] sampling_power must be a number >= 0, got -0.5"),
    ("attributes", {"embed_dim": 0},
     "[stages.attributes] embed_dim must be a whole number >= 1, got 0"),
    ("attributes", {"time_budget_s": 0},
     "[stages.attributes] time_budget_s must be a number > 0, or \"none\" for no time "
     "budget, got 0"),
])
def test_out_of_range_numbers_are_refused_before_the_first_stage(stage, table, said):
    # before: each passed the check (kind only) and failed inside training (AdamW's
    # ValueError for a negative weight_decay) or quietly misbehaved: lr = 0 saved the
    # random initialisation, sigma = 0 trained on all-zero target maps, a negative
    # coord_weight rewarded points far from the truth, time_budget_s = 0 trained with
    # no budget, embed_dim = 0 built the backbone's width
    from features.attributes.train import checked_params as attribute_params
    from features.keypoints.train import checked_params as keypoint_params

    check = attribute_params if stage == "attributes" else keypoint_params
    with pytest.raises(InputError) as e:
        check(BuildContext(bundle=None, config={"source": "demo", "quick": True,
                                                "stages": {stage: table}}))
    assert str(e.value) == said
    assert e.value.field == f"stages.{stage}.{next(iter(table))}"


@pytest.mark.parametrize("name, text", [
    ("c.toml", '[stages.keypoints]\ntime_budget_s = "none"\n'
               '[stages.attributes]\ntime_budget_s = "none"\n'),
    ("c.json", '{"stages": {"keypoints": {"time_budget_s": null},'
               ' "attributes": {"time_budget_s": null}}}'),
    ("c.yaml", "stages:\n  keypoints:\n    time_budget_s: null\n"
               "  attributes:\n    time_budget_s: ~\n"),
])
def test_a_config_file_turns_the_stages_time_budgets_off(tmp_path, name, text):
    # before: "none" and null were both refused ("time_budget_s must be a number"), so
    # the keypoints stage's 300 CPU seconds and MANGO's 1,460 s for the attribute
    # network could not be turned off from a config file (TOML has no null)
    from features.attributes.train import checked_params as attribute_params
    from features.keypoints.train import checked_params as keypoint_params

    def params(stages):
        ctx = BuildContext(bundle=None, config={
            "source": "mango", "quick": False,
            "stages": resolve_stage_config("mango", False, stages)})
        return attribute_params(ctx), keypoint_params(ctx)

    attributes, keypoints = params({})
    assert (attributes["time_budget_s"], keypoints["time_budget_s"]) == (1460, 300)
    f = tmp_path / name
    f.write_text(text)
    attributes, keypoints = params(read_config_file(f)["stages"])
    assert attributes["time_budget_s"] is None and keypoints["time_budget_s"] is None
    assert attributes["epochs"] == 47        # the rest of the recipe is kept


@pytest.mark.parametrize("stage", ["keypoints", "attributes"])
@pytest.mark.parametrize("value", ["off", "None", False, True, -5, float("nan"),
                                   float("inf"), [300]])
def test_a_time_budget_neither_a_positive_number_nor_none_is_refused(stage, value):
    from features.attributes.train import checked_params as attribute_params
    from features.keypoints.train import checked_params as keypoint_params

    check = attribute_params if stage == "attributes" else keypoint_params
    with pytest.raises(InputError) as e:
        check(BuildContext(bundle=None, config={"source": "demo", "quick": True,
                                                "stages": {stage: {"time_budget_s": value}}}))
    assert str(e.value) == (f"[stages.{stage}] time_budget_s must be a number > 0, or "
                            f"\"none\" for no time budget, got {value!r}")
    assert e.value.field == f"stages.{stage}.time_budget_s"


def test_a_misspelt_no_budget_stops_a_build_before_its_first_stage(tmp_path, capsys):
    _build_refused(tmp_path, capsys, '[stages.keypoints]\ntime_budget_s = "off"\n',
                   "[stages.keypoints] time_budget_s must be a number > 0, or \"none\" "
                   "for no time budget, got 'off'")


def test_an_out_of_range_number_stops_a_build_before_its_first_stage(tmp_path, capsys):
    _build_refused(tmp_path, capsys, "[stages.keypoints]\nsigma = 0\n",
                   "[stages.keypoints] sigma must be a number > 0, got 0")

@pytest.mark.parametrize("stage, table", [
    ("attributes", {"image_size": [16, 16], "region_size": [8, 12], "group_sep": "",
                    "heads": ["colour", "subcategory"], "cache": "c", "keypoints_csv": "k"}),
    ("keypoints", {"image_size": [16, 16], "csv": "k.csv"}),
])
def test_the_smallest_sizes_and_an_empty_group_sep_pass(stage, table):
    from features.attributes.train import checked_params as attribute_params
    from features.keypoints.train import checked_params as keypoint_params

    check = attribute_params if stage == "attributes" else keypoint_params
    params = check(BuildContext(bundle=None, config={"source": "demo", "quick": True,
                                                     "stages": {stage: table}}))
    assert list(params["image_size"]) == [16, 16]


@pytest.mark.parametrize("table, said", [
    ('[stages.attributes]\nimage_size = ["a", 1]\n',
     "[stages.attributes] image_size must be two whole numbers [height, width] >= 16"),
    ("[stages.attributes]\nregions = \"detail\"\nregion_size = [-1, 5]\n",
     "[stages.attributes] region_size must be two whole numbers [height, width] >= 8"),
    ("[stages.keypoints]\nimage_size = [64]\n",
     "[stages.keypoints] image_size must be two whole numbers [height, width] >= 16"),
])
def test_a_bad_size_stops_a_build_before_its_first_stage(tmp_path, capsys, table, said):
    # before: a traceback (exit 1) once the stage ran: the attribute network's after
    # ingest, split and the images' decoding, the keypoint detector's after the
    # attribute network had trained (on MANGO about half an hour)
    _build_refused(tmp_path, capsys, table, said)


def test_heads_naming_no_catalogue_column_are_refused_before_the_stage(split_bundle,
                                                                       tmp_path, capsys):
    # before: a pandas KeyError traceback (exit 1) once the stage had started and
    # decoded the images, leaving the stage marked as unfinished; which columns the
    # catalogue has is known once it is ingested, so the stage refuses it before it
    # starts (after ingest and split: seconds on MANGO)
    err = _attributes_stage_refused(
        split_bundle, tmp_path, capsys, 'heads = ["colour", "nonexistent_field"]',
        "[stages.attributes] heads names 'nonexistent_field', not a column of the "
        "catalogue (allowed: category, subcategory, colour,")
    assert "item_id" not in err.split("allowed:")[1]


def _attributes_stage_refused(split_bundle, tmp_path, capsys, setting: str, said: str):
    """``mixmatch build --stages attributes`` on ``split_bundle`` with ``setting`` in its
    ``[stages.attributes]``: exit 2 saying ``said``, before the stage starts (its log
    line absent, the manifest as it was); returns the error output."""
    manifest = (split_bundle / "manifest.json").read_text()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[stages.attributes]\n{setting}\n")
    capsys.readouterr()
    assert main(["build", "--out", str(split_bundle), "--items", "20", "--quick",
                 "--stages", "attributes", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch build: error: {said}" in err, err
    assert "Traceback" not in err and "[attributes] " not in err, err
    assert (split_bundle / "manifest.json").read_text() == manifest
    return err


def test_a_yaml_config_is_read_and_another_suffix_refused(tmp_path, capsys):
    """Before: every file not ending in .toml was parsed as JSON, so a YAML config (as
    the column-mapping and serving configs take) was "is not valid: Expecting value:
    line 1 column 1 (char 0)", and c.cfg holding TOML the same."""
    for name in ("c.yaml", "c.YML"):
        f = tmp_path / name
        f.write_text("stages:\n  graph:\n    k_visual: 5\n  split:\n    test_fraction: 0.0\n")
        assert read_config_file(f) == {"stages": {"graph": {"k_visual": 5},
                                                  "split": {"test_fraction": 0.0}}}
    out = tmp_path / "b"
    assert main(["build", "--out", str(out), "--items", "20", "--quick", "--stages",
                 "ingest", "--config", str(tmp_path / "c.yaml")]) == 0
    assert Bundle.open(out).manifest["config"]["stages"]["graph"] == {"k_visual": 5}
    f = tmp_path / "c.yaml"                       # refused as TOML and JSON are
    f.write_text("stages:\n  graph:\n    k_visual: 5\n    k_visual: 8\n")
    with pytest.raises(InputError, match=f"config file {f} is not valid: .*duplicate key "
                                         "'k_visual'"):
        read_config_file(f)
    f.write_text("stages: [\n")
    with pytest.raises(InputError, match=f"config file {f} is not valid: "):
        read_config_file(f)
    f = tmp_path / "c.cfg"
    f.write_text("[stages.graph]\nk_visual = 5\n")
    capsys.readouterr()
    assert main(["build", "--out", str(tmp_path / "b2"), "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"config file {f} must end in .toml, .json, .yaml, .yml" in err, err
    assert "Traceback" not in err and not (tmp_path / "b2").exists()


def test_a_yaml_config_reads_an_exponent_without_a_dot_as_a_number(tmp_path):
    """Before: PyYAML (YAML 1.1) read ``lr: 1e-3`` as the string "1e-3", and the stage
    check refused it ("[stages.attributes] lr must be a number, got '1e-3'"), while
    the same setting in TOML or JSON was read as the number it is."""
    from features.attributes.train import checked_params

    texts = {"c.yaml": "stages:\n  attributes:\n    lr: 1e-3\n    weight_decay: 5E-5\n",
             "c.json": '{"stages": {"attributes": {"lr": 1e-3, "weight_decay": 5E-5}}}',
             "c.toml": "[stages.attributes]\nlr = 1e-3\nweight_decay = 5E-5\n"}
    read = []
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
        read.append(read_config_file(tmp_path / name))
    assert read[0] == read[1] == read[2] == {
        "stages": {"attributes": {"lr": 0.001, "weight_decay": 5e-05}}}
    params = checked_params(BuildContext(bundle=None, config={
        "source": "demo", "quick": True, "stages": read[0]["stages"]}))
    assert (params["lr"], params["weight_decay"]) == (0.001, 5e-05)


def test_a_group_sep_no_item_id_contains_stops_a_build_before_the_stage(split_bundle,
                                                                       tmp_path, capsys):
    # before: the split grouped nothing without a word (the demo's ids have no "_"),
    # so colour variants of one garment could straddle train and test and the test
    # accuracy the manifest records was inflated; refused once the catalogue exists,
    # before the stage starts
    err = _attributes_stage_refused(
        split_bundle, tmp_path, capsys, 'group_sep = "_"',
        "[stages.attributes] group_sep '_' is in none of the catalogue's item ids (e.g. 'D")
    assert 'or "" for no grouping' in err


# -- equivalent spellings of a setting: recorded one way, so no stage reruns for them --

@pytest.fixture(scope="module")
def empty_bundle(tmp_path_factory):
    """A bundle with nothing built: the settings part of every stage's inputs."""
    return Bundle.create(tmp_path_factory.mktemp("spellings") / "b", source="demo",
                         image_root=None)


def _inputs_hash(bundle, stage, table, *, source="demo", quick=True):
    """The inputs hash of ``stage`` (as the pipeline hashes it) under ``table``."""
    from recommender.bundle import json_hash
    from recommender.pipeline import STAGES, load_stage_module

    module = load_stage_module(next(s for s in STAGES if s.name == stage))
    ctx = BuildContext(bundle=bundle, config={
        "source": source, "quick": quick, "seed": 0,
        "stages": resolve_stage_config(source, quick, {stage: table})})
    return json_hash({"stage": stage, "inputs": module.stage_inputs(ctx)})


def _style(**more):
    from recommender.compat.train import STYLE

    return {**STYLE, **more}


#: (stage, quick, spellings that train alike). Before, every one but the first of each
#: group changed the stage's inputs hash (all but the key order and the list/tuple),
#: so the stage ran again: on MANGO the attribute network 27 minutes, the
#: compatibility stage 26.
EQUIVALENT = [
    ("attributes", True, [{"label_smoothing": 0, "time_budget_s": 100},
                          {"label_smoothing": 0.0, "time_budget_s": 100.0},
                          {"time_budget_s": 100, "label_smoothing": 0}]),
    ("attributes", True, [{}, {"time_budget_s": "none"}, {"time_budget_s": None},
                          {"regions": "auto"}, {"regions": True}, {"dropout": 0.2},
                          {"preset": "tiny", "image_size": (64, 48), "epochs": 2,
                           "crop": "frame", "descriptors": False,
                           "keypoints_csv": "source/fashionai/keypoints.csv",
                           "region_size": [32, 32], "warmup_epochs": 1}]),
    ("attributes", True, [{"regions": "none"}, {"regions": "off"}, {"regions": False}]),
    ("attributes", True, [{"regions": "detail"},
                          {"regions": "detail", "region_size": [64, 64]}]),
    ("attributes", False, [{}, {"preset": "base", "image_size": [160, 112],
                                "batch_size": 64, "num_threads": 2, "tta_zoom": 1.0}]),
    ("keypoints", True, [{"sigma": 2}, {"sigma": 2.0}, {"sigma": 2, "decoder": "local"}]),
    ("keypoints", True, [{}, {"time_budget_s": "none"}, {"time_budget_s": None},
                         {"image_size": (64, 48)}, {"image_size": [64, 48]},
                         {"csv": "source/fashionai/keypoints.csv", "coord_weight": 0.5}]),
    ("keypoints", False, [{"time_budget_s": "none"}, {"time_budget_s": None}]),
    ("keypoints", False, [{}, {"time_budget_s": 300.0, "budget_clock": "cpu",
                               "epochs": 60}]),
    ("compatibility", True, [{"learning_rate": 1}, {"learning_rate": 1.0}]),
    ("compatibility", True, [{}, {"learning_rate": 0.1}, {"negatives": "auto"},
                             {"context": "auto", "fitb_ranker": "auto", "lgb_params": {}},
                             {"ranker_params": {}}, {"ranker_params": {"folds": 5}},
                             {"style": _style(lr=0.003)},
                             {"style": _style(weight_decay=1e-5)},
                             {"context_params": {"num_threads": 2, "dropout": 0.1}},
                             {"lgb_params": {"lambda_l2": 1, "objective": "binary"}},
                             {"groups": ["metadata", "colour", "shape", "attributes",
                                         "embedding", "cooccurrence", "style"]}]),
    ("compatibility", True, [{"style": {"dim": 8, "lr": 1}},
                             {"style": {"lr": 1.0, "dim": 8, "hidden": 64}}]),
    # LightGBM aliases under their parameter's name; at the model's own value left out
    ("compatibility", True, [{}, {"lgb_params": {"eta": 0.1}},
                             {"lgb_params": {"shrinkage_rate": 0.1, "colsample_bytree": 0.8,
                                             "reg_lambda": 1, "random_state": 0,
                                             "num_leaf": 15, "min_child_samples": 10}}]),
    ("compatibility", True, [{"lgb_params": {"lambda_l1": 0.5, "num_leaves": 31,
                                             "feature_fraction": 0.5, "seed": 3}},
                             {"lgb_params": {"reg_alpha": 0.5, "max_leaves": 31,
                                             "sub_feature": 0.5, "random_state": 3}},
                             {"lgb_params": {"random_seed": 3, "l1_regularization": 0.5,
                                             "colsample_bytree": 0.5, "num_leaf": 31.0}}]),
    ("attributes", True, [{}, {"group_sep": ""}]),     # demo: no grouping either way
    ("compatibility", True, [{"context_params": {"dropout": 0, "members": 5}},
                             {"context_params": {"members": 5, "dropout": 0.0,
                                                 "num_threads": 1, "seed": 0}}]),
]


@pytest.mark.parametrize("stage, quick, spellings", EQUIVALENT)
def test_equivalent_spellings_of_a_setting_hash_alike(empty_bundle, stage, quick,
                                                      spellings):
    hashes = [_inputs_hash(empty_bundle, stage, t, quick=quick) for t in spellings]
    assert len(set(hashes)) == 1, list(zip(spellings, hashes))


#: (stage, quick, table, another that trains otherwise): each must still rerun.
DIFFERENT = [
    ("attributes", True, {"label_smoothing": 0}, {"label_smoothing": 0.5}),
    ("attributes", True, {"time_budget_s": "none"}, {"time_budget_s": 100}),
    ("attributes", True, {"regions": "none"}, {}),
    ("attributes", True, {"regions": "detail"}, {"regions": "detail",
                                                 "region_size": [32, 32]}),
    ("attributes", True, {}, {"preset": "base"}),
    ("keypoints", True, {"sigma": 2}, {"sigma": 3}),
    ("keypoints", False, {"time_budget_s": "none"}, {}),        # no budget against 300
    ("compatibility", True, {"learning_rate": 1}, {"learning_rate": 0.5}),
    ("compatibility", True, {}, {"learning_rate": 0.05}),        # quick's is 0.1
    ("compatibility", True, {}, {"style": {"dim": 16}}),        # the class's, not STYLE's
    ("compatibility", True, {}, {"style": {}}),
    ("compatibility", True, {}, {"context_params": {"num_threads": 1}}),
    ("compatibility", True, {}, {"ranker_params": {"folds": 3}}),
    ("compatibility", True, {}, {"lgb_params": {"lambda_l2": 2}}),
    ("compatibility", True, {}, {"negatives": "random"}),
    ("compatibility", True, {}, {"lgb_params": {"eta": 0.2}}),
    ("compatibility", True, {"lgb_params": {"reg_alpha": 0.5}},
     {"lgb_params": {"reg_lambda": 0.5}}),
    ("attributes", True, {}, {"group_sep": "D"}),
]


@pytest.mark.parametrize("stage, quick, one, other", DIFFERENT)
def test_a_genuinely_different_setting_still_changes_the_hash(empty_bundle, stage, quick,
                                                               one, other):
    assert (_inputs_hash(empty_bundle, stage, one, quick=quick)
            != _inputs_hash(empty_bundle, stage, other, quick=quick))


def test_the_default_heads_written_out_are_recorded_as_left_out(split_bundle):
    """``heads`` written as the heads the stage picks from the catalogue without it, in
    their order, trains the same network: before, its inputs hash differed from the
    table without it and the stage ran again (on MANGO 27 minutes). Heads in another
    order are another network (each head's layer is drawn from the seeded generator
    in turn, and the taxonomy keeps the order), so they, and fewer heads, still do."""
    from features.attributes.train import _default_heads, catalogue_default_heads

    b = Bundle.open(split_bundle)
    heads = catalogue_default_heads(b)
    assert heads == _default_heads(pd.read_parquet(b.path("catalog.parquet")))
    assert len(heads) >= 3, heads
    left_out = _inputs_hash(b, "attributes", {})
    assert _inputs_hash(b, "attributes", {"heads": heads}) == left_out
    assert _inputs_hash(b, "attributes", {"heads": heads, "dropout": 0.2}) == left_out
    others = [heads[::-1], heads[1:] + heads[:1], heads[:-1]]
    hashes = {_inputs_hash(b, "attributes", {"heads": h}) for h in others}
    assert len(hashes) == len(others) and left_out not in hashes
    # no catalogue yet (a dry run before the ingest): recorded as written
    assert catalogue_default_heads(Bundle.create(split_bundle.parent / "none",
                                                 source="demo", image_root=None)) is None


def test_a_group_sep_equal_to_the_sources_own_is_recorded_as_left_out(empty_bundle):
    """``group_sep = ""`` groups nothing, as leaving it out does on every source but
    MANGO (the same split, item for item), so it reruns nothing there; MANGO's own
    "-" left out or written is one setting as before, and ``""`` is another split."""
    from features.attributes.data import grouped_split

    ids = [f"{m}-{c}" for m in range(30) for c in range(3)]
    assert grouped_split(ids, seed=3, group_sep="").equals(
        grouped_split(ids, seed=3, group_sep=None))
    assert not grouped_split(ids, seed=3, group_sep="-").equals(
        grouped_split(ids, seed=3, group_sep=""))
    for quick in (True, False):
        def rec(table, source):
            return _inputs_hash(empty_bundle, "attributes", table, source=source,
                                quick=quick)

        assert rec({"group_sep": ""}, "demo") == rec({}, "demo")
        assert rec({"group_sep": ""}, "csv") == rec({}, "csv")
        assert rec({"group_sep": "-"}, "mango") == rec({}, "mango")
        assert rec({"group_sep": ""}, "mango") != rec({}, "mango")
        assert rec({"group_sep": "-"}, "demo") != rec({}, "demo")


def _canonical_configs():
    from api.cli import UP_PROFILE

    recipe = tomllib.loads(RECIPE.read_text())["stages"]
    return [
        ("demo", True, {}), ("demo", False, {}), ("mango", False, {}),
        ("mango", True, {}), ("mango", False, recipe), ("demo", False, UP_PROFILE),
        ("mango", False, {"attributes": {"epochs": 10, "time_budget_s": "none"}}),
        ("demo", False, {"compatibility": {"context_params": {"num_threads": 2,
                                                              "members": 5}}}),
        ("demo", True, {"attributes": {"label_smoothing": 0, "time_budget_s": 100,
                                       "regions": "none"},
                        "keypoints": {"sigma": 2, "epochs": 3, "csv": "k.csv"},
                        "compatibility": {"learning_rate": 1,
                                          "style": {"lr": 1, "dim": 8},
                                          "context_params": {"dropout": 0},
                                          "ranker_params": {"learning_rate": 1},
                                          "lgb_params": {"cat_smooth": 50}}}),
        # LightGBM's own names, heads and a grouping of the user's: kept as they were
        ("demo", False, {"attributes": {"heads": ["colour", "subcategory"],
                                        "group_sep": "_"},
                         "compatibility": {"lgb_params": {
                             "lambda_l1": 0.5, "feature_fraction": 0.6, "num_leaves": 31,
                             "min_data_in_leaf": 20, "seed": 3, "extra_trees": True}}}),
    ]


@pytest.mark.parametrize("source, quick, stages", _canonical_configs())
def test_settings_spelled_one_way_already_hash_as_before(empty_bundle, source, quick,
                                                         stages):
    """The inputs of every stage under the configs bundles are built with (no config,
    MANGO's recipe, ``mixmatch up``'s, the README's) are the ones the code before
    recorded, under every earlier spelling (:data:`features.settings.SPELLINGS`: each
    table as written, then one spelling per value), so those bundles stay up to date
    without the fallback to the old hash."""
    from features.settings import SPELLING, settings_spelled

    for stage in ("attributes", "keypoints", "compatibility"):
        table = stages.get(stage, {})
        now = _inputs_hash(empty_bundle, stage, table, source=source, quick=quick)
        for spelling in range(SPELLING):
            with settings_spelled(spelling):
                before = _inputs_hash(empty_bundle, stage, table, source=source,
                                      quick=quick)
            assert now == before, (stage, table, spelling)


SPELLINGS = {
    # what the bundle below was built on
    "built.toml": ('[stages.attributes]\nlabel_smoothing = 0\ntime_budget_s = 100\n'
                   '[stages.keypoints]\nsigma = 2\n'
                   '[stages.compatibility]\nlearning_rate = 1\n'
                   'style = {weight_decay = 0, dim = 8}\ncontext_params = {dropout = 0}\n'
                   'ranker_params = {learning_rate = 1}\n'),
    "floats.json": ('{"stages": {"attributes": {"label_smoothing": 0.0, "time_budget_s": '
                    '100.0}, "keypoints": {"sigma": 2.0, "time_budget_s": null}, '
                    '"compatibility": {"learning_rate": 1.0, "style": {"weight_decay": '
                    '0.0, "dim": 8}, "context_params": {"dropout": 0.0}, '
                    '"ranker_params": {"learning_rate": 1.0}}}}'),
    "floats.yaml": ("stages:\n  compatibility:\n    ranker_params: {learning_rate: 1.0}\n"
                    "    context_params: {dropout: 0.0}\n"
                    "    style: {dim: 8, weight_decay: 0.0}\n    learning_rate: 1.0\n"
                    "  keypoints: {time_budget_s: ~, sigma: 2.0}\n"
                    "  attributes: {time_budget_s: 100.0, label_smoothing: 0.0}\n"),
    "defaults.toml": ('[stages.attributes]\nlabel_smoothing = 0\ntime_budget_s = 100\n'
                      'dropout = 0.2\ncrop = "frame"\nregions = true\n'
                      'descriptors = false\n'
                      '[stages.keypoints]\nsigma = 2\ntime_budget_s = "none"\n'
                      'decoder = "local"\ncsv = "source/fashionai/keypoints.csv"\n'
                      '[stages.compatibility]\nlearning_rate = 1\nnegatives = "auto"\n'
                      'style = {weight_decay = 0, dim = 8, hidden = 64}\n'
                      'context_params = {dropout = 0, members = 3}\n'
                      'ranker_params = {learning_rate = 1, folds = 5}\nlgb_params = {}\n'
                      '[stages.split]\ntest_fraction = 0.2\nseed = 0\n'),
}


@pytest.mark.slow
def test_a_bundle_built_before_stays_up_to_date_under_every_spelling(tmp_path, capsys):
    """A quick demo bundle built by the code before (settings recorded as written) on
    a config spelled one way; then the same settings in TOML, JSON and YAML, with
    floats for whole numbers, null for "none", and every default stated: a dry run
    says every stage is up to date. Before, the attribute, keypoint and
    compatibility stages would all run again ("inputs hash differs", or
    ``stage.dropout (absent) -> 0.2``). A different value still reruns its stage."""
    from features.settings import AS_WRITTEN, settings_spelled
    from recommender.build import plan_build

    for name, text in SPELLINGS.items():
        (tmp_path / name).write_text(text)
    out = tmp_path / "b"
    # the stages whose settings change spelling (and those they read); the features
    # and graph stages recorded their settings one way before
    stages = ["ingest", "split", "attributes", "keypoints", "compatibility"]
    run = dict(source="demo", items=60, seed=0, quick=True, stages=stages)
    with settings_spelled(AS_WRITTEN):
        build_bundle(out, **run, log=lambda m: None,
                     overrides=read_config_file(tmp_path / "built.toml"))
    for name in SPELLINGS:
        plan = plan_build(out, **run, overrides=read_config_file(tmp_path / name))
        assert [(s, w) for s, w in plan if w != "up to date" and s != "demo"] == [], name
    # the same list as a tuple, from Python
    overrides = read_config_file(tmp_path / "built.toml")
    overrides["stages"]["keypoints"]["image_size"] = (64, 48)
    assert all(w == "up to date" for s, w in plan_build(out, **run, overrides=overrides)
               if s != "demo")
    capsys.readouterr()
    other = tmp_path / "other.toml"
    other.write_text(SPELLINGS["built.toml"].replace("label_smoothing = 0",
                                                     "label_smoothing = 0.05")
                     .replace("learning_rate = 1\n", "learning_rate = 0.5\n"))
    assert main(["build", "--out", str(out), "--items", "60", "--quick", "--config",
                 str(other), "--stages", ",".join(stages), "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert ("  attributes     would run: inputs changed since it ran: "
            "stage.label_smoothing 0 -> 0.05\n") in said, said
    assert ("  keypoints      up to date now; would run after attributes if that changes "
            "its inputs\n") in said, said     # it reads the attribute stage's split
    assert ("  compatibility  would run: inputs changed since it ran: "
            "settings.learning_rate 1 -> 0.5\n") in said, said


@pytest.mark.slow
def test_a_bundle_built_on_aliases_and_stated_defaults_stays_up_to_date(tmp_path,
                                                                        monkeypatch):
    """A quick demo bundle built by the code before (settings one spelling per value:
    :data:`features.settings.ONE_SPELLING`) on the catalogue's default heads written
    out, ``group_sep = ""`` and LightGBM aliases: its config finds it up to date, a
    build records it anew without running a stage, and from then on the heads left
    out, no ``group_sep`` and LightGBM's own names are current too. Before, those
    reran the attribute network and the compatibility model (on MANGO 27 and 26-48
    minutes). Heads in another order still rerun, and so does a record made on an
    alias LightGBM ignored then (``eta`` beside the model's own ``learning_rate``)."""
    from features.attributes.train import catalogue_default_heads
    from features.settings import ONE_SPELLING, settings_spelled
    from recommender.build import plan_build
    from recommender.compat import train as compat_train

    out = tmp_path / "b"
    run = dict(source="demo", items=60, seed=0, quick=True)
    stages = ["ingest", "split", "attributes", "compatibility"]
    build_bundle(out, **run, stages=["ingest"], log=lambda m: None)
    heads = catalogue_default_heads(Bundle.open(out))

    def config(attributes, lgb_params):
        return {"stages": {"attributes": attributes,
                           "compatibility": {"lgb_params": lgb_params}}}

    def plan(overrides):
        return {s: w for s, w in plan_build(out, **run, stages=stages, overrides=overrides)
                if s != "demo"}

    # quick's own min_data_in_leaf is 10 and feature_fraction 0.8: aliases at those
    built = config({"heads": heads, "group_sep": ""},
                   {"reg_alpha": 0.5, "colsample_bytree": 0.8, "min_child_samples": 10})
    with settings_spelled(ONE_SPELLING):
        build_bundle(out, **run, stages=stages, log=lambda m: None, overrides=built)
    assert set(plan(built).values()) == {"up to date"}, plan(built)
    logs = []
    build_bundle(out, **run, stages=stages, log=logs.append, overrides=built)
    assert [m for m in logs if "running it" in m] == [], logs
    same = config({"dropout": 0.2}, {"lambda_l1": 0.5, "feature_fraction": 0.8})
    assert set(plan(same).values()) == {"up to date"}, plan(same)
    other = plan(config({"heads": heads[::-1]}, {"lambda_l1": 0.5}))
    assert other["attributes"].startswith("would run: inputs changed since it ran: "), other
    assert 'stage.heads (absent) -> ["sleeve_length_labels", ' in other["attributes"], other
    assert other["compatibility"].startswith("up to date now; would run after "
                                             "attributes"), other
    # LightGBM took the model's learning_rate (quick: 0.1) over eta then; now eta is it.
    # The code before recorded eta as ONE_SPELLING does, without asking whether it
    # was ignored (which makes the record of it not current now)
    eta = config({}, {"eta": 0.3})
    with settings_spelled(ONE_SPELLING), monkeypatch.context() as before:
        before.setattr(compat_train, "_ignored_then", lambda lgb_params, own: None)
        build_bundle(out, **run, stages=["compatibility"], log=lambda m: None,
                     overrides=eta)
    assert plan(eta)["compatibility"] == ("would run: inputs changed since it ran: "
                                          "settings.lgb_params.eta 0.3 -> (absent); "
                                          "settings.lgb_params.learning_rate (absent) "
                                          "-> 0.3"), plan(eta)
