"""Metrics sources over httpx: the Prometheus HTTP API and Graphite's render API.

A source answers two questions about a series (settings.SeriesSpec): its current value (``current``: one number per
line, for gates and the pane's figure) and its history over a window (``history``: points per line, for
sparklines). A line is one value of the series' ``split`` label (e.g. a revision), or "" when not split.

Every failure is a MetricsError whose message is one line for the operator. It never holds the source's URL or
token: httpx's own error text names the URL, so only a short cause ("connection refused", "timed out", "HTTP 502")
is kept. Transport errors and 5xx answers are retried with backoff; a query the source rejects (4xx) is not.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Mapping

import httpx

from controlroom.errors import ControlroomError
from controlroom.settings import MetricsSettings, SeriesSpec
from controlroom.text import clean

MAX_POINTS = 11_000  # Prometheus refuses a query_range of more points than this
RETRIES = 3
BACKOFF = 0.2  # seconds before the 2nd try; doubles after each
TIMEOUT = 5.0

Lines = dict[str, float]  # line label -> value (NaN when the source said so)
History = dict[str, list[tuple[float, float]]]  # line label -> [(unix time, value)], gaps as NaN


class MetricsError(ControlroomError):
    """The source could not answer (down, refused the query, said nothing): the reason is one line, no URL."""


def _nth(n: int) -> str:
    return f"{n}{'st' if n == 1 else 'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


def _cause(e: httpx.HTTPError) -> str:
    """A short cause that never carries the URL (httpx puts it in its messages)."""
    text = str(e).lower()
    inner: BaseException | None = e
    for _ in range(5):  # anyio says "All connection attempts failed"; the OS error is further down
        inner = inner.__cause__ or inner.__context__ if inner else None
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
        if isinstance(inner, OSError) and inner.strerror:
            text += " " + inner.strerror.lower()
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    if isinstance(e, httpx.ConnectError):
        if "refused" in text:
            return "connection refused"
        if "name or service" in text or "nodename" in text or "resolve" in text:
            return "name not found"
        if "certificate" in text or "ssl" in text:
            return "TLS certificate not trusted"
        return "cannot connect"
    if isinstance(e, httpx.RemoteProtocolError):
        return "connection dropped"
    return type(e).__name__


def parse_value(v: object) -> float:
    """A sample value as Prometheus writes it: a string, "NaN", "+Inf", "-Inf"; None (a Graphite gap) is NaN."""
    if v is None:
        return math.nan
    try:
        return float(v)  # float() reads "NaN", "+Inf" and "-Inf" as Prometheus writes them
    except (TypeError, ValueError):
        raise MetricsError(f"the source sent a value that is not a number: {str(v)[:40]!r}") from None


class Source:
    """Base of the sources: one httpx.AsyncClient, TLS verified, the bearer token from the named variable."""

    def __init__(self, settings: MetricsSettings, *, env: Mapping[str, str] | None = None,
                 timeout: float = TIMEOUT, retries: int = RETRIES, backoff: float = BACKOFF) -> None:
        if not settings.url:
            raise MetricsError("no metrics source: set [metrics] url")
        env = os.environ if env is None else env
        headers = {"Accept": "application/json"}
        if settings.token_env:
            token = env.get(settings.token_env)
            if not token:
                raise MetricsError(f"metrics.token_env names ${settings.token_env}, which is not set")
            headers["Authorization"] = f"Bearer {token}"
        self.settings = settings
        self.retries = max(1, retries)
        self.backoff = backoff
        self.warnings: list[str] = []  # the latest answer's warnings (Prometheus), for whoever shows them
        self._client = httpx.AsyncClient(base_url=settings.url.rstrip("/"), headers=headers, verify=True,
                                         timeout=timeout, follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Source:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _get(self, path: str, params: dict) -> object:
        """GET and decode JSON, with retries; raises MetricsError (one line, no URL)."""
        why = ""
        for attempt in range(1, self.retries + 1):
            if attempt > 1:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 2))
            try:
                resp = await self._client.get(path, params=params)
            except httpx.HTTPError as e:
                why = f"{_cause(e)}, {_nth(attempt)} try"
                continue
            try:
                body = resp.json()
            except ValueError:
                body = None
            if resp.status_code >= 500 and not isinstance(body, dict):
                why = f"HTTP {resp.status_code} (not JSON), {_nth(attempt)} try"
                continue
            if resp.status_code >= 400 and isinstance(body, dict) and body.get("error"):
                raise MetricsError(f"the source refused the query: {str(body['error'])[:200]}")
            if resp.status_code >= 400:
                raise MetricsError(f"HTTP {resp.status_code}" + ("" if body is not None else " (not JSON)"))
            if body is None:
                raise MetricsError(f"HTTP {resp.status_code} answer is not JSON")
            return body
        raise MetricsError(why)

    async def current(self, spec: SeriesSpec) -> Lines:
        raise NotImplementedError

    async def history(self, spec: SeriesSpec, window: float | None = None, step: float | None = None) -> History:
        raise NotImplementedError

    def _step(self, window: float, step: float | None) -> float:
        step = step or max(self.settings.interval, 1.0)
        return max(step, math.ceil(window / (MAX_POINTS - 1)))


def _label(metric: dict, split: str | None, n: int) -> str:
    if split:
        return str(metric.get(split, ""))
    if n == 1:
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__")


class PrometheusSource(Source):
    async def _data(self, path: str, params: dict) -> dict:
        body = await self._get(path, params)
        if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            err = body.get("error") if isinstance(body, dict) else None
            raise MetricsError(f"the source answered an error: {str(err)[:200]}" if err else
                               "the source's answer is not a Prometheus API answer")
        self.warnings = [str(w)[:200] for w in body.get("warnings") or []]
        return body["data"]

    async def current(self, spec: SeriesSpec) -> Lines:
        data = await self._data("/api/v1/query", {"query": spec.query, "time": f"{time.time():.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return {"": parse_value(result[1])}
        if kind != "vector" or not isinstance(result, list):
            raise MetricsError(f"the query answers a {kind or 'nothing'}, not an instant vector")
        out: Lines = {}
        for item in result:
            out[_label(item.get("metric") or {}, spec.split, len(result))] = parse_value(item["value"][1])
        return out

    async def history(self, spec: SeriesSpec, window: float | None = None, step: float | None = None) -> History:
        window = window or self.settings.window
        step = self._step(window, step)
        end = time.time()
        data = await self._data("/api/v1/query_range", {"query": spec.query, "start": f"{end - window:.3f}",
                                                         "end": f"{end:.3f}", "step": f"{step:g}"})
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list):
            raise MetricsError("the range query did not answer a matrix")
        out: History = {}
        for item in result:
            pts = [(float(t), parse_value(v)) for t, v in item.get("values") or []]
            out[_label(item.get("metric") or {}, spec.split, len(result))] = pts
        return out


class GraphiteSource(Source):
    """Graphite's /render?format=json: [{"target": ..., "datapoints": [[value|null, ts], ...]}]. A split line is
    the target's name (Graphite has no labels)."""

    async def _render(self, spec: SeriesSpec, seconds: float) -> History:
        body = await self._get("/render", {"target": spec.query, "format": "json", "from": f"-{int(seconds)}s"})
        if not isinstance(body, list):
            raise MetricsError("the source's answer is not a Graphite render answer")
        out: History = {}
        for item in body:
            name = str(item.get("target", "")) if (spec.split or len(body) > 1) else ""
            out[name] = [(float(ts), parse_value(v)) for v, ts in item.get("datapoints") or []]
        return out

    async def current(self, spec: SeriesSpec) -> Lines:
        hist = await self._render(spec, max(60.0, 5 * self.settings.interval))
        out: Lines = {}
        for name, pts in hist.items():
            vals = [v for _, v in pts if not math.isnan(v)]
            if vals:
                out[name] = vals[-1]
        return out

    async def history(self, spec: SeriesSpec, window: float | None = None, step: float | None = None) -> History:
        return await self._render(spec, window or self.settings.window)


