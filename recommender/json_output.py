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
from typing import Any, Callable

import numpy as np


def json_safe(obj: Any, *, default: Callable[[Any], Any] | None = None) -> Any:
    """``obj`` with NaN and infinite floats as None and numpy values as Python ones.

    Containers are copied (tuples, numpy arrays and other array-likes with ``tolist``,
    such as a pandas Series or a torch tensor, become lists; a 0-d one its value).
    Anything else JSON cannot write is returned as it is, for ``json`` to refuse, or
    passed to ``default`` when given: ``default=str`` is the API's choice (a response
    must not fail on a path or a date in a payload), and it then turns every key that
    is not a string into one too (``str(True)`` is ``"True"``, where ``json`` would
    write ``"true"``; a NaN key, which ``json`` refuses, is ``"nan"``).

    >>> json_safe({"a": (1.0, float("inf")), "b": np.array([np.nan, 2.0])})
    {'a': [1.0, None], 'b': [None, 2.0]}
    >>> json_safe({np.int64(7): {1, 2}, 3: float("nan")}, default=str)
    {'7': '{1, 2}', '3': None}
    """
    if isinstance(obj, dict):
        return {_key(k, default): json_safe(v, default=default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, default=default) for v in obj]
    if isinstance(obj, np.generic):  # np.float32 is not a float; np.int64 not an int
        value = obj.item()
        if isinstance(value, np.floating):          # np.longdouble's item() is itself
            value = float(value)
        if isinstance(value, np.generic):           # np.clongdouble
            return obj if default is None else default(obj)
        return json_safe(value, default=default)    # a datetime64's is a date
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int)) or obj is None:
        return obj
    item = getattr(obj, "item", None)               # a 0-d array or tensor
    if callable(item) and getattr(obj, "shape", None) == ():
        return json_safe(item(), default=default)
    tolist = getattr(obj, "tolist", None)           # numpy array, Series, tensor
    if callable(tolist):
        return json_safe(tolist(), default=default)
    return obj if default is None else default(obj)


def _key(key: Any, default: Callable[[Any], Any] | None) -> Any:
    if isinstance(key, np.generic):
        key = key.item()
    return key if default is None or isinstance(key, str) else default(key)


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_safe` (``obj``): valid JSON or an error, never
    ``NaN``. Keyword arguments (``indent``, ``sort_keys``...) go to ``json.dumps``."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)
