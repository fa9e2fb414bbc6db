"""Every answer of a metrics source is checked (issue 15): a source on 127.0.0.1 that answers JSON of the wrong
shape, values that are not finite numbers, two series with one label, an answer that drips for ever, an answer of
100 MB and a redirect. Each is `unknown: <why>` for its series and the gate waits; nothing raises past the source."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from controlroom.cli import metrics as metricscli
from controlroom.config import config as config_mod
from controlroom.config.settings import MetricsSettings, SeriesSpec
from controlroom.demo.fleet import Fleet
from controlroom.engine import gates
from controlroom.journal.journal import Journal
from controlroom.sources.metrics import GraphiteSource, MetricsError, PrometheusSource
from tests.conftest import run_cli
from tests.hostile_source import HostileSource
from tests.unit.engine.test_rollout import NEW, revision_of
from tests.waiting import wait_for

ERRORS = SeriesSpec("errors_5xx", "sum(rate(x[1m]))", max=5, unit="%", split="revision")


def settings(url: str, **kw) -> MetricsSettings:
    return MetricsSettings(source=kw.pop("source", "prometheus"), url=url, interval=1.0, series=(ERRORS,), **kw)


def vector(*items) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(items)}})


def ask(s: MetricsSettings, spec: SeriesSpec = ERRORS, **kw) -> dict[str, float]:
    """What the source says the series is now (raises MetricsError); bounded so a hang fails the test."""
    async def go():
        cls = GraphiteSource if s.source == "graphite" else PrometheusSource
        async with cls(s, backoff=0.01, **kw) as src:
            return await src.current(spec)

    return asyncio.run(asyncio.wait_for(go(), 30))


def gate(s: MetricsSettings, *exprs: str) -> list[gates.Verdict]:
    return asyncio.run(asyncio.wait_for(gates.evaluate(s, exprs, backoff=0.01), 30))


WRONG_SHAPES = {
    "a sample without its value": vector({"metric": {"revision": "r2307"}}),
    "a value that is not a pair": vector({"metric": {"revision": "r2307"}, "value": "7.9"}),
    "a result item that is a number": vector(5),
    "labels that are a string": vector({"metric": "r2307", "value": [1, "7.9"]}),
    "a value that is a number, not a string": vector({"metric": {}, "value": [1, 7.9]}),
    "an empty scalar": json.dumps({"status": "success", "data": {"resultType": "scalar", "result": []}}),
    "a result that is an object": json.dumps({"status": "success", "data": {"resultType": "vector", "result": {}}}),
    "JSON nested deeper than Python recurses": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("shape", list(WRONG_SHAPES))
def test_a_prometheus_answer_of_the_wrong_shape_is_unknown_naming_why_never_an_exception(shape):
    with HostileSource(WRONG_SHAPES[shape]) as src:
        with pytest.raises(MetricsError) as e:
            ask(settings(src.url))
        why = str(e.value)
        assert why.startswith(("the answer is not a Prometheus answer", "the source's answer is not a Prometheus",
                               "HTTP 200 answer is not JSON")), why
        [verdict] = gate(settings(src.url), "errors_5xx < 5")
        assert (verdict.state, verdict.why) == (gates.UNKNOWN, why)
        assert verdict.text("canary") == f"GATE canary: errors_5xx < 5: UNKNOWN ({why})"


GRAPHITE_SHAPES = {
    "a datapoint of one number": [{"target": "e", "datapoints": [[1]]}],
    "datapoints that are a string": [{"target": "e", "datapoints": "1,2"}],
    "a value that is a string": [{"target": "e", "datapoints": [["7.9", 100]]}],
    "a target that is not an object": ["e"],
}


@pytest.mark.parametrize("shape", list(GRAPHITE_SHAPES))
def test_a_graphite_answer_of_the_wrong_shape_is_unknown_naming_why(shape):
    with HostileSource(json.dumps(GRAPHITE_SHAPES[shape])) as src:
        s = settings(src.url, source="graphite")
        with pytest.raises(MetricsError, match=r"^the answer is not a Graphite render answer: \[0\]"):
            ask(s)
        [verdict] = gate(s, "errors_5xx < 5")
        assert verdict.state == gates.UNKNOWN and verdict.why.startswith("the answer is not a Graphite render")


def test_the_cli_says_unknown_and_why_for_a_series_whose_answer_has_the_wrong_shape():
    with HostileSource(WRONG_SHAPES["a sample without its value"]) as src:
        s = settings(src.url)
        table = asyncio.run(metricscli.rows(type("Cfg", (), {"metrics": s})(), 10))
    assert [r[4] for r in table] == ['unknown: the answer is not a Prometheus answer: result[0].value is not a '
                                     '[time, value] pair']


@pytest.mark.parametrize(("value", "shown"), [("+Inf", "+Inf"), ("-Inf", "-Inf")])
def test_a_value_that_is_not_a_finite_number_never_passes_a_gate_in_either_direction(value, shown):
    body = vector({"metric": {"revision": "r2307"}, "value": [time.time(), value]})
    with HostileSource(body) as src:
        below, above = gate(settings(src.url), "errors_5xx < 5", "errors_5xx > 1")
    assert below.state == above.state == gates.UNKNOWN, (below, above)
    assert below.why.startswith(f"errors_5xx is {shown}")


def test_a_graphite_infinity_is_unknown_too():
    with HostileSource('[{"target": "e", "datapoints": [[1e999, 100]]}]') as src:
        [v] = gate(settings(src.url, source="graphite"), "errors_5xx > 1")
    assert (v.state, v.why) == (gates.UNKNOWN, "errors_5xx is +Inf, not a finite number")


def test_two_series_with_one_revision_are_judged_by_the_worse_one_whichever_comes_first():
    bad = {"metric": {"revision": "r2307", "instance": "web001"}, "value": [time.time(), "7.9"]}
    good = {"metric": {"revision": "r2307", "instance": "web002"}, "value": [time.time(), "0.5"]}
    for order in ((bad, good), (good, bad)):
        with HostileSource(vector(*order)) as src:
            [v] = gate(settings(src.url), "errors_5xx < 5")
            now = ask(settings(src.url))
        assert (v.state, v.line, v.value) == (gates.FAILED, "r2307", 7.9)
        assert now == {"r2307": 7.9}


def test_a_failing_series_beside_one_that_is_nan_with_the_same_label_fails_the_gate():
    nan = {"metric": {"revision": "r2307", "instance": "web001"}, "value": [time.time(), "NaN"]}
    bad = {"metric": {"revision": "r2307", "instance": "web002"}, "value": [time.time(), "9"]}
    with HostileSource(vector(bad, nan)) as src:
        [v] = gate(settings(src.url), "errors_5xx < 5")
        now = ask(settings(src.url))
    assert (v.state, v.value) == (gates.FAILED, 9.0) and now == {"r2307": 9.0}


def test_an_answer_that_drips_for_ever_ends_at_the_deadline_for_the_whole_answer():
    with HostileSource(vector(), drip=True) as src:
        with pytest.raises(MetricsError) as e:
            ask(settings(src.url), timeout=1.0, retries=2)
        assert len(src.asked) == 2  # each try had the deadline, and each ended
    assert str(e.value) == "no whole answer in 1 s, 2nd try"


def test_an_answer_of_100_mb_is_given_up_at_the_cap_without_being_read():
    body = vector({"metric": {"revision": "r2307"}, "value": [time.time(), "0.1"]})
    with HostileSource(body, size=100 * 1024 * 1024) as src:
        with pytest.raises(MetricsError, match=r"^the answer is larger than 4 MiB: not read on$"):
            ask(settings(src.url))
    assert src.sent < 100 * 1024 * 1024  # it stopped sending when we stopped reading


def test_a_redirect_is_not_followed_and_its_body_is_not_the_answer():
    looks_good = vector({"metric": {"revision": "r2307"}, "value": [time.time(), "0.1"]})
    with HostileSource(looks_good, status=302, headers={"Location": "/elsewhere"}) as src:
        with pytest.raises(MetricsError, match=r"^HTTP 302: the source redirects, and redirects are not followed"):
            ask(settings(src.url))
        [v] = gate(settings(src.url), "errors_5xx < 5")
        assert len(src.asked) == 2 and not any("elsewhere" in a for a in src.asked)
    assert v.state == gates.UNKNOWN and v.why.startswith("HTTP 302")


# ----------------------------------------------------------------------------------------------- a deploy


ME = {"SUDO_USER": "mygrant"}


def gate_source(fleet: Fleet, url: str, *, bake: str | None = '"2s"', timeout: str | None = None) -> None:
    """The fleet's config with its gate's source at url (the canary's bake as given, none when None)."""
    text = re.sub(r'url = "http://127\.0\.0\.1:\d+"', f'url = "{url}"', fleet.config_path.read_text())
    text = re.sub(r'^bake = "\d+s"\n', f"bake = {bake}\n" if bake else "", text, flags=re.M)
    if timeout:
        text = text.replace('interval = "2s"', f'interval = "2s"\ntimeout = "{timeout}"')
    fleet.config_path.write_text(text)


def ask_server(fleet: Fleet, op: str) -> dict:
    from controlroom.server.client import connect

    async def go():
        c = await connect(config_mod.load(fleet.config_path))
        try:
            # this test's process is root, not the deploy's driver (mygrant): it acts anyway, as a teammate would
            return await c.request(op, anyway=True)
        finally:
            await c.close()

    return asyncio.run(go())


def lock_released(fleet: Fleet) -> bool:
    journal = Journal.open(fleet.dir / "state")
    try:
        return journal.lock() is None
    finally:
        journal.close()


@pytest.mark.slow
def test_a_deploy_whose_gate_source_answers_the_wrong_shape_waits_at_the_gate_saying_why_and_abort_ends_it(
        metrics_fleet):
    fleet = metrics_fleet
    with HostileSource(WRONG_SHAPES["a sample without its value"]) as src:
        gate_source(fleet, src.url)
        res = run_cli("deploy", "--yes", "--auto", cwd=fleet.dir, env=ME)
        assert "internal error" not in res.stdout + res.stderr, res.stdout + res.stderr
        assert res.returncode == 1, res.stdout + res.stderr
        why = "the answer is not a Prometheus answer: result[0].value is not a [time, value] pair"
        stopped = [line for line in res.stdout.splitlines() if line.startswith("stopped at a gate")]
        assert len(stopped) == 1 and f"GATE canary: errors_5xx < 5: UNKNOWN ({why})" in stopped[0], res.stdout
        assert f"GATE r2307 canary: errors_5xx < 5: UNKNOWN ({why})" in run_cli("log", cwd=fleet.dir, env=ME).stdout
        assert [h.name for h in fleet.hosts if revision_of(fleet, h.name) == NEW] == ["web001", "web002"]
        assert not lock_released(fleet)  # the deploy waits at the gate, the fleet locked for it

        ask_server(fleet, "abort")
        wait_for(lambda: lock_released(fleet), 30, "the fleet lock released after the abort")
    log = run_cli("log", cwd=fleet.dir, env=ME).stdout
    assert "ABORT" in log and "stale" not in log, log
    assert [h.name for h in fleet.hosts if revision_of(fleet, h.name) == NEW] == ["web001", "web002"]


@pytest.mark.slow
def test_abort_ends_a_gate_check_while_the_source_drips_its_answer(metrics_fleet):
    fleet = metrics_fleet
    with HostileSource(vector(), drip=True) as src:
        gate_source(fleet, src.url, bake=None)  # no bake: the first question the source gets is the gate's check
        deploy = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "deploy", "--yes", "--auto"],
                                  cwd=fleet.dir, env={**os.environ, **ME}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            wait_for(src.asked_event.is_set, 60, "the gate's check asking the source", proc=deploy)
            ask_server(fleet, "abort")
            out, err = deploy.communicate(timeout=60)
        finally:
            deploy.kill()
        wait_for(lambda: lock_released(fleet), 30, "the fleet lock released after the abort")
    assert deploy.returncode == 1, out + err
    assert "internal error" not in out + err
    assert "stopped at a gate" not in out and "waiting: gate" not in out, out  # aborted: no gate waits
    assert "ABORT" in run_cli("log", cwd=fleet.dir, env=ME).stdout


