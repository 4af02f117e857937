"""Baselines printed beside the model: random, popularity, item co-occurrence.

All three are computed from the bundle's TRAINING outfits only and share the
model's scoring interface (``score_fitb``, ``score_outfits`` over catalogue rows),
so the evaluation code treats them alike.

* random: a seeded random score per pair.
* popularity: an item's number of training outfits (an outfit's score: its items'
  mean log count). Knows nothing about the other items.
* co-occurrence: how many training outfits hold both items (an answer's score:
  the mean over the question's items; an outfit's: the mean over its pairs).
  Silent, hence tied, on items without history.

Examples
--------
>>> import numpy as np
>>> b = CooccurrenceBaseline([np.array([0, 1]), np.array([0, 1]), np.array([0, 2])], n_items=4)
>>> b.score_fitb([[0]], [[1, 2, 3, 3]]).tolist()
[[2.0, 1.0, 0.0, 0.0]]
"""
from __future__ import annotations

import numpy as np

from recommender.evaluation.metrics import fitb_pairs


class _PairBaseline:
    name = "baseline"

    def score_pairs(self, a, b):  # pragma: no cover - overridden
        raise NotImplementedError

    def score_fitb(self, questions, answers):
        a, b, g, A = fitb_pairs(questions, answers)
        if not len(a):
            return np.zeros((len(questions), A))
        p = self.score_pairs(a, b)
        n = len(questions) * A
        return (np.bincount(g, p, n) / np.maximum(np.bincount(g, minlength=n), 1)
                ).reshape(len(questions), A)

    def score_outfits(self, outfits):
        a, b, g = [], [], []
        for k, o in enumerate(outfits):
            o = np.asarray(o, np.int64)
            i, j = np.triu_indices(len(o), 1)
            a.append(o[i])
            b.append(o[j])
            g.append(np.full(len(i), k))
        if not a:
            return np.zeros(0)
        p = self.score_pairs(np.concatenate(a), np.concatenate(b))
        g = np.concatenate(g)
        return np.bincount(g, p, len(outfits)) / np.maximum(
            np.bincount(g, minlength=len(outfits)), 1)


class RandomBaseline(_PairBaseline):
    """Seeded random pair scores."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def score_pairs(self, a, b):
        return self.rng.random(len(a))


class PopularityBaseline(_PairBaseline):
    """Score = log(1 + training outfits holding the item); pairs add both items."""

    name = "popularity"

    def __init__(self, outfits, n_items: int):
        self.count = np.zeros(n_items)
        for o in outfits:
            self.count[np.unique(o)] += 1
        self.logc = np.log1p(self.count)

    def score_pairs(self, a, b):
        return self.logc[np.asarray(a)] + self.logc[np.asarray(b)]


class CooccurrenceBaseline(_PairBaseline):
    """Score = number of training outfits holding both items."""

    name = "cooccurrence"

    def __init__(self, outfits, n_items: int):
        self.n = n_items
        keys = []
        for o in outfits:
            o = np.unique(np.asarray(o, np.int64))
            i, j = np.meshgrid(o, o, indexing="ij")
            m = i != j
            keys.append(i[m] * n_items + j[m])
        allk = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        self.keys, self.vals = np.unique(allk, return_counts=True)

    def score_pairs(self, a, b):
        k = np.asarray(a, np.int64) * self.n + np.asarray(b, np.int64)
        if not len(self.keys):
            return np.zeros(len(k))
        pos = np.clip(np.searchsorted(self.keys, k), 0, len(self.keys) - 1)
        return np.where(self.keys[pos] == k, self.vals[pos], 0).astype(float)


def make_baselines(outfits, n_items: int, seed: int = 0) -> list:
    """The three baselines, fitted on ``outfits`` (lists of catalogue rows)."""
    return [RandomBaseline(seed), PopularityBaseline(outfits, n_items),
            CooccurrenceBaseline(outfits, n_items)]
