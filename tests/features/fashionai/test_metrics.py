"""FashionAI NE and attribute mAP: hand-worked cases and the real label files."""
import numpy as np
import pytest

from api.cli import main
from features.exceptions import InputError
from features.fashionai.io import (keypoints_from_arrays, keypoints_to_arrays,
                                   read_attribute_dir, read_keypoints_csv,
                                   write_keypoints_csv)
from features.fashionai.metrics import (attribute_ap, attribute_map, attribute_map_report,
                                        basic_precision, evaluate_keypoint_files,
                                        normalized_error)
from features.fashionai.schema import KEYPOINT_INDEX, KEYPOINT_NAMES, NORMALISING_PAIR

K = KEYPOINT_INDEX


def _table(rows):
    """rows: list of (image_id, category, {name: (x, y, v)})."""
    n = len(rows)
    xy = np.full((n, 24, 2), -1.0)
    vis = np.full((n, 24), -1)
    for i, (_, _, pts) in enumerate(rows):
        for name, (x, y, v) in pts.items():
            xy[i, K[name]] = (x, y)
            vis[i, K[name]] = v
    return keypoints_from_arrays([r[0] for r in rows], [r[1] for r in rows], xy, vis)


TRUTH = _table([
    # blouse: armpits 100 apart; neckline_left visible, cuff_left_in occluded
    ("b.jpg", "blouse", {"armpit_left": (100, 200, 1), "armpit_right": (200, 200, 0),
                         "neckline_left": (130, 100, 1), "cuff_left_in": (50, 300, 0)}),
    # trousers: waistband 40 apart; crotch visible
    ("t.jpg", "trousers", {"waistband_left": (10, 10, 1), "waistband_right": (50, 10, 1),
                           "crotch": (30, 80, 1)}),
])


def test_ne_hand_worked():
    pred = _table([
        ("t.jpg", "trousers", {"waistband_left": (10, 10, 1), "waistband_right": (50, 10, 1),
                               "crotch": (33, 84, 1)}),                      # off by 5
        ("b.jpg", "blouse", {"armpit_left": (106, 208, 1), "armpit_right": (200, 200, 1),
                             "neckline_left": (130, 100, 1),
                             "cuff_left_in": (0, 0, 1)}),                    # occluded: not scored
    ])
    r = normalized_error(TRUTH, pred)
    # blouse (s=100): armpit_left 10/100, neckline_left 0; armpit_right is occluded.
    # trousers (s=40): 0, 0, 5/40.
    assert r["n_keypoints"] == 5 and r["n_images"] == 2
    assert r["ne"] == pytest.approx((0.1 + 0 + 0 + 0 + 0.125) / 5, abs=1e-15)
    assert r["per_category"]["blouse"] == {"ne": pytest.approx(0.05), "n_keypoints": 2,
                                           "n_images": 1}
    assert r["per_category"]["trousers"]["ne"] == pytest.approx(0.125 / 3)
    assert r["n_skipped"] == 0 and r["n_extra_predictions"] == 0


def test_ne_is_a_mean_over_keypoints_not_images():
    pred = TRUTH.copy()
    pred.loc[pred["image_id"] == "t.jpg", "crotch_x"] += 40      # error 1.0 on 1 of 5 points
    assert normalized_error(TRUTH, pred)["ne"] == pytest.approx(1.0 / 5)


def test_missing_prediction_names_the_id():
    with pytest.raises(InputError, match=r"no prediction for 1 ground-truth image\(s\): t.jpg"):
        normalized_error(TRUTH, TRUTH.iloc[:1])


def test_duplicate_ids_are_refused():
    with pytest.raises(InputError, match="duplicated image_id"):
        normalized_error(TRUTH, TRUTH.iloc[[0, 0, 1]])


