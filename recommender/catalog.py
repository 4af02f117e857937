"""The canonical catalogue: one row per sellable item, validated on load.

Every source (MANGO datathon files, a shop's own CSV/Parquet with a column
mapping, the generated demo catalogue) is mapped onto this one schema by an
adapter in :mod:`recommender.adapters`; everything downstream reads only this.

Columns
-------
item_id : str, required, unique
category : str, required, one of :data:`CATEGORIES` (the outfit slot)
subcategory : str, required (the fine category, e.g. "Jeans"; FITB negatives share it)
colour, material, gender : str, required columns, values may be empty
price : float, optional column (no column or NaN: no price-based up-sell)
in_stock : bool, optional column (no column: stock is unknown, not assumed)
image_path : str, required column; relative to the catalogue's image root or
    absolute; an empty value means the item has no image
any other column : a free attribute, kept as is

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"item_id": ["a", "b"], "category": ["top", "bottom"],
...     "subcategory": ["Shirt", "Jeans"], "colour": ["WHITE", "BLUE"],
...     "material": ["", ""], "gender": ["Female", "Female"], "image_path": ["", ""]})
>>> cat, report = validate_catalog(df, check_images=False)
>>> report.ok, len(cat)
(True, 2)
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from features.exceptions import SchemaError
from features.settings import check_value

#: The outfit slots. Small and closed: cross-sell groups by it, rules pair it.
CATEGORIES: tuple[str, ...] = (
    "top", "bottom", "dress", "outerwear", "shoes", "bag", "jewellery", "accessory",
    "other",
)
#: Slots that make up an outfit's body (the rest accessorise it).
APPAREL_CATEGORIES: tuple[str, ...] = ("top", "bottom", "dress", "outerwear")

REQUIRED_COLUMNS: tuple[str, ...] = (
    "item_id", "category", "subcategory", "colour", "material", "gender", "image_path",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("price", "in_stock")
STRING_COLUMNS: tuple[str, ...] = (
    "item_id", "category", "subcategory", "colour", "material", "gender", "image_path",
)

#: ``in_stock`` text read as true / false (stripped, any case). A shop's own words
#: ("ja", "lieferbar") are added by its column mapping (``true_values``/``false_values``
#: in :mod:`recommender.adapters.generic`).
TRUE_VALUES: frozenset[str] = frozenset({"1", "true", "yes", "y", "t"})
FALSE_VALUES: frozenset[str] = frozenset({"0", "false", "no", "n", "f"})

#: Outfits table: one row per (outfit, item).
OUTFIT_COLUMNS: tuple[str, ...] = ("outfit_id", "item_id")


@dataclasses.dataclass
class CatalogReport:
    """What validation found. ``errors`` make the catalogue unusable; ``row_issues``
    flag single rows (missing or unreadable image) that still load."""

    n_rows: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    row_issues: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    duplicate_ids: dict[str, int] = dataclasses.field(default_factory=dict)
    unknown_categories: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self, max_rows: int = 20) -> str:
        """A human readable report, at most ``max_rows`` per-row issues listed."""
        lines = [f"{self.n_rows} rows checked: "
                 + ("OK" if self.ok else f"{len(self.errors)} error(s)")]
        lines += [f"  error: {e}" for e in self.errors]
        if self.row_issues:
            lines.append(f"  {len(self.row_issues)} row(s) with image problems "
                         "(rows kept, flagged image_ok=False):")
            for item_id, why in self.row_issues[:max_rows]:
                lines.append(f"    item {item_id}: {why}")
            if len(self.row_issues) > max_rows:
                lines.append(f"    ... and {len(self.row_issues) - max_rows} more")
        return "\n".join(lines)


class CatalogError(SchemaError):
    """The catalogue cannot be used; ``report`` holds every problem found."""

    def __init__(self, report: CatalogReport):
        super().__init__("invalid catalogue:\n" + report.summary(), field="catalog")
        self.report = report


def _check_image(path: Path) -> str | None:
    """Return why the image at ``path`` is unusable, or None when it opens."""
    from PIL import Image, UnidentifiedImageError

    from features.imaging import open_image

    if not path.is_file():
        return f"image not found: {path}"
    try:
        # open_image: without PIL's warning for images the features stage decodes
        with open_image(path) as im:
            im.verify()
        # verify() does not decode JPEG data, so a truncated JPEG passes it; decoding
        # (at 1/8 scale for JPEG: ~0.2 ms per MANGO packshot) catches those.
        with open_image(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        # DecompressionBombError is no OSError: one giant image must be its row's
        # issue, not end the ingest
        return f"image unreadable: {path} ({exc.__class__.__name__}: {exc})"
    return None


def resolve_image_path(image_path: str, image_root: str | os.PathLike | None) -> Path | None:
    """Absolute path of an item's image, or None when it has none."""
    if not isinstance(image_path, str) or not image_path:
        return None
    p = Path(image_path)
    if not p.is_absolute() and image_root is not None:
        p = Path(image_root) / p
    return p


