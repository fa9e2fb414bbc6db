"""Plumbing shared by the benchmarks: a simulated fleet in its own process, worker processes spoken to over pipes
with timeouts on every wait, and the line that says which machine a result came from."""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def fleet_ports(fleet_dir: str | os.PathLike[str]) -> dict[str, int]:
    """{host name: port} from the fleet.json a running fleet wrote."""
    with open(os.path.join(fleet_dir, "fleet.json")) as f:
        return json.load(f)["hosts"]


def ssh_config_notes(config_path: str | os.PathLike[str]) -> list[str]:
    """Anything that would make controlroom resolve an ssh_config against this config, for the report's notes.

    The fleet's controlroom.toml gives each host's address and port in [inventory.host] and names no ssh_config, so
    controlroom and the benches' floor do the same work per host. A config naming one, a ~/.ssh/config (SSHPool reads
    it when it exists) or a fleet config without [inventory.host] would change that; each says so here."""
    import tomllib

    with open(config_path, "rb") as f:
        inventory = tomllib.load(f).get("inventory", {})
    name = os.path.basename(config_path)
    notes = []
    if inventory.get("ssh", {}).get("config"):
        notes.append(f"{name} names an ssh_config ({inventory['ssh']['config']}): controlroom resolves it once per "
                     "host per pool; the floor reads none")
    if not inventory.get("host"):
        notes.append(f"{name} has no [inventory.host] table: the hosts' ports do not come from the config")
    user = os.path.expanduser("~/.ssh/config")
    if os.path.isfile(user):
        notes.append(f"{user} exists: controlroom resolves it once per host per pool; the floor reads none")
    return notes


def controlroom_cmd() -> list[str]:
    """How to start `controlroom` from the interpreter running the bench (the venv's console script)."""
    exe = Path(sys.executable).parent / "controlroom"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "controlroom.cli"]


