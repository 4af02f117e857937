"""Scores of the attribute network: per-head accuracy and macro-F1, FashionAI mAP.

``mixmatch evaluate --bundle B --attributes [--json]`` opens the bundle
(:func:`recommender.evaluation.evaluate.evaluate_attributes`) and calls
:func:`evaluate_bundle`, which scores the bundle's model on its held-out products
(``split == "test"`` in ``models/attributes_split.parquet``).

FashionAI heads follow the challenge on "maybe" (``m``) labels: a prediction that
lands on a class labelled ``m`` for that image is neither a hit nor an error.  It is
left out of accuracy's denominator, of macro-F1 and of the ranking in AP.

FashionAI mAP: :func:`features.fashionai.metrics.attribute_map` when that module is
present, else :func:`fashionai_ap` here, which follows the same published definition:
per task, take each row's top class and its probability; for every threshold (each
distinct top probability) the rows at or above it are output, a top class labelled
``y`` is correct, ``n`` wrong, ``m`` not counted; AP is the mean of the precisions
over the thresholds (thresholds with nothing counted are left out); mAP is the mean
AP over tasks.

Examples
--------
>>> import numpy as np
>>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
>>> fashionai_ap(p, np.array([0, 1, 1]), np.zeros((3, 2), bool))   # (1 + 1 + 2/3) / 3
0.8888888888888888
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.attributes.taxonomy import Taxonomy
from features.exceptions import BundleError
from features.fashionai.schema import ATTRIBUTE_TASKS


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-averaged F1 over the union of classes in truth and prediction (sklearn's
    ``f1_score(average="macro")``)."""
    from sklearn.metrics import f1_score

    if len(y_true) == 0:
        return float("nan")
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def fashionai_ap(probs: np.ndarray, y: np.ndarray, maybe: np.ndarray) -> float:
    """AP of one FashionAI task (see module doc). ``y`` (N,) class of the ``y`` label,
    ``maybe`` (N, C) bool."""
    n = len(y)
    if n == 0:
        return float("nan")
    pred = probs.argmax(1)
    conf = probs[np.arange(n), pred]
    order = np.argsort(-conf, kind="stable")
    conf = conf[order]
    hit = (pred == y)[order]
    skip = maybe[np.arange(n), pred][order] & ~hit
    correct = np.cumsum(hit)
    counted = np.cumsum(~skip)
    last = np.r_[conf[1:] != conf[:-1], True]
    c, k = correct[last], counted[last]
    return float(np.mean(c[k > 0] / k[k > 0])) if (k > 0).any() else float("nan")


def _label_strings(y: np.ndarray, maybe: np.ndarray) -> list[str]:
    out = []
    for t, m in zip(y, maybe):
        chars = np.where(m, "m", "n").astype(object)
        chars[t] = "y"
        out.append("".join(chars))
    return out


