"""What the attribute network predicts: an ordered set of heads, each with class names.

Two kinds of taxonomy:

* ``Taxonomy.fashionai()`` - the 8 FashionAI attribute tasks with the challenge's class
  names (:data:`features.fashionai.schema.ATTRIBUTE_TASKS`).
* ``Taxonomy.from_labels(df, columns)`` - a catalogue's own labelled fields (for MANGO:
  subcategory, product_type, colour, material), classes sorted by name.

Labels are given as a DataFrame with one column per head.  A cell is a class name, or
missing (None / NaN / "") when the head does not apply to the row: that row is then
ignored by that head's loss (masked loss).  For FashionAI heads a cell may also be the
challenge's label string (one ``y``/``m``/``n`` per class): the ``y`` class is the
target and the ``m`` ("maybe") classes are recorded in a mask.

Handling of ``m``: the challenge does not count a prediction of an ``m`` class as an
error (nor as a hit).  Training mirrors that: the ``m`` classes are *removed from the
softmax* of that row (their logits masked out), so the model is neither pushed towards
nor away from them; only the ``y`` class is the target against the ``n`` classes.

Examples
--------
>>> import pandas as pd
>>> tax = Taxonomy.from_labels(pd.DataFrame({"colour": ["RED", "BLUE", None]}), ["colour"])
>>> tax.classes("colour")
('BLUE', 'RED')
>>> t, m = tax.encode(pd.DataFrame({"colour": ["RED", ""]}))
>>> t.tolist()
[[1], [-1]]
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from features.exceptions import InputError, SchemaError
from features.fashionai.schema import ATTRIBUTE_TASKS, LABEL_MAYBE, LABEL_YES

TAXONOMY_SCHEMA = 1


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or \
        (isinstance(v, str) and v.strip() == "")


@dataclasses.dataclass(frozen=True)
class Taxonomy:
    """Ordered heads and their class names.

    Parameters
    ----------
    heads : tuple of (name, tuple of class names)
    kind : str
        "fashionai" or "catalog" (decides whether y/m/n label strings are accepted).
    """

    heads: tuple[tuple[str, tuple[str, ...]], ...]
    kind: str = "catalog"

    def __post_init__(self):
        names = [h for h, _ in self.heads]
        if not names:
            raise InputError("a taxonomy needs at least one head", field="heads")
        if len(set(names)) != len(names):
            raise InputError(f"duplicate head names in {names}", field="heads")
        for h, classes in self.heads:
            if len(classes) < 2:
                raise InputError(f"head {h!r} needs at least 2 classes, got {list(classes)}",
                                 field=h)
            if len(set(classes)) != len(classes):
                raise InputError(f"head {h!r} has duplicate class names", field=h)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def fashionai(cls, tasks: Iterable[str] | None = None) -> "Taxonomy":
        """The FashionAI attribute tasks (all 8 by default), challenge class order."""
        tasks = list(tasks) if tasks is not None else list(ATTRIBUTE_TASKS)
        for t in tasks:
            if t not in ATTRIBUTE_TASKS:
                raise InputError(f"unknown FashionAI task {t!r}", field="task", value=t,
                                 allowed=ATTRIBUTE_TASKS)
        return cls(tuple((t, tuple(ATTRIBUTE_TASKS[t])) for t in tasks), kind="fashionai")

    @classmethod
    def from_labels(cls, labels: pd.DataFrame, columns: Sequence[str],
                    min_count: int = 1) -> "Taxonomy":
        """Heads from a catalogue's labelled columns; classes are the distinct non-empty
        values seen at least ``min_count`` times, sorted.  Columns named like FashionAI
        tasks get the challenge's class list instead."""
        heads = []
        fashionai = False
        for c in columns:
            if c not in labels.columns:
                raise SchemaError(f"label column {c!r} not in the table", field=c,
                                  allowed=list(labels.columns))
            if c in ATTRIBUTE_TASKS:
                heads.append((c, tuple(ATTRIBUTE_TASKS[c])))
                fashionai = True
                continue
            vals = labels[c][~labels[c].map(_missing)].astype(str)
            counts = vals.value_counts()
            classes = tuple(sorted(counts[counts >= min_count].index))
            heads.append((c, classes))
        return cls(tuple(heads), kind="mixed" if fashionai else "catalog")

    # -- access -----------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h for h, _ in self.heads)

    def classes(self, head: str) -> tuple[str, ...]:
        for h, c in self.heads:
            if h == head:
                return c
        raise InputError(f"unknown head {head!r}", field="head", value=head,
                         allowed=self.names)

    def n_classes(self) -> dict[str, int]:
        return {h: len(c) for h, c in self.heads}

    def to_dict(self) -> dict:
        return {"schema": TAXONOMY_SCHEMA, "kind": self.kind,
                "heads": [{"name": h, "classes": list(c)} for h, c in self.heads]}

    @classmethod
    def from_dict(cls, d: dict) -> "Taxonomy":
        if d.get("schema") != TAXONOMY_SCHEMA:
            raise SchemaError(f"taxonomy schema {d.get('schema')!r}; expected "
                              f"{TAXONOMY_SCHEMA}", field="schema")
        return cls(tuple((h["name"], tuple(h["classes"])) for h in d["heads"]),
                   kind=d.get("kind", "catalog"))

    # -- encoding ---------------------------------------------------------------------
    def encode(self, labels: pd.DataFrame, *, unknown: str = "raise"
               ) -> tuple[np.ndarray, np.ndarray]:
        """Targets ``(N, H)`` int (-1 = missing) and maybe-mask ``(N, sum C)`` bool.

        ``unknown="raise"`` rejects a class name not in the taxonomy (naming it);
        ``unknown="missing"`` treats it as a missing label; ``unknown="keep"`` codes it
        as -2 (evaluation: counted, always wrong).
        """
        missing_cols = [h for h in self.names if h not in labels.columns]
        if missing_cols:
            raise SchemaError(f"labels lack column(s) {missing_cols}", field=missing_cols[0],
                              allowed=list(self.names))
        n = len(labels)
        sizes = [len(c) for _, c in self.heads]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        targets = np.full((n, len(self.heads)), -1, np.int64)
        maybe = np.zeros((n, int(offsets[-1])), bool)
        for j, (h, classes) in enumerate(self.heads):
            index = {c: k for k, c in enumerate(classes)}
            pattern = re.compile(f"^[ymn]{{{len(classes)}}}$")
            for i, v in enumerate(labels[h].tolist()):
                if _missing(v):
                    continue
                v = str(v)
                if v in index:
                    targets[i, j] = index[v]
                elif h in ATTRIBUTE_TASKS and pattern.match(v) and v.count(LABEL_YES) == 1:
                    targets[i, j] = v.index(LABEL_YES)
                    maybe[i, offsets[j]:offsets[j + 1]] = [ch == LABEL_MAYBE for ch in v]
                elif unknown == "missing":
                    continue
                elif unknown == "keep":
                    targets[i, j] = -2
                else:
                    raise InputError(f"row {i}: {v!r} is not a class of head {h!r}",
                                     field=h, value=v, allowed=classes)
        return targets, maybe

    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(c) for _, c in self.heads])])
