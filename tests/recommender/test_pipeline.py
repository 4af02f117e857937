import json
from pathlib import Path

import pandas as pd
import pytest

from features.exceptions import BundleError, InputError, NotFoundError, StageNotAvailable
from recommender import pipeline
from recommender.bundle import BUNDLE_SCHEMA_VERSION, SERVING_DIR, Bundle
from recommender.pipeline import BuildContext, Stage, run_stages
from tests.recommender import counting_stage, refusing_stage, spelling_stage


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


def test_an_output_rewritten_from_outside_reruns_the_stage_and_says_why(tmp_path,
                                                                        counting):
    # before: only the outputs' existence was checked, so a file copied over a
    # stage's output (another compat model) was kept, and served, as "up to date"
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    b.path("out.txt").write_text("9")  # same size, other bytes
    logs = []
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=logs.append))
    assert counting == [1, 1]
    assert b.path("out.txt").read_text() == "1"
    assert "[ingest] outputs changed since it ran: out.txt; running it again" in logs
    logs.clear()
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=logs.append))
    assert counting == [1, 1] and logs == ["[ingest] up to date, skipped"]


def test_a_record_without_output_hashes_checks_existence_only(tmp_path, counting):
    # records from bundles built before output_hashes were kept: nothing to compare
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    del b.manifest["stages"]["ingest"]["output_hashes"]
    b.save()
    b.path("out.txt").write_text("9")
    run_stages(BuildContext(bundle=Bundle.open(b.root), config={"value": 1},
                            log=lambda m: None))
    assert counting == [1]
    b.path("out.txt").unlink()
    run_stages(BuildContext(bundle=Bundle.open(b.root), config={"value": 1},
                            log=lambda m: None))
    assert counting == [1, 1]


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


def test_a_stage_refusing_before_writing_leaves_the_bundle_as_it_was(tmp_path, counting,
                                                                     monkeypatch):
    # before: the stage's record was dropped and the bundle marked building before the
    # stage ran, so a stage refusing its inputs at once (a config value, a missing
    # input file) left a good bundle that the server refused to load
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None, config={"value": 1})
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    before = (b.root / "manifest.json").read_text()
    monkeypatch.setattr(counting_stage, "run_stage", refusing_stage.run_stage)
    b.manifest["config"] = {"value": 2}  # as build / cli_stages do, saved by a stage
    with pytest.raises(InputError, match="value 2 refused"):
        run_stages(BuildContext(bundle=b, config={"value": 2}, log=lambda m: None))
    again = Bundle.open(b.root)
    again.check_complete()
    assert (b.root / "manifest.json").read_text() == before
    assert again.stage_record("ingest")["metrics"] == {"value": 1}
    assert b.manifest == again.manifest


def test_a_server_logging_into_the_bundle_does_not_leave_a_refused_stage_marked(
        tmp_path, counting, monkeypatch):
    # before: a server run without DATA_DIR keeps its events database in
    # <bundle>/serving; an exposure it logged while `mixmatch train` was interrupted
    # before saving anything counted as the stage having written, so the bundle stayed
    # marked as being built and a restarted server had nothing to load
    import sqlite3
    import types

    from api.app import create_app

    b = Bundle.create(tmp_path / "b", source="demo", image_root=None, config={"value": 1})
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    app = create_app({"TESTING": True, "BUNDLE": str(b.root), "WATCH_INTERVAL": 0,
                      "ENGINE_LOADER": lambda p: types.SimpleNamespace(bundle_version="v")})
    app.extensions["mixmatch"].events.close()
    db = b.path(SERVING_DIR, "events.db")
    assert db.is_file()  # the server's own database, inside the bundle without DATA_DIR

    def refuse_while_the_server_logs(ctx):
        con = sqlite3.connect(db)
        with con:
            con.execute("CREATE TABLE written_meanwhile (x)")  # an exposure logged
            con.execute("INSERT INTO written_meanwhile VALUES (1)")
        con.close()
        refusing_stage.run_stage(ctx)

    monkeypatch.setattr(counting_stage, "run_stage", refuse_while_the_server_logs)
    with pytest.raises(InputError, match="value 2 refused"):
        run_stages(BuildContext(bundle=b, config={"value": 2}, log=lambda m: None))
    Bundle.open(b.root).check_complete()


def test_a_stage_failing_after_writing_leaves_the_mark(tmp_path, counting, monkeypatch):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))

    def writes_then_refuses(ctx):
        ctx.bundle.path("out.txt").write_text("partial output")
        refusing_stage.run_stage(ctx)

    monkeypatch.setattr(counting_stage, "run_stage", writes_then_refuses)
    with pytest.raises(InputError):
        run_stages(BuildContext(bundle=b, config={"value": 2}, log=lambda m: None))
    again = Bundle.open(b.root)
    with pytest.raises(BundleError, match="stage 'ingest'"):
        again.check_complete()
    assert again.stage_record("ingest") is None


def test_a_refusal_after_an_earlier_stage_wrote_keeps_the_mark(tmp_path, monkeypatch):
    # the run changed the bundle (the first stage's outputs are new, the second's
    # old): the refusal of the second must not clear the mark the first set
    counting_stage.RUNS.clear()
    monkeypatch.setattr(pipeline, "STAGES", (
        Stage("ingest", "tests.recommender.counting_stage", 0, "count"),
        Stage("split", "tests.recommender.refusing_stage", 0, "refuse")))
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    with pytest.raises(InputError):
        run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    again = Bundle.open(b.root)
    with pytest.raises(BundleError, match="being built"):
        again.check_complete()
    assert again.stage_record("ingest")["metrics"] == {"value": 1}


def test_a_stage_not_available_for_the_bundle_keeps_it_servable(tiny_bundle, tmp_path):
    # before: `mixmatch train --bundle B --stage keypoints` on a bundle without a
    # FashionAI keypoint CSV (every MANGO bundle) stopped at once with "keypoints.csv
    # missing", and the server then refused B as "being built"
    import shutil

    from api.cli import main
    from recommender.engine import Engine

    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    before = (root / "manifest.json").read_text()
    assert main(["train", "--bundle", str(root), "--stage", "keypoints"]) == 2
    assert (root / "manifest.json").read_text() == before
    assert len(Engine.load(root).catalog) > 0


def test_a_run_of_other_stages_does_not_clear_an_interrupted_stages_mark(tmp_path,
                                                                         monkeypatch):
    # before: whichever run ended next cleared the mark, even one whose stages were all
    # up to date: after a build interrupted in `split`, `--stages ingest` (or
    # `mixmatch graph`) made the bundle loadable with split's outputs half rewritten
    stages = (Stage("ingest", "tests.recommender.counting_stage", 0, "count"),
              Stage("split", "tests.recommender.counting_stage", 0, "count"))
    monkeypatch.setattr(pipeline, "STAGES", stages)
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))

    def interrupted(ctx):
        ctx.bundle.path("out.txt").write_text("half")
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(counting_stage, "run_stage", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_stages(BuildContext(bundle=b, config={"value": 1}, force=True,
                                    log=lambda m: None), ["split"])
    logs = []
    run_stages(BuildContext(bundle=Bundle.open(b.root), config={"value": 1},
                            log=logs.append), ["ingest"])
    with pytest.raises(BundleError, match="being built"):
        Bundle.open(b.root).check_complete()
    assert "stage(s) split started earlier did not finish" in logs[-1]

    run_stages(BuildContext(bundle=Bundle.open(b.root), config={"value": 1},
                            log=lambda m: None), ["split"])
    Bundle.open(b.root).check_complete()


def test_a_full_build_clears_the_mark_of_a_stage_it_does_not_run(tmp_path, counting):
    # a stage interrupted under another source (keypoints: demo only) is not run by
    # this source's build: the build running every stage of its own source clears it
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    b.start_stage("keypoints")
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None), ["ingest"])
    with pytest.raises(BundleError, match="being built"):
        Bundle.open(b.root).check_complete()
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    Bundle.open(b.root).check_complete()


