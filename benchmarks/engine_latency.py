"""In-process latency of cross-sell, up-sell and completion per request (p50, p99).

Wall and CPU (thread time) per request are both reported: on a shared machine
the wall clock includes waiting for a core. Either an existing bundle
(``--bundle``, e.g. the MANGO one) or a generated
table-form bundle of ``--items`` rows (catalogue, embeddings and outfits
synthesised by benchmarks/graph_build.py's ``synthesise``, with prices, graph built
by the real graph stage code). Run with one thread for the one-core target::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 \
        python benchmarks/engine_latency.py --items 1000000 --requests 2000
    python benchmarks/engine_latency.py --bundle bundles/mango

``--rules`` serves every request under a rules file, e.g. one excluding a colour
most items have (the groups then widen past the graph rows; see
``Engine._merged_allowed``); ``--strategy`` picks the cross-sell strategy.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_bundle(root: Path, n: int, seed: int = 0) -> Path:
    from graph_build import synthesise
    from recommender.build import bundle_from_tables
    from recommender.catalog import validate_catalog

    cat, emb, outfits = synthesise(n, seed)
    rng = np.random.default_rng(seed + 1)
    cat = cat.assign(subcategory=cat["category"], material="", gender="Female",
                     image_path="", price=np.round(rng.uniform(10, 200, n), 2),
                     in_stock=True)
    cat, _ = validate_catalog(cat, check_images=False)
    cfg = {"k_compat": 10, "k_visual": 10, "k_cooc": 10, "k_candidates": 20}
    bundle_from_tables(root, cat, outfits, emb, source="synthetic",
                       config={"seed": seed, "stages": {"graph": cfg}},
                       log=lambda m: print(m, file=sys.stderr, flush=True))
    return Path(root)


def pct(xs):
    a = np.asarray(xs) * 1000
    return f"p50 {np.percentile(a, 50):7.2f} ms  p99 {np.percentile(a, 99):7.2f} ms"


def generated_bundle(out: Path, n: int, seed: int) -> Path:
    """``out`` if it already holds the generated bundle of ``n`` items, else build it."""
    import json

    m = out / "manifest.json"
    if m.is_file():
        man = json.loads(m.read_text())
        if "graph" in man.get("stages", {}) and man.get("n_items") == n:
            print(f"reusing the generated bundle at {out}")
            return out
    make_bundle(out, n, seed)
    man = json.loads(m.read_text())
    man["n_items"] = n
    m.write_text(json.dumps(man, indent=2))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="keep the generated bundle here (reused when present)")
    p.add_argument("--rules", help="a rules TOML file every request is served under")
    p.add_argument("--strategy", default="default", help="cross-sell strategy")
    a = p.parse_args(argv)
    from recommender.engine import Engine

    tmp = None
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if a.bundle:
        path = Path(a.bundle)
    else:
        t0 = time.perf_counter()
        if a.out:
            path = generated_bundle(Path(a.out), a.items, a.seed)
        else:
            tmp = tempfile.TemporaryDirectory()
            path = make_bundle(Path(tmp.name) / "b", a.items, a.seed)
        print(f"generated table-form bundle of {a.items} items (synthesised embeddings "
              f"and outfits) in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    eng = Engine.load(path, rules=a.rules)
    print(f"Engine.load: {time.perf_counter() - t0:.2f}s; {len(eng.catalog)} items; "
          f"threads OMP={os.environ.get('OMP_NUM_THREADS', 'unset')}; rules "
          f"{eng.rules_version}; strategy {a.strategy}")
    rng = np.random.default_rng(a.seed)
    ids = eng.table.ids
    body = np.flatnonzero(np.isin(eng.table.category, ["top", "bottom", "dress"]))
    sample = ids[rng.choice(body, a.requests)]
    st = a.strategy
    for name, fn in (("cross-sell (k=5)", lambda i: eng.complements(i, k=5, strategy=st)),
                     # k beyond the graph's k_compat edges: the strategies top up
                     ("cross-sell (k=40)", lambda i: eng.complements(i, k=40, strategy=st)),
                     ("up-sell (k=5)", lambda i: eng.upsell(i, k=5)),
                     ("completion (n=3)", lambda i: eng.complete([i], n=3, strategy=st))):
        for i in sample[:20]:  # warm the memory maps and caches
            fn(i)
        times, cpu = [], []
        reqs = sample if name == "cross-sell (k=5)" else sample[: max(200, a.requests // 5)]
        for i in reqs:
            t, c = time.perf_counter(), time.thread_time()
            fn(i)
            cpu.append(time.thread_time() - c)
            times.append(time.perf_counter() - t)
        print(f"{name:<18} {len(times):>5} requests  wall {pct(times)}   CPU {pct(cpu)}")
    print(f"load average {os.getloadavg()[0]:.1f}")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
