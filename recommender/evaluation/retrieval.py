"""Complementary-item retrieval on held-out outfits, per strategy (issue 5).

For each held-out outfit (``eval/test_outfits.parquet``) and each of its items
(the anchor), every other item of the outfit in a *different* category is a
target: its rank among all catalogue items of its category, as the strategy
ranks them for the anchor. Strategies are read raw (no diversity re-ranking, no
merchandiser rules). A target absent from the strategy's top 10 counts as a miss.

- Recall@10: share of (anchor, target) pairs whose target ranks in the top 10.
- NDCG@10: mean of ``1 / log2(1 + rank)`` for ranks <= 10, else 0 (one relevant
  item per ranking, so the ideal DCG is 1).
- ``random``: the expected Recall@10 of a uniform ranking, ``mean(10 / n_category)``.

Anchors are split into *warm* (in the training outfits) and *cold* (not).

Example::

    mixmatch evaluate --bundle bundles/mango --retrieval
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.exceptions import BundleError
from recommender.strategies import STRATEGIES, get_strategy

K = 10


def evaluate_retrieval(bundle_path, print_text: bool = True, *, k: int = K,
                       strategies: list[str] | None = None) -> dict:
    """Recall@k and NDCG@k per strategy on the bundle's held-out outfits.

    Returns ``{"k", "n_pairs", "n_outfits", "random_recall", "strategies":
    {name: {"recall", "ndcg", "recall_warm", "recall_cold", "n_warm", "n_cold"}}}``.
    """
    from recommender.bundle import Bundle, read_bundle_file
    from recommender.engine import Engine, _ScoredOnce

    b = Bundle.open(bundle_path)
    tp = b.path("eval", "test_outfits.parquet")
    if not tp.is_file():
        raise BundleError(f"{tp} missing: run the split stage (mixmatch build) first")
    test = read_bundle_file(tp, pd.read_parquet)
    if test.empty:
        raise BundleError(f"bundle {b.root} holds out no outfits (built with --holdout 0: "
                          "every outfit trained it), so it has nothing to retrieve; "
                          "evaluate a bundle built with a holdout")
    trp = b.path("eval", "train_outfits.parquet")
    train_items = (set(read_bundle_file(trp, pd.read_parquet)["item_id"].astype(str))
                   if trp.is_file() else set())
    engine = Engine.load(bundle_path)
    pos = engine.table.index_of(test["item_id"].astype(str))
    test = test.assign(idx=pos)[pos >= 0]
    cats = engine.table.category
    pairs = []
    for _, g in test.groupby("outfit_id", sort=True):
        idx = g["idx"].to_numpy()
        for a in idx:
            for t in idx:
                if a != t and cats[a] != cats[t]:
                    pairs.append((int(a), int(t)))
    pairs_arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    n_cat = {c: len(r) for c, r in engine._cat_rows.items()}
    warm = np.array([engine.table.ids[a] in train_items for a, _ in pairs], dtype=bool)
    result = {"k": k, "n_pairs": len(pairs), "n_outfits": int(test["outfit_id"].nunique()),
              "random_recall": round(float(np.mean([min(1.0, k / n_cat[cats[t]])
                                                    for _, t in pairs])) if pairs else 0.0, 4),
              "strategies": {}}
    # one ranking per (anchor, target category), in the pairs' order
    asks = list(dict.fromkeys((int(a), str(cats[t])) for a, t in pairs_arr))
    # the strategies read the engine through one scorer that remembers pair scores
    # and scores the top-ups' pairs together: asked one ranking at a time, the
    # model's fixed cost per call (thousands of calls) was most of the 46 s on MANGO.
    # A pair's score does not depend on the pairs scored with it: the same rankings
    scored = _ScoredOnce(engine)
    for name in strategies or sorted(STRATEGIES):
        strat = get_strategy(name)
        rankings = _rankings(strat, scored, asks, k)
        ranks = np.full(len(pairs), 0, dtype=np.int64)  # 0 = not in top k
        for n, (a, t) in enumerate(pairs_arr):
            ranks[n] = rankings[(int(a), cats[t])].get(int(t), 0)
        hit = ranks > 0
        gain = np.where(hit, 1.0 / np.log2(1 + np.maximum(ranks, 1)), 0.0)
        result["strategies"][name] = {
            "recall": round(float(hit.mean()), 4) if len(hit) else 0.0,
            "ndcg": round(float(gain.mean()), 4) if len(hit) else 0.0,
            "recall_warm": round(float(hit[warm].mean()), 4) if warm.any() else None,
            "recall_cold": round(float(hit[~warm].mean()), 4) if (~warm).any() else None,
            "n_warm": int(warm.sum()), "n_cold": int((~warm).sum()),
        }
    if print_text:
        print(f"complementary retrieval on {result['n_outfits']} held-out outfits, "
              f"{result['n_pairs']} (anchor, target) pairs; random Recall@{k} = "
              f"{result['random_recall']:.4f}")
        print(f"{'strategy':<14}{'Recall@' + str(k):>10}{'NDCG@' + str(k):>10}"
              f"{'R@k warm':>10}{'R@k cold':>10}")
        for name, m in result["strategies"].items():
            fmt = lambda v: f"{v:>10.4f}" if v is not None else f"{'-':>10}"
            print(f"{name:<14}{fmt(m['recall'])}{fmt(m['ndcg'])}{fmt(m['recall_warm'])}"
                  f"{fmt(m['recall_cold'])}")
    return result


def _rankings(strat, scored, asks: list[tuple[int, str]], k: int
              ) -> dict[tuple[int, str], dict[int, int]]:
    """``{(anchor, category): {row: rank}}``: the strategy's top ``k`` for each ask,
    read through ``scored`` (the engine's ``_ScoredOnce``). A first pass answers the
    asks whose pairs are scored already and defers the others' pairs; they are
    scored in one call and those asks answered again (the strategies ask for the
    same pairs: their candidates do not depend on the scores)."""
    from recommender.engine import _Deferred

    def ask(a: int, cat: str) -> dict[int, int]:
        # fill=k: the ranking a k-item group shows, past a shorter graph row
        stops = scored.deferrals
        idx, _, _ = strat.candidates(scored, a, cat, k, fill=k)
        if scored.deferrals != stops:
            # the strategy caught the deferral (a bare ``except:``): not its ranking
            raise _Deferred
        return {int(i): p + 1 for p, i in enumerate(idx.tolist())}

    out: dict[tuple[int, str], dict[int, int]] = {}
    later = []
    scored.defer = True
    try:
        for key in asks:
            try:
                out[key] = ask(*key)
            except _Deferred:
                later.append(key)
        scored.score_deferred()
    finally:
        scored.defer = False
    for key in later:
        out[key] = ask(*key)
    return out
