"""Engine on the tiny bundle (tests/recommender/tiny_bundle.py states the construction)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from features.exceptions import InputError, NotFoundError
from recommender.catalog import CATEGORIES
from recommender.engine import Engine
from recommender.rules import RulesError, parse_rules, rules_diff


def ids(group):
    return [it["item_id"] for it in group["items"]]


def by_cat(out):
    return {g["category"]: g for g in out["groups"]}


def test_load_exposes_interface(engine, tiny_bundle):
    assert engine.categories == ["top", "bottom", "dress", "shoes", "bag"]
    assert engine.attribute_vocab["attr_sleeve_length_labels"] == ["Long Sleeves",
                                                                  "Short Sleeves"]
    assert "colour" in engine.attribute_vocab and "price" not in engine.attribute_vocab
    assert engine.rules_version == "default-2" and engine.bundle_version
    assert isinstance(np.asarray(engine.emb), np.ndarray)


def test_complements_grouped_with_reasons(engine):
    out = engine.complements("t2", k=3)
    json.dumps(out)
    g = by_cat(out)
    # the default pairing matrix: a top is completed by bottom, shoes, bag (and
    # outerwear, jewellery, accessory, absent from this catalogue) -- not a dress
    assert [c["category"] for c in out["groups"]] == ["bottom", "shoes", "bag"]
    assert ids(g["bottom"])[0] == "p2" and ids(g["shoes"])[0] == "h2"
    assert g["bottom"]["items"][0]["reason"] == "worn with the red shirt in 2 looks"


def test_diversity_no_near_identical_bags(engine):
    # five near-identical black bags score close to each other; MMR keeps one at most
    out = engine.complements("t2", k=3, categories=["bag"])
    bags = ids(out["groups"][0])
    assert sum(b.startswith("nb") for b in bags) <= 1


def test_diversified_scores_stay_relevance_in_display_order(engine):
    # t0's bottoms: MMR shows a different style before two closer-scored ones, and
    # each shown score is still the pair's compatibility (what the API documents),
    # never rewritten to look sorted
    items = engine.complements("t0", k=5, categories=["bottom"])["groups"][0]["items"]
    a = engine._idx("t0")
    rows = np.array([engine._idx(it["item_id"]) for it in items])
    rel = engine.pair_scores(np.full(len(rows), a), rows)
    assert np.allclose([it["score"] for it in items], rel, atol=1e-4)
    assert np.diff(rel).max() > 0   # the display order is not the score order


def test_cart_complements_exclude_cart_categories(engine):
    out = engine.complements(["t3", "p3"], k=2)
    cats = [g["category"] for g in out["groups"]]
    assert "top" not in cats and "bottom" not in cats
    assert ids(by_cat(out)["shoes"])[0] == "h3"


def test_errors_name_the_field(engine):
    with pytest.raises(NotFoundError) as e:
        engine.complements("nope")
    assert e.value.field == "item_id"
    with pytest.raises(InputError) as e:
        engine.complements("t0", k=0)
    assert e.value.field == "k"
    with pytest.raises(InputError) as e:
        engine.complements("t0", categories=["hat"])
    assert e.value.field == "categories" and "bag" in e.value.allowed
    assert str(e.value).startswith("category 'hat': unknown category")
    absent = next(c for c in CATEGORIES if c not in engine.categories)
    with pytest.raises(InputError) as e:   # a category of the schema, none in stock
        engine.complements("t0", categories=[absent])
    assert str(e.value).startswith(f"category {absent!r}: no item of the catalogue is "
                                   f"in it")
    with pytest.raises(InputError) as e:
        engine.complements("t0", strategy="magic")
    assert e.value.field == "strategy"
    with pytest.raises(InputError) as e:
        engine.search({"sleve": "Long Sleeves"})
    assert e.value.field == "sleve" and "colour" in e.value.allowed
    with pytest.raises(InputError) as e:
        engine.search({"sleeve_length_labels": "Cap"})
    assert e.value.field == "sleeve_length_labels" and "Long Sleeves" in e.value.allowed


def test_rules_pin_and_exclude_through_engine(engine):
    r = parse_rules({"version": "t1", "pairing": {"top": ["bottom"]},
                     "filters": {"exclude_ids": ["p2"]},
                     "pin": [{"item_id": "p2", "position": 1},
                             {"item_id": "p5", "position": 1}]})
    out = engine.complements("t2", k=3, rules=r)
    assert [g["category"] for g in out["groups"]] == ["bottom"]
    b = out["groups"][0]
    assert "p2" not in ids(b) and ids(b)[0] == "p5" and b["items"][0]["pinned"]
    assert out["rules_version"] == "t1"


def test_in_stock_only(engine):
    r = parse_rules({"version": 2, "in_stock_only": True})
    for item in ("t0", "t2"):
        out = engine.complements(item, k=5, rules=r, categories=["bottom"])
        assert "p0_oos" not in ids(out["groups"][0])


NO_BLACK = {"exclude_attributes": [{"field": "colour", "value": "BLACK"}]}


def test_complements_fallback_never_shows_an_excluded_colour_or_category(engine):
    # 6 bottoms and 10 bags: a page of 6 is short once the black ones are excluded;
    # the fallback fill must not top it up with them
    r = parse_rules({"version": "nb", "filters": NO_BLACK})
    out = engine.complements("t1", k=6, rules=r, categories=["bottom", "bag"])
    shown = [it for g in out["groups"] for it in g["items"]]
    assert shown and not [it["item_id"] for it in shown
                          if engine.table.column("colour")[engine._idx(it["item_id"])]
                          == "BLACK"]
    assert not any(it["fallback"] for it in shown)



@pytest.mark.parametrize("filters", [{"exclude_categories": ["bag"]},
                                     {"include_categories": ["bottom", "shoes"]}])
def test_complements_offer_no_group_for_a_category_the_rules_exclude(engine, filters):
    # the group used to be there, empty (before that: full of fallbacks)
    pairing = {c: list(v) for c, v in engine.rules.pairing.items()}
    r = parse_rules({"version": "nobag", "pairing": pairing, "filters": filters})
    for categories in (None, ["bottom", "bag"]):
        out = engine.complements("t1", k=3, rules=r, categories=categories)
        cats = [g["category"] for g in out["groups"]]
        assert "bag" not in cats and "bottom" in cats
        assert all(len(g["items"]) == 3 for g in out["groups"])
    cold = engine.complements_for_features({"category": "top", "colour": "RED"},
                                           np.asarray(engine.emb[engine._idx("t2")]), k=3,
                                           rules=r)
    assert "bag" not in [g["category"] for g in cold["groups"]]


def test_upsell_fallback_never_shows_an_excluded_colour(engine):
    r = parse_rules({"version": "nb", "filters": NO_BLACK})
    out = engine.upsell("t1", k=5, rules=r)  # t1 (33.0): t0_plus (39.0, BLACK) in band
    assert ids(out) and "t0_plus" not in ids(out)
    assert not any(it["fallback"] for it in out["items"])
    assert "t0_plus" in ids(engine.upsell("t1", k=5))


def test_set_rules_invalid_keeps_last_good(engine, tmp_path):
    good = engine.rules
    p = tmp_path / "rules.toml"
    p.write_text('version = "x"\n[[caps]]\nfield = "colr"\nmax = 2\n')
    with pytest.raises(RulesError, match=r"rules\.caps\[0\]\.field") as err:
        engine.set_rules(p)
    assert engine.rules is good
    # the message opens with the file (a server may serve several); field and the
    # allowed values stay for programs
    assert str(err.value).startswith(f"{p}: rules.caps[0].field: 'colr' is not a field")
    assert err.value.field == "rules.caps[0].field" and "colour" in err.value.allowed
    p.write_text('version = "x"\n[dedupe]\ncolourways = "yes"\n')
    with pytest.raises(RulesError, match=rf"^{re.escape(str(p))}: rules\.dedupe\.colourways"):
        engine.set_rules(p)


def test_rules_diff(engine):
    # the same pairing matrix: only the exclusion differs (without one, every other
    # category -- dresses for a top -- would be offered too, a change of its own)
    after = parse_rules({"version": 2, "filters": {"exclude_ids": ["p2"]},
                         "pairing": {c: list(v) for c, v in engine.rules.pairing.items()}})
    d = rules_diff(engine.rules, after, engine, ["t2", "t3"], k=2)
    row = d[(d.item_id == "t2") & (d.category == "bottom")].iloc[0]
    assert row.changed and row.removed == ["p2"] and "p2" not in row.after
    assert not d[(d.item_id == "t3")].changed.any()


def test_upsell_with_prices(engine):
    out = engine.upsell("t0", k=3)
    json.dumps(out)
    assert out["price_available"] is True
    got = ids(out)
    assert got[0] == "t0_plus"  # 1.3x, near copy
    assert "t0_lux" not in got  # 2.5x, outside the default band
    assert all(30.0 < it["price"] <= 48.0 for it in out["items"])
    wide = engine.upsell("t0", k=3, band=[1.0, 3.0])
    assert "t0_lux" in ids(wide)
    with pytest.raises(InputError) as e:
        engine.upsell("t0", band=[2.0, 1.0])
    assert e.value.field == "band[1]"


def test_upsell_with_context_is_compatible(engine):
    out = engine.upsell("t1", k=2, context=["p1", "h1"], band=[1.0, 5.0])
    assert "compatibility" in out["note"] and len(out["items"]) == 2


def test_upsell_without_prices_says_so(tiny_bundle_no_price):
    e = Engine.load(tiny_bundle_no_price)
    out = e.upsell("t0", k=2)
    assert out["price_available"] is False and out["price"] is None
    assert "no prices" in out["note"]
    assert all("price" not in it for it in out["items"])
    assert ids(out)[0] in ("t0_plus", "t0_lux")


def test_complete_fills_missing_slots_jointly(engine):
    out = engine.complete(["t1"], n=3)
    json.dumps(out)
    looks = out["looks"]
    assert len(looks) == 3
    first = [it["item_id"] for it in looks[0]["items"]]
    assert first == ["t1", "p1", "h1", "g1"]
    assert looks[0]["score"] >= looks[1]["score"] >= looks[2]["score"]
    filled = [frozenset(it["item_id"] for it in lk["items"] if not it["given"]) for lk in looks]
    assert len(set(filled)) == 3


@pytest.mark.parametrize("items, slots, rules", [
    (["t1"], ["top"], None),          # the only slot asked for is the anchor's own
    (["d1"], ["dress"], None),
    # every slot emptied by the rules: the look goes on without them, alone
    (["t1"], ["bottom", "bag"], {"version": "none", "filters": {
        "exclude_categories": ["bottom", "bag"]}}),
])
def test_complete_with_nothing_to_add_has_no_score(engine, items, slots, rules):
    out = engine.complete(items, slots=slots, n=2,
                          rules=parse_rules(rules) if rules else None)
    assert [[it["item_id"] for it in lk["items"]] for lk in out["looks"]] == [items]
    # nothing to score is None (JSON null), not 0.0, which reads as a terrible look
    assert out["looks"][0]["score"] is None
    assert json.loads(json.dumps(out, allow_nan=False))["looks"][0]["score"] is None


def test_complete_of_given_items_only_scores_them(engine):
    out = engine.complete(["t1", "p1"], slots=[], n=1)
    assert out["looks"][0]["score"] == engine.score_outfit(["t1", "p1"])["score"]


def test_complete_dress_and_no_body(engine):
    out = engine.complete(["d0"], n=1)
    assert [it["category"] for it in out["looks"][0]["items"]] == ["dress", "shoes", "bag"]
    out = engine.complete(["h3"], n=2)
    cats = [it["category"] for it in out["looks"][0]["items"]]
    assert "shoes" in cats and ({"top", "bottom"} <= set(cats) or "dress" in cats)
    out = engine.complete(["t4"], slots=["bottom"], n=1)
    assert [it["item_id"] for it in out["looks"][0]["items"]] == ["t4", "p4"]


def test_complete_skips_a_slot_the_rules_empty(engine):
    # every bag excluded: the looks go on without a bag (as for a catalogue without
    # bags) instead of there being no look at all
    r = parse_rules({"version": "nb", "filters": {"exclude_categories": ["bag"]}})
    out = engine.complete(["t1"], n=2, rules=r)
    assert len(out["looks"]) == 2
    assert [it["item_id"] for it in out["looks"][0]["items"]] == ["t1", "p1", "h1"]
    for look in out["looks"]:
        assert [it["category"] for it in look["items"]] == ["top", "bottom", "shoes"]
    r = parse_rules({"version": "one", "filters": {"include_ids": ["p1", "h1"]}})
    out = engine.complete(["t1"], n=2, rules=r)
    assert [it["item_id"] for it in out["looks"][0]["items"]] == ["t1", "p1", "h1"]


def test_score_outfit(engine):
    good = engine.score_outfit(["t1", "p1", "h1"])
    bad = engine.score_outfit(["t1", "p4", "h2"])
    assert good["score"] > bad["score"] and len(good["pairs"]) == 3
    assert all(p["reasons"] for p in good["pairs"])
    with pytest.raises(InputError):
        engine.score_outfit(["t1"])


def test_search_filters_and_like(engine):
    out = engine.search({"colour": "RED"}, k=10)
    assert {it["item_id"] for it in out["items"]} == {"t2", "p2", "h2", "g2", "d2"}
    out = engine.search({"sleeve_length_labels": "Long Sleeves"}, like="t0", k=3)
    assert [it["item_id"] for it in out["items"]][:2] == ["t0_plus", "t0_lux"]
    assert all(it["category"] == "top" for it in out["items"])
    out = engine.search({"category": "dress", "attr_sleeve_length_labels": "Short Sleeves"})
    assert [it["item_id"] for it in out["items"]] == ["d1"]


@pytest.mark.parametrize("bad", ["colour=RED", ["colour"], 5])
def test_search_filters_not_a_mapping_is_an_input_error(engine, bad):
    with pytest.raises(InputError, match="filters must be a mapping") as e:
        engine.search(bad, k=2)
    assert e.value.field == "filters"


def test_cold_start_complements_without_rebuild(engine):
    # a new blue top: the style-3 direction, slightly perturbed, not in the catalogue
    e = np.asarray(engine.emb[engine._idx("t3")]) + 0.05
    out = engine.complements_for_features({"category": "top", "colour": "BLUE"}, e, k=2)
    json.dumps(out)
    g = by_cat(out)
    assert ids(g["bottom"])[0] == "p3" and ids(g["shoes"])[0] == "h3"
    with pytest.raises(InputError) as err:
        engine.complements_for_features({"category": "hat"}, e)
    assert err.value.field == "category"


@pytest.fixture(scope="module")
def many_tops_engine(tmp_path_factory):
    """210 white tops each worn with two bottoms, one red top worn once and one red top
    never worn: more tops than the 200 that ``Engine.popular`` keeps."""
    import pandas as pd

    from recommender.build import bundle_from_tables
    from recommender.catalog import validate_catalog

    n = 210
    ids_ = ([f"tw{i:03d}" for i in range(n)] + ["a_red_never", "t_red_worn"]
            + [f"pb{i:03d}" for i in range(n)] + ["pb_red"])
    cats = ["top"] * (n + 2) + ["bottom"] * (n + 1)
    colours = ["WHITE"] * n + ["RED", "RED"] + ["BLUE"] * (n + 1)
    cat = pd.DataFrame({"item_id": ids_, "category": cats, "subcategory": "",
                        "colour": colours, "material": "", "gender": "Female",
                        "image_path": ""})
    cat, report = validate_catalog(cat, check_images=False)
    assert report.ok, report.summary()
    outfits = [(f"o{i}a", x) for i in range(n) for x in (f"tw{i:03d}", f"pb{i:03d}")]
    outfits += [(f"o{i}b", x) for i in range(n)
                for x in (f"tw{i:03d}", f"pb{(i + 1) % n:03d}")]
    outfits += [("ored", "t_red_worn"), ("ored", "pb_red")]
    outfits = pd.DataFrame(outfits, columns=["outfit_id", "item_id"])
    emb = np.random.default_rng(0).normal(size=(len(cat), 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    b = bundle_from_tables(tmp_path_factory.mktemp("many_tops") / "bundle", cat, outfits,
                           emb, config={"quick": True}, source="test")
    return Engine.load(b.root)


def test_search_without_like_orders_every_match_by_popularity(many_tops_engine):
    # the red top worn in a look beats the never-worn one, although 210 white tops are
    # worn more often than either (only the 200 most worn used to be counted)
    out = many_tops_engine.search({"category": "top", "colour": "RED"}, k=2)
    assert [it["item_id"] for it in out["items"]] == ["t_red_worn", "a_red_never"]
    assert out["items"][0]["score"] > out["items"][1]["score"] == 0


def test_search_finds_what_the_rules_allow_past_the_first_fifty_matches(many_tops_engine):
    # 210 white tops are worn more than either red one: ranked first, all 50 of the
    # candidates the rules used to see were white, and the page came back empty
    r = parse_rules({"version": "nw", "filters": {"exclude_attributes": [
        {"field": "colour", "value": "WHITE"}]}})
    out = many_tops_engine.search({"category": "top"}, k=2, rules=r)
    assert [it["item_id"] for it in out["items"]] == ["t_red_worn", "a_red_never"]
    assert out["n_matches"] == 2  # what may be shown, not what the rules hide
    like = many_tops_engine.search({}, like="t_red_worn", k=2, rules=r)
    assert [it["item_id"] for it in like["items"]] == ["a_red_never"]
    assert like["n_matches"] == 1


@pytest.mark.parametrize("strategy", ["default", "visual", "cooccurrence"])
def test_complements_k_beyond_the_graphs_twenty_edges(many_tops_engine, strategy):
    # the graph keeps 20 compat/visual edges per item and category; the API allows
    # k = 50 and the category has 211 bottoms, so a page asking for 50 gets 50
    out = many_tops_engine.complements("tw000", k=50, categories=["bottom"],
                                       strategy=strategy)
    items = out["groups"][0]["items"]
    assert len(items) == 50 and len({it["item_id"] for it in items}) == 50
    assert not any(it["fallback"] for it in items)


def test_complements_and_upsell_find_what_the_rules_allow_past_the_graph_row(
        many_tops_engine):
    # a campaign allows one of the 211 bottoms; tw000's row (20 edges, topped up to
    # 2k) does not hold it, and the group came back empty
    e = many_tops_engine
    r = parse_rules({"version": "one", "filters": {"include_ids": ["pb_red"]}})
    assert "pb_red" not in ids(e.complements("tw000", k=5, categories=["bottom"])
                               ["groups"][0])
    # pb_red is worn once: neither tw000's partner nor among the 200 most-worn bottoms,
    # so cooccurrence reaches it past its history, by the compatibility scorer
    for strategy in ("default", "visual", "cooccurrence"):
        out = e.complements("tw000", k=5, categories=["bottom"], rules=r, strategy=strategy)
        assert ids(out["groups"][0]) == ["pb_red"], strategy
    cold = e.complements_for_features({"category": "top", "colour": "WHITE"},
                                      np.asarray(e.emb[e._idx("tw000")]), k=5, rules=r)
    assert ids(by_cat(cold)["bottom"]) == ["pb_red"]
    # completing the look: the bottom slot used to be skipped
    look = e.complete(["tw000"], slots=["bottom"], n=1, rules=r)["looks"][0]
    assert [it["item_id"] for it in look["items"]] == ["tw000", "pb_red"]
    # up-sell (no prices: by similarity) ranks only its best max(50, 4k) candidates
    r = parse_rules({"version": "red", "filters": {"include_attributes": [
        {"field": "colour", "value": "RED"}]}})
    assert set(ids(e.upsell("tw000", k=3, rules=r))) == {"a_red_never", "t_red_worn"}


def _counting_scorer(e, monkeypatch) -> list[tuple[int, int]]:
    """Every pair the engine's scorer is asked for, in order."""
    seen: list[tuple[int, int]] = []
    score = e.pair_scores

    def counting(a, b):
        seen.extend(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
        return score(a, b)

    monkeypatch.setattr(e, "pair_scores", counting)
    return seen


#: eleven of the 211 bottoms, none of them in tw000's graph rows
ELEVEN = ["pb_red"] + [f"pb{i:03d}" for i in range(100, 110)]


def test_widening_scores_each_candidate_once(many_tops_engine, monkeypatch):
    # eleven allowed bottoms for a page of 40: the first round's top-up finds them
    # all, the widening asks again for more, and the second round used to score
    # again every candidate the first had scored
    e = many_tops_engine
    r = parse_rules({"version": "eleven", "filters": {"include_ids": ELEVEN}})
    seen = _counting_scorer(e, monkeypatch)
    out = e.complements("tw000", k=40, categories=["bottom"], rules=r)
    assert sorted(ids(out["groups"][0])) == sorted(ELEVEN)
    assert len(seen) == len(set(seen)) == 11


@pytest.mark.parametrize("strategy", ["default", "visual", "cooccurrence"])
def test_widened_top_up_scores_only_what_the_rules_allow(many_tops_engine, monkeypatch,
                                                         strategy):
    # the top-up scored the category's nearest items and the rules dropped them
    # afterwards: with eleven bottoms allowed, tw000's k = 40 group had 260 pairs
    # scored for 11 that could be shown (on MANGO, pink only: 203 of 5005)
    e = many_tops_engine
    allowed = set(e.table.index_of(ELEVEN).tolist())
    r = parse_rules({"version": "eleven", "filters": {"include_ids": ELEVEN}})
    seen = _counting_scorer(e, monkeypatch)
    for item, k in (("tw000", 40), ("tw000", 5), (["tw000", "tw100"], 10)):
        out = e.complements(item, k=k, categories=["bottom"], rules=r, strategy=strategy)
        # the group as full as the allowed bottoms make it, by the strategy (no fallback)
        items = out["groups"][0]["items"]
        assert len(items) == min(k, 11) and not any(it["fallback"] for it in items)
    look = e.complete(["tw000"], slots=["bottom"], n=3, rules=r, strategy=strategy)
    assert all(look["looks"]) and len(look["looks"]) == 3
    assert seen and {b for _, b in seen} <= allowed


@pytest.mark.parametrize("strategy", ["default", "visual", "cooccurrence"])
def test_widening_without_rescoring_gives_the_same_answer(many_tops_engine, monkeypatch,
                                                           strategy):
    import recommender.engine as engine_mod

    e = many_tops_engine
    one = parse_rules({"version": "one", "filters": {"include_ids": ["pb_red", "pb007"]}})
    red = parse_rules({"version": "red", "filters": {"include_attributes": [
        {"field": "colour", "value": "RED"}]}})
    calls = [("tw000", 40, one), ("tw000", 5, one), (["tw000", "tw100"], 10, one),
             ("pb003", 5, red), ("tw000", 40, None)]
    remembered = [e.complements(i, k=k, rules=r, strategy=strategy) for i, k, r in calls]
    # every round scoring its candidates afresh, as before
    monkeypatch.setattr(engine_mod, "_ScoredOnce", lambda eng: eng)
    for (i, k, r), got in zip(calls, remembered):
        assert e.complements(i, k=k, rules=r, strategy=strategy) == got


def test_cold_start_complements_k_beyond_thirty(many_tops_engine):
    # a new top's candidates were its 30 nearest bottoms (plus the partners of its
    # nearest tops): k = 50 got fewer than 50 from a category of 211
    e = many_tops_engine
    out = e.complements_for_features({"category": "top", "colour": "WHITE"},
                                     np.asarray(e.emb[e._idx("tw000")]), k=50)
    assert len(by_cat(out)["bottom"]["items"]) == 50


@pytest.mark.parametrize("rel", ["catalog.parquet", "features/features.parquet",
                                 "features/embeddings.npy", "graph/csr_compat_top_indptr.npy",
                                 "graph/csr_compat_top_weights.npy"])
def test_a_bundle_file_cut_short_is_refused_by_name(tiny_bundle, tmp_path, rel):
    """An interrupted copy of a bundle: Engine.load raised Arrow's 'Parquet magic
    bytes not found' or numpy's 'mmap length is greater than file size' (no file
    named; a traceback from the CLI) instead of a BundleError naming the file."""
    import shutil

    from features.exceptions import BundleError

    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    data = (root / rel).read_bytes()
    (root / rel).write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=rel.rsplit("/", 1)[-1]):
        Engine.load(root)


