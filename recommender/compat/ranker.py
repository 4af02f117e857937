"""Second-stage FITB ranker: question-level features of each candidate, LightGBM lambdarank.

The pair model scores one candidate against one question item at a time; the plain
FITB score averages those pair scores (probability or log-odds). Averaging throws
away how the scores are spread (one strong partner vs. lukewarm agreement with all),
how the candidate compares with the other candidates of the same question, and how
much history stands behind each number. The ranker sees, for each candidate:

* mean / min / max (and std) of its pair probabilities and log-odds with the
  question items, and the same summaries of a few raw pair columns of the pair
  model's features (co-occurrence and sibling counts, style and embedding cosines);
* its own history (log training-outfit count), the number of question items;
* when the pair model has one, the outfit context model's score of the candidate
  (:mod:`recommender.compat.context`: the question's items read together), and its
  reverse score (how well the question's items fit with the candidate among them);
* for the main summaries, the gap to the best candidate of the question and the
  rank within the question (what the plain aggregate uses implicitly, made explicit).

It is trained on FITB questions built from held-out outfits (the validation split of
the training outfits, whose items' statistics never counted those outfits, as for
the test files), with a lambdarank objective grouped by question. Whether it is
used at all is decided by cross-fitting on those questions (folds by outfit):
:class:`recommender.compat.model.CompatibilityModel` keeps it only when its
out-of-fold FITB beats the plain aggregate's on the same questions.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> # 200 questions of 4 candidates; the answer (slot 0) has the largest feature 0
>>> F = rng.normal(size=(200, 4, 3)); F[:, 0, 0] += 2.0
>>> r = FitbRanker(num_boost_round=30, min_data_in_leaf=5).fit(
...     F.reshape(-1, 3), np.zeros(200, int), 4, ["x", "y", "z"])
>>> s = r.predict(F.reshape(-1, 3), 4)
>>> bool((s.argmax(axis=1) == 0).mean() > 0.8)
True
"""
from __future__ import annotations

import numpy as np

from features.exceptions import BundleError, InputError, NotFittedError

RANKER_FORMAT = "mixmatch-fitb-ranker/1"
#: Raw pair-feature columns summarised per candidate by default (those the pair model
#: has); each describes the pair, not one side of it, so the pair's canonical side
#: order is moot. The model-code gap, season and colour-name columns joined the
#: history and style ones on validation (benchmarks/compat_fitb_ranker.py).
PAIR_COLUMNS = ("cooc_pair_count", "cooc_pair_norm", "sib_pair_count", "sib_pair_norm",
                "cooc_two_hop_norm", "sib_two_hop_norm", "style_cos", "emb_cos",
                "model_code_gap", "model_code_gap_low", "same_season", "pmi_season",
                "same_colour_name", "pmi_colour")
#: Candidate summaries also given as gap-to-best and rank within their question.
RELATIVE = ("p_mean", "p_min", "p_max", "logit_mean", "logit_min", "style_cos_mean",
            "style_cos_min", "cooc_pair_count_max", "sib_pair_count_max", "context",
            "context_reverse")


def read_booster(path, what: str):
    """A LightGBM text model from ``path``; BundleError naming ``what`` when it is
    missing, cut short or unreadable.

    LightGBM 4.7 aborts or crashes the whole process on most truncated text models
    (an error thrown inside its parallel tree parser), which no ``except`` can catch
    and which takes a serving worker down. Every model file ends with its parameters
    block (``end of parameters``), so a file cut anywhere before that is refused
    before LightGBM reads it."""
    import os

    import lightgbm as lgb

    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            tail = f.read()
    except OSError as e:
        raise BundleError(f"cannot read the {what} {path}: {e}") from None
    if b"end of parameters" not in tail:
        raise BundleError(f"the {what} {path} is cut short (no parameters block at its "
                          f"end): an interrupted save or copy; retrain or copy it again")
    try:
        return lgb.Booster(model_file=str(path))
    except lgb.basic.LightGBMError as e:
        raise BundleError(f"cannot read the {what} {path}: {e}") from None


