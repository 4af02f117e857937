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
