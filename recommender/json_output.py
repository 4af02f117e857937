"""JSON that every reader accepts: what ``--json`` options print.

Python's ``json`` writes a NaN or an infinity as the bare words ``NaN`` and
``Infinity``, which are not JSON: ``jq``, JavaScript's ``JSON.parse`` and most other
readers refuse the whole document. Scores are NaN where there is nothing to score
(an attribute head with no labelled test product, an empty split), so every
command's JSON goes through :func:`dumps`, which writes them as ``null``.

Example::

    >>> import numpy as np
    >>> dumps({"accuracy": float("nan"), "n": np.int64(0), "auc": np.float32(0.5)})
    '{"accuracy": null, "n": 0, "auc": 0.5}'
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinite floats as None and numpy values as Python ones.

    Containers are copied (tuples and arrays become lists); anything else is
    returned as it is, for ``json`` to write or refuse.

    >>> json_safe({"a": (1.0, float("inf")), "b": np.array([np.nan, 2.0])})
    {'a': [1.0, None], 'b': [None, 2.0]}
    """
    if isinstance(obj, dict):
        return {(k.item() if isinstance(k, np.generic) else k): json_safe(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):  # np.float32 is not a float; np.int64 not an int
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_safe` (``obj``): valid JSON or an error, never
    ``NaN``. Keyword arguments (``indent``, ``sort_keys``...) go to ``json.dumps``."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)
