"""features.settings: the checker of a ``[stages.NAME]`` table."""
from __future__ import annotations

import dataclasses
import json

import pytest

from features.exceptions import InputError
from features.settings import (AS_WRITTEN, ONE_NAME, ONE_SPELLING, SPELLING, SPELLINGS,
                               canonical_settings, canonical_value, check_settings,
                               check_value, parameter_defaults, parameter_kinds,
                               same_setting, settings_spelled,
                               spelled_since)


def json_hash(obj) -> str:
    """What recommender.bundle.json_hash hashes (features imports nothing from there)."""
    return json.dumps(obj, sort_keys=True, default=str)


class Estimator:
    def __init__(self, *, size: tuple[int, int] = (4, 3), rate: float = 0.1,
                 budget: float | None = None, mode: str = "auto", on: bool = True,
                 extra=None, verbose: bool = False):
        pass


@dataclasses.dataclass
class Config:
    k: int = 2
    name: str = "x"


def test_kinds_come_from_the_defaults_or_a_none_defaults_annotation():
    assert parameter_kinds(Estimator, leave_out=["verbose"]) == {
        "size": list, "rate": float, "budget": float, "mode": str, "on": bool,
        "extra": None}
    assert parameter_kinds(Config) == {"k": int, "name": str}


@pytest.mark.parametrize("settings, said", [
    ({"rate": "fast"}, "[stages.s] rate must be a number, got 'fast'"),
    ({"on": 1}, "[stages.s] on must be true or false, got 1"),
    ({"size": 4}, "[stages.s] size must be a list, got 4"),
    ({"budget": True}, "[stages.s] budget must be a number, got True"),
    ({"rat": 1.0}, "unknown [stages.s] setting 'rat' (allowed: budget, extra, mode, on, "
                   "rate, size)"),
])
def test_a_bad_setting_is_named_with_what_is_allowed(settings, said):
    with pytest.raises(InputError) as e:
        check_settings("s", settings, parameter_kinds(Estimator, leave_out=["verbose"]))
    assert str(e.value) == said


def test_good_settings_pass_as_they_are_and_a_minimum_is_checked():
    kinds = parameter_kinds(Estimator, leave_out=["verbose"])
    good = {"size": [8, 6], "rate": 1, "budget": 30.5, "mode": "on", "on": False,
            "extra": {"any": ["thing"]}}
    assert check_settings("s", good, kinds) == good
    with pytest.raises(InputError, match=r"\[stages.c\] k must be a whole number >= 1, "
                                         "got 0"):
        check_settings("c", {"k": 0}, parameter_kinds(Config), at_least={"k": 1})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_float_setting_that_is_not_finite_is_refused(value):
    """NaN passed every bare ``value < least`` check (a NaN compares false), and a
    setting without bounds took NaN or an infinity as a number: TOML writes both
    (``lr = nan``), and training met them as NaN losses or an optimiser's error."""
    for bounds in ({}, {"least": 0}, {"above": 0}, {"least": 0, "below": 1}):
        with pytest.raises(InputError, match=r"rate must be a finite number") as e:
            check_value("rate", value, float, **bounds)
        assert e.value.field == "rate"
    # a minimum of a [stages.NAME] table: NaN < 0 is false, so it passed
    with pytest.raises(InputError, match=r"\[stages.s\] rate must be a finite number >= 0"):
        check_settings("s", {"rate": value}, parameter_kinds(Estimator,
                                                             leave_out=["verbose"]),
                       at_least={"rate": 0})
    check_value("rate", 1e300, float, least=0)   # large, finite: a number


# -- canonical_settings: one spelling per value in a stage's recorded inputs ------------

def test_parameter_defaults_come_from_the_signature_or_the_dataclass():
    assert parameter_defaults(Estimator, leave_out=["verbose"]) == {
        "size": (4, 3), "rate": 0.1, "budget": None, "mode": "auto", "on": True,
        "extra": None}
    assert parameter_defaults(Config) == {"k": 2, "name": "x"}


DEFAULTS = {"size": (4, 3), "rate": 0.1, "budget": 300, "mode": "auto", "on": True,
            "extra": None, "lr": 0.002}


@pytest.mark.parametrize("one, other", [
    ({"lr": 1}, {"lr": 1.0}),                              # TOML 1, JSON / YAML 1.0
    ({"budget": 100}, {"budget": 100.0}),
    ({"size": [5, 3]}, {"size": (5, 3)}),                  # a list, a tuple
    ({"lr": 1, "size": [5, 3]}, {"size": [5, 3], "lr": 1}),   # another order
    ({"budget": "none"}, {"budget": None}),                # TOML's word, JSON's null
    ({}, {"rate": 0.1, "mode": "auto", "on": True, "size": [4, 3], "budget": 300,
          "extra": None}),                                 # every default stated
    ({}, {"lr": 0.002}),
    ({"rate": 0}, {"rate": 0.0}),
])
def test_equivalent_spellings_are_recorded_alike(one, other):
    words = {"budget": ((None, "none"),)}
    a = canonical_settings(one, DEFAULTS, words=words)
    b = canonical_settings(other, DEFAULTS, words=words)
    assert a == b and json_hash(a) == json_hash(b)


