"""`controlroom replay` as a person types it, in a real terminal (tmux): a finished deploy of the simulated fleet
played at ten times its pace to "replay ended" with every host done; a deploy number that does not exist is one
line naming those that do, exit 2. The screen is polled with a deadline, never read after a fixed sleep."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

import pytest

from tests.conftest import run_cli
from tests.e2e.test_e2e_tmux import Terminal


@pytest.mark.slow
def test_replay_of_a_finished_deploy_at_speed_10_plays_to_the_end_read_only(make_fleet):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the end-to-end test (.ci/run installs it)")
    fleet = make_fleet(4)
    cfg = str(fleet.config_path)
    done = run_cli("deploy", "--yes", "--config", cfg)
    assert done.returncode == 0, done.stdout + done.stderr

    wrong = run_cli("replay", "7", "--config", cfg)
    assert wrong.returncode == 2 and wrong.stderr.strip().count("\n") == 0, wrong.stderr
    assert "there is no deploy #7; the record has #1" in wrong.stderr
    slow = run_cli("replay", "1", "--speed", "0", "--config", cfg)
    assert slow.returncode == 2 and "--speed must be more than 0" in slow.stderr, slow.stderr

    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("HOME", "XDG_STATE_HOME") if k in os.environ)
    replay = shlex.join([sys.executable, "-m", "controlroom.cli", "replay", "1", "--speed", "10", "--config", cfg])
    term = Terminal(f'env {env} {replay}; echo "replay exited $?"; sleep 60')
    try:
        screen = term.wait_for("Timeline of deploy #1", "replay ended", timeout=60)
        assert "r2306 -> r2307" in screen and " · done · event " in screen, screen
        assert all(f"✓ web00{i}" in screen for i in range(1, 5)), screen  # the final grid: every host done
        assert "DEPLOY OK r2307 on 4 of 4 hosts" in screen, screen
        term.press("Home")
        term.wait_for("replay paused")
        term.press("Space")
        term.wait_for("replay ended")
        term.press("q")
        term.wait_for("replay exited 0")
    finally:
        term.close()
