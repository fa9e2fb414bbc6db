"""Metrics sources, the simulated fleet's metrics, and gates between phases (issue 10)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from controlroom.cli import metrics as metricscli
from controlroom.config import config as config_mod
from controlroom.config.settings import MetricsSettings, SeriesSpec
from controlroom.core.errors import ConfigError
from controlroom.demo.fleet import Fleet
from controlroom.demo.metrics_sim import BAD_REVISION, DEMO_SERIES
from controlroom.sources.metrics import GraphiteSource, MetricsError, PrometheusSource, snapshot, sparkline
from tests.conftest import run_cli
from tests.servers import closed_port
from tests.unit.engine.test_rollout import NEW, revision_of
from tests.waiting import wait_for


class Answers:
    """A stand-in metrics server on 127.0.0.1 (an outside system): answers path -> (status, body) as scripted,
    and keeps what it was asked."""

    def __init__(self, answers: dict[str, list[tuple[int, str]]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, dict]] = []
        self.port = 0

    async def __aenter__(self) -> Answers:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader, writer) -> None:
        request = (await reader.readline()).decode()
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        path = request.split()[1].split("?")[0]
        self.asked.append((request.split()[1], headers))
        queue = self.answers[path]
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        data = body.encode()
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                     + data)
        await writer.drain()
        writer.close()


def settings(url: str, **kw) -> MetricsSettings:
    return MetricsSettings(source=kw.pop("source", "prometheus"), url=url, interval=1.0, **kw)


ERRORS = SeriesSpec("errors_5xx", "sum(rate(x[1m]))", max=5, unit="%", split="revision")


def vector(*items: tuple[dict, str], warnings: list[str] | None = None) -> str:
    doc = {"status": "success", "data": {"resultType": "vector",
                                         "result": [{"metric": m, "value": [time.time(), v]} for m, v in items]}}
    if warnings:
        doc["warnings"] = warnings
    return json.dumps(doc)


def test_prometheus_values_by_revision_with_nan_inf_and_warnings():
    async def go():
        body = vector(({"revision": "r2306"}, "0.1"), ({"revision": "r2307"}, "NaN"), ({"revision": "x"}, "+Inf"),
                      warnings=["partial response"])
        async with Answers({"/api/v1/query": [(200, body)]}) as srv:
            async with PrometheusSource(settings(f"http://127.0.0.1:{srv.port}")) as src:
                lines = await src.current(ERRORS)
                assert src.warnings == ["partial response"]
        assert lines["r2306"] == 0.1 and math.isnan(lines["r2307"]) and lines["x"] == math.inf

    asyncio.run(go())


def test_the_sources_warnings_reach_the_pane_and_the_cli_beside_the_values(tmp_path):
    """A Prometheus answer with warnings (a partial response) is shown with its values, cleaned, not dropped."""
    matrix = json.dumps({"status": "success", "warnings": ["shard 3 down\x1b[2J"], "data": {
        "resultType": "matrix", "result": [{"metric": {"revision": "r2307"}, "values": [[1, "1"], [2, "2"]]}]}})
    now = vector(({"revision": "r2307"}, "7.9"), warnings=["partial response"])

    async def go():
        async with Answers({"/api/v1/query": [(200, now)] * 2, "/api/v1/query_range": [(200, matrix)] * 2}) as srv:
            s = settings(f"http://127.0.0.1:{srv.port}", series=(ERRORS,))
            snap = await snapshot(s, 10)
            table = await metricscli.rows(SimpleNamespace(metrics=s), 10)
        return snap, table

    snap, table = asyncio.run(go())
    assert snap["series"][0]["warnings"] == ["partial response", "shard 3 down^[[2J"]  # the escape made visible text
    assert snap["series"][0]["lines"]["r2307"]["value"] == 7.9
    assert table[0][4] == "BREACH (source warning: partial response; shard 3 down^[[2J)"


def test_an_empty_result_is_no_lines_and_a_range_stays_within_11000_points():
    async def go():
        empty = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
        matrix = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"revision": "r2307"}, "values": [[1, "1"], [2, "2"]]}]}})
        async with Answers({"/api/v1/query": [(200, empty)], "/api/v1/query_range": [(200, matrix)]}) as srv:
            async with PrometheusSource(settings(f"http://127.0.0.1:{srv.port}")) as src:
                assert await src.current(ERRORS) == {}
                hist = await src.history(ERRORS, window=7 * 86400, step=1)
        assert hist == {"r2307": [(1.0, 1.0), (2.0, 2.0)]}
        q = dict(p.split("=") for p in srv.asked[-1][0].split("?")[1].split("&"))
        assert (float(q["end"]) - float(q["start"])) / float(q["step"]) <= 11_000

    asyncio.run(go())


def test_a_non_json_error_page_is_retried_then_named_without_the_url():
    async def go():
        async with Answers({"/api/v1/query": [(502, "<html>bad gateway</html>")]}) as srv:
            url = f"http://127.0.0.1:{srv.port}"
            async with PrometheusSource(settings(url), backoff=0.01) as src:
                with pytest.raises(MetricsError) as e:
                    await src.current(ERRORS)
        assert str(e.value) == "HTTP 502 (not JSON), 3rd try"
        assert len(srv.asked) == 3

    asyncio.run(go())


def test_a_query_the_source_refuses_says_why_at_once():
    async def go():
        bad = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"})
        async with Answers({"/api/v1/query": [(400, bad)]}) as srv:
            async with PrometheusSource(settings(f"http://127.0.0.1:{srv.port}")) as src:
                with pytest.raises(MetricsError, match="refused the query: parse error at char 5"):
                    await src.current(ERRORS)
        assert len(srv.asked) == 1

    asyncio.run(go())


def test_a_source_that_is_down_names_the_cause_never_the_url_or_token():
    async def go():
        url = f"http://127.0.0.1:{closed_port()}/secret-path"
        env = {"PROM_TOKEN": "s3cr3t-token"}
        async with PrometheusSource(settings(url, token_env="PROM_TOKEN"), env=env, backoff=0.01) as src:
            with pytest.raises(MetricsError) as e:
                await src.current(ERRORS)
        return str(e.value)

    msg = asyncio.run(go())
    assert msg == "connection refused, 3rd try"
    assert "secret" not in msg and "127.0.0.1" not in msg


def test_the_token_comes_from_the_named_variable_and_a_missing_one_is_one_line():
    async def go():
        async with Answers({"/api/v1/query": [(200, vector(({}, "3")))]}) as srv:
            s = settings(f"http://127.0.0.1:{srv.port}", token_env="PROM_TOKEN")
            async with PrometheusSource(s, env={"PROM_TOKEN": "abc"}) as src:
                assert await src.current(SeriesSpec("p95_ms", "q")) == {"": 3.0}
            with pytest.raises(MetricsError, match=r"^metrics.token_env names \$PROM_TOKEN, which is not set$"):
                PrometheusSource(s, env={})
        assert srv.asked[0][1]["authorization"] == "Bearer abc"

    asyncio.run(go())


def test_graphite_render_with_null_gaps():
    async def go():
        body = json.dumps([{"target": "errors", "datapoints": [[1.5, 100], [None, 110], [2.5, 120], [None, 130]]}])
        async with Answers({"/render": [(200, body)]}) as srv:
            async with GraphiteSource(settings(f"http://127.0.0.1:{srv.port}", source="graphite")) as src:
                spec = SeriesSpec("errors", "sumSeries(web.*.errors)")
                hist = await src.history(spec)
                now = await src.current(spec)
        assert [v for _, v in hist[""] if not math.isnan(v)] == [1.5, 2.5] and math.isnan(hist[""][1][1])
        assert now == {"": 2.5}
        assert "format=json" in srv.asked[0][0]

    asyncio.run(go())


def test_sparkline_draws_gaps_as_blanks():
    assert sparkline([0, 1, 2, math.nan, 4], width=5) == "▁▃▅ █"


# ----------------------------------------------------------------------------------------------- config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "controlroom.toml"
    p.write_text('[inventory]\nhosts = ["web1"]\n' + text)
    return p


def test_metrics_config_reads_window_unit_split_and_token_env(tmp_path):
    cfg = config_mod.load(write(tmp_path, '[metrics]\nurl = "https://prom:9090"\nwindow = "10m"\n'
                                'token_env = "PROM_TOKEN"\n[metrics.series.errors_5xx]\nquery = "q"\n'
                                'unit = "%"\nmax = 5\nsplit = "revision"\n'), require_known_hosts=False)
    m = cfg.metrics
    assert (m.source, m.window, m.token_env) == ("prometheus", 600.0, "PROM_TOKEN")
    assert m.series[0] == SeriesSpec("errors_5xx", "q", max=5, unit="%", split="revision")


def test_a_metrics_config_mistake_is_one_line_with_file_line_and_key(tmp_path):
    path = write(tmp_path, '[metrics]\nurl = "http://prom:9090"\n[metrics.series.e]\nquery = "q"\nsplitt = "x"\n')
    with pytest.raises(ConfigError) as e:
        config_mod.load(path, require_known_hosts=False)
    assert re.match(rf"^{re.escape(str(path))}:7: metrics\.series\.e", str(e.value)), str(e.value)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------------- the fleet


def fleet_api(fleet: Fleet, query: str) -> dict:
    r = httpx.get(f"{fleet.metrics.url}/api/v1/query", params={"query": query}, timeout=5)
    return r.status_code, r.json()


def test_each_simulated_host_serves_prometheus_text_and_the_fleet_writes_prometheus_yml(metrics_fleet):
    port = metrics_fleet.metrics.host_ports["web003"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert re.search(r'^http_requests_total\{code="200",revision="r2306"\} \d+', text, re.M)
    assert "http_request_duration_seconds_bucket" in text
    yml = (metrics_fleet.dir / "prometheus.yml").read_text()
    assert "scrape_interval: 5s" in yml and f"127.0.0.1:{port}" in yml
    cfg = config_mod.load(metrics_fleet.config_path)
    assert [s.name for s in cfg.metrics.series] == list(DEMO_SERIES)
    canary = cfg.phases[0]
    assert canary.gate == ("errors_5xx < 5",) and 0 < canary.bake <= 20


def test_the_fleet_answers_its_own_queries_and_names_them_for_any_other(metrics_fleet):
    status, doc = fleet_api(metrics_fleet, "up")
    assert status == 400 and doc["status"] == "error" and "errors_5xx" in doc["error"]
    status, doc = fleet_api(metrics_fleet, DEMO_SERIES["latency_ms"][0])
    assert status == 200 and doc["data"]["resultType"] == "vector"


@pytest.mark.slow
def test_r2307_with_new_search_on_answers_8_percent_5xx_and_off_it_heals(metrics_fleet):
    home = metrics_fleet.dir / "hosts"
    for h in ("web001", "web002"):
        (home / h / "REVISION").write_text(f"{BAD_REVISION}\n")
    query = DEMO_SERIES["errors_5xx"][0]

    def errors() -> dict[str, float]:
        _, doc = fleet_api(metrics_fleet, query)
        return {r["metric"]["revision"]: float(r["value"][1]) for r in doc["data"]["result"]}

    wait_for(lambda: errors().get(BAD_REVISION, 0) >= 6, 30, f"{BAD_REVISION}'s 5xx to pass 6%", detail=errors,
             every=0.2)
    assert errors()["r2306"] < 1
    for h in ("web001", "web002"):
        (home / h / "flags.toml").write_text('version = 2\n[flags.new_search]\nenabled = "off"\n')
    wait_for(lambda: errors().get(BAD_REVISION, 100) <= 1, 40, f"{BAD_REVISION}'s 5xx to heal", detail=errors,
             every=0.5)


# ----------------------------------------------------------------------------------------------- gates


def test_deploy_yes_auto_with_the_metrics_source_down_stops_at_the_first_gate_naming_it_unknown(metrics_fleet):
    fleet = metrics_fleet
    port = closed_port()
    text = fleet.config_path.read_text()
    text = re.sub(r'url = "http://127\.0\.0\.1:\d+"', f'url = "http://127.0.0.1:{port}"', text)
    fleet.config_path.write_text(text.replace('bake = "10s"', 'bake = "2s"'))
    res = run_cli("deploy", "--yes", "--auto", cwd=fleet.dir, env={"SUDO_USER": "mygrant"})
    assert res.returncode == 1, res.stdout + res.stderr
    stopped = [line for line in res.stdout.splitlines() if line.startswith("stopped at a gate")]
    assert len(stopped) == 1, res.stdout
    assert "GATE canary: errors_5xx < 5: UNKNOWN (connection refused, 3rd try)" in stopped[0]
    assert str(port) not in res.stdout + res.stderr
    # the canary took the new revision; no host of stage 1 changed
    now = {h.name: revision_of(fleet, h.name) for h in fleet.hosts}
    assert [h for h, rev in now.items() if rev == NEW] == ["web001", "web002"]
    log = run_cli("log", "-n", "50", cwd=fleet.dir, env={"SUDO_USER": "mygrant"}).stdout
    assert "GATE r2307 canary: errors_5xx < 5: UNKNOWN (connection refused, 3rd try)" in log  # kind, revision, text
    # every check is in the journal, not only the verdict
    with sqlite3.connect(fleet.dir / "state" / "journal.db") as db:
        checks = [json.loads(d) for (d,) in db.execute("SELECT data FROM events WHERE type = 'GateEvaluated'")]
    assert len(checks) >= 2 and {c["verdict"] for c in checks} == {"unknown"}


def test_a_canary_whose_errors_exceed_the_gate_halts_with_the_value(metrics_fleet):
    fleet = metrics_fleet
    fleet.config_path.write_text(fleet.config_path.read_text().replace('bake = "10s"', 'bake = "4s"'))
    res = run_cli("deploy", "--yes", "--auto", cwd=fleet.dir, env={"SUDO_USER": "mygrant"})
    assert res.returncode == 1, res.stdout + res.stderr
    assert re.search(r"GATE canary: errors_5xx\{r2307\} = [\d.]+ \(max 5\): FAILED", res.stdout), res.stdout
    now = {h.name: revision_of(fleet, h.name) for h in fleet.hosts}
    assert [h for h, rev in now.items() if rev == NEW] == ["web001", "web002"]


# ----------------------------------------------------------------------------------------------- the CLI


def test_controlroom_metrics_prints_every_series_with_a_sparkline_value_threshold_and_status(metrics_fleet):
    home = metrics_fleet.dir / "hosts"
    (home / "web001" / "REVISION").write_text(f"{BAD_REVISION}\n")

    def breach() -> dict[str, str] | None:
        res = run_cli("metrics", cwd=metrics_fleet.dir)
        assert res.returncode == 0, res.stdout + res.stderr
        rows = {line.split()[0]: line for line in res.stdout.splitlines()}
        return rows if "BREACH" in rows.get("errors_5xx{r2307}", "") else None

    rows = wait_for(breach, 30, "controlroom metrics to show errors_5xx{r2307} in BREACH", every=0.5)
    assert re.search(r"^errors_5xx\{r2307\}\s+[▁▂▃▄▅▆▇█ ]+\s+[\d.]+%\s+max 5\s+BREACH$", rows["errors_5xx{r2307}"])
    assert re.search(r"\s[\d.]+%\s+max 5\s+ok$", rows["errors_5xx{r2306}"])
    assert re.search(r"[▁▂▃▄▅▆▇█]+\s+[\d.]+ms\s+max 400\s+ok$", rows["latency_ms"])


def test_controlroom_metrics_with_the_source_down_says_unknown_and_why(metrics_fleet):
    text = metrics_fleet.config_path.read_text()
    metrics_fleet.config_path.write_text(re.sub(r'url = "http://127\.0\.0\.1:\d+"',
                                                f'url = "http://127.0.0.1:{closed_port()}"', text))
    res = run_cli("metrics", cwd=metrics_fleet.dir)
    assert res.returncode == 0, res.stderr
    assert all(line.endswith("unknown: connection refused, 3rd try") for line in res.stdout.splitlines())
    assert len(res.stdout.splitlines()) == 2


@pytest.mark.slow
def test_a_failed_canary_gate_holds_until_the_kill_switch_is_off_then_resume_passes_it(metrics_fleet):
    fleet = metrics_fleet
    fleet.config_path.write_text(fleet.config_path.read_text().replace('bake = "10s"', 'bake = "4s"'))
    me = {"SUDO_USER": "mygrant"}
    res = run_cli("deploy", "--yes", "--auto", cwd=fleet.dir, env=me)
    assert res.returncode == 1 and "FAILED" in res.stdout, res.stdout + res.stderr
    res = run_cli("deploy", "--resume", "--yes", cwd=fleet.dir, env=me)  # checked again: still failing
    assert res.returncode == 1 and "FAILED" in res.stdout, res.stdout + res.stderr
    assert [h.name for h in fleet.hosts if revision_of(fleet, h.name) == NEW] == ["web001", "web002"]
    flip = run_cli("flag", "new_search", "off", "--yes", "--reason", "5xx on the canary", cwd=fleet.dir, env=me)
    assert flip.returncode == 0, flip.stdout + flip.stderr
    query = DEMO_SERIES["errors_5xx"][0]
    # the fleet's error rate turns once the rate window has only requests served with the flag off
    wait_for(lambda: all(float(r["value"][1]) < 1 for r in fleet_api(fleet, query)[1]["data"]["result"]), 60,
             "every line's 5xx under 1%", detail=lambda: fleet_api(fleet, query)[1], every=0.5)
    res = run_cli("deploy", "--resume", "--yes", cwd=fleet.dir, env=me)
    assert res.returncode == 0, res.stdout + res.stderr
    assert {revision_of(fleet, h.name) for h in fleet.hosts} == {NEW}
    log = run_cli("log", "-n", "50", cwd=fleet.dir, env=me).stdout
    assert re.search(r"GATE canary: errors_5xx\{r2307\} = [\d.]+ \(max 5\): PASSED", log), log


def test_the_server_answers_every_series_now_and_over_the_window_for_the_pane(metrics_fleet):
    from controlroom.server.client import connect

    cfg = config_mod.load(metrics_fleet.config_path)

    async def ask() -> dict:
        c = await connect(cfg)
        try:
            return await c.request("metrics", points=30)
        finally:
            await c.close()

    def held(r: dict):  # r2306's points over the window and its value now (the first answers may have neither)
        line = r["series"][0]["lines"].get("r2306", {})
        return line.get("points") and line.get("value") is not None and r

    reply = wait_for(lambda: held(asyncio.run(ask())), 30, "the server's answer to hold r2306's points and value",
                     every=0.5)
    errors, latency = reply["series"]
    assert (errors["name"], errors["unit"], errors["max"], errors["split"], errors["error"]) == (
        "errors_5xx", "%", 5, "revision", None)
    assert errors["lines"]["r2306"]["value"] < 1 and latency["lines"][""]["value"] > 0
    assert reply["window"] == 300 and reply["interval"] == 2


def test_a_snapshot_with_the_source_down_says_why_for_every_series_and_shows_no_numbers():
    from controlroom.sources.metrics import snapshot

    m = settings(f"http://127.0.0.1:{closed_port()}", series=(ERRORS, SeriesSpec("p95_ms", "q", max=400)))
    reply = asyncio.run(snapshot(m))
    assert [(r["name"], r["error"], r["lines"]) for r in reply["series"]] == [
        ("errors_5xx", "connection refused, 3rd try", {}), ("p95_ms", "connection refused, 3rd try", {})]
