"""The pairwise compatibility model: LightGBM on pair features, outfit score from pairs.

Training rows are pairs of items from training outfits (label 1) and the same pairs
with one side swapped for another item of the same subcategory (label 0, the
Polyvore negative). Co-occurrence features of a row leave the row's own outfit out
(see :mod:`recommender.compat.cooccurrence`), so the model learns what history is
worth when it is honest, and what content is worth when there is none.

The "unseen means right" shortcut. Many true answers have no history, and a model
fed raw counts may learn that absence predicts a match. Two guards: co-occurrence
of a training row never counts the row's own outfit (so a positive's history looks
exactly like a held-out item's), and negatives can be *popularity-matched* (a swap
from the same bucket of training-outfit count as the item it replaces), so every
popularity stratum holds positives and negatives and only content separates them.

``negatives="auto"`` fits random and mixed (half matched) negatives and keeps the
better on the validation split of the training outfits. Warm and cold FITB are reported separately.

FITB answers are scored by the mean (log-odds) pair score with the question items, or
by a second-stage ranker over question-level features of each candidate
(:mod:`recommender.compat.ranker`) when cross-fitting on the validation questions
says it does better (``fitb_ranker="auto"``). That ranker also reads an outfit-level
score: an outfit context model (:mod:`recommender.compat.context`) that reads the
question's items together, trained on the FITB task on the training outfits outside
the validation split (``context``); once the ranker is chosen, the final context model
is fitted again on all the training outfits (``context_refit``), as the statistics are.

Examples
--------
>>> import pandas as pd
>>> cat = pd.DataFrame({"item_id": [f"i{k}" for k in range(8)],
...     "category": ["top"] * 4 + ["bottom"] * 4, "subcategory": ["Shirt"] * 4 + ["Jeans"] * 4,
...     "colour": ["WHITE", "RED"] * 4, "material": "", "gender": "", "image_path": ""})
>>> # white tops are worn with white bottoms, red with red
>>> outfits = pd.DataFrame({"outfit_id": [str(k) for k in range(40) for _ in (0, 1)],
...     "item_id": [x for k in range(40) for x in (f"i{k % 4}", f"i{4 + (k % 4)}")]})
>>> m = CompatibilityModel(num_boost_round=20, min_data_in_leaf=2).fit(cat, outfits)
>>> m.score_pairs([0, 0], [4, 5]).round(2).tolist()[0] > 0.5
True
"""
from __future__ import annotations

import functools
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.exceptions import BundleError, InputError, NotFittedError, NotFoundError
from features.settings import check_value, kinds_of_defaults
from recommender.compat.pair_features import GROUPS, PairFeaturizer
from recommender.compat.style import StyleConfig, outfit_pairs

NEGATIVE_MODES = ("auto", "random", "matched", "mixed")
#: What "auto" tries; the validation split (never the test files) picks one.
AUTO_CANDIDATES = ("random", "mixed")
#: Validation metrics whose mean picks the negatives mode under "auto".
SELECTION_METRICS = ("val_fitb", "val_fitb_cold", "val_auc_hard")
AGGREGATES = ("auto", "mean", "mean_logit", "min", "worst", "blend")
#: What aggregate="auto" tries; picked by validation AUC (all swapped + one swapped).
AUTO_AGGREGATES = ("mean", "mean_logit", "worst", "blend")
#: How an FITB answer's pair scores with the question items combine (picked on validation).
FITB_AGGREGATES = ("mean", "mean_logit")
#: What ``fitb_ranker`` accepts: "auto" fits the second-stage ranker and keeps it when
#: its cross-fitted validation FITB beats the plain aggregate; "off" never fits one.
FITB_RANKER_MODES = ("auto", "off")
#: Settings of the second-stage FITB ranker (:class:`recommender.compat.ranker.FitbRanker`
#: arguments, plus "folds" for cross-fitting, "history" for the candidate's own count and
#: "pair_columns", the pair features summarised per candidate; None: ranker.PAIR_COLUMNS).
#: "extra_draws": further sets of negatives per validation blank, for TRAINING the ranker
#: (its out-of-fold figures score the original questions only).
#: The defaults are the steadiest of the variants cross-fitted on the MANGO validation
#: questions (benchmarks/compat_fitb_ranker.py): corrections to the plain log-odds mean
#: (base "logit_mean") by few small trees. A freer ranker (200 rounds of 15-leaf trees
#: from scratch) lost to the plain aggregate (FITB 0.878 vs 0.886, cold 0.688 vs 0.714);
#: these defaults came out level with it (0.888 / 0.709), so "auto" did not keep it there.
RANKER_DEFAULTS = {"objective": "lambdarank", "num_boost_round": 100, "learning_rate": 0.05,
                   "num_leaves": 7, "min_data_in_leaf": 40, "base": "logit_mean", "folds": 5,
                   "history": True, "pair_columns": None, "extra_draws": 2}
#: Least value of the ranker settings that take a count: LightGBM's own checks (a tree
#: of 2+ leaves, 1+ round; min_data_in_leaf 0 or more), 2 folds to cross-fit at all.
RANKER_LEAST = {"num_boost_round": 1, "num_leaves": 2, "min_data_in_leaf": 0, "folds": 2,
                "extra_draws": 0}
#: The ranker's LightGBM text model, beside compat.txt in ``models/``.
RANKER_FILE = "compat_ranker.txt"
#: What ``context`` accepts: "auto" fits the outfit context model when at least
#: :data:`MIN_CONTEXT_OUTFITS` training outfits give rows, "on" always, "off" never.
CONTEXT_MODES = ("auto", "on", "off")
MIN_CONTEXT_OUTFITS = 200
#: The format compat.json names; load refuses any other.
COMPAT_FORMAT = "mixmatch-compat/1"
#: The outfit context model's weights, beside compat.txt in ``models/``.
CONTEXT_FILE = "compat_context.npz"
#: What numpy raises for an .npz cut short or damaged (zip, header, array errors).
_UNREADABLE_NPZ = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)
#: Defaults of ``max_train_outfits`` / ``max_val_outfits`` (see :class:`CompatibilityModel`).
MAX_TRAIN_OUTFITS = 30_000
MAX_VAL_OUTFITS = 5_000
#: Pairs featurised at once: the float64 columns of a block are a transient
#: (rows x features x 8 bytes), so a million pairs are never built in one go.
PAIR_BLOCK = 100_000

#: Where LightGBM lists its parameters (an unknown ``lgb_params`` key points there).
LIGHTGBM_PARAMETERS = "https://lightgbm.readthedocs.io/en/latest/Parameters.html"


