"""Small filesystems for the journal's failure tests: a tmpfs of a few hundred KiB mounted (as root) where a state
directory goes, filled to the last byte, and unmounted once nothing holds it. In CI a tmpfs that cannot be mounted
fails the test (CI runs as root); elsewhere it is skipped."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.waiting import wait_for


def small_tmpfs(where: Path, size: str = "1m") -> None:
    """Mount a tmpfs of `size` at `where` (made if missing), mode 0710 as a server's state directory."""
    where.mkdir(exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0710", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        why = f"cannot mount a small tmpfs to fill: {res.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def unmount(where: Path) -> None:
    """Unmount it, waiting for whatever still holds it (a server on its way out) to let go."""
    wait_for(lambda: subprocess.run(["umount", str(where)], capture_output=True).returncode == 0, 30,
             "the small tmpfs to be unmounted (its server gone)")


def fill(directory: Path) -> None:
    """Write to a file in directory until its filesystem is full."""
    fd = os.open(directory / "filler", os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass  # full
    finally:
        os.close(fd)