def make_source(settings: MetricsSettings, **kw) -> Source:
    """The source [metrics] names; raises MetricsError when there is none to read."""
    if settings.source == "graphite":
        return GraphiteSource(settings, **kw)
    return PrometheusSource(settings, **kw)


def threshold_text(spec: SeriesSpec) -> str:
    if spec.max is not None:
        return f"max {spec.max:g}"
    if spec.min is not None:
        return f"min {spec.min:g}"
    return ""


def breaches(spec: SeriesSpec, value: float) -> bool:
    return (spec.max is not None and value > spec.max) or (spec.min is not None and value < spec.min)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 30, top: float | None = None) -> str:
    """Unicode blocks for the last `width` values, scaled 0..max(values, top); NaN is a space (a gap)."""
    vals = values[-width:]
    real = [v for v in vals if not math.isnan(v) and not math.isinf(v)]
    hi = max(real + ([top] if top is not None else []), default=0.0)
    lo = min(min(real, default=0.0), 0.0)
    span = (hi - lo) or 1.0
    out = []
    for v in vals:
        if math.isnan(v):
            out.append(" ")
        elif math.isinf(v):
            out.append(SPARK[-1] if v > 0 else SPARK[0])
        else:
            out.append(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


def _num(v: float) -> float | None:
    return None if math.isnan(v) or math.isinf(v) else v  # JSON has no NaN: a gap is null


async def snapshot(settings: MetricsSettings, points: int = 60, source: Source | None = None) -> dict:
    """Every series now and over the window, JSON-able (the server's `metrics` read, for the metrics pane):
    {"interval", "window", "series": [{"name", "unit", "max", "min", "split", "error", "lines": {label:
    {"value", "points": [[t, v|null], ...]}}, "warnings": [one line, ...]}]}. A series the source cannot answer has "error" (one line) and no
    lines: never stale numbers shown as live. With ``source`` (kept open by the caller, e.g. the server between
    polls) its connections are reused and it is left open; else one is made and closed."""
    out: list[dict] = []
    step = max(settings.window / max(points, 1), 1.0)
    own, why = source is None, ""
    if own:
        try:
            source = make_source(settings)
        except MetricsError as e:
            source, why = None, str(e)
    for spec in settings.series:
        row = {"name": spec.name, "unit": spec.unit, "max": spec.max, "min": spec.min, "split": spec.split,
               "error": None, "warnings": [], "lines": {}}
        out.append(row)
        if source is None:
            row["error"] = why
            continue
        try:
            now = await source.current(spec)
            warned = list(source.warnings)
            hist = await source.history(spec, step=step)
        except MetricsError as e:
            row["error"] = str(e)
            continue
        # the source's own warnings (Prometheus: a partial answer, a query too costly) go with the values
        row["warnings"] = list(dict.fromkeys(clean(w, 200) for w in warned + source.warnings))
        for label in sorted(set(now) | set(hist)):
            row["lines"][label] = {"value": _num(now[label]) if label in now else None,
                                   "points": [[t, _num(v)] for t, v in hist.get(label, [])]}
    if own and source is not None:
        await source.aclose()
    return {"interval": settings.interval, "window": settings.window, "series": out}
