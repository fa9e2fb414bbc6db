"""What a host answers about its lease and receipt is checked before it is believed or shown: hostile
`.controlroom-lease` and `.controlroom-step` files (escape sequences, a megabyte on one line, fields of the wrong
shape, a line forged to look like another answer) are a clear host failure or `unknown: why`, never an internal
error, never on the terminal raw, and never proof that a step ran; no step runs twice. On the simulated fleet and
on real sshd (`any_make_fleet`)."""

from __future__ import annotations

import os
from pathlib import Path

from controlroom.fleet import hostside
from tests.e2e.test_exactly_once import cli, config, forget_that_hosts_finished, revision_on, steps_of
from tests.servers import kill_server

ESC_TITLE = "\x1b]0;owned\x07"


def put(host, name: str, data: bytes) -> None:
    path = Path(host.root) / name
    path.write_bytes(data)
    os.chmod(path, 0o644)


def shown_lines(*texts: str) -> list[str]:
    return [line for t in texts for line in t.splitlines()]


def test_a_hostile_lease_is_a_clear_host_failure_bounded_and_as_text_and_nothing_runs(any_make_fleet):
    fleet = any_make_fleet(hosts=3)
    cfg = config(fleet, parallel=3)
    for h in fleet.hosts:
        put(h, hostside.LEASE, f"eve{ESC_TITLE} journal\x1b[2J ".encode() + b"x" * 1_000_000 + b"\n")
    res = cli(cfg, "deploy", "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "held by unknown: ~/.controlroom-lease holds no lease controlroom wrote (a field holds characters " \
           "controlroom never writes there): 'eve^[]0;owned^G journal^[[2J xxx" in res.stderr, res.stderr
    assert "\x1b" not in res.stdout + res.stderr and "Traceback" not in res.stderr
    assert max(len(line) for line in shown_lines(res.stdout, res.stderr)) < 1000
    assert set(revision_on(fleet).values()) == {"r2306"}
    assert all(s == [] for s in steps_of(fleet).values()), steps_of(fleet)  # nothing ran anywhere


def test_a_receipt_of_this_deploy_in_a_shape_never_written_is_unknown_and_runs_no_step_twice(any_make_fleet):
    fleet = any_make_fleet(hosts=3)
    cfg = config(fleet, parallel=3)
    assert cli(cfg, "deploy", "--yes").returncode == 0
    forget_that_hosts_finished(fleet)  # as after a crash between the step and its commit ...
    # ... and the hosts' receipts of this deploy are mangled: a step that is no number, one too big for the
    # shell's arithmetic, a previous revision with an escape sequence in it
    uuid = (Path(fleet.hosts[0].root) / hostside.RECEIPT).read_text().split()[0]
    bad = [f"{uuid} x2 r2306\n", f"{uuid} {'9' * 40} r2306\n", f"{uuid} 2 r23{ESC_TITLE}06\n"]
    for h, text in zip(fleet.hosts, bad, strict=True):
        put(h, hostside.RECEIPT, text.encode())
    res = cli(cfg, "deploy", "--resume", "--yes")
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.count("unknown: ~/.controlroom-step holds a receipt of this deploy in a shape controlroom "
                            "never writes, so whether step 1 ran is unknown and it does not run") == 3, res.stdout
    assert "\x1b" not in res.stdout + res.stderr and "Traceback" not in res.stderr
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)  # no step ran twice
    for h, text in zip(fleet.hosts, bad, strict=True):
        assert (Path(h.root) / hostside.RECEIPT).read_text() == text  # left for a person to look at


def test_what_a_host_prints_back_is_checked_for_shape_and_never_forges_another_answer():
    # a receipt file whose first line is made to look like the "a step still runs" answer, or holds anything else
    forged = f"{hostside.RECEIPT_MARK}{hostside.RUNNING_MARK}1{ESC_TITLE}\n{hostside.LEASE_MARK}\n"
    assert hostside.still_running(forged) is None
    rec = hostside.parse_receipt(forged)
    assert rec is not None and rec.step == -1 and rec.previous is None
    assert rec.problem is not None and "\x1b" not in rec.problem and rec.problem.startswith("unknown: ")
    huge = f"{hostside.RECEIPT_MARK}{'a' * 5000} {'9' * 5000} r2306\n"
    rec = hostside.parse_receipt(huge)  # a step number int() would refuse (over 4300 digits) raises nothing
    assert rec is not None and rec.step == -1 and len(rec.problem or "") < 300
    ok = hostside.parse_receipt(f"{hostside.RECEIPT_MARK}{'f' * 32} 2 r2306\n{hostside.LEASE_MARK}x y z\n")
    assert ok == hostside.Receipt("f" * 32, 2, "r2306")
    assert hostside.parse_receipt(f"{hostside.RECEIPT_MARK}\n{hostside.LEASE_MARK}a b c\n") is None  # none there
    held = hostside.held_by(f"{hostside.HELD_MARK}{'f' * 32} j1 alice\n")
    assert held == f"operation {'f' * 32} of alice (journal j1)"
    assert hostside.held_by(f"{hostside.HELD_MARK}alice\n").startswith("unknown: ~/.controlroom-lease holds no "
                                                                       "lease controlroom wrote (1 field, not 3)")


def test_a_rollback_never_skips_a_host_whose_receipt_is_in_a_shape_never_written(make_fleet):
    fleet = make_fleet(3)
    cfg = config(fleet, parallel=3)
    assert cli(cfg, "deploy", "--yes").returncode == 0
    # the journal lost where the hosts were (a crash in flight), and one host's receipt names no deploy id
    # controlroom writes: before, the rollback read it as "never began a step" and skipped the host, which
    # runs the new code
    kill_server(Path(fleet.dir) / "state")
    forget_that_hosts_finished(fleet, previous=True)
    sick = fleet.hosts[1]
    put(sick, hostside.RECEIPT, f"dep{ESC_TITLE}loy 2 r2306\n".encode())
    res = cli(cfg, "rollback", "--yes")
    assert res.returncode != 0, res.stdout + res.stderr
    assert "never began a step" not in res.stdout, res.stdout
    assert f"{sick.name}" in res.stdout and "is not one controlroom writes" in res.stdout, res.stdout
    assert "\x1b" not in res.stdout + res.stderr and "Traceback" not in res.stderr
    on = revision_on(fleet)
    assert on[sick.name] == "r2307" and {on[h.name] for h in fleet.hosts if h is not sick} == {"r2306"}, on