#: How :func:`validate_catalog` checks the images: the kind of value each option takes,
#: and the least ``image_sample``. The one place of these rules: the functions taking
#: them (:func:`check_image_options`) and the ingest stage's ``[stages.ingest]`` table,
#: which takes these keys (:func:`recommender.ingest.stage_settings`), apply them.
IMAGE_OPTIONS: dict[str, type] = {"check_images": bool, "image_sample": int}
IMAGE_OPTIONS_AT_LEAST: dict[str, int] = {"image_sample": 1}


def check_image_options(check_images: bool = True, image_sample: int | None = None
                        ) -> None:
    """InputError naming the parameter and its value unless ``check_images`` is true or
    false and ``image_sample`` None (every image) or a whole number >= 1: the rules
    of ``[stages.ingest]`` (:data:`IMAGE_OPTIONS`), in its words less the table's
    name.

    Before, :func:`validate_catalog` took ``image_sample = 0`` as "open no image" and
    flagged every row with a path usable, -3 was a numpy ValueError, ``"ten"`` a
    TypeError, 2.5 opened every image and ``True`` one; ``check_images = "false"``
    was true.

    >>> check_image_options(False, 500)
    >>> check_image_options(image_sample=0)
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: image_sample must be a whole number >= 1, got 0
    """
    for name, value in (("check_images", check_images), ("image_sample", image_sample)):
        if name == "image_sample" and value is None:
            continue
        if isinstance(value, np.bool_):   # a flag read from a table: one of the two
            value = bool(value)
        check_value(name, value, IMAGE_OPTIONS[name], least=IMAGE_OPTIONS_AT_LEAST.get(name))


def opened_rows(n_rows: int, image_sample: int | None = None) -> np.ndarray:
    """The rows whose image :func:`validate_catalog` opens: every one, or with
    ``image_sample`` that many, evenly spread (the others are flagged ``image_ok`` when
    they have a path). InputError for an ``image_sample`` other than None or a whole
    number >= 1 (:func:`check_image_options`).

    >>> opened_rows(10, 3).tolist(), len(opened_rows(4, 9))
    ([0, 4, 9], 4)
    """
    check_image_options(image_sample=image_sample)
    if image_sample is not None and image_sample < n_rows:
        return np.unique(np.linspace(0, n_rows - 1, image_sample).astype(int))
    return np.arange(n_rows)


