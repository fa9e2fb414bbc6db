"""The control room: one Textual app that composes the panes around the board of the control-room server.

The app is a client of the server of its state directory (server.py): it holds no engine and never opens SSH. The
server's snapshot and numbered events arrive as plain messages that only merge state into the Board (app_link.py);
a 15 Hz timer repaints what changed, so a storm of events costs one repaint. Every key sends an intent to the
server (app_actions.py). Quitting, or losing the terminal, leaves the server and its deploy running.

`build_app(cfg)` is the one way to make the app: `controlroom`, `controlroom demo` and the tests all use it.
"""

from __future__ import annotations

import asyncio
import os

from rich.text import Text
from textual.app import App
from textual.screen import Screen
from textual.widgets import TabbedContent
from textual.worker import Worker

from controlroom.app.actions import Controller
from controlroom.app.flags import FlagActions
from controlroom.app.keys import ACTIONS, bindings
from controlroom.app.link import Link
from controlroom.app.metrics import MetricsLink
from controlroom.app.screens import TABS, MainScreen
from controlroom.app.stage import StageActions
from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.identity import current_user
from controlroom.core.text import clean
from controlroom.engine.board import Board
from controlroom.server.client import Client
from controlroom.server.wire import Lock
from widgets.deploy_log import DeployLogPane, LockView
from widgets.host_detail import HostScreen
from widgets.host_grid import HostGrid
from widgets.presence import PresenceLine
from widgets.rollout import RolloutPane
from widgets.status_line import StatusLine

TOAST_SECONDS = 4.0  # a notification is gone after this at most; an error stays in the status line


