"""What a headless deploy's session and its questions (cli/questions.py) share: a typed answer read on the event
loop (ask, confirm), the exceptions that say the person left, the Printer's safe stream and the plan it reads.
cli/session.py's Session is the Conversation these take; the questions take it too, and neither module imports
the other's objects but through here."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Protocol

from controlroom.config.config import Config
from controlroom.core import events as ev

RESUME_HINT = "`controlroom deploy --resume`"


class Conversation(Protocol):
    """What ask() and the questions read and call of a session (cli.session.Session is the one there is)."""

    cfg: Config
    board: Any  # engine.board.Board
    printer: Any  # cli.deploy.Printer
    signals: set
    asking: asyncio.Future | None
    changed: asyncio.Event
    detached: bool
    interactive: bool

    def out(self, text: str, end: str = "\n", err: bool = False) -> None: ...

    async def request(self, op: str, **args: Any) -> dict: ...

    def new_printer(self, hosts: dict | None) -> None: ...


class Detached(Exception):
    """The operator left (SIGHUP, a closed terminal or pipe, [d]etach): the operation goes on in the server."""


class HungUp(Detached):
    """The terminal went away (SIGHUP, EOF or EIO on it): nobody is there to answer, or to read."""


def plan_view(cfg: Config, hosts: dict | None = None):
    """What the Printer reads of a rollout, from the config and the hosts as the server reported them."""
    known = hosts or {}
    view = {}
    for i, ph in enumerate(cfg.phases):
        for h in ph.hosts:
            phase, steps_done, state = known.get(h, (i, 0, ev.PENDING))
            view[h] = SimpleNamespace(name=h, phase=phase, steps_done=steps_done, state=state)
    return SimpleNamespace(cfg=cfg, phases=cfg.phases, hosts=view)


def read_line() -> str:
    """A line from stdin; "" at its end or when the terminal is gone (EIO)."""
    try:
        return sys.stdin.readline()
    except (OSError, ValueError):
        return ""


async def ask(session: Conversation, question: str, *, raw: bool = False, still: Callable[[], bool] | None = None
              ) -> str | None:
    """One typed answer from the terminal, stripped (lower-cased unless raw). None when a signal came first (Ctrl+C,
    SIGTERM) or when still() stopped holding (answered elsewhere). Raises HungUp at the end of input, on a terminal
    that went away, or on SIGHUP: a lost stdin is never an answer."""
    loop = asyncio.get_running_loop()
    if signal.SIGHUP in session.signals:
        raise HungUp()
    if session.signals:
        return None
    session.out(question, end="")
    fut: asyncio.Future = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not fut.done():
            fut.set_result(read_line())

    try:
        loop.add_reader(fd, readable)
    except (PermissionError, ValueError, OSError):  # not pollable (a regular file): read it directly
        line = read_line()
        if not line:
            raise HungUp() from None
        return line.strip() if raw else line.strip().lower()
    session.asking = fut
    try:
        while not fut.done():
            session.changed.clear()
            waiter = asyncio.ensure_future(session.changed.wait())
            try:
                await asyncio.wait([fut, waiter], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if session.detached:
                raise Detached()
            if not fut.done() and still is not None and not still():
                session.out("\n(answered elsewhere)")
                return None
        line = fut.result()
    except asyncio.CancelledError:
        if signal.SIGHUP in session.signals:
            raise HungUp() from None
        if session.signals:
            session.out("")
            return None
        raise
    finally:
        session.asking = None
        loop.remove_reader(fd)
    if not line:  # end of input: the terminal or the pipe is gone, nobody typed this
        raise HungUp()
    return line.strip() if raw else line.strip().lower()


async def confirm(session: Conversation, question: str, still: Callable[[], bool] | None = None) -> bool:
    """[y/N]: True only for a typed yes."""
    return await ask(session, f"{question} [y/N] ", still=still) in ("y", "yes")


class SafeOut:
    """The Printer's stream: a closed pipe detaches instead of raising in the middle of an event."""

    def __init__(self, session: Conversation) -> None:
        self.session = session
        self.buf = ""

    def write(self, text: str) -> None:
        self.buf += text

    def flush(self) -> None:
        text, self.buf = self.buf, ""
        if text:
            self.session.out(text, end="")
