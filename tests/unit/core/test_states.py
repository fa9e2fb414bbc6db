"""Typed state: host states, rollout statuses, gate verdicts and flag receipts are StrEnums whose values are the
strings the journal and the socket have always carried, and the host state machine is one table the design's
diagram can be read from, checked where the engine records a host's state.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from controlroom.config import config
from controlroom.core import events as ev
from controlroom.engine import flagpush, gates
from controlroom.fleet.ssh import SSHPool
from controlroom.journal import flags as journal_flags
from controlroom.journal.journal import Journal
from tests.unit.engine.test_rollout import make_rollout

H = ev.HostState

# the design's diagram (shared/design.md, "Host state machine"), edge by edge
DESIGN = [
    (H.PENDING, H.CONNECTING), (H.CONNECTING, H.RUNNING), (H.RUNNING, H.RUNNING),  # step k of n, then k+1
    (H.RUNNING, H.CHECKING), (H.CHECKING, H.DONE),
    *((s, H.FAILED) for s in (H.PENDING, H.CONNECTING, H.RUNNING, H.CHECKING)),
    (H.DONE, H.ROLLING_BACK), (H.ROLLING_BACK, H.ROLLED_BACK), (H.ROLLING_BACK, H.FAILED),
    (H.PENDING, H.SKIPPED),
]


def test_the_transition_table_has_every_state_and_every_move_of_the_design():
    assert set(ev.TRANSITIONS) == set(H)
    assert all(set(nexts) <= set(H) for nexts in ev.TRANSITIONS.values())
    missing = [(a, b) for a, b in DESIGN if b not in ev.TRANSITIONS[a]]
    assert not missing, missing
    assert ev.TRANSITIONS[H.ROLLED_BACK] == frozenset()  # the end of the line
    assert H.PENDING not in ev.TRANSITIONS[H.DONE]  # a finished host is never started again by itself
    for a, b in DESIGN:
        assert ev.check_transition("web001", a, b) is b


@pytest.mark.parametrize(("old", "new"), [(H.DONE, H.RUNNING), (H.PENDING, H.DONE), (H.ROLLED_BACK, H.PENDING),
                                          (H.PENDING, H.ROLLED_BACK), (H.CHECKING, H.CONNECTING)])
def test_a_move_the_table_does_not_have_raises_naming_the_host_and_both_states(old, new):
    with pytest.raises(ev.IllegalTransition) as err:
        ev.check_transition("web007", old, new)
    assert str(err.value) == f"host web007 cannot go from '{old}' to '{new}' (not in events.TRANSITIONS)"


def test_a_state_that_is_not_a_host_state_raises_too():
    with pytest.raises(ev.IllegalTransition, match="cannot go from 'pending' to 'halted'"):
        ev.check_transition("web001", "pending", "halted")  # a rollout status, not a host state
    with pytest.raises(ev.IllegalTransition, match="cannot go from 'sleeping' to 'done'"):
        ev.check_transition("web001", "sleeping", "done")


def test_the_wire_strings_are_the_ones_a_journal_written_before_holds():
    assert [s.value for s in H] == ["pending", "connecting", "running", "checking", "done", "failed", "skipped",
                                    "rolling_back", "rolled_back"]
    assert [s.value for s in ev.RolloutStatus] == ["running", "paused", "halted", "waiting", "done", "failed",
                                                   "aborted", "rolled_back"]
    assert [s.value for s in ev.GateState] == ["passed", "failed", "unknown"]
    assert [s.value for s in journal_flags.ReceiptStatus] == ["confirmed", "failed", "pending", "dismissed"]
    # the old names are the members, and a member is its string
    assert (ev.PENDING, ev.FAILED, ev.ROLLED_BACK) == (H.PENDING, H.FAILED, H.ROLLED_BACK)
    assert (ev.R_RUNNING, ev.R_DONE, ev.R_FAILED) == (ev.RolloutStatus.RUNNING, "done", "failed")
    assert (gates.PASSED, gates.FAILED, gates.UNKNOWN) == tuple(ev.GateState)
    assert (flagpush.CONFIRMED, flagpush.FAILED, flagpush.PENDING, flagpush.DISMISSED) == tuple(journal_flags.ReceiptStatus)
    assert json.dumps([ev.FAILED, ev.R_ROLLED_BACK, gates.UNKNOWN, flagpush.CONFIRMED]) == \
        '["failed", "rolled_back", "unknown", "confirmed"]'
    assert f"{ev.ROLLING_BACK} {ev.R_HALTED}" == "rolling_back halted"
    e = ev.HostStateChanged(1, host="web001", phase=0, state=ev.DONE, at=1.0)
    assert json.loads(json.dumps(ev.to_wire(e)))["state"] == "done"
    assert ev.from_wire(json.loads(json.dumps(ev.to_wire(e)))) == e


async def test_the_engine_refuses_a_move_the_table_lacks_and_the_journal_never_hears_of_it(make_fleet, tmp_path):
    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    journal = Journal.open(tmp_path / "state")
    async with SSHPool(cfg.ssh, cfg.hosts) as pool:
        rollout = make_rollout(cfg, pool, journal)
        fin = await asyncio.wait_for(rollout.run(), 30)
        assert fin.status == ev.R_DONE
        hr = rollout.hosts["web001"]
        before = journal.transitions(rollout.id, "web001")
        with pytest.raises(ev.IllegalTransition, match="host web001 cannot go from 'done' to 'running'"):
            hr.move(rollout.record, ev.RUNNING, step=1)
    assert hr.state is ev.DONE
    assert journal.transitions(rollout.id, "web001") == before
    assert journal.host_runs(rollout.id)["web001"].state == "done"


def test_a_journal_written_with_plain_strings_reads_back_as_states(tmp_path):
    journal = Journal.open(tmp_path / "state")
    journal.record(ev.HostStateChanged(0, host="web001", phase=0, state=ev.ROLLING_BACK, at=1.0))
    stored = sqlite3.connect(tmp_path / "state" / "journal.db").execute(
        "SELECT data FROM events WHERE type = 'HostStateChanged'").fetchone()[0]
    assert json.loads(stored)["state"] == "rolling_back"  # text in the journal, as before
    assert H(journal.transitions(0, "web001")[0]["state"]) is H.ROLLING_BACK
