"""The event vocabulary shared by the engine, the journal, the TUI, the CLI printer and the notifier.

Events are past-tense facts. The engine emits them; the journal commits each one before any other subscriber sees
it, so nothing on a screen was ever unknown to the journal. Operator intents are imperatives and live in rollout.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import NamedTuple

from controlroom.core.text import clean


class HostState(StrEnum):
    """Where one host stands in one rollout (its wire and journal string is the value: HostState.DONE == "done")."""

    PENDING = "pending"
    CONNECTING = "connecting"
    RUNNING = "running"  # step k of n
    CHECKING = "checking"  # the health check
    DONE = "done"
    FAILED = "failed"  # the one "failed": gates, flag receipts and rollouts spell theirs with it
    SKIPPED = "skipped"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


PENDING, CONNECTING, RUNNING, CHECKING, DONE, FAILED, SKIPPED, ROLLING_BACK, ROLLED_BACK = HostState
HOST_STATES = tuple(HostState)
IN_FLIGHT = (CONNECTING, RUNNING, CHECKING, ROLLING_BACK)
FINAL = (DONE, FAILED, SKIPPED, ROLLED_BACK)

# The host state machine, one table: state -> the states a host may be recorded in next. The design's diagram:
#   pending -> connecting -> running (step k of n) -> checking (health) -> done; each of them -> failed(reason);
#   done -> rolling_back -> rolled_back | failed; pending -> skipped (abort).
# What the engine does besides, each for a reason:
# - running -> running: the next step, or the live revision the first step reported, recorded at once;
#   connecting -> checking | done and running -> done: a resume skips the steps a host has done; no health check;
# - a host stopped in flight (skip, abort, Ctrl+C) is recorded skipped or failed from where it was;
# - retry puts a failed or skipped host back to pending; skip skips a failed one; a resume reconciles a host that
#   was in flight at a crash back to pending;
# - a rollback reaches every host that may run the new code (any state but pending-untouched and rolled_back),
#   goes on with a half-done one (rolling_back -> rolling_back), skips one that never began a step, and fails one
#   it cannot take back (a failed one again, when its previous revision is unknown).
TRANSITIONS: dict[HostState, frozenset[HostState]] = {
    PENDING: frozenset({CONNECTING, FAILED, SKIPPED, ROLLING_BACK}),
    CONNECTING: frozenset({RUNNING, CHECKING, DONE, FAILED, SKIPPED, PENDING, ROLLING_BACK}),
    RUNNING: frozenset({RUNNING, CHECKING, DONE, FAILED, SKIPPED, PENDING, ROLLING_BACK}),
    CHECKING: frozenset({DONE, FAILED, SKIPPED, PENDING, ROLLING_BACK}),
    DONE: frozenset({ROLLING_BACK, FAILED, SKIPPED}),
    FAILED: frozenset({FAILED, PENDING, SKIPPED, ROLLING_BACK}),
    SKIPPED: frozenset({SKIPPED, PENDING, FAILED, ROLLING_BACK}),
    ROLLING_BACK: frozenset({ROLLING_BACK, ROLLED_BACK, FAILED, SKIPPED}),
    ROLLED_BACK: frozenset(),
}


class IllegalTransition(RuntimeError):
    """The engine tried a host transition the state machine does not have: a bug in the engine, never the fleet's."""


def check_transition(host: str, old: str, new: str) -> HostState:
    """``new`` as a HostState when a host in ``old`` may go there (TRANSITIONS); raises IllegalTransition if not."""
    try:
        to, allowed = HostState(new), new in TRANSITIONS[HostState(old)]
    except ValueError:
        allowed = False
    if not allowed:
        old, new = str(old), str(new)
        raise IllegalTransition(f"host {host} cannot go from {old!r} to {new!r} (not in events.TRANSITIONS)")
    return to


class RolloutStatus(StrEnum):
    """How a rollout stands (a host's RUNNING and a rollout's RUNNING are two types with one spelling)."""

    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"  # the failure budget of a phase was exceeded; waiting for a decision
    WAITING = "waiting"  # at a phase boundary, waiting for the operator (or a gate)
    DONE = "done"
    FAILED = HostState.FAILED.value
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


