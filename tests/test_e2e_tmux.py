"""End to end, as a person would do it: `controlroom demo` in a real terminal (tmux), keys in, screen read back.

A 20-host demo fleet with web005 set to fail once: deploy, the canary waits for the operator, proceed, stage 2
halts on web005, retry it, and the summary says every host is on r2307. Then the terminal is lost in the middle of
the last phase: the deploy finishes in the server anyway, and `controlroom` again shows it done. The screen is
polled with a deadline, never read after a fixed sleep.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEADLINE = 30.0


class Terminal:
    """One tmux session on its own socket, so parallel runs and the developer's tmux never collide."""

    def __init__(self, command: str, width: int = 160, height: int = 48) -> None:
        self.socket = f"controlroom-test-{secrets.token_hex(4)}"
        self.session = "e2e"
        self._tmux("new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height), command)

    def _tmux(self, *args: str) -> str:
        res = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args[:2])}: {res.stderr.strip()}")
        return res.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.session)

    def press(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys)

    def wait_for(self, *texts: str, timeout: float = DEADLINE) -> str:
        """Poll the screen until every text is on it; fail showing the screen as it was."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if all(t in screen for t in texts):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(
                    f"not on screen after {timeout:g} s: {[t for t in texts if t not in screen]}\n{screen}"
                )
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.mark.slow
def test_a_person_ships_r2307_to_20_hosts_through_three_phases_with_one_failing_host(tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the end-to-end test (.ci/run installs it)")
    fleet_dir = tmp_path / "demo"
    demo = shlex.join(
        [
            sys.executable,
            "-m",
            "controlroom.cli",
            "demo",
            "--hosts",
            "20",
            "--faults",
            "web005=flaky:1",
            "--dir",
            str(fleet_dir),
        ]
    )
    env = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in (("HOME", os.environ["HOME"]), ("XDG_STATE_HOME", os.environ["XDG_STATE_HOME"]))
    )
    term = Terminal(f'env {env} {demo}; echo "demo exited $?"; sleep 60')
    try:
        screen = term.wait_for("r2306 -> r2307", "READY", "d deploys it to 20 hosts in 3 phases", timeout=60)
        assert (
            "Deploy log" in screen and "Staging diff" in screen and "Flags" in screen and "Metrics" in screen
        )

        term.press("d")
        screen = term.wait_for("WAITING", "stage 1 waits", "✓ web001", "✓ web002")
        assert "· web005" in screen  # still pending
        assert "DEPLOY START r2306 -> r2307" in screen

        term.press("g")
        screen = term.wait_for("HALTED", "stage 2 HALTED: web005 failed", "✗ web005")
        assert "simulated failure" in screen or "HALT" in screen

        term.press("r")  # the cursor went to the failed host
        screen = term.wait_for("DONE: r2306 -> r2307", "20 done · 0 failed · 0 skipped")
        assert "RETRY" in screen and "DEPLOY OK" in screen
        assert "✗ web005" not in screen and "✓ web005" in screen

        term.press("q")
        term.wait_for("demo exited 0")
        revisions = {
            (fleet_dir / "hosts" / f"web{i:03d}" / "REVISION").read_text().strip() for i in range(1, 21)
        }
        assert revisions == {"r2307"}
        # the fleet the demo started is gone with it
        pid = int(json.loads((fleet_dir / "fleet.json").read_text())["pid"])
        assert _gone(pid), "the demo left its fleet running"
    finally:
        term.close()


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_when_the_terminal_goes_away_the_demo_takes_its_fleet_with_it(tmp_path):
    fleet_dir = tmp_path / "demo"
    demo = shlex.join(
        [sys.executable, "-m", "controlroom.cli", "demo", "--hosts", "3", "--dir", str(fleet_dir)]
    )
    term = Terminal(f"env HOME={shlex.quote(os.environ['HOME'])} {demo}")
    try:
        term.wait_for("r2306 -> r2307", "READY", timeout=60)
        pid = int(json.loads((fleet_dir / "fleet.json").read_text())["pid"])
        assert Path(f"/proc/{pid}").exists()
    finally:
        term.close()  # the ssh session to the bastion drops: SIGHUP
    assert _gone(pid), "the demo's fleet outlived its terminal"


def _revisions(fleet_dir: Path, hosts: int) -> set[str]:
    return {(fleet_dir / "hosts" / f"web{i:03d}" / "REVISION").read_text().strip() for i in range(1, hosts + 1)}


@pytest.mark.slow
def test_the_terminal_lost_in_the_last_phase_the_deploy_finishes_and_controlroom_again_shows_it_done(tmp_path):
    from tests.conftest import run_cli
    from tests.test_app_actions import stop_server

    fleet_dir = tmp_path / "demo"
    # web020 (in the last phase) is slow to start its commands: the terminal goes while it is in flight
    demo = shlex.join([sys.executable, "-m", "controlroom.cli", "demo", "--hosts", "20", "--faults",
                       "web020=slow:3", "--dir", str(fleet_dir)])
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("HOME", "XDG_STATE_HOME"))
    term = Terminal(f"env {env} {demo}")
    again = None
    state = fleet_dir / "state"  # the demo config's [state] dir
    try:
        term.wait_for("r2306 -> r2307", "READY", "d deploys it to 20 hosts in 3 phases", timeout=60)
        term.press("d")
        term.wait_for("WAITING", "stage 1 waits")
        term.press("g")
        deadline = time.monotonic() + DEADLINE
        while (fleet_dir / "hosts" / "web019" / "REVISION").read_text().strip() != "r2307":  # the last phase runs
            assert time.monotonic() < deadline, f"stage 2 did not get going\n{term.screen()}"
            time.sleep(0.1)
        assert _revisions(fleet_dir, 20) != {"r2307"}, "the deploy ended before the terminal went"
    finally:
        term.close()  # the ssh session to the bastion drops: SIGHUP, in the middle of the last phase
    try:
        deadline = time.monotonic() + 60
        while _revisions(fleet_dir, 20) != {"r2307"}:  # no command typed: the server carries on
            assert time.monotonic() < deadline, f"not every host got r2307: {_revisions(fleet_dir, 20)}"
            time.sleep(0.2)
        config = fleet_dir / "controlroom.toml"
        again = Terminal(f"env {env} {shlex.join([sys.executable, '-m', 'controlroom.cli', '--config', str(config)])}")
        screen = again.wait_for("DONE: r2306 -> r2307", "20 done · 0 failed · 0 skipped", timeout=60)
        assert "DEPLOY OK" in screen
        log = run_cli("log", "--config", str(config)).stdout
        assert "DEPLOY START r2306 -> r2307" in log and "PROCEED" in log and "DEPLOY OK r2307 on 20 of 20" in log, log
        assert "LOCK TAKEN OVER" not in log and "INTERRUPTED" not in log, log
        again.press("q")
    finally:
        if again is not None:
            again.close()
        stop_server(state)
        fleet_pid = int(json.loads((fleet_dir / "fleet.json").read_text())["pid"])
        assert _gone(fleet_pid, 30), "the demo's reaper left its fleet running once the deploy was over"
