"""The timeline's drawing on its own (controlroom/app/recordview.py): every row of the axis has the same columns,
a series' cell and the event marked under it are the same slice of time, the cursor's column is its time's, and
the moment's flags, gate values and entries are said from the state at the cursor. The timeline screen's keys on
a record of known times: a minute on and back, the next and previous failure or gate, home and end (following)."""

from __future__ import annotations

import time

from controlroom.app import recordview as draw
from controlroom.app.timeline import Record, TimelineScreen
from controlroom.core import events as ev
from controlroom.engine.record import Timeline

T0 = 1_790_000_000.0
PHASES = [["canary", ["web001"]], ["rest", ["web002", "web003"]]]


def timeline() -> Timeline:
    """A small record: a check every 10 s whose value rises when the second phase starts (T0 + 50)."""
    rows = [("RolloutStarted", {"revision": "r2", "previous": "r1", "user": "alice", "phases": PHASES}, T0, 1),
            ("PhaseStarted", {"phase": 0, "name": "canary", "hosts": 1}, T0 + 1, 2),
            ("HostStateChanged", {"host": "web001", "phase": 0, "state": ev.DONE, "revision": "r2"}, T0 + 2, 3),
            ("PhaseStarted", {"phase": 1, "name": "rest", "hosts": 2}, T0 + 50, 30),
            ("FlagChanged", {"flag": "new_search", "old": "on", "new": "off", "user": "carol", "version": 2,
                             "confirmed": 3, "total": 3}, T0 + 99, 31),
            ("GateWaiting", {"phase": 1, "name": "rest", "kind": ev.GATE_FAILED, "reason": "errors_5xx < 5 failed",
                             "failed": ["errors_5xx < 5"], "verdicts": []}, T0 + 70.5, 32)]
    rows += [("GateEvaluated", {"gate": "errors_5xx < 5", "line": "r2", "value": 1.0 if k < 5 else 8.0,
                                "verdict": "passed" if k < 5 else "failed"}, T0 + 10 * k, 10 + k)
             for k in range(10)]
    tl = Timeline(4, user="alice", flags={"new_search": "on"})
    for type_, data, at, event_id in sorted(rows, key=lambda r: r[2]):
        tl.add(type_, data, at, event_id)
    return tl


def test_the_axis_rows_share_their_columns_and_the_series_lines_up_with_the_events():
    tl = timeline()
    axis = draw.Axis()
    axis.add(tl.events)
    width = 24 + 1 + 100
    rows = [r.plain for r in draw.axis_rows(axis, tl, width, T0 + 50)]
    series, marks, cursor = rows[0], rows[1], rows[2]
    assert series.startswith("errors_5xx < 5{r2}") and marks.startswith("events")
    assert len(series) == len(marks) == width
    cells = series[25:]
    high = cells.index("█")  # the first cell of the high values
    assert marks[25 + high] == "▲", (cells, marks[25:])  # the phase start at T0 + 50 in the same column
    assert cursor.index("▲") == 25 + draw.column(T0 + 50, tl.began, tl.ended - tl.began, 100) == 25 + high
    assert marks[25 + 99] == "⚑"  # the flag change at the end


def test_the_moment_is_said_from_the_state_at_the_cursor():
    tl = timeline()
    before = tl.index_at(T0 + 45)
    at = tl.at(before)
    assert "new_search on" in draw.flags_line(at).plain
    assert "errors_5xx < 5{r2} = 1.0 passed" in draw.gates_lines(at).plain
    assert draw.held_lines(at).plain == "lock: none"
    at = tl.at(len(tl) - 1)
    assert "waiting: errors_5xx < 5 failed" in draw.held_lines(at).plain
    assert "new_search off" in draw.flags_line(at).plain
    assert "errors_5xx < 5{r2} = 8.0 failed" in draw.gates_lines(at).plain
    lines = draw.entries_lines(tl, before, 5).plain.splitlines()
    assert len(lines) == 5 and lines[2].startswith("▶") and "check errors_5xx < 5{r2}: 1 passed" in lines[2]
    flag = tl.events[-1]
    assert "confirmed on 3 of 3 hosts" in draw.detail(flag) and "every host confirmed" in draw.detail(flag)


def test_a_suspects_entry_says_its_events_time_as_a_time_and_its_p_in_three_figures():
    tl = Timeline(7, user="alice")
    tl.add("SuspectNamed", {"rollout_id": 7, "phase": 1, "series": "errors_5xx", "verdict": "suspect",
                            "words": "errors_5xx rose on r2 hosts", "what": "stage 1 started (r2)",
                            "since": T0 + 30, "p": 0.03180128481037682}, T0 + 40)
    said = draw.detail(tl.events[-1])
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0 + 30))
    assert f"  since: {stamp}\n" in said and "  p: 0.0318" in said and "0.03180128" not in said, said
    assert "  verdict: suspect" in said and "  what: stage 1 started (r2)" in said, said


def screen_on(tl: Timeline) -> TimelineScreen:
    screen = TimelineScreen(None, tl.number)
    record = Record({"deploy": {"id": tl.number}, "events": [], "last": 0})
    record.tl = tl
    screen.record = record
    screen.cursor = len(tl) - 1
    return screen


def test_the_keys_move_the_cursor_by_event_minute_failure_or_gate_and_end_follows():
    tl = timeline()
    screen = screen_on(tl)
    assert screen.following
    screen.action_seek(0)
    assert screen.cursor == 0 and not screen.following
    screen.action_minute(1)
    assert screen.cursor == tl.index_at(T0 + 60) and tl.events[screen.cursor].at == T0 + 60
    screen.action_minute(-1)
    assert screen.cursor == tl.index_at(T0) == 1  # the last entry at T0 (the first check is at T0 too)
    screen.action_step(-1)
    assert screen.cursor == 0
    screen.action_next()  # the next failure or gate: the failed gate's wait (a failed check is neither)
    gate = screen.cursor
    assert tl.events[gate].type == "GateWaiting" and tl.events[gate].at == T0 + 70.5
    screen.action_seek(-1)
    screen.action_previous()
    assert screen.cursor == gate
    screen.action_seek(-1)
    assert screen.cursor == len(tl) - 1 and screen.following
    screen.action_step(-1)
    assert screen.cursor == len(tl) - 2 and not screen.following
