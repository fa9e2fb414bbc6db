"""The control room: one Textual app that composes the panes around the rollout engine and the journal.

The engine runs as a worker on the app's own event loop. Its events arrive as plain callbacks that only merge
state into the Board; a 15 Hz timer repaints what changed, so a storm of events costs one repaint. Widgets render
state and send intents (pause, abort, retry ...) back to the engine; they never open SSH themselves.

`build_app(cfg)` is the one way to make the app: `controlroom`, `controlroom demo` and the tests all use it.
"""

from __future__ import annotations

import asyncio
import os

from textual.app import App
from textual.screen import Screen
from textual.widgets import TabbedContent
from textual.worker import Worker

from controlroom import events as ev
from controlroom import release
from controlroom.app_actions import Controller
from controlroom.app_keys import ACTIONS, bindings
from controlroom.app_screens import TABS, MainScreen
from controlroom.board import Board
from controlroom.config import Config
from controlroom.errors import ControlroomError
from controlroom.journal import Journal, Lock, current_user
from controlroom.rollout import Rollout
from controlroom.ssh import SSHPool, raise_nofile_limit
from controlroom.text import clean
from widgets.deploy_log import DeployLogPane, LockView, entry_line
from widgets.host_detail import HostScreen
from widgets.host_grid import HostGrid
from widgets.rollout import RolloutPane


