"""The operator's intents: what each key does, when it is offered, and the dialogs that ask before it happens.

Every action acts once. A dialog flow runs as a worker of its own group (`@work(exclusive=True, group=...)`) behind a
synchronous guard (`_once`): a second press while the first is still asking, or still starting, does nothing. The
engine runs in the "engine" worker group, and nothing starts a second run while one is under way, so two quick `d`
presses make one Rollout. Text that people or hosts wrote (lock reasons, host names, errors) is cleaned and never
read as markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual import work
from textual.app import SystemCommand
from textual.screen import Screen
from textual.worker import Worker

from controlroom import events as ev
from controlroom.app_keys import _KEY_NAMES, ACTIONS, SECONDARY
from controlroom.errors import ControlroomError, LockedError
from controlroom.journal import abandons
from controlroom.rollout import Rollout
from controlroom.text import clean
from widgets.deploy_log import clock
from widgets.dialogs import ConfirmDialog, HelpScreen, PromptDialog
from widgets.host_detail import HostScreen
from widgets.host_grid import HostGrid


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


class Controller:
    """The intents of the ControlRoom app (mixed into it): actions, their guards and their dialogs."""

    # ------------------------------------------------------------------------------------------- guards
    def _once(self, flow: str, start: Callable[[], Worker]) -> Worker | None:
        """Start the worker of ``flow`` unless one is still under way (a dialog open, a rollout starting)."""
        w = self._flows.get(flow)
        if w is not None and not w.is_finished:
            return None
        self._flows[flow] = w = start()
        return w

    @property
    def engine_busy(self) -> bool:
        """A rollout, rerun or rollback is running on this loop (or was just started and has not said so yet)."""
        return any(w.group == "engine" and not w.is_finished for w in self.workers)

    def _run_engine(self, coro, name: str) -> Worker:
        return self.run_worker(self._drive(coro), name=name, group="engine", exit_on_error=False)

    def _say(self, message: str, **kw) -> None:
        """A notification whose text may hold what people or hosts wrote: cleaned, never markup."""
        if "title" in kw:
            kw["title"] = clean(kw["title"])
        self.notify(clean(message), markup=False, **kw)

    # ------------------------------------------------------------------------------------------- offered
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
            return not board.active and not self.rolling_back and not self.engine_busy
        if action == "unlock":
            lock = self._lock  # as of the last LockChanged: check_action runs often, SQLite need not
            return lock is not None and not lock.live
        if action == "open_host":
            return bool(board.order)
        if r is None:
            return False
        if self.halted_elsewhere is not None:
            # nothing drives this deploy in this process: resume it or roll it back, nothing else
            if action == "resume_deploy":
                return not self.engine_busy
            if action != "rollback":
                return False
        elif action == "resume_deploy":
            return False
        if action == "proceed":
            # a gate stays open while paused (proceeding then starts the phase with no host running)
            return board.active and (board.gate is not None or status == ev.R_HALTED)
        if action == "pause":
            return status in (ev.R_RUNNING, ev.R_WAITING, ev.R_HALTED) and not r.status == ev.R_PAUSED
        if action == "resume":
            return status == ev.R_PAUSED
        if action == "abort":
            return board.active
        if action == "rollback":
            return (bool(self.cfg.deploy.rollback) and not self.rolling_back
                    and board.count(ev.DONE, ev.FAILED, *ev.IN_FLIGHT) > 0)
        host = self.selected_host
        hv = board.hosts.get(host) if host else None
        if action == "retry":
            if hv is not None and not board.active and status == ev.R_FAILED and not self.rolling_back:
                # the rollout ended: run this host again
                return hv.state == ev.FAILED and not self.engine_busy
            return (
                board.active
                and hv is not None
                and hv.state in (ev.FAILED, ev.SKIPPED)
                and hv.phase == board.phase_index
            )
        if action == "skip":
            return board.active and hv is not None and hv.state in (ev.PENDING, ev.FAILED)
        return True

    def _offered_now(self, action: str) -> bool:
        # the palette runs its command later than it listed it: ask again
        return bool(self.check_action(action, ()))

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
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_keys()))

    def action_show_tab(self, tab: str) -> None:
        if not self.main.has_class("-wide"):
            self.tabs.active = tab

    # ------------------------------------------------------------------------------------------- hosts
    def open_host(self, host: str) -> HostScreen:
        """Show one host's live output, result and timings."""
        if isinstance(self.screen, HostScreen) and self.screen.host == host:
            return self.screen
        screen = HostScreen(self.board, host, self._engine_host)
        self.push_screen(screen)
        return screen

    def _engine_host(self, host: str):
        return self.rollout.hosts.get(host) if self.rollout is not None else None

    # handlers by name, not @on: the decorator registers only in classes built by Textual's metaclass
    def on_host_grid_opened(self, message: HostGrid.Opened) -> None:
        self.open_host(message.host)

    def action_open_host(self) -> None:
        host = self.host_grid.cursor_host
        if host:
            self.open_host(host)

    def on_host_grid_cursor_moved(self, message: HostGrid.CursorMoved) -> None:
        self._refresh_bindings_if_changed()  # the host under the cursor decides whether retry and skip are offered

    # ------------------------------------------------------------------------------------------- deploy
    def action_deploy(self) -> None:
        if self.board.active or self.engine_busy:
            self._say("a rollout is already running", severity="warning")
            return
        self._once("deploy", self._deploy_flow)

    @work(exclusive=True, group="deploy", exit_on_error=False)
    async def _deploy_flow(self) -> None:
        if self.staged is None:
            await self.revisions_loaded.wait()
        if self.staged is None:
            self._say("there is no staged revision to deploy (see [release] in the config)", severity="error")
            return
        lock = self.journal.lock()
        force_reason = None
        if lock is not None and not lock.stale:
            if lock.live:
                self._say(f"the fleet is locked by {lock.describe()}", title="Locked", severity="error")
                return
            body = (
                f"The fleet is locked: NO DEPLOY PLEASE — {lock.user}, {clock(lock.at)}: {clean(lock.reason)}\n\n"
                f"Deploying {self.staged} anyway goes past their lock. Your name and your reason go into the "
                "deploy log."
            )
            force_reason = await self.push_screen_wait(
                ConfirmDialog(
                    "Deploy past the lock?",
                    body,
                    "Deploy anyway",
                    reason="why deploy past the lock (goes into the deploy log)",
                )
            )
            if not force_reason:
                return
        if self.board.active or self.engine_busy:  # something started while we asked
            return
        self.start_rollout(force_reason=force_reason)

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
        self._proceeded = None
        self._run_engine(r.run(), "rollout")
        self._refresh_bindings_if_changed()
        return r

    async def _drive(self, coro) -> None:
        try:
            fin = await coro
        except LockedError as e:
            self._say(str(e), title="Locked", severity="error", timeout=10)
            return
        except ControlroomError as e:
            self._say(str(e), title="Rollout stopped", severity="error", timeout=10)
            return
        except Exception as e:  # noqa: BLE001 - shown, not swallowed: the journal has what happened
            self._say(
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
        self._say(
            f"{fin.done} done, {fin.failed} failed, {fin.skipped} skipped",
            severity=sev,
            title=f"Rollout of {fin.revision}: {fin.status.replace('_', ' ')}",
        )

    # ------------------------------------------------------------------------------------------- gates, pause
    def action_proceed(self) -> None:
        board = self.board
        # one decision per gate or halt: a second g before the engine moved on must not pass the next gate too
        target = board.halted if board.status == ev.R_HALTED else board.gate
        if target is None or target is self._proceeded or not self._offered_now("proceed"):
            return
        self._once("proceed", self._proceed_flow)

    @work(exclusive=True, group="proceed", exit_on_error=False)
    async def _proceed_flow(self) -> None:
        r, board = self.rollout, self.board
        if r is None:
            return
        target = board.halted if board.status == ev.R_HALTED else board.gate
        if board.status == ev.R_HALTED and board.halted is not None:
            h = board.halted
            phase = board.phases[h.phase]
            names = ", ".join(n for n in board.hosts_in(ev.FAILED) if board.hosts[n].phase == h.phase)
            body = (
                f"Go on with {h.name} past its failure budget: {len(h.failed)} hosts failed ({names}) and the "
                f"budget is {phase.max_failed}. The failed hosts stay failed; the phase's pending hosts start "
                "and the next phases follow."
            )
            if not await self.push_screen_wait(
                ConfirmDialog("Proceed past the failure budget?", body, "Proceed")
            ):
                return
            if board.halted is not target:  # the halt was resolved while we asked
                return
        self._proceeded = target
        r.proceed(self.user)

    def action_pause(self) -> None:
        r = self.rollout
        if r is not None and r.status != ev.R_PAUSED and self._offered_now("pause"):
            r.pause(self.user)
            self._refresh_bindings_if_changed()

    def action_resume(self) -> None:
        r = self.rollout
        if r is not None and r.status == ev.R_PAUSED and self._offered_now("resume"):
            r.resume(self.user)
            self._refresh_bindings_if_changed()

    # ------------------------------------------------------------------------------------------- destructive
    def _in_flight_and_pending(self) -> tuple[int, int]:
        return self.board.count(*ev.IN_FLIGHT), self.board.count(ev.PENDING)

    def action_abort(self) -> None:
        if self._offered_now("abort"):
            self._once("abort", self._abort_flow)

    @work(exclusive=True, group="abort", exit_on_error=False)
    async def _abort_flow(self) -> None:
        r = self.rollout
        if r is None or not self.board.active:
            return
        flying, pending = self._in_flight_and_pending()
        body = (
            f"Abort the rollout of {r.revision}: {flying} host{_plural(flying, '', 's')} in flight "
            f"{_plural(flying, 'is', 'are')} cancelled and {pending} pending host{_plural(pending, '', 's')} "
            f"{_plural(pending, 'is', 'are')} skipped. The {self.board.count(ev.DONE)} done hosts stay on "
            f"{r.revision} (b rolls them back)."
        )
        if await self.push_screen_wait(ConfirmDialog("Abort the rollout?", body, "Abort rollout")):
            if self.board.active and r is self.rollout:
                r.abort(self.user)

    def action_resume_deploy(self) -> None:
        r = self.rollout
        if r is None or not self._offered_now("resume_deploy"):
            return
        self.halted_elsewhere = None
        self._proceeded = None
        self._run_engine(r.resume_run(retry_failed=True), "rollout")
        self._refresh_bindings_if_changed()

    def action_rollback(self) -> None:
        if self._offered_now("rollback"):
            self._once("rollback", self._rollback_flow)

    @work(exclusive=True, group="rollback", exit_on_error=False)
    async def _rollback_flow(self) -> None:
        r = self.rollout
        if r is None:
            return
        targets = r.rollback_targets()
        n = len(targets)
        others = sum(h.state != ev.DONE for h in targets)
        which = f"{n} done host{_plural(n, '', 's')}" if not others else (
            f"{n} host{_plural(n, '', 's')} that may run it ({n - others} done, {others} failed after a step "
            "or in flight)")
        body = (
            f"Roll back {r.revision} on {which}, latest phase first: each "
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
        if self.rolling_back or r is not self.rollout:
            return
        self.halted_elsewhere = None
        self.rolling_back = True
        self.refresh_bindings()
        self._run_engine(r.rollback(self.user), "rollback")

    def action_retry(self) -> None:
        host = self.selected_host
        r = self.rollout
        if r is None or host is None or not self._offered_now("retry"):
            return
        if not self.board.active and r.status == ev.R_FAILED:
            # the rollout is over, within budget, with this host failed: the same rollout runs it again
            if not self.engine_busy:
                self._run_engine(r.rerun([host], self.user), "rollout")
                self._refresh_bindings_if_changed()
            return
        try:
            r.retry(host, self.user)
        except ControlroomError as e:
            self._say(str(e), severity="warning")

    def action_skip(self) -> None:
        if self._offered_now("skip"):
            self._once("skip", self._skip_flow)

    @work(exclusive=True, group="skip", exit_on_error=False)
    async def _skip_flow(self) -> None:
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
        if board.hosts[host].state not in (ev.PENDING, ev.FAILED):  # it moved on while we asked
            return
        try:
            r.skip(host, self.user)
        except ControlroomError as e:
            self._say(str(e), severity="warning")

    # ------------------------------------------------------------------------------------------- lock and log
    def action_lock(self, _twin: int = 0) -> None:
        self._once("lock", self._lock_flow)

    @work(exclusive=True, group="lock", exit_on_error=False)
    async def _lock_flow(self) -> None:
        lock = self.journal.lock()
        takeover = False
        if lock is not None and lock.live:
            self._say(f"a running deploy holds the lock: {lock.describe()}", severity="warning")
            return
        if lock is not None and not lock.stale and lock.user != self.user:
            body = (
                f"{lock.user} locked the fleet at {clock(lock.at)}: {clean(lock.reason)}\n\n"
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
                value=clean(lock.reason) if lock is not None and lock.user == self.user else "",
            )
        )
        if not text:
            return
        try:
            self.journal.take_lock(self.user, text, takeover=takeover)
        except LockedError as e:
            self._say(str(e), severity="error")

    def action_unlock(self, _twin: int = 0) -> None:
        self._once("unlock", self._unlock_flow)

    @work(exclusive=True, group="unlock", exit_on_error=False)
    async def _unlock_flow(self) -> None:
        lock = self.journal.lock()
        if lock is None:
            self._say("the fleet is not locked")
            return
        if lock.live:
            self._say(f"a running deploy holds the lock: {lock.describe()}", severity="warning")
            return
        force = bool(lock.rollout_id) or lock.user != self.user
        if force:  # another person's lock, or the one a halted deploy keeps: say what releasing it gives up
            whose = f"deploy #{lock.rollout_id}'s" if lock.rollout_id else f"{lock.user}'s"
            body = f"The lock is {lock.describe()}.\n\nUnlocking {abandons(lock)}. The deploy log records it."
            if not await self.push_screen_wait(ConfirmDialog(f"Release {whose} lock?", body, "Unlock")):
                return
        try:
            self.journal.release_lock(self.user, force=force)
        except LockedError as e:
            self._say(str(e), severity="error")

    def action_log_entry(self, _twin: int = 0) -> None:
        self._once("log_entry", self._log_entry_flow)

    @work(exclusive=True, group="log_entry", exit_on_error=False)
    async def _log_entry_flow(self) -> None:
        text = await self.push_screen_wait(
            PromptDialog(
                "Add to the deploy log",
                "Who? When? What? Your name and the time are added.",
                placeholder="e.g. watching the error rate after r2307",
            )
        )
        if text:
            self.journal.add_log(self.user, "NOTE", text, self.board.revision if self.board.active else None)

    def action_quit(self, _twin: int = 0) -> None:
        self._once("quit", self._quit_flow)

    @work(exclusive=True, group="quit", exit_on_error=False)
    async def _quit_flow(self) -> None:
        if self.board.active:
            flying, _ = self._in_flight_and_pending()
            body = (
                f"Quit while the rollout of {self.board.revision} runs: it stops where it is and "
                f"{flying} hosts in flight are cancelled. `controlroom deploy --resume` carries on later."
            )
            if not await self.push_screen_wait(ConfirmDialog("Quit during a rollout?", body, "Quit")):
                return
        self.exit(0)
