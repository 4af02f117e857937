"""Health and metrics: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text format).

Metrics are per process: under gunicorn each worker answers with its own counters
(label ``pid``), as Prometheus' multi-target scraping of workers expects.
"""
from __future__ import annotations

import os
import threading
from collections import defaultdict

from flask import Blueprint, Response

from api.responses import respond
from api.state import DEFAULT_RULES, get_serving

bp = Blueprint("health", __name__)

#: Methods counted under their own name; any other is counted as "other": the method is
#: the client's, and each made-up one was a series of its own (a quote or newline in it
#: wrote the client's lines into the scrape, which then failed to parse).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

#: Latency histogram buckets in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))


class Metrics:
    """Request counters and latency histograms, guarded by one lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = defaultdict(int)          # (route, method, status) -> count
        self.hist = defaultdict(lambda: [0] * len(BUCKETS))  # route -> bucket counts
        self.sum = defaultdict(float)
        self.exposure_failures = 0                # exposures not written (dropped)

    def exposure_failed(self) -> None:
        # under the lock: threads of one worker may fail together (a locked database)
        with self._lock:
            self.exposure_failures += 1

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        with self._lock:
            self.requests[(route, method, status)] += 1
            h = self.hist[route]
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    h[i] += 1
            self.sum[route] += seconds

    def render(self, extra: list[str]) -> str:
        pid = os.getpid()
        lines = ["# HELP mixmatch_requests_total Requests answered, by route and status.",
                 "# TYPE mixmatch_requests_total counter"]
        with self._lock:
            for (route, method, status), n in sorted(self.requests.items()):
                lines.append(f'mixmatch_requests_total{{route="{_esc(route)}",'
                             f'method="{method}",status="{status}",pid="{pid}"}} {n}')
            lines += ["# HELP mixmatch_request_seconds Request latency.",
                      "# TYPE mixmatch_request_seconds histogram"]
            for route, h in sorted(self.hist.items()):
                r = _esc(route)
                for b, n in zip(BUCKETS, h):
                    le = "+Inf" if b == float("inf") else f"{b:g}"
                    lines.append(f'mixmatch_request_seconds_bucket{{route="{r}",le="{le}",'
                                 f'pid="{pid}"}} {n}')
                lines.append(f'mixmatch_request_seconds_sum{{route="{r}",pid="{pid}"}} '
                             f'{self.sum[route]:.6f}')
                lines.append(f'mixmatch_request_seconds_count{{route="{r}",pid="{pid}"}} '
                             f'{h[-1]}')
            lines += ["# TYPE mixmatch_exposure_failures_total counter",
                      f'mixmatch_exposure_failures_total{{pid="{pid}"}} '
                      f'{self.exposure_failures}']
        return "\n".join(lines + extra) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@bp.get("/healthz")
def healthz():
    """``ok`` with the versions served, or 503 ``no_bundle`` before one is loaded.

    ``vision_loaded``: whether this worker has its perception models loaded (the
    photo routes answer at once), which a started worker does in the background.
    ``stale_stages``: stages of the served bundle built from inputs rewritten since
    (the graph after the compatibility model alone was retrained), still served.
    ``changed_outputs``: stage -> its output files that are gone or no longer the
    bytes the build recorded (a model copied in by hand, a copy cut short), read when
    the bundle loaded; still served. Not counted in ``stale_stages``, whose stages'
    inputs changed: here the build's record holds, and the files are not the build.
    ``graph_pairing_differs``: a served rules file (``RULES``, the bundle's own,
    a ``RULES_FILES`` one) asks complements for category pairs the graph was not
    built to pair (another ``[pairing]``): those groups are served from the
    strategy's top-up alone, without the graph's precomputed neighbours; the load
    logged which pairs and the rebuild. Pairs only the graph has are never read.
    ``models``: those for each ``MODELS`` bundle (name -> ``{"bundle",
    "bundle_version", "items", "stale_stages", "changed_outputs",
    "graph_pairing_differs"}``): a variant's engine is served as much as the main
    one, and its stale graph would otherwise show only in the load log; its path,
    version and size say it is the bundle the variant should serve.
    ``experiments_version``: the experiments config this worker assigns with (it
    is reloadable: after an edit, every worker should show the new one).
    ``exposures_dropped``: exposures this worker could not write to the events
    database (locked, failing): their responses were served, but the A/B report
    misses them, so a monitor should see it without scraping ``/metrics``.
    ``worker_pid``: the process that answered. Counters are per worker (as in
    ``/metrics``, label ``pid``), not summed across gunicorn's workers."""
    serving = get_serving()
    state = serving.holder.current()
    # the counters here (exposures_dropped, reloads, reload_failures) are this
    # process's: under gunicorn two calls may be answered by two workers
    per_worker = {"exposures_dropped": serving.metrics.exposure_failures,
                  "worker_pid": os.getpid()}
    if state is None:
        return respond({"status": "no_bundle", "items": None, "loaded_at": None,
                        **per_worker, **serving.holder.describe()}, 503)
    gaps = getattr(state, "graph_pairing_gaps", {})
    paths = state.spec.get("models") or {}
    return respond({"status": "ok", "items": _items(state.engine),
                    "loaded_at": state.loaded_at,
                    "vision_loaded": bool(getattr(state.engine, "vision_loaded", False)),
                    "stale_stages": list(getattr(state.engine, "stale_stages", [])),
                    "changed_outputs": _changed_outputs(state.engine),
                    "graph_pairing_differs": bool(gaps.get(DEFAULT_RULES)),
                    "models": {name: {
                        # what the main bundle's items and bundle_version say of it:
                        # an operator can tell a variant serves the bundle it should
                        "bundle": str(paths.get(name, "")) or None,
                        "bundle_version": str(getattr(e, "bundle_version", None)
                                              or "unknown"),
                        "items": _items(e),
                        "stale_stages": list(getattr(e, "stale_stages", [])),
                        "changed_outputs": _changed_outputs(e),
                        "graph_pairing_differs": bool(gaps.get(name))}
                        for name, e in state.models.items()},
                    "experiments_version": state.experiments.version,
                    **per_worker, **serving.holder.describe()})


