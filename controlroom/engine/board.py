"""The rollout as a client knows it: the event stream merged into the latest state per host and per phase.

This is the core projection any client renders from: the app's panes, the CLI printers, a watcher attached to the
server. Applying an event is a few dict writes, cheap enough to run for every event on the app's loop; what changed
is remembered (dirty hosts, dirty header) until the app's flush timer repaints it, 15 times a second at most.
`snapshot()` is the whole board as plain JSON-able data and `Board.from_snapshot()` restores it, so a server can
hand an attaching client the state so far and then the events after it. No Textual here: the board is plain data so
that tests and benchmarks can feed it directly.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, fields

from controlroom.core import events as ev
from controlroom.core.text import clean

OUTPUT_LINES = 100  # lines of live output kept per host when no engine keeps them (the engine keeps its own)


@dataclass(slots=True)
class HostView:
    name: str
    phase: int
    state: str = ev.PENDING
    step: int = 0
    steps: int = 0
    reason: str = ""
    revision: str | None = None
    previous: str | None = None
    seconds: float = 0.0
    started: float | None = None  # wall clock of the first move out of pending
    finished: float | None = None  # wall clock of the latest final state
    changed: float | None = None
    output: deque | None = None  # lines ("[err] " before stderr), created on the first one
    lines: int = 0  # output lines ever received, so a viewer knows what it has not shown yet

    def to_dict(self) -> dict:
        d = {name: getattr(self, name) for name in _HOST_FIELDS}
        d["output"] = list(self.output) if self.output else []
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HostView:
        hv = cls(**{name: d[name] for name in _HOST_FIELDS})
        if d["output"]:
            hv.output = deque(d["output"], maxlen=OUTPUT_LINES)
        return hv


_HOST_FIELDS = tuple(f.name for f in fields(HostView) if f.name != "output")


@dataclass(slots=True)
class PhaseView:
    name: str
    hosts: tuple[str, ...]
    max_failed: int = 0
    auto: bool = True
    counts: dict[str, int] = field(default_factory=dict)
    started: float | None = None
    seconds: float | None = None  # set when the phase completed

    @property
    def total(self) -> int:
        return len(self.hosts)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "hosts": list(self.hosts),
            "max_failed": self.max_failed,
            "auto": self.auto,
            "counts": dict(self.counts),
            "started": self.started,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict) -> PhaseView:
        return cls(
            d["name"],
            tuple(d["hosts"]),
            d["max_failed"],
            d["auto"],
            dict(d["counts"]),
            d["started"],
            d["seconds"],
        )

    @property
    def final(self) -> int:
        return sum(self.counts.get(s, 0) for s in ev.FINAL)


class Board:
    """Latest known state of one rollout (or of the plan before any rollout)."""

    def __init__(self) -> None:
        self.rollout_id = 0
        self.revision: str | None = None  # the revision being shipped (or staged, before a rollout)
        self.previous: str | None = None  # the live revision it replaces
        self.user: str | None = None
        self.status: str | None = None  # None: no rollout yet
        self.phase_index = 0
        self.started_at: float | None = None
        self.halted: ev.PhaseHalted | None = None
        self.gate: ev.GateWaiting | None = None
        self.suspects: dict[str, ev.SuspectNamed] = {}  # series -> its suspect, named while a failed gate waits
        self.finished: ev.RolloutFinished | None = None
        self.marks: tuple[str, ...] = ()  # what marks this deploy already (past a failed gate, a budget): ev.MARK_*
        self.phases: list[PhaseView] = []
        self.hosts: dict[str, HostView] = {}
        self.order: list[str] = []
        self.index: dict[str, int] = {}
        self.dirty_hosts: set[str] = set()
        self.dirty = True  # header, bars or summary need a repaint
        self.replanned = True  # the set or order of hosts changed: the grid lays out again
        self.events = 0

    # ------------------------------------------------------------------------------------------- plan
    def plan(self, phases: list[tuple[str, tuple[str, ...], int, bool]]) -> None:
        """(name, hosts, max_failed, auto) per phase; every host pending. Names are shown cleaned."""
        self.phases = []
        self.hosts = {}
        self.order = []
        for i, (name, hosts, max_failed, auto) in enumerate(phases):
            self.phases.append(
                PhaseView(clean(name, 64), tuple(hosts), max_failed, auto, {ev.PENDING: len(hosts)})
            )
            for h in hosts:
                self.hosts[h] = HostView(h, i)
                self.order.append(h)
        self.index = {h: i for i, h in enumerate(self.order)}
        self.dirty_hosts.clear()
        self.replanned = True
        self.dirty = True

    # ------------------------------------------------------------------------------------------- events
    def apply(self, e: ev.Event) -> None:
        """Merge one engine event. HostOutput and HostStateChanged are the hot path."""
        self.events += 1
        kind = type(e)
        if kind is ev.HostOutput:
            hv = self.hosts.get(e.host)
            if hv is not None:
                if hv.output is None:
                    hv.output = deque(maxlen=OUTPUT_LINES)
                hv.output.append(e.line if e.stream == "out" else f"[{e.stream}] {e.line}")
                hv.lines += 1  # the grid cell does not change; an open host view polls `lines`
            return
        if kind is ev.HostStateChanged:
            self._host(e)
            return
        if isinstance(e, ev.RolloutStarted):
            old = {n: h for n, h in self.hosts.items()} if e.resumed else {}
            meta = {p.name: (p.max_failed, p.auto) for p in self.phases}
            self.plan([(name, hosts, *meta.get(clean(name, 64), (0, True))) for name, hosts in e.phases])
            for n, h in old.items():  # a resumed rollout keeps what we knew until the engine says otherwise
                if n in self.hosts and h.state != ev.PENDING:
                    self._set_state(self.hosts[n], h.state)
            self.rollout_id = e.rollout_id
            self.revision, self.previous, self.user = e.revision, e.previous, e.user
            self.status = ev.R_RUNNING
            self.started_at = e.at
            self.halted = self.gate = self.finished = None
            self.suspects = {}
            self.phase_index = 0
            if not e.resumed:
                self.marks = ()
        elif isinstance(e, ev.PhaseStarted):
            self.phase_index = e.phase
            self.status = ev.R_RUNNING
            self.halted = self.gate = None
            self.suspects = {}
            if 0 <= e.phase < len(self.phases):
                self.phases[e.phase].started = e.at
        elif isinstance(e, ev.PhaseHalted):
            self.status = ev.R_HALTED
            self.halted = e
        elif isinstance(e, ev.PhaseCompleted):
            if 0 <= e.phase < len(self.phases):
                self.phases[e.phase].seconds = e.seconds
            if self.halted is not None and self.halted.phase == e.phase:
                self.halted = None
        elif isinstance(e, ev.GateWaiting):
            self.status = ev.R_WAITING
            self.gate = e
        elif isinstance(e, ev.GatePassed):
            self.status = ev.R_RUNNING
            self.gate = None
            self.suspects = {}
        elif isinstance(e, ev.SuspectNamed):
            self.suspects[e.series] = e  # the latest judgement of the series stands
        elif isinstance(e, ev.RolloutPaused):
            self.status = ev.R_PAUSED
        elif isinstance(e, ev.RolloutResumed):
            self.status = ev.R_HALTED if self.halted else (ev.R_WAITING if self.gate else ev.R_RUNNING)
        elif isinstance(e, ev.RolloutFinished):
            self.status = e.status
            self.finished = e
            self.halted = self.gate = None
            self.marks = e.marks
        elif isinstance(e, ev.OperatorAction):
            marks = ev.action_marks({e.action})
            if not marks or set(marks) <= set(self.marks):
                return
            self.marks = (*self.marks, *marks)
        else:
            return
        self.dirty = True

    def _host(self, e: ev.HostStateChanged) -> None:
        hv = self.hosts.get(e.host)
        if hv is None:  # a host the plan did not know (should not happen): show it in its phase anyway
            hv = HostView(e.host, e.phase)
            self.hosts[e.host] = hv
            self.index[e.host] = len(self.order)
            self.order.append(e.host)
            if 0 <= e.phase < len(self.phases):
                ph = self.phases[e.phase]
                ph.hosts = (*ph.hosts, e.host)
                ph.counts[ev.PENDING] = ph.counts.get(ev.PENDING, 0) + 1
            self.replanned = True
        if hv.started is None and e.state != ev.PENDING:
            hv.started = e.at - e.seconds if e.seconds else e.at
        if hv.state != e.state:  # the grid shows the state only: a new step repaints nothing
            self.dirty_hosts.add(e.host)
            self.dirty = True
        self._set_state(hv, e.state)
        hv.step, hv.steps, hv.reason, hv.seconds, hv.changed = e.step, e.steps, e.reason, e.seconds, e.at
        if e.revision is not None:
            hv.revision = e.revision
        if e.previous is not None:
            hv.previous = e.previous
        hv.finished = e.at if e.state in ev.FINAL else None
        if e.state == ev.PENDING:  # a retry starts the host over
            hv.started = None

    def _set_state(self, hv: HostView, state: str) -> None:
        if hv.state == state:
            return
        if 0 <= hv.phase < len(self.phases):
            counts = self.phases[hv.phase].counts
            counts[hv.state] = counts.get(hv.state, 0) - 1
            counts[state] = counts.get(state, 0) + 1
        hv.state = state

    def suspect_lines(self, phase: int) -> list[str]:
        """The 'suspect: ...' line (cleaned) of each failed series of the gate waiting before ``phase``."""
        return [x.line() for x in self.suspects.values() if x.phase == phase]

    # ------------------------------------------------------------------------------------------- snapshot
    def snapshot(self) -> dict:
        """The whole board as plain data (dicts, lists, str, int, float, bool, None): json.dumps takes it as is,
        and json.loads of that gives back an equal dict. Events it holds are in their wire form (events.to_wire)."""
        return {
            "rollout_id": self.rollout_id,
            "revision": self.revision,
            "previous": self.previous,
            "user": self.user,
            "status": self.status,
            "phase_index": self.phase_index,
            "started_at": self.started_at,
            "halted": ev.to_wire(self.halted) if self.halted is not None else None,
            "gate": ev.to_wire(self.gate) if self.gate is not None else None,
            "finished": ev.to_wire(self.finished) if self.finished is not None else None,
            "suspects": [ev.to_wire(x) for x in self.suspects.values()],
            "marks": list(self.marks),
            "phases": [p.to_dict() for p in self.phases],
            "hosts": [self.hosts[n].to_dict() for n in self.order],  # in the board's order
            "events": self.events,
        }

    @classmethod
    def from_snapshot(cls, d: dict) -> Board:
        """A board equal to the one that made the snapshot, every host and the header marked for a repaint.

        Raises ValueError (one line) for something that is not a board snapshot."""
        board = cls()
        try:
            board.rollout_id = d["rollout_id"]
            board.revision, board.previous, board.user = d["revision"], d["previous"], d["user"]
            board.status, board.phase_index, board.started_at = d["status"], d["phase_index"], d["started_at"]
            board.halted = ev.from_wire(d["halted"]) if d["halted"] is not None else None
            board.gate = ev.from_wire(d["gate"]) if d["gate"] is not None else None
            board.finished = ev.from_wire(d["finished"]) if d["finished"] is not None else None
            board.marks = tuple(d.get("marks") or ())  # a snapshot of an older server has none
            board.suspects = {x.series: x for x in map(ev.from_wire, d.get("suspects") or ())}
            board.phases = [PhaseView.from_dict(p) for p in d["phases"]]
            hosts = [HostView.from_dict(h) for h in d["hosts"]]
            board.events = d["events"]
        except KeyError as e:
            raise ValueError(f"not a board snapshot: it has no {e}") from None
        except (TypeError, AttributeError) as e:
            raise ValueError(f"not a board snapshot: {e}") from None
        board.hosts = {hv.name: hv for hv in hosts}
        board.order = [hv.name for hv in hosts]
        board.index = {n: i for i, n in enumerate(board.order)}
        board.dirty_hosts = set(board.order)
        board.dirty = board.replanned = True
        return board

    # ------------------------------------------------------------------------------------------- reading
    def take_dirty(self) -> set[str]:
        out = self.dirty_hosts
        self.dirty_hosts = set()
        return out

    def count(self, *states: str) -> int:
        return sum(p.counts.get(s, 0) for p in self.phases for s in states)

    @property
    def total(self) -> int:
        return len(self.order)

    @property
    def active(self) -> bool:
        """A rollout exists and has not finished."""
        return self.status is not None and self.status not in ev.ROLLOUT_FINAL

    def elapsed(self, now: float | None = None) -> float:
        if self.finished is not None:
            return self.finished.seconds
        if self.started_at is None:
            return 0.0
        return (now or time.time()) - self.started_at

    def hosts_in(self, *states: str) -> list[str]:
        return [n for n in self.order if self.hosts[n].state in states]
