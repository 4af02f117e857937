"""Each rule primitive with a known answer, conflicts included (module docstring of
recommender.rules documents the order)."""
from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from recommender.rules import (DEFAULT_RULES_PATH, Group, ItemTable, RulesError,
                               apply_rules, default_rules, dumps_toml, load_rules,
                               pairing_for, parse_rules, save_rules, validate_rules_fields)


@pytest.fixture()
def table():
    # 8 bags ranked b0 > b1 > ... > b7 by the strategy; colours and prices known
    df = pd.DataFrame({
        "item_id": [f"b{i}" for i in range(8)] + ["t0", "s0", "s1"],
        "category": ["bag"] * 8 + ["top", "shoes", "shoes"],
        "colour": ["BLACK", "BLACK", "BLACK", "RED", "BLACK", "BROWN", "RED", "WHITE",
                   "WHITE", "BLACK", "BLUE"],
        "price": [10, 20, 30, 40, 50, 60, 70, 80, 50, 30, 40],
        "in_stock": [True, True, False, True, True, True, True, True, True, True, True],
    })
    return ItemTable(df)


def bags(table):
    idx = table.index_of([f"b{i}" for i in range(8)])
    return Group("bag", idx, np.linspace(0.9, 0.2, 8), [f"r{i}" for i in range(8)])


def shoes(table):
    return Group("shoes", table.index_of(["s0", "s1"]), np.array([0.8, 0.7]), ["", ""])


def ids(table, group):
    return [table.ids[it["idx"]] for it in group["items"]]


def run(table, rules, k=4, groups=None, **kw):
    r = parse_rules({"version": 1, **rules})
    return apply_rules(groups or [bags(table)], r, table, k=k, **kw)


def test_no_rules_keeps_ranking(table):
    out = run(table, {}, mode="search")
    assert ids(table, out[0]) == ["b0", "b1", "b2", "b3"]
    assert not any(it["fallback"] or it["pinned"] for it in out[0]["items"])


def test_exclude_and_include_ids(table):
    assert ids(table, run(table, {"filters": {"exclude_ids": ["b0", "b2"]}},
                          mode="search")[0]) == ["b1", "b3", "b4", "b5"]
    out = run(table, {"filters": {"include_ids": ["b5", "b1"]}, "fallback": {"enabled": False}},
              mode="search")
    assert ids(table, out[0]) == ["b1", "b5"]


def test_exclude_include_attribute_and_category(table):
    out = run(table, {"filters": {"exclude_attributes": [{"field": "colour",
                                                           "values": ["BLACK"]}]}},
              mode="search")
    assert ids(table, out[0]) == ["b3", "b5", "b6", "b7"]
    out = run(table, {"filters": {"include_attributes": [{"field": "colour", "value": "RED"}]},
                      "fallback": {"enabled": False}}, mode="search")
    assert ids(table, out[0]) == ["b3", "b6"]
    out = run(table, {"filters": {"exclude_categories": ["bag"]}, "fallback": {"enabled": False}},
              mode="search")
    assert out[0]["items"] == []


def test_price_range(table):
    out = run(table, {"filters": {"price_min": 25, "price_max": 60}}, mode="search")
    assert ids(table, out[0]) == ["b2", "b3", "b4", "b5"]


def test_in_stock_only(table):
    out = run(table, {"in_stock_only": True}, mode="search")
    assert ids(table, out[0]) == ["b0", "b1", "b3", "b4"]  # b2 is out of stock


def test_pin_at_position(table):
    out = run(table, {"pin": [{"item_id": "b6", "position": 2}]}, mode="search")
    assert ids(table, out[0]) == ["b0", "b6", "b1", "b2"]
    assert [it["pinned"] for it in out[0]["items"]] == [False, True, False, False]


def test_pin_only_for_its_anchor(table):
    rules = {"pin": [{"item_id": "b6", "position": 1, "anchor": "t0"}]}
    assert ids(table, run(table, rules, mode="search", anchor_ids=["t0"])[0])[0] == "b6"
    assert ids(table, run(table, rules, mode="search", anchor_ids=["s0"])[0])[0] == "b0"


def test_two_pins_same_position_keep_file_order(table):
    out = run(table, {"pin": [{"item_id": "b7", "position": 1},
                              {"item_id": "b6", "position": 1}]}, mode="search")
    assert ids(table, out[0]) == ["b7", "b6", "b0", "b1"]


