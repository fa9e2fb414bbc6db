"""The layout: every pane at 160x48, tabs at 80x24 with nothing cut off, monochrome under NO_COLOR, snapshots."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from textual.widgets import Footer, TabbedContent

from controlroom.app.app import TOAST_SECONDS, ControlRoom
from controlroom.app.screens import FOCUS_MARK
from controlroom.core import events as ev
from controlroom.demo.fleet import Fleet
from tests.app.test_app_actions import make_app, press_deploy, until  # noqa: F401
from widgets.dialogs import GateHaltDialog
from widgets.host_grid import HostGrid
from widgets.status_line import StatusLine

PANES = ("#rollout", "#deploy-log", "#flags", "#staging-diff", "#metrics")


async def ready(pilot) -> None:
    app: ControlRoom = pilot.app
    await until(pilot, app.revisions_loaded.is_set, "the revisions")
    await until(pilot, lambda: app.flags_pane.rows, "the flags")
    app.flush()
    await pilot.pause()


def assert_inside(app: ControlRoom, widget) -> None:
    w, h = app.size
    r = widget.region
    assert r.width > 0 and r.height > 0, f"{widget} is not on screen"
    assert r.x >= 0 and r.y >= 0 and r.right <= w and r.bottom <= h, f"{widget} is cut off: {r} on {w}x{h}"


def assert_footer_fits(app: ControlRoom) -> None:
    """Every key in the footer is whole and left of the palette's key (docked right: a key under it reads as
    "palettee")."""
    footer = app.screen.query_one(Footer)
    keys = [k for k in footer.query("FooterKey") if k.display and "-command-palette" not in k.classes]
    palette = [k for k in footer.query("FooterKey") if "-command-palette" in k.classes]
    assert keys, "the footer shows no keys"
    end = palette[0].region.x if palette else app.size.width
    for k in keys:
        assert k.region.right <= end, f"footer key {k.key_display} {k.region} runs under the palette at {end}"


async def test_at_160x48_every_pane_is_on_screen_at_once(make_fleet):
    app = make_app(make_fleet(10))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        assert app.main.has_class("-wide")
        for sel in PANES:
            pane = app.main.query_one(sel)
            assert pane.display and pane.parent.display, sel
            assert_inside(app, pane)
            assert pane.region.width >= 30, f"{sel} is too narrow to read: {pane.region}"
        await until(pilot, lambda: app.deploylog.figures, "the week's figures")
        app.flush()
        titles = {str(app.main.query_one(sel).border_title).removeprefix(FOCUS_MARK) for sel in PANES}
        assert titles == {"1 Rollout", "2 Deploy log · In the last 7 days: no deploys", "3 Flags", "4 Staging diff",
                          "5 Metrics"}
        # the placeholders say what will be there, and show no made-up data
        assert " ".join(app.main.query_one("#metrics").lines).startswith("No [metrics] in controlroom.toml")
        assert_footer_fits(app)


@pytest.mark.slow
async def test_at_160x48_a_pane_number_twice_fills_the_screen_with_that_pane_and_again_puts_it_back(make_fleet):
    app = make_app(make_fleet(10))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        diff = app.main.query_one("#staging-diff")
        small = diff.region
        await pilot.press("4", "4")
        await until(pilot, lambda: diff.region.height >= 40 and diff.region.width >= 150, "the diff filling the screen")
        assert not app.main.query_one("#rollout").region.height, "the other panes stay out of the way"
        await pilot.press("4")
        await until(pilot, lambda: diff.region == small, "the diff back in its corner")
        await pilot.press("5", "5")
        await until(pilot, lambda: app.main.query_one("#metrics").region.height >= 40, "the metrics filling the screen")
        await pilot.press("escape")
        await until(pilot, lambda: app.main.maximized is None and app.main.query_one("#rollout").region.height > 40,
                    "escape putting it back")


async def test_at_80x24_the_panes_are_tabs_and_nothing_is_cut_off(make_fleet):
    app = make_app(make_fleet(10, faults="web002=flaky:1"))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert not app.main.has_class("-wide")
        tabs = app.main.query_one(TabbedContent)
        assert tabs.active == "tab-rollout"
        rollout = app.main.query_one("#rollout")
        assert_inside(app, rollout)
        assert not app.main.query_one("#deploy-log").parent.display
        for child in ("#revision-line", "#context-line", "#phase-bars", "#host-grid", "#grid-caption"):
            assert_inside(app, rollout.query_one(child))
        assert not rollout.query_one("#legend").region.height, "24 rows leave the legend to help (?)"
        assert_footer_fits(app)
        # the busiest footer: a halted phase with a failed host under the cursor
        await press_deploy(pilot)
        await until(pilot, lambda: app.status == ev.R_HALTED, "the halt")
        for child in ("#revision-line", "#context-line", "#waiting-line", "#phase-bars", "#host-grid"):
            assert_inside(app, rollout.query_one(child))
        assert_footer_fits(app)
        await pilot.press("3")  # the flags pane's keys are on its own line, not in the footer
        await until(pilot, lambda: app.flags_pane.table.has_focus, "the flags table to take the keys")
        assert_footer_fits(app)
        assert_inside(app, app.flags_pane.query_one("#flags-keys"))
        await pilot.press("2")
        await pilot.pause()
        assert tabs.active == "tab-log"
        assert_inside(app, app.main.query_one("#deploy-log"))
        assert not rollout.parent.display
        await pilot.press("1")
        await pilot.pause()
        assert rollout.parent.display


def row_text(widget, y: int) -> str:
    return "".join(seg.text for seg in widget.render_line(y))


async def test_at_160x48_the_flags_table_shows_name_value_receipt_and_kind_whole_and_the_diff_its_body(make_fleet):
    app = make_app(make_fleet(10))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        table = app.flags_pane.table
        header = row_text(table, 0)
        for column in ("flag", "value", "receipt", "kind"):
            assert f" {column} " in header, f"the flags table's {column!r} header is cut: {header!r}"
        row = row_text(table, 1 + next(i for i, r in enumerate(app.flags_pane.rows) if r["kind"] == "kill_switch"))
        assert "kill switch" in row, f"a kill switch's kind is cut: {row!r}"
        # the staging diff shows the diff itself under its header, commits and files
        from widgets.staging_diff import StagingDiffPane

        diff = app.query_one(StagingDiffPane)
        await until(pilot, lambda: diff.shown, "the staged diff")
        view = diff.view
        painted = [row_text(view, y) for y in range(view.scrollable_content_region.height)]
        assert any(r.startswith("diff --git") for r in painted), painted
        assert any(r.startswith(("+", "-", "@@")) and not r.startswith(("+++", "---")) for r in painted), painted


async def test_at_220x60_the_side_panes_are_wider_and_taller_than_at_160x48(make_fleet):
    app = make_app(make_fleet(10))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        at_160 = {sel: app.main.query_one(sel).region for sel in PANES}
        await pilot.resize_terminal(220, 60)
        await until(pilot, lambda: app.main.query_one("#rollout").region.height >= 58, "the 220x60 layout")
        for sel in PANES:
            pane = app.main.query_one(sel)
            assert_inside(app, pane)
            if sel != "#rollout":
                r = pane.region
                assert r.width >= 60 and r.height >= at_160[sel].height, f"{sel}: {r} (at 160x48: {at_160[sel]})"
        assert app.main.query_one("#staging-diff").region.height >= 30, "the diff gets half the height and more"
        # the host grid still shows every host with its name
        assert not app.host_grid.glyphs


async def test_at_160x48_each_sparkline_gets_at_least_30_cells(metrics_fleet):
    from widgets.metrics import MetricsPane

    app = make_app(metrics_fleet)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = app.main.query_one(MetricsPane)
        await until(pilot, lambda: pane.reply is not None and len(pane.lines) > 2, "the metrics' first answer")
        painted = [row_text(pane, y) for y in range(pane.scrollable_content_region.height)]
        axis = next((r for r in painted if r.startswith("deploys")), "")
        cells = re.match(r"deploys +(\S+)", axis)
        assert cells and len(cells.group(1)) >= 30, f"the time axis (as wide as each sparkline): {axis!r}"


@pytest.mark.slow
async def test_at_80x24_a_failed_gates_long_header_leaves_the_last_phase_on_screen_and_the_footer_fits(
        metrics_fleet):
    app = make_app(metrics_fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, app.revisions_loaded.is_set, "the revisions")
        await press_deploy(pilot)
        await until(pilot, lambda: isinstance(app.screen, GateHaltDialog), "the failed gate's choices", timeout=60)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main, "the gate's dialog closed")
        rollout = app.rollout_pane
        context = rollout.query_one("#context-line")
        assert "FAILED" in str(context.render()) and context.region.height >= 3, "the gate's header is long"
        for child in ("#revision-line", "#context-line", "#phase-bars", "#host-grid", "#grid-caption"):
            assert_inside(app, rollout.query_one(child))
        grid = rollout.query_one(HostGrid)
        assert grid.virtual_size.height <= grid.scrollable_content_region.height, (
            f"the grid needs {grid.virtual_size.height} rows and has {grid.scrollable_content_region.height}: "
            "the last phase is scrolled off")
        painted = [row_text(grid, y) for y in range(grid.scrollable_content_region.height)]
        assert any(r.startswith("stage 2") for r in painted), painted
        assert_footer_fits(app)


@pytest.mark.parametrize("size", [(80, 24), (160, 48), pytest.param((220, 60), marks=pytest.mark.slow)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
async def test_notifications_are_short_gone_in_4_s_cover_no_live_figure_and_an_error_stays_in_the_status_line(
        make_fleet, size):
    app = make_app(make_fleet(4), read_only=True)
    async with app.run_test(size=size, notifications=True) as pilot:
        await ready(pilot)
        # every notification as the app posts it (on a loaded machine one can be gone before it is looked at)
        notes = []
        add = app._notifications.add
        app._notifications.add = lambda n: (notes.append(n), add(n))[1]
        await pilot.press("d")  # read-only: the server's refusal is an error
        await until(pilot, lambda: app.main.query_one(StatusLine).shown, "the refusal in the status line")
        status = app.main.query_one(StatusLine)
        assert "refused" in status.text and "read-only" in status.text, status.text
        assert notes and all(n.timeout <= TOAST_SECONDS for n in notes), [(n.message, n.timeout) for n in notes]
        assert all(len(n.message) <= 80 for n in notes), [n.message for n in notes]  # two lines of the box
        app.clear_notifications()  # the refusal's may have gone already: one of the same length, to see where it stands
        app.notify(notes[0].message, severity=notes[0].severity)
        await until(pilot, lambda: app.screen.query("Toast"), "the toast on screen")
        live = ("#host-grid", "#context-line", "#phase-bars", "#metrics", "#flags", "#deploy-log", "#diff-head")
        regions = [w.region for sel in live for w in app.main.query(sel) if w.region.height]
        for toast in app.screen.query("Toast"):
            assert not any(toast.region.overlaps(r) for r in regions), f"a toast {toast.region} covers a live figure"
        await pilot.press("escape")
        await until(pilot, lambda: not status.shown, "escape dismissing the error")


async def test_resizing_switches_between_tabs_and_the_full_layout(make_fleet):
    app = make_app(make_fleet(4))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert not app.main.query_one("#metrics").parent.display
        await pilot.resize_terminal(160, 48)
        await until(pilot, lambda: app.main.has_class("-wide"), "the wide layout")
        for sel in PANES:
            assert_inside(app, app.main.query_one(sel))
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: not app.main.has_class("-wide"), "the tabs")
        assert app.main.query_one("#rollout").parent.display
        assert not app.main.query_one("#metrics").parent.display


async def test_no_color_gives_a_monochrome_screen_where_symbols_carry_the_state(make_fleet, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(make_fleet(4, faults="web002=fail"))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        assert app.no_color
        await press_deploy(pilot)
        await until(pilot, lambda: app.status == ev.R_HALTED, "the halt")
        grid = app.host_grid
        row = "".join(s.text for s in grid.render_line(grid._row_of[0] - grid.scroll_offset.y))
        assert "✓ web001" in row and "✗ web002" in row
        legend = app.rollout_pane.query_one("#legend").render().plain
        for word in ("· pending", "▶ running", "✓ done", "✗ failed", "⊘ skipped"):
            assert word in legend
        svg = app.export_screenshot()
        colours = {c.lower() for c in re.findall(r"fill: (#[0-9a-fA-F]{6})", svg)}
        tinted = {c for c in colours if _chroma(c) > 8}  # the SVG frame's own #c5c8c6 is grey enough
        assert not tinted, f"NO_COLOR still shows colours: {sorted(tinted)[:5]}"


def _chroma(hex_colour: str) -> int:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return max(r, g, b) - min(r, g, b)


# --------------------------------------------------------------------------------------------- snapshots
# Idle, mid-deploy (the canary done, stage 1 waiting for the operator), the canary's failed gate and DONE, at each
# size. Nothing on screen may depend on the clock: commit ages count from a fixed time (the demo repo's commit
# times are fixed), log lines, lock times and durations show fixed values, and the failed gate's metrics come from
# a source that always answers the same (errors_5xx of r2307 at 7.5%, over a window an hour wide, so the deploy's
# marks fall in its last column). Regenerate with --snapshot-update.
SNAP_NOW = 1_795_608_000.0  # 2026-11-25 12:00 UTC: a fixed time after the demo repo's commits
SIZES = [(80, 24), (120, 40), (160, 48), (220, 60)]


def _size_id(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@pytest.fixture
def _fixed_clock(monkeypatch):
    from controlroom.app import deploylog as app_deploylog
    from widgets import deploy_log, rollout
    from widgets.staging_diff import StagingDiffPane

    monkeypatch.setattr(StagingDiffPane, "clock", staticmethod(lambda: SNAP_NOW))
    line = deploy_log.entry_line

    def fixed_line(at, *args, **kw) -> str:
        return re.sub(r"\b\d+(\.\d+)? (ms|s|min)\b", "1 s", line(SNAP_NOW, *args, **kw))

    monkeypatch.setattr(app_deploylog, "entry_line", fixed_line)
    for module in (deploy_log, rollout):
        monkeypatch.setattr(module, "clock", lambda at, now=None: "12:00")
    monkeypatch.setattr(rollout, "duration", lambda seconds: "1 s")
    monkeypatch.setattr(rollout, "phase_seconds", lambda seconds: "1.0 s")


class SteadyMetrics(ThreadingHTTPServer):
    """A Prometheus API on 127.0.0.1 that always answers the same: errors_5xx 0.1% on r2306 and 7.5% on r2307,
    latency 40 ms, each range a flat line from its start to its end."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SteadyHandler)
        self.daemon_threads = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SteadyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        lines = ([({"revision": "r2306"}, "0.1"), ({"revision": "r2307"}, "7.5")]
                 if "http_requests_total{" in q.get("query", "") else [({}, "40")])
        if url.path.endswith("query_range"):
            start, end, step = float(q["start"]), float(q["end"]), float(q["step"])
            times = [start + i * step for i in range(int((end - start) / step) + 1)]
            result = [{"metric": m, "values": [[t, v] for t in times]} for m, v in lines]
            data = {"resultType": "matrix", "result": result}
        else:
            data = {"resultType": "vector", "result": [{"metric": m, "value": [time.time(), v]} for m, v in lines]}
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def steady_gate_fleet(tmp_path):
    """Six simulated hosts whose canary gate asks SteadyMetrics (and so fails, the same way every time)."""
    metrics = SteadyMetrics()
    fleet = Fleet(tmp_path / "fleet", 6, metrics=True).start_in_thread()
    text = re.sub(r'^url = "http://127\.0\.0\.1:\d+"', f'url = "{metrics.url}"', fleet.config_path.read_text(),
                  flags=re.M)
    fleet.config_path.write_text(text.replace('window = "5m"', 'window = "1h"'))
    yield fleet
    fleet.stop_thread()
    metrics.shutdown()


