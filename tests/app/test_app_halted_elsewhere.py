"""The control room opened on a deploy that stopped elsewhere (a headless deploy halted and parked in the server, a
server killed mid-deploy): it is shown halted, with resume and rollback offered, and both work from here."""

from __future__ import annotations

import os
import signal

import pytest

from controlroom.core import events as ev
from controlroom.demo.fleet import Fault
from tests.app.test_app_actions import (  # noqa: F401
    SIZE,
    dialog_text,
    make_app,
    press_deploy,
    revision_on,
    start,
    until,
)
from tests.conftest import run_cli
from tests.servers import server_pid


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
        assert not app.check_action("deploy", ())
        await pilot.press("R")
        await until(pilot, lambda: app.board.gate is not None or app.board.status == ev.R_DONE, "the canary again")
        if app.board.gate is not None:
            await pilot.press("g")
        await until(pilot, lambda: app.board.status == ev.R_DONE, "the resumed deploy to finish")
        user = app.user
    assert {revision_on(fleet, h.name) for h in fleet.hosts} == {"r2307"}
    log = run_cli("log", cwd=fleet.dir).stdout
    # parked in the server, R retries the failed hosts there: the operator's retry, alice's deploy finishing
    assert f"[{user}] RETRY r2307 web001" in log and "DEPLOY OK r2307 on 6 of 6 hosts" in log, log


@pytest.mark.slow
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


@pytest.mark.slow
async def test_a_server_killed_mid_deploy_comes_back_with_the_deploy_halted_and_R_finishes_it(make_fleet):
    fleet = make_fleet(6)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await press_deploy(pilot)
        await until(pilot, lambda: app.board.gate is not None, "the canary to finish and the gate to wait")
        pid = server_pid(app.cfg.state.dir)
        os.kill(pid, signal.SIGKILL)  # the server dies with the deploy in it
        await until(pilot, lambda: server_pid(app.cfg.state.dir) not in (None, pid), "a new server", timeout=60)
        await until(pilot, lambda: app.board.status == ev.R_HALTED and not app.driven, "the deploy shown halted")
        assert app.board.rollout_id == 1 and app.board.hosts["web001"].state == ev.DONE
        # nothing drives it now: resume it or roll it back, nothing else
        assert app.check_action("resume_deploy", ()) and app.check_action("rollback", ())
        assert not app.check_action("proceed", ()) and not app.check_action("deploy", ())
        assert not app.check_action("abort", ()) and not app.check_action("pause", ())
        await pilot.press("R")
        await until(pilot, lambda: app.board.gate is not None or app.board.status == ev.R_DONE, "the deploy again")
        if app.board.gate is not None:
            await pilot.press("g")
        await until(pilot, lambda: app.board.status == ev.R_DONE, "the resumed deploy to finish")
    assert {revision_on(fleet, h.name) for h in fleet.hosts} == {"r2307"}
    log = run_cli("log", cwd=fleet.dir).stdout
    assert "DEPLOY RESUMED" in log and "DEPLOY OK r2307 on 6 of 6 hosts" in log, log
