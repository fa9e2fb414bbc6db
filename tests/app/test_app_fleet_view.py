"""The whole fleet in view: 150 hosts on one screen at 80x24, 120x40 and 160x48, glyphs when names do not fit."""

from __future__ import annotations

import pytest

from tests.app.test_app_actions import make_app, start  # noqa: F401
from widgets.states import SYMBOL

GLYPHS = set(SYMBOL.values())


def grid_glyphs(app) -> int:
    """Host glyphs in the grid's rendered lines, title rows left out: what the operator sees."""
    grid = app.host_grid
    count = 0
    for y in range(grid.scrollable_content_region.height):
        row = grid.scroll_offset.y + y
        if row >= len(grid._rows) or grid._rows[row][0] < 0:  # past the end, or a phase's title
            continue
        count += sum(1 for seg in grid.render_line(y) for ch in seg.text if ch in GLYPHS)
    return count


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 48)])
async def test_all_150_hosts_are_on_screen_at_once(big_fleet, size):
    app = make_app(big_fleet)
    async with app.run_test(size=size) as pilot:
        await start(pilot)
        grid = app.host_grid
        assert len(grid.visible_hosts) == 150, f"{len(grid.visible_hosts)} of 150 hosts in view at {size}"
        assert grid_glyphs(app) == 150
        assert grid.region.right <= size[0] and grid.region.bottom <= size[1]
        if size == (120, 40):
            assert app.rollout_pane.region.width >= 76, "the rollout pane is squeezed by the empty panes"


async def test_in_glyph_mode_arrows_move_the_selection_and_its_name_is_shown(big_fleet):
    app = make_app(big_fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        grid = app.host_grid
        assert grid.glyphs  # 150 names do not fit at 80x24
        caption = app.rollout_pane.query_one("#grid-caption")
        assert "web001" in caption.render().plain
        await pilot.press("right", "right")
        assert grid.cursor_host == "web003"
        await pilot.press("down")  # from canary to stage 1, then down a row of glyphs in stage 2
        await pilot.press("down")
        host = grid.cursor_host
        assert app.board.hosts[host].phase == 2
        await pilot.pause()
        assert host in caption.render().plain and "pending" in caption.render().plain
        await pilot.press("end")
        await pilot.pause()
        assert grid.cursor_host == "web150" and "web150" in caption.render().plain
