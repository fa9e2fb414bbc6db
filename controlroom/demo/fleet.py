"""The simulated fleet: N asyncssh servers on 127.0.0.1, one process, each host on its own port.

Each host has a directory under DIR/hosts/NAME where commands really run with /bin/sh (cwd there, HOSTNAME set),
so deploy steps really change that host's state; SFTP is chrooted to it. Faults make hosts misbehave the way real
ones do. The fleet writes into DIR a known_hosts with its host keys, a client key, an ssh_config that maps each host
name to its port, and a controlroom.toml that targets it.

Like OpenSSH's sshd (tests/realsshd.py runs the same tests on real sshd hosts):
- a command runs in a new session (setsid), its shell leading its own process group;
- closing a channel does not end its command unless a pty was requested (then it gets SIGHUP); the command goes on
  with nowhere to write (EPIPE), and a 'slow' host starts the command even if the client left meanwhile;
- a command killed by a signal ends in exit-signal, not a made-up exit status.
Where it still differs from sshd (measured against OpenSSH 9.2):
- the "signal" channel request is ignored (as by sshd before 7.9); sshd kills the session's process group;
- no MaxSessions: sshd refuses an 11th channel on one connection, counting sessions whose command still runs
  after their channel closed; no MaxStartups either;
- any user name logs in with the client key; sshd needs the account to exist;
- commands run in /bin/sh, not the account's login shell ($0 is "/bin/sh", not "sh"); stdin is /dev/null, not a
  pipe from the channel; the environment is HOSTNAME, HOME, the fleet's own PATH and LANG=C.UTF-8, where sshd gives
  USER, LOGNAME, HOME, SHELL, MAIL, its compiled-in PATH, SSH_CLIENT/SSH_CONNECTION and no LANG (the real-sshd test
  bed sets HOSTNAME with SetEnv to match);
- SFTP is chrooted to the host's directory, so an absolute SFTP path lands inside it; sshd's sftp sees the whole
  file system (relative paths resolve against the home directory in both);
- a session without a command prints one line and exits instead of starting a shell;
- any host forwards TCP (a jump host) to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from controlroom.core.errors import UsageError
from controlroom.demo.fleetconfig import demo_phases, write_fleet_config, write_ssh_config
from controlroom.demo.metrics_sim import SimMetrics
from controlroom.demo.repo import make_demo_repo
from controlroom.fleet.sshlib import asyncssh

__all__ = ["Fleet", "Fault", "parse_faults", "demo_phases", "write_fleet_config", "write_ssh_config", "serve"]

LIVE_REVISION = "r2306"
STAGED_REVISION = "r2307"

KEEPALIVE_REQUEST = "keepalive@openssh.com"
FAULTS = ("refuse", "hang", "fail", "drop", "slow", "hostkey", "auth", "flaky", "silent")


@dataclass
class Fault:
    kind: str
    arg: float = 0.0


def parse_faults(spec: str | None) -> dict[str, Fault]:
    """'web003=refuse,web040=slow:5' -> {'web003': Fault('refuse'), 'web040': Fault('slow', 5.0)}."""
    out: dict[str, Fault] = {}
    if not spec:
        return out
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        host, eq, what = part.partition("=")
        kind, _, arg = what.partition(":")
        if not eq or not host or kind not in FAULTS:
            raise UsageError(
                f"--faults: cannot read {part!r}; write HOST=FAULT with FAULT one of {', '.join(FAULTS)}"
                " (slow:SECONDS, flaky:N)"
            )
        if kind in ("slow", "flaky"):
            try:
                value = float(arg)
            except ValueError:
                raise UsageError(f"--faults: {part!r} needs a number, e.g. {host}={kind}:5") from None
            if value < 0:
                raise UsageError(f"--faults: {part!r} must not be negative")
        elif arg:
            raise UsageError(f"--faults: {kind!r} takes no argument in {part!r}")
        else:
            value = 0.0
        out[host] = Fault(kind, value)
    return out


@dataclass
class SimHost:
    name: str
    root: Path
    port: int = 0
    fault: Fault | None = None
    commands: int = 0
    key: asyncssh.SSHKey | None = None
    server: object = None
    procs: set = field(default_factory=set)
    tunnels: int = 0  # connections this host forwarded as a jump host (ProxyJump)
    users: set = field(default_factory=set)  # the user names clients logged in as
    accepted: int = 0  # TCP connections a 'hang' host accepted (and never answered)
    keepalives: int = 0  # keepalive requests clients sent this host (tests read it)
    conns: set = field(default_factory=set)  # its SSH connections now open


def _seed_host(root: Path) -> None:
    """A host as a real one looks before the demo deploy: r2306 live behind a `current` symlink."""
    if (root / "REVISION").exists():
        return
    rel = root / "releases" / LIVE_REVISION
    rel.mkdir(parents=True, exist_ok=True)
    (rel / "REVISION").write_text(LIVE_REVISION + "\n")
    (root / "current").symlink_to(Path("releases") / LIVE_REVISION)
    (root / "REVISION").write_text(LIVE_REVISION + "\n")


def _refusing_socket() -> socket.socket:
    """A port that refuses connections: bound, so nobody else can take it while the fleet runs, never listening."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


