"""A small generated catalogue shared by the demo tests (built once per session)."""
from __future__ import annotations

import pytest

from recommender.demo import generate_demo

N_ITEMS = 240
SEED = 3


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    counts = generate_demo(out, n_items=N_ITEMS, seed=SEED, fashionai_keypoints=False)
    return out, counts
