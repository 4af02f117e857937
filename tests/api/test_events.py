"""Event store: exact counts under concurrency (threads and gunicorn workers), and no
acknowledged event lost when the server is killed mid-load."""
from __future__ import annotations

import json
import http.client
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.events import EventStore
from tests.faults import not_a_database, open_files, write_locked


def post_json(url: str, body: dict, timeout: float = 10.0):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def test_store_threads_store_exactly_n_times_m(tmp_path):
    store = EventStore(tmp_path / "ev.db")
    n_threads, m = 8, 40

    def worker(t):
        for i in range(m):
            store.add_events([{"type": "click", "request_id": f"t{t}-{i}", "item_id": "A"}])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count("events") == n_threads * m
    assert len({r[0] for r in store.query("SELECT request_id FROM events")}) == n_threads * m
    mode = store.query("PRAGMA journal_mode")[0][0]
    assert mode == "wal"


def test_exposures_rows(tmp_path):
    store = EventStore(tmp_path / "ev.db")
    store.add_exposures("r1", "user-1", [("ranking", "e", "a", False),
                                          ("rules", "r", "v2", True)],
                        endpoint="complements", bundle_version="b1", rules_version="7")
    rows = store.query("SELECT request_id, layer, experiment, variant, forced, endpoint "
                       "FROM exposures ORDER BY id")
    assert rows == [("r1", "ranking", "e", "a", 0, "complements"),
                    ("r1", "rules", "r", "v2", 1, "complements")]


def test_events_endpoint_single_and_batch(client, app):
    r = client.post("/v1/events", json={"type": "purchase", "request_id": "req-1",
                                        "item_id": "X", "value": 49.9, "quantity": 2})
    assert r.status_code == 201 and r.get_json()["stored"] == 1
    r = client.post("/v1/events", json={"events": [
        {"type": "impression", "request_id": "req-2", "item_id": f"I{i}"} for i in range(5)]})
    assert r.status_code == 201 and r.get_json()["stored"] == 5
    store = app.extensions["mixmatch"].events
    assert store.count("events") == 6
    assert store.query("SELECT value, quantity FROM events WHERE type='purchase'") == [
        (49.9, 2)]


def test_http_parallel_posts_store_exactly_n_times_m(live_server, tmp_path):
    db = tmp_path / "events.db"
    srv = live_server({"EVENTS_DB": str(db), "DATA_DIR": str(tmp_path)}, workers=2)
    n_threads, m = 8, 25

    def worker(t):
        ok = 0
        for i in range(m):
            status, body = post_json(srv.url + "/v1/events", {
                "type": "click", "request_id": f"h{t}-{i}", "item_id": "A"})
            ok += status == 201 and body["stored"] == 1
        return ok

    with ThreadPoolExecutor(n_threads) as pool:
        acked = sum(pool.map(worker, range(n_threads)))
    assert acked == n_threads * m
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM events").fetchone()[0] == n_threads * m
    con.close()


def test_server_killed_mid_load_loses_no_acknowledged_event(live_server, tmp_path):
    db = tmp_path / "events.db"
    srv = live_server({"EVENTS_DB": str(db), "DATA_DIR": str(tmp_path)}, workers=2)
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(t):
        i = 0
        while not stop.is_set() and i < 2000:   # bounded even if the kill never comes
            try:
                status, body = post_json(srv.url + "/v1/events", {
                    "type": "add_to_cart", "request_id": f"k{t}-{i}"}, timeout=5)
            except (urllib.error.URLError, ConnectionError, OSError,
                    http.client.HTTPException):
                # the server is gone (possibly mid-response: IncompleteRead); whatever
                # was not acknowledged may be lost
                return
            if status == 201:
                with lock:
                    acked.extend(body["ids"])
            i += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    srv.kill()              # SIGKILL master and workers while requests are in flight
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(acked) >= 150
    con = sqlite3.connect(db)  # opening recovers the WAL like the next server would
    stored = {r[0] for r in con.execute("SELECT id FROM events")}
    con.close()
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events lost"
    print(f"acknowledged {len(acked)}, stored {len(stored)}, lost 0")


def test_non_finite_event_value_is_refused_not_stored(client, app):
    """Python's JSON decoder takes NaN, Infinity and 1e400 (inf); SQLite stored NaN as
    NULL and inf as inf, acknowledged with 201: a purchase's value was lost or poisoned
    every revenue sum."""
    store = app.extensions["mixmatch"].events
    for raw in ("NaN", "Infinity", "-Infinity", "1e400"):
        r = client.post("/v1/events", data='{"type": "purchase", "request_id": "r1", '
                        f'"value": {raw}}}', content_type="application/json")
        assert r.status_code == 400, (raw, r.get_data(as_text=True))
        assert r.get_json()["field"] == "value"
    r = client.post("/v1/events", data='{"events": [{"type": "click", "request_id": "r2"},'
                    ' {"type": "purchase", "request_id": "r2", "value": NaN}]}',
                    content_type="application/json")
    assert r.status_code == 400 and r.get_json()["field"] == "events[1].value"
    assert store.count("events") == 0


