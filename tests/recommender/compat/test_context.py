import json

import numpy as np
import pandas as pd
import pytest

from features.exceptions import BundleError, InputError, NotFittedError
from recommender.compat.context import ContextConfig, OutfitContext, _Draw
from recommender.compat.model import CONTEXT_FILE, CompatibilityModel
from tests.recommender.compat.synthetic import make_bundle, palette_of, synthetic_catalog

SMALL = dict(dim=32, hidden=64, layers=1, heads=4, negatives=7, epochs=12, patience=12,
             batch_size=64, members=2)
FAST = dict(num_boost_round=40, num_leaves=7, min_data_in_leaf=5, learning_rate=0.1,
            early_stopping_rounds=10, negatives="random")


def _palette_data(n_outfits=300, seed=0):
    """Synthetic catalogue (colour-palette rule) as codes, and outfits as row lists;
    30% of the items are never worn (cold)."""
    cat = synthetic_catalog(40, seed)
    colour = pd.factorize(cat["colour"])[0] + 1
    material = pd.factorize(cat["material"])[0] + 1
    groups = pd.factorize(cat["subcategory"])[0]
    pal = cat["colour"].map(palette_of).to_numpy()
    rng = np.random.default_rng(seed)
    worn = rng.random(len(cat)) > 0.3
    slots = [np.flatnonzero(cat["category"].to_numpy() == c) for c in ("top", "bottom", "shoes")]
    outfits = []
    for _ in range(n_outfits):
        p = rng.integers(3)
        outfits.append(np.array([rng.choice(s[(pal[s] == p) & worn[s]]) for s in slots]))
    codes = {"colour": colour, "material": material}
    n_values = {"colour": int(colour.max()) + 1, "material": int(material.max()) + 1}
    return codes, n_values, groups, pal, worn, outfits


def _questions(outfits, groups, pal, pool_mask, rng, n=200):
    """Blank one item; three negatives of its group from ``pool_mask`` items of OTHER
    palettes (so exactly one candidate fits)."""
    qs, ans, labels = [], [], []
    for o in outfits[:n]:
        j = rng.integers(len(o))
        a = o[j]
        cands = np.flatnonzero((groups == groups[a]) & (pal != pal[a]) & pool_mask)
        neg = rng.choice(cands, 3, replace=False)
        row = np.r_[a, neg]
        perm = rng.permutation(4)
        qs.append(np.delete(o, j).tolist())
        ans.append(row[perm].tolist())
        labels.append(int(np.flatnonzero(perm == 0)[0]))
    return qs, np.array(ans), np.array(labels)


@pytest.fixture(scope="module")
def palette_fit():
    codes, n_values, groups, pal, worn, outfits = _palette_data()
    model = OutfitContext(ContextConfig(**SMALL)).fit(codes, n_values, None, outfits[:250],
                                                      groups)
    return model, codes, n_values, groups, pal, worn, outfits


def test_context_learns_the_outfit_rule_for_worn_and_never_worn_items(palette_fit):
    model, codes, _, groups, pal, worn, outfits = palette_fit
    rng = np.random.default_rng(1)
    # held-out outfits; answers swapped for never-worn items of the same palette: the
    # model reads content, so items without outfit history are scored the same way
    held = outfits[250:]
    qs, ans, labels = _questions(held, groups, pal, np.ones(len(groups), bool), rng)
    acc = (model.score(qs, ans, groups, codes, None).argmax(axis=1) == labels).mean()
    assert acc > 0.9  # chance is 0.25
    cold_ans = ans.copy()
    for r, l in enumerate(labels):
        a = ans[r, l]
        pool = np.flatnonzero((groups == groups[a]) & (pal == pal[a]) & ~worn)
        cold_ans[r, l] = rng.choice(pool)
    s = model.score(qs, cold_ans, groups)
    assert (s.argmax(axis=1) == labels).mean() > 0.9
    assert len(model.weights_) == len(model.history_) == len(model.best_epoch_) == 2
    for hist, best in zip(model.history_, model.best_epoch_):
        assert 1 <= best <= len(hist) and hist[best - 1] == max(hist)


