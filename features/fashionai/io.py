"""Read and write the FashionAI label files exactly as published.

Keypoints CSV: header ``image_id,image_category,<24 keypoint names>``; each
keypoint cell is ``x_y_v`` (integers; ``v`` 1 visible, 0 occluded, -1 absent).
Attribute files: no header, rows ``image_path,task,labels`` where ``labels`` has
one character per class of the task: ``y``, ``m`` (maybe) or ``n``.

In memory a keypoint table is a DataFrame with ``image_id``, ``image_category``
and, per keypoint name, three int columns ``<name>_x``, ``<name>_y``, ``<name>_v``.

Examples
--------
>>> import io as _io
>>> text = "image_id,image_category," + ",".join(KEYPOINT_NAMES) + "\\n"
>>> text += "a.jpg,skirt," + ",".join(["-1_-1_-1"] * 15 + ["10_20_1"] + ["-1_-1_-1"] * 8) + "\\n"
>>> df = read_keypoints_csv(_io.StringIO(text))
>>> int(df.loc[0, "waistband_left_x"]), int(df.loc[0, "waistband_left_v"])
(10, 1)
"""
from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path
from typing import IO, Iterable

import numpy as np
import pandas as pd

from features.exceptions import SchemaError
from features.fashionai.schema import (ATTRIBUTE_TASKS, KEYPOINT_CATEGORIES,
                                       KEYPOINT_NAMES, LABEL_MAYBE, LABEL_NO, LABEL_YES)

KEYPOINT_HEADER = ("image_id", "image_category") + KEYPOINT_NAMES


#: A UTF-8 byte-order mark, as Excel and other Windows tools put before "CSV UTF-8".
_BOM = "\ufeff"


def _open_text(src, mode="r"):
    if isinstance(src, (str, os.PathLike)):
        # utf-8-sig reads files with or without a byte-order mark alike.
        return open(src, mode, newline="", encoding="utf-8-sig" if mode == "r" else "utf-8")
    return src


def _not_text(src, exc: UnicodeDecodeError) -> SchemaError:
    name = str(src) if isinstance(src, (str, os.PathLike)) else "the input"
    return SchemaError(f"{name} is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r}"
                       f" at offset {exc.start}); save it as CSV UTF-8", field="encoding",
                       value=name)


def read_keypoints_csv(src: str | os.PathLike | IO[str]) -> pd.DataFrame:
    """Read a FashionAI keypoint CSV into the wide in-memory table (see module doc).

    Raises :class:`SchemaError` naming the line and cell of a malformed value, after
    the file's path when ``src`` is one (``mixmatch evaluate`` reads two files alike).
    """
    where = f"{src}: " if isinstance(src, (str, os.PathLike)) else ""
    fh = _open_text(src)
    try:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header:
            header[0] = header[0].removeprefix(_BOM)    # an open stream keeps the BOM
        if header is None or tuple(h.strip() for h in header) != KEYPOINT_HEADER:
            raise SchemaError(f"{where}keypoint CSV header must be "
                              f"{','.join(KEYPOINT_HEADER[:3])},..."
                              f" (26 columns); got {header!r:.200}", field="header")
        records = [rec for rec in reader]
    except UnicodeDecodeError as exc:
        raise _not_text(src, exc) from None
    finally:
        if fh is not src:
            fh.close()
    cols = [f"{n}_{k}" for n in KEYPOINT_NAMES for k in "xyv"]
    arr = _parse_cells_fast(records)
    if arr is None:
        # Something is off: the cell-by-cell parser names the line and cell.
        arr = _parse_cells_checked(records, where)
    keep = [rec for rec in records if rec]
    df = pd.DataFrame(arr, columns=cols)
    df.insert(0, "image_category", [rec[1] for rec in keep])
    df.insert(0, "image_id", [rec[0] for rec in keep])
    return df


