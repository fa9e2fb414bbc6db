"""The record of one deploy as a timeline: every journaled event on one time axis, and the fleet as it was at any
moment of it.

A projection of the journal's events, as engine/board.py is of the live stream: ``Timeline.events`` is every entry
in the journal's order (its time, kind, person, values; ``text()`` says it in one cleaned line), and
``Timeline.at(i)`` (or ``at(time)``) rebuilds what the fleet was then: each host's state and revision, the phase
bars, the flags, every gate's latest value and verdict, the deploy's status and the lock. Seeking never replays the
whole deploy: a checkpoint of the state is kept every ``every`` events, and a seek copies the nearest one before it
and applies at most ``every`` events. ``next_failure(i)`` and ``next_gate(i)`` find the next entry of their kind by
bisection. ``add()`` appends the events a live deploy records after the timeline was opened (it follows its tail).

Events are read as the journal stores them (type and JSON data), never as Event classes, so a record written by an
older or newer controlroom still reads: a field it lacks is shown as missing, an event type it does not know as
itself. No Textual here.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from controlroom.core import events as ev
from controlroom.core.text import clean
from controlroom.engine.board import Board

# what an entry is, for the reader (filters, colours, n/N): its kind
K_DEPLOY = "deploy"  # started, resumed, paused, finished, interrupted
K_PHASE = "phase"
K_HOST = "host"
K_GATE = "gate"  # a wait at a phase boundary (with its verdicts), a gate passed
K_CHECK = "check"  # one journaled evaluation of one gate: a value
K_FLAG = "flag"
K_LOCK = "lock"
K_ACTION = "action"  # retry, skip, abort, rollback, force, override
K_LOG = "log"

_LOCK_KINDS = ("LOCK", "UNLOCK", "LOCK RESTORED", "LOCK TAKEN OVER", "TAKEN OVER")
EVERY = 1024  # events between two checkpoints


@dataclass(slots=True, eq=False)
class Entry:
    """One event of the record. values: the event's journaled fields (host, state, flag, old, new, verdicts...).
    Read it, never change it (not frozen only because a frozen dataclass is slow to make 100,000 of)."""

    index: int
    id: int  # the journal's event id (0 for one added without it)
    at: float
    type: str  # the event type as journaled: "HostStateChanged", "GateEvaluated", ...
    kind: str  # K_*
    user: str
    values: dict
    failure: bool  # a host failed, a phase halted, a gate did not hold, the deploy failed, a flag push failed

    def text(self) -> str:
        """The entry in one line, every part from people and hosts cleaned."""
        return clean(_say(self.type, self.values), None)

    def stamp(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at)) + f".{int(self.at * 10) % 10}"

    def event(self) -> ev.Event | None:
        """The event as the engine emitted it (an Event a Board or a printer takes: a replay feeds these), None for
        a type only the journal keeps (GateEvaluated) or one this controlroom does not know."""
        try:
            return ev.from_wire({**self.values, "type": self.type})
        except ValueError:
            return None

    def to_dict(self) -> dict:
        """JSON-able: what `controlroom timeline --json` prints per entry."""
        return {"index": self.index, "id": self.id, "at": self.at, "type": self.type, "kind": self.kind,
                "user": clean(self.user, 200), "failure": self.failure, "text": self.text(), "values": self.values}


class HostAt(NamedTuple):
    state: str
    revision: str | None
    phase: int
    reason: str = ""


@dataclass(slots=True)
class PhaseAt:
    name: str
    hosts: int
    counts: dict[str, int]
    started: float | None = None
    ended: float | None = None
    halted: bool = False

    def copy(self) -> PhaseAt:
        return PhaseAt(self.name, self.hosts, dict(self.counts), self.started, self.ended, self.halted)

    def to_dict(self) -> dict:
        return {"name": self.name, "hosts": self.hosts, "counts": dict(self.counts), "started": self.started,
                "ended": self.ended, "halted": self.halted}


@dataclass(frozen=True, slots=True)
class GateValue:
    """A gate's latest evaluation on one line of its series ("" for a series not split)."""

    value: float | None
    verdict: str
    at: float
    why: str = ""


