"""``mixmatch demo`` end to end through the real command line."""
from __future__ import annotations

import pytest

from api.cli import main


def test_cli_demo(tmp_path, capsys):
    rc = main(["demo", "--out", str(tmp_path), "--items", "24", "--seed", "2",
               "--outfits", "10", "--fashionai-keypoints", "none"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "items: 24" in out and "outfits: 10" in out
    assert (tmp_path / "catalog.csv").is_file()


def test_cli_demo_refuses_a_negative_image_sample(tmp_path, capsys):
    # before: --image-sample -1 was clamped to 0 and the demo exited 0 with no image
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--items", "10", "--image-sample", "-1"]) == 2
    assert "image_sample must be a whole number >= 0, got -1" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("value", [2.5, True, "ten", -1])
def test_generate_demo_refuses_an_image_sample_not_a_count(tmp_path, value):
    # before: 2.5 was cut to 2 and True rendered one image without a word, and "ten"
    # was int()'s ValueError
    from features.exceptions import InputError
    from recommender.demo import generate_demo

    with pytest.raises(InputError) as exc:
        generate_demo(tmp_path / "demo", n_items=5, image_sample=value,
                      fashionai_keypoints=False)
    assert str(exc.value) == f"image_sample must be a whole number >= 0, got {value!r}"
    assert (exc.value.field, exc.value.value) == ("image_sample", value)
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("key, value, least", [
    ("n_items", 2.5, 1), ("n_items", True, 1), ("n_items", "ten", 1), ("n_items", 0, 1),
    ("n_outfits", 1.5, 0), ("n_outfits", "3", 0), ("n_outfits", -1, 0)])
def test_generate_demo_refuses_a_count_that_is_no_whole_number(tmp_path, key, value,
                                                               least):
    # before: int() cut 2.5 items to 2 and made True one item, "ten" was a ValueError
    from features.exceptions import InputError
    from recommender.demo import generate_demo

    args = {"n_items": 5, key: value}
    with pytest.raises(InputError) as exc:
        generate_demo(tmp_path / "demo", fashionai_keypoints=False, **args)
    assert str(exc.value) == f"{key} must be a whole number >= {least}, got {value!r}"
    assert not (tmp_path / "demo").exists()


def test_cli_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    # before: --out pointing at a data folder (MANGO's: product_data.csv beside images/)
    # exited 0 after deleting its images/ to make room for the packshots; a file as
    # --out was a FileExistsError traceback (exit 1)
    data = tmp_path / "mango"
    (data / "images").mkdir(parents=True)
    (data / "images" / "2019_53000586_TO.jpg").write_bytes(b"a photo")
    (data / "product_data.csv").write_text("cod_modelo_color\n1\n")
    argv = ["demo", "--items", "5", "--fashionai-keypoints", "none", "--out"]
    assert main(argv + [str(data)]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch demo: error: {data} holds product_data.csv, which mixmatch demo " \
           "did not write" in err and "Traceback" not in err
    assert (data / "images" / "2019_53000586_TO.jpg").read_bytes() == b"a photo"
    assert sorted(p.name for p in data.iterdir()) == ["images", "product_data.csv"]
    text = tmp_path / "notes.txt"
    text.write_text("mine")
    assert main(argv + [str(text)]) == 2
    assert f"mixmatch demo: error: --out {text} is a file, not a folder" in (
        capsys.readouterr().err)
    assert text.read_text() == "mine"
    # an earlier demo catalogue is regenerated in place, as before
    demo = tmp_path / "demo"
    assert main(argv + [str(demo)]) == 0
    assert main(argv + [str(demo), "--seed", "1"]) == 0


def test_cli_demo_names_the_line_and_cell_of_a_bad_keypoint_file(tmp_path, capsys):
    # before: "ValueError: could not convert string to float: '2x'" traceback from the
    # demo's fast reader (exit 1), naming neither the file nor the line
    from features.fashionai.io import KEYPOINT_HEADER

    rows = [",".join(KEYPOINT_HEADER)]
    for i, bad in enumerate((None, "10_2x_1", None)):
        cells = ["10_20_1"] * 24
        cells[4] = bad or cells[4]
        rows.append(",".join([f"Images/blouse/{i}.jpg", "blouse"] + cells))
    kp = tmp_path / "train.csv"
    kp.write_text("\n".join(rows) + "\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(("\n".join(rows[:2] + [rows[3] + ",caf\xe9"]) + "\n").encode("latin-1"))
    out = tmp_path / "demo"
    for path, said in ((kp, f"{kp}: line 3: keypoint shoulder_right cell '10_2x_1' is "
                            "not x_y_visibility"),
                       (latin, f"{latin} is not UTF-8 text (byte b'\\xe9'")):
        assert main(["demo", "--out", str(out), "--items", "5",
                     "--fashionai-keypoints", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"mixmatch demo: error: {said}" in err and "Traceback" not in err, err
        assert not out.exists()
