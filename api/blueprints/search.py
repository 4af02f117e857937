"""Search: by attributes (GET) and by photo with attribute overrides (POST)."""
from __future__ import annotations

from flask import Blueprint

from api.blueprints.items import variant_choice
from api.requests import form_fields, image_upload, query, reserved
from api.responses import assign, respond
from api.state import get_state

bp = Blueprint("search", __name__)

DEFAULT_K = 10
_NOT_FILTERS = ("k", "like", "user_id", "session_id", "variant")


@bp.get("/v1/search")
def search():
    """Items matching ``category``, ``colour`` and ``<attribute>=<value>`` filters;
    with ``like=<item_id>``: ranked by visual similarity to that item."""
    args = query("search")
    a = assign("search", args)
    # the served (or the variant's) rules: the engine's own are only the bundle's
    engine, _strategy, rules = variant_choice(a, get_state())
    filters = reserved(args, *_NOT_FILTERS)
    result = engine.search(filters, like=args.get("like"), k=args.get("k", DEFAULT_K),
                           rules=rules)
    return respond(result)


@bp.post("/v1/search")
def search_image():
    """"This dress, but with long sleeves": items sharing the photo's attributes except
    the overridden ones (form fields ``<attribute>=<value>``), by visual similarity."""
    fields = form_fields("image_form")
    rgb, alpha, size = image_upload("image")
    a = assign("search_image", fields)
    engine, _strategy, rules = variant_choice(a, get_state())
    overrides = reserved(fields, *_NOT_FILTERS)
    return respond(engine.search_by_image(rgb, overrides, fields.get("k", DEFAULT_K),
                                          rules=rules, alpha=alpha, size=size))
