"""Tiny synthetic packshots with a known mask, built from shapes (no real data)."""
from __future__ import annotations

import numpy as np


def packshot(h=160, w=120, bg=(238, 236, 232), fg=(40, 60, 150), shape="rect",
             noise=1.5, seed=0, vignette=0.0):
    """A garment-like shape on a plain (optionally vignetted, noisy) background.

    Returns (rgb uint8, mask bool). Shapes: rect, trousers (two legs joined at
    the waist, open gap between them), tshirt (body + sleeves), ring (thin loop),
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    if shape == "rect":
        m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
    elif shape == "trousers":
        top, crotch, bottom = int(0.15 * h), int(0.4 * h), int(0.9 * h)
        l, r = int(0.25 * w), int(0.75 * w)
        m[top:crotch, l:r] = True
        m[crotch:bottom, l:int(0.47 * w)] = True
        m[crotch:bottom, int(0.53 * w):r] = True
    elif shape == "tshirt":
        m[int(0.2 * h):int(0.85 * h), int(0.3 * w):int(0.7 * w)] = True
        m[int(0.2 * h):int(0.4 * h), int(0.12 * w):int(0.88 * w)] = True
    elif shape == "ring":
        cy, cx, rad = h / 2, w / 2, 0.3 * min(h, w)
        d = np.hypot(yy - cy, xx - cx)
        m = np.abs(d - rad) < 1.6
    else:
        raise ValueError(shape)
    base = np.array(bg, float)[None, None] * (1 - vignette * (((yy - h / 2) / h) ** 2
                                                          + ((xx - w / 2) / w) ** 2))[..., None]
    img = np.where(m[..., None], np.array(fg, float)[None, None], base)
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), m


def iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a & b).sum() / max((a | b).sum(), 1))


def turned_photo(path, orientation=6, h=40, w=80):
    """A JPEG stored as ``h x w`` landscape pixels, a dark band over its left 20
    columns, with EXIF ``orientation`` (6: turn 90 degrees clockwise to view, as a
    phone stores a portrait photo). Upright, it is ``w x h`` with the band on top."""
    from PIL import Image

    stored = np.full((h, w, 3), 255, np.uint8)
    stored[:, :20] = 0
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def oversized_png(path, w=15_000, h=15_000):
    """A PNG of a few bytes whose header declares ``w x h`` RGB pixels (15000 x 15000
    = 225 M: past PIL's hard limit of 2 x ``Image.MAX_IMAGE_PIXELS``, so that
    ``Image.open`` itself raises ``DecompressionBombError``, a decompression bomb
    or a scan far too large to decode)."""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))
    return path


def cutout(h=160, w=120, fg=(255, 255, 255), shape="tshirt", seed=0, outside=(0, 0, 0)):
    """A transparent cut-out of :func:`packshot`'s ``shape``: the garment opaque, all
    else fully transparent (its colour ``outside``, black as many tools save it).

    Returns (rgba uint8 (H, W, 4), mask bool). Composited on white, a white garment
    is white on white: only the alpha knows its outline."""
    img, m = packshot(h=h, w=w, fg=fg, shape=shape, seed=seed, noise=1.0)
    rgb = np.where(m[..., None], img, np.array(outside, np.uint8))
    return np.dstack([rgb, np.where(m, 255, 0)]).astype(np.uint8), m


def on_white(rgba):
    """``rgba`` composited on white, as the decoders give it (uint8 RGB)."""
    a = rgba[..., 3:].astype(float) / 255
    return np.round(rgba[..., :3] * a + 255 * (1 - a)).astype(np.uint8)


# -- colour profiles (ICC v2, written by hand: ImageCms only makes sRGB, LAB, XYZ) --
#: Display P3 and Adobe RGB (1998): (x, y) chromaticities of red, green and blue,
#: D65 white, and each one's tone curve (P3 uses sRGB's; Adobe RGB gamma 563/256).
P3 = {"primaries": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), "trc": "srgb",
      "name": "Display P3 (test)"}
ADOBE_RGB = {"primaries": ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)), "trc": 563 / 256,
             "name": "Adobe RGB 1998 (test)"}
#: sRGB's primaries with another tone curve (a PNG's gAMA alone): linear light.
LINEAR_SRGB = {"primaries": ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), "trc": 1.0}
#: ProPhoto RGB's primaries and D50 white (a cHRM chunk far from sRGB's, of another
#: white) with the gamma 2.2 of a gAMA of 45455.
WIDE_D50 = {"primaries": ((0.7347, 0.2653), (0.1596, 0.8404), (0.0366, 0.0001)),
            "white": (0.3457, 0.3585), "trc": 1 / 0.45455}
_D65_XY = (0.3127, 0.3290)
_D50_XYZ = np.array([0.9642, 1.0, 0.8249])
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614],
                      [-0.7502, 1.7135, 0.0367],
                      [0.0389, -0.0685, 1.0296]])
#: linear sRGB -> XYZ (D65), IEC 61966-2-1
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


def _xyz(xy):
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz_matrix(primaries, white=_D65_XY):
    """linear RGB -> XYZ (Y of white 1) of an RGB space with these primaries."""
    m = np.stack([_xyz(p) for p in primaries], axis=1)
    return m * np.linalg.solve(m, _xyz(white))


def bradford(src_xy, dst_xy=_D65_XY):
    """Bradford chromatic adaptation (XYZ -> XYZ) from white ``src_xy`` to ``dst_xy``."""
    src, dst = _BRADFORD @ _xyz(src_xy), _BRADFORD @ _xyz(dst_xy)
    return np.linalg.inv(_BRADFORD) @ np.diag(dst / src) @ _BRADFORD


def _d65_to_d50():
    src, dst = _BRADFORD @ _xyz(_D65_XY), _BRADFORD @ _D50_XYZ
    return np.linalg.inv(_BRADFORD) @ np.diag(dst / src) @ _BRADFORD


def srgb_encode(lin):
    """linear sRGB (0..1, clipped) -> uint8-scale floats 0..255."""
    lin = np.clip(lin, 0.0, 1.0)
    return 255 * np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def decode_trc(v, trc):
    """8-bit code values -> linear light under ``trc`` ("srgb" or a gamma)."""
    c = np.asarray(v, float) / 255
    if trc == "srgb":
        return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return c ** trc


def expected_srgb(rgb, space):
    """What an 8-bit colour ``rgb`` in ``space`` (:data:`P3`, :data:`ADOBE_RGB`, ...)
    is in sRGB, computed from the spaces' matrices (floats, clipped to 0..255); a
    space of another white than D65 adapted to it (Bradford)."""
    lin = decode_trc(rgb, space["trc"])
    white = space.get("white", _D65_XY)
    xyz = bradford(white) @ rgb_to_xyz_matrix(space["primaries"], white) @ lin
    return srgb_encode(np.linalg.solve(SRGB_TO_XYZ, xyz))


def _s15(v):
    import struct
    return struct.pack(">i", int(round(v * 65536)))


def _tag_xyz(xyz):
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


def _tag_desc(text):
    import struct
    a = text.encode("ascii") + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(a)) + a
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67)


def _tag_text(text):
    return b"text\0\0\0\0" + text.encode("ascii") + b"\0"


def _tag_curve(trc):
    import struct
    if trc == "srgb":   # tabulated: v2 curveType has no parametric form
        c = np.linspace(0, 1, 1024)
        lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return (b"curv\0\0\0\0" + struct.pack(">I", 1024)
                + np.round(lin * 65535).astype(">u2").tobytes())
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, int(round(trc * 256)))


def _icc(device_class, colour_space, tags):
    """An ICC v2.1 profile of these tags: the project's writer (features.icc), whose
    output littlecms reads; the tests check the colours it converts to against values
    worked out here from the primaries."""
    from features.icc import _profile
    return _profile(colour_space, tags, device_class)


def rgb_icc_profile(space=P3):
    """An ICC v2 matrix/TRC display profile for ``space`` (:data:`P3`,
    :data:`ADOBE_RGB`): the colorants D50-adapted (Bradford) as ICC requires."""
    m50 = _d65_to_d50() @ rgb_to_xyz_matrix(space["primaries"])
    curve = _tag_curve(space["trc"])
    return _icc(b"mntr", b"RGB ", [
        (b"desc", _tag_desc(space["name"])), (b"cprt", _tag_text("no copyright, test")),
        (b"wtpt", _tag_xyz(_D50_XYZ)),
        (b"rXYZ", _tag_xyz(m50[:, 0])), (b"gXYZ", _tag_xyz(m50[:, 1])),
        (b"bXYZ", _tag_xyz(m50[:, 2])),
        (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)])


def grey_icc_profile(gamma=1.8):
    """An ICC v2 greyscale display profile with a plain ``gamma`` tone curve."""
    return _icc(b"mntr", b"GRAY", [
        (b"desc", _tag_desc(f"Gray gamma {gamma} (test)")),
        (b"cprt", _tag_text("no copyright, test")), (b"wtpt", _tag_xyz(_D50_XYZ)),
        (b"kTRC", _tag_curve(gamma))])


#: The sRGB colour (8-bit) each ink prints alone on white paper in
#: :func:`cmyk_icc_profile`; inks multiply in linear light.
CMYK_INKS = {"C": (0, 160, 230), "M": (230, 0, 126), "Y": (255, 240, 0), "K": (35, 31, 32)}


def cmyk_ink_srgb(cmyk):
    """sRGB (floats 0..255) of CMYK corner ``cmyk`` (each 0 or 255) under
    :func:`cmyk_icc_profile`'s inks."""
    lin = np.ones(3)
    for ink, v in zip("CMYK", cmyk):
        if v:
            lin = lin * decode_trc(CMYK_INKS[ink], "srgb")
    return srgb_encode(lin)


