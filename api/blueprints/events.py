"""Shop events (impression, click, add_to_cart, purchase) tied to a ``request_id``."""
from __future__ import annotations

from flask import Blueprint

from api.requests import json_body
from api.responses import respond
from api.state import get_serving

bp = Blueprint("events", __name__)


@bp.post("/v1/events")
def post_events():
    """Store one event, or ``{"events": [...]}``; answers 201 only after the commit."""
    body = json_body("events")
    events = body["events"] if "events" in body else [body]
    ids = get_serving().events.add_events(events)
    return respond({"stored": len(ids), "ids": ids}, 201)
