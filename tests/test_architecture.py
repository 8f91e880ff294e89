"""The package's layering, read from the source: every import (also inside functions) against the rules.

Layers, each importing only those below it (README, "Architecture"):

    0  models, trace (torch only), errors
    1  checkpoints
    2  adapters
    3  embeddings, metrics, digits (metrics may read the embedding stores and judge with the digits
                                  classifier; not the other way)
    4  inspection                 (the engine behind a click)
    5  app and the command lines

Within a layer, packages import one way only, and no module imports itself back through others.
Dash, Plotly and Flask appear only in the app layer; the torch-only layer imports no pandas, UMAP
or scikit-learn either.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "visualizer"
LAYERS = {
    "visualizer": 0, "visualizer.errors": 0, "visualizer.models": 0, "visualizer.trace": 0,
    "visualizer.data": 0, "visualizer.assets": 0,
    "visualizer.checkpoints": 1,
    "visualizer.adapters": 2,
    "visualizer.embeddings": 3, "visualizer.metrics": 3, "visualizer.digits": 3,
    "visualizer.inspection": 4,
    "visualizer.app": 5, "visualizer.cli": 5, "visualizer.cli_args": 5, "visualizer.visualization_app": 5,
    "visualizer.__main__": 5,
}
COMMAND_LINES = (                    # command lines live beside their work
    "visualizer.embeddings.cli", "visualizer.metrics.cli", "visualizer.metrics.diversity_cli")
WEB = ("dash", "plotly", "flask", "werkzeug")
NOT_TORCH_ONLY = (*WEB, "pandas", "umap", "sklearn")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of everything `path` imports, at any depth (functions too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)   # `from pkg import module`
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {m: {i for i in imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def layer_of(module: str) -> tuple[str, int]:
    if module.startswith(COMMAND_LINES):
        return "command line", 5
    owner = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return owner, LAYERS[owner]


def test_every_module_has_a_layer():
    assert all(layer_of(m) for m in MODULES)


def test_no_import_cycle():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(GRAPH[m]):
            if n.startswith(m + ".") and MODULES[m].name == "__init__.py":
                continue          # a package re-exporting its own modules is not a cycle
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_imports_follow_the_layers():
    wrong = []
    for m, targets in GRAPH.items():
        own_name, own = layer_of(m)
        for t in targets:
            name, layer = layer_of(t)
            if layer > own and not (m == "visualizer" or t.startswith(m + ".")):
                wrong.append(f"{m} ({own_name}, layer {own}) imports {t} ({name}, layer {layer})")
    assert not wrong, "\n".join(sorted(wrong))


def test_packages_of_one_layer_import_one_way():
    edges = defaultdict(set)
    for m, targets in GRAPH.items():
        a, la = layer_of(m)
        for t in targets:
            b, lb = layer_of(t)
            if la == lb and a != b and a != "visualizer" and b != "visualizer":
                edges[a].add(b)
    both = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a in edges.get(b, ()) and a < b)
    assert not both, f"packages of one layer import each other: {both}"


def test_no_web_code_below_the_app_and_nothing_heavy_in_the_torch_layer():
    wrong = []
    for m, p in MODULES.items():
        _, layer = layer_of(m)
        banned = NOT_TORCH_ONLY if layer == 0 else WEB if layer < 5 else ()
        wrong += [f"{m} imports {i}" for i in imports(p) if i.split(".")[0] in banned]
    assert not wrong, "\n".join(sorted(wrong))
