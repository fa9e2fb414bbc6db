"""Headless `controlroom deploy`, `rollback`, `log`, `lock` and `unlock`, run as a user runs them: in a subprocess,
against the simulated fleet over real SSH. Assertions read what the operator sees (output, exit status, the deploy
log) and what the hosts now hold."""

from __future__ import annotations

import getpass
import os
import re
import signal
import sqlite3
import subprocess
import sys

import pytest

from controlroom.core import events as ev
from controlroom.demo.fleet import Fleet
from controlroom.journal.journal import Journal
from tests.conftest import run_cli
from tests.unit.engine.test_rollout import BUDGET_PHASES, NEW, OLD, config_with_phases, revision_of
from tests.waiting import wait_for

STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]"


def cr(fleet: Fleet, *args: str, user: str = "mygrant", **kw) -> subprocess.CompletedProcess:
    """`controlroom ARGS` in the fleet's directory, as `user` (the person behind a sudo session)."""
    env = {"SUDO_USER": user, **kw.pop("env", {})}
    return run_cli(*args, cwd=fleet.dir, env=env, **kw)


def revisions(fleet: Fleet) -> dict[str, str]:
    return {h.name: revision_of(fleet, h.name) for h in fleet.hosts}


def log_lines(fleet: Fleet, *args: str) -> list[str]:
    res = cr(fleet, "log", "-n", "200", *args)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def journal_of(fleet: Fleet) -> Journal:
    return Journal.open(fleet.dir / "state")


# --------------------------------------------------------------------------------------------- the whole fleet