def cmyk_icc_profile():
    """An ICC v2 CMYK output profile whose only table, A2B0 (a lut16 to XYZ with 2
    grid points per ink), prints :data:`CMYK_INKS`: a full-ink corner reads exactly
    :func:`cmyk_ink_srgb`, where PIL's naive CMYK -> RGB reads pure cyan as
    (0, 255, 255)."""
    import itertools
    import struct

    to50 = _d65_to_d50()
    clut = []
    for corner in itertools.product((0, 255), repeat=4):   # first ink varies slowest
        lin = decode_trc(cmyk_ink_srgb(corner), "srgb")
        clut.append(np.clip(to50 @ SRGB_TO_XYZ @ lin * 32768, 0, 65535))
    ramp = np.array([0, 65535], ">u2").tobytes()
    lut = (b"mft2\0\0\0\0" + struct.pack(">BBBB", 4, 3, 2, 0)
           + b"".join(_s15(v) for v in np.eye(3).ravel())
           + struct.pack(">HH", 2, 2) + ramp * 4
           + np.round(np.array(clut)).astype(">u2").tobytes() + ramp * 3)
    return _icc(b"prtr", b"CMYK", [
        (b"desc", _tag_desc("Toy CMYK (test)")), (b"cprt", _tag_text("no copyright, test")),
        (b"wtpt", _tag_xyz(_D50_XYZ)), (b"A2B0", lut)])


