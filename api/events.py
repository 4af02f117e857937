"""Durable event store: exposures and shop events in an embedded SQLite database.

Two tables, both tied to the ``request_id`` a response carried:

- ``exposures``: one row per (request, layer) the server assigned, written when the
  response is served;
- ``events``: impression, click, add_to_cart, purchase posted by the shop's pages.

A third, ``experiments_configs``, has one row per version of the experiments config
that assigned an exposure, with each experiment's variant weights (its
``allocation``, JSON ``{experiment: {variant: weight}}``) and the engine ``params`` its
variants set (JSON ``{experiment: {variant: params}}``, NULL in rows of an older
server), written with the first exposure that version logs. The config is reloadable,
so an experiment's exposures may span versions with different weights: the A/B report
checks each version's sample ratio against that version's weights
(:mod:`api.ab_report`), which the server no longer has once the file was edited.

Durability: WAL journal with ``synchronous=FULL``, and every write commits before the
caller acknowledges it, so a server killed at any moment keeps every event it answered
for. One connection per thread (SQLite connections are not shared across threads),
opened lazily so gunicorn workers forked after the app was built open their own; several
processes may write at once (SQLite's file lock, waited on with ``busy_timeout``).

A write that cannot be done (the lock still held after the busy timeout, a disk I/O
error, a read-only file, a file that is no longer a database) raises
:class:`features.exceptions.ServiceUnavailable`, which the API answers with 503 and
``Retry-After``: a batch is one transaction, so nothing of it was stored and the page
may post it again. A write the code got wrong (a constraint, a bad binding) is a bug
and stays an error of its own (500).

A file renamed over the database while the server runs (``mv backup.db events.db``)
is followed: each write checks, under the lock, that the path still names the file its
connection opened, and if not moves to the new one (:meth:`EventStore._follow_replacement`
says how the old file's write-ahead log is kept out of it), and a thread's first
connection waits for the old log to be set aside
(:meth:`EventStore._before_first_connection`). A gunicorn worker with no connection
from before the rename (started since, or one that had not written) cannot tell: while
no other worker has followed, it reads the old file's log, still at the path, as the
new file's, and its writes do not reach the new file; after, it refuses them as
overwritten (its size check, from the master's start) while the new file is smaller
than the file was then. A file overwritten in place (``cp
backup.db events.db``) cannot be followed and is refused (503): back up and restore
with :func:`backup` and :func:`restore` (``mixmatch events backup|restore``), safe
while the servers run.

Two busy timeouts, because the two writes wait for different people: a batch of events
is posted by a page that retries on 503, so it may wait long for a lock
(``busy_timeout_ms``, 10 s by default) rather than be refused; an exposure is written
while a shopper waits for the recommendation it describes, so it waits at most
``exposure_busy_timeout_ms`` (200 ms by default) and is then dropped (the API counts
it). A writer holds the lock for one commit (an fsync, a few ms), so 200 ms still
queues behind dozens of them; only a lock held far longer (a backup, a long report
holding a write transaction) costs exposures, never seconds of a shop page. The
exposure is still written before the response rather than handed to a background
queue: a served page's exposure is then on disk, a killed worker loses none, and
nothing is left to flush at shutdown.

Examples
--------
>>> import tempfile, os
>>> store = EventStore(os.path.join(tempfile.mkdtemp(), "events.db"))
>>> ids = store.add_events([{"type": "click", "request_id": "r1", "item_id": "A"}])
>>> store.count("events")
1
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import logging
import weakref
from pathlib import Path
from typing import Iterable

from features.exceptions import InputError, ServiceUnavailable

log = logging.getLogger(__name__)

#: Seconds a client is told to wait (``Retry-After``) when the database is busy: the
#: busy timeout has already been waited, so a lock still held is a long one
RETRY_AFTER_S = 1
#: ... and when the file is unusable (overwritten, cut short): an operator must restore
#: or move it, which takes minutes, not the second a lock does
RETRY_AFTER_UNUSABLE_S = 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS exposures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    unit TEXT,
    layer TEXT NOT NULL,
    experiment TEXT NOT NULL,
    variant TEXT NOT NULL,
    forced INTEGER NOT NULL DEFAULT 0,
    endpoint TEXT NOT NULL,
    bundle_version TEXT,
    rules_version TEXT,
    client_request_id TEXT,
    experiments_version TEXT
);
CREATE INDEX IF NOT EXISTS exposures_request ON exposures(request_id);
CREATE INDEX IF NOT EXISTS exposures_experiment ON exposures(experiment, variant);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('impression', 'click', 'add_to_cart', 'purchase')),
    item_id TEXT,
    user_id TEXT,
    session_id TEXT,
    value REAL,
    quantity INTEGER
);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id);
CREATE TABLE IF NOT EXISTS experiments_configs (
    version TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    allocation TEXT NOT NULL,
    params TEXT
);
"""

