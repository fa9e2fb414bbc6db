"""The rollout engine on the simulated fleet: real SSH, real shells on the hosts, the journal in a temp dir.

Each test drives a Rollout in-process, acts as the operator would (skip, retry, pause, abort) from the engine's own
events, and then reads what the hosts hold and what the journal recorded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controlroom.config import config
from controlroom.core import events as ev
from controlroom.core.identity import Actor
from controlroom.demo.fleet import Fleet
from controlroom.engine.rollout import Rollout
from controlroom.fleet.ssh import SSHPool
from controlroom.journal.journal import Journal
from tests.waiting import until

NEW, OLD = "r2307", "r2306"


# --------------------------------------------------------------------------------------------- helpers


def config_with_phases(fleet: Fleet, phases: str, *, name: str = "test.toml", **settings: object) -> Path:
    """A copy of the fleet's own controlroom.toml with these [[phase]] blocks and, e.g., step_timeout = 2."""
    text = fleet.config_path.read_text()
    head, found, rest = text.partition("\n[[phase]]")
    assert found, "the fleet's config has no [[phase]] blocks to replace"
    _, found, state = rest.partition("\n[state]")
    assert found
    lines = []
    for line in head.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in settings:
            line = f"{key} = {settings.pop(key)}"
        lines.append(line)
    assert not settings, f"no such keys in the fleet's config: {settings}"
    path = fleet.dir / name
    path.write_text("\n".join(lines) + "\n" + phases.strip() + "\n\n[state]" + state)
    return path


BUDGET_PHASES = """
[[phase]]
name = "canary"
size = 2

[[phase]]
name = "stage 1"
size = 6
parallel = 2
max_failed = 1

[[phase]]
name = "stage 2"
"""


def revision_of(fleet: Fleet, host: str) -> str:
    return (fleet.dir / "hosts" / host / "REVISION").read_text().strip()


class Recorder:
    """Every event the engine emits (but output lines), in the order subscribers saw them."""

    def __init__(self, rollout: Rollout) -> None:
        self.events: list[ev.Event] = []
        rollout.subscribe(self)

    def __call__(self, e: ev.Event) -> None:
        if not isinstance(e, ev.HostOutput):
            self.events.append(e)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    async def next(self, kind: type, after: int = 0, timeout: float = 20) -> ev.Event:
        """The first event of this kind at index >= after, waiting for it if need be."""
        await until(lambda: any(isinstance(e, kind) for e in self.events[after:]), timeout, kind.__name__)
        return next(e for e in self.events[after:] if isinstance(e, kind))

    def states(self, host: str) -> list[str]:
        return [e.state for e in self.of(ev.HostStateChanged) if e.host == host]


def make_rollout(cfg, pool: SSHPool, journal: Journal, **kw) -> Rollout:
    kw.setdefault("revision", NEW)
    kw.setdefault("actor", Actor("tester"))
    kw.setdefault("confirm", "none")
    return Rollout(cfg, pool, journal, **kw)


def assert_one_final_state_each(journal: Journal, rollout: Rollout, decided: tuple[str, ...] = ()) -> None:
    """Every host ended in exactly one final state, and the journal agrees with the engine.

    A host the operator acted on (skip or retry after it failed) ends once per decision; the last one counts.
    """
    runs = journal.host_runs(rollout.id)
    for name, hr in rollout.hosts.items():
        assert hr.state in ev.FINAL, f"{name} stayed {hr.state}"
        assert runs[name].state == hr.state, name
        states = [t["state"] for t in journal.transitions(rollout.id, name)]
        assert states and states[-1] == hr.state, (name, states)
        if name not in decided:
            assert sum(s in ev.FINAL for s in states) == 1, (name, states)


# --------------------------------------------------------------------------------------------- budget


async def _run_to_halt(cfg, pool, journal):
    rollout = make_rollout(cfg, pool, journal)
    rec = Recorder(rollout)
    in_flight_at_halt: list[str] = []

    def on_halt(e: ev.Event) -> None:
        if isinstance(e, ev.PhaseHalted) and not in_flight_at_halt:
            in_flight_at_halt.extend(h.name for h in rollout.hosts.values() if h.state in ev.IN_FLIGHT)

    rollout.subscribe(on_halt)
    task = asyncio.ensure_future(rollout.run())
    halted = await rec.next(ev.PhaseHalted)
    return rollout, rec, task, halted, in_flight_at_halt


