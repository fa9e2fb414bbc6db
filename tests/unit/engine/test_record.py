"""The timeline of a deploy read back from a real journal: every event in order with its person and values, the
fleet as it was at any moment (hosts, phases, flags, gate values), the next failure or gate, a live deploy's tail;
and a 100,000-event deploy seeks through checkpoints, never replaying it all."""

from __future__ import annotations

import random

import pytest

from controlroom.core import events as ev
from controlroom.engine import record as rec
from controlroom.engine.board import Board
from controlroom.engine.record import Timeline
from controlroom.journal import record as jrec
from tests.records import GATE, Recorder


@pytest.fixture
def story(tmp_path, monkeypatch):
    r = Recorder(tmp_path / "state", monkeypatch)
    t0 = 1_790_000_000.0
    r.flag(t0 - 3600, "other", "on", "dave", "an hour before: not this deploy's")
    times = r.demo_story(t0)
    yield r, times
    r.close()


def test_the_story_in_order_with_its_people_and_values(story):
    r, times = story
    tl = Timeline.read(r.j.db, times["rid"], defaults={"new_search": "off", "other": "off"})
    texts = [e.text() for e in tl.events]
    assert texts[0].startswith("deploy r2306 -> r2307 started by alice (3 phases, 6 hosts)")
    assert [e.at for e in tl.events] == sorted(e.at for e in tl.events)
    kinds = {e.kind for e in tl.events}
    assert {rec.K_DEPLOY, rec.K_PHASE, rec.K_HOST, rec.K_GATE, rec.K_CHECK, rec.K_FLAG, rec.K_LOG} <= kinds
    failed_gate = next(e for e in tl.events if e.type == "GateWaiting" and e.values["kind"] == ev.GATE_FAILED)
    assert failed_gate.failure and "errors_5xx < 5{r2307} = 7.5 failed" in failed_gate.text()
    kill = [e for e in tl.events if e.type == "FlagChanged"]
    assert kill and all(e.user == "carol" for e in kill)  # the flag change in the deploy's window, by its person
    assert kill[0].text().endswith("kill switch: errors; pushing to 6 hosts")
    assert kill[-1].text().endswith("kill switch: errors; confirmed 6/6")
    # the events of no deploy before its first event are not its own
    assert not any("an hour before" in e.text() for e in tl.events)
    assert not any("launch the new search" in e.text() for e in tl.events)
    # but the flags as they were at its start are
    assert tl.at(-1).flags == {"new_search": "on", "other": "on"}
    assert tl.events[-1].text() == "DEPLOY OK r2307 on 6 of 6 hosts"


def test_the_fleet_as_it_was_at_the_failed_gate(story):
    r, times = story
    tl = Timeline.read(r.j.db, times["rid"])
    i = tl.next_failure(-1)
    assert tl.events[i].type == "GateWaiting"
    at = tl.at(i)
    assert at.status == ev.R_WAITING and at.waiting
    assert at.hosts["web001"].state == ev.DONE and at.hosts["web001"].revision == "r2307"
    assert {h: at.hosts[h].state for h in ("web004", "web005", "web006")} == dict.fromkeys(
        ("web004", "web005", "web006"), ev.PENDING)
    assert at.phases[0].counts[ev.DONE] == 1 and at.phases[2].counts[ev.PENDING] == 3
    assert at.flags["new_search"] == "on"
    assert at.gates[GATE]["r2307"].value == 7.5 and at.gates[GATE]["r2307"].verdict == "failed"
    # by time: the same moment
    assert tl.at(float(times["gate_failed"])).to_dict() == at.to_dict()
    # after the kill switch: the flag off, the gate holds again, then all done
    after = tl.at(float(times["held"]))
    assert after.flags["new_search"] == "off" and after.gates[GATE]["r2307"].value == 2.0
    end = tl.at(len(tl) - 1)
    assert end.status == ev.R_DONE and end.count(ev.DONE) == 6
    # a moment before the deploy: nothing ran
    assert tl.at(float(times["start"] - 1)).index == -1


def test_a_moment_as_a_board_and_the_events_as_the_engine_emitted_them(story):
    r, times = story
    tl = Timeline.read(r.j.db, times["rid"])
    i = tl.next_failure(-1)
    board = tl.at(i).board()
    assert board.order == [f"web00{k}" for k in range(1, 7)]
    assert board.hosts["web001"].state == ev.DONE and board.hosts["web004"].state == ev.PENDING
    assert board.phases[0].counts[ev.DONE] == 1 and board.phases[2].counts[ev.PENDING] == 3
    assert board.status == ev.R_WAITING and board.revision == "r2307"
    # the events replayed into a live Board give the same grid as the rebuilt moment
    live = Board()
    for e in tl.events[:i + 1]:
        event = e.event()
        if event is not None:
            live.apply(event)
    assert {n: h.state for n, h in live.hosts.items()} == {n: h.state for n, h in board.hosts.items()}
    def nonzero(phases):
        return [{k: v for k, v in p.counts.items() if v} for p in phases]

    assert nonzero(live.phases) == nonzero(board.phases)
    assert next(e for e in tl.events if e.type == "GateEvaluated").event() is None  # journal-only
    # a live stream's events give the same moments as the journal's
    streamed = Timeline(times["rid"], flags=tl.at(-1).flags)
    for e in tl.events:
        event = e.event()
        if event is not None:
            streamed.add_event(event)
            streamed.add_event(ev.HostOutput(times["rid"], host="web001", stream="out", line="not journaled"))
    journaled = [e for e in tl.events if e.type != "GateEvaluated"]
    assert len(streamed) == len(journaled)
    assert [e.text() for e in streamed.events] == [e.text() for e in journaled]
    assert streamed.at(len(streamed) - 1).hosts == tl.at(len(tl) - 1).hosts


