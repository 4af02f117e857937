import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import build_parser, main

COMMANDS = ["ingest", "demo", "features", "train", "graph", "build", "make-eval",
            "evaluate", "serve", "events", "up"]


def _parsers(parser, path=()):
    """``(path, parser)`` of the ``mixmatch`` parser and of every subparser under it,
    nested ones (``events backup``) included, as ``--help`` reaches them."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def _command_paths():
    return [path for path, _ in _parsers(build_parser()) if path]


def test_the_walk_finds_every_command():
    # the help tests below walk the parser: a walk that found nothing would pass them
    paths = _command_paths()
    assert sorted(p[0] for p in paths if len(p) == 1) == sorted(COMMANDS)
    assert ("events", "backup") in paths and ("events", "restore") in paths


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mixmatch " + " ".join(path) in out


def test_every_option_says_what_it_is_and_its_default():
    """``mixmatch <command> --help`` explains every option: before, ``up --help`` listed
    ``--bundle BUNDLE --items ITEMS --host HOST ...`` with nothing beside them, and a
    user read the source to learn what ``--items`` defaults to."""
    import argparse

    bare, no_default = [], []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            name = " ".join(("mixmatch", *path, action.option_strings[-1]))
            if not (action.help or "").strip():
                bare.append(name)
            elif (action.default not in (None, False) and "%(default)s" not in action.help
                  and not ("default" in action.help
                           and str(action.default) in action.help)):
                no_default.append(f"{name} (default {action.default!r})")
    assert not bare, "options without help: " + ", ".join(bare)
    assert not no_default, "defaults not named: " + ", ".join(no_default)


def test_up_help_shows_the_defaults_and_examples_on_lines_of_their_own(capsys):
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    out = capsys.readouterr().out
    for said in ("(default: bundles/demo)", "(default: 1000;", "(default: 127.0.0.1,",
                 "0-65535 (default: 8000)", "at least 1 (default: 2)"):
        assert said in " ".join(out.split()), said
    # an epilog wrapped as prose would run the example commands into one paragraph
    assert "\nexamples:\n  mixmatch up  " in out
    assert "\n  mixmatch up --no-serve  " in out


def test_build_stages_help_names_every_stage():
    # the list is written out in the help (the CLI imports no stage code for --help)
    from recommender.pipeline import STAGE_NAMES

    [build] = [parser for path, parser in _parsers(build_parser()) if path == ("build",)]
    [stages] = [a for a in build._actions if a.dest == "stages"]
    assert ", ".join(STAGE_NAMES) in stages.help


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "api.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for c in COMMANDS:
        assert c in out


def test_bad_input_is_exit_2_with_the_value_named(tmp_path, capsys):
    rc = main(["build", "--source", "csv", "--out", str(tmp_path / "b")])
    assert rc == 2
    assert "--mapping" in capsys.readouterr().err


def test_evaluate_without_a_target_is_refused(capsys):
    assert main(["evaluate"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_up_and_serve_name_a_taken_port_before_building(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bundle = tmp_path / "demo"
        rc = main(["up", "--bundle", str(bundle), "--port", str(port)])
        err = capsys.readouterr().err
        assert rc == 2
        assert f"port {port} on 127.0.0.1 is already in use" in err
        assert not bundle.exists()  # refused before minutes of building, nothing written
        rc = main(["serve", "--bundle", str(bundle), "--port", str(port)])
        assert rc == 2
        assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
    # the same port, released, passes the check
    from api.server import check_port
    assert check_port("127.0.0.1", port) is None
    assert main(["up", "--bundle", str(bundle), "--port", "70000"]) == 2
    assert "port must be 0-65535, got 70000" in capsys.readouterr().err
    # an address this machine does not have (TEST-NET-1, no name lookup)
    assert main(["serve", "--bundle", str(bundle), "--host", "192.0.2.1"]) == 2
    assert "cannot listen on 192.0.2.1:8000" in capsys.readouterr().err


def test_evaluate_retrieval_without_a_bundle_is_refused(capsys):
    # before: TypeError traceback from Path(None), exit 1
    assert main(["evaluate", "--retrieval"]) == 2
    assert "--retrieval needs --bundle" in capsys.readouterr().err


def test_evaluate_refuses_every_missing_input_before_scoring(tmp_path, capsys, monkeypatch):
    import api.cli as cli

    called = []
    monkeypatch.setattr(cli, "_impl", lambda *a: called.append(a) or (lambda *x, **k: {}))
    # --retrieval without a bundle is named before the keypoint files are scored
    (tmp_path / "t.csv").write_text("x")
    assert main(["evaluate", "--keypoints-truth", str(tmp_path / "t.csv"),
                 "--keypoints-pred", str(tmp_path / "t.csv"), "--retrieval"]) == 2
    assert "--retrieval needs --bundle" in capsys.readouterr().err
    # a FITB or compatibility file that is not there is named, not a FileNotFoundError
    # traceback after the bundle and its model were loaded and the FITB file scored
    for opt in ("--fitb", "--compat"):
        missing = tmp_path / "no such.file"
        assert main(["evaluate", "--bundle", str(tmp_path), opt, str(missing)]) == 2
        err = capsys.readouterr().err
        assert f"{opt} file not found: {missing}" in err
        assert "Traceback" not in err
        assert main(["evaluate", "--bundle", str(tmp_path), opt, str(tmp_path)]) == 2
        assert f"{opt} file not found: {tmp_path}" in capsys.readouterr().err
    assert main(["evaluate", "--bundle", str(tmp_path), "--fitb", str(tmp_path / "t.csv"),
                 "--compat", str(tmp_path / "gone.tsv")]) == 2
    assert "--compat file not found" in capsys.readouterr().err
    # an empty (or blank) file is named too: it scored nothing and exited 0
    for opt, what in (("--fitb", "questions"), ("--compat", "outfits")):
        empty = tmp_path / f"empty{opt}"
        empty.write_text("\n  \n")
        assert main(["evaluate", "--bundle", str(tmp_path), opt, str(empty)]) == 2
        assert f"{opt} file {empty} is empty: it has no {what} to score" \
            in capsys.readouterr().err
    assert called == []


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_serve_and_up_refuse_a_worker_count_below_one(tmp_path, capsys, workers):
    # before: serve --workers 0 started a gunicorn master with no worker, listening but
    # never answering; -1 exited 1 with gunicorn's "Value must be positive"; up did
    # either only after building the demo bundle
    bundle = tmp_path / "demo"
    for cmd in ("serve", "up"):
        rc = main([cmd, "--bundle", str(bundle), "--port", "0", "--workers", workers])
        assert rc == 2
        assert f"--workers must be at least 1, got {workers}" in capsys.readouterr().err
        assert not bundle.exists()


def test_serve_says_there_is_no_bundle_at_a_file_or_a_missing_folder(tmp_path, capsys):
    # before: --bundle naming a file was "cannot open the events database
    # FILE/serving/events.db: Not a directory", and a missing folder was created (with
    # serving/ and its events database) before "no bundle at ... (no manifest.json)"
    afile, missing = tmp_path / "bundle.tar", tmp_path / "nowhere"
    afile.write_bytes(b"not a bundle")
    for path, why in ((afile, "a file, not a bundle folder"), (missing, "no such folder")):
        assert main(["serve", "--bundle", str(path), "--port", "0", "--dev"]) == 2
        err = capsys.readouterr().err
        assert f"mixmatch serve: error: no bundle at {path} ({why})" in err, err
        assert "events database" not in err and "Traceback" not in err
    assert afile.read_bytes() == b"not a bundle" and not missing.exists()


def test_serve_refusing_a_damaged_bundle_leaves_no_serving_folder(tmp_path, capsys):
    # before: BUNDLE/serving/ and an empty events database were made, then the
    # damaged catalogue refused; the folder stayed, though nothing was ever served
    from tests.recommender.tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "bundle")
    shutil.rmtree(bundle / "serving", ignore_errors=True)
    cat = bundle / "catalog.parquet"
    cat.write_bytes(cat.read_bytes()[:200])
    assert main(["serve", "--bundle", str(bundle), "--port", "0", "--dev"]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {cat}" in err and "Traceback" not in err, err
    assert not (bundle / "serving").exists()
    # a serving folder that was there (events of earlier runs) is kept whole
    (bundle / "serving").mkdir()
    (bundle / "serving" / "events.db").write_bytes(b"")
    assert main(["serve", "--bundle", str(bundle), "--port", "0", "--dev"]) == 2
    assert (bundle / "serving" / "events.db").exists()


def test_serve_names_a_config_file_that_is_missing_or_not_text(tmp_path, capsys):
    # before: FileNotFoundError / UnicodeDecodeError tracebacks (exit 1)
    missing = tmp_path / "no such.toml"
    assert main(["serve", "--bundle", str(tmp_path), "--port", "0",
                 "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"API config file not found: {missing}" in err and "Traceback" not in err
    latin = tmp_path / "serve.toml"
    latin.write_bytes('EVENTS_DB = "caf\xe9.db"\n'.encode("latin-1"))
    assert main(["serve", "--bundle", str(tmp_path), "--port", "0",
                 "--config", str(latin)]) == 2
    assert f"{latin}: not UTF-8 text" in capsys.readouterr().err


def test_an_api_config_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    # before: Notepad's UTF-8 (a BOM first) was "Invalid statement (at line 1, column 1)"
    from api.app import load_config_file

    cfg = tmp_path / "serve.toml"
    cfg.write_bytes(b"\xef\xbb\xbf" + 'EVENTS_DB = "caf\u00e9.db"\n'.encode())
    assert load_config_file(cfg) == {"EVENTS_DB": "caf\u00e9.db"}


@pytest.mark.parametrize("line, key", [
    ('RULES_FILES = ["v2.toml"]', "RULES_FILES"),
    ("RULES_FILES = { v2 = 5 }", "RULES_FILES"),
    ("RULES = 5", "RULES"),
    ('RULES = ["rules.toml"]', "RULES"),
    ("EXPERIMENTS = 3", "EXPERIMENTS"),
    ('MODELS = ["b2"]', "MODELS"),
    ("EVENTS_DB = 5", "EVENTS_DB"),
    ("DATA_DIR = 5", "DATA_DIR"),
])
def test_serve_names_a_rules_or_experiments_setting_of_the_wrong_type(tmp_path, capsys,
                                                                      line, key):
    """``mixmatch serve --config``: a list where RULES_FILES' table of name = path
    belongs was a ValueError traceback ("dictionary update sequence element #0", exit
    1); a number or a list where a path belongs exited 2 with "expected str, bytes or
    os.PathLike object, not int", naming no setting."""
    from tests.recommender.tiny_bundle import make_tiny_bundle

    err = _serve_refused(tmp_path, make_tiny_bundle(tmp_path / "bundle"), line, capsys)
    assert f"error: {key} must be" in err, err


