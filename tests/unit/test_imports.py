"""tether's import graph: ``tether.config`` is a leaf, each part imports on its own, no cycles.

A cycle among tether's modules works only in the import order that happens to break it: the
config models once imported every subsystem's config, which imported the config package back,
and importing a subsystem first found its own config half-initialised. These tests read the
imports of every module (also the ones inside functions, which run later but still close a
cycle) and import each part first in a fresh interpreter.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether

PACKAGE = Path(tether.__file__).resolve().parent
#: What reads the config: importing ``tether.config`` must load none of them.
READERS = (
    "tether.cli",
    "tether.gateway",
    "tether.guards",
    "tether.pipeline",
    "tether.providers",
    "tether.resilience",
    "tether.sdk",
    "tether.settings",
    "tether.store",
    "tether.telemetry",
    "tether.testing",
)
#: Each imported first, alone, in a fresh interpreter.
FIRST_IMPORTS = (
    "tether.config",
    "tether.config.guards",
    "tether.guards",
    "tether.guards.runner",
    "tether.guards.stream",
    "tether.guards.registry",
    "tether.gateway",
    "tether.gateway.app",
    "tether.store",
    "tether.store.store",
    "tether.telemetry",
    "tether.providers",
    "tether.providers.factory",
    "tether.pipeline",
    "tether.resilience",
    "tether.sdk",
    "tether.settings",
    "tether.cli.main",
)

Graph = dict[str, dict[str, str]]  # module -> imported module -> where ("file.py:LINE")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


# ---------------------------------------------------------------- the static graph


def module_name(path: Path) -> str:
    parts = [PACKAGE.name, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that runs: at the top, in classes and in functions (a function's import
    runs later, yet still closes a cycle); not the ones under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        yield from _imports_in(child)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.If) and _type_checking_only(node):
        for other in node.orelse:
            yield from _imports_in(other)
    elif isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from import_nodes(node)


def imported(module: str, node: ast.Import | ast.ImportFrom, modules: set[str]) -> list[str]:
    """The modules ``node`` imports: ``from a.b import c`` names ``a.b.c`` if it is a module,
    else ``a.b``; relative imports resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        is_package = (PACKAGE / Path(*module.split(".")[1:]) / "__init__.py").exists()
        anchor = module.split(".")[: len(module.split(".")) - (node.level - is_package)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def depends_on(module: str, target: str, modules: set[str]) -> list[str]:
    """What importing ``target`` from ``module`` runs first: the packages above ``target`` and
    ``target``. A package that holds ``module`` is already being imported, so it is left out,
    unless ``module`` imports a name from that package itself."""
    parts = target.split(".")
    needed = []
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        holds_module = module.startswith(name + ".")
        if name in modules and name != module and (not holds_module or name == target):
            needed.append(name)
    return needed


def import_graph() -> Graph:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    graph: Graph = {}
    for module, path in sorted(paths.items()):
        edges = graph.setdefault(module, {})
        for node in import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            for target in imported(module, node, modules):
                for needed in depends_on(module, target, modules):
                    edges.setdefault(needed, f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return graph


def in_config(module: str) -> bool:
    return module == "tether.config" or module.startswith("tether.config.")


def import_groups(graph: Graph) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle through each group of modules that import each other."""
    return [_one_cycle(graph, set(group)) for group in import_groups(graph)]


def _one_cycle(graph: Graph, group: set[str]) -> list[str]:
    """A path inside ``group`` from its first module back to itself (breadth first)."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, start]
            if nxt in group and nxt not in came_from:
                came_from[nxt] = node
                frontier.append(nxt)
    raise AssertionError(f"no cycle through {start}")


def describe(graph: Graph, cycle: list[str]) -> str:
    steps = [f"  {a} imports {b} ({graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return "\n".join(steps)


# ---------------------------------------------------------------- the tests


def test_no_import_cycle_among_tethers_modules() -> None:
    graph = import_graph()
    assert "tether.guards.runner" in graph and "tether.config.models" in graph
    groups = import_groups(graph)
    report = "\n\n".join(
        f"{', '.join(group)} import each other, e.g.:\n"
        + describe(graph, _one_cycle(graph, set(group)))
        for group in groups
    )
    assert not groups, (
        f"import cycles: move what both sides need into a module that imports neither (config "
        f"models into tether.config, shared helpers into their own module):\n{report}"
    )


def test_the_graph_holds_imports_inside_functions_but_not_type_checking_ones() -> None:
    tree = ast.parse(
        "import tether.errors\n"
        "if TYPE_CHECKING:\n    import tether.sdk\nelse:\n    import tether.types\n"
        "def later():\n    from tether.guards import runner\n"
    )
    modules = {"tether.guards.runner"}
    found = [t for node in import_nodes(tree) for t in imported("tether.x", node, modules)]
    assert found == ["tether.errors", "tether.types", "tether.guards.runner"]
    # in tether itself: the root package loads the SDK only in __getattr__
    assert "tether.sdk" in import_graph()["tether"]


def test_a_cycle_is_found_and_described_edge_by_edge() -> None:
    graph: Graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:3"}, "c": {}}
    assert cycles(graph) == []
    graph["c"]["a"] = "c.py:7"
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert describe(graph, ["a", "b", "c", "a"]).splitlines() == [
        "  a imports b (a.py:1)",
        "  b imports c (b.py:3)",
        "  c imports a (c.py:7)",
    ]
    # a package that holds the importing module is already loading: not an edge, unless a
    # name is imported from it
    modules = {"tether", "tether.guards", "tether.guards.runner", "tether.guards.stream"}
    assert depends_on("tether.guards.stream", "tether.guards.runner", modules) == [
        "tether.guards.runner"
    ]
    assert depends_on("tether.guards.stream", "tether.guards", modules) == ["tether.guards"]
    assert depends_on("tether.sdk", "tether.guards.runner", modules) == [
        "tether.guards",
        "tether.guards.runner",
    ]


def test_importing_the_config_loads_no_part_that_reads_it() -> None:
    done = run_python("import sys, tether.config\nprint(*sorted(sys.modules), sep='\\n')")
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert "tether.config.models" in loaded
    readers = [m for m in loaded if m.startswith(tuple(f"{r}." for r in READERS)) or m in READERS]
    assert not readers, f"importing tether.config loaded {readers}: config must import no reader"


def test_the_config_package_imports_only_itself_and_the_errors() -> None:
    """Also inside functions: a validator that needs a subsystem's knowledge gets it moved here
    as a pure function (``header_problem``), never imported from the subsystem."""
    graph = import_graph()
    reached: set[str] = set()
    todo = [m for m in graph if in_config(m)]
    while todo:
        module = todo.pop()
        for target in graph[module]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    outside = sorted(m for m in reached if not in_config(m) and m != "tether.errors")
    assert not outside, f"tether.config reaches {outside}; move what it needs into tether.config"


@pytest.mark.parametrize("module", FIRST_IMPORTS)
def test_each_part_imports_first_on_its_own(module: str) -> None:
    done = run_python(f"import {module}")
    assert done.returncode == 0, f"`import {module}` in a fresh interpreter:\n{done.stderr}"