def test_anchored_and_unanchored_pins_on_one_request(table):
    """Pins of both kinds apply together: an item's pin for one of the request's
    anchors replaces its pin for every anchor, and the pins that apply claim their
    positions in file order whatever their kind (a later one at a taken position moves
    down); the ranked items fill the other slots, and no pin is dropped while there are
    no more pins than k. Before, the first pin of an item in the file applied: the
    unanchored b6 at 4 kept b6 there on t0's page, its pin for t0 at 1 ignored."""
    rules = {"pin": [{"item_id": "b6", "position": 4},                  # every anchor
                     {"item_id": "b7", "position": 1},                  # every anchor
                     {"item_id": "b6", "position": 1, "anchor": "t0"},  # b6's own, for t0
                     {"item_id": "b5", "position": 1, "anchor": "t0"}]}
    other = run(table, rules, k=5, mode="search", anchor_ids=["s0"])[0]
    assert ids(table, other) == ["b7", "b0", "b1", "b6", "b2"]
    page = run(table, rules, k=5, mode="search", anchor_ids=["t0"])[0]
    # b7 (file order 2nd) takes 1; b6's pin for t0 (3rd) finds 1 taken and moves to 2;
    # b5 (4th) to 3; b6's pin for every anchor does not apply on t0's page
    assert ids(table, page) == ["b7", "b6", "b5", "b0", "b1"]
    assert [it["pinned"] for it in page["items"]] == [True, True, True, False, False]
    # three pins for a page of two: the first two in file order are shown
    assert ids(table, run(table, rules, k=2, mode="search", anchor_ids=["t0"])[0]) == [
        "b7", "b6"]
    # one item pinned for two anchors of one request: the first pin in the file applies
    two = {"pin": [{"item_id": "b6", "position": 3, "anchor": "s0"},
                   {"item_id": "b6", "position": 1, "anchor": "t0"}]}
    assert ids(table, run(table, two, mode="search", anchor_ids=["t0", "s0"])[0]) == [
        "b0", "b1", "b6", "b2"]


def test_conflict_excluded_id_never_shown_even_if_pinned(table):
    out = run(table, {"filters": {"exclude_ids": ["b6"]},
                      "pin": [{"item_id": "b6", "position": 1}]}, mode="search")
    assert "b6" not in ids(table, out[0])
    assert ids(table, out[0]) == ["b0", "b1", "b2", "b3"]


def test_conflict_out_of_stock_pin_not_shown(table):
    out = run(table, {"in_stock_only": True, "pin": [{"item_id": "b2", "position": 1}]},
              mode="search")
    assert "b2" not in ids(table, out[0])


def test_boost_multiplicative_and_bury_additive(table):
    # b7 (WHITE, 0.2) * 5 = 1.0 > b0's 0.9
    out = run(table, {"boost": [{"field": "colour", "value": "WHITE", "factor": 5.0}]},
              mode="search")
    assert ids(table, out[0])[:2] == ["b7", "b0"]
    assert out[0]["items"][0]["score"] == pytest.approx(1.0)
    # BLACK minus 1: b3 (RED) leads, then the non-black
    out = run(table, {"bury": [{"field": "colour", "value": "BLACK", "add": -1.0}]},
              mode="search")
    assert ids(table, out[0]) == ["b3", "b5", "b6", "b7"]


def test_pinned_item_is_not_moved_by_bury(table):
    out = run(table, {"pin": [{"item_id": "b0", "position": 1}],
                      "bury": [{"field": "colour", "value": "BLACK", "factor": 0.1}]},
              mode="search")
    assert ids(table, out[0])[0] == "b0"


def test_pairing_matrix_drops_unpaired_groups(table):
    groups = [bags(table), shoes(table)]
    out = run(table, {"pairing": {"top": ["shoes"]}}, groups=groups, mode="complements",
              anchor_ids=["t0"], anchor_categories=["top"])
    assert [g["category"] for g in out] == ["shoes"]
    r = parse_rules({"version": 1, "pairing": {"top": ["bag", "shoes"], "bottom": ["top"]}})
    assert pairing_for(r, ["top", "bottom"]) == ["shoes", "bag"]  # anchors excluded


