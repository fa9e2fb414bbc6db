"""kill -9 of the server running a deploy in the middle of a phase, then `controlroom deploy --resume`."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import run_cli
from tests.disks import fill, small_tmpfs, unmount
from tests.servers import kill_server, stop_servers
from tests.waiting import wait_for

STEPS = '''steps = [
    "sleep 0.3 && echo 1 >> steps.log",
    "echo 2 >> steps.log && echo {revision} > REVISION",
]
'''
PHASES = '''
[[phase]]
name = "canary"
size = 2

[[phase]]
name = "stage 1"
size = 6
parallel = 3

[[phase]]
name = "stage 2"
parallel = 4
'''


def _crash_config(fleet) -> str:
    text = fleet.config_path.read_text()
    text = re.sub(r"steps = \[.*?\]\n", STEPS, text, count=1, flags=re.S)
    text = text[: text.index("[[phase]]")] + PHASES + "\n[state]\ndir = \"state\"\n"
    path = fleet.dir / "crash.toml"
    path.write_text(text)
    return str(path)


def _states(db) -> dict[str, int]:
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT state, count(*) FROM host_runs GROUP BY state").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
    return dict(rows)


@pytest.mark.slow
@pytest.mark.parametrize("kind,hosts", [("sim", 30), pytest.param("sshd", 14, marks=pytest.mark.sshd)],
                         ids=["sim", "sshd"])
def test_kill_9_mid_phase_then_resume_ends_every_host_on_new_revision_with_each_step_run_once(request, kind, hosts):
    fleet = request.getfixturevalue("make_fleet" if kind == "sim" else "make_real_fleet")(hosts=hosts)
    config = _crash_config(fleet)
    db = fleet.dir / "state" / "journal.db"
    deploy = subprocess.Popen(
        [sys.executable, "-m", "controlroom.cli", "deploy", "--yes", "--config", config],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # wait until stage 2 is under way: some hosts done there, others in flight
        def mid_phase():
            s = _states(db)
            return s.get("done", 0) >= 8 + 4 * (kind == "sim") and s.get("running", 0) + s.get("connecting", 0) >= 2
        wait_for(mid_phase, 60, "the deploy to be in the middle of stage 2")
        kill_server(fleet.dir / "state")  # the server runs the deploy: it is the process that crashes
        out = deploy.communicate(timeout=30)[0]
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode == 1 and "the server went away" in out, out  # its follower says so and ends
    before = _states(db)
    assert before.get("pending", 0) > 0, before  # it really died in the middle
    assert sum(before.get(s, 0) for s in ("running", "connecting", "checking")) > 0, before

    res = run_cli("deploy", "--resume", "--yes", "--config", config, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"DEPLOY OK r2307: {hosts} of {hosts} hosts" in res.stdout

    for h in fleet.hosts:
        assert (h.root / "REVISION").read_text().strip() == "r2307", h.name
        assert (h.root / "steps.log").read_text().split() == ["1", "2"], f"{h.name} ran a step twice or not at all"
    assert _states(db) == {"done": hosts}

    log = run_cli("log", "--config", config).stdout
    assert "DEPLOY RESUMED" in log and "DEPLOY OK" in log
    assert "LOCK TAKEN OVER" in log  # the dead process's lock was stale and taken over, on the record


# a rollback step that holds on the hosts holding a `slow` file until the test writes `go` there
HELD_ROLLBACK = ('rollback = ["if [ -e slow ]; then until [ -e go ]; do sleep 0.05; done; fi; '
                 'echo {previous} > REVISION"]\n')


def _rows(db, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


@pytest.mark.slow
def test_kill_9_mid_rollback_the_hint_printed_is_the_command_that_finishes_it(make_fleet):
    fleet = make_fleet(hosts=4)
    text = re.sub(r"rollback = \[.*?\]\n", HELD_ROLLBACK, fleet.config_path.read_text(), count=1)
    text = text[: text.index("[[phase]]")] + '[[phase]]\nname = "all"\nparallel = 4\n\n[state]\ndir = "state"\n'
    config = fleet.dir / "rollback.toml"
    config.write_text(text)
    state = fleet.dir / "state"
    deployed = run_cli("deploy", "--yes", "--config", str(config))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    for h in fleet.hosts[2:]:
        (h.root / "slow").write_text("")
    back = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "rollback", "--yes", "--config", str(config)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: dict(_rows(state / "journal.db", "SELECT state, count(*) FROM host_runs GROUP BY state"))
                 == {"rolled_back": 2, "rolling_back": 2}, 60, "two hosts rolled back and two rolling back", back)
        kill_server(state)
        out, err = back.communicate(timeout=30)
    finally:
        if back.poll() is None:
            back.kill()
    assert back.returncode == 1, out + err
    hint = "`controlroom rollback` finishes the rollback of deploy #1"
    assert err.strip().splitlines() == [f"controlroom: the server went away before the rollback ended; {hint} "
                                        f"(see {state}/server.log)"], err
    # the other way on is refused saying the same
    resume = run_cli("deploy", "--resume", "--yes", "--config", str(config))
    assert resume.returncode == 1 and resume.stderr.strip() == (
        f"controlroom: deploy #1 of r2307 was being rolled back when its server stopped; {hint}"), resume.stderr
    for h in fleet.hosts[2:]:
        (h.root / "go").write_text("")
    again = run_cli("rollback", "--yes", "--config", str(config))  # the command the hint named does it
    assert again.returncode == 0, again.stdout + again.stderr
    assert {(h.root / "REVISION").read_text().strip() for h in fleet.hosts} == {"r2306"}
    assert "ROLLBACK OK r2307 2 hosts back on their previous revision" in run_cli("log", "--config", str(config)).stdout


HOLD = "until [ -e go ]; do sleep 0.05; done"  # a step that holds on a host until the test writes `go` there


@pytest.mark.slow
def test_a_disk_that_fills_mid_deploy_ends_it_in_one_line_naming_the_journal_and_the_resume_finishes_it(make_fleet):
    fleet = make_fleet(hosts=4)
    text = fleet.config_path.read_text().replace("steps = [\n", f'steps = [\n    "{HOLD}",\n', 1)
    text = text[: text.index("[[phase]]")] + '[[phase]]\nname = "all"\nparallel = 4\n\n[state]\ndir = "state"\n'
    config = fleet.dir / "disk.toml"
    config.write_text(text)
    state = fleet.dir / "state"
    state.mkdir()
    small_tmpfs(state)
    try:
        deploy = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "deploy", "--yes", "--config",
                                   str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: _states(state / "journal.db").get("running") == 4, 60, "every host in step 1", deploy)
            fill(state)  # the disk fills while the hosts work
            for h in fleet.hosts:
                (h.root / "go").write_text("")
            out, err = deploy.communicate(timeout=60)
        finally:
            if deploy.poll() is None:
                deploy.kill()
        assert deploy.returncode == 1, out + err
        db = state / "journal.db"
        assert err.strip().splitlines() == [
            f"controlroom: cannot write the journal {db}: the disk is full; free space on it (`df -h {state}`), then "
            "try again; `controlroom deploy --resume` picks deploy #1 up, `controlroom rollback` undoes it"], err
        (state / "filler").unlink()
        res = run_cli("deploy", "--resume", "--yes", "--config", str(config))  # what it said to run
        assert res.returncode == 0, res.stdout + res.stderr
        assert "DEPLOY OK r2307: 4 of 4 hosts" in res.stdout
        assert {(h.root / "REVISION").read_text().strip() for h in fleet.hosts} == {"r2307"}
    finally:
        stop_servers(fleet.dir)
        unmount(state)
