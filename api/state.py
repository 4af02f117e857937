"""The one accessor for heavy serving state, and its atomic live reload.

Everything a request reads that is expensive to build or that a reload may change (the
engine with its bundle, the rules files, the engines of other models, the experiments
config) lives in one immutable :class:`ServingState`. A :class:`StateHolder` keeps the
current one; a reload builds a complete new state *beside* the old and swaps a single
reference, so:

- a request takes one reference at its start (:func:`get_state`, cached on ``g``)
  and is served wholly by that version, even if a reload lands meanwhile;
- a bundle, rules or experiments file that fails to load is refused with the reason
  and the previous state keeps serving.

Reloads come from ``POST /admin/reload`` (token-protected) or from the file watch: at
most once per ``WATCH_INTERVAL`` seconds per worker a request stats the bundle manifest,
the rules files, the experiments file and the control file; a change starts a reload in
a background thread (requests keep being served by the old state meanwhile), which
re-reads every one of those files. The control file carries admin reloads to every
gunicorn worker: the worker that took the request validates and swaps, then writes the
new paths there; the others follow on their next check. With the watch off
(``WATCH_INTERVAL = 0``) the control file alone is still read, at most once per
:data:`CONTROL_INTERVAL` seconds, so every worker follows an admin reload.

Examples
--------
>>> import json, tempfile
>>> from pathlib import Path
>>> p = Path(tempfile.mkdtemp()) / "v.json"
>>> _ = p.write_text('{"v": 1}')
>>> holder = StateHolder(lambda spec: json.loads(Path(spec["bundle"]).read_text()),
...                      {"bundle": str(p)})
>>> holder.current()["v"]
1
>>> _ = p.write_text('{"v": ')                # broken: refused, old state serves
>>> holder.reload()                             # doctest: +ELLIPSIS
Traceback (most recent call last):
...
api.state.ReloadRefused: ...
>>> holder.current()["v"]
1
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from flask import current_app, g

from features.exceptions import BundleBeingBuilt, InputError, MixmatchError, NotFittedError

from api.experiments import Experiments

log = logging.getLogger(__name__)

EXTENSION = "mixmatch"
DEFAULT_RULES = "default"
#: Seconds between reads of the control file per worker when the file watch is off.
CONTROL_INTERVAL = 1.0


class ReloadRefused(InputError):
    """A new bundle, rules or experiments file failed to load; the previous one keeps
    serving."""

    http_status = 422


@dataclasses.dataclass(frozen=True)
class RulesVersion:
    name: str
    rules: Any            # recommender.rules.Rules (None: the engine's own default)
    version: str
    path: str | None


@dataclasses.dataclass(frozen=True)
class ServingState:
    """One consistent serving version: never mutated, only replaced."""

    engine: Any
    bundle_path: str
    bundle_version: str
    image_root: Path | None
    rules: dict[str, RulesVersion]          # name -> rules; DEFAULT_RULES always present
    models: dict[str, Any]                  # variant ``model`` name -> engine
    spec: dict                              # the paths it was built from
    signature: tuple                        # file stats the watch compares
    loaded_at: float
    generation: str
    bundle_signature: tuple = ()            # the bundles' manifest stats when loaded
    # the A/B config (api.experiments.Experiments; empty when EXPERIMENTS is not set):
    # here, not beside the holder, so a reload re-reads it and a request assigns its
    # unit with the config of the state that serves it
    experiments: Any = dataclasses.field(default_factory=Experiments)
    # model name (DEFAULT_RULES: the main engine) -> served rules name -> category
    # pairs those rules ask for that the engine's graph holds no neighbours for
    graph_pairing_gaps: dict = dataclasses.field(default_factory=dict)
    # variant ``model`` name -> its bundle's image root (None: it has none): a model
    # arm's photos are its own bundle's, not the main one's
    model_image_roots: dict = dataclasses.field(default_factory=dict)

    def engine_for(self, model: str | None) -> Any:
        if not model or model == DEFAULT_RULES:
            return self.engine
        return self.models[model]

    def image_root_for(self, model: str | None) -> Path | None:
        """The image root of the bundle ``model`` serves (None or ``"default"``: the
        main bundle's)."""
        if not model or model == DEFAULT_RULES:
            return self.image_root
        return self.model_image_roots.get(model)

    def rules_for(self, name: str | None) -> RulesVersion:
        return self.rules[name or DEFAULT_RULES]

    def describe(self) -> dict:
        return {"bundle": self.bundle_path, "bundle_version": self.bundle_version,
                "rules_version": self.rules[DEFAULT_RULES].version,
                "rules": {k: v.version for k, v in self.rules.items()},
                "experiments_version": self.experiments.version,
                "generation": self.generation}


# -- loading ---------------------------------------------------------------------------
def _stat(path: str | os.PathLike | None) -> tuple:
    if not path:
        return (None,)
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None)
    return (str(path), st.st_mtime_ns, st.st_size)