def _diff_live(pilot, text: str):
    from widgets.staging_diff import StagingDiffPane

    diff = pilot.app.query_one(StagingDiffPane)
    return lambda: diff.shown and text in diff.head_text


def _flags_measured(pilot) -> bool:
    """The flags table holds every flag of the config and has measured them: a DataTable sizes its columns for new
    rows when it is next idle, so a picture taken between the rows and that idle draws every column only as wide as
    its header (and before the server's answer there are no rows to measure: the check would hold vacuously)."""
    table = pilot.app.query_one("#flag-table")
    if table.row_count != len(pilot.app.cfg.flags.flags):
        return False
    return all(
        column.content_width >= max((table.get_cell(row, column.key).cell_len for row in table.rows), default=0)
        for column in table.ordered_columns
    )


ONE_DEPLOY = "In the last 7 days: 1 deploy of 1 change by 1 person"  # r2306..r2307: one commit


async def _settle(pilot, live: str, figures: str = ONE_DEPLOY) -> None:
    """The staging diff's live side caught up with the hosts, the flags table's columns sized for its rows, the
    deploy log's title saying the week's figures as the journal has them now, no notification left (each is gone
    within 4 s: whether one still shows depends on the clock), everything painted."""
    await until(pilot, _diff_live(pilot, live), f"the staging diff saying {live!r}")
    await until(pilot, lambda: pilot.app.deploylog.figures == figures, f"the deploy log's title saying {figures!r}")
    await until(pilot, lambda: _flags_measured(pilot), "the flags table's columns sized for its rows")
    await until(pilot, lambda: _log_at_its_end(pilot), "the deploy log following its newest entry")
    pilot.app.clear_notifications()
    pilot.app.flush()
    await pilot.pause()


