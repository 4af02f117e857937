import json

import pytest

from features.exceptions import BundleError, InputError, NotFoundError, StageNotAvailable
from recommender import pipeline
from recommender.bundle import BUNDLE_SCHEMA_VERSION, Bundle
from recommender.pipeline import BuildContext, Stage, run_stages
from tests.recommender import counting_stage


@pytest.fixture
def counting(monkeypatch):
    counting_stage.RUNS.clear()
    stage = Stage("ingest", "tests.recommender.counting_stage", 0, "count")
    monkeypatch.setattr(pipeline, "STAGES", (stage,))
    return counting_stage.RUNS


def test_finished_stage_is_skipped_on_same_inputs(tmp_path, counting):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    ctx = BuildContext(bundle=b, config={"value": 1}, log=lambda m: None)
    run_stages(ctx)
    run_stages(ctx)
    assert counting == [1]
    assert Bundle.open(tmp_path / "b").manifest["stages"]["ingest"]["metrics"] == {"value": 1}


def test_changed_inputs_or_lost_output_rerun(tmp_path, counting):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    run_stages(BuildContext(bundle=b, config={"value": 2}, log=lambda m: None))
    b.path("out.txt").unlink()
    run_stages(BuildContext(bundle=b, config={"value": 2}, log=lambda m: None))
    run_stages(BuildContext(bundle=b, config={"value": 2}, force=True, log=lambda m: None))
    assert counting == [1, 2, 2, 2]


def test_bundle_version_changes_with_outputs(tmp_path, counting):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    v1 = Bundle.open(b.root).version
    run_stages(BuildContext(bundle=b, config={"value": 2}, log=lambda m: None))
    assert Bundle.open(b.root).version != v1


def test_missing_stage_module_says_which_issue(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "STAGES", (Stage("graph", "recommender.no_such_mod", 5, "g"),))
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    with pytest.raises(StageNotAvailable, match=r"issue #5"):
        run_stages(BuildContext(bundle=b, config={}, log=lambda m: None))


def test_unknown_stage_name_lists_allowed(tmp_path):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    with pytest.raises(InputError, match="allowed: ingest, split"):
        run_stages(BuildContext(bundle=b, config={}, log=lambda m: None), ["nope"])


def test_bundle_open_checks_schema(tmp_path):
    with pytest.raises(NotFoundError, match="no bundle"):
        Bundle.open(tmp_path)
    b = Bundle.create(tmp_path / "b", source="demo", image_root=tmp_path)
    m = json.loads((b.root / "manifest.json").read_text())
    assert m["schema_version"] == BUNDLE_SCHEMA_VERSION and m["versions"]["python"]
    m["schema_version"] = 999
    (b.root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="schema_version 999"):
        Bundle.open(b.root)


@pytest.mark.parametrize("command", ["features", "train", "graph"])
def test_single_stage_commands_keep_the_bundles_seed(tmp_path, monkeypatch, command):
    # before: --seed defaulted to 0, so `mixmatch graph --bundle B` on a bundle built
    # with --seed 3 rebuilt its graph (and `train` its compatibility model) with seed 0
    from api.cli import main
    from recommender import build

    seen = []
    monkeypatch.setattr(build, "run_stages", lambda ctx, stages: seen.append(
        ctx.config["seed"]) or {})
    Bundle.create(tmp_path / "b", source="demo", image_root=None, config={"seed": 3})
    assert main([command, "--bundle", str(tmp_path / "b")]) == 0
    assert main([command, "--bundle", str(tmp_path / "b"), "--seed", "5"]) == 0
    assert seen == [3, 5]


def test_an_interrupted_rerun_is_not_skipped_next_time(tmp_path, counting, monkeypatch):
    # before: the stage's old record stayed while it ran again, so a --force rebuild
    # (or one on a config changed back) killed after rewriting half its outputs was
    # skipped by the next build as "up to date" with those half-written outputs
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))

    def interrupted(ctx):
        ctx.bundle.path("out.txt").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(counting_stage, "run_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_stages(BuildContext(bundle=b, config={"value": 1}, force=True,
                                log=lambda m: None))
    assert "ingest" not in Bundle.open(b.root).manifest["stages"]
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "STAGES",
                        (Stage("ingest", "tests.recommender.counting_stage", 0, "count"),))
    b = Bundle.open(b.root)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    assert counting == [1, 1]
    assert b.path("out.txt").read_text() == "1"
