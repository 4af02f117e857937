"""The FashionAI challenge metrics: keypoint NE and attribute mAP, as the challenge defined them.

Keypoint normalised error (NE)
------------------------------
For every image ``i`` of the ground truth and every keypoint ``k`` that is visible
in the ground truth (``v == 1``)::

    e_ik = || pred_ik - truth_ik ||_2 / s_i

where ``s_i`` is the ground-truth distance between ``armpit_left`` and
``armpit_right`` (blouse, outwear, dress) or between ``waistband_left`` and
``waistband_right`` (skirt, trousers) of that image. NE is the mean of ``e_ik`` over
all such keypoints of all images (a mean over keypoints, not over images).

Choices this module makes where the challenge text is silent, each checked on the
real ``keypoints/train.csv``:

* The normaliser uses the two ground-truth points whenever both are annotated
  (``v`` of 0 or 1): occluded points carry real coordinates in the published files
  (all 92,796 occluded cells of train.csv have non-negative coordinates), so an
  occluded armpit still gives a distance. An image is *skipped, and reported* when
  either point is absent (``v == -1``, written ``-1_-1_-1``) or the distance is 0.
  In the real train.csv this happens for 275 of 63,765 images (0.43%): blouse 61,
  outwear 63, dress 53, skirt 40, trousers 58; no annotated pair has distance 0.
  Another 7 images have a normaliser but no visible point, so they add nothing:
  the real file scores 63,483 images.
* Images are matched by ``image_id``; the category is the ground truth's. A
  ground-truth image without a prediction row is an error naming the id(s); a
  duplicated id on either side is an error too. Prediction rows for images absent
  from the ground truth are ignored (they are counted in ``n_extra_predictions``).
* A prediction's own visibility flag is not used: a predicted point written as
  ``-1_-1_-1`` for a point visible in the truth is scored at (-1, -1), as a
  submission with that cell would have been.

Attribute mAP
-------------
The challenge's own definition (the Tianchi FashionAI "Attributes Recognition of
Apparel" evaluation text), per attribute task (``AttrKey``):

1. For every row take the largest predicted probability ``MaxAttrValueProb`` and its
   class ``MaxAttrValue``.
2. For a threshold ``ProbThreshold``: rows with ``MaxAttrValueProb < ProbThreshold``
   are not output (``BLOCK_COUNT``). For the others, the ground-truth character at
   ``MaxAttrValue`` decides: ``'y'`` is correct (``PRED_COUNT += 1``,
   ``PRED_CORRECT_COUNT += 1``), ``'m'`` (maybe) is *not counted at all*, ``'n'`` is
   wrong (``PRED_COUNT += 1``). Precision ``P = PRED_CORRECT_COUNT / PRED_COUNT``.
3. AP is the mean of ``P`` over all thresholds that leave ``BLOCK_COUNT`` in
   ``[0, GT_COUNT)``, i.e. over every distinct value of ``MaxAttrValueProb`` (a
   threshold between two such values gives the same counts as the next value up).
4. mAP is the plain mean of the tasks' APs.

The challenge also showed ``BasicPrecision``: ``P`` at ``ProbThreshold = 0`` (every
row output), averaged over tasks. Note this AP is *not* the area under a
precision-recall curve: it averages precision at every cut of the ranking by
confidence, wrong and right rows alike. One case the text leaves open: a threshold
at which every output row is an ``'m'`` row has ``PRED_COUNT == 0``; that threshold
is left out of the mean (it has no precision), and a task whose every threshold is
like that raises :class:`~features.exceptions.InputError`. Ties in a row's
probabilities pick the first class, as ``numpy.argmax`` does.

Examples
--------
>>> import numpy as np
>>> # row 2's top class is an 'm': no precision at 0.9; P at 0.8 is 0/1, at 0.6 1/2
>>> attribute_ap(["yn", "mn", "ny"], np.array([[0.6, 0.4], [0.9, 0.1], [0.8, 0.2]]))
0.25
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from features.exceptions import InputError, SchemaError
from features.fashionai.schema import (KEYPOINT_INDEX, KEYPOINT_NAMES, LABEL_MAYBE,
                                       LABEL_NO, LABEL_YES, NORMALISING_PAIR, VISIBLE,
                                       ABSENT)

__all__ = ["normalized_error", "evaluate_keypoint_files", "attribute_ap",
           "basic_precision", "attribute_map", "attribute_map_report"]


# -- keypoints ---------------------------------------------------------------------------
def _xy_vis(df: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
    cols = [f"{n}_{k}" for n in KEYPOINT_NAMES for k in "xyv"]
    missing = [c for c in ("image_id", "image_category", *cols) if c not in df.columns]
    if missing:
        raise SchemaError(f"{what} keypoint table lacks column(s) {', '.join(missing[:5])}"
                          + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
                          field=missing[0])
    arr = df[cols].to_numpy(dtype=float).reshape(len(df), len(KEYPOINT_NAMES), 3)
    return arr[:, :, :2], arr[:, :, 2].astype(int)


def _duplicates(ids: list[str], what: str) -> None:
    if len(set(ids)) == len(ids):
        return
    seen: set[str] = set()
    dup = [i for i in ids if i in seen or seen.add(i)]
    shown = ", ".join(list(dict.fromkeys(dup))[:5])
    raise InputError(f"{what} has {len(dup)} duplicated image_id row(s), e.g. {shown}",
                     field="image_id", value=dup[0])


def _finite(xy: np.ndarray, used: np.ndarray, ids: list[str], what: str) -> None:
    """Refuse NaN or infinite coordinates where they would enter the score (the
    mean would silently become NaN)."""
    bad = used & ~np.isfinite(xy).all(axis=-1)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(f"{what} has {int(bad.sum())} keypoint(s) with non-finite "
                         f"coordinates, e.g. image {ids[i]!r} {KEYPOINT_NAMES[j]} "
                         f"{tuple(xy[i, j].tolist())}", field=KEYPOINT_NAMES[j],
                         value=ids[i])


def normalized_error(truth_df: pd.DataFrame, pred_df: pd.DataFrame) -> dict:
    """FashionAI keypoint NE of ``pred_df`` against ``truth_df`` (see the module doc).

    Both tables are in the wide form of :func:`features.fashionai.io.read_keypoints_csv`.

    Returns
    -------
    dict
        ``ne`` (mean normalised error), ``n_keypoints`` (scored points),
        ``n_images`` (images scored), ``per_category`` (``{cat: {"ne",
        "n_keypoints", "n_images"}}``), ``n_skipped`` and ``skipped`` (list of
        ``{"image_id", "image_category", "reason"}`` for images whose normaliser is
        not computable), ``n_extra_predictions``.

    Raises
    ------
    InputError
        A ground-truth image has no prediction (the ids are named), an id is
        duplicated, an unknown category appears, a scored or normalising point has
        a NaN or infinite coordinate, or nothing can be scored.

    Examples
    --------
    >>> from features.fashionai.io import keypoints_from_arrays
    >>> xy = np.full((1, 24, 2), -1.0); vis = np.full((1, 24), -1)
    >>> xy[0, 15], xy[0, 16], xy[0, 17] = (0, 0), (10, 0), (0, 20)   # waistbands, hem
    >>> vis[0, [15, 16, 17]] = 1
    >>> truth = keypoints_from_arrays(["a.jpg"], ["skirt"], xy, vis)
    >>> xy2 = xy.copy(); xy2[0, 17] = (3, 24)                          # hem off by 5
    >>> pred = keypoints_from_arrays(["a.jpg"], ["skirt"], xy2, vis)
    >>> normalized_error(truth, pred)["ne"]   # (0 + 0 + 5/10) / 3
    0.16666666666666666
    """
    t_xy, t_vis = _xy_vis(truth_df, "ground-truth")
    p_xy_all, _ = _xy_vis(pred_df, "prediction")
    # Plain Python lists and a dict: pandas' isin on Arrow strings is ~50x slower here.
    t_ids = [str(i) for i in truth_df["image_id"].tolist()]
    p_ids = [str(i) for i in pred_df["image_id"].tolist()]
    _duplicates(t_ids, "the ground truth")
    _duplicates(p_ids, "the prediction table")
    pos = {i: k for k, i in enumerate(p_ids)}
    missing = [i for i in t_ids if i not in pos]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(f"no prediction for {len(missing)} ground-truth image(s): "
                         f"{', '.join(missing[:5])}{more}", field="image_id",
                         value=missing[0])
    p_xy = p_xy_all[np.fromiter((pos[i] for i in t_ids), dtype=np.int64, count=len(t_ids))]
    _finite(t_xy, t_vis != ABSENT, t_ids, "the ground truth")
    _finite(p_xy, t_vis == VISIBLE, t_ids, "the prediction table")
    cats = truth_df["image_category"].astype(str).to_numpy()
    unknown = sorted(set(cats) - set(NORMALISING_PAIR))
    if unknown:
        raise InputError(f"unknown image_category {unknown[0]!r} in the ground truth",
                         field="image_category", value=unknown[0],
                         allowed=tuple(NORMALISING_PAIR))

    # s_i: the ground-truth normalising distance of each image.
    ia = np.array([KEYPOINT_INDEX[NORMALISING_PAIR[c][0]] for c in cats], dtype=int)
    ib = np.array([KEYPOINT_INDEX[NORMALISING_PAIR[c][1]] for c in cats], dtype=int)
    rows = np.arange(len(cats))
    annotated = (t_vis[rows, ia] != ABSENT) & (t_vis[rows, ib] != ABSENT)
    s = np.hypot(*(t_xy[rows, ia] - t_xy[rows, ib]).T)
    usable = annotated & (s > 0)
    skipped = []
    for i in np.flatnonzero(~usable):
        a, b = NORMALISING_PAIR[cats[i]]
        reason = (f"{a}/{b} not annotated (visibility -1)" if not annotated[i]
                  else f"{a} and {b} coincide (distance 0)")
        skipped.append({"image_id": t_ids[i], "image_category": cats[i],
                        "reason": reason})

    # e_ik for every ground-truth-visible point of the usable images, in
    # (image, keypoint) order.
    scored = (t_vis == VISIBLE) & usable[:, None]
    dist = np.hypot(*(p_xy - t_xy).transpose(2, 0, 1))            # (N, 24)
    err_matrix = dist / np.where(usable, s, 1.0)[:, None]
    errors = err_matrix[scored]
    if errors.size == 0:
        raise InputError("nothing to score: no image has both a computable normaliser "
                         "and a visible ground-truth keypoint", field="keypoints")
    per_category = {}
    for c in sorted(set(cats)):
        m = scored & (cats == c)[:, None]
        n = int(m.sum())
        if n:
            per_category[c] = {"ne": float(np.mean(err_matrix[m])), "n_keypoints": n,
                               "n_images": int((m.any(axis=1)).sum())}
    return {
        "ne": float(np.mean(errors)),
        "n_keypoints": int(errors.size),
        "n_images": int(scored.any(axis=1).sum()),
        "per_category": per_category,
        "n_skipped": len(skipped),
        "skipped": skipped,
        "n_extra_predictions": len(set(p_ids) - set(t_ids)),
    }


def evaluate_keypoint_files(truth_path: str | os.PathLike,
                            pred_path: str | os.PathLike) -> dict:
    """Score a FashionAI-format prediction CSV against a ground-truth CSV.

    This is what ``mixmatch evaluate --keypoints-truth T --keypoints-pred P`` runs.
    Returns the dict of :func:`normalized_error` (``ne``, ``n_keypoints``,
    ``n_images``, ``per_category``, ``n_skipped``, ``skipped``, ...).

    >>> evaluate_keypoint_files("/nonexistent.csv", "/x.csv")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    NotFoundError: ground-truth keypoint file not found: /nonexistent.csv
    """
    from features.exceptions import NotFoundError
    from features.fashionai.io import read_keypoints_csv

    for what, p in (("ground-truth", truth_path), ("prediction", pred_path)):
        if not os.path.isfile(p):
            raise NotFoundError(f"{what} keypoint file not found: {p}", field=what,
                                value=str(p))
    return normalized_error(read_keypoints_csv(truth_path), read_keypoints_csv(pred_path))


# -- attributes ----------------------------------------------------------------------------
def _check_task(labels: Sequence[str], probs: np.ndarray, task: str = "") -> tuple:
    where = f" (task {task})" if task else ""
    probs = np.asarray(probs, dtype=float)
    labels = list(labels)
    if probs.ndim != 2 or probs.shape[0] != len(labels):
        raise InputError(f"probabilities{where} must be an array of shape (rows, classes) "
                         f"with one row per label; got shape {probs.shape} for "
                         f"{len(labels)} labels", field="probs")
    if not labels:
        raise InputError(f"no rows to score{where}", field="labels")
    n_cls = probs.shape[1]
    allowed = {LABEL_YES, LABEL_MAYBE, LABEL_NO}
    for i, lab in enumerate(labels):
        if not isinstance(lab, str) or len(lab) != n_cls or set(lab) - allowed:
            raise InputError(f"label {lab!r} of row {i}{where} must be {n_cls} characters "
                             "of y/m/n", field="labels", value=lab)
    if not np.isfinite(probs).all():
        raise InputError(f"probabilities{where} contain NaN or infinity", field="probs")
    return labels, probs


def _outcomes(labels: list[str], probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's MaxAttrValueProb and the truth character at its MaxAttrValue."""
    arg = np.argmax(probs, axis=1)
    conf = probs[np.arange(len(labels)), arg]
    hit = np.array([lab[j] for lab, j in zip(labels, arg)])
    return conf, hit


