"""Merchandiser rules: a versioned TOML file, validated on load, applied last.

The engine ranks candidates (strategy scores, then diversity); the rules then
decide what a shopper sees. They run in this fixed order, on each category
group of a response (a cross-sell group, the up-sell list, a search result):

1. **filters** -- ``exclude_ids``/``include_ids``, ``exclude_categories``/
   ``include_categories``, ``exclude_attributes``/``include_attributes``
   (any catalogue or feature column, e.g. ``colour`` or ``attr_sleeve_length_labels``),
   ``price_min``/``price_max``. An ``include_*`` list, when non-empty, is an
   allow-list. Items without a price pass price filters only when the catalogue
   has no prices at all. A cross-sell group of a category the category filters
   exclude is not offered at all (:func:`categories_allowed`), not offered empty.
2. **in stock only** -- ``in_stock_only = true`` drops items whose ``in_stock``
   is false (a catalogue without the column: nothing is dropped, and
   :func:`apply_rules` reports ``stock_known = False``).
3. **pin** -- ``[[pin]] item_id, position`` (1-based) puts an item at that
   position of its category's group, optionally only for one ``anchor`` item.
   A pinned item must survive steps 1-2: *an excluded or out-of-stock id is never
   shown, even when pinned*. Pinned items are exempt from boost/bury (4) and caps
   (7) but not from the up-sell price band (6) or dedupe (8).
4. **boost / bury** -- ``[[boost]]``/``[[bury]]`` with ``field`` and ``value``
   (or ``values``) and exactly one of ``factor`` (multiplicative:
   ``score *= factor``, factor > 0; a boost needs factor >= 1, a bury
   0 < factor <= 1) or ``add`` (additive: ``score += add``; a boost adds >= 0,
   a bury adds <= 0; a factor is at most 1e6, an addend at most 1e6 in size).
   Several matching rules compose: boosts first, then buries,
   each in file order. When any score changed, the group is re-sorted by the
   adjusted score (the score shown); otherwise the incoming order -- the
   strategy's ranking after the diversity re-ranking -- is kept.
5. **category pairing matrix** -- ``[pairing] top = ["bottom", "shoes", ...]``:
   which categories complete which. A cross-sell group whose category is not
   paired with any anchor category is dropped (the engine also uses the matrix
   to decide which groups to compute).
6. **relative price band** (up-sell only) -- ``[upsell] band = [lo, hi]``:
   candidates priced in ``(lo * p, hi * p]`` for an anchor priced ``p``.
   Without prices this step is skipped and the response says so.
7. **per-attribute caps** -- ``[[caps]] field, max[, value]``: at most ``max``
   items sharing a value of ``field`` per group (only ``value`` when given).
   Items with a blank ``field`` (unknown, or not applicable: a bag's sleeve
   length) share no value and are not capped.
8. **dedupe across groups** -- an item already shown in an earlier group (or an
   anchor item) is not shown again. With ``[dedupe] colourways = true`` (set in the
   shipped default rules; a file that does not say is off, so a rules file written
   before the switch existed serves as it did under its version) a group also shows
   one colourway per model: an item whose ``model_code`` is that of an item already
   in the group, or of an anchor (and, with dedupe enabled, of an item in an earlier
   group), is skipped, so two colours of one garment do not take two of a page's k
   slots. A catalogue without a ``model_code`` column, or an item with a blank one,
   is not affected.
9. **cut to k** -- the first k survivors, pinned items placed at their positions.
10. **fallback fill** -- a group left with fewer than k items by the caps (7) or the
    one-colourway-per-model step (8) is filled from the ranking of that group, in
    the strategy's order, with items those removed; filled items carry
    ``"fallback": true``. The fill obeys every other rule: the filters (1: excluded
    ids, categories and attribute values, the ``include_*`` allow-lists, the price
    range), stock (2), the up-sell price band (6) and dedupe (8), so *an item a rule
    excludes is never shown, not even as a fallback*; a group the filters shorten
    stays short. ``[fallback] enabled = false`` turns it off.

Pins with and without an anchor: a pin applies to a request when it has no anchor or
its anchor is one of the request's anchor items. An item with both kinds takes its pin
for the anchor (the more specific), wherever each stands in the file; an item pinned
for two anchors of one request takes the first of those pins in the file. The pins
that apply then claim their positions in file order, whatever their kind: a pin whose
position an earlier pin took moves down to the next free one (so an unanchored pin
above an anchored one at the same position keeps it). The ranked items fill the other
slots and the list closes up; no pin is dropped while a group has no more pins than
``k`` (ranked items give way), beyond that the last in file order are.

Conflicts: exclusion beats pinning; a pin at a position beyond the group's
length lands at the end; two pins at one position keep file order (the later
moves down one); a pinned item repeated in two groups is shown in the first only; one
item pinned twice for the same anchor (or twice for every anchor) is an error.
A field or value the catalogue lacks is an error (:func:`validate_rules_fields`); an
item id it lacks is not (an excluded item may since be delisted), but is reported
(:func:`unknown_item_ids`): such a pin does nothing.

Rules file (TOML)::

    version = "2024-06-01.1"
    in_stock_only = true
    [filters]
    exclude_ids = ["41085800-02"]
    [[filters.exclude_attributes]]
    field = "colour"
    values = ["RED"]
    [[boost]]
    field = "colour"
    value = "BLACK"
    factor = 1.2
    [[caps]]
    field = "colour"
    value = "BLACK"
    max = 2

Examples
--------
>>> r = parse_rules({"version": "1", "boost": [{"field": "colour", "value": "BLACK",
...                  "factor": -1}]})
Traceback (most recent call last):
...
recommender.rules.RulesError: rules.boost[0].factor: -1 must be > 0
"""
from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from features.exceptions import InputError, NotFoundError
from recommender.catalog import CATEGORIES

DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.toml")
DEFAULT_BAND = (1.0, 1.6)
#: Largest boost factor and largest addend (either sign). Scores are about 0..1, so
#: this already moves every match first or last; larger ones, composed, overflowed a
#: score to infinity (served as null).
MAX_SCORE_CHANGE = 1e6


class RulesError(InputError):
    """A rules file or dict is invalid; ``field`` is the key path (``rules.boost[2].factor``)."""


# --------------------------------------------------------------------------- model
@dataclasses.dataclass(frozen=True)
class AttrMatch:
    """``field`` takes one of ``values`` (the unit of attribute filters, boosts, caps)."""

    field: str
    values: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ScoreRule:
    field: str
    values: tuple[str, ...]
    factor: float | None = None
    add: float | None = None


@dataclasses.dataclass(frozen=True)
class Pin:
    item_id: str
    position: int  # 1-based
    anchor: str | None = None


@dataclasses.dataclass(frozen=True)
class Cap:
    field: str
    max: int
    value: str | None = None


@dataclasses.dataclass(frozen=True)
class Rules:
    """Validated rules. Build with :func:`parse_rules` / :func:`load_rules`."""

    version: str
    exclude_ids: frozenset[str] = frozenset()
    include_ids: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()
    include_categories: frozenset[str] = frozenset()
    exclude_attributes: tuple[AttrMatch, ...] = ()
    include_attributes: tuple[AttrMatch, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    in_stock_only: bool = False
    pins: tuple[Pin, ...] = ()
    boosts: tuple[ScoreRule, ...] = ()
    buries: tuple[ScoreRule, ...] = ()
    pairing: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    band: tuple[float, float] = DEFAULT_BAND
    caps: tuple[Cap, ...] = ()
    dedupe: bool = True
    colourways: bool = False
    fallback: bool = True
    raw: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def score_rules(self) -> tuple[ScoreRule, ...]:
        """Boosts then buries, each in file order: the order they compose in."""
        return self.boosts + self.buries

    def fields_used(self) -> list[tuple[str, str, tuple[str, ...] | None]]:
        """(key path, field, values or None) of every attribute reference, to validate
        against a catalogue's vocabulary."""
        out = []
        for i, m in enumerate(self.exclude_attributes):
            out.append((f"rules.filters.exclude_attributes[{i}]", m.field, m.values))
        for i, m in enumerate(self.include_attributes):
            out.append((f"rules.filters.include_attributes[{i}]", m.field, m.values))
        for kind, rs in (("boost", self.boosts), ("bury", self.buries)):
            for i, r in enumerate(rs):
                out.append((f"rules.{kind}[{i}]", r.field, r.values))
        for i, c in enumerate(self.caps):
            out.append((f"rules.caps[{i}]", c.field, (c.value,) if c.value is not None else None))
        return out


# --------------------------------------------------------------------------- parsing
_TOP_KEYS = {"version", "description", "in_stock_only", "filters", "pin", "boost", "bury",
             "pairing", "upsell", "caps", "dedupe", "fallback"}
_FILTER_KEYS = {"exclude_ids", "include_ids", "exclude_categories", "include_categories",
                "exclude_attributes", "include_attributes", "price_min", "price_max"}


def _fail(path: str, msg: str, value: Any = None, allowed=None) -> RulesError:
    return RulesError(f"{path}: {msg}", field=path, value=value, allowed=allowed)


def _check_keys(d: Any, allowed: set[str], path: str) -> dict:
    if not isinstance(d, dict):
        raise _fail(path, f"{d!r} must be a table", d)
    for k in d:
        if k not in allowed:
            raise _fail(f"{path}.{k}", "unknown key", k, sorted(allowed))
    return d


def _num(v: Any, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _fail(path, f"{v!r} must be a finite number", v)
    return float(v)


def _str_list(v: Any, path: str) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                          for x in v):
        raise _fail(path, f"{v!r} must be a list of strings", v)
    return tuple(str(x) for x in v)


def _categories(v: Any, path: str) -> frozenset[str]:
    cats = _str_list(v, path)
    for i, c in enumerate(cats):
        if c not in CATEGORIES:
            raise _fail(f"{path}[{i}]", f"{c!r} is not a category", c, CATEGORIES)
    return frozenset(cats)


def _values(d: dict, path: str) -> tuple[str, ...]:
    if ("value" in d) == ("values" in d):
        raise _fail(path, "give exactly one of 'value' or 'values'", d)
    if "value" in d:
        v = d["value"]
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise _fail(f"{path}.value", f"{v!r} must be a string", v)
        return (str(v),)
    vals = _str_list(d["values"], f"{path}.values")
    if not vals:
        raise _fail(f"{path}.values", "must not be empty", [])
    return vals


def _field(d: dict, path: str) -> str:
    f = d.get("field")
    if not isinstance(f, str) or not f:
        raise _fail(f"{path}.field", f"{f!r} must be a non-empty string (a catalogue or "
                    "feature column)", f)
    return f


def _attr_list(v: Any, path: str) -> tuple[AttrMatch, ...]:
    if not isinstance(v, list):
        raise _fail(path, f"{v!r} must be an array of tables", v)
    out = []
    for i, d in enumerate(v):
        p = f"{path}[{i}]"
        _check_keys(d, {"field", "value", "values"}, p)
        out.append(AttrMatch(_field(d, p), _values(d, p)))
    return tuple(out)


def _score_rules(v: Any, path: str, kind: str) -> tuple[ScoreRule, ...]:
    if not isinstance(v, list):
        raise _fail(path, f"{v!r} must be an array of tables", v)
    out = []
    for i, d in enumerate(v):
        p = f"{path}[{i}]"
        _check_keys(d, {"field", "value", "values", "factor", "add"}, p)
        field, values = _field(d, p), _values(d, p)
        if ("factor" in d) == ("add" in d):
            raise _fail(p, "give exactly one of 'factor' (multiplicative) or 'add' "
                        "(additive)", d)
        if "factor" in d:
            f = _num(d["factor"], f"{p}.factor")
            if f <= 0:
                raise _fail(f"{p}.factor", f"{d['factor']!r} must be > 0", d["factor"])
            if f > MAX_SCORE_CHANGE:
                raise _fail(f"{p}.factor", f"{d['factor']!r} must be <= 1e6 (that much "
                            "already puts every match first)", d["factor"])
            if kind == "boost" and f < 1:
                raise _fail(f"{p}.factor", f"{d['factor']!r} must be >= 1 for a boost "
                            "(use [[bury]] to lower a score)", d["factor"])
            if kind == "bury" and f > 1:
                raise _fail(f"{p}.factor", f"{d['factor']!r} must be <= 1 for a bury",
                            d["factor"])
            out.append(ScoreRule(field, values, factor=f))
        else:
            a = _num(d["add"], f"{p}.add")
            if abs(a) > MAX_SCORE_CHANGE:
                raise _fail(f"{p}.add", f"{d['add']!r} must be between -1e6 and 1e6 (that "
                            "much already moves every match first or last)", d["add"])
            if kind == "boost" and a < 0:
                raise _fail(f"{p}.add", f"{d['add']!r} must be >= 0 for a boost", d["add"])
            if kind == "bury" and a > 0:
                raise _fail(f"{p}.add", f"{d['add']!r} must be <= 0 for a bury", d["add"])
            out.append(ScoreRule(field, values, add=a))
    return tuple(out)


def parse_rules(data: dict) -> Rules:
    """Validate a rules mapping (as read from TOML) and return :class:`Rules`.

    Every error names the key path and the bad value, e.g.
    ``rules.boost[2].factor: -1 must be > 0`` (array indices are 0-based).

    >>> parse_rules({"version": 3}).version
    '3'
    """
    _check_keys(data, _TOP_KEYS, "rules")
    if "version" not in data:
        raise _fail("rules.version", "missing: a rules file must say its version")
    version = data["version"]
    if not isinstance(version, (str, int)) or isinstance(version, bool) or str(version) == "":
        raise _fail("rules.version", f"{version!r} must be a non-empty string or integer",
                    version)
    kw: dict[str, Any] = {"version": str(version), "raw": data}
    if "description" in data and not isinstance(data["description"], str):
        # a [description] header made a table of it, swallowing the keys below it
        raise _fail("rules.description", f"{data['description']!r} must be a string",
                    data["description"])

    if "in_stock_only" in data:
        if not isinstance(data["in_stock_only"], bool):
            raise _fail("rules.in_stock_only", f"{data['in_stock_only']!r} must be true or "
                        "false", data["in_stock_only"])
        kw["in_stock_only"] = data["in_stock_only"]

    f = _check_keys(data.get("filters", {}), _FILTER_KEYS, "rules.filters")
    for key in ("exclude_ids", "include_ids"):
        if key in f:
            kw[key] = frozenset(_str_list(f[key], f"rules.filters.{key}"))
    for key in ("exclude_categories", "include_categories"):
        if key in f:
            kw[key] = _categories(f[key], f"rules.filters.{key}")
    for key in ("exclude_attributes", "include_attributes"):
        if key in f:
            kw[key] = _attr_list(f[key], f"rules.filters.{key}")
    for key in ("price_min", "price_max"):
        if key in f:
            v = _num(f[key], f"rules.filters.{key}")
            if v < 0:
                raise _fail(f"rules.filters.{key}", f"{f[key]!r} must be >= 0", f[key])
            kw[key] = v
    if kw.get("price_min") is not None and kw.get("price_max") is not None \
            and kw["price_min"] > kw["price_max"]:
        raise _fail("rules.filters.price_max", f"{kw['price_max']!r} must be >= price_min "
                    f"({kw['price_min']!r})", kw["price_max"])

    pins = data.get("pin", [])
    if not isinstance(pins, list):
        raise _fail("rules.pin", f"{pins!r} must be an array of tables", pins)
    out_pins = []
    for i, d in enumerate(pins):
        p = f"rules.pin[{i}]"
        _check_keys(d, {"item_id", "position", "anchor"}, p)
        if not isinstance(d.get("item_id"), str) or not d.get("item_id"):
            raise _fail(f"{p}.item_id", f"{d.get('item_id')!r} must be a non-empty string",
                        d.get("item_id"))
        pos = d.get("position", 1)
        if isinstance(pos, bool) or not isinstance(pos, int) or pos < 1:
            raise _fail(f"{p}.position", f"{pos!r} must be an integer >= 1 (1-based)", pos)
        anchor = d.get("anchor")
        if anchor is not None and (not isinstance(anchor, str) or not anchor):
            raise _fail(f"{p}.anchor", f"{anchor!r} must be a non-empty item id string",
                        anchor)
        # a second pin of one item for the same anchor(s) would never apply (the first
        # wins): refused, or moving a pin by adding one left it where it was
        same = [j for j, q in enumerate(out_pins)
                if q.item_id == d["item_id"] and q.anchor == anchor]
        if same:
            raise _fail(f"{p}.item_id", f"{d['item_id']!r} is already pinned by "
                        f"rules.pin[{same[0]}]" + (f" for anchor {anchor!r}" if anchor
                                                   else "") + " (one pin per item and "
                        "anchor)", d["item_id"])
        out_pins.append(Pin(d["item_id"], pos, anchor))
    kw["pins"] = tuple(out_pins)

    kw["boosts"] = _score_rules(data.get("boost", []), "rules.boost", "boost")
    kw["buries"] = _score_rules(data.get("bury", []), "rules.bury", "bury")

    if "pairing" in data:
        pm = _check_keys(data["pairing"], set(CATEGORIES), "rules.pairing")
        kw["pairing"] = {c: tuple(sorted(_categories(v, f"rules.pairing.{c}")))
                         for c, v in pm.items()}
        for c, row in kw["pairing"].items():
            if c in row:
                # never applied (complements leave out the anchor's own category):
                # a merchandiser's edit that did nothing, without a word
                raise _fail(f"rules.pairing.{c}", f"{c!r} pairs with itself: complements "
                            f"show other categories than the anchor's (up-sell offers "
                            f"alternatives in its own)", c)

    up = _check_keys(data.get("upsell", {}), {"band"}, "rules.upsell")
    if "band" in up:
        kw["band"] = validate_band(up["band"], "rules.upsell.band")

    caps = data.get("caps", [])
    if not isinstance(caps, list):
        raise _fail("rules.caps", f"{caps!r} must be an array of tables", caps)
    out_caps = []
    for i, d in enumerate(caps):
        p = f"rules.caps[{i}]"
        _check_keys(d, {"field", "max", "value"}, p)
        m = d.get("max")
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise _fail(f"{p}.max", f"{m!r} must be an integer >= 1", m)
        v = d.get("value")
        if v is not None and (not isinstance(v, (str, int)) or isinstance(v, bool)):
            raise _fail(f"{p}.value", f"{v!r} must be a string", v)
        out_caps.append(Cap(_field(d, p), m, None if v is None else str(v)))
    kw["caps"] = tuple(out_caps)

    for key, flags in (("dedupe", {"enabled": "dedupe", "colourways": "colourways"}),
                       ("fallback", {"enabled": "fallback"})):
        sec = _check_keys(data.get(key, {}), set(flags), f"rules.{key}")
        for name, attr in flags.items():
            if name in sec:
                if not isinstance(sec[name], bool):
                    raise _fail(f"rules.{key}.{name}", f"{sec[name]!r} must be true or "
                                "false", sec[name])
                kw[attr] = sec[name]
    return Rules(**kw)


def validate_band(band: Any, path: str = "band") -> tuple[float, float]:
    """Check a relative price band ``[lo, hi]`` (0 <= lo < hi)."""
    if not isinstance(band, (list, tuple)) or len(band) != 2:
        raise _fail(path, f"{band!r} must be a pair [lo, hi]", band)
    lo, hi = (_num(v, f"{path}[{i}]") for i, v in enumerate(band))
    if lo < 0:
        raise _fail(f"{path}[0]", f"{band[0]!r} must be >= 0", band[0])
    if hi <= lo:
        raise _fail(f"{path}[1]", f"{band[1]!r} must be > {band[0]!r}", band[1])
    return lo, hi


def load_rules(path: str | os.PathLike) -> Rules:
    """Read and validate a TOML rules file. Raises :class:`RulesError` with the reason
    (the caller keeps its last good rules).

    >>> load_rules(DEFAULT_RULES_PATH).pairing["dress"][:2]
    ('accessory', 'bag')
    """
    path = Path(path)
    if path.is_dir():
        raise RulesError(f"{path}: is a folder, not a rules file (name the .toml in it)",
                         field="rules", value=str(path))
    if not path.is_file():
        raise NotFoundError(f"rules file not found: {path}", field="rules", value=str(path))
    try:
        # utf-8-sig: a byte-order mark (Notepad's UTF-8) is not part of the TOML
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RulesError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8",
                         field="rules", value=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}", field="rules") from exc
    try:
        return parse_rules(data)
    except RulesError as exc:
        raise in_file(exc, path) from None


