"""Live reload mechanics: atomic swap under concurrent readers, refusal of invalid files,
file watch, and the control file that carries an admin reload to every worker.

The state here is a small real object built from a JSON file (its fields must agree
with each other), not an engine: these tests are about the swap, not about serving.
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path

import pytest

from api.state import ReloadRefused, StateHolder


@dataclasses.dataclass(frozen=True)
class Versioned:
    version: int
    items: tuple          # derived from version: a torn state would not match


def build(spec) -> Versioned:
    with open(spec["bundle"]) as fh:
        data = json.load(fh)
    if data.get("valid") is False:
        raise ValueError(f"version {data['version']} is marked invalid")
    time.sleep(0.002)     # building takes time: readers run while a reload is underway
    v = int(data["version"])
    return Versioned(v, tuple(f"{v}-{i}" for i in range(50)))


def sig(spec):
    import os
    st = os.stat(spec["bundle"])
    return (st.st_mtime_ns, st.st_size)


def write(path, version, valid=True):
    path.write_text(json.dumps({"version": version, "valid": valid}))


def consistent(s: Versioned) -> bool:
    return all(x == f"{s.version}-{i}" for i, x in enumerate(s.items))


def test_swap_is_atomic_under_concurrent_readers(tmp_path):
    f = tmp_path / "state.json"
    write(f, 0)
    holder = StateHolder(build, {"bundle": str(f)}, signature=sig)
    seen, torn, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set():
            s = holder.current()
            if not consistent(s):
                torn.append(s)
            seen.add(s.version)
            time.sleep(0.0001)   # let the writer run: a busy loop starves it of the GIL

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    refused = 0
    for v in range(1, 41):
        write(f, v, valid=v % 5 != 0)   # every fifth file is invalid
        try:
            holder.reload()
        except ReloadRefused:
            refused += 1
            assert holder.current().version == v - 1   # the previous one keeps serving
    stop.set()
    for t in readers:
        t.join()
    assert not torn
    assert refused == 8 and holder.reload_failures == 8
    assert not seen & {5, 10, 15, 20, 25, 30, 35, 40}   # invalid versions never served
    assert holder.current().version == 39


def test_refusal_names_the_reason_and_keeps_serving(tmp_path):
    f = tmp_path / "state.json"
    write(f, 1)
    holder = StateHolder(build, {"bundle": str(f)}, signature=sig)
    with pytest.raises(ReloadRefused) as err:
        holder.reload(bundle=str(tmp_path / "missing.json"))
    assert "missing.json" in str(err.value) and err.value.field == "bundle"
    assert holder.current().version == 1 and holder.spec["bundle"] == str(f)


def test_file_watch_picks_up_a_change_and_skips_a_bad_file(tmp_path):
    f = tmp_path / "state.json"
    write(f, 1)
    holder = StateHolder(build, {"bundle": str(f)}, signature=sig, watch_interval=1.0)
    assert holder.maybe_check(now=100.0, background=False) is False   # nothing changed
    write(f, 2)
    assert holder.maybe_check(now=100.5, background=False) is False   # not due yet
    assert holder.maybe_check(now=101.0, background=False) is True
    assert holder.current().version == 2
    f.write_text('{"version": 3, "valid": false, "pad": 1}')
    assert holder.maybe_check(now=102.0, background=False) is True   # tried, refused
    assert holder.current().version == 2 and holder.reload_failures == 1
    assert holder.maybe_check(now=103.0, background=False) is False  # same bad file
    write(f, 4)
    holder.maybe_check(now=104.0, background=False)
    assert holder.current().version == 4


def test_control_file_carries_an_admin_reload_to_other_workers(tmp_path):
    a_file, b_file = tmp_path / "a.json", tmp_path / "b.json"
    write(a_file, 1)
    write(b_file, 7)
    control = tmp_path / "control.json"
    w1 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, watch_interval=1.0,
                     control_file=control)
    w2 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, watch_interval=1.0,
                     control_file=control)
    w1.reload(bundle=str(b_file), publish=True)        # the admin request hit worker 1
    assert w1.current().version == 7 and w2.current().version == 1
    assert w2.maybe_check(now=50.0, background=False) is True
    assert w2.current().version == 7 and w2.spec["bundle"] == str(b_file)
    # a worker started later follows its own configuration, not an old publication
    w3 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, watch_interval=1.0,
                     control_file=control)
    assert w3.maybe_check(now=50.0, background=False) is False
    assert w3.current().version == 1


def test_admin_reload_of_a_missing_bundle_is_refused(client):
    r = client.post("/admin/reload", json={"bundle": "/nonexistent/bundle"},
                    headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    # nothing was served before it: no "previous version" is said to keep serving
    assert body["field"] == "bundle" and body["error"].startswith(
        "nothing loaded, nothing is served: no bundle at /nonexistent/bundle"), body
    assert client.get("/healthz").get_json()["status"] == "no_bundle"


def test_an_admin_reload_with_a_chunked_body_reads_it(client):
    """A chunked body has no Content-Length, and the admin route took that for no body:
    the bundle asked for was ignored and the configured paths reloaded (here: 'no
    bundle configured'; on a serving worker, 200 'reloaded' with the old bundle)."""
    import io
    body = json.dumps({"bundle": "/nonexistent/bundle"}).encode()
    r = client.post("/admin/reload", input_stream=io.BytesIO(body),
                    headers={"Authorization": "Bearer s3cret",
                             "Content-Type": "application/json",
                             "Transfer-Encoding": "chunked"},
                    # what gunicorn says of a chunked body it has de-chunked
                    environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 422, r.get_json()
    assert "/nonexistent/bundle" in r.get_json()["error"]
    r = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret",
                                              "Content-Type": "application/json"})
    assert r.status_code == 422 and "no bundle configured" in r.get_json()["error"]


