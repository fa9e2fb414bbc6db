"""The app's flag actions (mixed into ControlRoom): the flags pane kept current, a flag flipped from the pane, a
kill switch from anywhere in three keys plus the confirm, a flag's history, and the kill switch offered first when a
gate on the series it guards fails.

A flag change never waits for the fleet lock or a running deploy (the server pushes it on its priority lane), so
nothing here asks the rollout's state. Each change names the flag's version the operator saw (compare-and-set): a
change someone else made meanwhile is refused naming them, and the operator is asked again with what is now true.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from textual.app import SystemCommand
from textual.screen import Screen

from controlroom.config.flags import flag_value
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.core.text import clean
from widgets.dialogs import GateHaltDialog, HelpScreen, OverrideDialog, PromptDialog
from widgets.flag_dialogs import FlagConfirmDialog, FlagHistoryScreen, KillSwitchPicker
from widgets.flags import FlagsPane
from widgets.host_detail import HostScreen

FLAGS_POLL = 5.0  # seconds between looks at the receipts (stragglers confirm late)
VERIFY_EVERY = 60.0  # seconds between read-backs of every host's flags file (an operator's app only)
RECHECK_PATIENCE = 45.0  # seconds a gate is checked again after its kill switch flipped (a rate window must turn)


def _what(value: str) -> str:
    return value.upper() if value in ("on", "off") else f"to {value}"


class FlagActions:
    """Flags in the ControlRoom app. Needs the app's client, send, _once, _say and may_act."""

    flags_state: dict | None = None
    flags_verified: list[dict] | None = None
    _flags_fetching = False
    _flags_again = False

    # ------------------------------------------------------------------------------------------- reading
    @property
    def flags_pane(self) -> FlagsPane:
        return self.main.query_one(FlagsPane)

    def poll_flags(self) -> None:
        """The slow timer: receipts change when stragglers confirm."""
        if self.client is not None:
            self.want_flags()

    def want_flags(self) -> None:
        """Read `flags` from the server and show it (one request at a time; a wish meanwhile asks again)."""
        if self._flags_fetching:
            self._flags_again = True
            return
        self._flags_fetching = True
        self.run_worker(self._fetch_flags(), name="flags", group="flags", exit_on_error=False)

    async def _fetch_flags(self) -> None:
        try:
            while self.client is not None and not self.closing:
                self._flags_again = False
                state = await self.client.request("flags")
                self.flags_state = state
                if self._main is not None and self._main.is_mounted:
                    self.flags_pane.show(state)
                if not self._flags_again:
                    break
        except (ControlroomError, TypeError, KeyError):
            pass
        finally:
            self._flags_fetching = False

    def poll_verify(self) -> None:
        """The slow timer: read every host's file back and name the drifted (operators' apps only: a room of
        watchers does not multiply the fleet's load)."""
        if self.client is not None and self.may_act:
            self.verify_flags()

    def verify_flags(self) -> None:
        self.run_worker(self._verify(), name="flags verify", group="flags-verify", exclusive=True,
                        exit_on_error=False)

    async def _verify(self) -> None:
        client = self.client
        if client is None:
            return
        try:
            rows = (await client.request("flags_verify"))["hosts"]
        except (ControlroomError, KeyError, TypeError):
            return
        self.flags_verified = rows
        if self._main is not None and self._main.is_mounted:
            self.flags_pane.show_verified(rows)

    def on_flags_pane_verify(self, message: FlagsPane.Verify) -> None:
        self.verify_flags()

    async def fresh_flags(self) -> dict | None:
        client = self.client
        if client is None:
            return self.flags_state
        try:
            self.flags_state = await client.request("flags")
            self.flags_pane.show(self.flags_state)
        except ControlroomError as e:
            self._say(str(e), title="Flags", severity="error")
        return self.flags_state

    def _on_engine_event(self, e: ev.Event, seq: int = 0) -> None:
        if type(e) is ev.FlagChanged:
            self.want_flags()
            return
        super()._on_engine_event(e, seq)  # type: ignore[misc]
        if type(e) in (ev.GateWaiting, ev.GatePassed, ev.RolloutFinished, ev.PhaseStarted):
            screen = self.screen  # a dialog about a gate that is no longer the one waiting says what is not so
            about = getattr(screen, "about", None)
            if about is not None and about is not self.board.gate:
                screen.dismiss(None)
        if type(e) is ev.GateWaiting and e.kind == ev.GATE_FAILED and self.may_act:
            self.call_later(self._offer_gate_halt)

    def _on_snapshot(self, msg: dict) -> None:
        super()._on_snapshot(msg)  # type: ignore[misc]
        self.want_flags()

    # ------------------------------------------------------------------------------------------- acting
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # k is a priority key (heard over a host's view and help too): on a dialog or the palette, where people
        # type, it is a letter. Asked with no parameters (the palette, help), it is offered wherever it is asked.
        if action == "kill_switch" and parameters:
            screen = self.screen
            if screen is not self._main and not isinstance(screen, (HostScreen, HelpScreen)):
                return False
        return super().check_action(action, parameters)  # type: ignore[misc]

    def action_kill_switch(self, _twin: int = 0) -> None:
        """`k`, from anywhere: pick a kill switch (filtered as you type), then confirm."""
        if self.may_act:
            self._once("flag", lambda: self.run_worker(self._kill_flow(), group="flag", exit_on_error=False))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette from context: one command a kill switch ("Kill switch beehive (now on)")."""
        yield from super().get_system_commands(screen)  # type: ignore[misc]
        if not self.may_act or not self.flags_state:
            return
        for r in self.flags_state.get("flags", ()):
            if r["kind"] == "kill_switch":
                name = clean(r["name"], 40)
                to = "OFF" if r["value"] != "off" else "ON"
                yield SystemCommand(f"Kill switch {name} (now {clean(str(r['value']), 8)})",
                                    f"Turn {name} {to} on every host (a confirmation follows)",
                                    lambda name=r["name"]: self._palette_flag(name))

    def _palette_flag(self, name: str) -> None:
        self._once("flag", lambda: self.run_worker(self.change_flag(name), group="flag", exit_on_error=False))

    async def _kill_flow(self) -> None:
        state = await self.fresh_flags()
        if state is None:
            return
        name = await self.push_screen_wait(KillSwitchPicker(state["flags"]))
        if name:
            await self.change_flag(name)

    def _refused(self) -> None:
        """Read-only: the intent is sent anyway, so the server's refusal says why."""
        self.run_worker(self.send("flag_set"), group="refused", exit_on_error=False)

    def on_flags_pane_flip(self, message: FlagsPane.Flip) -> None:
        if not self.may_act:
            self._refused()
        elif type(message) is FlagsPane.Flip:
            self._once("flag", lambda: self.run_worker(self.change_flag(message.flag), group="flag",
                                                       exit_on_error=False))

    def on_flags_pane_percent(self, message: FlagsPane.Percent) -> None:
        if not self.may_act:
            self._refused()
        else:
            self._once("flag", lambda: self.run_worker(self._percent_flow(message.flag), group="flag",
                                                       exit_on_error=False))

    async def _percent_flow(self, name: str) -> None:
        while True:
            text = await self.push_screen_wait(PromptDialog(
                f"Set {name} to a percentage", "The application lets in that share of users (bucketed by user id).",
                placeholder="e.g. 25%"))
            if not text:
                return
            try:
                value = flag_value(text if text.strip().endswith("%") else f"{text.strip()}%")
            except ValueError as e:
                self._say(f"{name}: {e}", severity="error")
                continue
            await self.change_flag(name, value)
            return

    async def change_flag(self, name: str, value: str | None = None, *, reason: str = "") -> dict | None:
        """Confirm, then set the flag on every host (value None: on <-> off, as the operator saw it). A
        compare-and-set refusal says who changed it and asks again, for the same value, with the flag as it is now.
        Returns the server's receipt, or None."""
        note = ""
        while True:
            state = self.flags_state if note == "" and self.flags_state else await self.fresh_flags()
            if state is None or self.client is None:
                return None
            row = next((r for r in state["flags"] if r["name"] == name), None)
            if row is None:
                self._say(f"no flag {name!r} in the server's config", severity="error")
                return None
            new = value = value or ("on" if row["value"] == "off" else "off")  # kept if asked again
            n = int(state["hosts"])
            kind = "kill switch" if row["kind"] == "kill_switch" else "flag"
            body = (note + "\n\n" if note else "") + (
                f"Turn {name} {_what(new)} on {n} hosts (now {row['value']}). The flags file is replaced on every "
                "host; the receipt shows each host that confirmed. The deploy log records who and why.")
            said = await self.push_screen_wait(FlagConfirmDialog(
                f"Turn the {kind} {name} {_what(new)}?", body, f"Turn {_what(new)}", reason=reason))
            if said is None:
                return None
            reason = said
            try:
                done = await self.client.request("flag_set", flag=name, value=new, reason=reason,
                                                 expect=row["version"])
            except ControlroomError as e:
                now = await self.fresh_flags()
                now_row = next((r for r in (now or {}).get("flags", ()) if r["name"] == name), None)
                if now_row is not None and now_row["version"] != row["version"]:
                    note = clean(str(e))  # who changed it, when, to what: confirm again on what is true now
                    continue
                self._say(str(e), title="Not done", severity="error", timeout=10)
                return None
            self._receipt(done)
            self.want_flags()
            return done

    # ------------------------------------------------------------------------------------------- a failed gate
    def _failed_gate(self) -> ev.GateWaiting | None:
        board = self.board
        gate = board.gate
        return gate if board.status == ev.R_WAITING and gate is not None and gate.kind == ev.GATE_FAILED else None

    def _offer_gate_halt(self) -> None:
        """A gate just failed: offer what to do, unless the operator is busy elsewhere (g offers it again)."""
        if self.screen is self._main and self._failed_gate() is not None:
            self.action_proceed()

    def action_proceed(self) -> None:
        """g at a failed gate: the choices, the guarding kill switch first; anywhere else, as before."""
        gate = self._failed_gate()
        if gate is None or not self.may_act or gate is self._proceeded or not self._offered_now("proceed"):
            super().action_proceed()  # type: ignore[misc]
            return
        self._once("proceed", lambda: self.run_worker(self._gate_halt_flow(gate), group="proceed",
                                                      exit_on_error=False))

    def guarding_switches(self, gate: ev.GateWaiting) -> list[tuple[str, str]]:
        """(kill switch, the failed series it guards) for each guarding one that is not off yet."""
        failed = gate.failed_series()
        values = {r["name"]: r["value"] for r in (self.flags_state or {}).get("flags", ())}
        return [(f.name, ", ".join(s for s in failed if s in f.guards)) for f in self.cfg.flags.guarding(failed)
                if values.get(f.name, f.default) != "off"]

    async def _gate_halt_flow(self, gate: ev.GateWaiting) -> None:
        await self.fresh_flags()
        switches = self.guarding_switches(gate)
        name, guards = switches[0] if switches else (None, "")
        phase = self.board.phases[gate.phase - 1].name if 0 < gate.phase <= len(self.board.phases) else gate.name
        verdicts = [v.text(phase) for v in gate.not_holding()] + [
            f"kill switch: controlroom flag {n} off" for n, _ in switches]
        dialog = GateHaltDialog(
            f"The gate before {gate.name} failed: {' and '.join(gate.failed)}", "\n".join(verdicts),
            kill_switch=name, guards=guards, may_rollback=bool(self.cfg.deploy.rollback))
        dialog.about = gate  # it closes once this is no longer the wait (the gate holds now, or was passed)
        choice = await self.push_screen_wait(dialog)
        if self.board.gate is not gate:  # answered meanwhile, elsewhere
            return
        if choice == "kill" and name:
            done = await self.change_flag(name, "off", reason=f"{' and '.join(gate.failed)} failed before {gate.name}")
            if done is not None and done["confirmed"]:  # on at least some hosts: their metrics turn
                self._start_recheck(gate, RECHECK_PATIENCE)
        elif choice == "recheck":
            self._start_recheck(gate, 0.0)
        elif choice == "rollback":
            self.action_rollback()  # type: ignore[attr-defined]
        elif choice == "proceed":
            await self.pass_failed_gate(gate)

    async def pass_failed_gate(self, gate: ev.GateWaiting) -> None:
        """Past a gate that does not hold only with a typed reason: the dialog names what failed and asks why."""
        failing = [v.failing() for v in gate.not_holding()] or list(gate.failed)
        board = self.board
        phase = board.phases[gate.phase - 1].name if 0 < gate.phase <= len(board.phases) else "the previous phase"
        dialog = OverrideDialog(
            f"Pass the failed {phase} gate and start {gate.name}?", failing,
            f"{gate.name} starts on {board.revision} anyway. The deploy log says GATE OVERRIDDEN with your name and "
            "your reason, and the deploy's result stays marked: DEPLOY OK past a failed gate.", "Pass the gate")
        dialog.about = gate
        reason = await self.push_screen_wait(dialog)
        if not reason or self.board.gate is not gate:  # cancelled, or answered meanwhile elsewhere
            return
        self._proceeded = gate
        if await self.send("proceed", reason=reason) is None:
            self._proceeded = None  # refused: g asks again

    def _start_recheck(self, gate: ev.GateWaiting, patience: float) -> None:
        """Checking again is not a decision: it runs beside the proceed flow, so g acts the moment the gate holds
        (the server may find it holding first)."""
        self.run_worker(self._recheck(gate, patience), group="gate-recheck", exclusive=True, exit_on_error=False)

    async def _recheck(self, gate: ev.GateWaiting, patience: float) -> None:
        """Ask the server to check the gate again, every metrics interval for up to ``patience`` seconds (the
        metrics take a rate window to show a flipped flag); only the last try of a failing gate is logged."""
        what = " and ".join(gate.failed)
        if patience:
            self._say(f"checking {what} again while the metrics turn (up to {patience:g} s)", title="Gate")
        until = time.monotonic() + patience
        interval = max(0.5, self.cfg.metrics.interval)
        while True:
            if self.board.gate is not gate:
                return  # it holds now (the server checks it too), or was answered: the header says which
            last = time.monotonic() + interval > until
            try:
                reply = await self.client.request("gate_check", quiet=not last) if self.client else None
            except ControlroomError as e:
                if self.board.gate is gate:  # not merely the server having found it holding a moment earlier
                    self._say(str(e), title="Not done", severity="error", timeout=10)
                return
            if reply is None or self.board.gate is not gate and not reply.get("passed"):
                return
            if reply.get("passed") or last:
                break
            await asyncio.sleep(interval)  # the next look at the metrics
        lines = "; ".join(str(x) for x in reply.get("lines", ()))
        if reply.get("passed"):
            self._say(f"{lines} · g starts {gate.name}", title="Gate holds", timeout=15)
        else:
            self._say(f"{lines} · g opens the choices again", title="Gate still fails", severity="warning",
                      timeout=15)

    def _receipt(self, done: dict) -> None:
        line = (f"{done['flag']} {done['old']} -> {done['new']} on {done['confirmed']}/{done['total']} hosts "
                f"in {done['seconds']:.1f} s")
        for host, cls, why in done["failed"][:5]:
            line += f" · {host} {cls}: {why}"
        self._say(line, title="Flag", severity="warning" if done["failed"] else "information", timeout=10)

    def on_flags_pane_history(self, message: FlagsPane.History) -> None:
        self._once("flag_history", lambda: self.run_worker(self._history_flow(message.flag), group="flag_history",
                                                           exit_on_error=False))

    async def _history_flow(self, name: str) -> None:
        reply = await self.send("flag_history", flag=name)
        if reply is not None:
            await self.push_screen_wait(FlagHistoryScreen(name, list(reply.get("changes") or ())))