def attribute_ap(labels: Sequence[str], probs: np.ndarray) -> float:
    """The challenge's AP of one attribute task (see the module doc).

    Parameters
    ----------
    labels : list of str
        Ground-truth label strings of the rows (``'y'``/``'m'``/``'n'`` per class).
    probs : array of shape (rows, classes)
        Predicted probabilities (any scores: only their order within a row and the
        row maxima across rows matter).

    >>> attribute_ap(["yn", "ny"], np.array([[0.6, 0.4], [0.3, 0.7]]))
    1.0
    >>> attribute_ap(["yn", "ny"], np.array([[0.4, 0.6], [0.3, 0.7]]))   # P at 0.7: 1, at 0.6: 1/2
    0.75
    """
    labels, probs = _check_task(labels, probs)
    conf, hit = _outcomes(labels, probs)
    # Walk the thresholds from high to low: at threshold t every row with conf >= t
    # is output, so sort by conf descending and take cumulative counts at the last
    # row of each distinct value.
    order = np.argsort(-conf, kind="stable")
    conf, hit = conf[order], hit[order]
    correct = np.cumsum(hit == LABEL_YES)
    counted = np.cumsum(hit != LABEL_MAYBE)
    last_of_value = np.r_[conf[1:] != conf[:-1], True]
    c, n = correct[last_of_value], counted[last_of_value]
    has_p = n > 0
    if not has_p.any():
        raise InputError("AP undefined: every predicted class lands on an 'm' (maybe) "
                         "label, so no threshold has a precision", field="labels")
    return float(np.mean(c[has_p] / n[has_p]))