def test_search_lists_every_colourway():
    # one colourway per model is a rule for a page's groups; a search lists them all
    from recommender.engine import _search_rules
    from recommender.rules import default_rules
    rs = default_rules()
    assert rs.colourways and not _search_rules(rs).colourways


def _recording_candidates(monkeypatch, strategy: str) -> list[tuple]:
    """Every ``(anchor, category, k, fill)`` the strategy answers, in order (a call
    that stops to have its pairs scored with the other beams' is not an answer)."""
    from recommender.strategies import STRATEGIES

    asked: list[tuple] = []
    cls = STRATEGIES[strategy]
    candidates = cls.candidates

    def recording(self, state, item_idx, category, k, fill=0):
        got = candidates(self, state, item_idx, category, k, fill)
        asked.append((int(item_idx), category, int(k), int(fill)))
        return got

    monkeypatch.setattr(cls, "candidates", recording)
    return asked


#: the looks of t1 on the tiny bundle with black and white items excluded: every slot
#: is widened past the graph rows, for each beam
NO_BLACK_WHITE = {"version": "nbw", "filters": {"exclude_attributes": [
    {"field": "colour", "values": ["BLACK", "WHITE"]}]}}


@pytest.mark.parametrize("strategy", ["default", "visual", "cooccurrence"])
def test_complete_asks_the_strategy_once_per_anchor_and_slot(engine, monkeypatch, strategy):
    # each beam widened its slot afresh: t1's shoes were asked for (and their top-up
    # scored) once per bottom in the beams; on MANGO under a pink-only rules file
    # that was 120 strategy calls and 38 scorer calls (~4 ms each) for one look
    r = parse_rules(NO_BLACK_WHITE)
    asked = _recording_candidates(monkeypatch, strategy)
    out = engine.complete(["t1"], n=3, rules=r, strategy=strategy)
    assert len(out["looks"]) == 3
    t1 = engine._idx("t1")
    # the beams share t1 for the shoes and the bag: asked for them once
    assert (t1, "shoes") in {q[:2] for q in asked} and (t1, "bag") in {q[:2] for q in asked}
    assert len(asked) == len(set(asked))


