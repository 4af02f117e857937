"""The JSON the routes answer, on the engine's tiny known-answer bundle: every body is
JSON that strict readers (a browser's ``JSON.parse``) accept and that its documented
schema allows, including where there is nothing to score."""
from __future__ import annotations

import json

import jsonschema
import pytest

from api import create_app
from tests.recommender.tiny_bundle import make_tiny_bundle


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = make_tiny_bundle(tmp_path_factory.mktemp("json_contract") / "bundle")
    app = create_app({"TESTING": True, "BUNDLE": str(root), "WATCH_INTERVAL": 0,
                      "DATA_DIR": str(tmp_path_factory.mktemp("json_contract_data"))})
    return app.test_client()


def strict_json(response):
    """The body parsed as strict JSON: NaN and Infinity are refused, as JSON.parse does."""
    def refuse(word):
        raise ValueError(f"{word} is not JSON")
    return json.loads(response.get_data(as_text=True), parse_constant=refuse)


def response_schema(client, path: str, method: str) -> dict:
    doc = client.get("/openapi.json").get_json()
    schema = doc["paths"][path][method]["responses"]["200"]["content"][
        "application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize("body", [
    {"items": ["t1"], "slots": ["top"]},
    {"items": ["d1"], "slots": ["dress"], "n": 2},
])
def test_complete_with_nothing_to_add_scores_null(client, body):
    r = client.post("/v1/outfits/complete", json=body)
    assert r.status_code == 200, r.get_json()
    out = strict_json(r)
    assert [[it["item_id"] for it in lk["items"]] for lk in out["looks"]] == [body["items"]]
    assert out["looks"][0]["score"] is None   # nothing to score, not 0.0
    jsonschema.validate(out, response_schema(client, "/v1/outfits/complete", "post"))
