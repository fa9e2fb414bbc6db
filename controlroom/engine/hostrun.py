"""One host in one rollout: its state as the engine knows it (``HostRun``), and the work done on it (``HostWork``).

``HostWork`` runs a host for its rollout (rollout.py): its steps under the deploy's lease with their receipts
(hostside.py), its health check, and what is recorded when it is stopped (abort, skip, Ctrl+C). It records only
through the Recorder it is given (recorder.py) and tells the rollout what happened by what ``run`` returns or raises;
it never writes the rollout's state.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.errors import DeployLost, JournalError
from controlroom.engine.recorder import Recorder
from controlroom.fleet import hostside
from controlroom.fleet.hostside import LIVE_MARK, SKIP_MARK, Operation
from controlroom.fleet.ssh import CommandResult, SSHPool, render

OUTPUT_LINES = 200


@dataclass
class HostRun:
    """One host in one rollout, as the engine knows it now."""

    name: str
    phase: int
    state: ev.HostState = ev.PENDING
    step: int = 0
    steps: int = 0
    steps_done: int = 0
    reason: str = ""
    revision: str | None = None
    previous: str | None = None
    output: deque = field(default_factory=lambda: deque(maxlen=OUTPUT_LINES))
    started: float | None = None
    finished: float | None = None
    skipped_by_operator: bool = False
    interrupted: bool = False  # its command was stopped by interrupt() (Ctrl+C) in this run: recorded as failed
    result: CommandResult | None = None
    skip_requested: str | None = None  # the operator skipped it while it ran: stopped, then recorded as skipped
    released: bool = False  # its last command gave its lease back (a first-phase host keeps it to the end)

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def move(self, record: Recorder, state: ev.HostState, *, step: int = 0, reason: str = "",
             revision: str | None = None, steps_done: int | None = None) -> None:
        """Move to a new state on ``record``: the journal commits it first; memory changes only once it has."""
        state = ev.check_transition(self.name, self.state, state)  # IllegalTransition: a bug in the engine
        if steps_done is None:
            steps_done = self.steps_done
            if state == ev.RUNNING:
                steps_done = step - 1
            elif state in (ev.CHECKING, ev.DONE):
                steps_done = self.steps
        now = time.monotonic()
        finished = now if state in ev.FINAL else self.finished
        seconds = 0.0 if self.started is None else (finished or now) - self.started
        record.emit(ev.HostStateChanged(
            record.rollout_id, host=self.name, phase=self.phase, state=state, step=step, steps=self.steps,
            reason=reason, revision=revision, previous=self.previous, seconds=round(seconds, 3),
            steps_done=steps_done))
        self.state, self.step, self.reason, self.steps_done, self.finished = state, step, reason, steps_done, finished
        if revision:
            self.revision = revision


def live_from(res: CommandResult) -> str | None:
    last = res.stdout.strip().rsplit("\n", 1)[-1].strip() if res.stdout.strip() else ""
    return last if last and last != "none" else None


def _stop_if_cancelled() -> None:
    """Python before 3.12 can lose a cancellation in asyncio.wait_for (which asyncssh uses) when the awaited thing
    finishes at the same moment: an aborted host would carry on to its next step. The task still counts the
    request, so honour it here."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class HostWork:
    """The work on one host of a rollout: pending -> connecting -> running k/n -> checking -> done, or failed.

    Given the config and the pool, the recorder of its rollout, the operation that acts on the hosts (this deploy's
    lease) and ``why_stopped``: what a stopped command is recorded as ("interrupted", "aborted", "stopped"), or None
    when nothing can be recorded (the journal failed).
    """

    def __init__(self, cfg: Config, pool: SSHPool, record: Recorder, op: Operation, *,
                 why_stopped: Callable[[], str | None]) -> None:
        self.cfg = cfg
        self.pool = pool
        self.record = record
        self.op = op
        self.why_stopped = why_stopped

    async def run(self, hr: HostRun) -> str | None:
        """Run the host to its end. Returns who holds it when another operation (another journal) does (nothing of
        ours ran there), else None.

        Raises only CancelledError (after recording the host) and JournalError (the record cannot be kept); any
        other error is that host's failure, with its reason.
        """
        try:
            return await self._steps(hr)
        except asyncio.CancelledError:
            if hr.state in ev.IN_FLIGHT and self.why_stopped() is not None:
                await self._record_stopped(hr)
            raise
        except JournalError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug must not hide a host: it is that host's failure
            if hr.state != ev.FAILED:
                hr.move(self.record, ev.FAILED, step=hr.step, reason=f"internal error: {type(e).__name__}: {e}")
            return None

    def _on_line(self, hr: HostRun):
        """The host's output as it streams: our own marker lines are taken, the rest is shown."""

        live_taken = False  # the host reports its live revision once, before its first step; a step's own
        # output that prints the marker later is shown as output and never names the rollback's target

        def on_line(stream: str, line: str) -> None:
            nonlocal live_taken
            if stream == "out" and line.startswith(LIVE_MARK) and not live_taken and hr.previous is None:
                live_taken = True
                previous = line[len(LIVE_MARK):].strip()
                if previous and previous != "none" and hostside.is_token(previous):
                    hr.previous = previous
                    # on the journal's record at once (the host's receipt has it too), before the step can end
                    hr.move(self.record, hr.state, step=hr.step, reason=hr.reason)
                return
            if stream == "out" and line.startswith(SKIP_MARK):
                line = f"(step {line[len(SKIP_MARK):]} already done on this host for this deploy: not run again)"
            hr.output.append(line if stream == "out" else f"[{stream}] {line}")  # as the board keeps it
            self.record.output(hr.name, stream, line)

        return on_line

    async def _steps(self, hr: HostRun) -> str | None:
        steps = self.cfg.deploy.steps
        revision = self.record.revision
        hr.started = time.monotonic()
        hr.finished = None
        timeout = self.cfg.deploy.step_timeout
        on_line = self._on_line(hr)
        hr.move(self.record, ev.CONNECTING)
        reach = await self.pool.connect(hr.name)
        _stop_if_cancelled()
        if not reach.ok:
            return self._fail(hr, reach, "connecting")
        first = True
        health = self.cfg.deploy.health
        # the hosts of the first phase keep the lease until the operation ends: a deploy from another journal
        # meets it at its canary and stops before changing anything. Every other host gives its lease back
        # with its last command, in the same round trip.
        keep = hr.phase == 0
        hr.released = False
        for k in range(hr.steps_done + 1, len(steps) + 1):
            hr.move(self.record, ev.RUNNING, step=k)
            cmd = render(steps[k - 1], revision=revision, previous=hr.previous or "", host=hr.name)
            hr.output.append(f"$ {cmd}")
            # the step runs under this deploy's lease and leaves its receipt in the same shell the moment it
            # succeeds; a step the receipt already has is not run again. The host's first command of this
            # process also reports (and records on the host) its live revision: what a rollback goes back to.
            live = self.cfg.release.live_command if first and hr.previous is None else None
            first = False
            last = k == len(steps) and not health and not keep
            res = await self.pool.run(hr.name, hostside.step_command(self.op, k, cmd, live_command=live,
                                                                     release=last),
                                      timeout=timeout, on_line=on_line)
            hr.result = res
            hr.released = last and res.status in ("ok", "exit")
            _stop_if_cancelled()
            if not res.ok:
                return self._fail(hr, res, f"step {k}/{len(steps)}")
        if health:
            hr.move(self.record, ev.CHECKING)
            health = render(health, revision=revision, previous=hr.previous or "", host=hr.name)
            res = await self.pool.run(hr.name, hostside.guarded(self.op, health, release=not keep),
                                      timeout=timeout, on_line=on_line)
            hr.released = not keep and res.status in ("ok", "exit")
            _stop_if_cancelled()
            if not res.ok:
                return self._fail(hr, res, "health check")
        hr.move(self.record, ev.DONE, revision=revision)
        return None

    async def _record_stopped(self, hr: HostRun) -> None:
        """A host whose command was stopped (abort, skip, Ctrl+C): never left in an unknown state, so ask it what
        it now runs, and record why it stopped."""
        live = None
        try:
            res = await asyncio.shield(self.pool.run(hr.name, self.cfg.release.live_command, timeout=5))
            live = live_from(res) if res.ok else None
        except BaseException:  # noqa: BLE001 - best effort while stopping
            pass
        where = f"step {hr.step}/{hr.steps}" if hr.state == ev.RUNNING else hr.state
        if hr.skip_requested:
            by, hr.skip_requested = hr.skip_requested, None
            hr.skipped_by_operator = True
            hr.move(self.record, ev.SKIPPED, step=hr.step, reason=f"skipped by {by} during {where}; live revision "
                             f"{live or 'unknown'}", revision=live)
            self.record.poke()
            return
        why = self.why_stopped() or "stopped"
        hr.interrupted = why == "interrupted"
        hr.move(self.record, ev.FAILED, step=hr.step, reason=f"{why} during {where}; live revision "
                         f"{live or 'unknown'}", revision=live)

    def _fail(self, hr: HostRun, res: CommandResult, where: str) -> str | None:
        if res.exit_code == hostside.HELD_EXIT and (taker := hostside.fenced_by(res.stdout)):
            # the host has a newer driver's lease of this deploy: this driver lost it, and records nothing more
            raise DeployLost(f"this bastion lost deploy #{self.record.rollout_id}: {hr.name} refused its {where}, "
                             f"the deploy was taken over by {taker}; it acts on nothing more for it")
        holder = hostside.held_by(res.stdout) if res.exit_code == hostside.HELD_EXIT else None
        if holder:
            # another operation (another journal) holds this host: nothing of ours ran on it
            hr.move(self.record, ev.FAILED, step=hr.step, reason=f"held by {holder} ({where})")
            return holder
        detail = res.reason if res.status != "exit" else (res.stderr.rsplit("\n", 1)[-1] or res.reason)
        reason = f"{res.label}" if detail == res.label else f"{res.label}: {detail}"
        hr.move(self.record, ev.FAILED, step=hr.step, reason=f"{reason} ({where})")
        return None