def test_upsell_price_band(table):
    # anchor priced 20: band (1.0, 1.6] -> (20, 32]: only b2 (30)
    out = run(table, {"fallback": {"enabled": False}}, mode="upsell", anchor_price=20.0)
    assert ids(table, out[0]) == ["b2"]
    out = run(table, {"upsell": {"band": [1.0, 3.0]}, "fallback": {"enabled": False}},
              mode="upsell", anchor_price=20.0)
    assert ids(table, out[0]) == ["b2", "b3", "b4", "b5"]
    out = run(table, {"fallback": {"enabled": False}}, mode="upsell", anchor_price=20.0,
              band=(2.0, 2.5))
    assert ids(table, out[0]) == ["b4"]


def test_upsell_pin_outside_price_band_not_shown(table):
    # anchor priced 20, band (20, 32]: a pinned b0 (10) is cheaper, not an up-sell
    out = run(table, {"pin": [{"item_id": "b0", "position": 1}],
                      "fallback": {"enabled": False}}, mode="upsell", anchor_ids=["b1"],
              anchor_price=20.0)
    assert ids(table, out[0]) == ["b2"]
    # a pin inside the band keeps its position
    out = run(table, {"pin": [{"item_id": "b3", "position": 1}],
                      "upsell": {"band": [1.0, 2.0]}, "fallback": {"enabled": False}},
              mode="upsell", anchor_ids=["b1"], anchor_price=20.0)
    assert ids(table, out[0]) == ["b3", "b2"]
    assert out[0]["items"][0]["pinned"]


def test_caps_per_attribute(table):
    out = run(table, {"caps": [{"field": "colour", "value": "BLACK", "max": 2}]}, k=5,
              mode="search")
    assert ids(table, out[0]) == ["b0", "b1", "b3", "b5", "b6"]
    out = run(table, {"caps": [{"field": "colour", "max": 1}], "fallback": {"enabled": False}},
              k=5, mode="search")
    assert ids(table, out[0]) == ["b0", "b3", "b5", "b7"]  # one of each colour


def test_caps_leave_items_without_a_value_alone():
    # a cap on sleeve length limits items sharing a sleeve length; bags have none, and
    # a blank is not a value they share (they used to be capped together, as one)
    t = ItemTable(pd.DataFrame({"item_id": [f"g{i}" for i in range(5)], "category": "bag",
                                "sleeve": ["", "", "", "Long", "Long"]}))
    g = Group("bag", np.arange(5), np.linspace(0.9, 0.5, 5), [""] * 5)
    out = apply_rules([g], parse_rules({"version": 1, "caps": [{"field": "sleeve", "max": 1}],
                                        "fallback": {"enabled": False}}), t, k=5,
                      mode="search")
    assert ids(t, out[0]) == ["g0", "g1", "g2", "g3"]


def test_dedupe_across_groups_and_anchor(table):
    g1, g2 = bags(table), bags(table)
    out = apply_rules([g1, g2], parse_rules({"version": 1}), table, k=3, mode="search",
                      anchor_ids=["b0"])
    assert ids(table, out[0]) == ["b1", "b2", "b3"]
    assert ids(table, out[1]) == ["b4", "b5", "b6"]
    out = apply_rules([g1, g2], parse_rules({"version": 1, "dedupe": {"enabled": False}}),
                      table, k=3, mode="search", anchor_ids=["b0"])
    assert ids(table, out[1]) == ["b1", "b2", "b3"]


def test_fallback_fills_what_the_caps_removed(table):
    # at most one bag per colour leaves 4 of 5; the fallback shows the best capped one
    out = run(table, {"caps": [{"field": "colour", "max": 1}]}, k=5, mode="search")
    assert ids(table, out[0]) == ["b0", "b3", "b5", "b7", "b1"]
    assert [it["fallback"] for it in out[0]["items"]] == [False] * 4 + [True]


