"""The stage as it runs: `[release] stage`'s output, streamed from the server, and how it ended.

Opened by the stage key; escape closes it and the stage goes on in the server (its result shows in the staging
diff pane and as a notification; the key opens this view again while it runs). Lines come cleaned from the server
and go into Textual's `Log` (line API, cheap to append), never read as markup.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Log, Static

from controlroom.core.text import clean
from widgets.footer import WholeFooter

MAX_LINES = 2000


class StageScreen(ModalScreen[None]):
    """`STAGE r2307`: its output as it comes, then 'STAGE OK r2307 in 2 s' or why not. esc closes."""

    DEFAULT_CSS = """
    StageScreen { align: center middle; }
    StageScreen > Vertical {
        width: 120; max-width: 100%; height: 80%; min-height: 10;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    StageScreen #stage-result { height: auto; text-style: bold; }
    StageScreen Log { height: 1fr; border: round $panel-lighten-2; }
    """
    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close", show=False)]

    def __init__(self, title: str, lines: Iterable[str] = (), result: str = "") -> None:
        super().__init__()
        self.title_text = clean(title, 120)
        self._initial = list(lines)
        self._result = result

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self._result or "running...", id="stage-result", markup=False)
            yield Log(max_lines=MAX_LINES, id="stage-output")
        yield WholeFooter()

    def on_mount(self) -> None:
        box = self.query_one(Vertical)
        box.border_title = Text(self.title_text)  # a Text: a str border title would be read as markup
        box.border_subtitle = "esc close (the stage goes on)"
        if self._initial:
            self.output.write_lines(self._initial)

    @property
    def output(self) -> Log:
        return self.query_one("#stage-output", Log)

    @property
    def lines(self) -> list[str]:
        """The output lines shown (what the operator reads)."""
        return list(self.output.lines)

    @property
    def result(self) -> str:
        return str(self.query_one("#stage-result", Static).render())

    def add(self, line: str) -> None:
        self.output.write_line(clean(line, 2000))

    def finished(self, result: str) -> None:
        self.query_one("#stage-result", Static).update(clean(result))

    def action_close(self) -> None:
        self.dismiss(None)
