"""What the engine does after the fact: load a rollout from the journal, reconcile hosts after a crash, resume, run
failed hosts again, and roll back every host that may run the new code.

A mixin of Rollout (rollout.py): it uses the engine's state, its journal and its pool, and holds the fleet's OS
lock for as long as it acts, so a resume and a rollback exclude each other and any deploy, from any process.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.engine.hostrun import _live_from
from controlroom.fleet import hostside
from controlroom.fleet.ssh import render

if TYPE_CHECKING:
    from controlroom.config.config import Config
    from controlroom.engine.rollout import HostRun, Rollout
    from controlroom.fleet.ssh import SSHPool
    from controlroom.journal.journal import Journal


class RecoveryMixin:
    # ------------------------------------------------------------------------------------------ rerun
    async def rerun(self: Rollout, hosts: list[str], user: str) -> ev.RolloutFinished:
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
    def rollback_targets(self: Rollout) -> list[HostRun]:
        """Every host that may run the new code: done, failed or skipped after a step started (a failed health
        check is the host that most needs it), in flight at a crash, or half rolled back; not a host that never
        ran a step of this deploy, nor one already rolled back."""
        touched = self.journal.touched(self.id) if self.id else set()
        out = []
        for hr in self.hosts.values():
            if hr.state == ev.ROLLED_BACK or (hr.state == ev.SKIPPED and hr.name not in touched):
                continue
            if hr.state in (ev.DONE, *ev.IN_FLIGHT) or hr.name in touched or hr.steps_done:
                out.append(hr)
        return out

    async def rollback(self: Rollout, user: str) -> ev.RolloutFinished:
        """Run the rollback steps on every host that may run the new code, latest phase first."""
        if not self.cfg.deploy.rollback:
            raise ControlroomError(f"{self.cfg.path}: deploy.rollback: no rollback steps are configured")
        if self._running:
            self.abort(user)
            await self._done.wait()
        self._hold_fleet("rollback")
        try:
            return await self._rollback_held(user)
        finally:
            self._let_go()

    async def _rollback_held(self: Rollout, user: str) -> ev.RolloutFinished:
        if not self.uuid:
            self.uuid = self.journal.rollout_uuid(self.id)
        lock = self.journal.lock()
        if lock is None or lock.rollout_id != self.id or not lock.live:
            self.journal.take_lock(user, f"rolling back {self.revision}", rollout_id=self.id,
                                   force_reason=self.force_reason)
        t0 = time.monotonic()
        finished = False
        try:
            targets = self.rollback_targets()
            self._emit(ev.OperatorAction(self.id, user=user, action="rollback", detail=f"{len(targets)} hosts"))
            self._log("ROLLBACK START", f"{self.revision} -> previous revision on {len(targets)} hosts "
                      "(done, failed after a step, or in flight)", user)
            await self._learn_previous([h for h in targets if not h.previous or h.state != ev.DONE])
            targets = [h for h in targets if h.state != ev.SKIPPED]
            for i in reversed(range(len(self.phases))):
                mine = [h for h in targets if h.phase == i]
                if not mine:
                    continue
                limit = asyncio.Semaphore(self.phases[i].parallel)

                async def one(hr: HostRun, limit: asyncio.Semaphore = limit) -> None:
                    async with limit:
                        await self._rollback_host(hr)

                await asyncio.gather(*(one(h) for h in mine))
            back = [h for h in targets if h.state == ev.ROLLED_BACK]
            failed = [(h.name, h.reason) for h in targets if h.state != ev.ROLLED_BACK]
            seconds = round(time.monotonic() - t0, 3)
            self.status = ev.R_ROLLED_BACK
            fin = ev.RolloutFinished(self.id, status=ev.R_ROLLED_BACK, revision=self.revision, done=len(back),
                                     failed=len(failed), skipped=0, seconds=seconds, failed_hosts=tuple(failed))
            # hosts that could not go back stay targets: `controlroom rollback` again reaches them
            self._log("ROLLBACK OK" if not failed else "ROLLBACK FAILED",
                      f"{len(back)} hosts back on their previous revision"
                      + (f", {len(failed)} failed: `controlroom rollback` again reaches them" if failed else "")
                      + f" ({seconds:.1f} s)", user)
            self._emit(fin)
            self._finished = fin
            finished = True
            return fin
        finally:
            if finished:
                await self._release_leases()
            self.journal.release_lock(user, rollout_id=self.id, manual=False)

    async def _learn_previous(self: Rollout, hosts: list[HostRun]) -> None:
        """For hosts in flight at a crash, or whose previous revision the journal lacks: wait for a step still
        running there to end (it would race the rollback), and read the previous revision from the receipt the
        host keeps for this deploy."""

        async def ask(hr: HostRun) -> None:
            timeout = self.cfg.deploy.step_timeout
            res = await self.pool.run(hr.name, hostside.receipt_command(timeout), timeout=timeout + 10)
            rec = hostside.parse_receipt(res.stdout) if res.ok else None
            if rec is not None and rec.problem:
                # a receipt in a shape controlroom never writes proves nothing either way: the host may run the
                # new code, so it is not skipped, and its previous revision is not taken from it
                self._set(hr, ev.FAILED, step=hr.step, reason=f"rollback: {rec.problem}")
            elif rec is not None and rec.deploy == self.uuid and rec.previous:
                hr.previous = rec.previous
            elif res.ok and not hostside.still_running(res.stdout) and not (
                    rec is not None and rec.deploy == self.uuid):
                # no receipt of this deploy: it never began a step here (the receipt comes before step 1)
                self._set(hr, ev.SKIPPED, reason="never began a step of this deploy: nothing to roll back")

        await asyncio.gather(*(ask(h) for h in hosts))

    async def _rollback_host(self: Rollout, hr: HostRun) -> None:
        hr.started = time.monotonic()
        hr.released = False
        if not hr.previous:
            self._set(hr, ev.FAILED, step=hr.step, reason="rollback: the previous revision of this host is unknown")
            return
        self._set(hr, ev.ROLLING_BACK)
        for k, step in enumerate(self.cfg.deploy.rollback, start=1):
            cmd = render(step, revision=self.revision, previous=hr.previous, host=hr.name)
            hr.output.append(f"$ {cmd}")
            res = await self.pool.run(hr.name, hostside.guarded(self.op, cmd), timeout=self.cfg.deploy.step_timeout,
                                      on_line=lambda s, line: hr.output.append(line))
            if not res.ok:
                holder = hostside.held_by(res.stdout) if res.exit_code == hostside.HELD_EXIT else None
                why = f"held by {holder}" if holder else f"{res.label} {res.reason}".strip()
                self._set(hr, ev.FAILED, reason=f"rollback step {k}: {why}")
                return
        back, hr.previous = hr.previous, self.revision  # what it ran before the rollback: this deploy's revision
        self._set(hr, ev.ROLLED_BACK, revision=back)

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
        r.uuid = journal.rollout_uuid(rec.id)
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
            hr.state, hr.step, hr.steps_done = ev.HostState(run.state), run.step, run.steps_done
            hr.reason = run.reason
            hr.revision, hr.previous = run.revision, run.previous
            hr.skipped_by_operator = run.state == ev.SKIPPED and run.reason.startswith("skipped by")
        r._resumed = True
        return r

    async def reconcile(self: Rollout) -> list[str]:
        """After a crash: ask every host that was in flight for its receipt and its live revision, and settle it.

        Each goes back to pending and carries on from the first step its receipt (of this deploy, never another)
        does not have as finished. Returns the hosts that were asked.
        """
        inflight = [h for h in self.hosts.values() if h.state in ev.IN_FLIGHT and h.state != ev.ROLLING_BACK]

        async def ask(hr: HostRun) -> None:
            timeout = self.cfg.deploy.step_timeout
            receipt = await self.pool.run(hr.name, hostside.receipt_command(timeout), timeout=timeout + 10)
            if hostside.still_running(receipt.stdout):
                self._set(hr, ev.FAILED, step=hr.step, reason=f"a step started before the crash still runs on "
                          f"the host after {timeout:g} s ({hostside.still_running(receipt.stdout)}); look, then retry")
                return
            res = await self.pool.run(hr.name, self.cfg.release.live_command, timeout=timeout)
            live = _live_from(res) if res.ok else None
            rec = hostside.parse_receipt(receipt.stdout) if receipt.ok else None
            steps_done = hr.steps_done
            if rec is not None and rec.deploy == self.uuid:
                steps_done = max(steps_done, min(rec.step, hr.steps))
                hr.previous = hr.previous or rec.previous
            self._set(hr, ev.PENDING, steps_done=steps_done, revision=live,
                      reason=f"reconciled after resume: live {live or 'unknown'}, {steps_done}/{hr.steps} "
                      "steps done")

        await asyncio.gather(*(ask(h) for h in inflight))
        return [h.name for h in inflight]

    async def resume_run(self: Rollout, *, retry_failed: bool = False) -> ev.RolloutFinished:
        """Take over a rollout whose process died (or stopped at a halt): claim it, reconcile in-flight hosts, and
        carry on; with retry_failed, the failed hosts of this and earlier phases run again."""
        rec = self.journal.rollout(self.id)
        if rec and self.journal.rollback_underway(rec.id):
            raise ControlroomError(f"deploy #{rec.id} of {rec.revision} was being rolled back when its server "
                                   f"stopped; {self.journal.next_step(rec.id)}")
        if rec and rec.status in ev.ROLLOUT_FINAL and rec.status != ev.R_FAILED:
            raise ControlroomError(f"deploy #{rec.id} of {rec.revision} already ended ({rec.status}); nothing to "
                                   "resume (`controlroom log` says how it ended)")
        self._hold_fleet("resume")  # held through run(), which lets go at its end
        try:
            self.journal.claim_rollout(self.id)
            if retry_failed:
                for hr in self.hosts.values():
                    if hr.state == ev.FAILED and hr.phase <= self.phase_index:
                        self._requeue(hr, self.user, " on resume")
                self.phase_index = min([self.phase_index] + [h.phase for h in self.hosts.values()
                                                             if h.state == ev.PENDING and h.phase < self.phase_index])
            await self.reconcile()
        except BaseException:
            self._let_go()
            raise
        return await self.run()
