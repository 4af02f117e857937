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
