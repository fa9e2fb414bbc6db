"""Exactly once, whoever asks: two processes, two journals, kill -9 and Ctrl+C at any moment. No step runs twice, no
host is forgotten, a rollback reaches every host that may run the new code. Host-dependent stories run on the
simulated fleet and on real OpenSSH sshd (the `any_make_fleet` fixture); the core stories (two at once, kill -9,
resume, rollback) on the SQLite journal and on a PostgreSQL one (the `journal` fixture), and two bastions sharing
one PostgreSQL journal deploy exactly once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlroom.core.identity import Actor
from tests.conftest import REPO, run_cli
from tests.servers import kill_server, server_pid
from tests.terminal import Terminal
from tests.waiting import commands_in, never_appears, until, wait_for

STEPS = '''steps = [
    "{first} && echo 1 >> steps.log",
    "echo 2 >> steps.log && echo {{revision}} > REVISION",
]
'''
ONE_PHASE = '''
[[phase]]
name = "all"
parallel = {parallel}
'''


# a first step that holds until the test lets it go (a file named `go` in the host's directory)
HOLD = "until [ -e go ]; do sleep 0.05; done"


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(request) -> str | None:
    """The journal of a test that runs on both: None (STATE_DIR/journal.db) or a fresh PostgreSQL database's URL.
    On PostgreSQL with the simulated fleet only: what real sshd adds is the hosts', which the journal does not change
    (and the suite stays short)."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")  # never with real sshd: tests/conftest.py does not collect that pair


def config(fleet, *, sleep: float = 0.0, parallel: int = 10, state: str = "state", health: str | None = None,
           name: str = "once.toml", hold: bool = False, journal: str | None = None) -> str:
    """The fleet's config with counting steps, one phase, and the given state directory (and [state] journal, when
    given); with hold, the first step waits for the test's `go` file on its host (step_timeout 120 s)."""
    text = fleet.config_path.read_text()
    first = HOLD if hold else f"sleep {sleep}"
    text = re.sub(r"steps = \[.*?\]\n", STEPS.format(first=first), text, count=1, flags=re.S)
    if hold:
        text = re.sub(r"step_timeout = \d+", "step_timeout = 120", text, count=1)
    if health is not None:
        text = re.sub(r'health = ".*"\n', f"health = {health!r}\n".replace("'", '"'), text, count=1)
    text = text[: text.index("[[phase]]")] + ONE_PHASE.format(parallel=parallel) + f'\n[state]\ndir = "{state}"\n'
    if journal:
        text += f'journal = "{journal}"\n'
    path = Path(fleet.dir) / name
    path.write_text(text)
    return str(path)


def cli(cfg: str, *args: str, user: str = "mygrant", **kw) -> subprocess.CompletedProcess:
    return run_cli(*args, "--config", cfg, env={"SUDO_USER": user}, **kw)


