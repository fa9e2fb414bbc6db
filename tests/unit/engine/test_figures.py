"""The team's figures from a journal filled with known deploys (through its write API) and a real git repository
with known commit times, checked against the figures worked out by hand; missing data is said, never 0."""

from __future__ import annotations

import os
import statistics
import subprocess
from pathlib import Path

import pytest

from controlroom.core import events as ev
from controlroom.engine import figures
from tests.records import PHASES, Recorder

T = 1_790_000_000.0
DAY = 86400.0
NOW = T + 7 * DAY - 1000  # the window is [T - 1000, NOW]


def git(repo: Path, *args: str, at: float | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "dev", "GIT_COMMITTER_NAME": "dev",
           "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_EMAIL": "dev@example.com"}
    if at is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{int(at)} +0000"
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


# commit times, and the tag each revision's last commit gets
COMMITS = {
    "r1": [T - 5 * DAY],
    "r2": [T + 1000, T + 5000],
    "r3": [T + DAY + 500],
    "r4": [T + 2 * DAY + 100, T + 2 * DAY + 200, T + 2 * DAY + 300],
    "r5": [T + 3 * DAY + 50],
}


@pytest.fixture
def repo(tmp_path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    k = 0
    for tag, times in COMMITS.items():
        for at in times:
            k += 1
            (r / "f").write_text(str(k))
            git(r, "add", "f")
            git(r, "commit", "-q", "-m", f"change {k}", at=at)
        git(r, "tag", tag)
    return r


@pytest.fixture
def journal(tmp_path, monkeypatch):
    rec = Recorder(tmp_path / "state", monkeypatch)
    t = {}
    # #1: ten days ago, outside the window
    rec.simple(T - 3 * DAY, "r1", None, "zed")
    # #2: r1 -> r2 by alice, all well
    rec.simple(T + DAY, "r2", "r1", "alice")
    t["shipped2"] = rec.last_done
    # #3: r2 -> r3 by bob: the demo story (its gate fails, the kill switch new_search goes off, the gate holds)
    t["story"] = rec.demo_story(T + 2 * DAY, user="bob", revision="r3", previous="r2")
    # #4: r3 -> r4 by alice: the canary fails, the phase halts, rolled back
    rec.start(T + 3 * DAY, "r4", "r3", "alice")
    rec.phase(T + 3 * DAY + 1, 0, *PHASES[0], fail=("web001",))
    t["halt4"] = T + 3 * DAY + 3
    rec.halt(t["halt4"], 0, "canary", ("web001",))
    t["back4"] = rec.rollback(T + 3 * DAY + 40, "alice", ("web001",))
    # #5: r5 by carol, its previous revision unknown to the journal
    rec.simple(T + 4 * DAY, "r5", None, "carol")
    t["shipped5"] = rec.last_done
    yield rec, t
    rec.close()


def test_the_figures_of_a_known_week(journal, repo):
    rec, t = journal
    f = figures.compute(rec.j.db, repo, days=7, now=NOW, kill_switches={"new_search"})
    d = f.to_dict()
    # four deploys (#2-#5) by three people; changes: #2 2 commits, #3 1, #4 3; #5 has no previous revision
    assert d["deploys"] == 4 and d["people"] == 3 and d["changes"] == 6
    assert d["changes_unknown"] == {"5": "#5 has no previous revision"}
    assert f.line() == ("In the last 7 days: 4 deploys of 6 changes (and unknown ones in 1 deploy: #5 has no"
                        " previous revision) by 3 people")
    assert d["deploys_per_day"] == pytest.approx(4 / 7)
    # lead time: #2's two commits and #3's one, to the time their last host ran them (#4 reached no host)
    leads = sorted([t["shipped2"] - COMMITS["r2"][0], t["shipped2"] - COMMITS["r2"][1],
                    t["story"]["last_done"] - COMMITS["r3"][0]])
    assert d["lead_time"] == {"median": pytest.approx(statistics.median(leads)), "p90": pytest.approx(leads[2]),
                              "commits": 3}
    # change failure rate: #3 needed a kill switch, #4 was rolled back
    assert d["change_failure_rate"] == {"rate": 0.5, "failed": 2, "of": 4,
                                        "deploys": {"3": ["kill switch new_search"], "4": ["rolled back"]}}
    # time to restore: #3 from its failed gate to the gate holding again, #4 from its halt to the rollback done
    restores = [t["story"]["held"] - t["story"]["gate_failed"], t["back4"] - t["halt4"]]
    assert d["time_to_restore"] == {"median": pytest.approx(statistics.median(restores)), "restored": 2,
                                    "not_restored": 0}
    text = f.text()
    assert text[0] == f.line()
    assert text[3] == "change failure rate: 50% (2 of 4): #3 kill switch new_search; #4 rolled back"


def test_a_narrower_window(journal, repo):
    rec, _ = journal
    f = figures.compute(rec.j.db, repo, days=2, now=T + 4 * DAY + 100, kill_switches={"new_search"})
    assert [d.id for d in f.deploys] == [4, 5]
    assert f.to_dict()["changes"] == 3


def test_what_is_missing_is_unknown_never_zero(journal, tmp_path):
    rec, _ = journal
    f = figures.compute(rec.j.db, None, days=7, now=NOW)
    d = f.to_dict()
    assert d["changes"] is None and "unknown changes (no [release] repo)" in f.line()
    assert d["lead_time"] == {"unknown": "no commits known (no [release] repo)"}
    # without the config's kill switches, #3 is no failure
    assert d["change_failure_rate"]["failed"] == 1
    # a repository without these revisions: said per deploy
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    d = figures.compute(rec.j.db, empty, days=7, now=NOW).to_dict()
    assert d["changes"] is None and "r1 is not in the repository" in d["changes_unknown"]["2"]
    # nothing in the window at all
    none = figures.compute(rec.j.db, None, days=1, now=T + 30 * DAY)
    assert none.line() == "In the last 1 day: no deploys"
    nd = none.to_dict()
    assert nd["lead_time"] == {"unknown": "no deploys"} and nd["change_failure_rate"] == {"unknown": "no deploys"}
    assert nd["time_to_restore"] == {"unknown": "no failed deploys"}


def test_an_unrestored_failure(tmp_path, monkeypatch):
    rec = Recorder(tmp_path / "state", monkeypatch)
    try:
        rec.start(T, "r2", "r1", "alice")
        rec.phase(T + 1, 0, *PHASES[0], fail=("web001",))
        rec.halt(T + 3, 0, "canary", ("web001",))
        rec.finish(T + 10, status=ev.R_FAILED, done=0, failed=1)
        d = figures.compute(rec.j.db, None, days=1, now=T + 100).to_dict()
        assert d["change_failure_rate"]["deploys"] == {"1": ["failed"]}
        assert d["time_to_restore"] == {
            "unknown": "none of the 1 failed deploys was restored (rolled back or its gate holding again)"}
    finally:
        rec.close()


def test_p90_by_nearest_rank():
    assert figures.p90([5.0]) == 5.0
    assert figures.p90([float(i) for i in range(1, 11)]) == 9.0
    assert figures.p90([float(i) for i in range(1, 12)]) == 10.0
