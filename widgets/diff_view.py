"""A long coloured text (the staging diff) drawn through the line API, with search.

One widget, however long the text: `render_line` builds a Strip only for the lines on screen (kept in an LRU
cache), so a 20,000-line diff opens as fast as a 20-line one and scrolling draws a screenful. Each line has a kind
(added, removed, hunk, ...) that picks its colour from the component classes; the text itself always carries the
meaning (+, -, @@), so a monochrome screen (NO_COLOR) reads the same. The lines come cleaned from the core.

The code on the diff's lines is highlighted too (Pygments, by each file's name), line by line as it is drawn: a
line is lexed on its own, so a string or comment that spans lines may be coloured as code. Finding a file's lexer
costs Pygments' plugin scan the first time: `prepare_lexers` does it off the event loop, before the lines are shown.
"""

from __future__ import annotations

from bisect import bisect_left

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

KINDS = ("added", "removed", "hunk", "meta", "title", "hash", "dim", "context")
SYNTAX = ("keyword", "string", "comment", "number", "name")
_LEXERS: dict[str, object] = {}  # file name -> its Pygments lexer, or None (no highlighting)
_CODE_KINDS = ("added", "removed", "context")


def _path_of(header: str) -> str | None:
    """The new side's path from a '+++ b/path' line (None for /dev/null)."""
    return header[6:] if header.startswith("+++ b/") else None


def lexer_for(path: str):
    """The lexer for a file name (cached), or None when Pygments knows none."""
    if path not in _LEXERS:
        try:
            from pygments.lexers import get_lexer_for_filename
            from pygments.util import ClassNotFound

            try:
                _LEXERS[path] = get_lexer_for_filename(path, startinline=True, stripnl=False, ensurenl=False)
            except ClassNotFound:
                _LEXERS[path] = None
        except Exception:  # noqa: BLE001 - no Pygments, or a broken plugin: plain diff colours
            _LEXERS[path] = None
    return _LEXERS[path]


def prepare_lexers(lines: list[str]) -> None:
    """Find the lexer of every file in these diff lines now (blocking: call it in a thread)."""
    for line in lines:
        if line.startswith("+++ b/"):
            lexer_for(line[6:])


def _syntax_kind(ttype) -> str | None:
    from pygments import token as t

    if ttype in t.Comment:
        return "comment"
    if ttype in t.String:
        return "string"
    if ttype in t.Keyword or ttype in t.Name.Builtin or ttype in t.Name.Tag:
        return "keyword"
    if ttype in t.Number:
        return "number"
    if ttype in t.Name.Function or ttype in t.Name.Class or ttype in t.Name.Variable:
        return "name"
    return None