def _log_at_its_end(pilot) -> bool:
    """The deploy log scrolled to its newest entry, as it follows unless its reader scrolled up: a write made before
    the log had its height is followed on the pane's next tick (0.5 s), which a loaded machine may not have reached."""
    log = pilot.app.query_one("#log-lines")
    return not log.display or log.max_scroll_y <= 0 or log.is_vertical_scroll_end


async def _marker_drawn(pilot, mark: str) -> None:
    """A deploy marker is drawn once a metrics answer covers its moment (the next poll): wait for it where the pane
    is shown, or the picture depends on whether that poll came before it."""
    metrics = pilot.app.query_one("#metrics")
    legend = f"{mark} "  # the legend's "◆ gate" is no marker
    await until(pilot, lambda: not metrics.shown or any(mark in line and legend not in line for line in metrics.lines),
                f"the {mark} marker")


async def _idle(pilot) -> None:
    await ready(pilot)
    await _settle(pilot, "live: r2306", "In the last 7 days: no deploys")


async def _mid_deploy(pilot) -> None:
    await ready(pilot)
    await press_deploy(pilot)
    await until(pilot, lambda: pilot.app.board.gate is not None and pilot.app.status == ev.R_WAITING,
                "stage 1 waiting for the operator")
    await _settle(pilot, "r2307 on 2")


