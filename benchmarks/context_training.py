"""Training time of the outfit context model, with its baseline in the same run.

Measured: :class:`recommender.compat.context.OutfitContext` as the compatibility stage
trains it: the item tower runs once per distinct item of a batch, and the dropout
masks are cut from random bytes (``ByteDropout``).  Baseline: the same network and
data with the tower run once per reference (padding included) and ``torch``'s own
dropout, as before this benchmark existed.  Both train one network for the same
number of epochs on the bundle's training outfits (no early stop), from the same
seed; the table gives seconds per epoch, the speed-up, and each run's held-out FITB
per epoch (the two draw different dropout masks, so their curves differ by noise,
not by method).

Usage::

    python benchmarks/context_training.py --bundle BUNDLE [--epochs 3] [--threads 2]
        [--max-outfits 5000] [--json]

The bundle needs a compatibility model (its featurizer gives the items' inputs) and
``eval/train_outfits.parquet``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from recommender.json_output import dumps  # NaN (an empty split) as null


def _variants():
    from recommender.compat.context import OutfitContext

    class TorchDropoutPerReference(OutfitContext):
        """The baseline: per-reference item tower, ``torch.nn.Dropout``."""

        @staticmethod
        def _forward(torch, net, ct, xt, ctx, pad, slot, cand):
            ctx_t, cand_t = torch.from_numpy(ctx), torch.from_numpy(cand)
            return net(ct[ctx_t], xt[ctx_t], torch.from_numpy(pad), torch.from_numpy(slot),
                       ct[cand_t], xt[cand_t])

        def _fit_member(self, torch, nn, ContextNet, *args):
            p = self.config.dropout

            class Net(ContextNet):
                def __init__(net, *a):
                    super().__init__(*a)
                    for mod in list(net.modules()):
                        for name, child in list(mod.named_children()):
                            if type(child).__name__ == "ByteDropout":
                                setattr(mod, name, nn.Dropout(p))

            return super()._fit_member(torch, nn, Net, *args)

    return {"baseline (per reference, torch dropout)": TorchDropoutPerReference,
            "mixmatch (per distinct item, byte dropout)": OutfitContext}


def run(bundle: str, epochs: int, threads: int, max_outfits: int, seed: int = 0) -> list[dict]:
    import pandas as pd

    from recommender.bundle import Bundle
    from recommender.compat.context import ContextConfig
    from recommender.compat.model import CompatibilityModel, outfit_index_lists

    b = Bundle.open(bundle)
    model = CompatibilityModel.load(b)
    codes, num, n_values = model.featurizer_.context_inputs(model.items_)
    catalog = pd.read_parquet(b.path("catalog.parquet"))
    outfits = outfit_index_lists(pd.read_parquet(b.path("eval", "train_outfits.parquet"))
                                 .astype(str), catalog)
    subs = model.items_.codes["subcategory"]
    rows = []
    for cls in _variants().values():  # warm-up: torch's first calls are slow
        cls(ContextConfig(epochs=1, members=1, num_threads=threads, seed=seed)).fit(
            codes, n_values, num, outfits[:64], subs)
    for name, cls in _variants().items():
        cfg = ContextConfig(epochs=epochs, patience=epochs + 1, members=1,
                            num_threads=threads, max_outfits=max_outfits, seed=seed)
        t0 = time.perf_counter()
        m = cls(cfg).fit(codes, n_values, num, outfits, subs)
        sec = time.perf_counter() - t0
        rows.append({"variant": name, "outfits": m.n_outfits_, "epochs": epochs,
                     "threads": threads, "seconds": sec, "seconds_per_epoch": sec / epochs,
                     "heldout_fitb": [round(h, 4) for h in m.history_[0]]})
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup_vs_baseline"] = base / r["seconds"]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-outfits", type=int, default=5000)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    rows = run(a.bundle, a.epochs, a.threads, a.max_outfits)
    if a.json:
        print(dumps(rows, indent=1))
        return 0
    print(f"outfit context model, one network, {rows[0]['outfits']} outfits, "
          f"{a.epochs} epochs, {a.threads} threads")
    for r in rows:
        print(f"  {r['variant']:<44} {r['seconds_per_epoch']:7.2f} s/epoch  "
              f"x{r['speedup_vs_baseline']:.2f}  held-out FITB {r['heldout_fitb']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