@pytest.mark.parametrize("strategy", ["default", "visual", "cooccurrence"])
@pytest.mark.parametrize("items, rules", [
    (["t1"], NO_BLACK_WHITE), (["t1", "h2"], NO_BLACK_WHITE), (["p3"], None),
    (["d2"], {"version": "red", "filters": {"include_attributes": [
        {"field": "colour", "values": ["RED", "PINK"]}]}})])
def test_complete_sharing_the_widenings_gives_the_same_looks(engine, monkeypatch, strategy,
                                                             items, rules):
    import recommender.engine as engine_mod

    r = parse_rules(rules) if rules else None
    shared = engine.complete(items, n=3, rules=r, strategy=strategy)

    class Alone(engine_mod._Widenings):
        # each widening on its own, as before: nothing remembered across the beams,
        # neither the strategy's answers nor the merged rounds (a baseline that kept
        # the merged rounds shared them as the code under test does, and a key that
        # mixed two beams' anchor sets up passed)
        def __init__(self, eng):
            super().__init__(eng)
            self.scored = eng
            self.answers = _Forgetful()
            self.merged = _Forgetful()

    class _Forgetful(dict):
        # asked afresh every time: never holds a key, but the answer just stored is
        # read back (``_merged_allowed`` stores a round, then reads it)
        def __contains__(self, key):
            return False

        def get(self, key, default=None):
            return default

    monkeypatch.setattr(engine_mod, "_Widenings", Alone)
    alone = engine.complete(items, n=3, rules=r, strategy=strategy)
    assert shared == alone and shared["looks"]


