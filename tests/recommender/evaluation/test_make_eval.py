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
    assert "fitb: 20 questions" in capsys.readouterr().out
