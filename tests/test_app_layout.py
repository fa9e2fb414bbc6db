"""The layout: every pane at 160x48, tabs at 80x24 with nothing cut off, monochrome under NO_COLOR, snapshots."""

from __future__ import annotations

import re

import pytest
from textual.widgets import Footer, TabbedContent

from controlroom import events as ev
from controlroom.app import ControlRoom
from tests.test_app_actions import make_app, press_deploy, servers_stopped, until  # noqa: F401

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
    footer = app.screen.query_one(Footer)
    keys = [k for k in footer.query("FooterKey") if k.display]
    assert keys, "the footer shows no keys"
    for k in keys:
        assert k.region.right <= app.size.width, f"footer key {k.region} is cut off at width {app.size.width}"


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
        titles = {app.main.query_one(sel).border_title for sel in PANES}
        assert titles == {"Rollout", "Deploy log", "Flags", "Staging diff", "Metrics"}
        # the placeholders say what will be there, and show no made-up data
        assert " ".join(app.main.query_one("#metrics").lines).startswith("No [metrics] in controlroom.toml")
        assert_footer_fits(app)


async def test_at_160x48_a_pane_number_fills_the_screen_with_that_pane_and_again_puts_it_back(make_fleet):
    app = make_app(make_fleet(10))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot)
        diff = app.main.query_one("#staging-diff")
        small = diff.region
        await pilot.press("4")
        await until(pilot, lambda: diff.region.height >= 40 and diff.region.width >= 150, "the diff filling the screen")
        assert not app.main.query_one("#rollout").region.height, "the other panes stay out of the way"
        await pilot.press("4")
        await until(pilot, lambda: diff.region == small, "the diff back in its corner")
        await pilot.press("5")
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
        for child in ("#revision-line", "#context-line", "#phase-bars", "#host-grid", "#legend"):
            assert_inside(app, rollout.query_one(child))
        assert_footer_fits(app)
        # the busiest footer: a halted phase with a failed host under the cursor
        await press_deploy(pilot)
        await until(pilot, lambda: app.status == ev.R_HALTED, "the halt")
        for child in ("#revision-line", "#context-line", "#waiting-line", "#phase-bars", "#host-grid"):
            assert_inside(app, rollout.query_one(child))
        assert_footer_fits(app)
        await pilot.press("2")
        await pilot.pause()
        assert tabs.active == "tab-log"
        assert_inside(app, app.main.query_one("#deploy-log"))
        assert not rollout.parent.display
        await pilot.press("1")
        await pilot.pause()
        assert rollout.parent.display


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
# Taken before any rollout, with the staged diff shown and its commit ages counted from a fixed time (the demo
# repo's commit times are fixed), so nothing on screen depends on the clock. Regenerate with --snapshot-update.
SNAP_NOW = 1_795_608_000.0  # 2026-11-25 12:00 UTC: a fixed time after the demo repo's commits


@pytest.fixture
def _fixed_clock(monkeypatch):
    from widgets.staging_diff import StagingDiffPane

    monkeypatch.setattr(StagingDiffPane, "clock", staticmethod(lambda: SNAP_NOW))


def _snap_app(fleet) -> ControlRoom:
    return make_app(fleet)


async def _before_snapshot(pilot) -> None:
    from widgets.staging_diff import StagingDiffPane

    await ready(pilot)
    await until(pilot, lambda: pilot.app.query_one(StagingDiffPane).shown, "the staged diff")
    pilot.app.flush()
    await pilot.pause()


def test_snapshot_160x48_monochrome(make_fleet, snap_compare, _fixed_clock):
    assert snap_compare(_snap_app(make_fleet(10)), terminal_size=(160, 48), run_before=_before_snapshot)


def test_snapshot_80x24_monochrome(make_fleet, snap_compare, _fixed_clock):
    assert snap_compare(_snap_app(make_fleet(10)), terminal_size=(80, 24), run_before=_before_snapshot)


def test_snapshot_160x48_colour(make_fleet, snap_compare, monkeypatch, _fixed_clock):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert snap_compare(_snap_app(make_fleet(10)), terminal_size=(160, 48), run_before=_before_snapshot)


def test_snapshot_80x24_colour_help(make_fleet, snap_compare, monkeypatch, _fixed_clock):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert snap_compare(
        _snap_app(make_fleet(10)),
        terminal_size=(80, 24),
        run_before=_before_snapshot,
        press=["question_mark"],
    )
