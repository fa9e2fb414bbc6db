"""Decisions an operator can trust, in the app: `d` says what will happen before it happens (and that there is nothing
to deploy when the fleet runs the staged revision), `R` with nothing to resume says so, and the quit dialog's count
follows the deploy and closes once it is over. Pilot on the simulated fleet; no fixed sleeps."""

from __future__ import annotations

import pytest

from controlroom.core import events as ev
from controlroom.server.client import connect
from tests.app.test_app_actions import (  # noqa: F401
    SIZE,
    dialog_text,
    make_app,
    press_deploy,
    revision_on,
    start,
    until,
)
from widgets.dialogs import ConfirmDialog, QuitDialog
from widgets.host_detail import HostScreen


def notes(app) -> list[str]:
    return [f"{n.title or ''}: {n.message}" for n in app._notifications]


@pytest.mark.slow
async def test_d_asks_first_naming_the_revision_the_live_side_hosts_phases_gates_and_the_lock(make_fleet):
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the deploy's confirmation")
        text = dialog_text(app)
        assert text.startswith("Deploy r2307?")
        assert "Ship r2307 to 10 hosts in 3 phases: canary 2, stage 1 1, stage 2 7." in text
        assert "Live now: r2306 on 10 hosts." in text
        assert "Gates: none." in text and "Waits for you (g) after canary." in text
        assert "Lock: the fleet is not locked" in text
        assert app.board.status is None, "nothing started while it asks"
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog), "the confirmation to close")
        assert app.board.status is None and revision_on(fleet, "web001") == "r2306"


@pytest.mark.slow
async def test_d_asks_the_hosts_again_when_the_first_look_had_no_answer_and_names_what_runs(make_fleet):
    fleet = make_fleet(10, faults="web001=flaky:1")  # the first command on the canary host fails: the first look
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        assert app.room.live is None, "the first look had no host's answer"
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the deploy's confirmation")
        text = dialog_text(app)
        assert "Live now: r2306 on 10 hosts." in text, text
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog), "the confirmation to close")
        assert app.board.status is None and revision_on(fleet, "web001") == "r2306"


@pytest.mark.slow
async def test_d_on_a_fleet_that_already_runs_the_staged_revision_says_so_and_deploys_nothing(make_fleet):
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await press_deploy(pilot)
        await until(pilot, lambda: app.board.gate is not None, "the gate after the canary")
        await pilot.press("g")
        await until(pilot, lambda: app.status == ev.R_DONE and not app.busy, "the deploy to finish")
        assert all(revision_on(fleet, f"web{i:03d}") == "r2307" for i in range(1, 11))
        # the staging diff's live side follows the host events at once (not its poll)
        await until(pilot, lambda: app.staging_diff.diff is not None
                    and app.staging_diff.diff.live_line == "live: r2307 on 10 hosts", "the live side on r2307")
        await pilot.press("d")
        await until(pilot, lambda: any("Nothing to deploy" in n for n in notes(app)), "nothing to deploy")
        note = next(n for n in notes(app) if "Nothing to deploy" in n)
        assert "the whole fleet (10 hosts) already runs r2307: nothing to deploy" in note
        assert not isinstance(app.screen, ConfirmDialog)
        assert app.board.rollout_id == 1 and app.status == ev.R_DONE


async def test_R_with_nothing_to_resume_says_so(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await pilot.press("R")
        await until(pilot, lambda: any("Nothing to resume" in n for n in notes(app)), "R's answer")
        assert any("no deploy has run: nothing to resume" in n for n in notes(app)), notes(app)


@pytest.mark.slow
async def test_the_quit_dialog_follows_the_deploy_and_closes_when_it_ends(make_fleet):
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await press_deploy(pilot)
        await until(pilot, lambda: app.board.gate is not None, "the gate after the canary")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitDialog), "the quit dialog")
        assert "8 pending hosts are skipped" in app.screen.body
        # a teammate's client passes the gate while the dialog is open: the count moves, then the deploy ends
        other = await connect(app.cfg)
        try:
            await other.request("proceed", anyway=True)
            await until(pilot, lambda: app.status == ev.R_DONE and not app.busy, "the deploy to finish")
        finally:
            await other.close()
        await until(pilot, lambda: not isinstance(app.screen, QuitDialog), "the quit dialog to close")
        await until(pilot, lambda: any("ended while you were asked: q quits now" in n for n in notes(app)),
                    "why it closed")
        assert app.is_running  # the app stays until the operator quits


