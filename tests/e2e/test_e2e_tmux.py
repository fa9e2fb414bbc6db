"""End to end, as a person would do it: `controlroom demo` in a real terminal (tmux), keys in, screen read back.

A 20-host demo fleet (its metrics on): deploy, the canary's gate fails on errors_5xx (r2307 with new_search on
answers ~8% 5xx), the halt offers the new_search kill switch first, k and enter flip it on every host, the gate is
checked again and holds, g, and the summary says every host is on r2307. Then the terminal is lost in the middle of
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

from tests.waiting import wait_for

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
def test_a_person_ships_r2307_the_canary_gate_fails_they_flip_the_kill_switch_it_offers_and_finish(tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the end-to-end test (.ci/run installs it)")
    fleet_dir = tmp_path / "demo"
    demo = shlex.join([sys.executable, "-m", "controlroom.cli", "demo", "--hosts", "20", "--dir", str(fleet_dir)])
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
        assert "STAGE OK r2307" in screen  # the demo built the staged revision (make build) before the app opened

        term.press("d")
        term.wait_for("Deploy r2307?", "y: deploy")  # the confirmation says what will happen
        term.press("y")
        # the dialog whole: its three offers and the gate's line (a loaded machine paints it over more than one frame)
        screen = term.wait_for("The gate before stage 1 failed: errors_5xx < 5", "kill switch new_search OFF",
                               "check the gate again", "roll back the hosts", "GATE canary: errors_5xx{r2307} = ")
        assert "GATE canary: errors_5xx{r2307} = " in screen and "FAILED" in screen
        offered = [line for line in screen.splitlines() if "kill switch new_search OFF" in line or
                   "check the gate again" in line or "roll back the hosts" in line]
        assert ["kill switch" in offered[0], "check the gate" in offered[1], "roll back" in offered[2]] == [True] * 3
        assert revisions_of(fleet_dir, 20).count("r2307") == 2  # the canary only

        term.press("k")
        term.wait_for("Turn new_search OFF on 20 hosts (now on)")
        term.press("Enter")
        screen = term.wait_for("holds now", "stage 1 waits", timeout=60)
        assert revisions_of(fleet_dir, 20).count("r2307") == 2

        term.press("g")
        screen = term.wait_for("DONE: r2306 -> r2307", "20 done · 0 failed · 0 skipped", "DEPLOY OK")
        assert "FLAG new_search on -> off" in screen

        term.press("q")
        term.wait_for("demo exited 0")
        assert set(revisions_of(fleet_dir, 20)) == {"r2307"}
        flags = {(fleet_dir / "hosts" / f"web{i:03d}" / "flags.toml").read_text() for i in range(1, 21)}
        assert len(flags) == 1 and 'enabled = "off"' in flags.pop().split("[flags.new_search]")[1].split("[")[0]
        # the fleet the demo started is gone with it
        pid = int(json.loads((fleet_dir / "fleet.json").read_text())["pid"])
        assert _gone(pid), "the demo left its fleet running"
    finally:
        term.close()


def revisions_of(fleet_dir: Path, hosts: int) -> list[str]:
    return [(fleet_dir / "hosts" / f"web{i:03d}" / "REVISION").read_text().strip() for i in range(1, hosts + 1)]


def _running(pid: int) -> bool:
    """Alive and not a zombie: a process that exited stays in /proc until its parent (here often the container's
    init, which reaps late) collects it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _running(pid)


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
    from tests.servers import stop_server

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
        term.wait_for("Deploy r2307?", "y: deploy")  # the confirmation says what will happen
        term.press("y")
        term.wait_for("The gate before stage 1 failed")  # the demo's canary gate fails on errors_5xx
        term.press("g")  # go on past it anyway: only with a typed reason
        term.wait_for("Pass the failed canary gate and start stage 1?")
        term.press("-l", "testing a lost terminal")
        term.press("Enter")
        wait_for(lambda: (fleet_dir / "hosts" / "web019" / "REVISION").read_text().strip() == "r2307", DEADLINE,
                 "stage 2 to get going (web019 on r2307)", detail=term.screen, every=0.1)  # the last phase runs
        assert _revisions(fleet_dir, 20) != {"r2307"}, "the deploy ended before the terminal went"
    finally:
        term.close()  # the ssh session to the bastion drops: SIGHUP, in the middle of the last phase
    try:
        wait_for(lambda: _revisions(fleet_dir, 20) == {"r2307"}, 60, "every host on r2307",  # no command typed:
                 detail=lambda: _revisions(fleet_dir, 20), every=0.2)  # the server carries on
        config = fleet_dir / "controlroom.toml"
        again = Terminal(f"env {env} {shlex.join([sys.executable, '-m', 'controlroom.cli', '--config', str(config)])}")
        # the result stays marked: it went past a failed gate
        again.wait_for("⚠ DONE past a failed gate: r2306 -> r2307", "20 done · 0 failed · 0 skipped", "DEPLOY OK",
                       timeout=60)
        log = run_cli("log", "--config", str(config)).stdout
        assert "DEPLOY START r2306 -> r2307" in log and "PROCEED" in log and "GATE OVERRIDDEN r2307 canary" in log
        assert "DEPLOY OK r2307 ⚠ past a failed gate: on 20 of 20" in log, log
        assert "LOCK TAKEN OVER" not in log and "INTERRUPTED" not in log, log
        again.press("q")
    finally:
        if again is not None:
            again.close()
        stop_server(state)
        fleet_pid = int(json.loads((fleet_dir / "fleet.json").read_text())["pid"])
        assert _gone(fleet_pid, 30), "the demo's reaper left its fleet running once the deploy was over"
