"""widgets/repaint.py: a line whose text changes but not its height is repainted without laying the screen out;
a change of height still lays it out, so nothing is cut off."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Static

from widgets.repaint import update_in_place


class Counting(Static):
    """A Static that counts the layout passes asked of it."""

    layouts = 0

    def refresh(self, *regions, repaint: bool = True, layout: bool = False, recompose: bool = False):
        if layout:
            self.layouts += 1
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


class One(App):
    def compose(self) -> ComposeResult:
        yield Counting("running for 1s", id="line")
        yield Static("below", id="below")


async def test_a_line_that_keeps_its_height_is_repainted_and_a_taller_one_laid_out():
    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        line = app.query_one("#line", Counting)
        below = app.query_one("#below", Static)
        await pilot.pause()
        before = line.layouts
        update_in_place(line, Text("running for 2s"))
        await pilot.pause()
        assert line.layouts == before  # the same height: no layout pass
        assert "running for 2s" in str(line.render_line(0).text)
        assert below.region.y == 1

        update_in_place(line, Text("running for 3s\nwaiting for the canary"))
        await pilot.pause()
        assert line.layouts > before
        assert line.size.height == 2 and below.region.y == 2  # laid out again: the second line has room
        before = line.layouts

        update_in_place(line, Text("a line far longer than the forty columns this terminal has"))
        await pilot.pause()
        assert line.size.height == 2  # one line, wrapped to two: the same height, measured as the layout does
        assert line.layouts == before
