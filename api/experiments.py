"""A/B experiments through flags: a validated config file and deterministic assignment.

The config (TOML, YAML or JSON; same structure; a key given twice in one table is
refused in every format, not read as its last value) holds a holdout and *layers*.
Layers are independent: a unit is in at most one experiment per layer, and in one
experiment of every layer at once, so a ranking experiment and a rules experiment run
side by side as long as they set different keys. Example (TOML)::

    version = "2024-06-01.1"          # optional; logged with every exposure
    salt = "mixmatch-2024"            # default prefix of every salt below

    [holdout]                         # units that never see an experiment
    fraction = 0.05
    salt = "holdout-1"

    [[layers]]
    name = "ranking"
      [[layers.experiments]]
      name = "strategy-ab"
      coverage = 0.5                  # share of the layer's units in this experiment
      qa_override = true              # ?variant=strategy-ab:visual is honoured
      endpoints = ["complements", "upsell"]   # optional; default: every endpoint
        [[layers.experiments.variants]]
        name = "control"
        weight = 1
        strategy = "default"
        [[layers.experiments.variants]]
        name = "visual"
        weight = 1
        strategy = "visual"
        params = { diversity = 0.5 }  # the engine's MMR: see VARIANT_PARAMS

    [[layers]]
    name = "rules"
      [[layers.experiments]]
      name = "rules-v2"
      coverage = 1.0
        [[layers.experiments.variants]]
        name = "v1"
        weight = 1
        [[layers.experiments.variants]]
        name = "v2"
        weight = 1
        rules = "v2"                  # a name from the app's RULES_FILES

A variant may set ``strategy`` (one of :data:`api.schemas.STRATEGIES`), ``model``
(a name from the app's ``MODELS``: another bundle), ``rules`` (a name from
``RULES_FILES``; the server checks a rules file's fields against the catalogue of every
bundle the config may serve it with, :meth:`Experiments.served_together`) and
``params``, engine settings from :data:`VARIANT_PARAMS`:

- ``diversity``, a number in [0, 1]: how much the MMR re-ranking trades relevance for
  variety (``lam = 1 - diversity``; 0 is the score order). Unset, each list keeps its
  own: 0.3 for complements, 0.15 for up-sell. Honoured by ``complements``, ``upsell``
  and ``preview`` (its complements; its completed look has no MMR).

A param is passed to the engine on the endpoints that honour it and echoed in the
response's ``assignments`` entry of its variant (``"params": {"diversity": 0.5}``).
Any other key in ``params``, a value out of range, or an experiment whose endpoints
(every endpoint when it lists none) include one that does not honour a param its
variants set, is refused: such an arm would run as an A/A test under a name that says
otherwise. What a variant leaves unset keeps the serving default.

An experiment is in a request only on the endpoints where its variants' settings act
(:data:`SETTING_ENDPOINTS`: ``strategy`` on ``complements``, ``complete`` and
``preview``, not ``upsell``, which ranks by similarity whatever the strategy; ``rules``
on those, ``upsell`` and the two searches; ``model`` on every endpoint; a param where
it is honoured), and within its ``endpoints`` when it lists them. Elsewhere the unit
gets no ``assignments`` entry and no exposure is logged: an exposure there would count
the unit in an arm that saw nothing different, and dilute the A/B report's effect. An
endpoint an experiment lists where none of its settings acts is not refused (the A/B
report reads old files again) but logged when the server loads the file. An
experiment none of whose variants sets anything (a page reading its variant from the
envelope) is in every request of its endpoints. Where an experiment is in a request,
only its variant's settings that act there are applied and echoed: in an experiment
that a param brings into ``upsell``, the variant's ``strategy`` is not (up-sell answers
``"strategy": "default"``, the ranking it ran), nor its ``rules`` on ``score``.

Assignment: a unit (``user_id``, else ``session_id``) maps to ``u = H(salt, unit)``,
the first 8 bytes of ``sha256(f"{salt}:{unit}")`` read big-endian over ``2**64``:
uniform in [0, 1), the same in every process, machine and restart. The holdout uses
its own salt; in a layer, experiments take consecutive ranges of ``u`` (their
coverage); inside an experiment a second hash with the experiment's salt picks the
variant by weight. Changing a salt reshuffles; changing the order of experiments in
a layer moves their ranges (append new ones at the end). A salt may not serve two
draws (an experiment named like its layer would share the layer's default salt), except
for experiments of one layer, which no unit is in together.

The server re-reads the file on every reload (``POST /admin/reload``, and the file watch
when its mtime or size changes), in every worker, like a rules file; an invalid edit is
refused and the previous config keeps serving. Assignment depends on the config only,
so a unit keeps its variant in every experiment a reload leaves unchanged. Each
exposure records the config's :attr:`Experiments.version`: its ``version`` key when it
has one, else a hash of its contents, so rows logged before and after an edit differ.

Examples
--------
>>> exp = Experiments.from_dict({"layers": [{"name": "ranking", "experiments": [
...     {"name": "s", "coverage": 1.0, "variants": [
...         {"name": "a", "weight": 1}, {"name": "b", "weight": 1,
...                                       "strategy": "visual"}]}]}]})
>>> a = exp.assign("user-1")
>>> a.experiment, a.variant in ("a", "b")
('s', True)
>>> exp.assign("user-1") == a       # deterministic
True
>>> round(unit_hash("salt", "unit"), 6)
0.403259
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Iterable

from features.configfiles import load_json, load_yaml
from features.exceptions import DuplicateKeyError, InputError, SchemaError

from api.schemas import STRATEGIES

#: Keys a variant may set besides ``name`` and ``weight``.
VARIANT_SETTINGS: tuple[str, ...] = ("strategy", "model", "rules", "params")
HOLDOUT = "holdout"


@dataclasses.dataclass(frozen=True)
class VariantParam:
    """An engine setting a variant's ``params`` may set: its range, and the endpoints
    whose engine calls take it (the blueprints pass it as a keyword argument)."""

    low: float
    high: float
    endpoints: tuple[str, ...]


#: The ``params`` a variant may set. Only knobs the engine has: a key the engine does
#: not read would make its arm an A/A test.
VARIANT_PARAMS: dict[str, VariantParam] = {
    # Engine.complements/upsell(diversity=...): the MMR re-ranking's 1 - lam
    "diversity": VariantParam(0.0, 1.0, ("complements", "upsell", "preview")),
}


def unit_hash(salt: str, unit: str) -> float:
    """Uniform number in [0, 1) from ``sha256(f"{salt}:{unit}")`` (first 8 bytes).

    Stable across processes, machines and Python versions (unlike ``hash()``).
    """
    digest = hashlib.sha256(f"{salt}:{unit}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    settings: dict  # subset of VARIANT_SETTINGS


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    layer: str
    salt: str
    coverage: float
    start: float            # the experiment's range in its layer is [start, start+coverage)
    variants: tuple[Variant, ...]
    qa_override: bool = False
    endpoints: tuple[str, ...] | None = None  # None: every endpoint
    # the endpoints where a variant's setting changes the answer (SETTING_ENDPOINTS);
    # None: no variant sets one (a page-side experiment, read from the envelope)
    acts_on: tuple[str, ...] | None = None

    def pick(self, unit: str) -> Variant:
        """The variant of ``unit`` by weight (a second hash, with this salt)."""
        total = sum(v.weight for v in self.variants)
        x = unit_hash(self.salt, unit) * total
        acc = 0.0
        for v in self.variants:
            acc += v.weight
            if x < acc:
                return v
        return self.variants[-1]  # x == total is impossible, but float sums can round

    def applies_to(self, endpoint: str | None) -> bool:
        """Whether a request on ``endpoint`` is in this experiment (None: any). Not
        where none of its variants' settings acts: the exposure logged there would
        count a unit in an arm that saw nothing different, and dilute the effect."""
        if endpoint is None:
            return True
        if self.endpoints is not None and endpoint not in self.endpoints:
            return False
        return self.acts_on is None or endpoint in self.acts_on

    @property
    def inert_endpoints(self) -> tuple[str, ...]:
        """The endpoints the experiment lists where none of its variants' settings
        acts: :meth:`applies_to` leaves it out of their requests (no assignment entry,
        no exposure). Not refused, since the A/B report reads old files again; the
        server logs them at load (:func:`api.state.build_state`)."""
        if self.endpoints is None or self.acts_on is None:
            return ()
        return tuple(p for p in self.endpoints if p not in self.acts_on)


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    salt: str
    experiments: tuple[Experiment, ...]


@dataclasses.dataclass(frozen=True)
class Assignment:
    """What a unit sees on one request: its (layer, experiment, variant) triples and
    the merged settings of its variants."""

    unit: str | None
    entries: tuple[tuple[str, str, str, bool], ...] = ()  # layer, experiment, variant, forced
    settings: dict = dataclasses.field(default_factory=dict)
    #: experiment -> the params its variant set (those experiments only): echoed in
    #: that experiment's entry of :meth:`as_list`
    params_of: dict = dataclasses.field(default_factory=dict)

    @property
    def params(self) -> dict:
        """The engine keyword arguments of the variants' ``params`` (validated at load
        to be ones the assigned endpoint's engine call takes)."""
        return dict(self.settings.get("params", {}))

    @property
    def experiment(self) -> str | None:
        return ",".join(e[1] for e in self.entries) or None

    @property
    def variant(self) -> str | None:
        return ",".join(e[2] for e in self.entries) or None

    def as_list(self) -> list[dict]:
        # a new key, only in the entry of a variant that sets params: a page reading
        # the four keys of every entry reads them as before
        return [{"layer": l, "experiment": e, "variant": v, "forced": f,
                 **({"params": dict(self.params_of[e])} if e in self.params_of else {})}
                for l, e, v, f in self.entries]