# bags b0..b7: BLACK BLACK BLACK(out of stock) RED BLACK BROWN RED WHITE, priced 10..80;
# one bag per colour (the cap) leaves room that the fallback fills -- but never with
# an item another rule excludes
@pytest.mark.parametrize("rules, k, kw, expected", [
    ({"filters": {"exclude_attributes": [{"field": "colour", "value": "RED"}]}}, 6, {},
     ["b0", "b5", "b7", "b1", "b2", "b4"]),
    ({"filters": {"include_attributes": [{"field": "colour", "values": ["BLACK", "WHITE"]}]}},
     5, {}, ["b0", "b7", "b1", "b2", "b4"]),
    ({"filters": {"exclude_ids": ["b1"]}}, 6, {}, ["b0", "b3", "b5", "b7", "b2", "b4"]),
    ({"filters": {"include_ids": ["b0", "b1", "b7"]}}, 4, {}, ["b0", "b7", "b1"]),
    ({"filters": {"price_max": 50}}, 6, {}, ["b0", "b3", "b1", "b2", "b4"]),
    ({"filters": {"price_min": 30}}, 6, {}, ["b2", "b3", "b5", "b7", "b4", "b6"]),
    ({"in_stock_only": True}, 6, {}, ["b0", "b3", "b5", "b7", "b1", "b4"]),
    ({"filters": {"exclude_categories": ["bag"]}}, 4, {}, []),
    ({"filters": {"include_categories": ["shoes"]}}, 4, {}, []),
    # up-sell from a bag priced 20, band (20, 60]: b0 and b1 are not up-sells
    ({"upsell": {"band": [1.0, 3.0]}}, 4, {"mode": "upsell", "anchor_price": 20.0},
     ["b2", "b3", "b5", "b4"]),
], ids=["exclude_attributes", "include_attributes", "exclude_ids", "include_ids", "price_max",
        "price_min", "in_stock_only", "exclude_categories", "include_categories", "upsell_band"])
def test_fallback_never_shows_an_item_a_rule_excludes(table, rules, k, kw, expected):
    kw = {"mode": "complements", **kw}
    out = run(table, {"caps": [{"field": "colour", "max": 1}], **rules}, k=k, **kw)
    # a group the filters shorten below k stays short: nothing allowed is left to fill it
    assert ids(table, out[0]) == expected


@pytest.mark.parametrize("data, path", [
    ({}, "rules.version"),
    ({"version": 1, "boost": [{"field": "colour", "value": "X", "factor": -1}]},
     "rules.boost[0].factor"),
    ({"version": 1, "boost": [{"field": "c", "value": "X", "factor": 0.5}]},
     "rules.boost[0].factor"),
    ({"version": 1, "bury": [{"field": "c", "value": "X", "add": 0.5}]}, "rules.bury[0].add"),
    ({"version": 1, "boost": [{"field": "c", "value": "X"}]}, "rules.boost[0]"),
    ({"version": 1, "pin": [{"item_id": "a", "position": 0}]}, "rules.pin[0].position"),
    ({"version": 1, "pairing": {"top": ["hat"]}}, "rules.pairing.top[0]"),
    ({"version": 1, "pairing": {"hat": ["top"]}}, "rules.pairing.hat"),
    ({"version": 1, "upsell": {"band": [1.6, 1.0]}}, "rules.upsell.band[1]"),
    ({"version": 1, "caps": [{"field": "colour", "max": 0}]}, "rules.caps[0].max"),
    ({"version": 1, "filters": {"price_min": 10, "price_max": 5}}, "rules.filters.price_max"),
    ({"version": 1, "filters": {"exclud_ids": []}}, "rules.filters.exclud_ids"),
    ({"version": 1, "in_stock_only": "yes"}, "rules.in_stock_only"),
])
def test_validation_names_key_path_and_value(data, path):
    with pytest.raises(RulesError) as exc:
        parse_rules(data)
    assert exc.value.field == path
    assert str(exc.value).startswith(path + ":")


def test_error_message_example():
    with pytest.raises(RulesError, match=r"rules\.boost\[2\]\.factor: -1 must be > 0"):
        parse_rules({"version": 1, "boost": [
            {"field": "c", "value": "x", "factor": 1.1},
            {"field": "c", "value": "x", "add": 0.1},
            {"field": "c", "value": "x", "factor": -1}]})


def test_fields_validated_against_vocab():
    r = parse_rules({"version": 1, "caps": [{"field": "colr", "max": 2}]})
    with pytest.raises(RulesError) as exc:
        validate_rules_fields(r, {"colour": ["BLACK"]})
    assert exc.value.field == "rules.caps[0].field" and exc.value.allowed == ["colour"]
    r = parse_rules({"version": 1, "boost": [{"field": "colour", "value": "BLAK",
                                              "factor": 2}]})
    with pytest.raises(RulesError, match="BLAK"):
        validate_rules_fields(r, {"colour": ["BLACK"]})


