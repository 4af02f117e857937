"""Building responses: the envelope every body carries, and per-request A/B assignment.

Every JSON body (errors included) carries ``request_id``, ``experiment``, ``variant``,
``bundle_version`` and ``rules_version`` so a page can tie the events it posts back to
what it was shown.
"""
from __future__ import annotations

from typing import Any

from flask import g, jsonify
from flask.json.provider import DefaultJSONProvider

from api.experiments import NO_ASSIGNMENT, Assignment
from api.state import get_state, peek_state
from recommender.json_output import json_safe


class FiniteJSONProvider(DefaultJSONProvider):
    """The app's JSON writer: NaN and infinities as ``null``, numpy values as Python ones.

    Python's ``json`` writes a NaN as the bare word ``NaN``, which a browser's
    ``JSON.parse`` refuses along with the whole body. :func:`respond` already cleans
    the engine's payloads; this covers every other body (error bodies, the OpenAPI
    document, anything a blueprint hands to ``jsonify``), so no route can answer
    invalid JSON. Both clean with :func:`recommender.json_output.json_safe`;
    ``allow_nan=False`` makes a value that slipped past it an error rather than bad
    output.

    >>> from flask import Flask
    >>> FiniteJSONProvider(Flask("x")).dumps({"score": float("nan")})
    '{"score": null}'
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(json_safe(obj), **kwargs)


def assign(endpoint: str, args: dict) -> Assignment:
    """Assign this request's unit (``user_id``, else ``session_id``) on ``endpoint``.

    The result is kept on ``g``: the envelope reports it and the exposure is logged
    when the response is served. The experiments config is the request's state's, so
    a reload landing mid-request cannot assign with one config and serve another.
    """
    unit = args.get("user_id") or args.get("session_id")
    forced = args.get("variant")
    a = get_state().experiments.assign(unit, endpoint=endpoint, forced=forced)
    g.assignment, g.endpoint = a, endpoint
    return a


def rules_version_for(assignment: Assignment) -> str | None:
    state = peek_state()
    if state is None:
        return None
    name = assignment.settings.get("rules")
    rv = state.rules.get(name) if name else None
    return (rv or state.rules_for(None)).version


def bundle_version_for(assignment: Assignment) -> str | None:
    """The version of the bundle that served ``assignment``: its variant's ``model``
    when it sets one (a model arm was reported, and its exposures logged, with the
    main bundle's version, so its events could not be tied to the bundle that ranked
    them)."""
    state = peek_state()
    if state is None:
        return None
    model = assignment.settings.get("model")
    if not model or model not in state.models:
        return state.bundle_version
    return str(getattr(state.models[model], "bundle_version", None) or "unknown")


def envelope() -> dict:
    a: Assignment = g.get("assignment", NO_ASSIGNMENT)
    out = {"request_id": g.get("request_id", ""), "experiment": a.experiment,
           "variant": a.variant, "bundle_version": bundle_version_for(a),
           "rules_version": rules_version_for(a)}
    if a.entries:
        out["assignments"] = a.as_list()
    return out


def respond(payload: dict, status: int = 200):
    """JSON response: the engine's payload plus the envelope (envelope keys win).

    The payload is made JSON-safe with ``default=str``: a value JSON has no type for
    (a path, a date, a set) is written as its text and every key as a string, so an
    engine payload cannot turn a request into a 500."""
    body = json_safe(payload, default=str)
    body.update(envelope())
    return jsonify(body), status


def state_for_request():
    """Shortcut used by blueprints: the request's one state snapshot."""
    return get_state()