def test_next_and_previous_failure_and_gate(story):
    r, times = story
    tl = Timeline.read(r.j.db, times["rid"])
    gates = []
    i = -1
    while (i := tl.next_gate(i)) is not None:
        gates.append(tl.events[i].type)
    assert gates == ["GateWaiting", "GatePassed", "GateWaiting", "GateWaiting", "GatePassed"]
    f = tl.next_failure(-1)
    assert tl.next_failure(f) is None and tl.previous_failure(f) is None
    assert tl.previous_gate(f) is not None and tl.previous_gate(f) < f


def test_a_live_deploy_is_followed_at_its_tail(tmp_path, monkeypatch):
    r = Recorder(tmp_path / "state", monkeypatch)
    try:
        t0 = 1_790_000_000.0
        rid = r.start(t0, "r2307", "r2306", "alice")
        tl = Timeline.read(r.j.db, rid)
        n = len(tl)
        r.phase(t0 + 1, 0, "canary", ("web001",))
        assert tl.follow(r.j.db) == len(tl) - n > 0
        assert tl.at(len(tl) - 1).hosts["web001"].state == ev.DONE
        assert tl.follow(r.j.db) == 0
        # a flag change while it runs is its own once the deploy records past it, in the journal's order, once
        r.flag(t0 + 10, "new_search", "on", "bob", "mid-deploy")
        assert tl.follow(r.j.db) == 0
        r.phase(t0 + 20, 1, "stage 1", ("web002",))
        tl.follow(r.j.db)
        r.phase(t0 + 30, 2, "stage 2", ("web003",))
        tl.follow(r.j.db)
        ids = [e.id for e in tl.events]
        assert ids == sorted(set(ids))
        flags = [e for e in tl.events if e.type == "FlagChanged"]
        assert len(flags) == 2 and tl.at(len(tl) - 1).flags["new_search"] == "on"
        assert Timeline.read(r.j.db, rid).markdown() == tl.markdown()
    finally:
        r.close()


def test_the_deploy_is_read_through_the_index(story):
    r, _ = story
    plan = " ".join(str(row) for row in r.j.db.execute(
        "EXPLAIN QUERY PLAN SELECT id, rollout_id, at, type, data FROM events WHERE rollout_id = ? AND id > ?"
        " ORDER BY id", (1, 0)))
    assert "events_rollout" in plan, plan


def test_text_from_hosts_and_people_is_only_text(tmp_path, monkeypatch):
    r = Recorder(tmp_path / "state", monkeypatch)
    try:
        rid = r.start(1_790_000_000.0, "r2307", "r2306", "alice")
        r.log(1_790_000_001.0, "NOTE", "evil \x1b]0;owned\x07 \x1b[2J\nsecond line")
        r.j.record(ev.HostStateChanged(rid, host="web001", phase=0, state=ev.FAILED, reason="exit 1: \x1b[31mred",
                                       at=1_790_000_002.0))
        tl = Timeline.read(r.j.db, rid)
        for e in tl.events:
            assert "\x1b" not in e.text() and "\n" not in e.text() and "\x07" not in e.text()
        assert "^[]0;owned^G" in tl.events[-2].text()
        assert "\x1b" not in tl.markdown()
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------- at scale
def synthetic(hosts: int = 5000, events: int = 100_000) -> list[tuple[str, dict, float, int]]:
    """A 5,000-host deploy's 100,000 events: the plan, then host moves (and a gate check now and then)."""
    names = [f"web{i:05d}" for i in range(hosts)]
    phases = (("canary", tuple(names[:50])), ("rest", tuple(names[50:])))
    out = [("RolloutStarted", {"rollout_id": 1, "revision": "r2", "previous": "r1", "user": "alice",
                               "phases": phases, "resumed": False}, 0.0, 1)]
    states = (ev.CONNECTING, ev.RUNNING, ev.CHECKING, ev.DONE)
    rnd = random.Random(7)
    t = 0.0
    while len(out) < events:
        t += 0.01
        if len(out) % 997 == 0:
            out.append(("GateEvaluated", {"gate": "e < 5", "verdict": "passed", "value": rnd.random(), "line": "r2",
                                          "why": "", "phase": 0, "name": "canary"}, t, len(out) + 1))
            continue
        h = rnd.randrange(hosts)
        out.append(("HostStateChanged", {"host": names[h], "phase": 0 if h < 50 else 1,
                                         "state": states[rnd.randrange(4)], "revision": "r2"}, t, len(out) + 1))
    return out


