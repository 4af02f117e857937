"""What a build runs with: a source's own stage defaults under the user's config, and
config files refused by name when they are not tables of stage tables."""
import tomllib
from pathlib import Path

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


def test_a_json_config_must_be_an_object(tmp_path):
    f = tmp_path / "c.json"
    f.write_text("[1, 2]")
    with pytest.raises(InputError, match="must hold a table of settings, got list"):
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
