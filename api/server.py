"""Serving: gunicorn through its application API, or Flask's dev server with ``--dev``.

The app is built once in the gunicorn master (``preload_app``): an invalid bundle, rules
or experiments file stops the start with the reason instead of crash-looping workers,
and the forked workers share the loaded arrays copy-on-write. Workers use the threaded
worker class so a slow client or an fsync does not hold a whole worker.

Examples
--------
Command line::

    mixmatch serve --bundle bundles/demo --port 8000 --workers 2
    mixmatch serve --bundle bundles/demo --dev            # Flask's server, debugging

From Python (tests, benchmarks)::

    serve({"BUNDLE": "bundles/demo"}, host="127.0.0.1", port=8000, workers=2)
"""
from __future__ import annotations

import errno
import json
import socket
import sys
import threading
from typing import Any, Callable

from features.exceptions import InputError

#: Threads per gunicorn worker (gthread worker class).
DEFAULT_THREADS = 4


def check_port(host: str, port: int) -> None:
    """Raise :class:`InputError` naming ``host:port`` when the server could not listen there.

    Called before serving, and by ``mixmatch up`` before it builds: on a port already
    taken (an earlier server still running) gunicorn would otherwise retry for five
    seconds and exit with "Can't connect", after a build of minutes. The check binds
    and closes a socket the way gunicorn does (``SO_REUSEADDR``, so a closed server's
    lingering connections do not count); a server that takes the port in between is
    still refused by gunicorn itself.

    >>> check_port("127.0.0.1", 0)  # any free port
    >>> check_port("127.0.0.1", 70000)
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: port must be 0-65535, got 70000
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be 0-65535, got {port!r}", field="port", value=port)
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port,
                                                          type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"host {host!r} does not resolve ({exc})", field="host",
                         value=host) from exc
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"port {port} on {host} is already in use (an earlier `mixmatch up` "
                    f"or `mixmatch serve` still running? stop it with "
                    f"`pkill -f 'mixmatch (up|serve)'`), or pass another --port",
                    field="port", value=port) from exc
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                             field="port", value=port) from exc


def check_workers(workers: int) -> None:
    """Raise :class:`InputError` unless ``workers`` is a worker count gunicorn can serve with.

    gunicorn starts a master with no worker for 0 (it listens and never answers) and
    exits with its own message for a negative count, so both are refused first.

    >>> check_workers(2)
    >>> check_workers(0)
    Traceback (most recent call last):
    ...
    features.exceptions.InputError: --workers must be at least 1, got 0
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers!r}", field="workers",
                         value=workers)


def gunicorn_application(factory: Callable[[], Any], options: dict):
    """A gunicorn ``BaseApplication`` serving ``factory()`` with ``options``."""
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def __init__(self):
            self.options = options
            self._factory = factory
            super().__init__()

        def load_config(self):
            for key, value in self.options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key.lower(), value)

        def load(self):
            return self._factory()

    return _App()


def post_worker_init(worker) -> threading.Thread | None:
    """gunicorn hook: a started worker loads its perception models in the background.

    The app was built in the master (``preload_app``) without them: torch is not
    imported before the fork, and a worker that never sees a photo could do without
    it. Each worker then loads them in a daemon thread (:func:`api.app.warm_vision`),
    about 2 s on MANGO, while it already answers other requests. Returns the thread
    (None when the app is not mixmatch's).
    """
    from api.app import warm_vision
    from api.state import EXTENSION

    app = getattr(worker, "wsgi", None)
    if EXTENSION not in (getattr(app, "extensions", None) or {}):
        return None
    t = threading.Thread(target=warm_vision, args=(app,), name="mixmatch-warm-vision",
                         daemon=True)
    t.start()
    return t


def serve(config: dict, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 2,
          threads: int = DEFAULT_THREADS, dev: bool = False,
          factory: Callable[[dict], Any] | None = None) -> int:
    """Run the API until interrupted. ``factory(config)`` defaults to ``create_app``."""
    from api.app import create_app
    factory = factory or create_app
    if dev:
        factory(config).run(host=host, port=port, threaded=True, debug=False)
        return 0
    options = {"bind": f"{host}:{port}", "workers": int(workers),
               "worker_class": "gthread", "threads": int(threads),
               "preload_app": True, "timeout": 60, "graceful_timeout": 10,
               "keepalive": 5, "accesslog": None, "errorlog": "-", "loglevel": "warning",
               "post_worker_init": post_worker_init}
    gunicorn_application(lambda: factory(config), options).run()
    return 0


def cli_serve(args) -> int:
    """``mixmatch serve``: --bundle, --host, --port, --workers, --config, --dev."""
    from api.app import load_config_file
    if not args.dev:
        check_workers(args.workers)
    check_port(args.host, args.port)
    config = load_config_file(args.config) if getattr(args, "config", None) else {}
    if getattr(args, "bundle", None):
        config["BUNDLE"] = args.bundle
    print(f"mixmatch serve: http://{args.host}:{args.port}/ "
          f"({'dev server' if args.dev else f'gunicorn, {args.workers} workers'}; "
          f"bundle {config.get('BUNDLE')})", file=sys.stderr)
    return serve(config, host=args.host, port=args.port, workers=args.workers,
                 dev=bool(args.dev))


if __name__ == "__main__":
    # python -m api.server '<config json>' HOST PORT WORKERS: used by tests and benchmarks
    # to start a real gunicorn server in a subprocess they can kill
    cfg = json.loads(sys.argv[1])
    sys.exit(serve(cfg, host=sys.argv[2], port=int(sys.argv[3]), workers=int(sys.argv[4])))
