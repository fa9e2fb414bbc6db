"""The rollout engine: phases x hosts, the host state machine, the failure budget, gates and operator intents.

Plain asyncio. ``Rollout`` keeps the state, the operator's intents and the phase loop. Everything is recorded through
its Recorder (recorder.py): the journal commits an event, then the rollout's subscribers see it (the server, which
numbers it and sends it to its clients; the gate keeper). A host changes state only through ``HostRun.move``
(hostrun.py), which checks the move against ``events.TRANSITIONS`` and records it. The work on one host is a
``hostrun.HostWork``; loading, reconciling and rolling back are functions of ``recovery``; the gate keeper
(gates.GateKeeper) is given at construction. Each is given the recorder and never writes the rollout's state.
Operator intents (pause, resume, abort, retry, skip, proceed, rollback) are plain methods, called from the engine's
own event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from controlroom.config.config import Config
from controlroom.config.inventory import Phase
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError, DeployLost, JournalError, LockedError
from controlroom.core.identity import Actor
from controlroom.engine import overrides, recovery
from controlroom.engine.gates import GateKeeper
from controlroom.engine.hostrun import HostRun, HostWork, live_from
from controlroom.engine.recorder import Recorder
from controlroom.fleet import hostside
from controlroom.fleet.hostside import Operation
from controlroom.fleet.ssh import SSHPool
from controlroom.journal.journal import Journal

LOCK_CHECK = 0.5  # how often a deploy on a shared journal asks whether its fleet lock's session still holds
RELEASE_TIMEOUT = 10.0  # giving the hosts' leases back at the end; a host that does not answer keeps a stale lease
_NOBODY = Actor("")  # refusal's: with no typed reason an override raises before it records anyone


class Interrupted(ControlroomError):
    """The rollout was interrupted (Ctrl+C): halted, resumable, its lock parked."""

    exit_code = 130


class Rollout:
    """Ship ``revision`` to the fleet of ``cfg`` phase by phase. ``await run()`` drives it to the end.

    confirm: "config" waits for proceed() after phases with auto = false; "all" after every phase; "none" never.
    gates: the keeper of the phases' gates (gates.keeper_for), bound to this rollout here; without one a gated
    phase's gate cannot be checked, and the deploy waits there for the operator.
    """

    def __init__(
        self,
        cfg: Config,
        pool: SSHPool,
        journal: Journal,
        *,
        revision: str,
        actor: Actor,
        confirm: str = "config",
        force_reason: str | None = None,
        gates: GateKeeper | None = None,
        commit: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.pool = pool
        self.journal = journal
        self.revision = revision
        self.actor = actor  # who deploys, from where: the deploy's own journal writes are theirs
        self.user = actor.user
        self.confirm = confirm
        self.force_reason = force_reason
        self.commit = commit  # what the revision resolved to at the start, recorded with the new rollout's row
        self.record = Recorder(journal, actor=actor, revision=revision, seen=self._seen)
        self.gates = gates
        self.phases: tuple[Phase, ...] = cfg.phases
        self.hosts: dict[str, HostRun] = {}
        for i, ph in enumerate(self.phases):
            for h in ph.hosts:
                self.hosts[h] = HostRun(h, i, steps=len(cfg.deploy.steps))
        self.uuid = ""  # the deploy's globally unique id: its receipts and leases on the hosts carry it
        self.status = "new"
        self.phase_index = 0
        self.previous: str | None = None
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._aborted = False
        self._proceed = False
        self._proceed_by: Actor | None = None
        self.waiting: ev.GateWaiting | None = None  # the wait at a phase boundary the engine is in, as last said
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
        self._fleet_lock = journal.fleet_lock()
        self.epoch = 0  # the driver epoch this process's taking of the lock gave the deploy (a shared journal's)
        self._watch: asyncio.Task | None = None  # watches the fleet lock's session while the deploy runs
        self._interrupted: Actor | None = None  # who interrupted (Ctrl+C): in-flight hosts stop, the rollout halts
        self._held: str | None = None  # another operation (another journal) holds the hosts
        self._fatal: BaseException | None = None  # a journal write failed: stop everything, loudly
        if gates is not None:
            gates.bind(self.record, self.phases, lambda: self._stopping)

    @classmethod
    def load(cls, cfg: Config, pool: SSHPool, journal: Journal, *, actor: Actor, confirm: str = "config",
             rollout_id: int | None = None, gates: GateKeeper | None = None) -> Rollout:
        """The last (or given) rollout from the journal, with every host as the journal knows it."""
        saved = recovery.saved(cfg, journal, rollout_id)
        r = cls(cfg, pool, journal, revision=saved.revision, actor=actor, confirm=confirm, gates=gates)
        r.id, r.uuid, r.previous, r.status, r.phase_index = (saved.id, saved.uuid, saved.previous, saved.status,
                                                             saved.phase)
        recovery.restore(r.hosts, saved)
        r._resumed = True
        return r

    @property
    def id(self) -> int:
        """The rollout's number in the journal (0 until it has one)."""
        return self.record.rollout_id

    @id.setter
    def id(self, value: int) -> None:
        self.record.rollout_id = value

    @property
    def _stopping(self) -> bool:
        return bool(self._aborted or self._interrupted or self._held or self._fatal)

    @property
    def op(self) -> Operation:
        """Who acts on the hosts: this deploy's uuid, the journal's id, the person."""
        return Operation(self.uuid, self.journal.journal_id(), self.user, force=bool(self.force_reason),
                         epoch=self.epoch)

    # ------------------------------------------------------------------------------------------ events
    def subscribe(self, fn: Callable[[ev.Event], None]) -> None:
        self.record.subscribe(fn)

    def _seen(self, event: ev.Event) -> None:
        """Each event, once committed and before anyone sees it: the wait a proceed now passes."""
        if (kind := type(event)) is ev.GateWaiting or kind in (ev.GatePassed, ev.PhaseStarted, ev.RolloutFinished):
            self.waiting = event if kind is ev.GateWaiting else None
        if kind is ev.RolloutFinished:
            self.status = event.status  # a rollback's end too: what the subscribers read is how it ended

    # ------------------------------------------------------------------------------------------ intents

    def pause(self, by: Actor) -> None:
        """Start no new host; in-flight hosts finish."""
        if self.status in ev.ROLLOUT_FINAL or self._paused:
            return
        self._paused = True
        self.status = ev.R_PAUSED
        self.record.emit(ev.RolloutPaused(self.id, user=by.user))
        self.record.log("PAUSE", "no new host starts", by)
        self.record.poke()

    def resume(self, by: Actor) -> None:
        if not self._paused:
            return
        self._paused = False
        self.status = ev.R_HALTED if self._halted else ev.R_RUNNING
        self.record.emit(ev.RolloutResumed(self.id, user=by.user))
        self.record.log("RESUME", "", by)
        self.record.poke()

    def abort(self, by: Actor) -> None:
        """Cancel in-flight hosts; pending hosts become skipped."""
        if self.status in ev.ROLLOUT_FINAL or self._aborted:
            return
        self._aborted = True
        inflight = sum(1 for h in self.hosts.values() if h.state in ev.IN_FLIGHT)
        pending = sum(1 for h in self.hosts.values() if h.state == ev.PENDING)
        detail = f"{inflight} in flight cancelled, {pending} pending skipped"
        self.record.emit(ev.OperatorAction(self.id, user=by.user, action="abort", detail=detail))
        self.record.log("ABORT", detail, by)
        for t in self._tasks.values():
            t.cancel()
        self.record.poke()

    def proceed(self, by: Actor, reason: str | None = None) -> None:
        """Go on: past a gate or a phase boundary, or past an exceeded failure budget. Past a gate that does not
        hold (failed or unknown) or an exceeded budget only with a typed ``reason`` (else UsageError naming what
        does not hold, and nothing changes); that goes on the record and marks the deploy's result."""
        why = overrides.typed(reason)
        if self._halted:
            self._force_budget(by, why)
            self._forced = True
        elif (waiting := overrides.failed_gate(self.waiting)) is not None:
            overrides.pass_gate(self.record, self.phases, waiting, by, why)
        self._proceed = True
        self._proceed_by = by
        self.record.poke()

    def _force_budget(self, by: Actor, why: str) -> None:
        i = self.phase_index
        failed = [h for h in self._phase_hosts(i) if h.state == ev.FAILED]
        overrides.force_budget(self.record, self.phases[i], failed, by, why)

    def _skip_over_budget(self, hr: HostRun) -> int | None:
        return overrides.skip_over_budget(hr, self.phases[hr.phase], self.budget_used(hr.phase))

    def refusal(self, op: str, host: object, reason: object) -> None:
        """Raise the UsageError ``op`` (proceed, skip) would meet for want of a typed reason, before anything changes
        (the server asks first, so a refused intent does not even make a parked deploy's lock live again)."""
        if overrides.typed(reason):
            return
        if op == "proceed":
            if self._halted:
                self._force_budget(_NOBODY, "")
            elif (w := overrides.failed_gate(self.waiting)) is not None:
                overrides.pass_gate(self.record, self.phases, w, _NOBODY, "")
        elif op == "skip":
            hr = self.hosts.get(str(host))
            if hr is not None and hr.state in (ev.PENDING, ev.FAILED, *ev.IN_FLIGHT) \
                    and (used := self._skip_over_budget(hr)) is not None:
                overrides.skip_past_budget(self.record, hr, self.phases[hr.phase], used, _NOBODY, "")

    def retry(self, host: str, by: Actor) -> None:
        """Run a failed (or skipped) host again from the first step it has not finished."""
        hr = self.hosts.get(host)
        if hr is None or hr.state not in (ev.FAILED, ev.SKIPPED) or hr.phase != self.phase_index:
            raise ControlroomError(f"{host}: only a failed host of the current phase can be retried")
        self._requeue(hr, by)
        self._retry_queue.append(host)
        self.record.poke()

    def _requeue(self, hr: HostRun, by: Actor, note: str = "") -> None:
        """A failed or skipped host goes back to pending, on the record (retry, rerun and resume alike)."""
        self.record.emit(ev.OperatorAction(self.id, user=by.user, action="retry", host=hr.name, detail=hr.reason))
        self.record.log("RETRY", f"{hr.name} ({hr.reason}){note}", by)
        hr.skipped_by_operator = False
        hr.finished = None
        hr.move(self.record, ev.PENDING)

    def skip(self, host: str, by: Actor, reason: str | None = None) -> None:
        """Give up on one host in this rollout; it counts against the failure budget and is logged. Past the
        phase's budget only with a typed ``reason`` (else UsageError), on the record, marking the result.

        A host in flight is stopped first (its command ends on the host); it is then recorded as skipped.
        """
        hr = self.hosts.get(host)
        running = hr is not None and hr.state in (ev.CONNECTING, ev.RUNNING, ev.CHECKING) and host in self._tasks
        if hr is None or not (running or hr.state in (ev.PENDING, ev.FAILED)):
            raise ControlroomError(f"{host}: only a pending, running or failed host can be skipped")
        why = overrides.typed(reason)
        if (used := self._skip_over_budget(hr)) is not None:
            overrides.skip_past_budget(self.record, hr, self.phases[hr.phase], used, by, why)
        user = by.user
        self.record.emit(ev.OperatorAction(self.id, user=user, action="skip", host=host, detail=hr.reason))
        self.record.log("SKIP", f"{host}" + (f" ({hr.reason})" if hr.reason else "")
                  + (f" while {hr.state}" if running else "") + (f': "{why}"' if why else ""), by)
        if running:
            hr.skip_requested = user
            self._tasks[host].cancel()
            return
        hr.skipped_by_operator = True
        hr.move(self.record, ev.SKIPPED, reason=f"skipped by {user}" + (f" after {hr.reason}" if hr.reason else ""))
        self.record.poke()

    def interrupt(self, by: Actor) -> None:
        """Stop now (Ctrl+C): in-flight hosts' commands end and they are recorded as interrupted; pending hosts
        stay pending; run() raises Interrupted with the rollout halted, resumable, and its lock parked."""
        if self.status in ev.ROLLOUT_FINAL or self._interrupted or not self._running:
            return
        self._interrupted = by
        for t in self._tasks.values():
            t.cancel()
        self.record.poke()

    # ------------------------------------------------------------------------------------------ running
    def _phase_hosts(self, i: int) -> list[HostRun]:
        return [self.hosts[h] for h in self.phases[i].hosts]

    def budget_used(self, i: int) -> int:
        """How much of phase i's failure budget is spent: failed hosts and hosts the operator skipped."""
        return sum(1 for h in self._phase_hosts(i) if h.state == ev.FAILED or h.skipped_by_operator)

    def _hold_fleet(self, doing: str) -> None:
        """Take the fleet's OS lock for this operation, or raise LockedError naming who holds it."""
        if self._fleet_lock.held:
            return
        try:
            self._fleet_lock.acquire(f"{self.user}'s {doing}")
        except LockedError:
            # the holder may be an instant from writing who it is: give it a moment to say so, then name it
            deadline = time.monotonic() + 5
            while (lock := self.journal.lock()) is None or not lock.live or lock.pid != self._fleet_lock.holder_pid():
                if time.monotonic() > deadline:
                    raise LockedError(f"the fleet is locked by {self._fleet_lock.holder() or 'another operation'}"
                                      ) from None
                time.sleep(0.05)
            raise LockedError(f"the fleet is locked by {lock.describe()}") from None

    def _let_go(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self.id:
            self.journal.unfence(self.id)
        self._fleet_lock.release()

    def _took(self, lock) -> None:
        """The deploy's lock is this process's: on a shared journal, drive with the epoch it gave the deploy, and
        watch the lock's session, so that losing it stops this driver before its next step on any host."""
        self.epoch = lock.epoch
        if self.journal.shared and self._watch is None and hasattr(self._fleet_lock, "check"):
            self._watch = asyncio.ensure_future(self._watch_lock())

    async def _watch_lock(self) -> None:
        answer = getattr(self._fleet_lock, "answer_within", 10.0)
        while self._fleet_lock.held:
            try:  # a database that does not answer (the network gone) loses the lock here, before it could elsewhere
                why = await asyncio.wait_for(asyncio.shield(asyncio.to_thread(self._fleet_lock.check)), answer)
            except TimeoutError:
                why = f"its fleet lock's session on the journal did not answer for {answer:g} s"
            if why is not None:
                self._lost(DeployLost(f"this bastion lost deploy #{self.id}: {why}; another bastion may take it "
                                      "over (`controlroom deploy --resume` there): this one acts on nothing more"))
                return
            await asyncio.sleep(LOCK_CHECK)

    def _lost(self, e: DeployLost) -> None:
        """Stop driving now: what runs on the hosts is stopped, nothing more is started or recorded."""
        self._fatal = self._fatal or e
        for t in self._tasks.values():
            t.cancel()
        self.record.poke()

    async def _begin(self) -> None:
        hosts = tuple((ph.name, ph.hosts) for ph in self.phases)
        self._hold_fleet("deploy")
        try:
            await self._begin_held(hosts)
        except BaseException:
            self._let_go()
            raise

    async def _begin_held(self, hosts) -> None:
        if not self._resumed:
            self.previous = await self._fleet_revision()
            self.id = self.journal.new_rollout(self.revision, self.previous, self.actor, hosts, commit=self.commit)
        self.uuid = self.journal.rollout_uuid(self.id)
        try:
            self._took(self.journal.take_lock(self.actor, f"deploying {self.revision}", rollout_id=self.id,
                                              force_reason=self.force_reason))
        except LockedError:
            if not self._resumed:
                self.journal.discard_rollout(self.id)
            raise
        self.status = ev.R_RUNNING
        self.record.emit(ev.RolloutStarted(self.id, revision=self.revision, previous=self.previous, user=self.user,
                                     phases=hosts, resumed=self._resumed))
        if self._resumed:
            self.record.log("DEPLOY RESUMED", f"{self.previous or '?'} -> {self.revision}")
        else:
            forced = f" (forced past the lock: {self.force_reason})" if self.force_reason else ""
            self.record.log("DEPLOY START", f"{self.previous or '?'} -> {self.revision} to {len(self.hosts)} hosts "
                      f"in {len(self.phases)} phases{forced}")

    async def _fleet_revision(self) -> str | None:
        """What the fleet runs now: the journal's record, else the answer of the first host."""
        values = [live for live, _ in self.journal.live_revisions().values() if live]
        if values:
            return max(set(values), key=values.count)
        first = self.phases[0].hosts[0]
        res = await self.pool.run(first, self.cfg.release.live_command, timeout=self.cfg.deploy.step_timeout)
        return live_from(res) if res.ok else None

    async def run(self) -> ev.RolloutFinished:
        """Run every phase to the end (or abort). Holds the fleet lock while it runs.

        Raises LockedError when another operation holds the fleet (nothing ran), Interrupted after interrupt(),
        JournalError when the journal cannot record (everything in flight is stopped first).
        """
        self._running = True
        try:
            await self._begin()
        except BaseException:
            self._running = False
            raise
        try:
            return await self._run_phases()
        finally:
            self._running = False
            try:
                if self._finished is not None:
                    await self._release_leases()
                    self.journal.release_lock(self.actor, rollout_id=self.id, manual=False)
            finally:
                self._let_go()
                self._done.set()

    async def _run_phases(self) -> ev.RolloutFinished:
        try:
            start = self.phase_index
            for i in range(start, len(self.phases)):
                if self._resumed and i > start and not any(h.state == ev.PENDING for h in self._phase_hosts(i)):
                    continue  # a resume passes over phases that have nothing left to do
                self.phase_index = i
                if i > 0 and not (self._resumed and (i <= self._entered or self._phase_started(i))):
                    await self._boundary(i)
                if self._stopping:
                    break
                await self._run_phase(i)
                if self._stopping:
                    break
            if self._held and not self._fatal:
                self._aborted = True
                for hr in self.hosts.values():
                    if hr.state == ev.PENDING:
                        hr.move(self.record, ev.SKIPPED, reason=f"not started: the fleet is held by {self._held}")
                self.record.log("DEPLOY ABORTED", f"the hosts are held by {self._held}")
                self._finish()
            self._stop_if_told()
            if self._aborted:
                for hr in self.hosts.values():
                    if hr.state == ev.PENDING:
                        hr.move(self.record, ev.SKIPPED, reason="aborted")
            return self._finish()
        except BaseException as e:
            if self._finished is None:
                # cancelled, interrupted or crashed in-process: stop what runs on the hosts (their commands end
                # there too), leave the rollout resumable, never half-recorded
                tasks = list(self._tasks.values())
                for t in tasks:
                    t.cancel()
                await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
                self._tasks.clear()
                if isinstance(e, Interrupted) and self._fatal is None:
                    self.journal.park_lock(self.id, f"{self.revision} interrupted by {self._interrupted.user}: "
                                           "`controlroom deploy --resume` or `controlroom rollback`")
            raise

    def _stop_if_told(self) -> None:
        """Raise what stops the rollout now: a journal that cannot record, another operation's lease, Ctrl+C."""
        if self._fatal is not None:
            raise self._fatal
        if self._held is not None:
            raise LockedError(f"the fleet is held by {self._held} (found on the hosts; nothing else was started)")
        if self._interrupted:
            flying = tuple(sorted(h.name for h in self.hosts.values()
                                  if h.interrupted and h.state == ev.FAILED))
            self.status = ev.R_HALTED
            self.record.emit(ev.RolloutInterrupted(self.id, user=self._interrupted.user, hosts=flying))
            self.record.log("INTERRUPTED", f"{len(flying)} hosts in flight stopped"
                      + (f" ({', '.join(flying[:10])}{', ...' if len(flying) > 10 else ''})" if flying else "")
                      + "; the deploy is halted", self._interrupted)
            raise Interrupted(f"deploy #{self.id} of {self.revision} interrupted: {len(flying)} hosts in flight "
                              "stopped and recorded as interrupted; the fleet stays locked for this deploy. "
                              "`controlroom deploy --resume` carries on, `controlroom rollback` undoes it")

    async def _release_leases(self) -> None:
        """Give back the lease on every host this operation may have touched (bounded; best effort)."""
        hosts = [h.name for h in self.hosts.values() if not h.released and (
                 h.state not in (ev.PENDING, ev.SKIPPED) or h.steps_done or h.skipped_by_operator)]
        if not hosts or not self.uuid:
            return
        cmd = hostside.release_command(self.op)
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await asyncio.gather(*(self.pool.run(h, cmd, timeout=RELEASE_TIMEOUT) for h in hosts))
        except TimeoutError:
            pass  # a lease left behind names a finished deploy of this journal: the next operation breaks it

    def _phase_started(self, i: int) -> bool:
        return any(h.state != ev.PENDING for h in self._phase_hosts(i))

    async def _boundary(self, i: int) -> None:
        """Between phase i-1 and phase i: bake, gates, and the operator where asked to wait."""
        prev = self.phases[i - 1]
        nxt = self.phases[i]
        if prev.bake:
            self.status = ev.R_WAITING
            # the gate keeper starts checking as the bake begins, and ends it early once a check failed
            self.record.emit(ev.GateWaiting(self.id, phase=i, name=nxt.name, reason=f"baking {prev.bake:g} s",
                                      kind=ev.GATE_BAKE))
            gates = self.gates
            try:
                await asyncio.wait_for(self.record.until(lambda: self._stopping or bool(gates and gates.bake_failed)),
                                       prev.bake)
            except TimeoutError:
                pass
            if self._stopping:
                return
        reasons = []
        failed, verdicts = (), ()  # the gates that did not hold (or could not be checked), every gate's verdict
        if prev.gate:
            if self.gates is not None:
                ok, why, verdicts = await self.gates.check(prev)
            else:
                ok, why, verdicts = False, "no metrics source to check the gate", ()
            if self._stopping:  # aborted or interrupted while the source answered: there is no gate to wait at
                return
            if not ok:
                failed = prev.gate
                reasons.append(f"gate {' and '.join(prev.gate)}: {why}")
        if self.confirm == "all" or (self.confirm == "config" and not prev.auto):
            reasons.append(f"{prev.name} done; waiting for the operator to start {nxt.name}")
        if reasons:
            self._proceed = False
            self.status = ev.R_WAITING
            self.record.emit(ev.GateWaiting(self.id, phase=i, name=nxt.name, reason="; ".join(reasons),
                                      kind=ev.GATE_FAILED if failed else ev.GATE_OPERATOR, failed=failed,
                                      verdicts=verdicts))
            await self.record.until(lambda: self._proceed or self._stopping)
            if self._stopping:
                return
            by = self._proceed_by or self.actor
            self.record.emit(ev.GatePassed(self.id, phase=i, name=nxt.name, by=by.user))
            self.record.log("PROCEED", f"started {nxt.name} ({len(nxt.hosts)} hosts)", by)
        else:
            self.record.emit(ev.GatePassed(self.id, phase=i, name=nxt.name, by="auto"))
        self.status = ev.R_PAUSED if self._paused else ev.R_RUNNING

    async def _run_phase(self, i: int) -> None:
        phase = self.phases[i]
        t0 = time.monotonic()
        self._entered = max(self._entered, i)
        self._forced = False
        self._halted = False
        self.record.emit(ev.PhaseStarted(self.id, phase=i, name=phase.name, hosts=len(phase.hosts)))
        pending = deque(h.name for h in self._phase_hosts(i) if h.state == ev.PENDING)
        self._retry_queue.clear()
        while True:
            if self._stopping:
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
                self.record.emit(ev.RolloutResumed(self.id, user=self.user))
            if not self._halted and not self._forced and used > phase.max_failed and failed_now:
                self._halted = True
                self.status = ev.R_HALTED
                names = tuple(h.name for h in failed_now)
                self.record.emit(ev.PhaseHalted(self.id, phase=i, name=phase.name, failed=names,
                                          max_failed=phase.max_failed))
                self.record.log("HALT", f"{phase.name}: {len(names)} failed (max_failed {phase.max_failed}): "
                          + ", ".join(f"{h.name} ({h.reason})" for h in failed_now))
            can_start = not self._halted and not self._paused
            while can_start and pending and len(self._tasks) < phase.parallel:
                name = pending.popleft()
                if self.hosts[name].state != ev.PENDING:
                    continue
                self._tasks[name] = asyncio.ensure_future(self._deploy_host(self.hosts[name]))
            if not self._tasks and not pending and not self._halted:
                break
            waiter = asyncio.ensure_future(self.record.next_poke())
            try:
                await asyncio.wait([waiter, *self._tasks.values()], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            for name, t in list(self._tasks.items()):
                if t.done():
                    del self._tasks[name]
                    if not t.cancelled():
                        t.exception()  # seen: a JournalError is in self._fatal, nothing else escapes a host
        hosts = self._phase_hosts(i)
        self.record.emit(ev.PhaseCompleted(
            self.id, phase=i, name=phase.name,
            done=sum(h.state == ev.DONE for h in hosts),
            failed=sum(h.state == ev.FAILED for h in hosts),
            skipped=sum(h.state == ev.SKIPPED for h in hosts),
            seconds=round(time.monotonic() - t0, 3),
        ))

    def _why_stopped(self) -> str | None:
        """What a host whose command was stopped is recorded as; None when nothing can be (the journal failed)."""
        if self._fatal is not None:
            return None
        return "interrupted" if self._interrupted else "aborted" if self._aborted else "stopped"

    async def _deploy_host(self, hr: HostRun) -> None:
        """One host's work (hostrun.HostWork); what it tells is this rollout's to act on."""
        work = HostWork(self.cfg, self.pool, self.record, self.op, why_stopped=self._why_stopped)
        try:
            holder = await work.run(hr)
        except JournalError as e:
            self._fatal = self._fatal or e
            self.record.poke()
            raise
        if holder and not any(h.steps_done or h.state == ev.DONE for h in self.hosts.values()):
            self._held = holder  # we have changed nothing anywhere: stop, and say who holds the fleet
            self.record.poke()

    async def _abort_phase(self, i: int, pending: deque[str]) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            # abort() cancelled them already; a second cancel would cut short the host's last question (its live
            # revision) and leave it recorded as "unknown"
            if not t.cancelling():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _finish(self) -> ev.RolloutFinished:
        # the verdict comes from the journal's record, not from memory: DEPLOY OK only if every host of the plan
        # is done or skipped there; a host left pending or in flight is a failure, named
        hosts = list(self.journal.host_runs(self.id).values())
        done = sum(h.state == ev.DONE for h in hosts)
        failed = [(h.host, h.reason if h.state == ev.FAILED else f"left {h.state} ({h.reason or 'never finished'})")
                  for h in hosts if h.state not in (ev.DONE, ev.SKIPPED)]
        failed += [(name, "not on the record") for name in self.hosts if name not in {h.host for h in hosts}]
        skipped = sum(h.state == ev.SKIPPED for h in hosts)
        if self._aborted:
            status = ev.R_ABORTED
        elif failed:
            status = ev.R_FAILED
        else:
            status = ev.R_DONE
        self.status = status
        seconds = round(time.monotonic() - self._t0, 3)
        marks = ev.marks_of(self.journal.actions(self.id), status, skipped)  # for good: read from the journal
        fin = ev.RolloutFinished(self.id, status=status, revision=self.revision, done=done, failed=len(failed),
                                 skipped=skipped, seconds=seconds, failed_hosts=tuple(failed), marks=marks)
        self._finished = fin
        self.record.log(*overrides.finished_entry(self.revision, len(self.hosts), fin))
        self.record.emit(fin)
        return fin


    # ------------------------------------------------------------------------------------------ after the fact
    async def rerun(self, hosts: list[str], by: Actor) -> ev.RolloutFinished:
        """After the rollout ended with failed hosts (within their budgets): run those hosts again.

        The same rollout goes on, as a resume: the journal, the log and the lock see it as such.
        """
        recovery.check_rerun(self.hosts, hosts, status=self.status, running=self._running)
        self._finished = None
        self._done.clear()
        self._resumed = True
        self._t0 = time.monotonic()
        for host in hosts:
            self._requeue(self.hosts[host], by)
        self.phase_index = min(self.hosts[h].phase for h in hosts)
        return await self.run()

    async def reconcile(self) -> list[str]:
        """After a crash: settle every host that was in flight (recovery.reconcile); the hosts asked."""
        return await recovery.reconcile(self.hosts.values(), cfg=self.cfg, pool=self.pool, record=self.record,
                                        uuid=self.uuid)

    async def resume_run(self, *, retry_failed: bool = False) -> ev.RolloutFinished:
        """Take over a rollout whose process died (or stopped at a halt): claim it, reconcile in-flight hosts, and
        carry on; with retry_failed, the failed hosts of this and earlier phases run again."""
        recovery.check_resumable(self.journal, self.id)
        self._hold_fleet("resume")  # held through run(), which lets go at its end
        try:
            self.journal.claim_rollout(self.id)
            if retry_failed:
                for hr in self.hosts.values():
                    if hr.state == ev.FAILED and hr.phase <= self.phase_index:
                        self._requeue(hr, self.actor, " on resume")
                self.phase_index = min([self.phase_index] + [h.phase for h in self.hosts.values()
                                                             if h.state == ev.PENDING and h.phase < self.phase_index])
            await self.reconcile()
        except BaseException:
            self._let_go()
            raise
        return await self.run()

    def rollback_targets(self) -> list[HostRun]:
        """Every host that may run the new code (recovery.rollback_targets)."""
        return recovery.rollback_targets(self.hosts.values(), self.journal.touched(self.id) if self.id else set())

    async def rollback(self, by: Actor) -> ev.RolloutFinished:
        """Run the rollback steps on every host that may run the new code, latest phase first."""
        if not self.cfg.deploy.rollback:
            raise ControlroomError(f"{self.cfg.path}: deploy.rollback: no rollback steps are configured")
        if self._running:
            self.abort(by)
            await self._done.wait()
        self._hold_fleet("rollback")
        try:
            return await self._rollback_held(by)
        finally:
            self._let_go()

    async def _rollback_held(self, by: Actor) -> ev.RolloutFinished:
        if not self.uuid:
            self.uuid = self.journal.rollout_uuid(self.id)
        lock = self.journal.lock()
        if lock is None or lock.rollout_id != self.id or not lock.live:
            self._took(self.journal.take_lock(by, f"rolling back {self.revision}", rollout_id=self.id,
                                              force_reason=self.force_reason))
        finished = False
        try:
            back = recovery.Rollback(self.cfg, self.pool, self.record, self.op, self.phases)
            fin = await back.run(self.rollback_targets(), by)
            self.status = ev.R_ROLLED_BACK
            self._finished = fin
            finished = True
            return fin
        finally:
            if finished:
                await self._release_leases()
            self.journal.release_lock(by, rollout_id=self.id, manual=False)
