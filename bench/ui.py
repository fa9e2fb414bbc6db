"""How the control room feels under load, by hand (never in CI): `python bench/ui.py [--hosts 150 5000]`.

For each fleet size the app runs in its own process on a real pseudo-terminal (160x48, the real Linux driver),
built by the same `build_app` as `controlroom`. Inside it a feeder plays a rollout in which every host is running
and streams 10 output lines a second (HostOutput events, merged by the app exactly as engine events are), and a
tenth of the hosts move a step every second (HostStateChanged). This process is the terminal: it reads every byte
the app writes and measures

  first frame    from starting the process to the first frame showing the host grid
  key -> screen  from writing an arrow key to the pty to the first bytes that show the moved cursor, i.e. the
                 selected host's name under the grid (the grid itself may show glyphs only) (p50, p95)
  CPU            the app's share of one core over 10 s of watching (utime + stime from /proc)
  RSS            resident memory at the end (and the peak)

With the metrics pane live (--metrics on, the default measures both), a simulated fleet with metrics (`controlroom
fleet --metrics`, 4 hosts, two of them on r2307 so errors_5xx breaches) runs in its own process as the source, with
its control-room server (`controlroom serve`) in another, and the pane polls that server's `metrics` op every 2 s
over its socket, as the app does (the server reads the source; the app decodes and draws the answer). The feeder also
puts a flag change or a gate verdict on the time axis every 3 s, and a tenth of the hosts change state every second
(running <-> checking), so grid cells really repaint.

The figures include Python's start-up and the feeder's own work; a real rollout adds SSH on top.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZE = (160, 48)
LINES_PER_SECOND = 10
TICK = 0.05  # the feeder's period: events arrive in small bursts, as they do from many SSH channels


# ------------------------------------------------------------------------------------------------ the app side


def write_config(directory: Path, hosts: int, metrics_url: str | None = None) -> Path:
    width = max(4, len(str(hosts)))
    (directory / "known_hosts").write_text("")
    cfg = directory / "controlroom.toml"
    cfg.write_text(f"""
