"""Scale benchmark: one deploy through the server at 150, 1,000 and 5,000 hosts, with the app and 10 watchers on it.

Run by hand, never by CI; nothing here asserts on a timing. For each size a new simulated fleet starts, in several
processes when it is large (at most PER_FLEET hosts each, bench/scale.py --worker fleet: the demo fleet with a
client key shared by all of them, hosts named web1-0001.., web2-0001..), and one config targets all of it: the
fleet's steps, health check and rollback, three phases that go on by themselves (a canary of 2, 10%, the rest) and
[inventory.ssh] max_parallel as the demo config leaves it (150), its timeouts raised to the floor's (connect 30 s,
commands 120 s: a loaded 2-CPU machine answers handshakes of thousands of hosts slowly). Then, on that fleet:

  floor          a bare asyncssh script as a fresh process (--worker floor), the same work on the same hosts: the
                 live revision of the first host, then batch after batch (the config's phases), at most
                 max_parallel hosts at once, each host: connect, the deploy's steps, the health check. Spawn to exit.
  controlroom    `controlroom serve` started before (its SSH pool cold: it connects during the deploy, as the floor
                 does), the app on a real pseudo-terminal and 10 watchers attached, then `controlroom deploy --yes
                 --revision R` timed spawn to exit. Each run ships a new revision, so every host changes.

and measures

  time / floor   the deploy's wall time over the floor's
  server CPU     utime + stime of the server process over the deploy (/proc/PID/stat), and per host
  server memory  the server's peak RSS (VmHWM) after the deploy, per host, and per added host between sizes
  event p95      the 10 watchers (bench/server.py --worker watch, each its own process): time.time() at arrival
                 minus the event's "at" (stamped by the engine), over every event every watcher saw
  key p95        the app (`controlroom --config PLAN`, 160x48 pty, as bench/ui.py runs it): a right arrow every
                 0.2 s during the deploy, from writing it to the first bytes that show the new selected host's
                 name under the grid

    .venv/bin/python bench/scale.py                          # 150, 1,000 and 5,000 hosts (about 15 minutes)
    .venv/bin/python bench/scale.py --hosts 150,1000         # the sizes to run
    .venv/bin/python bench/scale.py --quick                  # 20 hosts in 2 fleet processes, a smoke run
    .venv/bin/python bench/scale.py --hosts 1000 --profile /tmp/server.prof   # the server under cProfile

Only 127.0.0.1 and Unix sockets. Every subprocess has a timeout and every wait a deadline; what this run started
(fleets, server, app, watchers) is stopped at the end of each size, also on error, Ctrl+C or SIGTERM. Exit status 0
only when every size's floor and deploy put every host on their revision.
"""

# The floor and the fleet workers run this very file as fresh processes (`--worker ...`): at module level it imports
# only what they need, so the floor pays for nothing a bare script would not.
from __future__ import annotations

import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
import _common  # noqa: E402 - beside this file

PER_FLEET = 1000  # hosts per fleet process
WATCHERS = 10
KEY_EVERY = 0.2  # seconds between the arrow keys pressed during the deploy
IDLE_KEYS = 15  # keys timed before the deploy, with everything attached: what the machine's load alone costs
SIZES = (150, 1000, 5000)
TARGETS = {"key_ms": 100.0, "event_ms": 50.0, "kb_per_host": 100.0}


# ------------------------------------------------------------------------------------------------ workers


def worker_fleet(directory: str, hosts: str, prefix: str, client_key: str) -> int:
    """One part of the fleet: `hosts` simulated hosts named prefix0001.., accepting `client_key`; prints `ready`
    once they listen, runs until SIGTERM or its stdin closes."""
    import asyncio
    import signal

    sys.path.insert(0, ROOT)
    from controlroom.demo.fleet import Fleet
    from controlroom.fleet.ssh import raise_nofile_limit

    raise_nofile_limit(2 * int(hosts))

    async def main() -> None:
        fleet = Fleet(directory, int(hosts), prefix=prefix, client_key=client_key)
        await fleet.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read() or stop.set())  # the bench went away
        print("ready", flush=True)
        await stop.wait()
        await fleet.stop()

    asyncio.run(main())
    return 0


