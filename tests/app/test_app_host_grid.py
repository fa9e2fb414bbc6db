"""The host grid on its own: engine events fed straight in, 5,000 hosts, only changed rows repainted."""

from __future__ import annotations

from textual.app import App, ComposeResult

from controlroom.core import events as ev
from controlroom.engine.board import Board
from tests.waiting import until_shown
from widgets.host_grid import HostGrid


def board_of(n: int) -> Board:
    names = [f"web{i:04d}" for i in range(1, n + 1)]
    board = Board()
    board.plan(
        [
            ("canary", tuple(names[:2]), 0, False),
            ("stage 1", tuple(names[2 : n // 10]), 1, True),
            ("stage 2", tuple(names[n // 10 :]), 2, True),
        ]
    )
    return board


class GridApp(App):
    def __init__(self, board: Board) -> None:
        super().__init__()
        self.board = board
        self.opened: list[str] = []

    def compose(self) -> ComposeResult:
        yield HostGrid(self.board)

    def on_host_grid_opened(self, message: HostGrid.Opened) -> None:
        self.opened.append(message.host)

    def feed(self, events: list[ev.Event]) -> None:
        """What the control room's flush does: merge everything, then repaint the changed rows once."""
        for e in events:
            self.board.apply(e)
        self.query_one(HostGrid).hosts_changed(self.board.take_dirty())


def changed(host: str, state: str, phase: int = 2, **kw) -> ev.HostStateChanged:
    return ev.HostStateChanged(1, host=host, phase=phase, state=state, **kw)


def row_text(grid: HostGrid, y: int) -> str:
    return "".join(seg.text for seg in grid.render_line(y))


async def test_every_host_is_one_cell_with_a_symbol_and_only_visible_rows_are_rendered():
    board = board_of(5000)
    app = GridApp(board)
    async with app.run_test(size=(100, 30)) as pilot:
        grid = app.query_one(HostGrid)
        await pilot.pause()
        assert grid.glyphs  # 5,000 names cannot fit: one glyph per host, 100 to a row
        assert len(grid._rows) > 50  # 5,000 hosts in rows, plus one title row per phase
        assert grid.renders <= 30, f"rendered {grid.renders} rows for a 30-line screen"
        assert row_text(grid, 0).startswith("canary · 2 hosts")
        assert row_text(grid, 1).startswith("··")


async def test_hosts_show_their_names_when_they_all_fit():
    board = board_of(60)
    app = GridApp(board)
    async with app.run_test(size=(100, 30)) as pilot:
        grid = app.query_one(HostGrid)
        await pilot.pause()
        assert not grid.glyphs
        assert "· web0001" in row_text(grid, 1) and "· web0002" in row_text(grid, 1)
        assert len(grid.visible_hosts) == 60


async def test_a_storm_of_events_is_merged_and_repaints_only_the_rows_that_changed():
    board = board_of(5000)
    app = GridApp(board)
    async with app.run_test(size=(100, 30)) as pilot:
        grid = app.query_one(HostGrid)
        await pilot.pause()
        before = grid.renders
        # ten transitions of one host between two flushes: one row repainted, showing the latest state
        app.feed(
            [changed("web4900", s) for s in (ev.CONNECTING, ev.RUNNING, ev.RUNNING, ev.CHECKING, ev.DONE)]
        )
        await pilot.pause()
        assert "web4900" not in grid.visible_hosts
        assert grid.renders - before <= 1  # web4900 is not even on screen: nothing to draw
        assert board.hosts["web4900"].state == ev.DONE
        assert board.phases[2].counts[ev.DONE] == 1
        app.feed([changed("web0001", ev.RUNNING, phase=0, step=1, steps=2)])
        await pilot.pause()
        assert grid.renders - before <= 2
        assert row_text(grid, 1).startswith("▶·")
        app.feed([changed("web0002", ev.FAILED, phase=0, reason="exit 1")])
        await pilot.pause()
        assert row_text(grid, 1).startswith("▶✗")


async def test_all_5000_hosts_changing_at_once_lands_in_one_flush():
    board = board_of(5000)
    app = GridApp(board)
    async with app.run_test(size=(160, 48)) as pilot:
        grid = app.query_one(HostGrid)
        await pilot.pause()
        app.feed([changed(h, ev.RUNNING, phase=board.hosts[h].phase, step=1, steps=2) for h in board.order])
        app.feed([changed(h, ev.DONE, phase=board.hosts[h].phase) for h in board.order])
        await pilot.pause()
        assert board.count(ev.DONE) == 5000 and board.count(ev.PENDING) == 0
        # at 160x48, 5,000 hosts fit as glyphs: the whole fleet at once, every one of them done
        assert grid.glyphs and len(grid.visible_hosts) == 5000
        visible = [row_text(grid, y) for y in range(grid.scrollable_content_region.height)]
        assert sum(line.count("✓") for line in visible) == 5000
        await pilot.press("end")
        await pilot.pause()
        assert grid.cursor_host == "web5000"


async def test_arrow_keys_move_the_cursor_across_rows_and_enter_opens_the_host():
    board = board_of(100)
    app = GridApp(board)
    async with app.run_test(size=(60, 20)) as pilot:
        grid = app.query_one(HostGrid)
        grid.focus()
        await pilot.pause()
        assert grid.cursor_host == "web0001"
        await pilot.press("right")
        assert grid.cursor_host == "web0002"
        await pilot.press("down")  # past the stage 1 title row to the same column below
        assert grid.cursor_host == "web0004"
        await pilot.press("left", "enter")
        await pilot.pause()
        assert app.opened == ["web0003"]
        await pilot.press("up")
        assert grid.cursor_host == "web0001"


async def test_a_narrower_grid_lays_the_hosts_out_again():
    board = board_of(100)
    app = GridApp(board)
    async with app.run_test(size=(120, 20)) as pilot:
        grid = app.query_one(HostGrid)
        await pilot.pause()
        assert not grid.glyphs
        await pilot.resize_terminal(40, 20)
        await until_shown(pilot, lambda: grid.glyphs, "the names to give way to glyphs")
        assert all(len(row_text(grid, y).rstrip()) <= 40 for y in range(5))
        assert len(grid.visible_hosts) == 100
        await pilot.resize_terminal(120, 20)
        await until_shown(pilot, lambda: not grid.glyphs, "the names to come back")


async def test_the_mouse_works_too_a_click_selects_and_a_double_click_opens():
    board = board_of(100)
    app = GridApp(board)
    async with app.run_test(size=(80, 20)) as pilot:
        grid = app.query_one(HostGrid)
        await pilot.pause()
        cell = grid._cell
        await pilot.click(HostGrid, offset=(cell + 1, 1))  # second cell of the canary row
        assert grid.cursor_host == "web0002"
        await pilot.click(HostGrid, offset=(1, 3), times=2)  # first host of stage 1
        await pilot.pause()
        assert app.opened == ["web0003"]
