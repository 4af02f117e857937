"""Image I/O and colour-space helpers shared by every perception module.

Everything here works on ``numpy`` arrays: RGB images are ``uint8`` ``(H, W, 3)``;
CIELAB images are ``float`` ``(H, W, 3)`` with L in 0..100 (D65 white, sRGB
primaries, the same convention as skimage and OpenCV's float path).

Uploads from the API go through :func:`decode_upload`, which reads only the
image header first and refuses non-images, truncated files and enormous declared
dimensions before any pixel is decoded. Uploads and catalogue files alike are
turned upright by their EXIF orientation tag (:func:`pil_to_rgb_array`), and
converted to sRGB when they embed another colour profile (a phone's Display P3, an
Adobe RGB export, a profiled CMYK JPEG) or, without a profile, say in other words
that their colours are not sRGB's (a camera's Adobe RGB JPEG in its EXIF block, a
PNG's gAMA and cHRM chunks: :func:`_srgb_transform`). Transparency is composited
on white; a cut-out's alpha, its garment mask, is kept beside the image by
:func:`load_rgb_alpha` and :func:`decode_upload_alpha`.

Examples
--------
>>> import numpy as np
>>> lab = rgb_to_lab(np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8))
>>> np.round(lab[0, 0], 3).tolist(), np.round(lab[0, 1], 3).tolist()
([100.0, 0.0, 0.0], [0.0, 0.0, 0.0])
>>> back = lab_to_rgb(lab)
>>> back.dtype, back[0, 0].tolist()
(dtype('uint8'), [255, 255, 255])
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from pathlib import Path

import numpy as np

from features.exceptions import (InputError, NotFoundError, PayloadTooLarge,
                                 UnsupportedMediaType)
from features.icc import (ADOBE_RGB_PRIMARIES, D65, SRGB_PRIMARIES, SRGB_TONE,
                          grey_profile, rgb_profile, rgb_to_xyz_matrix)

#: Image formats accepted from uploads (PIL format names).
UPLOAD_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: PIL's names for formats that are one of those: a JPEG with a Multi-Picture block
#: (phones and cameras add a depth map or a preview after the photo) opens as "MPO",
#: and is decoded as its first picture, the photo a browser shows.
_FORMAT_ALIASES = {"MPO": "JPEG"}
#: Default pixel budget of an upload (about 5000 x 5000).
DEFAULT_MAX_PIXELS = 25_000_000

# D65 reference white of the 2-degree observer (XYZ, Y = 1).
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_EPS = 216 / 24389  # CIE epsilon: (6/29)^3
_KAPPA = 24389 / 27


# -- colour spaces -------------------------------------------------------------
def _as_unit_float(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.shape[-1:] != (3,):
        raise InputError(f"expected an RGB array with a last axis of 3, got shape {arr.shape}",
                         field="rgb")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    return arr.astype(np.float32, copy=False)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB (``uint8`` 0..255 or float 0..1, shape ``(..., 3)``) to CIELAB D65.

    Returns float32 of the same leading shape: L in 0..100, a and b roughly -128..127.

    >>> import numpy as np
    >>> [round(float(v), 1) for v in rgb_to_lab(np.array([255, 0, 0], dtype=np.uint8))]
    [53.2, 80.1, 67.2]
    """
    c = _as_unit_float(rgb)
    # sRGB transfer function, inverted (gamma-encoded -> linear light).
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ.T.astype(np.float32)
    xyz = xyz / _WHITE_D65.astype(np.float32)
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    L = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([L, a, b], axis=-1).astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Convert CIELAB D65 (``(..., 3)``) back to sRGB ``uint8`` (out-of-gamut clipped).

    >>> import numpy as np
    >>> lab_to_rgb(np.array([53.24, 80.09, 67.20])).tolist()
    [255, 0, 0]
    """
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f ** 3 > _EPS, f ** 3, (116 * f - 16) / _KAPPA) * _WHITE_D65
    lin = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    c = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(np.round(c * 255), 0, 255).astype(np.uint8)


# -- loading and resizing ------------------------------------------------------
def pil_to_rgb_array(im) -> np.ndarray:
    """An open PIL image as ``uint8`` RGB ``(H, W, 3)``, decoded the one way every
    loader shares (:func:`load_rgb`, uploads, attribute and keypoint training, the
    report's thumbnails): turned upright as its EXIF orientation tag says (as a
    browser shows it), converted to sRGB from an embedded colour profile that is not
    sRGB's, or from the EXIF block's Adobe RGB or a PNG's gamma and chromaticities
    (:func:`_srgb_transform`), transparency composited on white, 16-bit
    greyscale scaled to 8 bits. 32-bit samples (TIFF modes ``I`` and ``F``) are
    refused as :class:`UnsupportedMediaType`."""
    return np.asarray(_rgb_image(im), dtype=np.uint8)


#: How many times the decoding of each kind of image file (:func:`_decoding_kind`)
#: has changed since caches were first keyed on a file (its size and mtime, now its
#: content hash: :class:`features.files.ContentHashes`). A file of a
#: kind listed here adds ``|<kind>@<n>`` to its :func:`decoding_stamp`, so features,
#: the bundle's image fingerprint and decoded-image caches made by an older decoder
#: are not reused for it. Raise a kind's number (or add the kind) with any change to
#: how :func:`_rgb_image` decodes it; files of kinds not listed (plain 8-bit RGB and
#: greyscale: every JPEG) keep an empty stamp, and their caches.
#: The transparency that :func:`load_rgb_alpha` keeps beside the image counts too:
#: the features read it as a cut-out's garment mask.
#: alpha: its transparency kept as the garment mask, once dropped;
#: colour-key: composited on white, once read opaque (a cut-out on black); then its
#: transparency kept as the garment mask;
#: 32-bit: refused, once clipped to a black or white image;
#: icc: (any kind) its embedded colour profile, not sRGB's, converted to sRGB, once
#: ignored (:func:`_srgb_transform`; a file with an sRGB profile keeps its stamp);
#: exif-adobe-rgb: (a JPEG without a profile) Adobe RGB as its EXIF block says
#: (ColorSpace uncalibrated, interoperability index R03) converted to sRGB, once
#: read as sRGB (a JPEG whose EXIF says sRGB, or says nothing, keeps its stamp);
#: png-gamma: (a PNG without a profile or an sRGB chunk) the gamma and primaries of
#: its gAMA and cHRM chunks converted to sRGB, once ignored (a PNG whose chunks are
#: sRGB's, gAMA 1/2.2 included, keeps its stamp).
#: Each way a file describes its colours has a key of its own, so a change to one
#: reruns only the caches of files it converts.
DECODING_REVISIONS: dict[str, int] = {"alpha": 2, "colour-key": 3, "32-bit": 2,
                                      "icc": 1, "exif-adobe-rgb": 1, "png-gamma": 1}


def _decoding_kind(im) -> str:
    """Which of :func:`_rgb_image`'s ways decodes the open image ``im``: ``"16-bit"``
    (greyscale scaled to 8 bits), ``"32-bit"`` (refused), ``"alpha"`` (composited on
    white), ``"colour-key"`` (one colour marked transparent, composited too) or
    ``"plain"``. Header only: a PNG's tRNS chunk comes before its pixels."""
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format == "PNG"):
        return "16-bit"      # older Pillow opens a 16-bit PNG as "I"
    if im.mode in ("I", "F"):
        return "32-bit"
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return "alpha"
    if im.mode in ("RGB", "L") and "transparency" in im.info:
        return "colour-key"
    return "plain"


