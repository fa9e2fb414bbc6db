"""`controlroom history`, `timeline` and `stats` as a person runs them (a subprocess, the exit status, stdout and
the one error line), on a journal filled through its write API and a real git repository."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.records import PHASES, Recorder

CONFIG = """\
[inventory]
hosts = ["web001", "web002", "web003", "web004", "web005", "web006"]
[inventory.ssh]
known_hosts = "known_hosts"
[release]
repo = "repo"
[deploy]
steps = ["true"]
[flags.new_search]
kind = "kill_switch"
default = "off"
[state]
dir = "state"
"""


def git(repo: Path, *args: str, at: float | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "dev", "GIT_COMMITTER_NAME": "dev",
           "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_EMAIL": "dev@example.com"}
    if at is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{int(at)} +0000"
    subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Three deploys of the last hours: #1 r2305 -> r2306 by alice (well), #2 r2306 -> r2307 by bob (the demo
    story: its gate fails, the kill switch, done), #3 r2307 -> r2308 by alice (the canary fails, rolled back);
    a stage of each, a failed one; a flag change with an escape sequence in its reason."""
    d = tmp_path_factory.mktemp("history")
    (d / "controlroom.toml").write_text(CONFIG)
    (d / "known_hosts").write_text("")
    repo = d / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    t0 = time.time() - 6 * 3600
    for k, (tag, n) in enumerate((("r2305", 1), ("r2306", 2), ("r2307", 3), ("r2308", 1))):
        for i in range(n):
            (repo / "f").write_text(f"{tag} {i}")
            git(repo, "add", "f")
            git(repo, "commit", "-q", "-m", f"{tag} {i}", at=t0 - 3600 + k * 600 + i)
        git(repo, "tag", tag)
    mp = pytest.MonkeyPatch()
    rec = Recorder(d / "state", mp)
    try:
        rec.stage(t0, "alice", "r2306")
        rec.simple(t0 + 60, "r2306", "r2305", "alice")
        rec.stage(t0 + 3600, "bob", "r2307x", ok=False, reason="exit 2")
        rec.stage(t0 + 3700, "bob", "r2307")
        rec.demo_story(t0 + 3800, user="bob")
        rec.flag(t0 + 7200, "new_search", "on", "carol", "back on \x1b[2J\x1b]0;owned\x07")
        rec.stage(t0 + 7300, "alice", "r2308")
        rec.start(t0 + 7400, "r2308", "r2307", "alice")
        rec.phase(t0 + 7401, 0, *PHASES[0], fail=("web001",))
        rec.halt(t0 + 7403, 0, "canary", ("web001",))
        rec.log(t0 + 7404, "NOTE", "looking at it \x1b[31m now")
        rec.rollback(t0 + 7420, "carol", ("web001",))
    finally:
        rec.close()
        mp.undo()
    return d


def cr(site: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=site, env={"SUDO_USER": "mygrant", "NO_COLOR": "1"})


def one_line_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("controlroom: ") and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_history_newest_first_with_who_what_result_and_duration(site):
    res = cr(site, "history")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "\x1b" not in res.stdout
    whats = [line[21:].split(None, 1)[1] for line in lines]  # after the time and the person
    assert whats[0].startswith("rollback of deploy #3 (r2308 -> r2307)  ROLLBACK DONE on 1 hosts")
    assert whats[1].startswith("deploy #3 r2307 -> r2308  DEPLOY HALTED at canary")
    assert any(w.startswith("flag new_search on -> off: kill switch: errors  confirmed 6/6") for w in whats)
    assert any(w.startswith("deploy #2 r2306 -> r2307  DEPLOY OK r2307") for w in whats)
    assert any(w.startswith("stage r2307x  STAGE FAILED: exit 2  (12 s)") for w in whats)
    assert whats[-1].startswith("stage r2306  STAGE OK")
    assert "back on ^[[2J^[]0;owned^G" in res.stdout  # a flag's reason shown, never sent to the terminal
    stamps = [line[:19] for line in lines]
    assert stamps == sorted(stamps, reverse=True)


def test_history_filters_and_json(site):
    res = cr(site, "history", "--user", "bob", "--json")
    assert res.returncode == 0, res.stderr
    items = json.loads(res.stdout)
    assert {i["user"] for i in items} == {"bob"} and {i["kind"] for i in items} == {"deploy", "stage", "flag"}
    assert set(items[0]) == {"kind", "id", "at", "user", "what", "result", "ok", "seconds"}
    failed = json.loads(cr(site, "history", "--failed", "--json").stdout)
    assert sorted((i["kind"], i["id"]) for i in failed) == [("deploy", 3), ("stage", 2)]
    assert json.loads(cr(site, "history", "--since", "1m", "--json").stdout) == []
    assert len(json.loads(cr(site, "history", "--since", "7d", "--json").stdout)) == len(
        json.loads(cr(site, "history", "--json").stdout))
    assert "--since 'yesterday'" in one_line_error(cr(site, "history", "--since", "yesterday"))


