"""The offline build: stages with files in and files out, run in order into a bundle.

Each stage lives in the module that owns its work and exposes two functions:

``stage_inputs(ctx) -> dict``
    Everything the stage's result depends on (config values, input file hashes).
    Hashed to decide whether a finished stage can be skipped, and kept in the
    stage's record (:func:`kept_inputs`), so that a stage run again says what
    changed (:func:`stage_reason`). Settings go in spelled one way
    (:func:`features.settings.canonical_settings`): ``lr = 1`` and ``lr = 1.0``, or a
    key stated at its default and left out, are the same inputs; a record made when
    they were spelled otherwise, on the same settings, is current
    (:func:`recorded_earlier`).
``run_stage(ctx) -> dict``
    Does the work and returns ``{"outputs": [paths relative to the bundle],
    "metrics": {...}}``.

and may expose a third:

``check_config(ctx)``
    Raises InputError naming a bad setting of its ``[stages.NAME]`` table. Every
    stage to run is checked before the first one starts, so a misspelt graph
    setting is refused before the attribute network trains, not an hour later.

and, when its inputs name where its data lies as well as what it holds, two more:

``LOCATION_INPUTS``
    The keys of its inputs that say only where the data is (the ingest's data
    folder, an image stage's image root): the content there is in other keys
    (file and image hashes). A stage whose inputs differ from its record in
    those keys alone is not run again (:func:`data_moved`): a data folder
    moved or copied with its bytes keeps every stage current, and the record
    follows it to the new place.
``relocate(ctx) -> str``
    What a stage that records a place itself does then instead of running:
    the ingest sets the bundle's image root to the new folder (in memory; the
    pipeline saves it with the record) and says so.

and, when it reads the catalogue's images, one more:

``READS_IMAGES = True``
    Before it runs (or is planned to), the bundle's images are looked for where
    the manifest's ``image_root`` says (:meth:`Bundle.images_gone`): a folder
    moved away or unmounted would have the stage see every image missing and
    replace what it made from them (a features table with every row a failed
    image, an attribute network trained on nothing). It is refused instead
    (BundleError, :func:`images_refusal`), naming the folder and the build that
    records a new place; decided before the run's first stage
    (:func:`refusal_up_front`), so that an ingest or split before it writes
    nothing either.

and, when it writes the catalogue and records where its images are, one more:

``images_after_run(ctx) -> (image root, why its images are gone or None)``
    The image root it records and whether the image stages after it would find
    the images of the catalogue it writes (the ingest's), told before it runs.

:func:`plan_stages` says what a run would do (``mixmatch build --dry-run``) without
doing it.

A stage whose module has not landed yet is reported plainly (``StageNotAvailable``)
and the build stops there with a non-zero exit; no stage pretends.

Examples
--------
>>> [s.name for s in STAGES][:2]
['ingest', 'split']
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import os
import re
import shlex
import sys
import time
from pathlib import PurePath
from typing import Any, Callable

from features.exceptions import (BundleError, InputError, MeantOtherwiseThen, MixmatchError,
                                 StageNotAvailable)
from recommender.bundle import MANIFEST, Bundle, images_gone_from, json_hash


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    module: str
    issue: int
    description: str
    #: sources for which the stage applies (None: all)
    sources: tuple[str, ...] | None = None
    #: files the stage cannot run without that an earlier stage writes: (path in the
    #: bundle, that stage); see :func:`missing_input`
    reads: tuple[tuple[str, str], ...] = ()


_CATALOG = ("catalog.parquet", "ingest")
STAGES: tuple[Stage, ...] = (
    Stage("ingest", "recommender.ingest", 2, "source data -> canonical catalogue + outfits"),
    Stage("split", "recommender.evaluation.make_eval", 4,
          "held-out outfits and FITB/compatibility files",
          reads=(_CATALOG, ("outfits.parquet", "ingest"))),
    Stage("attributes", "features.attributes.train", 3,
          "train the attribute network (its penultimate layer is the embedding)",
          reads=(_CATALOG,)),
    Stage("keypoints", "features.keypoints.train", 3,
          "train the heatmap keypoint detector on FashionAI-format labels",
          sources=("demo",)),
    Stage("features", "features.extract", 3,
          "masks, colours, attributes, embeddings, keypoints, shape features",
          reads=(_CATALOG,)),
    Stage("compatibility", "recommender.compat.train", 4,
          "LightGBM pairwise compatibility model",
          reads=(_CATALOG, ("eval/train_outfits.parquet", "split"))),
    Stage("graph", "recommender.graph", 5, "garment graph and serving arrays",
          reads=(_CATALOG, ("features/embeddings.npy", "features"))),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


@dataclasses.dataclass
class BuildContext:
    """What every stage gets: the bundle, the resolved config, and a logger."""

    bundle: Bundle
    config: dict[str, Any]
    force: bool = False
    log: Callable[[str], None] = dataclasses.field(
        default=lambda msg: print(msg, file=sys.stderr, flush=True))
    #: Where stages may spread work: None (this process) or, with engine "dask",
    #: a recommender.distributed.DaskExecutor (map / cached / train_booster).
    executor: Any = None

    @property
    def source(self) -> str:
        return self.config.get("source", "")

    def stage_config(self, name: str) -> dict:
        return dict(self.config.get("stages", {}).get(name, {}))

    def source_defaults(self, name: str) -> dict:
        """The ``[stages.NAME]`` settings the source builds with where the config is
        silent (:func:`recommender.build.source_stage_defaults`: MANGO's attribute
        recipe). A stage records these in its inputs whatever their value, as it
        always did, where it leaves out other keys stated at their default
        (:func:`features.settings.canonical_settings`)."""
        from recommender.build import source_stage_defaults   # build imports this module

        return source_stage_defaults(self.source, bool(self.config.get("quick"))).get(
            name, {})


def load_stage_module(stage: Stage):
    """Import a stage's module, or raise StageNotAvailable if it has not landed."""
    try:
        return importlib.import_module(stage.module)
    except ModuleNotFoundError as exc:
        if exc.name and stage.module.startswith(exc.name) or exc.name == stage.module:
            raise StageNotAvailable(
                f"stage '{stage.name}' ({stage.description}) is not implemented yet: "
                f"module {stage.module} has not landed (issue #{stage.issue})") from exc
        raise