#: The mode ImageCms reads an image of each PIL mode in, for its colour profile;
#: modes not listed (LAB, YCbCr, 32-bit) ignore a profile.
_PROFILE_MODES = {"RGB": "RGB", "RGBA": "RGB", "RGBX": "RGB", "P": "RGB", "PA": "RGB",
                  "L": "L", "LA": "L", "1": "L", "I;16": "L", "I;16B": "L", "I;16L": "L",
                  "CMYK": "CMYK"}


def _srgb_transform(im):
    """``(transform, mode, kind)``: the ImageCms transform from the colours the open
    image ``im`` is in to sRGB, the mode it reads (``"RGB"``, ``"L"`` or ``"CMYK"``)
    and what said those colours are not sRGB's (its :data:`DECODING_REVISIONS` key);
    None when there is nothing to convert.

    Phones save Display P3, studios export Adobe RGB, print shops send CMYK JPEGs:
    read as sRGB, their colours came out desaturated or shifted (a profiled CMYK
    JPEG far off), and the colour features, masks and attribute network saw that.
    A file says so in one of these ways, the first one it has deciding alone (the
    PNG specification's order, which browsers follow):

    - ``"icc"``: an embedded colour profile (``info["icc_profile"]``).
    - ``"png-gamma"``: a PNG's ``sRGB`` chunk (sRGB: nothing to do), else its
      ``gAMA`` and ``cHRM`` chunks (:func:`_png_colours`): a renderer's linear-light
      PNG (gamma 1.0), read as sRGB, was far too dark.
    - ``"exif-adobe-rgb"``: a JPEG's EXIF block (:func:`_exif_colours`): a camera in
      Adobe RGB mode writes no profile, only ColorSpace "uncalibrated" and the
      interoperability index ``R03``. Browsers ignore it (such a photo looks
      desaturated there); the engine names the colours that were shot.

    None for an image that says nothing or says sRGB (converting would change
    nothing), or with a profile or chunks that are unreadable or do not fit the
    image (an RGB profile on a CMYK JPEG, a gamma of 0): such images decode as they
    always have, like an unreadable EXIF block. Header only (the profile, the
    chunks and the EXIF block come before the pixels)."""
    mode = _PROFILE_MODES.get(im.mode)
    if mode is None:
        return None
    icc = im.info.get("icc_profile")
    if icc:
        # even an sRGB or a broken profile decides: the chunks or EXIF block beside
        # it are not read (an editor that embeds sRGB may leave a camera's R03)
        kind, transform = "icc", _profile_transform(bytes(icc), mode)
    else:
        described = _described_colours(im, mode)
        if described is None:
            return None
        kind, tone, primaries, white = described
        transform = _described_transform(tone, primaries, white, mode)
    return None if transform is None else (transform, mode, kind)