R_RUNNING, R_PAUSED, R_HALTED, R_WAITING, R_DONE, R_FAILED, R_ABORTED, R_ROLLED_BACK = RolloutStatus
ROLLOUT_FINAL = (R_DONE, R_FAILED, R_ABORTED, R_ROLLED_BACK)

# what a GateWaiting waits for (its kind)
GATE_BAKE = "bake"
GATE_FAILED = "gate"
GATE_OPERATOR = "operator"

# what marks a deploy's result for good (RolloutFinished.marks): it went past a gate that did not hold, past an
# exceeded failure budget (forced, or a host skipped past it), or it ended with hosts skipped
MARK_GATE = "gate"
MARK_BUDGET = "budget"
MARK_SKIPPED = "skipped"
MARK_SYMBOL = "⚠"  # a marked result is shown with it (and the warning colour), never as a plain ✓
# the OperatorAction actions that mark the result: passing a gate that did not hold, going past a failure budget
A_OVERRIDE = "override"
A_FORCE = "force"


def marks_of(actions, status: str, skipped: int) -> tuple[str, ...]:
    """The marks of a deploy's result from the operator actions the journal has for it and how it ended."""
    if status not in (R_DONE, R_FAILED, R_ABORTED):
        return ()  # a rollback's result is the rollback's
    return action_marks(actions) + ((MARK_SKIPPED,) if status == R_DONE and skipped else ())


def action_marks(actions) -> tuple[str, ...]:
    """The marks the operator's actions give a deploy from the moment they were taken (it has not ended yet)."""
    return tuple(m for a, m in ((A_OVERRIDE, MARK_GATE), (A_FORCE, MARK_BUDGET)) if a in actions)


def marks_text(marks, skipped: int = 0) -> str:
    """'past a failed gate, past a failure budget, with 2 hosts skipped' ('' for an unmarked result)."""
    words = {MARK_GATE: "past a failed gate", MARK_BUDGET: "past a failure budget",
             MARK_SKIPPED: f"with {skipped} host{'' if skipped == 1 else 's'} skipped"}
    return ", ".join(words[m] for m in marks if m in words)


def outcome(e: RolloutFinished) -> str:
    """'DEPLOY OK r2307', or 'DEPLOY OK r2307 ⚠ past a failed gate' for a marked result: how every printer says it."""
    word = {R_DONE: "DEPLOY OK", R_FAILED: "DEPLOY FAILED", R_ABORTED: "DEPLOY ABORTED",
            R_ROLLED_BACK: "ROLLBACK DONE"}.get(e.status, e.status)
    mark = marks_text(e.marks, e.skipped)
    return f"{word} {e.revision}" + (f" {MARK_SYMBOL} {mark}" if mark else "")


class GateState(StrEnum):
    """A gate's verdict (gates.py judges; here because GateVerdict, its wire form, carries it)."""

    PASSED = "passed"
    FAILED = HostState.FAILED.value
    UNKNOWN = "unknown"  # could not be checked (the source down, NaN, no data)


