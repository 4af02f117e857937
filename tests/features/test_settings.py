"""features.settings: the checker of a ``[stages.NAME]`` table."""
from __future__ import annotations

import dataclasses

import pytest

from features.exceptions import InputError
from features.settings import check_settings, check_value, parameter_kinds


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
