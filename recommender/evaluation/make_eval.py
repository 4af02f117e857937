"""Held-out outfits and the Polyvore-protocol evaluation files (the "split" stage).

The outfits are split by outfit (never by item row), ``test_fraction`` held out
with a seed, and these files are written from the held-out outfits (the first four
are the Polyvore protocol's):

``fitb.jsonl``
    One question per held-out outfit: one item blanked, three negatives of the same
    fine category (catalogue ``subcategory``) drawn at random from the catalogue,
    the four answers shuffled. ``{"outfit_id", "question": [ids], "blank_position":
    k, "answers": [4 ids], "label": i}``.
``fitb_cold.jsonl``
    The same, but the blank and its three negatives never appear in the training
    outfits (new arrivals: co-occurrence and popularity know nothing about them).
    Outfits without such an item give no question.
``compatibility.tsv``
    ``label<TAB>space-separated ids``: every held-out outfit (1), and a negative
    with every item swapped for another of the same subcategory (0).
``compatibility_hard.tsv``
    The same with ONE item swapped: the negative differs from a real outfit in a
    single slot.
``fitb_all.jsonl``
    A question for *every* item of every held-out outfit (three negatives each, as
    in ``fitb.jsonl``): on MANGO 6,983 questions against 1,255, the file to compare
    two models on. Questions of one outfit share its items, so they are not
    independent and the error shrinks by less than the square root of the count.

With ``test_fraction = 0`` nothing is held out: ``train_outfits.parquet`` holds every
outfit and the evaluation files are empty. That is the bundle to serve (its models and
graph learn from all the stylists' outfits) or to score on outfits from elsewhere
(``mixmatch build --holdout 0``); its own files then measure nothing.

Each file draws from its own seeded random stream, so changing how one is made
does not change the others. Questions whose blank has fewer than three possible
negatives are skipped and counted in ``split.json``.

Examples
--------
>>> import pandas as pd
>>> cat = pd.DataFrame({"item_id": list("abcdefgh"), "category": ["top"] * 4 + ["bottom"] * 4,
...                     "subcategory": ["Shirt"] * 4 + ["Jeans"] * 4})
>>> outfits = pd.DataFrame({"outfit_id": ["1", "1", "2", "2"], "item_id": list("aebf")})
>>> ev = make_eval(outfits, cat, seed=0, test_fraction=0.5)
>>> len(ev.train_outfits), len(ev.test_outfits), len(ev.fitb), len(ev.compatibility)
(2, 2, 1, 2)
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from features.exceptions import InputError, SchemaError
from recommender.bundle import read_bundle_file

N_ANSWERS = 4
#: Bump when the split writes other files, so existing bundles write them too (the
#: split itself is unchanged, so the stages after it keep their results).
#: 2: fitb_all.jsonl.
SPLIT_VERSION = 2
#: Every blank of every held-out outfit (not a protocol file; see the module doc).
FITB_ALL_FILE = "fitb_all.jsonl"
EVAL_FILES = ("train_outfits.parquet", "test_outfits.parquet", "fitb.jsonl",
              "fitb_cold.jsonl", "compatibility.tsv", "compatibility_hard.tsv",
              FITB_ALL_FILE, "split.json")


@dataclasses.dataclass
class EvalSet:
    """The split and the evaluation files, in memory."""

    train_outfits: pd.DataFrame
    test_outfits: pd.DataFrame
    fitb: list[dict]
    fitb_cold: list[dict]
    compatibility: list[tuple[int, list[str]]]
    compatibility_hard: list[tuple[int, list[str]]]
    info: dict
    fitb_all: list[dict] = dataclasses.field(default_factory=list)


# -- reading and writing -----------------------------------------------------------
def write_fitb(questions: list[dict], path: str | os.PathLike) -> None:
    """Write FITB questions as JSON lines."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for q in questions:
            f.write(json.dumps({k: q[k] for k in ("outfit_id", "question", "blank_position",
                                                  "answers", "label")}) + "\n")


