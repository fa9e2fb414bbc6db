"""The record at scale: a 5,000-host deploy's timeline (about 100,000 events) opened from a real journal, then its
cursor moved.

Run by hand, never by CI; nothing here asserts on a timing. It writes one deploy into a fresh journal (through the
journal's own _apply, in large transactions, so the writing is quick), then measures:

  open   Timeline.read(db, deploy): the indexed query, decoding every event, the checkpoints (rounds of it);
         wall time and CPU time (the machine is shared: CPU time is what it costs on a core of its own)
  seek   Timeline.at(i) at random entries (a jump: home/end, n/N, a click on the axis)
  step   Timeline.at(i + 1) from a random entry (the cursor's left/right)
  time   Timeline.at(t) at random times (shift+arrow: a minute)

    .venv/bin/python bench/record.py                      # 5,000 hosts x 20 events, 3 rounds, 1,000 seeks
    .venv/bin/python bench/record.py --hosts 500 --rounds 1

Goals (issue 17): open under 1 s, a cursor move's p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlroom.core import events as ev  # noqa: E402
from controlroom.core.identity import Actor  # noqa: E402
from controlroom.engine.gates import GateEvaluated  # noqa: E402
from controlroom.engine.record import Timeline  # noqa: E402
from controlroom.journal.journal import Journal  # noqa: E402


def write(j: Journal, hosts: int, per_host: int) -> tuple[int, int]:
    """One deploy of ``hosts`` hosts in 10 phases, each host moving ``per_host`` times; (its id, its events)."""
    names = [f"web{i:05d}" for i in range(hosts)]
    size = max(1, hosts // 10)
    phases = tuple((f"phase {k}", tuple(names[k * size:(k + 1) * size] if k < 9 else names[9 * size:]))
                   for k in range(10))
    rid = j.new_rollout("r2", "r1", Actor("bench"), [[n, list(h)] for n, h in phases])
    t = time.time() - 3600
    n = 0
    steps = max(1, per_host - 2)
    batch: list[ev.Event] = [ev.RolloutStarted(rid, revision="r2", previous="r1", user="bench", phases=phases, at=t)]
    for k, (name, members) in enumerate(phases):
        t += 1
        batch.append(ev.PhaseStarted(rid, phase=k, name=name, hosts=len(members), at=t))
        for h in members:
            batch.append(ev.HostStateChanged(rid, host=h, phase=k, state=ev.CONNECTING, at=(t := t + 0.01)))
            for s in range(1, steps + 1):
                batch.append(ev.HostStateChanged(rid, host=h, phase=k, state=ev.RUNNING, step=s, steps=steps,
                                                 at=(t := t + 0.01)))
            batch.append(ev.HostStateChanged(rid, host=h, phase=k, state=ev.DONE, revision="r2", previous="r1",
                                             steps_done=steps, at=(t := t + 0.01)))
        batch.append(GateEvaluated(rid, phase=k, name=name, gate="errors_5xx < 5", verdict="passed", value=1.0,
                                   line="r2", why="", at=(t := t + 0.5)))
        batch.append(ev.PhaseCompleted(rid, phase=k, name=name, done=len(members), failed=0, skipped=0, seconds=1,
                                       at=(t := t + 0.1)))
        if len(batch) > 20_000 or k == 9:
            with j._tx():
                for e in batch:
                    j._apply(e)
            n += len(batch)
            batch = []
    with j._tx():
        j._apply(ev.RolloutFinished(rid, status=ev.R_DONE, revision="r2", done=hosts, failed=0, skipped=0,
                                    seconds=t, at=t + 1))
    return rid, n + 1


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--events-per-host", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeks", type=int, default=1000)
    args = ap.parse_args()
    print(f"# {os.uname().nodename}: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load"
          f" {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="cr-bench-record-") as d:
        j = Journal.open(Path(d) / "state")
        t0 = time.perf_counter()
        rid, n = write(j, args.hosts, args.events_per_host)
        print(f"wrote deploy #{rid}: {n} events, {args.hosts} hosts in {time.perf_counter() - t0:.1f} s")
        opens, cpu = [], []
        tl = None
        for _ in range(args.rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            tl = Timeline.read(j.db, rid)
            opens.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        assert tl is not None
        rnd = random.Random(1)
        last = len(tl) - 1
        seek, step, when = [], [], []
        began, ended = tl.began or 0.0, tl.ended or 0.0
        for _ in range(args.seeks):
            i = rnd.randrange(len(tl))
            t0 = time.perf_counter()
            tl.at(i)
            seek.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tl.at(min(i + 1, last))
            step.append(time.perf_counter() - t0)
            t = rnd.uniform(began, ended)
            t0 = time.perf_counter()
            tl.at(t)
            when.append(time.perf_counter() - t0)
        j.close()
    print(f"open: {len(tl)} entries, median {statistics.median(opens) * 1000:.0f} ms, max {max(opens) * 1000:.0f} ms"
          f" ({args.rounds} rounds); CPU time median {statistics.median(cpu) * 1000:.0f} ms (what it takes on a"
          " core of its own)")
    print(f"# load after: {os.getloadavg()[0]:.2f}")
    for name, xs in (("seek", seek), ("step", step), ("time", when)):
        print(f"{name}: median {statistics.median(xs) * 1000:.2f} ms, p95 {pct(xs, 95) * 1000:.2f} ms,"
              f" max {max(xs) * 1000:.2f} ms ({len(xs)} moves)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