def test_toml_round_trip_and_invalid_file_refused(tmp_path):
    raw = tomllib.loads(DEFAULT_RULES_PATH.read_text())
    raw["boost"] = [{"field": "colour", "value": "BLACK \"deep\"", "factor": 1.5}]
    raw["pin"] = [{"item_id": "x", "position": 2}]
    assert tomllib.loads(dumps_toml(raw)) == raw
    p = tmp_path / "rules.toml"
    r = save_rules(raw, p)
    assert load_rules(p) == r and r.version == "default-2"
    p.write_text('version = "2"\n[[boost]]\nfield = "colour"\nvalue = "X"\nfactor = -1\n')
    with pytest.raises(RulesError, match=r"rules\.boost\[0\]\.factor"):
        load_rules(p)
    p.write_text("version = ")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_rules(p)


def test_default_rules_pairing_is_complete():
    r = default_rules()
    assert set(r.pairing) == {"top", "bottom", "dress", "outerwear", "shoes", "bag",
                              "jewellery", "accessory", "other"}
    assert r.band == (1.0, 1.6)


#: one colourway per model on, as the shipped default rules have it
ON = {"version": 1, "dedupe": {"colourways": True}}


@pytest.fixture()
def colourways():
    # six bags of three models (m1 in three colours, m2 in two) ranked g0 > ... > g5,
    # and a top of model m3 whose other colourway g5 is a bag only for this test's sake
    return ItemTable(pd.DataFrame({
        "item_id": [f"g{i}" for i in range(6)] + ["t0"],
        "category": ["bag"] * 6 + ["top"],
        "model_code": ["m1", "m1", "m2", "m1", "m2", "m3", "m3"],
        "price": [10.0, 11, 12, 13, 14, 15, 10],
    }))


def bag_group(t, n=6):
    return Group("bag", np.arange(n), np.linspace(0.9, 0.4, n), [""] * n)


def test_one_colourway_per_model_in_a_group(colourways):
    out = apply_rules([bag_group(colourways)], parse_rules(ON), colourways,
                      k=3, mode="search")
    assert ids(colourways, out[0]) == ["g0", "g2", "g5"]
    assert not any(it["fallback"] for it in out[0]["items"])
    # turned off, the strategy's order stands
    off = parse_rules({"version": 1, "dedupe": {"colourways": False}})
    out = apply_rules([bag_group(colourways)], off, colourways, k=3, mode="search")
    assert ids(colourways, out[0]) == ["g0", "g1", "g2"]


def test_colourways_of_the_anchor_and_of_earlier_groups_are_skipped(colourways):
    # the anchor t0 is model m3: its bag-coloured twin g5 is no alternative to it
    out = apply_rules([bag_group(colourways)], parse_rules(ON), colourways,
                      k=2, mode="upsell", anchor_ids=["t0"])
    assert ids(colourways, out[0]) == ["g0", "g2"]
    out = apply_rules([bag_group(colourways), bag_group(colourways)],
                      parse_rules({**ON, "fallback": {"enabled": False}}),
                      colourways, k=2, mode="search", anchor_ids=["t0"])
    assert ids(colourways, out[0]) == ["g0", "g2"]
    assert ids(colourways, out[1]) == []  # m1 and m2 shown above, m3 is the anchor's


def test_fallback_brings_colourways_back_when_models_run_out(colourways):
    out = apply_rules([bag_group(colourways)], parse_rules(ON), colourways,
                      k=5, mode="search")
    assert ids(colourways, out[0]) == ["g0", "g2", "g5", "g1", "g3"]
    assert [it["fallback"] for it in out[0]["items"]] == [False] * 3 + [True] * 2


def test_a_pinned_colourway_is_kept_and_counts(colourways):
    r = parse_rules({**ON, "pin": [{"item_id": "g3", "position": 1}],
                     "fallback": {"enabled": False}})
    out = apply_rules([bag_group(colourways)], r, colourways, k=3, mode="search")
    assert ids(colourways, out[0]) == ["g3", "g2", "g5"]  # g0, g1: m1 like the pin


def test_catalogue_without_model_codes_is_not_deduplicated_by_model(table):
    # the switch on, over a table with no model_code column: nothing to compare
    assert ids(table, run(table, {"dedupe": {"colourways": True}}, mode="search")[0]) == [
        "b0", "b1", "b2", "b3"]


