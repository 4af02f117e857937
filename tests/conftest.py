"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    env = os.environ.get("MIXMATCH_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set MIXMATCH_DATA)")
    return root


@pytest.fixture(scope="session")
def mango_dir(shared_data) -> Path:
    d = shared_data / "mango"
    if not (d / "product_data.csv").is_file():
        pytest.skip(f"MANGO data not found at {d}")
    return d


@pytest.fixture(scope="session")
def fashionai_dir(shared_data) -> Path:
    d = shared_data / "fashionai"
    if not d.is_dir():
        pytest.skip(f"FashionAI labels not found at {d}")
    return d


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory) -> Path:
    """A small demo bundle built once per test session by the real pipeline (quick mode)."""
    from recommender.build import build_bundle

    out = tmp_path_factory.mktemp("demo_bundle") / "bundle"
    build_bundle(out, source="demo", items=300, seed=0, quick=True, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def mango_subset_bundle(tmp_path_factory) -> Path:
    """A quick bundle built by the real pipeline from a subset of the MANGO data
    (300 outfits, their items and 300 more products), so tests and notebooks can show
    real products in a minute or two. Skips when the data is absent. The subset is
    written to a temporary folder only (images are linked, never copied)."""
    import pandas as pd

    mango = data_root() / "mango"
    if not (mango / "product_data.csv").is_file():
        pytest.skip(f"MANGO data not found at {mango} (set MIXMATCH_DATA)")
    from recommender.build import build_bundle

    src = tmp_path_factory.mktemp("mango_subset") / "mango"
    src.mkdir()
    products = pd.read_csv(mango / "product_data.csv", dtype=str)
    outfits = pd.read_csv(mango / "outfit_data.csv", dtype=str)
    keep = sorted(outfits["cod_outfit"].unique(), key=int)[:300]
    outfits = outfits[outfits["cod_outfit"].isin(keep)]
    used = set(outfits["cod_modelo_color"])
    others = products[~products["cod_modelo_color"].isin(used)].sample(300, random_state=0)
    products = pd.concat([products[products["cod_modelo_color"].isin(used)], others])
    products.to_csv(src / "product_data.csv", index=False)
    outfits.to_csv(src / "outfit_data.csv", index=False)
    (src / "images").symlink_to((mango / "images").resolve(), target_is_directory=True)
    out = src.parent / "bundle"
    build_bundle(out, source="mango", data=src, seed=0, quick=True, log=lambda m: None)
    return out