async def test_budget_exceeded_halts_phase_and_names_failed_hosts_then_skips_count_against_it(
    make_fleet, tmp_path
):
    # stage 1 is web003..web008, 2 at a time, max_failed 1: web003 is slow, three hosts fail
    budget_fleet = make_fleet(12, "web003=slow:0.5,web004=fail,web005=fail,web008=fail")
    cfg = config.load(config_with_phases(budget_fleet, BUDGET_PHASES))
    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        rollout, rec, task, halted, in_flight = await _run_to_halt(cfg, pool, journal)
        assert rollout.status == ev.R_HALTED
        assert halted.name == "stage 1" and halted.max_failed == 1
        assert sorted(halted.failed) == ["web004", "web005"]
        assert in_flight == ["web003"]  # the slow one was under way when the budget ran out
        halt_at = rec.events.index(halted)

        # in-flight hosts finish; nothing new starts while the phase is halted
        await until(lambda: rollout.hosts["web003"].state in ev.FINAL, what="web003 to finish")
        assert rollout.hosts["web003"].state == ev.DONE
        assert revision_of(budget_fleet, "web003") == NEW
        for name in ("web006", "web007", "web008"):
            assert rollout.hosts[name].state == ev.PENDING
            assert revision_of(budget_fleet, name) == OLD
        assert not [
            e for e in rec.events[halt_at:] if isinstance(e, ev.HostStateChanged) and e.state == ev.CONNECTING
        ]
        assert not task.done() and rollout.status == ev.R_HALTED

        # the operator skips both failed hosts, past the budget, so with a reason: the phase goes on
        mark = len(rec.events)
        rollout.skip("web004", Actor("tester"), reason="known bad disks")
        rollout.skip("web005", Actor("tester"), reason="known bad disks")
        await rec.next(ev.RolloutResumed, after=mark)
        # two skips and one more failure make three against a budget of one: halted again, naming only web008
        again = await rec.next(ev.PhaseHalted, after=mark)
        assert again.failed == ("web008",)
        rollout.skip("web008", Actor("tester"), reason="known bad disks")
        fin = await asyncio.wait_for(task, 30)

    assert fin.status == ev.R_DONE and fin.done == 9 and fin.skipped == 3
    skipped = {h.name for h in rollout.hosts.values() if h.state == ev.SKIPPED}
    assert skipped == {"web004", "web005", "web008"}
    for name in rollout.hosts:
        assert revision_of(budget_fleet, name) == (OLD if name in skipped else NEW), name
    log = [(e.user, e.kind, e.text) for e in journal.log()]
    assert [(u, t.split()[0]) for u, k, t in log if k == "SKIP"] == [
        ("tester", "web004"),
        ("tester", "web005"),
        ("tester", "web008"),
    ]
    assert any(k == "HALT" and "web004" in t and "web005" in t for _, k, t in log)
    assert_one_final_state_each(journal, rollout, decided=tuple(skipped))


async def test_healed_hosts_retried_after_a_halt_end_done_and_the_phase_goes_on(make_fleet, tmp_path):
    fleet = make_fleet(12, "web003=slow:0.5,web004=fail,web005=fail")
    cfg = config.load(config_with_phases(fleet, BUDGET_PHASES))
    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        rollout, rec, task, halted, _ = await _run_to_halt(cfg, pool, journal)
        assert sorted(halted.failed) == ["web004", "web005"]
        for name in halted.failed:
            fleet.call(fleet.set_fault, name, None)
        rollout.retry("web004", Actor("tester"))
        assert rollout.status == ev.R_HALTED  # web005 still failed: still over budget
        rollout.retry("web005", Actor("tester"))
        fin = await asyncio.wait_for(task, 30)

    assert fin.status == ev.R_DONE and fin.done == 12 and fin.failed == 0
    for name in ("web004", "web005"):
        assert rec.states(name)[-1] == ev.DONE
        assert ev.FAILED in rec.states(name)  # it did fail first; the log says it was retried
    assert all(revision_of(fleet, h) == NEW for h in rollout.hosts)
    assert [e.text.split()[0] for e in journal.log() if e.kind == "RETRY"] == ["web004", "web005"]


# --------------------------------------------------------------------------------------------- hung and dropped