def test_a_negative_event_value_is_refused_by_name_and_not_stored(client, app):
    store = app.extensions["mixmatch"].events
    r = client.post("/v1/events", json={"type": "purchase", "request_id": "r1",
                                        "value": -49.9})
    assert r.status_code == 400, r.get_data(as_text=True)
    body = r.get_json()
    assert body["field"] == "value" and "-49.9" in body["error"], body
    r = client.post("/v1/events", json={"type": "purchase", "request_id": "r1", "value": 0})
    assert r.status_code == 201, r.get_data(as_text=True)
    assert store.query("SELECT value FROM events") == [(0.0,)]


def test_integer_value_beyond_64_bits_is_stored_or_refused_not_500(client, app):
    """An integral value is bound to SQLite as a 64-bit INTEGER before the REAL column
    converts it: 10**30 raised OverflowError (500) though it is a JSON number."""
    store = app.extensions["mixmatch"].events
    r = client.post("/v1/events", data='{"type": "purchase", "request_id": "r1", '
                    '"value": 1' + "0" * 30 + "}", content_type="application/json")
    assert r.status_code == 201, r.get_data(as_text=True)
    assert store.query("SELECT value FROM events") == [(1e30,)]
    r = client.post("/v1/events", data='{"type": "purchase", "request_id": "r2", '
                    '"value": 1' + "0" * 400 + "}", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["field"] == "value", r.get_json()
    assert store.count("events") == 1


@pytest.mark.parametrize("kind", ["memory", "folder", "under_a_file", "not_sqlite"])
def test_an_unusable_events_database_is_named_as_bad_configuration(tmp_path, kind):
    """Before: ValueError, IsADirectoryError/OperationalError, NotADirectoryError or
    DatabaseError tracebacks from create_app, so `mixmatch serve` did not exit 2."""
    from api import create_app
    from features.exceptions import InputError
    (tmp_path / "file").write_text("x")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    path = {"memory": ":memory:", "folder": str(tmp_path),
            "under_a_file": str(tmp_path / "file" / "events.db"),
            "not_sqlite": str(tmp_path / "junk.db")}[kind]
    with pytest.raises(InputError) as err:
        create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "EVENTS_DB": path})
    assert err.value.field == "EVENTS_DB" and path in str(err.value)


OLD_SCHEMA = """CREATE TABLE exposures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, request_id TEXT NOT NULL,
    unit TEXT, layer TEXT NOT NULL, experiment TEXT NOT NULL, variant TEXT NOT NULL,
    forced INTEGER NOT NULL DEFAULT 0, endpoint TEXT NOT NULL, bundle_version TEXT,
    rules_version TEXT);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, request_id TEXT NOT NULL,
    type TEXT NOT NULL, item_id TEXT, user_id TEXT, session_id TEXT, value REAL,
    quantity INTEGER);
INSERT INTO exposures (ts, request_id, unit, layer, experiment, variant, endpoint)
    VALUES (1.0, 'old-1', 'u1', 'l', 'e', 'a', 'complements');"""


def test_a_database_from_before_client_request_ids_is_read_and_migrated(tmp_path):
    """Exposures now record the client's X-Request-ID: a database written by an older
    server (no such column) is read as it is, with the column empty, and a server
    opening it adds the column and keeps the rows it had."""
    from api.ab_report import read_event_tables
    db = tmp_path / "events.db"
    con = sqlite3.connect(db)
    con.executescript(OLD_SCHEMA)
    con.close()
    exposures, _ = read_event_tables(db)            # read-only: not migrated
    assert exposures["request_id"].tolist() == ["old-1"]
    assert exposures["client_request_id"].isna().all()
    store = EventStore(db)
    store.add_exposures("new-1", "u2", [("l", "e", "b", False)], endpoint="complements",
                        bundle_version=None, rules_version=None, client_request_id="c-1")
    assert store.query("SELECT request_id, client_request_id FROM exposures ORDER BY id"
                       ) == [("old-1", None), ("new-1", "c-1")]
    store.close()
    EventStore(db).close()                          # a second open migrates nothing


