"""What people and hosts wrote shows in the control room as text: never markup, never an escape sequence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Log

from controlroom.config import config
from controlroom.core import events as ev
from controlroom.core.identity import Actor
from controlroom.journal.journal import Journal
from tests.app.test_app_actions import deploy_to_gate, make_app, press_deploy, start, until  # noqa: F401
from widgets.dialogs import ConfirmDialog
from widgets.host_detail import HostScreen

HOSTILE = "ok\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x1b]0;owned\x07\n[12:00:00] [boss] DEPLOY OK r9999"


def no_escape(lines: list[str]) -> bool:
    return all("\x1b" not in line and "\x07" not in line and "\x9b" not in line for line in lines)


async def test_a_lock_reason_that_looks_like_markup_is_shown_literally(make_fleet):
    fleet = make_fleet(4)
    Journal.open(config.load(fleet.config_path).state.dir).take_lock(Actor("mygrant"), "[/] and [bold red]x")
    app = make_app(fleet)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await until(pilot, lambda: app.deploy_log.query_one("#lock-banner").display, "the lock banner")
        assert "[/] and [bold red]x" in app.deploy_log.query_one("#lock-banner").render().plain
        assert "[/] and [bold red]x" in app.rollout_pane.query_one("#lock-line").render().plain
        await pilot.press("u")  # another person's lock: the app asks, quoting the reason as it was written
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the unlock confirmation")
        assert "[/] and [bold red]x" in app.screen.query_one("#confirm-body").render().plain
        await pilot.press("escape")
        await pilot.press("d")  # deploying past it asks too
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the force confirmation")
        assert "[/] and [bold red]x" in app.screen.query_one("#confirm-body").render().plain


async def test_a_hostile_log_message_is_one_visible_line_in_the_deploy_log_pane(make_fleet):
    fleet = make_fleet(4)
    journal = Journal.open(config.load(fleet.config_path).state.dir)
    app = make_app(fleet)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        journal.add_log(Actor("mallory"), "NOTE", HOSTILE)  # a teammate's entry, from another process
        journal.add_log(Actor("mallory"), "NOTE", "y" * 100_000)
        await until(pilot, lambda: len(app.log_lines) >= 2, "the entries in the pane")
        shown = app.deploy_log.log_widget.lines
        assert no_escape(shown) and no_escape(app.log_lines)
        entry = next(line for line in app.log_lines if "[mallory]" in line and "ok^[" in line)
        assert "^[]52;c;cm0gLXJmIH4=^G^[[2J^[]0;owned^G ⏎ [12:00:00] [boss] DEPLOY OK r9999" in entry
        assert not any(line.startswith("[12:00:00] [boss]") for line in app.log_lines)
        huge = next(line for line in app.log_lines if "yyyy" in line)
        assert len(huge) < 1000 and huge.endswith("…")


def hostile_config(fleet, step: str, *, step_timeout: int | None = None) -> Path:
    """The fleet's config with one more deploy step first (the demo's steps are harmless)."""
    text = Path(fleet.config_path).read_text()
    text = text.replace("steps = [\n", f"steps = [\n    {json.dumps(step)},\n", 1)  # a TOML basic string
    if step_timeout is not None:
        text = text.replace("step_timeout = 20\n", f"step_timeout = {step_timeout}\n", 1)
    path = Path(fleet.config_path).with_name("hostile.toml")
    path.write_text(text)
    return path


@pytest.mark.slow
async def test_host_output_with_escape_sequences_shows_them_as_text_in_the_host_view(make_fleet):
    fleet = make_fleet(4)
    cfg = hostile_config(fleet, r"printf '\033[2J\033]0;owned\007\033]52;c;aGk=\007visible\233m\r\n'")
    app = make_app(fleet, config_path=cfg)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        await pilot.press("enter")  # web001
        await until(pilot, lambda: isinstance(app.screen, HostScreen), "the host view")
        screen: HostScreen = app.screen
        printed = lambda: [line for line in screen.output.lines if "visible" in line and not line.startswith("$ ")]  # noqa: E731
        await until(pilot, printed, "the output")
        assert no_escape(screen.output.lines)
        line = printed()[0]
        assert line.startswith("^[[2J^[]0;owned^G^[]52;c;aGk=^Gvisible")


# ~20 lines a second for 50 s: the server keeps a host's last 200 lines, so its record still starts with the step's
# command when the view asks for it, even on a loaded machine; the step gets the time a loaded machine needs
STREAM = "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo line $i; sleep 0.05; done"


async def streaming_host_view(pilot) -> HostScreen:
    """Deploy, open web001's view while its step streams, and wait for the server's record of it (the command it
    runs, then its output), which replaces the lines the app itself saw, and for a screenful."""
    app = pilot.app
    await start(pilot)
    await press_deploy(pilot)
    await until(pilot, lambda: app.board.hosts["web001"].state == ev.RUNNING, "web001 to run")
    app.open_host("web001")
    await until(pilot, lambda: isinstance(app.screen, HostScreen), "the host view")
    screen: HostScreen = app.screen
    log: Log = screen.output
    await until(pilot, lambda: any(line.startswith("$ i=0;") for line in log.lines), "the step's command")
    await until(pilot, lambda: log.line_count > log.scrollable_content_region.height + 5, "a screenful")
    return screen


@pytest.mark.slow
async def test_at_its_200_lines_the_host_view_holds_new_output_for_a_reader_scrolled_back_and_says_so(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet, config_path=hostile_config(fleet, STREAM, step_timeout=300))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await streaming_host_view(pilot)
        log: Log = screen.output
        log.scroll_to(y=0, animate=False, immediate=True)
        top = list(log.lines[:3])
        await until(pilot, lambda: screen.held, "the view to hold the output that would push the top out")
        box = screen.query_one("Vertical")
        await until(pilot, lambda: "new output below: end shows it" in str(box.border_subtitle), "the hint")
        assert list(log.lines[:3]) == top and log.scroll_y == 0
        log.scroll_end(animate=False, immediate=True)  # back at the end: the newest lines, following again
        await until(pilot, lambda: not screen.held and log.lines and log.lines[-1].startswith("line ")
                    and int(log.lines[-1].split()[1]) > 250, "the newest output at the end")
        await until(pilot, lambda: "new output below" not in str(box.border_subtitle), "the hint gone")


@pytest.mark.slow
async def test_the_host_view_keeps_the_readers_place_while_output_streams(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet, config_path=hostile_config(fleet, STREAM, step_timeout=300))
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await streaming_host_view(pilot)
        log: Log = screen.output
        log.scroll_to(y=0, animate=False, immediate=True)  # the reader goes back to the top
        top = list(log.lines[:3])
        assert top[0].startswith("$ i=0;") and top[1] == "line 1"
        first = log.line_count
        # more output comes; at the view's 200 lines it waits, so as not to push out what the reader reads
        await until(pilot, lambda: log.line_count > first + 20 or screen.held, "more output")
        assert log.scroll_y == 0, "new output pulled the reader away from what they were reading"
        assert list(log.lines[:3]) == top, "the lines the reader was reading changed under them"
        log.scroll_end(animate=False, immediate=True)  # at the end, it follows the output again
        await until(pilot, lambda: log.is_vertical_scroll_end, "the view at the end")
        at = log.line_count
        await until(pilot, lambda: log.line_count > at + 10, "more output")
        await until(pilot, lambda: log.is_vertical_scroll_end, "the view to follow the end")