NO_ASSIGNMENT = Assignment(unit=None)


class Experiments:
    """A validated experiments config. Build with :meth:`load` or :meth:`from_dict`."""

    def __init__(self, layers: tuple[Layer, ...] = (), holdout_fraction: float = 0.0,
                 holdout_salt: str = HOLDOUT, source: str | None = None,
                 version: str | None = None):
        self.layers = layers
        self.holdout_fraction = holdout_fraction
        self.holdout_salt = holdout_salt
        self.source = source
        self.version = version      # None: no config (no experiments)
        self._by_name = {e.name: e for l in layers for e in l.experiments}

    # -- loading --------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, *, models: Iterable[str] = (),
             rules: Iterable[str] = ()) -> "Experiments":
        """Read and validate a TOML/YAML/JSON file; errors name the line or the key."""
        path = Path(path)
        try:
            text = read_config_file(path, "experiments")
        except FileNotFoundError:
            raise InputError(f"experiments file {path} does not exist",
                             field="experiments") from None
        data = parse_config_text(text, path.suffix.lower(), str(path))
        return cls.from_dict(data, models=models, rules=rules, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, models: Iterable[str] = (), rules: Iterable[str] = (),
                  source: str | None = None) -> "Experiments":
        """Validate a decoded config. ``models``/``rules``: names variants may reference."""
        where = source or "experiments"
        v = _Validator(where, set(models), set(rules))
        return v.config(data, source)

    # -- assignment -----------------------------------------------------------
    def experiment(self, name: str) -> Experiment | None:
        return self._by_name.get(name)

    def in_holdout(self, unit: str) -> bool:
        return unit_hash(self.holdout_salt, unit) < self.holdout_fraction

    def assign(self, unit: str | None, *, endpoint: str | None = None,
               forced: str | None = None) -> Assignment:
        """Assign ``unit`` on ``endpoint``; ``forced`` is ``[experiment:]variant``.

        Raises :class:`InputError` (field ``variant``) when the forced variant is
        unknown, ambiguous, or its experiment does not allow forcing.
        """
        forced_exp, forced_var = self._resolve_forced(forced) if forced else (None, None)
        entries: list[tuple[str, str, str, bool]] = []
        settings: dict = {}
        params_of: dict = {}
        holdout = unit is not None and self.holdout_fraction > 0 and self.in_holdout(unit)
        if holdout and forced_exp is None:
            return Assignment(unit, ((HOLDOUT, HOLDOUT, HOLDOUT, False),), {})
        for layer in self.layers:
            chosen: tuple[Experiment, Variant, bool] | None = None
            if forced_exp is not None and forced_exp.layer == layer.name:
                chosen = (forced_exp, forced_var, True)
            elif unit is not None and not holdout:
                u = unit_hash(layer.salt, unit)
                for exp in layer.experiments:
                    if exp.start <= u < exp.start + exp.coverage:
                        chosen = (exp, exp.pick(unit), False)
                        break
            if chosen is None or not chosen[0].applies_to(endpoint):
                continue
            exp, var, is_forced = chosen
            entries.append((layer.name, exp.name, var.name, is_forced))
            # layers set disjoint keys (validated). Only the settings that act here: an
            # experiment a param brings into up-sell would pass (and echo) its
            # variant's strategy, which up-sell ranks without
            acting = {k: v for k, v in var.settings.items() if _acts_here(k, v, endpoint)}
            settings.update(acting)
            if "params" in acting:
                params_of[exp.name] = acting["params"]
        return Assignment(unit, tuple(entries), settings, params_of)

    def _resolve_forced(self, forced: str) -> tuple[Experiment, Variant]:
        if ":" in forced:
            exp_name, var_name = forced.split(":", 1)
            exps = [self._by_name[exp_name]] if exp_name in self._by_name else []
        else:
            var_name = forced
            exps = [e for e in self._by_name.values()
                    if any(v.name == var_name for v in e.variants)]
        matches = [(e, v) for e in exps for v in e.variants if v.name == var_name]
        if not matches:
            known = sorted(f"{e.name}:{v.name}" for e in self._by_name.values()
                           for v in e.variants)
            if not known:
                raise InputError(f"unknown variant {forced!r}: no experiment is running, "
                                 "so there is no variant to force", field="variant",
                                 value=forced)
            raise InputError(f"unknown variant {forced!r}", field="variant", value=forced,
                             allowed=known)
        if len(matches) > 1:
            raise InputError(f"variant {forced!r} is in several experiments; give it as "
                             "experiment:variant", field="variant", value=forced,
                             allowed=[f"{e.name}:{v.name}" for e, v in matches])
        exp, var = matches[0]
        if not exp.qa_override:
            raise InputError(f"experiment {exp.name!r} does not allow forcing a variant "
                             "(set qa_override = true in its config)", field="variant",
                             value=forced)
        return exp, var

    def served_together(self) -> set[tuple[str | None, str | None]]:
        """The ``(model, rules)`` pairs a request may be served with (None: the main
        bundle, the served ``RULES``): a rules file must hold for every bundle it meets.

        Layers are independent, so a ``model`` layer's variants meet every variant of
        a ``rules`` layer; in one layer only a variant's own pair is served. None is
        always possible (the holdout, a request without a unit, an endpoint outside
        the experiment), so the pairs may include a few no unit is assigned.

        >>> Experiments.from_dict({"layers": [{"name": "l", "experiments": [
        ...     {"name": "e", "variants": [{"name": "a", "model": "m2"},
        ...                                {"name": "b", "rules": "v2"}]}]}]},
        ...     models=["m2"], rules=["v2"]).served_together() == {
        ...     (None, None), ("m2", None), (None, "v2")}
        True
        """
        layer_of: dict[str, str] = {}
        names: dict[str, set] = {"model": {None}, "rules": {None}}
        for layer in self.layers:
            for e in layer.experiments:
                for v in e.variants:
                    for key in names:
                        if key in v.settings:
                            layer_of[key] = layer.name   # one layer per key (validated)
                            names[key].add(v.settings[key])
        if "model" in layer_of and layer_of["model"] == layer_of.get("rules"):
            return {(None, None)} | {
                (v.settings.get("model"), v.settings.get("rules"))
                for layer in self.layers if layer.name == layer_of["model"]
                for e in layer.experiments for v in e.variants}
        return {(m, r) for m in names["model"] for r in names["rules"]}

    def allocation(self) -> dict[str, dict[str, float]]:
        """Each experiment's variant weights, ``{experiment: {variant: weight}}``: what
        the A/B report needs of a version to check its sample ratio. The event store
        records it with the version's first exposure, since the file itself may be
        edited before the analysis."""
        return {e.name: {v.name: v.weight for v in e.variants}
                for l in self.layers for e in l.experiments}

    def variant_params(self) -> dict[str, dict[str, dict]]:
        """``{experiment: {variant: params}}`` of the variants that set params: what an
        exposure's variant meant, recorded with the version's weights."""
        return {e.name: {v.name: v.settings["params"] for v in e.variants
                         if v.settings.get("params")}
                for l in self.layers for e in l.experiments
                if any(v.settings.get("params") for v in e.variants)}

    def check_recorded(self, recorded: dict | None, *,
                       recorded_params: dict | None = None) -> None:
        """Refuse this config if its version was recorded with other weights, or with
        other params (``recorded_params``, :meth:`variant_params` as recorded; ``None``
        when the record has none: a server before params were kept).

        ``recorded`` is the allocation the events database holds for
        :attr:`version` (:meth:`api.events.EventStore.recorded_allocation`). The
        first record of a version stands and the A/B report checks the version's
        sample ratio against it, so an edit of the weights that keeps the ``version``
        key would be reported against the old weights. Refused rather than given a
        version of its own from the contents: the version is the name a data
        scientist writes and asks the report for, and a renamed one would split their
        data under a name they never wrote. Weights with the same shares (1:1 and
        2:2) and experiments removed change nothing recorded, and pass; an experiment
        added is refused as well, since the record holds no weights for it. Params
        likewise: an exposure names its variant, not what it set, so rows logged
        before and after an edit of a diversity under one version would be read as
        one arm.
        """
        if not recorded or self.version is None:
            return
        changed = [name for name, weights in self.allocation().items()
                   if not _same_shares(weights, recorded.get(name))]
        if changed:
            name = changed[0]
            now = _weights(self.allocation()[name])
            # an experiment added under the version has no weights on record: "other
            # weights (not in it)" read as if the record were wrong
            what = (f"with other weights for experiment {name!r} "
                    f"({_weights(recorded[name])}; now {now})" if recorded.get(name)
                    else f"without experiment {name!r} (now {now})")
            raise InputError(
                f"experiments file {self.source}: version {self.version!r} was recorded "
                f"{what}: the A/B report checks each version's sample ratio against the "
                f"weights first recorded for it; bump the file's version key to change "
                f"the weights",
                field="experiments", value=self.version)
        self._check_recorded_params(recorded_params)

    def describe(self) -> dict:
        return {"source": self.source, "version": self.version,
                "holdout": self.holdout_fraction,
                "layers": [{"name": l.name, "experiments": [
                    {"name": e.name, "coverage": e.coverage,
                     "variants": [v.name for v in e.variants]} for e in l.experiments]}
                    for l in self.layers]}

    def _check_recorded_params(self, recorded: dict | None) -> None:
        if recorded is None:
            return
        now = self.variant_params()
        for name in self.allocation():   # experiments removed since change nothing
            was, new = recorded.get(name, {}), now.get(name, {})
            if was != new:
                raise InputError(
                    f"experiments file {self.source}: version {self.version!r} was "
                    f"recorded with other params for experiment {name!r} "
                    f"({_params(was)}; now {_params(new)}): an exposure names its "
                    f"variant, and the A/B report would read the rows before and after "
                    f"the edit as one arm; bump the file's version key to change them",
                    field="experiments", value=self.version)


