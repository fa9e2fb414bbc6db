"""Presence: the server knows who is attached (user from the peer's credentials, origin from its session, app/CLI/web
from its hello, watching or driving) and every client sees it; a second person acting on a deploy another person
drives is told whose it is first. The app runs under Pilot; bob is a CLI client in a process of its own, with his
own sudo user and SSH session, attached to the same server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from controlroom.core import events as ev
from tests.app.test_app_actions import (  # noqa: F401
    SIZE,
    deploy_to_gate,
    log_of,
    make_app,
    start,
    until,
)
from tests.conftest import run_cli
from widgets.dialogs import ConfirmDialog
from widgets.presence import PresenceLine

BOB = """
import asyncio, sys
from controlroom.config import config
from controlroom.server.client import connect

async def main():
    c = await connect(config.load(sys.argv[1]))
    await c.request("attach")
    print("attached", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        op, _, anyway = line.strip().partition(" ")
        try:
            await c.request(op, **({"anyway": True} if anyway else {}))
            print("ok", flush=True)
        except Exception as e:
            print(f"refused {getattr(e, 'exit_code', 1)}: {e}", flush=True)
    await c.close()

asyncio.run(main())
"""


class Bob:
    """bob's CLI client: attached to the server, sending what the test tells it to, one intent a line."""

    def __init__(self, fleet) -> None:
        # SSH_CLIENT is bob's own claim: no sshd started this process, so the server records no origin for him
        env = {**os.environ, "SUDO_USER": "bob", "SSH_CLIENT": "10.0.0.5 51000 22"}
        env.pop("SSH_CONNECTION", None)
        self.proc = subprocess.Popen([sys.executable, "-c", BOB, str(fleet.config_path)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    async def line(self) -> str:
        return (await asyncio.to_thread(self.proc.stdout.readline)).strip()

    async def send(self, op: str) -> str:
        self.proc.stdin.write(op + "\n")
        self.proc.stdin.flush()
        return await self.line()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def presence(app) -> str:
    return app.main.query_one(PresenceLine).text


@pytest.mark.slow
async def test_two_clients_see_each_other_and_a_second_person_is_told_whose_deploy_it_is(make_fleet):
    fleet = make_fleet(10)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        assert presence(app) == "" and not app.main.query_one(PresenceLine).display  # alone: no line
        await deploy_to_gate(pilot)
        bob = Bob(fleet)
        try:
            assert await bob.line() == "attached"
            await until(pilot, lambda: "bob" in presence(app), "bob in the presence line")
            assert presence(app) == "attached: you (app, driving) · bob (CLI, watching)"
            assert app.main.query_one(PresenceLine).display

            # bob acts on the deploy the app drives: the server asks first (no terminal here: refused, exit 3)
            refused = await bob.send("pause")
            assert refused == f"refused 3: {app.user} is driving r2307; act anyway?", refused
            assert app.status == ev.R_WAITING and not app.paused
            assert await bob.send("pause anyway") == "ok"  # bob said yes: he drives it now
            await until(pilot, lambda: app.paused, "the pause")
            await until(pilot, lambda: "bob (CLI, driving)" in presence(app), "bob driving")
            assert "you (app, watching)" in presence(app)

            # the app's operator resumes it: told whose deploy it is first, and no means nothing is sent
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the question")
            assert app.screen.body == "bob is driving r2307; act anyway?"
            await pilot.press("n")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog), "the question to close")
            assert app.paused
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the question again")
            await pilot.press("y")
            await until(pilot, lambda: not app.paused, "the deploy to go on")
            await until(pilot, lambda: "you (app, driving)" in presence(app), "the app driving again")
            assert not isinstance(app.screen, ConfirmDialog), "asked once, not again by the server's refusal"
        finally:
            bob.close()
        await until(pilot, lambda: presence(app) == "", "bob gone from the presence line")
        log = log_of(fleet)
        assert "[bob" in log and "PAUSE" in log  # the log names who drove each decision


@pytest.mark.slow
async def test_the_cli_acts_on_a_deploy_the_app_drives_only_with_yes_and_the_log_names_who(make_fleet):
    fleet = make_fleet(6)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await deploy_to_gate(pilot)
        env = {"SUDO_USER": "bob", "SSH_CLIENT": "10.0.0.5 51000 22"}
        res = await asyncio.to_thread(run_cli, "rollback", "--yes", cwd=fleet.dir, env=env)
        assert res.returncode == 0, res.stdout + res.stderr  # --yes: bob acts on the app's deploy anyway
        await until(pilot, lambda: app.status == ev.R_ROLLED_BACK and not app.busy, "the rollback to finish")
        log = log_of(fleet)
        assert "[bob] ROLLBACK" in log and "10.0.0.5" not in log, log  # his claimed address is not believed
