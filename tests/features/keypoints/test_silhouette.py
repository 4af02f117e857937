import numpy as np
import pytest

from features.exceptions import InputError
from features.fashionai.schema import CATEGORY_KEYPOINTS, KEYPOINT_INDEX as K, KEYPOINT_NAMES
from features.keypoints import category_for
from features.keypoints.silhouette import estimate_keypoints


def _trousers():
    m = np.zeros((200, 120), bool)
    m[20:80, 20:100] = True            # hips, waistband at row 20
    m[80:190, 20:56] = True            # left leg
    m[80:190, 64:100] = True           # right leg: gap 56..63 from row 80 down
    return m


def _tshirt():
    m = np.zeros((200, 160), bool)
    m[30:180, 50:110] = True           # torso 50..109, hem at 179
    m[30:60, 5:155] = True             # short sleeves spread out, underside at row 59
    m[20:30, 62:98] = True             # collar band: neckline corners at row 20
    return m


def test_only_category_points_are_set():
    for cat in ("blouse", "dress", "outwear", "skirt", "trousers"):
        xy, vis, conf = estimate_keypoints(_tshirt() if cat != "trousers" else _trousers(),
                                           cat)
        allowed = {K[n] for n in CATEGORY_KEYPOINTS[cat]}
        for i, name in enumerate(KEYPOINT_NAMES):
            if i not in allowed:
                assert vis[i] == -1 and conf[i] == 0 and (xy[i] == -1).all(), name
        assert ((conf >= 0) & (conf <= 1)).all()


def test_trousers_known_answers():
    xy, vis, conf = estimate_keypoints(_trousers(), "trousers")
    assert xy[K["waistband_left"]].tolist() == [20, 20]
    assert xy[K["waistband_right"]].tolist() == [99, 20]
    assert xy[K["crotch"]].tolist() == [59.5, 80]
    assert xy[K["bottom_left_out"]].tolist() == [20, 189]
    assert xy[K["bottom_left_in"]].tolist() == [55, 189]
    assert xy[K["bottom_right_in"]].tolist() == [64, 189]
    assert xy[K["bottom_right_out"]].tolist() == [99, 189]
    assert (vis[[K[n] for n in CATEGORY_KEYPOINTS["trousers"]]] == 1).all()


def test_trousers_without_gap_have_no_crotch():
    m = np.zeros((100, 60), bool)
    m[10:90, 10:50] = True
    xy, vis, conf = estimate_keypoints(m, "trousers")
    assert vis[K["crotch"]] == -1 and conf[K["crotch"]] == 0


def test_tshirt_known_answers():
    xy, vis, conf = estimate_keypoints(_tshirt(), "blouse")
    assert xy[K["armpit_left"]].tolist() == [50, 60]
    assert xy[K["armpit_right"]].tolist() == [109, 60]
    assert xy[K["top_hem_left"]].tolist() == [50, 179]
    assert xy[K["top_hem_right"]].tolist() == [109, 179]
    assert xy[K["neckline_left"]][1] == 20 and xy[K["neckline_right"]][1] == 20
    assert xy[K["shoulder_left"]].tolist() == [50, 30]
    # cuffs at the sleeve ends, out above in
    lo, li = xy[K["cuff_left_out"]], xy[K["cuff_left_in"]]
    assert lo.tolist() == [5, 30] and li[0] <= 8 and li[1] == 59
    ro, ri = xy[K["cuff_right_out"]], xy[K["cuff_right_in"]]
    assert ro.tolist() == [154, 30] and ri[0] >= 151 and ri[1] == 59


def test_hanging_sleeves_armpit_from_gap():
    m = np.zeros((200, 160), bool)
    m[30:180, 50:110] = True                  # torso
    m[30:50, 30:130] = True                   # shoulders/sleeve tops
    m[50:150, 30:45] = True                   # left sleeve hanging, gap 45..49
    m[50:150, 115:130] = True                 # right sleeve hanging
    xy, vis, conf = estimate_keypoints(m, "blouse")
    assert xy[K["armpit_left"]][1] == 50 and 45 <= xy[K["armpit_left"]][0] <= 49
    assert xy[K["armpit_right"]][1] == 50 and 110 <= xy[K["armpit_right"]][0] <= 114
    # within the cuff slab (3% of the garment height) of the sleeve end
    assert 143 <= xy[K["cuff_left_out"]][1] <= 149 and xy[K["cuff_left_out"]][0] < 38
    assert xy[K["cuff_left_in"]][0] > 38


def test_bad_input_and_empty_mask():
    with pytest.raises(InputError):
        estimate_keypoints(np.zeros((10, 10), bool), "hat")
    with pytest.raises(InputError):
        estimate_keypoints(np.zeros((10, 10, 3), bool), "skirt")
    xy, vis, conf = estimate_keypoints(np.zeros((10, 10), bool), "skirt")
    assert (vis == -1).all()


def test_category_for():
    assert category_for("top", "Shirt") == "blouse"
    assert category_for("outerwear", "Coats") == "outwear"
    assert category_for("bottom", "Skirts") == "skirt"
    assert category_for("bottom", "Shorts") == "trousers"
    assert category_for("dress", "Jumpsuit") == "dress"
    assert category_for("shoes", "") is None