class ControlRoom(Controller, App[int]):
    """The control room on one fleet. Build it with `build_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "controlroom"
    BINDINGS = bindings(TABS)

    def __init__(
        self,
        cfg: Config,
        *,
        user: str | None = None,
        journal: Journal | None = None,
        pool: SSHPool | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.user = user or current_user()
        self.board = Board()
        self.board.plan([(p.name, p.hosts, p.max_failed, p.auto) for p in cfg.phases])
        self._journal = journal
        self._own_journal = journal is None
        self._pool = pool
        self._own_pool = pool is None
        self.rollout: Rollout | None = None
        self.staged: str | None = None  # the revision a deploy ships
        self.live: str | None = None  # what the fleet runs now
        self.revisions_loaded = asyncio.Event()
        self.rolling_back = False
        self.last_finished: ev.RolloutFinished | None = None
        self._log_dirty = True
        self._last_log_id = 0
        self._lock_dirty = True
        self._jump_to: str | None = None
        self._closing = False
        self._flows: dict[str, Worker] = {}  # the flow under way per action (Controller._once)
        self._proceeded: object = None  # the gate or halt the operator already said go to
        self._main: MainScreen | None = None
        self._lock: Lock | None = None
        self._offered: tuple[bool, ...] = ()
        self.startup_warning: str | None = None
        self.halted_elsewhere: int | None = None  # the id of a deploy that stopped without finishing, shown halted

    # ------------------------------------------------------------------------------------------- queries
    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal.open(self.cfg.state.dir)
        return self._journal

    @property
    def pool(self) -> SSHPool:
        if self._pool is None:
            self._pool = SSHPool(self.cfg.ssh, self.cfg.hosts)
        return self._pool

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
        self.journal.subscribe(self._on_journal_event)
        if self.startup_warning:
            self._say(self.startup_warning, severity="warning", timeout=10)
        self.run_worker(self._load_revisions(), name="revisions", group="revisions")

    async def on_unmount(self) -> None:
        self._closing = True
        if self._own_pool and self._pool is not None:
            await self._pool.close()
        if self._own_journal and self._journal is not None:
            self._journal.close()

    async def _load_revisions(self) -> None:
        try:
            self.staged = await asyncio.to_thread(release.staged_revision, self.cfg)
        except ControlroomError as e:
            self._say(str(e), title="No staged revision", severity="error", timeout=10)
        try:
            self.live = await self._fleet_revision()
        except ControlroomError as e:
            self._say(str(e), title="Live revision unknown", severity="warning")
        self._adopt_halted()
        if self.board.status is None:
            self.board.revision, self.board.previous = self.staged, self.live
            self.board.dirty = True
        self.revisions_loaded.set()

    def _adopt_halted(self) -> None:
        """The last deploy stopped without finishing (halted, interrupted, its process gone): show it as it is,
        halted, and offer resume (R) and rollback (b). One that runs in another process is only named."""
        try:
            rec = self.journal.rollout()
            if rec is None or rec.status in ev.ROLLOUT_FINAL or self.rollout is not None:
                return
            lock = self.journal.lock()
            if lock is not None and lock.rollout_id == rec.id and lock.live:
                self._say(f"deploy #{rec.id} of {rec.revision} runs in another process: {lock.describe()}",
                          title="Deploy running elsewhere", severity="warning", timeout=15)
                return
            r = Rollout.load(self.cfg, self.pool, self.journal, user=self.user, confirm="config")
        except ControlroomError as e:
            self._say(str(e), title="The last deploy cannot be shown", severity="warning", timeout=15)
            return
        r.subscribe(self._on_engine_event)
        self.rollout = r
        self.halted_elsewhere = rec.id
        board = self.board
        phases = tuple((ph.name, ph.hosts) for ph in r.phases)
        board.apply(ev.RolloutStarted(rec.id, revision=rec.revision, previous=rec.previous, user=rec.user,
                                      phases=phases, at=rec.started_at))
        for hr in r.hosts.values():
            board.apply(ev.HostStateChanged(rec.id, host=hr.name, phase=hr.phase, state=hr.state, step=hr.step,
                                            steps=hr.steps, reason=hr.reason, revision=hr.revision,
                                            previous=hr.previous, steps_done=hr.steps_done))
        i = min(r.phase_index, len(r.phases) - 1)
        failed = tuple(h.name for h in r.hosts.values() if h.state == ev.FAILED)
        board.apply(ev.PhaseHalted(rec.id, phase=i, name=r.phases[i].name, failed=failed,
                                   max_failed=r.phases[i].max_failed))
        board.phase_index = i
        self._say(f"deploy #{rec.id} of {rec.revision} by {rec.user} stopped in {r.phases[i].name} "
                  f"({rec.status}): R resumes it, b rolls it back",
                  title="A deploy is halted", severity="warning", timeout=20)

    async def _fleet_revision(self) -> str | None:
        """What the fleet runs: the journal's record, else the answer of the first host."""
        values = [live for live, _ in self.journal.live_revisions().values() if live]
        if values:
            return max(set(values), key=values.count)
        if not self.cfg.phases or not self.cfg.phases[0].hosts:
            return None
        res = await self.pool.run(
            self.cfg.phases[0].hosts[0], self.cfg.release.live_command, timeout=self.cfg.deploy.step_timeout
        )
        last = res.stdout.strip().rsplit("\n", 1)[-1].strip() if res.ok and res.stdout.strip() else ""
        return last if last and last != "none" else None

    # ------------------------------------------------------------------------------------------- events in
    def _on_engine_event(self, e: ev.Event) -> None:
        """Every engine event, on this loop, after the journal committed it: merge, never paint here."""
        self.board.apply(e)
        kind = type(e)
        if kind is ev.HostOutput or kind is ev.HostStateChanged:  # the hot path: nothing more to do
            return
        if kind is ev.PhaseHalted and e.failed:
            self._jump_to = e.failed[0]
        elif kind is ev.RolloutFinished:
            self.last_finished = e
            if e.status == ev.R_DONE:
                self.live = e.revision

    def _on_journal_event(self, e: ev.Event) -> None:
        """The journal's own news: log entries and the lock (rollout events come through the engine).

        The entries themselves are read back from the journal at the next flush: it holds entries that were
        committed together with a lock change and never published on their own (LOCK, UNLOCK, FORCE).
        """
        if isinstance(e, ev.LogEntryAdded):
            self._log_dirty = True
        elif isinstance(e, ev.LockChanged):
            self._lock_dirty = self._log_dirty = True

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
        if self.rollout is not None and board.status is not None:
            self._sync_status()
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
            new = [e for e in self.journal.log(500) if e.id > self._last_log_id]
            if new:
                self._last_log_id = new[-1].id
                main.query_one(DeployLogPane).write_entries(
                    [entry_line(e.at, e.user, e.kind, e.text, e.revision) for e in new]  # cleaned there
                )
        if self._lock_dirty:
            self._lock_dirty = False
            self._lock = self.journal.lock()
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

    def _sync_status(self) -> None:
        """The engine's own status is the truth for what it waits on (the events say why)."""
        board, r = self.board, self.rollout
        status = r.status
        if status not in (*ev.ROLLOUT_FINAL, ev.R_RUNNING, ev.R_PAUSED, ev.R_HALTED, ev.R_WAITING):
            return
        if board.status in ev.ROLLOUT_FINAL and status not in ev.ROLLOUT_FINAL:
            return  # a rollback in flight reports through its events
        if status != board.status or (status != ev.R_HALTED and board.halted is not None):
            board.status = status
            if status != ev.R_HALTED:
                board.halted = None
            board.dirty = True
        if r.phase_index != board.phase_index and status not in ev.ROLLOUT_FINAL:
            board.phase_index = r.phase_index
            board.dirty = True

    def poll_journal(self) -> None:
        """Teammates write to the same journal from other processes (`controlroom lock`, `log add`): look."""
        latest = self.journal.log(1)
        if latest and latest[-1].id > self._last_log_id:
            self._log_dirty = True
        if self.journal.lock() != self._lock:
            self._lock_dirty = True

    def _lock_view(self) -> LockView | None:
        lock = self._lock
        if lock is None:
            return None
        return LockView(clean(lock.user, 64), lock.at, clean(lock.reason), lock.rollout_id, None, lock.stale)


def build_app(
    cfg: Config, *, user: str | None = None, journal: Journal | None = None, pool: SSHPool | None = None
) -> ControlRoom:
    """The one factory for the app: `controlroom`, `controlroom demo` and the tests run what it returns."""
    return ControlRoom(cfg, user=user, journal=journal, pool=pool)


def run_app(cfg: Config) -> int:
    """Run the control room full-screen until the operator quits; returns the exit status."""
    warning = raise_nofile_limit(len(cfg.hosts))
    # Textual sizes the screen with shutil.get_terminal_size, which believes COLUMNS/LINES over the terminal;
    # a shell that exported them at another size would pin the app to it and ignore every resize.
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)
    app = build_app(cfg)
    app.startup_warning = warning
    app.run()
    return app.return_code or 0
