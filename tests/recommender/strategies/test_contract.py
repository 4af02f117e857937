"""One contract, every strategy (recommender/strategies/base.py states it)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from recommender.strategies import STRATEGIES, get_strategy


@pytest.fixture(params=sorted(STRATEGIES))
def strategy(request):
    return get_strategy(request.param)


def test_candidates_contract(strategy, engine):
    for item in ("t0", "p3", "h5", "d1", "nb0"):
        i = engine._idx(item)
        for cat in engine.categories:
            for k in (1, 3, 10):
                idx, sc, rs = strategy.candidates(engine, i, cat, k)
                assert idx.dtype == np.int64 and len(idx) == len(sc) == len(rs) <= k
                assert i not in idx and len(set(idx.tolist())) == len(idx)
                assert (engine.table.category[idx] == cat).all()
                assert np.isfinite(sc).all() and (np.diff(sc) <= 1e-9).all()
                assert all(isinstance(r, str) for r in rs)
                again = strategy.candidates(engine, i, cat, k)
                assert np.array_equal(again[0], idx) and np.allclose(again[1], sc)


def test_candidates_unknown_category_is_empty(strategy, engine):
    idx, sc, rs = strategy.candidates(engine, 0, "hat", 5)
    assert len(idx) == len(sc) == len(rs) == 0


def test_known_partner_ranks_first(strategy, engine):
    # every strategy sees that t2 goes with p2: co-worn twice, same style embedding
    idx, _, _ = strategy.candidates(engine, engine._idx("t2"), "bottom", 3)
    assert engine.table.ids[idx[0]] == "p2"


def test_engine_complements_per_strategy_json(strategy, engine):
    out = engine.complements("t3", k=2, strategy=strategy.name)
    assert out["strategy"] == strategy.name
    json.dumps(out)
    assert {g["category"] for g in out["groups"]} >= {"bottom", "shoes", "bag"}
    for g in out["groups"]:
        assert 1 <= len(g["items"]) <= 2
        assert all(it["reason"] for it in g["items"])


@pytest.fixture(scope="module")
def imageless_engine(tmp_path_factory):
    """The tiny bundle with t5's and h3's image failed: zero embeddings, feat_ok False,
    the graph rebuilt (they get no visual neighbours)."""
    import pandas as pd

    from recommender.bundle import Bundle
    from recommender.engine import Engine
    from recommender.pipeline import BuildContext, run_stages
    from tests.recommender.tiny_bundle import make_tiny_bundle

    b = Bundle.open(make_tiny_bundle(tmp_path_factory.mktemp("imageless") / "bundle"))
    cat = pd.read_parquet(b.path("catalog.parquet"))
    rows = np.flatnonzero(cat["item_id"].isin(["t5", "h3"]))
    emb = np.load(b.path("features", "embeddings.npy"))
    emb[rows] = 0
    np.save(b.path("features", "embeddings.npy"), emb)
    feats = pd.read_parquet(b.path("features", "features.parquet"))
    feats.loc[rows, "feat_ok"] = False
    feats.to_parquet(b.path("features", "features.parquet"))
    run_stages(BuildContext(b, {"source": "test", "seed": 0, "quick": True,
                                "stages": {"graph": {"k_compat": 10, "k_visual": 10}}},
                            log=lambda m: None), ["graph"])
    return Engine.load(b.root)


@pytest.mark.parametrize("item", ["t5", "h3"])
def test_item_without_embedding_still_gets_complements_and_looks(strategy, imageless_engine,
                                                                 item):
    e = imageless_engine
    out = e.complements(item, k=3, strategy=strategy.name)
    json.dumps(out)
    assert out["groups"] and all(len(g["items"]) == 3 for g in out["groups"])
    for look in e.complete([item], n=2, strategy=strategy.name)["looks"]:
        # a body, shoes and a bag: never the anchor left alone
        assert len(look["items"]) == 4


@pytest.fixture(scope="module")
def short_rows_engine(tmp_path_factory):
    """The tiny bundle with a graph of 3 edges per (item, category) (``k_compat`` and
    ``k_visual`` = 3): every category has more items than a row holds."""
    from recommender.bundle import Bundle
    from recommender.engine import Engine
    from recommender.pipeline import BuildContext, run_stages
    from tests.recommender.tiny_bundle import make_tiny_bundle

    b = Bundle.open(make_tiny_bundle(tmp_path_factory.mktemp("short") / "bundle"))
    run_stages(BuildContext(b, {"source": "test", "seed": 0, "quick": True,
                                "stages": {"graph": {"k_compat": 3, "k_visual": 3}}},
                            log=lambda m: None), ["graph"])
    return Engine.load(b.root)


def test_candidates_contract_when_topped_up(strategy, short_rows_engine):
    e = short_rows_engine
    for item in ("t0", "p3", "h5", "d1", "nb0"):
        i = e._idx(item)
        for cat in e.categories:
            for k, fill in ((1, 2), (5, 5), (40, 8), (40, 40)):
                idx, sc, rs = strategy.candidates(e, i, cat, k, fill=fill)
                assert idx.dtype == np.int64 and len(idx) == len(sc) == len(rs) <= k
                assert i not in idx and len(set(idx.tolist())) == len(idx)
                assert (e.table.category[idx] == cat).all()
                assert np.isfinite(sc).all() and (np.diff(sc) <= 1e-9).all()
                again = strategy.candidates(e, i, cat, k, fill=fill)
                assert np.array_equal(again[0], idx) and np.allclose(again[1], sc)


@pytest.mark.parametrize("name", ["default", "visual"])
def test_complements_return_k_items_beyond_the_graph_rows(name, short_rows_engine):
    # a shop page asking for more matches than the graph keeps per category got the
    # row's 3 and no explanation; the category has them, so k are shown
    e = short_rows_engine
    out = e.complements("t0", k=6, strategy=name)
    sizes = {g["category"]: len(g["items"]) for g in out["groups"]}
    assert sizes == {"bottom": 6, "shoes": 6, "bag": 6}
    for g in out["groups"]:
        assert not any(it["fallback"] for it in g["items"])


def test_default_top_up_is_ranked_by_the_compatibility_scorer(short_rows_engine):
    e = short_rows_engine
    a = e._idx("t0")
    idx, sc, _ = get_strategy("default").candidates(e, a, "bag", 40, fill=8)
    assert len(idx) == 8
    # the extras carry the scorer's own scores, merged with the graph's edges
    assert np.allclose(sc, e.pair_scores(np.full(len(idx), a), idx), atol=1e-5)
    # known answer: the tiny category is small enough to score whole
    bags = e._cat_rows["bag"]
    best = np.sort(e.pair_scores(np.full(len(bags), a), bags))[::-1][:8]
    assert np.allclose(sc, best, atol=1e-5)


def test_visual_top_up_is_ranked_by_embedding_cosine(short_rows_engine):
    e = short_rows_engine
    a = e._idx("t0")
    idx, sc, _ = get_strategy("visual").candidates(e, a, "bag", 40, fill=8)
    assert len(idx) == 8
    cos = np.asarray(e.emb[idx]) @ np.asarray(e.emb[a])
    assert np.allclose(sc, cos, atol=1e-5)
    bags = e._cat_rows["bag"]
    best = np.sort(np.asarray(e.emb[bags]) @ np.asarray(e.emb[a]))[::-1][:8]
    assert np.allclose(sc, best, atol=1e-5)


def test_cooccurrence_top_up_follows_the_history(short_rows_engine):
    # t0's bags: one partner (g0) and five popular bags; the five black bags nb0..nb4
    # were never worn, so a request for more than the history holds got six
    e = short_rows_engine
    a = e._idx("t0")
    strat = get_strategy("cooccurrence")
    hist = strat.candidates(e, a, "bag", 40)
    assert list(e.table.ids[hist[0]]) == ["g0", "g1", "g2", "g3", "g4", "g5"]
    idx, sc, rs = strat.candidates(e, a, "bag", 40, fill=40)
    assert len(idx) == 11
    # the history first, unchanged; then the never-worn bags by the compatibility
    # scorer, below every item worn in a look
    assert np.array_equal(idx[:6], hist[0]) and np.allclose(sc[:6], hist[1])
    assert rs[:6] == hist[2] and rs[6:] == [""] * 5
    assert sc[6] < sc[5]
    nb = e.table.index_of([f"nb{i}" for i in range(5)])
    pair = e.pair_scores(np.full(5, a), nb)
    extra = idx[6:]
    best = nb[np.lexsort((nb, -pair))]
    assert np.array_equal(extra, best)


def test_cooccurrence_fills_a_group_a_strict_allow_list_leaves_short(engine):
    # black bags only: of t0's history (g0 and the popular g1..g5) one is black, and
    # the group showed one bag although the catalogue has six
    from recommender.rules import parse_rules

    r = parse_rules({"version": "black", "filters": {"include_attributes": [
        {"field": "colour", "value": "BLACK"}]}})
    out = engine.complements("t0", k=6, categories=["bag"], strategy="cooccurrence",
                             rules=r)
    items = out["groups"][0]["items"]
    assert [it["item_id"] for it in items][0] == "g0"
    assert sorted(it["item_id"] for it in items) == ["g0", "nb0", "nb1", "nb2", "nb3",
                                                       "nb4"]
    # filled by the strategy (as default and visual fill), not by the caps' fallback
    assert not any(it["fallback"] for it in items) and all(it["reason"] for it in items)


def _under_rules(e, rules, category, scored):
    """The state a widened request hands the strategy (``Engine._merged_allowed``),
    recording the pairs its scorer is asked for in ``scored``."""
    from recommender.engine import _RulesAllowed, _ScoredOnce
    from recommender.rules import _filters_ok

    class Recording(_ScoredOnce):
        def pair_scores(self, a, b):
            scored.extend(np.asarray(b).tolist())
            return super().pair_scores(a, b)

    rows = e._cat_rows[category]
    return _RulesAllowed(Recording(e), rules, category, rows[_filters_ok(rules, e.table, rows)])


def test_top_up_under_rules_that_allow_everything_is_the_plain_top_up(strategy,
                                                                      short_rows_engine):
    # no filter excludes anything: the rules-aware top-up must answer exactly as the
    # top-up without rules (the answers without rules are unchanged)
    from recommender.rules import parse_rules

    e = short_rows_engine
    r = parse_rules({"version": "none"})
    for item in ("t0", "p3", "h5", "d1", "nb0"):
        i = e._idx(item)
        for cat in e.categories:
            state = _under_rules(e, r, cat, [])
            for k, fill in ((1, 2), (5, 5), (40, 8), (40, 40)):
                got = strategy.candidates(state, i, cat, k, fill=fill)
                want = strategy.candidates(e, i, cat, k, fill=fill)
                assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
                assert got[2] == want[2]


def test_top_up_under_rules_scores_and_adds_only_allowed_items(strategy, short_rows_engine):
    # not black: 6 of 11 bags, 3 of 8 tops excluded. The top-up used to score (and
    # add) the nearest items whatever their colour, for the rules to drop them later
    from recommender.rules import _filters_ok, parse_rules

    e = short_rows_engine
    r = parse_rules({"version": "nb", "filters": {"exclude_attributes": [
        {"field": "colour", "value": "BLACK"}]}})
    for item in ("t0", "p3", "h5", "d1", "nb0"):
        i = e._idx(item)
        for cat in e.categories:
            scored: list[int] = []
            state = _under_rules(e, r, cat, scored)
            row = strategy.candidates(e, i, cat, 40)[0]  # the graph row and history
            n_allowed = int(_filters_ok(r, e.table, e._cat_rows[cat]).sum()) - int(
                e.table.category[i] == cat and _filters_ok(r, e.table, [i])[0])
            for fill in (2, 8, 40):
                idx, sc, rs = strategy.candidates(state, i, cat, 40, fill=fill)
                assert len(idx) == len(sc) == len(rs) and (np.diff(sc) <= 1e-9).all()
                ok = _filters_ok(r, e.table, idx)
                # the extras are allowed; the row is returned as it is
                assert ok[~np.isin(idx, row)].all()
                assert set(row.tolist()) <= set(idx.tolist())
                # as many allowed as asked for, when the category has them
                assert ok.sum() >= min(fill, n_allowed)
            assert not (set(scored) - set(np.flatnonzero(_filters_ok(
                r, e.table, np.arange(len(e.table))))))
