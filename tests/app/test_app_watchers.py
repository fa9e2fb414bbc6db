"""Several watchers of one server: two apps side by side show one deploy live, an intent from one shows in the
other; a read-only app (--read-only, or a person not among [access] operators) offers no acting key and a key
pressed anyway shows the server's refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlroom.core import events as ev
from tests.app.test_app_actions import (  # noqa: F401
    SIZE,
    deploy_to_gate,
    journal_of,
    make_app,
    revision_on,
    start,
    until,
)

ACTING = ("deploy", "proceed", "pause", "abort", "rollback", "retry", "skip", "lock", "unlock", "log_entry",
          "resume_deploy")


def notes(app) -> list[str]:
    """Every notification the app has posted, shown or already gone (make_app records them as they are posted)."""
    return list(getattr(app, "posted", None) or [str(n.message) for n in app._notifications])


@pytest.mark.slow
async def test_two_apps_side_by_side_show_one_deploy_live_and_a_pause_from_one_shows_in_both(make_fleet):
    fleet = make_fleet(10)
    alice, bob = make_app(fleet), make_app(fleet)
    async with alice.run_test(size=SIZE) as pa, bob.run_test(size=SIZE) as pb:
        await start(pa)
        await start(pb)
        await deploy_to_gate(pa)  # alice deploys
        await until(pb, lambda: bob.board.gate is not None, "bob to see the gate of alice's deploy")
        assert bob.board.rollout_id == alice.board.rollout_id == 1
        assert bob.board.hosts["web002"].state == ev.DONE and bob.board.hosts["web003"].state == ev.PENDING
        await until(pb, lambda: any("DEPLOY START" in line for line in bob.log_lines), "the start in bob's log")
        await pb.press("p")  # bob pauses: alice sees it
        await until(pa, lambda: alice.status == ev.R_PAUSED, "alice to see bob's pause")
        assert "paused" in alice.rollout_pane.query_one("#context-line").render().plain
        await pb.press("p")
        await until(pa, lambda: alice.status != ev.R_PAUSED, "alice to see bob's resume")
        await pa.press("g")  # alice proceeds; both see it finish
        await until(pb, lambda: bob.status == ev.R_DONE, "bob to see the deploy finish")
        await until(pa, lambda: alice.status == ev.R_DONE, "alice to see it finish")
        for app, pilot in ((alice, pa), (bob, pb)):
            summary = app.rollout_pane.query_one("#summary")
            await until(pilot, lambda app=app: app.rollout_pane.query_one("#summary").display, "the summary")
            assert "10 done · 0 failed · 0 skipped" in summary.render().plain
    assert {revision_on(fleet, f"web{i:03d}") for i in range(1, 11)} == {"r2307"}


async def test_a_read_only_app_offers_no_acting_key_and_a_key_pressed_says_why(make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        assert "read-only" in app.sub_title
        assert not any(app.check_action(a, ()) for a in ACTING)
        assert app.check_action("open_host", ()) and app.check_action("help", ())
        footer = {b.binding.key for b in app.screen.active_bindings.values() if b.binding.show and b.enabled}
        assert not footer & {"d", "g", "p", "a", "b", "r", "s", "l", "u", "m", "R"}, footer
        # nor does the rollout pane's header offer one: an operator deploys, not this watcher
        context = app.rollout_pane.query_one("#context-line")
        await until(pilot, lambda: "an operator deploys it to 4 hosts" in context.render().plain,
                    "the header naming who may deploy")
        await pilot.press("d")
        await until(pilot, lambda: any("refused" in n for n in notes(app)), "the server's refusal")
        refusal = next(n for n in notes(app) if "refused" in n)
        assert "attached read-only" in refusal and "you may watch, not act" in refusal
        await pilot.press("l")
        await until(pilot, lambda: sum("refused" in n for n in notes(app)) >= 2, "the second refusal")
    assert journal_of(app).rollout() is None and journal_of(app).lock() is None  # nothing happened
    assert revision_on(fleet, "web001") == "r2306"


async def test_a_person_not_among_the_operators_may_watch_not_act(make_fleet):
    fleet = make_fleet(4)
    path = Path(fleet.config_path)
    path.write_text(path.read_text() + '\n[access]\noperators = ["alice"]\n')
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await until(pilot, lambda: "read-only" in app.sub_title, "the read-only title")
        me = app.user  # who the server says we are (the socket's peer credentials)
        assert me != "alice" and f"{me} is not among [access] operators" in app.sub_title
        assert not any(app.check_action(a, ()) for a in ACTING)
        await pilot.press("m")
        await until(pilot, lambda: any("refused" in n for n in notes(app)), "the server's refusal")
        assert any(f"{me} is not among [access] operators; you may watch, not act" in n for n in notes(app))
    assert journal_of(app).log() == []
