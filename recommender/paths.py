"""Where the real data lives: one rule for the CLI, the build and the generator.

``$MIXMATCH_DATA`` (the folder holding ``mango/`` and ``fashionai/``), else
``../shared/data`` beside the project checkout. The data is read from there and
never copied into the repository.

>>> import os; os.environ["MIXMATCH_DATA"] = "/data"; str(default_data_root())
'/data'
>>> del os.environ["MIXMATCH_DATA"]
"""
from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the folder that holds ``mango/`` and ``fashionai/``.
DATA_ENV = "MIXMATCH_DATA"


def default_data_root() -> Path:
    """``$MIXMATCH_DATA``, else ``../shared/data`` beside the project checkout."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"