def test_live_reload_under_load_on_a_real_server(served_bundle, live_server, tmp_path):
    """gunicorn (2 workers) on 127.0.0.1 under a bounded load loop while the rules file
    is rewritten (file watch) and an admin reload swaps the rules: zero failed requests,
    and every response equals the engine's answer for the version it names."""
    import os
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from recommender.engine import Engine
    from recommender.rules import load_rules
    from recommender.json_output import json_safe

    engine = Engine.load(served_bundle)
    item = str(engine.catalog.loc[engine.catalog["category"] == "top", "item_id"].iloc[0])
    first = engine.complements(item, k=3)["groups"][0]["items"][0]["item_id"]
    r1, r2 = tmp_path / "r1.toml", tmp_path / "r2.toml"
    r1.write_text('version = "r1"\n')
    r2.write_text(f'version = "r2"\n[filters]\nexclude_ids = ["{first}"]\n')
    live = tmp_path / "rules.toml"
    live.write_text(r1.read_text())
    expected = {v: json.loads(json.dumps(json_safe(
        engine.complements(item, k=3, strategy="default", rules=load_rules(p))["groups"],
        default=str)))
        for v, p in (("r1", r1), ("r2", r2))}
    assert expected["r1"] != expected["r2"]

    srv = live_server({"BUNDLE": str(served_bundle), "RULES": str(live),
                       "DATA_DIR": str(tmp_path / "data"), "ADMIN_TOKEN": "tok",
                       "WATCH_INTERVAL": 1.0}, workers=2)
    url = f"{srv.url}/v1/items/{item}/complements?k=3"
    stop = threading.Event()

    def load():
        out = []
        while not stop.is_set() and len(out) < 3000:   # bounded
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    out.append((r.status, json.loads(r.read())))
            except Exception as exc:   # a failed request is a test failure, not a crash
                out.append((getattr(exc, "code", -1), None))
        return out

    def swap(src):
        tmp = live.with_suffix(".tmp")
        tmp.write_text(src.read_text())
        os.replace(tmp, live)          # atomic: the watch never sees half a file

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load) for _ in range(4)]
        time.sleep(1.5)
        swap(r2)                       # file watch: each worker within ~1 s
        time.sleep(2.5)
        req = urllib.request.Request(srv.url + "/admin/reload", method="POST",
                                     data=json.dumps({"rules": str(r1)}).encode(),
                                     headers={"Authorization": "Bearer tok",
                                              "Content-Type": "application/json"})
        assert json.loads(urllib.request.urlopen(req, timeout=30).read())["rules_version"] \
            == "r1"                     # admin reload: the other worker follows
        time.sleep(2.5)
        stop.set()
        results = [x for f in futures for x in f.result()]
    failed = [s for s, _ in results if s != 200]
    assert not failed, f"{len(failed)} failed of {len(results)}"
    versions = [b["rules_version"] for _, b in results]
    assert {"r1", "r2"} <= set(versions)
    wrong = [b for _, b in results if b["groups"] != expected[b["rules_version"]]]
    assert not wrong, f"{len(wrong)} responses inconsistent with their version"
    print(f"{len(results)} requests, 0 failed, versions seen: "
          f"{ {v: versions.count(v) for v in set(versions)} }")


def test_a_bundle_rebuilt_in_place_is_loaded_again_and_rules_alone_reuse_it(
        served_bundle, tmp_path):
    """The watch sees a rewritten manifest at the same path: the reload must load the
    new bundle, not keep the old engine because the paths are unchanged (a rebuilt
    bundle served stale). A rules-only reload keeps the loaded engine."""
    import os
    import shutil

    from api import create_app
    from api.state import EXTENSION
    bundle = shutil.copytree(served_bundle, tmp_path / "bundle")
    app = create_app({"TESTING": True, "BUNDLE": str(bundle), "WATCH_INTERVAL": 1.0,
                      "DATA_DIR": str(tmp_path / "data")})
    holder = app.extensions[EXTENSION].holder
    first = holder.current().engine
    manifest = bundle / "manifest.json"
    st = os.stat(manifest)
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert holder.maybe_check(now=time.monotonic() + 60, background=False) is True
    rebuilt = holder.current().engine
    assert rebuilt is not first and holder.reloads == 1
    rules = tmp_path / "rules.toml"
    shutil.copy(__import__("recommender").__path__[0] + "/default_rules.toml", rules)
    holder.reload(rules=str(rules))
    assert holder.current().engine is rebuilt and holder.reloads == 2


def test_the_bundles_own_rules_file_is_read_again_on_reload(served_bundle, tmp_path):
    """Without RULES the bundle's rules/rules.toml is served. Edited in place, the watch
    must see it and a reload must read it again: the reload reused the loaded engine
    (same bundle), whose rules were read once at load, and answered "reloaded" while
    the old rules kept serving."""
    import shutil

    from api import create_app
    from api.state import EXTENSION
    bundle = shutil.copytree(served_bundle, tmp_path / "bundle")
    (bundle / "rules").mkdir(exist_ok=True)
    rules = bundle / "rules" / "rules.toml"
    default = (Path(__import__("recommender").__path__[0]) / "default_rules.toml").read_text()

    def write_rules(version):
        rules.write_text(default.replace('version = "default-2"', f'version = "{version}"'))
        st = os.stat(rules)   # a distinct mtime even on a coarse clock
        os.utime(rules, ns=(st.st_atime_ns, st.st_mtime_ns + int(version[-1]) * 10**9))

    write_rules("shop-1")
    app = create_app({"TESTING": True, "BUNDLE": str(bundle), "WATCH_INTERVAL": 1.0,
                      "DATA_DIR": str(tmp_path / "data"), "ADMIN_TOKEN": "s3cret"})
    holder = app.extensions[EXTENSION].holder
    engine = holder.current().engine
    assert holder.current().rules_for(None).version == "shop-1"
    write_rules("shop-2")
    assert holder.maybe_check(now=time.monotonic() + 60, background=False) is True
    assert holder.current().rules_for(None).version == "shop-2"
    write_rules("shop-3")
    r = app.test_client().post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.get_json()["rules_version"] == "shop-3", r.get_json()
    assert holder.current().engine is engine   # a rules-only change keeps the engine


