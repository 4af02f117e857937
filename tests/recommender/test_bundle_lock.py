"""One writer per bundle: a second build into a folder being built is refused by name."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from features.exceptions import BundleError
from recommender import pipeline
from recommender.bundle import LOCK, Bundle, write_lock
from recommender.pipeline import BuildContext, Stage, run_stages
from tests.recommender import counting_stage

ROOT = Path(__file__).resolve().parents[2]

#: a process building into the bundle argv[1], held in its stage until stdin closes
HOLDER = """
import sys
from recommender import pipeline
from recommender.bundle import Bundle
from recommender.pipeline import BuildContext, Stage, run_stages
pipeline.STAGES = (Stage("ingest", "tests.recommender.blocking_stage", 0, "block"),)
run_stages(BuildContext(bundle=Bundle.open(sys.argv[1]), config={}, log=lambda m: None))
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process that builds into a new bundle and holds it; yields it running."""
    root = tmp_path / "b"
    Bundle.create(root, source="demo", image_root=None)
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        try:
            line = proc.stdout.readline()
            assert line == "running\n", proc.stderr.read()
            yield root, proc
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def counting(monkeypatch):
    counting_stage.RUNS.clear()
    monkeypatch.setattr(pipeline, "STAGES",
                        (Stage("ingest", "tests.recommender.counting_stage", 0, "count"),))
    return counting_stage.RUNS


def test_a_second_writer_is_refused_naming_the_holder_then_runs_after_it(holder, counting,
                                                                       capsys):
    # before: nothing stopped a second build, and both wrote the stages' files and
    # the manifest, each overwriting the other's records with its own
    root, proc = holder
    with pytest.raises(BundleError, match=rf"{root}.* pid {proc.pid} on .* since "):
        run_stages(BuildContext(bundle=Bundle.open(root), config={"value": 1},
                                log=lambda m: None))
    from api.cli import main

    assert main(["graph", "--bundle", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"bundle {root} is being written by another process: pid {proc.pid}" in err
    assert main(["build", "--source", "demo", "--items", "10", "--out", str(root)]) == 2
    assert f"pid {proc.pid}" in capsys.readouterr().err
    assert not (root / "source").exists()  # refused before generating the demo
    assert counting == []
    # readers are not held up: the manifest opens (marked as being built meanwhile)
    with pytest.raises(BundleError, match="being built"):
        Bundle.open(root).check_complete()

    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert (root / LOCK).read_text() == ""  # a copy of the folder names no holder
    b = Bundle.open(root)
    b.check_complete()
    run_stages(BuildContext(bundle=b, config={"value": 1}, log=lambda m: None))
    assert counting == [1]


def test_a_writer_killed_while_holding_does_not_block_the_next(holder, counting):
    root, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    run_stages(BuildContext(bundle=Bundle.open(root), config={"value": 1},
                            log=lambda m: None))
    assert counting == [1]


def test_the_lock_nests_in_one_thread_and_refuses_another(tmp_path):
    errors = []

    def other():
        try:
            with write_lock(tmp_path):
                pass
        except BundleError as exc:
            errors.append(str(exc))

    with write_lock(tmp_path, command="mixmatch build --out x"):
        with write_lock(tmp_path):
            pass
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1 and f"pid {os.getpid()}" in errors[0]
    assert "(mixmatch build --out x)" in errors[0]
    with write_lock(tmp_path):  # released when the outer block ended
        pass


def test_a_bundle_marked_while_its_writer_runs_says_so_and_not_once_it_is_gone(tmp_path):
    # loaders tell a build under way (wait for it) from one that died (a fault)
    import json
    import socket

    from features.exceptions import BundleBeingBuilt

    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    b.manifest["building"] = {"stage": "graph", "since": "t0"}
    b.save()
    with b.write_lock(command="mixmatch graph"):
        assert Bundle.open(b.root).writer()["command"] == "mixmatch graph"
        with pytest.raises(BundleBeingBuilt, match=r"being built .* by pid \d+"):
            Bundle.open(b.root).check_complete()
    assert Bundle.open(b.root).writer() is None   # released: the file is emptied
    # a holder killed with SIGKILL leaves its name behind; its pid is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (b.root / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                           "command": "x", "since": "t0"}))
    assert Bundle.open(b.root).writer() is None
    with pytest.raises(BundleError, match="interrupted") as err:
        Bundle.open(b.root).check_complete()
    assert not isinstance(err.value, BundleBeingBuilt)


def test_a_dry_run_beside_a_running_build_reports_it_and_takes_no_lock(holder, counting,
                                                                       capsys):
    # a dry run reads only: refused like a writer, it could not say what the build in
    # progress will leave to do; it must not take the lock the build holds either
    from api.cli import main

    root, proc = holder
    before = sorted(p.name for p in root.iterdir())
    manifest = (root / "manifest.json").read_bytes()
    assert main(["build", "--out", str(root), "--items", "10", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"a build is running in it now: pid {proc.pid} on " in out
    assert (f"  ingest        running now (pid {proc.pid}); would run again if that run "
            f"does not finish\n") in out
    assert sorted(p.name for p in root.iterdir()) == before   # no demo source made
    assert (root / "manifest.json").read_bytes() == manifest
    assert f'"pid": {proc.pid}' in (root / LOCK).read_text()   # still the build's
    with pytest.raises(BundleError, match=f"pid {proc.pid}"):
        run_stages(BuildContext(bundle=Bundle.open(root), config={"value": 1},
                                log=lambda m: None))
    assert counting == []
