"""Every host of the rollout as one cell, in one line-API widget.

One widget draws all hosts, however many: `render_line` builds only the visible rows from segments, rendered rows
are cached, and `hosts_changed` drops and repaints only the rows whose hosts changed (the way Textual's Log and
toolong do it). Mounting a widget per host costs several times the CPU at 150 hosts and breaks down at thousands.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from controlroom.core import events as ev
from controlroom.core.text import clean
from controlroom.engine.board import Board
from widgets.states import SYMBOL

_HEADER = -1  # a row holding a phase title rather than cells


class HostGrid(ScrollView, can_focus=True):
    """The host grid. Arrow keys move the cursor; enter opens the host under it."""

    COMPONENT_CLASSES = {
        "host-grid--header",
        "host-grid--cursor",
        *(f"host-grid--{s}" for s in ev.HOST_STATES),
    }

    DEFAULT_CSS = """
    HostGrid {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        & > .host-grid--header { text-style: bold; color: $text-muted; }
        & > .host-grid--cursor { text-style: reverse bold; }
        & > .host-grid--pending { color: $text-muted; }
        & > .host-grid--connecting { color: $accent; }
        & > .host-grid--running { color: $primary-lighten-2; text-style: bold; }
        & > .host-grid--checking { color: $secondary-lighten-1; }
        & > .host-grid--done { color: $success; }
        & > .host-grid--failed { color: $error; text-style: bold; }
        & > .host-grid--skipped { color: $warning; }
        & > .host-grid--rolling_back { color: $warning-darken-1; text-style: bold; }
        & > .host-grid--rolled_back { color: $warning-darken-1; }
    }
    """

    BINDINGS = [
        Binding("up", "cursor(0, -1)", "Up", show=False),
        Binding("down", "cursor(0, 1)", "Down", show=False),
        Binding("left", "cursor(-1, 0)", "Left", show=False),
        Binding("right", "cursor(1, 0)", "Right", show=False),
        Binding("home", "cursor_to(0)", "First host", show=False),
        Binding("end", "cursor_to(-1)", "Last host", show=False),
        Binding("pageup", "cursor_page(-1)", "Page up", show=False),
        Binding("pagedown", "cursor_page(1)", "Page down", show=False),
        Binding("enter", "open", "Open host", show=False),
    ]

    class Opened(Message):
        """The operator asked to see a host (enter or double click)."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    class LaidOut(Message):
        """The hosts were laid out again, with names or as glyphs."""

        def __init__(self, glyphs: bool) -> None:
            super().__init__()
            self.glyphs = glyphs

    class CursorMoved(Message):
        """The cursor is on another host."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    def __init__(self, board: Board, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.board = board
        self.cursor = 0
        self._rows: list[tuple[int, int, int]] = []  # (phase, first host index, end) or (_HEADER, phase, 0)
        self._row_of: list[int] = []  # host index -> row
        self._per_row = 1
        self._cell = 8
        self._name_w = 5
        self._names: list[str] = []
        self._laid_out_for: tuple[int, int, int] = (-1, -1, -1)
        self._tip_for: int | None = None
        self.glyphs = False  # each host drawn as its state glyph only (names do not fit)
        self._cache: LRUCache[int, Strip] = LRUCache(1024)
        self._styles: dict[str, Style] = {}
        self.renders = 0  # rows rendered (not served from the cache): tests and the bench read it

    # ------------------------------------------------------------------------------------------- layout
    def relayout(self) -> None:
        """Lay the hosts out in rows for the current size (called on resize and when the plan changes).

        Names are shown when every host fits on screen with its name; otherwise each host is one state glyph
        (with a space between glyphs, or none when even that does not fit), so the whole fleet stays in view.
        The selected host's name is then under the grid (RolloutPane) and in the tooltip.
        """
        board = self.board
        width = max(self.scrollable_content_region.width, 1)
        height = max(self.scrollable_content_region.height, 1)
        short = [clean(n.split(".", 1)[0], 64) for n in board.order]
        self._names = short if len(set(short)) == len(short) else [clean(n, 64) for n in board.order]
        self._name_w = max((len(n) for n in self._names), default=5)
        counts = [sum(1 for h in phase.hosts if h in board.index) for phase in board.phases]

        def rows_for(per_row: int) -> int:
            return sum(1 + -(-n // per_row) for n in counts)  # a title row per phase, then its hosts

        # (cell width, the space the last cell of a row may leave out, glyphs only)
        layouts = ((self._name_w + 4, 2, False), (2, 1, True), (1, 0, True))
        fits = [lay for lay in layouts if rows_for(max(1, (width + lay[1]) // lay[0])) <= height]
        cell, spare, self.glyphs = fits[0] if fits else layouts[-1]
        self._cell, self._per_row = cell, max(1, (width + spare) // cell)
        rows: list[tuple[int, int, int]] = []
        row_of = [0] * len(board.order)
        start = 0
        for p, n in enumerate(counts):
            rows.append((_HEADER, p, 0))
            for first in range(start, start + n, self._per_row):
                end = min(first + self._per_row, start + n)
                for i in range(first, end):
                    row_of[i] = len(rows)
                rows.append((p, first, end))
            start += n
        self._rows, self._row_of = rows, row_of
        self._laid_out_for = (width, height, len(board.order))
        self._cache.clear()
        self.cursor = min(self.cursor, max(len(board.order) - 1, 0))
        self.virtual_size = Size(width, len(rows))
        board.replanned = False
        self.refresh()
        self.post_message(self.LaidOut(self.glyphs))

    def on_resize(self, event: events.Resize) -> None:
        region = self.scrollable_content_region
        if self._laid_out_for[:2] != (max(region.width, 1), max(region.height, 1)):
            self.relayout()

    @property
    def visible_hosts(self) -> list[str]:
        """The hosts whose cells are on screen now (what the operator can see without scrolling)."""
        top = self.scroll_offset.y
        bottom = top + self.scrollable_content_region.height
        order = self.board.order
        return [order[i] for kind, a, b in self._rows[top:bottom] if kind != _HEADER for i in range(a, b)]

    def name_of(self, host: str) -> str:
        """The host's name as the grid shows it (cleaned; short when short names are unique)."""
        i = self.board.index.get(host)
        return self._names[i] if i is not None and i < len(self._names) else clean(host, 64)

    def on_mount(self) -> None:
        if self.scrollable_content_region.width:  # else the first Resize lays it out, once
            self.relayout()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._cache.clear()

    # ------------------------------------------------------------------------------------------- updates
    def hosts_changed(self, hosts: set[str] | list[str]) -> None:
        """Repaint only the rows holding these hosts."""
        if self.board.replanned:
            self.relayout()
            return
        index, row_of = self.board.index, self._row_of
        rows = sorted({row_of[index[h]] for h in hosts if h in index and index[h] < len(row_of)})
        if not rows:
            return
        for r in rows:
            self._cache.discard(r)
        top = self.scroll_offset.y
        bottom = top + self.scrollable_content_region.height
        first = last = None
        for r in rows:  # one refresh per run of adjacent visible rows
            if r < top or r >= bottom:
                continue
            if last is not None and r == last + 1:
                last = r
                continue
            if first is not None:
                self.refresh_lines(first, last - first + 1)
            first = last = r
        if first is not None:
            self.refresh_lines(first, last - first + 1)

    # ------------------------------------------------------------------------------------------- rendering
    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"host-grid--{name}")
        return style

    def render_line(self, y: int) -> Strip:
        row = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        strip = self._cache.get(row)
        if strip is None:
            strip = self._render_row(row, width)
            self._cache[row] = strip
        return strip

    def _render_row(self, row: int, width: int) -> Strip:
        base = self.rich_style
        if row >= len(self._rows):
            return Strip.blank(width, base)
        self.renders += 1
        kind, a, b = self._rows[row]
        if kind == _HEADER:
            phase = self.board.phases[a]
            text = f"{phase.name} · {phase.total} host{'s' if phase.total != 1 else ''}"
            return Strip([Segment(text, base + self._style("header"))]).crop_extend(0, width, base)
        segments = []
        hosts, names = self.board.hosts, self._names
        order = self.board.order
        w = self._name_w
        cursor_style = self._style("cursor")
        glyphs, gap = self.glyphs, " " * (self._cell - 1 if self.glyphs else 2)
        for i in range(a, b):
            state = hosts[order[i]].state
            style = base + self._style(state)
            cell = SYMBOL.get(state, "?") if glyphs else f"{SYMBOL.get(state, '?')} {names[i]:<{w}}"
            if i == self.cursor:
                segments.append(Segment(cell, style + cursor_style))
            else:
                segments.append(Segment(cell, style))
            if gap:
                segments.append(Segment(gap, base))
        return Strip(segments).crop_extend(0, width, base)

    # ------------------------------------------------------------------------------------------- cursor
    @property
    def cursor_host(self) -> str | None:
        order = self.board.order
        return order[self.cursor] if 0 <= self.cursor < len(order) else None

    def move_cursor_to(self, index: int) -> None:
        n = len(self.board.order)
        if not n:
            return
        index = max(0, min(index, n - 1))
        if index == self.cursor:
            return
        old, self.cursor = self.cursor, index
        if old < len(self._row_of):
            self._cache.discard(self._row_of[old])
            self.refresh_lines(self._row_of[old])
        row = self._row_of[index]
        self._cache.discard(row)
        self.refresh_lines(row)
        self.scroll_to_region(Region(0, max(row - 1, 0), 1, 3 if row else 2), animate=False, immediate=True)
        self.post_message(self.CursorMoved(self.board.order[index]))

    def select_host(self, host: str) -> None:
        if host in self.board.index:
            self.move_cursor_to(self.board.index[host])

    def action_cursor(self, dx: int, dy: int) -> None:
        if not self.board.order:
            return
        if dx:
            self.move_cursor_to(self.cursor + dx)
            return
        row = self._row_of[self.cursor]
        _, first, _ = self._rows[row]
        col = self.cursor - first
        target = row + dy
        while 0 <= target < len(self._rows) and self._rows[target][0] == _HEADER:
            target += dy
        if not 0 <= target < len(self._rows):
            return
        _, t_first, t_end = self._rows[target]
        self.move_cursor_to(min(t_first + col, t_end - 1))

    def action_cursor_to(self, index: int) -> None:
        self.move_cursor_to(index if index >= 0 else len(self.board.order) - 1)

    def action_cursor_page(self, direction: int) -> None:
        page = max(self.scrollable_content_region.height - 1, 1) * self._per_row
        self.move_cursor_to(self.cursor + direction * page)

    def action_open(self) -> None:
        host = self.cursor_host
        if host is not None:
            self.post_message(self.Opened(host))

    def _host_at(self, event: events.MouseEvent) -> int | None:
        offset = event.get_content_offset(self)
        if offset is None:
            return None
        row = self.scroll_offset.y + offset.y
        if not 0 <= row < len(self._rows) or self._rows[row][0] == _HEADER:
            return None
        _, first, end = self._rows[row]
        i = first + offset.x // self._cell
        return i if first <= i < end else None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        i = self._host_at(event)
        if i != self._tip_for:
            self._tip_for = i
            # the full name, in glyph mode too; a Text, since a str tooltip would be read as markup
            self.tooltip = None if i is None else Text(clean(self.board.order[i], 200))

    def on_click(self, event: events.Click) -> None:
        i = self._host_at(event)
        if i is not None:
            self.move_cursor_to(i)
            if event.chain >= 2:
                self.post_message(self.Opened(self.board.order[i]))
