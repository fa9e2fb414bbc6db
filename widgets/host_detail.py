"""One host of the rollout: its live output, its result and its timings (enter on the grid opens it).

The output comes from the engine's own record of the host (each step's "$ command" and what it printed, stderr
marked [err], the last 200 lines) when the engine knows the host; otherwise from the HostOutput events the board
kept. Retry and skip are offered only where they apply (never on a done host).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Log, Static

from controlroom.core import events as ev
from controlroom.core.text import clean, clean_lines
from controlroom.engine.board import Board
from widgets.footer import WholeFooter
from widgets.states import COLOR, LABEL, SYMBOL

OUTPUT_SHOWN = 200  # the last lines of the host's output: each step's "$ command", what it printed ([err]: stderr)


def _clock(at: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else "-"


def host_summary(board: Board, host: str, run: Any = None, now: float | None = None) -> Text:
    """State, reason, phase, revisions, timings and the last command's result, as lines of text."""
    hv = board.hosts.get(host)
    t = Text()
    if hv is None:
        t.append(f"{clean(host, 64)}: not in this rollout")
        return t
    phase = board.phases[hv.phase].name if 0 <= hv.phase < len(board.phases) else "?"
    t.append(f"{SYMBOL[hv.state]} {LABEL[hv.state]}", style=COLOR[hv.state])
    if hv.state == ev.RUNNING and hv.steps:
        t.append(f" · step {hv.step} of {hv.steps}")
    if hv.reason:
        t.append(f" · {clean(hv.reason)}", style="bold" if hv.state == ev.FAILED else "")
    t.append(f"\nphase {phase}")
    revision = hv.revision or (getattr(run, "revision", None) if run is not None else None)
    previous = hv.previous or (getattr(run, "previous", None) if run is not None else None)
    t.append(f" · live revision {clean(revision or previous or 'unknown', 64)}")
    if previous and previous != revision:
        t.append(f" (before: {clean(previous, 64)})")
    t.append(f"\nstarted {_clock(hv.started)}")
    if hv.finished:
        t.append(f" · finished {_clock(hv.finished)}")
    if hv.started:
        took = (hv.finished or now or time.time()) - hv.started
        t.append(f" · {took:.1f} s on the host")
    result = getattr(run, "result", None) if run is not None else None
    if result is not None:
        t.append(
            f"\nlast command: {clean(result.label, 64)} · connect {result.connect_s:.2f} s · run {result.run_s:.2f} s"
        )
    return t


def _appended(before: list[str], now) -> list[str]:
    """The lines at the end of ``now`` (a bounded deque) that were not in ``before``, its earlier snapshot.

    The deque drops lines at the front as it appends at the end, so ``before`` minus some first lines is a prefix
    of ``now``. Lines are compared by identity: two equal lines printed twice are two lines.
    """
    now = list(now)
    for dropped in range(len(before) + 1):
        kept = len(before) - dropped
        if kept <= len(now) and all(a is b for a, b in zip(before[dropped:], now[:kept], strict=True)):
            return now[kept:]
    return now


class HostScreen(ModalScreen[None]):
    """A host's live output and result; r retries it, s skips it, esc closes."""

    DEFAULT_CSS = """
    HostScreen { align: center middle; }
    HostScreen > Vertical {
        width: 120; max-width: 100%; height: 90%; min-height: 12;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    HostScreen #host-summary { height: auto; margin-bottom: 1; }
    HostScreen Log { height: 1fr; border: round $panel-lighten-2; }
    HostScreen #host-empty { color: $text-muted; }
    """

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("r", "app.retry", "Retry"),
        Binding("s", "app.skip", "Skip"),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, board: Board, host: str, engine_host: Callable[[str], Any] | None = None) -> None:
        super().__init__()
        self.board = board
        self.host = host
        self._engine_host = engine_host or (lambda _h: None)
        self._source: object = None  # where the output comes from: the engine's deque of lines, or the board
        self._written: list[str] = []  # the engine's lines as last seen (same objects): what is new
        self._board_lines = 0  # with the board as source: output lines ever received that are in the log
        self.held = False  # new output waits: writing it would push out the lines the reader scrolled back to

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="host-summary")
            yield Static("no output yet", id="host-empty")
            yield Log(max_lines=OUTPUT_SHOWN, id="host-output")
        yield WholeFooter()

    def on_mount(self) -> None:
        box = self.query_one(Vertical)
        box.border_title = Text(clean(self.host, 64))  # a Text: a str border title would be read as markup
        self.refresh_host()
        self.set_interval(1 / 10, self.refresh_host, name="host output")  # the screen's: stops when it closes

    @property
    def output(self) -> Log:
        return self.query_one("#host-output", Log)

    @property
    def summary_text(self) -> str:
        return host_summary(self.board, self.host, self._engine_host(self.host)).plain

    def refresh_host(self) -> None:
        """Repaint the summary and append the output lines not shown yet.

        Lines are only ever appended, never rewritten: a reader who scrolled up stays where they are (Log follows
        the end only when the view is at the end), and when the view holds its last OUTPUT_SHOWN lines new ones wait
        until the reader is back at the end (writing them would drop the lines being read from the top; the
        footer of the box says so). Every line is cleaned first: hosts print escape sequences.
        """
        run = self._engine_host(self.host)
        self.query_one("#host-summary", Static).update(host_summary(self.board, self.host, run))
        log = self.output
        if run is not None:
            lines = run.output
            reading = None  # where the reader was, when the server's record replaces what the view showed
            if self._source is not lines:
                if log.line_count and not log.is_vertical_scroll_end:
                    reading = log.scroll_y
                self._source, self._written = lines, []
                log.clear()
            new = _appended(self._written, lines)
            self.held = bool(new) and reading is None and bool(log.line_count) and not log.is_vertical_scroll_end \
                and log.line_count + len(new) > OUTPUT_SHOWN
            if new and not self.held:
                log.write_lines([c for line in new for c in clean_lines(line) or [""]],
                                scroll_end=False if reading is not None else None)
                self._written = list(lines)
            if reading is not None:
                log.scroll_to(y=reading, animate=False, immediate=True)
            empty = not lines
        else:
            hv = self.board.hosts.get(self.host)
            if self._source != "board":
                self._source, self._board_lines = "board", 0
                log.clear()
            if hv is not None and hv.output and hv.lines > self._board_lines:
                new = min(hv.lines - self._board_lines, len(hv.output))
                log.write_lines([c for line in list(hv.output)[-new:] for c in clean_lines(line) or [""]])
                self._board_lines = hv.lines
            empty = hv is None or not hv.lines
        self.query_one("#host-empty").display = empty
        keys = self.keys_offered() + (" · new output below: end shows it" if self.held else "")
        box = self.query_one(Vertical)
        if box.border_subtitle != keys:
            box.border_subtitle = keys
            self.refresh_bindings()

    def keys_offered(self) -> str:
        """'r retry · s skip · esc close', with only the keys that apply to the host now (a done host: esc)."""
        check = getattr(self.app, "check_action", None)
        keys = [f"{k} {what}" for k, what in (("r", "retry"), ("s", "skip"))
                if check is not None and check(what, ())]
        return " · ".join([*keys, "esc close"])

    def action_close(self) -> None:
        self.dismiss(None)