@pytest.mark.parametrize("address, why", [
    ("scheduler", "missing port number"),
    ("tcp://host:port", "invalid literal"),
    ("foo://host:8786", "unknown address scheme 'foo'"),
])
def test_build_and_stages_name_a_malformed_scheduler_address(tmp_path, capsys, address,
                                                             why):
    """``--engine dask --scheduler notaurl`` was a ValueError traceback from inside
    distributed.Client once the build had started (exit 1), then a 60 s wait for the
    half-made client to close; now refused before anything, dry run included."""
    from tests.recommender.tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "bundle")
    for argv in (["build", "--out", str(tmp_path / "new"), "--dry-run"],
                 ["build", "--out", str(tmp_path / "new")],
                 ["graph", "--bundle", str(bundle), "--force"]):
        assert main(argv + ["--engine", "dask", "--scheduler", address]) == 2, argv
        err = capsys.readouterr().err
        assert (f"error: --scheduler {address!r} is not a Dask scheduler address" in err
                and why in err and "Traceback" not in err), err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("items", ["0", "-1"])
def test_build_refuses_a_catalogue_size_below_one_before_a_dry_run_plans_it(
        tmp_path, capsys, items):
    """``mixmatch build --items 0 --dry-run`` printed "would generate 0 items" and
    exited 0, and the build itself said "generating 0 items" before the refusal."""
    for extra in (["--dry-run"], []):
        assert main(["build", "--out", str(tmp_path / "b"), "--items", items]
                    + extra) == 2
        captured = capsys.readouterr()
        assert f"error: items must be a whole number >= 1, got {items}" in captured.err
        assert "generat" not in captured.out + captured.err, captured
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("line, named", [
    ('WATCH_INTERVAL = "abc"',
     "WATCH_INTERVAL must be a number of seconds >= 0, got 'abc'"),
    ("WATCH_INTERVAL = -1", "WATCH_INTERVAL must be a number of seconds >= 0, got -1"),
    ('MAX_CONTENT_LENGTH = "big"', "MAX_CONTENT_LENGTH must be a whole number >= 1, got "
                                   "'big'"),
    ("MAX_IMAGE_BYTES = 0", "MAX_IMAGE_BYTES must be a whole number >= 1, got 0"),
    ("MAX_IMAGE_PIXELS = 1.5", "MAX_IMAGE_PIXELS must be a whole number >= 1, got 1.5"),
    ("CORS_ORIGINS = 5", 'CORS_ORIGINS must be "*" or a list of origins (strings), got 5'),
    ("CORS_ORIGINS = [5]", 'CORS_ORIGINS must be "*" or a list of origins (strings), got '
                           "[5]"),
    ('WARM_VISION = "false"', "WARM_VISION must be true or false, got 'false'"),
    ("LIMITS = {nosuch = 3}", "unknown LIMITS key 'nosuch' (allowed: max_k, "),
    ('LIMITS = {max_k = "many"}', "LIMITS max_k must be a whole number >= 1, got 'many'"),
    ("LIMITS = {max_k = -3}", "LIMITS max_k must be a whole number >= 1, got -3"),
    ("LIMITS = 5", "LIMITS must be a table of max_k, "),
])
def test_serve_names_a_bad_server_setting(tmp_path, capsys, line, named):
    """``mixmatch serve --config``: WATCH_INTERVAL = "abc" was a ValueError traceback
    (exit 1), an unknown LIMITS key a TypeError traceback ("Limits.__init__() got an
    unexpected keyword argument"); the others started a server failing or refusing
    every request (500). A CORS_ORIGINS string is one origin (tests/api: matched
    whole, not as a substring)."""
    err = _serve_refused(tmp_path, tmp_path, line, capsys)
    assert f"mixmatch serve: error: {named}" in err, err


