"""Fuzz the API from its own OpenAPI document (schemathesis, in-process over WSGI).

Checks: no 5xx, every status documented, content types as documented, every response
body valid against its schema. Examples per operation are bounded (``MAX_EXAMPLES``)
so the file runs in well under a minute.

Two schemas: the operations that need no engine (events, admin, openapi, metrics)
fuzzed on an app without a bundle, and every operation on the demo bundle's real
engine (skipped, with the reason, while the engine has not landed).
"""
from __future__ import annotations

import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from api import create_app

MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                         database=None,
                         suppress_health_check=list(HealthCheck))


@pytest.fixture
def no_engine_schema(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "ADMIN_TOKEN": "t",
                      "WATCH_INTERVAL": 0})
    return schemathesis.openapi.from_wsgi("/openapi.json", app).include(
        path_regex=r"^/(v1/events|admin/reload|openapi\.json|metrics)$")


IMAGE_OPS = r"^/v1/(analyze|search)$"


def engine_analyses_images(app) -> bool:
    """False while the engine answers image operations with StageNotAvailable (501:
    features.extract, issue 3, not landed): those operations are then left out of the
    fuzz instead of being counted as server errors."""
    import numpy as np
    from features.exceptions import StageNotAvailable
    try:
        app.extensions["mixmatch"].holder.current().engine.analyze_image(
            np.full((32, 32, 3), 200, np.uint8))
    except StageNotAvailable:
        return False
    return True


@pytest.fixture
def engine_schema(served_app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", served_app).exclude(
        path_regex=r"^/admin/")
    if not engine_analyses_images(served_app):
        schema = schema.exclude(path_regex=IMAGE_OPS, method="POST")
    return schema


def fuzz(schema) -> dict:
    """Run every operation in positive and negative mode; returns cases per operation.

    (schemathesis.pytest.from_fixture does not work with this pytest version: it sets
    the removed ``Node._nodeid``; driving hypothesis directly keeps fixtures usable.)
    """
    counts = {}
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            seen = []

            @given(case=op.as_strategy(generation_mode=mode))
            @FUZZ_SETTINGS
            def run(case):
                seen.append(case)
                case.call_and_validate(checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                # nothing to make invalid (no parameters, no body): no negative cases
            counts[f"{op.method.upper()} {op.path} {mode.value}"] = len(seen)
    return counts


def test_fuzz_without_engine(no_engine_schema):
    counts = fuzz(no_engine_schema)
    assert len(counts) == 6, counts   # 3 operations x 2 modes
    assert all(n > 0 for k, n in counts.items() if k.endswith("positive")), counts
    assert counts["POST /v1/events negative"] > 0


def test_fuzz_with_engine(engine_schema):
    counts = fuzz(engine_schema)
    print(f"fuzzed {sum(counts.values())} cases over {len(counts)} operation/modes: "
          f"no 5xx, every response within its schema")
    assert len(counts) >= 18, counts      # 24 with the image operations
    assert all(n > 0 for k, n in counts.items() if k.endswith("positive")), counts


def test_healthz_without_a_bundle_answers_what_the_document_says(tmp_path):
    """/healthz answers 503 with its own body (status no_bundle) before a bundle is
    loaded; the document must describe that body, not the Error one it lacks."""
    import jsonschema

    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "WATCH_INTERVAL": 0})
    client = app.test_client()
    r = client.get("/healthz")
    assert r.status_code == 503
    doc = client.get("/openapi.json").get_json()
    schema = doc["paths"]["/healthz"]["get"]["responses"]["503"]["content"][
        "application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    jsonschema.validate(r.get_json(), schema)
    assert r.get_json()["status"] == "no_bundle"


def test_item_score_is_documented_as_relevance_not_rank(client):
    """With diversity on, a group's scores need not decrease down the list (MMR may
    put a less similar item above a near-duplicate that scores higher); the document
    must say what ``score`` is and that the list order is the display order."""
    doc = client.get("/openapi.json").get_json()
    for path in ("/v1/items/{item_id}/complements", "/v1/items/{item_id}/upsell"):
        schema = doc["paths"][path]["get"]["responses"]["200"]["content"][
            "application/json"]["schema"]["properties"]
        items = (schema["groups"]["items"]["properties"]["items"] if "groups" in schema
                 else schema["items"])
        assert "display order" in items["description"]
        score = items["items"]["properties"]["score"]["description"]
        assert "relevance" in score and "need not decrease" in score