def _questions_key(questions, answers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FITB questions and answers as arrays that compare equal exactly when the
    questions do: (every question's items in a row, the questions' lengths, answers)."""
    lengths = np.array([len(q) for q in questions], np.int64)
    items = (np.concatenate([np.asarray(q, np.int64) for q in questions])
             if lengths.sum() else np.zeros(0, np.int64))
    return items, lengths, np.asarray(answers, np.int64)


def lightgbm_aliases() -> dict[str, str] | None:
    """``{name or alias: parameter}`` of every parameter this LightGBM knows, from its
    own list (the library's ``LGBM_DumpParamAliases``), or None where this LightGBM
    does not give one (``lgb_params`` names are then left to it)."""
    table = _lightgbm_alias_table()
    return None if table is None else dict(table)


@functools.lru_cache(maxsize=1)
def _lightgbm_alias_table() -> dict[str, str] | None:
    # once per process: the library call and its JSON take ~9 ms, and a build asks
    # for every stage check and every spelling of the stage's inputs
    try:
        from lightgbm.basic import _ConfigAliases

        table = _ConfigAliases._get_all_param_aliases()
    except (ImportError, AttributeError):
        return None
    return {alias: name for name, names in table.items() for alias in (name, *names)}


def lightgbm_main_names(params: dict, what: str = "lgb_params ") -> dict:
    """``params`` (LightGBM parameters) with each alias under its parameter's own name
    (``eta`` as ``learning_rate``, ``reg_lambda`` as ``lambda_l2``), in their order;
    names this LightGBM does not list are kept as given.

    LightGBM takes a parameter's own name over an alias of it
    (``{"learning_rate": 0.05, "eta": 0.5}`` trains at 0.05), so an alias in
    ``lgb_params`` was ignored where the model sets that parameter itself. Two keys
    naming one parameter are refused, both named (LightGBM warned and took one).
    ``what`` starts the message.

    >>> lightgbm_main_names({"eta": 0.1, "reg_lambda": 2, "cat_smooth": 5})
    {'learning_rate': 0.1, 'lambda_l2': 2, 'cat_smooth': 5}
    >>> lightgbm_main_names({"num_leaves": 7, "max_leaves": 7})
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: lgb_params num_leaves and max_leaves both set LightGBM's num_leaves: give it once
    """
    aliases = _lightgbm_alias_table() or {}
    out: dict = {}
    given: dict[str, str] = {}
    for key, value in params.items():
        name = aliases.get(key, key)
        if name in given:
            raise InputError(f"{what}{given[name]} and {key} both set LightGBM's {name}: "
                             f"give it once", field=key, value=[given[name], key])
        given[name] = key
        out[name] = value
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def _bucket(count: np.ndarray) -> np.ndarray:
    """Popularity bucket of training-outfit counts: 0, 1, 2-3, 4-7, 8-15, ..."""
    c = np.asarray(count, float)
    return np.where(c <= 0, 0, 1 + np.floor(np.log2(np.maximum(c, 1)))).astype(np.int64)


class CompatibilityModel:
    """Pairwise compatibility (probability two items belong in one outfit).

    Parameters
    ----------
    groups : feature groups (see :data:`recommender.compat.pair_features.GROUPS`)
    negatives : "random", "matched" (popularity-matched), "mixed" (half each), or
        "auto" (fit "random" and "mixed", keep the better on the validation split by
        the mean of validation FITB, cold FITB and hard AUC)
    n_negatives : negatives per positive pair and side
    val_fraction : share of training outfits held out for early stopping
    num_boost_round, early_stopping_rounds, learning_rate, num_leaves,
    min_data_in_leaf : LightGBM settings
    aggregate : how an outfit's pair scores become one score: "mean" (of probabilities),
        "mean_logit", "min", "worst" (the lowest item-mean log-odds: the outfit's
        weakest item), "blend" (mean of "mean_logit" and "worst"), or "auto" (the one
        of :data:`AUTO_AGGREGATES` with the best mean validation AUC, all-swapped and
        one-swapped)
    num_threads : LightGBM threads (training and prediction)
    random_state : seed of the validation split, negatives and LightGBM
    style : dict of :class:`recommender.compat.style.StyleConfig` settings for the
        "style" feature group (None: defaults, seeded by ``random_state``)
    style_folds : cross-fitting folds of the style vectors (training rows only)
    max_train_outfits : at most this many training outfits give the LightGBM rows
        and train the style tower: a seeded sample when there are more (None: all).
        The co-occurrence statistics still count every training outfit. Bounds the
        pair-feature matrix (rows ~ 3 x pairs per outfit x outfits) whatever the
        catalogue size; the default leaves catalogues up to ~100k items (a few
        ten thousand outfits) untouched.
    max_val_outfits : at most this many outfits held out for early stopping and the
        validation metrics (the rest of ``val_fraction`` stays in training)
    model_code_gap : use the gap between numeric model codes as a metadata feature
        (see :class:`recommender.compat.pair_features.PairFeaturizer`)
    graph_dim : size of the co-occurrence graph vectors (0: none; see
        :func:`recommender.compat.pair_features.graph_vectors`)
    lgb_params : further LightGBM parameters (override the defaults above), e.g.
        ``{"feature_fraction": 0.5, "cat_smooth": 50}``; an alias counts as its
        parameter (``eta`` overrides ``learning_rate``), one parameter named twice
        is refused
    fitb_ranker : "auto" (fit a second-stage FITB ranker on questions from the
        validation outfits and keep it for :meth:`score_fitb` when its cross-fitted
        validation FITB, mean of mixed and cold, beats the plain aggregate's) or "off"
        (see :mod:`recommender.compat.ranker`)
    ranker_params : overrides of :data:`RANKER_DEFAULTS`
    context : "auto", "on" or "off" (:data:`CONTEXT_MODES`): fit the outfit context
        model, whose score joins the FITB ranker's candidate features
    context_params : :class:`recommender.compat.context.ContextConfig` settings (seed
        and threads default to ``random_state`` and ``num_threads``)
    context_refit : after validation, fit the outfit context model again on all the
        training outfits (the validation outfits too), as the final statistics are
        recounted on them; the ranker chosen on validation then reads its scores.
        On the MANGO split this raised test FITB from 0.890 to 0.896 (cold 0.739 to
        0.746) and doubles the context model's training time.

    Attributes (after fit or load)
    ------------------------------
    featurizer_ : PairFeaturizer
    booster_ : lightgbm.Booster
    feature_names_ : list of str
    metrics_ : dict (validation metrics)
    feature_importance_ : dict name -> gain
    fitb_ranker_ : FitbRanker or None (None: FITB answers use ``fitb_aggregate_``)
    context_ : OutfitContext or None
    """

    def __init__(self, groups=GROUPS, negatives="auto", n_negatives=2, val_fraction=0.15,
                 num_boost_round=1000, early_stopping_rounds=50, learning_rate=0.05,
                 num_leaves=63, min_data_in_leaf=50, aggregate="auto", num_threads=1,
                 random_state=0, style=None, style_folds=2,
                 max_train_outfits=MAX_TRAIN_OUTFITS, max_val_outfits=MAX_VAL_OUTFITS,
                 model_code_gap=True, graph_dim=0, lgb_params=None, fitb_ranker="auto",
                 ranker_params=None, context="auto", context_params=None,
                 context_refit=True):
        self.groups = groups
        self.negatives = negatives
        self.n_negatives = n_negatives
        self.val_fraction = val_fraction
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.aggregate = aggregate
        self.num_threads = num_threads
        self.random_state = random_state
        self.style = style
        self.style_folds = style_folds
        self.max_train_outfits = max_train_outfits
        self.max_val_outfits = max_val_outfits
        self.model_code_gap = model_code_gap
        self.lgb_params = lgb_params
        self.graph_dim = graph_dim
        self.fitb_ranker = fitb_ranker
        self.ranker_params = ranker_params
        self.context = context
        self.context_params = context_params
        self.context_refit = context_refit

    # -- training ----------------------------------------------------------------------
    def _params(self) -> dict:
        # by main name: an alias beside the model's own setting was ignored by LightGBM
        return {**self._own_params(), **lightgbm_main_names(self.lgb_params or {})}

    def _own_params(self) -> dict:
        """The LightGBM parameters the model sets itself (``lgb_params`` overrides)."""
        return {"objective": "binary", "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
                "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
                "lambda_l2": 1.0, "cat_smooth": 10, "max_cat_to_onehot": 8,
                "num_threads": self.num_threads, "seed": self.random_state,
                "deterministic": True, "force_row_wise": True, "verbosity": -1}

    def _check_lgb_params(self, what: str = "lgb_params ") -> None:
        """InputError naming an ``lgb_params`` key LightGBM does not know (with the
        model's verbosity -1 LightGBM ignored it without a word), a value that is not a
        LightGBM value (a table), or a value of another kind than the model's own
        setting of that parameter (``cat_smooth = "x"`` was a LightGBMError once
        training started), or two keys naming one parameter (``eta`` beside
        ``learning_rate``: :func:`lightgbm_main_names`). Other values' types LightGBM
        checks itself: it does not list them."""
        params = self.lgb_params or {}
        if not isinstance(params, dict):
            raise InputError(f"lgb_params must be a table of LightGBM parameters, got "
                             f"{params!r}", field="lgb_params", value=params)
        aliases = lightgbm_aliases()
        unknown = sorted(set(params) - set(aliases)) if aliases else []
        if unknown:
            raise InputError(f"unknown LightGBM parameter {unknown[0]!r} in lgb_params (see "
                             f"{LIGHTGBM_PARAMETERS})", field="lgb_params", value=unknown[0])
        lightgbm_main_names(params, what)   # one parameter named twice: refused
        own = self._own_params()
        scalar = (bool, int, float, str)
        for key, value in params.items():
            mine = own.get((aliases or {}).get(key, key))
            if mine is not None and not isinstance(mine, (bool, str)):
                check_value(key, value, float, what=what)   # int or float alike
            elif mine is not None:
                check_value(key, value, type(mine), what=what)
            elif not (isinstance(value, scalar) or isinstance(value, (list, tuple))
                      and all(isinstance(v, scalar) for v in value)):
                raise InputError(f"{what}{key} must be a number, a string, true or "
                                 f"false, or a list of them, got {value!r}", field=key,
                                 value=value)

    def fit(self, catalog: pd.DataFrame, train_outfits: pd.DataFrame,
            features: pd.DataFrame | None = None, embeddings: np.ndarray | None = None,
            log=None, trainer=None) -> "CompatibilityModel":
        """Fit on ``train_outfits`` (outfit_id, item_id) over ``catalog`` rows.

        Early stopping uses ``val_fraction`` of the training outfits (split by
        outfit); the saved statistics are then recounted on all training outfits.
        ``trainer`` turns pairs into a booster (default :func:`train_booster`, in
        this process; the Dask build passes ``DaskExecutor.train_booster``).
        """
        self._validate_params()
        log = log or (lambda msg: None)
        prep = self._prepare(catalog, train_outfits, features, embeddings, log)
        if self.negatives == "auto":
            return self._fit_auto(prep, log, trainer)
        return self._fit_prepared(prep, log, trainer)._finalize(prep, log)

    def _validate_params(self) -> None:
        """InputError naming the first setting out of its range or set, before any
        training: ``fit`` calls it, and the compatibility stage before it starts
        (a ``negatives = "bogus"`` was refused an hour into a MANGO build)."""
        for name, low, high in (("val_fraction", 0.0, 1.0),):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low < v < high:
                raise InputError(f"{name} must be a number strictly between {low:g} and "
                                 f"{high:g}, got {v!r}", field=name, value=v)
        for name, least in (("n_negatives", 1), ("num_boost_round", 1), ("num_leaves", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
                raise InputError(f"{name} must be a whole number >= {least}, got {v!r}",
                                 field=name, value=v)
        # an infinity passed ``> 0`` (NaN did not): LightGBM then boosted to NaN scores
        check_value("learning_rate", self.learning_rate, float, above=0)
        if self.negatives not in NEGATIVE_MODES:
            raise InputError(f"unknown negatives mode {self.negatives!r}", field="negatives",
                             value=self.negatives, allowed=NEGATIVE_MODES)
        if self.aggregate not in AGGREGATES:
            raise InputError(f"unknown aggregate {self.aggregate!r}", field="aggregate",
                             value=self.aggregate, allowed=AGGREGATES)
        if self.fitb_ranker not in FITB_RANKER_MODES:
            raise InputError(f"unknown fitb_ranker mode {self.fitb_ranker!r}",
                             field="fitb_ranker", value=self.fitb_ranker,
                             allowed=FITB_RANKER_MODES)
        if self.context not in CONTEXT_MODES:
            raise InputError(f"unknown context mode {self.context!r}", field="context",
                             value=self.context, allowed=CONTEXT_MODES)
        if not isinstance(self.context_refit, (bool, np.bool_)):
            raise InputError(f"context_refit must be true or false, got "
                             f"{self.context_refit!r}", field="context_refit",
                             value=self.context_refit)
        # a misspelt group was refused by the featurizer's fit, after a build's earlier
        # stages had run
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown:
            raise InputError(f"unknown feature group {unknown[0]!r}", field="groups",
                             value=unknown[0], allowed=GROUPS)
        # bad settings of the nested tables fail before any training too
        StyleConfig.from_dict(self._style_config())
        self._context_config()
        self._check_lgb_params()
        self._check_ranker_params()

    def _check_ranker_params(self, what: str = "ranker_params ") -> None:
        """InputError naming a ``ranker_params`` key that is unknown, of the wrong kind
        or out of its range (:data:`RANKER_LEAST`, the objectives the ranker knows, a
        base that is a candidate feature). Each was met only when the ranker was
        cross-fitted, at the end of the stage's validation (on MANGO over an hour into
        a build): ``num_leaves = 1`` a LightGBMError, ``num_boost_round = 0`` a
        ValueError, ``folds = 1`` "the ranker needs at least 2 questions, got 0", and
        ``folds = -2`` cross-fitted on two folds without a word."""
        from recommender.compat.ranker import FitbRanker, candidate_feature_names

        params = self.ranker_params or {}
        unknown = set(params) - set(RANKER_DEFAULTS)
        if unknown:
            raise InputError(f"unknown ranker_params {sorted(unknown)}", field="ranker_params",
                             value=sorted(unknown), allowed=tuple(RANKER_DEFAULTS))
        for key, kind in kinds_of_defaults(RANKER_DEFAULTS).items():
            if kind is not None and key in params:
                check_value(key, params[key], kind, least=RANKER_LEAST.get(key),
                            above=0 if key == "learning_rate" else None, what=what)
        if params.get("objective", "lambdarank") not in FitbRanker.OBJECTIVES:
            raise InputError(f"{what}unknown objective {params['objective']!r}",
                             field="objective", value=params["objective"],
                             allowed=FitbRanker.OBJECTIVES)
        cols = params.get("pair_columns")
        if cols is not None and (not isinstance(cols, (list, tuple)) or not all(
                isinstance(c, str) and c for c in cols)):
            raise InputError(f"{what}pair_columns must be a list of pair-feature names, "
                             f"got {cols!r}", field="pair_columns", value=cols)
        cfg = self._ranker_settings()
        names = candidate_feature_names(cfg["pair_columns"], bool(cfg["history"]))
        if cfg["base"] is not None and cfg["base"] not in names:
            raise InputError(f"{what}base {cfg['base']!r} is not a ranker feature",
                             field="base", value=cfg["base"], allowed=names)

    def _check_pair_columns(self, fz) -> None:
        """InputError naming a ``ranker_params`` ``pair_columns`` entry that is no column
        of the fitted featurizer ``fz``, with the columns it has: the entry was dropped
        without a word and the ranker trained without it. Which columns there are
        depends on ``groups`` and on the data those read (no features table: no shape
        group), so it is known only here, after the featurizer's fit and before the
        pairs and the booster. The default (None: :data:`~recommender.compat.ranker.
        PAIR_COLUMNS`) still keeps those of its columns the model has, as before: a
        model without the style group has no ``style_cos``, and no user asked for it."""
        cols = (self.ranker_params or {}).get("pair_columns")
        unknown = [c for c in cols or () if c not in fz.feature_names_]
        if unknown:
            raise InputError(f"ranker_params pair_columns names {unknown[0]!r}, not a pair "
                             f"feature of this model (groups used: {', '.join(fz.groups_)})",
                             field="pair_columns", value=unknown[0],
                             allowed=fz.feature_names_)

    def _prepare(self, catalog, train_outfits, features, embeddings, log=None
                 ) -> "_Prepared":
        """What every negatives mode shares: the outfit split, statistics and item table.

        Nothing here depends on the negatives, so "auto" computes it once for both
        candidates (the per-item tables of a large catalogue are its memory).
        """
        catalog = catalog.reset_index(drop=True)
        outfits = outfit_index_lists(train_outfits, catalog)
        if len(outfits) < 4:
            raise InputError(f"need at least 4 training outfits of 2+ catalogue items, got "
                             f"{len(outfits)}", field="outfits")
        rng = np.random.default_rng(self.random_state)
        perm = rng.permutation(len(outfits))
        n_val = max(1, int(round(self.val_fraction * len(outfits))))
        if self.max_val_outfits is not None:
            n_val = max(1, min(n_val, int(self.max_val_outfits)))
        val = [outfits[k] for k in sorted(perm[:n_val])]
        fit = [outfits[k] for k in sorted(perm[n_val:])]

        # the outfits that give training rows: all, or a seeded sample (own stream,
        # so an uncapped fit draws exactly what it drew before the cap existed)
        rows_from = training_sample(len(fit), self.max_train_outfits, self.random_state)
        fz = PairFeaturizer(self.groups, style=self._style_config(),
                            style_folds=self.style_folds, style_outfits=rows_from,
                            model_code_gap=self.model_code_gap,
                            graph_dim=self.graph_dim).fit(catalog, features, embeddings, fit)
        self._check_pair_columns(fz)
        items = fz.item_table(catalog, features, embeddings)
        subs = items.codes["subcategory"] if "subcategory" in items.codes else \
            np.zeros(len(catalog), np.int64)
        sampled = fit if rows_from is None else [fit[k] for k in rows_from]
        context = self._fit_context(fz, items, sampled, subs, log or (lambda msg: None))
        return _Prepared(catalog=catalog, features=features, embeddings=embeddings,
                         outfits=outfits, val=val, fit=fit, rows_from=rows_from, fz=fz,
                         items=items, subs=subs, rng_state=rng.bit_generator.state,
                         context=context)

    def _context_config(self):
        from recommender.compat.context import ContextConfig

        return ContextConfig.from_dict({"seed": self.random_state,
                                        "num_threads": self.num_threads,
                                        **(self.context_params or {})})

    def _fit_context(self, fz, items, outfits, subs, log, what="validation"):
        """The outfit context model on ``outfits`` (at validation never the validation
        outfits, whose questions train the FITB ranker), or None (``context``, too few
        outfits)."""
        import time

        from recommender.compat.context import OutfitContext

        n = sum(len(np.unique(o)) >= 2 for o in outfits)
        if self.context == "off" or (self.context == "auto" and n < MIN_CONTEXT_OUTFITS):
            return None
        t0 = time.perf_counter()
        codes, num, n_values = fz.context_inputs(items)
        model = OutfitContext(self._context_config()).fit(codes, n_values, num, outfits, subs)
        trained = (f"{n} outfits" if model.n_outfits_ == n else
                   f"{model.n_outfits_} of {n} outfits (max_outfits)")
        log(f"[compatibility] outfit context model ({what}): {trained}, "
            f"{len(model.weights_)} networks, epochs kept {model.best_epoch_} (of "
            f"{[len(h) for h in model.history_]}), held-out FITB "
            f"{[round(max(h), 3) for h in model.history_]} "
            f"({time.perf_counter() - t0:.0f} s)")
        return model

    def _fit_prepared(self, prep: "_Prepared", log, trainer=None) -> "CompatibilityModel":
        """Pairs of this model's negatives mode, the booster, and its validation metrics."""
        fz, items, subs, fit, val = prep.fz, prep.items, prep.subs, prep.fit, prep.val
        rng = np.random.default_rng()
        rng.bit_generator.state = prep.rng_state  # every candidate draws the same stream
        rows_from = prep.rows_from
        sampled = fit if rows_from is None else [fit[k] for k in rows_from]
        a, b, o, y = make_training_pairs(sampled, subs, fz.stats_.item_count_, rng,
                                         self.negatives, self.n_negatives)
        if rows_from is not None:
            o = rows_from[o]  # outfit numbers in ``fit``: leave-one-out and style folds
        # validation outfits are not in the statistics, as held-out outfits will not be
        va, vb, _, vy = make_training_pairs(val, subs, fz.stats_.item_count_, rng, "random", 1)
        log(f"[compatibility] {len(y)} training pairs ({int(y.sum())} positive) from "
            f"{len(sampled)} of {len(fit)} outfits, {len(vy)} validation pairs from "
            f"{len(val)} outfits, "
            f"{len(fz.feature_names_)} features")
        booster, val_logloss = (trainer or train_booster)(
            self._params(), fz, items, (a, b, o, y), (va, vb, vy),
            num_boost_round=self.num_boost_round,
            early_stopping_rounds=self.early_stopping_rounds)
        counts = {"n_train_pairs": int(len(y)), "n_val_pairs": int(len(vy)),
                  "n_fit_outfits": len(fit), "n_val_outfits": len(val),
                  "n_pair_outfits": len(sampled)}
        del a, b, o, y, va, vb, vy
        self.featurizer_ = fz
        self.booster_ = booster
        self.feature_names_ = list(fz.feature_names_)
        self._set_items(prep.catalog, items=items)
        self.aggregate_ = "mean" if self.aggregate == "auto" else self.aggregate
        self.fitb_aggregate_ = "mean"
        self.fitb_ranker_ = None
        self.context_ = prep.context
        # the validation questions draw from their own stream: settings that change how
        # many training negatives are drawn are then compared on the same questions
        self.metrics_ = self._validation_metrics(
            val, fit, subs, np.random.default_rng([self.random_state, 1]))
        self.metrics_.update({"best_iteration": int(booster.best_iteration or
                                                     booster.current_iteration()),
                              "val_logloss": float(val_logloss), **counts})
        # the ranker reads the validation-time statistics (validation outfits unseen),
        # so its training questions look like held-out ones
        if self.fitb_ranker != "off":
            self.metrics_.update(self._fit_fitb_ranker(log))
        self._val_questions = None
        log(f"[compatibility] validation: " + ", ".join(
            f"{k} {v:.3f}" for k, v in self.metrics_.items() if isinstance(v, float)))
        return self

    def _finalize(self, prep: "_Prepared", log=None) -> "CompatibilityModel":
        """Statistics recounted on all training outfits (the trees, style tower and FITB
        ranker kept); the outfit context model fitted again on them (``context_refit``)."""
        style = self.featurizer_.style_ or self._style_config()
        # the validation-time featurizer and item table are not needed any more: drop
        # them before the final ones are built (two of each at 1M items is gigabytes)
        self.featurizer_ = self.items_ = prep.fz = prep.items = None
        self.featurizer_ = PairFeaturizer(
            self.groups, style=style, style_folds=0,
            model_code_gap=self.model_code_gap, graph_dim=self.graph_dim,
        ).fit(prep.catalog, prep.features, prep.embeddings, prep.outfits)
        if self.featurizer_.feature_names_ != self.feature_names_:
            raise BundleError("feature list changed between validation and final fit")
        self._set_items(prep.catalog, prep.features, prep.embeddings)
        if self.context_ is not None and self.context_refit:
            # all outfits are at least the validation-time ones: never too few here
            self.context_ = self._fit_context(self.featurizer_, self.items_, prep.outfits,
                                              prep.subs, log or (lambda msg: None),
                                              "refit on all")
            self._context_items = None
            self.metrics_["context_refit_outfits"] = self.context_.n_outfits_
        gain = self.booster_.feature_importance("gain")
        self.feature_importance_ = {n: float(g) for n, g in zip(self.feature_names_, gain)}
        return self

    def _fit_auto(self, prep: "_Prepared", log, trainer=None):
        fits = {}
        for mode in AUTO_CANDIDATES:
            params = {k: getattr(self, k) for k in self._param_names()}
            params["negatives"] = mode
            fits[mode] = type(self)(groups=self.groups, **params)._fit_prepared(
                prep, log, trainer)
        score = {m: float(np.mean([f.metrics_.get(k, 0.0) for k in SELECTION_METRICS]))
                 for m, f in fits.items()}
        best = max(score, key=score.get)
        log(f"[compatibility] negatives 'auto': validation score {score}, keeping {best!r}")
        chosen = fits[best]
        auto_validation = {m: {k: f.metrics_.get(k) for k in SELECTION_METRICS}
                           for m, f in fits.items()}
        fits.clear()  # the other candidate's booster and tables go before the final fit
        chosen._finalize(prep, log)
        for k, v in vars(chosen).items():
            if k.endswith("_") or k.startswith("_"):
                setattr(self, k, v)
        self.metrics_ = dict(chosen.metrics_, negatives_chosen=best,
                             auto_validation=auto_validation)
        return self

    def _style_config(self) -> dict:
        cfg = {"seed": self.random_state, "num_threads": self.num_threads}
        cfg.update(self.style or {})
        return cfg

    @staticmethod
    def _param_names():
        return ("negatives", "n_negatives", "val_fraction", "num_boost_round",
                "early_stopping_rounds", "learning_rate", "num_leaves", "min_data_in_leaf",
                "aggregate", "num_threads", "random_state", "style", "style_folds",
                "max_train_outfits", "max_val_outfits", "model_code_gap", "graph_dim",
                "lgb_params", "fitb_ranker", "ranker_params", "context", "context_params",
                "context_refit")

    def _validation_metrics(self, val, fit, subs, rng) -> dict:
        """FITB (mixed and cold) and AUC (all swapped / one swapped) on validation outfits.

        Every item of a validation outfit is blanked once (not one blank per outfit
        as in the test files): several times more questions, so choices made on
        these numbers (negatives, aggregates) are less at the mercy of noise.
        """
        from recommender.evaluation.metrics import fitb_accuracy, fitb_outcomes, roc_auc

        seen = np.zeros(len(subs), bool)
        for o in fit:
            seen[o] = True
        pools = SubPools(subs)
        cold_pools = SubPools(subs, keep=~seen)
        out, fitb_acc, fitb_split = {}, {}, {}
        self._val_questions = {}
        for name, eligible, pp in (("fitb", None, pools), ("fitb_cold", seen, cold_pools)):
            qs, ans, labels = validation_fitb(val, subs, rng, pp, eligible)
            self._val_questions[name] = (qs, ans, labels, seen)
            if qs:
                warm = seen[np.array([a[l] for a, l in zip(ans, labels)], np.int64)]
                for how in FITB_AGGREGATES:
                    scores = self.score_fitb(qs, ans, how)
                    r = fitb_accuracy(scores, np.array(labels), seed=0)
                    fitb_acc.setdefault(how, {})[f"val_{name}"] = r["expected_accuracy"]
                    if name == "fitb":
                        # warm and cold answers apart: validation negatives are colder
                        # than the answers (fewer outfits in the statistics), which
                        # rewards "unseen means wrong"; the split shows it
                        _, e = fitb_outcomes(scores, np.array(labels), 0)
                        fitb_split.setdefault(how, {}).update(
                            val_fitb_warm=float(e[warm].mean()) if warm.any() else float("nan"),
                            val_fitb_cold_answer=(float(e[~warm].mean()) if (~warm).any()
                                                  else float("nan")))
                out[f"n_val_{name}"] = r["n"]
        if fitb_acc:
            # the FITB answer score: mean probability or mean log-odds with the question
            self.fitb_aggregate_ = max(FITB_AGGREGATES,
                                       key=lambda h: np.mean(list(fitb_acc[h].values())))
            out.update(fitb_acc[self.fitb_aggregate_])
            out.update(fitb_split.get(self.fitb_aggregate_, {}))
            out["val_fitb_by_aggregate"] = fitb_acc
        out["fitb_aggregate_chosen"] = self.fitb_aggregate_
        pos, neg, hard = [], [], []
        for o in val:
            # swaps from the subcategory minus the outfit, as the test files draw them:
            # from the whole pool a swap could draw the item back (a "negative" equal
            # to its outfit) or another item of the outfit
            other = [pools.without(int(subs[i]), o) for i in o]
            if not all(len(p) for p in other):
                continue  # an item with no alternative: no all-swapped negative
            swapped = [int(p[rng.integers(len(p))]) for p in other]
            one = list(o)
            k = int(rng.integers(len(o)))
            one[k] = int(other[k][rng.integers(len(other[k]))])
            pos.append(list(o))
            neg.append(swapped)
            hard.append(one)
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        aucs = {}
        for how in (AUTO_AGGREGATES if self.aggregate == "auto" else (self.aggregate_,)):
            sp = self.score_outfits(pos, how)
            aucs[how] = (roc_auc(y, np.r_[sp, self.score_outfits(neg, how)]),
                         roc_auc(y, np.r_[sp, self.score_outfits(hard, how)]))
        if self.aggregate == "auto":
            self.aggregate_ = max(aucs, key=lambda h: np.mean(aucs[h]))
            out["val_auc_by_aggregate"] = {h: {"auc": v[0], "auc_hard": v[1]}
                                           for h, v in aucs.items()}
        out["aggregate_chosen"] = self.aggregate_
        out["val_auc"], out["val_auc_hard"] = aucs[self.aggregate_]
        return out

    def _set_items(self, catalog, features=None, embeddings=None, items=None):
        self.catalog_ids_ = catalog["item_id"].astype(str).tolist()
        self.index_ = {k: i for i, k in enumerate(self.catalog_ids_)}
        self.items_ = items if items is not None else \
            self.featurizer_.item_table(catalog, features, embeddings)
        self._catalog = catalog

    def _check(self):
        if not hasattr(self, "booster_"):
            raise NotFittedError("CompatibilityModel used before fit or load")

    # -- scoring -----------------------------------------------------------------------
    def _predict(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return self.booster_.predict(X, num_threads=self.num_threads)

    def _indices(self, idx, name) -> np.ndarray:
        idx = np.asarray(idx, np.int64).ravel()
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.items_)):
            raise InputError(f"{name} holds catalogue row indices outside 0..{len(self.items_) - 1}",
                             field=name)
        return idx

    def score_pairs(self, idx_a, idx_b) -> np.ndarray:
        """Compatibility probability of each pair of catalogue rows (vectorised)."""
        self._check()
        a = self._indices(idx_a, "idx_a")
        b = self._indices(idx_b, "idx_b")
        if len(a) != len(b):
            raise InputError(f"idx_a and idx_b differ in length ({len(a)} vs {len(b)})",
                             field="idx_b")
        if len(a) <= PAIR_BLOCK:
            return self._predict(self.featurizer_.transform(self.items_, a, self.items_, b))
        return np.concatenate([
            self._predict(self.featurizer_.transform(self.items_, a[s:s + PAIR_BLOCK],
                                                     self.items_, b[s:s + PAIR_BLOCK]))
            for s in range(0, len(a), PAIR_BLOCK)])

    def score_pairs_rows(self, rows_a: pd.DataFrame, emb_a, idx_b) -> np.ndarray:
        """Score items NOT in the catalogue (feature rows) against catalogue rows.

        ``rows_a`` holds the catalogue fields and, if the model uses them, the
        feature columns of each new item; ``emb_a`` its embeddings (or None when the
        model uses none). Pairs are (rows_a[k], idx_b[k]); with one row and many
        ``idx_b`` the row is broadcast.
        """
        self._check()
        b = self._indices(idx_b, "idx_b")
        tab = self.featurizer_.item_table(rows_a, None, emb_a,
                                          stat_idx=np.full(len(rows_a), -1))
        ia = np.zeros(len(b), np.int64) if len(rows_a) == 1 else np.arange(len(rows_a))
        if len(ia) != len(b):
            raise InputError("rows_a must have one row or as many rows as idx_b", field="rows_a")
        return self._predict(self.featurizer_.transform(tab, ia, self.items_, b))

    def _aggregate(self, p: np.ndarray, group: np.ndarray, n: int, slot_a=None, slot_b=None,
                   how: str | None = None) -> np.ndarray:
        """One score per outfit from its pair probabilities ``p`` (``group`` = outfit).

        ``slot_a``/``slot_b`` number each pair's two items across all outfits; the
        "worst" and "blend" aggregates need them (an item's mean log-odds with the
        rest of its outfit: one misfit drags the outfit down instead of being
        averaged away among the pairs that do not involve it).
        """
        how = how or self.aggregate_
        out = np.full(n, np.nan)
        if how == "min":
            out = np.full(n, np.inf)
            np.minimum.at(out, group, p)
            out[np.isinf(out)] = np.nan
            return out
        logit = np.log(np.clip(p, 1e-9, 1)) - np.log(np.clip(1 - p, 1e-9, 1))
        v = p if how == "mean" else logit
        c = np.bincount(group, minlength=n)
        mean = np.where(c > 0, np.bincount(group, v, n) / np.maximum(c, 1), np.nan)
        if how == "mean":
            return mean
        if how == "mean_logit":
            return _sigmoid(mean)
        if slot_a is None:
            raise InputError(f"aggregate {how!r} needs the items of each pair", field="aggregate")
        m = int(max(slot_a.max(), slot_b.max())) + 1 if len(slot_a) else 0
        slots = np.r_[slot_a, slot_b]
        s = np.bincount(slots, np.r_[logit, logit], m)
        k = np.bincount(slots, minlength=m)
        item_mean = s / np.maximum(k, 1)
        owner = np.full(m, -1, np.int64)
        owner[slots] = np.r_[group, group]
        worst = np.full(n, np.inf)
        used = k > 0
        np.minimum.at(worst, owner[used], item_mean[used])
        worst[np.isinf(worst)] = np.nan
        # back to 0..1 (monotone, so rankings and AUC are unchanged)
        return _sigmoid(worst if how == "worst" else 0.5 * (mean + worst))

    @staticmethod
    def _outfit_pairs(outfits):
        """All pairs of each outfit: (a, b, outfit, slot_a, slot_b) arrays."""
        a, b, g, sa, sb = [], [], [], [], []
        off = 0
        for k, o in enumerate(outfits):
            o = np.asarray(o, np.int64)
            i, j = np.triu_indices(len(o), 1)
            a.append(o[i])
            b.append(o[j])
            g.append(np.full(len(i), k))
            sa.append(off + i)
            sb.append(off + j)
            off += len(o)
        if not a:
            z = np.zeros(0, np.int64)
            return z, z, z, z, z
        return tuple(np.concatenate(x) for x in (a, b, g, sa, sb))

    def score_outfits(self, outfits: list[list[int]], how: str | None = None) -> np.ndarray:
        """One score per outfit (catalogue rows) from all its pairs, in one batch."""
        self._check()
        a, b, g, sa, sb = self._outfit_pairs(outfits)
        if not len(a):
            return np.full(len(outfits), np.nan)
        p = self.score_pairs(a, b)
        return self._aggregate(p, g, len(outfits), sa, sb, how)

    def score_outfit(self, idx) -> tuple[float, np.ndarray]:
        """(outfit score, symmetric pair-score matrix with NaN diagonal)."""
        idx = self._indices(idx, "idx")
        n = len(idx)
        mat = np.full((n, n), np.nan)
        if n < 2:
            return float("nan"), mat
        i, j = np.triu_indices(n, 1)
        p = self.score_pairs(idx[i], idx[j])
        mat[i, j] = p
        mat[j, i] = p
        return float(self._aggregate(p, np.zeros(len(p), np.int64), 1, i, j)[0]), mat

    def score_fitb(self, questions: list[list[int]], answers: list[list[int]],
                   how: str | None = None) -> np.ndarray:
        """(Q, A) scores: each answer's mean pair score (or log-odds) with the question,
        or the second-stage ranker's score.

        ``how``: "mean", "mean_logit", "ranker" (default: the ranker when validation
        kept one, else the aggregate chosen on validation) or "context" (the outfit
        context model's score alone, when the model has one).
        """
        self._check()
        ranker = getattr(self, "fitb_ranker_", None)
        how = how or ("ranker" if ranker is not None else getattr(self, "fitb_aggregate_",
                                                                  "mean"))
        if how not in FITB_AGGREGATES + ("ranker", "context"):
            raise InputError(f"unknown FITB aggregate {how!r}", field="how", value=how,
                             allowed=FITB_AGGREGATES + ("ranker", "context"))
        if how == "context":
            if getattr(self, "context_", None) is None:
                raise InputError("this model has no outfit context model (context='off', "
                                 "or too few training outfits)", field="how", value=how,
                                 allowed=FITB_AGGREGATES)
            if not len(questions):
                return np.zeros((0, 0))
            return self._context_scores(questions, answers).astype(float)
        if how == "ranker":
            if ranker is None:
                raise InputError("this model has no FITB ranker (validation did not keep "
                                 "one, or fitb_ranker='off')", field="how", value=how,
                                 allowed=FITB_AGGREGATES)
            if not len(questions):
                return np.zeros((0, 0))
            F, names, A = self._fitb_candidate_features(questions, answers)
            if names != ranker.feature_names_:
                raise BundleError("FITB ranker features do not match the pair model's")
            return ranker.predict(F, A)
        from recommender.evaluation.metrics import fitb_pairs

        a, b, g, A = fitb_pairs(questions, answers)
        if not len(a):
            return np.zeros((len(questions), A))
        p = self.score_pairs(a, b)
        if how == "mean_logit":
            p = np.log(np.clip(p, 1e-9, 1)) - np.log(np.clip(1 - p, 1e-9, 1))
        s = np.bincount(g, p, len(questions) * A) / np.maximum(
            np.bincount(g, minlength=len(questions) * A), 1)
        return s.reshape(len(questions), A)

    # -- second-stage FITB ranker ------------------------------------------------------
    def _ranker_settings(self) -> dict:
        return {**RANKER_DEFAULTS, **(self.ranker_params or {})}

    def _fitb_candidate_features(self, questions, answers):
        """(F, names, n_answers): :func:`recommender.compat.ranker.candidate_features`
        of every answer of every question, from one pass of the pair model."""
        from recommender.compat.ranker import PAIR_COLUMNS, candidate_features
        from recommender.evaluation.metrics import fitb_pairs

        a, b, g, A = fitb_pairs(questions, answers)
        pos = {n: k for k, n in enumerate(self.feature_names_)}
        cfg = self._ranker_settings()
        keep = [c for c in (cfg["pair_columns"] or PAIR_COLUMNS) if c in pos]
        p = np.empty(len(a))
        cols = {c: np.empty(len(a), np.float32) for c in keep}
        for s in range(0, len(a), PAIR_BLOCK):
            X = self.featurizer_.transform(self.items_, a[s:s + PAIR_BLOCK], self.items_,
                                           b[s:s + PAIR_BLOCK])
            p[s:s + PAIR_BLOCK] = self._predict(X)
            for c in keep:
                cols[c][s:s + PAIR_BLOCK] = X[:, pos[c]]
        counts = self.featurizer_.stats_.item_count_
        cand = np.asarray(answers, np.int64).reshape(-1) if len(answers) else \
            np.zeros(0, np.int64)
        extra = None
        if getattr(self, "context_", None) is not None and len(questions):
            extra = {k: v.reshape(-1) for k, v in zip(
                ("context", "context_reverse"), self._context_scores(questions, answers,
                                                                     reverse=True))}
        return (*candidate_features(
            p, cols, g, len(questions), A, np.log1p(counts[cand].astype(float)),
            np.array([len(q) for q in questions]),
            history=bool(cfg["history"]), extra=extra), A)

    def _context_scores(self, questions, answers, reverse=False):
        """(Q, A) outfit context scores, and with ``reverse`` also the reverse scores
        (:meth:`OutfitContext.score_reverse`) as a pair; the items' content is read once
        per item table."""
        if getattr(self, "_context_items", None) is not self.items_:
            codes, num, _ = self.featurizer_.context_inputs(self.items_)
            self.context_.set_items(codes, num)
            self._context_items = self.items_
        subs = self.items_.codes.get("subcategory", np.zeros(len(self.items_), np.int64))
        # the forward scores of the last questions are kept: ``mixmatch evaluate`` asks
        # for them twice, as a ranker feature and for its "context only" row (on the
        # MANGO fitb.jsonl 0.25 s of networks run again for the same figures)
        key = _questions_key(questions, answers)
        memo = getattr(self, "_context_memo", None)
        if (memo is not None and memo[0] is self.context_ and memo[1] is self.items_
                and all(np.array_equal(m, k) for m, k in zip(memo[2], key))):
            forward = memo[3].copy()
        else:
            forward = self.context_.score(questions, answers, subs)
            self._context_memo = (self.context_, self.items_, key, forward.copy())
        if not reverse:
            return forward
        return forward, self.context_.score_reverse(questions, answers, subs)

    def _fit_fitb_ranker(self, log) -> dict:
        """Cross-fit the ranker on the validation questions; keep it if it beats the aggregate.

        Questions: the mixed and cold validation FITB questions together (cold ones
        teach it what content is worth when history is silent), folds by outfit.
        The comparison is the mean of mixed and cold FITB, as for ``fitb_aggregate_``.
        """
        from recommender.compat.ranker import (FitbRanker, cross_fit_scores, pool_questions,
                                               question_folds)
        from recommender.evaluation.metrics import fitb_outcomes

        sets = {k: v for k, v in (self._val_questions or {}).items() if v[0]}
        if "fitb" not in sets:
            return {"fitb_ranker_chosen": False}
        cfg = self._ranker_settings()
        params = {k: cfg[k] for k in ("objective", "num_boost_round", "learning_rate",
                                      "num_leaves", "min_data_in_leaf", "base")}
        params.update(num_threads=self.num_threads, random_state=self.random_state)
        qs, ans, labels, which = pool_questions(sets)
        if len(labels) < 4 * int(cfg["folds"]):
            return {"fitb_ranker_chosen": False}
        F, names, A = self._fitb_candidate_features(qs, ans)
        folds = question_folds(qs, ans, labels, int(cfg["folds"]), self.random_state)
        extra = None
        if int(cfg["extra_draws"]) > 0:
            subs = self.items_.codes.get("subcategory", np.zeros(len(self.items_), np.int64))
            xq, xa, xl, xo = redraw_negatives(
                qs, ans, labels, which == "fitb_cold", subs, sets["fitb"][3],
                int(cfg["extra_draws"]), np.random.default_rng([self.random_state, 2]))
            if xq:
                Fx, _, _ = self._fitb_candidate_features(xq, xa)
                extra = (Fx, xl, folds[xo])
        oof = cross_fit_scores(F, labels, A, names, folds, params, extra)
        plain = self.score_fitb(qs, ans, self.fitb_aggregate_)
        _, e_rank = fitb_outcomes(oof, labels, 0)
        _, e_plain = fitb_outcomes(plain, labels, 0)
        out = {}
        e_ctx = None
        if "context" in names:  # the context model's score, already in the features
            _, e_ctx = fitb_outcomes(F[:, names.index("context")].reshape(-1, A), labels, 0)
        for name in sets:
            m = which == name
            out[f"val_{name}_ranker_cv"] = float(e_rank[m].mean())
            out[f"val_{name}_plain"] = float(e_plain[m].mean())
            if e_ctx is not None:
                out[f"val_{name}_context"] = float(e_ctx[m].mean())
        gain = float(np.mean([out[f"val_{n}_ranker_cv"] - out[f"val_{n}_plain"]
                              for n in sets]))
        keep = gain > 0
        log(f"[compatibility] FITB ranker (cross-fitted on {len(labels)} validation "
            f"questions): " + ", ".join(f"{k} {v:.3f}" for k, v in out.items())
            + f" -> {'kept' if keep else 'not kept'}")
        out["fitb_ranker_gain"] = gain
        out["fitb_ranker_chosen"] = keep
        if keep:
            if extra is not None:
                F, labels = np.vstack([F, extra[0]]), np.r_[labels, extra[1]]
            self.fitb_ranker_ = FitbRanker(**params).fit(F, labels, A, names)
            # the headline validation figures are then the ranker's (out-of-fold)
            for name in sets:
                out[f"val_{name}"] = out[f"val_{name}_ranker_cv"]
        return out

    # -- explanations ------------------------------------------------------------------
    def explain_pair(self, i: int, j: int, max_reasons: int = 3) -> list[str]:
        """Short human reasons why catalogue rows ``i`` and ``j`` go together (or not)."""
        from recommender.compat.explain import pair_reasons

        self._check()
        i, j = (int(x) for x in self._indices([i, j], "idx"))
        return pair_reasons(self, i, j)[:max_reasons]

    # -- persistence -------------------------------------------------------------------
    def save(self, models_dir: str | os.PathLike) -> list[Path]:
        """Write compat.txt (LightGBM text), compat.json (manifest), cooc.npz,
        compat_ranker.txt when validation kept a FITB ranker, and compat_context.npz
        when the model has an outfit context model (stale ones are removed)."""
        self._check()
        from recommender.bundle import atomic_files, file_hash, json_hash

        d = Path(models_dir)
        ranker = getattr(self, "fitb_ranker_", None)
        context = getattr(self, "context_", None)
        meta = {"format": COMPAT_FORMAT,
                "params": {k: getattr(self, k) for k in self._param_names()},
                "feature_names": self.feature_names_,
                "feature_groups": dict(zip(self.feature_names_,
                                           self.featurizer_.feature_groups_)),
                "groups": list(self.featurizer_.groups_),
                "aggregate": self.aggregate_,
                "fitb_aggregate": self.fitb_aggregate_,
                "fitb_ranker": None if ranker is None else {"file": RANKER_FILE,
                                                            **ranker.to_json()},
                "context": None if context is None else {"file": CONTEXT_FILE,
                                                         **context.to_json()},
                "featurizer": self.featurizer_.to_json(),
                "catalog_ids_hash": json_hash(self.catalog_ids_),
                "n_items": len(self.catalog_ids_),
                "metrics": self.metrics_,
                "feature_importance": dict(sorted(self.feature_importance_.items(),
                                                  key=lambda kv: -kv[1]))}
        written = [d / "compat.txt", d / "cooc.npz"] + (
            [d / RANKER_FILE] if ranker is not None else []) + (
            [d / CONTEXT_FILE] if context is not None else []) + [d / "compat.json"]
        # Temporary files renamed into place only once all are written, compat.json
        # last: a failure or a kill half way leaves the previous model whole (a server
        # watching the bundle could otherwise load a new booster with the old
        # compat.json, or a truncated file).
        with atomic_files(*written) as tmps:
            tmp = dict(zip((p.name for p in written), tmps))
            self.booster_.save_model(str(tmp["compat.txt"]))
            if ranker is not None:
                ranker.save(tmp[RANKER_FILE])
            np.savez_compressed(tmp["cooc.npz"], **self.featurizer_.to_arrays())
            if context is not None:
                np.savez_compressed(tmp[CONTEXT_FILE], **context.to_arrays())
            # their hashes: load refuses a file cut short by a copy before parsing it
            meta["files"] = {p.name: file_hash(t) for p, t in zip(written[:-1], tmps)}
            tmp["compat.json"].write_text(json.dumps(meta, indent=2, default=float))
        # stale ones go once the new compat.json, which does not name them, is in place
        if ranker is None:
            (d / RANKER_FILE).unlink(missing_ok=True)
        if context is None:
            (d / CONTEXT_FILE).unlink(missing_ok=True)
        return written

    @classmethod
    def load(cls, bundle, num_threads: int = 1) -> "CompatibilityModel":
        """Load from a bundle (path or :class:`recommender.bundle.Bundle`).

        Raises BundleError when files are missing, the feature list of the text
        model differs from compat.json, or the catalogue changed since training.
        """
        from recommender.bundle import Bundle, file_hash, json_hash
        from recommender.compat.ranker import read_booster

        b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        d = b.path("models")
        for f in ("compat.txt", "compat.json", "cooc.npz"):
            if not (d / f).is_file():
                raise BundleError(f"bundle {b.root} has no compatibility model "
                                  f"(models/{f} missing): run the compatibility stage")
        try:
            meta = json.loads((d / "compat.json").read_text())
        except (ValueError, OSError) as e:
            raise BundleError(f"cannot read {d / 'compat.json'} ({e}): an interrupted "
                              "copy? retrain the compatibility stage") from None
        if not isinstance(meta, dict) or meta.get("format") != COMPAT_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise BundleError(f"models/compat.json has format {found!r}; this mixmatch "
                              f"reads {COMPAT_FORMAT!r}: retrain the compatibility stage")
        # files saved with their hashes (an interrupted copy, or a file from another
        # save, is refused before any is parsed); older ones: the checks below
        for name, h in (meta.get("files") or {}).items():
            if name in (RANKER_FILE, CONTEXT_FILE) and not (d / name).is_file():
                continue   # missing: reported by name below
            if file_hash(d / name) != h:
                raise BundleError(f"models/{name} does not match compat.json (cut short, "
                                  "or from another save): retrain the compatibility stage")
        booster = read_booster(d / "compat.txt", "compatibility model")
        names = meta.get("feature_names")
        if booster.feature_name() != names:
            raise BundleError("compatibility model feature list does not match compat.json: "
                              f"model has {len(booster.feature_name())} features, manifest "
                              f"{len(names or [])}")
        try:
            # opened here: np.load leaves its own handle open when the zip is bad
            with open(d / "cooc.npz", "rb") as f, np.load(f, allow_pickle=False) as arrs:
                fz = PairFeaturizer.from_saved(meta["featurizer"], arrs)
        except _UNREADABLE_NPZ as e:
            raise BundleError(f"cannot read {d / 'cooc.npz'} ({e.__class__.__name__}: "
                              f"{e}): retrain the compatibility stage") from None
        if fz.feature_names_ != names:
            raise BundleError("compat.json feature list does not match its featurizer")
        catalog = pd.read_parquet(b.path("catalog.parquet"))
        ids = catalog["item_id"].astype(str).tolist()
        if json_hash(ids) != meta.get("catalog_ids_hash"):
            raise BundleError("the catalogue changed since the compatibility model was "
                              "trained: retrain it (mixmatch train --stage compatibility)")
        features = embeddings = None
        needs_features = bool(fz.pixel_colours_ or fz.shape_columns_ or
                              fz.cat_columns_.get("attributes") or fz.conf_columns_)
        if needs_features:
            fp = b.path("features", "features.parquet")
            if not fp.is_file():
                raise BundleError("the compatibility model uses image features but the "
                                  "bundle has no features/features.parquet")
            import pyarrow.parquet as pq

            have = set(pq.read_schema(fp).names)
            features = pd.read_parquet(fp, columns=[c for c in fz.feature_columns()
                                                    if c in have])
        if fz.has_embedding_:
            ep = b.path("features", "embeddings.npy")
            if not ep.is_file():
                raise BundleError("the compatibility model uses embeddings but the bundle "
                                  "has no features/embeddings.npy")
            embeddings = np.load(ep, mmap_mode="r")
        self = cls(groups=tuple(meta["featurizer"]["requested_groups"]))
        for k, v in meta.get("params", {}).items():
            setattr(self, k, v)
        self.num_threads = num_threads
        self.aggregate_ = meta.get("aggregate") or (
            self.aggregate if self.aggregate in AGGREGATES[1:] else "mean")
        self.fitb_aggregate_ = meta.get("fitb_aggregate", "mean")
        if self.fitb_aggregate_ not in FITB_AGGREGATES:
            raise BundleError(f"compat.json names an unknown FITB aggregate "
                              f"{self.fitb_aggregate_!r}")
        if self.aggregate_ not in AGGREGATES[1:]:
            raise BundleError(f"compat.json names an unknown aggregate {self.aggregate_!r}")
        self.booster_ = booster
        self.featurizer_ = fz
        self.feature_names_ = list(names)
        # bundles from before the ranker have no entry: plain aggregate, as they were built
        self.fitb_ranker_ = None
        rmeta = meta.get("fitb_ranker")
        if rmeta:
            from recommender.compat.ranker import FitbRanker

            if rmeta.get("file") != RANKER_FILE or not (d / RANKER_FILE).is_file():
                raise BundleError(f"compat.json names a FITB ranker but models/{RANKER_FILE} "
                                  "is missing: retrain the compatibility stage")
            self.fitb_ranker_ = FitbRanker.load(d / RANKER_FILE, rmeta, num_threads)
        self.context_ = None
        cmeta = meta.get("context")
        if cmeta:
            from recommender.compat.context import OutfitContext

            if cmeta.get("file") != CONTEXT_FILE or not (d / CONTEXT_FILE).is_file():
                raise BundleError(f"compat.json names an outfit context model but models/"
                                  f"{CONTEXT_FILE} is missing: retrain the compatibility stage")
            try:
                with open(d / CONTEXT_FILE, "rb") as f, \
                        np.load(f, allow_pickle=False) as arrs:
                    self.context_ = OutfitContext.from_saved(cmeta, arrs)
            except _UNREADABLE_NPZ as e:
                raise BundleError(f"cannot read {d / CONTEXT_FILE} ({e.__class__.__name__}: "
                                  f"{e}): retrain the compatibility stage") from None
            self.context_.config.num_threads = num_threads
        self.metrics_ = meta.get("metrics", {})
        self.feature_importance_ = meta.get("feature_importance", {})
        self._set_items(catalog, features, embeddings)
        return self

    def index_of(self, item_id: str) -> int:
        """Catalogue row of an item id (NotFoundError naming the id)."""
        try:
            return self.index_[str(item_id)]
        except KeyError:
            raise NotFoundError(f"unknown item id {item_id!r}", field="item_id",
                                value=item_id) from None


@dataclass
class _Prepared:
    """The shared part of a fit (:meth:`CompatibilityModel._prepare`)."""
    catalog: pd.DataFrame
    features: pd.DataFrame | None
    embeddings: np.ndarray | None
    outfits: list            # every training outfit (catalogue rows)
    val: list                # the early-stopping / selection outfits
    fit: list                # the rest: statistics and training pairs
    rows_from: np.ndarray | None
    fz: PairFeaturizer       # fitted on ``fit``
    items: object            # fz.item_table(...)
    subs: np.ndarray
    rng_state: dict          # the stream after the split, where each candidate starts
    context: object = None   # OutfitContext fitted on the training-row outfits, or None


def train_booster(params: dict, fz: PairFeaturizer, items, train: tuple, val: tuple, *,
                  num_boost_round: int, early_stopping_rounds: int):
    """LightGBM on pair features, early-stopped on the validation pairs, in this process.

    ``train`` = (a, b, outfit, y) and ``val`` = (a, b, y) are catalogue-row pairs
    of ``items``; training rows leave their own outfit out of the co-occurrence
    features. Returns ``(booster, best validation logloss)``.
    """
    import lightgbm as lgb

    a, b, o, y = train
    va, vb, vy = val
    X = transform_blocks(fz, items, a, b, o)
    Xv = transform_blocks(fz, items, va, vb)
    cats = [k for k, c in enumerate(fz.categorical_) if c]
    dtrain = lgb.Dataset(X, y, feature_name=fz.feature_names_, categorical_feature=cats,
                         free_raw_data=True)
    dval = lgb.Dataset(Xv, vy, reference=dtrain)
    evals: dict = {}
    booster = lgb.train(params, dtrain, num_boost_round=num_boost_round,
                        valid_sets=[dval], valid_names=["val"],
                        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False),
                                   lgb.record_evaluation(evals)])
    return booster, float(min(evals["val"]["binary_logloss"]))


