"""Images known by their content: the content-hash index (features.files.ContentHashes)
and the three cache keys built on it (the bundle's image fingerprint, the features'
part folder, the attribute caches' file stamps).

Before, the keys were on each image's size and mtime: a data folder re-provisioned,
copied without ``-p`` or unpacked (same bytes, new mtimes) reran every image stage
of a bundle (MANGO: the attribute network's 28 minutes and the features' 7).
"""
from __future__ import annotations

import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from features import files
from features.attributes.data import file_stamp
from features.extract import _signature
from features.files import CONTENT_HASHES, ContentHashes, content_hashes, file_hash
from recommender.bundle import image_fingerprint
from tests.features.synth import packshot


def _images(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img, _ = packshot(shape="rect", fg=(40 * i, 60, 150), seed=i)
        Image.fromarray(img).save(folder / f"i{i}.jpg", quality=92)
        paths.append(folder / f"i{i}.jpg")
    return paths


@pytest.fixture(autouse=True)
def settled(monkeypatch):
    """Files written by a test are recorded at once: the index otherwise leaves out a
    file changed in the last seconds (test_a_file_written_just_now_is_not_recorded)."""
    monkeypatch.setattr(files, "RACY_SECONDS", 0.0, raising=False)


def _settle(paths, when=1_600_000_000):
    """Set the files' times well in the past and let the clock move on, so that a
    later write changes the ctime (it ticks every few ms)."""
    for p in paths:
        os.utime(p, (when, when))
    time.sleep(0.05)


# the three keys, called as the stages call them (no index given: the process's)
KEYS = {
    "image_fingerprint": lambda paths: image_fingerprint([str(p) for p in paths],
                                                         None)["hash"],
    "features part folder": lambda paths: _signature(
        [(f"i{k}", str(p), "top", "Shirt") for k, p in enumerate(paths)],
        {"max_side": 512, "chunk_size": 64}),
    "file_stamp": lambda paths: "".join(file_stamp(p) for p in paths),
}


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_touching_every_image_keeps_the_key(tmp_path, key):
    # before: the key held each image's mtime, so `touch`, a copy without -p or a
    # re-provisioned data folder made every image stage of a bundle run again
    paths = _images(tmp_path / "images")
    _settle(paths)
    before = key(paths)
    for p in paths:
        os.utime(p, (2_000_000_000, 2_000_000_000))
    assert key(paths) == before


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_a_same_size_rewrite_with_its_mtime_restored_changes_the_key(tmp_path, key):
    # entries are kept however recent the file (`settled`: the index is in use, not
    # bypassed): only the ctime tells the rewrite apart
    paths = _images(tmp_path / "images")
    _settle(paths)
    before = key(paths)
    st = os.stat(paths[1])
    data = bytearray(paths[1].read_bytes())
    data[len(data) // 2] ^= 0xFF                     # one byte of the scan data
    with open(paths[1], "r+b") as f:                 # in place: same inode
        f.write(data)
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(paths[1])
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size, st.st_mtime_ns, st.st_ino)
    assert key(paths) != before


@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_a_replaced_or_removed_image_changes_the_key(tmp_path, key):
    paths = _images(tmp_path / "images")
    before = key(paths)
    img, _ = packshot(shape="tshirt", seed=7)
    Image.fromarray(img).save(paths[0], quality=92)
    replaced = key(paths)
    paths[2].unlink()
    assert len({before, replaced, key(paths)}) == 3


def test_an_image_is_hashed_once_while_its_stat_is_unchanged(tmp_path, monkeypatch):
    paths = _images(tmp_path / "images")
    _settle(paths)
    hashed = []
    monkeypatch.setattr(files, "file_hash", lambda p: hashed.append(p) or file_hash(p))
    index_file = tmp_path / "cache" / CONTENT_HASHES
    index = ContentHashes(index_file)
    digests = [index.digest(p) for p in paths]
    assert digests == [file_hash(p) for p in paths] and len(hashed) == 3
    assert index.save() and not index.save()   # written once, only when it changed
    assert [ContentHashes(index_file).digest(p) for p in paths] == digests
    assert len(hashed) == 3                    # a later process reads no image
    os.utime(paths[0], (1_700_000_000, 1_700_000_000))
    assert index.digest(paths[0]) == digests[0] and len(hashed) == 4
    assert index.digest(tmp_path / "images" / "gone.jpg") is None


def test_a_file_written_just_now_is_not_recorded(tmp_path, monkeypatch):
    # file times tick coarsely: a same-size rewrite in the same tick would keep every
    # stat field as recorded, so a file that just changed is hashed again next time
    monkeypatch.setattr(files, "RACY_SECONDS", 2.0)
    (p,) = _images(tmp_path / "images", n=1)
    index = ContentHashes(tmp_path / CONTENT_HASHES)
    assert index.digest(p) == file_hash(p) and len(index) == 0
    assert not index.save()


@pytest.mark.parametrize("damage", ["garbage", "empty", "no format mark", "other columns"])
def test_a_damaged_or_old_index_file_is_rebuilt(tmp_path, damage):
    paths = _images(tmp_path / "images")
    _settle(paths)
    index_file = tmp_path / CONTENT_HASHES
    if damage == "garbage":
        index_file.write_bytes(b"PAR1 half a file")
    elif damage == "empty":
        index_file.write_bytes(b"")
    elif damage == "no format mark":
        pq.write_table(pa.table({"path": [str(paths[0])], "size": [1], "mtime_ns": [1],
                                 "ctime_ns": [1], "ino": [1], "digest": ["x"]}), index_file)
    else:
        pq.write_table(pa.table({"path": [str(paths[0])]}).replace_schema_metadata(
            {"mixmatch_content_hashes": files.CONTENT_HASHES_FORMAT}), index_file)
    index = ContentHashes(index_file)
    assert len(index) == 0
    assert index.digest(paths[0]) == file_hash(paths[0])
    assert index.save()
    assert len(ContentHashes(index_file)) == 1


def test_an_index_that_cannot_be_written_is_kept_in_memory(tmp_path):
    # a read-only bundle (here: its cache folder's place taken by a file, which stops
    # root too) is no error: the hashes serve this process
    paths = _images(tmp_path / "images")
    _settle(paths)
    (tmp_path / "cache").write_text("not a folder")
    index = ContentHashes(tmp_path / "cache" / CONTENT_HASHES)
    assert index.digest(paths[0]) == file_hash(paths[0]) and len(index) == 1
    assert not index.save()
    assert index.digest(paths[0]) == file_hash(paths[0])


def test_the_shared_index_takes_in_what_another_process_saved(tmp_path):
    paths = _images(tmp_path / "images")
    _settle(paths)
    shared = content_hashes(tmp_path / "cache")
    shared.digest(paths[0])
    assert shared.save()
    other = ContentHashes(tmp_path / "cache" / CONTENT_HASHES)   # another process
    other.digest(paths[1])
    assert other.save()
    again = content_hashes(tmp_path / "cache")
    assert again is shared and len(again) == 2
    assert sorted(pq.read_table(tmp_path / "cache" / CONTENT_HASHES).column("path")
                  .to_pylist()) == sorted(map(str, paths[:2]))


def _indexed(index_file):
    return sorted(pq.read_table(index_file).column("path").to_pylist())


def _saved_index(tmp_path, n, index_file):
    """``n`` settled images under ``tmp_path/images``, hashed into an index at
    ``index_file`` that is then saved: (paths, index)."""
    paths = _images(tmp_path / "images", n=n)
    _settle(paths)
    index = ContentHashes(index_file)
    for p in paths:
        index.digest(p)
    assert index.save()
    return paths, index


def test_saving_drops_the_entries_of_files_deleted_or_moved_away(tmp_path):
    # before: every path ever hashed stayed in the index file for good; a data folder
    # moved or images deleted left their entries behind, read on every build
    index_file = tmp_path / "cache" / CONTENT_HASHES
    paths, index = _saved_index(tmp_path, 4, index_file)
    assert _indexed(index_file) == sorted(map(str, paths))
    paths[3].unlink()
    (tmp_path / "images").rename(tmp_path / "moved")
    moved = [tmp_path / "moved" / p.name for p in paths[:3]]
    assert [index.digest(p) for p in moved] == [file_hash(p) for p in moved]
    assert index.save()
    assert _indexed(index_file) == sorted(map(str, moved)) and len(index) == 3
    assert len(ContentHashes(index_file)) == 3


def test_saving_drops_an_entry_whose_file_changed_and_keeps_the_racy_guard(tmp_path,
                                                                        monkeypatch):
    index_file = tmp_path / CONTENT_HASHES
    paths, index = _saved_index(tmp_path, 3, index_file)
    img, _ = packshot(shape="tshirt", seed=7)
    Image.fromarray(img).save(paths[0], quality=92)   # its entry can never match again
    monkeypatch.setattr(files, "RACY_SECONDS", 2.0)
    (new,) = _images(tmp_path / "new", n=1)
    assert index.digest(new) == file_hash(new)        # written just now: not recorded
    monkeypatch.setattr(files, "RACY_SECONDS", 0.0)
    (extra,) = _images(tmp_path / "extra", n=1)
    assert index.digest(extra) == file_hash(extra)    # recorded: the index is saved
    assert index.save()
    assert _indexed(index_file) == sorted(map(str, [*paths[1:], extra]))
    assert index.digest(paths[0]) == file_hash(paths[0])   # hashed again, not stale


def test_a_read_only_index_drops_nothing_and_writes_nothing(tmp_path):
    # a dry run reads the bundle's index and hashes what changed, but never writes it
    index_file = tmp_path / CONTENT_HASHES
    paths, _ = _saved_index(tmp_path, 2, index_file)
    before = index_file.read_bytes()
    paths[0].unlink()
    (new,) = _images(tmp_path / "new", n=1)
    _settle([new])
    dry = ContentHashes(index_file, read_only=True)
    assert dry.digest(new) == file_hash(new)
    assert not dry.save()
    assert index_file.read_bytes() == before and _indexed(index_file) == sorted(
        map(str, paths))


def test_an_unchanged_index_is_not_rewritten_to_prune_it(tmp_path):
    # pruning rides along with a save that has something new to write: a no-op build
    # stats the images it uses and writes nothing
    index_file = tmp_path / CONTENT_HASHES
    paths, _ = _saved_index(tmp_path, 2, index_file)
    paths[0].unlink()
    again = ContentHashes(index_file)
    assert again.digest(paths[1]) == file_hash(paths[1])
    assert not again.save() and len(_indexed(index_file)) == 2
