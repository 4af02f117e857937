"""Fixtures for the API tests: an app without a bundle (for everything that does not
need the engine) and a real gunicorn server in a subprocess."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from api import create_app

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"),
                      "ADMIN_TOKEN": "s3cret", "WATCH_INTERVAL": 0})
    yield app
    app.extensions["mixmatch"].events.close()   # its files, not left to the collector


@pytest.fixture
def client(app):
    return app.test_client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``python -m api.server`` (gunicorn, preloaded app) on 127.0.0.1 in its own
    process group, so a test can kill the master and its workers at once."""

    def __init__(self, config: dict, workers: int = 2, timeout: float = 60.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.server", json.dumps(config), "127.0.0.1",
             str(self.port), str(workers)], env=env, cwd=PROJECT_ROOT,
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + self.proc.stderr.read().decode())
            try:
                urllib.request.urlopen(self.url + "/openapi.json", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start in time")

    def kill(self) -> None:
        """SIGKILL master and workers: no graceful shutdown, no chance to flush."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def live_server():
    servers = []

    def start(config: dict, workers: int = 2) -> LiveServer:
        s = LiveServer(config, workers)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def served_bundle(request, tmp_path_factory):
    """A bundle the real engine serves: the demo bundle (``demo_bundle``) when the demo
    stages have landed, else the engine's own tiny known-answer bundle; skipped with
    the reason while the engine itself has not landed (issue 5)."""
    try:
        import recommender.engine  # noqa: F401
    except ModuleNotFoundError as exc:
        pytest.skip(f"waiting for recommender.engine (issue 5): {exc}")
    from features.exceptions import StageNotAvailable
    try:
        return request.getfixturevalue("demo_bundle")
    except (StageNotAvailable, ModuleNotFoundError) as exc:
        reason = exc
    try:
        from tests.recommender.tiny_bundle import make_tiny_bundle
    except ModuleNotFoundError:
        pytest.skip(f"demo bundle cannot be built yet ({reason}) and the engine's tiny "
                    "bundle is not there")
    return make_tiny_bundle(tmp_path_factory.mktemp("api_tiny") / "bundle")


@pytest.fixture
def served_app(served_bundle, tmp_path):
    app = create_app({"TESTING": True, "BUNDLE": str(served_bundle),
                      "DATA_DIR": str(tmp_path / "data"), "ADMIN_TOKEN": "s3cret",
                      "WATCH_INTERVAL": 0})
    yield app
    app.extensions["mixmatch"].events.close()