class _Server(asyncssh.SSHServer):
    def __init__(self, fleet: Fleet, host: SimHost) -> None:
        self.fleet = fleet
        self.host = host

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.fleet._conns.add(conn)
        self.host.conns.add(conn)
        self.conn = conn
        # count the client's keepalives (asyncssh looks a global request's handler up on the connection by name;
        # without one it answers "failure", as sshd does, and so does this one)
        def keepalive(_packet) -> None:
            self.host.keepalives += 1
            conn._report_global_response(False)  # the simulation's private use, like pause_reading below

        setattr(conn, "_process_" + asyncssh.misc.map_handler_name(KEEPALIVE_REQUEST) + "_global_request", keepalive)
        self.fleet.connections += 1
        self.authed = False
        self.fleet.handshaking += 1
        self.fleet.most_handshaking = max(self.fleet.most_handshaking, self.fleet.handshaking)

    def auth_completed(self) -> None:
        self.authed = True
        self.fleet.handshaking -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.fleet._conns = {c for c in self.fleet._conns if not c.is_closed()}
        self.host.conns.discard(self.conn)
        if not self.authed:
            self.fleet.handshaking -= 1

    def begin_auth(self, username: str) -> bool:
        self.host.users.add(username)
        return True  # a key is always required

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        # any simulated host can be a jump host (sshd's AllowTcpForwarding), but only to the fleet on 127.0.0.1
        if dest_host in ("127.0.0.1", "localhost"):
            self.host.tunnels += 1
            return True
        return False