def run_stages(ctx: BuildContext, names: list[str] | None = None) -> dict[str, dict]:
    """Run the named stages (default: all that apply to the source) in order.

    A stage already finished on identical inputs is skipped unless ``ctx.force``.
    Returns the metrics of each stage run or skipped. With ``engine = "dask"`` one
    Dask client serves every stage of the run (``ctx.executor``).

    The run holds the bundle's write lock (:func:`recommender.bundle.write_lock`):
    while another process builds into the same folder it is refused at once
    (BundleError naming that process).
    """
    with ctx.bundle.write_lock():
        if ctx.config.get("engine") == "dask" and ctx.executor is None:
            from recommender.distributed import dask_executor  # lazily: dask is optional

            with dask_executor(ctx.config) as ex:
                ctx.executor = ex
                try:
                    return _run_stages(ctx, names)
                finally:
                    ctx.executor = None
        return _run_stages(ctx, names)


def stages_of(names: list[str] | None, source: str) -> list[Stage]:
    """The stages a run of ``names`` (default: all that apply to ``source``) runs, in
    the pipeline's order; a name that is no stage is left out (:func:`_selected`
    refuses it).

    >>> [s.name for s in stages_of(["graph", "features"], "demo")]
    ['features', 'graph']
    """
    return [stage for stage in STAGES
            if (stage.name in names if names is not None
                else stage.sources is None or source in stage.sources)]


def missing_input(root, run: list[Stage], *, from_build: bool = False
                  ) -> tuple[str, str] | None:
    """``(stage, why)`` for the first stage of ``run`` that reads a file an earlier
    stage writes (:attr:`Stage.reads`) which the bundle at ``root`` lacks and no
    stage before it in ``run`` writes; None when every stage has what it reads.
    Decided before anything runs: ``--stages split`` on a folder never ingested was
    a FileNotFoundError traceback, ``--stages ingest,compatibility`` wrote the
    ingest and then failed, and a demo build generated its catalogue first.
    ``from_build``: the run is ``mixmatch build --stages``, told to add the stage
    to them; else (a stage command) the command that runs it.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> missing_input(root, stages_of(["ingest", "split"], "demo")) is None
    True
    >>> missing_input(root, stages_of(["split"], "demo"))[1].split(":")[0]
    'the split stage reads catalog.parquet, which the ingest stage writes'
    >>> missing_input(root, stages_of(["split", "graph"], "demo"), from_build=True
    ...               )[1].split("; ")[-1]
    'add it: --stages ingest,split,graph'
    """
    ran: set[str] = set()
    for stage in run:
        for rel, writer in stage.reads:
            if writer not in ran and not os.path.isfile(os.path.join(root, rel)):
                names = {s.name for s in run} | {writer}
                todo = (f"add it: --stages {','.join(n for n in STAGE_NAMES if n in names)}"
                        if from_build else
                        f"run {writer} first: {rebuild_command(writer, root)}")
                return stage.name, (
                    f"the {stage.name} stage reads {rel}, which the {writer} stage "
                    f"writes: {root} has none and this run does not include {writer}; "
                    + todo)
        ran.add(stage.name)
    return None


def _selected(ctx: BuildContext, names: list[str] | None) -> list[Stage]:
    """The stages a run of ``names`` (default: all that apply to the source) considers,
    in order, each config checked before the first one starts."""
    if names is not None:
        unknown = [n for n in names if n not in STAGE_NAMES]
        if unknown:
            raise InputError(f"unknown stage {unknown[0]!r}", field="stage",
                             value=unknown[0], allowed=STAGE_NAMES)
    run = stages_of(names, ctx.source)
    for stage in run:
        try:
            check = getattr(load_stage_module(stage), "check_config", None)
        except StageNotAvailable:
            continue   # said when the build reaches it, after the stages before it
        if check is not None:
            check(ctx)
    return run