@functools.lru_cache(maxsize=16)
def _profile_transform(icc: bytes, mode: str):
    """:func:`_srgb_transform` for one profile's bytes: built once per process (a
    catalogue's photos share a few profiles; building takes ~2 ms)."""
    try:
        from PIL import Image, ImageCms

        # relative colorimetric: in-gamut colours kept as measured (what the colour
        # features name), those outside sRGB clipped to its edge
        transform = ImageCms.buildTransform(
            ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
            mode, "RGB", ImageCms.Intent.RELATIVE_COLORIMETRIC)
        # An sRGB profile (IEC61966-2.1 as most cameras and editors embed it, 54
        # MANGO packshots among them) differs from littlecms's own sRGB by at most
        # one level: it is left alone, so such images keep their pixels and caches.
        # Probed on a grid of colours, compared with the plain decoding.
        channels, steps = {"RGB": (3, 18), "L": (1, 256), "CMYK": (4, 6)}[mode]
        levels = np.linspace(0, 255, steps).round().astype(np.uint8)
        grid = np.stack(np.meshgrid(*[levels] * channels, indexing="ij"), axis=-1)
        grid = grid.reshape(1, -1, channels)
        probe = Image.fromarray(grid[..., 0] if mode == "L" else grid, mode)
        as_plain = np.asarray(probe.convert("RGB"), dtype=np.int16)
        as_profiled = np.asarray(ImageCms.applyTransform(probe, transform), dtype=np.int16)
    except Exception:  # noqa: BLE001 - a broken colour profile must not refuse the photo
        return None
    return None if np.abs(as_profiled - as_plain).max() <= 1 else transform


#: EXIF tags: the Exif and Interoperability sub-IFDs, ColorSpace (1 sRGB, 0xFFFF
#: uncalibrated) and InteroperabilityIndex (DCF: "R98" sRGB, "R03" Adobe RGB).
_EXIF_IFD, _INTEROP_IFD, _COLOR_SPACE, _INTEROP_INDEX = 0x8769, 0xA005, 0xA001, 0x0001
#: Adobe RGB (1998)'s tone: linear light is the code value to the power 563/256.
_ADOBE_RGB_TONE = 563 / 256
#: sRGB's cHRM chunk (white, red, green, blue: x, y) and the gAMA most tools write
#: beside sRGB data (1/2.2, stored 45455); within these tolerances, sRGB.
_SRGB_CHRM = (*D65, *(v for xy in SRGB_PRIMARIES for v in xy))
_SRGB_GAMA, _GAMA_TOLERANCE, _CHRM_TOLERANCE = 1 / 2.2, 0.01, 0.01


def _described_colours(im, mode: str):
    """``(kind, tone, primaries, white)`` of an image without a profile whose PNG
    chunks or EXIF block say its colours are not sRGB's (:func:`_srgb_transform`),
    ``tone`` the decoding gamma (or :data:`features.icc.SRGB_TONE`); else None.
    RGB and greyscale images only (a CMYK JPEG has no such words)."""
    if mode not in ("RGB", "L"):
        return None
    fmt = _FORMAT_ALIASES.get(im.format, im.format)
    if fmt == "PNG":
        return _png_colours(im.info, grey=mode == "L")
    if fmt == "JPEG":
        return _exif_colours(im)
    return None


def _png_colours(info: dict, grey: bool):
    """:func:`_described_colours` of a PNG from its ``sRGB``, ``gAMA`` and ``cHRM``
    chunks (PIL's ``info["srgb"]``, ``["gamma"]``, ``["chromaticity"]``).

    As browsers read them, so the shop shows the colours the engine names: an sRGB
    chunk is sRGB whatever the others say; a gAMA of about 1/2.2 (many tools write
    it beside plain sRGB data) without a cHRM, or with sRGB's, is sRGB too, and such
    files keep their pixels. Otherwise the gAMA's gamma (PNG stores the encoding
    exponent: linear light is the value to the power 1/gamma; sRGB's curve without
    one) and the cHRM's primaries and white (sRGB's without one; a greyscale image
    has no primaries). A chunk with values no image can have (a gamma of 0, primaries
    on a line) is ignored, as libpng ignores it."""
    if "srgb" in info:
        return None
    gamma, chrm = info.get("gamma"), info.get("chromaticity")
    # libpng's range for gAMA: 16 .. 625000000 as stored (x 1/100000)
    if not isinstance(gamma, float) or not 0.00016 <= gamma <= 6250:
        gamma = None
    try:
        chrm = tuple(float(v) for v in chrm)
        if len(chrm) != 8:
            raise ValueError(f"{len(chrm)} values, not 8")
        rgb_to_xyz_matrix((chrm[2:4], chrm[4:6], chrm[6:8]), chrm[:2])
    except (TypeError, ValueError, IndexError):     # absent, or no colour space
        chrm = None
    srgb_tone = gamma is None or abs(gamma - _SRGB_GAMA) <= _GAMA_TOLERANCE
    srgb_chrm = grey or chrm is None or max(
        abs(a - b) for a, b in zip(chrm, _SRGB_CHRM)) <= _CHRM_TOLERANCE
    if srgb_tone and srgb_chrm:
        return None
    tone = SRGB_TONE if gamma is None else 1 / gamma
    if grey or chrm is None:
        return "png-gamma", tone, SRGB_PRIMARIES, D65
    return "png-gamma", tone, (chrm[2:4], chrm[4:6], chrm[6:8]), chrm[:2]


