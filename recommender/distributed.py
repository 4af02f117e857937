"""Running the build on a Dask cluster: the one module that knows Dask.

``mixmatch build --engine dask [--scheduler ADDRESS]`` runs the same stage code as
the single-process build; only *where* the work runs changes. The pipeline opens
one :class:`DaskExecutor` for the whole build (:func:`dask_executor`) and hands it
to the stages as ``ctx.executor``; a stage that can spread its work asks it to:

``executor.map(func, jobs)``
    run ``func(job)`` for every job on the workers, results in job order. The
    features stage maps the very chunk function its local path calls.
``executor.cached(loader, path, stamp)``
    a picklable stand-in for ``loader(path)`` that loads the model once per worker
    process (and keeps it for later tasks), instead of once per task or item.
``executor.train_booster(...)``
    the compatibility trainer: pair features as a Dask dataframe
    (``map_partitions`` over :meth:`PairFeaturizer.transform`, the function the
    local trainer calls) and ``lightgbm.DaskLGBMClassifier`` with early stopping
    on the same validation pairs.

Without a scheduler address a :class:`distributed.LocalCluster` is started
(``LOCAL_CLUSTER``: 2 worker processes x 1 thread) and closed at the end. Dask is
imported lazily, so the local build never needs it (``pip install mixmatch[dask]``).

Examples
--------
>>> with dask_executor({"scheduler": None}) as ex:          # doctest: +SKIP
...     ex.map(len, [[1, 2], [3]])
[2, 1]
"""
from __future__ import annotations

import contextlib
import math
import numbers
import threading
import warnings
from collections import OrderedDict
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from features.exceptions import InputError
from features.settings import check_table, kinds_of_defaults

#: The local cluster started when no scheduler address is given. Processes, not
#: threads: LightGBM's network is one per process, and the GIL would serialise
#: the pure-Python parts of feature extraction.
LOCAL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"}
#: How the executor splits work (``[dask]`` of a build config may set them too):
#: pair-feature partitions per worker for LightGBM, and the fewest pairs in one
#: (below it the per-task overhead outweighs the work).
EXECUTOR_DEFAULTS = {"parts_per_worker": 2, "min_pairs_per_part": 20_000}
#: The keys of a build config's ``[dask]`` table, each with the kind of value it takes:
#: every key :func:`dask_executor` reads, those of :data:`LOCAL_CLUSTER` and of
#: :data:`EXECUTOR_DEFAULTS`. ``memory_limit`` takes more than one kind (Dask reads a
#: size, a number of bytes or a fraction): :func:`check_memory_limit` checks it.
DASK_SETTINGS = {**kinds_of_defaults({**LOCAL_CLUSTER, **EXECUTOR_DEFAULTS}),
                 "memory_limit": None}
#: The least value of the whole-number ``[dask]`` settings: 0 workers or threads would
#: start a cluster that runs nothing, and 0 pairs per part divides by zero.
DASK_AT_LEAST = {"n_workers": 1, "threads_per_worker": 1, "parts_per_worker": 1,
                 "min_pairs_per_part": 1}


def check_scheduler_address(address: str) -> str:
    """``address`` (``--scheduler``) if Dask can parse it, else InputError naming it.

    A malformed one was a ValueError traceback from inside ``distributed.Client``
    after the build had started, then a 60 s wait for the half-made client to close.

    >>> check_scheduler_address("tcp://127.0.0.1:8786")
    'tcp://127.0.0.1:8786'
    >>> check_scheduler_address("scheduler")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: --scheduler 'scheduler' is not a Dask scheduler ...
    """
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend
    except ImportError:   # the Dask engine says it needs mixmatch[dask] when it starts
        return address

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise InputError(f"--scheduler {address!r} is not a Dask scheduler address "
                         f"({exc}); give one like tcp://host:8786", field="scheduler",
                         value=address) from None
    return address


