"""kill -9 of the server running a deploy in the middle of a phase, then `controlroom deploy --resume`."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import run_cli
from tests.servers import kill_server, servers_stopped  # noqa: F401 - every server a test starts stops with it
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