def validate_catalog(df: pd.DataFrame, image_root: str | os.PathLike | None = None, *,
                     check_images: bool = True,
                     image_sample: int | None = None) -> tuple[pd.DataFrame, CatalogReport]:
    """Check ``df`` against the canonical schema and return a clean copy and a report.

    The clean copy has string columns as ``str`` (missing as ""), ``price`` as
    float, ``in_stock`` as bool where present, and an ``image_ok`` column.
    Missing columns, duplicate ids and unknown categories are errors (reported
    together, never one at a time); missing or unreadable images only flag their
    row. ``image_sample`` checks only that many images (chosen evenly), for
    million-row catalogues.

    Raises nothing for the catalogue's problems: callers decide; :func:`load_catalog`
    raises :class:`CatalogError` when ``report.ok`` is false. A ``check_images`` other
    than true or false, or an ``image_sample`` other than None or a whole number >= 1,
    is InputError naming it (:func:`check_image_options`), before anything is read.
    """
    check_image_options(check_images, image_sample)
    report = CatalogReport(n_rows=len(df))
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        report.errors.append(
            "missing required column(s): " + ", ".join(missing)
            + f"; columns present: {', '.join(map(str, df.columns))}")
        return df, report

    out = df.copy()
    for c in STRING_COLUMNS:
        out[c] = out[c].astype("string").fillna("").astype(str)
    empty_ids = int((out["item_id"] == "").sum())
    if empty_ids:
        report.errors.append(f"{empty_ids} row(s) with an empty item_id")
    counts = Counter(out["item_id"])
    dups = {k: v for k, v in counts.items() if v > 1 and k != ""}
    if dups:
        report.duplicate_ids = dict(sorted(dups.items(), key=lambda kv: (-kv[1], kv[0])))
        shown = ", ".join(f"{k} (x{v})" for k, v in list(report.duplicate_ids.items())[:20])
        more = f" and {len(dups) - 20} more" if len(dups) > 20 else ""
        report.errors.append(f"{len(dups)} duplicate item_id(s): {shown}{more}")
    bad_cat = out.loc[~out["category"].isin(CATEGORIES), "category"]
    if len(bad_cat):
        report.unknown_categories = dict(Counter(bad_cat))
        shown = ", ".join(f"{k!r} ({v} rows)" for k, v in report.unknown_categories.items())
        report.errors.append(f"unknown category value(s): {shown}; allowed: "
                             + ", ".join(CATEGORIES))
    if "price" in out.columns:
        price = pd.to_numeric(out["price"], errors="coerce")
        bad = out.loc[price.isna() & out["price"].notna(), "item_id"].tolist()
        if bad:
            report.errors.append(f"non-numeric price in {len(bad)} row(s), e.g. item "
                                 f"{bad[0]}: {out.loc[out['item_id'] == bad[0], 'price'].iloc[0]!r}")
        neg = out.loc[price < 0, "item_id"].tolist()
        if neg:
            report.errors.append(f"negative price in {len(neg)} row(s), e.g. item {neg[0]}")
        out["price"] = price.astype(float)
    if "in_stock" in out.columns:
        raw = out["in_stock"].astype("string").str.strip().str.lower()
        known = raw.isin(TRUE_VALUES | FALSE_VALUES).fillna(False).astype(bool)
        blank = (raw.isna() | (raw == "")).fillna(True).astype(bool)
        words = (f"one of {', '.join(sorted(TRUE_VALUES))} (in stock) or "
                 f"{', '.join(sorted(FALSE_VALUES))} (out of stock); a column mapping "
                 "adds a shop's own words (true_values, false_values)")
        if blank.any():
            # a blank is not "out of stock": the stock filter would drop the item, and
            # inventing "in stock" would show what cannot be bought
            report.errors.append(
                f"in_stock is blank in {int(blank.sum())} row(s), e.g. item "
                f"{out.loc[blank, 'item_id'].iloc[0]}: give every row {words}, or leave "
                "the column out when stock is not known")
        bad = out.loc[~known & ~blank, ["item_id", "in_stock"]]
        if len(bad):
            report.errors.append(
                f"in_stock {str(bad['in_stock'].iloc[0]).strip()!r} is not a stock value "
                f"in {len(bad)} row(s), e.g. item {bad['item_id'].iloc[0]}; allowed: "
                + words)
        out["in_stock"] = raw.isin(TRUE_VALUES).astype(bool)

    image_ok = np.zeros(len(out), dtype=bool)
    if check_images:
        idx = opened_rows(len(out), image_sample)
        if len(idx) < len(out):
            image_ok[:] = out["image_path"].to_numpy() != ""
            image_ok[idx] = False
        ids = out["item_id"].to_numpy()
        paths = out["image_path"].to_numpy()
        for i in idx:
            p = resolve_image_path(paths[i], image_root)
            if p is None:
                continue  # no image is a property of the item, not a fault
            why = _check_image(p)
            if why:
                report.row_issues.append((ids[i], why))
            else:
                image_ok[i] = True
    else:
        image_ok[:] = out["image_path"].to_numpy() != ""
    out["image_ok"] = image_ok
    return out.reset_index(drop=True), report


