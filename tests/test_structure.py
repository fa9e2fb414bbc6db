"""The import contract: which layer may import which, no import circles, and a core that never reaches the screen.

Every import of every module in controlroom/ and widgets/ is read from its source: the top-level ones, the lazy
ones inside functions, the ``if TYPE_CHECKING:`` ones, relative ones (``from . import x``) and
``importlib.import_module("controlroom...")`` with a literal name. A lazy import is a dependency all the same: it
only moves the moment it is paid. The README's "Architecture" section mirrors RULES.

A module's size is not a rule (one responsibility is): there is no line cap.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "controlroom"
TOP = ("controlroom", "widgets")  # the two import roots the contract covers

# What each layer may import. A layer is a package below controlroom/ (or widgets/); a target is a layer, or one
# module of a layer ("server.client"), or the package marker "controlroom" itself. A module may always import its
# own layer (circles inside a layer are caught apart). The README's "Architecture" section draws this table.
BELOW_ENGINE = ("core", "config", "journal", "fleet", "sources")
RULES: dict[str, tuple[str, ...]] = {
    "core": (),
    "config": ("core",),
    "journal": ("core", "config"),
    "fleet": ("core", "config"),
    "sources": ("core", "config"),
    "engine": BELOW_ENGINE,
    "server": (*BELOW_ENGINE, "engine"),
    "demo": ("core", "config", "fleet", "sources"),
    "cli": (*BELOW_ENGINE, "engine", "server", "demo"),  # widgets draw: a command never does
    "app": ("core", "config", "engine", "sources", "server.client", "server.protocol", "server.wire", "widgets"),
    "widgets": ("core", "engine.board", "sources.stagediff"),
}
# the only doors to the app: these modules may import it, and only inside a function (a command that needs it)
LAZY_ONLY: dict[str, tuple[str, ...]] = {"cli.main": ("app",), "cli.demo": ("app",)}
# third-party packages: the core layer takes the standard library only; no layer but app and widgets the screen
SCREEN = ("textual", "rich")
MAY_DRAW = ("app", "widgets")

# Imports present on main that break the contract, each being fixed by the helper who owns the file (issue 16,
# item 3 "objects, not mixins" and item 5 "structured data" move the helpers named in its "Why"). Each fix removes
# its line here (an entry that no longer matches an import fails the test); the integrator empties the set.
# An entry is (importer, imported), dotted below controlroom (widgets as "widgets.x").
KNOWN: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted below controlroom ("engine.rollout", "widgets.flags")
    target: str  # the imported module, same form ("core.text"), or a third-party top-level name ("textual")
    path: Path  # the file, relative to the tree's root
    line: int
    how: str  # "top-level", "lazy" (inside a function) or "TYPE_CHECKING"
    ours: bool  # target is a controlroom or widgets module

    def where(self) -> str:
        return f"{self.path}:{self.line}"


# --------------------------------------------------------------------------------------------- the reader


def module_name(path: Path, root: Path) -> str:
    """'engine.rollout' for root/controlroom/engine/rollout.py, 'widgets.flags', 'engine' for its __init__."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] == "controlroom":
        parts.pop(0)
    return ".".join(parts) or "controlroom"


def modules_on_disk(root: Path) -> dict[str, Path]:
    found = {}
    for top in TOP:
        for path in sorted((root / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path, root)] = path
    return found


def _internal(dotted: str) -> str | None:
    """'controlroom.engine.board' -> 'engine.board', 'widgets.flags' -> itself; None for anything else."""
    if dotted == "controlroom":
        return "controlroom"
    if dotted.startswith("controlroom."):
        return dotted.removeprefix("controlroom.")
    if dotted == "widgets" or dotted.startswith("widgets."):
        return dotted
    return None


def _is_type_checking(test: ast.expr) -> bool:
    name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
    return name == "TYPE_CHECKING"


