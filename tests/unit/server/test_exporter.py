"""`controlroom serve --metrics HOST:PORT`: the server's own metrics, read by a direct scrape (every metric and its
labels) and by a real Prometheus (Debian's, installed by .ci/run) scraping the server during a deploy."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys

import httpx
import pytest

from controlroom.config import config
from controlroom.core import events as ev
from controlroom.demo.fleet import Fleet
from controlroom.server.client import connect
from tests.conftest import REPO, run_cli
from tests.waiting import until, wait_for

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def samples(text: str) -> dict[str, float]:
    """'name{labels}' -> value, from the text exposition format."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.fixture
def metrics_fleet(tmp_path):
    fleet = Fleet(tmp_path / "fleet", 3, metrics=True).start_in_thread()  # one phase "all"; [metrics] series
    yield fleet
    fleet.stop_thread()


async def test_a_scrape_shows_every_metric_with_its_labels(metrics_fleet, monkeypatch):
    from controlroom.server import exporter
    from controlroom.server import server as server_mod

    monkeypatch.setattr(exporter, "FIGURES_EVERY", 0.0)  # the figures at every scrape (a minute apart, else)
    cfg = config.load(metrics_fleet.config_path)
    srv = server_mod.Server(cfg, idle=3600, metrics=("127.0.0.1", 0))
    await srv.start()
    url = f"http://127.0.0.1:{srv.exporter.port}/metrics"
    c = await connect(cfg, start=False)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            before = samples((await http.get(url)).text)
            assert before['controlroom_deploys_total{marked="false",result="ok"}'] == 0
            assert before['controlroom_hosts{state="pending"}'] == 3
            assert before['controlroom_clients{kind="cli"}'] == 1
            assert before['controlroom_clients{kind="app"}'] == 0 and before['controlroom_clients{kind="web"}'] == 0
            assert "controlroom_change_failure_rate" not in before  # no deploys: unknown, not exported as 0
            assert "controlroom_lead_time_median_seconds" not in before
            assert before["controlroom_deploys_per_day"] == 0  # none in 7 days is a figure

            await c.request("deploy", revision=None, policy="yes")
            await until(lambda: srv.board.status == ev.R_DONE and not srv.busy, 60, "the deploy to end")
            await c.request("flag_set", flag="enable_feature_video", value="on", reason="for the test")
            await c.request("flag_set", flag="new_search", value="off", reason="for the test")
            await until(lambda: not srv.live.flags.retrying and not srv.live.flags.settling, 30, "the pushes")
            # what the stream carries besides: a gate's verdicts, a chat channel's failure (through the one stream)
            verdict = ev.GateVerdict("errors_5xx < 5", "errors_5xx", "r2307", 7.5, "<", 5.0, ev.GateState.FAILED)
            srv._committed(ev.GateWaiting(1, phase=0, name="all", reason="gate", kind=ev.GATE_FAILED,
                                          failed=("errors_5xx < 5",), verdicts=(tuple(verdict),)))
            srv._committed(ev.GateWaiting(1, phase=0, name="not [a] phase", reason="x", verdicts=(tuple(verdict),)))
            srv._committed(ev.AnnouncementFailed(0, channel="webhook", reason="refused", tries=1, gave_up=False))
            srv._committed(ev.AnnouncementFailed(0, channel="webhook", reason="refused", tries=5, gave_up=True))
            srv._committed(ev.AnnouncementFailed(0, channel="someone's text", reason="x", tries=1, gave_up=True))
            text = (await http.get(url)).text
            assert (await http.get(url.replace("/metrics", "/other"))).status_code == 404
    finally:
        await c.close()
        srv.stop()
        await srv.close()
    got = samples(text)
    assert got['controlroom_deploys_total{marked="false",result="ok"}'] == 1
    assert got['controlroom_deploys_total{marked="false",result="failed"}'] == 0
    assert got['controlroom_deploys_total{marked="false",result="rolled_back"}'] == 0
    assert got["controlroom_deploy_duration_seconds_count"] == 1
    assert got['controlroom_phase_duration_seconds_count{phase="all"}'] == 1
    assert got['controlroom_hosts{state="done"}'] == 3 and got['controlroom_hosts{state="failed"}'] == 0
    assert got['controlroom_gate_verdicts_total{phase="all",series="errors_5xx",verdict="failed"}'] == 1
    assert got['controlroom_flag_changes_total{flag="enable_feature_video",kind="feature"}'] == 1  # once, not
    assert got['controlroom_flag_changes_total{flag="new_search",kind="kill_switch"}'] == 1  # once a receipt
    assert got['controlroom_chat_failures_total{channel="webhook",gave_up="false"}'] == 1
    assert got['controlroom_chat_failures_total{channel="webhook",gave_up="true"}'] == 1
    assert not [k for k in got if "not [a] phase" in k or "someone" in k]  # no label from outside the config
    assert got["controlroom_deploys_per_day"] == pytest.approx(1 / 7)
    assert got["controlroom_change_failure_rate"] == 0  # one deploy, none failed: a figure, 0
    assert "controlroom_time_to_restore_median_seconds" not in got  # no failed deploy: unknown