@pytest.mark.slow
async def test_hung_slow_and_dropped_hosts_fail_with_their_reason_and_every_host_ends_once(
    make_fleet, tmp_path
):
    fleet = make_fleet(8, "web004=hang,web005=drop,web006=slow:3")
    phases = '[[phase]]\nname = "canary"\nsize = 2\n\n[[phase]]\nname = "rest"\nmax_failed = 3\n'
    cfg = config.load(config_with_phases(fleet, phases, connect_timeout=1, step_timeout=2))
    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        rollout = make_rollout(cfg, pool, journal)
        fin = await asyncio.wait_for(rollout.run(), 30)

    reasons = dict(fin.failed_hosts)
    assert sorted(reasons) == ["web004", "web005", "web006"]
    assert reasons["web004"].startswith("timeout"), reasons["web004"]  # connects, never says a word
    assert reasons["web005"].startswith("dropped"), reasons["web005"]  # goes away mid-command
    assert reasons["web006"].startswith("timeout"), reasons["web006"]  # a command that never ends
    assert fin.status == ev.R_FAILED and fin.done == 5
    for name in ("web001", "web002", "web003", "web007", "web008"):
        assert rollout.hosts[name].state == ev.DONE and revision_of(fleet, name) == NEW
    assert_one_final_state_each(journal, rollout)
    assert journal.rollout(rollout.id).status == ev.R_FAILED
    assert journal.log()[-1].kind == "DEPLOY FAILED"


# --------------------------------------------------------------------------------------------- pause and resume


async def test_pause_starts_no_new_host_until_resumed(make_fleet, tmp_path):
    fleet = make_fleet(12)
    phases = (
        '[[phase]]\nname = "canary"\nsize = 2\n\n[[phase]]\nname = "stage 1"\nsize = 2\n\n'
        '[[phase]]\nname = "stage 2"\nparallel = 2\n'
    )
    cfg = config.load(config_with_phases(fleet, phases))
    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        rollout = make_rollout(cfg, pool, journal)
        rec = Recorder(rollout)

        def pause_on_first_stage2_done(e: ev.Event) -> None:
            if (
                isinstance(e, ev.HostStateChanged)
                and e.phase == 2
                and e.state == ev.DONE
                and not rec.of(ev.RolloutPaused)
            ):
                rollout.pause(Actor("tester"))

        rollout.subscribe(pause_on_first_stage2_done)
        task = asyncio.ensure_future(rollout.run())
        await rec.next(ev.RolloutPaused)
        assert rollout.status == ev.R_PAUSED
        await until(
            lambda: not any(h.state in ev.IN_FLIGHT for h in rollout.hosts.values()),
            what="in-flight hosts to finish",
        )
        waiting = [h for h in rollout.hosts.values() if h.state == ev.PENDING]
        assert len(waiting) >= 5  # 8 in stage 2, 2 at a time: most had not started
        assert all(revision_of(fleet, h.name) == OLD for h in waiting)
        assert not task.done()
        rollout.resume(Actor("tester"))
        fin = await asyncio.wait_for(task, 30)

    assert fin.status == ev.R_DONE and fin.done == 12
    assert all(revision_of(fleet, h) == NEW for h in rollout.hosts)
    paused = rec.events.index(rec.of(ev.RolloutPaused)[0])
    resumed = rec.events.index(rec.of(ev.RolloutResumed)[0])
    assert paused < resumed
    between = rec.events[paused:resumed]
    assert not [e.host for e in between if isinstance(e, ev.HostStateChanged) and e.state == ev.CONNECTING]
    assert journal.rollout(rollout.id).status == ev.R_DONE
    # after a bad day the log tells who paused and who resumed
    kinds = [(e.user, e.kind) for e in journal.log()]
    assert kinds.index(("tester", "PAUSE")) < kinds.index(("tester", "RESUME"))


# --------------------------------------------------------------------------------------------- abort


