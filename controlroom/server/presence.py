"""Presence: who is attached to the control-room server and who drives the operation it runs.

Each client says in its hello what it is (app, cli, web); the server knows the rest: the user from the socket's
peer credentials and the origin as it derives it (ops.origin_of). The driver is the client that sent the intent
that started the operation, or the latest decision on it (ops.Operations.handlers says which requests drive and
which decide). A second person's decision on an operation another person drives, while that person is attached, is
refused with DrivenElsewhere ("alice is driving r2307 from 10.0.0.5; act anyway?") unless the request says
``anyway``: the app and the CLI ask their person first, and send it again on a yes.

On the wire (wire.presence, wire.present): the snapshot and ``{"op": "presence", "presence": [...], "driver": {...}
| None}`` carry the list, each ``{"no", "user", "origin", "client", "role": "driving" | "watching"}``; the hello's
``client_no`` says which one a client is.
"""

from __future__ import annotations

from collections.abc import Iterable

from controlroom.core.errors import ControlroomError
from controlroom.core.text import clean
from controlroom.server import wire

CLIENT_KINDS = ("app", "cli", "web")


class DrivenElsewhere(ControlroomError):
    """Another person drives the operation this intent would act on: asked first (exit 3 when nobody can be)."""

    exit_code = 3
    driven = True


def kind_of(hello: dict) -> str:
    """What a client said it is in its hello (an unknown word counts as the CLI)."""
    kind = hello.get("client")
    return kind if kind in CLIENT_KINDS else "cli"


class Presence:
    """The server's record of who drives; the list itself is made from the clients each time it is asked for."""

    def __init__(self) -> None:
        self.driver: dict | None = None
        self._made = 0
        self._sent: list | None = None

    def next_no(self) -> int:
        self._made += 1
        return self._made

    def drove(self, c) -> None:
        """c sent the intent that started the operation, or a decision on it: it drives it now."""
        self.driver = wire.present(no=c.no, user=c.peer.user, origin=c.origin, client=c.kind)

    def check(self, c, clients: Iterable, busy: bool, revision: str | None) -> None:
        """Raise DrivenElsewhere when another person drives the operation running now."""
        d = self.driver if busy else None
        if d is None or d["user"] == c.peer.user or not any(o.no == d["no"] and o.attached for o in clients):
            return  # nobody else, or they left (a parked or detached deploy is nobody's to watch): just act
        where = f" from {d['origin']}" if d.get("origin") else ""
        raise DrivenElsewhere(clean(f"{d['user']} is driving {revision or 'the deploy'}{where}; act anyway?", 300))

    def message(self, clients: Iterable, busy: bool) -> dict:
        """The attached clients, in the order they came, and who drives what runs now."""
        d = self.driver if busy else None
        listed = [wire.present(no=c.no, user=c.peer.user, origin=c.origin, client=c.kind,
                               role="driving" if d is not None and d["no"] == c.no else "watching")
                  for c in sorted(clients, key=lambda c: c.no) if c.attached]
        return {"presence": listed, "driver": d}

    def changed(self, clients: Iterable, busy: bool) -> dict | None:
        """The presence message to send when it differs from the last one sent, else None."""
        msg = self.message(clients, busy)
        key = [msg["presence"], msg["driver"]]
        if key == self._sent:
            return None
        self._sent = key
        return wire.presence(msg["presence"], msg["driver"])
