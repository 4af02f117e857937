"""The recommendation engine the API serves: loaded once per process from a bundle.

Every public method returns plain JSON-serialisable dicts and lists (scores
rounded to 4 decimals). Lists are in display order; an item's ``score`` is its
relevance, not its rank, so after the diversity re-ranking scores need not
decrease down a list (the API documents the same). Unknown item ids raise
``NotFoundError(field="item_id")``; a bad ``k``, category, strategy, attribute or
value raises ``InputError`` naming the field and, for closed sets, the allowed
values.

Request path (cross-sell): for each category that completes the anchor(s) (the
rules' pairing matrix), the strategy reads one precomputed graph row per anchor
(memory-mapped CSR, :mod:`recommender.graph`); rows are merged (mean over
anchors), re-ranked for diversity (MMR on embeddings and colour), the rules run
last (:mod:`recommender.rules`), and only the shown items are explained.

Outfit slots (``complete``): an outfit is a *body* -- top + bottom, or a dress --
plus shoes and a bag by default; outerwear, jewellery and accessory are optional
slots filled when asked for (``slots=[...]``). Looks are filled by beam search
over the missing slots with the whole outfit's score (mean pairwise score; the
compatibility model's ``score_outfit`` re-scores the final beams when the bundle
has one), so an item is chosen for how it goes with everything already in the
look, not only with the first item.

Examples
--------
>>> # engine = Engine.load("bundles/demo")
>>> # engine.complements("d000123", k=3)["groups"][0]["items"][0].keys()
>>> # dict_keys(['item_id', 'score', 'reason', 'pinned', 'fallback'])
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from features.exceptions import (BundleError, InputError, NotFoundError,
                                 StageNotAvailable)
from features.mask import MIN_AREA
from recommender.bundle import Bundle, read_bundle_file
from recommender.catalog import CATEGORIES
from recommender.graph import NEUTRAL_COLOURS, ContentScorer, ServingGraph, colour_keys
from recommender.rules import (Group, ItemTable, Rules, RulesError, apply_rules,
                               categories_allowed, default_rules, in_file, load_rules,
                               pairing_for, validate_band, validate_rules_fields)
from recommender.rules import _filters_ok as rules_allow
from recommender.strategies import STRATEGIES, get_strategy

log = logging.getLogger(__name__)

MAX_K = 100
#: most candidates a group is widened to when the rules' filters leave too few
MAX_RULES_WIDENING = 2000
#: MMR's weight of relevance (``Engine.mmr``'s ``lam``) when a request sets no
#: ``diversity``: complements mix styles, up-sell alternatives stay close to the item
COMPLEMENTS_LAM = 0.7
UPSELL_LAM = 0.85
MAX_ITEMS = 20
#: catalogue columns never offered as search attributes
NON_ATTRIBUTE_COLUMNS = {"item_id", "image_path", "price", "in_stock", "image_ok"}
#: a free-text column with more distinct values than this is not an attribute
MAX_ATTRIBUTE_VALUES = 500
BODY_TEMPLATES = (("top", "bottom"), ("dress",))
DEFAULT_EXTRA_SLOTS = ("shoes", "bag")
OPTIONAL_SLOTS = ("outerwear", "jewellery", "accessory")
#: least share of a photo the garment mask must cover for ``analyze_image`` to say a
#: garment was found: the mask's own lower sanity limit (5 of MANGO's 9,222 packshots
#: fall below it, each a garment the mask lost)
GARMENT_MIN_AREA = MIN_AREA
#: visually nearest catalogue items that vote on a photo's (sub)category
PHOTO_NEIGHBOURS = 20
#: cosine scale of their votes: 0.01 below the nearest weighs 1/e as much
PHOTO_VOTE_TEMPERATURE = 0.01
WIDE_WORDS = ("wide", "flare", "palazzo", "culotte", "baggy", "loose", "oversize")
SLIM_WORDS = ("skinny", "slim", "fitted", "pencil", "leggings", "straight")


def _r(x: float) -> float:
    return round(float(x), 4)


class Engine:
    """Recommendations from one bundle. Build with :meth:`load`.

    Attributes
    ----------
    catalog : DataFrame (the canonical catalogue)
    bundle_version, rules_version : str
    categories : list of the catalogue's categories (CATEGORIES order)
    attribute_vocab : dict field -> sorted allowed values (search filters and rules)
    price_available : bool
    stale_stages : list of stages built from files another stage has rewritten
        since (:meth:`Bundle.stale_stages`), served as they are until rebuilt
    changed_outputs : dict stage -> its output files that are not the bytes the build
        recorded, or are gone (:meth:`Bundle.changed_stage_outputs`), read on load
    """

    def __init__(self, bundle: Bundle, catalog: pd.DataFrame, features: pd.DataFrame | None,
                 emb: np.ndarray, graph: ServingGraph, compat=None, rules: Rules | None = None):
        self.bundle = bundle
        self.catalog = catalog
        self.features = features
        self.emb = emb
        self.graph = graph
        self.compat = compat
        self.table = ItemTable(catalog, features)
        self.colours = colour_keys(catalog, features)
        self._neutral = np.isin(self.colours, list(NEUTRAL_COLOURS))
        self._content = ContentScorer(emb, self.colours)
        self.price_available = self.table.has_price
        self.stale_stages = bundle.stale_stages()
        self.changed_outputs = bundle.changed_stage_outputs()
        self.categories = [c for c in CATEGORIES if (self.table.category == c).any()]
        self._cat_rows = {c: np.flatnonzero(self.table.category == c) for c in self.categories}
        self.attribute_vocab = self._vocab()
        self._popular: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._popularity: dict[str, np.ndarray] = {}
        self._price_sorted: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._vision_lock = threading.Lock()
        self._vision_models: dict | None = None
        self._graph_pairs: dict[str, frozenset[str]] | None = None
        self.rules = default_rules()
        if rules is not None:
            self.set_rules(rules)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, bundle_path: str | Path, *, rules: str | Path | Rules | None = None
             ) -> "Engine":
        """Load a built bundle once: catalogue, features, embeddings (memory-mapped),
        graph arrays (memory-mapped), compatibility model when present, rules
        (``rules`` argument, else ``<bundle>/rules/rules.toml``, else the defaults)."""
        b = Bundle.open(bundle_path)
        b.check_complete()  # a bundle being rebuilt in place may mix two builds' files
        cp = b.path("catalog.parquet")
        if not cp.is_file():
            raise BundleError(f"{cp} missing: the bundle has no catalogue")
        catalog = read_bundle_file(cp, pd.read_parquet)
        fp = b.path("features", "features.parquet")
        features = read_bundle_file(fp, pd.read_parquet) if fp.is_file() else None
        if features is not None and (len(features) != len(catalog) or not (
                features["item_id"].astype(str).to_numpy()
                == catalog["item_id"].astype(str).to_numpy()).all()):
            raise BundleError(f"{fp} is not row-aligned with catalog.parquet")
        ep = b.path("features", "embeddings.npy")
        if not ep.is_file():
            raise BundleError(f"{ep} missing: run the features stage")
        emb = read_bundle_file(ep, lambda p: np.load(p, mmap_mode="r"))
        if emb.shape[0] != len(catalog):
            raise BundleError(f"{ep} has {emb.shape[0]} rows, the catalogue {len(catalog)}")
        graph = ServingGraph(b.path("graph"), len(catalog))
        compat = None
        if b.path("models", "compat.txt").is_file():
            try:
                from recommender.compat import CompatibilityModel
            except ModuleNotFoundError as exc:  # the model file without the code
                raise BundleError(f"bundle has models/compat.txt but recommender.compat "
                                  f"cannot be imported: {exc}") from exc
            compat = CompatibilityModel.load(b)
        if rules is None and b.path("rules", "rules.toml").is_file():
            rules = b.path("rules", "rules.toml")
        # a build that started (or a stage that finished) while these files were read
        # may have replaced some of them: refuse rather than serve a mix
        now = Bundle.open(bundle_path)
        now.check_complete()
        if now.version != b.version:
            raise BundleError(f"bundle {b.root} changed while it was loading (version "
                              f"{b.version} -> {now.version}): load it again")
        engine = cls(b, catalog, features, emb, graph, compat, rules)
        if engine.stale_stages:
            # served all the same: a graph scored by the previous model still answers,
            # where refusing the bundle would leave nothing to serve
            from recommender.pipeline import rebuild_commands

            log.warning("bundle %s: stage(s) %s built from inputs that have changed "
                        "since; serving them as they are. Rebuild: %s", b.root,
                        ", ".join(engine.stale_stages),
                        rebuild_commands(engine.stale_stages, b.root))
        if engine.changed_outputs:
            # not a stale stage (no input changed: the build's record still holds),
            # but not the build either: a model copied in by hand, a copy cut short
            from recommender.pipeline import rebuild_commands

            changed = engine.changed_outputs
            log.warning("bundle %s: output(s) %s differ from what the build recorded "
                        "(replaced or removed since); serving them as they are. Copy "
                        "the bundle again, or rebuild: %s", b.root,
                        "; ".join(f"of stage {n} ({', '.join(files)})"
                                  for n, files in changed.items()),
                        rebuild_commands(changed, b.root))
        return engine

    def graph_pairs_missing(self, rules: Rules | None = None) -> list[str]:
        """Category pairs (``"shoes->jewellery"``) for which ``rules`` (default: the
        engine's) ask complements that the graph holds no neighbours for: it was built
        with another pairing matrix (a served rules file that pairs differently, the
        bundle's own edited since). Those groups are still served, filled by the
        strategy's top-up alone, without the graph's candidates (outfit history,
        two-hop; the top-up takes popular items itself); rebuilding the graph with a
        pairing that includes them restores those. Pairs the graph holds and the
        rules no longer ask for cost nothing: the engine never reads them.
        """
        rs = self._rules(rules)
        if self._graph_pairs is None:
            # once: every state a reload builds asks again
            self._graph_pairs = self.graph.paired_categories(self.table.category)
        missing = []
        for c in self.categories:
            wanted = pairing_for(rs, [c]) if rs.pairing else [
                o for o in self.categories if o != c]
            held = self._graph_pairs.get(c, frozenset())
            missing += [f"{c}->{b}" for b in categories_allowed(rs, wanted)
                        if b in self._cat_rows and b not in held]
        return missing

    @property
    def bundle_version(self) -> str:
        return self.bundle.version

    @property
    def rules_version(self) -> str:
        return self.rules.version

    def set_rules(self, rules: Rules | str | Path) -> Rules:
        """Validate and swap in new rules (a path or :class:`Rules`). On any error the
        current rules stay and the error (naming the key) is raised."""
        new = rules if isinstance(rules, Rules) else load_rules(rules)
        try:
            validate_rules_fields(new, self.attribute_vocab)
        except RulesError as exc:
            raise (exc if isinstance(rules, Rules) else in_file(exc, rules)) from None
        self.rules = new
        return new

    def _vocab(self) -> dict[str, list[str]]:
        vocab: dict[str, list[str]] = {}
        frames = [self.catalog] + ([self.features] if self.features is not None else [])
        for df in frames:
            for col in df.columns:
                if col in NON_ATTRIBUTE_COLUMNS or col in vocab:
                    continue
                if df is self.features and not (col.startswith("attr_") or col == "colour_group"):
                    continue
                if col.endswith("_conf"):
                    continue
                s = df[col]
                if not (pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s)
                        or isinstance(s.dtype, pd.CategoricalDtype)):
                    continue
                vals = s.dropna().astype(str)
                vals = vals[vals != ""].unique()
                if 0 < len(vals) <= MAX_ATTRIBUTE_VALUES:
                    vocab[col] = sorted(vals.tolist())
        return vocab

    # ------------------------------------------------------------------ validation
    def _idx(self, item_id: Any, field: str = "item_id") -> int:
        if not isinstance(item_id, str) or not item_id:
            raise InputError(f"{field} must be a non-empty string, got {item_id!r}",
                             field=field, value=item_id)
        i = int(self.table.index_of([item_id])[0])
        if i < 0:
            raise NotFoundError(f"unknown item id {item_id!r}", field=field, value=item_id)
        return i

    def _ids(self, items: Any, field: str = "items") -> list[int]:
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, (list, tuple)) or not items:
            raise InputError(f"{field} must be a non-empty list of item ids", field=field,
                             value=items)
        if len(items) > MAX_ITEMS:
            raise InputError(f"{field} has {len(items)} items; at most {MAX_ITEMS}",
                             field=field, value=len(items))
        out = []
        for it in items:
            i = self._idx(it, "item_id")
            if i not in out:
                out.append(i)
        return out

    @staticmethod
    def _k(k: Any, field: str = "k", maximum: int = MAX_K) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= maximum:
            raise InputError(f"{field} must be an integer in 1..{maximum}, got {k!r}",
                             field=field, value=k)
        return int(k)

    def _cats(self, categories: Any, field: str = "categories") -> list[str] | None:
        if categories is None:
            return None
        if isinstance(categories, str):
            categories = [c for c in categories.split(",") if c]
        out = []
        for c in categories:
            if c not in self.categories:
                # a category of the schema that this catalogue has no item of was
                # called "unknown", which sent a page checking its spelling
                why = ("no item of the catalogue is in it" if c in CATEGORIES
                       else "unknown category")
                raise InputError(f"category {c!r}: {why}", field=field, value=c,
                                 allowed=self.categories)
            out.append(c)
        return out

    def _strategy(self, name: str):
        return get_strategy(name)

    @staticmethod
    def _lam(diversity: Any, default: float) -> float:
        """The MMR weight of relevance for ``diversity`` (``lam = 1 - diversity``);
        ``None`` keeps the list's own ``default``, exactly (not ``1 - (1 - default)``,
        which may differ in the last bit and reorder near-ties)."""
        if diversity is None:
            return default
        if isinstance(diversity, bool) or not isinstance(diversity, (int, float,
                                                                    np.floating)) \
                or not 0.0 <= diversity <= 1.0:  # NaN fails the comparison too
            raise InputError(f"diversity must be a number in [0, 1], got {diversity!r}",
                             field="diversity", value=diversity)
        return 1.0 - float(diversity)

    def _rules(self, rules: Rules | None) -> Rules:
        if rules is None:
            return self.rules
        if not isinstance(rules, Rules):
            raise InputError("rules must be a recommender.rules.Rules", field="rules")
        return rules

    # ------------------------------------------------------------------ state for strategies
    def popularity(self, category: str) -> np.ndarray:
        """Count of co-occurrence edges pointing at each item of ``category`` (how
        often it is worn in looks), aligned with the category's catalogue rows
        (ascending)."""
        got = self._popularity.get(category)
        if got is None:
            rows = self._cat_rows.get(category, np.zeros(0, np.int64))
            a = self.graph._arrays.get(("cooc", category))
            got = (np.zeros(len(rows)) if a is None else np.bincount(
                np.asarray(a[1]), minlength=len(self.catalog))[rows].astype(float))
            self._popularity[category] = got
        return got

    def popular(self, category: str) -> tuple[np.ndarray, np.ndarray]:
        """The 200 most-worn items of ``category`` (:meth:`popularity`), most first."""
        got = self._popular.get(category)
        if got is None:
            cnt = self.popularity(category)
            rows = self._cat_rows.get(category, np.zeros(0, np.int64))
            top = np.argsort(-cnt, kind="stable")[:200]
            top = top[cnt[top] > 0]
            got = (rows[top].astype(np.int64), cnt[top])
            self._popular[category] = got
        return got

    def cooc_count(self, a: int, b: np.ndarray) -> np.ndarray:
        """Shared training looks of item ``a`` with each of ``b`` (0 if not an edge)."""
        b = np.asarray(b, dtype=np.int64)
        out = np.zeros(len(b))
        for c in np.unique(self.table.category[b]) if len(b) else []:
            idx, w = self.graph.row("cooc", c, a)
            if len(idx):
                lut = dict(zip(idx.tolist(), w.tolist()))
                m = self.table.category[b] == c
                out[m] = [lut.get(int(x), 0.0) for x in b[m]]
        return out

    def neighbours(self, item_idx: int, category: str, n: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items of ``category`` nearest to row ``item_idx`` by embedding
        cosine (exact, over the category's rows), best first: ``(rows, cosines)``.
        The item itself is among them when it is of ``category``; an unknown
        category has none."""
        return self._nearest_scored(np.asarray(self.emb[int(item_idx)], dtype=np.float32),
                                    category, n)

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Compatibility of pairs of catalogue rows (the model when present, else the
        documented content scorer with training co-occurrence)."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if len(a) == 0:
            return np.zeros(0)
        if self.compat is not None:
            return np.asarray(self.compat.score_pairs(a, b), dtype=float)
        cooc = np.zeros(len(a))
        for x in np.unique(a):
            m = a == x
            cooc[m] = self.cooc_count(int(x), b[m])
        return self._content(a, b, cooc).astype(float)

    # ------------------------------------------------------------------ explanations
    def _describe(self, i: int) -> str:
        # numpy columns, not DataFrame.iloc: this runs for every shown item
        colour = self.table.column("colour")[i].lower() if self.table.has_column(
            "colour") else ""
        sub = (self.table.column("subcategory")[i] if self.table.has_column("subcategory")
               else "") or self.table.category[i]
        return " ".join(x for x in (colour, sub.lower()) if x) or str(self.table.ids[i])

    def _text(self, i: int) -> str:
        fields = ["subcategory"] + [f for f in self.attribute_vocab if f.startswith("attr_")]
        return " ".join(self.table.column(f)[i] for f in fields
                        if self.table.has_column(f)).lower()

    def _cooc_with(self, a: int, j: int) -> float:
        idx, w = self.graph.row("cooc", self.table.category[j], a)
        hit = np.flatnonzero(idx == j)
        return float(w[hit[0]]) if len(hit) else 0.0

    def explain(self, anchors: Sequence[int], j: int, model_reasons: bool = False) -> str:
        """A short reason why item ``j`` goes with the anchors, from graph and features.

        ``model_reasons``: ask the compatibility model (``explain_pair``) before the
        colour and style rules. It costs about 9 ms a pair on MANGO (per-row
        featurisation), so only the outfit-score breakdown asks for it; cross-sell
        explains every shown item and stays O(k) numpy reads.
        """
        best_a, best_n = None, 0.0
        for a in anchors:
            n = self._cooc_with(a, j)
            if n > best_n:
                best_a, best_n = a, n
        if best_a is not None:
            looks = "look" if best_n == 1 else "looks"
            return f"worn with the {self._describe(best_a)} in {int(best_n)} {looks}"
        a0 = anchors[0]
        ta, tj = self._text(a0), self._text(j)
        cj, ca = self.table.category[j], self.table.category[a0]
        if ca == "bottom" and cj in ("top", "outerwear") and any(w in ta for w in WIDE_WORDS) \
                and not any(w in tj for w in WIDE_WORDS):
            return "balances a wide leg"
        if ca == "bottom" and cj in ("top", "outerwear") and any(w in ta for w in SLIM_WORDS) \
                and any(w in tj for w in WIDE_WORDS):
            return "a relaxed shape over a slim leg"
        if model_reasons and self.compat is not None:
            try:
                rs = self.compat.explain_pair(int(a0), int(j))
                if rs:
                    return str(rs[0])
            except Exception:  # an explanation must never fail a recommendation
                pass
        for a in anchors:
            if self.colours[a] and self.colours[a] == self.colours[j]:
                return f"same colour family as the {self._describe(a)}"
        if self._neutral[j] and self.colours[j]:
            return f"neutral {self.colours[j].lower()} goes with the {self._describe(a0)}"
        cos = float(np.dot(self.emb[a0], self.emb[j]))
        if cos > 0.5:
            return f"similar style to the {self._describe(a0)}"
        return f"pairs well with the {self._describe(a0)}"

    def _finish(self, groups: list[dict], anchors: Sequence[int]) -> list[dict]:
        out = []
        for g in groups:
            items = []
            for it in g["items"]:
                reason = it["reason"] or self.explain(anchors, it["idx"])
                d = {"item_id": str(self.table.ids[it["idx"]]), "score": _r(it["score"]),
                     "reason": reason, "pinned": bool(it["pinned"]),
                     "fallback": bool(it["fallback"])}
                items.append(d)
            out.append({"category": g["category"], "items": items})
        return out

    # ------------------------------------------------------------------ diversity
    def mmr(self, idx: np.ndarray, scores: np.ndarray, *, lam: float = 0.7,
            depth: int | None = None) -> np.ndarray:
        """Maximal marginal relevance order of ``idx``: each next item maximises
        ``lam * score - (1 - lam) * max_sim(selected)``, with similarity
        ``0.7 * max(cos, 0) + 0.3 * same_colour`` -- no five near-identical black bags.
        Returns positions into ``idx``."""
        n = len(idx)
        if n <= 1:
            return np.arange(n)
        depth = n if depth is None else min(depth, n)
        e = np.asarray(self.emb[idx], dtype=np.float32)
        sim = 0.7 * np.maximum(e @ e.T, 0) + 0.3 * (self.colours[idx][:, None]
                                                    == self.colours[idx][None, :])
        s = np.asarray(scores, dtype=float)
        span = s.max() - s.min()
        rel = (s - s.min()) / span if span > 0 else np.ones(n)
        chosen = [int(np.argmax(rel))]
        maxsim = sim[chosen[0]].copy()
        left = np.ones(n, dtype=bool)
        left[chosen[0]] = False
        while len(chosen) < depth:
            val = np.where(left, lam * rel - (1 - lam) * maxsim, -np.inf)
            j = int(np.argmax(val))
            chosen.append(j)
            left[j] = False
            maxsim = np.maximum(maxsim, sim[j])
        rest = np.flatnonzero(left)
        return np.concatenate([np.array(chosen), rest[np.argsort(-s[rest], kind="stable")]])

    # ------------------------------------------------------------------ cross-sell
    def _merged(self, strategy, anchors: Sequence[int], category: str, depth: int,
                fill: int = 0, state=None, memo: dict | None = None
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Candidates of ``category`` for all anchors, mean score over anchors
        (``fill``: each anchor's graph row topped up to that many when shorter;
        ``state``: what the strategy reads, the engine itself by default; ``memo``:
        the strategy's answers kept across the calls of one request, by anchor)."""
        acc: dict[int, float] = {}
        reason: dict[int, str] = {}
        deferred = False
        state = self if state is None else state
        for a in anchors:
            key = (strategy.name, a, category, depth, fill)
            got = None if memo is None else memo.get(key)
            if got is None:
                # a strategy is deterministic (its contract): the same question in the
                # same request has the same answer
                stops = getattr(state, "deferrals", 0)
                try:
                    got = strategy.candidates(state, a, category, depth, fill=fill)
                except _Deferred:
                    # the other anchors' pairs go into the same scorer call
                    deferred = True
                    continue
                if getattr(state, "deferrals", 0) != stops:
                    # it caught the deferral (a bare ``except:``) and answered anyway:
                    # not its answer, asked again once the pairs are scored
                    deferred = True
                    continue
                if memo is not None:
                    memo[key] = got
            if deferred:
                continue
            idx, sc, rs = got
            for i, s, r in zip(idx.tolist(), sc.tolist(), rs):
                acc[i] = acc.get(i, 0.0) + s
                if r and i not in reason:
                    reason[i] = r
        if deferred:
            raise _Deferred
        for a in anchors:
            acc.pop(a, None)
        if not acc:
            return np.zeros(0, np.int64), np.zeros(0), []
        idx = np.fromiter(acc.keys(), dtype=np.int64, count=len(acc))
        sc = np.fromiter(acc.values(), dtype=float, count=len(acc)) / len(anchors)
        order = np.lexsort((idx, -sc))
        idx, sc = idx[order], sc[order]
        return idx, sc, [reason.get(int(i), "") for i in idx]

    def complements(self, item_id: str | Sequence[str], k: int = 5, categories=None,
                    strategy: str = "default", rules: Rules | None = None,
                    context: Sequence[str] | None = None, diversity: float | None = None
                    ) -> dict:
        """Cross-sell: complementary items grouped by category, top ``k`` each.

        ``item_id`` is one id or a cart (list); ``context`` adds more cart items.
        Groups: the categories that complete the anchors in the rules' pairing
        matrix (or ``categories``), each with ``{"item_id", "score", "reason",
        "pinned", "fallback"}`` items. A group shows ``k`` items whenever the
        category has them: past the graph's row (``k_compat`` = 20 edges) the
        strategy tops it up with further items it scores (the compatibility scorer,
        or embedding cosine for ``visual``; ``cooccurrence`` adds popular items, then
        the compatibility scorer's choice below them). ``diversity`` in [0, 1]
        weighs the MMR re-ranking (:meth:`mmr`, ``lam = 1 - diversity``; default 0.3,
        0: the score order).
        """
        k = self._k(k)
        lam = self._lam(diversity, COMPLEMENTS_LAM)
        anchors = self._ids([item_id] if isinstance(item_id, str) else item_id, "item_id")
        if context:
            anchors += [i for i in self._ids(context, "context") if i not in anchors]
        strat = self._strategy(strategy)
        cats = self._cats(categories)
        rs = self._rules(rules)
        anchor_cats = [self.table.category[a] for a in anchors]
        wanted = pairing_for(rs, anchor_cats) if rs.pairing else [
            c for c in self.categories if c not in anchor_cats]
        if cats is not None:
            wanted = [c for c in cats if c not in anchor_cats]
        wanted = [c for c in categories_allowed(rs, wanted) if c in self._cat_rows]
        depth = max(4 * k, 40)
        # a graph row holds k_compat (20) items; a page asking for more gets the row
        # topped up by the strategy's scorer, to twice k so that diversity and the
        # rules still have a choice (with full rows, k <= 10 reads the graph alone)
        fill = 2 * k
        groups = []
        for c in wanted:
            idx, sc, rsn = self._merged_allowed(strat, anchors, c, depth, fill, rs, k)
            order = self.mmr(idx, sc, lam=lam, depth=min(len(idx), 3 * k))
            groups.append(Group(c, idx[order], sc[order], [rsn[o] for o in order]))
        out = apply_rules(groups, rs, self.table, k=k, mode="complements",
                          anchor_ids=[self.table.ids[a] for a in anchors],
                          anchor_categories=anchor_cats if cats is None else [],
                          score_missing=lambda ii, c: self._pin_score(anchors, ii))
        return {"item_id": self.table.ids[anchors[0]],
                "items": [str(self.table.ids[a]) for a in anchors],
                "strategy": strat.name, "rules_version": rs.version,
                "bundle_version": self.bundle_version,
                "groups": self._finish(out, anchors)}

    def _merged_allowed(self, strategy, anchors: Sequence[int], category: str, depth: int,
                        fill: int, rules: Rules, want: int, shared: "_Widenings | None" = None
                        ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """:meth:`_merged` less what the rules' filters and stock exclude (steps 1-2).

        While fewer than ``want`` remain and the strategy still gives more, it is
        asked for more (up to :data:`MAX_RULES_WIDENING`): an exclusion that empties
        the graph row (every grey bottom) must not empty a group whose category has
        allowed items further down. The strategy reads the engine through
        :class:`_RulesAllowed` (when the rules exclude any of the category): its
        top-up past the graph row takes, scores and counts only allowed items, so a
        request pays the scorer for items it may show, about as a request without
        rules does. The best first, at most ``depth`` (or what the first call gave,
        for a cart); filtering before the diversity re-ranking also lets it
        diversify among items that may be shown. ``shared``: what the calls of one
        request keep (:class:`_Widenings`), a fresh one by default.
        """
        rows = self._cat_rows.get(category, np.zeros(0, np.int64))
        cap = min(len(rows), MAX_RULES_WIDENING)
        prev, n, f, first = -1, depth, fill, None
        shared = _Widenings(self) if shared is None else shared
        if category not in shared.allowed:
            # a whole category per call: complete() asks for a slot once per beam
            ok_rows = shared.allowed[category] = rules_allow(rules, self.table, rows)
            # each round asks for more than the last and gets the last one's
            # candidates again: the scorer sees only the new ones
            state = shared.scored
            if not ok_rows.all():
                # the strategy's top-up takes and scores only items that may be shown:
                # scoring the excluded ones was most of a widened request's time
                state = _RulesAllowed(state, rules, category, rows[ok_rows])
            shared.states[category] = state
        ok_rows, state = shared.allowed[category], shared.states[category]
        while True:
            key = (strategy.name, tuple(anchors), category, n, f)
            if key not in shared.merged:
                # a round that stopped for its pairs to be scored runs again
                # (``_widen_all``), its earlier rounds with it
                shared.merged[key] = self._merged(strategy, anchors, category, n, f, state,
                                                  shared.answers)
            idx, sc, rsn = shared.merged[key]
            first = len(idx) if first is None else first
            ok = (state.allowed(idx) if isinstance(state, _RulesAllowed)
                  else rules_allow(rules, self.table, idx))
            if ok.all() or ok.sum() >= want or f >= cap or len(idx) <= prev:
                break
            # what the strategy returns unscored (the graph row, the history): as many
            # again as the share allowed so far says it takes (at least twice as
            # many), one more call in the usual case, not a doubling series
            share = max(ok.mean() if len(ok) else 0.0, 1 / 64)
            grow = min(max(2 * f, int(np.ceil(1.5 * want / share))), cap)
            prev, n = len(idx), max(n, grow)
            # its top-up brings allowed items only: as many as the ``grow`` nearest
            # items of the category hold (by the share the rules allow), at least
            # twice ``want`` -- the choice a top-up to ``grow`` items gave, at the
            # cost of scoring only those
            f = min(max(2 * f, 2 * want, int(np.ceil(grow * ok_rows.mean()))), cap)
            n = max(n, f)
        # no longer than an answer without widening: the diversity re-ranking's cost
        keep = np.flatnonzero(ok)[:max(first, depth)]
        return idx[keep], sc[keep], [rsn[j] for j in keep]

    def _widen_all(self, strategy, asks: list[tuple[list[int], str]], depth: int,
                   rules: Rules, want: int, shared: "_Widenings"
                   ) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
        """:meth:`_merged_allowed` for each ``(anchors, category)`` of ``asks`` (the
        beams of one step of ``complete``), with the scorer called once per round of
        the widenings rather than once per anchor and round.

        The scorer's cost is mostly fixed per call (~4 ms on MANGO, for 1 pair or
        50): a widening that needs pairs scored stops (:class:`_Deferred`), the others
        go on, the pairs they all asked for are scored in one call, and the stopped
        ones run again -- the same answers, the strategy's earlier ones remembered.
        """
        out: list = [None] * len(asks)
        todo = list(range(len(asks)))
        scored = shared.scored
        defer = hasattr(scored, "score_deferred")  # not the engine itself (tests)
        try:
            if defer:
                scored.defer = True
            while todo:
                again = []
                for t in todo:
                    anchors, category = asks[t]
                    try:
                        out[t] = self._merged_allowed(strategy, anchors, category, depth,
                                                      0, rules, want, shared)
                    except _Deferred:
                        again.append(t)
                if again:
                    scored.score_deferred()
                todo = again
        finally:
            if defer:
                scored.defer = False
        return out

    def _pin_score(self, anchors, ii):
        a = np.repeat(np.asarray(anchors), len(ii))
        b = np.tile(np.asarray(ii), len(anchors))
        return self.pair_scores(a, b).reshape(len(anchors), len(ii)).mean(axis=0)

    # ------------------------------------------------------------------ cold start
    def complements_for_features(self, features: dict, embedding: np.ndarray, k: int = 5,
                                 categories=None, rules: Rules | None = None,
                                 diversity: float | None = None) -> dict:
        """Complements for an item that is not in the bundle (no rebuild).

        ``features``: a dict of catalogue/feature fields; needs ``category`` and
        uses ``colour``/``colour_group``/``subcategory`` when present. ``embedding``:
        its visual embedding (D,). Candidates: the ``max(30, 2k)`` nearest items of
        each target category by embedding, plus the partners of its nearest
        same-category items (how it inherits outfit history); scored by the
        compatibility model (``score_pairs_rows``) when present, else the content
        scorer. ``diversity``: as for :meth:`complements`.
        """
        k = self._k(k)
        lam = self._lam(diversity, COMPLEMENTS_LAM)
        if not isinstance(features, dict):
            raise InputError("features must be a dict of fields", field="features")
        cat = features.get("category")
        if cat not in CATEGORIES:
            raise InputError(f"unknown category {cat!r}", field="category", value=cat,
                             allowed=CATEGORIES)
        e = np.asarray(embedding, dtype=np.float32).ravel()
        if e.shape[0] != self.emb.shape[1] or not np.isfinite(e).all():
            raise InputError(f"embedding must have {self.emb.shape[1]} finite values, got "
                             f"{e.shape[0]}", field="embedding")
        nrm = float(np.linalg.norm(e))
        e = e / nrm if nrm > 0 else e
        cats = self._cats(categories)
        rs = self._rules(rules)
        wanted = cats if cats is not None else (pairing_for(rs, [cat]) if rs.pairing else
                                                [c for c in self.categories if c != cat])
        wanted = [c for c in categories_allowed(rs, wanted) if c in self._cat_rows
                  and c != cat]
        colour = str(features.get("colour_group") or features.get("colour") or "").upper()
        # nearest same-category items: their outfit partners become candidates
        same = self._nearest(e, cat, 5)
        groups = []
        for c in wanted:
            # twice k (at least 30): a group of k with room for diversity and rules,
            # among the items the rules' filters and stock allow (see _merged_allowed)
            rows = self._cat_rows[c]
            cand = [self._nearest(e, c, max(30, 2 * k), rows[rules_allow(rs, self.table, rows)])]
            for s in same:
                cand.append(self.graph.row("cooc", c, int(s))[0][:10])
            idx = np.unique(np.concatenate(cand)).astype(np.int64)
            idx = idx[rules_allow(rs, self.table, idx)]
            if len(idx) == 0:
                continue
            sc = self._cold_scores(features, e, colour, idx)
            order = np.lexsort((idx, -sc))
            idx, sc = idx[order], sc[order]
            mo = self.mmr(idx, sc, lam=lam, depth=min(len(idx), 3 * k))
            groups.append(Group(c, idx[mo], sc[mo], [""] * len(idx)))
        out = apply_rules(groups, rs, self.table, k=k, mode="complements",
                          anchor_categories=[cat])
        for g in out:
            for it in g["items"]:
                if not it["reason"]:
                    j = it["idx"]
                    if colour and colour == self.colours[j]:
                        it["reason"] = "same colour family as this item"
                    elif self._neutral[j]:
                        it["reason"] = f"neutral {self.colours[j].lower()} goes with it"
                    else:
                        it["reason"] = "pairs well with this item"
        return {"category": cat, "strategy": "default", "rules_version": rs.version,
                "bundle_version": self.bundle_version, "groups": self._finish(out, [])}

    def _nearest(self, e: np.ndarray, category: str, n: int,
                 rows: np.ndarray | None = None) -> np.ndarray:
        return self._nearest_scored(e, category, n, rows)[0]

    def _nearest_scored(self, e: np.ndarray, category: str, n: int,
                        rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` rows of ``category`` (or of ``rows``, a subset of it) nearest ``e``."""
        rows = self._cat_rows.get(category) if rows is None else rows
        if rows is None or len(rows) == 0 or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        sims = np.empty(len(rows), dtype=np.float32)
        for s in range(0, len(rows), 65536):
            sims[s:s + 65536] = np.asarray(self.emb[rows[s:s + 65536]]) @ e
        n = min(n, len(rows))
        top = np.argpartition(-sims, n - 1)[:n]
        top = top[np.argsort(-sims[top], kind="stable")]
        return rows[top], sims[top]

    def _cold_scores(self, features: dict, e: np.ndarray, colour: str, idx: np.ndarray
                     ) -> np.ndarray:
        if self.compat is not None and hasattr(self.compat, "score_pairs_rows"):
            # one row, broadcast over ``idx`` by score_pairs_rows
            return np.asarray(self.compat.score_pairs_rows(
                pd.DataFrame([features]), e[None, :], idx), dtype=float)
        cos = np.asarray(self.emb[idx]) @ e
        neutral = colour in NEUTRAL_COLOURS
        col = np.where((self.colours[idx] == colour) | neutral | self._neutral[idx], 1.0, 0.5)
        return 0.4 * (cos + 1) / 2 + 0.2 * col

    # ------------------------------------------------------------------ up-sell
    def upsell(self, item_id: str, k: int = 5, context: Sequence[str] | None = None,
               band: Sequence[float] | None = None, strategy: str = "default",
               rules: Rules | None = None, diversity: float | None = None) -> dict:
        """Pricier alternatives in the same slot, similar and compatible with ``context``.

        Score = ``0.6 * similarity + 0.2 * attribute agreement + 0.2 * compatibility
        with the context`` (without context: ``0.75 * similarity + 0.25 * agreement``).
        With prices: only items priced in ``(lo * p, hi * p]`` (``band``, default the
        rules' ``[upsell] band``). Without prices (e.g. MANGO): ``price_available`` is
        false, no price is invented, and the ranking is by similarity and compatibility
        only -- the ``note`` says so. ``diversity``: as for :meth:`complements`
        (default 0.15: alternatives to one item are meant to be alike).
        """
        k = self._k(k)
        lam = self._lam(diversity, UPSELL_LAM)
        i = self._idx(item_id)
        ctx = self._ids(context, "context") if context else []
        self._strategy(strategy)  # validated; similarity drives up-sell whatever it is
        rs = self._rules(rules)
        band_t = validate_band(list(band), "band") if band is not None else rs.band
        cat = self.table.category[i]
        rows = self._cat_rows[cat]
        price = self.table.price
        p = float(price[i]) if self.price_available else float("nan")
        have_price = self.price_available and np.isfinite(p)
        # what the rules' filters and stock exclude goes first: the ranking below keeps
        # only the best max(50, 4k), which an exclusion could otherwise empty
        if have_price:
            cand = self._band_rows(cat, p, band_t)
            cand = cand[rules_allow(rs, self.table, cand)]
        else:
            near = self._nearest(np.asarray(self.emb[i]), cat, 200,
                                 rows[rules_allow(rs, self.table, rows)])
            vis = self.graph.row("visual", cat, i)[0]
            cand = np.unique(np.concatenate([vis[rules_allow(rs, self.table, vis)], near]))
        cand = cand[(cand != i) & ~np.isin(cand, ctx)]
        if len(cand) > 20_000:  # very wide bands on huge catalogues: an even sample
            cand = cand[np.linspace(0, len(cand) - 1, 20_000).astype(np.int64)]
        sim = (np.asarray(self.emb[cand], dtype=np.float32) @ np.asarray(self.emb[i]) + 1) / 2
        agree = self._agreement(i, cand)
        if ctx:
            pre = np.argsort(-(0.75 * sim + 0.25 * agree), kind="stable")[:200]
            cand, sim, agree = cand[pre], sim[pre], agree[pre]
            comp = self._pin_score(ctx, cand)
            score = 0.6 * sim + 0.2 * agree + 0.2 * comp
        else:
            score = 0.75 * sim + 0.25 * agree
        order = np.lexsort((cand, -score))[:max(50, 4 * k)]
        cand, score = cand[order], score[order]
        mo = self.mmr(cand, score, lam=lam, depth=min(len(cand), 3 * k))
        reasons = []
        for j in cand[mo]:
            bits = []
            if have_price:
                bits.append(f"{price[j] / p:.2f}x the price")
            shared = self._shared_attrs(i, int(j))
            bits.append(f"same {', '.join(shared[:2])}" if shared else "similar look")
            reasons.append("; ".join(bits))
        g = Group(cat, cand[mo], score[mo], reasons)
        out = apply_rules([g], rs, self.table, k=k, mode="upsell",
                          anchor_ids=[self.table.ids[a] for a in [i] + ctx],
                          anchor_price=p if have_price else None, band=band_t)
        items = self._finish(out, [i])[0]["items"] if out else []
        if have_price:
            for it in items:
                it["price"] = _r(price[self._idx(it["item_id"])])
            note = (f"pricier alternatives within {band_t[0]:g}x-{band_t[1]:g}x of "
                    f"{p:.2f}, ranked by similarity"
                    + (" and compatibility with the context" if ctx else ""))
        elif self.price_available:
            note = "this item has no price: ranked by similarity and compatibility only"
        else:
            note = ("the catalogue has no prices: no price band applied and no prices "
                    "shown; ranked by similarity" + (" and compatibility with the context"
                                                     if ctx else "") + " only")
        return {"item_id": item_id, "price_available": bool(have_price),
                "price": _r(p) if have_price else None, "band": list(band_t),
                "items": items, "note": note, "strategy": strategy,
                "rules_version": rs.version, "bundle_version": self.bundle_version}

    def _band_rows(self, cat: str, p: float, band: tuple[float, float]) -> np.ndarray:
        srt = self._price_sorted.get(cat)
        if srt is None:
            rows = self._cat_rows[cat]
            pr = self.table.price[rows]
            rows = rows[np.isfinite(pr)]
            srt = rows[np.argsort(self.table.price[rows], kind="stable")]
            self._price_sorted[cat] = srt
        pr = self.table.price[srt]
        a = np.searchsorted(pr, band[0] * p, side="right")
        b = np.searchsorted(pr, band[1] * p, side="right")
        return srt[a:b]

    def _attr_fields(self) -> list[str]:
        return [f for f in self.attribute_vocab if f not in ("category", "item_id")]

    def _agreement(self, i: int, cand: np.ndarray) -> np.ndarray:
        fields = self._attr_fields()
        if not fields or len(cand) == 0:
            return np.zeros(len(cand))
        agree = np.zeros(len(cand))
        for f in fields:
            col = self.table.column(f)
            agree += col[cand] == col[i]
        return agree / len(fields)

    def _shared_attrs(self, i: int, j: int) -> list[str]:
        out = []
        for f in self._attr_fields():
            col = self.table.column(f)
            if col[i] and col[i] == col[j] and f not in ("gender",):
                out.append(f"{f.removeprefix('attr_').replace('_', ' ')} ({col[i].lower()})")
        return out

    # ------------------------------------------------------------------ outfits
    def score_outfit(self, items: Sequence[str]) -> dict:
        """Outfit score and the per-pair breakdown with reasons."""
        idx = self._ids(items)
        if len(idx) < 2:
            raise InputError("an outfit needs at least 2 distinct items", field="items",
                             value=list(items) if not isinstance(items, str) else items)
        a, b = np.triu_indices(len(idx), 1)
        ia, ib = np.asarray(idx)[a], np.asarray(idx)[b]
        ps = self.pair_scores(ia, ib)
        if self.compat is not None:
            score = float(self.compat.score_outfit(list(map(int, idx)))[0])
        else:
            score = float(ps.mean())
        pairs = [{"a": str(self.table.ids[x]), "b": str(self.table.ids[y]), "score": _r(s),
                  "reasons": [self.explain([int(x)], int(y), model_reasons=True)]}
                 for x, y, s in zip(ia, ib, ps)]
        return {"items": [str(self.table.ids[i]) for i in idx], "score": _r(score),
                "pairs": pairs, "bundle_version": self.bundle_version}

    def _slots_to_fill(self, have: list[str], slots) -> list[list[str]]:
        """Slot plans (one per body template that fits what is already there)."""
        present = set(have)
        extra = [c for c in (slots if slots is not None else DEFAULT_EXTRA_SLOTS)
                 if c not in ("top", "bottom", "dress")]
        body_req = [c for c in (slots or []) if c in ("top", "bottom", "dress")]
        plans = []
        if body_req:
            plans.append([c for c in body_req if c not in present])
        elif "dress" in present or {"top", "bottom"} <= present:
            plans.append([])
        elif "top" in present or "bottom" in present:
            plans.append([c for c in ("top", "bottom") if c not in present])
        else:
            plans += [list(t) for t in BODY_TEMPLATES]
        plans = [[c for c in p if c in self._cat_rows] + [
            c for c in extra if c not in present and c in self._cat_rows] for p in plans]
        return [p for p in plans if p] or [[]]

    def complete(self, items: Sequence[str], slots: Sequence[str] | None = None, n: int = 3,
                 rules: Rules | None = None, strategy: str = "default",
                 beam_width: int = 8, per_slot: int = 8) -> dict:
        """Complete a partial outfit into ``n`` distinct looks (beam search, module docs).

        Each look's ``score`` is the outfit's score; it is None for a look of a single
        item (nothing to add to it, e.g. ``slots=["top"]`` for a top), which has no
        pair to score.
        """
        n = self._k(n, "n", 10)
        base = self._ids(items)
        if slots is not None:
            slots = self._cats(slots, "slots")
        strat = self._strategy(strategy)
        rs = self._rules(rules)
        have = [self.table.category[i] for i in base]
        plans = self._slots_to_fill(have, slots)
        pair_cache: dict[tuple[int, int], float] = {}
        # the beams ask for each slot with anchor sets that mostly overlap (the given
        # items are in every one): the strategy's answers for an anchor, its pair
        # scores and what the rules allow serve all of them
        shared = _Widenings(self)

        def pairs_needed(pairs):
            # once each: the beams share items, so a step brings the same pair once
            # per beam that holds both (half of the pairs scored for a MANGO look)
            todo = list(dict.fromkeys(p for p in pairs if p not in pair_cache))
            if todo:
                arr = np.array(todo, dtype=np.int64)
                for p, s in zip(todo, self.pair_scores(arr[:, 0], arr[:, 1])):
                    pair_cache[p] = float(s)

        def key(x, y):
            return (x, y) if x < y else (y, x)

        base_pairs = [key(x, y) for ai, x in enumerate(base) for y in base[ai + 1:]]
        pairs_needed(base_pairs)
        beams = []  # (items, filled, score_sum, n_pairs)
        for plan in plans:
            beams.append((tuple(base), (), sum(pair_cache[p] for p in base_pairs),
                          len(base_pairs), tuple(plan)))
        finished = []
        while beams:
            nxt = []
            finished += [b[:4] for b in beams if not b[4]]
            beams = [b for b in beams if b[4]]
            widened = self._widen_all(strat, [(list(b[0]), b[4][0]) for b in beams],
                                      3 * per_slot, rs, per_slot, shared)
            for (its, filled, ssum, npairs, plan), (idx, _, _) in zip(beams, widened):
                idx = idx[:per_slot]
                n_before = len(nxt)
                for j in idx.tolist():
                    if j in its:
                        continue
                    ps = [key(x, j) for x in its]
                    nxt.append((its, filled, ssum, npairs, plan, j, ps))
                if len(nxt) == n_before:
                    # no candidate passes the rules (e.g. every bag excluded or out of
                    # stock): the look goes on without this slot, as it does when the
                    # catalogue has no such category, instead of being dropped
                    nxt.append((its, filled, ssum, npairs, plan, None, []))
            if not nxt:
                break
            pairs_needed([p for t in nxt for p in t[6]])
            cand = []
            for its, filled, ssum, npairs, plan, j, ps in nxt:
                if j is None:
                    cand.append((ssum / max(npairs, 1), (its, filled, ssum, npairs, plan[1:])))
                    continue
                s2 = ssum + sum(pair_cache[p] for p in ps)
                n2 = npairs + len(ps)
                cand.append((s2 / max(n2, 1), (its + (j,), filled + (j,), s2, n2, plan[1:])))
            cand.sort(key=lambda t: (-t[0], t[1][1]))
            seen, beams = set(), []
            for _, b in cand:
                sig = frozenset(b[0])
                if sig in seen:
                    continue
                seen.add(sig)
                beams.append(b)
                if len(beams) >= beam_width * max(1, n):
                    break
        looks = []
        scored = []
        # the model re-scores every finished beam in one batch (score_outfits is
        # score_outfit over many outfits: one featurisation and one prediction)
        multi = [t for t in finished if len(t[0]) > 1]
        model = (dict(zip([t[0] for t in multi], self.compat.score_outfits(
            [list(map(int, t[0])) for t in multi])))
            if self.compat is not None and multi else {})
        for its, filled, ssum, npairs in finished:
            # a look of one item (nothing to add: slots=["top"] for a top, or every
            # slot emptied by the rules) has no pair to score: None, not 0.0, which
            # would read as the worst possible look
            s = (float(model[its]) if its in model else ssum / npairs if npairs
                 else None)
            scored.append((s, its, filled))
        scored.sort(key=lambda t: (-np.inf if t[0] is None else -t[0], t[2]))
        chosen: list[tuple] = []
        for need in (0.5, 0.0):  # distinct: differ in at least half the filled slots
            for s, its, filled in scored:
                if len(chosen) >= n:
                    break
                if any(c[1] == its for c in chosen):
                    continue
                if all(len(set(filled) - set(c[2])) > need * len(filled) for c in chosen):
                    chosen.append((s, its, filled))
        for s, its, filled in chosen:
            looks.append({
                "items": [{"item_id": str(self.table.ids[j]),
                           "category": str(self.table.category[j]),
                           "given": j in base} for j in its],
                "score": None if s is None else _r(s)})
        return {"items": [str(self.table.ids[i]) for i in base], "looks": looks,
                "strategy": strat.name, "rules_version": rs.version,
                "bundle_version": self.bundle_version}

    # ------------------------------------------------------------------ search
    def _resolve_field(self, name: str) -> str:
        if name in self.attribute_vocab:
            return name
        if f"attr_{name}" in self.attribute_vocab:
            return f"attr_{name}"
        raise InputError(f"unknown attribute {name!r}", field=name, value=name,
                         allowed=sorted(self.attribute_vocab))

    def search(self, filters: dict | None = None, like: str | None = None, k: int = 10,
               rules: Rules | None = None) -> dict:
        """Items matching attribute ``filters`` (field -> value or list of values), and
        with ``like`` an item id: "like this item, but with <filters>" ranked by visual
        similarity to it (its category unless ``category`` is given).

        Fields: ``category``, any catalogue attribute column (``colour``,
        ``subcategory``, ...), feature attributes ``attr_<head>`` (also accepted
        without the ``attr_`` prefix) and ``colour_group``. Without ``like`` the
        matches are ordered by popularity in looks, then id. ``n_matches`` counts the
        matches the rules' filters and stock allow: what a page may show.
        """
        k = self._k(k)
        if filters is not None and not isinstance(filters, dict):
            raise InputError(f"filters must be a mapping of attribute -> value(s), got "
                             f"{filters!r}", field="filters", value=filters)
        filters = dict(filters or {})
        li = self._idx(like, "like") if like is not None else None
        if li is not None and "category" not in filters:
            filters["category"] = self.table.category[li]
        mask = np.ones(len(self.table), dtype=bool)
        applied = {}
        for name, val in filters.items():
            field, vals = self._filter_values(name, val)
            mask &= np.isin(self.table.column(field), np.asarray(vals, dtype=object))
            applied[field] = vals
        rows = np.flatnonzero(mask)
        rs = self._rules(rules)
        # the rules' filters and stock first: ranking keeps only the best max(4k, 50)
        # candidates, which an exclusion could otherwise empty while allowed matches
        # lie further down
        rows = rows[rules_allow(rs, self.table, rows)]
        if li is not None:
            rows = rows[rows != li]
            idx, sc = self._rank_by_embedding(rows, np.asarray(self.emb[li]), k)
        else:
            # every match's own count: ``popular`` keeps only a category's 200 most
            # worn, which left a filter's worn items outside them tied at 0 (id order)
            cnt = np.zeros(len(rows))
            for c in np.unique(self.table.category[rows]) if len(rows) else []:
                m = self.table.category[rows] == c
                cnt[m] = self.popularity(c)[np.searchsorted(self._cat_rows[c], rows[m])]
            order = np.lexsort((self.table.ids[rows], -cnt))[:max(4 * k, 50)]
            idx, sc = rows[order], cnt[order]
        g = Group("search", idx, sc, [""] * len(idx))
        # search results have no slot, so dedupe/pairing/fallback do not apply, and a
        # search lists every colourway that matches
        out = apply_rules([g], _search_rules(rs), self.table, k=k, mode="search",
                          anchor_ids=[self.table.ids[li]] if li is not None else [])
        items = []
        for it in out[0]["items"]:
            j = it["idx"]
            reason = (f"visually similar to the {self._describe(li)}" if li is not None
                      else "matches the filters")
            items.append({"item_id": str(self.table.ids[j]), "category":
                          str(self.table.category[j]), "score": _r(it["score"]),
                          "reason": reason})
        return {"filters": applied, "like": like, "n_matches": int(len(rows)),
                "items": items, "rules_version": rs.version,
                "bundle_version": self.bundle_version}

    # ------------------------------------------------------------------ images
    def _vision(self) -> dict:
        """The perception models, loaded once on first use (torch is not imported by
        engines that never see a photo): the attribute network (category via its
        subcategory head, attributes, the embedding), the keypoint detector when the
        bundle has ``models/keypoints.pt`` and ``features.keypoints.heatmap`` is
        installed (else the silhouette estimator), and the features stage's
        ``max_side`` so a photo is processed as the catalogue images were."""
        with self._vision_lock:
            if self._vision_models is not None:
                return self._vision_models
            models = self.bundle.path("models")
            if not (models / "attributes.pt").is_file():
                raise StageNotAvailable(
                    "this bundle has no attribute network (models/attributes.pt): image "
                    "analysis and image search need it (run the attributes and features "
                    "stages)")
            from features.attributes import AttributeModel

            amodel = AttributeModel.load(models)
            amodel.num_threads = 1  # one request, one core; workers give parallelism
            if amodel.net_.embed_dim != self.emb.shape[1]:
                raise BundleError(f"the attribute network embeds in {amodel.net_.embed_dim} "
                                  f"dimensions, features/embeddings.npy has "
                                  f"{self.emb.shape[1]}: re-run the features stage")
            kmodel, kmethod = None, "silhouette"
            if (models / "keypoints.pt").is_file():
                try:
                    from features.keypoints.heatmap import load_detector
                except ImportError:  # the detector's module is not installed here
                    pass
                else:
                    kmodel, kmethod = load_detector(models), "heatmap"
                    kmodel.num_threads = 1
            heads = list(amodel.taxonomy_.names)
            self._vision_models = {"attributes": amodel, "keypoints": kmodel,
                                   "keypoint_method": kmethod,
                                   "max_side": self.photo_max_side,
                                   "heads": heads, "sub_to_cat": self._sub_to_cat()}
            return self._vision_models

    @property
    def photo_max_side(self) -> int:
        """The longer side, in pixels, a photo is shrunk to before it is analysed: the
        features stage's ``max_side``, so a photo is processed as the catalogue images
        were. A caller decoding an upload may shrink it to this while decoding
        (:func:`features.imaging.decode_upload_shrunk`) and pass the photo's own
        ``size`` to :meth:`analyze_image`: nothing larger is read."""
        from features.extract import DEFAULTS

        stages = self.bundle.manifest.get("config", {}).get("stages", {}) or {}
        return int((stages.get("features") or {}).get("max_side", DEFAULTS["max_side"]))

    def warm_vision(self) -> bool:
        """Load the perception models now instead of on the first photo.

        Loading them (torch, the attribute network, the descriptor fusion's boosters)
        takes about 2 s on a MANGO bundle, against 0.15 s for an analysis once loaded,
        so a server's workers call this in the background as they start
        (:func:`api.app.warm_vision`). Returns False, loading nothing, when the bundle
        has no attribute network; errors of a broken network are raised as by
        :meth:`analyze_image`.
        """
        try:
            self._vision()
        except StageNotAvailable:  # no attribute network: nothing to load
            return False
        return True

    @property
    def vision_loaded(self) -> bool:
        """Whether the perception models are loaded (:meth:`warm_vision`, or a photo)."""
        return self._vision_models is not None

    def _sub_to_cat(self) -> dict[str, str]:
        """The catalogue's (subcategory -> category) table: each subcategory's most
        common category (ties: CATEGORIES order)."""
        if "subcategory" not in self.catalog.columns:
            return {}
        df = pd.DataFrame({"s": self.catalog["subcategory"].astype(str).to_numpy(),
                           "c": self.table.category})
        cnt = df.groupby(["s", "c"]).size().reset_index(name="n")
        cnt["o"] = cnt["c"].map({c: i for i, c in enumerate(CATEGORIES)}).fillna(99)
        cnt = cnt.sort_values(["s", "n", "o"], ascending=[True, False, True])
        return dict(zip(cnt.drop_duplicates("s")["s"], cnt.drop_duplicates("s")["c"]))

    @staticmethod
    def _check_rgb(rgb: Any, size: Any = None) -> tuple[np.ndarray, tuple[int, int]]:
        """``(rgb, (h, w))``: the photo and its own size (``size``, given when ``rgb``
        was shrunk while decoding, else rgb's)."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
                or rgb.shape[2] != 3:
            raise InputError("image must be an RGB uint8 array (H, W, 3), at least 8x8 "
                             "pixels", field="image",
                             value=getattr(rgb, "shape", type(rgb).__name__))
        if size is None:
            size = rgb.shape[:2]
        elif (not isinstance(size, (tuple, list)) or len(size) != 2
              or any(isinstance(x, bool) or not isinstance(x, (int, np.integer))
                     for x in size)
              or size[0] < rgb.shape[0] or size[1] < rgb.shape[1]):
            raise InputError(f"size must be the photo's (h, w) before it was shrunk, at "
                             f"least the image's {rgb.shape[:2]}; got {size!r}",
                             field="size", value=repr(size))
        h, w = int(size[0]), int(size[1])
        if min(h, w) < 8:
            # a decoded upload that is too small: said in the photo's terms, since
            # the API's caller sent an image file, not an array
            raise InputError(f"image is {w}x{h} pixels; at least 8x8 are needed",
                             field="image", value=[h, w])
        return rgb, (h, w)

    def _perceive(self, rgb: np.ndarray, alpha: np.ndarray | None = None,
                  size: tuple[int, int] | None = None) -> dict:
        """Everything the engine needs from a photo: recognised category and
        attributes (with probabilities), embedding, and the classical features of
        :func:`features.extract.analyse_image` (mask, colours, keypoints, shape).
        ``alpha``: the photo's transparency, a cut-out's mask (shrunk with it).
        ``size``: the photo's (h, w) when ``rgb`` is it shrunk (keypoints are scaled
        back to it)."""
        from features.extract import analyse_image
        from features.imaging import resize_max_side, resize_to

        rgb, (photo_h, photo_w) = self._check_rgb(rgb, size)
        v = self._vision()
        img = resize_max_side(rgb, v["max_side"])
        if min(img.shape[:2]) < 8:
            raise InputError(f"image {photo_w}x{photo_h} is too thin: at "
                             f"{v['max_side']} pixels on its long side the short side is "
                             f"under 8", field="image", value=[photo_h, photo_w])
        scale = max(photo_h, photo_w) / max(img.shape[:2])
        if alpha is not None:
            alpha = np.asarray(alpha)
            if alpha.shape != rgb.shape[:2] or alpha.dtype != np.uint8:
                raise InputError(f"alpha must be uint8 (H, W) = {rgb.shape[:2]}, the "
                                 f"image's size; got {alpha.dtype} {alpha.shape}",
                                 field="alpha", value=list(alpha.shape))
            # the filter that shrank the photo: the mask stays on its pixels
            alpha = resize_to(alpha, img.shape[:2])
        amodel = v["attributes"]
        probs, z = amodel.predict_all([img])
        e = z[0].astype(np.float32)
        e /= max(float(np.linalg.norm(e)), 1e-12)
        cat, cat_conf, sub, method = self._photo_category(probs, amodel, e, v)
        res = analyse_image(img, cat, sub or "", keypoint_model=v["keypoints"], alpha=alpha)
        if res["keypoints"] is not None and getattr(amodel, "region_kind", None) == "neck":
            # A network with the keypoint-guided neck path answers from the photo's
            # keypoints, as the features stage answered for catalogue items.
            _, kxy, kvis, _ = res["keypoints"]
            probs, _ = amodel.predict_all([img], amodel.region_inputs(
                [img], np.asarray(kxy, float)[None], np.asarray(kvis)[None]))
        attrs = {}
        for h in v["heads"]:
            p = probs[h][0]
            classes = amodel.taxonomy_.classes(h)
            top = np.argsort(-p, kind="stable")[:3]
            attrs[h] = {"value": str(classes[top[0]]), "confidence": _r(p[top[0]]),
                        "top": [{"value": str(classes[j]), "p": _r(p[j])} for j in top]}
        return {"rgb": img, "scale": scale, "size": (photo_h, photo_w), "embedding": e,
                "attributes": attrs,
                "category": cat, "category_confidence": cat_conf, "subcategory": sub,
                "category_method": method, "classical": res,
                "keypoint_method": v["keypoint_method"]}

    def _photo_category(self, probs, amodel, e, v):
        """(category, confidence, subcategory, method) of a photo.

        Two pieces of evidence over subcategories, averaged: the attribute network's
        subcategory head, and a vote of the :data:`PHOTO_NEIGHBOURS` visually
        nearest catalogue items (their catalogue subcategories, weighted
        ``exp((cos - cos_best) / PHOTO_VOTE_TEMPERATURE)``, so a photo of a catalogue
        item is decided by that item). Categories get the summed probability of
        their subcategories through the catalogue's subcategory -> category table;
        the subcategory is the most probable one inside the chosen category.
        """
        table = v["sub_to_cat"]
        near = self._nearest_all(e, PHOTO_NEIGHBOURS)
        if not table:  # a catalogue without subcategories: the neighbours' categories
            if len(near) == 0:
                return None, 0.0, None, "none"
            w = self._vote_weights(e, near)
            per = pd.Series(w).groupby(self.table.category[near]).sum()
            best = str(per.idxmax())
            return best, float(per.max() / w.sum()), None, "nearest catalogue items"
        p_sub: dict[str, float] = {}
        parts = []
        if "subcategory" in probs:
            head = {c: float(x) for c, x in zip(amodel.taxonomy_.classes("subcategory"),
                                                probs["subcategory"][0]) if c in table}
            mass = sum(head.values())
            if mass > 0:
                p_sub = {c: 0.5 * x / mass for c, x in head.items()}
                parts.append("subcategory head")
        if len(near):
            w = self._vote_weights(e, near)
            subs = self.catalog["subcategory"].astype(str).to_numpy()[near]
            share = 0.5 if parts else 1.0
            for sname, x in zip(subs, w / w.sum()):
                p_sub[sname] = p_sub.get(sname, 0.0) + share * float(x)
            parts.append("nearest catalogue items")
        if not p_sub:
            return None, 0.0, None, "none"
        total = sum(p_sub.values())
        per: dict[str, float] = {}
        for sname, x in p_sub.items():
            per[table[sname]] = per.get(table[sname], 0.0) + x / total
        best = max(per, key=lambda c: (per[c], -CATEGORIES.index(c)
                                       if c in CATEGORIES else -99))
        sub = max((sname for sname in p_sub if table[sname] == best),
                  key=lambda sname: (p_sub[sname], sname))
        return best, per[best], sub, " + ".join(parts)

    def _vote_weights(self, e: np.ndarray, near: np.ndarray) -> np.ndarray:
        cos = np.asarray(self.emb[np.sort(near)], dtype=np.float32) @ e
        cos = cos[np.argsort(np.argsort(near))]  # back to ``near`` order
        return np.exp((cos - cos.max()) / PHOTO_VOTE_TEMPERATURE)

    def _nearest_all(self, e: np.ndarray, n: int) -> np.ndarray:
        sims = np.empty(len(self.catalog), dtype=np.float32)
        for s in range(0, len(sims), 65536):
            sims[s:s + 65536] = np.asarray(self.emb[s:s + 65536]) @ e
        n = min(n, len(sims))
        top = np.argpartition(-sims, n - 1)[:n] if n else np.zeros(0, np.int64)
        return top[np.argsort(-sims[top], kind="stable")]

    def analyze_image(self, rgb: np.ndarray, *, alpha: np.ndarray | None = None,
                      size: tuple[int, int] | None = None) -> dict:
        """Category, attributes with confidences, colours, keypoints and shape of a photo.

        Parameters
        ----------
        rgb : uint8 array (H, W, 3)
            The photo (e.g. from :func:`features.imaging.decode_upload`). It is shrunk
            to the features stage's ``max_side`` first, as catalogue images were.
        alpha : uint8 array (H, W), optional
            The photo's transparency (:func:`features.imaging.decode_upload_alpha`):
            a cut-out's is its garment mask (``mask.method`` ``"alpha"``), read by
            the colours, keypoints and shape as the features stage reads it.
        size : (h, w), optional
            The photo's own size when ``rgb`` (and ``alpha``) are the photo already
            shrunk (:func:`features.imaging.decode_upload_shrunk` with
            :attr:`photo_max_side`): the keypoints and ``image_size`` are given in the
            photo's pixels all the same. Default: ``rgb``'s.

        Returns
        -------
        dict
            ``category`` (catalogue category, from the attribute network's
            subcategory head mapped through the catalogue's subcategory -> category
            table), ``category_confidence``, ``category_method``, ``subcategory``;
            ``attributes``: head -> ``{"value", "confidence", "top"}``;
            ``colours``: dominant colours ``{"L", "a", "b", "weight", "hex"}``
            (weights sum to 1) and ``colour_group``; ``keypoints``: ``{"category"``
            (FashionAI), ``"method"``, ``"mean_confidence"``, ``"points": [{"name",
            "x", "y", "visible", "confidence"}]}`` in the photo's pixels, or None for
            items without FashionAI points (shoes, bags, ...); ``shape``: the
            applicable shape features; ``mask``: quality, method (``classical``,
            ``edges``, ``alpha``), area; ``garment_found``: whether the mask told a
            garment apart from the background (:data:`GARMENT_MIN_AREA`). When it
            did not (an empty photo, or a white garment lost on white), the category
            and attributes are still the network's reading of the frame, and the
            colours are the whole frame's.

        Raises StageNotAvailable when the bundle has no attribute network.

        Examples
        --------
        >>> # out = engine.analyze_image(load_rgb("dress.jpg"))
        >>> # out["category"], out["attributes"]["sleeve_length_labels"]["value"]
        """
        from features.fashionai.schema import CATEGORY_KEYPOINTS, KEYPOINT_INDEX
        from features.imaging import lab_to_rgb

        p = self._perceive(rgb, alpha, size)
        res = p["classical"]
        row = res["row"]
        colours = []
        for L, a, b, w in res["colours"]:
            hx = "#" + "".join(f"{int(x):02x}" for x in lab_to_rgb(np.array([L, a, b])))
            colours.append({"L": _r(L), "a": _r(a), "b": _r(b), "weight": _r(w), "hex": hx})
        kp = None
        if res["keypoints"] is not None:
            kcat, xy, vis, conf = res["keypoints"]
            pts = []
            for name in CATEGORY_KEYPOINTS[kcat]:
                j = KEYPOINT_INDEX[name]
                seen = int(vis[j]) >= 0 and np.isfinite(xy[j]).all() and xy[j][0] >= 0
                pts.append({"name": name,
                            "x": _r(xy[j][0] * p["scale"]) if seen else None,
                            "y": _r(xy[j][1] * p["scale"]) if seen else None,
                            "visible": int(vis[j]), "confidence": _r(conf[j])})
            kp = {"category": kcat, "method": row["kp_method"],
                  "mean_confidence": _r(row["kp_conf"]), "points": pts}
        shape = {k.removeprefix("shape_"): _r(row[k]) for k in row
                 if k.startswith("shape_") and np.isfinite(row[k])}
        return {
            "category": p["category"],
            "category_confidence": _r(p["category_confidence"]),
            "category_method": p["category_method"],
            "subcategory": p["subcategory"],
            "attributes": p["attributes"],
            "colours": colours, "colour_group": row["colour_group"] or None,
            "colourfulness": _r(row["colourfulness"]) if np.isfinite(
                row["colourfulness"]) else None,
            "keypoints": kp, "shape": shape,
            "mask": {"quality": _r(row["mask_quality"]), "method": row["mask_method"],
                     "area": _r(row["mask_area"])},
            "garment_found": bool(row["mask_area"] >= GARMENT_MIN_AREA),
            "image_size": list(p["size"]),
            "embedding_dim": int(len(p["embedding"])),
            "bundle_version": self.bundle_version,
        }

    #: fields that name the same concept: overriding one releases the others
    _CONCEPTS = {"colour": "colour", "attr_colour": "colour", "colour_group": "colour",
                 "category": "category", "subcategory": "subcategory",
                 "attr_subcategory": "subcategory"}

    def _concept(self, field: str) -> str:
        return self._CONCEPTS.get(field, field.removeprefix("attr_"))

    def _filter_values(self, name: str, val: Any) -> tuple[str, list[str]]:
        field = self._resolve_field(name)
        vals = [val] if isinstance(val, str) else list(val) if isinstance(
            val, (list, tuple)) else None
        if not vals:
            raise InputError(f"{name} must be a value or a list of values", field=name,
                             value=val)
        allowed = set(self.attribute_vocab[field])
        for x in vals:
            if x not in allowed:
                raise InputError(f"unknown value {x!r} for {name}", field=name, value=x,
                                 allowed=self.attribute_vocab[field])
        return field, vals

    def search_by_image(self, rgb: np.ndarray, overrides: dict | None = None, k: int = 10,
                        rules: Rules | None = None, *, alpha: np.ndarray | None = None,
                        size: tuple[int, int] | None = None) -> dict:
        """Items sharing the photo's recognised attributes except ``overrides``, ranked
        by visual similarity (embedding cosine) to the photo.

        "This dress, but with long sleeves": ``overrides={"sleeve_length_labels":
        "Long Sleeves"}``. Constraints: the overrides (hard, validated like
        :meth:`search` filters), the photo's category (unless a category or
        subcategory is overridden), and each recognised attribute the catalogue's
        features carry (``attr_<head>``) unless the same concept is overridden
        (``colour`` releases ``attr_colour`` and ``colour_group``). When fewer than
        ``k`` items match them all, the least confident recognised attributes are
        relaxed one at a time (``relaxed`` lists them) -- never the overrides or the
        category. Items the rules' filters or stock exclude do not count as matches
        (``n_matches``), as in :meth:`search`. ``alpha``: the photo's transparency, as
        in :meth:`analyze_image` (the keypoints a neck-region network reads come
        from its mask); ``size``: the photo's own size when ``rgb`` is it shrunk, as
        in :meth:`analyze_image`.

        >>> # engine.search_by_image(rgb, {"sleeve_length_labels": "Long Sleeves"}, k=5)
        """
        k = self._k(k)
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise InputError("overrides must be a mapping of attribute -> value",
                             field="overrides")
        hard: dict[str, list[str]] = {}
        for name, val in overrides.items():
            field, vals = self._filter_values(str(name), val)
            hard[field] = vals
        given = {f: list(v) for f, v in hard.items()}
        p = self._perceive(rgb, alpha, size)
        released = {self._concept(f) for f in hard}
        if "subcategory" in released:
            released.add("category")
        soft = []  # (field, value, confidence)
        if p["category"] is not None and "category" not in released:
            hard["category"] = [p["category"]]
        for h, a in p["attributes"].items():
            field = f"attr_{h}"
            if self._concept(field) in released or field not in self.attribute_vocab:
                continue
            if a["value"] in set(self.attribute_vocab[field]):
                soft.append((field, a["value"], a["confidence"]))
        rs = self._rules(rules)
        # only what the rules' filters and stock allow counts toward k (see search)
        mask = rules_allow(rs, self.table, np.arange(len(self.table)))
        for field, vals in hard.items():
            mask &= np.isin(self.table.column(field), np.asarray(vals, dtype=object))
        soft.sort(key=lambda t: (-t[2], t[0]))  # most confident first
        masks = [self.table.column(f) == v for f, v, _ in soft]
        # keep the longest prefix (by confidence) of soft constraints with >= k matches
        keep = 0
        cur = mask
        for m in masks:
            nxt = cur & m
            if nxt.sum() < k:
                break
            cur, keep = nxt, keep + 1
        # a later, less confident constraint may still fit after one failed: try each
        applied_soft = list(range(keep))
        for t in range(keep + 1, len(masks)):
            nxt = cur & masks[t]
            if nxt.sum() >= k:
                cur = nxt
                applied_soft.append(t)
        rows = np.flatnonzero(cur)
        idx, sc = self._rank_by_embedding(rows, p["embedding"], k)
        out = apply_rules([Group("search", idx, sc, [""] * len(idx))], _search_rules(rs),
                          self.table, k=k, mode="search", anchor_ids=[])
        shared = [soft[t] for t in applied_soft]
        items = []
        for it in out[0]["items"]:
            j = it["idx"]
            reason = "visually similar to the photo"
            if shared:
                f, v, _ = shared[0]
                reason += f"; same {f.removeprefix('attr_').replace('_', ' ')} ({v.lower()})"
            items.append({"item_id": str(self.table.ids[j]),
                          "category": str(self.table.category[j]),
                          "score": _r(it["score"]), "reason": reason})
        return {"recognised": {"category": p["category"],
                               "category_confidence": _r(p["category_confidence"]),
                               "attributes": {h: a["value"] for h, a in
                                              p["attributes"].items()}},
                "overrides": given,
                "filters": {**hard, **{f: [v] for f, v, _ in shared}},
                "relaxed": [soft[t][0] for t in range(len(soft)) if t not in applied_soft],
                "n_matches": int(len(rows)), "items": items,
                "rules_version": rs.version, "bundle_version": self.bundle_version}

    def _rank_by_embedding(self, rows: np.ndarray, e: np.ndarray, k: int
                           ) -> tuple[np.ndarray, np.ndarray]:
        """The ``max(4k, 50)`` of ``rows`` most similar to ``e`` (cosine), best first."""
        sims = np.empty(len(rows), dtype=np.float32)
        for s in range(0, len(rows), 65536):
            sims[s:s + 65536] = np.asarray(self.emb[rows[s:s + 65536]]) @ e
        top = min(len(rows), max(4 * k, 50))
        part = np.argpartition(-sims, top - 1)[:top] if top else np.zeros(0, np.int64)
        part = part[np.lexsort((rows[part], -sims[part]))]
        return rows[part], sims[part].astype(float)

    def image_features(self, rgb: np.ndarray, *, alpha: np.ndarray | None = None
                       ) -> tuple[dict, np.ndarray]:
        """A photo as a new item: (feature fields, embedding) for
        :meth:`complements_for_features` -- the catalogue fields the photo gives
        (``category``, ``subcategory``, ``colour`` from the colour head when the
        network has one), the features-table columns (colours, shape, mask,
        ``attr_<head>`` and ``attr_<head>_conf``). ``alpha`` as in :meth:`analyze_image`."""
        p = self._perceive(rgb, alpha)
        if p["category"] is None:
            raise InputError("the photo's category could not be recognised", field="image")
        feats = {"category": p["category"], "subcategory": p["subcategory"] or ""}
        feats.update(p["classical"]["row"])
        feats["feat_ok"] = True
        for h, a in p["attributes"].items():
            feats[f"attr_{h}"] = a["value"]
            feats[f"attr_{h}_conf"] = a["confidence"]
        if "colour" in p["attributes"]:
            feats["colour"] = p["attributes"]["colour"]["value"]
        return feats, p["embedding"]

    def complements_for_image(self, rgb: np.ndarray, k: int = 5, categories=None,
                              rules: Rules | None = None, *, alpha: np.ndarray | None = None,
                              diversity: float | None = None) -> dict:
        """Cold start from a photo: complements for a new item that only exists as a
        picture (no rebuild) -- :meth:`image_features` then
        :meth:`complements_for_features`."""
        k = self._k(k)
        cats = self._cats(categories)
        self._lam(diversity, COMPLEMENTS_LAM)  # refused before the photo is perceived
        feats, e = self.image_features(rgb, alpha=alpha)
        out = self.complements_for_features(feats, e, k=k, categories=cats, rules=rules,
                                            diversity=diversity)
        out["recognised"] = {"category": feats["category"],
                             "subcategory": feats["subcategory"],
                             "colour_group": feats.get("colour_group") or None}
        return out

    def strategies(self) -> list[str]:
        return sorted(STRATEGIES)


class _ScoredOnce:
    """The engine as a strategy reads it during one widening (``_merged_allowed``),
    with pair scores remembered: a later round scores only pairs no earlier round
    did. The scorers score each pair on its own (the model's rows, the content
    scorer's dot products), so a remembered score is the one a new call gives.

    >>> class Const:
    ...     calls, catalog = 0, range(10)
    ...     def pair_scores(self, a, b):
    ...         Const.calls += len(a)
    ...         return np.full(len(a), 0.5)
    >>> s = _ScoredOnce(Const())
    >>> s.pair_scores(np.array([0, 0]), np.array([1, 2])).tolist()
    [0.5, 0.5]
    >>> s.pair_scores(np.array([0, 0, 0]), np.array([2, 3, 3])).tolist(), Const.calls
    ([0.5, 0.5, 0.5], 3)
    """

    #: no rules of its own (:class:`_RulesAllowed` adds them); found here, not looked
    #: up on the engine through ``__getattr__`` for every candidates call
    allowed = None
    #: while True, a call with pairs not scored yet raises :class:`_Deferred` and
    #: keeps them for :meth:`score_deferred` (``Engine._widen_all``)
    defer = False
    #: how many calls raised :class:`_Deferred`: a strategy call that returns with
    #: this changed caught it (a bare ``except:``), and its answer is not kept
    deferrals = 0

    def __init__(self, engine: "Engine"):
        self._engine = engine
        self._n = len(engine.catalog)
        # pair (a, b) as one key a * N + b, sorted, and its score
        self._keys = np.zeros(0, np.int64)
        self._scores = np.zeros(0)
        self._deferred: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:
        # graph, emb, popular, neighbours, ...: the engine's own
        return getattr(self._engine, name)

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        keys = np.asarray(a, dtype=np.int64) * self._n + np.asarray(b, dtype=np.int64)
        # the remembered keys are sorted: a binary search finds them, where np.isin
        # hashed them all on every call (2 ms a call once 50,000 pairs are
        # remembered, as the retrieval evaluation's are)
        pos = np.searchsorted(self._keys, keys)
        known = pos < len(self._keys)
        known[known] = self._keys[pos[known]] == keys[known]
        new = np.unique(keys[~known])
        if len(new):
            if self.defer:
                self._deferred.append(new)
                self.deferrals += 1
                raise _Deferred
            self._score(new)
            pos = np.searchsorted(self._keys, keys)
        return self._scores[pos]

    def score_deferred(self) -> None:
        """Score, in one call, the pairs that deferred calls asked for."""
        if self._deferred:
            new = np.unique(np.concatenate(self._deferred))
            self._deferred = []
            self._score(new[~np.isin(new, self._keys)])

    def _score(self, new: np.ndarray) -> None:
        if len(new) == 0:
            return
        sc = np.asarray(self._engine.pair_scores(new // self._n, new % self._n), dtype=float)
        keys_all = np.concatenate([self._keys, new])
        order = np.argsort(keys_all, kind="stable")
        self._keys = keys_all[order]
        self._scores = np.concatenate([self._scores, sc])[order]


class _Deferred(BaseException):
    """A strategy asked :class:`_ScoredOnce` for pairs while it defers scoring them:
    the call is abandoned and made again once they are scored (``Engine._widen_all``,
    the retrieval evaluation's ``_rankings``).

    A ``BaseException``, as ``GeneratorExit`` is, because it is control flow, not an
    error: a strategy (a registered one included) may wrap its scoring in ``except
    Exception`` to fall back, say, to popular items, and that fallback was then kept
    as the widening's answer -- other looks than the strategy's own, silently. Code
    between the strategies and the scorer catches it by name only; cleanup that
    catches ``BaseException`` must re-raise it. A strategy that swallows it anyway
    (a bare ``except:``) is caught out by ``_ScoredOnce.deferrals``: its answer is
    not kept.
    """


class _Widenings:
    """What the widenings (``Engine._merged_allowed``) of one request share: per
    category, which of its rows the rules allow and the state the strategy reads
    (:class:`_RulesAllowed` over one :class:`_ScoredOnce`, so a pair is scored once
    in the request), and the strategy's answers by ``(strategy, anchor, category,
    k, fill)``. ``complete`` widens a slot once per beam, and the beams' anchors
    are mostly the same items: each asked the strategy, and paid the scorer's fixed
    cost per call (~4 ms on MANGO), again for every beam.
    """

    def __init__(self, engine: "Engine"):
        self.scored = _ScoredOnce(engine)
        self.allowed: dict[str, np.ndarray] = {}
        self.states: dict[str, Any] = {}
        self.answers: dict[tuple, tuple] = {}
        self.merged: dict[tuple, tuple] = {}  # _merged by (strategy, anchors, ...)


class _RulesAllowed:
    """A strategy's state (:class:`_ScoredOnce`) under a request's rules, for one
    category (``_merged_allowed``): ``allowed`` says which rows the rules' filters
    and stock let be shown, and ``neighbours`` are the nearest of those, so that a
    top-up (:meth:`Strategy.top_up`) scores only items that can be shown. The graph
    rows and the history are read as they are (the rules step filters them).

    >>> import types
    >>> def nearest(e, category, n, rows):  # the engine's, over ``rows`` only
    ...     return rows[:n], e[rows[:n]]
    >>> eng = types.SimpleNamespace(emb=np.eye(4, dtype=np.float32), _nearest_scored=nearest)
    >>> s = _RulesAllowed(eng, None, "top", np.array([1, 3]))
    >>> s.neighbours(0, "top", 5)[0].tolist()
    [1, 3]
    """

    def __init__(self, state: Any, rules: Rules, category: str, rows: np.ndarray):
        self._state = state
        self._rules = rules
        self._category = category
        self._rows = rows  # the category's rows the rules allow, ascending

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)

    def allowed(self, rows: np.ndarray) -> np.ndarray:
        # looked up in the category's allowed rows: the strategies ask for every row
        # and candidate list, and the filters' string matching took ~10% of a widened
        # completion (a row of another category still goes through the filters)
        rows = np.asarray(rows, dtype=np.int64)
        ok = np.zeros(len(rows), dtype=bool)
        if len(self._rows):
            pos = np.minimum(np.searchsorted(self._rows, rows), len(self._rows) - 1)
            ok = self._rows[pos] == rows
        other = self.table.category[rows] != self._category
        if other.any():
            ok[other] = rules_allow(self._rules, self.table, rows[other])
        return ok

    def neighbours(self, item_idx: int, category: str, n: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        if category != self._category:
            return self._state.neighbours(item_idx, category, n)
        return self._state._nearest_scored(
            np.asarray(self.emb[int(item_idx)], dtype=np.float32), category, n, self._rows)


def _search_rules(rs: Rules) -> Rules:
    import dataclasses

    return dataclasses.replace(rs, pins=(), dedupe=False, colourways=False, fallback=False)
