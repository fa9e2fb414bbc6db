"""One pool of asyncssh connections per process, reused across commands.

Every command ends in exactly one CommandResult whose status is one of RESULT_CLASSES. Host keys are always checked
against the configured known_hosts; there is no switch to turn that off. Whatever reaches a remote shell from the
config or the operator (revisions, host names, flag values) goes through ``render`` or ``shlex.quote``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import secrets
import shlex
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from controlroom.config.config import SSHSettings
from controlroom.config.inventory import Host
from controlroom.core.errors import ConfigError
from controlroom.fleet.sshlib import asyncssh, get_default_encryption_algs
from controlroom.fleet.sshstop import STOP_BOUND, stop_command, wrap

# asyncssh's ciphers, AES-GCM first (its default puts chacha20-poly1305 first). asyncssh builds two cipher contexts
# for every chacha20 packet and one key per connection for AES-GCM: per command this is about a quarter less CPU on
# the bastion and on an asyncssh host, and with AES-NI OpenSSH's sshd is faster at it too. They are the ciphers
# asyncssh offers by default (AEAD, or CTR with a MAC); none is added. A host whose ssh_config names Ciphers gets those
# (one that names exactly asyncssh's own list in its own order cannot be told from none, and gets this order).
_DEFAULT_CIPHERS = list(get_default_encryption_algs())
CIPHERS = [c.decode() for c in sorted(_DEFAULT_CIPHERS, key=lambda c: not c.endswith(b"-gcm@openssh.com"))]

RESULT_CLASSES = ("ok", "exit", "timeout", "refused", "auth", "hostkey", "dropped")
TAIL_LINES = 40
PRIORITY_CHANNELS = 1  # per host, beside channels_per_connection: flag pushes never queue behind a deploy's commands
JUMP_RETRY_AFTER = 15.0  # seconds a jump host's connect failure fails every host behind it without a new try
_PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${VAR} is the shell's

LineCallback = Callable[[str, str], None]  # (stream "out"|"err", line without newline)


@dataclass(frozen=True)
class CommandResult:
    """What one command did on one host. status is one of RESULT_CLASSES."""

    host: str
    status: str
    exit_code: int | None = None
    reason: str = "ok"
    stdout: str = ""
    stderr: str = ""
    connect_s: float = 0.0
    run_s: float = 0.0
    started_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        """The result class as the operator reads it: ok, exit 1, timeout, refused, ..."""
        return f"exit {self.exit_code}" if self.status == "exit" else self.status


def render(template: str, **values: str) -> str:
    """Fill {revision}, {previous}, {host} with shell-quoted values, so no value can inject a command.

    One pass over the template: a value that itself reads "{previous}" is never filled in again (a second pass
    would put the next value inside the first one's quotes, unquoted). Unknown placeholders stay as written.
    """

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        return shlex.quote(str(values[key])) if key in values else m.group(0)

    return _PLACEHOLDER.sub(fill, template)


def raise_nofile_limit(hosts: int) -> str | None:
    """Raise the soft open-files limit towards 4 x hosts + 64; return a warning if it stays below that."""
    need = 4 * hosts + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        return (
            f"warning: open-files limit is {soft}, below {need} (4 x {hosts} hosts + 64); "
            "raise it with `ulimit -n` or some hosts will fail to connect"
        )
    return None


class _Client(asyncssh.SSHClient):
    def __init__(self, pool: SSHPool, name: str) -> None:
        self._pool = pool
        self._name = name
        self._conn: asyncssh.SSHClientConnection | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool._forget(self._name, self._conn)


class _Failure(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _agent_gone() -> str:
    """When the ssh-agent this process was given has gone away (a forwarded agent leaves with the operator's session:
    the server outlives it), say so: that is why a new connection fails, not the host."""
    sock = os.environ.get("SSH_AUTH_SOCK")
    if not sock or os.path.exists(sock):
        return ""
    whose = os.environ.get("SUDO_USER") or os.environ.get("USER") or "the starting"
    return f"the ssh-agent of {whose}'s session is gone ({sock} no longer exists); "


def _classify(exc: BaseException, timeout: float) -> _Failure:
    if isinstance(exc, _Failure):
        return exc
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return _Failure("hostkey", f"host key not verifiable (unknown or changed): {exc.reason}")
    if isinstance(exc, asyncssh.PermissionDenied):
        return _Failure("auth", f"{_agent_gone()}authentication refused: {exc.reason}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return _Failure("timeout", f"connect timed out after {timeout:g} s")
    if isinstance(exc, ConnectionRefusedError):
        return _Failure("refused", "connection refused")
    if isinstance(exc, socket.gaierror):
        return _Failure("refused", f"cannot resolve host name: {exc.strerror}")
    if isinstance(exc, asyncssh.ConnectionLost | asyncssh.ChannelOpenError | BrokenPipeError | ConnectionResetError):
        return _Failure("dropped", f"connection dropped: {getattr(exc, 'reason', None) or exc}")
    if isinstance(exc, asyncssh.DisconnectError):
        return _Failure("dropped", f"disconnected: {exc.reason}")
    if isinstance(exc, OSError):
        return _Failure("refused", f"cannot connect: {exc.strerror or exc}")
    return _Failure("dropped", f"{type(exc).__name__}: {exc}")


class SSHPool:
    """Connections per host, created on first use and reused; bounded handshakes and channels.

    Safe to share between concurrent tasks in one event loop.
    """

    def __init__(self, settings: SSHSettings, hosts: Iterable[Host] = ()) -> None:
        self.settings = settings
        self.hosts: dict[str, Host] = {h.name: h for h in hosts}
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._channels: dict[str, asyncio.Semaphore] = {}
        self._priority: dict[str, asyncio.Semaphore] = {}  # the priority lane (run(..., priority=True))
        self._warming: dict[str, asyncio.Task] = {}  # connects warm() began that have not ended yet
        self._unannounced: set[str] = set()  # hosts whose connection warm() opened and nothing has used yet
        # awaited with the host's name once a new connection to it is up, before any command uses it (the server
        # gives a host that comes back its current flags first); its errors are its own
        self.on_connect: Callable[[str], Awaitable[None]] | None = None
        self._handshakes = asyncio.Semaphore(settings.max_startups)
        # jump hosts ([inventory.ssh] jump, or ProxyJump in an ssh_config): one connection each, shared by every
        # host behind it, with its own bound on handshakes in flight through it
        self._jumps: dict[str, asyncssh.SSHClientConnection] = {}
        self._jump_locks: dict[str, asyncio.Lock] = {}
        self._jump_gates: dict[str, asyncio.Semaphore] = {}
        self._jump_failed: dict[str, tuple[float, _Failure]] = {}  # spec -> (when it failed, why)
        self.jump_retry_after = JUMP_RETRY_AFTER
        self.jump_attempts = 0  # connects to jump hosts tried (tests read it)
        self._stopping: set[asyncio.Future] = set()  # stops of given-up commands still running on their hosts
        self._mark = f"controlroom-pgid-{secrets.token_hex(6)}:"
        self.handshakes = 0  # how many SSH handshakes this pool has done (tests and bench read it)
        config = [str(p) for p in settings.config_files]
        user_config = os.path.expanduser("~/.ssh/config")
        if os.path.isfile(user_config):
            config.append(user_config)
        # ssh_config Host blocks are matched per host, so the paths are handed to every connect() call
        self._config: list[str] | None = config or None
        try:
            known_hosts = asyncssh.read_known_hosts(str(settings.known_hosts))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{settings.known_hosts}: cannot read known_hosts: {e}") from None
        kwargs: dict = dict(
            known_hosts=known_hosts,
            connect_timeout=settings.connect_timeout,
            keepalive_count_max=settings.keepalive_count,
            # an explicit False also overrides ForwardAgent in an ssh_config: only our config can turn it on
            agent_forwarding=settings.agent_forwarding,
        )
        if settings.identity_files:
            kwargs["client_keys"] = [str(p) for p in settings.identity_files]
        if not self._config:  # an ssh_config's Ciphers line is its host's to choose (see _handshake)
            kwargs["encryption_algs"] = CIPHERS
        # a host's connection sends keepalives only while a command runs on it (_busy/_idle): idle pooled
        # connections cost nothing, however many hosts; a jump host's one connection carries others' traffic and
        # keeps them all the time
        self._options = asyncssh.SSHClientConnectionOptions(keepalive_interval=0, **kwargs)
        self._jump_options = asyncssh.SSHClientConnectionOptions(keepalive_interval=settings.keepalive_interval,
                                                                 **kwargs)
        self._in_flight: dict[asyncssh.SSHClientConnection, int] = {}  # commands running on each connection
        self._host_options: dict[str, asyncssh.SSHClientConnectionOptions] = {}

    def host(self, host: Host | str) -> Host:
        if isinstance(host, Host):
            return host
        return self.hosts.get(host) or Host(name=host)

    def _forget(self, name: str, conn: asyncssh.SSHClientConnection | None) -> None:
        """Stop reusing ``conn`` for this host; a newer connection made meanwhile stays pooled."""
        if conn is not None and self._conns.get(name) is conn:
            del self._conns[name]
            self._unannounced.discard(name)

    def _drop(self, name: str, conn: asyncssh.SSHClientConnection, exc: BaseException) -> None:
        """After an error on ``conn``: forget it and close it if the connection itself broke.

        A refused channel (sshd MaxSessions) or an error in a caller's callback leaves a working connection that
        other commands may be using; that one stays pooled.
        """
        if not conn.is_closed() and not isinstance(exc, (asyncssh.DisconnectError, OSError)):
            return
        self._forget(name, conn)
        if not conn.is_closed():
            conn.close()  # forgotten but open would leak a socket that close() no longer knows about

    def _busy(self, conn: asyncssh.SSHClientConnection) -> None:
        """A command starts on ``conn``: the first one in flight turns its keepalives on, so a host that goes away
        mid-command is noticed within keepalive_interval x keepalive_count."""
        n = self._in_flight.get(conn, 0)
        if n == 0:
            conn.set_keepalive(self.settings.keepalive_interval, self.settings.keepalive_count)
        self._in_flight[conn] = n + 1

    def _idle(self, conn: asyncssh.SSHClientConnection) -> None:
        """A command on ``conn`` ended: the last one in flight turns its keepalives off."""
        n = self._in_flight.pop(conn) - 1
        if n:
            self._in_flight[conn] = n
        elif not conn.is_closed():
            conn.set_keepalive(0)

    @property
    def keepalives_on(self) -> int:
        """How many connections send keepalives now (those with a command in flight; tests read it)."""
        return len(self._in_flight)

    async def _jump_conn(self, spec: str) -> asyncssh.SSHClientConnection:
        """The shared connection to the jump host ``[user@]host[:port]``, with the pool's strict known_hosts.

        A failure to reach it is remembered for ``jump_retry_after`` seconds and raised at once for every host behind
        it (as a _Failure), instead of each host trying, and timing out, in turn.
        """
        async with self._jump_locks.setdefault(spec, asyncio.Lock()):
            failed = self._jump_failed.get(spec)
            if failed is not None:
                if time.monotonic() - failed[0] < self.jump_retry_after:
                    raise _Failure(failed[1].status, failed[1].reason)
                del self._jump_failed[spec]
            conn = self._jumps.get(spec)
            if conn is None or conn.is_closed():
                user, _, hostport = spec.rpartition("@")
                host, sep, port = hostport.rpartition(":") if hostport.count(":") == 1 else ("", "", "")
                host = host if sep else hostport
                kwargs: dict = {}
                if user:
                    kwargs["username"] = user
                if sep and port.isdigit():
                    kwargs["port"] = int(port)
                self.jump_attempts += 1
                try:
                    conn = await asyncssh.connect(host, options=self._jump_options, config=self._config, **kwargs)
                except Exception as e:  # noqa: BLE001 - remembered, then said as each host's result
                    f = _classify(e, self.settings.connect_timeout)
                    self._jump_failed[spec] = (time.monotonic(), f)
                    raise f from None
                self._jumps[spec] = conn
            return conn

    def warm(self, hosts: Iterable[Host | str]) -> None:
        """Begin opening these hosts' connections now, in this order, in the background, and run nothing on them.

        Each connect is the one a command would make (strict host keys, the handshake bound, jump hosts); a host
        already connected or being connected is left as it is. A command for a host whose warm connect is still
        under way waits for it and takes its outcome (the same connect, begun sooner: a host that fails says why
        as it would have); a warm connect that already failed is forgotten, and the next command connects anew.
        on_connect is called when a command first uses a warm connection, not when it opens. close() cancels
        what is still connecting."""
        for h in map(self.host, hosts):
            if h.name in self._conns or h.name in self._warming:
                continue
            task = asyncio.ensure_future(self._connect(h, warm=True))
            self._warming[h.name] = task
            task.add_done_callback(lambda t, name=h.name: self._warmed(name, t))

    def _warmed(self, name: str, task: asyncio.Task) -> None:
        if self._warming.get(name) is task:
            del self._warming[name]
        if not task.cancelled():
            task.exception()  # a host that cannot be reached is the next command's to say, not the loop's

    @property
    def warming(self) -> int:
        """How many connects warm() began are still under way (tests read it)."""
        return sum(not t.done() for t in self._warming.values())

    async def _connect(self, host: Host, *, warm: bool = False) -> asyncssh.SSHClientConnection:
        conn = self._conns.get(host.name)
        if conn is not None and (warm or host.name not in self._unannounced):
            return conn
        if not warm and (pending := self._warming.get(host.name)) is not None and not pending.done():
            try:
                await asyncio.shield(pending)  # its failure is this connect's: the same one, begun sooner
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling() or not pending.cancelled():
                    raise
                # the warm connect was cancelled (the pool closes), not this one: connect as usual
        lock = self._connecting.setdefault(host.name, asyncio.Lock())
        async with lock:
            conn = self._conns.get(host.name)
            if conn is None:
                conn = await self._handshake(host)
                self._conns[host.name] = conn
                self._channels[host.name] = asyncio.Semaphore(self.settings.channels_per_connection)
                if warm:
                    self._unannounced.add(host.name)
                    return conn
            elif warm or host.name not in self._unannounced:
                return conn
            self._unannounced.discard(host.name)  # first used now: on_connect as for a connection just opened
            if self.on_connect is not None:
                await self.on_connect(host.name)
            return conn

    async def _handshake(self, host: Host) -> asyncssh.SSHClientConnection:
        """A new connection to the host: its address, port and user, its ssh_config options, through its jump
        host if it has one, within the bound on handshakes in flight."""
        kwargs: dict = {}
        port = host.port or self.settings.port
        user = host.user or self.settings.user
        if port:
            kwargs["port"] = port
        if user:
            kwargs["username"] = user
        target = host.address or host.name
        options = self._host_options.get(host.name)
        if options is None:
            options = self._options
            if self._config:
                # asyncssh re-reads and re-tokenises every ssh_config on each connect(config=...); Host blocks
                # match per host, so resolve them once per host and reconnect with config=None
                options = await asyncssh.SSHClientConnectionOptions.construct(
                    self._options, config=self._config, host=target, **kwargs
                )
                if list(options.encryption_algs) == _DEFAULT_CIPHERS:  # no Ciphers line for this host: ours
                    options = asyncssh.SSHClientConnectionOptions(options, encryption_algs=CIPHERS)
                self._host_options[host.name] = options
        proxy = options.tunnel if isinstance(options.tunnel, str) and options.tunnel.lower() != "none" else None
        jump = self.settings.jump or proxy
        gate = self._handshakes
        if jump:
            try:
                kwargs["tunnel"] = await self._jump_conn(jump)
            except Exception as e:  # noqa: BLE001 - said as this host's result, naming the jump host
                f = _classify(e, self.settings.connect_timeout)
                raise _Failure(f.status, f"via jump host {jump}: {f.reason}") from None
            gate = self._jump_gates.setdefault(jump, asyncio.Semaphore(self.settings.jump_max_startups))
        async with gate:
            self.handshakes += 1
            conn = await asyncssh.connect(
                target,
                options=options,
                config=None,
                client_factory=lambda: _Client(self, host.name),
                **kwargs,
            )
        return conn

    async def _reach(self, h: Host, started: float, t0: float):
        """(connection, None), or (None, the result that says why the host cannot be reached)."""
        try:
            return await self._connect(h), None
        except Exception as e:  # noqa: BLE001 - every failure becomes one result class
            f = _classify(e, self.settings.connect_timeout)
            return None, CommandResult(h.name, f.status, reason=f.reason, connect_s=time.monotonic() - t0,
                                       started_at=started)

    async def connect(self, host: Host | str) -> CommandResult:
        """Open the host's connection now (or reuse it); ok, or the reason it cannot be reached. Never raises."""
        h = self.host(host)
        started = time.time()
        t0 = time.monotonic()
        _, failed = await self._reach(h, started, t0)
        return failed or CommandResult(h.name, "ok", 0, "ok", connect_s=time.monotonic() - t0, started_at=started)

    async def run(
        self,
        host: Host | str,
        command: str,
        *,
        timeout: float | None = None,
        on_line: LineCallback | None = None,
        priority: bool = False,
    ) -> CommandResult:
        """Run one shell command; never raises for host trouble, the result says what happened.

        priority: take a channel of the host's priority lane (PRIORITY_CHANNELS of its own) instead of one of the
        channels_per_connection that other commands share, so it never waits behind them (flag pushes).

        A command given up on (its timeout) or whose task is cancelled is ended on the host as well: its process
        group gets TERM, and KILL 2 s later (controlroom.fleet.sshstop); the stop takes at most STOP_BOUND seconds. On
        cancellation the channel is closed and CancelledError propagates once that is done.

        A pooled connection found dead as the command's channel opens (it died while idle, when nothing watched it:
        a host rebooted between deploys) is replaced by one new connect before the command is said to fail.
        """
        h = self.host(host)
        timeout = timeout or self.settings.command_timeout
        started = time.time()
        t0 = time.monotonic()
        pooled = self._conns.get(h.name)
        conn, failed = await self._reach(h, started, t0)
        if failed:
            return failed
        res = await self._run_on(conn, h, command, timeout, on_line, priority, started, t0, stale=conn is pooled)
        if res is None:
            conn, failed = await self._reach(h, started, t0)
            if failed:
                return failed
            res = await self._run_on(conn, h, command, timeout, on_line, priority, started, t0, stale=False)
        assert res is not None
        return res

    async def _run_on(self, conn, h: Host, command: str, timeout: float, on_line: LineCallback | None,
                      priority: bool, started: float, t0: float, *, stale: bool) -> CommandResult | None:
        """run() on this connection. None (only when ``stale``, for a connection that was pooled): it was found
        dead before the host confirmed the command's channel, so nothing can have started there."""
        t1 = time.monotonic()
        out: deque[str] = deque(maxlen=TAIL_LINES)
        err: deque[str] = deque(maxlen=TAIL_LINES)
        # sshd starts a command without a pty in a new session (setsid), so the login shell leads its own process
        # group: the wrapper's first line names it ($$), and that group is what a stop kills. Only the first
        # line(s) of stdout are searched for it; it never reaches on_line or the result.
        pgid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        mark = self._mark
        given_up = False

        async def pump(stream, name: str, tail: deque[str]) -> None:
            # readline() gives "" only at EOF (an empty line is "\n"); asyncssh's async-for yields that "" too
            while line := await stream.readline():
                line = line.rstrip("\n")
                if not pgid.done() and name == "out" and (i := line.find(mark)) >= 0:
                    # a login script may have printed before the wrapper; that output is the command's
                    group = line[i + len(mark):]
                    pgid.set_result(int(group) if group.isdigit() else 0)
                    if not (line := line[:i]):
                        continue
                if given_up:
                    continue
                tail.append(line)
                if on_line is not None:
                    on_line(name, line)

        channel_opened = False

        def session() -> asyncssh.SSHClientProcess:
            nonlocal channel_opened
            channel_opened = True  # the host confirmed the channel: from here the command may start there
            return asyncssh.SSHClientProcess()

        async def start() -> asyncssh.SSHClientProcess:
            # conn.create_process, but knowing whether the channel was opened
            _, p = await conn.create_session(session, wrap(command, mark), encoding="utf-8", errors="replace")
            await p.redirect(asyncssh.PIPE, asyncssh.PIPE, asyncssh.PIPE)
            return p

        proc = None
        io = None
        try:
            lane = (self._priority.setdefault(h.name, asyncio.Semaphore(PRIORITY_CHANNELS)) if priority
                    else self._channels[h.name])
            async with lane:
                self._busy(conn)
                try:
                    async with asyncio.timeout(timeout):
                        # once asked for, the command may start on the host whatever happens to us: a stop that
                        # comes while the channel opens waits for it (bounded), so it can end what it started
                        opening = asyncio.ensure_future(start())
                        opening.add_done_callback(lambda f: f.cancelled() or f.exception())
                        try:
                            proc = await asyncio.shield(opening)
                        except BaseException:
                            with contextlib.suppress(BaseException):
                                proc = await asyncio.wait_for(asyncio.shield(opening), STOP_BOUND)
                                proc.stdin.write_eof()
                                io = self._reading(proc, pump, out, err)
                            raise
                        proc.stdin.write_eof()  # like `ssh host cmd </dev/null`: nothing waits on our input
                        io = self._reading(proc, pump, out, err)
                        await asyncio.shield(io)
                        done = await proc.wait()
                except BaseException as e:
                    # a timeout, a cancellation (abort, skip, quit, Ctrl+C) or a failing on_line: the command must
                    # not go on running on the host behind our back
                    given_up = True
                    if proc is not None and not conn.is_closed():
                        await self._stop_remote(conn, proc, pgid, io)
                    if isinstance(e, TimeoutError):
                        return self._result(h, "timeout", None, f"timed out after {timeout:g} s", out, err, t0, t1,
                                            started)
                    raise
                finally:
                    self._idle(conn)
                    if io is not None and not io.done():
                        io.cancel()
        except Exception as e:  # noqa: BLE001
            f = _classify(e, timeout)
            self._drop(h.name, conn, e)
            if stale and not channel_opened and conn.is_closed():
                return None
            return self._result(h, f.status, None, f.reason, out, err, t0, t1, started)
        if done.exit_status is None or done.exit_status < 0:
            if done.exit_signal:
                sig = done.exit_signal[0]
                return self._result(h, "exit", -1, f"killed by signal {sig}", out, err, t0, t1, started)
            # a live connection that lost one channel's exit status still serves other commands: keep it
            if conn.is_closed():
                self._forget(h.name, conn)
            return self._result(h, "dropped", None, "connection dropped during the command", out, err, t0, t1, started)
        if done.exit_status != 0:
            return self._result(h, "exit", done.exit_status, f"exit {done.exit_status}", out, err, t0, t1, started)
        return self._result(h, "ok", 0, "ok", out, err, t0, t1, started)

    @staticmethod
    def _reading(proc, pump, out, err) -> asyncio.Future:
        # the readers outlive a timeout: the stop needs the process group from the first line
        io = asyncio.ensure_future(asyncio.gather(pump(proc.stdout, "out", out), pump(proc.stderr, "err", err)))
        # cancelled on the way out when we give up: its outcome is ours to take, not the loop's
        io.add_done_callback(lambda f: f.cancelled() or f.exception())
        return io

    async def _stop_remote(self, conn, proc, pgid: asyncio.Future[int], io: asyncio.Future | None) -> None:
        """sshstop.stop_command, as a task of the pool's: a second cancellation of the caller leaves the stop
        running in the background (close() waits for it). Never raises."""
        task = asyncio.ensure_future(stop_command(conn, proc, pgid, io))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        await asyncio.shield(task)

    @staticmethod
    def _result(h, status, code, reason, out, err, t0, t1, started) -> CommandResult:
        return CommandResult(
            host=h.name,
            status=status,
            exit_code=code,
            reason=reason,
            stdout="\n".join(out),
            stderr="\n".join(err),
            connect_s=t1 - t0,
            run_s=time.monotonic() - t1,
            started_at=started,
        )

    async def run_many(
        self,
        hosts: Iterable[Host | str],
        command: str,
        *,
        parallel: int | None = None,
        timeout: float | None = None,
        on_result: Callable[[CommandResult], None] | None = None,
    ) -> list[CommandResult]:
        """Fan a command out, at most ``parallel`` hosts at a time; results in the order given."""
        hosts = [self.host(h) for h in hosts]
        limit = asyncio.Semaphore(parallel or self.settings.max_parallel)

        async def one(h: Host) -> CommandResult:
            async with limit:
                res = await self.run(h, command, timeout=timeout)
            if on_result is not None:
                on_result(res)
            return res

        return list(await asyncio.gather(*(one(h) for h in hosts)))

    async def close(self) -> None:
        warming = list(self._warming.values())
        for t in warming:
            t.cancel()
        if warming:
            await asyncio.gather(*warming, return_exceptions=True)
        if self._stopping:  # commands still being stopped on their hosts need their connections a moment longer
            await asyncio.wait(list(self._stopping), timeout=STOP_BOUND)
        conns = list(self._conns.values())
        self._conns.clear()
        for c in conns:
            c.close()
        for c in self._jumps.values():
            conns.append(c)
            c.close()
        self._jumps.clear()
        for c in conns:
            try:
                await asyncio.wait_for(c.wait_closed(), 2)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    async def __aenter__(self) -> SSHPool:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
