"""The operator's intents: what each key does, when it is offered, and the dialogs that ask before it happens.

Every action is an intent sent to the control-room server (`Link.send`); a refusal shows as the server's one line.
Every action acts once: a dialog flow, or an intent on its way, runs as a worker of its own group behind a
synchronous guard (`Flows.once`), so a second press while the first is still asking, or still being answered, does
nothing. Text that people or hosts wrote (lock reasons, host names, errors) is cleaned and never read as markup.

`Intents` is a plain object: the app's key bindings call its methods, and `offered` is the app's check_action.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from controlroom.app.confirm import deploy_plan, plural, why_no_resume
from controlroom.app.deploylog import DeployLog
from controlroom.app.keys import _KEY_NAMES, ACTIONS, NAV_KEYS, SECONDARY, WIDE_ONLY
from controlroom.app.link import Link
from controlroom.app.room import Room
from controlroom.app.ui import Flows, Ui
from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.text import clean
from controlroom.server.wire import abandons
from widgets.deploy_log import clock
from widgets.dialogs import ConfirmDialog, OverrideDialog, PromptDialog, QuitDialog

ALWAYS = ("quit", "help", "command_palette", "show_tab", "focus_next", "focus_previous", "search_diff", "timeline",
          "history")


def help_keys() -> list[tuple[str, str]]:
    """The help screen's keys: every action of the key table, then the keys that move around."""
    keys = [(_KEY_NAMES.get(a.key, a.key), f"{a.label}: {a.help}") for a in ACTIONS]
    keys += list(NAV_KEYS)
    return keys