@dataclass(slots=True)
class FleetAt:
    """The fleet as the record has it after entry ``index`` (-1: before the first), at time ``at``."""

    index: int
    at: float | None
    status: str | None = None  # the deploy's status: running, waiting, halted, paused, done, ...
    revision: str | None = None
    previous: str | None = None
    phase: int = 0  # the phase under way (or waited for)
    hosts: dict[str, HostAt] = field(default_factory=dict)
    phases: list[PhaseAt] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)
    gates: dict[str, dict[str, GateValue]] = field(default_factory=dict)  # gate expression -> line -> value
    lock: str | None = None  # who holds the fleet and why, as the deploy log said it last
    waiting: str | None = None  # what the deploy waits for at a phase boundary, when it does

    def copy(self) -> FleetAt:
        return FleetAt(self.index, self.at, self.status, self.revision, self.previous, self.phase, dict(self.hosts),
                       [p.copy() for p in self.phases], dict(self.flags),
                       {g: dict(lines) for g, lines in self.gates.items()}, self.lock, self.waiting)

    def count(self, *states: str) -> int:
        return sum(1 for h in self.hosts.values() if h.state in states)

    def board(self) -> Board:
        """This moment as an engine/board.py Board, so the panes that draw the live deploy (host grid, phase bars,
        header) draw the past one the same way. Hosts keep the plan's order."""
        b = Board()
        b.plan([(p.name, tuple(n for n, h in self.hosts.items() if h.phase == i), 0, True)
                for i, p in enumerate(self.phases)])
        for name, h in self.hosts.items():  # through the board's own way in: its counts follow
            if h.state != ev.PENDING or h.revision or h.reason:
                b.apply(ev.HostStateChanged(0, host=name, phase=h.phase, state=h.state, reason=h.reason,
                                            revision=h.revision, at=self.at or 0.0))
        for p, view in zip(self.phases, b.phases, strict=False):
            view.started = p.started
            view.seconds = (p.ended - p.started) if p.ended is not None and p.started is not None else None
        b.revision, b.previous, b.status, b.phase_index = self.revision, self.previous, self.status, self.phase
        b.dirty_hosts = set(b.order)
        return b

    def to_dict(self) -> dict:
        return {"index": self.index, "at": self.at, "status": self.status, "revision": self.revision,
                "previous": self.previous, "phase": self.phase,
                "hosts": {n: {"state": h.state, "revision": h.revision, "phase": h.phase, "reason": h.reason}
                          for n, h in self.hosts.items()},
                "phases": [p.to_dict() for p in self.phases], "flags": dict(self.flags),
                "gates": {g: {line: {"value": v.value, "verdict": v.verdict, "at": v.at, "why": v.why}
                              for line, v in lines.items()} for g, lines in self.gates.items()},
                "lock": self.lock, "waiting": self.waiting}


