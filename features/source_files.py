"""Where a build's source files lie: the one place every stage asks.

A demo build reads the catalogue ``mixmatch demo`` wrote, and with it the FashionAI
label files the perception stages train on (``fashionai/keypoints.csv``,
``fashionai/attributes/<task>.csv``). That folder is the bundle's own ``source/``
unless the build was given ``--data DIR`` (a catalogue made elsewhere), which the
build records in its config. The stages read their label files through
:func:`source_file`, so they find them wherever the ingest stage found the catalogue
(they were read from ``BUNDLE/source`` whatever ``--data`` said: the keypoints stage
failed with ``BUNDLE/source/fashionai/keypoints.csv missing`` and the attribute
network trained without its keypoint regions and "maybe" labels).

Other sources (MANGO, your own CSV) ship no FashionAI labels in their data folder:
their stages look in the bundle's ``source/`` as before, where a user may put them.

Lives in ``features`` because the perception stages use it, and ``features`` imports
nothing from ``recommender``; :mod:`recommender.ingest` and :mod:`recommender.build`
use it too.

>>> import types
>>> b = types.SimpleNamespace(manifest={}, path=lambda *p: Path("/bundle", *p))  # a Bundle
>>> str(source_file(b, {"source": "demo"}, KEYPOINTS_CSV))
'/bundle/source/fashionai/keypoints.csv'
>>> str(source_file(b, {"source": "demo", "data": "/data/demo"}, KEYPOINTS_CSV))
'/data/demo/fashionai/keypoints.csv'
>>> str(source_file(b, {"source": "mango", "data": "/data/mango"}, KEYPOINTS_CSV))
'/bundle/source/fashionai/keypoints.csv'
"""
from __future__ import annotations

from pathlib import Path

from features.exceptions import BundleError, InputError

#: The bundle's own source folder (relative to the bundle): where a demo build
#: generates its catalogue when no ``--data`` is given.
SOURCE_DIR = "source"
#: The FashionAI keypoint CSV of a FashionAI-format source, relative to its folder;
#: its ``image_id`` values are image paths relative to that folder.
KEYPOINTS_CSV = "fashionai/keypoints.csv"
#: The FashionAI attribute label files (``<task>.csv``, y/m/n strings).
ATTRIBUTE_DIR = "fashionai/attributes"


def build_config(bundle, config: dict | None = None) -> dict:
    """``config`` (a stage's ``ctx.config``), or when None the build config the
    bundle's manifest recorded ({} when none): what a command given only the bundle
    (``mixmatch evaluate``) reads."""
    if config is None:
        return bundle.manifest.get("config") or {}
    return config


def source_dir(bundle, config: dict | None = None) -> Path:
    """The folder the build's source files are in: a demo build's ``data`` folder
    (``--data``) when it names one, else the bundle's own ``source/``.

    ``config`` is the build config (a stage's ``ctx.config``); None reads the one
    the bundle's manifest recorded. A config naming no source is a demo build's, as
    the ingest stage reads it.
    """
    cfg = build_config(bundle, config)
    source = cfg.get("source") or "demo"
    data = cfg.get("data")
    if source == "demo" and data:
        return Path(data)
    return bundle.path(SOURCE_DIR)


def source_file(bundle, config: dict | None, name: str, setting: str | None = None
                ) -> Path:
    """The path of the source file ``name`` (:data:`KEYPOINTS_CSV`,
    :data:`ATTRIBUTE_DIR`) in :func:`source_dir`; or ``setting``, a stage config's
    own path for it (relative to the bundle, or absolute), when one is given."""
    if setting:
        return bundle.path(setting)
    return source_dir(bundle, config) / name


def require_source_file(bundle, config: dict | None, name: str, *, stage: str,
                        key: str, why: str, setting: str | None = None) -> Path:
    """:func:`source_file`, refused by name when it is not there.

    ``stage`` and ``key`` name the stage setting that can point elsewhere
    (``[stages.<stage>] <key>``), ``why`` what the stage needs the file for. A path
    the config gave is an :class:`InputError` naming the setting; the source's own
    file missing is a :class:`BundleError` naming the file and the source folder.
    """
    path = source_file(bundle, config, name, setting)
    if path.is_file():
        return path
    if setting:
        raise InputError(f"[stages.{stage}] {key} = {setting!r}: {path} missing ({why})",
                         field=f"stages.{stage}.{key}", value=setting)
    folder = source_dir(bundle, config)
    where = ("which does not exist" if not folder.is_dir() else
             "which has no such file")
    raise BundleError(f"{path} missing: {why}, read from the source folder {folder} "
                      f"({where}; `mixmatch demo` writes {name} there), or set "
                      f"[stages.{stage}] {key}")