def _exif_colours(im):
    """:func:`_described_colours` of a JPEG from its EXIF block: Adobe RGB (1998)
    when ColorSpace is 0xFFFF ("uncalibrated") and the interoperability index is
    ``R03``, DCF's mark of Adobe RGB (cameras in Adobe RGB mode write no profile).
    ColorSpace 1 is sRGB, and "uncalibrated" with another index (``R98`` is sRGB's)
    or none says no colour space at all: both are read as sRGB, as before. A JPEG
    without an Exif sub-IFD (no EXIF block: every MANGO JPEG but 53, whose
    ColorSpace is 1) costs one lookup in the block PIL has already read."""
    try:
        exif = im.getexif()
        if _EXIF_IFD not in exif or exif.get_ifd(_EXIF_IFD).get(_COLOR_SPACE) != 0xFFFF:
            return None
        index = exif.get_ifd(_INTEROP_IFD).get(_INTEROP_INDEX)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not refuse the photo
        return None
    if isinstance(index, bytes):
        index = index.decode("latin-1")
    if not isinstance(index, str) or index.strip("\0 ") != "R03":
        return None
    return "exif-adobe-rgb", _ADOBE_RGB_TONE, ADOBE_RGB_PRIMARIES, D65


@functools.lru_cache(maxsize=16)
def _described_transform(tone, primaries, white, mode: str):
    """:func:`_profile_transform` of the profile :mod:`features.icc` writes for these
    colours (a greyscale one for mode ``"L"``): littlecms converts them as it
    converts an embedded profile, in C, built once per description."""
    try:
        icc = grey_profile(tone) if mode == "L" else rgb_profile(tone, primaries, white)
    except ValueError:
        return None
    return _profile_transform(icc, mode)


def _to_srgb(im, srgb, in_place: bool = False):
    """``im`` (any mode :data:`_PROFILE_MODES` maps to ``srgb``'s) converted by
    :func:`_srgb_transform`'s ``srgb`` to an sRGB mode ``RGB`` image; an RGB image
    in place when ``in_place`` (no second copy of a large scan)."""
    from PIL import ImageCms

    transform, mode = srgb[:2]
    if im.mode != mode:
        im, in_place = im.convert(mode), True
    if mode == "RGB" and in_place:
        ImageCms.applyTransform(im, transform, inPlace=True)
        return im
    return ImageCms.applyTransform(im, transform)


def _rgb_image(im, owned: bool = False):
    """:func:`pil_to_rgb_array`'s decoding, kept a PIL image in mode ``RGB`` (so
    :func:`load_rgb` can shrink it before any full-size array is made). An image
    with a colour profile is converted to sRGB before transparency is composited
    (white is white in every profile; the alpha is left as it is). ``owned``: the
    caller will not use ``im`` again, so its pixels may be converted in place.
    The same for colours described without a profile (EXIF Adobe RGB, a PNG's gAMA
    and cHRM: :func:`_srgb_transform`)."""
    from PIL import Image

    kind = _decoding_kind(im)    # before turning: a turned copy has no format
    srgb = _srgb_transform(im)
    turned = upright(im)
    owned, im = owned or turned is not im, turned
    if kind == "16-bit":
        # 16-bit greyscale (older Pillow opens a 16-bit PNG as "I"): PIL's convert
        # would clip every sample above 255 to white; scale 0..65535 to 0..255.
        # Integer maths, in place: (v + 128) // 257 is round(v / 257) for every v
        # (257 is odd, so no v / 257 ends in .5); float64 took 24 bytes a pixel.
        a = np.asarray(im)
        if a.dtype.kind != "u":              # mode "I" (int32), "I;16S" (int16)
            a = np.clip(a, 0, 65535)
        grey = a.astype(np.uint32)
        grey += 128
        grey //= 257
        grey = Image.fromarray(grey.astype(np.uint8))                 # mode L
        return grey.convert("RGB") if srgb is None else _to_srgb(grey, srgb)
    if kind == "32-bit":
        # 32-bit samples (TIFF) have no one 8-bit reading (floats are 0..1 by
        # convention, integers any range): convert would clip them to a black or a
        # white image, and every feature would describe that.
        kind = "float" if im.mode == "F" else "integer"
        raise UnsupportedMediaType(f"image has 32-bit {kind} samples (PIL mode "
                                   f"{im.mode!r}): save it with 8 or 16 bits per sample",
                                   field="image", value=im.mode)
    if kind in ("alpha", "colour-key"):
        # Composite transparency on white: packshots with alpha are cut-outs. A
        # palette, RGB or greyscale image may mark one colour transparent instead
        # (tRNS), often the black around a cut-out; convert applies it as alpha.
        rgba = im.convert("RGBA")
        if srgb is not None:
            # the colours converted without their alpha (LA: its grey channel)
            colour = rgba.convert("RGB") if srgb[1] == "RGB" else im.convert("L")
            colour = _to_srgb(colour, srgb, in_place=True)
            colour.putalpha(rgba.getchannel("A"))
            rgba = colour
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    elif srgb is not None:
        return _to_srgb(im, srgb, in_place=owned)
    # convert() copies even an RGB image: a 12000 x 12000 scan is 432 MB per copy
    return im if im.mode == "RGB" else im.convert("RGB")


