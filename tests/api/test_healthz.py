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


def test_healthz_models_is_empty_without_models(served_bundle, make_app):
    body = make_app(BUNDLE=str(served_bundle)).test_client().get("/healthz").get_json()
    assert body["models"] == {}
