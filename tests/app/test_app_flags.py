"""The flags pane and the kill switch, driven with Textual's Pilot against a real server on the simulated fleet.

The operator presses the keys; the test reads what the pane, the dialogs and the deploy log show, and what every
host's flags.toml now holds. Every server a test started is stopped after it (servers_stopped).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
import tomllib
from pathlib import Path

import pytest

from controlroom.app.palette import commands as palette_commands
from tests.app.test_app_actions import SIZE, log_of, make_app, press_deploy, start, until  # noqa: F401
from tests.waiting import wait_for
from widgets.dialogs import PromptDialog
from widgets.flag_dialogs import FlagConfirmDialog, FlagHistoryScreen, KillSwitchPicker
from widgets.flags import KILL_MARK, FlagsPane
from widgets.host_detail import HostScreen


def flags_on(fleet, host: str) -> dict:
    return tomllib.loads((Path(fleet.dir) / "hosts" / host / "flags.toml").read_text())["flags"]


def slow_steps(fleet) -> None:
    """Each host sleeps a second first: the deploy is still running when the operator reaches for a switch."""
    text = fleet.config_path.read_text().replace("steps = [\n", 'steps = [\n    "sleep 1",\n', 1)
    fleet.config_path.write_text(text)


async def flags_shown(pilot) -> FlagsPane:
    app = pilot.app
    await until(pilot, lambda: app.flags_pane.rows, "the flags pane to show the server's flags")
    return app.flags_pane


async def test_during_a_deploy_k_a_few_letters_enter_and_enter_kill_beehive_on_every_host(make_fleet):
    fleet = make_fleet(10)
    slow_steps(fleet)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        pane = await flags_shown(pilot)
        assert KILL_MARK in pane.line_of("beehive") and "kill switch" in pane.line_of("beehive")
        assert KILL_MARK not in pane.line_of("enable_feature_video")
        assert "never changed" in pane.line_of("beehive") and "ON" in pane.line_of("beehive")

        await press_deploy(pilot)
        # under way: running, or its canary done and waiting for the operator (a loaded machine may look only then)
        await until(pilot, lambda: app.board.active and app.busy, "the deploy to run")

        await pilot.press("k")  # 1
        await until(pilot, lambda: isinstance(app.screen, KillSwitchPicker), "the kill switch picker")
        await pilot.press("b", "e")  # 2, 3: only beehive matches
        assert app.screen.shown == ["beehive"]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the confirmation")
        dialog = app.screen
        assert "Turn beehive OFF on 10 hosts (now on)" in dialog.body
        await pilot.press(*"sheds load")
        await pilot.press("enter")

        await until(pilot, lambda: "10/10" in pane.line_of("beehive"), "beehive's receipt 10/10 in the pane")
        line = pane.line_of("beehive")
        assert "OFF" in line and app.user in line and "(sheds load)" in line, line
        assert app.board.active, "the deploy was still running when the switch landed"
        assert {flags_on(fleet, h.name)["beehive"]["enabled"] for h in fleet.hosts} == {"off"}
        await until(pilot, lambda: any("FLAG beehive on -> off (sheds load) 10/10" in x for x in app.log_lines),
                    "the deploy log line")
        assert any(f"[{app.user}] FLAG beehive" in x for x in app.log_lines)
    assert "FLAG beehive on -> off (sheds load) 10/10" in log_of(fleet)


@pytest.mark.slow
async def test_the_kill_switch_works_with_the_fleet_locked_and_the_picker_lists_only_kill_switches(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await flags_shown(pilot)
        assert await app.send("lock", message="NO DEPLOY PLEASE: db migration") is not None
        app.open_host("web001")  # from anywhere: here, a host's own view
        await until(pilot, lambda: isinstance(app.screen, HostScreen), "web001's view")
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, KillSwitchPicker), "the kill switch picker")
        assert app.screen.shown == ["new_search", "beehive"] or sorted(app.screen.shown) == ["beehive", "new_search"]
        await pilot.press(*"search", "enter")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the confirmation")
        await pilot.press(*"kick it", "enter")  # a k typed in a dialog is a letter, not the kill switch key
        await until(pilot, lambda: "4/4" in app.flags_pane.line_of("new_search"), "new_search's receipt")
        assert "(kick it)" in app.flags_pane.line_of("new_search")
        assert {flags_on(fleet, h.name)["new_search"]["enabled"] for h in fleet.hosts} == {"off"}


@pytest.mark.slow
async def test_space_and_confirm_toggle_a_feature_flag_a_refusing_host_shows_in_its_receipt_and_history_opens(
        make_fleet):
    fleet = make_fleet(10, faults="web003=refuse")
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        pane = await flags_shown(pilot)
        table = pane.table
        table.focus()
        table.move_cursor(row=[r["name"] for r in pane.rows].index("enable_feature_video"))
        await pilot.pause()
        await pilot.press("space")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the confirmation")
        assert "Turn enable_feature_video ON on 10 hosts (now off)" in app.screen.body
        await pilot.press(*"video for all", "enter")

        await until(pilot, lambda: "9/10 · web003 refused" in pane.line_of("enable_feature_video"),
                    "the receipt naming the refusing host")
        assert "ON" in pane.line_of("enable_feature_video")
        for h in fleet.hosts:
            if h.name != "web003":
                assert flags_on(fleet, h.name)["enable_feature_video"]["enabled"] == "on"
        assert "retrying web003" in pane.summary

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, FlagHistoryScreen), "the flag's history")
        rows = app.screen.lines()
        assert len(rows) == 1
        _when, who, old, new, why, receipt = rows[0]
        assert (who, old, new, why) == (app.user, "off", "on", "video for all")
        assert receipt.startswith("9/10 · web003 refused")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, FlagHistoryScreen), "the history to close")


@pytest.mark.slow
async def test_a_flag_changed_by_someone_else_meanwhile_is_named_and_confirmed_again(make_fleet):
    from controlroom.server.client import connect

    fleet = make_fleet(3)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await flags_shown(pilot)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, KillSwitchPicker), "the kill switch picker")
        await pilot.press(*"new_s", "enter")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the confirmation")
        first = app.screen
        c = await connect(app.cfg)  # a teammate, from another terminal, turns it off first
        try:
            await c.request("flag_set", flag="new_search", value="off", reason="teammate")
        finally:
            await c.close()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog) and app.screen is not first,
                    "the confirmation again, saying who changed it")
        # asked again for what the operator meant (OFF), not flipped back on
        assert "was changed by" in app.screen.body and "Turn new_search OFF on 3 hosts (now off)" in app.screen.body
        await pilot.press(*"mine", "enter")
        await until(pilot, lambda: "(mine)" in app.flags_pane.line_of("new_search"), "our change in the pane")
        await until(pilot, lambda: "3/3" in app.flags_pane.line_of("new_search"), "its receipt, 3/3")
        assert "OFF" in app.flags_pane.line_of("new_search")
        assert {flags_on(fleet, h.name)["new_search"]["enabled"] for h in fleet.hosts} == {"off"}


@pytest.mark.slow
def test_in_the_demo_during_a_deploy_a_kill_switch_takes_three_keys_and_the_confirm_and_shows_20_of_20(tmp_path):
    """The Done-when story, in a real terminal: `controlroom demo`, a deploy under way, k + two letters + enter,
    a reason and enter; the pane shows the switch off on every host, the log says who and why."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the end-to-end test (.ci/run installs it)")
    from tests.conftest import run_cli
    from tests.e2e.test_e2e_tmux import DEADLINE, Terminal
    from tests.servers import stop_server

    def beehive_row(screen: str) -> str:
        return next((line for line in screen.splitlines() if f"{KILL_MARK} beehive" in line), "")

    fleet_dir = tmp_path / "demo"
    demo = shlex.join([sys.executable, "-m", "controlroom.cli", "demo", "--hosts", "20", "--faults",
                         "none", "--dir", str(fleet_dir)])
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("HOME", "XDG_STATE_HOME"))
    term = Terminal(f'env {env} {demo}; echo "demo exited $?"; sleep 60')
    try:
        screen = term.wait_for("r2306 -> r2307", "READY", "beehive", timeout=60)
        assert f"{KILL_MARK} beehive" in screen and "never changed" in screen
        term.press("d")
        term.wait_for("Deploy r2307?", "y: deploy")  # the confirmation says what will happen
        term.press("y")
        # the deploy is under way: the canary is done and its gate failed (the demo's story); decide later
        term.wait_for("The gate before stage 1 failed")
        term.press("Escape")
        # the dialog gone before k (an escape right before k reads as alt+k)
        wait_for(lambda: "check the gate again" not in term.screen(), DEADLINE, "the gate's dialog to close",
                 detail=term.screen, every=0.1)
        term.wait_for("g decides:")

        term.press("k")
        term.wait_for("Kill switch: type part of its name")
        term.press("b", "e")
        term.press("Enter")
        term.wait_for("Turn beehive OFF on 20 hosts (now on)", "Reason:")
        term.press("-l", "sheds load")
        term.press("Enter")

        wait_for(lambda: "OFF" in (row := beehive_row(term.screen())) and "20/20" in row, DEADLINE,
                 "beehive OFF 20/20 in the pane", detail=term.screen, every=0.1)
        term.wait_for("FLAG beehive on -> off (sheds")  # the deploy log pane (its line wraps)
        log = run_cli("log", "--config", str(fleet_dir / "controlroom.toml")).stdout
        assert "FLAG beehive on -> off (sheds load) 20/20" in log, log
        for i in range(1, 21):
            held = tomllib.loads((fleet_dir / "hosts" / f"web{i:03d}" / "flags.toml").read_text())
            assert held["flags"]["beehive"]["enabled"] == "off"
        term.press("q")
        term.wait_for("Quit? The deploy keeps running")
        term.press("a")  # abort it, then quit
        term.wait_for("demo exited 0")
    finally:
        term.close()
        stop_server(fleet_dir / "state")


