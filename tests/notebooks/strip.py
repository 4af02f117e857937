"""Strip outputs from notebooks in place: ``python -m tests.notebooks.strip NB...``."""
import sys

import nbformat


def strip(paths: list[str]) -> None:
    """Remove the outputs, execution counts and timings of each notebook in ``paths``."""
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        for c in nb.cells:
            if c.cell_type == "code":
                c.outputs = []
                c.execution_count = None
            c.metadata.pop("execution", None)
        nbformat.write(nb, p)
        print(f"stripped {p}")


# a script, run only as one: importing it (pytest's doctest collection does) must not
# read pytest's own arguments as notebooks to rewrite
if __name__ == "__main__":
    strip(sys.argv[1:])
