"""Tab completion as bash runs it: argcomplete's protocol (``_ARGCOMPLETE=1``, ``COMP_LINE``, ``COMP_POINT``, the
candidates written to fd 8 separated by ``_ARGCOMPLETE_IFS``), on `controlroom` in a subprocess; and --version."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from tests.conftest import run_cli

CONFIG = """\
[inventory]
hosts = ["db01", "db02"]
[inventory.groups.web]
hosts = ["web[001:003]"]
[inventory.groups.api]
hosts = ["api1"]
[inventory.ssh]
known_hosts = "known_hosts"
[deploy]
steps = ["true"]
[flags.new_search]
kind = "kill_switch"
default = "off"
[flags.dark_mode]
default = "off"
[state]
dir = "state"
"""


@pytest.fixture
def site(tmp_path):
    (tmp_path / "controlroom.toml").write_text(CONFIG)
    (tmp_path / "known_hosts").write_text("")
    return tmp_path


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def complete(line: str, cwd, env: dict | None = None) -> tuple[list[str], str]:
    """What bash would offer for the command line ``line`` (the cursor at its end), and what stderr got."""
    r, w = os.pipe()
    full = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\v", "COMP_LINE": line,
            "COMP_POINT": str(len(line)), "COMP_TYPE": "9", **(env or {})}
    saved = os.dup(8) if _is_open(8) else None
    os.dup2(w, 8)  # the completions go to fd 8, as bash's completion function reads them
    try:
        proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli"], cwd=cwd, env=full, pass_fds=(8,),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        os.close(w)
        if saved is None:
            os.close(8)
        else:
            os.dup2(saved, 8)
            os.close(saved)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return sorted(c.strip() for c in out.split("\v") if c.strip()), err.decode()


def test_commands_and_options_complete(site):
    cands, _ = complete("controlroom de", site)
    assert cands == ["demo", "deploy"]
    cands, _ = complete("controlroom deploy --re", site)
    assert cands == ["--reason", "--resume", "--revision"]
    cands, _ = complete("controlroom --vers", site)
    assert cands == ["--version"]


def test_hosts_groups_and_flags_come_from_the_config(site):
    cands, _ = complete("controlroom run --hosts w", site)
    assert cands == ["web", "web001", "web002", "web003"]
    cands, _ = complete("controlroom run --hosts ", site)
    assert cands == ["api", "api1", "db01", "db02", "default", "web", "web001", "web002", "web003"]
    cands, _ = complete("controlroom flags --verify --hosts db01,d", site)
    assert cands == ["db01,db01", "db01,db02", "db01,default"]
    cands, _ = complete("controlroom flag ", site)
    assert cands == ["dark_mode", "new_search"]
    cands, _ = complete("controlroom flag new_search o", site)
    assert cands == ["off", "on"]
    other = site / "other"
    other.mkdir()  # --config on the line is the config read
    cands, _ = complete(f"controlroom flag --config {site / 'controlroom.toml'} n", other)
    assert cands == ["new_search"]


def test_an_unreadable_config_completes_nothing_and_says_nothing(site):
    (site / "controlroom.toml").write_text("[inventory\nhosts = ")
    cands, err = complete("controlroom run --hosts ", site)
    assert cands == [] and err == ""
    (site / "nowhere").mkdir()
    cands, err = complete("controlroom flag ", site / "nowhere")  # no config at all
    assert cands == [] and err == ""


def test_completing_a_command_imports_no_command_module(site):
    """Building the parser for completion stays cheap: no command module, no journal, no Textual."""
    probe = ("import os, sys; os.environ['_ARGCOMPLETE'] = '1'; "
             "from controlroom.cli.parser import build_parser; build_parser(); "
             "bad = [m for m in sys.modules if m.startswith(('controlroom.cli.', 'controlroom.journal', "
             "'controlroom.server', 'textual', 'controlroom.config')) "
             "and m != 'controlroom.cli.parser']; print(bad)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"controlroom {version('controlroom')}\n"