def _run_stages(ctx: BuildContext, names: list[str] | None) -> dict[str, dict]:
    run = _selected(ctx, names)
    refused = refusal_up_front(ctx, run, names)
    if refused is not None:
        # before the first stage: an ingest or split written, then the image stage
        # after them refused, would leave a bundle that is neither the old nor the new
        raise BundleError(refused)
    results: dict[str, dict] = {}
    backfilled = False
    for stage in run:
        module = load_stage_module(stage)
        inputs = module.stage_inputs(ctx)
        rec = ctx.bundle.stage_record(stage.name)
        inputs_hash, reason, written, moved = _status(ctx, stage.name, module, inputs)
        if written and reason is None:
            # recorded by earlier code on these settings, spelled as it spelled them:
            # recorded the new way from now on
            rec["inputs_hash"] = inputs_hash
            rec.pop("inputs", None)
        if moved is not None:
            # the same files at a new place: their results stand; only where to read
            # them is recorded (MANGO: the attribute network's 27 minutes, not rerun)
            said = module.relocate(ctx) if hasattr(module, "relocate") else None
            rec["inputs_hash"] = inputs_hash
            rec["inputs"] = kept_inputs(inputs)
            rec["locations"] = _locations(module, inputs)
            ctx.bundle.save()
            ctx.log(f"[{stage.name}] same content at a new place ({'; '.join(moved)}): "
                    f"{said or 'recorded the new place'}; not run again")
            results[stage.name] = rec.get("metrics", {})
            continue
        if reason is None:
            ctx.log(f"[{stage.name}] up to date, skipped")
            if "inputs" not in rec:
                # a record made before inputs were kept, on these very inputs (same
                # hash), or re-recorded just above: kept now, so that the next change
                # can be named
                rec["inputs"] = kept_inputs(inputs)
                backfilled = True
            results[stage.name] = rec.get("metrics", {})
            continue
        # decided before the first stage (refusal_up_front); checked again for what
        # only shows now: images removed, or found not to decode, since then
        refused = images_refusal(ctx, stage.name, module)
        if refused is not None:
            raise BundleError(refused)
        # why, before a rerun that may take half an hour: a setting, the catalogue,
        # the images' fingerprint, a package or code version; or a model copied in by
        # hand over the stage's output, which the rerun discards
        again = rec is not None or reason == UNFINISHED
        ctx.log(f"[{stage.name}] {reason}; running it{' again' if again else ''}")
        # marked before the stage writes: its old record is not trusted again until it
        # finishes, and loaders see a build under way (Bundle.check_complete); a stage
        # that refuses before writing anything leaves the bundle as it was
        with ctx.bundle.stage_run(stage.name):
            ctx.log(f"[{stage.name}] {stage.description} ...")
            t0 = time.perf_counter()
            out = module.run_stage(ctx) or {}
        elapsed = time.perf_counter() - t0
        metrics = dict(out.get("metrics", {}))
        # the seed and quick of this run, as the stages read them: `mixmatch train
        # --seed 3` retrains under the build's config, which keeps the build's seed
        ctx.bundle.record_stage(stage.name, inputs_hash=inputs_hash,
                                outputs=list(out.get("outputs", [])), metrics=metrics,
                                extra={"seconds": round(elapsed, 2),
                                       "seed": ctx.config.get("seed", 0),
                                       "quick": bool(ctx.config.get("quick")),
                                       "reads": files_read(ctx.bundle, stage.name, inputs),
                                       "inputs": kept_inputs(inputs),
                                       "locations": _locations(module, inputs)})
        ctx.log(f"[{stage.name}] done in {elapsed:.1f}s")
        results[stage.name] = metrics
    if backfilled:
        ctx.bundle.save()
    pending = ctx.bundle.finish_build(every_stage=names is None)
    if pending:
        ctx.log(f"bundle {ctx.bundle.root} stays marked as being built: stage(s) "
                f"{', '.join(pending)} started earlier did not finish; run them "
                f"(mixmatch build) before serving it")
    if names is not None and results:
        # a stage run alone (mixmatch train --stage compatibility) leaves the stages
        # after it built from what it replaced; the server would go on serving them
        stale = out_of_date_after(ctx, list(results))
        if stale:
            ctx.log(f"stage(s) {', '.join(stale)} of bundle {ctx.bundle.root} were built "
                    f"from inputs that have changed since and are out of date (served "
                    f"as they are until rebuilt); rebuild them: "
                    + rebuild_commands(stale, ctx.bundle.root))
    return results


#: Kept inputs (:func:`kept_inputs`): a list of more items than KEPT_ITEMS, a mapping of
#: more keys than KEPT_KEYS or a string longer than KEPT_TEXT is kept as its size and
#: hash. Every stage's inputs are small (the largest, the graph's, about 1 KB on MANGO;
#: the largest table, its config, 14 keys), but a config table may hold a long list,
#: and the manifest is read on every load.
KEPT_ITEMS = 32
KEPT_KEYS = 64
KEPT_TEXT = 200
#: The reason of a stage whose run started and did not finish (its record dropped).
UNFINISHED = "its last run did not finish"


