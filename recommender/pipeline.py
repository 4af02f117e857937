"""The offline build: stages with files in and files out, run in order into a bundle.

Each stage lives in the module that owns its work and exposes two functions:

``stage_inputs(ctx) -> dict``
    Everything the stage's result depends on (config values, input file hashes).
    Hashed to decide whether a finished stage can be skipped.
``run_stage(ctx) -> dict``
    Does the work and returns ``{"outputs": [paths relative to the bundle],
    "metrics": {...}}``.

and may expose a third:

``check_config(ctx)``
    Raises InputError naming a bad setting of its ``[stages.NAME]`` table. Every
    stage to run is checked before the first one starts, so a misspelt graph
    setting is refused before the attribute network trains, not an hour later.

A stage whose module has not landed yet is reported plainly (``StageNotAvailable``)
and the build stops there with a non-zero exit; no stage pretends.

Examples
--------
>>> [s.name for s in STAGES][:2]
['ingest', 'split']
"""
from __future__ import annotations

import dataclasses
import importlib
import sys
import time
from typing import Any, Callable

from features.exceptions import InputError, MixmatchError, StageNotAvailable
from recommender.bundle import Bundle, json_hash


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    module: str
    issue: int
    description: str
    #: sources for which the stage applies (None: all)
    sources: tuple[str, ...] | None = None


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "recommender.ingest", 2, "source data -> canonical catalogue + outfits"),
    Stage("split", "recommender.evaluation.make_eval", 4,
          "held-out outfits and FITB/compatibility files"),
    Stage("attributes", "features.attributes.train", 3,
          "train the attribute network (its penultimate layer is the embedding)"),
    Stage("keypoints", "features.keypoints.train", 3,
          "train the heatmap keypoint detector on FashionAI-format labels",
          sources=("demo",)),
    Stage("features", "features.extract", 3,
          "masks, colours, attributes, embeddings, keypoints, shape features"),
    Stage("compatibility", "recommender.compat.train", 4,
          "LightGBM pairwise compatibility model"),
    Stage("graph", "recommender.graph", 5, "garment graph and serving arrays"),
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


def _run_stages(ctx: BuildContext, names: list[str] | None) -> dict[str, dict]:
    if names is not None:
        unknown = [n for n in names if n not in STAGE_NAMES]
        if unknown:
            raise InputError(f"unknown stage {unknown[0]!r}", field="stage",
                             value=unknown[0], allowed=STAGE_NAMES)
    run = [stage for stage in STAGES
           if (stage.name in names if names is not None
               else stage.sources is None or ctx.source in stage.sources)]
    for stage in run:
        try:
            check = getattr(load_stage_module(stage), "check_config", None)
        except StageNotAvailable:
            continue   # said when the build reaches it, after the stages before it
        if check is not None:
            check(ctx)
    results: dict[str, dict] = {}
    for stage in run:
        module = load_stage_module(stage)
        inputs = module.stage_inputs(ctx)
        inputs_hash = json_hash({"stage": stage.name, "inputs": inputs})
        if not ctx.force and ctx.bundle.stage_is_current(stage.name, inputs_hash):
            ctx.log(f"[{stage.name}] up to date, skipped")
            results[stage.name] = ctx.bundle.stage_record(stage.name).get("metrics", {})
            continue
        rec = ctx.bundle.stage_record(stage.name)
        if not ctx.force and rec and rec.get("inputs_hash") == inputs_hash:
            # same inputs: rerun only because a file it wrote was replaced or removed,
            # which the user should hear of (a model copied in by hand is discarded)
            ctx.log(f"[{stage.name}] outputs changed since it ran: "
                    f"{', '.join(ctx.bundle.changed_outputs(stage.name))}; running it again")
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
                                       "reads": files_read(ctx.bundle, stage.name, inputs)})
        ctx.log(f"[{stage.name}] done in {elapsed:.1f}s")
        results[stage.name] = metrics
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
            inputs_hash = json_hash({"stage": stage.name,
                                     "inputs": module.stage_inputs(ctx)})
        except (MixmatchError, OSError):
            # a stage whose inputs cannot be read now is for `mixmatch build` to say;
            # the stage that ran has finished and the command succeeded
            continue
        if not ctx.bundle.stage_is_current(stage.name, inputs_hash):
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
