"""Graph build time and memory on generated catalogues of 10k, 100k and 1M items.

The items are *table form*: the catalogue rows, embeddings and outfits are
synthesised here, deterministically from a seed, because this measures graph
building, not perception: 40 style clusters x categories; an item's embedding is
its style centre plus noise (D=32, L2-normalised); outfits (n/3 of them) take a
top, bottom, shoes and bag from one style. Edges are weighted by the content
scorer (recommender.graph.ContentScorer): no compatibility model is trained at
these sizes. Each size runs in its own process so peak memory (ru_maxrss) is
its own.

Build CPU seconds (process time) are reported beside wall time: on a shared
machine the wall clock mostly measures the other users. Run on one core::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 \
        python benchmarks/graph_build.py --sizes 10000 100000 1000000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

CATS = np.array(["top", "bottom", "dress", "outerwear", "shoes", "bag", "jewellery",
                 "accessory"])
CAT_P = np.array([0.25, 0.2, 0.1, 0.08, 0.14, 0.11, 0.06, 0.06])


def synthesise(n: int, seed: int = 0, dim: int = 32, n_styles: int = 40):
    rng = np.random.default_rng(seed)
    cats = CATS[rng.choice(len(CATS), n, p=CAT_P)]
    style = rng.integers(0, n_styles, n)
    centres = rng.normal(size=(n_styles, len(CATS), dim)).astype(np.float32)
    ci = pd.Categorical(cats, categories=CATS).codes
    emb = centres[style, ci] + 0.8 * rng.normal(size=(n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    colours = np.array(["BLACK", "WHITE", "BLUE", "RED", "GREEN", "GREY", "PINK", "BROWN"])
    cat = pd.DataFrame({"item_id": np.char.add("i", np.arange(n).astype(str)),
                        "category": cats, "colour": colours[rng.integers(0, 8, n)]})
    # outfits: top + bottom + shoes + bag of one style
    n_out = n // 3
    rows_o, rows_i = [], []
    pools = {}
    for c in ("top", "bottom", "shoes", "bag"):
        idx = np.flatnonzero(cats == c)
        order = np.lexsort((idx, style[idx]))
        pools[c] = (idx[order], np.searchsorted(style[idx][order], np.arange(n_styles + 1)))
    s = rng.integers(0, n_styles, n_out)
    for c, (idx, bounds) in pools.items():
        lo, hi = bounds[s], bounds[s + 1]
        ok = hi > lo
        pick = lo + (rng.random(n_out) * np.maximum(hi - lo, 1)).astype(np.int64)
        rows_o.append(np.arange(n_out)[ok])
        rows_i.append(idx[np.minimum(pick, len(idx) - 1)][ok])
    outfits = pd.DataFrame({"outfit_id": np.concatenate(rows_o).astype(str),
                            "item_id": cat["item_id"].to_numpy()[np.concatenate(rows_i)]})
    return cat, emb, outfits


def run_one(n: int, seed: int) -> dict:
    from recommender.graph import GraphConfig, build_graph, export_serving_arrays, write_edges
    from recommender.rules import default_rules

    cat, emb, outfits = synthesise(n, seed)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = GraphConfig(k_compat=10, k_visual=10, k_cooc=10, k_candidates=20, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    res = build_graph(cat, emb, outfits, default_rules().pairing, config=cfg)
    t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        t1, c1 = time.perf_counter(), time.process_time()
        export_serving_arrays(res, d)
        write_edges(res, os.path.join(d, "edges.parquet"))
        t_export, c_export = time.perf_counter() - t1, time.process_time() - c1
        disk = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"items": n, "edges": int(sum(res.stats["edges"].values())),
            "pairs_scored": res.stats["pairs_scored"],
            "pairs_scored_per_item": res.stats["pairs_scored_per_item"],
            "build_s": round(t_build, 2), "build_cpu_s": round(c_build, 2),
            "export_s": round(t_export, 2), "export_cpu_s": round(c_export, 2),
            "peak_rss_mb": round(rss), "rss_before_build_mb": round(rss0),
            "disk_mb": round(disk / 2 ** 20, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(a.one, a.seed)))
        return 0
    print("graph build on SYNTHESISED table-form catalogues (embeddings and outfits "
          "generated here; content scorer; k_compat=10, k_visual=10, k_candidates=20; "
          "one process per size, numpy threads as the environment sets them: "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    rows = []
    for n in a.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--seed",
                              str(a.seed)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"  {n:>9} items: build {r['build_s']:.2f}s wall / {r['build_cpu_s']:.2f}s "
              f"CPU, export {r['export_s']:.2f}s, peak RSS {r['peak_rss_mb']} MB, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    df = pd.DataFrame(rows)
    base = df.iloc[0]
    # CPU seconds are the figure to compare on a shared machine: wall time there
    # mostly measures the other users
    df["cpu_per_item_us"] = (df["build_cpu_s"] / df["items"] * 1e6).round(1)
    df["cpu_x"] = (df["build_cpu_s"] / base["build_cpu_s"]).round(1)
    df["items_x"] = (df["items"] / base["items"]).round(1)
    print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
