"""The pipeline's ``keypoints`` stage: train the heatmap detector on FashionAI-format data.

Reads the source's ``fashionai/keypoints.csv`` (the FashionAI keypoint CSV, in the
folder of the demo catalogue: ``--data DIR`` or ``<bundle>/source``, see
:func:`features.source_files.source_dir`; its ``image_id`` values are image paths
relative to that folder), holds out the products the attributes stage held out
(``models/attributes_split.parquet``, matched on the image file's stem = item id) or,
without it, a seeded 80/10/10 split, trains
:class:`~features.keypoints.heatmap.HeatmapKeypointDetector`, and writes::

    models/keypoints.pt, models/keypoints.json    the detector
    eval/keypoints_truth_test.csv                  held-out ground truth (FashionAI CSV)
    eval/keypoints_pred_test.csv                   the detector's predictions for it

so ``mixmatch evaluate --keypoints-truth eval/keypoints_truth_test.csv
--keypoints-pred eval/keypoints_pred_test.csv`` scores it as a submission would be.

Metrics: NE on val and test, and the NE of the mean shape (per category, from the
training images) as the floor a detector has to beat.

Stage config (``ctx.stage_config("keypoints")``): ``csv`` (another keypoint CSV,
relative to the bundle; default: the source's), ``preset``, ``image_size``,
``epochs``, ``batch_size``, ``lr``, ``time_budget_s``, ``budget_clock``,
``num_threads``, ``flip_test``, ``decoder``.
``time_budget_s = "none"`` (or a JSON / YAML null) trains every epoch, with no budget:
the full build's default is 300 CPU seconds.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.exceptions import InputError
from features.fashionai.io import keypoints_to_arrays, read_keypoints_csv, write_keypoints_csv
from features.files import read_bundle_file
from features.settings import (TIME_BUDGET_WORDS, canonical_settings, check_settings,
                               check_time_budget, parameter_defaults, parameter_kinds,
                               said_of_stage)
from features.source_files import KEYPOINTS_CSV, require_source_file, source_file

TRAIN_VERSION = 2
#: What the detector trains on, in the error saying the CSV is missing.
_WHY = "the keypoints stage trains on a FashionAI keypoint CSV"


def _csv_path(ctx) -> Path:
    """The keypoint CSV: the ``csv`` setting, else the source's (which, for a bundle
    whose demo catalogue is its own ``source/``, is where it always was: the stage's
    inputs, which hash the file's bytes, are unchanged)."""
    return source_file(ctx.bundle, ctx.config, KEYPOINTS_CSV,
                       ctx.stage_config("keypoints").get("csv"))


def _stage_settings(ctx) -> dict:
    """The stage's ``[stages.keypoints]`` table; InputError naming a key that is
    neither ``csv`` nor a HeatmapKeypointDetector parameter the stage leaves to it (it
    was a TypeError traceback from the constructor), or a value of the wrong kind."""
    from features.keypoints.heatmap import HeatmapKeypointDetector

    kinds = {"csv": str, **parameter_kinds(HeatmapKeypointDetector,
                                           leave_out=("random_state", "verbose")),
             "time_budget_s": None}   # a number or "none": check_time_budget
    cfg = check_time_budget("keypoints", check_settings(
        "keypoints", ctx.stage_config("keypoints"), kinds))
    if cfg.get("csv") == "":     # the bundle folder itself: no labels, silently
        raise InputError("[stages.keypoints] csv must name a keypoint CSV file (relative "
                         "to the bundle), got ''", field="stages.keypoints.csv", value="")
    return cfg


