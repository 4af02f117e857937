"""``mixmatch build``: every stage into one bundle folder, and the single-stage commands.

Examples
--------
Build the demo bundle (generates the demo catalogue first)::

    from recommender.build import build_bundle
    build_bundle("bundles/demo", source="demo", items=2000, seed=0)

Build on the MANGO datathon files::

    build_bundle("bundles/mango", source="mango", data="../shared/data/mango")
"""
from __future__ import annotations

import copy
import json
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

from features.configfiles import load_json, load_yaml
from features.exceptions import (BundleError, DuplicateKeyError, InputError, NotFoundError,
                                 StageNotAvailable)
from features.source_files import SOURCE_DIR
from recommender.bundle import MANIFEST, Bundle, atomic_files, write_lock
from recommender.distributed import (check_dask_settings, check_scheduler_address,
                                     dask_settings_unused)
from recommender.paths import DATA_ENV, default_data_root
from recommender.pipeline import (STAGE_NAMES, STAGES, BuildContext, missing_input,
                                  plan_stages, run_stages, stages_of)

SOURCES = ("demo", "mango", "csv")
#: The tables of a build config: per-stage settings and the Dask cluster's sizes.
CONFIG_KEYS = ("dask", "stages")
#: What a build config file's name may end in (its format).
CONFIG_SUFFIXES = (".toml", ".json", ".yaml", ".yml")


def read_config_file(path: str | os.PathLike | None) -> dict:
    """Read a build config (TOML, JSON or YAML, by its suffix: :data:`CONFIG_SUFFIXES`)
    of per-stage overrides; {} when None.

    A bundle's ``manifest.json`` is read as the config its build recorded (its
    ``config``'s ``stages`` and ``dask`` tables): ``--config B/manifest.json`` builds
    with B's stage tables, as the build that records B's new data folder must
    (:func:`recommender.pipeline.relocate_command`), or builds another bundle
    with them.

    A key given twice is refused as TOML refuses it, not read as its last value (what
    ``json.loads`` does: a second ``"stages"`` object dropped the first one's tables).
    YAML is read as the column-mapping and serving configs are (it was parsed as JSON,
    "Expecting value: line 1 column 1"); another suffix is refused naming the allowed.
    """
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"config file not found: {p}", field="config", value=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"config file {p} is not UTF-8 text (byte {exc.start})",
                         field="config", value=str(p)) from exc
    suffix = p.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise InputError(f"config file {p} must end in {', '.join(CONFIG_SUFFIXES)}",
                         field="config", value=str(p))
    try:
        if suffix == ".toml":
            cfg = tomllib.loads(text)
        elif suffix == ".json":
            cfg = load_json(text)
        else:
            cfg = load_yaml(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, DuplicateKeyError) as exc:
        raise InputError(f"config file {p} is not valid: {exc}", field="config",
                         value=str(p)) from exc
    except Exception as exc:  # yaml.YAMLError without importing yaml at module level
        if type(exc).__module__.startswith("yaml"):
            raise InputError(f"config file {p} is not valid: {exc}", field="config",
                             value=str(p)) from exc
        raise
    if not isinstance(cfg, dict):
        raise InputError(f"config file {p} must hold a table of settings, got "
                         f"{type(cfg).__name__}", field="config", value=str(p))
    if p.name == MANIFEST and "schema_version" in cfg:
        # opened as a bundle: a manifest of another schema, or not shaped as one, is
        # named as such (BundleError), not as a config with unknown keys
        recorded = Bundle.open(p.parent).manifest.get("config", {})
        cfg = {key: recorded[key] for key in CONFIG_KEYS if key in recorded}
    check_config_tables(cfg, f"config file {p}")
    return cfg