[inventory]
hosts = ["web[{1:0{width}d}:{hosts:0{width}d}]"]
[inventory.ssh]
known_hosts = "known_hosts"
port = 9
connect_timeout = 1
[deploy]
revision = "r2307"
steps = ["step one", "step two", "step three"]
[[phase]]
name = "canary"
size = 2
auto = false
[[phase]]
name = "stage 1"
size = "10%"
[[phase]]
name = "stage 2"
size = "100%"
[state]
dir = "state"
""")
    if metrics_url:
        from controlroom.demo.metrics_sim import metrics_config

        cfg.write_text(cfg.read_text() + metrics_config(metrics_url))
    return cfg


async def feed(app, hosts: int) -> None:
    """Play a rollout with every host running and streaming; never returns."""
    from controlroom.core import events as ev

    board = app.board
    while not (app.is_running and app._main is not None and app._main.is_mounted):
        await asyncio.sleep(0.01)
    phases = tuple((p.name, p.hosts) for p in board.phases)
    app.merge(
        ev.RolloutStarted(1, revision="r2307", previous="r2306", user="bench", phases=phases)
    )
    app.merge(ev.PhaseStarted(1, phase=0, name=phases[0][0], hosts=len(phases[0][1])))
    app.merge(ev.PhaseStarted(1, phase=2, name=phases[2][0], hosts=len(phases[2][1])))
    names = list(board.order)
    step = {}
    for n in names:
        hv = board.hosts[n]
        app.merge(
            ev.HostStateChanged(1, host=n, phase=hv.phase, state=ev.RUNNING, step=1, steps=3)
        )
        step[n] = 1
    per_tick = hosts * LINES_PER_SECOND * TICK  # lines to emit each tick
    movers_per_tick = max(1, int(hosts * 0.1 * TICK))
    carry = 0.0
    i = j = line = ticks = 0
    marks = ("FLAG", "new_search on -> off"), ("GATE", "GATE canary: errors_5xx = 7.9 (max 5): FAILED")
    next_at = time.perf_counter()
    while True:
        next_at += TICK
        ticks += 1
        if ticks % int(3 / TICK) == 0:  # a marker on the metrics pane's time axis
            kind, text = marks[(ticks // int(3 / TICK)) % 2]
            app.merge(ev.LogEntryAdded(1, user="bench", kind=kind, text=text))
        carry += per_tick
        count = int(carry)
        carry -= count
        for _ in range(count):
            n = names[i]
            i = (i + 1) % hosts
            line += 1
            app.merge(
                ev.HostOutput(1, host=n, stream="out", line=f"line {line} of the build output")
            )
        for _ in range(movers_per_tick):  # a state the grid shows changes: its cell repaints
            n = names[j]
            j = (j + 1) % hosts
            step[n] = step[n] % 3 + 1
            state = ev.CHECKING if board.hosts[n].state == ev.RUNNING else ev.RUNNING
            app.merge(
                ev.HostStateChanged(1, host=n, phase=board.hosts[n].phase, state=state, step=step[n], steps=3)
            )
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


def child(hosts: int, directory: Path, metrics_config: str | None) -> None:
    sys.path.insert(0, str(ROOT))
    from controlroom.app.app import ControlRoom
    from controlroom.app.metrics import cleaned
    from controlroom.config import config
    from controlroom.server.client import connect

    metrics_cfg = config.load(Path(metrics_config)) if metrics_config else None

    class Unlinked(ControlRoom):
        """The app as build_app makes it, with the feeder in place of the server: what is measured is the UI's
        own path (events merged into the board, the 15 Hz flush, the paint), not the socket."""

        CSS_PATH = str(ROOT / "controlroom" / "app" / "app.tcss")  # relative paths are read beside the subclass

        metrics_client = None

        def start_link(self) -> None:
            self.room.may_act = True
            self.revisions_loaded.set()
            self.metrics_feed.fetch = self.fetch_metrics  # the pane polls the metrics fleet's server instead

        async def fetch_metrics(self, points: int) -> dict:
            # the metrics fleet's server answers, over its socket, as the app's own server would
            if self.metrics_client is None:
                self.metrics_client = await connect(metrics_cfg, start=False, read_only=True)
            return cleaned(await self.metrics_client.request("metrics", points=points))

    cfg = config.load(write_config(directory, hosts, metrics_cfg.metrics.url if metrics_cfg else None))
    app = Unlinked(cfg)

    async def main() -> None:
        run = asyncio.ensure_future(app.run_async())
        feeder = asyncio.ensure_future(feed(app, hosts))
        await run
        feeder.cancel()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------------ the terminal side


class Terminal:
    """A pseudo-terminal that runs the app and keeps every byte it writes, with the time it arrived."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.chunks: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.chunks.append((time.perf_counter(), data))

    def since(self, t0: float) -> list[tuple[float, bytes]]:
        with self.lock:
            return [c for c in self.chunks if c[0] >= t0]

    def wait_for(self, pattern: bytes, after: float, timeout: float = 30.0) -> float:
        """The time the first chunk completing `pattern` (after `after`) arrived."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            buf = b""
            for at, data in self.since(after):
                buf += data
                if pattern in buf:
                    return at
            time.sleep(0.0005)
        raise TimeoutError(f"{pattern!r} did not appear within {timeout:g} s")

    def press(self, data: bytes) -> float:
        t = time.perf_counter()
        os.write(self.master, data)
        return t

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory(self) -> tuple[float, float]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
        peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
        return rss, peak

    def close(self) -> None:
        try:
            os.write(self.master, b"\x11")  # ctrl+q
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


class MetricsSource:
    """A 4-host simulated fleet with metrics, two hosts on r2307 (errors_5xx over max 5), and its control-room
    server, each in a process (and session) of its own; stop() ends both."""

    def __init__(self, directory: Path) -> None:
        sys.path.insert(0, str(ROOT))
        from _common import FleetProcess, controlroom_cmd  # beside this file (bench/ is not a package)

        from controlroom.demo.metrics_sim import BAD_REVISION
        from controlroom.server.statedir import socket_path

        self.fleet = FleetProcess(directory, 4, ("--metrics",))
        self.server: subprocess.Popen | None = None
        self.fleet.start()
        for host in ("web001", "web002"):
            (directory / "hosts" / host / "REVISION").write_text(f"{BAD_REVISION}\n")
        self.config = directory / "controlroom.toml"
        self.server = subprocess.Popen(controlroom_cmd() + ["serve", "--config", str(self.config), "--quiet"],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        sock = socket_path(directory / "state")
        deadline = time.monotonic() + 60
        while not sock.exists():
            if self.server.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the metrics fleet's server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(5)
        self.fleet.stop()


def measure(hosts: int, presses: int, watch: float, metrics: bool = False) -> dict:
    width = max(4, len(str(hosts)))
    with tempfile.TemporaryDirectory(prefix="controlroom-bench-ui-") as tmp:
        source = MetricsSource(Path(tmp) / "metrics-fleet") if metrics else None
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(hosts), "--dir", tmp]
        term = Terminal(argv + (["--metrics-config", str(source.config)] if source else []))
        try:
            first_frame = term.wait_for(b"Rollout", term.started) - term.started
            first_grid = term.wait_for(f"web{1:0{width}d}".encode(), term.started) - term.started
            term.wait_for(b"running for", term.started)  # the feeder is playing
            if metrics:  # the pane is live: it has drawn the source's answer (only the pane names latency_ms)
                term.wait_for(b"latency_ms", term.started, timeout=60)
            time.sleep(2.0)  # let the stream settle
            cpu0, t0 = term.cpu_seconds(), time.perf_counter()
            time.sleep(watch)
            cpu = (term.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
            latencies = []
            for k in range(presses):
                target = f"web{k + 2:0{width}d}".encode()  # the cursor starts on the first host
                sent = term.press(b"\x1b[C")  # right arrow
                latencies.append((term.wait_for(target, sent, timeout=10) - sent) * 1000)
                time.sleep(0.15)  # a person's pace, so presses do not queue
            rss, peak = term.memory()
        finally:
            term.close()
            if source is not None:
                source.stop()
    latencies.sort()
    return {
        "hosts": hosts,
        "metrics": metrics,
        "first_frame_s": first_frame,
        "first_grid_s": first_grid,
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))],
        "max_ms": latencies[-1],
        "cpu_pct": cpu * 100,
        "rss_mb": rss,
        "peak_mb": peak,
        "events_per_s": hosts * LINES_PER_SECOND + hosts * 0.1,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, nargs="+", default=[150, 5000])
    ap.add_argument("--presses", type=int, default=40)
    ap.add_argument("--watch", type=float, default=10.0, help="seconds of watching for the CPU share")
    ap.add_argument("--metrics", choices=("on", "off", "both"), default="both",
                    help="the metrics pane live against a simulated source (default: measure both)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--metrics-config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.dir), args.metrics_config)
        return 0
    print(
        f"controlroom UI bench: {SIZE[0]}x{SIZE[1]} pty, every host streaming {LINES_PER_SECOND} lines/s, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        f"{'hosts':>6} {'metrics':>8} {'events/s':>9} {'first frame':>12} {'grid shown':>11} {'key p50':>8} {'key p95':>8} "
        f"{'key max':>8} {'CPU':>6} {'RSS':>8} {'peak RSS':>9}"
    )
    modes = {"on": (True,), "off": (False,), "both": (False, True)}[args.metrics]
    for n, live in ((n, live) for n in args.hosts for live in modes):
        r = measure(n, args.presses, args.watch, live)
        print(
            f"{r['hosts']:>6} {'live' if live else 'off':>8} {r['events_per_s']:>9.0f} {r['first_frame_s']:>10.2f} s {r['first_grid_s']:>9.2f} s "
            f"{r['p50_ms']:>5.1f} ms {r['p95_ms']:>5.1f} ms {r['max_ms']:>5.1f} ms {r['cpu_pct']:>5.1f}% "
            f"{r['rss_mb']:>5.0f} MB {r['peak_mb']:>6.0f} MB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