def _serve_refused(tmp_path, bundle, line, capsys) -> str:
    """The error of ``mixmatch serve --dev`` on ``bundle`` with a config holding
    ``line`` (beside a DATA_DIR and WARM_VISION = false it replaces if it sets them),
    asserting exit 2 and no traceback."""
    cfg = tmp_path / "serve.toml"
    base = [f'DATA_DIR = "{tmp_path / "data"}"', "WARM_VISION = false"]
    cfg.write_text("\n".join([b for b in base if b.split()[0] != line.split()[0]]
                             + [line]) + "\n")
    assert main(["serve", "--dev", "--bundle", str(bundle), "--port", "0",
                 "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


def _strict_json(text):
    """json.loads that refuses NaN and Infinity, as jq and JSON.parse do."""
    import json

    def refuse(word):
        raise ValueError(f"not JSON: {word}")
    return json.loads(text, parse_constant=refuse)


def test_evaluate_json_prints_a_head_with_nothing_to_score_as_null(monkeypatch, capsys):
    # before: an attribute head with no labelled test product (n = 0) printed
    # "accuracy": NaN, which is not JSON: jq and JSON.parse refused the whole output
    import numpy as np

    import recommender.evaluation.evaluate as attr_eval

    nan = float("nan")
    monkeypatch.setattr(attr_eval, "evaluate_attributes", lambda bundle: {
        "heads": {"colour": {"accuracy": 0.75, "macro_f1": np.float32(0.5), "n": 8},
                  "sleeve_length_labels": {"accuracy": nan, "macro_f1": nan, "n": 0}},
        "fashionai_map": nan, "fashionai_ap": {"sleeve_length_labels": -np.inf}})
    assert main(["evaluate", "--bundle", "B", "--attributes", "--json"]) == 0
    out = _strict_json(capsys.readouterr().out)
    assert out["heads"]["sleeve_length_labels"] == {"accuracy": None, "macro_f1": None,
                                                    "n": 0}
    assert out["heads"]["colour"] == {"accuracy": 0.75, "macro_f1": 0.5, "n": 8}
    assert out["fashionai_map"] is None and out["fashionai_ap"] == {
        "sleeve_length_labels": None}


@pytest.mark.parametrize("argv", [
    ["demo", "--items", "20"], ["build", "--items", "20", "--stages", "ingest"],
    ["graph", "--bundle", "B"], ["make-eval", "--outfits", "o", "--catalog", "c"],
    ["evaluate", "--bundle", "B", "--retrieval"]])
def test_a_negative_seed_is_refused_by_name_before_any_work(tmp_path, capsys, argv):
    # before: mixmatch demo --seed -1 made the folder's subfolders, then exited 1 with
    # numpy's "ValueError: expected non-negative integer" traceback; build the same
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--out", str(out), "--seed", "-1"] if argv[0] in (
            "demo", "build", "make-eval") else argv + ["--seed", "-1"])
    assert exc.value.code == 2
    assert "argument --seed: must be a whole number >= 0, got '-1'" in (
        capsys.readouterr().err)
    assert not out.exists()


