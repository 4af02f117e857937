import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from features.exceptions import InputError
from recommender.evaluation.metrics import fitb_accuracy, fitb_outcomes, roc_auc


def test_fitb_clear_winner_and_ties_hand_worked():
    scores = np.array([[0.9, 0.1, 0.2, 0.3],    # right, alone on top: 1
                       [0.5, 0.5, 0.1, 0.1],    # right, tied with one: expected 1/2
                       [0.2, 0.2, 0.2, 0.2],    # all tied: expected 1/4
                       [0.1, 0.9, 0.0, 0.0]])   # wrong: 0
    labels = np.array([0, 1, 3, 0])
    correct, expected = fitb_outcomes(scores, labels, seed=0)
    assert expected.tolist() == [1.0, 0.5, 0.25, 0.0]
    assert correct[0] and not correct[3]
    r = fitb_accuracy(scores, labels)
    assert r["expected_accuracy"] == pytest.approx((1 + 0.5 + 0.25) / 4)
    assert r["n"] == 4


def test_ties_broken_at_random_not_by_position():
    # an all-tied scorer must not get 100% because the answer comes first
    scores = np.zeros((4000, 4))
    labels = np.zeros(4000, int)
    r = fitb_accuracy(scores, labels, seed=1)
    assert r["expected_accuracy"] == 0.25
    assert abs(r["accuracy"] - 0.25) < 0.03
    # and the draws are fixed by the seed
    assert fitb_accuracy(scores, labels, seed=1) == r
    assert fitb_accuracy(scores, labels, seed=2)["accuracy"] != r["accuracy"]


def test_nan_scores_rank_last_and_bad_labels_rejected():
    correct, expected = fitb_outcomes(np.array([[np.nan, 0.1, 0.0, 0.0]]), np.array([1]))
    assert correct[0] and expected[0] == 1.0
    with pytest.raises(InputError):
        fitb_outcomes(np.zeros((1, 4)), np.array([4]))


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + 0.3 * y, 1)   # rounding makes many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.5, 0.5])) == 0.875
    assert np.isnan(roc_auc(np.ones(3), np.arange(3.0)))