def _items(engine) -> int | None:
    # catalogue rows; None for an engine without a catalogue (a test's stand-in)
    return getattr(getattr(engine, "catalog", None), "shape", (None,))[0]


def _changed_outputs(engine) -> dict[str, list[str]]:
    # an engine that cannot say (a test's stand-in) has nothing changed
    return {stage: list(files) for stage, files in
            (getattr(engine, "changed_outputs", None) or {}).items()}


@bp.get("/metrics")
def metrics():
    serving = get_serving()
    pid = os.getpid()
    state = serving.holder.current()
    extra = ["# TYPE mixmatch_reloads_total counter",
             f'mixmatch_reloads_total{{pid="{pid}"}} {serving.holder.reloads}',
             "# TYPE mixmatch_reload_failures_total counter",
             f'mixmatch_reload_failures_total{{pid="{pid}"}} '
             f'{serving.holder.reload_failures}',
             "# TYPE mixmatch_bundle_info gauge"]
    if state is not None:
        extra.append(f'mixmatch_bundle_info{{bundle_version="{_esc(state.bundle_version)}",'
                     f'rules_version="{_esc(state.rules_for(None).version)}",'
                     f'pid="{pid}"}} 1')
        extra += _served_out_of_date(state, pid)
    return Response(serving.metrics.render(extra),
                    mimetype="text/plain", headers={"Content-Type":
                                                    "text/plain; version=0.0.4"})


def _served_out_of_date(state, pid: int) -> list[str]:
    """``/healthz``'s ``stale_stages``, ``changed_outputs`` (how many files) and
    ``graph_pairing_differs`` as gauges, one per served engine (``model="default"``:
    the main bundle; else a ``MODELS`` name), so an alert on a graph served out of
    date needs no JSON probe beside the scrape."""
    engines = [(DEFAULT_RULES, state.engine), *state.models.items()]
    gaps = getattr(state, "graph_pairing_gaps", {})
    lines = ["# HELP mixmatch_stale_stages Stages of the served bundle built from "
             "inputs rewritten since (served as they are until rebuilt).",
             "# TYPE mixmatch_stale_stages gauge"]
    lines += [f'mixmatch_stale_stages{{model="{_esc(name)}",pid="{pid}"}} '
              f'{len(getattr(e, "stale_stages", []))}' for name, e in engines]
    lines += ["# HELP mixmatch_changed_outputs Output files of the served bundle's "
              "stages that are gone or not the bytes the build recorded (on load).",
              "# TYPE mixmatch_changed_outputs gauge"]
    lines += [f'mixmatch_changed_outputs{{model="{_esc(name)}",pid="{pid}"}} '
              f'{sum(map(len, _changed_outputs(e).values()))}' for name, e in engines]
    lines += ["# HELP mixmatch_graph_pairing_differs 1 when a served rules file pairs "
              "categories the bundle's graph was not built to pair.",
              "# TYPE mixmatch_graph_pairing_differs gauge"]
    lines += [f'mixmatch_graph_pairing_differs{{model="{_esc(name)}",pid="{pid}"}} '
              f'{int(bool(gaps.get(name)))}' for name, _ in engines]
    return lines
