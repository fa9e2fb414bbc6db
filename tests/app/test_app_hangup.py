"""The app's own terminal going away ends the app, without writing to it and without hanging: under CPU load, and
when a SIGCONT follows the SIGHUP (Textual's driver restarts itself on SIGCONT). The demo's fleet goes with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from controlroom.journal.journal import pid_alive
from tests.conftest import run_cli
from tests.terminal import Terminal
from tests.waiting import wait_for

ROUNDS = 8


def gone(pid: int) -> bool:
    """Not alive, or a zombie nobody reaped yet (the container's init)."""
    if not pid_alive(pid):
        return True
    try:
        return "zombie" in open(f"/proc/{pid}/status").read().lower()
    except OSError:
        return True


@pytest.mark.slow
def test_the_demo_ends_with_its_fleet_when_its_terminal_hangs_up_then_continues_under_load(tmp_path):
    """Mid-deploy (the app repainting as the canary goes), under CPU load, many times: the terminal goes away, the
    kernel's SIGHUP then SIGCONT reach the demo's process group; the app ends each time. The deploy waits at the
    canary's gate in the server, the fleet kept for it; once the server stops, the demo's reaper stops the fleet."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # the machine is busy
    try:
        for round in range(ROUNDS):
            directory = tmp_path / f"demo{round}"
            term = Terminal(None, "demo", "--hosts", "4", "--dir", str(directory), rows=40, cols=120)
            try:
                term.read_until(b"Deploy log", 120)  # the app is up and drawing
                fleet = json.loads((directory / "fleet.json").read_text())["pid"]
                cfg = str(directory / "controlroom.toml")
                assert run_cli("deploy", "--detach", "--yes", "--config", cfg).returncode == 0
                group = os.getpgid(term.proc.pid)
                os.close(term.master)  # the terminal goes away (ssh dropped) ...
                term.gone = True
                os.killpg(group, signal.SIGHUP)  # ... as the kernel says it: SIGHUP, then SIGCONT
                os.killpg(group, signal.SIGCONT)
                wait_for(lambda t=term: t.proc.poll() is not None, 20, f"the app to end (round {round})")
                assert run_cli("server", "stop", "--force", "--config", cfg).returncode == 0
                wait_for(lambda pid=fleet: gone(pid), 30, f"the demo's fleet to stop (round {round})")
            finally:
                term.close()
    finally:
        burner.kill()
        burner.wait()
