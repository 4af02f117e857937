"""A shop's own catalogue (CSV or Parquet) plus a column-mapping file -> canonical tables.

No code needed: the mapping file (TOML, JSON or YAML, chosen by its suffix) says
which source column feeds each canonical column, how raw category values map onto
the closed set of outfit slots, and where images and outfits are. Relative paths
in it are relative to the mapping file's folder.

Mapping keys
------------
catalog : str, required (or given as ``data`` to :func:`load_mapped`)
    The catalogue file, ``.csv`` or ``.parquet`` (``format`` overrides the suffix).
sep : str, optional
    CSV delimiter (default ``,``).
encoding : str, optional
    The CSV's text encoding, any codec Python knows (default ``utf-8``; a UTF-8 byte
    order mark is skipped). Excel on Windows saves "CSV" in the machine's code page:
    ``cp1252`` in Western Europe. A name Python does not know is refused.
decimal, thousands : str, optional
    How ``price`` (the numeric canonical column) is written: ``decimal`` is ``.``
    (default) or ``,``; ``thousands`` is ``,``, ``.``, ``" "`` (also matching the
    no-break spaces French exports use) or ``'``, and absent means none. They must
    differ from each other and from a CSV's ``sep``. Given either, prices are read
    strictly in that convention: ``1.299,00`` with ``decimal = ","`` and
    ``thousands = "."``, while ``23.99`` there is refused (not read as 2399), naming
    the rows. Attribute columns are kept as text.
currency : str, optional
    The ISO 4217 code of the prices' currency (``"EUR"``, ``"USD"``, ``"GBP"``, ...;
    the codes of :data:`CURRENCY_SYMBOLS`, in any case). Given it, a price may carry
    that currency's code or symbol before or after the number, with or without a
    space (``€23,99``, ``23,99 €``, ``EUR 23,99``, ``23,99EUR``); the number is then
    read strictly in the ``decimal``/``thousands`` convention (``.`` and none when
    not given). A price carrying another currency's symbol or code (``$12`` in a
    ``"EUR"`` file) is refused, naming the item: one catalogue's prices share one
    currency. Without the key a price carrying a symbol or code is refused, naming
    the currency it looks like; prices without one are read as before. The ingest
    records it (``currency`` of its metrics; None when not declared).
true_values, false_values : list of str, optional
    ``in_stock`` values meaning in stock / out of stock, besides those always
    accepted (``1 true yes y t`` / ``0 false no n f``); matched stripped and in any
    case. Given either, an ``in_stock`` value in neither is refused, naming it.
image_root : str, optional
    Folder that relative ``image_path`` values are relative to (default: the
    catalogue file's folder).
columns : table, required
    ``canonical name = "source column"``. ``item_id`` and ``category`` are required
    (``category`` may instead come from ``defaults``). ``subcategory`` falls back to
    the raw category value; ``colour``, ``material``, ``gender`` and ``image_path``
    fall back to empty (allowed: an item may lack them). ``price`` and ``in_stock``
    are only present when mapped: nothing is invented.
category_map : table, optional
    ``"raw value" = "slot"``; every raw value that is not already a slot name must
    be listed, else the error names the unmapped values and the allowed slots.
defaults : table, optional
    ``canonical name = constant`` for columns the file lacks.
attributes : list, optional
    Source columns kept as free attribute columns (default: every source column
    not mapped above; one whose name clashes with a canonical column is kept as
    ``source_<name>``).
outfits : table, optional
    ``path`` (CSV or Parquet), ``outfit_id`` and ``item_id`` (source column names,
    default the same names), ``sep`` and ``encoding`` (defaults as above, not the
    catalogue's).

Example mapping (TOML)::

    catalog = "products.csv"
    image_root = "photos"

    [columns]
    item_id = "sku"
    category = "type"
    subcategory = "type"
    colour = "colour_name"
    image_path = "photo"
    price = "price_eur"

    [category_map]
    "T-Shirts" = "top"
    "Jeans" = "bottom"
    "Sneakers" = "shoes"

    [defaults]
    gender = "Female"

    [outfits]
    path = "looks.csv"
    outfit_id = "look"
    item_id = "sku"

A European shop's or Excel's export (``23,99``, ``1.299,00``, ``ja``/``nein``)::

    sep = ";"
    encoding = "cp1252"
    decimal = ","
    thousands = "."
    true_values = ["ja", "lieferbar"]
    false_values = ["nein"]
    currency = "EUR"        # prices written 23,99 €, €23,99 or EUR 23,99 as well

Examples
--------
>>> import json, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "p.csv").write_text("sku,type\\n1,Jeans\\n2,Tee\\n")
>>> _ = (d / "m.json").write_text(json.dumps({"catalog": "p.csv",
...     "columns": {"item_id": "sku", "category": "type"},
...     "category_map": {"Jeans": "bottom", "Tee": "top"}}))
>>> cat, outfits, root = load_mapped(d / "m.json")
>>> cat[["item_id", "category", "subcategory"]].values.tolist()
[['1', 'bottom', 'Jeans'], ['2', 'top', 'Tee']]
"""
from __future__ import annotations