def test_a_bundle_being_rebuilt_in_place_is_not_served_until_the_build_finishes(
        served_bundle, tmp_path, monkeypatch):
    """The build saves the manifest after every stage. Before, the watch reloaded the
    bundle between stages and served new features with the old compatibility model
    and graph (and during a stage, whatever files it had replaced so far). A bundle
    with a build under way is refused (the old state keeps serving) and loads once
    the build finishes."""
    import shutil

    from api import create_app
    from api.state import EXTENSION
    from recommender import pipeline
    from recommender.bundle import Bundle
    from recommender.engine import Engine
    from recommender.pipeline import BuildContext, Stage, run_stages
    from tests.recommender import counting_stage

    bundle = shutil.copytree(served_bundle, tmp_path / "bundle")
    app = create_app({"TESTING": True, "BUNDLE": str(bundle), "WATCH_INTERVAL": 1.0,
                      "DATA_DIR": str(tmp_path / "data")})
    holder = app.extensions[EXTENSION].holder
    first = holder.current()
    clock = [time.monotonic()]

    def watch():
        manifest = bundle / "manifest.json"
        st = os.stat(manifest)   # a distinct mtime even on a coarse clock
        os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        clock[0] += 60
        holder.maybe_check(now=clock[0], background=False)
        return holder.current()

    seen = []

    def run_stage(ctx):
        seen.append(watch())   # the stage before this one has finished and saved
        with pytest.raises(Exception, match="is being built"):
            Engine.load(bundle)
        ctx.bundle.path("out.txt").write_text("x")
        return {"outputs": ["out.txt"]}

    monkeypatch.setattr(counting_stage, "run_stage", run_stage)
    monkeypatch.setattr(pipeline, "STAGES", (
        Stage("features", "tests.recommender.counting_stage", 0, "f"),
        Stage("compatibility", "tests.recommender.counting_stage", 0, "c")))
    run_stages(BuildContext(bundle=Bundle.open(bundle), config={"value": 7},
                            log=lambda m: None))
    assert len(seen) == 2 and all(s is first for s in seen)
    # a build writing the bundle is no fault: before, every stage command counted a
    # reload failure and set last_error, which a monitor alerts on
    assert holder.reload_failures == 0 and holder.last_error is None
    assert f"pid {os.getpid()}" in holder.waiting_for_build
    after = watch()
    assert after is not first and after.bundle_version == Bundle.open(bundle).version
    assert holder.describe()["waiting_for_build"] is None


def test_a_build_interrupted_in_the_served_bundle_is_a_reload_failure(served_bundle,
                                                                       tmp_path):
    # the mark left by a build that died (its lock gone with it) is a fault to see
    import shutil

    from api import create_app
    from api.state import EXTENSION
    from recommender.bundle import Bundle

    bundle = shutil.copytree(served_bundle, tmp_path / "bundle")
    app = create_app({"TESTING": True, "BUNDLE": str(bundle), "WATCH_INTERVAL": 1.0,
                      "DATA_DIR": str(tmp_path / "data")})
    holder = app.extensions[EXTENSION].holder
    b = Bundle.open(bundle)
    b.manifest["building"] = {"stage": "graph", "since": "2026-12-06T00:00:00+00:00"}
    b.save()
    holder.maybe_check(now=time.monotonic() + 60, background=False)
    assert holder.reload_failures == 1 and "interrupted" in holder.last_error
    assert holder.waiting_for_build is None


def test_a_publication_read_while_a_reload_runs_is_followed_after_it(tmp_path):
    """The control file named a new bundle while this worker's watch reload (of the
    old spec) was still building. The worker adopted the new path, could not start a
    second reload, and the running one then put back the spec it had started from:
    the publication was lost and the worker served the old bundle for good, while the
    other workers served the new one."""
    a_file, b_file = tmp_path / "a.json", tmp_path / "b.json"
    write(a_file, 1)
    write(b_file, 7)
    control = tmp_path / "control.json"
    gate, started, armed = threading.Event(), threading.Event(), threading.Event()

    def slow_build(spec):
        if spec["bundle"] == str(a_file) and armed.is_set():
            started.set()
            assert gate.wait(10)   # the watch reload of a.json is still loading...
        return build(spec)

    w1 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, control_file=control)
    w2 = StateHolder(slow_build, {"bundle": str(a_file)}, signature=sig,
                     watch_interval=1.0, control_file=control)
    armed.set()
    write(a_file, 2)
    os.utime(a_file, ns=(0, 10**9))    # a change the watch sees on any clock
    assert w2.maybe_check(now=10.0) is True            # background reload of a.json
    assert started.wait(10)
    w1.reload(bundle=str(b_file), publish=True)        # ...when the admin reload lands
    assert w2.maybe_check(now=11.0) is False           # adopted; one reload at a time
    gate.set()
    deadline = time.monotonic() + 10
    while w2.current().version != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w2.current().version == 2 and w2.reloads == 1
    assert w2.spec["bundle"] == str(b_file)            # the publication still stands
    assert w2.maybe_check(now=12.0, background=False) is True
    assert w2.current().version == 7
    assert w2.maybe_check(now=13.0, background=False) is False


def test_a_published_bundle_that_fails_here_keeps_the_old_state_until_fixed(tmp_path):
    """Another worker published b.json, which then broke before this worker read it:
    this worker keeps serving its state, reports the failure, does not retry the same
    broken file, and loads b.json once it is fixed."""
    a_file, b_file = tmp_path / "a.json", tmp_path / "b.json"
    write(a_file, 1)
    write(b_file, 7)
    control = tmp_path / "control.json"
    w1 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, control_file=control)
    w2 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, watch_interval=1.0,
                     control_file=control)
    w1.reload(bundle=str(b_file), publish=True)
    b_file.write_text('{"version": 8, "valid": false, "pad": 1}')
    assert w2.maybe_check(now=20.0, background=False) is True
    assert w2.current().version == 1
    assert w2.describe()["reload_failures"] == 1
    assert "version 8 is marked invalid" in w2.describe()["last_error"]
    assert w2.maybe_check(now=21.0, background=False) is False   # same broken file
    write(b_file, 9)
    assert w2.maybe_check(now=22.0, background=False) is True
    assert w2.current().version == 9 and w2.describe()["last_error"] is None