def spawn(cfg: str, *args: str, user: str = "mygrant") -> subprocess.Popen:
    env = dict(os.environ, SUDO_USER=user)
    return subprocess.Popen([sys.executable, "-m", "controlroom.cli", *args, "--config", cfg], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def steps_of(fleet) -> dict[str, list[str]]:
    out = {}
    for h in fleet.hosts:
        log = Path(h.root) / "steps.log"
        out[h.name] = log.read_text().split() if log.exists() else []
    return out


def revision_on(fleet) -> dict[str, str]:
    return {h.name: (Path(h.root) / "REVISION").read_text().strip() for h in fleet.hosts}


def db_rows(state: Path, sql: str, *params, url: str | None = None) -> list[tuple]:
    """The rows of a query of the journal of state (of the PostgreSQL journal at url, when given), [] while it
    has none."""
    if url:
        import psycopg

        try:
            with psycopg.connect(url, autocommit=True) as con:
                return con.execute(sql.replace("?", "%s"), params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    db = state / "journal.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def host_logs(fleet) -> str:
    """What real sshd said (for an assertion message); nothing for the simulated fleet."""
    if not hasattr(fleet, "sshd_log"):
        return ""
    return "\n".join(f"--- {h.name}\n{fleet.sshd_log(h.name)[-1500:]}" for h in fleet.hosts)


def running(state: Path, url: str | None = None) -> int:
    return sum(n for s, n in db_rows(state, "SELECT state, count(*) FROM host_runs GROUP BY state", url=url)
               if s in ("running", "connecting", "checking"))


def forget_that_hosts_finished(fleet, *, previous: bool = False) -> None:
    """The journal forgets that the hosts finished (as after a crash between a step and its commit): every host
    back in step 1, the deploy running; with previous, their previous revisions too."""
    db = sqlite3.connect(Path(fleet.dir) / "state" / "journal.db")
    with db:
        db.execute("UPDATE host_runs SET state = 'running', step = 1, steps_done = 0"
                   + (", previous = NULL" if previous else ""))
        db.execute("UPDATE rollouts SET status = 'running'")
    db.close()


# ------------------------------------------------------------------------------------------------ two processes


def test_two_resumes_started_together_one_runs_the_other_exits_3_and_no_step_runs_twice(any_make_fleet, journal):
    fleet = any_make_fleet(hosts=4)
    cfg = config(fleet, sleep=0.5, parallel=2, journal=journal)
    state = Path(fleet.dir) / "state"
    first = spawn(cfg, "deploy", "--yes")
    wait_for(lambda: running(state, journal) > 0, 60, "the deploy to be running", first)
    kill_server(state)  # the process that runs the deploy dies: its follower says so and ends
    first.wait(30)

    both = [spawn(cfg, "deploy", "--resume", "--yes", user=u) for u in ("alice", "bob")]
    results = [(p.wait(120), *p.communicate()) for p in both]
    codes = sorted(rc for rc, _, _ in results)
    if codes != [0, 3]:
        pytest.fail(f"{results}\n{host_logs(fleet)}")
    loser = next(err for rc, _, err in results if rc == 3)
    assert re.fullmatch(r"controlroom: the fleet is locked by deploy #1 by (alice|bob) .*\n", loser), loser
    assert set(revision_on(fleet).values()) == {"r2307"}
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)


def test_two_rollbacks_started_together_one_runs_the_other_exits_3(make_fleet, journal):
    fleet = make_fleet(6)
    cfg = config(fleet, parallel=6, journal=journal)
    assert cli(cfg, "deploy", "--yes").returncode == 0
    text = Path(cfg).read_text().replace('rollback = ["', 'rollback = ["sleep 0.5; echo rb >> rollback.log; ')
    Path(cfg).write_text(text)
    both = [spawn(cfg, "rollback", "--yes", user=u) for u in ("alice", "bob")]
    results = [(p.wait(120), *p.communicate()) for p in both]
    assert sorted(rc for rc, _, _ in results) == [0, 3], results
    assert set(revision_on(fleet).values()) == {"r2306"}
    for h in fleet.hosts:
        assert (Path(h.root) / "rollback.log").read_text().split() == ["rb"], h.name


# ------------------------------------------------------------------------------------------------ two journals


def test_a_second_journal_cannot_deploy_while_the_first_one_runs_and_names_the_holder(any_make_fleet):
    fleet = any_make_fleet(hosts=3)
    cfg_a = config(fleet, hold=True, parallel=3, state="state-a", name="a.toml")
    cfg_b = config(fleet, sleep=0, parallel=3, state="state-b", name="b.toml")
    a = spawn(cfg_a, "deploy", "--yes", user="alice")
    # alice's deploy holds every host (its lease is there) before bob starts, and its first step waits on each host
    # until bob has had his answer, however slow the machine
    wait_for(lambda: all((Path(h.root) / ".controlroom-lease").exists() for h in fleet.hosts), 60, "alice's leases", a)
    b = cli(cfg_b, "deploy", "--yes", "--revision", "r2308", user="bob")
    for h in fleet.hosts:
        (Path(h.root) / "go").write_text("")
    assert a.wait(120) == 0, (a.communicate(), db_rows(Path(fleet.dir) / "state-a", "SELECT host, reason FROM host_runs"))
    assert b.returncode == 3, b.stdout + b.stderr
    assert "held by operation" in b.stderr and "alice" in b.stderr, b.stderr
    assert set(revision_on(fleet).values()) == {"r2307"}  # bob changed nothing anywhere
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)


