"""Model-report computations with known answers, on the tiny bundle (six colour styles
worn together) with hand-written evaluation files and a model trained by the real
compatibility stage."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.exceptions import InputError
from recommender import report
from recommender.bundle import Bundle
from recommender.pipeline import BuildContext, run_stages
from tests.recommender.tiny_bundle import make_tiny_bundle

FITB = [
    # o1b held out: t1 p1 [h1]; h1 was worn with t1 and p1 in training outfit o1a
    {"outfit_id": "o1b", "question": ["t1", "p1"], "blank_position": 2,
     "answers": ["h1", "h2", "h3", "h5"], "label": 0},
    # o4b held out: t4 [p4] h4
    {"outfit_id": "o4b", "question": ["t4", "h4"], "blank_position": 1,
     "answers": ["p0", "p4", "p2", "p3"], "label": 1},
    # names an unknown id: skipped
    {"outfit_id": "x", "question": ["t4", "zz"], "blank_position": 1,
     "answers": ["p0", "p4", "p2", "p3"], "label": 1},
]
COMPAT = [(1, "t1 p1 h1"), (0, "t1 p3 h5"), (1, "t4 p4 h4"), (0, "t4 p0 h2")]
COMPAT_HARD = [(1, "t1 p1 h1"), (0, "t1 p5 h4")]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = make_tiny_bundle(tmp_path_factory.mktemp("report") / "bundle")
    b = Bundle.open(root)
    for name, rows in (("fitb.jsonl", FITB), ("fitb_cold.jsonl", FITB[:1])):
        b.path("eval", name).write_text("".join(json.dumps(q) + "\n" for q in rows))
    for name, rows in (("compatibility.tsv", COMPAT), ("compatibility_hard.tsv", COMPAT_HARD)):
        b.path("eval", name).write_text("".join(f"{y}\t{ids}\n" for y, ids in rows))
    ctx = BuildContext(b, {"source": "test", "seed": 0, "quick": True}, log=lambda m: None)
    run_stages(ctx, ["compatibility"])
    return root


@pytest.fixture(scope="module")
def data(bundle):
    return report.load_report_data(bundle)


def test_calibration_bins_known_answer():
    s = np.array([0.05, 0.15, 0.95, 1.0, 0.55])
    y = np.array([0, 1, 1, 1, 0])
    b = report.calibration_bins(s, y, n_bins=2)
    assert b["n"].tolist() == [2, 3]                    # 1.0 lands in the top bin
    assert b["positive_rate"].tolist() == pytest.approx([0.5, 2 / 3])
    assert b["mean_score"].tolist() == pytest.approx([0.1, 2.5 / 3])
    ece = report.expected_calibration_error(b)
    assert ece == pytest.approx((2 * 0.4 + 3 * abs(2.5 / 3 - 2 / 3)) / 5)
    q = report.calibration_bins(np.linspace(0, 1, 8), np.zeros(8), n_bins=4,
                                strategy="quantile")
    assert q["n"].tolist() == [2, 2, 2, 2]
    with pytest.raises(InputError):
        report.calibration_bins(s, y[:2])
    with pytest.raises(InputError):
        report.calibration_bins(s, y, strategy="magic")


def test_importance_tables_shares():
    t = report.importance_tables({"a": 6.0, "b": 3.0, "c": 1.0}, {"a": "x", "b": "y"})
    assert t["features"]["feature"].tolist() == ["a", "b", "c"]
    assert t["features"]["group"].tolist() == ["x", "y", "other"]
    assert t["groups"]["share"].tolist() == pytest.approx([0.6, 0.3, 0.1])


def test_feature_importance_of_the_trained_model(bundle):
    t = report.feature_importance(bundle)
    assert t["features"]["share"].sum() == pytest.approx(1.0)
    meta = json.loads(Bundle.open(bundle).path("models", "compat.json").read_text())
    assert set(t["features"]["feature"]) == set(meta["feature_importance"])
    assert set(t["groups"]["group"]) <= set(meta["groups"])


def test_fitb_by_category_cooccurrence_knows_the_worn_answers(data):
    t = report.fitb_by_category(data)
    cooc = t[t["scorer"] == "cooccurrence"].set_index("category")
    assert cooc.loc["shoes", "n"] == 1 and cooc.loc["bottom", "n"] == 1
    assert cooc.loc["shoes", "accuracy"] == 1.0 and cooc.loc["bottom", "accuracy"] == 1.0
    assert set(t["scorer"]) == {"model", "cooccurrence", "popularity", "random"}


def test_evaluation_tables(bundle):
    t = report.evaluation_tables(bundle)
    m = t["metrics"].set_index("scorer")
    assert m.loc["model", "n_fitb"] == 2 and m.loc["model", "n_compat"] == 4
    assert m.loc["cooccurrence", "fitb"] == 1.0
    assert m.loc["cooccurrence", "n_compat_hard"] == 2
    c = t["cold_start"].set_index("scorer")
    assert c.loc["model", "n_cold_file"] == 1
    assert c.loc["model", "n_warm"] + c.loc["model", "n_cold"] == 2


def test_evaluation_tables_of_loaded_data_load_nothing_again(bundle, monkeypatch):
    # before: the notebook's evaluation_tables(bundle) opened the bundle and loaded
    # its compatibility model once per pair of files, after load_report_data had
    # loaded both: three model loads where one does (seconds each on MANGO)
    from recommender.compat.model import CompatibilityModel
    from recommender.evaluation.evaluate import EVAL_FILE_NAMES, evaluate_bundle_files

    load, loads = CompatibilityModel.load.__func__, []
    monkeypatch.setattr(CompatibilityModel, "load", classmethod(
        lambda cls, *a, **k: loads.append(1) or load(cls, *a, **k)))
    data = report.load_report_data(bundle)
    t = report.evaluation_tables(data)
    assert len(loads) == 1
    # the same figures as the files scored one fresh load at a time (the random
    # baseline's draws start from the seed for each file pair), and data's own
    # baselines left unused for fitb_by_category
    files = {k: Bundle.open(bundle).path("eval", v) for k, v in EVAL_FILE_NAMES.items()}
    assert t["raw"]["main"] == evaluate_bundle_files(
        bundle, fitb=files["fitb"], compat=files["compatibility"], print_text=False)
    assert t["raw"]["cold"] == evaluate_bundle_files(
        bundle, fitb=files["fitb_cold"], compat=files["compatibility_hard"],
        print_text=False)
    pd.testing.assert_frame_equal(t["metrics"], report.evaluation_tables(bundle)["metrics"])
    pd.testing.assert_frame_equal(report.fitb_by_category(data),
                                  report.fitb_by_category(report.load_report_data(bundle)))


def test_pair_calibration_data_construction(data):
    pairs = report.pair_calibration_data(data, seed=0)
    pos = pairs[pairs["label"] == 1]
    # o1b (t1 p1 h1) and o4b (t4 p4 h4): three cross-category pairs each
    assert sorted(map(tuple, pos[["a", "b"]].values.tolist())) == sorted(
        [("t1", "p1"), ("t1", "h1"), ("p1", "h1"), ("t4", "p4"), ("t4", "h4"), ("p4", "h4")])
    neg = pairs[pairs["label"] == 0]
    assert len(neg) == len(pos) and pairs["label"].mean() == 0.5
    cat = data.catalog.set_index("item_id")["category"]
    for (_, p), (_, n) in zip(pos.iterrows(), neg.iterrows()):
        assert n["a"] == p["a"] and cat[n["b"]] == cat[p["b"]] and n["b"] != p["b"]
    assert pairs["score"].between(0, 1).all()


def test_outfit_examples_real_looks_score_highest(data):
    ex = report.outfit_examples(data, n=2)
    likes, dislikes = ex["likes"], ex["dislikes"]
    assert [o["score"] for o in likes] == sorted([o["score"] for o in likes], reverse=True)
    assert min(o["score"] for o in likes) >= max(o["score"] for o in dislikes)
    # the styles are coherent: the model likes the real looks and dislikes the swaps
    assert [o["label"] for o in likes] == [1, 1]
    assert [o["label"] for o in dislikes] == [0, 0]
    files = {tuple(ids.split()) for _, ids in COMPAT + COMPAT_HARD}
    assert all(tuple(o["items"]) in files for o in likes + dislikes)


def test_fitb_by_category_gives_the_same_figures_when_called_again(bundle):
    # before: the random baseline of load_report_data went on drawing from where the
    # previous call left it: rerunning the notebook's by-category cell (or asking for
    # fitb_cold after fitb) changed the random row, and neither matched the first table
    data = report.load_report_data(bundle)
    first = report.fitb_by_category(data, which="fitb_cold")
    for _ in range(3):
        pd.testing.assert_frame_equal(report.fitb_by_category(data, which="fitb_cold"), first)


def test_fitb_by_category_after_evaluation_tables_scores_nothing_again(bundle, monkeypatch):
    # before: the notebook's by-category cell scored fitb.jsonl again with the model
    # and the three baselines, right after evaluation_tables had scored it (seconds
    # on MANGO). Now it reads the scores evaluation_tables kept on data
    from recommender.compat.model import CompatibilityModel
    from recommender.evaluation import baselines

    calls = []
    for cls in (CompatibilityModel, baselines._PairBaseline):
        def counted(self, *a, _f=cls.score_fitb, **k):
            calls.append(type(self).__name__)
            return _f(self, *a, **k)
        monkeypatch.setattr(cls, "score_fitb", counted)
    data = report.load_report_data(bundle)
    report.evaluation_tables(data)
    # fitb.jsonl and fitb_cold.jsonl: the model and the three baselines once each
    assert sorted(calls) == sorted(["CompatibilityModel", "RandomBaseline",
                                    "PopularityBaseline", "CooccurrenceBaseline"] * 2)
    calls.clear()
    both = {w: report.fitb_by_category(data, which=w) for w in ("fitb", "fitb_cold")}
    assert calls == []
    # the same figures as scoring the files alone, on a fresh load
    for w, t in both.items():
        pd.testing.assert_frame_equal(t, report.fitb_by_category(
            report.load_report_data(bundle), which=w))
    assert len(calls) == 2 * 4
    # another seed was not scored by the tables: scored here, from that seed
    calls.clear()
    report.fitb_by_category(data, seed=1)
    assert len(calls) == 4


def test_fitb_by_category_names_the_files_it_reads(data):
    # before: "fitb.jsonl" raised KeyError('fitb.jsonl') from the file names' table,
    # naming no choice; "compatibility" read compatibility.tsv as FITB questions and
    # failed on its first line as "not JSON"
    for bad in ("compatibility", "fitb.jsonl"):
        with pytest.raises(InputError, match="fitb_cold") as e:
            report.fitb_by_category(data, which=bad)
        assert e.value.field == "which"
