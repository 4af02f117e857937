"""The attribute sweep's learning-curve shares (benchmarks/attribute_sweep.py): a share
keeps whole models, is seeded, and a smaller share's models are a subset of a larger
one's, so the curve's points differ only by the data added; and its ``--set`` settings."""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "attribute_sweep.py"


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("attribute_sweep", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def table(n_models=40, seed=0):
    rng = np.random.default_rng(seed)
    codes = [f"M{m:03d}" for m in range(n_models) for _ in range(int(rng.integers(1, 4)))]
    return pd.DataFrame({"model_code": codes})


def test_a_share_keeps_whole_models_and_about_its_share_of_them(sweep):
    t = table()
    train = np.arange(len(t))
    rows = sweep.train_share(t, train, 0.5, seed=3)
    kept = set(t["model_code"].iloc[rows])
    assert len(kept) == 20
    # every row of a kept model is kept: colour variants stay together
    assert set(rows) == set(np.flatnonzero(t["model_code"].isin(kept)))


def test_shares_are_nested_seeded_and_one_keeps_everything(sweep):
    t = table()
    train = np.flatnonzero(np.arange(len(t)) % 5 != 0)   # a split's training rows
    quarter = sweep.train_share(t, train, 0.25, seed=1)
    half = sweep.train_share(t, train, 0.5, seed=1)
    assert set(quarter) < set(half) <= set(train)
    assert np.array_equal(half, sweep.train_share(t, train, 0.5, seed=1))
    assert not np.array_equal(half, sweep.train_share(t, train, 0.5, seed=2))
    assert np.array_equal(sweep.train_share(t, train, 1.0, seed=1), train)


def test_a_variant_reads_its_share_and_refuses_one_out_of_range(sweep):
    assert sweep.parse_variant("q50=160x112:39@0.5") == {
        "name": "q50", "size": (160, 112), "crop": None, "epochs": 39, "share": 0.5}
    assert sweep.parse_variant("b0=160x112+64:28")["share"] == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match="share 0 is not in"):
        sweep.parse_variant("q0=160x112:39@0")
    with pytest.raises(argparse.ArgumentTypeError, match="'q=160x112:39@half'"):
        sweep.parse_variant("q=160x112:39@half")
    # the child processes get the variant back as it was given
    v = [sweep.parse_variant("q50=160x112:39@0.5"), sweep.parse_variant("b0=96x64:3")]
    assert [sweep.parse_variant(a) for a in sweep.argv_variants(v)] == v


def test_a_setting_reads_its_json_value_and_reaches_the_child_unchanged(sweep):
    assert sweep.parse_setting("recolour=0.5") == ("recolour", 0.5)
    assert sweep.parse_setting("head_weights={\"colour\": 2}") == ("head_weights",
                                                                   {"colour": 2})
    assert sweep.parse_setting("optimizer=sgd") == ("optimizer", "sgd")
    with pytest.raises(argparse.ArgumentTypeError, match="'recolour' is not KEY=VALUE"):
        sweep.parse_setting("recolour")
    # the child processes get the settings back as they were given
    pairs = [("recolour", 0.5), ("optimizer", "sgd"), ("augment", False),
             ("head_weights", {"colour": 2})]
    assert [sweep.parse_setting(a) for a in sweep.argv_settings(pairs)] == pairs


def test_an_unknown_setting_is_refused_by_name_before_any_work(sweep, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        sweep.main(["--bundle", str(tmp_path / "none"), "--workdir", str(tmp_path / "w"),
                    "--set", "recolour=0.5", "recolur=0.5"])
    assert e.value.code == 2
    assert "--set 'recolur' is not an AttributeModel setting" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
