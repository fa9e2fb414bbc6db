"""Going on past what does not hold only on purpose: a gate that failed or could not be checked, an exceeded failure
budget, a host skipped past its phase's budget. Each needs a typed reason (one line, neutralised, bounded); without
one the intent is refused with a UsageError naming the failing values. With one it is on the record (an
OperatorAction and a deploy-log entry naming who, what did not hold and why), and the deploy's result is marked for
good (events.marks_of reads those actions back from the journal, so a server started later marks it too).

Functions of the engine (rollout.Rollout): they read its state and record through its _emit and _log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controlroom.core import events as ev
from controlroom.core.errors import UsageError
from controlroom.core.text import clean

if TYPE_CHECKING:
    from controlroom.engine.hostrun import HostRun
    from controlroom.engine.rollout import Rollout

REASON_LIMIT = 200  # characters of a typed reason the log keeps


def typed(reason: object) -> str:
    """The reason as the log keeps it: one line, control characters made visible, bounded; '' for none."""
    if not isinstance(reason, str):
        return ""
    return clean(reason.strip(), REASON_LIMIT).strip()


def failed_gate(r: Rollout) -> ev.GateWaiting | None:
    """The wait at a gate that does not hold (failed or unknown), if the engine waits at one now."""
    w = r.waiting
    return w if w is not None and w.kind == ev.GATE_FAILED else None


def _gate_phase(r: Rollout, w: ev.GateWaiting) -> str:
    return r.phases[w.phase - 1].name if 0 < w.phase <= len(r.phases) else w.name


def pass_gate(r: Rollout, w: ev.GateWaiting, user: str, reason: str) -> None:
    """Past the gate that does not hold, with ``reason`` (typed); else UsageError naming what does not hold."""
    phase, failing = _gate_phase(r, w), w.failing()
    if not reason:
        raise UsageError(f"the {phase} gate does not hold ({failing}): passing it needs a typed reason")
    r._emit(ev.OperatorAction(r.id, user=user, action=ev.A_OVERRIDE, detail=f"{phase}: {failing}: {reason}"))
    r._log("GATE OVERRIDDEN", f'{r.revision} {phase} by {user}: {failing}: "{reason}"', user)


def refusal(r: Rollout, op: str, host: object, reason: object) -> None:
    """Raise the UsageError ``op`` (proceed, skip) would meet for want of a typed reason, before anything changes
    (the server asks first, so a refused intent does not even make a parked deploy's lock live again)."""
    if typed(reason):
        return
    if op == "proceed":
        if r._halted:
            force_budget(r, r.phase_index, "", "")
        elif (w := failed_gate(r)) is not None:
            pass_gate(r, w, "", "")
    elif op == "skip":
        hr = r.hosts.get(str(host))
        if hr is not None and hr.state in (ev.PENDING, ev.FAILED, *ev.IN_FLIGHT) \
                and (used := skip_over_budget(r, hr)) is not None:
            skip_past_budget(r, hr, used, "", "")


def _failed(hosts: list[HostRun]) -> str:
    names = [h.name for h in hosts]
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def force_budget(r: Rollout, i: int, user: str, reason: str) -> None:
    """Past phase i's exceeded failure budget, with ``reason``; else UsageError naming the failed hosts."""
    phase = r.phases[i]
    failed = [h for h in r._phase_hosts(i) if h.state == ev.FAILED]
    what = f"{len(failed)} failed: {_failed(failed)}; max_failed {phase.max_failed}"
    if not reason:
        raise UsageError(f"{phase.name} is past its failure budget ({what}): going on needs a typed reason")
    r._emit(ev.OperatorAction(r.id, user=user, action=ev.A_FORCE, detail=f"past the failure budget with "
                              f"{len(failed)} failed: {reason}"))
    r._log("FORCE", f'{phase.name} past its failure budget by {user} ({what}): "{reason}"', user)


def skip_over_budget(r: Rollout, hr: HostRun) -> int | None:
    """The budget phase hr's phase would use once hr is skipped, when that is past its max_failed; else None."""
    used = r.budget_used(hr.phase) + (0 if hr.state == ev.FAILED or hr.skipped_by_operator else 1)
    return used if used > r.phases[hr.phase].max_failed else None


def skip_past_budget(r: Rollout, hr: HostRun, used: int, user: str, reason: str) -> None:
    """Skipping hr takes its phase past its failure budget: only with ``reason``, then on the record."""
    phase = r.phases[hr.phase]
    what = f"{used} of max_failed {phase.max_failed}"
    if not reason:
        raise UsageError(f"skipping {hr.name} takes {phase.name} past its failure budget ({what}): it needs a "
                         "typed reason")
    r._emit(ev.OperatorAction(r.id, user=user, action=ev.A_FORCE, host=hr.name,
                              detail=f"skipped past the failure budget ({what}): {reason}"))
    r._log("FORCE", f'{hr.name} skipped past the failure budget of {phase.name} by {user} ({what}): "{reason}"',
           user)


def finished_entry(r: Rollout, fin: ev.RolloutFinished) -> tuple[str, str]:
    """The deploy-log entry of how the deploy ended: ('DEPLOY OK', 'r2307 ⚠ past a failed gate: on 6 of 6 hosts
    (12.3 s)'); the mark is there for every reader of the log (the app, `controlroom log`, chat)."""
    kind = {ev.R_DONE: "DEPLOY OK", ev.R_FAILED: "DEPLOY FAILED", ev.R_ABORTED: "DEPLOY ABORTED"}[fin.status]
    extra = (f", {fin.failed} failed" if fin.failed else "") + (f", {fin.skipped} skipped" if fin.skipped else "")
    mark = ev.marks_text(fin.marks, fin.skipped)
    marked = f" {ev.MARK_SYMBOL} {mark}:" if mark else ""
    return kind, f"{r.revision}{marked} on {fin.done} of {len(r.hosts)} hosts{extra} ({fin.seconds:.1f} s)"
