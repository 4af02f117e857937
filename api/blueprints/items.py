"""Item resources: cross-sell complements and up-sell of one catalogue item."""
from __future__ import annotations

from flask import Blueprint

from features.exceptions import InputError
from recommender.catalog import CATEGORIES
from api.requests import csv_list, query
from api.responses import assign, respond
from api.state import get_serving, get_state

bp = Blueprint("items", __name__)

DEFAULT_K = 5


def check_item_id(item_id: str) -> str:
    if len(item_id) > 128:
        raise InputError(f"item_id is {len(item_id)} characters long; at most 128",
                         field="item_id")
    return item_id


def variant_choice(assignment, state):
    """(engine, strategy, rules object) the assigned variant chose. Its ``params``
    (``assignment.params``) are engine keyword arguments of the endpoints that honour
    them (:data:`api.experiments.VARIANT_PARAMS`): those pass them on, as ``**``, so an
    engine call without a variant's params is the call it always was."""
    s = assignment.settings
    return (state.engine_for(s.get("model")), s.get("strategy", "default"),
            state.rules_for(s.get("rules")).rules)


@bp.get("/v1/items/<item_id>/complements")
def complements(item_id: str):
    """Complementary items grouped by category, each with a score and a reason."""
    args = query("complements")
    check_item_id(item_id)
    cats = csv_list(args.get("categories"), field="categories", allowed=CATEGORIES,
                    max_len=len(CATEGORIES))
    a = assign("complements", args)
    state = get_state()
    engine, strategy, rules = variant_choice(a, state)
    result = engine.complements(item_id, k=args.get("k", DEFAULT_K), categories=cats,
                                strategy=strategy, rules=rules, **a.params)
    return respond({"strategy": strategy, **result})


@bp.get("/v1/items/<item_id>/upsell")
def upsell(item_id: str):
    """Pricier alternatives in the same slot, compatible with the ``context`` items."""
    args = query("upsell")
    check_item_id(item_id)
    context = csv_list(args.get("context"), field="context",
                       max_len=get_serving().schemas.limits.max_items)
    a = assign("upsell", args)
    state = get_state()
    engine, strategy, rules = variant_choice(a, state)
    result = engine.upsell(item_id, k=args.get("k", DEFAULT_K), context=context or [],
                           strategy=strategy, rules=rules, **a.params)
    return respond({"item_id": item_id, "strategy": strategy, **result})
