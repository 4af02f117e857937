"""Helpers for tuning merchandiser rules in a notebook: choose items, edit, version.

The rules themselves (format, validation, order of application, before/after
diff) live in :mod:`recommender.rules`; this module holds the small steps the
tuning notebook takes around them, so the notebook stays a list of calls.

Examples
--------
>>> next_version("default-1"), next_version("2024-06-01.9"), next_version("spring")
('default-2', '2024-06-01.10', 'spring.1')
>>> apply_edits({"version": "1", "filters": {"exclude_ids": ["a"], "price_max": 90}},
...             {"filters": {"exclude_ids": ["b"]}}, version="2")
{'version': '2', 'filters': {'exclude_ids': ['b'], 'price_max': 90}}
"""
from __future__ import annotations

import copy
import re
import tomllib
import warnings
from typing import Any, Sequence

from features.exceptions import InputError
from recommender.rules import (Rules, parse_rules, unknown_item_ids,
                               validate_rules_fields)


def next_version(version: str) -> str:
    """The version after ``version``: its trailing number plus one, else ``.1`` added.

    ``version`` may be an integer, as in a rules file (``version = 3`` gives ``"4"``).
    """
    version = str(version)
    m = re.search(r"(\d+)$", version)
    if not m:
        return f"{version}.1"
    return f"{version[:m.start()]}{int(m.group(1)) + 1}"


def apply_edits(raw: dict, edits: dict | str, *, version: str | None = None) -> dict:
    """A new rules mapping: ``raw`` with ``edits`` applied.

    ``edits`` is a mapping (or TOML text) in the rules file's own shape. Tables
    (``filters``, ``pairing``, ``upsell``, ...) merge key by key; every other value
    -- a list such as ``exclude_ids``, the ``pin``/``boost``/``bury``/``caps``
    arrays, a scalar -- *replaces* the old value, so what you write is what the file
    says. ``version`` (default: :func:`next_version` of the old one) is set last.
    ``raw`` is not modified.
    """
    if not isinstance(raw, dict):
        raise InputError(f"raw must be a rules mapping (a Rules' .raw), got "
                         f"{type(raw).__name__}", field="raw", value=raw)
    if isinstance(edits, str):
        try:
            edits = tomllib.loads(edits)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"the edits are not valid TOML: {exc}", field="edits") from exc
    if not isinstance(edits, dict):
        raise InputError(f"edits must be a mapping or TOML text, got {type(edits).__name__}",
                         field="edits")
    out = copy.deepcopy(raw)

    def merge(dst: dict, src: dict) -> None:
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = copy.deepcopy(v)

    merge(out, edits)
    out["version"] = version or edits.get("version") or next_version(raw.get("version", "0"))
    return out


def validate_for(engine, raw: dict) -> Rules:
    """Parse ``raw`` and check every field and value it names exists in the engine's
    catalogue; raises :class:`recommender.rules.RulesError` naming the key. Item ids
    the catalogue lacks are a warning (a pin of a typo'd id does nothing), not an
    error: a rules file may still exclude items since delisted."""
    rules = parse_rules(raw)
    validate_rules_fields(rules, engine.attribute_vocab)
    unknown = unknown_item_ids(rules, engine.table)
    if unknown:
        warnings.warn("item ids not in this catalogue (those rules do nothing; an "
                      "include_ids of them hides every item): " + "; ".join(
                          f"{k}: {', '.join(map(repr, v))}" for k, v in unknown.items()),
                      UserWarning, stacklevel=2)
    return rules


def pick_items(engine, item_ids: Sequence[str] | str = (), category: str | None = None,
               filters: dict | None = None, n: int = 3) -> list[str]:
    """Items to look at: ``item_ids`` (or one id) when given (checked), else the ``n``
    most-worn items matching ``category`` and attribute ``filters``
    (:meth:`Engine.search`)."""
    if isinstance(item_ids, str):
        item_ids = [item_ids]   # one id written without its list, not its letters
    if filters is not None and not isinstance(filters, dict):
        raise InputError(f"filters must be a mapping of field to value, got {filters!r}",
                         field="filters", value=filters)
    if item_ids:
        for i in item_ids:
            engine._idx(i)  # unknown ids raise NotFoundError naming the id
        return list(item_ids)
    f = dict(filters or {})
    if category:
        f["category"] = category
    return [it["item_id"] for it in engine.search(f, k=n)["items"]]


