"""The state directory's files that both the server and its client make or find: the directory itself, the socket's
path and the server's log. Here so that neither imports the other for them (the client starts the server; the
server never needs the client), and light: a client starting a server imports this before asyncio."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from controlroom.core.errors import UsageError

SOCKET = "control.sock"
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its NUL
LOG_MAX = 1 << 20  # server.log is rotated (one old copy) when it passes this at start


GO = b"go\n"  # what a starter writes to the server it spawned once that server may make its files
LOG = "server.log"  # the server's output once it listens (before, it goes to its starter through a pipe)


def socket_path(state_dir: Path) -> Path:
    """STATE/control.sock, or UsageError when the path is too long for a Unix socket."""
    path = Path(state_dir) / SOCKET
    if len(os.fsencode(str(path))) > SOCKET_PATH_MAX:
        raise UsageError(f"{path}: the socket path is {len(os.fsencode(str(path)))} bytes, longer than a Unix "
                         f"socket allows ({SOCKET_PATH_MAX}); set a shorter [state] dir")
    return path


def make_state_dir(state: Path) -> None:
    """The state directory, created the server's (0710 whatever the umask: the team's group may only pass through
    it to the socket; a setgid bit of a team parent kept, so the socket gets the team's group) when missing. An
    existing one is left as it is: the server checks it at start (door.claim_state)."""
    state.parent.mkdir(parents=True, exist_ok=True)
    try:
        state.mkdir(mode=0o710)
    except FileExistsError:
        return
    os.chmod(state, 0o710 | (state.stat().st_mode & 0o2000))


def rotate_log(state: Path) -> Path:
    """STATE/server.log, with one old copy kept when it has grown past LOG_MAX."""
    log = Path(state) / LOG
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_MAX:
            os.replace(log, log.with_suffix(".log.1"))
    return log


def last_line(path: Path) -> str:
    """The last non-empty line of a log (what a server that could not start said last)."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].removeprefix("controlroom: ") if lines else "(empty log)"
