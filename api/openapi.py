"""``/openapi.json``: the OpenAPI 3.1 document, generated from :mod:`api.schemas`.

The request schemas that validate requests are the ones published here, so the
document cannot drift from the server. OpenAPI 3.1 uses JSON Schema 2020-12, the
dialect :mod:`api.schemas` validates with.
"""
from __future__ import annotations

import copy

from flask import Blueprint, jsonify

from api.blueprints.preview import IMAGE_SUFFIXES
from api.schemas import ERROR_SCHEMA, ITEM_ID, Schemas
from api.state import get_serving

bp = Blueprint("openapi", __name__)

ERRORS = {
    "400": "bad input: the body names the field and the reason",
    "404": "unknown item id or path",
    "413": "body, upload or declared image dimensions too large, or a form of too many "
           "parts or with too long a text field",
    "415": "wrong media type: not JSON, not multipart, not an accepted image",
    "422": "reload refused: the previous version keeps serving",
    "503": "no bundle loaded yet",
    "501": "this bundle has no attribute network (models/attributes.pt): the photo "
           "routes are not available on it (the same answer until a bundle with one "
           "is served)",
}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _errors(*codes: str) -> dict:
    out = {c: {"description": ERRORS[c], "content": _json({"$ref":
                                                          "#/components/schemas/Error"})}
           for c in codes}
    out["default"] = {"description": "any other error, same body",
                      "content": _json({"$ref": "#/components/schemas/Error"})}
    return out


def _query_params(schema: dict) -> list[dict]:
    req = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in req,
             "schema": {k: v for k, v in prop.items() if k != "description"},
             **({"description": prop["description"]} if "description" in prop else {})}
            for name, prop in schema.get("properties", {}).items()]


def _path_item_id() -> dict:
    return {"name": "item_id", "in": "path", "required": True,
            "schema": {**ITEM_ID, "pattern": "^[^/]+$"}, "description": "catalogue id"}