@pytest.mark.slow
def test_deploy_to_150_hosts_in_three_phases_ends_ok_and_is_in_the_log(make_fleet):
    fleet = make_fleet(150)
    res = cr(fleet, "deploy", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert re.match(r"^canary \.+ ok 2/2 \(", next(line for line in out if line.startswith("canary ")))
    assert re.match(r"^stage 1 \.+ ok 15/15 \(", next(line for line in out if line.startswith("stage 1 ")))
    assert re.match(r"^stage 2 \.+ ok 133/133 \(", next(line for line in out if line.startswith("stage 2 ")))
    step_lines = [line for line in out if re.match(r"^  step 1/2 mkdir \.+ ok", line)]
    assert len(step_lines) == 3  # a line per step and phase, as the Flickr page has it
    assert re.match(r"^DEPLOY OK r2307: 150 of 150 hosts in [\d.]+ s$", out[-1])
    assert set(revisions(fleet).values()) == {NEW}
    log = log_lines(fleet)
    assert re.match(rf"^{STAMP} \[mygrant\] DEPLOY START r2306 -> r2307 to 150 hosts in 3 phases$", log[-2])
    assert re.match(rf"^{STAMP} \[mygrant\] DEPLOY OK r2307 on 150 of 150 hosts \(", log[-1])


# --------------------------------------------------------------------------------------------- halt and resume


@pytest.mark.slow
def test_halted_deploy_lists_exactly_the_failed_hosts_exits_1_and_resume_after_healing_finishes(make_fleet):
    fleet = make_fleet(12, "web003=slow:0.5,web004=fail,web005=fail")
    cfg = config_with_phases(fleet, BUDGET_PHASES)
    res = cr(fleet, "deploy", "--yes", "-c", str(cfg))
    assert res.returncode == 1, res.stdout + res.stderr
    halted = [line for line in res.stdout.splitlines() if line.startswith("HALTED")]
    assert halted == ["HALTED stage 1: 2 failed, more than max_failed 1: web004, web005"]
    failed_lines = [line.split()[0] for line in res.stdout.splitlines() if "  failed  " in line]
    assert sorted(failed_lines) == ["web004", "web005"]  # web003 was in flight: it finished, it did not fail
    now = revisions(fleet)
    assert [h for h, rev in now.items() if rev == NEW] == ["web001", "web002", "web003"]
    assert "HALT" in log_lines(fleet)[-1]

    for name in ("web004", "web005"):
        fleet.call(fleet.set_fault, name, None)
    res = cr(fleet, "deploy", "--resume", "--yes", "-c", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1].startswith("DEPLOY OK r2307: 12 of 12 hosts")
    assert set(revisions(fleet).values()) == {NEW}
    log = log_lines(fleet)
    assert any(re.search(r"\] \[mygrant\] RETRY r2307 web004 ", line) for line in log)
    j = journal_of(fleet)  # the resume put the host back to pending on the record, not only in memory
    states = [t["state"] for t in j.transitions(j.rollout().id, "web004")]
    assert states[states.index(ev.FAILED):][:2] == [ev.FAILED, ev.PENDING] and states[-1] == ev.DONE
    assert re.search(r"\] \[mygrant\] DEPLOY OK r2307 on 12 of 12 hosts", log[-1])


# --------------------------------------------------------------------------------------------- rollback


def test_rollback_puts_the_previous_revision_back_on_every_done_host_latest_phase_first(fleet):
    assert cr(fleet, "deploy", "--yes").returncode == 0
    assert set(revisions(fleet).values()) == {NEW}
    res = cr(fleet, "rollback", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.match(r"^ROLLBACK DONE r2307: 10 of 10 hosts in [\d.]+ s$", res.stdout.splitlines()[-1])
    assert set(revisions(fleet).values()) == {OLD}
    log = log_lines(fleet)
    assert re.search(r"\] \[mygrant\] ROLLBACK START ", log[-2])
    assert re.search(r"\] \[mygrant\] ROLLBACK OK ", log[-1])
    j = journal_of(fleet)
    order = [t["phase"] for t in j.transitions(j.rollout().id) if t["state"] == ev.ROLLING_BACK]
    assert order == sorted(order, reverse=True) and len(order) == 10
    assert order[0] == 2 and order[-1] == 0  # stage 2 first, the canary last


# --------------------------------------------------------------------------------------------- the lock


@pytest.mark.slow
def test_locked_fleet_refuses_to_deploy_naming_who_when_and_why_until_unlocked(fleet):
    res = cr(fleet, "lock", "db", "migration")
    assert res.returncode == 0, res.stderr
    res = cr(fleet, "deploy", "--yes", user="bob")
    assert res.returncode == 3
    assert re.search(r"NO DEPLOY PLEASE — mygrant, \d{4}-\d\d-\d\d \d\d:\d\d: db migration", res.stderr), (
        res.stderr
    )
    assert len(res.stderr.strip().splitlines()) == 1
    assert set(revisions(fleet).values()) == {OLD}

    res = cr(fleet, "deploy", "--yes", "--force", user="bob")
    assert res.returncode == 2 and "--reason" in res.stderr
    assert set(revisions(fleet).values()) == {OLD}

    assert cr(fleet, "unlock").returncode == 0
    res = cr(fleet, "deploy", "--yes", user="bob")
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(revisions(fleet).values()) == {NEW}
    log = log_lines(fleet)
    assert re.search(r"\] \[mygrant\] LOCK db migration$", log[0])
    assert re.search(r"\] \[mygrant\] UNLOCK db migration$", log[1])
    assert "[bob] DEPLOY OK" in log[-1]


def test_forced_deploy_past_a_lock_ships_and_logs_who_forced_it_and_why(fleet):
    assert cr(fleet, "lock", "db migration").returncode == 0
    res = cr(fleet, "deploy", "--yes", "--force", "--reason", "hotfix", user="bob")
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(revisions(fleet).values()) == {NEW}
    force = [line for line in log_lines(fleet) if "] FORCE " in line]
    assert len(force) == 1
    assert "[bob] FORCE" in force[0] and "mygrant" in force[0] and "db migration" in force[0]
    assert "hotfix" in force[0]


def test_a_forced_deploy_hands_the_persons_lock_back_when_it_ends(fleet):
    assert cr(fleet, "lock", "db migration").returncode == 0
    assert cr(fleet, "deploy", "--yes", "--force", "--reason", "hotfix", user="bob").returncode == 0
    log = log_lines(fleet)
    assert log[0].startswith("NO DEPLOY PLEASE — mygrant, ") and log[0].endswith(": db migration")
    assert any("[bob] LOCK RESTORED mygrant: db migration" in line for line in log)
    again = cr(fleet, "deploy", "--yes", "--revision", "r2308")
    assert again.returncode == 3 and "db migration" in again.stderr


def test_a_headless_halt_keeps_the_fleet_locked_for_that_deploy_until_resumed(make_fleet):
    fleet = make_fleet(12, "web004=fail,web005=fail")
    cfg = str(config_with_phases(fleet, BUDGET_PHASES))
    assert cr(fleet, "deploy", "--yes", "-c", cfg).returncode == 1
    log = log_lines(fleet, "-c", cfg)
    assert re.match(r"^deploy #1 by mygrant, .*: r2307 halted in stage 1 \(web004, web005 failed\)", log[0])
    before = {f"web{i:03d}": revision_of(fleet, f"web{i:03d}") for i in range(1, 13)}
    assert {before[f"web{i:03d}"] for i in range(9, 13)} == {OLD}  # stage 2 never began
    other = cr(fleet, "deploy", "--yes", "--revision", "r2308", "-c", cfg, user="bob")
    assert other.returncode == 3, other.stdout + other.stderr
    assert "r2307 halted in stage 1" in other.stderr and "--force --reason" in other.stderr
    # bob's deploy touched nothing (which of stage 1's hosts ran before the halt depends on the machine's pace)
    assert {h: revision_of(fleet, h) for h in before} == before

    for name in ("web004", "web005"):
        fleet.call(fleet.set_fault, name, None)
    waiting = cr(fleet, "server", "status", "-c", cfg)  # it waits for a decision in the server, not on disk only
    assert re.search(r"deploy of deploy #1 \(halted\)", waiting.stdout), waiting.stdout + waiting.stderr
    res = cr(fleet, "deploy", "--resume", "--yes", "-c", cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resuming deploy #1 of r2307 in the server: retrying web004, web005" in res.stdout, res.stdout
    log = log_lines(fleet, "-c", cfg)
    assert not any("LOCK TAKEN OVER" in line for line in log)  # its own parked lock, not a stale one
    assert not log[0].startswith("deploy #")  # released at the end


def test_a_stale_deploy_lock_is_shown_as_stale_and_taken_over_by_the_next_deploy(fleet):
    # a deploy process that took the lock and died without letting go of it
    ghost = (
        "import sys\nfrom controlroom.core.identity import Actor\nfrom controlroom.journal.journal import Journal\n"
        "j = Journal.open(sys.argv[1])\n"
        "rid = j.new_rollout('r2307', 'r2306', Actor('ghost'), [])\n"
        "j.take_lock(Actor('ghost'), 'deploying r2307', rollout_id=rid)\n"
    )
    subprocess.run([sys.executable, "-c", ghost, str(fleet.dir / "state")], check=True, timeout=30)
    log = log_lines(fleet)
    assert re.match(r"^deploy #1 by ghost since .* — stale: that process is gone$", log[0]), log

    res = cr(fleet, "deploy", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(revisions(fleet).values()) == {NEW}
    log = log_lines(fleet)
    taken = [line for line in log if "LOCK TAKEN OVER" in line]
    assert len(taken) == 1 and "[mygrant]" in taken[0] and "deploy #1 by ghost" in taken[0]
    assert not log[0].startswith("deploy #")  # the lock is gone once the deploy ends
    assert journal_of(fleet).lock() is None


def test_two_deploys_started_at_once_one_runs_and_the_other_exits_3_naming_it(make_fleet):
    fleet = make_fleet(10, "web010=slow:1")  # the deploy lasts seconds: long enough to overlap for sure
    procs = {
        user: subprocess.Popen(
            [sys.executable, "-m", "controlroom.cli", "deploy", "--yes"],
            cwd=fleet.dir,
            env={**os.environ, "SUDO_USER": user},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for user in ("alice", "bob")
    }
    # a third person tries while the winner is under way (the check before anything starts)
    journal = journal_of(fleet)
    lock = wait_for(journal.lock, 30, "one of the deploys to take the lock")
    late = cr(fleet, "deploy", "--yes", user="carol")

    results = {user: (p.wait(timeout=120), *p.communicate()) for user, p in procs.items()}
    assert sorted(rc for rc, _, _ in results.values()) == [0, 3], results
    winner = next(u for u, (rc, _, _) in results.items() if rc == 0)
    loser = next(u for u, (rc, _, _) in results.items() if rc == 3)
    rid = re.search(r"\(deploy #(\d+) by ", results[winner][1]).group(1)
    assert lock.user == winner and str(lock.rollout_id) == rid
    for err in (results[loser][2], late.stderr):
        assert re.fullmatch(
            rf"controlroom: the fleet is locked by deploy #{rid} by {winner} since .*\n", err
        ), err
    assert late.returncode == 3
    assert set(revisions(fleet).values()) == {NEW}
    log = log_lines(fleet)
    assert [line.split("] ", 2)[1] for line in log if "DEPLOY START" in line] == [f"[{winner}"]


# --------------------------------------------------------------------------------------------- asking


def test_deploy_with_no_terminal_and_neither_auto_nor_yes_refuses_with_one_line(fleet):
    res = cr(fleet, "deploy")  # stdin is /dev/null
    assert res.returncode == 2
    assert res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1
    assert "--auto" in res.stderr and "--yes" in res.stderr
    assert set(revisions(fleet).values()) == {OLD}
    assert not any((fleet.dir / "hosts" / h.name / "releases" / NEW).exists() for h in fleet.hosts)


# a canary that waits for the operator, then a stage whose gate cannot be checked: there is no metrics source
GATED_PHASES = """
[[phase]]
name = "canary"
size = 2
auto = false

[[phase]]
name = "stage 1"
size = 2
gate = ["x < 1"]

[[phase]]
name = "stage 2"

[metrics.series.x]
query = "x"
"""


def test_deploy_auto_goes_on_past_an_operator_wait_but_stops_at_a_gate_it_cannot_check(make_fleet):
    fleet = make_fleet(6)
    cfg = str(config_with_phases(fleet, GATED_PHASES))
    res = cr(fleet, "deploy", "--auto", "-c", cfg)
    assert res.returncode == 1, res.stdout + res.stderr
    stopped = [line for line in res.stdout.splitlines() if line.startswith("stopped at a gate")]
    assert len(stopped) == 1 and "before stage 2" in stopped[0] and "x < 1" in stopped[0], res.stdout
    assert "--resume" in stopped[0]
    # past the canary's operator wait on its own; stage 2, behind the gate, never started
    now = revisions(fleet)
    assert [h for h, rev in now.items() if rev == NEW] == ["web001", "web002", "web003", "web004"]
    log = log_lines(fleet, "-c", cfg)
    assert re.match(r"^deploy #1 by mygrant, .*: r2307 waits at gate x < 1 before stage 2", log[0])

    res = cr(fleet, "deploy", "--resume", "--yes", "-c", cfg)  # the gate is checked again: it still cannot be
    assert res.returncode == 1, res.stdout + res.stderr
    assert "UNKNOWN (no metrics source: set [metrics] url)" in res.stdout, res.stdout
    assert [h for h, rev in revisions(fleet).items() if rev == NEW] == ["web001", "web002", "web003", "web004"]


def test_deploy_yes_passes_an_operator_wait_but_never_a_gate_it_cannot_check(make_fleet):
    fleet = make_fleet(6)
    cfg = str(config_with_phases(fleet, GATED_PHASES))
    res = cr(fleet, "deploy", "--yes", "-c", cfg)
    assert res.returncode == 1, res.stdout + res.stderr
    stopped = [line for line in res.stdout.splitlines() if line.startswith("stopped at a gate")]
    assert len(stopped) == 1 and "GATE stage 1: x < 1: UNKNOWN (no metrics source: set [metrics] url)" in stopped[0]
    assert [h for h, rev in revisions(fleet).items() if rev == NEW] == ["web001", "web002", "web003", "web004"]


def test_ctrl_c_in_a_phase_names_exactly_the_hosts_it_stopped_in_flight(make_fleet):
    fleet = make_fleet(4)
    cfg = config_with_phases(fleet, '[[phase]]\nname = "all"\nparallel = 3\n')
    cfg.write_text(cfg.read_text().replace('"mkdir -p releases/', '"sleep 5 && mkdir -p releases/'))
    p = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "deploy", "--yes", "-c", str(cfg)],
                         cwd=fleet.dir, env={**os.environ, "SUDO_USER": "mygrant"}, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: running_hosts(fleet) >= 3, 60, "three hosts to run their first step", proc=p)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, out + err
    assert "3 hosts in flight stopped" in err, err
    stopped = [line for line in log_lines(fleet, "-c", str(cfg)) if "] INTERRUPTED " in line]
    assert len(stopped) == 1 and "3 hosts in flight stopped (web001, web002, web003);" in stopped[0], stopped


def running_hosts(fleet: Fleet) -> int:
    db = fleet.dir / "state" / "journal.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT count(*) FROM host_runs WHERE state = 'running'").fetchone()[0]
    except sqlite3.OperationalError:  # the journal is being created
        return 0
    finally:
        con.close()


# --------------------------------------------------------------------------------------------- the deploy log


def test_a_note_in_the_deploy_log_names_the_person_behind_sudo(fleet):
    res = cr(fleet, "log", "add", "going to lunch", user="mygrant")
    assert res.returncode == 0, res.stderr
    assert re.fullmatch(rf"{STAMP} \[mygrant\] NOTE going to lunch", log_lines(fleet)[-1])


def test_a_note_in_the_deploy_log_names_the_login_name_without_sudo(fleet, monkeypatch):
    monkeypatch.delenv("SUDO_USER", raising=False)
    try:
        me = os.getlogin()
    except OSError:
        me = getpass.getuser()
    res = run_cli("log", "add", "back", "from", "lunch", cwd=fleet.dir)
    assert res.returncode == 0, res.stderr
    lines = run_cli("log", cwd=fleet.dir).stdout.splitlines()
    assert re.fullmatch(rf"{STAMP} \[{re.escape(me)}\] NOTE back from lunch", lines[-1]), lines


# --------------------------------------------------------------------------------------------- quoting


def test_a_revision_with_shell_metacharacters_is_refused_before_any_host_is_touched(fleet):
    before = revisions(fleet)
    for revision in ("r1; touch pwned", "-rf", "r1/../../etc", "$(id)"):
        res = cr(fleet, "deploy", "--yes", "--revision", revision)
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr.startswith("controlroom: ") and res.stderr.count("\n") == 1, res.stderr
        assert "Traceback" not in res.stderr
    assert not list(fleet.dir.rglob("pwned"))
    assert revisions(fleet) == before
    assert not (fleet.dir / "state" / "journal.db").exists() or "DEPLOY START" not in cr(fleet, "log").stdout


def test_the_journal_is_created_for_the_server_alone_whatever_the_umask(fleet):
    old = os.umask(0o022)
    try:
        assert cr(fleet, "log", "add", "hello").returncode == 0
    finally:
        os.umask(old)
    state = fleet.dir / "state"
    assert state.stat().st_mode & 0o777 == 0o710  # the team's group passes through to the socket, no further
    for name in ("journal.db", "journal.db-wal"):
        if (state / name).exists():
            assert (state / name).stat().st_mode & 0o777 == 0o600, name


def test_a_log_entry_never_names_the_address_a_client_claims_in_its_environment(fleet):
    res = cr(fleet, "log", "add", "from the bastion", env={"SSH_CLIENT": "10.1.2.3 51234 22"})
    assert res.returncode == 0
    # the origin is the SSH connection the server can see (tests/unit/server/test_server_doors.py, real sshd), not this
    assert "10.1.2.3" not in log_lines(fleet)[-1] and "NOTE from the bastion" in log_lines(fleet)[-1]


# --------------------------------------------------------------------------------------------- warm connects


def _forget_host_key(fleet: Fleet, name: str) -> None:
    """The host's key goes from the fleet's known_hosts: its key is unknown to the control room."""
    lines = fleet.known_hosts.read_text().splitlines()
    kept = [line for line in lines if not line.startswith(f"[{name}]:{fleet.by_name[name].port},")]
    assert len(kept) == len(lines) - 1
    fleet.known_hosts.write_text("".join(f"{line}\n" for line in kept))


def test_a_host_of_unknown_key_fails_the_deploy_in_the_same_words_whether_its_server_connected_at_once_or_not(
        make_fleet):
    cold, plain = make_fleet(4, name="cold"), make_fleet(4, name="plain")
    for f in (cold, plain):
        _forget_host_key(f, "web002")
    # plain: a server that was up before the deploy (`controlroom serve`, no connection until the deploy asks)
    serving = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "serve", "-c", str(plain.config_path)],
                               cwd=plain.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (plain.dir / "state" / "control.sock").exists(), 60, "the plain server to listen")
        assert plain.connections == 0
        through_plain = cr(plain, "deploy", "--yes")
        # cold: the deploy starts its server, which opens the fleet's connections as soon as it listens
        started_cold = cr(cold, "deploy", "--yes")
        pid = int((cold.dir / "state" / "server.lock").read_text().split()[0])
        assert "--warm" in open(f"/proc/{pid}/cmdline").read().split("\0")
    finally:
        cr(plain, "server", "stop", "--force")
        serving.wait(60)
    for res in (through_plain, started_cold):
        assert res.returncode == 1, res.stdout + res.stderr
    said = [[line for line in res.stdout.splitlines() if "web002" in line] for res in (through_plain, started_cold)]
    assert said[0] == said[1], said
    assert said[0][0] == ("  web002  failed  hostkey: host key not verifiable (unknown or changed): Host key is not "
                          "trusted for host 127.0.0.1 (connecting)")
    for f in (cold, plain):
        assert revision_of(f, "web002") == OLD and revision_of(f, "web001") == NEW


