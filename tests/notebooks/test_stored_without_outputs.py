"""Notebooks are stored without outputs: a committed output fails CI."""
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} have outputs; strip them with "
                       f"`python -m tests.notebooks.strip {path}`")
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells), \
        f"{path.name} has no cell tagged 'parameters'"