def _open_unwarned(fp, filename: str = ""):
    """``Image.open(fp)`` for a binary file object, without PIL's
    ``DecompressionBombWarning``: the same format plugins tried the same way (those
    registered, then :func:`PIL.Image.preinit`'s, then :func:`PIL.Image.init`'s), and
    ``DecompressionBombError`` still raised past twice ``Image.MAX_IMAGE_PIXELS``.

    Image.open warns past ``Image.MAX_IMAGE_PIXELS`` and the warning can only be
    silenced through the process-wide ``warnings.filters``: ``catch_warnings`` swaps
    that list and puts it back on exit, and two threads doing it at once (uploads
    decoded by gunicorn's threads, beside the thread warming the models) restore each
    other's lists, leaving the filter installed for good, or dropping one another
    part of the program had set. Our callers decide on the size themselves (an
    upload's own limit; a catalogue image is decoded on purpose), so the warning is
    not raised in the first place. Raises ``UnidentifiedImageError`` as Image.open does.
    """
    import struct

    from PIL import Image, UnidentifiedImageError

    fp.seek(0)
    prefix = fp.read(16)
    tried: set[str] = set()
    for loader in (lambda: None, Image.preinit, Image.init):
        loader()
        for fmt in list(Image.ID):
            if fmt in tried:
                continue
            tried.add(fmt)
            factory, accept = Image.OPEN[fmt]
            try:
                # an accept test reads the prefix, shorter than it expects for a body
                # of a few bytes (struct.error): not this format either
                ok = not accept or accept(prefix)
                if not ok or isinstance(ok, str):   # a str: a plugin not installed
                    continue
                fp.seek(0)
                im = factory(fp, filename)
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue                        # not this format: the next one
            if Image.MAX_IMAGE_PIXELS is not None:
                pixels = max(1, im.size[0]) * max(1, im.size[1])
                if pixels > 2 * Image.MAX_IMAGE_PIXELS:
                    im.close()
                    raise Image.DecompressionBombError(
                        f"Image size ({pixels} pixels) exceeds limit of "
                        f"{2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression "
                        f"bomb DOS attack.")
            return im
    raise UnidentifiedImageError(f"cannot identify image file {filename or fp!r}")


@contextlib.contextmanager
def open_image(path: str | os.PathLike):
    """``Image.open(path)`` for a catalogue image, as a context manager, without PIL's
    ``DecompressionBombWarning``.

    PIL warns for images past ``Image.MAX_IMAGE_PIXELS`` (about 89 M pixels) and
    refuses them past twice that (``DecompressionBombError``, still raised). In
    between, a catalogue image is decoded on purpose (:func:`load_rgb` shrinks it
    as a PIL image): the warning, printed once per image by every stage that opens
    it, said nothing to act on, and under warnings-as-errors failed the image. It is
    not raised when opening (:func:`_open_unwarned`); a few formats check again while
    decoding (a TIFF's tiles, a GIF's frames), so for an image past the warning size,
    and only for one (a studio scan, in the batch stages), it is also silenced inside
    the block (uploads have their own, smaller limit: :func:`decode_upload`).

    >>> import tempfile, os, numpy as np
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(p)
    >>> with open_image(p) as im:
    ...     im.size
    (6, 4)
    """
    from PIL import Image

    with open(path, "rb") as fp, _open_unwarned(fp, os.fspath(path)) as im:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is None or im.size[0] * im.size[1] <= limit:
            yield im        # every photo: the global warning filters left alone
            return
        # catch_warnings swaps the process-wide filters (not thread-safe): kept to
        # this rare size, which the request path (uploads) never reaches
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield im


