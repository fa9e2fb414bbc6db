"""A client of the control-room server (server.py): connect (starting the server when none answers: starter.py),
say hello, send requests and read the numbered events.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from controlroom.config.config import Config
from controlroom.core.errors import ControlroomError
from controlroom.server import protocol as pr
from controlroom.server import wire
from controlroom.server.anyway import terminal_anyway
from controlroom.server.starter import Starting, begin
from controlroom.server.statedir import last_line, socket_path

START_WAIT = 15.0
LISTENING = " listening on "  # what the server prints once its socket accepts (server.serve)


class NoServer(ControlroomError):
    """No server answers for this state directory (and none was to be started)."""


class Client:
    """One connection. ``request`` sends and waits for its reply; ``messages`` is everything else, in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: dict) -> None:
        self.reader = reader
        self.writer = writer
        self.hello = hello
        self.messages: asyncio.Queue = asyncio.Queue()
        self._pending: dict[int, asyncio.Future] = {}
        self._next = 0
        self._reader_task = asyncio.ensure_future(self._read())
        self.closed = asyncio.Event()
        # asked when the server says another person drives what an intent acts on ("alice is driving r2307 from
        # 10.0.0.5; act anyway?"): True sends the intent again with "anyway"; None (the default) refuses
        self.ask_anyway: Callable[[str], Awaitable[bool]] | None = None

    @property
    def may_act(self) -> bool:
        return bool(self.hello.get("may_act"))

    async def _read(self) -> None:
        try:
            while (msg := await pr.read_msg(self.reader)) is not None:
                rid = msg.get("id")
                if rid is not None and rid in self._pending:
                    fut = self._pending.pop(rid)
                    if not fut.done():
                        fut.set_result(msg)
                else:
                    self.messages.put_nowait(msg)
        except (pr.ProtocolError, ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ControlroomError("the server went away before it answered"))
            self.messages.put_nowait({"op": "closed"})

    async def request(self, op: str, **args) -> dict:
        """Send one request; return the reply, or raise ControlroomError with the server's line and exit code.

        When the server answers that another person drives the deploy, ``ask_anyway`` (if set) is asked the
        server's question; a yes sends the request again, acting anyway."""
        try:
            return await self._request(op, **args)
        except ControlroomError as e:
            if not getattr(e, "driven", False) or self.ask_anyway is None or args.get("anyway"):
                raise
            if not await self.ask_anyway(str(e)):
                raise
        return await self._request(op, **args, anyway=True)

    async def _request(self, op: str, **args) -> dict:
        self._next += 1
        rid = self._next
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.writer.write(pr.encode(wire.request(rid, op, args)))
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            raise ControlroomError("the server went away") from None
        reply = await fut
        if not reply.get("ok"):
            err = ControlroomError(reply.get("error") or "the server refused")
            err.exit_code = int(reply.get("exit", 1))
            err.driven = bool(reply.get("driven"))  # another person drives it: ask_anyway may be asked
            raise err
        return reply

    async def close(self) -> None:
        self._reader_task.cancel()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def _open(path: Path, read_only: bool, kind: str = "cli") -> Client:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=pr.MAX_LINE)
    # kind: what this client is (app, cli, web), for the presence list the server keeps
    writer.write(pr.encode(wire.client_hello(read_only=read_only, client=kind)))
    await writer.drain()
    hello = await pr.read_msg(reader)
    if hello is None:
        writer.close()
        raise ConnectionRefusedError("the server closed the connection at hello")
    if not hello.get("ok"):
        writer.close()
        raise pr.VersionMismatch(hello.get("error") or "the server refused the hello")
    return Client(reader, writer, hello)


async def connect(cfg: Config, *, start: bool = True, read_only: bool = False, kind: str = "cli",
                  warm: bool = False, starting: Starting | None = None) -> Client:
    """A connection to the server of cfg's state directory, starting one when none answers (and start).

    ``kind`` says what this client is (app, cli, web). ``warm``: a server started here opens the fleet's
    connections at once (`serve --warm`; for a deploy, resume or rollback, whose first work is on the hosts). A
    CLI client asks its person on a terminal before acting on a deploy another person drives (`cli_answers`).
    ``starting``: what starter.begin() did before this (a server it spawned is waited for here)."""
    client = await _connect(cfg, start=start, read_only=read_only, kind=kind, warm=warm, starting=starting)
    if kind == "cli":
        client.ask_anyway = terminal_anyway
    return client


async def _connect(cfg: Config, *, start: bool, read_only: bool, kind: str, warm: bool = False,
                   starting: Starting | None = None) -> Client:
    path = socket_path(Path(cfg.state.dir))
    for _ in range(3):
        if starting is None or starting.proc is None:
            try:
                return await _open(path, read_only, kind)
            except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
                # no server, or one still dying (it reset us at hello): start (or find) a live one
                if not start:
                    raise NoServer(f"no server runs for {cfg.state.dir}") from None
            starting = await asyncio.to_thread(begin, cfg, warm=warm)
            continue
        try:
            return await _await_server(starting.proc, path, Path(cfg.state.dir), read_only, kind)
        finally:
            starting.done()
    raise ControlroomError(f"the server of {cfg.state.dir} accepts connections but closes them at hello; see "
                           f"{Path(cfg.state.dir) / 'server.log'}")


async def _await_server(proc: subprocess.Popen, path: Path, state: Path, read_only: bool, kind: str) -> Client:
    """Connect once the server says it listens; if it exits first, raise what it said (its exit code, one line)."""
    deadline = time.monotonic() + START_WAIT
    said = await _server_said(proc, deadline)
    while True:
        with contextlib.suppress(FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            return await _open(path, read_only, kind)
        # it said nothing of listening: it exited (what it said is why), or another server took the state
        # directory (it exits 0 at once, quietly), or its pipe broke; look for a socket until the deadline
        if proc.poll() is not None and proc.returncode != 0:
            why = said[-1].removeprefix("controlroom: ") if said else last_line(state / "server.log")
            err = ControlroomError(f"the server could not start: {why}")
            err.exit_code = proc.returncode if proc.returncode in (1, 2, 3) else 1
            raise err
        if time.monotonic() > deadline:
            raise ControlroomError(f"the server did not answer within {START_WAIT:g} s; see "
                                   f"{state / 'server.log'}")
        await asyncio.sleep(0.05)


async def _server_said(proc: subprocess.Popen, deadline: float) -> list[str]:
    """The server's output until it says it listens (server.serve prints LISTENING once its socket accepts), or
    until its pipe ends (it exited, or moved its output to its log) or the deadline: the lines it said. Waiting on
    the pipe instead of polling for the socket connects as soon as the server can answer."""
    reader = asyncio.StreamReader(limit=pr.MAX_LINE)
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proc.stdout)
    except OSError:
        return []
    said: list[str] = []
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(reader.readline(), left)
            except TimeoutError:
                break
            except ValueError:  # a line longer than the limit: dropped, the next one is read
                continue
            if not line:
                break
            if text := line.decode(errors="replace").strip():
                said.append(text)
            if LISTENING in text:
                break
    finally:
        transport.close()
    return said