def in_file(exc: RulesError, path: str | os.PathLike) -> RulesError:
    """``exc`` with the rules file it is about named first: a server may serve several
    (variants' ``RULES_FILES``), and a refused reload should say which to open.

    >>> str(in_file(RulesError("rules.version: missing", field="rules.version"), "r.toml"))
    'r.toml: rules.version: missing'
    """
    out = RulesError(f"{path}: {exc}", field=exc.field, value=exc.value)
    out.allowed = exc.allowed   # already in the message
    return out


def default_rules() -> Rules:
    """The rules shipped with the package (pairing matrix, band, no filters)."""
    return load_rules(DEFAULT_RULES_PATH)


def validate_rules_fields(rules: Rules, vocab: dict[str, Sequence[str]]) -> None:
    """Check that every field (and value) a rule names exists in a catalogue's vocabulary.

    ``vocab`` maps searchable field -> allowed values (``Engine.attribute_vocab``).
    Raises :class:`RulesError` naming the key path.
    """
    for path, field, values in rules.fields_used():
        if field not in vocab:
            raise _fail(f"{path}.field", f"{field!r} is not a field of this catalogue",
                        field, sorted(vocab))
        if values:
            allowed = set(map(str, vocab[field]))
            for v in values:
                if v not in allowed:
                    raise _fail(f"{path}.value", f"{v!r} is not a value of {field}", v,
                                sorted(allowed))


