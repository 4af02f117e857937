import json

import numpy as np
import pandas as pd
import pytest

from api.cli import main
from features.exceptions import SchemaError
from recommender.evaluation.make_eval import (make_eval, read_compat, read_fitb, write_compat,
                                              write_eval, write_fitb)
from tests.recommender.compat.synthetic import synthetic_catalog, synthetic_outfits


@pytest.fixture(scope="module")
def data():
    cat = synthetic_catalog(per_sub=20)
    return cat, synthetic_outfits(cat, n_outfits=100)


def test_split_is_by_outfit_and_seeded(data):
    cat, outfits = data
    ev = make_eval(outfits, cat, seed=3)
    tr, te = set(ev.train_outfits["outfit_id"]), set(ev.test_outfits["outfit_id"])
    assert not tr & te and len(te) == 20 and len(tr) == 80
    again = make_eval(outfits, cat, seed=3)
    assert again.fitb == ev.fitb and again.compatibility_hard == ev.compatibility_hard
    assert set(make_eval(outfits, cat, seed=4).test_outfits["outfit_id"]) != te


def test_fitb_questions_follow_the_protocol(data):
    cat, outfits = data
    ev = make_eval(outfits, cat, seed=0)
    sub = dict(zip(cat["item_id"], cat["subcategory"]))
    test = ev.test_outfits.groupby("outfit_id")["item_id"].apply(list).to_dict()
    train_items = set(ev.train_outfits["item_id"])
    assert len(ev.fitb) == 20
    labels = []
    for q in ev.fitb:
        items = test[q["outfit_id"]]
        blank = q["answers"][q["label"]]
        assert items[q["blank_position"]] == blank
        assert q["question"] == [i for i in items if i != blank]
        assert len(q["answers"]) == 4 == len(set(q["answers"]))
        assert {sub[a] for a in q["answers"]} == {sub[blank]}
        assert not set(q["answers"]) - {blank} & set(items)
        labels.append(q["label"])
    assert len(set(labels)) > 1   # shuffled, not always first
    for q in ev.fitb_cold:
        assert not set(q["answers"]) & train_items


def test_fitb_all_blanks_every_item_of_every_held_out_outfit(data):
    cat, outfits = data
    ev = make_eval(outfits, cat, seed=0)
    sub = dict(zip(cat["item_id"], cat["subcategory"]))
    test = ev.test_outfits.groupby("outfit_id")["item_id"].apply(list).to_dict()
    blanks = {(q["outfit_id"], q["blank_position"]) for q in ev.fitb_all}
    assert blanks == {(o, k) for o, items in test.items() if len(items) > 1
                      for k in range(len(items))}
    assert ev.info["n_fitb_all"] == len(ev.fitb_all) > len(ev.fitb)
    for q in ev.fitb_all:
        items = test[q["outfit_id"]]
        blank = q["answers"][q["label"]]
        assert items[q["blank_position"]] == blank
        assert q["question"] == [i for i in items if i != blank]
        assert {sub[a] for a in q["answers"]} == {sub[blank]} and len(set(q["answers"])) == 4
        assert not set(q["answers"]) - {blank} & set(items)
    assert len({q["label"] for q in ev.fitb_all}) == 4


def test_compatibility_negatives(data):
    cat, outfits = data
    ev = make_eval(outfits, cat, seed=0)
    sub = dict(zip(cat["item_id"], cat["subcategory"]))
    for rows, n_changed in ((ev.compatibility, None), (ev.compatibility_hard, 1)):
        assert [r[0] for r in rows[:4]] == [1, 0, 1, 0]
        for (lp, pos), (ln, neg) in zip(rows[::2], rows[1::2]):
            assert (lp, ln) == (1, 0)
            assert [sub[i] for i in pos] == [sub[i] for i in neg]
            changed = sum(a != b for a, b in zip(pos, neg))
            assert changed == (len(pos) if n_changed is None else 1)


