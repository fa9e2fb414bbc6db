"""The timeline screen's drawing (app/timeline.py), data -> Rich Text: one time axis for a deploy's record
(engine/record.py).

``Axis`` keeps what the axis draws and grows with the record: the gated series (gate, line) -> [(time, value)] and
the markers (phase starts, flag changes, gate verdicts, failures), both added entry by entry as pages arrive, so a
cursor move never rescans the record. ``axis_rows`` draws the series as sparklines over [first event, last event],
the markers under them and the cursor's column (every row the same columns: a cell is a slice of time). The other
functions say one moment (a FleetAt) in lines: the header, the flags, the gates' values, the entries around the
cursor. Every text from people and hosts is cleaned (Entry.text() and clean()). No Textual here.
"""

from __future__ import annotations

import time

from rich.text import Text

from controlroom.core import events as ev
from controlroom.core.text import clean
from controlroom.engine import record as rec
from widgets import sparkline as sp

LABEL_W = 24  # the series' names left of the axis


class Axis:
    """The series and markers of a record, kept as it grows (``add`` each new entry once)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], list[tuple[float, float]]] = {}
        self.markers: list[sp.Marker] = []

    def add(self, entries: list[rec.Entry]) -> None:
        for e in entries:
            if e.kind == rec.K_HOST:  # nine in ten: not drawn on the axis (the grid shows them)
                if e.failure:
                    self.markers.append(sp.Marker(e.at, sp.HALT, "", True))
                continue
            d = e.values
            if e.type == "GateEvaluated":
                if isinstance(d.get("value"), (int, float)) and not isinstance(d.get("value"), bool):
                    key = (clean(str(d.get("gate", "")), 80), clean(str(d.get("line") or ""), 40))
                    self.series.setdefault(key, []).append((e.at, float(d["value"])))
                continue
            if e.type == "PhaseStarted":
                self.markers.append(sp.Marker(e.at, sp.PHASE))
            elif e.kind == rec.K_FLAG:
                self.markers.append(sp.Marker(e.at, sp.FLAG, "", e.failure))
            elif e.kind == rec.K_GATE:
                self.markers.append(sp.Marker(e.at, sp.GATE, "", e.failure))
            elif e.failure:
                self.markers.append(sp.Marker(e.at, sp.HALT, "", True))


def column(t: float, start: float, window: float, width: int) -> int:
    """The axis column of time t (the last one for the end)."""
    if window <= 0 or width <= 0:
        return 0
    return max(0, min(width - 1, int((t - start) / window * width)))


_STYLE = {sp.OK: "green", sp.BREACH: "bold red", "dim": "grey50", "": "", "name": "bold"}


def _runs(row: sp.Row) -> Text:
    t = Text()
    for text, style in row:
        if style.startswith("mark-"):
            style = "bold red" if style.endswith("-bad") else "yellow"
        t.append(text, style=_STYLE.get(style, style))
    return t


def axis_rows(axis: Axis, tl: rec.Timeline, width: int, cursor_at: float | None) -> list[Text]:
    """The gated series as sparklines over the whole record, the markers row and the cursor's column under it;
    ``width``: the whole row's."""
    began, ended = tl.began, tl.ended
    cells = max(8, width - LABEL_W - 1)
    out: list[Text] = []
    if began is None or ended is None:
        return [Text("no events in the record yet", style="dim")]
    window = max(ended - began, 1e-6)
    for (gate, line), points in sorted(axis.series.items()):
        cols = sp.columns(points, began, window, cells)
        lo, hi = sp.scale(cols, None)
        name = f"{gate}{{{line}}}" if line else gate
        row = Text(f"{name[:LABEL_W - 1]:<{LABEL_W}} ", style="bold")
        row.append_text(_runs(sp.spark_runs(cols, lo, hi, {})))
        out.append(row)
    if not axis.series:
        out.append(Text(f"{'(no gated series)':<{LABEL_W}} ", style="dim"))
    marks = Text(f"{'events':<{LABEL_W}} ", style="dim")
    marks.append_text(_runs(sp.marker_runs(axis.markers, began, window, cells)))
    out.append(marks)
    cursor = Text(" " * (LABEL_W + 1))
    if cursor_at is not None:
        col = column(cursor_at, began, window, cells)
        cursor.append(" " * col)
        cursor.append("▲", style="bold reverse")
        cursor.append(f" {clock(cursor_at)}" if col < cells - 10 else "", style="bold")
    out.append(cursor)
    out.append(Text(f"{'':<{LABEL_W}} {clock(began)}" + " " * max(1, cells - 16) + clock(ended), style="dim"))
    return out


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def header(tl: rec.Timeline, deploy: dict, at: rec.FleetAt, cursor: int) -> Text:
    """Deploy #N previous -> revision by user · its status at the cursor · event i/N at its time."""
    t = Text()
    t.append(f"Timeline of deploy #{tl.number} ", style="bold")
    t.append(f"{clean(str(deploy.get('previous') or '?'), 40)} -> {clean(str(deploy.get('revision') or '?'), 40)}"
             f" by {clean(str(deploy.get('user') or '?'), 40)}")
    t.append(f" · {(at.status or 'not started').replace('_', ' ')}", style="bold")
    if len(tl):
        e = tl.events[cursor] if 0 <= cursor < len(tl) else None
        t.append(f" · event {cursor + 1}/{len(tl)}" + (f" at {e.stamp()}" if e else ""))
    return t


