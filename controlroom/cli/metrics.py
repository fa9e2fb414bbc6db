"""`controlroom metrics`: every series of [metrics], one line each (one per revision for a split series): a unicode
sparkline over the window, the current value with its unit, the threshold and the status. Exit 0 whatever the
values: it informs, gates decide. A series the source cannot answer says why instead of showing stale numbers."""

from __future__ import annotations

import argparse
import asyncio
import math

from controlroom.config.config import Config
from controlroom.config.settings import SeriesSpec
from controlroom.core.errors import UsageError
from controlroom.core.text import clean
from controlroom.sources.metrics import MetricsError, breaches, make_source, sparkline, threshold_text


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _status(spec: SeriesSpec, value: float) -> str:
    """A value counts only when it is a finite number (as for a gate): NaN and the infinities are unknown."""
    if not math.isfinite(value):
        return f"unknown: {_fmt(value)}" + ("" if math.isnan(value) else ", not a finite number")
    return "BREACH" if breaches(spec, value) else "ok"


async def rows(cfg: Config, width: int) -> list[tuple[str, str, str, str, str]]:
    """(name, sparkline, value, threshold, status) for every series and line."""
    out: list[tuple[str, str, str, str, str]] = []
    try:
        source = make_source(cfg.metrics)
    except MetricsError as e:
        return [(s.name, " " * width, "-", threshold_text(s), f"unknown: {e}") for s in cfg.metrics.series]
    async with source:
        step = max(cfg.metrics.window / width, 1.0)
        for spec in cfg.metrics.series:
            out += await _series_rows(source, spec, step, width)
    return out


async def _series_rows(source, spec: SeriesSpec, step: float, width: int) -> list[tuple[str, str, str, str, str]]:
    limit = threshold_text(spec)
    try:
        now = await source.current(spec)
        warned = list(source.warnings)
        hist = await source.history(spec, step=step)
        warned = list(dict.fromkeys(clean(w, 120) for w in warned + source.warnings))
    except MetricsError as e:
        return [(spec.name, " " * width, "-", limit, f"unknown: {e}")]
    if not now:
        return [(spec.name, " " * width, "-", limit, "unknown: no data")]
    top = spec.max if spec.max is not None else spec.min
    out = []
    for line in sorted(now):
        value = now[line]
        name = f"{spec.name}{{{clean(line, 40)}}}" if line else spec.name
        spark = sparkline([v for _, v in hist.get(line, [])], width, top).rjust(width)  # now at the right
        status = _status(spec, value)
        if warned:  # the source said its answer may be partial: say so beside the value
            status += f" (source warning: {'; '.join(warned)})"
        out.append((name, spark, f"{_fmt(value)}{clean(spec.unit, 10)}", limit, status))
    return out


def json_lines(snap: dict) -> list[dict]:
    """`metrics --json`: one object per series line (one per label value of a split series) from the snapshot
    sources.metrics takes for the app's pane; a series the source cannot answer is one line with its reason."""
    from controlroom.cli.jsonout import when

    out = []
    for row in snap["series"]:
        spec = SeriesSpec(row["name"], "", max=row["max"], min=row["min"], unit=row["unit"])
        base = {"name": row["name"], "unit": row["unit"], "max": row["max"], "min": row["min"],
                "warnings": row["warnings"]}
        if row["error"] is not None or not row["lines"]:
            out.append({**base, "line": None, "value": None, "status": "unknown",
                        "reason": row["error"] if row["error"] is not None else "no data", "points": []})
            continue
        for label, line in row["lines"].items():
            value = line["value"]
            status = "unknown" if value is None else "breach" if breaches(spec, value) else "ok"
            out.append({**base, "line": label or None, "value": value, "status": status,
                        "reason": "no finite value now" if value is None else None,
                        "points": [{**when(t), "value": v} for t, v in line["points"]]})
    return out


def cmd_metrics(cfg: Config, args: argparse.Namespace) -> int:
    if not cfg.metrics.series:
        raise UsageError("no [metrics.series] in the config: nothing to show")
    if args.width < 5:
        raise UsageError("--width must be at least 5")
    if args.json:
        from controlroom.cli.jsonout import emit
        from controlroom.sources.metrics import snapshot

        for line in json_lines(asyncio.run(snapshot(cfg.metrics, points=args.width))):
            emit(line)
        return 0
    table = asyncio.run(rows(cfg, args.width))
    w_name = max(len(r[0]) for r in table)
    w_val = max(len(r[2]) for r in table)
    w_lim = max(len(r[3]) for r in table)
    for name, spark, value, limit, status in table:
        # a source's error, its warnings, a label: outside text, shown as text
        print(clean(f"{name:<{w_name}}  {spark}  {value:>{w_val}}  {limit:<{w_lim}}  {status}".rstrip(), None))
    return 0
