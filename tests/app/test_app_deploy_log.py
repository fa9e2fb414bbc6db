"""The deploy log pane as an operator attaching to a busy day sees it."""

from __future__ import annotations

import pytest

from controlroom.config import config
from controlroom.core.identity import Actor
from controlroom.journal.journal import Journal
from tests.app.test_app_actions import make_app, until  # noqa: F401


@pytest.mark.slow
async def test_attaching_to_a_long_log_shows_the_newest_entry_and_a_reader_scrolled_up_stays_put(make_fleet):
    """60 entries in a pane of 16 lines: what happened last is in sight, not the first entries of the day (a CI run
    under load reattached after DEPLOY OK and showed the top of the log). A reader who scrolled up to read is not
    pulled away by a new entry; back at the end, the log follows again."""
    fleet = make_fleet(4)
    state = config.load(fleet.config_path).state.dir
    j = Journal.open(state)
    for i in range(60):
        j.add_log(Actor("mygrant"), "NOTE", f"entry {i}")
    j.close()
    app = make_app(fleet)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = app.main.query_one("#deploy-log")
        log = pane.log_widget

        def visible() -> str:
            top = int(log.scroll_y)
            return "\n".join(str(line) for line in log.lines[top:top + log.scrollable_content_region.height])

        await until(pilot, lambda: len(pane.lines) == 60, "the log")
        await until(pilot, lambda: "entry 59" in visible(), "the newest entry in sight")
        assert log.line_count > log.scrollable_content_region.height  # the pane really is shorter than the log

        log.focus()
        await pilot.press("home")  # the reader goes to the morning's entries
        await until(pilot, lambda: log.scroll_y == 0, "the top of the log")
        other = Journal.open(state)
        other.add_log(Actor("bob"), "NOTE", "entry 60")
        other.close()
        await until(pilot, lambda: len(pane.lines) == 61, "the new entry")
        await pilot.pause()
        assert log.scroll_y == 0 and "entry 0" in visible(), "a new entry pulled the reader away"

        await pilot.press("end")
        other = Journal.open(state)
        other.add_log(Actor("bob"), "NOTE", "entry 61")
        other.close()
        await until(pilot, lambda: "entry 61" in visible(), "the log following again at its end")


async def test_the_deploy_logs_title_says_the_weeks_figures_from_the_record_and_again_when_a_deploy_ends(make_fleet):
    from controlroom.core import events as ev
    from tests.app.test_app_actions import SIZE, deploy_to_gate, start

    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        log = app.main.pane("tab-log")
        await until(pilot, lambda: "In the last 7 days" in str(log.border_title), "the week's figures in the title")
        assert str(log.border_title).endswith("Deploy log · In the last 7 days: no deploys"), log.border_title
        await deploy_to_gate(pilot)
        await pilot.press("g")
        await until(pilot, lambda: app.status == ev.R_DONE, "the deploy to end")
        # r2306..r2307 is one commit of the demo repository: the server counted it from git
        await until(pilot, lambda: "1 deploy of 1 change by 1 person" in str(log.border_title),
                    "the figures again once the deploy ended")
        assert str(log.border_title).endswith("Deploy log · In the last 7 days: 1 deploy of 1 change by 1 person")
