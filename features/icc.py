"""ICC v2 display profiles written from numbers, for files that describe their
colours without embedding a profile.

A camera in Adobe RGB mode says so in its EXIF block only, a renderer's PNG in its
``gAMA`` and ``cHRM`` chunks: a tone curve, three primaries and a white point. The
decoders convert those to sRGB the way they convert an embedded profile
(:func:`features.imaging._srgb_transform`, littlecms, in C), so they get a profile
of the same meaning written here: littlecms reads profiles but cannot make one of
given primaries (``ImageCms.createProfile`` knows sRGB, LAB and XYZ only).

The profiles hold what littlecms needs and no more: a matrix/TRC RGB profile (three
colorants adapted to the D50 connection space with Bradford, as ICC requires, and
three tone curves) or a greyscale one (one tone curve). Tone curves are parametric
(``para``: the gamma kept to 1/65536, where a v2 ``curv`` gamma keeps 1/256).

>>> from PIL import ImageCms
>>> import io
>>> p = ImageCms.ImageCmsProfile(io.BytesIO(rgb_profile(563 / 256, ADOBE_RGB_PRIMARIES)))
>>> p.profile.xcolor_space, p.profile.profile_description
('RGB ', 'RGB gamma 2.19922')
"""
from __future__ import annotations

import struct

import numpy as np

#: (x, y) chromaticity of CIE D65, the white of sRGB and Adobe RGB.
D65 = (0.3127, 0.3290)
#: (x, y) of red, green and blue of sRGB (IEC 61966-2-1) and of Adobe RGB (1998).
SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
ADOBE_RGB_PRIMARIES = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
#: sRGB's tone curve: the "tone" argument that means it rather than a plain gamma.
SRGB_TONE = "srgb"

_D50_XYZ = (0.9642, 1.0, 0.8249)      # the ICC connection space's white (s15.16 values)
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614],
                      [-0.7502, 1.7135, 0.0367],
                      [0.0389, -0.0685, 1.0296]])


def _xyz(xy) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz_matrix(primaries, white=D65) -> np.ndarray:
    """linear RGB -> XYZ (white's Y = 1) of the RGB space with these (x, y)
    ``primaries`` (red, green, blue) and ``white``.

    Raises ValueError when they make no colour space: a chromaticity outside
    0 < y, 0 <= x, x + y <= 1 or not finite, primaries on one line (no matrix), or
    a white outside their triangle (a negative amount of a primary in white)."""
    xys = [tuple(map(float, p)) for p in (*primaries, white)]
    if len(xys) != 4 or not all(len(p) == 2 and np.isfinite(p).all() and p[1] > 1e-6
                                and p[0] >= 0 and p[0] + p[1] <= 1 for p in xys):
        raise ValueError(f"not chromaticities of three primaries and a white: {xys}")
    m = np.stack([_xyz(p) for p in xys[:3]], axis=1)
    if abs(np.linalg.det(m)) < 1e-6:
        raise ValueError(f"primaries on one line: {xys[:3]}")
    scale = np.linalg.solve(m, _xyz(xys[3]))
    if not (scale > 0).all():
        raise ValueError(f"white {xys[3]} outside the primaries' triangle {xys[:3]}")
    return m * scale


def _adapt_to_d50(white) -> np.ndarray:
    """Bradford chromatic adaptation from ``white`` (x, y) to the D50 connection space."""
    src, dst = _BRADFORD @ _xyz(white), _BRADFORD @ np.array(_D50_XYZ)
    return np.linalg.inv(_BRADFORD) @ np.diag(dst / src) @ _BRADFORD


def _s15(v: float) -> bytes:
    return struct.pack(">i", int(round(v * 65536)))


def _tag_xyz(xyz) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


def _tag_desc(text: str) -> bytes:
    a = text.encode("ascii") + b"\0"
    # textDescriptionType: the ASCII text, then empty Unicode and ScriptCode parts
    return (b"desc\0\0\0\0" + struct.pack(">I", len(a)) + a + struct.pack(">II", 0, 0)
            + struct.pack(">HB", 0, 0) + b"\0" * 67)


def _tag_curve(tone) -> bytes:
    """parametricCurveType: ``linear = code ** tone`` (function 0), or sRGB's curve
    (function 3: a straight segment below 0.04045, then the 2.4 power)."""
    if tone == SRGB_TONE:
        params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
        return b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(map(_s15, params))
    return b"para\0\0\0\0" + struct.pack(">HH", 0, 0) + _s15(tone)


def _profile(colour_space: bytes, tags: list[tuple[bytes, bytes]],
             device_class: bytes = b"mntr") -> bytes:
    """An ICC v2.1 profile (a display one unless ``device_class`` says otherwise, as
    the tests' printer profile does): 128-byte header, tag table, tags (4-byte
    aligned)."""
    table, data = [], b""
    offset = 128 + 4 + 12 * len(tags)
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table.append(struct.pack(">4sII", sig, offset + len(data), len(body)))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"none" + bytes([2, 0x10, 0, 0]) + device_class
              + colour_space + b"XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 24
              + struct.pack(">I", 0) + b"".join(_s15(v) for v in _D50_XYZ) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + b"".join(table) + data


def _tone_name(tone) -> str:
    return "sRGB curve" if tone == SRGB_TONE else f"gamma {float(tone):g}"


def _check_tone(tone) -> None:
    if tone == SRGB_TONE:
        return
    if isinstance(tone, bool) or not isinstance(tone, (int, float)) \
            or not np.isfinite(tone) or not 0 < tone < 30000:
        raise ValueError(f"tone must be a gamma in (0, 30000) or {SRGB_TONE!r}, "
                         f"got {tone!r}")


def rgb_profile(tone, primaries, white=D65) -> bytes:
    """An ICC v2 matrix/TRC RGB profile: code values ``c`` (0..1) are linear light
    ``c ** tone`` (``tone`` a gamma, the decoding exponent; or :data:`SRGB_TONE`)
    of the RGB space with these (x, y) ``primaries`` and ``white``.

    Raises ValueError for a tone that is not a positive gamma, or chromaticities
    that make no colour space (:func:`rgb_to_xyz_matrix`).

    >>> len(rgb_profile(1.0, SRGB_PRIMARIES)) > 128
    True
    """
    _check_tone(tone)
    m50 = _adapt_to_d50(white) @ rgb_to_xyz_matrix(primaries, white)
    curve = _tag_curve(tone)
    return _profile(b"RGB ", [
        (b"desc", _tag_desc(f"RGB {_tone_name(tone)}")), (b"wtpt", _tag_xyz(_D50_XYZ)),
        (b"rXYZ", _tag_xyz(m50[:, 0])), (b"gXYZ", _tag_xyz(m50[:, 1])),
        (b"bXYZ", _tag_xyz(m50[:, 2])),
        (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)])


def grey_profile(tone) -> bytes:
    """An ICC v2 greyscale profile: code values ``c`` are luminance ``c ** tone``
    (or sRGB's curve for :data:`SRGB_TONE`), neutral grey whatever the primaries.

    >>> grey_profile(0) # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: tone must be a gamma in (0, 30000) or 'srgb', got 0
    """
    _check_tone(tone)
    return _profile(b"GRAY", [(b"desc", _tag_desc(f"Grey {_tone_name(tone)}")),
                              (b"wtpt", _tag_xyz(_D50_XYZ)), (b"kTRC", _tag_curve(tone))])
