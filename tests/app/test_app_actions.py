"""The operator's actions in the control room, driven with Textual's Pilot against the simulated fleet.

Every test builds the app with `build_app` (what `controlroom` runs): it starts the control-room server of the
fleet's state directory and sends every intent there. The test presses the keys a person would press, and checks
what the person would see and what the hosts now hold. Every server a test started is stopped after it
(conftest's servers_stopped).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette

from controlroom.app.app import ControlRoom, build_app
from controlroom.app.palette import commands as palette_commands
from controlroom.config import config
from controlroom.core import events as ev
from controlroom.core.identity import Actor
from tests.waiting import until_shown, wait_for
from widgets.dialogs import ConfirmDialog, HelpScreen, OverrideDialog, PromptDialog, QuitDialog
from widgets.host_detail import HostScreen

SIZE = (160, 48)


async def until(pilot, cond, what: str, timeout: float = 30.0) -> None:
    """Poll the app until cond() holds (never a fixed sleep); fail saying what we waited for and where it is."""
    app: ControlRoom = pilot.app
    await until_shown(pilot, cond, what, timeout,
                      lambda: f"status={app.status!r} screen={type(app.screen).__name__} log={app.log_lines[-5:]!r}")


def make_app(fleet, *, read_only: bool = False, config_path: Path | None = None) -> ControlRoom:
    """The app on the fleet, as `controlroom` builds it; its server is stopped when the test ends (conftest's
    servers_stopped: the fleet's state directory is under the test's tmp_path)."""
    app = build_app(config.load(config_path or fleet.config_path), read_only=read_only)
    # every notification as it is posted (a toast is gone in 4 s; a loaded machine may look later than that)
    app.posted = []
    add = app._notifications.add
    app._notifications.add = lambda n: (app.posted.append(str(n.message)), add(n))[1]
    return app


def journal_of(app):
    """The journal as another process on the bastion reads it (the app itself holds none)."""
    from controlroom.journal.journal import Journal

    return Journal.open(app.cfg.state.dir)


def wait_for_log(fleet, text: str, timeout: float = 30.0) -> str:
    """The deploy log once it holds text (polled with a deadline)."""
    return wait_for(lambda: text in (log := log_of(fleet)) and log, timeout, f"{text!r} in the deploy log",
                    detail=lambda: log_of(fleet), every=0.1)


def log_of(fleet) -> str:
    """The deploy log as `controlroom log` prints it."""
    from tests.conftest import run_cli

    return run_cli("log", "--config", str(fleet.config_path)).stdout


def revision_on(fleet, host: str) -> str:
    return (Path(fleet.dir) / "hosts" / host / "REVISION").read_text().strip()


async def start(pilot) -> None:
    app: ControlRoom = pilot.app
    await until(pilot, app.revisions_loaded.is_set, "the staged and live revisions")
    await pilot.pause()


async def press_deploy(pilot) -> None:
    """d, then y in the confirmation that says what the deploy will do."""
    app: ControlRoom = pilot.app
    await pilot.press("d")
    await until(pilot, lambda: isinstance(app.screen, ConfirmDialog) and app.screen.title_text.startswith("Deploy"),
                "the deploy's confirmation")
    await pilot.press("y")


async def deploy_to_gate(pilot) -> None:
    """d, then the canary runs and the next phase waits for the operator (canary has auto = false)."""
    app: ControlRoom = pilot.app
    await press_deploy(pilot)
    await until(pilot, lambda: app.board.gate is not None, "the canary to finish and the gate to wait")


def dialog_text(app) -> str:
    screen = app.screen
    assert isinstance(screen, ConfirmDialog), f"expected a confirmation, got {type(screen).__name__}"
    return f"{screen.title_text}\n{screen.body}"


async def test_deploy_runs_the_canary_waits_at_the_gate_and_proceed_finishes_with_a_summary(make_fleet):
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        assert app.board.previous == "r2306" and app.board.revision == "r2307"
        await deploy_to_gate(pilot)
        assert app.status == ev.R_WAITING
        assert [app.board.hosts[h].state for h in ("web001", "web002")] == [ev.DONE, ev.DONE]
        assert app.board.hosts["web003"].state == ev.PENDING
        context = app.rollout_pane.query_one("#context-line").render().plain
        assert "stage 1 waits" in context and "g proceeds" in context
        waiting = app.rollout_pane.query_one("#waiting-line").render().plain
        assert "waiting for 8 hosts" in waiting

        await pilot.press("g")
        await until(pilot, lambda: app.status == ev.R_DONE, "the rollout to finish")
        await until(pilot, lambda: app.rollout_pane.query_one("#summary").display, "the summary")
        summary = app.rollout_pane.query_one("#summary").render().plain
        assert "DONE: r2306 -> r2307" in summary and "10 done · 0 failed · 0 skipped" in summary
        await until(pilot, lambda: any("DEPLOY OK" in line for line in app.log_lines), "DEPLOY OK in the log")
        assert any("DEPLOY START r2306 -> r2307" in line and f"[{app.user}]" in line for line in app.log_lines)
        assert all(revision_on(fleet, f"web{i:03d}") == "r2307" for i in range(1, 11))
        bars = app.rollout_pane.query_one("#phase-bars").render().plain
        assert "✓ canary" in bars and "2/2" in bars and "7/7" in bars


@pytest.mark.slow
async def test_failing_canary_host_halts_the_phase_and_retry_heals_it(make_fleet):
    fleet = make_fleet(10, faults="web002=flaky:1")
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await press_deploy(pilot)
        await until(pilot, lambda: app.status == ev.R_HALTED, "the canary to halt")
        await until(pilot, lambda: app.host_grid.cursor_host == "web002", "the cursor on the failed host")
        assert app.board.hosts["web002"].state == ev.FAILED
        assert "simulated failure" in app.board.hosts["web002"].reason
        # the cursor jumps to the failed host, so r acts on it right away
        assert app.host_grid.cursor_host == "web002"
        context = app.rollout_pane.query_one("#context-line").render().plain
        assert "canary HALTED: web002 failed (budget 0)" in context
        row = "".join(seg.text for seg in app.host_grid.render_line(app.host_grid._row_of[1]))
        assert "✗ web002" in row
        await pilot.press("r")
        await until(pilot, lambda: app.board.gate is not None, "the retried canary to pass")
        assert app.board.hosts["web002"].state == ev.DONE
        assert any("RETRY" in line and "web002" in line for line in app.log_lines)


@pytest.mark.slow
async def test_skip_past_the_budget_asks_for_a_reason_and_the_canary_and_done_stay_marked(make_fleet):
    fleet = make_fleet(10, faults="web002=fail")
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await press_deploy(pilot)
        await until(pilot, lambda: app.status == ev.R_HALTED, "the canary to halt")
        await pilot.pause(0.1)
        await pilot.press("s")
        # the canary's budget is 0: skipping its failed host goes past it, so a reason must be typed
        await until(pilot, lambda: isinstance(app.screen, OverrideDialog), "the skip's reason dialog")
        text = dialog_text(app)
        assert "Skip web002 in canary" in text and "stays on r2306" in text and "more than max_failed 0" in text
        await pilot.press("y", "escape")  # y is a letter of the reason here, not a yes; escape: nothing happens
        await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog), "the dialog to close")
        assert app.board.hosts["web002"].state == ev.FAILED
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, OverrideDialog), "the skip's reason dialog")
        await pilot.press("enter")  # an empty reason skips nothing
        await pilot.pause(0.1)
        assert isinstance(app.screen, OverrideDialog) and app.board.hosts["web002"].state == ev.FAILED
        await pilot.press(*"disk replaced tomorrow", "enter")
        await until(pilot, lambda: app.board.hosts["web002"].state == ev.SKIPPED, "web002 to be skipped")
        await until(pilot, lambda: app.board.gate is not None, "the gate after the canary")
        bars = app.rollout_pane.query_one("#phase-bars").render().plain.splitlines()
        assert bars[0].startswith("⊘ canary"), bars  # a phase whose host was skipped is never drawn ✓
        assert any("FORCE" in line and "web002 skipped past the failure budget of canary" in line
                   and '"disk replaced tomorrow"' in line for line in app.log_lines), app.log_lines
        await pilot.press("g")
        await until(pilot, lambda: app.status == ev.R_DONE, "the rollout to finish")
        await until(pilot, lambda: app.rollout_pane.query_one("#summary").display, "the DONE box")
        summary = app.rollout_pane.query_one("#summary").render().plain
        assert summary.startswith("⚠ DONE past a failure budget, with 1 host skipped: r2306 -> r2307"), summary
        assert app.rollout_pane.query_one("#phase-bars").render().plain.startswith("⊘ canary")
        assert revision_on(fleet, "web002") == "r2306"
    assert "DEPLOY OK r2307 ⚠ past a failure budget, with 1 host skipped: on 9 of 10 hosts, 1 skipped" in \
        log_of(fleet)


async def test_pause_at_the_gate_holds_new_hosts_and_resume_carries_on(make_fleet):
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        await pilot.press("p")
        await until(
            pilot,
            lambda: "paused" in app.rollout_pane.query_one("#context-line").render().plain,
            "the pause to show",
        )
        assert app.status == ev.R_PAUSED
        await pilot.press("g")  # the next phase starts, but no host may start while paused
        await until(pilot, lambda: app.board.phase_index == 1 and app.board.gate is None, "stage 1 to start")
        await pilot.pause(0.5)
        assert app.board.hosts["web003"].state == ev.PENDING
        await pilot.press("p")  # the same key resumes
        await until(pilot, lambda: app.status == ev.R_DONE, "the rollout to finish after resume")
        assert revision_on(fleet, "web010") == "r2307"


@pytest.mark.slow
async def test_abort_asks_with_exact_counts_and_skips_the_pending_hosts(make_fleet):
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the abort confirmation")
        assert (
            "Abort the rollout of r2307: 0 hosts in flight are cancelled and 8 pending hosts are skipped"
            in dialog_text(app)
        )
        await pilot.press("y")
        await until(pilot, lambda: app.status == ev.R_ABORTED, "the abort")
        await until(pilot, lambda: app.rollout_pane.query_one("#summary").display, "the summary")
        summary = app.rollout_pane.query_one("#summary").render().plain
        assert "ABORTED" in summary and "2 done · 0 failed · 8 skipped" in summary
        assert revision_on(fleet, "web003") == "r2306"


@pytest.mark.slow
async def test_rollback_asks_then_puts_the_previous_revision_back_on_every_done_host(make_fleet):
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        await pilot.press("g")
        await until(pilot, lambda: app.status == ev.R_DONE, "the rollout to finish")
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the rollback confirmation")
        assert "Roll back r2307 on 10 done hosts, latest phase first" in dialog_text(app)
        assert "(r2306)" in dialog_text(app)
        await pilot.press("y")
        await until(pilot, lambda: app.status == ev.R_ROLLED_BACK, "the rollback")
        assert app.board.count(ev.ROLLED_BACK) == 10
        assert all(revision_on(fleet, f"web{i:03d}") == "r2306" for i in range(1, 11))
        await until(
            pilot, lambda: any("ROLLBACK OK" in line for line in app.log_lines), "ROLLBACK OK in the log"
        )


async def test_lock_with_a_message_shows_the_banner_and_unlock_clears_it(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        banner = app.deploy_log.query_one("#lock-banner")
        assert not banner.display
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the lock prompt")
        await pilot.press(*"db migration until 14:00")
        await pilot.press("enter")
        await until(pilot, lambda: banner.display, "the lock banner")
        text = banner.render().plain
        assert f"NO DEPLOY PLEASE — {app.user}" in text and "db migration until 14:00" in text
        assert "LOCKED" in app.rollout_pane.query_one("#lock-line").render().plain
        assert any("LOCK" in line and "db migration" in line for line in app.log_lines)
        await pilot.press("u")
        await until(pilot, lambda: not banner.display, "the banner to go")
        await until(pilot, lambda: any("UNLOCK" in line for line in app.log_lines), "UNLOCK in the log")
        assert journal_of(app).lock() is None


@pytest.mark.slow
async def test_deploying_past_someone_elses_lock_asks_for_a_reason_and_logs_it(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        journal_of(app).take_lock(Actor("mygrant"), "NO DEPLOY PLEASE")  # a teammate, from another shell
        await until(pilot, lambda: app.deploy_log.query_one("#lock-banner").display, "the lock banner")
        assert "NO DEPLOY PLEASE — mygrant" in app.deploy_log.query_one("#lock-banner").render().plain
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the force confirmation")
        assert "locked: NO DEPLOY PLEASE — mygrant" in dialog_text(app)
        await pilot.press("enter")  # an empty reason is refused
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press(*"hotfix for uploads", "enter")
        await until(pilot, lambda: app.board.status is not None, "the rollout to start")
        await until(
            pilot,
            lambda: any("FORCE" in line and "hotfix for uploads" in line for line in app.log_lines),
            "the FORCE entry",
        )


async def test_log_entry_goes_into_the_journal_and_shows_at_the_bottom(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, PromptDialog), "the log prompt")
        await pilot.press(*"watching 5xx after lunch", "enter")
        await until(pilot, lambda: app.log_lines, "the entry")
        assert app.log_lines[-1].endswith(f"[{app.user}] NOTE watching 5xx after lunch")
        assert journal_of(app).log()[-1].text == "watching 5xx after lunch"


@pytest.mark.slow
async def test_enter_opens_a_host_with_its_output_result_and_timings(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await press_deploy(pilot)
        await until(pilot, lambda: app.board.gate is not None or app.status == ev.R_DONE, "the canary")
        await pilot.press("right", "enter")  # web002
        await until(pilot, lambda: isinstance(app.screen, HostScreen), "the host view")
        screen = app.screen
        assert screen.host == "web002"
        await until(pilot, lambda: "last command: ok" in screen.summary_text, "the host's result")
        text = screen.summary_text
        assert "✓ done" in text and "phase canary" in text and "live revision r2307" in text
        assert "before: r2306" in text and "s on the host" in text and "last command: ok" in text
        assert any(line.startswith("$ ") and "r2307" in line for line in screen.output.lines)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HostScreen), "the host view to close")


@pytest.mark.slow
async def test_every_action_is_in_the_palette_and_follows_the_rollout_state(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        titles = [c.title for c in palette_commands(app)]
        assert "Deploy (d)" in titles and "Lock (l)" in titles and "Log entry (m)" in titles
        assert "Abort (a)" not in titles
        await deploy_to_gate(pilot)
        titles = [c.title for c in palette_commands(app)]
        assert {"Proceed (g)", "Pause (p)", "Abort (a)", "Roll back (b)"} <= set(titles)
        assert "Deploy (d)" not in titles
        # run one through the palette, as a person would
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette")
        await pilot.press(*"Pause")

        def pause_highlighted() -> bool:  # the palette searches in a worker: under load it takes its time
            found = app.screen.query(CommandList)
            option = found.first().highlighted_option if found else None
            return option is not None and "Pause (p)" in str(option.prompt)

        await until(pilot, pause_highlighted, "Pause (p) highlighted in the palette")
        await pilot.press("enter")
        await until(pilot, lambda: app.status == ev.R_PAUSED, "the pause from the palette")
        footer_keys = {
            b.binding.key for b in app.screen.active_bindings.values() if b.binding.show and b.enabled
        }
        assert "p" in footer_keys and "a" in footer_keys


async def test_question_mark_shows_help_with_every_key(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        keys = dict(app.screen.keys)
        for key in ("d", "g", "p", "a", "b", "r", "s", "l", "u", "m", "?", "enter", "ctrl+p"):
            assert key in keys, key
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "the help to close")


@pytest.mark.slow
async def test_quit_during_a_deploy_leaves_it_running_and_a_second_app_sees_it_finish(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitDialog), "the quit question")
        text = f"{app.screen.title_text}\n{app.screen.body}"
        assert "the deploy keeps running; `controlroom` re-attaches" in text, text
        assert "Or abort it first (a): Abort the rollout of r2307" in text, text
        await pilot.press("escape")  # stay after all
        await until(pilot, lambda: not isinstance(app.screen, QuitDialog), "the question to close")
        assert app.is_running
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitDialog), "the quit question")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, "the app to quit")
    assert app.return_code == 0

    again = make_app(fleet)  # `controlroom` again: it attaches to the server, where the deploy still waits
    async with again.run_test(size=SIZE) as pilot:
        await start(pilot)
        await until(pilot, lambda: again.board.gate is not None, "the deploy waiting at its gate, as it was left")
        assert again.board.rollout_id == 1 and again.board.hosts["web001"].state == ev.DONE
        await pilot.press("g")
        await until(pilot, lambda: again.status == ev.R_DONE, "the deploy to finish")
        summary = again.rollout_pane.query_one("#summary")
        await until(pilot, lambda: summary.display, "the summary")
        assert "4 done · 0 failed · 0 skipped" in summary.render().plain
    assert {revision_on(fleet, f"web{i:03d}") for i in range(1, 5)} == {"r2307"}
    assert "LOCK TAKEN OVER" not in log_of(fleet) and "INTERRUPTED" not in log_of(fleet)


@pytest.mark.slow
async def test_abort_from_the_quit_question_stops_the_deploy_then_quits(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitDialog), "the quit question")
        await pilot.press("a")
        await until(pilot, lambda: not app.is_running, "the app to quit")
    log = wait_for_log(fleet, "DEPLOY ABORTED")  # the server carries the abort out after the app has gone
    assert f"[{app.user}] ABORT r2307 0 in flight cancelled, 2 pending skipped" in log, log
    assert revision_on(fleet, "web004") == "r2306"


@pytest.mark.slow
async def test_a_teammates_lock_and_log_entry_from_another_process_show_up(make_fleet):
    from controlroom.journal.journal import Journal

    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        other = Journal.open(app.cfg.state.dir)  # its own connection, as `controlroom lock` in another shell
        try:
            other.add_log(Actor("mygrant"), "NOTE", "db migration starts at 14:00")
            other.take_lock(Actor("mygrant"), "db migration")
        finally:
            other.close()
        banner = app.deploy_log.query_one("#lock-banner")
        await until(pilot, lambda: banner.display, "the teammate's lock", timeout=10)
        assert "NO DEPLOY PLEASE — mygrant" in banner.render().plain
        await until(
            pilot,
            lambda: any("db migration starts at 14:00" in line for line in app.log_lines),
            "the teammate's entry",
            timeout=10,
        )


@pytest.mark.slow
async def test_a_host_that_failed_within_budget_is_run_again_after_the_rollout_ended(make_fleet):
    # stage 1 is one host (10% of 10) with max_failed 1: its failure does not halt, and the rollout ends failed
    fleet = make_fleet(10, "web003=flaky:1")
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        await pilot.press("g")
        await until(pilot, lambda: app.board.finished is not None, "the rollout to end")
        assert app.board.finished.status == ev.R_FAILED
        assert app.board.hosts["web003"].state == ev.FAILED
        assert revision_on(fleet, "web003") == "r2306"

        app.host_grid.select_host("web003")
        await pilot.pause()
        await pilot.press("r")
        await until(
            pilot,
            lambda: app.board.finished is not None and app.board.finished.status == ev.R_DONE,
            "the same rollout to run web003 again and end done",
        )
        assert app.board.hosts["web003"].state == ev.DONE
        assert revision_on(fleet, "web003") == "r2307"
        assert app.board.finished.done == 10 and app.board.finished.failed == 0
        kinds = [e.kind for e in journal_of(app).log()]
        assert kinds[-3:] == ["RETRY", "DEPLOY RESUMED", "DEPLOY OK"]
        assert journal_of(app).lock() is None
