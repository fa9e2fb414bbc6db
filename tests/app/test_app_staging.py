"""The staged revision in the control room: the staging diff pane, the stage key, and chat failures in the status line.

Each test runs the app as `controlroom` builds it, on the simulated fleet (its real git repository: r2306 live,
r2307 staged on refs/heads/staging, r2308 after it) and the real control-room server the app starts. The test
presses the keys a person would, and reads what the person would read: the pane's header and the lines its view
draws, the stage view, the status line.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from controlroom.app.app import ControlRoom, build_app
from controlroom.config import config
from controlroom.core import events as ev
from controlroom.journal.journal import Journal
from tests.conftest import run_cli
from tests.waiting import until_shown
from widgets.stage_view import StageScreen
from widgets.staging_diff import StagingDiffPane

SIZE = (160, 48)


async def until(pilot, cond, what: str, timeout: float = 20.0) -> None:
    """Poll the app until cond() holds (tests.waiting.until_shown); fail saying what the pane's header said."""
    app: ControlRoom = pilot.app
    await until_shown(pilot, cond, what, timeout,
                      lambda: f"pane header: {app.main.query_one(StagingDiffPane).head_text!r}")


def config_with(fleet, name: str, *, release: str = "", extra: str = "") -> Path:
    """The fleet's config with lines added to [release] (and more sections at the end), as a file of its own."""
    text = fleet.config_path.read_text()
    assert "[release]\n" in text
    path = fleet.dir / name
    path.write_text(text.replace("[release]\n", f"[release]\n{release}", 1) + extra)
    return path


def make_app(path: Path) -> ControlRoom:
    return build_app(config.load(path))


def pane_of(app: ControlRoom) -> StagingDiffPane:
    return app.main.query_one(StagingDiffPane)


def drawn(pane: StagingDiffPane) -> list[str]:
    """The view's lines as its render_line draws them now (what is on screen), trailing blanks cut."""
    view = pane.view
    return ["".join(seg.text for seg in view.render_line(y)).rstrip()
            for y in range(view.scrollable_content_region.height)]


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "ann", "GIT_AUTHOR_EMAIL": "ann@x", "GIT_COMMITTER_NAME": "ann",
           "GIT_COMMITTER_EMAIL": "ann@x", "PATH": "/usr/bin:/bin", "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


# --------------------------------------------------------------------------------------------- the pane


