"""What the engine leaves on a host (controlroom.fleet.hostside), on its own: the receipt read back, the holder named, and
the step's shell text run on a real local /bin/sh in a home of the test's, as a host's shell runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controlroom.fleet.hostside import (
    HELD_EXIT,
    LEASE,
    RECEIPT,
    RECEIPT_MARK,
    SHOWN,
    Operation,
    fenced_by,
    held_by,
    parse_receipt,
    receipt_command,
    step_command,
)

OP = Operation("0b7c2f0e-4d1a-4c53-9a51-6c1f0d2e3a4b", "j-bastion1", "alice")


def on_host(home: Path, script: str) -> subprocess.CompletedProcess:
    """The script as a host's login shell runs it: sh -c, in the deploy user's home."""
    return subprocess.run(["sh", "-c", script], cwd=home, env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)


# ----------------------------------------------------------------------------------------------- receipts
def test_a_receipt_in_the_shape_controlroom_writes_says_which_step_is_done_and_the_previous_revision():
    r = parse_receipt(f"{RECEIPT_MARK}{OP.uuid} 3 r2306\ncontrolroom-lease:\n")
    assert (r.deploy, r.step, r.previous, r.problem) == (OP.uuid, 3, "r2306", None)
    assert parse_receipt(f"{RECEIPT_MARK}{OP.uuid} 0 none\n").previous is None


def test_a_host_with_no_receipt_has_none():
    assert parse_receipt(f"{RECEIPT_MARK}\ncontrolroom-lease:\n") is None
    assert parse_receipt("") is None


@pytest.mark.parametrize("line, problem", [
    ("d1 three r1", "its step 'three' is not a number"),
    ("d1 1234567890 r1", "is not a number"),
    ("d1 2 r1 extra", "it has 4 fields, not 3"),
    ("d1 2 $(reboot)", "is not a revision name"),
    ("d;1 2 r1", "its deploy id"),
])
def test_a_receipt_in_any_other_shape_counts_no_step_as_done_and_says_why(line, problem):
    r = parse_receipt(f"{RECEIPT_MARK}{line}\n")
    assert r.step == -1 and r.previous is None
    assert r.problem.startswith(f"unknown: ~/{RECEIPT}: ") and problem in r.problem


def test_a_receipt_full_of_control_characters_is_named_as_text_bounded():
    r = parse_receipt(f"{RECEIPT_MARK}\x1b[2J\x07{'x' * 5000} 1 r1\n")
    assert r.step == -1 and "\x1b" not in r.problem and "\x07" not in r.problem and len(r.problem) < 200


# ----------------------------------------------------------------------------------------------- who holds it
def test_a_refused_command_names_the_operation_person_and_journal_that_hold_the_host():
    out = f"controlroom-held:{OP.uuid} j-bastion2 bob\n"
    assert held_by(out) == f"operation {OP.uuid} of bob (journal j-bastion2)"
    assert held_by("deploying\nok\n") is None


def test_a_lease_controlroom_never_wrote_is_unknown_and_shown_as_text():
    assert held_by("controlroom-held:just-one\n").startswith(
        f"unknown: ~/{LEASE} holds no lease controlroom wrote (1 field, not 3)")
    odd = held_by("controlroom-held:a b\x1b]0;owned\x07 c\n")
    assert "a field holds characters controlroom never writes there" in odd and "\x1b" not in odd


# ----------------------------------------------------------------------------------------------- on a real shell
def test_a_step_with_quotes_command_substitution_and_newlines_runs_as_the_step_and_writes_its_receipt(tmp_path):
    step = "printf '%s\\n' \"it's \\$(touch pwned) here\" > said\necho 'line two' >> said # a comment }"
    res = on_host(tmp_path, step_command(OP, 1, step))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "said").read_text() == "it's $(touch pwned) here\nline two\n"
    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / RECEIPT).read_text() == f"{OP.uuid} 1 \n"


def test_hostile_names_of_who_acts_never_reach_the_shell_as_code(tmp_path):
    op = Operation("d1'; touch pwned1; '", "j$(touch pwned2)", "mallory\ntouch pwned3 `touch pwned4`")
    res = on_host(tmp_path, step_command(op, 1, "true"))
    assert res.returncode == 0, res.stderr
    assert not list(tmp_path.glob("pwned*"))
    lease = (tmp_path / LEASE).read_text()
    assert lease.count("\n") == 1 and len(lease.split()) == 3  # one line, three fields: only a label


def test_a_live_revision_that_is_not_a_plain_name_is_recorded_as_none(tmp_path):
    live = "echo 'r1 $(touch pwned)'"
    res = on_host(tmp_path, step_command(OP, 1, "true", live_command=live))
    assert res.returncode == 0, res.stderr
    assert "controlroom-live:none" in res.stdout and not (tmp_path / "pwned").exists()
    assert (tmp_path / RECEIPT).read_text() == f"{OP.uuid} 1 none\n"


def test_a_step_the_receipt_says_is_done_does_not_run_again(tmp_path):
    assert on_host(tmp_path, step_command(OP, 1, "echo ran >> count")).returncode == 0
    again = on_host(tmp_path, step_command(OP, 1, "echo ran >> count"))
    assert again.returncode == 0 and "controlroom-done:1" in again.stdout
    assert (tmp_path / "count").read_text() == "ran\n"


def test_a_step_that_exits_the_shell_still_hands_back_its_status_and_no_receipt(tmp_path):
    res = on_host(tmp_path, step_command(OP, 1, "exit 3"))
    assert res.returncode == 3
    assert not (tmp_path / RECEIPT).exists()


def test_another_operations_step_is_refused_naming_the_holder(tmp_path):
    assert on_host(tmp_path, step_command(OP, 1, "true")).returncode == 0
    bob = Operation("9f9f9f9f-0000-4000-8000-000000000000", "j-bastion2", "bob")
    res = on_host(tmp_path, step_command(bob, 1, "touch bobs-step"))
    assert res.returncode == HELD_EXIT and not (tmp_path / "bobs-step").exists()
    assert held_by(res.stdout) == f"operation {OP.uuid} of alice (journal j-bastion1)"


def test_a_driver_of_the_deploy_whose_epoch_is_older_than_the_hosts_lease_is_refused_and_runs_nothing(tmp_path):
    # bastion b took the deploy over (epoch 2) and ran step 1; bastion a, cut off and still driving (epoch 1), asks
    taker = Operation(OP.uuid, "j-shared", "bob", epoch=2)
    assert on_host(tmp_path, step_command(taker, 1, "echo b >> ran")).returncode == 0
    assert (tmp_path / LEASE).read_text() == f"{OP.uuid} j-shared bob 2\n"
    stale = Operation(OP.uuid, "j-shared", "alice", epoch=1)
    res = on_host(tmp_path, step_command(stale, 2, "echo a >> ran"))
    assert res.returncode == HELD_EXIT and (tmp_path / "ran").read_text() == "b\n"
    assert fenced_by(res.stdout) == "bob (driver epoch 2)" and held_by(res.stdout) is None
    assert (tmp_path / RECEIPT).read_text() == f"{OP.uuid} 1 \n"  # the receipt is the taker's, untouched


def test_a_driver_with_a_newer_epoch_replaces_the_lease_of_the_one_it_took_the_deploy_from(tmp_path):
    for lease in (f"{OP.uuid} j-shared alice 1", f"{OP.uuid} j-shared alice"):  # fenced before, or not at all
        (tmp_path / LEASE).write_text(lease + "\n")
        res = on_host(tmp_path, step_command(Operation(OP.uuid, "j-shared", "bob", epoch=3), 1, "true"))
        assert res.returncode == 0 and fenced_by(res.stdout) is None, res.stdout + res.stderr
        assert (tmp_path / LEASE).read_text() == f"{OP.uuid} j-shared bob 3\n"
    # the same driver again goes on under its own lease; another operation is still told who holds the host
    assert on_host(tmp_path, step_command(Operation(OP.uuid, "j-shared", "bob", epoch=3), 2, "true")).returncode == 0
    other = on_host(tmp_path, step_command(Operation("d2", "j-other", "carol"), 1, "touch carols"))
    assert other.returncode == HELD_EXIT and held_by(other.stdout) == f"operation {OP.uuid} of bob (journal j-shared)"
    assert not (tmp_path / "carols").exists()


def test_the_receipt_is_read_back_bounded_whatever_the_host_holds(tmp_path):
    (tmp_path / RECEIPT).write_text("x" * 10_000 + " 1 r1\nsecond line\n")
    res = on_host(tmp_path, receipt_command(wait=0.1))
    line = next(x for x in res.stdout.splitlines() if x.startswith(RECEIPT_MARK))
    assert len(line) == len(RECEIPT_MARK) + SHOWN
    assert parse_receipt(res.stdout).step == -1