def _logit(p):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def candidate_features(p: np.ndarray, pair_cols: dict[str, np.ndarray], group: np.ndarray,
                       n_questions: int, n_answers: int, own_log_count: np.ndarray,
                       n_question_items: np.ndarray, history: bool = True,
                       extra: dict[str, np.ndarray] | None = None
                       ) -> tuple[np.ndarray, list[str]]:
    """One feature row per (question, candidate) from the candidate's pairs.

    Parameters
    ----------
    p : (P,) pair probabilities of the pair model
    pair_cols : name -> (P,) raw pair-feature columns, each summarised (mean, min,
        max); symmetric ones only (see :data:`PAIR_COLUMNS`)
    group : (P,) ``question * n_answers + candidate position`` of each pair (as
        :func:`recommender.evaluation.metrics.fitb_pairs` numbers them)
    own_log_count : (Q * n_answers,) each candidate's log1p training-outfit count
    n_question_items : (Q,) items in each question
    history : include the candidate's own history (its log count)
    extra : name -> (Q * n_answers,) further per-candidate scores taken as they are
        (the outfit context model's "context" and "context_reverse"), in ``group``
        order

    Returns
    -------
    F : (Q * n_answers, k) float32, rows in ``group`` order; names : list of k str

    >>> F, names = candidate_features(np.array([0.9, 0.5, 0.2, 0.2]), {},
    ...     np.array([0, 0, 1, 1]), 1, 2, np.zeros(2), np.array([2]))
    >>> f0, f1 = (dict(zip(names, row.tolist())) for row in F)
    >>> round(f0["p_min"], 2), f1["p_mean_rank"]
    (0.5, 1.0)
    """
    n = n_questions * n_answers
    group = np.asarray(group, np.int64)
    cnt = np.bincount(group, minlength=n).astype(float)
    k = np.maximum(cnt, 1)
    cols, names = [], []

    def summarise(name, x, spread):
        x = np.asarray(x, float)
        mean = np.bincount(group, x, n) / k
        lo = np.full(n, np.inf)
        hi = np.full(n, -np.inf)
        np.minimum.at(lo, group, x)
        np.maximum.at(hi, group, x)
        empty = cnt == 0
        lo[empty] = hi[empty] = 0.0
        out = {f"{name}_mean": mean, f"{name}_min": lo, f"{name}_max": hi}
        if spread:
            var = np.bincount(group, x * x, n) / k - mean ** 2
            out[f"{name}_std"] = np.sqrt(np.maximum(var, 0))
        for key, v in out.items():
            cols.append(v)
            names.append(key)

    summarise("p", p, True)
    summarise("logit", _logit(p), True)
    for c, x in pair_cols.items():
        summarise(c, x, False)
    if history:
        cols.append(np.asarray(own_log_count, float))
        names.append("own_log_count")
    cols.append(np.repeat(np.asarray(n_question_items, float), n_answers))
    names.append("n_question_items")
    for name, v in (extra or {}).items():
        cols.append(np.asarray(v, float).reshape(n))
        names.append(name)
    # within-question comparisons: the trees see each candidate on its own row
    by = dict(zip(names, cols))
    for r in RELATIVE:
        if r not in by:
            continue
        v = by[r].reshape(n_questions, n_answers)
        cols.append((v - v.max(axis=1, keepdims=True)).ravel())
        names.append(f"{r}_gap")
        # rank 0 = best; ties share the better rank
        cols.append((v[:, None, :] > v[:, :, None]).sum(axis=2).astype(float).ravel())
        names.append(f"{r}_rank")
    return np.column_stack(cols).astype(np.float32), names