class GateVerdict(NamedTuple):
    """One gate's verdict as a GateWaiting carries it (a tuple on the wire, in this order)."""

    gate: str  # the expression, as written: "errors_5xx < 5"
    series: str
    revision: str  # the line judged: the revision of a series split by it, "" for a single line
    value: float | None
    op: str  # "<", "<=", ">", ">=", "==", "!="
    threshold: float
    state: str  # a GateState: "passed", "failed" or "unknown"
    why: str = ""  # unknown: why it could not be checked
    kill_switches: tuple[str, ...] = ()  # failed: the kill switches guarding its series, not off when it was judged

    def text(self, phase: str, limit: str = "") -> str:
        """The deploy-log line: 'GATE canary: errors_5xx{r2307} = 7.9 (max 5): FAILED' (``limit``: the threshold
        as the config wrote it, 'max 5'; else from the number)."""
        if self.state == GateState.UNKNOWN or self.value is None:
            return f"GATE {phase}: {self.gate}: UNKNOWN ({self.why})"
        if not limit:
            limit = f"max {self.threshold:g}" if self.op in ("<", "<=") else f"min {self.threshold:g}" \
                if self.op in (">", ">=") else f"{self.op} {self.threshold:g}"
        who = f"{self.series}{{{self.revision}}}" if self.revision else self.series
        return f"GATE {phase}: {who} = {self.value:.3g} ({limit}): {str(self.state).upper()}"

    def failing(self) -> str:
        """'errors_5xx{r2307} 7.5 > 5', or 'errors_5xx unknown (no data)': what did not hold, in a few words."""
        who = f"{self.series}{{{self.revision}}}" if self.revision else self.series
        if self.state == GateState.UNKNOWN or self.value is None:
            return f"{who} unknown ({self.why or 'no value'})"
        if self.value == self.threshold:
            return f"{who} {self.value:.3g}, not {self.op} {self.threshold:g}"
        rel = ">" if self.value > self.threshold else "<"
        return f"{who} {self.value:.3g} {rel} {self.threshold:g}"


@dataclass(frozen=True)
class Event:
    rollout_id: int
    at: float = field(default_factory=time.time, kw_only=True)

    @property
    def event_type(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict:
        # shallow on purpose: fields hold plain values and tuples; asdict's deep copy costs more than the commit
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RolloutStarted(Event):
    revision: str
    previous: str | None
    user: str
    phases: tuple[tuple[str, tuple[str, ...]], ...]  # (phase name, host names)
    resumed: bool = False


@dataclass(frozen=True)
class PhaseStarted(Event):
    phase: int
    name: str
    hosts: int


@dataclass(frozen=True)
class HostStateChanged(Event):
    host: str
    phase: int
    state: str
    step: int = 0  # running: step k of n (1-based)
    steps: int = 0
    reason: str = ""  # failed: refused | auth | hostkey | exit N | timeout | dropped, and the detail
    revision: str | None = None  # the host's live revision when known
    previous: str | None = None
    seconds: float = 0.0  # time spent on the host so far
    steps_done: int = 0  # deploy steps this host has finished (what a resume skips)


@dataclass(frozen=True)
class HostOutput(Event):
    """A line of a command's output; shown live, not journaled line by line (the tail is in the result)."""

    host: str
    stream: str
    line: str


@dataclass(frozen=True)
class PhaseHalted(Event):
    """The failure budget was exceeded: no new hosts start; in-flight hosts finish."""

    phase: int
    name: str
    failed: tuple[str, ...]
    max_failed: int


@dataclass(frozen=True)
class PhaseCompleted(Event):
    phase: int
    name: str
    done: int
    failed: int
    skipped: int
    seconds: float


@dataclass(frozen=True)
class GateWaiting(Event):
    """Between phases: the next phase waits. kind says for what (never read it out of reason, which is for people):
    GATE_BAKE waits out the previous phase's bake time and goes on by itself; GATE_FAILED is a gate that failed or
    could not be checked (failed names its expressions; the operator may be asked too); GATE_OPERATOR waits for the
    operator only."""

    phase: int  # the phase that would start next
    name: str
    reason: str
    kind: str = "operator"  # GATE_BAKE, GATE_FAILED or GATE_OPERATOR
    failed: tuple[str, ...] = ()  # kind GATE_FAILED: the gate expressions that did not hold
    verdicts: tuple[tuple, ...] = ()  # every gate's latest verdict, GateVerdict tuples (old events: none)

    def verdict_list(self) -> list[GateVerdict]:
        return [GateVerdict(*v) for v in self.verdicts]

    def not_holding(self) -> list[GateVerdict]:
        """The verdicts of the gates that did not hold (failed, or could not be checked)."""
        return [v for v in self.verdict_list() if v.state != GateState.PASSED]

    def failed_series(self) -> list[str]:
        """The series whose gates did not hold, from the verdicts (a client never parses a gate expression)."""
        return list(dict.fromkeys(v.series for v in self.not_holding()))

    def failing(self) -> str:
        """What does not hold: 'errors_5xx{r2307} 7.5 > 5' (the expressions when no verdict came with it)."""
        bad = [v.failing() for v in self.verdict_list() if v.state != GateState.PASSED]
        return "; ".join(bad) or " and ".join(self.failed) or self.reason


@dataclass(frozen=True)
class GatePassed(Event):
    phase: int
    name: str
    by: str  # "auto" or the user who proceeded


@dataclass(frozen=True)
class RolloutPaused(Event):
    user: str


@dataclass(frozen=True)
class RolloutResumed(Event):
    user: str


@dataclass(frozen=True)
class OperatorAction(Event):
    """An intent the operator gave, as it was carried out (retry, skip, abort, rollback, force)."""

    user: str
    action: str
    host: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class RolloutFinished(Event):
    status: str  # done | failed | aborted | rolled_back
    revision: str
    done: int
    failed: int
    skipped: int
    seconds: float
    failed_hosts: tuple[tuple[str, str], ...] = ()  # (host, reason)
    marks: tuple[str, ...] = ()  # MARK_GATE, MARK_BUDGET, MARK_SKIPPED: what the result is marked with, for good


@dataclass(frozen=True)
class RolloutInterrupted(Event):
    """The process driving the rollout was told to stop (Ctrl+C, SIGTERM): in-flight hosts were stopped and
    recorded as interrupted; the rollout is halted, resumable, and keeps the fleet locked."""

    user: str
    hosts: tuple[str, ...]  # the hosts that were in flight


@dataclass(frozen=True)
class LogEntryAdded(Event):
    """A deploy-log entry (rollout_id 0 when it belongs to no rollout)."""

    user: str
    kind: str
    text: str
    revision: str | None = None


@dataclass(frozen=True)
class LockChanged(Event):
    held: bool
    user: str | None
    reason: str


EVENT_TYPES = {
    cls.__name__: cls
    for cls in (
        RolloutStarted,
        PhaseStarted,
        HostStateChanged,
        HostOutput,
        PhaseHalted,
        PhaseCompleted,
        GateWaiting,
        GatePassed,
        RolloutPaused,
        RolloutResumed,
        OperatorAction,
        RolloutFinished,
        RolloutInterrupted,
        LogEntryAdded,
        LockChanged,
    )
}


# --------------------------------------------------------------------------------------------- over the wire
# An event crosses the server's socket as a JSON object: its fields plus "type". JSON has no tuples, so the fields
# annotated as tuples come back as lists and are turned into tuples again; keys a class does not know are ignored,
# so an older client survives a newer server's extra fields (and the "seq" a stream adds).

_WIRE_FIELDS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}  # class -> (all fields, tuple fields)


