"""The mask contact sheet's command line: counts refused by name before any masking."""
import numpy as np
import pytest
from PIL import Image

from features.contact_sheet import main, make_sheet
from features.exceptions import InputError


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for i in range(4):
        a = np.full((60, 40, 3), 245, np.uint8)
        a[10:50, 8:32] = (30 + 40 * i, 60, 90)  # a dark garment on a light packshot
        Image.fromarray(a).save(d / f"p{i}.png")
    return d


def test_the_sheet_shows_the_n_worst(images, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["--images", str(images), "--n", "3", "--out", str(out)]) == 0
    assert "4 images masked; sheet of the 3 worst" in capsys.readouterr().out
    assert out.is_file()


@pytest.mark.parametrize("option, value", [("--n", "-2"), ("--n", "0"),
                                           ("--sample", "-1"), ("--sample", "0")])
def test_a_count_below_one_is_refused_by_name(images, tmp_path, capsys, option, value):
    # before: --n -2 drew a sheet of all but the 2 worst (rows[:-2]) and exited 0;
    # --sample -1 was a numpy traceback
    out = tmp_path / "sheet.png"
    with pytest.raises(SystemExit) as exc:
        main(["--images", str(images), option, value, "--out", str(out)])
    assert exc.value.code == 2
    assert f"argument {option}: must be a whole number >= 1, got '{value}'" in (
        capsys.readouterr().err)
    assert not out.exists()


def test_a_missing_images_folder_is_refused_by_name(tmp_path, capsys):
    # before: FileNotFoundError traceback from iterdir
    with pytest.raises(SystemExit) as exc:
        main(["--images", str(tmp_path / "nope"), "--out", str(tmp_path / "s.png")])
    assert exc.value.code == 2
    assert f"--images: no such folder: {tmp_path / 'nope'}" in capsys.readouterr().err


def test_make_sheet_refuses_a_count_below_one(images):
    with pytest.raises(InputError, match="n must be a whole number >= 1.*got -1"):
        make_sheet(sorted(images.iterdir()), -1)


def test_make_sheet_holds_only_the_n_worst_images_while_it_masks(images, monkeypatch):
    # before: every image and its mask were kept until the end, for n of them shown
    # (400 MANGO packshots by default, any --sample asked for: ~0.4 MB each)
    import weakref

    import features.contact_sheet as cs

    live = [0]
    most = []
    real_load, real_mask = cs.load_rgb_alpha, cs.garment_mask

    def load(p):
        a, alpha = real_load(p)
        live[0] += 1
        weakref.finalize(a, lambda: live.__setitem__(0, live[0] - 1))
        return a, alpha

    def mask(rgb, alpha=None):
        most.append(live[0])
        return real_mask(rgb, alpha=alpha)

    monkeypatch.setattr(cs, "load_rgb_alpha", load)
    monkeypatch.setattr(cs, "garment_mask", mask)
    paths = sorted(images.iterdir()) * 5
    sheet, rows = make_sheet(paths, 2)
    assert max(most) <= 3, most      # the 2 kept and the one being masked
    # the same rows as masking all and sorting: the worst first, ties in path order
    qualities = [real_mask(real_load(p)[0], alpha=real_load(p)[1]).quality for p in paths]
    want = sorted(range(len(paths)), key=lambda i: qualities[i])[:2]
    assert [p for _, p, *_ in rows] == [paths[i] for i in want]
    assert [q for q, *_ in rows] == [qualities[i] for i in want]


def test_a_cutout_on_the_sheet_is_masked_by_its_alpha(tmp_path):
    # the features stage masks a cut-out by its transparency; the sheet showed the
    # colour-only mask (nothing, for a white garment once composited on white)
    a = np.zeros((60, 40, 4), np.uint8)
    a[10:50, 8:32] = (255, 255, 255, 255)      # a white garment on full transparency
    Image.fromarray(a).save(tmp_path / "cutout.png")
    _, rows = make_sheet([tmp_path / "cutout.png"], 1)
    (q, _, _, r), = rows
    assert r.method == "alpha" and q > 0.8
    assert int(r.mask.sum()) == 40 * 24
