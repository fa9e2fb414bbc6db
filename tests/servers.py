"""Servers the tests start stop with the test: SIGTERM (what `controlroom server stop --force` asks) for every
state directory under the test's tmp_path, then SIGKILL of a pid in STATE/server.lock that is still alive.
conftest's autouse fixture ``servers_stopped`` does it for every test (every fleet's state directory is under the
test's tmp_path), so no module needs a fixture of its own for it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.waiting import wait_for


def server_pid(state: Path) -> int | None:
    """The pid written in STATE/server.lock, if it is a live `controlroom serve`."""
    try:
        pid = int((Path(state) / "server.lock").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"serve" in cmdline and b"controlroom.cli" in cmdline else None


def stop_server(state: Path, timeout: float = 30.0) -> None:
    """SIGTERM to the server of this state directory, as `controlroom server stop --force` would ask (a deploy
    in it is interrupted, resumable; it lets go of its SSH sessions), then SIGKILL if it outlives timeout.
    Reaped when it is our child. A signal rather than that command: no interpreter to start at every teardown."""
    pid = server_pid(state)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while server_pid(state) == pid:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + timeout
        time.sleep(0.02)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released): a source or a hook that is down."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop_servers(root: Path) -> None:
    """Stop every server of a state directory under root."""
    for lock in Path(root).rglob("server.lock"):
        stop_server(lock.parent)


def kill_server(state: Path) -> int:
    """kill -9 of the server of this state directory (a crash of the process that runs the deploy); its pid."""
    pid = server_pid(state)
    assert pid is not None, f"no server runs for {state}"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: server_pid(state) != pid, 10, f"the server (pid {pid}) to be gone after kill -9")
    return pid
