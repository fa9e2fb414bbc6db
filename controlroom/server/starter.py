"""Starting the control-room server for a client: find whether one answers, check the journal, spawn one.

Here, apart from the client's connection (client.py), and without asyncio: a deploy, resume or rollback calls
begin() as soon as its command line is checked, so the server's interpreter starts while the client goes on to
import the rest of itself (asyncio, the printer) instead of after (on two CPUs, ~60 ms of a cold deploy's start).
The client's connect() then waits for the server it began (client.py).

The server is started detached from this terminal (its own session, stdin from /dev/null, output to
STATE/server.log), so it outlives the operator's SSH session; two clients starting it at once get one server:
server.start is held from before the spawn until the starter's client has connected.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from controlroom.config.config import Config
from controlroom.core.errors import UsageError
from controlroom.server.statedir import make_state_dir, rotate_log, socket_path


@dataclass
class Starting:
    """What begin() did: ``proc`` is the server it spawned (None: one answered), ``fd`` the server.start lock it
    holds until ``done()``, which the client calls once it has connected (or given up)."""

    proc: subprocess.Popen | None = None
    fd: int | None = None

    def done(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()  # the server's output goes to its log from now on
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def answers(path: Path) -> bool:
    """Whether something accepts on the socket (a live server, or one about to say it is dying at hello)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
        return False
    finally:
        s.close()
    return True


def begin(cfg: Config, *, warm: bool = False) -> Starting:
    """Spawn the server of cfg's state directory unless one answers; blocks while another client starts one.

    Before the spawn the journal is opened here: the server could only say in its log what is wrong with it
    (read-only for this user, corrupted, a full disk), so the operator reads that one line instead, and nothing
    is created when it fails."""
    state = Path(cfg.state.dir)
    path = socket_path(state)
    if answers(path):
        return Starting()
    from controlroom.journal.journal import Journal

    Journal.open(state, url=cfg.state.journal).close()
    try:
        make_state_dir(state)
        fd = os.open(state / "server.start", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise UsageError(f"{state}: cannot start the server here: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the second of two starters waits here, then finds the first one's server
        if answers(path):
            os.close(fd)
            return Starting()
        return Starting(spawn_server(cfg, warm=warm), fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def spawn_server(cfg: Config, *, warm: bool = False) -> subprocess.Popen:
    """Start `controlroom serve` in the background, detached from this terminal and session; ``warm``: with
    --warm (it opens the fleet's connections as soon as it listens: what a deploy, resume or rollback needs)."""
    state = Path(cfg.state.dir)
    make_state_dir(state)
    log = rotate_log(state)
    # until it listens, the server's output comes to us through a pipe (so a server that cannot start tells the
    # operator why, even when it cannot write its log: a full disk); once it listens it moves its output to the log
    return subprocess.Popen(
        [sys.executable, "-m", "controlroom.cli", "serve", "--quiet", *(["--warm"] if warm else []), "--config",
         str(cfg.path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        close_fds=True, cwd=str(Path(cfg.path).resolve().parent),
        env={**os.environ, "CONTROLROOM_SERVER_LOG": str(log)},
    )
