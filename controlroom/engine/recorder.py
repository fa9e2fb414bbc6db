"""How the engine's parts record what happens in one rollout: the narrow interface they are given.

The journal commits an event before anyone sees it; then the rollout's subscribers (the server, the gate keeper)
do. Host output is seen, never journaled. A host moves through its own ``hostrun.HostRun.move``, which checks the
move against ``events.TRANSITIONS`` and emits it here; its memory changes only once the journal has it. ``poke``
wakes the rollout's phase loop. The host work (hostrun.HostWork), recovery, the overrides and the gate keeper are each given the
rollout's Recorder; none of them touches the rollout's own state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from controlroom.core import events as ev
from controlroom.core.identity import Actor
from controlroom.journal.journal import Journal, publish


class Recorder:
    """The record of one rollout: events, host output, deploy-log entries, and the loop's wake-up.

    ``seen`` is called with each committed event before the subscribers see it (the rollout keeps its wait)."""

    def __init__(self, journal: Journal, *, actor: Actor, revision: str,
                 seen: Callable[[ev.Event], None] | None = None) -> None:
        self.journal = journal
        self.actor = actor  # whose rollout it is: who its own entries name
        self.user = actor.user
        self.revision = revision
        self.rollout_id = 0  # the rollout's number in the journal, once it has one
        self._seen = seen
        self._subscribers: list[Callable[[ev.Event], None]] = []
        self._wake = asyncio.Event()

    def subscribe(self, fn: Callable[[ev.Event], None]) -> None:
        self._subscribers.append(fn)

    def emit(self, event: ev.Event) -> None:
        """Commit ``event`` (raises JournalError if the journal cannot), then let everyone see it."""
        self.journal.record(event)
        if self._seen is not None:
            self._seen(event)
        publish(self._subscribers, event)  # a subscriber's error never changes what happens on the fleet

    def output(self, host: str, stream: str, line: str) -> None:
        """A line of a host's output: seen by the subscribers, not journaled."""
        publish(self._subscribers, ev.HostOutput(self.rollout_id, host=host, stream=stream, line=line))

    def log(self, kind: str, text: str, by: Actor | None = None) -> None:
        """An entry of the deploy log, by ``by`` (an operator's intent; else the rollout's own actor)."""
        self.journal.add_log(by or self.actor, kind, text, self.revision, rollout_id=self.rollout_id)

    def poke(self) -> None:
        """Wake the rollout's loop: something it waits on may have changed."""
        self._wake.set()

    def next_poke(self) -> Coroutine[Any, Any, Literal[True]]:
        """What to await for the next poke from now on."""
        self._wake.clear()
        return self._wake.wait()

    async def until(self, cond: Callable[[], bool]) -> None:
        """Return once ``cond()`` holds, looking again at each poke."""
        while not cond():
            self._wake.clear()
            await self._wake.wait()
