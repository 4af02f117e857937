"""Scoring time of the outfit context model (forward and reverse), with its baseline in
the same run.

Measured: :meth:`recommender.compat.context.OutfitContext.score` and
:meth:`~recommender.compat.context.OutfitContext.score_reverse` on the bundle's FITB
files, as the FITB ranker reads them (``mixmatch evaluate``, the model report's
``evaluation_tables``): rows scored shortest first, in blocks padded to their longest
row. Baseline: the same network with the rows in blocks in the callers' order, as
before, each block padded to whichever long row it held. Runs alternate (baseline,
measured, baseline, ...) so that a busy machine slows both alike; the table gives the
fastest, median and slowest of ``--repeat`` runs, wall-clock and CPU seconds, the
encoder positions each way (rows x padded width, per network), and whether the
scores are identical bit for bit (they must be: the ranker was trained on them).
``--tables`` also times the whole :func:`recommender.report.evaluation_tables`.

Usage::

    python benchmarks/context_scoring.py --bundle BUNDLE [--repeat 5] [--tables] [--json]

Figures (the MANGO bundle of the seed-0 split: ``fitb.jsonl`` 1,255 questions and
``fitb_cold.jsonl`` 828, four answers each, three networks, one torch thread as
``CompatibilityModel.load`` sets it; a 2-core machine shared with other jobs, load
average 2-4, so wall-clock times spread widely and CPU times are the steadier
figure; ``--repeat 5 --tables``; median (fastest-slowest) seconds; every score
identical bit for bit)::

    file       scores             positions            cpu s, baseline -> measured
    fitb       score_reverse      224,712 -> 139,872   5.15 (5.09-5.57) -> 3.12 (3.04-3.50)
    fitb       score               14,367 ->   8,916   0.44 (0.40-0.47) -> 0.27 (0.26-0.29)
    fitb_cold  score_reverse      143,172 ->  89,996   3.43 (3.31-3.53) -> 2.10 (1.95-2.21)
    fitb_cold  score                9,108 ->   9,108   0.25 (0.24-0.26) -> 0.25 (0.24-0.27)
    all four   evaluation_tables                      13.9 (13.7-14.1) -> 9.9 (9.7-10.8)

``fitb_cold``'s forward scores are one block either way (828 rows, under
``SCORE_BLOCK``). Wall-clock, ``evaluation_tables``: 17.2 (14.3-19.6) -> 13.2
(9.9-14.7) s. What is left of ``evaluation_tables`` is mostly the encoder itself
(positions are now within 3% of the rows' own items and slot tokens), then the pair
model's LightGBM predictions.
"""
from __future__ import annotations

import argparse
import statistics
import time
import types

import numpy as np

from recommender.json_output import dumps  # NaN (an empty split) as null


def _score_rows_in_callers_order(self, rows, slot, cand):
    """The baseline: ``OutfitContext._score_rows`` before rows were sorted by length."""
    import torch

    from recommender.compat import context as C

    nets = self._modules()
    ct, xt = self._items
    slot = np.clip(np.asarray(slot, np.int64), 0, self.n_slots_ - 1)
    out = np.zeros(cand.shape, np.float32)
    torch.set_num_threads(int(self.config.num_threads))
    for s in range(0, len(rows), C.SCORE_BLOCK):
        rs = rows[s:s + C.SCORE_BLOCK]
        ctx, pad = C._padded(rs, min(self.config.max_context,
                                     max((len(r) for r in rs), default=0)))
        with torch.no_grad():
            out[s:s + C.SCORE_BLOCK] = np.mean(
                [self._forward(torch, net, ct, xt, ctx, pad, slot[s:s + C.SCORE_BLOCK],
                               cand[s:s + C.SCORE_BLOCK]).numpy() for net in nets], axis=0)
    return out


def _positions(ctx, forward) -> int:
    """Encoder positions (rows x padded width, slot token included) of one network."""
    seen = []
    real = ctx._forward

    def counting(torch, net, ct, xt, c, pad, *a):
        seen.append(pad.shape[0] * (pad.shape[1] + 1))
        return real(torch, net, ct, xt, c, pad, *a)

    ctx._forward = counting
    try:
        forward()
    finally:
        del ctx._forward
    return sum(seen) // len(ctx.weights_)