def check_config_tables(cfg: dict, where: str = "build config") -> None:
    """InputError naming a key of build config ``cfg`` other than :data:`CONFIG_KEYS`
    (a typo, ``[stage.graph]`` or ``[graph]``, would otherwise build with the
    defaults), a ``[stages]`` that is not a table, or a stage table of an unknown
    stage or that is not a table; ``where`` starts the message (the file). What is
    in each stage table its stage checks (``check_config``, before the first stage);
    the ``[dask]`` table is checked here, whatever the engine
    (:func:`recommender.distributed.check_dask_settings`: ``n_worker = 3`` or
    ``n_workers = "three"`` is refused by a local build too, not only once a Dask
    cluster starts).

    >>> check_config_tables({"stages": {"graph": {"k_visual": 5}}})
    >>> check_config_tables({"stage": {"graph": {}}})
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: build config: unknown key 'stage' (allowed: dask, stages)
    >>> check_config_tables({"dask": {"n_worker": 3}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: unknown [dask] setting 'n_worker' (allowed: ...)
    """
    for key in cfg:
        if key not in CONFIG_KEYS:
            raise InputError(f"{where}: unknown key {key!r}", field=key,
                             value=key, allowed=CONFIG_KEYS)
    stages = cfg.get("stages", {})
    if not isinstance(stages, dict):
        raise InputError(f"{where}: [stages] must be a table of stage tables, "
                         f"got {stages!r}", field="stages", value=stages)
    for name, table in stages.items():
        if name not in STAGE_NAMES:
            raise InputError(f"{where}: unknown stage {name!r} in [stages]",
                             field="stages", value=name, allowed=STAGE_NAMES)
        if not isinstance(table, dict):
            raise InputError(f"{where}: [stages.{name}] must be a table, got "
                             f"{table!r}", field=f"stages.{name}", value=table)
    if "dask" in cfg:
        check_dask_settings(cfg["dask"])


def source_stage_defaults(source: str, quick: bool = False) -> dict[str, dict]:
    """Per-stage settings that ``source`` builds with unless the config says otherwise.

    MANGO trains its measured attribute recipe
    (:data:`recommender.adapters.mango.STAGE_DEFAULTS`); other sources, and every
    ``quick`` build (tiny networks for tests and smoke runs), have none.

    >>> source_stage_defaults("mango")["attributes"]["preset"]
    'small'
    >>> source_stage_defaults("mango", quick=True), source_stage_defaults("demo")
    ({}, {})
    """
    if quick or source != "mango":
        return {}
    from recommender.adapters.mango import STAGE_DEFAULTS

    return copy.deepcopy(STAGE_DEFAULTS)


def resolve_stage_config(source: str, quick: bool, stages: dict | None) -> dict[str, Any]:
    """The ``[stages]`` tables a build runs with: the source's defaults
    (:func:`source_stage_defaults`), each key overridden by the config's.

    A stage table the config gives is merged key by key over the source's one (so
    ``[stages.attributes] epochs = 10`` keeps the rest of MANGO's recipe); a stage the
    source has no defaults for is taken as the config gives it.

    >>> cfg = resolve_stage_config("mango", False, {"attributes": {"epochs": 10},
    ...                                             "split": {"test_fraction": 0.0}})
    >>> cfg["attributes"]["epochs"], cfg["attributes"]["preset"], cfg["split"]
    (10, 'small', {'test_fraction': 0.0})
    """
    return merge_stage_config(source_stage_defaults(source, quick), stages)


def merge_stage_config(base: dict[str, Any], stages: dict | None) -> dict[str, Any]:
    """``base``'s stage tables with ``stages``' merged over them key by key (a copy).

    What a build merges over its source's defaults, and what ``mixmatch features |
    train | graph --config`` merges over the tables the bundle recorded: a config
    naming one key changes that key, not the rest of the stage's recipe.

    >>> merge_stage_config({"graph": {"k_compat": 3, "k_visual": 3}},
    ...                    {"graph": {"k_visual": 5}, "split": {"test_fraction": 0.0}})
    {'graph': {'k_compat': 3, 'k_visual': 5}, 'split': {'test_fraction': 0.0}}
    """
    out: dict[str, Any] = copy.deepcopy(base)
    for name, table in (stages or {}).items():
        if isinstance(table, dict):
            prev = out.get(name)
            out[name] = {**(prev if isinstance(prev, dict) else {}), **table}
        else:  # not a table: kept as given, for the stage to refuse by name
            out[name] = table
    return out


#: The demo catalogue's size when a build generates one and ``--items`` does not say.
DEFAULT_DEMO_ITEMS = 2000