def test_an_admin_reload_of_the_same_paths_is_re_read_by_every_worker(tmp_path):
    """/admin/reload with no body re-reads the configured files and tells the other
    workers through the control file. They adopted only changed paths, and then
    reloaded only if the files' stats had changed: a file whose stats match (a copy
    keeping its mtime, or a bundle whose earlier load failed for a reason the manifest
    does not show) was re-read by the worker that took the request only."""
    a_file = tmp_path / "a.json"
    write(a_file, 1)
    control = tmp_path / "control.json"
    w1 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, control_file=control)
    w2 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, watch_interval=1.0,
                     control_file=control)
    st = os.stat(a_file)
    write(a_file, 2)                                   # same size...
    os.utime(a_file, ns=(st.st_atime_ns, st.st_mtime_ns))   # ...and mtime
    w1.reload(publish=True)
    assert w1.current().version == 2
    assert w2.maybe_check(now=30.0, background=False) is True
    assert w2.current().version == 2
    assert w2.maybe_check(now=31.0, background=False) is False   # once per publication


def test_with_the_watch_off_an_admin_reload_still_reaches_every_worker(tmp_path):
    """WATCH_INTERVAL = 0 turned off the reading of the control file too: the worker
    that took POST /admin/reload served the new bundle and the others the old one
    until restarted. The control file alone is read (once a second); the bundle's
    files are not watched."""
    from api.state import CONTROL_INTERVAL
    a_file, b_file = tmp_path / "a.json", tmp_path / "b.json"
    write(a_file, 1)
    write(b_file, 7)
    control = tmp_path / "control.json"
    w1 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, control_file=control)
    w2 = StateHolder(build, {"bundle": str(a_file)}, signature=sig, control_file=control)
    w1.reload(bundle=str(b_file), publish=True)
    assert w2.maybe_check(now=40.0, background=False) is True
    assert w2.current().version == 7 and w2.spec["bundle"] == str(b_file)
    assert w2.maybe_check(now=40.0 + CONTROL_INTERVAL, background=False) is False
    write(b_file, 8)                      # a file change alone: not watched
    os.utime(b_file, ns=(0, 10**9))
    assert w2.maybe_check(now=40.0 + 2 * CONTROL_INTERVAL, background=False) is False
    assert w2.current().version == 7
    w1.reload(publish=True)               # an admin reload of the same paths
    assert w2.maybe_check(now=40.0 + 2.5 * CONTROL_INTERVAL, background=False) is False
    assert w2.maybe_check(now=40.0 + 3 * CONTROL_INTERVAL, background=False) is True
    assert w2.current().version == 8
    # no control file: nothing to read
    w3 = StateHolder(build, {"bundle": str(a_file)}, signature=sig)
    assert w3.maybe_check(now=40.0, background=False) is False


