"""Every operation of the served ``/openapi.json`` answers what the document says: a
documented status and content type, a JSON body valid under its schema, and no key the
schema does not list.

The fuzz test (``test_openapi_fuzz.py``) validates bodies too, but a schema without
``additionalProperties: false`` lets any undocumented key through: up-sell's top-level
``strategy`` was served and not listed (complements' was). Here a key is undocumented
wherever the schema lists an object's ``properties`` and has no schema for the others.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest

from api import create_app
from tests.recommender.tiny_bundle import make_tiny_bundle

ADMIN = {"Authorization": "Bearer s3cret"}


def undocumented(body, schema: dict, where: str = "body") -> list[str]:
    """Paths of the keys in ``body`` that ``schema`` does not list (``items[].price``),
    at any depth: an object's keys are listed by ``properties`` or described by an
    ``additionalProperties`` schema, and an array's entries by ``items``. A nested
    object or array whose schema says neither (``{"type": "object"}``, ``"array"``)
    is undocumented too: a client generated from it cannot read what is inside (the
    completed looks' items and the analysed photo's attributes were such)."""
    out: list[str] = []
    if not isinstance(schema, dict):
        return out
    if isinstance(body, dict):
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        for key, value in body.items():
            if props is not None and key in props:
                out += undocumented(value, props[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                out += undocumented(value, extra, f"{where}.{key}")
            elif extra is not False:   # False: jsonschema says
                out.append(f"{where}.{key}")
    elif isinstance(body, list):
        items = schema.get("items")
        for value in body:
            if isinstance(items, dict):
                found = undocumented(value, items, f"{where}[]")
            else:   # an entry of an array whose entries are not described
                found = [f"{where}[]"] if isinstance(value, (dict, list)) else []
            out += [p for p in found if p not in out]
    return out


def check_against_document(doc: dict, op: str, response) -> None:
    """``response`` of operation ``op`` ("GET /v1/search") is what ``doc`` says."""
    method, path = op.split(" ", 1)
    responses = doc["paths"][path][method.lower()]["responses"]
    documented = responses.get(str(response.status_code)) or responses.get("default")
    assert documented is not None, f"{op}: status {response.status_code} not documented"
    content = documented["content"]
    assert response.mimetype in content, (op, response.mimetype, list(content))
    if response.mimetype != "application/json":
        return
    schema = content["application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    body = json.loads(response.get_data(as_text=True))
    jsonschema.validate(body, schema)
    missing = undocumented(body, schema)
    assert not missing, f"{op} {response.status_code}: served, not in the document: " \
                        f"{', '.join(missing)}"


def png() -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (48, 64), (180, 30, 40)).save(buf, "PNG")
    return buf.getvalue()


def image_form(**fields):
    return {"data": {"image": (io.BytesIO(png()), "photo.png"), **fields},
            "content_type": "multipart/form-data"}


#: operation -> requests that exercise it on the tiny bundle (t3 has no price; the
#: ``div`` experiment's ``wide`` variant sets params, so ``assignments`` are served)
CASES = {
    "GET /v1/items/{item_id}/complements": [
        ("get", "/v1/items/t0/complements?k=3&variant=div:wide", {}),
        ("get", "/v1/items/t0/complements?k=x", {}),
        ("get", "/v1/items/NOPE/complements", {})],
    "GET /v1/items/{item_id}/upsell": [
        ("get", "/v1/items/t0/upsell?k=3&context=p0&variant=div:wide", {}),
        ("get", "/v1/items/t3/upsell?k=3", {})],
    "POST /v1/outfits/complete": [
        ("post", "/v1/outfits/complete", {"json": {"items": ["t0"], "n": 2}})],
    "POST /v1/outfits/score": [
        ("post", "/v1/outfits/score", {"json": {"items": ["t0", "p0"]}})],
    "GET /v1/search": [("get", "/v1/search?category=top&k=3", {}),
                       ("get", "/v1/search?like=t0&k=3", {})],
    # the tiny bundle has no attribute network: its error body (see the demo bundle's
    # test below for the answers)
    "POST /v1/search": [("post", "/v1/search", image_form(k="3"))],
    "POST /v1/analyze": [("post", "/v1/analyze", image_form())],
    "POST /v1/events": [("post", "/v1/events", {"json": {
        "type": "click", "request_id": "r-1", "item_id": "t0", "user_id": "u1"}})],
    "GET /healthz": [("get", "/healthz", {})],
    "GET /metrics": [("get", "/metrics", {})],
    "GET /preview/{item_id}": [("get", "/preview/t0?k=2", {})],
    "POST /admin/reload": [("post", "/admin/reload", {"headers": ADMIN}),
                           ("post", "/admin/reload", {})],
    # the tiny bundle has no image root: its 404s, and the 400 of a model not served
    # (the demo bundle's test below fetches a photo)
    "GET /images/{path}": [("get", "/images/t0.png", {}),
                           ("get", "/images/t0.png?model=nope", {}),
                           ("get", "/images/a/../../b.txt", {})],
}


@pytest.fixture(scope="module")
def tiny_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openapi_contract")
    root = make_tiny_bundle(tmp / "bundle", unknown_price=("t3",))
    (tmp / "exp.json").write_text(json.dumps({"layers": [{"name": "ranking",
        "experiments": [{"name": "div", "qa_override": True,
                         "endpoints": ["complements", "upsell"], "variants": [
                             {"name": "control"},
                             {"name": "wide", "params": {"diversity": 0.75}}]}]}]}))
    app = create_app({"TESTING": True, "BUNDLE": str(root), "WATCH_INTERVAL": 0,
                      "DATA_DIR": str(tmp / "data"), "ADMIN_TOKEN": "s3cret",
                      "EXPERIMENTS": str(tmp / "exp.json"), "WARM_VISION": False})
    yield app
    app.extensions["mixmatch"].events.close()


def test_every_operation_of_the_document_has_a_contract_case(tiny_app):
    doc = tiny_app.test_client().get("/openapi.json").get_json()
    ops = {f"{m.upper()} {p}" for p, methods in doc["paths"].items() for m in methods}
    assert ops == set(CASES), "a new operation needs a case in CASES"


@pytest.mark.parametrize("op", sorted(CASES))
def test_each_operation_answers_what_the_document_says(tiny_app, op):
    c = tiny_app.test_client()
    doc = c.get("/openapi.json").get_json()
    for method, url, kwargs in CASES[op]:
        r = getattr(c, method)(url, **kwargs)
        assert r.status_code < 500 or r.status_code == 501, (url, r.get_data(as_text=True))
        check_against_document(doc, op, r)


def test_a_served_key_the_schema_does_not_list_is_caught(tiny_app):
    """The check itself: up-sell's ``strategy`` taken out of the document is reported
    (it was missing there, and no test saw it)."""
    c = tiny_app.test_client()
    doc = c.get("/openapi.json").get_json()
    op = doc["paths"]["/v1/items/{item_id}/upsell"]["get"]
    del op["responses"]["200"]["content"]["application/json"]["schema"]["properties"][
        "strategy"]
    with pytest.raises(AssertionError, match="served, not in the document"):
        check_against_document(doc, "GET /v1/items/{item_id}/upsell",
                               c.get("/v1/items/t0/upsell?k=3"))


def test_a_nested_object_the_schema_leaves_open_is_caught():
    """The check walks into nested objects and arrays: a key inside an object whose
    schema lists nothing, and an entry of an array whose ``items`` are not given, are
    reported; described ones are not."""
    schema = {"type": "object", "properties": {
        "looks": {"type": "array", "items": {"type": "object", "properties": {
            "items": {"type": "array"}, "score": {"type": "number"}}}},
        "mask": {"type": "object"},
        "tags": {"type": "array"},
        "shape": {"type": "object", "additionalProperties": {"type": "number"}}}}
    body = {"looks": [{"items": [{"item_id": "a"}], "score": 1.0},
                      {"items": [{"item_id": "b"}], "score": 0.5}],
            "mask": {"method": "alpha"}, "tags": ["a", "b"], "shape": {"rise": 1.0}}
    assert undocumented(body, schema) == ["body.looks[].items[]", "body.mask.method"]


def test_the_photo_operations_answer_what_the_document_says(served_app):
    """``POST /v1/analyze`` and ``POST /v1/search`` on the demo bundle, whose engine
    analyses photos (skipped, saying why, where it cannot)."""
    from features.exceptions import StageNotAvailable
    import numpy as np
    engine = served_app.extensions["mixmatch"].holder.current().engine
    try:
        engine.analyze_image(np.full((32, 32, 3), 200, np.uint8))
    except StageNotAvailable as exc:
        pytest.skip(f"the engine cannot analyse photos: {exc}")
    c = served_app.test_client()
    doc = c.get("/openapi.json").get_json()
    for op, url, form in (("POST /v1/analyze", "/v1/analyze", image_form()),
                          ("POST /v1/search", "/v1/search", image_form(k="3"))):
        r = c.post(url, **form)
        assert r.status_code == 200, r.get_json()
        check_against_document(doc, op, r)
    # a catalogue top's photo: its keypoints' points and shape are served and checked
    # too (the plain square above has none)
    state = served_app.extensions["mixmatch"].holder.current()
    cat = state.engine.catalog
    path = str(cat.loc[cat["category"] == "top", "image_path"].iloc[0])
    photo = Path(path) if Path(path).is_absolute() else state.image_root / path
    r = c.post("/v1/analyze", data={"image": (io.BytesIO(photo.read_bytes()),
                                              photo.name)},
               content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()
    check_against_document(doc, "POST /v1/analyze", r)
    body = r.get_json()
    assert body["keypoints"]["points"] and body["shape"] and body["attributes"], body


def test_a_catalogue_photo_answers_what_the_document_says(served_app):
    """``/images/<path>`` serves the bundle's photos (the preview's cards show them):
    it was not in the document, so a page or a client generated from it did not know
    the route, its ``model`` parameter or its 404 body."""
    c = served_app.test_client()
    doc = c.get("/openapi.json").get_json()
    state = served_app.extensions["mixmatch"].holder.current()
    if state.image_root is None:
        pytest.skip("the served bundle has no image root")
    path = str(state.engine.catalog["image_path"].iloc[0])
    with c.get(f"/images/{path}") as r:   # closes the file it streams
        assert r.status_code == 200 and r.mimetype.startswith("image/"), r.status_code
        check_against_document(doc, "GET /images/{path}", r)
    for url, status in ((f"/images/{path}?model=nope", 400), ("/images/nope.jpg", 404),
                        (f"/images/{path}.txt", 404), ("/images/../manifest.json", 404)):
        r = c.get(url)
        assert r.status_code == status, url
        check_against_document(doc, "GET /images/{path}", r)


def test_the_preview_documents_and_bounds_the_ab_parameters_it_reads(tiny_app):
    """``/preview`` assigns its unit from ``user_id``/``session_id`` and honours
    ``variant`` as the JSON routes do, but its document listed ``k`` alone, and it
    took a unit id of any length (written to the exposures table) or an empty one."""
    c = tiny_app.test_client()
    doc = c.get("/openapi.json").get_json()
    params = {p["name"]: p["schema"] for p in
              doc["paths"]["/preview/{item_id}"]["get"]["parameters"]}
    complements = {p["name"]: p["schema"] for p in
                   doc["paths"]["/v1/items/{item_id}/complements"]["get"]["parameters"]}
    for name in ("user_id", "session_id", "variant"):
        assert params[name] == complements[name]
    for bad in ("u" * 129, ""):
        r = c.get(f"/preview/t0?user_id={bad}")
        assert r.status_code == 400 and r.get_json()["field"] == "user_id", r.status_code
    assert c.get(f"/preview/t0?user_id={'u' * 128}&session_id=s1").status_code == 200


def _healthz_schema(doc: dict, status: int) -> dict:
    schema = doc["paths"]["/healthz"]["get"]["responses"][str(status)]["content"][
        "application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.fixture(scope="module")
def healthz_answers(tmp_path_factory):
    """``/healthz`` in each state a worker can be in: no bundle (none given; a reload
    refused), a bundle with MODELS, RULES_FILES and EXPERIMENTS, and that bundle still
    served after a reload was refused. ``[(state, status, body)]``."""
    tmp = tmp_path_factory.mktemp("healthz_states")
    root = make_tiny_bundle(tmp / "bundle")
    alt = make_tiny_bundle(tmp / "alt", id_prefix="x")
    (tmp / "wide.toml").write_text('version = "wide-1"\n')
    (tmp / "exp.json").write_text(json.dumps({"layers": [{"name": "ranking",
        "experiments": [{"name": "arm", "endpoints": ["complements"], "variants": [
            {"name": "control"}, {"name": "alt", "model": "alt"}]}]}]}))
    out, apps = [], []
    for state, config in (
            ("no bundle", {}),
            ("a bundle with MODELS and RULES_FILES", {
                "BUNDLE": str(root), "MODELS": {"alt": str(alt)},
                "RULES_FILES": {"wide": str(tmp / "wide.toml")},
                "EXPERIMENTS": str(tmp / "exp.json")})):
        app = create_app({"TESTING": True, "DATA_DIR": str(tmp / f"data{len(apps)}"),
                          "WATCH_INTERVAL": 0, "ADMIN_TOKEN": "s3cret",
                          "WARM_VISION": False, **config})
        apps.append(app)
        c = app.test_client()
        r = c.get("/healthz")
        out.append((state, r.status_code, r.get_json()))
        refused = c.post("/admin/reload", json={"bundle": str(tmp / "nope")},
                         headers=ADMIN)
        assert refused.status_code == 422, refused.get_json()
        r = c.get("/healthz")
        out.append((f"{state}, a reload refused", r.status_code, r.get_json()))
    doc = apps[0].test_client().get("/openapi.json").get_json()
    yield doc, out
    for app in apps:
        app.extensions["mixmatch"].events.close()


def test_healthz_answers_each_carry_every_key_their_own_schema_requires(healthz_answers):
    # before: the 200 and the 503 shared one schema requiring status alone (and the
    # envelope), so a client could not tell from the document what a 200 promises
    doc, answers = healthz_answers
    assert [(s, status) for s, status, _ in answers] == [
        ("no bundle", 503), ("no bundle, a reload refused", 503),
        ("a bundle with MODELS and RULES_FILES", 200),
        ("a bundle with MODELS and RULES_FILES, a reload refused", 200)]
    for state, status, body in answers:
        schema = _healthz_schema(doc, status)
        jsonschema.validate(body, schema)
        assert not undocumented(body, schema), (state, undocumented(body, schema))
        # every key served in every state is required; assignments only with a variant
        assert set(body) - {"assignments"} == set(schema["required"]), state
        other = _healthz_schema(doc, 503 if status == 200 else 200)
        with pytest.raises(jsonschema.ValidationError):   # each answer is its own
            jsonschema.validate(body, other)
    bodies = {state: body for state, _, body in answers}
    assert bodies["a bundle with MODELS and RULES_FILES"]["models"]["alt"]
    for state in ("no bundle, a reload refused",
                  "a bundle with MODELS and RULES_FILES, a reload refused"):
        assert bodies[state]["last_error"] and bodies[state]["failed_target"], state
    served = bodies["a bundle with MODELS and RULES_FILES"]["models"]["alt"]["bundle"]
    assert bodies["a bundle with MODELS and RULES_FILES, a reload refused"][
        "failed_target"]["models"] == {"alt": served}


def test_a_healthz_answer_missing_a_key_its_schema_requires_fails(healthz_answers):
    """The check itself: each required key taken out of a real answer (the 200's
    ``vision_loaded``, the 503's ``last_error``, a MODELS entry's ``items``, a failed
    target's ``models``) fails its schema."""
    doc, answers = healthz_answers
    for state, status, body in answers:
        schema = _healthz_schema(doc, status)
        for key in schema["required"]:
            cut = {k: v for k, v in body.items() if k != key}
            with pytest.raises(jsonschema.ValidationError, match=repr(key)):
                jsonschema.validate(cut, schema)
        nested = [("failed_target", "models")] + (
            [("models", "alt")] if status == 200 else [])
        for outer, inner in nested:
            if not body[outer]:
                continue
            cut = json.loads(json.dumps(body))
            if outer == "models":
                del cut["models"]["alt"]["items"]
            else:
                del cut[outer][inner]
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(cut, schema)


@pytest.mark.parametrize("op, url", [("POST /v1/analyze", "/v1/analyze"),
                                     ("POST /v1/search", "/v1/search")])
def test_a_photo_route_without_an_attribute_network_is_a_documented_501(tiny_app, op,
                                                                         url):
    """The tiny bundle has no attribute network: the photo routes answer 501 (the same
    answer every time, not a fault to retry), which the document only covered as
    "default: any other error"."""
    c = tiny_app.test_client()
    doc = c.get("/openapi.json").get_json()
    r = c.post(url, **image_form())
    assert r.status_code == 501, r.get_json()
    assert "attribute network" in r.get_json()["error"]
    method, path = op.split(" ")
    documented = doc["paths"][path][method.lower()]["responses"]
    assert "501" in documented and "attribute network" in documented["501"]["description"]