def test_exposures_record_the_experiments_version_and_an_older_database_gets_it(tmp_path):
    """The experiments config is reloadable, so one experiment's exposures may span
    edits: each row records the version of the config that assigned it. A database
    from before has the column added and reads its old rows with it empty."""
    from api.ab_report import read_event_tables
    db = tmp_path / "events.db"
    con = sqlite3.connect(db)
    con.executescript(OLD_SCHEMA)
    con.close()
    store = EventStore(db)
    store.add_exposures("new-1", "u2", [("l", "e", "b", False)], endpoint="complements",
                        bundle_version=None, rules_version=None, experiments_version="x-2")
    store.close()
    exposures, _ = read_event_tables(db)
    assert exposures["request_id"].tolist() == ["old-1", "new-1"]
    assert exposures["experiments_version"].isna().tolist() == [True, False]
    assert exposures["experiments_version"].iloc[1] == "x-2"


needs_proc = pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"),
                                reason="counts open files through /proc/self/fd")


@needs_proc
def test_close_closes_every_threads_connection(tmp_path):
    """Connections are per thread, and close() closed the calling thread's only: the
    database, its WAL and shared-memory files stayed open in every other thread that
    had written (a server's worker threads, a test's pool) until it ended."""
    store = EventStore(tmp_path / "ev.db")
    wrote, release = threading.Barrier(4), threading.Event()

    def worker(t):
        store.add_events([{"type": "click", "request_id": f"t{t}"}])
        wrote.wait(10)
        assert release.wait(10)
        store.add_events([{"type": "click", "request_id": f"again{t}"}])   # reopens

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    wrote.wait(10)
    assert store.count("events") == 3 and open_files(tmp_path)
    store.close()
    assert open_files(tmp_path) == []
    release.set()
    for t in threads:
        t.join()
    assert store.count("events") == 6
    store.close()
    assert open_files(tmp_path) == []


@needs_proc
def test_connections_of_ended_threads_do_not_pile_up(tmp_path):
    """A dev server runs each request in a new thread: the store's list of connections
    (kept so close() reaches them all) must not keep theirs open after they end."""
    import gc
    store = EventStore(tmp_path / "ev.db")
    gc.disable()   # closed by the store, not by the collector
    try:
        for i in range(30):
            t = threading.Thread(target=store.add_events,
                                 args=([{"type": "click", "request_id": f"r{i}"}],))
            t.start()
            t.join()
        assert len(open_files(tmp_path)) <= 4
    finally:
        gc.enable()
    assert store.count("events") == 30
    store.close()


def test_a_store_dropped_without_close_closes_its_connections(tmp_path):
    """An app torn down without closing its store (tests build hundreds): the store's
    connections are closed with it, not left to each connection's own finalizer."""
    store = EventStore(tmp_path / "ev.db")
    con = store._con()
    del store
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        con.execute("SELECT 1")


@pytest.fixture
def busy_app(tmp_path):
    """An app whose events database waits 50 ms for a lock instead of 10 s."""
    from api import create_app
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"),
                      "WATCH_INTERVAL": 0, "EVENTS_BUSY_TIMEOUT_MS": 50})
    yield app
    app.extensions["mixmatch"].events.close()


def test_a_locked_events_database_answers_503_with_retry_after(busy_app):
    """Before: the lock held past the busy timeout escaped as sqlite3.OperationalError
    and the shop page got a 500 ("internal error"), which says a retry is pointless."""
    client = busy_app.test_client()
    store = busy_app.extensions["mixmatch"].events
    assert client.post("/v1/events", json={"type": "click",
                                           "request_id": "kept"}).status_code == 201
    batch = {"events": [{"type": "click", "request_id": "r1", "item_id": "A"},
                        {"type": "purchase", "request_id": "r1", "value": 10}]}
    with write_locked(store.path):
        r = client.post("/v1/events", json=batch)
    assert r.status_code == 503, r.get_json()
    assert r.headers["Retry-After"] == "1"
    body = r.get_json()
    assert "events database is busy" in body["error"] and "locked" in body["error"]
    assert "Traceback" not in body["error"] and str(store.path) not in body["error"]
    assert body["status"] == 503 and body["retry_after"] == 1 and body["request_id"]
    # the stored event is still there, none of the refused batch is, and the same
    # batch posted again once the lock is gone is stored whole
    assert store.query("SELECT request_id FROM events") == [("kept",)]
    r = client.post("/v1/events", json=batch)
    assert r.status_code == 201 and store.count("events") == 3


def test_the_events_503_is_what_the_openapi_document_says(busy_app):
    import jsonschema
    client = busy_app.test_client()
    doc = client.get("/openapi.json").get_json()
    documented = doc["paths"]["/v1/events"]["post"]["responses"]["503"]
    assert "Retry-After" in documented["headers"]
    with write_locked(busy_app.extensions["mixmatch"].events.path):
        r = client.post("/v1/events", json={"type": "click", "request_id": "r1"})
    assert r.status_code == 503
    schema = {**doc["components"]["schemas"]["Error"],
              "components": doc["components"]}
    jsonschema.validate(r.get_json(), schema)


