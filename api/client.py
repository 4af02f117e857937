"""A small HTTP client of the API, and a server on loopback for notebooks and tests.

The notebooks drive a *running* API the way a shop page or a merchandiser's tool
would: over HTTP, so what they show is what the server serves. Standard library
only (``urllib``): no client dependency.

- :func:`get_json` / :func:`post_json`: one request, the decoded JSON body (an error
  status raises :class:`ApiError` with the body's reason);
- :func:`served_rules_version`: the rules version a response carries;
- :func:`publish_rules`: ask the API to load a rules file (token-protected admin
  reload) or wait for its file watch, and return the version it now serves;
- :class:`LocalServer`: ``create_app(config)`` served by werkzeug in a background
  thread on ``127.0.0.1`` (port chosen by the OS), stopped on exit.

Examples
--------
>>> import tempfile
>>> with LocalServer({"DATA_DIR": tempfile.mkdtemp(), "WATCH_INTERVAL": 0}) as url:
...     get_json(url + "/openapi.json")["openapi"][:1]
'3'
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping

from features.exceptions import InputError, MixmatchError

#: Hosts :class:`LocalServer` binds and :func:`require_loopback` accepts.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ApiError(MixmatchError):
    """The API answered with an error status; ``status`` and ``body`` say why."""

    def __init__(self, status: int, body: Any, url: str):
        reason = body.get("error") if isinstance(body, dict) else body
        super().__init__(f"{url} answered {status}: {reason}")
        self.status = status
        self.body = body
        self.url = url


def require_loopback(url: str) -> str:
    """``url`` without a trailing slash if it points at this machine, else InputError."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
        raise InputError(f"{url!r} is not a loopback http(s) URL", field="api_url",
                         value=url, allowed=[f"http://{h}:PORT" for h in LOOPBACK_HOSTS])
    return url.rstrip("/")


def _request(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None,
             timeout: float = 10.0) -> Any:
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw.decode(errors="replace")[:200]
        raise ApiError(exc.code, payload, url) from None
    return json.loads(raw) if raw else None


def get_json(url: str, params: Mapping[str, Any] | None = None, *, timeout: float = 10.0,
             headers: Mapping[str, str] | None = None) -> Any:
    """GET ``url`` (with query ``params``; None values left out) and decode the JSON."""
    if params:
        q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{url}?{q}" if q else url
    return _request("GET", url, headers=headers, timeout=timeout)


def post_json(url: str, body: Any, *, timeout: float = 10.0,
              headers: Mapping[str, str] | None = None) -> Any:
    """POST ``body`` as JSON to ``url`` and decode the JSON answer."""
    return _request("POST", url, body=body, headers=headers, timeout=timeout)


def served_rules_version(api_url: str, item_id: str) -> str | None:
    """The ``rules_version`` the API serves now (read from a complements response)."""
    url = f"{api_url.rstrip('/')}/v1/items/{urllib.parse.quote(item_id, safe='')}/complements"
    return get_json(url, {"k": 1}).get("rules_version")


def publish_rules(api_url: str, rules_path: str, expected_version: str, *, probe_item: str,
                  admin_token: str | None = None, timeout: float = 20.0,
                  poll: float = 0.2) -> dict:
    """Make a running API serve the rules file ``rules_path`` and confirm it does.

    With ``admin_token``: ``POST /admin/reload {"rules": rules_path}`` (the server
    validates the file; a refusal raises :class:`ApiError` with the reason and the
    old rules keep serving). Without: rely on the server's file watch (it must have
    been started with ``RULES`` pointing at this file). Then poll a complements
    response until its ``rules_version`` is ``expected_version``.

    Returns ``{"served_version", "via", "seconds"}``; raises ``TimeoutError`` when
    the server still serves another version after ``timeout`` seconds.
    """
    api_url = api_url.rstrip("/")
    t0 = time.monotonic()
    via = "watch"
    if admin_token:
        post_json(f"{api_url}/admin/reload", {"rules": str(rules_path)},
                  headers={"Authorization": f"Bearer {admin_token}"}, timeout=timeout)
        via = "admin reload"
    served = None
    while True:
        served = served_rules_version(api_url, probe_item)
        if served == expected_version:
            return {"served_version": served, "via": via,
                    "seconds": round(time.monotonic() - t0, 3)}
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{api_url} still serves rules version {served!r} after "
                               f"{timeout:g}s, not {expected_version!r}")
        time.sleep(poll)


class LocalServer:
    """``create_app(config)`` served on loopback by werkzeug in a daemon thread.

    Use as a context manager; ``url`` is ``http://127.0.0.1:<port>``. The server is
    threaded (a slow request does not hold the others) and shut down on exit.

    Parameters
    ----------
    config : mapping
        The :func:`api.create_app` configuration.
    host : str
        A loopback address (nothing else is accepted: this is for notebooks/tests).
    port : int
        0 lets the OS choose a free port.
    """

    def __init__(self, config: Mapping[str, Any], *, host: str = "127.0.0.1", port: int = 0):
        if host not in LOOPBACK_HOSTS:
            raise InputError(f"LocalServer binds loopback only, not {host!r}", field="host",
                             value=host, allowed=LOOPBACK_HOSTS)
        self.config = dict(config)
        self.host = host
        self.port = port
        self.app = None
        self.url: str | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        from werkzeug.serving import WSGIRequestHandler, make_server

        from api.app import create_app

        class _Quiet(WSGIRequestHandler):
            # one log line per request would bury a notebook's output
            def log_request(self, *args, **kwargs):
                pass

        self.app = create_app(self.config)
        self._server = make_server(self.host, self.port, self.app, threaded=True,
                                   request_handler=_Quiet)
        self.port = self._server.server_port
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="mixmatch-local-api", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None
            # the events database's files: each request ran in a thread of its own, and
            # the last one's connection stayed open for as long as the app was kept
            self.app.extensions["mixmatch"].events.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
