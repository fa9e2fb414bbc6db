"""A dropped session never decides, and every wait is answerable from where you are.

Each headless command runs on a real terminal (tests/terminal.py) that the test closes at the command's question,
as a dropped SSH session on the bastion does: the deploy waits in the server, parked, the fleet locked for it (no
ABORT, the next phase's hosts untouched), and `deploy --resume` or `deploy --follow` carries it on. Only a key the
person typed answers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from controlroom.demo.fleet import Fleet
from tests.cli.test_deploy_cli import GATED_PHASES, cr, log_lines, revisions
from tests.conftest import REPO
from tests.terminal import Terminal
from tests.unit.engine.test_rollout import BUDGET_PHASES, NEW, OLD, config_with_phases


def on(fleet: Fleet, rev: str) -> list[str]:
    return sorted(h for h, r in revisions(fleet).items() if r == rev)


def assert_parked(fleet: Fleet, cfg: str, waits: str) -> None:
    """The deploy is still there, waiting in the server with the fleet locked for it; nothing aborted it."""
    log = log_lines(fleet, "-c", cfg)
    assert re.match(rf"^deploy #1 by mygrant, .*: r2307 {waits}", log[0]), log
    assert not any("ABORT" in line or "DEPLOY ABORTED" in line for line in log), log
    status = cr(fleet, "server", "status", "-c", cfg)
    assert "deploy of deploy #1" in status.stdout, status.stdout + status.stderr


def hang_up_at(term: Terminal, question: bytes) -> int:
    try:
        term.read_until(question, 90)
        return term.hang_up()
    finally:
        term.close()


# --------------------------------------------------------------------------------------------- a closed terminal


def test_a_terminal_closed_at_the_phase_question_parks_the_deploy_and_resume_carries_it_on(make_fleet):
    fleet = make_fleet(10)  # canary 2 then a wait for the operator, stage 1 of 1, stage 2 of 7
    cfg = str(fleet.config_path)
    term = Terminal(cfg, "deploy", cwd=fleet.dir)
    term.read_until(b"[y/N]", 60)
    term.type(b"y\n")
    assert hang_up_at(term, b"Start stage 1? [y]es") == 0
    assert on(fleet, NEW) == ["web001", "web002"]  # stage 1 untouched
    assert_parked(fleet, cfg, "waits for the operator before stage 1")

    res = cr(fleet, "deploy", "--resume", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "DEPLOY OK r2307: 10 of 10 hosts" in res.stdout, res.stdout
    assert on(fleet, NEW) == sorted(revisions(fleet))


@pytest.mark.slow
def test_a_terminal_closed_at_a_failed_gate_of_deploy_and_of_resume_never_aborts(make_fleet):
    fleet = make_fleet(6)
    cfg = str(config_with_phases(fleet, GATED_PHASES))  # stage 1's gate cannot be checked: it does not hold
    term = Terminal(cfg, "deploy", "--yes", cwd=fleet.dir)
    assert hang_up_at(term, b"[c]heck again") == 0
    assert on(fleet, NEW) == ["web001", "web002", "web003", "web004"]
    assert_parked(fleet, cfg, "waits at gate x < 1 before stage 2")

    again = Terminal(cfg, "deploy", "--resume", cwd=fleet.dir)
    seen = hang_up_at(again, b"[c]heck again")
    assert seen == 0
    assert on(fleet, OLD) == ["web005", "web006"]
    assert_parked(fleet, cfg, "waits at gate x < 1 before stage 2")

    res = cr(fleet, "deploy", "--resume", "--yes", "--override-gate", "x is not wired up yet", "-c", cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "overriding the gate before stage 2 (--override-gate): x is not wired up yet" in res.stdout, res.stdout
    assert on(fleet, OLD) == []


def test_a_follower_whose_terminal_closes_at_the_gate_question_leaves_the_deploy_parked(make_fleet):
    fleet = make_fleet(6)
    cfg = str(config_with_phases(fleet, GATED_PHASES))
    assert cr(fleet, "deploy", "--auto", "-c", cfg).returncode == 1  # parked at stage 1's gate
    term = Terminal(cfg, "deploy", "--follow", cwd=fleet.dir)
    assert hang_up_at(term, b"[c]heck again") == 0
    assert on(fleet, OLD) == ["web005", "web006"]
    assert_parked(fleet, cfg, "waits at gate x < 1 before stage 2")


def test_a_terminal_closed_at_the_halt_question_keeps_the_halt_for_a_resume(make_fleet):
    fleet = make_fleet(12, "web004=fail,web005=fail")
    cfg = str(config_with_phases(fleet, BUDGET_PHASES))
    term = Terminal(cfg, "deploy", "--yes", cwd=fleet.dir)
    assert hang_up_at(term, b"[r]etry failed hosts") == 0
    assert_parked(fleet, cfg, r"halted in stage 1 \(web004, web005 failed\)")
    assert on(fleet, OLD)[-6:] == [f"web{i:03d}" for i in range(7, 13)]  # stage 2 untouched


def test_a_typed_end_of_input_at_the_phase_question_is_no_answer_it_detaches(make_fleet):
    fleet = make_fleet(10)
    cfg = str(fleet.config_path)
    term = Terminal(cfg, "deploy", cwd=fleet.dir)
    try:
        term.read_until(b"[y/N]", 60)
        term.type(b"y\n")
        term.read_until(b"Start stage 1? [y]es", 60)
        term.type(b"\x04")  # Ctrl+D: the end of input, not an answer
        rc = term.proc.wait(60)
    finally:
        seen = term.close()
    assert rc == 0 and b"Traceback" not in seen, seen
    assert on(fleet, NEW) == ["web001", "web002"]
    assert_parked(fleet, cfg, "waits for the operator before stage 1")


@pytest.mark.parametrize("command, question", [
    (("deploy",), b"[y/N]"),
    (("rollback",), b"[y/N]"),
    (("flag", "beehive", "off"), b"Go? [y/N]"),
])
def test_a_terminal_closed_at_a_confirm_changes_nothing(make_fleet, command, question):
    fleet = make_fleet(4)
    cfg = str(fleet.config_path)
    if command[0] == "rollback":
        assert cr(fleet, "deploy", "--yes").returncode == 0
    before = revisions(fleet)
    flags_before = cr(fleet, "flags").stdout
    term = Terminal(cfg, *command, cwd=fleet.dir)
    rc = hang_up_at(term, question)
    assert rc != 0
    assert revisions(fleet) == before
    log = "\n".join(log_lines(fleet))
    assert "DEPLOY START" not in log if command[0] == "deploy" else "ROLLBACK START" not in log, log
    assert cr(fleet, "flags").stdout == flags_before


def test_a_terminal_closed_at_the_unlock_question_keeps_the_lock(make_fleet):
    fleet = make_fleet(4)
    assert cr(fleet, "lock", "db", "migration", user="alice").returncode == 0
    term = Terminal(str(fleet.config_path), "unlock", user="bob", cwd=fleet.dir)
    assert hang_up_at(term, b"Unlock anyway? [y/N]") != 0
    assert log_lines(fleet)[0].startswith("NO DEPLOY PLEASE — alice, "), log_lines(fleet)


# --------------------------------------------------------------------------------------------- every wait answerable


def test_detach_with_nobody_to_answer_at_the_phase_boundaries_is_refused_in_one_line(fleet):
    res = cr(fleet, "deploy", "--detach")
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and "--auto" in res.stderr and "--yes" in res.stderr, res.stderr
    assert "DEPLOY START" not in cr(fleet, "log").stdout
    assert set(revisions(fleet).values()) == {OLD}


@pytest.mark.slow
def test_follow_says_what_a_parked_deploy_waits_for_and_who_answers_and_answers_it_on_a_terminal(make_fleet):
    fleet = make_fleet(6)
    cfg = str(config_with_phases(fleet, GATED_PHASES))
    assert cr(fleet, "deploy", "--auto", "-c", cfg).returncode == 1  # parked at stage 1's gate

    watcher = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "deploy", "--follow", "-c", cfg], cwd=REPO,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [watcher.stdout.readline() for _ in range(3)]
        watcher.send_signal(signal.SIGINT)  # a watcher with no terminal only detaches
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0 and "detached" in err, lines + [out, err]
    assert lines[0].startswith("deploy #1 of r2307: waiting (4 done, 2 pending)"), lines
    assert lines[1].startswith("  waiting: gate x < 1: GATE stage 1: x < 1: UNKNOWN"), lines
    assert "may answer: `controlroom deploy --follow` on a terminal" in lines[2], lines
    assert "--override-gate REASON" in lines[2], lines
    assert on(fleet, OLD) == ["web005", "web006"]

    term = Terminal(cfg, "deploy", "--follow", cwd=fleet.dir)
    try:
        term.read_until(b"[c]heck again, [o]verride", 60)
        term.type(b"o\n")
        term.read_until(b"empty: no)", 30)
        term.type(b"\n")  # no reason: nothing passes, the question comes again
        term.seen = b""
        term.read_until(b"[c]heck again, [o]verride", 30)
        assert on(fleet, OLD) == ["web005", "web006"]
        term.type(b"o\n")
        term.read_until(b"empty: no)", 30)
        term.type(b"x is not wired up yet\n")
        term.read_until(b"DEPLOY OK r2307", 90)
        rc = term.proc.wait(30)
    finally:
        seen = term.close()
    assert rc == 0 and b"Traceback" not in seen, seen
    assert on(fleet, OLD) == []


@pytest.mark.slow
def test_at_the_canarys_failed_gate_the_kill_switch_answer_flips_it_checks_again_and_the_deploy_goes_on(
        tmp_path, monkeypatch):
    """The demo's story on a terminal, headless: errors_5xx fails the canary's gate with new_search on; [k] turns
    the kill switch off (asked again), the gate is checked again while the metrics turn, holds, and --yes goes on."""
    from controlroom.cli.demo import start_fleet, stop_fleet
    from tests.servers import stop_servers

    monkeypatch.setenv("CONTROLROOM_DEMO_BAKE", "4s")  # r2307 serves long enough for its error rate to show (1 s: under load it read 5, at the limit)
    directory = tmp_path / "fleet"
    proc = start_fleet(directory, 4, None, deadline=60)
    cfg = str(directory / "controlroom.toml")
    try:
        assert cr_in(cfg, "stage").returncode == 0
        term = Terminal(cfg, "deploy", "--yes")
        try:
            term.read_until(b"[k]ill switch new_search, [c]heck again", 90)
            term.type(b"k\n")
            term.read_until(b"Turn the kill switch new_search OFF on 4 hosts (now on)? [y/N]", 30)
            term.type(b"y\n")
            term.read_until(b"new_search on -> off on 4/4 hosts", 60)
            term.read_until(b"DEPLOY OK", 120)
            rc = term.proc.wait(30)
        finally:
            seen = term.close()
        assert rc == 0 and b"Traceback" not in seen, seen
        assert b"errors_5xx" in seen and b"PASSED" in seen.upper(), seen
        log = cr_in(cfg, "log").stdout
        assert "[mygrant] FLAG new_search on -> off (errors_5xx < 5 failed before stage 1)" in log, log
    finally:
        stop_servers(tmp_path)
        stop_fleet(proc)


def cr_in(cfg: str, *args: str) -> subprocess.CompletedProcess:
    from tests.conftest import run_cli

    return run_cli(*args, "--config", cfg, env={"SUDO_USER": "mygrant"})
