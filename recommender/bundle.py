"""The artifact bundle: one folder holding everything a build made, with a manifest.

Layout (paths relative to the bundle root)::

    manifest.json            schema version, package versions, config, stages, metrics
    catalog.parquet          the canonical catalogue (recommender.catalog)
    outfits.parquet          all known outfits (outfit_id, item_id)
    eval/                    held-out split: train_outfits.parquet, fitb.jsonl, ...
    features/features.parquet, features/embeddings.npy (row-aligned with item_id)
    models/                  attribute network (state_dict + config json),
                             keypoint detector, compatibility model (LightGBM text)
    graph/                   garment graph edges and serving arrays
    rules/                   merchandiser rules files
    serving/                 the server's events database and control file, when it
                             runs without DATA_DIR (no stage reads or writes it)

The manifest's ``image_root`` says where ``image_path`` values are relative to.
Each stage records what it read (a hash) and wrote, so re-running a finished
stage on the same inputs is skipped (see :mod:`recommender.pipeline`).

One process at a time writes a bundle: :func:`write_lock` holds ``.write.lock``
in the folder for a whole run of stages (an advisory lock, no bundle output).

Examples
--------
>>> import tempfile
>>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root="/tmp")
>>> b.manifest["schema_version"] == BUNDLE_SCHEMA_VERSION
True
>>> Bundle.open(b.root).image_root
PosixPath('/tmp')
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import platform
import shlex
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

from features.exceptions import BundleBeingBuilt, BundleError, NotFoundError
from features.files import (CONTENT_HASHES, ContentHashes,  # noqa: F401
                            atomic_files, atomic_write_text, content_hashes, file_hash,
                            read_bundle_file)  # (re-exported)

BUNDLE_SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
#: the writers' lock file (:func:`write_lock`): not a bundle output, in no hash
LOCK = ".write.lock"
#: the server's data folder when it is given no DATA_DIR (events database, reload
#: control file): written by a running server, not by a stage, in no file stamp
SERVING_DIR = "serving"
#: the bundle's cache folder: decoded images, descriptor tables, and the images'
#: content-hash index (:data:`features.files.CONTENT_HASHES`); none of it a stage output
CACHE_DIR = "cache"

#: write locks this process holds: (bundle folder, thread) -> [lock file, depth]
_HELD: dict[tuple[str, int], list] = {}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _holder_text(text: str) -> str:
    """``pid N on HOST since T (COMMAND)`` from a lock file's content."""
    try:
        h = json.loads(text)
        return (f"pid {h['pid']} on {h['host']} since {h['since']} "
                f"({h.get('command') or 'command unknown'})")
    except (ValueError, TypeError, KeyError):
        # the holder took the lock and has not written its name yet
        return "a process that has not recorded itself yet"


@contextlib.contextmanager
def write_lock(root: str | os.PathLike, *, command: str | None = None) -> Iterator[None]:
    """Hold the bundle ``root``'s write lock for the block, or raise BundleError at once
    naming the process that holds it.

    Two builds (``mixmatch build``, ``features``, ``train``, ``graph``) writing one
    folder would mix their stages' files and overwrite each other's manifest, so the
    second is refused rather than made to wait behind hours of training. The lock is
    ``flock`` on ``.write.lock``: the kernel drops it when its holder exits, killed
    included, so no stale lock outlives a crash. Readers (the engine, the server)
    never take it; they rely on the manifest's ``building`` mark. Taking it again in
    the same thread (a build calling :func:`~recommender.pipeline.run_stages`) nests.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> with write_lock(root), write_lock(root):  # nested in one thread: one lock
    ...     pass
    """
    root = Path(root)
    key = (os.path.realpath(root), threading.get_ident())
    held = _HELD.get(key)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        # "a+": opening must not erase the holder's name before we hold the lock
        f = open(root / LOCK, "a+", encoding="utf-8")
    except OSError as exc:
        raise BundleError(f"cannot write to bundle {root} ({exc.__class__.__name__}: "
                          f"{exc})") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise BundleError(
                f"bundle {root} is being written by another process: "
                f"{_holder_text(f.read())}. Two writers would mix their files; run this "
                f"once that one has finished (serving the bundle is not blocked)") from None
        if command is None:
            command = shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
        f.truncate(0)
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "command": command, "since": _now()}))
        f.flush()
        _HELD[key] = [f, 1]
        try:
            yield
        finally:
            del _HELD[key]
            f.truncate(0)  # a copy of the folder carries no stale holder
    finally:
        f.close()  # releases the lock