class ControlRoom(StageActions, MetricsLink, FlagActions, Link, Controller, App[int]):
    """The control room on one fleet, as a client of its server. Build it with `build_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "controlroom"
    BINDINGS = bindings(TABS)
    NOTIFICATION_TIMEOUT = TOAST_SECONDS

    def __init__(self, cfg: Config, *, read_only: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.read_only_asked = read_only
        self.read_only_why = ""
        self.user = current_user()  # until the server says who we are (from the socket's peer credentials)
        self.may_act = False  # until the server's hello says we may
        self.client: Client | None = None
        self.connected = asyncio.Event()
        self.board = Board()
        self.board.plan([(p.name, p.hosts, p.max_failed, p.auto) for p in cfg.phases])
        self.seq = 0  # the number of the last event merged into the board
        self.busy = ""  # what the server runs now: deploy, resume, rollback, rerun, or nothing
        self.paused = False
        self.staged: str | None = None  # the revision a deploy ships
        self.live: str | None = None  # what the fleet runs now
        self.unreached_live: str | None = None  # what the hosts no deploy has reached run (asked of one of them)
        self.revisions_loaded = asyncio.Event()
        self.rolling_back = False
        self.last_finished: ev.RolloutFinished | None = None
        self._log_dirty = False
        self._new_entries: list[str] = []
        self._last_log_id = 0
        self._lock_dirty = True
        self._journal_fetching = False
        self._journal_again = False
        self._followed: dict = {}  # host -> its output and result as the server keeps them (open host views)
        self._host_fetching: dict[str, bool] = {}
        self._jump_to: str | None = None
        self._closing = False
        self._flows: dict[str, Worker] = {}  # the flow under way per action (Controller._once)
        self._proceeded: object = None  # the gate or halt the operator already said go to
        self._main: MainScreen | None = None
        self._lock: Lock | None = None
        self._offered: tuple[bool, ...] = ()
        self.startup_warning: str | None = None
        self.presence: list[dict] = []  # the server's attached clients: user, origin, client, role (app_link)
        self.driver: dict | None = None  # who drives the server's operation now
        self.client_no = 0  # our number in the presence list
        self._presence_dirty = False
        self._accepted_driver: tuple | None = None  # the operator said "act anyway" over this driver

    # ------------------------------------------------------------------------------------------- queries
    @property
    def main(self) -> MainScreen:
        assert self._main is not None, "the app is not running"
        return self._main

    @property
    def host_grid(self) -> HostGrid:
        return self.main.query_one(HostGrid)

    @property
    def rollout_pane(self) -> RolloutPane:
        return self.main.query_one(RolloutPane)

    @property
    def deploy_log(self) -> DeployLogPane:
        return self.main.query_one(DeployLogPane)

    @property
    def tabs(self) -> TabbedContent:
        return self.main.query_one(TabbedContent)

    @property
    def status(self) -> str | None:
        """The rollout's status (events.R_*), or None before the first rollout."""
        return self.board.status

    @property
    def lock(self) -> Lock | None:
        """The fleet lock as the server last said."""
        return self._lock

    @property
    def selected_host(self) -> str | None:
        """The host an action applies to: the open host view's, else the grid cursor's."""
        if isinstance(self.screen, HostScreen):
            return self.screen.host
        return self.host_grid.cursor_host

    @property
    def closing(self) -> bool:
        """The app is shutting down: timers and workers leave the screen alone."""
        return self._closing

    @property
    def log_lines(self) -> list[str]:
        return self.deploy_log.lines

    # ------------------------------------------------------------------------------------------- lifecycle
    def get_default_screen(self) -> Screen:
        self._main = MainScreen(id="main")
        return self._main

    def on_mount(self) -> None:
        self.sub_title = clean(self.cfg.path)
        if self.startup_warning:
            self._say(self.startup_warning, severity="warning", timeout=10)
        self.run_worker(self._link(), name="link", group="link", exit_on_error=False)

    async def on_unmount(self) -> None:
        self._closing = True
        client, self.client = self.client, None
        if client is not None:
            await client.close()  # the server and its deploy go on

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Every notification: gone in TOAST_SECONDS at most, in the corner app.tcss gives it (its box is 40
        columns wide: say it in a line or two; it is never cut, a cut message could say what is not so); an error
        also stays in the status line until escape dismisses it."""
        if severity == "error" and self._main is not None and self._main.is_mounted:
            text = f"{title}: {message}" if title else message
            if markup:
                try:
                    text = Text.from_markup(text).plain
                except Exception:  # noqa: BLE001 - not markup after all: shown as it is
                    pass
            self._main.query_one(StatusLine).say(text, error=True)
        main = self._main
        # the corner has room for a few in two columns (over the deploy log's oldest lines), else for one
        room = 3 if main is not None and main.has_class("-wide") and not main.has_class("-three") else 1
        shown = list(self._notifications)
        for old in shown[: max(len(shown) - room + 1, 0)]:
            self._unnotify(old, refresh=False)  # the newest says what is so now
        super().notify(message, title=title, severity=severity, markup=markup,
                       timeout=min(timeout or TOAST_SECONDS, TOAST_SECONDS))

    # ------------------------------------------------------------------------------------------- painting
    def flush(self) -> None:
        """Repaint what changed since the last flush (15 times a second at most)."""
        if self._closing or self._main is None or not self._main.is_mounted:
            return
        try:
            main = self._main
            grid = main.query_one(HostGrid)
        except Exception:  # noqa: BLE001 - not composed yet
            return
        board = self.board
        if board.replanned:
            grid.relayout()
            board.take_dirty()
        elif board.dirty_hosts:
            grid.hosts_changed(board.take_dirty())
        if self._jump_to is not None:
            grid.select_host(self._jump_to)
            self._jump_to = None
        if board.dirty:
            board.dirty = False
            main.query_one(RolloutPane).refresh_board()
            self._refresh_bindings_if_changed()
        if self._log_dirty:
            self._log_dirty = False
            new, self._new_entries = self._new_entries, []
            main.query_one(DeployLogPane).write_entries(new)
        self.follow_live()  # the staging diff's live side, from the host events (app_stage)
        if self._presence_dirty:
            self._presence_dirty = False
            main.query_one(PresenceLine).show(self.presence, self.client_no)
        if self._lock_dirty:
            self._lock_dirty = False
            lock = self._lock_view()
            main.query_one(DeployLogPane).show_lock(lock)
            main.query_one(RolloutPane).show_lock(lock)
            locked = lock is not None and not lock.rollout_id
            main.query_one(TabbedContent).get_tab("tab-log").label = (
                "Deploy log (LOCKED)" if locked else "Deploy log"
            )
            self._refresh_bindings_if_changed()

    def _refresh_bindings_if_changed(self) -> None:
        # refreshing the bindings recomposes the footer (a layout pass): only when what is offered changed
        offered = tuple(bool(self.check_action(a.action, ())) for a in ACTIONS)
        if offered != self._offered:
            self._offered = offered
            self.refresh_bindings()

    def _lock_view(self) -> LockView | None:
        lock = self._lock
        if lock is None:
            return None
        return LockView(clean(lock.user, 64), lock.at, clean(lock.reason), lock.rollout_id, None, lock.stale)


def build_app(cfg: Config, *, read_only: bool = False) -> ControlRoom:
    """The one factory for the app: `controlroom`, `controlroom demo` and the tests run what it returns."""
    return ControlRoom(cfg, read_only=read_only)


def run_app(cfg: Config, *, read_only: bool = False) -> int:
    """Run the control room full-screen until the operator quits; returns the exit status.

    The deploy runs in the server: quitting, or the terminal going away (SIGHUP), leaves it running."""
    # Textual sizes the screen with shutil.get_terminal_size, which believes COLUMNS/LINES over the terminal;
    # a shell that exported them at another size would pin the app to it and ignore every resize.
    # (Under textual-serve, `controlroom web`, COLUMNS is the browser's width as the web driver reads it: kept.)
    if "web_driver" not in os.environ.get("TEXTUAL_DRIVER", ""):
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)
    app = build_app(cfg, read_only=read_only)
    from controlroom.app.hangup import end_on_hangup

    end_on_hangup(app)  # the terminal going away ends the app, writing nothing to it and never hanging
    app.run()
    return app.return_code or 0
