"""The metrics pane's drawing, data -> cells: plain Python, no Textual or Rich, so it is tested on its own.

`draw(reply, markers, width, now)` turns the server's `metrics` answer (controlroom.sources.metrics.snapshot) and the deploy
markers into rows of (text, style) runs, each row at most `width` cells. The widget only maps the style names to
colours. What a row says never depends on colour: every status has a symbol (NO_COLOR works).

Unlike Textual's Sparkline, a series' scale includes its threshold (a line under it is drawn under it), from 0 (or
the lowest value, when negative); all its lines share one scale (r2307 drawn against r2306); a column with no sample,
or only NaN, is a gap; and the columns are time buckets over the window, so markers line up under them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OK, BREACH, UNKNOWN = "ok", "breach", "unknown"
SYMBOL = {OK: "✓", BREACH: "✗", UNKNOWN: "?"}
BLOCKS = "▁▂▃▄▅▆▇█"
GAP = " "

# marker kinds, in the order the legend names them; a later kind wins a shared column
PHASE, FLAG, GATE, HALT = "phase", "flag", "gate", "halt"
MARKS = {PHASE: "▲", FLAG: "⚑", GATE: "◆", HALT: "■"}
LEGEND = {PHASE: "phase start", FLAG: "flag", GATE: "gate", HALT: "halt"}
_RANK = {k: i for i, k in enumerate(MARKS)}

MIN_SPARK = 12  # narrower than this, a line's figures go on a row of their own above its sparkline

Run = tuple[str, str]  # (text, style name): "", "name", "dim", OK, BREACH, UNKNOWN, or "mark-<kind>"
Row = list[Run]


@dataclass(frozen=True)
class Marker:
    """Something that happened to the fleet at a time (a phase started, a halt, a gate's verdict, a flag flip)."""

    at: float
    kind: str  # PHASE, FLAG, GATE or HALT
    label: str = ""
    bad: bool = False  # a gate that did not pass: drawn in the breach style


# ----------------------------------------------------------------------------------------------- numbers


def figure(value: float | None, unit: str = "") -> str:
    """7.9%, 0.12%, 412ms, 1,250 req/s; "-" for no value."""
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return ("+" if value > 0 else "-") + "Inf" + unit
    a = abs(value)
    if a >= 1000:
        text = f"{value:,.0f}"
    elif a >= 100:
        text = f"{value:.0f}"
    elif a >= 10:
        text = f"{value:.1f}"
    elif a >= 1:
        text = f"{value:.1f}"
    elif a == 0:
        text = "0"
    elif a >= 0.01:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    elif a >= 0.0001:  # two significant digits, never scientific: 0.0035%, not 3.5e-03%
        text = f"{value:.{1 - math.floor(math.log10(a))}f}"
    else:
        text = ("-" if value < 0 else "") + "<0.0001"
    return text + unit


def threshold(series: dict) -> str:
    if series.get("max") is not None:
        return f"max {series['max']:g}"
    if series.get("min") is not None:
        return f"min {series['min']:g}"
    return ""


def status(series: dict, value: float | None) -> str:
    if value is None or math.isnan(value):
        return UNKNOWN
    hi, lo = series.get("max"), series.get("min")
    if (hi is not None and value > hi) or (lo is not None and value < lo):
        return BREACH
    return OK


def _real(v: object) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def columns(points: Iterable[Sequence], start: float, window: float, width: int, worst=max) -> list[float | None]:
    """The samples [[t, v|None], ...] bucketed into `width` columns over [start, start + window]; a column holds the
    worst of its samples (the highest for a max threshold). A column no sample fell in carries the previous sample
    on when that is at most 1.5 sampling steps old (columns finer than the samples); it is None (a gap) when the
    source said null or NaN there, or had no sample for longer."""
    cols: list[float | None] = [None] * width
    if width <= 0 or window <= 0:
        return cols
    seen = [False] * width  # a sample (even a null one) fell in the column
    latest: list[float] = [-math.inf] * width  # the time of the column's latest real sample
    times: list[float] = []
    for p in points:
        try:
            t = float(p[0])
        except (TypeError, ValueError, IndexError):
            continue
        times.append(t)
        i = int((t - start) / window * width)
        if not 0 <= i <= width:
            continue
        i = min(i, width - 1)  # the sample taken at `now` belongs to the last column
        seen[i] = True
        v = _real(p[1])
        if v is None:
            continue
        cur = cols[i]
        cols[i] = v if cur is None else worst(cur, v)
        latest[i] = max(latest[i], t)
    times.sort()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    step = sorted(gaps)[len(gaps) // 2] if gaps else 0.0
    prev, prev_t = None, -math.inf
    for i in range(width):
        if cols[i] is not None:
            prev, prev_t = cols[i], latest[i]
        elif seen[i]:
            prev = None  # the source said "no value" here: a gap, not the last value carried on
        elif prev is not None and start + i * window / width - prev_t <= 1.5 * step:
            cols[i] = prev
    return cols


def scale(values: Iterable[float | None], limit: float | None) -> tuple[float, float]:
    """(low, high) of a series' y-axis: from min(0, lowest) to max(highest, the threshold)."""
    real = [v for v in values if v is not None and not math.isinf(v)]
    lo = min([0.0, *real])
    hi = max([lo, *real, *([limit] if limit is not None else [])])
    return lo, hi


def block(v: float | None, lo: float, hi: float) -> str:
    """One cell: a gap for no value, the lowest block for the bottom of the scale, the highest for its top."""
    if v is None:
        return GAP
    if math.isinf(v):
        return BLOCKS[-1] if v > 0 else BLOCKS[0]
    if hi <= lo:
        return BLOCKS[0] if v <= 0 else BLOCKS[-1]
    k = round((v - lo) / (hi - lo) * (len(BLOCKS) - 1))
    return BLOCKS[max(0, min(len(BLOCKS) - 1, k))]


def spark_runs(cols: list[float | None], lo: float, hi: float, series: dict, dim: bool = False) -> Row:
    """The sparkline as runs: a cell over the threshold in the breach style, the others ok (or dim)."""
    runs: Row = []
    for v in cols:
        style = "dim" if dim else (BREACH if v is not None and status(series, v) == BREACH else OK)
        ch = block(v, lo, hi)
        if runs and runs[-1][1] == style:
            runs[-1] = (runs[-1][0] + ch, style)
        else:
            runs.append((ch, style))
    return runs


def marker_runs(markers: Iterable[Marker], start: float, window: float, width: int) -> Row:
    """The time axis under the sparklines: a marker's symbol in its column ("·" where nothing happened)."""
    cells: list[Marker | None] = [None] * width
    for m in markers:
        if window <= 0 or width <= 0:
            break
        i = int((m.at - start) / window * width)
        if not 0 <= i <= width:
            continue
        i = min(i, width - 1)
        cur = cells[i]
        if cur is None or (_RANK.get(m.kind, 0), m.bad) >= (_RANK.get(cur.kind, 0), cur.bad):
            cells[i] = m
    runs: Row = []
    for m in cells:
        text, style = ("·", "dim") if m is None else (MARKS.get(m.kind, "|"), f"mark-{m.kind}" + ("-bad" if m.bad
                                                                                                  else ""))
        if runs and runs[-1][1] == style:
            runs[-1] = (runs[-1][0] + text, style)
        else:
            runs.append((text, style))
    return runs


def span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


# ----------------------------------------------------------------------------------------------- the pane


def _fit(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _pad(row: Row, width: int) -> Row:
    """Cut a row to width cells (every glyph used here is one cell wide)."""
    out: Row = []
    left = width
    for text, style in row:
        if left <= 0:
            break
        text = text[:left]
        left -= len(text)
        out.append((text, style))
    return out


def draw(reply: dict | None, markers: Sequence[Marker], width: int, now: float, *, note: str = "") -> list[Row]:
    """The pane's rows for the server's `metrics` answer at `now` (when it was answered), `width` cells wide.

    reply None: nothing answered yet (`note` says why, e.g. "reading the metrics source"). A series with "error"
    is one row "? name  unknown: <error>", never a line; a source's warnings follow its series as "! <warning>".
    Text in the reply is expected clean already."""
    width = max(width, 1)
    if reply is None:
        return [[(_fit(note or "reading the metrics source…", width), "dim")]]
    window = float(reply.get("window") or 900.0)
    start = now - window
    series = [s for s in reply.get("series") or [] if isinstance(s, dict)]
    if not series:
        return [[(_fit("no series in [metrics]: add a [metrics.series.NAME] query", width), "dim")]]
    names = [str(s.get("name", "?")) for s in series]
    labels = [str(k) for s in series for k in (s.get("lines") or {}) if k]
    name_w = max(len(n) for n in names)
    label_w = name_w + (1 + max(len(k) for k in labels) if labels else 0)
    figs = []
    for s in series:
        unit = str(s.get("unit") or "")
        for line in (s.get("lines") or {}).values():
            figs.append(figure(_real(line.get("value")), unit))
    fig_w = max([len(f) for f in figs] + [6])  # room for "7.9%" to become "110ms" without the layout moving
    thr_w = max(len(threshold(s)) for s in series)
    figures_w = 1 + fig_w + (1 + thr_w if thr_w else 0)
    spark_w = width - 2 - min(label_w, max(8, width // 3)) - 1 - figures_w
    narrow = spark_w < MIN_SPARK
    if narrow:  # two rows a line: the figures, then the sparkline across the whole width
        spark_w = max(1, width - 2)
        label_w = min(label_w, max(1, width - 2 - figures_w))
    else:
        label_w = min(label_w, max(8, width // 3))
    rows: list[Row] = []
    for s, name in zip(series, names, strict=True):
        unit = str(s.get("unit") or "")
        thr = threshold(s)
        lines = s.get("lines") or {}
        if s.get("error") or not lines:
            why = f"unknown: {s['error']}" if s.get("error") else "unknown: no data"
            head = [(SYMBOL[UNKNOWN] + " ", UNKNOWN), (_fit(name, label_w).ljust(label_w) + " ", "name")]
            room = width - 2 - len(head[1][0])
            if not narrow and len(why) + (1 + len(thr) if thr else 0) <= room:
                rows.append(_pad([*head, (why, UNKNOWN), ((" " + thr) if thr else "", "dim")], width))
            elif not narrow and len(why) <= room:
                rows.append(_pad([*head, (why, UNKNOWN)], width))
            else:  # the reason matters more than the threshold: a row of its own
                rows.append(_pad([*head, (thr, "dim")], width))
                rows.append(_pad([("  ", ""), (_fit(why, width - 2), UNKNOWN)], width))
            continue
        worst = min if s.get("max") is None and s.get("min") is not None else max
        cols = {k: columns(line.get("points") or (), start, window, spark_w, worst) for k, line in lines.items()}
        lo, hi = scale((v for c in cols.values() for v in c),
                       s.get("max") if s.get("max") is not None else s.get("min"))
        for j, (k, line) in enumerate(lines.items()):
            value = _real(line.get("value"))
            st = status(s, value)
            label = (name if j == 0 else " " * len(name)) + (f" {k}" if k else "")
            head = [(SYMBOL[st] + " ", st), (_fit(label, label_w).ljust(label_w) + " ", "name" if j == 0 else "")]
            tail = [(figure(value, unit).rjust(fig_w), st), ((" " + thr.ljust(thr_w)) if thr_w else "", "dim")]
            spark = spark_runs(cols[k], lo, hi, s, dim=st == UNKNOWN)
            if narrow:
                rows.append(_pad([*head, *tail], width))
                rows.append(_pad([("  ", ""), *spark], width))
            else:
                rows.append(_pad([*head, *spark, (" ", ""), *tail], width))
        for w in s.get("warnings") or ():  # the source answered, but said the answer may be partial
            rows.append(_pad([("  ", ""), (_fit(f"! {w}", width - 2), UNKNOWN)], width))
    gutter = 2 if narrow else 2 + label_w + 1
    axis = _fit("deploys", gutter - 1).ljust(gutter) if not narrow else "  "
    rows.append(_pad([(axis, "dim"), *marker_runs(markers, start, window, spark_w)], width))
    rows.append(_pad(legend(window, width), width))
    return rows


def legend(window: float, width: int) -> Row:
    """What the marker symbols mean and the window the axis spans, shortened to fit."""
    for long in (True, False):
        row: Row = []
        for kind, sym in MARKS.items():
            row += [(sym, f"mark-{kind}"), (f" {LEGEND[kind] if long else kind} ", "dim")]
        row.append((f"· last {span(window)}" if long else f"· {span(window)}", "dim"))
        if sum(len(t) for t, _ in row) <= width:
            break
    return row


def plain(rows: list[Row]) -> list[str]:
    """The rows as the operator reads them, without styles."""
    return ["".join(text for text, _ in row) for row in rows]
