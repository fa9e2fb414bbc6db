"""Going on past what does not hold only on purpose: a gate that failed or could not be checked, an exceeded failure
budget, a host skipped past its phase's budget. Each needs a typed reason (one line, neutralised, bounded); without
one the intent is refused with a UsageError naming the failing values. With one it is on the record (an
OperatorAction and a deploy-log entry naming who, what did not hold and why), and the deploy's result is marked for
good (events.marks_of reads those actions back from the journal, so a server started later marks it too).

Functions of the engine, given what they need: the rollout's Recorder (recorder.py) to record through, its phases and
hosts. They never touch the rollout's state; rollout.Rollout calls them from its intents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controlroom.core import events as ev
from controlroom.core.errors import UsageError
from controlroom.core.identity import Actor
from controlroom.core.text import clean

if TYPE_CHECKING:
    from controlroom.config.inventory import Phase
    from controlroom.engine.hostrun import HostRun
    from controlroom.engine.recorder import Recorder

REASON_LIMIT = 200  # characters of a typed reason the log keeps


def typed(reason: object) -> str:
    """The reason as the log keeps it: one line, control characters made visible, bounded; '' for none."""
    if not isinstance(reason, str):
        return ""
    return clean(reason.strip(), REASON_LIMIT).strip()


def failed_gate(waiting: ev.GateWaiting | None) -> ev.GateWaiting | None:
    """The wait at a gate that does not hold (failed or unknown), if ``waiting`` (the engine's wait now) is one."""
    return waiting if waiting is not None and waiting.kind == ev.GATE_FAILED else None


def _gate_phase(phases: tuple[Phase, ...], w: ev.GateWaiting) -> str:
    return phases[w.phase - 1].name if 0 < w.phase <= len(phases) else w.name


def pass_gate(record: Recorder, phases: tuple[Phase, ...], w: ev.GateWaiting, by: Actor, reason: str) -> None:
    """Past the gate that does not hold, with ``reason`` (typed); else UsageError naming what does not hold."""
    phase, failing = _gate_phase(phases, w), w.failing()
    if not reason:
        raise UsageError(f"the {phase} gate does not hold ({failing}): passing it needs a typed reason")
    record.emit(ev.OperatorAction(record.rollout_id, user=by.user, action=ev.A_OVERRIDE,
                                  detail=f"{phase}: {failing}: {reason}"))
    record.log("GATE OVERRIDDEN", f'{record.revision} {phase} by {by.user}: {failing}: "{reason}"', by)


def _failed(hosts: list[HostRun]) -> str:
    names = [h.name for h in hosts]
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def force_budget(record: Recorder, phase: Phase, failed: list[HostRun], by: Actor, reason: str) -> None:
    """Past ``phase``'s exceeded failure budget (``failed``: its failed hosts), with ``reason``; else UsageError
    naming the failed hosts."""
    what = f"{len(failed)} failed: {_failed(failed)}; max_failed {phase.max_failed}"
    if not reason:
        raise UsageError(f"{phase.name} is past its failure budget ({what}): going on needs a typed reason")
    record.emit(ev.OperatorAction(record.rollout_id, user=by.user, action=ev.A_FORCE,
                                  detail=f"past the failure budget with {len(failed)} failed: {reason}"))
    record.log("FORCE", f'{phase.name} past its failure budget by {by.user} ({what}): "{reason}"', by)


def skip_over_budget(hr: HostRun, phase: Phase, used: int) -> int | None:
    """The budget hr's phase would use once hr is skipped (``used``: what it uses now), when that is past its
    max_failed; else None."""
    after = used + (0 if hr.state == ev.FAILED or hr.skipped_by_operator else 1)
    return after if after > phase.max_failed else None


def skip_past_budget(record: Recorder, hr: HostRun, phase: Phase, used: int, by: Actor, reason: str) -> None:
    """Skipping hr takes its phase past its failure budget: only with ``reason``, then on the record."""
    what = f"{used} of max_failed {phase.max_failed}"
    if not reason:
        raise UsageError(f"skipping {hr.name} takes {phase.name} past its failure budget ({what}): it needs a "
                         "typed reason")
    record.emit(ev.OperatorAction(record.rollout_id, user=by.user, action=ev.A_FORCE, host=hr.name,
                                  detail=f"skipped past the failure budget ({what}): {reason}"))
    record.log("FORCE", f'{hr.name} skipped past the failure budget of {phase.name} by {by.user} ({what}): '
               f'"{reason}"', by)


def finished_entry(revision: str, hosts: int, fin: ev.RolloutFinished) -> tuple[str, str]:
    """The deploy-log entry of how the deploy of ``revision`` to ``hosts`` hosts ended: ('DEPLOY OK', 'r2307 ⚠
    past a failed gate: on 6 of 6 hosts (12.3 s)'); the mark is there for every reader of the log (the app,
    `controlroom log`, chat)."""
    kind = {ev.R_DONE: "DEPLOY OK", ev.R_FAILED: "DEPLOY FAILED", ev.R_ABORTED: "DEPLOY ABORTED"}[fin.status]
    extra = (f", {fin.failed} failed" if fin.failed else "") + (f", {fin.skipped} skipped" if fin.skipped else "")
    mark = ev.marks_text(fin.marks, fin.skipped)
    marked = f" {ev.MARK_SYMBOL} {mark}:" if mark else ""
    return kind, f"{revision}{marked} on {fin.done} of {hosts} hosts{extra} ({fin.seconds:.1f} s)"