# --------------------------------------------------------------------------------------------- detaching


def _deploy_in_background(fleet: Fleet, **kw) -> subprocess.Popen:
    cfg = config_with_phases(fleet, '[[phase]]\nname = "all"\nparallel = 2\n')
    cfg.write_text(cfg.read_text().replace('"mkdir -p releases/', '"sleep 0.5 && mkdir -p releases/'))
    return subprocess.Popen([sys.executable, "-m", "controlroom.cli", "deploy", "--yes", "-c", str(cfg)],
                            cwd=fleet.dir, env={**os.environ, "SUDO_USER": "mygrant"}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _wait_deployed(fleet: Fleet) -> None:
    wait_for(lambda: set(revisions(fleet).values()) == {NEW} and "DEPLOY OK" in log_lines(fleet)[-1], 90,
             f"every host on {NEW} and DEPLOY OK", detail=lambda: revisions(fleet), every=0.1)


def test_a_deploy_whose_terminal_hangs_up_goes_on_in_the_server_to_the_end(make_fleet):
    fleet = make_fleet(6)
    p = _deploy_in_background(fleet, text=True)
    wait_for(lambda: running_hosts(fleet) >= 1, 60, "a host to run its first step", proc=p)
    p.send_signal(signal.SIGHUP)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "Traceback" not in err, out + err
    _wait_deployed(fleet)  # nobody typed anything: the server finished it
    log = log_lines(fleet)
    assert not any("LOCK TAKEN OVER" in line or "INTERRUPTED" in line for line in log), log
    assert "[mygrant] DEPLOY OK r2307 on 6 of 6 hosts" in log[-1]


def test_a_deploy_whose_output_pipe_closes_goes_on_in_the_server_to_the_end(make_fleet):
    fleet = make_fleet(6)
    p = _deploy_in_background(fleet)
    first = p.stdout.readline()  # the reader takes one line, then goes away (`controlroom deploy | head -1`)
    assert first.startswith(b"deploying r2306 -> r2307"), first
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(30) == 0 and "Traceback" not in err, err
    _wait_deployed(fleet)
    assert not any("INTERRUPTED" in line for line in log_lines(fleet))
