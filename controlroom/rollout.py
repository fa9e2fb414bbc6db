"""The rollout engine: phases x hosts, the host state machine, the failure budget, gates and operator intents.

Plain asyncio. The engine changes state only through ``_emit``: the journal commits the event, then subscribers
(CLI printer, TUI, notifier) see it. Operator intents (pause, resume, abort, retry, skip, proceed, rollback) are
plain methods, called from the engine's own event loop.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from controlroom import events as ev
from controlroom.config import Config
from controlroom.errors import ControlroomError, LockedError
from controlroom.inventory import Phase
from controlroom.journal import Journal
from controlroom.ssh import CommandResult, SSHPool, render

OUTPUT_LINES = 200
LIVE_MARK = "controlroom-live:"  # prefixes the live revision a host reports before its first step
STEP_RECEIPT = ".controlroom-step"  # on each host, in the deploy user's home: "ROLLOUT:STEP" of the last step done


@dataclass
class HostRun:
    """One host in one rollout, as the engine knows it now."""

    name: str
    phase: int
    state: str = ev.PENDING
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
    result: CommandResult | None = None

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started


def _live_from(res: CommandResult) -> str | None:
    last = res.stdout.strip().rsplit("\n", 1)[-1].strip() if res.stdout.strip() else ""
    return last if last and last != "none" else None


class Rollout:
    """Ship ``revision`` to the fleet of ``cfg`` phase by phase. ``await run()`` drives it to the end.

    confirm: "config" waits for proceed() after phases with auto = false; "all" after every phase; "none" never.
    """

    def __init__(
        self,
        cfg: Config,
        pool: SSHPool,
        journal: Journal,
        *,
        revision: str,
        user: str,
        confirm: str = "config",
        force_reason: str | None = None,
        gate_check: Callable[[Phase], tuple[bool, str]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.pool = pool
        self.journal = journal
        self.revision = revision
        self.user = user
        self.confirm = confirm
        self.force_reason = force_reason
        self.gate_check = gate_check
        self.phases: tuple[Phase, ...] = cfg.phases
        self.hosts: dict[str, HostRun] = {}
        for i, ph in enumerate(self.phases):
            for h in ph.hosts:
                self.hosts[h] = HostRun(h, i, steps=len(cfg.deploy.steps))
        self.id = 0
        self.status = "new"
        self.phase_index = 0
        self.previous: str | None = None
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._subscribers: list[Callable[[ev.Event], None]] = []
        self._wake = asyncio.Event()
        self._aborted = False
        self._proceed = False
        self._proceed_user: str | None = None
        self._forced = False  # the operator chose to go on past the failure budget of this phase
        self._paused = False
        self._halted = False
        self._tasks: dict[str, asyncio.Task] = {}
        self._resumed = False
        self._finished: ev.RolloutFinished | None = None
        self._done = asyncio.Event()
        self._running = False
        self._retry_queue: deque[str] = deque()
        self._entered = -1  # the latest phase this process has started (a rerun does not pass its gates again)

    # ------------------------------------------------------------------------------------------ events
    def subscribe(self, fn: Callable[[ev.Event], None]) -> None:
        self._subscribers.append(fn)

    def _emit(self, event: ev.Event) -> None:
        self.journal.record(event)  # committed before anyone sees it
        for fn in self._subscribers:
            fn(event)

    def _log(self, kind: str, text: str, user: str | None = None) -> None:
        self.journal.add_log(user or self.user, kind, text, self.revision, rollout_id=self.id)

    def _set(self, hr: HostRun, state: str, *, step: int = 0, reason: str = "", revision: str | None = None) -> None:
        hr.state = state
        hr.step = step
        hr.reason = reason
        if state == ev.RUNNING:
            hr.steps_done = step - 1
        elif state in (ev.CHECKING, ev.DONE):
            hr.steps_done = hr.steps
        if revision:
            hr.revision = revision
        if state in ev.FINAL:
            hr.finished = time.monotonic()
        self._emit(
            ev.HostStateChanged(
                self.id,
                host=hr.name,
                phase=hr.phase,
                state=state,
                step=step,
                steps=hr.steps,
                reason=reason,
                revision=revision,
                previous=hr.previous,
                seconds=round(hr.seconds, 3),
                steps_done=hr.steps_done,
            )
        )

    # ------------------------------------------------------------------------------------------ intents
    def _poke(self) -> None:
        self._wake.set()

    def pause(self, user: str) -> None:
        """Start no new host; in-flight hosts finish."""
        if self.status in ev.ROLLOUT_FINAL or self._paused:
            return
        self._paused = True
        self.status = ev.R_PAUSED
        self._emit(ev.RolloutPaused(self.id, user=user))
        self._log("PAUSE", "no new host starts", user)
        self._poke()

    def resume(self, user: str) -> None:
        if not self._paused:
            return
        self._paused = False
        self.status = ev.R_HALTED if self._halted else ev.R_RUNNING
        self._emit(ev.RolloutResumed(self.id, user=user))
        self._log("RESUME", "", user)
        self._poke()

    def abort(self, user: str) -> None:
        """Cancel in-flight hosts; pending hosts become skipped."""
        if self.status in ev.ROLLOUT_FINAL or self._aborted:
            return
        self._aborted = True
        inflight = sum(1 for h in self.hosts.values() if h.state in ev.IN_FLIGHT)
        pending = sum(1 for h in self.hosts.values() if h.state == ev.PENDING)
        detail = f"{inflight} in flight cancelled, {pending} pending skipped"
        self._emit(ev.OperatorAction(self.id, user=user, action="abort", detail=detail))
        self._log("ABORT", detail, user)
        for t in self._tasks.values():
            t.cancel()
        self._poke()

    def proceed(self, user: str) -> None:
        """Go on: past a gate or a phase boundary, or past an exceeded failure budget."""
        if self._halted:
            self._forced = True
            failed = [h.name for h in self._phase_hosts(self.phase_index) if h.state == ev.FAILED]
            self._emit(ev.OperatorAction(self.id, user=user, action="proceed",
                                         detail=f"past the failure budget with {len(failed)} failed"))
            self._log("FORCE", f"proceeded past the failure budget of {self.phases[self.phase_index].name}: "
                      f"{', '.join(failed)} failed", user)
        self._proceed = True
        self._proceed_user = user
        self._poke()

    def retry(self, host: str, user: str) -> None:
        """Run a failed (or skipped) host again from the first step it has not finished."""
        hr = self.hosts.get(host)
        if hr is None or hr.state not in (ev.FAILED, ev.SKIPPED) or hr.phase != self.phase_index:
            raise ControlroomError(f"{host}: only a failed host of the current phase can be retried")
        self._requeue(hr, user)
        self._retry_queue.append(host)
        self._poke()

    def _requeue(self, hr: HostRun, user: str, note: str = "") -> None:
        """A failed or skipped host goes back to pending, on the record (retry, rerun and resume alike)."""
        self._emit(ev.OperatorAction(self.id, user=user, action="retry", host=hr.name, detail=hr.reason))
        self._log("RETRY", f"{hr.name} ({hr.reason}){note}", user)
        hr.skipped_by_operator = False
        hr.finished = None
        self._set(hr, ev.PENDING)

    def skip(self, host: str, user: str) -> None:
        """Give up on one host in this rollout; it counts against the failure budget and is logged."""
        hr = self.hosts.get(host)
        if hr is None or hr.state not in (ev.PENDING, ev.FAILED):
            raise ControlroomError(f"{host}: only a pending or failed host can be skipped")
        self._emit(ev.OperatorAction(self.id, user=user, action="skip", host=host, detail=hr.reason))
        self._log("SKIP", f"{host}" + (f" ({hr.reason})" if hr.reason else ""), user)
        hr.skipped_by_operator = True
        self._set(hr, ev.SKIPPED, reason=f"skipped by {user}" + (f" after {hr.reason}" if hr.reason else ""))
        self._poke()

    # ------------------------------------------------------------------------------------------ running
    def _phase_hosts(self, i: int) -> list[HostRun]:
        return [self.hosts[h] for h in self.phases[i].hosts]

    def budget_used(self, i: int) -> int:
        """How much of phase i's failure budget is spent: failed hosts and hosts the operator skipped."""
        return sum(1 for h in self._phase_hosts(i) if h.state == ev.FAILED or h.skipped_by_operator)

    async def _begin(self) -> None:
        hosts = tuple((ph.name, ph.hosts) for ph in self.phases)
        if not self._resumed:
            self.previous = await self._fleet_revision()
            self.id = self.journal.new_rollout(self.revision, self.previous, self.user, hosts)
        try:
            self.journal.take_lock(self.user, f"deploying {self.revision}", rollout_id=self.id,
                                   force_reason=self.force_reason)
        except LockedError:
            if not self._resumed:
                self.journal.discard_rollout(self.id)
            raise
        self.status = ev.R_RUNNING
        self._emit(ev.RolloutStarted(self.id, revision=self.revision, previous=self.previous, user=self.user,
                                     phases=hosts, resumed=self._resumed))
        if self._resumed:
            self._log("DEPLOY RESUMED", f"{self.previous or '?'} -> {self.revision}")
        else:
            forced = f" (forced past the lock: {self.force_reason})" if self.force_reason else ""
            self._log("DEPLOY START", f"{self.previous or '?'} -> {self.revision} to {len(self.hosts)} hosts "
                      f"in {len(self.phases)} phases{forced}")

    async def _fleet_revision(self) -> str | None:
        """What the fleet runs now: the journal's record, else the answer of the first host."""
        values = [live for live, _ in self.journal.live_revisions().values() if live]
        if values:
            return max(set(values), key=values.count)
        first = self.phases[0].hosts[0]
        res = await self.pool.run(first, self.cfg.release.live_command, timeout=self.cfg.deploy.step_timeout)
        return _live_from(res) if res.ok else None

    async def run(self) -> ev.RolloutFinished:
        """Run every phase to the end (or abort). Holds the fleet lock while it runs."""
        self._running = True
        try:
            await self._begin()
        except BaseException:
            self._running = False
            raise
        try:
            start = self.phase_index
            for i in range(start, len(self.phases)):
                if self._resumed and i > start and not any(h.state == ev.PENDING for h in self._phase_hosts(i)):
                    continue  # a resume passes over phases that have nothing left to do
                self.phase_index = i
                if i > 0 and not (self._resumed and (i <= self._entered or self._phase_started(i))):
                    await self._boundary(i)
                if self._aborted:
                    break
                await self._run_phase(i)
                if self._aborted:
                    break
            if self._aborted:
                for hr in self.hosts.values():
                    if hr.state == ev.PENDING:
                        self._set(hr, ev.SKIPPED, reason="aborted")
            return self._finish()
        except BaseException:
            if self._finished is None:
                # cancelled or crashed in-process: leave the rollout resumable, never half-recorded
                for t in self._tasks.values():
                    t.cancel()
            raise
        finally:
            self._running = False
            if self._finished is not None:
                self.journal.release_lock(self.user, rollout_id=self.id, manual=False)
            self._done.set()

    def _phase_started(self, i: int) -> bool:
        return any(h.state != ev.PENDING for h in self._phase_hosts(i))

    async def _boundary(self, i: int) -> None:
        """Between phase i-1 and phase i: bake, gates, and the operator where asked to wait."""
        prev = self.phases[i - 1]
        nxt = self.phases[i]
        if prev.bake:
            self.status = ev.R_WAITING
            self._emit(ev.GateWaiting(self.id, phase=i, name=nxt.name, reason=f"baking {prev.bake:g} s"))
            try:
                await asyncio.wait_for(self._until(lambda: self._aborted), prev.bake)
            except TimeoutError:
                pass
            if self._aborted:
                return
        reasons = []
        if prev.gate:
            ok, why = self.gate_check(prev) if self.gate_check else (False, "no metrics source to check the gate")
            if not ok:
                reasons.append(f"gate {' and '.join(prev.gate)}: {why}")
        if self.confirm == "all" or (self.confirm == "config" and not prev.auto):
            reasons.append(f"{prev.name} done; waiting for the operator to start {nxt.name}")
        if reasons:
            self._proceed = False
            self.status = ev.R_WAITING
            self._emit(ev.GateWaiting(self.id, phase=i, name=nxt.name, reason="; ".join(reasons)))
            await self._until(lambda: self._proceed or self._aborted)
            if self._aborted:
                return
            by = self._proceed_user or self.user
            self._emit(ev.GatePassed(self.id, phase=i, name=nxt.name, by=by))
            self._log("PROCEED", f"started {nxt.name} ({len(nxt.hosts)} hosts)", by)
        else:
            self._emit(ev.GatePassed(self.id, phase=i, name=nxt.name, by="auto"))
        self.status = ev.R_PAUSED if self._paused else ev.R_RUNNING

    async def _until(self, cond: Callable[[], bool]) -> None:
        while not cond():
            self._wake.clear()
            await self._wake.wait()

    async def _run_phase(self, i: int) -> None:
        phase = self.phases[i]
        t0 = time.monotonic()
        self._entered = max(self._entered, i)
        self._forced = False
        self._halted = False
        self._emit(ev.PhaseStarted(self.id, phase=i, name=phase.name, hosts=len(phase.hosts)))
        pending = deque(h.name for h in self._phase_hosts(i) if h.state == ev.PENDING)
        self._retry_queue.clear()
        while True:
            if self._aborted:
                await self._abort_phase(i, pending)
                break
            while self._retry_queue:
                pending.appendleft(self._retry_queue.pop())
            # the failure budget
            used = self.budget_used(i)
            failed_now = [h for h in self._phase_hosts(i) if h.state == ev.FAILED]
            if self._halted and (self._forced or not failed_now):
                self._halted = False
                self.status = ev.R_PAUSED if self._paused else ev.R_RUNNING
                self._emit(ev.RolloutResumed(self.id, user=self.user))
            if not self._halted and not self._forced and used > phase.max_failed and failed_now:
                self._halted = True
                self.status = ev.R_HALTED
                names = tuple(h.name for h in failed_now)
                self._emit(ev.PhaseHalted(self.id, phase=i, name=phase.name, failed=names,
                                          max_failed=phase.max_failed))
                self._log("HALT", f"{phase.name}: {len(names)} failed (max_failed {phase.max_failed}): "
                          + ", ".join(f"{h.name} ({h.reason})" for h in failed_now))
            can_start = not self._halted and not self._paused
            while can_start and pending and len(self._tasks) < phase.parallel:
                name = pending.popleft()
                if self.hosts[name].state != ev.PENDING:
                    continue
                self._tasks[name] = asyncio.ensure_future(self._deploy_host(self.hosts[name]))
            if not self._tasks and not pending and not self._halted:
                break
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait([waiter, *self._tasks.values()], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            for name, t in list(self._tasks.items()):
                if t.done():
                    del self._tasks[name]
        hosts = self._phase_hosts(i)
        self._emit(ev.PhaseCompleted(
            self.id, phase=i, name=phase.name,
            done=sum(h.state == ev.DONE for h in hosts),
            failed=sum(h.state == ev.FAILED for h in hosts),
            skipped=sum(h.state == ev.SKIPPED for h in hosts),
            seconds=round(time.monotonic() - t0, 3),
        ))

    async def _abort_phase(self, i: int, pending: deque[str]) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            # abort() cancelled them already; a second cancel would cut short the host's last question (its live
            # revision) and leave it recorded as "unknown"
            if not t.cancelling():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _deploy_host(self, hr: HostRun) -> None:
        """pending -> connecting -> running k/n -> checking -> done, or failed(reason). Never raises."""
        steps = self.cfg.deploy.steps
        hr.started = time.monotonic()
        hr.finished = None
        timeout = self.cfg.deploy.step_timeout

        def on_line(stream: str, line: str) -> None:
            if stream == "out" and line.startswith(LIVE_MARK) and hr.previous is None:
                hr.previous = line[len(LIVE_MARK):].strip() or None
                if hr.previous == "none":
                    hr.previous = None
                return
            hr.output.append(line)
            for fn in self._subscribers:
                fn(ev.HostOutput(self.id, host=hr.name, stream=stream, line=line))

        try:
            self._set(hr, ev.CONNECTING)
            reach = await self.pool.connect(hr.name)
            if not reach.ok:
                return self._fail(hr, reach, "connecting")
            for k in range(hr.steps_done + 1, len(steps) + 1):
                self._set(hr, ev.RUNNING, step=k)
                cmd = render(steps[k - 1], revision=self.revision, previous=hr.previous or "", host=hr.name)
                hr.output.append(f"$ {cmd}")
                # the receipt is written by the same shell the moment the step succeeds, so a resume after a
                # crash knows this step finished even if we died before the journal heard of it
                # (a brace group, not a subshell: no extra process on the host for every step)
                wrapped = f"{{ {cmd}\n}} && echo {shlex.quote(f'{self.id}:{k}')} > {STEP_RECEIPT}"
                if hr.previous is None and k == 1:
                    # the host's live revision (what a rollback goes back to), read in the same round trip
                    live = self.cfg.release.live_command
                    wrapped = f'echo "{LIVE_MARK}$({{ {live}\n}} 2>/dev/null)"\n{wrapped}'
                res = await self.pool.run(hr.name, wrapped, timeout=timeout, on_line=on_line)
                hr.result = res
                if not res.ok:
                    return self._fail(hr, res, f"step {k}/{len(steps)}")
            if self.cfg.deploy.health:
                self._set(hr, ev.CHECKING)
                res = await self.pool.run(hr.name, render(self.cfg.deploy.health, revision=self.revision,
                                                          previous=hr.previous or "", host=hr.name),
                                          timeout=timeout, on_line=on_line)
                if not res.ok:
                    return self._fail(hr, res, "health check")
            self._set(hr, ev.DONE, revision=self.revision)
        except asyncio.CancelledError:
            if hr.state in ev.IN_FLIGHT:
                # never leave a host in an unknown state: ask it what it now runs
                live = None
                try:
                    res = await asyncio.shield(self.pool.run(hr.name, self.cfg.release.live_command, timeout=5))
                    live = _live_from(res) if res.ok else None
                except BaseException:  # noqa: BLE001 - best effort while aborting
                    pass
                where = f"step {hr.step}/{hr.steps}" if hr.state == ev.RUNNING else hr.state
                self._set(hr, ev.FAILED, step=hr.step, reason=f"aborted during {where}; live revision "
                          f"{live or 'unknown'}", revision=live)
            raise

    def _fail(self, hr: HostRun, res: CommandResult, where: str) -> None:
        detail = res.reason if res.status != "exit" else (res.stderr.rsplit("\n", 1)[-1] or res.reason)
        reason = f"{res.label}" if detail == res.label else f"{res.label}: {detail}"
        self._set(hr, ev.FAILED, step=hr.step, reason=f"{reason} ({where})")

    def _finish(self) -> ev.RolloutFinished:
        hosts = list(self.hosts.values())
        done = sum(h.state == ev.DONE for h in hosts)
        failed = [(h.name, h.reason) for h in hosts if h.state == ev.FAILED]
        skipped = sum(h.state == ev.SKIPPED for h in hosts)
        if self._aborted:
            status = ev.R_ABORTED
        elif failed:
            status = ev.R_FAILED
        else:
            status = ev.R_DONE
        self.status = status
        seconds = round(time.monotonic() - self._t0, 3)
        fin = ev.RolloutFinished(self.id, status=status, revision=self.revision, done=done, failed=len(failed),
                                 skipped=skipped, seconds=seconds, failed_hosts=tuple(failed))
        self._finished = fin
        kind = {ev.R_DONE: "DEPLOY OK", ev.R_FAILED: "DEPLOY FAILED", ev.R_ABORTED: "DEPLOY ABORTED"}[status]
        extra = f", {len(failed)} failed" if failed else ""
        extra += f", {skipped} skipped" if skipped else ""
        self._log(kind, f"{self.revision} on {done} of {len(hosts)} hosts{extra} ({seconds:.1f} s)")
        self._emit(fin)
        return fin

    async def rerun(self, hosts: list[str], user: str) -> ev.RolloutFinished:
        """After the rollout ended with failed hosts (within their budgets): run those hosts again.

        The same rollout goes on, as a resume: the journal, the log and the lock see it as such.
        """
        if self._running or self.status != ev.R_FAILED:
            raise ControlroomError("only a rollout that ended with failed hosts can run them again")
        for host in hosts:
            hr = self.hosts.get(host)
            if hr is None or hr.state != ev.FAILED:
                raise ControlroomError(f"{host}: only a failed host can be run again")
        self._finished = None
        self._done.clear()
        self._resumed = True
        self._t0 = time.monotonic()
        for host in hosts:
            self._requeue(self.hosts[host], user)
        self.phase_index = min(self.hosts[h].phase for h in hosts)
        return await self.run()

    # ------------------------------------------------------------------------------------------ rollback
    async def rollback(self, user: str) -> ev.RolloutFinished:
        """Run the rollback steps on every done host, latest phase first; record each host's revision."""
        if not self.cfg.deploy.rollback:
            raise ControlroomError(f"{self.cfg.path}: deploy.rollback: no rollback steps are configured")
        if self._running:
            self.abort(user)
            await self._done.wait()
        elif any(h.state in ev.IN_FLIGHT for h in self.hosts.values()):
            await self.reconcile()  # a deploy that died: learn what the in-flight hosts really run
        lock = self.journal.lock()
        if lock is None or lock.rollout_id != self.id or lock.pid != os.getpid():
            self.journal.take_lock(user, f"rolling back {self.revision}", rollout_id=self.id,
                                   force_reason=self.force_reason)
        t0 = time.monotonic()
        try:
            self._emit(ev.OperatorAction(self.id, user=user, action="rollback",
                                         detail=f"{sum(h.state == ev.DONE for h in self.hosts.values())} hosts"))
            self._log("ROLLBACK START", f"{self.revision} -> previous revision on every done host")
            for i in reversed(range(len(self.phases))):
                targets = [h for h in self._phase_hosts(i) if h.state == ev.DONE]
                if not targets:
                    continue
                limit = asyncio.Semaphore(self.phases[i].parallel)

                async def one(hr: HostRun, limit: asyncio.Semaphore = limit) -> None:
                    async with limit:
                        await self._rollback_host(hr)

                await asyncio.gather(*(one(h) for h in targets))
            hosts = list(self.hosts.values())
            back = sum(h.state == ev.ROLLED_BACK for h in hosts)
            failed = [(h.name, h.reason) for h in hosts if h.state == ev.FAILED and h.reason.startswith("rollback")]
            seconds = round(time.monotonic() - t0, 3)
            self.status = ev.R_ROLLED_BACK
            fin = ev.RolloutFinished(self.id, status=ev.R_ROLLED_BACK, revision=self.revision, done=back,
                                     failed=len(failed), skipped=0, seconds=seconds, failed_hosts=tuple(failed))
            self._log("ROLLBACK OK" if not failed else "ROLLBACK FAILED",
                      f"{back} hosts back on their previous revision" + (f", {len(failed)} failed" if failed else "")
                      + f" ({seconds:.1f} s)")
            self._emit(fin)
            self._finished = fin
            return fin
        finally:
            self.journal.release_lock(user, rollout_id=self.id, manual=False)

    async def _rollback_host(self, hr: HostRun) -> None:
        self._set(hr, ev.ROLLING_BACK)
        hr.started = time.monotonic()
        for k, step in enumerate(self.cfg.deploy.rollback, start=1):
            if not hr.previous:
                self._set(hr, ev.FAILED, reason="rollback: the previous revision of this host is unknown")
                return
            cmd = render(step, revision=self.revision, previous=hr.previous, host=hr.name)
            hr.output.append(f"$ {cmd}")
            res = await self.pool.run(hr.name, cmd, timeout=self.cfg.deploy.step_timeout,
                                      on_line=lambda s, line: hr.output.append(line))
            if not res.ok:
                self._set(hr, ev.FAILED, reason=f"rollback step {k}: {res.label} {res.reason}".strip())
                return
        prev_live = hr.revision
        hr.revision = hr.previous
        hr.previous = prev_live
        self._set(hr, ev.ROLLED_BACK, revision=hr.revision)

    # ------------------------------------------------------------------------------------------ resume
    @classmethod
    def load(cls, cfg: Config, pool: SSHPool, journal: Journal, *, user: str, confirm: str = "config",
             rollout_id: int | None = None) -> Rollout:
        """The last (or given) rollout from the journal, with every host as the journal knows it."""
        rec = journal.rollout(rollout_id)
        if rec is None:
            raise ControlroomError("there is no deploy in the journal yet")
        r = cls(cfg, pool, journal, revision=rec.revision, user=user, confirm=confirm)
        r.id = rec.id
        r.previous = rec.previous
        r.status = rec.status
        r.phase_index = rec.phase
        names = [n for n, _ in rec.phases]
        if names != [p.name for p in cfg.phases] or any(
            tuple(hosts) != p.hosts for (_, hosts), p in zip(rec.phases, cfg.phases, strict=False)
        ):
            raise ControlroomError(
                f"deploy #{rec.id} was planned with other phases or hosts than {cfg.path} now gives; "
                "resume it with the config it started with"
            )
        for name, run in journal.host_runs(rec.id).items():
            hr = r.hosts.get(name)
            if hr is None:
                continue
            hr.state, hr.step, hr.steps_done, hr.reason = run.state, run.step, run.steps_done, run.reason
            hr.revision, hr.previous = run.revision, run.previous
            hr.skipped_by_operator = run.state == ev.SKIPPED and run.reason.startswith("skipped by")
        r._resumed = True
        return r

    async def reconcile(self) -> list[str]:
        """After a crash: ask every host that was in flight for its live revision, and settle its state.

        A host already on the new revision is done; any other goes back to pending and carries on from the
        first step the journal does not have as finished. Returns the hosts that were asked.
        """
        inflight = [h for h in self.hosts.values() if h.state in ev.IN_FLIGHT]

        async def ask(hr: HostRun) -> None:
            timeout = self.cfg.deploy.step_timeout
            receipt = await self.pool.run(hr.name, f"cat {STEP_RECEIPT} 2>/dev/null || true", timeout=timeout)
            res = await self.pool.run(hr.name, self.cfg.release.live_command, timeout=timeout)
            live = _live_from(res) if res.ok else None
            rollout, _, step = receipt.stdout.strip().partition(":")
            if receipt.ok and rollout == str(self.id) and step.isdigit():
                hr.steps_done = max(hr.steps_done, min(int(step), hr.steps))
            hr.state = ev.PENDING  # carries on from the first step not finished (the health check if all are)
            hr.revision = live
            hr.reason = f"reconciled after resume: live {live or 'unknown'}, {hr.steps_done}/{hr.steps} steps done"

        await asyncio.gather(*(ask(h) for h in inflight))
        return [h.name for h in inflight]

    async def resume_run(self, *, retry_failed: bool = False) -> ev.RolloutFinished:
        """Take over a rollout whose process died (or stopped at a halt): claim it, reconcile in-flight hosts, and
        carry on; with retry_failed, the failed hosts of the current phase run again."""
        rec = self.journal.rollout(self.id)
        if rec and rec.status in ev.ROLLOUT_FINAL and rec.status != ev.R_FAILED:
            raise ControlroomError(f"deploy #{rec.id} of {rec.revision} already ended ({rec.status}); nothing to resume")
        lock = self.journal.lock()
        if lock and lock.rollout_id == self.id and lock.live:
            raise LockedError(f"deploy #{self.id} is still running: {lock.describe()}")
        self.journal.claim_rollout(self.id)
        if retry_failed:
            for name in self.phases[self.phase_index].hosts:
                if self.hosts[name].state == ev.FAILED:
                    self._requeue(self.hosts[name], self.user, " on resume")
        asked = await self.reconcile()
        for name in asked:
            hr = self.hosts[name]
            self._emit(ev.HostStateChanged(self.id, host=name, phase=hr.phase, state=hr.state,
                                           step=0, steps=hr.steps, reason=hr.reason, revision=hr.revision,
                                           previous=hr.previous, steps_done=hr.steps_done))
        return await self.run()