def test_train_without_stage_trains_what_a_build_of_the_source_would(tmp_path, monkeypatch,
                                                                     capsys):
    # before: `mixmatch train --bundle <mango bundle>` ran the keypoints stage too
    # (demo sources only): after the attribute network trained, it failed with
    # "source/fashionai/keypoints.csv missing", exit 2, the compatibility model untrained
    # and the bundle marked as being built, so serving refused it
    from recommender import build, pipeline
    from recommender.bundle import Bundle
    from recommender.pipeline import Stage

    stages = tuple(Stage(name, "tests.recommender.counting_stage", 0, name, sources=src)
                   for name, src in (("attributes", None), ("keypoints", ("demo",)),
                                     ("compatibility", None)))
    monkeypatch.setattr(pipeline, "STAGES", stages)
    monkeypatch.setattr(build, "STAGES", stages, raising=False)
    for source, trained in (("mango", {"attributes", "compatibility"}),
                            ("demo", {"attributes", "keypoints", "compatibility"})):
        root = Bundle.create(tmp_path / source, source=source, image_root=None,
                             config={"source": source}).root
        assert main(["train", "--bundle", str(root)]) == 0
        manifest = Bundle.open(root).manifest
        assert set(manifest["stages"]) == trained and "building" not in manifest
    assert "[keypoints] not a stage of a 'mango' bundle, skipped" in capsys.readouterr().err
    # named, it runs: a config may give a non-demo bundle a keypoint CSV
    assert main(["train", "--bundle", str(tmp_path / "mango"), "--stage", "keypoints"]) == 0
    assert "keypoints" in Bundle.open(tmp_path / "mango").manifest["stages"]


