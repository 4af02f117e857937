"""The style grammar that composes the demo outfits (the known answer of compatibility).

Every item has a **formality** (casual / smart / formal), a **colour** from a
named palette with CIELAB values (neutrals: black, white, cream, beige, camel,
navy, denim, brown, grey, khaki, gold, silver; accents: everything else, with a
hue angle), and apparel a **silhouette** (slim / regular / wide / oversized).

An outfit is a *look*, generated in this order:

1. **Formality** of the look: casual 45%, smart 35%, formal 20%.
2. **Palette rule** and an anchor accent hue h (an accent colour of the palette):
   monochrome 25% (accents within 30 deg of h; neutrals tolerated),
   neutral + one accent 35% (neutrals; at most one accent, near h),
   complementary 20% (accents near h or h + 180 deg; neutrals tolerated),
   analogous 20% (accents within 60 deg of h; neutrals tolerated).
3. **Body**: top + bottom (72%) or a dress (28%); outerwear with probability
   0.3 (casual), 0.5 (smart), 0.6 (formal).
4. **Shoes**, always.
5. **Accessories**: 0-3 of bag, jewellery, accessory (distinct slots), such that
   the outfit has 3 to 7 items (a tiny catalogue lacking a slot drops the looks
   that end up smaller).

Each slot is filled by *sampled softmax*: K = 24 candidates of the slot are drawn
in proportion to item popularity, each scored

    fit = 2.0 * formality + 1.6 * colour + 1.0 * silhouette

with formality 1 for the look's level, 0.35 for an adjacent one, 0 two apart;
colour the palette rule's score of the candidate's colour given the look so far
(1 fits, 0.3-0.6 tolerated neutral, 0 clashes); silhouette balance 1 when a wide
or oversized bottom meets a slim top (and vice versa), 0.6 for regular with
anything, 0.15 for two volumes (wide/oversized both) or two slims, 0.5 where it
does not apply. One candidate is picked with probability proportional to
exp(3 * fit). With probability 0.15 a slot instead takes the first candidate
(popularity only: the *noise* that keeps compatibility learnable, not trivial).

**Popularity** is skewed: each item gets a log-normal weight (sigma 0.9) and 12%
of items get weight 0 — they appear in no outfit (cold items, new arrivals).

Everything is vectorised over outfits (one numpy pass per slot), so a million
items and a third of a million outfits compose in seconds.

Examples
--------
>>> import numpy as np
>>> from recommender.demo.items import sample_items
>>> items = sample_items(300, np.random.default_rng(0))
>>> outfits = compose_outfits(items, 100, np.random.default_rng(1))
>>> sizes = outfits.groupby("outfit_id").size()
>>> int(sizes.min()) >= 3 and int(sizes.max()) <= 7
True
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from recommender.demo.items import FORMALITIES
from recommender.demo.palette import COLOUR_INDEX, PALETTE_HUE, PALETTE_NEUTRAL

LOOK_FORMALITY = (0.45, 0.35, 0.20)
PALETTE_RULES: tuple[str, ...] = ("monochrome", "neutral_accent", "complementary", "analogous")
PALETTE_RULE_P = (0.25, 0.35, 0.20, 0.20)
P_DRESS = 0.28
P_OUTERWEAR = (0.3, 0.5, 0.6)
ACCESSORY_SLOTS = ("bag", "jewellery", "accessory")
N_CANDIDATES = 24
W_FORMALITY, W_COLOUR, W_SILHOUETTE = 2.0, 1.6, 1.0
TEMPERATURE = 3.0
NOISE = 0.15
POPULARITY_SIGMA = 0.9
COLD_SHARE = 0.12

_SIL = {"": -1, "slim": 0, "regular": 1, "wide": 2, "oversized": 3}


def grammar_description() -> dict:
    """The grammar's parameters, as recorded in ``demo.json``."""
    return {
        "doc": "recommender/demo/grammar.py",
        "look_formality": dict(zip(FORMALITIES, LOOK_FORMALITY)),
        "palette_rules": dict(zip(PALETTE_RULES, PALETTE_RULE_P)),
        "p_dress": P_DRESS, "p_outerwear": dict(zip(FORMALITIES, P_OUTERWEAR)),
        "accessories": "0-3 of bag, jewellery, accessory; outfit size 3-7",
        "fit": f"{W_FORMALITY}*formality + {W_COLOUR}*colour + {W_SILHOUETTE}*silhouette",
        "choice": f"softmax(exp({TEMPERATURE}*fit)) over {N_CANDIDATES} popularity-drawn "
                  "candidates",
        "noise": f"{NOISE} of slots take a popularity-only candidate",
        "popularity": f"lognormal(sigma={POPULARITY_SIGMA}); {COLD_SHARE} of items cold "
                      "(in no outfit)",
    }


def _hue_dist(a, b):
    d = np.abs(a - b) % 360
    return np.minimum(d, 360 - d)


def colour_score(rule: np.ndarray, anchor: np.ndarray, cand: np.ndarray,
                 n_accents: np.ndarray) -> np.ndarray:
    """Score in 0..1 of candidate palette colours ``cand`` (indices, (B, K)) for looks
    with palette ``rule`` and anchor hue ``anchor`` ((B,) each)."""
    neutral = PALETTE_NEUTRAL[cand]
    d = _hue_dist(PALETTE_HUE[cand], anchor[:, None])
    r = rule[:, None]
    acc = np.select(
        [r == 0, r == 1, r == 2, r == 3],
        [(d < 30) * 1.0,
         np.where(n_accents[:, None] == 0, (d < 30) * 1.0, 0.0),
         ((d < 30) | (_hue_dist(PALETTE_HUE[cand], anchor[:, None] + 180) < 30)) * 1.0,
         (d < 60) * 1.0])
    neu = np.select([r == 0, r == 1, r == 2, r == 3], [0.45, 0.9, 0.55, 0.5])
    return np.where(neutral, neu, acc)