def validation_fitb(outfits, subs, rng, pools: "SubPools", seen=None):
    """FITB questions blanking every item of each outfit (in a shuffled order).

    Three negatives of the blank's subcategory from ``pools`` minus the outfit;
    with ``seen``, only unseen items are blanked (cold questions; pass pools of
    unseen items). The answer is first (label 0). Returns (questions, answers, labels).
    """
    qs, ans, labels = [], [], []
    for o in outfits:
        cand = [i for i in o if seen is None or not seen[i]]
        rng.shuffle(cand)
        for blank in cand:
            pool = pools.without(int(subs[blank]), o)
            if len(pool) >= 3:
                negs = list(pool[rng.choice(len(pool), 3, replace=False)])
                qs.append([i for i in o if i != blank])
                ans.append([blank] + negs)
                labels.append(0)
    return qs, ans, labels


def redraw_negatives(questions, answers, labels, cold, subs, seen, n_draws: int, rng):
    """``n_draws`` new sets of negatives for each FITB question (same outfit, same blank).

    Negatives are drawn as :func:`validation_fitb` draws them: three of the blank's
    subcategory, not in the outfit; from unseen items where ``cold[k]``. More
    negatives per positive for training the ranker, without new outfits. Returns
    (questions, answers, labels, index of the source question); the answer is first.
    """
    subs = np.asarray(subs, np.int64)
    pools = {False: SubPools(subs), True: SubPools(subs, keep=~np.asarray(seen, bool))}
    qs, ans, src = [], [], []
    for _ in range(n_draws):
        for k, (q, a, l) in enumerate(zip(questions, answers, labels)):
            blank = int(a[l])
            pool = pools[bool(cold[k])].without(int(subs[blank]), list(q) + [blank])
            if len(pool) >= 3:
                negs = pool[rng.choice(len(pool), 3, replace=False)]
                qs.append(list(q))
                ans.append([blank] + [int(x) for x in negs])
                src.append(k)
    return qs, ans, np.zeros(len(qs), np.int64), np.array(src, np.int64)


