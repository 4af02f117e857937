"""Garment-level pooling of attribute predictions over a model's colour variants.

A catalogue often sells one garment in several colours: MANGO's ``cod_modelo_color``
is ``<model code>-<colour>``, and the canonical catalogue keeps the model code in the
optional ``model_code`` column.  The variants are photographed separately, so each
image is an independent look at the *same* garment: family, product type and fabric
are one answer for all of them, colour is not.  Averaging the network's
log-probabilities over the variants (a geometric mean, renormalised) removes part of
the per-image error, and it is how the product predicts.

Which heads are garment-level is read from the data, never assumed: a head is pooled
when, in the *training* products, the variants of a model carry one label for it in
at least ``min_agreement`` of the models that have several labelled variants
(:func:`garment_level_heads`).  On MANGO that picks family, type and fabric (one label
per model in every case) and leaves colour (different within 23% of the models) alone.

Examples
--------
>>> import numpy as np, pandas as pd
>>> labels = pd.DataFrame({"fabric": ["denim", "denim", "wool", "wool"],
...                        "colour": ["red", "blue", "grey", "grey"]})
>>> garment_level_heads(labels, ["a", "a", "b", "b"], min_groups=2)
['fabric']
>>> p = {"fabric": np.array([[0.6, 0.4], [0.2, 0.8], [0.9, 0.1]])}
>>> pool_probabilities(p, ["a", "a", None], ["fabric"])["fabric"].round(3)
array([[0.38, 0.62],
       [0.38, 0.62],
       [0.9 , 0.1 ]])
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from features.exceptions import InputError

#: Catalogue column whose value colour variants of one garment share.
GROUP_COLUMN = "model_code"


def _as_groups(groups: Sequence, n: int) -> pd.Series:
    g = pd.Series(list(groups), dtype=object)
    if len(g) != n:
        raise InputError(f"{len(g)} group keys for {n} rows", field="groups", value=len(g))
    blank = g.isna() | (g.astype(str).str.strip() == "")
    return g.where(~blank, None)


def garment_level_heads(labels: pd.DataFrame, groups: Sequence, *,
                        min_agreement: float = 0.98, min_groups: int = 5) -> list[str]:
    """Heads whose label is shared by the members of a group.

    Parameters
    ----------
    labels : DataFrame
        One column per head (training products; missing cells are ignored).
    groups : sequence
        Group key per row (``None``/empty: no group).
    min_agreement : float
        Fraction of multi-member groups that must have a single label.
    min_groups : int
        Fewer multi-member labelled groups than this is no evidence: nothing pooled.
    """
    g = _as_groups(groups, len(labels))
    out = []
    for h in labels.columns:
        v = labels[h].astype(object)
        ok = v.notna() & (v.astype(str).str.strip() != "") & g.notna().to_numpy()
        if not ok.any():
            continue
        df = pd.DataFrame({"g": g[ok.to_numpy()].to_numpy(), "v": v[ok].astype(str).to_numpy()})
        sizes = df.groupby("g")["v"].size()
        multi = sizes.index[sizes > 1]
        if len(multi) < min_groups:
            continue
        agree = (df[df["g"].isin(multi)].groupby("g")["v"].nunique() == 1).mean()
        if agree >= min_agreement:
            out.append(str(h))
    return out


def pool_probabilities(probs: dict[str, np.ndarray], groups: Sequence,
                       heads: Sequence[str]) -> dict[str, np.ndarray]:
    """Replace each row's distribution, for ``heads``, by the renormalised geometric
    mean over the rows of its group; other heads and ungrouped rows are unchanged."""
    if not heads:
        return dict(probs)
    n = len(next(iter(probs.values())))
    g = _as_groups(groups, n)
    has = g.notna().to_numpy()
    codes = np.full(n, -1)
    codes[has] = pd.factorize(g[has])[0]
    out = dict(probs)
    for h in heads:
        if h not in probs:
            raise InputError(f"no head {h!r} to pool", field="heads", value=h,
                             allowed=sorted(probs))
        p = np.asarray(probs[h], dtype=np.float64)
        logp = np.log(np.clip(p, 1e-12, None))
        q = p.copy()
        if has.any():
            k = codes.max() + 1
            sums = np.zeros((k, p.shape[1]))
            np.add.at(sums, codes[has], logp[has])
            counts = np.bincount(codes[has], minlength=k)[:, None]
            mean = sums[codes[has]] / counts[codes[has]]
            e = np.exp(mean - mean.max(1, keepdims=True))
            q[has] = e / e.sum(1, keepdims=True)
        out[h] = q.astype(np.asarray(probs[h]).dtype)
    return out