def test_timeline_of_a_deploy_every_event_with_time_person_and_values(site):
    res = cr(site, "timeline", "#2")
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0].startswith("deploy #2 r2306 -> r2307 by bob: done, ")
    assert out[1] == "flags at its start: new_search on"
    body = "\n".join(out[2:])
    assert "phase stage 1 started (2 hosts)" in body
    assert "web002 done r2307" in body
    assert "waiting before phase stage 2 (gate): gate errors_5xx < 5 failed [errors_5xx < 5{r2307} = 7.5 failed]" in body
    assert "carol" in body and "flag new_search on -> off (v2): kill switch: errors; confirmed 6/6" in body
    assert body.splitlines()[-1].endswith("DEPLOY OK r2307 on 6 of 6 hosts")
    assert [line for line in out if " ! " in line[:26]]  # the failures are marked
    assert cr(site, "timeline", "2").stdout == res.stdout
    last = cr(site, "timeline", "last")
    assert last.returncode == 0 and last.stdout.startswith("deploy #3 r2307 -> r2308 by alice: rolled_back")
    assert "\x1b" not in last.stdout and "looking at it ^[[31m now" in last.stdout


def test_timeline_markdown_and_json(site):
    md = cr(site, "timeline", "2", "--markdown")
    assert md.returncode == 0, md.stderr
    lines = md.stdout.splitlines()
    assert lines[0] == "## Deploy #2" and lines[2] == "| time | who | what |"
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[4:])
    js = json.loads(cr(site, "timeline", "2", "--json").stdout)
    assert js["deploy"]["id"] == 2 and js["flags_at_start"] == {"new_search": "on"}
    assert js["end"]["status"] == "done" and js["end"]["hosts"]["web006"]["state"] == "done"
    e = js["events"][0]
    assert set(e) == {"index", "id", "at", "type", "kind", "user", "failure", "text", "values"}


def test_an_unknown_deploy_names_what_exists(site):
    assert one_line_error(cr(site, "timeline", "#9")) == "controlroom: there is no deploy #9; the record has #1-#3"
    assert "the record has #1-#3" in one_line_error(cr(site, "timeline", "nine"))


def test_stats_says_the_line_and_the_four(site):
    res = cr(site, "stats")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    # changes: #1 r2305..r2306 2 commits, #2 r2306..r2307 3, #3 r2307..r2308 1
    assert lines[0] == "In the last 7 days: 3 deploys of 6 changes by 2 people"
    assert lines[1] == "deploys per day: 0.43"
    assert lines[2].startswith("lead time for changes: median ") and "(5 commits)" in lines[2]
    assert lines[3] == "change failure rate: 67% (2 of 3): #2 kill switch new_search; #3 rolled back"
    assert lines[4].startswith("time to restore: median ") and "(2 restored)" in lines[4]
    js = json.loads(cr(site, "stats", "--days", "1", "--json").stdout)
    assert js["deploys"] == 3 and js["changes"] == 6 and js["change_failure_rate"]["failed"] == 2
    assert "--days must be more than 0" in one_line_error(cr(site, "stats", "--days", "0"))


def test_the_record_of_a_real_deploy_and_rollback_on_the_simulated_fleet(make_fleet):
    """A deploy and its rollback over real SSH, then their record as the commands read it back."""
    fleet = make_fleet(hosts=4)
    env = {"SUDO_USER": "mygrant", "NO_COLOR": "1"}
    assert run_cli("deploy", "--yes", cwd=fleet.dir, env=env).returncode == 0
    assert run_cli("rollback", "--yes", cwd=fleet.dir, env=env).returncode == 0
    res = run_cli("timeline", "last", cwd=fleet.dir, env=env)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("deploy #1 ") and " by mygrant: rolled_back, " in out.splitlines()[0]
    for host in ("web001", "web004"):
        assert f"{host} done " in out and f"{host} rolling_back" in out and f"{host} rolled_back" in out
    assert "DEPLOY START" in out and "DEPLOY OK" in out and "ROLLBACK START" in out and "ROLLBACK DONE" in out
    hist = json.loads(run_cli("history", "--json", cwd=fleet.dir, env=env).stdout)
    assert [(i["kind"], i["id"]) for i in hist] == [("rollback", 1), ("deploy", 1)]
    assert hist[0]["ok"] is True and hist[1]["result"].startswith("DEPLOY OK")
    js = json.loads(run_cli("timeline", "1", "--json", cwd=fleet.dir, env=env).stdout)
    assert {h["state"] for h in js["end"]["hosts"].values()} == {"rolled_back"}
    stats = json.loads(run_cli("stats", "--json", cwd=fleet.dir, env=env).stdout)
    assert stats["deploys"] == 1 and stats["change_failure_rate"]["deploys"] == {"1": ["rolled back"]}
    # restored: from the rollback's start to its end
    back = [e for e in js["events"] if e["type"] in ("OperatorAction", "RolloutFinished")]
    assert stats["time_to_restore"]["median"] == pytest.approx(back[-1]["at"] - back[-2]["at"])
