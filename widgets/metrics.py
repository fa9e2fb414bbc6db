"""The metrics pane: each series over the window as a sparkline against its threshold, with the deploy markers.

The drawing (data -> rows of styled runs) is widgets/sparkline.py; this widget polls, maps style names to the
theme's colours and hands out lines (the line API: nothing is laid out, a repaint is a few strips).

It polls the source it is given (the app's metrics feed: the server's `metrics` op) every [metrics] interval, only
while the pane is on screen, one poll at a time: the next is scheduled when the last one has answered (a one-shot timer), never on a
fixed beat, and the poll runs in a worker so the screen never waits for the source.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Sequence
from typing import Protocol

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.screen import ModalScreen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from controlroom.core.errors import ControlroomError
from controlroom.core.text import clean
from widgets.sparkline import BREACH, MARKS, OK, UNKNOWN, Row, draw, plain

HIDDEN_CHECK = 0.5  # seconds between looks at whether a hidden pane is shown again
POINTS = (30, 240)  # points asked of the server per line: the sparkline's width, within these bounds
NOT_CONFIGURED = ('No [metrics] in controlroom.toml: add [metrics] url = "http://prometheus:9090" and a '
                  '[metrics.series.NAME] query with its max to watch it here.')



class Markers(Protocol):
    items: Sequence  # the markers (widgets/sparkline.Marker), oldest first
    version: int  # changes whenever one is added


class MetricsSource(Protocol):
    """What the pane polls and draws: the app's metrics feed (controlroom/app/metrics.py)."""

    @property
    def configured(self) -> bool: ...  # a source is configured at all

    @property
    def interval(self) -> float: ...  # seconds between polls until an answer says otherwise

    @property
    def closing(self) -> bool: ...  # the app ends: no more polls, no drawing

    @property
    def markers(self) -> Markers: ...

    async def fetch(self, points: int) -> dict | None: ...  # None: not connected (yet); raises ControlroomError


_STYLES = ("name", "dim", OK, BREACH, UNKNOWN, *(f"mark-{k}" for k in MARKS), "mark-gate-bad")


class MetricsPane(ScrollView):
    """Each series' lines as sparklines with value, threshold and status, and the deploy markers under them."""

    COMPONENT_CLASSES = {f"metrics--{name}" for name in _STYLES}

    DEFAULT_CSS = """
    MetricsPane {
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        & > .metrics--name { text-style: bold; }
        & > .metrics--dim { color: $text-muted; }
        & > .metrics--ok { color: $success; }
        & > .metrics--breach { color: $error; text-style: bold; }
        & > .metrics--unknown { color: $warning; }
        & > .metrics--mark-phase { color: $accent; text-style: bold; }
        & > .metrics--mark-flag { color: $secondary; text-style: bold; }
        & > .metrics--mark-gate { color: $success; text-style: bold; }
        & > .metrics--mark-gate-bad { color: $error; text-style: bold; }
        & > .metrics--mark-halt { color: $error; text-style: bold; }
    }
    """

    def __init__(self, source: MetricsSource, **kwargs) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.reply: dict | None = None  # the last answer (cleaned), None when there is none to show as live
        self.answered_at = 0.0
        self.note = ""  # why there is nothing to show (not connected, not configured)
        self.polls = 0  # polls made (answered or not)
        self.skipped = 0  # times a poll was due while the pane was out of sight
        self._polling = False
        self._timer: Timer | None = None
        self._rows: list[Row] = []
        self._strips: list[Strip] | None = None
        self._drawn_for: tuple = ()
        self._styles: dict[str, Style] = {}

    # ------------------------------------------------------------------------------------------- polling
    def on_mount(self) -> None:
        self.border_title = "Metrics"
        self.remove_class("placeholder")  # the layout composes it as one until it is filled in: it is now
        if not self.source.configured:
            self.note = NOT_CONFIGURED
            self._redraw()
            return
        self._schedule(0)

    def _schedule(self, delay: float) -> None:
        if delay <= 0:  # a Textual timer cannot be of 0 s
            self.call_after_refresh(self._tick)
        else:
            self._timer = self.set_timer(delay, self._tick, name="metrics-poll")

    @property
    def shown(self) -> bool:
        """On the screen the operator looks at: not on a hidden tab, not under a full screen (a dialog over it
        leaves it in sight)."""
        if not self.is_attached:
            return False
        stack = self.app.screen_stack
        if self.screen not in stack or not all(isinstance(s, ModalScreen)
                                               for s in stack[stack.index(self.screen) + 1:]):
            return False
        node = self
        while node is not None and node is not self.screen:
            if not node.display:
                return False
            node = node.parent
        return True

    def _tick(self) -> None:
        if self.source.closing or self._polling:
            return
        if not self.shown:
            self.skipped += 1
            self._schedule(HIDDEN_CHECK)
            return
        self._polling = True
        self.run_worker(self._poll(), name="metrics", group="metrics-poll", exit_on_error=False)

    async def _poll(self) -> None:
        source = self.source
        interval = source.interval
        try:
            width = self.scrollable_content_region.width or 60
            reply = await source.fetch(max(POINTS[0], min(POINTS[1], width)))
            if reply is None:  # (re)connecting: look again soon, nothing drawn as live meanwhile
                self.reply, self.note, interval = None, "waiting for the control-room server…", HIDDEN_CHECK
            else:
                self.reply, self.answered_at, self.note = reply, time.time(), ""
                interval = float(reply.get("interval") or interval)
        except (ControlroomError, OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            # the server could not answer, or answered nonsense: never the last answer drawn as if it were live
            why = str(e) if isinstance(e, ControlroomError | OSError) else f"a bad answer ({type(e).__name__})"
            self.reply, self.note = None, f"metrics unknown: {clean(why, 200)}"
        finally:
            self.polls += 1
            self._polling = False
            if not source.closing and self.is_attached:
                self._redraw()
                self._schedule(interval)

    # ------------------------------------------------------------------------------------------- drawing
    def _redraw(self) -> None:
        self._drawn_for = ()
        self.refresh()

    @property
    def lines(self) -> list[str]:
        """The pane's rows as the operator reads them (all of them, scrolled out of view or not)."""
        self._draw()
        return plain(self._rows)

    def _draw(self) -> list[Strip]:
        width = self.scrollable_content_region.width or 60
        markers = self.source.markers
        key = (width, id(self.reply), self.note, markers.version)
        if key != self._drawn_for or self._strips is None:
            self._drawn_for = key
            if self.reply is None:
                note = self.note or "reading the metrics source…"
                self._rows = [[(line, "dim")] for line in textwrap.wrap(note, max(width, 10))]
            else:
                self._rows = draw(self.reply, markers.items, width,
                                  self.answered_at)
            base = self.rich_style
            self._strips = [Strip([Segment(text, base + self._style(style)) for text, style in row])
                            .crop_extend(0, width, base) for row in self._rows]
            size = Size(width, len(self._rows))
            if self.virtual_size != size:
                self.virtual_size = size
        return self._strips

    def _style(self, name: str) -> Style:
        if not name:
            return Style()
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"metrics--{name}")
        return style

    def render_line(self, y: int) -> Strip:
        strips = self._draw()
        i = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        if i < len(strips):
            return strips[i]
        return Strip.blank(width, self.rich_style)

    def on_resize(self) -> None:
        self._redraw()
