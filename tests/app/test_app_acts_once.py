"""The app acts once: a key pressed twice in a hurry does what one press does, never the action twice."""

from __future__ import annotations

import pytest
from textual import events

from controlroom.core import events as ev
from tests.app.test_app_actions import deploy_to_gate, journal_of, make_app, start, until  # noqa: F401
from widgets.dialogs import ConfirmDialog


async def test_two_quick_d_presses_start_one_deploy(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        # two presses in one read from the terminal: queued back to back, the second before the first has acted
        for _ in range(2):
            app.post_message(events.Key("d", "d"))
        app.action_deploy()  # and once more from the palette, in the same tick
        # one confirmation opens, not three; two quick y's answer it once
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the deploy's confirmation")
        assert sum(isinstance(s, ConfirmDialog) for s in app.screen_stack) == 1, app.screen_stack
        await pilot.press("y", "y")
        await until(pilot, lambda: app.board.gate is not None, "the canary to finish and the gate to wait")
        starts = [line for line in app.log_lines if "DEPLOY START" in line]
        assert len(starts) == 1, app.log_lines
        assert journal_of(app).rollout().id == app.board.rollout_id == 1  # one deploy made it to the journal
        assert not any("locked" in str(n.message).lower() for n in app._notifications)


@pytest.mark.slow
async def test_pressing_p_repeatedly_writes_no_entry_twice_in_a_row(make_fleet):
    app = make_app(make_fleet(4))
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        await pilot.press("p", "p", "p", "p", "p")
        await until(pilot, lambda: app.status == ev.R_PAUSED, "the rollout to be paused")
        kinds = [k for line in app.log_lines for k in ("PAUSE", "RESUME") if f"] {k}" in line]
        assert kinds and kinds[0] == "PAUSE"
        assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False)), kinds  # pause, resume, pause ...
        assert len(kinds) <= 5


@pytest.mark.slow
async def test_two_quick_g_presses_pass_one_gate_only(make_fleet):
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        gate = app.board.gate
        await pilot.press("g", "g")
        await until(pilot, lambda: app.board.gate is not gate or app.status == ev.R_DONE, "the gate to pass")
        await until(pilot, lambda: app.status == ev.R_DONE, "the rollout to finish")
        proceeds = [line for line in app.log_lines if "PROCEED" in line]
        assert len(proceeds) <= 1, app.log_lines


@pytest.mark.slow
async def test_a_second_press_while_a_dialog_asks_opens_no_second_dialog(make_fleet):
    app = make_app(make_fleet(4))
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        app.action_abort()
        app.action_abort()  # the palette or a quick hand: the same flow is still asking
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog", "the abort confirmation")
        await pilot.pause()
        assert sum(type(s).__name__ == "ConfirmDialog" for s in app.screen_stack) == 1
        await pilot.press("y")
        await until(pilot, lambda: app.status == ev.R_ABORTED, "the abort")
        assert sum("] ABORT " in line for line in app.log_lines) == 1, app.log_lines


@pytest.mark.slow
async def test_quitting_during_a_rollout_stops_the_screens_timers_cleanly(make_fleet):
    app = make_app(make_fleet(4))
    async with app.run_test(size=(160, 48)) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        app.open_host("web001")
        await pilot.press("escape")
        await pilot.press("q")
        await until(pilot, lambda: type(app.screen).__name__ == "QuitDialog", "the quit question")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, "the app to quit")
    assert app.return_code == 0  # run_test raises if a timer or worker failed on the way out
