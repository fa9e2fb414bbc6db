"""The core never imports Textual or Rich: each module imports alone, in a fresh interpreter, without them.

Only the app (controlroom/app/) and widgets/, outside the core, may reach the screen. Modules are
found on disk, so a new core module is checked the day it lands.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

CORE = REPO / "controlroom"
FORBIDDEN = ("textual", "rich")


def core_modules() -> list[str]:
    names = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if name != "controlroom.app" and not name.startswith("controlroom.app.") and name != "controlroom.cli.__main__":
            names.append(name)
    return names


def test_the_core_modules_are_found_on_disk():
    found = core_modules()
    for expected in (
        "controlroom",
        "controlroom.config.config",
        "controlroom.config.inventory",
        "controlroom.fleet.ssh",
        "controlroom.cli.main",
        "controlroom.demo",
        "controlroom.demo.fleet",
        "controlroom.engine.board",
    ):
        assert expected in found
    assert "controlroom.app.app" not in found


@pytest.mark.parametrize("module", core_modules())
def test_core_module_imports_without_textual_or_rich(module):
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(' '.join(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"{module} pulls in: {res.stdout.strip()}"
