"""The suspect a failed gate names (engine/breach.py): a deploy written into a real journal, the series' history
answered by a metrics server on 127.0.0.1 (an outside system), judged by engine/suspects.py."""

from __future__ import annotations

import json
import time

from controlroom.config.settings import MetricsSettings, SeriesSpec
from controlroom.core import events as ev
from controlroom.engine.breach import BreachJudge
from tests.records import CANARY, Recorder
from tests.servers import closed_port
from tests.unit.engine.test_metrics import Answers

ERRORS = SeriesSpec("errors_5xx", "sum(rate(x[1m]))", max=5, unit="%", split="revision")
FAILED = (ev.GateVerdict("errors_5xx < 5", "errors_5xx", "r2307", 7.5, "<", 5.0, "failed"),)


def settings(url: str) -> MetricsSettings:
    return MetricsSettings(source="prometheus", url=url, interval=2.0, timeout=5.0, series=(ERRORS,))


def matrix(lines: dict[str, list[tuple[float, float]]]) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"revision": rev}, "values": [[t, repr(v)] for t, v in pts]} for rev, pts in lines.items()]}})


def canary_deploy(tmp_path, monkeypatch) -> tuple[Recorder, float]:
    """r2306 -> r2307 started 60 s ago; the canary (web001) took r2307 at once; new_search on by default."""
    rec = Recorder(tmp_path / "state", monkeypatch)
    began = time.time() - 60
    rec.start(began, "r2307", "r2306", "alice")
    rec.phase(began + 1, 0, *CANARY)
    return rec, began + 1


async def test_a_new_revision_whose_errors_rose_against_the_rest_names_the_canarys_start_with_the_flags(
        tmp_path, monkeypatch):
    rec, canary = canary_deploy(tmp_path, monkeypatch)
    now = time.time()
    old = [(t, 0.1 + (t % 7) / 100) for t in range(int(canary) - 100, int(now), 2)]
    new = [(t, 7.5 + (t % 5) / 10) for t in range(int(canary) + 2, int(now), 2)]
    async with Answers({"/api/v1/query_range": [(200, matrix({"r2306": old, "r2307": new}))]}) as srv:
        judge = BreachJudge(settings(f"http://127.0.0.1:{srv.port}"), rec.j, flags={"new_search": "on"})
        [named] = await judge.judge(rec.rid, 1, FAILED)
        assert (named.verdict, named.series, named.phase) == (ev.SUSPECT, "errors_5xx", 1)
        assert named.what == "canary started (r2307) (new_search on)" and named.since == canary
        assert named.p is not None and named.p < 0.001
        assert named.line().startswith("suspect: errors_5xx higher on r2307 hosts than on r2306 hosts after ")
        assert "when canary started (r2307) (new_search on); r2306 hosts unchanged; p < 0.001" in named.line()
        assert "step=2" in srv.asked[0][0]  # the history at the gate's own interval
        # judged again with nothing new: said again only when asked for every judgement
        assert await judge.judge(rec.rid, 1, FAILED, only_changed=True) == []
    rec.close()


async def test_with_too_few_points_of_the_new_revision_it_says_it_cannot_tell_never_a_guess(tmp_path, monkeypatch):
    rec, canary = canary_deploy(tmp_path, monkeypatch)
    now = time.time()
    old = [(t, 0.1) for t in range(int(canary) - 100, int(now), 2)]
    async with Answers({"/api/v1/query_range": [(200, matrix({"r2306": old, "r2307": [(now - 1, 8.0)]}))]}) as srv:
        [named] = await BreachJudge(settings(f"http://127.0.0.1:{srv.port}"), rec.j).judge(rec.rid, 1, FAILED)
    assert named.verdict == ev.UNKNOWN_SUSPECT and named.what == "" and named.p is None
    assert named.line().startswith("suspect: unknown: errors_5xx on r2307 hosts after ")
    assert "too few points after it (1; 3 needed): cannot tell" in named.line()
    rec.close()


async def test_a_source_that_cannot_answer_leaves_the_suspect_unknown_saying_why(tmp_path, monkeypatch):
    rec, _ = canary_deploy(tmp_path, monkeypatch)
    judge = BreachJudge(settings(f"http://127.0.0.1:{closed_port()}"), rec.j)
    [named] = await judge.judge(rec.rid, 1, FAILED)
    assert named.verdict == ev.UNKNOWN_SUSPECT
    assert named.line().startswith("suspect: unknown: errors_5xx: its history could not be read ("), named.line()
    passed = (FAILED[0]._replace(state="passed", value=1.0),)
    assert await judge.judge(rec.rid, 1, passed) == []  # only a failed series has a suspect
    rec.close()