class Timeline:
    """One deploy's record: ``events`` in order, the fleet at any of them, the next failure or gate from one."""

    def __init__(self, number: int, *, user: str = "", flags: dict[str, str] | None = None,
                 every: int = EVERY) -> None:
        """An empty timeline of deploy ``number``; flags: every flag's value when it began (config defaults
        merged with the flag history before it). Fill it with add() (or use Timeline.read)."""
        self.number = number
        self.user = user
        self.every = max(1, every)
        self.events: list[Entry] = []
        self._times: list[float] = []  # entry times, made non-decreasing (a clock step back never reorders)
        self._failures: list[int] = []
        self._gates: list[int] = []
        self._state = FleetAt(-1, None, flags=dict(flags or {}))
        self._start = self._state.copy()
        self._checkpoints: list[FleetAt] = []  # _checkpoints[k]: the state after entry (k + 1) * every - 1
        self.last_id = 0

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def read(cls, db, number: int, *, defaults: dict[str, str] | None = None, every: int = EVERY) -> Timeline:
        """Deploy ``number``'s timeline from the journal (through its index); defaults: the config's flag
        defaults, which the flag history before the deploy overrides."""
        from controlroom.journal import record

        with _collector_paused():
            rows = record.deploy_events_decoded(db, number)
            row = record.deploy(db, number)
            began = rows[0][1] if rows else (row.started_at if row else time.time())
            flags = dict(defaults or {})
            flags.update(record.flags_at(db, began)[1])
            tl = cls(number, user=row.user if row else "", flags=flags, every=every)
            tl._extend_rows(rows)
        return tl

    def follow(self, db) -> int:
        """Add what the journal recorded for this deploy since the last entry (a live deploy); how many."""
        from controlroom.journal import record

        with _collector_paused():
            rows = record.deploy_events_decoded(db, self.number, after_id=self.last_id)
            self._extend_rows(rows)
        return len(rows)

    def add_rows(self, rows: list[tuple[int, float, str, dict]]) -> list[Entry]:
        """add() of every (id, at, type, data) row in journal order, in one loop (a page of the server's record,
        as the app reads it); the entries added."""
        first = len(self.events)
        with _collector_paused():
            self._extend_rows(rows)
        return self.events[first:]

    def _extend_rows(self, rows: list[tuple[int, float, str, dict]]) -> None:
        """add() of every (id, at, type, data) row, in one loop: what add() does, with the host moves (nine
        events in ten) applied inline, as a 100,000-event deploy opens in one of these (bench/record.py)."""
        events, times, failures, gates = self.events, self._times, self._failures, self._gates
        state, every, checkpoints, user = self._state, self.every, self._checkpoints, self.user
        hosts, phases = state.hosts, state.phases
        n_phases = len(phases)
        i = len(events)
        last_t = times[-1] if times else None
        last_id = self.last_id
        host_at, entry_of = HostAt, Entry
        failed_state, k_host = ev.FAILED, K_HOST
        for event_id, at, type_, data in rows:
            if type_ == "HostStateChanged":
                st = data.get("state", "?")
                failure = st == failed_state
                e = entry_of(i, event_id, at, type_, k_host, user, data, failure)
                events.append(e)
                name = data.get("host")
                old = hosts.get(name)
                if old is None:
                    rev, phase = data.get("revision") or None, data.get("phase", 0)
                else:
                    rev = data.get("revision") or old.revision
                    phase = data.get("phase", old.phase)
                if 0 <= phase < n_phases:
                    counts = phases[phase].counts
                    if old is not None:
                        counts[old.state] = counts.get(old.state, 0) - 1
                    counts[st] = counts.get(st, 0) + 1
                hosts[name] = host_at(st, rev, phase, data.get("reason") or "")
                state.index, state.at = i, at
            else:
                kind, who, failure = _classify(type_, data)
                e = entry_of(i, event_id, at, type_, kind, who or user, data, failure)
                events.append(e)
                if kind == K_GATE:
                    gates.append(i)
                _apply(state, e)
                if type_ == "RolloutStarted":  # it may have made the hosts and phases anew
                    hosts, phases = state.hosts, state.phases
                    n_phases = len(phases)
            if last_t is None or at >= last_t:
                last_t = at
            times.append(last_t)
            if failure:
                failures.append(i)
            if event_id > last_id:
                last_id = event_id
            i += 1
            if i % every == 0:
                checkpoints.append(state.copy())
        self.last_id = last_id

    def add(self, type_: str, data: dict, at: float, event_id: int = 0) -> Entry:
        """Append one event (as journaled: its type and data) and move the state past it."""
        i = len(self.events)
        if type_ == "HostStateChanged":  # nine events in ten: classified here, without the call
            kind, user, failure = K_HOST, self.user, data.get("state") == ev.FAILED
        else:
            kind, user, failure = _classify(type_, data)
            user = user or self.user
        entry = Entry(i, event_id, at, type_, kind, user, data, failure)
        self.events.append(entry)
        times = self._times
        times.append(at if not times or at >= times[-1] else times[-1])
        if failure:
            self._failures.append(i)
        if kind == K_GATE:
            self._gates.append(i)
        if event_id > self.last_id:
            self.last_id = event_id
        _apply(self._state, entry)
        if (i + 1) % self.every == 0:
            self._checkpoints.append(self._state.copy())
        return entry

    def add_event(self, e: ev.Event) -> Entry | None:
        """Append an event as a live stream gives it (the server's, before the journal is read again), the
        journaled kinds only: host output, chat failures and lock notices are not in the record."""
        if isinstance(e, (ev.HostOutput, ev.AnnouncementFailed, ev.LockChanged)):
            return None
        return self.add(e.event_type, ev.to_wire(e), e.at)

    def extend(self, rows: Iterable[tuple[str, dict, float, int]]) -> None:
        for type_, data, at, event_id in rows:
            self.add(type_, data, at, event_id)

    # ------------------------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.events)

    @property
    def began(self) -> float | None:
        return self.events[0].at if self.events else None

    @property
    def ended(self) -> float | None:
        return self.events[-1].at if self.events else None

    def index_at(self, t: float) -> int:
        """The last entry at or before time t (-1 when t is before the first)."""
        return bisect.bisect_right(self._times, t) - 1

    def at(self, where: int | float) -> FleetAt:
        """The fleet after entry ``where`` (an int index; -1 before the first, past the end the latest), or as it
        was at time ``where`` (a float). A fresh object: the caller may keep it."""
        i = self.index_at(where) if isinstance(where, float) else int(where)
        i = min(i, len(self.events) - 1)
        if i < 0:
            out = self._start.copy()
            return out
        if i == len(self.events) - 1:
            return self._state.copy()
        k = (i + 1) // self.every  # checkpoints at or before i: _checkpoints[k - 1] is after entry k*every - 1
        state = self._checkpoints[k - 1].copy() if k else self._start.copy()
        for j in range((k * self.every), i + 1):
            _apply(state, self.events[j])
        return state

    def next_failure(self, i: int) -> int | None:
        """The index of the first failure after entry i, None when there is none."""
        return _after(self._failures, i)

    def previous_failure(self, i: int) -> int | None:
        return _before(self._failures, i)

    def next_gate(self, i: int) -> int | None:
        """The index of the first gate entry (a wait with its verdicts, a gate passed) after entry i."""
        return _after(self._gates, i)

    def previous_gate(self, i: int) -> int | None:
        return _before(self._gates, i)

    def between(self, t0: float, t1: float) -> list[Entry]:
        """The entries from time t0 to t1, both included."""
        return self.events[bisect.bisect_left(self._times, t0):bisect.bisect_right(self._times, t1)]

    def series(self) -> dict[tuple[str, str], list[tuple[float, float]]]:
        """Every gate's journaled values: (gate, line) -> [(time, value)], oldest first; what the gates watched,
        for a sparkline on the same axis and for the suspects."""
        out: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for e in self.events:
            if e.type == "GateEvaluated" and e.values.get("value") is not None:
                out.setdefault((str(e.values.get("gate", "")), str(e.values.get("line") or "")), []).append(
                    (e.at, float(e.values["value"])))
        return out

    def markdown(self) -> str:
        """The timeline as a Markdown table, for an incident report (every cell cleaned, pipes escaped)."""
        lines = [f"## Deploy #{self.number}", "", "| time | who | what |", "|---|---|---|"]
        for e in self.events:
            cells = [e.stamp(), clean(e.user, 100), e.text()]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines)


