"""Generate the demo catalogue folder (see :func:`generate_demo` for the layout)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from features.exceptions import InputError, NotFoundError
from features.settings import check_value
from features.fashionai.io import keypoints_from_arrays, write_attribute_file, write_keypoints_csv
from features.fashionai.schema import (ATTRIBUTE_TASKS, LABEL_MAYBE, LABEL_NO, LABEL_YES)
from recommender.demo.garments import (ShapeStats, build_garment, builtin_shape_stats,
                                       fashionai_shape_stats)
from recommender.demo.grammar import compose_outfits, grammar_description
from recommender.demo.items import ATTRIBUTE_COLUMNS, sample_items
from recommender.demo.render import HEIGHT, WIDTH, render_item

GENERATOR_VERSION = "1.0.0"
#: Above this many items the catalogue is written in table form (see generate_demo).
TABLE_FORM_ITEMS = 20_000
DEFAULT_TABLE_IMAGE_SAMPLE = 2_000
#: Peak memory of composing one outfit, bytes (measured: about 750 at 200,000 outfits
#: of 2,000 items), for the up-front check of ``n_outfits`` against the machine.
OUTFIT_BYTES = 750
JPEG_QUALITY = 90
#: What :func:`generate_demo` writes into its folder. A folder holding anything else
#: is not a demo catalogue: regenerating into it would delete its ``images/`` (a
#: MANGO data folder's photos) and overwrite its tables.
DEMO_ENTRIES = frozenset({"catalog.csv", "catalog.parquet", "outfits.csv",
                          "outfits.parquet", "images", "masks", "fashionai", "demo.json"})

SIMULATED_FIELDS = {
    "price": "simulated: base price per subcategory x formality x premium material x "
             "lognormal noise, rounded to .99",
    "in_stock": "simulated: 90% in stock at random",
    "gender": "constant 'Female' (the MANGO catalogue it imitates is womenswear)",
    "colour": "MANGO colour group of colour_name (exact, not simulated)",
}


def physical_memory() -> int | None:
    """The machine's memory in bytes (None where the OS does not say)."""
    import os

    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def default_outfits(n_items: int) -> int:
    """The outfit count of a demo catalogue of ``n_items`` when none is given.

    >>> default_outfits(2000), default_outfits(2)
    (666, 1)
    """
    return max(1, n_items // 3)


def check_outfit_count(n_outfits: int, *, items: int | None = None) -> None:
    """InputError when composing ``n_outfits`` would need more memory than the machine
    has: ``--outfits 100000000000`` composed 50,000 at a time for hours before the
    memory ran out. ``items``: the outfits are those of a build's demo catalogue of
    that many items (its default count), and the error names ``--items``.

    >>> check_outfit_count(1000)
    """
    need, have = n_outfits * OUTFIT_BYTES, physical_memory()
    if have and need > have:
        what = (f"outfits: {n_outfits}" if items is None
                else f"--items {items} ({n_outfits} outfits)")
        raise InputError(f"{what} would need about {need / 2**30:,.0f} GiB to compose, "
                         f"more than this machine's {have / 2**30:,.0f} GiB of memory; ask "
                         f"for fewer", field="outfits" if items is None else "items",
                         value=n_outfits if items is None else items)


def default_fashionai_keypoints() -> Path:
    """``$MIXMATCH_DATA/fashionai/keypoints/train.csv``, else ``../shared/data/...``
    beside the checkout (:func:`recommender.paths.default_data_root`)."""
    from recommender.paths import default_data_root

    return default_data_root() / "fashionai" / "keypoints" / "train.csv"


def resolve_shape_stats(fashionai_keypoints) -> ShapeStats:
    """Shape statistics: from the FashionAI file when given or present by default,
    built-in when ``fashionai_keypoints`` is False/"none" or the default is absent."""
    if fashionai_keypoints is False or (isinstance(fashionai_keypoints, str)
                                        and fashionai_keypoints.lower() in ("", "none")):
        return builtin_shape_stats()
    if fashionai_keypoints is None:
        p = default_fashionai_keypoints()
        return fashionai_shape_stats(p) if p.is_file() else builtin_shape_stats()
    p = Path(fashionai_keypoints)
    if not p.is_file():
        raise NotFoundError(f"FashionAI keypoint file not found: {p}",
                            field="fashionai_keypoints", value=str(p))
    return fashionai_shape_stats(p)


def _labels(task: str, cls: str, maybe: str | None) -> str:
    names = ATTRIBUTE_TASKS[task]
    out = [LABEL_NO] * len(names)
    if maybe and maybe in names and maybe != cls:
        out[names.index(maybe)] = LABEL_MAYBE
    out[names.index(cls)] = LABEL_YES
    return "".join(out)


def item_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of one item's shape and picture: depends on (seed, row) only,
    so an item looks the same whatever the catalogue size or image sample."""
    return np.random.default_rng([seed, 0x5EED, index])


def check_out_dir(out: Path) -> None:
    """Refuse an ``out`` that is a file, or a folder holding what the generator did not
    write (:data:`DEMO_ENTRIES`); a new or empty folder, or an earlier demo catalogue's
    (even one whose generation was interrupted, so without ``demo.json``), is fine.

    >>> import tempfile
    >>> check_out_dir(Path(tempfile.mkdtemp()) / "new")
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder", field="out", value=str(out))
    # hidden entries (.DS_Store) are nobody's data and are left as they are
    foreign = sorted(p.name for p in out.iterdir()
                     if p.name not in DEMO_ENTRIES and not p.name.startswith(".")
                     ) if out.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more"
                                          if len(foreign) > 5 else "")
        raise InputError(f"{out} holds {shown}, which mixmatch demo did not write: the "
                         "demo catalogue goes into a new or empty folder, or over an "
                         "earlier demo catalogue (whose images/, masks/ and fashionai/ "
                         "it replaces); choose another folder", field="out", value=str(out))


