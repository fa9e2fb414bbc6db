"""Metrics sources over httpx: the Prometheus HTTP API and Graphite's render API.

A source answers two questions about a series (settings.SeriesSpec): its current value (``current``: one number per
line, for gates and the pane's figure) and its history over a window (``history``: points per line, for
sparklines). A line is one value of the series' ``split`` label (e.g. a revision), or "" when not split.

Every failure is a MetricsError whose message is one line for the operator. It never holds the source's URL or
token: httpx's own error text names the URL, so only a short cause ("connection refused", "timed out", "HTTP 502")
is kept. Transport errors and 5xx answers are retried with backoff; a query the source rejects (4xx) is not.

An answer is outside text and is checked before use: it has a deadline for the whole of it (connecting, the headers
and every byte of the body, not each read), it is read as a stream and given up at MAX_BYTES, a redirect is an
error (never followed, its body never taken as the answer), and its JSON must have the shape of the source's API
(every key, list and pair where the API puts it); anything else is a MetricsError naming what was wrong, never a
KeyError or a TypeError out of the source. Values are as the source said (NaN and infinities included): gates.judge
counts only finite numbers. Lines that share a label (two series with the same revision) are all kept by
``samples``, and ``current`` keeps the worse of them, so the worse one is never lost.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from controlroom.config.settings import MetricsSettings, SeriesSpec
from controlroom.core.errors import ControlroomError
from controlroom.core.text import clean

if TYPE_CHECKING:
    import httpx  # imported where a source is made: a command or server without [metrics] never loads it

MAX_POINTS = 11_000  # Prometheus refuses a query_range of more points than this
RETRIES = 3
BACKOFF = 0.2  # seconds before the 2nd try; doubles after each
TIMEOUT = 5.0  # seconds for one whole answer ([metrics] timeout)
MAX_BYTES = 4 * 1024 * 1024  # an answer longer than this is given up, not read on

Lines = dict[str, float]  # line label -> value (NaN when the source said so)
Samples = list[tuple[str, float]]  # (line label, value) for every series of the answer, labels maybe repeated
History = dict[str, list[tuple[float, float]]]  # line label -> [(unix time, value)], gaps as NaN


class MetricsError(ControlroomError):
    """The source could not answer (down, refused the query, said nothing): the reason is one line, no URL."""


def _nth(n: int) -> str:
    return f"{n}{'st' if n == 1 else 'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


def _cause(e: httpx.HTTPError) -> str:
    """A short cause that never carries the URL (httpx puts it in its messages)."""
    import httpx

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
    except (TypeError, ValueError, OverflowError):
        raise MetricsError(f"the source sent a value that is not a number: {clean(repr(v), 40)}") from None


class Source:
    """Base of the sources: one httpx.AsyncClient, TLS verified, the bearer token from the named variable."""

    def __init__(self, settings: MetricsSettings, *, env: Mapping[str, str] | None = None,
                 timeout: float | None = None, retries: int = RETRIES, backoff: float = BACKOFF,
                 max_bytes: int = MAX_BYTES) -> None:
        if not settings.url:
            raise MetricsError("no metrics source: set [metrics] url")
        env = os.environ if env is None else env
        # identity: a compressed answer could be small on the wire and huge once inflated, past the cap unseen
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if settings.token_env:
            token = env.get(settings.token_env)
            if not token:
                raise MetricsError(f"metrics.token_env names ${settings.token_env}, which is not set")
            headers["Authorization"] = f"Bearer {token}"
        self.settings = settings
        self.retries = max(1, retries)
        self.backoff = backoff
        self.timeout = settings.timeout if timeout is None else timeout
        self.max_bytes = max_bytes
        self.warnings: list[str] = []  # the latest answer's warnings (Prometheus), for whoever shows them
        import httpx

        self._client = httpx.AsyncClient(base_url=settings.url.rstrip("/"), headers=headers, verify=True,
                                         timeout=self.timeout, follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Source:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _get(self, path: str, params: dict) -> object:
        """GET and decode JSON, with retries; raises MetricsError (one line, no URL)."""
        import httpx

        why = ""
        for attempt in range(1, self.retries + 1):
            if attempt > 1:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 2))
            try:
                status, data = await self._fetch(path, params)
            except httpx.HTTPError as e:
                why = f"{_cause(e)}, {_nth(attempt)} try"
                continue
            except TimeoutError as e:  # no answer at all is "timed out", as httpx says it
                late = f"no whole answer in {self.timeout:g} s" if e.args else "timed out"
                why = f"{late}, {_nth(attempt)} try"
                continue
            try:
                body = json.loads(data)
            except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python recurses
                body = None
            if status >= 500 and not isinstance(body, dict):
                why = f"HTTP {status} (not JSON), {_nth(attempt)} try"
                continue
            if status >= 400 and isinstance(body, dict) and body.get("error"):
                raise MetricsError(f"the source refused the query: {clean(body['error'], 200)}")
            if status >= 400:
                raise MetricsError(f"HTTP {status}" + ("" if body is not None else " (not JSON)"))
            if body is None:
                raise MetricsError(f"HTTP {status} answer is not JSON")
            return body
        raise MetricsError(why)

    async def _fetch(self, path: str, params: dict) -> tuple[int, bytes]:
        """One answer, whole within the deadline, read as a stream and given up at max_bytes; a redirect is an
        error (its body is not the answer). Raises TimeoutError, httpx.HTTPError or MetricsError."""
        status = None
        try:
            async with asyncio.timeout(self.timeout):  # the whole answer, not each read: a slow drip ends here
                async with self._client.stream("GET", path, params=params) as resp:
                    status = resp.status_code
                    if 300 <= status < 400:
                        raise MetricsError(f"HTTP {status}: the source redirects, and redirects are not "
                                           "followed (set [metrics] url to where it points)")
                    chunks, size = [], 0
                    async for chunk in resp.aiter_raw():
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise MetricsError(f"the answer is larger than {_size(self.max_bytes)}: not read on")
                        chunks.append(chunk)
                    return status, b"".join(chunks)
        except TimeoutError:
            if status is None:
                raise TimeoutError() from None  # no answer at all
            raise TimeoutError("the body") from None  # an answer begun and not ended in time

    async def samples(self, spec: SeriesSpec) -> Samples:
        """Every line of the series now, as (label, value): a label two series share comes twice."""
        return await self._checked(self._samples(spec))

    async def history(self, spec: SeriesSpec, window: float | None = None, step: float | None = None) -> History:
        """Points per line over the window (the latest ``settings.window`` by default)."""
        return await self._checked(self._history(spec, window, step))

    @staticmethod
    async def _checked(answer):
        """What the source answered, or a MetricsError: nothing else gets out of a source, whatever it sent."""
        try:
            return await answer
        except MetricsError:
            raise
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError) as e:
            raise MetricsError(f"the answer could not be read ({type(e).__name__})") from None

    async def _samples(self, spec: SeriesSpec) -> Samples:
        raise NotImplementedError

    async def _history(self, spec: SeriesSpec, window: float | None, step: float | None) -> History:
        raise NotImplementedError

    async def current(self, spec: SeriesSpec) -> Lines:
        """The series now, one value a line: of lines that share a label, the worse (see worse)."""
        out: Lines = {}
        for label, value in await self.samples(spec):
            out[label] = worse(spec, out[label], value) if label in out else value
        return out

    def _step(self, window: float, step: float | None) -> float:
        step = step or max(self.settings.interval, 1.0)
        return max(step, math.ceil(window / (MAX_POINTS - 1)))


class Shape(MetricsError):
    """The answer is JSON, but not of the shape of the source's API."""


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def _bad(api: str, what: str) -> Shape:
    return Shape(f"the answer is not a {api} answer: {what}")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _time(t: object, api: str, where: str) -> float:
    try:
        if _is_number(t) and math.isfinite(t):
            return float(t)
    except OverflowError:  # an integer too large for a float
        pass
    raise _bad(api, f"{where} has a time that is not a number")


