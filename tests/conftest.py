"""The simulated fleet is the test bed: real asyncssh servers on 127.0.0.1, real /bin/sh on each host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlroom.demo.fleet import Fleet, parse_faults

REPO = Path(__file__).resolve().parent.parent


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