def _flush_sleeve_top():
    """Hanging sleeves; the right one lies flush against the torso (no gap)."""
    m = np.zeros((200, 160), bool)
    m[30:180, 50:110] = True                  # torso 50..109
    m[30:50, 30:130] = True                   # shoulders/sleeve tops
    m[50:150, 30:45] = True                   # left sleeve hanging, gap 45..49
    m[50:150, 110:125] = True                 # right sleeve flush: no gap
    return m


def test_flush_sleeve_armpit_mirrors_the_other_side():
    xy, vis, conf = estimate_keypoints(_flush_sleeve_top(), "blouse")
    lx, ly = xy[K["armpit_left"]]
    assert ly == 50 and 45 <= lx <= 49
    # mirrored about the top rows' centre (30 + 129) / 2 = 79.5, same height
    assert xy[K["armpit_right"]].tolist() == [159 - lx, 50]
    assert conf[K["armpit_right"]] < conf[K["armpit_left"]]
    # the flush sleeve's cuff is found at its end, as long as the other sleeve
    assert 143 <= xy[K["cuff_right_out"]][1] <= 149 and xy[K["cuff_right_out"]][0] > 118
    assert vis[K["cuff_right_in"]] == 1


def test_sleeveless_cuffs_on_the_armhole_and_armpit_at_armhole_depth():
    # A sleeveless dress as the demo draws one (armpit width A = 100 px): straight
    # sides from the shoulders (row 20) past the armpits (row 70, no corner), in
    # to the waist (row 125) and flared below. FashionAI's cuffs of a sleeveless
    # garment are the armhole's ends: armpit (in) and shoulder (out).
    m = np.zeros((320, 200), bool)
    for y in range(20, 300):
        if y < 70:
            half = 52 - 2 * (y - 20) / 50
        elif y < 125:
            half = 50 - 6 * (y - 70) / 55
        else:
            half = 44 + 36 * (y - 125) / 175
        m[y, int(round(100 - half)):int(round(100 + half))] = True
    xy, vis, conf = estimate_keypoints(m, "dress")
    for side in ("left", "right"):
        ax, ay = xy[K[f"armpit_{side}"]]
        # near the armhole's depth (0.57 chest widths below the top), not at the
        # waist where the old rules put it
        assert abs(ay - 70) <= 0.1 * 100
        assert xy[K[f"cuff_{side}_in"]].tolist() == [ax, ay]
        assert xy[K[f"cuff_{side}_out"]].tolist() == xy[K[f"shoulder_{side}"]].tolist()
    assert abs(xy[K["waistline_left"]][1] - 125) <= 5     # rounded widths tie near it


def test_outwear_waistline_at_the_usual_waist_drop():
    # A straight-sided coat: no narrowest row; the waistline sits 0.6 armpit
    # widths below the armpits.
    m = np.zeros((300, 200), bool)
    m[40:280, 60:140] = True                  # body 60..139
    m[40:60, 30:170] = True                   # sleeve tops
    m[60:200, 30:50] = True                   # hanging sleeves, gaps 50..59, 140..149
    m[60:200, 150:170] = True
    xy, vis, conf = estimate_keypoints(m, "outwear")
    ay = xy[K["armpit_left"]][1]
    width = xy[K["armpit_right"]][0] - xy[K["armpit_left"]][0]
    assert ay == 60 and 80 <= width <= 100
    assert xy[K["waistline_left"]][1] == round(ay + 0.6 * width)
    assert xy[K["waistline_left"]][0] == 60 and xy[K["waistline_right"]][0] == 139


def test_crotch_apex_never_above_the_garment():
    # Trousers cropped at the waistband (the mask starts on row 0), the legs
    # parting in a V right under a 2-row waistband: the V's walls, extrapolated
    # upward, meet above the image. The crotch must stay on the garment (it was
    # put at y = -3.5, above the waistband and outside the image).
    m = np.zeros((80, 60), bool)
    m[0:70, 10:50] = True
    xs = np.arange(60)
    for y in range(2, 70):
        m[y, np.abs(xs - 29.5) < (y + 6) * 0.25] = False
    xy, vis, conf = estimate_keypoints(m, "trousers")
    cx, cy = xy[K["crotch"]]
    assert vis[K["crotch"]] == 1
    assert 0 <= cy <= 3 and 27 <= cx <= 32
    for i in np.nonzero(vis == 1)[0]:
        assert 0 <= xy[i, 0] <= 59 and 0 <= xy[i, 1] <= 79, KEYPOINT_NAMES[i]


@pytest.mark.parametrize("cat", ["blouse", "outwear", "dress", "skirt", "trousers"])
def test_one_row_mask_does_not_crash(cat):
    # A degenerate mask (a belt-like strip one row high) gets what points it can,
    # not a TypeError.
    m = np.zeros((50, 50), bool)
    m[25, 5:45] = True
    xy, vis, conf = estimate_keypoints(m, cat)
    assert ((conf >= 0) & (conf <= 1)).all()


