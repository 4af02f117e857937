"""Checking a pipeline stage's settings (a ``[stages.NAME]`` table of a build config).

A stage passes its table to an estimator's constructor or a config dataclass, so a
misspelt key was a ``TypeError: __init__() got an unexpected keyword argument``
traceback and a string where a number belongs a ``ValueError`` from deep inside the
stage, after it had started. :func:`check_settings` refuses both by name before the
stage starts (its ``stage_inputs`` calls it). The allowed keys and their types come
from the real parameters (:func:`parameter_kinds` of an ``__init__`` signature or a
dataclass), not from a list kept beside them that could drift. It lives in
``features`` because the perception stages use it and ``features`` imports nothing
from ``recommender``.

What a stage records of its table in its inputs (hashed to decide whether it is up to
date) is :func:`canonical_settings` of it: one spelling for each value, so that
``lr = 1`` and ``lr = 1.0``, or a key stated at its default and left out, do not rerun
a stage that took half an hour. Each time stages came to record more spellings alike,
the way before stayed readable (:data:`SPELLINGS`, :func:`settings_spelled`), so a
bundle recorded that way stays up to date.

Examples
--------
>>> import dataclasses
>>> @dataclasses.dataclass
... class Cfg:
...     epochs: int = 2
...     lr: float = 0.1
>>> kinds = parameter_kinds(Cfg)
>>> check_settings("demo", {"epochs": 3, "lr": 1}, kinds)
{'epochs': 3, 'lr': 1}
>>> check_settings("demo", {"epochs": "two"}, kinds)
Traceback (most recent call last):
...
features.exceptions.InputError: [stages.demo] epochs must be a whole number, got 'two'
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import json
import math
import numbers
import types
import typing
from typing import Any, Callable, Iterable, Mapping

from features.exceptions import InputError

#: What a TOML value of each kind is called in a message.
_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number",
               str: "a string", list: "a list", dict: "a table"}
#: Python types a kind takes besides itself (a float setting may be written ``lr = 1``).
_ACCEPTS = {float: (int, float), list: (list, tuple)}


def _kind_of(default: Any, annotation: Any) -> type | None:
    """The kind of value a parameter takes, from its default or, when the default is
    None (``time_budget_s: float | None = None``), its annotation; None: any value
    (the estimator checks it)."""
    if default is None or default is inspect.Parameter.empty:
        args = typing.get_args(annotation) if isinstance(
            annotation, (types.UnionType, type(typing.Optional[int]))) else (annotation,)
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) != 1:
            return None
        default = kinds[0]
        if not isinstance(default, type):
            default = typing.get_origin(default)
        if not isinstance(default, type):
            return None
        cls = default
    else:
        cls = type(default)
    for kind in (bool, int, float, str, dict):   # bool before int: True is an int
        if issubclass(cls, kind):
            return kind
    if issubclass(cls, (list, tuple)):
        return list                               # a TOML array
    return None


def parameter_kinds(obj: Callable | type,
                    leave_out: Iterable[str] = ()) -> dict[str, type | None]:
    """``{keyword: kind}`` of a constructor's keyword parameters (a class's
    ``__init__``) or a dataclass's fields, less ``leave_out`` (those the stage sets
    itself: ``random_state``, ``verbose``). A kind is the Python type a TOML value
    must have (``float`` also takes a whole number), or None for any."""
    leave = set(leave_out)
    if dataclasses.is_dataclass(obj):
        hints = typing.get_type_hints(obj)
        return {f.name: _kind_of(f.default if f.default is not dataclasses.MISSING
                                 else None, hints.get(f.name))
                for f in dataclasses.fields(obj) if f.name not in leave}
    try:
        sig = inspect.signature(obj, eval_str=True)
    except NameError:    # an annotation naming something the module imports lazily
        sig = inspect.signature(obj)
    return {name: _kind_of(p.default, p.annotation) for name, p in sig.parameters.items()
            if name not in leave and name != "self"
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_settings(stage: str, settings: Mapping[str, Any],
                   kinds: Mapping[str, type | None], *,
                   at_least: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``settings`` (a ``[stages.<stage>]`` table) as a dict, or InputError naming the
    first key that is not in ``kinds`` (with the allowed keys), whose value is not of
    its kind, or that is under its ``at_least`` minimum: :func:`check_table` of the
    table ``stages.<stage>``.

    Values of kind None, lists and tables are passed on unchecked inside: the
    estimator checks what is in them.
    """
    return check_table(f"stages.{stage}", settings, kinds, at_least=at_least)