@pytest.mark.slow
async def test_percent_sets_a_flag_to_a_share_of_users_on_every_host(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        pane = await flags_shown(pilot)
        pane.table.focus()
        pane.table.move_cursor(row=[r["name"] for r in pane.rows].index("photo_page_v2"))
        await pilot.pause()
        await pilot.press("percent_sign")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the percentage prompt")
        await pilot.press("2", "5", "enter")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the confirmation")
        assert "Turn photo_page_v2 to 25% on 4 hosts (now 10%)" in app.screen.body
        await pilot.press("enter")
        await until(pilot, lambda: "4/4" in pane.line_of("photo_page_v2"), "photo_page_v2's receipt")
        assert "25%" in pane.line_of("photo_page_v2")
        for h in fleet.hosts:
            assert flags_on(fleet, h.name)["photo_page_v2"] == {"enabled": "25%", "groups": ["staff"]}


async def test_a_reason_with_markup_and_escapes_shows_as_plain_visible_text(make_fleet):
    from controlroom.server.client import connect

    fleet = make_fleet(2)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        pane = await flags_shown(pilot)
        c = await connect(app.cfg)  # a teammate's reason, typed anywhere
        try:
            await c.request("flag_set", flag="new_search", value="off", reason="[bold red]boom[/] \x1b[2J\x07")
        finally:
            await c.close()
        await until(pilot, lambda: "2/2" in pane.line_of("new_search"), "the change in the pane (its event)")
        line = pane.line_of("new_search")
        assert "[bold red]boom[/]" in line and "^[[2J^G" in line and "\x1b" not in line, line


async def test_a_read_only_app_offers_no_kill_switch_and_k_shows_the_servers_refusal(make_fleet):
    from tests.app.test_app_watchers import notes

    fleet = make_fleet(2)
    app = make_app(fleet, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await flags_shown(pilot)
        assert not app.check_action("kill_switch", ())
        await pilot.press("k")
        await until(pilot, lambda: any("refused" in n for n in notes(app)), "the server's refusal")
        assert not isinstance(app.screen, KillSwitchPicker)
        assert "attached read-only" in next(n for n in notes(app) if "refused" in n)
        state = await app.fresh_flags()
        assert state["version"] == 0  # nothing changed


async def test_the_palette_offers_each_kill_switch_by_name(make_fleet):
    from textual.command import CommandList, CommandPalette

    fleet = make_fleet(2)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await flags_shown(pilot)
        titles = [c.title for c in palette_commands(app)]
        assert "Kill switch (k)" in titles and "Kill switch beehive (now on)" in titles
        assert not any("enable_feature_video" in t for t in titles)  # a feature flag is not a kill switch
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette")
        assert any(c.title == "Kill switch (k)" for c in palette_commands(app))  # asked from there
        await pilot.press(*"beehive")

        def beehive_highlighted() -> bool:  # the palette searches in a worker
            found = app.screen.query(CommandList)
            option = found.first().highlighted_option if found else None
            return option is not None and "Kill switch beehive" in str(option.prompt)

        await until(pilot, beehive_highlighted, "the beehive kill switch highlighted in the palette")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the confirmation")
        assert "Turn beehive OFF on 2 hosts (now on)" in app.screen.body
        await pilot.press("enter")
        await until(pilot, lambda: "2/2" in app.flags_pane.line_of("beehive"), "beehive off on 2/2")
        assert {flags_on(fleet, h.name)["beehive"]["enabled"] for h in fleet.hosts} == {"off"}


async def test_v_reads_every_hosts_file_back_and_names_the_one_edited_by_hand(make_fleet):
    fleet = make_fleet(3)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        pane = await flags_shown(pilot)
        assert (await app.send("flag_set", flag="new_search", value="off"))["confirmed"] == 3
        (Path(fleet.dir) / "hosts" / "web002" / "flags.toml").write_text('version = 99\n')  # by hand
        pane.table.focus()
        await pilot.pause()
        await pilot.press("v")
        await until(pilot, lambda: "verified" in pane.verified, "the read-back")
        assert "2/3 hold what they were sent · web002 drifted" in pane.verified, pane.verified


async def test_on_a_small_terminal_3_shows_the_flags_and_space_acts_on_them(make_fleet):
    fleet = make_fleet(2)
    app = make_app(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        pane = await flags_shown(pilot)
        await pilot.press("3")
        await until(pilot, lambda: pane.table.has_focus, "the flags table to take the keys")
        await pilot.press("space")  # the first row: new_search
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the confirmation")
        assert "Turn new_search OFF on 2 hosts (now on)" in app.screen.body
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, FlagConfirmDialog), "the dialog to close")
        assert (await app.fresh_flags())["version"] == 0  # esc changed nothing
        await pilot.press("1")
        await until(pilot, lambda: app.host_grid.has_focus, "the host grid to take the keys again")


async def test_a_flag_row_drawn_before_the_table_sized_its_columns_shows_its_whole_name_once_it_has():
    """A DataTable sizes its columns for new rows when next idle and caches each row as it drew it: a row painted
    in between (a busy machine paints before it idles) stayed cut at its header's width, "⚠ ne" for new_search."""
    from textual.app import App

    class One(App):
        def compose(self):
            yield FlagsPane(id="flags")

    app = One()
    async with app.run_test(size=(120, 12)) as pilot:
        pane = app.query_one(FlagsPane)
        rows = [{"name": "new_search", "kind": "kill_switch", "value": "on", "default": "on"},
                {"name": "enable_feature_video", "kind": "feature", "value": "off", "default": "off"}]
        pane.show({"flags": rows, "hosts": 2, "file": "flags.toml", "version": 0})
        table = pane.table
        early = [table.render_line(y).text for y in range(1, 3)]  # painted before the table is idle
        assert "new_search" not in early[0], early  # what the cache then holds: the row cut at "flag"'s width
        deadline = time.monotonic() + 30
        while table.ordered_columns[0].content_width < len("⚠ enable_feature_video"):  # the idle that sizes them
            assert time.monotonic() < deadline, "the flags table never sized its columns"
            await pilot.pause()
        await pilot.pause()
        lines = [table.render_line(y).text for y in range(1, 3)]
        assert "⚠ new_search" in lines[0] and "kill switch" in lines[0], lines
        assert "· enable_feature_video" in lines[1] and "feature" in lines[1], lines
