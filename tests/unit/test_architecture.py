"""The layering the README describes, enforced: who may import whom, no cycles, small folders and modules.

Read from the source with `ast` (no imports run), so a violation is caught wherever the import sits,
at the top of a module or inside a function.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest
from paths import REPO

PACKAGES = ("harness", "evaluator", "seed_program")
MAX_MODULES_PER_FOLDER = 15
MAX_MODULE_LINES = 450


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of ours."""
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imports_of(path: Path) -> set[str]:
    """Every module of ours that `path` imports (`from pkg import sub` counts as importing pkg.sub)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in MODULES)
    return {name for name in names if name.split(".")[0] in PACKAGES}


def unit(module: str) -> str:
    """The layer a module belongs to: its sub-package (harness.diff), or itself when it sits at the top."""
    parts = module.split(".")
    if len(parts) >= 2 and (REPO / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


EDGES = {(module, imported) for module, path in MODULES.items() for imported in imports_of(path)}


def offending(source_prefix: str, target_prefix: str) -> list[str]:
    def within(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")
    return sorted(f"{a} imports {b}" for a, b in EDGES if within(a, source_prefix) and within(b, target_prefix))


def test_the_evaluator_never_imports_the_harness() -> None:
    assert offending("evaluator", "harness") == []


def test_the_diff_engine_imports_nothing_else_of_ours() -> None:
    outside = sorted(f"{a} imports {b}" for a, b in EDGES
                     if unit(a) == "harness.diff" and unit(b) != "harness.diff")
    assert outside == []


def test_the_sandbox_does_not_import_scoring() -> None:
    assert offending("evaluator.sandbox", "evaluator.scoring") == []


def test_nothing_imports_the_cli() -> None:
    users = sorted(f"{a} imports {b}" for a, b in EDGES
                   if unit(b) == "harness.cli" and unit(a) != "harness.cli" and a != "harness.__main__")
    assert users == []


def test_no_cycles_between_sub_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in EDGES:
        if unit(a) != unit(b):
            graph[unit(a)].add(unit(b))
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of nodes (first == last), or None: depth-first search with colours."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_one() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_folder_holds_more_than_15_modules(package: str) -> None:
    crowded = {str(folder.relative_to(REPO)): n for folder in [REPO / package, *(REPO / package).rglob("*/")]
               if folder.is_dir() and (n := len([p for p in folder.glob("*.py") if p.name != "__init__.py"]))
               > MAX_MODULES_PER_FOLDER}
    assert crowded == {}


def test_no_module_is_over_450_lines() -> None:
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_every_sub_package_says_what_it_owns() -> None:
    silent = [name for name, path in MODULES.items()
              if path.name == "__init__.py" and "." in name and not ast.get_docstring(ast.parse(path.read_text()))]
    assert silent == []