class Intents:
    """The rollout's keys: deploy, proceed, pause, abort, resume, roll back, retry, skip, lock, log, quit."""

    def __init__(self, cfg: Config, room: Room, link: Link, log: DeployLog, flows: Flows, ui: Ui, *,
                 selected_host: Callable[[], str | None], fleet_live: Callable[[], Counter],
                 pass_failed_gate: Callable[[ev.GateWaiting], Awaitable[None]],
                 offered_changed: Callable[[], None], exit: Callable[[int], None]) -> None:
        self._cfg = cfg
        self._room = room
        self.board = room.board
        self._link = link
        self._log = log
        self._flows = flows
        self._ui = ui
        self._selected_host = selected_host
        self._fleet_live = fleet_live
        self._pass_failed_gate = pass_failed_gate
        self._offered_changed = offered_changed
        self._exit = exit

    # ------------------------------------------------------------------------------------------- guards
    def _intent(self, flow: str, op: str, **args) -> None:
        """Send one intent, once: a second press while the server has not answered the first does nothing."""

        async def go() -> None:
            if await self._link.send(op, **args) is not None:
                self._offered_changed()

        self._flows.run_once(flow, go)

    @property
    def engine_busy(self) -> bool:
        """The server runs an operation (deploy, resume, rerun, rollback), or one of ours is on its way there."""
        return bool(self._room.busy) or self._flows.under_way("start", "resume_deploy")

    # ------------------------------------------------------------------------------------------- offered
    def offered(self, action: str, parameters: tuple[object, ...], *, wide: bool) -> bool | None:
        """Offer only what makes sense now: the footer and the palette follow the rollout's state (wide: every
        pane is on screen)."""
        board = self.board
        room = self._room
        if action in SECONDARY and parameters == (0,) and board.active:
            return False
        if action in WIDE_ONLY and parameters == (0,) and not wide:
            return False
        if action in ALWAYS:
            return True
        if action == "open_host":
            return bool(board.order)
        if action == "stage":
            return room.may_act
        if not room.may_act:
            return False  # read-only: nothing that acts is offered (a key pressed anyway says why)
        if action in ("log_entry", "lock", "kill_switch"):
            return True  # a flag change never waits for the lock or a deploy
        status = board.status
        if action == "deploy":
            return not board.active and not room.rolling_back and not self.engine_busy
        if action == "unlock":
            lock = self._log.lock  # as of the last answer: check_action runs often, the server need not
            return lock is not None and not lock.live
        if status is None:
            return False
        if action == "resume_deploy":
            return status == ev.R_HALTED and not room.rolling_back
        if action == "rollback":
            return (bool(self._cfg.deploy.rollback) and not room.rolling_back
                    and board.count(ev.DONE, ev.FAILED, *ev.IN_FLIGHT) > 0)
        if not room.driven and action != "retry":
            return False  # nothing runs this deploy: resume it or roll it back, nothing else
        if action == "proceed":
            # a gate stays open while paused (proceeding then starts the phase with no host running)
            return board.active and (board.gate is not None or status == ev.R_HALTED)
        if action == "pause":
            return status in (ev.R_RUNNING, ev.R_WAITING, ev.R_HALTED) and not room.paused
        if action == "resume":
            return status == ev.R_PAUSED
        if action == "abort":
            return board.active
        host = self._selected_host()
        hv = board.hosts.get(host) if host else None
        if action == "retry":
            if hv is not None and not board.active and status == ev.R_FAILED and not room.rolling_back:
                # the rollout ended: run this host again
                return hv.state == ev.FAILED and not self.engine_busy
            return (
                room.driven
                and board.active
                and hv is not None
                and hv.state in (ev.FAILED, ev.SKIPPED)
                and hv.phase == board.phase_index
            )
        if action == "skip":
            return board.active and hv is not None and hv.state in (ev.PENDING, ev.FAILED)
        return True

    def offered_now(self, action: str) -> bool:
        # the palette runs its command later than it listed it: ask again (with no parameters: wide or not)
        return bool(self.offered(action, (), wide=False))

    # ------------------------------------------------------------------------------------------- deploy
    def deploy(self) -> None:
        if self.board.active or self.engine_busy:
            self._ui.say("a rollout is already running", severity="warning")
            return
        if self.offered_now("deploy"):
            self._flows.run_once("deploy", self._deploy_flow, exclusive=True)

    async def _deploy_flow(self) -> None:
        if self._room.staged is None:
            await self._room.revisions_loaded.wait()
        if self._room.staged is None:
            self._ui.say("there is no staged revision to deploy (see [release] in the config)", severity="error")
            return
        revision = self._room.staged
        lock = await self._log.fresh_lock()
        live = self._fleet_live()
        if not live:  # the first look found no host's answer (one too slow, say): ask again before asking the operator
            self._room.revisions(await self._link.send("revisions"))
            live = self._fleet_live()
        if list(live) == [revision]:
            total = sum(live.values())
            self._ui.say(f"the whole fleet ({total} host{plural(total, '', 's')}) already runs {revision}: nothing "
                      "to deploy (stage another revision first)", title="Nothing to deploy", severity="warning")
            return
        force_reason = None
        plan = deploy_plan(self._cfg, revision, live, self._log.lock)
        if lock is not None and not lock.stale and lock.live:
            self._ui.say(f"the fleet is locked by {lock.describe()}", title="Locked", severity="error")
            return
        if lock is not None and not lock.stale:
            body = (
                f"{plan}\n\nThe fleet is locked: NO DEPLOY PLEASE — {lock.user}, {clock(lock.at)}: "
                f"{clean(lock.reason)}\n\nDeploying {revision} anyway goes past their lock. Your name and your "
                "reason go into the deploy log."
            )
            force_reason = await self._ui.ask(
                ConfirmDialog(
                    f"Deploy {revision} past the lock?",
                    body,
                    "Deploy anyway",
                    reason="why deploy past the lock (goes into the deploy log)",
                )
            )
            if not force_reason:
                return
        elif not await self._ui.ask(ConfirmDialog(f"Deploy {revision}?", plan, "Deploy")):
            return
        if self.board.active or self.engine_busy:  # something started while we asked
            self._ui.say("a rollout started while you were asked: nothing deployed", severity="warning")
            return
        await self.start_rollout(force_reason=force_reason, revision=revision)

    async def start_rollout(self, *, force_reason: str | None = None, revision: str | None = None) -> dict | None:
        """Ask the server to ship the staged revision (the one the operator was shown); the reply names the deploy
        it started."""
        self._room.rolling_back = False
        self._room.proceeded = None
        reply = await self._link.send("deploy", revision=revision or self._room.staged, force_reason=force_reason)
        if reply is not None:
            self._room.busy = self._room.busy or "deploy"
        self._offered_changed()
        return reply

    # ------------------------------------------------------------------------------------------- gates, pause
    def proceed(self) -> None:
        board = self.board
        # one decision per gate or halt: a second g before the engine moved on must not pass the next gate too
        target = board.halted if board.status == ev.R_HALTED else board.gate
        if target is None or target is self._room.proceeded or not self.offered_now("proceed"):
            return
        self._flows.run_once("proceed", self._proceed_flow, exclusive=True)

    async def _proceed_flow(self) -> None:
        board = self.board
        target = board.halted if board.status == ev.R_HALTED else board.gate
        reason = None
        if isinstance(target, ev.GateWaiting) and target.kind == ev.GATE_FAILED:
            await self._pass_failed_gate(target)  # a gate that does not hold: only with a typed reason
            return
        if board.status == ev.R_HALTED and board.halted is not None:
            h = board.halted
            phase = board.phases[h.phase]
            failed = [f"{n} failed: {board.hosts[n].reason}" for n in board.hosts_in(ev.FAILED)
                      if board.hosts[n].phase == h.phase]
            reason = await self._ui.ask(OverrideDialog(
                f"Go on with {h.name} past its failure budget?",
                failed + [f"{len(failed)} failed, more than max_failed {phase.max_failed}"],
                "The failed hosts stay failed; the phase's pending hosts start and the next phases follow. The "
                "deploy log says FORCE with your name and your reason, and the deploy's result stays marked: "
                "DEPLOY OK past a failure budget.", "Go on"))
            if not reason or board.halted is not target:  # cancelled, or the halt was resolved while we asked
                return
        self._room.proceeded = target
        if await self._link.send("proceed", reason=reason) is None:
            self._room.proceeded = None  # refused: g asks again

    def pause(self) -> None:
        if not self._room.paused and self.offered_now("pause"):
            self._intent("pause", "pause")

    def resume(self) -> None:
        if self.board.status == ev.R_PAUSED and self.offered_now("resume"):
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

    def abort(self) -> None:
        if self.offered_now("abort"):
            self._flows.run_once("abort", self._abort_flow, exclusive=True)

    async def _abort_flow(self) -> None:
        if not self.board.active:
            return
        rollout = self.board.rollout_id
        if await self._ui.ask(ConfirmDialog("Abort the rollout?", self._abort_body(), "Abort rollout")):
            if self.board.active and rollout == self.board.rollout_id:
                await self._link.send("abort")

    def resume_deploy(self) -> None:
        if not self.offered_now("resume_deploy"):
            self._ui.say(why_no_resume(self._room), title="Nothing to resume", severity="warning")
            return

        async def go() -> None:
            self._room.proceeded = None
            if await self._link.send("resume") is not None:
                self._room.busy = self._room.busy or "resume"
            self._offered_changed()

        self._flows.run_once("resume_deploy", go)

    def rollback(self) -> None:
        if self.offered_now("rollback"):
            self._flows.run_once("rollback", self._rollback_flow, exclusive=True)

    async def _rollback_flow(self) -> None:
        plan = await self._link.send("rollback_plan")
        if plan is None:
            return
        n, others = int(plan["hosts"]), int(plan["others"])
        if not n:
            self._ui.say(f"deploy #{plan['rollout_id']} of {plan['revision']}: no host to roll back", severity="warning")
            return
        which = f"{n} done host{plural(n, '', 's')}" if not others else (
            f"{n} host{plural(n, '', 's')} that may run it ({n - others} done, {others} failed after a step "
            "or in flight)")
        body = (
            f"Roll back {plan['revision']} on {which}, latest phase first: each "
            f"runs the rollback steps and goes back to its previous revision ({plan['previous'] or 'as recorded'})."
        )
        if self.board.active and self._room.driven:
            flying, pending = self._in_flight_and_pending()
            body += (
                f"\n\nThe rollout is aborted first: {flying} hosts in flight are cancelled and {pending} "
                "pending hosts are skipped."
            )
        if not await self._ui.ask(ConfirmDialog("Roll back?", body, "Roll back")):
            return
        if self._room.rolling_back:
            return
        self._room.rolling_back = True
        self._ui.refresh_bindings()
        if await self._link.send("rollback") is None:
            self._room.rolling_back = False
        self._offered_changed()

    def retry(self) -> None:
        host = self._selected_host()
        if host is None or not self.offered_now("retry"):
            return
        self._intent("retry", "retry", host=host)

    def skip(self) -> None:
        if self.offered_now("skip"):
            self._flows.run_once("skip", self._skip_flow, exclusive=True)

    async def _skip_flow(self) -> None:
        board = self.board
        host = self._selected_host()
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
            reason = await self._ui.ask(OverrideDialog(
                f"Skip {host} past {phase.name}'s failure budget?",
                [f"{phase.name}: {used} failed or skipped with {host}, more than max_failed {phase.max_failed}"],
                body + " The deploy log says FORCE with your name and your reason, and the deploy's result stays "
                "marked: DEPLOY OK with hosts skipped.", "Skip host"))
            if not reason:
                return
        elif not await self._ui.ask(ConfirmDialog(f"Skip {host}?", body, "Skip host")):
            return
        if board.hosts[host].state not in (ev.PENDING, ev.FAILED):  # it moved on while we asked
            return
        await self._link.send("skip", host=host, reason=reason)

    # ------------------------------------------------------------------------------------------- lock and log
    def lock(self) -> None:
        if self.offered_now("lock"):
            self._flows.run_once("lock", self._lock_flow, exclusive=True)

    async def _lock_flow(self) -> None:
        lock = await self._log.fresh_lock()
        takeover = False
        if lock is not None and lock.live:
            self._ui.say(f"a running deploy holds the lock: {lock.describe()}", severity="warning")
            return
        if lock is not None and not lock.stale and lock.user != self._room.user:
            body = (
                f"{lock.user} locked the fleet at {clock(lock.at)}: {clean(lock.reason)}\n\n"
                "Taking the lock over replaces their message with yours; the deploy log records it."
            )
            if not await self._ui.ask(ConfirmDialog("Take over the lock?", body, "Take over")):
                return
            takeover = True
        own = lock is not None and not lock.stale and not takeover and not lock.rollout_id
        text = await self._ui.ask(
            PromptDialog(
                "Lock the fleet" if not own else "Replace your lock?",
                "No deploy starts while the fleet is locked. Say why:" if not own else
                f"You hold the lock: {lock.describe()}\nWhat you type replaces its message (esc keeps it):",
                placeholder="NO DEPLOY PLEASE: db migration until 14:00",
                value=clean(lock.reason) if lock is not None and lock.user == self._room.user else "",
            )
        )
        if text:
            await self._link.send("lock", message=text, takeover=takeover)

    def unlock(self) -> None:
        if self.offered_now("unlock"):
            self._flows.run_once("unlock", self._unlock_flow, exclusive=True)

    async def _unlock_flow(self) -> None:
        lock = await self._log.fresh_lock()
        if lock is None:
            self._ui.say("the fleet is not locked")
            return
        if lock.live:
            self._ui.say(f"a running deploy holds the lock: {lock.describe()}", severity="warning")
            return
        force = bool(lock.rollout_id) or lock.user != self._room.user
        if force:  # another person's lock, or the one a halted deploy keeps: say what releasing it gives up
            whose = f"deploy #{lock.rollout_id}'s" if lock.rollout_id else f"{lock.user}'s"
            body = f"The lock is {lock.describe()}.\n\nUnlocking {abandons(lock)}. The deploy log records it."
            if not await self._ui.ask(ConfirmDialog(f"Release {whose} lock?", body, "Unlock")):
                return
        await self._link.send("unlock", force=force)

    def log_entry(self) -> None:
        if self.offered_now("log_entry"):
            self._flows.run_once("log_entry", self._log_entry_flow, exclusive=True)

    async def _log_entry_flow(self) -> None:
        text = await self._ui.ask(
            PromptDialog(
                "Add to the deploy log",
                "Who? When? What? Your name and the time are added.",
                placeholder="e.g. watching the error rate after r2307",
            )
        )
        if text:
            await self._link.send("log_add", message=text)

    def quit(self) -> None:
        self._flows.run_once("quit", self._quit_flow, exclusive=True)

    def _quit_body(self) -> str | None:
        """What the quit dialog says now, or None once no deploy runs (the dialog closes: it would not be so)."""
        if not (self.board.active and self._room.driven):
            return None
        body = (
            f"If you quit, the deploy keeps running; `controlroom` re-attaches (the deploy of "
            f"{self.board.revision} runs in the control-room server, not in this terminal)."
        )
        if self._room.may_act:
            body += "\n\nOr abort it first (a): " + self._abort_body()
        return body

    async def _quit_flow(self) -> None:
        if self._quit_body() is not None:
            rollout = self.board.rollout_id
            choice = await self._ui.ask(QuitDialog(self._quit_body, may_abort=self._room.may_act))
            if choice is None:
                if self._quit_body() is None:
                    self._ui.say(f"deploy #{rollout} ended while you were asked: q quits now", timeout=4)
                return
            if choice == "abort" and self.board.active and self.board.rollout_id == rollout:
                await self._link.send("abort")
        self._exit(0)