def flags_line(at: rec.FleetAt, *, compact: bool = False) -> Text:
    """Every flag's value at the cursor; compact (a narrow pane): one flag a line, no label."""
    t = Text("" if compact else "flags: ", style="bold")
    if not at.flags:
        t.append("flags: none" if compact else "none", style="dim")
    for i, (name, value) in enumerate(sorted(at.flags.items())):
        if i:
            t.append("\n" if compact else ", ")
        t.append(f"{clean(name, 60)} {clean(value, 20)}", style="bold" if value == "on" else "")
    return t


def held_lines(at: rec.FleetAt, *, compact: bool = False) -> Text:
    """Who held the fleet, and what the deploy waited for, at the cursor; compact (a narrow pane): the lock only
    (the header says the deploy is waiting, the entry at the cursor what for)."""
    t = Text("lock: ", style="bold")
    t.append(clean(at.lock, 200) if at.lock else "none", style="" if at.lock else "dim")
    if at.waiting and not compact:
        t.append("\nwaiting: ", style="bold")
        t.append(clean(at.waiting, 300))
    return t


VERDICT_SYMBOLS = {"passed": "✓", "failed": "✗"}  # anything else (unknown): ?


def gates_lines(at: rec.FleetAt, *, compact: bool = False) -> Text:
    """Every gate's latest value at the cursor: gate{line} = value verdict (at its time); compact (a narrow pane):
    series{line} value and the verdict's symbol."""
    t = Text()
    if not at.gates:
        t.append("gates: no value yet", style="dim")
        return t
    first = True
    for gate, lines in sorted(at.gates.items()):
        for line, v in sorted(lines.items()):
            if not first:
                t.append("\n")
            first = False
            bad = v.verdict != "passed"
            verdict_style = "bold red" if bad else "green"
            if compact:
                series = clean(gate, 80).split(" ", 1)[0]  # "errors_5xx < 5": its series
                t.append(f"{series}{{{clean(line, 40)}}}" if line else series, style="bold")
                t.append(f" {sp.figure(v.value)} ", style="bold")
                t.append(VERDICT_SYMBOLS.get(v.verdict, "?"), style=verdict_style)
                continue
            name = f"{clean(gate, 80)}{{{clean(line, 40)}}}" if line else clean(gate, 80)
            t.append(f"{name} = {sp.figure(v.value)} ", style="bold")
            t.append(clean(v.verdict, 20) or "?", style=verdict_style)
            t.append(f" ({clock(v.at)})", style="dim")
    return t


def entries_lines(tl: rec.Timeline, cursor: int, rows: int) -> Text:
    """The entries around the cursor, the cursor's marked: time, !, person, kind, what (one line each: cut with
    an ellipsis where the width ends; enter shows the whole entry)."""
    t = Text()
    n = len(tl)
    if not n:
        return Text("the record of this deploy is empty", style="dim")
    first = max(0, min(cursor - rows // 2, n - rows))
    for j in range(first, min(n, first + rows)):
        e = tl.events[j]
        if j != first:
            t.append("\n")
        line = f"{'▶' if j == cursor else ' '} {e.stamp()[11:]} {'!' if e.failure else ' '} " \
               f"{clean(e.user, 12):<12} {e.kind:<6} {e.text()}"
        style = "reverse bold" if j == cursor else ("red" if e.failure else "")
        t.append(line, style=style)
    return t


def detail(e: rec.Entry) -> str:
    """What an entry is, in lines (a gate's values, a flag's receipt, the event's fields)."""
    d = e.values
    lines = [f"{e.stamp()}  {clean(e.user, 40) or '-'}  {e.kind}", e.text(), ""]
    if e.type == "GateWaiting":
        verdicts = [ev.GateVerdict(*v) for v in d.get("verdicts") or ()]
        lines.append(f"gate before {clean(str(d.get('name')), 60)} ({clean(str(d.get('kind')), 20)}): "
                     f"{clean(str(d.get('reason') or ''), 300)}")
        for v in verdicts:
            line = f"{{{v.revision}}}" if v.revision else ""
            lines.append(f"  {clean(v.gate, 80)}{clean(line, 40)} = {sp.figure(v.value)} {clean(v.state, 20)}"
                         + (f": {clean(v.why, 200)}" if v.why else ""))
        if not verdicts:
            lines.append("  (no values: a wait for the operator)")
    elif e.type == "GateEvaluated":
        lines.append(f"gate {clean(str(d.get('gate')), 80)} on {clean(str(d.get('line') or 'the whole fleet'), 40)}:"
                     f" value {sp.figure(d.get('value') if isinstance(d.get('value'), (int, float)) else None)},"
                     f" verdict {clean(str(d.get('verdict')), 20)}" + (f" ({clean(str(d.get('why')), 200)})"
                                                                        if d.get("why") else ""))
    elif e.kind == rec.K_FLAG:
        failed = d.get("failed") or ()
        lines.append(f"receipt of flag change v{clean(str(d.get('version')), 12)}: "
                     f"confirmed on {clean(str(d.get('confirmed')), 12)} of {clean(str(d.get('total')), 12)} hosts")
        for item in failed if isinstance(failed, (list, tuple)) else ():
            lines.append("  not confirmed: " + clean(" ".join(map(str, item)) if isinstance(item, (list, tuple))
                                                     else str(item), 200))
        if not failed:
            lines.append("  every host confirmed" if d.get("confirmed") else "  (pushing: no receipt yet)")
    else:
        for k, v in d.items():
            if k in ("rollout_id", "at", "type"):
                continue
            if k == "since" and isinstance(v, (int, float)):  # a time (the suspect's event): said as one
                v = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v))
            elif k == "p" and isinstance(v, float):  # a p-value: three figures say it
                v = f"{v:.3g}"
            lines.append(f"  {clean(str(k), 40)}: {clean(str(v), 300)}")
    return "\n".join(lines)
