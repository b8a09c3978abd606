"""Import layering of the configuration code: no cycle among the rule modules, a leaf config package.

Every import statement counts, wherever it is (module top, function body, ``TYPE_CHECKING``
block): a cycle hidden behind a type-only import is still a cycle for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import runwatch

SRC = Path(runwatch.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The runwatch modules ``path`` imports (``from pkg import name`` counts ``pkg.name`` when it is a module)."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] == "runwatch"}


def _graph(package: str) -> dict[str, set[str]]:
    root = SRC.parent.joinpath(*package.split("."))
    files = sorted(root.rglob("*.py"))
    modules = {_module_name(f): f for f in files}
    return {name: {m for m in _imports(f) if m in modules and m != name} for name, f in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk, each as the modules on it (first repeated at the end)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                found.append([*path[path.index(dep):], dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def test_cycle_finder_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycle_between_rule_modules() -> None:
    graph = _graph("runwatch.rules")
    # the package __init__ re-exports its modules; a module importing it back is the only allowed loop
    without_init = {m: deps - {"runwatch.rules"} for m, deps in graph.items() if m != "runwatch.rules"}
    assert _cycles(without_init) == []
    assert {"runwatch.rules.loader", "runwatch.rules.collect", "runwatch.rules.build",
            "runwatch.rules.exceptions"} <= set(graph)
    assert "runwatch.rules.loader" not in graph["runwatch.rules.exceptions"]


def test_config_is_a_leaf_shared_by_rules_and_policy() -> None:
    config = _graph("runwatch.config")
    outside = {m: sorted(i for i in _imports(SRC / "config" / (m.rpartition(".")[2] + ".py"))
                         if not i.startswith("runwatch.config"))
               for m in config if m != "runwatch.config"}
    assert outside == {"runwatch.config.errors": [], "runwatch.config.values": [], "runwatch.config.yamlsrc": []}
    policy_loader = _imports(SRC / "policy" / "loader.py")
    assert {"runwatch.config.yamlsrc", "runwatch.config.errors"} <= policy_loader
    assert [m for m in policy_loader if m.startswith("runwatch.rules")] == []