def test_colourways_flag_must_be_boolean():
    with pytest.raises(RulesError, match=r"rules\.dedupe\.colourways"):
        parse_rules({"version": 1, "dedupe": {"colourways": "yes"}})
    # on in the shipped defaults; a file that does not say (one written before the
    # switch existed) serves as it did under its version
    assert default_rules().colourways is True
    assert parse_rules({"version": 1}).colourways is False


def test_a_pin_far_beyond_the_group_lands_at_the_end_without_hanging(table):
    """A position is 1-based and one beyond the group's length lands at the end, but the
    group was assembled slot by slot up to the pin's position: a typo such as
    ``position = 1000000000000`` (or any number in the millions) held the request for
    as long as it took to count there, on every page showing that category."""
    import threading

    out = {}

    def call():
        out["groups"] = run(table, {"pin": [{"item_id": "b6", "position": 10 ** 12},
                                            {"item_id": "b7", "position": 2 ** 62}],
                                    "filters": {"include_ids": ["b0", "b1", "b6", "b7"]}},
                            mode="search")

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "apply_rules counted up to the pin's position"
    # the ranked items first, then the pins closed up behind them in file order
    assert ids(table, out["groups"][0]) == ["b0", "b1", "b6", "b7"]
    assert [it["pinned"] for it in out["groups"][0]["items"]] == [False, False, True, True]


def test_a_rules_file_in_another_encoding_is_named_and_a_bom_is_read(tmp_path):
    """A merchandiser's editor may save the file as Windows-1252 (a "café" in the
    description) or as UTF-8 with a byte-order mark (Notepad). The first raised a bare
    UnicodeDecodeError that named no file (``mixmatch serve`` printed "'utf-8' codec
    can't decode byte 0xe9"; a reload reported it in /healthz the same way), the second
    "not valid TOML: Invalid statement (at line 1, column 1)" for a file that reads
    correctly in any editor."""
    p = tmp_path / "rules.toml"
    p.write_bytes('version = "1"\ndescription = "café"\n'.encode("cp1252"))
    with pytest.raises(RulesError) as exc:
        load_rules(p)
    assert str(p) in str(exc.value) and "not UTF-8" in str(exc.value), str(exc.value)
    assert exc.value.field == "rules"
    p.write_bytes('version = "1"\ndescription = "café"\n'.encode("utf-8-sig"))
    r = load_rules(p)
    assert r.version == "1" and r.raw["description"] == "café"


@pytest.mark.parametrize("kind, key, value", [
    ("boost", "factor", 1e308), ("boost", "add", 1e308), ("bury", "add", -1e308),
    ("boost", "factor", 1e7),
])
def test_a_boost_too_large_to_score_is_refused(table, kind, key, value):
    """``factor = 1e308`` (or ``add``) passed as finite, and two such rules on one item
    overflowed its score to infinity: a RuntimeWarning in the server log, and shoppers
    were served ``"score": null``. A factor or an addend is at most 1e6 in size (a
    boost of that much already puts every match first)."""
    rule = {"field": "colour", "value": "BLACK", key: value}
    with pytest.raises(RulesError) as exc:
        parse_rules({"version": 1, kind: [rule, rule]})
    assert exc.value.field == f"rules.{kind}[0].{key}" and "1e6" in str(exc.value)
    # the largest allowed, twice, still scores
    rule[key] = 1e6 if value > 0 else -1e6
    out = run(table, {kind: [rule, rule]}, mode="search")
    assert all(np.isfinite(it["score"]) for it in out[0]["items"])


@pytest.mark.parametrize("data, path", [
    # a [description] header: the keys below it were swallowed by a table nobody reads
    ({"version": 1, "description": {"in_stock_only": True}}, "rules.description"),
    ({"version": 1, "description": ["spring", "sale"]}, "rules.description"),
    # true was read as the value "True" (a rule's value refuses a boolean)
    ({"version": 1, "caps": [{"field": "colour", "max": 1, "value": True}]},
     "rules.caps[0].value"),
    # an empty anchor matches no item: the pin never applied
    ({"version": 1, "pin": [{"item_id": "b1", "position": 1, "anchor": ""}]},
     "rules.pin[0].anchor"),
])
def test_a_value_of_the_wrong_type_is_refused_not_read_otherwise(data, path):
    """Keys that take a string accepted a table, a list or a boolean, and the file
    served as if the key said something else (or nothing)."""
    with pytest.raises(RulesError) as exc:
        parse_rules(data)
    assert exc.value.field == path and str(exc.value).startswith(path + ":")


