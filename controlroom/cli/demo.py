"""`controlroom demo`: start a simulated fleet in the background (or attach to a running one) and open the app on it.

The fleet runs as its own process (`controlroom fleet`), so the server talks to it over real SSH exactly as it would
to real hosts, and a second `controlroom demo --dir DIR` can attach to the same fleet. Textual is imported only
once the fleet is up (the core stays free of it).

The deploy runs in the control-room server, so it outlives the demo's terminal; so must the fleet it deploys to. A
small reaper process (`python -m controlroom.cli.demo reap ...`) waits for the demo to end and for no operation
to run in the server, then stops the fleet (and the server, when no one else is attached) and removes a temporary
directory: quitting or losing the terminal mid-deploy lets the deploy finish on every host first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from controlroom.core.errors import ControlroomError, UsageError
from controlroom.journal.journal import pid_alive

READY = "fleet: ready"
START_DEADLINE = 120.0  # seconds; 150 hosts start in a few, a slow machine with 5,000 takes longer


def default_faults(hosts: int) -> str | None:
    """No injected host failure: the demo's story is the canary's gate failing on errors_5xx (r2307 with the
    new_search flag on answers ~8% 5xx), the new_search kill switch offered first, flipped, the gate passing.
    `--faults web002=flaky:1` (any spec) adds a host failure to it."""
    return None


def running_fleet(directory: Path) -> int | None:
    """The pid of a live fleet serving DIR (from DIR/fleet.json), else None."""
    info = directory / "fleet.json"
    try:
        pid = int(json.loads(info.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not pid_alive(pid) or not (directory / "controlroom.toml").is_file():
        return None
    return pid


def _die_with_parent() -> None:
    """In the fleet child (Linux): get SIGTERM when the demo dies, even by SIGKILL, so no fleet is orphaned."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the demo's finally and its SIGHUP handler still stop it
        pass


def start_fleet(
    directory: Path, hosts: int, faults: str | None, *, deadline: float = START_DEADLINE, out=sys.stderr,
    die_with_parent: bool = True, metrics: bool = True, stage: bool = True,
) -> subprocess.Popen:
    """Start `controlroom fleet` in the background and return once it printed its ready line. With metrics (the
    demo's story), the hosts serve /metrics, the fleet answers its config's queries and gates the canary on them.

    Its output goes to DIR/fleet.log (no pipe to fill up while the app runs). Raises ControlroomError with the
    log's last lines when the fleet exits or is not ready in time.
    """
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "fleet.log"
    cmd = [sys.executable, "-m", "controlroom.cli", "fleet", "--hosts", str(hosts), "--dir", str(directory)]
    if faults:
        cmd += ["--faults", faults]
    if metrics:
        cmd.append("--metrics")
    if stage:
        cmd.append("--stage")
    with open(log_path, "wb") as log:
        # its own session: the terminal's Ctrl+C goes to the app, and the fleet is stopped by us, in order
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent and sys.platform.startswith("linux") else None,
        )
    until = time.monotonic() + deadline
    while True:
        text = log_path.read_text(errors="replace")
        if READY in text:
            return proc
        if proc.poll() is not None:
            tail = " | ".join(text.strip().splitlines()[-3:]) or f"exit status {proc.returncode}"
            raise ControlroomError(f"the simulated fleet did not start: {tail}")
        if time.monotonic() > until:
            stop_fleet(proc)
            raise ControlroomError(f"the simulated fleet was not ready after {deadline:g} s (see {log_path})")
        time.sleep(0.05)


