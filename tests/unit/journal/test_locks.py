"""The fleet lock as the team sees it (controlroom.journal.locks): who holds it and why, whether that holder is alive, and
what releasing it gives up. A deploy's process is a real second process holding the fleet's OS lock."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from controlroom.core.errors import LockedError
from controlroom.core.identity import Actor
from controlroom.journal.locks import Lock, abandons
from tests.waiting import wait_for

AT = time.mktime((2026, 3, 4, 9, 30, 0, 0, 0, -1))
STAMP = "2026-03-04 09:30"

HOLDER = """
import sys
from pathlib import Path
from controlroom.core.identity import Actor
from controlroom.journal.journal import Journal
state = Path(sys.argv[1])
j = Journal.open(state, url=sys.argv[2] or None)
j.fleet_lock().acquire("deploy #7")
j.take_lock(Actor("alice"), "deploying r2307", rollout_id=7)
print("holding", flush=True)
sys.stdin.read()
"""


def test_a_persons_lock_reads_no_deploy_please_with_who_when_and_why():
    lock = Lock("bob", AT, "database migration", None, None, None)
    assert lock.describe() == f"NO DEPLOY PLEASE — bob, {STAMP}: database migration"
    assert not lock.live and not lock.parked
    assert abandons(lock) == "releases bob's NO DEPLOY PLEASE (database migration)"


def test_a_running_deploys_lock_names_the_deploy_its_process_and_where_it_runs():
    lock = Lock("alice", AT, "deploying r2307", 4242, "bastion1", 7)
    assert lock.live
    assert lock.describe() == f"deploy #7 by alice since {STAMP} (pid 4242 on bastion1)"


def test_a_deploys_lock_whose_process_is_gone_says_it_is_stale():
    lock = Lock("alice", AT, "deploying r2307", 4242, "bastion1", 7, stale=True)
    assert not lock.live
    assert lock.describe().endswith("(pid 4242 on bastion1) — stale: that process is gone")


def test_a_halted_deploys_parked_lock_says_why_it_waits_and_that_unlocking_abandons_it():
    lock = Lock("alice", AT, "gate failed: waiting for a decision", None, None, 7)
    assert lock.parked and not lock.live
    assert lock.describe() == f"deploy #7 by alice, {STAMP}: gate failed: waiting for a decision"
    assert "abandons the lock kept for deploy #7 by alice" in abandons(lock)
    assert "`controlroom deploy --resume` can still finish it" in abandons(lock)


@pytest.fixture
def holder(tmp_path, open_journal):
    """A deploy's process: it holds the fleet's OS lock (on PostgreSQL: its advisory lock) and the journal's lock
    row for deploy #7."""
    state = tmp_path / "state"
    open_journal(state).close()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state), open_journal.url or ""], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "holding\n", proc.communicate()
    yield state, proc
    proc.kill()
    proc.wait()


def test_a_live_deploys_lock_cannot_be_taken_or_unlocked_by_a_person(holder, open_journal):
    state, proc = holder
    j = open_journal(state)
    lock = j.lock()
    assert lock.live and not lock.stale and lock.pid == proc.pid
    with pytest.raises(LockedError, match=r"the fleet is locked by deploy #7 by alice"):
        j.take_lock(Actor("bob"), "NO DEPLOY PLEASE", takeover=True)
    with pytest.raises(LockedError, match=r"cannot unlock: held by the running deploy #7"):
        j.release_lock(Actor("bob"), force=True)


def test_when_the_deploys_process_dies_its_lock_is_stale_and_the_next_one_takes_it_over_saying_so(holder,
                                                                                                 open_journal):
    state, proc = holder
    proc.kill()
    proc.wait()
    j = open_journal(state)
    if open_journal.url:  # PostgreSQL ends the dead process's session (and its lock) once it sees the socket close
        wait_for(lambda: j.lock().stale, 10, "the dead holder's session to end")
    lock = j.lock()  # the kernel let go of the OS lock when the process died: nothing to wait for
    assert lock.stale and lock.pid == proc.pid and "stale: that process is gone" in lock.describe()

    j.take_lock(Actor("bob"), "NO DEPLOY PLEASE: looking at what broke")

    now = j.lock()
    assert now.user == "bob" and not now.rollout_id
    assert [(e.user, e.kind, e.text) for e in j.log()][-2:] == [
        ("bob", "LOCK TAKEN OVER", f"stale lock of deploy #7 by alice (pid {proc.pid} is gone)"),
        ("bob", "LOCK", "NO DEPLOY PLEASE: looking at what broke")]


def test_a_persons_lock_is_released_by_them_but_another_person_must_force_it(tmp_path, open_journal):
    j = open_journal(tmp_path / "state")
    j.take_lock(Actor("bob"), "database migration")
    with pytest.raises(LockedError, match="`controlroom unlock --force` to do it"):
        j.release_lock(Actor("carol"))
    with pytest.raises(LockedError, match="the fleet is locked: NO DEPLOY PLEASE — bob"):
        j.take_lock(Actor("carol"), "mine now")
    assert j.release_lock(Actor("carol"), force=True).user == "bob"
    assert j.lock() is None
