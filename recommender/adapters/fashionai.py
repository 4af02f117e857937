"""FashionAI label folders: read them, count them, write them as Parquet tables.

A FashionAI folder (the published layout, labels only)::

    <data>/keypoints/*.csv     24-keypoint CSVs (train.csv: 63,765 annotated images)
    <data>/attributes/*.csv    attribute label files, ``image_path,task,labels``
                               (16 files, <task>_{train,test}.csv: 89,683 rows)

The formats themselves are read and written by :mod:`features.fashionai.io`; this
module walks a folder, reports counts per category and per task, and writes the
normalised tables ``keypoints.parquet`` (the wide table: ``image_id``,
``image_category``, ``<name>_x/_y/_v``, plus ``file``) and ``attributes.parquet``
(``image_path, task, labels, file``). It does not produce a catalogue: FashionAI
publishes labels without products, so ``mixmatch ingest --source fashionai`` stops
at these tables.

Examples
--------
>>> import tempfile, pathlib
>>> from features.fashionai.io import write_attribute_file
>>> d = pathlib.Path(tempfile.mkdtemp()); (d / "attributes").mkdir()
>>> write_attribute_file(pd.DataFrame({"image_path": ["Images/p/a.jpg"],
...     "task": ["pant_length_labels"], "labels": ["nnnnny"]}),
...     d / "attributes" / "pant_length_labels_train.csv")
>>> labels = read_fashionai(d)
>>> labels.counts()["attributes"]["per_task"]
{'pant_length_labels': 1}
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from features.exceptions import NotFoundError, SchemaError
from features.fashionai.io import read_attribute_file, read_keypoints_csv
from features.fashionai.schema import ATTRIBUTE_TASKS, KEYPOINT_CATEGORIES, LABEL_MAYBE

KEYPOINTS_DIR = "keypoints"
ATTRIBUTES_DIR = "attributes"
KEYPOINTS_TABLE = "keypoints.parquet"
ATTRIBUTES_TABLE = "attributes.parquet"


@dataclasses.dataclass
class FashionAILabels:
    """The labels of one FashionAI folder; either table may be empty."""

    root: Path
    keypoints: pd.DataFrame
    attributes: pd.DataFrame

    def counts(self) -> dict:
        """Row counts per keypoint category and per attribute task (and per file)."""
        kp, at = self.keypoints, self.attributes
        return {
            "keypoints": {
                "rows": int(len(kp)),
                "per_category": {c: int(n) for c, n in kp["image_category"]
                                 .value_counts().reindex(KEYPOINT_CATEGORIES).dropna()
                                 .items()} if len(kp) else {},
                "per_file": {f: int(n) for f, n in kp["file"].value_counts()
                             .sort_index().items()} if len(kp) else {},
            },
            "attributes": {
                "rows": int(len(at)),
                "per_task": {t: int(n) for t, n in at["task"].value_counts()
                             .reindex(list(ATTRIBUTE_TASKS)).dropna().items()}
                if len(at) else {},
                "per_file": {f: int(n) for f, n in at["file"].value_counts()
                             .sort_index().items()} if len(at) else {},
                "rows_with_maybe": int(at["labels"].str.contains(LABEL_MAYBE).sum())
                if len(at) else 0,
            },
        }


def _csvs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.csv")) if folder.is_dir() else []


def read_fashionai(root: str | os.PathLike) -> FashionAILabels:
    """Read every keypoint and attribute label file under a FashionAI folder.

    Raises :class:`NotFoundError` when the folder holds neither
    ``keypoints/*.csv`` nor ``attributes/*.csv``, and :class:`SchemaError` naming
    the file and line of a malformed row.
    """
    root = Path(root)
    kp_files = _csvs(root / KEYPOINTS_DIR)
    at_files = _csvs(root / ATTRIBUTES_DIR)
    if not kp_files and not at_files:
        raise NotFoundError(f"no FashionAI labels under {root}: expected "
                            f"{KEYPOINTS_DIR}/*.csv and/or {ATTRIBUTES_DIR}/*.csv",
                            field="data", value=str(root))
    kp_frames, at_frames = [], []
    for p in kp_files:
        kp_frames.append(_read(read_keypoints_csv, p).assign(file=p.name))
    for p in at_files:
        at_frames.append(_read(read_attribute_file, p).assign(file=p.name))
    kp = (pd.concat(kp_frames, ignore_index=True) if kp_frames
          else pd.DataFrame(columns=["image_id", "image_category", "file"]))
    at = (pd.concat(at_frames, ignore_index=True) if at_frames
          else pd.DataFrame(columns=["image_path", "task", "labels", "file"]))
    return FashionAILabels(root=root, keypoints=kp, attributes=at)


def _read(fn, path: Path) -> pd.DataFrame:
    try:
        return fn(path)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}", field=exc.field, value=exc.value) from exc


def write_tables(labels: FashionAILabels, out: str | os.PathLike) -> list[str]:
    """Write ``keypoints.parquet`` and ``attributes.parquet`` into ``out``.

    Returns the names written. Reading them back with :func:`read_tables` gives
    the same rows.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in ((KEYPOINTS_TABLE, labels.keypoints),
                     (ATTRIBUTES_TABLE, labels.attributes)):
        df.to_parquet(out / name, index=False)
        written.append(name)
    return written


def read_tables(folder: str | os.PathLike) -> FashionAILabels:
    """Read the Parquet tables written by :func:`write_tables`."""
    folder = Path(folder)
    for name in (KEYPOINTS_TABLE, ATTRIBUTES_TABLE):
        if not (folder / name).is_file():
            raise NotFoundError(f"{folder / name} not found", field="path",
                                value=str(folder / name))
    return FashionAILabels(root=folder,
                           keypoints=pd.read_parquet(folder / KEYPOINTS_TABLE),
                           attributes=pd.read_parquet(folder / ATTRIBUTES_TABLE))


def format_counts(counts: dict) -> str:
    """The counts of :meth:`FashionAILabels.counts` as a few lines of text."""
    kp, at = counts["keypoints"], counts["attributes"]
    lines = [f"keypoint rows: {kp['rows']}"]
    lines += [f"  {c:<24} {n:>8}" for c, n in kp["per_category"].items()]
    lines.append(f"attribute rows: {at['rows']} ({at['rows_with_maybe']} with an "
                 "'m' (maybe) label)")
    lines += [f"  {t:<24} {n:>8}" for t, n in at["per_task"].items()]
    return "\n".join(lines)


def ingest_fashionai(data: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Read a FashionAI folder, write its tables into ``out``, return the counts."""
    labels = read_fashionai(data)
    write_tables(labels, out)
    return labels.counts()
