"""Tuning helpers: versions, edits, validation against the catalogue, picking items."""
from __future__ import annotations

import pytest

from features.exceptions import InputError, NotFoundError
from recommender import tuning
from recommender.rules import RulesError, default_rules


@pytest.mark.parametrize("old, new", [("default-1", "default-2"), ("7", "8"),
                                      ("2024-06-01.9", "2024-06-01.10"), ("x", "x.1")])
def test_next_version(old, new):
    assert tuning.next_version(old) == new


def test_apply_edits_merges_tables_and_replaces_values():
    raw = default_rules().raw
    new = tuning.apply_edits(raw, {"pairing": {"dress": ["shoes"]},
                                   "pin": [{"item_id": "a", "position": 2}]})
    assert new["version"] == "default-3"
    assert new["pairing"]["dress"] == ["shoes"]
    assert new["pairing"]["top"] == raw["pairing"]["top"]         # other rows kept
    assert new["pin"] == [{"item_id": "a", "position": 2}]
    assert "pin" not in raw and raw["pairing"]["dress"] != ["shoes"]  # input untouched
    again = tuning.apply_edits(new, {"pin": []}, version="v9")
    assert again["pin"] == [] and again["version"] == "v9"


def test_apply_edits_from_toml_text():
    new = tuning.apply_edits({"version": "1"}, '[filters]\nexclude_ids = ["x"]\n')
    assert new == {"version": "2", "filters": {"exclude_ids": ["x"]}}
    with pytest.raises(InputError, match="not valid TOML"):
        tuning.apply_edits({"version": "1"}, "[filters\n")


def test_validate_for_names_the_key(engine):
    raw = tuning.apply_edits(default_rules().raw,
                             {"boost": [{"field": "colour", "value": "PURPLE", "factor": 2}]})
    with pytest.raises(RulesError) as err:
        tuning.validate_for(engine, raw)
    assert err.value.field == "rules.boost[0].value"
    ok = tuning.apply_edits(default_rules().raw,
                            {"boost": [{"field": "colour", "value": "RED", "factor": 2}]})
    assert tuning.validate_for(engine, ok).boosts[0].values == ("RED",)


def test_pick_items(engine):
    assert tuning.pick_items(engine, ["t1", "p2"]) == ["t1", "p2"]
    with pytest.raises(NotFoundError):
        tuning.pick_items(engine, ["nope"])
    tops = tuning.pick_items(engine, category="top", n=3)
    assert len(tops) == 3 and all(engine.catalog.set_index("item_id").loc[t, "category"]
                                  == "top" for t in tops)
    reds = tuning.pick_items(engine, category="top", filters={"colour": "RED"}, n=5)
    assert reds == ["t2"]


def test_shown_by_category_and_attribute_value(engine):
    resp = engine.complements("t0", k=2)
    shown = tuning.shown_by_category(resp)
    assert list(shown) == [g["category"] for g in resp["groups"]]
    assert all(len(v) <= 2 for v in shown.values())
    assert tuning.attribute_value(engine, "t2", "colour") == "RED"


def test_rules_summary_lists_the_steps_on_by_default():
    # before: the summary counted pins, boosts and the like but not the dedupe,
    # colourway and fallback switches, on unless a file turns them off: the tuning
    # notebook's "rules now" said nothing of why a second colour of a garment is missing
    from recommender.rules import parse_rules

    s = tuning.rules_summary(default_rules())
    assert s["dedupe: no item in two groups"] is True
    assert s["colourways: one colour per model per group"] is True
    assert s["fallback fill"] is True
    off = tuning.rules_summary(parse_rules({
        "version": "1", "dedupe": {"colourways": False}, "fallback": {"enabled": False},
        "filters": {"include_categories": ["shoes"], "price_max": 90,
                    "exclude_attributes": [{"field": "colour", "values": ["RED"]}]}}))
    assert off["colourways: one colour per model per group"] is False
    assert off["dedupe: no item in two groups"] is True
    assert off["fallback fill"] is False
    # the filters a summary of exclude_ids alone left out
    assert off["included categories (allow-list)"] == ["shoes"]
    assert off["attribute filters"] == 1
    assert off["price range"] == "0 to 90"


def test_readable_diff_names_the_items_and_what_changed(engine):
    # before: the notebook showed the rules_diff table of raw ids ("[D000097]"),
    # and a merchandiser had to look each one up to know what an edit removed
    from recommender.rules import parse_rules, rules_diff
    from recommender.viz import ItemImages

    images = ItemImages.from_engine(engine, size=8)
    before = default_rules()
    shown = tuning.shown_by_category(engine.complements("t0", k=2, rules=before))
    cat, first = next((c, ids) for c, ids in shown.items() if ids)
    after = parse_rules(tuning.apply_edits(before.raw, {
        "filters": {"exclude_ids": [first[0]]}}))
    diff = rules_diff(before, after, engine, ["t0"], k=2)
    table = tuning.readable_diff(diff, images)
    assert list(table.columns) == ["item", "category", "what changed", "removed", "added"]
    row = table[table["category"] == cat].iloc[0]
    assert row["item"] == f"t0 ({images.label('t0')})"
    assert row["removed"].startswith(f"{first[0]} ({images.label(first[0])})")
    assert row["what changed"].startswith("1 removed")
    unchanged = table[table["category"] != cat]
    assert (unchanged["what changed"] == "no change").all()


def test_a_rules_file_with_an_integer_version_gets_the_next_one():
    """``version = 3`` is a valid rules file (a non-empty string or integer), but the
    notebook's edit step crashed on it with "TypeError: 'int' object is not
    subscriptable" (next_version sliced the number)."""
    assert tuning.next_version(3) == "4"
    assert tuning.apply_edits({"version": 3}, {"in_stock_only": True}) == {
        "version": "4", "in_stock_only": True}


def test_tuning_arguments_of_the_wrong_shape_are_named(engine):
    """The notebook's parameters cell is edited by hand: a single id written without
    its list (``item_ids = "t1"``) was read letter by letter ("unknown item id 't'"),
    filters written as a list raised "dictionary update sequence element #0 has length
    6", and rules passed as their mapping (``new_raw``) or no rules mapping at all
    raised AttributeError from inside the helper."""
    assert tuning.pick_items(engine, "t1") == ["t1"]
    with pytest.raises(InputError, match=r"filters must be a mapping .*\['colour'\]"):
        tuning.pick_items(engine, category="top", filters=["colour"])
    with pytest.raises(InputError, match="rules mapping"):
        tuning.apply_edits(None, {"in_stock_only": True})
    raw = tuning.apply_edits(default_rules().raw, {"in_stock_only": True})
    assert tuning.rules_summary(raw)["in_stock_only"] is True
    with pytest.raises(InputError, match="rules_summary"):
        tuning.rules_summary(None)


def test_validate_for_warns_of_item_ids_the_catalogue_lacks(engine):
    """A pin of a typo'd id validated and then did nothing on the pages reviewed: the
    notebook said nothing. Not refused (a rules file may exclude delisted items), but
    the warning names the key and the id."""
    raw = tuning.apply_edits(default_rules().raw,
                             {"pin": [{"item_id": "t1", "position": 1},
                                      {"item_id": "t11", "position": 2}]})
    with pytest.warns(UserWarning, match=r"rules\.pin\[1\]\.item_id: 't11'"):
        rules = tuning.validate_for(engine, raw)
    assert [p.item_id for p in rules.pins] == ["t1", "t11"]