def demo_catalogue(source_dir: Path) -> dict | None:
    """The ``demo.json`` of the demo catalogue in ``source_dir`` (``n_items``, ``seed``
    ...), None when there is none (a generation interrupted writes it last).

    >>> import tempfile
    >>> demo_catalogue(Path(tempfile.mkdtemp())) is None
    True
    """
    marker = source_dir / "demo.json"
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{marker} is not the demo.json `mixmatch demo` writes ({exc}): "
                         f"generate the demo catalogue into a new folder",
                         field="data", value=str(source_dir)) from exc
    if not isinstance(meta, dict):
        raise InputError(f"{marker} is not the demo.json `mixmatch demo` writes (not an "
                         f"object)", field="data", value=str(source_dir))
    meta["n_items"] = meta.get("n_items", meta.get("items"))
    return meta


def demo_source_ready(source_dir: Path, items: int, seed: int) -> bool:
    """Whether ``source_dir`` holds the demo catalogue of ``items`` items and ``seed``."""
    meta = demo_catalogue(source_dir)
    return meta is not None and meta.get("seed") == seed and meta["n_items"] == items


def demo_source_step(source_dir: Path, items: int | None, seed: int, *,
                     outside: bool, ingests: bool = True) -> tuple[int, int, bool]:
    """What a demo build does with its catalogue folder: ``(items, seed, generate)``,
    the size and seed of the catalogue it builds on and whether it generates it first.

    The bundle's own ``source/`` (``outside`` false) is the build's to rewrite: it is
    generated unless it holds the catalogue of ``items`` (None: 2,000,
    :data:`DEFAULT_DEMO_ITEMS`) and ``seed``. A folder given with ``--data``
    (``outside``) is generated into only when it holds no demo catalogue; one it holds
    is the user's, used as it is (its own size and seed; ``seed`` still seeds the
    split and the models) and never overwritten: ``items`` other than its size is
    refused (InputError naming the folder, its size and what to do).

    A run without the ingest stage (``ingests`` false: ``--stages split``) treats the
    bundle's own catalogue as it treats one in ``--data``: the bundle's
    ``catalog.parquet`` was ingested from it, and no stage of the run would ingest a
    new one, so regenerating it (for another ``--items``, or the default size when a
    smaller bundle is rebuilt without ``--items``) left the catalogue and its images
    out of step.
    """
    meta = demo_catalogue(source_dir)
    if meta is None or (ingests and not outside):
        n = DEFAULT_DEMO_ITEMS if items is None else items
        generate = not demo_source_ready(source_dir, n, seed)
        if generate:
            # a size the machine cannot compose is refused by the plan too (a dry run
            # planned --items 100000000000, the build then ran for hours)
            from recommender.demo.generate import check_outfit_count, default_outfits

            check_outfit_count(default_outfits(n), items=n)
        return n, seed, generate
    have = meta["n_items"]
    if items is not None and items != have:
        raise InputError(
            f"--data {source_dir} holds a demo catalogue of {have} items (seed "
            f"{meta.get('seed')}) that a build does not overwrite: --items {items} asks "
            f"for another size. Drop --items to build on its {have} items, or give "
            f"--data a new folder (or none: the bundle's own source/) to generate "
            f"{items} items" if outside else
            f"{source_dir} holds the demo catalogue of {have} items (seed "
            f"{meta.get('seed')}) that the bundle was ingested from, and this run does "
            f"not include the ingest stage, which reads it: --items {items} asks for "
            f"another size. Add ingest to --stages to build on {items} items, or drop "
            f"--items", field="items", value=items)
    return have, meta.get("seed"), False


def _ingests(stages: list[str] | None) -> bool:
    """Whether a build of ``--stages stages`` (None: every stage) runs the ingest."""
    return stages is None or "ingest" in stages


def _demo_source(out: Path, data, items: int | None, seed: int, ingests: bool = True
                 ) -> tuple[Path, bool, int, int, bool]:
    """A demo build's catalogue folder (``data``, else ``out/source``), whether it lies
    outside the bundle, and :func:`demo_source_step`'s ``(items, seed, generate)``
    (``ingests``: whether the run includes the ingest stage)."""
    own = out / SOURCE_DIR
    source_dir = Path(data) if data else own
    outside = source_dir.resolve() != own.resolve()
    return (source_dir, outside) + demo_source_step(source_dir, items, seed,
                                                    outside=outside, ingests=ingests)