def check_dask_settings(table: Any) -> dict[str, Any]:
    """The ``[dask]`` table of a build config as a dict, or InputError naming a key
    it does not take (field ``dask``, with the keys it takes) or a value of the wrong
    kind (field ``dask.<key>``), as a ``[stages.<name>]`` table's are named
    (:func:`features.settings.check_table`). The build checks it whatever the engine,
    before anything runs (:func:`recommender.build.check_config_tables`), and
    :func:`dask_executor` again before a cluster starts.

    Before, it was checked only as the cluster started, unknown keys alone: a typo
    (``n_worker = 3``) built with the default sizes, ``n_workers = "three"`` was a
    TypeError from inside Dask, and with ``--engine local`` nothing was checked.

    >>> check_dask_settings({"n_workers": 4, "memory_limit": "3GiB"})
    {'n_workers': 4, 'memory_limit': '3GiB'}
    >>> check_dask_settings({"n_workers": "three"})
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: [dask] n_workers must be a whole number >= 1, got 'three'
    """
    if not isinstance(table, dict):
        raise InputError(f"[dask] must be a table of settings, got {table!r}",
                         field="dask", value=table)
    settings = check_table("dask", table, DASK_SETTINGS, at_least=DASK_AT_LEAST)
    if "memory_limit" in settings:
        check_memory_limit(settings["memory_limit"])
    return settings


def check_memory_limit(value: Any) -> None:
    """InputError naming ``value`` unless Dask takes it as a worker's memory limit: a
    size (``"2GiB"``, ``"500 MB"``, ``"auto"``), a number of bytes, a fraction of the
    machine's memory (a number <= 1), or 0 or null (JSON, YAML) for no limit. Sizes
    are read by Dask's own parser when Dask is installed (a local build does not
    need it; the Dask engine does).

    >>> check_memory_limit("5.5GiB"), check_memory_limit(0.5)
    (None, None)
    >>> check_memory_limit("lots")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: [dask] memory_limit must be a size ("2GiB", ... got 'lots'
    """
    ok = value is None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        ok = math.isfinite(value) and value >= 0
    elif isinstance(value, str):
        ok = value == "auto" or _size_bytes(value) >= 0
    if not ok:
        raise InputError(f"[dask] memory_limit must be a size (\"2GiB\", \"auto\"), a "
                         f"number of bytes or a fraction of memory, got {value!r}",
                         field="dask.memory_limit", value=value)


def _size_bytes(size: str) -> float:
    """``size`` in bytes as Dask reads it (-1 when it cannot), or 0 without Dask."""
    try:
        from dask.utils import parse_bytes
    except ImportError:   # a local build; the Dask engine says it needs mixmatch[dask]
        return 0
    try:
        return parse_bytes(size)
    except ValueError:
        return -1


def dask_settings_unused(config: dict) -> str | None:
    """What a build with ``config`` leaves unused of its ``[dask]`` table, said for
    the log (a user may take it to have sized the build): all of it on the local
    engine, the local cluster's sizes (:data:`LOCAL_CLUSTER`) on a scheduler's
    cluster; None when it uses all of it.

    >>> dask_settings_unused({"engine": "local", "dask": {"n_workers": 3}})
    '[dask] n_workers not used: engine local runs the stages in this process'
    >>> dask_settings_unused({"engine": "dask", "dask": {"n_workers": 3}}) is None
    True
    """
    table = config.get("dask") or {}
    if not isinstance(table, dict) or not table:
        return None
    if config.get("engine", "local") != "dask":
        return (f"[dask] {', '.join(sorted(table))} not used: engine local runs the "
                f"stages in this process")
    local_only = sorted(set(table) & set(LOCAL_CLUSTER))
    if config.get("scheduler") and local_only:
        return (f"[dask] {', '.join(local_only)} not used: they size a local cluster, "
                f"and the stages run on the cluster at {config['scheduler']}")
    return None


# -- models loaded once per worker --------------------------------------------------
_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
#: Models kept per worker process; a long-lived cluster serves many builds.
_CACHE_SIZE = 4
#: How many times each model key was loaded in this process (tests read it).
LOADS: dict[tuple, int] = {}


