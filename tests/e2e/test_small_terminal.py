"""`controlroom demo` in an 80x24 terminal (tmux), as a person would look at it: the timeline (`t`) of the demo's
first deploy, its fleet pane scrolled with the keys its border names to the hosts of the last phase, and its footer's
last cells. The screen is polled with a deadline, never read after a fixed sleep."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

import pytest

from tests.e2e.test_e2e_tmux import Terminal

# the timeline's keys that fit in 80 columns, each whole (the palette's key and "esc Close" do not fit)
FOOTER_80 = "end End (follow) n Next failure/gate N Previous failure/gate ⏎ Open entry"


def fleet_rows(screen: str) -> list[str]:
    """The host grid's rows in the timeline's fleet pane (left of its border, above the phase bars)."""
    lines = screen.splitlines()
    top = next(i for i, line in enumerate(lines) if "Fleet at the cursor" in line)
    rows = []
    for line in lines[top + 1:]:
        inner = line[1:].split("│", 1)[0]
        if inner.startswith("✓ canary ") or line.startswith("╰"):
            break
        rows.append(inner)
    return rows


@pytest.mark.slow
def test_at_80x24_the_timeline_scrolls_to_the_last_phases_hosts_and_its_footer_ends_with_a_whole_key(tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the end-to-end test (.ci/run installs it)")
    demo = shlex.join([sys.executable, "-m", "controlroom.cli", "demo", "--hosts", "20", "--dir",
                       str(tmp_path / "demo")])
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("HOME", "XDG_STATE_HOME") if k in os.environ)
    term = Terminal(f'env {env} {demo}; echo "demo exited $?"; sleep 60', width=80, height=24)
    try:
        term.wait_for("r2306 -> r2307", "READY", timeout=60)
        term.press("t")  # the demo's first deploy (alice's r2306, done): 2 + 2 + 16 hosts
        screen = term.wait_for("Timeline of deploy #1", "stage 2 · 16 hosts", "rows 1-", "↑↓ PgUp/PgDn scroll")
        assert screen.splitlines()[-1].rstrip() == FOOTER_80, screen  # no partial key, nothing past the last
        rows = fleet_rows(screen)
        assert sum(r.count("✓") for r in rows) == 4, rows  # the canary's and stage 1's: stage 2's are below
        term.press("Down")
        screen = term.wait_for("rows 2-")
        rows = fleet_rows(screen)
        assert any(r.count("✓") == 16 for r in rows), rows  # stage 2's hosts, in view
        assert screen.splitlines()[-1].rstrip() == FOOTER_80, screen
        term.press("PageUp")
        assert sum(r.count("✓") for r in fleet_rows(term.wait_for("rows 1-"))) == 4
        term.press("Escape")
        term.wait_for("READY")
        term.press("q")
        term.wait_for("demo exited 0")
    finally:
        term.close()