def _stage_base(quick: bool) -> dict:
    """The HeatmapKeypointDetector parameters the stage trains with where its table is
    silent."""
    return ({"preset": "tiny", "image_size": (64, 48), "epochs": 2, "batch_size": 16,
             "num_threads": 1} if quick else
            {"preset": "base", "image_size": (160, 112), "epochs": 60, "batch_size": 32,
             # One thread and a CPU-second budget: on the shared 2-core machine a
             # second thread mostly spins (3x the CPU seconds per image), and a
             # wall-clock budget gave 2 to 5 epochs depending on the load (test
             # NE 0.084); 300 CPU seconds are 19 epochs (test NE 0.028, see
             # benchmarks/demo_perception.py).
             "num_threads": 1, "time_budget_s": 300, "budget_clock": "cpu"})


def checked_params(ctx) -> dict:
    """The stage's HeatmapKeypointDetector parameters (less the seed and logger),
    checked by name and kind (:func:`_stage_settings`), then by range as ``fit``
    would check them, so a bad ``[stages.keypoints]`` setting is refused before the
    stage starts (``epochs = 0`` trained nothing and saved an untrained detector)."""
    from features.keypoints.heatmap import HeatmapKeypointDetector

    cfg = _stage_settings(ctx)
    params = _stage_base(bool(ctx.config.get("quick")))
    params.update({k: v for k, v in cfg.items() if k != "csv"})
    with said_of_stage("keypoints"):     # "epochs must be a whole number >= 1": say where
        HeatmapKeypointDetector(**params)._validate_params()
    params["image_size"] = tuple(params["image_size"])   # checked as the user wrote it
    return params


#: Checked before any stage of a build starts (recommender.pipeline).
check_config = checked_params
#: Its inputs hold the catalogue's images (their fingerprint): refused while they are
#: not where the bundle says (its image folder moved away or unmounted), not rerun
#: because they seem gone (recommender.pipeline.images_refusal).
READS_IMAGES = True


def stage_inputs(ctx) -> dict:
    from features.files import file_hash

    checked_params(ctx)   # refused here, before the stage starts
    csv = _csv_path(ctx)
    split = ctx.bundle.path("models", "attributes_split.parquet")
    return {"csv": file_hash(csv) if csv.is_file() else None,
            "split": file_hash(split) if split.is_file() else None,
            "images": ctx.bundle.catalog_images(),
            "quick": bool(ctx.config.get("quick")), "seed": ctx.config.get("seed", 0),
            "stage": recorded_settings(ctx), "version": TRAIN_VERSION}


def recorded_settings(ctx) -> dict:
    """The stage's ``[stages.keypoints]`` table as its inputs record it: one spelling
    for each setting (:func:`features.settings.canonical_settings`), so that
    ``sigma = 2`` or ``2.0``, ``time_budget_s = "none"`` or null, and a key stated at
    the value the stage uses without it (``decoder = "local"``, the default ``csv``)
    do not retrain the detector. A table already spelled so is recorded as it is
    (``stage_inputs`` recorded the table as written before)."""
    from features.keypoints.heatmap import HeatmapKeypointDetector

    defaults = {**parameter_defaults(HeatmapKeypointDetector,
                                     leave_out=("random_state", "verbose")),
                **_stage_base(bool(ctx.config.get("quick"))), "csv": "source/" + KEYPOINTS_CSV}
    return canonical_settings(ctx.stage_config("keypoints"), defaults,
                              keep=ctx.source_defaults("keypoints"),
                              words=TIME_BUDGET_WORDS)


def mean_shape_predict(xy: np.ndarray, vis: np.ndarray, cats: np.ndarray,
                       test_cats: np.ndarray) -> np.ndarray:
    """Baseline: each category's mean training position of every point."""
    out = np.full((len(test_cats), xy.shape[1], 2), -1.0)
    for c in np.unique(test_cats):
        m = cats == c
        w = (vis[m] >= 0)[..., None]
        mean = (xy[m] * w).sum(0) / np.maximum(w.sum(0), 1)
        out[test_cats == c] = mean
    return out