def test_a_second_journal_never_trusts_the_first_ones_receipts(any_make_fleet):
    fleet = any_make_fleet(hosts=3)
    cfg_a = config(fleet, state="state-a", name="a.toml")
    cfg_b = config(fleet, state="state-b", name="b.toml")
    assert cli(cfg_a, "deploy", "--yes").returncode == 0
    # both journals number their first deploy #1; the hosts hold journal A's receipts for it
    res = cli(cfg_b, "deploy", "--yes", "--revision", "r2308")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "DEPLOY OK r2308: 3 of 3 hosts" in res.stdout
    assert set(revision_on(fleet).values()) == {"r2308"}
    assert all(s == ["1", "2", "1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)


def test_two_deploys_started_at_once_on_two_bastions_sharing_a_journal_one_runs_the_other_exits_3(make_fleet,
                                                                                                  pg_url):
    fleet = make_fleet(4)
    # two bastions: two state directories (each its own server), one PostgreSQL journal
    cfgs = [config(fleet, hold=True, parallel=4, state=f"state-{b}", name=f"{b}.toml", journal=pg_url)
            for b in ("a", "b")]
    both = [spawn(cfg, "deploy", "--yes", user=u) for cfg, u in zip(cfgs, ("alice", "bob"), strict=True)]
    # the winner's first step holds on every host until the other has had its answer, however loaded the machine
    # (with a timed step, the second could start after the first was done, and both deploy, one after the other)
    wait_for(lambda: any(p.poll() is not None for p in both), 120, "one of the two deploys to have its answer")
    for h in fleet.hosts:
        (Path(h.root) / "go").write_text("")
    results = [(p.wait(120), *p.communicate()) for p in both]
    assert sorted(rc for rc, _, _ in results) == [0, 3], results
    loser = next(err for rc, _, err in results if rc == 3)
    # the holder and its bastion, from the journal's lock row; or, when the winner was done before the journal
    # named it (a loaded machine), from the PostgreSQL session that held the fleet lock
    host = re.escape(socket.gethostname())
    assert re.fullmatch(rf"controlroom: the fleet is locked by (deploy #1 by (alice|bob) since .* \(pid \d+ on "
                        rf"{host}\)(; .*)?|pid \d+ on {host}: (alice|bob)'s deploy)\n", loser), loser
    assert db_rows(Path(fleet.dir), "SELECT id, status FROM rollouts", url=pg_url) == [(1, "done")]
    assert set(revision_on(fleet).values()) == {"r2307"}
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)


@pytest.mark.slow
def test_a_deploy_whose_bastion_was_killed_is_taken_over_by_another_bastion_and_each_step_runs_once(make_fleet,
                                                                                                   pg_url):
    fleet = make_fleet(4)
    cfg_a, cfg_b = (config(fleet, sleep=0.5, parallel=2, state=f"state-{b}", name=f"{b}.toml", journal=pg_url)
                    for b in ("a", "b"))
    first = spawn(cfg_a, "deploy", "--yes", user="alice")
    wait_for(lambda: running(Path(fleet.dir), pg_url) > 0, 60, "the deploy to be running on bastion a", first)
    kill_server(Path(fleet.dir) / "state-a")  # bastion a dies in the middle of the deploy
    first.wait(30)

    res = cli(cfg_b, "deploy", "--resume", "--yes", user="bob")
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(revision_on(fleet).values()) == {"r2307"}
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)
    log = cli(cfg_b, "log").stdout
    assert re.search(rf"\[bob\] TAKEN OVER from {re.escape(socket.gethostname())} by bob: deploy #1 of alice "
                     rf"\(pid \d+ there is gone\)", log), log
    assert cli(cfg_a, "log").stdout == log  # one record, whichever bastion reads it

    back = cli(cfg_a, "deploy", "--resume", "--yes", user="alice")  # bastion a, back, finds nothing left to do
    assert back.returncode == 1 and "deploy #1 of r2307 already ended (done); nothing to resume" in back.stderr, (
        back.stdout + back.stderr)
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)