class Fleet:
    """Start with ``await fleet.start()`` (or ``start_in_thread()``); stop with ``stop()``."""

    def __init__(self, directory: str | os.PathLike[str], hosts: int = 150, faults: dict[str, Fault] | None = None,
                 prefix: str = "web", metrics: bool = False, stage: bool = False, inventory: str = "toml",
                 client_key: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(directory).resolve()
        # the key every host accepts: a new one, or one given so that several fleet processes (bench/scale.py)
        # make one fleet that a single identity_file reaches
        self.client_key = Path(client_key) if client_key is not None else None
        width = max(3, len(str(hosts)))
        self.hosts = [SimHost(f"{prefix}{i:0{width}d}", self.dir / "hosts" / f"{prefix}{i:0{width}d}")
                      for i in range(1, hosts + 1)]
        self.by_name = {h.name: h for h in self.hosts}
        for name, fault in (faults or {}).items():
            if name not in self.by_name:
                raise UsageError(f"--faults: no host {name!r} in a fleet of {hosts} ({self.hosts[0].name}..)")
            self.by_name[name].fault = fault
        self.prefix = prefix
        self.width = width
        self.inventory = inventory  # "ansible": the hosts go in DIR/inventory.ini, which the config names
        self.stage = stage  # the config's [release] stage: the demo repo's `make build` (deploys need a stage first)
        self._servers: list = []
        self._conns: set = set()
        self.connections = 0  # SSH connections the hosts accepted, ever (tests read it)
        self.handshaking = 0  # SSH connections accepted and not yet authenticated, now and at the most
        self.most_handshaking = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = asyncio.Event()
        # metrics: each host serves /metrics, the fleet answers its config's queries and gates its canary on them
        self.metrics = SimMetrics([(h.name, h.root) for h in self.hosts]) if metrics else None

    # paths
    @property
    def config_path(self) -> Path:
        return self.dir / "controlroom.toml"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    def set_fault(self, name: str, fault: Fault | None) -> None:
        """Change a host's fault while the fleet runs (tests use it to heal or break a host)."""
        self.by_name[name].fault = fault

    def cut(self, name: str) -> None:
        """The host's open connections go dead without a word, as when it is power-cycled or a NAT on the way
        forgets them: they read nothing more and close nothing, so a client learns of it only by its keepalives.
        New connections are served as usual. Call it on the fleet's loop (``fleet.call(fleet.cut, name)``)."""
        for conn in self.by_name[name].conns:
            conn._transport.pause_reading()  # the simulation's, as for the 'silent' fault

    # ------------------------------------------------------------------------------------- start
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        (self.dir / "hosts").mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if self.client_key is not None:
            client_key = asyncssh.read_private_key(str(self.client_key))
        else:
            client_key = asyncssh.generate_private_key("ssh-ed25519", comment="controlroom-demo")
        client_key.write_private_key(str(self.dir / "client_key"))
        os.chmod(self.dir / "client_key", 0o600)
        client_key.write_public_key(str(self.dir / "client_key.pub"))
        authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
        stranger = asyncssh.generate_private_key("ssh-ed25519")
        wrong_auth = asyncssh.import_authorized_keys(stranger.export_public_key().decode())
        known_lines = []
        make_demo_repo(self.dir / "repo", live=LIVE_REVISION, staged=STAGED_REVISION)
        for h in self.hosts:
            _seed_host(h.root)
            h.key = asyncssh.generate_private_key("ssh-ed25519")
            fault = h.fault.kind if h.fault else None
            if fault == "refuse":
                # a port merely free at start could be taken by another process later and answer after all
                sock = _refusing_socket()
                h.port = sock.getsockname()[1]
                self._servers.append(sock)
            elif fault == "hang":
                srv = await asyncio.start_server(lambda r, w, h=h: self._hang(h, r, w), "127.0.0.1", 0)
                h.port = srv.sockets[0].getsockname()[1]
                self._servers.append(srv)
            else:
                presented = asyncssh.generate_private_key("ssh-ed25519") if fault == "hostkey" else h.key
                srv = await asyncssh.create_server(
                    lambda h=h: _Server(self, h),
                    "127.0.0.1",
                    0,
                    server_host_keys=[presented],
                    authorized_client_keys=wrong_auth if fault == "auth" else authorized,
                    process_factory=lambda p, h=h: self._command(h, p),
                    sftp_factory=lambda chan, h=h: asyncssh.SFTPServer(chan, chroot=str(h.root).encode()),
                    allow_scp=False,
                    password_auth=False,
                    kbdint_auth=False,
                    keepalive_interval=0,
                    encoding=None,
                )
                h.port = srv.get_port()
                h.server = srv
                self._servers.append(srv)
            pub = h.key.export_public_key().decode().strip()
            known_lines.append(f"[{h.name}]:{h.port},[127.0.0.1]:{h.port} {pub}")
        self.known_hosts.write_text("\n".join(known_lines) + "\n")
        if self.metrics is not None:
            await self.metrics.start()
            self.metrics.write_prometheus_yml(self.dir / "prometheus.yml")
        self._write_ssh_config()
        self._write_config()
        (self.dir / "fleet.json").write_text(json.dumps({
            "pid": os.getpid(),
            "hosts": {h.name: h.port for h in self.hosts},
            "faults": {h.name: f"{h.fault.kind}:{h.fault.arg:g}" for h in self.hosts if h.fault},
        }, indent=1))

    def _write_ssh_config(self) -> None:
        write_ssh_config(self.dir, [(h.name, h.port, None) for h in self.hosts])

    def _write_config(self) -> None:
        write_fleet_config(self.config_path, [(h.name, h.port, None) for h in self.hosts], self.prefix, self.width,
                           metrics_url=self.metrics.url if self.metrics else None, stage=self.stage,
                           inventory=self.inventory)

    async def _hang(self, h: SimHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # accept the TCP connection and never say a word
        h.accepted += 1
        try:
            await reader.read()
        finally:
            writer.close()

    async def _command(self, h: SimHost, process: asyncssh.SSHServerProcess) -> None:
        h.commands += 1
        fault = h.fault
        cmd = process.command
        if cmd is None:
            process.stdout.write(f"{h.name}: simulated host, no interactive shell\n".encode())
            process.exit(0)
            return
        if fault and fault.kind == "slow":
            # slow to start; like sshd, the command runs even if the client gave up meanwhile (its timeout)
            await asyncio.sleep(fault.arg)
        if fault and (fault.kind == "fail" or (fault.kind == "flaky" and fault.arg > 0)):
            if fault.kind == "flaky":
                fault.arg -= 1
            if not process.channel.is_closing():
                process.stderr.write(f"{h.name}: simulated failure\n".encode())
                process.exit(1)
            return
        env = {"HOSTNAME": h.name, "HOME": str(h.root), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": "C.UTF-8"}
        # a new session, as sshd's setsid(): the shell leads its own process group. A fleet started with SIGHUP
        # ignored (under nohup) would pass that on through exec, and no hangup would end a command with a pty;
        # sshd's commands start with the default, and so do these then
        hup_ignored = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", cmd, cwd=h.root, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            preexec_fn=_default_hangup if hup_ignored else None,
        )
        h.procs.add(proc)
        try:
            if fault and fault.kind == "silent":
                # the host stops answering mid-command without closing anything (a frozen box, a cut cable):
                # only the client's keepalives can tell
                conn = process.channel.get_connection()
                conn._transport.pause_reading()  # no private API is needed by anything but this simulation
                while not conn.is_closed():
                    await asyncio.sleep(0.2)
                return
            if fault and fault.kind == "drop":
                # the host goes away in the middle of the command
                await asyncio.sleep(0.1)
                process.channel.get_connection().abort()
                return
            work = asyncio.ensure_future(_relay(proc, process))
            closed = asyncio.ensure_future(process.channel.wait_closed())
            await asyncio.wait({work, closed}, return_when=asyncio.FIRST_COMPLETED)
            if work.done() and not process.channel.is_closing():
                status = work.result()
                if status < 0:  # killed by a signal: say so, as sshd does, instead of a made-up exit status
                    process.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))
                else:
                    process.exit(status)
            else:
                # the client closed the channel (its timeout, a cancel) or went away. With a pty, sshd's session
                # ends in a hangup; without one the command goes on, and its output has nowhere to go: sshd
                # closes its end of the pipes, so a command that still writes gets EPIPE (SIGPIPE)
                work.cancel()
                if process.get_terminal_type() is not None:
                    os.killpg(proc.pid, signal.SIGHUP)
                for fd in (1, 2):
                    pipe = proc._transport.get_pipe_transport(fd)  # the simulation's own subprocess
                    if pipe is not None:
                        pipe.close()
                await proc.wait()
            closed.cancel()
        except (TimeoutError, asyncssh.Error, OSError):
            pass
        finally:
            h.procs.discard(proc)
            if proc.returncode is None:  # the fleet is stopping (its tasks are cancelled): no command outlives it
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()

    # ------------------------------------------------------------------------------------- stop
    async def stop(self) -> None:
        if self.metrics is not None:
            await self.metrics.stop()
        for srv in self._servers:
            srv.close()
        for c in list(self._conns):
            c.abort()
        for h in self.hosts:
            for p in list(h.procs):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._servers.clear()

    def start_in_thread(self) -> Fleet:
        """Run the fleet on its own event loop in a daemon thread; returns once every host listens."""
        ready = threading.Event()
        error: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                error.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            left = asyncio.all_tasks(loop)  # commands still being served: end them before the loop goes
            for t in left:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=main, name="fleet", daemon=True)
        self._thread.start()
        ready.wait()
        if error:
            raise error[0]
        return self

    def stop_thread(self) -> None:
        if self._thread and self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def call(self, fn, *args) -> None:
        """Run fn(*args) on the fleet's loop (thread-safe)."""
        assert self._loop is not None
        done = threading.Event()

        def go() -> None:
            fn(*args)
            done.set()

        self._loop.call_soon_threadsafe(go)
        done.wait(5)


