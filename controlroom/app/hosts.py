"""The host view's controller: one host's recent output and last result, asked of the server while its view is
open, then extended by the HostOutput events (the server numbers both, so nothing is shown twice)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

from controlroom.app.coalesce import Coalesced
from controlroom.app.link import Link
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError

HOST_LINES = 200  # lines of one host's output kept while its view is open (the view shows the last 200)


class FollowedHosts:
    """host -> its output and result as the server keeps them, for each open host view."""

    def __init__(self, link: Link, start: Callable[[str, Callable[[], Coroutine[Any, Any, None]]], object]) -> None:
        self._link = link
        self._start = start
        self._followed: dict[str, SimpleNamespace | None] = {}
        self._looks: dict[str, Coalesced] = {}

    def follow(self, host: str) -> None:
        """Ask the server for the host's recent output and last result; HostOutput events then extend it."""
        self._followed[host] = None  # known to be wanted; filled by the reply
        self._want(host)

    def unfollow(self, host: str) -> None:
        self._followed.pop(host, None)

    def record(self, host: str) -> SimpleNamespace | None:
        """What the host view shows for a host: the server's record of it once fetched, else None (the board)."""
        return self._followed.get(host)

    def refollow(self) -> None:
        """A snapshot came (maybe from a new server): each followed host's output again, as it numbers it."""
        for host in list(self._followed):
            self._followed[host] = None
            self._want(host)

    def on_output(self, e: ev.HostOutput, seq: int) -> None:
        run = self._followed.get(e.host)
        if run is not None and seq > run.seq:
            run.output.append(e.line)

    def on_state(self, e: ev.HostStateChanged, seq: int) -> None:
        if e.host in self._followed:
            self._want(e.host)  # its last command's result changed

    def _want(self, host: str) -> None:
        look = self._looks.get(host)
        if look is None:
            look = self._looks[host] = Coalesced(lambda: self._fetch(host), lambda work: self._start(host, work))
        look.want()

    async def _fetch(self, host: str) -> bool:
        client = self._link.client
        if host not in self._followed or client is None:
            return False
        try:
            reply = await client.request("output", host=host)
            run = self._followed.get(host)
            result = reply.get("result")
            result = SimpleNamespace(**result) if result else None
            if run is None and host in self._followed:
                run = SimpleNamespace(output=deque(reply.get("lines", ()), maxlen=HOST_LINES),
                                      seq=int(reply.get("seq") or 0), result=None, revision=None, previous=None)
                self._followed[host] = run
            if run is not None:
                run.result, run.revision, run.previous = result, reply.get("revision"), reply.get("previous")
        except (ControlroomError, TypeError, KeyError):
            return False
        return True