def _timed(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def _spread(xs: list[float]) -> dict:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def run(bundle: str, repeat: int, tables: bool) -> list[dict]:
    import copy

    from recommender import report
    from recommender.compat.context import OutfitContext
    from recommender.evaluation.evaluate import index_fitb
    from recommender.evaluation.make_eval import read_fitb

    data = report.load_report_data(bundle)
    model = data.model
    if model is None or getattr(model, "context_", None) is None:
        raise SystemExit(f"{bundle}: the compatibility model has no outfit context model")
    model._context_scores([[0]], [[0]])  # the items' content, read once
    measured = model.context_
    baseline = copy.copy(measured)
    baseline._score_rows = types.MethodType(_score_rows_in_callers_order, baseline)
    subs = model.items_.codes.get("subcategory", np.zeros(len(model.items_), np.int64))
    rows = []
    for key in ("fitb", "fitb_cold"):
        d = index_fitb(read_fitb(data.eval_path(key)), data.index)
        qs, ans = d["questions"], d["answers"]
        for what in ("score_reverse", "score"):
            times = {"baseline": ([], []), "measured": ([], [])}
            outs = {}
            for _ in range(repeat):
                for name, ctx in (("baseline", baseline), ("measured", measured)):
                    w, c, outs[name] = _timed(lambda: getattr(ctx, what)(qs, ans, subs))
                    times[name][0].append(w)
                    times[name][1].append(c)
            row = {"file": key, "scores": what, "questions": len(qs),
                   "identical": bool(np.array_equal(outs["baseline"], outs["measured"])),
                   "max_abs_diff": float(np.abs(outs["baseline"] - outs["measured"]).max())}
            for name, ctx in (("baseline", baseline), ("measured", measured)):
                row[f"{name}_positions"] = _positions(ctx, lambda: getattr(ctx, what)(qs, ans,
                                                                                       subs))
                row[f"{name}_wall_s"] = _spread(times[name][0])
                row[f"{name}_cpu_s"] = _spread(times[name][1])
            rows.append(row)
    if tables:
        times = {"baseline": ([], []), "measured": ([], [])}
        outs = {}
        for _ in range(repeat):
            for name in ("baseline", "measured"):
                saved = OutfitContext._score_rows
                if name == "baseline":
                    OutfitContext._score_rows = _score_rows_in_callers_order
                try:
                    w, c, outs[name] = _timed(lambda: report.evaluation_tables(data))
                finally:
                    OutfitContext._score_rows = saved
                times[name][0].append(w)
                times[name][1].append(c)
        same = all(outs["baseline"][k].equals(outs["measured"][k])
                   for k in ("metrics", "cold_start")) and \
            outs["baseline"]["raw"] == outs["measured"]["raw"]
        row = {"file": "all four", "scores": "evaluation_tables", "identical": same}
        for name in ("baseline", "measured"):
            row[f"{name}_wall_s"] = _spread(times[name][0])
            row[f"{name}_cpu_s"] = _spread(times[name][1])
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--tables", action="store_true",
                   help="also time the model report's evaluation_tables")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = run(args.bundle, args.repeat, args.tables)
    if args.json:
        print(dumps(rows, indent=2))
        return 0
    print(f"{'file':<10}{'scores':<18}{'positions':>20}{'wall s (min/med/max)':>34}"
          f"{'cpu s (median)':>18}{'identical':>11}")
    for r in rows:
        pos = (f"{r['baseline_positions']:,} -> {r['measured_positions']:,}"
               if "baseline_positions" in r else "")
        bw, mw = r["baseline_wall_s"], r["measured_wall_s"]
        wall = (f"{bw['min']:.1f}/{bw['median']:.1f}/{bw['max']:.1f} -> "
                f"{mw['min']:.1f}/{mw['median']:.1f}/{mw['max']:.1f}")
        cpu = f"{r['baseline_cpu_s']['median']:.1f} -> {r['measured_cpu_s']['median']:.1f}"
        print(f"{r['file']:<10}{r['scores']:<18}{pos:>20}{wall:>34}{cpu:>18}"
              f"{str(r['identical']):>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
