"""The application factory: ``create_app(config)`` builds one Flask app per process.

Heavy state (the engine over a bundle, rules) is loaded once here and reached through
:func:`api.state.get_state`; nothing is built at import time.

Configuration (a dict; ``mixmatch serve --config FILE`` reads TOML/YAML/JSON, keys
case-insensitive):

============== ===================================================================
BUNDLE         bundle folder to serve (None: start empty; /admin/reload loads one)
RULES          rules file (default: the bundle's rules/rules.toml, else the engine's)
RULES_FILES    {name: path}: extra rules versions variants may choose ("default"
               names RULES: refused as a name here)
MODELS         {name: bundle path}: extra engines variants may choose ("default"
               names BUNDLE: refused as a name here)
EXPERIMENTS    experiments file (see :mod:`api.experiments`); None: no experiments.
               Re-read on every reload and watched, like a rules file
DATA_DIR       where the events database and the reload control file live
               (default: <bundle>/serving, else ./.mixmatch)
EVENTS_DB      events database path (default: DATA_DIR/events.db)
EVENTS_BUSY_TIMEOUT_MS  how long a write of events waits for another process's lock
               on the events database (default 10000) before POST /v1/events
               answers 503 with Retry-After (the page may post the batch again)
EXPOSURE_BUSY_TIMEOUT_MS  the same for the exposure a recommendation writes before it
               is sent (default 200): then the exposure is dropped (counted in
               /healthz) and the recommendation served; short, because the shopper
               waits for it and nobody retries it
ADMIN_TOKEN    token for /admin/*; None disables the admin endpoints
CORS_ORIGINS   list of allowed origins, or "*" (default: none); one origin as a
               string is a list of one (matched whole, never as a substring)
MAX_CONTENT_LENGTH  largest request body in bytes (413 above)
MAX_IMAGE_BYTES     largest image upload in bytes (413 above)
MAX_IMAGE_PIXELS    largest declared width x height of an upload (413 above)
LIMITS         overrides of :class:`api.schemas.Limits` (max_k, max_items, ...)
WATCH_INTERVAL seconds between file checks per worker (0: no watch; an admin reload
               still reaches every worker, whose control file is read each second)
WARM_VISION    true (default): each gunicorn worker loads the perception models in
               the background as it starts, so the first photo sent to /v1/analyze
               or POST /v1/search does not wait ~2 s for them (see warm_vision);
               a reload loads the new bundle's models before it serves when the
               old one had them loaded (see carry_warmth)
============== ===================================================================

Examples
--------
>>> app = create_app({"TESTING": True, "DATA_DIR": __import__("tempfile").mkdtemp()})
>>> app.test_client().get("/healthz").get_json()["status"]
'no_bundle'
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, g, request

from api.errors import register_error_handlers
from api.events import EventStore
from api.responses import FiniteJSONProvider, bundle_version_for, rules_version_for
from api.schemas import Limits, build_schemas
from api.state import (DEFAULT_RULES, EXTENSION, Serving, StateHolder, build_state,
                       default_engine_loader, load_experiments)
from recommender.bundle import SERVING_DIR

log = logging.getLogger(__name__)

DEFAULT_CONFIG: dict[str, Any] = {
    "BUNDLE": None,
    "RULES": None,
    "RULES_FILES": {},
    "MODELS": {},
    "EXPERIMENTS": None,
    "DATA_DIR": None,
    "EVENTS_DB": None,
    "EVENTS_BUSY_TIMEOUT_MS": 10_000,
    "EXPOSURE_BUSY_TIMEOUT_MS": 200,
    "ADMIN_TOKEN": None,
    "CORS_ORIGINS": [],
    "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
    "MAX_IMAGE_BYTES": 8 * 1024 * 1024,
    "MAX_IMAGE_PIXELS": 25_000_000,
    "LIMITS": {},
    "WATCH_INTERVAL": 1.0,
    "ENGINE_LOADER": None,
    "JSON_SORT_KEYS": False,
    "WARM_VISION": True,
}

_REQUEST_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _check_file_settings(cfg: Mapping[str, Any]) -> None:
    """``RULES``, ``EXPERIMENTS``, ``DATA_DIR`` and ``EVENTS_DB`` are a path (or unset),
    ``RULES_FILES`` and ``MODELS`` a table of name = path. A list there was a ValueError
    traceback from ``mixmatch serve`` ("dictionary update sequence element #0"), a number
    or a list where a path belongs "expected str, bytes or os.PathLike object, not int",
    naming no setting (``DATA_DIR = 5``: a TypeError traceback)."""
    from features.exceptions import InputError

    def is_path(v: Any) -> bool:
        return isinstance(v, (str, os.PathLike)) and str(v) != ""

    for key in ("RULES", "EXPERIMENTS", "DATA_DIR", "EVENTS_DB"):
        v = cfg[key]
        if v and not is_path(v):
            raise InputError(f"{key} must be a file path (a string), got {v!r}", field=key,
                             value=v)
    for key in ("RULES_FILES", "MODELS"):
        v = cfg[key]
        if v and not (isinstance(v, Mapping) and all(is_path(p) for p in v.values())):
            raise InputError(f"{key} must be a table of name = path, got {v!r}",
                             field=key, value=v)


def _cors_origins(value: Any) -> str | list[str]:
    """``CORS_ORIGINS`` as ``"*"`` or a list of origins. One origin given as a string
    (``cors_origins = "https://shop.example"`` in a config file) is a list of one: it
    was matched with ``in`` on the string, so an ``Origin: https://shop`` (a substring)
    was allowed and echoed back."""
    from features.exceptions import InputError

    if not value:
        return []
    if isinstance(value, str):
        return value if value == "*" else [value]
    if (isinstance(value, (list, tuple))
            and all(isinstance(o, str) and o for o in value)):
        return list(value)
    raise InputError(f'CORS_ORIGINS must be "*" or a list of origins (strings), got '
                     f"{value!r}", field="CORS_ORIGINS", value=value)


def _check_server_settings(cfg: Mapping[str, Any]) -> None:
    """The size limits are whole numbers >= 1 (``MAX_CONTENT_LENGTH`` may be unset: no
    limit), ``WATCH_INTERVAL`` a number of seconds >= 0, ``CORS_ORIGINS`` a list of
    origins or ``"*"``. A string there started a server whose every request failed
    (500, or ``WATCH_INTERVAL = "abc"`` a ValueError traceback from ``mixmatch serve``),
    and ``CORS_ORIGINS = "https://shop.example"`` allowed any origin it contains
    (``"https://shop.ex"``): ``in`` on a string matches substrings."""
    from features.exceptions import InputError

    for key in ("MAX_CONTENT_LENGTH", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS"):
        v = cfg[key]
        if v is None and key == "MAX_CONTENT_LENGTH":
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{key} must be a whole number >= 1, got {v!r}", field=key,
                             value=v)
    v = cfg["WATCH_INTERVAL"]
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                          or not 0 <= v < float("inf")):
        raise InputError(f"WATCH_INTERVAL must be a number of seconds >= 0, got {v!r}",
                         field="WATCH_INTERVAL", value=v)
    v = cfg["WARM_VISION"]
    if not isinstance(v, bool):     # "false" would be true
        raise InputError(f"WARM_VISION must be true or false, got {v!r}",
                         field="WARM_VISION", value=v)


def _check_extra_names(spec: dict) -> None:
    """Refuse a ``MODELS`` or ``RULES_FILES`` entry named ``"default"``: the name of
    the main bundle and of its rules (``DEFAULT_RULES``). A bundle so named was loaded
    and never served (a variant's ``model = "default"`` is the main engine), and its
    ``/healthz`` and ``/metrics`` figures took the main bundle's name (two series of
    one name fail a Prometheus scrape); a rules file so named replaced ``RULES``."""
    from features.exceptions import InputError

    for key, names, main in (("MODELS", spec["models"], "bundle (BUNDLE)"),
                             ("RULES_FILES", spec["rules_files"], "rules (RULES)")):
        if DEFAULT_RULES in names:
            raise InputError(f"{key} name {DEFAULT_RULES!r} names the main {main}: "
                             f"give {names[DEFAULT_RULES]} another name", field=key,
                             value=DEFAULT_RULES)


def limits_from_config(table: Any) -> Limits:
    """The ``LIMITS`` setting as :class:`api.schemas.Limits`, or InputError naming a
    key it does not take or a value that is not a whole number >= 1: a typo or a
    string was a TypeError traceback out of ``mixmatch serve``, and a negative limit
    a server refusing every request.

    >>> limits_from_config({"max_k": 20}).max_k
    20
    >>> limits_from_config({"max_kk": 20})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: unknown LIMITS key 'max_kk' (allowed: max_k, ...)
    """
    import dataclasses

    from features.exceptions import InputError

    if not table:
        return Limits()
    allowed = [f.name for f in dataclasses.fields(Limits)]
    if not isinstance(table, Mapping):
        raise InputError(f"LIMITS must be a table of {', '.join(allowed)}, got "
                         f"{table!r}", field="LIMITS", value=table, allowed=allowed)
    for key, value in table.items():
        if key not in allowed:
            raise InputError(f"unknown LIMITS key {key!r} (allowed: {', '.join(allowed)})",
                             field="LIMITS", value=key, allowed=allowed)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"LIMITS {key} must be a whole number >= 1, got {value!r}",
                             field=f"LIMITS.{key}", value=value)
    return Limits(**table)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` overrides :data:`DEFAULT_CONFIG` (keys upper-cased).

    Raises the loader's error when the configured bundle, rules or experiments file is
    invalid: a server must not start half-configured.
    """
    app = Flask(__name__)
    # "//etc/x" must reach the image route as an absolute path (and be refused), not be
    # redirected to a merged URL
    app.url_map.merge_slashes = False
    app.config.from_mapping(DEFAULT_CONFIG)
    app.config.from_mapping({str(k).upper(): v for k, v in (config or {}).items()})
    app.json = FiniteJSONProvider(app)  # NaN/inf as null: every body is valid JSON
    app.json.sort_keys = False
    cfg = app.config
    # before any of them is used: DATA_DIR = 5 was a TypeError traceback from Path()
    _check_file_settings(cfg)
    cfg["CORS_ORIGINS"] = _cors_origins(cfg["CORS_ORIGINS"])
    _check_server_settings(cfg)

    bundle = str(cfg["BUNDLE"]) if cfg["BUNDLE"] else None
    if bundle and not cfg["DATA_DIR"] and not Path(bundle).is_dir():
        # the events database goes inside the bundle: said before it is opened, or a
        # file given as the bundle was "cannot open the events database", and a
        # missing folder was created to hold one
        from features.exceptions import NotFoundError

        raise NotFoundError(f"no bundle at {bundle} ("
                            + ("a file, not a bundle folder" if Path(bundle).exists()
                               else "no such folder") + ")", field="bundle", value=bundle)
    data_dir = Path(cfg["DATA_DIR"] or (Path(bundle) / SERVING_DIR if bundle
                                        else ".mixmatch"))
    events_db = cfg["EVENTS_DB"] or data_dir / "events.db"
    limits = limits_from_config(cfg["LIMITS"])
    schemas = build_schemas(limits)

    loader = cfg["ENGINE_LOADER"] or default_engine_loader
    spec = {"bundle": bundle, "rules": cfg["RULES"],
            "rules_files": dict(cfg["RULES_FILES"] or {}),
            "models": dict(cfg["MODELS"] or {}),
            "experiments": str(cfg["EXPERIMENTS"]) if cfg["EXPERIMENTS"] else None}
    _check_extra_names(spec)
    holder_ref: list[StateHolder] = []
    # a serving folder made here is removed again when the start fails (a damaged
    # bundle, a bad experiments file): a refused `mixmatch serve` left BUNDLE/serving
    # with an empty events database behind
    made = [d for d in map(_topmost_missing, (data_dir, Path(events_db).parent)) if d]
    # before the state: a config whose version was recorded with other weights is
    # refused (see Experiments.check_recorded), at start as at a reload
    event_store = EventStore(events_db, busy_timeout_ms=cfg["EVENTS_BUSY_TIMEOUT_MS"],
                             exposure_busy_timeout_ms=cfg["EXPOSURE_BUSY_TIMEOUT_MS"])
    try:
        holder = _serving_state(cfg, spec, loader, event_store, data_dir, app, holder_ref)
    except BaseException:
        event_store.close()
        for d in made:
            shutil.rmtree(d, ignore_errors=True)
        raise

    from api.blueprints.health import Metrics
    app.extensions[EXTENSION] = Serving(holder=holder, events=event_store,
                                        schemas=schemas, metrics=Metrics())

    register_error_handlers(app)
    _register_hooks(app)
    from api.blueprints import admin, analyze, events, health, items, outfits, preview, search
    from api import openapi
    for bp in (items.bp, outfits.bp, search.bp, analyze.bp, events.bp, health.bp,
               preview.bp, admin.bp, openapi.bp):
        app.register_blueprint(bp)
    return app