def test_reverse_score_is_the_mean_of_each_question_item_scored_with_the_answer(palette_fit):
    model, codes, _, groups, pal, _, outfits = palette_fit
    rng = np.random.default_rng(3)
    qs, ans, labels = _questions(outfits[250:], groups, pal, np.ones(len(groups), bool), rng)
    rev = model.score_reverse(qs, ans, groups, codes, None)
    assert rev.shape == ans.shape
    # by hand for one question: each item q_j is the blank of {a} + the others
    q, row = qs[0], ans[0]
    for k, a in enumerate(row):
        want = np.mean([model.score([[a] + q[:j] + q[j + 1:]], [[q[j]]], groups)[0, 0]
                        for j in range(len(q))])
        assert rev[0, k] == pytest.approx(want, rel=1e-5, abs=1e-5)
    # the outfit rule holds both ways: the fitting answer explains the others best
    assert (rev.argmax(axis=1) == labels).mean() > 0.9
    # an empty question has nothing to explain; no questions, no scores
    np.testing.assert_array_equal(model.score_reverse([[]], ans[:1], groups), 0)
    assert model.score_reverse([], [], groups).shape == model.score([], [], groups).shape \
        == (0, 0)


def test_training_negatives_come_from_worn_items_of_the_same_group():
    groups = np.array([0, 0, 0, 1, 1, 1, 1])
    pool = np.array([0, 2, 3, 4])
    d = _Draw(groups, pool)
    got = d(np.array([0, 1] * 50), 5, np.random.default_rng(0))
    assert set(got[::2].ravel()) == {0, 2} and set(got[1::2].ravel()) == {3, 4}


def test_per_distinct_item_forward_equals_the_per_reference_network(palette_fit):
    # the batched forward runs the item tower once per distinct item; the network's
    # own forward runs it once per reference: the scores must be the same
    import torch

    model, codes, _, groups, pal, _, outfits = palette_fit
    net = model._modules()[0]
    ct, xt = model._items
    qs, ans, _ = _questions(outfits, groups, pal, np.ones(len(groups), bool),
                            np.random.default_rng(3), 40)
    ctx = np.array([q + [q[0]] for q in qs])        # repeated items within a row too
    pad = np.zeros(ctx.shape, bool)
    pad[::3, -1] = True
    slot = groups[ans[:, 0]]
    with torch.no_grad():
        got = OutfitContext._forward(torch, net, ct, xt, ctx, pad, slot, ans).numpy()
        c, a = torch.from_numpy(ctx), torch.from_numpy(ans)
        want = net(ct[c], xt[c], torch.from_numpy(pad), torch.from_numpy(slot), ct[a],
                   xt[a]).numpy()
    assert got.shape == (40, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_scoring_blocks_take_rows_shortest_first_and_score_as_rows_alone(palette_fit,
                                                                         monkeypatch):
    # before: blocks of SCORE_BLOCK rows in the callers' order, each padded to its
    # longest row; the reverse scores' rows (1 to 11 items on MANGO) read 224,712
    # encoder positions for 136,128 items, which made them most of the model
    # report's evaluation time. Padding is masked, so a row's score is its own
    from recommender.compat import context as C

    model, codes, _, groups, _, _, _ = palette_fit
    model.set_items(codes, None)
    rng = np.random.default_rng(5)
    lens = [3, 0, 1, 15, 2, 3, 1, 5, 2, 0, 3, 4, 15, 1, 2]  # 15: cut to max_context
    rows = [rng.choice(len(groups), n, replace=False).tolist() for n in lens]
    cand = rng.choice(len(groups), (len(rows), 3))
    slot = groups[cand[:, 0]]
    seen = []
    forward = C.OutfitContext._forward
    monkeypatch.setattr(C.OutfitContext, "_forward", staticmethod(
        lambda torch, net, ct, xt, ctx, pad, *a: seen.append(pad.copy())
        or forward(torch, net, ct, xt, ctx, pad, *a)))
    monkeypatch.setattr(C, "SCORE_BLOCK", 2)
    got = model._score_rows(rows, slot, cand)
    per_block = seen[::len(model.weights_)]
    assert [len(p) for p in per_block] == [2] * 7 + [1]
    # shortest first: no block holds a row shorter than one of the block before
    n_items = [(~p).sum(axis=1) for p in per_block]
    assert all(a.max() <= b.min() for a, b in zip(n_items, n_items[1:]))
    # lengths sorted 0 0 | 1 1 | 1 2 | 2 2 | 3 3 | 3 4 | 5 12 | 12 (15 cut to
    # max_context; an empty context keeps one column): in the callers' order, 84
    assert sum(p.size for p in per_block) == 2 + 2 + 4 + 4 + 6 + 8 + 24 + 12
    alone = np.concatenate([model._score_rows([r], slot[k:k + 1], cand[k:k + 1])
                            for k, r in enumerate(rows)])
    np.testing.assert_allclose(got, alone, rtol=1e-5, atol=1e-5)


def test_byte_dropout_drops_its_share_scales_the_rest_and_is_off_in_eval():
    import torch

    from recommender.compat.context import _torch_modules

    torch.manual_seed(0)
    net = _torch_modules()[2]([3], 2, 2, ContextConfig(dim=8, hidden=16, heads=2,
                                                         dropout=0.25))
    drop = net.tower[2]
    assert type(drop).__name__ == "ByteDropout"
    assert all(type(m).__name__ == "ByteDropout" for lay in net.enc.layers
               for m in (lay.dropout, lay.dropout1, lay.dropout2))
    x = torch.ones(200, 500)
    drop.train()
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.01                  # 64 of 256 byte values dropped
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 256 / 192))
    assert abs(y.mean().item() - 1.0) < 0.02        # expectation kept
    assert not torch.equal(drop(x) != 0, y != 0)    # a new mask every call
    drop.eval()
    assert torch.equal(drop(x), x)
    # p = 0 keeps everything; the state dict has no dropout entries to load
    assert torch.equal(_torch_modules()[2]([3], 2, 2, ContextConfig(
        dim=8, hidden=16, heads=2, dropout=0.0)).tower[2].train()(x), x)
    assert not any("dropout" in k for k in net.state_dict())