def basic_precision(labels: Sequence[str], probs: np.ndarray) -> float:
    """The challenge's BasicPrecision of one task: precision with every row output.

    >>> basic_precision(["yn", "mn", "ny"], np.array([[0.6, 0.4], [0.9, 0.1], [0.8, 0.2]]))
    0.5
    """
    labels, probs = _check_task(labels, probs)
    _, hit = _outcomes(labels, probs)
    n = int((hit != LABEL_MAYBE).sum())
    if n == 0:
        raise InputError("BasicPrecision undefined: every predicted class lands on an 'm' "
                         "label", field="labels")
    return float((hit == LABEL_YES).sum() / n)


def _as_tasks(labels, probs) -> dict[str, tuple[list[str], np.ndarray]]:
    if isinstance(labels, Mapping) != isinstance(probs, Mapping):
        raise InputError("labels and probs must both be per-task mappings, or both a "
                         "single task's list and array", field="labels")
    if not isinstance(labels, Mapping):
        return {"": (list(labels), np.asarray(probs))}
    if set(labels) != set(probs):
        diff = sorted(set(labels) ^ set(probs))
        raise InputError(f"labels and probs name different tasks: {', '.join(diff)}",
                         field="task", value=diff[0])
    if not labels:
        raise InputError("no tasks to score", field="labels")
    return {t: (list(labels[t]), np.asarray(probs[t])) for t in labels}


