"""Features of a pair of items for the compatibility model.

Per-item arrays (category codes, colours, shape, attributes, embedding) are built
once (:class:`ItemTable`); a pair's features are then pure array arithmetic, so
scoring a batch of pairs costs a few vectorised lookups and a LightGBM predict.

Feature groups (the ablation ladder adds them in this order):

``metadata``
    categorical codes of both items for the catalogue fields (category, subcategory,
    colour name, material, gender, and free attribute columns such as product type),
    and whether the two agree; with numeric model codes (MANGO), the gap between the
    two codes and between their last four digits (a collection's models are
    numbered in sequence).
``colour``
    colour harmony from CIELAB: the dominant colour of each item (from
    ``features.parquet`` ``colour1_L/a/b`` when present, else from the catalogue
    colour name), chroma, hue, lightness contrast, hue difference, colour distance,
    neutral vs accent, and the closest pair of palette colours.
``shape``
    each item's ``shape_*`` features (NaN where they do not apply), box aspect and
    mask area: the trees learn balance (a fitted top with a wide leg).
``attributes``
    predicted attribute classes (``attr_*``) of both items and their agreement.
``embedding``
    cosine of the two visual embeddings, and of each item with the mean embedding of
    its category's items worn with the partner's category in training.
``style``
    cosine of two learned content-only "style" vectors
    (:mod:`recommender.compat.style`), cross-fitted so a training row never sees a
    vector trained on its own outfit; and the cosine of each item's vector with the
    mean vector of the other's training partners (its own outfit left out).
``cooccurrence``
    item-level (pair count, each item's count, shared partners: "two hop") and
    content-level statistics (PMI of the two values of each categorical field; each
    item's affinity for the partner's values) from training outfits, leave-one-outfit-out during training. The content
    level carries new arrivals. Where the catalogue groups items into colour
    variants of one garment (a ``model_code`` column, or ids ``<model>-<colour>``),
    the same item-level statistics are also counted per model ("sibling" history):
    a new colour of a known garment inherits its siblings' outfits. And the cosine
    of the two items' (and models') spectral vectors of the co-occurrence graph:
    communities further apart than two hops (cross-fitted for training rows).

Pairs are put in a canonical order (by category, then subcategory code), so
``f(a, b) == f(b, a)``.

Examples
--------
>>> lab = colour_name_lab(["white", "NAVY", "unknown"])
>>> lab.shape, bool(np.isnan(lab[2, 0]))
((3, 3), True)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.exceptions import BundleError, InputError

GROUPS = ("metadata", "colour", "shape", "attributes", "embedding", "cooccurrence", "style")
#: The ablation ladder: each adds a group to the previous one; "all" adds the rest.
ABLATION_LADDER = (("metadata only", ("metadata",)),
                   ("+ colours", ("metadata", "colour")),
                   ("+ shape", ("metadata", "colour", "shape")),
                   ("+ embedding", ("metadata", "colour", "shape", "embedding")),
                   ("+ co-occurrence", ("metadata", "colour", "shape", "embedding",
                                        "cooccurrence")),
                   ("all", GROUPS))

META_COLUMNS = ("category", "subcategory", "colour", "material", "gender")
#: Columns never used as attributes.
SKIP_COLUMNS = {"item_id", "image_path", "image_ok", "price", "in_stock", "feat_ok",
                "feat_error", "mask_method", "name", "title", "description"}
MAX_FREE_LEVELS = 500
#: Items per block of the style tower's inputs in :meth:`PairFeaturizer.item_table`.
STYLE_BLOCK = 65_536
#: The low digits of a numeric model code (MANGO: the number within a collection).
CODE_LOW = 10_000
#: Chroma below this is a neutral (white, grey, black, beige-ish).
NEUTRAL_CHROMA = 12.0

#: Approximate CIELAB of common colour names (lower case), for catalogues without
#: pixel colours. MANGO's groups fold black into GREY and cream into WHITE.
COLOUR_NAMES_LAB = {
    "white": (95, 0, 2), "offwhite": (92, 0, 8), "cream": (92, 0, 10), "ivory": (93, 0, 8),
    "ecru": (88, 1, 12), "beige": (80, 3, 18), "sand": (78, 3, 20), "camel": (62, 12, 35),
    "grey": (55, 0, 0), "gray": (55, 0, 0), "silver": (75, 0, 0), "charcoal": (30, 0, 0),
    "black": (12, 0, 0), "blue": (40, 10, -45), "navy": (22, 8, -30), "denim": (45, 0, -25),
    "light blue": (75, -5, -20), "sky": (75, -5, -20), "turquoise": (70, -35, -10),
    "brown": (40, 15, 25), "tan": (60, 10, 30), "khaki": (50, -5, 25), "pink": (75, 25, 5),
    "fuchsia": (55, 75, -15), "red": (45, 60, 35), "burgundy": (28, 40, 12),
    "green": (50, -40, 30), "olive": (45, -10, 35), "mint": (85, -25, 5),
    "yellow": (88, -5, 75), "mustard": (70, 8, 65), "gold": (70, 5, 55),
    "orange": (65, 40, 65), "coral": (65, 45, 30), "purple": (35, 45, -40),
    "lilac": (70, 20, -20), "violet": (40, 50, -50),
}


def colour_name_lab(names) -> np.ndarray:
    """CIELAB (n, 3) of colour names (case-insensitive); NaN for unknown names."""
    out = np.full((len(names), 3), np.nan)
    for i, n in enumerate(names):
        key = str(n).strip().lower().replace("_", " ")
        lab = COLOUR_NAMES_LAB.get(key) or COLOUR_NAMES_LAB.get(key.replace(" ", ""))
        if lab is None:  # "dark blue", "light pink": use the last known word
            for word in reversed(key.replace("-", " ").split()):
                if word in COLOUR_NAMES_LAB:
                    lab = COLOUR_NAMES_LAB[word]
                    break
        if lab is not None:
            out[i] = lab
    return out


def _lab_polar(lab):
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360
    return chroma, hue


def _is_free_attribute(s: pd.Series, n: int) -> bool:
    if s.dtype.kind not in "OSU" and str(s.dtype) not in ("string", "category"):
        return False
    k = s.astype(str).nunique()
    return 2 <= k <= MAX_FREE_LEVELS and k < max(2, 0.5 * n)


def sibling_key_source(catalog: pd.DataFrame) -> str | None:
    """Where an item's model ("sibling group": colour variants of one garment) is read.

    ``"model_code"`` when the catalogue has that column; ``"item_id"`` when ids look
    like ``<model>-<colour>`` and some models have several colours; else None.
    """
    n = len(catalog)
    if "model_code" in catalog.columns:
        return "model_code"
    if "item_id" not in catalog.columns or n == 0:
        return None
    ids = catalog["item_id"].astype(str)
    if ids.str.contains("-", regex=False).mean() < 0.5:
        return None
    return "item_id" if ids.str.split("-", n=1).str[0].nunique() < n else None


def sibling_keys(rows: pd.DataFrame, source: str | None) -> np.ndarray:
    """Model key (str) of each row; "" where unknown."""
    n = len(rows)
    if source == "model_code" and "model_code" in rows.columns:
        keys = rows["model_code"].astype(str)
    elif source is not None and "item_id" in rows.columns:
        # new items may come without the column: their id still names the model
        keys = rows["item_id"].astype(str).str.split("-", n=1).str[0]
    else:
        return np.full(n, "", dtype=object)
    keys = keys.where(~keys.isin(["", "nan", "None"]), "")
    return keys.to_numpy(dtype=object)


def graph_vectors(stats, dim: int) -> np.ndarray:
    """Unit spectral vectors (n, dim) of a co-occurrence graph; zero rows: no history.

    The top singular vectors of D^-1/2 A D^-1/2 (A: pair counts, D: degrees), scaled
    by the square root of their singular values. Deterministic (fixed start vector).

    >>> from recommender.compat.cooccurrence import CooccurrenceStats
    >>> st = CooccurrenceStats().fit([[0, 1, 2], [1, 2], [0, 2, 3]], 5, {}, {})
    >>> v = graph_vectors(st, 3)
    >>> v.shape, float(abs(v[4]).sum())     # item 4 was never worn
    ((5, 3), 0.0)
    """
    from scipy import sparse
    from scipy.sparse.linalg import svds

    A = stats._adjacency().astype(np.float64)
    n = A.shape[0]
    deg = np.asarray(A.sum(axis=1)).ravel()
    out = np.zeros((n, dim), np.float32)
    if not (deg > 0).any() or dim < 1:
        return out
    d = sparse.diags(1.0 / np.sqrt(np.maximum(deg, 1e-12)) * (deg > 0))
    M = (d @ A @ d).tocsr()
    k = int(min(dim, n - 2))
    if k < 1:
        return out
    if n <= 2000:
        # small graphs: the dense eigendecomposition is exact and quick
        w, U = np.linalg.eigh(M.toarray())
        top = np.argsort(-np.abs(w))[:k]
        s, U = np.abs(w[top]), U[:, top]
    else:
        U, s, _ = svds(M, k=k, v0=np.full(n, 1.0 / np.sqrt(n)))
    V = U * np.sqrt(s)
    norm = np.linalg.norm(V, axis=1, keepdims=True)
    V = np.where(norm > 1e-9, V / np.maximum(norm, 1e-9), 0.0)
    out[:, :k] = V
    return out


def _graph_cos(vec, fold_vecs, sa, sb, outfit):
    """Cosine of two rows' graph vectors (NaN when either has none); training rows
    (``outfit`` >= 0) read the fold that left their outfit out."""
    out = np.full(len(sa), np.nan)
    ok = (sa >= 0) & (sb >= 0)
    if not ok.any():
        return out
    va, vb = vec[np.maximum(sa, 0)], vec[np.maximum(sb, 0)]
    if outfit is not None and fold_vecs is not None:
        o = np.asarray(outfit, np.int64)
        m = np.flatnonzero(ok & (o >= 0))
        k = o[m] % len(fold_vecs)
        va[m] = fold_vecs[k, sa[m]]
        vb[m] = fold_vecs[k, sb[m]]
    cos = (va * vb).sum(axis=1)
    has = (np.abs(va).sum(axis=1) > 0) & (np.abs(vb).sum(axis=1) > 0)
    out[ok & has] = cos[ok & has]
    return out


def _worn_with(outfits, cat: np.ndarray, n_cat: int):
    """(outfit, item, category) for each item of each outfit and each category it
    was worn with there (counted once per outfit), sorted in that order.

    >>> k, i, c = _worn_with([np.array([0, 1, 2])], np.array([0, 1, 1]), 2)
    >>> k.tolist(), i.tolist(), c.tolist()
    ([0, 0, 0, 0, 0], [0, 1, 1, 2, 2], [1, 0, 1, 0, 1])
    """
    outfits = [np.unique(np.asarray(o, np.int64)) for o in outfits]
    sizes = np.array([len(o) for o in outfits], np.int64)
    if not len(outfits) or sizes.sum() == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    members = np.concatenate(outfits)
    owner = np.repeat(np.arange(len(outfits)), sizes)
    start = np.r_[0, np.cumsum(sizes)[:-1]]
    # every ordered pair (member p, member q) of one outfit, p != q
    reps = sizes[owner]
    p = np.repeat(np.arange(len(members)), reps)
    first = np.repeat(np.r_[0, np.cumsum(reps)[:-1]], reps)
    q = start[owner[p]] + (np.arange(len(p)) - first)
    keep = p != q
    p, q = p[keep], q[keep]
    n = int(members.max()) + 1
    key = (owner[p] * n + members[p]) * n_cat + cat[members[q]]
    key = np.unique(key)
    c2 = key % n_cat
    rest = key // n_cat
    return rest // n, rest % n, c2


class ItemTable:
    """Per-item arrays the pair features read: codes, numeric columns, embedding.

    ``stat_idx`` is each row's catalogue index for the co-occurrence statistics
    (-1 for items not in the catalogue, which have no history).
    """

    def __init__(self, codes, num, emb, stat_idx, group_idx=None):
        self.codes = codes            # col -> (n,) int64, 0 = unknown
        self.num = num                # (n, K) float64
        self.emb = emb                # (n, D) float32 L2-normalised, or None
        self.stat_idx = stat_idx      # (n,) int64
        self.style = None             # (n, D) float32 style vectors, or None
        # (n,) int64 model ("sibling group") of each item, -1 = none known
        self.group_idx = (np.full(len(stat_idx), -1, np.int64) if group_idx is None
                          else np.asarray(group_idx, np.int64))
        self.code_num = None          # (n,) float64 numeric model code, or None

    def __len__(self):
        return len(self.stat_idx)


class PairFeaturizer:
    """Builds pair feature matrices; fitted on the catalogue and training outfits.

    Parameters
    ----------
    groups : feature groups to use (default: all of :data:`GROUPS`); groups whose
        data is absent (no features table, no embeddings) are left out and the
        fitted ``groups_`` says which were used.
    style : :class:`recommender.compat.style.StyleConfig` (or dict) of the "style"
        group, or an already fitted :class:`~recommender.compat.style.StyleEmbedding`
        to reuse
    style_folds : cross-fitting folds of the style and graph vectors for training rows
        (0: none, only for fitting statistics that score no training rows)
    style_outfits : positions in ``train_outfits`` of the outfits the style towers
        train on (None: all); the statistics always count them all. A fold tower
        still never sees an outfit of its own fold.
    model_code_gap : with numeric model codes (MANGO), the metadata features
        ``model_code_gap`` = log(1 + |code_a - code_b|) and ``model_code_gap_low``,
        the same on the codes' last four digits: models of one collection are
        numbered close together
    graph_dim : size of the co-occurrence graph vectors (spectral embedding of the
        normalised pair-count matrix, items and models); 0 (default): none. On the
        MANGO validation split 32 moved FITB 0.877->0.879 but cold FITB
        0.682->0.660, so it is off unless asked for.
    """

    def __init__(self, groups=GROUPS, style=None, style_folds=2, style_outfits=None,
                 model_code_gap=True, graph_dim=0):
        self.groups = tuple(groups)
        self.style = style
        self.style_folds = style_folds
        self.style_outfits = style_outfits
        self.model_code_gap = model_code_gap
        self.graph_dim = graph_dim

    # -- fitting -----------------------------------------------------------------------
    def fit(self, catalog: pd.DataFrame, features: pd.DataFrame | None,
            embeddings: np.ndarray | None, train_outfits: list[list[int]]):
        """Choose columns and vocabularies, count co-occurrence on ``train_outfits``.

        With the "style" group, also fits the style tower on ``train_outfits`` and
        (``style_folds`` > 1) one tower per fold for the training rows.
        """
        from recommender.compat.cooccurrence import CooccurrenceStats

        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown:
            raise InputError(f"unknown feature group {unknown[0]!r}", field="groups",
                             value=unknown[0], allowed=GROUPS)
        n = len(catalog)
        feats = features if features is not None else pd.DataFrame(index=range(n))
        meta = [c for c in META_COLUMNS if c in catalog.columns]
        free = [c for c in catalog.columns if c not in META_COLUMNS and c not in SKIP_COLUMNS
                and _is_free_attribute(catalog[c], n)]
        attr = [c for c in feats.columns if c.startswith("attr_") and not c.endswith("_conf")]
        if "colour_group" in feats.columns:
            attr.append("colour_group")
        self.cat_columns_ = {"metadata": meta + free, "attributes": attr}
        self.vocab_ = {}
        for c in meta + free:
            self.vocab_[c] = self._make_vocab(catalog[c])
        for c in attr:
            self.vocab_[c] = self._make_vocab(feats[c])
        has_px = all(f"colour1_{k}" in feats.columns for k in "Lab")
        self.pixel_colours_ = bool(has_px)
        shape_cols = [c for c in feats.columns if c.startswith("shape_")]
        shape_cols += [c for c in ("bbox_aspect", "mask_area", "kp_conf") if c in feats.columns]
        self.shape_columns_ = shape_cols
        self.conf_columns_ = [f"{c}_conf" for c in attr if f"{c}_conf" in feats.columns]
        self.extra_colour_columns_ = [c for c in ("colourfulness",) if c in feats.columns]
        self.has_embedding_ = embeddings is not None and len(embeddings) == n
        groups = [g for g in self.groups
                  if not (g == "embedding" and not self.has_embedding_)
                  and not (g == "attributes" and not attr)
                  and not (g == "shape" and not shape_cols)]
        self.groups_ = tuple(groups)
        self._fit_model_keys(catalog)
        items = self.item_table(catalog, features, embeddings)
        # co-occurrence on every categorical field we know (metadata and attributes)
        self.cooc_fields_ = [c for c in meta + free + attr if c != "gender"]
        self.stats_ = CooccurrenceStats().fit(
            train_outfits, n, {c: items.codes[c] for c in self.cooc_fields_},
            {c: len(self.vocab_[c]) + 1 for c in self.cooc_fields_})
        self._fit_siblings(catalog, train_outfits)
        self._fit_graph(catalog, train_outfits)
        self._fit_centroids(items, train_outfits)
        self.style_ = None
        self.style_fold_vecs_ = None
        self.style_partner_sum_ = self.style_fold_partner_sum_ = None
        if "style" in self.groups_:
            self._fit_style(items, train_outfits)
        self.feature_names_, self.feature_groups_, self.categorical_ = self._names()
        return self

    # -- the learned style vectors ------------------------------------------------------
    def _style_inputs(self, items: ItemTable, rows: slice = slice(None)):
        """Content the style tower reads: codes and numbers of the groups in use (of
        ``rows`` of the table)."""
        g = self.groups_
        fields = list(self.cat_columns_["metadata"]) if "metadata" in g else []
        if "attributes" in g:
            fields += self.cat_columns_["attributes"]
        codes = {f: items.codes[f][rows] for f in fields if f != "gender"}
        P = self._n_palette()
        ranges = []
        if "colour" in g:
            ranges += list(range(0, 6 * P + len(self.extra_colour_columns_)))
        off = 6 * P + len(self.extra_colour_columns_)
        if "shape" in g:
            ranges += list(range(off, off + len(self.shape_columns_)))
        off += len(self.shape_columns_)
        if "attributes" in g:
            ranges += list(range(off, off + len(self.conf_columns_)))
        num = items.num[rows][:, ranges]
        if "embedding" in g and items.emb is not None:
            num = np.concatenate([num, items.emb[rows].astype(np.float64)], axis=1)
        return codes, num

    def context_inputs(self, items: ItemTable) -> tuple[dict, np.ndarray, dict]:
        """Content the outfit context model reads (:mod:`recommender.compat.context`):
        the style tower's inputs and, with numeric model codes, the code's collection
        digits as two codes (the two digits above the low four, and the two above
        those) and its low four digits as sines and cosines (a collection's models are
        numbered in sequence). Returns (codes, numbers, values per code field)."""
        codes, num = self._style_inputs(items)
        n_values = {f: len(self.vocab_[f]) + 1 for f in codes}
        if getattr(self, "code_gap_", False) and items.code_num is not None:
            code = np.asarray(items.code_num, np.float64)
            ok = np.isfinite(code) & (code >= 0)
            high = np.floor(np.where(ok, code, 0) / CODE_LOW)
            codes = dict(codes, code_series=np.where(ok, high % 100 + 1, 0).astype(np.int64),
                         code_line=np.where(ok, (high // 100) % 100 + 1, 0).astype(np.int64))
            n_values.update(code_series=101, code_line=101)
            low = np.where(ok, code % CODE_LOW, np.nan) / CODE_LOW
            waves = [f(2 * np.pi * k * low) for k in (1, 2, 4, 8) for f in (np.sin, np.cos)]
            num = np.concatenate([num, np.stack(waves, axis=1)], axis=1)
        return codes, num, n_values

    def _fit_style(self, items: ItemTable, outfits):
        from recommender.compat.style import StyleConfig, StyleEmbedding

        codes, num = self._style_inputs(items)
        if isinstance(self.style, StyleEmbedding) and hasattr(self.style, "weights_"):
            # an already fitted tower (content only, so a refit on a few more outfits
            # would add little and cost a training run)
            if self.style.fields_ != list(codes) or self.style.num_mean_.size != num.shape[1]:
                raise InputError("the given fitted style embedding reads other inputs",
                                 field="style")
            self.style_ = self.style
            cfg = self.style.config
        else:
            cfg = self.style if self.style is not None else StyleConfig()
            if isinstance(cfg, dict):
                cfg = StyleConfig.from_dict(cfg)
        n_values = {f: len(self.vocab_[f]) + 1 for f in codes}
        groups = items.codes.get("subcategory", np.zeros(len(items), np.int64))
        sel = (range(len(outfits)) if self.style_outfits is None
               else [int(m) for m in self.style_outfits])
        if self.style_ is None:
            self.style_ = StyleEmbedding(cfg).fit(
                codes, n_values, num,
                outfits if self.style_outfits is None else [outfits[m] for m in sel], groups)
        K = int(self.style_folds)
        if K > 1 and len(outfits) >= 2 * K:
            vecs = []
            for k in range(K):
                # fold k: outfit m's training rows read this tower when m % K == k
                part = [outfits[m] for m in sel if m % K != k]
                st = StyleEmbedding(cfg).fit(codes, n_values, num, part, groups)
                vecs.append(st.transform(codes, num))
            # (K, n, D): fold k's vectors never saw outfits m with m % K == k
            self.style_fold_vecs_ = np.stack(vecs)
        # each item's training partners in style space: (A @ V), A = pair counts
        A = self.stats_._adjacency()
        self.style_partner_sum_ = np.asarray(A @ self.style_.transform(codes, num), np.float32)
        self.style_fold_partner_sum_ = None if self.style_fold_vecs_ is None else np.stack(
            [np.asarray(A @ v, np.float32) for v in self.style_fold_vecs_])

    def _fit_siblings(self, catalog: pd.DataFrame, outfits) -> None:
        """Model-level ("sibling") co-occurrence: the item statistics counted per model.

        Each training outfit becomes the set of its items' models, so a pair of
        models co-occurs when any colours of the two garments were worn together.
        Outfit order is kept, so the same leave-one-outfit-out lookups apply.
        """
        from recommender.compat.cooccurrence import CooccurrenceStats

        self.group_stats_ = None
        if self.group_source_ is None or "cooccurrence" not in self.groups_:
            return
        gidx = self._group_index(sibling_keys(catalog, self.group_source_))
        self.group_stats_ = CooccurrenceStats().fit(
            [gidx[np.asarray(o, np.int64)][gidx[np.asarray(o, np.int64)] >= 0] for o in outfits],
            len(self.group_vocab_), {}, {})

    def _fit_graph(self, catalog: pd.DataFrame, outfits) -> None:
        """Spectral vectors of the co-occurrence graph, of items and of models.

        Two items never worn together may still sit in one community of the graph
        (one collection, styled around the same pieces) further than two hops
        apart. Training rows read cross-fitted vectors: those of the graph without
        the fold that holds the row's outfit.
        """
        from recommender.compat.cooccurrence import CooccurrenceStats

        self.graph_vec_ = self.graph_fold_vecs_ = None
        self.sib_graph_vec_ = self.sib_graph_fold_vecs_ = None
        self.graph_dim_ = 0
        if "cooccurrence" not in self.groups_ or not self.graph_dim:
            return
        dim = int(min(self.graph_dim, self.stats_.n_items_ - 2))
        if dim < 2:
            return
        self.graph_dim_ = dim
        self.graph_vec_ = graph_vectors(self.stats_, dim)
        gstats = self.group_stats_
        if gstats is not None:
            self.sib_graph_vec_ = graph_vectors(gstats, min(dim, gstats.n_items_ - 2))
        K = int(self.style_folds)
        if K > 1 and len(outfits) >= 2 * K:
            n = self.stats_.n_items_
            gidx = (self._group_index(sibling_keys(catalog, self.group_source_))
                    if gstats is not None else None)
            vecs, gvecs = [], []
            for k in range(K):
                part = [np.asarray(o, np.int64) for m, o in enumerate(outfits) if m % K != k]
                vecs.append(graph_vectors(CooccurrenceStats().fit(part, n, {}, {}), dim))
                if gidx is not None:
                    gp = [gidx[o][gidx[o] >= 0] for o in part]
                    gvecs.append(graph_vectors(CooccurrenceStats().fit(gp, gstats.n_items_,
                                                                       {}, {}),
                                               self.sib_graph_vec_.shape[1]))
            self.graph_fold_vecs_ = np.stack(vecs)
            self.sib_graph_fold_vecs_ = np.stack(gvecs) if gvecs else None

    def _fit_model_keys(self, catalog: pd.DataFrame) -> None:
        """Which column names each item's model, the models known, and whether model
        codes are numbers (then the gap between two codes is a metadata feature)."""
        self.group_source_ = sibling_key_source(catalog)
        keys = sibling_keys(catalog, self.group_source_)
        self.group_vocab_ = sorted({k for k in keys if k})
        digits = pd.Series(keys, dtype=object).astype(str).str.fullmatch(r"\d{4,12}")
        self.code_gap_ = bool(self.model_code_gap and "metadata" in self.groups_
                              and self.group_source_ is not None and len(keys)
                              and digits.mean() >= 0.8)

    def _group_index(self, keys) -> np.ndarray:
        """Row of each model key in ``group_vocab_`` (-1: unknown model)."""
        lut = getattr(self, "_group_lut", None)
        if lut is None or len(lut) != len(self.group_vocab_):
            lut = self._group_lut = {k: i for i, k in enumerate(self.group_vocab_)}
        return np.array([lut.get(k, -1) for k in keys], np.int64)

    @staticmethod
    def _make_vocab(s: pd.Series) -> list[str]:
        vals = sorted(v for v in s.astype(str).unique() if v not in ("", "nan", "None"))
        return vals

    def _fit_centroids(self, items: ItemTable, outfits):
        """Mean embedding of category-c items worn with a category-c' item, (C+1, C+1, D)."""
        C = len(self.vocab_.get("category", [])) + 1
        if not self.has_embedding_ or "category" not in items.codes:
            self.centroids_ = None
            return
        D = items.emb.shape[1]
        acc = np.zeros((C, C, D))
        cnt = np.zeros((C, C))
        cat = items.codes["category"]
        k, i, c2 = _worn_with(outfits, cat, C)
        # np.add.at adds row by row in the order given: (outfit, item, partner
        # category) ascending, the order the per-outfit loop once added them in,
        # so every sum is the same float sum
        np.add.at(acc, (cat[i], c2), items.emb[i])
        np.add.at(cnt, (cat[i], c2), 1)
        cen = acc / np.maximum(cnt[..., None], 1)
        norm = np.linalg.norm(cen, axis=-1, keepdims=True)
        self.centroids_ = (cen / np.where(norm > 0, norm, 1)).astype(np.float32)

    # -- per-item arrays -----------------------------------------------------------------
    def item_table(self, rows: pd.DataFrame, features: pd.DataFrame | None = None,
                   embeddings: np.ndarray | None = None,
                   stat_idx: np.ndarray | None = None) -> ItemTable:
        """Per-item arrays for catalogue rows (``stat_idx`` default: 0..n-1) or new items.

        ``rows`` holds the catalogue fields; feature columns may be in ``rows`` itself
        or in ``features`` (row-aligned).
        """
        n = len(rows)
        rows = rows.reset_index(drop=True)
        if features is not None:
            features = features.reset_index(drop=True)
            extra = [c for c in features.columns if c not in rows.columns]
            rows = pd.concat([rows, features[extra]], axis=1)
        codes = {}
        for c, vocab in self.vocab_.items():
            lut = {v: k + 1 for k, v in enumerate(vocab)}
            col = rows[c].astype(str) if c in rows.columns else pd.Series([""] * n)
            # int32: a million items x ~30 fields, and a copy on every Dask worker
            codes[c] = col.map(lut).fillna(0).to_numpy(np.int32)
        num = self._numeric(rows)
        emb = None
        if self.has_embedding_:
            if embeddings is None or len(embeddings) != n:
                raise InputError("this model uses visual embeddings: give one embedding "
                                 "row per item", field="embeddings")
            emb = np.asarray(embeddings, np.float32)
            norm = np.linalg.norm(emb, axis=1, keepdims=True)
            emb = emb / np.where(norm > 0, norm, 1)
        if stat_idx is None:
            stat_idx = np.arange(n, dtype=np.int64)
        group_idx = code_num = None
        if getattr(self, "group_source_", None):
            keys = sibling_keys(rows, self.group_source_)
            group_idx = self._group_index(keys)
            if self.code_gap_:
                code_num = pd.to_numeric(pd.Series(keys, dtype=object), errors="coerce"
                                         ).to_numpy(np.float64)
        table = ItemTable(codes, num, emb, np.asarray(stat_idx, np.int64), group_idx)
        table.code_num = code_num
        if getattr(self, "style_", None) is not None:
            # in blocks of rows: the tower's inputs (numbers and the embedding in
            # float64) and its forward pass for a million items at once took ~4.5 GB
            # beside a 725 MB table, on every Dask worker that loads the model
            table.style = np.concatenate(
                [self.style_.transform(*self._style_inputs(table, slice(s, s + STYLE_BLOCK)))
                 for s in range(0, max(n, 1), STYLE_BLOCK)])
        return table

    def feature_columns(self) -> list[str]:
        """The columns of a features table that :meth:`item_table` reads (after fit).

        Loading a model reads only these: at a million items the whole table (error
        strings, keypoint columns, ...) is gigabytes, loaded once per Dask worker.
        """
        cols = [c for c in self.vocab_ if c.startswith("attr_") or c == "colour_group"]
        if self.pixel_colours_:
            cols += [f"colour{k}_{c}" for k in (1, 2, 3) for c in "Labw"]
        return cols + self.extra_colour_columns_ + self.shape_columns_ + self.conf_columns_

    def _numeric(self, rows: pd.DataFrame) -> np.ndarray:
        """Colour (L, a, b, chroma, hue, weight) x 3 palette colours, extras, shape, conf."""
        n = len(rows)
        cols = []
        if self.pixel_colours_:
            for k in (1, 2, 3):
                lab = np.stack([pd.to_numeric(rows.get(f"colour{k}_{c}", np.nan),
                                              errors="coerce") * np.ones(n) for c in "Lab"], 1)
                w = pd.to_numeric(rows.get(f"colour{k}_w", np.nan), errors="coerce") * np.ones(n)
                chroma, hue = _lab_polar(lab)
                cols += [lab[:, 0], lab[:, 1], lab[:, 2], chroma, hue, np.asarray(w, float)]
        else:
            lab = colour_name_lab(rows["colour"].astype(str).tolist() if "colour" in rows
                                  else [""] * n)
            chroma, hue = _lab_polar(lab)
            cols += [lab[:, 0], lab[:, 1], lab[:, 2], chroma, hue, np.ones(n)]
        for c in self.extra_colour_columns_ + self.shape_columns_ + self.conf_columns_:
            v = pd.to_numeric(rows[c], errors="coerce") if c in rows else pd.Series(np.nan, range(n))
            cols.append(v.to_numpy(float))
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0))

    # -- names ---------------------------------------------------------------------------
    def _n_palette(self):
        return 3 if self.pixel_colours_ else 1

    def _names(self):
        names, groups, cats = [], [], []

        def add(name, group, categorical=False):
            names.append(name)
            groups.append(group)
            cats.append(categorical)

        g = self.groups_
        if "metadata" in g:
            for c in self.cat_columns_["metadata"]:
                add(f"{c}_a", "metadata", True)
                add(f"{c}_b", "metadata", True)
                add(f"same_{c}", "metadata")
            if getattr(self, "code_gap_", False):
                add("model_code_gap", "metadata")
                add("model_code_gap_low", "metadata")
        if "colour" in g:
            for side in "ab":
                for q in ("L", "chroma", "hue", "neutral"):
                    add(f"colour_{q}_{side}", "colour")
            for q in ("dL", "dE", "dhue", "both_neutral", "one_accent", "palette_min_dE"):
                add(f"colour_{q}", "colour")
            for c in self.extra_colour_columns_:
                add(f"{c}_a", "colour")
                add(f"{c}_b", "colour")
        if "shape" in g:
            for c in self.shape_columns_:
                add(f"{c}_a", "shape")
                add(f"{c}_b", "shape")
        if "attributes" in g:
            for c in self.cat_columns_["attributes"]:
                add(f"{c}_a", "attributes", True)
                add(f"{c}_b", "attributes", True)
                add(f"same_{c}", "attributes")
            for c in self.conf_columns_:
                add(f"{c}_a", "attributes")
                add(f"{c}_b", "attributes")
        if "embedding" in g:
            add("emb_cos", "embedding")
            add("emb_partner_a", "embedding")
            add("emb_partner_b", "embedding")
        if "style" in g:
            add("style_cos", "style")
            add("style_partner_a", "style")
            add("style_partner_b", "style")
        if "cooccurrence" in g:
            for q in ("pair_count", "pair_norm", "log_count_a", "log_count_b", "two_hop",
                      "two_hop_norm"):
                add(f"cooc_{q}", "cooccurrence")
            if getattr(self, "group_stats_", None) is not None:
                for q in ("pair_count", "pair_norm", "log_count_a", "log_count_b",
                          "two_hop", "two_hop_norm"):
                    add(f"sib_{q}", "cooccurrence")
            if getattr(self, "graph_dim_", 0):
                add("graph_cos", "cooccurrence")
                if self.sib_graph_vec_ is not None:
                    add("sib_graph_cos", "cooccurrence")
            for f in self.cooc_fields_:
                add(f"pmi_{f}", "cooccurrence")
                add(f"aff_{f}_a", "cooccurrence")
                add(f"aff_{f}_b", "cooccurrence")
        return names, groups, cats

    # -- pair features -------------------------------------------------------------------
    def _order(self, ta: ItemTable, ia, tb: ItemTable, ib):
        """Row-wise swap mask putting each pair in canonical order."""
        key_a = np.zeros(len(ia), np.int64)
        key_b = np.zeros(len(ib), np.int64)
        for c in ("category", "subcategory", "colour"):
            if c in ta.codes:
                key_a = key_a * 1024 + ta.codes[c][ia] % 1024
                key_b = key_b * 1024 + tb.codes[c][ib] % 1024
        return key_a > key_b

    def transform(self, ta: ItemTable, ia, tb: ItemTable | None = None, ib=None,
                  outfit: np.ndarray | None = None) -> np.ndarray:
        """Feature matrix (P, F) of pairs (ta[ia[k]], tb[ib[k]]).

        ``outfit`` gives, per row, the training outfit to leave out of the
        co-occurrence statistics (-1: none); only meaningful while training.
        """
        if not hasattr(self, "feature_names_"):
            from features.exceptions import NotFittedError
            raise NotFittedError("PairFeaturizer used before fit/load")
        tb = ta if tb is None else tb
        ia = np.asarray(ia, np.int64)
        ib = np.asarray(ib, np.int64)
        swap = self._order(ta, ia, tb, ib)

        def both(get):
            """Per-side arrays (a, b) after the canonical swap."""
            xa, xb = get(ta, ia), get(tb, ib)
            sw = swap.reshape((-1,) + (1,) * (xa.ndim - 1))
            return np.where(sw, xb, xa), np.where(sw, xa, xb)

        cols = []
        g = self.groups_
        if "metadata" in g or "attributes" in g:
            code = {c: both(lambda t, i, c=c: t.codes[c][i]) for c in self.vocab_}
        if "metadata" in g:
            for c in self.cat_columns_["metadata"]:
                a, b = code[c]
                cols += [a, b, ((a == b) & (a > 0)).astype(float)]
            if self.code_gap_:
                # MANGO's codes read <series: 2 digits><family: 2><number: 4>; the
                # number runs through a collection across families, so models
                # designed together have close low digits
                ka, kb = ta.code_num[ia], tb.code_num[ib]
                cols += [np.log1p(np.abs(ka - kb)),
                         np.log1p(np.abs(ka % CODE_LOW - kb % CODE_LOW))]
        if "colour" in g or "shape" in g or "attributes" in g:
            na, nb = both(lambda t, i: t.num[i])
        P = self._n_palette()
        if "colour" in g:
            labs_a = [na[:, 6 * k:6 * k + 3] for k in range(P)]
            labs_b = [nb[:, 6 * k:6 * k + 3] for k in range(P)]
            for x in (na, nb):
                chroma = x[:, 3]
                cols += [x[:, 0], chroma, x[:, 4], (chroma < NEUTRAL_CHROMA).astype(float)]
            dL = np.abs(na[:, 0] - nb[:, 0])
            dE = np.linalg.norm(labs_a[0] - labs_b[0], axis=1)
            dh = np.abs(na[:, 4] - nb[:, 4]) % 360
            dh = np.minimum(dh, 360 - dh)
            neutral_a = na[:, 3] < NEUTRAL_CHROMA
            neutral_b = nb[:, 3] < NEUTRAL_CHROMA
            dmin = np.full(len(ia), np.inf)
            for la in labs_a:
                for lb in labs_b:
                    d = np.linalg.norm(la - lb, axis=1)
                    dmin = np.fmin(dmin, d)
            dmin[np.isinf(dmin)] = np.nan
            cols += [dL, dE, np.where(neutral_a | neutral_b, np.nan, dh),
                     (neutral_a & neutral_b).astype(float), (neutral_a ^ neutral_b).astype(float),
                     dmin]
            off = 6 * P
            for k in range(len(self.extra_colour_columns_)):
                cols += [na[:, off + k], nb[:, off + k]]
        if "shape" in g:
            off = 6 * P + len(self.extra_colour_columns_)
            for k in range(len(self.shape_columns_)):
                cols += [na[:, off + k], nb[:, off + k]]
        if "attributes" in g:
            for c in self.cat_columns_["attributes"]:
                a, b = code[c]
                cols += [a, b, ((a == b) & (a > 0)).astype(float)]
            off = 6 * P + len(self.extra_colour_columns_) + len(self.shape_columns_)
            for k in range(len(self.conf_columns_)):
                cols += [na[:, off + k], nb[:, off + k]]
        if "embedding" in g:
            ea, eb = both(lambda t, i: t.emb[i])
            cols.append((ea * eb).sum(axis=1))
            if self.centroids_ is not None:
                ca, cb = both(lambda t, i: t.codes["category"][i])
                cols.append((ea * self.centroids_[ca, cb]).sum(axis=1))
                cols.append((eb * self.centroids_[cb, ca]).sum(axis=1))
            else:
                cols += [np.full(len(ia), np.nan)] * 2
        if "style" in g:
            cols.append(self._style_cos(ta, ia, tb, ib, outfit))
            x = self._style_partner(ta, ia, tb, ib, outfit)   # a vs b's partners
            y = self._style_partner(tb, ib, ta, ia, outfit)   # b vs a's partners
            cols += [np.where(swap, y, x), np.where(swap, x, y)]
        if "cooccurrence" in g:
            cols += self._cooc_columns(ta, ia, tb, ib, swap, outfit,
                                       code if ("metadata" in g or "attributes" in g) else {})
        if not cols:
            return np.zeros((len(ia), 0), np.float32)
        # one concatenate, not np.column_stack (which wraps each of ~180 columns in a
        # 2-D array: ~70 us a call, most of the cost of a few pairs); the same common
        # dtype, so the same float32 values
        return np.concatenate(cols).reshape(len(cols), len(ia)).T.astype(np.float32, order="C")

    def _style_cos(self, ta, ia, tb, ib, outfit):
        """Cosine of the style vectors; training rows use their out-of-fold tower."""
        cos = (ta.style[ia] * tb.style[ib]).sum(axis=1).astype(np.float64)
        fv = self.style_fold_vecs_
        if outfit is not None and fv is not None:
            o = np.asarray(outfit, np.int64)
            sa, sb = ta.stat_idx[ia], tb.stat_idx[ib]
            m = (o >= 0) & (sa >= 0) & (sb >= 0)
            if m.any():
                k = o[m] % len(fv)
                cos[m] = (fv[k, sa[m]] * fv[k, sb[m]]).sum(axis=1)
        return cos

    def _style_partner(self, ta, ia, tb, ib, outfit):
        """Cosine of a's style vector with the mean style of b's training partners.

        Carries new arrivals: a cold ``a`` is compared with the company ``b`` keeps.
        Training rows use the out-of-fold tower and leave their own outfit out of
        b's partners. NaN where b has no (other) partners.
        """
        out = np.full(len(ia), np.nan)
        sb = tb.stat_idx[ib]
        known = sb >= 0
        if self.style_partner_sum_ is None or not known.any():
            return out
        va = ta.style[ia].astype(np.float64)
        S = np.zeros((len(ia), va.shape[1]))
        S[known] = self.style_partner_sum_[sb[known]]
        fv, fs = self.style_fold_vecs_, self.style_fold_partner_sum_
        if outfit is not None and fv is not None and (np.asarray(outfit) >= 0).any():
            o = np.asarray(outfit, np.int64)
            sa = ta.stat_idx[ia]
            m = np.flatnonzero((o >= 0) & known & (sa >= 0))
            k = o[m] % len(fv)
            va[m] = fv[k, sa[m]]
            S[m] = fs[k, sb[m]]
            # b's partners inside its own outfit o are not history: take them out
            st = self.stats_
            rep, c = st.outfit_members(o[m])
            inside = st._outfit_member(sb[m], o[m])[rep] * (c != sb[m][rep])
            own = np.zeros((len(m), va.shape[1]))
            np.add.at(own, rep, fv[k[rep], c] * inside[:, None])
            S[m] -= own
        norm = np.linalg.norm(S, axis=1)
        ok = known & (norm > 1e-6)
        out[ok] = (va[ok] * S[ok]).sum(axis=1) / norm[ok]
        return out

    def _cooc_columns(self, ta, ia, tb, ib, swap, outfit, code=None):
        """The "cooccurrence" columns; ``code``: field -> (a, b) codes after the swap,
        where :meth:`transform` already gathered them."""
        st = self.stats_
        code = code or {}
        sa = np.where(swap, tb.stat_idx[ib], ta.stat_idx[ia])
        sb = np.where(swap, ta.stat_idx[ia], tb.stat_idx[ib])
        known_a = sa >= 0
        known_b = sb >= 0
        both_known = known_a & known_b
        ca = np.zeros(len(sa))
        cb = np.zeros(len(sa))
        pc = np.zeros(len(sa))
        o = None if outfit is None else np.asarray(outfit, np.int64)
        if known_a.any():
            ca[known_a] = st.item_count(sa[known_a], None if o is None else o[known_a])
        if known_b.any():
            cb[known_b] = st.item_count(sb[known_b], None if o is None else o[known_b])
        if both_known.any():
            pc[both_known] = st.pair_count(sa[both_known], sb[both_known],
                                           None if o is None else o[both_known])
        th = np.zeros(len(sa))
        if both_known.any():
            th[both_known] = st.two_hop(sa[both_known], sb[both_known],
                                        None if o is None else o[both_known])
        cols = [pc, pc / np.sqrt((ca + 1) * (cb + 1)), np.log1p(ca), np.log1p(cb),
                np.log1p(th), th / np.sqrt((ca + 1) * (cb + 1))]
        if self.group_stats_ is not None:
            ga = np.where(swap, tb.group_idx[ib], ta.group_idx[ia])
            gb = np.where(swap, ta.group_idx[ia], tb.group_idx[ib])
            cols += self._item_level(self.group_stats_, ga, gb, o)
        if self.graph_dim_:
            cols.append(_graph_cos(self.graph_vec_, self.graph_fold_vecs_, sa, sb, o))
            if self.sib_graph_vec_ is not None:
                cols.append(_graph_cos(self.sib_graph_vec_, self.sib_graph_fold_vecs_,
                                       ga, gb, o))
        if o is None and self.cooc_fields_:
            # scoring: every field's lookups at once (the same numbers, see
            # CooccurrenceStats.value_features); training rows leave outfits out below
            va, vb = {}, {}
            for f in self.cooc_fields_:
                va[f], vb[f] = code[f] if f in code else (
                    np.where(swap, tb.codes[f][ib], ta.codes[f][ia]),
                    np.where(swap, ta.codes[f][ia], tb.codes[f][ib]))
            return cols + st.value_features(self.cooc_fields_, va, vb, sa, sb)
        for f in self.cooc_fields_:
            va = np.where(swap, tb.codes[f][ib], ta.codes[f][ia])
            vb = np.where(swap, ta.codes[f][ia], tb.codes[f][ib])
            cols.append(st.pmi(f, va, vb, o))
            aff_a = np.zeros(len(sa))
            aff_b = np.zeros(len(sa))
            if known_a.any():
                aff_a[known_a] = st.affinity(f, sa[known_a], vb[known_a],
                                             None if o is None else o[known_a])
            if known_b.any():
                aff_b[known_b] = st.affinity(f, sb[known_b], va[known_b],
                                             None if o is None else o[known_b])
            cols += [aff_a, aff_b]
        return cols

    @staticmethod
    def _item_level(st, sa, sb, o):
        """Pair count, its normalised form, both log counts, two-hop (and normalised)
        of rows ``sa``/``sb`` of ``st`` (-1: no history), leaving outfit ``o`` out."""
        known_a, known_b = sa >= 0, sb >= 0
        both_known = known_a & known_b
        ca, cb, pc, th = (np.zeros(len(sa)) for _ in range(4))
        if known_a.any():
            ca[known_a] = st.item_count(sa[known_a], None if o is None else o[known_a])
        if known_b.any():
            cb[known_b] = st.item_count(sb[known_b], None if o is None else o[known_b])
        if both_known.any():
            oo = None if o is None else o[both_known]
            pc[both_known] = st.pair_count(sa[both_known], sb[both_known], oo)
            th[both_known] = st.two_hop(sa[both_known], sb[both_known], oo)
        norm = np.sqrt((ca + 1) * (cb + 1))
        return [pc, pc / norm, np.log1p(ca), np.log1p(cb), np.log1p(th), th / norm]

    # -- persistence ---------------------------------------------------------------------
    def to_json(self) -> dict:
        """Everything but the arrays (those go to :meth:`to_arrays`)."""
        return {"groups": list(self.groups_), "requested_groups": list(self.groups),
                "cat_columns": self.cat_columns_, "vocab": self.vocab_,
                "pixel_colours": self.pixel_colours_, "shape_columns": self.shape_columns_,
                "conf_columns": self.conf_columns_,
                "extra_colour_columns": self.extra_colour_columns_,
                "has_embedding": self.has_embedding_, "cooc_fields": self.cooc_fields_,
                "group_source": self.group_source_, "code_gap": self.code_gap_,
                "graph_dim": self.graph_dim_,
                "model_code_gap": self.model_code_gap,
                "style": None if self.style_ is None else self.style_.to_json(),
                "feature_names": self.feature_names_, "feature_groups": self.feature_groups_,
                "categorical": self.categorical_}

    def to_arrays(self) -> dict:
        out = {f"stats__{k}": v for k, v in self.stats_.to_arrays().items()}
        if self.group_source_:
            out["group_vocab"] = np.array(self.group_vocab_, dtype=str)
        if self.graph_dim_:
            out["graph_vec"] = self.graph_vec_
            if self.sib_graph_vec_ is not None:
                out["sib_graph_vec"] = self.sib_graph_vec_
        if self.group_stats_ is not None:
            out.update({f"gstats__{k}": v for k, v in self.group_stats_.to_arrays().items()})
        if self.centroids_ is not None:
            out["centroids"] = self.centroids_
        if self.style_ is not None:
            out.update(self.style_.to_arrays())
            out["style_partner_sum"] = self.style_partner_sum_
        return out

    @classmethod
    def from_saved(cls, meta: dict, arrays) -> "PairFeaturizer":
        """Rebuild from :meth:`to_json` and :meth:`to_arrays` output."""
        from recommender.compat.cooccurrence import CooccurrenceStats

        try:
            self = cls(meta["requested_groups"])
            self.groups_ = tuple(meta["groups"])
            self.cat_columns_ = meta["cat_columns"]
            self.vocab_ = meta["vocab"]
            self.pixel_colours_ = meta["pixel_colours"]
            self.shape_columns_ = meta["shape_columns"]
            self.conf_columns_ = meta["conf_columns"]
            self.extra_colour_columns_ = meta["extra_colour_columns"]
            self.has_embedding_ = meta["has_embedding"]
            self.cooc_fields_ = meta["cooc_fields"]
        except KeyError as exc:
            raise BundleError(f"compatibility manifest lacks key {exc}") from exc
        files = arrays.files if hasattr(arrays, "files") else list(arrays)
        self.stats_ = CooccurrenceStats.from_arrays(
            {k[len("stats__"):]: arrays[k] for k in files if k.startswith("stats__")})
        self.centroids_ = np.asarray(arrays["centroids"]) if "centroids" in files else None
        self.group_source_ = meta.get("group_source")
        self.code_gap_ = bool(meta.get("code_gap", False))
        self.graph_dim_ = int(meta.get("graph_dim", 0))
        self.graph_fold_vecs_ = self.sib_graph_fold_vecs_ = None
        self.graph_vec_ = np.asarray(arrays["graph_vec"]) if "graph_vec" in files else None
        self.sib_graph_vec_ = (np.asarray(arrays["sib_graph_vec"]) if "sib_graph_vec" in files
                               else None)
        if self.graph_dim_ and self.graph_vec_ is None:
            raise BundleError("the compatibility model uses graph vectors but none were saved")
        self.model_code_gap = bool(meta.get("model_code_gap", True))
        self.group_vocab_, self.group_stats_ = [], None
        if self.group_source_:
            if "group_vocab" not in files:
                raise BundleError("the compatibility model reads model codes but their "
                                  "vocabulary was not saved")
            self.group_vocab_ = [str(k) for k in arrays["group_vocab"]]
            if any(k.startswith("gstats__") for k in files):
                self.group_stats_ = CooccurrenceStats.from_arrays(
                    {k[len("gstats__"):]: arrays[k] for k in files if k.startswith("gstats__")})
        self.style_fold_vecs_ = self.style_fold_partner_sum_ = None
        self.style_ = self.style_partner_sum_ = None
        if meta.get("style"):
            from recommender.compat.style import StyleEmbedding
            self.style_ = StyleEmbedding.from_saved(meta["style"], arrays)
            self.style_partner_sum_ = np.asarray(arrays["style_partner_sum"])
        elif "style" in self.groups_:
            raise BundleError("the compatibility model uses style vectors but none were saved")
        self.feature_names_, self.feature_groups_, self.categorical_ = self._names()
        if self.feature_names_ != meta["feature_names"]:
            raise BundleError("the saved feature list does not match the features this "
                              "code builds from the saved configuration")
        return self
