"""`controlroom demo` around the app: the background fleet it starts, attaches to and stops."""

from __future__ import annotations

import argparse

import pytest

from controlroom.cli.demo import default_faults, running_fleet, start_fleet, stop_fleet
from controlroom.core.errors import UsageError
from tests.conftest import run_cli


def test_the_demo_fleet_starts_in_the_background_is_found_by_a_second_demo_and_stops(tmp_path):
    directory = tmp_path / "fleet"
    proc = start_fleet(directory, 3, None, deadline=60)
    try:
        assert proc.poll() is None
        assert running_fleet(directory) == proc.pid  # what a second `controlroom demo --dir` attaches to
        assert (directory / "controlroom.toml").is_file()
        assert "fleet: ready" in (directory / "fleet.log").read_text()
    finally:
        stop_fleet(proc)
    assert proc.returncode is not None
    assert running_fleet(directory) is None


def test_a_bad_fault_spec_fails_in_one_line_before_anything_starts(tmp_path):
    res = run_cli("demo", "--hosts", "5", "--faults", "web002=explode", "--dir", str(tmp_path / "d"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "web002=explode" in res.stderr
    assert not (tmp_path / "d" / "fleet.json").exists()


def test_the_default_demo_injects_no_host_failure_its_story_is_the_canary_gate():
    assert default_faults(150) is None and default_faults(1) is None


def test_the_demo_fleet_gates_its_canary_on_errors_5xx_with_new_search_on_guarding_it(tmp_path, monkeypatch):
    from controlroom.config import config

    monkeypatch.setenv("CONTROLROOM_DEMO_BAKE", "3s")
    directory = tmp_path / "fleet"
    proc = start_fleet(directory, 4, None, deadline=60)
    try:
        cfg = config.load(directory / "controlroom.toml")
    finally:
        stop_fleet(proc)
    canary = cfg.phases[0]
    assert canary.gate == ("errors_5xx < 5",) and canary.bake == 3
    assert cfg.metrics.url and [s.name for s in cfg.metrics.series] == ["errors_5xx", "latency_ms"]
    new_search = cfg.flags.flag("new_search")
    assert (new_search.kind, new_search.default, new_search.guards) == ("kill_switch", "on", ("errors_5xx",))


def test_a_demo_bake_over_20_s_is_not_taken(monkeypatch):
    from controlroom.demo.fleetconfig import demo_bake

    monkeypatch.setenv("CONTROLROOM_DEMO_BAKE", "2m")
    assert demo_bake() == "10s"
    monkeypatch.setenv("CONTROLROOM_DEMO_BAKE", "5s")
    assert demo_bake() == "5s"


def test_zero_hosts_is_a_usage_error():
    from controlroom.cli.demo import cmd_demo

    with pytest.raises(UsageError):
        cmd_demo(argparse.Namespace(hosts=0, faults=None, dir=None))


@pytest.mark.slow
def test_in_the_demo_stage_then_deploy_yes_ships_the_staged_revision(tmp_path, monkeypatch):
    """Issue 11 as a new user tries it on the demo's fleet: a deploy before the stage is refused with the command
    to run; `controlroom stage` builds r2307 (the repo's Makefile); with the kill switch off the gate holds and
    `controlroom deploy --yes` ships it to every host."""
    from controlroom.config import config
    from controlroom.demo.fleet import STAGED_REVISION
    from tests.servers import stop_servers

    monkeypatch.setenv("CONTROLROOM_DEMO_BAKE", "1s")
    directory = tmp_path / "fleet"
    proc = start_fleet(directory, 4, None, deadline=60)
    cfg_path = str(directory / "controlroom.toml")
    try:
        assert config.load(cfg_path).release.stage == "make build REV={revision}"
        before = run_cli("deploy", "--yes", "--config", cfg_path)
        assert before.returncode != 0 and "controlroom stage" in before.stderr
        staged = run_cli("stage", "--config", cfg_path)
        assert staged.returncode == 0, staged.stderr
        assert f"building {STAGED_REVISION}" in staged.stdout and f"STAGE OK {STAGED_REVISION}" in staged.stdout
        off = run_cli("flag", "new_search", "off", "--yes", "--reason", "5xx on r2307", "--config", cfg_path)
        assert off.returncode == 0, off.stderr
        done = run_cli("deploy", "--yes", "--config", cfg_path)
        assert done.returncode == 0, done.stdout + done.stderr
        revisions = {(h / "REVISION").read_text().strip() for h in (directory / "hosts").iterdir()}
        assert revisions == {STAGED_REVISION}
    finally:
        stop_servers(tmp_path)
        stop_fleet(proc)


async def test_a_new_demo_keeps_a_finished_deploy_in_its_history_and_still_opens_ready_to_ship_r2307(tmp_path):
    """cmd_demo's own steps before the app (staging through the server, then the past deploy), then the app as
    the demo opens it: the record has deploy #1 (r2305 -> r2306 by alice, an hour ago, done), and the app starts the
    story as it did before the demo had a past: nothing deploying, r2306 -> r2307 to ship."""
    import asyncio
    import time

    from controlroom.cli.demo import past_first, stage_first
    from controlroom.config import config
    from tests.app.test_app_actions import SIZE, make_app, start, until

    directory = tmp_path / "fleet"
    proc = start_fleet(directory, 4, None, deadline=60)
    try:
        cfg = config.load(directory / "controlroom.toml")
        await asyncio.to_thread(stage_first, cfg)  # as the demo does it: from outside the app's loop
        past_first(cfg)
        past_first(cfg)  # a second demo on the same fleet adds no second past
        history = run_cli("history", "--config", str(cfg.path)).stdout
        deploys = [line for line in history.splitlines() if "deploy #" in line]
        assert len(deploys) == 1 and "alice" in deploys[0] and "r2305 -> r2306" in deploys[0], history
        assert "DEPLOY OK r2306" in deploys[0], history
        timeline = run_cli("timeline", "1", "--config", str(cfg.path)).stdout
        for said in ("deploy r2305 -> r2306 started by alice (3 phases, 4 hosts)", "phase canary started (2 hosts)",
                     "web004 done r2306", "check errors_5xx < 5{r2306}: 0.1 passed",
                     "gate before stage 1 passed by alice", "DEPLOY OK r2306 on 4 of 4 hosts"):
            assert said in timeline, (said, timeline)
        # the past deploy's change is counted (r2305 is in the demo's repository): the deploy log's title line
        stats = run_cli("stats", "--config", str(cfg.path)).stdout
        assert "In the last 7 days: 1 deploy of 1 change by 1 person" in stats.splitlines()[0], stats
        stamps = [line for line in timeline.splitlines() if "started by alice" in line]
        assert stamps and time.strftime("%Y-%m-%d", time.localtime(time.time() - 3600)) in stamps[0], stamps
        app = make_app(None, config_path=cfg.path)
        async with app.run_test(size=SIZE) as pilot:
            await start(pilot)
            assert app.board.status is None and not app.board.rollout_id  # READY: the story begins
            assert (app.room.live, app.room.staged) == ("r2306", "r2307")
            await until(pilot, lambda: any("DEPLOY OK r2306 on 4 of 4 hosts" in line for line in app.log_lines),
                        "the past deploy in the deploy log")
    finally:
        from tests.servers import stop_server

        stop_server(cfg.state.dir)
        stop_fleet(proc)
