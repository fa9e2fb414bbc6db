"""The server's door: who gets a connection and for how long, before any request is read (server.py).

A connection counts from the moment it is accepted, hello said or not. There are at most ``max_connections`` of
them (all people together, within what the hosts leave of the open-files limit) and ``MAX_PER_USER`` from one
person (by peer credentials), so nobody can lock the operators out or take the files the running deploy's next
hosts need; one past a cap is told why in one line and closed. A connection that has not said hello within
HELLO_WAIT is closed with a line saying so. What it may do once in is the server's ([access]).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import resource
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from controlroom.core.errors import UsageError
from controlroom.core.text import clean
from controlroom.server import protocol as pr
from controlroom.server import wire

HELLO_WAIT = 5.0  # a connection that has not said hello by then is closed
MAX_CONNECTIONS = 256  # connections at once, all people together (each is an open file of the server)
MAX_PER_USER = 32  # connections at once from one person: one cannot lock the others out
# open files the SSH pool may hold a host: its connection, and as much again for one being replaced (measured by
# bench/scale.py: 1.04 a host with every connection open). At 5,000 hosts under a hard limit of 20,000 the 4 a
# host ssh.raise_nofile_limit asks for left the clients 8 places, fewer than an app and 10 watchers
FILES_PER_HOST = 2
SAY_EVERY = 5.0  # a flood of refusals is one line in the log this often
DIR_MODE = 0o710  # the state directory: its owner's; the team's group may only pass through it to the socket
FILE_MODE = 0o600  # everything in it: the journal, the locks, the log


def may_watch(access, user: str) -> bool:
    """[access]: watchers (and operators) when watchers are named, else everyone who reaches the socket."""
    return not access.watchers or user in access.watchers or user in access.operators


def may_act(access, user: str) -> bool:
    """[access]: operators when named, else everyone who may watch."""
    return not access.operators or user in access.operators


def check_access(access, peer: pr.Peer, acting: bool, read_only: bool) -> None:
    """UsageError (exit 2) when this request is not peer's to make, by [access] as it stands now."""
    if not may_watch(access, peer.user):
        raise UsageError(f"refused: {clean(peer.user, 40)} is not among [access] watchers or operators")
    if acting and (read_only or not may_act(access, peer.user)):  # whatever its fields
        why = (f"{clean(peer.user, 40)} is not among [access] operators" if not may_act(access, peer.user) else
               "this client attached read-only")
        raise UsageError(f"refused: {why}; you may watch, not act")


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def claim_state(state: Path) -> None:
    """Raise UsageError, one line naming the path, unless the state directory is this user's alone: owned by it
    and writable by nobody else, every file in it owned by it. Files of ours that others may read or write are
    made FILE_MODE (left so by an older controlroom, which shared them with the team's group)."""
    me = os.geteuid()
    st = state.stat()
    if st.st_uid != me:
        raise UsageError(f"{state}: the state directory belongs to {_name(st.st_uid)}, not to {_name(me)} who runs "
                         f"the server; run the server as {_name(st.st_uid)}, or `chown -R {_name(me)} {state}`")
    if st.st_mode & 0o022:
        who = "others" if st.st_mode & 0o002 else "its group"
        raise UsageError(f"{state}: the state directory is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}); "
                         f"it must be the server's alone: `chmod {DIR_MODE:04o} {state}` (the team's group still "
                         "reaches the socket)")
    with os.scandir(state) as entries:
        for e in entries:
            if not e.is_file(follow_symlinks=False):
                continue
            fst = e.stat(follow_symlinks=False)
            if fst.st_uid != me:
                raise UsageError(f"{e.path}: owned by {_name(fst.st_uid)}, not by {_name(me)} who runs the server; "
                                 f"`chown {_name(me)} {e.path}`, or move it away")
            if fst.st_mode & 0o077:
                os.chmod(e.path, FILE_MODE)


class Door:
    def __init__(self) -> None:
        self.conns: dict[object, pr.Peer] = {}  # every open connection, hello said or not
        self.max_connections = MAX_CONNECTIONS
        self.refused = 0
        self._said = 0.0

    def fit_open_files(self, hosts: int) -> None:
        """Keep the total under what the SSH pool leaves of the open-files limit (ssh.raise_nofile_limit)."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY:
            self.max_connections = max(8, min(MAX_CONNECTIONS, soft - FILES_PER_HOST * hosts - 64))

    def refusal(self, peer: pr.Peer) -> str | None:
        """Why a new connection from peer is turned away (a cap), or None."""
        if len(self.conns) >= self.max_connections:
            return (f"refused: the server has {len(self.conns)} connections, its limit; try again when some close "
                    "(`controlroom server status` counts them)")
        mine = sum(1 for p in self.conns.values() if p.user == peer.user)
        if mine >= MAX_PER_USER:
            return (f"refused: {clean(peer.user, 40)} has {mine} connections to the server, the limit for one "
                    "person; close some (an app or a follower left open) and try again")
        return None

    async def refuse(self, writer: asyncio.StreamWriter, peer: pr.Peer, why: str) -> None:
        self.refused += 1
        if time.monotonic() - self._said > SAY_EVERY:
            self._said = time.monotonic()
            print(f"controlroom server: {why} (pid {peer.pid}; {self.refused} refused so far)", file=sys.stderr,
                  flush=True)
        await say_and_close(writer, wire.hello_refused(why))

    @contextlib.contextmanager
    def holding(self, peer: pr.Peer) -> Iterator[None]:
        key = object()
        self.conns[key] = peer
        try:
            yield
        finally:
            del self.conns[key]


async def say_and_close(writer: asyncio.StreamWriter, msg: dict) -> None:
    """Write one last message (waiting at most 2 s for a reader that does not read), then close."""
    writer.write(pr.encode(msg))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), 2)
    writer.close()


async def read_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict | None:
    """The client's hello, checked; or None once the connection was answered why not (late, of the wrong shape,
    another version) and closed. ProtocolError (a line too long, not a JSON object) is the caller's."""
    try:
        hello = await asyncio.wait_for(pr.read_msg(reader, pr.REQUEST_MAX), HELLO_WAIT)
        if hello is None or hello.get("op") != "hello":
            writer.close()
            return None
        wire.check_request(hello)
    except TimeoutError:
        await say_and_close(writer, wire.hello_refused(f"no hello within {HELLO_WAIT:g} s: closed"))
        return None
    except wire.BadRequest as e:
        await say_and_close(writer, wire.hello_refused(str(e), e.exit_code))
        return None
    if hello.get("version") != pr.VERSION:
        await say_and_close(writer, wire.hello_refused(
            f"this server speaks version {pr.VERSION} of the protocol and the client {hello.get('version')}: use the "
            "same controlroom for both (`controlroom server stop` ends an old server)"))
        return None
    return hello
