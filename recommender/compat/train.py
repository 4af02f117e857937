"""The "compatibility" stage: train the pairwise model on the bundle's training outfits.

Reads ``catalog.parquet``, ``eval/train_outfits.parquet`` (written by the split
stage, so held-out outfits never reach training) and, when present,
``features/features.parquet`` and ``features/embeddings.npy``. Writes
``models/compat.txt``, ``models/compat.json``, ``models/cooc.npz`` (and
``models/compat_ranker.txt`` when validation keeps the FITB ranker,
``models/compat_context.npz`` when the outfit context model is fitted), and records
the validation metrics and the held-out FITB/AUC in the manifest.

Stage settings (``ctx.config["stages"]["compatibility"]``) override the model's
constructor arguments, e.g. ``{"negatives": "matched", "num_threads": 2}``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.exceptions import BundleError, InputError, MeantOtherwiseThen
from features.files import read_bundle_file
from features.settings import (ONE_NAME, canonical_settings, check_settings,
                               kinds_of_defaults, parameter_defaults, parameter_kinds,
                               said_of_stage, same_setting, spelled_since)

OUTPUTS = ["models/compat.txt", "models/compat.json", "models/cooc.npz"]
#: Smaller, faster settings for tests and smoke builds (``quick``).
QUICK = {"num_boost_round": 80, "num_leaves": 15, "min_data_in_leaf": 10,
         "learning_rate": 0.1, "early_stopping_rounds": 20}


#: The style tower of the stage (StyleConfig fields): wider than the class default. On
#: the MANGO validation split (training outfits only) it moved FITB 0.877->0.880,
#: cold FITB 0.682->0.686 and hard AUC 0.897->0.899 for ~1.7x the fit's CPU time.
STYLE = {"dim": 32, "hidden": 128, "epochs": 20, "patience": 3}


#: The outfit context model of the stage (ContextConfig fields): its three networks,
#: fitted twice (validation, then refit on all training outfits), are most of the
#: stage's time on MANGO, and torch gains from a second thread there. On the MANGO
#: split (seed 0) the stage took 2,121 s with it (the two fits 830 s and 953 s; user
#: CPU 4,001 s, peak RSS 1.7 GB) against about 200 s without, and moved test FITB
#: 0.874 -> 0.901 and cold FITB 0.704 -> 0.746 (validation, cross-fitted, before the
#: refit: 0.892 -> 0.901 and 0.708 -> 0.741).
CONTEXT = {"num_threads": 2}


def model_settings(config: dict, quick: bool = False) -> dict:
    """CompatibilityModel keyword arguments from a build config."""
    settings = _stage_base(config, quick)
    settings.update(stage_settings(config))
    return settings


def _stage_base(config: dict, quick: bool = False) -> dict:
    """The CompatibilityModel keyword arguments the stage sets where its table is
    silent (the seed, the wider style tower, ``quick``'s smaller booster)."""
    settings = {"random_state": int(config.get("seed", 0)), "num_threads": 1,
                "style": dict(STYLE), "context_params": dict(CONTEXT)}
    if quick or config.get("quick"):
        settings.update(QUICK)
    return settings


def recorded_settings(ctx) -> dict:
    """:func:`model_settings` as the stage's inputs record them: the stage's own
    settings, and its table with one spelling for each setting
    (:func:`features.settings.canonical_settings`) merged over them, so that
    ``learning_rate = 1`` or ``1.0`` and a key stated at the value the model uses
    without it (``negatives = "auto"``, ``ranker_params = {folds = 5}``,
    ``style.lr`` at the style tower's, ``lgb_params`` at the model's own LightGBM
    parameters) do not refit the model. ``lgb_params`` keys are recorded under their
    LightGBM names (``eta`` as ``learning_rate``, as the model trains them:
    :func:`recommender.compat.model.lightgbm_main_names`). A table already spelled so
    is recorded as :func:`model_settings` always was.

    Nested tables replace the stage's whole (``style = {dim = 16}`` trains the class's
    other style settings, not :data:`STYLE`'s), so each is compared with what the
    model runs with inside it: the class defaults under the model's seed and threads.

    Spelled as before aliases were one name (:func:`features.settings.settings_spelled`),
    it raises :class:`~features.exceptions.MeantOtherwiseThen` where an alias set a
    parameter the model sets itself to another value: LightGBM ignored it then.
    """
    from recommender.compat.context import ContextConfig
    from recommender.compat.model import (RANKER_DEFAULTS, CompatibilityModel,
                                          lightgbm_main_names)
    from recommender.compat.style import StyleConfig

    base = _stage_base(ctx.config)
    table = stage_settings(ctx.config)
    merged = {**base, **table}
    own = CompatibilityModel(**merged)._own_params()
    if "lgb_params" in table:
        if spelled_since(ONE_NAME):
            table["lgb_params"] = lightgbm_main_names(table["lgb_params"])
        else:
            _ignored_then(table["lgb_params"], own)
    run = {"seed": merged["random_state"], "num_threads": merged["num_threads"]}
    nested = {"style": {**parameter_defaults(StyleConfig), **run},
              "context_params": {**parameter_defaults(ContextConfig), **run},
              "ranker_params": dict(RANKER_DEFAULTS), "lgb_params": own}
    defaults = {**parameter_defaults(CompatibilityModel), **base}
    return {**base, **canonical_settings(table, defaults, nested=nested,
                                         keep=ctx.source_defaults("compatibility"))}


def _ignored_then(lgb_params: dict, own: dict) -> None:
    """MeantOtherwiseThen naming an ``lgb_params`` alias of a parameter the model sets
    itself (``own``) to another value: before aliases were read as their parameters
    LightGBM took the model's own and ignored it, so a model fitted then on these
    settings is not what they fit now."""
    from recommender.compat.model import lightgbm_aliases

    aliases = lightgbm_aliases() or {}
    for key, value in lgb_params.items():
        name = aliases.get(key, key)
        if name != key and name in own and not same_setting(value, own[name]):
            raise MeantOtherwiseThen(f"lgb_params {key} = {value!r} was ignored then "
                                     f"(LightGBM took the model's {name} = {own[name]!r})")


def stage_settings(config: dict) -> dict:
    """The ``[stages.compatibility]`` table of a build config; InputError naming a key
    that is not a CompatibilityModel parameter (it was a TypeError traceback from the
    constructor) or a value of the wrong kind (a LightGBM traceback), before the stage
    starts (``stage_inputs`` reads the settings). Its nested tables are checked the
    same way, by their own names (``[stages.compatibility.context_params] epocs``):
    :func:`check_nested`."""
    from recommender.compat.model import CompatibilityModel

    table = config.get("stages", {}).get("compatibility", {})
    # the nested settings are tables (style = "x" was a ValueError from dict.update)
    kinds = {**parameter_kinds(CompatibilityModel), **dict.fromkeys(NESTED, dict)}
    table = check_settings("compatibility", table, kinds)
    check_nested(table)
    with said_of_stage("compatibility"):
        # ranges and modes too (negatives = "bogus", val_fraction = 2.0), which fit
        # checks only once the stage has started
        CompatibilityModel(**table)._validate_params()
    return table


#: The stage's nested tables (CompatibilityModel parameters that take a table).
NESTED = ("style", "context_params", "ranker_params", "lgb_params")


def check_nested(table: dict) -> None:
    """InputError naming the first bad key of a nested table of ``[stages.compatibility]``
    by its path (``[stages.compatibility.context_params] epocs``), as the stage's own
    keys are named: an unknown key with the allowed ones, a value of the wrong kind or
    out of its range. A misspelt key there was silently ignored (style) or refused
    only when the stage fitted, after the earlier stages had run (an hour on MANGO);
    ``members = "three"`` was a ValueError traceback. Names and kinds come from the
    config dataclasses (StyleConfig, ContextConfig) and RANKER_DEFAULTS, ranges from
    their ``validate``; ``lgb_params`` names from LightGBM's own list of parameters
    and aliases (the kinds of those the model sets itself: LightGBM does not list
    its types)."""
    from recommender.compat.context import ContextConfig
    from recommender.compat.model import (LIGHTGBM_PARAMETERS, RANKER_DEFAULTS,
                                          CompatibilityModel, lightgbm_aliases)
    from recommender.compat.style import StyleConfig

    for key, cls in (("style", StyleConfig), ("context_params", ContextConfig)):
        if key in table:
            where = f"compatibility.{key}"
            settings = check_settings(where, table[key], parameter_kinds(cls))
            with said_of_stage(where):
                cls(**settings).validate(what="")
    if "ranker_params" in table:
        check_settings("compatibility.ranker_params", table["ranker_params"],
                       kinds_of_defaults(RANKER_DEFAULTS))
        with said_of_stage("compatibility.ranker_params"):   # ranges (folds = 1)
            CompatibilityModel(ranker_params=table["ranker_params"])._check_ranker_params(
                what="")
    if "lgb_params" in table:
        aliases = lightgbm_aliases()
        unknown = sorted(set(table["lgb_params"]) - set(aliases)) if aliases else []
        if unknown:
            # LightGBM's list is some 300 names and aliases: a link, not the list
            raise InputError(f"unknown [stages.compatibility.lgb_params] setting "
                             f"{unknown[0]!r} (not a LightGBM parameter or alias: see "
                             f"{LIGHTGBM_PARAMETERS})",
                             field="stages.compatibility.lgb_params", value=unknown[0])
        with said_of_stage("compatibility.lgb_params"):
            CompatibilityModel(lgb_params=table["lgb_params"])._check_lgb_params(what="")


def load_inputs(b):
    """(catalog, training outfits, features or None, embeddings or None) of a bundle."""
    cp, tp = b.path("catalog.parquet"), b.path("eval", "train_outfits.parquet")
    if not cp.is_file():
        raise BundleError(f"bundle {b.root} has no catalog.parquet: run the ingest stage")
    if not tp.is_file():
        raise BundleError(f"bundle {b.root} has no eval/train_outfits.parquet: run the split "
                          "stage first (the model trains on training outfits only)")
    # a file cut short is named as the bundle's damage, not an Arrow traceback
    catalog = read_bundle_file(cp, pd.read_parquet)
    train = read_bundle_file(tp, pd.read_parquet).astype(str)
    features = embeddings = None
    fp, ep = b.path("features", "features.parquet"), b.path("features", "embeddings.npy")
    if fp.is_file():
        features = read_bundle_file(fp, pd.read_parquet)
        if "item_id" in features.columns and not np.array_equal(
                features["item_id"].astype(str).to_numpy(),
                catalog["item_id"].astype(str).to_numpy()):
            raise BundleError("features/features.parquet is not row-aligned with "
                              "catalog.parquet: re-run the features stage")
    if ep.is_file():
        embeddings = read_bundle_file(ep, np.load)
        if len(embeddings) != len(catalog):
            raise BundleError(f"features/embeddings.npy has {len(embeddings)} rows for "
                              f"{len(catalog)} catalogue items: re-run the features stage")
    return catalog, train, features, embeddings


#: Bump when the saved model's format or the training code changes what a bundle
#: holds: a bundle trained by older code is then retrained, not kept as "up to date"
#: and refused at load.
#: 3 (main): scale changes; 4: model-level (sibling) co-occurrence, model-code gaps,
#: optional graph vectors, two negatives per positive, a wider style tower; 5: value-level
#: co-occurrence tables out of fold for training rows (exact leave-one-out leaked labels);
#: 6: the second-stage FITB ranker (models/compat_ranker.txt when validation keeps it);
#: 7: the outfit context model (models/compat_context.npz), a feature of that ranker;
#: 8: the context model refitted on all training outfits, its reverse score a ranker
#: feature.
TRAIN_VERSION = 8


def check_config(ctx) -> None:
    """Checked before any stage of a build starts (recommender.pipeline)."""
    model_settings(ctx.config)


def stage_inputs(ctx) -> dict:
    from recommender.bundle import file_hash

    b = ctx.bundle
    deps = {}
    for rel in ("catalog.parquet", "eval/train_outfits.parquet", "features/features.parquet",
                "features/embeddings.npy"):
        p = b.path(rel)
        deps[rel] = file_hash(p) if p.is_file() else None
    deps["settings"] = recorded_settings(ctx)
    deps["version"] = TRAIN_VERSION
    return deps


def run_stage(ctx) -> dict:
    """Fit, save, and score the bundle's held-out evaluation files."""
    from recommender.compat.model import CompatibilityModel
    from recommender.evaluation.evaluate import (EVAL_FILE_NAMES, compat_metrics,
                                                 fitb_metrics, index_compat, index_fitb)
    from recommender.evaluation.make_eval import FITB_ALL_FILE, read_compat, read_fitb

    b = ctx.bundle
    catalog, train, features, embeddings = load_inputs(b)
    settings = model_settings(ctx.config)
    ctx.log(f"[compatibility] features table: {'yes' if features is not None else 'no'}, "
            f"embeddings: {'yes' if embeddings is not None else 'no'}")
    ex = getattr(ctx, "executor", None)  # the Dask build trains on the cluster
    model = CompatibilityModel(**settings).fit(catalog, train, features, embeddings, log=ctx.log,
                                               trainer=ex.train_booster if ex else None)
    metrics = {k: v for k, v in model.metrics_.items()}
    # held-out scores, for the manifest (never used to choose anything)
    index = model.index_
    seen = model.featurizer_.stats_.item_count_ > 0
    # fitb_all.jsonl (every blank of every held-out outfit): the less noisy FITB figure
    for key, name in dict(EVAL_FILE_NAMES, fitb_all=FITB_ALL_FILE).items():
        p = b.path("eval", name)
        if not p.is_file():
            continue
        if key.startswith("fitb"):
            data = index_fitb(read_fitb(p), index)
            if not len(data["labels"]):  # nothing held out (--holdout 0), or no question
                continue
            r = fitb_metrics(model, data, seen)
            metrics[f"test_{key}"] = r["fitb_accuracy"]
            if model.fitb_ranker_ is not None:
                # the plain aggregate beside the ranker, to show what the ranker changed
                from recommender.evaluation.metrics import fitb_outcomes

                plain = model.score_fitb(data["questions"], data["answers"],
                                         model.fitb_aggregate_)
                metrics[f"test_{key}_plain"] = float(
                    fitb_outcomes(plain, data["labels"], 0)[0].mean())
        else:
            data = index_compat(read_compat(p), index)
            if not len(data["labels"]):
                continue
            r = compat_metrics(model, data)
            metrics[f"test_{key}_auc"] = r["compat_auc"]
    model.metrics_ = metrics
    written = model.save(b.path("models"))
    ctx.log("[compatibility] " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                                           if isinstance(v, float)))
    metrics["groups"] = list(model.featurizer_.groups_)
    metrics["n_features"] = len(model.feature_names_)
    # the ranker file exists only when validation kept a ranker
    return {"outputs": OUTPUTS + [f"models/{p.name}" for p in written
                                  if f"models/{p.name}" not in OUTPUTS],
            "metrics": metrics}