def test_complete_scores_each_pair_of_a_look_once(engine, monkeypatch):
    # the beams' looks share items: (t1, h2) came once per bottom in the beams, and
    # every copy went to the scorer (half the pairs of a MANGO completion)
    seen = []
    score = engine.pair_scores

    def counting(a, b):
        seen.append(list(zip(np.asarray(a).tolist(), np.asarray(b).tolist())))
        return score(a, b)

    monkeypatch.setattr(engine, "pair_scores", counting)
    out = engine.complete(["t1"], n=3)
    assert len(out["looks"]) == 3 and len(seen) >= 2
    for call in seen:
        assert len(call) == len(set(call))


def test_complete_under_rules_scores_the_beams_widenings_together(engine, monkeypatch):
    # each beam's widening called the scorer for its own anchors' top-ups: t1's look
    # made 51 calls of one pair each (the scorer's cost is mostly per call: ~4 ms on
    # MANGO); the beams of a step now share a call per round. (On this catalogue
    # only the default strategy's widenings score: visual tops up by cosine, and
    # the history and popular items fill cooccurrence's.)
    calls = []
    score = engine.pair_scores

    def counting(a, b):
        calls.append(len(a))
        return score(a, b)

    monkeypatch.setattr(engine, "pair_scores", counting)
    out = engine.complete(["t1"], n=3, rules=parse_rules(NO_BLACK_WHITE))
    slots = [it["category"] for it in out["looks"][0]["items"][1:]]
    assert slots == ["bottom", "shoes", "bag"] and len(out["looks"]) == 3
    # per slot: the widenings' pairs in one call, the looks' pairs in another
    assert len(calls) <= 2 * len(slots)


