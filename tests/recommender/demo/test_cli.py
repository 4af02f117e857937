"""``mixmatch demo`` end to end through the real command line."""
from __future__ import annotations

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
    assert "image_sample must be >= 0, got -1" in capsys.readouterr().err
    assert not out.exists()
