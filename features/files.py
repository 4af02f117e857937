"""Files written whole and hashed: the low-level file helpers every stage shares.

A model or table a stage writes is read by a server that may be watching the folder,
so it is written beside its target and renamed into place (:func:`atomic_files`);
stage inputs are recognised by the hash of their bytes (:func:`file_hash`; for the
catalogue's images through :class:`ContentHashes`, which rehashes only a file whose
stat changed), and a bundle file a stage or the server reads is named when it is
damaged (:func:`read_bundle_file`). These live in ``features`` because the perception
stages save their own models and read the bundle's tables, and ``features`` imports
nothing from ``recommender`` or ``api``; :mod:`recommender.bundle` re-exports them.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from features.exceptions import BundleError


def file_hash(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex, first 16 characters)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


#: File name of the content-hash index in a cache folder (a bundle's ``cache/``).
CONTENT_HASHES = "content_hashes.parquet"
#: Format of that file, in its Parquet metadata: a file of another format (or none)
#: is read as an empty index and rebuilt, never an error.
CONTENT_HASHES_FORMAT = "1"
#: An entry is not kept for a file changed less than this many seconds before it was
#: hashed: file times tick coarsely (a few ms on Linux), so a rewrite of the same size
#: right after could leave size, mtime and ctime all as recorded (git's "racily clean"
#: entries). Such a file is hashed again next time, until it has settled.
RACY_SECONDS = 2.0

_STAT_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino")
#: One entry in memory: the four stat fields (size and inode unsigned, as the kernel
#: has them) and the digest (16 ASCII bytes) packed in one bytes object: ~80 bytes an
#: entry instead of ~270 as a tuple of Python ints and a str (1M entries: ~0.2 GB less).
_STAT = struct.Struct("<QqqQ")
_RECORD_DTYPE = [("size", "<u8"), ("mtime_ns", "<i8"), ("ctime_ns", "<i8"),
                 ("ino", "<u8"), ("digest", "S16")]
_RECORD_SIZE = _STAT.size + 16


def _stat_key(st: os.stat_result) -> bytes:
    return _STAT.pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class ContentHashes:
    """SHA-256 of files' bytes (:func:`file_hash`), hashed once while each file's
    (size, mtime_ns, ctime_ns, inode) stays as recorded: git's and DVC's index.

    Cache keys built on a file's content survive what keeps the bytes and changes
    the times (``touch``, ``cp -r`` without ``-p``, a checkout, an unpacked archive,
    a re-provisioned data folder), where keys on (size, mtime) reran hour-long image
    stages on identical images. The ctime is in the key because it changes on every
    write and rename and cannot be set back (``touch``/``os.utime`` set only atime and
    mtime): a rewrite of the same size with its mtime restored is hashed again.

    ``path`` is the index file (``None``: kept in memory only). It is a cache: a
    missing, damaged or old-format file is an empty index (rebuilt as files are
    hashed); :meth:`save` writes it atomically, only when an entry was added or
    changed, leaving out the entries of files since deleted, moved away or changed
    (:meth:`prune`), and keeps it in memory when the folder cannot be written (a
    read-only bundle). Two writers at once: the last rename wins and the other's new entries
    cost one rehash next time. Parquet, as the other bundle tables: 1M entries load in
    about 0.9 s, save in 1.0 s (53 MB) and take ~0.2 GB in memory (JSON lines: 4.5 s
    and 3.2 s, 133 MB). Use :func:`content_hashes` for the instance shared in a
    process.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.jpg").write_bytes(b"pixels")
    >>> index = ContentHashes(d / CONTENT_HASHES)
    >>> index.digest(d / "a.jpg") == file_hash(d / "a.jpg"), index.digest(d / "b.jpg")
    (True, None)
    >>> os.utime(d / "a.jpg", (0, 0))                   # new times, same bytes
    >>> index.digest(d / "a.jpg") == file_hash(d / "a.jpg")
    True
    """

    def __init__(self, path: str | os.PathLike | None = None, *, read_only: bool = False):
        self.path = Path(path) if path is not None else None
        #: read the index file, never write it (a dry run reports and writes nothing)
        self.read_only = read_only
        self._entries: dict[str, bytes] = {}     # abspath -> stat fields + digest
        self._dirty = False
        self._seen: bytes | None = None     # the file's stat when last read or written
        self._lock = threading.Lock()
        self.reload()

    def __len__(self) -> int:
        return len(self._entries)

    def _file_stat(self) -> bytes | None:
        try:
            return _stat_key(os.stat(self.path)) if self.path is not None else None
        except OSError:
            return None

    def reload(self) -> None:
        """Merge in the entries of the index file when it changed since this instance
        last read or wrote it (another process saved it); entries of this one win."""
        seen = self._file_stat()
        if seen is None or seen == self._seen:
            return
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(self.path)
            meta = table.schema.metadata or {}
            if meta.get(b"mixmatch_content_hashes") != CONTENT_HASHES_FORMAT.encode():
                raise ValueError("not a content-hash index of this format")
            table = table.select(["path", *_STAT_FIELDS, "digest"])
            rec = np.empty(table.num_rows, _RECORD_DTYPE)
            for k in (*_STAT_FIELDS, "digest"):
                rec[k] = table.column(k).to_numpy(zero_copy_only=False)
            buf, size = rec.tobytes(), _RECORD_SIZE
            loaded = dict(zip(table.column("path").to_pylist(),
                              (buf[i:i + size] for i in range(0, len(buf), size))))
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
            loaded = {}    # damaged or another format: rebuilt as files are hashed
        # Arrow's pool keeps the table's memory otherwise (~0.2 GB for 1M entries)
        pa.default_memory_pool().release_unused()
        with self._lock:
            loaded.update(self._entries)
            self._entries = loaded
            self._seen = seen

    def digest(self, path: str | os.PathLike) -> str | None:
        """The content hash of ``path`` (:func:`file_hash`), None when it cannot be
        read (missing, a folder, no permission)."""
        key = os.path.abspath(path)
        try:
            st = os.stat(key)
            rec = self._entries.get(key)
            if rec is not None and rec[:_STAT.size] == _stat_key(st):
                return rec[_STAT.size:].decode()
            h = file_hash(key)
            after = os.stat(key)
        except OSError:
            return None
        if (_stat_key(after) == _stat_key(st)   # not changed while it was read
                and time.time() - max(st.st_mtime, st.st_ctime) >= RACY_SECONDS):
            with self._lock:
                self._entries[key] = _stat_key(st) + h.encode()
                self._dirty = True
        return h

    def prune(self) -> int:
        """Drop the entries that can never match again: their file is gone (deleted,
        or its folder moved away) or its stat is no longer the recorded one (the file
        changed, and is hashed again when next asked for). Returns how many went.

        One ``stat`` per entry: a 100k-entry save took 0.5-0.7 s instead of 0.1-0.15 s
        on a busy 2-core machine (MANGO's 9k images: about 0.05 s more). :meth:`save`
        prunes before it writes, so the index holds what is there, not every path
        it ever hashed; an index with nothing new to write is left as it is.
        """
        with self._lock:
            entries = list(self._entries.items())
        stale = []
        for key, rec in entries:
            try:
                if _stat_key(os.stat(key)) == rec[:_STAT.size]:
                    continue
            except OSError:
                pass
            stale.append((key, rec))
        with self._lock:
            for key, rec in stale:
                # an entry digest() recorded again meanwhile (another thread) stays
                if self._entries.get(key) is rec:
                    del self._entries[key]
        return len(stale)

    def save(self) -> bool:
        """Write the index file when entries were added or changed since it was read;
        True when written. Entries whose file is gone or changed are dropped first
        (:meth:`prune`). A folder that cannot be written, or an index opened
        ``read_only``, keeps it in memory."""
        if self.path is None or not self._dirty or self.read_only:
            return False
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.prune()
        with self._lock:
            paths = list(self._entries)
            rec = np.frombuffer(b"".join(self._entries.values()), _RECORD_DTYPE)
            self._dirty = False
        table = pa.table({"path": pa.array(paths, pa.string()),
                          **{k: pa.array(rec[k]) for k in _STAT_FIELDS},
                          "digest": pa.array(rec["digest"].astype(str), pa.string())})
        table = table.replace_schema_metadata(
            {"mixmatch_content_hashes": CONTENT_HASHES_FORMAT})
        try:
            with atomic_files(self.path) as (tmp,):
                pq.write_table(table, tmp)
        except OSError:
            return False   # a read-only bundle: the entries serve this process
        self._seen = self._file_stat()
        return True


_SHARED: dict[tuple[str | None, bool], ContentHashes] = {}
_SHARED_LOCK = threading.Lock()


def content_hashes(folder: str | os.PathLike | None, *,
                   read_only: bool = False) -> ContentHashes:
    """The process's :class:`ContentHashes` for the index in ``folder`` (a bundle's
    ``cache/``; None: one kept in memory only), read once and merged again when
    another process saved it since; ``read_only``: one of its own that never writes
    the file (``--dry-run``).

    Stage inputs, the features' part folder and the attribute caches ask for the same
    images several times in one build: one instance hashes each image once.
    """
    key = os.path.abspath(os.path.join(folder, CONTENT_HASHES)) if folder is not None \
        else None
    with _SHARED_LOCK:
        index = _SHARED.get((key, read_only))
        if index is None:
            index = _SHARED[(key, read_only)] = ContentHashes(key, read_only=read_only)
            return index
    index.reload()
    return index


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never half.
    UTF-8 whatever the locale: the project's readers (rules, manifests) read UTF-8."""
    with atomic_files(path) as (tmp,):
        tmp.write_text(text, encoding="utf-8")