def kept_inputs(inputs: Any) -> Any:
    """``inputs`` (a stage's ``stage_inputs``) as its record keeps them: as JSON reads
    them back, with long lists, mappings and strings replaced by their size and hash.

    Only to say what changed (:func:`stage_reason`): whether a stage is current is
    decided by ``inputs_hash``, the hash of the inputs in full.

    >>> kept_inputs({"epochs": 8, "size": (112, 80), "ids": list(range(100))})
    {'epochs': 8, 'size': [112, 80], 'ids': '<list of 100, hash 51f2696d83d68db9>'}
    """
    def keep(value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) > KEPT_KEYS:
                return f"<mapping of {len(value)}, hash {json_hash(value)}>"
            return {str(k): keep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            if len(value) > KEPT_ITEMS:
                return f"<list of {len(value)}, hash {json_hash(value)}>"
            return [keep(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        text = str(value)  # what json_hash hashes a path or a date as
        if len(text) > KEPT_TEXT:
            return f"<text of {len(text)}, hash {json_hash(text)}>"
        return text

    return keep(inputs)


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested mappings by dotted key (a list is one leaf)."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1] or "inputs": obj}


def _shown(value: Any, width: int = 40) -> str:
    """A kept value, short: a hash by its first 8 digits, a path by its end."""
    if isinstance(value, str):
        if re.fullmatch(r"[0-9a-f]{12,}", value):
            return value[:8] + "…"
        return value if len(value) <= width else "…" + value[-(width - 1):]
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def inputs_changes(old: Any, new: Any, limit: int = 8) -> list[str]:
    """What differs between two kept inputs, as ``dotted.key old -> new``, at most
    ``limit`` lines (then how many more).

    >>> inputs_changes({"stage": {"epochs": 47}, "images": {"hash": "79d1e9c46c2ccc5b"}},
    ...                {"stage": {"epochs": 40}, "images": {"hash": "5a0e11d2c3b4a596"}})
    ['images.hash 79d1e9c4… -> 5a0e11d2…', 'stage.epochs 47 -> 40']
    >>> inputs_changes({"stage": {"lr": 0.001}}, {"stage": {}})
    ['stage.lr 0.001 -> (absent)']
    """
    a, b = _flat(old), _flat(new)
    keys = sorted(set(a) | set(b))

    def emptied(key: str) -> bool:
        # a table emptied or filled ({} on one side, its keys on the other) is said
        # by its keys' lines alone, not also as "stage (absent) -> {}"
        one = a.get(key, b.get(key))
        return (one == {} and (key in a) != (key in b)
                and any(k.startswith(key + ".") for k in keys))

    out = [f"{key} {_shown(a[key]) if key in a else '(absent)'} -> "
           f"{_shown(b[key]) if key in b else '(absent)'}"
           for key in keys
           if (key not in a or key not in b or a[key] != b[key]) and not emptied(key)]
    if len(out) > limit:
        out[limit:] = [f"and {len(out) - limit} more"]
    return out


def stage_reason(ctx: BuildContext, name: str, inputs_hash: str | None,
                 inputs: Any = None) -> str | None:
    """Why stage ``name`` would run now, or None when it is current (a run skips it):
    not run before, its last run did not finish, forced, its outputs changed since it
    ran, or which of its inputs (``stage_inputs`` now, hashed as ``inputs_hash``)
    changed, old and new. A record made before inputs were kept says only that the
    hash differs.

    >>> import tempfile
    >>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root=None)
    >>> b.record_stage("graph", inputs_hash="a", outputs=[],
    ...                extra={"inputs": {"config": {"k_visual": 20}}})
    >>> ctx = BuildContext(bundle=b, config={})
    >>> stage_reason(ctx, "graph", "a") is None
    True
    >>> stage_reason(ctx, "graph", "b", {"config": {"k_visual": 5}})
    'inputs changed since it ran: config.k_visual 20 -> 5'
    """
    b = ctx.bundle
    rec = b.stage_record(name)
    if rec is None:
        return UNFINISHED if name in b.unfinished_stages() else "not run before"
    if ctx.force:
        return "forced (--force)"
    if rec.get("inputs_hash") == inputs_hash:
        changed = b.changed_outputs(name)
        return f"outputs changed since it ran: {', '.join(changed)}" if changed else None
    if "inputs" not in rec:
        return "its record predates kept inputs (inputs hash differs)"
    changes = inputs_changes(rec["inputs"], kept_inputs(inputs))
    if not changes:  # kept alike, hashed apart: a value JSON reads back otherwise
        return "inputs changed since it ran (inputs hash differs)"
    return "inputs changed since it ran: " + "; ".join(changes)


def _locations(module, inputs: Any) -> dict[str, Any]:
    """The values of the stage's ``LOCATION_INPUTS`` in ``inputs``, kept in full in
    its record (:func:`kept_inputs` keeps a long path only as its hash)."""
    keys = getattr(module, "LOCATION_INPUTS", ())
    return {k: inputs[k] for k in keys if isinstance(inputs, dict) and k in inputs}


def data_moved(ctx: BuildContext, name: str, module, inputs: Any) -> list[str] | None:
    """How the place of stage ``name``'s data changed (``key old -> new``, in full)
    when its inputs (``stage_inputs`` now) differ from its record only in the
    module's ``LOCATION_INPUTS``: the same files, hashed alike, at another place (a
    data folder moved, copied, mounted elsewhere). None when anything else differs,
    when nothing does, or when an output of the stage was replaced since it ran (a
    run with ``--force`` runs the stage whatever this says).

    The record's inputs hash is the proof: the inputs now, with the recorded
    places put back, must hash to it. A record made before the places were kept
    in full (``locations``) gives them from its kept inputs.

    >>> import tempfile, types
    >>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root=None)
    >>> was = {"data": "/mnt/a", "images": {"n": 2, "hash": "5a0e11d2c3b4a596"}}
    >>> b.record_stage("ingest", inputs_hash=json_hash({"stage": "ingest", "inputs": was}),
    ...                outputs=[], extra={"inputs": kept_inputs(was)})
    >>> ingest = types.SimpleNamespace(LOCATION_INPUTS=("data",))
    >>> ctx = BuildContext(bundle=b, config={})
    >>> data_moved(ctx, "ingest", ingest, {**was, "data": "/mnt/b"})
    ['data /mnt/a -> /mnt/b']
    >>> data_moved(ctx, "ingest", ingest, {"data": "/mnt/b",
    ...                                    "images": {"n": 2, "hash": "79d1e9c46c2ccc5b"}})
    """
    keys = getattr(module, "LOCATION_INPUTS", ())
    rec = ctx.bundle.stage_record(name)
    if (not keys or not isinstance(rec, dict) or not isinstance(inputs, dict)
            or not isinstance(rec.get("inputs"), dict)):
        return None
    recorded = rec.get("locations")
    recorded = recorded if isinstance(recorded, dict) else {}
    then = dict(inputs)
    for k in keys:
        if k in inputs and (k in recorded or k in rec["inputs"]):
            then[k] = recorded[k] if k in recorded else rec["inputs"][k]
    if then == inputs or json_hash({"stage": name, "inputs": then}) != rec.get("inputs_hash"):
        return None
    if ctx.bundle.changed_outputs(name):
        return None
    # in full, not shortened as inputs_changes shows a path: the new place is the news
    return [f"{k} {then[k]} -> {inputs[k]}" for k in keys
            if k in inputs and then[k] != inputs[k]]


def _status(ctx: BuildContext, name: str, module, inputs: Any
            ) -> tuple[str, str | None, str | None, list[str] | None]:
    """Where stage ``name`` stands with its ``inputs`` now, as a run and a plan read
    it: ``(inputs hash, why it runs or None, the hash a record made under an earlier
    spelling of these settings holds (:func:`recorded_earlier`) or None, what only
    moved (:func:`data_moved`) or None)``. A record of an earlier spelling is current
    unless forced or an output was replaced since; a stage whose data only moved is
    not rerun (its reason stands beside ``moved``)."""
    inputs_hash = json_hash({"stage": name, "inputs": inputs})
    reason = stage_reason(ctx, name, inputs_hash, inputs)
    written = recorded_earlier(ctx, name, module, inputs_hash) if reason else None
    if written:
        reason = stage_reason(ctx, name, written)
    moved = data_moved(ctx, name, module, inputs) if reason and not ctx.force else None
    return inputs_hash, reason, written, moved


def recorded_earlier(ctx: BuildContext, name: str, module, inputs_hash: str
                     ) -> str | None:
    """The inputs hash stage ``name`` recorded, when it is not ``inputs_hash`` (its
    ``stage_inputs`` now) but the hash of the same inputs with the settings spelled as
    earlier code recorded them (:data:`features.settings.SPELLINGS`: as written, or
    one spelling per value before aliases and derived defaults were): a record made
    then, on these very settings (``lr = 1.0``, a key stated at its default, the
    default heads written out), which would otherwise rerun once for a spelling.
    None otherwise, and for a spelling under which these settings trained otherwise
    then (the stage raises :class:`~features.exceptions.MeantOtherwiseThen`).
    Whether the stage is current is then :func:`stage_reason` of that hash (forced,
    or an output replaced since, it still runs)."""
    from features.settings import SPELLING, settings_spelled

    rec = ctx.bundle.stage_record(name)
    if rec is None or rec.get("inputs_hash") == inputs_hash:
        return None
    for spelling in range(SPELLING - 1, -1, -1):    # the latest first: the likeliest
        try:
            with settings_spelled(spelling):
                then = json_hash({"stage": name, "inputs": module.stage_inputs(ctx)})
        except MeantOtherwiseThen:
            continue
        if then != inputs_hash and rec.get("inputs_hash") == then:
            return then
    return None


def plan_stages(ctx: BuildContext, names: list[str] | None = None, *,
                before: str | None = None) -> list[tuple[str, str]]:
    """What :func:`run_stages` would do, as (stage, what) pairs, doing none of it:
    ``"up to date"``, ``"would run: <why>"`` (:func:`stage_reason`), ``"up to
    date, same content at a new place (<old -> new>): would record the new place
    only"`` (:func:`data_moved`), or, for a stage current now after one that would
    run, that it runs if that one changes its inputs (they are that stage's
    outputs, unknown until it has run). ``before`` names a step that would run
    ahead of the stages (the demo catalogue). A stage reading images whose images
    would be gone says ``"would be refused: <why>"`` (:func:`images_refusal`) and
    nothing after it is planned: the run refuses before its first stage
    (:func:`refusal_up_front`, which decides it with this plan).

    Reads only: no lock taken (a dry run beside a running build reports the bundle
    as it stands), no manifest saved, no stage run, and the images hashed for their
    fingerprint not recorded in the bundle's index (:attr:`Bundle.read_only`). The
    configs are checked as a run checks them.
    """
    return _planned(ctx, names, before, ctx.bundle.writer())[0]


def _planned(ctx: BuildContext, names: list[str] | None, before: str | None,
             writer: dict | None) -> tuple[list[tuple[str, str]], str | None]:
    """:func:`_plan` with the bundle read only and its manifest put back after."""
    read_only, ctx.bundle.read_only = ctx.bundle.read_only, True
    # a stage's relocate() sets the new place in memory, for the stages after it to
    # be planned where the run would read them; put back afterwards
    manifest = copy.deepcopy(ctx.bundle.manifest)
    try:
        return _plan(ctx, names, before, writer)
    finally:
        ctx.bundle.read_only = read_only
        ctx.bundle.manifest = manifest


def _plan(ctx: BuildContext, names: list[str] | None, before: str | None,
          writer: dict | None) -> tuple[list[tuple[str, str]], str | None]:
    """The plan of :func:`plan_stages`, and the refusal it ends on (None: none).
    ``writer``: the process building the bundle now (another build's stage is
    planned as running), None in a run's own :func:`refusal_up_front`."""
    plan = []
    first = before
    building = ctx.bundle.manifest.get("building")
    now = building.get("stage") if isinstance(building, dict) else building
    #: (image root, why its images are gone or None) once a stage that writes the
    #: catalogue and records its image root (the ingest's images_after_run) would run
    after: tuple[Any, str | None] | None = None
    run = _selected(ctx, names)
    missing = missing_input(ctx.bundle.root, run)
    for stage in run:
        if missing is not None and stage.name == missing[0]:
            plan.append((stage.name, f"would be refused: {missing[1]}"))
            return plan, missing[1]
        try:
            module = load_stage_module(stage)
        except StageNotAvailable as exc:
            plan.append((stage.name, f"would stop the build: {exc}"))
            break
        # after a stage that would run: what it runs on is that stage's outputs
        later = False
        if ctx.bundle.stage_record(stage.name) is None:
            # nothing recorded to compare: it runs whatever its inputs
            reason = stage_reason(ctx, stage.name, None)
            if writer is not None and stage.name == now:
                # the stages after it are planned as after any stage that would run
                plan.append((stage.name, f"running now (pid {writer.get('pid')}); "
                             f"would run again if that run does not finish"))
                first = first or stage.name
                after = after or _images_after(ctx, module, before)
                continue
            what = f"would run: {reason}"
        else:
            try:
                inputs = module.stage_inputs(ctx)
            except (MixmatchError, OSError) as exc:
                inputs, reason = None, None
                later = first is not None
                what = (f"would run after {first} (its inputs are not there yet)"
                        if first else f"cannot tell: its inputs cannot be read now "
                        f"({exc})")
            if inputs is not None:
                _, reason, _, moved = _status(ctx, stage.name, module, inputs)
                if reason is not None and hasattr(module, "relocate"):
                    module.relocate(ctx)   # the place the run records, moved or run again
                later = first is not None and (reason is None or moved is not None)
                if moved is not None:
                    reason = None
                    what = (f"up to date, same content at a new place "
                            f"({'; '.join(moved)}): would record the new place only"
                            + (f"; would run after {first} if that changes its inputs"
                               if first else ""))
                elif reason is None:
                    what = ("up to date" if first is None else f"up to date now; would "
                            f"run after {first} if that changes its inputs")
                else:
                    what = f"would run: {reason}"
        if reason is not None or later:
            # it runs, or may after a stage that would run: refused now if its images
            # would be gone then (they are hashed in its inputs: gone, they change them)
            refused = images_refusal(ctx, stage.name, module, after)
            if refused is not None:
                # what the run would say, instead of "would run: images.hash ..."; it
                # stops there, so no stage after it is planned
                plan.append((stage.name, f"would be refused: {refused}"))
                return plan, refused
        plan.append((stage.name, what))
        if reason is not None:
            first = first or stage.name
            after = after or _images_after(ctx, module, before)
    return plan, None


def _images_after(ctx: BuildContext, module, before: str | None
                  ) -> tuple[Any, str | None] | None:
    """``module``'s ``images_after_run`` (the ingest's: the image root it records and
    whether the catalogue it writes has its images there), for a plan in which the
    stage runs; None for a stage without one. After ``before`` (the demo catalogue
    generated into the folder the ingest reads, every image with it) or when the
    stage cannot read its source (it fails before writing, which stops the run), no
    image is gone."""
    after = getattr(module, "images_after_run", None)
    if after is None:
        return None
    try:
        root, gone = after(ctx)
    except (MixmatchError, OSError):
        return None, None
    return root, None if before is not None else gone


def refusal_up_front(ctx: BuildContext, run: list[Stage], names: list[str] | None
                     ) -> str | None:
    """Why a run of ``run`` (the stages :func:`_selected` of ``names``) must stop
    before its first stage, or None: a stage reading images that it would reach
    while they are gone (:func:`images_refusal`). Decided up front, as the dry run
    decides it (the same :func:`_plan`), so that a refused build leaves the bundle as
    it was: the ingest and the split before that stage do not run either.

    The images are looked for where the image stages would read them: where the
    bundle records, or, when the ingest would run or record the new place of its
    source, in the source's image folder (its ``images_after_run``). The plan is
    made (every stage's inputs hashed a second time) only when one of those would
    miss them; a build whose images are there looks for one per place.

    What only the run can tell is left to the check before each image stage (an
    image that is there and does not decode, images removed while the build runs).
    """
    missing = missing_input(ctx.bundle.root, run)
    if missing is not None:
        return missing[1]
    modules = [_module_or_none(stage) for stage in run]
    reads = [getattr(m, "READS_IMAGES", False) for m in modules]
    if not any(reads):
        return None
    if not _images_may_be_gone(ctx, modules[:reads.index(True)]):
        return None
    return _planned(ctx, names, None, None)[1]


def _images_may_be_gone(ctx: BuildContext, modules: list) -> bool:
    """Whether the image stages after ``modules`` (the stages a run has before them)
    may find their images gone: where the bundle records them, or, should a stage
    among ``modules`` record its source's image root (the ingest), there, for the
    bundle's catalogue (the place recorded alone) or the one it would write."""
    had = ctx.bundle.images_had()   # read once (MANGO: 0.1-0.3 s), looked for twice
    if ctx.bundle.image_root is not None and images_gone_from(
            ctx.bundle.image_root, had) is not None:
        return True
    for module in modules:
        root, gone = _images_after(ctx, module, None) or (None, None)
        if gone is not None or (root is not None
                                and images_gone_from(root, had) is not None):
            return True
    return False


def _module_or_none(stage: Stage):
    try:
        return load_stage_module(stage)
    except StageNotAvailable:
        return None


def images_refusal(ctx: BuildContext, name: str, module,
                   after: tuple[Any, str | None] | None = None) -> str | None:
    """Why stage ``name`` (its module ``module``) must not run now, or None: it reads
    the catalogue's images (``READS_IMAGES``) and they are not where the bundle
    says (:meth:`Bundle.images_gone`: its image folder moved away or unmounted), or,
    with ``after`` (the image root a stage before it records and why the images of
    the catalogue it writes are gone, :func:`_images_after`), not there.
    The message names the folder and the build that records a new place without
    rerunning a stage (:func:`relocate_command`).

    >>> import tempfile, types
    >>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root="/nowhere")
    >>> images_refusal(BuildContext(b, {}), "features",
    ...                types.SimpleNamespace(READS_IMAGES=True)) is None  # no catalogue
    True
    """
    if not getattr(module, "READS_IMAGES", False):
        return None
    root, gone = after if after is not None else (ctx.bundle.image_root,
                                                  ctx.bundle.images_gone())
    if gone is None:
        return None
    made = " and replace what it made from them" if ctx.bundle.stage_record(name) else ""
    return (f"stage {name} reads the catalogue's images, and {gone}: moved or "
            f"unmounted? Run now, it would see every image missing{made}; refused "
            f"before writing anything. If the data moved, record its new place without "
            f"rerunning a stage: {relocate_command(ctx.bundle)}; else put the images "
            f"back in {root}")


def relocate_command(bundle: Bundle) -> str:
    """The build that records the new place ``NEWDIR`` of the bundle's data and reruns
    no stage whose data only moved: its source, ``--data NEWDIR`` (csv: the
    mapping, and the catalogue file if the build named one, under ``NEWDIR``) and the
    options of its build that its stages' inputs hold; ``--config
    BUNDLE/manifest.json`` when the build's ``[stages]`` tables are not the source's
    defaults: the manifest's ``config.stages`` holds them, and a build reads a
    manifest given as its config as those tables
    (:func:`recommender.build.read_config_file`). A build without ``--config`` runs
    with the source's defaults, not with the tables the bundle recorded.

    >>> b = Bundle("b", {"config": {"source": "demo", "items": 60, "seed": 0,
    ...                             "quick": True}})
    >>> relocate_command(b)
    'mixmatch build --source demo --data NEWDIR --items 60 --quick --out b'
    >>> b = Bundle("b", {"config": {"source": "csv", "mapping": "/shop/m.toml",
    ...                             "stages": {"split": {"test_fraction": 0.0}}}})
    >>> relocate_command(b)
    'mixmatch build --source csv --mapping NEWDIR/m.toml --holdout 0.0 --out b'
    >>> relocate_command(Bundle("b", {"config": {"source": "demo", "stages": {
    ...     "attributes": {"epochs": 3}}}}))
    'mixmatch build --source demo --data NEWDIR --config b/manifest.json --out b'
    >>> relocate_command(Bundle("my bundles/b", {"config": {"source": "demo"}}))
    "mixmatch build --source demo --data NEWDIR --out 'my bundles/b'"
    """
    cfg = bundle.manifest.get("config")
    cfg = cfg if isinstance(cfg, dict) else {}
    source = str(cfg.get("source") or bundle.manifest.get("source") or "SOURCE")
    words = ["mixmatch", "build", "--source", source]
    if source == "csv":
        words += ["--mapping", f"NEWDIR/{PurePath(str(cfg.get('mapping'))).name}"]
        if cfg.get("data"):
            words += ["--data", f"NEWDIR/{PurePath(str(cfg['data'])).name}"]
    else:
        words += ["--data", "NEWDIR"]
    if source == "demo" and cfg.get("items", 2000) != 2000:
        words += ["--items", str(cfg["items"])]
    if cfg.get("seed"):
        words += ["--seed", str(cfg["seed"])]
    if cfg.get("quick"):
        words.append("--quick")
    stages = cfg.get("stages")
    stages = copy.deepcopy(stages) if isinstance(stages, dict) else {}
    split = stages.get("split")
    if isinstance(split, dict) and "test_fraction" in split:
        words += ["--holdout", str(split.pop("test_fraction"))]
        if not split:
            del stages["split"]
    from recommender.build import source_stage_defaults   # build imports this module

    if stages != source_stage_defaults(source, bool(cfg.get("quick"))):
        # tables a config file set: without them the build would rerun their stages
        words += ["--config", str(bundle.root / MANIFEST)]
    # quoted: a command to copy, and a bundle's folder may have a space in its name
    return shlex.join(words + ["--out", str(bundle.root)])


def files_read(bundle: Bundle, name: str, inputs: Any) -> dict[str, str | None]:
    """The bundle files stage ``name`` read, with their hashes, found in its
    ``stage_inputs``: a key naming a bundle file (``"models/compat.txt": hash``, or
    None when the file was absent) or a hash another stage recorded for one of its
    outputs (``"train_outfits": hash``). Recorded with the stage, for
    :meth:`Bundle.stale_stages` to compare with what is there on load.

    >>> import tempfile
    >>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root=None)
    >>> _ = b.path("o.parquet").write_text("x")
    >>> b.record_stage("split", inputs_hash="a", outputs=["o.parquet"])
    >>> h = b.stage_record("split")["output_hashes"]["o.parquet"]
    >>> files_read(b, "graph", {"files": {"models/compat.txt": None}, "train": h,
    ...                         "seed": 0}) == {"models/compat.txt": None, "o.parquet": h}
    True
    """
    by_hash = {h: f for other, rec in bundle.manifest.get("stages", {}).items()
               if other != name
               for f, h in (rec.get("output_hashes") or {}).items() if h}
    reads: dict[str, str | None] = {}

    def walk(obj: Any) -> None:
        for key, value in obj.items():
            if isinstance(value, dict):
                walk(value)
            elif isinstance(value, str) and value in by_hash:
                reads[by_hash[value]] = value
            elif ("." in str(key) and (value is None or isinstance(value, str))
                  and (value is None or bundle.path(str(key)).is_file())):
                reads[str(key)] = value

    if isinstance(inputs, dict):
        walk(inputs)
    return dict(sorted(reads.items()))


def out_of_date_after(ctx: BuildContext, ran: list[str]) -> list[str]:
    """Finished stages after the first of ``ran`` whose recorded inputs hash no longer
    matches their ``stage_inputs`` now: what ``mixmatch build`` would rerun."""
    order = [s.name for s in STAGES]
    first = min(order.index(n) for n in ran)
    stale = []
    for stage in STAGES[first + 1:]:
        if stage.name in ran or ctx.bundle.stage_record(stage.name) is None:
            continue
        try:
            module = load_stage_module(stage)
            inputs = module.stage_inputs(ctx)
        except (MixmatchError, OSError):
            # a stage whose inputs cannot be read now is for `mixmatch build` to say;
            # the stage that ran has finished and the command succeeded
            continue
        inputs_hash = json_hash({"stage": stage.name, "inputs": inputs})
        if ctx.bundle.stage_is_current(stage.name, inputs_hash):
            continue
        written = recorded_earlier(ctx, stage.name, module, inputs_hash)
        if written and ctx.bundle.stage_is_current(stage.name, written):
            continue
        if data_moved(ctx, stage.name, module, inputs) is None:
            stale.append(stage.name)
    return stale


def rebuild_commands(names, root) -> str:
    """The commands that rerun stages ``names`` of the bundle at ``root``, in the
    pipeline's order (a stage's inputs rebuilt before it), joined by "; then ".

    >>> rebuild_commands(["graph", "compatibility"], "b")
    'mixmatch train --bundle b --stage compatibility; then mixmatch graph --bundle b'
    """
    order = sorted(names, key=lambda n: (STAGE_NAMES.index(n) if n in STAGE_NAMES
                                         else len(STAGE_NAMES), n))
    return "; then ".join(rebuild_command(n, root) for n in order)


def rebuild_command(name: str, root) -> str:
    """The command that reruns stage ``name`` of the bundle at ``root``.

    >>> rebuild_command("graph", "b"), rebuild_command("compatibility", "b")
    ('mixmatch graph --bundle b', 'mixmatch train --bundle b --stage compatibility')
    """
    if name in ("features", "graph"):
        return f"mixmatch {name} --bundle {root}"
    if name in ("attributes", "keypoints", "compatibility"):
        return f"mixmatch train --bundle {root} --stage {name}"
    return f"mixmatch build --out {root} --stages {name} (with the bundle's --source)"
