"""Starting the control-room server for a client: find whether one answers, check the journal, spawn one.

Here, apart from the client's connection (client.py), and without asyncio: a deploy, resume or rollback calls
begin() as soon as its command line is checked, so the server's interpreter starts while the client goes on to
import the rest of itself (asyncio, the printer) instead of after (on two CPUs, ~60 ms of a cold deploy's start).
The client's connect() then waits for the server it began (client.py).

The server is spawned first; the journal is checked and server.start taken while its interpreter starts (~45 ms
of a cold deploy on two CPUs, bench/rollout.py). The spawned server creates nothing until its starter says so: its
stdin is a pipe from the starter, and it reads one line from it before it makes any file (server.wait_for_go). "go" follows a check that passed, with server.start held; anything else (the check failed,
another starter's server answered first, the starter died) closes the pipe, and the server exits without a word,
having made nothing. So a journal that cannot be opened (read-only for this user, corrupted, a full disk) is
still named in the check's one line, and nothing is created when it fails.

The server runs detached from this terminal (its own session, stdin /dev/null once it has its go, output to
STATE/server.log), so it outlives the operator's SSH session. Two clients starting it at once get one server:
server.start is held from before the go until the starter's client has connected.
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
from controlroom.core.errors import ControlroomError, UsageError
from controlroom.server.statedir import GO, LOG, make_state_dir, rotate_log, socket_path


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

    The journal is opened here, once the server is spawned and before it may create anything: the server could
    only say in its log what is wrong with it (read-only for this user, corrupted, a full disk), so the operator
    reads that one line instead, and nothing is created when it fails."""
    state = Path(cfg.state.dir)
    path = socket_path(state)
    if answers(path):
        return Starting()
    try:
        proc = spawn_server(cfg, warm=warm)  # it waits for our go before it makes any file
    except OSError as e:  # said after the journal's check: what is wrong with the journal comes first
        proc, cannot = None, e
    fd = None
    try:
        from controlroom.journal.journal import Journal

        Journal.open(state, url=cfg.state.journal).close()
        if proc is None:
            raise ControlroomError(f"cannot start the server for {state}: {sys.executable}: {cannot.strerror}")
        try:
            make_state_dir(state)
            fd = os.open(state / "server.start", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise UsageError(f"{state}: cannot start the server here: {e.strerror}") from None
        fcntl.flock(fd, fcntl.LOCK_EX)  # the second of two starters waits here, then finds the first one's server
        if answers(path):
            os.close(fd)
            withdraw(proc)
            return Starting()
        rotate_log(state)
        go(proc)
        return Starting(proc, fd)
    except BaseException:
        if proc is not None:
            withdraw(proc)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise


def go(proc: subprocess.Popen) -> None:
    """Let the spawned server go on: it may create its files now. A server that died already is the client's
    to report (it reads what the server said)."""
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.write(GO)
        proc.stdin.flush()
    with contextlib.suppress(OSError):
        proc.stdin.close()


def withdraw(proc: subprocess.Popen) -> None:
    """The spawned server is not wanted: its stdin ends without a go, so it exits having made nothing."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def spawn_server(cfg: Config, *, warm: bool = False) -> subprocess.Popen:
    """Start `controlroom serve` in the background, detached from this terminal and session; ``warm``: with
    --warm (it opens the fleet's connections as soon as it listens: what a deploy, resume or rollback needs).
    It creates nothing until go() (or exits, after withdraw())."""
    state = Path(cfg.state.dir)
    # until it listens, the server's output comes to us through a pipe (so a server that cannot start tells the
    # operator why, even when it cannot write its log: a full disk); once it listens it moves its output to the log
    return subprocess.Popen(
        [sys.executable, "-m", "controlroom.cli", "serve", "--quiet", *(["--warm"] if warm else []), "--config",
         str(cfg.path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        close_fds=True, cwd=str(Path(cfg.path).resolve().parent),
        env={**os.environ, "CONTROLROOM_SERVER_LOG": str(state / LOG), "CONTROLROOM_SERVER_GO": "stdin"},
    )