def check_row_width(df: pd.DataFrame, what: str, field: str,
                    path: str | os.PathLike) -> None:
    """Refuse a CSV read whose rows are one field longer than its header: pandas then
    makes the first column the index, and every value would shift by a column,
    silently. ``what`` names the file in the message (InputError on ``field``)."""
    if not isinstance(df.index, pd.RangeIndex):
        from features.exceptions import InputError

        raise InputError(f"{what}: its rows have more fields than its header "
                         f"({', '.join(map(str, df.columns))})", field=field,
                         value=str(path))


def first_bad_byte(path: Path, encoding: str = "utf-8") -> str:
    r"""Where a file stops being ``encoding`` text (pandas reports offsets within its
    read buffer), for the message of a CSV reader's UnicodeDecodeError
    (:func:`read_user_csv`, the mapping file's).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "c.csv"
    >>> _ = p.write_bytes("id,name\n1,caf\u00e9\n".encode("cp1252"))
    >>> first_bad_byte(p)
    "byte b'\\xe9' on line 2"
    """
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return f"byte {raw[exc.start:exc.start + 1]!r} on line {line}"
    return "undecodable bytes"


def read_user_csv(path: Path, name: str, field: str, *, error: type = None,
                  empty: str = "expected a header row",
                  fix: str = "save the file as UTF-8", **read_kw) -> pd.DataFrame:
    """``pd.read_csv(path, **read_kw)`` of a file a user gave; ``error`` (InputError by
    default) naming it (``name``, the file as the message calls it; ``field``, the
    argument) when it is empty (pandas' EmptyDataError names no file; ``empty`` says
    what was expected) or not text in its encoding (``read_kw["encoding"]``, UTF-8 by
    default; pandas names neither the file nor the line; ``fix`` says what to do).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "o.csv"; _ = p.write_text("")
    >>> read_user_csv(p, f"outfits file {p}", "outfits")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    features.exceptions.InputError: outfits file .../o.csv is empty: expected a header row
    """
    from features.exceptions import InputError

    error = error or InputError
    try:
        return pd.read_csv(path, **read_kw)
    except pd.errors.EmptyDataError:
        raise error(f"{name} is empty: {empty}", field=field, value=str(path)) from None
    except UnicodeDecodeError as exc:   # a file saved again by a spreadsheet as cp1252
        import codecs

        encoding = read_kw.get("encoding") or "utf-8"
        said = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
        raise error(f"{name} is not {said} text: {first_bad_byte(Path(path), encoding)}; "
                    f"{fix}", field=field, value=str(path)) from exc


def read_parquet_file(path: str | os.PathLike, name: str, field: str) -> pd.DataFrame:
    """``pd.read_parquet(path)`` of a file a user gave; InputError naming it (``name``,
    the file as the message calls it; ``field``, the argument) when it is cut short or
    not Parquet, instead of Arrow's traceback (``Parquet magic bytes not found``).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "c.parquet"; _ = p.write_text("item_id,colour")
    >>> read_parquet_file(p, f"catalogue file {p}", "catalog")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    features.exceptions.InputError: catalogue file .../c.parquet is not a readable ...
    """
    from features.exceptions import InputError

    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:   # Arrow's errors are ValueErrors or OSErrors
        raise InputError(f"{name} is not a readable Parquet file (an interrupted "
                         f"copy, or another format named .parquet): {exc}", field=field,
                         value=str(path)) from None