def test_a_batch_failing_midway_stores_nothing(busy_app):
    """A write error after some rows of a batch were inserted (here a trigger calling
    a function that fails on the third row) rolls the whole batch back: 503, no row."""
    client = busy_app.test_client()
    store = busy_app.extensions["mixmatch"].events

    def boom():
        raise RuntimeError("disk gone")

    con = store._con()        # the test client serves requests in this thread
    con.create_function("boom", 0, boom)
    con.execute("CREATE TEMP TRIGGER fail_on_c BEFORE INSERT ON events "
                "WHEN NEW.item_id = 'C' BEGIN SELECT boom(); END")
    r = client.post("/v1/events", json={"events": [
        {"type": "click", "request_id": "r1", "item_id": i} for i in "ABCD"]})
    assert r.status_code == 503, r.get_json()
    assert store.count("events") == 0


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_corrupt_events_database_answers_503_naming_it_unusable(busy_app, how, caplog):
    """Before: only sqlite3.OperationalError became 503; a file overwritten or cut
    short while the server ran raised sqlite3.DatabaseError ("file is not a database",
    "database disk image is malformed") and the page got a 500. Now 503 saying the
    database is unusable, its path in the server's log only (as for a busy one, the
    body names no file), and a Retry-After longer than a busy database's."""
    client = busy_app.test_client()
    store = busy_app.extensions["mixmatch"].events
    assert client.post("/v1/events", json={"type": "click",
                                           "request_id": "kept"}).status_code == 201
    store.close()       # the next write opens its connection on the damaged file
    with not_a_database(store.path, how), caplog.at_level("ERROR", logger="api"):
        r = client.post("/v1/events", json={"type": "click", "request_id": "r1"})
    assert r.status_code == 503, r.get_json()
    body = r.get_json()
    assert "events database is unusable" in body["error"]
    assert ("file is not a database" if how == "garbage" else "malformed") in body["error"]
    assert "Traceback" not in body["error"] and str(store.path) not in body["error"]
    assert body["retry_after"] == 60 and r.headers["Retry-After"] == "60"
    assert any(str(store.path) in rec.getMessage() and "unusable" in rec.getMessage()
               for rec in caplog.records)
    # the file restored: stored again, the first event kept
    store.close()
    assert client.post("/v1/events", json={"type": "click",
                                           "request_id": "r2"}).status_code == 201
    assert store.query("SELECT request_id FROM events ORDER BY id") == [("kept",),
                                                                       ("r2",)]


def test_a_write_that_is_a_bug_still_answers_500_not_503(busy_app):
    """Only a busy or unusable database is 503 (the page may retry); a write the code
    got wrong (here a constraint the validation should have caught) stays a 500."""
    store = busy_app.extensions["mixmatch"].events
    with pytest.raises(sqlite3.IntegrityError):
        store.add_events([{"type": "view", "request_id": "r1"}])


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_corrupt_events_database_stops_the_start_naming_its_path(tmp_path, how):
    """At start the damaged file is a configuration error naming the path (mixmatch
    serve exits 2 with it), not a traceback or a server answering 503 to every event."""
    from api import create_app
    from features.exceptions import InputError
    db = tmp_path / "events.db"
    store = EventStore(db)
    store.add_events([{"type": "click", "request_id": "r1"}])
    store.close()
    with not_a_database(db, how):
        with pytest.raises(InputError) as err:
            create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "WATCH_INTERVAL": 0})
    assert err.value.field == "EVENTS_DB"
    assert f"cannot open the events database {db}: " in str(err.value)
    assert ("file is not a database" if how == "garbage" else "malformed") in str(err.value)


@pytest.mark.parametrize("key", ["EVENTS_BUSY_TIMEOUT_MS", "EXPOSURE_BUSY_TIMEOUT_MS"])
@pytest.mark.parametrize("value", [-1, "10", 1.5, True])
def test_a_bad_busy_timeout_is_named_as_bad_configuration(tmp_path, key, value):
    from api import create_app
    from features.exceptions import InputError
    with pytest.raises(InputError) as err:
        create_app({"TESTING": True, "DATA_DIR": str(tmp_path), key: value})
    assert err.value.field == key and repr(value) in str(err.value)


