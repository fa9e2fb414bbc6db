"""The control-room socket's protocol: newline-delimited JSON, one object a line.

A client says ``{"op": "hello", "version": VERSION, "read_only": false}`` first; the server answers with its own
hello (``ok`` false and an ``error`` line when the versions differ). Then the client sends requests, each with an
``id``; the server answers each with ``{"id": N, "ok": true, ...}`` or ``{"id": N, "ok": false, "error": "...",
"exit": CODE}``. After ``{"op": "attach", "since": SEQ}`` the server sends ``{"op": "snapshot", "seq": N, ...}``
(or only the events after SEQ when it still has them), then ``{"op": "event", "seq": N, "event": {...}}`` for
every event, numbered without gaps (this server's numbers; on a shared journal a journaled event also has
``"event_id": ID``, its id in the journal, the same from every bastion's server). A client that fell behind gets a
fresh snapshot instead of the events it missed.

What is in each message, and the type of every request's field, is wire.py's: a field of another type, a missing
required one or an ``id`` that is neither a number nor a string gets an error answer naming the field (exit 2),
and the connection goes on. A line longer than REQUEST_MAX, or one that is not a JSON object, gets an error answer
and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
import pwd
import socket
import struct
from dataclasses import dataclass

from controlroom.core.errors import ControlroomError, UsageError
from controlroom.core.identity import environ_of

VERSION = 1
MAX_LINE = 4 << 20  # a snapshot of 5,000 hosts fits with room to spare
REQUEST_MAX = 256 << 10  # what the server reads in one line from a client: a flag push to 5,000 named hosts fits


class ProtocolError(ControlroomError):
    """The other side sent something that is not our protocol."""


class VersionMismatch(UsageError):
    """A client and a server of different versions: one line, exit 2."""


def encode(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


async def read_msg(reader: asyncio.StreamReader, limit: int = MAX_LINE) -> dict | None:
    """The next message, or None at end of stream; ProtocolError for a line over ``limit`` (the reader's own
    limit), one that is not JSON, or one that is not an object."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise ProtocolError("the connection ended in the middle of a message") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"a message longer than {limit} bytes") from None
    try:
        msg = json.loads(line)
    except ValueError:
        raise ProtocolError("a line that is not JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a message that is not a JSON object")
    return msg


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a Unix socket, from the kernel (SO_PEERCRED), not from what it says."""

    pid: int
    uid: int
    user: str


def peer_of(sock: socket.socket) -> Peer:
    pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    if uid == 0:
        # root acting for a person (sudo): the person is SUDO_USER of that process, as identity.current_user
        # believes it for uid 0 only; read from the kernel's copy of its environment, not from its messages
        sudo = environ_of(pid).get("SUDO_USER")
        if sudo:
            user = sudo
    return Peer(pid, uid, user)
