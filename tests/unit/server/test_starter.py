"""server/starter.py and cli/start.py: a deploy's server is begun before the client imports its asyncio half, one
server whoever begins it, and a refused command line begins nothing."""

from __future__ import annotations

import subprocess
import sys

from controlroom.config import config
from controlroom.server.starter import begin
from tests.conftest import REPO, run_cli
from tests.servers import server_pid


def test_beginning_a_server_imports_neither_asyncio_nor_the_session():
    # what makes the early start early: the client spawns its server before these imports, not after them
    code = ("import sys; import controlroom.cli.main, controlroom.cli.start, controlroom.server.starter, "
            "controlroom.journal.journal; "
            "print(sorted(m for m in ('asyncio', 'controlroom.cli.session', 'controlroom.server.client') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_begin_spawns_one_server_and_a_second_begin_finds_it(make_fleet):
    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    state = fleet.dir / "state"
    first = begin(cfg, warm=False)
    try:
        assert first.proc is not None and first.fd is not None
        line = first.proc.stdout.readline()  # what the client's connect() waits for
        assert b" listening on " in line, line
        pid = server_pid(state)
        assert pid == first.proc.pid
    finally:
        first.done()
    second = begin(cfg, warm=False)
    assert second.proc is None and second.fd is None  # it answers: nothing spawned, no lock held
    assert server_pid(state) == pid
    assert run_cli("server", "stop", "--force", cwd=fleet.dir).returncode == 0


def test_a_refused_command_line_begins_no_server_and_creates_nothing(make_fleet):
    fleet = make_fleet(2)
    state = fleet.dir / "state"
    refused = [
        ("deploy",),  # no terminal to ask at the gates
        ("deploy", "--yes", "--force"),
        ("deploy", "--yes", "--reason", "why"),
        ("deploy", "--yes", "--override-gate", " "),
        ("deploy", "--yes", "--revision", "$(id)"),
        ("deploy", "--detach"),
        ("deploy", "--detach", "--yes", "--override-gate", "why"),
        ("deploy", "--follow", "--override-gate", " "),
        ("rollback",),  # no terminal to confirm it
    ]
    for args in refused:
        res = run_cli(*args, cwd=fleet.dir)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert res.stderr.startswith("controlroom: ") and res.stderr.count("\n") == 1, (args, res.stderr)
    assert not state.exists(), sorted(p.name for p in state.iterdir())
