"""The operator's intents: what each key does, when it is offered, and the dialogs that ask before it happens.

Every action is an intent sent to the control-room server (`Link.send`); a refusal shows as the server's one line.
Every action acts once: a dialog flow, or an intent on its way, runs as a worker of its own group behind a
synchronous guard (`_once`), so a second press while the first is still asking, or still being answered, does
nothing. Text that people or hosts wrote (lock reasons, host names, errors) is cleaned and never read as markup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from textual import events, work
from textual.app import SystemCommand
from textual.screen import Screen
from textual.worker import Worker

from controlroom.app.confirm import deploy_plan, plural, why_no_resume
from controlroom.app.keys import _KEY_NAMES, ACTIONS, INTENT_OF, NAV_KEYS, SECONDARY, WIDE_ONLY
from controlroom.core import events as ev
from controlroom.core.text import clean
from controlroom.server.wire import abandons
from widgets.deploy_log import clock
from widgets.dialogs import ConfirmDialog, HelpScreen, OverrideDialog, PromptDialog, QuitDialog
from widgets.host_detail import HostScreen
from widgets.host_grid import HostGrid

# the flows that decide on the deploy the server runs: a second person is asked whose it is first
DECISION_FLOWS = ("proceed", "pause", "abort", "rollback", "retry", "skip", "resume_deploy")


class Controller:
    """The intents of the ControlRoom app (mixed into it): actions, their guards and their dialogs."""

    # ------------------------------------------------------------------------------------------- guards
    def _once(self, flow: str, start: Callable[[], Worker]) -> Worker | None:
        """Start the worker of ``flow`` unless one is still under way (a dialog open, an intent unanswered).

        A decision on a deploy another person drives asks first whose it is ("alice is driving r2307 from
        10.0.0.5; act anyway?"); only a yes starts the flow."""
        w = self._flows.get(flow)
        if w is not None and not w.is_finished:
            return None
        question = self.driven_elsewhere() if flow in DECISION_FLOWS else None
        if question is None:
            self._flows[flow] = w = start()
            return w
        driver = self.driver or {}

        async def ask_first() -> None:
            answer = await self.push_screen_wait(
                ConfirmDialog("Another person drives this deploy", question, "Act anyway"))
            if not answer:
                return
            self._accepted_driver = (driver.get("user"), driver.get("no"))  # the server asks the same: yes
            try:
                with contextlib.suppress(Exception):  # the flow says its own failure
                    await start().wait()
            finally:
                self._accepted_driver = None

        self._flows[flow] = w = self.run_worker(ask_first(), group=f"ask-{flow}", exit_on_error=False)
        return w

    def _intent(self, flow: str, op: str, **args) -> Worker | None:
        """Send one intent, once: a second press while the server has not answered the first does nothing."""

        async def go() -> None:
            if await self.send(op, **args) is not None:
                self._refresh_bindings_if_changed()

        return self._once(flow, lambda: self.run_worker(go(), group=flow, exit_on_error=False))

    @property
    def engine_busy(self) -> bool:
        """The server runs an operation (deploy, resume, rerun, rollback), or one of ours is on its way there."""
        starting = any(not w.is_finished for f, w in self._flows.items() if f in ("start", "resume_deploy"))
        return bool(self.busy) or starting

    @property
    def driven(self) -> bool:
        """The rollout on the board is run by the server now (a halted one may be waiting with nothing driving)."""
        return bool(self.busy)

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
        if action in WIDE_ONLY and parameters == (0,) and not (self._main and self._main.has_class("-wide")):
            return False
        if action in ("quit", "help", "command_palette", "show_tab", "focus_next", "focus_previous"):
            return True
        if action == "open_host":
            return bool(board.order)
        if not self.may_act:
            return False  # read-only: nothing that acts is offered (a key pressed anyway says why)
        if action in ("log_entry", "lock", "kill_switch"):
            return True  # a flag change never waits for the lock or a deploy
        status = board.status
        if action == "deploy":
            return not board.active and not self.rolling_back and not self.engine_busy
        if action == "unlock":
            lock = self._lock  # as of the last answer: check_action runs often, the server need not
            return lock is not None and not lock.live
        if status is None:
            return False
        if action == "resume_deploy":
            return status == ev.R_HALTED and not self.rolling_back
        if action == "rollback":
            return (bool(self.cfg.deploy.rollback) and not self.rolling_back
                    and board.count(ev.DONE, ev.FAILED, *ev.IN_FLIGHT) > 0)
        if not self.driven and action != "retry":
            return False  # nothing runs this deploy: resume it or roll it back, nothing else
        if action == "proceed":
            # a gate stays open while paused (proceeding then starts the phase with no host running)
            return board.active and (board.gate is not None or status == ev.R_HALTED)
        if action == "pause":
            return status in (ev.R_RUNNING, ev.R_WAITING, ev.R_HALTED) and not self.paused
        if action == "resume":
            return status == ev.R_PAUSED
        if action == "abort":
            return board.active
        host = self.selected_host
        hv = board.hosts.get(host) if host else None
        if action == "retry":
            if hv is not None and not board.active and status == ev.R_FAILED and not self.rolling_back:
                # the rollout ended: run this host again
                return hv.state == ev.FAILED and not self.engine_busy
            return (
                self.driven
                and board.active
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

    def on_key(self, event: events.Key) -> None:
        """Read-only: a key that would act is sent anyway, so the server's refusal says why. R with nothing to
        resume says so (its binding is not offered, so it would do nothing and say nothing)."""
        if (event.character == "R" and self.may_act and isinstance(self.screen, type(self.main))
                and not self._offered_now("resume_deploy")):
            event.stop()
            self._say(why_no_resume(self), title="Nothing to resume", severity="warning", timeout=4)
            return
        op = INTENT_OF.get(event.character or "")
        if op is None or self.may_act or self.client is None or not isinstance(self.screen, type(self.main)):
            return
        event.stop()
        self.run_worker(self.send(op), group="refused", exit_on_error=False)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for a in ACTIONS:
            if self.check_action(a.action, ()):
                key = _KEY_NAMES.get(a.key, a.key)
                yield SystemCommand(f"{a.label} ({key})", a.help, getattr(self, f"action_{a.action}"))
        yield from super().get_system_commands(screen)

    def help_keys(self) -> list[tuple[str, str]]:
        keys = [(_KEY_NAMES.get(a.key, a.key), f"{a.label}: {a.help}") for a in ACTIONS]
        keys += list(NAV_KEYS)
        return keys

    def action_help(self) -> None:
        """`?`: keys, symbols and panes."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_keys()))

    def action_show_tab(self, tab: str) -> None:
        """A digit: focus that pane (its tab on small terminals); the same digit again fills the screen with it
        (a 20,000-line diff wants more than its corner); once more, or escape, puts it back."""
        self.main.show_pane(tab)

    # ------------------------------------------------------------------------------------------- hosts
    def open_host(self, host: str) -> HostScreen:
        """Show one host's live output, result and timings (asked of the server, then followed)."""
        if isinstance(self.screen, HostScreen) and self.screen.host == host:
            return self.screen
        screen = HostScreen(self.board, host, self._engine_host)
        self.follow_host(host)
        self.push_screen(screen, callback=lambda _r, host=host: self.unfollow_host(host))
        return screen

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
        if self._offered_now("deploy"):
            self._once("deploy", self._deploy_flow)

    @work(exclusive=True, group="deploy", exit_on_error=False)
    async def _deploy_flow(self) -> None:
        if self.staged is None:
            await self.revisions_loaded.wait()
        if self.staged is None:
            self._say("there is no staged revision to deploy (see [release] in the config)", severity="error")
            return
        revision = self.staged
        lock = await self.fresh_lock()
        live = self.fleet_live()
        if list(live) == [revision]:
            total = sum(live.values())
            self._say(f"the whole fleet ({total} host{plural(total, '', 's')}) already runs {revision}: nothing "
                      "to deploy (stage another revision first)", title="Nothing to deploy", severity="warning")
            return
        force_reason = None
        plan = deploy_plan(self.cfg, revision, live, self._lock)
        if lock is not None and not lock.stale and lock.live:
            self._say(f"the fleet is locked by {lock.describe()}", title="Locked", severity="error")
            return
        if lock is not None and not lock.stale:
            body = (
                f"{plan}\n\nThe fleet is locked: NO DEPLOY PLEASE — {lock.user}, {clock(lock.at)}: "
                f"{clean(lock.reason)}\n\nDeploying {revision} anyway goes past their lock. Your name and your "
                "reason go into the deploy log."
            )
            force_reason = await self.push_screen_wait(
                ConfirmDialog(
                    f"Deploy {revision} past the lock?",
                    body,
                    "Deploy anyway",
                    reason="why deploy past the lock (goes into the deploy log)",
                )
            )
            if not force_reason:
                return
        elif not await self.push_screen_wait(ConfirmDialog(f"Deploy {revision}?", plan, "Deploy")):
            return
        if self.board.active or self.engine_busy:  # something started while we asked
            self._say("a rollout started while you were asked: nothing deployed", severity="warning")
            return
        await self.start_rollout(force_reason=force_reason, revision=revision)

    async def start_rollout(self, *, force_reason: str | None = None, revision: str | None = None) -> dict | None:
        """Ask the server to ship the staged revision (the one the operator was shown); the reply names the deploy
        it started."""
        self.rolling_back = False
        self._proceeded = None
        reply = await self.send("deploy", revision=revision or self.staged, force_reason=force_reason)
        if reply is not None:
            self.busy = self.busy or "deploy"
        self._refresh_bindings_if_changed()
        return reply

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
        board = self.board
        target = board.halted if board.status == ev.R_HALTED else board.gate
        reason = None
        if isinstance(target, ev.GateWaiting) and target.kind == ev.GATE_FAILED:
            await self.pass_failed_gate(target)  # a gate that does not hold: only with a typed reason
            return
        if board.status == ev.R_HALTED and board.halted is not None:
            h = board.halted
            phase = board.phases[h.phase]
            failed = [f"{n} failed: {board.hosts[n].reason}" for n in board.hosts_in(ev.FAILED)
                      if board.hosts[n].phase == h.phase]
            reason = await self.push_screen_wait(OverrideDialog(
                f"Go on with {h.name} past its failure budget?",
                failed + [f"{len(failed)} failed, more than max_failed {phase.max_failed}"],
                "The failed hosts stay failed; the phase's pending hosts start and the next phases follow. The "
                "deploy log says FORCE with your name and your reason, and the deploy's result stays marked: "
                "DEPLOY OK past a failure budget.", "Go on"))
            if not reason or board.halted is not target:  # cancelled, or the halt was resolved while we asked
                return
        self._proceeded = target
        if await self.send("proceed", reason=reason) is None:
            self._proceeded = None  # refused: g asks again

    def action_pause(self) -> None:
        if not self.paused and self._offered_now("pause"):
            self._intent("pause", "pause")

    def action_resume(self) -> None:
        if self.board.status == ev.R_PAUSED and self._offered_now("resume"):
            self._intent("pause", "unpause")  # the same flow as pause: p pressed twice acts on one answer

    # ------------------------------------------------------------------------------------------- destructive
    def _in_flight_and_pending(self) -> tuple[int, int]:
        return self.board.count(*ev.IN_FLIGHT), self.board.count(ev.PENDING)

    def _abort_body(self) -> str:
        flying, pending = self._in_flight_and_pending()
        revision = self.board.revision
        return (
            f"Abort the rollout of {revision}: {flying} host{plural(flying, '', 's')} in flight "
            f"{plural(flying, 'is', 'are')} cancelled and {pending} pending host{plural(pending, '', 's')} "
            f"{plural(pending, 'is', 'are')} skipped. The {self.board.count(ev.DONE)} done hosts stay on "
            f"{revision} (b rolls them back)."
        )

    def action_abort(self) -> None:
        if self._offered_now("abort"):
            self._once("abort", self._abort_flow)

    @work(exclusive=True, group="abort", exit_on_error=False)
    async def _abort_flow(self) -> None:
        if not self.board.active:
            return
        rollout = self.board.rollout_id
        if await self.push_screen_wait(ConfirmDialog("Abort the rollout?", self._abort_body(), "Abort rollout")):
            if self.board.active and rollout == self.board.rollout_id:
                await self.send("abort")

    def action_resume_deploy(self) -> None:
        if not self._offered_now("resume_deploy"):
            self._say(why_no_resume(self), title="Nothing to resume", severity="warning")
            return

        async def go() -> None:
            self._proceeded = None
            if await self.send("resume") is not None:
                self.busy = self.busy or "resume"
            self._refresh_bindings_if_changed()

        self._once("resume_deploy", lambda: self.run_worker(go(), group="resume_deploy", exit_on_error=False))

    def action_rollback(self) -> None:
        if self._offered_now("rollback"):
            self._once("rollback", self._rollback_flow)

    @work(exclusive=True, group="rollback", exit_on_error=False)
    async def _rollback_flow(self) -> None:
        plan = await self.send("rollback_plan")
        if plan is None:
            return
        n, others = int(plan["hosts"]), int(plan["others"])
        if not n:
            self._say(f"deploy #{plan['rollout_id']} of {plan['revision']}: no host to roll back", severity="warning")
            return
        which = f"{n} done host{plural(n, '', 's')}" if not others else (
            f"{n} host{plural(n, '', 's')} that may run it ({n - others} done, {others} failed after a step "
            "or in flight)")
        body = (
            f"Roll back {plan['revision']} on {which}, latest phase first: each "
            f"runs the rollback steps and goes back to its previous revision ({plan['previous'] or 'as recorded'})."
        )
        if self.board.active and self.driven:
            flying, pending = self._in_flight_and_pending()
            body += (
                f"\n\nThe rollout is aborted first: {flying} hosts in flight are cancelled and {pending} "
                "pending hosts are skipped."
            )
        if not await self.push_screen_wait(ConfirmDialog("Roll back?", body, "Roll back")):
            return
        if self.rolling_back:
            return
        self.rolling_back = True
        self.refresh_bindings()
        if await self.send("rollback") is None:
            self.rolling_back = False
        self._refresh_bindings_if_changed()

    def action_retry(self) -> None:
        host = self.selected_host
        if host is None or not self._offered_now("retry"):
            return
        self._intent("retry", "retry", host=host)

    def action_skip(self) -> None:
        if self._offered_now("skip"):
            self._once("skip", self._skip_flow)

    @work(exclusive=True, group="skip", exit_on_error=False)
    async def _skip_flow(self) -> None:
        board = self.board
        host = self.selected_host
        if host is None or host not in board.hosts:
            return
        hv = board.hosts[host]
        phase = board.phases[hv.phase]
        # the budget counts failed hosts and the ones the operator skipped
        used = sum(1 for n in phase.hosts if board.hosts[n].state in (ev.FAILED, ev.SKIPPED))
        if hv.state == ev.PENDING:
            used += 1
        body = (
            f"Skip {host} in {phase.name}: it is not deployed in this rollout and stays on "
            f"{hv.revision or board.previous or 'its current revision'}. It counts against {phase.name}'s failure "
            f"budget ({used} used of {phase.max_failed} allowed) and the skip goes into the deploy log."
        )
        reason = None
        if used > phase.max_failed:  # past the budget: only with a typed reason, and the result stays marked
            reason = await self.push_screen_wait(OverrideDialog(
                f"Skip {host} past {phase.name}'s failure budget?",
                [f"{phase.name}: {used} failed or skipped with {host}, more than max_failed {phase.max_failed}"],
                body + " The deploy log says FORCE with your name and your reason, and the deploy's result stays "
                "marked: DEPLOY OK with hosts skipped.", "Skip host"))
            if not reason:
                return
        elif not await self.push_screen_wait(ConfirmDialog(f"Skip {host}?", body, "Skip host")):
            return
        if board.hosts[host].state not in (ev.PENDING, ev.FAILED):  # it moved on while we asked
            return
        await self.send("skip", host=host, reason=reason)

    # ------------------------------------------------------------------------------------------- lock and log
    def action_lock(self, _twin: int = 0) -> None:
        if self._offered_now("lock"):
            self._once("lock", self._lock_flow)

    @work(exclusive=True, group="lock", exit_on_error=False)
    async def _lock_flow(self) -> None:
        lock = await self.fresh_lock()
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
        own = lock is not None and not lock.stale and not takeover and not lock.rollout_id
        text = await self.push_screen_wait(
            PromptDialog(
                "Lock the fleet" if not own else "Replace your lock?",
                "No deploy starts while the fleet is locked. Say why:" if not own else
                f"You hold the lock: {lock.describe()}\nWhat you type replaces its message (esc keeps it):",
                placeholder="NO DEPLOY PLEASE: db migration until 14:00",
                value=clean(lock.reason) if lock is not None and lock.user == self.user else "",
            )
        )
        if text:
            await self.send("lock", message=text, takeover=takeover)

    def action_unlock(self, _twin: int = 0) -> None:
        if self._offered_now("unlock"):
            self._once("unlock", self._unlock_flow)

    @work(exclusive=True, group="unlock", exit_on_error=False)
    async def _unlock_flow(self) -> None:
        lock = await self.fresh_lock()
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
        await self.send("unlock", force=force)

    def action_log_entry(self, _twin: int = 0) -> None:
        if self._offered_now("log_entry"):
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
            await self.send("log_add", message=text)

    def action_quit(self, _twin: int = 0) -> None:
        self._once("quit", self._quit_flow)

    def _quit_body(self) -> str | None:
        """What the quit dialog says now, or None once no deploy runs (the dialog closes: it would not be so)."""
        if not (self.board.active and self.driven):
            return None
        body = (
            f"If you quit, the deploy keeps running; `controlroom` re-attaches (the deploy of "
            f"{self.board.revision} runs in the control-room server, not in this terminal)."
        )
        if self.may_act:
            body += "\n\nOr abort it first (a): " + self._abort_body()
        return body

    @work(exclusive=True, group="quit", exit_on_error=False)
    async def _quit_flow(self) -> None:
        if self._quit_body() is not None:
            rollout = self.board.rollout_id
            choice = await self.push_screen_wait(QuitDialog(self._quit_body, may_abort=self.may_act))
            if choice is None:
                if self._quit_body() is None:
                    self._say(f"deploy #{rollout} ended while you were asked: q quits now", timeout=4)
                return
            if choice == "abort" and self.board.active and self.board.rollout_id == rollout:
                await self.send("abort")
        self.exit(0)
