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