def _topmost_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist (what ``mkdir(parents=True)``
    would make first), None when it exists."""
    path = Path(path).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def _serving_state(cfg, spec: dict, loader, event_store, data_dir: Path, app: Flask,
                   holder_ref: list) -> "StateHolder":
    """The app's state holder, its first state built (the bundle and experiments
    loaded and checked against what ``event_store`` recorded)."""

    def check_experiments(experiments) -> None:
        if experiments.version is not None:
            experiments.check_recorded(
                event_store.recorded_allocation(experiments.version),
                recorded_params=event_store.recorded_params(experiments.version))

    def build(s: dict):
        previous = holder_ref[0].current() if holder_ref else None
        state = build_state(s, loader, previous=previous)
        check_experiments(state.experiments)
        if previous is not None and cfg.get("WARM_VISION"):
            carry_warmth(app, previous, state)
        return state

    holder = StateHolder(build, spec,
                         watch_interval=float(cfg["WATCH_INTERVAL"] or 0),
                         control_file=data_dir / "control.json",
                         lazy=spec["bundle"] is None)
    holder_ref.append(holder)
    if spec["bundle"] is None:
        # the experiments load with the state (a reload re-reads them); with no bundle
        # there is none yet, but a bad file must still stop the start
        check_experiments(load_experiments(spec))
    return holder


def warm_vision(app: Flask) -> bool:
    """Load the served engine's perception models now (``WARM_VISION``).

    Called by each gunicorn worker in a background thread as it starts
    (:func:`api.server.post_worker_init`): the models load in about 2 s, once per
    worker, and a photo that arrives meanwhile waits for the same load instead of
    starting its own. Returns whether they are loaded. Never raises: a bundle
    without an attribute network, or one whose network cannot load, is reported by
    the photo routes with their own errors, as before; the failure is logged here.
    """
    if not app.config.get("WARM_VISION"):
        return False
    state = app.extensions[EXTENSION].holder.current()
    return _warm_engine(app, getattr(state, "engine", None))


def carry_warmth(app: Flask, previous: Any, state: Any) -> list[str]:
    """Load the perception models of ``state``'s engines whose counterparts in
    ``previous`` had theirs loaded (``WARM_VISION``, after a reload).

    A reload (``/admin/reload``, the control file, the file watch) builds the new state
    off the request path, and this runs there too, before the new state is swapped in:
    a worker that had its models warm keeps them warm, and no shopper's photo pays the
    ~2 s load. Engines that were cold before (no photo yet, or ``WARM_VISION`` off)
    stay cold, so a reload costs no more CPU than the worker had chosen to spend; an
    engine reused for a rules-only reload is already loaded. Returns the names warmed
    (``"default"`` for the main engine, else the variant's model name); never raises.
    """
    pairs = [("default", getattr(previous, "engine", None), getattr(state, "engine", None))]
    old_models = getattr(previous, "models", None) or {}
    for name, engine in (getattr(state, "models", None) or {}).items():
        pairs.append((name, old_models.get(name), engine))
    warmed = []
    for name, old, new in pairs:
        if (new is not None and new is not old and getattr(old, "vision_loaded", False)
                and _warm_engine(app, new)):
            warmed.append(name)
    return warmed


def _warm_engine(app: Flask, engine: Any) -> bool:
    warm = getattr(engine, "warm_vision", None)
    if warm is None:
        return False
    try:
        return bool(warm())
    except Exception as exc:  # noqa: BLE001 - reported again, with its status, per photo
        app.logger.warning("perception models not preloaded: %s", exc)
        return False


def _register_hooks(app: Flask) -> None:
    serving: Serving = app.extensions[EXTENSION]

    @app.before_request
    def _start():
        g.t0 = time.perf_counter()
        # every response gets an id of its own: it keys the exposures and the events a
        # page posts back. A client's X-Request-ID is not unique (a page may send one
        # per session, or a constant): taken as the key, a session's exposures shared
        # one id and the A/B report kept the first. It is kept apart, for tracing.
        g.request_id = uuid.uuid4().hex
        rid = request.headers.get("X-Request-ID", "")
        g.client_request_id = rid if _REQUEST_ID.fullmatch(rid) else None
        serving.holder.maybe_check()

    @app.after_request
    def _finish(response):
        # the client's own id echoed when it sent one (proxies and logs match on it);
        # the body's ``request_id`` is the one events must carry
        response.headers["X-Request-ID"] = (g.get("client_request_id")
                                            or g.get("request_id", ""))
        _cors(app, response)
        assignment = g.get("assignment")
        # a HEAD answer shows the shopper nothing: no exposure (it would count a
        # unit as exposed to a variant it never saw)
        if (assignment is not None and assignment.entries and response.status_code < 400
                and request.method != "HEAD"):
            _log_exposure(serving, assignment, response)
        serving.metrics.observe(request.url_rule.rule if request.url_rule else "unmatched",
                                request.method, response.status_code,
                                time.perf_counter() - g.get("t0", time.perf_counter()))
        return response


def _log_exposure(serving: Serving, assignment, response) -> None:
    """Exposures are written when the response is served; a failing write (the events
    database locked past ``EXPOSURE_BUSY_TIMEOUT_MS``, an I/O error) is logged and
    counted, in ``/metrics`` and ``/healthz`` (``exposures_dropped``), but does not
    fail the shopper's page: the A/B log is not worth a broken page, nor a slow one
    (the response waits for this write, hence the short timeout)."""
    state = g.get("mixmatch_state")
    try:
        # the version the assigned variant's rules carry, as the envelope reports it:
        # the response body may not be JSON (the preview page is HTML)
        serving.events.add_exposures(
            g.request_id, assignment.unit, assignment.entries,
            endpoint=g.get("endpoint", request.endpoint or ""),
            client_request_id=g.get("client_request_id"),
            # the variant's model's, as the envelope reports it
            bundle_version=bundle_version_for(assignment),
            rules_version=rules_version_for(assignment),
            # the config that assigned it: rows before and after a reload differ
            experiments_version=(state.experiments.version if state is not None
                                 else None),
            # its weights, recorded once per version: the report checks each version's
            # sample ratio against them after the file has been edited
            experiments_allocation=(state.experiments.allocation() if state is not None
                                    else None),
            # and what each variant set: the exposure names its variant only
            experiments_params=(state.experiments.variant_params() if state is not None
                                else None))
    except Exception:
        serving.metrics.exposure_failed()
        log.exception("could not log the exposure of request %s", g.get("request_id"))


def _cors(app: Flask, response) -> None:
    origins = app.config["CORS_ORIGINS"]
    origin = request.headers.get("Origin")
    if not origins or not origin:
        return
    if origins == "*" or origins == ["*"]:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
    else:
        return
    # Retry-After: a cross-origin page must read how long a 503 asks it to wait
    response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-Request-ID"
        response.headers["Access-Control-Max-Age"] = "600"


def load_config_file(path: str | os.PathLike) -> dict:
    """Read an API config file (TOML/YAML/JSON); keys are upper-cased."""
    from api.experiments import parse_config_text
    from features.exceptions import InputError, NotFoundError
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"API config file not found: {p}", field="config", value=str(p))
    try:
        # utf-8-sig: a byte-order mark (Notepad's UTF-8) is not part of the TOML
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text (byte {exc.start})", field="config",
                         value=str(p)) from exc
    data = parse_config_text(text, p.suffix.lower(), str(p))
    if not isinstance(data, dict):
        from features.exceptions import SchemaError
        raise SchemaError(f"{p}: the config must be a table/mapping", field=str(p))
    unknown = [k for k in data if str(k).upper() not in DEFAULT_CONFIG]
    if unknown:
        from features.exceptions import SchemaError
        raise SchemaError(f"{p}: unknown key {unknown[0]!r}", field=str(unknown[0]),
                          allowed=sorted(k.lower() for k in DEFAULT_CONFIG))
    return {str(k).upper(): v for k, v in data.items()}
