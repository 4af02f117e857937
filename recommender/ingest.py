"""Ingest: a source catalogue -> the canonical ``catalog.parquet`` and ``outfits.parquet``.

Sources (``--source``):

``mango``
    The MANGO datathon folder (:mod:`recommender.adapters.mango`); default
    ``$MIXMATCH_DATA/mango``. Image root: the data folder.
``csv``
    A shop's CSV/Parquet plus a mapping file (:mod:`recommender.adapters.generic`).
``demo``
    The generated demo folder (``catalog.csv``, ``outfits.csv``, ``images/``), already
    canonical; read through the same validation. Image root: that folder.
``fashionai``
    FashionAI label folders (:mod:`recommender.adapters.fashionai`): writes
    ``keypoints.parquet`` and ``attributes.parquet`` (labels, not a catalogue).

Every catalogue goes through :func:`recommender.catalog.validate_catalog`: missing
columns, duplicate ids and unknown categories stop the ingest with the full report
(exit 1 from the CLI, :class:`~recommender.catalog.CatalogError` in a build); rows
whose image is missing or unreadable are kept, flagged ``image_ok = False`` and
listed.

As a build stage (``ingest``, see :mod:`recommender.pipeline`) it writes into the
bundle and records the image root in the manifest. Stage settings
(``[stages.ingest]`` of a build config, :data:`STAGE_SETTINGS`): ``check_images``
(true or false, default true) and ``image_sample`` (open only that many images, evenly
spread, for huge catalogues: a whole number >= 1; left out or null, every image); any
other key, or a value of another kind, is refused before the build's first stage
(:func:`stage_settings`). Its inputs are the source files'
hashes (content hash for the tables, the mapping and each referenced image, see
:func:`recommender.bundle.image_fingerprint`), so re-running on unchanged data is
skipped, whatever the files' mtimes. A source moved or copied elsewhere with the same
bytes is not read again: the stage records the new image root (:func:`relocate`), and
the image stages after it stay current.

Example::

    mixmatch ingest --source mango --data ../shared/data/mango --out /tmp/mango
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable

import pandas as pd

from features.exceptions import BundleError, InputError, NotFoundError
from features.settings import check_settings
from features.source_files import source_dir
from recommender.bundle import (MANIFEST, atomic_files, atomic_write_text, file_hash,
                                images_gone_from)
from recommender.bundle import image_fingerprint as _image_fingerprint
from recommender.catalog import (CATEGORIES, IMAGE_OPTIONS, IMAGE_OPTIONS_AT_LEAST,
                                 CatalogError, CatalogReport, catalog_summary,
                                 check_image_options, read_user_csv, validate_catalog,
                                 validate_outfits)
from recommender.paths import default_data_root

SOURCES = ("demo", "mango", "csv")
DEMO_CATALOG = "catalog.csv"
DEMO_OUTFITS = "outfits.csv"
CATALOG_TABLE = "catalog.parquet"
OUTFITS_TABLE = "outfits.parquet"


def default_mango_dir() -> Path:
    """``$MIXMATCH_DATA/mango`` (else ``../shared/data/mango`` beside the checkout)."""
    return default_data_root() / "mango"


def default_fashionai_dir() -> Path:
    """``$MIXMATCH_DATA/fashionai`` (else ``../shared/data/fashionai``)."""
    return default_data_root() / "fashionai"


# -- reading a source ----------------------------------------------------------------------
def _read_demo_csv(path: Path, what: str, **kw) -> pd.DataFrame:
    """A CSV of a demo folder, named when empty or not UTF-8."""
    return read_user_csv(path, f"demo {what} {path}", "data",
                         empty="generate it again with `mixmatch demo --out DIR`",
                         dtype=str, keep_default_na=False, **kw)


def read_demo_source(folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """The generated demo folder's canonical ``catalog.csv`` and ``outfits.csv``."""
    folder = Path(folder)
    cpath = folder / DEMO_CATALOG
    if not cpath.is_file():
        raise NotFoundError(f"demo catalogue not found: {cpath} (generate it with "
                            "`mixmatch demo --out DIR`)", field="data", value=str(cpath))
    catalog = _read_demo_csv(cpath, "catalogue")
    for c in ("price", "in_stock"):
        if c in catalog.columns:  # a blank cell means unknown, not malformed
            catalog[c] = catalog[c].where(catalog[c].str.strip() != "")
    opath = folder / DEMO_OUTFITS
    outfits = (_read_demo_csv(opath, "outfits file") if opath.is_file()
               else pd.DataFrame({"outfit_id": [], "item_id": []}, dtype=str))
    return catalog, outfits, folder


