"""Reading requests: query strings and JSON bodies validated against :mod:`api.schemas`,
and image uploads refused before they are decoded in full."""
from __future__ import annotations

import json
import math
import sys
from typing import Any

from flask import current_app, request

from features.exceptions import InputError, PayloadTooLarge, UnsupportedMediaType
from api.schemas import validate_body, validate_query
from api.state import get_serving, get_state, peek_state


def query(name: str) -> dict:
    """The query string validated by the ``query[name]`` schema (types coerced)."""
    return validate_query(get_serving().schemas.query[name], request.args)


def no_query_string(where: str = "JSON body") -> None:
    """InputError naming the first query parameter of a request whose route reads
    none (the POST routes read ``where``): ``POST /v1/outfits/complete?user_id=u1``
    was answered as if no user were given, so the shopper's A/B arm was drawn afresh
    and the page never knew."""
    if request.args:
        name = next(iter(request.args))[:80]
        raise InputError(f"{request.method} {request.path} reads its parameters from the "
                         f"{where}, not the query string: move {name!r} there",
                         field=name, value=name)


def json_body(name: str) -> dict:
    """The JSON body validated by the ``body[name]`` schema (a query string is refused:
    :func:`no_query_string`).

    A ``oneOf`` schema is validated against the branch the body's keys select (the
    first branch whose required keys are all present), so the error names the field
    inside that branch rather than "not valid under any of the given schemas".
    """
    no_query_string()
    if not request.is_json:
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)",
                                   field="body", allowed=["application/json"])
    try:
        # decoded here, not by request.get_json: a repeated key is refused (json takes
        # the last of them, silently). Bytes, as get_json does: UTF-8/16/32 and a BOM
        data = json.loads(request.get_data(cache=True), object_pairs_hook=_unique_keys)
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(_unreadable_json(exc), field="body") from None
    except RecursionError:
        # the decoder recurses per level: "[[[[..." a few thousand deep is bad input
        raise InputError("the body's JSON is nested too deeply", field="body") from None
    bad = _non_json_value(data)
    if bad is not None:
        path, reason = bad
        raise InputError(f"{path or 'body'}: {reason}", field=path or "body")
    schema = get_serving().schemas.body[name]
    if "oneOf" in schema and isinstance(data, dict):
        branches = schema["oneOf"]
        schema = next((b for b in reversed(branches)
                       if all(k in data for k in b.get("required", []))), branches[0])
    return validate_body(schema, data)


