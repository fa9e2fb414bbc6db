"""A canary whose gate fails on a series a kill switch guards: the halt offers that kill switch first.

The simulated fleet with metrics (hosts on r2307 with new_search on answer ~8% 5xx) and the real server: the app
under Pilot shows the choices, k and enter flip new_search off on every host, the gate is checked again until it
holds, g finishes the deploy. Headless, the halt names the kill switch's command.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from controlroom.core import events as ev
from controlroom.demo.fleet import Fleet
from tests.app.test_app_actions import SIZE, log_of, make_app, press_deploy, start, until  # noqa: F401
from tests.conftest import run_cli
from tests.gates import long_bake
from widgets.dialogs import GateHaltDialog
from widgets.flag_dialogs import FlagConfirmDialog

NEW = "r2307"


def revision_of(fleet: Fleet, host: str) -> str:
    return (Path(fleet.dir) / "hosts" / host / "REVISION").read_text().strip()


def flag_on(fleet: Fleet, host: str, name: str) -> str | None:
    path = Path(fleet.dir) / "hosts" / host / "flags.toml"
    if not path.exists():
        return None
    return tomllib.loads(path.read_text())["flags"][name]["enabled"]


async def to_the_failed_gate(pilot) -> None:
    """Start the app, press d, and wait for the canary's failed gate to offer its choices."""
    await start(pilot)
    await press_deploy(pilot)
    await until(pilot, lambda: isinstance(pilot.app.screen, GateHaltDialog), "the failed gate's choices", timeout=60)


@pytest.mark.slow
async def test_a_failed_canary_gate_offers_the_kill_switch_first_and_flipping_it_lets_the_deploy_finish(
        metrics_fleet):
    fleet = metrics_fleet
    long_bake(fleet)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await to_the_failed_gate(pilot)
        dialog = app.screen
        assert dialog.title_text == "The gate before stage 1 failed: errors_5xx < 5"
        assert re.search(r"GATE canary: errors_5xx\{r2307\} = [\d.]+ \(max 5\): FAILED", dialog.verdicts)
        keys = [(key, what) for key, _, what in dialog.choices()]
        assert [k for k, _ in keys] == ["k", "c", "b", "g"]  # the kill switch first, then checking again, rollback
        assert keys[0][1].startswith("turn the kill switch new_search OFF on every host (it guards errors_5xx)")
        assert [h.name for h in fleet.hosts if revision_of(fleet, h.name) == NEW] == ["web001", "web002"]

        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, FlagConfirmDialog), "the kill switch's confirmation")
        assert "Turn new_search OFF on 6 hosts (now on)" in app.screen.body
        await pilot.press("enter")
        await until(pilot, lambda: {flag_on(fleet, h.name, "new_search") for h in fleet.hosts} == {"off"},
                    "new_search off on every host")
        await until(pilot, lambda: app.board.gate is not None and app.board.gate.kind == ev.GATE_OPERATOR,
                    "the gate checked again until it holds", timeout=60)
        assert "holds now" in app.board.gate.reason
        assert [h.name for h in fleet.hosts if revision_of(fleet, h.name) == NEW] == ["web001", "web002"]

        await pilot.press("g")
        await until(pilot, lambda: app.board.status == ev.R_DONE, "the deploy to finish", timeout=60)
    assert {revision_of(fleet, h.name) for h in fleet.hosts} == {NEW}
    log = log_of(fleet)
    assert "FLAG new_search on -> off (errors_5xx < 5 failed before stage 1) 6/6" in log, log
    assert re.search(r"GATE canary: errors_5xx\{r2307\} = [\d.]+ \(max 5\): PASSED", log), log