def test_saved_weights_score_identically(palette_fit):
    model, codes, _, groups, pal, _, outfits = palette_fit
    qs, ans, _ = _questions(outfits, groups, pal, np.ones(len(groups), bool),
                            np.random.default_rng(2), 30)
    meta = json.loads(json.dumps(model.to_json()))
    back = OutfitContext.from_saved(meta, model.to_arrays())
    np.testing.assert_allclose(back.score(qs, ans, groups, codes, None),
                               model.score(qs, ans, groups, codes, None), rtol=1e-5, atol=1e-5)
    # an empty question (no other items) is still scored, by the slot alone
    s = model.score([[]], ans[:1], groups)
    assert s.shape == (1, 4) and np.isfinite(s).all()
    with pytest.raises(BundleError, match="format"):
        OutfitContext.from_saved(dict(meta, format="other/1"), model.to_arrays())
    with pytest.raises(BundleError, match="incomplete"):
        OutfitContext.from_saved(meta, {})
    with pytest.raises(BundleError, match="do not fit"):
        OutfitContext.from_saved(dict(meta, config=dict(meta["config"], dim=64)),
                                 model.to_arrays()).score(qs, ans, groups, codes, None)


def test_late_term_is_the_mean_over_context_items_and_saved_with_the_model(palette_fit):
    import torch

    model, codes, _, groups, pal, _, outfits = palette_fit
    assert model.config.interaction == "late"     # the default
    net = model._modules()[0]
    assert {"key.weight", "cand_item.weight"} <= set(model.weights_[0])
    torch.manual_seed(0)
    h_ctx, h_cand = torch.randn(5, 3, 32), torch.randn(5, 4, 32)
    pad = torch.tensor([[False] * 3, [False, False, True], [False, True, True]] * 2)[:5]
    slot = torch.from_numpy(groups[:5])
    with torch.no_grad():
        got = net.encode(h_ctx, pad, slot, h_cand)
        net.late = False
        query_only = net.encode(h_ctx, pad, slot, h_cand)
        net.late = True
        # the late term written out: the encoder's outputs of the context items, each
        # against each candidate, averaged over the items present
        h = torch.cat([net.slot(slot)[:, None], h_ctx], 1)
        mask = torch.cat([torch.zeros(5, 1, dtype=torch.bool), pad], 1)
        out = net.enc(h, src_key_padding_mask=mask)[:, 1:]
        for b in range(5):
            k = net.key(out[b][~pad[b]])                  # (items present, dim)
            want = (net.cand_item(h_cand[b]) @ k.T).mean(1) * net.scale
            torch.testing.assert_close(got[b] - query_only[b], want, rtol=1e-4,
                                       atol=1e-5)