def test_exposures_wait_their_own_short_timeout_and_events_their_long_one(tmp_path):
    """An exposure is written while a shopper waits: under a lock held by another
    process it gives up after exposure_busy_timeout_ms, not after the events' timeout
    (before, both waited busy_timeout_ms, 10 s by default). The events' wait is kept."""
    from features.exceptions import ServiceUnavailable
    store = EventStore(tmp_path / "ev.db", busy_timeout_ms=10_000,
                       exposure_busy_timeout_ms=100)
    entry = [("ranking", "strat", "a", False)]
    kw = dict(endpoint="complements", bundle_version="b", rules_version="r")
    with write_locked(store.path):
        t0 = time.perf_counter()
        with pytest.raises(ServiceUnavailable, match="locked"):
            store.add_exposures("r1", "u1", entry, **kw)
        waited = time.perf_counter() - t0
    assert 0.09 < waited < 2.0, waited
    assert store.count("exposures") == 0
    # the same thread's connection then writes events with the long wait: a lock
    # released after 0.5 s is waited for, not refused
    lock = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    releaser = threading.Timer(0.5, lambda: lock.execute("ROLLBACK"))
    releaser.start()
    try:
        assert len(store.add_events([{"type": "click", "request_id": "r1"}])) == 1
    finally:
        releaser.join()
        lock.close()
    assert store.add_exposures("r2", "u1", entry, **kw) and store.count("exposures") == 1
    store.close()


def test_an_emptied_events_database_says_it_is_empty_not_busy(busy_app):
    """A 0-byte file is a valid new database to SQLite: the connection opens and the
    write fails with "no such table: events", which was worded "busy or unavailable"
    with a Retry-After of 1 s, as if a lock would soon be released. It names what is
    wrong instead, with the Retry-After of a file an operator must restore."""
    client = busy_app.test_client()
    store = busy_app.extensions["mixmatch"].events
    assert client.post("/v1/events", json={"type": "click",
                                           "request_id": "kept"}).status_code == 201
    store.close()       # the next write opens its connection on the emptied file
    saved = store.path.read_bytes()
    store.path.write_bytes(b"")
    try:
        r = client.post("/v1/events", json={"type": "click", "request_id": "r1"})
    finally:
        store.close()
        store.path.write_bytes(saved)
    assert r.status_code == 503, r.get_json()
    body = r.get_json()
    assert "busy" not in body["error"] and "emptied to 0 bytes" in body["error"], body
    assert "events database is unusable" in body["error"]
    assert body["retry_after"] == 60 and r.headers["Retry-After"] == "60"


def test_an_events_database_that_lost_its_tables_is_unusable_not_busy(busy_app):
    """The same for a file that is not empty but has no events table (dropped, or
    another database put in its place): not a lock, so not "busy"."""
    client = busy_app.test_client()
    store = busy_app.extensions["mixmatch"].events
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("DROP TABLE events")
    other.close()
    r = client.post("/v1/events", json={"type": "click", "request_id": "r1"})
    assert r.status_code == 503, r.get_json()
    body = r.get_json()
    assert "busy" not in body["error"] and "no such table: events" in body["error"]
    assert "events database is unusable" in body["error"]
    assert body["retry_after"] == 60


def _read_ids(db) -> list[str]:
    """The request ids of ``db``'s events, read as the next server would (no server
    connection open), after an integrity check."""
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [r for (r,) in con.execute("SELECT request_id FROM events ORDER BY id")]
    finally:
        con.close()


def _backup(path, request_id: str):
    """A database like the server's holding one event, closed (as a restored backup)."""
    store = EventStore(path)
    store.add_events([{"type": "click", "request_id": request_id}])
    store.close()


def test_a_database_replaced_by_rename_is_followed(busy_app, tmp_path):
    """`mv events.db old.db; mv backup.db events.db` while the server ran: the server
    went on writing into the file it had open (now old.db) and, worse, the write-ahead
    log it left beside the path belonged to that file, so the next connection to the
    new events.db (a restart) laid the old pages over the restored backup. Now the
    next write sees the path holds another file, puts the old file's log into the old
    file, sets it aside, and writes into the new one."""
    client = busy_app.test_client()
    store = busy_app.extensions["mixmatch"].events
    for rid in ("old1", "old2"):
        assert client.post("/v1/events", json={"type": "click",
                                               "request_id": rid}).status_code == 201
    _backup(tmp_path / "backup.db", "restored")
    old = store.path.with_name("old.db")
    store.path.rename(old)
    (tmp_path / "backup.db").rename(store.path)
    r = client.post("/v1/events", json={"type": "click", "request_id": "after"})
    assert r.status_code == 201, r.get_json()
    assert store.query("SELECT request_id FROM events ORDER BY id") == [("restored",),
                                                                       ("after",)]
    store.close()
    assert _read_ids(store.path) == ["restored", "after"]
    assert _read_ids(old) == ["old1", "old2"]      # the old file keeps what it had