def _utf8_lines(path: str | os.PathLike, field: str) -> io.StringIO:
    """The file's lines, read as UTF-8; any other bytes are a SchemaError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return io.StringIO(f.read())
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path}: not UTF-8 text (byte {exc.start})", field=field) from exc


def read_fitb(path: str | os.PathLike) -> list[dict]:
    """Read a FITB JSONL file; a malformed line raises SchemaError naming the line.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "f.jsonl")
    >>> write_fitb([{"outfit_id": "1", "question": ["a"], "blank_position": 1,
    ...              "answers": ["b", "c", "d", "e"], "label": 0}], p)
    >>> read_fitb(p)[0]["answers"]
    ['b', 'c', 'd', 'e']
    """
    out = []
    n_answers = first_line = None
    with _utf8_lines(path, "fitb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SchemaError(f"{path}:{n}: not JSON ({exc})", field="fitb") from exc
            if not isinstance(q, dict):
                raise SchemaError(f"{path}:{n}: expected a JSON object with keys question, "
                                  f"answers, label; got {line.strip()[:60]!r}", field="fitb")
            missing = [k for k in ("question", "answers", "label") if k not in q]
            if missing:
                raise SchemaError(f"{path}:{n}: missing key(s) {', '.join(missing)}",
                                  field=missing[0])
            for key in ("question", "answers"):
                v = q[key]
                if not isinstance(v, list) or not all(
                        isinstance(i, (str, int)) and not isinstance(i, bool) for i in v):
                    raise SchemaError(f"{path}:{n}: {key} must be a list of item ids, got "
                                      f"{v!r}", field=key, value=v)
            if n_answers is None:
                n_answers, first_line = len(q["answers"]), n
            elif len(q["answers"]) != n_answers:
                # the scorers compare answers question by question in one (Q, A) array
                raise SchemaError(f"{path}:{n}: {len(q['answers'])} answers, where line "
                                  f"{first_line} has {n_answers}: every question of a file "
                                  "needs the same number", field="answers",
                                  value=len(q["answers"]))
            label = q["label"]
            if isinstance(label, bool) or not isinstance(label, int) \
                    or not 0 <= label < len(q["answers"]):
                raise SchemaError(f"{path}:{n}: label {label!r} is not an index into the "
                                  f"{len(q['answers'])} answers", field="label", value=label)
            q["question"] = [str(i) for i in q["question"]]
            q["answers"] = [str(i) for i in q["answers"]]
            q.setdefault("outfit_id", str(n))
            out.append(q)
    return out


def write_compat(rows: list[tuple[int, list[str]]], path: str | os.PathLike) -> None:
    """Write compatibility rows as ``label<TAB>space-separated ids``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for label, ids in rows:
            f.write(f"{int(label)}\t{' '.join(ids)}\n")