def printing_config(fleet):
    """The fleet's config with a third step that prints to stdout and to stderr."""
    text = fleet.config_path.read_text()
    last = '"ln -sfn releases/{revision} current && cp current/REVISION REVISION",\n'
    assert last in text
    text = text.replace(last, last + '    "echo switched to {revision}; echo warm cache >&2",\n')
    path = fleet.dir / "printing.toml"  # beside the original: its relative paths still hold
    path.write_text(text)
    return path


@pytest.mark.slow
async def test_the_host_view_shows_each_steps_output_and_offers_no_retry_on_a_done_host(make_fleet):
    fleet = make_fleet(4, faults="web002=flaky:1")
    app = make_app(fleet, config_path=printing_config(fleet))
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await press_deploy(pilot)
        await until(pilot, lambda: app.status == ev.R_HALTED, "the canary to halt on web002")
        app.open_host("web001")
        await until(pilot, lambda: isinstance(app.screen, HostScreen), "web001's view")
        screen: HostScreen = app.screen
        await until(pilot, lambda: "[err] warm cache" in screen.output.lines, "the step's stderr")
        lines = list(screen.output.lines)
        step = lines.index("$ echo switched to r2307; echo warm cache >&2")
        assert lines[step + 1:step + 3] == ["switched to r2307", "[err] warm cache"]
        assert screen.keys_offered() == "esc close"
        assert screen.query_one("Vertical").border_subtitle == "esc close"
        footer = {b.binding.key for b in screen.active_bindings.values() if b.binding.show and b.enabled}
        assert not footer & {"r", "s"}, footer
        await pilot.press("r")  # a done host: nothing to retry, nothing happens
        assert app.board.hosts["web001"].state == ev.DONE
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HostScreen), "the view to close")

        app.open_host("web002")  # the failed one: retry and skip apply
        await until(pilot, lambda: isinstance(app.screen, HostScreen) and app.screen.host == "web002", "web002")
        await until(pilot, lambda: app.screen.keys_offered() == "r retry · s skip · esc close", "retry and skip")


@pytest.mark.slow
async def test_the_staging_diffs_live_side_follows_the_host_events_not_its_poll(make_fleet, monkeypatch):
    import widgets.staging_diff

    monkeypatch.setattr(widgets.staging_diff, "POLL", 3600.0)  # the pane's own look would come far too late
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await until(pilot, lambda: app.staging_diff.diff is not None, "the staging diff")
        await press_deploy(pilot)
        await until(pilot, lambda: app.board.gate is not None, "the gate after the canary")
        await until(pilot, lambda: app.staging_diff.diff.live_line == "live: r2306 on 8 hosts, r2307 on 2",
                    "the canary's hosts on r2307")
        await pilot.press("g")
        await until(pilot, lambda: app.status == ev.R_DONE, "the deploy to finish")
        await until(pilot, lambda: app.staging_diff.diff.live_line == "live: r2307 on 10 hosts", "every host")
        assert "live: r2307 on 10 hosts" in app.staging_diff.head_text


def test_durations_of_work_that_ran_and_small_percentages_say_what_is_so():
    from widgets.sparkline import figure
    from widgets.states import duration

    assert duration(0.34) == "340 ms" and duration(0.0004) == "1 ms" and duration(12.4) == "12 s"
    assert figure(0.0035, "%") == "0.0035%" and figure(0.00035, "%") == "0.00035%"
    assert figure(0.00001, "%") == "<0.0001%" and "e" not in figure(-0.004, "%")
