"""Short human reasons for a pair score, read from the pair's own features.

Each reason is a rule over one feature group (history, colour, category habit,
shape balance), ordered by how much that group pushed this pair's score
(LightGBM's per-feature contributions), so the first reason is the one the model
leaned on most.
"""
from __future__ import annotations

import numpy as np

NEUTRAL_CHROMA = 12.0


def _group_contrib(model, X) -> dict[str, float]:
    contrib = model.booster_.predict(X, pred_contrib=True)[0][:-1]
    out: dict[str, float] = {}
    for g, c in zip(model.featurizer_.feature_groups_, contrib):
        out[g] = out.get(g, 0.0) + float(c)
    return out


def pair_reasons(model, i: int, j: int) -> list[str]:
    """Reasons (strings) for catalogue rows i and j, most influential first."""
    fz = model.featurizer_
    cat = model._catalog
    X = fz.transform(model.items_, np.array([i]), model.items_, np.array([j]))
    contrib = _group_contrib(model, X)
    name = {n: k for k, n in enumerate(fz.feature_names_)}
    row = X[0]
    ri, rj = cat.iloc[i], cat.iloc[j]
    reasons: list[tuple[float, str]] = []

    def feat(n):
        return float(row[name[n]]) if n in name else float("nan")

    st = fz.stats_
    n_pair = float(st.pair_count(np.array([i]), np.array([j]))[0])
    if n_pair >= 1:
        looks = "look" if n_pair == 1 else "looks"
        reasons.append((contrib.get("cooccurrence", 0) + 1.0,
                        f"worn together in {int(n_pair)} {looks}"))
    else:
        # no history of the pair itself: colour variants of the two pieces may have one
        n_sib = feat("sib_pair_count")
        if n_sib == n_sib and n_sib >= 1:
            looks = "look" if n_sib == 1 else "looks"
            reasons.append((contrib.get("cooccurrence", 0) + 0.5,
                            f"other colours of these pieces were worn together in "
                            f"{int(n_sib)} {looks}"))
    pmi_sub = feat("pmi_subcategory")
    if pmi_sub == pmi_sub and pmi_sub > 0.3 and str(ri.get("subcategory", "")):
        reasons.append((contrib.get("cooccurrence", 0),
                        f"{ri['subcategory']} and {rj['subcategory']} are often worn together"))
    ci, cj = str(ri.get("colour", "")).lower(), str(rj.get("colour", "")).lower()
    c_contrib = contrib.get("colour", 0) + contrib.get("metadata", 0) * 0.5
    if ci and ci == cj:
        reasons.append((c_contrib, f"same colour family ({ci})"))
    else:
        na, nb = feat("colour_neutral_a"), feat("colour_neutral_b")
        dh = feat("colour_dhue")
        if na + nb == 1:
            reasons.append((c_contrib, "a neutral grounds the accent colour"))
        elif na == 1 and nb == 1:
            reasons.append((c_contrib, "two neutrals"))
        elif dh == dh and dh < 30:
            reasons.append((c_contrib, "close hues"))
        elif dh == dh and dh > 150:
            reasons.append((c_contrib, "complementary colours"))
    for k, r in ((i, ri), (j, rj)):
        for c in fz.shape_columns_:
            if not any(w in c for w in ("flare", "taper", "width", "wide")):
                continue
            v = cat.iloc[k].get(c) if c in cat.columns else None
            col = model.items_.num[:, _num_index(fz, c)]
            val = col[k]
            same = model.items_.codes["category"] == model.items_.codes["category"][k]
            ref = col[same]
            ref = ref[~np.isnan(ref)]
            if val == val and len(ref) > 10 and val > np.quantile(ref, 0.75):
                part = "leg" if str(r.get("category")) == "bottom" else "hem"
                reasons.append((contrib.get("shape", 0), f"balances a wide {part}"))
                break
    if feat("emb_cos") == feat("emb_cos") and feat("emb_cos") > 0.8:
        reasons.append((contrib.get("embedding", 0), "similar look"))
    reasons.sort(key=lambda t: -t[0])
    seen, out = set(), []
    for _, text in reasons:
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _num_index(fz, column: str) -> int:
    P = 3 if fz.pixel_colours_ else 1
    return 6 * P + len(fz.extra_colour_columns_) + fz.shape_columns_.index(column)
