"""Workers load the perception models as they start, so the first photo does not wait."""
from __future__ import annotations

import json
import time
import types
import urllib.request

import pytest

from api import create_app
from api.app import carry_warmth, warm_vision
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


def _reload(app, bundle):
    r = app.test_client().post("/admin/reload", json={"bundle": str(bundle)},
                               headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200, r.get_json()


@pytest.fixture
def bundle_copy(vision_bundle, tmp_path):
    import shutil
    return shutil.copytree(vision_bundle, tmp_path / "copy")


def test_a_reload_keeps_a_warm_worker_warm(vision_bundle, bundle_copy, tmp_path):
    app = _app(vision_bundle, tmp_path, ADMIN_TOKEN="s3cret")
    assert warm_vision(app) is True
    before = _engine(app)
    _reload(app, bundle_copy)
    after = _engine(app)
    assert after is not before and after.vision_loaded     # loaded before it served
    assert app.test_client().get("/healthz").get_json()["vision_loaded"] is True


def test_a_reload_leaves_a_cold_worker_cold(vision_bundle, bundle_copy, tmp_path):
    app = _app(vision_bundle, tmp_path, ADMIN_TOKEN="s3cret")
    _reload(app, bundle_copy)
    assert not _engine(app).vision_loaded                   # no photo, no warm-up yet
    off = _app(vision_bundle, tmp_path / "off", ADMIN_TOKEN="s3cret", WARM_VISION=False)
    assert _engine(off).warm_vision()                      # a photo loaded them
    _reload(off, bundle_copy)
    assert not _engine(off).vision_loaded                   # WARM_VISION off: lazy again


class _FakeEngine:
    def __init__(self, loaded=False, fails=False):
        self.vision_loaded, self.fails, self.calls = loaded, fails, 0

    def warm_vision(self):
        self.calls += 1
        if self.fails:
            raise BundleError("the attribute network embeds in 64 dimensions, ...")
        self.vision_loaded = True
        return True


def test_carry_warmth_follows_each_engine_and_logs_failures(tmp_path, caplog):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "d")})
    shared = _FakeEngine(loaded=True)
    old = types.SimpleNamespace(engine=_FakeEngine(loaded=True),
                                models={"warm": _FakeEngine(loaded=True),
                                        "cold": _FakeEngine(), "same": shared,
                                        "broken": _FakeEngine(loaded=True)})
    new = types.SimpleNamespace(engine=_FakeEngine(),
                                models={"warm": _FakeEngine(), "cold": _FakeEngine(),
                                        "same": shared, "broken": _FakeEngine(fails=True),
                                        "added": _FakeEngine()})
    assert carry_warmth(app, old, new) == ["default", "warm"]
    assert new.engine.vision_loaded and new.models["warm"].vision_loaded
    assert new.models["cold"].calls == 0 and new.models["added"].calls == 0
    assert shared.calls == 0                                # reused: already loaded
    assert new.models["broken"].calls == 1 and not new.models["broken"].vision_loaded
    assert "perception models not preloaded: the attribute network embeds" in caplog.text
