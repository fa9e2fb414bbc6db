"""The control room's main screen: the panes, laid out for the terminal's size, and the timers that repaint them.

The timers belong to the screen (not the app), so they stop with it: nothing repaints a screen that is going away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events, on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from controlroom.app_flags import FLAGS_POLL, VERIFY_EVERY
from widgets.deploy_log import DeployLogPane
from widgets.flags import FlagsPane
from widgets.host_grid import HostGrid
from widgets.metrics import MetricsPane
from widgets.presence import PresenceLine
from widgets.rollout import RolloutPane
from widgets.staging_diff import StagingDiffPane
from widgets.status_line import StatusLine

if TYPE_CHECKING:
    from controlroom.app import ControlRoom

FLUSH_HZ = 15
JOURNAL_POLL = 2.0  # seconds between looks at the journal for other processes' entries and locks
WIDE = (120, 32)  # from this size on, every pane is on screen at once; below it the panes are tabs
TABS = ("tab-rollout", "tab-log", "tab-flags", "tab-diff", "tab-metrics")


class MainScreen(Screen):
    """The panes. Wide terminals show all of them; small ones (80x24) show one at a time as tabs."""

    def compose(self) -> ComposeResult:
        app: ControlRoom = self.app  # type: ignore[assignment]
        with TabbedContent(initial="tab-rollout", id="panes"):
            with TabPane("Rollout", id="tab-rollout"):
                yield RolloutPane(app.board, id="rollout", classes="pane")
            with TabPane("Deploy log", id="tab-log"):
                yield DeployLogPane(id="deploy-log", classes="pane")
            with TabPane("Flags", id="tab-flags"):
                yield FlagsPane(id="flags", classes="pane")
            with TabPane("Staging diff", id="tab-diff"):
                yield StagingDiffPane(id="staging-diff", classes="pane placeholder")
            with TabPane("Metrics", id="tab-metrics"):
                yield MetricsPane(id="metrics", classes="pane placeholder")
        yield PresenceLine(id="presence-line")  # hidden while no one else is attached
        yield StatusLine(id="status-line")  # hidden until something failed out of sight (chat)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        app: ControlRoom = self.app  # type: ignore[assignment]
        self.query_one(HostGrid).focus()
        self.call_after_refresh(self.apply_layout)
        # the screen's own timers: they die with it, so no tick runs against panes that are being torn down
        self.set_interval(1 / FLUSH_HZ, app.flush, name="flush")
        self.set_interval(1.0, self._tick, name="tick")
        self.set_interval(JOURNAL_POLL, app.poll_journal, name="journal")
        self.set_interval(FLAGS_POLL, app.poll_flags, name="flags")
        self.set_interval(VERIFY_EVERY, app.poll_verify, name="flags-verify")

    def _tick(self) -> None:
        app: ControlRoom = self.app  # type: ignore[assignment]
        if app.board.active and self.is_attached and not app.closing:
            self.query_one(RolloutPane).tick()

    def on_resize(self, event: events.Resize) -> None:
        self.apply_layout()

    def apply_layout(self) -> None:
        """Wide: every pane in a grid (the tab bar hidden). Narrow: the active tab only."""
        w, h = self.size
        wide = w >= WIDE[0] and h >= WIDE[1]
        tabs = self.query_one(TabbedContent)
        if wide != self.has_class("-wide"):
            self.app.refresh_bindings()  # the footer has room for more keys when wide (app_keys.WIDE_ONLY)
        self.set_class(wide, "-wide")
        self.set_class(not wide, "-narrow")
        for pane in tabs.query(TabPane):
            pane.display = wide or pane.id == tabs.active

    @on(TabbedContent.TabActivated)
    def _tab_activated(self) -> None:
        if self.has_class("-wide"):  # keep every pane on screen even if a tab was switched by the keyboard
            self.apply_layout()