def state_signature(spec: dict) -> tuple:
    """What the watch compares: manifest, rules and experiments files (path, mtime,
    size)."""
    bundle = spec.get("bundle")
    parts = [_stat(Path(bundle) / "manifest.json" if bundle else None),
             _stat(spec.get("rules") or _bundle_rules(bundle)),
             _stat(spec.get("experiments"))]
    for name in sorted(spec.get("rules_files") or {}):
        parts.append(_stat(spec["rules_files"][name]))
    for name in sorted(spec.get("models") or {}):
        parts.append(_stat(Path(spec["models"][name]) / "manifest.json"))
    return tuple(parts)


def _bundle_rules(bundle: str | os.PathLike | None) -> Path | None:
    """The bundle's own rules file, served when ``RULES`` is not set (as the engine
    loads it: ``<bundle>/rules/rules.toml``)."""
    return Path(bundle) / "rules" / "rules.toml" if bundle else None


def load_rules_file(path: str | os.PathLike, engine: Any = None) -> tuple[Any, str]:
    """Load a merchandiser rules file with :func:`recommender.rules.load_rules`, and
    check the fields it names exist in the engine's catalogue (when it can say)."""
    from recommender.rules import load_rules
    rules = load_rules(path)
    check_rules_for(rules, path, engine)
    return rules, str(rules.version)


def check_rules_for(rules: Any, path, engine: Any) -> None:
    """Check the fields and values ``rules`` names exist in ``engine``'s catalogue (when
    it can say: :class:`recommender.rules.RulesError` naming ``path`` and the key), and
    log the item ids it lacks (:func:`_log_unknown_item_ids`)."""
    vocab = getattr(engine, "attribute_vocab", None)
    if vocab is not None:
        from recommender.rules import RulesError, in_file, validate_rules_fields
        try:
            validate_rules_fields(rules, vocab)
        except RulesError as exc:
            raise in_file(exc, path) from None
    table = getattr(engine, "table", None)
    if table is not None:
        _log_unknown_item_ids(rules, table, path, engine)


def check_rules_for_models(rules: dict[str, RulesVersion], models: dict[str, Any],
                           spec: dict, experiments: Experiments) -> None:
    """Check each rules version against every ``MODELS`` bundle the experiments serve it
    with (:meth:`api.experiments.Experiments.served_together`), as the main bundle's are
    when they load. A rules file is checked against the main catalogue only, while a
    variant's ``model`` serves another: a field or value only the main one has made an
    include filter hide every item of that arm, and a boost or exclusion do nothing,
    without a word. Raises :class:`recommender.rules.RulesError` naming the rules file,
    the model and its bundle."""
    from recommender.rules import RulesError
    for model, name in sorted(experiments.served_together(), key=str):
        rv = rules.get(name or DEFAULT_RULES)
        if model is None or model not in models or rv is None or rv.rules is None:
            continue
        where = rv.path or _rules_label(spec)
        try:
            check_rules_for(rv.rules, where, models[model])
        except RulesError as exc:
            out = RulesError(f"{exc} (the catalogue of MODELS {model!r}, bundle "
                             f"{spec['models'][model]}, which the experiments serve "
                             f"rules {name or DEFAULT_RULES!r} with)", field=exc.field,
                             value=exc.value)
            out.allowed = exc.allowed
            raise out from None


