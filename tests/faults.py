"""Failures a test stages on purpose: a full disk, a save cut short, files left open,
an SQLite database locked by another process, refusing writes or overwritten.

Shared by the tests that check a writer leaves the old file whole (atomic saves of
models, graph arrays, caches), that a store closes what it opened, and that the API
answers a busy events database without a 500.
"""
from __future__ import annotations

import contextlib
import io
import os
import sqlite3


def disk_full(*args, **kwargs):
    """A writer (``Path.write_text``, ``np.save``...) on a full disk."""
    raise OSError(28, "No space left on device")


def save_dies_half_way(real_save, fail_on: int = 1):
    """``np.save`` that writes only half of call number ``fail_on`` and raises, like a
    full disk or a killed build: what a reader finds afterwards is the test."""
    calls = []

    def save(file, arr, *a, **k):
        calls.append(file)
        if len(calls) != fail_on:
            return real_save(file, arr, *a, **k)
        buf = io.BytesIO()
        real_save(buf, arr, *a, **k)
        with open(file, "wb") as f:
            f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
        raise OSError(28, "No space left on device")
    return save


def open_files(prefix) -> list[str]:
    """The files under ``prefix`` this process holds open (Linux: /proc/self/fd)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(prefix)):
            out.append(target)
    return out


@contextlib.contextmanager
def write_locked(path):
    """Another process's connection holding the SQLite database's write lock
    meanwhile (``BEGIN EXCLUSIVE``): writers wait their busy timeout, then fail."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@contextlib.contextmanager
def read_only(con: sqlite3.Connection):
    """``con`` refusing writes meanwhile ("attempt to write a readonly database", as
    for a file made read-only: root, which runs the tests here, ignores file modes)."""
    con.execute("PRAGMA query_only=1")
    try:
        yield
    finally:
        con.execute("PRAGMA query_only=0")


@contextlib.contextmanager
def not_a_database(path, how: str = "garbage"):
    """The SQLite file at ``path`` overwritten with garbage (``how="garbage"``) or cut
    short to 100 bytes (``"truncated"``) meanwhile, as by a stray copy or a full disk;
    its bytes are put back after. Only a connection opened meanwhile is sure to see it:
    one already open in WAL mode trusts its cache and does not re-read the file."""
    with open(path, "rb") as f:
        saved = f.read()
    with open(path, "r+b") as f:
        if how == "garbage":
            f.write(b"not a database, " * (len(saved) // 16 + 1))
        elif how == "truncated":
            f.truncate(100)
        else:
            raise ValueError(f"unknown damage {how!r} (allowed: garbage, truncated)")
    try:
        yield
    finally:
        with open(path, "wb") as f:
            f.write(saved)
