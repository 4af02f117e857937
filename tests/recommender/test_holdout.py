"""``--holdout 0``: a bundle whose models and graph learn from every outfit."""
import json
import shutil

import pandas as pd
import pytest

from api.cli import main
from features.exceptions import BundleError, InputError
from recommender.build import build_bundle
from recommender.evaluation.make_eval import make_eval, split_outfits, summary


def _toy():
    cat = pd.DataFrame({"item_id": list("abcdefgh"),
                        "category": ["top"] * 4 + ["bottom"] * 4,
                        "subcategory": ["Shirt"] * 4 + ["Jeans"] * 4})
    outfits = pd.DataFrame({"outfit_id": ["1", "1", "2", "2", "3", "3"],
                            "item_id": list("aebfcg")})
    return cat, outfits


def test_zero_holdout_trains_on_every_outfit_and_writes_empty_files():
    cat, outfits = _toy()
    ev = make_eval(outfits, cat, seed=0, test_fraction=0.0)
    assert sorted(ev.train_outfits["outfit_id"].unique()) == ["1", "2", "3"]
    assert ev.test_outfits.empty
    assert ev.fitb == ev.fitb_cold == ev.compatibility == ev.compatibility_hard == []
    assert "none held out" in summary(ev.info)
    # the usual split still holds some out
    assert not make_eval(outfits, cat, seed=0, test_fraction=0.4).test_outfits.empty


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.2", None])
def test_split_names_a_bad_fraction(bad):
    _, outfits = _toy()
    with pytest.raises(InputError, match="test_fraction must be in") as exc:
        split_outfits(outfits, bad)
    assert exc.value.field == "test_fraction"


@pytest.mark.parametrize("bad", [1.0, -0.5, True])
def test_build_refuses_a_bad_holdout_before_any_work(tmp_path, bad):
    out = tmp_path / "b"
    with pytest.raises(InputError, match="holdout must be a fraction") as exc:
        build_bundle(out, source="demo", items=50, holdout=bad, log=lambda m: None)
    assert exc.value.field == "holdout"
    assert not out.exists()


def test_cli_holdout_out_of_range_is_exit_2(tmp_path, capsys):
    assert main(["build", "--out", str(tmp_path / "b"), "--holdout", "1"]) == 2
    assert "holdout must be a fraction in [0, 1), got 1.0" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_rebuilt_with_holdout_zero_learns_from_every_outfit(demo_bundle, tmp_path):
    """The session's demo bundle (20% held out), rebuilt with ``holdout=0``: the split,
    the compatibility model and the graph learn from all outfits; the stages that do
    not read outfits are kept; what needs held-out outfits says so."""
    from recommender.bundle import Bundle
    from recommender.engine import Engine
    from recommender.evaluation.retrieval import evaluate_retrieval

    out = tmp_path / "all"
    shutil.copytree(demo_bundle, out)
    before = Bundle.open(out).manifest["stages"]
    n_outfits = pd.read_parquet(out / "outfits.parquet")["outfit_id"].nunique()
    assert pd.read_parquet(out / "eval" / "train_outfits.parquet")["outfit_id"].nunique() \
        < n_outfits
    # the same source folder as the original build, so only the holdout differs
    build_bundle(out, source="demo", data=demo_bundle / "source", items=300, seed=0,
                 quick=True, holdout=0, log=lambda m: None)
    after = Bundle.open(out).manifest["stages"]
    train = pd.read_parquet(out / "eval" / "train_outfits.parquet")
    assert train["outfit_id"].nunique() == n_outfits
    assert pd.read_parquet(out / "eval" / "test_outfits.parquet").empty
    assert (out / "eval" / "fitb.jsonl").read_text() == ""
    assert after["split"]["metrics"]["n_test_outfits"] == 0
    # outfit-free stages were not redone; the ones reading outfits were
    for stage in ("attributes", "features"):
        assert after[stage] == before[stage]
    for stage in ("split", "compatibility", "graph"):
        assert after[stage]["inputs_hash"] != before[stage]["inputs_hash"]
    metrics = after["compatibility"]["metrics"]
    assert not [k for k in metrics if k.startswith("test_")]
    json.dumps(metrics, allow_nan=False)  # no NaN from empty files in the manifest
    cfg = json.loads((out / "manifest.json").read_text())["config"]
    assert cfg["stages"]["split"]["test_fraction"] == 0.0
    # it serves: an item of an outfit that was held out before has history now
    engine = Engine.load(out)
    some = str(train["item_id"].iloc[0])
    assert engine.complements(some, k=2)["groups"]
    with pytest.raises(BundleError, match="holds out no outfits"):
        evaluate_retrieval(out, print_text=False)