class FitbRanker:
    """LightGBM ranker over :func:`candidate_features` rows (one group per question).

    Parameters
    ----------
    objective : "lambdarank" (grouped by question) or "binary" (answer vs. not)
    num_boost_round, learning_rate, num_leaves, min_data_in_leaf : LightGBM settings
        (fixed rounds, no early stopping: cross-fitting measures the whole recipe)
    base : None, or the name of a feature column the boosting starts from (its value
        is the initial score, the trees learn corrections to it), e.g. "logit_mean":
        the plain aggregate; few rounds then stay close to it rather than relearning it
    num_threads : LightGBM threads
    random_state : LightGBM seed

    Attributes
    ----------
    booster_ : lightgbm.Booster
    feature_names_ : list of str
    """

    OBJECTIVES = ("lambdarank", "binary")

    def __init__(self, objective="lambdarank", num_boost_round=200, learning_rate=0.05,
                 num_leaves=15, min_data_in_leaf=40, base=None, num_threads=1,
                 random_state=0):
        self.objective = objective
        self.num_boost_round = num_boost_round
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.base = base
        self.num_threads = num_threads
        self.random_state = random_state

    def _params(self) -> dict:
        p = {"objective": self.objective, "learning_rate": self.learning_rate,
             "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
             "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
             "lambda_l2": 1.0, "num_threads": self.num_threads, "seed": self.random_state,
             "deterministic": True, "force_row_wise": True, "verbosity": -1}
        if self.objective == "lambdarank":
            p["eval_at"] = [1]
        return p

    def fit(self, F: np.ndarray, labels: np.ndarray, n_answers: int,
            feature_names: list[str]) -> "FitbRanker":
        """Fit on ``F`` (Q * n_answers rows, question-major) with the answer index per question."""
        import lightgbm as lgb

        if self.objective not in self.OBJECTIVES:
            raise InputError(f"unknown ranker objective {self.objective!r}", field="objective",
                             value=self.objective, allowed=self.OBJECTIVES)
        F = np.asarray(F, np.float32)
        labels = np.asarray(labels, np.int64)
        q = len(labels)
        if F.shape != (q * n_answers, len(feature_names)):
            raise InputError(f"F must be ({q} x {n_answers}, {len(feature_names)}), got "
                             f"{F.shape}", field="F")
        if q < 2:
            raise InputError(f"the ranker needs at least 2 questions, got {q}", field="labels")
        if self.base is not None and self.base not in feature_names:
            raise InputError(f"ranker base {self.base!r} is not a feature", field="base",
                             value=self.base, allowed=tuple(feature_names))
        y = np.zeros((q, n_answers))
        y[np.arange(q), labels] = 1
        init = None if self.base is None else F[:, list(feature_names).index(self.base)]
        ds = lgb.Dataset(F, y.ravel(), feature_name=list(feature_names), init_score=init,
                         free_raw_data=True)
        if self.objective == "lambdarank":
            ds.set_group(np.full(q, n_answers))
        self.booster_ = lgb.train(self._params(), ds, num_boost_round=self.num_boost_round)
        self.feature_names_ = list(feature_names)
        return self

    def predict(self, F: np.ndarray, n_answers: int) -> np.ndarray:
        """(Q, n_answers) scores (higher = more likely the answer)."""
        if not hasattr(self, "booster_"):
            raise NotFittedError("FitbRanker used before fit or load")
        F = np.asarray(F, np.float32)
        if F.ndim != 2 or F.shape[1] != len(self.feature_names_):
            raise InputError(f"F has {F.shape[-1]} columns, the ranker {len(self.feature_names_)}",
                             field="F")
        if len(F) == 0:
            return np.zeros((0, n_answers))
        s = self.booster_.predict(F, num_threads=self.num_threads, raw_score=True)
        if self.base is not None:
            s = s + F[:, self.feature_names_.index(self.base)]
        return s.reshape(-1, n_answers)

    def to_json(self) -> dict:
        return {"format": RANKER_FORMAT, "feature_names": self.feature_names_,
                "params": {k: getattr(self, k) for k in (
                    "objective", "num_boost_round", "learning_rate", "num_leaves",
                    "min_data_in_leaf", "base", "random_state")}}

    def save(self, path) -> None:
        """Write the LightGBM text model (the manifest entry is :meth:`to_json`)."""
        self.booster_.save_model(str(path))

    @classmethod
    def load(cls, path, meta: dict, num_threads: int = 1) -> "FitbRanker":
        """Load a text model; BundleError when it does not match its manifest entry."""
        if meta.get("format") != RANKER_FORMAT:
            raise BundleError(f"unknown FITB ranker format {meta.get('format')!r} "
                              f"(expected {RANKER_FORMAT!r})")
        booster = read_booster(path, "FITB ranker")
        if booster.feature_name() != meta.get("feature_names"):
            raise BundleError("FITB ranker feature list does not match compat.json")
        self = cls(num_threads=num_threads, **meta.get("params", {}))
        self.booster_ = booster
        self.feature_names_ = list(meta["feature_names"])
        return self


