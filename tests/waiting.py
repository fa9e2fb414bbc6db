"""Waiting in tests: poll a condition until it holds, with a deadline; never a fixed sleep as synchronisation.

- ``wait_for(cond, seconds, what, proc=None, detail=None, every=0.02)``: from a plain (thread) test; returns cond's truthy value.
- ``until(cond, seconds, what, detail=None)``: the same from a coroutine (the event loop keeps running meanwhile).
- ``until_shown(pilot, cond, what, seconds)``: from a Pilot test; paints what the condition saw before returning.
- ``commands_in(root)``, ``never_appears(path, root)``: an absence made an event: once no process is left in a
  host's directory, nothing there can still write a file.

Each fails saying what it waited for, so a timeout reads as the operator's story.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _more(detail: Callable[[], Any] | None) -> str:
    return f"; {detail()}" if detail else ""


def wait_for(cond: Callable[[], Any], seconds: float, what: str, proc: subprocess.Popen | None = None,
             detail: Callable[[], Any] | None = None, every: float = 0.02) -> Any:
    """Poll cond every ``every`` seconds until it is truthy and return its value; fail at the deadline, or at once
    (with its output) when proc, the process that should bring it about, ended first. At the deadline the failure
    adds detail(), when given (what the test was looking at: a screen, a log). A cond that asks a server or starts
    a process polls less often (every=0.2 or more): the machine is shared."""
    deadline = time.monotonic() + seconds
    while True:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}{_more(detail)}")
        time.sleep(every)


async def until(cond: Callable[[], Any], seconds: float = 20, what: str = "",
                detail: Callable[[], Any] | None = None) -> Any:
    """Poll cond from a coroutine until it is truthy and return its value; fail at the deadline (adding detail())."""
    deadline = time.monotonic() + seconds
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what or cond}{_more(detail)}")
        await asyncio.sleep(0.01)


async def until_shown(pilot, cond: Callable[[], Any], what: str, seconds: float = 30.0,
                      detail: Callable[[], Any] | None = None) -> None:
    """Poll cond while the app runs until it holds, then paint what it saw (rather than at the next refresh tick:
    the app's own flush() when it has one, as the control room does).

    At the deadline, fail naming what we waited for and, when given, detail() (where the app is)."""
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g} s for {what}{_more(detail)}")
        await pilot.pause(0.05)
    flush = getattr(pilot.app, "flush", None)
    if callable(flush):
        flush()
    await pilot.pause()


def commands_in(root) -> list[int]:
    """The live processes whose working directory is in ``root``: a host's commands (both fleets start them
    in the host's directory; a zombie has none)."""
    root = str(Path(root).resolve())
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd == root or cwd.startswith(root + "/"):
                pids.append(int(entry))
    return pids


async def never_appears(path, root) -> bool:
    """True if ``path`` is not there once no command is left running on the host (``root``) that could make it.

    The wait for an absence, made an event: a command left running would still be a process in the host's
    directory; once none is, nothing can create the file any more, and we look once.
    """
    await until(lambda: not commands_in(root), 30, f"every command in {root} to end")
    return not Path(path).exists()
