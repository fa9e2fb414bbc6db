"""Who answers a deploy's waits: an operator (a client asks its person), or the deploy's policy when it was started
headless (--auto passes a gate that holds, --yes every wait for the operator), even with no client attached. While
an operator's deploy waits at a gate that did not hold, the gate is checked again every interval, so that what every
client shows is what holds now."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from controlroom.core import events as ev
from controlroom.engine import gates


class Answers:
    """``interval``: the [metrics] interval now; ``current(r)``: r is the deploy the server runs now."""

    def __init__(self, *, interval: Callable[[], float], current: Callable[[object], bool]) -> None:
        self.policy = "operator"
        self._interval = interval
        self._current = current
        self._gate_watch: asyncio.Task | None = None

    def passes(self, e: ev.GateWaiting) -> bool:
        # only a wait for the operator: a gate that failed or could not be checked is never passed by --yes
        return e.kind == ev.GATE_OPERATOR and self.policy in ("yes", "auto")

    def apply(self, r, policy: str) -> None:
        """Answer the engine's waits as the deploy was asked to (an operator, --auto or --yes), even with no
        client attached. A resume may change the policy of the deploy it goes on with."""
        self.policy = policy
        loop = asyncio.get_running_loop()

        def on(e: ev.Event) -> None:
            if isinstance(e, ev.GateWaiting) and self._current(r) and self.passes(e):
                loop.call_soon(r.proceed, r.actor)
            elif isinstance(e, ev.GateWaiting) and e.kind == ev.GATE_FAILED and gates.keeper_of(r) is not None \
                    and (self._gate_watch is None or self._gate_watch.done()):
                self._gate_watch = loop.create_task(self._watch_gate(r, e))

        r.subscribe(on)

    async def _watch_gate(self, r, failed: ev.GateWaiting) -> None:
        """While a deploy an operator drives waits at a gate that did not hold, check it again every interval so
        that what every client shows is what holds now: once it holds, the wait is for the operator only (g goes
        on, the PASSED verdict in the log); should it fail again, it is a failed gate again (a reason to pass it).
        Headless policies keep their wait as it is (a parked deploy goes on only with `deploy --resume`)."""
        keeper, phase = gates.keeper_of(r), r.phases[failed.phase - 1]
        while True:
            await asyncio.sleep(max(0.5, self._interval()))
            w = r.waiting
            if w is None or w.phase != failed.phase or not self._current(r):
                return  # it went on, or ended
            if self.policy != "operator":
                continue
            # the log gets the verdicts when they change: PASSED once it holds, FAILED should it fail again
            ok, lines, verdicts = await keeper.recheck(phase, r.actor, log=False, log_ok=w.kind == ev.GATE_FAILED)
            if r.waiting is not w:
                continue  # answered or checked by someone meanwhile
            if ok and w.kind == ev.GATE_FAILED:
                keeper.announce(keeper.held(failed, lines, verdicts))
            elif not ok and w.kind == ev.GATE_OPERATOR:
                keeper.fails_again(failed, lines, verdicts)