class _FallsBackToPopular:
    """A strategy as a data scientist may register one: scoring wrapped in a
    defensive ``except`` (of ``catches``) that shows the category's popular items
    instead."""

    catches: type[BaseException] = Exception

    def candidates(self, state, item_idx, category, k, fill=0):
        try:
            return super().candidates(state, item_idx, category, k, fill)
        except self.catches:
            idx, w = state.popular(category)
            keep = idx != item_idx
            idx, w = idx[keep][:k].astype(np.int64), w[keep][:k].astype(float)
            return idx, w, [""] * len(idx)


@pytest.mark.parametrize("catches", [Exception, BaseException])
def test_a_strategy_catching_exceptions_does_not_swallow_the_widenings_deferral(
        engine, monkeypatch, catches):
    # complete() stops a widening whose pairs are not scored yet (_Deferred) to score
    # the beams' pairs in one call; an Exception, it was caught by a strategy's
    # fallback, whose answer (popular bags) was kept as the widening's: t1's looks
    # 2-5 under these rules showed other shoes and bags than without the try/except.
    # A BaseException, it still met a bare ``except:`` (or ``except BaseException``)
    from recommender.strategies import STRATEGIES, DefaultStrategy

    class Guarded(_FallsBackToPopular, DefaultStrategy):
        name = "guarded"

    Guarded.catches = catches

    monkeypatch.setitem(STRATEGIES, "guarded", Guarded)
    r = parse_rules(NO_BLACK_WHITE)
    plain = engine.complete(["t1"], n=5, rules=r, per_slot=2)
    guarded = engine.complete(["t1"], n=5, rules=r, per_slot=2, strategy="guarded")
    assert len(plain["looks"]) == 5
    assert {**guarded, "strategy": "default"} == plain


