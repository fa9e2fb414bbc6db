"""The keyboard reaches every pane: tab/shift+tab in a fixed order, a digit to a pane (again: it fills the screen,
escape puts it back), the focused pane's border and title say which, and each pane's keys work once it is focused.

Driven with Textual's Pilot against a real server on the simulated fleet, at 160x48 (every pane on screen) and at
80x24 (the panes are tabs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controlroom.app.app import ControlRoom
from controlroom.app.screens import FOCUS_MARK, TABS
from tests.app.test_app_actions import make_app, start, until  # noqa: F401
from widgets.flag_dialogs import FlagConfirmDialog, KillSwitchPicker

WIDE = (160, 48)
NARROW = (80, 24)


def marked(app: ControlRoom) -> list[str]:
    """The tabs whose pane's title carries the focus mark."""
    return [t for t in TABS if str(app.main.pane(t).border_title).startswith(FOCUS_MARK)]


def assert_focus_shown(app: ControlRoom, tab: str) -> None:
    """The keys are in that pane, and its border says so: the ▶ in the title (no colour needed) and a heavy
    border; every other pane keeps its round one."""
    assert app.main.focused_tab == tab, f"the focus is in {app.main.focused_tab}, not {tab} ({app.focused})"
    assert marked(app) == [tab], marked(app)
    for t in TABS:
        edge = app.main.pane(t).styles.border_top[0]
        assert edge == ("heavy" if t == tab else "round"), f"{t}: {edge}"


@pytest.mark.slow
async def test_tab_and_shift_tab_go_through_the_panes_in_a_fixed_order_and_the_border_shows_which(make_fleet):
    app = make_app(make_fleet(4))
    async with app.run_test(size=WIDE) as pilot:
        await start(pilot)
        assert_focus_shown(app, "tab-rollout")
        for tab in (*TABS[1:], TABS[0]):  # rollout, deploy log, flags, staging diff, metrics, and round again
            await pilot.press("tab")
            await pilot.pause()
            assert_focus_shown(app, tab)
        for tab in reversed(TABS):
            await pilot.press("shift+tab")
            await pilot.pause()
            assert_focus_shown(app, tab)


async def test_on_a_small_terminal_tab_shows_the_next_pane_and_puts_the_keys_on_it(make_fleet):
    app = make_app(make_fleet(2))
    async with app.run_test(size=NARROW) as pilot:
        await start(pilot)
        await pilot.press("tab", "tab")
        await until(pilot, lambda: app.tabs.active == "tab-flags" and app.flags_pane.table.has_focus,
                    "the flags tab with the keys on its table")
        assert_focus_shown(app, "tab-flags")
        await pilot.press("shift+tab")
        await until(pilot, lambda: app.tabs.active == "tab-log", "the deploy log's tab")
        assert_focus_shown(app, "tab-log")


async def test_3_focuses_the_flags_a_second_3_fills_the_screen_and_escape_puts_it_back(make_fleet):
    app = make_app(make_fleet(4))
    async with app.run_test(size=WIDE) as pilot:
        await start(pilot)
        await until(pilot, lambda: app.flags_pane.rows, "the flags")
        flags = app.flags_pane
        corner = flags.region
        await pilot.press("3")
        await until(pilot, lambda: flags.table.has_focus, "the flags table to take the keys")
        assert_focus_shown(app, "tab-flags")
        assert flags.region == corner, "the first 3 only focuses"
        await pilot.press("3")
        await until(pilot, lambda: flags.region.height >= 40 and flags.region.width >= 150, "the flags filling the screen")
        assert not app.rollout_pane.region.height, "the other panes stay out of the way"
        assert flags.table.has_focus
        await pilot.press("escape")
        await until(pilot, lambda: app.main.maximized is None and flags.region == corner, "the flags back in place")
        assert_focus_shown(app, "tab-flags")
        # the pane's own keys work where it is: space opens the confirmation for the flag under the cursor
        await pilot.press("space")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the confirmation")
        assert "Turn new_search OFF on 4 hosts (now on)" in app.screen.body
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main, "the dialog closed")
        assert_focus_shown(app, "tab-flags")
        # another digit moves the keys elsewhere, and a pane that fills the screen gives way to it
        await pilot.press("3", "4")
        await until(pilot, lambda: app.main.maximized is None and app.main.focused_tab == "tab-diff",
                    "the staging diff focused, the flags back in their corner")
        assert flags.region == corner


@pytest.mark.slow
async def test_the_kill_switch_from_the_flags_pane_by_keyboard_only(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=WIDE) as pilot:
        await start(pilot)
        await until(pilot, lambda: app.flags_pane.rows, "the flags")
        await pilot.press("3")  # the flags pane: one key
        await until(pilot, lambda: app.flags_pane.table.has_focus, "the flags table to take the keys")
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, KillSwitchPicker), "the kill switch picker")
        await pilot.press("b", "e", "enter")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the confirmation")
        await pilot.press(*"sheds load", "enter")
        await until(pilot, lambda: "4/4" in app.flags_pane.line_of("beehive"), "beehive's receipt 4/4")
        assert "OFF" in app.flags_pane.line_of("beehive")
        hosts = Path(fleet.dir) / "hosts"
        assert all('enabled = "off"' in (hosts / h.name / "flags.toml").read_text().split("[flags.beehive]")[1]
                   .split("[")[0] for h in fleet.hosts)
        assert_focus_shown(app, "tab-flags")  # the keys are back where they were


def test_the_readme_and_the_help_screen_list_the_same_keys():
    from controlroom.app.actions import help_keys

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("| key | what it does |"):].split("\n\n", 1)[0]
    in_readme = {k.strip() for row in table.splitlines()[2:] for k in row.split("|")[1].strip().strip("`")
                 .split("`, `")}
    in_help = {key for key, _ in help_keys()}
    assert in_readme == in_help, f"only in the README: {in_readme - in_help}; only in help: {in_help - in_readme}"


@pytest.mark.slow
async def test_in_the_staging_diffs_search_box_k_and_digits_are_letters_and_tab_leaves_it(make_fleet):
    from textual.widgets import Input

    from widgets.staging_diff import StagingDiffPane

    app = make_app(make_fleet(2))
    async with app.run_test(size=WIDE) as pilot:
        await start(pilot)
        diff = app.query_one(StagingDiffPane)
        await until(pilot, lambda: diff.shown, "the staged diff")
        await pilot.press("4")
        await until(pilot, lambda: app.main.focused_tab == "tab-diff", "the staging diff focused")
        await pilot.press("slash")
        box = diff.query_one("#diff-search", Input)
        await until(pilot, lambda: box.has_focus, "the search box")
        await pilot.press(*"kill 3")
        await pilot.pause()
        assert box.value == "kill 3" and app.screen is app.main, (box.value, app.screen)
        await pilot.press("escape")
        await until(pilot, lambda: diff.view.has_focus, "the diff view again")
        await pilot.press("k")  # out of the box, k is the kill switch again
        await until(pilot, lambda: isinstance(app.screen, KillSwitchPicker), "the kill switch picker")
