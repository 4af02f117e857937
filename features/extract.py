"""Batch feature extraction: the pipeline's ``features`` stage and its library function.

For every catalogue item: load the image, garment mask (:mod:`features.mask`; a
cut-out's transparency is its mask),
dominant colours and colour group (:mod:`features.colour`), FashionAI keypoints
for apparel (the trained heatmap detector when the bundle has one and the
module offers it, else :mod:`features.keypoints.silhouette`), shape features
(:mod:`features.shape`), and -- when ``models/attributes.pt`` exists -- the
attribute predictions and the visual embedding (:class:`features.attributes.AttributeModel`).

Outputs (relative to the bundle root, see the interfaces doc)::

    features/features.parquet            one row per catalogue item, catalogue order
    features/embeddings.npy              (N, D) float32 L2-normalised (only with a model)
    features/keypoints.csv               FashionAI format, apparel items with an image
    features/keypoint_confidence.parquet item_id, image_id, image_category, kp_method,
                                         conf_<keypoint name> (24 columns)
    features/parts/<signature>/part_*.parquet   resumable per-chunk results

The classical part runs in chunks (``chunk_size`` items with an image path), each
written as a part file named under a signature of the catalogue and settings: an
interrupted run resumes by skipping finished parts; a finished run re-assembles
the same bytes. Parts are reused while the settings, the items and each image's
content hash (:class:`features.files.ContentHashes`, not its mtime: a copied data
folder reuses them) and decoding stamp (:func:`features.imaging.decoding_stamp`: its
EXIF turn, and a revision for kinds of file whose decoding changed) are unchanged.
Items without an image path all get the same "no image" row (id and keypoint
category aside), written at once as one more part
(``no_image.parquet``): a table-only catalogue of a million items is then one
vectorised frame, not 15,000 chunk round trips (~27 ms of CPU each).
With many items the chunks run on ``workers`` processes. A missing or corrupt
image flags its row (``feat_ok`` False, ``feat_error`` says why); the run goes on.

Stage settings (``[stages.features]`` of a build config): ``workers`` (2),
``chunk_size`` (64), ``max_side`` (512: images are shrunk to this first),
``batch_size`` (64, attribute network batches).

Example::

    from features.extract import extract_features
    summary = extract_features(catalog_df, image_root, "out/features")
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.colour import colour_group, colourfulness, dominant_colours
from features.exceptions import InputError, MixmatchError
from features.fashionai.schema import CATEGORY_KEYPOINTS, KEYPOINT_INDEX, KEYPOINT_NAMES
from features.files import ContentHashes, atomic_files, content_hashes, read_bundle_file
from features.imaging import decoding_stamp, load_rgb, load_rgb_alpha, open_image
from features.keypoints import category_for
from features.keypoints.silhouette import estimate_keypoints
from features.mask import garment_mask
from features.settings import check_settings
from features.shape import SHAPE_FEATURES, shape_features

#: Bumped when the per-item results or the part layout change, so stale part
#: files are not reused (2: chunks hold items with an image; the rest is one part;
#: 3: colour groups of dark colours compared by saturation; 4: the silhouette
#: estimator's crotch, armpits and leg openings steady under pixel noise).
FEATURES_VERSION = 4
FEATURES_DIR = "features"
FEATURES_TABLE = "features/features.parquet"
EMBEDDINGS = "features/embeddings.npy"
KEYPOINTS_CSV = "features/keypoints.csv"
KEYPOINT_CONFIDENCE = "features/keypoint_confidence.parquet"

COLOUR_COLUMNS = tuple(f"colour{i}_{c}" for i in (1, 2, 3) for c in ("L", "a", "b", "w"))
#: Columns every features table has, in order (``attr_*`` follow when a model exists).
BASE_COLUMNS: tuple[str, ...] = (
    ("item_id", "feat_ok", "feat_error", "mask_quality", "mask_method", "mask_area",
     "bbox_aspect") + COLOUR_COLUMNS + ("colour_group", "colourfulness")
    + SHAPE_FEATURES + ("kp_conf", "kp_category", "kp_method"))
DEFAULTS = {"workers": 2, "chunk_size": 64, "max_side": 512, "batch_size": 64}
#: Fewer items than this run in-process (spawning workers costs about a second).
MIN_ITEMS_FOR_WORKERS = 200

_KP_COLS = ([f"kp_x_{i}" for i in range(24)] + [f"kp_y_{i}" for i in range(24)]
            + [f"kp_v_{i}" for i in range(24)] + [f"kp_c_{i}" for i in range(24)])


# -- one image -----------------------------------------------------------------
def analyse_image(rgb: np.ndarray, slot: str | None = None, subcategory: str = "",
                  keypoint_category: str | None = None, keypoint_model=None,
                  alpha: np.ndarray | None = None) -> dict[str, Any]:
    """Every classical feature of one image (mask, colours, keypoints, shape).

    Parameters
    ----------
    rgb : uint8 (H, W, 3)
    slot, subcategory : str, optional
        The item's catalogue category and subcategory; they decide the FashionAI
        keypoint category (:func:`features.keypoints.category_for`).
    keypoint_category : str, optional
        Overrides that choice (``blouse`` ... ``trousers``); None for no keypoints
        when ``slot`` is None too.
    keypoint_model : optional
        A trained detector (``predict(images, categories) -> (xy, vis, conf)``,
        e.g. ``features.keypoints.heatmap``) used instead of the silhouette
        estimator; ``kp_method`` says which ran.
    alpha : uint8 (H, W), optional
        The image's transparency (:func:`features.imaging.load_rgb_alpha`): a
        cut-out's is its garment mask (``mask_method`` ``"alpha"``), which the
        colours, silhouette keypoints and shape then read. ``rgb`` stays the image
        composited on white, what a keypoint network sees.

    Returns
    -------
    dict
        ``row`` (the features-table fields of :data:`BASE_COLUMNS` except
        ``item_id``/``feat_ok``/``feat_error``), ``mask`` (a MaskResult),
        ``colours``, and ``keypoints``: ``(category, xy, vis, conf)`` or None.
        Keypoint confidences are the estimator's cue clarity times the mask
        quality (a poor mask makes every point doubtful).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((120, 80, 3), 240, np.uint8); img[20:100, 20:60] = (30, 30, 120)
    >>> out = analyse_image(img, "bottom", "Skirts")
    >>> out["row"]["colour_group"], out["keypoints"][0], round(out["row"]["shape_skirt_length"], 1)
    ('BLUE', 'skirt', 2.1)
    """
    m = garment_mask(rgb, alpha=alpha)
    mask = m.mask
    h, w = mask.shape
    row: dict[str, Any] = {"mask_quality": float(m.quality), "mask_method": m.method,
                           "mask_area": float(mask.mean())}
    if mask.any():
        ys = np.nonzero(mask.any(1))[0]
        xs = np.nonzero(mask.any(0))[0]
        row["bbox_aspect"] = float((ys[-1] - ys[0] + 1) / (xs[-1] - xs[0] + 1))
    else:
        row["bbox_aspect"] = float("nan")
    # An empty mask would leave no pixels: fall back to the whole image, said by
    # the mask quality (0) rather than by inventing a garment.
    cmask = mask if mask.sum() >= 20 else np.ones_like(mask)
    cols = dominant_colours(rgb, cmask, k=3)
    for i in range(3):
        c = cols[i] if i < len(cols) else (np.nan, np.nan, np.nan, 0.0)
        for j, n in enumerate(("L", "a", "b", "w")):
            row[f"colour{i + 1}_{n}"] = float(c[j])
    row["colour_group"] = colour_group(cols)
    row["colourfulness"] = colourfulness(rgb, cmask)
    kcat = keypoint_category if keypoint_category is not None else (
        category_for(slot, subcategory) if slot is not None else None)
    kp = None
    shape = {k: float("nan") for k in SHAPE_FEATURES}
    row["kp_conf"] = float("nan")
    row["kp_category"] = kcat or ""
    row["kp_method"] = ""
    if kcat is not None:
        if keypoint_model is not None:
            pxy, pvis, pconf = keypoint_model.predict([rgb], [kcat])
            xy, vis, conf = (np.asarray(pxy[0], float), np.asarray(pvis[0]),
                             np.asarray(pconf[0], float))
        else:
            xy, vis, conf = estimate_keypoints(mask, kcat)
            conf = conf * float(m.quality)
        kp = (kcat, xy, vis, conf)
        shape = shape_features(xy, vis, kcat)
        idx = [KEYPOINT_INDEX[n] for n in CATEGORY_KEYPOINTS[kcat]]
        row["kp_conf"] = float(np.mean(conf[idx]))
        row["kp_method"] = "heatmap" if keypoint_model is not None else "silhouette"
    row.update(shape)
    return {"row": row, "mask": m, "colours": cols, "keypoints": kp}


def _empty_row(item_id: str, error: str, kcat: str | None) -> dict:
    row = {c: float("nan") for c in BASE_COLUMNS}
    row.update({"item_id": item_id, "feat_ok": False, "feat_error": error,
                "mask_quality": 0.0, "mask_method": "", "colour_group": "",
                "kp_category": kcat or "", "kp_method": "", "mask_area": 0.0})
    for i in (1, 2, 3):
        row[f"colour{i}_w"] = 0.0
    return row


def _process_items(items: list[tuple], max_side: int) -> pd.DataFrame:
    """Rows (plus flat keypoint columns) for ``items`` = [(id, path|None, slot, sub)]."""
    rows = []
    for item_id, path, slot, sub in items:
        kcat = category_for(slot, sub)
        if path is None:
            row = _empty_row(item_id, "no image", kcat)
            kp = None
        else:
            try:
                rgb, alpha = load_rgb_alpha(path, max_side=max_side)
                res = analyse_image(rgb, slot, sub, alpha=alpha)
            except MixmatchError as exc:
                rows.append({**_empty_row(item_id, str(exc)[:300], kcat),
                             **dict.fromkeys(_KP_COLS, np.nan)})
                continue
            except Exception as exc:  # a per-item bug must not stop a 1M-item run
                rows.append({**_empty_row(item_id, f"{exc.__class__.__name__}: {exc}"[:300],
                                          kcat), **dict.fromkeys(_KP_COLS, np.nan)})
                continue
            row = {"item_id": item_id, "feat_ok": True, "feat_error": "", **res["row"]}
            kp = res["keypoints"]
            if kp is not None:
                kcat_, xy, vis, conf = kp
                kp = (kcat_, _keypoints_in_frame(path, rgb, xy, vis, to_file=True), vis, conf)
        flat = dict.fromkeys(_KP_COLS, np.nan)
        if kp is not None:
            _, xy, vis, conf = kp
            for i in range(24):
                flat[f"kp_x_{i}"], flat[f"kp_y_{i}"] = float(xy[i, 0]), float(xy[i, 1])
                flat[f"kp_v_{i}"], flat[f"kp_c_{i}"] = float(vis[i]), float(conf[i])
        rows.append({**row, **flat})
    df = pd.DataFrame(rows, columns=list(BASE_COLUMNS) + _KP_COLS)
    return df


def _no_image_rows(items: list[tuple]) -> pd.DataFrame:
    """What :func:`_process_items` gives items without an image path, built at once.

    One template row made by the same constructor (so the columns and their
    types are the chunks'), repeated, with each item's id and keypoint category.
    """
    kcat_of: dict[tuple, str] = {}
    kcats = []
    for _, _, slot, sub in items:
        key = (slot, sub)
        if key not in kcat_of:
            kcat_of[key] = category_for(slot, sub) or ""
        kcats.append(kcat_of[key])
    template = _process_items([("", None, "", "")], 1)
    df = template.iloc[np.zeros(len(items), np.int64)].reset_index(drop=True)
    df["item_id"] = [it[0] for it in items]
    df["kp_category"] = kcats
    return df


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_files(path) as (tmp,):
        df.to_parquet(tmp, index=False)


def _run_chunk(job: tuple) -> tuple[int, int]:
    """Worker entry point: process one chunk and write its part file."""
    index, items, max_side, part_path = job
    df = _process_items(items, max_side)
    _atomic_parquet(df, Path(part_path))
    return index, len(items)


# -- the catalogue -------------------------------------------------------------
def _resolve(path: str, root: Path | None) -> str | None:
    if not isinstance(path, str) or not path:
        return None
    p = Path(path)
    if not p.is_absolute() and root is not None:
        p = root / p
    return str(p)


def _signature(items: list[tuple], settings: dict,
               index: ContentHashes | None = None) -> str:
    """Name of the part files' folder: the code version, the settings, and every
    item with its image's content hash (from ``index``, the bundle's
    :class:`features.files.ContentHashes`; None: the process's in-memory one) and
    :func:`features.imaging.decoding_stamp`. Parts are reused while none of these
    changed, whatever the images' mtimes (a copied or re-provisioned data folder); a
    replaced image, or a decoder change for a kind of file the catalogue holds,
    reruns every part once. (Parts named on size and mtime, before, run once more.)"""
    index = index if index is not None else content_hashes(None)
    h = hashlib.sha256()
    h.update(json.dumps({"v": FEATURES_VERSION, **settings}, sort_keys=True).encode())
    for it in items:
        h.update(repr(it).encode())
        p = it[1]
        if p is not None:
            digest = index.digest(p)
            h.update(b"missing" if digest is None
                     else f"{digest}{decoding_stamp(p)}".encode())
    index.save()
    return h.hexdigest()[:16]


def _keypoints_in_frame(path, rgb: np.ndarray, xy: np.ndarray, vis: np.ndarray, *,
                        to_file: bool) -> np.ndarray:
    """Keypoints moved between ``rgb`` (the image shrunk to ``max_side``) and the image
    file's pixel frame, the one FashionAI keypoint files hold: to the file's
    (``to_file``: a detector's points on ``rgb``) or from it (stored points); -1
    where absent."""
    with open_image(path) as im:
        file_side = max(im.size)
    side = max(rgb.shape[:2])
    s = (file_side / side if side else 1.0) if to_file else side / max(file_side, 1)
    return np.where(np.asarray(vis)[:, None] >= 0, np.asarray(xy, float) * s, -1.0)


def _attribute_outputs(model, paths: list[str | None], ok: np.ndarray, max_side: int,
                       batch_size: int, progress: bool, keep: tuple = (),
                       keypoints: tuple | None = None, desc_workers: int = 1,
                       desc_cache: str | os.PathLike | None = None,
                       descriptors: np.ndarray | None = None):
    """(attr columns dict, embeddings (N, D), {head: probabilities (N, C)} for the
    heads in ``keep``) from the attribute network.  ``keypoints`` = (xy (N, 24, 2),
    vis (N, 24)) in the image files' frame, row-aligned with ``paths``, feed a
    network with a keypoint-guided region path (:mod:`features.attributes.regions`);
    a network with a detail crop cuts it from the loaded images itself.  A network
    with fused descriptor heads gets the images' descriptors, measured up front in
    ``desc_workers`` processes (or read from ``desc_cache``, where the attribute stage
    left those of the same image paths), unless ``descriptors`` (row-aligned with
    ``paths``) already holds them."""
    from tqdm import tqdm

    n = len(paths)
    heads = list(model.taxonomy_.names)
    cols: dict[str, np.ndarray] = {}
    for h in heads:
        cols[f"attr_{h}"] = np.full(n, "", dtype=object)
        cols[f"attr_{h}_conf"] = np.full(n, np.nan)
    kept = {h: np.full((n, len(model.taxonomy_.classes(h))), np.nan, np.float32)
            for h in keep}
    emb = None
    todo = np.nonzero(ok)[0]
    desc = None
    if descriptors is not None and getattr(model, "fused_heads", None):
        desc = np.asarray(descriptors, np.float32)
    elif getattr(model, "fused_heads", None) and len(todo):
        from features.attributes.descriptors import descriptor_table

        d, _ = descriptor_table([paths[i] for i in todo], workers=max(1, int(desc_workers)),
                                cache=desc_cache, progress=progress)
        desc = np.full((n, d.shape[1]), np.nan, np.float32)
        desc[todo] = d
    bar = tqdm(total=len(todo), desc="attributes", file=sys.stderr, disable=not progress)
    for s in range(0, len(todo), batch_size):
        idx = todo[s:s + batch_size]
        images = [load_rgb(paths[i], max_side=max_side) for i in idx]
        extra = {} if desc is None else {"descriptors": desc[idx]}
        regions = None
        if keypoints is not None and getattr(model, "region_kind", None) == "neck":
            kxy = np.stack([_keypoints_in_frame(paths[i], im, keypoints[0][i],
                                                keypoints[1][i], to_file=False)
                            for i, im in zip(idx, images)])
            regions = model.region_inputs(images, kxy, keypoints[1][idx])
        probs, z = model.predict_all(images, regions, **extra) if regions is not None else \
            model.predict_all(images, **extra)
        if emb is None:
            emb = np.zeros((n, z.shape[1]), np.float32)
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        emb[idx] = z / np.maximum(norm, 1e-12)
        for h in heads:
            classes = np.array(model.taxonomy_.classes(h), dtype=object)
            cols[f"attr_{h}"][idx] = classes[probs[h].argmax(1)]
            cols[f"attr_{h}_conf"][idx] = probs[h].max(1)
        for h in kept:
            kept[h][idx] = probs[h]
        bar.update(len(idx))
    bar.close()
    return cols, emb, kept


def _pool_attribute_columns(model, cols: dict, kept: dict, groups, ok: np.ndarray) -> None:
    """Garment-level heads pooled over colour variants (see
    :mod:`features.attributes.grouping`): rewrite ``attr_<head>`` and its confidence."""
    from features.attributes.grouping import pool_probabilities

    rows = np.flatnonzero(ok)
    if not kept or not len(rows):
        return
    g = [groups[i] for i in rows]
    pooled = pool_probabilities({h: p[rows] for h, p in kept.items()}, g, list(kept))
    for h, p in pooled.items():
        classes = np.array(model.taxonomy_.classes(h), dtype=object)
        cols[f"attr_{h}"][rows] = classes[p.argmax(1)]
        cols[f"attr_{h}_conf"][rows] = p.max(1)


def _blocks(idx: np.ndarray, size: int) -> list[np.ndarray]:
    return [idx[s:s + size] for s in range(0, len(idx), size)]


def _keypoint_block(job: tuple):
    """Detector output (xy, vis, conf) for one batch, in the image files' frame:
    ``job`` = (model, paths, categories, max_side).

    The images are shrunk to ``max_side`` first, as for every other step: a batch of
    full-size phone photos (6000 x 8000: 144 MB each decoded) held ~9 GB at 64 a batch,
    for a detector that sees 160 x 112 pixels.
    """
    model, block_paths, block_cats, max_side = job
    images = [load_rgb(p, max_side=max_side) for p in block_paths]
    xy, vis, conf = model.predict(images, block_cats)
    xy = np.stack([_keypoints_in_frame(p, im, pxy, pvis, to_file=True)
                   for p, im, pxy, pvis in zip(block_paths, images, xy, vis)]) \
        if len(images) else np.asarray(xy)
    return xy, vis, conf


def _attribute_part(job: tuple):
    model, part_paths, part_ok, max_side, batch_size, keep, kp, desc = job
    return _attribute_outputs(model, part_paths, part_ok, max_side, batch_size, False, keep,
                              kp, descriptors=desc)


def _attribute_outputs_parts(model, paths, ok, max_side: int, batch_size: int, executor,
                             part_size: int, keep: tuple = (), keypoints: tuple | None = None,
                             desc_cache: str | os.PathLike | None = None):
    """:func:`_attribute_outputs` on item partitions through ``executor``, joined.

    Only items with a usable image are sent (in partitions of ``part_size``); the
    others get what :func:`_attribute_outputs` gives them ("" / NaN / a zero
    embedding) here. A table-only catalogue of a million items would otherwise be
    ~15,000 tasks that carry nothing to the network.  A model with fused descriptor
    heads gets each part's rows of the table that ``desc_cache`` holds for these
    image paths (the attribute stage's); without one, each part measures its own.
    """
    n = len(paths)
    todo = np.flatnonzero(np.asarray(ok, bool))
    blocks = _blocks(todo, part_size)
    desc = None       # catalogue-row aligned, like keypoints
    if getattr(model, "fused_heads", None) and desc_cache is not None and len(todo):
        from features.attributes.descriptors import cached_descriptors

        table = cached_descriptors([paths[i] for i in todo], desc_cache)
        if table is not None:
            desc = np.full((n, table.shape[1]), np.nan, np.float32)
            desc[todo] = table
    parts = executor.map(_attribute_part, [(model, [paths[i] for i in idx],
                                            np.ones(len(idx), bool), max_side, batch_size,
                                            keep, None if keypoints is None else
                                            (keypoints[0][idx], keypoints[1][idx]),
                                            None if desc is None else desc[idx])
                                           for idx in blocks])
    cols: dict[str, np.ndarray] = {}
    if parts:
        for k, v in parts[0][0].items():
            full = np.full(n, "", dtype=object) if v.dtype == object else np.full(n, np.nan)
            for idx, part in zip(blocks, parts):
                full[idx] = part[0][k]
            cols[k] = full
    else:  # no usable image: the columns still exist, as in the local path
        for h in model.taxonomy_.names:
            cols[f"attr_{h}"] = np.full(n, "", dtype=object)
            cols[f"attr_{h}_conf"] = np.full(n, np.nan)
    kept = {}
    for h in keep:
        kept[h] = np.full((n, len(model.taxonomy_.classes(h))), np.nan, np.float32)
        for idx, part in zip(blocks, parts):
            kept[h][idx] = part[2][h]
    dims = [p[1].shape[1] for p in parts if p[1] is not None]
    emb = None
    if dims:
        emb = np.zeros((n, dims[0]), np.float32)
        for idx, (_, z, _) in zip(blocks, parts):
            if z is not None:
                emb[idx] = z
    return cols, emb, kept


def extract_features(catalog: pd.DataFrame, image_root: str | os.PathLike | None,
                     out_dir: str | os.PathLike, attribute_model=None, keypoint_model=None,
                     progress: bool = True, batch_size: int = 64, *, workers: int = 2,
                     chunk_size: int = 64, max_side: int = 512, executor=None,
                     groups=None, pooled_heads=(),
                     descriptor_cache: str | os.PathLike | None = None,
                     content_index: ContentHashes | None = None,
                     fresh: bool = False) -> dict:
    """Extract the features of every item of ``catalog`` into ``out_dir``.

    Parameters
    ----------
    catalog : DataFrame
        Canonical catalogue (``item_id``, ``category``, ``subcategory``,
        ``image_path``). Every image is opened: one that is missing or unreadable
        flags its row (``image_ok`` is not consulted).
    image_root : path or None
        What relative ``image_path`` values are relative to.
    out_dir : path
        Folder that receives ``features.parquet``, ``keypoints.csv``,
        ``keypoint_confidence.parquet``, ``embeddings.npy`` (with a model) and
        ``parts/``.
    attribute_model : features.attributes.AttributeModel, optional
        Adds ``attr_<head>``/``attr_<head>_conf`` columns and the embeddings.
    keypoint_model : optional
        A trained detector with ``predict(images, categories) -> (xy, vis, conf)``
        on batches; used for apparel instead of the silhouette estimator.
    groups, pooled_heads : sequence, optional
        Group key per catalogue row (colour variants of one garment share it) and the
        attribute heads to pool over each group (:mod:`features.attributes.grouping`).
    descriptor_cache : path, optional
        Folder of cached full-resolution descriptor tables
        (:func:`features.attributes.descriptors.descriptor_table`) for a model with
        fused heads: the attribute stage leaves the catalogue's there, so they are not
        measured twice (about 115 s on MANGO).
    content_index : features.files.ContentHashes, optional
        The images' content hashes that name the part files' folder (the bundle's,
        so a rerun hashes no image again; None: the process's in-memory index).
    fresh : bool
        Compute every part again, replacing the part files of an earlier run with
        the same signature rather than reusing them (the stage's ``--force``: a rerun
        asked for is a rerun, not a re-assembly of what the last one cached).
    progress : bool
        tqdm progress bars on stderr.
    batch_size : int
        Images per attribute-network (and detector) batch.
    workers : int
        Processes for the classical part (used from 200 items on).
    chunk_size : int
        Items per resumable part file.
    max_side : int
        Images are shrunk to this longer side before any processing.
    executor : optional
        Runs the chunks elsewhere: ``executor.map(func, jobs)`` returns
        ``[func(job) for job in jobs]`` (the Dask build passes a
        :class:`recommender.distributed.DaskExecutor`; the models are then
        handles that load once per worker). The same chunk functions run.

    Returns
    -------
    dict
        Summary metrics: counts, failures (with up to 10 examples), timings,
        mask and keypoint statistics, whether embeddings were written.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> cat = pd.DataFrame({"item_id": ["a"], "category": ["top"], "subcategory": ["x"],
    ...                     "image_path": ["missing.jpg"]})
    >>> s = extract_features(cat, tempfile.mkdtemp(), tempfile.mkdtemp(), progress=False)
    >>> s["n_items"], s["n_failed"]
    (1, 1)
    """
    from tqdm import tqdm

    for c in ("item_id", "category", "image_path"):
        if c not in catalog.columns:
            raise InputError(f"catalogue has no column {c!r}", field=c)
    for name, v in (("workers", workers), ("chunk_size", chunk_size), ("max_side", max_side),
                    ("batch_size", batch_size)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}", field=name,
                             value=v)
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(image_root) if image_root else None
    ids = catalog["item_id"].astype(str).tolist()
    subs = (catalog["subcategory"].astype(str).tolist() if "subcategory" in catalog.columns
            else [""] * len(ids))
    paths = [_resolve(p, root) for p in catalog["image_path"].tolist()]
    items = list(zip(ids, paths, catalog["category"].astype(str).tolist(), subs))
    settings = {"max_side": int(max_side), "chunk_size": int(chunk_size)}
    sig = _signature(items, settings, content_index)
    parts_dir = out / "parts" / sig
    with_image = [k for k, it in enumerate(items) if it[1] is not None]
    no_image = [k for k, it in enumerate(items) if it[1] is None]
    image_items = [items[k] for k in with_image]
    chunks = [image_items[s:s + chunk_size] for s in range(0, len(image_items), chunk_size)]
    part_paths = [parts_dir / f"part_{i:06d}.parquet" for i in range(len(chunks))]
    no_image_part = parts_dir / "no_image.parquet"
    if no_image and (fresh or not no_image_part.is_file()):
        _atomic_parquet(_no_image_rows([items[k] for k in no_image]), no_image_part)
    todo = [i for i, p in enumerate(part_paths) if fresh or not p.is_file()]
    resumed = len(chunks) - len(todo)
    bar = tqdm(total=len(image_items), desc="features", file=sys.stderr, disable=not progress,
               initial=sum(len(chunks[i]) for i in range(len(chunks)) if i not in set(todo)))
    jobs = [(i, chunks[i], int(max_side), str(part_paths[i])) for i in todo]
    n_proc = int(workers) if (workers > 1 and len(items) >= MIN_ITEMS_FOR_WORKERS
                              and len(jobs) > 1) else 1
    t_classical = time.perf_counter()
    if executor is not None:
        n_proc = int(getattr(executor, "n_workers", 1))
        for _, n in executor.map(_run_chunk, jobs):
            bar.update(n)
    elif n_proc > 1:
        import multiprocessing as mp

        # spawn, not fork: the parent may hold torch's thread pools.
        with mp.get_context("spawn").Pool(n_proc) as pool:
            for _, n in pool.imap_unordered(_run_chunk, jobs):
                bar.update(n)
    else:
        for job in jobs:
            _, n = _run_chunk(job)
            bar.update(n)
    bar.close()
    t_classical = time.perf_counter() - t_classical

    frames = [pd.read_parquet(p) for p in part_paths]
    if no_image:
        frames.append(pd.read_parquet(no_image_part))
    df = pd.concat(frames, ignore_index=True) if frames \
        else pd.DataFrame(columns=list(BASE_COLUMNS) + _KP_COLS)
    if no_image and with_image:  # back to catalogue order
        where = np.empty(len(items), np.int64)
        where[np.r_[with_image, no_image]] = np.arange(len(items))
        df = df.iloc[where].reset_index(drop=True)
    if list(df["item_id"]) != ids:
        raise MixmatchError("part files do not match the catalogue order; delete "
                            f"{parts_dir} and re-run")
    ok = df["feat_ok"].to_numpy(bool)

    # -- keypoints from a trained detector, where one is given ------------------
    if keypoint_model is not None:
        kcats = df["kp_category"].to_numpy(object)
        sel = np.nonzero(ok & (kcats != ""))[0]
        jobs = [(keypoint_model, [paths[i] for i in idx], [kcats[i] for i in idx],
                 int(max_side)) for idx in _blocks(sel, batch_size)]
        results = executor.map(_keypoint_block, jobs) if executor is not None else \
            map(_keypoint_block, jobs)
        for idx, (xy, vis, conf) in zip(_blocks(sel, batch_size), results):
            for j, i in enumerate(idx):
                for k in range(24):
                    df.at[i, f"kp_x_{k}"], df.at[i, f"kp_y_{k}"] = xy[j, k]
                    df.at[i, f"kp_v_{k}"], df.at[i, f"kp_c_{k}"] = vis[j, k], conf[j, k]
                kxy = np.asarray(xy[j], float)
                kvis = np.asarray(vis[j])
                for name, v in shape_features(kxy, kvis, kcats[i]).items():
                    df.at[i, name] = v
                pts = [KEYPOINT_INDEX[n] for n in CATEGORY_KEYPOINTS[kcats[i]]]
                df.at[i, "kp_conf"] = float(np.mean(np.asarray(conf[j])[pts]))
                df.at[i, "kp_method"] = "heatmap"

    # -- attributes and embeddings ---------------------------------------------
    t_attr = time.perf_counter()
    emb = None
    attr_cols: dict = {}
    keep = tuple(pooled_heads) if groups is not None else ()
    kept: dict = {}
    kp_arrays = None
    if attribute_model is not None and getattr(attribute_model, "region_kind", None) == "neck":
        # The network's neck crop and geometry come from these keypoints (detector
        # or silhouette), in the image files' frame.
        kp_arrays = (np.stack([df[[f"kp_x_{i}" for i in range(24)]].to_numpy(float),
                               df[[f"kp_y_{i}" for i in range(24)]].to_numpy(float)], -1),
                     np.nan_to_num(df[[f"kp_v_{i}" for i in range(24)]].to_numpy(float),
                                   nan=-1).astype(int))
    if attribute_model is not None and executor is not None:
        attr_cols, emb, kept = _attribute_outputs_parts(
            attribute_model, paths, ok, int(max_side), int(batch_size), executor,
            max(int(chunk_size), int(batch_size)), keep, kp_arrays,
            desc_cache=descriptor_cache)
    elif attribute_model is not None:
        attr_cols, emb, kept = _attribute_outputs(attribute_model, paths, ok, int(max_side),
                                                  int(batch_size), progress, keep, kp_arrays,
                                                  desc_workers=int(workers),
                                                  desc_cache=descriptor_cache)
    if kept:
        _pool_attribute_columns(attribute_model, attr_cols, kept, list(groups),
                                np.asarray(ok, bool))
    t_attr = time.perf_counter() - t_attr

    table = df[list(BASE_COLUMNS)].copy()
    for k, v in attr_cols.items():
        table[k] = v
    table["feat_ok"] = table["feat_ok"].astype(bool)
    table["feat_error"] = table["feat_error"].fillna("").astype(str)
    for c in ("mask_method", "colour_group", "kp_category", "kp_method"):
        table[c] = table[c].fillna("").astype(str)
    _atomic_parquet(table, out / "features.parquet")
    if emb is not None:
        with atomic_files(out / "embeddings.npy") as (tmp,):
            np.save(tmp, emb.astype(np.float32))
    elif (out / "embeddings.npy").exists():
        os.unlink(out / "embeddings.npy")  # a stale file would be row-misaligned

    # -- keypoint files --------------------------------------------------------
    from features.fashionai.io import keypoints_from_arrays, write_keypoints_csv

    has_kp = ok & (table["kp_category"].to_numpy(object) != "")
    kidx = np.nonzero(has_kp)[0]
    xy = np.stack([df[[f"kp_x_{i}" for i in range(24)]].to_numpy(float),
                   df[[f"kp_y_{i}" for i in range(24)]].to_numpy(float)], axis=-1)
    vis = np.nan_to_num(df[[f"kp_v_{i}" for i in range(24)]].to_numpy(float), nan=-1)
    conf = np.nan_to_num(df[[f"kp_c_{i}" for i in range(24)]].to_numpy(float), nan=0.0)
    image_ids = [str(catalog["image_path"].iloc[i]) for i in kidx]
    kcats = [table["kp_category"].iloc[i] for i in kidx]
    xy_k = np.where(vis[kidx][..., None] >= 0, np.round(xy[kidx]), -1).astype(int)
    kdf = keypoints_from_arrays(image_ids, kcats, xy_k, vis[kidx].astype(int))
    with atomic_files(out / "keypoints.csv") as (tmp,):
        write_keypoints_csv(kdf, tmp)
    cdf = pd.DataFrame({"item_id": [ids[i] for i in kidx], "image_id": image_ids,
                        "image_category": kcats,
                        "kp_method": [table["kp_method"].iloc[i] for i in kidx]})
    for k, name in enumerate(KEYPOINT_NAMES):
        cdf[f"conf_{name}"] = conf[kidx, k] if len(kidx) else np.zeros(0)
    _atomic_parquet(cdf, out / "keypoint_confidence.parquet")

    n_done = sum(len(chunks[i]) for i in todo)
    failed = table.loc[~table["feat_ok"], ["item_id", "feat_error"]]
    elapsed = time.perf_counter() - t0
    q = table.loc[table["feat_ok"], "mask_quality"]
    summary = {
        "n_items": len(table), "n_failed": int(len(failed)),
        "failed_examples": [f"{a}: {b}" for a, b in failed.head(10).itertuples(index=False)],
        "parts": len(chunks), "parts_resumed": resumed, "workers": n_proc,
        "seconds": round(elapsed, 2), "seconds_classical": round(t_classical, 2),
        "seconds_attributes": round(t_attr, 2),
        "images_per_second": (round(n_done / max(t_classical, 1e-9), 2) if n_done else None),
        "mask_quality_mean": round(float(q.mean()), 4) if len(q) else None,
        "mask_low_quality": int((q < 0.5).sum()),
        "mask_methods": table.loc[table["feat_ok"], "mask_method"].value_counts().to_dict(),
        "n_keypoint_items": int(len(kidx)),
        "keypoint_method": (table.loc[has_kp, "kp_method"].value_counts().to_dict()),
        "attributes": (sorted(k for k in attr_cols if not k.endswith("_conf"))
                       if attr_cols else []),
        "embedding": (f"{emb.shape[1]}-d from the attribute network" if emb is not None
                      else "absent: no attribute model (models/attributes.pt) in the bundle"),
    }
    return summary


# -- pipeline stage ------------------------------------------------------------
def _stage_settings(ctx) -> dict:
    # every setting is a count of at least 1 (extract_features would refuse the rest,
    # but only once the stage had started)
    return {**DEFAULTS, **check_settings("features", ctx.stage_config("features"),
                                         {k: type(v) for k, v in DEFAULTS.items()},
                                         at_least=dict.fromkeys(DEFAULTS, 1))}


#: Checked before any stage of a build starts (recommender.pipeline).
check_config = _stage_settings


#: The image root says where the images are; their content is in ``images``
#: (:meth:`recommender.bundle.Bundle.catalog_images`): moved or copied elsewhere with
#: the same bytes, the stage is not run again (recommender.pipeline.data_moved).
LOCATION_INPUTS = ("image_root",)
#: It reads the images: refused while they are not where the bundle says (its image
#: folder moved away or unmounted), not run on none
#: (recommender.pipeline.images_refusal).
READS_IMAGES = True


def stage_inputs(ctx) -> dict:
    """The catalogue, image root, settings, code version and model files."""
    from features.files import file_hash

    b = ctx.bundle
    inputs = {"version": FEATURES_VERSION, "settings": _stage_settings(ctx),
              "image_root": str(b.image_root), "attribute_pooling": 1,
              "images": b.catalog_images()}
    for rel in ("catalog.parquet", "models/attributes.pt", "models/attributes.json",
                "models/attributes_split.parquet", "models/keypoints.pt"):
        p = b.path(rel)
        inputs[rel] = file_hash(p) if p.is_file() else None
    return inputs


def _load(ctx, loader, pt):
    """``loader(models dir)`` here, or, on an executor, a handle loaded once per worker."""
    ex = getattr(ctx, "executor", None)
    if ex is None:
        return loader(ctx.bundle.path("models"))
    from features.files import file_hash

    return ex.cached(loader, ctx.bundle.path("models"), stamp=file_hash(pt))


def _load_attribute_model(ctx):
    pt = ctx.bundle.path("models", "attributes.pt")
    if not pt.is_file():
        return None, "no models/attributes.pt in the bundle"
    try:
        from features.attributes import AttributeModel
    except ModuleNotFoundError as exc:
        return None, f"features.attributes is not available ({exc})"
    return _load(ctx, AttributeModel.load, pt), "models/attributes.pt"


def _load_keypoint_model(ctx):
    pt = ctx.bundle.path("models", "keypoints.pt")
    if not pt.is_file():
        return None, "silhouette (no models/keypoints.pt)"
    try:
        from features.keypoints import heatmap
    except ModuleNotFoundError:
        return None, "silhouette (features.keypoints.heatmap not available)"
    loader = getattr(heatmap, "load_detector", None)
    if loader is None:
        return None, "silhouette (heatmap module has no load_detector)"
    return _load(ctx, loader, pt), "heatmap (models/keypoints.pt)"


def _attribute_pooling(bundle, catalog, model) -> tuple[list | None, list[str]]:
    """Group keys and garment-level heads when the catalogue has ``model_code`` and the
    attribute stage left its split: the heads are read from the *training* products,
    as the attributes stage's own evaluation does."""
    import pandas as pd

    from features.attributes.grouping import GROUP_COLUMN, garment_level_heads

    split = bundle.path("models", "attributes_split.parquet")
    if model is None or GROUP_COLUMN not in catalog.columns or not split.is_file():
        return None, []
    sp = read_bundle_file(split, pd.read_parquet)
    train_ids = set(sp.loc[sp["split"] == "train", "item_id"].astype(str))
    names = [h for h in model.taxonomy_.names if h in catalog.columns]
    train = catalog[catalog["item_id"].astype(str).isin(train_ids)]
    heads = garment_level_heads(train[names], train[GROUP_COLUMN].tolist()) if names else []
    return (catalog[GROUP_COLUMN].tolist(), heads) if heads else (None, [])


def run_stage(ctx) -> dict:
    """The ``features`` stage: extract into ``<bundle>/features/``."""
    import pandas as pd

    cfg = _stage_settings(ctx)
    b = ctx.bundle
    cpath = b.path("catalog.parquet")
    if not cpath.is_file():
        from features.exceptions import BundleError
        raise BundleError(f"{cpath} not found: run the ingest stage first")
    catalog = read_bundle_file(cpath, pd.read_parquet)   # named when cut short
    amodel, asrc = _load_attribute_model(ctx)
    kmodel, ksrc = _load_keypoint_model(ctx)
    ctx.log(f"[features] {len(catalog)} items; attributes: {asrc}; keypoints: {ksrc}")
    groups, pooled = _attribute_pooling(b, catalog, amodel)
    if pooled:
        ctx.log(f"[features] attributes {', '.join(pooled)} pooled over colour variants "
                f"(catalogue column model_code)")
    summary = extract_features(catalog, b.image_root, b.path(FEATURES_DIR),
                               attribute_model=amodel, keypoint_model=kmodel,
                               progress=True, batch_size=int(cfg["batch_size"]),
                               workers=int(cfg["workers"]), chunk_size=int(cfg["chunk_size"]),
                               max_side=int(cfg["max_side"]),
                               executor=getattr(ctx, "executor", None),
                               groups=groups, pooled_heads=pooled,
                               descriptor_cache=b.path("cache"),
                               content_index=b.content_hashes(), fresh=ctx.force)
    summary["attributes_pooled"] = list(pooled)
    if summary["n_failed"]:
        ctx.log(f"[features] {summary['n_failed']} of {summary['n_items']} items failed "
                f"(feat_ok = False), e.g. {summary['failed_examples'][:3]}")
    if getattr(ctx, "executor", None) is not None:  # one model load per worker, visibly
        summary["worker_model_loads"] = ctx.executor.worker_loads()
    summary["attribute_source"] = asrc
    summary["keypoint_source"] = ksrc
    outputs = [FEATURES_TABLE, KEYPOINTS_CSV, KEYPOINT_CONFIDENCE]
    if b.path(EMBEDDINGS).is_file():
        outputs.append(EMBEDDINGS)
    return {"outputs": outputs, "metrics": summary}
