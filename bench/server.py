"""Server benchmark: what the control-room server costs a deploy, and what watching it costs the server.

Run by hand, never by CI; nothing here asserts on a timing. One run starts one simulated fleet (`controlroom
fleet`, in its own process, so its SSH servers share neither an interpreter nor a CPU-time count with anything
measured) and ships a new revision in every deploy (b1, b2, ...), so every deploy changes every host; hosts keep
their state between deploys. The config is the fleet's controlroom.toml (its steps, health check and rollback)
with three phases that all go on by themselves (`auto = true`): a canary of 2, 10%, the rest.

  event latency   N watchers (1, then 10), each a real client in its own process (bench/server.py --worker watch):
                  it attaches, then for every event records time.time() at arrival minus the event's "at" (stamped
                  by the engine when it made the event), until the deploy's RolloutFinished. The deploy starts with
                  `controlroom deploy --detach --yes`. p50 / p95 / max over every event every watcher saw.
  server CPU      utime + stime of the server process (/proc/PID/stat, PID from STATE/server.lock) from just before
                  the deploy starts (watchers attached) to the moment every watcher has its RolloutFinished, with 1
                  and with 10 watchers: the ratio.
  headless wall   spawn to exit, against the engine in process: a fresh process running the engine with its own
                  SSH pool and journal, as `controlroom deploy --yes` did before it became a client of the server
                  (bench/server.py --worker inproc). Through the server: `controlroom deploy --yes` (a client of the
                  server now), and `deploy --detach --yes` then `deploy --follow` timed together, both to the
                  server that runs all along (its SSH connections stay open between deploys); and `deploy --yes`
                  to a server stopped before, so the deploy starts it (cold).

Each round runs every measurement once, in an order that rotates from round to round, so the noise of a shared
machine spreads over all of them; one untimed round comes first.

    .venv/bin/python bench/server.py                # 150 hosts, 5 rounds (a few minutes)
    .venv/bin/python bench/server.py --markdown     # also markdown tables for the README

Only 127.0.0.1 and Unix sockets. Every subprocess has a timeout, every wait a deadline, the run a time budget; the
servers and the fleet this run started are stopped at the end, also on error, Ctrl+C or SIGTERM.
"""

# The watchers run this very file as a fresh process (`--worker watch ...`): it imports at module level only what
# such a worker needs.
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402 - beside this file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATCHERS = (1, 10)


# ------------------------------------------------------------------------------------------------ the watcher


def worker_watch(config_path: str, revision: str, timeout: str) -> int:
    """Attach, print `ready`, then record each event's latency until `revision`'s RolloutFinished (or the
    deadline); print {"status", "latencies" (s), "kinds" (each event's type), "snapshots"} as one JSON line."""
    import asyncio
    import json
    import time

    sys.path.insert(0, ROOT)
    from controlroom.config import config
    from controlroom.server.client import connect

    cfg = config.load(config_path)

    async def main() -> dict:
        c = await connect(cfg, start=False, read_only=True)
        lat: list[float] = []
        kinds: list[str] = []
        status, snapshots = "timed out", 0
        try:
            await c.request("attach")
            print("ready", flush=True)
            deadline = time.monotonic() + float(timeout)
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await asyncio.wait_for(c.messages.get(), left)
                except TimeoutError:
                    break
                now = time.time()
                op = msg.get("op")
                if op == "event":
                    e = msg["event"]
                    lat.append(now - e["at"])
                    kinds.append(e["type"])
                    if e["type"] == "RolloutFinished" and e.get("revision") == revision:
                        status = e["status"]
                        break
                elif op == "snapshot":
                    snapshots += 1  # the attach's own, or a resync after falling behind
                elif op == "closed":
                    status = "server went away"
                    break
        finally:
            await c.close()
        return {"status": status, "latencies": lat, "kinds": kinds, "snapshots": snapshots}

    print(json.dumps(asyncio.run(main())), flush=True)
    return 0


