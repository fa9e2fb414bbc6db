"""The control-room server: one per state directory. It owns the engine, the SSH pool (warm between operations) and
the journal writer (through ops.Operations and configwatch.LiveConfig); the app and the CLI are its clients over
STATE/control.sock (protocol.py).

Every event the journal commits (and each host's output) gets the next number and goes to every attached client;
the board (board.py) kept here gives a snapshot to anyone who attaches or falls behind. A slow client never slows
the engine: its queue is bounded and, when full, it gets a fresh snapshot instead. Who asks comes from the socket's
peer credentials. The server exits after ``idle`` seconds with no operation running and no client attached.

The server keeps the socket, the clients, the numbered stream and the snapshot; what a request does is the
operations' (ops.py): each request goes through their one table of handlers, which says whether it is a read or an
intent and who may make it. What every message holds is wire.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import time
import traceback
from collections import deque
from pathlib import Path

from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core import startup
from controlroom.core.errors import ControlroomError, JournalError, UsageError
from controlroom.core.identity import Actor
from controlroom.core.text import clean
from controlroom.engine.board import Board
from controlroom.journal.journal import Journal
from controlroom.journal.schema import journal_error
from controlroom.server import door as serverdoor
from controlroom.server import protocol as pr
from controlroom.server import views, wire
from controlroom.server.configwatch import LiveConfig
from controlroom.server.ops import Handler, Operations, origin_of
from controlroom.server.presence import Presence, kind_of
from controlroom.server.statedir import GO, make_state_dir, socket_path

QUEUE = 2000  # events buffered per client before it is given a snapshot instead
WRITE_BUFFER = 1 << 20  # bytes a client has not read yet before it is given a snapshot instead
RING = 5000  # events kept for clients that reconnect with the number they have
IDLE = 600.0
FOLLOW_EVERY = 0.1  # seconds between two looks at what the other bastions' servers committed (a shared journal)
RESYNC: dict = {}  # queued for a client that fell behind: the pump sends it a fresh snapshot instead (never sent)


class ServerRunning(ControlroomError):
    """Another server already answers for this state directory."""

    exit_code = 0


class _Client:
    def __init__(self, peer: pr.Peer, writer: asyncio.StreamWriter, read_only: bool, kind: str = "cli",
                 origin: str | None = None, no: int = 0) -> None:
        self.peer = peer
        self.writer = writer
        self.read_only = read_only
        self.kind = kind  # what it said it is in its hello: app, cli or web (presence)
        self.origin = origin  # where its person is, as the server derives it (ops.origin_of)
        self.no = no  # its number on this server, for the presence list
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE)
        self.attached = False
        self.resync = False
        self.task: asyncio.Task | None = None

    @property
    def actor(self) -> Actor:
        """Who acts through this client: its peer's user, from its session's origin (what every journal write it
        asks for records)."""
        return Actor(self.peer.user, self.origin)

    def put(self, msg: dict, data: bytes | None = None) -> None:
        """Send msg (data: its encoding, made once for every client) now when nothing waits before it, else queue
        it; a client whose socket holds WRITE_BUFFER unread bytes or whose queue is full has fallen behind."""
        if self.resync:
            return
        transport = self.writer.transport
        if self.queue.empty():
            # nothing queued means everything taken from the queue is already in the transport: order holds.
            # Writing now instead of waking the pump is what keeps an event's latency under a millisecond while
            # the engine finishes a batch of hosts (bench/server.py).
            if transport.is_closing():
                return
            if transport.get_write_buffer_size() < WRITE_BUFFER:
                self.writer.write(data if data is not None else pr.encode(msg))
                return
            return self._fall_behind()
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._fall_behind()

    def _fall_behind(self) -> None:
        # drop what it has not read; it gets a snapshot (and the events after it) instead
        self.resync = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(RESYNC)


class Server:
    """The socket, its clients and the numbered stream; every request goes through the operations' table."""

    def __init__(self, cfg: Config, *, idle: float = IDLE, metrics: tuple[str, int] | None = None,
                 warm: bool = False) -> None:
        self.idle = idle
        self.warm = warm  # serve --warm: open the fleet's connections as soon as it listens (a deploy's spawn)
        self.metrics_at = metrics  # --metrics HOST:PORT: the exporter listens there (exporter.py)
        self.exporter = None
        self.state = Path(cfg.state.dir)
        self.path = socket_path(self.state)
        self.seq = 0
        self.ring: deque[dict] = deque(maxlen=RING)
        self.board = Board()
        self.board.plan([(p.name, p.hosts, p.max_failed, p.auto) for p in cfg.phases])
        self.clients: set[_Client] = set()
        self.door = serverdoor.Door()  # the caps on connections, by peer credentials
        # the one config and what is made of it (pool, flags, notifier); chat failures join the stream
        self.live = LiveConfig(cfg, self.board, say=self.broadcast, on_chat_failure=self._committed)
        self.journal: Journal | None = None
        self.ops: Operations | None = None  # made at start, once the journal is open
        self.handlers: dict[str, Handler] = {}
        self.started = time.time()
        self._last_busy = time.monotonic()
        self._stop = asyncio.Event()
        self._lock_fd: int | None = None
        self._followed: int | None = None  # a shared journal: the last event id when this server began to follow it
        self._server: asyncio.AbstractServer | None = None
        self.warning: str | None = None
        self.presence = Presence()  # who is attached, who drives (presence.py)

    @property
    def cfg(self) -> Config:
        return self.live.cfg

    # ------------------------------------------------------------------------------------------ life
    async def start(self) -> None:
        """Listen, or raise: ServerRunning when another server holds this state directory, JournalError (exit 1)
        naming the path and what to do when its files cannot be made (read-only, full), UsageError (exit 2) when
        this one cannot start (socket path too long)."""
        try:
            make_state_dir(self.state)
            serverdoor.claim_state(self.state)  # or one line naming what is not the server's alone
            fd = os.open(self.state / "server.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:  # the state directory's files cannot be made: which, why and what to do
            raise journal_error(e, self.state / "journal.db") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServerRunning(f"a server already runs for {self.state}") from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise journal_error(e, self.state / "journal.db") from None
        self.journal = Journal.open(self.state, url=self.cfg.state.journal)
        self._followed = self.journal.follow() if self.journal.shared else None  # before anything of ours is written
        self.journal.subscribe(self._committed)
        views.adopt_last(self.board, self.journal)  # a server that starts after a deploy shows how it stands
        self.live.start(self.journal)
        self.ops = Operations(self.live, self.journal, self.board, publish=self._committed, broadcast=self.broadcast,
                              seq=lambda: self.seq, stop=self.stop, on_end=self.live.settle)
        self.handlers = self.ops.handlers(attach=self._attach, status=self._status)
        if os.environ.get("SSH_AUTH_SOCK") and not self.cfg.ssh.identity_files:
            self.warning = ("warning: the server's only key source is the ssh-agent of this session "
                            f"({os.environ['SSH_AUTH_SOCK']}); when that session ends, new connections fail")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # we hold server.lock: any socket file here is a dead server's
        old = os.umask(0o117)  # the socket is 0660: the team's group attaches, nobody else
        try:
            self._server = await asyncio.start_unix_server(self._serve_client, path=str(self.path),
                                                           limit=pr.REQUEST_MAX)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        self.door.fit_open_files(len(self.cfg.hosts))
        if self.metrics_at is not None:  # the server's own metrics; prometheus-client only when asked
            from controlroom.server.exporter import Exporter

            self.exporter = Exporter(self.board, lambda: self.cfg, lambda: [c.kind for c in self.clients],
                                     self.journal.store)
            try:
                await self.exporter.start(*self.metrics_at)
            except UsageError:
                await self.close()  # one line, exit 2; the next server finds nothing of this one
                raise
        if self.warm:
            self.warm_up()

    def warm_up(self) -> None:
        """The fleet's SSH connections, opened in the background in the plan's order (the first host first: a
        deploy asks it what the fleet runs), while the client that started this server attaches, asks and the
        plan is made. Connections only: nothing runs on a host until an operation asks (SSHPool.warm); a host
        that cannot be reached is the operation's to say, as it would be without."""
        self.live.pool.warm(dict.fromkeys(h for p in self.cfg.phases for h in p.hosts))

    async def serve(self) -> None:
        """Run until stop() or idle."""
        assert self._server is not None
        watchers = [asyncio.ensure_future(self._idle_watch()), asyncio.ensure_future(self.live.watch(self._running))]
        if self._followed is not None:
            watchers.append(asyncio.ensure_future(self._follow_others(self._followed)))
        try:
            await self._stop.wait()
        finally:
            for w in watchers:
                w.cancel()
            await self.close()

    def stop(self) -> None:
        self._stop.set()

    async def _follow_others(self, last: int) -> None:
        """A shared journal: what the other bastions' servers commit reaches this server's board and clients too,
        polled every FOLLOW_EVERY seconds (this server's own events come as they commit)."""
        while True:
            await asyncio.sleep(FOLLOW_EVERY)
            try:
                last, events = self.journal.others_after(last, with_ids=True)
            except JournalError as e:
                print(f"controlroom server: cannot read the other bastions' events: {clean(str(e), 300)}",
                      file=sys.stderr, flush=True)
                await asyncio.sleep(1.0)
                continue
            for event_id, e in events:
                self._committed(e, event_id)

    async def close(self) -> None:
        if self.exporter is not None:
            await self.exporter.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
        if self.ops is not None:
            await self.ops.close()
        deadline = time.monotonic() + 2  # let attached clients read what they are owed (how the operation ended)
        while any(not c.queue.empty() for c in self.clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for c in list(self.clients):
            c.writer.close()
        await self.live.close()
        if self.journal is not None:
            self.journal.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def busy(self) -> bool:
        return self.ops is not None and self.ops.busy

    def _running(self) -> str:
        return self.ops.running if self.ops is not None else ""

    async def _idle_watch(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, max(0.05, self.idle / 4)))
            flags = self.live.flags
            if self.busy or self.clients or (flags is not None and (flags.retrying or flags.settling)):
                self._last_busy = time.monotonic()
            elif time.monotonic() - self._last_busy >= self.idle:
                self.stop()
                return

    # ------------------------------------------------------------------------------------------ events
    def _committed(self, e: ev.Event, event_id: int | None = None) -> None:
        """Every event the journal committed (and host output and chat failures, which are not journaled), in order.
        On a shared journal, a journaled event also carries its journal id (every bastion's server sends the same)."""
        self.seq += 1
        self.board.apply(e)
        if self.exporter is not None:
            self.exporter.saw(e)
        if event_id is None and self._followed is not None and type(e) is not ev.HostOutput:
            event_id = self.journal.event_id(e)
        msg = wire.event(self.seq, ev.to_wire(e), event_id)
        if type(e) is not ev.HostOutput:
            self.ring.append(msg)
        data = pr.encode(msg) if self.clients else None
        for c in self.clients:
            if c.attached:
                c.put(msg, data)

    def broadcast(self, msg: dict) -> None:
        """msg to every attached client (encoded once)."""
        data = None
        for c in self.clients:
            if c.attached:
                data = data or pr.encode(msg)
                c.put(msg, data)

    def snapshot(self) -> dict:
        ops, busy = self.ops, self.busy
        r = ops.rollout if ops is not None else None
        snap = wire.snapshot(
            seq=self.seq, board=self.board.snapshot(), lock=views.lock_of(self.journal),
            log=[e.line() for e in self.journal.log(200)] if self.journal else [],
            busy=ops.op_name if busy else "", engine_status=r.status if busy and r is not None else None,
            policy=ops.answers.policy if busy else None,  # who answers an operator's wait: a follower asks not
            presence=self.presence.message(self.clients, busy))
        if not busy and snap["board"]["status"] not in (None, *ev.ROLLOUT_FINAL):
            snap["board"]["status"] = ev.R_HALTED  # a deploy that nothing here drives waits for a decision
        return snap

    # ------------------------------------------------------------------------------------------ clients
    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = pr.peer_of(writer.get_extra_info("socket"))
        except OSError:
            writer.close()
            return
        if (why := self.door.refusal(peer)) is not None:
            return await self.door.refuse(writer, peer, why)
        with self.door.holding(peer):
            await self._converse(peer, reader, writer)

    async def _converse(self, peer: pr.Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client: _Client | None = None
        try:
            if (hello := await serverdoor.read_hello(reader, writer)) is None:
                return
            await self.live.reload(self._running())  # [access] as the file says now
            if not serverdoor.may_watch(self.cfg.access, peer.user):
                return await self.door.refuse(writer, peer, f"refused: {clean(peer.user, 40)} is not among [access] "
                                                            "watchers or operators of this server")
            client = _Client(peer, writer, bool(hello.get("read_only")) or
                             not serverdoor.may_act(self.cfg.access, peer.user),
                             kind_of(hello), origin_of(peer), self.presence.next_no())
            self.clients.add(client)
            writer.write(pr.encode(wire.hello(pid=os.getpid(), user=peer.user, may_act=not client.read_only,
                                              warning=self.warning, client_no=client.no)))
            await writer.drain()
            client.task = asyncio.ensure_future(self._pump(client))
            while (msg := await pr.read_msg(reader, pr.REQUEST_MAX)) is not None:
                await self._request(client, msg)
        except pr.ProtocolError as e:
            # a line too long or not a JSON object: say so, then close (what follows it cannot be trusted)
            await serverdoor.say_and_close(writer, wire.refusal(None, f"refused: {e}; the connection is closed", 2))
        except (ConnectionError, OSError):
            pass  # a client that left in the middle leaves nothing half-done: each intent is whole or not at all
        finally:
            if client is not None:
                self.clients.discard(client)
                if client.task is not None:
                    client.task.cancel()
                self._presence_changed()
            writer.close()

    async def _pump(self, c: _Client) -> None:
        """Write what the client is owed, in order, as fast as it reads."""
        try:
            while True:
                msg = await c.queue.get()
                if msg is RESYNC:
                    await c.writer.drain()  # what it had before falling behind goes first, then the snapshot
                    c.resync = False
                    msg = self.snapshot()
                c.writer.write(pr.encode(msg))
                await c.writer.drain()
        except (ConnectionError, OSError):
            pass

    async def _request(self, c: _Client, msg: dict) -> None:
        rid = wire.request_id(msg)  # an id the answer cannot carry is answered without one
        op = msg.get("op")
        handler = self.handlers.get(op) if isinstance(op, str) else None
        try:
            notes = await self.live.reload(self._running())  # a change to the file applies before this request
            serverdoor.check_access(self.cfg.access, c.peer, handler is not None and handler.intent,
                                    c.read_only)  # [access] as it is now
            wire.check_request(msg)
            if handler is None:
                raise UsageError(f"unknown request {clean(str(op), 40)!r}")
            reply = await (self._act(handler, c, msg) if handler.intent else handler.run(c, msg))
            out = wire.reply(rid, reply, notes)
        except ControlroomError as e:
            out = wire.refusal(rid, str(e), e.exit_code, driven=getattr(e, "driven", False))
        except Exception as e:  # a bug of ours: the server keeps serving, the log has the traceback
            traceback.print_exc()
            out = wire.refusal(rid, f"internal error: {type(e).__name__}: {clean(str(e), 200)}", 70)
        c.writer.write(pr.encode(out))  # a reply is never dropped, even for a client that fell behind
        with contextlib.suppress(ConnectionError, OSError):
            await c.writer.drain()

    async def _act(self, handler: Handler, c: _Client, msg: dict) -> dict | None:
        """An intent: the config it names must be ours; a decision on what another person drives is asked first
        (unless ``anyway``); the journal names who asked, from where (c.actor); the asker drives what it started."""
        ops = self.ops
        if msg.get("config"):
            ops.live.require_same(msg["config"])  # the server runs its own config, never a client's
        if handler.decides and not msg.get("anyway"):  # another person drives it: their client asks
            self.presence.check(c, self.clients, ops.busy, getattr(ops.rollout, "revision", None))
        before = ops.op
        if handler.goes_on:
            ops.before_decision(msg["op"], msg, c.actor)
        reply = await handler.run(c, msg)  # its journal writes name c.actor
        self._last_busy = time.monotonic()
        if handler.drives:
            self._drove(c, before)
        return reply

    # ------------------------------------------------------------------------------------------ the server's reads
    async def _attach(self, c: _Client, msg: dict) -> None:
        """The client gets the events after ``since`` when the ring still has them, else a snapshot; then every
        event as it comes."""
        since = msg.get("since")
        if isinstance(since, int) and self.ring and since >= self.ring[0]["seq"] - 1 and since <= self.seq:
            for m in self.ring:
                if m["seq"] > since:
                    c.put(m)
        else:
            c.put(self.snapshot())
        c.attached = True
        self._presence_changed()

    async def _status(self, c: _Client, msg: dict) -> dict:
        return wire.status(pid=os.getpid(), clients=len(self.clients), connections=len(self.door.conns),
                           max_connections=self.door.max_connections, busy=self._running(), seq=self.seq,
                           since=self.started, status=self.board.status, rollout_id=self.board.rollout_id,
                           config=str(self.live.file.path), channels=self.live.channel_lines(),
                           notes=list(self.live.notes))

    # ------------------------------------------------------------------------------------------ presence
    def _drove(self, c: _Client, before: asyncio.Task | None) -> None:
        """c started the operation or decided on it: it drives it now, until the operation ends."""
        self.presence.drove(c)
        op = self.ops.op
        if op is not None and op is not before:
            op.add_done_callback(lambda _t: self._presence_changed())  # nobody drives what ended
        self._presence_changed()

    def _presence_changed(self) -> None:
        """Every attached client is told who is attached when that, or who drives, changed."""
        msg = self.presence.changed(self.clients, self.busy)
        if msg is not None:
            self.broadcast(msg)


def wait_for_go() -> bool:
    """A server spawned by starter.early() makes no file until its starter has checked the journal and holds
    server.start: it reads its go from stdin (a pipe) first. False: the pipe ended without one (the check failed,
    another server answered, the starter died). A server started by hand (no CONTROLROOM_SERVER_GO) goes at once.
    Either way its stdin is /dev/null from here on."""
    if os.environ.pop("CONTROLROOM_SERVER_GO", None) != "stdin":
        return True
    said = b""
    with contextlib.suppress(OSError):
        while len(said) < len(GO) and (more := os.read(0, len(GO) - len(said))):
            said += more
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return said == GO


def _output_to_log() -> None:
    """A server its client started: until now its output went to that client (a pipe); from now on to its log."""
    log = os.environ.pop("CONTROLROOM_SERVER_LOG", None)
    if not log:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout, sys.stderr = _LogStream(sys.stdout), _LogStream(sys.stderr)


class _LogStream:
    """The server's output once it goes to its log: a line the disk refuses (full, read-only, an I/O error) is
    lost, never raised into the operation that said it (a deploy stopped by a full disk would end as
    ``internal error: OSError`` instead of saying why)."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            return self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


async def serve(cfg: Config, *, idle: float = IDLE, quiet: bool = False,
                metrics: tuple[str, int] | None = None, warm: bool = False) -> int:
    """`controlroom serve`: run the server in the foreground until SIGTERM/SIGINT or idle. ``warm`` (`serve
    --warm`, passed only by the client of a deploy, resume or rollback that starts it) opens the fleet's
    connections as soon as it listens (Server.warm_up)."""
    from controlroom.fleet.ssh import raise_nofile_limit

    # the pool holds a connection per host (4 files counted a host), the socket up to MAX_CONNECTIONS clients
    nofile = raise_nofile_limit(len(cfg.hosts) + serverdoor.MAX_CONNECTIONS // 4)
    if nofile:
        print(nofile, file=sys.stderr, flush=True)
    if not wait_for_go():
        return 0  # its starter withdrew it (or died) before it made anything: nothing to say, nothing made
    server = Server(cfg, idle=idle, metrics=metrics, warm=warm)
    try:
        await server.start()
    except ServerRunning as e:
        if not quiet:
            print(f"controlroom: {e}", flush=True)
        return 0
    startup.collecting()  # it listens: its start-up is done (core/startup.py)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.stop)
    with contextlib.suppress(Exception):
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # losing a terminal changes nothing here
    if server.warning:
        print(server.warning, file=sys.stderr, flush=True)
    print(f"controlroom server: pid {os.getpid()} listening on {server.path}", flush=True)
    if server.exporter is not None:
        print(f"controlroom server: metrics on http://{metrics[0]}:{server.exporter.port}/metrics", flush=True)
    _output_to_log()
    await server.serve()
    print("controlroom server: stopped", flush=True)
    return 0
