"""Live reload mechanics: atomic swap under concurrent readers, refusal of invalid files,
file watch, and the control file that carries an admin reload to every worker.

The state here is a small real object built from a JSON file (its fields must agree
with each other), not an engine: these tests are about the swap, not about serving.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time

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
    assert body["field"] == "bundle" and "previous version keeps serving" in body["error"]
    assert client.get("/healthz").get_json()["status"] == "no_bundle"