def test_every_worker_follows_a_renamed_database_and_none_undoes_another(tmp_path):
    """Two stores on one file (two workers): the first to write after the rename
    sets the old log aside; the second must not take the log the first started on
    the new file for the old one's. A backup from an older server (no
    experiments_configs table, no experiments_version column) is brought up to date."""
    path = tmp_path / "events.db"
    w1, w2 = EventStore(path), EventStore(path)
    w1.add_events([{"type": "click", "request_id": "old1"}])
    w2.add_events([{"type": "click", "request_id": "old2"}])
    new = sqlite3.connect(tmp_path / "backup.db")
    new.executescript(OLD_SCHEMA)
    new.close()
    (tmp_path / "backup.db").rename(path)
    w1.add_events([{"type": "click", "request_id": "w1"}])
    w2.add_events([{"type": "click", "request_id": "w2"}])
    w2.add_exposures("x", "u", [("l", "e", "a", False)], endpoint="complements",
                     bundle_version=None, rules_version=None, experiments_version="v1",
                     experiments_allocation={"e": {"a": 1.0}})
    w1.add_events([{"type": "click", "request_id": "w1-again"}])
    assert w2.count("experiments_configs") == 1
    w1.close()
    w2.close()
    assert _read_ids(path) == ["w1", "w2", "w1-again"]
    con = sqlite3.connect(path)
    assert con.execute("SELECT request_id, experiments_version FROM exposures "
                       "ORDER BY id").fetchall() == [("old-1", None), ("x", "v1")]
    con.close()


def test_a_database_overwritten_in_place_is_refused_not_written_over(busy_app, tmp_path,
                                                                     caplog):
    """`cp backup.db events.db` while the server ran: same file, new bytes. An open
    connection in WAL mode does not re-read the file, and its write-ahead log holds
    pages of what the copy replaced: the server went on answering 201, its log laid
    over the copy, so the restore silently did not happen (or mixed pages of both).
    The inode is unchanged, so this is seen by the file shrinking below the size the
    server saw: writes are refused (503, nothing added to the log) until the file is
    put back or the server restarted, and the log says how to restore."""
    import shutil
    client = busy_app.test_client()
    store = busy_app.extensions["mixmatch"].events
    assert client.post("/v1/events", json={"type": "click",
                                           "request_id": "kept"}).status_code == 201
    backup = sqlite3.connect(tmp_path / "backup.db")
    store._con().backup(backup)
    backup.close()
    store.add_events([{"type": "click", "request_id": f"late{i}", "item_id": "x" * 500}
                      for i in range(100)])
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")   # the file grows to hold them
    assert client.post("/v1/events", json={"type": "click",
                                           "request_id": "seen"}).status_code == 201
    saved = store.path.read_bytes()
    shutil.copyfile(tmp_path / "backup.db", store.path)
    wal = store.path.with_name(store.path.name + "-wal")
    wal_size = wal.stat().st_size
    with caplog.at_level("ERROR", logger="api"):
        r = client.post("/v1/events", json={"type": "click", "request_id": "r1"})
        assert client.post("/v1/events", json={"type": "click",
                                               "request_id": "r2"}).status_code == 503
    assert r.status_code == 503, r.get_json()
    body = r.get_json()
    assert "events database is unusable" in body["error"]
    assert f"it had {len(saved)}" in body["error"] and "overwritten" in body["error"]
    assert body["retry_after"] == 60 and str(store.path) not in body["error"]
    assert wal.stat().st_size == wal_size           # nothing written over the copy
    assert any(str(store.path) in rec.getMessage()
               and "mixmatch events restore" in rec.getMessage() for rec in caplog.records)
    store.path.write_bytes(saved)                   # put back: written again
    assert client.post("/v1/events", json={"type": "click",
                                           "request_id": "r3"}).status_code == 201


def test_a_backup_of_a_live_database_is_the_database_as_of_one_commit(tmp_path):
    """``mixmatch events backup`` while a server writes: each backup holds the events
    acknowledged before it, in order, with none missing in between (``cp`` of the file
    misses those still in its -wal), and is one self-contained file."""
    from api.ab_report import read_event_tables
    from api.events import backup

    store = EventStore(tmp_path / "events.db")
    written, stop = [], threading.Event()

    def writer():
        w = EventStore(store.path)
        i = 0
        while not stop.is_set():
            w.add_events([{"type": "click", "request_id": f"r{i}"}])
            written.append(f"r{i}")
            i += 1
        w.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        outs = []
        for n in range(3):
            while len(written) < 20 * (n + 1):
                time.sleep(0.005)
            out = tmp_path / f"backup{n}.db"
            counts = backup(store.path, out)
            outs.append((out, counts["events"]))
    finally:
        stop.set()
        t.join()
    for out, n in outs:
        ids = read_event_tables(out)[1]["request_id"].tolist()
        assert len(ids) == n and n >= 20 and ids == [f"r{i}" for i in range(n)]
    assert outs[0][1] < outs[2][1] <= len(written)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("backup")) == [
        "backup0.db", "backup1.db", "backup2.db"]     # no -wal beside them, no temp file
    store.close()