def package_versions() -> dict[str, str]:
    """Versions of the packages whose formats a bundle depends on."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("mixmatch", "numpy", "pandas", "pyarrow", "lightgbm", "torch",
                 "networkx", "scikit-learn", "pillow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def image_fingerprint(paths: Iterable[str], root: Path | None,
                      index: ContentHashes | None = None) -> dict:
    """Hash of (path, content hash) of every referenced image: changes when an image
    is replaced, added or removed (relative paths are under ``root``); a file whose
    bytes did not change keeps its fingerprint whatever its mtime (a copy without
    ``-p``, a checkout, an unpacked archive, a re-provisioned data folder).

    The content hashes come from ``index`` (:class:`features.files.ContentHashes`;
    the bundle's, :meth:`Bundle.content_hashes`, or None: the process's in-memory
    one), which hashes a file only when its size, mtime, ctime or inode changed
    since it was last hashed: a no-op build stats the images and reads none.
    Fingerprints before content hashes were on (size, mtime): a bundle built then
    reruns its image stages once.

    A photo with an EXIF tag that turns it adds the tag, and a file of a kind whose
    decoding changed adds that (:func:`features.imaging.decoding_stamp`): stages that
    ran before read it otherwise (lying on its side, a cut-out on black), and rerun
    once; a catalogue without such files (MANGO's JPEGs) keeps its fingerprint, so
    its stages stay current.
    """
    from features.imaging import decoding_stamp

    index = index if index is not None else content_hashes(None)
    h = hashlib.sha256()
    n = 0
    for p in sorted(set(p for p in paths if isinstance(p, str) and p)):
        full = Path(p) if Path(p).is_absolute() or root is None else Path(root) / p
        digest = index.digest(full)
        if digest is None:
            h.update(f"{p}\tmissing\n".encode())
        else:
            h.update(f"{p}\t{digest}{decoding_stamp(full)}\n".encode())
        n += 1
    index.save()
    return {"n": n, "hash": h.hexdigest()[:16]}


def json_hash(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def images_gone_from(root: str | os.PathLike, images: list[str]) -> str | None:
    """Why none of ``images`` (paths relative to ``root``) can be read at ``root``: the
    folder does not exist, is not a folder, or holds none of them; None when one is
    there, or when there is none to look for. What :meth:`Bundle.images_gone` says
    of a bundle, and a build of what its ingest will record, before that runs.

    >>> images_gone_from("/nowhere", ["a.jpg"]), images_gone_from("/nowhere", [])
    ('the image folder /nowhere does not exist', None)
    """
    if not images:
        return None
    root = Path(root)
    if not root.is_dir():
        return (f"the image folder {root} does not exist" if not root.exists()
                else f"the image folder {root} is not a folder")
    # os.path, not Path: a folder holding none of MANGO's 9,222 images took
    # 0.8-0.9 s to tell instead of 1.9-2.3 s (a busy 2-core machine)
    if any(os.path.isfile(os.path.join(root, p)) for p in images):
        return None
    return (f"none of the catalogue's {len(images)} image{'s' if len(images) > 1 else ''} "
            f"is in the image folder {root}")


#: manifest fields read as mappings (stage records, metrics, the build config)
_MAPPING_FIELDS = ("stages", "metrics", "config")


def _json_kind(value: Any) -> str:
    return ("null" if value is None else "a boolean" if isinstance(value, bool)
            else "a number" if isinstance(value, (int, float))
            else "a string" if isinstance(value, str) else "an array")


def _check_manifest(mpath: Path, manifest: Any) -> None:
    """BundleError naming ``mpath`` when the manifest, valid JSON, is not shaped as one:
    read with ``.get`` and ``Path(...)`` on open, save and load, a list or a number
    there raised AttributeError or TypeError (a traceback from every command)."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath} holds {_json_kind(manifest)}, not a JSON "
                          f"object: not a bundle manifest; rebuild the bundle")
    for key in _MAPPING_FIELDS:
        value = manifest.get(key, {})
        if not isinstance(value, dict):
            raise BundleError(f"{mpath}: {key!r} is {_json_kind(value)}; "
                              f"allowed: an object")
    for name, rec in manifest.get("stages", {}).items():
        if not isinstance(rec, dict):
            raise BundleError(f"{mpath}: the record of stage {name!r} is "
                              f"{_json_kind(rec)}; allowed: an object")
    root = manifest.get("image_root")
    if root is not None and not isinstance(root, str):
        raise BundleError(f"{mpath}: 'image_root' is {root!r}; allowed: a path "
                          f"(a string) or null")


