"""Execute a notebook top to bottom with parameters, the way papermill does.

The cell tagged ``parameters`` keeps the defaults; a new cell with the overrides is
inserted right after it, so the stored notebook stays as merchandisers see it.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run_notebook(path: Path, parameters: dict, cwd: Path, timeout: int = 600):
    nb = nbformat.read(path, as_version=4)
    idx = next((i for i, c in enumerate(nb.cells)
                if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if idx is None:
        raise ValueError(f"{path.name} has no cell tagged 'parameters'")
    # repr() writes Python literals (str, numbers, True/False/None, lists, dicts);
    # JSON would write true/false/null inside containers
    src = "# injected by the test runner\n" + "\n".join(
        f"{k} = {v!r}" for k, v in parameters.items())
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(src))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb
