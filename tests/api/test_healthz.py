"""``/healthz`` on the real engine: what it says about every bundle served (the main
one and the ``MODELS`` variants may choose) and about the worker that answered."""
from __future__ import annotations

import shutil

import jsonschema
import pytest

from api import create_app


def make_graph_stale(root) -> None:
    """Record that a file the graph read was rewritten since by the stage that makes
    it (as ``mixmatch train --stage compatibility`` alone does), in the manifest only."""
    from recommender.bundle import Bundle

    b = Bundle.open(root)
    stages = b.manifest["stages"]
    for name, rec in stages.items():
        if name == "graph":
            continue
        for f in stages["graph"].get("reads") or {}:
            if f in (rec.get("output_hashes") or {}):
                rec["output_hashes"][f] = "rewritten-since"
                b.save()
                assert Bundle.open(root).stale_stages() == ["graph"]
                return
    pytest.skip("the served bundle's graph records no file another stage wrote")


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def make(**config):
        app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / f"data{len(apps)}"),
                          "WATCH_INTERVAL": 0, **config})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["mixmatch"].events.close()


def healthz_schema(client) -> dict:
    doc = client.get("/openapi.json").get_json()
    return doc["paths"]["/healthz"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]


def test_healthz_reports_the_stale_stages_of_each_served_model(served_bundle, tmp_path,
                                                                make_app):
    # before: a MODELS bundle whose graph was stale was served with /healthz saying
    # nothing (stale_stages is the main bundle's), so only the load log told
    stale = tmp_path / "stale_model"
    shutil.copytree(served_bundle, stale)
    make_graph_stale(stale)
    fresh = tmp_path / "fresh_model"
    shutil.copytree(served_bundle, fresh)
    c = make_app(BUNDLE=str(served_bundle),
                 MODELS={"v2": str(stale), "v3": str(fresh)}).test_client()
    body = c.get("/healthz").get_json()
    assert body["stale_stages"] == []                 # the main bundle's, as before
    assert body["models"]["v2"]["stale_stages"] == ["graph"]
    assert body["models"]["v3"]["stale_stages"] == []
    schema = healthz_schema(c)
    assert "models" in schema["properties"]
    jsonschema.validate(body, schema)


#: a models entry's keys that say whether the bundle is served as built
PLAIN = ("stale_stages", "changed_outputs", "graph_pairing_differs")


def test_healthz_says_what_each_model_serves(served_bundle, tmp_path, make_app):
    """An operator checking that a variant serves the bundle it should saw its stale
    stages only: not its size nor its version, which the main bundle's ``items`` and
    ``bundle_version`` give. Each ``models`` entry now has them, and its path."""
    from tests.api.test_openapi_contract import check_against_document
    from tests.recommender.tiny_bundle import make_tiny_bundle

    tiny = make_tiny_bundle(tmp_path / "tiny")
    c = make_app(BUNDLE=str(served_bundle), MODELS={"small": str(tiny)}).test_client()
    body = c.get("/healthz").get_json()
    app_state = c.application.extensions["mixmatch"].holder.current()
    small = app_state.models["small"]
    entry = body["models"]["small"]
    assert entry["items"] == len(small.catalog) != body["items"]
    assert entry["bundle_version"] == small.bundle_version != body["bundle_version"]
    assert entry["bundle"] == str(tiny)
    assert {k: entry[k] for k in PLAIN} == {"stale_stages": [], "changed_outputs": {},
                                            "graph_pairing_differs": False}
    schema = healthz_schema(c)
    assert {"items", "bundle_version", "bundle"} <= set(
        schema["properties"]["models"]["additionalProperties"]["required"])
    check_against_document(c.get("/openapi.json").get_json(), "GET /healthz",
                           c.get("/healthz"))


def test_healthz_models_is_empty_without_models(served_bundle, make_app):
    body = make_app(BUNDLE=str(served_bundle)).test_client().get("/healthz").get_json()
    assert body["models"] == {}


#: the packaged defaults' shoes row plus jewellery, a pair their graph does not hold
SHOES_WITH_JEWELLERY = '["top", "bottom", "dress", "outerwear", "bag", "jewellery"]'


def write_pairing(path, version: str, shoes: str) -> None:
    path.write_text(f'version = "{version}"\n[pairing]\nshoes = {shoes}\n')