def transform_blocks(fz: PairFeaturizer, items, a, b, outfit=None, block: int = PAIR_BLOCK
                     ) -> np.ndarray:
    """``fz.transform(items, a, items, b, outfit=outfit)`` filled in blocks of rows.

    The same float32 matrix (every feature is a function of its own row), without
    the whole-matrix float64 columns that one call builds first.
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    if len(a) <= block:
        return fz.transform(items, a, items, b, outfit=outfit)
    X = np.empty((len(a), len(fz.feature_names_)), np.float32)
    for s in range(0, len(a), block):
        X[s:s + block] = fz.transform(items, a[s:s + block], items, b[s:s + block],
                                      outfit=None if outfit is None else outfit[s:s + block])
    return X


def training_sample(n: int, cap: int | None, seed: int) -> np.ndarray | None:
    """Sorted seeded sample of ``cap`` of ``range(n)``, or None when ``n <= cap``.

    >>> training_sample(5, 10, 0) is None
    True
    >>> s = training_sample(1000, 10, 0)
    >>> len(s), len(set(s.tolist())), bool((s[1:] > s[:-1]).all())
    (10, 10, True)
    """
    if cap is None or n <= int(cap):
        return None
    if int(cap) < 4:
        raise InputError(f"max_train_outfits must be at least 4, got {cap}",
                         field="max_train_outfits", value=cap)
    rng = np.random.default_rng([int(seed), 0x5A3])
    return np.sort(rng.choice(n, int(cap), replace=False))


class SubPools:
    """Catalogue rows of each subcategory code, ascending; a pool minus a few rows as a view.

    ``without(sub, rows)`` stands for ``[c for c in pool if c not in rows]`` (same
    order, same index -> row) without copying the pool, whose size grows with the
    catalogue while ``rows`` (an outfit) does not.

    >>> p = SubPools(np.array([0, 1, 0, 0, 1]))
    >>> v = p.without(0, [2, 4])
    >>> len(v), v[np.array([0, 1])].tolist()
    (2, [0, 3])
    """

    def __init__(self, subs: np.ndarray, keep: np.ndarray | None = None):
        subs = np.asarray(subs, np.int64)
        rows = np.arange(len(subs)) if keep is None else np.flatnonzero(keep)
        order = rows[np.argsort(subs[rows], kind="stable")]
        keys, starts = np.unique(subs[order], return_index=True)
        self._pools = dict(zip(keys.tolist(), np.split(order, starts[1:])))
        self._empty = np.zeros(0, np.int64)

    def pool(self, sub: int) -> np.ndarray:
        return self._pools.get(int(sub), self._empty)

    def without(self, sub: int, rows) -> "_RowsView":
        pool = self.pool(sub)
        r = np.unique(np.asarray(rows, np.int64))
        k = np.searchsorted(pool, r)
        hit = k < len(pool)
        hit[hit] = pool[k[hit]] == r[hit]
        return _RowsView(pool, k[hit])


class _RowsView:
    __slots__ = ("pool", "skip")

    def __init__(self, pool: np.ndarray, skip: np.ndarray):
        self.pool, self.skip = pool, skip  # skip: ascending positions left out

    def __len__(self) -> int:
        return len(self.pool) - len(self.skip)

    def __getitem__(self, k):
        k = np.asarray(k, np.int64)
        if k.size and (k.min() < 0 or k.max() >= len(self)):
            raise IndexError(k)
        # the j-th kept position p satisfies p - #(skip <= p) == j: add skips one by one
        p = k.copy()
        for s in self.skip:
            p = p + (s <= p)
        return self.pool[p]


def outfit_index_lists(outfits: pd.DataFrame, catalog: pd.DataFrame) -> list[np.ndarray]:
    """Outfits as arrays of catalogue rows; unknown ids dropped, outfits under 2 items too."""
    index = pd.Series(np.arange(len(catalog)), index=catalog["item_id"].astype(str))
    df = outfits[["outfit_id", "item_id"]].astype(str)
    df = df[df["item_id"].isin(index.index)]
    rows = index.loc[df["item_id"]].to_numpy()
    out = []
    for _, g in pd.Series(rows).groupby(df["outfit_id"].to_numpy(), sort=False):
        u = np.unique(g.to_numpy())
        if len(u) >= 2:
            out.append(u)
    return out


def make_training_pairs(outfits, subs, counts, rng, mode="mixed", n_neg=1):
    """Positive pairs of each outfit and same-subcategory swaps of either side.

    Returns (a, b, outfit, label) arrays. ``counts`` are the items' training-outfit
    counts (used to match negatives' popularity to the replaced item's count
    without its own outfit).
    """
    pa, pb, po = outfit_pairs(outfits)
    if not len(pa):
        return pa, pb, po, np.zeros(0)
    member = {(k, int(x)) for k, o in enumerate(outfits) for x in o}
    subs = np.asarray(subs, np.int64)
    bucket = _bucket(counts)
    order = np.argsort(subs, kind="stable")
    sub_sorted = subs[order]
    key2 = subs * 64 + bucket
    order2 = np.argsort(key2, kind="stable")
    key_sorted = key2[order2]

    def draw(items, matched):
        """A same-subcategory replacement for each item (popularity-matched if asked)."""
        out = np.empty(len(items), np.int64)
        s = subs[items]
        lo, hi = np.searchsorted(sub_sorted, s, "left"), np.searchsorted(sub_sorted, s, "right")
        out[:] = order[lo + (rng.random(len(items)) * (hi - lo)).astype(np.int64)]
        if matched.any():
            want = s * 64 + _bucket(np.maximum(counts[items] - 1, 0))
            l2 = np.searchsorted(key_sorted, want, "left")
            h2 = np.searchsorted(key_sorted, want, "right")
            ok = matched & (h2 - l2 > 1)
            pick = order2[np.minimum(l2 + (rng.random(len(items)) * (h2 - l2)).astype(np.int64),
                                     len(order2) - 1)]
            out[ok] = pick[ok]
        return out

    na, nb, no = [], [], []
    for _ in range(n_neg):
        for keep, repl in ((pa, pb), (pb, pa)):
            if mode == "random":
                matched = np.zeros(len(repl), bool)
            elif mode == "matched":
                matched = np.ones(len(repl), bool)
            else:
                matched = rng.random(len(repl)) < 0.5
            new = draw(repl, matched)
            ok = np.array([(k, int(x)) not in member for k, x in zip(po, new)], bool)
            na.append(keep[ok])
            nb.append(new[ok])
            no.append(po[ok])
    na, nb, no = np.concatenate(na), np.concatenate(nb), np.concatenate(no)
    a = np.concatenate([pa, na])
    b = np.concatenate([pb, nb])
    o = np.concatenate([po, no])
    y = np.concatenate([np.ones(len(pa)), np.zeros(len(na))])
    return a, b, o, y