def shown_by_category(response: dict) -> dict[str, list[str]]:
    """``{category: [item ids shown]}`` of a complements response."""
    return {g["category"]: [it["item_id"] for it in g["items"]]
            for g in response.get("groups", [])}


def attribute_value(engine, item_id: str, field: str) -> str:
    """The value of catalogue/feature ``field`` for ``item_id`` (as rules compare it)."""
    return str(engine.table.column(field)[engine._idx(item_id)])


def readable_diff(diff, images) -> "pd.DataFrame":
    """A :func:`recommender.rules.rules_diff` table to read: ids named with their
    colour and type (``images``: a :class:`recommender.viz.ItemImages`), and a
    ``what changed`` column (how many removed and added, order only, or the whole
    group dropped). Raw ids alone sent a merchandiser to the catalogue to learn
    what was removed.

    >>> import pandas as pd
    >>> from recommender.viz import ItemImages
    >>> images = ItemImages(pd.DataFrame({
    ...     "item_id": ["a", "b"], "category": ["top", "bag"], "colour": ["RED", "BLACK"],
    ...     "subcategory": ["Shirt", "Tote"], "image_path": ["", ""]}), None)
    >>> d = pd.DataFrame([{"item_id": "a", "category": "bag", "before": ["b"], "after": [],
    ...                    "added": [], "removed": ["b"], "changed": True}])
    >>> readable_diff(d, images).iloc[0][["item", "what changed", "removed"]].tolist()
    ['a (red shirt)', 'group dropped', 'b (black tote)']
    """
    import pandas as pd

    def named(ids) -> str:
        return "; ".join(f"{i} ({images.label(i)})" for i in ids)

    def what(r) -> str:
        if not r["changed"]:
            return "no change"
        if r["before"] and not r["after"]:
            return "group dropped"
        if not r["before"] and r["after"]:
            return "group added"
        if not r["removed"] and not r["added"]:
            return "order only"
        return f"{len(r['removed'])} removed, {len(r['added'])} added"

    return pd.DataFrame([{"item": f"{r['item_id']} ({images.label(r['item_id'])})",
                          "category": r["category"], "what changed": what(r),
                          "removed": named(r["removed"]), "added": named(r["added"])}
                         for _, r in diff.iterrows()],
                        columns=["item", "category", "what changed", "removed", "added"])


def rules_summary(rules: Rules | dict) -> dict[str, Any]:
    """What a rules object does, in a few counts (for a quick look in the notebook).

    Every step of :func:`recommender.rules.apply_rules` is listed, those left at their
    defaults included: the dedupe, colourway and fallback switches are on unless the
    file turns them off, so a file that never names them still changes what shoppers
    see, and a summary without them hid why a second colour of a garment was missing.

    >>> s = rules_summary(parse_rules({"version": "1", "dedupe": {"colourways": False}}))
    >>> s["dedupe: no item in two groups"], s["colourways: one colour per model per group"]
    (True, False)
    """
    if isinstance(rules, dict):
        rules = parse_rules(rules)   # a rules mapping (a notebook's new_raw) is validated
    if not isinstance(rules, Rules):
        raise InputError(f"rules_summary needs Rules or a rules mapping, got "
                         f"{type(rules).__name__}", field="rules", value=rules)
    price = ("any" if rules.price_min is None and rules.price_max is None
             else f"{rules.price_min if rules.price_min is not None else 0:g} to "
                  f"{rules.price_max if rules.price_max is not None else float('inf'):g}")
    return {"version": rules.version, "in_stock_only": rules.in_stock_only,
            "excluded ids": len(rules.exclude_ids), "included ids (allow-list)":
                len(rules.include_ids),
            "excluded categories": sorted(rules.exclude_categories),
            "included categories (allow-list)": sorted(rules.include_categories),
            "attribute filters": len(rules.exclude_attributes) + len(rules.include_attributes),
            "price range": price,
            "pins": len(rules.pins),
            "boosts": len(rules.boosts), "buries": len(rules.buries),
            "caps": len(rules.caps), "upsell band": list(rules.band),
            "pairing rows": len(rules.pairing),
            "dedupe: no item in two groups": rules.dedupe,
            "colourways: one colour per model per group": rules.colourways,
            "fallback fill": rules.fallback}