async def test_the_pane_shows_r2306_to_r2307_commits_files_and_diff_and_slash_finds_each_match(make_fleet,
                                                                                             monkeypatch):
    # the demo repo's r2307 is committed at 2026-11-24 15:00 UTC; ages are counted from a day later
    monkeypatch.setattr(StagingDiffPane, "clock", staticmethod(lambda: 1_795_618_800.0))  # 2026-11-25 15:00 UTC
    fleet = make_fleet(3)
    app = make_app(fleet.config_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await until(pilot, lambda: pane.diff is not None, "the staging diff")
        head = pane.head_text.splitlines()
        assert head[0] == "live: r2306 (asked web001)"
        assert re.fullmatch(r"staged: r2307 \([0-9a-f]{10}\) · 1 commit, 2 files, \+6 -1", head[1]), head
        lines = pane.view.lines
        assert lines[0] == "1 commit"
        assert re.fullmatch(r"  [0-9a-f]{7,}  demo  1 day ago  r2307: video uploads behind a flag", lines[1])
        assert "2 files changed, +6 -1" in lines
        assert "  +2 -0  lib/video.php" in lines and "  +4 -1  upload.php" in lines
        assert "+    require 'lib/video.php';" in lines and "-<?php // photo uploads" in lines
        width = pane.view.scrollable_content_region.width
        assert drawn(pane)[:2] == [line[:width].rstrip() for line in lines[:2]]  # the line API draws those lines

        await pilot.press("slash")
        assert app.focused is pane.query_one("#diff-search")
        await pilot.press(*"VIDEO.php", "enter")  # case does not matter
        view = pane.view
        first = view.matches[view.match]
        assert "video.php" in lines[first].lower() and len(view.matches) >= 3
        await until(pilot, lambda: str(pane.border_subtitle) == f"/VIDEO.php: 1 of {len(view.matches)}",
                    "where the search is")
        await pilot.press("enter")
        assert view.matches[view.match] > first  # enter again: the next match
        await pilot.press("escape")
        assert app.focused is view
        await pilot.press("N")
        assert view.matches[view.match] == first  # N: back to the previous one
        await until(pilot, lambda: str(pane.border_subtitle).startswith("/VIDEO.php: 1 of"), "where the search is")
        assert any("video.php" in line.lower() for line in drawn(pane))

        await pilot.press("S")  # no [release] stage in this config: the key says so
        await until(pilot, lambda: any("nothing to stage with" in str(n.message) for n in app._notifications),
                    "the stage key saying there is no stage command")


async def test_a_mixed_fleet_says_so_slash_finds_a_line_at_80x24_and_a_moved_staging_branch_is_followed(make_fleet):
    fleet = make_fleet(3)
    cfg = config.load(fleet.config_path)
    j = Journal.open(Path(cfg.state.dir))  # the record of an earlier deploy that left two hosts behind
    try:
        for i in range(10):
            j.record(ev.HostStateChanged(0, host=f"web{i + 1:03d}", phase=0, state=ev.DONE,
                                         revision="r2306" if i < 8 else "r2308"))
    finally:
        j.close()
    app = make_app(fleet.config_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = pane_of(app)
        await until(pilot, lambda: pane.diff is not None, "the staging diff")
        assert pane.head_text.splitlines()[0] == "live: r2306 on 8 hosts, r2308 on 2 · diff from r2306"
        assert "1 commit" in pane.view.lines and "  +4 -1  upload.php" in pane.view.lines
        assert app.tabs.active == "tab-rollout"
        await pilot.press("slash", *"flag(", "enter")  # from the rollout tab: the diff's tab, its search
        assert app.tabs.active == "tab-diff"
        assert "+if (flag('enable_feature_video')) {" in drawn(pane)
        git(fleet.dir / "repo", "update-ref", "refs/heads/staging", "r2308")  # someone moves the staging branch
        await until(pilot, lambda: pane.diff.staged == "r2308", "the pane following the moved ref")
        assert "2 commits" in pane.view.lines


async def test_in_the_middle_of_a_first_deploy_the_hosts_not_yet_reached_count_as_live(make_fleet):
    """The journal knows only the hosts a deploy reached: 2 canary hosts on r2307 of 6 are not the live fleet."""
    fleet = make_fleet(6)
    cfg = config.load(fleet.config_path)
    j = Journal.open(Path(cfg.state.dir))
    try:
        for host in ("web001", "web002"):
            j.record(ev.HostStateChanged(0, host=host, phase=0, state=ev.DONE, revision="r2307"))
    finally:
        j.close()
    app = make_app(fleet.config_path)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = pane_of(app)
        await until(pilot, lambda: pane.diff is not None and "r2306 on 4" in pane.head_text, "the staging diff")
        assert pane.head_text.splitlines()[0] == "live: r2306 on 4 hosts, r2307 on 2 · diff from r2306"
        assert "1 commit" in pane.view.lines


@pytest.mark.slow
async def test_a_20000_line_diff_opens_draws_only_what_is_on_screen_and_scrolls_to_its_end(make_fleet):
    fleet = make_fleet(3)
    repo = fleet.dir / "repo"
    git(repo, "checkout", "-q", "-b", "big", "r2307")
    (repo / "big.txt").write_text("".join(f"line {i}\n" for i in range(20000)))
    git(repo, "add", "big.txt")
    git(repo, "commit", "-q", "-m", "twenty thousand lines")
    git(repo, "checkout", "-q", "main")
    path = config_with(fleet, "big.toml")
    path.write_text(path.read_text().replace('staged = "refs/heads/staging"', 'staged = "refs/heads/big"'))
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await until(pilot, lambda: pane.diff is not None, "the staging diff")
        view = pane.view
        assert view.line_count > 20000
        assert "2 commits" in view.lines and "  +20000 -0  big.txt" in view.lines
        assert view.renders < 200  # the line API: only the lines on screen were built
        view.focus()
        await pilot.press("end")
        await until(pilot, lambda: drawn(pane)[-1] == "+}", "the diff's last line (upload.php's, after big.txt's)")
        await pilot.press("slash", *"line 12345", "enter")
        assert "+line 12345" in drawn(pane)
        await pilot.press("escape", "slash", *"line 19999", "enter")  # escape closes the box, / opens a new one
        assert "+line 19999" in drawn(pane)
        # a few screens and their repaints (how many repaints depends on the machine's load), never the 20,000 lines
        assert view.renders < 2000, (view.renders, view.size.height)


# --------------------------------------------------------------------------------------------- the stage key


async def test_the_stage_key_streams_the_output_says_stage_ok_and_the_pane_follows_the_moved_ref(make_fleet):
    fleet = make_fleet(3)
    # a build that, once done, moves the staging branch on (as a release branch cut by the build would)
    stage = "echo building {revision}; echo step 1; git update-ref refs/heads/staging r2308; echo moved staging"
    path = config_with(fleet, "staged.toml", release=f"stage = '''{stage}'''\n")
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        pane = pane_of(app)
        await until(pilot, lambda: pane.diff is not None and app.staged == "r2307", "the staging diff")
        assert pane.diff.staged == "r2307"
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, StageScreen) and app.screen.result.startswith("STAGE"),
                    "the stage's result")
        view = app.screen
        assert view.lines[:3] == ["building r2307", "step 1", "moved staging"]
        assert re.fullmatch(r"STAGE OK r2307 in \d+ m?s", view.result), view.result
        await pilot.press("escape")
        await until(pilot, lambda: pane.diff.staged == "r2308", "the pane following the staging branch to r2308")
        assert re.match(r"staged: r2308 \([0-9a-f]{10}\) · 2 commits", pane.head_text.splitlines()[1])
        assert any(line.endswith("r2308: next release") for line in pane.view.lines)
        assert re.search(r"STAGE OK r2307 in \d+ m?s", pane.head_text)
        assert any(re.search(r"STAGE OK r2307 in \d+ m?s", line) for line in app.log_lines)
        await until(pilot, lambda: "r2308" in str(app.rollout_pane.query_one("#revision-line").render()),
                    "the rollout pane naming r2308 as what a deploy ships now")


# --------------------------------------------------------------------------------------------- chat


async def test_a_webhook_on_a_closed_port_shows_a_chat_failure_in_the_status_line(make_fleet):
    fleet = make_fleet(3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    path = config_with(fleet, "chat.toml", extra=f'\n[notify]\nwebhook = "http://127.0.0.1:{port}/hooks/s3cr3t"\n')
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.client is not None and app.connected.is_set(), "the server")
        res = run_cli("log", "add", "coffee machine fixed", "-c", str(path))  # a teammate writes the log
        assert res.returncode == 0, res.stdout + res.stderr
        line = app.main.query_one("#status-line")
        await until(pilot, lambda: line.display and "chat: webhook" in line.text, "the chat failure")
        assert re.fullmatch(r"chat: webhook failed \(ConnectError: connection refused\); trying again in \d+ s",
                            line.text), line.text
        shown = str(line.render())
        assert re.fullmatch(r"\d\d:\d\d:\d\d chat: webhook failed .*", shown) and "s3cr3t" not in shown