def _params(by_variant: dict) -> str:
    return ", ".join(f"{v} {json.dumps(p, sort_keys=True)}"
                     for v, p in sorted(by_variant.items())) or "none"


def _same_shares(a: dict | None, b: dict | None) -> bool:
    """The same variants with the same shares of the experiment's units."""
    if not a or not b or a.keys() != b.keys():
        return False
    ta, tb = sum(a.values()), sum(b.values())
    return all(math.isclose(a[v] / ta, b[v] / tb, rel_tol=1e-9) for v in a)


def _weights(weights: dict) -> str:
    return ", ".join(f"{v} {w:g}" for v, w in weights.items())


def read_config_file(path: Path, field: str) -> str:
    """The UTF-8 text of a config file (a byte-order mark dropped); a folder or another
    encoding is an :class:`InputError` naming the path (not a traceback from ``mixmatch
    serve``). A missing file raises ``FileNotFoundError`` for the caller to word."""
    if path.is_dir():
        raise InputError(f"{path} is not a file (a folder)", field=field, value=str(path))
    try:
        # utf-8-sig: a byte-order mark (Notepad's UTF-8) is not part of the text
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})", field=field,
                         value=str(path)) from None


def parse_config_text(text: str, suffix: str, where: str) -> Any:
    """Decode TOML/YAML/JSON text; syntax errors name the line.

    A key given twice in one table is refused in every format, naming the key and its
    line: TOML refuses it by its spec, while ``json.loads`` and ``yaml.safe_load``
    keep the last value, so a file with two ``coverage`` keys served the one a reader
    of its top did not see.

    >>> parse_config_text('{"a": 1, "a": 2}', ".json", "x.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    features.exceptions.SchemaError: x.json: line 1: duplicate key 'a' (first at ...
    """
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            return load_yaml(text)
        if suffix == ".json":
            return load_json(text)
    except DuplicateKeyError as exc:
        raise SchemaError(f"{where}: {exc}", field=exc.path or where,
                          value=exc.key) from None
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{where}: {exc}", field=where) from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{where}: line {exc.lineno}: {exc.msg}", field=where) from None
    except Exception as exc:  # yaml.YAMLError: its message carries line and column
        if type(exc).__module__.startswith("yaml"):
            raise SchemaError(f"{where}: {exc}", field=where) from None
        raise
    raise SchemaError(f"{where}: unknown config format {suffix!r}", field=where,
                      allowed=[".toml", ".yaml", ".yml", ".json"])