def attribute_map_report(labels: Mapping[str, Sequence[str]] | Sequence[str],
                         probs: Mapping[str, np.ndarray] | np.ndarray) -> dict:
    """mAP, BasicPrecision and their per-task parts.

    Returns ``{"map", "basic_precision", "per_task": {task: {"ap",
    "basic_precision", "n", "n_maybe_hits"}}}``; ``n_maybe_hits`` counts rows whose
    top class is an ``'m'`` label (left out of every precision).
    """
    per_task = {}
    for task, (lab, pr) in _as_tasks(labels, probs).items():
        lab, pr = _check_task(lab, pr, task)
        _, hit = _outcomes(lab, pr)
        per_task[task] = {"ap": attribute_ap(lab, pr), "basic_precision":
                          basic_precision(lab, pr), "n": len(lab),
                          "n_maybe_hits": int((hit == LABEL_MAYBE).sum())}
    return {"map": float(np.mean([v["ap"] for v in per_task.values()])),
            "basic_precision": float(np.mean([v["basic_precision"]
                                              for v in per_task.values()])),
            "per_task": per_task}


def attribute_map(labels: Mapping[str, Sequence[str]] | Sequence[str],
                  probs: Mapping[str, np.ndarray] | np.ndarray) -> float:
    """The challenge's mAP: the mean over tasks of :func:`attribute_ap`.

    ``labels`` and ``probs`` are mappings ``task -> label strings`` and ``task ->
    (rows, classes) array``; a single task's list and array give that task's AP.

    >>> attribute_map({"a": ["yn", "ny"], "b": ["yn", "ny"]},
    ...               {"a": np.array([[0.6, 0.4], [0.3, 0.7]]),
    ...                "b": np.array([[0.4, 0.6], [0.3, 0.7]])})
    0.875
    """
    return attribute_map_report(labels, probs)["map"]