def _parse_cells_fast(records: list[list[str]]) -> np.ndarray | None:
    """All ``x_y_v`` cells as an (N, 72) int array via pandas' C parser, or None when
    any record is not clean (the checked parser then says where and why).

    Cell-by-cell ``int()`` takes about 3 s on the 63,765 rows of train.csv; this
    path takes well under a second, which keeps the real-data tests fast.
    """
    n_cells = len(KEYPOINT_HEADER)
    keep = [rec for rec in records if rec]
    if not keep:
        return np.zeros((0, 3 * len(KEYPOINT_NAMES)), dtype=np.int64)
    if any(len(rec) != n_cells or rec[1] not in KEYPOINT_CATEGORIES for rec in keep):
        return None
    body = "\n".join("_".join(rec[2:]) for rec in keep)
    if "," in body or '"' in body:
        return None
    try:
        # a cell like inf_3_1 made pandas warn "invalid value encountered in cast" on
        # the way to its error: the checked parser names the cell instead
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            arr = pd.read_csv(io.StringIO(body.replace("_", ",")), header=None, sep=",",
                              dtype=np.int64, engine="c", na_filter=False).to_numpy()
    except (ValueError, pd.errors.ParserError):
        return None
    if arr.shape != (len(keep), 3 * len(KEYPOINT_NAMES)):
        return None
    if not np.isin(arr[:, 2::3], (-1, 0, 1)).all():
        return None
    return arr


def _parse_cells_checked(records: list[list[str]], where: str = "") -> np.ndarray:
    """The cells cell by cell; SchemaError naming ``where`` (the file), line and cell."""
    rows = []
    for lineno, rec in enumerate(records, start=2):
        if not rec:
            continue
        if len(rec) != len(KEYPOINT_HEADER):
            raise SchemaError(f"{where}line {lineno}: expected {len(KEYPOINT_HEADER)} cells, "
                              f"got {len(rec)}", field=f"line {lineno}")
        if rec[1] not in KEYPOINT_CATEGORIES:
            raise SchemaError(f"{where}line {lineno}: unknown image_category {rec[1]!r}",
                              field="image_category", value=rec[1],
                              allowed=KEYPOINT_CATEGORIES)
        vals = []
        for name, cell in zip(KEYPOINT_NAMES, rec[2:]):
            parts = cell.split("_")
            try:
                x, y, v = (int(p) for p in parts)
            except ValueError:
                raise SchemaError(f"{where}line {lineno}: keypoint {name} cell {cell!r} "
                                  "is not x_y_visibility", field=name, value=cell) from None
            if v not in (-1, 0, 1):
                raise SchemaError(f"{where}line {lineno}: keypoint {name} visibility {v} "
                                  "not in -1, 0, 1", field=name, value=cell)
            vals.extend((x, y, v))
        rows.append(vals)
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), 3 * len(KEYPOINT_NAMES))


