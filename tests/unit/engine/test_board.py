"""The board as a client sees it: a snapshot of the state so far, then the events after it, over JSON.

A watcher that attaches mid-rollout gets `Board.snapshot()` and then the events numbered after it; whatever moment it
attaches at, it must end up with the very board of a watcher that saw every event from the start. Events cross the
socket as `events.to_wire` dicts and come back with `events.from_wire`, tuples and all.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from controlroom.config import config
from controlroom.core import events as ev
from controlroom.core.identity import Actor
from controlroom.engine.board import OUTPUT_LINES, Board
from controlroom.engine.rollout import Rollout
from controlroom.fleet.ssh import SSHPool
from controlroom.journal.journal import Journal
from tests.unit.engine.test_rollout import config_with_phases, revision_of, until

NEW, OLD = "r2307", "r2306"


def over_json(d: dict) -> dict:
    """What the other end of the socket reads."""
    return json.loads(json.dumps(d))


# one of every event type, with nested tuples where the vocabulary has them
SAMPLES = [
    ev.RolloutStarted(
        7,
        revision=NEW,
        previous=OLD,
        user="alice",
        phases=(("canary", ("web001", "web002")), ("stage 1", ("web003",))),
        resumed=True,
        at=1.5,
    ),
    ev.PhaseStarted(7, phase=1, name="stage 1", hosts=1, at=2.0),
    ev.HostStateChanged(
        7,
        host="web003",
        phase=1,
        state=ev.FAILED,
        step=2,
        steps=3,
        reason="exit 1: no space",
        revision=OLD,
        previous="r2305",
        seconds=0.25,
        steps_done=1,
        at=2.5,
    ),
    ev.HostOutput(7, host="web003", stream="err", line="\x1b[31mdisk full\x1b[0m", at=2.4),
    ev.PhaseHalted(7, phase=1, name="stage 1", failed=("web003", "web004"), max_failed=1, at=2.6),
    ev.PhaseCompleted(7, phase=0, name="canary", done=2, failed=0, skipped=0, seconds=1.25, at=1.9),
    ev.GateWaiting(7, phase=1, name="stage 1", reason="canary done; waiting for the operator", at=1.95),
    ev.GatePassed(7, phase=1, name="stage 1", by="bob", at=1.99),
    ev.RolloutPaused(7, user="bob", at=3.0),
    ev.RolloutResumed(7, user="bob", at=3.5),
    ev.OperatorAction(7, user="alice", action="skip", host="web003", detail="by hand", at=4.0),
    ev.RolloutFinished(
        7,
        status=ev.R_FAILED,
        revision=NEW,
        done=2,
        failed=1,
        skipped=0,
        seconds=3.75,
        failed_hosts=(("web003", "exit 1"), ("web004", "timeout")),
        at=5.0,
    ),
    ev.RolloutInterrupted(7, user="alice", hosts=("web003",), at=4.5),
    ev.LogEntryAdded(0, user="carol", kind="NOTE", text="lunch", revision=None, at=6.0),
    ev.LockChanged(0, held=True, user="carol", reason="NO DEPLOY PLEASE [/]", at=7.0),
    ev.FlagChanged(0, flag="beehive", old="on", new="off", user="alice", reason="sheds load", version=3,
                   confirmed=148, total=150, failed=(("web020", "refused", "connection refused"),
                                                     ("web030", "exit 1", "no space")), at=8.0),
    ev.AnnouncementFailed(0, channel="webhook", reason="HTTP 500", tries=5, gave_up=True, entries=2, at=9.0),
    # a failed gate carries every gate's verdict as data (a tuple of tuples on the wire)
    ev.GateWaiting(7, phase=1, name="stage 1", reason="gate errors_5xx < 5: FAILED", kind=ev.GATE_FAILED,
                   failed=("errors_5xx < 5",), at=9.5,
                   verdicts=(ev.GateVerdict("errors_5xx < 5", "errors_5xx", "r2307", 7.5, "<", 5.0, "failed"),)),
    # the failed series' suspect, as the server judged it (engine/breach.py): structured, said by line()
    ev.SuspectNamed(7, phase=1, series="errors_5xx", verdict=ev.SUSPECT, what="canary started (r2307)",
                    words="errors_5xx higher on r2307 hosts than on r2306 hosts; p < 0.001", since=1.5, p=0.0004,
                    at=9.6),
]


# --------------------------------------------------------------------------------------------- events on the wire


def test_every_event_type_crosses_the_wire_and_comes_back_equal_with_its_tuples():
    assert {type(e).__name__ for e in SAMPLES} == set(ev.EVENT_TYPES), "a new event type needs a sample here"
    for e in SAMPLES:
        wire = ev.to_wire(e)
        assert wire["type"] == e.event_type
        assert wire == over_json(wire), f"{e.event_type} is not plain JSON data"
        back = ev.from_wire(over_json(wire))
        assert back == e and type(back) is type(e)
    started = ev.from_wire(over_json(ev.to_wire(SAMPLES[0])))
    assert isinstance(started.phases, tuple) and all(
        type(p) is tuple and type(p[1]) is tuple for p in started.phases
    )
    finished = ev.from_wire(over_json(ev.to_wire(SAMPLES[11])))
    assert finished.failed_hosts == (("web003", "exit 1"), ("web004", "timeout"))
    assert all(type(pair) is tuple for pair in finished.failed_hosts)


def test_an_older_client_ignores_fields_a_newer_server_adds_and_the_stream_number():
    wire = over_json(ev.to_wire(SAMPLES[2]))
    wire.update(seq=4711, colo="ams", future_field={"x": [1, 2]})
    assert ev.from_wire(wire) == SAMPLES[2]


def test_an_unknown_or_malformed_event_is_one_clear_line():
    with pytest.raises(ValueError) as info:
        ev.from_wire({"type": "HostTeleported", "rollout_id": 1})
    assert str(info.value) == "unknown event type 'HostTeleported'"
    with pytest.raises(ValueError, match="unknown event type None"):
        ev.from_wire({"rollout_id": 1})
    with pytest.raises(ValueError) as info:
        ev.from_wire({"type": "HostOutput", "rollout_id": 1, "host": "web001"})
    assert str(info.value) == "HostOutput event: stream, line missing"
    with pytest.raises(ValueError, match="not an event"):
        ev.from_wire(["HostOutput"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- snapshots


def test_a_board_restored_from_its_snapshot_is_equal_and_paints_everything():
    board = Board()
    board.plan([("canary", ("web001", "web002"), 0, False), ("stage 1", ("web003",), 1, True)])
    for e in SAMPLES[:5]:
        board.apply(e)
    for i in range(OUTPUT_LINES + 5):
        board.apply(ev.HostOutput(7, host="web001", stream="out", line=f"line {i}"))
    board.take_dirty()
    board.dirty = board.replanned = False

    snap = board.snapshot()
    assert snap == over_json(snap)
    assert snap["halted"] == ev.to_wire(SAMPLES[4]) and snap["gate"] is None and snap["finished"] is None
    web001 = snap["hosts"][0]
    assert web001["name"] == "web001" and web001["lines"] == OUTPUT_LINES + 5
    assert web001["output"][0] == "line 5" and len(web001["output"]) == OUTPUT_LINES
    assert snap["hosts"][2]["output"] == [
        "[err] \x1b[31mdisk full\x1b[0m"
    ]  # kept as received; cleaned when shown

    restored = Board.from_snapshot(over_json(snap))
    assert restored.snapshot() == snap
    assert restored.halted == SAMPLES[4] and restored.phases[1].hosts == ("web003",)
    assert restored.order == board.order and restored.index == board.index
    assert restored.hosts["web001"].output.maxlen == OUTPUT_LINES
    assert restored.dirty and restored.replanned and restored.dirty_hosts == set(board.order)
    # the restored board goes on like the original
    later = (
        ev.RolloutFinished(7, status=ev.R_FAILED, revision=NEW, done=2, failed=1, skipped=0, seconds=4.0),
        ev.HostOutput(7, host="web001", stream="out", line="one more"),
    )
    for b in (board, restored):
        for e in later:
            b.apply(e)
    assert restored.snapshot() == board.snapshot()
    assert restored.elapsed() == 4.0 and not restored.active


def test_a_board_before_any_rollout_round_trips_with_its_plan():
    board = Board()
    board.plan([("canary", ("web001",), 0, False), ("rest", ("web002", "web003"), 2, True)])
    board.revision, board.previous = NEW, OLD
    snap = over_json(board.snapshot())
    restored = Board.from_snapshot(snap)
    assert restored.status is None and restored.total == 3 and restored.count(ev.PENDING) == 3
    assert [(p.name, p.max_failed, p.auto) for p in restored.phases] == [
        ("canary", 0, False),
        ("rest", 2, True),
    ]
    assert restored.snapshot() == snap


def test_something_that_is_not_a_snapshot_is_one_clear_line():
    with pytest.raises(ValueError) as info:
        Board.from_snapshot({"rollout_id": 3})
    assert str(info.value) == "not a board snapshot: it has no 'revision'"


# --------------------------------------------------------------------------------------------- a real rollout

PHASES = """
[[phase]]
name = "canary"
size = 2

[[phase]]
name = "stage 1"
size = 3
max_failed = 0

[[phase]]
name = "stage 2"
"""

SNAPSHOT_ON = (
    ev.RolloutStarted,
    ev.PhaseStarted,
    ev.PhaseHalted,
    ev.PhaseCompleted,
    ev.GateWaiting,
    ev.GatePassed,
    ev.RolloutPaused,
    ev.RolloutResumed,
    ev.RolloutFinished,
)


async def test_a_watcher_attaching_at_any_moment_of_a_rollout_ends_with_the_board_of_one_that_saw_it_all(
    make_fleet, tmp_path
):
    # web004 (stage 1, no failures allowed) fails: the phase halts, the operator skips it; every phase boundary
    # waits for the operator, who pauses and resumes once; every step says something on stdout and stderr
    fleet = make_fleet(8, "web004=fail")
    path = config_with_phases(fleet, PHASES)
    text = path.read_text()
    path.write_text(
        text.replace("steps = [\n", 'steps = [\n    "echo fetching {revision}; echo slow disk >&2",\n', 1)
    )
    cfg = config.load(path)
    assert len(cfg.deploy.steps) == 3

    board = Board()  # the watcher that sees everything, set up as the app sets up its own
    board.plan([(p.name, p.hosts, p.max_failed, p.auto) for p in cfg.phases])
    seen: list[ev.Event] = []
    snapshots: list[tuple[int, dict]] = []  # (events seen when taken, the snapshot as the socket carries it)
    errors: list[BaseException] = []  # the engine swallows a subscriber's error: keep ours to fail the test

    def watch(e: ev.Event) -> None:
        try:
            board.apply(e)
            seen.append(e)
            outputs = sum(isinstance(x, ev.HostOutput) for x in seen)
            if isinstance(e, SNAPSHOT_ON) or (isinstance(e, ev.HostOutput) and outputs % 7 == 0):
                snapshots.append((len(seen), json.loads(json.dumps(board.snapshot()))))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        rollout = Rollout(cfg, pool, journal, revision=NEW, actor=Actor("tester"), confirm="all")
        rollout.subscribe(watch)
        task = asyncio.ensure_future(rollout.run())
        handled = 0
        paused_once = False
        while not task.done():
            await until(lambda n=handled: task.done() or len(seen) > n, what="the next event")
            for e in seen[handled:]:
                handled += 1
                if isinstance(e, ev.GateWaiting):
                    if not paused_once:
                        paused_once = True
                        rollout.pause(Actor("tester"))
                        rollout.resume(Actor("tester"))
                    rollout.proceed(Actor("tester"))
                elif isinstance(e, ev.PhaseHalted):
                    for host in e.failed:  # past the budget of 0: with a typed reason
                        rollout.skip(host, Actor("tester"), reason="a known bad disk")
        fin = task.result()

    assert not errors, errors
    assert fin.status == ev.R_DONE and fin.skipped == 1
    assert revision_of(fleet, "web004") == OLD and revision_of(fleet, "web008") == NEW
    final = over_json(board.snapshot())
    # what the operator sees on the watcher's board
    assert final["status"] == ev.R_DONE and final["finished"]["type"] == "RolloutFinished"
    hosts = {h["name"]: h for h in final["hosts"]}
    assert hosts["web004"]["state"] == ev.SKIPPED and hosts["web004"]["reason"]
    assert hosts["web001"]["output"][:2] == [f"fetching {NEW}", "[err] slow disk"]
    kinds = {type(seen[n - 1]) for n, _ in snapshots}
    for kind in (ev.PhaseHalted, ev.GateWaiting, ev.RolloutPaused, ev.HostOutput, ev.RolloutFinished):
        assert kind in kinds, f"no snapshot was taken on {kind.__name__}"
    assert any(s["status"] == ev.R_HALTED and s["halted"]["failed"] == ["web004"] for _, s in snapshots)

    # a watcher attaching at each snapshot, then fed the rest over the wire, ends with the same board
    for taken_at, snap in snapshots:
        late = Board.from_snapshot(snap)
        assert late.snapshot() == snap
        for e in seen[taken_at:]:
            late.apply(ev.from_wire(over_json(ev.to_wire(e))))
        assert over_json(late.snapshot()) == final, f"attached after event {taken_at} ({seen[taken_at - 1]})"

    # and one fed every event over the wire from the start is the same board too
    wired = Board()
    wired.plan([(p.name, p.hosts, p.max_failed, p.auto) for p in cfg.phases])
    for e in seen:
        wired.apply(ev.from_wire(over_json(ev.to_wire(e))))
    assert over_json(wired.snapshot()) == final


def test_a_failed_gates_suspect_is_kept_by_series_until_the_next_phase_starts_and_crosses_a_snapshot():
    b = Board()
    b.plan([("canary", ("web001", "web002"), 0, True), ("stage 1", ("web003",), 0, True)])
    b.apply(ev.RolloutStarted(7, revision=NEW, previous=OLD, user="alice",
                              phases=(("canary", ("web001", "web002")), ("stage 1", ("web003",))), at=1.0))
    first = ev.SuspectNamed(7, phase=1, series="errors_5xx", verdict=ev.UNKNOWN_SUSPECT,
                            words="errors_5xx on r2307 hosts: too few points after it (1; 3 needed): cannot tell")
    b.apply(first)
    assert b.suspect_lines(1) == ["suspect: unknown: errors_5xx on r2307 hosts: too few points after it (1; 3 "
                                  "needed): cannot tell"]
    named = ev.SuspectNamed(7, phase=1, series="errors_5xx", verdict=ev.SUSPECT, what="canary started (r2307)",
                            words="errors_5xx higher on r2307 hosts\x1b[2J; p < 0.001", since=1.5, p=0.0004)
    b.apply(named)  # judged again as the series grew: the latest stands, once a series
    assert b.suspect_lines(1) == ["suspect: errors_5xx higher on r2307 hosts^[[2J; p < 0.001"]
    assert b.suspect_lines(2) == []
    again = Board.from_snapshot(over_json(b.snapshot()))
    assert again.suspects == {"errors_5xx": named}
    b.apply(ev.PhaseStarted(7, phase=1, name="stage 1", hosts=1, at=3.0))
    assert b.suspects == {} and b.suspect_lines(1) == []
