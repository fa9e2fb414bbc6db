"""The control room: one Textual app that composes the panes around the board of the control-room server.

The app is a client of the server of its state directory (server/server.py): it holds no engine and never opens
SSH. The link (link.py) posts what the server says as messages; their handlers here merge them into the Room and
its Board (room.py) and hand each event to the controllers that want it (one Dispatcher, no chain of overrides).
A 15 Hz timer repaints what changed, so a storm of events costs one repaint. Every key sends an intent to the
server through a controller: the rollout's keys (actions.py), the flags pane (flags.py), a failed gate (gate.py),
the staging diff and the stage key (stage.py), the metrics markers (metrics.py), the deploy log and the lock
(deploylog.py), a host's view (hosts.py). Quitting, or losing the terminal, leaves the server and its deploy
running.

`build_app(cfg)` is the one way to make the app: `controlroom`, `controlroom demo` and the tests all use it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from typing import TypeVar

from rich.text import Text
from textual import events, on
from textual.app import App
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import TabbedContent

from controlroom.app.actions import Intents, help_keys
from controlroom.app.confirm import why_no_resume
from controlroom.app.deploylog import DeployLog
from controlroom.app.dispatch import Dispatcher
from controlroom.app.flags import FLAGS_POLL, VERIFY_EVERY, Flags
from controlroom.app.gate import GATE_EVENTS, FailedGate
from controlroom.app.hangup import end_on_hangup
from controlroom.app.hosts import FollowedHosts
from controlroom.app.keys import ACTIONS, INTENT_OF, bindings
from controlroom.app.link import (
    Attached,
    Connected,
    EngineEvents,
    Link,
    LinkLost,
    PresenceChanged,
    SnapshotArrived,
)
from controlroom.app.metrics import Markers, MetricsFeed
from controlroom.app.palette import ActionsProvider
from controlroom.app.room import BOARD_EVENTS, Room
from controlroom.app.screens import JOURNAL_POLL, TABS, MainScreen
from controlroom.app.stage import ChatFailures, Stager, StagingDiff
from controlroom.app.timeline import HistoryScreen, RecordReader, TimelineScreen
from controlroom.app.ui import Flows, Ui
from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.text import clean
from controlroom.server.client import Client
from controlroom.server.wire import Lock
from widgets.deploy_log import DeployLogPane
from widgets.dialogs import HelpScreen
from widgets.flags import FlagsPane
from widgets.host_detail import HostScreen
from widgets.host_grid import HostGrid
from widgets.presence import PresenceLine
from widgets.rollout import RolloutPane
from widgets.staging_diff import StagingDiffPane
from widgets.status_line import StatusLine

TOAST_SECONDS = 4.0  # a notification is gone after this at most; an error stays in the status line
W = TypeVar("W", bound=Widget)


class ControlRoom(App[int]):
    """The control room on one fleet, as a client of its server. Build it with `build_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "controlroom"
    BINDINGS = bindings(TABS)
    COMMANDS = App.COMMANDS | {ActionsProvider}
    NOTIFICATION_TIMEOUT = TOAST_SECONDS

    def __init__(self, cfg: Config, *, read_only: bool = False, replay: tuple[int, float] | None = None) -> None:
        """replay: (deploy, speed): open on that deploy's timeline, playing it (`controlroom replay`, read-only)."""
        super().__init__()
        self.cfg = cfg
        self.replay = replay
        read_only = read_only or replay is not None
        self.read_only_asked = read_only
        self.connected = asyncio.Event()
        self.startup_warning: str | None = None
        self._closing = False
        self._main: MainScreen | None = None
        self._offered: tuple[bool, ...] = ()
        ui = self.ui = Ui(self, lambda: self._closing)
        room = self.room = Room(cfg, ui.say)
        self.board = room.board
        flows = self.flows = Flows(room, ui)
        link = self.link = Link(cfg, read_only=read_only, post=self.post_message, say=ui.say,
                                ask_anyway=flows.ask_anyway, closing=lambda: self._closing,
                                kind=lambda: "web" if self.is_web else "app")
        # the per-pane controllers: each given what it needs, none of them reaching into another
        self.deploylog = DeployLog(link, lambda work: ui.run(work, name="journal", group="journal"),
                                   lambda work: ui.run(work, name="figures", group="figures"))
        self.followed = FollowedHosts(link, lambda host, work: ui.run(work, name=f"host {host}", group="host-output"))
        self.flag_controls = Flags(room, link, flows, ui, self._pane(FlagsPane))
        self.diff = StagingDiff(cfg, room, ui, self._pane(StagingDiffPane))
        self.stager = Stager(cfg, room, flows, ui, self.diff, self._pane(StagingDiffPane), read_only=read_only)
        self.failed_gate = FailedGate(cfg, room, link, self.flag_controls, flows, ui,
                                      is_main=lambda: self.screen is self._main, proceed=self.action_proceed,
                                      rollback=self.action_rollback)
        self.intents = Intents(cfg, room, link, self.deploylog, flows, ui, selected_host=lambda: self.selected_host,
                               fleet_live=self.diff.fleet_live, pass_failed_gate=self.failed_gate.pass_failed,
                               offered_changed=self._refresh_bindings_if_changed, exit=self.exit)
        self.metrics_feed = MetricsFeed(cfg, link, self._repaint_metrics, lambda: self._closing)
        self.chat = ChatFailures(ui, self._pane(StatusLine))
        self.records = RecordReader(self._read)
        # every event, in order, to the controllers that want it: the board first
        d = self.dispatch = Dispatcher()
        d.add(room.event, *BOARD_EVENTS)
        d.add(self.followed.on_output, ev.HostOutput)
        d.add(self.followed.on_state, ev.HostStateChanged)
        d.add(self.deploylog.on_event, ev.LogEntryAdded, ev.LockChanged)
        d.add(self.deploylog.on_deploy, ev.RolloutStarted, ev.RolloutFinished)
        d.add(self.flag_controls.on_event, ev.FlagChanged)
        d.add(self.failed_gate.on_event, *GATE_EVENTS)
        d.add(self.metrics_feed.on_event, ev.PhaseStarted, ev.LogEntryAdded)
        d.add(self.diff.on_event, ev.HostStateChanged, ev.RolloutStarted, ev.LogEntryAdded)
        d.add(self.chat.on_event, ev.AnnouncementFailed)

    def _pane(self, kind: type[W]) -> Callable[[], W | None]:
        """The main screen's pane of that kind, or None while it is not composed (or torn down)."""

        def pane() -> W | None:
            main = self._main
            if main is None or not main.is_mounted:
                return None
            try:
                return main.query_one(kind)
            except NoMatches:
                return None

        return pane

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
    def flags_pane(self) -> FlagsPane:
        return self.main.query_one(FlagsPane)

    @property
    def staging_diff(self) -> StagingDiffPane:
        return self.main.query_one(StagingDiffPane)

    @property
    def tabs(self) -> TabbedContent:
        return self.main.query_one(TabbedContent)

    @property
    def log_lines(self) -> list[str]:
        return self.deploy_log.lines

    @property
    def status(self) -> str | None:
        """The rollout's status (events.R_*), or None before the first rollout."""
        return self.board.status

    @property
    def lock(self) -> Lock | None:
        """The fleet lock as the server last said."""
        return self.deploylog.lock

    @property
    def client(self) -> Client | None:
        return self.link.client

    @property
    def user(self) -> str:
        return self.room.user

    @property
    def busy(self) -> str:
        return self.room.busy

    @property
    def paused(self) -> bool:
        return self.room.paused

    @property
    def staged(self) -> str | None:
        return self.room.staged

    @property
    def last_finished(self) -> ev.RolloutFinished | None:
        return self.room.last_finished

    @property
    def revisions_loaded(self) -> asyncio.Event:
        return self.room.revisions_loaded

    @property
    def driven(self) -> bool:
        return self.room.driven

    @property
    def markers(self) -> Markers:
        """The metrics pane's deploy markers (widgets/metrics.py draws them)."""
        return self.metrics_feed.markers

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

    async def send(self, op: str, **args) -> dict | None:
        """One intent to the server (link.py); None when refused (the refusal is shown)."""
        return await self.link.send(op, **args)

    async def _read(self, op: str, **args) -> dict | None:
        """A read for the timeline and the history: once connected (a replay opens before the server answers)."""
        await self.connected.wait()
        return await self.link.send(op, **args)

    async def fresh_flags(self) -> dict | None:
        return await self.flag_controls.fresh()

    # ------------------------------------------------------------------------------------------- lifecycle
    def get_default_screen(self) -> Screen:
        polls = ((JOURNAL_POLL, self.deploylog.poll, "journal"), (FLAGS_POLL, self.flag_controls.poll, "flags"),
                 (VERIFY_EVERY, self.flag_controls.poll_verify, "flags-verify"))
        self._main = MainScreen(self.board, len(self.cfg.flags.flags), self.metrics_feed, flush=self.flush,
                                polls=polls, closing=lambda: self._closing, id="main")
        return self._main

    def on_mount(self) -> None:
        self.sub_title = clean(self.cfg.path)
        if self.startup_warning:
            self.ui.say(self.startup_warning, severity="warning", timeout=10)
        self.start_link()
        if self.replay is not None:
            number, speed = self.replay
            self.push_screen(TimelineScreen(self.records, number, speed=speed, quit=lambda: self.exit(0)))

    def start_link(self) -> None:
        """Connect to the server and follow it (bench/ui.py feeds the app itself instead)."""
        self.run_worker(self.link.run(), name="link", group="link", exit_on_error=False)

    async def on_unmount(self) -> None:
        self._closing = True
        await self.link.close()  # the server and its deploy go on

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

    # ------------------------------------------------------------------------------------------- the link says
    def on_connected(self, message: Connected) -> None:
        client = message.client
        room = self.room
        room.hello(client.hello, client.may_act)
        if client.hello.get("warning"):
            self.ui.say(str(client.hello["warning"]), severity="warning", timeout=15)
        if not room.may_act:
            room.read_only_why = ("read-only: a replay (controlroom replay)" if self.replay is not None
                                  else "read-only (--read-only)" if self.read_only_asked
                                  else f"read-only: {room.user} is not among [access] operators")
            self.sub_title = f"{self.cfg.path} · {room.read_only_why}"
            self.ui.say(f"{room.read_only_why}: you may watch, not act", title="Read-only", timeout=10)
        self.connected.set()
        self._offered = ()
        self.refresh_bindings()

    def on_attached(self, message: Attached) -> None:
        self.run_worker(self._load_revisions(), name="revisions", group="revisions", exclusive=True,
                        exit_on_error=False)

    async def _load_revisions(self) -> None:
        self.room.revisions(await self.link.send("revisions"))
        self.diff.want()  # the server said what the fleet runs: the diff at once, not at the pane's next look

    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        msg = message.msg
        if self.room.snapshot(msg):
            self.followed.refollow()  # their output again, numbered as this server numbers it
            self.deploylog.want()
        self.metrics_feed.on_board(self.board)
        self.flag_controls.want()
        self.room.set_presence(msg.get("presence"), msg.get("driver"))

    def on_engine_events(self, message: EngineEvents) -> None:
        room, dispatch = self.room, self.dispatch
        for e, seq in message.events:
            if seq <= room.seq:
                continue  # the snapshot had it
            room.seq = seq
            dispatch(e, seq)

    def merge(self, e: ev.Event, seq: int = 0) -> None:
        """One event into the board and the controllers, as if the server had sent it (bench/ui.py)."""
        self.dispatch(e, seq)

    def on_presence_changed(self, message: PresenceChanged) -> None:
        self.room.set_presence(message.presence, message.driver)

    def on_link_lost(self, message: LinkLost) -> None:
        self.room.busy = ""
        self.room.set_presence([], None)  # nobody is known to be attached any more
        self.ui.say("the control-room server went away: connecting again (a deploy it ran shows halted)",
                    severity="warning", timeout=10)

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
        board, room, log = self.board, self.room, self.deploylog
        # the header offers keys only to a person who may act (known at the server's hello)
        main.query_one(RolloutPane).set_acting(room.may_act or not self.connected.is_set())
        if board.replanned:
            grid.relayout()
            board.take_dirty()
        elif board.dirty_hosts:
            grid.hosts_changed(board.take_dirty())
        if room.jump_to is not None:
            grid.select_host(room.jump_to)
            room.jump_to = None
        if board.dirty:
            board.dirty = False
            main.query_one(RolloutPane).refresh_board()
            self._refresh_bindings_if_changed()
        new = log.take_entries()
        if new:
            main.query_one(DeployLogPane).write_entries(new)
        self.diff.follow_live()  # the staging diff's live side, from the host events
        if room.presence_dirty:
            room.presence_dirty = False
            main.query_one(PresenceLine).show(room.presence, room.client_no)
        if log.figures_dirty:
            log.figures_dirty = False
            main.show_figures(log.figures)
        if log.lock_dirty:
            log.lock_dirty = False
            lock = log.lock_view()
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

    def _repaint_metrics(self) -> None:
        """A marker came: the pane's markers row shows it now, not at the next poll's repaint."""
        if self._main is not None:
            for pane in self._main.query("#metrics"):
                pane.refresh()

    # ------------------------------------------------------------------------------------------- offered
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer only what makes sense now (actions.py); the footer and the palette follow."""
        # k is a priority key (heard over a host's view and help too): on a dialog or the palette, where people
        # type, it is a letter. Asked with no parameters (the palette, help), it is offered wherever it is asked.
        if action == "kill_switch" and parameters:
            screen = self.screen
            if screen is not self._main and not isinstance(screen, (HostScreen, HelpScreen)):
                return False
        wide = self._main is not None and self._main.has_class("-wide")
        return self.intents.offered(action, parameters, wide=wide)

    def palette_extras(self) -> Iterable[tuple[str, str, Callable[[], object]]]:
        """The palette's commands of the moment (palette.py): one a kill switch."""
        return self.flag_controls.kill_switch_commands()

    def on_key(self, event: events.Key) -> None:
        """Read-only: a key that would act is sent anyway, so the server's refusal says why. R with nothing to
        resume says so (its binding is not offered, so it would do nothing and say nothing)."""
        room = self.room
        on_main = isinstance(self.screen, MainScreen)
        if event.character == "R" and room.may_act and on_main and not self.intents.offered_now("resume_deploy"):
            event.stop()
            self.ui.say(why_no_resume(room), title="Nothing to resume", severity="warning", timeout=4)
            return
        op = INTENT_OF.get(event.character or "")
        if op is None or room.may_act or self.link.client is None or not on_main:
            return
        event.stop()
        self.ui.run(self.link.send(op), group="refused")

    # ------------------------------------------------------------------------------------------- the keys
    def action_deploy(self) -> None:
        self.intents.deploy()

    def action_proceed(self) -> None:
        if not self.failed_gate.proceed(self.intents.offered_now("proceed")):
            self.intents.proceed()

    def action_pause(self) -> None:
        self.intents.pause()

    def action_resume(self) -> None:
        self.intents.resume()

    def action_resume_deploy(self) -> None:
        self.intents.resume_deploy()

    def action_abort(self) -> None:
        self.intents.abort()

    def action_rollback(self) -> None:
        self.intents.rollback()

    def action_retry(self) -> None:
        self.intents.retry()

    def action_skip(self) -> None:
        self.intents.skip()

    def action_lock(self, _twin: int = 0) -> None:
        self.intents.lock()

    def action_unlock(self, _twin: int = 0) -> None:
        self.intents.unlock()

    def action_log_entry(self, _twin: int = 0) -> None:
        self.intents.log_entry()

    def action_quit(self, _twin: int = 0) -> None:
        self.intents.quit()

    def action_kill_switch(self, _twin: int = 0) -> None:
        """`k`, from anywhere: pick a kill switch (filtered as you type), then confirm."""
        self.flag_controls.kill_switch()

    def action_stage(self, _twin: int = 0) -> None:
        """`S`: run [release] stage in the server; its output streams into the stage view."""
        self.stager.stage()

    def action_search_diff(self) -> None:
        """`/`: search the staging diff (its tab first, on a small terminal)."""
        if self.screen is not self.main:
            return  # a dialog or a host's view is on top: `/` belongs to it
        if not self.main.has_class("-wide"):
            self.tabs.active = "tab-diff"
        self.staging_diff.action_search()

    def action_help(self) -> None:
        """`?`: keys, symbols and panes."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(help_keys()))

    def action_show_tab(self, tab: str) -> None:
        """A digit: focus that pane (its tab on small terminals); the same digit again fills the screen with it
        (a 20,000-line diff wants more than its corner); once more, or escape, puts it back."""
        self.main.show_pane(tab)

    def action_timeline(self) -> None:
        """`t`: the current (or latest) deploy on one time axis (on a timeline already: nothing more)."""
        if not isinstance(self.screen, TimelineScreen):
            self.open_timeline(self.board.rollout_id or None)

    def open_timeline(self, number: int | None) -> TimelineScreen:
        screen = TimelineScreen(self.records, number, output=self._read, current=lambda: self.board.rollout_id)
        self.push_screen(screen)
        return screen

    def action_history(self) -> None:
        """`H`: the record's history list; enter on a deploy opens its timeline."""
        if not isinstance(self.screen, HistoryScreen):
            self.push_screen(HistoryScreen(self._read, self.open_timeline))

    def action_open_host(self) -> None:
        host = self.host_grid.cursor_host
        if host:
            self.open_host(host)

    def open_host(self, host: str) -> HostScreen:
        """Show one host's live output, result and timings (asked of the server, then followed)."""
        if isinstance(self.screen, HostScreen) and self.screen.host == host:
            return self.screen
        screen = HostScreen(self.board, host, self.followed.record)
        self.followed.follow(host)
        self.push_screen(screen, callback=lambda _r, host=host: self.followed.unfollow(host))
        return screen

    # ------------------------------------------------------------------------------------------- the panes say
    @on(HostGrid.Opened)
    def _host_opened(self, message: HostGrid.Opened) -> None:
        self.open_host(message.host)

    @on(HostGrid.CursorMoved)
    def _cursor_moved(self, message: HostGrid.CursorMoved) -> None:
        self._refresh_bindings_if_changed()  # the host under the cursor decides whether retry and skip are offered

    @on(FlagsPane.Flip)
    def _flag_flip(self, message: FlagsPane.Flip) -> None:
        if type(message) is FlagsPane.Flip:  # Percent and History are Flips too: their own handlers below
            self.flag_controls.flip(message.flag)

    @on(FlagsPane.Percent)
    def _flag_percent(self, message: FlagsPane.Percent) -> None:
        self.flag_controls.percent(message.flag)

    @on(FlagsPane.History)
    def _flag_history(self, message: FlagsPane.History) -> None:
        self.flag_controls.history(message.flag)

    @on(FlagsPane.Verify)
    def _flags_verify(self, message: FlagsPane.Verify) -> None:
        self.flag_controls.verify()

    @on(StagingDiffPane.Stale)
    def _diff_stale(self, message: StagingDiffPane.Stale) -> None:
        self.diff.want()


def build_app(cfg: Config, *, read_only: bool = False, replay: tuple[int, float] | None = None) -> ControlRoom:
    """The one factory for the app: `controlroom`, `controlroom demo`, `controlroom replay` and the tests run what
    it returns."""
    return ControlRoom(cfg, read_only=read_only, replay=replay)


def run_app(cfg: Config, *, read_only: bool = False, replay: tuple[int, float] | None = None) -> int:
    """Run the control room full-screen until the operator quits; returns the exit status.

    The deploy runs in the server: quitting, or the terminal going away (SIGHUP), leaves it running."""
    # Textual sizes the screen with shutil.get_terminal_size, which believes COLUMNS/LINES over the terminal;
    # a shell that exported them at another size would pin the app to it and ignore every resize.
    # (Under textual-serve, `controlroom web`, COLUMNS is the browser's width as the web driver reads it: kept.)
    if "web_driver" not in os.environ.get("TEXTUAL_DRIVER", ""):
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)
    app = build_app(cfg, read_only=read_only, replay=replay)
    end_on_hangup(app)  # the terminal going away ends the app, writing nothing to it and never hanging
    app.run()
    return app.return_code or 0