def _new_file_beside(path: Path) -> Path:
    """A new empty file in ``path``'s folder, named ``.<name>.<random><suffix>``.

    Created with the mode a plain ``open`` gives (0o666 less the umask), not
    ``mkstemp``'s 0o600: renamed into place it is the bundle's file, and a server
    running as another user than the build must be able to read it."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


@contextlib.contextmanager
def atomic_files(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Write one or several files so that a reader, or a crash, never leaves half a file.

    Yields a temporary path beside each of ``paths`` (same folder, so the final move
    is a rename; same suffix, as ``np.savez`` appends ``.npz`` to a name without it)
    for the block to write. When the block finishes, the temporary files are fsynced
    and renamed over ``paths`` in the order given: name a manifest last, so it never
    describes files that are not there yet. When the block raises (a full disk, a
    bug, Ctrl-C), the temporary files are removed and the old files are untouched,
    so the previous model still loads.

    Each file is whole; the set switches over by renames in microseconds, not as one
    step: readers that need the set consistent rely on the bundle's build mark
    (:meth:`Bundle.check_complete`).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_files(d / "w.bin", d / "w.json") as (w, js):
    ...     _ = w.write_bytes(b"weights"); _ = js.write_text("{}")
    >>> sorted(p.name for p in d.iterdir())
    ['w.bin', 'w.json']
    """
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for p in targets:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(_new_file_beside(p))
        yield list(tmps)
        for tmp in tmps:
            # the writers (LightGBM, torch, numpy) close their files but do not sync
            # them: without this a power cut after the rename can leave an empty file
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        for tmp, p in zip(tmps, targets):
            os.replace(tmp, p)
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise


def read_bundle_file(path: str | os.PathLike, read: Callable[[Path], Any]) -> Any:
    """``read(path)``; BundleError naming the file when it is cut short or damaged (an
    interrupted copy of the bundle), not numpy's ``mmap length is greater than file
    size`` or Arrow's ``Parquet magic bytes not found`` without a name (a traceback
    from the CLI).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "e.npy"; _ = p.write_bytes(b"\\x93NUMPY")
    >>> import numpy as np
    >>> read_bundle_file(p, np.load)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    features.exceptions.BundleError: cannot read .../e.npy (...)
    """
    try:
        return read(Path(path))
    except (OSError, EOFError, ValueError) as e:   # Arrow's errors are ValueErrors
        raise BundleError(f"cannot read {path} ({e.__class__.__name__}: {e}): the bundle "
                          f"is damaged; copy it again or rebuild it") from None
