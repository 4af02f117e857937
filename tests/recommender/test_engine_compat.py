"""The compatibility-model path of the engine, on a demo bundle whose compatibility
stage ran (``pipeline_bundle``): the graph's compat edges, the default strategy,
cross-sell, outfit scoring and completion must all carry the model's scores
(:class:`recommender.compat.CompatibilityModel`), not the content fallback."""
from __future__ import annotations

import json

import numpy as np
import pytest

from recommender.engine import Engine
from recommender.rules import pairing_for
from recommender.strategies import get_strategy


@pytest.fixture(scope="module")
def eng(pipeline_bundle):
    e = Engine.load(pipeline_bundle)
    assert e.compat is not None, "the demo pipeline trains a compatibility model"
    return e


def body_items(e, n=6):
    rows = np.flatnonzero(np.isin(e.table.category, ["top", "bottom", "dress"]))
    return rows[np.linspace(0, len(rows) - 1, n).astype(int)]


def test_graph_was_weighted_by_the_model(eng):
    stats = json.loads(eng.bundle.path("graph", "graph.json").read_text())
    assert stats["scorer"] == "compat_model"
    for i in body_items(eng, 4):
        for c in eng.categories:
            idx, w = eng.graph.row("compat", c, int(i))
            if len(idx):
                want = eng.compat.score_pairs(np.full(len(idx), i), idx)
                assert w == pytest.approx(want, abs=1e-6)
                assert (np.diff(w) <= 0).all()


def test_default_strategy_scores_are_the_models(eng):
    strat = get_strategy("default")
    checked = 0
    for i in body_items(eng):
        # the categories the graph completes this item with (its own category is
        # the visual fallback's business)
        for c in pairing_for(eng.rules, [eng.table.category[i]]):
            if c not in eng.categories:
                continue
            idx, sc, _ = strat.candidates(eng, int(i), c, 10)
            assert len(idx), f"no compat row for item {i} -> {c}"
            checked += 1
            assert sc == pytest.approx(eng.compat.score_pairs(np.full(len(idx), i), idx),
                                       abs=1e-6)
    assert checked >= 6


def test_complements_scores_equal_score_pairs(eng):
    for i in body_items(eng, 3):
        out = eng.complements(str(eng.table.ids[i]), k=4)
        assert out["strategy"] == "default" and out["groups"]
        for g in out["groups"]:
            rows = eng.table.index_of([it["item_id"] for it in g["items"]])
            want = eng.compat.score_pairs(np.full(len(rows), i), rows)
            assert [it["score"] for it in g["items"]] == pytest.approx(want, abs=1e-4)


def test_cart_complements_average_the_models_scores(eng):
    a, b = (int(x) for x in body_items(eng, 2))
    out = eng.complements([str(eng.table.ids[a]), str(eng.table.ids[b])], k=3,
                          categories=["shoes"])
    items = out["groups"][0]["items"]
    rows = eng.table.index_of([it["item_id"] for it in items])
    n = len(rows)
    want = (eng.compat.score_pairs(np.full(n, a), rows)
            + eng.compat.score_pairs(np.full(n, b), rows)) / 2
    # an item on only one anchor's graph row counts 0 for the other (the mean over
    # anchors of the strategy's rows), so the engine's score is at most the model's
    got = np.array([it["score"] for it in items])
    assert (got <= want + 1e-4).all() and np.isclose(got, want, atol=1e-4).any()


def test_score_outfit_is_the_models(eng):
    rows = []
    for c in ("top", "bottom", "shoes", "bag"):
        rows.append(int(np.flatnonzero(eng.table.category == c)[0]))
    out = eng.score_outfit([str(eng.table.ids[r]) for r in rows])
    score, mat = eng.compat.score_outfit(rows)
    assert out["score"] == pytest.approx(score, abs=1e-4)
    for p in out["pairs"]:
        i, j = eng.table.index_of([p["a"], p["b"]])
        assert p["score"] == pytest.approx(mat[rows.index(i), rows.index(j)], abs=1e-4)


def test_completion_look_scores_equal_score_outfit(eng):
    for i in body_items(eng, 3):
        out = eng.complete([str(eng.table.ids[i])], n=3)
        assert out["looks"]
        for look in out["looks"]:
            rows = [int(r) for r in eng.table.index_of([it["item_id"]
                                                        for it in look["items"]])]
            assert int(i) in rows and len(rows) >= 3
            assert look["score"] == pytest.approx(eng.compat.score_outfit(rows)[0],
                                                  abs=1e-4)
        scores = [lk["score"] for lk in out["looks"]]
        assert scores == sorted(scores, reverse=True)