def engine_with_shoes_and_jewellery(bundle):
    """The bundle's engine; the test skips when it has no shoes or no jewellery (the
    pairing tests ask for that pair)."""
    from recommender.engine import Engine

    engine = Engine.load(bundle)
    if not {"shoes", "jewellery"} <= set(engine.categories):
        pytest.skip("the served bundle has no shoes or no jewellery")
    return engine


def test_healthz_says_when_the_served_rules_pair_what_the_graph_was_not_built_for(
        served_bundle, tmp_path, make_app, caplog):
    # before: with RULES pairing shoes with jewellery, a graph built with the default
    # pairing holds no jewellery neighbours of shoes; the jewellery group of a shoe
    # was filled by the strategy's top-up alone while /healthz and the log said nothing
    from recommender.rules import load_rules

    engine = engine_with_shoes_and_jewellery(served_bundle)
    rules = tmp_path / "rules.toml"
    write_pairing(rules, "pair-1", SHOES_WITH_JEWELLERY)
    with caplog.at_level("WARNING", logger="api.state"):
        app = make_app(BUNDLE=str(served_bundle), RULES=str(rules))
    assert "shoes->jewellery" in caplog.text
    assert f"mixmatch graph --bundle {served_bundle}" in caplog.text
    c = app.test_client()
    body = c.get("/healthz").get_json()
    assert body["graph_pairing_differs"] is True
    assert body["stale_stages"] == []             # the bundle's stages are current
    jsonschema.validate(body, healthz_schema(c))
    assert engine.graph_pairs_missing() == []     # built with its own pairing
    assert engine.graph_pairs_missing(load_rules(rules)) == ["shoes->jewellery"]
    shoe = engine.table.ids[engine._cat_rows["shoes"][0]]
    groups = c.get(f"/v1/items/{shoe}/complements?k=3").get_json()["groups"]
    assert "jewellery" in [g["category"] for g in groups]   # served all the same

    # a reloaded rules file that pairs as the graph does: no longer said
    write_pairing(rules, "pair-2", '["top", "bottom"]')
    caplog.clear()
    with caplog.at_level("WARNING", logger="api.state"):
        app.extensions["mixmatch"].holder.reload()
    assert "shoes->" not in caplog.text
    assert c.get("/healthz").get_json()["graph_pairing_differs"] is False


def test_healthz_pairing_check_covers_rules_files_and_models(served_bundle, tmp_path,
                                                             make_app):
    engine_with_shoes_and_jewellery(served_bundle)
    variant_rules = tmp_path / "variant.toml"
    write_pairing(variant_rules, "v-1", SHOES_WITH_JEWELLERY)
    model = tmp_path / "model"
    shutil.copytree(served_bundle, model)
    c = make_app(BUNDLE=str(served_bundle)).test_client()
    body = c.get("/healthz").get_json()
    assert body["graph_pairing_differs"] is False
    # a variant may serve RULES_FILES' rules with any engine, MODELS' ones included
    c = make_app(BUNDLE=str(served_bundle), RULES_FILES={"wide": str(variant_rules)},
                 MODELS={"v2": str(model)}).test_client()
    body = c.get("/healthz").get_json()
    assert body["graph_pairing_differs"] is True
    assert {k: body["models"]["v2"][k] for k in PLAIN} == {
        "stale_stages": [], "changed_outputs": {}, "graph_pairing_differs": True}


def test_healthz_names_the_worker_that_answered(make_app):
    # before: counters (reloads, reload_failures, exposures_dropped) are per worker,
    # and nothing said which worker's they were: two calls showed different counts
    import os

    c = make_app().test_client()
    r = c.get("/healthz")                             # no bundle yet: 503, pid all the same
    assert r.status_code == 503 and r.get_json()["worker_pid"] == os.getpid()
    schema = healthz_schema(c)
    assert schema["properties"]["worker_pid"]["type"] == "integer"


