"""Garment-level pooling over colour variants: which heads, and what pooling does."""
import numpy as np
import pandas as pd
import pytest

from features.attributes.evaluate import grouped_head_metrics
from features.attributes.grouping import garment_level_heads, pool_probabilities
from features.attributes.taxonomy import Taxonomy
from features.exceptions import InputError


def _variants(n_models=6):
    rows = []
    for m in range(n_models):
        for colour in ("red", "blue"):
            rows.append({"model_code": f"m{m}", "fabric": ["denim", "wool"][m % 2],
                         "colour": colour if m % 3 else "grey"})
    return pd.DataFrame(rows)


def test_heads_read_from_the_data():
    df = _variants()
    assert garment_level_heads(df[["fabric", "colour"]], df["model_code"]) == ["fabric"]
    # one disagreeing model in six is below 98% agreement
    df.loc[0, "fabric"] = "wool"
    assert garment_level_heads(df[["fabric"]], df["model_code"]) == []
    assert garment_level_heads(df[["fabric"]], df["model_code"], min_agreement=0.8) == ["fabric"]


def test_too_few_groups_is_no_evidence():
    df = _variants(3)
    assert garment_level_heads(df[["fabric"]], df["model_code"]) == []
    assert garment_level_heads(df[["fabric"]], [None] * len(df)) == []


def test_pooling_is_the_renormalised_geometric_mean():
    p = {"fabric": np.array([[0.6, 0.4], [0.2, 0.8], [0.9, 0.1]], np.float32),
         "colour": np.array([[0.7, 0.3], [0.1, 0.9], [0.5, 0.5]], np.float32)}
    out = pool_probabilities(p, ["a", "a", ""], ["fabric"])
    g = np.sqrt(np.array([0.6 * 0.2, 0.4 * 0.8]))
    np.testing.assert_allclose(out["fabric"][0], g / g.sum(), rtol=1e-6)
    np.testing.assert_allclose(out["fabric"][1], g / g.sum(), rtol=1e-6)
    np.testing.assert_array_equal(out["fabric"][2], p["fabric"][2])   # no group
    np.testing.assert_array_equal(out["colour"], p["colour"])         # not pooled
    assert out["fabric"].dtype == np.float32


def test_bad_inputs_named():
    p = {"fabric": np.ones((2, 2)) / 2}
    with pytest.raises(InputError) as e:
        pool_probabilities(p, ["a"], ["fabric"])
    assert e.value.field == "groups"
    with pytest.raises(InputError) as e:
        pool_probabilities(p, ["a", "a"], ["material"])
    assert "material" in str(e.value)


def test_metrics_report_pooled_and_per_image():
    train = _variants()
    tax = Taxonomy.from_labels(train[["fabric", "colour"]], ["fabric", "colour"])
    fab = tax.classes("fabric")
    rows = pd.DataFrame({"model_code": ["x", "x", "x"], "fabric": ["denim"] * 3,
                         "colour": ["red", "red", "blue"]})
    d = fab.index("denim")
    pf = np.full((3, 2), 0.1)
    pf[0, d] = pf[1, d] = 0.9          # two confident right answers ...
    pf[2, d], pf[2, 1 - d] = 0.45, 0.55  # ... and one hesitant wrong one
    pc = np.zeros((3, len(tax.classes("colour"))))
    for i, c in enumerate(rows["colour"]):
        pc[i, tax.classes("colour").index(c)] = 1.0
    targets, maybe = tax.encode(rows[["fabric", "colour"]])
    out = grouped_head_metrics(tax, {"fabric": pf, "colour": pc}, targets, maybe, rows, train)
    assert out["pooled_heads"] == ["fabric"]
    assert out["per_image"]["heads"]["fabric"]["accuracy"] == pytest.approx(2 / 3)
    assert out["heads"]["fabric"]["accuracy"] == 1.0
    assert out["heads"]["colour"]["accuracy"] == 1.0
    # without the group column the figures are the network's alone
    plain = grouped_head_metrics(tax, {"fabric": pf, "colour": pc}, targets, maybe,
                                 rows.drop(columns="model_code"), train)
    assert "per_image" not in plain and plain["heads"]["fabric"]["accuracy"] == pytest.approx(2 / 3)
