"""The control room's main screen: the panes, laid out for the terminal's size, the focus between them, and the
timers that repaint them.

The timers belong to the screen (not the app), so they stop with it: nothing repaints a screen that is going away.

Focus goes between the panes in one fixed order (TABS): `tab`/`shift+tab` to the next/previous, a digit to that
pane, and the same digit again fills the screen with it (escape puts it back). The focused pane says so in its
border (heavy, the accent colour) and its title (`▶`), so a monochrome screen shows it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Footer, TabbedContent, TabPane

from controlroom.core.text import clean
from controlroom.engine.board import Board
from widgets.deploy_log import DeployLogPane
from widgets.flags import FlagsPane
from widgets.footer import WholeFooter
from widgets.host_grid import HostGrid
from widgets.metrics import MetricsPane, MetricsSource
from widgets.presence import PresenceLine
from widgets.rollout import RolloutPane
from widgets.staging_diff import StagingDiffPane
from widgets.status_line import StatusLine

FLUSH_HZ = 15
JOURNAL_POLL = 2.0  # seconds between looks at the journal for other processes' entries and locks
WIDE = (120, 32)  # from this size on, every pane is on screen at once; below it the panes are tabs
THREE_COLUMNS = (200, 50)  # from this size on, the side panes are two columns: each gets more of the height
SHORT = 30  # below this height the rollout pane leaves out its legend and spacing (help shows the legend)
TABS = ("tab-rollout", "tab-log", "tab-flags", "tab-diff", "tab-metrics")  # the focus order, and keys 1..5
TITLES = ("Rollout", "Deploy log", "Flags", "Staging diff", "Metrics")
# what takes the keys in each pane (the pane itself when that is not on screen: an empty deploy log)
FOCUS_IN = {"tab-rollout": "#host-grid", "tab-log": "#log-lines", "tab-flags": "#flag-table",
            "tab-diff": "#diff-view", "tab-metrics": None}  # None: the pane itself
FOCUS_MARK = "▶ "
PALETTE_KEY_FROM = 100  # the footer shows ^p palette from this width on; narrower, it needs the room for keys
SIDE = (44, 80)  # the right column in two columns: at 160x48 76 (the flags table needs ~66); at 120x40 44
ROLLOUT_MIN = 84  # eight hosts a row with their names
SIDE3 = 68  # each side column in three columns
METRICS_ROWS = 10  # the metrics pane in the right column: two series of two lines, the markers, the legend


def pane_title(i: int, focused: bool) -> str:
    """`▶ 3 Flags` for the focused pane, `3 Flags` for the others: the digit is the key that reaches it."""
    return f"{FOCUS_MARK if focused else ''}{i + 1} {TITLES[i]}"


class MainScreen(Screen):
    """The panes. Wide terminals show all of them; small ones (80x24) show one at a time as tabs."""

    BINDINGS = [
        Binding("tab", "focus_pane(1)", "Next pane", show=False),
        Binding("shift+tab", "focus_pane(-1)", "Previous pane", show=False),
    ]

    def __init__(self, board: Board, flags: int, metrics: MetricsSource, *, flush: Callable[[], None],
                 polls: Iterable[tuple[float, Callable[[], None], str]], closing: Callable[[], bool],
                 id: str | None = None) -> None:
        """board: what the rollout pane shows; flags: how many the flags pane lists (its height); metrics: what the
        metrics pane polls; flush: the repaint, FLUSH_HZ times a second; polls: (seconds, look, name) for each slow
        look; closing: the app ends."""
        super().__init__(id=id)
        self._metrics_source = metrics
        self._room_board = board
        self._flag_count = flags
        self._repaint = flush
        self._looks = tuple(polls)
        self._ending = closing
        self._figures = ""

    def compose(self) -> ComposeResult:
        log = DeployLogPane(id="deploy-log", classes="pane")
        log.can_focus = True  # an empty log shows no lines to focus: the pane itself takes the focus then
        with TabbedContent(initial="tab-rollout", id="panes"):
            with TabPane("Rollout", id="tab-rollout"):
                yield RolloutPane(self._room_board, id="rollout", classes="pane")
            with TabPane("Deploy log", id="tab-log"):
                yield log
            with TabPane("Flags", id="tab-flags"):
                yield FlagsPane(id="flags", classes="pane")
            with TabPane("Staging diff", id="tab-diff"):
                yield StagingDiffPane(id="staging-diff", classes="pane placeholder")
            with TabPane("Metrics", id="tab-metrics"):
                yield MetricsPane(self._metrics_source, id="metrics", classes="pane placeholder")
        yield PresenceLine(id="presence-line")  # hidden while no one else is attached
        yield StatusLine(id="status-line")  # hidden until something failed out of sight (chat, an error)
        yield WholeFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one(HostGrid).focus()
        self.watch(self, "focused", self._show_focus)
        self.call_after_refresh(self.apply_layout)
        # the screen's own timers: they die with it, so no tick runs against panes that are being torn down
        self.set_interval(1 / FLUSH_HZ, self._repaint, name="flush")
        self.set_interval(1.0, self._tick, name="tick")
        for seconds, look, name in self._looks:
            self.set_interval(seconds, look, name=name)

    def _tick(self) -> None:
        if self._room_board.active and self.is_attached and not self._ending():
            self.query_one(RolloutPane).tick()

    # ------------------------------------------------------------------------------------------- focus
    def pane(self, tab: str) -> Widget:
        """The pane (its bordered widget) of a tab."""
        return self.query_one(f"#{tab} .pane")

    @property
    def focused_tab(self) -> str | None:
        """The tab whose pane holds the focus, if any does."""
        node = self.focused
        while node is not None and node is not self:
            if isinstance(node, TabPane) and node.id in TABS:
                return node.id
            node = node.parent
        return None

    def _show_focus(self, _focused: Widget | None = None) -> None:
        current = self.focused_tab
        for i, tab in enumerate(TABS):
            try:
                pane = self.pane(tab)
            except Exception:  # noqa: BLE001 - being composed or torn down
                continue
            title = pane_title(i, tab == current)
            if tab == "tab-log" and self._figures:  # the talk's line, from the record
                title += f" · {escape(self._figures)}"
            if pane.border_title != title:
                pane.border_title = title

    def show_figures(self, line: str) -> None:
        """The deploy log's title says the week's figures ("In the last 7 days: 3 deploys of 12 changes by 2
        people"): line as the server computed it, cleaned."""
        self._figures = clean(line, 160)
        self._show_focus()

    def focus_tab(self, tab: str) -> None:
        """Put the keys on that pane: its tab on small terminals; a pane filling the screen gives way to it."""
        if self.maximized is not None and self.maximized is not self.pane(tab):
            self.minimize()
        tabs = self.query_one(TabbedContent)
        if tabs.active != tab:
            tabs.active = tab
            self.apply_layout()
        pane = self.pane(tab)
        inner = FOCUS_IN[tab]
        target = pane.query_one(inner) if inner else pane
        if not target.display or not target.focusable:
            target = pane if pane.focusable else target
        self.set_focus(target, scroll_visible=False)  # now, not later: a second key at once sees it

    def action_focus_pane(self, step: int) -> None:
        """`tab`/`shift+tab`: the next/previous pane in the fixed order."""
        current = self.focused_tab or self.query_one(TabbedContent).active or TABS[0]
        self.focus_tab(TABS[(TABS.index(current) + step) % len(TABS)])

    def show_pane(self, tab: str) -> None:
        """A digit: focus that pane; the same digit again (the pane has the focus) fills the screen with it, and
        once more (or escape) puts it back."""
        pane = self.pane(tab)
        if self.maximized is pane:
            self.minimize()
        elif self.focused_tab == tab:
            self.maximized = pane
        else:
            self.focus_tab(tab)

    def on_key(self, event: events.Key) -> None:
        # escape with nothing filling the screen (the app puts that back first) dismisses the status line's error
        status = self.query_one(StatusLine)
        if event.key == "escape" and self.maximized is None and status.shown:
            event.stop()
            status.dismiss()

    # ------------------------------------------------------------------------------------------- layout
    def on_resize(self, event: events.Resize) -> None:
        self.apply_layout()

    def apply_layout(self) -> None:
        """Wide: every pane in a grid (the tab bar hidden), the width split by what each pane needs. Narrow: the
        active tab only."""
        w, h = self.size
        wide = w >= WIDE[0] and h >= WIDE[1]
        tabs = self.query_one(TabbedContent)
        if wide != self.has_class("-wide"):
            self.app.refresh_bindings()  # the footer has room for more keys when wide (app_keys.WIDE_ONLY)
        self.set_class(wide, "-wide")
        self.set_class(not wide, "-narrow")
        self.set_class(h < SHORT, "-short")
        footer = self.query_one(Footer)
        if footer.show_command_palette != (w >= PALETTE_KEY_FROM):
            footer.show_command_palette = w >= PALETTE_KEY_FROM  # narrow: the rollout's keys first (help: ctrl+p)
        for pane in tabs.query(TabPane):
            pane.display = wide or pane.id == tabs.active
        if wide:
            self._split(w, h)
        self._show_focus()

    def _split(self, w: int, h: int) -> None:
        switcher = self.query_one("#panes > ContentSwitcher", ContentSwitcher)
        rollout = self.query_one("#tab-rollout", TabPane)
        # the flags pane: its summary (and the read-back's line), the table's header and one row a flag, its keys,
        # the border; beyond a third of the height the table scrolls
        flags_rows = min(max(self._flag_count, 2) + 7, h // 3)
        st = switcher.styles
        if w >= THREE_COLUMNS[0] and h >= THREE_COLUMNS[1]:
            # the rollout | the deploy log over the staging diff | the flags over the metrics
            st.grid_size_columns, st.grid_size_rows = 3, 2
            st.grid_columns = f"1fr {SIDE3} {SIDE3}"
            st.grid_rows = f"{max(flags_rows, h // 3)} 1fr"
            rollout.styles.row_span = 2
            self.set_class(True, "-three")
        else:
            # the rollout | the deploy log, the flags, the staging diff and the metrics, one over the other
            side = max(SIDE[0], min(SIDE[1], w - ROLLOUT_MIN))
            st.grid_size_columns, st.grid_size_rows = 2, 4
            st.grid_columns = f"1fr {side}"
            st.grid_rows = f"1fr {flags_rows} 2fr {METRICS_ROWS}"
            rollout.styles.row_span = 4
            self.set_class(False, "-three")

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if self.has_class("-wide"):  # keep every pane on screen even if a tab was switched by the keyboard
            self.apply_layout()
