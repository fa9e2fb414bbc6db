"""Headless decisions that name what they replace: a second `controlroom lock` names the lock it would replace and
asks on a terminal (refused without one, exit 3, unless --takeover); a terminal that goes away at that prompt never
replaces anything. Run as the operator runs them: subprocesses, a pty the test holds, the simulated fleet."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from controlroom.journal.journal import Journal
from tests.cli.test_deploy_cli import cr


class Terminal:
    """`controlroom ARGS` on a pty the test holds: read what it prints, type, or hang up."""

    def __init__(self, fleet, *args: str, user: str) -> None:
        self.master, slave = pty.openpty()
        env = {**os.environ, "SUDO_USER": user}
        self.proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli", *args], cwd=fleet.dir, env=env,
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                                     start_new_session=True)
        os.close(slave)
        self.seen = b""

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"not on the terminal after {timeout:g} s: {text!r}\n{self.seen.decode(errors='replace')}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                self.seen += chunk
        return self.seen.decode(errors="replace")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def hang_up(self) -> None:
        os.close(self.master)

    def exit_code(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)


def state_dir(fleet):
    from controlroom.config import config

    return config.load(fleet.config_path).state.dir


def the_lock(fleet) -> tuple[str, str] | None:
    j = Journal.open(state_dir(fleet))
    try:
        lock = j.lock()
        return None if lock is None else (lock.user, lock.reason)
    finally:
        j.close()


def test_a_second_lock_without_a_terminal_is_refused_naming_the_holder_and_takeover_replaces_it(fleet):
    assert cr(fleet, "lock", "db migration until 14:00", user="alice").returncode == 0
    res = cr(fleet, "lock", "my release", user="bob")
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "the fleet is locked: NO DEPLOY PLEASE — alice" in res.stderr and "db migration until 14:00" in res.stderr
    assert "--takeover" in res.stderr and "Traceback" not in res.stderr
    assert the_lock(fleet) == ("alice", "db migration until 14:00")
    # the same person locking again is asked as well: it replaces a message the team reads
    again = cr(fleet, "lock", "something else", user="alice")
    assert again.returncode == 3 and the_lock(fleet) == ("alice", "db migration until 14:00")

    took = cr(fleet, "lock", "--takeover", "my release", user="bob")
    assert took.returncode == 0, took.stderr
    assert the_lock(fleet) == ("bob", "my release")
    log = cr(fleet, "log").stdout
    assert "LOCK TAKEN OVER" in log and "alice" in log


def test_a_second_lock_on_a_terminal_names_the_lock_and_asks(fleet):
    assert cr(fleet, "lock", "db migration", user="alice").returncode == 0
    no = Terminal(fleet, "lock", "my release", user="bob")
    screen = no.wait_for("Replace it with your lock? [y/N]")
    assert "the fleet is locked: NO DEPLOY PLEASE — alice" in screen and "db migration" in screen
    no.type("n\n")
    assert no.exit_code() == 1
    assert the_lock(fleet) == ("alice", "db migration")

    yes = Terminal(fleet, "lock", "my release", user="bob")
    yes.wait_for("Replace it with your lock? [y/N]")
    yes.type("y\n")
    assert yes.exit_code() == 0
    assert the_lock(fleet) == ("bob", "my release")


def test_a_terminal_that_goes_away_at_the_lock_prompt_replaces_nothing(fleet):
    assert cr(fleet, "lock", "db migration", user="alice").returncode == 0
    term = Terminal(fleet, "lock", "my release", user="bob")
    term.wait_for("Replace it with your lock? [y/N]")
    term.hang_up()
    assert term.exit_code() != 0
    assert the_lock(fleet) == ("alice", "db migration")
