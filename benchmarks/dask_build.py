"""Build time, stage by stage, on a local Dask cluster beside the single-process build.

For each size the generated demo catalogue (table form: every item has catalogue
rows and outfits; only ``--image-sample`` items have images, as
``recommender.demo.generate_demo(..., image_sample=2000)`` makes them) is built
twice from the same source folder:

``local``  ``build_bundle(..., engine="local")`` with ``[stages.features] workers = 1``:
           one process does everything.
``dask``   ``build_bundle(..., engine="dask")`` on a ``LocalCluster`` of
           ``--workers`` processes x 1 thread. The stages before ``features``
           (ingest, split, attributes, keypoints) are the same code on both
           engines and do not use the cluster, so the Dask bundle starts as a
           copy of the local one and runs features, compatibility and graph.

Each build runs in its own process. Per stage (from the pipeline's start and
end log lines): wall seconds, CPU seconds (user + system, psutil) of the build
process and of each Dask worker, and the peak resident set of each, sampled
every 0.2 s (the kernel's ``ru_maxrss`` of the build process is kept too).
Quick mode (smaller networks and LightGBM settings) throughout. ``--graph-max``
leaves the graph stage out above a size. A build that fails is reported with its
log tail.

Run (one at a time, niced; prints a table and writes ``<workdir>/dask_build.json``)::

    nice -n 10 python benchmarks/dask_build.py --sizes 100000 1000000 \
        --image-sample 2000 --graph-max 5000 --memory-limit 4GiB

Measured 2026-11-27 on the shared 2-core machine (24 GB), 2 workers x 1 thread.
CPU seconds are the figures to compare: wall time includes waiting for the cores
(load average 2-5 from other people's jobs).

1,000,000 items (333,333 outfits, 2,000 images), code at commit 6d8b9e1 for both
builds (compatibility "auto" sharing its statistics between candidates,
value-level co-occurrence out of fold, compact count tables),
``--memory-limit 5.5GiB``; local ran with ``--engines local`` after the Dask one::

    stage          local wall  local CPU  local MB | dask wall  driver CPU  worker CPU  driver MB  worker MB
    ingest               12.8       13.0      1010 | (same code)
    split                31.2       25.5      1443 | (same code)
    attributes           10.9        7.0       905 | (same code)
    keypoints             4.5        3.1       717 | (same code)
    features            116.3       97.0      4954 |   112.9       27.6   67.5 / 65.5     4761   433 / 432
    compatibility       844.3      790.5      8492 |  1069.2      727.1  249.3 / 244.1    8550  4466 / 4811
    total 1,023 s local, 1,200 s dask (cluster start 1.0 s); generating the source: 41 s

Both compatibility models: 1,405,402 training pairs from 30,000 of 261,666 training
outfits (the cap), 141,758 validation pairs, 257 features, "random" negatives kept.
Held-out figures, local / dask: FITB 0.637 / 0.637, cold FITB 0.523 / 0.525,
compatibility AUC 0.946 / 0.946, hard AUC 0.695 / 0.695. In the Dask build the
driver spent 727 CPU-s of the stage (statistics, style tower, validation questions,
scoring the held-out files) against the local process's 790: the workers' 493 CPU-s
(pair features and LightGBM) bought 63 s of the driver's. The graph stage was left
out of that run (``--graph-max 5000``) and measured afterwards on the same two
bundles, at commit 82d3434 (style vectors in blocks, below), graph stage defaults::

    python benchmarks/dask_build.py --sizes 1000000 --image-sample 2000 \
        --memory-limit 5.5GiB --only-stages graph

    stage          local wall  local CPU  local MB | dask wall  driver CPU  worker CPU  driver MB  worker MB
    graph               378.3      392.0      4706 |   403.4       64.1  326.2 / 320.4    4832  3848 / 3825

(run from a script doing what ``--only-stages graph`` does: ``build_bundle(...,
stages=["graph"])`` in one process, and on a 2 x 1-thread ``LocalCluster``.)
Both scored 30.1M candidate pairs (30 per item) and kept the same numbers of edges
(30.0M compatibility, 3.8M co-occurrence, 0.25M visual: few visual edges because
only 2,000 items have an image). Scoring is nearly all of it: 347 CPU-s locally, 574
CPU-s on the two workers for the same pairs. Each worker also loads the model
(~15 s), and two processes scoring at once on the two cores cost more CPU per pair:
1.6M random pairs took 31.1 CPU-s alone and 35.7 / 36.4 with a second process
scoring beside it. That explains about a quarter of the gap; the rest is not yet
profiled. Before the fix, loading the compatibility model at 1M peaked at 7.8 GB for
a 3.0 GB result -- the style tower's forward pass over all million rows at once --
so the workers crossed 95% of 7 GiB and were restarted; computing the style vectors
in blocks of 65,536 rows (bit-identical vectors) brought the load's peak to 3.4 GB.

Earlier runs of the same sizes, and what changed:

* 1M, code at 4cf5be9, ``--memory-limit 4GiB``: local compatibility 895.8 CPU-s,
  peak 15.1 GB (both "auto" candidates fitted their own statistics, style tower and
  item tables, and the first was alive while the second fitted); Dask failed in
  compatibility when a 4 GiB worker was restarted while LightGBM loaded its data
  (the broadcast featurizer was 1.38 GB and the item table 0.95 GB: count tables in
  float32, codes in int64). At 6d8b9e1 with 5 GiB the workers were still restarted
  (4.1 GB at the pause threshold); 5.5 GiB passed.
* Their test figures then (FITB 0.567, cold 0.438, AUC 0.831, hard 0.665) came from
  the leaking value-level leave-one-out (recommender.compat.cooccurrence docstring);
  at 100k the validation AUC was 0.55 and 0.38 (below chance) for the two candidates,
  the same signature (100k not re-run since the fix).

100,000 items (33,333 outfits, 2,000 images; ``--memory-limit 3GiB``; code at
75e6a17: one negatives mode's worth of style tower less than now, leaking
leave-one-out, one negative per positive)::

    stage          local wall  local CPU  local peak MB | dask wall  driver CPU   worker CPU  driver MB    worker MB
    ingest               1.8        1.8           230   | (same code)
    split                2.3        2.3           315   | (same code)
    attributes           9.1        6.3           596   | (same code)
    keypoints            6.0        3.6           603   | (same code)
    features            85.4       74.2          1024   |   139.1        10.8  70.5 / 73.9        873    437 / 439
    compatibility      347.9      305.2          2636   |   616.0       308.7  88.8 / 86.0       2235  2197 / 2239
    total 454 s local, 762 s dask (cluster start 1.3 s); generating the source: 22 s

Growth from 100k to 1M (10x the items and outfits; 75e6a17 vs 4cf5be9): split CPU
2.3 -> 27.6 s, features 74 -> 94 s (the same 2,000 images; the rest is the table),
and compatibility 305 -> 896 s with its peak 2.6 -> 15.1 GB: its training rows are
capped (642k pairs at 100k, 843k at 1M), so what grows is the per-item and
per-outfit work around them (statistics, style vectors for every item, scoring 10x
the held-out files) and the per-item tables held in memory. At 100k the Dask driver spent as much CPU in
compatibility as the whole local stage (309 vs 305 s) while the two workers
added 175 s for the pair features and LightGBM: the stage's driver part is
most of it.

Before these fixes (same machine, load average 8-15, wall seconds only):
``split`` 0.4 s at 5k and 159.4 s at 100k (each held-out blank copied its whole
subcategory pool: outfits x pool size); ``features`` 430 s local at 100k, most
of it 1,563 chunk round trips of identical "no image" rows; ``compatibility``
447 s local at 100k with a 5.1 GB peak, growing with every training outfit.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE_OUTPUTS = ("features", "graph", "models/compat.txt", "models/compat.json",
                  "models/cooc.npz")
STAGES = ("ingest", "split", "attributes", "keypoints", "features", "compatibility", "graph")


class PeakRSS:
    """Peak resident memory of a set of processes, sampled in a thread.

    ``peak`` is over the whole run; ``stage_peak[stage]`` over the stage named in
    ``stage`` when the sample was taken (set by :class:`StageMeter`).
    """

    def __init__(self, pids: dict[str, int] | None = None, interval: float = 0.2):
        import psutil

        self._psutil = psutil
        self.pids = dict(pids or {"build": os.getpid()})
        self.peak = dict.fromkeys(self.pids, 0)
        self.stage: str | None = None
        self.stage_peak: dict[str, dict[str, int]] = {}
        self.interval = interval
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self):
        stage = self.stage
        for name, pid in list(self.pids.items()):
            try:
                rss = self._psutil.Process(pid).memory_info().rss
            except self._psutil.Error:
                continue
            self.peak[name] = max(self.peak.get(name, 0), rss)
            if stage:
                sp = self.stage_peak.setdefault(stage, {})
                sp[name] = max(sp.get(name, 0), rss)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of a process so far (with its waited-for children)."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)


class StageMeter:
    """The build's log function: CPU seconds of every process per stage.

    The pipeline logs ``[stage] <description> ...`` when a stage starts and
    ``[stage] done in ...`` when it ends; at each, the CPU times of the build
    process (with its children: the features stage's process pool) and of each
    Dask worker are read, and the peak-memory sampler is told the stage.
    """

    def __init__(self, pids: dict[str, int], mem: PeakRSS, quiet: bool):
        from recommender.pipeline import STAGES as PIPE

        self.pids = pids
        self.mem = mem
        self.quiet = quiet
        self.starts = {f"[{st.name}] {st.description} ...": st.name for st in PIPE}
        self.cpu: dict[str, dict[str, float]] = {}
        self._t0: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {n: cpu_seconds(p, children=(n == "build")) for n, p in self.pids.items()}

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)
        if msg in self.starts:
            self.mem.sample()
            self.mem.stage = self.starts[msg]
            self._t0 = self._now()
        else:
            m = re.match(r"^\[(\w+)\] done in", msg)
            if m and self._t0:
                now = self._now()
                self.cpu[m.group(1)] = {n: round(now[n] - self._t0.get(n, 0.0), 1)
                                        for n in now}
                self.mem.sample()
                self.mem.stage = None
                self._t0 = {}



def _stage_seconds(bundle: Path) -> dict:
    m = json.loads((bundle / "manifest.json").read_text())
    return {k: v.get("seconds") for k, v in m.get("stages", {}).items()}


def run_one(args) -> dict:
    """One build in this process (called through a subprocess by :func:`main`)."""
    from recommender.build import build_bundle

    out = Path(args.bundle)
    overrides = {"stages": {"features": {"workers": 1, "max_side": args.max_side}}}
    t0 = time.perf_counter()
    result: dict = {"engine": args.engine, "items": args.items}
    if args.engine == "local":
        with PeakRSS() as mem:
            meter = StageMeter({"build": os.getpid()}, mem, args.quiet)
            build_bundle(out, source="demo", items=args.items, seed=0,
                         quick=True, stages=args.stages, force=args.force,
                         overrides=overrides, log=meter)
    else:
        from recommender.distributed import dask_executor

        overrides["dask"] = {"n_workers": args.workers, "memory_limit": args.memory_limit}
        config = {"scheduler": args.scheduler, "dask": overrides["dask"]}
        with dask_executor(config) as ex:  # the build reuses this one (re-entrant)
            result["seconds_cluster_start"] = round(time.perf_counter() - t0, 2)
            pids = {f"worker{k}": pid for k, (_, pid) in
                    enumerate(sorted(ex.client.run(os.getpid).items()))}
            with PeakRSS({"build": os.getpid(), **pids}) as mem:
                meter = StageMeter({"build": os.getpid(), **pids}, mem, args.quiet)
                build_bundle(out, source="demo", items=args.items,
                             seed=0, quick=True, stages=args.stages, force=args.force,
                             engine="dask",
                             scheduler=args.scheduler, overrides=overrides, log=meter)
    result["peak_rss_mb"] = {k: round(v / 2**20) for k, v in mem.peak.items()}
    # the kernel's own peak of this process (the sampler may miss a short spike)
    result["build_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["stage_peak_rss_mb"] = {s: {k: round(v / 2**20) for k, v in d.items()}
                                   for s, d in mem.stage_peak.items()}
    result["stage_cpu_seconds"] = meter.cpu
    result["seconds_total"] = round(time.perf_counter() - t0, 2)
    result["stages"] = _stage_seconds(out)
    return result


def _sub(args, engine: str, bundle: Path, source: Path, items: int, stages) -> dict:
    cmd = [sys.executable, __file__, "--one", "--engine", engine, "--bundle", str(bundle),
           "--source", str(source), "--items", str(items), "--workers", str(args.workers),
           "--memory-limit", args.memory_limit, "--max-side", str(args.max_side),
           "--json-out", str(bundle) + ".json"]
    if stages:
        cmd += ["--stages", ",".join(stages)]
    if args.only_stages:  # re-run them even where their inputs did not change
        cmd.append("--force")
    if args.scheduler:
        cmd += ["--scheduler", args.scheduler]
    if args.quiet:
        cmd.append("--quiet")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = Path(str(bundle) + ".log")
    t0 = time.perf_counter()
    with open(log, "w") as f:  # the build's log (stderr) kept beside its bundle
        rc = subprocess.run(cmd, env=env, stderr=f).returncode
    if rc != 0:  # a build that failed (memory, a bug) is a result too: say where
        tail = log.read_text().splitlines()[-15:]
        print(f"   {engine} build of {items} items FAILED (exit {rc}); log {log}:\n     "
              + "\n     ".join(tail), flush=True)
        done = {}
        if (bundle / "manifest.json").is_file():
            done = _stage_seconds(bundle)
        return {"engine": engine, "items": items, "failed": rc, "log_tail": tail,
                "seconds_total": round(time.perf_counter() - t0, 1), "stages": done}
    return json.loads(Path(str(bundle) + ".json").read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    p.add_argument("--image-sample", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="3GiB")
    p.add_argument("--scheduler", default=None)
    p.add_argument("--max-side", type=int, default=512,
                   help="[stages.features] max_side for both builds (images shrunk to it)")
    p.add_argument("--workdir", default="/tmp/mixmatch_dask_bench")
    p.add_argument("--graph-max", type=int, default=None,
                   help="skip the graph stage above this many items (default: never)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--engines", nargs="+", default=["local", "dask"],
                   choices=["local", "dask"],
                   help="which builds to run (dask alone reuses local_<n>'s early stages)")
    p.add_argument("--only-stages", type=lambda s: s.split(","), default=None,
                   help="re-run just these stages (comma-separated) on the bundles an "
                        "earlier run left in --workdir, e.g. graph after a change")
    # internal: one build in this process
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", default="local", help=argparse.SUPPRESS)
    p.add_argument("--bundle", help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--items", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stages", type=lambda s: s.split(","), default=None,
                   help=argparse.SUPPRESS)
    p.add_argument("--json-out", help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        res = run_one(args)
        Path(args.json_out).write_text(json.dumps(res, indent=2))
        return 0

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for n in args.sizes:
        src = work / f"source_{n}_{args.image_sample}"
        row: dict = {"items": n, "uptime_before": os.popen("uptime").read().strip()}
        if not (src / "demo.json").is_file():
            from recommender.demo import generate_demo

            t0 = time.perf_counter()
            generate_demo(src, n_items=n, seed=0, image_sample=args.image_sample)
            row["seconds_generate"] = round(time.perf_counter() - t0, 1)
        stages = ([s for s in STAGES if s != "graph"]
                  if args.graph_max is not None and n > args.graph_max else None)
        local, dask = work / f"local_{n}", work / f"dask_{n}"
        if args.only_stages:
            for b, engine in ((local, "local"), (dask, "dask")):
                if engine in args.engines:
                    if not (b / "manifest.json").is_file():
                        p.error(f"--only-stages needs the bundle {b} of an earlier run")
                    row[engine] = _sub(args, engine, b, src, n, args.only_stages)
                else:
                    row[engine] = {"stages": {}}
            row["graph"] = "built" if "graph" in args.only_stages else "not re-run"
            row["uptime_after"] = os.popen("uptime").read().strip()
            results.append(row)
            (work / "dask_build.json").write_text(json.dumps(results, indent=2))
            _print_row(row)
            continue
        for b, engine in ((local, "local"), (dask, "dask")):
            if b.exists() and engine in args.engines:
                shutil.rmtree(b)
        if "local" in args.engines:
            # the demo build reads its source from <bundle>/source (generated once per size)
            local.mkdir(parents=True)
            (local / "source").symlink_to(src.resolve(), target_is_directory=True)
            row["local"] = _sub(args, "local", local, src, n, stages)
        else:
            row["local"] = json.loads(Path(str(local) + ".json").read_text())
        if "dask" not in args.engines:
            row["dask"] = {"stages": {}}
            results.append(row)
            (work / "dask_build.json").write_text(json.dumps(results, indent=2))
            _print_row(row)
            continue
        shutil.copytree(local, dask, symlinks=True, ignore=shutil.ignore_patterns("parts"))
        for rel in ENGINE_OUTPUTS:
            q = dask / rel
            if q.is_dir():
                shutil.rmtree(q)
            elif q.exists():
                q.unlink()
        row["dask"] = _sub(args, "dask", dask, src, n, stages)
        if row["dask"].get("failed"):  # the copied manifest still names local's records
            row["dask"]["stages"] = {k: v for k, v in row["dask"]["stages"].items()
                                     if v != row["local"]["stages"].get(k)}
        row["graph"] = "built" if stages is None else f"skipped (> --graph-max {args.graph_max})"
        row["uptime_after"] = os.popen("uptime").read().strip()
        results.append(row)
        (work / "dask_build.json").write_text(json.dumps(results, indent=2))
        _print_row(row)
    return 0


def _cpu(res: dict, stage: str, who: str):
    v = res.get("stage_cpu_seconds", {}).get(stage, {}).get(who)
    return "-" if v is None else v


def _print_row(row: dict) -> None:
    print(f"\n== {row['items']} items  ({row['uptime_before']})")
    if "seconds_generate" in row:
        print(f"   generate_demo: {row['seconds_generate']} s")
    loc, dsk = row["local"], row["dask"]
    workers = sorted(k for k in dsk.get("peak_rss_mb", {}) if k.startswith("worker"))
    head = (f"   {'stage':<14}{'local wall':>11}{'local cpu':>10}{'local MB':>9}"
            f"{'dask wall':>10}{'driver cpu':>11}" + "".join(f"{w + ' cpu':>12}" for w in workers)
            + f"{'driver MB':>10}" + "".join(f"{w + ' MB':>11}" for w in workers))
    print(head)
    for s in STAGES:
        a = loc["stages"].get(s)
        if a is None:
            continue
        on_dask = s in ("features", "compatibility", "graph")
        line = (f"   {s:<14}{a:>11}{_cpu(loc, s, 'build'):>10}"
                f"{loc.get('stage_peak_rss_mb', {}).get(s, {}).get('build', '-'):>9}")
        if on_dask:
            mem = dsk.get("stage_peak_rss_mb", {}).get(s, {})
            line += (f"{dsk['stages'].get(s, '-'):>10}{_cpu(dsk, s, 'build'):>11}"
                     + "".join(f"{_cpu(dsk, s, w):>12}" for w in workers)
                     + f"{mem.get('build', '-'):>10}"
                     + "".join(f"{mem.get(w, '-'):>11}" for w in workers))
        else:
            line += f"{'(same)':>10}"
        print(line)
    print(f"   dask cluster start: {row['dask'].get('seconds_cluster_start')} s; "
          f"graph: {row.get('graph', 'not run (--engines local)')}")
    print(f"   peak RSS MB local: {row['local'].get('peak_rss_mb')}")
    print(f"   peak RSS MB dask:  {row['dask'].get('peak_rss_mb')}")
    print(f"   ({row['uptime_after']})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