def test_healthz_worker_pid_is_a_gunicorn_worker(live_server, tmp_path):
    import json
    import urllib.error
    import urllib.request
    from pathlib import Path

    srv = live_server({"DATA_DIR": str(tmp_path)}, workers=2)
    pids = set()
    for _ in range(6):
        try:
            urllib.request.urlopen(srv.url + "/healthz", timeout=5)
        except urllib.error.HTTPError as exc:        # 503 no_bundle: the body says
            pids.add(json.loads(exc.read())["worker_pid"])
    assert pids and srv.proc.pid not in pids
    for pid in pids:   # a worker of this server (its master's child), not the master
        stat = Path(f"/proc/{pid}/stat").read_text()
        assert int(stat.rsplit(")", 1)[1].split()[1]) == srv.proc.pid


def gauges(client, name: str) -> dict:
    """``{model: value}`` of the ``/metrics`` gauge ``name``."""
    import re

    text = client.get("/metrics").get_data(as_text=True)
    assert f"# TYPE {name} gauge" in text
    return {m[1]: float(m[2]) for m in re.finditer(
        rf'^{name}{{model="([^"]*)",pid="\d+"}} (\S+)$', text, re.M)}


def test_metrics_has_the_stale_stages_and_the_pairing_flag_of_each_model(
        served_bundle, tmp_path, make_app):
    # before: /metrics had neither, so an alert on a graph served out of date needed a
    # JSON probe of /healthz beside the Prometheus scrape
    engine_with_shoes_and_jewellery(served_bundle)
    stale = tmp_path / "stale_model"
    shutil.copytree(served_bundle, stale)
    make_graph_stale(stale)
    c = make_app(BUNDLE=str(served_bundle), MODELS={"v2": str(stale)}).test_client()
    assert gauges(c, "mixmatch_stale_stages") == {"default": 0, "v2": 1}
    assert gauges(c, "mixmatch_graph_pairing_differs") == {"default": 0, "v2": 0}
    variant_rules = tmp_path / "variant.toml"
    write_pairing(variant_rules, "v-1", SHOES_WITH_JEWELLERY)
    c = make_app(BUNDLE=str(served_bundle), MODELS={"v2": str(stale)},
                 RULES_FILES={"wide": str(variant_rules)}).test_client()
    assert gauges(c, "mixmatch_graph_pairing_differs") == {"default": 1, "v2": 1}
    body = c.get("/healthz").get_json()              # the same as /healthz says
    assert body["graph_pairing_differs"] and body["models"]["v2"]["graph_pairing_differs"]


def test_metrics_without_a_bundle_has_no_model_gauges(make_app):
    text = make_app().test_client().get("/metrics").get_data(as_text=True)
    assert "mixmatch_reloads_total" in text and "mixmatch_stale_stages" not in text


def test_a_pairing_gap_is_logged_once_per_process_not_at_every_reload(
        served_bundle, tmp_path, make_app, caplog):
    # before: every reload (admin, file watch) rebuilt the state and logged the same
    # warning again, in every worker, for as long as the gap lasted
    engine_with_shoes_and_jewellery(served_bundle)
    rules = tmp_path / "rules.toml"
    write_pairing(rules, "once-1", SHOES_WITH_JEWELLERY)

    def warnings() -> int:
        return sum("shoes->jewellery" in r.getMessage() for r in caplog.records)

    with caplog.at_level("WARNING", logger="api.state"):
        app = make_app(BUNDLE=str(served_bundle), RULES=str(rules))
        holder = app.extensions["mixmatch"].holder
        holder.reload()
        holder.reload()
        make_app(BUNDLE=str(served_bundle), RULES=str(rules))   # same process
        assert warnings() == 1
        c = app.test_client()
        assert c.get("/healthz").get_json()["graph_pairing_differs"] is True
        write_pairing(rules, "once-2", SHOES_WITH_JEWELLERY)    # a new rules version
        holder.reload()
        holder.reload()
        assert warnings() == 2
        assert "version once-2" in caplog.records[-1].getMessage()
    assert c.get("/healthz").get_json()["graph_pairing_differs"] is True


