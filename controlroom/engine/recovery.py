"""What the engine does after the fact: load a rollout from the journal, reconcile hosts after a crash, check a resume
or a rerun, and roll back every host that may run the new code.

Functions with explicit inputs: the journal, the config and the pool, the hosts (hostrun.HostRun), the rollout's
Recorder (recorder.py) to record through. None of them knows the Rollout (rollout.py), which calls them and keeps its
own state; it holds the fleet's OS lock for as long as they act, so a resume and a rollback exclude each other and
any deploy, from any process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from controlroom.config.config import Config
from controlroom.config.inventory import Phase
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError, DeployLost
from controlroom.core.identity import Actor
from controlroom.engine.hostrun import HostRun, live_from
from controlroom.engine.recorder import Recorder
from controlroom.fleet import hostside
from controlroom.fleet.hostside import Operation
from controlroom.fleet.ssh import SSHPool, render
from controlroom.journal.journal import Journal


# ------------------------------------------------------------------------------------------ load
@dataclass(frozen=True)
class Saved:
    """A rollout as the journal has it: what a Rollout is loaded from."""

    id: int
    uuid: str
    revision: str
    previous: str | None
    status: str
    phase: int
    hosts: dict  # host name -> the journal's record of it (journal.host_runs)


def saved(cfg: Config, journal: Journal, rollout_id: int | None = None) -> Saved:
    """The last (or given) rollout in the journal; ControlroomError when there is none, or when it was planned
    with other phases or hosts than ``cfg`` gives."""
    rec = journal.rollout(rollout_id)
    if rec is None:
        raise ControlroomError("there is no deploy in the journal yet")
    names = [n for n, _ in rec.phases]
    if names != [p.name for p in cfg.phases] or any(
        tuple(hosts) != p.hosts for (_, hosts), p in zip(rec.phases, cfg.phases, strict=False)
    ):
        raise ControlroomError(
            f"deploy #{rec.id} was planned with other phases or hosts than {cfg.path} now gives; "
            "resume it with the config it started with"
        )
    return Saved(rec.id, journal.rollout_uuid(rec.id), rec.revision, rec.previous, rec.status, rec.phase,
                 journal.host_runs(rec.id))


def restore(hosts: dict[str, HostRun], saved: Saved) -> None:
    """Every host as the journal knows it."""
    for name, run in saved.hosts.items():
        hr = hosts.get(name)
        if hr is None:
            continue
        hr.state, hr.step, hr.steps_done = ev.HostState(run.state), run.step, run.steps_done
        hr.reason = run.reason
        hr.revision, hr.previous = run.revision, run.previous
        hr.skipped_by_operator = run.state == ev.SKIPPED and run.reason.startswith("skipped by")


# ------------------------------------------------------------------------------------------ resume, rerun
def check_resumable(journal: Journal, rollout_id: int) -> None:
    """ControlroomError, saying why, when the rollout cannot be resumed: it is being rolled back, or it ended."""
    rec = journal.rollout(rollout_id)
    if rec and journal.rollback_underway(rec.id):
        raise ControlroomError(f"deploy #{rec.id} of {rec.revision} was being rolled back when its server "
                               f"stopped; {journal.next_step(rec.id)}")
    if rec and rec.status in ev.ROLLOUT_FINAL and rec.status != ev.R_FAILED:
        raise ControlroomError(f"deploy #{rec.id} of {rec.revision} already ended ({rec.status}); nothing to "
                               "resume (`controlroom log` says how it ended)")


def check_rerun(hosts: dict[str, HostRun], names: Iterable[str], *, status: str, running: bool) -> None:
    """ControlroomError unless the rollout ended with failed hosts and every one of ``names`` is one of them."""
    if running or status != ev.R_FAILED:
        raise ControlroomError("only a rollout that ended with failed hosts can run them again")
    for host in names:
        hr = hosts.get(host)
        if hr is None or hr.state != ev.FAILED:
            raise ControlroomError(f"{host}: only a failed host can be run again")


async def reconcile(hosts: Iterable[HostRun], *, cfg: Config, pool: SSHPool, record: Recorder,
                    uuid: str) -> list[str]:
    """After a crash: ask every host that was in flight for its receipt and its live revision, and settle it.

    Each goes back to pending and carries on from the first step its receipt (of deploy ``uuid``, never another)
    does not have as finished. Returns the hosts that were asked.
    """
    inflight = [h for h in hosts if h.state in ev.IN_FLIGHT and h.state != ev.ROLLING_BACK]

    async def ask(hr: HostRun) -> None:
        timeout = cfg.deploy.step_timeout
        receipt = await pool.run(hr.name, hostside.receipt_command(timeout), timeout=timeout + 10)
        if hostside.still_running(receipt.stdout):
            hr.move(record, ev.FAILED, step=hr.step, reason=f"a step started before the crash still runs on "
                        f"the host after {timeout:g} s ({hostside.still_running(receipt.stdout)}); look, then retry")
            return
        res = await pool.run(hr.name, cfg.release.live_command, timeout=timeout)
        live = live_from(res) if res.ok else None
        rec = hostside.parse_receipt(receipt.stdout) if receipt.ok else None
        steps_done = hr.steps_done
        if rec is not None and rec.deploy == uuid:
            steps_done = max(steps_done, min(rec.step, hr.steps))
            hr.previous = hr.previous or rec.previous
        hr.move(record, ev.PENDING, steps_done=steps_done, revision=live,
                    reason=f"reconciled after resume: live {live or 'unknown'}, {steps_done}/{hr.steps} "
                    "steps done")

    await asyncio.gather(*(ask(h) for h in inflight))
    return [h.name for h in inflight]


# ------------------------------------------------------------------------------------------ rollback
def rollback_targets(hosts: Iterable[HostRun], touched: set[str]) -> list[HostRun]:
    """Every host that may run the new code: done, failed or skipped after a step started (a failed health check
    is the host that most needs it), in flight at a crash, or half rolled back; not a host that never ran a step
    of this deploy (``touched``: the hosts the journal saw begin one), nor one already rolled back."""
    out = []
    for hr in hosts:
        if hr.state == ev.ROLLED_BACK or (hr.state == ev.SKIPPED and hr.name not in touched):
            continue
        if hr.state in (ev.DONE, *ev.IN_FLIGHT) or hr.name in touched or hr.steps_done:
            out.append(hr)
    return out


class Rollback:
    """Run the rollback steps on the ``targets`` (rollback_targets), latest phase first, each phase as parallel as
    its config says. Given the config and the pool, the rollout's recorder, the operation acting on the hosts
    (the deploy's lease), and the phases."""

    def __init__(self, cfg: Config, pool: SSHPool, record: Recorder, op: Operation,
                 phases: tuple[Phase, ...]) -> None:
        self.cfg = cfg
        self.pool = pool
        self.record = record
        self.op = op
        self.phases = phases

    async def run(self, targets: list[HostRun], by: Actor) -> ev.RolloutFinished:
        """Roll the targets back; the RolloutFinished (rolled back) says how many went back and which failed."""
        rec = self.record
        t0 = time.monotonic()
        rec.emit(ev.OperatorAction(rec.rollout_id, user=by.user, action="rollback", detail=f"{len(targets)} hosts"))
        rec.log("ROLLBACK START", f"{rec.revision} -> previous revision on {len(targets)} hosts "
                "(done, failed after a step, or in flight)", by)
        await self._learn_previous([h for h in targets if not h.previous or h.state != ev.DONE])
        targets = [h for h in targets if h.state != ev.SKIPPED]
        for i in reversed(range(len(self.phases))):
            mine = [h for h in targets if h.phase == i]
            if not mine:
                continue
            limit = asyncio.Semaphore(self.phases[i].parallel)

            async def one(hr: HostRun, limit: asyncio.Semaphore = limit) -> None:
                async with limit:
                    await self._host(hr)

            await asyncio.gather(*(one(h) for h in mine))
        back = [h for h in targets if h.state == ev.ROLLED_BACK]
        failed = [(h.name, h.reason) for h in targets if h.state != ev.ROLLED_BACK]
        seconds = round(time.monotonic() - t0, 3)
        fin = ev.RolloutFinished(rec.rollout_id, status=ev.R_ROLLED_BACK, revision=rec.revision, done=len(back),
                                 failed=len(failed), skipped=0, seconds=seconds, failed_hosts=tuple(failed))
        # hosts that could not go back stay targets: `controlroom rollback` again reaches them
        rec.log("ROLLBACK OK" if not failed else "ROLLBACK FAILED",
                f"{len(back)} hosts back on their previous revision"
                + (f", {len(failed)} failed: `controlroom rollback` again reaches them" if failed else "")
                + f" ({seconds:.1f} s)", by)
        rec.emit(fin)
        return fin

    async def _learn_previous(self, hosts: list[HostRun]) -> None:
        """For hosts in flight at a crash, or whose previous revision the journal lacks: wait for a step still
        running there to end (it would race the rollback), and read the previous revision from the receipt the
        host keeps for this deploy."""
        uuid = self.op.uuid

        async def ask(hr: HostRun) -> None:
            timeout = self.cfg.deploy.step_timeout
            res = await self.pool.run(hr.name, hostside.receipt_command(timeout), timeout=timeout + 10)
            rec = hostside.parse_receipt(res.stdout) if res.ok else None
            if rec is not None and rec.problem:
                # a receipt in a shape controlroom never writes proves nothing either way: the host may run the
                # new code, so it is not skipped, and its previous revision is not taken from it
                hr.move(self.record, ev.FAILED, step=hr.step, reason=f"rollback: {rec.problem}")
            elif rec is not None and rec.deploy == uuid and rec.previous:
                hr.previous = rec.previous
            elif res.ok and not hostside.still_running(res.stdout) and not (
                    rec is not None and rec.deploy == uuid):
                # no receipt of this deploy: it never began a step here (the receipt comes before step 1)
                hr.move(self.record, ev.SKIPPED, reason="never began a step of this deploy: nothing to roll back")

        await asyncio.gather(*(ask(h) for h in hosts))

    async def _host(self, hr: HostRun) -> None:
        hr.started = time.monotonic()
        hr.released = False
        if not hr.previous:
            hr.move(self.record, ev.FAILED, step=hr.step,
                             reason="rollback: the previous revision of this host is unknown")
            return
        hr.move(self.record, ev.ROLLING_BACK)
        for k, step in enumerate(self.cfg.deploy.rollback, start=1):
            cmd = render(step, revision=self.record.revision, previous=hr.previous, host=hr.name)
            hr.output.append(f"$ {cmd}")
            res = await self.pool.run(hr.name, hostside.guarded(self.op, cmd), timeout=self.cfg.deploy.step_timeout,
                                      on_line=lambda s, line: hr.output.append(line))
            if not res.ok:
                if res.exit_code == hostside.HELD_EXIT and (taker := hostside.fenced_by(res.stdout)):
                    raise DeployLost(f"this bastion lost deploy #{self.record.rollout_id}: {hr.name} refused its "
                                     f"rollback step {k}, the deploy was taken over by {taker}")
                holder = hostside.held_by(res.stdout) if res.exit_code == hostside.HELD_EXIT else None
                why = f"held by {holder}" if holder else f"{res.label} {res.reason}".strip()
                hr.move(self.record, ev.FAILED, reason=f"rollback step {k}: {why}")
                return
        back, hr.previous = hr.previous, self.record.revision  # what it ran before: this deploy's revision
        hr.move(self.record, ev.ROLLED_BACK, revision=back)