def test_with_the_watch_off_two_apps_follow_one_admin_reload(tmp_path):
    """The same through the app: two workers (apps sharing DATA_DIR, so one control
    file) with WATCH_INTERVAL = 0; the reload posted to one is served by both."""
    import types
    from api import create_app
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    cfg = {"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "ADMIN_TOKEN": "s3cret",
           "WATCH_INTERVAL": 0, "BUNDLE": str(tmp_path / "a"), "WARM_VISION": False,
           "ENGINE_LOADER": lambda p: types.SimpleNamespace(bundle_version=Path(p).name)}
    w1, w2 = create_app(cfg), create_app(cfg)
    r = w1.test_client().post("/admin/reload", json={"bundle": str(tmp_path / "b")},
                              headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.get_json()["bundle_version"] == "b"
    holder = w2.extensions["mixmatch"].holder
    deadline = time.monotonic() + 10
    while holder.current().bundle_version != "b" and time.monotonic() < deadline:
        assert w2.test_client().get("/healthz").status_code == 200
        time.sleep(0.05)
    assert holder.current().bundle_version == "b" and holder.reloads == 1
    for app in (w1, w2):
        app.extensions["mixmatch"].events.close()


def test_healthz_names_the_published_target_this_worker_failed_to_load(tmp_path):
    """A bundle published by another worker broke before this one read it: /healthz
    said this worker's last reload failed (last_error) but not what it had tried to
    load, so an operator could not tell which publication, or whether a rules file or
    the bundle, was the one to fix. ``failed_target`` names the paths, and the
    OpenAPI document describes it."""
    import jsonschema
    import types
    from api import create_app

    for name in ("a", "b"):
        (tmp_path / name).mkdir()

    def loader(path):
        if (Path(path) / "broken").exists():
            raise ValueError(f"{path} is broken")
        return types.SimpleNamespace(bundle_version=Path(path).name)

    cfg = {"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "ADMIN_TOKEN": "s3cret",
           "WATCH_INTERVAL": 0, "BUNDLE": str(tmp_path / "a"), "WARM_VISION": False,
           "ENGINE_LOADER": loader}
    w1, w2 = create_app(cfg), create_app(cfg)
    assert w1.test_client().post("/admin/reload", json={"bundle": str(tmp_path / "b")},
                                 headers={"Authorization": "Bearer s3cret"}
                                 ).status_code == 200
    (tmp_path / "b" / "broken").write_text("")
    holder = w2.extensions["mixmatch"].holder
    c = w2.test_client()
    deadline = time.monotonic() + 10
    while holder.reload_failures == 0 and time.monotonic() < deadline:
        c.get("/healthz")
        time.sleep(0.05)
    r = c.get("/healthz")
    body = r.get_json()
    assert r.status_code == 200 and body["status"] == "ok"    # bundle a still serves
    assert "is broken" in body["last_error"]
    assert body["failed_target"] == {"bundle": str(tmp_path / "b"), "rules": None,
                                     "experiments": None, "rules_files": {},
                                     "models": {}}
    doc = c.get("/openapi.json").get_json()
    schema = doc["paths"]["/healthz"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    assert {"last_error", "failed_target"} <= set(schema["properties"])
    jsonschema.validate(body, schema)
    (tmp_path / "b" / "broken").unlink()                      # fixed: loaded, cleared
    assert w1.test_client().post("/admin/reload", headers={
        "Authorization": "Bearer s3cret"}).status_code == 200
    deadline = time.monotonic() + 10
    while holder.current().bundle_version != "b" and time.monotonic() < deadline:
        c.get("/healthz")
        time.sleep(0.05)
    body = c.get("/healthz").get_json()
    assert body["failed_target"] is None and body["last_error"] is None
    for app in (w1, w2):
        app.extensions["mixmatch"].events.close()


@pytest.mark.parametrize("bad", [["b.json"], 7.5, {"path": "b.json"}])
def test_a_control_file_naming_no_path_is_ignored_not_a_500(tmp_path, bad):
    """A hand-edited control file naming a list or a number: the worker put it in its
    spec, and from then on the watch's stat of it raised TypeError, a 500 for every
    request that made the check. It is ignored (and said so in last_error); the next
    valid publication is followed."""
    a_file, b_file = tmp_path / "a.json", tmp_path / "b.json"
    write(a_file, 1)
    write(b_file, 7)
    control = tmp_path / "control.json"
    w = StateHolder(build, {"bundle": str(a_file)}, signature=sig, watch_interval=1.0,
                    control_file=control)
    control.write_text(json.dumps({"token": "hand", "bundle": bad}))
    assert w.maybe_check(now=60.0, background=False) is False
    assert w.maybe_check(now=61.0, background=False) is False
    assert w.spec["bundle"] == str(a_file) and w.current().version == 1
    assert "must be a path" in w.describe()["last_error"]
    StateHolder(build, {"bundle": str(a_file)}, signature=sig,
                control_file=control).reload(bundle=str(b_file), publish=True)
    assert w.maybe_check(now=62.0, background=False) is True
    assert w.current().version == 7 and w.describe()["last_error"] is None


def test_an_admin_reload_that_cannot_publish_says_so_instead_of_500(tmp_path):
    """DATA_DIR not writable (a bundle on a read-only mount, with the events database
    elsewhere): the worker swapped in the new bundle, then writing the control file
    raised and the admin route answered 500 'internal error', for a reload that had
    happened here and would reach no other worker. It answers 200 with
    ``published: false`` and a warning naming the control file."""
    import types
    from api import create_app
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    (tmp_path / "data" / "control.json").mkdir(parents=True)   # cannot be written
    cfg = {"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "ADMIN_TOKEN": "s3cret",
           "WATCH_INTERVAL": 0, "BUNDLE": str(tmp_path / "a"), "WARM_VISION": False,
           "ENGINE_LOADER": lambda p: types.SimpleNamespace(bundle_version=Path(p).name)}
    app = create_app(cfg)
    c = app.test_client()
    r = c.post("/admin/reload", json={"bundle": str(tmp_path / "b")},
               headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["bundle_version"] == "b" and body["published"] is False
    assert "control.json" in body["warning"] and "this worker only" in body["warning"]
    (tmp_path / "data" / "control.json").rmdir()
    body = c.post("/admin/reload", headers={"Authorization": "Bearer s3cret"}).get_json()
    assert body["published"] is True and "warning" not in body
    app.extensions["mixmatch"].events.close()


# -- the experiments file reloads like a rules file ------------------------------------
EXPERIMENTS_V1 = '''salt = "t"
[[layers]]
name = "ranking"
  [[layers.experiments]]
  name = "strat"
  coverage = 1.0
    [[layers.experiments.variants]]
    name = "def"
    strategy = "default"
    [[layers.experiments.variants]]
    name = "vis"
    strategy = "visual"
'''
# a second layer with its own experiment: "strat" is unchanged, so its units keep theirs
# (a variant's params are engine settings, on the endpoints that honour them: the page
# size ``k = 3`` this experiment once set was never read, and is refused now)
EXPERIMENTS_V2 = EXPERIMENTS_V1 + '''
[[layers]]
name = "page"
  [[layers.experiments]]
  name = "div"
  coverage = 1.0
  endpoints = ["complements", "upsell"]
    [[layers.experiments.variants]]
    name = "wide"
    params = { diversity = 0.5 }
'''
BAD_EXPERIMENTS = {
    "toml syntax": (EXPERIMENTS_V1 + "[[layers]\n", "at line 13"),
    "unknown model": (EXPERIMENTS_V1.replace('strategy = "visual"',
                                             'strategy = "visual"\n    model = "nope"'),
                      "unknown model 'nope'"),
    # named like its layer: both draw with the default salt "t:page"
    "salt reused": (EXPERIMENTS_V2.replace('name = "div"', 'name = "page"'),
                    "salt 't:page' is also the salt of layers[1].salt"),
    "weight invalid": (EXPERIMENTS_V1.replace('name = "vis"', 'name = "vis"\n    weight = -1'),
                       "variants[1].weight: must be a number in (0.0, 1000000.0]"),
    "unknown param": (EXPERIMENTS_V2.replace("diversity = 0.5", "k = 3"),
                      "layers[1].experiments[0].variants[0].params.k: unknown param 'k'"),
    "inert param": (EXPERIMENTS_V2.replace('"upsell"]', '"analyze"]'),
                    "params.diversity has no effect on endpoint analyze"),
}
ADMIN = {"Authorization": "Bearer s3cret"}


class ExperimentEngine:
    """Answers complements with nothing: these tests read the envelope's assignment."""

    def __init__(self, path):
        self.bundle_version = Path(path).name

    def complements(self, item_id, **kwargs):
        return {"groups": []}


def experiments_app(tmp_path, text=EXPERIMENTS_V1, name="experiments.toml", **cfg):
    (tmp_path / "a").mkdir(exist_ok=True)
    exp = tmp_path / name
    if not exp.exists():
        exp.write_text(text)
    from api import create_app
    return create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"),
                       "ADMIN_TOKEN": "s3cret", "WATCH_INTERVAL": 0,
                       "BUNDLE": str(tmp_path / "a"), "WARM_VISION": False,
                       "ENGINE_LOADER": ExperimentEngine, "EXPERIMENTS": str(exp), **cfg})


def assignments(client, users=range(40)) -> dict:
    out = {}
    for i in users:
        r = client.get(f"/v1/items/X/complements?user_id=u{i}")
        assert r.status_code == 200, r.get_json()
        out[f"u{i}"] = {a["experiment"]: a["variant"] for a in r.get_json()["assignments"]}
    return out


def exposure_versions(app) -> set:
    return {v for (v,) in app.extensions["mixmatch"].events.query(
        "SELECT DISTINCT experiments_version FROM exposures")}


def test_an_edited_experiments_file_is_served_after_an_admin_reload_in_every_worker(
        tmp_path):
    """The experiments file was read once, when the server started: a data scientist
    who added an experiment (or changed weights, or stopped one) had to restart every
    worker. An admin reload re-reads it, the control file carries that reload to the
    other workers, a unit keeps its variant in the experiments the edit left alone,
    and the exposures logged after it carry the new config's version."""
    w1, w2 = experiments_app(tmp_path), experiments_app(tmp_path)
    c1, c2 = w1.test_client(), w2.test_client()
    before = assignments(c1)
    assert {frozenset(a) for a in before.values()} == {frozenset({"strat"})}
    assert {a["strat"] for a in before.values()} == {"def", "vis"}
    (v1,) = exposure_versions(w1)
    (tmp_path / "experiments.toml").write_text(EXPERIMENTS_V2)
    r = c1.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["experiments_version"] not in (None, v1)
    assert r.get_json()["previous"]["experiments_version"] == v1
    after = assignments(c1)
    assert after == {u: {**a, "div": "wide"} for u, a in before.items()}
    assert exposure_versions(w1) == {v1, r.get_json()["experiments_version"]}
    # each version's weights are kept for the A/B report, which checks each version's
    # sample ratio against its own (the file itself now says only the new ones)
    recorded = dict(w1.extensions["mixmatch"].events.query(
        "SELECT version, allocation FROM experiments_configs"))
    assert {v: json.loads(a) for v, a in recorded.items()} == {
        v1: {"strat": {"def": 1.0, "vis": 1.0}},
        r.get_json()["experiments_version"]: {"strat": {"def": 1.0, "vis": 1.0},
                                              "div": {"wide": 1.0}}}
    # the other worker follows the publication (its next check of the control file)
    assert w2.extensions["mixmatch"].holder.maybe_check(now=time.monotonic() + 60,
                                                        background=False) is True
    assert assignments(c2) == after
    # and says so where a monitor looks
    assert {c.get("/healthz").get_json()["experiments_version"] for c in (c1, c2)} == {
        r.get_json()["experiments_version"]}
    for app in (w1, w2):
        app.extensions["mixmatch"].events.close()


@pytest.mark.parametrize("bad", sorted(BAD_EXPERIMENTS))
def test_a_bad_experiments_edit_keeps_the_old_config_and_is_reported(tmp_path, bad):
    """A bad edit (TOML error, unknown model, a salt drawn twice, an invalid weight) is
    refused with the reason (422, never a 500); the old config keeps assigning, and
    /healthz names the file and the error until a good edit is loaded."""
    app = experiments_app(tmp_path)
    c = app.test_client()
    before = assignments(c, range(10))
    exp = tmp_path / "experiments.toml"
    text, reason = BAD_EXPERIMENTS[bad]
    exp.write_text(text)
    r = c.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert body["field"] == "experiments" and reason in body["error"]
    assert str(exp) in body["error"]
    assert assignments(c, range(10)) == before
    health = c.get("/healthz").get_json()
    assert health["status"] == "ok" and reason in health["last_error"]
    assert str(exp) in health["last_error"]
    assert health["failed_target"] == {"bundle": str(tmp_path / "a"), "rules": None,
                                       "experiments": str(exp), "rules_files": {},
                                       "models": {}}
    exp.write_text(EXPERIMENTS_V2)
    assert c.post("/admin/reload", headers=ADMIN).status_code == 200
    health = c.get("/healthz").get_json()
    assert health["last_error"] is None and health["failed_target"] is None
    assert assignments(c, range(10)) == {u: {**a, "div": "wide"}
                                         for u, a in before.items()}
    app.extensions["mixmatch"].events.close()


def test_the_watch_reloads_an_edited_experiments_file(tmp_path):
    """With the file watch on, an edit is served within WATCH_INTERVAL without an admin
    reload; a bad edit after it is refused and reported, and the last good config
    keeps serving."""
    app = experiments_app(tmp_path, WATCH_INTERVAL=0.05)
    c = app.test_client()
    holder = app.extensions["mixmatch"].holder
    before = assignments(c, range(5))
    exp = tmp_path / "experiments.toml"
    exp.write_text(EXPERIMENTS_V2)
    want = {u: {**a, "div": "wide"} for u, a in before.items()}
    deadline = time.monotonic() + 10
    while assignments(c, range(5)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assignments(c, range(5)) == want and holder.reloads == 1
    exp.write_text(BAD_EXPERIMENTS["unknown model"][0])
    deadline = time.monotonic() + 10
    while holder.reload_failures == 0 and time.monotonic() < deadline:
        c.get("/healthz")
        time.sleep(0.05)
    health = c.get("/healthz").get_json()
    assert "unknown model 'nope'" in health["last_error"]
    assert health["failed_target"]["experiments"] == str(exp)
    assert assignments(c, range(5)) == want
    app.extensions["mixmatch"].events.close()


def test_a_bad_experiments_file_still_stops_the_start(tmp_path):
    """Reloadable, but not optional: a server does not start half-configured, with a
    bundle or without one (then the experiments load with the first bundle)."""
    from features.exceptions import InputError
    for cfg in ({}, {"BUNDLE": None}):
        with pytest.raises(InputError, match="unknown model 'nope'"):
            experiments_app(tmp_path, BAD_EXPERIMENTS["unknown model"][0], **cfg)


def test_an_edit_of_the_weights_that_keeps_the_version_is_refused(tmp_path):
    """The events database records each experiments version's weights with its first
    exposure, and the A/B report checks that version's sample ratio against them. A
    data scientist who changed the weights but not the file's ``version`` key had the
    edit served, the old weights kept on record, and a report that flagged a sample
    ratio mismatch that was not there (or hid one). The reload is refused (422, the old
    config keeps serving) with a message naming the version and saying to bump it."""
    v1 = 'version = "2024-06-01"\n' + EXPERIMENTS_V1
    app = experiments_app(tmp_path, text=v1)
    c = app.test_client()
    before = assignments(c, range(10))
    exp = tmp_path / "experiments.toml"
    exp.write_text(v1.replace('name = "vis"', 'name = "vis"\n    weight = 3'))
    r = c.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert body["field"] == "experiments" and str(exp) in body["error"]
    assert "'2024-06-01'" in body["error"] and "bump" in body["error"], body["error"]
    assert body["error"].startswith("reload refused, the previous version keeps serving: ")
    assert assignments(c, range(10)) == before
    assert c.get("/healthz").get_json()["experiments_version"] == "2024-06-01"
    # the same weights in other units (1:1 as 2:2) change no share: accepted
    exp.write_text(v1.replace('name = "vis"', 'name = "vis"\n    weight = 1.0'))
    assert c.post("/admin/reload", headers=ADMIN).status_code == 200
    # bumped: served, and its weights recorded beside the first version's
    exp.write_text(v1.replace("2024-06-01", "2024-06-02").replace(
        'name = "vis"', 'name = "vis"\n    weight = 3'))
    r = c.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 200, r.get_json()
    assignments(c, range(10))
    recorded = dict(app.extensions["mixmatch"].events.query(
        "SELECT version, allocation FROM experiments_configs"))
    assert {v: json.loads(a) for v, a in recorded.items()} == {
        "2024-06-01": {"strat": {"def": 1.0, "vis": 1.0}},
        "2024-06-02": {"strat": {"def": 1.0, "vis": 3.0}}}
    app.extensions["mixmatch"].events.close()
    # a server started on the edited file with the old version is refused too
    exp.write_text(v1.replace('name = "vis"', 'name = "vis"\n    weight = 3'))
    from features.exceptions import InputError
    with pytest.raises(InputError, match="bump"):
        experiments_app(tmp_path)


@pytest.mark.parametrize("text, reason", [
    ('version = "2"\n[[boost]]\nfield = "colour"\nvalue = "BLACK"\nfactor = -1\n',
     "rules.boost[0].factor: -1 must be > 0"),
    ('version = "2"\n[filters]\nexclude_ids = [\n', "not valid TOML"),
    ('description = "no version"\n', "rules.version: missing"),
])
def test_a_bad_rules_edit_is_refused_as_the_rules_not_the_bundle(tmp_path, text, reason):
    """A rules edit the reload refused was answered ``"field": "bundle"`` (422): the
    error's field was the key path in the rules file (``rules.boost[0].factor``), which
    the refusal did not recognise, so a client or script reading the field was sent to
    the bundle. The refusal names the rules; the old rules keep serving."""
    rules = tmp_path / "rules.toml"
    rules.write_text('version = "1"\n')
    app = experiments_app(tmp_path, RULES=str(rules))
    c = app.test_client()
    rules.write_text(text)
    r = c.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert body["field"] == "rules" and reason in body["error"], body
    assert str(rules) in body["error"]
    health = c.get("/healthz").get_json()
    assert health["rules_version"] == "1" and reason in health["last_error"]
    assert health["reload_failures"] == 1
    r = c.get("/v1/items/X/complements")
    assert r.status_code == 200 and r.get_json()["rules_version"] == "1"
    app.extensions["mixmatch"].events.close()


def test_a_refused_rules_files_edit_names_its_path_in_failed_target(tmp_path):
    """A RULES_FILES entry whose edit a reload refused: ``failed_target`` listed the
    main rules (None: the bundle's own) and not the file that failed."""
    main_rules, v2 = tmp_path / "rules.toml", tmp_path / "v2.toml"
    main_rules.write_text('version = "1"\n')
    v2.write_text('version = "v2-1"\n')
    app = experiments_app(tmp_path, RULES=str(main_rules), RULES_FILES={"v2": str(v2)})
    c = app.test_client()
    v2.write_text('version = "v2-2"\n[[boost]]\nfield = "colour"\nvalue = "BLACK"\n'
                  'factor = -1\n')
    assert c.post("/admin/reload", headers=ADMIN).status_code == 422
    health = c.get("/healthz").get_json()
    assert str(v2) in health["last_error"]
    assert health["failed_target"]["rules_files"] == {"v2": str(v2)}
    assert health["failed_target"]["rules"] == str(main_rules)
    app.extensions["mixmatch"].events.close()


def test_a_rules_file_naming_item_ids_the_bundle_lacks_serves_and_is_logged(tmp_path,
                                                                             caplog):
    """A pin or allow-list id the catalogue does not hold (a typo, or an item since
    delisted) was served without a word, and the pin did nothing. Not refused: a
    catalogue changes under its rules file, and a bundle reload must not fail for an
    exclusion of a delisted item. The server logs the file, the key and the id."""
    import logging

    from api import create_app
    from tests.recommender.tiny_bundle import make_tiny_bundle
    bundle = make_tiny_bundle(tmp_path / "bundle")
    rules = tmp_path / "rules.toml"
    rules.write_text('version = "typo"\n[[pin]]\nitem_id = "t11"\nposition = 1\n')
    with caplog.at_level(logging.WARNING, logger="api.state"):
        app = create_app({"TESTING": True, "BUNDLE": str(bundle), "RULES": str(rules),
                          "DATA_DIR": str(tmp_path / "data"), "WATCH_INTERVAL": 0,
                          "WARM_VISION": False})
    assert app.test_client().get("/healthz").get_json()["rules_version"] == "typo"
    logged = [r.getMessage() for r in caplog.records if "t11" in r.getMessage()]
    assert len(logged) == 1 and str(rules) in logged[0], caplog.text
    assert "rules.pin[0].item_id" in logged[0]
    app.extensions["mixmatch"].events.close()


def test_an_edit_of_the_params_that_keeps_the_version_is_refused(tmp_path):
    """An exposure names its variant, not what it set: an edit of a variant's diversity
    under the same ``version`` key served, and the A/B report read the rows before and
    after it as one arm. The version's record keeps the params; such an edit is
    refused like one of the weights, and a bumped version is served and recorded."""
    v1 = 'version = "2024-06-01"\n' + EXPERIMENTS_V2
    app = experiments_app(tmp_path, text=v1)
    c = app.test_client()
    before = assignments(c, range(10))
    exp = tmp_path / "experiments.toml"
    exp.write_text(v1.replace("diversity = 0.5", "diversity = 0.7"))
    r = c.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 422, r.get_json()
    error = r.get_json()["error"]
    assert ("version '2024-06-01' was recorded with other params for experiment 'div' "
            '(wide {"diversity": 0.5}; now wide {"diversity": 0.7})') in error, error
    assert "bump" in error and "bump" in c.get("/healthz").get_json()["last_error"]
    assert assignments(c, range(10)) == before
    body = c.get("/v1/items/X/complements?user_id=u1").get_json()
    assert {"layer": "page", "experiment": "div", "variant": "wide", "forced": False,
            "params": {"diversity": 0.5}} in body["assignments"]
    exp.write_text(v1.replace("diversity = 0.5", "diversity = 0.7").replace(
        "2024-06-01", "2024-06-02"))
    assert c.post("/admin/reload", headers=ADMIN).status_code == 200
    assignments(c, range(10))
    recorded = dict(app.extensions["mixmatch"].events.query(
        "SELECT version, params FROM experiments_configs"))
    assert {v: json.loads(p) for v, p in recorded.items()} == {
        "2024-06-01": {"div": {"wide": {"diversity": 0.5}}},
        "2024-06-02": {"div": {"wide": {"diversity": 0.7}}}}
    app.extensions["mixmatch"].events.close()


def test_a_json_edit_that_repeats_a_key_is_refused_and_the_old_config_serves(tmp_path):
    """``json.loads`` keeps a repeated key's last value: an edit that gave the "vis"
    variant a second ``strategy`` (the old line left above the new) was served, and
    turned the strategy experiment into an A/A test no reader of the file could see.
    The reload is refused naming the key and line; the previous config keeps serving."""
    import tomllib
    v1 = json.dumps(tomllib.loads(EXPERIMENTS_V1), indent=1)
    app = experiments_app(tmp_path, text=v1, name="experiments.json")
    c = app.test_client()
    before = assignments(c, range(10))
    assert {a["strat"] for a in before.values()} == {"def", "vis"}
    exp = tmp_path / "experiments.json"
    bad = v1.replace('"strategy": "visual"',
                     '"strategy": "visual",\n"strategy": "default"')
    assert bad != v1 and json.loads(bad) != json.loads(v1)
    exp.write_text(bad)
    r = c.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    line = bad.splitlines().index('"strategy": "default"') + 1
    assert body["field"] == "experiments" and str(exp) in body["error"]
    assert (f"line {line}: duplicate key 'strategy' of layers[0].experiments[0]."
            f"variants[1] (first at line {line - 1})") in body["error"], body["error"]
    assert assignments(c, range(10)) == before
    assert str(exp) in c.get("/healthz").get_json()["last_error"]
    app.extensions["mixmatch"].events.close()


def _two_bundles_and_rules(tmp_path):
    """The main bundle's catalogue has a ``material`` field the ``other`` bundle lacks;
    rules ``v2`` show only cotton items."""
    import pandas as pd

    from tests.recommender.tiny_bundle import make_tiny_bundle
    main, other = make_tiny_bundle(tmp_path / "main"), make_tiny_bundle(tmp_path / "other")
    cat = pd.read_parquet(main / "catalog.parquet")
    cat["material"] = ["Cotton" if i % 2 else "Linen" for i in range(len(cat))]
    cat.to_parquet(main / "catalog.parquet")
    rules = tmp_path / "v2.toml"
    rules.write_text('version = "v2"\n[[filters.include_attributes]]\nfield = "material"\n'
                     'values = ["Cotton"]\n')
    return main, other, rules


def _model_and_rules_layers(same_layer=False) -> dict:
    model = {"name": "model", "variants": [{"name": "main"},
                                           {"name": "other", "model": "other"}]}
    rules = {"name": "merch", "variants": [{"name": "v1"}, {"name": "v2", "rules": "v2"}]}
    if same_layer:   # one experiment: an arm's new model, or its new rules, never both
        return {"layers": [{"name": "l", "experiments": [
            {"name": "e", "variants": [{"name": "main"}, *model["variants"][1:],
                                       *rules["variants"][1:]]}]}]}
    return {"layers": [{"name": "m", "experiments": [model]},
                       {"name": "r", "experiments": [rules]}]}


def test_rules_are_checked_against_every_model_bundle_the_experiments_serve_them_with(
        tmp_path):
    """RULES_FILES were checked against the main bundle's catalogue only, while a
    variant's ``model`` serves another bundle: rules naming a field only the main one
    has, met with the other model in a unit's layers, served every group of that arm
    empty (an include filter on a field the catalogue lacks hides every item) with a
    200 and no word. Refused at the start and on reload, naming the rules file, the
    model and its bundle; in one layer, where no unit meets both, it is served."""
    from api import create_app
    from features.exceptions import InputError
    main, other, rules = _two_bundles_and_rules(tmp_path)
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps(_model_and_rules_layers()))
    cfg = {"TESTING": True, "BUNDLE": str(main), "MODELS": {"other": str(other)},
           "RULES_FILES": {"v2": str(rules)}, "EXPERIMENTS": str(exp),
           "DATA_DIR": str(tmp_path / "data"), "WATCH_INTERVAL": 0, "WARM_VISION": False,
           "ADMIN_TOKEN": "s3cret"}
    words = (f"{rules}: rules.filters.include_attributes[0].field: 'material' is not a "
             f"field of this catalogue")
    named = f"(the catalogue of MODELS 'other', bundle {other}, which the experiments"
    with pytest.raises(InputError) as err:
        create_app(cfg)
    assert words in str(err.value) and named in str(err.value), str(err.value)
    # in one layer no unit is served the other model with rules v2: served
    exp.write_text(json.dumps(_model_and_rules_layers(same_layer=True)))
    app = create_app(cfg)
    c = app.test_client()
    assert c.get("/v1/items/t0/complements?user_id=u1").status_code == 200
    # an edit that puts them in two layers is refused; the previous config serves
    version = c.get("/healthz").get_json()["experiments_version"]
    exp.write_text(json.dumps(_model_and_rules_layers()))
    r = c.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert body["field"] == "rules" and words in body["error"] and named in body["error"]
    assert c.get("/healthz").get_json()["experiments_version"] == version
    app.extensions["mixmatch"].events.close()


@pytest.mark.parametrize("key", ["bundle", "rules"])
def test_an_admin_reload_path_holding_a_nul_byte_is_bad_input(client, key):
    """A NUL cannot be in a path: it was a 422 'reload refused: embedded null byte'
    (the OS call's ValueError), naming no value, as if the bundle were broken."""
    r = client.post("/admin/reload", json={key: "/srv/bundle\x00x"},
                    headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 400, r.get_json()
    body = r.get_json()
    assert body["field"] == key and "'/srv/bundle\\x00x'" in body["error"], body
    assert "NUL" in body["error"], body
    assert client.get("/healthz").get_json()["status"] == "no_bundle"
