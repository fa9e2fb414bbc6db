"""The simulated fleet as a metrics source: each host serves Prometheus text on /metrics, and the fleet answers the
Prometheus HTTP API for the queries of its own controlroom.toml, computed from the same counters.

Traffic is steady and deterministic: every host answers REQUESTS_PER_TICK requests a tick. A host whose REVISION is
the staged one (r2307) with the flag new_search on (its flags.toml, or the flag's default when the file is not
there yet) answers BAD_RATIO of them with a 500 and slower; any other host GOOD_RATIO. A real Prometheus given
DIR/prometheus.yml scrapes the same counters the fleet's own API reads, so the two agree.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import tomllib
from collections import deque
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

BAD_REVISION = "r2307"
KILL_SWITCH = "new_search"
BAD_RATIO = 0.08
GOOD_RATIO = 0.001
REQUESTS_PER_TICK = 20
TICK = 1.0  # seconds
HISTORY = 3600  # ticks kept for query_range
RATE_WINDOW = "20s"  # short, so the story turns within seconds of a flag flip

ERRORS_QUERY = (f'100 * sum by (revision) (rate(http_requests_total{{code=~"5.."}}[{RATE_WINDOW}]))'
                f' / sum by (revision) (rate(http_requests_total[{RATE_WINDOW}]))')
LATENCY_QUERY = (f"1000 * sum(rate(http_request_duration_seconds_sum[{RATE_WINDOW}]))"
                 f" / sum(rate(http_request_duration_seconds_count[{RATE_WINDOW}]))")
# series name -> (query, unit, threshold line for controlroom.toml)
DEMO_SERIES = {
    "errors_5xx": (ERRORS_QUERY, "%", "max = 5\nsplit = \"revision\""),
    "latency_ms": (LATENCY_QUERY, "ms", "max = 400"),
}


def _norm(q: str) -> str:
    return " ".join(q.split())


class _HostMetrics:
    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "Requests answered, by status code and revision",
                                ["code", "revision"], registry=self.registry)
        self.duration = Histogram("http_request_duration_seconds", "Time to answer a request",
                                  registry=self.registry, buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
        self.owed = 0.0  # the fraction of an error not yet answered (errors come out at exactly their ratio)

    def _state(self, default_on: bool) -> tuple[str, bool]:
        try:
            rev = (self.root / "REVISION").read_text().strip() or "none"
        except OSError:
            rev = "none"
        on = default_on
        try:
            doc = tomllib.loads((self.root / "flags.toml").read_text())
            value = doc.get("flags", {}).get(KILL_SWITCH, {}).get("enabled", default_on)
            # "on", "off" or "N%" as flags.py writes it (a share of the members counts as on)
            on = value is True or value == "on" or (isinstance(value, str) and value.endswith("%") and value != "0%")
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            pass
        return rev, on

    def tick(self, default_on: bool) -> None:
        rev, on = self._state(default_on)
        bad = rev == BAD_REVISION and on
        self.owed += REQUESTS_PER_TICK * (BAD_RATIO if bad else GOOD_RATIO)
        errors = int(self.owed)
        self.owed -= errors
        self.requests.labels("500", rev).inc(errors)
        self.requests.labels("200", rev).inc(REQUESTS_PER_TICK - errors)
        latency = 0.18 if bad else 0.04
        for _ in range(REQUESTS_PER_TICK):
            self.duration.observe(latency)

    def totals(self) -> dict[tuple, float]:
        out: dict[tuple, float] = {}
        for metric in self.registry.collect():
            for s in metric.samples:
                if s.name == "http_requests_total":
                    out[("req", s.labels["code"], s.labels["revision"])] = s.value
                elif s.name in ("http_request_duration_seconds_sum", "http_request_duration_seconds_count"):
                    out[(s.name,)] = out.get((s.name,), 0.0) + s.value
        return out


class SimMetrics:
    """Counters for every host, ticked on the fleet's loop; /metrics per host and the fleet's query API."""

    def __init__(self, hosts: list[tuple[str, Path]], *, default_on: bool = True) -> None:
        self.hosts = {name: _HostMetrics(name, root) for name, root in hosts}
        self.default_on = default_on
        self.history: deque[tuple[float, dict[tuple, float]]] = deque(maxlen=HISTORY)
        self.host_ports: dict[str, int] = {}
        self.api_port = 0
        self._servers: list[asyncio.base_events.Server] = []
        self._task: asyncio.Task | None = None
        self.queries = {_norm(q): name for name, (q, _, _) in DEMO_SERIES.items()}

    async def start(self) -> None:
        for name in self.hosts:
            srv = await asyncio.start_server(lambda r, w, n=name: self._serve(r, w, n), "127.0.0.1", 0)
            self.host_ports[name] = srv.sockets[0].getsockname()[1]
            self._servers.append(srv)
        srv = await asyncio.start_server(lambda r, w: self._serve(r, w, None), "127.0.0.1", 0)
        self.api_port = srv.sockets[0].getsockname()[1]
        self._servers.append(srv)
        self.tick()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        for srv in self._servers:
            srv.close()
        self._servers.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.tick()

    def tick(self) -> None:
        total: dict[tuple, float] = {}
        for h in self.hosts.values():
            h.tick(self.default_on)
            for k, v in h.totals().items():
                total[k] = total.get(k, 0.0) + v
        self.history.append((time.time(), total))

    def write_prometheus_yml(self, path: Path, scrape_interval: str = "5s") -> None:
        """A prometheus.yml a real Prometheus uses as it is: one static target per host, labelled with its name."""
        lines = ["# written by `controlroom fleet`: scrape every simulated host's /metrics", "global:",
                 f"  scrape_interval: {scrape_interval}", f"  evaluation_interval: {scrape_interval}",
                 "scrape_configs:", "  - job_name: controlroom-fleet", "    static_configs:"]
        for name, port in self.host_ports.items():
            lines += [f"      - targets: ['127.0.0.1:{port}']", f"        labels: {{host: {name}}}"]
        path.write_text("\n".join(lines) + "\n")

    # ------------------------------------------------------------------------------------------ the API
    def _rate_pair(self, at: float, window: float) -> tuple[dict, dict, float] | None:
        inside = [(t, v) for t, v in self.history if at - window - 0.5 <= t <= at + 0.5]
        if len(inside) < 2:
            return None
        (t0, a), (t1, b) = inside[0], inside[-1]
        return a, b, t1 - t0

    def evaluate(self, name: str, at: float) -> dict[str, float]:
        """The series' value at time `at`, by line (revision for errors_5xx, "" for latency_ms), from the counters."""
        window = float(RATE_WINDOW.rstrip("s"))
        pair = self._rate_pair(at, window)
        if pair is None:
            return {}
        a, b, dt = pair

        def rate(key: tuple) -> float:
            return (b.get(key, 0.0) - a.get(key, 0.0)) / dt

        if name == "errors_5xx":
            out = {}
            for rev in sorted({k[2] for k in b if k[0] == "req"}):
                err = rate(("req", "500", rev))
                all_ = err + rate(("req", "200", rev))
                if all_ > 0:
                    out[rev] = 100 * err / all_
            return out
        count = rate(("http_request_duration_seconds_count",))
        if count <= 0:
            return {}
        return {"": 1000 * rate(("http_request_duration_seconds_sum",)) / count}

    def api(self, path: str, params: dict[str, str]) -> tuple[int, dict]:
        if path not in ("/api/v1/query", "/api/v1/query_range"):
            return 404, {"status": "error", "errorType": "not_found", "error": f"no endpoint {path}"}
        name = self.queries.get(_norm(params.get("query", "")))
        if name is None:
            answers = "; ".join(f"{n}: {q}" for n, (q, _, _) in DEMO_SERIES.items())
            return 400, {"status": "error", "errorType": "bad_data",
                         "error": f"the simulated fleet answers only the queries of its controlroom.toml ({answers})"}
        label = "revision" if name == "errors_5xx" else None

        def metric(line: str) -> dict:
            return {label: line} if label else {}

        try:
            if path == "/api/v1/query":
                at = float(params.get("time") or time.time())
                vals = self.evaluate(name, at)
                result = [{"metric": metric(k), "value": [at, _fmt(v)]} for k, v in vals.items()]
                return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
            start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        except (KeyError, ValueError):
            return 400, {"status": "error", "errorType": "bad_data", "error": "cannot read time, start, end or step"}
        if step <= 0 or (end - start) / step > 11_000:
            return 400, {"status": "error", "errorType": "bad_data",
                         "error": "exceeded maximum resolution of 11,000 points per timeseries"}
        lines: dict[str, list] = {}
        t = start
        while t <= end:
            for k, v in self.evaluate(name, t).items():
                lines.setdefault(k, []).append([t, _fmt(v)])
            t += step
        result = [{"metric": metric(k), "values": pts} for k, pts in lines.items()]
        return 200, {"status": "success", "data": {"resultType": "matrix", "result": result}}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str | None) -> None:
        try:
            request = await reader.readline()
            while await reader.readline() not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            target = urlsplit(parts[1] if len(parts) > 1 else "/")
            params = {k: v[0] for k, v in parse_qs(target.query).items()}
            if host is not None:
                if target.path == "/metrics":
                    status, body, ctype = 200, generate_latest(self.hosts[host].registry), "text/plain; version=0.0.4"
                else:
                    status, body, ctype = 404, b"not found\n", "text/plain"
            else:
                status, doc = self.api(target.path, params)
                body, ctype = json.dumps(doc).encode(), "application/json"
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def metrics_config(url: str) -> str:
    """The [metrics] part of the fleet's controlroom.toml."""
    out = f'\n[metrics]\nsource = "prometheus"\nurl = "{url}"              # the fleet answers these queries itself\n' \
          'interval = "2s"\nwindow = "5m"\n'
    for name, (query, unit, limits) in DEMO_SERIES.items():
        out += f"\n[metrics.series.{name}]\nquery = '{query}'\nunit = \"{unit}\"\n{limits}\n"
    return out
