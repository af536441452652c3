"""The import contract: layers import only the layers below them, and no module imports itself
back through others. Every import counts, those inside functions and under TYPE_CHECKING too.

The layers, lowest first, are drawn in docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "digitrec"

# Lowest first. A module belongs to the first layer one of whose prefixes it starts with
# ("=name": that module alone).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundations",
        (
            "digitrec.version",
            "digitrec.constants",
            "digitrec.errors",
            "digitrec.fileio",
            "digitrec.integrity",
            "digitrec.metadata",
            "digitrec.probabilities",
            "digitrec.plotting",
        ),
    ),
    ("data", ("digitrec.data",)),
    ("image", ("digitrec.image",)),
    ("nn", ("digitrec.nn",)),
    ("recognition", ("digitrec.recognition",)),
    ("store", ("digitrec.store",)),
    ("training", ("digitrec.training",)),
    ("reports", ("digitrec.reports",)),
    ("front ends", ("digitrec.export", "digitrec.cli", "digitrec.service", "digitrec.__main__", "=digitrec")),
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """{module: {imported module of the same package: line}} for every .py file under `root`
    (the package folder), from every import statement anywhere in the file."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = graph.setdefault(name, {})
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                # `from pkg import submodule` imports the submodule; `from mod import name` the module
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            else:
                continue
            for target in targets:
                if target in files and target != name:
                    edges.setdefault(target, node.lineno)
    return graph


def layer_of(module: str, layers=LAYERS) -> int:
    for index, (_, prefixes) in enumerate(layers):
        if any(module == p.lstrip("=") or (not p.startswith("=") and module.startswith(p + ".")) for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py")


def upward_imports(graph: dict[str, dict[str, int]], layers=LAYERS) -> list[str]:
    """Each import from a lower layer of a higher one, as 'module:line imports target (layer)'."""
    found = []
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            if layer_of(target, layers) > layer_of(module, layers):
                found.append(
                    f"{module}:{line} ({layers[layer_of(module, layers)][0]}) imports {target} "
                    f"({layers[layer_of(target, layers)][0]})"
                )
    return found


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The import cycles: each strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_layer():
    for module in import_graph(PACKAGE):
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph(PACKAGE)) == []


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph(PACKAGE)) == []


def fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "digitrec"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_check_catches_an_upward_import_hidden_in_a_function(tmp_path):
    root = fake_package(
        tmp_path,
        {
            "constants.py": "def f():\n    from .training import loop\n",
            "training/__init__.py": "",
            "training/loop.py": "from ..constants import f\n",
        },
    )
    graph = import_graph(root)
    assert upward_imports(graph) == ["digitrec.constants:2 (foundations) imports digitrec.training.loop (training)"]
    assert cycles(graph) == [["digitrec.constants", "digitrec.training.loop"]]


def test_the_check_catches_a_cycle_within_one_layer(tmp_path):
    root = fake_package(
        tmp_path,
        {
            "image/__init__.py": "",
            "image/a.py": "from . import b\n",
            "image/b.py": "if True:\n    from .a import x\n",
        },
    )
    assert cycles(import_graph(root)) == [["digitrec.image.a", "digitrec.image.b"]]
    assert upward_imports(import_graph(root)) == []