def pil_to_rgb_alpha(im) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`pil_to_rgb_array` and the image's transparency: ``(rgb, alpha)``.

    ``rgb`` is exactly what :func:`pil_to_rgb_array` gives (composited on white:
    what the networks were trained on). ``alpha`` is ``uint8`` ``(H, W)``, upright
    like ``rgb``, for an image with transparency (an alpha channel, or a transparent
    colour key) of which some pixel is not fully opaque; otherwise None (a JPEG, or
    a PNG saved with an all-opaque alpha channel). A cut-out's alpha is its garment
    mask (:func:`features.mask.garment_mask`'s ``alpha``).

    >>> import numpy as np
    >>> from PIL import Image
    >>> px = np.zeros((4, 6, 4), np.uint8); px[1:3, 2:4] = 255
    >>> rgb, alpha = pil_to_rgb_alpha(Image.fromarray(px, "RGBA"))
    >>> rgb[0, 0].tolist(), int(alpha[0, 0]), int(alpha[1, 2])
    ([255, 255, 255], 0, 255)
    """
    alpha = _alpha_image(im)
    return (pil_to_rgb_array(im),
            None if alpha is None else np.asarray(alpha, dtype=np.uint8))


def _alpha_image(im):
    """The transparency of an open PIL image as an upright mode ``L`` image, the
    frame of :func:`_rgb_image`'s; None without transparency or when every pixel is
    fully opaque (many editors save an all-opaque alpha channel: no cut-out)."""
    if _decoding_kind(im) not in ("alpha", "colour-key"):
        return None           # a JPEG and every other opaque image: nothing read
    im = upright(im)
    # an alpha channel is read as it is; a palette or a colour key (tRNS) becomes
    # alpha the way _rgb_image's convert applies it before compositing
    alpha = im.getchannel("A") if im.mode in ("RGBA", "LA") else \
        im.convert("RGBA").getchannel("A")
    return None if alpha.getextrema()[0] == 255 else alpha


def load_rgb(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """Read an image file as ``uint8`` RGB ``(H, W, 3)``, optionally shrunk.

    Parameters
    ----------
    path : path-like
        The image file.
    max_side : int, optional
        When given, the image is shrunk (aspect kept) so that its longer side is at
        most this many pixels; never enlarged.

    Raises
    ------
    NotFoundError
        The file does not exist.
    InputError
        The file is not a readable image (corrupt, truncated, unknown format, or
        more pixels than PIL decodes: ``2 * Image.MAX_IMAGE_PIXELS``).

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.fromarray(np.zeros((40, 20, 3), np.uint8)).save(p)
    >>> load_rgb(p, max_side=10).shape
    (10, 5, 3)
    """
    return _load_image(path, max_side, with_alpha=False)[0]


def load_rgb_alpha(path: str | os.PathLike, max_side: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`load_rgb` and the file's transparency: ``(rgb, alpha)``.

    ``rgb`` is what :func:`load_rgb` gives; ``alpha`` is ``uint8`` ``(H, W)``,
    shrunk with it, for a cut-out (an image with a pixel that is not fully opaque,
    see :func:`pil_to_rgb_alpha`), else None. Raises as :func:`load_rgb` does.

    >>> import tempfile, os, numpy as np
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> px = np.zeros((40, 20, 4), np.uint8); px[10:30, 5:15] = 255
    >>> Image.fromarray(px, "RGBA").save(p)
    >>> rgb, alpha = load_rgb_alpha(p, max_side=10)
    >>> rgb.shape, alpha.shape, int(alpha[5, 2]), int(alpha[0, 0])
    ((10, 5, 3), (10, 5), 255, 0)
    """
    return _load_image(path, max_side, with_alpha=True)


def _load_image(path, max_side: int | None, with_alpha: bool):
    """(rgb, alpha or None) of :func:`load_rgb_alpha`; alpha is only read when
    ``with_alpha``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"image not found: {path}", field="image_path", value=str(path))
    alpha = None
    try:
        with open_image(path) as im:
            if max_side is not None and max(im.size) > max_side:
                # draft() lets the JPEG decoder skip detail we would throw away anyway.
                im.draft("RGB", (max_side, max_side))
            im.load()
            rgb = _rgb_image(im, owned=True)
            if with_alpha:
                alpha = _alpha_image(im)
            if max_side is not None:
                # shrunk as a PIL image, as resize_max_side would shrink the array:
                # the same pixels, without the full-size array and the copy back to
                # PIL that resizing it takes (4-5 times the decoded image at peak)
                h, w = _shrunk_shape(rgb.height, rgb.width, max_side)
                rgb = _resize_rgb_image(rgb, (h, w))
                if alpha is not None:   # the same filter: the mask stays on the pixels
                    alpha = _resize_rgb_image(alpha, (h, w))
            arr = np.asarray(rgb, dtype=np.uint8)
            if alpha is not None:
                alpha = np.asarray(alpha, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        # DecompressionBombError (not an OSError): a header declaring more pixels
        # than PIL will decode is as unusable as a corrupt file, and said per file.
        raise InputError(f"image unreadable: {path} ({exc.__class__.__name__}: {exc})",
                         field="image_path", value=str(path)) from exc
    return arr, alpha


def resize_max_side(img: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink ``img`` (RGB uint8 or a 2-D mask) so its longer side is ``max_side``.

    Never enlarges. Masks (bool) are resized with nearest neighbour, images with
    a box/bilinear filter.

    >>> import numpy as np
    >>> resize_max_side(np.zeros((300, 150, 3), np.uint8), 100).shape
    (100, 50, 3)
    """
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    return resize_to(img, _shrunk_shape(h, w, max_side))


def _shrunk_shape(h: int, w: int, max_side: int) -> tuple[int, int]:
    """(h, w) shrunk, aspect kept, so the longer side is at most ``max_side``."""
    if max(h, w) <= max_side:
        return h, w
    s = max_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _resize_rgb_image(im, shape: tuple[int, int]):
    """A PIL RGB image resized to ``shape`` (h, w) the way :func:`resize_to` resizes
    a uint8 array: box filter to shrink, bilinear otherwise."""
    from PIL import Image

    h, w = int(shape[0]), int(shape[1])
    if (im.height, im.width) == (h, w):
        return im
    return im.resize((w, h), Image.BOX if h < im.height else Image.BILINEAR)


def resize_to(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an RGB ``uint8`` image, a bool mask or a float map to ``shape`` (h, w).

    >>> import numpy as np
    >>> resize_to(np.ones((4, 4), bool), (8, 2)).shape
    (8, 2)
    """
    from PIL import Image

    h, w = int(shape[0]), int(shape[1])
    if img.shape[:2] == (h, w):
        return img
    if img.dtype == bool:
        out = Image.fromarray(img.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
        return np.asarray(out) > 127
    if img.dtype == np.uint8:
        return np.asarray(_resize_rgb_image(Image.fromarray(img), (h, w)))
    out = Image.fromarray(img.astype(np.float32)).resize((w, h), Image.BILINEAR)
    return np.asarray(out)


# -- orientation ---------------------------------------------------------------
_ORIENTATION = 0x0112   # the EXIF Orientation tag
#: Orientations whose turn swaps width and height (90 or 270 degrees).
TRANSPOSING = (5, 6, 7, 8)


def exif_orientation(im) -> int:
    """The EXIF orientation tag of an open PIL image: 1 (as stored) to 8; 1 when it
    has none or an unreadable one."""
    try:
        o = im.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not refuse the photo
        return 1
    return o if isinstance(o, int) and 1 <= o <= 8 else 1


def upright(im):
    """``im`` turned as its EXIF orientation tag says (phones and some studio tools
    store a portrait photo as landscape pixels plus the tag, and browsers show it
    turned). Without a tag, or with an unreadable one, ``im`` itself."""
    from PIL import ImageOps

    if exif_orientation(im) == 1:
        return im
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not refuse the photo
        return im


def decoding_stamp(path: str | os.PathLike) -> str:
    """What cache keys add to an image file's content hash: ``"|exif<k>"`` for a
    file that :func:`upright` turns (``k``: its orientation tag), then
    ``"|<kind>@<n>"`` when the file is of a kind whose decoding changed
    (:data:`DECODING_REVISIONS`), then ``"|icc@<n>"`` when its embedded colour
    profile is converted to sRGB (not for an sRGB profile), ``"|exif-adobe-rgb@<n>"``
    for a JPEG converted from the Adobe RGB its EXIF block names, or
    ``"|png-gamma@<n>"`` for a PNG converted from its gAMA and cHRM chunks (not
    for sRGB's), else nothing.

    The features stage's part files, the bundle's image fingerprint (which stages
    are current) and the attribute stage's decoded-image caches are reused while an
    image's path, content hash and this stamp are unchanged. A change of decoder for
    a kind of file reruns them once for catalogues holding such files; a catalogue
    of plain JPEGs (MANGO) keeps its stamps, and its caches. Reads the header only
    (~0.1 ms a JPEG); an unreadable file is ``""`` (the decoders say why).

    >>> import tempfile, os, numpy as np
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(os.path.join(d, "x.jpg"))
    >>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(os.path.join(d, "k.png"),
    ...                                                      transparency=(0, 0, 0))
    >>> decoding_stamp(os.path.join(d, "x.jpg")), decoding_stamp(os.path.join(d, "k.png"))
    ('', '|colour-key@3')
    """
    try:
        with open_image(path) as im:
            o = exif_orientation(im)
            kind = _decoding_kind(im)
            srgb = _srgb_transform(im)
    except Exception:  # noqa: BLE001 - missing or unreadable: the decoders report it
        return ""
    n = DECODING_REVISIONS.get(kind)
    source = None if srgb is None else srgb[2]          # "icc", "png-gamma", ...
    m = DECODING_REVISIONS.get(source)
    return (("" if o == 1 else f"|exif{o}") + (f"|{kind}@{n}" if n else "")
            + (f"|{source}@{m}" if m else ""))


# -- uploads -----------------------------------------------------------------
def decode_upload(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an uploaded image safely into ``uint8`` RGB ``(H, W, 3)``.

    The header is read first: a body that is not an image of an accepted format
    is refused as :class:`UnsupportedMediaType`; declared dimensions above
    ``max_pixels`` (a decompression bomb, or just too large) are refused as
    :class:`PayloadTooLarge` before any pixel is decoded; a truncated or corrupt
    body is an :class:`InputError`. A photo with an EXIF orientation tag is turned
    upright, as a browser shows it (keypoints and masks are in that frame), and one
    with an embedded colour profile other than sRGB's (a phone's Display P3, Adobe
    RGB, a profiled CMYK JPEG) or, without one, a PNG whose gAMA and cHRM chunks
    are not sRGB's (a linear-light render) is converted to sRGB, as a browser shows
    its colours; so is a camera's Adobe RGB JPEG that says so in its EXIF block.

    Examples
    --------
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(buf, "PNG")
    >>> decode_upload(buf.getvalue()).shape
    (4, 6, 3)
    >>> decode_upload(b"hello")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    UnsupportedMediaType: upload is not a recognised image
    """
    return _decode_upload(data, max_pixels, with_alpha=False)[0]


def decode_upload_alpha(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS
                        ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`decode_upload` and the upload's transparency: ``(rgb, alpha)``, alpha
    ``uint8`` ``(H, W)`` for a cut-out (see :func:`pil_to_rgb_alpha`), else None.
    Refuses what :func:`decode_upload` refuses, the same way.

    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(buf, "PNG")
    >>> rgb, alpha = decode_upload_alpha(buf.getvalue())
    >>> rgb.shape, alpha is None
    ((4, 6, 3), True)
    """
    return _decode_upload(data, max_pixels, with_alpha=True)[:2]


def decode_upload_shrunk(data: bytes, max_side: int,
                         max_pixels: int = DEFAULT_MAX_PIXELS
                         ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """:func:`decode_upload_alpha` shrunk while decoding so that the longer side is at
    most ``max_side`` (aspect kept, never enlarged), and the photo's own size:
    ``(rgb, alpha, (h, w))``, ``(h, w)`` upright, as :func:`decode_upload` would
    have returned it. Refuses what :func:`decode_upload` refuses, the same way.

    For a caller that shrinks the photo anyway (the engine analyses a photo at the
    features stage's ``max_side``, 512): a 5000 x 5000 JPEG is decoded at an eighth
    of its sides (``draft``, as :func:`load_rgb` decodes a catalogue image) and no
    full-size array is made, where decoding it whole and shrinking the array took
    about 230 MB at peak. The shrink is :func:`resize_max_side`'s (box filter, the
    same shape), so a photo the JPEG decoder cannot shrink by half (a side under
    twice ``max_side``), or that is not a JPEG, gives the same pixels as decoding it
    whole and shrinking it after; a larger JPEG gives the pixels :func:`load_rgb`
    gives the features stage.

    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.fromarray(np.zeros((400, 600, 3), np.uint8)).save(buf, "PNG")
    >>> rgb, alpha, size = decode_upload_shrunk(buf.getvalue(), max_side=60)
    >>> rgb.shape, alpha is None, size
    ((40, 60, 3), True, (400, 600))
    """
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise InputError(f"max_side must be a positive integer, got {max_side!r}",
                         field="max_side", value=max_side)
    return _decode_upload(data, max_pixels, with_alpha=True, max_side=max_side)


def _decode_upload(data, max_pixels, with_alpha: bool, max_side: int | None = None):
    """(rgb, alpha or None, (h, w)) of :func:`decode_upload_shrunk` (``max_side``
    None: not shrunk); alpha is only read when ``with_alpha``."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"upload must be bytes, got {type(data).__name__}", field="image")
    if len(data) == 0:
        raise InputError("upload is empty", field="image")
    if max_pixels is None or max_pixels <= 0:
        raise InputError(f"max_pixels must be positive, got {max_pixels!r}",
                         field="max_pixels", value=max_pixels)
    # No catch_warnings here (it swaps the process-wide filter list, and uploads are
    # decoded by concurrent threads): _open_unwarned raises no DecompressionBombWarning
    # past Image.MAX_IMAGE_PIXELS; our own limit, read from the same header just below,
    # decides instead (and says the photo's size and the limit, not PIL's
    # "decompression bomb DOS attack"). Past twice that PIL opens nothing: refused too.
    try:
        im = _open_unwarned(io.BytesIO(bytes(data)))
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image is larger than the decoder opens "
                              f"({2 * Image.MAX_IMAGE_PIXELS} pixels); at most "
                              f"{max_pixels} are accepted", field="image") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType("upload is not a recognised image", field="image",
                                   allowed=UPLOAD_FORMATS) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image header unreadable ({exc})", field="image") from exc
    with im:
        if _FORMAT_ALIASES.get(im.format, im.format) not in UPLOAD_FORMATS:
            raise UnsupportedMediaType(f"image format {im.format!r} is not accepted",
                                       field="image", value=im.format,
                                       allowed=UPLOAD_FORMATS)
        w, h = im.size
        if w <= 0 or h <= 0:
            raise InputError(f"image has no pixels ({w}x{h})", field="image")
        if w * h > max_pixels:
            raise PayloadTooLarge(f"image is {w}x{h} = {w * h} pixels; at most "
                                  f"{max_pixels} are accepted", field="image",
                                  value=w * h)
        try:
            if max_side is not None and max(w, h) > max_side:
                # the JPEG decoder skips the detail the shrink below throws away
                im.draft("RGB", (max_side, max_side))
            im.load()
            # turned upright and converted to sRGB there (as pil_to_rgb_array)
            rgb = _rgb_image(im, owned=True)
            # the photo's size in rgb's frame: turned when the EXIF tag swaps the
            # sides (a square drafted image cannot tell by its own sides)
            turned = (exif_orientation(im) in TRANSPOSING
                      and (rgb.size != im.size or im.size[0] == im.size[1]))
            size = (w, h) if turned else (h, w)
            alpha = _alpha_image(im) if with_alpha else None
            if max_side is not None:
                # resize_max_side's shape and filter, from the photo's own size: the
                # engine's shrink of the whole photo, done here on the PIL image
                shape = _shrunk_shape(size[0], size[1], max_side)
                rgb = _resize_rgb_image(rgb, shape)
                if alpha is not None:        # the same filter: the mask on the pixels
                    alpha = _resize_rgb_image(alpha, shape)
            arr = np.asarray(rgb, dtype=np.uint8)
            if alpha is not None:
                alpha = np.asarray(alpha, dtype=np.uint8)
        except InputError:
            raise                        # says itself what is wrong (not "corrupt")
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(f"image exceeds the decoder's limit: {exc}",
                                  field="image") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"image data is truncated or corrupt ({exc})",
                             field="image") from exc
    return arr, alpha, size
