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
from pathlib import Path
from typing import IO, Iterable

import numpy as np
import pandas as pd

from features.exceptions import SchemaError
from features.fashionai.schema import (ATTRIBUTE_TASKS, KEYPOINT_CATEGORIES,
                                       KEYPOINT_NAMES, LABEL_MAYBE, LABEL_NO, LABEL_YES)

KEYPOINT_HEADER = ("image_id", "image_category") + KEYPOINT_NAMES


def _open_text(src, mode="r"):
    if isinstance(src, (str, os.PathLike)):
        return open(src, mode, newline="", encoding="utf-8")
    return src


def read_keypoints_csv(src: str | os.PathLike | IO[str]) -> pd.DataFrame:
    """Read a FashionAI keypoint CSV into the wide in-memory table (see module doc).

    Raises :class:`SchemaError` naming the line and cell of a malformed value.
    """
    fh = _open_text(src)
    try:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != KEYPOINT_HEADER:
            raise SchemaError(f"keypoint CSV header must be {','.join(KEYPOINT_HEADER[:3])},..."
                              f" (26 columns); got {header!r:.200}", field="header")
        ids, cats, rows = [], [], []
        for lineno, rec in enumerate(reader, start=2):
            if not rec:
                continue
            if len(rec) != len(KEYPOINT_HEADER):
                raise SchemaError(f"line {lineno}: expected {len(KEYPOINT_HEADER)} cells, "
                                  f"got {len(rec)}", field=f"line {lineno}")
            if rec[1] not in KEYPOINT_CATEGORIES:
                raise SchemaError(f"line {lineno}: unknown image_category {rec[1]!r}",
                                  field="image_category", value=rec[1],
                                  allowed=KEYPOINT_CATEGORIES)
            vals = []
            for name, cell in zip(KEYPOINT_NAMES, rec[2:]):
                parts = cell.split("_")
                try:
                    x, y, v = (int(p) for p in parts)
                except ValueError:
                    raise SchemaError(f"line {lineno}: keypoint {name} cell {cell!r} is not "
                                      "x_y_visibility", field=name, value=cell) from None
                if v not in (-1, 0, 1):
                    raise SchemaError(f"line {lineno}: keypoint {name} visibility {v} not in "
                                      "-1, 0, 1", field=name, value=cell)
                vals.extend((x, y, v))
            ids.append(rec[0])
            cats.append(rec[1])
            rows.append(vals)
    finally:
        if fh is not src:
            fh.close()
    cols = [f"{n}_{k}" for n in KEYPOINT_NAMES for k in "xyv"]
    arr = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(cols))
    df = pd.DataFrame(arr, columns=cols)
    df.insert(0, "image_category", cats)
    df.insert(0, "image_id", ids)
    return df


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
    for j, n in enumerate(KEYPOINT_NAMES):
        absent = vis[:, j] == -1
        data[f"{n}_x"] = np.where(absent, -1, np.rint(xy[:, j, 0])).astype(np.int64)
        data[f"{n}_y"] = np.where(absent, -1, np.rint(xy[:, j, 1])).astype(np.int64)
        data[f"{n}_v"] = vis[:, j].astype(np.int64)
    return pd.DataFrame(data)


def write_keypoints_csv(df: pd.DataFrame, dst: str | os.PathLike | IO[str]) -> None:
    """Write the wide table in the FashionAI keypoint CSV format (inverse of read)."""
    fh = _open_text(dst, "w")
    try:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(KEYPOINT_HEADER)
        cols = [[df[f"{n}_{k}"].to_numpy() for k in "xyv"] for n in KEYPOINT_NAMES]
        ids = df["image_id"].to_numpy()
        cats = df["image_category"].to_numpy()
        for i in range(len(df)):
            w.writerow([ids[i], cats[i]] + [f"{c[0][i]}_{c[1][i]}_{c[2][i]}" for c in cols])
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
    finally:
        if fh is not src:
            fh.close()
    return pd.DataFrame(rows, columns=["image_path", "task", "labels"])


def write_attribute_file(df: pd.DataFrame, dst: str | os.PathLike | IO[str]) -> None:
    """Write rows ``image_path,task,labels`` with no header (inverse of read)."""
    fh = _open_text(dst, "w")
    try:
        w = csv.writer(fh, lineterminator="\n")
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
