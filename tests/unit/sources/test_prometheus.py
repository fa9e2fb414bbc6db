"""A real Prometheus (Debian's, installed by .ci/run) scraping the simulated fleet: what controlroom reads through it
agrees with what the fleet's own API answers from the same counters."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import socket
import subprocess

import httpx
import pytest

from controlroom.config import config as config_mod
from controlroom.demo.fleet import Fleet
from controlroom.demo.metrics_sim import BAD_REVISION
from controlroom.sources.metrics import PrometheusSource
from tests.conftest import run_cli
from tests.waiting import wait_for

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

pytestmark = pytest.mark.skipif(not os.path.exists(PROMETHEUS) and not os.environ.get("CI"),
                                reason="no prometheus (CI installs Debian's)")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def scraped_fleet(tmp_path):
    fleet = Fleet(tmp_path / "fleet", 4, metrics=True).start_in_thread()
    (fleet.dir / "hosts" / "web001" / "REVISION").write_text(f"{BAD_REVISION}\n")  # one host on the bad revision
    yml = tmp_path / "prometheus.yml"
    assert "scrape_interval: 5s" in (fleet.dir / "prometheus.yml").read_text()  # the fleet's, as a user runs it
    fleet.metrics.write_prometheus_yml(yml, scrape_interval="1s")  # the same targets, scraped faster for the test
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={yml}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def every_target_up() -> bool:
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
        try:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False  # not listening yet, or not answering in its shape yet
        return len(targets) == 4 and all(t["health"] == "up" for t in targets)

    try:
        wait_for(every_target_up, 60, "prometheus to scrape every host", every=0.2)
        yield fleet, url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        fleet.stop_thread()


@pytest.mark.slow
def test_controlroom_through_a_real_prometheus_agrees_with_the_fleets_own_api(scraped_fleet):
    fleet, prom_url = scraped_fleet
    own = config_mod.load(fleet.config_path).metrics
    errors = own.spec("errors_5xx")
    latency = own.spec("latency_ms")

    async def read(url: str):
        async with PrometheusSource(dataclasses.replace(own, url=url)) as src:
            return await src.current(errors), await src.current(latency)


    def scrapes() -> dict:
        return httpx.get(f"{prom_url}/api/v1/query", params={"query": "min(count_over_time(up[20s]))"}).json()

    # until Prometheus holds a full rate window (20 s) of scrapes of every host
    wait_for(lambda: (result := scrapes()["data"]["result"]) and float(result[0]["value"][1]) >= 18, 90,
             "a full rate window of scrapes of every host", detail=scrapes, every=0.5)
    via_prom, lat_prom = asyncio.run(read(prom_url))
    via_fleet, lat_fleet = asyncio.run(read(own.url))
    assert abs(via_prom[BAD_REVISION] - via_fleet[BAD_REVISION]) < 1.5, (via_prom, via_fleet)
    assert abs(via_prom[BAD_REVISION] - 8) < 1.5 and via_prom["r2306"] < 1, via_prom
    assert abs(lat_prom[""] - lat_fleet[""]) < 0.1 * lat_fleet[""], (lat_prom, lat_fleet)

    # and what the operator reads: `controlroom metrics` with the config pointed at the real Prometheus
    text = fleet.config_path.read_text()
    fleet.config_path.write_text(re.sub(r'url = "http://127\.0\.0\.1:\d+"', f'url = "{prom_url}"', text))
    res = run_cli("metrics", cwd=fleet.dir)
    assert res.returncode == 0, res.stdout + res.stderr
    row = next(line for line in res.stdout.splitlines() if line.startswith(f"errors_5xx{{{BAD_REVISION}}}"))
    shown = float(re.search(r"\s([\d.]+)%\s+max 5\s+BREACH$", row).group(1))
    assert abs(shown - via_fleet[BAD_REVISION]) < 1.5, (row, via_fleet)
