"""A command on a real terminal: a pty that is its controlling terminal, as a login shell's is. The test reads the
screen, types, and can make the terminal go away (the master side closed: the kernel hangs up on the session, as
a dropped SSH connection does)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import REPO


class Terminal:
    """`controlroom ARGS --config CFG` (no --config when cfg is None) on a pty of its own (its session's controlling
    terminal)."""

    def __init__(self, cfg: str | None, *args: str, user: str = "mygrant", cwd=REPO, rows: int = 24,
                 cols: int = 80) -> None:
        import fcntl
        import pty
        import termios

        self.master, slave = pty.openpty()
        import struct

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

        def own_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        env = dict(os.environ, SUDO_USER=user)
        config = ["--config", cfg] if cfg is not None else []
        self.proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli", *args, *config], cwd=cwd,
                                     env=env, stdin=slave, stdout=slave, stderr=slave, preexec_fn=own_terminal,
                                     close_fds=True)
        os.close(slave)
        self.seen = b""
        self.gone = False

    def read_until(self, text: bytes, seconds: float, *, start: int = 0) -> None:
        """Read the screen until it shows text (after the first ``start`` bytes seen: a question asked again counts
        again); fail if the process ends first or at the deadline."""
        deadline = time.monotonic() + seconds
        while text not in self.seen[start:]:
            assert time.monotonic() < deadline and self.proc.poll() is None, self.seen[start:]
            try:
                self.seen += os.read(self.master, 4096)
            except OSError:  # EIO: the process closed its side
                assert text in self.seen[start:], self.seen[start:]

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def hang_up(self, seconds: float = 60) -> int:
        """The terminal goes away (the master closed: SIGHUP to the session, EIO on the terminal); the exit
        status of the process, which must end by itself."""
        os.close(self.master)
        self.gone = True
        return self.proc.wait(seconds)

    def close(self) -> bytes:
        """Kill the process if it still runs; everything it wrote."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self.gone:
            try:
                while chunk := os.read(self.master, 4096):
                    self.seen += chunk
            except OSError:
                pass
            os.close(self.master)
            self.gone = True
        return self.seen