def unknown_item_ids(rules: Rules, table: "ItemTable") -> dict[str, list[str]]:
    """Key path -> the item ids ``rules`` names that ``table``'s catalogue lacks
    (``exclude_ids``, ``include_ids``, each pin's ``item_id`` and ``anchor``).

    Not an error, unlike an unknown field or value: a catalogue changes under its rules
    file (an excluded item is delisted), and a bundle reload must not be refused for
    that. But such a pin does nothing and an allow-list of such ids hides every item,
    so callers say so (the server's log, the tuning notebook's warning).

    >>> t = ItemTable(pd.DataFrame({"item_id": ["a"], "category": ["bag"]}))
    >>> unknown_item_ids(parse_rules({"version": 1, "pin": [{"item_id": "b"}]}), t)
    {'rules.pin[0].item_id': ['b']}
    """
    named = [("rules.filters.exclude_ids", sorted(rules.exclude_ids)),
             ("rules.filters.include_ids", sorted(rules.include_ids))]
    for i, p in enumerate(rules.pins):
        named.append((f"rules.pin[{i}].item_id", [p.item_id]))
        if p.anchor is not None:
            named.append((f"rules.pin[{i}].anchor", [p.anchor]))
    out = {}
    for path, ids in named:
        missing = [i for i, pos in zip(ids, table.index_of(ids)) if pos < 0] if ids else []
        if missing:
            out[path] = missing
    return out


