"""Starting the control-room server for a client: find whether one answers, spawn one, check the journal, let it go.

Here, apart from the client's connection (client.py), and without asyncio or the config module: a deploy, resume
or rollback calls early() as soon as its command line is checked, from a peek at its config (config/locate.py),
so the server's interpreter starts while the client reads its config whole and imports the rest of itself
(asyncio, the printer) instead of after; finish() then confirms the peek against the config as loaded. Other
clients call begin() (both at once). The client's connect() then waits for the server it began (client.py).

The spawned server creates nothing until its starter says so: its stdin is a pipe from the starter, and it reads
one line from it before it makes any file (server.wait_for_go). "go" follows a journal check that passed, with
server.start held; otherwise (the check failed, the config did not load, another starter's server answered first)
the server is withdrawn (its pipe closed, the process stopped), and a dead starter's server reads the end of its
pipe and exits: either way it has made nothing. So a journal that cannot be opened (read-only for this user,
corrupted, a full disk) is named in the check's one line, and nothing is created when it fails.

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
from pathlib import Path
from typing import TYPE_CHECKING

from controlroom.core.errors import ControlroomError, UsageError
from controlroom.server.statedir import GO, LOG, make_state_dir, rotate_log, socket_path

if TYPE_CHECKING:
    from controlroom.config.config import Config


class Starting:
    """What begin() did: ``proc`` is the server it spawned (None: one answered), ``fd`` the server.start lock it
    holds until ``done()``, which the client calls once it has connected (or given up)."""

    def __init__(self, proc: subprocess.Popen | None = None, fd: int | None = None) -> None:
        self.proc = proc
        self.fd = fd

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


class Early:
    """A server spawned for the state directory ``state`` of the config ``config`` (``proc``; None: one answered
    there, or none could be spawned: ``cannot``), not told to go yet: finish() checks and lets it go."""

    def __init__(self, config: Path, state: Path, proc: subprocess.Popen | None = None,
                 cannot: OSError | None = None) -> None:
        self.config = config
        self.state = state
        self.proc = proc
        self.cannot = cannot

    def withdraw(self) -> None:
        """The spawned server is not wanted: its stdin ends without a go, and it is stopped where it stands (it has
        made nothing: it makes its files only after its go)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def early(config: Path, state: Path, *, warm: bool = False) -> Early:
    """Spawn the server of ``state`` unless one answers there; it waits for finish()'s go before it makes any
    file. UsageError when the socket path is too long."""
    if answers(socket_path(state)):
        return Early(config, state)
    try:
        return Early(config, state, spawn_server(config, state, warm=warm))
    except OSError as e:  # said by finish(), after the journal's check: what is wrong with the journal comes first
        return Early(config, state, cannot=e)


def begin(cfg: Config, *, warm: bool = False) -> Starting:
    """Spawn the server of cfg's state directory unless one answers; blocks while another client starts one."""
    return finish(early(Path(cfg.path), Path(cfg.state.dir), warm=warm), cfg, warm=warm)


def finish(begun: Early | None, cfg: Config, *, warm: bool = False) -> Starting:
    """The server ``begun`` (by early(), from a peek at the config before it was read whole) made cfg's: the
    journal is checked, server.start taken, and the server told to go. One begun for another config or state
    directory than cfg's (the peek was wrong), or none, is begun here instead.

    The journal is opened here, once the server is spawned and before it may create anything: the server could
    only say in its log what is wrong with it (read-only for this user, corrupted, a full disk), so the operator
    reads that one line instead, and nothing is created when it fails."""
    state = Path(cfg.state.dir)
    if begun is None or begun.state != state or begun.config != Path(cfg.path):
        if begun is not None:
            begun.withdraw()
        begun = early(Path(cfg.path), state, warm=warm)
    if begun.proc is None and begun.cannot is None:
        return Starting()  # a server answers
    fd = None
    try:
        from controlroom.journal.journal import Journal

        Journal.open(state, url=cfg.state.journal).close()
        if begun.cannot is not None:  # (a server that answers returned above: here proc or cannot is set)
            raise ControlroomError(f"cannot start the server for {state}: {sys.executable}: {begun.cannot.strerror}")
        try:
            make_state_dir(state)
            fd = os.open(state / "server.start", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise UsageError(f"{state}: cannot start the server here: {e.strerror}") from None
        fcntl.flock(fd, fcntl.LOCK_EX)  # the second of two starters waits here, then finds the first one's server
        if answers(socket_path(state)):
            os.close(fd)
            begun.withdraw()
            return Starting()
        rotate_log(state)
        proc, begun.proc = begun.proc, None
        go(proc)
        return Starting(proc, fd)
    except BaseException:
        begun.withdraw()
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


def spawn_server(config: Path, state: Path, *, warm: bool = False) -> subprocess.Popen:
    """Start `controlroom serve --config CONFIG` (whose state directory is ``state``) in the background, detached
    from this terminal and session; ``warm``: with --warm (it opens the fleet's connections as soon as it
    listens: what a deploy, resume or rollback needs). It creates nothing until go() (or is stopped by Early.withdraw())."""
    # until it listens, the server's output comes to us through a pipe (so a server that cannot start tells the
    # operator why, even when it cannot write its log: a full disk); once it listens it moves its output to the log
    return subprocess.Popen(
        [sys.executable, "-m", "controlroom.cli", "serve", "--quiet", *(["--warm"] if warm else []), "--config",
         str(config)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        close_fds=True, cwd=str(Path(config).resolve().parent),
        env={**os.environ, "CONTROLROOM_SERVER_LOG": str(state / LOG), "CONTROLROOM_SERVER_GO": "stdin"},
    )