def test_a_stage_command_records_the_seed_and_quick_it_ran_with(tiny_bundle, tmp_path):
    # before: `mixmatch graph --bundle B --seed 3 --quick` rebuilt the graph (the seed
    # is among its inputs) but the manifest kept only the build's config, so nothing
    # said which seed, or that quick settings, made the graph B serves
    import shutil

    from api.cli import main

    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    assert main(["graph", "--bundle", str(root), "--seed", "3", "--quick"]) == 0
    rec = Bundle.open(root).stage_record("graph")
    assert (rec["seed"], rec["quick"]) == (3, True)
    config = Bundle.open(root).manifest["config"]
    assert config.get("seed", 0) == 0 and not config.get("quick")  # the build's own
    # the same seed again is up to date; another seed is not skipped
    assert main(["graph", "--bundle", str(root), "--seed", "3", "--quick"]) == 0
    assert Bundle.open(root).stage_record("graph") == rec
    assert main(["graph", "--bundle", str(root), "--seed", "4"]) == 0
    rec = Bundle.open(root).stage_record("graph")
    assert (rec["seed"], rec["quick"]) == (4, False)


def test_every_stage_record_says_the_seed_and_quick_of_its_run(tmp_path, counting):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    assert {k: b.stage_record("ingest")[k] for k in ("seed", "quick")} == {
        "seed": 0, "quick": False}  # what the stages read when the config names none
    run_stages(BuildContext(bundle=b, config={"value": 2, "seed": 7, "quick": True},
                            log=lambda m: None))
    assert {k: b.stage_record("ingest")[k] for k in ("seed", "quick")} == {
        "seed": 7, "quick": True}


def test_a_stage_run_alone_names_the_stages_after_it_left_out_of_date(tmp_path,
                                                                      monkeypatch):
    # before: `mixmatch train --stage compatibility` alone left the graph scored by the
    # old model, and neither the command nor the loaded bundle said so
    from tests.recommender import reading_stage

    monkeypatch.setattr(pipeline, "STAGES", (
        Stage("ingest", "tests.recommender.counting_stage", 0, "count"),
        Stage("graph", "tests.recommender.reading_stage", 0, "read")))
    reading_stage.RUNS.clear()
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    assert Bundle.open(b.root).stale_stages() == []

    logs = []
    run_stages(BuildContext(bundle=b, config={"value": 2}, log=logs.append), ["ingest"])
    assert f"stage(s) graph of bundle {b.root}" in logs[-1]
    assert logs[-1].endswith(f"rebuild them: mixmatch graph --bundle {b.root}")
    assert Bundle.open(b.root).stale_stages() == ["graph"]

    run_stages(BuildContext(bundle=b, config={"value": 2}, log=lambda m: None), ["graph"])
    assert reading_stage.RUNS == ["1", "2"]
    assert Bundle.open(b.root).stale_stages() == []
    # rerun giving the same output: what read it is still current, and nothing is said
    logs.clear()
    run_stages(BuildContext(bundle=b, config={"value": 2}, force=True, log=logs.append),
               ["ingest"])
    assert not any("out of date" in m for m in logs)
    assert Bundle.open(b.root).stale_stages() == []


def test_a_stage_that_read_a_file_absent_then_is_stale_once_it_is_written(tmp_path,
                                                                          monkeypatch):
    # the graph of a bundle without a compatibility model (content scorer) is stale
    # once the model is trained
    monkeypatch.setattr(pipeline, "STAGES", (
        Stage("ingest", "tests.recommender.counting_stage", 0, "count"),
        Stage("graph", "tests.recommender.reading_stage", 0, "read")))
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None), ["graph"])
    assert b.stage_record("graph")["reads"] == {"out.txt": None}
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None), ["ingest"])
    assert Bundle.open(b.root).stale_stages() == ["graph"]


@pytest.mark.slow
def test_retraining_the_compatibility_model_alone_reports_the_graph_stale(
        tiny_bundle, tmp_path, capsys, caplog):
    # before: the command, Engine.load and /healthz were silent while the graph served
    # edges scored by a model no longer in the bundle (here: the content scorer's)
    import shutil

    from api import create_app
    from api.cli import main
    from recommender.engine import Engine

    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    assert Engine.load(root).stale_stages == []
    assert main(["train", "--bundle", str(root), "--stage", "compatibility"]) == 0
    err = capsys.readouterr().err
    assert "stage(s) graph of bundle" in err and f"mixmatch graph --bundle {root}" in err

    with caplog.at_level("WARNING", logger="recommender.engine"):
        assert Engine.load(root).stale_stages == ["graph"]
    assert "graph built from inputs that have changed" in caplog.text
    app = create_app({"TESTING": True, "BUNDLE": str(root), "WATCH_INTERVAL": 0,
                      "DATA_DIR": str(tmp_path / "data")})
    body = app.test_client().get("/healthz").get_json()
    assert body["status"] == "ok" and body["stale_stages"] == ["graph"]
    app.extensions["mixmatch"].events.close()

    assert main(["graph", "--bundle", str(root)]) == 0
    assert "out of date" not in capsys.readouterr().err
    assert Engine.load(root).stale_stages == []
    app = create_app({"TESTING": True, "BUNDLE": str(root), "WATCH_INTERVAL": 0,
                      "DATA_DIR": str(tmp_path / "data2")})
    assert app.test_client().get("/healthz").get_json()["stale_stages"] == []
    app.extensions["mixmatch"].events.close()


def test_a_rerun_says_which_input_changed_with_its_old_and_new_value(tmp_path, counting):
    # before: a stage not current just ran ("[ingest] count ..."), and only a scratch
    # script could tell which of its inputs had changed (a setting, the catalogue, the
    # images' fingerprint, a version); the record kept nothing but their hash
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    logs = []
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=logs.append))
    assert logs[0] == "[ingest] not run before; running it"
    assert Bundle.open(b.root).stage_record("ingest")["inputs"] == {"value": 1}
    logs.clear()
    run_stages(BuildContext(bundle=b, config={"value": 2}, log=logs.append))
    assert logs[0] == "[ingest] inputs changed since it ran: value 1 -> 2; running it again"
    logs.clear()
    run_stages(BuildContext(bundle=b, config={"value": 2}, force=True, log=logs.append))
    assert logs[0] == "[ingest] forced (--force); running it again"
    assert counting == [1, 2, 2]


def test_inputs_are_kept_by_dotted_key_and_long_values_by_their_hash(tmp_path, counting):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": {"k": 3, "ids": list(range(1000))}},
                            log=lambda m: None))
    kept = Bundle.open(b.root).stage_record("ingest")["inputs"]
    assert kept["value"]["k"] == 3
    assert kept["value"]["ids"].startswith("<list of 1000, hash ")
    logs = []
    run_stages(BuildContext(bundle=b, config={"value": {"k": 4, "ids": list(range(1001))}},
                            log=logs.append))
    assert logs[0].startswith("[ingest] inputs changed since it ran: value.ids <list of "
                              "1000, hash ")
    assert "-> <list of 1001, hash " in logs[0] and "; value.k 3 -> 4; running" in logs[0]


def test_a_record_from_before_inputs_were_kept_is_honoured_by_its_hash(tmp_path, counting):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    del b.manifest["stages"]["ingest"]["inputs"]
    b.save()
    logs = []
    run_stages(BuildContext(bundle=Bundle.open(b.root), config={"value": 1},
                            log=logs.append))
    assert counting == [1] and logs == ["[ingest] up to date, skipped"]
    # found current on the same inputs: they are kept now, for the next change
    b = Bundle.open(b.root)
    assert b.stage_record("ingest")["inputs"] == {"value": 1}
    del b.manifest["stages"]["ingest"]["inputs"]
    b.save()
    run_stages(BuildContext(bundle=Bundle.open(b.root), config={"value": 2},
                            log=logs.append))
    assert counting == [1, 2]
    assert ("[ingest] its record predates kept inputs (inputs hash differs); running it "
            "again") in logs


def _folder_state(root):
    """Every file under ``root`` with its bytes and mtime (the manifest's included)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _test_stages(monkeypatch, *stages):
    """The pipeline's stages, for one test, are ``stages``: (name, module of
    tests.recommender, kind) each; their modules' RUNS cleared, and returned."""
    import importlib

    modules = [importlib.import_module(f"tests.recommender.{m}") for _, m, _ in stages]
    for module in modules:
        module.RUNS.clear()
    monkeypatch.setattr(pipeline, "STAGES", tuple(
        Stage(name, f"tests.recommender.{m}", 0, kind) for name, m, kind in stages))
    return [module.RUNS for module in modules]


@pytest.fixture
def two_stages(monkeypatch):
    return tuple(_test_stages(monkeypatch, ("ingest", "counting_stage", "count"),
                              ("graph", "reading_stage", "read")))


