"""Outfit resources: completion of a partial outfit, and scoring a whole outfit."""
from __future__ import annotations

from flask import Blueprint

from api.blueprints.items import variant_choice
from api.requests import json_body
from api.responses import assign, respond
from api.state import get_state

bp = Blueprint("outfits", __name__)


@bp.post("/v1/outfits/complete")
def complete():
    """Fill the missing slots of a partial outfit: ``n`` distinct looks."""
    body = json_body("complete")
    a = assign("complete", body)
    engine, strategy, rules = variant_choice(a, get_state())
    result = engine.complete(body["items"], slots=body.get("slots"), n=body.get("n", 3),
                             rules=rules, strategy=strategy)
    return respond(result)


@bp.post("/v1/outfits/score")
def score():
    """The outfit's score and its per-pair breakdown with reasons."""
    body = json_body("score")
    a = assign("score", body)
    engine, _strategy, _rules = variant_choice(a, get_state())
    return respond(engine.score_outfit(body["items"]))