EVENT_COLUMNS = ("type", "request_id", "item_id", "user_id", "session_id", "value",
                 "quantity")


class EventStore:
    """Thread-safe, process-safe SQLite store. ``path`` is created with its folder.

    Parameters
    ----------
    path : str or PathLike
        The database file (``:memory:`` is refused: it would not be durable).
    busy_timeout_ms : int
        How long a write of events waits for another process's lock before failing
        (``EVENTS_BUSY_TIMEOUT_MS``); 0 fails at once.
    exposure_busy_timeout_ms : int
        The same for a write of exposures (``EXPOSURE_BUSY_TIMEOUT_MS``): short,
        because the recommendation they describe is not sent before it ends.
    """

    def __init__(self, path: str | os.PathLike, *, busy_timeout_ms: int = 10_000,
                 exposure_busy_timeout_ms: int = 200):
        self.path = Path(path)
        if str(path) == ":memory:":
            raise InputError("the events database ':memory:' is refused: it would not be "
                             "durable; give a file path", field="EVENTS_DB",
                             value=str(path))
        self.busy_timeout_ms = _check_timeout(busy_timeout_ms, "EVENTS_BUSY_TIMEOUT_MS")
        self.exposure_busy_timeout_ms = _check_timeout(exposure_busy_timeout_ms,
                                                       "EXPOSURE_BUSY_TIMEOUT_MS")
        self._local = threading.local()
        self._pid = os.getpid()
        # every thread's connection, so close() reaches them all, not only its own:
        # (pid, thread, connection), the pid so a forked worker never closes its
        # parent's, the thread so one that ended (a dev server's per-request thread)
        # has its connection closed rather than kept open by this list
        self._cons: list[tuple[int, weakref.ref, sqlite3.Connection]] = []
        self._cons_lock = threading.Lock()
        self._generation = 0       # bumped by close(): threads then open new connections
        # the largest size of the file seen (inherited by forked workers): a file
        # smaller than that was overwritten (:meth:`_check_size`)
        self._size_seen = 0
        # experiments config versions whose allocation this process has recorded: one
        # write per version and process, not one per exposure
        self._allocations_recorded: set[str] = set()
        # a store dropped without close() (an app torn down) closes its connections when
        # collected, not left to the connections' own finalizers
        self._finalizer = weakref.finalize(self, _close_connections, self._cons,
                                           self._cons_lock)
        # named as configuration errors: the server must refuse to start with a clear
        # message (exit 2), not a traceback from mkdir or sqlite3
        if self.path.is_dir():
            raise InputError(f"the events database {self.path} is a folder; give a file "
                             "path", field="EVENTS_DB", value=str(self.path))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:  # create the schema once, up front
                _make_tables(con)
            con.close()
            self._size_seen = self.path.stat().st_size
        except (OSError, sqlite3.DatabaseError) as exc:
            raise InputError(f"cannot open the events database {self.path}: {exc}",
                             field="EVENTS_DB", value=str(self.path)) from exc

    def _connect(self) -> sqlite3.Connection:
        # used by one thread only (the thread-local below); not checked by sqlite3 so
        # that close() may close it from another (SQLite is built serialized)
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                              isolation_level=None, check_same_thread=False,
                              factory=_Connection)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            con.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so an acknowledged event
            # survives a power cut too, not only a killed process
            con.execute("PRAGMA synchronous=FULL")
        except BaseException:
            con.close()     # a busy database: the next write opens a new one
            raise
        # the files it opened (the pragma opened the log and its index): a write
        # compares them with the path's (a file renamed over it is another inode)
        con.file_id = _file_id(self.path)
        con.wal_id = _file_id(self._side("-wal"))
        con.shm_id = _file_id(self._side("-shm"))
        return con

    def _side(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _con(self) -> sqlite3.Connection:
        local, pid = self._local, os.getpid()
        con = getattr(local, "con", None)
        if con is None or local.pid != pid or local.generation != self._generation:
            # a forked worker must not reuse its parent's connection, nor a thread one
            # that close() closed
            generation = self._generation
            new_file = self._before_first_connection()
            con = self._connect()
            if new_file:
                try:
                    _make_tables(con)   # as _follow_replacement
                except BaseException:
                    con.close()
                    raise
            with self._cons_lock:
                ended = [c for owner, t, c in self._cons
                         if owner == pid and not _alive(t())]
                self._cons[:] = [e for e in self._cons if e[2] not in ended]
                self._cons.append((pid, weakref.ref(threading.current_thread()), con))
            for c in ended:
                c.close()
            local.con, local.pid, local.generation = con, pid, generation
        return con

    def _begin(self, busy_timeout_ms: int) -> sqlite3.Connection:
        """The thread's connection, holding the write lock of the file now at the
        path: one renamed over it (a backup restored by ``mv``) is followed first."""
        for _ in range(3):
            try:
                con = self._con()
                # the thread's one connection serves both kinds of write: each sets its
                # own wait (a pragma, microseconds) before it asks for the lock
                con.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
                con.execute("BEGIN IMMEDIATE")
                # a stat (a few µs beside a commit's fsync of ms), under the lock: no
                # writer of the old file comes between it and the write
                st = _stat(self.path)
                if st is not None and (st.st_dev, st.st_ino) == con.file_id:
                    self._check_size(con, st.st_size)
                    return con
                self._follow_replacement(con)
            except sqlite3.DatabaseError as exc:   # locked past the timeout, I/O, corrupt
                if not _cannot_write(exc):
                    raise
                raise self._unavailable(exc) from exc
        raise ServiceUnavailable(
            "the events database file was replaced again while the server reopened it: "
            f"nothing of this request was stored; retry in {RETRY_AFTER_S} s",
            retry_after=RETRY_AFTER_S)

    def _check_size(self, con: sqlite3.Connection, size: int) -> None:
        """Refuse the write if the file shrank below the largest size this process
        saw: overwritten in place (``cp backup.db events.db``), which no reopening
        mends. The log (``-wal``) holds the pages of the file the copy replaced and
        SQLite lays them over it: the server answered 201 and the restore did not
        happen, or mixed pages of both. Its file only grows: the store deletes rows
        only in :func:`restore`, whose freed pages SQLite keeps; a shrink SQLite
        made (a ``VACUUM``, a ``.restore`` of a smaller database, then a checkpoint)
        is refused too, until a restart."""
        seen = self._size_seen
        if size >= seen:
            self._size_seen = size
            return
        reason = (f"its file was overwritten while the server ran: {size} bytes, it had "
                  f"{seen}")
        if self._table_count() == 0:    # the connection wrote a header into 0 bytes
            reason = f"{NO_TABLES} while the server ran: it had {seen} bytes"
        con.execute("ROLLBACK")
        log.error("the events database %s is unusable: %s. Nothing is written into it "
                  "until its file is put back or the server restarted: its write-ahead "
                  "log holds pages of the file the copy replaced, which SQLite would lay "
                  "over the copy. To restore a backup, run mixmatch events restore --db "
                  "%s --from BACKUP (through the log: safe while the server runs), or "
                  "stop every server process, copy the backup again (their last "
                  "connection writes the log into the file as it closes), and start "
                  "them", self.path, reason, self.path)
        raise ServiceUnavailable(
            f"the events database is unusable ({reason}): nothing of this request was "
            f"stored; retry in {RETRY_AFTER_UNUSABLE_S} s",
            retry_after=RETRY_AFTER_UNUSABLE_S)

    def _follow_replacement(self, con: sqlite3.Connection) -> None:
        """Leave the file ``con`` opened (no longer at the path: renamed away, removed)
        for the one there now. Called holding the old file's write lock.

        SQLite names its write-ahead log and index after the path, not the file: left
        there, the log of the old file is read by the next connection to the new one
        as if its own (a restart laid the old pages over a restored backup). So,
        still under the lock, the old file's log and index are unlinked (only if they
        are still the ones ``con`` opened: a worker that followed first has started the
        new file's), the lock is released, and the log is checkpointed through
        ``con``'s open handles into the old file, which keeps every event written to
        it (``mv events.db old.db`` first leaves them all in old.db). A connection to a
        moved file does not checkpoint on close, nor delete the log."""
        self._set_aside(con)
        self._drop(con)
        _make_tables(self._con())

    def _set_aside(self, con: sqlite3.Connection) -> None:
        """The part of :meth:`_follow_replacement` done through ``con``, a connection
        of the replaced file holding its write lock: unlink its log and index if still
        at the path, release the lock, checkpoint the log into the old file. Then this
        process writes into a new file, with its own records and size."""
        log.warning("the events database %s was replaced while the server ran: the "
                    "events go to the file now at that path", self.path)
        for suffix, seen in (("-wal", con.wal_id), ("-shm", con.shm_id)):
            side = self._side(suffix)
            if seen is not None and _file_id(side) == seen:
                side.unlink(missing_ok=True)
        con.execute("ROLLBACK")
        try:
            busy = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            busy = exc
        if busy:
            log.warning("the log of the replaced events database was not all written "
                        "into it: %s", busy)
        self._new_file()

    def _new_file(self) -> None:
        # the new file has its own record of experiments configs (none, maybe), and
        # its own size
        self._allocations_recorded.clear()
        self._size_seen = 0

    def _before_first_connection(self) -> bool:
        """Before a thread opens its connection: if the path names another file than
        this process's connections have open (one renamed over it) and the old file's
        log is still beside it, set that log aside first, or refuse.

        A connection opened now would read that log as the new file's (it is named
        after the path): its writes went into the old file's log, answered 201, and
        the old pages were laid over the new file. A connection of an ended thread
        (the dev server's thread per request) sets it aside, as
        :meth:`_follow_replacement` does; while only live threads hold one, each
        follows at its next write and this write is refused (503, retry in 1 s).
        When the log was set aside (by another worker), the new file is this
        process's from now, its size included (else a smaller file read as
        overwritten). A process with no connection at all (a worker forked since)
        cannot tell, and opens the path as it is. True: the connection about to be
        opened goes to a file this process has not written to (its tables are made,
        as :meth:`_follow_replacement` makes them)."""
        pid, here = os.getpid(), _file_id(self.path)
        with self._cons_lock:
            old = [(t, c) for owner, t, c in self._cons
                   if owner == pid and c.file_id != here]
        if here is None or not old:
            return False
        log_here = _file_id(self._side("-wal"))
        if not any(c.wal_id is not None and c.wal_id == log_here for _, c in old):
            self._new_file()
            return True
        with self._cons_lock:
            entry = next((e for e in self._cons if e[0] == pid
                          and e[2].file_id != here and not _alive(e[1]())), None)
            self._cons[:] = [e for e in self._cons if e is not entry]
        if entry is None:
            raise ServiceUnavailable(
                "the events database file was replaced while the server ran, and the "
                "old file's log is still beside it until this worker's threads write "
                f"again: nothing of this request was stored; retry in {RETRY_AFTER_S} s",
                retry_after=RETRY_AFTER_S)
        idle = entry[2]
        try:
            # the old file's lock, as a follower takes it; waited for no longer than
            # an exposure may wait (this may be one)
            idle.execute(f"PRAGMA busy_timeout="
                         f"{int(min(self.busy_timeout_ms, self.exposure_busy_timeout_ms))}")
            idle.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            with self._cons_lock:   # kept: the log is still to be set aside
                self._cons.append(entry)
            if not _cannot_write(exc):
                raise
            raise self._unavailable(exc) from exc
        try:
            self._set_aside(idle)
        finally:
            idle.close()
        return True

    def _drop(self, con: sqlite3.Connection) -> None:
        """Close the calling thread's connection ``con``; its next use opens another."""
        with self._cons_lock:
            self._cons[:] = [e for e in self._cons if e[2] is not con]
        self._local.con = None
        con.close()

    def _write(self, sql: str, rows: list[tuple], *, busy_timeout_ms: int) -> list[int]:
        con = self._begin(busy_timeout_ms)
        ids = []
        try:
            for row in rows:
                ids.append(con.execute(sql, row).lastrowid)
            con.execute("COMMIT")
        except BaseException as exc:
            # SQLite has already rolled back after some errors (I/O, disk full): a
            # second ROLLBACK would raise "no transaction is active" over the reason
            if con.in_transaction:
                con.execute("ROLLBACK")
            if _cannot_write(exc):
                raise self._unavailable(exc) from exc
            raise
        return ids

    def _unavailable(self, exc: sqlite3.DatabaseError) -> ServiceUnavailable:
        # SQLite's reason ("database is locked", "file is not a database") is short and
        # names no file, so it is the body's; the path is for the server's log only
        reason = str(exc)
        if reason.startswith("no such table"):
            # not a lock: the file lost the tables the server made at start (it was
            # answered "busy", retry in 1 s). An empty file is a valid new database to
            # SQLite, so a file emptied under the server opens, and is made a 1-page
            # database by the connection's WAL pragma: no table at all says so
            if self._table_count() == 0:
                reason = f"{NO_TABLES}: {reason}"
            else:
                reason = f"{reason}: the file has lost the server's tables"
        elif isinstance(exc, sqlite3.OperationalError):  # locked, disk I/O, read-only
            # the error handler logs the message with the request
            return ServiceUnavailable(
                f"the events database is busy or unavailable ({exc}): nothing of this "
                f"request was stored; retry in {RETRY_AFTER_S} s",
                retry_after=RETRY_AFTER_S)
        # overwritten or cut short under the server: no retry mends it, an operator
        # must, and needs to know which file
        log.error("the events database %s is unusable: %s", self.path, reason)
        return ServiceUnavailable(
            f"the events database is unusable ({reason}): nothing of this request was "
            f"stored; retry in {RETRY_AFTER_UNUSABLE_S} s",
            retry_after=RETRY_AFTER_UNUSABLE_S)

    def _table_count(self) -> int | None:
        try:
            return self._con().execute("SELECT COUNT(*) FROM sqlite_master "
                                       "WHERE type = 'table'").fetchone()[0]
        except (sqlite3.Error, ServiceUnavailable):  # the latter: a file replaced
            return None

    def add_events(self, events: Iterable[dict], *, ts: float | None = None) -> list[int]:
        """Store validated events in one transaction; returns their ids once committed.

        All or nothing: raises :class:`ServiceUnavailable` with none of them stored
        when the database cannot take the write."""
        now = time.time() if ts is None else ts
        # ``value`` is REAL: an integral value is bound as a float, because sqlite3
        # binds an int as a 64-bit INTEGER first and overflows on a larger one
        rows = [(now, *(_as_real(e.get(c)) if c == "value" else e.get(c)
                        for c in EVENT_COLUMNS)) for e in events]
        cols = ", ".join(("ts",) + EVENT_COLUMNS)
        marks = ", ".join("?" * (len(EVENT_COLUMNS) + 1))
        return self._write(f"INSERT INTO events ({cols}) VALUES ({marks})", rows,
                           busy_timeout_ms=self.busy_timeout_ms)

    def add_exposures(self, request_id: str, unit: str | None, entries, *, endpoint: str,
                      bundle_version: str | None, rules_version: str | None,
                      client_request_id: str | None = None,
                      experiments_version: str | None = None,
                      experiments_allocation: dict | None = None,
                      experiments_params: dict | None = None,
                      ts: float | None = None) -> list[int]:
        """One row per (layer, experiment, variant, forced) entry of an assignment.

        ``request_id`` is the server's own, unique per response; ``client_request_id``
        the X-Request-ID the client sent, if any (not unique: kept for tracing);
        ``experiments_version`` the version of the experiments config that assigned
        it (the config is reloadable, so one experiment's rows may span edits), and
        ``experiments_allocation`` that config's weights
        (:meth:`api.experiments.Experiments.allocation`), recorded in
        ``experiments_configs`` the first time the version is seen, with
        ``experiments_params`` (:meth:`api.experiments.Experiments.variant_params`):
        an exposure names its variant, and the record says what that variant set. The
        first record of a version stands, so a ``version`` key must change with every
        edit.

        Waits at most ``exposure_busy_timeout_ms`` for the lock, then raises
        :class:`ServiceUnavailable` with nothing stored."""
        now = time.time() if ts is None else ts
        rows = [(now, request_id, unit, layer, exp, var, int(forced), endpoint,
                 bundle_version, rules_version, client_request_id, experiments_version)
                for layer, exp, var, forced in entries]
        if not rows:
            return []
        if (experiments_version is not None and experiments_allocation is not None
                and experiments_version not in self._allocations_recorded):
            self._write("INSERT OR IGNORE INTO experiments_configs (version, ts, "
                        "allocation, params) VALUES (?, ?, ?, ?)",
                        [(experiments_version, now,
                          json.dumps(experiments_allocation, sort_keys=True),
                          json.dumps(experiments_params or {}, sort_keys=True))],
                        busy_timeout_ms=self.exposure_busy_timeout_ms)
            self._allocations_recorded.add(experiments_version)
        return self._write(
            "INSERT INTO exposures (ts, request_id, unit, layer, experiment, variant, "
            "forced, endpoint, bundle_version, rules_version, client_request_id, "
            "experiments_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows,
            busy_timeout_ms=self.exposure_busy_timeout_ms)

    def recorded_allocation(self, version: str) -> dict | None:
        """The weights recorded for experiments config ``version`` (``None``: none
        recorded, or the database cannot be read now: a reload is not refused for
        the events database's trouble)."""
        return self._recorded(version, "allocation", "weights")

    def recorded_params(self, version: str) -> dict | None:
        """The variants' params recorded for experiments config ``version`` (``None``:
        none recorded, recorded by a server that kept none, or unreadable now)."""
        return self._recorded(version, "params", "params")

    def _recorded(self, version: str, column: str, what: str) -> dict | None:
        try:
            row = self._con().execute(f"SELECT {column} FROM experiments_configs "
                                      "WHERE version = ?", (version,)).fetchone()
        except (sqlite3.Error, ServiceUnavailable) as exc:  # the latter: file replaced
            log.warning("could not read the recorded %s of experiments version %r from "
                        "%s: %s", what, version, self.path, exc)
            return None
        return None if row is None or row[0] is None else json.loads(row[0])

    # -- reading (tests, notebooks, metrics) ------------------------------------
    def count(self, table: str) -> int:
        if table not in ("events", "exposures", "experiments_configs"):
            raise ValueError(f"unknown table {table!r}")
        return self._con().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._con().execute(sql, params).fetchall()

    def close(self) -> None:
        """Close the connections of every thread of this process (they were closed for
        the calling thread only, and the others kept the database's files open). Call
        it once requests are done; a later use opens a new connection."""
        with self._cons_lock:
            self._generation += 1
        _close_connections(self._cons, self._cons_lock)

    def describe(self) -> dict:
        return {"path": str(self.path)}


#: What a file with no table at all is called (its tables gone under the server).
NO_TABLES = ("its file holds no table at all (emptied to 0 bytes, or replaced by an "
             "empty database)")


def _make_tables(con: sqlite3.Connection) -> None:
    """Create the tables that are missing and add the columns a file of an older
    server lacks: at start, and on a file that replaced the database (a backup from
    an older server, an empty file)."""
    con.executescript(SCHEMA)
    _migrate(con)


class _Connection(sqlite3.Connection):
    """A connection that remembers the files it opened, as ``(device, inode)``: the
    database (``file_id``), its write-ahead log (``wal_id``) and the log's index
    (``shm_id``)."""

    file_id: tuple[int, int] | None = None
    wal_id: tuple[int, int] | None = None
    shm_id: tuple[int, int] | None = None


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:     # gone (removed, renamed away): not the file a connection has
        return None


def _file_id(path: Path) -> tuple[int, int] | None:
    st = _stat(path)
    return None if st is None else (st.st_dev, st.st_ino)


def _close_connections(cons: list, lock: threading.Lock) -> None:
    """Close and forget the connections this process opened. A parent's, inherited
    through fork, are left alone and kept referenced: closing one here (or letting it
    be collected, which closes it) could checkpoint and remove the WAL the parent
    still uses."""
    pid = os.getpid()
    with lock:
        mine = [con for owner, _thread, con in cons if owner == pid]
        cons[:] = [e for e in cons if e[0] != pid]
    for con in mine:
        con.close()


def _cannot_write(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot take a write for now (503: the page may
    retry): locked, disk I/O, read-only (OperationalError), or the file no longer a
    database (DatabaseError itself: SQLITE_NOTADB, SQLITE_CORRUPT). Its other
    subclasses (IntegrityError, ProgrammingError...) are the code's fault: a retry
    would only repeat them."""
    return (isinstance(exc, sqlite3.OperationalError)
            or type(exc) is sqlite3.DatabaseError)


def _check_timeout(value, field: str) -> int:
    # named as configuration errors, with the key to fix: the server refuses to start
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"the events database busy timeout {value!r} is not a whole "
                         "number of milliseconds >= 0", field=field, value=value)
    return value


def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and thread.is_alive()


def _migrate(con: sqlite3.Connection) -> None:
    """Bring a database written by an older server up to :data:`SCHEMA` (columns
    added since; ``CREATE TABLE IF NOT EXISTS`` leaves an existing table as it is).
    Under the write lock, so servers starting together add a column once."""
    con.execute("BEGIN IMMEDIATE")
    try:
        cols = {r[1] for r in con.execute("PRAGMA table_info(exposures)")}
        for col in ("client_request_id", "experiments_version"):
            if col not in cols:
                con.execute(f"ALTER TABLE exposures ADD COLUMN {col} TEXT")
        if "params" not in {r[1] for r in con.execute(
                "PRAGMA table_info(experiments_configs)")}:
            con.execute("ALTER TABLE experiments_configs ADD COLUMN params TEXT")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _as_real(value):
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def summary(store: EventStore) -> str:
    """A JSON line of counts per experiment/variant (for notebooks and logs)."""
    rows = store.query("SELECT experiment, variant, COUNT(*) FROM exposures "
                       "GROUP BY experiment, variant ORDER BY 1, 2")
    return json.dumps([{"experiment": e, "variant": v, "exposures": n} for e, v, n in rows])


# -- backup and restore (``mixmatch events``) ------------------------------------------
#: The tables a restore replaces; ``experiments_configs`` is merged (see :func:`restore`).
EVENT_TABLES = ("events", "exposures")


def backup(db: str | os.PathLike, out: str | os.PathLike) -> dict[str, int]:
    """Copy the events database ``db`` into the new file ``out``, safely while servers
    write to it; returns the backup's row counts per table.

    SQLite's online backup (``sqlite3 DB ".backup OUT"``, without the sqlite3 tool): one
    read transaction, so the copy is the database as of one commit, with the events
    still in the write-ahead log, and no server waits for it (readers do not block
    writers in WAL mode). ``cp events.db`` is not a backup: the latest events are in
    ``events.db-wal``. Written to a temporary file beside ``out``, put in place
    when complete (a link: a file that appeared at ``out`` meanwhile is kept and the
    backup refused): an interrupted backup leaves no file that looks like one.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = EventStore(d / "events.db").add_events([{"type": "click", "request_id": "r"}])
    >>> backup(d / "events.db", d / "backup.db")["events"]
    1
    """
    db, out = Path(db), Path(out)
    _check_events_file(db, "--db")
    if out.exists() or out.is_symlink():
        raise _out_exists(out)
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: its folder {out.parent} does not exist",
                         field="out", value=str(out))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    src = _open_existing(db, "--db")
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            # one self-contained file (the copied header says WAL): read by a restore
            # or the A/B report, it then leaves no -wal and -shm files beside it
            dst.execute("PRAGMA journal_mode=DELETE")
            counts = _counts(dst)
        finally:
            dst.close()
        try:
            # a link, not a rename: it fails where a file came to be at --out while
            # the backup ran, which a rename would overwrite
            os.link(tmp, out)
        except FileExistsError:
            raise _out_exists(out) from None
    except sqlite3.DatabaseError as exc:
        raise InputError(f"cannot back up the events database {db}: {exc}", field="db",
                         value=str(db)) from exc
    finally:
        src.close()
        tmp.unlink(missing_ok=True)
    return counts


def restore(db: str | os.PathLike, source: str | os.PathLike, *,
            busy_timeout_ms: int = 10_000) -> dict[str, int]:
    """Replace the rows of the events database ``db`` with those of the backup
    ``source``, safely while servers write to ``db``; returns the restored row counts.

    One write transaction through ``db``'s own connection and log, as a server's write:
    the servers wait for it (exposures up to their 200 ms, then dropped and counted),
    then write into the restored database, and readers (the A/B report) see the old rows
    or the restored ones, never a mix. Rows, not the file: the file keeps its inode and
    does not shrink, which is what a server checks to refuse a file overwritten under it
    (:meth:`EventStore._check_size`). ``sqlite3 DB ".restore BACKUP"`` is safe for the
    data, but a smaller backup shrinks the file at the next checkpoint, and the servers
    then refuse every write (503) until restarted: they cannot tell it from ``cp``.

    ``events`` and ``exposures`` become the backup's (the columns both have: a backup of
    an older server lacks some). ``experiments_configs`` takes the backup's record of
    each version it has and keeps the versions recorded since: a server records a
    version's weights once per process, and would not write them again.
    """
    db, source = Path(db), Path(source)
    _check_events_file(source, "--from")
    _check_events_file(db, "--db")
    if os.path.samefile(db, source):
        raise InputError(f"--from {source} is the events database itself; give a backup",
                         field="from", value=str(source))
    try:
        EventStore(db).close()      # a database of an older server: its columns added
        con = sqlite3.connect(db, isolation_level=None, uri=True,
                              timeout=busy_timeout_ms / 1000)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"cannot open the events database {db}: {exc}", field="db",
                         value=str(db)) from exc
    try:
        con.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        con.execute("ATTACH DATABASE ? AS backup", (_read_only_uri(source),))
        con.execute("BEGIN IMMEDIATE")
        try:
            for table in EVENT_TABLES:
                cols = _shared_columns(con, table)
                con.execute(f"DELETE FROM main.{table}")
                con.execute(f"INSERT INTO main.{table} ({cols}) "
                            f"SELECT {cols} FROM backup.{table}")
            cols = _shared_columns(con, "experiments_configs")
            if cols:
                # a backup of an older server has no params: NULL, unknown
                con.execute(f"INSERT OR REPLACE INTO main.experiments_configs ({cols}) "
                            f"SELECT {cols} FROM backup.experiments_configs")
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return {t: con.execute(f"SELECT COUNT(*) FROM main.{t}").fetchone()[0]
                for t in (*EVENT_TABLES, "experiments_configs")}
    except sqlite3.OperationalError as exc:
        raise ServiceUnavailable(f"nothing was restored into {db}: {exc} (a server "
                                 f"holding its lock past {busy_timeout_ms} ms?); run it "
                                 "again") from exc
    except sqlite3.DatabaseError as exc:
        raise InputError(f"cannot restore {source} into {db}: {exc}", field="from",
                         value=str(source)) from exc
    finally:
        con.close()


def cli_events(args) -> int:
    """``mixmatch events backup --db DB --out FILE`` and
    ``mixmatch events restore --db DB --from FILE``."""
    if args.action == "backup":
        counts = backup(args.db, args.out)
        print(f"backed up {args.db} into {args.out}: {_describe_counts(counts)}")
    else:
        counts = restore(args.db, args.source)
        print(f"restored {args.source} into {args.db}: {_describe_counts(counts)}")
    return 0


def _out_exists(out: Path) -> InputError:
    return InputError(f"--out {out} already exists: a backup is written to a new file, "
                      "never over one", field="out", value=str(out))


def _check_events_file(path: Path, option: str) -> None:
    """Refuse, by name, a path that is not an events database: missing, a folder, not
    SQLite, or without the ``events`` and ``exposures`` tables. Before anything opens
    it: ``sqlite3.connect`` would create a missing file (a typo restored into a new,
    empty database while the servers kept their own)."""
    field = option.lstrip("-")
    if not path.exists():
        raise InputError(f"{option} {path} does not exist", field=field, value=str(path))
    if not path.is_file():
        raise InputError(f"{option} {path} is not a file", field=field, value=str(path))
    con = _open_existing(path, option)
    try:
        tables = {r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{option} {path} is not an events database: {exc}", field=field,
                         value=str(path)) from exc
    finally:
        con.close()
    missing = [t for t in EVENT_TABLES if t not in tables]
    if missing:
        raise InputError(f"{option} {path} is not an events database: it has no "
                         f"{' or '.join(missing)} table", field=field, value=str(path))


def _open_existing(path: Path, option: str) -> sqlite3.Connection:
    try:
        return sqlite3.connect(_read_only_uri(path), uri=True)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{option} {path} cannot be opened: {exc}",
                         field=option.lstrip("-"), value=str(path)) from exc


def _read_only_uri(path: Path) -> str:
    # read-only, and never created; as_uri() quotes a '?' or '#' in the file name
    return f"{Path(path).resolve().as_uri()}?mode=ro"


def _columns(con: sqlite3.Connection, schema: str, table: str) -> list[str]:
    return [r[1] for r in con.execute(f"PRAGMA {schema}.table_info({table})")]


def _shared_columns(con: sqlite3.Connection, table: str) -> str:
    """The columns of ``table`` both the backup and the main database have, as an SQL
    list: a backup of an older server lacks the newer ones (left NULL)."""
    return ", ".join(c for c in _columns(con, "backup", table)
                     if c in _columns(con, "main", table))


def _counts(con: sqlite3.Connection) -> dict[str, int]:
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master "
                                        "WHERE type = 'table'")}
    return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in (*EVENT_TABLES, "experiments_configs") if t in tables}


def _describe_counts(counts: dict[str, int]) -> str:
    names = {"events": "events", "exposures": "exposures",
             "experiments_configs": "experiments config versions"}
    return ", ".join(f"{n} {names[t]}" for t, n in counts.items())
