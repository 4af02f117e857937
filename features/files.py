"""Files written whole and hashed: the low-level file helpers every stage shares.

A model or table a stage writes is read by a server that may be watching the folder,
so it is written beside its target and renamed into place (:func:`atomic_files`);
stage inputs are recognised by the hash of their bytes (:func:`file_hash`), and a
bundle file a stage or the server reads is named when it is damaged
(:func:`read_bundle_file`). These live in ``features`` because the perception stages
save their own models and read the bundle's tables, and ``features`` imports nothing
from ``recommender`` or ``api``; :mod:`recommender.bundle` re-exports them.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
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
