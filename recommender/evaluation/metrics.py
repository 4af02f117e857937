"""Metrics of the Polyvore protocol: fill-in-the-blank accuracy and compatibility AUC.

FITB ties matter: a model that gives all four answers the same score (an unknown
item, a popularity baseline on cold items) must not score 100% because the true
answer happens to come first. Ties are broken at random with a fixed seed, and the
*expected* accuracy under random tie-breaking (1/k when the answer is among k
tied best) is reported beside it, which does not depend on the seed.

Examples
--------
>>> import numpy as np
>>> fitb_accuracy(np.array([[0.9, 0.1, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1]]), np.array([0, 1]))
{'accuracy': 1.0, 'expected_accuracy': 0.75, 'n': 2}
>>> roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.5, 0.5]))
0.875
"""
from __future__ import annotations

import numpy as np

from features.exceptions import InputError

#: Scores closer than this are a tie (float noise from different summation orders).
TIE_TOL = 1e-9


def fitb_outcomes(scores: np.ndarray, labels: np.ndarray, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-question correctness with seeded random tie-breaking, and its expectation.

    Parameters
    ----------
    scores : (Q, A) float array
        Score of each answer (higher is better); NaN counts as the lowest score.
    labels : (Q,) int array
        Index of the true answer in each row.
    seed : int
        Seed of the tie-breaking draws.

    Returns
    -------
    correct : (Q,) bool
        Whether the seeded tie-break picked the true answer.
    expected : (Q,) float
        1/k when the true answer is among the k best (tied) answers, else 0.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=int)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise InputError(f"scores must be (Q, A) with Q = len(labels); got {scores.shape} "
                         f"and {labels.shape}", field="scores")
    if len(labels) == 0:
        return np.zeros(0, bool), np.zeros(0, float)
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise InputError("label out of range of the answers", field="label")
    s = np.where(np.isnan(scores), -np.inf, scores)
    best = s.max(axis=1, keepdims=True)
    tied = s >= best - TIE_TOL                        # (Q, A)
    n_tied = tied.sum(axis=1)
    label_tied = tied[np.arange(len(labels)), labels]
    expected = np.where(label_tied, 1.0 / n_tied, 0.0)
    rng = np.random.default_rng(seed)
    # A random key per answer, kept only where tied: argmax picks one tied answer uniformly.
    keys = np.where(tied, rng.random(s.shape), -1.0)
    pick = keys.argmax(axis=1)
    return pick == labels, expected


def fitb_accuracy(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """FITB accuracy (seeded tie-break), expected accuracy, and the number of questions."""
    correct, expected = fitb_outcomes(scores, labels, seed)
    n = len(correct)
    return {"accuracy": float(correct.mean()) if n else float("nan"),
            "expected_accuracy": float(expected.mean()) if n else float("nan"),
            "n": int(n)}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney; tied scores count one half).

    Equal to ``sklearn.metrics.roc_auc_score``; NaN when one class is absent.
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    if labels.shape != scores.shape:
        raise InputError(f"labels {labels.shape} and scores {scores.shape} differ",
                         field="scores")
    scores = np.where(np.isnan(scores), -np.inf, scores)
    n_pos = int((labels == 1).sum())
    n_neg = int((labels == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(scores)  # average ranks: ties get half credit
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fitb_pairs(questions, answers) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Every (candidate answer, question item) pair of a batch of FITB questions.

    Returns ``(a, b, group, n_answers)``: ``a[i]`` is a candidate, ``b[i]`` an item of
    its question, and ``group[i] = question * n_answers + answer position``, so a
    scorer's pair scores average per candidate with ``np.bincount(group, scores)``.

    >>> a, b, g, n = fitb_pairs([[10, 11]], [[1, 2]])
    >>> a.tolist(), b.tolist(), g.tolist(), n
    ([1, 1, 2, 2], [10, 11, 10, 11], [0, 0, 1, 1], 2)
    """
    n_answers = len(answers[0]) if len(answers) else 0
    a, b, g = [], [], []
    for k, (q, ans) in enumerate(zip(questions, answers)):
        q = np.asarray(q, np.int64)
        for r, c in enumerate(ans):
            a.append(np.full(len(q), c, np.int64))
            b.append(q)
            g.append(np.full(len(q), k * n_answers + r, np.int64))
    if not a:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, n_answers
    return np.concatenate(a), np.concatenate(b), np.concatenate(g), n_answers