def load_catalog(path: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
                 check_images: bool = False) -> pd.DataFrame:
    """Read a canonical catalogue (Parquet or CSV) and validate it.

    Raises :class:`CatalogError` listing every problem when it cannot be used, and
    InputError for a ``check_images`` other than true or false, before reading.

    >>> load_catalog("/nonexistent.parquet")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    NotFoundError: catalogue file not found: /nonexistent.parquet
    """
    from features.exceptions import NotFoundError

    check_image_options(check_images)
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"catalogue file not found: {path}", field="catalog",
                            value=str(path))
    if path.suffix == ".parquet":
        df = read_parquet_file(path, f"catalogue file {path}", "catalog")
    else:
        df = read_user_csv(path, f"catalogue file {path}", "catalog",
                           dtype={"item_id": str}, keep_default_na=False)
        check_row_width(df, f"catalogue file {path}", "catalog", path)
        for c in OPTIONAL_COLUMNS:
            if c in df.columns and not (pd.api.types.is_numeric_dtype(df[c])
                                        or pd.api.types.is_bool_dtype(df[c])):
                # a blank cell means unknown (what a missing price is written as), not
                # a malformed value
                df[c] = df[c].where(df[c].astype(str).str.strip() != "")
    cat, report = validate_catalog(df, image_root, check_images=check_images)
    if not report.ok:
        raise CatalogError(report)
    return cat


def validate_outfits(outfits: pd.DataFrame, item_ids: Iterable[str] | None = None
                     ) -> tuple[pd.DataFrame, list[str]]:
    """Check an outfits table (``outfit_id,item_id``); drop rows naming unknown items.

    Returns the clean table (both columns as str) and a list of problems found.
    """
    problems: list[str] = []
    missing = [c for c in OUTFIT_COLUMNS if c not in outfits.columns]
    if missing:
        raise SchemaError("outfits table is missing column(s): " + ", ".join(missing),
                          field=missing[0])
    out = outfits[list(OUTFIT_COLUMNS)].astype(str).drop_duplicates().reset_index(drop=True)
    if item_ids is not None:
        known = set(item_ids)
        unknown = ~out["item_id"].isin(known)
        if unknown.any():
            problems.append(f"{int(unknown.sum())} outfit row(s) name item ids absent "
                            f"from the catalogue (e.g. {out.loc[unknown, 'item_id'].iloc[0]}); dropped")
            out = out[~unknown].reset_index(drop=True)
    return out, problems


def catalog_summary(catalog: pd.DataFrame, outfits: pd.DataFrame | None = None) -> str:
    """One screen of text: items per category, images, outfits and their sizes."""
    lines = [f"items: {len(catalog)}"]
    counts = catalog["category"].value_counts()
    for c in CATEGORIES:
        if counts.get(c, 0):
            lines.append(f"  {c:<10} {counts[c]:>8}")
    if "image_ok" in catalog.columns:
        n_missing = int((~catalog["image_ok"]).sum())
        lines.append(f"images usable: {len(catalog) - n_missing}, missing or unreadable: "
                     f"{n_missing}")
    lines.append("price: " + ("yes" if "price" in catalog.columns
                              and catalog["price"].notna().any() else "none in this catalogue"))
    lines.append("stock: " + ("yes" if "in_stock" in catalog.columns else "unknown"))
    if outfits is not None and len(outfits):
        sizes = outfits.groupby("outfit_id").size()
        lines.append(f"outfits: {len(sizes)}, items per outfit: min {sizes.min()}, "
                     f"median {int(sizes.median())}, max {sizes.max()}; distinct items used: "
                     f"{outfits['item_id'].nunique()}")
    return "\n".join(lines)