def test_100000_events_seek_from_checkpoints_and_agree_with_a_full_replay(monkeypatch):
    rows = synthetic()
    tl = Timeline(1, every=1024)
    tl.extend(rows)
    assert len(tl) == 100_000
    applied = []
    real = rec._apply

    def counting(state, entry):
        applied.append(1)
        real(state, entry)

    monkeypatch.setattr(rec, "_apply", counting)
    rnd = random.Random(3)
    for i in [0, 1023, 1024, 50_000, 99_998, *(rnd.randrange(100_000) for _ in range(20))]:
        applied.clear()
        got = tl.at(i)
        assert len(applied) <= 1024, f"seeking to {i} replayed {len(applied)} events"
        assert got.index == i
    monkeypatch.setattr(rec, "_apply", real)
    # the same states as replaying every event from the start (a timeline with no checkpoint in reach)
    for i in (777, 4096, 65_432):
        full = Timeline(1, every=10**9)
        full.extend(rows[:i + 1])
        assert tl.at(i).to_dict() == full.at(i).to_dict()
        assert tl.at(float(rows[i][2])).index >= i  # by time: the last entry at that time


def test_the_journal_queries_of_a_deploy_with_no_events(tmp_path, monkeypatch):
    r = Recorder(tmp_path / "state", monkeypatch)
    try:
        assert jrec.deploy_events(r.j.db, 5) == []
        assert jrec.deploy(r.j.db) is None and jrec.deploy_numbers(r.j.db) == []
        tl = Timeline.read(r.j.db, 5)
        assert len(tl) == 0 and tl.at(0).index == -1 and tl.next_failure(-1) is None
    finally:
        r.close()


def test_an_older_journal_gets_the_index_when_opened(tmp_path):
    """A version 1 file (before versions) is migrated to version 5: the events_rollout index is made."""
    from controlroom.journal import schema
    from controlroom.journal.journal import Journal
    from tests.unit.journal.test_journal import make_v1_journal

    make_v1_journal(tmp_path / "state")
    j = Journal.open(tmp_path / "state")
    try:
        assert j.db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION == 5
        names = {r[0] for r in j.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "events_rollout" in names
        assert jrec.deploy_numbers(j.db) == [1] and len(Timeline.read(j.db, 1)) == 0
    finally:
        j.close()


def test_reading_a_record_in_one_loop_gives_what_adding_its_events_one_by_one_gives(story):
    """Timeline.read applies the host moves inline (the fast path): every entry, checkpoint and moment is what
    add() of each event gives, including a resumed deploy's second RolloutStarted and a host with no revision."""
    r, _ = story
    rows = jrec.deploy_events_decoded(r.j.db, 1)
    rows += [(rows[-1][0] + 1, rows[-1][1] + 1, "RolloutStarted",
              {"rollout_id": 1, "revision": "r2308", "previous": "r2307", "user": "bob", "resumed": False,
               "phases": [["again", ["web001", "web009"]]]}),
             (rows[-1][0] + 2, rows[-1][1] + 2, "HostStateChanged",
              {"host": "web009", "phase": 0, "state": ev.FAILED, "revision": "", "reason": "exit 1"}),
             (rows[-1][0] + 3, rows[-1][1] + 1.5, "HostStateChanged", {"host": "web001", "state": ev.DONE})]
    fast, slow = Timeline(1, user="alice", every=3), Timeline(1, user="alice", every=3)
    fast._extend_rows(rows)
    for event_id, at, type_, data in rows:
        slow.add(type_, data, at, event_id)
    assert [vars_of(e) for e in fast.events] == [vars_of(e) for e in slow.events]
    assert (fast._times, fast._failures, fast._gates, fast.last_id) == (
        slow._times, slow._failures, slow._gates, slow.last_id)
    assert [c.to_dict() for c in fast._checkpoints] == [c.to_dict() for c in slow._checkpoints]
    for i in range(-1, len(rows)):
        assert fast.at(i).to_dict() == slow.at(i).to_dict(), i
    assert fast.at(len(rows) - 1).hosts["web009"] == rec.HostAt(ev.FAILED, None, 0, "exit 1")


def vars_of(e: rec.Entry) -> tuple:
    return (e.index, e.id, e.at, e.type, e.kind, e.user, e.values, e.failure)


def test_reading_a_record_leaves_the_garbage_collector_as_it_found_it(story):
    import gc

    r, _ = story
    assert gc.isenabled()
    Timeline.read(r.j.db, 1)
    assert gc.isenabled()
    gc.disable()
    try:
        Timeline.read(r.j.db, 1).follow(r.j.db)
        assert not gc.isenabled()
    finally:
        gc.enable()