def test_a_backup_never_overwrites_a_file_that_appeared_at_its_path(tmp_path, monkeypatch):
    """--out is checked before the copy and may appear while it runs (another backup
    to the same name): that file is kept and the backup refused, no temp file left."""
    import api.events as ev
    from features.exceptions import InputError

    store = EventStore(tmp_path / "events.db")
    store.add_events([{"type": "click", "request_id": "r"}])
    out = tmp_path / "backup.db"
    counts = ev._counts

    def meanwhile(con):
        out.write_text("someone else's file")
        return counts(con)

    monkeypatch.setattr(ev, "_counts", meanwhile)
    with pytest.raises(InputError, match="already exists"):
        ev.backup(store.path, out)
    assert out.read_text() == "someone else's file"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".backup")]
    store.close()


def test_a_restore_while_the_server_runs_keeps_it_writing(busy_app, tmp_path):
    """``mixmatch events restore`` while the server runs: the restored rows are what the
    A/B report reads, and the server's next writes land in the restored database, after
    a checkpoint too. (``sqlite3 events.db ".restore backup.db"``, which the server's
    log advised, shrinks the file at the next checkpoint, and every write was then
    refused with 503 until a restart: the server cannot tell it from ``cp``.)"""
    from api.ab_report import read_event_tables, read_experiments_configs
    from api.events import backup, restore

    client = busy_app.test_client()
    store = busy_app.extensions["mixmatch"].events

    def post(request_id):
        return client.post("/v1/events", json={"type": "click",
                                               "request_id": request_id}).status_code

    def expose(request_id, version, weights):
        store.add_exposures(request_id, "u1", [("l", "e", "a", False)], endpoint="t",
                            bundle_version="b", rules_version="r",
                            experiments_version=version,
                            experiments_allocation={"e": weights})

    assert post("kept-1") == 201 and post("kept-2") == 201
    expose("kept-x", "v1", {"a": 1.0, "b": 1.0})
    backup(store.path, tmp_path / "backup.db")
    expose("lost-x", "v2", {"a": 1.0, "b": 3.0})
    store.add_events([{"type": "click", "request_id": f"lost{i}", "item_id": "x" * 500}
                      for i in range(100)])
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")   # the file grows to hold them
    size = store.path.stat().st_size
    counts = restore(store.path, tmp_path / "backup.db")
    assert counts == {"events": 2, "exposures": 1, "experiments_configs": 2}
    assert post("after-1") == 201
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    assert store.path.stat().st_size <= size
    assert post("after-2") == 201, "the server refused writes after the restore"
    expose("after-x", "v2", {"a": 1.0, "b": 3.0})
    exposures, events = read_event_tables(store.path)
    assert events["request_id"].tolist() == ["kept-1", "kept-2", "after-1", "after-2"]
    assert exposures["request_id"].tolist() == ["kept-x", "after-x"]
    # the weights of v2, recorded since the backup, are kept: this server records a
    # version once, and would not write them again
    assert read_experiments_configs(store.path) == {"v1": {"e": {"a": 1.0, "b": 1.0}},
                                                    "v2": {"e": {"a": 1.0, "b": 3.0}}}