@contextlib.contextmanager
def _collector_paused():
    """The cyclic garbage collector off while a record is read: 100,000 events make 200,000 new containers (each
    event's dict and its Entry), none of them in a cycle, and the collector's passes over the growing heap took a
    third of the time of opening a 5,000-host deploy (bench/record.py). On again after, as it was."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _after(indexes: list[int], i: int) -> int | None:
    k = bisect.bisect_right(indexes, i)
    return indexes[k] if k < len(indexes) else None


def _before(indexes: list[int], i: int) -> int | None:
    k = bisect.bisect_left(indexes, i)
    return indexes[k - 1] if k else None


# ---------------------------------------------------------------------------------------------- the state
def _classify(t: str, d: dict) -> tuple[str, str, bool]:
    """(kind, the person, whether it is a failure) of a journaled event."""
    if t == "HostStateChanged":
        return K_HOST, "", d.get("state") == ev.FAILED
    if t in ("GateEvaluated", "SuspectNamed"):
        return K_CHECK, "", False
    if t == "GateWaiting":
        kind = d.get("kind")
        return (K_GATE if kind != ev.GATE_BAKE else K_PHASE), "", kind == ev.GATE_FAILED
    if t == "GatePassed":
        return K_GATE, str(d.get("by") or ""), False
    if t in ("PhaseStarted", "PhaseCompleted"):
        return K_PHASE, "", False
    if t == "PhaseHalted":
        return K_PHASE, "", True
    if t == "FlagChanged":
        return K_FLAG, str(d.get("user") or ""), bool(d.get("failed"))
    if t == "OperatorAction":
        return K_ACTION, str(d.get("user") or ""), False
    if t == "LogEntryAdded":
        kind = str(d.get("kind") or "")
        return (K_LOCK if kind in _LOCK_KINDS else K_LOG), str(d.get("user") or ""), False
    if t == "RolloutFinished":
        return K_DEPLOY, "", d.get("status") in (ev.R_FAILED, ev.R_ABORTED) or bool(d.get("failed"))
    if t == "RolloutInterrupted":
        return K_DEPLOY, str(d.get("user") or ""), True
    return K_DEPLOY, str(d.get("user") or ""), False


def _apply(s: FleetAt, e: Entry) -> None:
    """Move the state past one entry (the hot path: HostStateChanged)."""
    s.index, s.at = e.index, e.at
    d, t = e.values, e.type
    if t == "HostStateChanged":
        name = d.get("host")
        old = s.hosts.get(name)
        state = d.get("state", "?")
        rev = d.get("revision") or (old.revision if old else None)
        phase = d.get("phase", old.phase if old else 0)
        if 0 <= phase < len(s.phases):
            counts = s.phases[phase].counts
            if old is not None:
                counts[old.state] = counts.get(old.state, 0) - 1
            counts[state] = counts.get(state, 0) + 1
        s.hosts[name] = HostAt(state, rev, phase, d.get("reason") or "")
    elif t == "GateEvaluated":
        s.gates.setdefault(str(d.get("gate", "")), {})[str(d.get("line") or "")] = GateValue(
            d.get("value"), str(d.get("verdict", "")), e.at, str(d.get("why") or ""))
    elif t == "RolloutStarted":
        s.revision, s.previous, s.status = d.get("revision"), d.get("previous"), ev.R_RUNNING
        if not d.get("resumed") or not s.phases:
            s.phases, s.hosts = [], {}
            for i, (name, hosts) in enumerate(d.get("phases") or ()):
                s.phases.append(PhaseAt(str(name), len(hosts), {ev.PENDING: len(hosts)}))
                for h in hosts:
                    s.hosts[h] = HostAt(ev.PENDING, None, i)
    elif t == "PhaseStarted":
        s.phase, s.status, s.waiting = int(d.get("phase", 0)), ev.R_RUNNING, None
        if 0 <= s.phase < len(s.phases):
            s.phases[s.phase].started = e.at
    elif t == "PhaseCompleted":
        p = int(d.get("phase", 0))
        if 0 <= p < len(s.phases):
            s.phases[p].ended, s.phases[p].halted = e.at, False
    elif t == "PhaseHalted":
        s.status = ev.R_HALTED
        p = int(d.get("phase", 0))
        if 0 <= p < len(s.phases):
            s.phases[p].halted = True
    elif t == "GateWaiting":
        s.status, s.phase, s.waiting = ev.R_WAITING, int(d.get("phase", s.phase)), str(d.get("reason") or "")
        for v in d.get("verdicts") or ():
            gv = ev.GateVerdict(*v)
            s.gates.setdefault(gv.gate, {})[gv.revision] = GateValue(gv.value, gv.state, e.at, gv.why)
    elif t == "GatePassed":
        s.status, s.waiting = ev.R_RUNNING, None
    elif t == "RolloutPaused":
        s.status = ev.R_PAUSED
    elif t == "RolloutResumed":
        s.status = ev.R_WAITING if s.waiting else ev.R_RUNNING
    elif t in ("RolloutInterrupted",):
        s.status = ev.R_HALTED
    elif t == "RolloutFinished":
        s.status, s.waiting = d.get("status"), None
    elif t == "FlagChanged":
        if d.get("flag"):
            s.flags[d["flag"]] = str(d.get("new"))
    elif t == "LogEntryAdded":
        kind = d.get("kind")
        if kind in ("LOCK", "LOCK RESTORED", "LOCK TAKEN OVER", "TAKEN OVER"):
            s.lock = f"{d.get('user')}: {d.get('text')}"
        elif kind == "UNLOCK":
            s.lock = None
        elif kind in ("DEPLOY START", "DEPLOY RESUMED", "ROLLBACK START"):
            s.lock = f"{d.get('user')}: deploy #{d.get('rollout_id')}"


# ---------------------------------------------------------------------------------------------- in words
def _num(v: object) -> str:
    return "no value" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _say(t: str, d: dict) -> str:
    g = d.get
    if t == "HostStateChanged":
        state = g("state")
        step = f" step {g('step')}/{g('steps')}" if state == ev.RUNNING and g("steps") else ""
        rev = f" {g('revision')}" if state in (ev.DONE, ev.ROLLED_BACK) and g("revision") else ""
        why = f": {g('reason')}" if g("reason") else ""
        return f"{g('host')} {state}{step}{rev}{why}"
    if t == "GateEvaluated":
        line = f"{{{g('line')}}}" if g("line") else ""
        why = f" ({g('why')})" if g("why") else ""
        return f"check {g('gate')}{line}: {_num(g('value'))} {g('verdict')}{why}"
    if t == "SuspectNamed":
        named = ev.SuspectNamed(0, phase=g("phase") or 0, series=str(g("series")), verdict=str(g("verdict")),
                                words=str(g("words")))
        return named.line()
    if t == "GateWaiting":
        values = "; ".join(
            f"{v.gate}{{{v.revision}}} = {_num(v.value)} {v.state}" if v.revision else
            f"{v.gate} = {_num(v.value)} {v.state}" for v in (ev.GateVerdict(*x) for x in g("verdicts") or ()))
        return f"waiting before phase {g('name')} ({g('kind')}): {g('reason')}" + (f" [{values}]" if values else "")
    if t == "GatePassed":
        return f"gate before {g('name')} passed by {g('by')}"
    if t == "PhaseStarted":
        return f"phase {g('name')} started ({g('hosts')} hosts)"
    if t == "PhaseCompleted":
        return (f"phase {g('name')} ended: {g('done')} done, {g('failed')} failed, {g('skipped')} skipped"
                f" ({_num(g('seconds'))} s)")
    if t == "PhaseHalted":
        return (f"phase {g('name')} halted: {len(g('failed') or ())} failed (max_failed {g('max_failed')}): "
                + ", ".join(map(str, g("failed") or ())))
    if t == "FlagChanged":
        failed = ", ".join(f"{h} ({c}: {r})" for h, c, r in g("failed") or ())
        head = f"flag {g('flag')} {g('old')} -> {g('new')} (v{g('version')})" + (f": {g('reason')}; " if g("reason")
                                                                            else "; ")
        if not g("confirmed") and not failed:  # the change as journaled before its push: no receipt yet
            return head + f"pushing to {g('total')} hosts"
        return head + f"confirmed {g('confirmed')}/{g('total')}" + (f", not confirmed: {failed}" if failed else "")
    if t == "OperatorAction":
        host = f" {g('host')}" if g("host") else ""
        return f"{g('action')}{host}" + (f": {g('detail')}" if g("detail") else "")
    if t == "LogEntryAdded":
        return f"{g('kind')} {g('text')}".rstrip()
    if t == "RolloutStarted":
        hosts = sum(len(h) for _, h in g("phases") or ())
        word = "resumed" if g("resumed") else "started"
        return (f"deploy {g('previous') or '?'} -> {g('revision')} {word} by {g('user')}"
                f" ({len(g('phases') or ())} phases, {hosts} hosts)")
    if t == "RolloutFinished":
        try:
            words = ev.outcome(ev.RolloutFinished(0, status=g("status"), revision=g("revision"), done=g("done"),
                                                  failed=g("failed"), skipped=g("skipped"), seconds=g("seconds"),
                                                  marks=tuple(g("marks") or ())))
        except TypeError:
            words = f"deploy {g('status')}"
        return f"{words}: {g('done')} done, {g('failed')} failed, {g('skipped')} skipped ({_num(g('seconds'))} s)"
    if t == "RolloutInterrupted":
        return f"interrupted by {g('user')}: {len(g('hosts') or ())} hosts in flight stopped"
    if t in ("RolloutPaused", "RolloutResumed"):
        return f"{t.removeprefix('Rollout').lower()} by {g('user')}"
    return f"{t} " + json.dumps({k: v for k, v in d.items() if k not in ("rollout_id", "at")}, default=str)
