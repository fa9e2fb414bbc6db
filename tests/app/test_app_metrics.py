"""The metrics pane, as the operator sees it: the simulated fleet serving metrics, the real server, the real app.

The drawing itself (data -> rows) is tested on its own at the bottom, with the awkward data a source sends: NaN and
null gaps, a flat line, a threshold far above the data.
"""

from __future__ import annotations

import math
import re

import pytest

from controlroom.app.app import ControlRoom
from controlroom.core import events as ev
from controlroom.demo.fleet import Fleet
from controlroom.demo.metrics_sim import BAD_REVISION
from tests.app.test_app_actions import make_app, press_deploy  # noqa: F401
from tests.servers import closed_port
from tests.waiting import until_shown
from widgets.metrics import HIDDEN_CHECK, MetricsPane
from widgets.sparkline import GATE, HALT, MARKS, PHASE, Marker, columns, draw, plain, scale

WIDE = (160, 48)
NARROW = (80, 24)


@pytest.fixture
def metrics_fleet(tmp_path):
    """Four simulated hosts serving metrics; the fleet answers its config's queries and gates its canary."""
    fleet = Fleet(tmp_path / "fleet", 4, metrics=True).start_in_thread()
    yield fleet
    fleet.stop_thread()


def pane(app: ControlRoom) -> MetricsPane:
    return app.main.query_one(MetricsPane)


def screen_rows(app: ControlRoom) -> list[str]:
    """The pane's rows as painted: each visible line through the line API, as the terminal gets it."""
    p = pane(app)
    return ["".join(seg.text for seg in p.render_line(y)).rstrip() for y in range(p.scrollable_content_region.height)]


async def until(pilot, cond, what: str, timeout: float = 30.0) -> None:
    """Poll the app until cond() holds (tests.waiting.until_shown); fail saying what the pane showed."""
    await until_shown(pilot, cond, what, timeout, lambda: "the pane shows:\n" + "\n".join(pane(pilot.app).lines))


def row_of(app: ControlRoom, pattern: str) -> str | None:
    return next((r for r in pane(app).lines if re.search(pattern, r)), None)


# ----------------------------------------------------------------------------------------------- the app


@pytest.mark.slow
async def test_after_the_canary_ships_r2307_the_pane_shows_errors_5xx_over_its_threshold_with_markers(metrics_fleet):
    app = make_app(metrics_fleet)
    async with app.run_test(size=WIDE) as pilot:
        assert app.no_color  # the test bed runs monochrome: the symbols alone must say it
        await until(pilot, lambda: row_of(app, r"latency_ms .*ms +max 400"), "the first answer")
        await until(pilot, lambda: row_of(app, r"^✓ errors_5xx +r2306\b.*%.*max 5"), "r2306 under its threshold")
        await until(pilot, app.revisions_loaded.is_set, "the revisions")
        await press_deploy(pilot)  # the canary (web001, web002) takes r2307, where new_search answers 8% with a 5xx
        breach = rf"^✗ +(errors_5xx )?{BAD_REVISION} .*\d%\s+max 5"
        await until(pilot, lambda: row_of(app, breach), f"errors_5xx on {BAD_REVISION} shown over max 5")
        assert row_of(app, r"^✓ +(errors_5xx )?r2306 .*max 5"), "r2306 is drawn beside it, under the threshold"
        # the deploy's marks on the time axis, under the sparklines (the canary's start; its gate's verdict may
        # share the column and wins it), and the legend saying what they are
        assert any(m.kind == PHASE for m in app.markers.items), app.markers.items
        axis = rf"^deploys +·*[{MARKS[PHASE]}{MARKS[GATE]}]"
        await until(pilot, lambda: row_of(app, axis), "the canary's start marked")
        assert row_of(app, rf"{MARKS[PHASE]} phase start .*{MARKS[HALT]} halt")
        # what the terminal gets is what the pane says
        painted = screen_rows(app)
        assert any(re.search(breach, r) for r in painted), painted
        # the gate fails on it, and the verdict is marked too
        await until(pilot, lambda: any(m.kind == GATE and m.bad for m in app.markers.items), "the gate's verdict",
                    timeout=40)
        await until(pilot, lambda: MARKS[GATE] in (row_of(app, "^deploys") or ""), "the gate's verdict marked")


