import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from features.exceptions import InputError
from features.imaging import load_rgb
from features.mask import garment_mask, mask_checks, quality_from_checks, sanity_failures
from tests.features.synth import iou, packshot


@pytest.mark.parametrize("shape,fg", [
    ("rect", (40, 60, 150)), ("tshirt", (180, 30, 40)), ("trousers", (30, 30, 30)),
])
def test_known_masks(shape, fg):
    img, truth = packshot(shape=shape, fg=fg, vignette=0.15)
    r = garment_mask(img)
    assert r.mask.shape == truth.shape and r.mask.dtype == bool
    assert iou(r.mask, truth) > 0.95
    assert r.quality > 0.8 and not sanity_failures(r.checks)


def test_gap_between_trouser_legs_stays_background():
    img, truth = packshot(shape="trousers", fg=(30, 30, 30))
    r = garment_mask(img)
    h, w = truth.shape
    gap = ~truth[int(0.5 * h):int(0.85 * h), int(0.48 * w):int(0.52 * w)]
    assert gap.all()
    assert not r.mask[int(0.5 * h):int(0.85 * h), int(0.49 * w):int(0.51 * w)].any()


def test_thin_jewellery_is_kept():
    img, truth = packshot(shape="ring", fg=(200, 160, 60), h=200, w=200)
    r = garment_mask(img)
    assert r.mask[truth].mean() > 0.9          # the 3-px loop survives
    # its inside stays background (no blind hole filling)
    assert not r.mask[90:110, 90:110].any()


def test_white_on_light_background():
    img, truth = packshot(shape="tshirt", bg=(236, 233, 226), fg=(246, 246, 244),
                          noise=1.0)
    # a faint outline, as packshot lighting gives a white garment
    edge = truth & ~ndi.binary_erosion(truth, iterations=2)
    img[edge] = (215, 213, 208)
    r = garment_mask(img)
    assert iou(r.mask, truth) > 0.9


