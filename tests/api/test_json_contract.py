"""The JSON the routes answer, on the engine's tiny known-answer bundle: every body is
JSON that strict readers (a browser's ``JSON.parse``) accept and that its documented
schema allows, including where there is nothing to score."""
from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from flask import jsonify

from api import create_app
from tests.recommender.tiny_bundle import make_tiny_bundle

#: t3 (a top, 39.0 if it had a price) has a blank price: unknown, NaN once loaded. It
#: would be an up-sell of t1 (33.0, band (33, 52.8]) and of t0 (30.0, (30, 48]).
UNKNOWN_PRICE = "t3"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = make_tiny_bundle(tmp_path_factory.mktemp("json_contract") / "bundle",
                            unknown_price=(UNKNOWN_PRICE,))
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


def test_the_apps_json_writes_non_finite_numbers_as_null(client):
    """Whatever reaches ``jsonify`` (an error body, a blueprint's own answer), a NaN or
    an infinity is written as null, and numpy values as numbers."""
    with client.application.test_request_context():
        r = jsonify({"score": float("nan"), "price": float("inf")})
        assert strict_json(r) == {"score": None, "price": None}
        r = jsonify({"price": np.float64("inf"), "scores": np.array([0.5, -np.inf]),
                     "n": np.int64(3)})
        assert strict_json(r) == {"price": None, "scores": [0.5, None], "n": 3}


def test_respond_writes_an_engine_payload_json_has_no_type_for(app):
    """``respond`` cleans with ``json_safe(default=str)`` (it had a cleaner of its own,
    ``clean_json``): a path, a set, numpy and pandas values, non-string keys are all
    written, the envelope added, never a 500."""
    from pathlib import Path

    import pandas as pd
    from api.responses import respond
    payload = {"image": Path("/img/a.png"), "tags": {"x"}, 3: np.float32("nan"),
               np.int64(4): pd.Series([1.0, np.inf]), "n": np.int64(2)}
    with app.test_request_context():
        r, status = respond(payload, 201)
        body = strict_json(r)
    assert status == 201
    assert {k: v for k, v in body.items() if k not in ("request_id", "experiment",
                                                       "variant", "bundle_version",
                                                       "rules_version")} == {
        "image": "/img/a.png", "tags": "{'x'}", "3": None, "4": [1.0, None], "n": 2}
    assert "request_id" in body and "rules_version" in body


def test_unknown_price_is_never_shown_as_a_number(client):
    # an up-sell of a priced top: the unknown-priced one cannot be shown as pricier
    for anchor in ("t1", "t0"):
        r = client.get(f"/v1/items/{anchor}/upsell?k=10")
        assert r.status_code == 200, r.get_json()
        out = strict_json(r)
        assert out["price_available"] is True and out["items"]
        assert UNKNOWN_PRICE not in [it["item_id"] for it in out["items"]]
        assert all(isinstance(it["price"], float) for it in out["items"])
        jsonschema.validate(out, response_schema(client, "/v1/items/{item_id}/upsell",
                                                 "get"))
    # the up-sell of the unknown-priced top itself: no price, no band, and it says so
    out = strict_json(client.get(f"/v1/items/{UNKNOWN_PRICE}/upsell?k=3"))
    assert out["price_available"] is False and out["price"] is None
    assert "no price" in out["note"] and out["items"]
    assert all("price" not in it for it in out["items"])


@pytest.mark.parametrize("method, path, body", [
    ("get", f"/v1/items/{UNKNOWN_PRICE}/complements?k=3", None),
    ("get", "/v1/items/p1/complements?k=6&categories=top", None),
    ("get", "/v1/search?category=top&k=10", None),
    ("get", f"/v1/search?like={UNKNOWN_PRICE}&k=3", None),
    ("post", "/v1/outfits/complete", {"items": [UNKNOWN_PRICE], "n": 2}),
    ("post", "/v1/outfits/score", {"items": [UNKNOWN_PRICE, "p3"]}),
    ("get", "/healthz", None),
])
def test_routes_answer_strict_json_with_an_unknown_price(client, method, path, body):
    r = getattr(client, method)(path, json=body) if body else getattr(client, method)(path)
    assert r.status_code == 200, r.get_data(as_text=True)
    strict_json(r)


def test_preview_of_an_unknown_priced_item_shows_no_price(client):
    r = client.get(f"/preview/{UNKNOWN_PRICE}")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert f"<b>{UNKNOWN_PRICE}</b>" in html and "nan" not in html.lower()


@pytest.mark.parametrize("endpoint", ["complements", "upsell"])
def test_an_assignment_echoes_its_variants_params_as_documented(tmp_path, endpoint):
    """The docstring promised a variant's params echoed; the response said nothing of
    them. They are a new key of the variant's ``assignments`` entry, in the schema."""
    root = make_tiny_bundle(tmp_path / "bundle")
    (tmp_path / "exp.json").write_text(json.dumps({"layers": [{"name": "ranking",
        "experiments": [{"name": "div", "qa_override": True,
                         "endpoints": ["complements", "upsell"], "variants": [
                             {"name": "control"},
                             {"name": "wide", "params": {"diversity": 0.75}}]}]}]}))
    app = create_app({"TESTING": True, "BUNDLE": str(root), "WATCH_INTERVAL": 0,
                      "DATA_DIR": str(tmp_path / "data"),
                      "EXPERIMENTS": str(tmp_path / "exp.json")})
    c = app.test_client()
    schema = response_schema(c, f"/v1/items/{{item_id}}/{endpoint}", "get")
    entry = schema["properties"]["assignments"]["items"]
    for variant, echo in (("wide", {"params": {"diversity": 0.75}}), ("control", {})):
        body = strict_json(c.get(f"/v1/items/t0/{endpoint}?k=3&variant=div:{variant}"))
        assert body["assignments"] == [{"layer": "ranking", "experiment": "div",
                                        "variant": variant, "forced": True, **echo}]
        jsonschema.validate(body, schema)
    # an entry with a key the schema does not name is refused by it
    body["assignments"][0]["paramz"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, schema)
    assert entry["properties"]["params"]["additionalProperties"] == {"type": "number"}
    app.extensions["mixmatch"].events.close()
