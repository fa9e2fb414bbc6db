"""Metrics polling benchmark: what the server spends reading 10 series every 5 s for the metrics pane and the gates.

One simulated fleet with metrics (`controlroom fleet --metrics`) runs in its own process and answers the Prometheus
HTTP API for the queries in its own controlroom.toml; the bench builds 10 series from them (the fleet's queries,
repeated under 10 names). One poll is what the server does for the pane: for each series its current value
(`query`) and its history over the window (`query_range`, 60 points). Contenders, in rotating order in one run:

- controlroom: `controlroom.sources.metrics.snapshot(settings, 60)`, a new httpx client each poll;
- kept open: the same with a source the caller keeps open between polls (what the server does);
- floor: a bare httpx script on one open AsyncClient doing the same 20 GETs and parsing the JSON.

The figure that matters is the client's CPU per poll (process_time of this process; the fleet's CPU is not in it),
as a share of one core at the configured 5 s interval: the target is under 2%."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402 - beside this file

SERIES = 10
INTERVAL = 5.0
POINTS = 60


def main(argv: list[str] | None = None) -> int:
    return Bench(_common.bench_args(__doc__, 20, 300, argv, ansible=False)).run()


class Bench(_common.FleetBench):
    PREFIX = "crmet-"

    def __init__(self, args) -> None:
        super().__init__(args)
        self.fleet = _common.FleetProcess(self.tmp / "fleet", self.n, ("--metrics",))
        self.samples: dict[str, list[tuple[float, float]]] = {"controlroom": [], "kept open": [], "floor": []}  # (wall, cpu) a poll

    def work(self) -> None:
        import asyncio
        import dataclasses

        from controlroom.config import config

        cfg = config.load(self.fleet_dir / "controlroom.toml")
        base = cfg.metrics.series
        if not base:
            raise RuntimeError("the fleet's config has no [metrics.series]")
        series = tuple(dataclasses.replace(base[i % len(base)], name=f"s{i}") for i in range(SERIES))
        self.settings = dataclasses.replace(cfg.metrics, series=series)
        asyncio.run(self.measure())

    async def measure(self) -> None:
        import time

        import httpx

        from controlroom.sources.metrics import make_source, snapshot

        s = self.settings
        step = max(s.window / POINTS, 1.0)

        async def floor(client: httpx.AsyncClient) -> None:
            now = time.time()
            for spec in s.series:
                r = await client.get("/api/v1/query", params={"query": spec.query})
                r.raise_for_status()
                r.json()
                r = await client.get("/api/v1/query_range", params={"query": spec.query, "start": now - s.window,
                                                                     "end": now, "step": step})
                r.raise_for_status()
                r.json()

        def check(snap: dict) -> None:
            bad = [x["error"] for x in snap["series"] if x["error"]]
            if bad:
                raise RuntimeError(f"controlroom: {bad[0]}")

        async def controlroom(_client) -> None:
            check(await snapshot(s, POINTS))

        async def kept(_client) -> None:
            check(await snapshot(s, POINTS, source=source))

        contenders = [("controlroom", controlroom), ("kept open", kept), ("floor", floor)]
        source = make_source(s)
        async with source, httpx.AsyncClient(base_url=s.url, timeout=10) as client:
            for _, fn in contenders:  # untimed: imports, first connections
                await fn(client)
            started = time.monotonic()
            for r in range(self.args.rounds):
                if time.monotonic() - started > self.args.budget:
                    self.notes.append(f"budget reached after {r} rounds")
                    break
                k = r % len(contenders)
                for name, fn in contenders[k:] + contenders[:k]:
                    w0, c0 = time.perf_counter(), time.process_time()
                    try:
                        await fn(client)
                    except Exception as e:  # noqa: BLE001 - a failed poll is reported, not timed
                        self.failures.setdefault(name, []).append(f"{type(e).__name__}: {e}")
                        continue
                    self.samples[name].append((time.perf_counter() - w0, time.process_time() - c0))

    def report(self) -> None:
        c = self.c
        print(f"metrics polling: {SERIES} series (query + query_range of {POINTS} points each) from the simulated "
              f"fleet's Prometheus API ({self.n} hosts), {self.args.rounds} rounds, rotating order")
        print(f"machine: {c.machine_line()}")
        print(f"load average (1 min) before {self.load_before}, after {getattr(self, 'load_after', '?')}")
        print(f"{'contender':<12} {'wall ms/poll':>12} {'CPU ms/poll':>12} {'% core at 5 s':>14} {'vs floor':>9}  polls")
        base = self.samples["floor"]
        base_cpu = c.median([x for _, x in base]) if base else None
        for name, xs in self.samples.items():
            if not xs:
                continue
            wall, cpu = c.median([w for w, _ in xs]) * 1000, c.median([x for _, x in xs]) * 1000
            ratio = f"{cpu / 1000 / base_cpu:.2f}x" if base_cpu else "-"
            print(f"{name:<12} {wall:>12.1f} {cpu:>12.1f} {cpu / 1000 / INTERVAL * 100:>13.2f}% {ratio:>9}  {len(xs)}")
        cr = self.samples["kept open"] or self.samples["controlroom"]
        if cr:
            share = c.median([x for _, x in cr]) / INTERVAL * 100
            print(f"controlroom polling {SERIES} series every {INTERVAL:g} s: {share:.2f}% of one core "
                  f"(target < 2%): {'MET' if share < 2 else 'MISSED'}")
        self.print_notes()


if __name__ == "__main__":
    sys.exit(main())
