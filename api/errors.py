"""One error handler: project exceptions and HTTP errors become JSON 4xx bodies.

Every error body is ``{"error": reason, "field": offending field or null, ...}`` plus
the envelope (``request_id`` and the versions), with the status the exception class
names (:attr:`features.exceptions.MixmatchError.http_status`): 400 bad input, 404
unknown id, 413 too large, 415 not an image, 503 busy for now (with ``Retry-After``
when the error names one: the events database locked). A last-resort handler still
answers 500 in JSON, but no input should reach it (the OpenAPI fuzz test checks that).
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from features.exceptions import MixmatchError

log = logging.getLogger(__name__)

#: Which request field an HTTP error is about, when the status says it.
_HTTP_FIELDS = {413: "body", 415: "body", 405: "method", 404: "path"}


def _body(message: str, field: str | None, status: int, extra: dict | None = None):
    from api.responses import envelope
    body = {"error": message, "field": field, "status": status}
    if extra:
        body.update(extra)
    try:
        body.update(envelope())
    except Exception:  # the envelope must never turn an error into a crash
        log.exception("could not build the error envelope")
        body.update({"request_id": "", "experiment": None, "variant": None,
                     "bundle_version": None, "rules_version": None})
    resp = jsonify(body)
    resp.status_code = status
    return resp


def handle_mixmatch_error(exc: MixmatchError):
    status = int(getattr(exc, "http_status", 400))
    body = exc.to_dict() if hasattr(exc, "to_dict") else {"error": str(exc),
                                                          "field": getattr(exc, "field",
                                                                           None)}
    if status >= 500:
        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.path, exc)
    extra = {k: v for k, v in body.items() if k not in ("error", "field")}
    resp = _body(body["error"], body.get("field"), status, extra)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        resp.headers["Retry-After"] = str(int(retry_after))
    return resp


def handle_http_error(exc: HTTPException):
    status = exc.code or 500
    extra = {}
    if status == 405:
        allowed = exc.valid_methods if hasattr(exc, "valid_methods") else None
        if allowed:
            extra["allowed"] = sorted(allowed)
    message = exc.description or exc.name
    if status == 413:
        message = _too_large_message(message)
    return _body(message, _HTTP_FIELDS.get(status), status, extra)


def _too_large_message(default: str) -> str:
    """Which limit a 413 is about. werkzeug raises the same bare 413 for a body over
    ``MAX_CONTENT_LENGTH`` and for a form over ``MAX_FORM_PARTS`` parts or with a text
    field over ``MAX_FORM_MEMORY_SIZE`` bytes; the latter were answered "the request
    body is larger than the limit of 10485760 bytes" for a body of 20 kB."""
    limit, length = request.max_content_length, request.content_length
    body_over = f"the request body is larger than the limit of {limit} bytes"
    if limit is not None and length is not None and length > limit:
        return body_over
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = (f"the form has more than {request.max_form_parts} parts, or a text "
                f"field larger than {request.max_form_memory_size} bytes")
        # a chunked body has no length: it may be over the byte limit too
        return form + (f", or {body_over}" if length is None and limit else "")
    return body_over if limit else default


def handle_unexpected(exc: Exception):
    # last resort: a bug, not an input problem; the details go to the log, not the body
    if isinstance(exc, HTTPException):
        return handle_http_error(exc)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _body("internal error (logged with this request_id)", None, 500)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(MixmatchError, handle_mixmatch_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