@pytest.mark.slow
async def test_abort_mid_phase_skips_pending_and_names_live_revision_of_in_flight_hosts(make_fleet, tmp_path):
    fleet = make_fleet(12, "web003=slow:2,web004=slow:2")
    phases = BUDGET_PHASES.replace("parallel = 2", "parallel = 3")  # stage 1: web003..web008, 3 at a time
    cfg = config.load(config_with_phases(fleet, phases))
    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        rollout = make_rollout(cfg, pool, journal)
        rec = Recorder(rollout)
        task = asyncio.ensure_future(rollout.run())
        # the operator watches stage 1 go on around the two slow hosts, then presses abort
        await until(lambda: rollout.hosts["web006"].state == ev.DONE, what="web006 to be done")
        in_flight = [h.name for h in rollout.hosts.values() if h.state in ev.IN_FLIGHT]
        rollout.abort(Actor("tester"))
        fin = await asyncio.wait_for(task, 30)

    assert fin.status == ev.R_ABORTED and rollout.status == ev.R_ABORTED
    assert [(a.user, a.action) for a in rec.of(ev.OperatorAction)] == [("tester", "abort")]
    assert rec.events[-1] is fin
    assert in_flight[:2] == ["web003", "web004"]  # the slow ones, still on their first command
    for name in in_flight:
        hr = rollout.hosts[name]
        assert hr.state == ev.FAILED and hr.reason.startswith("aborted during "), (name, hr.state, hr.reason)
        assert "; live revision r230" in hr.reason, hr.reason
    for name in ("web003", "web004"):  # asked after the abort, they answered
        assert rollout.hosts[name].reason == "aborted during step 1/2; live revision r2306"
    done = {h.name for h in rollout.hosts.values() if h.state == ev.DONE}
    assert {"web001", "web002", "web005", "web006"} <= done
    not_reached = [h for h in rollout.hosts.values() if h.name not in done and h.name not in in_flight]
    assert {"web008", "web009", "web010", "web011", "web012"} <= {h.name for h in not_reached}
    for hr in not_reached:  # pending in this phase and in the next alike
        assert hr.state == ev.SKIPPED and hr.reason == "aborted", (hr.name, hr.state)
        assert revision_of(fleet, hr.name) == OLD
    assert (fin.done, fin.failed, fin.skipped) == (len(done), len(in_flight), len(not_reached))
    assert_one_final_state_each(journal, rollout)
    assert journal.rollout(rollout.id).status == ev.R_ABORTED
    assert [e.kind for e in journal.log()][-1] == "DEPLOY ABORTED"
    assert journal.lock() is None  # an aborted deploy lets go of the fleet


# --------------------------------------------------------------------------------------------- rollback


async def test_rollback_after_a_deploy_restores_previous_revision_latest_phase_first(make_fleet, tmp_path):
    fleet = make_fleet(10)
    cfg = config.load(fleet.config_path)
    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        rollout = make_rollout(cfg, pool, journal)
        fin = await asyncio.wait_for(rollout.run(), 30)
        assert fin.status == ev.R_DONE
        assert all(revision_of(fleet, h) == NEW for h in rollout.hosts)
        back = await asyncio.wait_for(rollout.rollback(Actor("tester")), 30)

    assert back.status == ev.R_ROLLED_BACK and back.done == 10 and back.failed == 0
    assert all(revision_of(fleet, h) == OLD for h in rollout.hosts)
    order = [t["phase"] for t in journal.transitions(rollout.id) if t["state"] == ev.ROLLING_BACK]
    assert len(order) == 10 and order == sorted(order, reverse=True)
    live = journal.live_revisions()
    assert all(live[h] == (OLD, NEW) for h in rollout.hosts)  # each host's revision is recorded
    kinds = [e.kind for e in journal.log()]
    assert kinds[-2:] == ["ROLLBACK START", "ROLLBACK OK"]


async def test_a_step_that_prints_the_live_marker_never_names_the_rollback_target(make_fleet, tmp_path):
    # the host has no live revision (no REVISION file: it reports "none"); its first step then prints the marker the
    # host's own report uses. Before the fix that line became the host's previous revision: a rollback would switch
    # it to a revision the step chose.
    fleet = make_fleet(2)
    (fleet.dir / "hosts" / "web001" / "REVISION").unlink()
    text = fleet.config_path.read_text().replace('steps = [\n    "', 'steps = [\n    "echo controlroom-live:r1999; ', 1)
    assert text != fleet.config_path.read_text()
    path = fleet.dir / "marker.toml"
    path.write_text(text)
    cfg = config.load(path)
    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        rollout = make_rollout(cfg, pool, journal)
        rec = Recorder(rollout)
        lines: list[str] = []
        rollout.subscribe(lambda e: lines.append(e.line) if isinstance(e, ev.HostOutput) and e.host == "web001" else None)
        fin = await asyncio.wait_for(rollout.run(), 30)
    assert fin.status == ev.R_DONE, rec.events
    assert rollout.hosts["web001"].previous is None
    assert rollout.hosts["web002"].previous == OLD
    assert "controlroom-live:r1999" in lines  # shown as the step's output, as it is