def _rules_label(spec: dict) -> str:
    """What the served rules are when ``RULES`` is not set: the bundle's own file, or
    the packaged defaults."""
    own = _bundle_rules(spec.get("bundle"))
    return str(own) if own is not None and own.is_file() else "the packaged default rules"


#: What :func:`_warn_once` has logged in this process (a worker inherits what the
#: gunicorn master logged before it forked)
_warned: set[tuple] = set()
_warned_lock = threading.Lock()


def _warn_once(key: tuple, msg: str, *args) -> None:
    """``log.warning(msg, *args)`` the first time ``key`` is seen in this process: every
    reload (each file-watch tick that saw any change, every admin reload, in every
    worker) builds the state again, and repeated what it found while it lasted."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(msg, *args)


def _log_unknown_item_ids(rules: Any, table: Any, path, engine: Any) -> None:
    """Log, once per process for one file version and bundle, the item ids a rules
    file names that the catalogue lacks: served all the same (a catalogue changes
    under its rules; a delisted item may stay excluded), but a typo'd pin did nothing
    and an allow-list of unknown ids hid every item without a word."""
    from recommender.rules import unknown_item_ids
    unknown = unknown_item_ids(rules, table)
    if not unknown:
        return
    root = getattr(getattr(engine, "bundle", None), "root", None)
    key = ("unknown ids", str(path), str(rules.version), str(root),
           str(sorted(unknown.items())))
    _warn_once(key, "rules file %s (version %s) names item ids bundle %s does not hold: "
               "%s; those rules do nothing (an include_ids of them hides every item)",
               path, rules.version, root,
               "; ".join(f"{k}: {', '.join(map(repr, v))}" for k, v in unknown.items()))


def _log_inert_endpoints(experiments: Experiments) -> None:
    """Log, once per process for one experiments version, each experiment that lists
    endpoints where none of its variants' settings acts (a ``strategy`` arm limited
    to ``upsell``, ``search``): it is left out of those requests without a word, so
    its report shows no exposure there. Served all the same: refusing the file would
    break the old configs the A/B report reads again."""
    for layer in experiments.layers:
        for exp in layer.experiments:
            inert = exp.inert_endpoints
            if inert:
                _warn_once(("inert endpoints", experiments.source, experiments.version,
                            exp.name, inert),
                           "experiments file %s (version %s): experiment %r lists "
                           "endpoint(s) %s where none of its variants' settings acts (it "
                           "acts on %s); it is not in their requests and logs no exposure "
                           "there", experiments.source, experiments.version, exp.name,
                           ", ".join(inert), ", ".join(exp.acts_on))


def load_experiments(spec: dict) -> Experiments:
    """The experiments file ``spec`` names (``experiments``; None: no experiments),
    validated against the ``models`` and ``rules_files`` variants may choose.

    Errors are :class:`InputError` with field ``experiments`` and a message naming the
    file (a reload refused for it says which file to fix, not a key path alone).
    """
    path = spec.get("experiments")
    if not path:
        return Experiments()
    try:
        return Experiments.load(path, models=spec.get("models") or {},
                                rules=spec.get("rules_files") or {})
    except (MixmatchError, OSError) as exc:
        msg = str(exc) if str(path) in str(exc) else f"experiments file {path}: {exc}"
        raise InputError(msg, field="experiments", value=str(path)) from exc


def default_engine_loader(bundle_path: str) -> Any:
    """``recommender.engine.Engine.load`` (imported when first needed)."""
    from recommender.engine import Engine
    return Engine.load(bundle_path)


def graph_pairing_gaps(engine: Any, rules: dict[str, RulesVersion]) -> dict[str, list[str]]:
    """Served rules name -> the category pairs (``"shoes->jewellery"``) it asks
    complements for that ``engine``'s graph was not built to pair
    (:meth:`recommender.engine.Engine.graph_pairs_missing`), each logged with the
    rebuild that restores them. A rules file is served with any engine (``RULES``, a
    reload of it, a variant's ``RULES_FILES`` with any ``MODELS`` bundle), while a
    graph is built with its bundle's own pairing; those groups are served all the
    same, from the strategy's top-up alone, so the service says so rather than
    refusing the file. Each gap is logged once per process (a worker inherits what
    the gunicorn master logged before it forked), not at every reload."""
    check = getattr(engine, "graph_pairs_missing", None)
    if check is None:
        return {}   # an engine that cannot say (a test's stand-in)
    out = {}
    for name, rv in rules.items():
        missing = check(rv.rules)
        if not missing:
            continue
        out[name] = missing
        from recommender.pipeline import rebuild_command

        root = engine.bundle.root
        # once per process for one gap; /healthz and /metrics keep saying it
        key = ("pairing", str(root), str(getattr(engine, "bundle_version", None)),
               rv.path, rv.version, tuple(missing))
        _warn_once(key, "rules %r (%s, version %s) pair %s, which the graph of bundle %s "
                   "was not built to pair: those groups are served from the strategy's "
                   "top-up alone, without the graph's precomputed neighbours. Rebuild the "
                   "graph with a [pairing] that includes them in %s: %s", name,
                   rv.path or "the bundle's own", rv.version, ", ".join(missing), root,
                   Path(root) / "rules" / "rules.toml", rebuild_command("graph", root))
    return out


def _bundle_signature(spec: dict) -> tuple:
    return (str(spec.get("bundle")), _stat(Path(spec["bundle"]) / "manifest.json")
            if spec.get("bundle") else None,
            tuple(sorted((k, str(v), _stat(Path(v) / "manifest.json"))
                         for k, v in (spec.get("models") or {}).items())))


def build_state(spec: dict, engine_loader: Callable[[str], Any] = default_engine_loader,
                previous: "ServingState | None" = None) -> ServingState:
    """Load everything ``spec`` names into a new :class:`ServingState`.

    ``spec``: ``bundle`` (path), ``rules`` (path or None: the engine's own rules, i.e.
    the bundle's ``rules/rules.toml`` or the packaged defaults), ``rules_files``
    (name -> path, for variants), ``models`` (name -> bundle path, for variants),
    ``experiments`` (path or None, see :func:`load_experiments`).
    When only rules or experiments changed since ``previous``, its engines are reused
    (a rules reload on a 1M-item bundle costs milliseconds, not a bundle load): engines
    are not mutated, rules are passed to every call. Any failure raises; the caller
    decides to keep the old state.
    """
    signature = state_signature(spec)   # before reading: a change while loading re-fires
    bundle = spec.get("bundle")
    if not bundle:
        raise NotFittedError("no bundle configured (set BUNDLE)")
    # first: a bad edit is refused in milliseconds, before a bundle load of seconds
    experiments = load_experiments(spec)
    _log_inert_endpoints(experiments)
    bsig = _bundle_signature(spec)
    # compared with the stats recorded when ``previous`` loaded, not with its paths'
    # stats now: a bundle rebuilt in place has the same paths and a new manifest
    if previous is not None and getattr(previous, "bundle_signature", None) == bsig:
        engine, models = previous.engine, previous.models
    else:
        engine = engine_loader(str(bundle))
        models = {name: engine_loader(str(path))
                  for name, path in (spec.get("models") or {}).items()}
    rules_path = spec.get("rules")
    own_rules = _bundle_rules(bundle)
    if rules_path:
        rules_obj, version = load_rules_file(rules_path, engine)
    elif own_rules.is_file():
        # read again, not taken from the engine: a rules-only reload reuses the engine,
        # which read this file once when it loaded
        rules_obj, version = load_rules_file(own_rules, engine)
    else:
        own = getattr(engine, "rules", None)
        rules_obj, version = own, str(getattr(own, "version", None) or "default")
    rules = {DEFAULT_RULES: RulesVersion(DEFAULT_RULES, rules_obj, version,
                                         str(rules_path) if rules_path else None)}
    for name, path in (spec.get("rules_files") or {}).items():
        obj, ver = load_rules_file(path, engine)
        rules[name] = RulesVersion(name, obj, ver, str(path))
    check_rules_for_models(rules, models, spec, experiments)
    gaps = {name: graph_pairing_gaps(e, rules)
            for name, e in [(DEFAULT_RULES, engine), *models.items()]}
    bundle_version = str(getattr(engine, "bundle_version", None) or "unknown")
    model_image_roots = {name: _image_root(path)
                         for name, path in (spec.get("models") or {}).items()}
    return ServingState(engine=engine, bundle_path=str(bundle),
                        bundle_version=bundle_version, image_root=_image_root(bundle),
                        rules=rules, models=models, spec=dict(spec), signature=signature,
                        loaded_at=time.time(), generation=uuid.uuid4().hex[:12],
                        bundle_signature=bsig, experiments=experiments,
                        graph_pairing_gaps=gaps, model_image_roots=model_image_roots)


def _image_root(bundle: str | os.PathLike) -> Path | None:
    """The manifest's ``image_root`` of ``bundle`` (None: it has none, or the manifest
    cannot say)."""
    try:
        from recommender.bundle import Bundle
        return Bundle.open(bundle).image_root
    except MixmatchError:
        return None


# -- the holder --------------------------------------------------------------------
class StateHolder:
    """Holds the current state; reloads build a new one and swap one reference.

    Parameters
    ----------
    build : callable(spec) -> state
        Builds a complete state or raises.
    spec : dict
        What to build first (paths).
    watch_interval : float
        Seconds between file checks per worker (0: no watch of the bundle and rules
        files; the control file is still read every ``CONTROL_INTERVAL`` seconds).
    control_file : path, optional
        Shared file through which an admin reload reaches every worker.
    signature : callable(spec) -> tuple, optional
        What the watch compares (default :func:`state_signature`).
    """

    def __init__(self, build: Callable[[dict], Any], spec: dict, *,
                 watch_interval: float = 0.0, control_file: str | os.PathLike | None = None,
                 signature: Callable[[dict], tuple] = state_signature,
                 lazy: bool = False):
        self._build = build
        self._signature = signature
        self.spec = dict(spec)
        self.watch_interval = watch_interval
        self.control_file = Path(control_file) if control_file else None
        self._lock = threading.Lock()          # one reload at a time
        self._check_lock = threading.Lock()
        self._state: Any = None
        self._sig: tuple | None = None
        self._failed_sig: tuple | None = None
        self._control_seen: str | None = None
        self._pending = False                  # a publication not yet reloaded from
        self._next_check = 0.0
        self.reloads = 0
        self.reload_failures = 0
        self.last_error: str | None = None
        # a build writing the served bundle now (its message), seen by the last reload:
        # the old state serves meanwhile, and the build's last manifest save starts
        # the reload that succeeds. Not a failure: a monitor alerting on
        # ``reload_failures`` or ``last_error`` was paged by every stage command
        self.waiting_for_build: str | None = None
        # the paths the failed reload tried ({"bundle", "rules", "experiments"}; rules
        # None: the bundle's own): with several workers, which publication this one
        # could not load
        self.failed_target: dict | None = None
        # why the last reload asked to publish could not (None: it did); read by the
        # admin route right after its reload (two at once may see each other's)
        self.publish_error: str | None = None
        # the configuration we start with wins over what an earlier run published; only
        # reloads published from now on are followed
        self._control_seen = self._read_control().get("token")
        if not lazy:
            self.reload()

    def current(self) -> Any:
        """The current state (one attribute read: atomic under the GIL)."""
        return self._state

    # -- explicit reload ------------------------------------------------------
    def reload(self, *, bundle: str | None = None, rules: str | None = None,
               publish: bool = False) -> tuple[Any, Any]:
        """Build a new state (optionally from new paths) and swap it in.

        Returns ``(new, old)``. Raises :class:`ReloadRefused` with the reason when the
        new state fails to load; the old one keeps serving and the spec is unchanged.
        """
        with self._lock:
            self._pending = False   # this build reads every file a publication named
            spec = dict(self.spec)
            if bundle:
                spec["bundle"] = bundle
            if rules:
                spec["rules"] = rules
            sig = None
            # nothing served yet (a server starting, or one started without a bundle):
            # "the previous version keeps serving" was said of none, and `mixmatch
            # serve` printed it as it exited
            kept = ("reload refused, the previous version keeps serving"
                    if self._state is not None else "nothing loaded, nothing is served")
            try:
                sig = self._signature(spec)
                new = self._build(spec)
            except BundleBeingBuilt as exc:
                self._failed_sig = sig   # retried when the build's manifest changes
                self.waiting_for_build = str(exc)
                log.info("reload deferred (%s): %s", kept, exc)
                raise ReloadRefused(f"{kept}: {exc}", field="bundle") from exc
            except Exception as exc:  # any failure: refuse, keep serving the old state
                self.reload_failures += 1
                self._failed_sig = sig
                self.waiting_for_build = None
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.failed_target = {"bundle": _path_or_none(spec.get("bundle")),
                                      "rules": _path_or_none(spec.get("rules")),
                                      "experiments": _path_or_none(
                                          spec.get("experiments")),
                                      # a failing RULES_FILES or MODELS entry showed
                                      # only the main rules and bundle, not its path
                                      "rules_files": _paths(spec.get("rules_files")),
                                      "models": _paths(spec.get("models"))}
                log.warning("%s: %s", kept, self.last_error)
                raise ReloadRefused(f"{kept}: {exc}",
                                    field=_failed_field(exc, bundle, rules)) from exc
            old, self._state = self._state, new
            # only the paths this call was given: a publication the watch adopted while
            # this build ran must stay the target (putting back the spec this build
            # started from lost it for good); its signature then differs from ``_sig``,
            # so the next check loads it
            if bundle:
                self.spec["bundle"] = bundle
            if rules:
                self.spec["rules"] = rules
            self._sig, self._failed_sig = sig, None
            self.last_error = self.failed_target = self.waiting_for_build = None
            self.reloads += 1 if old is not None else 0
            if publish:
                # the swap stands: this worker serves the new state whether or not the
                # others can be told (the admin route says which); raised, it was a 500
                # "internal error" for a reload that had happened
                try:
                    self._publish(spec)
                    self.publish_error = None
                except OSError as exc:
                    self.publish_error = (f"the other workers were not told (cannot "
                                          f"write the control file {self.control_file}: "
                                          f"{exc.strerror or exc})")
                    log.warning("reloaded, but %s", self.publish_error)
            return new, old

    # -- watch ----------------------------------------------------------------
    def maybe_check(self, *, now: float | None = None, background: bool = True) -> bool:
        """Check the files if ``watch_interval`` has passed; start a reload on change.

        Cheap when nothing is due (one comparison). Returns True when a reload started.
        With the watch off (``watch_interval`` 0) only the control file is read, every
        :data:`CONTROL_INTERVAL` seconds: an admin reload another worker took must reach
        this one too (it did only while the watch ran, so with the watch off the
        workers served different bundles until restarted).
        """
        watching = self.watch_interval > 0
        if not watching and self.control_file is None:
            return False
        interval = self.watch_interval if watching else CONTROL_INTERVAL
        now = time.monotonic() if now is None else now
        if now < self._next_check or not self._check_lock.acquire(blocking=False):
            return False
        try:
            self._next_check = now + interval
            self._apply_control_file()
            if not self.spec.get("bundle"):
                return False   # nothing to watch until a bundle is configured
            if not self._pending:
                if not watching:
                    return False   # the files' stats are not compared with the watch off
                try:
                    sig = self._signature(self.spec)
                except OSError:
                    sig = None
                if sig == self._sig or sig == self._failed_sig:
                    return False
            if self._lock.locked():
                return False   # a reload is already running (a publication stays pending)
            if background:
                threading.Thread(target=self._reload_quietly, daemon=True,
                                 name="mixmatch-reload").start()
            else:
                self._reload_quietly()
            return True
        finally:
            self._check_lock.release()

    def _reload_quietly(self) -> None:
        try:
            self.reload()
        except ReloadRefused:
            pass  # logged and counted in reload(); the old state serves

    def _publish(self, spec: dict) -> None:
        if self.control_file is None:
            return
        token = uuid.uuid4().hex
        payload = {"token": token, "bundle": spec.get("bundle"), "rules": spec.get("rules"),
                   "written": time.time()}
        from recommender.bundle import atomic_write_text
        atomic_write_text(self.control_file, json.dumps(payload))
        self._control_seen = token

    def _apply_control_file(self) -> bool:
        """Adopt what another worker published; True when it published a reload.

        Every publication is a reload, even of unchanged paths: an admin reload of the
        same paths re-reads the files, and the other workers must too, whether or not
        the files' stats show a change (a copy that kept its mtime, or a load that failed
        here for a reason the manifest does not show)."""
        data = self._read_control()
        token = data.get("token")
        if not token or token == self._control_seen:
            return False
        self._control_seen = token
        # paths only: a hand-edited file naming a list or a number put it in the spec,
        # and the watch's stat of it then raised TypeError in every request that checked
        bad = [k for k in ("bundle", "rules")
               if data.get(k) is not None and not isinstance(data[k], str)]
        if bad:
            self.last_error = (f"control file {self.control_file}: {bad[0]} must be a "
                               f"path, got {data[bad[0]]!r:.80}; publication ignored")
            log.warning("%s", self.last_error)
            return False
        for key in ("bundle", "rules"):
            if data.get(key):
                self.spec[key] = data[key]
        self._pending = True
        return True

    def _read_control(self) -> dict:
        if self.control_file is None:
            return {}
        try:
            data = json.loads(self.control_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def describe(self) -> dict:
        return {"reloads": self.reloads, "reload_failures": self.reload_failures,
                "last_error": self.last_error, "failed_target": self.failed_target,
                "waiting_for_build": self.waiting_for_build}


def _path_or_none(path) -> str | None:
    return str(path) if path else None


def _paths(named) -> dict[str, str]:
    return {str(name): str(path) for name, path in (named or {}).items()}


def _failed_field(exc: Exception, bundle, rules) -> str:
    field = getattr(exc, "field", None)
    if field in ("rules", "bundle", "experiments"):
        return field
    if isinstance(field, str) and field.startswith("rules."):
        return "rules"   # a RulesError's key path (rules.boost[0].factor): a rules file
    if rules and not bundle:
        return "rules"
    return "bundle"


# -- the accessor (flaskr's get_db) -----------------------------------------------------
def get_serving() -> "Serving":
    """The app's :class:`Serving` extension (holder, events, schemas, metrics)."""
    return current_app.extensions[EXTENSION]


def get_state() -> ServingState:
    """The serving state of this request: taken once, then the same for the whole
    request, so a reload landing mid-request cannot mix two versions."""
    if "mixmatch_state" not in g:
        state = get_serving().holder.current()
        if state is None:
            raise NotFittedError("no bundle is loaded: start the server with --bundle or "
                                 "POST /admin/reload a valid one")
        g.mixmatch_state = state
    return g.mixmatch_state


def peek_state() -> ServingState | None:
    """The request's state if there is one loaded, without raising (error bodies)."""
    if "mixmatch_state" in g:
        return g.mixmatch_state
    try:
        return get_serving().holder.current()
    except (KeyError, RuntimeError):
        return None


@dataclasses.dataclass
class Serving:
    """What :func:`api.app.create_app` puts in ``app.extensions["mixmatch"]``."""

    holder: StateHolder         # its state holds the experiments config too
    events: Any                 # api.events.EventStore
    schemas: Any                # api.schemas.Schemas
    metrics: Any                # api.blueprints.health.Metrics