def test_a_deploy_refused_on_a_second_bastion_says_which_bastion_runs_it_and_where_to_follow_it(make_fleet, pg_url):
    fleet = make_fleet(2)
    cfg_a, cfg_b = (config(fleet, hold=True, parallel=2, state=f"state-{b}", name=f"{b}.toml", journal=pg_url)
                    for b in ("a", "b"))
    first = spawn(cfg_a, "deploy", "--yes", user="alice")
    wait_for(lambda: running(Path(fleet.dir), pg_url) == 2, 60, "the deploy to be running on bastion a", first)
    try:
        second = cli(cfg_b, "deploy", "--yes", user="bob")
    finally:
        for h in fleet.hosts:
            (Path(h.root) / "go").write_text("")
    assert first.wait(120) == 0, first.communicate()
    host = re.escape(socket.gethostname())
    assert second.returncode == 3, second.stdout + second.stderr
    # not "`deploy --follow` attaches to it": bastion b's server does not drive it, bastion a's does
    assert re.search(rf"; deploy #1 runs on {host} \(by alice\); `controlroom deploy --follow` on {host} attaches to "
                     r"it\n", second.stderr), second.stderr


def end_the_sessions_of(url: str, like: str) -> int:
    """pg_terminate_backend every session of the journal whose application name matches ``like`` (what a bastion
    cut off from the database comes to once the keepalives give up on it); how many there were."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        return len(con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE"
                               " %s AND pid != pg_backend_pid()", (like,)).fetchall())


def in_transaction(url: str) -> list[str]:
    """The states of controlroom's journal sessions that are inside a transaction or a statement (not idle)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        return [r[0] for r in con.execute("SELECT state FROM pg_stat_activity WHERE application_name LIKE"
                                          " 'controlroom%' AND pid != pg_backend_pid() AND state != 'idle'")]


def stall_between_transactions(pid: int, url: str) -> None:
    """SIGSTOP the server at a moment when none of its journal sessions is inside a transaction: this is a bastion
    that stalls between two writes. One stopped inside a write would keep the journal's write lock until the
    database ends its session (the keepalives of a real partition), which is another story."""
    deadline = time.monotonic() + 30
    while True:
        os.kill(pid, signal.SIGSTOP)
        if not in_transaction(url):
            return
        os.kill(pid, signal.SIGCONT)  # inside a write: let it finish, and stop it again once it has
        assert time.monotonic() < deadline, "the server never stood between two writes in 30 s"
        wait_for(lambda: not in_transaction(url), 10, "the server's journal sessions to be idle")


