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