def _is_tuple(hint: object) -> bool:
    import types
    import typing

    origin = typing.get_origin(hint)
    if hint is tuple or origin is tuple:
        return True
    return origin in (typing.Union, types.UnionType) and any(_is_tuple(a) for a in typing.get_args(hint))


def _wire_fields(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    known = _WIRE_FIELDS.get(cls)
    if known is None:  # once per class: the annotations are strings (postponed evaluation) until resolved
        import typing

        hints = typing.get_type_hints(cls)
        names = tuple(f.name for f in fields(cls))
        known = _WIRE_FIELDS[cls] = (names, tuple(n for n in names if _is_tuple(hints[n])))
    return known


def _listed(v: object) -> object:
    return [_listed(x) for x in v] if isinstance(v, (tuple, list)) else v


def _tupled(v: object) -> object:
    return tuple(_tupled(x) for x in v) if isinstance(v, (list, tuple)) else v


def to_wire(e: Event) -> dict:
    """The event as a JSON-able dict: its fields (tuples as lists) and "type", its class name."""
    d = e.to_dict()
    for name in _wire_fields(type(e))[1]:
        d[name] = _listed(d[name])
    d["type"] = e.event_type
    return d


def from_wire(d: dict) -> Event:
    """The event a to_wire dict (or its JSON round trip) describes; unknown keys are ignored.

    Raises ValueError, one line, for an unknown type or a missing field."""
    kind = d.get("type") if isinstance(d, dict) else None
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}" if isinstance(d, dict) else f"not an event: {d!r:.80}")
    names, tuples = _wire_fields(cls)
    kw = {n: d[n] for n in names if n in d}
    for n in tuples:
        if n in kw and kw[n] is not None:
            kw[n] = _tupled(kw[n])
    try:
        return cls(**kw)
    except TypeError as err:
        from dataclasses import MISSING

        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING and f.default_factory is MISSING]
        raise ValueError(f"{kind} event: {', '.join(missing) + ' missing' if missing else err}") from None