def test_uncomputable_normaliser_is_reported_and_skipped():
    truth = _table([
        ("s1.jpg", "skirt", {"waistband_left": (0, 0, 1), "hemline_left": (5, 50, 1)}),
        ("s2.jpg", "skirt", {"waistband_left": (7, 7, 1), "waistband_right": (7, 7, 1)}),
        ("s3.jpg", "skirt", {"waistband_left": (0, 0, 1), "waistband_right": (20, 0, 1),
                             "hemline_left": (0, 50, 1)}),
    ])
    pred = truth.copy()
    pred["hemline_left_x"] += 2
    r = normalized_error(truth, pred)
    assert [s["image_id"] for s in r["skipped"]] == ["s1.jpg", "s2.jpg"]
    assert "not annotated" in r["skipped"][0]["reason"]
    assert "distance 0" in r["skipped"][1]["reason"]
    assert r["n_images"] == 1 and r["n_keypoints"] == 3
    assert r["ne"] == pytest.approx((2 / 20) / 3)


def test_cli_says_how_many_images_were_skipped(tmp_path, capsys):
    truth = _table([
        ("s1.jpg", "skirt", {"waistband_left": (0, 0, 1), "hemline_left": (5, 50, 1)}),
        ("s3.jpg", "skirt", {"waistband_left": (0, 0, 1), "waistband_right": (20, 0, 1)}),
    ])
    write_keypoints_csv(truth, tmp_path / "t.csv")
    assert main(["evaluate", "--keypoints-truth", str(tmp_path / "t.csv"),
                 "--keypoints-pred", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "1 image(s) skipped" in out and "s1.jpg: waistband_left/waistband_right not " \
        "annotated" in out
    # a pair that is annotated but coincides is named as such, not as "not annotated"
    truth = _table([
        ("s2.jpg", "skirt", {"waistband_left": (7, 7, 1), "waistband_right": (7, 7, 1)}),
        ("s3.jpg", "skirt", {"waistband_left": (0, 0, 1), "waistband_right": (20, 0, 1)}),
    ])
    write_keypoints_csv(truth, tmp_path / "t2.csv")
    assert main(["evaluate", "--keypoints-truth", str(tmp_path / "t2.csv"),
                 "--keypoints-pred", str(tmp_path / "t2.csv")]) == 0
    out = capsys.readouterr().out
    assert "s2.jpg: waistband_left and waistband_right coincide (distance 0)" in out
    assert "not annotated" not in out


def test_extra_predictions_are_ignored_and_counted(tmp_path, capsys):
    extra = _table([("zzz.jpg", "skirt", {})])
    import pandas as pd

    r = normalized_error(TRUTH, pd.concat([TRUTH, extra], ignore_index=True))
    assert r["ne"] == 0.0 and r["n_extra_predictions"] == 1
    # the CLI's text says so too (it was in --json only: a file of other images
    # looked like a complete submission)
    write_keypoints_csv(TRUTH, tmp_path / "t.csv")
    write_keypoints_csv(pd.concat([TRUTH, extra], ignore_index=True), tmp_path / "p.csv")
    assert main(["evaluate", "--keypoints-truth", str(tmp_path / "t.csv"),
                 "--keypoints-pred", str(tmp_path / "p.csv")]) == 0
    assert "1 predicted image(s) not in the ground truth, ignored" in capsys.readouterr().out
    assert main(["evaluate", "--keypoints-truth", str(tmp_path / "t.csv"),
                 "--keypoints-pred", str(tmp_path / "t.csv")]) == 0
    assert "not in the ground truth" not in capsys.readouterr().out


def test_files_and_cli(tmp_path, capsys):
    write_keypoints_csv(TRUTH, tmp_path / "t.csv")
    pred = TRUTH.copy()
    pred["crotch_y"] += 4
    write_keypoints_csv(pred, tmp_path / "p.csv")
    r = evaluate_keypoint_files(tmp_path / "t.csv", tmp_path / "p.csv")
    assert r["ne"] == pytest.approx((4 / 40) / 5)
    assert main(["evaluate", "--keypoints-truth", str(tmp_path / "t.csv"),
                 "--keypoints-pred", str(tmp_path / "p.csv")]) == 0
    assert "keypoint NE: 0.0200 over 5 keypoints" in capsys.readouterr().out



@pytest.mark.parametrize("cell, said", [
    ("1_x_1", "line 2: keypoint waistband_left cell '1_x_1' is not x_y_visibility"),
    ("inf_3_1", "line 2: keypoint waistband_left cell 'inf_3_1' is not x_y_visibility"),
    ("1_2_7", "line 2: keypoint waistband_left visibility 7 not in -1, 0, 1")])
def test_cli_names_the_file_with_the_bad_cell(tmp_path, capsys, cell, said):
    # before: "error: line 2: keypoint waistband_left cell ..." without saying whether
    # the truth or the prediction file held it (both are line-for-line alike), and
    # a cell like inf_3_1 printed numpy's "RuntimeWarning: invalid value encountered
    # in cast" above the message
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    write_keypoints_csv(TRUTH, good)
    text = good.read_text().splitlines()
    cells = text[1].split(",")
    cells[2 + KEYPOINT_NAMES.index("waistband_left")] = cell
    text[1] = ",".join(cells)
    bad.write_text("\n".join(text) + "\n")
    for truth, pred in ((good, bad), (bad, good)):
        assert main(["evaluate", "--keypoints-truth", str(truth),
                     "--keypoints-pred", str(pred)]) == 2
        err = capsys.readouterr().err
        assert err == f"mixmatch evaluate: error: {bad}: {said}\n"
    (bad).write_text("image_id,cat\n")
    assert main(["evaluate", "--keypoints-truth", str(good), "--keypoints-pred",
                 str(bad)]) == 2
    assert f"error: {bad}: keypoint CSV header must be" in capsys.readouterr().err

# -- the real train.csv, read once ---------------------------------------------------------
@pytest.fixture(scope="module")
def real_truth(request):
    d = request.getfixturevalue("fashionai_dir")
    return read_keypoints_csv(d / "keypoints" / "train.csv")


@pytest.mark.realdata
def test_real_truth_against_itself_is_exactly_zero(real_truth):
    r = normalized_error(real_truth, real_truth)
    assert r["ne"] == 0.0
    assert r["n_skipped"] == 275            # documented in features.fashionai.metrics
    assert {c: sum(s["image_category"] == c for s in r["skipped"])
            for c in NORMALISING_PAIR} == {"blouse": 61, "outwear": 63, "dress": 53,
                                           "skirt": 40, "trousers": 58}
    assert r["n_images"] == 63765 - 275 - 7   # 7 images have no visible point


@pytest.mark.realdata
def test_real_known_shift_gives_the_known_error(real_truth):
    dx, dy = 3, -4
    pred = real_truth.copy()
    xy, vis = keypoints_to_arrays(real_truth)
    for name in K:
        visible = pred[f"{name}_v"] == 1
        pred.loc[visible, f"{name}_x"] += dx
        pred.loc[visible, f"{name}_y"] += dy
    # the expected value, computed independently image by image
    cats = real_truth["image_category"].to_numpy()
    errors = []
    for i in range(len(real_truth)):
        a, b = (K[n] for n in NORMALISING_PAIR[cats[i]])
        if vis[i, a] == -1 or vis[i, b] == -1:
            continue
        s = float(np.hypot(*(xy[i, a] - xy[i, b])))
        errors += [np.hypot(dx, dy) / s] * int((vis[i] == 1).sum())
    r = normalized_error(real_truth, pred)
    assert r["n_keypoints"] == len(errors)
    assert r["ne"] == float(np.mean(errors))


# -- attribute mAP -----------------------------------------------------------------------------
def test_ap_hand_worked():
    # max probs 0.9 (y), 0.8 (n), 0.7 (y): P = 1, 1/2, 2/3 at the three thresholds
    labels = ["yn", "yn", "ny"]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    assert attribute_ap(labels, probs) == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
    assert basic_precision(labels, probs) == pytest.approx(2 / 3)


def test_maybe_labels_count_neither_right_nor_wrong():
    # the top row lands on 'm': the 0.95 threshold has no precision and is left out;
    # then P = 1 (0.9), 1/2 (0.8)
    labels = ["mn", "yn", "ny"]
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.8, 0.2]])
    assert attribute_ap(labels, probs) == pytest.approx(0.75)
    assert basic_precision(labels, probs) == pytest.approx(0.5)
    # an 'm' at another class than the predicted one changes nothing
    assert attribute_ap(["ym", "yn", "ny"], probs) == pytest.approx((1 + 1 + 2 / 3) / 3)