def worker_inproc(config_path: str, revision: str) -> int:
    """The engine in this fresh process, as `controlroom deploy --yes` ran it before it became a client of the
    server (commit 772172c): its own SSH pool and journal, the headless Printer (cli/deploy.py), waits answered
    yes. Exit 0 on DEPLOY OK."""
    import asyncio

    sys.path.insert(0, ROOT)
    from controlroom.cli.deploy import Printer
    from controlroom.config import config
    from controlroom.core import events as ev
    from controlroom.core.identity import Actor
    from controlroom.engine.rollout import Rollout
    from controlroom.fleet.ssh import SSHPool, raise_nofile_limit
    from controlroom.journal.journal import Journal

    cfg = config.load(config_path)
    raise_nofile_limit(len(cfg.hosts))

    async def main() -> str:
        journal = Journal.open(cfg.state.dir)
        try:
            async with SSHPool(cfg.ssh, cfg.hosts) as pool:
                r = Rollout(cfg, pool, journal, revision=revision, actor=Actor.here(), confirm="none")
                r.subscribe(Printer(r))
                loop = asyncio.get_running_loop()

                def yes(e: ev.Event) -> None:
                    if isinstance(e, ev.GateWaiting) and e.kind != ev.GATE_BAKE:
                        loop.call_soon(r.proceed, r.actor)

                r.subscribe(yes)
                return (await r.run()).status
        finally:
            journal.close()

    return 0 if asyncio.run(main()) == ev.R_DONE else 1


# ------------------------------------------------------------------------------------------------ the bench


LEGEND = """\
Latency: time.time() when the event reached a watcher's loop (a separate Python process that attached over the
Unix socket, decoded the JSON line and took it off its client's queue) minus the event's "at", stamped by the
engine when it made the event; so it includes the journal's commit, the server's fan-out and the socket. Every
event counts (host state changes, host output lines, phases, the finish). Server CPU: the server process only, from
just before the deploy (watchers attached) until every watcher has the deploy's RolloutFinished; it includes the
deploy's own SSH work, which is the same with 1 or 10 watchers. Headless wall: spawn to exit (for --detach +
--follow, from the first spawn to the follower's exit); "in process" is a fresh process running the engine with
its own SSH pool and journal, as `controlroom deploy --yes` did before it became a client of the server; "server
up" goes to the server that runs all run (SSH connections kept open between deploys), "server cold" to one stopped
before each deploy, so `deploy --yes` starts it. Each state directory (journal) has its own contender or server;
all ship to the same fleet. The fleet's CPU is on the same machine and in no figure."""


def main(argv: list[str] | None = None) -> int:
    return Bench(_common.bench_args(__doc__, 5, 900, argv, ansible=False, min_hosts=4,
                                    keep_help="keep the temporary directory (fleet, configs, journals)")).run()


