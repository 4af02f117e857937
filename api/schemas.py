"""JSON Schemas of every request and response: the one source of the API contract.

The same dictionaries validate incoming requests (:func:`validate_query`,
:func:`validate_body`) and build the OpenAPI document (:mod:`api.openapi`), so the
published contract cannot drift from what the server enforces.

Limits (``k``, items per request, looks per completion) come from the app config;
:func:`build_schemas` bakes them into the schemas once per app.

Examples
--------
>>> s = build_schemas(Limits(max_k=20))
>>> s.query["complements"]["properties"]["k"]["maximum"]
20
>>> validate_query(s.query["complements"], {"k": "3"})
{'k': 3}
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import jsonschema

from features.exceptions import InputError
from features.fashionai.schema import KEYPOINT_CATEGORIES, KEYPOINT_NAMES
from recommender.catalog import CATEGORIES

#: Strategies a variant (or nothing: "default") may choose; the engine implements them.
STRATEGIES: tuple[str, ...] = ("default", "cooccurrence", "visual")
EVENT_TYPES: tuple[str, ...] = ("impression", "click", "add_to_cart", "purchase")

_INT = re.compile(r"[+-]?[0-9]+")
#: Longer query integers are refused as out of range before int() reads them.
_INT_DIGITS = 12

# item ids are catalogue strings; bounded so a hostile id cannot bloat logs or the db
ITEM_ID = {"type": "string", "minLength": 1, "maxLength": 128}
UNIT_ID = {"type": "string", "minLength": 1, "maxLength": 128}
REQUEST_ID = {"type": "string", "minLength": 1, "maxLength": 64,
              "pattern": "^[A-Za-z0-9_.-]+$"}


@dataclasses.dataclass(frozen=True)
class Limits:
    """Request limits; every one is enforced and published in the OpenAPI document."""

    max_k: int = 50
    max_items: int = 20         # items in an outfit / cart / context
    max_looks: int = 10         # ``n`` of a completion
    max_events: int = 100       # events in one POST
    max_categories: int = len(CATEGORIES)
    max_filters: int = 20       # attribute filters of a search


#: Fields every response carries (errors included), so a page can log them with events.
ENVELOPE_PROPERTIES = {
    "request_id": {"type": "string"},
    "experiment": {"type": ["string", "null"],
                   "description": "experiments the unit is in, comma-separated by layer"},
    "variant": {"type": ["string", "null"],
                "description": "the variants, aligned with ``experiment``"},
    "bundle_version": {"type": ["string", "null"]},
    "rules_version": {"type": ["string", "null"]},
}
ENVELOPE_REQUIRED = list(ENVELOPE_PROPERTIES)

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "field"] + ENVELOPE_REQUIRED,
    "properties": {
        "error": {"type": "string", "description": "the reason, naming the bad value"},
        "field": {"type": ["string", "null"], "description": "the offending field"},
        "allowed": {"type": "array"},
        "status": {"type": "integer"},
        "retry_after": {"type": "integer", "description": "with 503: seconds to wait "
                        "before sending the same request again (also Retry-After)"},
        **ENVELOPE_PROPERTIES,
    },
}

_SCORED_ITEM = {
    "type": "object",
    "required": ["item_id"],
    "properties": {"item_id": {"type": "string"}, "score": {
        "type": ["number", "null"],
        # the score stays the item's relevance rather than becoming its position:
        # a shop page or merchandiser reads it as "how well it goes", and the
        # order is already the array's
        "description": "the item's relevance, higher is better: its compatibility "
        "with the anchor(s) for cross-sell, similarity and compatibility for "
        "up-sell, similarity for search, after the rules' boosts and buries. It is "
        "not the rank: the list is in display order, diversified (maximal marginal "
        "relevance) and with pinned items in place, so scores need not decrease "
        "down the list"},
        "reason": {"type": ["string", "null"]}},
}
#: a recommended item: a scored one and how the rules placed it
_RECOMMENDED_ITEM = {**_SCORED_ITEM, "properties": {
    **_SCORED_ITEM["properties"],
    "pinned": {"type": "boolean", "description": "placed by the rules' pins"},
    "fallback": {"type": "boolean", "description": "filled in by the rules' fallback: "
                 "an item the caps or the one-colourway dedupe had removed, put back "
                 "in a list they left short of k"}}}
#: the ids a response answers for (the anchors, or the outfit's items), in order
_ANCHOR_IDS = {"type": "array", "items": {"type": "string"}}
#: the ranking that served a list: the variant's ``strategy``, else "default"
_STRATEGY = {"type": "string", "enum": list(STRATEGIES),
             "description": "the ranking strategy that served this response"}
#: attribute search's applied filters: field -> the values it matched
_FILTERS = {"type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "the filters applied: field (as the catalogue names it) -> "
            "the values matched"}
_N_MATCHES = {"type": "integer", "minimum": 0,
              "description": "items matching the filters that the rules and stock "
              "allow (what a page may show), not only the k returned"}
#: a search result: a scored item and its category
_SEARCH_ITEM = {**_SCORED_ITEM, "properties": {**_SCORED_ITEM["properties"],
                                               "category": {"type": "string"}}}
#: the arrays of scored items: their order is the one to show
_DISPLAY_ORDER = ("in display order (best first after diversity and the rules' pins); "
                  "each item's score is its relevance, not its rank")
#: name -> path (RULES_FILES, MODELS), as /healthz's failed_target reports them
_NAMED_PATHS = {"type": "object", "additionalProperties": {"type": "string"}}
#: /healthz's changed_outputs, of the main bundle and of each MODELS one
_CHANGED_OUTPUTS = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    # apart from stale_stages, which keeps its meaning (a stage's inputs rewritten
    # by another stage since): here no record changed, the files did
    "description": "stage -> its output files (paths in the bundle) that are gone or "
    "are no longer the bytes the build recorded (a model copied in by hand, a copy "
    "cut short), read when the bundle loaded: served as they are; copy the bundle "
    "again or rerun the stage (the load log says how). Empty when the bundle is as "
    "built; a bundle built before each output's hash was kept is checked for missing "
    "files only"}


#: a completed look's item: the given ones are the request's, in the look's order
_LOOK_ITEM = {
    "type": "object", "required": ["item_id", "category", "given"],
    "properties": {"item_id": {"type": "string"},
                   "category": {"type": "string", "enum": list(CATEGORIES)},
                   "given": {"type": "boolean", "description": "one of the request's "
                             "items (true) or added to complete the look (false)"}}}

#: ``ServingState.describe``: the version a reload served (and the one before it)
_SERVED_VERSION = {
    "bundle": {"type": "string", "description": "bundle path"},
    "bundle_version": {"type": "string"},
    "rules_version": {"type": ["string", "null"]},
    "rules": {"type": "object", "additionalProperties": {"type": "string"},
              "description": "rules name (default, RULES_FILES) -> version"},
    "experiments_version": {"type": ["string", "null"]},
    "generation": {"type": "string", "description": "id of this loaded version"}}

#: analyze: one attribute head's answer (heads are the bundle's: FashionAI's design
#: and length heads on the demo bundle, subcategory/product_type/colour/material on
#: MANGO), so a page can show the value and how sure the network is
_ATTRIBUTE = {
    "type": "object", "required": ["value", "confidence", "top"],
    "properties": {
        "value": {"type": "string", "description": "the most probable class"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1,
                       "description": "its probability"},
        "top": {"type": "array", "minItems": 1, "maxItems": 3,
                "description": "the (up to) three most probable classes, most probable "
                "first",
                "items": {"type": "object", "required": ["value", "p"],
                          "properties": {"value": {"type": "string"},
                                         "p": {"type": "number", "minimum": 0,
                                               "maximum": 1}}}}}}
#: analyze: a dominant colour of the garment (CIELAB and its sRGB hex)
_COLOUR = {
    "type": "object", "required": ["L", "a", "b", "weight", "hex"],
    "properties": {"L": {"type": "number"}, "a": {"type": "number"},
                   "b": {"type": "number"},
                   "weight": {"type": "number", "minimum": 0, "maximum": 1,
                              "description": "its share of the garment's pixels (the "
                              "weights sum to 1)"},
                   "hex": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}}}
#: analyze: the garment's FashionAI keypoints, in the uploaded photo's pixels
_KEYPOINTS = {
    "type": ["object", "null"],
    "description": "null for a category without FashionAI keypoints (shoes, bags, "
    "jewellery, accessories)",
    "required": ["category", "method", "mean_confidence", "points"],
    "properties": {
        "category": {"type": "string", "enum": list(KEYPOINT_CATEGORIES),
                     "description": "the FashionAI category whose points are given"},
        "method": {"type": "string", "enum": ["heatmap", "silhouette"],
                   "description": "heatmap: the bundle's keypoint network; silhouette: "
                   "estimated from the garment mask's outline"},
        "mean_confidence": {"type": ["number", "null"]},
        "points": {"type": "array", "description": "the category's points, in "
                   "FashionAI's order", "items": {
                       "type": "object",
                       "required": ["name", "x", "y", "visible", "confidence"],
                       "properties": {
                           "name": {"type": "string", "enum": list(KEYPOINT_NAMES)},
                           "x": {"type": ["number", "null"],
                                 "description": "null where the point was not found"},
                           "y": {"type": ["number", "null"]},
                           "visible": {"type": "integer", "enum": [-1, 0, 1],
                                       "description": "FashionAI's: 1 visible, "
                                       "0 occluded, -1 not found"},
                           "confidence": {"type": ["number", "null"]}}}}}}

#: an assignments entry's ``params`` (api.experiments.VARIANT_PARAMS names them)
_VARIANT_PARAMS = {
    "type": "object", "additionalProperties": {"type": "number"},
    "description": "the engine settings this variant sets (e.g. diversity), passed to "
    "the engine on this endpoint; only in the entry of a variant that sets any"}


#: /healthz's keys about the worker that answered, in both of its answers (200 and 503):
#: a server that could not load its bundle says why here as one that keeps serving does
_HEALTHZ_WORKER = {
    "exposures_dropped": {
        "type": "integer", "minimum": 0,
        "description": "exposures this worker could not write to the events database "
        "(locked past EXPOSURE_BUSY_TIMEOUT_MS, failing; logged; the responses were "
        "served)"},
    "worker_pid": {
        "type": "integer",
        "description": "the gunicorn worker (process id) that answered: reloads, "
        "reload_failures and exposures_dropped are that worker's own counts, not summed "
        "across workers"},
    "reloads": {"type": "integer", "minimum": 0},
    "reload_failures": {"type": "integer", "minimum": 0,
                        "description": "reloads refused for a fault (a build still "
                        "writing the bundle is not one: see waiting_for_build)"},
    "waiting_for_build": {
        "type": ["string", "null"],
        "description": "a build is writing the served bundle now (who, since when): the "
        "previous version serves until it finishes, then reloads; null otherwise"},
    "last_error": {"type": ["string", "null"],
                   "description": "why this worker's last reload was refused (null once "
                   "one succeeds)"},
    "failed_target": {
        "type": ["object", "null"],
        "description": "the paths that reload tried; rules null: the bundle's own; "
        "experiments null: none configured; rules_files and models: name -> path of "
        "each RULES_FILES and MODELS entry (empty: none configured); null once a "
        "reload succeeds",
        "required": ["bundle", "rules", "experiments", "rules_files", "models"],
        "properties": {"bundle": {"type": ["string", "null"]},
                       "rules": {"type": ["string", "null"]},
                       "experiments": {"type": ["string", "null"]},
                       "rules_files": _NAMED_PATHS,
                       "models": _NAMED_PATHS}}}

#: /healthz 200: a bundle is served; every key is always there (the 503 has fewer)
_HEALTHZ_OK = {
    "status": {"type": "string", "enum": ["ok"]},
    "items": {"type": ["integer", "null"],
              "description": "the served catalogue's items"},
    "loaded_at": {"type": "number",
                  "description": "when the served version loaded (Unix seconds)"},
    "vision_loaded": {"type": "boolean",
                      "description": "this worker has its perception models loaded (the "
                      "photo routes answer at once)"},
    "experiments_version": {
        "type": ["string", "null"],
        "description": "the experiments config this worker assigns with (its version "
        "key, else a hash of the file); null: no EXPERIMENTS"},
    "stale_stages": {
        "type": "array", "items": {"type": "string"},
        "description": "stages of the bundle served built from inputs another stage has "
        "rewritten since (e.g. the graph after the compatibility model alone was "
        "retrained): served as they are until rebuilt"},
    "changed_outputs": _CHANGED_OUTPUTS,
    "models": {
        "type": "object",
        "description": "each MODELS bundle served (name -> its path, bundle_version, "
        "items, stale_stages, changed_outputs and graph_pairing_differs, as the keys of "
        "those names say of the main bundle); empty without MODELS",
        "additionalProperties": {
            "type": "object",
            "required": ["bundle", "bundle_version", "items", "stale_stages",
                         "changed_outputs", "graph_pairing_differs"],
            "properties": {
                "bundle": {"type": ["string", "null"],
                           "description": "the bundle's path (its MODELS entry)"},
                "bundle_version": {"type": "string",
                                   "description": "what a response this model served "
                                   "carries as bundle_version"},
                "items": {"type": ["integer", "null"],
                          "description": "its catalogue's items"},
                "stale_stages": {"type": "array", "items": {"type": "string"}},
                "changed_outputs": _CHANGED_OUTPUTS,
                "graph_pairing_differs": {"type": "boolean"}}}},
    "graph_pairing_differs": {
        "type": "boolean",
        "description": "a served rules file (RULES, the bundle's own, a RULES_FILES "
        "one) pairs categories the bundle's graph was not built to pair: those groups "
        "are served from the strategy's top-up alone, without the graph's precomputed "
        "neighbours (the log names the pairs and the rebuild)"},
    **_HEALTHZ_WORKER}

#: /healthz 503: no bundle loaded yet (none given, or none loaded: last_error says why)
_HEALTHZ_NO_BUNDLE = {
    "status": {"type": "string", "enum": ["no_bundle"]},
    "items": {"type": "null", "description": "null: no catalogue is served"},
    "loaded_at": {"type": "null", "description": "null: nothing has loaded"},
    **_HEALTHZ_WORKER}


def _response(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "required": required + ENVELOPE_REQUIRED,
            "properties": {**properties, **ENVELOPE_PROPERTIES,
                           "assignments": {"type": "array", "items": {
                               "type": "object",
                               "required": ["layer", "experiment", "variant"],
                               # every key listed: an undocumented one fails the
                               # JSON contract tests, not a page that reads it
                               "additionalProperties": False,
                               "properties": {"layer": {"type": "string"},
                                              "experiment": {"type": "string"},
                                              "variant": {"type": "string"},
                                              "forced": {"type": "boolean"},
                                              "params": _VARIANT_PARAMS}}}}}


RESPONSES: dict[str, dict] = {
    "complements": _response({
        "item_id": {"type": "string"},
        "items": {**_ANCHOR_IDS, "description": "the anchor ids"},
        "strategy": _STRATEGY,
        "groups": {"type": "array", "items": {
            "type": "object", "required": ["category", "items"],
            "properties": {"category": {"type": "string"},
                           "items": {"type": "array", "items": _RECOMMENDED_ITEM,
                                     "description": _DISPLAY_ORDER}}}},
    }, ["item_id", "strategy", "groups"]),
    "upsell": _response({
        "item_id": {"type": "string"},
        # served as complements' is: a page logs it alike from both lists
        "strategy": {**_STRATEGY, "description": "\"default\": up-sell ranks by "
                     "similarity and compatibility whatever the strategy, so a "
                     "variant's strategy does not reach it"},
        "price_available": {"type": "boolean"},
        "price": {"type": ["number", "null"],
                  "description": "the item's price; null when it has none"},
        "band": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                 "maxItems": 2, "description": "[lo, hi]: alternatives priced in "
                 "(lo x price, hi x price] (not applied without a price)"},
        "items": {"type": "array", "items": {**_RECOMMENDED_ITEM, "properties": {
            **_RECOMMENDED_ITEM["properties"],
            "price": {"type": ["number", "null"],
                      "description": "only with price_available"}}},
                  "description": _DISPLAY_ORDER},
        "note": {"type": ["string", "null"]},
    }, ["items", "strategy", "price_available"]),
    "complete": _response({
        "items": {**_ANCHOR_IDS, "description": "the given items"},
        "strategy": _STRATEGY,
        "looks": {"type": "array", "items": {
            "type": "object", "required": ["items", "score"],
            "properties": {"items": {"type": "array", "items": _LOOK_ITEM,
                                     "description": "the look's items, the given ones "
                                     "included"},
                           "score": {
                "type": ["number", "null"],
                "description": "the look's outfit score; null for a look of one item "
                "(nothing to add, e.g. slots [\"top\"] for a top): no pair to score"}}}},
    }, ["items", "strategy", "looks"]),
    "score": _response({
        "items": {**_ANCHOR_IDS, "description": "the outfit's items"},
        "score": {"type": ["number", "null"]},
        "pairs": {"type": "array", "items": {
            "type": "object", "required": ["a", "b", "score", "reasons"],
            "properties": {"a": {"type": "string"}, "b": {"type": "string"},
                           "score": {"type": ["number", "null"]},
                           "reasons": {"type": "array", "items": {"type": "string"}}}}},
    }, ["items", "score", "pairs"]),
    "search": _response({
        "filters": _FILTERS,
        "like": {"type": ["string", "null"], "description": "the like= item, if any"},
        "n_matches": _N_MATCHES,
        "items": {"type": "array", "items": _SEARCH_ITEM}}, ["items"]),
    "search_image": _response({
        "recognised": {"type": "object", "description": "what the photo was read as: "
                       "category, category_confidence, attributes (head -> value)",
                       "required": ["category", "category_confidence", "attributes"],
                       "properties": {"category": {"type": ["string", "null"]},
                                      "category_confidence": {"type": ["number", "null"]},
                                      "attributes": {
                                          "type": "object",
                                          "additionalProperties": {"type": "string"},
                                          "description": "head -> the value read"}}},
        "overrides": {**_FILTERS, "description": "the form's overrides: field -> values"},
        "filters": {**_FILTERS, "description": "the filters applied: the overrides and "
                    "the recognised attributes kept"},
        "relaxed": {"type": "array", "items": {"type": "string"},
                    "description": "recognised attributes dropped (least confident "
                    "first) because too few items matched them all"},
        "n_matches": _N_MATCHES,
        "items": {"type": "array", "items": _SEARCH_ITEM}},
        ["recognised", "overrides", "filters", "relaxed", "n_matches", "items"]),
    "analyze": _response({"category": {"type": ["string", "null"]},
                          "category_confidence": {"type": ["number", "null"]},
                          "category_method": {
                              "type": ["string", "null"],
                              "enum": ["subcategory head + nearest catalogue items",
                                       "subcategory head", "nearest catalogue items",
                                       "none", None],
                              "description": "how the category was read from the "
                              "photo: the attribute network's subcategory head and/or "
                              "a vote of the visually nearest catalogue items; none: "
                              "not read"},
                          "subcategory": {"type": ["string", "null"]},
                          "colour_group": {"type": ["string", "null"]},
                          "colourfulness": {"type": ["number", "null"]},
                          "image_size": {"type": "array", "items": {"type": "integer"},
                                         "description": "[height, width] of the "
                                         "uploaded photo in pixels"},
                          "embedding_dim": {"type": "integer"},
                          "attributes": {"type": "object",
                                         "additionalProperties": _ATTRIBUTE,
                                         "description": "attribute head -> its answer"},
                          "colours": {"type": "array", "items": _COLOUR,
                                      "maxItems": 3, "description": "the garment's "
                                      "dominant colours (up to 3), by weight"},
                          "keypoints": _KEYPOINTS,
                          "shape": {"type": "object",
                                    "additionalProperties": {"type": "number"},
                                    "description": "the shape features the keypoints "
                                    "give for the garment's category (e.g. "
                                    "sleeve_length, length_ratio); empty without "
                                    "keypoints"},
                          "mask": {
                              "type": "object",
                              "required": ["quality", "method", "area"],
                              "description": "the garment mask the colours, keypoints "
                              "and shape read: method classical or edges (from the "
                              "image's colours and outlines) or alpha (a cut-out's "
                              "transparency: a PNG or WebP with transparent pixels), "
                              "its quality (0..1) and area (fraction of the image)",
                              "properties": {
                                  "quality": {"type": ["number", "null"]},
                                  "method": {"type": "string",
                                             "enum": ["classical", "edges", "alpha"]},
                                  "area": {"type": ["number", "null"]}}},
                          "garment_found": {
                              "type": "boolean",
                              "description": "whether the mask told a garment apart "
                              "from the background (mask.area at least 0.01 of the "
                              "photo); false for an empty photo or a garment lost in "
                              "it (white on white): the category and attributes are "
                              "then the network's reading of the whole frame, and the "
                              "colours the frame's"}},
                         # every key, always (null where the photo says nothing)
                         ["category", "category_confidence", "category_method",
                          "subcategory", "colour_group", "colourfulness", "image_size",
                          "embedding_dim", "attributes", "colours", "keypoints",
                          "shape", "mask", "garment_found"]),
    "events": _response({"stored": {"type": "integer", "minimum": 0},
                         "ids": {"type": "array", "items": {"type": "integer"}}},
                        ["stored", "ids"]),
    # one schema per answer, every key it always carries required: with one schema for
    # both, only status was, and a client could not tell what a 200 promises
    "healthz": _response(_HEALTHZ_OK, list(_HEALTHZ_OK)),
    "healthz_no_bundle": _response(_HEALTHZ_NO_BUNDLE, list(_HEALTHZ_NO_BUNDLE)),
    "reload": _response({"reloaded": {"type": "boolean"},
                         # the state now served (ServingState.describe)
                         "bundle": {"type": "string", "description": "bundle path"},
                         "rules": {"type": "object",
                                   "additionalProperties": {"type": "string"},
                                   "description": "rules name (default, RULES_FILES) "
                                   "-> version"},
                         "experiments_version": {"type": ["string", "null"]},
                         "generation": {"type": "string",
                                        "description": "id of this loaded version"},
                         "published": {"type": "boolean",
                                       "description": "whether the other workers were "
                                       "told (false: see warning)"},
                         "warning": {"type": "string"},
                         "previous": {"type": "object", "properties": _SERVED_VERSION,
                                      "description": "the version served before "
                                      "(empty: none was)"}},
                        ["reloaded", "published", "bundle", "rules", "generation",
                         "experiments_version", "previous"]),
}


def build_schemas(limits: Limits | None = None) -> "Schemas":
    """Request schemas with the app's limits baked in (query strings and JSON bodies)."""
    lim = limits or Limits()
    k = {"type": "integer", "minimum": 1, "maximum": lim.max_k,
         "description": f"how many items (1..{lim.max_k})"}
    unit = {"user_id": {**UNIT_ID, "description": "A/B unit; wins over session_id"},
            "session_id": {**UNIT_ID, "description": "A/B unit when there is no user"},
            "variant": {"type": "string", "minLength": 1, "maxLength": 128,
                        "description": "force a variant ([experiment:]variant); only "
                        "honoured where the experiment sets qa_override"}}
    csv_categories = {"type": "string", "maxLength": 200,
                      "description": "comma-separated subset of " + ", ".join(CATEGORIES)}
    csv_items = {"type": "string", "maxLength": 129 * lim.max_items,
                 "description": f"comma-separated item ids (at most {lim.max_items})"}
    query = {
        "complements": {"type": "object", "additionalProperties": True, "properties": {
            "k": k, "categories": csv_categories, **unit}},
        "upsell": {"type": "object", "additionalProperties": True, "properties": {
            "k": k, "context": csv_items, **unit}},
        "search": {"type": "object",
                   "description": "any other parameter is an attribute filter "
                   "(<attribute>=<value>)",
                   "additionalProperties": {"type": "string", "maxLength": 128},
                   "maxProperties": lim.max_filters + 6,
                   "properties": {"k": k, "category": {"type": "string",
                                                       "enum": list(CATEGORIES)},
                                  "colour": {"type": "string", "maxLength": 128},
                                  "like": ITEM_ID, **unit}},
        # the page assigns its unit and honours a forced variant as the JSON routes
        # do: the same bounds (an unbounded id went into the exposures table)
        "preview": {"type": "object", "additionalProperties": True, "properties": {
            "k": {**k, "maximum": min(lim.max_k, 12)}, **unit}},
        "image_form": {"type": "object",
                       "description": "multipart form: ``image`` plus optional ``k`` and "
                       "attribute overrides (<attribute>=<value>)",
                       "additionalProperties": {"type": "string", "maxLength": 128},
                       "maxProperties": lim.max_filters + 4,
                       "properties": {"k": k, **unit}},
    }
    items = {"type": "array", "items": ITEM_ID, "minItems": 1, "maxItems": lim.max_items}
    event = {
        "type": "object", "additionalProperties": False,
        "required": ["type", "request_id"],
        "properties": {
            "type": {"type": "string", "enum": list(EVENT_TYPES)},
            "request_id": REQUEST_ID,
            "item_id": ITEM_ID,
            "user_id": UNIT_ID, "session_id": UNIT_ID,
            # a negative price was stored and lowered every revenue sum (a refund is
            # no purchase)
            "value": {"type": "number", "minimum": 0,
                      "description": "e.g. the price paid (0 or more)"},
            "quantity": {"type": "integer", "minimum": 1, "maximum": 10_000},
        },
    }
    body = {
        "complete": {"type": "object", "additionalProperties": False, "required": ["items"],
                     "properties": {
                         "items": items,
                         "slots": {"type": "array", "maxItems": len(CATEGORIES),
                                   "items": {"type": "string", "enum": list(CATEGORIES)}},
                         "n": {"type": "integer", "minimum": 1, "maximum": lim.max_looks},
                         **unit}},
        "score": {"type": "object", "additionalProperties": False, "required": ["items"],
                  "properties": {"items": {**items, "minItems": 2}, **unit}},
        "event": event,
        "events": {"oneOf": [
            event,
            {"type": "object", "additionalProperties": False, "required": ["events"],
             "properties": {"events": {"type": "array", "items": event, "minItems": 1,
                                       "maxItems": lim.max_events}}},
        ]},
        "reload": {"type": "object", "additionalProperties": False, "properties": {
            "bundle": {"type": "string", "minLength": 1, "maxLength": 4096},
            "rules": {"type": "string", "minLength": 1, "maxLength": 4096}}},
    }
    return Schemas(limits=lim, query=query, body=body, responses=RESPONSES)


