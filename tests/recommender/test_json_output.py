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