import codecs
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.configfiles import load_json, load_yaml
from features.exceptions import DuplicateKeyError, InputError, NotFoundError, SchemaError
from recommender.catalog import (CATEGORIES, FALSE_VALUES, OPTIONAL_COLUMNS,
                                 REQUIRED_COLUMNS, TRUE_VALUES, check_row_width,
                                 first_bad_byte, read_parquet_file, read_user_csv)

MAPPING_KEYS = ("catalog", "format", "sep", "encoding", "decimal", "thousands",
                "currency", "true_values", "false_values", "image_root", "columns",
                "category_map", "defaults", "attributes", "outfits")
OUTFITS_KEYS = ("path", "outfit_id", "item_id", "sep", "encoding")
DECIMAL_MARKS = (".", ",")
THOUSANDS_MARKS = (",", ".", " ", "'")
#: What ``thousands = " "`` matches: French exports group digits with a no-break space
#: (U+00A0) or a narrow one (U+202F), which nobody can see to type in a mapping file.
_SPACES = " \u00a0\u202f"
#: The currencies a mapping's ``currency`` may name (ISO 4217 code -> the symbols and
#: abbreviations shops write beside a price in it; the code itself is accepted too).
#: Matched in any case, before or after the number. A symbol several currencies use
#: belongs to each of them (``$`` to every dollar and the peso, ``kr`` to the three
#: Scandinavian crowns, ``¥`` to the yen and the yuan), so it is accepted for any of
#: them and refused only for a currency that does not use it. Kept short on purpose:
#: a currency is added here with the symbols its shops write.
CURRENCY_SYMBOLS: dict[str, tuple[str, ...]] = {
    "EUR": ("€",),
    "USD": ("$", "US$"),
    "GBP": ("£",),
    "JPY": ("¥", "￥", "円"),
    "CNY": ("¥", "￥", "元", "CN¥", "RMB"),
    "CHF": ("Fr.", "SFr."),
    "SEK": ("kr", "kr."),
    "NOK": ("kr", "kr."),
    "DKK": ("kr", "kr."),
    "PLN": ("zł",),
    "CZK": ("Kč",),
    "CAD": ("$", "C$", "CA$"),
    "AUD": ("$", "A$", "AU$"),
    "NZD": ("$", "NZ$"),
    "HKD": ("$", "HK$"),
    "SGD": ("$", "S$"),
    "MXN": ("$", "MX$", "Mex$"),
    "INR": ("₹", "Rs", "Rs."),
    "BRL": ("R$",),
    "TRY": ("₺", "TL"),
    "KRW": ("₩",),
}
CANONICAL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
#: Each symbol or code (lower case) -> the currencies that write it.
_MARK_CURRENCIES: dict[str, tuple[str, ...]] = {}
for _code, _symbols in CURRENCY_SYMBOLS.items():
    for _mark in (_code, *_symbols):
        _MARK_CURRENCIES[_mark.lower()] = _MARK_CURRENCIES.get(_mark.lower(), ()) + (_code,)