@dataclass(frozen=True)
class FlagChanged(Event):
    """A flag change was journaled (confirmed 0 while its push runs), or its fleet receipt changed since (the push
    ended, a straggler confirmed late, stragglers were dismissed). rollout_id is 0: a flag belongs to no rollout."""

    flag: str
    old: str
    new: str
    user: str
    reason: str
    version: int
    confirmed: int
    total: int
    failed: tuple[tuple[str, str, str], ...] = ()  # (host, class, reason) of the hosts that did not confirm


EVENT_TYPES[FlagChanged.__name__] = FlagChanged


@dataclass(frozen=True)
class AnnouncementFailed(Event):
    """A chat channel (webhook, irker, command) could not send an announcement: it tries again in ``retry_in``
    seconds, or gave up after ``tries``. Not journaled (the server log has it); every attached client hears it.
    rollout_id is 0: chat belongs to no rollout. ``reason`` is one line that never holds the webhook URL."""

    channel: str
    reason: str
    tries: int
    gave_up: bool
    retry_in: float = 0.0
    entries: int = 0  # deploy-log entries in the message

    def line(self) -> str:
        """What a client shows: 'chat: webhook gave up after 5 tries (HTTP 500)', or 'chat: webhook failed
        (connection refused); trying again in 2 s'."""
        reason = clean(self.reason, 200)
        if self.gave_up:
            return (f"chat: {clean(self.channel, 20)} gave up after {self.tries} "
                    f"tr{'y' if self.tries == 1 else 'ies'} ({reason})")
        return f"chat: {clean(self.channel, 20)} failed ({reason}); trying again in {self.retry_in:g} s"


EVENT_TYPES[AnnouncementFailed.__name__] = AnnouncementFailed


@dataclass(frozen=True)
class SuspectNamed(Event):
    """What a failed gate's series' change lines up with (engine/suspects.py: a rank test of each event before the
    breach), judged as the gate failed and again while it waits, as the series grows; journaled. ``verdict`` is
    "suspect" (``what`` is the event, at ``since``, and ``words`` says it with its p-value), "unlikely" (no event
    lines up: ``words`` says the likeliest and why not) or "unknown" (the data cannot tell: ``words`` says why).
    A client prints ``line()``; it never reads the words apart."""

    phase: int  # the phase that waits, as GateWaiting.phase
    series: str
    verdict: str  # SUSPECT, UNLIKELY or UNKNOWN
    words: str
    what: str = ""  # the suspected event in a few words ("canary started (r2307)"), "" when none
    since: float | None = None  # when it happened
    p: float | None = None

    def line(self) -> str:
        """'suspect: errors_5xx higher on r2307 hosts ... p < 0.001', 'suspect: none: ...' or 'suspect: unknown:
        too few points ...'; cleaned."""
        words = clean(self.words, 400)
        if self.verdict == SUSPECT:
            return f"suspect: {words}"
        if self.verdict == UNLIKELY:
            return f"suspect: none lines up: {words}"
        return f"suspect: unknown: {words}"


SUSPECT, UNLIKELY, UNKNOWN_SUSPECT = "suspect", "unlikely", "unknown"
EVENT_TYPES[SuspectNamed.__name__] = SuspectNamed
