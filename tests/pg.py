"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests of the shared journal (journal/pg.py).

``pg_cluster`` (session-scoped) runs ``initdb`` into a temporary directory owned by the ``postgres`` user (initdb
refuses root; the tests run as root, so through ``runuser``), starts ``postgres`` on a free loopback port with its
Unix socket in that directory and trust authentication on loopback only, and stops it (and removes the directory)
at the end of the session. ``pg_url`` is a fresh database of that cluster for one test:
``postgresql://postgres@127.0.0.1:PORT/t_N``. The tests that need it skip, saying why, where PostgreSQL is
missing (and fail in CI) (.ci/run installs Debian's ``postgresql``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

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


class Cluster:
    """One running postgres: ``port``, ``url(db)``, ``new_database()``, ``stop()``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="controlroom-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run([*self._run_as, str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync", "--no-instructions"], check=True, capture_output=True, timeout=120)
        self.log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - open for the cluster's life
        self.proc = subprocess.Popen(
            [*self._run_as, str(BIN / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.dir), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._ready, START_TIMEOUT, "postgres to accept connections", self.proc)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"t_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
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
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh database of the session's cluster, for one test."""
    return pg_cluster.new_database()