def generate_demo(out_dir, n_items: int = 2000, seed: int = 0, n_outfits: int | None = None,
                  image_sample: int | None = None, fashionai_keypoints=None,
                  progress=None) -> dict:
    """Write the generated demo catalogue into ``out_dir``; return its counts.

    Layout (every path relative to ``out_dir``)::

        catalog.csv            canonical columns + pattern, formality, silhouette,
                               colour_name + one column per FashionAI task (class name
                               or "") ; image_path = images/<item_id>.jpg or "" (no image)
        catalog.parquet        the same table, only in table form (n_items > 20,000)
        outfits.csv            outfit_id,item_id (outfits.parquet too in table form)
        images/<item_id>.jpg   240x336 packshot, JPEG quality 90
        masks/<item_id>.png    exact garment mask, 8-bit, 255 garment / 0 background
        fashionai/keypoints.csv            FashionAI keypoint CSV of imaged apparel
        fashionai/attributes/<task>.csv    FashionAI attribute files (8 tasks)
        demo.json              seed, counts, version, grammar, simulated fields, shapes

    Parameters
    ----------
    out_dir : path
        A new or empty folder, or an earlier demo catalogue's; any other is refused
        (:func:`check_out_dir`), as its ``images/`` would be deleted.
    n_items : int
        Catalogue size (1 .. 1,000,000 and beyond: the table form is vectorised).
    seed : int
        Everything is a function of the seed: same seed, byte-identical files.
    n_outfits : int, optional
        Default :func:`default_outfits` (``n_items // 3``, at least 1).
    image_sample : int, optional
        Render images (and masks, keypoints, attribute rows) for this many items,
        chosen at random (a whole number >= 0, at most ``n_items`` used); default all
        items up to 20,000, else 2,000.
    fashionai_keypoints : path, None or False
        FashionAI ``train.csv`` whose geometry seeds the shape proportions; None
        uses the shared data when present; False (or "none") the built-in ones.
    progress : callable, optional
        Called as ``progress(done, total)`` while rendering.

    Examples
    --------
    >>> import tempfile
    >>> counts = generate_demo(tempfile.mkdtemp(), n_items=30, seed=1,
    ...                        fashionai_keypoints=False)
    >>> counts["items"], counts["images"]
    (30, 30)
    """
    t0 = time.perf_counter()
    # whole numbers, as image_sample: int() cut 2.5 items to 2, made True one item and
    # "ten" a ValueError traceback
    check_value("n_items", n_items, int, least=1)
    n_items = int(n_items)
    if n_outfits is not None:
        check_value("n_outfits", n_outfits, int, least=0)
    n_outfits = default_outfits(n_items) if n_outfits is None else int(n_outfits)
    check_outfit_count(n_outfits)
    table_form = n_items > TABLE_FORM_ITEMS
    if image_sample is None:
        image_sample = DEFAULT_TABLE_IMAGE_SAMPLE if table_form else n_items
    else:
        # as the ingest's image_sample is checked (0 renders none here): 2.5 was cut
        # to 2, True rendered one image and "ten" was int()'s ValueError
        check_value("image_sample", image_sample, int, least=0)
    image_sample = int(min(image_sample, n_items))
    stats = resolve_shape_stats(fashionai_keypoints)

    out = Path(out_dir)
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    # the marker of an earlier run goes first and comes back last: a generation that is
    # interrupted leaves no demo.json for a build to mistake the folder's mix for it
    (out / "demo.json").unlink(missing_ok=True)
    for sub in ("images", "masks", "fashionai"):
        if (out / sub).exists():  # stale pictures of an earlier run must not linger
            shutil.rmtree(out / sub)
    (out / "images").mkdir()
    (out / "masks").mkdir()
    (out / "fashionai" / "attributes").mkdir(parents=True)

    ss = np.random.SeedSequence(seed)
    rng_items, rng_outfits, rng_sample = (np.random.default_rng(s) for s in ss.spawn(3))
    items = sample_items(n_items, rng_items)
    t_items = time.perf_counter()
    outfits = compose_outfits(items, n_outfits, rng_outfits)
    t_outfits = time.perf_counter()

    if image_sample == n_items:
        sample = np.arange(n_items)
    else:
        sample = np.sort(rng_sample.choice(n_items, size=image_sample, replace=False))
    image_path = np.full(n_items, "", dtype=object)
    kp_ids, kp_cats, kp_xy, kp_vis = [], [], [], []
    attr_rows: dict[str, list[tuple[str, str, str]]] = {t: [] for t in ATTRIBUTE_TASKS}
    item_ids = items["item_id"].to_numpy()
    records = items.iloc[sample].to_dict("records")
    for k, (i, rec) in enumerate(zip(sample, records)):
        rng = item_rng(seed, int(i))
        g = build_garment(rec, stats, rng)
        shot = render_item(rec, g, rng, (WIDTH, HEIGHT))
        rel = f"images/{item_ids[i]}.jpg"
        Image.fromarray(shot.image).save(out / rel, quality=JPEG_QUALITY)
        Image.fromarray(shot.mask.astype(np.uint8) * 255).save(
            out / "masks" / f"{item_ids[i]}.png", compress_level=1)
        image_path[i] = rel
        if shot.fa_category:
            kp_ids.append(rel)
            kp_cats.append(shot.fa_category)
            kp_xy.append(shot.keypoints_xy)
            kp_vis.append(shot.keypoints_vis)
        for t in ATTRIBUTE_COLUMNS:
            cls = rec[t]
            if cls:
                attr_rows[t].append((rel, t, _labels(t, cls, g.maybe.get(t))))
        if progress is not None:
            progress(k + 1, len(sample))
    t_images = time.perf_counter()
    items["image_path"] = image_path.astype(str)

    items.to_csv(out / "catalog.csv", index=False)
    outfits.to_csv(out / "outfits.csv", index=False)
    if table_form:
        items.to_parquet(out / "catalog.parquet", index=False)
        outfits.to_parquet(out / "outfits.parquet", index=False)
    kp = keypoints_from_arrays(kp_ids, kp_cats,
                               np.array(kp_xy).reshape(-1, 24, 2),
                               np.array(kp_vis, dtype=int).reshape(-1, 24))
    write_keypoints_csv(kp, out / "fashionai" / "keypoints.csv")
    n_attr = {}
    for t, rows in attr_rows.items():
        write_attribute_file(pd.DataFrame(rows, columns=["image_path", "task", "labels"]),
                             out / "fashionai" / "attributes" / f"{t}.csv")
        n_attr[t] = len(rows)
    t_write = time.perf_counter()

    sizes = outfits.groupby("outfit_id", sort=False).size()
    used = outfits["item_id"].nunique()
    counts = {
        "items": n_items, "images": int(len(sample)), "masks": int(len(sample)),
        "keypoint_rows": len(kp), "attribute_rows": n_attr, "outfits": int(len(sizes)),
        "outfit_rows": int(len(outfits)), "items_in_outfits": int(used),
        "cold_items": int(n_items - used),
        "per_category": {k: int(v) for k, v in items["category"].value_counts().sort_index().items()},
        "outfit_size": {"min": int(sizes.min()) if len(sizes) else 0,
                        "max": int(sizes.max()) if len(sizes) else 0,
                        "mean": round(float(sizes.mean()), 3) if len(sizes) else 0.0},
    }
    meta = {
        "generator": "recommender.demo", "generator_version": GENERATOR_VERSION,
        "seed": int(seed), "n_items": n_items, "n_outfits": n_outfits, "counts": counts,
        "table_form": table_form,
        "files": {"catalog": ["catalog.csv"] + (["catalog.parquet"] if table_form else []),
                  "outfits": ["outfits.csv"] + (["outfits.parquet"] if table_form else []),
                  "images": "images/<item_id>.jpg", "masks": "masks/<item_id>.png",
                  "keypoints": "fashionai/keypoints.csv",
                  "attributes": "fashionai/attributes/<task>.csv"},
        "image_size": [WIDTH, HEIGHT], "jpeg_quality": JPEG_QUALITY,
        "simulated_fields": SIMULATED_FIELDS,
        "grammar": grammar_description(),
        "shape_stats": stats.to_dict(),
        "fashionai_categories": {"top": "blouse", "outerwear": "outwear", "dress": "dress",
                                 "trousers/jeans/shorts": "trousers", "skirt": "skirt"},
    }
    (out / "demo.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    counts["seconds"] = {"items": round(t_items - t0, 3), "outfits": round(t_outfits - t_items, 3),
                         "images": round(t_images - t_outfits, 3),
                         "write": round(t_write - t_images, 3),
                         "total": round(time.perf_counter() - t0, 3)}
    return counts
