"""The app's side of the metrics pane: the deploy markers, gathered from what the app already receives, and the read
of the server's `metrics` op (the pane polls it; see widgets/metrics.py).

Markers come from the numbered events (a phase started, a deploy-log entry: a halt, a gate's verdict, a flag
change), from the board a snapshot restores (phase starts and the halt of the rollout so far), and once from the
deploy log the server keeps (what happened before this app attached). Plain objects: nothing here draws.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from controlroom.app.link import Link
from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.text import clean
from widgets.sparkline import FLAG, GATE, HALT, PHASE, Marker

KEEP = 500  # markers kept (oldest dropped): far more than a window shows
SAME = 1.0  # seconds: the same kind of marker this close is one thing seen twice (an event and its log entry)

# deploy-log kinds that are markers on the time axis
LOG_MARKS = {
    "DEPLOY START": PHASE,
    "DEPLOY RESUMED": PHASE,
    "PROCEED": PHASE,
    "HALT": HALT,
    "ABORT": HALT,
    "DEPLOY ABORTED": HALT,
    "INTERRUPTED": HALT,
    "ROLLBACK START": HALT,
    "GATE": GATE,
    "FLAG": FLAG,
}


class Markers:
    """The deploy markers, oldest first; `version` changes whenever one is added."""

    def __init__(self) -> None:
        self.items: list[Marker] = []
        self.version = 0

    def add(self, at: float, kind: str, label: str = "", bad: bool = False) -> None:
        i = bisect.bisect_left(self.items, at, key=lambda m: m.at)
        for m in self.items[max(0, i - 4): i + 4]:
            if m.kind == kind and m.bad == bad and abs(m.at - at) < SAME:
                return
        self.items.insert(i, Marker(at, kind, clean(label, 120), bad))
        if len(self.items) > KEEP:
            del self.items[: len(self.items) - KEEP]
        self.version += 1

    def see(self, e: ev.Event) -> None:
        """An event as it arrives (the caller has already ruled out the hot HostOutput/HostStateChanged)."""
        if isinstance(e, ev.PhaseStarted):
            self.add(e.at, PHASE, e.name)
        elif isinstance(e, ev.LogEntryAdded):
            self.see_log(e.at, e.kind, e.text)

    def see_log(self, at: float, kind: str, text: str) -> None:
        mark = LOG_MARKS.get(kind)
        if mark is not None:
            bad = mark == GATE and not text.rstrip().endswith(": PASSED")
            self.add(float(at), mark, f"{kind} {text}", bad)

    def see_board(self, board) -> None:
        """What a snapshot says happened in the rollout so far."""
        for p in board.phases:
            if p.started:
                self.add(p.started, PHASE, p.name)
        if board.halted is not None:
            self.add(board.halted.at, HALT, board.halted.name)
        gate = board.gate
        if gate is not None and gate.kind == ev.GATE_FAILED:
            self.add(gate.at, HALT, gate.name)


def cleaned(reply: dict) -> dict:
    """The server's metrics answer with every text in it made safe for a terminal (names, units, labels, errors);
    numbers that are not numbers become gaps."""
    out = {"window": _num(reply.get("window")) or 900.0, "interval": _num(reply.get("interval")) or 5.0,
           "series": []}
    for s in reply.get("series") or ():
        if not isinstance(s, dict):
            continue
        lines = {}
        for label, line in (s.get("lines") or {}).items():
            if isinstance(line, dict):
                pts = [(p[0], _num(p[1])) for p in line.get("points") or () if isinstance(p, list | tuple)
                       and len(p) == 2 and _num(p[0]) is not None]
                lines[clean(str(label), 40)] = {"value": _num(line.get("value")), "points": pts}
        out["series"].append({"name": clean(str(s.get("name", "?")), 40), "unit": clean(str(s.get("unit") or ""), 12),
                              "max": _num(s.get("max")), "min": _num(s.get("min")),
                              "error": clean(str(s["error"]), 200) if s.get("error") else None, "lines": lines,
                              "warnings": [clean(str(w), 200) for w in s.get("warnings") or ()][:3]})
    return out


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


class MetricsFeed:
    """The metrics pane's controller, and the pane's source (widgets/metrics.MetricsSource): the markers from the
    event stream and a snapshot's board, and `fetch` for the pane's poll. `repaint` draws the pane's markers row
    again the moment a marker comes."""

    def __init__(self, cfg: Config, link: Link, repaint: Callable[[], None], closing: Callable[[], bool]) -> None:
        self._cfg = cfg
        self._link = link
        self._repaint = repaint
        self._closing = closing
        self.markers = Markers()
        self._log_marks_read = False

    @property
    def configured(self) -> bool:
        m = self._cfg.metrics
        return bool(m.url or m.series)

    @property
    def interval(self) -> float:
        return self._cfg.metrics.interval

    @property
    def closing(self) -> bool:
        return self._closing()

    async def fetch(self, points: int) -> dict | None:
        """Every series now and over the window, from the server (cleaned); None while no server is connected;
        raises ControlroomError (one line) when the server could not answer."""
        client = self._link.client
        if client is None:
            return None
        if not self._log_marks_read:  # what happened before this app attached, once
            log = await client.request("journal", since=0)
            for d in log.get("log") or ():
                self.markers.see_log(d.get("at") or 0.0, str(d.get("kind")), str(d.get("text") or ""))
            self._log_marks_read = True
        return cleaned(await client.request("metrics", points=points))

    def on_event(self, e: ev.Event, seq: int = 0) -> None:
        """PhaseStarted, LogEntryAdded."""
        before = self.markers.version
        self.markers.see(e)
        self._seen(before)

    def on_board(self, board) -> None:
        """A snapshot refilled the board."""
        before = self.markers.version
        self.markers.see_board(board)
        self._seen(before)

    def _seen(self, before: int) -> None:
        if self.markers.version != before:
            self._repaint()  # the pane's markers row shows it now, not at the next poll's repaint
