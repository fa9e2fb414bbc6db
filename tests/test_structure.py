"""The shape of the code: every core module imports on its own, no import cycles among them, no module too long.

A cycle is one of module-level imports that run (an ``if TYPE_CHECKING:`` block never runs, and an import inside a
function is a lazy one): those are what make an import order matter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "controlroom"
MAX_LINES = 560  # a ~500-line budget with some slack
# the server until its operations are an object; the rollout keeps its phase loop and intents (the host work and
# recovery are objects and functions of their own now): this far and no further, never into new mixins, until
# the import contract replaces the line cap (house by layer)
LONGER = {"controlroom/server/server.py": 600, "controlroom/engine/rollout.py": 700}
APP = "app."


def core_modules() -> list[str]:
    """controlroom's modules (dotted, below the package) except the Textual app and the package markers."""
    return sorted(
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")
        if p.name not in {"__init__.py", "__main__.py"} and not str(p.relative_to(PACKAGE)).startswith("app/")
    )


def imports_in_fresh_interpreter(*modules: str) -> subprocess.CompletedProcess:
    code = "".join(f"import controlroom.{m}\n" for m in modules)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def _runs_at_import(test: ast.expr) -> bool:
    """False for ``if TYPE_CHECKING:`` (and ``typing.TYPE_CHECKING``)."""
    name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
    return name != "TYPE_CHECKING"


def module_imports(path: Path, known: set[str]) -> set[str]:
    """The controlroom modules among `known` that this file imports when it is imported itself."""
    found: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("controlroom."))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "controlroom" or node.module.startswith("controlroom."):
                    base = node.module.split(".", 1)[1] if "." in node.module else ""
                    for a in node.names:
                        sub = f"{base}.{a.name}" if base else a.name
                        found.add(sub if sub in known else base)
            elif isinstance(node, ast.ImportFrom) and node.level == 1:  # from . import x / from .x import y
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif isinstance(node, ast.If):
                if _runs_at_import(node.test):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                walk(node.orelse)
                walk(node.finalbody)
                for handler in node.handlers:
                    walk(handler.body)
            elif isinstance(node, ast.With):
                walk(node.body)

    walk(ast.parse(path.read_text(), filename=str(path)).body)
    return (found & known) - {_name(path)}


def _name(path: Path) -> str:
    try:
        return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    except ValueError:
        return path.stem


def import_graph() -> dict[str, set[str]]:
    known = set(core_modules())
    return {m: module_imports(PACKAGE / (m.replace(".", "/") + ".py"), known) for m in sorted(known)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, g) for g in groups]


def _one_cycle(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """A path start -> ... -> start inside the group, for the failure message."""
    members = set(group)
    start = group[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(graph[path[-1]] & members)
        if start in nxt and len(path) > 1:
            return [*path, start]
        fresh = [n for n in nxt if n not in seen]
        if not fresh:
            return [*path, "..."]
        path.append(fresh[0])
        seen.add(fresh[0])


# --------------------------------------------------------------------------------------------- imports


@pytest.mark.parametrize("module", core_modules())
def test_every_core_module_imports_on_its_own_in_a_fresh_interpreter(module):
    res = imports_in_fresh_interpreter(module)
    assert res.returncode == 0, f"import controlroom.{module} fails on its own:\n{res.stderr}"


@pytest.mark.parametrize("order", [("config.config", "config.inventory"), ("config.inventory", "config.config")])
def test_config_and_inventory_import_in_either_order(order):
    res = imports_in_fresh_interpreter(*order)
    assert res.returncode == 0, f"import {' then '.join(order)} fails:\n{res.stderr}"


def test_inventory_does_not_import_the_config_it_serves():
    # the old circle: config reads [[phase]] into PhaseSpec for inventory.plan_phases, inventory named config's type
    source = (PACKAGE / "config" / "inventory.py").read_text()
    assert "controlroom.config.config" not in source


def test_no_import_cycle_among_the_core_modules():
    graph = import_graph()
    assert graph["config.config"], "the import graph found no imports at all: the walker is broken"
    found = cycles(graph)
    assert not found, "import cycles among controlroom modules: " + "; ".join(" -> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle_and_ignores_lazy_and_type_only_imports(tmp_path):
    (tmp_path / "a.py").write_text("from controlroom.b import x\n")
    (tmp_path / "b.py").write_text("import controlroom.c\n")
    (tmp_path / "c.py").write_text("from controlroom import a\n")
    (tmp_path / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from controlroom.a import y\n"
        "def f():\n    from controlroom import a\n"
    )
    known = {"a", "b", "c", "d"}
    graph = {m: module_imports(tmp_path / f"{m}.py", known) for m in sorted(known)}
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]


# --------------------------------------------------------------------------------------------- size


def test_no_module_passes_the_line_budget():
    files = sorted([*PACKAGE.rglob("*.py"), *(ROOT / "widgets").rglob("*.py")])
    assert len(files) > 10
    long = {name: n for p in files if (n := len(p.read_text().splitlines()))
            > LONGER.get(name := str(p.relative_to(ROOT)), MAX_LINES)}
    assert not long, f"modules over {MAX_LINES} lines: " + ", ".join(f"{p} ({n})" for p, n in long.items())