def test_a_bad_metrics_address_is_one_line_and_exit_2(make_fleet):
    fleet = make_fleet(2)
    for bad in ("nonsense", "127.0.0.1:99999", ":9469"):
        res = run_cli("serve", "--metrics", bad, "--config", str(fleet.config_path))
        assert res.returncode == 2, (bad, res.stdout, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "--metrics" in res.stderr, res.stderr
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        res = run_cli("serve", "--metrics", f"127.0.0.1:{taken.getsockname()[1]}", "--config", str(fleet.config_path))
    finally:
        taken.close()
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "cannot listen" in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(PROMETHEUS) and not os.environ.get("CI"),
                    reason="no prometheus (CI installs Debian's)")
def test_a_real_prometheus_scrapes_the_server_during_a_deploy(make_fleet, tmp_path):
    fleet = make_fleet(4)
    text = fleet.config_path.read_text().replace('steps = [\n', 'steps = [\n    "sleep 2",\n', 1)
    fleet.config_path.write_text(re.sub(r"auto = false", "auto = true", text))  # no operator to wait for
    assert '"sleep 2"' in fleet.config_path.read_text()  # every host runs for 2 s: scraped while it runs
    port, prom_port = free_port(), free_port()
    env = dict(os.environ, SUDO_USER="alice")
    slog = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "serve", "--idle", "0", "--metrics",
                               f"127.0.0.1:{port}", "--config", str(fleet.config_path)], cwd=REPO, env=env,
                              stdout=slog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    yml = tmp_path / "prometheus.yml"
    yml.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: controlroom\n"
                   f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
    plog = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={yml}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=plog, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(q: str) -> list:
        assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
        try:
            return httpx.get(f"{api}/query", params={"query": q}, timeout=5).json()["data"]["result"]
        except (httpx.HTTPError, ValueError, KeyError):
            return []  # not answering yet

    def value(q: str) -> float | None:
        r = query(q)
        return float(r[0]["value"][1]) if r else None

    try:
        wait_for(lambda: value('up{job="controlroom"}') == 1, 60, "prometheus to scrape the server", every=0.2)
        assert value('controlroom_hosts{state="pending"}') == 4
        res = run_cli("deploy", "--detach", "--yes", "--config", str(fleet.config_path), env={"SUDO_USER": "alice"})
        assert res.returncode == 0, res.stdout + res.stderr
        wait_for(lambda: value('controlroom_deploys_total{result="ok"}') == 1, 120,
                 "prometheus to see the deploy end ok", detail=lambda: query("controlroom_hosts"), every=0.5)
        wait_for(lambda: value('controlroom_hosts{state="done"}') == 4, 30, "every host done", every=0.5)
        assert value('controlroom_deploy_duration_seconds_count') == 1
        assert value('max_over_time(controlroom_hosts{state="running"}[10m])') >= 1  # scraped during the deploy
        assert value('controlroom_deploys_total{result="failed"}') == 0
    finally:
        prom.terminate()
        prom.wait(10)
        server.terminate()
        server.wait(30)
        plog.close()
        slog.close()


async def test_the_figures_are_computed_once_a_minute_and_a_scrape_never_waits_long_for_them(make_fleet, monkeypatch):
    import threading

    from controlroom.server import exporter
    from controlroom.server import server as server_mod

    fleet = make_fleet(2)
    release = threading.Event()
    calls = []
    real = exporter._figures

    def slow_figures(*args):  # the journal or git slow to answer: the computation waits until the test lets it go
        calls.append(args)
        release.wait(30)
        return real(*args)

    monkeypatch.setattr(exporter, "_figures", slow_figures)
    monkeypatch.setattr(exporter, "FIGURES_WAIT", 0.05)
    srv = server_mod.Server(config.load(fleet.config_path), idle=3600, metrics=("127.0.0.1", 0))
    await srv.start()
    url = f"http://127.0.0.1:{srv.exporter.port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            first = samples((await http.get(url)).text)  # answered while the figures are still being computed
            assert first['controlroom_hosts{state="pending"}'] == 2 and "controlroom_deploys_per_day" not in first
            release.set()
            await until(lambda: srv.exporter._figures_task is not None and srv.exporter._figures_task.done(), 30,
                        "the figures to be computed")
            for _ in range(3):
                got = samples((await http.get(url)).text)
            assert got["controlroom_deploys_per_day"] == 0
            assert len(calls) == 1  # once for every scrape of the minute
    finally:
        release.set()
        srv.stop()
        await srv.close()