def test_ties_in_confidence_form_one_threshold():
    labels = ["yn", "ny", "yn"]
    probs = np.array([[0.8, 0.2], [0.8, 0.2], [0.6, 0.4]])
    # thresholds 0.8 (1 right of 2) and 0.6 (2 of 3)
    assert attribute_ap(labels, probs) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_map_is_the_plain_mean_over_tasks():
    labels = {"a": ["yn", "ny"], "b": ["yn", "yn", "ny"]}
    probs = {"a": np.array([[0.6, 0.4], [0.3, 0.7]]),
             "b": np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])}
    rep = attribute_map_report(labels, probs)
    assert rep["per_task"]["a"]["ap"] == 1.0
    assert rep["map"] == pytest.approx((1 + (1 + 1 / 2 + 2 / 3) / 3) / 2)
    assert attribute_map(labels, probs) == rep["map"]


def test_map_input_errors():
    with pytest.raises(InputError, match="must be 2 characters of y/m/n"):
        attribute_ap(["yx"], np.array([[0.5, 0.5]]))
    with pytest.raises(InputError, match="shape"):
        attribute_ap(["yn", "ny"], np.array([[0.5, 0.5]]))
    with pytest.raises(InputError, match="different tasks"):
        attribute_map({"a": ["yn"]}, {"b": np.array([[1.0, 0.0]])})
    with pytest.raises(InputError, match="every predicted class lands on an 'm'"):
        attribute_ap(["mn"], np.array([[0.9, 0.1]]))