class WorkerCached:
    """A picklable handle on ``loader(path)``, loaded at most once per process.

    Attribute access is forwarded to the loaded object, so code written for the
    model itself (``model.predict_all(...)``, ``model.taxonomy_``) works
    unchanged on a worker. ``stamp`` (e.g. the model file's hash) is part of the
    cache key, so a retrained model at the same path is loaded afresh.

    Examples
    --------
    >>> h = WorkerCached(len, "abc")
    >>> h.get(), h.get() is h.get()
    (3, True)
    """

    def __init__(self, loader: Callable[[str], Any], path: str, stamp: str = ""):
        self.loader = loader
        self.path = str(path)
        self.stamp = stamp

    @property
    def key(self) -> tuple:
        return (getattr(self.loader, "__module__", ""),
                getattr(self.loader, "__qualname__", repr(self.loader)), self.path, self.stamp)

    def get(self) -> Any:
        key = self.key
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
            obj = self.loader(self.path)
            _CACHE[key] = obj
            LOADS[key] = LOADS.get(key, 0) + 1
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
            return obj

    def __getattr__(self, name: str) -> Any:
        # never for private names: pickle probes __setstate__ etc. before __init__ ran
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.get(), name)


def worker_loads() -> dict[str, int]:
    """Model loads in this process as ``{"module.loader path": count}`` (for tests)."""
    return {f"{k[0]}.{k[1]} {k[2]}": v for k, v in LOADS.items()}


