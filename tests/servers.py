"""Servers the tests start stop with the test: `controlroom server stop --force` for every state directory under
the test's tmp_path, then SIGKILL of a pid in STATE/server.lock that is still alive. Import the fixture into a test
module (`from tests.servers import servers_stopped  # noqa: F401`) and every test there is covered."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli


def server_pid(state: Path) -> int | None:
    """The pid written in STATE/server.lock, if it is a live `controlroom serve`."""
    try:
        pid = int((Path(state) / "server.lock").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"serve" in cmdline and b"controlroom.cli" in cmdline else None


def stop_servers(root: Path) -> None:
    for lock in Path(root).rglob("server.lock"):
        pid = server_pid(lock.parent)
        if pid is None:
            continue
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        config = cmdline[cmdline.index(b"--config") + 1].decode() if b"--config" in cmdline else None
        if config:
            try:
                run_cli("server", "stop", "--force", "--config", config, timeout=60)
            except Exception:  # noqa: BLE001 - whatever went wrong, the kill below ends it
                pass
        deadline = time.monotonic() + 10
        while server_pid(lock.parent) == pid and time.monotonic() < deadline:
            time.sleep(0.05)
        if server_pid(lock.parent) == pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def kill_server(state: Path) -> int:
    """kill -9 of the server of this state directory (a crash of the process that runs the deploy); its pid."""
    pid = server_pid(state)
    assert pid is not None, f"no server runs for {state}"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server_pid(state) == pid:
        assert time.monotonic() < deadline, "the server outlived kill -9"
        time.sleep(0.02)
    return pid


@pytest.fixture(autouse=True)
def servers_stopped(request, tmp_path):
    # set up after the test's fleets, so torn down before them: a server lets go of its SSH sessions while the
    # hosts are still there (a real sshd host's user is then removed with no session of it left running)
    for name in ("make_fleet", "make_real_fleet", "any_make_fleet"):
        if name in request.fixturenames:
            request.getfixturevalue(name)
    yield
    stop_servers(tmp_path)