@pytest.mark.realdata
def test_real_labels_perfect_and_uniform_scores(fashionai_dir):
    df = read_attribute_dir(fashionai_dir / "attributes")
    labels, perfect, flat = {}, {}, {}
    for task, part in df.groupby("task"):
        lab = part["labels"].tolist()
        labels[task] = lab
        perfect[task] = np.array([[c == "y" for c in s] for s in lab], dtype=float)
        flat[task] = np.ones((len(lab), len(lab[0])))
    assert attribute_map(labels, perfect) == 1.0
    # all-equal scores pick class 0 everywhere: one threshold, AP = BasicPrecision
    rep = attribute_map_report(labels, flat)
    for task, v in rep["per_task"].items():
        hits = np.array([s[0] for s in labels[task]])
        assert v["ap"] == v["basic_precision"] == pytest.approx(
            (hits == "y").sum() / (hits != "m").sum())


def test_ne_refuses_nan_coordinates_instead_of_returning_nan():
    pred = TRUTH.copy()
    pred["crotch_x"] = pred["crotch_x"].astype(float)
    pred.loc[pred["image_id"] == "t.jpg", "crotch_x"] = np.nan
    with pytest.raises(InputError, match=r"prediction.*t\.jpg.*crotch"):
        normalized_error(TRUTH, pred)
    truth = TRUTH.copy()
    truth["armpit_right_y"] = truth["armpit_right_y"].astype(float)
    truth.loc[truth["image_id"] == "b.jpg", "armpit_right_y"] = np.nan
    with pytest.raises(InputError, match=r"ground truth.*b\.jpg.*armpit_right"):
        normalized_error(truth, TRUTH)
    # a NaN where nothing is scored (an absent point) changes nothing
    pred = TRUTH.copy()
    pred["hemline_left_x"] = np.nan
    assert normalized_error(TRUTH, pred)["ne"] == 0.0
