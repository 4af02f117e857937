import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from features.exceptions import (InputError, NotFoundError, PayloadTooLarge,
                                 UnsupportedMediaType)
from features.imaging import (decode_upload, lab_to_rgb, load_rgb, resize_max_side,
                              resize_to, rgb_to_lab)
from tests.features.synth import cutout, iou


def _png(arr, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("rgb,lab", [
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((255, 0, 0), (53.24, 80.09, 67.20)),      # published sRGB D65 values
    ((0, 255, 0), (87.73, -86.18, 83.18)),
    ((0, 0, 255), (32.30, 79.19, -107.86)),
    ((128, 128, 128), (53.59, 0.0, 0.0)),
])
def test_rgb_to_lab_known_values(rgb, lab):
    out = rgb_to_lab(np.array(rgb, np.uint8))
    np.testing.assert_allclose(out, lab, atol=0.02)
    # float input 0..1 gives the same
    np.testing.assert_allclose(rgb_to_lab(np.array(rgb) / 255.0), lab, atol=0.02)


def test_lab_round_trip_is_exact_on_uint8():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(lab_to_rgb(rgb_to_lab(rgb)), rgb)


def test_rgb_to_lab_rejects_non_rgb():
    with pytest.raises(InputError):
        rgb_to_lab(np.zeros((4, 4, 2)))


def test_load_rgb(tmp_path):
    p = tmp_path / "a.png"
    rgba = np.zeros((30, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:15, :, 3] = 255  # lower half transparent -> composited on white
    Image.fromarray(rgba).save(p)
    out = load_rgb(p)
    assert out.shape == (30, 20, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [200, 0, 0] and out[-1, 0].tolist() == [255, 255, 255]
    assert load_rgb(p, max_side=15).shape == (15, 10, 3)
    with pytest.raises(NotFoundError):
        load_rgb(tmp_path / "missing.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError):
        load_rgb(bad)


def test_resize_helpers():
    m = np.zeros((100, 50), bool)
    m[:50] = True
    r = resize_max_side(m, 20)
    assert r.shape == (20, 10) and r.dtype == bool and r[:10].all() and not r[10:].any()
    assert resize_to(np.zeros((10, 10, 3), np.uint8), (5, 7)).shape == (5, 7, 3)
    assert resize_max_side(np.zeros((10, 10, 3), np.uint8), 50).shape == (10, 10, 3)


def test_decode_upload_ok_png_and_jpeg():
    arr = np.full((12, 9, 3), 77, np.uint8)
    np.testing.assert_array_equal(decode_upload(_png(arr)), arr)
    assert decode_upload(_png(arr, "JPEG")).shape == (12, 9, 3)


def test_decode_upload_refuses_non_images():
    with pytest.raises(UnsupportedMediaType):
        decode_upload(b"%PDF-1.4 hello")
    with pytest.raises(InputError):
        decode_upload(b"")


def test_decode_upload_refuses_truncated():
    data = _png(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8),
                "JPEG")
    with pytest.raises(InputError) as e:
        decode_upload(data[: len(data) // 2])
    assert not isinstance(e.value, UnsupportedMediaType)


def test_decode_upload_refuses_huge_declared_size_before_decoding():
    # A tiny PNG whose header declares 100000 x 100000: must be refused from the
    # header alone (decoding it would need 30 GB).
    import struct
    import zlib
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))
    with pytest.raises(PayloadTooLarge):
        decode_upload(data, max_pixels=25_000_000)
    # and a small real image over a small budget
    with pytest.raises(PayloadTooLarge):
        decode_upload(_png(np.zeros((40, 40, 3), np.uint8)), max_pixels=1000)


def test_16_bit_greyscale_keeps_its_tones(tmp_path):
    # 16-bit PNG/TIFF greyscale (scanners, some DAM exports) holds 0..65535: a
    # light background (60000) and a mid-grey garment (20000) must stay that.
    a = np.full((30, 20), 60000, np.uint16)
    a[5:25, 5:15] = 20000
    for name in ("g16.png", "g16.tif"):
        Image.fromarray(a).save(tmp_path / name)
        out = load_rgb(tmp_path / name)
        assert out.shape == (30, 20, 3) and out.dtype == np.uint8
        assert out[0, 0].tolist() == [233] * 3 and out[15, 10].tolist() == [78] * 3, name
    up = decode_upload((tmp_path / "g16.png").read_bytes())
    assert up[15, 10].tolist() == [78] * 3


def test_16_bit_greyscale_scaling_is_exact_for_every_sample_and_small_in_memory():
    """Every 16-bit value 0..65535 (and a big-endian TIFF's, and the clipped ones of
    an old Pillow's mode "I") maps to round(v / 257), as the float maths did; the
    conversion takes a few bytes per pixel, not float64 copies (24 per pixel: a
    12000 x 12000 scan was 3.5 GB at peak)."""
    import tracemalloc

    from features.imaging import pil_to_rgb_array

    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    want = np.rint(np.arange(65536) / 257.0).astype(np.uint8).reshape(256, 256)
    im = Image.fromarray(v)
    assert im.mode == "I;16"
    assert (pil_to_rgb_array(im) == want[..., None]).all()
    assert (pil_to_rgb_array(Image.frombytes("I;16B", (256, 256), v.astype(">u2").tobytes()))
            == want[..., None]).all()
    old = Image.fromarray(np.array([[-5, 0, 128, 129, 65535, 70000]], np.int32), "I")
    old.format = "PNG"                       # how an old Pillow opens a 16-bit PNG
    assert pil_to_rgb_array(old)[0, :, 0].tolist() == [0, 0, 0, 1, 255, 255]
    big = Image.fromarray(np.full((1000, 1000), 30000, np.uint16))
    tracemalloc.start()
    try:
        out = pil_to_rgb_array(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out[0, 0].tolist() == [117] * 3
    assert peak < 10 * 1000 * 1000, f"{peak / 1e6:.1f} bytes per pixel"


def _size_warned_catalogue(tmp_path):
    """A catalogue of one real JPEG (40 x 40) with PIL's warning size lowered below it:
    a 100-megapixel studio scan in small (past Image.MAX_IMAGE_PIXELS, under twice it,
    so PIL decodes it but warns DecompressionBombWarning on every open)."""
    p = tmp_path / "scan.jpg"
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(p)
    return pd.DataFrame({"item_id": ["a"], "category": ["top"], "subcategory": ["Shirts"],
                         "image_path": ["scan.jpg"]})


@pytest.mark.parametrize("loader", ["load_rgb", "load_rgb_shrunk", "decoding_stamp",
                                    "attribute_images", "keypoint_images", "features"])
def test_catalogue_image_past_pils_warning_size_opens_without_the_warning(tmp_path,
                                                                           monkeypatch,
                                                                           loader):
    """The catalogue's loaders decode such an image (only past twice the size is it
    refused): PIL's warning, once per image in `mixmatch features`, is noise there,
    and under warnings-as-errors it failed the image."""
    import warnings

    from features import imaging

    cat = _size_warned_catalogue(tmp_path)
    p = tmp_path / "scan.jpg"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        if loader == "load_rgb":
            assert imaging.load_rgb(p).shape == (40, 40, 3)
        elif loader == "load_rgb_shrunk":
            assert imaging.load_rgb(p, max_side=20).shape == (20, 20, 3)
        elif loader == "decoding_stamp":
            assert imaging.decoding_stamp(p) == ""
        elif loader == "attribute_images":
            from features.attributes.data import load_image
            assert load_image(p, (16, 16)).shape == (16, 16, 3)
        elif loader == "keypoint_images":
            from features.keypoints.heatmap import _prepare
            assert _prepare([p], (16, 12))[0].shape == (1, 16, 12, 3)
        else:
            from features.extract import extract_features
            s = extract_features(cat, tmp_path, tmp_path / "out", progress=False)
            assert s["n_failed"] == 0, s["failed_examples"]
    assert [str(w.message) for w in seen
            if issubclass(w.category, Image.DecompressionBombWarning)] == []
    with pytest.warns(Image.DecompressionBombWarning):   # PIL itself still warns
        Image.open(p).close()


class _OwnWarning(UserWarning):
    pass


@pytest.mark.parametrize("decoder", ["decode_upload", "load_rgb"])
def test_decoding_leaves_the_warning_filters_of_other_threads_alone(tmp_path, monkeypatch,
                                                                      decoder):
    """gunicorn's threads decode uploads while other threads (another upload, the
    model warm-up) set their own warning filters. catch_warnings swaps the one
    process-wide filter list and puts its copy back on exit: a decode that started
    before another thread's block and ended inside it dropped that thread's filter
    while its block ran, and the block's exit then left PIL's
    DecompressionBombWarning ignored for good. Decoding must not touch the list."""
    import threading
    import warnings

    from features import imaging

    data = _png(np.full((8, 8, 3), 90, np.uint8))
    (tmp_path / "x.png").write_bytes(data)
    inside, go_on = threading.Event(), threading.Event()
    real = imaging._rgb_image

    def held(im, **kw):  # the decode waits, in the middle, for the other thread's block
        inside.set()
        assert go_on.wait(10)
        return real(im, **kw)

    monkeypatch.setattr(imaging, "_rgb_image", held)
    out, errors = [], []

    def decode():
        try:
            out.append(imaging.decode_upload(data) if decoder == "decode_upload"
                       else imaging.load_rgb(tmp_path / "x.png"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    t = threading.Thread(target=decode)
    t.start()
    assert inside.wait(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _OwnWarning)   # this thread's own filter
        go_on.set()
        t.join(10)
        warnings.warn("still ignored", _OwnWarning)    # an error if the filter was lost
    assert not errors and out[0].shape == (8, 8, 3)
    assert [f for f in warnings.filters
            if f[2] is Image.DecompressionBombWarning and f[0] == "ignore"] == []


@pytest.mark.parametrize("body", [b"aB;", b"BM", b"\x89P", b"\x00"])
def test_an_upload_of_a_few_bytes_is_not_a_recognised_image(body):
    """A body shorter than the prefix some formats' accept tests read (BMP's reads 4
    bytes): PIL's Image.open counts that as "not this format"; the opener that
    replaced it (without PIL's size warning) let the struct.error out, a 500."""
    with pytest.raises(UnsupportedMediaType, match="not a recognised image"):
        decode_upload(body)


def test_decode_upload_turns_a_phone_photo_upright():
    """A portrait phone photo is stored as landscape pixels with EXIF orientation 6
    (turn 90 degrees clockwise to view): the analysis must see it as shown."""
    from PIL import Image
    stored = np.full((40, 80, 3), 255, np.uint8)
    stored[:, :20] = 0                      # dark band on the left of the stored pixels
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    out = decode_upload(buf.getvalue())
    assert out.shape == (80, 40, 3)         # portrait, as a browser shows it
    assert out[:20].mean() < 40 and out[30:].mean() > 215   # the band is now on top
    plain = io.BytesIO()
    im.save(plain, "JPEG", quality=95)      # no tag: pixels as stored
    assert decode_upload(plain.getvalue()).shape == (40, 80, 3)


def test_catalogue_photos_are_turned_upright_like_uploads(tmp_path):
    """A catalogue photo stored on its side with an EXIF orientation tag is read as a
    browser shows it by load_rgb (features, masks, contact sheet), as uploads are."""
    from features.imaging import decoding_stamp
    from tests.features.synth import turned_photo

    p = turned_photo(tmp_path / "turned.jpg")
    out = load_rgb(p)
    assert out.shape == (80, 40, 3)
    assert out[:20].mean() < 40 and out[30:].mean() > 215   # the band is on top
    small = load_rgb(p, max_side=40)
    assert small.shape == (40, 20, 3) and small[:10].mean() < 40
    # the caches and the image fingerprint see it; untagged and upright ones add nothing
    assert decoding_stamp(p) == "|exif6"
    assert decoding_stamp(turned_photo(tmp_path / "as_stored.jpg", 1)) == ""
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "plain.jpg")
    assert decoding_stamp(tmp_path / "plain.jpg") == ""
    assert decoding_stamp(tmp_path / "missing.jpg") == ""


def test_decode_upload_takes_a_multi_picture_jpeg_as_its_main_photo():
    """Many phones and cameras write JPEGs with a Multi-Picture (MPF) block (a depth
    map or preview after the main photo); PIL names their format "MPO". They are
    JPEG files a browser shows as the first picture, and must not be refused as an
    unknown format (415)."""
    main = np.full((40, 30, 3), (30, 60, 150), np.uint8)
    extra = np.full((40, 30, 3), (200, 0, 0), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(main).save(buf, "MPO", save_all=True,
                               append_images=[Image.fromarray(extra)], quality=95)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "MPO"           # what PIL makes of such a phone photo
    out = decode_upload(data)
    assert out.shape == (40, 30, 3)
    assert np.abs(out.astype(int) - main).max() <= 3    # the main photo, not the extra


def test_load_rgb_refuses_an_image_past_the_decoders_limit_naming_the_file(tmp_path):
    """A catalogue file whose header declares more pixels than PIL will decode (a
    decompression bomb, or a giant scan) is unreadable like a corrupt one: an
    InputError naming the file, which the features stage records for that item,
    not PIL's own exception."""
    from tests.features.synth import oversized_png

    p = oversized_png(tmp_path / "huge.png")
    with pytest.raises(InputError, match="huge.png") as e:
        load_rgb(p, max_side=512)
    assert "225000000 pixels" in str(e.value)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_load_rgb_shrinks_a_large_image_without_a_full_size_array(tmp_path, mode):
    """The features stage reads every packshot at max_side (512): a 12000 x 12000
    PNG scan peaked near 2 GB in a worker (the decoded image, an array of it, and a
    copy back to PIL to shrink it). Shrunk as a PIL image instead, no full-size
    array is made (numpy's allocations are what tracemalloc sees; a 1500 x 1500 RGB
    array is 6.75 MB), and the pixels are those resize_max_side gives."""
    import tracemalloc

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (30, 30, 4 if mode == "RGBA" else 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((1500, 1500), Image.NEAREST)
    p = tmp_path / "big.png"
    (im if mode != "L" else im.convert("L")).save(p)
    tracemalloc.start()
    try:
        out = load_rgb(p, max_side=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert peak < 1_000_000, f"{peak / 1e6:.1f} MB allocated while loading"
    np.testing.assert_array_equal(out, resize_max_side(load_rgb(p), 64))


@pytest.mark.parametrize("mode", ["F", "I"])
def test_32_bit_samples_are_refused_not_read_as_black_or_white(tmp_path, mode):
    """A TIFF with 32-bit float (mode F, light 0..1 by convention) or 32-bit integer
    samples (mode I, any range) has no one 8-bit reading: PIL's convert clips it,
    so a 0..1 float photo read all black and a 0..255000 one all white, and the
    analysis answered for a blank image. Refused, saying which kind of file works."""
    grey = np.full((30, 20), 0.9, np.float32)
    grey[5:25, 5:15] = 0.2
    im = Image.fromarray(grey if mode == "F" else (grey * 255_000).astype(np.int32))
    assert im.mode == mode
    p = tmp_path / "g32.tif"
    im.save(p)
    with pytest.raises(UnsupportedMediaType, match="32-bit") as e:
        decode_upload(p.read_bytes())
    assert e.value.field == "image"
    with pytest.raises(InputError, match="32-bit"):
        load_rgb(p)


@pytest.mark.parametrize("mode,key", [("RGB", (0, 0, 0)), ("L", 0)])
def test_a_transparent_colour_key_is_composited_on_white_like_alpha(tmp_path, mode, key):
    """A PNG may mark one colour transparent (tRNS) instead of carrying alpha: a
    cut-out saved so has a black background that browsers show as transparent.
    It is composited on white like alpha and palette transparency, not read as a
    garment on black."""
    a = np.zeros((30, 20, 3), np.uint8)
    a[5:25, 5:15] = (30, 60, 150)
    p = tmp_path / "keyed.png"
    Image.fromarray(a).convert(mode).save(p, transparency=key)
    garment = Image.fromarray(a).convert(mode).convert("RGB").getpixel((10, 15))
    for out in (load_rgb(p), decode_upload(p.read_bytes())):
        assert out[0, 0].tolist() == [255, 255, 255]
        assert out[15, 10].tolist() == list(garment)


def test_decoding_stamp_names_files_whose_decoding_changed(tmp_path):
    """Cache keys (features parts, the bundle's image fingerprint, decoded-image
    caches) add decoding_stamp: files of a kind whose decoding changed since such
    caches were made (a tRNS colour key once read opaque, 32-bit samples once clipped
    to a black or white image, an alpha cut-out or a colour key whose transparency
    is now its mask) are stamped, so their stale results are not reused; a plain
    JPEG (every MANGO image) or a 16-bit scan keeps an empty stamp, and its caches."""
    from features.imaging import DECODING_REVISIONS, decoding_stamp
    from tests.features.synth import turned_photo

    a = np.zeros((30, 20, 3), np.uint8)
    Image.fromarray(a).save(tmp_path / "plain.jpg")
    Image.fromarray(a).save(tmp_path / "keyed.png", transparency=(0, 0, 0))
    Image.fromarray(a).convert("L").save(tmp_path / "keyed_grey.png", transparency=0)
    Image.fromarray(a).convert("RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(np.zeros((30, 20), np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / "float.tif")
    key, deep = DECODING_REVISIONS["colour-key"], DECODING_REVISIONS["32-bit"]
    alpha = DECODING_REVISIONS["alpha"]
    assert key >= 3 and deep >= 2 and alpha >= 2  # 1: before each kind's decoding changed
    assert decoding_stamp(tmp_path / "keyed.png") == f"|colour-key@{key}"
    assert decoding_stamp(tmp_path / "keyed_grey.png") == f"|colour-key@{key}"
    assert decoding_stamp(tmp_path / "float.tif") == f"|32-bit@{deep}"
    assert decoding_stamp(tmp_path / "alpha.png") == f"|alpha@{alpha}"
    for name in ("plain.jpg", "g16.png", "missing.png"):
        assert decoding_stamp(tmp_path / name) == "", name
    assert decoding_stamp(turned_photo(tmp_path / "turned.jpg", 6)) == "|exif6"


def test_a_photo_past_pils_warning_size_is_refused_by_our_limit_and_words(tmp_path):
    """A 12000 x 12000 upload (144 M pixels: past PIL's DecompressionBombWarning
    size, 89 M) is refused by the service's own limit with its size and the limit,
    like a 9000 x 9000 one, not with PIL's "could be decompression bomb DOS attack"
    text, which accused a merchandiser's large photo of an attack."""
    from tests.features.synth import oversized_png

    data = oversized_png(tmp_path / "big.png", 12_000, 12_000).read_bytes()
    with pytest.raises(PayloadTooLarge) as e:
        decode_upload(data, max_pixels=25_000_000)
    assert str(e.value) == ("image is 12000x12000 = 144000000 pixels; at most 25000000 "
                            "are accepted")
    # past PIL's hard limit (2 x 89 M), PIL opens nothing: the limit is still named
    data = oversized_png(tmp_path / "huge.png").read_bytes()
    with pytest.raises(PayloadTooLarge, match="at most 25000000 are accepted") as e:
        decode_upload(data, max_pixels=25_000_000)
    assert "DOS attack" not in str(e.value)


# -- cut-outs: the transparency kept beside the composited image ------------------
def _cutout_file(tmp_path, fmt="PNG", mode="RGBA", name="cut"):
    rgba, m = cutout(fg=(252, 250, 246))
    p = tmp_path / f"{name}.{fmt.lower()}"
    im = Image.fromarray(rgba, "RGBA")
    if mode == "P":   # palette cut-out: one palette entry transparent
        im = im.convert("P", palette=Image.ADAPTIVE, colors=16)
        im.info["transparency"] = im.getpixel((0, 0))
        im.save(p, fmt, transparency=im.getpixel((0, 0)))
    elif mode == "LA":
        im.convert("LA").save(p, fmt)
    else:
        im.save(p, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return p, m


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGBA"), ("WEBP", "RGBA"), ("PNG", "LA"),
                                      ("PNG", "P")])
def test_a_cutouts_transparency_is_kept_beside_the_image(tmp_path, fmt, mode):
    """A transparent packshot keeps its alpha (the garment's outline) next to the RGB
    composited on white, which stays exactly what load_rgb and decode_upload give."""
    from features.imaging import decode_upload_alpha, load_rgb_alpha, pil_to_rgb_alpha

    p, m = _cutout_file(tmp_path, fmt, mode)
    rgb, alpha = load_rgb_alpha(p)
    assert np.array_equal(rgb, load_rgb(p))
    assert alpha.dtype == np.uint8 and alpha.shape == m.shape
    assert np.array_equal(alpha >= 128, m)
    rgb_u, alpha_u = decode_upload_alpha(p.read_bytes())
    assert np.array_equal(rgb_u, decode_upload(p.read_bytes()))
    assert np.array_equal(alpha_u, alpha)
    with Image.open(p) as im:
        rgb_p, alpha_p = pil_to_rgb_alpha(im)
    assert np.array_equal(rgb_p, rgb) and np.array_equal(alpha_p, alpha)
    # shrunk with the image, by the same filter
    small, a_small = load_rgb_alpha(p, max_side=60)
    assert np.array_equal(small, load_rgb(p, max_side=60))
    assert a_small.shape == small.shape[:2] == (60, 45)
    assert iou(a_small >= 128, resize_to(m, (60, 45))) > 0.95


def test_opaque_images_have_no_alpha(tmp_path):
    """No transparency, nothing more read: a JPEG, an RGB PNG, and a PNG saved with an
    alpha channel that is opaque everywhere (many editors do) give alpha None."""
    from features.imaging import decode_upload_alpha, load_rgb_alpha

    a = np.full((30, 20, 3), 200, np.uint8)
    a[5:25, 5:15] = 30
    Image.fromarray(a).save(tmp_path / "p.jpg")
    Image.fromarray(a).save(tmp_path / "p.png")
    Image.fromarray(np.dstack([a, np.full((30, 20), 255, np.uint8)]), "RGBA").save(
        tmp_path / "opaque.png")
    for name in ("p.jpg", "p.png", "opaque.png"):
        rgb, alpha = load_rgb_alpha(tmp_path / name)
        assert alpha is None and np.array_equal(rgb, load_rgb(tmp_path / name)), name
        assert decode_upload_alpha((tmp_path / name).read_bytes())[1] is None, name


def test_a_cutouts_alpha_is_turned_upright_with_it(tmp_path):
    """An EXIF orientation tag turns the transparency as it turns the colours."""
    from features.imaging import load_rgb_alpha

    px = np.zeros((40, 80, 4), np.uint8)
    px[:, :20] = (0, 0, 0, 255)          # an opaque band on the left of the stored pixels
    im = Image.fromarray(px, "RGBA")
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "turned.png", exif=exif.tobytes())
    rgb, alpha = load_rgb_alpha(tmp_path / "turned.png")
    assert rgb.shape == (80, 40, 3) and alpha.shape == (80, 40)
    assert alpha[:20].min() == 255 and alpha[30:].max() == 0   # the band is on top


# -- embedded colour profiles --------------------------------------------------
#: flat patches (8-bit values as stored in the file) of the profile tests: in-gamut
#: colours, a mid grey, white, black and each space's pure red (outside sRGB)
_PATCHES = np.array([(200, 120, 80), (40, 60, 150), (90, 160, 70), (128, 128, 128),
                     (255, 255, 255), (0, 0, 0), (255, 0, 0)], np.uint8)


def _patch_file(path, patches, mode="RGB", **save):
    """``patches`` side by side as 16 x 16 flat squares, saved at ``path``; returns
    the (row, column) of each patch's centre."""
    a = np.repeat(np.repeat(np.asarray(patches, np.uint8)[None], 16, 0), 16, 1)
    Image.fromarray(a, mode).save(path, **save)
    return [(8, 16 * i + 8) for i in range(len(patches))]


def _centres(rgb, centres):
    return np.array([rgb[r, c] for r, c in centres], int)


@pytest.mark.parametrize("space", ["P3", "ADOBE_RGB"])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_wide_gamut_photo_is_converted_to_srgb(tmp_path, space, fmt):
    """A phone photo in Display P3 or an Adobe RGB studio export stores its colours
    in that space and says so in an embedded ICC profile. Read as sRGB, a terracotta
    (200, 120, 80) in P3 came out (200, 120, 80) instead of about (213, 115, 70):
    every colour desaturated, and the colour features named that. Converted to sRGB
    as a browser shows it (expected values from the spaces' matrices)."""
    from features.imaging import decode_upload_alpha, load_rgb_alpha
    from tests.features import synth

    space = getattr(synth, space)
    p = tmp_path / f"wide.{fmt.lower()}"
    save = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    centres = _patch_file(p, _PATCHES, format=fmt, icc_profile=synth.rgb_icc_profile(space),
                          **save)
    expected = np.array([synth.expected_srgb(c, space) for c in _PATCHES])
    tol = 2 if fmt == "PNG" else 3                  # littlecms's rounding; JPEG's loss
    for rgb in (load_rgb(p), decode_upload(p.read_bytes()), load_rgb_alpha(p)[0],
                decode_upload_alpha(p.read_bytes())[0]):
        got = _centres(rgb, centres)
        np.testing.assert_allclose(got, expected, atol=tol)
        assert np.abs(got[:3] - _PATCHES[:3]).max() > 5       # not read as stored
        grey = got[3]
        assert grey.max() - grey.min() <= 1                    # grey stays grey
        assert got[6].tolist() == [255, 0, 0]                  # pure red: clipped to sRGB's


def test_a_wide_gamut_png_shrinks_like_its_full_size_reading(tmp_path):
    """load_rgb converts before it shrinks (the features read every packshot at
    512 px): the shrunk image is the full-size reading shrunk, and the conversion
    in place of a file's own pixels leaves a caller's open image alone."""
    from features.imaging import pil_to_rgb_array
    from tests.features import synth

    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    p = tmp_path / "big.png"
    Image.fromarray(px).resize((300, 400), Image.NEAREST).save(
        p, icc_profile=synth.rgb_icc_profile(synth.P3))
    np.testing.assert_array_equal(load_rgb(p, max_side=64),
                                  resize_max_side(load_rgb(p), 64))
    with Image.open(p) as im:
        im.load()
        before = np.asarray(im).copy()
        first = pil_to_rgb_array(im)
        np.testing.assert_array_equal(np.asarray(im), before)
        np.testing.assert_array_equal(pil_to_rgb_array(im), first)
    assert not np.array_equal(first, before)


@pytest.mark.parametrize("max_side", [None, 32])
def test_a_profiled_cmyk_jpeg_is_converted_to_srgb(tmp_path, max_side):
    """A print shop's CMYK JPEG with its press profile: PIL's naive CMYK -> RGB read
    full cyan as (0, 255, 255) and full black as (0, 0, 0), whatever the inks; the
    profile says cyan ink prints (0, 160, 230) and black ink (35, 31, 32). Shrunk
    (the JPEG decoded at a fraction of its size) or not."""
    from tests.features import synth

    inks = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0),
            (255, 255, 0, 0)]
    p = tmp_path / "print.jpg"
    centres = _patch_file(p, inks, "CMYK", quality=100,
                          icc_profile=synth.cmyk_icc_profile())
    expected = np.array([synth.cmyk_ink_srgb(c) for c in inks])
    rgb = load_rgb(p) if max_side is None else load_rgb(p, max_side=max_side)
    if max_side is not None:                              # 16 x 96 -> 5 x 32
        centres = [(r * 32 // 96, c * 32 // 96) for r, c in centres]
    for out in (rgb,) if max_side else (rgb, decode_upload(p.read_bytes())):
        np.testing.assert_allclose(_centres(out, centres), expected, atol=4)


def test_a_transparent_cutout_with_a_profile_converts_its_colours_not_its_alpha(tmp_path):
    """A P3 cut-out: its colours converted before compositing on white, its alpha
    (the garment mask) as stored."""
    from features.imaging import decode_upload_alpha, load_rgb_alpha
    from tests.features import synth

    rgba, m = cutout(fg=(200, 120, 80))
    p = tmp_path / "cut.png"
    Image.fromarray(rgba).save(p, icc_profile=synth.rgb_icc_profile(synth.P3))
    want = synth.expected_srgb((200, 120, 80), synth.P3)
    for rgb, alpha in (load_rgb_alpha(p), decode_upload_alpha(p.read_bytes())):
        np.testing.assert_array_equal(alpha, rgba[..., 3])
        np.testing.assert_allclose(rgb[m].mean(axis=0), want, atol=2)
        assert (rgb[~m] == 255).all()


def test_a_greyscale_image_with_a_grey_profile_is_converted(tmp_path):
    """A greyscale scan with a gamma 1.8 profile: its tones read through that curve."""
    from tests.features import synth

    levels = np.array([0, 64, 128, 192, 255], np.uint8)
    p = tmp_path / "grey.png"
    centres = _patch_file(p, levels, "L", icc_profile=synth.grey_icc_profile(1.8))
    got = _centres(load_rgb(p), centres)
    want = synth.srgb_encode(synth.decode_trc(levels, 1.8))
    np.testing.assert_allclose(got, np.repeat(want[:, None], 3, 1), atol=1)
    assert got[2, 0] > 140                         # 128 as stored would be 128


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_an_srgb_profile_leaves_the_pixels_as_they_were(tmp_path, fmt):
    """sRGB is what the decoders already assume: an image with an sRGB profile
    (most cameras and editors embed one) decodes bit for bit as without it, and
    keeps an empty stamp (its caches stand)."""
    from PIL import ImageCms

    from features.imaging import decoding_stamp

    rng = np.random.default_rng(1)
    px = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    profiled, plain = tmp_path / f"s.{fmt.lower()}", tmp_path / f"p.{fmt.lower()}"
    Image.fromarray(px).save(profiled, fmt, icc_profile=icc)
    Image.fromarray(px).save(plain, fmt)
    with Image.open(profiled) as im:
        assert im.info["icc_profile"]
    np.testing.assert_array_equal(load_rgb(profiled), load_rgb(plain))
    np.testing.assert_array_equal(decode_upload(profiled.read_bytes()),
                                  decode_upload(plain.read_bytes()))
    assert decoding_stamp(profiled) == ""


@pytest.mark.parametrize("icc", ["garbage", "truncated", "cmyk-on-rgb", "rgb-on-grey"])
def test_a_broken_or_mismatched_profile_decodes_as_before(tmp_path, icc):
    """A profile that littlecms cannot read, or one for another colour space than
    the image's, must not refuse the photo: it decodes as without a profile, with
    no exception or warning, and an empty stamp."""
    from features.imaging import decoding_stamp
    from tests.features import synth

    grey = icc == "rgb-on-grey"
    data = {"garbage": b"not a colour profile" * 20,
            "truncated": synth.rgb_icc_profile(synth.P3)[:300],
            "cmyk-on-rgb": synth.cmyk_icc_profile(),
            "rgb-on-grey": synth.rgb_icc_profile(synth.P3)}[icc]
    px = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    im = Image.fromarray(px).convert("L") if grey else Image.fromarray(px)
    bad, plain = tmp_path / "bad.png", tmp_path / "plain.png"
    im.save(bad, icc_profile=data)
    im.save(plain)
    np.testing.assert_array_equal(load_rgb(bad), load_rgb(plain))
    np.testing.assert_array_equal(decode_upload(bad.read_bytes()), load_rgb(plain))
    assert decoding_stamp(bad) == ""


def test_decoding_stamp_names_files_converted_from_their_profile(tmp_path):
    """Images whose profile is now converted were decoded differently before: their
    caches rerun once (``|icc@n``, after any other part of the stamp)."""
    from features.imaging import DECODING_REVISIONS, decoding_stamp
    from tests.features import synth

    n, alpha = DECODING_REVISIONS["icc"], DECODING_REVISIONS["alpha"]
    p3 = synth.rgb_icc_profile(synth.P3)
    a = np.zeros((30, 20, 3), np.uint8)
    Image.fromarray(a).save(tmp_path / "p3.jpg", icc_profile=p3)
    Image.fromarray(a).convert("RGBA").save(tmp_path / "p3.png", icc_profile=p3)
    Image.fromarray(a).convert("CMYK").save(tmp_path / "cmyk.jpg",
                                            icc_profile=synth.cmyk_icc_profile())
    Image.fromarray(a).convert("CMYK").save(tmp_path / "naive.jpg")
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "turned.jpg", exif=exif.tobytes(), icc_profile=p3)
    assert n >= 1
    assert decoding_stamp(tmp_path / "p3.jpg") == f"|icc@{n}"
    assert decoding_stamp(tmp_path / "p3.png") == f"|alpha@{alpha}|icc@{n}"
    assert decoding_stamp(tmp_path / "cmyk.jpg") == f"|icc@{n}"
    assert decoding_stamp(tmp_path / "turned.jpg") == f"|exif6|icc@{n}"
    assert decoding_stamp(tmp_path / "naive.jpg") == ""


@pytest.mark.realdata
def test_mango_photos_with_an_srgb_profile_keep_their_pixels_and_stamp(mango_dir,
                                                                       monkeypatch):
    """54 MANGO packshots embed the 3,144-byte sRGB IEC61966-2.1 profile: they must
    decode exactly as before profiles were read, with an empty stamp, so a built
    MANGO bundle's features and attribute caches stand."""
    from features import imaging

    profiled = []
    for p in sorted((mango_dir / "images").glob("*.jpg")):
        with Image.open(p) as im:
            if im.info.get("icc_profile"):
                profiled.append(p)
                if len(profiled) == 4:
                    break
    if not profiled:
        pytest.skip("no MANGO image with a colour profile")
    now = [(imaging.load_rgb(p), imaging.load_rgb(p, max_side=128),
            imaging.decode_upload(p.read_bytes()), imaging.decoding_stamp(p))
           for p in profiled]
    monkeypatch.setattr(imaging, "_srgb_transform", lambda im: None)  # profiles ignored
    for p, (full, small, upload, stamp) in zip(profiled, now):
        assert stamp == "", p.name
        np.testing.assert_array_equal(full, imaging.load_rgb(p))
        np.testing.assert_array_equal(small, imaging.load_rgb(p, max_side=128))
        np.testing.assert_array_equal(upload, imaging.decode_upload(p.read_bytes()))


# -- colours described without a profile: EXIF Adobe RGB, PNG gAMA/cHRM -----------
#: flat patches of the tests below: saturated in-gamut colours, a mid grey, white
#: and black (8-bit values as stored in the file)
_DESCRIBED = np.array([(200, 120, 80), (40, 60, 150), (90, 160, 70), (128, 128, 128),
                       (255, 255, 255), (0, 0, 0)], np.uint8)


def _all_decoders(p):
    """The file at ``p`` as each decoder gives it: catalogue (whole, with alpha)
    and upload (whole, with alpha, shrunk at a max_side it is under)."""
    from features.imaging import decode_upload_alpha, decode_upload_shrunk, load_rgb_alpha

    data = p.read_bytes()
    return [load_rgb(p), load_rgb_alpha(p)[0], load_rgb(p, max_side=4096),
            decode_upload(data), decode_upload_alpha(data)[0],
            decode_upload_shrunk(data, max_side=4096)[0]]


def test_an_adobe_rgb_jpeg_said_in_exif_only_is_converted_to_srgb(tmp_path):
    """Canon, Nikon and Sony cameras in Adobe RGB mode embed no profile: EXIF
    ColorSpace 0xFFFF ("uncalibrated") and the interoperability index R03 say Adobe
    RGB. Read as sRGB, the terracotta (200, 120, 80) stayed (200, 120, 80) instead of
    about (224, 121, 77), every colour desaturated. Expected values worked out from
    the spaces' matrices (gamma 563/256 -> XYZ -> linear sRGB -> sRGB's curve)."""
    from tests.features import synth

    p = tmp_path / "camera.jpg"
    centres = _patch_file(p, _DESCRIBED, quality=100, subsampling=0,
                          exif=synth.exif_colour_space(0xFFFF, "R03"))
    with Image.open(p) as im:                         # as a camera writes it
        assert "icc_profile" not in im.info
        assert im.getexif().get_ifd(0xA005)[0x0001] == "R03"
    expected = np.array([synth.expected_srgb(c, synth.ADOBE_RGB) for c in _DESCRIBED])
    assert np.round(expected[0]).tolist() == [224, 121, 77]     # the matrices' answer
    for rgb in _all_decoders(p):
        got = _centres(rgb, centres)
        np.testing.assert_allclose(got, expected, atol=2)
        assert np.abs(got[:3] - _DESCRIBED[:3]).max() > 15           # not read as stored
        assert got[3].max() - got[3].min() <= 1 and got[3, 0] == 129  # grey stays grey


@pytest.mark.parametrize("colour_space,index", [(1, None), (1, "R98"), (1, "R03"),
                                                (0xFFFF, "R98"), (0xFFFF, None)])
def test_a_jpeg_whose_exif_says_srgb_or_no_space_decodes_as_before(tmp_path, colour_space,
                                                                    index):
    """ColorSpace 1 is sRGB (whatever the index); "uncalibrated" with the index R98
    (sRGB's) or none names no colour space: all decode bit for bit as the same JPEG
    without EXIF, with an empty stamp."""
    from features.imaging import decoding_stamp
    from tests.features import synth

    px = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    tagged, plain = tmp_path / "tagged.jpg", tmp_path / "plain.jpg"
    Image.fromarray(px).save(tagged, quality=95,
                             exif=synth.exif_colour_space(colour_space, index))
    Image.fromarray(px).save(plain, quality=95)
    want = load_rgb(plain)
    for rgb in _all_decoders(tagged):
        np.testing.assert_array_equal(rgb, want)
    assert decoding_stamp(tagged) == ""


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
def test_a_linear_light_png_is_converted_to_srgb(tmp_path, mode):
    """Some renderers write linear-light PNGs and say so with gAMA 1.0 (stored
    100000). Read as sRGB they were far too dark: a mid grey 128 (half the light)
    shows as about 188 in a browser, and stayed 128."""
    from tests.features import synth

    p = tmp_path / "linear.png"
    patches = _DESCRIBED[:, 0] if mode == "L" else _DESCRIBED
    centres = _patch_file(p, patches, "L" if mode == "L" else "RGB")
    with Image.open(p) as im:   # the same patches as a palette, with an opaque alpha
        im.load()
        im = {"P": lambda: im.quantize(8, dither=Image.Dither.NONE),
              "RGBA": lambda: im.convert("RGBA")}.get(mode, lambda: im.copy())()
    im.save(p, pnginfo=synth.png_colour_chunks(gama=100000))
    with Image.open(p) as im:
        assert im.mode == mode and im.info["gamma"] == 1.0
        np.testing.assert_array_equal(_centres(np.asarray(im.convert("RGB")), centres),
                                      np.repeat(patches[:, None], 3, 1) if mode == "L"
                                      else patches)           # stored as they were
    expected = np.array([synth.expected_srgb(c, synth.LINEAR_SRGB) for c in _DESCRIBED])
    if mode == "L":
        expected = synth.srgb_encode(synth.decode_trc(patches, 1.0))[:, None].repeat(3, 1)
    for rgb in _all_decoders(p):
        got = _centres(rgb, centres)
        np.testing.assert_allclose(got, expected, atol=1)
        assert got[3].tolist() == [188, 188, 188]


@pytest.mark.parametrize("chunks", ["gama-45455", "gama-45000", "gama-and-srgb-chrm",
                                    "srgb", "srgb-beside-gama-1", "chrm-srgb"])
def test_a_png_whose_chunks_say_srgb_decodes_as_before(tmp_path, chunks):
    """An sRGB chunk is sRGB whatever gAMA says beside it (the PNG specification's
    order), and a gAMA of about 1/2.2 (45455: many tools write it beside plain
    sRGB data) alone or with sRGB's cHRM is sRGB too, as browsers read them: such
    PNGs keep their pixels bit for bit, and an empty stamp."""
    from features.imaging import decoding_stamp
    from tests.features import synth

    srgb_chrm = synth.chrm_of({"primaries": synth.LINEAR_SRGB["primaries"]})
    info = {"gama-45455": {"gama": 45455}, "gama-45000": {"gama": 45000},
            "gama-and-srgb-chrm": {"gama": 45455, "chrm": srgb_chrm},
            "srgb": {"srgb": 0}, "srgb-beside-gama-1": {"srgb": 0, "gama": 100000},
            "chrm-srgb": {"chrm": srgb_chrm}}[chunks]
    px = np.random.default_rng(4).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    tagged, plain = tmp_path / "tagged.png", tmp_path / "plain.png"
    Image.fromarray(px).save(tagged, pnginfo=synth.png_colour_chunks(**info))
    Image.fromarray(px).save(plain)
    with Image.open(tagged) as im:                    # the chunks are there
        read = {"gama": "gamma", "chrm": "chromaticity", "srgb": "srgb"}
        assert all(read[k] in im.info for k in info)
    for rgb in _all_decoders(tagged):
        np.testing.assert_array_equal(rgb, px)
    assert decoding_stamp(tagged) == decoding_stamp(plain) == ""


def test_a_png_with_wide_primaries_and_another_white_is_converted(tmp_path):
    """A cHRM chunk of wide primaries (ProPhoto's) and a D50 white, beside gAMA
    45455: the colours are the primaries' mixtures, adapted to sRGB's D65 white
    (Bradford), so the file's grey is sRGB's grey; clipped where outside sRGB."""
    from tests.features import synth

    p = tmp_path / "wide.png"
    centres = _patch_file(p, _DESCRIBED, pnginfo=synth.png_colour_chunks(
        gama=45455, chrm=synth.chrm_of(synth.WIDE_D50)))
    expected = np.array([synth.expected_srgb(c, synth.WIDE_D50) for c in _DESCRIBED])
    for rgb in _all_decoders(p):
        got = _centres(rgb, centres)
        np.testing.assert_allclose(got, expected, atol=2)
        assert np.abs(got[:3] - _DESCRIBED[:3]).max() > 15
        assert got[3].max() - got[3].min() <= 1                   # D50 grey: grey


def test_a_png_with_a_profile_follows_the_profile_not_its_gamma(tmp_path):
    """An embedded profile decides alone (iCCP comes first): a P3 PNG that also
    carries gAMA 1.0 decodes as the same P3 PNG without it, and is stamped for its
    profile only."""
    from features.imaging import DECODING_REVISIONS, decoding_stamp
    from tests.features import synth

    p3 = synth.rgb_icc_profile(synth.P3)
    both, profiled = tmp_path / "both.png", tmp_path / "profiled.png"
    _patch_file(both, _DESCRIBED, icc_profile=p3,
                pnginfo=synth.png_colour_chunks(gama=100000))
    _patch_file(profiled, _DESCRIBED, icc_profile=p3)
    with Image.open(both) as im:
        assert im.info["gamma"] == 1.0 and im.info["icc_profile"]
    want = load_rgb(profiled)
    for rgb in _all_decoders(both):
        np.testing.assert_array_equal(rgb, want)
    assert decoding_stamp(both) == f"|icc@{DECODING_REVISIONS['icc']}"


@pytest.mark.parametrize("chunks", ["gama-0", "gama-huge", "chrm-on-a-line",
                                    "chrm-y-0", "chrm-white-outside",
                                    "gama-0-chrm-on-a-line"])
def test_a_png_with_impossible_chunks_decodes_as_before(tmp_path, chunks):
    """A gAMA of 0 (or past 2**31 stored, a negative number misread) or a cHRM
    that makes no colour space (primaries on one line, a y of 0, a white outside
    the primaries) is ignored, as libpng ignores it: the PNG
    decodes as without it, no exception or warning, an empty stamp."""
    from features.imaging import decoding_stamp
    from tests.features import synth

    line = (0.3127, 0.329, 0.6, 0.3, 0.4, 0.2, 0.2, 0.1)     # r, g, b on x = 2y
    info = {"gama-0": {"gama": 0}, "gama-huge": {"gama": 0xFFFFFFFF},
            "chrm-on-a-line": {"chrm": line},
            "chrm-y-0": {"chrm": (0.3127, 0.329, 0.64, 0.0, 0.3, 0.6, 0.15, 0.06)},
            "chrm-white-outside": {"chrm": (0.05, 0.9, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)},
            "gama-0-chrm-on-a-line": {"gama": 0, "chrm": line}}[chunks]
    px = np.random.default_rng(5).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    p = tmp_path / "odd.png"
    Image.fromarray(px).save(p, pnginfo=synth.png_colour_chunks(**info))
    with Image.open(p) as im:
        assert "gamma" in im.info or "chromaticity" in im.info
    for rgb in _all_decoders(p):
        np.testing.assert_array_equal(rgb, px)
    assert decoding_stamp(p) == ""


def test_decoding_stamp_names_files_converted_from_their_exif_or_png_chunks(tmp_path):
    """A file converted from its EXIF's Adobe RGB or its PNG chunks was decoded
    differently before: ``|exif-adobe-rgb@n`` or ``|png-gamma@n`` (keys of their
    own: the files with a profile keep their ``|icc@1``), after any other part."""
    from features.imaging import DECODING_REVISIONS, decoding_stamp
    from tests.features import synth

    adobe, gamma = DECODING_REVISIONS["exif-adobe-rgb"], DECODING_REVISIONS["png-gamma"]
    alpha = DECODING_REVISIONS["alpha"]
    a = np.full((30, 20, 3), 90, np.uint8)
    Image.fromarray(a).save(tmp_path / "camera.jpg",
                            exif=synth.exif_colour_space(0xFFFF, "R03"))
    Image.fromarray(a).save(tmp_path / "turned.jpg",
                            exif=synth.exif_colour_space(0xFFFF, "R03", orientation=6))
    Image.fromarray(a).save(tmp_path / "linear.png",
                            pnginfo=synth.png_colour_chunks(gama=100000))
    Image.fromarray(a).convert("RGBA").save(
        tmp_path / "linear_cut.png", pnginfo=synth.png_colour_chunks(gama=100000))
    Image.fromarray(a).save(tmp_path / "wide.png", pnginfo=synth.png_colour_chunks(
        gama=45455, chrm=synth.chrm_of(synth.WIDE_D50)))
    assert adobe >= 1 and gamma >= 1
    assert decoding_stamp(tmp_path / "camera.jpg") == f"|exif-adobe-rgb@{adobe}"
    assert decoding_stamp(tmp_path / "turned.jpg") == f"|exif6|exif-adobe-rgb@{adobe}"
    assert decoding_stamp(tmp_path / "linear.png") == f"|png-gamma@{gamma}"
    assert decoding_stamp(tmp_path / "linear_cut.png") == f"|alpha@{alpha}|png-gamma@{gamma}"
    assert decoding_stamp(tmp_path / "wide.png") == f"|png-gamma@{gamma}"


@pytest.mark.realdata
def test_mango_photos_with_exif_colour_space_keep_their_pixels_and_stamp(mango_dir,
                                                                          monkeypatch):
    """53 MANGO packshots carry an EXIF block with ColorSpace 1 (sRGB), none
    0xFFFF and none an interoperability index: they must decode exactly as before
    EXIF colour spaces were read, with an empty stamp (a built bundle's caches stand)."""
    from features import imaging

    tagged = []
    for p in sorted((mango_dir / "images").glob("*.jpg")):
        with Image.open(p) as im:
            exif = im.getexif()
            if 0x8769 in exif and 0xA001 in exif.get_ifd(0x8769):
                tagged.append(p)
    if not tagged:
        pytest.skip("no MANGO image with an EXIF ColorSpace tag")
    assert all(imaging.decoding_stamp(p) == "" for p in tagged)
    now = [(imaging.load_rgb(p), imaging.decode_upload(p.read_bytes())) for p in tagged[:6]]
    monkeypatch.setattr(imaging, "_described_colours", lambda im, mode: None)  # EXIF unread
    for p, (full, upload) in zip(tagged, now):
        np.testing.assert_array_equal(full, imaging.load_rgb(p))
        np.testing.assert_array_equal(upload, imaging.decode_upload(p.read_bytes()))


# -- uploads decoded at the size the engine analyses -------------------------------
def _jpeg(arr, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def _photo(h, w, seed=0):
    """A smooth photo-like image (noise upscaled): JPEG-friendly, no flat areas."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 50 + 2, w // 50 + 2, 3),
                                                 dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


def test_decode_upload_shrunk_is_the_whole_decode_shrunk():
    """What the engine did with a whole upload (resize_max_side), done while decoding:
    the same pixels and mask where the decoder cannot shrink (a PNG; a JPEG under
    twice max_side), and the photo's own size beside them."""
    from features.imaging import decode_upload_alpha, decode_upload_shrunk

    rgba, _ = cutout(h=300, w=200)
    png = _png(rgba)
    rgb, alpha, size = decode_upload_shrunk(png, max_side=64)
    full_rgb, full_alpha = decode_upload_alpha(png)
    assert size == (300, 200)
    np.testing.assert_array_equal(rgb, resize_max_side(full_rgb, 64))
    np.testing.assert_array_equal(alpha, resize_to(full_alpha, rgb.shape[:2]))
    jpg = _jpeg(_photo(1100, 800))                        # 1100 < 2 x 600: not drafted
    rgb, alpha, size = decode_upload_shrunk(jpg, max_side=600)
    np.testing.assert_array_equal(rgb, resize_max_side(decode_upload(jpg), 600))
    assert alpha is None and size == (1100, 800)
    small, _, size = decode_upload_shrunk(jpg, max_side=2000)  # never enlarged
    np.testing.assert_array_equal(small, decode_upload(jpg))
    with pytest.raises(PayloadTooLarge):                  # refused as decode_upload does
        decode_upload_shrunk(jpg, max_side=64, max_pixels=1000)
    with pytest.raises(InputError, match="max_side must be a positive integer"):
        decode_upload_shrunk(jpg, max_side=0)


def test_a_large_jpeg_upload_is_shrunk_while_it_is_decoded():
    """A 3000 x 3000 photo analysed at 512 pixels: decoding it whole made a 27 MB
    array (and PIL's 36 MB image, and the copies the shrink took: ~230 MB at peak for
    5000 x 5000). The JPEG decoder now shrinks it (as load_rgb decodes a catalogue
    image), so no full-size array is made, and the pixels stay the whole decode's
    shrunk to within JPEG's own noise."""
    import tracemalloc

    from features.imaging import decode_upload_shrunk

    jpg = _jpeg(_photo(3000, 2400))
    want = resize_max_side(decode_upload(jpg), 512)
    tracemalloc.start()
    try:
        rgb, alpha, size = decode_upload_shrunk(jpg, max_side=512)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == (3000, 2400) and alpha is None and rgb.shape == want.shape
    assert peak < 3 * 1000 * 1000, f"{peak / 1e6:.1f} MB traced"
    # a level or two on 0..255 (the random colours here are a hard case for JPEG's
    # halved chroma); the same shrink one pixel off differs by 8
    assert np.abs(rgb.astype(int) - want).mean() < 2.0


@pytest.mark.parametrize("h,w", [(1200, 2400),     # stored landscape, drafted 300 x 600
                                 (1599, 1600)])    # drafted square: its tag says
def test_a_turned_jpeg_shrunk_while_decoded_gives_its_upright_size(h, w):
    """A phone photo is stored landscape with EXIF orientation 6: the size returned
    is the upright one (the keypoints are scaled back to it), and the shrunk image is
    turned like decode_upload's."""
    from features.imaging import decode_upload_shrunk

    stored = _photo(h, w)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    jpg = _jpeg(stored, exif=exif.tobytes())
    rgb, _, size = decode_upload_shrunk(jpg, max_side=150)
    whole = decode_upload(jpg)
    assert whole.shape[:2] == (w, h)
    assert size == (w, h)
    want = resize_max_side(whole, 150)
    assert rgb.shape == want.shape
    # a few levels (an eighth-size decode of random colours); turned the other way
    # (half a turn from right) it differs by ~56
    assert np.abs(rgb.astype(int) - want).mean() < 4.0
