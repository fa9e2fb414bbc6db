"""The control room: one Textual app that composes the panes around the rollout engine and the journal.

The engine runs as a worker on the app's own event loop. Its events arrive as plain callbacks that only merge
state into the Board; a 15 Hz timer repaints what changed, so a storm of events costs one repaint. Widgets render
state and send intents (pause, abort, retry ...) back to the engine; they never open SSH themselves.

`build_app(cfg)` is the one way to make the app: `controlroom`, `controlroom demo` and the tests all use it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass

from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from controlroom import events as ev
from controlroom import release
from controlroom.config import Config
from controlroom.errors import ControlroomError, LockedError
from controlroom.journal import Journal, Lock, current_user
from controlroom.rollout import Rollout
from controlroom.ssh import SSHPool, raise_nofile_limit
from widgets.board import Board
from widgets.deploy_log import DeployLogPane, LockView, clock, entry_line
from widgets.dialogs import ConfirmDialog, HelpScreen, PromptDialog
from widgets.flags import FlagsPane
from widgets.host_detail import HostScreen
from widgets.host_grid import HostGrid
from widgets.metrics import MetricsPane
from widgets.rollout import RolloutPane
from widgets.staging_diff import StagingDiffPane

FLUSH_HZ = 15
JOURNAL_POLL = 2.0  # seconds between looks at the journal for other processes' entries and locks
WIDE = (120, 32)  # from this size on, every pane is on screen at once; below it the panes are tabs
TABS = ("tab-rollout", "tab-log", "tab-flags", "tab-diff", "tab-metrics")


@dataclass(frozen=True)
class Action:
    key: str
    action: str
    label: str
    help: str


# One table for the footer, the command palette and the help screen.
ACTIONS = (
    Action("d", "deploy", "Deploy", "Deploy the staged revision to the fleet, phase by phase"),
    Action(
        "g",
        "proceed",
        "Proceed",
        "Start the next phase (past a gate), or go on past an exceeded failure budget",
    ),
    Action("p", "pause", "Pause", "Start no new host; hosts in flight finish"),
    Action("p", "resume", "Resume", "Resume the paused rollout"),
    Action("a", "abort", "Abort", "Cancel the hosts in flight and skip the pending ones"),
    Action(
        "b", "rollback", "Roll back", "Put the previous revision back on every done host, latest phase first"
    ),
    Action("r", "retry", "Retry", "Run the selected failed host again"),
    Action("s", "skip", "Skip", "Give up on the selected host in this rollout (counts against the budget)"),
    Action("enter", "open_host", "Open host", "Show the selected host's live output, result and timings"),
    Action("l", "lock", "Lock", "Lock the fleet with a message: NO DEPLOY PLEASE"),
    Action("u", "unlock", "Unlock", "Release the fleet lock"),
    Action("m", "log_entry", "Log entry", "Add an entry to the deploy log"),
    Action("question_mark", "help", "Help", "Keys, host symbols and what each pane is for"),
)
_KEY_NAMES = {"question_mark": "?", "enter": "enter"}
# In the footer only while no rollout runs (an 80-column footer has room for the rollout's own actions only);
# their keys work all the time through a hidden twin binding with the argument 1.
SECONDARY = ("lock", "unlock", "log_entry", "quit")


def _bindings() -> list[Binding]:
    out = []
    for a in (*ACTIONS, Action("q", "quit", "Quit", "Quit the control room")):
        if a.action in SECONDARY:
            out.append(Binding(a.key, f"{a.action}(0)", a.label, tooltip=a.help))
            out.append(Binding(a.key, f"{a.action}(1)", a.label, show=False))
        else:
            out.append(Binding(a.key, a.action, a.label, tooltip=a.help, show=a.action != "open_host"))
    out += [
        Binding(str(i + 1), f"show_tab('{t}')", f"Show pane {i + 1}", show=False) for i, t in enumerate(TABS)
    ]
    return out


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
                yield FlagsPane(id="flags", classes="pane placeholder")
            with TabPane("Staging diff", id="tab-diff"):
                yield StagingDiffPane(id="staging-diff", classes="pane placeholder")
            with TabPane("Metrics", id="tab-metrics"):
                yield MetricsPane(id="metrics", classes="pane placeholder")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(HostGrid).focus()
        self.call_after_refresh(self.apply_layout)

    def on_resize(self, event: events.Resize) -> None:
        self.apply_layout()

    def apply_layout(self) -> None:
        """Wide: every pane in a grid (the tab bar hidden). Narrow: the active tab only."""
        w, h = self.size
        wide = w >= WIDE[0] and h >= WIDE[1]
        tabs = self.query_one(TabbedContent)
        self.set_class(wide, "-wide")
        self.set_class(not wide, "-narrow")
        for pane in tabs.query(TabPane):
            pane.display = wide or pane.id == tabs.active

    @on(TabbedContent.TabActivated)
    def _tab_activated(self) -> None:
        if self.has_class("-wide"):  # keep every pane on screen even if a tab was switched by the keyboard
            self.apply_layout()


class ControlRoom(App[int]):
    """The control room on one fleet. Build it with `build_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "controlroom"
    BINDINGS = _bindings()

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
        self._main: MainScreen | None = None
        self._lock: Lock | None = None
        self._offered: tuple[bool, ...] = ()
        self.startup_warning: str | None = None

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
    def log_lines(self) -> list[str]:
        return self.deploy_log.lines

    # ------------------------------------------------------------------------------------------- lifecycle
    def get_default_screen(self) -> Screen:
        self._main = MainScreen(id="main")
        return self._main

    def on_mount(self) -> None:
        self.sub_title = str(self.cfg.path)
        self.journal.subscribe(self._on_journal_event)
        if self.startup_warning:
            self.notify(self.startup_warning, severity="warning", timeout=10)
        self.set_interval(1 / FLUSH_HZ, self.flush)
        self.set_interval(1.0, self._tick)
        self.set_interval(JOURNAL_POLL, self._poll_journal)
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
            self.notify(str(e), title="No staged revision", severity="error", timeout=10)
        try:
            self.live = await self._fleet_revision()
        except ControlroomError as e:
            self.notify(str(e), title="Live revision unknown", severity="warning")
        if self.board.status is None:
            self.board.revision, self.board.previous = self.staged, self.live
            self.board.dirty = True
        self.revisions_loaded.set()

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
                    [entry_line(e.at, e.user, e.kind, e.text, e.revision) for e in new]
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

    def _poll_journal(self) -> None:
        """Teammates write to the same journal from other processes (`controlroom lock`, `log add`): look."""
        latest = self.journal.log(1)
        if latest and latest[-1].id > self._last_log_id:
            self._log_dirty = True
        if self.journal.lock() != self._lock:
            self._lock_dirty = True

    def _tick(self) -> None:
        if self.board.active and self._main is not None and self._main.is_mounted:
            self.rollout_pane.tick()

    def _lock_view(self) -> LockView | None:
        lock = self._lock
        if lock is None:
            return None
        return LockView(lock.user, lock.at, lock.reason, lock.rollout_id, None, lock.stale)

    # ------------------------------------------------------------------------------------------- actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer only what makes sense now: the footer and the palette follow the rollout's state."""
        board = self.board
        if action in SECONDARY and parameters == (0,) and board.active:
            return False
        if action in ("quit", "help", "command_palette", "show_tab", "log_entry", "lock"):
            return True
        r = self.rollout
        status = board.status
        if action == "deploy":
            return not board.active and not self.rolling_back
        if action == "unlock":
            lock = self._lock  # as of the last LockChanged: check_action runs often, SQLite need not
            return lock is not None and not lock.live
        if action == "open_host":
            return bool(board.order)
        if r is None:
            return False
        if action == "proceed":
            # a gate stays open while paused (proceeding then starts the phase with no host running)
            return board.active and (board.gate is not None or status == ev.R_HALTED)
        if action == "pause":
            return status in (ev.R_RUNNING, ev.R_WAITING, ev.R_HALTED)
        if action == "resume":
            return status == ev.R_PAUSED
        if action == "abort":
            return board.active
        if action == "rollback":
            return bool(self.cfg.deploy.rollback) and not self.rolling_back and board.count(ev.DONE) > 0
        host = self.selected_host
        hv = board.hosts.get(host) if host else None
        if action == "retry":
            if hv is not None and not board.active and status == ev.R_FAILED and not self.rolling_back:
                return hv.state == ev.FAILED  # the rollout ended with this host failed: run it again
            return (
                board.active
                and hv is not None
                and hv.state in (ev.FAILED, ev.SKIPPED)
                and hv.phase == board.phase_index
            )
        if action == "skip":
            return board.active and hv is not None and hv.state in (ev.PENDING, ev.FAILED)
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for a in ACTIONS:
            if self.check_action(a.action, ()):
                key = _KEY_NAMES.get(a.key, a.key)
                yield SystemCommand(f"{a.label} ({key})", a.help, getattr(self, f"action_{a.action}"))
        yield from super().get_system_commands(screen)

    def help_keys(self) -> list[tuple[str, str]]:
        keys = [(_KEY_NAMES.get(a.key, a.key), f"{a.label}: {a.help}") for a in ACTIONS]
        keys += [
            ("arrows", "Move the cursor in the host grid"),
            ("tab", "Move between panes"),
            ("1-5", "Show a pane when the panes are tabs (small terminals)"),
            ("ctrl+p", "Command palette: every action by name"),
            ("q", "Quit"),
        ]
        return keys

    def action_help(self) -> None:
        """`?`: keys, symbols and panes."""
        self.push_screen(HelpScreen(self.help_keys()))

    def action_show_tab(self, tab: str) -> None:
        if not self.main.has_class("-wide"):
            self.tabs.active = tab

    def open_host(self, host: str) -> HostScreen:
        """Show one host's live output, result and timings."""
        screen = HostScreen(self.board, host, self._engine_host)
        self.push_screen(screen)
        return screen

    def _engine_host(self, host: str):
        return self.rollout.hosts.get(host) if self.rollout is not None else None

    @on(HostGrid.Opened)
    def _grid_opened(self, message: HostGrid.Opened) -> None:
        self.open_host(message.host)

    def action_open_host(self) -> None:
        host = self.host_grid.cursor_host
        if host:
            self.open_host(host)

    @on(HostGrid.CursorMoved)
    def _cursor_moved(self) -> None:
        self._refresh_bindings_if_changed()  # the host under the cursor decides whether retry and skip are offered

    # deploy ----------------------------------------------------------------------------------------
    @work(group="dialogs")
    async def action_deploy(self) -> None:
        if self.board.active:
            self.notify("a rollout is already running", severity="warning")
            return
        if self.staged is None:
            await self.revisions_loaded.wait()
        if self.staged is None:
            self.notify(
                "there is no staged revision to deploy (see [release] in the config)", severity="error"
            )
            return
        lock = self.journal.lock()
        if lock is not None and not lock.stale:
            if lock.live:
                self.notify(f"the fleet is locked by {lock.describe()}", title="Locked", severity="error")
                return
            body = (
                f"The fleet is locked: NO DEPLOY PLEASE — {lock.user}, {clock(lock.at)}: {lock.reason}\n\n"
                f"Deploying {self.staged} anyway goes past their lock. Your name and your reason go into the "
                "deploy log."
            )
            reason = await self.push_screen_wait(
                ConfirmDialog(
                    "Deploy past the lock?",
                    body,
                    "Deploy anyway",
                    reason="why deploy past the lock (goes into the deploy log)",
                )
            )
            if not reason:
                return
            self.start_rollout(force_reason=reason)
            return
        self.start_rollout()

    def start_rollout(self, *, force_reason: str | None = None) -> Rollout:
        """Ship the staged revision: the engine runs as a worker on this loop."""
        r = Rollout(
            self.cfg,
            self.pool,
            self.journal,
            revision=self.staged or "",
            user=self.user,
            confirm="config",
            force_reason=force_reason,
        )
        r.subscribe(self._on_engine_event)
        self.rollout = r
        self.rolling_back = False
        self.run_worker(self._drive(r.run()), name="rollout", group="engine", exit_on_error=False)
        return r

    async def _drive(self, coro) -> None:
        try:
            fin = await coro
        except LockedError as e:
            self.notify(str(e), title="Locked", severity="error", timeout=10)
            return
        except ControlroomError as e:
            self.notify(str(e), title="Rollout stopped", severity="error", timeout=10)
            return
        except Exception as e:  # noqa: BLE001 - shown, not swallowed: the journal has what happened
            self.notify(
                f"{type(e).__name__}: {e}",
                title="Rollout stopped: internal error",
                severity="error",
                timeout=30,
            )
            raise
        finally:
            self.rolling_back = False
            self.board.dirty = True
        sev = "information" if fin.status in (ev.R_DONE, ev.R_ROLLED_BACK) else "warning"
        self.notify(
            f"{fin.done} done, {fin.failed} failed, {fin.skipped} skipped",
            severity=sev,
            title=f"Rollout of {fin.revision}: {fin.status.replace('_', ' ')}",
        )

    # gates, pause ------------------------------------------------------------------------------------
    @work(group="dialogs")
    async def action_proceed(self) -> None:
        r, board = self.rollout, self.board
        if r is None:
            return
        if board.status == ev.R_HALTED and board.halted is not None:
            h = board.halted
            phase = board.phases[h.phase]
            failed = board.hosts_in(ev.FAILED)
            names = ", ".join(n for n in failed if board.hosts[n].phase == h.phase)
            body = (
                f"Go on with {h.name} past its failure budget: {len(h.failed)} hosts failed ({names}) and the "
                f"budget is {phase.max_failed}. The failed hosts stay failed; the phase's pending hosts start "
                "and the next phases follow."
            )
            if not await self.push_screen_wait(
                ConfirmDialog("Proceed past the failure budget?", body, "Proceed")
            ):
                return
        r.proceed(self.user)

    def action_pause(self) -> None:
        if self.rollout is not None:
            self.rollout.pause(self.user)

    def action_resume(self) -> None:
        if self.rollout is not None:
            self.rollout.resume(self.user)

    # destructive -------------------------------------------------------------------------------------
    def _in_flight_and_pending(self) -> tuple[int, int]:
        return self.board.count(*ev.IN_FLIGHT), self.board.count(ev.PENDING)

    @work(group="dialogs")
    async def action_abort(self) -> None:
        r = self.rollout
        if r is None or not self.board.active:
            return
        flying, pending = self._in_flight_and_pending()
        body = (
            f"Abort the rollout of {r.revision}: {flying} host{'s' if flying != 1 else ''} in flight "
            f"{'are' if flying != 1 else 'is'} cancelled and {pending} pending host{'s' if pending != 1 else ''} "
            f"{'are' if pending != 1 else 'is'} skipped. The {self.board.count(ev.DONE)} done hosts stay on "
            f"{r.revision} (b rolls them back)."
        )
        if await self.push_screen_wait(ConfirmDialog("Abort the rollout?", body, "Abort rollout")):
            r.abort(self.user)

    @work(group="dialogs")
    async def action_rollback(self) -> None:
        r = self.rollout
        if r is None:
            return
        done = self.board.count(ev.DONE)
        body = (
            f"Roll back {r.revision} on {done} done host{'s' if done != 1 else ''}, latest phase first: each "
            f"runs the rollback steps and goes back to its previous revision ({r.previous or 'as recorded'})."
        )
        if self.board.active:
            flying, pending = self._in_flight_and_pending()
            body += (
                f"\n\nThe rollout is aborted first: {flying} hosts in flight are cancelled and {pending} "
                "pending hosts are skipped."
            )
        if not await self.push_screen_wait(ConfirmDialog("Roll back?", body, "Roll back")):
            return
        self.rolling_back = True
        self.refresh_bindings()
        self.run_worker(
            self._drive(r.rollback(self.user)), name="rollback", group="engine", exit_on_error=False
        )

    def action_retry(self) -> None:
        host = self.selected_host
        if self.rollout is None or host is None:
            return
        r = self.rollout
        if not self.board.active and r.status == ev.R_FAILED:
            # the rollout is over, within budget, with this host failed: the same rollout runs it again
            self.run_worker(self._drive(r.rerun([host], self.user)), name="rollout", group="engine",
                            exit_on_error=False)
            return
        try:
            r.retry(host, self.user)
        except ControlroomError as e:
            self.notify(str(e), severity="warning")

    @work(group="dialogs")
    async def action_skip(self) -> None:
        r, board = self.rollout, self.board
        host = self.selected_host
        if r is None or host is None or host not in board.hosts:
            return
        hv = board.hosts[host]
        phase = board.phases[hv.phase]
        used = r.budget_used(hv.phase)
        if hv.state == ev.PENDING:
            used += 1
        body = (
            f"Skip {host} in {phase.name}: it is not deployed in this rollout and stays on "
            f"{hv.revision or r.previous or 'its current revision'}. It counts against {phase.name}'s failure "
            f"budget ({used} used of {phase.max_failed} allowed) and the skip goes into the deploy log."
        )
        if not await self.push_screen_wait(ConfirmDialog(f"Skip {host}?", body, "Skip host")):
            return
        try:
            r.skip(host, self.user)
        except ControlroomError as e:
            self.notify(str(e), severity="warning")

    # lock and log ------------------------------------------------------------------------------------
    @work(group="dialogs")
    async def action_lock(self, _twin: int = 0) -> None:
        lock = self.journal.lock()
        takeover = False
        if lock is not None and lock.live:
            self.notify(f"a running deploy holds the lock: {lock.describe()}", severity="warning")
            return
        if lock is not None and not lock.stale and lock.user != self.user:
            body = (
                f"{lock.user} locked the fleet at {clock(lock.at)}: {lock.reason}\n\n"
                "Taking the lock over replaces their message with yours; the deploy log records it."
            )
            if not await self.push_screen_wait(ConfirmDialog("Take over the lock?", body, "Take over")):
                return
            takeover = True
        text = await self.push_screen_wait(
            PromptDialog(
                "Lock the fleet",
                "No deploy starts while the fleet is locked. Say why:",
                placeholder="NO DEPLOY PLEASE: db migration until 14:00",
                value=lock.reason if lock is not None and lock.user == self.user else "",
            )
        )
        if not text:
            return
        try:
            self.journal.take_lock(self.user, text, takeover=takeover)
        except LockedError as e:
            self.notify(str(e), severity="error")

    @work(group="dialogs")
    async def action_unlock(self, _twin: int = 0) -> None:
        lock = self.journal.lock()
        if lock is None:
            self.notify("the fleet is not locked")
            return
        if lock.user != self.user and not lock.stale:
            body = f"Release the lock {lock.user} took at {clock(lock.at)}: {lock.reason}"
            if not await self.push_screen_wait(ConfirmDialog(f"Release {lock.user}'s lock?", body, "Unlock")):
                return
        try:
            self.journal.release_lock(self.user)
        except LockedError as e:
            self.notify(str(e), severity="error")

    @work(group="dialogs")
    async def action_log_entry(self, _twin: int = 0) -> None:
        text = await self.push_screen_wait(
            PromptDialog(
                "Add to the deploy log",
                "Who? When? What? Your name and the time are added.",
                placeholder="e.g. watching the error rate after r2307",
            )
        )
        if text:
            self.journal.add_log(self.user, "NOTE", text, self.board.revision if self.board.active else None)

    @work(group="dialogs")
    async def action_quit(self, _twin: int = 0) -> None:
        if self.board.active:
            flying, _ = self._in_flight_and_pending()
            body = (
                f"Quit while the rollout of {self.board.revision} runs: it stops where it is and "
                f"{flying} hosts in flight are cancelled. `controlroom deploy --resume` carries on later."
            )
            if not await self.push_screen_wait(ConfirmDialog("Quit during a rollout?", body, "Quit")):
                return
        self.exit(0)


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
