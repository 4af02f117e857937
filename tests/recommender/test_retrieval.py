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


def test_retrieval_ranks_past_the_graph_rows(tmp_path):
    """Recall@k reads what a k-item group shows: past a graph row shorter than k
    (here ``k_compat`` = ``k_visual`` = 1), the strategies' top-up. Held out: t1
    with p4, a bottom of another style; with k = 8 every bottom (7) is ranked."""
    import pandas as pd

    from recommender.bundle import Bundle
    from recommender.pipeline import BuildContext, run_stages
    from tests.recommender.tiny_bundle import make_tiny_bundle

    b = Bundle.open(make_tiny_bundle(tmp_path / "bundle"))
    pd.DataFrame({"outfit_id": ["x", "x"], "item_id": ["t1", "p4"]}).to_parquet(
        b.path("eval", "test_outfits.parquet"))
    run_stages(BuildContext(b, {"source": "test", "seed": 0, "quick": True,
                                "stages": {"graph": {"k_compat": 1, "k_visual": 1}}},
                            log=lambda m: None), ["graph"])
    r = evaluate_retrieval(b.root, print_text=False, k=8, strategies=["default", "visual"])
    assert r["n_pairs"] == 2
    for m in r["strategies"].values():
        assert m["recall"] == pytest.approx(1.0)
