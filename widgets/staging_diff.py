"""The staging diff pane: what the staged revision changes against the live one.

On top, the live revision(s) (a mixed fleet says so, and the diff starts from the revision most hosts run) and the
staged one, and how its last stage went; under it, one line-API view (DiffView) of the commits (hash, author, age,
subject), the files changed with their +/- counts and the diff itself, coloured by line. `/` opens a search: enter
goes to the next match, n/N next/previous from the view, escape closes it. The pane only shows: the app reads git
(off its event loop) and hands it a `StagingDiff`, whose text the core has cleaned.
"""

from __future__ import annotations

import dataclasses
import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Static

from controlroom.core.text import clean
from controlroom.sources.stagediff import StagingDiff, age
from widgets.diff_view import DiffView
from widgets.repaint import update_in_place

POLL_FIRST = 0.25  # seconds between looks for the staged ref until the first diff is shown
POLL = 3.0  # then: a moved ref (a stage, a push) shows within this


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def diff_rows(d: StagingDiff, now: float | None = None) -> tuple[list[str], list[str], dict]:
    """The view's lines, kinds and spans for a diff: commits, files, then the diff itself."""
    now = time.time() if now is None else now
    lines: list[str] = []
    kinds: list[str] = []
    spans: dict[int, list[tuple[int, int, str]]] = {}
    if d.problem:
        return [d.problem], ["dim"], {}  # git no longer has the live revision: its name is in the header
    if d.same:
        return ["nothing to show: the fleet runs the staged commit"], ["dim"], {}
    lines.append(_plural(len(d.commits), "commit"))
    kinds.append("title")
    for c in d.commits:
        when = age(now - c.at)
        head = f"  {c.hash}  {c.author}  "
        spans[len(lines)] = [(2, 2 + len(c.hash), "hash"), (len(head), len(head) + len(when), "dim")]
        lines.append(f"{head}{when}  {c.subject}")
        kinds.append("context")
    added, removed = d.totals
    lines += ["", f"{_plural(len(d.files), 'file')} changed, +{added} -{removed}"]
    kinds += ["context", "title"]
    for f in d.files:
        plus, minus = f"+{f.added}", f"-{f.removed}"
        spans[len(lines)] = [(2, 2 + len(plus), "added"), (3 + len(plus), 3 + len(plus) + len(minus), "removed")]
        lines.append(f"  {plus} {minus}  {f.path}")
        kinds.append("context")
    if d.lines:
        lines.append("")
        kinds.append("context")
        lines += d.lines
        kinds += d.kinds
    return lines, kinds, spans


class StagingDiffPane(Vertical):
    """The header lines, the DiffView, and the search box (hidden until `/`)."""

    DEFAULT_CSS = """
    StagingDiffPane #diff-head { height: auto; }
    StagingDiffPane #diff-search { display: none; height: 1; border: none; padding: 0; }
    StagingDiffPane #diff-search.-open { display: block; }
    """
    BINDINGS = [Binding("slash", "search", "Search", show=False)]
    clock = staticmethod(time.time)  # what a commit's age is counted from (a snapshot test may fix it)

    class Stale(Message):
        """Time to look whether the staged ref (or the live side) moved: the app checks, off its loop."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.diff: StagingDiff | None = None
        self.problem = ""
        self.stage_line = ""
        self.shown = False  # a diff (or why there is none) is on screen

    def compose(self) -> ComposeResult:
        yield Static("reading the staged and live revisions...", id="diff-head", markup=False)
        yield DiffView(id="diff-view")
        yield Input(placeholder="search the diff: enter goes to the next match, escape closes",
                    id="diff-search")

    def on_mount(self) -> None:
        self.border_title = "Staging diff"
        self.remove_class("placeholder")
        self._poll()

    def _poll(self) -> None:
        # one look at a time: the next is scheduled only once this one is asked for (the app answers with show())
        self.post_message(self.Stale())
        self.set_timer(POLL if self.shown else POLL_FIRST, self._poll, name="staged-ref")

    @property
    def view(self) -> DiffView:
        return self.query_one(DiffView)

    @property
    def head_text(self) -> str:
        """The header as the operator reads it."""
        return str(self.query_one("#diff-head", Static).render())

    # ------------------------------------------------------------------------------------------- content
    def show(self, d: StagingDiff) -> None:
        """Show this diff (the view keeps its place when only the live or staged side is the same)."""
        same_target = self.diff is not None and self.diff.staged_commit == d.staged_commit
        self.diff, self.problem, self.shown = d, "", True
        lines, kinds, spans = diff_rows(d, self.clock())
        self.view.set_lines(lines, kinds, spans, keep_place=same_target)
        self._head()

    def show_live(self, line: str) -> None:
        """The live side as the host events say it now ('live: r2307 on 150 hosts'); the diff stays."""
        if self.diff is not None:
            self.diff = dataclasses.replace(self.diff, live_line=clean(line))
            self._head()

    def show_problem(self, why: str) -> None:
        """No diff to show, and why (one line): no repo, an unknown revision, the live revision unknown."""
        self.problem, self.shown = clean(why), True
        if self.diff is None:
            self.view.set_lines([], [])
        self._head()

    def show_stage(self, line: str) -> None:
        """How the last stage went, or what it prints now ('STAGE OK r2307 in 2 s')."""
        self.stage_line = clean(line)
        self._head()

    def _head(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        d = self.diff
        if d is not None:
            t.append(d.live_line)
            if d.mixed:
                t.append(f" · diff from {d.live}", style="bold")
            t.append("\n")
            t.append(d.staged_line, style="bold")
            if not d.same and not d.problem:
                added, removed = d.totals
                t.append(f" · {_plural(len(d.commits), 'commit')}, {_plural(len(d.files), 'file')}, "
                         f"+{added} -{removed}")
                if d.cut:
                    t.append(f" · shown in part: {', '.join(d.cut)}", style="bold")
        if self.problem:
            t.append(("\n" if d is not None else "") + self.problem, style="bold")
        if self.stage_line:
            t.append("\n" + self.stage_line)
        update_in_place(self.query_one("#diff-head", Static), t)  # the live side moves with every host
        if d is not None:
            self.border_subtitle = Content(f"{d.live} → {d.staged}")  # Content: never markup

    # ------------------------------------------------------------------------------------------- search
    def action_search(self) -> None:
        """`/`: the search box, focused."""
        box = self.query_one("#diff-search", Input)
        box.value = ""  # a new search, as in less and vim; n/N go on with the last one
        box.add_class("-open")
        box.focus()

    @on(Input.Submitted, "#diff-search")
    def _next(self, event: Input.Submitted) -> None:
        event.stop()
        view = self.view
        term = event.value
        if not term:
            view.clear_search()
            return
        if view.search(term) is None:
            self.notify(f"not in the diff: {clean(term, 80)}", markup=False, severity="warning", timeout=3)

    @on(DiffView.Searched)
    def _search_subtitle(self) -> None:
        view = self.view
        if view.term and view.match is not None:
            self.border_subtitle = Content(f"/{clean(view.term, 40)}: {view.match + 1} of {len(view.matches)}")
        elif view.term:
            self.border_subtitle = Content(f"/{clean(view.term, 40)}: no match")

    def on_key(self, event) -> None:
        box = self.query_one("#diff-search", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.remove_class("-open")
            self.view.focus()