def worker_floor(plan_path: str) -> int:
    """The floor: a bare asyncssh script. The plan (JSON) gives the hosts [name, port], known_hosts, client key,
    user, batches, max_parallel, the first command (the live revision of the first host) and each host's
    commands. Prints `ok N` (hosts whose every command exited 0)."""
    import asyncio
    import json

    import asyncssh

    with open(plan_path) as f:
        plan = json.load(f)
    options = asyncssh.SSHClientConnectionOptions(
        known_hosts=asyncssh.read_known_hosts(plan["known_hosts"]),
        client_keys=asyncssh.load_keypairs([plan["client_key"]]),
        username=plan["user"],
        connect_timeout=30,
    )
    ports = [port for _, port in plan["hosts"]]

    async def main() -> int:
        gate = asyncio.Semaphore(plan["max_parallel"])

        async def one(port: int, commands: list[str]) -> bool:
            async with gate:
                async with asyncssh.connect("127.0.0.1", port, options=options, config=None) as conn:
                    for cmd in commands:
                        if (await conn.run(cmd)).exit_status != 0:
                            return False
                    return True

        if not await one(ports[0], [plan["first"]]):
            return 0
        ok, start = 0, 0
        for size in plan["batches"]:
            batch = ports[start : start + size]
            results = await asyncio.gather(*(one(p, plan["commands"]) for p in batch), return_exceptions=True)
            ok += sum(r is True for r in results)
            start += size
        return ok

    ok = asyncio.run(main())
    print(f"ok {ok}", flush=True)
    return 0 if ok == len(ports) else 1


# ------------------------------------------------------------------------------------------------ the bench

LEGEND = """\
time / floor: the deploy's wall time (spawn of `controlroom deploy --yes` to its exit, through the server that
runs with the app and 10 watchers attached, its SSH pool cold) over the floor's (a fresh bare asyncssh process doing
the same steps and health check on the same hosts in the same batches, as many at once). Server CPU: the server
process only, over the deploy; "ms/host" is that over the hosts. Peak RSS: the server's VmHWM after the deploy;
"KB/host" is it over the hosts (the interpreter's fixed ~50 MB included, so it falls with size), "KB/added host" the
growth of the peak from the smallest size run, over the hosts added. Event p95: over every event each of the 10
watchers saw (time.time() at arrival in the watcher's process minus the engine's "at"). Key p95: a right arrow
every 0.2 s in the app during the deploy (right, left, ...), to the first bytes showing the other host's name under
the grid; "idle key p95" is 15 such keys just before the deploy, everything attached: the machine's own share. The
fleet's processes, the watchers and the app share the machine's CPUs with the server and are in no CPU figure."""


def parse_args(argv: list[str] | None):
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", default=",".join(map(str, SIZES)), metavar="N,N,...",
                   help="fleet sizes, comma-separated (default 150,1000,5000)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 20 hosts in 2 fleet processes (overrides --hosts and --per-fleet)")
    p.add_argument("--per-fleet", type=int, default=PER_FLEET, metavar="N",
                   help=f"hosts per fleet process (default {PER_FLEET})")
    p.add_argument("--markdown", action="store_true", help="also print the table as markdown for the README")
    p.add_argument("--profile", metavar="FILE",
                   help="run the server under cProfile (one size only) and write its stats to FILE")
    p.add_argument("--keepalive", type=float, metavar="SECONDS",
                   help="[inventory.ssh] keepalive_interval for the deploy (default: the demo fleet's, 2 s)")
    p.add_argument("--profile-app", metavar="FILE",
                   help="run the app under cProfile (one size only) and write its stats to FILE")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (fleets, configs, journal)")
    args = p.parse_args(argv)
    try:
        args.sizes = [20] if args.quick else [int(x) for x in args.hosts.split(",") if x.strip()]
    except ValueError:
        p.error(f"--hosts: cannot read {args.hosts!r}; write sizes like 150,1000")
    if args.quick:
        args.per_fleet = 10
    if args.per_fleet < 1:
        p.error("--per-fleet must be at least 1")
    if not args.sizes or min(args.sizes) < 4:
        p.error("--hosts: every size must be at least 4 (three phases)")
    if (args.profile or args.profile_app) and len(args.sizes) != 1:
        p.error("--profile, --profile-app: give one size (--hosts 1000)")
    return args