def test_shadow_below_object_removed():
    img, truth = packshot(shape="rect", fg=(150, 40, 40), noise=0.5)
    h, w = truth.shape
    # soft grey shadow under the object, fading out
    ys = np.arange(3 * h // 4, 3 * h // 4 + 14)
    for k, y in enumerate(ys):
        img[y, w // 4: 3 * w // 4] = np.clip(img[y, w // 4: 3 * w // 4].astype(int)
                                              - (18 - k), 0, 255)
    r = garment_mask(img)
    assert iou(r.mask, truth) > 0.93


def test_empty_image_scores_low():
    img = np.full((80, 60, 3), 240, np.uint8)
    r = garment_mask(img)
    assert r.quality < 0.2 and "area" in sanity_failures(r.checks)


def test_checks_and_quality_on_known_masks():
    m = np.zeros((100, 100), bool)
    m[20:80, 30:70] = True
    c = mask_checks(m)
    assert c["area"] == pytest.approx(0.24) and c["border_touch"] == 0
    assert c["fragments"] == 0 and c["solidity"] > 0.99
    assert quality_from_checks(c) == 1.0
    m2 = m.copy()
    m2[:, 0] = True  # a column along the border and a speck
    c2 = mask_checks(m2)
    assert c2["border_touch"] > 0.2 and "border_touch" in sanity_failures(c2)


def test_bad_input():
    with pytest.raises(InputError):
        garment_mask(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError):
        garment_mask(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.realdata
def test_mango_sample_sanity_rates(mango_dir):
    prod = pd.read_csv(mango_dir / "product_data.csv")
    prod = prod.sample(40, random_state=1)
    fails = 0
    for f in prod["des_filename"]:
        p = mango_dir / "images" / f.split("/")[-1]
        if not p.is_file():
            continue
        r = garment_mask(load_rgb(p))
        fails += bool(sanity_failures(r.checks))
    # measured on the full catalogue: about 1% fail; allow sampling noise
    assert fails <= 3


@pytest.mark.parametrize("box", [
    (slice(40, None), slice(30, 90)),     # a dress cropped at the bottom edge
    (slice(None, 120), slice(30, 90)),    # cropped at the top edge
    (slice(30, 130), slice(50, None)),    # cropped at the right edge
])
def test_garment_touching_one_border_is_found(box):
    # A tenth of the border band is garment: the robust background fit must not
    # be bent by it (it was: the first least-squares fit absorbed the garment's
    # colour, every border pixel then looked like background and the mask was
    # empty).
    h, w = 160, 120
    truth = np.zeros((h, w), bool)
    truth[box] = True
    rng = np.random.default_rng(0)
    img = np.where(truth[..., None], np.array([40, 60, 150.0]), np.array([238, 236, 232.0]))
    img = np.clip(np.round(img + rng.normal(0, 1.5, img.shape)), 0, 255).astype(np.uint8)
    r = garment_mask(img)
    assert iou(r.mask, truth) > 0.95


# -- cut-outs: the alpha is the mask ------------------------------------------------
@pytest.mark.parametrize("shape", ["rect", "tshirt", "trousers"])
@pytest.mark.parametrize("fg", [(255, 255, 255), (252, 251, 249), (243, 236, 220)])
def test_a_cutouts_alpha_is_its_mask(shape, fg):
    """A white or cream garment cut out on transparency is white on white once
    composited: the colours find nothing (IoU 0, quality 0 for pure white before the
    alpha was read). Its alpha is the mask."""
    from tests.features.synth import cutout, on_white

    rgba, truth = cutout(shape=shape, fg=fg)
    r = garment_mask(on_white(rgba), alpha=rgba[..., 3])
    assert r.method == "alpha" and r.mask.dtype == bool
    assert iou(r.mask, truth) == 1.0
    assert r.quality > 0.8 and r.tried == {"alpha": r.quality}


def test_alpha_is_garment_from_half_coverage():
    """Anti-aliased rim pixels at least half covered are garment; a cut-out tool's
    faint drop shadow (low alpha) is not."""
    from tests.features.synth import cutout, on_white

    rgba, truth = cutout(shape="rect")
    a = rgba[..., 3].copy()
    rim = truth & ~ndi.binary_erosion(truth)
    a[rim] = 140                                     # anti-aliased outline
    shadow = ndi.binary_dilation(truth, iterations=6) & ~truth
    a[shadow] = 60                                   # a soft drop shadow around it
    rgba[..., 3] = a
    r = garment_mask(on_white(rgba), alpha=a)
    assert r.method == "alpha" and iou(r.mask, truth) == 1.0


def test_an_alpha_without_transparency_is_not_a_mask():
    """An all-opaque alpha (or an all-transparent one) has no outline: the image's
    colours decide, exactly as without it."""
    img, truth = packshot(shape="tshirt", fg=(180, 30, 40))
    plain = garment_mask(img)
    for a in (np.full(truth.shape, 255, np.uint8), np.zeros(truth.shape, np.uint8)):
        r = garment_mask(img, alpha=a)
        assert r.method == plain.method == "classical"
        assert np.array_equal(r.mask, plain.mask) and r.quality == plain.quality


def test_a_cutout_trimmed_to_the_garment_keeps_its_alpha():
    """Cut-outs are often trimmed to the garment's bounds: touching every border is
    no leak there, so the alpha mask still scores high."""
    from tests.features.synth import cutout, on_white

    rgba, truth = cutout(shape="tshirt")
    ys, xs = np.nonzero(truth)
    rgba, truth = (rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1],
                   truth[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    r = garment_mask(on_white(rgba), alpha=rgba[..., 3])
    assert r.method == "alpha" and iou(r.mask, truth) == 1.0 and r.quality > 0.8


def test_a_degenerate_alpha_gives_way_to_a_better_classical_mask():
    """A photo whose only transparency is a thin frame (rounded corners, an export
    margin) is no cut-out: the alpha 'mask' is the whole frame, scores low, and the
    classical mask of the garment is kept; ``tried`` shows both."""
    img, truth = packshot(shape="tshirt", fg=(180, 30, 40))
    a = np.full(truth.shape, 255, np.uint8)
    a[:2], a[-2:], a[:, :2], a[:, -2:] = 0, 0, 0, 0
    r = garment_mask(img, alpha=a)
    assert r.method == "classical" and iou(r.mask, truth) > 0.95
    assert r.tried["alpha"] < r.quality


def test_an_alpha_of_another_size_is_refused():
    img, _ = packshot()
    with pytest.raises(InputError, match="alpha must be uint8") as e:
        garment_mask(img, alpha=np.zeros((10, 10), np.uint8))
    assert e.value.field == "alpha"