class _Validator:
    """Walks a decoded config; every error names its key path, e.g.
    ``layers[0].experiments[1].variants[0].weight``."""

    def __init__(self, where: str, models: set[str], rules: set[str]):
        self.where = where
        self.models = models
        self.rules = rules

    def fail(self, key: str, msg: str, allowed=None):
        raise SchemaError(f"{self.where}: {key}: {msg}", field=key, allowed=allowed)

    def mapping(self, obj, key, allowed_keys):
        if not isinstance(obj, dict):
            self.fail(key or "(top level)", f"must be a table/mapping, got "
                      f"{type(obj).__name__}")
        for k in obj:
            if k not in allowed_keys:
                self.fail(f"{key}.{k}" if key else k, "unknown key", allowed=allowed_keys)
        return obj

    def string(self, obj, key, *, required=True, default=None):
        if obj is None and not required:
            return default
        if not isinstance(obj, str) or not obj or len(obj) > 128 or "," in obj \
                or ":" in obj:
            self.fail(key, f"must be a non-empty string without ',' or ':' (at most 128 "
                      f"characters), got {obj!r}")
        return obj

    def number(self, obj, key, lo, hi, *, lo_open=False, default=None):
        if obj is None and default is not None:
            return default
        if isinstance(obj, bool) or not isinstance(obj, (int, float)) \
                or not math.isfinite(obj) or obj > hi or obj < lo or (lo_open and obj == lo):
            self.fail(key, f"must be a number in {'(' if lo_open else '['}{lo}, {hi}], "
                      f"got {obj!r}")
        return float(obj)

    def config(self, data, source) -> Experiments:
        self.mapping(data, "", ["version", "salt", "holdout", "layers"])
        version = self.version(data)
        salt = self.string(data.get("salt"), "salt", required=False, default="mixmatch")
        # absent or YAML's empty ``holdout:`` is none; 0 or [] is a mistake, not none
        holdout = data.get("holdout")
        holdout = {} if holdout is None else holdout
        self.mapping(holdout, "holdout", ["fraction", "salt"])
        fraction = self.number(holdout.get("fraction", 0.0), "holdout.fraction", 0.0, 0.5)
        h_salt = self.string(holdout.get("salt"), "holdout.salt", required=False,
                             default=f"{salt}:{HOLDOUT}")
        # salt -> (key path, layer): a salt used twice makes two hashes one, so the
        # second draw follows the first (e.g. an experiment named like its layer would
        # pick its variant from the very number that placed it in the layer's range)
        salts: dict[str, tuple[str, str | None]] = {}
        if fraction > 0:
            salts[h_salt] = ("holdout.salt", None)
        layers_raw = data.get("layers", [])
        if not isinstance(layers_raw, list):
            self.fail("layers", "must be a list of tables")
        layers, exp_names, layer_names = [], set(), set()
        layer_keys: dict[str, str] = {}   # setting key -> layer that sets it
        for li, lraw in enumerate(layers_raw):
            lk = f"layers[{li}]"
            self.mapping(lraw, lk, ["name", "salt", "experiments"])
            lname = self.string(lraw.get("name"), f"{lk}.name")
            if lname in layer_names or lname == HOLDOUT:
                self.fail(f"{lk}.name", f"duplicate or reserved layer name {lname!r}")
            layer_names.add(lname)
            lsalt = self.string(lraw.get("salt"), f"{lk}.salt", required=False,
                                default=f"{salt}:{lname}")
            self.unique_salt(salts, lsalt, f"{lk}.salt", None)
            exps_raw = lraw.get("experiments", [])
            if not isinstance(exps_raw, list) or not exps_raw:
                self.fail(f"{lk}.experiments", "must be a non-empty list of tables")
            start, exps = 0.0, []
            for ei, eraw in enumerate(exps_raw):
                ek = f"{lk}.experiments[{ei}]"
                self.mapping(eraw, ek, ["name", "salt", "coverage", "qa_override",
                                        "endpoints", "variants"])
                ename = self.string(eraw.get("name"), f"{ek}.name")
                if ename in exp_names or ename == HOLDOUT:
                    self.fail(f"{ek}.name", f"duplicate or reserved experiment name "
                              f"{ename!r} (names are unique across layers)")
                exp_names.add(ename)
                cov = self.number(eraw.get("coverage", 1.0), f"{ek}.coverage", 0.0, 1.0,
                                  lo_open=True)
                if start + cov > 1.0 + 1e-9:
                    self.fail(f"{ek}.coverage", f"coverages in layer {lname!r} add up to "
                              f"{start + cov:g} > 1")
                qa = eraw.get("qa_override", False)
                if not isinstance(qa, bool):
                    self.fail(f"{ek}.qa_override", f"must be true or false, got {qa!r}")
                endpoints = eraw.get("endpoints")
                if endpoints is not None:
                    if not isinstance(endpoints, list) or not endpoints or any(
                            p not in ENDPOINTS for p in endpoints):
                        self.fail(f"{ek}.endpoints", f"must be a non-empty list of "
                                  f"endpoint names, got {endpoints!r}", allowed=ENDPOINTS)
                    endpoints = tuple(endpoints)
                variants = self.variants(eraw.get("variants"), f"{ek}.variants", lname,
                                         layer_keys, endpoints or tuple(ENDPOINTS))
                esalt = self.string(eraw.get("salt"), f"{ek}.salt", required=False,
                                    default=f"{salt}:{ename}")
                self.unique_salt(salts, esalt, f"{ek}.salt", lname)
                exps.append(Experiment(ename, lname, esalt, cov, start, variants, qa,
                                       endpoints, _acts_on(variants)))
                start += cov
            layers.append(Layer(lname, lsalt, tuple(exps)))
        return Experiments(tuple(layers), fraction, h_salt, source, version)

    def version(self, data: dict) -> str:
        """The config's ``version`` (a non-empty string or integer, as a rules file's,
        taken as given: bump it with each edit), else the first 12 hex digits of the
        SHA-256 of its canonical JSON, the same in every worker, and new with any edit
        that changes what the file says."""
        if "version" not in data:
            blob = json.dumps(data, sort_keys=True, default=str).encode("utf-8")
            return hashlib.sha256(blob).hexdigest()[:12]
        v = data["version"]
        if isinstance(v, bool) or not isinstance(v, (str, int)) or str(v) == "":
            self.fail("version", f"must be a non-empty string or integer, got {v!r}")
        return str(v)

    def unique_salt(self, salts: dict, value: str, key: str, layer: str | None) -> None:
        """Refuse a salt already drawn with, unless both are experiments of one layer
        (their ranges are disjoint, so no unit meets both draws)."""
        other = salts.get(value)
        if other is not None and not (layer is not None and other[1] == layer):
            self.fail(key, f"salt {value!r} is also the salt of {other[0]}: units would "
                      "be assigned by one hash twice, so the split is not random (set a "
                      "distinct salt, or a distinct name when the salt is the default)")
        salts.setdefault(value, (key, layer))

    def variants(self, raw, key, layer, layer_keys, endpoints) -> tuple[Variant, ...]:
        if not isinstance(raw, list) or len(raw) < 1:
            self.fail(key, "must be a non-empty list of variants")
        out, names = [], set()
        for vi, vraw in enumerate(raw):
            vk = f"{key}[{vi}]"
            self.mapping(vraw, vk, ["name", "weight", *VARIANT_SETTINGS])
            name = self.string(vraw.get("name"), f"{vk}.name")
            if name in names:
                self.fail(f"{vk}.name", f"duplicate variant name {name!r}")
            names.add(name)
            weight = self.number(vraw.get("weight", 1), f"{vk}.weight", 0.0, 1e6,
                                 lo_open=True)
            settings = {}
            for s in VARIANT_SETTINGS:
                if s not in vraw:
                    continue
                val = vraw[s]
                if s == "strategy" and val not in STRATEGIES:
                    self.fail(f"{vk}.strategy", f"unknown strategy {val!r}",
                              allowed=STRATEGIES)
                if s in ("model", "rules") and not isinstance(val, str):
                    # checked first: a list or table cannot be looked up in a set
                    self.fail(f"{vk}.{s}", f"must be a name (a string), got {val!r}")
                if s == "model" and val not in self.models:
                    self.fail(f"{vk}.model", f"unknown model {val!r} (the app's MODELS "
                              "names them)", allowed=sorted(self.models))
                if s == "rules" and val not in self.rules:
                    self.fail(f"{vk}.rules", f"unknown rules {val!r} (the app's "
                              "RULES_FILES names them)", allowed=sorted(self.rules))
                if s == "params":
                    val = self.params(val, f"{vk}.params", endpoints)
                owner = layer_keys.setdefault(s, layer)
                if owner != layer:
                    # two layers setting one key would make the merged variant depend
                    # on layer order: refuse it so layers stay independent
                    self.fail(f"{vk}.{s}", f"{s!r} is already set by layer {owner!r}; "
                              "layers must set different keys")
                settings[s] = val
            out.append(Variant(name, float(weight), settings))
        return tuple(out)

    def params(self, raw, key, endpoints) -> dict:
        """A variant's ``params``: keys of :data:`VARIANT_PARAMS`, each in its range
        and honoured on every endpoint of the experiment (numbers kept as floats)."""
        if not isinstance(raw, dict):
            self.fail(key, f"must be a table/mapping, got {raw!r}")
        out = {}
        for name, val in raw.items():
            spec = VARIANT_PARAMS.get(name)
            if spec is None:
                self.fail(f"{key}.{name}", f"unknown param {name!r} (the engine takes "
                          f"no such setting)", allowed=sorted(VARIANT_PARAMS))
            out[name] = self.number(val, f"{key}.{name}", spec.low, spec.high)
            inert = [p for p in endpoints if p not in spec.endpoints]
            if inert:
                self.fail(f"{key}.{name}", f"params.{name} has no effect on endpoint "
                          f"{inert[0]} (it has on {', '.join(spec.endpoints)}): the arm "
                          f"would be an A/A test there; limit the experiment's endpoints "
                          f"to those", allowed=list(spec.endpoints))
        return out