def stop_fleet(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM (the fleet shuts its hosts down), then SIGKILL if it does not go."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def cmd_demo(args: argparse.Namespace) -> int:
    """Start (or attach to) the simulated fleet and run the app on it; stop the fleet we started on the way out."""
    hosts = getattr(args, "hosts", 150)
    faults = getattr(args, "faults", None)
    if hosts < 1:
        raise UsageError("--hosts must be at least 1")
    if faults is None:
        faults = default_faults(hosts)
    elif faults.strip().lower() in ("", "none"):
        faults = None
    if faults:
        from controlroom.demo.fleet import parse_faults

        parse_faults(faults)  # a typo fails here, in one line, before anything starts
    temporary = getattr(args, "dir", None) is None
    directory = Path(tempfile.mkdtemp(prefix="controlroom-demo-") if temporary else args.dir).resolve()
    proc: subprocess.Popen | None = None

    def hang_up(signum, frame) -> None:  # the terminal went away (ssh dropped): unwind, so `finally` runs
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, hang_up) for sig in (signal.SIGHUP, signal.SIGTERM)}
    reaping = False
    try:
        pid = running_fleet(directory)
        if pid is not None:
            print(
                f"controlroom demo: attaching to the fleet already running in {directory} (pid {pid})",
                file=sys.stderr,
            )
        else:
            print(
                f"controlroom demo: starting a simulated fleet of {hosts} SSH hosts in {directory} ...",
                file=sys.stderr,
                flush=True,
            )
            if faults:
                print(f"controlroom demo: faults injected: {faults}", file=sys.stderr, flush=True)
            proc = start_fleet(directory, hosts, faults, die_with_parent=False)
            spawn_reaper(os.getpid(), proc.pid, directory, remove=temporary)
            reaping = True
        from controlroom.config import config

        cfg = config.load(directory / "controlroom.toml")
        if pid is None and cfg.release.stage:
            stage_first(cfg)
            past_first(cfg)  # after staging: the server is up and shows the fleet as the story begins
        from controlroom.app.app import run_app  # Textual only from here on

        return run_app(cfg)
    finally:
        if proc is not None and not reaping:
            stop_fleet(proc)
        if temporary and not reaping:
            shutil.rmtree(directory, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stage_first(cfg) -> None:
    """A new demo fleet's staged revision is built before the app opens (the repo's `make build`, a second or
    two, through the server, on the record), so `d` deploys at once; `S` in the app stages again. A failure is said
    and the app opens anyway: the operator sees why in the deploy log."""
    from controlroom.cli.diff import cmd_stage

    print("controlroom demo: staging the staged revision (make build) ...", file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            cmd_stage(cfg, argparse.Namespace(revision=None))
        except ControlroomError as e:
            print(f"controlroom demo: staging failed: {e}", file=sys.stderr, flush=True)


def past_first(cfg) -> None:
    """A new demo fleet keeps a finished deploy in its history (cli/demopast.py): `controlroom history`,
    `controlroom timeline 1` and H show it at once. A journal that cannot take it is said, and the app opens."""
    from controlroom.cli.demopast import record_past_deploy

    try:
        record_past_deploy(cfg, time.time())
    except ControlroomError as e:
        print(f"controlroom demo: the past deploy could not be recorded: {e}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ the reaper


def spawn_reaper(demo_pid: int, fleet_pid: int, directory: Path, *, remove: bool) -> subprocess.Popen:
    """Start the reaper of this demo's fleet: detached, in its own session, so it outlives the terminal."""
    cmd = [sys.executable, "-m", "controlroom.cli.demo", "reap", str(demo_pid), str(fleet_pid), str(directory)]
    if remove:
        cmd.append("--rm")
    with open(directory / "reaper.log", "ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)


async def _server_status(cfg) -> dict | None:
    from controlroom.server.client import NoServer, connect

    try:
        c = await connect(cfg, start=False)
    except (NoServer, ControlroomError, OSError):
        return None
    try:
        return await c.request("status")
    except ControlroomError:
        return None
    finally:
        await c.close()


async def _stop_server(cfg) -> None:
    from controlroom.server.client import NoServer, connect

    try:
        c = await connect(cfg, start=False)
    except (NoServer, ControlroomError, OSError):
        return
    try:
        await c.request("stop")
        await asyncio.wait_for(c.closed.wait(), 60)
    except (ControlroomError, TimeoutError):
        pass
    finally:
        await c.close()


def _wait_gone(pid: int, timeout: float) -> bool:
    until = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > until:
            return False
        time.sleep(0.1)
    return True


def reap(demo_pid: int, fleet_pid: int, directory: Path, *, remove: bool, poll: float = 0.5) -> int:
    """Once the demo has ended and the server runs no operation: stop the server (when nobody else is attached),
    then the fleet, then remove the directory (when it was the demo's temporary one)."""
    from controlroom.config import config

    cfg = None
    with contextlib.suppress(ControlroomError):
        cfg = config.load(directory / "controlroom.toml")
    status = None
    while True:
        if not pid_alive(demo_pid):
            status = asyncio.run(_server_status(cfg)) if cfg is not None else None
            if status is None or not status.get("busy"):
                break
        time.sleep(poll)
    if status is not None and int(status.get("clients", 0)) <= 1:  # the one client is this reaper
        asyncio.run(_stop_server(cfg))
    if pid_alive(fleet_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(fleet_pid, signal.SIGTERM)
        if not _wait_gone(fleet_pid, 10.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(fleet_pid, signal.SIGKILL)
    if remove:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":  # the reaper: python -m controlroom.cli.demo reap DEMO_PID FLEET_PID DIR [--rm]
    p = argparse.ArgumentParser(prog="controlroom-demo-reaper")
    p.add_argument("what", choices=("reap",))
    p.add_argument("demo_pid", type=int)
    p.add_argument("fleet_pid", type=int)
    p.add_argument("directory", type=Path)
    p.add_argument("--rm", action="store_true")
    a = p.parse_args()
    sys.exit(reap(a.demo_pid, a.fleet_pid, a.directory, remove=a.rm))