_FLOAT_MAX = sys.float_info.max


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` refusing a key given twice in one object: the decoder kept
    the last, so ``{"type": "click", ..., "type": "purchase"}`` was stored a purchase."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            shown = key[:80]
            raise InputError(f"key {shown!r} is given twice in one object of the body; "
                             "give it once", field=shown, value=shown)
        seen.add(key)
    return dict(pairs)


def _unreadable_json(exc: BaseException) -> str:
    """Why the decoder refused the body, from its error (or one wrapping it).

    A bare "not valid JSON" sent a page hunting for a syntax error in a body that was
    valid JSON with a 5000-digit number (past Python's int conversion limit), or one
    sent in Latin-1. Says where the syntax error is, or which byte is not UTF-8.
    """
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ValueError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, json.JSONDecodeError):
        if not cause.doc.strip():
            return "the body is empty: send a JSON object"
        return (f"the body is not valid JSON: {cause.msg} at line {cause.lineno} "
                f"column {cause.colno}")
    if isinstance(cause, UnicodeDecodeError):
        return (f"the body is not UTF-8 text: byte 0x{cause.object[cause.start]:02x} at "
                f"position {cause.start}")
    if cause is not None:   # a plain ValueError: the int conversion limit
        return (f"a number in the body has more than {sys.get_int_max_str_digits()} "
                "digits: out of range")
    return "the body is not valid JSON"


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _non_json_value(data: Any) -> tuple[str, str] | None:
    """The path and reason of the first value JSON cannot carry, or None.

    Python's decoder accepts ``NaN``, ``Infinity``, numbers beyond the float range
    (``1e400`` decodes to inf) and integers no float can hold, which JSON Schema's
    ``number`` lets through; stored, SQLite turns NaN into NULL. It also decodes escaped
    lone surrogates (``"\\ud800"``), which no UTF-8 encoder (SQLite's) takes. Paths
    are written as validation errors name fields: ``events[1].value``.
    """
    stack = [("", data)]
    while stack:   # iterative: the body may be nested as deep as the decoder allows
        path, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return path, f"{v!r} is not a finite number"
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > _FLOAT_MAX:
            return path, "the number is out of range (larger than any float)"
        if isinstance(v, str) and not _utf8(v):
            return path, "the string holds a lone surrogate (\\ud800-\\udfff): not text"
        if isinstance(v, dict):
            bad_key = next((k for k in v if not _utf8(k)), None)
            if bad_key is not None:
                return path, "a key holds a lone surrogate (\\ud800-\\udfff): not text"
            stack.extend((f"{path}.{k}" if path else str(k), x)
                         for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    return None


def csv_list(value: str | None, *, field: str, allowed=None, max_len: int) -> list[str] | None:
    """Split ``a,b,c``; refuse empty entries, unknown values and too many entries."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if any(not p for p in parts):
        raise InputError(f"{field} has an empty entry: {value[:80]!r}", field=field)
    if len(parts) > max_len:
        raise InputError(f"{field} has {len(parts)} entries; at most {max_len}",
                         field=field)
    if allowed is not None:
        for p in parts:
            if p not in allowed:
                raise InputError(f"unknown {field} value {p[:40]!r}", field=field,
                                 value=p[:40], allowed=allowed)
    return parts


def form_fields(name: str) -> dict:
    """The multipart form's text fields, validated like a query string (a query string
    itself is refused: :func:`no_query_string`)."""
    no_query_string("form's fields")
    return validate_query(get_serving().schemas.query[name], request.form)


def image_upload(field: str = "image"):
    """Decode the uploaded image of a multipart request: ``(rgb, alpha, (h, w))``,
    ``rgb`` uint8 (H, W, 3) (transparency composited on white), ``alpha`` uint8 (H, W)
    for a cut-out (its garment mask), else None, and the photo's own (upright) size.

    rgb and alpha are shrunk while decoding to the longest side an engine of the
    request's state analyses (:func:`photo_max_side`; the photo's size is what the
    keypoints are scaled back to): a 5000 x 5000 photo decoded whole, to be shrunk
    to 512 pixels by the engine, took ~230 MB at peak.

    Refused before a full decode: a body that is not multipart (415), no ``image``
    part (400), more than ``MAX_IMAGE_BYTES`` (413), not an image (415), declared
    dimensions above ``MAX_IMAGE_PIXELS`` (413), truncated or corrupt (400). These are
    said before a missing bundle is (503): the upload is checked first.
    """
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("send the image as multipart/form-data",
                                   field="body", allowed=["multipart/form-data"])
    f = request.files.get(field)
    if f is None:
        raise InputError(f"no {field!r} file part in the upload", field=field)
    limit = int(current_app.config["MAX_IMAGE_BYTES"])
    data = f.stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the image is larger than {limit} bytes", field=field)
    return decode_image(data, int(current_app.config["MAX_IMAGE_PIXELS"]), field=field,
                        max_side=photo_max_side())


def photo_max_side() -> int | None:
    """The longest side at which an engine of the request's state analyses a photo
    (:attr:`recommender.engine.Engine.photo_max_side`): the largest of the served
    engine's and the variants' models', since the variant is assigned after the
    upload is checked; an engine with a smaller one shrinks the photo further. None
    (decode whole) with no bundle loaded, or an engine that does not say."""
    if peek_state() is None:
        return None
    state = get_state()          # taken for the request: the engine that analyses
    sides = [getattr(e, "photo_max_side", None)
             for e in (state.engine, *state.models.values())]
    return None if None in sides else max(sides)


def decode_image(data: bytes, max_pixels: int, *, field: str = "image",
                 max_side: int | None = None):
    """:func:`features.imaging.decode_upload_shrunk` (not shrunk when ``max_side`` is
    None) with the request's field named in errors: ``(rgb, alpha or None, (h, w))``."""
    from features.imaging import decode_upload_alpha, decode_upload_shrunk

    try:
        if max_side is None:
            rgb, alpha = decode_upload_alpha(data, max_pixels)
            return rgb, alpha, rgb.shape[:2]
        return decode_upload_shrunk(data, max_side, max_pixels)
    except InputError as exc:
        exc.field = field
        raise


def reserved(args: dict, *names: str) -> dict[str, Any]:
    """``args`` without the given keys (what is left are attribute filters)."""
    return {k: v for k, v in args.items() if k not in names}