# --------------------------------------------------------------------------- writing
def _toml_key(k: str) -> str:
    # a bare key is ASCII letters, digits, _ and - only (str.isalnum takes "é" too)
    bare = k.replace("_", "").replace("-", "")
    return k if bare.isascii() and bare.isalnum() else _toml_str(k)


def _toml_str(s: str) -> str:
    # every control character escaped: TOML refuses them raw in a string, and a "\r"
    # pasted into a description made save_rules write a file nobody could load
    out = []
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_TOML_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise InputError(f"cannot write {v!r} to TOML", field="rules", value=v)
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise InputError(f"cannot write {type(v).__name__} to TOML", field="rules", value=v)


def dumps_toml(data: dict) -> str:
    """Write a rules mapping as TOML (tables, arrays of tables, scalars, lists).

    A small serializer of our own: the rules use only these shapes, and it saves a
    dependency. ``tomllib.loads(dumps_toml(d)) == d`` for such mappings.

    >>> print(dumps_toml({"version": "1", "upsell": {"band": [1.0, 1.5]}}).strip())
    version = "1"
    <BLANKLINE>
    [upsell]
    band = [1.0, 1.5]
    """
    lines: list[str] = []

    def emit(d: dict, prefix: str) -> None:
        scalars = {k: v for k, v in d.items()
                   if not isinstance(v, dict)
                   and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
        for k, v in scalars.items():
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in d.items():
            name = f"{prefix}{_toml_key(k)}"
            if isinstance(v, dict):
                lines.extend(["", f"[{name}]"])
                emit(v, name + ".")
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for x in v:
                    lines.extend(["", f"[[{name}]]"])
                    emit(x, name + ".")

    emit(data, "")
    return "\n".join(lines) + "\n"


def save_rules(data: dict | Rules, path: str | os.PathLike) -> Rules:
    """Validate and write a rules mapping to ``path`` atomically; returns the Rules."""
    from recommender.bundle import atomic_write_text

    raw = data.raw if isinstance(data, Rules) else data
    rules = parse_rules(raw)
    text = dumps_toml(raw)
    try:  # never replace a good file with one that cannot be read back
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"cannot write these rules as TOML ({exc}); {path} is unchanged",
                         field="rules") from None
    atomic_write_text(path, text)
    return rules


