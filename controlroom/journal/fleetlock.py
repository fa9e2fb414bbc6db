"""The OS lock that proves an operation on the fleet is alive: ``flock`` on STATE_DIR/fleet.lock.

A deploy, a resume and a rollback each hold it for as long as they run. The kernel drops it when the holder dies,
whatever killed it (kill -9, a reboot of the bastion), so liveness never depends on PIDs, host names or clocks.
The journal's lock row says *who* holds the fleet and why; this says whether that holder is still there.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path

from controlroom.core.errors import LockedError

_HELD: dict[str, FleetLock] = {}  # path -> the lock this process holds (flock is per open file, not per process)


def _path(state_dir: Path) -> str:
    return str(Path(state_dir) / "fleet.lock")


class FleetLock:
    """``acquire()`` or raise LockedError; ``release()``; also a context manager."""

    def __init__(self, state_dir: Path) -> None:
        self.path = _path(state_dir)
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, holder: str = "another operation", wait: float = 0.5) -> FleetLock:
        """Take the lock (re-entrant within this object). ``wait`` covers a probe that holds it for an instant."""
        if self._fd is not None:
            self._depth += 1
            return self
        other = _HELD.get(self.path)
        if other is not None:
            raise LockedError(f"the fleet is busy: {holder} runs in this process")
        # the server's alone: whoever may open it, even read-only, may flock it and stop every deploy
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockedError(f"the fleet is locked by {holder}") from None
                time.sleep(0.02)  # a probe (is_held) holds it for microseconds; retry briefly
        self._fd = fd
        self._depth = 1
        _HELD[self.path] = self
        try:  # who holds it, for a teammate who finds it taken before the journal names the holder
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{holder} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})\n".encode(), 0)
        except OSError:
            pass
        return self

    def holder_pid(self) -> int | None:
        """The pid the holder wrote into the lock file."""
        m = re.search(r"\(pid (\d+),", self.holder())
        return int(m.group(1)) if m else None

    def holder(self) -> str:
        """What the holder wrote into the lock file (who and since when), or ''."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return f.read(300).strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        _HELD.pop(self.path, None)
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> FleetLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_held(state_dir: Path) -> bool:
    """Whether any live process (this one included) holds the fleet lock of state_dir now."""
    path = _path(state_dir)
    if path in _HELD:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot look: do not call a holder dead on a guess
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock we may have taken
    return False


def holds_here(state_dir: Path) -> bool:
    """Whether this process holds the fleet lock of state_dir."""
    return _path(state_dir) in _HELD
