"""Dependencies point one way: ``api`` -> ``recommender`` -> ``features`` (STYLE.md #11).

An import inside a function counts: ``features.attributes.evaluate`` once opened the
bundle with ``from recommender.bundle import Bundle`` in its body, which no import of
the module shows, and ``features`` could not be used (or tested) without
``recommender``.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package -> the packages it must not import
FORBIDDEN = {"features": ("recommender", "api"), "recommender": ("api",)}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import statement in ``path``, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_a_package_above_it(package):
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for p in sorted((ROOT / package).rglob("*.py"))
           for line, name in imported_packages(p) if name in FORBIDDEN[package]]
    assert not bad, "\n".join(bad)


def test_importing_every_features_module_loads_no_recommender_module():
    # what the static check cannot see: an import made by code run at import time
    code = ("import importlib, pkgutil, sys\nimport features\n"
            "for m in pkgutil.walk_packages(features.__path__, 'features.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] in "
            "('recommender', 'api')))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