def _demo_step_said(source_dir: Path, items: int, seed: int, generate: bool,
                    outside: bool, asked: int | None = None, ingests: bool = True) -> str:
    """The plan's and the log's line for the demo catalogue (``seed``: its seed;
    ``asked``: the build's ``--seed``, None when not given; ``ingests``: whether the
    run includes the ingest stage, without which the bundle's own catalogue is used
    as it is too).

    A catalogue in ``--data`` of another seed than ``--seed`` is used as it is, and
    said so: ``--seed`` seeds the split and the models of a build on it, and the
    build that records a moved bundle's new folder repeats the bundle's ``--seed``,
    so it is not refused as another ``--items`` is.

    >>> said = _demo_step_said(Path("D"), 60, 0, False, True, asked=7)
    >>> said.startswith("catalogue of 60 items (seed 0) already at D, used as it is; "
    ...                 "--seed 7 seeds the split and the models, not this catalogue")
    True
    """
    if generate:
        return f"would generate {items} items (seed {seed}) into {source_dir}"
    kept = outside or not ingests
    said = (f"catalogue of {items} items (seed {seed}) already at {source_dir}"
            + (", used as it is" if kept else ""))
    if kept and asked is not None and asked != seed:
        said += (f"; --seed {asked} seeds the split and the models, not this catalogue "
                 + (f"(give --data a new folder, or none, to generate one of seed {asked})"
                    if outside else f"(add ingest to --stages to generate one of seed "
                    f"{asked})"))
    return said


def prepare_demo_source(source_dir: Path, items: int | None, seed: int,
                        log: Callable[[str], None], *, outside: bool = False,
                        asked: int | None = None, ingests: bool = True) -> Path:
    """Generate the demo catalogue into ``source_dir`` when :func:`demo_source_step`
    says so (``outside``: a ``--data`` folder, whose catalogue is never overwritten;
    ``asked``: the build's ``--seed`` when given, said when that catalogue's differs;
    ``ingests``: whether the run includes the ingest stage)."""
    items, cat_seed, generate = demo_source_step(source_dir, items, seed, outside=outside,
                                                 ingests=ingests)
    if not generate:
        said = _demo_step_said(source_dir, items, cat_seed, False, outside, asked, ingests)
        log(f"[demo] {said}")
        return source_dir
    try:  # lazily: only demo builds need the generator
        from recommender.demo import generate_demo
    except ModuleNotFoundError as exc:
        if exc.name and "recommender.demo".startswith(exc.name):
            raise StageNotAvailable("the demo catalogue generator (recommender.demo) has "
                                    "not landed yet (issue #2)") from exc
        raise

    log(f"[demo] generating {items} items (seed {seed}) into {source_dir} ...")
    t0 = time.perf_counter()
    generate_demo(source_dir, n_items=items, seed=seed)
    log(f"[demo] done in {time.perf_counter() - t0:.1f}s")
    return source_dir