@pytest.mark.parametrize("one, other", [
    ({"lr": 1}, {"lr": 1.5}), ({"lr": 1}, {}), ({"size": [4, 3]}, {"size": [3, 4]}),
    ({"budget": "none"}, {}), ({"on": False}, {}), ({"mode": "Auto"}, {}),
    ({"on": 1}, {}),                                       # True == 1 in Python, not here
])
def test_different_values_are_recorded_apart(one, other):
    words = {"budget": ((None, "none"),)}
    assert json_hash(canonical_settings(one, DEFAULTS, words=words)) != json_hash(
        canonical_settings(other, DEFAULTS, words=words))


@pytest.mark.parametrize("table", [
    {}, {"lr": 0.5, "size": [8, 8], "budget": 100, "mode": "fast", "on": False},
    {"budget": "none"}, {"rate": 1e-4, "extra": {"a": 1, "b": [1, 2]}},
])
def test_a_table_already_spelled_one_way_is_recorded_as_it_is(table):
    """What every bundle built before records (the table as written): a canonical
    one keeps its hash, so its stages stay up to date."""
    got = canonical_settings(table, DEFAULTS, words={"budget": ((None, "none"),)})
    assert got == table and json_hash(got) == json_hash(table)


def test_kept_keys_stay_at_their_default_and_are_still_spelled_one_way():
    # MANGO's recipe states batch_size 64, the stage's own default: recorded as ever
    kept = canonical_settings({"rate": 0.1, "lr": 1.0}, DEFAULTS, keep={"rate", "lr"})
    assert kept == {"rate": 0.1, "lr": 1}
    assert canonical_settings({"rate": 0.1}, DEFAULTS) == {}


def test_a_nested_table_is_spelled_inside_and_left_out_when_it_runs_as_without_it():
    base = {"dim": 32, "hidden": 128}                      # the stage's, in place of none
    inner = {"dim": 16, "hidden": 64, "lr": 3e-3, "seed": 0}   # the class's
    defaults, nested = {"style": base, "params": None}, {"style": inner, "params": inner}

    def rec(table):
        return canonical_settings(table, defaults, nested=nested)

    assert rec({"style": {"dim": 32, "hidden": 128.0, "lr": 0.003}}) == {}
    assert rec({"style": {"dim": 32.0}}) == {"style": {"dim": 32}}   # hidden: the class's
    assert rec({"style": {}}) == {"style": {}} != rec({})
    assert rec({"params": {}}) == rec({"params": {"lr": 0.003, "seed": 0}}) == {}
    assert rec({"params": {"lr": 1.0}}) == {"params": {"lr": 1}}


def test_whole_numbers_are_spelled_as_ints_other_values_as_they_are():
    assert canonical_value([1.0, 0.5, -0.0, True, None, "1.0", (2.0, 3)]) == [
        1, 0.5, 0, True, None, "1.0", [2, 3]]
    assert canonical_value(float("inf")) == float("inf")


def test_settings_as_written_records_every_table_as_before():
    table = {"lr": 1.0, "rate": 0.1, "budget": None}
    with settings_spelled(AS_WRITTEN):
        assert canonical_settings(table, DEFAULTS) == table
    assert canonical_settings(table, DEFAULTS) == {"lr": 1, "budget": None}


def test_each_earlier_spelling_is_readable_and_the_latest_is_the_current_one():
    """A stage asks :func:`spelled_since` before a step a later spelling added, so the
    pipeline can recompute what earlier code recorded (and find a bundle it built up
    to date): as written, then one spelling per value, then one name per key."""
    table = {"lr": 1.0, "rate": 0.1, "budget": None}
    assert SPELLINGS[SPELLING] == "one name per key" and SPELLING == ONE_NAME
    assert spelled_since(ONE_NAME) and spelled_since(AS_WRITTEN)
    with settings_spelled(ONE_SPELLING):
        assert spelled_since(ONE_SPELLING) and not spelled_since(ONE_NAME)
        assert canonical_settings(table, DEFAULTS) == {"lr": 1, "budget": None}
    with settings_spelled(AS_WRITTEN):
        assert not spelled_since(ONE_SPELLING)
        assert canonical_settings(table, DEFAULTS) == table
    assert spelled_since(ONE_NAME)                    # back to the current one after
    for bad in (-1, len(SPELLINGS), "as written"):
        with pytest.raises(ValueError, match="spelling must be an index of SPELLINGS"):
            with settings_spelled(bad):
                pass


@pytest.mark.parametrize("one, other, same", [
    (1, 1.0, True), (0.5, 0.5, True), ([1, 2], (1.0, 2), True), ("a", "a", True),
    (True, 1, False), (0, False, False), (1, 1.5, False), ("1", 1, False),
    ({"a": 1.0}, {"a": 1}, True), ([1, 2], [2, 1], False),
])
def test_same_setting_compares_values_spelled_one_way(one, other, same):
    assert same_setting(one, other) is same and same_setting(other, one) is same