def _default_hangup() -> None:
    """In the child, before exec: SIGHUP back to its default (only when the fleet runs with it ignored)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


async def _relay(proc: asyncio.subprocess.Process, process: asyncssh.SSHServerProcess) -> int:
    """Copy the command's stdout and stderr to the channel as they come; return its exit status."""

    async def pump(reader: asyncio.StreamReader, writer) -> None:
        while data := await reader.read(65536):
            writer.write(data)

    await asyncio.gather(pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr))
    return await proc.wait()


async def serve(directory: str, hosts: int, faults: str | None, metrics: bool = False, stage: bool = False,
                inventory: str = "toml") -> None:
    """`controlroom fleet`: start, print where things are, run until SIGINT/SIGTERM."""
    fleet = Fleet(directory, hosts, parse_faults(faults), metrics=metrics, stage=stage, inventory=inventory)
    await fleet.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ports = [h.port for h in fleet.hosts]
    print(f"fleet: {hosts} hosts on 127.0.0.1 (ports {min(ports)}-{max(ports)})", flush=True)
    bad = [f"{h.name}={h.fault.kind}" for h in fleet.hosts if h.fault]
    if bad:
        print(f"fleet: faults {', '.join(bad)}", flush=True)
    print(f"fleet: config {fleet.config_path}", flush=True)
    if fleet.metrics is not None:
        print(f"fleet: metrics {fleet.metrics.url} (Prometheus API); {fleet.dir / 'prometheus.yml'}", flush=True)
    print("fleet: ready; Ctrl+C stops it", flush=True)
    await stop.wait()
    await fleet.stop()