def read_imports(path: Path, root: Path, known: set[str]) -> list[Import]:
    """Every import in the file at `path`, with its line and how it runs."""
    me = module_name(path, root)
    dotted = list(path.relative_to(root).with_suffix("").parts)  # ['controlroom', 'engine', 'rollout']
    package = dotted[:-1]  # a module's package, and an __init__'s own package
    rel = path.relative_to(root)
    found: list[Import] = []

    def add(dotted: str, node: ast.AST, how: str) -> None:
        internal = _internal(dotted)
        if internal is None:
            found.append(Import(me, dotted.split(".")[0], rel, node.lineno, how, False))
            return
        # the longest known module the name names: 'from controlroom.engine import board' imports engine.board
        while internal not in known and "." in internal:
            internal = internal.rpartition(".")[0]
        if internal != me:
            found.append(Import(me, internal, rel, node.lineno, how, True))

    def resolve_relative(node: ast.ImportFrom) -> str:
        base = package[: len(package) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def visit(node: ast.AST, how: str) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name, node, how)
        elif isinstance(node, ast.ImportFrom):
            module = resolve_relative(node) if node.level else (node.module or "")
            named = {f"{module}.{a.name}" for a in node.names}
            for target in sorted({sub if _internal(sub) in known else module for sub in named}):
                add(target, node, how)
        elif isinstance(node, ast.Call) and _is_import_call(node):
            add(node.args[0].value, node, how)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, "TYPE_CHECKING")
            for child in node.orelse:
                visit(child, how)
            return
        inner = "lazy" if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) else how
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), "top-level")
    return found