class DiffView(ScrollView, can_focus=True):
    """Lines of (text, kind), some with spans of other kinds (a commit's hash, its age); `/`-search from the pane.

    ``matches`` and ``match`` say what the search found: tests and the pane's subtitle read them."""

    COMPONENT_CLASSES = ({f"diff-view--{k}" for k in KINDS} | {f"diff-view--syn-{k}" for k in SYNTAX}
                         | {"diff-view--match", "diff-view--current"})
    DEFAULT_CSS = """
    DiffView { height: 1fr; }
    DiffView > .diff-view--added { color: $text-success; }
    DiffView > .diff-view--removed { color: $text-error; }
    DiffView > .diff-view--hunk { color: $text-accent; }
    DiffView > .diff-view--meta { text-style: bold; }
    DiffView > .diff-view--title { text-style: bold; }
    DiffView > .diff-view--hash { color: $text-warning; }
    DiffView > .diff-view--dim { text-style: dim; }
    DiffView > .diff-view--match { text-style: reverse; }
    DiffView > .diff-view--current { text-style: reverse bold underline; }
    DiffView > .diff-view--syn-keyword { color: $text-primary; }
    DiffView > .diff-view--syn-string { color: $text-warning; }
    DiffView > .diff-view--syn-comment { color: $text-muted; }
    DiffView > .diff-view--syn-number { color: $text-accent; }
    DiffView > .diff-view--syn-name { color: $text-secondary; }
    """
    class Searched(Message):
        """The view moved to a match (or found none): the pane says where it is."""

    BINDINGS = [
        Binding("n", "next_match", "Next match", show=False),
        Binding("N", "previous_match", "Previous match", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines: list[str] = []
        self.kinds: list[str] = []
        self.spans: dict[int, list[tuple[int, int, str]]] = {}  # line -> (start, end, kind) drawn over its kind
        self.files: list[tuple[int, str | None]] = []  # (the line of a file's '+++' header, its path), in order
        self._starts: list[int] = []
        self.term = ""
        self.matches: list[int] = []  # the lines holding the term
        self.match: int | None = None  # the index in matches the view is on
        self._lower: list[str] | None = None
        self._cache: LRUCache[int, Strip] = LRUCache(1024)
        self._styles: dict[str, Style] = {}
        self.renders = 0  # lines built (not served from the cache): tests and the bench read it

    # ------------------------------------------------------------------------------------------- content
    def set_lines(self, lines: list[str], kinds: list[str], spans: dict[int, list[tuple[int, int, str]]] | None = None,
                  *, keep_place: bool = False) -> None:
        """Show these lines (cleaned text) with their kinds; the search, if any, runs again on them."""
        y = self.scroll_offset.y if keep_place else 0
        self.lines, self.kinds, self.spans = lines, kinds, spans or {}
        self.files = [(i, _path_of(line)) for i, (line, k) in enumerate(zip(lines, kinds, strict=True))
                      if k == "meta" and line.startswith("+++ ")]
        self._starts = [i for i, _ in self.files]
        self._lower = None
        self._cache.clear()
        width = max(map(len, lines), default=0)
        self.virtual_size = Size(width, len(lines))
        self.scroll_to(0, min(y, max(0, len(lines) - 1)), animate=False, immediate=True)
        if self.term:
            self._find(self.term)
        self.refresh()

    @property
    def line_count(self) -> int:
        return len(self.lines)

    def visible_text(self) -> list[str]:
        """The lines on screen now, as text (what the operator reads)."""
        top, height = self.scroll_offset.y, self.scrollable_content_region.height
        return self.lines[top:top + height]

    # ------------------------------------------------------------------------------------------- search
    def search(self, term: str, *, backwards: bool = False) -> int | None:
        """Go to the next (previous) line holding ``term`` (case-insensitive) after the one the view is on, from
        the top of the screen for a new term; wraps around. The line index, or None when nothing matches."""
        if term != self.term:
            self._find(term)
            if not self.matches:
                self.refresh()
                self.post_message(self.Searched())
                return None
            first = bisect_left(self.matches, self.scroll_offset.y)  # the first match from the top of the screen on
            self.match = (first - 1 if backwards else first) % len(self.matches)
        elif not self.matches:
            return None
        elif self.match is None:
            self.match = 0
        else:
            self.match = (self.match + (-1 if backwards else 1)) % len(self.matches)
        line = self.matches[self.match]
        self._cache.clear()
        self._show_line(line)
        self.refresh()
        self.post_message(self.Searched())
        return line

    def _find(self, term: str) -> None:
        self.term = term
        self.match = None
        self._cache.clear()
        if not term:
            self.matches = []
            return
        if self._lower is None:
            self._lower = [line.lower() for line in self.lines]
        t = term.lower()
        self.matches = [i for i, line in enumerate(self._lower) if t in line]

    def clear_search(self) -> None:
        self.term, self.matches, self.match = "", [], None
        self._cache.clear()
        self.refresh()

    def _show_line(self, line: int) -> None:
        height = max(1, self.scrollable_content_region.height)
        top = self.scroll_offset.y
        if not top <= line < top + height:
            self.scroll_to(y=max(0, line - height // 3), animate=False, immediate=True)

    def action_next_match(self) -> None:
        if self.term:
            self.search(self.term)

    def action_previous_match(self) -> None:
        if self.term:
            self.search(self.term, backwards=True)

    # ------------------------------------------------------------------------------------------- rendering
    def _style(self, kind: str) -> Style:
        style = self._styles.get(kind)
        if style is None:
            style = self._styles[kind] = self.get_component_rich_style(f"diff-view--{kind}")
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._cache.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, top = self.scroll_offset
        index = top + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index >= len(self.lines):
            return Strip.blank(width, base)
        strip = self._cache.get(index)
        if strip is None:
            strip = self._cache[index] = self._build(index, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _build(self, index: int, base: Style) -> Strip:
        self.renders += 1
        text, kind = self.lines[index], self.kinds[index]
        style = base + self._style(kind) if kind != "context" else base
        spans = self.spans.get(index)
        if spans:
            segments, at = [], 0
            for start, end, k in spans:
                if start > at:
                    segments.append(Segment(text[at:start], style))
                segments.append(Segment(text[start:end], style + self._style(k)))
                at = end
            if at < len(text):
                segments.append(Segment(text[at:], style))
        elif kind in _CODE_KINDS and text and self.files and index > self.files[0][0]:
            segments = self._code(index, text, style)
        else:
            segments = [Segment(text, style)]
        strip = Strip(segments)
        if self.term and self.matches and self._lower is not None and self.term.lower() in self._lower[index]:
            strip = self._mark(strip, index)
        return strip

    def _code(self, index: int, text: str, style: Style) -> list[Segment]:
        """A diff line's marker in the line's colour, its code coloured by the file's lexer."""
        at = bisect_left(self._starts, index) - 1
        path = self.files[at][1] if at >= 0 else None
        lexer = lexer_for(path) if path else None
        if lexer is None:
            return [Segment(text, style)]
        segments = [Segment(text[0], style)]
        try:
            tokens = list(lexer.get_tokens(text[1:]))
        except Exception:  # noqa: BLE001 - a lexer that chokes on a line: the line plain
            return [Segment(text, style)]
        for ttype, value in tokens:
            if not value:
                continue
            k = _syntax_kind(ttype)
            segments.append(Segment(value, style + self._style(f"syn-{k}") if k else style))
        if sum(len(seg.text) for seg in segments) != len(text):  # a lexer that changed the text: show it as it is
            return [Segment(text, style)]
        return segments

    def _mark(self, strip: Strip, index: int) -> Strip:
        """The term's every place on this line in reverse (the current match's line also underlined)."""
        t, low = self.term.lower(), self._lower[index] if self._lower else ""
        current = self.match is not None and self.matches and self.matches[self.match] == index
        full = self._style("current" if current else "match")
        mark = Style(reverse=full.reverse, bold=full.bold, underline=full.underline)  # keeps the line's colours
        cuts, at = [], low.find(t)
        while at >= 0:
            cuts.append((at, at + len(t)))
            at = low.find(t, at + len(t))
        out = []
        segments = list(strip)
        text = "".join(s.text for s in segments)
        if len(text) != len(low) or text.lower() != low:  # a lower() that changes lengths: leave it unmarked
            return strip
        styles = []
        for seg in segments:
            styles.extend([seg.style] * len(seg.text))
        for start, end in cuts:
            for i in range(start, min(end, len(styles))):
                styles[i] = (styles[i] or Style()) + mark
        run_start = 0
        for i in range(1, len(text) + 1):
            if i == len(text) or styles[i] != styles[run_start]:
                out.append(Segment(text[run_start:i], styles[run_start]))
                run_start = i
        return Strip(out)