# --------------------------------------------------------------------------- items
class ItemTable:
    """Column access over catalogue rows by integer index, for rules and search.

    Wraps the catalogue (and the features table, row-aligned) so that a rule on
    ``colour`` or ``attr_sleeve_length_labels`` reads one numpy array.

    >>> t = ItemTable(pd.DataFrame({"item_id": ["a", "b"], "category": ["top", "bag"],
    ...                             "colour": ["RED", "BLACK"]}))
    >>> t.column("colour")[t.index_of(["b"])].tolist()
    ['BLACK']
    """

    def __init__(self, catalog: pd.DataFrame, features: pd.DataFrame | None = None):
        self.catalog = catalog
        self.features = features
        self.ids = catalog["item_id"].astype(str).to_numpy()
        self._pos = pd.Index(self.ids)
        self._cols: dict[str, np.ndarray] = {}
        self.has_price = "price" in catalog.columns and bool(catalog["price"].notna().any())
        self.price = (catalog["price"].to_numpy(dtype=float) if self.has_price else None)
        self.has_stock = "in_stock" in catalog.columns
        self.in_stock = (catalog["in_stock"].to_numpy(dtype=bool) if self.has_stock else None)
        self.category = self.column("category")

    def __len__(self) -> int:
        return len(self.ids)

    def has_column(self, field: str) -> bool:
        return field in self.catalog.columns or (
            self.features is not None and field in self.features.columns)

    def column(self, field: str) -> np.ndarray:
        """The column as a numpy array of str (object), cached."""
        col = self._cols.get(field)
        if col is None:
            if field in self.catalog.columns:
                s = self.catalog[field]
            elif self.features is not None and field in self.features.columns:
                s = self.features[field]
            else:
                raise InputError(f"unknown field {field!r}", field=field)
            col = s.astype(object).where(s.notna(), "").astype(str).to_numpy(dtype=object)
            self._cols[field] = col
        return col

    def index_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """Row indices of ``item_ids`` (-1 where unknown)."""
        return self._pos.get_indexer(list(item_ids))


# --------------------------------------------------------------------------- applying
@dataclasses.dataclass
class Group:
    """A ranked candidate list for one category (best first, already diversified)."""

    category: str
    idx: np.ndarray
    scores: np.ndarray
    reasons: list[str]


def _match(table: ItemTable, idx: np.ndarray, field: str, values: Sequence[str]) -> np.ndarray:
    if not table.has_column(field):
        return np.zeros(len(idx), dtype=bool)
    return np.isin(table.column(field)[idx], np.asarray(values, dtype=object))


def _filters_ok(rules: Rules, table: ItemTable, idx: np.ndarray) -> np.ndarray:
    """Steps 1-2 (filters, stock): which of ``idx`` may be shown at all, pinned or
    filled in by the fallback included."""
    ok = np.ones(len(idx), dtype=bool)
    if rules.exclude_ids:
        ok &= ~np.isin(table.ids[idx], list(rules.exclude_ids))
    if rules.in_stock_only and table.has_stock:
        ok &= table.in_stock[idx]
    if rules.include_ids:
        ok &= np.isin(table.ids[idx], list(rules.include_ids))
    if rules.exclude_categories or rules.include_categories:
        # read only when a category filter is set: cold start and up-sell check whole
        # categories per request
        cats = table.category[idx]
        if rules.exclude_categories:
            ok &= ~np.isin(cats, list(rules.exclude_categories))
        if rules.include_categories:
            ok &= np.isin(cats, list(rules.include_categories))
    for m in rules.exclude_attributes:
        ok &= ~_match(table, idx, m.field, m.values)
    for m in rules.include_attributes:
        ok &= _match(table, idx, m.field, m.values)
    if table.has_price and (rules.price_min is not None or rules.price_max is not None):
        p = table.price[idx]
        with np.errstate(invalid="ignore"):
            if rules.price_min is not None:
                ok &= p >= rules.price_min
            if rules.price_max is not None:
                ok &= p <= rules.price_max
    return ok


def adjust_scores(rules: Rules, table: ItemTable, idx: np.ndarray,
                  scores: np.ndarray) -> np.ndarray:
    """Step 4: boosts and buries, in file order (multiplicative or additive)."""
    s = np.asarray(scores, dtype=float).copy()
    for r in rules.score_rules:
        m = _match(table, idx, r.field, r.values)
        if r.factor is not None:
            s[m] *= r.factor
        else:
            s[m] += r.add
    return s


def pairing_for(rules: Rules, anchor_categories: Iterable[str]) -> list[str]:
    """Step 5: categories that complete the anchors (union of their pairing rows),
    anchor categories themselves excluded, in :data:`CATEGORIES` order."""
    anchors = set(anchor_categories)
    want = set()
    for c in anchors:
        want.update(rules.pairing.get(c, ()))
    return [c for c in CATEGORIES if c in want and c not in anchors]


def categories_allowed(rules: Rules, categories: Iterable[str]) -> list[str]:
    """``categories`` that step 1's category filters let through, in the given order.

    A category group the rules exclude could only ever be empty, so the engine does
    not compute it, and a response carries no empty group for it.

    >>> categories_allowed(parse_rules({"version": 1, "filters": {
    ...     "exclude_categories": ["bag"]}}), ["shoes", "bag"])
    ['shoes']
    """
    return [c for c in categories if c not in rules.exclude_categories
            and (not rules.include_categories or c in rules.include_categories)]