@pytest.mark.parametrize("key", ["MODELS", "RULES_FILES"])
def test_a_models_or_rules_files_entry_named_default_is_refused(served_bundle, tmp_path,
                                                                make_app, key):
    # before: "default" names the main bundle and its rules. A MODELS bundle so named
    # was loaded and never served (a variant's model = "default" is the main engine),
    # /healthz's graph_pairing_differs described it instead of the main bundle, and
    # /metrics wrote each gauge twice under model="default" (Prometheus fails the whole
    # scrape on a duplicate series); a RULES_FILES file so named replaced RULES
    from features.exceptions import InputError

    entry = str(served_bundle) if key == "MODELS" else str(tmp_path / "rules.toml")
    write_pairing(tmp_path / "rules.toml", "r-1", '["top", "bottom"]')
    with pytest.raises(InputError) as err:
        make_app(BUNDLE=str(served_bundle), **{key: {"default": entry}})
    assert err.value.field == key and "'default'" in str(err.value)
    assert "another name" in str(err.value), str(err.value)
    c = make_app(BUNDLE=str(served_bundle), **{key: {"v2": entry}}).test_client()
    assert c.get("/healthz").status_code == 200


def replace_an_output(root) -> tuple[str, str]:
    """Copy another array of the same shape over a graph file the build recorded (as
    a file copied by hand from another bundle); returns (stage, file)."""
    import numpy as np

    from recommender.bundle import Bundle

    rec = Bundle.open(root).stage_record("graph") or {}
    weights = [f for f in rec.get("output_hashes") or {} if f.endswith("_weights.npy")]
    if not weights:
        pytest.skip("the served bundle records no hashed graph weights")
    np.save(root / weights[0], np.load(root / weights[0]) * 0.5)
    return "graph", weights[0]


def test_healthz_and_metrics_report_outputs_replaced_since_the_build(served_bundle,
                                                                     tmp_path, make_app):
    # before: a graph file copied by hand over one the build recorded was served with
    # /healthz, /metrics and the log all saying the bundle was as built
    changed = tmp_path / "changed"
    shutil.copytree(served_bundle, changed)
    stage, rel = replace_an_output(changed)
    variant = tmp_path / "variant"
    shutil.copytree(changed, variant)
    fresh = tmp_path / "fresh"
    shutil.copytree(served_bundle, fresh)
    c = make_app(BUNDLE=str(changed),
                 MODELS={"v2": str(variant), "v3": str(fresh)}).test_client()
    body = c.get("/healthz").get_json()
    assert body["changed_outputs"] == {stage: [rel]}
    assert body["stale_stages"] == []             # its meaning unchanged
    assert body["models"]["v2"]["changed_outputs"] == {stage: [rel]}
    assert {k: body["models"]["v3"][k] for k in PLAIN} == {
        "stale_stages": [], "changed_outputs": {}, "graph_pairing_differs": False}
    schema = healthz_schema(c)
    assert "changed_outputs" in schema["properties"]
    assert "changed_outputs" in schema["properties"]["models"][
        "additionalProperties"]["properties"]
    jsonschema.validate(body, schema)
    assert gauges(c, "mixmatch_changed_outputs") == {"default": 1, "v2": 1, "v3": 0}
    assert gauges(c, "mixmatch_stale_stages") == {"default": 0, "v2": 0, "v3": 0}


def test_healthz_changed_outputs_is_empty_for_a_bundle_as_built(served_bundle, make_app):
    c = make_app(BUNDLE=str(served_bundle)).test_client()
    assert c.get("/healthz").get_json()["changed_outputs"] == {}
    assert gauges(c, "mixmatch_changed_outputs") == {"default": 0}


def test_metrics_label_an_unknown_method_other_and_still_parse(client):
    """The method label was the client's method as sent: each made-up method was a
    series of its own (without bound), and a quote or newline in it (werkzeug's server
    passes them) wrote lines of the client's into the scrape, which then failed."""
    for method in ("FOO1", "FOO2", 'X"Y} 1\nmixmatch_evil{a="b'):
        assert client.open("/healthz", method=method).status_code == 405
    assert client.get("/healthz").status_code == 503   # no bundle: a known method
    lines = [ln for ln in client.get("/metrics").get_data(as_text=True).splitlines()
             if ln.startswith("mixmatch_requests_total")]
    methods = sorted(ln.split('method="')[1].split('"')[0] for ln in lines)
    assert methods == ["GET", "other"], lines
    assert not any("evil" in ln or "FOO" in ln for ln in lines), lines
    other = next(ln for ln in lines if 'method="other"' in ln)
    assert other.endswith(" 3"), other