def build_document(s: Schemas) -> dict:
    """The OpenAPI document for the given schemas (with the app's limits)."""
    q, b, r = s.query, s.body, s.responses

    def op(op_id, summary, response, params=(), body=None, codes=("400",), content=None):
        o = {"operationId": op_id, "summary": summary, "parameters": list(params),
             "responses": {"200" if op_id != "postEvents" else "201": {
                 "description": "OK", "content": content or _json(response)},
                 **_errors(*codes)}}
        if body is not None:
            o["requestBody"] = {"required": True, "content": body}
        return o

    image_form = copy.deepcopy(q["image_form"])
    image_form["required"] = ["image"]
    image_form["properties"]["image"] = {"type": "string", "format": "binary",
                                         "contentMediaType": "image/*"}
    multipart = {"multipart/form-data": {"schema": image_form}}
    paths = {
        "/v1/items/{item_id}/complements": {"get": op(
            "getComplements", "Cross-sell: complementary items grouped by category",
            r["complements"], [_path_item_id(), *_query_params(q["complements"])],
            codes=("400", "404", "503"))},
        "/v1/items/{item_id}/upsell": {"get": op(
            "getUpsell", "Up-sell: pricier alternatives compatible with a context",
            r["upsell"], [_path_item_id(), *_query_params(q["upsell"])],
            codes=("400", "404", "503"))},
        "/v1/outfits/complete": {"post": op(
            "completeOutfit", "Complete a partial outfit into n looks", r["complete"],
            body=_json(b["complete"]), codes=("400", "404", "413", "415", "503"))},
        "/v1/outfits/score": {"post": op(
            "scoreOutfit", "Score an outfit with a per-pair breakdown", r["score"],
            body=_json(b["score"]), codes=("400", "404", "413", "415", "503"))},
        "/v1/search": {
            "get": op("searchAttributes", "Attribute search; any other parameter "
                      "<attribute>=<value> is a filter", r["search"],
                      _query_params(q["search"]), codes=("400", "404", "503")),
            "post": op("searchImage", "Search by photo with attribute overrides",
                       r["search_image"], body=multipart,
                       codes=("400", "404", "413", "415", "501", "503"))},
        "/v1/analyze": {"post": op(
            "analyzeImage", "Category, attributes, colours, keypoints, shape of a photo",
            r["analyze"], body=multipart, codes=("400", "413", "415", "501", "503"))},
        "/v1/events": {"post": op(
            "postEvents", "Store shop events tied to a request_id", r["events"],
            body=_json(b["events"]), codes=("400", "413", "415", "503"))},
        "/healthz": {"get": op("healthz", "Health and the versions served", r["healthz"],
                               codes=("503",))},
        "/metrics": {"get": op("metrics", "Prometheus metrics of this worker", None,
                               codes=(), content={"text/plain": {"schema":
                                                                 {"type": "string"}}})},
        "/preview/{item_id}": {"get": op(
            "preview", "HTML preview: the item, its complements and a completed look",
            None, [_path_item_id(), *_query_params(q["preview"])],
            codes=("400", "404", "503"),
            content={"text/html": {"schema": {"type": "string"}}})},
        # the photos the preview's cards show; 404 (JSON) for anything else: a path
        # outside the image root, a file that is not an image; 400 for a model not
        # served (an unknown parameter value, as an unknown variant is elsewhere)
        "/images/{path}": {"get": op(
            "getImage", "A catalogue photo of the main bundle, or of a MODELS bundle "
            "(model)", None, [
                {"name": "path", "in": "path", "required": True,
                 "schema": {"type": "string", "minLength": 1},
                 "description": "the item's image_path under the bundle's image root "
                 "(it may hold /); " + ", ".join(IMAGE_SUFFIXES) + " files only"},
                {"name": "model", "in": "query", "required": False,
                 "schema": {"type": "string"},
                 "description": "a MODELS name: that bundle's photos (the preview's "
                 "cards of a model arm link them so); another name is a 400 whose "
                 "allowed lists the served ones"}],
            codes=("400", "404", "503"),
            content={f"image/{t}": {"schema": {"type": "string", "format": "binary"}}
                     for t in ("jpeg", "png", "webp", "gif")})},
        "/admin/reload": {"post": {**op(
            "adminReload", "Reload the bundle, rules and experiments (token)", r["reload"],
            body={"application/json": {"schema": b["reload"]}},
            codes=("400", "415", "422")),
            "security": [{"adminToken": []}]}},
    }
    paths["/admin/reload"]["post"]["requestBody"]["required"] = False
    # /healthz answers 503 with its own body (status "no_bundle"), not an Error body,
    # and not the 200's either: fewer keys (no catalogue, versions or MODELS to report)
    paths["/healthz"]["get"]["responses"]["503"] = {
        "description": "no bundle loaded yet (status no_bundle): none given, or none "
        "could load (last_error says why)",
        "content": _json(r["healthz_no_bundle"])}
    # the events database busy, failing or unusable: nothing stored, the same batch
    # may be sent again after Retry-After (a 500 would have said retrying was pointless)
    paths["/v1/events"]["post"]["responses"]["503"] = {
        "description": "the events database is busy or unavailable (Retry-After 1), "
        "or unusable, its file overwritten or cut short (Retry-After 60, until an "
        "operator restores it): nothing of the request was stored; send it again "
        "after Retry-After seconds",
        "headers": {"Retry-After": {"description": "seconds to wait before retrying",
                                    "schema": {"type": "integer", "minimum": 0}}},
        "content": _json({"$ref": "#/components/schemas/Error"})}
    for code in ("401", "403"):
        paths["/admin/reload"]["post"]["responses"][code] = {
            "description": "missing/wrong token, or admin disabled",
            "content": _json({"$ref": "#/components/schemas/Error"})}
    return {
        "openapi": "3.1.0",
        "info": {"title": "mixmatch", "version": "1",
                 "description": "Outfit recommendations for shop pages. Every JSON body "
                 "carries request_id, experiment, variant, bundle_version and "
                 "rules_version. request_id is unique to the response and is what "
                 "events carry; a client's X-Request-ID is echoed in the header."},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA},
                       "securitySchemes": {"adminToken": {"type": "http",
                                                          "scheme": "bearer"}}},
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_document(get_serving().schemas))
