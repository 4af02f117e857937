"""The simulator against a real local API (tiny bundle, two variants with known
behaviour), the events database reader, and publishing rules to a running API."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from features.exceptions import InputError
from api.ab_report import (ab_summary, experiment_design, load_experiments_for_analysis,
                           read_event_tables)
from api.client import ApiError, LocalServer, publish_rules, require_loopback, \
    served_rules_version
from api.simulator import Behaviour, SimulationConfig, page_events, simulate
from recommender.rules import DEFAULT_RULES_PATH, save_rules
from tests.faults import open_files
from tests.recommender.tiny_bundle import make_tiny_bundle

EXPERIMENTS = """
salt = "sim-test"
[[layers]]
name = "ranking"
  [[layers.experiments]]
  name = "funnel"
    [[layers.experiments.variants]]
    name = "never"
    weight = 1
    [[layers.experiments.variants]]
    name = "always"
    weight = 1
    rules = "v2"
"""
BEHAVIOUR = {"never": {"click": 0.0}, "always": {"click": 1.0, "add_to_cart": 1.0,
                                                 "purchase": 0.0}}
PAGES = ["t0", "t1", "p2", "h3", "g4"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("sim") / "bundle")


@pytest.fixture
def config(tiny, tmp_path):
    (tmp_path / "exp.toml").write_text(EXPERIMENTS)
    shutil.copy(DEFAULT_RULES_PATH, tmp_path / "v2.toml")
    return {"BUNDLE": str(tiny), "EXPERIMENTS": str(tmp_path / "exp.toml"),
            "RULES_FILES": {"v2": str(tmp_path / "v2.toml")},
            "DATA_DIR": str(tmp_path / "data"), "WATCH_INTERVAL": 0}


def test_page_events_funnel():
    rng = np.random.default_rng(0)
    assert [e["type"] for e in page_events(rng, "r", "u", ["a", "b"], Behaviour(click=0.0))] \
        == ["impression", "impression"]
    ev = page_events(rng, "r", "u", ["a"], Behaviour(click=1.0, add_to_cart=1.0,
                                                     purchase=1.0))
    assert [e["type"] for e in ev] == ["impression", "click", "add_to_cart", "purchase"]
    assert all(e["request_id"] == "r" and e["user_id"] == "u" for e in ev)


def test_page_events_draw_the_same_numbers_whatever_the_behaviour():
    a = page_events(np.random.default_rng(5), "r", "u", list("abcdef"), Behaviour(click=0.5))
    b = page_events(np.random.default_rng(5), "r", "u", list("abcdef"),
                    Behaviour(click=0.5, add_to_cart=0.0))
    clicks = lambda ev: [e["item_id"] for e in ev if e["type"] == "click"]
    assert clicks(a) == clicks(b)


def test_behaviour_and_config_validation():
    with pytest.raises(InputError):
        Behaviour(click=1.5)
    with pytest.raises(InputError, match="clik"):
        Behaviour.of({"clik": 0.1})
    with pytest.raises(InputError):
        SimulationConfig(users=0)
    cfg = SimulationConfig(behaviour={"v2": {"click": 0.3}})
    assert cfg.behaviour_for("control,v2").click == 0.3      # one layer's variant
    assert cfg.behaviour_for(None) == cfg.default


def test_loopback_only():
    assert require_loopback("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    for url in ("http://example.com:80", "ftp://127.0.0.1/", "http://10.0.0.1:8000"):
        with pytest.raises(InputError):
            require_loopback(url)
    with pytest.raises(InputError):
        simulate("http://example.com", PAGES, users=1)
    with pytest.raises(InputError):
        LocalServer({}, host="0.0.0.0")


def test_simulation_end_to_end_known_rates(config, tmp_path):
    with LocalServer(config) as url:
        run = simulate(url, PAGES, users=30, pages_per_user=1, k=2, seed=3,
                       behaviour=BEHAVIOUR)
    assert run.stopped == "done" and not run.errors
    assert run.users == 30 and run.pages == 30
    exposures, events = read_event_tables(tmp_path / "data" / "events.db")
    assert len(exposures) == 30                             # one per page, one layer
    assert len(events) == sum(run.events.values())
    assert run.events["click"] == run.events["add_to_cart"] > 0
    assert run.events["purchase"] == 0
    # the server logged the variant's rules version with each exposure
    assert set(exposures.loc[exposures["variant"] == "always", "rules_version"]) == {
        "default-2"}
    control, weights = experiment_design(config["EXPERIMENTS"], "funnel")
    assert control == "never" and weights == {"never": 1.0, "always": 1.0}
    rep = ab_summary(exposures, events, "funnel", control=control, weights=weights)
    v = rep["variants"].set_index(["variant", "event"])
    assert v.loc[("never", "click"), "rate"] == 0.0
    assert v.loc[("always", "click"), "rate"] == 1.0
    assert v.loc[("always", "add_to_cart"), "rate"] == 1.0
    assert v.loc[("always", "purchase"), "rate"] == 0.0
    assert v.loc[("always", "click"), "diff_lo"] > 0        # a clear win, and it shows
    counts = rep["counts"].set_index("variant")["units"].to_dict()
    assert counts == run.units_by_variant
    assert rep["srm"]["expected"] == {"always": 15.0, "never": 15.0}


def test_simulation_is_deterministic(config, tmp_path):
    runs = []
    for n in range(2):
        cfg = {**config, "DATA_DIR": str(tmp_path / f"data{n}")}
        with LocalServer(cfg) as url:
            simulate(url, PAGES, users=8, k=2, seed=11, behaviour={"never": {"click": 0.4}})
        _, ev = read_event_tables(tmp_path / f"data{n}" / "events.db")
        runs.append(ev[["type", "item_id", "user_id"]].values.tolist())
    assert runs[0] == runs[1] and runs[0]


def test_simulation_stops_at_its_bounds(config):
    with LocalServer(config) as url:
        run = simulate(url, PAGES, users=50, max_requests=3)
        assert run.stopped == "max_requests" and run.requests == 3
        run = simulate(url, PAGES, users=10_000, max_seconds=0.3)
        assert run.stopped == "max_seconds" and run.users < 10_000
        # the bound met while posting the last page's events: that page's events were
        # dropped, yet the run said "done" and counted the user as complete
        run = simulate(url, PAGES, users=1, pages_per_user=1, k=2, max_requests=1)
        assert run.requests == 1 and sum(run.events.values()) == 0
        assert run.stopped == "max_requests" and run.users == 0


def test_experiments_read_for_analysis_accept_unknown_names(tmp_path):
    (tmp_path / "e.toml").write_text(EXPERIMENTS)
    exp = load_experiments_for_analysis(tmp_path / "e.toml")
    assert [v.name for v in exp.experiment("funnel").variants] == ["never", "always"]


def test_publish_rules_by_watch_and_by_admin_reload(tiny, tmp_path):
    rules = tmp_path / "rules.toml"
    shutil.copy(DEFAULT_RULES_PATH, rules)
    cfg = {"BUNDLE": str(tiny), "RULES": str(rules), "DATA_DIR": str(tmp_path / "d"),
           "ADMIN_TOKEN": "tok", "WATCH_INTERVAL": 0.05}
    base = __import__("tomllib").loads(DEFAULT_RULES_PATH.read_text())
    with LocalServer(cfg) as url:
        assert served_rules_version(url, "t0") == "default-2"
        save_rules({**base, "version": "w-2"}, rules)
        r = publish_rules(url, str(rules), "w-2", probe_item="t0")       # the file watch
        assert r == {"served_version": "w-2", "via": "watch", "seconds": r["seconds"]}
        other = tmp_path / "other.toml"
        save_rules({**base, "version": "a-3"}, other)
        r = publish_rules(url, str(other), "a-3", probe_item="t0", admin_token="tok")
        assert r["via"] == "admin reload" and r["served_version"] == "a-3"
        bad = tmp_path / "bad.toml"
        bad.write_text('version = "b-4"\n[[boost]]\nfield = "colour"\nvalue = "RED"\n'
                       'factor = -1\n')
        with pytest.raises(ApiError) as err:
            publish_rules(url, str(bad), "b-4", probe_item="t0", admin_token="tok")
        assert err.value.status == 422 and "factor" in str(err.value)
        assert served_rules_version(url, "t0") == "a-3"                 # old one serves
        with pytest.raises(ApiError) as err:
            publish_rules(url, str(other), "a-3", probe_item="t0", admin_token="wrong")
        assert err.value.status == 401


def test_a_stopped_local_server_leaves_no_database_file_open(tmp_path):
    """A notebook starts and stops LocalServer several times: stopping it left the
    events database (and its WAL) open in the process for as long as the app lived."""
    import gc
    import os
    from api.client import post_json

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counts open files through /proc/self/fd")
    gc.disable()   # closed by stop(), not by the collector
    try:
        server = LocalServer({"DATA_DIR": str(tmp_path / "data"), "WATCH_INTERVAL": 0})
        with server as url:
            for i in range(3):
                post_json(url + "/v1/events", {"type": "click", "request_id": f"r{i}"})
            assert open_files(tmp_path)
        assert open_files(tmp_path) == []
    finally:
        gc.enable()