def check_table(table: str, settings: Mapping[str, Any],
                kinds: Mapping[str, type | None], *,
                at_least: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``settings`` (the config table named ``table``: ``stages.graph``, ``dask``) as
    a dict, or InputError naming the first key that is not in ``kinds`` (field
    ``table``, with the allowed keys), or whose value is not of its kind or under its
    ``at_least`` minimum (field ``table.key``).

    >>> check_table("dask", {"n_worker": 3}, {"n_workers": int})
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: unknown [dask] setting 'n_worker' (allowed: n_workers)
    """
    unknown = sorted(set(settings) - set(kinds))
    if unknown:
        raise InputError(f"unknown [{table}] setting {unknown[0]!r}",
                         field=table, value=unknown[0], allowed=sorted(kinds))
    for key, value in settings.items():
        kind = kinds[key]
        if kind is None:
            continue
        low = (at_least or {}).get(key)
        ok = (isinstance(value, bool) if kind is bool else
              not isinstance(value, bool) and isinstance(value, _ACCEPTS.get(kind, kind)))
        # NaN compares false with everything (``nan < low`` too): refused as not finite
        finite = not ok or kind is not float or math.isfinite(value)
        if ok and (not finite or low is not None and not value >= low):
            ok = False
        if not ok:
            words = (_KIND_WORDS[kind] if finite else "a finite number") + (
                f" >= {low}" if low is not None else "")
            raise InputError(f"[{table}] {key} must be {words}, got {value!r}",
                             field=f"{table}.{key}", value=value)
    return dict(settings)


#: How a ``[stages.*]`` table says "no time budget: train every epoch" for a stage's
#: ``time_budget_s`` (:func:`check_time_budget`). TOML has no null, so a word is needed,
#: and the other switches of a stage table are words too (``context = "off"``,
#: ``regions = "none"``): "none" because the estimators' own spelling is None, which
#: JSON's ``null`` and YAML's ``~`` give and which is taken as the same. Not ``false``
#: or ``0``: a number setting takes no true/false, and 0 once silently meant no budget.
NO_TIME_BUDGET = "none"


def check_time_budget(stage: str, settings: Mapping[str, Any],
                      key: str = "time_budget_s") -> dict[str, Any]:
    """``settings`` (a checked ``[stages.<stage>]`` table) with its ``key`` of
    :data:`NO_TIME_BUDGET` (or a JSON / YAML null) as None, the estimator's "no
    budget"; InputError naming the value unless it is that or a finite number > 0.

    A stage's default budget (the keypoints stage's 300 CPU seconds, MANGO's 1,460 s
    for the attribute network) could not be turned off from a config file before:
    ``"none"`` and ``null`` were both refused as "must be a number".

    >>> check_time_budget("demo", {"time_budget_s": "none", "epochs": 3})
    {'time_budget_s': None, 'epochs': 3}
    >>> check_time_budget("demo", {"time_budget_s": 0})
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: [stages.demo] time_budget_s must be a number > 0, or "none" for no time budget, got 0
    """
    out = dict(settings)
    if key not in out:
        return out
    value = out[key]
    if value is None or value == NO_TIME_BUDGET:
        out[key] = None
        return out
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0):
        raise InputError(f"[stages.{stage}] {key} must be a number > 0, or "
                         f"\"{NO_TIME_BUDGET}\" for no time budget, got {value!r}",
                         field=f"stages.{stage}.{key}", value=value)
    return out


def kinds_of_defaults(defaults: Mapping[str, Any]) -> dict[str, type | None]:
    """``{key: kind}`` of a table of defaults (``RANKER_DEFAULTS``), as
    :func:`parameter_kinds` reads a signature's: a None default takes any value.

    >>> kinds_of_defaults({"folds": 5, "base": "mean", "columns": None})
    {'folds': <class 'int'>, 'base': <class 'str'>, 'columns': None}
    """
    return {key: _kind_of(value, None) for key, value in defaults.items()}


def parameter_defaults(obj: Callable | type,
                       leave_out: Iterable[str] = ()) -> dict[str, Any]:
    """``{keyword: default}`` of a constructor's keyword parameters (a class's
    ``__init__``) or a dataclass's fields, less ``leave_out`` and those without a
    default: what an estimator runs with where a stage table leaves a key out, read
    from the signature as :func:`parameter_kinds` reads the kinds.

    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Cfg:
    ...     epochs: int = 2
    ...     size: tuple = (4, 3)
    >>> parameter_defaults(Cfg)
    {'epochs': 2, 'size': (4, 3)}
    """
    leave = set(leave_out)
    if dataclasses.is_dataclass(obj):
        return {f.name: f.default for f in dataclasses.fields(obj)
                if f.name not in leave and f.default is not dataclasses.MISSING}
    sig = inspect.signature(obj)
    return {name: p.default for name, p in sig.parameters.items()
            if name not in leave and name != "self" and p.default is not p.empty
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


#: Values of a stage table's keys spelled two ways, as ``{key: ((alias, word), ...)}``:
#: :func:`canonical_settings` records the alias as the word. The time budget's JSON /
#: YAML null is TOML's ``"none"`` (:func:`check_time_budget`).
TIME_BUDGET_WORDS = {"time_budget_s": ((None, NO_TIME_BUDGET),)}


def canonical_value(value: Any) -> Any:
    """``value`` spelled one way, as a stage records it: a whole number written as a
    float as the whole number (TOML's ``1``, JSON's and YAML's ``1.0``: a config
    file's format is no reason to retrain), a tuple as a list (what JSON writes), the
    same inside lists and tables. No setting here means one thing by ``1`` and
    another by ``1.0`` (one that takes a whole number refuses a float).

    >>> canonical_value({"lr": 1.0, "dropout": 0.5, "size": (160, 112), "on": True})
    {'lr': 1, 'dropout': 0.5, 'size': [160, 112], 'on': True}
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical_value(v) for k, v in value.items()}
    return value