def test_rules_allowed_reads_the_category_from_its_rows_and_filters_the_rest(engine):
    # the widening's state looks a row of its category up in the allowed rows: the
    # same answer as the rules' filters, for those and for rows of other categories
    from recommender.engine import _RulesAllowed
    from recommender.rules import _filters_ok

    r = parse_rules(NO_BLACK_WHITE)
    rows = engine._cat_rows["bottom"]
    state = _RulesAllowed(engine, r, "bottom", rows[_filters_ok(r, engine.table, rows)])
    every = np.arange(len(engine.catalog))[::-1]
    want = _filters_ok(r, engine.table, every)
    assert 0 < want.sum() < len(every)
    assert state.allowed(every).tolist() == want.tolist()
    assert state.allowed(np.zeros(0, np.int64)).tolist() == []


@pytest.mark.parametrize("strategy", ["default", "visual", "cooccurrence"])
def test_widenings_shared_by_the_beams_answer_each_beam_as_alone(engine, strategy):
    # complete() hands one step's beams to _widen_all with one _Widenings: each
    # beam's answer must be the one its own anchors get asked alone (a widening
    # remembered under a key that ignored the other anchors served every beam the
    # first beam's candidates, and no look on this catalogue showed it)
    from recommender.engine import _Widenings

    rs = parse_rules(NO_BLACK_WHITE)
    strat = engine._strategy(strategy)
    t1 = engine._idx("t1")
    asks = [([t1, int(b)], "shoes") for b in engine._cat_rows["bottom"]] + [
        ([t1], "shoes"), ([t1], "bag")]
    together = engine._widen_all(strat, asks, 24, rs, 8, _Widenings(engine))
    for (anchors, category), (idx, sc, reasons) in zip(asks, together):
        want = engine._merged_allowed(strat, anchors, category, 24, 0, rs, 8)
        assert idx.tolist() == want[0].tolist() and len(idx), (anchors, category)
        assert np.array_equal(sc, want[1]) and reasons == want[2]