def keypoints_to_arrays(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(N, 24, 2) float coordinates and (N, 24) int visibility from the wide table."""
    xy = np.stack([df[[f"{n}_x", f"{n}_y"]].to_numpy(dtype=float) for n in KEYPOINT_NAMES],
                  axis=1)
    vis = np.stack([df[f"{n}_v"].to_numpy(dtype=int) for n in KEYPOINT_NAMES], axis=1)
    return xy, vis


def keypoints_from_arrays(image_ids: Iterable[str], categories: Iterable[str],
                          xy: np.ndarray, vis: np.ndarray) -> pd.DataFrame:
    """Build the wide table from arrays; coordinates are rounded to integers and
    absent points (``vis == -1``) are written ``-1_-1_-1`` as in the files."""
    xy = np.asarray(xy, dtype=float)
    vis = np.asarray(vis, dtype=int)
    data = {"image_id": list(image_ids), "image_category": list(categories)}
    # A NaN would be cast to -9223372036854775808 and written as a coordinate.
    bad = (vis != -1) & ~np.isfinite(xy).all(axis=-1)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise SchemaError(f"image {data['image_id'][i]!r}: keypoint {KEYPOINT_NAMES[j]} "
                          f"(visibility {vis[i, j]}) has coordinates {tuple(xy[i, j].tolist())}"
                          f" that are not finite; {int(bad.sum())} such point(s) in all",
                          field=KEYPOINT_NAMES[j], value=tuple(xy[i, j].tolist()))
    for j, n in enumerate(KEYPOINT_NAMES):
        absent = vis[:, j] == -1
        data[f"{n}_x"] = np.where(absent, -1, np.rint(xy[:, j, 0])).astype(np.int64)
        data[f"{n}_y"] = np.where(absent, -1, np.rint(xy[:, j, 1])).astype(np.int64)
        data[f"{n}_v"] = vis[:, j].astype(np.int64)
    return pd.DataFrame(data)


#: Line ending of the published keypoint CSV (train.csv uses CRLF on every line; the
#: attribute label files use LF), so that writing reproduces the file byte for byte.
KEYPOINT_LINE_END = "\r\n"
ATTRIBUTE_LINE_END = "\n"


def write_keypoints_csv(df: pd.DataFrame, dst: str | os.PathLike | IO[str], *,
                        lineterminator: str = KEYPOINT_LINE_END) -> None:
    """Write the wide table in the FashionAI keypoint CSV format (inverse of read).

    Lines end in CRLF like the published ``train.csv`` (readers accept either).
    """
    ids = df["image_id"].astype(str)
    cats = df["image_category"].astype(str)
    special = [",", '"', "\r", "\n"]
    if not any(ids.str.contains(c, regex=False).any() or cats.str.contains(c, regex=False)
               .any() for c in special):
        # Column-wise string building: ~10x faster than a csv.writer row loop on the
        # 63,765 rows of train.csv, and the same bytes when no cell needs quoting.
        lines = ids + "," + cats
        for n in KEYPOINT_NAMES:
            lines = (lines + "," + df[f"{n}_x"].astype(str) + "_" + df[f"{n}_y"].astype(str)
                     + "_" + df[f"{n}_v"].astype(str))
        text = lineterminator.join([",".join(KEYPOINT_HEADER), *lines.tolist()])
        fh = _open_text(dst, "w")
        try:
            fh.write(text + lineterminator)
        finally:
            if fh is not dst:
                fh.close()
        return
    fh = _open_text(dst, "w")
    try:
        w = csv.writer(fh, lineterminator=lineterminator)
        w.writerow(KEYPOINT_HEADER)
        cols = [[df[f"{n}_{k}"].to_numpy() for k in "xyv"] for n in KEYPOINT_NAMES]
        ids_a = ids.to_numpy()
        cats_a = cats.to_numpy()
        for i in range(len(df)):
            w.writerow([ids_a[i], cats_a[i]] + [f"{c[0][i]}_{c[1][i]}_{c[2][i]}" for c in cols])
    finally:
        if fh is not dst:
            fh.close()


def read_attribute_file(src: str | os.PathLike | IO[str]) -> pd.DataFrame:
    """Read one FashionAI attribute label file: columns ``image_path, task, labels``.

    Each label string must have exactly one character per class of its task,
    each of ``y``, ``m``, ``n``.
    """
    fh = _open_text(src)
    try:
        rows = []
        for lineno, rec in enumerate(csv.reader(fh), start=1):
            if not rec:
                continue
            if lineno == 1:
                rec[0] = rec[0].removeprefix(_BOM)
            if len(rec) != 3:
                raise SchemaError(f"line {lineno}: expected image_path,task,labels; got "
                                  f"{len(rec)} cells", field=f"line {lineno}")
            path, task, labels = rec
            if task not in ATTRIBUTE_TASKS:
                raise SchemaError(f"line {lineno}: unknown task {task!r}", field="task",
                                  value=task, allowed=ATTRIBUTE_TASKS)
            n = len(ATTRIBUTE_TASKS[task])
            if len(labels) != n or set(labels) - {LABEL_YES, LABEL_MAYBE, LABEL_NO}:
                raise SchemaError(f"line {lineno}: label {labels!r} of task {task} must be "
                                  f"{n} characters of y/m/n", field="labels", value=labels)
            rows.append((path, task, labels))
    except UnicodeDecodeError as exc:
        raise _not_text(src, exc) from None
    finally:
        if fh is not src:
            fh.close()
    return pd.DataFrame(rows, columns=["image_path", "task", "labels"])


def write_attribute_file(df: pd.DataFrame, dst: str | os.PathLike | IO[str]) -> None:
    """Write rows ``image_path,task,labels`` with no header (inverse of read)."""
    fh = _open_text(dst, "w")
    try:
        w = csv.writer(fh, lineterminator=ATTRIBUTE_LINE_END)
        for rec in df[["image_path", "task", "labels"]].itertuples(index=False):
            w.writerow(rec)
    finally:
        if fh is not dst:
            fh.close()


def read_attribute_dir(root: str | os.PathLike) -> pd.DataFrame:
    """Read every ``*.csv`` attribute file under ``root``, adding a ``file`` column."""
    root = Path(root)
    frames = []
    for p in sorted(root.glob("*.csv")):
        df = read_attribute_file(p)
        df["file"] = p.name
        frames.append(df)
    if not frames:
        raise SchemaError(f"no attribute label files (*.csv) in {root}", field="path",
                          value=str(root))
    return pd.concat(frames, ignore_index=True)


def label_index(labels: str) -> int:
    """Index of the ``y`` class of a label string (the challenge's ground truth)."""
    return labels.index(LABEL_YES)
