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

The tables: totals; growth against the first size (the baseline, measured in the
same run) and step by step; recall of the embedding-neighbour candidates against
exact search on a sample (exact below ``exact_max`` target items, so 1.0 at 10k);
CPU microseconds per item by build phase (``graph.json``'s
``cpu_seconds_by_phase``), which shows where growth comes from.

Measured 2026-11-27 17:41 UTC (2 shared cores, load average 4.7-7.0, nice 10;
CPU seconds are the figures to compare)::

      items  build wall / CPU s   export CPU s  peak RSS MB  CPU us/item  step CPU x
      10000      1.78 /   1.15         0.19          247         115.0
     100000     16.09 /  13.28         1.68          615         132.8       11.55
    1000000    314.45 / 153.01        77.12         4729         153.0       11.52

    recall@20 vs exact (same-category / cross-category queries):
    10k 1.000 / 1.000 (exact), 100k 0.993 / 0.750, 1M 0.812 / 0.531 (IVF, n_probe 3)

Before this run the same 1M build took 185 s CPU (100k -> 1M: 14.8x): the IVF
probe step partitioned 65,536 x 489 centroid scores from main memory, pass 2
searched 20,000-query batches that touched every list with ~40 queries, and
the content scorer compared colour strings object by object. The 1M export
above (77 s CPU, 46x the 100k one) predates plain-string ids in
``edges.parquet`` (``recommender.graph.write_edges``: 560 -> 165 ns an edge at
10^6 items, 163 -> 104 ns at 10^5, measured on 1.2 x 10^7 edges).
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


def candidate_recall(cat, emb, cfg, seed: int, per_cat: int = 200) -> dict:
    """Recall@k of the build's embedding-neighbour candidates against exact search.

    For every category, ``per_cat`` sampled items of it (same-category queries:
    visual edges and the two-hop bridge) and ``per_cat`` sampled items of other
    categories (cross-category queries: the compatibility candidates) search the
    category's index exactly as the build does (same config and seed, so the same
    IVF lists); recall is the share of the exact top ``k_candidates`` found.
    Returns the mean over queries for each kind and the share of targets on IVF.
    """
    from recommender.candidates import CategoryIndex, exact_neighbours

    rng = np.random.default_rng(seed + 1)
    cats = cat["category"].to_numpy()
    k = cfg.k_candidates
    hits = {"same": [], "cross": []}
    ivf_items = 0
    for c in pd.unique(cats):
        base = np.flatnonzero(cats == c)
        ix = CategoryIndex(emb, base, exact_max=cfg.exact_max, list_size=cfg.list_size,
                           n_probe=cfg.n_probe, random_state=cfg.seed)
        ivf_items += 0 if ix.exact else len(base)
        other = np.flatnonzero(cats != c)
        for kind, pool in (("same", base), ("cross", other)):
            q = np.sort(rng.choice(pool, min(per_cat, len(pool)), replace=False))
            got, _ = ix.search(emb, q, k)
            loc = ix.local(q)
            ex, _ = exact_neighbours(emb[q], emb[base], k, exclude=loc)
            ex = np.where(ex >= 0, base[np.maximum(ex, 0)], -1)
            for g, e in zip(got, ex):
                e = e[e >= 0]
                hits[kind].append(len(np.intersect1d(g, e)) / max(len(e), 1))
    return {"recall_same": round(float(np.mean(hits["same"])), 3),
            "recall_cross": round(float(np.mean(hits["cross"])), 3),
            "ivf_share": round(ivf_items / len(cats), 2)}


