import numpy as np
import pandas as pd
import pytest

from features.colour import (COLOUR_GROUPS, colour_group, colourfulness,
                             dominant_colours, nearest_group)
from features.exceptions import InputError
from features.imaging import lab_to_rgb, load_rgb, rgb_to_lab
from features.mask import garment_mask


def test_dominant_colours_known_answer():
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20] = (200, 30, 30)     # 50%
    img[:, 20:30] = (30, 30, 200)   # 25%
    img[:, 30:] = (250, 250, 250)   # 25%
    cols = dominant_colours(img, np.ones((40, 40), bool), k=3)
    assert len(cols) == 3
    ws = [c[3] for c in cols]
    assert ws[0] == pytest.approx(0.5, abs=0.03) and sum(ws) == pytest.approx(1.0)
    np.testing.assert_allclose(cols[0][:3], rgb_to_lab(np.array([200, 30, 30], np.uint8)),
                               atol=1.0)
    assert ws == sorted(ws, reverse=True)


def test_dominant_colours_is_deterministic_and_respects_mask():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)
    m = np.zeros((60, 60), bool)
    m[10:50, 10:50] = True
    img[m] = (20, 120, 40)
    a = dominant_colours(img, m, k=3)
    assert a == dominant_colours(img, m, k=3)
    assert len(a) == 1 and a[0][3] == 1.0  # one colour inside the mask
    assert dominant_colours(img, np.zeros((60, 60), bool)) == []
    with pytest.raises(InputError):
        dominant_colours(img, m, k=0)
    with pytest.raises(InputError):
        dominant_colours(img, m[:10], k=3)


@pytest.mark.parametrize("rgb,group", [
    ((15, 15, 15), "GREY"), ((128, 128, 130), "GREY"), ((250, 250, 248), "WHITE"),
    ((225, 210, 185), "WHITE"), ((25, 35, 70), "BLUE"), ((90, 140, 200), "BLUE"),
    ((100, 65, 40), "BROWN"), ((30, 130, 60), "GREEN"), ((190, 30, 40), "RED"),
    ((240, 130, 30), "ORANGE"), ((240, 160, 190), "PINK"), ((110, 50, 140), "PURPLE"),
    ((240, 210, 40), "YELLOW"),
])
def test_colour_group_of_plain_colours(rgb, group):
    lab = rgb_to_lab(np.array(rgb, np.uint8))
    assert nearest_group(*lab) == group
    assert colour_group([(*lab, 1.0)]) == group


# Lab values as packshots read them: a navy garment photographs at L 10-15 with
# a chroma of only 7-9 (a dark colour cannot be more chromatic), black at L 6-20
# with a chroma under 3, often slightly blue.
@pytest.mark.parametrize("lab,group", [
    ((12, 2, -8), "BLUE"), ((13, 1, -7), "BLUE"),      # navy / marino
    ((25, 15, -18), "PURPLE"),                          # dark purple, not navy
    ((19, -11, 0), "GREEN"), ((20, -8, 2), "GREEN"),    # bottle green, not black
])
def test_dark_colours_are_told_from_black_by_saturation(lab, group):
    assert nearest_group(*lab) == group
    assert colour_group([(*lab, 0.7), (95, 0, 2, 0.3)]) == group


@pytest.mark.parametrize("lab,group", [
    ((25, 4, -20), "BLUE"), ((30, 2, -25), "BLUE"), ((15, 2, -9), "BLUE"),  # navy
    ((90, 0, 6), "WHITE"), ((87, 1, 12), "WHITE"), ((85, 3, 18), "WHITE"),  # cream, ecru
    ((11, 1, -1), "GREY"), ((7, 0, -3), "GREY"), ((11, 1.5, -3), "GREY"),   # black
    ((20, 1, -2), "GREY"), ((55, 0, -1), "GREY"),                           # charcoal, grey
    ((35, 25, -25), "PURPLE"), ((85, -5, 70), "YELLOW"), ((90, -5, 30), "YELLOW"),
])
def test_neutrals_creams_and_clear_hues_keep_their_groups(lab, group):
    assert nearest_group(*lab) == group


def test_colour_group_votes_by_weight():
    black, white = (12, 0, 0), (95, 0, 2)
    assert colour_group([(*black, 0.6), (*white, 0.4)]) == "GREY"
    assert colour_group([(*white, 0.3), (*black, 0.2), (95, 0, 3, 0.5)]) == "WHITE"
    assert colour_group([]) == ""
    assert set(COLOUR_GROUPS) >= {colour_group([(L, a, b, 1)]) for L in (20, 60, 90)
                                  for a in (-40, 0, 40) for b in (-40, 0, 40)}


def test_colourfulness_orders():
    grey = np.full((8, 8, 3), 120, np.uint8)
    red = np.zeros((8, 8, 3), np.uint8)
    red[...] = (220, 20, 20)
    assert colourfulness(grey) == 0.0 and colourfulness(red) > 50
    assert np.isnan(colourfulness(red, np.zeros((8, 8), bool)))


@pytest.mark.realdata
def test_mango_sample_colour_agreement(mango_dir):
    prod = pd.read_csv(mango_dir / "product_data.csv").sample(40, random_state=2)
    agree = n = 0
    for f, label in zip(prod["des_filename"], prod["des_agrup_color_eng"]):
        p = mango_dir / "images" / f.split("/")[-1]
        if not p.is_file():
            continue
        rgb = load_rgb(p)
        r = garment_mask(rgb)
        agree += colour_group(dominant_colours(rgb, r.mask)) == label
        n += 1
    # full catalogue: ~0.8; a 40-image sample is noisy
    assert agree / n >= 0.6