def test_serve_refuses_weights_edited_under_a_recorded_version_with_exit_2(tmp_path):
    """``mixmatch serve`` (gunicorn, app preloaded in the master) on an experiments file
    whose weights changed under a ``version`` the events database recorded with other
    weights: exit 2 with the message naming the version and saying to bump it, no
    traceback, no worker started. Run as a process (in its own session, killed if it
    served) because a refusal that failed would serve until stopped."""
    import os
    import signal

    from api.events import EventStore
    from tests.recommender.tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "bundle")
    db = tmp_path / "events.db"
    store = EventStore(db)
    store.add_exposures("r1", "u1", [("ranking", "strat", "def", False)], endpoint="t",
                        bundle_version="b", rules_version="r",
                        experiments_version="2024-06-01",
                        experiments_allocation={"strat": {"def": 1.0, "vis": 1.0}})
    store.close()
    exp = tmp_path / "experiments.toml"
    exp.write_text('version = "2024-06-01"\nsalt = "t"\n[[layers]]\nname = "ranking"\n'
                   '  [[layers.experiments]]\n  name = "strat"\n  coverage = 1.0\n'
                   '    [[layers.experiments.variants]]\n    name = "def"\n'
                   '    strategy = "default"\n    [[layers.experiments.variants]]\n'
                   '    name = "vis"\n    strategy = "visual"\n    weight = 3\n')
    cfg = tmp_path / "serve.toml"
    cfg.write_text(f'EVENTS_DB = "{db}"\nEXPERIMENTS = "{exp}"\nWARM_VISION = false\n')
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--bundle", str(bundle), "--port", "0",
         "--workers", "1", "--config", str(cfg)], cwd=root, start_new_session=True,
        env={**os.environ, "PYTHONPATH": root}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("mixmatch serve started on an experiments file it must refuse")
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    assert ("mixmatch serve: error: " in err and "version '2024-06-01' was recorded with "
            "other weights for experiment 'strat'" in err and "bump" in err), err
    # at start nothing was served before: no "previous version keeps serving"
    assert "keeps serving" not in err, err