def _in_a_new_thread(fn):
    """``fn()``'s result, or the exception it raised, run in a thread of its own (a
    thread's first write opens its connection, as a new gunicorn or dev-server thread)."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as exc:       # handed back to the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_thread_first_writing_after_a_rename_never_writes_into_the_old_files_log(
        tmp_path):
    """`mv old.db` then `mv backup.db events.db` while a thread that wrote before is
    idle: another thread's first write opened the new file with the old file's -wal
    still beside it, read that log as the new file's and was answered with an id (201)
    for an event that reached only the old file. It is refused (503, retry) until a
    connection of the old file has set its log aside; then it lands in the new file."""
    from features.exceptions import ServiceUnavailable

    path = tmp_path / "events.db"
    store = EventStore(path)
    store.add_events([{"type": "click", "request_id": "old1"}])
    _backup(tmp_path / "backup.db", "restored")
    path.rename(tmp_path / "old.db")
    (tmp_path / "backup.db").rename(path)
    write = lambda rid: store.add_events([{"type": "click", "request_id": rid}])  # noqa: E731
    with pytest.raises(ServiceUnavailable) as err:
        _in_a_new_thread(lambda: write("early"))
    assert err.value.retry_after == 1 and "replaced" in str(err.value)
    write("main")                             # the thread that wrote before follows
    _in_a_new_thread(lambda: write("late"))
    store.close()
    assert _read_ids(path) == ["restored", "main", "late"]
    assert _read_ids(tmp_path / "old.db") == ["old1"]


def test_a_connection_of_an_ended_thread_sets_the_old_log_aside(tmp_path):
    """The dev server runs each request in a thread of its own: after a rename no
    thread that wrote before writes again, and their connections (closed when a new
    thread opens one) neither checkpoint nor remove the old file's log. The next
    thread's first write sets that log aside through an ended thread's connection,
    the old file keeping its events, and writes into the new file, brought up to date
    when an older server wrote it."""
    path = tmp_path / "events.db"
    store = EventStore(path)
    for rid in ("old1", "old2"):
        _in_a_new_thread(lambda rid=rid: store.add_events([{"type": "click",
                                                             "request_id": rid}]))
    backup = sqlite3.connect(tmp_path / "backup.db")
    backup.executescript(OLD_SCHEMA + "\nINSERT INTO events (ts, request_id, type) "
                         "VALUES (1.0, 'restored', 'click');")
    backup.close()
    path.rename(tmp_path / "old.db")
    (tmp_path / "backup.db").rename(path)
    for rid in ("new1", "new2"):
        _in_a_new_thread(lambda rid=rid: store.add_events([{"type": "click",
                                                             "request_id": rid}]))
    _in_a_new_thread(lambda: store.add_exposures(
        "x", "u", [("l", "e", "a", False)], endpoint="complements", bundle_version=None,
        rules_version=None, experiments_version="v1",
        experiments_allocation={"e": {"a": 1.0}}))
    store.close()
    assert _read_ids(path) == ["restored", "new1", "new2"]
    assert _read_ids(tmp_path / "old.db") == ["old1", "old2"]
    con = sqlite3.connect(path)
    assert con.execute("SELECT request_id, experiments_version FROM exposures "
                       "ORDER BY id").fetchall() == [("old-1", None), ("x", "v1")]
    con.close()


def test_a_worker_whose_log_another_worker_set_aside_writes_into_a_smaller_new_file(
        tmp_path):
    """Two workers wrote into a file grown past the backup's size; a smaller backup is
    renamed over it and the first worker follows. The second worker's new thread opened
    the new file and was refused as "overwritten" (the file smaller than the size that
    worker had seen), with Retry-After 60, until that worker's own old thread wrote."""
    path = tmp_path / "events.db"
    w1, w2 = EventStore(path), EventStore(path)
    w1.add_events([{"type": "click", "request_id": "old1"}])
    w2.add_events([{"type": "click", "request_id": "old2"}])
    _backup(tmp_path / "backup.db", "restored")
    w1.add_events([{"type": "click", "request_id": f"big{i}", "item_id": "x" * 500}
                   for i in range(100)])
    w1.query("PRAGMA wal_checkpoint(TRUNCATE)")
    w2.add_events([{"type": "click", "request_id": "seen"}])   # w2 saw the big file
    assert (tmp_path / "backup.db").stat().st_size < path.stat().st_size
    path.rename(tmp_path / "old.db")
    (tmp_path / "backup.db").rename(path)
    w1.add_events([{"type": "click", "request_id": "w1"}])
    _in_a_new_thread(lambda: w2.add_events([{"type": "click", "request_id": "w2"}]))
    w1.close()
    w2.close()
    assert _read_ids(path) == ["restored", "w1", "w2"]


def test_each_version_records_its_variants_params_and_an_older_record_has_none(tmp_path):
    """An exposure names its variant; what that variant set (a diversity) was nowhere
    in the database. The version's record keeps it beside the weights; a record of an
    older server (no params column) is migrated, read as unknown (None), and restored
    from a backup as it is."""
    from api.events import backup, restore
    db = tmp_path / "events.db"
    con = sqlite3.connect(db)
    con.executescript(OLD_SCHEMA + """
CREATE TABLE experiments_configs (version TEXT PRIMARY KEY, ts REAL NOT NULL,
                                  allocation TEXT NOT NULL);
INSERT INTO experiments_configs VALUES ('old', 1.0, '{"e": {"a": 1.0}}');""")
    con.close()
    backup(db, tmp_path / "old-backup.db")          # before any server opened it
    store = EventStore(db)
    for version, params in (("v1", {"e": {"b": {"diversity": 0.5}}}), ("v2", None)):
        store.add_exposures(f"r-{version}", "u", [("l", "e", "b", False)],
                            endpoint="complements", bundle_version=None,
                            rules_version=None, experiments_version=version,
                            experiments_allocation={"e": {"a": 1.0, "b": 1.0}},
                            experiments_params=params)
    assert store.recorded_params("v1") == {"e": {"b": {"diversity": 0.5}}}
    assert store.recorded_params("v2") == {}        # recorded: no variant sets any
    assert store.recorded_params("old") is None     # recorded before params were kept
    assert store.recorded_params("never") is None
    assert store.recorded_allocation("old") == {"e": {"a": 1.0}}
    restore(db, tmp_path / "old-backup.db")
    assert store.recorded_params("old") is None and store.recorded_params("v1") == {
        "e": {"b": {"diversity": 0.5}}}             # recorded since the backup: kept
    store.close()
