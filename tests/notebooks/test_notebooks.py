"""The three notebooks run top to bottom on a built bundle; a failing cell fails the test.

Each notebook runs on the session's demo bundle (``demo_bundle``: the real pipeline on
the generated catalogue, quick mode) and, when the data folder is present, on a quick
bundle of real MANGO products (``mango_subset_bundle``). Set ``MIXMATCH_NOTEBOOK_BUNDLE`` to a built
bundle (e.g. one built from the MANGO data) to run them on it instead: then the
pictures are real products.

The kernel imports this checkout's packages: the tests put the project root first
on the kernel's ``PYTHONPATH`` (the kernel inherits the environment), so the
notebooks themselves carry no path set-up.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.notebooks.runner import run_notebook

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = PROJECT_ROOT / "notebooks"
BUNDLE_ENV = "MIXMATCH_NOTEBOOK_BUNDLE"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["demo", "mango"])
def nb_bundle(request) -> Path:
    """The demo bundle, and a bundle of real MANGO products when the data is present
    (``mango_subset_bundle`` skips otherwise)."""
    given = os.environ.get(BUNDLE_ENV)
    if given:
        if request.param == "mango":
            pytest.skip(f"{BUNDLE_ENV} given: its bundle runs as the first parameter")
        return Path(given)
    return request.getfixturevalue(
        "demo_bundle" if request.param == "demo" else "mango_subset_bundle")


@pytest.fixture
def kernel_env(monkeypatch):
    """The kernel is a subprocess that inherits os.environ: put this checkout first."""
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(PROJECT_ROOT)] + ([old] if old else [])))
    # figures render with Agg whatever the machine's matplotlib configuration says
    monkeypatch.setenv("MPLBACKEND", "Agg")


def run(name: str, parameters: dict) -> tuple[object, float]:
    t0 = time.perf_counter()
    nb = run_notebook(NOTEBOOKS / f"{name}.ipynb", parameters, NOTEBOOKS, timeout=300)
    return nb, time.perf_counter() - t0


def outputs(nb, output_type: str | None = None, mime: str | None = None) -> list:
    found = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            if output_type and o.output_type != output_type:
                continue
            if mime and mime not in o.get("data", {}):
                continue
            found.append(o)
    return found


def stream_text(nb) -> str:
    return "".join(o.text for o in outputs(nb, "stream"))


def test_model_report_runs(nb_bundle, kernel_env):
    nb, seconds = run("model_report", {"bundle": str(nb_bundle)})
    pictures = outputs(nb, mime="image/png")
    # metrics, FITB by category, importance, calibration, likes, dislikes
    assert len(pictures) >= 6, f"{len(pictures)} pictures"
    assert "expected calibration error" in stream_text(nb)
    print(f"model_report: {seconds:.1f}s")


def test_ab_results_simulates_and_analyses(nb_bundle, kernel_env, tmp_path):
    nb, seconds = run("ab_results", {
        "bundle": str(nb_bundle), "data_dir": str(tmp_path / "serving"), "users": 60,
        "experiments": str(NOTEBOOKS / "experiments.example.toml"), "max_seconds": 120})
    # the simulated server wrote the database the notebook analysed
    from api.ab_report import read_event_tables
    exposures, events = read_event_tables(tmp_path / "serving" / "events.db")
    assert len(exposures) >= 50 and len(events) > 0
    assert set(exposures["experiment"]) <= {"strategy-ab", "holdout"}
    text = stream_text(nb)
    assert "experiment 'strategy-ab', control 'control'" in text
    # the split and the differences said in words, not only as chi2 and intervals
    assert "no sign of a sample-ratio mismatch" in text or "SAMPLE-RATIO MISMATCH" in text
    assert "click: visual " in text and "points (95% interval" in text
    # one server run, one config: its version listed and analysed, no note
    (version,) = set(exposures["experiments_version"])
    assert f"1 config version(s); analysed: [{version!r}]" in text
    assert len(outputs(nb, mime="image/png")) >= 2
    print(f"ab_results: {seconds:.1f}s")


def test_ab_results_analyses_the_latest_config_version_when_the_weights_changed(
        kernel_env, tmp_path):
    """Weights edited mid-experiment (50/50, then 90/10): the notebook pooled both
    periods and reported a sample-ratio mismatch against one set of weights. It lists
    both versions, each checked against its own weights, analyses the latest with a
    note, and pools them when asked."""
    from api.events import EventStore

    db = tmp_path / "events.db"
    store = EventStore(db)
    for version, weights, n, b_every in (("v1", {"a": 1, "b": 1}, 40, 2),
                                         ("v2", {"a": 9, "b": 1}, 100, 10)):
        for i in range(n):
            store.add_exposures(f"{version}-{i}", f"{version}-u{i}",
                                [("l", "e", "b" if i % b_every == 0 else "a", False)],
                                endpoint="complements", bundle_version="b",
                                rules_version="1", experiments_version=version,
                                experiments_allocation={"e": weights})
    store.add_events([{"type": "click", "request_id": "v2-1", "item_id": "x"}])
    store.close()
    nb, _ = run("ab_results", {"events_db": str(db), "experiments": "", "control": "a"})
    text = stream_text(nb)
    assert "2 config version(s); analysed: ['v2']" in text
    assert "only the latest version 'v2' is analysed (100 of 140 exposures)" in text
    assert "(p = 1): no sign of a sample-ratio mismatch" in text
    nb, _ = run("ab_results", {"events_db": str(db), "experiments": "", "control": "a",
                               "pool_versions": True})
    assert "analysed: ['v1', 'v2']" in stream_text(nb)
    assert "each version's split is checked against its own weights" in stream_text(nb)


def test_rules_saved_in_tune_rules_are_served_without_restart(nb_bundle, kernel_env,
                                                              tmp_path):
    """The tuning notebook saves a new rules version and publishes it to a running API
    (admin reload); the same server process then serves it."""
    from api.client import LocalServer, get_json, served_rules_version
    from recommender.rules import DEFAULT_RULES_PATH, load_rules

    rules_path = tmp_path / "rules.toml"
    shutil.copy(DEFAULT_RULES_PATH, rules_path)
    config = {"BUNDLE": str(nb_bundle), "RULES": str(rules_path),
              "DATA_DIR": str(tmp_path / "serving"), "ADMIN_TOKEN": "nb-s3cret",
              "WATCH_INTERVAL": 0}
    server = LocalServer(config)
    with server as url:
        catalog = server.app.extensions["mixmatch"].holder.current().engine.catalog
        top = catalog.loc[catalog["category"] == "top", "item_id"].iloc[0]
        assert served_rules_version(url, top) == "default-2"
        nb, seconds = run("tune_rules", {
            "bundle": str(nb_bundle), "rules_path": str(rules_path), "item_ids": [top],
            "k": 3, "new_version": "nb-test-2", "api_url": url,
            "admin_token": "nb-s3cret"})
        saved = load_rules(rules_path)
        assert saved.version == "nb-test-2"
        body = get_json(f"{url}/v1/items/{top}/complements", {"k": 3})
        assert body["rules_version"] == "nb-test-2"
        shown = {it["item_id"] for g in body["groups"] for it in g["items"]}
        assert saved.exclude_ids and not (shown & saved.exclude_ids)
        holder = server.app.extensions["mixmatch"].holder
        assert holder.reloads == 1 and holder.reload_failures == 0  # reloaded, not restarted
    assert "now serves rules version nb-test-2" in stream_text(nb)
    # before/after pictures were drawn
    assert len(outputs(nb, mime="image/png")) >= 3
    print(f"tune_rules: {seconds:.1f}s")


def test_ab_results_names_an_events_database_without_experiment_exposures(kernel_env,
                                                                          tmp_path):
    # before: experiment_names(exposures)[0] on a database with no experiment's
    # exposures (the server ran without EXPERIMENTS) stopped with "IndexError: list
    # index out of range"
    from nbclient.exceptions import CellExecutionError

    from api.events import EventStore

    db = tmp_path / "events.db"
    EventStore(db).close()
    with pytest.raises(CellExecutionError) as exc:
        run("ab_results", {"events_db": str(db)})
    assert f"no experiment has exposures in {db}" in str(exc.value)
    assert "IndexError" not in str(exc.value)