# -- the executor --------------------------------------------------------------------
class DaskExecutor:
    """What the stages get as ``ctx.executor`` when the build runs on Dask."""

    #: Tasks of :meth:`map` in flight per worker.
    window_per_worker = 4

    def __init__(self, client, parts_per_worker: int = 2, min_pairs_per_part: int = 20_000):
        self.client = client
        self.parts_per_worker = int(parts_per_worker)
        self.min_pairs_per_part = int(min_pairs_per_part)

    @property
    def n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def map(self, func: Callable, jobs: list) -> list:
        """``[func(job) for job in jobs]``, run on the workers, in job order.

        Jobs are submitted as a sliding window of ``window_per_worker`` tasks per
        worker, not as one graph: a million-item catalogue is ~15,000 chunk jobs
        whose item lists would make one graph of hundreds of MB, all held by the
        scheduler at once.
        """
        from distributed import as_completed

        results: list = [None] * len(jobs)
        pending = iter(enumerate(jobs))
        index: dict = {}

        def submit_next(ac) -> None:
            for i, job in pending:
                # pure=False: chunk functions write files; never dedupe or reuse them
                f = self.client.submit(func, job, pure=False)
                index[f.key] = i
                ac.add(f)
                return

        ac = as_completed(loop=self.client.loop)
        for _ in range(self.window_per_worker * self.n_workers):
            submit_next(ac)
        for f in ac:
            results[index.pop(f.key)] = f.result()
            f.release()
            submit_next(ac)
        return results

    def cached(self, loader: Callable[[str], Any], path, stamp: str = "") -> WorkerCached:
        """A handle that loads ``loader(path)`` once per worker (see :class:`WorkerCached`)."""
        return WorkerCached(loader, str(path), stamp)

    def worker_loads(self) -> dict[str, dict[str, int]]:
        """Model loads per worker address (for tests and the benchmark)."""
        return self.client.run(worker_loads)

    def worker_memory(self) -> dict[str, int]:
        """Resident memory (bytes) of each worker process now."""
        return {w: int(info.get("metrics", {}).get("memory", 0))
                for w, info in self.client.scheduler_info(n_workers=-1)["workers"].items()}

    # -- compatibility training ------------------------------------------------------
    def train_booster(self, params: dict, fz, items, train: tuple, val: tuple, *,
                      num_boost_round: int, early_stopping_rounds: int):
        """Train LightGBM on the cluster; same contract as the local trainer.

        ``train`` = (a, b, outfit, y) and ``val`` = (a, b, y) are catalogue-row
        pairs. Pair features are a Dask dataframe: ``map_partitions`` over
        :meth:`PairFeaturizer.transform` with the featurizer and item table
        broadcast once to every worker. Early stopping: LightGBM's Dask interface
        splits eval sets by partition, so workers would see different validation
        rows, stop at different rounds and hang (LightGBM issue #6351). Instead
        every training partition carries the *whole* validation set, and the
        metric reads the first ``len(val)`` rows of what a worker holds (exactly
        one full copy): all workers compute the same number and stop together,
        at the round the local trainer would pick on the same rows.

        Returns ``(booster, best validation logloss)``.
        """
        import dask
        import dask.dataframe as dd
        import lightgbm as lgb

        a, b, o, y = train
        va, vb, vy = val
        n_parts = max(1, min(self.n_workers * self.parts_per_worker,
                             math.ceil(len(a) / self.min_pairs_per_part)))
        pairs = pd.DataFrame({"a": np.asarray(a, np.int64), "b": np.asarray(b, np.int64),
                              "o": np.asarray(o, np.int64), "y": np.asarray(y, np.int64)})
        # Rows come positives first, then negatives; contiguous partitions would give
        # a worker one class only, and LightGBM's classifier encodes labels per
        # worker (one class -> all labels 0). A seeded shuffle mixes every partition.
        order = np.random.default_rng(int(params.get("seed", 0))).permutation(len(pairs))
        pairs = pairs.iloc[order].reset_index(drop=True)
        vpairs = pd.DataFrame({"a": np.asarray(va, np.int64), "b": np.asarray(vb, np.int64),
                               "o": -1, "y": np.asarray(vy, np.int64)})
        names = list(fz.feature_names_)
        meta = pd.DataFrame({n: pd.Series(dtype=np.float32) for n in names})
        fz_f, items_f, vpairs_f = (self.client.scatter(x, broadcast=True, hash=False)
                                   for x in (fz, items, vpairs))
        try:
            dpairs = dd.from_pandas(pairs, npartitions=n_parts, sort=False)
            X = dpairs.map_partitions(pair_feature_frame, fz_f, items_f, True, meta=meta)
            yd = dpairs["y"]
            Xv = dd.from_delayed([dask.delayed(pair_feature_frame, pure=False)(
                vpairs_f, fz_f, items_f, False) for _ in range(n_parts)], meta=meta,
                verify_meta=False)
            yv = dd.from_delayed([dask.delayed(_labels, pure=False)(vpairs_f)
                                  for _ in range(n_parts)],
                                 meta=pd.Series(dtype=np.int64, name="y"), verify_meta=False)
            p = {k: v for k, v in params.items() if k not in ("num_threads", "metric")}
            model = lgb.DaskLGBMClassifier(client=self.client, n_estimators=num_boost_round,
                                           metric="None", **p)
            cats = [k for k, c in enumerate(fz.categorical_) if c]
            # as_current: lightgbm.dask calls distributed.wait(), which finds the
            # client through the current/default client, and ours is not the default
            with self.client.as_current(), warnings.catch_warnings():
                # LightGBM 4.x warns on every Dask fit that the sklearn default
                # n_jobs=None "will be ignored" (it sets one thread per Dask
                # thread itself); it is not about anything we passed.
                warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored",
                                        category=UserWarning)
                model.fit(X, yd, eval_X=(Xv,), eval_y=(yv,), eval_names=["val"],
                          eval_metric=FirstRowsLogloss(len(vpairs)), categorical_feature=cats,
                          callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)])
        finally:
            for f in (fz_f, items_f, vpairs_f):
                f.release()
        booster = model.booster_
        curve = model.evals_result_["val"]["binary_logloss"]
        return booster, float(min(curve))