def run_one(n: int, seed: int, recall: bool = True) -> dict:
    from recommender.graph import GraphConfig, build_graph, export_serving_arrays, write_edges
    from recommender.rules import default_rules

    cat, emb, outfits = synthesise(n, seed)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = GraphConfig(k_compat=10, k_visual=10, k_cooc=10, k_candidates=20, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    res = build_graph(cat, emb, outfits, default_rules().pairing, config=cfg)
    t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        t1, c1 = time.perf_counter(), time.process_time()
        export_serving_arrays(res, d)
        write_edges(res, os.path.join(d, "edges.parquet"))
        t_export, c_export = time.perf_counter() - t1, time.process_time() - c1
        disk = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"items": n, "edges": int(sum(res.stats["edges"].values())),
           "pairs_scored": res.stats["pairs_scored"],
           "pairs_scored_per_item": res.stats["pairs_scored_per_item"],
           "build_s": round(t_build, 2), "build_cpu_s": round(c_build, 2),
           "export_s": round(t_export, 2), "export_cpu_s": round(c_export, 2),
           "peak_rss_mb": round(rss), "rss_before_build_mb": round(rss0),
           "peak_rss_build_mb": round(rss_build), "disk_mb": round(disk / 2 ** 20, 1),
           "phases": res.stats["cpu_seconds_by_phase"]}
    del res
    if recall:
        c2 = time.process_time()
        out.update(candidate_recall(cat, emb, cfg, seed))
        out["recall_cpu_s"] = round(time.process_time() - c2, 1)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-recall", action="store_true",
                   help="skip the candidate recall check against exact search")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(a.one, a.seed, recall=not a.no_recall)))
        return 0
    print("graph build on SYNTHESISED table-form catalogues (embeddings and outfits "
          "generated here; content scorer; k_compat=10, k_visual=10, k_candidates=20; "
          "one process per size, numpy threads as the environment sets them: "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    rows = []
    for n in a.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--seed", str(a.seed)]
        out = subprocess.run(cmd + (["--no-recall"] if a.no_recall else []),
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"  {n:>9} items: build {r['build_s']:.2f}s wall / {r['build_cpu_s']:.2f}s "
              f"CPU, export {r['export_s']:.2f}s wall / {r['export_cpu_s']:.2f}s CPU, "
              f"peak RSS {r['peak_rss_mb']} MB, load {os.getloadavg()[0]:.1f}", flush=True)
    print(growth_table(rows))
    return 0


def growth_table(rows: list[dict]) -> str:
    """The measured rows as tables: totals, growth against the first (smallest)
    size -- the baseline, measured in the same run -- and against the previous
    size, then CPU microseconds per item by build phase."""
    df = pd.DataFrame(rows)
    base = df.iloc[0]
    # CPU seconds are the figure to compare on a shared machine: wall time there
    # mostly measures the other users
    df["cpu_per_item_us"] = (df["build_cpu_s"] / df["items"] * 1e6).round(1)
    df["items_x"] = (df["items"] / base["items"]).round(1)
    df["cpu_x"] = (df["build_cpu_s"] / base["build_cpu_s"]).round(1)
    df["wall_x"] = (df["build_s"] / base["build_s"]).round(1)
    df["rss_x"] = (df["peak_rss_mb"] / base["peak_rss_mb"]).round(1)
    prev = df.shift(1)
    df["step_items_x"] = (df["items"] / prev["items"]).round(1)
    df["step_cpu_x"] = (df["build_cpu_s"] / prev["build_cpu_s"]).round(2)
    df["step_wall_x"] = (df["build_s"] / prev["build_s"]).round(2)
    df["step_rss_x"] = (df["peak_rss_mb"] / prev["peak_rss_mb"]).round(2)
    df["step_export_cpu_x"] = (df["export_cpu_s"] / prev["export_cpu_s"]).round(2)
    cols = ["items", "edges", "pairs_scored_per_item", "build_s", "build_cpu_s",
            "export_s", "export_cpu_s", "peak_rss_mb", "rss_before_build_mb",
            "peak_rss_build_mb", "disk_mb"]
    growth = ["items", "cpu_per_item_us", "items_x", "cpu_x", "wall_x", "rss_x",
              "step_items_x", "step_cpu_x", "step_wall_x", "step_rss_x", "step_export_cpu_x"]
    parts = ["\ntotals (s, MB):", df[cols].to_string(index=False),
             "\ngrowth (x: against the first size; step_: against the previous size):",
             df[growth].to_string(index=False)]
    if "recall_same" in df.columns:
        parts += ["\nembedding-neighbour candidates vs exact search (recall@k_candidates; "
                  "ivf_share: items in categories searched by IVF, exact below):",
                  df[["items", "ivf_share", "recall_same", "recall_cross",
                      "recall_cpu_s"]].to_string(index=False)]
    ph = pd.DataFrame(list(df["phases"])).fillna(0.0)
    ph = (ph.div(df["items"], axis=0) * 1e6).round(2)
    ph.insert(0, "items", df["items"])
    parts += ["\nbuild CPU microseconds per item, by phase:", ph.to_string(index=False)]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
