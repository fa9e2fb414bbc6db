"""The suspect behind a failed gate, named as it fails and while it waits: the deploy's record (engine/record.py,
read once and followed) and the failed series' history by revision (the metrics source) judged by
engine/suspects.py's ``for_breach``. What it says is a ``SuspectNamed`` event, structured (verdict, the event, its
time, p): the gate keeper records it, so every client (the failed-gate dialog, the CLI) and the record have it.

Where the data cannot tell (too few points, no split, no history, the source down or slow), the verdict is
"unknown" and the words say why: it never guesses. Reading the history is bounded by the source's own timeout, and a
gate waits for it only that long.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from controlroom.config.gates import Gate
from controlroom.config.settings import MetricsSettings
from controlroom.core import events as ev
from controlroom.sources.metrics import MetricsError, Source, make_source

if TYPE_CHECKING:
    from controlroom.engine.record import Timeline

BEFORE = 60.0  # seconds of history before the deploy began: the baseline of a split the deploy did not touch


class BreachJudge:
    """Names the suspect of each failed series of a deploy's gate. ``journal``: where the record is read (its
    SQLite connection ``db``); ``source``: a factory of the shared metrics source (None: one opened per look)."""

    def __init__(self, metrics: MetricsSettings, journal, source=None, *, flags: dict[str, str] | None = None) -> None:
        """flags: every flag's config default (what the record's flag history before the deploy overrides), so
        an event is said with the flags as they were then ("new_search on")."""
        self.metrics = metrics
        self.journal = journal
        self.source = source
        self.flags = dict(flags or {})
        self._timeline: Timeline | None = None
        self.named: dict[tuple[int, str], tuple[str, str]] = {}  # (phase, series) -> (verdict, what) said last

    def _record(self, rollout_id: int) -> Timeline | None:
        # the record (and the rank test below) only when a gate fails: every server builds a judge, few use it
        from controlroom.engine.record import Timeline

        db = getattr(self.journal, "db", None)
        if db is None:
            return None
        tl = self._timeline
        if tl is None or tl.number != rollout_id:
            tl = self._timeline = Timeline.read(db, rollout_id, defaults=self.flags)
        else:
            tl.follow(db)
        return tl

    async def judge(self, rollout_id: int, phase: int, verdicts: tuple[ev.GateVerdict, ...], *,
                    only_changed: bool = False) -> list[ev.SuspectNamed]:
        """A SuspectNamed for each series whose gate failed in these verdicts (``phase``: the phase that waits).
        only_changed: only those whose verdict or suspected event differs from what was said last."""
        out = []
        for series, rising in _failed_series(verdicts):
            e = await self._one(rollout_id, phase, series, rising)
            key, said = (phase, series), (e.verdict, e.what)
            if only_changed and self.named.get(key) == said:
                continue
            self.named[key] = said
            out.append(e)
        return out

    async def _one(self, rollout_id: int, phase: int, series: str, rising: bool) -> ev.SuspectNamed:
        def unknown(why: str) -> ev.SuspectNamed:
            return ev.SuspectNamed(rollout_id, phase=phase, series=series, verdict=ev.UNKNOWN_SUSPECT,
                                   words=f"{series}: {why}")

        spec = self.metrics.spec(series)
        if spec is None:
            return unknown(f"no series {series!r} in [metrics.series]")
        tl = self._record(rollout_id)
        if tl is None or tl.began is None:
            return unknown("no record of the deploy to judge")
        now = time.time()
        try:
            history = await self._history(spec, now - tl.began + BEFORE)
        except MetricsError as e:
            return unknown(f"its history could not be read ({e})")
        except TimeoutError:
            return unknown("its history did not come in time")
        from controlroom.engine import suspects

        found = suspects.for_breach(tl, series, now, history, rising=rising)
        if not found:
            return unknown("no event of the deploy before the breach to judge")
        top = found[0]
        if top.verdict == "cannot tell":
            return ev.SuspectNamed(rollout_id, phase=phase, series=series, verdict=ev.UNKNOWN_SUSPECT, words=top.words)
        c = top.candidate
        if top.verdict == "suspect":
            return ev.SuspectNamed(rollout_id, phase=phase, series=series, verdict=ev.SUSPECT, words=top.words,
                                   what=c.what + (f" ({c.context})" if c.context else ""), since=c.at, p=top.p)
        return ev.SuspectNamed(rollout_id, phase=phase, series=series, verdict=ev.UNLIKELY, words=top.words,
                               p=top.p)

    async def _history(self, spec, window: float) -> dict:
        shared: Source | None = self.source() if self.source is not None else None
        step = max(1.0, self.metrics.interval)
        timeout = max(1.0, self.metrics.timeout)
        if shared is not None:
            return await asyncio.wait_for(shared.history(spec, window, step), timeout)
        async with make_source(self.metrics) as source:
            return await asyncio.wait_for(source.history(spec, window, step), timeout)


def _failed_series(verdicts: tuple[ev.GateVerdict, ...]) -> list[tuple[str, bool]]:
    """(series, whether it is bad rising) of each failed verdict with a value, once a series."""
    out: dict[str, bool] = {}
    for v in (ev.GateVerdict(*x) for x in verdicts):
        if v.state == ev.GateState.FAILED and v.value is not None and not math.isnan(v.value):
            g = Gate.read(v.gate)
            op = g.op if g else v.op
            out.setdefault(v.series, op in ("<", "<="))
    return list(out.items())