def spelled(key: str, value: Any, words: Mapping[str, Iterable[tuple[Any, Any]]]) -> Any:
    """``value`` of setting ``key`` as :func:`canonical_settings` records it: its word
    where ``words`` gives one, else :func:`canonical_value`.

    >>> spelled("regions", False, {"regions": ((True, "auto"), (False, "none"))})
    'none'
    """
    for alias, word in words.get(key, ()):
        # by type too: ``regions = true`` is "auto", but 1 is not true
        if type(value) is type(alias) and value == alias:
            return word
    return canonical_value(value)


def canonical_settings(settings: Mapping[str, Any], defaults: Mapping[str, Any], *,
                       keep: Iterable[str] = (),
                       words: Mapping[str, Iterable[tuple[Any, Any]]] | None = None,
                       nested: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> dict[str, Any]:
    """``settings`` (a checked ``[stages.NAME]`` table) as the stage records it in its
    inputs, hashed to decide whether the stage is up to date: one spelling for each
    thing the stage runs with, so that a config written another way reruns nothing.

    * numbers and lists as :func:`canonical_value` writes them (``lr = 1.0`` as ``1``);
    * a value ``words`` names as its word (``{"time_budget_s": ((None, "none"),)}``);
    * a key at its default left out: ``defaults[key]`` is what the stage runs with
      where the table leaves it out (its own base, else the estimator's default), so
      ``dropout = 0.2`` stated is ``dropout`` left out. Keys in ``keep`` stay: the
      settings a source supplies (MANGO's recipe, some of which restate a default),
      recorded as they always were;
    * a table in ``nested`` (``{key: its defaults}``) the same way inside, and left
      out when it then equals the table the stage runs with without it
      (``defaults[key]``, None for none).

    Settings already spelled so (whole numbers as ints, no key restating its default)
    come back as they are: their inputs, and so every bundle built on them, keep
    their hash.

    >>> canonical_settings({"lr": 1.0, "epochs": 20, "time_budget_s": None},
    ...                    {"lr": 0.002, "epochs": 20, "time_budget_s": 300},
    ...                    words=TIME_BUDGET_WORDS)
    {'lr': 1, 'time_budget_s': 'none'}
    >>> canonical_settings({"style": {"dim": 32, "lr": 0.003}}, {"style": {"dim": 32}},
    ...                    nested={"style": {"dim": 16, "lr": 3e-3}})
    {}
    """
    if not spelled_since(ONE_SPELLING):
        return dict(settings)
    words = words or {}
    nested = nested or {}
    keep = set(keep)
    out: dict[str, Any] = {}
    for key, value in settings.items():
        value = spelled(key, value, words)
        if key in nested and isinstance(value, dict):
            value = canonical_settings(value, nested[key])
            default = canonical_settings(defaults.get(key) or {}, nested[key])
        elif key in defaults:
            default = spelled(key, defaults[key], words)
        else:
            out[key] = value
            continue
        # by type too: True == 1 and [1] == [True] in Python, not in a setting
        if key in keep or not _same(value, default):
            out[key] = value
    return out


#: How stages have spelled their settings in the inputs they record, oldest first: an
#: index here is what :func:`settings_spelled` takes, and the last is how they record
#: them now. A record made under an earlier one, on the same settings, is current
#: (recommender.pipeline.recorded_earlier), so a new spelling reruns no stage.
SPELLINGS = (
    # before canonical_settings: each table as written
    "as written",
    # canonical_settings: whole numbers as ints, words, keys at their default left out,
    # nested tables the same
    "one spelling per value",
    # besides, a key under one name (an lgb_params alias as its LightGBM parameter) and
    # a value the stage derives from its data left out when stated at it (the
    # catalogue's default heads; no grouping, ``group_sep = ""``, where that is the
    # source's)
    "one name per key",
)
#: Indexes of :data:`SPELLINGS`.
AS_WRITTEN, ONE_SPELLING, ONE_NAME = range(len(SPELLINGS))
#: How stages record their settings now.
SPELLING = len(SPELLINGS) - 1

#: Set by :func:`settings_spelled`.
_SPELLING: contextvars.ContextVar[int] = contextvars.ContextVar("settings_spelled",
                                                                default=SPELLING)


@contextlib.contextmanager
def settings_spelled(spelling: int):
    """Within it, stages record their settings as they did under ``spelling`` (an
    index of :data:`SPELLINGS`): :func:`canonical_settings` returns each table as
    written under :data:`AS_WRITTEN`, and a stage leaves out what it came to leave out
    later (:func:`spelled_since`). The pipeline takes a record made so, on these
    settings, as current and records the new way from then on.

    >>> with settings_spelled(AS_WRITTEN):
    ...     canonical_settings({"lr": 1.0, "epochs": 2}, {"epochs": 2})
    {'lr': 1.0, 'epochs': 2}
    """
    if not (isinstance(spelling, int) and 0 <= spelling < len(SPELLINGS)):
        raise ValueError(f"spelling must be an index of SPELLINGS (0 to "
                         f"{len(SPELLINGS) - 1}), got {spelling!r}")
    token = _SPELLING.set(spelling)
    try:
        yield
    finally:
        _SPELLING.reset(token)


def spelled_since(spelling: int) -> bool:
    """Whether stages record their settings as :data:`SPELLINGS` ``[spelling]`` and
    later ones do (a stage asks before a step that spelling added).

    >>> spelled_since(ONE_NAME), spelled_since(AS_WRITTEN)
    (True, True)
    >>> with settings_spelled(ONE_SPELLING):
    ...     spelled_since(ONE_NAME)
    False
    """
    return _SPELLING.get() >= spelling


def same_setting(a: Any, b: Any) -> bool:
    """Whether two setting values are one once spelled one way
    (:func:`canonical_value`): ``1`` and ``1.0`` are, ``True`` and ``1`` are not.

    >>> same_setting(1, 1.0), same_setting(True, 1), same_setting([0.5, 2], (0.5, 2.0))
    (True, False, True)
    """
    return _same(canonical_value(a), canonical_value(b))


def _same(a: Any, b: Any) -> bool:
    """Whether two canonical values are one (``True`` is not ``1``)."""
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(
            b, sort_keys=True, default=str)
    return type(a) is type(b) and a == b


def check_value(name: str, value: Any, kind: type, *, least: float | None = None,
                above: float | None = None, below: float | None = None,
                what: str = "") -> None:
    """InputError naming ``name`` unless ``value`` is of ``kind`` (int: a whole number,
    float: any number; true/false is neither) and ``>= least``, ``> above`` and
    ``< below`` where given: a config dataclass's range check (``validate``), so that
    ``dim = 0`` is refused by name before training, not met as a torch error inside it.
    A float is finite besides: NaN and the infinities are refused, bounds or none.
    ``what`` starts the message ("context ").

    >>> check_value("dropout", 1.0, float, least=0, below=1, what="context ")
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: context dropout must be a number >= 0 and < 1, got 1.0
    """
    # numbers.Integral: a numpy integer from library code counts as a whole number too
    types_ = {int: numbers.Integral, float: numbers.Real}.get(kind, kind)
    ok = (isinstance(value, bool) if kind is bool else
          not isinstance(value, bool) and isinstance(value, types_))
    bounds = [(op, b) for op, b in ((">=", least), (">", above), ("<", below))
              if b is not None]
    # a NaN passes no bound but there is none to fail without bounds, and an infinity
    # passes ``>= 0``: TOML writes both (``lr = nan``), which training met as NaN losses
    finite = not ok or kind is not float or math.isfinite(value)
    if ok:
        ok = finite and all(value >= b if op == ">=" else value > b if op == ">"
                            else value < b for op, b in bounds)
    if not ok:
        said = "".join(f" {'and ' if k else ''}{op} {b:g}" for k, (op, b) in enumerate(bounds))
        words = _KIND_WORDS[kind] if finite else "a finite number"
        raise InputError(f"{what}{name} must be {words}{said}, got {value!r}",
                         field=name, value=value)


def check_size(name: str, value: Any, *, least: int, what: str = "") -> None:
    """InputError naming ``name`` unless ``value`` is a ``[height, width]`` pair of whole
    numbers ``>= least`` (an ``image_size`` or ``region_size`` setting): ``[160]`` was
    an IndexError, ``["a", 1]`` a TypeError and ``[-1, 5]`` a numpy ValueError from
    inside the stage, and ``[16.5, 20]`` was cut to 16 without a word.

    >>> check_size("image_size", [160], least=16)
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: image_size must be two whole numbers [height, width] >= 16, got [160]
    """
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= least
        for v in value)
    if not ok:
        raise InputError(f"{what}{name} must be two whole numbers [height, width] >= "
                         f"{least}, got {value!r}", field=name, value=value)


@contextlib.contextmanager
def said_of_stage(stage: str):
    """An InputError raised inside (an estimator's range check: "epochs must be a whole
    number >= 1") raised again saying where the value was set: ``[stages.<stage>]
    epochs ...``.

    >>> with said_of_stage("demo"):
    ...     raise InputError("epochs must be >= 1, got 0", field="epochs", value=0)
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: [stages.demo] epochs must be >= 1, got 0
    """
    try:
        yield
    except InputError as exc:
        raise InputError(f"[stages.{stage}] {exc}", value=exc.value,
                         field=f"stages.{stage}.{exc.field}") from None
