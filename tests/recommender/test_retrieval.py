from __future__ import annotations

import pytest

from recommender.evaluation.retrieval import evaluate_retrieval


def test_retrieval_on_tiny_bundle(tiny_bundle, capsys):
    r = evaluate_retrieval(tiny_bundle, print_text=True, k=1)
    # held-out o1b (t1, p1, h1) and o4b (t4, p4, h4): 2 outfits x 3 x 2 pairs
    assert r["n_outfits"] == 2 and r["n_pairs"] == 12
    assert set(r["strategies"]) == {"default", "cooccurrence", "visual"}
    # the held-out partners are the same style: every strategy ranks them first
    for m in r["strategies"].values():
        assert m["recall"] == pytest.approx(1.0) and m["ndcg"] == pytest.approx(1.0)
    assert r["random_recall"] < 0.2
    assert "Recall@1" in capsys.readouterr().out
