"""The throwaway PostgreSQL of the tests (tests/pg.py) never outlives the run that started it: a pytest killed with
kill -9 while it holds a cluster leaves no postgres running (it dies with its owner), and the next run removes what
was left (its directory); a postgres that outlived its owner all the same (dies_with_owner=False) is stopped by the
next run too. Each run here keeps its clusters in a temporary directory of its own (TMPDIR), so the other runs on
this machine are never touched."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests import pg
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent

HOLDING = '''
import json, os, threading
from tests.pg import pg_cluster, pg_url  # noqa: F401

def test_holds_a_cluster(pg_url, pg_cluster):
    if os.environ.get("HOLD"):  # say where the cluster is, then hold it until killed
        with open(os.environ["HOLD"] + ".new", "w") as f:
            json.dump({"dir": str(pg_cluster.dir), "postmaster": pg_cluster.proc.pid}, f)
        os.replace(os.environ["HOLD"] + ".new", os.environ["HOLD"])
        threading.Event().wait()
'''

OUTLIVING = '''
import json, os, sys, threading
from tests.pg import Cluster

c = Cluster(dies_with_owner=False)
with open(sys.argv[1] + ".new", "w") as f:
    json.dump({"dir": str(c.dir), "postmaster": c.proc.pid}, f)
os.replace(sys.argv[1] + ".new", sys.argv[1])
threading.Event().wait()
'''


@pytest.fixture
def own_tmp(tmp_path):
    """The TMPDIR of the runs of one test (where their clusters are kept: outside pytest's own temporary root,
    which the postgres user may not enter), and their environment; whatever a failed test left is stopped."""
    why = pg.unavailable_reason()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the PostgreSQL fixture's tests must run in CI: {why}")
        pytest.skip(why)
    tmp = Path(tempfile.mkdtemp(prefix="controlroom-pgtest-"))
    os.chmod(tmp, 0o755)  # the postgres user reaches its cluster's directory (mkdtemp's: its own) through it
    (tmp_path / "test_holding.py").write_text(HOLDING)
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    env.pop("HOLD", None)
    yield tmp, env
    for pid in postgres_in(tmp):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(tmp, ignore_errors=True)


def postgres_in(tmp: Path) -> list[int]:
    """The pids of the processes whose command line names tmp (a postgres of a cluster kept there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(tmp).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def started(args: list[str], env: dict, said: Path) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(args, env=env, cwd=said.parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    wait_for(said.exists, 120, "the cluster to be started", proc, every=0.2)
    return proc, json.loads(said.read_text())


def next_run(tmp_path: Path, env: dict) -> None:
    """Another pytest run that starts a cluster of its own and ends."""
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_holding.py"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_a_pytest_killed_while_it_holds_a_cluster_leaves_no_postgres_and_the_next_run_cleans_up(tmp_path, own_tmp):
    tmp, env = own_tmp
    proc, held = started([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_holding.py"],
                         {**env, "HOLD": str(tmp_path / "held.json")}, tmp_path / "held.json")
    assert held["postmaster"] in postgres_in(tmp)
    os.kill(proc.pid, signal.SIGKILL)  # kill -9: no fixture teardown runs
    proc.wait(10)
    wait_for(lambda: not postgres_in(tmp), 30, "the killed run's postgres to stop", every=0.2)
    assert Path(held["dir"]).is_dir()  # its directory is still there: nobody removed it
    next_run(tmp_path, env)
    assert not postgres_in(tmp) and not list(tmp.glob(f"{pg.PREFIX}*")), list(tmp.iterdir())


@pytest.mark.slow
def test_a_postgres_that_outlived_its_killed_owner_is_stopped_by_the_next_run(tmp_path, own_tmp):
    tmp, env = own_tmp
    (tmp_path / "outliving.py").write_text(OUTLIVING)
    proc, held = started([sys.executable, "outliving.py", str(tmp_path / "held.json")], env, tmp_path / "held.json")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert held["postmaster"] in postgres_in(tmp)  # still running: only the next run can stop it
    next_run(tmp_path, env)
    assert not postgres_in(tmp) and not list(tmp.glob(f"{pg.PREFIX}*")), list(tmp.iterdir())