def main(argv: list[str] | None = None) -> int:
    import signal

    args = parse_args(argv)
    # a SIGTERM to the bench must still stop what it started: make it a SystemExit so `finally` runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_nofile(6 * max(args.sizes) + 512)
    load_before = _common.loadavg()
    rows: list[Size] = []
    status = 0
    try:
        for n in args.sizes:
            size = Size(n, args)
            rows.append(size)
            if not size.run():
                status = 1
    except KeyboardInterrupt:
        print("bench: interrupted; reporting what was measured", file=sys.stderr)
        status = 130
    report(rows, args, load_before, _common.loadavg())
    return status


def raise_nofile(need: int) -> None:
    """The open-files limit this bench and its children (fleets, server) need, the hard limit too when we may
    (root): the server keeps 4 open files a host for its SSH pool (fleet/ssh.py raise_nofile_limit) and lets in only
    as many clients as the rest allows (server/door.py), so at 5,000 hosts a hard limit of 20,000 leaves it 8."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        except (ValueError, OSError):
            pass
    _common.raise_nofile(need)


class Size:
    """One fleet size: its fleet, its floor, its server with the app and the watchers, its deploy."""

    TIMEOUT_PER_HOST = 0.25  # seconds of deadline per host on top of BASE_TIMEOUT (floor, deploy, watchers)
    BASE_TIMEOUT = 180.0

    def __init__(self, n: int, args) -> None:
        import tempfile
        from pathlib import Path

        self.n, self.args = n, args
        self.tmp = Path(tempfile.mkdtemp(prefix="crscale-"))  # short: the server's socket lives under it
        self.timeout = self.BASE_TIMEOUT + self.TIMEOUT_PER_HOST * n
        self.fleets: list = []
        self.children: list = []  # (name, Popen) this size started, stopped at its end
        self.app = None
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.fig: dict[str, float] = {}
        self.key_ms: list[float] = []
        self.idle_key_ms: list[float] = []
        self.event_s: list[float] = []
        self.resyncs = 0
        self.events_per_watcher = 0

    def fail(self, why: str) -> bool:
        self.failures.append(why)
        print(f"bench: {self.n} hosts: {why}", file=sys.stderr, flush=True)
        return False

    def say(self, what: str) -> None:
        print(f"bench: {self.n} hosts: {what}", file=sys.stderr, flush=True)

    # -------------------------------------------------------------------------------------- lifecycle
    def run(self) -> bool:
        import shutil

        try:
            self.start_fleets()
            self.write_plan()
            return self.floor() and self.deploy()
        except Exception as e:  # noqa: BLE001 - report what we have, then say what broke
            return self.fail(f"error: {type(e).__name__}: {e}")
        finally:
            self.stop_all()
            if self.args.keep:
                print(f"bench: kept {self.tmp}", file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def spawn(self, name: str, cmd: list[str], **kw):
        import subprocess

        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(cmd, text=True, start_new_session=True, **kw)
        self.children.append((name, p))
        return p

    def stop_all(self) -> None:
        import signal
        import subprocess

        if self.app is not None:
            self.app.close()
        server = [p for name, p in self.children if name == "server"]
        if server and server[0].poll() is None:
            # a clean stop, so a profiled server writes its stats
            self.call("server", "stop", "--force", timeout=120)
        for _, p in reversed(self.children):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in reversed(self.children):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # the session this bench started for it, nothing else
                p.wait(5)

    def start_fleets(self) -> None:
        import json
        import subprocess
        import time

        import asyncssh

        k = -(-self.n // self.args.per_fleet)
        shares = [self.n // k + (i < self.n % k) for i in range(k)]
        key = asyncssh.generate_private_key("ssh-ed25519", comment="controlroom-scale")
        self.key = self.tmp / "client_key"
        key.write_private_key(str(self.key))
        os.chmod(self.key, 0o600)
        self.say(f"starting {k} fleet process{'es' * (k > 1)} ({' + '.join(map(str, shares))} hosts)")
        t0 = time.monotonic()
        readers = []
        for i, share in enumerate(shares, 1):
            d = self.tmp / f"fleet{i}"
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "fleet", str(d), str(share), f"web{i}-",
                   str(self.key)]
            p = self.spawn(f"fleet {i}", cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
            readers.append((d, _common.LineReader(p.stdout)))
        deadline = time.monotonic() + 60 + 0.1 * self.n
        self.hosts: list[tuple[str, int, object]] = []  # name, port, host directory
        self.known = []
        for d, lines in readers:
            while (line := lines.get(deadline - time.monotonic())) != "ready":
                if line is None:
                    raise RuntimeError(f"a fleet process did not get ready: {' | '.join(lines.seen[-3:])}")
            with open(d / "fleet.json") as f:
                ports = json.load(f)["hosts"]
            self.hosts += [(name, port, d / "hosts" / name) for name, port in ports.items()]
            self.known.append((d / "known_hosts").read_text())
            self.fleets.append(d)
        self.notes.append(f"{k} fleet process{'es' * (k > 1)}, ready in {time.monotonic() - t0:.0f} s")

    def write_plan(self) -> None:
        """One config for the whole fleet: the demo fleet's config for these hosts, with the bench's phases."""
        import re

        from controlroom.config import config
        from controlroom.demo.fleetconfig import write_fleet_config
        from controlroom.fleet.ssh import render

        plan = self.tmp / "plan"
        plan.mkdir()
        (plan / "known_hosts").write_text("".join(self.known))
        (plan / "client_key").symlink_to(self.key)
        (plan / "repo").symlink_to(self.fleets[0] / "repo")
        self.repo = self.fleets[0] / "repo"
        path = plan / "controlroom.toml"
        write_fleet_config(path, [(name, port, None) for name, port, _ in self.hosts], "web", 4)
        text = path.read_text()
        names = ", ".join(f'"{name}"' for name, _, _ in self.hosts)
        text = re.sub(r"^hosts = \[.*\]$", lambda _: f"hosts = [{names}]", text, count=1, flags=re.M)
        # the floor's deadlines: a fleet of thousands on a 2-CPU machine can take longer than the demo's 5 s to
        # answer a handshake, and neither side should give up on a host the other would have waited for
        settings = [("connect_timeout", 30), ("command_timeout", 120), ("step_timeout", 120)]
        if self.args.keepalive:
            settings.append(("keepalive_interval", self.args.keepalive))
        for key, value in settings:
            text, n = re.subn(rf"^{key} = \d+", f"{key} = {value}", text, count=1, flags=re.M)
            if n != 1:
                raise RuntimeError(f"the fleet's config has no {key} line to set")
        kept, keep = [], True
        for line in text.splitlines():
            m = re.match(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$", line)
            if m:
                keep = m.group(1).split(".")[0].strip() not in ("phase", "state")
            if keep:
                kept.append(line)
        path.write_text("\n".join(kept).rstrip() + "\n" + _common.AUTO_PHASES + f'\n[state]\ndir = "{self.tmp / "state"}"\n')
        self.config = path
        cfg = config.load(path)
        if len(cfg.hosts) != self.n:
            raise RuntimeError(f"the plan has {len(cfg.hosts)} hosts, expected {self.n}")
        self.cfg = cfg
        self.batches = [len(ph.hosts) for ph in cfg.phases]
        self.render = render
        self.notes += _common.ssh_config_notes(path)

    # -------------------------------------------------------------------------------------- processes
    def call(self, *args: str, timeout: float | None = None):
        """(completed `controlroom ARGS --config PLAN`, wall s) or (None, why not)."""
        import subprocess
        import time

        t0 = time.perf_counter()
        try:
            done = subprocess.run(_common.controlroom_cmd() + [*args, "--config", str(self.config)],
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            return None, f"`controlroom {' '.join(args)}` timed out after {timeout or self.timeout:g} s"
        return done, time.perf_counter() - t0

    def revision(self, rev: str) -> str:
        """A tag in the fleet's repository for each deploy (the server ships only what it names)."""
        import subprocess

        subprocess.run(["git", "-C", str(self.repo), "tag", "-f", rev, "refs/heads/staging"], check=True,
                       capture_output=True, timeout=30)
        return rev

    def hosts_on(self, rev: str) -> int:
        n = 0
        for _, _, d in self.hosts:
            try:
                n += (d / "REVISION").read_text().strip() == rev
            except OSError:
                pass
        return n

    # -------------------------------------------------------------------------------------- the floor
    def floor(self) -> bool:
        import json
        import subprocess
        import time

        rev = "floor1"
        d = self.cfg.deploy
        commands = [self.render(s, revision=rev, previous="r2306") for s in d.steps]
        if d.health:
            commands.append(d.health)
        plan = {
            "hosts": [[name, port] for name, port, _ in self.hosts],
            "known_hosts": str(self.tmp / "plan" / "known_hosts"),
            "client_key": str(self.key),
            "user": self.cfg.ssh.user or "deploy",
            "batches": self.batches,
            "max_parallel": self.cfg.ssh.max_parallel,
            "first": self.cfg.release.live_command,
            "commands": commands,
        }
        path = self.tmp / "floor.json"
        path.write_text(json.dumps(plan))
        self.say("floor")
        t0 = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "floor", str(path)],
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return self.fail(f"the floor timed out after {self.timeout:g} s")
        self.fig["floor_s"] = time.perf_counter() - t0
        if done.returncode != 0:
            return self.fail(f"the floor: exit {done.returncode}: {(done.stdout + done.stderr).strip()[-300:]}")
        if (on := self.hosts_on(rev)) != self.n:
            return self.fail(f"after the floor only {on} of {self.n} hosts hold {rev}")
        return True

    # -------------------------------------------------------------------------------------- the deploy
    def start_server(self) -> int:
        import subprocess
        import time

        from controlroom.server.statedir import socket_path

        cmd = _common.controlroom_cmd()
        if self.args.profile:
            cmd = [sys.executable, "-m", "cProfile", "-o", self.args.profile, "-m", "controlroom.cli"]
        log = open(self.tmp / "server.log", "w")  # noqa: SIM115 - the server's, closed with the size's directory
        p = self.spawn("server", cmd + ["serve", "--config", str(self.config), "--quiet", "--idle", "3600"],
                       stdout=log, stderr=subprocess.STDOUT)
        sock = socket_path(self.cfg.state.dir)
        deadline = time.monotonic() + 60
        while not sock.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {(self.tmp / 'server.log').read_text()[-300:]}")
            time.sleep(0.05)
        return p.pid

    def attach_watchers(self, rev: str) -> list:
        import subprocess
        import time

        me = [sys.executable, os.path.join(BENCH, "server.py"), "--worker", "watch", str(self.config), rev,
              str(self.timeout)]
        watchers = []
        for i in range(WATCHERS):
            p = self.spawn(f"watcher {i}", me, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            watchers.append((p, _common.LineReader(p.stdout), _common.LineReader(p.stderr)))
        deadline = time.monotonic() + 60
        for _, out, err in watchers:
            line = out.get(deadline - time.monotonic())
            if line != "ready":
                raise RuntimeError(f"a watcher did not attach: {line or ' | '.join(err.seen[-2:])}")
        return watchers

    def deploy(self) -> bool:
        import json
        import threading
        import time

        rev = self.revision("scale1")
        pid = self.start_server()
        self.app = App(self.config, self.timeout, self.args.profile_app)
        self.say("the app")
        if (why := self.app.start()) is not None:
            return self.fail(f"the app: {why}")
        watchers = self.attach_watchers(rev)
        rss0 = memory(pid)[0]
        stop = threading.Event()
        self.say("keys, idle")
        self.app.press_keys(stop, self.idle_key_ms, IDLE_KEYS)  # the same app and machine, before the deploy
        presser = threading.Thread(target=self.app.press_keys, args=(stop, self.key_ms), daemon=True)
        self.say("deploy")
        cpu0 = _common.proc_cpu(pid)
        presser.start()
        done, took = self.call("deploy", "--yes", "--revision", rev)
        cpu1 = _common.proc_cpu(pid)
        stop.set()
        presser.join(15)
        if done is None:
            return self.fail(took)
        if done.returncode != 0 or f"DEPLOY OK {rev}" not in done.stdout:
            return self.fail(f"deploy: exit {done.returncode}: {(done.stdout + done.stderr).strip()[-300:]}")
        self.fig["deploy_s"] = took
        self.fig["cpu_s"] = cpu1 - cpu0
        rss, peak = memory(pid)
        self.fig["fds"] = len(os.listdir(f"/proc/{pid}/fd"))  # the pool holds every host's connection now
        self.fig.update(rss0_mb=rss0 / 1024, rss_mb=rss / 1024, peak_mb=peak / 1024)
        if self.app.why:
            self.notes.append(f"the app's keys: {self.app.why}")
        deadline = time.monotonic() + 60
        seen = []
        for _, out, err in watchers:
            line = out.get(deadline - time.monotonic())
            try:
                r = json.loads(line or "")
            except ValueError:
                return self.fail(f"a watcher said {line!r}: {' | '.join(err.seen[-2:])}")
            if r["status"] != "done":
                return self.fail(f"a watcher saw the deploy end {r['status']}")
            self.event_s += r["latencies"]
            self.resyncs += max(0, r["snapshots"] - 1)
            seen.append(len(r["latencies"]))
        self.events_per_watcher = min(seen)
        if (on := self.hosts_on(rev)) != self.n:
            return self.fail(f"after the deploy only {on} of {self.n} hosts hold {rev}")
        return True


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    rss = peak = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return rss, peak


class App:
    """The control room (`controlroom --config PLAN`) on a real pseudo-terminal, as bench/ui.py runs it."""

    # under the grid: "▸ " then the selected host's name, in bold (bench/ui.py's note: the grid may show glyphs)
    CAPTION = rb"\xe2\x96\xb8 (?:\x1b\[[0-9;]*m)*([A-Za-z0-9][A-Za-z0-9.-]*)"

    def __init__(self, config, timeout: float, profile: str | None = None) -> None:
        self.config, self.timeout, self.profile = config, timeout, profile
        self.term = None
        self.why = ""  # why fewer keys were timed than pressed
        self.presses = 0

    def start(self) -> str | None:
        """None once the app shows the grid with its selected host, else why not."""
        import re
        import time

        from ui import Terminal  # beside this file

        cmd = _common.controlroom_cmd()
        if self.profile:  # written when the app quits (ctrl+q at the end)
            cmd = [sys.executable, "-m", "cProfile", "-o", self.profile, "-m", "controlroom.cli"]
        self.term = Terminal(cmd + ["--config", str(self.config)])
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            if self.term.proc.poll() is not None:
                return f"exited {self.term.proc.returncode}: {self.screen()[-300:]!r}"
            names = re.findall(self.CAPTION, b"".join(c for _, c in self.term.since(0)))
            if names:
                self.selected = names[-1].decode()
                return None
            time.sleep(0.05)
        return f"no selected host under the grid within 120 s: {self.screen()[-300:]!r}"

    def screen(self) -> bytes:
        return b"".join(c for _, c in self.term.since(0)) if self.term else b""

    def press_keys(self, stop, out: list[float], most: int | None = None) -> None:
        """An arrow key every KEY_EVERY s until ``stop`` (or ``most`` keys): each one's time to the other host's
        name under the grid. Right, then left, and so on: the cursor goes between two hosts, never off the grid's
        end, and every key changes what the screen shows."""
        import re
        import time

        pattern = re.compile(self.CAPTION)
        while (most is None or len(out) < most) and not stop.wait(KEY_EVERY):
            sent = self.term.press(b"\x1b[C" if self.presses % 2 == 0 else b"\x1b[D")
            self.presses += 1
            deadline = sent + 10
            got = None
            while got is None and time.perf_counter() < deadline and not stop.is_set():
                buf = b""
                for at, data in self.since(sent):
                    buf += data
                    names = [m.decode() for m in pattern.findall(buf)]
                    if any(n != self.selected for n in names):
                        got = at
                        self.selected = next(n for n in reversed(names) if n != self.selected)
                        break
                else:
                    time.sleep(0.001)
            if got is None:
                if not stop.is_set():
                    self.why = f"a key showed no other host within 10 s (after {len(out)} timed)"
                return  # the app is stuck: no more keys are timed
            out.append((got - sent) * 1000)

    def since(self, t0: float) -> list[tuple[float, bytes]]:
        """What the app wrote from t0 on, found from the end: a deploy of thousands of hosts writes thousands of
        chunks, and Terminal.since's scan of them all every millisecond would take the app's CPU."""
        with self.term.lock:
            chunks = self.term.chunks
            i = len(chunks)
            while i > 0 and chunks[i - 1][0] >= t0:
                i -= 1
            return chunks[i:]

    def close(self) -> None:
        import subprocess

        if self.term is None:
            return
        term, self.term = self.term, None
        try:
            os.write(term.master, b"\x11")  # ctrl+q; a profiled app writes its stats as it goes
            term.proc.wait(60 if self.profile else 5)
        except (OSError, subprocess.TimeoutExpired):
            term.proc.kill()
            term.proc.wait(5)
        os.close(term.master)


# ------------------------------------------------------------------------------------------------ the report


def cells(s: Size, base: Size | None) -> tuple[str, ...]:
    f = s.fig
    pct = _common.percentile
    key = f"{pct(s.key_ms, 95):.0f}" if s.key_ms else "-"
    idle = f"{pct(s.idle_key_ms, 95):.0f}" if s.idle_key_ms else "-"
    event = f"{pct(s.event_s, 95) * 1000:.1f}" if s.event_s else "-"
    ratio = f"{f['deploy_s'] / f['floor_s']:.2f}x" if "deploy_s" in f and "floor_s" in f else "-"
    added = "-"
    if base is not None and base is not s and "peak_mb" in f and "peak_mb" in base.fig:
        added = f"{(f['peak_mb'] - base.fig['peak_mb']) * 1024 / (s.n - base.n):.0f}"
    notes = []
    if s.resyncs:
        notes.append(f"{s.resyncs} watcher resyncs")
    if s.failures:
        notes.append("FAILED: " + "; ".join(dict.fromkeys(s.failures))[:200])
    return (
        f"{s.n:,}",
        f"{f['floor_s']:.1f}" if "floor_s" in f else "-",
        f"{f['deploy_s']:.1f}" if "deploy_s" in f else "-",
        ratio,
        f"{f['cpu_s']:.1f}" if "cpu_s" in f else "-",
        f"{f['cpu_s'] * 1000 / s.n:.1f}" if "cpu_s" in f else "-",
        f"{f['peak_mb']:.0f}" if "peak_mb" in f else "-",
        f"{f['peak_mb'] * 1024 / s.n:.0f}" if "peak_mb" in f else "-",
        added,
        f"{s.events_per_watcher:,}" if s.event_s else "-",
        event,
        key,
        f"{len(s.key_ms)}",
        idle,
        "; ".join(notes),
    )


HEAD = ("hosts", "floor s", "deploy s", "time/floor", "server CPU s", "CPU ms/host", "peak RSS MB", "KB/host",
        "KB/added host", "events/watcher", "event p95 ms", "key p95 ms", "keys",
        "idle key p95 ms", "notes")


def verdicts(rows: list[Size]) -> list[str]:
    out = []
    done = [s for s in rows if "deploy_s" in s.fig and "floor_s" in s.fig]
    if len(done) > 1:
        a, b = done[0], done[-1]
        grow = b.n / a.n
        for what, k in (("deploy time", "deploy_s"), ("server CPU", "cpu_s"), ("floor time", "floor_s")):
            r = b.fig[k] / a.fig[k]
            out.append(f"{what}: {r:.1f}x for {grow:.1f}x the hosts ({a.n:,} -> {b.n:,}); "
                       f"per host {b.fig[k] / b.n * 1000:.1f} ms against {a.fig[k] / a.n * 1000:.1f} ms")
        added = (b.fig["peak_mb"] - a.fig["peak_mb"]) * 1024 / (b.n - a.n)
        out.append(f"server memory per added host {added:.0f} KB (target < {TARGETS['kb_per_host']:.0f} KB): "
                   f"{'MET' if added < TARGETS['kb_per_host'] else 'MISSED'}")
    for s in rows:
        if s.event_s:
            p = _common.percentile(s.event_s, 95) * 1000
            out.append(f"{s.n:,} hosts: event p95 {p:.1f} ms (target < {TARGETS['event_ms']:.0f} ms): "
                       f"{'MET' if p < TARGETS['event_ms'] else 'MISSED'}")
        if s.key_ms:
            p = _common.percentile(s.key_ms, 95)
            out.append(f"{s.n:,} hosts: key p95 {p:.0f} ms over {len(s.key_ms)} keys "
                       f"(target < {TARGETS['key_ms']:.0f} ms): {'MET' if p < TARGETS['key_ms'] else 'MISSED'}")
    return out


def table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [HEAD, *rows]) for i in range(len(HEAD) - 1)]
    for r in [HEAD, *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


def report(rows: list[Size], args, load_before: str, load_after: str) -> None:
    machine = _common.machine_line()
    base = rows[0] if rows else None
    lines = [cells(s, base) for s in rows]
    title = (f"one deploy through the server with the app and {WATCHERS} watchers attached, 3 phases (2 / 10% / "
             f"the rest, at most 150 hosts at once), against the bare asyncssh floor")
    print()
    print(title)
    print(f"machine: {machine}")
    print(f"load average (1 min) before {load_before}, after {load_after}: other work on the machine is noise")
    print()
    table(lines)
    print()
    for v in verdicts(rows):
        print(v)
    for s in rows:
        if "fds" in s.fig:
            print(f"note: {s.n:,} hosts: the server held {s.fig['fds']:.0f} open files after the deploy "
                  f"({s.fig['fds'] / s.n:.2f} a host)")
        for n in s.notes:
            print(f"note: {s.n:,} hosts: {n}")
    print(LEGEND)
    if args.markdown:
        print("\n----- markdown -----\n")
        print(f"{title[0].upper()}{title[1:]}. {machine}; load average {load_before} before, {load_after} after.\n")
        print("| " + " | ".join(HEAD) + " |")
        print("|" + "|".join(["---:"] * (len(HEAD) - 1)) + "|---|")
        for r in lines:
            print("| " + " | ".join(r) + " |")
        print()
        for v in verdicts(rows):
            print(f"- {v}")
        print()
        print(" ".join(LEGEND.split()))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1:3] == ["--worker", "fleet"]:
        sys.exit(worker_fleet(*sys.argv[3:]))
    if len(sys.argv) == 4 and sys.argv[1:3] == ["--worker", "floor"]:
        sys.exit(worker_floor(sys.argv[3]))
    sys.exit(main())
