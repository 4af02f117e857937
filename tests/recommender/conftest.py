from __future__ import annotations

import pytest

from tests.recommender.tiny_bundle import make_tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


@pytest.fixture(scope="session")
def tiny_bundle_no_price(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("tinynp") / "bundle", with_price=False)


@pytest.fixture(scope="session")
def engine(tiny_bundle):
    from recommender.engine import Engine

    return Engine.load(tiny_bundle)


@pytest.fixture(scope="session")
def pipeline_bundle(request, tmp_path_factory):
    """A 300-item quick demo bundle built by the real pipeline, compatibility model
    and graph included: the shared ``demo_bundle`` once every stage's module is on
    this branch; until then (the keypoints stage is another helper's), the same
    build with the stages that exist."""
    import importlib.util

    from recommender.build import build_bundle
    from recommender.pipeline import STAGES

    def landed(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            return False

    stages = [s.name for s in STAGES if landed(s.module)]
    if len(stages) == len(STAGES):
        return request.getfixturevalue("demo_bundle")
    out = tmp_path_factory.mktemp("pipeline_bundle") / "bundle"
    build_bundle(out, source="demo", items=300, seed=0, quick=True, stages=stages,
                 log=lambda m: None)
    return out
