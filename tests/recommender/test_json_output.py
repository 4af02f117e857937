"""What --json options print: valid JSON, non-finite numbers as null."""
import json

import numpy as np
import pytest

from recommender.json_output import dumps, json_safe


def test_non_finite_numbers_are_null_and_numpy_values_plain():
    obj = {"nan": float("nan"), "inf": float("inf"), "ninf": -np.inf,
           "f32": np.float32(np.nan), "i64": np.int64(3), "ok": np.float64(0.25),
           "arr": np.array([1.0, np.nan]), "tup": (np.inf, 2), np.int64(7): True}
    text = dumps(obj)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"nan": None, "inf": None, "ninf": None, "f32": None,
                                "i64": 3, "ok": 0.25, "arr": [1.0, None],
                                "tup": [None, 2], "7": True}


def test_the_input_is_not_changed():
    obj = {"a": [float("nan")]}
    assert json_safe(obj) == {"a": [None]}
    assert np.isnan(obj["a"][0])


def test_what_json_cannot_write_is_still_refused():
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_default_str_writes_what_json_has_no_type_for_and_keys_as_strings():
    """The API's cleaning (``default=str``, once ``api.responses.clean_json``): a value
    JSON has no type for becomes its text, every key a string, as str() writes it."""
    import datetime
    import decimal
    from pathlib import Path

    import pandas as pd
    obj = {"path": Path("/x/y.png"), "set": {3}, "day": datetime.date(2024, 1, 2),
           "price": decimal.Decimal("1.50"), "na": pd.NA, "ts": pd.Timestamp("2024-01-01"),
           "d64": np.datetime64("2024-01-02"), True: 1, None: 2, float("nan"): 3,
           ("a", 1): 4, np.int64(7): np.float32(0.5), 8: [np.nan]}
    out = json_safe(obj, default=str)
    assert out == {"path": "/x/y.png", "set": "{3}", "day": "2024-01-02",
                   "price": "1.50", "na": "<NA>", "ts": "2024-01-01 00:00:00",
                   "d64": "2024-01-02", "True": 1, "None": 2, "nan": 3,
                   "('a', 1)": 4, "7": 0.5, "8": [None]}
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_without_default_keys_are_left_for_json_to_write():
    """``dumps`` (the CLI's --json) writes keys as ``json`` does: true, null."""
    assert json.loads(dumps({True: 1, None: 2, 3: 4})) == {"true": 1, "null": 2, "3": 4}
    with pytest.raises(TypeError):
        dumps({("a", 1): 1})


def test_array_likes_become_lists_and_0d_ones_their_value():
    import pandas as pd

    class Tensor0d:       # a torch scalar tensor's duck type: item() and shape ()
        shape = ()

        def item(self):
            return float("inf")

    obj = {"series": pd.Series([1.0, np.nan]), "index": pd.Index(["a", "b"]),
           "arr0": np.array(2.5), "t0": Tensor0d(), "ld": np.longdouble(0.25),
           "nested": np.array([[1, 2], [3, 4]], dtype=np.int64)}
    want = {"series": [1.0, None], "index": ["a", "b"], "arr0": 2.5, "t0": None,
            "ld": 0.25, "nested": [[1, 2], [3, 4]]}
    assert json_safe(obj) == want and json_safe(obj, default=str) == want
    assert json.loads(dumps(obj)) == want