def _record_graph_stage(root) -> list[str]:
    """Record the bundle's graph files as the graph stage's outputs, as a build does
    (the tiny bundle is written without stage records)."""
    from recommender.bundle import Bundle

    b = Bundle.open(root)
    outputs = sorted(str(p.relative_to(root)) for p in (root / "graph").iterdir())
    b.record_stage("graph", inputs_hash="h", outputs=outputs)
    return outputs


def test_load_reports_the_outputs_replaced_since_the_build(tiny_bundle, tmp_path, caplog):
    # before: a graph file copied by hand over the one the build recorded (another
    # bundle's, same shape) was served with no sign: `mixmatch build` would rerun the
    # stage, while the engine, its log and /healthz said nothing
    import shutil

    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    _record_graph_stage(root)
    assert Engine.load(root).changed_outputs == {}
    rel = "graph/csr_compat_top_weights.npy"
    np.save(root / rel, np.load(root / rel) * 0.5)
    with caplog.at_level("WARNING", logger="recommender.engine"):
        engine = Engine.load(root)
    assert engine.changed_outputs == {"graph": [rel]}
    assert engine.stale_stages == []          # its own meaning: inputs rewritten since
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and rel in warnings[0], warnings
    assert f"mixmatch graph --bundle {root}" in warnings[0]
    assert engine.complements("t2", k=3)["groups"]   # served all the same


