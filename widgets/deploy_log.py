"""The deploy log pane: the journal's entries live, newest at the bottom, and the lock on top while it is held.

Entries go into Textual's `Log` (a line-API widget: appending is cheap and only visible lines are drawn), not
RichLog, which renders every line as it arrives.
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass

from rich.highlighter import Highlighter
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, Static

from controlroom.core import events as ev
from controlroom.core.text import clean
from widgets.states import MARKED_COLOR

MAX_LINES = 2000


@dataclass(frozen=True)
class LockView:
    """What the banner shows; built from journal.Lock (and refreshed on LockChanged)."""

    user: str
    at: float
    reason: str
    rollout_id: int | None = None
    revision: str | None = None
    stale: bool = False


def clock(at: float, now: float | None = None) -> str:
    """13:05 today, else 2026-06-17 13:05."""
    t, today = time.localtime(at), time.localtime(now or time.time())
    if t[:3] == today[:3]:
        return time.strftime("%H:%M", t)
    return time.strftime("%Y-%m-%d %H:%M", t)


def entry_line(at: float, user: str, kind: str, text: str, revision: str | None = None) -> str:
    """`[13:12:13] [mygrant] DEPLOY OK r2307 ...`: the CLI's `controlroom log` format, the date only if not today.

    One line whatever the entry holds: what people wrote is cleaned (no escape sequence, no newline, bounded).
    """
    t, today = time.localtime(at), time.localtime()
    stamp = time.strftime("%H:%M:%S" if t[:3] == today[:3] else "%Y-%m-%d %H:%M:%S", t)
    user, kind, text = clean(user, 64), clean(kind, 32), clean(text)
    revision = clean(revision, 64) if revision else None
    rev = f" {revision}" if revision and revision not in text else ""
    body = f" {text}" if text else ""
    return f"[{stamp}] [{user}] {kind}{rev}{body}"


class MarkHighlighter(Highlighter):
    """A marked result ('DEPLOY OK r2307 ⚠ past a failed gate: ...') in the warning colour, up to its colon."""

    def highlight(self, text: Text) -> None:
        at = text.plain.find(ev.MARK_SYMBOL)
        if at >= 0:
            end = text.plain.find(":", at)
            text.stylize(MARKED_COLOR, at, end if end > 0 else len(text.plain))


def lock_banner(lock: LockView) -> Text:
    lock = LockView(
        clean(lock.user, 64), lock.at, clean(lock.reason), lock.rollout_id, lock.revision, lock.stale
    )
    t = Text(justify="center")
    if lock.rollout_id:
        what = (lock.reason[:1].upper() + lock.reason[1:]) if lock.reason else f"Deploy #{lock.rollout_id}"
        t.append(f"{what} — {lock.user}, {clock(lock.at)}", style="bold")
        t.append(f"\ndeploy #{lock.rollout_id} holds the lock while it runs")
    else:
        t.append(f"NO DEPLOY PLEASE — {lock.user}, {clock(lock.at)}", style="bold")
        if lock.reason:
            t.append(f"\n{lock.reason}")
    if lock.stale:
        t.append("\nstale: the process that took it is gone; a deploy takes it over")
    return t


class DeployLogPane(Vertical):
    """Lock banner (hidden when the fleet is not locked) above the log.

    Log does not wrap, so entries are wrapped here to the pane's width (and again when it changes): a deploy log
    that hides the end of "who did what" behind a horizontal scroll is no log.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entries: list[str] = []
        self._wrap_width = 0
        # the newest entry stays in sight until the reader scrolls up to read older ones (and again once they
        # scroll back to the end); decided by what the reader did, not by where the log happens to be while it is
        # still being laid out (an attach to a long log wrote its entries before the log had a height)
        self.reader_scrolled = False
        self._rewriting = False

    def compose(self) -> ComposeResult:
        yield Static(id="lock-banner")
        log = Log(max_lines=MAX_LINES, id="log-lines", auto_scroll=False, highlight=True)
        log.highlighter = MarkHighlighter()  # only a marked result is coloured; the rest stays plain text
        yield log
        yield Static("the deploy log is empty: m adds an entry, l locks the fleet", id="log-empty")

    def on_mount(self) -> None:
        self.border_title = "Deploy log"
        self.log_widget.display = False
        self.show_lock(None)
        self.watch(self.log_widget, "scroll_y", self._on_log_scroll, init=False)
        self.set_interval(0.5, self._keep_following)  # a scroll_end made before the log had its height

    @property
    def log_widget(self) -> Log:
        return self.query_one("#log-lines", Log)

    def show_lock(self, lock: LockView | None) -> None:
        banner = self.query_one("#lock-banner", Static)
        banner.display = lock is not None
        if lock is not None:
            banner.update(lock_banner(lock))
            banner.set_class(bool(lock.rollout_id), "-deploying")
            banner.set_class(not lock.rollout_id, "-locked")
        self.border_subtitle = "LOCKED" if lock is not None and not lock.rollout_id else ""

    def _wrap(self, lines: list[str]) -> list[str]:
        width = self._wrap_width
        if width < 20:
            return lines
        out: list[str] = []
        for line in lines:
            out.extend(textwrap.wrap(line, width, subsequent_indent="    ", break_on_hyphens=False) or [""])
        return out

    def write_entries(self, lines: list[str]) -> None:
        """Append entries (oldest first) at the bottom."""
        if not lines:
            return
        self.entries.extend(lines)
        del self.entries[:-MAX_LINES]
        self.query_one("#log-empty").display = False
        log = self.log_widget
        log.display = True
        log.write_lines(self._wrap(lines))
        self._follow()

    def _follow(self) -> None:
        self.call_after_refresh(self._keep_following)

    def _on_log_scroll(self, old: float, new: float) -> None:
        """The reader scrolled (keys, wheel, scrollbar): away from the end they read; back at it, follow again."""
        log = self.log_widget
        if self._rewriting or log.max_scroll_y <= 0 or not log.display:
            return
        self.reader_scrolled = new < log.max_scroll_y

    def _keep_following(self) -> None:
        """To the newest entry, unless the reader scrolled up (after a write, and on a timer for a write made
        before the log had its height)."""
        log = self.log_widget
        if not self.reader_scrolled and log.display and log.max_scroll_y > 0 and not log.is_vertical_scroll_end:
            log.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_resize(self, event: events.Resize) -> None:
        width = self.content_region.width - 1  # the log's scrollbar takes one column
        if width != self._wrap_width and width > 0:
            self._wrap_width = width
            if self.entries:
                log = self.log_widget
                self._rewriting = True  # the clear's scroll to the top is not the reader's
                try:
                    log.clear()
                    log.write_lines(self._wrap(self.entries))
                finally:
                    self._rewriting = False
        if self.entries:
            self._follow()

    @property
    def lines(self) -> list[str]:
        """The entries as written (unwrapped), oldest first."""
        return list(self.entries)
