"""Bundle files: written whole, and readable by whoever may read the bundle's folder."""
from __future__ import annotations

import os
import stat

import pytest

from recommender.bundle import Bundle, atomic_files, atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_files_written_atomically_get_the_usual_mode(tmp_path, umask_022):
    """A server running as another user than the build reads the bundle. Before, the
    manifest (and every model file written through the same helper) was created by
    mkstemp with mode 0600, so such a server could not open it."""
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    atomic_write_text(tmp_path / "rules.toml", "")
    with atomic_files(tmp_path / "m.bin", tmp_path / "m.json") as (w, js):
        w.write_bytes(b"w")
        js.write_text("{}")
    for p in (b.path("manifest.json"), tmp_path / "rules.toml", tmp_path / "m.bin",
              tmp_path / "m.json"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name


def test_a_failed_block_leaves_the_old_files_and_no_temporaries(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_files(tmp_path / "m.bin", tmp_path / "m.json") as (w, js):
            w.write_bytes(b"new")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]
    assert (tmp_path / "m.bin").read_bytes() == b"old"


@pytest.mark.parametrize("text, says", [
    ("[]", "holds an array, not a JSON object"),
    ("3", "holds a number, not a JSON object"),
    ('{"schema_version": 1, "stages": []}', "'stages' is an array"),
    ('{"schema_version": 1, "stages": null}', "'stages' is null"),
    ('{"schema_version": 1, "config": "x"}', "'config' is a string"),
    ('{"schema_version": 1, "metrics": 2}', "'metrics' is a number"),
    ('{"schema_version": 1, "stages": {"graph": 3}}', "record of stage 'graph'"),
    ('{"schema_version": 1, "image_root": 5}', "'image_root' is 5"),
])
def test_a_manifest_not_shaped_as_one_is_refused_naming_the_file(tmp_path, text, says):
    """Before, a manifest.json of valid JSON but not an object ([] or 3) raised
    AttributeError from Bundle.open, and a list or number where the stage records,
    config or image root belong raised AttributeError or TypeError later (saving,
    loading, the image root): a traceback from every mixmatch command."""
    from features.exceptions import BundleError

    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match=str(tmp_path / "manifest.json")) as err:
        Bundle.open(tmp_path)
    assert says in str(err.value)


def test_a_well_formed_manifest_still_opens(tmp_path):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=tmp_path, config={"a": 1})
    b.record_stage("graph", inputs_hash="h", outputs=[])
    again = Bundle.open(b.root)
    assert again.image_root == tmp_path and again.stage_record("graph")["inputs_hash"] == "h"


def test_changed_stage_outputs_names_each_stage_s_replaced_or_missing_files(tmp_path):
    # what a server reports on load: the bundle on disk is not what its manifest says
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    for f in ("m.txt", "c.npz", "g.npy"):
        b.path(f).write_text(f)
    b.record_stage("compatibility", inputs_hash="a", outputs=["m.txt", "c.npz"])
    b.record_stage("graph", inputs_hash="b", outputs=["g.npy"])
    assert Bundle.open(b.root).changed_stage_outputs() == {}
    b.path("c.npz").write_text("from another bundle")
    b.path("g.npy").unlink()
    assert Bundle.open(b.root).changed_stage_outputs() == {
        "compatibility": ["c.npz"], "graph": ["g.npy"]}


def test_changed_stage_outputs_of_records_without_hashes_checks_existence_only(tmp_path):
    # a bundle built before output_hashes were kept (the MANGO one): nothing to compare
    # a file's bytes with, so a rewritten file is not called changed; a lost one is
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    for f in ("m.txt", "g.npy"):
        b.path(f).write_text(f)
    b.record_stage("compatibility", inputs_hash="a", outputs=["m.txt"])
    b.record_stage("graph", inputs_hash="b", outputs=["g.npy"])
    for rec in b.manifest["stages"].values():
        del rec["output_hashes"]
    b.save()
    b.path("m.txt").write_text("another model")
    assert Bundle.open(b.root).changed_stage_outputs() == {}
    b.path("g.npy").unlink()
    assert Bundle.open(b.root).changed_stage_outputs() == {"graph": ["g.npy"]}


def _catalogue(b, paths, ok=None):
    import pandas as pd

    cols = {"item_id": [f"i{k}" for k in range(len(paths))], "image_path": paths}
    if ok is not None:
        cols["image_ok"] = ok
    pd.DataFrame(cols).to_parquet(b.path("catalog.parquet"))


@pytest.mark.parametrize("case, says", [
    ("folder gone", "the image folder {root} does not exist"),
    ("a file at its place", "the image folder {root} is not a folder"),
    ("folder empty", "none of the catalogue's 2 images is in the image folder {root}"),
    ("no image_ok column", "the image folder {root} does not exist"),
    ("one image there", None),
    ("every path empty", None),
    ("none found by the ingest", None),
    ("absolute paths only", None),
])
def test_images_gone_says_when_none_of_the_images_the_bundle_had_is_there(tmp_path, case,
                                                                          says):
    # what a stage reading the images is refused on (recommender.pipeline): a folder
    # moved away or unmounted, not a catalogue without images or a few deleted ones
    root = tmp_path / "data"
    b = Bundle.create(tmp_path / "b", source="demo", image_root=root)
    paths, ok = ["images/a.jpg", "images/b.jpg", ""], [True, True, False]
    if case == "every path empty":
        paths = ["", "", ""]
    elif case == "none found by the ingest":
        ok = [False, False, False]
    elif case == "absolute paths only":
        paths = [str(tmp_path / "elsewhere" / "a.jpg"), "", ""]
    _catalogue(b, paths, None if case == "no image_ok column" else ok)
    if case == "a file at its place":
        root.write_text("not a folder")
    elif case in ("folder empty", "one image there"):
        (root / "images").mkdir(parents=True)
        if case == "one image there":
            (root / "images" / "b.jpg").write_bytes(b"jpeg")
    assert b.images_gone() == (says.format(root=root) if says else None)


def test_images_gone_without_an_image_root_or_a_catalogue_is_none(tmp_path):
    b = Bundle.create(tmp_path / "b", source="demo", image_root=None)
    _catalogue(b, ["images/a.jpg"], [True])
    assert b.images_gone() is None
    b = Bundle.create(tmp_path / "c", source="demo", image_root=tmp_path / "gone")
    assert b.images_gone() is None
    _catalogue(b, [], [])   # a catalogue of no row
    assert b.images_gone() is None