def fashionai_map(probs: dict[str, np.ndarray], ys: dict[str, np.ndarray],
                  maybes: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """mAP and per-task AP, through :mod:`features.fashionai.metrics` when present."""
    try:
        from features.fashionai.metrics import attribute_ap
    except ImportError:
        attribute_ap = None
    aps = {}
    for h in probs:
        if attribute_ap is not None:
            try:
                aps[h] = float(attribute_ap(_label_strings(ys[h], maybes[h]), probs[h]))
                continue
            except ValueError:      # every top class on an 'm' label: AP undefined
                aps[h] = float("nan")
                continue
        aps[h] = fashionai_ap(probs[h], ys[h], maybes[h])
    vals = [v for v in aps.values() if not np.isnan(v)]
    return (float(np.mean(vals)) if vals else float("nan")), aps


def head_metrics(taxonomy: Taxonomy, probs: dict[str, np.ndarray], targets: np.ndarray,
                 maybe: np.ndarray | None = None) -> dict:
    """Accuracy, macro-F1 and n per head over the rows labelled for it; FashionAI mAP
    over the FashionAI heads when there are any.

    ``targets`` is ``(N, H)`` from :meth:`Taxonomy.encode` (-1 missing, -2 a class the
    model does not know: counted, always wrong).
    """
    off = taxonomy.offsets()
    if maybe is None:
        maybe = np.zeros((len(targets), int(off[-1])), bool)
    heads = {}
    fa_p, fa_y, fa_m = {}, {}, {}
    for j, h in enumerate(taxonomy.names):
        t = targets[:, j]
        rows = np.flatnonzero(t != -1)
        p = probs[h][rows]
        mm = maybe[rows, off[j]:off[j + 1]]
        pred = p.argmax(1) if len(rows) else np.zeros(0, int)
        t = t[rows]
        counted = ~mm[np.arange(len(rows)), pred] | (pred == t) if len(rows) else \
            np.zeros(0, bool)
        tc, pc = t[counted], pred[counted]
        heads[h] = {"accuracy": float((tc == pc).mean()) if len(tc) else float("nan"),
                    "macro_f1": macro_f1(tc, pc), "n": int(len(tc))}
        if h in ATTRIBUTE_TASKS and len(rows):
            known = t >= 0
            if known.any():
                fa_p[h], fa_y[h], fa_m[h] = p[known], t[known], mm[known]
    out: dict = {"heads": heads}
    if fa_p:
        out["fashionai_map"], out["fashionai_ap"] = fashionai_map(fa_p, fa_y, fa_m)
    return out


def evaluate_bundle(bundle, split: str = "test") -> dict:
    """Score the bundle's attribute model on its held-out products.

    ``bundle``: an open bundle (what a stage gets as ``ctx.bundle``: ``path(...)``
    and ``image_root``), opened by the caller: ``features`` does not import
    ``recommender``, where :class:`~recommender.bundle.Bundle` lives.

    Returns ``{"heads": {field: {"accuracy", "macro_f1", "n"}}, "split": split,
    "n_items": int}`` (garment-level heads pooled over colour variants when the
    catalogue has ``model_code``; see :func:`grouped_head_metrics`, which also adds the
    per-image figures under ``"per_image"``) plus ``"fashionai_map"`` (and per-task
    ``"fashionai_ap"``) when heads are FashionAI tasks, and ``"descriptor_fusion"``
    (``{head: weight}`` of the heads fused with full-resolution descriptors; empty when
    none are).

    Examples
    --------
    >>> from recommender.bundle import Bundle   # doctest: +SKIP
    >>> evaluate_bundle(Bundle.open("bundles/demo"))  # doctest: +SKIP
    {'heads': {'subcategory': {'accuracy': 0.97, 'macro_f1': 0.95, 'n': 30}, ...}
    """
    from features.attributes.data import load_images
    from features.attributes.estimator import AttributeModel
    from features.attributes.train import load_training_table

    split_path = bundle.path("models", "attributes_split.parquet")
    if not split_path.is_file():
        raise BundleError(f"{split_path} missing: run the attributes stage first")
    model = AttributeModel.load(bundle.path("models"), "attributes")
    cat, heads = load_training_table(bundle, list(model.taxonomy_.names))
    sp = pd.read_parquet(split_path)
    test_ids = set(sp.loc[sp["split"] == split, "item_id"].astype(str))
    sub = cat[cat["item_id"].astype(str).isin(test_ids)].reset_index(drop=True)
    images, ok = load_images(sub["abs_path"].tolist(), model.config_.image_size,
                             cache=bundle.path("cache"), crop=model.crop,
                             workers=int(model.num_threads))
    sub = sub[ok].reset_index(drop=True)
    regions, regions_from = None, "none"
    if model.region_kind == "detail":
        regions = model.region_inputs(sub["abs_path"].tolist())
        regions_from = "detail crops"
    elif model.uses_regions:
        # The keypoints the product uses (features stage: detector or silhouette),
        # else the source's labelled ones.
        from features.attributes.train import keypoints_by_item, label_keypoints_csv

        for csv, what in ((bundle.path("features", "keypoints.csv"),
                           "features stage keypoints"),
                          (label_keypoints_csv(bundle), "label keypoints")):
            kp = keypoints_by_item(csv, sub["item_id"])
            if kp is not None and (kp[1] >= 0).any():
                regions = model.region_inputs(sub["abs_path"].tolist(), *kp)
                regions_from = what
                break
    descriptors = None
    if model.fused_heads:
        from features.attributes.descriptors import descriptor_table

        descriptors = descriptor_table(sub["abs_path"].tolist(), cache=bundle.path("cache"),
                                       workers=int(model.num_threads))[0]
    probs = model.predict_proba(np.asarray(images[ok]), regions, descriptors)
    targets, maybe = model.taxonomy_.encode(sub[list(model.taxonomy_.names)], unknown="keep")
    train_ids = set(sp.loc[sp["split"] == "train", "item_id"].astype(str))
    train = cat[cat["item_id"].astype(str).isin(train_ids)]
    out = grouped_head_metrics(model.taxonomy_, probs, targets, maybe, sub, train)
    out["split"] = split
    out["n_items"] = int(len(sub))
    out["regions_from"] = regions_from
    # Which heads fuse the full-resolution descriptors, with their weights ({source
    # head: weight} for a head that takes a fused head's evidence).
    out["descriptor_fusion"] = model.fusion_.weights_ if model.fused_heads else {}
    return out


def grouped_head_metrics(taxonomy: Taxonomy, probs: dict[str, np.ndarray],
                         targets: np.ndarray, maybe: np.ndarray, rows: pd.DataFrame,
                         train: pd.DataFrame) -> dict:
    """:func:`head_metrics` of the predictions as the product makes them: garment-level
    heads pooled over colour variants (:mod:`features.attributes.grouping`) when the
    catalogue has the group column.  ``"heads"`` holds those figures; the network's
    per-image figures are kept beside them in ``"per_image"`` with the pooled heads in
    ``"pooled_heads"``.  ``rows`` are the scored catalogue rows (aligned with
    ``probs``), ``train`` the training rows the garment-level heads are read from.
    """
    from features.attributes.grouping import (GROUP_COLUMN, garment_level_heads,
                                              pool_probabilities)

    raw = head_metrics(taxonomy, probs, targets, maybe)
    if GROUP_COLUMN not in rows.columns or GROUP_COLUMN not in train.columns:
        return raw
    names = list(taxonomy.names)
    pooled_heads = garment_level_heads(train[names], train[GROUP_COLUMN].tolist())
    if not pooled_heads:
        return raw
    out = head_metrics(taxonomy, pool_probabilities(probs, rows[GROUP_COLUMN].tolist(),
                                                    pooled_heads), targets, maybe)
    out["per_image"] = raw
    out["pooled_heads"] = pooled_heads
    out["group_column"] = GROUP_COLUMN
    return out