def test_files_round_trip_and_bad_lines(tmp_path, data):
    cat, outfits = data
    ev = make_eval(outfits, cat, seed=0)
    write_fitb(ev.fitb, tmp_path / "f.jsonl")
    assert read_fitb(tmp_path / "f.jsonl") == ev.fitb
    write_compat(ev.compatibility, tmp_path / "c.tsv")
    assert read_compat(tmp_path / "c.tsv") == ev.compatibility
    (tmp_path / "bad.tsv").write_text("1\ta b\n2\ta b\n")
    with pytest.raises(SchemaError, match=":2:"):
        read_compat(tmp_path / "bad.tsv")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": ["a"], "answers": ["b"] * 4,
                                                    "label": 7}) + "\n")
    with pytest.raises(SchemaError, match="label"):
        read_fitb(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("line, field, match", [
    ("5", "fitb", "expected a JSON object"),
    ("null", "fitb", "expected a JSON object"),
    ('["a", "b"]', "fitb", "expected a JSON object"),
    ('{"question": ["a"], "answers": 7, "label": 0}', "answers", "answers must be a list"),
    ('{"question": "a", "answers": ["b", "c", "d", "e"], "label": 0}', "question",
     "question must be a list"),
    ('{"question": ["a"], "answers": ["b", "c", "d", "e"], "label": true}', "label",
     "label True"),
    ('{"question": ["a"], "answers": ["b", "c", "d", "e", "f"], "label": 0}', "answers",
     "5 answers, where line 1 has 4"),
])
def test_malformed_fitb_lines_are_named(tmp_path, line, field, match):
    good = json.dumps({"question": ["a"], "answers": ["b", "c", "d", "e"], "label": 0})
    (tmp_path / "f.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(SchemaError, match=":2: .*" + match) as exc:
        read_fitb(tmp_path / "f.jsonl")
    assert exc.value.field == field


def test_cli_make_eval_input_not_utf8_exits_2(tmp_path, data, capsys):
    cat, outfits = data
    cat.to_csv(tmp_path / "cat.csv", index=False)
    (tmp_path / "o.csv").write_bytes(b"outfit_id,item_id\n1,caf\xe9\n")
    rc = main(["make-eval", "--outfits", str(tmp_path / "o.csv"), "--catalog",
               str(tmp_path / "cat.csv"), "--out", str(tmp_path / "ev")])
    assert rc == 2 and "o.csv is not UTF-8" in capsys.readouterr().err
    outfits.to_csv(tmp_path / "o.csv", index=False)
    (tmp_path / "cat.csv").write_bytes((tmp_path / "cat.csv").read_bytes() + b"x\xe9,top\n")
    rc = main(["make-eval", "--outfits", str(tmp_path / "o.csv"), "--catalog",
               str(tmp_path / "cat.csv"), "--out", str(tmp_path / "ev")])
    assert rc == 2 and "cat.csv is not UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()


def test_cli_make_eval(tmp_path, data, capsys):
    cat, outfits = data
    cat.to_parquet(tmp_path / "catalog.parquet", index=False)
    outfits.rename(columns={"outfit_id": "cod_outfit", "item_id": "cod"}).to_csv(
        tmp_path / "outfits.csv", index=False)
    rc = main(["make-eval", "--outfits", str(tmp_path / "outfits.csv"), "--catalog",
               str(tmp_path / "catalog.parquet"), "--seed", "0", "--out", str(tmp_path / "ev")])
    assert rc == 0
    info = json.loads((tmp_path / "ev" / "split.json").read_text())
    assert info["n_test_outfits"] == 20 and info["n_fitb"] == 20
    assert len(read_compat(tmp_path / "ev" / "compatibility_hard.tsv")) == 40
    assert pd.read_parquet(tmp_path / "ev" / "train_outfits.parquet")["outfit_id"].nunique() == 80
    assert len(read_fitb(tmp_path / "ev" / "fitb_all.jsonl")) == info["n_fitb_all"] > 20
    assert "fitb: 20 questions" in capsys.readouterr().out


# -- the pool views give the very files the list-copying code gave ---------------------
def _reference_fitb(groups, sub_of, pools, rng, eligible):
    """The split's FITB questions as first written: a filtered copy of the pool per blank."""
    questions, skipped = [], 0
    for oid, items in groups:
        if len(items) < 2:
            continue
        in_outfit = set(items)
        options = []
        for pos, it in enumerate(items):
            if not eligible(it):
                continue
            pool = [c for c in pools.get(sub_of[it], ()) if c not in in_outfit]
            if len(pool) >= 3:
                options.append((pos, it, pool))
        if not options:
            skipped += 1
            continue
        pos, blank, pool = options[rng.integers(len(options))]
        negs = [pool[i] for i in rng.choice(len(pool), 3, replace=False)]
        answers = [blank] + negs
        order = rng.permutation(4)
        answers = [answers[i] for i in order]
        questions.append({"outfit_id": oid, "question": [x for x in items if x != blank],
                          "blank_position": pos, "answers": answers,
                          "label": int(np.flatnonzero(order == 0)[0])})
    return questions, skipped


def _reference_compat(groups, sub_of, pools, rng, hard):
    rows, skipped = [], 0
    for oid, items in groups:
        if len(items) < 2:
            continue
        in_outfit = set(items)
        swaps = {}
        for pos, it in enumerate(items):
            pool = [c for c in pools.get(sub_of[it], ()) if c not in in_outfit]
            if pool:
                swaps[pos] = pool
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
            pool = [c for c in swaps[pos] if c not in used] or swaps[pos]
            neg[pos] = pool[rng.integers(len(pool))]
            used.add(neg[pos])
        rows.append((1, list(items)))
        rows.append((0, neg))
    return rows, skipped


def test_pool_views_reproduce_the_list_copying_split():
    """3,000 items in pools of 1 to 400 (tiny pools exercise the skips and the
    fallback to an already used negative): every file equals what the old
    list-copying code drew from the same seeds."""
    from recommender.evaluation import make_eval as me

    rng = np.random.default_rng(7)
    sizes = [1, 2, 3, 4, 5] + [400] * 5 + list(rng.integers(20, 120, 20))
    subs = [f"S{k}" for k, n in enumerate(sizes) for _ in range(n)]
    ids = [f"i{k}" for k in range(len(subs))]
    cat = pd.DataFrame({"item_id": ids, "subcategory": subs, "category": "top"})
    # outfits of 2-6 items, biased to the tiny pools so every branch is taken
    weights = np.array([40.0 if s in ("S0", "S1", "S2", "S3", "S4") else 1.0 for s in subs])
    weights /= weights.sum()
    rows = []
    for o in range(1500):
        for it in rng.choice(len(ids), int(rng.integers(2, 7)), replace=False, p=weights):
            rows.append((str(o), ids[it]))
    tiny = [k for k, s in enumerate(subs) if s in ("S0", "S1", "S2", "S3")]
    for o in range(1500, 1700):  # outfits of tiny-pool items only: nothing to ask
        for it in rng.choice(tiny, int(rng.integers(2, 4)), replace=False):
            rows.append((str(o), ids[it]))
    outfits = pd.DataFrame(rows, columns=["outfit_id", "item_id"])
    ev = make_eval(outfits, cat, seed=5)

    sub_of = dict(zip(ids, subs))
    pools: dict = {}
    for i, s in zip(ids, subs):
        pools.setdefault(s, []).append(i)
    train_items = set(ev.train_outfits["item_id"])
    cold = {s: [i for i in p if i not in train_items] for s, p in pools.items()}
    groups = me._groups(ev.test_outfits)
    ref_fitb = _reference_fitb(groups, sub_of, pools, np.random.default_rng([5, 1]),
                               lambda it: True)
    ref_cold = _reference_fitb(groups, sub_of, cold, np.random.default_rng([5, 2]),
                               lambda it: it not in train_items)
    ref_compat = _reference_compat(groups, sub_of, pools, np.random.default_rng([5, 3]), False)
    ref_hard = _reference_compat(groups, sub_of, pools, np.random.default_rng([5, 4]), True)
    assert ev.fitb == ref_fitb[0] and ev.info["n_fitb_skipped"] == ref_fitb[1]
    assert ev.fitb_cold == ref_cold[0] and ev.info["n_fitb_cold_skipped"] == ref_cold[1]
    assert ev.compatibility == ref_compat[0]
    assert ev.info["n_compatibility_skipped"] == ref_compat[1]
    assert ev.compatibility_hard == ref_hard[0]
    assert ev.info["n_compatibility_hard_skipped"] == ref_hard[1]
    # every branch was exercised: skipped questions and rows, and questions asked
    assert ref_fitb[1] > 0 and ref_compat[1] > 0 and len(ref_fitb[0]) > 100
    assert len(ref_cold[0]) > 10 and len(ref_hard[0]) > 100


def test_pool_view_skips_every_copy_of_an_excluded_id():
    from recommender.evaluation.make_eval import _Pools

    p = _Pools(["a", "b", "a", "c", "d"], ["S", "S", "S", "S", "T"])
    v = p.without("S", {"a", "d", "zz"})
    assert len(v) == 2 and [v[0], v[1]] == ["b", "c"]
    with pytest.raises(IndexError):
        v[2]
    assert len(p.without("missing", {"a"})) == 0
    cold = _Pools(["a", "b", "c"], ["S", "S", "S"], keep=lambda i: i != "b")
    w = cold.without("S", {"b"})
    assert [w[k] for k in range(len(w))] == ["a", "c"]


@pytest.mark.parametrize("text", [
    "outfit_id,item_id\n1,t0,x\n1,t1,y\n",      # every row one field longer: ids shift
    "outfit_id,item_id\n1,t0\n1,t1,y\n",        # one row longer
])
def test_outfit_rows_longer_than_the_header_are_refused_not_shifted(tmp_path, text):
    from features.exceptions import InputError
    from recommender.evaluation.make_eval import read_outfits_file
    (tmp_path / "o.csv").write_text(text)
    with pytest.raises(InputError, match="o.csv") as exc:
        read_outfits_file(tmp_path / "o.csv")
    assert exc.value.field == "outfits"


def test_fitb_and_compat_files_not_utf8_are_named(tmp_path):
    # before: `evaluate --fitb/--compat` on a Latin-1 file died with a UnicodeDecodeError
    # traceback (exit 1)
    from recommender.evaluation.make_eval import read_compat, read_fitb

    fitb, compat = tmp_path / "f.jsonl", tmp_path / "c.tsv"
    fitb.write_bytes('{"outfit_id": "caf\xe9"}\n'.encode("latin-1"))
    compat.write_bytes("1\ta\xe9 b\n".encode("latin-1"))
    for read, path in ((read_fitb, fitb), (read_compat, compat)):
        with pytest.raises(SchemaError, match=f"{path}: not UTF-8 text"):
            read(path)


@pytest.mark.parametrize("table, said", [
    ('test_fraction = "abc"', "[stages.split] test_fraction must be a fraction in [0, 1), "
                              "got 'abc'"),
    ("test_fraction = 1.5", "[stages.split] test_fraction must be a fraction in [0, 1), "
                            "got 1.5"),
    ("seed = -1", "[stages.split] seed must be a whole number >= 0, got -1"),
    ("test_fracton = 0.1", "unknown [stages.split] setting 'test_fracton' (allowed: seed, "
                           "test_fraction)"),
])
def test_split_settings_are_checked_before_the_split_is_rewritten(tmp_path, capsys, table,
                                                                  said):
    # before: test_fraction = "abc" was a ValueError traceback and seed = -1 numpy's
    # "expected non-negative integer" traceback (exit 1), 1.5 was refused only once the
    # stage had started, and a misspelt setting was ignored (the default 0.2 held out)
    from api.cli import main
    from recommender.bundle import Bundle

    out = tmp_path / "b"
    assert main(["build", "--out", str(out), "--items", "20", "--quick",
                 "--stages", "ingest,split"]) == 0
    capsys.readouterr()
    before = Bundle.open(out).manifest["stages"]["split"]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[stages.split]\n{table}\n")
    assert main(["build", "--out", str(out), "--items", "20", "--quick",
                 "--stages", "split", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch build: error: {said}" in err and "Traceback" not in err, err
    assert "[split] held-out outfits" not in err   # refused before the stage started
    assert Bundle.open(out).manifest["stages"]["split"] == before
