"""The gate keeper (engine/gates.py GateKeeper) built outside the engine: it asks the metrics source it is given (the
server's, shared with the metrics pane) and records through the recorder it is bound to. The simulated fleet's own
metrics over real HTTP, a real journal in a temp dir."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from controlroom.config import config
from controlroom.core import events as ev
from controlroom.core.identity import Actor
from controlroom.engine import gates
from controlroom.journal.journal import Journal
from controlroom.sources.metrics import make_source
from tests.unit.engine.test_hostwork import a_rollout_on_record


async def test_the_keeper_asks_the_shared_source_it_is_given_and_leaves_it_open(metrics_fleet, tmp_path):
    cfg = config.load(metrics_fleet.config_path)
    journal = Journal.open(tmp_path / "state")
    record, _ = a_rollout_on_record(journal, cfg)
    canary = cfg.phases[0]
    assert canary.gate, "the metrics fleet gates its canary"
    shared = make_source(cfg.metrics)
    asked = []

    def source():
        asked.append(1)
        return shared

    keeper = gates.keeper_for(cfg, journal, source=source)
    assert keeper is not None and keeper.source is source
    keeper.bind(record, cfg.phases, lambda: False)
    seen: list[ev.Event] = []
    record.subscribe(seen.append)
    try:
        for _ in range(2):
            ok, lines, verdicts = await asyncio.wait_for(keeper.recheck(canary, Actor("alice")), 30)
            assert [v.gate for v in verdicts] == list(canary.gate)
            assert all(isinstance(v, ev.GateVerdict) and v.op and v.series for v in verdicts)
            assert lines[:len(canary.gate)] == [v.text(canary.name) for v in verdicts]
        assert len(asked) == 2, "one round, one look at the shared source"
        spec = cfg.metrics.spec(verdicts[0].series)
        await asyncio.wait_for(shared.samples(spec), 30)  # still open: the keeper never closed it
    finally:
        await shared.aclose()
    assert seen == [], "a recheck logs its verdicts; it announces nothing by itself"
    gate_lines = [e for e in journal.log() if e.kind == "GATE"]
    assert len(gate_lines) == 2 * len(canary.gate) and {e.user for e in gate_lines} == {"alice"}
    with sqlite3.connect(tmp_path / "state" / "journal.db") as db:
        checks = [json.loads(d) for (d,) in db.execute("SELECT data FROM events WHERE type = 'GateEvaluated'")]
    assert len(checks) == 2 * len(canary.gate) and {c["rollout_id"] for c in checks} == {record.rollout_id}


def test_without_a_gated_phase_there_is_no_keeper(make_fleet, tmp_path):
    cfg = config.load(make_fleet(2).config_path)
    assert not any(p.gate for p in cfg.phases)
    assert gates.keeper_for(cfg, Journal.open(tmp_path / "state")) is None


def test_a_verdict_travels_as_a_structure_and_one_journaled_before_kill_switches_still_reads():
    v = ev.GateVerdict("errors_5xx < 5", "errors_5xx", "r2307", 7.9, "<", 5.0, ev.GateState.FAILED, "",
                       ("new_search",))
    ok = ev.GateVerdict("p95_ms < 400", "p95_ms", "", 120.0, "<", 400.0, ev.GateState.PASSED)
    w = ev.GateWaiting(1, phase=1, name="stage 1", reason="for people; never split", kind=ev.GATE_FAILED,
                       failed=("errors_5xx < 5",), verdicts=(v, ok))
    back = ev.from_wire(json.loads(json.dumps(ev.to_wire(w))))
    assert back == w
    assert back.not_holding() == [v] and back.failed_series() == ["errors_5xx"]
    assert back.not_holding()[0].kill_switches == ("new_search",)
    assert v.text("canary") == "GATE canary: errors_5xx{r2307} = 7.9 (max 5): FAILED"
    assert ok.text("canary") == "GATE canary: p95_ms = 120 (max 400): PASSED"
    old = ev.GateWaiting(1, phase=1, name="stage 1", reason="", kind=ev.GATE_FAILED, failed=("errors_5xx < 5",),
                         verdicts=(tuple(v)[:8],))
    assert old.verdict_list()[0].kill_switches == () and old.failed_series() == ["errors_5xx"]
    assert gates.judge("errors_5xx < 5", {"r2307": 7.9}, "r2307").wire(("new_search",)) == v