def apply_rules(groups: list[Group], rules: Rules, table: ItemTable, *, k: int,
                mode: str = "complements", anchor_ids: Sequence[str] = (),
                anchor_categories: Sequence[str] = (), anchor_price: float | None = None,
                band: tuple[float, float] | None = None,
                score_missing: Callable[[np.ndarray, str], np.ndarray] | None = None,
                pin_reason: str = "featured by the merchandiser") -> list[dict]:
    """Apply ``rules`` to ranked groups in the documented order (module docstring).

    Parameters
    ----------
    groups : list of Group
        Ranked candidates per category (the unfiltered ranking; keep it longer
        than ``k`` so filters have room).
    mode : "complements", "upsell" or "search"
        The pairing matrix applies to complements, the price band to upsell.
    anchor_ids, anchor_categories : the item(s) recommended for.
    anchor_price : the up-sell anchor's price (None: no band step).
    score_missing : callable(idx, category) -> scores for pinned items that were not
        among the candidates (default: the group's lowest shown score).

    Returns
    -------
    list of dict ``{"category", "items": [{"idx", "score", "reason", "pinned",
    "fallback"}]}`` in group order.

    Examples
    --------
    >>> t = ItemTable(pd.DataFrame({"item_id": list("abc"), "category": ["bag"] * 3,
    ...                             "colour": ["BLACK", "RED", "BLACK"]}))
    >>> r = parse_rules({"version": 1, "filters": {"exclude_ids": ["a"]}})
    >>> g = Group("bag", np.array([0, 1, 2]), np.array([0.9, 0.8, 0.7]), ["", "", ""])
    >>> [i["idx"] for i in apply_rules([g], r, t, k=2, mode="search")[0]["items"]]
    [1, 2]
    """
    if mode not in ("complements", "upsell", "search"):
        raise InputError(f"unknown mode {mode!r}", field="mode", value=mode,
                         allowed=["complements", "upsell", "search"])
    anchor_set = set(map(str, anchor_ids))
    # anchors are never recommended for themselves; ``shown`` feeds dedupe (step 8)
    anchor_idx = set(int(i) for i in table.index_of(anchor_set) if i >= 0)
    shown: set[int] = set(anchor_idx)
    # step 8, colourways: model codes already shown (anchors' own count: an up-sell of
    # the same garment in another colour is not an alternative)
    models = (table.column("model_code") if rules.colourways
              and table.has_column("model_code") else None)
    shown_models: set[str] = ({models[i] for i in anchor_idx} - {""}
                              if models is not None else set())
    pairing = set(pairing_for(rules, anchor_categories)) if (
        mode == "complements" and anchor_categories and rules.pairing) else None
    # step 6: relative price band (up-sell); pinned items are held to it too
    band_lohi = None
    if mode == "upsell" and table.has_price and anchor_price is not None \
            and np.isfinite(anchor_price):
        band_lohi = band or rules.band

    def in_band(i: int) -> bool:
        if band_lohi is None:
            return True
        lo, hi = band_lohi
        return bool(np.isfinite(table.price[i])
                    and lo * anchor_price < table.price[i] <= hi * anchor_price)

    out = []
    for g in groups:
        if pairing is not None and g.category not in pairing:
            continue  # step 5
        idx = np.asarray(g.idx, dtype=np.int64)
        scores = np.asarray(g.scores, dtype=float)
        reasons = list(g.reasons)
        ok = _filters_ok(rules, table, idx)  # steps 1-2
        # step 3: pins for this group (must pass 1-2 to be shown)
        chosen: dict[int, tuple[int, Pin]] = {}  # idx -> (file order, the pin applying)
        for n, p in enumerate(rules.pins):
            if p.anchor is not None and p.anchor not in anchor_set:
                continue
            pi = int(table.index_of([p.item_id])[0])
            if pi < 0 or table.category[pi] != g.category or pi in anchor_idx:
                continue
            if not _filters_ok(rules, table, np.array([pi]))[0]:
                continue  # exclusion beats pinning
            if not in_band(pi):
                continue  # an up-sell never shows an item outside the price band
            # an item's pin for the request's anchor overrides its pin for every anchor,
            # wherever each is in the file (the first pin of an item applied, so an
            # unanchored one above it left the anchored one unused); two pins of an
            # item for two of the request's anchors: the first in the file
            if pi not in chosen or (chosen[pi][1].anchor is None and p.anchor is not None):
                chosen[pi] = (n, p)
        # the pins that apply claim positions in file order, whatever their kind
        pins: list[tuple[int, int]] = [(p.position, pi) for pi, (_, p) in
                                       sorted(chosen.items(), key=lambda c: c[1][0])]
        pin_set = {q for _, q in pins}
        # step 4: boost/bury then re-sort (stable: ties keep strategy order)
        adj = adjust_scores(rules, table, idx, scores)
        # re-sort only when a boost/bury changed something: the incoming order may
        # be a diversity re-ranking (MMR) that a plain sort by score would undo
        order = (np.argsort(-adj, kind="stable") if not np.array_equal(adj, scores)
                 else np.arange(len(idx)))
        cand = [(int(idx[j]), float(adj[j]), reasons[j]) for j in order
                if ok[j] and int(idx[j]) not in pin_set]
        # step 6: relative price band (up-sell)
        if band_lohi is not None:
            cand = [c for c in cand if in_band(c[0])]
        # steps 7-9: caps, dedupe, cut to k with pins in place
        counts: dict[tuple[str, int], dict[str, int]] = {}
        n_free = max(0, k - len(pins))
        kept: list[tuple[int, float, str]] = []

        def cap_ok(i: int) -> bool:
            for ci, c in enumerate(rules.caps):
                if not table.has_column(c.field):
                    continue
                v = table.column(c.field)[i]
                # a blank (unknown, or the field does not apply: a bag's sleeve) is
                # not a value items share, so it is never capped
                if v == "" or (c.value is not None and v != c.value):
                    continue
                if counts.setdefault((c.field, ci), {}).get(v, 0) >= c.max:
                    return False
            return True

        def cap_add(i: int) -> None:
            for ci, c in enumerate(rules.caps):
                if not table.has_column(c.field):
                    continue
                v = table.column(c.field)[i]
                if v != "" and (c.value is None or v == c.value):
                    d = counts.setdefault((c.field, ci), {})
                    d[v] = d.get(v, 0) + 1

        live_pins = [(pos, q) for pos, q in pins if not (rules.dedupe and q in shown)]
        group_seen: set[int] = set()
        group_models: set[str] = set()
        for _, q in live_pins:
            cap_add(q)  # pinned items count toward caps but are never removed by them
            if models is not None and models[q]:
                group_models.add(models[q])  # ... and toward colourways likewise
        n_free = max(0, k - len(live_pins))
        for i, s, r in cand:
            if len(kept) >= n_free:
                break
            if (rules.dedupe and i in shown) or i in anchor_idx or i in group_seen:
                continue
            if not cap_ok(i):
                continue
            if models is not None and models[i] and (models[i] in shown_models
                                                     or models[i] in group_models):
                continue
            cap_add(i)
            group_seen.add(i)
            if models is not None and models[i]:
                group_models.add(models[i])
            kept.append((i, s, r))
        # pins claim their position (file order; an occupied one pushes a pin down),
        # the ranked survivors fill the free slots, and the list closes up
        slots: dict[int, dict] = {}
        for pos, q in live_pins:
            j = np.flatnonzero(idx == q)
            if len(j):
                s, r = float(adj[j[0]]), reasons[j[0]] or pin_reason
            else:
                s = float(score_missing(np.array([q]), g.category)[0]) if score_missing \
                    else (min((c[1] for c in kept), default=0.0))
                r = pin_reason
            t = pos - 1
            while t in slots:
                t += 1
            slots[t] = {"idx": q, "score": s, "reason": r, "pinned": True, "fallback": False}
        free = iter(kept)
        items = []
        t, end = 0, max(slots, default=-1) + 1 + len(kept)
        while t < end and len(items) < k:
            if t in slots:
                items.append(slots[t])
            else:
                nxt = next(free, None)
                if nxt is None:
                    # ranked items used up: skip to the next pin rather than count slot
                    # by slot up to a pin's position (a position of 10**12 is valid)
                    t = min((s for s in slots if s > t), default=end)
                    continue
                items.append({"idx": nxt[0], "score": nxt[1], "reason": nxt[2],
                              "pinned": False, "fallback": False})
            t += 1
        group_seen.update(it["idx"] for it in items)
        if rules.dedupe:
            shown.update(group_seen)
            if models is not None:
                shown_models.update(models[it["idx"]] for it in items if models[it["idx"]])
        # step 10: fallback fill from the strategy's ranking. It relaxes only the caps
        # and the one-colourway-per-model step (another colour beats a short group):
        # a merchandiser who excludes an id, a category or an attribute value, or
        # sets an allow-list, a price range, stock or the up-sell band, expects that
        # item gone from every response, a filled slot included
        if rules.fallback and len(items) < k:
            for j in range(len(idx)):
                if len(items) >= k:
                    break
                i = int(idx[j])
                if not ok[j] or i in shown or i in anchor_idx or i in group_seen:
                    continue
                if not in_band(i):
                    continue
                items.append({"idx": i, "score": float(scores[j]), "reason": reasons[j],
                              "pinned": False, "fallback": True})
                group_seen.add(i)
                if rules.dedupe:
                    shown.add(i)
        out.append({"category": g.category, "items": items})
    return out


