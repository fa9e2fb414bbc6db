"""The simulated fleet is the test bed: real asyncssh servers on 127.0.0.1, real /bin/sh on each host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlroom.demo.fleet import Fleet, parse_faults
from tests.gates import gated_fleet, metrics_fleet  # noqa: F401 - fixtures of every module (tests/gates.py)
from tests.pg import pg_cluster, pg_url  # noqa: F401 - fixtures of every module (tests/pg.py)
from tests.realsshd import RealFleet, unavailable_reason

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sshd: runs on real OpenSSH sshd hosts (tests/realsshd.py); -m 'not sshd' runs only the rest"
    )


def pytest_collection_modifyitems(config, items):
    # a test that starts real sshd hosts is an sshd test, whether or not its author marked it
    for item in items:
        if "make_real_fleet" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sshd)
    # the shared journal's stories run on the simulated fleet only (what real sshd adds is the hosts', which the
    # journal does not change): that pair is not collected at all, so nothing is skipped in CI
    dropped = [item for item in items if _params(item).get("journal") == "postgresql"
               and _params(item).get("any_make_fleet") == "sshd"]
    if dropped:
        items[:] = [item for item in items if item not in dropped]
        config.hook.pytest_deselected(items=dropped)


def _params(item) -> dict:
    spec = getattr(item, "callspec", None)
    return spec.params if spec is not None else {}


@pytest.fixture(autouse=True)
def servers_stopped(request, tmp_path):
    """Every control-room server a test started (under its tmp_path) is stopped after it, whatever the test did;
    torn down before the test's fleets, so a server lets go of its SSH sessions while the hosts are still there."""
    for name in ("make_fleet", "make_real_fleet", "any_make_fleet", "metrics_fleet", "gated_fleet"):
        if name in request.fixturenames:
            request.getfixturevalue(name)
    yield
    from tests.servers import stop_servers

    stop_servers(tmp_path)


def pytest_sessionfinish(session, exitstatus):
    """The net under the net: no `controlroom serve` of this session's temporary directories outlives it."""
    import signal

    # pytest's own temp root; with xdist, this worker's (its end is "/", so popen-gw1 is not taken for gw10)
    base = os.path.join(str(session.config._tmp_path_factory.getbasetemp()), "")  # noqa: SLF001
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"controlroom.cli" in argv and b"serve" in argv and any(base.encode() in a for a in argv):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """No test reads the developer's ~/.ssh/config, agent or state dir."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("CONTROLROOM_CONFIG", raising=False)
    for var in ("SSH_CLIENT", "SSH_CONNECTION", "SUDO_USER", "COLUMNS", "LINES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def make_fleet(tmp_path):
    """make_fleet(hosts=10, faults="web003=refuse") -> a running Fleet (in a thread) with its files in tmp_path."""
    fleets: list[Fleet] = []

    def make(hosts: int = 10, faults: str | None = None, name: str = "fleet") -> Fleet:
        fleet = Fleet(tmp_path / name, hosts, parse_faults(faults)).start_in_thread()
        fleets.append(fleet)
        return fleet

    yield make
    for f in fleets:
        f.stop_thread()


@pytest.fixture
def make_real_fleet(tmp_path):
    """make_real_fleet(hosts=3) -> a RealFleet: one real sshd per host on 127.0.0.1, files in tmp_path.

    Where sshd cannot run (not installed, not root) the test fails in CI ($CI set) and is skipped elsewhere.
    """
    why = unavailable_reason()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"real sshd tests must run in CI: {why}")
        pytest.skip(why)
    fleets: list[RealFleet] = []

    def make(hosts: int = 3, faults: str | None = None, name: str = "fleet") -> RealFleet:
        if faults:
            raise ValueError("real sshd hosts have no simulated faults; use make_fleet for those")
        fleet = RealFleet(tmp_path / name, hosts)
        fleets.append(fleet)
        return fleet.start()

    yield make
    for f in fleets:
        f.stop()


@pytest.fixture(params=[pytest.param("sim", id="sim"), pytest.param("sshd", id="sshd", marks=pytest.mark.sshd)])
def any_make_fleet(request):
    """The simulated fleet's maker, then real sshd's: a test taking this runs once on each.

    Both makers take (hosts=N, name="fleet"); faults exist only on the simulated fleet.
    """
    return request.getfixturevalue("make_fleet" if request.param == "sim" else "make_real_fleet")


@pytest.fixture
def fleet(make_fleet) -> Fleet:
    """A healthy 10-host fleet."""
    return make_fleet(10)


@pytest.fixture(scope="session")
def big_fleet(tmp_path_factory) -> Fleet:
    """One healthy 150-host fleet shared by the tests that only read from it."""
    fleet = Fleet(tmp_path_factory.mktemp("big") / "fleet", 150).start_in_thread()
    yield fleet
    fleet.stop_thread()


def run_cli(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
    """Run `controlroom ARGS` as a user would, in a subprocess; returns the completed process (text)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "controlroom.cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL if input is None else None, input=input,
    )
