"""Imports run downward: the layers of shared/, functions/ and main.py are declared once (``LAYERS``,
bottom first) and every import, wherever it is written (at the top of a module, inside a function, under
``TYPE_CHECKING``), must go to the importer's own layer or one below it. No circle between modules or
between packages, and no module imports another module's private name.

The module graph is read from the source with ``ast``, never by importing it. An import counts as written:
``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``. A package's parent
(``shared.store`` for ``shared.store.rows``) is not an edge of its own: Python loads it first whatever the
import says, so a package that re-exports its submodules is no circle. ``shared/__init__.py`` holds the
old-path aliases (``MOVED``), which import nothing by statement and are checked by tests/test_moved_modules.py.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Bottom first. A layer is one or more packages (or top-level modules); within a layer, packages may
# import each other as long as no circle forms.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base types", ("shared.domain",)),
    ("utilities", ("shared.common",)),
    ("outbound networking", ("shared.egress",)),
    (
        "adapters behind ports",
        ("shared.store", "shared.crypto", "shared.secret_sources", "shared.validators", "shared.oauth"),
    ),
    ("use cases", ("shared.usecases",)),
    ("jobs", ("shared.jobs",)),
    ("composition root", ("shared.app",)),
    ("inbound", ("shared.inbound",)),
    ("Cloud Functions entry points", ("functions",)),
    ("Cloud Functions' main module", ("main",)),
    ("commands", ("shared.commands",)),
)
LAYER_OF = {package: index for index, (_, packages) in enumerate(LAYERS) for package in packages}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module the graph covers, by dotted name (the alias holder shared/__init__.py left out)."""
    paths = [REPO / "main.py", *(REPO / "shared").rglob("*.py"), *(REPO / "functions").rglob("*.py")]
    return {module_name(path): path for path in paths if path != REPO / "shared" / "__init__.py"}


def package_of(module: str) -> str:
    """The package a module belongs to for the layers: ``shared.<package>``, ``functions`` or ``main``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "shared" else parts[0]


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module named by ``from <module> import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    is_package = modules()[importer].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports() -> dict[str, list[tuple[str, list[str], int]]]:
    """importer -> [(imported module, names taken from it, line)], for modules of the repository only."""
    ours = modules()
    found: dict[str, list[tuple[str, list[str], int]]] = defaultdict(list)
    for importer, path in ours.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in ours:
                        found[importer].append((alias.name, [], node.lineno))
            elif isinstance(node, ast.ImportFrom):
                source = resolve(importer, node)
                submodules = [a.name for a in node.names if f"{source}.{a.name}" in ours]
                for name in submodules:
                    found[importer].append((f"{source}.{name}", [], node.lineno))
                names = [a.name for a in node.names if a.name not in submodules]
                if names and source in ours:
                    found[importer].append((source, names, node.lineno))
    return found


def edges() -> set[tuple[str, str]]:
    return {(importer, imported) for importer, listed in imports().items() for imported, _, _ in listed}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` (its nodes, first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return [*path[path.index(successor) :], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_belongs_to_a_layer():
    unplaced = sorted({package_of(module) for module in modules()} - set(LAYER_OF))
    assert not unplaced, f"packages in no layer of LAYERS: {unplaced}"


def test_no_circle_between_modules():
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, imported in edges():
        if importer != imported:
            graph[importer].add(imported)
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or ())


def test_no_circle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, imported in edges():
        if package_of(importer) != package_of(imported):
            graph[package_of(importer)].add(package_of(imported))
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or ())


def test_every_import_goes_to_the_same_layer_or_below():
    upward = []
    for importer, listed in sorted(imports().items()):
        for imported, _, line in listed:
            if LAYER_OF[package_of(imported)] > LAYER_OF[package_of(importer)]:
                below, above = LAYERS[LAYER_OF[package_of(importer)]][0], LAYERS[LAYER_OF[package_of(imported)]][0]
                upward.append(f"{modules()[importer].relative_to(REPO)}:{line}: {imported} ({below} -> {above})")
    assert not upward, "imports that reach up a layer:\n" + "\n".join(upward)


def test_no_module_imports_a_private_name_of_another():
    private = [
        f"{modules()[importer].relative_to(REPO)}:{line}: {name} from {imported}"
        for importer, listed in sorted(imports().items())
        for imported, names, line in listed
        if imported != importer
        for name in [*names, imported.rsplit(".", 1)[-1]]
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not private, "\n".join(private)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_the_circle_finder_finds_circles_and_only_circles(graph, expected):
    assert find_cycle(graph) == expected


def test_the_graph_sees_imports_inside_functions_and_under_type_checking():
    """A lazy import and a TYPE_CHECKING one are edges like any other."""
    listed = {imported for imported, _, _ in imports()["shared.app.wiring"]}
    assert "shared.store.sqlite" in listed or any(m.startswith("shared.store.sqlite") for m in listed)
    assert "shared.usecases.integrations" in listed  # under TYPE_CHECKING and inside build_service