def test_a_plan_says_what_a_run_would_do_and_does_nothing(tmp_path, two_stages):
    from recommender.pipeline import plan_stages

    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    assert plan_stages(BuildContext(bundle=b, config={"value": 1})) == [
        ("ingest", "would run: not run before"), ("graph", "would run: not run before")]
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    before = _folder_state(b.root)
    assert plan_stages(BuildContext(bundle=Bundle.open(b.root), config={"value": 1})) == [
        ("ingest", "up to date"), ("graph", "up to date")]
    # the graph reads what ingest writes: it is current now, and unknown after ingest
    assert plan_stages(BuildContext(bundle=Bundle.open(b.root), config={"value": 2})) == [
        ("ingest", "would run: inputs changed since it ran: value 1 -> 2"),
        ("graph", "up to date now; would run after ingest if that changes its inputs")]
    assert _folder_state(b.root) == before and two_stages == ([1], ["1"])


def test_stage_commands_dry_run_prints_the_plan_and_writes_nothing(tmp_path, two_stages,
                                                                  capsys):
    from api.cli import main

    b = Bundle.create(tmp_path / "b", source="demo", image_root=None, config={"value": 1})
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    assert main(["graph", "--bundle", str(b.root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"dry run of bundle {b.root} (nothing written):" in out
    assert "  graph         up to date" in out
    b.path("out.txt").write_text("2")   # what the graph stage read, rewritten
    before = _folder_state(b.root)
    assert main(["graph", "--bundle", str(b.root), "--dry-run", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    h1 = b.stage_record("graph")["inputs"]["files"]["out.txt"][:8]
    assert (f"  graph         would run: inputs changed since it ran: files.out.txt "
            f"{h1}… -> ") in out
    assert _folder_state(b.root) == before and two_stages == ([1], ["1"])


def test_build_dry_run_of_a_missing_bundle_says_every_stage_would_run(tmp_path, capsys):
    from api.cli import main

    out = tmp_path / "b"
    assert main(["build", "--out", str(out), "--items", "10", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"no bundle at {out} yet: every stage would run" in text
    assert f"demo           would generate 10 items (seed 0) into {out / 'source'}" in text
    for name in ("ingest", "split", "attributes", "keypoints", "features", "compatibility",
                 "graph"):
        assert f"  {name:<13}  would run: not run before" in text
    assert not out.exists()   # no folder, lock, demo catalogue or manifest


@pytest.mark.parametrize("dry", [True, False])
def test_a_demo_build_too_large_to_compose_is_refused_before_anything(tmp_path, capsys,
                                                                      monkeypatch, dry):
    """``build --items 100000000000 --dry-run`` planned the generation, and the build
    composed outfits for hours; both refuse it up front (memory faked at 8 GiB)."""
    import recommender.demo.generate as gen
    from api.cli import main

    monkeypatch.setattr(gen, "physical_memory", lambda: 8 * 2**30)
    out = tmp_path / "b"
    assert main(["build", "--out", str(out), "--items", "100000000000"]
                + ["--dry-run"] * dry) == 2
    err = capsys.readouterr().err
    assert ("error: --items 100000000000 (33333333333 outfits) would need about 23,283 "
            "GiB to compose, more than this machine's 8 GiB of memory; ask for fewer"
            in err), err
    assert not out.exists()


@pytest.mark.parametrize("stages, stage, reads, writer, fix", [
    ("split", "split", "catalog.parquet", "ingest", "ingest,split"),
    ("features", "features", "catalog.parquet", "ingest", "ingest,features"),
    ("ingest,compatibility", "compatibility", "eval/train_outfits.parquet", "split",
     "ingest,split,compatibility"),
    ("graph,ingest,split", "graph", "features/embeddings.npy", "features",
     "ingest,split,features,graph"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_a_run_without_the_stage_that_writes_what_a_stage_reads_is_refused_up_front(
        tmp_path, capsys, no_generator, stages, stage, reads, writer, fix, dry):
    """``--stages split`` on a new folder was a FileNotFoundError traceback (after the
    demo catalogue was generated), ``--stages features`` generated it and then failed,
    ``ingest,compatibility`` wrote the ingest first, and the dry run said that each
    would run. Now both refuse before the first step, naming the file and the stage
    that writes it, and nothing is written."""
    from api.cli import main

    out = tmp_path / "b"
    rc = main(["build", "--out", str(out), "--items", "30", "--quick", "--stages", stages]
              + ["--dry-run"] * dry)
    said = capsys.readouterr()
    why = (f"the {stage} stage reads {reads}, which the {writer} stage writes: {out} has "
           f"none and this run does not include {writer}; add it: --stages {fix}")
    if dry:
        assert rc == 0
        assert f"  {stage:<12}  would be refused: {why}" in said.out, said.out
        assert "would generate" not in said.out and "would run" not in said.out
    else:
        assert rc == 2
        assert f"error: {why}" in said.err, said.err
    assert not out.exists()


def test_a_stage_command_on_a_bundle_without_what_it_reads_names_the_stage_to_run(
        tmp_path, capsys):
    """``mixmatch graph`` on a bundle ingested but not featurised named the missing
    embeddings only once the stage had started; now it names the features command
    before it starts, and the bundle's records are left as they were."""
    from api.cli import main

    out = tmp_path / "b"
    assert main(["build", "--out", str(out), "--items", "30", "--quick", "--stages",
                 "ingest"]) == 0
    capsys.readouterr()
    manifest = (out / "manifest.json").read_text()
    assert main(["graph", "--bundle", str(out)]) == 2
    assert (f"error: the graph stage reads features/embeddings.npy, which the features "
            f"stage writes: {out} has none and this run does not include features; run "
            f"features first: mixmatch features --bundle {out}") in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == manifest


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """A demo catalogue of 20 items (seed 0) that `mixmatch demo` wrote outside any
    bundle, as a user passes it to ``build --data``; the tests below must leave it as
    it is (they check)."""
    from recommender.demo import generate_demo

    out = tmp_path_factory.mktemp("made_elsewhere") / "demo"
    generate_demo(out, n_items=20, seed=0, fashionai_keypoints=False)
    return out


def _planned(out: str, step: str) -> str:
    """What a dry run's printed plan ``out`` says of ``step``."""
    return next(line.split(None, 1)[1] for line in out.splitlines()
                if line.split(None, 1)[:1] == [step])


@pytest.fixture
def no_generator(monkeypatch):
    """The demo generator replaced by one that fails the test: nothing regenerates."""
    import recommender.demo

    def generate_demo(out_dir, *args, **kwargs):
        raise AssertionError(f"the demo catalogue in {out_dir} was regenerated")

    monkeypatch.setattr(recommender.demo, "generate_demo", generate_demo)


@pytest.mark.parametrize("extra", [[], ["--items", "20"], ["--seed", "0"],
                                   ["--seed", "3"]])
def test_a_demo_catalogue_made_elsewhere_is_built_on_as_it_is(demo_data, no_generator,
                                                              tmp_path, capsys, extra):
    # before: without --items, `build --source demo --data DIR` regenerated the default
    # 2,000 items into DIR over the catalogue `mixmatch demo` wrote there (and --seed
    # other than the catalogue's did the same); then --seed other than the catalogue's
    # was taken without a word, the catalogue's seed kept
    from api.cli import main
    from features.attributes.train import load_training_table

    kept = _folder_state(demo_data)
    out = tmp_path / "b"
    argv = ["build", "--source", "demo", "--data", str(demo_data), "--out", str(out),
            "--stages", "ingest"] + extra
    seed = extra[1] if extra[:1] == ["--seed"] else "0"
    said = f"catalogue of 20 items (seed 0) already at {demo_data}, used as it is"
    if seed != "0":   # asked for, and not the catalogue's: said, in the log and the plan
        said += (f"; --seed {seed} seeds the split and the models, not this catalogue "
                 f"(give --data a new folder, or none, to generate one of seed {seed})")
    assert main(argv + ["--dry-run"]) == 0
    assert _planned(capsys.readouterr().out, "demo") == said
    assert main(argv) == 0
    assert f"[demo] {said}\n" in capsys.readouterr().err
    b = Bundle.open(out)
    assert len(pd.read_parquet(b.path("catalog.parquet"))) == 20
    assert (b.manifest["config"]["items"], b.manifest["config"]["seed"]) == (20, int(seed))
    assert b.image_root == demo_data and not (out / "source").exists()
    # the attribute network's y/m/n labels are the source's, in DIR (they were looked
    # for in BUNDLE/source, so a FashionAI task column kept only its "y" class name)
    cat, _ = load_training_table(b, ["sleeve_length_labels"])
    labels = pd.read_csv(demo_data / "fashionai" / "attributes" / "sleeve_length_labels.csv",
                         header=None, names=["image_path", "task", "labels"])
    by_item = dict(zip(labels["image_path"].map(lambda p: Path(p).stem), labels["labels"]))
    got = cat.set_index("item_id")["sleeve_length_labels"]
    assert by_item and {i: got[i] for i in by_item if i in got.index} == by_item
    assert _folder_state(demo_data) == kept


@pytest.mark.parametrize("extra, note", [([], False), (["--seed", "3"], False),
                                         (["--seed", "0"], True)])
def test_a_seed_other_than_the_demo_catalogues_is_said_only_when_given(
        tmp_path, no_generator, capsys, extra, note):
    # a build without --seed on a catalogue of seed 3 seeds its split with 0, as it
    # always did, without a note; an explicit --seed 0 is a wish for the catalogue too
    from api.cli import main
    from tests.recommender.test_ingest import _demo

    data = _demo(tmp_path / "d")
    (data / "demo.json").write_text(json.dumps({"seed": 3, "n_items": 4}))
    assert main(["build", "--data", str(data), "--out", str(tmp_path / "b"), "--stages",
                 "ingest", "--dry-run"] + extra) == 0
    said = _planned(capsys.readouterr().out, "demo")
    assert said.startswith(f"catalogue of 4 items (seed 3) already at {data}, used as it "
                           f"is")
    assert ("; --seed 0 seeds the split and the models, not this catalogue" in said) == note


def test_another_size_for_a_demo_catalogue_made_elsewhere_is_refused(demo_data,
                                                                    no_generator, tmp_path,
                                                                    capsys):
    from api.cli import main

    kept = _folder_state(demo_data)
    out = tmp_path / "b"
    argv = ["build", "--source", "demo", "--data", str(demo_data), "--out", str(out),
            "--items", "30", "--stages", "ingest"]
    said = (f"mixmatch build: error: --data {demo_data} holds a demo catalogue of 20 items "
            f"(seed 0) that a build does not overwrite: --items 30 asks for another size. "
            f"Drop --items to build on its 20 items, or give --data a new folder (or none: "
            f"the bundle's own source/) to generate 30 items\n")
    for dry in (["--dry-run"], []):   # the dry run says what the build would do: refuse
        assert main(argv + dry) == 2
        err = capsys.readouterr().err
        assert err.endswith(said) and "Traceback" not in err
    assert not out.exists()   # refused before the bundle folder and its lock were made
    assert _folder_state(demo_data) == kept


def test_a_data_folder_whose_demo_json_is_damaged_is_named(tmp_path, no_generator, capsys):
    from api.cli import main

    data = tmp_path / "d"
    data.mkdir()
    (data / "demo.json").write_text('{"n_items": 20,')
    assert main(["build", "--data", str(data), "--out", str(tmp_path / "b"),
                 "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch build: error: {data / 'demo.json'} is not the demo.json `mixmatch " \
           f"demo` writes (" in err and "Traceback" not in err


def test_the_bundles_own_demo_source_is_regenerated_for_another_size(demo_data, tmp_path,
                                                                     capsys):
    # inside the bundle (no --data, or --data naming BUNDLE/source) the catalogue is the
    # build's own: regenerated for another --items, and for none at the default 2,000
    import shutil

    from api.cli import main

    out = tmp_path / "b"
    shutil.copytree(demo_data, out / "source")
    for data in ([], ["--data", str(out / "source")]):
        for items, said in (
                (["--items", "20"], f"catalogue of 20 items (seed 0) already at "
                                    f"{out / 'source'}"),
                (["--items", "12"], f"would generate 12 items (seed 0) into {out / 'source'}"),
                ([], f"would generate 2000 items (seed 0) into {out / 'source'}")):
            assert main(["build", "--out", str(out), "--dry-run"] + data + items) == 0
            assert _planned(capsys.readouterr().out, "demo") == said
    assert main(["build", "--out", str(out), "--items", "12", "--stages", "ingest"]) == 0
    assert "[demo] generating 12 items (seed 0)" in capsys.readouterr().err
    assert json.loads((out / "source" / "demo.json").read_text())["n_items"] == 12
    assert len(pd.read_parquet(out / "catalog.parquet")) == 12


def test_a_run_without_ingest_builds_on_the_bundles_own_demo_catalogue_as_it_is(
        demo_data, tmp_path, capsys, no_generator):
    # before: `build --stages split` on a bundle of 20 items regenerated source/ at the
    # default 2,000 items (--items 12: at 12), and no stage of the run ingested them,
    # so catalog.parquet described the old catalogue and its images were the new one's
    import shutil

    from api.cli import main

    out = tmp_path / "b"
    shutil.copytree(demo_data, out / "source")
    assert main(["build", "--out", str(out), "--items", "20", "--stages", "ingest"]) == 0
    kept = _folder_state(out / "source")
    capsys.readouterr()
    used = f"catalogue of 20 items (seed 0) already at {out / 'source'}, used as it is"
    assert main(["build", "--out", str(out), "--stages", "split", "--dry-run"]) == 0
    assert _planned(capsys.readouterr().out, "demo") == used
    assert main(["build", "--out", str(out), "--stages", "split", "--seed", "3"]) == 0
    assert (f"[demo] {used}; --seed 3 seeds the split and the models, not this catalogue "
            f"(add ingest to --stages to generate one of seed 3)") in capsys.readouterr().err
    for dry in ([], ["--dry-run"]):
        assert main(["build", "--out", str(out), "--stages", "split", "--items", "12"]
                    + dry) == 2
        assert (f"error: {out / 'source'} holds the demo catalogue of 20 items (seed 0) "
                f"that the bundle was ingested from, and this run does not include the "
                f"ingest stage, which reads it: --items 12 asks for another size. Add "
                f"ingest to --stages to build on 12 items, or drop --items"
                ) in capsys.readouterr().err
    assert _folder_state(out / "source") == kept
    assert len(pd.read_parquet(out / "catalog.parquet")) == 20
    assert json.loads((out / "manifest.json").read_text())["config"]["items"] == 20


@pytest.mark.slow
def test_a_build_on_a_demo_catalogue_made_elsewhere_trains_on_its_labels(demo_data,
                                                                         no_generator,
                                                                         tmp_path):
    # before: the keypoints stage failed with "BUNDLE/source/fashionai/keypoints.csv
    # missing", after the attribute network had trained without its keypoint regions
    from api.cli import main
    from features.files import file_hash

    kept = _folder_state(demo_data)
    out = tmp_path / "b"
    assert main(["build", "--source", "demo", "--data", str(demo_data), "--items", "20",
                 "--out", str(out), "--quick", "--stages", "ingest,attributes,keypoints"]) == 0
    stages = Bundle.open(out).manifest["stages"]
    assert stages["attributes"]["metrics"]["regions"] == "label keypoints"
    assert stages["attributes"]["inputs"]["keypoints"] == stages["keypoints"]["inputs"][
        "csv"] == file_hash(demo_data / "fashionai" / "keypoints.csv")
    assert (out / "models" / "keypoints.pt").is_file()
    assert _folder_state(demo_data) == kept


@pytest.mark.slow
def test_a_dry_run_of_real_stages_writes_nothing(tiny_bundle, tmp_path, capsys):
    import shutil

    from api.cli import main

    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    # the tiny bundle's graph was built with these settings, which its manifest's
    # config does not record: without them the command would rebuild it, and says so
    same, other = tmp_path / "same.toml", tmp_path / "other.toml"
    same.write_text("[stages.graph]\nk_compat = 10\nk_visual = 10\n")
    other.write_text("[stages.graph]\nk_compat = 10\nk_visual = 2\n")
    before = _folder_state(root)
    assert main(["graph", "--bundle", str(root), "--dry-run"]) == 0
    assert ("  graph         would run: inputs changed since it ran: config.k_candidates "
            "20 -> 40; config.k_compat 10 -> 20; config.k_visual 10 -> 20\n"
            ) in capsys.readouterr().out
    assert main(["graph", "--bundle", str(root), "--quick", "--config", str(same),
                 "--dry-run"]) == 0
    assert "  graph         up to date\n" in capsys.readouterr().out
    assert main(["graph", "--bundle", str(root), "--quick", "--config", str(other),
                 "--dry-run"]) == 0
    assert ("  graph         would run: inputs changed since it ran: config.k_visual "
            "10 -> 2\n") in capsys.readouterr().out
    assert _folder_state(root) == before


@pytest.mark.slow
def test_a_build_after_every_image_was_touched_skips_every_stage(tmp_path, monkeypatch):
    # before: the image stages' inputs held each image's mtime, so a data folder
    # re-provisioned or copied without -p (same bytes, new times) retrained the
    # attribute network and re-extracted the features: on MANGO 35 minutes for nothing
    import os

    from features import files
    from recommender.build import build_bundle, plan_build

    out = tmp_path / "bundle"
    build_bundle(out, source="demo", items=60, seed=0, quick=True, log=lambda m: None)
    built = Bundle.open(out)
    images = [p for p in (out / "source").rglob("*") if p.suffix in (".jpg", ".png")]
    assert len(images) >= 60
    for p in images:
        os.utime(p, (1_500_000_000, 1_500_000_000))
    # a dry run hashes the touched images for their fingerprint but records nothing in
    # the bundle's index: it writes nothing, and says every stage is up to date (the
    # files count as settled at once, or none would be recorded by any run)
    monkeypatch.setattr(files, "RACY_SECONDS", 0.0)
    index = out / "cache" / "content_hashes.parquet"
    index.unlink(missing_ok=True)   # none yet when every image was made just now
    before = _folder_state(out)
    plan = plan_build(out, source="demo", items=60, seed=0, quick=True)
    assert {s for s, what in plan if what != "up to date"} <= {"demo"}
    assert _folder_state(out) == before and not index.exists()
    logs = []
    build_bundle(out, source="demo", items=60, seed=0, quick=True, log=logs.append)
    assert index.exists()   # a run records them
    logs = []
    build_bundle(out, source="demo", items=60, seed=0, quick=True, log=logs.append)
    stages = list(built.manifest["stages"])
    assert {"ingest", "attributes", "features"} <= set(stages)
    said = sorted(m for m in logs if m.startswith("[") and not m.startswith("[demo]"))
    assert said == sorted(f"[{s}] up to date, skipped" for s in stages)
    assert Bundle.open(out).version == built.version


@pytest.fixture
def placed(monkeypatch):
    return tuple(_test_stages(monkeypatch, ("ingest", "placed_stage", "place"),
                              ("attributes", "imaging_stage", "images")))


def test_a_data_folder_moved_with_the_same_content_reruns_no_stage(tmp_path, placed):
    # before: the ingest's inputs held the data folder's path and the image stages' the
    # image root, so a data folder moved or copied (same bytes) reran ingest and
    # retrained the attribute network: on MANGO 27 minutes on identical images
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"data": "/mnt/a", "content": 1},
                            log=lambda m: None))
    logs = []
    run_stages(BuildContext(bundle=Bundle.open(b.root),
                            config={"data": "/mnt/b", "content": 1}, log=logs.append))
    assert placed == ([("/mnt/a", 1)], ["/mnt/a"])
    assert logs[:2] == [
        "[ingest] same content at a new place (data /mnt/a -> /mnt/b): image root now "
        "/mnt/b; not run again",
        "[attributes] same content at a new place (image_root /mnt/a -> /mnt/b): "
        "recorded the new place; not run again"]
    b = Bundle.open(b.root)
    assert b.image_root == Path("/mnt/b")
    assert b.stage_record("ingest")["inputs"]["data"] == "/mnt/b"
    assert b.stage_record("attributes")["inputs"]["image_root"] == "/mnt/b"
    logs.clear()
    run_stages(BuildContext(bundle=b, config={"data": "/mnt/b", "content": 1},
                            log=logs.append))
    assert logs[:2] == ["[ingest] up to date, skipped", "[attributes] up to date, skipped"]
    # content changed at the new place as well: both run, saying both changes
    logs.clear()
    run_stages(BuildContext(bundle=b, config={"data": "/mnt/c", "content": 2},
                            log=logs.append))
    assert logs[0] == ("[ingest] inputs changed since it ran: content 1 -> 2; data /mnt/b "
                       "-> /mnt/c; running it again")
    assert placed == ([("/mnt/a", 1), ("/mnt/c", 2)], ["/mnt/a", "/mnt/c"])
    # an image changed at a new place: the catalogue stands, the image stage runs
    logs.clear()
    run_stages(BuildContext(bundle=b, config={"data": "/mnt/d", "content": 2, "images": 2},
                            log=logs.append))
    assert logs[0].startswith("[ingest] same content at a new place (data /mnt/c -> ")
    assert logs[1] == ("[attributes] inputs changed since it ran: image_root /mnt/c -> "
                       "/mnt/d; images null -> 2; running it again")
    assert placed == ([("/mnt/a", 1), ("/mnt/c", 2)], ["/mnt/a", "/mnt/c", "/mnt/d"])


def test_a_moved_stage_still_reruns_when_forced_or_its_output_was_replaced(tmp_path,
                                                                         placed):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"data": "/mnt/a", "content": 1},
                            log=lambda m: None))
    run_stages(BuildContext(bundle=b, config={"data": "/mnt/b", "content": 1}, force=True,
                            log=lambda m: None))
    assert placed == ([("/mnt/a", 1), ("/mnt/b", 1)], ["/mnt/a", "/mnt/b"])
    b.path("model.txt").write_text("a model copied in by hand")
    logs = []
    run_stages(BuildContext(bundle=b, config={"data": "/mnt/c", "content": 1},
                            log=logs.append))
    assert placed[1] == ["/mnt/a", "/mnt/b", "/mnt/c"]
    assert ("[attributes] inputs changed since it ran: image_root /mnt/b -> /mnt/c; "
            "running it again") in logs


@pytest.mark.parametrize("kept", ["locations", "kept inputs only", "a long path"])
def test_a_moved_record_is_found_by_its_full_place(tmp_path, placed, kept):
    # a record made before this change keeps the place only in its kept inputs (a
    # bundle built then needs no rerun either); one of over KEPT_TEXT characters is
    # kept there as its hash, and in full in the record's locations
    old = "/mnt/" + "a" * (300 if kept == "a long path" else 1)
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"data": old, "content": 1},
                            log=lambda m: None))
    if kept == "kept inputs only":
        for rec in b.manifest["stages"].values():
            del rec["locations"]
        b.save()
    run_stages(BuildContext(bundle=Bundle.open(b.root),
                            config={"data": "/mnt/b", "content": 1}, log=lambda m: None))
    assert placed == ([(old, 1)], [old])
    assert Bundle.open(b.root).stage_record("attributes")["locations"] == {
        "image_root": "/mnt/b"}


def test_a_dry_run_says_a_moved_data_folder_is_only_recorded_and_writes_nothing(
        tmp_path, placed):
    from recommender.pipeline import plan_stages

    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    run_stages(BuildContext(bundle=b, config={"data": "/mnt/a", "content": 1},
                            log=lambda m: None))
    before = _folder_state(b.root)
    b = Bundle.open(b.root)
    # the image stage is planned where the ingest would record the images: at /mnt/b
    assert plan_stages(BuildContext(bundle=b, config={"data": "/mnt/b", "content": 1})) == [
        ("ingest", "up to date, same content at a new place (data /mnt/a -> /mnt/b): "
                   "would record the new place only"),
        ("attributes", "up to date, same content at a new place (image_root /mnt/a -> "
                       "/mnt/b): would record the new place only")]
    assert b.image_root == Path("/mnt/a")     # the plan's new place, in memory, undone
    assert plan_stages(BuildContext(bundle=b, config={"data": "/mnt/b", "content": 2})) == [
        ("ingest", "would run: inputs changed since it ran: content 1 -> 2; data /mnt/a -> "
                   "/mnt/b"),
        ("attributes", "up to date, same content at a new place (image_root /mnt/a -> "
                       "/mnt/b): would record the new place only; would run after ingest "
                       "if that changes its inputs")]
    assert _folder_state(b.root) == before and placed == ([("/mnt/a", 1)], ["/mnt/a"])


@pytest.mark.slow
def test_a_bundle_copied_with_its_data_elsewhere_retrains_nothing(tmp_path):
    # the demo source lies in the bundle (BUNDLE/source): copying the bundle copies
    # the data folder. Before, the copy's build reran ingest and, on the new image
    # root, the attribute network and the features
    import shutil

    from recommender.build import build_bundle, plan_build

    out = tmp_path / "bundle"
    build_bundle(out, source="demo", items=60, seed=0, quick=True, log=lambda m: None)
    copy = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(out, copy, symlinks=True)   # cp -a: same bytes and times
    built = Bundle.open(copy)
    before = _folder_state(copy)
    plan = dict(plan_build(copy, source="demo", items=60, seed=0, quick=True))
    moved = {"ingest": f"data {out / 'source'} -> {copy / 'source'}",
             "attributes": f"image_root {out / 'source'} -> {copy / 'source'}",
             "features": f"image_root {out / 'source'} -> {copy / 'source'}"}
    for name, what in plan.items():
        if name in moved:
            assert what == (f"up to date, same content at a new place ({moved[name]}): "
                            f"would record the new place only")
        elif name != "demo":
            assert what == "up to date", name
    assert _folder_state(copy) == before
    logs = []
    build_bundle(copy, source="demo", items=60, seed=0, quick=True, log=logs.append)
    said = [m for m in logs if m.startswith("[") and not m.startswith("[demo]")]
    assert said == [f"[{s}] same content at a new place ({moved[s]}): "
                    + (f"recorded the new image root {copy / 'source'}" if s == "ingest"
                       else "recorded the new place") + "; not run again"
                    if s in moved else f"[{s}] up to date, skipped"
                    for s in pipeline.STAGE_NAMES if s in built.manifest["stages"]]
    b = Bundle.open(copy)
    assert b.image_root == copy / "source" and b.version == built.version
    assert Bundle.open(out).image_root == out / "source"   # the original, untouched
    # an image changed in the copy: what reads the images runs again
    img = sorted((copy / "source" / "images").glob("*.jpg"))[0]
    data = bytearray(img.read_bytes())
    data[len(data) // 2] ^= 0xFF                     # one byte of the scan data
    img.write_bytes(bytes(data))
    plan = dict(plan_build(copy, source="demo", items=60, seed=0, quick=True))
    for name in ("ingest", "attributes", "keypoints", "features"):
        assert plan[name].startswith("would run: inputs changed since it ran: images.hash")


@pytest.fixture
def spelling(monkeypatch):
    return _test_stages(monkeypatch, ("ingest", "counting_stage", "count"),
                        ("graph", "spelling_stage", "spell"))[1]


def _spelled(table):
    """A config with ``table`` as the spelling stage's settings."""
    return {"value": 1, "stages": {"demo": table}}


def test_a_record_of_settings_as_written_before_is_current_and_recorded_one_way(
        tmp_path, spelling):
    """A bundle built before stages recorded their settings one way, on ``lr = 1.0``
    and ``epochs = 2`` (its default): its config finds it up to date (a dry run
    writes nothing), the next build records the settings the new way without
    running the stage, and from then on every spelling of them is current. Without
    the fallback it would run once more, for a spelling."""
    from features.settings import AS_WRITTEN, settings_spelled
    from recommender.pipeline import plan_stages

    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    written = {"lr": 1.0, "epochs": 2}
    with settings_spelled(AS_WRITTEN):
        run_stages(BuildContext(bundle=b, config=_spelled(written), log=lambda m: None))
    assert spelling == [written]
    old = Bundle.open(b.root).stage_record("graph")
    assert old["inputs"] == {"stage": written}
    before = _folder_state(b.root)
    assert plan_stages(BuildContext(bundle=Bundle.open(b.root),
                                    config=_spelled(written))) == [
        ("ingest", "up to date"), ("graph", "up to date")]
    assert _folder_state(b.root) == before
    logs = []
    b = Bundle.open(b.root)
    run_stages(BuildContext(bundle=b, config=_spelled(written), log=logs.append))
    assert spelling == [written] and "[graph] up to date, skipped" in logs
    rec = Bundle.open(b.root).stage_record("graph")
    assert rec["inputs"] == {"stage": {"lr": 1}} != old["inputs"]
    assert rec["inputs_hash"] != old["inputs_hash"]
    assert rec["outputs_hash"] == old["outputs_hash"]
    for table in ({"lr": 1}, {"lr": 1.0}, {"epochs": 2.0, "lr": 1}):
        assert plan_stages(BuildContext(bundle=Bundle.open(b.root),
                                        config=_spelled(table))) == [
            ("ingest", "up to date"), ("graph", "up to date")], table
    # a different value still runs, naming it, and --force still forces
    logs = []
    run_stages(BuildContext(bundle=Bundle.open(b.root), config=_spelled({"lr": 2}),
                            log=logs.append))
    assert ("[graph] inputs changed since it ran: stage.lr 1 -> 2; running it again"
            in logs)
    assert spelling == [written, {"lr": 2}]


def test_a_record_of_every_earlier_spelling_is_current_unless_it_meant_otherwise(
        tmp_path, spelling, monkeypatch):
    """Records made under each earlier spelling (features.settings.SPELLINGS) on these
    settings are current: ``rate = 1.0`` as written, and as ``{"rate": 1}`` one
    spelling per value, before ``rate`` was recorded as ``lr``; the next build records
    them as ``lr`` without running the stage. A record made on settings that meant
    another thing then (the stage raises MeantOtherwiseThen under that spelling) is
    not: the stage runs, saying what changed."""
    from features.settings import AS_WRITTEN, ONE_SPELLING, settings_spelled
    from recommender.pipeline import plan_stages

    for n, spelled in enumerate((AS_WRITTEN, ONE_SPELLING)):
        b = Bundle.create(tmp_path / f"b{n}", source="demo", image_root=None)
        with settings_spelled(spelled):
            run_stages(BuildContext(bundle=b, config=_spelled({"rate": 1.0}),
                                    log=lambda m: None))
        old = Bundle.open(b.root).stage_record("graph")
        assert old["inputs"] == {"stage": {"rate": 1.0 if spelled == AS_WRITTEN else 1}}
        assert plan_stages(BuildContext(bundle=Bundle.open(b.root), config=_spelled(
            {"rate": 1.0})))[1] == ("graph", "up to date"), spelled
        logs = []
        run_stages(BuildContext(bundle=Bundle.open(b.root), config=_spelled({"rate": 1.0}),
                                log=logs.append))
        assert "[graph] up to date, skipped" in logs
        assert Bundle.open(b.root).stage_record("graph")["inputs"] == {"stage": {"lr": 1}}
        assert plan_stages(BuildContext(bundle=Bundle.open(b.root), config=_spelled(
            {"lr": 1})))[1] == ("graph", "up to date"), spelled
    assert len(spelling) == 2
    b = Bundle.create(tmp_path / "meant", source="demo", image_root=None)
    with settings_spelled(AS_WRITTEN), monkeypatch.context() as before:
        before.setattr(spelling_stage, "IGNORED_THEN", ())
        run_stages(BuildContext(bundle=b, config=_spelled({"steps": 3}),
                                log=lambda m: None))
    said = ("inputs changed since it ran: stage.epochs (absent) -> 3; "
            "stage.steps 3 -> (absent)")
    assert plan_stages(BuildContext(bundle=Bundle.open(b.root), config=_spelled(
        {"steps": 3})))[1] == ("graph", f"would run: {said}")
    logs = []
    run_stages(BuildContext(bundle=Bundle.open(b.root), config=_spelled({"steps": 3}),
                            log=logs.append))
    assert len(spelling) == 4 and f"[graph] {said}; running it again" in logs, logs


def test_a_record_as_written_is_not_current_when_forced_or_its_output_replaced(
        tmp_path, spelling):
    from features.settings import AS_WRITTEN, settings_spelled
    from recommender.pipeline import plan_stages

    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    with settings_spelled(AS_WRITTEN):
        run_stages(BuildContext(bundle=b, config=_spelled({"lr": 1.0}),
                                log=lambda m: None))
    assert plan_stages(BuildContext(bundle=Bundle.open(b.root), config=_spelled(
        {"lr": 1.0}), force=True))[1] == ("graph", "would run: forced (--force)")
    b.path("spelled.txt").write_text("by hand")
    assert plan_stages(BuildContext(bundle=Bundle.open(b.root),
                                    config=_spelled({"lr": 1.0})))[1] == (
        "graph", "would run: outputs changed since it ran: spelled.txt")


def test_a_stage_run_alone_does_not_call_a_record_as_written_out_of_date(tmp_path,
                                                                         spelling):
    # `mixmatch build --stages ingest` checks the stages after it: one recorded before
    # on these settings as written is current, not "built from inputs that changed"
    from features.settings import AS_WRITTEN, settings_spelled

    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    with settings_spelled(AS_WRITTEN):
        run_stages(BuildContext(bundle=b, config=_spelled({"lr": 1.0}),
                                log=lambda m: None))
    logs = []
    run_stages(BuildContext(bundle=Bundle.open(b.root), config=_spelled({"lr": 1.0}),
                            force=True, log=logs.append), ["ingest"])
    assert counting_stage.RUNS == [1, 1] and spelling == [{"lr": 1.0}]
    assert not [m for m in logs if "out of date" in m], logs
    logs = []
    run_stages(BuildContext(bundle=Bundle.open(b.root), config=_spelled({"lr": 3}),
                            force=True, log=logs.append), ["ingest"])
    assert [m for m in logs if "stage(s) graph of bundle" in m and "out of date" in m]


def _demo_build(tmp_path, *, images=True, stages="ingest"):
    """A 4-item demo bundle ``B`` built by the CLI from ``tmp_path/data`` (the demo
    catalogue of 4 items and seed 0 its marker says, images/ of 30 x 20 JPEGs; with
    ``images`` False every ``image_path`` empty), the ``stages`` run."""
    import pandas as pd

    from api.cli import main
    from tests.recommender.test_ingest import _demo

    data = _demo(tmp_path / "data")
    if not images:
        cat = pd.read_csv(data / "catalog.csv", keep_default_na=False)
        cat.assign(image_path="").to_csv(data / "catalog.csv", index=False)
    (data / "demo.json").write_text(json.dumps({"seed": 0, "n_items": 4}))
    root = tmp_path / "B"
    assert main(["build", "--source", "demo", "--data", str(data), "--items", "4",
                 "--quick", "--out", str(root), "--stages", stages]) == 0
    return root, data


def _bundle_state(root):
    """:func:`_folder_state` but the write lock (a writer's mark, no bundle file)."""
    return {k: v for k, v in _folder_state(root).items() if k != ".write.lock"}


def test_a_stage_reading_images_is_refused_while_the_image_folder_is_gone(tmp_path,
                                                                         capsys):
    # before: the attribute, keypoint and features stages ran on the image root the
    # bundle recorded even when it was gone, seeing every image missing: an attribute
    # network trained on nothing, a features table of failed images over the good one
    import shutil

    from api.cli import main

    root, data = _demo_build(tmp_path)
    shutil.move(data, tmp_path / "moved")
    capsys.readouterr()
    before = _bundle_state(root)
    relocate = (f"record its new place without rerunning a stage: mixmatch build "
                f"--source demo --data NEWDIR --items 4 --quick --out {root}; else put "
                f"the images back in {data}")
    for command in (["features"], ["train", "--stage", "attributes"],
                    ["train", "--stage", "keypoints"]):
        assert main([*command, "--bundle", str(root)]) == 2, command
        err = capsys.readouterr().err
        name = command[-1]
        assert (f"mixmatch {command[0]}: error: stage {name} reads the catalogue's "
                f"images, and the image folder {data} does not exist: moved or "
                f"unmounted? Run now, it would see every image missing; refused before "
                f"writing anything. If the data moved, {relocate}\n") == err
        assert main([*command, "--bundle", str(root), "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert (f"  {name:<12}  would be refused: stage {name} reads the catalogue's "
                f"images, and the image folder {data} does not exist") in out
        assert "would run" not in out
    assert _bundle_state(root) == before and Bundle.open(root).image_root == data
    # unmounted: the folder is there, none of the images is
    data.mkdir()
    assert main(["features", "--bundle", str(root)]) == 2
    assert (f"and none of the catalogue's 4 images is in the image folder {data}: moved "
            f"or unmounted?") in capsys.readouterr().err
    data.rmdir()
    assert _bundle_state(root) == before


@pytest.mark.slow
def test_features_refused_on_a_gone_image_folder_keep_the_bundle_and_run_once_it_is_back(
        tmp_path, capsys):
    # before: `mixmatch features` on a bundle whose data folder had moved saw the
    # images' hash change (every one missing) and rewrote features/ with every row a
    # failed image, over the good table
    import shlex
    import shutil

    from api.cli import main

    root, data = _demo_build(tmp_path, stages="ingest,features")
    moved = tmp_path / "moved"
    shutil.move(data, moved)
    capsys.readouterr()
    before = _bundle_state(root)
    assert main(["features", "--bundle", str(root)]) == 2
    err = capsys.readouterr().err
    assert (f"stage features reads the catalogue's images, and the image folder {data} "
            f"does not exist: moved or unmounted? Run now, it would see every image "
            f"missing and replace what it made from them; refused before writing "
            f"anything.") in err
    assert main(["features", "--bundle", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "  features      would be refused: stage features reads" in out
    assert "images.hash" not in out
    assert _bundle_state(root) == before   # features/, models, manifest, cache
    # put back: current, as before
    shutil.move(moved, data)
    assert main(["features", "--bundle", str(root)]) == 0
    assert "[features] up to date, skipped" in capsys.readouterr().err
    # the images' hashes, too new to record at the build, are recorded now
    assert {k: v for k, v in _bundle_state(root).items() if not k.startswith("cache")
            } == before
    # moved again, and the build the error names run with the new place: recorded,
    # nothing rerun, and the stage command finds the features current there
    shutil.move(data, moved)
    assert main(["features", "--bundle", str(root)]) == 2
    err = capsys.readouterr().err
    command = err.split("without rerunning a stage: ")[1].split(";")[0]
    assert main(shlex.split(command.replace("NEWDIR", str(moved)))[1:]
                + ["--stages", "ingest,features"]) == 0
    err = capsys.readouterr().err
    assert (f"[features] same content at a new place (image_root {data} -> {moved}): "
            f"recorded the new place; not run again") in err
    assert Bundle.open(root).image_root == moved
    features = {k: v for k, v in _bundle_state(root).items() if k.startswith("features")}
    assert features == {k: v for k, v in before.items() if k.startswith("features")}
    assert main(["features", "--bundle", str(root)]) == 0
    assert "[features] up to date, skipped" in capsys.readouterr().err


def test_a_catalogue_without_images_is_not_refused_where_its_folder_is_gone(tmp_path,
                                                                           capsys):
    import shutil

    from api.cli import main

    root, data = _demo_build(tmp_path, images=False)
    shutil.rmtree(data)
    capsys.readouterr()
    assert main(["features", "--bundle", str(root), "--dry-run"]) == 0
    assert "  features      would run: not run before\n" in capsys.readouterr().out
    assert main(["features", "--bundle", str(root)]) == 0
    assert '"n_items": 4, "n_failed": 4' in capsys.readouterr().out


def test_a_build_refused_at_an_image_stage_runs_no_stage_before_it(tmp_path, capsys):
    # before: `--stages split,attributes` with the image folder gone wrote the split
    # (eval/, the manifest), then refused the attribute stage
    import shutil

    from api.cli import main

    root, data = _demo_build(tmp_path)
    shutil.rmtree(data / "images")
    capsys.readouterr()
    before = _bundle_state(root)
    argv = ["build", "--source", "demo", "--data", str(data), "--quick", "--out",
            str(root), "--stages", "split,attributes"]
    refusal = (f"stage attributes reads the catalogue's images, and none of the "
               f"catalogue's 4 images is in the image folder {data}: moved or unmounted?")
    assert main(argv + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert _planned(out, "split") == "would run: not run before"
    assert _planned(out, "attributes").startswith(f"would be refused: {refusal}")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"mixmatch build: error: {refusal}" in err and "[split]" not in err
    assert _bundle_state(root) == before


@pytest.mark.parametrize("check", [True, False])
def test_a_build_on_a_folder_without_the_images_is_refused_before_its_ingest(tmp_path,
                                                                            capsys, check):
    # before: the ingest and the split ran on the catalogue of the folder --data named,
    # then the attribute stage was refused (check_images false: every image flagged
    # there) or, the ingest having flagged every image missing, trained on none (while
    # the dry run said it would be refused): the bundle's catalogue and split replaced
    import shutil

    from api.cli import main
    from tests.recommender.test_ingest import _demo

    data = _demo(tmp_path / "data")
    (data / "demo.json").write_text(json.dumps({"seed": 0, "n_items": 4}))
    config = tmp_path / "c.toml"
    config.write_text(f"[stages.ingest]\ncheck_images = {str(check).lower()}\n")
    root = tmp_path / "B"
    argv = ["build", "--source", "demo", "--quick", "--config", str(config), "--out",
            str(root)]
    assert main(argv + ["--data", str(data), "--stages", "ingest"]) == 0
    new = tmp_path / "new"   # the tables copied, the images not
    new.mkdir()
    for name in ("catalog.csv", "outfits.csv", "demo.json"):
        shutil.copy(data / name, new)
    capsys.readouterr()
    before = _bundle_state(root)
    refusal = (f"stage attributes reads the catalogue's images, and none of the "
               f"catalogue's 4 images is in the image folder {new}: moved or unmounted? "
               f"Run now, it would see every image missing; refused before writing "
               f"anything.")
    assert main(argv + ["--data", str(new), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert _planned(out, "ingest").startswith("would run: inputs changed since it ran: "
                                              "data …")
    assert _planned(out, "split") == "would run: not run before"
    assert _planned(out, "attributes").startswith(f"would be refused: {refusal}")
    assert main(argv + ["--data", str(new)]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch build: error: {refusal}" in err
    assert "[ingest]" not in err and "[split]" not in err
    assert _bundle_state(root) == before and Bundle.open(root).image_root == data


@pytest.fixture
def ingest_split_images(monkeypatch):
    """The pipeline's stages, for one test: the real ingest and split, then an image
    stage (``attributes``: tests.recommender.catalog_images_stage) that records the
    image root it ran on; its runs returned."""
    from tests.recommender import catalog_images_stage

    catalog_images_stage.RUNS.clear()
    monkeypatch.setattr(pipeline, "STAGES", pipeline.STAGES[:2] + (
        Stage("attributes", "tests.recommender.catalog_images_stage", 0, "images"),))
    return catalog_images_stage.RUNS


def test_an_image_stage_whose_images_the_ingest_finds_runs_and_plans_once(
        tmp_path, capsys, monkeypatch, ingest_split_images):
    # the refusal decided before the ingest runs refuses nothing that the images of
    # the catalogue it writes allow; a build whose images are where the bundle and
    # the source say is not planned (its inputs hashed twice) to find out
    import shutil

    from api.cli import main

    plans = []
    planned = pipeline._planned
    monkeypatch.setattr(pipeline, "_planned", lambda *a: plans.append(a) or planned(*a))
    root, data = _demo_build(tmp_path, stages="ingest,split,attributes")
    assert ingest_split_images == [str(data)] and plans == []
    # the catalogue changed where it is: ingested, split, and the image stage runs
    cat = pd.read_csv(data / "catalog.csv", keep_default_na=False)
    cat.assign(colour="BLACK").to_csv(data / "catalog.csv", index=False)
    argv = ["build", "--source", "demo", "--quick"]
    assert main(argv + ["--data", str(data), "--out", str(root)]) == 0
    assert "[ingest] inputs changed since it ran: files.catalog.csv " in (
        capsys.readouterr().err)
    assert ingest_split_images == [str(data)] * 2 and plans == []
    # moved with its images: the new place recorded, nothing run
    moved = tmp_path / "moved"
    shutil.move(data, moved)
    assert main(argv + ["--data", str(moved), "--out", str(root)]) == 0
    assert (f"[attributes] same content at a new place (image_root {data} -> {moved}): "
            f"recorded the new place; not run again") in capsys.readouterr().err
    # planned once: where the bundle records them, the images are gone
    assert ingest_split_images == [str(data)] * 2 and len(plans) == 1
    assert main(argv + ["--data", str(moved), "--out", str(root)]) == 0
    assert len(plans) == 1
    # a new bundle of a catalogue whose images are all missing: the ingest flags them,
    # and the image stage runs on the catalogue as ingested (it had no image to lose)
    shutil.rmtree(moved / "images")
    assert main(argv + ["--data", str(moved), "--out", str(tmp_path / "B2")]) == 0
    assert "4 without a usable image" in capsys.readouterr().err
    assert ingest_split_images[2:] == [str(moved)] and len(plans) == 1


def test_the_build_named_to_record_a_new_place_runs_as_printed_with_the_bundles_tables(
        tmp_path, capsys, ingest_split_images):
    # before: a bundle built with a --config file of stage tables was told to record
    # its new place with `--config FILE_OF_ITS_STAGE_TABLES`, a placeholder; the build
    # without them reran the stages they set (here the ingest, for image_sample)
    import shlex
    import shutil

    from api.cli import main
    from tests.recommender.test_ingest import _demo

    data = _demo(tmp_path / "data")
    (data / "demo.json").write_text(json.dumps({"seed": 0, "n_items": 4}))
    config = tmp_path / "tables.toml"
    config.write_text("[stages.ingest]\nimage_sample = 100\n\n"
                      "[stages.split]\ntest_fraction = 0.5\n")
    root = tmp_path / "B"
    assert main(["build", "--source", "demo", "--data", str(data), "--quick", "--config",
                 str(config), "--out", str(root)]) == 0
    assert ingest_split_images == [str(data)]
    moved = tmp_path / "moved"
    shutil.move(data, moved)
    config.unlink()   # the command does not need the file the bundle was built with
    capsys.readouterr()
    assert main(["train", "--bundle", str(root), "--stage", "attributes"]) == 2
    command = capsys.readouterr().err.split("without rerunning a stage: ")[1].split(
        "; else put")[0]
    manifest = root / "manifest.json"
    assert command == (f"mixmatch build --source demo --data NEWDIR --items 4 --quick "
                       f"--holdout 0.5 --config {manifest} --out {root}")
    argv = shlex.split(command.replace("NEWDIR", str(moved)))[1:]
    # without the bundle's tables the ingest would run again (image_sample)
    without = argv[:argv.index("--config")] + argv[argv.index("--config") + 2:]
    assert main(without + ["--dry-run"]) == 0
    assert _planned(capsys.readouterr().out, "ingest").endswith("image_sample 100 -> null")
    def outputs():   # the stages' (the images' hashes at the new place are cached)
        return {k: v for k, v in _bundle_state(root).items()
                if k != "manifest.json" and not k.startswith("cache")}

    before = outputs()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (f"[ingest] same content at a new place (data {data} -> {moved}): recorded "
            f"the new image root {moved}; not run again") in err
    assert "[split] up to date, skipped" in err
    assert (f"[attributes] same content at a new place (image_root {data} -> {moved}): "
            f"recorded the new place; not run again") in err
    assert ingest_split_images == [str(data)]
    b = Bundle.open(root)
    assert b.image_root == moved and b.manifest["config"]["stages"] == {
        "ingest": {"image_sample": 100}, "split": {"test_fraction": 0.5}}
    assert outputs() == before
    assert main(["train", "--bundle", str(root), "--stage", "attributes"]) == 0
    assert "[attributes] up to date, skipped" in capsys.readouterr().err


@pytest.mark.parametrize("config, says", [
    ({"source": "mango", "data": "/d/mango", "seed": 0, "quick": False},
     "--source mango --data NEWDIR --out B"),
    ({"source": "mango", "data": "/d/mango", "seed": 3, "quick": False,
      "stages": {"split": {"test_fraction": 0.0}}},
     "--source mango --data NEWDIR --seed 3 --holdout 0.0 --out B"),
    ({"source": "demo", "items": 2000, "seed": 0, "quick": False,
      "stages": {"attributes": {"epochs": 3}}},
     "--source demo --data NEWDIR --config B/manifest.json --out B"),
    ({"source": "csv", "mapping": "/shop/m.toml", "data": "/shop/export.csv",
      "seed": 0, "quick": True},
     "--source csv --mapping NEWDIR/m.toml --data NEWDIR/export.csv --quick --out B"),
])
def test_the_build_named_to_record_a_new_place_has_the_bundles_options(config, says):
    # a build with other options than the bundle's would rerun the stages they change
    # (and a demo build of another --items generate a new catalogue into NEWDIR)
    from recommender.build import source_stage_defaults
    from recommender.pipeline import relocate_command

    if config["source"] == "mango" and "stages" not in config:
        config["stages"] = source_stage_defaults("mango")
    elif config["source"] == "mango":
        config["stages"] = {**source_stage_defaults("mango"), **config["stages"]}
    assert relocate_command(Bundle("B", {"config": config})) == "mixmatch build " + says