def test_events_backup_and_restore_from_the_command_line(tmp_path, capsys):
    """A merchandiser or data scientist backs up and restores the events database with
    ``mixmatch`` alone (the sqlite3 tool is not on every machine); a path that is not
    what it should be is refused by name, exit 2, and nothing is created or written."""
    from api.ab_report import read_event_tables
    from api.events import EventStore

    db = tmp_path / "events.db"
    store = EventStore(db)
    store.add_events([{"type": "click", "request_id": "r1"}])
    out = tmp_path / "monday.db"
    assert main(["events", "backup", "--db", str(db), "--out", str(out)]) == 0
    assert f"backed up {db} into {out}: 1 events, 0 exposures" in capsys.readouterr().out
    store.add_events([{"type": "click", "request_id": "r2"}])
    assert main(["events", "restore", "--db", str(db), "--from", str(out)]) == 0
    assert f"restored {out} into {db}: 1 events" in capsys.readouterr().out
    assert read_event_tables(db)[1]["request_id"].tolist() == ["r1"]
    store.add_events([{"type": "click", "request_id": "r3"}])
    assert read_event_tables(db)[1]["request_id"].tolist() == ["r1", "r3"]
    store.close()

    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.close()
    missing = tmp_path / "nope.db"
    for argv, said in (
            (["backup", "--db", str(missing), "--out", str(tmp_path / "x.db")],
             f"--db {missing} does not exist"),
            (["backup", "--db", str(db), "--out", str(out)],
             f"--out {out} already exists"),
            (["backup", "--db", str(db), "--out", str(tmp_path / "no" / "x.db")],
             f"--out {tmp_path / 'no' / 'x.db'}: its folder {tmp_path / 'no'} does not "
             "exist"),
            (["backup", "--db", str(tmp_path), "--out", str(tmp_path / "x.db")],
             f"--db {tmp_path} is not a file"),
            (["restore", "--db", str(db), "--from", str(text)],
             f"--from {text} is not an events database: file is not a database"),
            (["restore", "--db", str(db), "--from", str(other)],
             f"--from {other} is not an events database: it has no events or exposures "
             "table"),
            (["restore", "--db", str(db), "--from", str(db)],
             f"--from {db} is the events database itself"),
            (["restore", "--db", str(missing), "--from", str(out)],
             f"--db {missing} does not exist")):
        assert main(["events", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert f"mixmatch events: error: {said}" in err, err
    assert not missing.exists() and not (tmp_path / "x.db").exists()
    assert read_event_tables(db)[1]["request_id"].tolist() == ["r1", "r3"]
    assert read_event_tables(out)[1]["request_id"].tolist() == ["r1"]


def _empty_csv_cases(tmp_path):
    """(argv, the file named) of every command reading a CSV a user gives, on an empty
    file (a failed export, a `>` that truncated it)."""
    mango, demo = tmp_path / "mango", tmp_path / "demo"
    mango.mkdir()
    demo.mkdir()
    (mango / "product_data.csv").write_text("")
    (demo / "catalog.csv").write_text("")
    (tmp_path / "p.csv").write_text("")
    mapping = tmp_path / "map.toml"
    mapping.write_text('catalog = "p.csv"\n[columns]\nitem_id = "sku"\ncategory = "type"\n')
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("item_id,category,subcategory,colour,material,gender,image_path\n"
                       "1,top,tee,RED,cotton,Female,\n2,bottom,jeans,BLUE,denim,Female,\n")
    outfits = tmp_path / "outfits.csv"
    outfits.write_text("outfit_id,item_id\nA,1\nA,2\n")
    out = str(tmp_path / "out")
    return [
        (["ingest", "--source", "mango", "--data", str(mango), "--out", out],
         f"MANGO file {mango / 'product_data.csv'} is empty"),
        (["ingest", "--source", "demo", "--data", str(demo), "--out", out],
         f"demo catalogue {demo / 'catalog.csv'} is empty"),
        (["ingest", "--source", "csv", "--mapping", str(mapping), "--out", out],
         f"{tmp_path / 'p.csv'} (mapping key catalog) is empty"),
        (["make-eval", "--outfits", str(empty), "--catalog", str(catalog), "--out", out],
         f"outfits file {empty} is empty"),
        (["make-eval", "--outfits", str(outfits), "--catalog", str(empty), "--out", out],
         f"catalogue file {empty} is empty"),
    ]


def test_an_empty_csv_is_named_not_a_traceback(tmp_path, capsys):
    # before: pandas' "EmptyDataError: No columns to parse from file" traceback, exit 1,
    # naming no file
    for argv, said in _empty_csv_cases(tmp_path):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"mixmatch {argv[0]}: error: {said}" in err, err
        assert "Traceback" not in err
        assert not (tmp_path / "out").exists()


def test_a_damaged_parquet_file_is_named_not_a_traceback(tmp_path, capsys):
    # before: pyarrow's "ArrowInvalid: ... Parquet magic bytes not found in footer"
    # traceback, exit 1, from make-eval, an ingest mapping naming a Parquet file, and
    # evaluate on a bundle whose catalogue copy was cut short
    import pandas as pd

    from tests.recommender.tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "bundle")
    good = pd.read_parquet(bundle / "catalog.parquet")
    whole = tmp_path / "whole.parquet"
    good.to_parquet(whole)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[:200])
    outfits = tmp_path / "outfits.csv"
    outfits.write_text("outfit_id,item_id\nA,1\nA,2\n")
    mapping = tmp_path / "map.toml"
    mapping.write_text('catalog = "cut.parquet"\n[columns]\nitem_id = "item_id"\n'
                       'category = "category"\n')
    fitb = tmp_path / "fitb.jsonl"
    fitb.write_text('{"question": ["1"], "answers": ["2", "3"], "label": 0}\n')
    out = str(tmp_path / "out")
    for argv, said in (
            (["make-eval", "--outfits", str(cut), "--catalog", str(whole), "--out", out],
             f"outfits file {cut} is not a readable Parquet file"),
            (["make-eval", "--outfits", str(outfits), "--catalog", str(cut), "--out", out],
             f"catalogue file {cut} is not a readable Parquet file"),
            (["ingest", "--source", "csv", "--mapping", str(mapping), "--out", out],
             f"{cut} (mapping key catalog) is not a readable Parquet file")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"mixmatch {argv[0]}: error: {said}" in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
    (bundle / "catalog.parquet").write_bytes(cut.read_bytes())
    assert main(["evaluate", "--bundle", str(bundle), "--fitb", str(fitb)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {bundle / 'catalog.parquet'}" in err and "damaged" in err, err


def test_out_naming_a_file_is_refused_by_name(tmp_path, capsys):
    # before: ingest and make-eval wrote nothing but ended with a FileExistsError
    # traceback from mkdir (exit 1)
    demo = tmp_path / "demo"
    assert main(["demo", "--out", str(demo), "--items", "6", "--fashionai-keypoints",
                 "none"]) == 0
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("item_id,category,subcategory,colour,material,gender,image_path\n"
                       "1,top,tee,RED,cotton,Female,\n2,bottom,jeans,BLUE,denim,Female,\n")
    outfits = tmp_path / "outfits.csv"
    outfits.write_text("outfit_id,item_id\nA,1\nA,2\n")
    capsys.readouterr()
    text = tmp_path / "notes.txt"
    text.write_text("mine")
    for argv in (["ingest", "--source", "demo", "--data", str(demo)],
                 ["make-eval", "--outfits", str(outfits), "--catalog", str(catalog)]):
        assert main(argv + ["--out", str(text)]) == 2, argv
        err = capsys.readouterr().err
        assert f"mixmatch {argv[0]}: error: --out {text} is a file, not a folder" in err
        assert "Traceback" not in err
    assert text.read_text() == "mine"


def test_build_and_up_name_a_file_given_as_a_folder_before_any_work(tmp_path, capsys):
    """A file as the bundle was refused only by the lock (FileExistsError in the
    message), after a dry run had planned to build there (exit 0); a file as --data
    was generated into, then refused as "--out FILE", an option not given."""
    text = tmp_path / "notes.txt"
    text.write_text("mine")
    for argv, named in (
            (["build", "--out", str(text), "--dry-run"], f"bundle folder {text} is a file"),
            (["build", "--out", str(text), "--items", "6"],
             f"bundle folder {text} is a file"),
            (["up", "--bundle", str(text), "--no-serve"],
             f"bundle folder {text} is a file"),
            (["build", "--out", str(tmp_path / "b"), "--data", str(text), "--dry-run"],
             f"--data {text} is a file, not a folder"),
            (["build", "--out", str(tmp_path / "b"), "--data", str(text), "--items", "6"],
             f"--data {text} is a file, not a folder")):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert f"mixmatch {argv[0]}: error: {named}" in captured.err, captured.err
        assert "generat" not in captured.err + captured.out and "Traceback" not in (
            captured.err)
    assert text.read_text() == "mine" and not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv", [["build", "--items", "6", "--out"],
                                  ["up", "--items", "6", "--no-serve", "--bundle"]])
def test_build_and_up_name_a_manifest_that_is_not_json_before_generating(tmp_path, capsys,
                                                                        argv):
    """A bundle whose manifest.json is damaged had the demo catalogue generated into it
    (seconds for ``up``'s 1000 items) before the manifest was read and refused."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{not json")
    assert main(argv + [str(bundle)]) == 2
    captured = capsys.readouterr()
    assert f"{bundle / 'manifest.json'} is not valid JSON" in captured.err, captured.err
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json"]
    assert (bundle / "manifest.json").read_text() == "{not json"


def test_demo_names_a_catalogue_size_too_large_for_memory(tmp_path, capsys, monkeypatch):
    """``mixmatch demo --items 100000000000`` was a numpy _ArrayMemoryError traceback
    (exit 1); the allocation is faked here, the real one asks for 745 GiB."""
    import recommender.demo as demo

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 745. GiB for an array")

    monkeypatch.setattr(demo, "generate_demo", out_of_memory)
    assert main(["demo", "--out", str(tmp_path / "d"), "--items", "100000000000"]) == 2
    err = capsys.readouterr().err
    assert ("mixmatch demo: error: not enough memory for a demo catalogue of --items "
            "100000000000 (Unable to allocate 745. GiB" in err), err


def test_demo_refuses_more_outfits_than_memory_holds_before_writing(tmp_path, capsys,
                                                                    monkeypatch):
    """``mixmatch demo --outfits 100000000000`` composed 50,000 outfits at a time for
    hours before running out of memory; refused up front, against the machine's
    memory (faked at 8 GiB here, so the figures do not depend on this machine)."""
    import recommender.demo.generate as gen

    monkeypatch.setattr(gen, "physical_memory", lambda: 8 * 2**30)
    out = tmp_path / "d"
    assert main(["demo", "--out", str(out), "--items", "30", "--outfits",
                 "100000000000"]) == 2
    err = capsys.readouterr().err
    assert ("mixmatch demo: error: outfits: 100000000000 would need about 69,849 GiB to "
            "compose, more than this machine's 8 GiB of memory; ask for fewer" in err), err
    assert not out.exists()
    # what fits is composed (10 million outfits: about 7 GiB)
    gen.check_outfit_count(10_000_000)


@pytest.mark.parametrize("stage", ["", " , "])
def test_train_refuses_a_stage_list_naming_no_stage(tmp_path, capsys, stage):
    """``mixmatch train --stage ""`` trained the default stages (exit 0), where
    ``build --stages ""`` is refused."""
    from tests.recommender.tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "bundle")
    assert main(["train", "--bundle", str(bundle), "--stage", stage, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch train: error: no stage named in {stage!r}" in err, err


@pytest.mark.parametrize("stage, runs", [
    ("ingest", "mixmatch build --out B --stages ingest"),
    ("attributes,graph", "mixmatch graph --bundle B")])
def test_train_refuses_a_stage_that_trains_no_model(tmp_path, capsys, stage, runs):
    """``mixmatch train --stage ingest`` ingested the source again, exit 0."""
    from tests.recommender.tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "bundle")
    before = (bundle / "manifest.json").read_bytes()
    # a name that is no stage at all is still said to be unknown
    assert main(["train", "--bundle", str(bundle), "--stage", "trian", "--dry-run"]) == 2
    assert "error: unknown stage 'trian'" in capsys.readouterr().err
    assert main(["train", "--bundle", str(bundle), "--stage", stage]) == 2
    err = capsys.readouterr().err
    bad = stage.split(",")[-1]
    assert (f"mixmatch train: error: train --stage {bad!r}: not a stage that trains a "
            f"model; `{runs}` runs it (allowed: attributes, keypoints, compatibility)"
            in err), err
    assert err.count("allowed:") == 1, err
    assert (bundle / "manifest.json").read_bytes() == before


def test_a_csv_not_utf8_is_named_not_a_traceback(tmp_path, capsys):
    # before: pandas' "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xf3"
    # traceback, exit 1, naming no file, for a MANGO product_data.csv or a demo
    # catalog.csv saved again by a spreadsheet as cp1252 (an accented name)
    mango, demo = tmp_path / "mango", tmp_path / "demo"
    mango.mkdir()
    demo.mkdir()
    (mango / "product_data.csv").write_bytes(
        "cod_modelo_color,des_product_family\n1-01,Camisa algodón\n".encode("cp1252"))
    (demo / "catalog.csv").write_bytes(
        "item_id,category,subcategory,colour,material,gender,image_path,colour_name\n"
        "D1,top,tee,RED,cotton,Female,images/camisón.jpg,rojo\n".encode("cp1252"))
    (demo / "demo.json").write_text('{"seed": 0, "n_items": 1}')  # not generated again
    out = str(tmp_path / "out")
    for argv, said in [
            (["ingest", "--source", "mango", "--data", str(mango), "--out", out],
             f"MANGO file {mango / 'product_data.csv'} is not UTF-8 text: byte b'\\xf3' on "
             "line 2; save the file as UTF-8"),
            (["ingest", "--source", "demo", "--data", str(demo), "--out", out],
             f"demo catalogue {demo / 'catalog.csv'} is not UTF-8 text: byte b'\\xf3' on "
             "line 2; save the file as UTF-8"),
            # the build reads the image paths first, for the stage's inputs
            (["build", "--source", "demo", "--data", str(demo), "--items", "1", "--out", out,
              "--stages", "ingest"],
             f"demo catalogue {demo / 'catalog.csv'} is not UTF-8 text")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"mixmatch {argv[0]}: error: {said}" in err and "Traceback" not in err, err
        assert not list((tmp_path / "out").glob("*.parquet"))


@pytest.mark.parametrize("command, rel", [
    (["graph"], "catalog.parquet"),
    (["graph"], "features/features.parquet"),
    (["graph"], "features/embeddings.npy"),
    (["graph"], "eval/train_outfits.parquet"),
    (["train", "--stage", "compatibility"], "eval/train_outfits.parquet"),
    (["features"], "catalog.parquet"),
])
def test_a_stage_names_a_damaged_bundle_file(tmp_path, capsys, command, rel):
    # before: pyarrow's "ArrowInvalid: ... Parquet magic bytes not found in footer" (or
    # numpy's "mmap length is greater than file size") traceback, exit 1, where
    # evaluate and serve already said which file of the bundle was damaged
    from tests.recommender.tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "bundle")
    path = bundle / rel
    path.write_bytes(path.read_bytes()[:200])
    assert main(command + ["--bundle", str(bundle), "--force"]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch {command[0]}: error: cannot read {path} (" in err, err
    assert "the bundle is damaged" in err and "Traceback" not in err


def test_the_readmes_example_commands_parse():
    """The ``mixmatch`` lines of the README's bash blocks are commands a reader copies:
    ``mixmatch build --engine dask`` was printed without the required ``--out``."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
             for line in block.splitlines() if line.startswith("mixmatch ")]
    assert len(lines) >= 4
    for line in lines:
        try:
            build_parser().parse_args(shlex.split(line, comments=True)[1:])
        except SystemExit:
            pytest.fail(f"README command does not parse: {line}")