def build_bundle(out: str | os.PathLike, *, source: str = "demo",
                 data: str | os.PathLike | None = None,
                 mapping: str | os.PathLike | None = None, items: int | None = None,
                 seed: int | None = None, quick: bool = False,
                 stages: list[str] | None = None, force: bool = False,
                 engine: str = "local", scheduler: str | None = None,
                 overrides: dict | None = None, holdout: float | None = None,
                 log: Callable[[str], None] | None = None) -> Path:
    """Run the build stages into the bundle folder ``out`` and return its path.

    Finished stages whose inputs did not change are skipped, so re-running is cheap
    and an interrupted build resumes at the stage it was in.

    ``seed`` (None: 0) seeds the split and the models, and the demo catalogue the
    build generates; a demo catalogue in ``data`` keeps its own, said in the log when
    a ``seed`` given is another (:func:`_demo_step_said`).

    ``holdout`` (the split stage's ``test_fraction``, 0.2 unless the config says
    otherwise): the share of outfits held out for the bundle's own evaluation
    files. ``0`` holds out none, so the models and the graph learn from every
    outfit: the bundle to serve, or to score on outfits from elsewhere.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    out = Path(out)
    asked, seed = seed, 0 if seed is None else seed
    stage_cfg, data = _build_settings(source=source, data=data, mapping=mapping,
                                      quick=quick, engine=engine, overrides=overrides,
                                      holdout=holdout, items=items, scheduler=scheduler,
                                      out=out)
    missing = missing_input(out, stages_of(stages, source), from_build=True)
    if missing is not None:   # before the demo catalogue is generated, or a folder made
        raise BundleError(missing[1])
    ingests = _ingests(stages)
    if source == "demo":   # refused (a --data catalogue of another size) before the lock
        _demo_source(out, data, items, seed, ingests)
    # held from the manifest read to its last save: a second build of ``out`` is refused
    # at once, rather than mixing its stages' files and manifest with this one's
    with write_lock(out):
        if source == "demo":
            data, outside, size, _, _ = _demo_source(out, data, items, seed, ingests)
            prepare_demo_source(data, items, seed, log, outside=outside, asked=asked,
                                ingests=ingests)
            items = size   # recorded: the size of the catalogue it builds on
        config = _build_config(source=source, data=data, mapping=mapping, items=items,
                               seed=seed, quick=quick, engine=engine, scheduler=scheduler,
                               stage_cfg=stage_cfg, overrides=overrides)
        if (out / MANIFEST).is_file():
            # An existing bundle: the new source and config are saved with the first
            # stage that runs under them (record_stage saves the manifest), or once the
            # build finishes, so a build that fails before any stage ran (a bad
            # mapping) leaves the manifest describing what the bundle holds.
            bundle = Bundle.open(out)
            bundle.manifest["source"] = source
            bundle.manifest["config"] = config
        else:
            bundle = Bundle.create(out, source=source, image_root=None, config=config)
        ctx = BuildContext(bundle=bundle, config=config, force=force, log=log)
        unused = dask_settings_unused(config)
        if unused:
            log(unused)
        run_stages(ctx, stages)
        bundle.save()
    return out


def plan_build(out: str | os.PathLike, *, source: str = "demo",
               data: str | os.PathLike | None = None,
               mapping: str | os.PathLike | None = None, items: int | None = None,
               seed: int | None = None, quick: bool = False,
               stages: list[str] | None = None, force: bool = False,
               engine: str = "local", scheduler: str | None = None,
               overrides: dict | None = None, holdout: float | None = None
               ) -> list[tuple[str, str]]:
    """What :func:`build_bundle` with the same arguments would do, as (step, what)
    pairs (:func:`recommender.pipeline.plan_stages`), doing none of it.

    Writes nothing and takes no lock: no demo catalogue generated, no bundle folder
    made, no manifest saved. With no bundle at ``out`` yet, every stage would run.

    >>> import tempfile
    >>> plan_build(Path(tempfile.mkdtemp()) / "b", stages=["ingest"])[1]
    ('ingest', 'would run: not run before')
    """
    out = Path(out)
    asked, seed = seed, 0 if seed is None else seed
    stage_cfg, data = _build_settings(source=source, data=data, mapping=mapping,
                                      quick=quick, engine=engine, overrides=overrides,
                                      holdout=holdout, items=items, scheduler=scheduler,
                                      out=out)
    missing = missing_input(out, stages_of(stages, source), from_build=True)
    if missing is not None:   # as build_bundle refuses it: before any step
        return [(missing[0], f"would be refused: {missing[1]}")]
    plan: list[tuple[str, str]] = []
    before = None
    if source == "demo":   # as build_bundle decides it: refused alike
        ingests = _ingests(stages)
        data, outside, items, cat_seed, generate = _demo_source(out, data, items, seed,
                                                                ingests)
        plan.append(("demo", _demo_step_said(data, items, cat_seed, generate, outside,
                                             asked, ingests)))
        if generate:
            before = "the demo catalogue"
    config = _build_config(source=source, data=data, mapping=mapping, items=items,
                           seed=seed, quick=quick, engine=engine, scheduler=scheduler,
                           stage_cfg=stage_cfg, overrides=overrides)
    if (out / MANIFEST).is_file():
        bundle = Bundle.open(out)
        bundle.manifest["source"] = source   # in memory only, as the build would set
        bundle.manifest["config"] = config
    else:  # a bundle not made: nothing recorded, every stage would run
        bundle = Bundle(out, {"source": source, "config": config, "stages": {}})
    ctx = BuildContext(bundle=bundle, config=config, force=force)
    return plan + plan_stages(ctx, stages, before=before)


def _build_settings(*, source: str, data, mapping, quick: bool, engine: str,
                    overrides: dict | None, holdout: float | None,
                    items: int | None = None, scheduler: str | None = None,
                    out: Path | None = None):
    """The checked settings of a build: its ``[stages]`` tables and its data folder.
    ``overrides`` given from Python are checked as a config file's are (a key other
    than ``stages`` and ``dask``, an unknown stage: ignored before)."""
    if overrides:
        check_config_tables(overrides)
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}", field="source", value=source,
                         allowed=SOURCES)
    if engine not in ("local", "dask"):
        raise InputError(f"unknown engine {engine!r}", field="engine", value=engine,
                         allowed=("local", "dask"))
    if engine == "dask" and scheduler:
        check_scheduler_address(scheduler)
    # before a demo catalogue is generated into them (1000 items: seconds of work)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"bundle folder {out} is a file, not a folder", field="out",
                         value=str(out))
    if out is not None and (Path(out) / MANIFEST).is_file():
        Bundle.open(out)    # a manifest.json that is not JSON is named now
    if source == "demo" and data and Path(data).exists() and not Path(data).is_dir():
        raise InputError(f"--data {data} is a file, not a folder (the demo catalogue's)",
                         field="data", value=str(data))
    # before a dry run plans a catalogue of -1 items, and before the lock is taken
    if items is not None and (isinstance(items, bool) or not isinstance(items, int)
                              or items < 1):
        raise InputError(f"items must be a whole number >= 1, got {items!r}",
                         field="items", value=items)
    stage_cfg = resolve_stage_config(source, quick, (overrides or {}).get("stages"))
    if holdout is not None:
        if isinstance(holdout, bool) or not (isinstance(holdout, (int, float))
                                             and 0 <= holdout < 1):
            raise InputError(f"holdout must be a fraction in [0, 1), got {holdout!r}",
                             field="holdout", value=holdout)
        split = stage_cfg.setdefault("split", {})
        if not isinstance(split, dict):
            raise InputError(f"config [stages] split must be a table, got {split!r}",
                             field="stages.split", value=split)
        split["test_fraction"] = float(holdout)
    if source == "mango":
        data = Path(data) if data else default_data_root() / "mango"
        if not (Path(data) / "product_data.csv").is_file():
            raise NotFoundError(f"MANGO data not found: {data}/product_data.csv (pass --data "
                                f"or set {DATA_ENV})", field="data", value=str(data))
    elif source == "csv":
        if not mapping:
            raise InputError("--source csv needs --mapping FILE", field="mapping")
    return stage_cfg, data


def _build_config(*, source: str, data, mapping, items: int, seed: int, quick: bool,
                  engine: str, scheduler: str | None, stage_cfg: dict,
                  overrides: dict | None) -> dict[str, Any]:
    """The config a build records in the manifest and its stages read."""
    return {
        "source": source, "data": str(data) if data else None,
        "mapping": str(mapping) if mapping else None, "items": items, "seed": seed,
        "quick": bool(quick), "engine": engine, "scheduler": scheduler,
        "stages": stage_cfg,
        # [dask]: cluster sizes (engine dask)
        "dask": (overrides or {}).get("dask", {}),
    }


def bundle_from_tables(root: str | os.PathLike, catalog, outfits, embeddings, *,
                       config: dict | None = None, train_outfits=None,
                       source: str = "tables", log: Callable[[str], None] | None = None
                       ) -> Bundle:
    """A serving bundle from tables already at hand, with its garment graph built.

    For benchmarks, tests and notebooks that have a validated canonical ``catalog``,
    an ``outfits`` table (``outfit_id, item_id``) and row-aligned ``embeddings``
    but no images to run the perception stages on. ``train_outfits`` (default: all
    of ``outfits``) are the outfits the graph learns from; ``config`` is the build
    config (``seed``, ``quick``, ``stages``...). Returns the bundle.

    Into an existing bundle, the bundle is marked as being built (loading it is
    refused) until the graph of the new tables is recorded, and the graph is always
    rebuilt. A bundle that stages other than the graph built (``mixmatch build``) is
    refused with :class:`BundleError`: the tables are for a folder of their own.
    """
    import numpy as np

    with write_lock(root):
        if Path(root, MANIFEST).is_file():
            built = sorted(Bundle.open(root).manifest.get("stages", {}))
            if set(built) - {"graph"}:
                # its features, models and stage records were made from other tables:
                # the new ones beside them would mix two catalogues, and the records
                # would name files they did not make (stale_stages, build's skipping)
                raise BundleError(
                    f"{root} holds a bundle built by the stages {', '.join(built)}; "
                    f"tables written over it would sit beside the features and models "
                    f"made from other tables. Write the tables bundle to a folder of "
                    f"its own (or remove this one)")
        # the config the graph runs with is the bundle's: `mixmatch graph --bundle`
        # reads it from the manifest, and rebuilt it with the defaults otherwise
        cfg = {"source": source, "seed": 0, **(config or {})}
        b = Bundle.create(root, source=source, image_root=None, config=cfg)
        files = (b.path("catalog.parquet"), b.path("outfits.parquet"),
                 b.path("eval", "train_outfits.parquet"),
                 b.path("features", "embeddings.npy"))
        # Whole files or the old ones, as a bundle rebuilt in place may be read
        # meanwhile; and marked as the graph stage (the tables are its inputs) from
        # before the first is renamed in until the graph of the new ones is recorded:
        # a loader would take the new catalogue beside the old graph, or the old
        # embeddings, for a complete bundle. Dying before any is renamed in leaves
        # the bundle as it was (Bundle.stage_run).
        with b.stage_run("graph"), atomic_files(*files) as (cat, out, train, emb):
            catalog.to_parquet(cat)
            outfits.to_parquet(out)
            (outfits if train_outfits is None else train_outfits).to_parquet(train)
            np.save(emb, np.asarray(embeddings, np.float32))
        run_stages(BuildContext(b, cfg, log=log or (lambda m: None)), ["graph"])
    return b


def _stage_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [s.strip() for s in value.split(",") if s.strip()]
    if not names:   # "--stages ," ran nothing, after generating the demo source
        raise InputError(f"no stage named in {value!r}", field="stages", value=value,
                         allowed=STAGE_NAMES)
    for n in names:
        if n not in STAGE_NAMES:
            raise InputError(f"unknown stage {n!r}", field="stages", value=n,
                             allowed=STAGE_NAMES)
    return names


def print_plan(root: str | os.PathLike, plan: list[tuple[str, str]]) -> None:
    """Print a dry run's plan (:func:`plan_build`, or
    :func:`~recommender.pipeline.plan_stages`) of the bundle at ``root``: one line per
    step, and the process writing the bundle now, if one is (the plan is of the
    bundle as it stands)."""
    root = Path(root)
    print(f"dry run of bundle {root} (nothing written):")
    if (root / MANIFEST).is_file():
        holder = Bundle.open(root).writer()
        if holder is not None:
            print(f"  a build is running in it now: pid {holder.get('pid')} on "
                  f"{holder.get('host')} since {holder.get('since')} "
                  f"({holder.get('command') or 'command unknown'}); as it stands:")
    elif not any(what.startswith("would be refused") for _, what in plan):
        print(f"  no bundle at {root} yet: every stage would run")
    width = max([len(name) for name, _ in plan] + [12])
    for name, what in plan:
        print(f"  {name:<{width}}  {what}")


def cli_build(args) -> int:
    """Handler of ``mixmatch build``."""
    overrides = read_config_file(args.config)
    settings = dict(source=args.source, data=args.data, mapping=args.mapping,
                    items=args.items, seed=args.seed, quick=args.quick,
                    stages=_stage_list(args.stages), force=args.force,
                    engine=args.engine, scheduler=args.scheduler, overrides=overrides,
                    holdout=getattr(args, "holdout", None))
    if getattr(args, "dry_run", False):
        print_plan(args.out, plan_build(args.out, **settings))
        return 0
    t0 = time.perf_counter()
    out = build_bundle(args.out, **settings)
    b = Bundle.open(out)
    print(f"bundle {out} (version {b.version}) built in {time.perf_counter() - t0:.1f}s")
    for name, rec in b.manifest.get("stages", {}).items():
        m = rec.get("metrics", {})
        shown = ", ".join(f"{k}={v}" for k, v in list(m.items())[:6]
                          if isinstance(v, (int, float, str)))
        print(f"  {name:<14} {rec.get('seconds', 0):>7.1f}s  {shown}")
    return 0


def cli_stages(args) -> int:
    """Handler of ``mixmatch features | train | graph`` on an existing bundle."""
    Bundle.open(args.bundle)  # no bundle there: named, and no folder made to lock
    if getattr(args, "dry_run", False):
        # no lock: a dry run beside a running build reports the bundle as it stands
        ctx, names = _stages_context(args)
        print_plan(args.bundle, plan_stages(ctx, names))
        return 0
    # from the manifest read to its last save: a build running meanwhile would
    # otherwise have its records overwritten by the manifest read before it finished
    with write_lock(args.bundle):
        ctx, names = _stages_context(args)
        results = run_stages(ctx, names)
    for name, metrics in results.items():
        print(f"{name}: " + json.dumps(metrics, default=str)[:400])
    return 0


def _stages_context(args) -> tuple[BuildContext, list[str] | None]:
    """The context and stage names of ``mixmatch features | train | graph``: the
    bundle's recorded config with the command's options over it (in memory: saved
    with the first stage that runs)."""
    b = Bundle.open(args.bundle)
    config = dict(b.manifest.get("config", {}))
    config["quick"] = bool(getattr(args, "quick", False)) or config.get("quick", False)
    seed = getattr(args, "seed", None)
    config["seed"] = config.get("seed", 0) if seed is None else seed
    config["engine"] = getattr(args, "engine", config.get("engine", "local"))
    config["scheduler"] = getattr(args, "scheduler", None)
    if config["engine"] == "dask" and config["scheduler"]:
        check_scheduler_address(config["scheduler"])
    overrides = read_config_file(getattr(args, "config", None))
    if overrides.get("stages"):
        # merged over what the bundle recorded, not over the source's defaults: a
        # config setting one key must not drop the rest of the tables the bundle was
        # built with (``mixmatch up``'s profile, a build's --config, --holdout)
        recorded = config.get("stages")
        if not isinstance(recorded, dict):  # a bundle recorded without stage tables
            recorded = source_stage_defaults(config.get("source", ""), config["quick"])
        config["stages"] = merge_stage_config(recorded, overrides["stages"])
        # the manifest records the tables the stages ran with (saved with the first
        # stage that runs, as a build does), so a later command without --config
        # finds the stage current instead of rerunning it on the old tables
        b.manifest.setdefault("config", {})["stages"] = config["stages"]
    if "dask" in overrides:
        # the config's [dask] sizes this run's cluster (it was dropped: the one the
        # bundle recorded was used), and is recorded as the build records its own
        config["dask"] = overrides["dask"]
        b.manifest.setdefault("config", {})["dask"] = overrides["dask"]
    ctx = BuildContext(bundle=b, config=config, force=bool(getattr(args, "force", False)))
    unused = dask_settings_unused(config) if "dask" in overrides else None
    if unused:
        ctx.log(unused)
    names = _stage_list(args.stages)
    if names and getattr(args, "applicable_only", False):
        # the stages a build of this source runs (run_stages runs every stage named)
        source = config.get("source", "")
        skip = [s.name for s in STAGES if s.name in names and s.sources is not None
                and source not in s.sources]
        for name in skip:
            ctx.log(f"[{name}] not a stage of a {source!r} bundle, skipped")
        names = [n for n in names if n not in skip]
    return ctx, names