class Bench(_common.FleetBench):
    TIMEOUT = 180.0  # any one deploy, watcher or client
    PREFIX = "crsrv-"  # short: the servers' sockets live under it
    # name: (state directory, how); the first is the baseline
    CONTENDERS = {
        "in process": ("inproc", "inproc"),
        "deploy --yes, server up": ("server", "yes"),
        "--detach + --follow, server up": ("server", "detach"),
        "deploy --yes, server cold": ("cold", "yes"),
    }

    def __init__(self, args) -> None:
        super().__init__(args)
        self.cr = _common.controlroom_cmd()
        self.serial = 0
        self.latency: dict[int, list[float]] = {n: [] for n in WATCHERS}
        self.events: dict[int, list[int]] = {n: [] for n in WATCHERS}  # events one watcher saw, per deploy
        self.snapshots: dict[int, int] = {n: 0 for n in WATCHERS}  # beyond the attach's own
        self.server_cpu: dict[int, list[float]] = {n: [] for n in WATCHERS}
        self.by_kind: dict[int, dict[str, list[float]]] = {n: {} for n in WATCHERS}  # event type -> latencies
        self.walls: dict[str, list[float]] = {name: [] for name in self.CONTENDERS}
        self.rounds_done = 0

    # -------------------------------------------------------------------------------------- lifecycle
    def work(self) -> None:
        self.configs()
        self.measure()

    def cleanup(self) -> None:
        for tag in getattr(self, "cfg", {}):  # any server a client started in any of our state directories
            self.stop_server(tag)

    def configs(self) -> None:
        """One config per state directory: the fleet's controlroom.toml with our phases and [state]."""
        import re

        from controlroom.config import config

        base = (self.fleet_dir / "controlroom.toml").read_text()
        header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
        kept, keep = [], True
        for line in base.splitlines():
            m = header.match(line)
            if m:
                keep = m.group(1).split(".")[0].strip().strip("\"'") not in ("phase", "state")
            if keep:
                kept.append(line)
        text = "\n".join(kept).rstrip() + "\n" + _common.AUTO_PHASES
        self.cfg = {}
        for tag in ("server", "cold", "inproc"):
            path = self.fleet_dir / f"bench-{tag}.toml"  # beside the fleet's: its relative key paths hold
            path.write_text(f'{text}\n[state]\ndir = "{self.tmp / ("state-" + tag)}"\n')
            self.cfg[tag] = path
        cfg = config.load(self.cfg["server"])
        self.batches = [len(ph.hosts) for ph in cfg.phases]
        if not all(ph.auto for ph in cfg.phases):
            raise RuntimeError("a phase of the bench's config waits for an operator")
        self.notes += self.c.ssh_config_notes(self.cfg["server"])

    # -------------------------------------------------------------------------------------- processes
    def cmd(self, tag: str, *args: str) -> list[str]:
        return self.cr + [*args, "--config", str(self.cfg[tag])]

    def call(self, tag: str, *args: str, timeout: float | None = None):
        """(completed process, wall s) or (None, why not)."""
        import subprocess
        import time

        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                self.cmd(tag, *args),
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout or self.TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return None, f"`controlroom {' '.join(args)}` timed out after {timeout or self.TIMEOUT:g} s"
        return done, time.perf_counter() - t0

    def server_pid(self, tag: str) -> int | None:
        try:
            pid = int((self.tmp / f"state-{tag}" / "server.lock").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if self.c.proc_cpu(pid) is not None else None

    def stop_server(self, tag: str) -> None:
        """`controlroom server stop --force`; a server that still runs after it gets SIGTERM (by its own pid)."""
        import signal
        import time

        pid = self.server_pid(tag)
        if pid is None:
            return
        self.call(tag, "server", "stop", "--force", timeout=90)
        deadline = time.monotonic() + 10
        while self.c.proc_cpu(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.c.proc_cpu(pid) is not None and self.is_our_server(pid, tag):
            os.kill(pid, signal.SIGTERM)

    def is_our_server(self, pid: int, tag: str) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            return False
        return b"serve" in argv and str(self.cfg[tag]).encode() in argv

    def hosts_on(self, revision: str) -> int:
        n = 0
        for name in self.ports:
            try:
                n += (self.fleet_dir / "hosts" / name / "REVISION").read_text().strip() == revision
            except OSError:
                pass
        return n

    def revision(self) -> str:
        """A new revision for each deploy: a tag in the fleet's repository (the server ships only what it names)."""
        import subprocess

        self.serial += 1
        rev = f"b{self.serial}"
        subprocess.run(
            ["git", "-C", str(self.fleet_dir / "repo"), "tag", "-f", rev, "refs/heads/staging"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return rev

    def fail(self, name: str, why: str) -> None:
        self.failures.setdefault(name, []).append(why)
        print(f"bench: {name}: {why}", file=sys.stderr, flush=True)

    # -------------------------------------------------------------------------------------- measurements
    def measure(self) -> None:
        import time

        started = time.monotonic()
        steps = [(f"{n} watchers", lambda n=n, record=False: self.watched(n, record)) for n in WATCHERS]
        steps += [
            (name, lambda name=name, record=False: self.headless(name, record)) for name in self.CONTENDERS
        ]
        for (
            _,
            step,
        ) in steps:  # untimed: page cache, .pyc files, the server's first connections, each host's sh
            step()
        for r in range(self.args.rounds):
            if time.monotonic() - started > self.args.budget:
                self.notes.append(f"time budget of {self.args.budget:g} s spent: stopped after {r} rounds")
                break
            k = r % len(steps)
            for _, step in steps[k:] + steps[:k]:
                step(record=True)
                time.sleep(0.3)  # let the fleet finish closing the previous client's connections
            self.rounds_done = r + 1
            print(
                f"bench: round {r + 1}/{self.args.rounds} done ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    def watched(self, n: int, record: bool) -> None:
        """One deploy through the server with n watcher processes attached."""
        import json
        import subprocess
        import time

        name = f"{n} watchers"
        rev = self.revision()
        if self.server_pid("server") is None:  # started here, not by the watchers (they only attach)
            self.start_server("server")
        me = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "watch",
            str(self.cfg["server"]),
            rev,
            str(self.TIMEOUT),
        ]
        procs, lines, results = [], [], []
        try:
            for _ in range(n):
                p = subprocess.Popen(
                    me, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                procs.append(p)
                lines.append((self.c.LineReader(p.stdout), self.c.LineReader(p.stderr)))
            deadline = time.monotonic() + 60
            for out, err in lines:
                line = out.get(deadline - time.monotonic())
                if line != "ready":
                    return self.fail(name, f"a watcher did not attach: {line or ' | '.join(err.seen[-2:])}")
            pid = self.server_pid("server")
            cpu0 = self.c.proc_cpu(pid) if pid else None
            done, why = self.call("server", "deploy", "--detach", "--yes", "--revision", rev)
            if done is None or done.returncode != 0:
                return self.fail(
                    name,
                    why
                    if done is None
                    else f"detach: exit {done.returncode}: {(done.stdout + done.stderr).strip()[-200:]}",
                )
            deadline = time.monotonic() + self.TIMEOUT
            for out, err in lines:
                line = out.get(deadline - time.monotonic())
                try:
                    results.append(json.loads(line or ""))
                except ValueError:
                    return self.fail(name, f"a watcher said {line!r}: {' | '.join(err.seen[-2:])}")
            cpu1 = self.c.proc_cpu(pid) if pid else None
        finally:
            for p in procs:
                if len(results) < n:
                    p.terminate()  # the deploy did not happen or a watcher failed: the rest would wait it out
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        bad = [r["status"] for r in results if r["status"] != "done"]
        if bad:
            return self.fail(name, f"watchers saw the deploy end {', '.join(sorted(set(bad)))}")
        on = self.hosts_on(rev)
        if on != self.n:
            return self.fail(name, f"only {on} of {self.n} hosts hold {rev}")
        if not record:
            return
        for r in results:
            self.latency[n].extend(r["latencies"])
            for kind, x in zip(r["kinds"], r["latencies"], strict=True):
                self.by_kind[n].setdefault(kind, []).append(x)
            self.events[n].append(len(r["latencies"]))
            self.snapshots[n] += max(0, r["snapshots"] - 1)
        if cpu0 is not None and cpu1 is not None:
            self.server_cpu[n].append(cpu1 - cpu0)
        else:
            self.fail(name, "the server's pid was not found: no CPU figure")

    def start_server(self, tag: str) -> None:
        """Start the server of ``tag`` (a client that connects starts it, as `controlroom` does) and wait for
        its pid."""
        import asyncio
        import time

        from controlroom.config import config
        from controlroom.server.client import connect

        async def go() -> None:
            c = await connect(config.load(self.cfg[tag]))
            await c.close()

        asyncio.run(asyncio.wait_for(go(), 60))
        deadline = time.monotonic() + 30
        while self.server_pid(tag) is None and time.monotonic() < deadline:
            time.sleep(0.05)

    def headless(self, name: str, record: bool) -> None:
        import subprocess
        import time

        rev = self.revision()
        tag, how = self.CONTENDERS[name]
        if tag == "cold":
            self.stop_server(tag)
            if self.server_pid(tag) is not None:
                return self.fail(name, "the cold contender's server did not stop")
        t0 = time.perf_counter()
        if how == "inproc":
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "inproc", str(self.cfg[tag]), rev]
            try:
                done = subprocess.run(
                    cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=self.TIMEOUT
                )
            except subprocess.TimeoutExpired:
                return self.fail(name, f"timed out after {self.TIMEOUT:g} s")
        elif how == "yes":
            done, why = self.call(tag, "deploy", "--yes", "--revision", rev)
        else:
            done, why = self.call(tag, "deploy", "--detach", "--yes", "--revision", rev)
            if done is not None and done.returncode == 0:
                done, why = self.call(tag, "deploy", "--follow")
        took = time.perf_counter() - t0
        if tag == "cold":
            self.stop_server(tag)  # untimed; an idle server's keepalives would load the others' rounds
        if done is None:
            return self.fail(name, why)
        # a follower that attaches after the end says so from the snapshot: "deploy #N of REV: done (...)"
        if done.returncode != 0 or (
            f"DEPLOY OK {rev}" not in done.stdout and f" of {rev}: done" not in done.stdout
        ):
            return self.fail(name, f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[-200:]}")
        on = self.hosts_on(rev)
        if on != self.n:
            return self.fail(name, f"only {on} of {self.n} hosts hold {rev}")
        if record:
            self.walls[name].append(took)

    # -------------------------------------------------------------------------------------- report
    def latency_rows(self) -> list[tuple[str, ...]]:
        rows = []
        for n in WATCHERS:
            lat, cpu = self.latency[n], self.server_cpu[n]
            if not lat:
                why = "; ".join(dict.fromkeys(self.failures.get(f"{n} watchers", ["not measured"])))
                rows.append((str(n), "0", "-", "-", "-", "-", "-", f"failed: {why[:160]}"))
                continue
            ms = [x * 1000 for x in lat]
            per = self.c.median(self.events[n])
            bad = len(self.failures.get(f"{n} watchers", []))
            notes = []
            if bad:
                notes.append(f"{bad} deploys failed")
            if self.snapshots[n]:
                notes.append(f"{self.snapshots[n]} resync snapshots")
            rows.append(
                (
                    str(n),
                    str(len(self.events[n]) // n),
                    f"{per:.0f}",
                    f"{self.c.percentile(ms, 50):.1f}",
                    f"{self.c.percentile(ms, 95):.1f}",
                    f"{max(ms):.1f}",
                    f"{self.c.median(cpu):.2f}" if cpu else "-",
                    "; ".join(notes),
                )
            )
        return rows

    def wall_rows(self) -> list[tuple[str, ...]]:
        base = self.walls["in process"]
        rows = []
        for name in self.CONTENDERS:
            w = self.walls[name]
            if not w:
                why = "; ".join(dict.fromkeys(self.failures.get(name, ["not measured"])))
                rows.append((name, "-", "-", "-", "0", f"failed: {why[:160]}"))
                continue
            ratio = f"{self.c.median(w) / self.c.median(base):.2f}x" if base else "-"
            bad = len(self.failures.get(name, []))
            rows.append(
                (
                    name,
                    f"{self.c.median(w):.3f}",
                    f"{min(w):.3f}",
                    ratio,
                    f"{len(w)}" + (f" (+{bad} failed)" if bad else ""),
                    "",
                )
            )
        return rows

    def kind_lines(self) -> list[str]:
        """p95 per event type: which events wait (host output lines, state changes, the rest)."""
        out = []
        for n in WATCHERS:
            kinds = self.by_kind[n]
            if not kinds:
                continue
            main = ("HostStateChanged", "HostOutput")
            groups = {k: kinds[k] for k in main if k in kinds}
            rest = [x for k, xs in kinds.items() if k not in main for x in xs]
            if rest:
                groups["other events"] = rest
            parts = [f"{k} {self.c.percentile(xs, 95) * 1000:.1f} ms ({len(xs)})" for k, xs in groups.items()]
            out.append(f"p95 by event type, {n} watcher{'s' * (n > 1)} (events seen): " + ", ".join(parts))
        return out

    def verdicts(self) -> list[str]:
        out = []
        for n in WATCHERS:
            if self.latency[n]:
                p95 = self.c.percentile(self.latency[n], 95) * 1000
                out.append(
                    f"event latency p95 with {n} watcher{'s' * (n > 1)} = {p95:.1f} ms (goal <= 20 ms): "
                    f"{'MET' if p95 <= 20 else 'MISSED'}"
                )
        one, ten = self.server_cpu[WATCHERS[0]], self.server_cpu[WATCHERS[-1]]
        if one and ten:
            r = self.c.median(ten) / self.c.median(one)
            extra = (self.c.median(ten) - self.c.median(one)) / (WATCHERS[-1] - WATCHERS[0])
            out.append(
                f"server CPU, {WATCHERS[-1]} watchers / {WATCHERS[0]} = {r:.2f}x (goal <= 2x): "
                f"{'MET' if r <= 2 else 'MISSED'}; about {extra * 1000:.0f} ms of server CPU per extra "
                "watcher per deploy"
            )
        base = self.walls["in process"]
        for name in list(self.CONTENDERS)[1:]:
            if base and self.walls[name]:
                r = self.c.median(self.walls[name]) / self.c.median(base)
                out.append(
                    f"headless wall, {name} / in process = {r:.2f}x (goal <= 1.05x): "
                    f"{'MET' if r <= 1.05 else 'MISSED'}"
                )
        return out

    @staticmethod
    def table(head: tuple[str, ...], rows: list[tuple[str, ...]], left: int = 1) -> None:
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
        for r in [head, *rows]:
            cells = [
                c.ljust(w) if i < left else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=False))
            ]
            print("  ".join(cells) + "  " + r[-1])

    def report(self) -> None:
        machine = self.c.machine_line()
        plan = " / ".join(str(b) for b in getattr(self, "batches", [])) or "?"
        title = (
            f"the control-room server, {self.n} simulated hosts on 127.0.0.1 in 3 phases ({plan}), "
            f"{self.rounds_done} round{'s' * (self.rounds_done != 1)}, rotating order"
        )
        lat_head = (
            "watchers",
            "deploys",
            "events/deploy",
            "p50 ms",
            "p95 ms",
            "max ms",
            "server CPU s",
            "notes",
        )
        wall_head = ("headless deploy", "median s", "min s", "vs in process", "runs", "notes")
        lat, walls = self.latency_rows(), self.wall_rows()
        print()
        print(title)
        print(f"machine: {machine}")
        print(
            f"load average (1 min) before {self.load_before}, after {getattr(self, 'load_after', '?')}: other "
            "work on the machine shows up as noise"
        )
        print()
        self.table(lat_head, lat)
        for line in self.kind_lines():
            print(line)
        print()
        self.table(wall_head, walls)
        print()
        for v in self.verdicts():
            print(v)
        self.print_notes()
        print(LEGEND)
        if self.args.markdown:
            print("\n----- markdown -----\n")
            print(
                f"{title[0].upper()}{title[1:]}. {machine}; load average {self.load_before} before, "
                f"{getattr(self, 'load_after', '?')} after.\n"
            )
            for head, rows in ((lat_head, lat), (wall_head, walls)):
                print("| " + " | ".join(head) + " |")
                print("|---|" + "|".join(["---:"] * (len(head) - 2)) + "|---|")
                for r in rows:
                    print("| " + " | ".join(r) + " |")
                print()
            for v in self.kind_lines() + self.verdicts():
                print(f"- {v}")
            print()
            print(" ".join(LEGEND.split()))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker" and sys.argv[2] == "watch":
        sys.exit(worker_watch(*sys.argv[3:]))
    if len(sys.argv) == 5 and sys.argv[1] == "--worker" and sys.argv[2] == "inproc":
        sys.exit(worker_inproc(*sys.argv[3:]))
    sys.exit(main())