def test_a_bastion_whose_fleet_lock_session_ended_stops_driving_and_the_taker_runs_each_step_once(make_fleet, pg_url):
    fleet = make_fleet(4)
    cfg_a, cfg_b = (config(fleet, hold=True, parallel=4, state=f"state-{b}", name=f"{b}.toml", journal=pg_url)
                    for b in ("a", "b"))
    first = spawn(cfg_a, "deploy", "--yes", user="alice")
    # every host is in its first step, which waits for the test's `go`: bastion a is alive and driving
    wait_for(lambda: running(Path(fleet.dir), pg_url) == 4, 60, "the deploy to be running on bastion a", first)
    # bastion a's network to the database is gone: its lock's session ends (the process lives on)
    assert end_the_sessions_of(pg_url, "controlroom: pid % alice's deploy") == 1
    rc, out, err = first.wait(60), *first.communicate()
    assert rc == 1 and "this bastion lost deploy #1" in err and "acts on nothing more" in err, (rc, out, err)

    for h in fleet.hosts:  # the steps bastion a had started may end now; bastion b takes the deploy over
        (Path(h.root) / "go").write_text("")
    res = cli(cfg_b, "deploy", "--resume", "--yes", user="bob")
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(revision_on(fleet).values()) == {"r2307"}
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)
    log = cli(cfg_b, "log").stdout
    assert re.search(r"\[bob\] TAKEN OVER from .* by bob: deploy #1 of alice", log), log
    assert db_rows(Path(fleet.dir), "SELECT value FROM meta WHERE key = 'epoch:1'", url=pg_url) == [("2",)]


def test_a_bastion_stopped_while_another_took_its_deploy_over_records_nothing_and_runs_nothing_when_it_wakes(
        make_fleet, pg_url):
    fleet = make_fleet(4)
    cfg_a, cfg_b = (config(fleet, hold=True, parallel=4, state=f"state-{b}", name=f"{b}.toml", journal=pg_url)
                    for b in ("a", "b"))
    first = spawn(cfg_a, "deploy", "--yes", user="alice")
    wait_for(lambda: running(Path(fleet.dir), pg_url) == 4, 60, "the deploy to be running on bastion a", first)
    server_a = server_pid(Path(fleet.dir) / "state-a")
    stall_between_transactions(server_a, pg_url)  # bastion a stalls (a partition); its steps go on on the hosts
    try:
        assert end_the_sessions_of(pg_url, "controlroom: pid % alice's deploy") == 1
        for h in fleet.hosts:
            (Path(h.root) / "go").write_text("")
        res = cli(cfg_b, "deploy", "--resume", "--yes", user="bob")  # bastion b takes it over and finishes it
        assert res.returncode == 0, res.stdout + res.stderr
        finished = db_rows(Path(fleet.dir), "SELECT max(id) FROM events WHERE rollout_id = 1", url=pg_url)
    finally:
        os.kill(server_a, signal.SIGCONT)  # bastion a wakes with its hosts' answers to step 1 waiting for it
    rc, out, err = first.wait(60), *first.communicate()
    assert rc == 1 and "this bastion lost deploy #1" in err, (rc, out, err)
    # bastion a recorded nothing after the take-over and ran nothing more: each step ran once, on b's record
    assert db_rows(Path(fleet.dir), "SELECT max(id) FROM events WHERE rollout_id = 1", url=pg_url) == finished
    assert db_rows(Path(fleet.dir), "SELECT status FROM rollouts", url=pg_url) == [("done",)]
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)
    assert set(revision_on(fleet).values()) == {"r2307"}


# ------------------------------------------------------------------------------------------------ receipts


