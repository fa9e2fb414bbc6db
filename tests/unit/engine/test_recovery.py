"""Recovery as functions given what they need (engine/recovery.py): the journal, the config, the pool, the hosts and a
recorder; none of them knows the Rollout. Real SSH to the simulated fleet, a real journal in a temp dir.
"""

from __future__ import annotations

import asyncio

import pytest

from controlroom.config import config
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.core.identity import Actor
from controlroom.engine import recovery
from controlroom.engine.hostrun import HostRun
from controlroom.engine.recorder import Recorder
from controlroom.fleet.ssh import SSHPool
from controlroom.journal.journal import Journal
from tests.unit.engine.test_hostwork import a_rollout_on_record, host_run
from tests.unit.engine.test_rollout import BUDGET_PHASES, NEW, OLD, config_with_phases, make_rollout


def hosts(*spec: tuple[str, ev.HostState, int]) -> list[HostRun]:
    out = []
    for name, state, steps_done in spec:
        hr = HostRun(name, 0, steps=2)
        hr.state, hr.steps_done = state, steps_done
        out.append(hr)
    return out


def test_the_rollback_targets_are_the_hosts_that_may_run_the_new_code():
    given = hosts(("done", ev.DONE, 2), ("failed-after-a-step", ev.FAILED, 1), ("failed-at-connect", ev.FAILED, 0),
                  ("in-flight", ev.RUNNING, 0), ("pending", ev.PENDING, 0), ("skipped-untouched", ev.SKIPPED, 0),
                  ("skipped-touched", ev.SKIPPED, 0), ("back", ev.ROLLED_BACK, 2), ("half-back", ev.ROLLING_BACK, 2))
    touched = {"skipped-touched", "back"}
    assert [h.name for h in recovery.rollback_targets(given, touched)] == [
        "done", "failed-after-a-step", "in-flight", "skipped-touched", "half-back"]


def test_a_rerun_is_refused_unless_the_rollout_ended_failed_and_names_only_failed_hosts():
    given = {h.name: h for h in hosts(("web001", ev.FAILED, 1), ("web002", ev.DONE, 2))}
    recovery.check_rerun(given, ["web001"], status=ev.R_FAILED, running=False)
    with pytest.raises(ControlroomError, match="only a rollout that ended with failed hosts"):
        recovery.check_rerun(given, ["web001"], status=ev.R_FAILED, running=True)
    with pytest.raises(ControlroomError, match="only a rollout that ended with failed hosts"):
        recovery.check_rerun(given, ["web001"], status=ev.R_DONE, running=False)
    with pytest.raises(ControlroomError, match="web002: only a failed host can be run again"):
        recovery.check_rerun(given, ["web001", "web002"], status=ev.R_FAILED, running=False)
    with pytest.raises(ControlroomError, match="web999: only a failed host"):
        recovery.check_rerun(given, ["web999"], status=ev.R_FAILED, running=False)


async def test_a_rollout_is_read_back_from_the_journal_and_its_hosts_restored(make_fleet, tmp_path):
    fleet = make_fleet(10)
    cfg = config.load(fleet.config_path)
    journal = Journal.open(tmp_path / "state")
    with pytest.raises(ControlroomError, match="there is no deploy in the journal yet"):
        recovery.saved(cfg, journal)
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        r = make_rollout(cfg, pool, journal)
        fin = await asyncio.wait_for(r.run(), 60)
    assert fin.status == ev.R_DONE
    saved = recovery.saved(cfg, journal)
    assert (saved.id, saved.uuid, saved.revision, saved.previous, saved.status) == (
        r.id, r.uuid, NEW, OLD, ev.R_DONE)
    fresh = {name: HostRun(name, hr.phase, steps=hr.steps) for name, hr in r.hosts.items()}
    recovery.restore(fresh, saved)
    assert {n: (h.state, h.steps_done, h.revision, h.previous) for n, h in fresh.items()} == {
        n: (h.state, h.steps_done, h.revision, h.previous) for n, h in r.hosts.items()}
    assert all(type(h.state) is ev.HostState for h in fresh.values())
    # a config that plans other phases cannot resume it
    other = config.load(config_with_phases(fleet, BUDGET_PHASES))
    with pytest.raises(ControlroomError, match=f"deploy #{r.id} was planned with other phases or hosts"):
        recovery.saved(other, journal)
    with pytest.raises(ControlroomError, match=rf"deploy #{r.id} of {NEW} already ended \(done\)"):
        recovery.check_resumable(journal, r.id)


async def test_reconcile_settles_a_host_left_in_flight_from_what_it_answers(make_fleet, tmp_path):
    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    journal = Journal.open(tmp_path / "state")
    record, _ = a_rollout_on_record(journal, cfg)
    left, idle = host_run(cfg, "web001"), host_run(cfg, "web002")
    left.move(record, ev.CONNECTING)
    left.move(record, ev.RUNNING, step=1)  # as a crash leaves it: the journal says running, nothing ran
    seen: list[ev.Event] = []
    record.subscribe(seen.append)
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        asked = await asyncio.wait_for(recovery.reconcile([left, idle], cfg=cfg, pool=pool, record=record,
                                                          uuid=journal.rollout_uuid(record.rollout_id)), 30)
    assert asked == ["web001"]
    assert left.state == ev.PENDING and left.steps_done == 0
    assert left.reason == f"reconciled after resume: live {OLD}, 0/{left.steps} steps done"
    assert idle.state == ev.PENDING and idle.reason == ""
    assert [(e.host, e.state) for e in seen if isinstance(e, ev.HostStateChanged)] == [("web001", ev.PENDING)]
    assert journal.host_runs(record.rollout_id)["web001"].state == "pending"


async def test_the_rollback_runs_only_on_its_targets_and_records_through_its_recorder(make_fleet, tmp_path):
    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        r = make_rollout(cfg, pool, journal)
        assert (await asyncio.wait_for(r.run(), 60)).status == ev.R_DONE
        record = Recorder(journal, actor=Actor("tester"), revision=NEW)
        record.rollout_id = r.id
        seen: list[ev.Event] = []
        record.subscribe(seen.append)
        targets = [r.hosts["web001"]]
        fin = await asyncio.wait_for(recovery.Rollback(cfg, pool, record, r.op, r.phases).run(targets, Actor("alice")),
                                     60)
    assert (fin.status, fin.done, fin.failed) == (ev.R_ROLLED_BACK, 1, 0)
    assert r.hosts["web001"].state == ev.ROLLED_BACK and r.hosts["web002"].state == ev.DONE
    assert (fleet.dir / "hosts" / "web001" / "REVISION").read_text().strip() == OLD
    assert (fleet.dir / "hosts" / "web002" / "REVISION").read_text().strip() == NEW
    assert isinstance(seen[0], ev.OperatorAction) and seen[0].user == "alice" and seen[-1] == fin
    assert [e.kind for e in journal.log() if e.kind.startswith("ROLLBACK")] in (["ROLLBACK OK", "ROLLBACK START"],
                                                                                ["ROLLBACK START", "ROLLBACK OK"])