class Bundle:
    """A bundle folder and its manifest. Use :meth:`create` or :meth:`open`."""

    def __init__(self, root: str | os.PathLike, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        #: set while a dry run reads the bundle: nothing may be written into it, the
        #: images' content-hash index included (:meth:`content_hashes`)
        self.read_only = False

    # -- construction -------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, *, source: str,
               image_root: str | os.PathLike | None, config: dict | None = None) -> "Bundle":
        """Open ``root`` if it holds a bundle, else start a new one there."""
        root = Path(root)
        if (root / MANIFEST).is_file():
            b = cls.open(root)
            b.manifest["source"] = source
            # None keeps the recorded root: the ingest stage sets it, and a re-run that
            # skips ingest must not erase it.
            if image_root is not None:
                b.manifest["image_root"] = str(image_root)
            if config is not None:
                b.manifest["config"] = config
            b.save()
            return b
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "schema_version": BUNDLE_SCHEMA_VERSION,
            "bundle_version": None,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": source,
            "image_root": str(image_root) if image_root else None,
            "versions": package_versions(),
            "config": config or {},
            "stages": {},
            "metrics": {},
            "data_hashes": {},
        }
        b = cls(root, manifest)
        b.save()
        return b

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Bundle":
        """Open an existing bundle, checking its schema version."""
        root = Path(root)
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise NotFoundError(f"no bundle at {root} (no {MANIFEST})", field="bundle",
                                value=str(root))
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise BundleError(f"{mpath} is not valid JSON: {exc}") from exc
        _check_manifest(mpath, manifest)
        version = manifest.get("schema_version")
        if version != BUNDLE_SCHEMA_VERSION:
            raise BundleError(f"bundle {root} has schema_version {version!r}; this "
                              f"mixmatch reads schema_version {BUNDLE_SCHEMA_VERSION}")
        return cls(root, manifest)

    def save(self) -> None:
        """Write the manifest atomically; ``bundle_version`` hashes the stage records."""
        self.manifest["bundle_version"] = json_hash(
            {k: v.get("outputs_hash") for k, v in self.manifest.get("stages", {}).items()})
        atomic_write_text(self.root / MANIFEST,
                          json.dumps(self.manifest, indent=2, sort_keys=True, default=str))

    # -- paths ---------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        """Path inside the bundle (not created)."""
        return self.root.joinpath(*parts)

    def write_lock(self, *, command: str | None = None):
        """:func:`write_lock` of this bundle's folder."""
        return write_lock(self.root, command=command)

    @property
    def image_root(self) -> Path | None:
        r = self.manifest.get("image_root")
        return Path(r) if r else None

    @property
    def version(self) -> str:
        return str(self.manifest.get("bundle_version"))

    def catalog_images(self) -> dict | None:
        """:func:`image_fingerprint` of the catalogue's images (None: no catalogue).

        In the inputs of every stage that reads the images: an image replaced at
        the same path leaves ``catalog.parquet`` unchanged, so its hash alone would
        let those stages skip with what they measured on the old picture."""
        cp = self.path("catalog.parquet")
        if not cp.is_file():
            return None
        import pandas as pd

        paths = read_bundle_file(cp, lambda p: pd.read_parquet(p, columns=["image_path"])
                                 )["image_path"]
        return image_fingerprint(paths, self.image_root, self.content_hashes())

    def images_gone(self) -> str | None:
        """Why the catalogue's images are not where the manifest's ``image_root``
        says (``"the image folder R does not exist"``, or ``"none of the
        catalogue's N images is in the image folder R"``), or None when they are:
        :func:`images_gone_from` of the root and :meth:`images_had`.

        Only images the bundle had count: rows with a relative ``image_path`` that
        the ingest found (``image_ok``; an ingest without ``check_images`` flags
        every row with a path). A catalogue without images (every path empty),
        or whose ingest found none, has none to lose, and one image found is
        enough: a stage whose images moved or whose folder is unmounted would see
        every one missing, while a few deleted images are that stage's to flag.
        Stops at the first image found: one ``stat`` on a bundle whose images
        are there.

        >>> import tempfile, pandas as pd
        >>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root="/nowhere")
        >>> b.images_gone() is None   # no catalogue yet
        True
        >>> pd.DataFrame({"image_path": ["a.jpg", ""], "image_ok": [True, False]}
        ...              ).to_parquet(b.path("catalog.parquet"))
        >>> b.images_gone()
        'the image folder /nowhere does not exist'
        >>> pd.DataFrame({"image_path": ["", ""], "image_ok": [False, False]}
        ...              ).to_parquet(b.path("catalog.parquet"))
        >>> b.images_gone() is None   # a catalogue without images
        True
        """
        root = self.image_root
        if root is None:
            return None
        return images_gone_from(root, self.images_had())

    def images_had(self) -> list[str]:
        """The relative ``image_path`` of every catalogue row whose image its ingest
        found (``image_ok``, where the catalogue has that column): the images
        :meth:`images_gone` looks for; [] without a catalogue or an image."""
        cp = self.path("catalog.parquet")
        if not cp.is_file():
            return []
        import pandas as pd
        import pyarrow.parquet as pq

        cols = [c for c in ("image_path", "image_ok")
                if c in read_bundle_file(cp, pq.read_schema).names]
        if "image_path" not in cols:
            return []
        cat = read_bundle_file(cp, lambda p: pd.read_parquet(p, columns=cols))
        paths = cat["image_path"].fillna("").astype(str)
        had = (paths.str.len() > 0) & ~paths.map(os.path.isabs).astype(bool)
        if "image_ok" in cat.columns:
            had &= cat["image_ok"].fillna(False).astype(bool)
        return paths[had].tolist()

    def content_hashes(self) -> ContentHashes:
        """The images' content-hash index of this bundle
        (:func:`features.files.content_hashes` of its ``cache/``): a no-op build reads
        no image, a bundle copied with its cache hashes none again."""
        return content_hashes(self.path(CACHE_DIR), read_only=self.read_only)

    # -- stage records -------------------------------------------------------
    def stage_record(self, name: str) -> dict | None:
        return self.manifest.get("stages", {}).get(name)

    def record_stage(self, name: str, *, inputs_hash: str, outputs: list[str],
                     metrics: dict | None = None, extra: dict | None = None) -> None:
        """Record that stage ``name`` finished, with what it read and wrote."""
        hashes = {o: (file_hash(self.path(o)) if self.path(o).is_file() else None)
                  for o in outputs}
        # each file's hash kept too: what a later stage read of it is compared with
        # on load (stale_stages), without hashing a file again
        rec = {"inputs_hash": inputs_hash, "outputs": outputs,
               "outputs_hash": json_hash(hashes), "output_hashes": hashes,
               "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "metrics": metrics or {}}
        if extra:
            rec.update(extra)
        self.manifest.setdefault("stages", {})[name] = rec
        if metrics:
            self.manifest.setdefault("metrics", {})[name] = metrics
        self.save()

    def start_stage(self, name: str) -> None:
        """Mark the bundle as being built (stage ``name`` now) and drop the stage's
        record, saved before the stage writes anything: a run interrupted half way
        leaves its outputs half rewritten, and the old record (same inputs on
        ``--force``, or on a config changed back) would let the next build skip the
        stage as finished. Until :meth:`finish_build` the bundle's files may mix two
        builds (new features, the old model), so loading it for serving is refused
        (:meth:`check_complete`)."""
        # the stages started and not finished since the bundle was last complete: a
        # run of other stages must not clear the mark an interrupted one left
        unfinished = [n for n in self.unfinished_stages() if n != name] + [name]
        self.manifest["building"] = {
            "stage": name,
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "unfinished": unfinished}
        self.manifest.get("stages", {}).pop(name, None)
        self.manifest.get("metrics", {}).pop(name, None)
        self.save()

    @contextlib.contextmanager
    def stage_run(self, name: str) -> Iterator[None]:
        """:meth:`start_stage` for the block that runs stage ``name``.

        When the block raises having changed no file of the bundle (a stage refusing
        its inputs or a config value, a missing input file, Ctrl-C before it saved
        anything), the manifest is put back as it was on disk, the stage's record and
        the build mark included: the bundle holds what it held, and a bundle that
        served before still serves. A block that wrote anything leaves the mark, as
        its outputs may be half rewritten.

        >>> import tempfile
        >>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root=None)
        >>> try:
        ...     with b.stage_run("graph"):
        ...         raise ValueError("refused")
        ... except ValueError:
        ...     pass
        >>> Bundle.open(b.root).check_complete()  # not marked: nothing was written
        """
        mpath = self.path(MANIFEST)
        saved = mpath.read_text() if mpath.is_file() else None
        before = self._file_stamps()
        self.start_stage(name)
        try:
            yield
        except BaseException:
            if saved is not None and self._file_stamps() == before:
                atomic_write_text(mpath, saved)
                self.manifest = json.loads(saved)
            raise

    def _file_stamps(self) -> dict[str, tuple[int, int, int]]:
        """(inode, size, mtime) of every file in the bundle but the manifest: a file
        written in place changes its size or mtime, one renamed into place its inode."""
        out = {}
        for folder, dirs, names in os.walk(self.root):
            if folder == str(self.root):
                # a server logging exposures meanwhile is no write of the stage's
                dirs[:] = [d for d in dirs if d != SERVING_DIR]
            for n in names:
                p = os.path.join(folder, n)
                if (n in (MANIFEST, LOCK) and folder == str(self.root)
                        or n.startswith(f".{MANIFEST}.")
                        # a cache of the images' hashes, saved while reading inputs
                        or CONTENT_HASHES in n and folder == str(self.path(CACHE_DIR))):
                    continue
                try:
                    st = os.lstat(p)
                except FileNotFoundError:  # a temporary file going away meanwhile
                    continue
                out[os.path.relpath(p, self.root)] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return out

    def unfinished_stages(self) -> list[str]:
        """Stages started since the bundle was last complete and not recorded since
        (a mark from before the list was kept names only its last stage)."""
        building = self.manifest.get("building")
        if not building:
            return []
        if isinstance(building, dict):
            names = building.get("unfinished")
            if not isinstance(names, list):
                names = [building.get("stage")]
        else:
            names = [building]
        return [str(n) for n in names if n and self.stage_record(str(n)) is None]

    def finish_build(self, *, every_stage: bool = False) -> list[str]:
        """Clear the mark :meth:`start_stage` set once every stage started since the
        bundle was last complete has finished, or when ``every_stage`` (a build ran
        every stage of its source to the end); returns the stages still unfinished.

        Not whenever a run ends: after a build interrupted in ``features``, a
        ``mixmatch graph`` (or a run whose stages are all up to date) must not make
        loadable a bundle whose features are half rewritten and have no record.
        """
        pending = [] if every_stage else self.unfinished_stages()
        if not pending and self.manifest.pop("building", None) is not None:
            self.save()
        return pending

    def writer(self) -> dict | None:
        """The process writing this bundle now (``{"pid", "host", "command", "since"}``
        from its write lock file), or None. Read without taking the lock, which a
        reader must never hold (a build starting then would be refused): a holder
        empties the file when it lets go, and one killed before that is recognised as
        gone by its pid (on this host; another host's holder is taken at its word)."""
        try:
            text = self.path(LOCK).read_text(encoding="utf-8")
        except OSError:
            return None
        try:
            holder = json.loads(text) if text.strip() else None
            pid, host = int(holder["pid"]), str(holder["host"])
        except (ValueError, TypeError, KeyError):
            return None
        if host == socket.gethostname():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                pass  # alive, another user's
        return holder

    def check_complete(self) -> None:
        """Raise BundleError when a build is running in this bundle, or was interrupted
        or failed in it: its files may then belong to two different builds."""
        building = self.manifest.get("building")
        if building:
            stage = building.get("stage") if isinstance(building, dict) else building
            since = building.get("since") if isinstance(building, dict) else None
            holder = self.writer()
            if holder is not None:
                raise BundleBeingBuilt(
                    f"bundle {self.root} is being built (stage {stage!r} started {since}) "
                    f"by {_holder_text(json.dumps(holder))}: it loads once that build "
                    f"finishes")
            raise BundleError(
                f"bundle {self.root} is being built (stage {stage!r} started {since}), "
                f"or that build was interrupted or failed: its files may mix two builds. "
                f"It loads once a build into it finishes (re-run mixmatch build)")

    def stale_stages(self) -> list[str]:
        """Stages built from a file another stage has rewritten since: the graph
        after ``mixmatch train --stage compatibility`` alone, still scored by the
        model that is no longer in the bundle. Read from the manifest only (each
        record's ``reads``, the producers' ``output_hashes``), so every load can
        afford it; records made before those were kept say nothing.

        What ``mixmatch build`` would rerun for that reason (their inputs hash
        changed with the file); the stages after a stale one become stale only once
        it has been rebuilt.

        >>> import tempfile
        >>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root=None)
        >>> _ = b.path("m.txt").write_text("old")
        >>> b.record_stage("compatibility", inputs_hash="a", outputs=["m.txt"])
        >>> b.record_stage("graph", inputs_hash="b", outputs=[],
        ...                extra={"reads": {"m.txt": file_hash(b.path("m.txt"))}})
        >>> b.stale_stages()
        []
        >>> _ = b.path("m.txt").write_text("new")
        >>> b.record_stage("compatibility", inputs_hash="c", outputs=["m.txt"])
        >>> b.stale_stages()
        ['graph']
        """
        stages = self.manifest.get("stages", {})
        written: dict[str, tuple[str, Any]] = {}  # file -> (stage, hash it recorded)
        for name, rec in stages.items():
            hashes = rec.get("output_hashes")
            if isinstance(hashes, dict):
                written.update({f: (name, h) for f, h in hashes.items()})
        stale = []
        for name, rec in stages.items():
            reads = rec.get("reads")
            if not isinstance(reads, dict):
                continue
            if any(f in written and written[f][0] != name and written[f][1] != h
                   for f, h in reads.items()):
                stale.append(name)
        return sorted(stale)

    def changed_outputs(self, name: str) -> list[str]:
        """Outputs of stage ``name`` that are gone or no longer hold the bytes it
        recorded (``output_hashes``): a model copied in by hand over the stage's, a
        file cut short. A record made before those hashes were kept (an older bundle)
        is checked for its outputs' existence only.

        Hashing every output of a MANGO bundle (100 files, about 75 MB) takes about
        0.2 s with a warm page cache, little beside the inputs a no-op build hashes,
        so the bytes are compared rather than a size and mtime that a copy can keep.

        >>> import tempfile
        >>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root=None)
        >>> _ = b.path("m.txt").write_text("model")
        >>> b.record_stage("compatibility", inputs_hash="a", outputs=["m.txt"])
        >>> b.changed_outputs("compatibility")
        []
        >>> _ = b.path("m.txt").write_text("another model")
        >>> b.changed_outputs("compatibility")
        ['m.txt']
        """
        rec = self.stage_record(name) or {}
        hashes = rec.get("output_hashes")
        if not isinstance(hashes, dict):
            hashes = {}
        changed = []
        for o in rec.get("outputs", []):
            p = self.path(o)
            if not p.exists():
                changed.append(o)
            elif hashes.get(o) is not None and (not p.is_file()
                                                or file_hash(p) != hashes[o]):
                changed.append(o)
        return changed

    def changed_stage_outputs(self) -> dict[str, list[str]]:
        """:meth:`changed_outputs` of every recorded stage, for those with any (stage
        -> files): the bundle on disk is not the one its manifest describes, which a
        server reports on load (``/healthz``'s ``changed_outputs``) rather than serve
        a model copied in by hand, or a copy cut short, as the build it records.

        Unlike :meth:`stale_stages` this reads the files (about 0.1 s for a MANGO
        bundle's 80 MB, page cache warm): a copy keeps the manifest and can keep sizes.
        Records from before ``output_hashes`` was kept say only what is missing.

        >>> import tempfile
        >>> b = Bundle.create(tempfile.mkdtemp(), source="demo", image_root=None)
        >>> _ = b.path("m.txt").write_text("model")
        >>> b.record_stage("compatibility", inputs_hash="a", outputs=["m.txt"])
        >>> b.changed_stage_outputs()
        {}
        >>> _ = b.path("m.txt").write_text("another model")
        >>> b.changed_stage_outputs()
        {'compatibility': ['m.txt']}
        """
        out = {}
        for name in sorted(self.manifest.get("stages", {})):
            changed = self.changed_outputs(name)
            if changed:
                out[name] = changed
        return out

    def stage_is_current(self, name: str, inputs_hash: str) -> bool:
        """True when ``name`` finished on the same inputs and its outputs are still
        the files it wrote (:meth:`changed_outputs`): one replaced from outside would
        otherwise be kept, and served, under a record that calls it current."""
        rec = self.stage_record(name)
        return bool(rec and rec.get("inputs_hash") == inputs_hash
                    and not self.changed_outputs(name))
