"""The flags pane's controller: the pane kept current, a flag flipped from the pane, a kill switch from anywhere in
three keys plus the confirm, a flag's history, and the palette's one command a kill switch.

A flag change never waits for the fleet lock or a running deploy (the server pushes it on its priority lane), so
nothing here asks the rollout's state. Each change names the flag's version the operator saw (compare-and-set): a
change someone else made meanwhile is refused naming them, and the operator is asked again with what is now true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from controlroom.app.coalesce import Coalesced
from controlroom.app.link import Link
from controlroom.app.room import Room
from controlroom.app.ui import Flows, Ui
from controlroom.config.flags import flag_value
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.core.text import clean
from widgets.dialogs import PromptDialog
from widgets.flag_dialogs import FlagConfirmDialog, FlagHistoryScreen, KillSwitchPicker
from widgets.flags import FlagsPane

FLAGS_POLL = 5.0  # seconds between looks at the receipts (stragglers confirm late)
VERIFY_EVERY = 60.0  # seconds between read-backs of every host's flags file (an operator's app only)


def _what(value: str) -> str:
    return value.upper() if value in ("on", "off") else f"to {value}"


class Flags:
    """The flags as the server last said, and every flag change the operator makes."""

    def __init__(self, room: Room, link: Link, flows: Flows, ui: Ui, pane: Callable[[], FlagsPane | None]) -> None:
        self._room = room
        self._link = link
        self._flows = flows
        self._ui = ui
        self._pane = pane
        self.state: dict | None = None
        self.verified: list[dict] | None = None
        self._look = Coalesced(self._fetch, lambda work: ui.run(work, name="flags", group="flags"))

    # ------------------------------------------------------------------------------------------- reading
    def poll(self) -> None:
        """The slow timer: receipts change when stragglers confirm."""
        if self._link.client is not None:
            self.want()

    def want(self) -> None:
        """Read `flags` from the server and show it (one request at a time; a wish meanwhile asks again)."""
        self._look.want()

    def on_event(self, e: ev.Event, seq: int = 0) -> None:
        self.want()  # FlagChanged

    async def _fetch(self) -> bool:
        client = self._link.client
        if client is None or self._ui.closing:
            return False
        try:
            self.state = await client.request("flags")
        except (ControlroomError, TypeError, KeyError):
            return False
        pane = self._pane()
        if pane is not None:
            pane.show(self.state)
        return True

    def poll_verify(self) -> None:
        """The slow timer: read every host's file back and name the drifted (operators' apps only: a room of
        watchers does not multiply the fleet's load)."""
        if self._link.client is not None and self._room.may_act:
            self.verify()

    def verify(self) -> None:
        self._ui.run(self._verify(), name="flags verify", group="flags-verify", exclusive=True)

    async def _verify(self) -> None:
        client = self._link.client
        if client is None:
            return
        try:
            rows = (await client.request("flags_verify"))["hosts"]
        except (ControlroomError, KeyError, TypeError):
            return
        self.verified = rows
        pane = self._pane()
        if pane is not None:
            pane.show_verified(rows)

    async def fresh(self) -> dict | None:
        """The flags as the server has them now (before a dialog that depends on them)."""
        client = self._link.client
        if client is None:
            return self.state
        try:
            self.state = await client.request("flags")
            pane = self._pane()
            if pane is not None:
                pane.show(self.state)
        except ControlroomError as e:
            self._ui.say(str(e), title="Flags", severity="error")
        return self.state

    def values(self) -> dict[str, str]:
        """flag -> its value, as last read."""
        return {r["name"]: r["value"] for r in (self.state or {}).get("flags", ())}

    # ------------------------------------------------------------------------------------------- the palette
    def kill_switch_commands(self) -> Iterator[tuple[str, str, Callable[[], None]]]:
        """(title, help, run): one a kill switch ("Kill switch beehive (now on)"), for an operator."""
        if not self._room.may_act or not self.state:
            return
        for r in self.state.get("flags", ()):
            if r["kind"] == "kill_switch":
                name = clean(r["name"], 40)
                to = "OFF" if r["value"] != "off" else "ON"
                yield (f"Kill switch {name} (now {clean(str(r['value']), 8)})",
                       f"Turn {name} {to} on every host (a confirmation follows)",
                       lambda name=r["name"]: self._flows.run_once("flag", lambda: self.change(name)))

    # ------------------------------------------------------------------------------------------- acting
    def kill_switch(self) -> None:
        """`k`, from anywhere: pick a kill switch (filtered as you type), then confirm."""
        if self._room.may_act:
            self._flows.run_once("flag", self._kill_flow)

    async def _kill_flow(self) -> None:
        state = await self.fresh()
        if state is None:
            return
        name = await self._ui.ask(KillSwitchPicker(state["flags"]))
        if name:
            await self.change(name)

    def _refused(self) -> None:
        """Read-only: the intent is sent anyway, so the server's refusal says why."""
        self._ui.run(self._link.send("flag_set"), group="refused")

    def flip(self, flag: str) -> None:
        if not self._room.may_act:
            self._refused()
        else:
            self._flows.run_once("flag", lambda: self.change(flag))

    def percent(self, flag: str) -> None:
        if not self._room.may_act:
            self._refused()
        else:
            self._flows.run_once("flag", lambda: self._percent_flow(flag))

    async def _percent_flow(self, name: str) -> None:
        while True:
            text = await self._ui.ask(PromptDialog(
                f"Set {name} to a percentage", "The application lets in that share of users (bucketed by user id).",
                placeholder="e.g. 25%"))
            if not text:
                return
            try:
                value = flag_value(text if text.strip().endswith("%") else f"{text.strip()}%")
            except ValueError as e:
                self._ui.say(f"{name}: {e}", severity="error")
                continue
            await self.change(name, value)
            return

    async def change(self, name: str, value: str | None = None, *, reason: str = "") -> dict | None:
        """Confirm, then set the flag on every host (value None: on <-> off, as the operator saw it). A
        compare-and-set refusal says who changed it and asks again, for the same value, with the flag as it is now.
        Returns the server's receipt, or None."""
        note = ""
        while True:
            state = self.state if note == "" and self.state else await self.fresh()
            client = self._link.client
            if state is None or client is None:
                return None
            row = next((r for r in state["flags"] if r["name"] == name), None)
            if row is None:
                self._ui.say(f"no flag {name!r} in the server's config", severity="error")
                return None
            new = value = value or ("on" if row["value"] == "off" else "off")  # kept if asked again
            n = int(state["hosts"])
            kind = "kill switch" if row["kind"] == "kill_switch" else "flag"
            body = (note + "\n\n" if note else "") + (
                f"Turn {name} {_what(new)} on {n} hosts (now {row['value']}). The flags file is replaced on every "
                "host; the receipt shows each host that confirmed. The deploy log records who and why.")
            said = await self._ui.ask(FlagConfirmDialog(
                f"Turn the {kind} {name} {_what(new)}?", body, f"Turn {_what(new)}", reason=reason))
            if said is None:
                return None
            reason = said
            client = self._link.client
            if client is None:
                return None
            try:
                done = await client.request("flag_set", flag=name, value=new, reason=reason, expect=row["version"])
            except ControlroomError as e:
                now = await self.fresh()
                now_row = next((r for r in (now or {}).get("flags", ()) if r["name"] == name), None)
                if now_row is not None and now_row["version"] != row["version"]:
                    note = clean(str(e))  # who changed it, when, to what: confirm again on what is true now
                    continue
                self._ui.say(str(e), title="Not done", severity="error", timeout=10)
                return None
            self._receipt(done)
            self.want()
            return done

    def _receipt(self, done: dict) -> None:
        line = (f"{done['flag']} {done['old']} -> {done['new']} on {done['confirmed']}/{done['total']} hosts "
                f"in {done['seconds']:.1f} s")
        for host, cls, why in done["failed"][:5]:
            line += f" · {host} {cls}: {why}"
        self._ui.say(line, title="Flag", severity="warning" if done["failed"] else "information", timeout=10)

    def history(self, flag: str) -> None:
        self._flows.run_once("flag_history", lambda: self._history_flow(flag))

    async def _history_flow(self, name: str) -> None:
        reply = await self._link.send("flag_history", flag=name)
        if reply is not None:
            await self._ui.ask(FlagHistoryScreen(name, list(reply.get("changes") or ())))