def _is_import_call(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return (
        name in {"import_module", "__import__"}
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def all_imports(root: Path = ROOT) -> list[Import]:
    mods = modules_on_disk(root)
    known = set(mods)
    return [imp for path in mods.values() for imp in read_imports(path, root, known)]


# --------------------------------------------------------------------------------------------- the rules


def layer(module: str) -> str:
    if module.startswith("widgets"):
        return "widgets"
    return module.split(".")[0]


def _names(target: str, allowed: str) -> bool:
    return target == allowed or target.startswith(allowed + ".")


def rule_broken(imp: Import) -> str | None:
    """Why this import breaks the contract, or None when it keeps it."""
    src = layer(imp.source)
    if not imp.ours:
        if imp.target in SCREEN and src not in MAY_DRAW:
            return f"{src} never imports {imp.target} (only {' and '.join(MAY_DRAW)} reach the screen)"
        if src == "core" and imp.target not in sys.stdlib_module_names and imp.target != "__future__":
            return f"core imports the standard library only, not {imp.target}"
        return None
    if imp.target == "controlroom" or src == "controlroom":
        return None  # the package marker: a docstring and __version__
    dst = layer(imp.target)
    if dst == src:
        return None
    for lazy_module, doors in LAZY_ONLY.items():
        if any(_names(imp.target, d) for d in doors) and imp.source == lazy_module:
            if imp.how == "lazy":
                return None
            return f"{imp.source} opens {dst} only inside a function (a lazy import), this one is {imp.how}"
    if any(_names(imp.target, allowed) for allowed in RULES[src]):
        return None
    may = ", ".join(RULES[src]) or "the standard library only"
    return f"{src} may import {may}; not {imp.target}"


def violations(imports: list[Import]) -> list[tuple[Import, str]]:
    return [(imp, why) for imp in imports if (why := rule_broken(imp))]


def graph_of(imports: list[Import]) -> dict[str, dict[str, Import]]:
    """importer -> imported -> the first import line that makes the edge (controlroom modules only)."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        graph.setdefault(imp.source, {})
        if imp.ours:
            graph.setdefault(imp.target, {})
            graph[imp.source].setdefault(imp.target, imp)
    return graph


def circles(graph: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """Each strongly connected group of two or more modules, shown as one circle of imports through it."""
    return [_one_circle(graph, g) for g in tangles(graph)]


def tangles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan): each import between two of its modules
    lies on a circle."""
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def _one_circle(graph: dict[str, dict[str, Import]], group: list[str]) -> list[Import]:
    """The shortest circle through the group's first module (breadth first inside the group)."""
    members = set(group)
    start = group[0]
    came: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(set(graph[v]) & members):
                if w == start:
                    path = [graph[v][w]]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                if w not in came:
                    came[w] = graph[v][w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle in the group {group}")  # a strongly connected group always has one


def show_circle(circle: list[Import]) -> str:
    steps = " -> ".join(f"{imp.source} ({imp.where()}, {imp.how})" for imp in circle)
    return f"{steps} -> {circle[0].source}"


def without_known(imports: list[Import], known: set[tuple[str, str]]) -> list[Import]:
    return [imp for imp in imports if (imp.source, imp.target) not in known]


# --------------------------------------------------------------------------------------------- the contract


def test_the_reader_finds_the_modules_and_their_imports():
    imports = all_imports()
    mods = modules_on_disk(ROOT)
    for expected in ("core.text", "config.config", "engine.rollout", "server.server", "cli.main", "app.app",
                     "widgets.host_grid", "demo.fleet"):
        assert expected in mods
    assert {imp.how for imp in imports} == {"top-level", "lazy", "TYPE_CHECKING"}
    assert any(imp.source == "engine.rollout" and imp.target == "core.events" for imp in imports)
    assert any(imp.source.startswith("app.") and imp.target == "textual" for imp in imports)


def test_every_import_keeps_the_layer_rules():
    broken = violations(without_known(all_imports(), KNOWN))
    assert not broken, f"{len(broken)} imports break the layer rules (RULES in this file):\n" + "\n".join(
        f"  {imp.where()}: {imp.how} import of {imp.target} in {imp.source}: {why}" for imp, why in broken
    )


def test_no_import_circle_lazy_and_type_checking_ones_included():
    found = circles(graph_of(without_known(all_imports(), KNOWN)))
    assert not found, f"{len(found)} import circles:\n" + "\n".join(f"  {show_circle(c)}" for c in found)


def test_no_core_module_reaches_textual_or_rich():
    drawn = [imp for imp in all_imports() if imp.target in SCREEN and layer(imp.source) not in MAY_DRAW]
    assert not drawn, "the core imports the screen:\n" + "\n".join(
        f"  {imp.where()}: {imp.how} import of {imp.target} in {imp.source}" for imp in drawn
    )


def test_every_known_exception_is_still_there():
    # KNOWN only shrinks: when a fix removes an import, its entry goes too (and no entry names a sound import)
    imports = all_imports()
    edges = {(imp.source, imp.target) for imp in imports}
    stale = sorted(KNOWN - edges)
    assert not stale, "KNOWN names imports that no longer exist, remove them: " + ", ".join(map(str, stale))
    group_of = {m: n for n, g in enumerate(tangles(graph_of(imports))) for m in g}
    in_circles = {(i.source, i.target) for i in imports if group_of.get(i.source, -1) == group_of.get(i.target, -2)}
    needless = sorted(
        e for e in KNOWN
        if not any(rule_broken(i) for i in imports if (i.source, i.target) == e) and e not in in_circles
    )
    assert not needless, "KNOWN names imports that break no rule, remove them: " + ", ".join(map(str, needless))


def test_every_layer_has_a_rule_and_every_package_says_it():
    mods = modules_on_disk(ROOT)
    layers = {layer(m) for m in mods} - {"controlroom"}
    assert layers == set(RULES), f"packages without a rule or rules without a package: {layers ^ set(RULES)}"
    for name in layers:
        init = mods[name]
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import:" in doc, f"{init.relative_to(ROOT)}: its docstring says what it may import"


# --------------------------------------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for top in TOP:
        (tmp_path / top).mkdir(exist_ok=True)
        (tmp_path / top / "__init__.py").touch()
    for p in list(tmp_path.rglob("*")):
        if p.is_dir() and p.name not in TOP and p != tmp_path:
            (p / "__init__.py").touch()
    return tmp_path


def test_the_checker_catches_a_wrong_import_in_any_form(tmp_path):
    root = _tree(tmp_path, {
        "controlroom/core/text.py": "def f():\n    from controlroom.app import app\n",
        "controlroom/core/errors.py": "import httpx\n",
        "controlroom/engine/gates.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                       "    from controlroom.server import server\n",
        "controlroom/app/app.py": "import textual\nfrom controlroom.server.ops import Ops\n",
        "controlroom/app/link.py": "from controlroom.server.client import Client\n",
        "controlroom/cli/main.py": "from controlroom.app.app import App\n",
        "controlroom/cli/demo.py": "def run():\n    from controlroom.app.app import App\n",
        "controlroom/journal/locks.py": "import textual.widget\nfrom ..config import config\n",
        "widgets/flags.py": "from controlroom.journal import journal\nfrom .states import X\n",
        "widgets/states.py": "from controlroom.engine.board import Board\n",
        "controlroom/engine/board.py": "",
        "controlroom/server/ops.py": "", "controlroom/server/server.py": "", "controlroom/server/client.py": "",
        "controlroom/config/config.py": "", "controlroom/journal/journal.py": "", "controlroom/app/__init__.py": "",
    })
    broken = {imp.where(): why for imp, why in violations(all_imports(root))}
    assert broken == {
        "controlroom/core/text.py:2": "core may import the standard library only; not app.app",
        "controlroom/core/errors.py:1": "core imports the standard library only, not httpx",
        "controlroom/engine/gates.py:3": "engine may import core, config, journal, fleet, sources; not server.server",
        "controlroom/app/app.py:2": "app may import core, config, engine, sources, server.client, server.protocol, "
                                    "server.wire, widgets; not server.ops",
        "controlroom/cli/main.py:1": "cli.main opens app only inside a function (a lazy import), this one is "
                                     "top-level",
        "controlroom/journal/locks.py:1": "journal never imports textual (only app and widgets reach the screen)",
        "widgets/flags.py:1": "widgets may import core, engine.board, sources.stagediff; not journal.journal",
    }


def test_the_checker_catches_a_circle_through_a_lazy_or_type_checking_import(tmp_path):
    root = _tree(tmp_path, {
        "controlroom/server/client.py": "def connect():\n    from controlroom.server import server\n",
        "controlroom/server/server.py": "from controlroom.server.views import v\n",
        "controlroom/server/views.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                       "    from .client import Client\n",
        "controlroom/server/ops.py": "from . import views\n",
    })
    found = circles(graph_of(all_imports(root)))
    assert [[(i.source, i.target, i.how) for i in c] for c in found] == [[
        ("server.client", "server.server", "lazy"),
        ("server.server", "server.views", "top-level"),
        ("server.views", "server.client", "TYPE_CHECKING"),
    ]]
    assert show_circle(found[0]).startswith("server.client (controlroom/server/client.py:2, lazy) -> server.server")
    assert circles(graph_of(without_known(all_imports(root), {("server.views", "server.client")}))) == []


# --------------------------------------------------------------------------------------------- it runs


def core_modules() -> list[str]:
    """controlroom's modules (dotted, below the package) except the Textual app and the package markers."""
    return sorted(
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")
        if p.name not in {"__init__.py", "__main__.py"} and not str(p.relative_to(PACKAGE)).startswith("app/")
    )


def imports_in_fresh_interpreter(*modules: str) -> subprocess.CompletedProcess:
    code = "".join(f"import controlroom.{m}\n" for m in modules)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


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


# --------------------------------------------------------------------------------------------- start-up


def loaded_after(code: str) -> set[str]:
    """The top-level packages and controlroom modules a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return set(res.stdout.split())


def test_building_the_command_line_imports_no_command():
    # `controlroom X --help`, and every command before it is dispatched, pays for argparse alone
    loaded = loaded_after("from controlroom.cli.main import build_parser\nbuild_parser().format_help()")
    ours = sorted(m for m in loaded if m.startswith("controlroom."))
    assert ours == ["controlroom.cli", "controlroom.cli.main", "controlroom.cli.parser", "controlroom.core",
                    "controlroom.core.errors", "controlroom.core.startup"], ours
    assert not loaded & {"asyncio", "httpx", "asyncssh", "sqlite3", "textual", "rich"}


def test_the_server_and_the_engine_load_httpx_only_for_a_metrics_source():
    loaded = loaded_after("import controlroom.cli.server, controlroom.server.server, controlroom.engine.rollout")
    assert "httpx" not in loaded
    assert "httpx" in loaded_after(
        "from controlroom.config.settings import MetricsSettings\nfrom controlroom.sources.metrics import Source\n"
        "Source(MetricsSettings(url='http://127.0.0.1:9'))"
    )