def _prom_pair(pair: object, where: str) -> tuple[float, float]:
    """[unix time, "value"]: Prometheus writes every sample value as a string ("NaN" and "+Inf" too)."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise _bad("Prometheus", f"{where} is not a [time, value] pair")
    if not isinstance(pair[1], str):
        raise _bad("Prometheus", f"{where} has a value that is not a string")
    return _time(pair[0], "Prometheus", where), parse_value(pair[1])


def _metric(item: object, where: str) -> dict[str, str]:
    if not isinstance(item, dict):
        raise _bad("Prometheus", f"{where} is not an object")
    metric = item.get("metric", {})
    if not isinstance(metric, dict) or not all(isinstance(v, str) for v in metric.values()):
        raise _bad("Prometheus", f"{where}.metric is not a set of labels")
    return metric


def _label(metric: dict, split: str | None, n: int) -> str:
    if split:
        return clean(metric.get(split, ""), 100)
    if n == 1:
        return ""
    return clean(",".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__"), 200)


def _rank(spec: SeriesSpec, v: float) -> tuple[int, float]:
    if not math.isfinite(v):
        return (1, 0.0)
    return (2 if breaches(spec, v) else 0, -v if spec.min is not None and spec.max is None else v)


def worse(spec: SeriesSpec, a: float, b: float) -> float:
    """Of two values of one line, the one a gate would judge worse: past the threshold, then not a number (it
    cannot be judged), then the nearer the threshold (the larger under a max, the smaller over a min)."""
    return b if _rank(spec, b) > _rank(spec, a) else a


class PrometheusSource(Source):
    async def _data(self, path: str, params: dict) -> dict:
        body = await self._get(path, params)
        if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            err = body.get("error") if isinstance(body, dict) else None
            raise MetricsError(f"the source answered an error: {clean(err, 200)}" if err else
                               "the source's answer is not a Prometheus API answer")
        warnings = body.get("warnings") or []
        if not isinstance(warnings, list):
            raise _bad("Prometheus", "warnings is not a list")
        self.warnings = [clean(w, 200) for w in warnings]
        return body["data"]

    async def _samples(self, spec: SeriesSpec) -> Samples:
        data = await self._data("/api/v1/query", {"query": spec.query, "time": f"{time.time():.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return [("", _prom_pair(result, "the scalar")[1])]
        if kind != "vector":
            raise MetricsError(f"the query answers a {clean(kind, 20) or 'nothing'}, not an instant vector")
        if not isinstance(result, list):
            raise _bad("Prometheus", "the vector's result is not a list")
        out: Samples = []
        for n, item in enumerate(result):
            metric = _metric(item, f"result[{n}]")
            value = _prom_pair(item.get("value"), f"result[{n}].value")[1]
            out.append((_label(metric, spec.split, len(result)), value))
        return out

    async def _history(self, spec: SeriesSpec, window: float | None, step: float | None) -> History:
        window = window or self.settings.window
        step = self._step(window, step)
        end = time.time()
        data = await self._data("/api/v1/query_range", {"query": spec.query, "start": f"{end - window:.3f}",
                                                         "end": f"{end:.3f}", "step": f"{step:g}"})
        result = data.get("result")
        if data.get("resultType") != "matrix":
            raise MetricsError("the range query did not answer a matrix")
        if not isinstance(result, list):
            raise _bad("Prometheus", "the matrix's result is not a list")
        out: History = {}
        for n, item in enumerate(result):
            metric = _metric(item, f"result[{n}]")
            values = item.get("values", [])
            if not isinstance(values, list):
                raise _bad("Prometheus", f"result[{n}].values is not a list")
            pts = [_prom_pair(p, f"result[{n}].values[{k}]") for k, p in enumerate(values)]
            _keep_worse(spec, out, _label(metric, spec.split, len(result)), pts)
        return out


def _keep_worse(spec: SeriesSpec, out: History, label: str, pts: list[tuple[float, float]]) -> None:
    """Two series with one label: the one whose latest value is the worse stands for the line."""
    def last(p: list[tuple[float, float]]) -> float:
        return next((v for _, v in reversed(p) if not math.isnan(v)), math.nan)

    if label not in out or _rank(spec, last(pts)) > _rank(spec, last(out[label])):
        out[label] = pts


class GraphiteSource(Source):
    """Graphite's /render?format=json: [{"target": ..., "datapoints": [[value|null, ts], ...]}]. A split line is
    the target's name (Graphite has no labels)."""

    async def _render(self, spec: SeriesSpec, seconds: float) -> list[tuple[str, list[tuple[float, float]]]]:
        body = await self._get("/render", {"target": spec.query, "format": "json", "from": f"-{int(seconds)}s"})
        if not isinstance(body, list):
            raise MetricsError("the source's answer is not a Graphite render answer")
        out = []
        for n, item in enumerate(body):
            if not isinstance(item, dict) or not isinstance(item.get("target", ""), str):
                raise _bad("Graphite render", f"[{n}] is not a target with a name")
            points = item.get("datapoints", [])
            if not isinstance(points, list):
                raise _bad("Graphite render", f"[{n}].datapoints is not a list")
            pts = []
            for k, p in enumerate(points):
                where = f"[{n}].datapoints[{k}]"
                if not isinstance(p, list) or len(p) != 2:
                    raise _bad("Graphite render", f"{where} is not a [value, time] pair")
                if p[0] is not None and not _is_number(p[0]):
                    raise _bad("Graphite render", f"{where} has a value that is not a number")
                pts.append((_time(p[1], "Graphite render", where), parse_value(p[0])))
            name = clean(item.get("target", ""), 100) if (spec.split or len(body) > 1) else ""
            out.append((name, pts))
        return out

    async def _samples(self, spec: SeriesSpec) -> Samples:
        out: Samples = []
        for name, pts in await self._render(spec, max(60.0, 5 * self.settings.interval)):
            vals = [v for _, v in pts if not math.isnan(v)]
            if vals:
                out.append((name, vals[-1]))
        return out

    async def _history(self, spec: SeriesSpec, window: float | None, step: float | None) -> History:
        out: History = {}
        for name, pts in await self._render(spec, window or self.settings.window):
            _keep_worse(spec, out, name, pts)
        return out


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
