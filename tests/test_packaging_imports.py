"""The package's import graph: the public API imports light, and no module imports one that imports it back."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "hqsearch"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    """Each hqsearch module and the hqsearch modules it imports (a name imported from a package counts as
    the package, unless it is a submodule)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else ast.walk(tree)
        deps = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hqsearch"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
        graph[name] = deps - {name}
    return graph


def test_no_module_level_import_cycle():
    try:
        graphlib.TopologicalSorter(import_graph(top_level_only=True)).prepare()
    except graphlib.CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None


def test_the_public_api_imports_without_the_heavy_libraries():
    code = (
        "import sys, hqsearch; print(hqsearch.__version__); "
        "print([m for m in ('tensorflow', 'jax', 'ray', 'keras') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] and out[0] != "0+unknown" and out[1] == "[]"
    import hqsearch

    assert callable(hqsearch.load_config) and callable(hqsearch.run_study)