async def _failed_gate(pilot) -> None:
    await ready(pilot)
    metrics = pilot.app.query_one("#metrics")
    await until(pilot, lambda: not metrics.shown or metrics.reply is not None, "the metrics (where shown)")
    await press_deploy(pilot)
    await until(pilot, lambda: isinstance(pilot.app.screen, GateHaltDialog), "the failed gate's choices", timeout=60)
    await pilot.press("escape")
    await until(pilot, lambda: pilot.app.screen is pilot.app.main, "the gate's dialog closed")
    await _marker_drawn(pilot, "◆")
    await _settle(pilot, "r2307 on 2")


async def _done(pilot) -> None:
    await _mid_deploy(pilot)
    await pilot.press("g")
    await until(pilot, lambda: pilot.app.status == ev.R_DONE and pilot.app.last_finished is not None, "DONE")
    await _settle(pilot, "live: r2307")


@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_idle(make_fleet, snap_compare, _fixed_clock, size):
    assert snap_compare(make_app(make_fleet(10)), terminal_size=size, run_before=_idle)


@pytest.mark.parametrize("size", [*SIZES[:-1], pytest.param(SIZES[-1], marks=pytest.mark.slow)], ids=_size_id)
def test_snapshot_mid_deploy(make_fleet, snap_compare, _fixed_clock, size):
    assert snap_compare(make_app(make_fleet(10)), terminal_size=size, run_before=_mid_deploy)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_failed_gate(steady_gate_fleet, snap_compare, _fixed_clock, size):
    assert snap_compare(make_app(steady_gate_fleet), terminal_size=size, run_before=_failed_gate)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=_size_id)
def test_snapshot_done(make_fleet, snap_compare, _fixed_clock, size):
    assert snap_compare(make_app(make_fleet(10)), terminal_size=size, run_before=_done)


def test_snapshot_160x48_colour(make_fleet, snap_compare, monkeypatch, _fixed_clock):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert snap_compare(make_app(make_fleet(10)), terminal_size=(160, 48), run_before=_idle)


def test_snapshot_80x24_colour_help(make_fleet, snap_compare, monkeypatch, _fixed_clock):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert snap_compare(
        make_app(make_fleet(10)),
        terminal_size=(80, 24),
        run_before=_idle,
        press=["question_mark"],
    )
