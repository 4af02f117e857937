"""Pairs per second of batch compatibility scoring, with its baseline in the same run.

Baseline: LightGBM's raw ``predict`` on a feature matrix built beforehand (the floor
any scorer pays). Measured: ``CompatibilityModel.score_pairs`` (feature construction
from per-item arrays + predict), which is what request paths call, and feature
construction alone. One thread by default (the serving budget is one core).

The small batches (1, 10, 100 pairs) are what request paths send: there the fixed
cost of a call (lookups, assembling the matrix, LightGBM's call) is most of the
time, so their rows report milliseconds per call; each timing runs enough calls
to cover ~1000 pairs, and the best of ``--repeat`` is kept.

Usage::

    python benchmarks/compat_scoring.py --bundle BUNDLE [--pairs 1,10,100,1000,10000,100000]
        [--threads 1] [--repeat 3] [--json]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from recommender.json_output import dumps  # NaN (an empty split) as null


def best_time(fn, repeat: int, number: int = 1) -> float:
    """Best of ``repeat`` timings of ``number`` calls, per call (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def run(bundle: str, sizes: list[int], threads: int, repeat: int, seed: int = 0) -> list[dict]:
    from recommender.compat.model import CompatibilityModel

    model = CompatibilityModel.load(bundle, num_threads=threads)
    n = len(model.items_)
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        a = rng.integers(0, n, size)
        b = rng.integers(0, n, size)
        X = model.featurizer_.transform(model.items_, a, model.items_, b)
        number = max(1, 1000 // size)   # a single small call is below the clock's noise
        t_raw = best_time(lambda: model.booster_.predict(X, num_threads=threads), repeat,
                          number)
        t_feat = best_time(lambda: model.featurizer_.transform(model.items_, a, model.items_, b),
                           repeat, number)
        t_full = best_time(lambda: model.score_pairs(a, b), repeat, number)
        rows.append({"pairs": size, "features": X.shape[1], "threads": threads,
                     "raw_predict_pairs_per_s": size / t_raw,
                     "features_only_pairs_per_s": size / t_feat,
                     "score_pairs_pairs_per_s": size / t_full,
                     "score_pairs_ms": 1000 * t_full})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--pairs", default="1,10,100,1000,10000,100000")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = run(args.bundle, [int(x) for x in args.pairs.split(",")], args.threads, args.repeat)
    if args.json:
        print(dumps(rows, indent=2))
        return 0
    print(f"{'pairs':>8}{'features':>10}{'raw predict/s':>16}{'features/s':>14}"
          f"{'score_pairs/s':>16}{'ms':>10}")
    for r in rows:
        print(f"{r['pairs']:>8}{r['features']:>10}{r['raw_predict_pairs_per_s']:>16,.0f}"
              f"{r['features_only_pairs_per_s']:>14,.0f}{r['score_pairs_pairs_per_s']:>16,.0f}"
              f"{r['score_pairs_ms']:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