# -- colours described without a profile (EXIF, PNG chunks) ------------------------
def exif_colour_space(colour_space, interop_index=None, orientation=None):
    """EXIF bytes (for ``save(exif=...)``) with ColorSpace ``colour_space`` (1 sRGB,
    0xFFFF uncalibrated) in the Exif sub-IFD and, when given, an Interoperability
    IFD whose InteroperabilityIndex is ``interop_index`` ("R03" Adobe RGB, "R98"
    sRGB), as an Adobe RGB camera writes them. By hand: PIL's Exif.tobytes writes
    no Interoperability IFD. Big-endian TIFF: IFD0, Exif IFD, Interop IFD."""
    import struct

    def ifd(entries):
        out = struct.pack(">H", len(entries))
        for tag, kind, count, value in sorted(entries):
            out += struct.pack(">HHI", tag, kind, count) + value
        return out + struct.pack(">I", 0)              # no next IFD

    ifd0 = [] if orientation is None else [(0x0112, 3, 1, struct.pack(">HH", orientation, 0))]
    exif_at = 8 + 2 + 12 * (len(ifd0) + 1) + 4
    ifd0.append((0x8769, 4, 1, struct.pack(">I", exif_at)))
    sub = [(0xA001, 3, 1, struct.pack(">HH", colour_space, 0))]
    interop = b""
    if interop_index is not None:
        interop_at = exif_at + 2 + 12 * 2 + 4
        sub.append((0xA005, 4, 1, struct.pack(">I", interop_at)))
        interop = ifd([(0x0001, 2, 4, interop_index.encode("ascii")[:3] + b"\0")])
    return b"Exif\0\0MM\0*" + struct.pack(">I", 8) + ifd(ifd0) + ifd(sub) + interop


def png_colour_chunks(gama=None, chrm=None, srgb=None):
    """A PngInfo (``save(pnginfo=...)``) writing a gAMA chunk (``gama``: the stored
    number, 100000 times the encoding gamma: 45455 for 1/2.2, 100000 for linear
    light), a cHRM chunk (``chrm``: white, red, green, blue as x, y floats; any
    count) and an sRGB chunk (``srgb``: its rendering intent), before the pixels."""
    import struct

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if gama is not None:
        info.add(b"gAMA", struct.pack(">I", gama))
    if chrm is not None:
        info.add(b"cHRM", struct.pack(f">{len(chrm)}I", *(round(v * 100000) for v in chrm)))
    if srgb is not None:
        info.add(b"sRGB", bytes([srgb]))
    return info


def chrm_of(space):
    """A cHRM chunk's eight values (white, red, green, blue) for ``space``."""
    return (*space.get("white", _D65_XY), *(v for xy in space["primaries"] for v in xy))