def test_headless_a_failed_gate_ends_the_bake_and_names_the_kill_switch_to_flip(metrics_fleet):
    fleet = metrics_fleet
    long_bake(fleet)
    res = run_cli("deploy", "--yes", "--auto", cwd=fleet.dir, env={"SUDO_USER": "mygrant"})
    assert res.returncode == 1, res.stdout + res.stderr
    stopped = [line for line in res.stdout.splitlines() if line.startswith("stopped at a gate")]
    assert len(stopped) == 1, res.stdout
    assert re.search(r"GATE canary: errors_5xx\{r2307\} = [\d.]+ \(max 5\): FAILED; "
                     r"kill switch: controlroom flag new_search off;", stopped[0]), stopped[0]
    assert [h.name for h in fleet.hosts if revision_of(fleet, h.name) == NEW] == ["web001", "web002"]
    # the failed gate's suspect, said with it: named, or (r2307 has a point or two yet) why it cannot tell
    lines = res.stdout.splitlines()
    suspect = [i for i, line in enumerate(lines) if line.startswith("  suspect: ")]
    assert len(suspect) == 1 and lines[suspect[0] + 1].startswith("  waiting: gate errors_5xx < 5"), res.stdout
    assert re.match(r"  suspect: (unknown: errors_5xx.* cannot tell$|errors_5xx higher on r2307 hosts .*when canary "
                    r"started \(r2307\))", lines[suspect[0]]), lines[suspect[0]]


@pytest.mark.slow
async def test_checking_a_failed_gate_again_says_it_still_fails_and_g_offers_the_choices_again(metrics_fleet):
    fleet = metrics_fleet
    long_bake(fleet)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await to_the_failed_gate(pilot)
        await pilot.press("c")
        await until(pilot, lambda: any(n.title == "Gate still fails" for n in app._notifications),
                    "the verdict of checking again")
        said = next(n.message for n in app._notifications if n.title == "Gate still fails")
        assert re.search(r"GATE canary: errors_5xx\{r2307\} = [\d.]+ \(max 5\): FAILED", said), said
        assert "kill switch: controlroom flag new_search off" in said
        assert app.board.gate.kind == ev.GATE_FAILED and app.screen is app.main
        context = app.rollout_pane.query_one("#context-line").render().plain
        assert "g decides: kill switch, check again, roll back" in context and "proceeds" not in context

        await pilot.press("g")  # at a failed gate, g offers the choices again rather than passing it
        await until(pilot, lambda: isinstance(app.screen, GateHaltDialog), "the choices again")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main, "the dialog closed")
        assert app.board.gate.kind == ev.GATE_FAILED
    assert [h.name for h in fleet.hosts if revision_of(fleet, h.name) == NEW] == ["web001", "web002"]
    assert len(re.findall(r"GATE canary: errors_5xx\{r2307\} = [\d.]+ \(max 5\): FAILED", log_of(fleet))) == 2


@pytest.mark.slow
async def test_the_failed_gate_names_the_canarys_start_of_r2307_with_new_search_on_as_the_suspect(metrics_fleet):
    """The demo's story: the dialog says the suspect as the server judged it (first, with r2307's few points, that
    it cannot tell yet, or the suspect already), and names it once the series has grown while the gate waits."""
    fleet = metrics_fleet
    long_bake(fleet)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await to_the_failed_gate(pilot)
        dialog = app.screen
        first = dialog.suspect
        assert first.startswith("suspect: "), first  # said with the failure, never left out
        assert re.match(r"suspect: (unknown: .*cannot tell$|errors_5xx )", first), first

        def named() -> bool:
            return "suspect: errors_5xx higher on r2307 hosts" in dialog.suspect

        await until(pilot, named, "the suspect named as r2307's points grow", timeout=60)
        line = dialog.suspect
        assert "when canary started (r2307)" in line and "new_search on" in line, line
        assert re.search(r"r2306 hosts (unchanged|as the baseline|: too few points to say); p < 0\.0", line), line
        shown = dialog.query_one("#gate-suspect").render()
        assert "when canary started (r2307)" in str(shown), shown
        suspect = app.board.suspects["errors_5xx"]
        assert (suspect.verdict, suspect.phase) == (ev.SUSPECT, 1) and suspect.what.startswith("canary started")
    timeline_text = run_cli("timeline", "1", cwd=fleet.dir).stdout
    assert "suspect: errors_5xx higher on r2307 hosts" in timeline_text, timeline_text
