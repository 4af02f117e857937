"""The preview page for merchandisers and demos, and the bundle's images.

``/preview/<item_id>``: the item's photo, its complements by category and a completed
look. ``/images/<path>``: files under the bundle's image root only; ``..``, absolute
paths and other escapes answer 404 (werkzeug's ``safe_join``), as does any file that
is not an image.
"""
from __future__ import annotations

import threading
from pathlib import Path

from flask import Blueprint, render_template, send_from_directory, url_for

from features.exceptions import NotFoundError
from api.blueprints.items import check_item_id, variant_choice
from api.requests import query
from api.responses import assign, envelope
from api.state import get_state

bp = Blueprint("preview", __name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
_index_cache: dict[str, object] = {}
_index_lock = threading.Lock()


def _catalog_index(state):
    """item_id -> row position, built once per serving version (not per request)."""
    with _index_lock:
        idx = _index_cache.get(state.generation)
        if idx is None:
            import pandas as pd
            idx = pd.Index(state.engine.catalog["item_id"].astype(str))
            _index_cache.clear()   # keep one version: the old one is being dropped
            _index_cache[state.generation] = idx
        return idx


def _card(state, item_id: str, score=None, reason=None) -> dict:
    cat = state.engine.catalog
    idx = _catalog_index(state)
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
    if path and state.image_root is not None and not Path(path).is_absolute():
        card["image"] = url_for("preview.image", path=path)
    for k in ("category", "subcategory", "colour"):
        card[k] = str(row.get(k, "") or "")
    price = row.get("price")
    card["price"] = float(price) if price is not None and price == price else None
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
    k = args.get("k", 4)
    # the variant's params are the complements' (diversity): the look has no MMR
    comp = engine.complements(item_id, k=k, strategy=strategy, rules=rules, **a.params)
    looks = engine.complete([item_id], n=1, rules=rules, strategy=strategy).get("looks", [])
    groups = [{"category": grp["category"],
               "items": [_card(state, it["item_id"], it.get("score"), it.get("reason"))
                         for it in grp["items"]]} for grp in comp.get("groups", [])]
    look = None
    if looks:
        look = {"score": looks[0].get("score"),
                "items": [_card(state, i) for i in _look_ids(looks[0])]}
    html = render_template("preview.html", item=_card(state, item_id), groups=groups,
                           look=look, meta=envelope(), strategy=strategy)
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}


@bp.get("/images/<path:path>")
def image(path: str):
    state = get_state()
    if state.image_root is None or not path.lower().endswith(IMAGE_SUFFIXES):
        raise NotFoundError(f"no image {path[:80]!r}", field="path")
    # send_from_directory refuses anything outside image_root (safe_join) with a 404
    return send_from_directory(state.image_root, path, max_age=3600)
