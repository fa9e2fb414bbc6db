"""A gate that failed, in the app: the choices offered at once (the kill switch that guards the failed series
first), checking the gate again while the metrics turn, and passing it only with a typed reason. The dialog names
the failed series' top suspect as the server judged it (a SuspectNamed on the board), and says it anew when the
server judges it again while the gate waits.

A dialog about a gate that is no longer the one waiting closes (it would say what is not so).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from controlroom.app.flags import Flags
from controlroom.app.link import Link
from controlroom.app.room import Room
from controlroom.app.ui import Flows, Ui
from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from widgets.dialogs import GateHaltDialog, OverrideDialog

RECHECK_PATIENCE = 45.0  # seconds a gate is checked again after its kill switch flipped (a rate window must turn)
# the events after which the gate waiting may be another one
GATE_MOVES = (ev.GateWaiting, ev.GatePassed, ev.RolloutFinished, ev.PhaseStarted)
# and the suspect of a failed series, named anew while the gate waits: the open dialog says it as it is now
GATE_EVENTS = (*GATE_MOVES, ev.SuspectNamed)


class FailedGate:
    """The failed gate's choices. `proceed` and `rollback` are the app's own keys (g and b)."""

    def __init__(self, cfg: Config, room: Room, link: Link, flags: Flags, flows: Flows, ui: Ui, *,
                 is_main: Callable[[], bool], proceed: Callable[[], None], rollback: Callable[[], None]) -> None:
        self._cfg = cfg
        self._room = room
        self.board = room.board
        self._link = link
        self._flags = flags
        self._flows = flows
        self._ui = ui
        self._is_main = is_main
        self._proceed = proceed
        self._rollback = rollback

    def on_event(self, e: ev.Event, seq: int = 0) -> None:
        """GATE_MOVES: a dialog about a gate no longer waiting closes; a gate that just failed offers its choices."""
        screen = self._ui.screen
        about = getattr(screen, "about", None)
        if type(e) is ev.SuspectNamed:
            if isinstance(screen, GateHaltDialog) and about is self.board.gate and about is not None:
                screen.show_suspect(self.suspect_text(about))
            return
        if about is not None and about is not self.board.gate:
            screen.dismiss(None)
        if type(e) is ev.GateWaiting and e.kind == ev.GATE_FAILED and self._room.may_act:
            self._ui.later(self._offer)

    def waiting(self) -> ev.GateWaiting | None:
        """The gate that failed and waits for the operator, if one does."""
        board = self.board
        gate = board.gate
        return gate if board.status == ev.R_WAITING and gate is not None and gate.kind == ev.GATE_FAILED else None

    def _offer(self) -> None:
        """A gate just failed: offer what to do, unless the operator is busy elsewhere (g offers it again)."""
        if self._is_main() and self.waiting() is not None:
            self._proceed()

    def proceed(self, offered: bool) -> bool:
        """g at a failed gate: the choices, the guarding kill switch first. False: not at a failed gate (g does
        what it does elsewhere)."""
        gate = self.waiting()
        if gate is None or not self._room.may_act or gate is self._room.proceeded or not offered:
            return False
        self._flows.run_once("proceed", lambda: self._halt_flow(gate))
        return True

    def suspect_text(self, gate: ev.GateWaiting) -> str:
        """The failed series' suspect lines, as the server named them (engine/breach.py), one a line."""
        return "\n".join(self.board.suspect_lines(gate.phase))

    def guarding_switches(self, gate: ev.GateWaiting) -> list[tuple[str, str]]:
        """(kill switch, the failed series it guards) for each guarding one that is not off yet."""
        failed = gate.failed_series()
        values = self._flags.values()
        return [(f.name, ", ".join(s for s in failed if s in f.guards)) for f in self._cfg.flags.guarding(failed)
                if values.get(f.name, f.default) != "off"]

    async def _halt_flow(self, gate: ev.GateWaiting) -> None:
        await self._flags.fresh()
        switches = self.guarding_switches(gate)
        name, guards = switches[0] if switches else (None, "")
        phase = self.board.phases[gate.phase - 1].name if 0 < gate.phase <= len(self.board.phases) else gate.name
        verdicts = [v.text(phase) for v in gate.not_holding()] + [
            f"kill switch: controlroom flag {n} off" for n, _ in switches]
        dialog = GateHaltDialog(
            f"The gate before {gate.name} failed: {' and '.join(gate.failed)}", "\n".join(verdicts),
            kill_switch=name, guards=guards, may_rollback=bool(self._cfg.deploy.rollback),
            suspect=self.suspect_text(gate))
        dialog.about = gate  # it closes once this is no longer the wait (the gate holds now, or was passed)
        choice = await self._ui.ask(dialog)
        if self.board.gate is not gate:  # answered meanwhile, elsewhere
            return
        if choice == "kill" and name:
            done = await self._flags.change(name, "off",
                                            reason=f"{' and '.join(gate.failed)} failed before {gate.name}")
            if done is not None and done["confirmed"]:  # on at least some hosts: their metrics turn
                self._start_recheck(gate, RECHECK_PATIENCE)
        elif choice == "recheck":
            self._start_recheck(gate, 0.0)
        elif choice == "rollback":
            self._rollback()
        elif choice == "proceed":
            await self.pass_failed(gate)

    async def pass_failed(self, gate: ev.GateWaiting) -> None:
        """Past a gate that does not hold only with a typed reason: the dialog names what failed and asks why."""
        failing = [v.failing() for v in gate.not_holding()] or list(gate.failed)
        board = self.board
        phase = board.phases[gate.phase - 1].name if 0 < gate.phase <= len(board.phases) else "the previous phase"
        dialog = OverrideDialog(
            f"Pass the failed {phase} gate and start {gate.name}?", failing,
            f"{gate.name} starts on {board.revision} anyway. The deploy log says GATE OVERRIDDEN with your name and "
            "your reason, and the deploy's result stays marked: DEPLOY OK past a failed gate.", "Pass the gate")
        dialog.about = gate
        reason = await self._ui.ask(dialog)
        if not reason or self.board.gate is not gate:  # cancelled, or answered meanwhile elsewhere
            return
        self._room.proceeded = gate
        if await self._link.send("proceed", reason=reason) is None:
            self._room.proceeded = None  # refused: g asks again

    def _start_recheck(self, gate: ev.GateWaiting, patience: float) -> None:
        """Checking again is not a decision: it runs beside the proceed flow, so g acts the moment the gate holds
        (the server may find it holding first)."""
        self._ui.run(self._recheck(gate, patience), group="gate-recheck", exclusive=True)

    async def _recheck(self, gate: ev.GateWaiting, patience: float) -> None:
        """Ask the server to check the gate again, every metrics interval for up to ``patience`` seconds (the
        metrics take a rate window to show a flipped flag); only the last try of a failing gate is logged."""
        what = " and ".join(gate.failed)
        if patience:
            self._ui.say(f"checking {what} again while the metrics turn (up to {patience:g} s)", title="Gate")
        until = time.monotonic() + patience
        interval = max(0.5, self._cfg.metrics.interval)
        while True:
            if self.board.gate is not gate:
                return  # it holds now (the server checks it too), or was answered: the header says which
            last = time.monotonic() + interval > until
            client = self._link.client
            try:
                reply = await client.request("gate_check", quiet=not last) if client else None
            except ControlroomError as e:
                if self.board.gate is gate:  # not merely the server having found it holding a moment earlier
                    self._ui.say(str(e), title="Not done", severity="error", timeout=10)
                return
            if reply is None or self.board.gate is not gate and not reply.get("passed"):
                return
            if reply.get("passed") or last:
                break
            await asyncio.sleep(interval)  # the next look at the metrics
        lines = "; ".join(str(x) for x in reply.get("lines", ()))
        if reply.get("passed"):
            self._ui.say(f"{lines} · g starts {gate.name}", title="Gate holds", timeout=15)
        else:
            self._ui.say(f"{lines} · g opens the choices again", title="Gate still fails", severity="warning",
                         timeout=15)