def _formality_score(look: np.ndarray, cand_f: np.ndarray) -> np.ndarray:
    d = np.abs(cand_f - look[:, None])
    return np.select([d == 0, d == 1], [1.0, 0.35], 0.0)


def _silhouette_score(top_sil: np.ndarray, cand_sil: np.ndarray) -> np.ndarray:
    t = top_sil[:, None]
    c = cand_sil
    vol_t, vol_c = t >= 2, c >= 2
    score = np.full(np.broadcast_shapes(t.shape, c.shape), 0.5)
    score = np.where((t == 1) | (c == 1), 0.6, score)
    score = np.where((vol_t & (c == 0)) | ((t == 0) & vol_c), 1.0, score)
    score = np.where((vol_t & vol_c) | ((t == 0) & (c == 0)), 0.15, score)
    return np.where((t < 0) | (c < 0), 0.5, score)


def compose_outfits(items: pd.DataFrame, n_outfits: int, rng: np.random.Generator,
                    chunk: int = 50_000) -> pd.DataFrame:
    """Compose ``n_outfits`` looks from ``items`` (see the module doc); returns the
    outfits table (outfit_id, item_id) in outfit order, slot order within."""
    n = len(items)
    cat = items["category"].to_numpy()
    form = pd.Categorical(items["formality"], categories=FORMALITIES).codes.astype(np.int8)
    colour = items["colour_name"].map(COLOUR_INDEX).to_numpy().astype(np.int16)
    sil = items["silhouette"].map(_SIL).fillna(-1).to_numpy().astype(np.int8)
    pop = rng.lognormal(0.0, POPULARITY_SIGMA, n)
    pop[rng.random(n) < COLD_SHARE] = 0.0
    pools = {}
    for c in ("top", "bottom", "dress", "outerwear", "shoes") + ACCESSORY_SLOTS:
        idx = np.flatnonzero(cat == c)
        w = pop[idx]
        if len(idx) and w.sum() <= 0:
            w = np.ones(len(idx))
        pools[c] = (idx, np.cumsum(w) / w.sum() if len(idx) else None)
    accents = np.flatnonzero(~PALETTE_NEUTRAL)

    ids = items["item_id"].to_numpy()
    width = max(5, len(str(max(n_outfits - 1, 0))))
    out_o, out_i = [], []
    for start in range(0, n_outfits, chunk):
        B = min(chunk, n_outfits - start)
        look = rng.choice(3, size=B, p=LOOK_FORMALITY)
        rule = rng.choice(4, size=B, p=PALETTE_RULE_P)
        anchor = PALETTE_HUE[accents[rng.integers(len(accents), size=B)]]
        n_acc = np.zeros(B, int)
        top_sil = np.full(B, -1, np.int8)
        chosen = np.full((B, 7), -1, np.int64)
        dress = rng.random(B) < P_DRESS
        outer = rng.random(B) < np.asarray(P_OUTERWEAR)[look]
        n_extra = rng.integers(0, 4, B)
        # at least 3 items: dress + shoes need an accessory
        n_extra = np.where(dress & ~outer, np.maximum(n_extra, 1), n_extra)
        acc_order = np.argsort(rng.random((B, 3)), axis=1)
        plan = [("top", ~dress), ("bottom", ~dress), ("dress", dress), ("outerwear", outer),
                ("shoes", np.ones(B, bool))]
        for k in range(3):
            for j, slot in enumerate(ACCESSORY_SLOTS):
                plan.append((slot, (n_extra > k) & (acc_order[:, k] == j)))
        col = 0
        filled = np.zeros(B, int)
        for slot, need in plan:
            rows = np.flatnonzero(need)
            idx, cdf = pools[slot]
            if not len(rows) or cdf is None:
                continue
            cand = idx[np.minimum(np.searchsorted(cdf, rng.random((len(rows), N_CANDIDATES))),
                                  len(idx) - 1)]
            fit = (W_FORMALITY * _formality_score(look[rows], form[cand])
                   + W_COLOUR * colour_score(rule[rows], anchor[rows], colour[cand], n_acc[rows])
                   + W_SILHOUETTE * (_silhouette_score(top_sil[rows], sil[cand])
                                     if slot == "bottom" else 0.5))
            g = TEMPERATURE * fit + rng.gumbel(size=fit.shape)
            pick = np.argmax(g, axis=1)
            noisy = rng.random(len(rows)) < NOISE
            pick[noisy] = 0
            item = cand[np.arange(len(rows)), pick]
            chosen[rows, filled[rows]] = item
            filled[rows] += 1
            n_acc[rows] += ~PALETTE_NEUTRAL[colour[item]]
            if slot in ("top", "dress"):
                top_sil[rows] = sil[item]
            col += 1
        # a catalogue lacking a slot (only tiny ones) cannot make a 3-item look
        keep = filled >= 3
        oid = np.repeat(np.arange(start, start + B)[keep], filled[keep])
        flat = chosen[keep][chosen[keep] >= 0]  # row-major: outfit order, slot order within
        out_o.append(oid)
        out_i.append(flat)
    oid = np.concatenate(out_o) if out_o else np.zeros(0, int)
    iid = np.concatenate(out_i) if out_i else np.zeros(0, int)
    names = (np.char.add("O", np.char.zfill(oid.astype(str), width)) if len(oid)
             else np.zeros(0, dtype=str))
    return pd.DataFrame({"outfit_id": names, "item_id": ids[iid]})
