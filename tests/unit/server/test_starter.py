"""server/starter.py and cli/start.py: a deploy's server is begun before the client imports its asyncio half, one
server whoever begins it, and a refused command line begins nothing. The server is spawned before the journal is
checked and makes nothing until its starter's go: a check that fails leaves the state directory as it was."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from controlroom.config import config
from controlroom.core.errors import ControlroomError, JournalError
from controlroom.server import starter
from controlroom.server.starter import begin, spawn_server
from tests.conftest import REPO, run_cli
from tests.servers import server_pid, stop_servers


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


def test_a_spawned_server_whose_starter_dies_before_its_go_exits_saying_nothing_and_makes_nothing(make_fleet):
    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    state = fleet.dir / "state"
    assert not state.exists()
    proc = spawn_server(cfg.path, state, warm=True)
    proc.stdin.close()  # what a starter that dies before its go leaves it (Early.withdraw() also stops it at once)
    assert proc.wait(timeout=60) == 0
    proc.stdout.close()
    assert not state.exists()  # not the state directory, its log, server.lock or a socket


def test_a_journal_that_fails_its_check_after_the_spawn_names_itself_and_the_state_stays_as_it_was(
        make_fleet, monkeypatch):
    fleet = make_fleet(2)
    assert run_cli("log", "add", "before", cwd=fleet.dir).returncode == 0
    stop_servers(fleet.dir)
    state = fleet.dir / "state"
    (state / "journal.db").write_bytes(os.urandom(8192))
    for name in ("server.log", "server.start", "server.lock"):
        (state / name).unlink(missing_ok=True)
    before = sorted(p.name for p in state.iterdir())
    spawned = []

    def spawn(config, state, warm=False):  # the real spawn, its process kept to be waited for here
        spawned.append(real(config, state, warm=warm))
        return spawned[-1]

    real = starter.spawn_server
    monkeypatch.setattr(starter, "spawn_server", spawn)
    with pytest.raises(JournalError, match="is corrupted or not a controlroom journal"):
        begin(config.load(fleet.config_path), warm=True)
    assert len(spawned) == 1 and spawned[0].wait(timeout=60) is not None  # withdrawn: stopped
    assert sorted(p.name for p in state.iterdir()) == before


def test_a_server_that_cannot_be_spawned_is_one_line_after_the_journal_has_had_its_say(make_fleet, monkeypatch):
    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    nowhere = fleet.dir / "no-python"
    monkeypatch.setattr(sys, "executable", str(nowhere))
    with pytest.raises(ControlroomError) as got:
        begin(cfg, warm=True)
    assert str(got.value) == f"cannot start the server for {fleet.dir / 'state'}: {nowhere}: No such file or directory"
    assert not (fleet.dir / "state" / "server.start").exists()
    (fleet.dir / "state" / "journal.db").write_bytes(os.urandom(8192))
    with pytest.raises(JournalError, match="is corrupted"):  # what is wrong with the journal is said first
        begin(cfg, warm=True)


def test_a_server_begun_for_a_peek_the_config_does_not_confirm_is_withdrawn_and_the_right_one_begun(make_fleet):
    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    wrong = fleet.dir / "not-the-state"
    begun = starter.early(cfg.path, wrong, warm=False)  # what a peek that guessed wrong would have begun
    proc = begun.proc
    assert proc is not None
    first = starter.finish(begun, cfg)
    try:
        assert proc.poll() is not None  # the wrong one is stopped
        assert first.proc is not None and first.proc is not proc
        assert b" listening on " in first.proc.stdout.readline()
    finally:
        first.done()
    assert server_pid(fleet.dir / "state") == first.proc.pid
    assert not wrong.exists()  # it made nothing
    assert run_cli("server", "stop", "--force", cwd=fleet.dir).returncode == 0


def serve_processes(config_path) -> list[int]:
    """The pids of `controlroom serve` processes for this config file."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                argv = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv and str(config_path).encode() in argv:
                found.append(int(d))
    return found


def test_a_config_that_fails_to_load_after_its_server_was_begun_is_one_line_and_leaves_no_server(make_fleet):
    fleet = make_fleet(2)
    bad = fleet.dir / "bad.toml"
    # its [state] dir can be peeked at, the rest is refused by the full load
    bad.write_text(fleet.config_path.read_text() + "\n[nonsense]\nkey = 1\n")
    res = run_cli("deploy", "--yes", "--config", str(bad), cwd=fleet.dir)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith(f"controlroom: {bad}") and "nonsense" in res.stderr, res.stderr
    assert not (fleet.dir / "state").exists()
    assert serve_processes(bad) == []  # withdrawn and waited for before the client exits


def test_two_starters_at_once_spawn_two_servers_and_only_one_is_let_go(make_fleet, monkeypatch):
    import threading

    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    spawned, real = [], starter.spawn_server

    def spawn(config_path, state, warm=False):  # the real spawn, each process kept to be looked at here
        spawned.append(real(config_path, state, warm=warm))
        return spawned[-1]

    monkeypatch.setattr(starter, "spawn_server", spawn)
    both_spawned = threading.Barrier(2)
    early = starter.early

    def early_then_meet(*a, **kw):  # neither starter takes server.start before both have spawned
        begun = early(*a, **kw)
        both_spawned.wait(30)
        return begun

    monkeypatch.setattr(starter, "early", early_then_meet)
    import queue

    got: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=lambda: got.put(begin(cfg))) for _ in range(2)]
    for t in threads:
        t.start()
    first = got.get(timeout=60)  # the one holding server.start; the other waits for it to have connected
    try:
        assert first.proc is not None
        assert b" listening on " in first.proc.stdout.readline()
    finally:
        first.done()
    second = got.get(timeout=60)
    for t in threads:
        t.join(60)
    assert len(spawned) == 2 and second.proc is None and second.fd is None  # it found the first one answering
    other = next(p for p in spawned if p is not first.proc)
    assert other.poll() is not None  # the one not let go is stopped
    assert serve_processes(fleet.config_path) == [first.proc.pid]
    assert server_pid(fleet.dir / "state") == first.proc.pid
    assert run_cli("server", "stop", "--force", cwd=fleet.dir).returncode == 0
