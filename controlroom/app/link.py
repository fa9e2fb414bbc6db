"""The app's link to the control-room server: connect (starting the server when none answers), attach, and post
what the server says to the app as Textual messages; `send` carries one intent back.

Nothing here opens SSH, holds an engine or touches the board: the messages below are the whole interface, and the
app's handlers merge them (app.py). When the server goes away (killed, stopped) the link connects again, which
starts a new server; its snapshot shows a deploy that nothing drives as halted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from textual.message import Message

from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.server.client import Client, connect

RECONNECT = 1.0  # seconds between attempts to reach the server again
BURST = 1000  # events in one message at most (the app merges them in one go, between its repaints)


# ----------------------------------------------------------------------------------------------- what it posts
@dataclass
class Connected(Message):
    """The server answered: its hello says who we are and whether we may act."""

    client: Client


@dataclass
class Attached(Message):
    """The server sends its snapshot and every event after it from now on."""


@dataclass
class SnapshotArrived(Message):
    """The server's whole state (on attach, or after this client fell behind)."""

    msg: dict

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotArrived)  # a fresher snapshot says all an older one did


@dataclass
class EngineEvents(Message):
    """The events the server numbered that arrived together, in order: (event, its number). One message for a
    burst (a storm of host output costs one message, not one each)."""

    events: list[tuple[ev.Event, int]]


@dataclass
class PresenceChanged(Message):
    """Who is attached to the server and who drives its operation."""

    presence: object
    driver: object

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PresenceChanged)  # only the newest is so


@dataclass
class LinkLost(Message):
    """The server went away: the link connects again (a deploy it ran shows halted)."""


# ----------------------------------------------------------------------------------------------- the link
class Link:
    """The app's side of the socket: the connection, its messages posted to the app, and intents sent back."""

    def __init__(self, cfg: Config, *, read_only: bool, post: Callable[[Message], object],
                 say: Callable[..., None], ask_anyway: Callable[[str], Awaitable[bool]],
                 closing: Callable[[], bool], kind: Callable[[], str] = lambda: "app") -> None:
        """kind: what this client is to the server's presence list ("app", or "web" under textual-serve)."""
        self._cfg = cfg
        self._kind = kind
        self._read_only = read_only
        self._post = post
        self._say = say
        self._ask_anyway = ask_anyway
        self._closing = closing
        self.client: Client | None = None

    async def run(self) -> None:
        """Connect, attach, follow; connect again whenever the server goes away, until the app closes."""
        said = False
        while not self._closing():
            try:
                client = await connect(self._cfg, read_only=self._read_only, kind=self._kind())
            except (ControlroomError, OSError) as e:  # OSError: a server dying as we knocked (reset)
                if not said:
                    self._say(str(e), title="Cannot reach the control-room server", severity="error", timeout=15)
                    said = True
                await asyncio.sleep(RECONNECT)
                continue
            if self._closing():
                await client.close()
                return
            said = False
            self.client = client
            client.ask_anyway = self._ask_anyway  # another person drives the deploy: the operator is asked first
            self._post(Connected(client))
            try:
                await client.request("attach")  # a fresh snapshot, then every event after it
                self._post(Attached())
                await self._follow(client)
            except ControlroomError:
                pass
            finally:
                self.client = None
                await client.close()
            if self._closing():
                return
            self._post(LinkLost())
            await asyncio.sleep(RECONNECT)

    async def _follow(self, client: Client) -> None:
        post = self._post
        messages = client.messages
        while True:
            msg = await messages.get()
            burst: list[tuple[ev.Event, int]] = []
            while True:  # what has arrived already, in order: its events go in one message
                op = msg.get("op")
                if op == "event":
                    try:
                        burst.append((ev.from_wire(msg["event"]), int(msg.get("seq") or 0)))
                    except (ValueError, KeyError, TypeError):
                        pass
                else:
                    if burst:
                        post(EngineEvents(burst))
                        burst = []
                    if op == "snapshot":
                        post(SnapshotArrived(msg))
                    elif op == "presence":
                        post(PresenceChanged(msg.get("presence"), msg.get("driver")))
                    elif op == "closed":
                        return
                if messages.empty() or len(burst) >= BURST:
                    break
                msg = messages.get_nowait()
            if burst:
                post(EngineEvents(burst))

    async def send(self, op: str, **args) -> dict | None:
        """One intent to the server; its refusal or failure is shown as the server's one line. None when refused."""
        client = self.client
        if client is None:
            self._say("not connected to the control-room server (connecting again)", severity="error")
            return None
        try:
            return await client.request(op, **args)
        except ControlroomError as e:
            self._say(str(e), title="Refused" if "refused" in str(e) else "Not done", severity="error", timeout=10)
            return None

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()  # the server and its deploy go on
