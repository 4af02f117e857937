"""The preview page for merchandisers and demos, and the bundles' images.

``/preview/<item_id>``: the item's photo, its complements by category and a completed
look, every card (photo, category, colour, price) read from the catalogue of the engine
that served the unit: a variant's ``model`` arm shows its own bundle's items.
``/images/<path>``: files under the main bundle's image root only, and
``/images/<path>?model=<name>`` under the image root of that ``MODELS`` bundle; ``..``,
absolute paths and other escapes answer 404 (werkzeug's ``safe_join``), as does any
file that is not an image; a model that is not served is a 400 naming the served ones.
"""
from __future__ import annotations

import threading
from pathlib import Path

from flask import Blueprint, render_template, request, send_from_directory, url_for

from features.exceptions import InputError, NotFoundError
from api.blueprints.items import check_item_id, variant_choice
from api.requests import query
from api.responses import assign, envelope
from api.state import DEFAULT_RULES, get_state

bp = Blueprint("preview", __name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
_index_cache: dict[str, object] = {}
_index_lock = threading.Lock()


def _catalog_index(state, model: str | None, engine):
    """item_id -> row position of ``engine``'s catalogue, built once per serving version
    and model (not per request)."""
    with _index_lock:
        per_model = _index_cache.get(state.generation)
        if per_model is None:
            _index_cache.clear()   # keep one version: the old one is being dropped
            per_model = _index_cache[state.generation] = {}
        idx = per_model.get(model)
        if idx is None:
            import pandas as pd
            idx = per_model[model] = pd.Index(engine.catalog["item_id"].astype(str))
        return idx


def _card_maker(state, model: str | None, engine):
    """``card(item_id, score=None, reason=None)`` from ``engine``'s catalogue (the
    variant's model, not the main bundle's: an item only the variant's holds was a blank
    card, and one both hold showed the main catalogue's price and photo). An image URL
    names the model, so ``/images`` reads that bundle's image root."""
    cat = engine.catalog
    idx = _catalog_index(state, model, engine)
    image_root = state.image_root_for(model)
    url_args = {"model": model} if model and model != DEFAULT_RULES else {}

    def card(item_id: str, score=None, reason=None) -> dict:
        card = {"item_id": item_id, "score": score, "reason": reason, "image": None,
                "category": "", "subcategory": "", "colour": "", "price": None}
        try:
            pos = idx.get_loc(item_id)
        except KeyError:
            return card
        if not isinstance(pos, int):
            return card
        row = cat.iloc[pos]
        path = str(row.get("image_path") or "")
        if path and image_root is not None and not Path(path).is_absolute():
            card["image"] = url_for("preview.image", path=path, **url_args)
        for k in ("category", "subcategory", "colour"):
            card[k] = str(row.get(k, "") or "")
        price = row.get("price")
        card["price"] = float(price) if price is not None and price == price else None
        return card

    return card


def _look_ids(look) -> list[str]:
    return [i["item_id"] if isinstance(i, dict) else str(i) for i in look.get("items", [])]


@bp.get("/preview/<item_id>")
def preview(item_id: str):
    args = query("preview")
    check_item_id(item_id)
    a = assign("preview", args)
    state = get_state()
    engine, strategy, rules = variant_choice(a, state)
    _card = _card_maker(state, a.settings.get("model"), engine)
    k = args.get("k", 4)
    # the variant's params are the complements' (diversity): the look has no MMR
    comp = engine.complements(item_id, k=k, strategy=strategy, rules=rules, **a.params)
    looks = engine.complete([item_id], n=1, rules=rules, strategy=strategy).get("looks", [])
    groups = [{"category": grp["category"],
               "items": [_card(it["item_id"], it.get("score"), it.get("reason"))
                         for it in grp["items"]]} for grp in comp.get("groups", [])]
    look = None
    if looks:
        look = {"score": looks[0].get("score"),
                "items": [_card(i) for i in _look_ids(looks[0])]}
    html = render_template("preview.html", item=_card(item_id), groups=groups,
                           look=look, meta=envelope(), strategy=strategy)
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}


@bp.get("/images/<path:path>")
def image(path: str):
    models = request.args.getlist("model")
    if len(models) > 1:
        # ambiguous, as on the JSON routes: the first was taken, whatever followed it
        raise InputError(f"parameter 'model' is given {len(models)} times; give it once",
                         field="model")
    state = get_state()
    model = models[0] if models else None
    if model is not None and model not in state.models:
        # a bad parameter value, not a missing photo: 400 naming it and the names
        # allowed, as the JSON routes answer an unknown ``variant`` (whose names, like
        # these, /healthz lists anyway); it was a 404 with the names in its text only
        shown = model[:40]   # bounded: the value is echoed in the body and the log
        if not state.models:
            raise InputError(f"unknown model {shown!r}: no MODELS bundle is served; "
                             "leave model out for the main bundle's photos",
                             field="model", value=shown)
        raise InputError(f"unknown model {shown!r}: a MODELS name, or leave model out "
                         "for the main bundle's photos", field="model", value=shown,
                         allowed=sorted(state.models))
    root = state.image_root_for(model)
    if root is None or not path.lower().endswith(IMAGE_SUFFIXES):
        raise NotFoundError(f"no image {path[:80]!r}", field="path")
    # send_from_directory refuses anything outside the root (safe_join) with a 404
    return send_from_directory(root, path, max_age=3600)
