"""The server's own metrics for Prometheus (`controlroom serve --metrics HOST:PORT`), with prometheus-client.

Counters and histograms are fed from the one event stream the server commits (Server._committed calls ``saw``);
gauges are read from the board and the attached clients when Prometheus scrapes; the DORA figures
(engine/figures.py) are recomputed at most once a minute, when a scrape asks, in a thread with its own read-only
connection to the journal, and a scrape waits for them at most FIGURES_WAIT seconds (it is answered with the last
figures otherwise). A figure that is unknown is not exported at all (never a 0 that is not one).

What it exports (every label value comes from the config or from a fixed set, never from what people wrote):

    controlroom_deploys_total{result=ok|failed|aborted|rolled_back, marked=true|false}    counter
    controlroom_deploy_duration_seconds                                                   histogram
    controlroom_phase_duration_seconds{phase}                                             histogram
    controlroom_hosts{state}                                                              gauge (the board)
    controlroom_gate_verdicts_total{phase, series, verdict=passed|failed|unknown}          counter
    controlroom_flag_changes_total{flag, kind=feature|kill_switch}                        counter
    controlroom_chat_failures_total{channel=webhook|irker|command, gave_up=true|false}                          counter
    controlroom_clients{kind=app|cli|web}                                                 gauge
    controlroom_deploys_per_day, controlroom_change_failure_rate,
    controlroom_lead_time_median_seconds, controlroom_lead_time_p90_seconds,
    controlroom_time_to_restore_median_seconds                                            gauges (last 7 days)

The listener is a small HTTP/1.0 server on the event loop (so a scrape reads the board where the engine writes
it): GET /metrics, anything else 404; one request a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.errors import UsageError
from controlroom.engine.board import Board
from controlroom.engine.figures import WEEK as FIGURES_DAYS

FIGURES_EVERY = 60.0  # seconds between two computations of the DORA figures
FIGURES_WAIT = 5.0  # seconds a scrape waits for figures being computed
REQUEST_MAX = 8192  # bytes of a request's head
REQUEST_TIMEOUT = 10.0
RESULTS = {ev.R_DONE: "ok", ev.R_FAILED: "failed", ev.R_ABORTED: "aborted", ev.R_ROLLED_BACK: "rolled_back"}
CLIENT_KINDS = ("app", "cli", "web")
CHANNELS = ("webhook", "irker", "command")  # notify.py's channels, by name
DEPLOY_BUCKETS = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
PHASE_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)


def parse_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:9469' or '[::1]:9469' -> (host, port); UsageError (one line, exit 2) otherwise."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise UsageError(f"--metrics {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9469")
    return host, int(port)


class Exporter:
    """The metrics of one server: ``saw`` every committed event; ``start`` listens, ``close`` stops."""

    def __init__(self, board: Board, cfg: Callable[[], Config], clients: Callable[[], Iterable[str]],
                 journal_path: Path | Any) -> None:
        """journal_path: journal.db's path, or the Journal's store (journal/store.py), read on a connection of its
        own."""
        self.board = board
        self.cfg = cfg  # the config as it is now (it may be reloaded)
        self.clients = clients  # the kind of every connected client
        self.journal_path = journal_path
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deploys = Counter("controlroom_deploys", "Deploys ended, by result; marked: past a failed gate or "
                               "an exceeded failure budget", ["result", "marked"], registry=r)
        for result in RESULTS.values():
            self.deploys.labels(result, "false")
        self.deploy_seconds = Histogram("controlroom_deploy_duration_seconds", "How long a deploy took, start to "
                                        "end", buckets=DEPLOY_BUCKETS, registry=r)
        self.phase_seconds = Histogram("controlroom_phase_duration_seconds", "How long a phase took", ["phase"],
                                       buckets=PHASE_BUCKETS, registry=r)
        self.verdicts = Counter("controlroom_gate_verdicts", "Gate verdicts at phase boundaries",
                                ["phase", "series", "verdict"], registry=r)
        self.flag_changes = Counter("controlroom_flag_changes", "Flag changes journaled", ["flag", "kind"],
                                    registry=r)
        self.chat_failures = Counter("controlroom_chat_failures", "Announcements a chat channel could not send "
                                     "(gave_up: it stopped trying)", ["channel", "gave_up"], registry=r)
        self._flag_versions: dict[str, int] = {}
        self.figures: dict[str, float] = {}
        self._figures_at = float("-inf")
        self._figures_task: asyncio.Task | None = None
        self._server: asyncio.AbstractServer | None = None
        r.register(_Gauges(self))

    # ------------------------------------------------------------------------------------------ the stream
    def saw(self, e: ev.Event) -> None:
        """One event the server committed; never raises into the stream."""
        try:
            self._saw(e)
        except Exception:  # noqa: BLE001 - a metric must never stop a deploy
            pass

    def _saw(self, e: ev.Event) -> None:
        cfg = self.cfg()
        t = type(e)
        if t is ev.RolloutFinished:
            if e.status in RESULTS:
                marked = ev.MARK_GATE in e.marks or ev.MARK_BUDGET in e.marks
                self.deploys.labels(RESULTS[e.status], "true" if marked else "false").inc()
                self.deploy_seconds.observe(max(0.0, e.seconds))
        elif t is ev.PhaseCompleted:
            if e.name in {p.name for p in cfg.phases}:
                self.phase_seconds.labels(e.name).observe(max(0.0, e.seconds))
        elif t is ev.GateWaiting:
            phases = {p.name for p in cfg.phases}
            series = {s.name for s in cfg.metrics.series} if cfg.metrics is not None else set()
            for v in e.verdict_list():
                if e.name in phases and v.series in series and v.state in tuple(ev.GateState):
                    self.verdicts.labels(e.name, v.series, str(v.state)).inc()
        elif t is ev.FlagChanged:
            if self._flag_versions.get(e.flag) == e.version:
                return  # the same change's fleet receipt moved on: not another change
            self._flag_versions[e.flag] = e.version
            flag = cfg.flags.flag(e.flag)
            if flag is not None:
                self.flag_changes.labels(flag.name, flag.kind).inc()
        elif t is ev.AnnouncementFailed:
            if e.channel in CHANNELS:
                self.chat_failures.labels(e.channel, "true" if e.gave_up else "false").inc()

    # ------------------------------------------------------------------------------------------ the listener
    async def start(self, host: str, port: int) -> None:
        """Listen on host:port, or UsageError naming the address and why not."""
        try:
            self._server = await asyncio.start_server(self._serve, host, port, limit=REQUEST_MAX)
        except OSError as e:
            raise UsageError(f"--metrics {host}:{port}: cannot listen: {e.strerror or e}") from None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._figures_task is not None:
            self._figures_task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            method, path = (head.split(b"\r\n", 1)[0].split(b" ") + [b"", b""])[:2]
            if method != b"GET" or path.split(b"?", 1)[0] != b"/metrics":
                self._answer(writer, b"404 Not Found", b"text/plain", b"not found: GET /metrics\n")
            else:
                await self._refresh_figures()
                self._answer(writer, b"200 OK", CONTENT_TYPE_LATEST.encode(), generate_latest(self.registry))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _answer(writer: asyncio.StreamWriter, status: bytes, ctype: bytes, body: bytes) -> None:
        writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    # ------------------------------------------------------------------------------------------ DORA
    async def _refresh_figures(self) -> None:
        """Start computing the figures when the last ones are older than FIGURES_EVERY; wait FIGURES_WAIT at most."""
        if self._figures_task is None and time.monotonic() - self._figures_at >= FIGURES_EVERY:
            self._figures_at = time.monotonic()
            self._figures_task = asyncio.ensure_future(asyncio.to_thread(_figures, self.journal_path, self.cfg()))
        task = self._figures_task
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), FIGURES_WAIT)
        if task.done():
            self._figures_task = None
            if not task.cancelled() and task.exception() is None:
                self.figures = task.result()


def _figures(journal_path: Path | Any, cfg: Config) -> dict[str, float]:
    """The known DORA figures, by metric name (in a thread: figures.of_week, its own read-only connection)."""
    from controlroom.engine import figures

    d = figures.of_week(journal_path, cfg).to_dict()
    out: dict[str, float] = {}
    if d["deploys_per_day"] is not None:
        out["controlroom_deploys_per_day"] = d["deploys_per_day"]
    if "rate" in d["change_failure_rate"]:
        out["controlroom_change_failure_rate"] = d["change_failure_rate"]["rate"]
    if "median" in d["lead_time"]:
        out["controlroom_lead_time_median_seconds"] = d["lead_time"]["median"]
        out["controlroom_lead_time_p90_seconds"] = d["lead_time"]["p90"]
    if "median" in d["time_to_restore"]:
        out["controlroom_time_to_restore_median_seconds"] = d["time_to_restore"]["median"]
    return out


FIGURE_HELP = {
    "controlroom_deploys_per_day": f"Deploys started per day over the last {FIGURES_DAYS} days",
    "controlroom_change_failure_rate": f"Deploys that failed or needed a rollback or kill switch, of all, over "
                                       f"the last {FIGURES_DAYS} days",
    "controlroom_lead_time_median_seconds": "Commit to its last host, median over the commits shipped",
    "controlroom_lead_time_p90_seconds": "Commit to its last host, p90 over the commits shipped",
    "controlroom_time_to_restore_median_seconds": "Failure to rollback done or gate holding again, median",
}


class _Gauges:
    """What is read when Prometheus scrapes: hosts by state (the board), clients by kind, the last figures."""

    def __init__(self, exporter: Exporter) -> None:
        self.x = exporter

    def describe(self):
        return []  # unchecked: the figures come and go

    def collect(self):
        hosts = GaugeMetricFamily("controlroom_hosts", "Hosts of the current deploy by state (the board)",
                                  labels=["state"])
        counts = dict.fromkeys(ev.HOST_STATES, 0)
        for h in list(self.x.board.hosts.values()):
            if h.state in counts:
                counts[h.state] += 1
        for state, n in counts.items():
            hosts.add_metric([str(state)], n)
        yield hosts
        clients = GaugeMetricFamily("controlroom_clients", "Clients connected to the server by kind",
                                    labels=["kind"])
        kinds = dict.fromkeys(CLIENT_KINDS, 0)
        for k in self.x.clients():
            if k in kinds:
                kinds[k] += 1
        for k, n in kinds.items():
            clients.add_metric([k], n)
        yield clients
        for name, value in self.x.figures.items():
            yield GaugeMetricFamily(name, FIGURE_HELP[name], value=value)
