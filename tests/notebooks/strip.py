"""Strip outputs from notebooks in place: ``python -m tests.notebooks.strip NB...``."""
import sys

import nbformat

for p in sys.argv[1:]:
    nb = nbformat.read(p, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
            c.execution_count = None
        c.metadata.pop("execution", None)
    nbformat.write(nb, p)
    print(f"stripped {p}")
