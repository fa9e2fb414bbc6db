"""The work on one host (hostrun.HostWork) and the recorder it is given (recorder.Recorder), without any Rollout.

The host work is built from the config, the pool, a recorder and the operation acting on the hosts; it records
only through that recorder (a host's moves, its output) and tells what happened by what ``run`` returns. Real SSH
to the simulated fleet, a real journal in a temp dir.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controlroom.config import config
from controlroom.core import events as ev
from controlroom.core.errors import DeployLost
from controlroom.core.identity import Actor
from controlroom.engine.hostrun import HostRun, HostWork
from controlroom.engine.recorder import Recorder
from controlroom.fleet.hostside import LEASE, Operation
from controlroom.fleet.ssh import SSHPool
from controlroom.journal.journal import Journal
from tests.unit.engine.test_rollout import NEW, OLD, revision_of


def a_rollout_on_record(journal: Journal, cfg) -> tuple[Recorder, Operation]:
    """A rollout the journal knows, and a recorder and an operation for it, as a Rollout would make them."""
    record = Recorder(journal, actor=Actor("tester"), revision=NEW)
    phases = tuple((p.name, p.hosts) for p in cfg.phases)
    record.rollout_id = journal.new_rollout(NEW, OLD, Actor("tester"), phases)
    record.emit(ev.RolloutStarted(record.rollout_id, revision=NEW, previous=OLD, user="tester", phases=phases))
    return record, Operation(journal.rollout_uuid(record.rollout_id), journal.journal_id(), "tester")


def host_run(cfg, name: str) -> HostRun:
    """The host as a Rollout starts it: pending, in its phase."""
    phase = next(i for i, p in enumerate(cfg.phases) if name in p.hosts)
    return HostRun(name, phase, steps=len(cfg.deploy.steps))


async def test_the_host_work_runs_a_host_to_done_recording_each_move_and_line_through_its_recorder(make_fleet,
                                                                                                   tmp_path):
    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    journal = Journal.open(tmp_path / "state")
    record, op = a_rollout_on_record(journal, cfg)
    seen: list[ev.Event] = []
    committed: list[bool] = []
    # the journal has each event before a subscriber sees it
    record.subscribe(lambda e: (seen.append(e), committed.append(
        type(e) is ev.HostOutput or journal.transitions(record.rollout_id, "web001")[-1]["state"] == e.state)))
    hr = host_run(cfg, "web001")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        work = HostWork(cfg, pool, record, op, why_stopped=lambda: "stopped")
        assert await asyncio.wait_for(work.run(hr), 30) is None
    moves = [e.state for e in seen if isinstance(e, ev.HostStateChanged)]
    assert moves[0] == ev.CONNECTING and moves[-1] == ev.DONE and ev.RUNNING in moves, moves
    assert all(committed), "a subscriber saw an event the journal did not have yet"
    assert [t["state"] for t in journal.transitions(record.rollout_id, "web001")] == moves
    assert journal.host_runs(record.rollout_id)["web001"].state == "done"
    assert {type(e) for e in seen} <= {ev.HostStateChanged, ev.HostOutput}, "a host's work records its moves only"
    assert all(e.host == "web001" and e.rollout_id == record.rollout_id for e in seen)
    assert any(line.startswith("$ ") for line in hr.output), "the commands it ran, as the board keeps them"
    assert (hr.state, hr.revision, hr.previous) == (ev.DONE, NEW, OLD)  # the host's own record: HostRun
    assert revision_of(fleet, "web001") == NEW and revision_of(fleet, "web002") == OLD


async def test_a_host_that_cannot_be_reached_is_failed_with_its_reason_and_run_returns_no_holder(make_fleet,
                                                                                                 tmp_path):
    fleet = make_fleet(2, faults="web002=refuse")
    cfg = config.load(fleet.config_path)
    journal = Journal.open(tmp_path / "state")
    record, op = a_rollout_on_record(journal, cfg)
    hr = host_run(cfg, "web002")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        holder = await asyncio.wait_for(HostWork(cfg, pool, record, op, why_stopped=lambda: "stopped").run(hr), 30)
    assert holder is None
    assert hr.state == ev.FAILED and "(connecting)" in hr.reason, hr.reason
    assert journal.host_runs(record.rollout_id)["web002"].reason == hr.reason


async def test_a_host_stopped_mid_step_is_recorded_as_its_rollout_says_why(make_fleet, tmp_path):
    fleet = make_fleet(1)
    text = fleet.config_path.read_text()
    fleet.config_path.write_text(text.replace('steps = [\n    "', 'steps = [\n    "sleep 30; ', 1))
    cfg = config.load(fleet.config_path)
    assert cfg.deploy.steps[0].startswith("sleep 30; ")
    journal = Journal.open(tmp_path / "state")
    record, op = a_rollout_on_record(journal, cfg)
    hr = host_run(cfg, "web001")
    running = asyncio.Event()
    record.subscribe(lambda e: isinstance(e, ev.HostStateChanged) and e.state == ev.RUNNING and running.set())
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        task = asyncio.ensure_future(HostWork(cfg, pool, record, op, why_stopped=lambda: "interrupted").run(hr))
        await asyncio.wait_for(running.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
    assert hr.state == ev.FAILED and hr.reason.startswith("interrupted during step 1/"), hr.reason
    assert hr.interrupted
    assert journal.host_runs(record.rollout_id)["web001"].state == "failed"


def test_the_recorder_logs_for_its_rollout_and_pokes_its_loop(tmp_path):
    journal = Journal.open(tmp_path / "state")
    record = Recorder(journal, actor=Actor("tester"), revision=NEW)
    record.rollout_id = journal.new_rollout(NEW, OLD, Actor("tester"), (("all", ("web001",)),))
    assert record.rollout_id
    record.log("NOTE", "by the rollout's user")
    record.log("NOTE", "by someone else", Actor("alice"))
    entries = [(e.user, e.kind, e.text, e.revision) for e in journal.log() if e.kind == "NOTE"]
    assert sorted(entries) == sorted([("tester", "NOTE", "by the rollout's user", NEW),
                                      ("alice", "NOTE", "by someone else", NEW)])

    async def go() -> None:
        flag = []
        waiter = asyncio.ensure_future(record.until(lambda: bool(flag)))
        flag.append(1)
        record.poke()
        await asyncio.wait_for(waiter, 5)

    asyncio.run(go())


async def test_a_driver_whose_deploy_was_taken_over_meets_the_newer_lease_and_stops_recording_nothing_more(
        make_fleet, tmp_path):
    fleet = make_fleet(1)
    cfg = config.load(fleet.config_path)
    journal = Journal.open(tmp_path / "state")
    record, op = a_rollout_on_record(journal, cfg)
    stale = Operation(op.uuid, op.journal, "alice", epoch=1)
    taker = Operation(op.uuid, op.journal, "bob", epoch=2)
    (Path(fleet.hosts[0].root) / LEASE).write_text(taker.lease_line() + "\n")  # bastion b took the deploy over
    hr = host_run(cfg, "web001")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        with pytest.raises(DeployLost, match=r"lost deploy #\d+: web001 refused its step 1/\d+, the deploy was taken "
                                             r"over by bob \(driver epoch 2\)"):
            await asyncio.wait_for(HostWork(cfg, pool, record, stale, why_stopped=lambda: None).run(hr), 30)
    assert revision_of(fleet, "web001") == OLD  # the step never ran
    assert journal.host_runs(record.rollout_id)["web001"].state == ev.RUNNING  # not failed by the driver that lost
    assert (Path(fleet.hosts[0].root) / LEASE).read_text() == taker.lease_line() + "\n"
