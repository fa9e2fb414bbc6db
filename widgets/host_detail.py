"""One host of the rollout: its live output, its result and its timings (enter on the grid opens it).

The output comes from the engine's own record of the host (the commands it ran and what they printed) when the
engine knows the host; otherwise from the HostOutput events the board kept.
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
from textual.widgets import Footer, Log, Static

from controlroom import events as ev
from widgets.board import Board
from widgets.states import COLOR, LABEL, SYMBOL


def _clock(at: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else "-"


def host_summary(board: Board, host: str, run: Any = None, now: float | None = None) -> Text:
    """State, reason, phase, revisions, timings and the last command's result, as lines of text."""
    hv = board.hosts.get(host)
    t = Text()
    if hv is None:
        t.append(f"{host}: not in this rollout")
        return t
    phase = board.phases[hv.phase].name if 0 <= hv.phase < len(board.phases) else "?"
    t.append(f"{SYMBOL[hv.state]} {LABEL[hv.state]}", style=COLOR[hv.state])
    if hv.state == ev.RUNNING and hv.steps:
        t.append(f" · step {hv.step} of {hv.steps}")
    if hv.reason:
        t.append(f" · {hv.reason}", style="bold" if hv.state == ev.FAILED else "")
    t.append(f"\nphase {phase}")
    revision = hv.revision or (getattr(run, "revision", None) if run is not None else None)
    previous = hv.previous or (getattr(run, "previous", None) if run is not None else None)
    t.append(f" · live revision {revision or previous or 'unknown'}")
    if previous and previous != revision:
        t.append(f" (before: {previous})")
    t.append(f"\nstarted {_clock(hv.started)}")
    if hv.finished:
        t.append(f" · finished {_clock(hv.finished)}")
    if hv.started:
        took = (hv.finished or now or time.time()) - hv.started
        t.append(f" · {took:.1f} s on the host")
    result = getattr(run, "result", None) if run is not None else None
    if result is not None:
        t.append(
            f"\nlast command: {result.label} · connect {result.connect_s:.2f} s · run {result.run_s:.2f} s"
        )
    return t


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
        self._shown: tuple = ()  # what the output log holds: (source id, lines written, last line)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="host-summary")
            yield Static("no output yet", id="host-empty")
            yield Log(max_lines=2000, id="host-output")
        yield Footer()

    def on_mount(self) -> None:
        box = self.query_one(Vertical)
        box.border_title = self.host
        box.border_subtitle = "r retry · s skip · esc close"
        self.refresh_host()
        self.set_interval(1 / 10, self.refresh_host)

    @property
    def output(self) -> Log:
        return self.query_one("#host-output", Log)

    @property
    def summary_text(self) -> str:
        return host_summary(self.board, self.host, self._engine_host(self.host)).plain

    def refresh_host(self) -> None:
        run = self._engine_host(self.host)
        self.query_one("#host-summary", Static).update(host_summary(self.board, self.host, run))
        log = self.output
        if run is not None:
            lines = run.output
            sig = (id(lines), len(lines), lines[-1] if lines else None)
            if sig != self._shown:
                log.clear()
                log.write_lines(list(lines))
                self._shown = sig
            empty = not lines
        else:
            hv = self.board.hosts.get(self.host)
            written = self._shown[1] if len(self._shown) == 3 and self._shown[0] == "board" else 0
            if hv is not None and hv.output and hv.lines > written:
                new = min(hv.lines - written, len(hv.output))
                log.write_lines(list(hv.output)[-new:])
                self._shown = ("board", hv.lines, None)
            empty = hv is None or not hv.lines
        self.query_one("#host-empty").display = empty

    def action_close(self) -> None:
        self.dismiss(None)
