"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests of the shared journal (journal/pg.py).

``pg_cluster`` (session-scoped) runs ``initdb`` into a temporary directory owned by the ``postgres`` user (initdb
refuses root; the tests run as root, so through ``runuser``), starts ``postgres`` on a free loopback port with its
Unix socket in that directory and trust authentication on loopback only, and stops it (and removes the directory)
at the end of the session. ``pg_url`` is a fresh database of that cluster for one test:
``postgresql://postgres@127.0.0.1:PORT/t_N``. The tests that need it skip, saying why, where PostgreSQL is
missing (and fail in CI) (.ci/run installs Debian's ``postgresql``). One role, ``SECRET_ROLE``, logs in with a
password (scram-sha-256) instead: the tests that a password is never said use it (``Cluster.url_with_password``).

A run killed before its end (kill -9 of pytest) leaves no postgres behind: postgres gets SIGQUIT (an immediate
shutdown) when the process that started it dies (PR_SET_PDEATHSIG), and the cluster's directory names its owner
(``owner``: pid and start time), so the next start of a cluster stops and removes every cluster whose owner is gone
(``reap_orphans``), whatever killed it.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from controlroom.journal.journal import pid_alive
from tests.waiting import wait_for


def _bin() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps each major version in its own directory)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if
                   p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = _bin()
START_TIMEOUT = 30.0


def unavailable_reason() -> str | None:
    """Why a PostgreSQL cluster cannot be started here, or None when it can."""
    if not (BIN / "initdb").is_file():
        return f"{BIN}/initdb is missing (install Debian's postgresql; .ci/run does)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    as_postgres = os.geteuid() != 0 or shutil.which("runuser")
    if not as_postgres:
        return "runuser is missing (initdb refuses root)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PREFIX = "controlroom-pg-"  # the clusters' directories, in the temporary directory
SECRET_ROLE = ("cr_secret", "the-right-one")  # a role that logs in with its password (from 127.0.0.1)
PR_SET_PDEATHSIG = 1


def _started(pid: int) -> str | None:
    """The process's start time (clock ticks since boot: a pid used again is another process), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _owner_line() -> str:
    return f"{os.getpid()} {_started(os.getpid())}\n"


def _alive(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    try:
        return _started(pid) is not None and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:  # it went meanwhile
        return False


def reap_orphans(tmp: Path | None = None) -> list[Path]:
    """Stop and remove every cluster (in tmp, the temporary directory by default) whose owner process is gone; the
    directories removed. A cluster without an ``owner`` file (being created, or another helper's) is left alone."""
    reaped = []
    for d in sorted(Path(tmp or tempfile.gettempdir()).glob(f"{PREFIX}*")):
        try:
            pid, started = (d / "owner").read_text().split()
        except (OSError, ValueError):
            continue
        if _started(int(pid)) == started:
            continue  # its owner still runs
        _stop_postmaster(d / "data")
        shutil.rmtree(d, ignore_errors=True)
        reaped.append(d)
    return reaped


def _stop_postmaster(data: Path) -> None:
    """An immediate shutdown of the postmaster of data (postmaster.pid), if one still runs there."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if str(data).encode() not in cmdline:  # the pid is another process's now
        return
    for sig, seconds in ((signal.SIGQUIT, 15.0), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        try:
            wait_for(lambda: not _alive(pid), seconds, f"the stray postmaster {pid} of {data} to stop")
            return
        except AssertionError:
            continue


def _dies_with(owner: int):
    """preexec_fn for postgres: SIGQUIT (an immediate shutdown) when its parent, this process, dies. Set after the
    change of user (a change of credentials clears it), checked against a parent already gone."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGQUIT), 0, 0, 0)
        if os.getppid() != owner:
            os._exit(1)

    return preexec


class Cluster:
    """One running postgres: ``port``, ``url(db)``, ``new_database()``, ``stop()``. ``dies_with_owner=False``
    leaves postgres running when this process is killed (reap_orphans still stops it: the tests of the fixture)."""

    def __init__(self, *, dies_with_owner: bool = True) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.dir / "owner").write_text(_owner_line())
        self.data = self.dir / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        root = os.geteuid() == 0
        self._run_as = ["runuser", "-u", "postgres", "--"] if root else []
        if root:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run([*self._run_as, str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync", "--no-instructions"], check=True, capture_output=True, timeout=120)
        hba = self.data / "pg_hba.conf"  # the password role's line first: the first line that matches is used
        hba.write_text(f"host all {SECRET_ROLE[0]} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self.log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - open for the cluster's life
        # postgres started as the postgres user directly (not through runuser), so that its parent is this process
        as_postgres = {"user": "postgres", "group": "postgres", "extra_groups": []} if root else {}
        in_main = threading.current_thread() is threading.main_thread()  # the signal follows the parent thread
        self.proc = subprocess.Popen(
            [str(BIN / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.dir), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir,
            preexec_fn=_dies_with(os.getpid()) if dies_with_owner and in_main else None, **as_postgres)
        wait_for(self._ready, START_TIMEOUT, "postgres to accept connections", self.proc)
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE ROLE {SECRET_ROLE[0]} LOGIN CREATEDB PASSWORD '{SECRET_ROLE[1]}'")

    def secret_url(self, db: str = "postgres", password: str | None = None, *, in_query: bool = False) -> str:
        """The URL of db as SECRET_ROLE, with this password (in the user part, or as ?password=) or none."""
        if password is None:
            return f"postgresql://{SECRET_ROLE[0]}@127.0.0.1:{self.port}/{db}"
        if in_query:
            return f"postgresql://{SECRET_ROLE[0]}@127.0.0.1:{self.port}/{db}?password={password}"
        return f"postgresql://{SECRET_ROLE[0]}:{password}@127.0.0.1:{self.port}/{db}"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def new_database(self, owner: str = "postgres") -> str:
        """A fresh, empty database (owner's: it may create tables there); its URL (as postgres)."""
        import psycopg

        name = f"t_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name} OWNER {owner}")
        return self.url(name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # a fast shutdown: every session ends
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    why = unavailable_reason()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the PostgreSQL journal's tests must run in CI: {why}")
        pytest.skip(why)
    reap_orphans()  # what a killed run left
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh database of the session's cluster, for one test."""
    return pg_cluster.new_database()