def test_a_model_saved_before_the_late_term_loads_as_query_only():
    # a bundle saved before the option has no "interaction" in its config and no
    # late-term weights: it must load and score as it was trained
    codes, n_values, groups, pal, _, outfits = _palette_data(120)
    old = OutfitContext(ContextConfig(**dict(SMALL, epochs=2, members=1,
                                             interaction="query"))).fit(
        codes, n_values, None, outfits, groups)
    assert not any(k.startswith(("key.", "cand_item.")) for k in old.weights_[0])
    meta = json.loads(json.dumps(old.to_json()))
    del meta["config"]["interaction"]
    back = OutfitContext.from_saved(meta, old.to_arrays())
    assert back.config.interaction == "query"
    qs, ans, _ = _questions(outfits, groups, pal, np.ones(len(groups), bool),
                            np.random.default_rng(4), 20)
    np.testing.assert_allclose(back.score(qs, ans, groups, codes, None),
                               old.score(qs, ans, groups, codes, None), rtol=1e-5,
                               atol=1e-5)


def test_bad_settings_and_inputs_are_named():
    with pytest.raises(InputError, match="depth"):
        ContextConfig.from_dict({"depth": 3})
    with pytest.raises(InputError, match="interaction 'pairwise'"):
        ContextConfig.from_dict({"interaction": "pairwise"})
    with pytest.raises(InputError, match="multiple of heads"):
        ContextConfig.from_dict({"dim": 30, "heads": 4})
    # before: a ValueError, a ZeroDivisionError, or accepted and met inside training
    for bad, said in (({"members": "three"}, "context members must be a whole number >= 1"),
                      ({"heads": 0}, "context heads must be a whole number >= 1, got 0"),
                      ({"dim": 0}, "context dim must be a whole number >= 1, got 0"),
                      ({"members": 1.5}, "context members must be a whole number >= 1"),
                      ({"dropout": 1.0}, "context dropout must be a number >= 0 and < 1"),
                      ({"lr": 0}, "context lr must be a number > 0, got 0"),
                      ({"batch_size": 0}, "context batch_size must be a whole number >= 1"),
                      ({"max_outfits": 1}, "context max_outfits must be a whole number >= 2"),
                      ({"num_threads": 0}, "context num_threads must be a whole number >= 1"),
                      ({"seed": -1}, "context seed must be a whole number >= 0, got -1")):
        with pytest.raises(InputError, match=said) as e:
            ContextConfig.from_dict(bad)
        assert e.value.field == next(iter(bad))
    assert ContextConfig.from_dict({"layers": 0, "dropout": 0, "lr": 1}).layers == 0
    with pytest.raises(NotFittedError):
        OutfitContext().score([[0]], [[1, 2]], np.zeros(3, int))
    codes, n_values, groups, *_ = _palette_data(10)
    with pytest.raises(InputError, match="at least 2 outfits"):
        OutfitContext(ContextConfig(**SMALL)).fit(codes, n_values, None, [np.array([1, 2])],
                                                  groups)
    with pytest.raises(InputError, match="'colour'"):
        OutfitContext(ContextConfig(**SMALL)).fit(
            codes, n_values, None, [np.array([1, 2]), np.array([3, 4])], groups).score(
            [[1]], [[2, 3]], groups, {"material": codes["material"]}, None)


@pytest.fixture(scope="module")
def compat_fit(tmp_path_factory):
    b = make_bundle(tmp_path_factory.mktemp("ctx") / "bundle", n_outfits=240)
    catalog = pd.read_parquet(b.path("catalog.parquet"))
    outfits = pd.read_parquet(b.path("outfits.parquet"))
    model = CompatibilityModel(**FAST, context="on", context_params=SMALL).fit(catalog,
                                                                              outfits)
    return b, catalog, outfits, model


def _fitb(model, n=30, seed=0):
    rng = np.random.default_rng(seed)
    N = len(model.items_)
    return ([rng.choice(N, 2, replace=False).tolist() for _ in range(n)],
            [rng.choice(N, 4, replace=False).tolist() for _ in range(n)])


