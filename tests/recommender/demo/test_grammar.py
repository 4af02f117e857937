"""The style grammar makes compatibility learnable: outfits agree far above chance."""
from __future__ import annotations

import numpy as np
import pandas as pd

from recommender.demo.grammar import colour_score, compose_outfits, grammar_description
from recommender.demo.items import sample_items
from recommender.demo.palette import COLOUR_INDEX, PALETTE_NEUTRAL


def _pairs(outfits, items, col):
    m = outfits.merge(items[["item_id", col]], on="item_id")
    g = m.groupby("outfit_id")[col].agg(list)
    same = tot = 0
    for vals in g:
        for i in range(len(vals)):
            for j in range(i + 1, len(vals)):
                same += vals[i] == vals[j]
                tot += 1
    return same / tot


def test_formality_agreement_far_above_chance():
    items = sample_items(3000, np.random.default_rng(0))
    outfits = compose_outfits(items, 1000, np.random.default_rng(1))
    observed = _pairs(outfits, items, "formality")
    shuffled = outfits.assign(item_id=outfits["item_id"].sample(
        frac=1, random_state=0).to_numpy())
    chance = _pairs(shuffled, items, "formality")
    assert observed > chance + 0.2, (observed, chance)
    assert observed < 0.95   # noise: compatibility is not trivial


def test_colour_and_silhouette_rules_hold_more_often_than_chance():
    items = sample_items(3000, np.random.default_rng(2))
    outfits = compose_outfits(items, 1000, np.random.default_rng(3))
    m = outfits.merge(items[["item_id", "category", "silhouette", "colour_name"]], on="item_id")
    tops = m[m.category == "top"].set_index("outfit_id")["silhouette"]
    bottoms = m[m.category == "bottom"].set_index("outfit_id")["silhouette"]
    both = pd.concat([tops.rename("t"), bottoms.rename("b")], axis=1).dropna()
    volume = {"wide", "oversized"}
    balanced = ((both.t.isin(volume) & (both.b == "slim"))
                | ((both.t == "slim") & both.b.isin(volume))).mean()
    rng = np.random.default_rng(0)
    b_shuf = rng.permutation(both.b.to_numpy())
    chance = ((both.t.isin(volume) & (b_shuf == "slim"))
              | ((both.t == "slim") & pd.Series(b_shuf, index=both.index).isin(volume))).mean()
    assert balanced > chance * 1.3, (balanced, chance)
    # at most a handful of accents per look: neutral share above the catalogue's
    neutral = m["colour_name"].map(COLOUR_INDEX).map(lambda i: PALETTE_NEUTRAL[i])
    cat_neutral = items["colour_name"].map(COLOUR_INDEX).map(lambda i: PALETTE_NEUTRAL[i])
    assert neutral.mean() > cat_neutral.mean()


def test_colour_score_rules():
    red, navy, green = (COLOUR_INDEX[c] for c in ("red", "navy", "green"))
    from recommender.demo.palette import PALETTE_HUE
    anchor = np.array([PALETTE_HUE[red]] * 4)
    rule = np.array([0, 1, 2, 3])
    cand = np.array([[red, navy, green]] * 4)
    s = colour_score(rule, anchor, cand, np.zeros(4, int))
    assert (s[:, 0] == 1).all()                 # the anchor colour fits every rule
    assert s[1, 1] > s[0, 1]                    # neutrals suit neutral + accent best
    assert s[0, 2] == 0 and s[3, 2] == 0        # green clashes with red looks
    # neutral + one accent: once an accent is in, another accent scores 0
    s2 = colour_score(rule[1:2], anchor[1:2], cand[1:2], np.array([1]))
    assert s2[0, 0] == 0 and s2[0, 1] > 0


def test_deterministic_and_described():
    items = sample_items(500, np.random.default_rng(5))
    a = compose_outfits(items, 150, np.random.default_rng(6))
    b = compose_outfits(items, 150, np.random.default_rng(6))
    pd.testing.assert_frame_equal(a, b)
    assert "fit" in grammar_description()