@dataclasses.dataclass(frozen=True)
class Schemas:
    limits: Limits
    query: dict[str, dict]
    body: dict[str, dict]
    responses: dict[str, dict]


def _error_field(err: jsonschema.ValidationError, root: str | None) -> str | None:
    """Dotted path of the failing value: ``items[2]``, ``k``, ``events[0].type``."""
    path = ""
    for part in err.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if err.validator == "required" and isinstance(err.instance, dict):
        # jsonschema reports the missing key only in the message: name it as the field
        missing = [r for r in err.validator_value if r not in err.instance]
        if missing:
            path = f"{path}.{missing[0]}" if path else missing[0]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        extra = [p for p in err.instance if p not in err.schema.get("properties", {})]
        if extra:
            path = f"{path}.{extra[0]}" if path else str(extra[0])
    return path or root


def _best_error(errors: list[jsonschema.ValidationError]) -> jsonschema.ValidationError:
    return jsonschema.exceptions.best_match(errors)


def validate_instance(schema: dict, instance: Any, *, root: str | None = None) -> None:
    """Raise :class:`InputError` naming the field when ``instance`` breaks ``schema``."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(instance))
    if not errors:
        return
    err = _best_error(errors)
    field = _error_field(err, root)
    allowed = err.validator_value if err.validator == "enum" else None
    message = err.message
    if allowed is not None:
        message = f"{err.instance!r} is not allowed"[:200]
    if len(message) > 300:  # jsonschema echoes the whole instance; keep bodies small
        message = message[:300] + "..."
    raise InputError(f"{field or 'body'}: {message}", field=field, allowed=allowed)


def validate_body(schema: dict, body: Any) -> dict:
    """Validate a decoded JSON body; return it unchanged."""
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object", field="body")
    validate_instance(schema, body, root="body")
    return body


def validate_query(schema: dict, args: Mapping[str, str]) -> dict:
    """Coerce query-string values to the schema's types, then validate.

    Repeated parameters are refused: ``?k=1&k=2`` is ambiguous.
    """
    props = schema.get("properties", {})
    out: dict[str, Any] = {}
    getlist = getattr(args, "getlist", None)
    for name in args:
        values = getlist(name) if getlist else [args[name]]
        if len(values) > 1:
            raise InputError(f"parameter {name!r} is given {len(values)} times; give it "
                             "once", field=name)
        value = values[0]
        typ = props.get(name, {}).get("type")
        if typ == "integer":
            # ASCII digits only: int() would also take "1_0" and non-Latin digits
            if not _INT.fullmatch(value):
                raise InputError(f"{name} must be an integer, got {value[:40]!r}",
                                 field=name, value=value[:40])
            if len(value.lstrip("+-")) > _INT_DIGITS:
                shown = value[:40] + ("..." if len(value) > 40 else "")
                raise InputError(f"{name}: {shown} is out of range (at most "
                                 f"{_INT_DIGITS} digits)", field=name, value=shown)
            value = int(value)
        out[name] = value
    validate_instance(schema, out, root="query")
    return out
