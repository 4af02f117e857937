"""Workers load the perception models as they start, so the first photo does not wait."""
from __future__ import annotations

import json
import time
import types
import urllib.request

import pytest

from api import create_app
from api.app import warm_vision
from api.server import post_worker_init
from api.state import EXTENSION
from features.exceptions import BundleError


def _engine(app):
    return app.extensions[EXTENSION].holder.current().engine


@pytest.fixture
def vision_bundle(served_bundle):
    if not (served_bundle / "models" / "attributes.pt").is_file():
        pytest.skip("the served bundle has no attribute network")
    return served_bundle


def _app(bundle, tmp_path, **extra):
    return create_app({"TESTING": True, "BUNDLE": str(bundle), "WATCH_INTERVAL": 0,
                       "DATA_DIR": str(tmp_path / "data"), **extra})


def test_warm_vision_loads_the_models_and_healthz_says_so(vision_bundle, tmp_path):
    app = _app(vision_bundle, tmp_path)
    client = app.test_client()
    assert client.get("/healthz").get_json()["vision_loaded"] is False   # lazy until now
    assert warm_vision(app) is True
    assert _engine(app).vision_loaded
    assert client.get("/healthz").get_json()["vision_loaded"] is True


def test_warm_vision_is_off_when_configured_or_without_a_bundle(vision_bundle, tmp_path):
    app = _app(vision_bundle, tmp_path, WARM_VISION=False)
    assert warm_vision(app) is False
    assert not _engine(app).vision_loaded
    empty = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "empty")})
    assert warm_vision(empty) is False


def test_a_failed_warm_up_is_logged_not_raised(vision_bundle, tmp_path, monkeypatch,
                                               caplog):
    app = _app(vision_bundle, tmp_path)

    def broken():
        raise BundleError("the attribute network embeds in 64 dimensions, ...")

    monkeypatch.setattr(_engine(app), "warm_vision", broken)
    assert warm_vision(app) is False
    assert "perception models not preloaded: the attribute network embeds" in caplog.text


def test_the_worker_hook_warms_in_a_thread_and_ignores_other_apps(vision_bundle, tmp_path):
    app = _app(vision_bundle, tmp_path)
    thread = post_worker_init(types.SimpleNamespace(wsgi=app))
    thread.join(60)
    assert not thread.is_alive() and thread.daemon
    assert _engine(app).vision_loaded
    assert post_worker_init(types.SimpleNamespace(wsgi=object())) is None


def _healthz(url):
    with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
        return json.loads(r.read())


def test_live_workers_load_the_models_before_any_photo(vision_bundle, live_server, tmp_path):
    """Real gunicorn (2 workers): with no photo sent, /healthz soon reports the models
    loaded; with WARM_VISION off they stay unloaded over the same time."""
    srv = live_server({"BUNDLE": str(vision_bundle), "DATA_DIR": str(tmp_path / "w"),
                       "WATCH_INTERVAL": 0}, workers=2)
    t0 = time.monotonic()
    while not _healthz(srv.url)["vision_loaded"]:
        assert time.monotonic() - t0 < 60, "no worker loaded its models within 60 s"
        time.sleep(0.2)
    waited = time.monotonic() - t0
    cold = live_server({"BUNDLE": str(vision_bundle), "DATA_DIR": str(tmp_path / "c"),
                        "WATCH_INTERVAL": 0, "WARM_VISION": False}, workers=2)
    t0 = time.monotonic()
    while time.monotonic() - t0 < max(3.0, 2 * waited):
        assert _healthz(cold.url)["vision_loaded"] is False
        time.sleep(0.2)
