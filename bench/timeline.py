"""The app's side of the record at scale: a 5,000-host deploy's timeline (about 100,000 events) read as the app reads
it, through the server's ``record`` pages, then the timeline screen's work for one frame after a key.

Run by hand, never by CI; nothing here asserts on a timing. bench/record.py writes the deploy (and measures the
engine's side: Timeline.read, Timeline.at); this measures:

  open    every page as the server makes it (server/views.record_page: the indexed query, the JSON of the data),
          the wire both ways (protocol.encode, json.loads), the app's check of each answer and its Timeline
          (Record.take), and the axis (the series and markers, once); wall and CPU time
  step    what the screen does for a frame after left/right: Timeline.at(i +- 1), the hosts that differ, the
          grid's board moved by them, and the lines it draws (header, flags, gates, axis, entries)
  seek    the same after a jump (home/end, n/N, a minute): a far jump rebuilds the board of the moment

The Textual rendering of the rows that changed is not in it (bench/ui.py measures the app's frames).

    .venv/bin/python bench/timeline.py                      # 5,000 hosts x 20 events, 200 moves each
    .venv/bin/python bench/timeline.py --hosts 500
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import pct, write  # noqa: E402

from controlroom.app import recordview as draw  # noqa: E402
from controlroom.app.timeline import Record, bring, check_page  # noqa: E402
from controlroom.journal.journal import Journal  # noqa: E402
from controlroom.server import protocol, views, wire  # noqa: E402

CFG = SimpleNamespace(flags=SimpleNamespace(flags=[]))


def read(j: Journal, rid: int) -> tuple[Record, draw.Axis, int]:
    after, r, pages = 0, None, 0
    while True:
        reply = views.record_page(j, CFG, rid, after, wire.RECORD_PAGE, None)
        page = check_page(json.loads(protocol.encode(reply)))
        pages += 1
        if r is None:
            r = Record(page)
        r.take(page)
        if not page["more"]:
            break
        after = page["last"]
    axis = draw.Axis()
    axis.add(r.tl.events)
    return r, axis, pages


def frame(r: Record, axis: draw.Axis, state: dict, i: int) -> None:
    """The screen's repaint at entry i, as TimelineScreen.repaint does it, without Textual."""
    tl = r.tl
    at = tl.at(i)
    bring(state["board"], state["at"], at, tl.number)
    state["at"] = at
    draw.header(tl, r.deploy, at, i)
    draw.flags_line(at)
    draw.gates_lines(at)
    draw.axis_rows(axis, tl, 200, at.at)
    draw.entries_lines(tl, i, 9)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=5000)
    ap.add_argument("--events-per-host", type=int, default=20)
    ap.add_argument("--moves", type=int, default=200)
    args = ap.parse_args()
    print(f"# {os.uname().nodename}: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load"
          f" {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="cr-bench-timeline-") as d:
        j = Journal.open(Path(d) / "state")
        rid, n = write(j, args.hosts, args.events_per_host)
        t0, c0 = time.perf_counter(), time.process_time()
        r, axis, pages = read(j, rid)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        j.close()
    tl = r.tl
    print(f"open: {len(tl)} entries in {pages} pages, {wall * 1000:.0f} ms ({cpu * 1000:.0f} ms of CPU: the server's"
          " side and the app's together, in one process)")
    rnd = random.Random(1)
    state = {"at": tl.at(0), "board": tl.at(0).board()}
    step, seek, cpu = [], [], {}
    i = rnd.randrange(len(tl))
    frame(r, axis, state, i)
    for name, xs, move in (("step", step, lambda i: max(0, min(len(tl) - 1, i + rnd.choice((-1, 1))))),
                           ("seek", seek, lambda i: rnd.randrange(len(tl)))):
        c0 = time.process_time()
        for _ in range(args.moves):
            i = move(i)
            t0 = time.perf_counter()
            frame(r, axis, state, i)
            xs.append(time.perf_counter() - t0)
        cpu[name] = (time.process_time() - c0) / args.moves
    print(f"# load after: {os.getloadavg()[0]:.2f}")
    for name, xs in (("step", step), ("seek", seek)):
        print(f"{name}: median {statistics.median(xs) * 1000:.2f} ms, p95 {pct(xs, 95) * 1000:.2f} ms,"
              f" max {max(xs) * 1000:.2f} ms, CPU {cpu[name] * 1000:.2f} ms a frame ({len(xs)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