@pytest.mark.slow
def test_sigterm_to_the_deploy_client_during_a_gate_check_on_a_dripping_source_ends_it_at_once(metrics_fleet):
    fleet = metrics_fleet
    with HostileSource(vector(), drip=True) as src:
        gate_source(fleet, src.url, bake=None, timeout="10m")  # the source's deadline far away: SIGTERM ends it
        deploy = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "deploy", "--yes", "--auto"],
                                  cwd=fleet.dir, env={**os.environ, **ME}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            wait_for(src.asked_event.is_set, 60, "the gate's check asking the source", proc=deploy)
            deploy.send_signal(signal.SIGTERM)
            out, err = deploy.communicate(timeout=60)
        finally:
            deploy.kill()
    assert deploy.returncode == 130, out + err
    assert "SIGTERM: stopping the hosts in flight" in err and "stopped at a gate" not in out, out + err
    assert [h.name for h in fleet.hosts if revision_of(fleet, h.name) == NEW] == ["web001", "web002"]


def test_the_servers_metrics_answer_says_why_for_a_wrong_shape_and_keeps_the_apps_connection(metrics_fleet):
    from controlroom.server.client import connect

    fleet = metrics_fleet
    with HostileSource(WRONG_SHAPES["a value that is not a pair"]) as src:
        gate_source(fleet, src.url)

        async def poll_twice() -> list[dict]:
            c = await connect(config_mod.load(fleet.config_path))
            try:
                return [await c.request("metrics", points=10) for _ in range(2)]
            finally:
                await c.close()

        replies = asyncio.run(asyncio.wait_for(poll_twice(), 60))
    for reply in replies:  # the same connection answered both polls
        assert [(s["name"], s["error"], s["lines"]) for s in reply["series"]] == [
            ("errors_5xx", "the answer is not a Prometheus answer: result[0].value is not a [time, value] pair", {}),
            ("latency_ms", "the answer is not a Prometheus answer: result[0].value is not a [time, value] pair", {})]