def _ne(truth: pd.DataFrame, pred: pd.DataFrame) -> float:
    """NE via features.fashionai.metrics when it is present, else the local copy."""
    try:
        from features.fashionai.metrics import normalized_error as ne_frames
    except ImportError:
        from features.keypoints.heatmap import normalized_error

        t_xy, t_vis = keypoints_to_arrays(truth)
        p_xy, _ = keypoints_to_arrays(pred)
        return normalized_error(t_xy, t_vis, p_xy, truth["image_category"].tolist())[0]
    return float(ne_frames(truth, pred)["ne"])


def run_stage(ctx) -> dict:
    """Train the detector on the bundle's FashionAI keypoint CSV (see module doc)."""
    from features.attributes.data import grouped_split
    from features.fashionai.io import keypoints_from_arrays
    from features.keypoints.heatmap import HeatmapKeypointDetector

    t0 = time.perf_counter()
    csv = require_source_file(ctx.bundle, ctx.config, KEYPOINTS_CSV, stage="keypoints",
                              key="csv", why=_WHY,
                              setting=ctx.stage_config("keypoints").get("csv"))
    df = read_keypoints_csv(csv)
    root = csv.parent.parent if csv.parent.name == "fashionai" else csv.parent
    paths = [str(root / p) for p in df["image_id"]]
    ok = np.array([Path(p).is_file() for p in paths])
    df, paths = df[ok].reset_index(drop=True), [p for p, k in zip(paths, ok) if k]
    stems = df["image_id"].map(lambda s: Path(s).stem)
    seed = int(ctx.config.get("seed", 0) or 0)
    split = grouped_split(stems, seed=seed, group_sep=None).to_numpy()
    sp_path = ctx.bundle.path("models", "attributes_split.parquet")
    if sp_path.is_file():
        known = read_bundle_file(sp_path, pd.read_parquet).set_index("item_id")["split"]
        split = np.array([known.get(s, d) for s, d in zip(stems, split)])
    xy, vis = keypoints_to_arrays(df)
    cats = df["image_category"].to_numpy()
    tr, va, te = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    params = checked_params(ctx)
    ctx.log(f"[keypoints] {len(df)} labelled images; train/val/test = "
            f"{len(tr)}/{len(va)}/{len(te)}")
    det = HeatmapKeypointDetector(random_state=seed, verbose=ctx.log, **params)
    eval_set = ([paths[i] for i in va], xy[va], vis[va], list(cats[va])) if len(va) else None
    det.fit([paths[i] for i in tr], xy[tr], vis[tr], eval_set=eval_set)
    det.save(ctx.bundle.path("models"), "keypoints")
    outputs = ["models/keypoints.pt", "models/keypoints.json"]
    metrics = {"n_train": int(len(tr)), "n_val": int(len(va)), "n_test": int(len(te)),
               "epochs": len(det.history_)}
    for name, idx in (("val", va), ("test", te)):
        if not len(idx):
            continue
        truth = df.iloc[idx].reset_index(drop=True)
        pred = det.predict_frame([paths[i] for i in idx], truth["image_id"],
                                 truth["image_category"])
        base = keypoints_from_arrays(truth["image_id"], truth["image_category"],
                                     mean_shape_predict(xy[tr], vis[tr], cats[tr], cats[idx]),
                                     vis[idx])
        metrics[f"{name}_ne"] = _ne(truth, pred)
        metrics[f"{name}_ne_mean_shape"] = _ne(truth, base)
        if name == "test":
            (ctx.bundle.path("eval")).mkdir(parents=True, exist_ok=True)
            write_keypoints_csv(truth, ctx.bundle.path("eval", "keypoints_truth_test.csv"))
            write_keypoints_csv(pred, ctx.bundle.path("eval", "keypoints_pred_test.csv"))
            outputs += ["eval/keypoints_truth_test.csv", "eval/keypoints_pred_test.csv"]
        ctx.log(f"[keypoints] {name} NE {metrics[f'{name}_ne']:.4f} (mean shape "
                f"{metrics[f'{name}_ne_mean_shape']:.4f})")
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    return {"outputs": outputs, "metrics": metrics}