async def test_a_closed_metrics_port_shows_unknown_and_why_never_a_line(metrics_fleet):
    path = metrics_fleet.config_path
    port = closed_port()
    path.write_text(re.sub(r'url = "http://127\.0\.0\.1:\d+"', f'url = "http://127.0.0.1:{port}"', path.read_text()))
    app = make_app(metrics_fleet)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: row_of(app, "unknown"), "the source's failure")
        await until(pilot, lambda: len([r for r in pane(app).lines if "unknown: connection refused" in r]) == 2,
                    "both series unknown")
        lines = pane(app).lines
        assert re.match(r"^\? errors_5xx +unknown: connection refused, 3rd try", lines[0]), lines
        assert not any(ch in "".join(lines) for ch in "▁▂▃▄▅▆▇█"), "no data drawn as if it were live"
        assert str(port) not in "\n".join(lines)


async def test_without_metrics_in_the_config_the_pane_says_how_to_add_them_and_never_polls(make_fleet):
    app = make_app(make_fleet(4))
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, app.revisions_loaded.is_set, "the revisions")
        text = " ".join(pane(app).lines)
        assert text.startswith("No [metrics] in controlroom.toml: add [metrics] url"), text
        assert "[metrics.series.NAME]" in text
        assert pane(app).polls == 0


@pytest.mark.slow
async def test_on_a_small_terminal_the_pane_polls_only_while_its_tab_is_shown(metrics_fleet):
    app = make_app(metrics_fleet)
    async with app.run_test(size=NARROW) as pilot:
        await until(pilot, app.revisions_loaded.is_set, "the revisions")
        p = pane(app)
        assert not p.shown and p.polls == 0
        app.action_show_tab("tab-metrics")
        await until(pilot, lambda: row_of(app, r"^✓ latency_ms"), "the pane's first answer once shown")
        assert p.shown
        app.action_show_tab("tab-rollout")
        await until(pilot, lambda: not p._polling, "the poll under way to end")
        seen, skipped = p.polls, p.skipped
        interval = app.cfg.metrics.interval
        # longer than an interval out of sight: every poll that fell due was skipped
        await until(pilot, lambda: p.skipped >= skipped + 2 * interval / HIDDEN_CHECK, "polls to fall due")
        assert p.polls == seen


# ----------------------------------------------------------------------------------------------- the drawing

NOW = 10_000.0


def reply(*series: dict, window: float = 300) -> dict:
    return {"window": window, "interval": 2, "series": list(series)}


def series(name="errors_5xx", unit="%", max=5.0, lines=None, error=None) -> dict:  # noqa: A002 - the config's word
    return {"name": name, "unit": unit, "max": max, "min": None, "error": error, "lines": lines or {}}


def points(values, window=300.0):
    step = window / len(values)
    return [[NOW - window + (i + 0.5) * step, v] for i, v in enumerate(values)]


def spark(row: str) -> str:
    return "".join(ch for ch in row if ch in "▁▂▃▄▅▆▇█ ").strip(" ")


def test_a_line_under_its_threshold_is_drawn_under_it():
    rows = plain(draw(reply(series(lines={"": {"value": 1.0, "points": points([1.0] * 40)}})), [], 80, NOW))
    line = spark(rows[0])
    assert set(line) == {"▂"}, rows  # 1 of a 0..5 scale: low, not the full height Textual's Sparkline would draw
    assert rows[0].startswith("✓ errors_5xx") and rows[0].rstrip().endswith(" 1.0% max 5")


def test_all_equal_values_draw_a_flat_line_and_zero_sits_on_the_floor():
    flat = scale([3.0, 3.0, 3.0], None)
    assert flat == (0.0, 3.0)
    rows = plain(draw(reply(series(max=None, lines={"": {"value": 0.0, "points": points([0.0] * 40)}})), [], 80,
                      NOW))
    assert set(spark(rows[0])) == {"▁"}, rows
    assert "max" not in rows[0]


def test_nan_and_null_samples_are_gaps_and_a_nan_value_is_unknown():
    values = [2.0] * 10 + [math.nan] * 10 + [None] * 10 + [2.0] * 10
    cols = columns(points(values), NOW - 300, 300, 40)
    assert cols[:10] == [2.0] * 10 and cols[10:30] == [None] * 20 and cols[30:] == [2.0] * 10
    rows = plain(draw(reply(series(lines={"": {"value": math.nan, "points": points(values)}})), [], 80, NOW))
    assert rows[0].startswith("? errors_5xx"), rows
    line = spark(rows[0])  # 2 on a 0..5 scale, then the gap, then 2 again; a NaN now is no reason to hide it
    assert re.fullmatch(r"(▄+)( +)(▄+)", line) and len(line.strip("▄")) / len(line) == pytest.approx(0.5, abs=0.05)


