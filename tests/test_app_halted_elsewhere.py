"""The control room opened on a deploy that stopped elsewhere (a headless deploy halted, a process gone): it is
shown halted, with resume and rollback offered, and both work from here."""

from __future__ import annotations

from controlroom import events as ev
from controlroom.demo.fleet import Fault
from tests.conftest import run_cli
from tests.test_app_actions import SIZE, dialog_text, make_app, revision_on, start, until


def halted_headless(fleet) -> None:
    """`controlroom deploy --yes` on a fleet whose first canary host fails: the deploy halts, its lock parked."""
    fleet.set_fault("web001", Fault("fail"))
    res = run_cli("deploy", "--yes", cwd=fleet.dir, env={"SUDO_USER": "alice"})
    assert res.returncode == 1 and "halted in canary" in res.stdout, res.stdout + res.stderr
    fleet.set_fault("web001", None)


async def test_a_deploy_halted_elsewhere_shows_halted_and_R_resumes_it_to_the_end(make_fleet):
    fleet = make_fleet(6)
    halted_headless(fleet)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        assert app.board.status == ev.R_HALTED and app.board.rollout_id == 1
        assert app.board.hosts["web001"].state == ev.FAILED
        context = app.rollout_pane.query_one("#context-line").render().plain
        assert "HALTED" in context.upper(), context
        assert app.check_action("resume_deploy", ()) and app.check_action("rollback", ())
        assert not app.check_action("deploy", ()) and not app.check_action("proceed", ())
        await pilot.press("R")
        await until(pilot, lambda: app.board.gate is not None or app.board.status == ev.R_DONE, "the canary again")
        if app.board.gate is not None:
            await pilot.press("g")
        await until(pilot, lambda: app.board.status == ev.R_DONE, "the resumed deploy to finish")
    assert {revision_on(fleet, h.name) for h in fleet.hosts} == {"r2307"}
    log = run_cli("log", cwd=fleet.dir).stdout
    assert "DEPLOY RESUMED" in log and "[tester] DEPLOY OK r2307 on 6 of 6 hosts" in log, log


async def test_a_deploy_halted_elsewhere_can_be_rolled_back_from_the_app(make_fleet):
    fleet = make_fleet(6)
    halted_headless(fleet)
    assert revision_on(fleet, "web002") == "r2307"  # the other canary host got the new code
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await pilot.press("b")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog", "the rollback dialog")
        assert "Roll back r2307 on 2 hosts that may run it (1 done, 1 failed after a step" in dialog_text(app)
        await pilot.press("y")
        await until(pilot, lambda: app.board.status == ev.R_ROLLED_BACK, "the rollback to finish")
        assert app.board.finished.failed == 0, app.board.finished  # web001 never began a step: nothing to undo
        assert app.board.hosts["web002"].state == ev.ROLLED_BACK
    assert {revision_on(fleet, h.name) for h in fleet.hosts} == {"r2306"}