def test_compatibility_model_feeds_the_context_score_to_the_ranker(compat_fit):
    _, _, _, model = compat_fit
    assert model.context_ is not None
    m = model.metrics_
    assert 0 <= m["val_fitb_context"] <= 1
    # each validation set's own figure beside the ranker's and the plain aggregate's
    assert all(f"val_{k}_context" in m for k in ("fitb", "fitb_cold") if f"val_{k}_plain" in m)
    qs, ans = _fitb(model)
    F, names, A = model._fitb_candidate_features(qs, ans)
    ctx = model.score_fitb(qs, ans, "context")
    assert ctx.shape == (len(qs), 4)
    k = names.index("context")
    np.testing.assert_allclose(F[:, k], ctx.ravel(), rtol=1e-5)
    subs = model.items_.codes["subcategory"]
    rev = model.context_.score_reverse(qs, ans, subs)
    np.testing.assert_allclose(F[:, names.index("context_reverse")], rev.ravel(), rtol=1e-5)
    assert {"context_gap", "context_rank", "context_reverse_gap",
            "context_reverse_rank"} <= set(names)


def test_the_networks_score_the_same_questions_once(compat_fit, monkeypatch):
    # before: mixmatch evaluate ran the context networks over fitb.jsonl twice, for the
    # ranker's features and for the "context only" row (0.5 s on MANGO)
    _, _, _, model = compat_fit
    qs, ans = _fitb(model, seed=3)
    first = model.score_fitb(qs, ans, "context")
    calls = []
    score = model.context_.score
    monkeypatch.setattr(model.context_, "score",
                        lambda *a, **k: calls.append(1) or score(*a, **k))
    F, names, _ = model._fitb_candidate_features(qs, ans)
    again = model.score_fitb(qs, ans, "context")
    assert calls == []
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(F[:, names.index("context")], first.ravel().astype(F.dtype))
    again[:] = 0                               # the caller's copy, not the kept scores
    np.testing.assert_array_equal(model.score_fitb(qs, ans, "context"), first)
    # other questions, answers or items are scored anew
    subs = model.items_.codes["subcategory"]
    other_ans = [a[::-1] for a in ans]
    np.testing.assert_array_equal(model.score_fitb(qs, other_ans, "context"),
                                  score(qs, other_ans, subs))
    longer = [q + [a[1]] for q, a in zip(qs, ans)]
    np.testing.assert_array_equal(model.score_fitb(longer, ans, "context"),
                                  score(longer, ans, subs))
    assert len(calls) == 2
    monkeypatch.setattr(model, "_context_memo", None)
    np.testing.assert_array_equal(model.score_fitb(qs, ans, "context"), first)
    assert len(calls) == 3


def test_final_context_model_is_refit_on_all_training_outfits(compat_fit):
    _, catalog, outfits, model = compat_fit
    n_all = int((outfits.groupby("outfit_id")["item_id"].nunique() >= 2).sum())
    m = model.metrics_
    # validation fitted it on the fit outfits only; the final one has seen them all
    assert m["n_fit_outfits"] < n_all
    assert model.context_.n_outfits_ == m["context_refit_outfits"] == n_all
    kept = CompatibilityModel(**FAST, context="on", context_params=SMALL,
                              context_refit=False).fit(catalog, outfits)
    assert kept.context_.n_outfits_ == kept.metrics_["n_fit_outfits"]
    assert "context_refit_outfits" not in kept.metrics_
    # the validation-time network of the same seed: the refit one scores differently
    qs, ans = _fitb(model, seed=2)
    assert not np.allclose(kept.score_fitb(qs, ans, "context"),
                           model.score_fitb(qs, ans, "context"))


def test_stage_log_names_the_outfits_the_context_model_trained_on(compat_fit):
    _, catalog, outfits, _ = compat_fit
    n_all = int((outfits.groupby("outfit_id")["item_id"].nunique() >= 2).sum())
    lines = []
    # a cap between the validation fit's outfits and all of them: one fit logs both
    capped = CompatibilityModel(**FAST, context="on", fitb_ranker="off",
                                context_params=dict(SMALL, max_outfits=n_all - 1)
                                ).fit(catalog, outfits, log=lines.append)
    n_fit = capped.metrics_["n_fit_outfits"]
    assert n_fit < n_all - 1 and capped.context_.n_outfits_ == n_all - 1
    refit = [x for x in lines if "outfit context model (refit on all)" in x]
    assert len(refit) == 1 and f"{n_all - 1} of {n_all} outfits (max_outfits)" in refit[0], refit
    # below the cap the line gives the one count
    val = [x for x in lines if "outfit context model (validation)" in x]
    assert len(val) == 1 and f": {n_fit} outfits," in val[0], val


