"""Admin: token-protected live reload of the bundle, the rules and the experiments.

``POST /admin/reload`` with ``Authorization: Bearer <ADMIN_TOKEN>`` (or
``X-Admin-Token``) and an optional JSON body ``{"bundle": path, "rules": path}``:
reloads (from the new paths, or the same ones re-read; the ``EXPERIMENTS`` file is
always re-read from its configured path), swaps atomically and tells the other workers
through the control file. An invalid bundle, rules or experiments file answers 422 with
the reason and the previous version keeps serving. Without ``ADMIN_TOKEN`` configured
the admin endpoints answer 403.
"""
from __future__ import annotations

import hmac

from flask import Blueprint, current_app, request

from features.exceptions import InputError, MixmatchError
from api.requests import json_body, no_query_string
from api.responses import respond
from api.state import get_serving

bp = Blueprint("admin", __name__, url_prefix="/admin")


class Forbidden(MixmatchError):
    http_status = 403

    def __init__(self, message):
        super().__init__(message)
        self.field = "token"


class Unauthorized(Forbidden):
    http_status = 401


def require_token() -> None:
    token = current_app.config.get("ADMIN_TOKEN")
    if not token:
        raise Forbidden("admin endpoints are disabled: no ADMIN_TOKEN is configured")
    given = request.headers.get("X-Admin-Token", "")
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given or not hmac.compare_digest(given.encode(), str(token).encode()):
        raise Unauthorized("missing or wrong admin token (Authorization: Bearer <token>)")


@bp.post("/reload")
def reload():
    require_token()
    no_query_string()   # ?bundle=B was ignored: the same paths reloaded, answered 200
    # the body itself, not Content-Length, says whether there is one: a chunked body
    # has no length, and was taken for none (the same paths reloaded, answered 200)
    body = json_body("reload") if request.get_data(cache=True) else {}
    for key in ("bundle", "rules"):
        if "\x00" in body.get(key, ""):
            # no path holds one: the OS call's "embedded null byte" was a 422, as if
            # the bundle were broken, naming neither the value nor the field's fault
            shown = body[key][:80]
            raise InputError(f"{key} path {shown!r} holds a NUL byte: not a path",
                             field=key, value=shown)
    holder = get_serving().holder
    new, old = holder.reload(bundle=body.get("bundle"), rules=body.get("rules"),
                             publish=True)
    published = holder.publish_error is None
    extra = {} if published else {"warning": f"reloaded in this worker only: "
                                             f"{holder.publish_error}"}
    return respond({"reloaded": True, "published": published, **extra, **new.describe(),
                    "previous": old.describe() if old is not None else {}})