#: Endpoint names an experiment may be limited to.
ENDPOINTS: list[str] = ["complements", "upsell", "complete", "score", "search",
                        "search_image", "analyze", "preview"]

#: The endpoints where a variant's ``strategy``, ``rules`` or ``model`` changes the
#: answer (what the blueprints pass to the engine; ``params``: :data:`VARIANT_PARAMS`).
SETTING_ENDPOINTS: dict[str, tuple[str, ...]] = {
    # up-sell validates and echoes the strategy but ranks by similarity whatever it
    # is; search, score and analyze take none
    "strategy": ("complements", "complete", "preview"),
    # score and analyze take no rules
    "rules": ("complements", "upsell", "complete", "search", "search_image", "preview"),
    # every endpoint asks the variant's engine (analyze: its bundle's attribute models)
    "model": tuple(ENDPOINTS),
}


def _acts_here(key: str, value: Any, endpoint: str | None) -> bool:
    """Whether a variant's setting ``key`` acts on ``endpoint`` (None: any)."""
    if endpoint is None:
        return True
    if key == "params":   # validated to act on every endpoint of its experiment
        return all(endpoint in VARIANT_PARAMS[name].endpoints for name in value)
    return endpoint in SETTING_ENDPOINTS[key]


def _acts_on(variants: tuple[Variant, ...]) -> tuple[str, ...] | None:
    """The endpoints where any of ``variants``' settings acts, in ENDPOINTS order;
    None when none sets one."""
    acts: set[str] = set()
    sets_any = False
    for v in variants:
        for key, val in v.settings.items():
            if key == "params":   # an empty ``params`` table sets nothing
                acts.update(p for name in val for p in VARIANT_PARAMS[name].endpoints)
                sets_any = sets_any or bool(val)
            else:
                acts.update(SETTING_ENDPOINTS[key])
                sets_any = True
    return tuple(p for p in ENDPOINTS if p in acts) if sets_any else None