@pytest.mark.parametrize("cat", ["blouse", "outwear", "dress"])
def test_top_in_two_pieces_keeps_points_on_the_image(cat):
    # A separate piece (hood, bow) above the body leaves empty rows inside the
    # garment's extent. Their missing contour must not read as x = -1: the right
    # armpit was put at (-1, 40), off the image on the wrong side.
    m = np.zeros((200, 160), bool)
    m[10:40, 40:120] = True
    m[45:190, 50:110] = True
    xy, vis, conf = estimate_keypoints(m, cat)
    for i in np.nonzero(vis == 1)[0]:
        assert 0 <= xy[i, 0] <= 159 and 0 <= xy[i, 1] <= 199, KEYPOINT_NAMES[i]
    assert xy[K["armpit_left"]][0] < 80 < xy[K["armpit_right"]][0]


def test_mirrored_armpit_stays_on_the_garment():
    # Only the left sleeve leaves a pocket and the top rows (a collar turned to
    # one side) put the symmetry axis far right: the mirrored right armpit was
    # put at x = 2 * 125 - 40 = 210, off this 160-px-wide image.
    m = np.zeros((200, 160), bool)
    m[20:40, 100:150] = True                  # collar, off centre
    m[40:180, 50:150] = True                  # body
    m[40:60, 20:50] = True                    # left sleeve top
    m[60:140, 20:35] = True                   # left sleeve hanging, pocket 35..49
    xy, vis, conf = estimate_keypoints(m, "blouse")
    assert vis[K["armpit_right"]] == 1
    for i in np.nonzero(vis == 1)[0]:
        assert 0 <= xy[i, 0] <= 159 and 0 <= xy[i, 1] <= 199, KEYPOINT_NAMES[i]


def _wedge_trousers(slope, top=130):
    """Trousers 200 rows high whose legs part in a narrow wedge opening from
    row ``top`` down: 3 px wide there, each wall ``slope`` px further out per row."""
    m = np.zeros((230, 140), bool)
    m[10:210, 20:120] = True
    xs = np.arange(140)
    for y in range(top, 210):
        m[y, np.abs(xs - 69.5) < 1.5 + slope * (y - top)] = False
    return m


@pytest.mark.parametrize("slope", [0.0315, 0.032, 0.034, 0.04])
def test_crotch_does_not_jump_when_one_pixel_of_the_gap_changes(slope):
    # Walls that diverge slowly meet far above the gap's first row; the crotch
    # was either that meeting point or the first row, by a hard cut, so one
    # background pixel more on a wall moved it by 41 rows (20% of the height).
    m = _wedge_trousers(slope)
    ref = estimate_keypoints(m, "trousers")[0][K["crotch"]]
    for y in range(131, 170, 3):
        gap = np.nonzero(~m[y, 20:120])[0] + 20
        for x in (gap.min() - 1, gap.max() + 1):
            m2 = m.copy()
            m2[y, x] = False
            c = estimate_keypoints(m2, "trousers")[0][K["crotch"]]
            assert np.hypot(*(c - ref)) < 0.03 * 200, (y, x, ref, c)


def _belted_trousers(label_rows):
    """Trousers with a belt's end hanging beside the left leg (a pocket deeper
    than the central gap) and a label sticking ``label_rows`` rows up at the right."""
    m = np.zeros((220, 130), bool)
    m[30:90, 20:100] = True             # hips, waistband at row 30
    m[90:200, 20:56] = True             # left leg
    m[90:200, 64:100] = True            # right leg: gap 56..63 from row 90 down
    m[40:170, 10:14] = True             # the belt's end
    m[40:44, 14:20] = True              # ... joined to the waist
    m[30 - label_rows:30, 88:92] = True
    return m


@pytest.mark.parametrize("label_rows", [1, 2, 3])
def test_crotch_stays_central_whatever_a_label_on_the_waistband(label_rows):
    # The centre line was the midpoint of the one row under the top: the label's
    # when it stuck up two rows or more. The central gap was then too far from
    # it, and the crotch went to the top of the belt's pocket at (16.5, 44).
    xy, vis, conf = estimate_keypoints(_belted_trousers(label_rows), "trousers")
    assert xy[K["crotch"]].tolist() == [59.5, 90]


@pytest.mark.parametrize("thread_rows", [0, 1, 2, 3])
def test_leg_opening_ignores_a_thread_hanging_below_the_hem(thread_rows):
    # A thread (or a ragged hem's last pixels) hanging below the left leg at its
    # outer edge: the leg's points were read on the row 2 rows above its lowest
    # pixel, the thread's once it hung 3 rows, and bottom_left_in went from the
    # gap (55) to the thread (22).
    m = _trousers()
    m[190:190 + thread_rows, 20:23] = True
    xy, vis, conf = estimate_keypoints(m, "trousers")
    assert xy[K["bottom_left_out"]].tolist() == [20, 189]
    assert xy[K["bottom_left_in"]].tolist() == [55, 189]
    assert xy[K["bottom_right_in"]].tolist() == [64, 189]