def test_context_model_is_saved_loaded_and_checked(compat_fit):
    b, _, _, model = compat_fit
    qs, ans = _fitb(model, seed=1)
    model.save(b.path("models"))
    assert b.path("models", CONTEXT_FILE).is_file()
    back = CompatibilityModel.load(b.root)
    assert back.context_.n_outfits_ == model.context_.n_outfits_
    np.testing.assert_allclose(back.score_fitb(qs, ans, "context"),
                               model.score_fitb(qs, ans, "context"), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back.score_fitb(qs, ans), model.score_fitb(qs, ans),
                               rtol=1e-5, atol=1e-6)
    b.path("models", CONTEXT_FILE).unlink()
    with pytest.raises(BundleError, match="outfit context model"):
        CompatibilityModel.load(b.root)
    # saving without a context model removes the stale file and the manifest entry
    model.save(b.path("models"))
    kept, model.context_ = model.context_, None
    ranker, model.fitb_ranker_ = model.fitb_ranker_, None
    try:
        model.save(b.path("models"))
        assert not b.path("models", CONTEXT_FILE).is_file()
        meta = json.loads(b.path("models", "compat.json").read_text())
        assert meta["context"] is None
        assert CompatibilityModel.load(b.root).context_ is None
    finally:
        model.context_, model.fitb_ranker_ = kept, ranker
        model.save(b.path("models"))


def test_context_off_auto_and_bad_mode(compat_fit):
    _, catalog, outfits, _ = compat_fit
    off = CompatibilityModel(**FAST, context="off", fitb_ranker="off").fit(catalog, outfits)
    assert off.context_ is None
    with pytest.raises(InputError, match="no outfit context model"):
        off.score_fitb(*_fitb(off), "context")
    # "auto" leaves it out below MIN_CONTEXT_OUTFITS (200) outfits giving rows
    few = outfits[outfits["outfit_id"].astype(int) < 180]
    auto = CompatibilityModel(**FAST, fitb_ranker="off").fit(catalog, few)
    assert auto.context_ is None
    with pytest.raises(InputError, match="context mode"):
        CompatibilityModel(context="always").fit(catalog, outfits)
    with pytest.raises(InputError, match="unknown outfit context settings"):
        CompatibilityModel(context_params={"depth": 2}).fit(catalog, outfits)
    with pytest.raises(InputError, match="context_refit must be true or false, got 'yes'"):
        CompatibilityModel(context_refit="yes").fit(catalog, outfits)


def test_context_inputs_add_the_model_code_digits():
    from recommender.compat.pair_features import PairFeaturizer

    cat = synthetic_catalog(10, 0)
    codes = [f"{53060000 + 7 * k}" for k in range(len(cat))]
    codes[0] = "UNKNOWN"  # 80% numeric is enough for code features; this one has none
    cat["model_code"] = codes
    outfits = [np.array([0, 25, 45]), np.array([1, 26, 46]), np.array([2, 27, 47])]
    fz = PairFeaturizer(("metadata",), style_folds=0).fit(cat, None, None, outfits)
    items = fz.item_table(cat, None, None)
    base_codes, base_num = fz._style_inputs(items)
    c, num, n_values = fz.context_inputs(items)
    assert set(c) == set(base_codes) | {"code_series", "code_line"}
    # 53060007 -> above the low four digits 5306: series 06, line 53 (stored +1; 0 unknown)
    assert c["code_series"][1] == 7 and c["code_line"][1] == 54
    assert c["code_series"][0] == 0 and c["code_line"][0] == 0
    assert n_values["code_series"] == 101
    waves = num[:, base_num.shape[1]:]
    assert waves.shape == (len(cat), 8) and np.isnan(waves[0]).all()
    low = 7 / 10_000
    np.testing.assert_allclose(waves[1, :2], [np.sin(2 * np.pi * low), np.cos(2 * np.pi * low)])
    # without numeric codes there is nothing to add
    plain = PairFeaturizer(("metadata",), style_folds=0).fit(cat.drop(columns="model_code"),
                                                             None, None, outfits)
    c2, num2, _ = plain.context_inputs(plain.item_table(cat.drop(columns="model_code"),
                                                        None, None))
    assert "code_series" not in c2
