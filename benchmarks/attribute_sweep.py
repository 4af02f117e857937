"""Attribute-network variants side by side on a bundle's catalogue (the sweeps behind
``benchmarks/mango_attributes.toml``).

Each variant is a whole-image size, an optional garment-centred detail crop
(``features.attributes.regions.detail_box``) and a number of epochs; the rest is the
MANGO recipe (small preset, sampling mix 0.3, label smoothing 0.05, jitter 0.02). The
split is the attributes stage's (products grouped by model code, seeded), the figures
its own: per-head accuracy and macro-F1 on the validation and test products, pooled
over colour variants. Images are decoded once (in parallel) and every variant trains
in its own process, so several share one GPU::

    mixmatch build --source mango --out /tmp/mb --stages ingest,split
    python benchmarks/attribute_sweep.py --bundle /tmp/mb --device cuda \\
        --variants b0=160x112:35 c64=160x112+64:28 s128c64=128x92+64:39

``--set KEY=VALUE`` changes an AttributeModel setting of every variant (over the
recipe's, e.g. ``--set recolour=0.5``).

A variant may train on a share of the training models (``@SHARE``, seeded, nested:
colour variants stay together) for a learning curve at a fixed number of epochs::

    python benchmarks/attribute_sweep.py --bundle /tmp/mb --device cpu --parallel 1 \\
        --variants q25=160x112:39@0.25 q50=160x112:39@0.5 q100=160x112:39

Epochs are what a variant gets in ~28 CPU minutes here (its CPU step time against the
160x112 network's, which ran 35 epochs), so variants compare at equal CPU cost even
when a GPU trains them. On a CPU, pass ``--device cpu --parallel 1``. Results go to
``--out`` (JSON), one line per variant to stdout.

The second sweep in mango_attributes.toml ran 2026-11-27 on one H100, five variants in
parallel, 430 s in all, from a first version of this script (the same recipe, split
and metrics) that read the MANGO photos re-encoded as WebP (quality 90) to fit the
GPU machine's 64 MiB transfer; the CPU re-run of its validation winner is in the toml.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADS = ("subcategory", "product_type", "colour", "material")
RECIPE = {"preset": "small", "embed_dim": 256, "batch_size": 64, "num_threads": 2,
          "sampling_mix": 0.3, "label_smoothing": 0.05, "jitter": 0.02}


def parse_variant(text: str) -> dict:
    """``name=HxW[+CROP]:EPOCHS[@SHARE]`` -> dict (``b0=160x112:35``,
    ``c64=160x112+64:28``, ``q50=160x112:39@0.5``: half the training models).

    >>> parse_variant("q50=160x112:39@0.5")["share"]
    0.5
    >>> parse_variant("b0=160x112:35@1.5")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: variant 'b0=160x112:35@1.5': share 1.5 is not in (0, 1]
    """
    try:
        name, rest = text.split("=", 1)
        rest, share = rest.split("@") if "@" in rest else (rest, "1")
        size, epochs = rest.split(":")
        crop = None
        if "+" in size:
            size, crop = size.split("+")
        h, w = (int(v) for v in size.split("x"))
        v = {"name": name, "size": (h, w), "crop": int(crop) if crop else None,
             "epochs": int(epochs), "share": float(share)}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"variant {text!r} is not name=HxW[+CROP]:EPOCHS[@SHARE] (e.g. "
            f"c64=160x112+64:28, q50=160x112:39@0.5)") from exc
    if not 0.0 < v["share"] <= 1.0:
        raise argparse.ArgumentTypeError(
            f"variant {text!r}: share {v['share']:g} is not in (0, 1]")
    return v


def train_share(table, train_idx: np.ndarray, share: float, seed: int) -> np.ndarray:
    """The rows of ``train_idx`` of a seeded ``share`` of its models (``model_code``,
    else each row its own), so colour variants of a garment stay together: the
    training set of a learning curve, nested (a smaller share keeps a subset of a
    larger one's models).

    >>> import pandas as pd
    >>> t = pd.DataFrame({"model_code": ["a", "a", "b", "c", "d"]})
    >>> rows = train_share(t, np.arange(5), 0.5, seed=0)
    >>> len(set(t["model_code"].iloc[rows])), len(rows) in (2, 3)
    (2, True)
    >>> bool(set(rows) <= set(train_share(t, np.arange(5), 0.75, seed=0)))
    True
    """
    if share >= 1.0:
        return train_idx
    keys = (table["model_code"].iloc[train_idx].astype(str).to_numpy()
            if "model_code" in table.columns else train_idx.astype(str))
    models = np.unique(keys)
    order = np.random.default_rng(seed).permutation(len(models))
    kept = models[order[:max(1, int(round(share * len(models))))]]
    return train_idx[np.isin(keys, kept)]


def _decode(job):
    from features.attributes.data import letterbox, load_image
    from features.attributes.regions import crop, detail_box

    path, sizes, crops = job
    try:
        rgb = load_image(path)
    except (OSError, ValueError):
        return None
    out = {s: letterbox(rgb, s) for s in sizes}
    box = detail_box(rgb)
    for c in crops:
        out[c] = (crop(rgb, box, (c, c)) if box else np.full((c, c, 3), 128, np.uint8),
                  box is not None)
    return out


def prepare(args, variants, work: Path) -> None:
    """Decode every image at every size and crop once; write the arrays and the table."""
    import pandas as pd

    from features.attributes.data import grouped_split
    from features.attributes.train import load_training_table
    from recommender.bundle import Bundle

    b = Bundle.open(args.bundle)
    cat, heads = load_training_table(b, list(args.heads))
    sep = "-" if b.manifest.get("config", {}).get("source") == "mango" else None
    cat["split"] = grouped_split(cat["item_id"], seed=args.seed, group_sep=sep).to_numpy()
    if args.limit:
        cat = cat.groupby("split").head(args.limit).reset_index(drop=True)
    sizes = sorted({v["size"] for v in variants})
    crops = sorted({v["crop"] for v in variants if v["crop"]})
    with ProcessPoolExecutor(args.decode_workers) as ex:
        rows = list(ex.map(_decode, [(p, sizes, crops) for p in cat["abs_path"]],
                           chunksize=64))
    ok = np.array([r is not None for r in rows])
    cat, rows = cat[ok].reset_index(drop=True), [r for r in rows if r is not None]
    for s in sizes:
        np.save(work / f"x_{s[0]}x{s[1]}.npy", np.stack([r[s] for r in rows]))
    for c in crops:
        np.save(work / f"crop_{c}.npy", np.stack([r[c][0] for r in rows]))
        np.save(work / f"crop_{c}_has.npy", np.array([r[c][1] for r in rows]))
    keep = ["item_id", "split", *heads] + (["model_code"] if "model_code" in cat else [])
    pd.DataFrame(cat[keep]).to_parquet(work / "table.parquet", index=False)
    print(f"decoded {len(cat)} images ({int((~ok).sum())} unreadable) at {sizes}, "
          f"crops {crops}", flush=True)


def run_variant(args, v: dict, work: Path) -> dict:
    """Train one variant on the prepared arrays and score val and test."""
    import pandas as pd

    from features.attributes.estimator import AttributeModel
    from features.attributes.evaluate import grouped_head_metrics
    from features.attributes.regions import GEOMETRY_DIM, RegionInputs
    from features.attributes.taxonomy import Taxonomy

    table = pd.read_parquet(work / "table.parquet")
    heads = [h for h in args.heads if h in table.columns]
    h, w = v["size"]
    x = np.load(work / f"x_{h}x{w}.npy")
    idx = {s: np.flatnonzero(table["split"].to_numpy() == s) for s in ("train", "val", "test")}

    def reg(i):
        if not v["crop"]:
            return None
        c, has = (np.load(work / f"crop_{v['crop']}{k}.npy", mmap_mode="r")
                  for k in ("", "_has"))
        return RegionInputs(np.asarray(c[i]), np.zeros((len(i), GEOMETRY_DIM), np.float32),
                            np.asarray(has[i]), "detail")

    labels = table[heads]
    tax = Taxonomy.from_labels(labels, heads)
    tr, va = train_share(table, idx["train"], v.get("share", 1.0), args.seed), idx["val"]
    settings = dict(args.set)
    model = AttributeModel(tax, image_size=(h, w), epochs=v["epochs"], device=args.device,
                           random_state=args.seed, verbose=True,
                           **{**RECIPE, **settings})
    t0 = time.perf_counter()
    model.fit(x[tr], labels.iloc[tr], eval_set=(x[va], labels.iloc[va], reg(va)),
              regions=reg(tr))
    res = {"variant": v, "fit_seconds": round(time.perf_counter() - t0, 1),
           "device": args.device, "epochs_run": len(model.history_),
           "n_train": int(len(tr)), "settings": settings}
    for split in ("val", "test"):
        i = idx[split]
        if not len(i):
            continue
        probs = model.predict_proba(x[i], reg(i))
        tg, mb = tax.encode(labels.iloc[i].reset_index(drop=True), unknown="keep")
        res[split] = grouped_head_metrics(tax, probs, tg, mb, table.iloc[i], table.iloc[tr])
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", required=True, help="a bundle after the ingest stage")
    p.add_argument("--variants", nargs="+", type=parse_variant,
                   default=[parse_variant("b0=160x112:35")])
    p.add_argument("--heads", nargs="+", default=list(HEADS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--parallel", type=int, default=None,
                   help="variants training at once (default: all on a GPU, 1 on a CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None,
                   help="at most this many products per split (a smoke run)")
    p.add_argument("--decode-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--workdir", default="/tmp/mixmatch_attribute_sweep")
    p.add_argument("--out", default=None, help="JSON results (default: <workdir>/sweep.json)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", type=parse_setting,
                   help="an AttributeModel setting for every variant, over the recipe's "
                        "(a JSON value, else a string): --set recolour=0.5")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from features.attributes.estimator import AttributeModel

    unknown = sorted({k for k, _ in args.set} - set(AttributeModel._PARAMS))
    if unknown:   # else every variant's child failed on it, each with a traceback
        p.error(f"--set {unknown[0]!r} is not an AttributeModel setting")
    work = Path(args.workdir)
    by_name = {v["name"]: v for v in args.variants}
    if args.one:  # one variant, in this process
        res = run_variant(args, by_name[args.one], work)
        (work / f"res_{args.one}.json").write_text(json.dumps(res, default=float))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prepare(args, args.variants, work)
    parallel = args.parallel or (len(by_name) if args.device.startswith("cuda") else 1)
    base = [sys.executable, __file__, "--bundle", args.bundle, "--device", args.device,
            "--seed", str(args.seed), "--workdir", str(work), "--heads", *args.heads,
            "--set", *argv_settings(args.set),
            "--variants", *argv_variants(args.variants)]
    pending, running, results = list(by_name), {}, {}
    while pending or running:
        while pending and len(running) < parallel:
            name = pending.pop(0)
            with open(work / f"log_{name}.txt", "w") as log:  # the child keeps its copy
                running[name] = subprocess.Popen(base + ["--one", name], stdout=log,
                                                 stderr=subprocess.STDOUT,
                                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                f = work / f"res_{name}.json"
                results[name] = (json.loads(f.read_text()) if proc.returncode == 0
                                 and f.is_file() else {"failed": proc.returncode,
                                                       "log": str(work / f"log_{name}.txt")})
                r = results[name]
                line = " ".join(
                    f"{s} " + " / ".join(f"{r[s]['heads'][h]['accuracy']:.3f}"
                                         for h in args.heads if h in r[s]["heads"])
                    for s in ("val", "test") if s in r) or f"FAILED, see {r.get('log')}"
                print(f"{name:<10} {line}", flush=True)
        time.sleep(2)
    out = Path(args.out) if args.out else work / "sweep.json"
    out.write_text(json.dumps({"heads": args.heads, "seconds": round(time.perf_counter() - t0, 1),
                               "results": results}, indent=1, default=float))
    print(f"accuracy per head ({', '.join(args.heads)}), pooled over colour variants; "
          f"{out}")
    return 0


def parse_setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(key, value)``, the value read as JSON, else kept a string.

    >>> parse_setting("recolour=0.5"), parse_setting("optimizer=sgd")
    (('recolour', 0.5), ('optimizer', 'sgd'))
    >>> parse_setting("recolour")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: setting 'recolour' is not KEY=VALUE (e.g. recolour=0.5)
    """
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(
            f"setting {text!r} is not KEY=VALUE (e.g. recolour=0.5)")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def argv_settings(settings) -> list[str]:
    """``(key, value)`` pairs back to ``KEY=<JSON>`` arguments for a child process."""
    return [f"{k}={json.dumps(v)}" for k, v in settings]


def argv_variants(variants) -> list[str]:
    return [f"{v['name']}={v['size'][0]}x{v['size'][1]}" + (f"+{v['crop']}" if v["crop"] else "")
            + f":{v['epochs']}" + (f"@{v['share']}" if v.get("share", 1.0) < 1.0 else "")
            for v in variants]


if __name__ == "__main__":
    sys.exit(main())
