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


def test_retrieval_scores_the_top_ups_together_with_the_rankings_of_one_at_a_time(
        tmp_path, monkeypatch):
    """Before: every (anchor, category) ranking past a short graph row called the
    pair scorer on its own (thousands of calls, most of the 46 s on MANGO). Now the
    top-ups' pairs are scored together, and a pair once for all strategies; the
    rankings are those of asking the engine one at a time."""
    import numpy as np
    import pandas as pd

    from recommender.bundle import Bundle
    from recommender.engine import Engine
    from recommender.pipeline import BuildContext, run_stages
    from recommender.strategies import STRATEGIES, get_strategy
    from tests.recommender.tiny_bundle import make_tiny_bundle

    b = Bundle.open(make_tiny_bundle(tmp_path / "bundle"))
    # held out: looks that mix the styles, so that the targets rank past the graph's
    # one-item rows (the top-ups' ranks), some inside k and some not
    pd.DataFrame({"outfit_id": ["x"] * 3 + ["y"] * 3,
                  "item_id": ["t1", "p4", "h2", "t4", "p1", "h5"]}).to_parquet(
        b.path("eval", "test_outfits.parquet"))
    run_stages(BuildContext(b, {"source": "test", "seed": 0, "quick": True,
                                "stages": {"graph": {"k_compat": 1, "k_visual": 1}}},
                            log=lambda m: None), ["graph"])
    k = 4
    # the reference: each ranking asked of the engine itself, one at a time
    engine = Engine.load(b.root)
    cats = engine.table.category
    test = pd.read_parquet(b.path("eval", "test_outfits.parquet"))
    want = {}
    for name in sorted(STRATEGIES):
        hits, gains = [], []
        for _, g in test.groupby("outfit_id", sort=True):
            rows = engine.table.index_of(g["item_id"].astype(str))
            for a in rows:
                for t in rows:
                    if a != t and cats[a] != cats[t]:
                        idx, _, _ = get_strategy(name).candidates(engine, int(a), cats[t], k,
                                                                  fill=k)
                        r = idx.tolist().index(t) + 1 if t in idx else 0
                        hits.append(r > 0)
                        gains.append(1 / np.log2(1 + r) if r else 0.0)
        want[name] = (round(float(np.mean(hits)), 4), round(float(np.mean(gains)), 4))
    # the top-ups rank the targets: some inside k, some past it
    assert len(hits) == 12 and all(0 < recall < 1 for recall, _ in want.values())

    calls = []
    pair_scores = Engine.pair_scores
    monkeypatch.setattr(Engine, "pair_scores",
                        lambda self, a, b: calls.append(len(a)) or pair_scores(self, a, b))
    r = evaluate_retrieval(b.root, print_text=False, k=k)
    assert {n: (m["recall"], m["ndcg"]) for n, m in r["strategies"].items()} == want
    # one call per strategy at most (the first scores most pairs), not one per ranking
    assert 1 <= len(calls) <= len(STRATEGIES)


@pytest.mark.parametrize("catches", [Exception, BaseException])
def test_retrieval_rankings_of_a_strategy_catching_exceptions_are_its_own(tmp_path, catches):
    """A strategy that wraps its scoring in ``except Exception`` (falling back to the
    popular items) caught the deferral of the top-ups' pairs (``_Deferred``): its
    fallback was counted as its ranking, not the one the engine gives it alone (and
    a bare ``except:``, as ``except BaseException``, still did once it was one)."""
    import numpy as np

    from recommender.bundle import Bundle
    from recommender.engine import Engine, _ScoredOnce
    from recommender.evaluation.retrieval import _rankings
    from recommender.pipeline import BuildContext, run_stages
    from recommender.strategies import DefaultStrategy
    from tests.recommender.tiny_bundle import make_tiny_bundle

    class Guarded(DefaultStrategy):
        def candidates(self, state, item_idx, category, k, fill=0):
            try:
                return super().candidates(state, item_idx, category, k, fill)
            except catches:
                idx, w = state.popular(category)
                idx = idx[idx != item_idx][:k].astype(np.int64)
                return idx, np.asarray(w, dtype=float)[:len(idx)], [""] * len(idx)

    b = Bundle.open(make_tiny_bundle(tmp_path / "bundle"))
    # one-item graph rows: a ranking of k = 4 is the strategy's top-up (pairs scored)
    run_stages(BuildContext(b, {"source": "test", "seed": 0, "quick": True,
                                "stages": {"graph": {"k_compat": 1, "k_visual": 1}}},
                            log=lambda m: None), ["graph"])
    engine = Engine.load(b.root)
    asks = [(int(engine._idx(a)), c) for a in ("t1", "t4", "p1")
            for c in ("bottom", "shoes", "bag") if c != engine.table.category[engine._idx(a)]]
    got = _rankings(Guarded(), _ScoredOnce(engine), asks, 4)
    for a, c in asks:
        idx, _, _ = Guarded().candidates(engine, a, c, 4, fill=4)
        assert list(got[(a, c)]) == idx.tolist(), (a, c)