def test_split_lines_share_one_scale_and_each_is_labelled():
    lines = {"r2306": {"value": 0.1, "points": points([0.1] * 40)},
             "r2307": {"value": 8.0, "points": points([0.1] * 20 + [8.0] * 20)}}
    rows = plain(draw(reply(series(lines=lines)), [], 100, NOW))
    assert rows[0].startswith("✓ errors_5xx r2306") and rows[1].startswith("✗            r2307"), rows
    assert set(spark(rows[0])) == {"▁"} and spark(rows[1]).endswith("█" * 20)


def test_markers_fall_in_their_columns_and_the_worst_wins_a_shared_one():
    ms = [Marker(NOW - 300 + 7.5 * 5, PHASE), Marker(NOW - 300 + 7.5 * 30, GATE, bad=True),
          Marker(NOW - 300 + 7.5 * 30 + 1, HALT), Marker(NOW - 9999, HALT)]
    rows = plain(draw(reply(series(lines={"": {"value": 1.0, "points": points([1.0] * 40)}})), ms, 80, NOW))
    axis = next(r for r in rows if r.startswith("deploys"))
    start = len(rows[0]) - len(rows[0].lstrip("✓ ")) + rows[0].index("▂") - 2
    marks = axis[start:].rstrip()
    assert marks.index(MARKS[PHASE]) < marks.index(MARKS[HALT]) and MARKS[GATE] not in marks, rows
    assert marks.count(MARKS[HALT]) == 1  # the one before the window is not drawn


def test_a_narrow_pane_puts_the_figures_above_a_full_width_sparkline():
    rows = plain(draw(reply(series(lines={"": {"value": 1.0, "points": points([1.0] * 40)}}),
                          series("p95_ms", "ms", 400, error="timed out, 3rd try")), [], 34, NOW))
    assert rows[0].startswith("✓ errors_5xx") and rows[0].rstrip().endswith(" 1.0% max 5"), rows
    assert len(spark(rows[1])) == 32
    assert rows[2].startswith("? p95_ms") and rows[3].strip() == "unknown: timed out, 3rd try"
    assert all(len(r) <= 34 for r in rows)


def test_text_from_the_source_is_cleaned_and_its_warnings_are_shown():
    from controlroom.app.metrics import cleaned

    raw = {"window": 300, "interval": 2, "series": [
        {"name": "errors\x1b[2J_5xx", "unit": "%", "max": 5, "min": None, "error": None,
         "warnings": ["partial\x1b]0;pwned\x07 response"],
         "lines": {"r23\x1b[31m07": {"value": 1.0, "points": [[NOW - 1, 1.0], [NOW, "x"]]}}},
        {"name": "p95", "unit": "ms", "max": 400, "min": None, "error": "refused\x1b[2J\nnow", "lines": {}}]}
    rows = plain(draw(cleaned(raw), [], 100, NOW))
    assert not any("\x1b" in r or "\x07" in r or "\n" in r for r in rows), rows
    assert rows[0].startswith("✓ errors") and "r23" in rows[0], rows
    assert rows[1].strip().startswith("! partial") and "response" in rows[1]
    assert rows[2].startswith("? p95") and "unknown: refused" in rows[2]


def test_markers_come_from_phase_starts_and_the_deploy_log_each_once():
    from controlroom.app.metrics import Markers

    m = Markers()
    m.see(ev.PhaseStarted(1, phase=0, name="canary", hosts=2, at=100.0))
    m.see(ev.LogEntryAdded(1, user="mygrant", kind="DEPLOY START", text="r2306 -> r2307", at=100.2))  # same start
    m.see(ev.LogEntryAdded(1, user="mygrant", kind="GATE", text="GATE canary: errors_5xx = 7.9 (max 5): FAILED",
                           at=112.0))
    m.see(ev.LogEntryAdded(0, user="mygrant", kind="FLAG", text="new_search on -> off", at=130.0))
    m.see(ev.LogEntryAdded(0, user="mygrant", kind="NOTE", text="lunch", at=131.0))
    m.see_log(140.0, "GATE", "GATE canary: errors_5xx = 0.1 (max 5): PASSED")
    m.see_log(130.0, "FLAG", "new_search on -> off")  # the journal's copy of what the event already said
    assert [(x.at, x.kind, x.bad) for x in m.items] == [
        (100.0, PHASE, False), (112.0, GATE, True), (130.0, "flag", False), (140.0, GATE, False)]