def read_compat(path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    """Read a compatibility TSV; a malformed line raises SchemaError naming the line."""
    out = []
    with _utf8_lines(path, "compatibility") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or parts[0].strip() not in ("0", "1"):
                raise SchemaError(f"{path}:{n}: expected 'label<TAB>ids' with label 0 or 1, "
                                  f"got {line[:60]!r}", field="compatibility")
            out.append((int(parts[0]), parts[1].split()))
    return out


def read_outfits_file(path: str | os.PathLike) -> pd.DataFrame:
    """Outfits from Parquet or CSV with columns ``outfit_id,item_id``.

    A two-column file with other names (e.g. MANGO's ``cod_outfit,cod_modelo_color``)
    is read as (outfit, item) in that order.
    """
    path = Path(path)
    if not path.is_file():
        from features.exceptions import NotFoundError
        raise NotFoundError(f"outfits file not found: {path}", field="outfits",
                            value=str(path))
    from recommender.catalog import read_parquet_file, read_user_csv
    name = f"outfits file {path}"
    try:
        df = (read_parquet_file(path, name, "outfits") if path.suffix == ".parquet"
              else read_user_csv(path, name, "outfits",
                                 empty="expected a header row (outfit_id,item_id)",
                                 dtype=str, keep_default_na=False))
    except pd.errors.ParserError as exc:
        raise InputError(f"outfits file {path} is not a well-formed table: {exc}",
                         field="outfits", value=str(path)) from exc
    from recommender.catalog import check_row_width
    check_row_width(df, f"outfits file {path}", "outfits", path)
    if not {"outfit_id", "item_id"} <= set(df.columns):
        if len(df.columns) != 2:
            raise SchemaError(f"{path}: needs columns outfit_id,item_id; has "
                              f"{', '.join(map(str, df.columns))}", field="outfit_id")
        df = df.set_axis(["outfit_id", "item_id"], axis=1)
    return df[["outfit_id", "item_id"]].astype(str)


# -- making the files --------------------------------------------------------------
def split_outfits(outfits: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split an outfits table by outfit; ``test_fraction`` of the outfits held out.

    ``test_fraction = 0`` holds out nothing: every outfit trains (a bundle built to
    serve, or to be scored on outfits from elsewhere), and the test table is empty.

    >>> o = pd.DataFrame({"outfit_id": ["1", "1", "2"], "item_id": ["a", "b", "c"]})
    >>> [len(t) for t in split_outfits(o, 0.0)]
    [3, 0]
    """
    if not (isinstance(test_fraction, (int, float)) and 0 <= test_fraction < 1):
        raise InputError(f"test_fraction must be in [0, 1), got {test_fraction!r}",
                         field="test_fraction", value=test_fraction)
    ids = np.array(sorted(outfits["outfit_id"].unique(), key=_natural_key), dtype=object)
    rng = np.random.default_rng([seed, 0])
    n_test = int(round(test_fraction * len(ids)))
    test_ids = set(rng.permutation(ids)[:n_test])
    is_test = outfits["outfit_id"].isin(test_ids)
    return (outfits[~is_test].reset_index(drop=True), outfits[is_test].reset_index(drop=True))


def _natural_key(s: str):
    # Numeric ids sort as numbers so the split does not depend on zero padding.
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _groups(outfits: pd.DataFrame) -> list[tuple[str, list[str]]]:
    out = []
    for oid, g in outfits.groupby("outfit_id", sort=False):
        items = list(dict.fromkeys(g["item_id"]))  # drop repeats, keep order
        out.append((oid, items))
    out.sort(key=lambda t: _natural_key(t[0]))
    return out


class _Pools:
    """The items of each subcategory in catalogue order, and where each item sits.

    A negative is drawn from a pool *without* some items (the outfit's own, the
    negatives already used). Copying the pool minus those items for every blank
    costs the pool's size each time, so a split of ``n`` held-out outfits over
    pools of ``N / subcategories`` items grew as ``n * N``: 159 s at 100k items.
    :meth:`without` instead returns a view that skips the excluded positions
    (an outfit has a handful): the same list, the same index -> item, in time
    independent of the pool's size.

    Examples
    --------
    >>> p = _Pools(["a", "b", "c", "d"], ["S", "S", "T", "S"])
    >>> v = p.without("S", {"b", "c"})
    >>> len(v), [v[k] for k in range(len(v))]
    (2, ['a', 'd'])
    """

    def __init__(self, ids, subs, keep=None):
        self.pools: dict[str, list[str]] = {}
        self.where: dict[str, list[tuple[str, int]]] = {}
        for i, s in zip(ids, subs):
            if keep is not None and not keep(i):
                continue
            pool = self.pools.setdefault(s, [])
            self.where.setdefault(i, []).append((s, len(pool)))
            pool.append(i)

    def without(self, sub: str, exclude) -> "_PoolView":
        """The pool of ``sub`` minus every copy of the items in ``exclude``."""
        pool = self.pools.get(sub, [])
        skip = sorted(k for x in exclude for s, k in self.where.get(x, ()) if s == sub)
        return _PoolView(pool, skip)


class _PoolView:
    """``[c for c in pool if c not in exclude]`` without building it (see :class:`_Pools`)."""

    __slots__ = ("pool", "skip")

    def __init__(self, pool: list[str], skip: list[int]):
        self.pool, self.skip = pool, skip

    def __len__(self) -> int:
        return len(self.pool) - len(self.skip)

    def __getitem__(self, k: int) -> str:
        k = int(k)
        if not 0 <= k < len(self):
            raise IndexError(k)
        for s in self.skip:  # ascending: each excluded position at or before k shifts it
            if s <= k:
                k += 1
            else:
                break
        return self.pool[k]


def _fitb_questions(groups, sub_of, pools: _Pools, rng, eligible) -> tuple[list[dict], int]:
    """One question per outfit; ``eligible(item)`` says which items may be blanked."""
    questions, skipped = [], 0
    for oid, items in groups:
        if len(items) < 2:
            continue
        in_outfit = set(items)
        options = []
        for pos, it in enumerate(items):
            if not eligible(it):
                continue
            pool = pools.without(sub_of[it], in_outfit)
            if len(pool) >= N_ANSWERS - 1:
                options.append((pos, it, pool))
        if not options:
            skipped += 1
            continue
        pos, blank, pool = options[rng.integers(len(options))]
        negs = [pool[i] for i in rng.choice(len(pool), N_ANSWERS - 1, replace=False)]
        answers = [blank] + negs
        order = rng.permutation(N_ANSWERS)
        answers = [answers[i] for i in order]
        questions.append({"outfit_id": oid, "question": [x for x in items if x != blank],
                          "blank_position": pos, "answers": answers,
                          "label": int(np.flatnonzero(order == 0)[0])})
    return questions, skipped


def _fitb_all_questions(groups, sub_of, pools: _Pools, rng) -> tuple[list[dict], int]:
    """A question for every item of every outfit of 2+ items (blanks whose subcategory
    has fewer than three other items are skipped and counted)."""
    questions, skipped = [], 0
    for oid, items in groups:
        if len(items) < 2:
            continue
        in_outfit = set(items)
        for pos, blank in enumerate(items):
            pool = pools.without(sub_of[blank], in_outfit)
            if len(pool) < N_ANSWERS - 1:
                skipped += 1
                continue
            negs = [pool[i] for i in rng.choice(len(pool), N_ANSWERS - 1, replace=False)]
            answers = [blank] + negs
            order = rng.permutation(N_ANSWERS)
            questions.append({"outfit_id": oid, "question": [x for x in items if x != blank],
                              "blank_position": pos,
                              "answers": [answers[i] for i in order],
                              "label": int(np.flatnonzero(order == 0)[0])})
    return questions, skipped


def _compat_rows(groups, sub_of, pools: _Pools, rng, hard: bool) -> tuple[list, int]:
    rows, skipped = [], 0
    for oid, items in groups:
        if len(items) < 2:
            continue
        in_outfit = set(items)
        swaps = {}
        for pos, it in enumerate(items):
            if len(pools.without(sub_of[it], in_outfit)):
                swaps[pos] = sub_of[it]
        if hard:
            if not swaps:
                skipped += 1
                continue
            positions = sorted(swaps)
            chosen = [positions[rng.integers(len(positions))]]
        else:
            if len(swaps) < len(items):
                skipped += 1
                continue
            chosen = list(range(len(items)))
        neg = list(items)
        used = set(items)
        for pos in chosen:
            # prefer an item not used yet; else any item outside the outfit
            pool = pools.without(swaps[pos], used)
            if not len(pool):
                pool = pools.without(swaps[pos], in_outfit)
            neg[pos] = pool[rng.integers(len(pool))]
            used.add(neg[pos])
        rows.append((1, list(items)))
        rows.append((0, neg))
    return rows, skipped


def make_eval(outfits: pd.DataFrame, catalog: pd.DataFrame, *, seed: int = 0,
              test_fraction: float = 0.2) -> EvalSet:
    """Split ``outfits`` and build the FITB and compatibility sets.

    Outfit rows naming items absent from ``catalog`` are dropped (counted in
    ``info``); negatives are drawn from the whole catalogue.
    """
    from recommender.catalog import validate_outfits

    outfits, problems = validate_outfits(outfits, catalog["item_id"].astype(str))
    train, test = split_outfits(outfits, test_fraction, seed)
    ids = catalog["item_id"].astype(str).to_numpy()
    subs = catalog["subcategory"].astype(str).to_numpy()
    sub_of = dict(zip(ids, subs))
    pools = _Pools(ids, subs)
    train_items = set(train["item_id"])
    cold_pools = _Pools(ids, subs, keep=lambda i: i not in train_items)
    groups = _groups(test)

    fitb, fitb_skipped = _fitb_questions(groups, sub_of, pools,
                                         np.random.default_rng([seed, 1]), lambda it: True)
    cold, cold_skipped = _fitb_questions(groups, sub_of, cold_pools,
                                         np.random.default_rng([seed, 2]),
                                         lambda it: it not in train_items)
    compat, compat_skipped = _compat_rows(groups, sub_of, pools,
                                          np.random.default_rng([seed, 3]), hard=False)
    hard, hard_skipped = _compat_rows(groups, sub_of, pools,
                                      np.random.default_rng([seed, 4]), hard=True)
    every, every_skipped = _fitb_all_questions(groups, sub_of, pools,
                                               np.random.default_rng([seed, 5]))
    info = {
        "seed": int(seed), "test_fraction": float(test_fraction),
        "n_outfits": int(outfits["outfit_id"].nunique()),
        "n_train_outfits": int(train["outfit_id"].nunique()),
        "n_test_outfits": int(test["outfit_id"].nunique()),
        "n_train_items": len(train_items),
        "n_fitb": len(fitb), "n_fitb_skipped": fitb_skipped,
        "n_fitb_cold": len(cold), "n_fitb_cold_skipped": cold_skipped,
        "n_compatibility": len(compat), "n_compatibility_skipped": compat_skipped,
        "n_compatibility_hard": len(hard), "n_compatibility_hard_skipped": hard_skipped,
        "n_fitb_all": len(every), "n_fitb_all_skipped": every_skipped,
        "fitb_answer_cold_fraction": (float(np.mean([q["answers"][q["label"]] not in train_items
                                                    for q in fitb])) if fitb else 0.0),
        "problems": problems,
    }
    return EvalSet(train, test, fitb, cold, compat, hard, info, every)


def write_eval(ev: EvalSet, out_dir: str | os.PathLike) -> list[Path]:
    """Write the split and the files (names in :data:`EVAL_FILES`) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev.train_outfits.to_parquet(out / "train_outfits.parquet", index=False)
    ev.test_outfits.to_parquet(out / "test_outfits.parquet", index=False)
    write_fitb(ev.fitb, out / "fitb.jsonl")
    write_fitb(ev.fitb_cold, out / "fitb_cold.jsonl")
    write_compat(ev.compatibility, out / "compatibility.tsv")
    write_compat(ev.compatibility_hard, out / "compatibility_hard.tsv")
    write_fitb(ev.fitb_all, out / FITB_ALL_FILE)
    (out / "split.json").write_text(json.dumps(ev.info, indent=2, sort_keys=True))
    return [out / f for f in EVAL_FILES]


def summary(info: dict) -> str:
    """A few lines describing a split."""
    if not info["n_test_outfits"]:
        return (f"outfits: all {info['n_train_outfits']} train, none held out (test "
                f"fraction {info['test_fraction']:g}): the evaluation files are empty")
    return (f"outfits: {info['n_train_outfits']} train, {info['n_test_outfits']} held out "
            f"(seed {info['seed']})\n"
            f"fitb: {info['n_fitb']} questions ({info['n_fitb_skipped']} outfits skipped; "
            f"{info['fitb_answer_cold_fraction']:.0%} of answers unseen in training)\n"
            f"fitb_cold: {info['n_fitb_cold']} questions, fitb_all: "
            f"{info['n_fitb_all']} (every item of every held-out outfit)\n"
            f"compatibility: {info['n_compatibility']} rows, compatibility_hard: "
            f"{info['n_compatibility_hard']} rows")


# -- pipeline stage and CLI ----------------------------------------------------------
#: The settings of ``[stages.split]``.
SPLIT_SETTINGS = ("seed", "test_fraction")


def _split_params(ctx) -> tuple[int, float]:
    """``(seed, test_fraction)`` of the stage; InputError naming a ``[stages.split]``
    setting that is unknown (a misspelt one was ignored) or out of range, before the
    stage starts (``stage_inputs`` calls this), not a traceback from numpy."""
    cfg = ctx.stage_config("split")
    unknown = sorted(set(cfg) - set(SPLIT_SETTINGS))
    if unknown:
        raise InputError(f"unknown [stages.split] setting {unknown[0]!r}",
                         field="stages.split", value=unknown[0], allowed=SPLIT_SETTINGS)
    seed = cfg.get("seed", ctx.config.get("seed", 0))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"[stages.split] seed must be a whole number >= 0, got {seed!r}",
                         field="stages.split.seed", value=seed)
    frac = cfg.get("test_fraction", 0.2)
    if (isinstance(frac, bool) or not isinstance(frac, (int, float))
            or not 0 <= frac < 1):
        raise InputError(f"[stages.split] test_fraction must be a fraction in [0, 1), got "
                         f"{frac!r}", field="stages.split.test_fraction", value=frac)
    return seed, float(frac)


#: Checked before any stage of a build starts (recommender.pipeline).
check_config = _split_params


def stage_inputs(ctx) -> dict:
    """The split depends on the catalogue, the outfits, the seed and the fraction."""
    from recommender.bundle import file_hash

    seed, frac = _split_params(ctx)
    b = ctx.bundle
    return {"catalog": file_hash(b.path("catalog.parquet")),
            "outfits": file_hash(b.path("outfits.parquet")),
            "seed": seed, "test_fraction": frac, "version": SPLIT_VERSION}


def run_stage(ctx) -> dict:
    """Write ``eval/`` into the bundle from its catalogue and outfits."""
    b = ctx.bundle
    seed, frac = _split_params(ctx)
    catalog = read_bundle_file(b.path("catalog.parquet"), pd.read_parquet)
    outfits = read_bundle_file(b.path("outfits.parquet"), pd.read_parquet).astype(str)
    ev = make_eval(outfits, catalog, seed=seed, test_fraction=frac)
    write_eval(ev, b.path("eval"))
    ctx.log("[split] " + summary(ev.info).replace("\n", "\n[split] "))
    metrics = {k: v for k, v in ev.info.items() if k != "problems"}
    return {"outputs": [f"eval/{f}" for f in EVAL_FILES], "metrics": metrics}


def cli_make_eval(args) -> int:
    """``mixmatch make-eval --outfits F --catalog C --seed S --out DIR``."""
    from recommender.catalog import load_catalog

    out = Path(args.out)
    if out.exists() and not out.is_dir():  # named now, not by mkdir's traceback at the end
        raise InputError(f"--out {out} is a file, not a folder", field="out",
                         value=str(out))
    catalog = load_catalog(args.catalog)
    outfits = read_outfits_file(args.outfits)
    ev = make_eval(outfits, catalog, seed=args.seed,
                   test_fraction=getattr(args, "test_fraction", 0.2))
    write_eval(ev, args.out)
    for p in ev.info["problems"]:
        print(f"note: {p}")
    print(summary(ev.info))
    print(f"written to {args.out}")
    return 0