def pair_feature_frame(pairs: pd.DataFrame, fz, items, leave_out_outfit: bool
                       ) -> pd.DataFrame:
    """Pair features of one partition of pairs: :meth:`PairFeaturizer.transform`.

    ``leave_out_outfit`` passes each row's outfit to the co-occurrence features
    (training rows), as the local trainer does; validation rows get none.
    """
    a = pairs["a"].to_numpy(np.int64)
    b = pairs["b"].to_numpy(np.int64)
    outfit = pairs["o"].to_numpy(np.int64) if leave_out_outfit else None
    X = fz.transform(items, a, items, b, outfit=outfit)
    return pd.DataFrame(X, columns=list(fz.feature_names_), index=pairs.index)


def _labels(pairs: pd.DataFrame) -> pd.Series:
    return pairs["y"].astype(np.int64)


class FirstRowsLogloss:
    """Binary log loss of the first ``n`` rows (a worker's one copy of the validation set).

    >>> f = FirstRowsLogloss(2)
    >>> name, value, higher = f(np.array([1, 0, 1]), np.array([0.5, 0.5, 0.0]))
    >>> name, round(value, 4), higher
    ('binary_logloss', 0.6931, False)
    """

    def __init__(self, n: int):
        self.n = int(n)

    def __call__(self, y_true, y_pred):
        yt = np.asarray(y_true, float)[:self.n]
        p = np.clip(np.asarray(y_pred, float)[:self.n], 1e-15, 1 - 1e-15)
        loss = -np.mean(yt * np.log(p) + (1 - yt) * np.log(1 - p))
        return "binary_logloss", float(loss), False


# -- the client ---------------------------------------------------------------------
_ACTIVE: DaskExecutor | None = None


@contextlib.contextmanager
def dask_executor(config: dict) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` on ``config["scheduler"]``, or on a new local cluster.

    Re-entrant: inside an open one (the pipeline opens one per build) it yields
    that one, so a stage run alone and a stage run in a build behave the same.
    ``config["dask"]`` (the ``[dask]`` table of a build config) may set the keys
    of :data:`LOCAL_CLUSTER` (for the local cluster) and of
    :data:`EXECUTOR_DEFAULTS`, checked (:func:`check_dask_settings`) before any
    cluster starts. On exit the client closes before the cluster it
    talks to, so shutdown does not race.
    """
    global _ACTIVE
    if _ACTIVE is not None:
        yield _ACTIVE
        return
    # before Dask is imported: checked as the build checks it, named by key and value
    opts = check_dask_settings(config.get("dask", {}))
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:   # a ModuleNotFoundError traceback from the build before
        raise InputError(f"--engine dask needs Dask, which is not installed here "
                         f"({exc}): pip install 'mixmatch[dask]'", field="engine",
                         value="dask") from None

    scheduler = config.get("scheduler")
    ex_opts = {k: opts.pop(k, v) for k, v in EXECUTOR_DEFAULTS.items()}
    with contextlib.ExitStack() as stack:
        if scheduler:
            check_scheduler_address(scheduler)
            try:
                client = stack.enter_context(Client(scheduler, set_as_default=False))
            except OSError as exc:   # nothing listening there, or a timeout
                raise InputError(f"cannot reach the Dask scheduler --scheduler "
                                 f"{scheduler}: {exc}", field="scheduler",
                                 value=scheduler) from None
        else:
            # No dashboard; the scheduler's HTTP endpoints (health, metrics) on a free
            # loopback port: the default 8787 may belong to another cluster, and
            # taking another port then warns.
            cluster = stack.enter_context(LocalCluster(
                processes=True, dashboard_address=None,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                **{**LOCAL_CLUSTER, **opts}))
            client = stack.enter_context(Client(cluster, set_as_default=False))
        _ACTIVE = DaskExecutor(client, **ex_opts)
        try:
            yield _ACTIVE
        finally:
            _ACTIVE = None


__all__ = ["DaskExecutor", "WorkerCached", "dask_executor",
           "pair_feature_frame", "FirstRowsLogloss", "LOCAL_CLUSTER", "EXECUTOR_DEFAULTS",
           "DASK_SETTINGS", "check_dask_settings", "check_memory_limit",
           "dask_settings_unused"]