del _code, _symbols, _mark
# A number-like text (digits, marks, spaces, a sign) with a symbol or code at one end;
# longest marks first, so that R$ is not read as R and $.
_MARKS = "|".join(re.escape(m) for m in sorted(_MARK_CURRENCIES, key=len, reverse=True))
_NUMBERISH = rf"[+-]?[\d.,'{_SPACES}]*\d[\d.,'{_SPACES}]*"
_MARKED_PRICE = re.compile(
    rf"(?P<sign>[+-]?)(?P<pre>{_MARKS})[{_SPACES}]*(?P<num>{_NUMBERISH})"
    rf"|(?P<num_before>{_NUMBERISH})[{_SPACES}]*(?P<post>{_MARKS})", re.IGNORECASE)
#: Canonical columns that may be absent from both ``columns`` and ``defaults``.
EMPTY_IF_UNMAPPED = ("colour", "material", "gender", "image_path")


def read_mapping(path: str | os.PathLike) -> dict:
    """Read and check a mapping file's structure (not yet against the data).

    A key given twice is refused in every format (TOML by its spec), not read as its
    last value as ``json.loads`` and ``yaml.safe_load`` would: a second
    ``columns.category`` silently took the categories from another column.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"mapping file not found: {path}", field="mapping",
                            value=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"mapping file {path} is not UTF-8 text: {first_bad_byte(path)}",
                         field="mapping", value=str(path)) from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            m = tomllib.loads(text)
        elif suffix == ".json":
            m = load_json(text)
        elif suffix in (".yaml", ".yml"):
            m = load_yaml(text)
        else:
            raise InputError(f"mapping file {path} must end in .toml, .json, .yaml or .yml",
                             field="mapping", value=str(path))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, DuplicateKeyError) as exc:
        kind = "YAML" if suffix == ".yml" else suffix[1:].upper()
        raise InputError(f"mapping file {path} is not valid {kind}: {exc}",
                         field="mapping", value=str(path)) from exc
    except Exception as exc:  # yaml.YAMLError without importing yaml at module level
        if exc.__class__.__module__.startswith("yaml"):
            raise InputError(f"mapping file {path} is not valid YAML: {exc}",
                             field="mapping", value=str(path)) from exc
        raise
    if not isinstance(m, dict):
        raise InputError(f"mapping file {path} must hold a table of keys "
                         f"({', '.join(MAPPING_KEYS)})", field="mapping")
    unknown = [k for k in m if k not in MAPPING_KEYS]
    if unknown:
        raise InputError(f"unknown mapping key {unknown[0]!r} in {path}", field=unknown[0],
                         value=unknown[0], allowed=MAPPING_KEYS)
    for key in ("catalog", "format", "sep", "encoding", "image_root"):
        if key in m and not (isinstance(m[key], str) and m[key]):
            raise InputError(f"mapping key {key} must be a non-empty string, got "
                             f"{m[key]!r}", field=key, value=m[key])
    for key in ("sep", "encoding"):
        if isinstance(m.get("outfits"), dict) and key in m["outfits"] \
                and not (isinstance(m["outfits"][key], str) and m["outfits"][key]):
            raise InputError(f"mapping key outfits.{key} must be a non-empty string, got "
                             f"{m['outfits'][key]!r}", field=f"outfits.{key}",
                             value=m["outfits"][key])
    if "encoding" in m:
        _check_encoding(m["encoding"], "encoding")
    if isinstance(m.get("outfits"), dict) and "encoding" in m["outfits"]:
        _check_encoding(m["outfits"]["encoding"], "outfits.encoding")
    _check_number_marks(m)
    _check_currency(m)
    _check_stock_values(m)
    for key in ("columns", "category_map", "defaults", "outfits"):
        if key in m and not isinstance(m[key], dict):
            raise InputError(f"mapping key {key} must be a table, got "
                             f"{type(m[key]).__name__}", field=key)
    if not m.get("columns"):
        raise InputError(f"mapping file {path} has no [columns] table (at least "
                         "columns.item_id and columns.category)", field="columns")
    for canon, src in m["columns"].items():
        if canon not in CANONICAL_COLUMNS:
            raise InputError(f"mapping key columns.{canon} is not a canonical column",
                             field=f"columns.{canon}", value=canon,
                             allowed=CANONICAL_COLUMNS)
        if not isinstance(src, str) or not src:
            raise InputError(f"mapping key columns.{canon} must name a source column "
                             f"(a non-empty string), got {src!r}", field=f"columns.{canon}",
                             value=src)
    for canon in m.get("defaults", {}):
        if canon not in CANONICAL_COLUMNS:
            raise InputError(f"mapping key defaults.{canon} is not a canonical column",
                             field=f"defaults.{canon}", value=canon,
                             allowed=CANONICAL_COLUMNS)
    if "item_id" not in m["columns"]:
        raise InputError("mapping needs columns.item_id (the source column holding the "
                         "item id)", field="columns.item_id")
    if "category" not in m["columns"] and "category" not in m.get("defaults", {}):
        raise InputError("mapping needs columns.category (or defaults.category)",
                         field="columns.category")
    for raw, slot in m.get("category_map", {}).items():
        if slot not in CATEGORIES:
            raise InputError(f"mapping key category_map.{raw!r} maps to {slot!r}, which is "
                             "not an outfit slot", field=f"category_map.{raw}", value=slot,
                             allowed=CATEGORIES)
    attrs = m.get("attributes")
    if attrs is not None and (not isinstance(attrs, list)
                              or not all(isinstance(a, str) for a in attrs)):
        raise InputError("mapping key attributes must be a list of source column names",
                         field="attributes")
    return m


def _check_encoding(name: str, key: str) -> None:
    """Refuse an encoding Python does not know (or a codec that is not a text encoding,
    such as ``base64``) when the mapping is read, not as a traceback inside pandas."""
    try:
        codecs.lookup(name)
        "".encode(name)   # LookupError for bytes-to-bytes and str-to-str codecs
    except LookupError as exc:
        raise InputError(f"mapping key {key} {name!r} is not a text encoding Python knows "
                         f"({exc}); e.g. utf-8, cp1252 (Excel on Windows in Western "
                         "Europe), latin-1, utf-16", field=key, value=name) from None


def _check_number_marks(m: dict) -> None:
    """``decimal`` and ``thousands``: known marks, and not the same one (``sep`` is
    checked when a CSV is read: a Parquet catalogue has none)."""
    for key, allowed in (("decimal", DECIMAL_MARKS), ("thousands", THOUSANDS_MARKS)):
        if key in m and not (isinstance(m[key], str) and m[key] in allowed):
            none = " (leave it out for none)" if key == "thousands" else ""
            raise InputError(f"mapping key {key} must be one of "
                             f"{', '.join(map(repr, allowed))}{none}, got {m[key]!r}",
                             field=key, value=m[key], allowed=allowed)
    if "thousands" in m and m["thousands"] == m.get("decimal", "."):
        raise InputError(f"mapping key thousands {m['thousands']!r} is also the decimal "
                         f"mark (decimal {m.get('decimal', '.')!r}"
                         f"{'' if 'decimal' in m else ', the default'}): a price could "
                         "not be read both ways; "
                         + ("set decimal = \",\"" if m["thousands"] == "." else
                            "set the other one"), field="thousands", value=m["thousands"])


def _check_currency(m: dict) -> None:
    """``currency``: a code of :data:`CURRENCY_SYMBOLS` (in any case)."""
    if "currency" not in m:
        return
    code = m["currency"]
    if isinstance(code, str) and code.upper() in CURRENCY_SYMBOLS:
        return
    known = _MARK_CURRENCIES.get(code.strip().lower()) if isinstance(code, str) else None
    hint = (f"; {code!r} is written for {' or '.join(known)}: give the code"
            if known else "")
    raise InputError(f"mapping key currency {code!r} is not a currency code this reader "
                     f"knows (an ISO 4217 code of CURRENCY_SYMBOLS in {__name__}){hint}",
                     field="currency", value=code, allowed=tuple(CURRENCY_SYMBOLS))


def declared_currency(mapping: dict) -> str | None:
    """The ISO code of a checked mapping's ``currency`` (None: not declared).

    >>> declared_currency({"currency": "eur"}), declared_currency({})
    ('EUR', None)
    """
    code = mapping.get("currency")
    return code.upper() if code is not None else None


def _check_stock_values(m: dict) -> None:
    """``true_values``/``false_values``: lists of strings, no value meaning both."""
    for key in ("true_values", "false_values"):
        if key not in m:
            continue
        vals = m[key]
        bad = vals if not isinstance(vals, list) else next(
            (v for v in vals if not (isinstance(v, str) and v.strip())), None)
        if not isinstance(vals, list) or bad is not None:
            # YAML 1.1 reads an unquoted yes/no/on/off as a boolean
            hint = "; quote it in YAML" if isinstance(bad, bool) else ""
            raise InputError(f"mapping key {key} must be a list of non-empty strings "
                             f"(in_stock values), got {bad!r}{hint}", field=key, value=bad)
    said = {"true_values": {v.strip().lower() for v in m.get("true_values", [])},
            "false_values": {v.strip().lower() for v in m.get("false_values", [])}}
    for key, other, builtin in (("true_values", "false_values", FALSE_VALUES),
                                ("false_values", "true_values", TRUE_VALUES)):
        for v in sorted(said[key]):
            if v in said[other] or v in builtin:
                why = (f"{other} lists it too" if v in said[other] else
                       "it always means " + ("out of stock" if key == "true_values"
                                             else "in stock"))
                raise InputError(f"mapping key {key} lists {v!r}, but {why}: an in_stock "
                                 "value must mean one thing", field=key, value=v)


def _read_table(path: Path, fmt: str | None, sep: str, key: str, *,
                encoding: str | None = None, encoding_key: str = "encoding",
                marks: dict[str, str] | None = None) -> pd.DataFrame:
    """The table at ``path``. A CSV is read as ``encoding`` (None: not given, UTF-8),
    the mapping key ``encoding_key`` naming it in messages; ``marks`` (mapping key ->
    decimal or thousands mark) must differ from its delimiter."""
    if not path.is_file():
        raise NotFoundError(f"mapping key {key} names file {str(path)!r}, which does not "
                            "exist", field=key, value=str(path))
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt == "parquet":
        return read_parquet_file(path, f"{path} (mapping key {key})", key)
    if fmt in ("csv", "tsv", "txt"):
        sep = "\t" if fmt == "tsv" and sep == "," else sep
        for mark_key, mark in (marks or {}).items():
            if mark == sep:
                # the usual slip: decimal = "," without sep = ";" (the default is ",")
                hint = ("exports writing 23,99 separate columns with ';' (set "
                        "sep = \";\")" if mark == "," else "set sep to the file's")
                raise InputError(f"mapping key {mark_key} {mark!r} is also the column "
                                 f"separator of {path} (sep {sep!r}): {hint}",
                                 field=mark_key, value=mark)
        fix = ("save the file as UTF-8, or name its encoding in the mapping key "
               f"{encoding_key} (e.g. \"cp1252\" for Excel on Windows)"
               if encoding is None else f"check the mapping key {encoding_key}")
        try:
            df = read_user_csv(path, f"{path} (mapping key {key})", key, dtype=str,
                               keep_default_na=False, sep=sep, encoding=encoding or "utf-8",
                               fix=fix)
        except pd.errors.ParserError as exc:
            raise InputError(f"{path} (mapping key {key}) is not a well-formed table: {exc}",
                             field=key, value=str(path)) from exc
        check_row_width(df, f"{path} (mapping key {key})", key, path)
        return df
    raise InputError(f"cannot read {path}: format {fmt!r} is not csv or parquet "
                     "(set the mapping key format)", field="format", value=fmt,
                     allowed=("csv", "parquet"))


def _need_columns(df: pd.DataFrame, wanted: dict[str, str], where: str,
                  prefix: str) -> None:
    for key, col in wanted.items():
        if col not in df.columns:
            raise SchemaError(f"mapping key {prefix}{key} names column {col!r} absent from "
                              f"{where}; columns present: {', '.join(map(str, df.columns))}",
                              field=f"{prefix}{key}", value=col)


def _as_str(s: pd.Series) -> pd.Series:
    return s.astype("string").fillna("").astype(str).str.strip()


def _currency_mark(text: str) -> tuple[str, str] | None:
    """``(mark, number)`` when ``text`` is number-like with a currency's symbol or code
    before or after it (a sign may stand before a leading symbol: ``-€12``), else None.

    >>> _currency_mark("23,99\u00a0€"), _currency_mark("-$1,299.00"), _currency_mark("12")
    (('€', '23,99'), ('$', '-1,299.00'), None)
    """
    m = _MARKED_PRICE.fullmatch(text.strip())
    if m is None:
        return None
    if m["pre"] is not None:
        return m["pre"], m["sign"] + m["num"].strip(_SPACES)
    return m["post"], m["num_before"].strip(_SPACES)


def _looks_like(mark: str) -> str:
    codes = _MARK_CURRENCIES[mark.lower()]
    return codes[0] if len(codes) == 1 else "one of " + ", ".join(codes)


def _strip_currency(price: pd.Series, item_id: pd.Series, currency: str | None) -> list:
    """``price``'s cells with the declared ``currency``'s symbol or code taken off.

    A cell with the symbol or code of another currency is refused, and so is any
    symbol or code when the mapping declares no currency, naming the item, the cell
    and the currency it looks like. A cell with neither is returned as it is.
    """
    numbers, foreign, undeclared = [], [], []
    for i, v in enumerate(price):
        text = v.strip() if isinstance(v, str) else ""
        # a symbol or code stands at one end: a cell that starts and ends with a digit
        # (every plain price) has none, and is not matched against the marks
        found = (_currency_mark(text) if text and not (text[0].isdigit()
                                                       and text[-1].isdigit()) else None)
        if found is None:
            numbers.append(v)
        elif currency is None:
            undeclared.append(i)
        elif currency not in _MARK_CURRENCIES[found[0].lower()]:
            foreign.append(i)
        else:
            numbers.append(found[1])
    if foreign:
        i = foreign[0]
        mark = _currency_mark(price.iloc[i])[0]
        raise SchemaError(f"price in another currency than the mapping's currency "
                          f"{currency!r} in {len(foreign)} row(s), e.g. item "
                          f"{item_id.iloc[i]}: {price.iloc[i]!r} ({mark!r} is written for "
                          f"{' or '.join(_MARK_CURRENCIES[mark.lower()])}): one "
                          "catalogue's prices must share one currency; convert them, or "
                          "ingest them with a mapping of their own", field="columns.price",
                          value=price.iloc[i],
                          allowed=(currency, *CURRENCY_SYMBOLS[currency]))
    if undeclared:
        i = undeclared[0]
        mark = _currency_mark(price.iloc[i])[0]
        codes = _MARK_CURRENCIES[mark.lower()]
        add = (f'add currency = "{codes[0]}" to the mapping' if len(codes) == 1 else
               f'add currency = "{codes[0]}" (or the one it is) to the mapping')
        seen = sorted({c for j in undeclared
                       for c in _MARK_CURRENCIES[_currency_mark(price.iloc[j])[0].lower()]})
        mixed = (f" (the column holds symbols or codes of {', '.join(seen)}: one "
                 "catalogue's prices must share one currency)"
                 if len(seen) > len(codes) else "")
        raise SchemaError(f"price with a currency symbol or code in {len(undeclared)} "
                          f"row(s), e.g. item {item_id.iloc[i]}: {price.iloc[i]!r}, which "
                          f"looks like {_looks_like(mark)}; the mapping declares no "
                          f"currency: {add}{mixed}", field="currency",
                          value=price.iloc[i])
    return numbers


def _read_prices(price: pd.Series, item_id: pd.Series, mapping: dict) -> pd.Series:
    """``price`` text in the mapping's ``decimal``/``thousands`` convention, with its
    ``currency``'s symbol or code where it declares one -> float.

    Strict, unlike stripping every thousands mark: with ``decimal = ","`` and
    ``thousands = "."`` a ``23.99`` (the file is not what the mapping says) would read
    as 2399, so a value whose digit groups do not fit is refused, as the catalogue's
    validation refuses a non-numeric price: with the row count and an example.
    A mapping with none of the three keys leaves the text as it is, for the
    catalogue's validation to read (a cell with a currency symbol is refused here,
    naming the currency it looks like).
    """
    if pd.api.types.is_numeric_dtype(price):   # a Parquet column holds numbers already
        return price
    currency = declared_currency(mapping)
    numbers = _strip_currency(price, item_id, currency)
    if currency is None and "decimal" not in mapping and "thousands" not in mapping:
        return price
    decimal, thousands = mapping.get("decimal", "."), mapping.get("thousands")
    group = f"[{_SPACES}]" if thousands == " " else re.escape(thousands or "")
    whole = rf"\d{{1,3}}(?:{group}\d{{3}})+|\d+" if thousands else r"\d+"
    d = re.escape(decimal)
    pattern = re.compile(rf"[+-]?(?:(?:{whole})(?:{d}\d+)?|{d}\d+)")
    drop = _SPACES if thousands == " " else (thousands or "")

    def parse(v) -> float | None:
        if not isinstance(v, str):
            return np.nan if pd.isna(v) else float(v)   # a blank, or a default number
        text = v.strip()
        if not pattern.fullmatch(text):
            return None
        for ch in drop:
            text = text.replace(ch, "")
        return float(text.replace(decimal, "."))

    values = [parse(v) for v in numbers]
    bad = [i for i, v in enumerate(values) if v is None]
    if bad:
        marks = (f"decimal {decimal!r} and thousands {thousands!r}" if thousands
                 else f"decimal {decimal!r} and no thousands separator")
        if currency is not None:
            marks += f", currency {currency!r}"
        raise SchemaError(f"non-numeric price in {len(bad)} row(s), e.g. item "
                          f"{item_id.iloc[bad[0]]}: {price.iloc[bad[0]]!r} (read with "
                          f"{marks}, as the mapping says)", field="columns.price",
                          value=price.iloc[bad[0]])
    return pd.Series(values, index=price.index, dtype=float)


def _read_stock(stock: pd.Series, mapping: dict) -> pd.Series:
    """``in_stock`` text -> bool with the mapping's ``true_values``/``false_values``
    added to those always accepted; blanks stay missing for validation to judge."""
    if pd.api.types.is_bool_dtype(stock):
        return stock
    true = TRUE_VALUES | {v.strip().lower() for v in mapping.get("true_values", [])}
    false = FALSE_VALUES | {v.strip().lower() for v in mapping.get("false_values", [])}
    key = stock.map(lambda v: v if pd.isna(v) else str(v).strip().lower())
    unknown = stock[key.notna() & ~key.isin(true | false)].value_counts()
    if len(unknown):
        shown = ", ".join(f"{k!r} ({v} rows)" for k, v in unknown.items())
        raise SchemaError(f"in_stock value(s) not covered by true_values/false_values: "
                          f"{shown}; add them to one of the two (read as in stock: "
                          f"{', '.join(sorted(true))}; as out of stock: "
                          f"{', '.join(sorted(false))})", field="true_values",
                          value=unknown.index[0], allowed=tuple(sorted(true | false)))
    return key.map(lambda k: k if pd.isna(k) else k in true)


def apply_mapping(src: pd.DataFrame, mapping: dict, *, where: str = "the file"
                  ) -> pd.DataFrame:
    """Map a source table onto the canonical columns (not yet validated).

    Raises :class:`SchemaError` naming the mapping key and the absent column, or
    the raw category values that ``category_map`` does not cover.
    """
    cols: dict[str, str] = mapping["columns"]
    defaults: dict[str, Any] = mapping.get("defaults", {})
    _need_columns(src, cols, where, "columns.")
    out = pd.DataFrame(index=src.index)
    for canon in CANONICAL_COLUMNS:
        if canon in cols:
            s = src[cols[canon]]
            out[canon] = s if canon in OPTIONAL_COLUMNS else _as_str(s)
            if canon in defaults:  # fill blanks from the default
                out[canon] = out[canon].where(out[canon].astype(str) != "", defaults[canon])
        elif canon in defaults:
            out[canon] = defaults[canon]
    for canon in OPTIONAL_COLUMNS:
        if canon in out.columns and not pd.api.types.is_numeric_dtype(out[canon]) \
                and not pd.api.types.is_bool_dtype(out[canon]):
            # Blank cells of a CSV mean "unknown", not a malformed value.
            out[canon] = out[canon].where(out[canon].astype(str).str.strip() != "")
    if "price" in out.columns:
        out["price"] = _read_prices(out["price"], out["item_id"], mapping)
    if "in_stock" in out.columns and ("true_values" in mapping
                                      or "false_values" in mapping):
        out["in_stock"] = _read_stock(out["in_stock"], mapping)

    raw = out["category"].astype(str)
    cmap: dict[str, str] = {str(k): v for k, v in mapping.get("category_map", {}).items()}
    unmapped = raw[~raw.isin(cmap) & ~raw.isin(CATEGORIES)].value_counts()
    if len(unmapped):
        shown = ", ".join(f"{k!r} ({v} rows)" for k, v in unmapped.items())
        raise SchemaError(f"category value(s) not covered by category_map: {shown}; add "
                          "them to category_map with one of: " + ", ".join(CATEGORIES),
                          field="category_map", value=unmapped.index[0],
                          allowed=CATEGORIES)
    if "subcategory" not in out.columns:
        out["subcategory"] = raw
    out["category"] = raw.map(lambda v: cmap.get(v, v))
    for canon in EMPTY_IF_UNMAPPED:
        if canon not in out.columns:
            out[canon] = ""

    used = set(cols.values())
    keep = mapping.get("attributes")
    if keep is None:
        keep = [c for c in src.columns if c not in used]
    else:
        _need_columns(src, {f"[{i}]": c for i, c in enumerate(keep)}, where, "attributes")
    for c in keep:
        name = f"source_{c}" if c in CANONICAL_COLUMNS or c == "image_ok" else str(c)
        out[name] = src[c]
    order = [c for c in CANONICAL_COLUMNS if c in out.columns]
    return out[order + [c for c in out.columns if c not in order]].reset_index(drop=True)


def _resolve(base: Path, p: str | os.PathLike) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else base / p


def source_files(mapping_path: str | os.PathLike, data: str | os.PathLike | None = None
                 ) -> dict[str, Path]:
    """The files a mapped ingest reads: mapping, catalogue and (if any) outfits."""
    mapping_path = Path(mapping_path)
    m = read_mapping(mapping_path)
    base = mapping_path.parent
    files = {"mapping": mapping_path, "catalog": _catalog_path(m, base, data, mapping_path)}
    if m.get("outfits", {}).get("path"):
        files["outfits"] = _resolve(base, m["outfits"]["path"])
    return files


def _catalog_path(m: dict, base: Path, data, mapping_path: Path) -> Path:
    if data is not None:
        return Path(data)
    if not m.get("catalog"):
        raise InputError(f"mapping file {mapping_path} has no key catalog (the catalogue "
                         "file) and no --data was given", field="catalog")
    return _resolve(base, m["catalog"])


def load_mapped(mapping_path: str | os.PathLike, data: str | os.PathLike | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame | None, Path]:
    """``(catalogue, outfits or None, image_root)`` from a mapping file.

    ``data`` (e.g. ``mixmatch ingest --data``) overrides the mapping's ``catalog``.
    The catalogue is canonical in shape but not validated: pass it to
    :func:`recommender.catalog.validate_catalog` with ``image_root``.
    """
    mapping_path = Path(mapping_path)
    m = read_mapping(mapping_path)
    base = mapping_path.parent
    cat_path = _catalog_path(m, base, data, mapping_path)
    src = _read_table(cat_path, m.get("format"), m.get("sep", ","), "catalog",
                      encoding=m.get("encoding"),
                      marks={k: m[k] for k in ("decimal", "thousands") if k in m})
    catalog = apply_mapping(src, m, where=str(cat_path))
    image_root = (_resolve(base, m["image_root"]) if m.get("image_root")
                  else cat_path.parent)
    outfits = None
    o = m.get("outfits")
    if o:
        if not o.get("path"):
            raise InputError("mapping key outfits needs outfits.path", field="outfits.path")
        unknown = [k for k in o if k not in OUTFITS_KEYS]
        if unknown:
            raise InputError(f"unknown mapping key outfits.{unknown[0]}",
                             field=f"outfits.{unknown[0]}", allowed=OUTFITS_KEYS)
        opath = _resolve(base, o["path"])
        osrc = _read_table(opath, None, o.get("sep", ","), "outfits.path",
                           encoding=o.get("encoding"), encoding_key="outfits.encoding")
        ocols = {"outfit_id": o.get("outfit_id", "outfit_id"),
                 "item_id": o.get("item_id", "item_id")}
        _need_columns(osrc, ocols, str(opath), "outfits.")
        outfits = pd.DataFrame({k: _as_str(osrc[v]) for k, v in ocols.items()})
    return catalog, outfits, image_root
