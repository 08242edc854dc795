"""The package's layout as docs/architecture.md states it, read from the import statements themselves.

Units are the package's subpackages and top-level modules. The top-level modules other than `__init__`,
`errors` and `versions` are the commands (`python -m hopfield_attention.<command>`); `cli/` is what the commands
share. Library units never import a command or `cli`, commands never import each other, and no two units import
each other, directly or around a longer cycle.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = "hopfield_attention"
ROOT = Path(importlib.util.find_spec(PACKAGE).origin).parent
SHARED_LEAVES = {"__init__", "errors", "versions"}
COMMAND_LAYER = "cli"


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(name: str) -> str:
    """The top-level unit a module belongs to: `hopfield_attention.runs.lock` -> `runs`."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path) -> set[str]:
    """Every module of the package that `path` imports, lazy imports inside functions included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else node.module
            )
            if node.module is None:  # `from . import a, b`: each name is a module
                found.update(f"{base}.{alias.name}" for alias in node.names)
            else:
                found.add(base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module == PACKAGE or module.startswith(PACKAGE + ".")}


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        source = unit(module_name(path))
        targets = {unit(module) for module in imported_modules(path)} - {source}
        graph.setdefault(source, set()).update(targets)
    return graph


def commands() -> set[str]:
    return {path.stem for path in ROOT.glob("*.py")} - SHARED_LEAVES


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of units, or None (depth-first search with the path kept)."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target] if target in path else [node, target]
            if target not in state and (found := visit(target, path + [target])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_commands_are_the_top_level_modules_and_each_has_a_main():
    assert commands() >= {
        "train",
        "eval",
        "prepare",
        "analyze",
        "tables",
        "status",
        "quickstart",
        "paper_small",
        "readings",
    }
    for name in commands():
        tree = ast.parse((ROOT / f"{name}.py").read_text(encoding="utf-8"))
        defines_main = any(
            (isinstance(node, ast.FunctionDef) and node.name == "main")
            or (isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "main" for target in node.targets))
            for node in tree.body
        )
        assert defines_main, f"{name}.py is a top-level module without main(): a command, or library code to move"


def test_the_library_never_imports_a_command_or_the_command_layer():
    graph = unit_graph()
    library = set(graph) - commands() - {COMMAND_LAYER, "__init__"}
    wrong = {source: sorted(graph[source] & (commands() | {COMMAND_LAYER})) for source in library}
    assert {source: targets for source, targets in wrong.items() if targets} == {}


def test_commands_do_not_import_each_other():
    graph = unit_graph()
    assert {
        name: sorted(graph.get(name, set()) & commands()) for name in commands() if graph.get(name, set()) & commands()
    } == {}


def test_no_two_units_import_each_other():
    assert cycle(unit_graph()) is None


@pytest.mark.parametrize(
    "graph, expected",
    [({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]), ({"a": {"b"}, "b": {"c"}, "c": set()}, None)],
)
def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle(graph, expected):
    assert cycle(graph) == expected
