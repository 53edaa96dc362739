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


def _is_type_checking(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:`: imports for annotations only, never run."""
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def import_graph() -> dict[str, set[str]]:
    """Each hqsearch module and the hqsearch modules it imports (a name imported from a package counts as
    the package, unless it is a submodule)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        type_only = {id(n) for node in ast.walk(tree) if _is_type_checking(node) for n in ast.walk(node)}
        nodes = [n for n in ast.walk(tree) if id(n) not in type_only]
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


# The subpackages from the bottom up: a module imports from its own layer and the layers below it, so
# the tools (`backends/`) never reach into the search, and nothing below the driver knows of it.
LAYERS = (
    {"hqsearch.exceptions", "hqsearch.keras_backend"},
    {"hqsearch.config"},
    {"hqsearch.study"},
    {"hqsearch.search"},
    {"hqsearch.firmware"},
    {"hqsearch.backends"},
    {"hqsearch.pipeline"},
    {"hqsearch.executors"},
    {"hqsearch.driver"},
    {"hqsearch.analysis"},
    {"hqsearch.cli", "hqsearch"},
)


def _layer(module: str) -> int:
    for i, names in enumerate(LAYERS):
        if module in names or ".".join(module.split(".")[:2]) in names:
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS")


def test_no_import_cycle():
    """Imports inside functions count too: a lazy import that closes a cycle is still a cycle."""
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} -> {dep}" for module, deps in import_graph().items() for dep in deps if _layer(dep) > _layer(module)
    ]
    assert not upward, upward


def test_the_public_api_imports_without_the_heavy_libraries():
    code = (
        "import sys, hqsearch; print(hqsearch.__version__); "
        "print([m for m in ('tensorflow', 'jax', 'ray', 'keras') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] and out[0] != "0+unknown" and out[1] == "[]"
    import hqsearch

    assert callable(hqsearch.load_config) and callable(hqsearch.run_study)
