"""The deploy-log pane's controller: the fleet lock and the new deploy-log entries, read from the server.

A teammate may write to the journal from another process, so the pane also looks every few seconds; a
LogEntryAdded or LockChanged event makes it look at once. One look at a time (coalesce.py).

The pane's title says the talk's line of the last week ("In the last 7 days: 67 deploys of 496 changes by 18
people"), as the server computes it from the record (its "figures" read): asked once the server first answers a
look, and again whenever a deploy starts or ends.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from controlroom.app.coalesce import Coalesced
from controlroom.app.link import Link
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.core.text import clean
from controlroom.server.wire import Lock
from widgets.deploy_log import LockView, entry_line


class DeployLog:
    """The lock and the deploy log as the server last said; `take_entries` hands the new lines to the pane."""

    def __init__(self, link: Link, start: Callable[[Callable[[], Coroutine[Any, Any, None]]], object],
                 start_figures: Callable[[Callable[[], Coroutine[Any, Any, None]]], object] | None = None) -> None:
        self._link = link
        self.lock: Lock | None = None
        self.lock_dirty = True
        self._entries: list[str] = []
        self._last_id = 0
        self._look = Coalesced(self._fetch, start)
        self.figures = ""  # the talk's line, as the server said it last ("" until it did)
        self.figures_dirty = False
        self._figures_asked = False
        self._figures = Coalesced(self._fetch_figures, start_figures or start)

    def poll(self) -> None:
        """The timer: ask the server what the journal holds now."""
        if self._link.client is not None:
            self.want()

    def want(self) -> None:
        """Fetch the lock and the new deploy-log entries (one request at a time; a wish meanwhile asks again)."""
        self._look.want()

    def on_event(self, e: ev.Event, seq: int = 0) -> None:
        self.want()  # LogEntryAdded, LockChanged

    def on_deploy(self, e: ev.Event, seq: int = 0) -> None:
        """RolloutStarted, RolloutFinished: the week's figures have one deploy more, or its result."""
        self.want_figures()

    def want_figures(self) -> None:
        self._figures_asked = True
        self._figures.want()

    async def _fetch_figures(self) -> bool:
        client = self._link.client
        if client is None:
            return False
        try:
            line = (await client.request("figures")).get("line")
        except (ControlroomError, AttributeError):
            return False  # an older server, or a record it cannot read: the title stays as it is
        if isinstance(line, str) and line != self.figures:
            self.figures = clean(line, 160)
            self.figures_dirty = True
        return True

    async def _fetch(self) -> bool:
        client = self._link.client
        if client is None:
            return False
        try:
            reply = await client.request("journal", since=self._last_id)
            for d in reply.get("log", ()):
                if d["id"] > self._last_id:
                    self._last_id = d["id"]
                    self._entries.append(entry_line(d["at"], d["user"], d["kind"], d["text"],
                                                    d.get("revision")))  # cleaned there
            self._set_lock(reply)
        except (ControlroomError, TypeError, KeyError):
            return False
        if not self._figures_asked:  # the server answers: the week's figures once, then at each deploy's end
            self.want_figures()
        return True

    def _set_lock(self, reply: dict) -> None:
        lock = Lock.from_wire(reply.get("lock"))
        if lock != self.lock:
            self.lock = lock
            self.lock_dirty = True

    async def fresh_lock(self) -> Lock | None:
        """The lock as the server sees it now (before a dialog that depends on it)."""
        client = self._link.client
        if client is not None:
            try:
                reply = await client.request("journal", since=self._last_id)
                self.lock = Lock.from_wire(reply.get("lock"))
                self.lock_dirty = True
            except (ControlroomError, TypeError, KeyError):
                pass
        return self.lock

    def take_entries(self) -> list[str]:
        """The entries that came since the last call (the flush writes them)."""
        new, self._entries = self._entries, []
        return new

    def lock_view(self) -> LockView | None:
        lock = self.lock
        if lock is None:
            return None
        return LockView(clean(lock.user, 64), lock.at, clean(lock.reason), lock.rollout_id, None, lock.stale)
