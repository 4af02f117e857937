"""The preview page renders in headless Chromium (Debian's ``chromium``): served by a
real gunicorn server on 127.0.0.1, every image loads and every section is there.

The page's own script writes how many images loaded/broke into ``<body>`` attributes
once the window has loaded; ``--dump-dom`` prints the DOM after that. Skipped with the
reason when /usr/bin/chromium is absent (``apt-get install -y chromium``).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def bundle_with_images(served_bundle, tmp_path):
    """The served bundle; when its catalogue has no images (the engine's tiny bundle),
    a copy whose items get real PNG packshots under a fresh image root."""
    import pandas as pd
    from PIL import Image

    from recommender.bundle import Bundle
    cat = pd.read_parquet(Path(served_bundle) / "catalog.parquet")
    if (cat["image_path"].astype(str) != "").all() and Bundle.open(served_bundle).image_root:
        return served_bundle
    bundle = tmp_path / "bundle"
    shutil.copytree(served_bundle, bundle, ignore=shutil.ignore_patterns("serving"))
    root = tmp_path / "images"
    root.mkdir()
    palette = {"BLACK": (20, 20, 20), "WHITE": (235, 235, 235), "RED": (200, 30, 30),
               "BLUE": (30, 60, 200), "GREEN": (30, 160, 60), "PINK": (240, 150, 190)}
    for i, row in cat.iterrows():
        name = f"{row['item_id']}.png"
        Image.new("RGB", (60, 80), palette.get(row["colour"], (128, 128, 128))).save(
            root / name)
        cat.loc[i, "image_path"] = name
    cat.to_parquet(bundle / "catalog.parquet", index=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["image_root"] = str(root)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def test_preview_renders_in_headless_chromium(bundle_with_images, live_server, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium")
    from recommender.engine import Engine
    engine = Engine.load(bundle_with_images)
    item = str(engine.catalog.loc[engine.catalog["category"] == "top", "item_id"].iloc[0])
    comp = engine.complements(item, k=4)
    srv = live_server({"BUNDLE": str(bundle_with_images), "DATA_DIR": str(tmp_path / "d"),
                       "WATCH_INTERVAL": 0}, workers=1)
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", f"{srv.url}/preview/{item}"],
        capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert "<body" in dom, out.stderr[-2000:]
    for section in ('id="item"', 'id="complements"', 'id="look"'):
        assert section in dom
    for g in comp["groups"]:
        assert f'data-category="{g["category"]}"' in dom
    n_img = len(re.findall(r"<img ", dom))
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    broken = re.search(r'data-images-broken="(\d+)"', dom)
    assert loaded and broken, "the page's load script did not run"
    assert int(broken.group(1)) == 0
    assert int(loaded.group(1)) == n_img >= 1 + sum(len(g["items"]) for g in comp["groups"])