def test_unknown_item_ids_names_each_key_and_id(table):
    """Item ids are not checked like fields and values: a catalogue changes under its
    rules file (an excluded item is delisted), so a rules file naming an id the
    catalogue lacks is not refused. But a typo'd pin, anchor or allow-list id did
    nothing (or hid every item) without a word: callers say so with this."""
    from recommender.rules import unknown_item_ids
    r = parse_rules({"version": 1, "filters": {"exclude_ids": ["b1", "gone"],
                                               "include_ids": ["b0", "b9"]},
                     "pin": [{"item_id": "b6", "position": 1},
                             {"item_id": "b66", "position": 2, "anchor": "t1"}]})
    assert unknown_item_ids(r, table) == {
        "rules.filters.exclude_ids": ["gone"], "rules.filters.include_ids": ["b9"],
        "rules.pin[1].item_id": ["b66"], "rules.pin[1].anchor": ["t1"]}
    assert unknown_item_ids(parse_rules({"version": 1, "pin": [
        {"item_id": "b6", "position": 1, "anchor": "t0"}]}), table) == {}


def test_an_item_pinned_twice_for_the_same_anchor_is_refused(table):
    """The second pin of one item (for the same anchor, or both for every anchor) was
    dropped without a word: a merchandiser who moved a pin by adding a new one, and
    forgot the old, saw the item at the old position. The same item may still be
    pinned differently for different anchors."""
    with pytest.raises(RulesError) as exc:
        parse_rules({"version": 1, "pin": [{"item_id": "b6", "position": 1},
                                           {"item_id": "b6", "position": 3}]})
    assert exc.value.field == "rules.pin[1].item_id"
    assert "'b6' is already pinned by rules.pin[0]" in str(exc.value)
    with pytest.raises(RulesError, match=r"rules\.pin\[2\]\.item_id"):
        parse_rules({"version": 1, "pin": [
            {"item_id": "b6", "position": 1, "anchor": "t0"},
            {"item_id": "b6", "position": 2, "anchor": "s0"},
            {"item_id": "b6", "position": 3, "anchor": "t0"}]})
    rules = {"pin": [{"item_id": "b6", "position": 1, "anchor": "t0"},
                     {"item_id": "b6", "position": 3, "anchor": "s0"}]}
    assert ids(table, run(table, rules, mode="search", anchor_ids=["t0"])[0])[0] == "b6"
    assert ids(table, run(table, rules, mode="search", anchor_ids=["s0"])[0])[2] == "b6"


@pytest.mark.parametrize("text", ["line one\r\nline two", "bell\x07", "nul\x00", "del\x7f",
                                  "form\x0cfeed", "café ☕ \u2028"])
def test_save_rules_writes_any_string_so_it_reads_back(tmp_path, text):
    """A description or id holding a control character (a carriage return pasted from a
    Windows editor into the notebook's edits) was written unescaped: save_rules
    replaced a good rules file with one that is not valid TOML ("Illegal character
    '\\r'"), which the server then refused and the notebook could not load again."""
    p = tmp_path / "rules.toml"
    raw = {"version": "2", "description": text, "filters": {"exclude_ids": [text]}}
    save_rules(raw, p)
    assert load_rules(p).raw == raw


def test_a_folder_given_as_the_rules_file_is_named_a_folder(tmp_path):
    """``RULES = "<bundle>/rules"`` (the folder, not rules.toml in it) was refused as
    "rules file not found: <bundle>/rules", of a path that plainly exists."""
    with pytest.raises(RulesError, match=r": is a folder, not a rules file"):
        load_rules(tmp_path / ".." / tmp_path.name)
    with pytest.raises(Exception, match="rules file not found"):
        load_rules(tmp_path / "nope.toml")


def test_a_category_paired_with_itself_is_refused():
    # before: `top = ["top", "bottom"]` was read, and the top never shown (complements
    # leave out the anchor's own category): an edit that did nothing, without a word
    with pytest.raises(RulesError, match=r"rules.pairing.top: 'top' pairs with itself"):
        parse_rules({"version": 1, "pairing": {"top": ["top", "bottom"]}})