def test_load_of_a_bundle_recorded_without_output_hashes_reports_nothing_changed(
        tiny_bundle, tmp_path, caplog):
    # bundles built before output_hashes were kept (the MANGO one): no bytes to compare
    import shutil

    from recommender.bundle import Bundle

    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    _record_graph_stage(root)
    b = Bundle.open(root)
    del b.manifest["stages"]["graph"]["output_hashes"]
    b.save()
    rel = "graph/csr_compat_top_weights.npy"
    np.save(root / rel, np.load(root / rel) * 0.5)
    with caplog.at_level("WARNING", logger="recommender.engine"):
        assert Engine.load(root).changed_outputs == {}
    assert "differ from what the build recorded" not in caplog.text


def test_load_says_to_rebuild_stale_stages_in_the_pipelines_order(tiny_bundle, tmp_path,
                                                                   caplog):
    # the stale stages are listed by name, but rebuilt in the pipeline's order: the
    # log said "train --stage compatibility; then features", rebuilding the model
    # from the features about to be replaced
    import shutil

    from recommender.bundle import Bundle, file_hash

    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    b = Bundle.open(root)
    (root / "net.pt").write_text("old network")
    b.record_stage("attributes", inputs_hash="a", outputs=["net.pt"])
    for stage in ("features", "compatibility"):
        b.record_stage(stage, inputs_hash="b", outputs=[],
                       extra={"reads": {"net.pt": file_hash(root / "net.pt")}})
    (root / "net.pt").write_text("retrained network")
    b.record_stage("attributes", inputs_hash="c", outputs=["net.pt"])
    with caplog.at_level("WARNING", logger="recommender.engine"):
        engine = Engine.load(root)
    assert engine.stale_stages == ["compatibility", "features"]
    said = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    first = said.index(f"mixmatch features --bundle {root}")
    assert first < said.index(f"mixmatch train --bundle {root} --stage compatibility")


def test_diversity_unset_keeps_each_lists_own_default(engine):
    # an A/B variant without params passes nothing: the lists are today's, bit for bit
    assert engine.complements("t0", k=5) == engine.complements("t0", k=5, diversity=None)
    assert engine.upsell("t2", k=3) == engine.upsell("t2", k=3, diversity=None)
    # the defaults, as diversity: complements lam 0.7, upsell lam 0.85
    assert engine.complements("t0", k=5, diversity=0.3) == engine.complements("t0", k=5)
    assert engine.upsell("t2", k=3, diversity=0.15) == engine.upsell("t2", k=3)


def test_diversity_zero_is_the_relevance_order(engine):
    # t0's bottoms: the default re-ranking shows a different style before two closer
    # scored ones; diversity 0 (lam 1) is the score order, the same on every call
    def bottoms(**kw):
        return engine.complements("t0", k=5, categories=["bottom"], **kw)["groups"][0]
    default, plain = bottoms(), bottoms(diversity=0.0)
    scores = [it["score"] for it in plain["items"]]
    assert scores == sorted(scores, reverse=True)
    assert ids(default) != ids(plain)
    assert bottoms(diversity=0.0) == plain and bottoms(diversity=1.0) == bottoms(diversity=1.0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.3", True, [0.3]])
def test_diversity_out_of_range_is_refused_by_name(engine, bad):
    for call in (lambda: engine.complements("t0", diversity=bad),
                 lambda: engine.upsell("t2", diversity=bad)):
        with pytest.raises(InputError) as e:
            call()
        assert e.value.field == "diversity" and "[0, 1]" in str(e.value)


def test_diversity_reorders_upsell_and_cold_start(engine):
    def up(**kw):
        return [it["item_id"] for it in engine.upsell("t0", k=5, **kw)["items"]]
    assert len({tuple(up()), tuple(up(diversity=0.0)), tuple(up(diversity=1.0))}) == 3
    feats, emb = {"category": "top", "colour": "Black"}, np.asarray(engine.emb[engine._idx("t0")])

    def cold(**kw):
        out = engine.complements_for_features(feats, emb, k=5, categories=["bag"], **kw)
        return ids(out["groups"][0])
    assert cold() == cold(diversity=None) == cold(diversity=0.3)
    # the near-identical black bags: all five without diversity, one at most with it
    assert sum(b.startswith("nb") for b in cold(diversity=0.0)) == 5
    assert sum(b.startswith("nb") for b in cold(diversity=1.0)) <= 1