def pool_questions(sets: dict) -> tuple[list, list, np.ndarray, np.ndarray]:
    """Questions of several FITB sets as one: ``sets`` = {name: (questions, answers,
    labels, ...)}; returns (questions, answers, labels, set name of each question).

    >>> pool_questions({"a": ([[1]], [[2, 3]], [0], None), "b": ([[4]], [[5, 6]], [1], None)})
    ([[1], [4]], [[2, 3], [5, 6]], array([0, 1]), array(['a', 'b'], dtype='<U1'))
    """
    qs, ans, labels, which = [], [], [], []
    for name, (q, a, l, *_) in sets.items():
        qs += q
        ans += a
        labels += l
        which += [name] * len(q)
    return qs, ans, np.array(labels, np.int64), np.array(which)


def candidate_feature_names(pair_columns=None, history: bool = True) -> list[str]:
    """Every feature :func:`candidate_features` can give with these ranker settings
    (the outfit context scores included): what a ranker ``base`` may name. The pair
    model may lack some pair columns; those are then left out at fit.

    >>> names = candidate_feature_names(["style_cos"], history=False)
    >>> "logit_mean" in names, "style_cos_max" in names, "own_log_count" in names
    (True, True, False)
    """
    cols = PAIR_COLUMNS if pair_columns is None else pair_columns
    one = np.zeros(1)
    return candidate_features(one, {c: one for c in cols}, np.zeros(1, np.int64), 1, 1, one,
                              np.ones(1), history=history,
                              extra={"context": one, "context_reverse": one})[1]


def question_folds(questions, answers, labels, n_folds: int, seed: int) -> np.ndarray:
    """Fold of each question, questions from one outfit always in the same fold.

    An outfit is recognised by its items (the question plus the true answer), so
    the blanks of one validation outfit never train the ranker that scores another
    blank of the same outfit.

    >>> question_folds([[1, 2], [1, 3], [7, 8]], [[3, 9], [2, 9], [5, 6]], [0, 0, 0], 2, 0)[:2]
    array([1, 1])
    """
    keys = {}
    ids = np.empty(len(labels), np.int64)
    for k, (q, a, l) in enumerate(zip(questions, answers, labels)):
        key = tuple(sorted(int(x) for x in list(q) + [a[l]]))
        ids[k] = keys.setdefault(key, len(keys))
    fold_of = np.random.default_rng([int(seed), 0xF17B]).permutation(len(keys)) % n_folds
    return fold_of[ids]


def cross_fit_scores(F: np.ndarray, labels: np.ndarray, n_answers: int, names: list[str],
                     folds: np.ndarray, params: dict, extra=None) -> np.ndarray:
    """Out-of-fold (Q, n_answers) ranker scores: each fold scored by a ranker fitted on the rest.

    ``extra`` = (F, labels, folds) of further training-only questions (e.g. the same
    outfits with other negatives): a fold's ranker also learns from those of the
    other folds; they are never scored.
    """
    labels = np.asarray(labels, np.int64)
    out = np.zeros((len(labels), n_answers))
    F3 = F.reshape(len(labels), n_answers, -1)
    if extra is not None:
        Fx, lx, fx = extra
        Fx3 = np.asarray(Fx).reshape(len(lx), n_answers, -1)
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        Ftr, ltr = F3[tr].reshape(-1, F.shape[1]), labels[tr]
        if extra is not None:
            mx = fx != f
            Ftr = np.vstack([Ftr, Fx3[mx].reshape(-1, F.shape[1])])
            ltr = np.r_[ltr, np.asarray(lx, np.int64)[mx]]
        r = FitbRanker(**params).fit(Ftr, ltr, n_answers, names)
        out[te] = r.predict(F3[te].reshape(-1, F.shape[1]), n_answers)
    return out
