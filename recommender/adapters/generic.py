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
    default the same names), ``sep``.

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

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from features.configfiles import load_json, load_yaml
from features.exceptions import DuplicateKeyError, InputError, NotFoundError, SchemaError
from recommender.catalog import (CATEGORIES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS,
                                 check_row_width, first_bad_byte, read_parquet_file,
                                 read_user_csv)

MAPPING_KEYS = ("catalog", "format", "sep", "image_root", "columns", "category_map",
                "defaults", "attributes", "outfits")
CANONICAL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
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
    for key in ("catalog", "format", "sep", "image_root"):
        if key in m and not (isinstance(m[key], str) and m[key]):
            raise InputError(f"mapping key {key} must be a non-empty string, got "
                             f"{m[key]!r}", field=key, value=m[key])
    if isinstance(m.get("outfits"), dict) and "sep" in m["outfits"] \
            and not (isinstance(m["outfits"]["sep"], str) and m["outfits"]["sep"]):
        raise InputError(f"mapping key outfits.sep must be a non-empty string, got "
                         f"{m['outfits']['sep']!r}", field="outfits.sep",
                         value=m["outfits"]["sep"])
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


def _read_table(path: Path, fmt: str | None, sep: str, key: str) -> pd.DataFrame:
    if not path.is_file():
        raise NotFoundError(f"mapping key {key} names file {str(path)!r}, which does not "
                            "exist", field=key, value=str(path))
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt == "parquet":
        return read_parquet_file(path, f"{path} (mapping key {key})", key)
    if fmt in ("csv", "tsv", "txt"):
        try:
            df = read_user_csv(path, f"{path} (mapping key {key})", key, dtype=str,
                               keep_default_na=False,
                               sep="\t" if fmt == "tsv" and sep == "," else sep)
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
    src = _read_table(cat_path, m.get("format"), m.get("sep", ","), "catalog")
    catalog = apply_mapping(src, m, where=str(cat_path))
    image_root = (_resolve(base, m["image_root"]) if m.get("image_root")
                  else cat_path.parent)
    outfits = None
    o = m.get("outfits")
    if o:
        if not o.get("path"):
            raise InputError("mapping key outfits needs outfits.path", field="outfits.path")
        unknown = [k for k in o if k not in ("path", "outfit_id", "item_id", "sep")]
        if unknown:
            raise InputError(f"unknown mapping key outfits.{unknown[0]}",
                             field=f"outfits.{unknown[0]}",
                             allowed=("path", "outfit_id", "item_id", "sep"))
        opath = _resolve(base, o["path"])
        osrc = _read_table(opath, None, o.get("sep", ","), "outfits.path")
        ocols = {"outfit_id": o.get("outfit_id", "outfit_id"),
                 "item_id": o.get("item_id", "item_id")}
        _need_columns(osrc, ocols, str(opath), "outfits.")
        outfits = pd.DataFrame({k: _as_str(osrc[v]) for k, v in ocols.items()})
    return catalog, outfits, image_root