def read_source(source: str, data: str | os.PathLike | None = None,
                mapping: str | os.PathLike | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """``(catalogue, outfits, image_root)`` of a source, before validation."""
    if source == "mango":
        from recommender.adapters.mango import load_mango

        return load_mango(Path(data) if data else default_mango_dir())
    if source == "csv":
        if not mapping:
            raise InputError("--source csv needs --mapping FILE", field="mapping")
        from recommender.adapters.generic import load_mapped

        catalog, outfits, root = load_mapped(mapping, data)
        if outfits is None:
            outfits = pd.DataFrame({"outfit_id": [], "item_id": []}, dtype=str)
        return catalog, outfits, root
    if source == "demo":
        if not data:
            raise InputError("--source demo needs --data DIR (a folder written by "
                             "`mixmatch demo`)", field="data")
        return read_demo_source(data)
    raise InputError(f"unknown source {source!r}", field="source", value=source,
                     allowed=SOURCES + ("fashionai",))


def ingest(source: str, data: str | os.PathLike | None = None,
           mapping: str | os.PathLike | None = None, *, check_images: bool = True,
           image_sample: int | None = None
           ) -> tuple[pd.DataFrame, pd.DataFrame, Path, CatalogReport, list[str]]:
    """Read and validate a source.

    ``image_sample`` opens only that many images, evenly spread (for catalogues of
    a million rows). Returns ``(catalog, outfits, image_root, report,
    outfit_problems)``; the caller decides what to do when ``report.ok`` is false.
    A ``check_images`` other than true or false, or an ``image_sample`` other than
    None or a whole number >= 1, is InputError naming it before the source is read
    (:func:`recommender.catalog.check_image_options`: the rules of
    ``[stages.ingest]``).

    >>> ingest("demo", "/nowhere", check_images="false")
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: check_images must be true or false, got 'false'
    """
    check_image_options(check_images, image_sample)
    raw, outfits, image_root = read_source(source, data, mapping)
    catalog, report = validate_catalog(raw, image_root, check_images=check_images,
                                       image_sample=image_sample)
    if not report.ok:
        return catalog, outfits, image_root, report, []
    outfits, problems = validate_outfits(outfits, catalog["item_id"])
    return catalog, outfits, image_root, report, problems


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write so a reader never sees half a file (rename over the old one)."""
    with atomic_files(path) as (tmp,):
        df.to_parquet(tmp, index=False)


def write_tables(catalog: pd.DataFrame, outfits: pd.DataFrame, out: str | os.PathLike
                 ) -> list[str]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_parquet(catalog, out / CATALOG_TABLE)
    _write_parquet(outfits.astype(str), out / OUTFITS_TABLE)
    return [CATALOG_TABLE, OUTFITS_TABLE]


def source_currency(source: str, mapping: str | os.PathLike | None) -> str | None:
    """The currency a source declares its prices in: a mapped catalogue's ``currency``
    key (:mod:`recommender.adapters.generic`), else None (not declared)."""
    if source != "csv" or not mapping:
        return None
    from recommender.adapters.generic import declared_currency, read_mapping

    return declared_currency(read_mapping(mapping))


def ingest_metrics(catalog: pd.DataFrame, outfits: pd.DataFrame, report: CatalogReport,
                   outfit_problems: Iterable[str] = (), *, currency: str | None = None
                   ) -> dict:
    """What an ingest records (``ingest.json``, the build's ingest stage): counts, and
    ``currency``, the ISO code the source declares its prices in (None: undeclared)."""
    counts = catalog["category"].value_counts()
    sizes = outfits.groupby("outfit_id").size() if len(outfits) else pd.Series(dtype=int)
    return {
        "n_items": int(len(catalog)),
        "n_outfits": int(outfits["outfit_id"].nunique()) if len(outfits) else 0,
        "n_outfit_rows": int(len(outfits)),
        "outfit_size_min": int(sizes.min()) if len(sizes) else 0,
        "outfit_size_max": int(sizes.max()) if len(sizes) else 0,
        "per_category": {c: int(counts[c]) for c in CATEGORIES if counts.get(c, 0)},
        "images_missing": int((~catalog["image_ok"]).sum()),
        "image_problems": len(report.row_issues),
        "outfit_problems": list(outfit_problems),
        "currency": currency,
    }


# -- CLI --------------------------------------------------------------------------------------
def cli_ingest(args) -> int:
    """Handler of ``mixmatch ingest``: write the tables and print a one-screen summary.

    Exit 0 when written, 1 when the catalogue has errors (the report is printed and
    nothing is written); ``--out`` holding a bundle is refused (BundleError, exit 2).
    """
    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # named now, not by mkdir's traceback at the end
        raise InputError(f"--out {out} is a file, not a folder", field="out",
                         value=str(out))
    if args.source == "fashionai":
        from recommender.adapters.fashionai import format_counts, ingest_fashionai

        data = Path(args.data) if args.data else default_fashionai_dir()
        counts = ingest_fashionai(data, out)
        print(f"FashionAI labels from {data}")
        print(format_counts(counts))
        print(f"wrote {out / 'keypoints.parquet'} and {out / 'attributes.parquet'} in "
              f"{time.perf_counter() - t0:.1f}s")
        return 0
    if (out / MANIFEST).is_file():
        # the tables would replace a built bundle's catalogue beside the features and
        # graph made from the old one, with no stage record or building mark saying so
        raise BundleError(f"{out} holds a bundle: mixmatch ingest writes its tables to a "
                          f"folder of its own; to re-ingest a bundle run mixmatch build "
                          f"--out {out} (its ingest stage)")
    check = not getattr(args, "no_check_images", False)
    catalog, outfits, image_root, report, problems = ingest(
        args.source, args.data, args.mapping, check_images=check)
    if not report.ok:
        print(report.summary(), file=sys.stderr)
        print(f"mixmatch ingest: the catalogue has errors; nothing written to {out}",
              file=sys.stderr)
        return 1
    write_tables(catalog, outfits, out)
    metrics = ingest_metrics(catalog, outfits, report, problems,
                             currency=source_currency(args.source, args.mapping))
    atomic_write_text(out / "ingest.json", json.dumps(
        {"source": args.source, "data": str(args.data) if args.data else None,
         "mapping": str(args.mapping) if args.mapping else None,
         "image_root": str(Path(image_root).resolve()), "images_checked": check,
         "metrics": metrics}, indent=2))
    print(catalog_summary(catalog, outfits))
    if not check:
        print("images: not opened (--no-check-images); image_ok only says a path is set")
    print(report.summary(max_rows=10))
    for p in problems:
        print(f"outfits: {p}")
    print(f"image root: {Path(image_root).resolve()}")
    print(f"wrote {out / CATALOG_TABLE}, {out / OUTFITS_TABLE} in "
          f"{time.perf_counter() - t0:.1f}s")
    return 0


# -- build stage --------------------------------------------------------------------------------
def _stage_source(ctx) -> tuple[str, Path | None, Path | None]:
    source = ctx.source or "demo"
    data = ctx.config.get("data")
    mapping = ctx.config.get("mapping")
    if source == "mango":
        data = Path(data) if data else default_mango_dir()
    elif source == "demo":  # where the perception stages find its FashionAI labels too
        data = source_dir(ctx.bundle, ctx.config)
    elif source == "csv":
        if not mapping:
            raise InputError("--source csv needs --mapping FILE", field="mapping")
        data = Path(data) if data else None
    else:
        raise InputError(f"unknown source {source!r}", field="source", value=source,
                         allowed=SOURCES)
    return source, data, Path(mapping) if mapping else None


#: The settings of ``[stages.ingest]`` and the kind of value each takes: the options
#: of :func:`ingest` and :func:`recommender.catalog.validate_catalog`, and their rules.
STAGE_SETTINGS = IMAGE_OPTIONS


def stage_settings(ctx) -> tuple[bool, int | None]:
    """``(check_images, image_sample)`` of the build's ``[stages.ingest]`` table, or
    InputError naming a key it does not take (with the keys it takes) or a value of
    the wrong kind, before any stage starts (:func:`check_config`).

    Before, the table was read unchecked: a misspelt ``check_image = false`` was
    ignored (every image opened), ``check_images = "false"`` read as true
    (``bool("false")``), ``image_sample = 0`` opened no image and flagged every one
    usable, ``true`` opened one, and -3, 2.5 or ``"ten"`` were a numpy or comparison
    traceback once the stage had started. A whole number written as a float
    (``500.0``) is refused as every stage refuses one for a whole-number setting
    (:func:`features.settings.check_settings`).

    >>> from types import SimpleNamespace as NS
    >>> stage_settings(NS(stage_config=lambda name: {"image_sample": 500}))
    (True, 500)
    >>> stage_settings(NS(stage_config=lambda name: {"check_images": "false"}))
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: [stages.ingest] check_images must be true or false, got 'false'
    """
    table = ctx.stage_config("ingest")
    # null (JSON, YAML) is the default, as leaving the key out: every image opened
    given = {k: v for k, v in table.items() if not (k == "image_sample" and v is None)}
    check_settings("ingest", given, STAGE_SETTINGS, at_least=IMAGE_OPTIONS_AT_LEAST)
    return table.get("check_images", True), table.get("image_sample")


#: Checked before any stage of a build starts (recommender.pipeline).
check_config = stage_settings


#: Inputs that say where the source lies, not what it holds (the files' and images'
#: hashes do): a data folder moved or copied with the same bytes is not ingested again,
#: its new place is recorded (:func:`relocate`, :func:`recommender.pipeline.data_moved`).
LOCATION_INPUTS = ("data", "mapping")


def stage_inputs(ctx) -> dict:
    """What the ingest result depends on: source, settings, and the source files."""
    check, sample = stage_settings(ctx)   # refused here too, before the stage starts
    source, data, mapping = _stage_source(ctx)
    files: dict[str, str | None] = {}
    if source == "mango":
        from recommender.adapters.mango import source_files

        sf = source_files(data)
        for k in ("products", "outfits"):
            files[k] = file_hash(sf[k]) if sf[k].is_file() else None
    elif source == "csv":
        from recommender.adapters.generic import source_files

        for k, p in source_files(mapping, data).items():
            files[k] = file_hash(p) if p.is_file() else None
    else:
        for name in (DEMO_CATALOG, DEMO_OUTFITS):
            p = data / name
            files[name] = file_hash(p) if p.is_file() else None
    paths, root = _source_images(source, data, mapping)
    return {"source": source, "data": str(data) if data else None,
            "mapping": str(mapping) if mapping else None, "check_images": check,
            "image_sample": sample, "files": files,
            "images": _image_fingerprint(paths, Path(root), ctx.bundle.content_hashes())}


def _source_images(source: str, data: Path | None, mapping: Path | None
                   ) -> tuple[Iterable, Path]:
    """The ``image_path`` of every row of the source's catalogue, as read (none when
    the catalogue file is not there), and the folder they are relative to."""
    if source == "mango":
        from recommender.adapters.mango import read_products, source_files

        paths = (read_products(data)["image_path"]
                 if source_files(data)["products"].is_file() else [])
        root = data
    elif source == "csv":
        from recommender.adapters.generic import load_mapped

        catalog, _, root = load_mapped(mapping, data)
        paths = catalog["image_path"]
    else:
        paths = (_read_demo_csv(data / DEMO_CATALOG, "catalogue",
                                usecols=["image_path"])["image_path"]
                 if (data / DEMO_CATALOG).is_file() else [])
        root = data
    return paths, Path(root)


def images_after_run(ctx) -> tuple[Path, str | None]:
    """The image root this stage records when it runs, and what
    :meth:`Bundle.images_gone <recommender.bundle.Bundle.images_gone>` will say of the
    catalogue it writes there (None: its images are there), told before it runs: a
    build whose image stages would be refused after the ingest refuses before it
    (:func:`recommender.pipeline.refusal_up_front`), the bundle left as it was. Reads
    the source's catalogue and looks for its images; opens none.

    The images counted are those the ingest will flag ``image_ok``: every row with a
    relative path that it does not open (``check_images = false``, or beyond its
    ``image_sample``), and those it opens and finds. In a bundle that had images
    every row with a relative path counts: an ingest that opens them all and finds
    none flags none ``image_ok``, and the image stages after it would replace what
    they made with results from no image.

    Only the ingest can tell whether an image that is there decodes (it is then not
    ``image_ok``): counted here as found. So an ingest that opens some of the
    images (``image_sample``) and finds only such files there is followed by the
    image stage's own refusal, after the ingest and the split have written.
    """
    from recommender.catalog import opened_rows

    source, data, mapping = _stage_source(ctx)
    paths, root = _source_images(source, data, mapping)
    root = root.resolve()
    # spelled as validate_catalog spells them (a missing path "")
    paths = pd.Series(paths, dtype="string").fillna("").astype(str).tolist()
    rel = [(i, p) for i, p in enumerate(paths) if p and not os.path.isabs(p)]
    check, sample = stage_settings(ctx)
    if check and not ctx.bundle.images_had():
        opened = set(opened_rows(len(paths), sample).tolist())
        if any(os.path.isfile(os.path.join(root, p)) for i, p in rel if i in opened):
            return root, None   # found, so image_ok: the images are there
        rel = [(i, p) for i, p in rel if i not in opened]
    return root, images_gone_from(root, [p for _, p in rel])


def _image_root(source: str, data: Path | None, mapping: Path | None) -> Path:
    """Where the source's image paths are relative to, as :func:`read_source` says."""
    if source == "csv":
        from recommender.adapters.generic import load_mapped

        return load_mapped(mapping, data)[2]
    return data


def relocate(ctx) -> str:
    """Set the bundle's image root (in memory) to the place of the build's source,
    for a source that moved with the same content: the tables stand, and the stages
    after it read the images from there. Reads no image and writes no table."""
    root = str(Path(_image_root(*_stage_source(ctx))).resolve())
    was = ctx.bundle.manifest.get("image_root")
    ctx.bundle.manifest["image_root"] = root
    return (f"recorded the new image root {root}" if root != was
            else f"image root {root} unchanged")


def run_stage(ctx) -> dict:
    """Read and validate the build's source, write the tables into the bundle.

    Raises :class:`~recommender.catalog.CatalogError` (with the full report) when the
    catalogue has errors; image problems only flag their rows.
    """
    check, sample = stage_settings(ctx)
    source, data, mapping = _stage_source(ctx)
    catalog, outfits, image_root, report, problems = ingest(
        source, data, mapping, check_images=check, image_sample=sample)
    if not report.ok:
        raise CatalogError(report)
    outputs = write_tables(catalog, outfits, ctx.bundle.root)
    ctx.bundle.manifest["image_root"] = str(Path(image_root).resolve())
    ctx.bundle.save()
    metrics = ingest_metrics(catalog, outfits, report, problems,
                             currency=source_currency(source, mapping))
    ctx.log(f"[ingest] {metrics['n_items']} items, {metrics['n_outfits']} outfits, "
            f"{metrics['images_missing']} without a usable image")
    if report.row_issues:
        ctx.log(report.summary(max_rows=5))
    for p in problems:
        ctx.log(f"[ingest] outfits: {p}")
    return {"outputs": outputs, "metrics": metrics}