class FleetProcess:
    """`controlroom fleet --hosts N --dir DIR` as a child in its own session; start() returns once it says ready."""

    def __init__(self, directory: Path, hosts: int, extra: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.hosts = hosts
        self.extra = extra  # more `controlroom fleet` options, e.g. ("--metrics",)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> dict[str, int]:
        cmd = controlroom_cmd() + ["fleet", "--hosts", str(self.hosts), "--dir", str(self.dir), *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        lines = LineReader(self.proc.stdout)
        deadline = time.monotonic() + timeout
        while True:
            line = lines.get(deadline - time.monotonic())
            if line is None:
                raise RuntimeError(f"fleet did not say ready within {timeout:g} s: {' | '.join(lines.seen[-5:])}")
            if "ready" in line:
                break
        ports = fleet_ports(self.dir)
        if len(ports) != self.hosts:
            raise RuntimeError(f"fleet.json lists {len(ports)} hosts, expected {self.hosts}")
        return ports

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session this class started, nothing else
            self.proc.wait(5)


class Worker:
    """A long-lived process that prints `ready ...` once set up, then answers each `go` line with one line."""

    def __init__(self, name: str, cmd: list[str], timeout: float) -> None:
        self.name, self.cmd, self.timeout = name, cmd, timeout
        self.proc: subprocess.Popen | None = None
        self.alive = False

    def start(self) -> str | None:
        """None once the worker is ready, else why it is not."""
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = LineReader(self.proc.stdout)
        self.errs = LineReader(self.proc.stderr)
        line = self.lines.get(self.timeout)
        if line is None or not line.startswith("ready "):
            self.stop()
            return f"did not get ready: {line or ' | '.join(self.errs.seen[-3:]) or 'no answer'}"
        self.alive = True
        return None

    def go(self) -> tuple[str | None, str | None]:
        """(answer, None) or (None, why there is none)."""
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except OSError as e:
            self.alive = False
            return None, f"worker gone: {e}"
        line = self.lines.get(self.timeout)
        if line is None or not line.startswith("t "):
            self.alive = False
            self.stop()
            return None, f"no answer within {self.timeout:g} s: {' | '.join(self.errs.seen[-3:])}"
        return line, None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class LineReader:
    """Lines from a pipe through a daemon thread, so every wait on them can time out."""

    def __init__(self, stream) -> None:
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in stream:
                self.seen.append(line.rstrip("\n"))
                self.q.put(line.rstrip("\n"))
            self.q.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def get(self, timeout: float) -> str | None:
        try:
            return self.q.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            return None


def timed_run(cmd: list[str], *, timeout: float, env: dict | None = None):
    """(completed process, wall s, CPU s of its whole process tree) or (None, timeout, None) when it timed out."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, timeout, None
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def machine_line() -> str:
    """Date, CPUs and model, kernel, Python and asyncssh versions: enough to know whether two runs compare."""
    import datetime
    import platform
    from importlib.metadata import version

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"{now}; {cpus} CPUs ({model}); {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; asyncssh {version('asyncssh')}")


def loadavg() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def raise_nofile(need: int) -> None:
    """Raise this process's soft open-files limit towards ``need``; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (0..100) of xs by linear interpolation between the closest ranks; xs must not be empty."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def proc_cpu(pid: int) -> float | None:
    """utime + stime of one process (not its children) in seconds from /proc/PID/stat; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FleetBench:
    """What every fleet bench does around its measuring: a short temporary directory (ssh ControlPath sockets and
    server sockets live under it), the simulated fleet in its own process, and a run that always stops the fleet,
    reports what was measured even when interrupted, and says in one line what broke. A bench defines ``work()``
    (what it measures), ``cleanup()`` (what it started besides the fleet) and ``report()``."""

    PREFIX = "crbench-"

    def __init__(self, args) -> None:
        import tempfile

        self.c = sys.modules[__name__]
        self.args = args
        self.n = args.hosts
        self.tmp = Path(tempfile.mkdtemp(prefix=self.PREFIX))
        self.fleet = FleetProcess(self.tmp / "fleet", self.n)
        self.fleet_dir = self.fleet.dir
        self.bin = Path(sys.executable).parent
        self.failures: dict[str, list[str]] = {}
        self.notes: list[str] = []

    def work(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Stop what the bench started besides the fleet (runs before the fleet stops, even after an error)."""

    def report(self) -> None:
        raise NotImplementedError

    def run(self) -> int:
        # a SIGTERM to the bench must still stop the fleet: make it a SystemExit so `finally` runs
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        raise_nofile(8 * self.n + 256)
        self.load_before = loadavg()
        status = 0
        try:
            self.ports = self.fleet.start()
            self.work()
        except KeyboardInterrupt:
            print("bench: interrupted; reporting what was measured", file=sys.stderr)
            status = 130
        except Exception as e:  # noqa: BLE001 - report what we have, then say what broke
            print(f"bench: error: {type(e).__name__}: {e}", file=sys.stderr)
            status = 1
        finally:
            self.load_after = loadavg()
            self.cleanup()
            self.fleet.stop()
            if self.args.keep:
                print(f"bench: kept {self.tmp}", file=sys.stderr)
            else:
                import shutil

                shutil.rmtree(self.tmp, ignore_errors=True)
        self.report()
        return status

    def print_notes(self) -> None:
        for n in self.notes:
            print(f"note: {n}")
        for name, errs in self.failures.items():
            for e in dict.fromkeys(errs):
                print(f"failure: {name}: {e}")


def versions(packages: tuple[str, ...], ansible_version: str = "") -> str:
    """The installed versions of ``packages`` (those present), and Ansible's and OpenSSH's when Ansible ran."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in packages:
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    if ansible_version:
        out.append(ansible_version)
        try:
            v = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=10)
            out.append(v.stderr.strip().split(",")[0])
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "; ".join(out)


def bench_args(doc: str, rounds: int, budget: float, argv: list[str] | None, *, ansible: bool = True,
               keep_help: str = "keep the temporary fleet directory", min_hosts: int = 1):
    """The options every fleet bench takes: --hosts, --rounds, --budget, --markdown, --keep (and --no-ansible)."""
    import argparse

    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=150, help="simulated hosts (default 150)")
    p.add_argument("--rounds", type=int, default=rounds, help=f"measured rounds (default {rounds})")
    p.add_argument("--budget", type=float, default=budget,
                   help=f"start no new round after this many seconds (default {budget:g})")
    p.add_argument("--markdown", action="store_true", help="also print the result as markdown for the README")
    if ansible:
        p.add_argument("--no-ansible", action="store_true", help="skip Ansible even when it is installed")
    p.add_argument("--keep", action="store_true", help=keep_help)
    args = p.parse_args(argv)
    if args.hosts < min_hosts or args.rounds < 1:
        p.error(f"--hosts must be at least {min_hosts}" + (" (three phases)" if min_hosts > 1 else "")
                + " and --rounds at least 1")
    return args


AUTO_PHASES = """
[[phase]]
name = "canary"
size = 2
auto = true

[[phase]]
name = "stage 1"
size = "10%"
max_failed = 1
auto = true

[[phase]]
name = "stage 2"
size = "100%"
max_failed = "2%"
auto = true
"""  # the fleet's three phases, each going on by itself: nothing waits for an operator (server.py, scale.py)