def rules_diff(before_rules: Rules, after_rules: Rules, engine, item_ids: Sequence[str], *,
               k: int = 5, strategy: str = "default") -> pd.DataFrame:
    """Before/after difference of a rules change on cross-sell for ``item_ids``.

    One row per (item, category group): the ids shown before and after, which were
    added and removed, and whether the order changed. Used by the notebooks to
    review a rules file before publishing it.

    Example::

        rules_diff(engine.rules, load_rules("new.toml"), engine, ["41085800-02"])
    """
    rows = []
    for item_id in item_ids:
        b = engine.complements(item_id, k=k, strategy=strategy, rules=before_rules)
        a = engine.complements(item_id, k=k, strategy=strategy, rules=after_rules)
        bg = {g["category"]: [it["item_id"] for it in g["items"]] for g in b["groups"]}
        ag = {g["category"]: [it["item_id"] for it in g["items"]] for g in a["groups"]}
        for cat in [c for c in CATEGORIES if c in bg or c in ag]:
            before, after = bg.get(cat, []), ag.get(cat, [])
            rows.append({
                "item_id": item_id, "category": cat, "before": before, "after": after,
                "added": [x for x in after if x not in before],
                "removed": [x for x in before if x not in after],
                "changed": before != after,
            })
    return pd.DataFrame(rows, columns=["item_id", "category", "before", "after", "added",
                                       "removed", "changed"])