def test_a_receipt_survives_a_step_that_changes_directory_and_ends_in_exit_0(any_make_fleet):
    fleet = any_make_fleet(hosts=2)
    cfg = config(fleet, parallel=2)
    text = Path(cfg).read_text().replace('"sleep 0.0 && echo 1 >> steps.log"',
                                         '"echo 1 >> steps.log && cd / && exit 0"')
    Path(cfg).write_text(text)
    res = cli(cfg, "deploy", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    for h in fleet.hosts:
        receipt = (Path(h.root) / ".controlroom-step").read_text().split()
        assert receipt[1:] == ["2", "r2306"], receipt  # step 2 of this deploy, previous revision r2306
        assert len(receipt[0]) == 32  # the deploy's uuid, not a journal's local number


def test_a_resume_does_not_rerun_a_step_the_hosts_receipt_has_though_the_journal_lost_it(make_fleet):
    fleet = make_fleet(3)
    cfg = config(fleet, parallel=3)
    assert cli(cfg, "deploy", "--yes").returncode == 0
    forget_that_hosts_finished(fleet)
    res = cli(cfg, "deploy", "--resume", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)


# ------------------------------------------------------------------------------------------------ rollback


def test_rollback_reaches_the_host_whose_health_check_failed(any_make_fleet):
    fleet = any_make_fleet(hosts=3)
    cfg = config(fleet, parallel=3, health="test ! -e unhealthy")
    sick = fleet.hosts[1]
    (Path(sick.root) / "unhealthy").write_text("x")
    os.chmod(Path(sick.root) / "unhealthy", 0o644)
    res = cli(cfg, "deploy", "--yes")
    assert res.returncode == 1 and f"{sick.name}  failed" in res.stdout, res.stdout
    assert revision_on(fleet)[sick.name] == "r2307"  # the new code is there, and unhealthy
    back = cli(cfg, "rollback", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr + host_logs(fleet)
    assert set(revision_on(fleet).values()) == {"r2306"}


def test_rollback_after_kill_9_reaches_the_hosts_that_were_in_flight(any_make_fleet, journal):
    fleet = any_make_fleet(hosts=4)
    cfg = config(fleet, sleep=1.0, parallel=2, journal=journal)
    state = Path(fleet.dir) / "state"
    p = spawn(cfg, "deploy", "--yes")
    wait_for(lambda: running(state, journal) > 0 and db_rows(state, "SELECT 1 FROM host_runs WHERE state = 'done'",
                                                             url=journal),
             60, "one host done and others in flight", p)
    kill_server(state)
    p.wait(30)
    res = cli(cfg, "rollback", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(revision_on(fleet).values()) == {"r2306"}, revision_on(fleet)
    # nothing of the dead deploy runs on after the rollback: every step it started had ended before
    assert all(s in ([], ["1"], ["1", "2"]) for s in steps_of(fleet).values()), steps_of(fleet)


# ------------------------------------------------------------------------------------------------ Ctrl+C


@pytest.mark.slow
def test_ctrl_c_stops_in_flight_commands_records_them_interrupted_and_parks_the_lock(any_make_fleet):
    fleet = any_make_fleet(hosts=3)
    cfg = config(fleet, parallel=3)
    text = Path(cfg).read_text().replace('"sleep 0.0 && echo 1 >> steps.log"',
                                         '"sleep 3 && touch marker && echo 1 >> steps.log"')
    Path(cfg).write_text(text)
    state = Path(fleet.dir) / "state"
    p = spawn(cfg, "deploy", "--yes")
    wait_for(lambda: db_rows(state, "SELECT count(*) FROM host_runs WHERE state = 'running'") == [(3,)], 60,
             "every host running step 1", p)
    p.send_signal(signal.SIGINT)
    rc = p.wait(60)
    out, err = p.communicate()
    assert rc == 130, out + err
    assert "interrupted" in err and "Traceback" not in err, err
    reasons = [r for (r,) in db_rows(state, "SELECT reason FROM host_runs")]
    assert len(reasons) == 3 and all(r.startswith("interrupted during step 1/2") for r in reasons), reasons
    assert db_rows(state, "SELECT status FROM rollouts") == [("halted",)]
    assert db_rows(state, "SELECT pid, rollout_id FROM lock") == [(None, 1)]  # parked for the deploy
    # the commands ended on the hosts: none left running there, and no marker
    wait_for(lambda: not any(commands_in(h.root) for h in fleet.hosts), 30, "every command on the hosts to end")
    assert not any((Path(h.root) / "marker").exists() for h in fleet.hosts)
    locked = cli(cfg, "deploy", "--yes")
    assert locked.returncode == 3, locked.stderr
    res = cli(cfg, "deploy", "--resume", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(revision_on(fleet).values()) == {"r2307"}
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)


# ------------------------------------------------------------------------------------------------ locks


def test_unlocking_a_halted_deploys_lock_needs_force_says_what_it_abandons_and_is_logged(make_fleet):
    fleet = make_fleet(3)
    cfg = config(fleet, parallel=3)
    fleet.set_fault(fleet.hosts[0].name, __import__("controlroom.demo.fleet", fromlist=["Fault"]).Fault("fail"))
    res = cli(cfg, "deploy", "--yes")
    assert res.returncode == 1 and "halted" in res.stdout, res.stdout
    refused = cli(cfg, "unlock", user="bob")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "abandons the lock kept for deploy #1" in refused.stderr and "--force" in refused.stderr
    done = cli(cfg, "unlock", "--force", user="bob")
    assert done.returncode == 0, done.stderr
    log = cli(cfg, "log").stdout
    assert re.search(r"\[bob\] UNLOCK forced: abandons the lock kept for deploy #1", log), log
    assert cli(cfg, "log").stdout.count("NO DEPLOY") == 0


def test_a_lock_whose_process_is_gone_is_stale_even_if_its_pid_lives_again(make_fleet):
    fleet = make_fleet(2)
    cfg = config(fleet, parallel=2)
    state = Path(fleet.dir) / "state"
    assert cli(cfg, "log", "add", "hello").returncode == 0
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        db = sqlite3.connect(state / "journal.db")
        with db:  # a deploy's lock row naming a live pid of this machine, with no operation holding the fleet
            db.execute("INSERT INTO rollouts (id, revision, status, phase, phases, user) VALUES "
                       "(1, 'r2307', 'running', 0, '[]', 'ghost')")
            db.execute("INSERT OR REPLACE INTO lock (id, user, at, reason, pid, hostname, rollout_id) VALUES "
                       "(1, 'ghost', 0, 'deploying', ?, ?, 1)", (sleeper.pid, os.uname().nodename))
        db.close()
        shown = cli(cfg, "log").stdout
        assert "stale: that process is gone" in shown, shown
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_journal_replaced_under_a_running_deploy_stops_it_and_no_second_deploy_runs(make_fleet):
    fleet = make_fleet(3)
    cfg = config(fleet, sleep=1.0, parallel=1)
    state = Path(fleet.dir) / "state"
    p = spawn(cfg, "deploy", "--yes", user="alice")
    wait_for(lambda: running(state) > 0, 60, "the deploy to be running", p)
    server = server_pid(state)
    for suffix in ("", "-wal", "-shm"):
        (state / f"journal.db{suffix}").unlink(missing_ok=True)
    rc = p.wait(60)
    out, err = p.communicate()
    assert rc != 0 and "deleted or replaced" in err and "Traceback" not in err, out + err
    assert err.count("\n") == 1, err  # one line
    wait_for(lambda: server_pid(state) != server, 30, "the server that cannot write any more to exit")
    second = cli(cfg, "deploy", "--yes", user="bob")
    assert second.returncode == 3, second.stdout + second.stderr
    assert "held by operation" in second.stderr and "alice" in second.stderr


# ------------------------------------------------------------------------------------------------ abort and skip


async def _engine_until_running(fleet, n: int):
    from controlroom.config import config as config_mod
    from controlroom.engine.rollout import Rollout
    from controlroom.fleet.ssh import SSHPool
    from controlroom.journal.journal import Journal

    cfg_path = config(fleet, parallel=n)
    text = Path(cfg_path).read_text().replace('"sleep 0.0 && echo 1 >> steps.log"',
                                              '"sleep 3 && touch marker && echo 1 >> steps.log"')
    Path(cfg_path).write_text(text)
    cfg = config_mod.load(cfg_path)
    pool = SSHPool(cfg.ssh, cfg.hosts)
    journal = Journal.open(cfg.state.dir)
    r = Rollout(cfg, pool, journal, revision="r2307", actor=Actor("tester"), confirm="none")
    task = asyncio.ensure_future(r.run())
    await until(lambda: sum(h.state == "running" for h in r.hosts.values()) >= n or task.done(), 60,
                "every host running step 1")
    assert not task.done(), "the deploy ended before every host ran step 1"
    return r, task, pool, journal


async def test_abort_stops_the_step_on_every_host_and_records_where_each_was(any_make_fleet):
    fleet = any_make_fleet(hosts=3)
    r, task, pool, journal = await _engine_until_running(fleet, 3)
    try:
        r.abort(Actor("tester"))
        fin = await asyncio.wait_for(task, 30)
        assert fin.status == "aborted"
        assert all(h.state == "failed" and h.reason.startswith("aborted during step 1/2; live revision r2306")
                   for h in r.hosts.values()), [h.reason for h in r.hosts.values()]
        assert all([await never_appears(Path(h.root) / "marker", h.root) for h in fleet.hosts])
    finally:
        await pool.close()
        journal.close()


async def test_skipping_a_running_host_stops_its_step_and_the_others_go_on(any_make_fleet):
    fleet = any_make_fleet(hosts=3)
    r, task, pool, journal = await _engine_until_running(fleet, 3)
    try:
        r.skip("web002", Actor("tester"), reason="stuck disk")  # past the phase's budget of 0: with a typed reason
        fin = await asyncio.wait_for(task, 60)
        assert r.hosts["web002"].state == "skipped"
        assert r.hosts["web002"].reason.startswith("skipped by tester during step 1/2")
        assert fin.done == 2 and fin.skipped == 1, fin
        assert not (Path(fleet.by_name["web002"].root) / "marker").exists()
        assert all((Path(fleet.by_name[n].root) / "marker").exists() for n in ("web001", "web003"))
    finally:
        await pool.close()
        journal.close()


def test_ctrl_c_at_the_deploy_question_answers_at_once_and_touches_nothing(make_fleet):
    """On a real terminal (a pty): the question waits; Ctrl+C ends it at once, exit 130, nothing started."""
    fleet = make_fleet(3)
    cfg = config(fleet, parallel=3)
    term = Terminal(cfg, "deploy")
    try:
        term.read_until(b"[y/N]", 60)
        term.type(b"\x03")  # the terminal's Ctrl+C: SIGINT to the foreground process group
        rc = term.proc.wait(10)
    finally:
        seen = term.close()
    assert rc == 130, seen
    assert b"not deploying" in seen and b"Traceback" not in seen, seen
    assert set(revision_on(fleet).values()) == {"r2306"}
    assert not (Path(fleet.dir) / "state" / "journal.db").exists() or "DEPLOY START" not in cli(cfg, "log").stdout


def test_ctrl_c_on_a_terminal_during_a_deploy_asks_and_detach_leaves_it_running_to_the_end(make_fleet):
    """On a real terminal (a pty): Ctrl+C asks abort or detach; [d] returns at once, the server finishes the job."""
    fleet = make_fleet(4)
    cfg = config(fleet, sleep=1.0, parallel=2)
    state = Path(fleet.dir) / "state"
    term = Terminal(cfg, "deploy", "--yes")
    try:
        wait_for(lambda: running(state) > 0, 60, "the deploy to be running", term.proc)
        term.type(b"\x03")
        term.read_until(b"[d]etach", 30)
        term.type(b"d\n")
        rc = term.proc.wait(30)
    finally:
        seen = term.close()
    assert rc == 0 and b"detached" in seen and b"Traceback" not in seen, seen
    wait_for(lambda: "DEPLOY OK r2307 on 4 of 4 hosts" in cli(cfg, "log").stdout, 60, "the deploy to end")
    assert set(revision_on(fleet).values()) == {"r2307"}
    assert all(s == ["1", "2"] for s in steps_of(fleet).values()), steps_of(fleet)
