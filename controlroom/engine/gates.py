"""Gates: what must hold between phases, checked against the metrics source.

``errors_5xx < 5`` on a phase is checked every [metrics] interval while the phase bakes, and once more when the
bake ends. Each gate's verdict is the worst of its checks: a check that failed fails it; otherwise one that could not
be made (the source down, NaN, no data) leaves it unknown: the deploy waits for the operator, it never passes a gate
silently and never aborts by itself. A split series is judged by the line of the revision being deployed when it has
one (the gate asks about that revision, and its verdict names it: errors_5xx{r2307}); otherwise by its worst line.

Every check is journaled (a GateEvaluated row in the journal's events; not published to clients) and every verdict
goes to the deploy log as a GATE line: "GATE canary: errors_5xx = 7.9 (max 5): FAILED".

A check that fails ends the bake at once (the verdict cannot get better). When the failed series is guarded by a kill
switch ([flags.NAME] guards), the halt's reason names it ("kill switch: controlroom flag new_search off"), and the
operator can flip it and check the gate again (``GateKeeper.recheck``) before going on.

The GateKeeper is built outside the engine with what it needs (keeper_for: the [metrics] and [flags] settings, the
journal, the metrics source or a factory returning a shared one) and given to the Rollout at construction, which
binds it to its Recorder (recorder.py): the keeper records through that, never through the rollout's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controlroom.config.flags import FlagsSettings
from controlroom.config.gates import Gate
from controlroom.config.settings import MetricsSettings
from controlroom.core import events as ev
from controlroom.core.identity import Actor
from controlroom.engine.breach import BreachJudge
from controlroom.engine.recorder import Recorder
from controlroom.journal.flags import FlagHistory
from controlroom.sources.metrics import MetricsError, Source, make_source

if TYPE_CHECKING:
    from controlroom.config.config import Config
    from controlroom.config.inventory import Phase

GateState = ev.GateState  # a verdict's state, defined with GateVerdict (the wire form) in events.py
PASSED, FAILED, UNKNOWN = GateState
_RANK = {PASSED: 0, UNKNOWN: 1, FAILED: 2}
SourceFactory = Callable[[], Source | None]  # the shared source (None: open one for each round of checks)


@dataclass(frozen=True)
class GateEvaluated(ev.Event):
    """One check of one gate (journaled only: the journal keeps every evaluation)."""

    phase: int
    name: str
    gate: str
    verdict: str
    value: float | None
    line: str  # the series' line judged (a revision for a split series), "" for a single line
    why: str


@dataclass(frozen=True)
class Verdict:
    gate: str  # the expression, as written
    series: str
    state: GateState  # PASSED, FAILED or UNKNOWN
    value: float | None = None
    line: str = ""
    why: str = ""  # UNKNOWN: why it could not be checked

    def text(self, phase: str) -> str:
        """The deploy-log line: 'GATE canary: errors_5xx = 7.9 (max 5): FAILED'."""
        g = Gate.read(self.gate)
        return self.wire().text(phase, g.limit() if g else self.gate)

    def wire(self, kill_switches: tuple[str, ...] = ()) -> ev.GateVerdict:
        """The verdict as a GateWaiting carries it (``kill_switches``: those guarding its series, when it failed)."""
        g = Gate.read(self.gate)
        op, threshold = (g.op, g.threshold) if g else ("", 0.0)
        value = None if self.value is None or math.isnan(self.value) else self.value
        return ev.GateVerdict(self.gate, self.series, self.line, value, op, threshold, self.state, self.why,
                              tuple(kill_switches))


def parse(expr: str) -> tuple[str, str, float]:
    """(series, operator, threshold) of a gate expression (config.gates.Gate reads it); ValueError if it is not."""
    g = Gate.parse(expr)
    return g.series, g.op, g.threshold


def judge(expr: str, lines: dict[str, float] | list[tuple[str, float]], revision: str | None = None) -> Verdict:
    """The verdict of one gate on the current values of its series (line -> value, or (line, value) pairs: lines
    that share a label are each judged, so the worse one counts). When lines are the revision being deployed,
    those are judged (and named); otherwise every line. Only a finite number counts: NaN and the infinities
    leave the gate unknown, unless another line fails it."""
    gate = Gate.parse(expr)
    series, limit = gate.series, gate.threshold
    pairs = list(lines.items() if isinstance(lines, dict) else lines)
    if not pairs:
        return Verdict(expr, series, UNKNOWN, why="no data")
    if revision and any(line == revision for line, _ in pairs):
        pairs = [(line, value) for line, value in pairs if line == revision]
    worst: tuple[str, float] | None = None
    odd: tuple[str, float] | None = None
    for line, value in pairs:
        if not math.isfinite(value):
            odd = odd or (line, value)
            continue
        if not gate.holds(value):
            return Verdict(expr, series, FAILED, value, line)
        # the line nearest the limit stands for the series when every line holds
        if worst is None or abs(limit - value) < abs(limit - worst[1]):
            worst = (line, value)
    if odd is not None:
        line, value = odd
        why = f"{series} is NaN" if math.isnan(value) else f"{series} is {'+' if value > 0 else '-'}Inf, not a " \
            "finite number"
        return Verdict(expr, series, UNKNOWN, line=line, why=why)
    assert worst is not None
    return Verdict(expr, series, PASSED, worst[1], worst[0])


async def evaluate(settings: MetricsSettings, exprs: tuple[str, ...], revision: str | None = None,
                   source: Source | None = None, **source_kw) -> list[Verdict]:
    """Check each gate once against the source (a split series on the line of ``revision`` when it has one); a
    source that cannot answer leaves its gates UNKNOWN. ``source``: one kept open by its owner (not closed here);
    without it one is opened (``source_kw``) for these checks and closed after."""
    if source is not None:
        return await _judge_all(settings, exprs, revision, source)
    try:
        made = make_source(settings, **source_kw)
    except MetricsError as e:
        return [Verdict(x, parse(x)[0], UNKNOWN, why=str(e)) for x in exprs]
    async with made:
        return await _judge_all(settings, exprs, revision, made)


async def _judge_all(settings: MetricsSettings, exprs: tuple[str, ...], revision: str | None,
                     source: Source) -> list[Verdict]:
    out: list[Verdict] = []
    for expr in exprs:
        name = parse(expr)[0]
        spec = settings.spec(name)
        if spec is None:
            out.append(Verdict(expr, name, UNKNOWN, why=f"no series {name!r} in [metrics.series]"))
            continue
        try:
            out.append(judge(expr, await source.samples(spec), revision))
        except MetricsError as e:
            out.append(Verdict(expr, name, UNKNOWN, why=str(e)))
    return out


def worst(verdicts: list[Verdict]) -> Verdict:
    """The worst of a gate's checks (the latest among equals: its value is the freshest)."""
    best = verdicts[0]
    for v in verdicts[1:]:
        if _RANK[v.state] >= _RANK[best.state]:
            best = v
    return best


class GateKeeper:
    """Checks a rollout's gates: every interval while a gated phase bakes, once when the bake ends, and again when
    asked (the operator flipped a kill switch, a resume).

    ``source``: a factory returning the metrics source to ask (the server's, shared with its metrics pane), or
    None to open one for each round (``source_kw`` passed to it). The Rollout it is given to binds it (``bind``).
    """

    def __init__(self, metrics: MetricsSettings, journal, *, flags: FlagsSettings | None = None,
                 source: SourceFactory | None = None, **source_kw) -> None:
        self.metrics = metrics
        self.journal = journal
        self.flags = flags or FlagsSettings()
        self.source = source
        self.source_kw = source_kw
        self.record: Recorder | None = None
        self.phases: tuple[Phase, ...] = ()
        self._stopping: Callable[[], bool] = lambda: False
        self._checks: dict[int, list[Verdict]] = {}  # phase index -> this bake's checks
        self._task: asyncio.Task | None = None
        self.breach = BreachJudge(metrics, journal, source,  # names the suspect of a gate that failed
                                  flags={f.name: f.default for f in self.flags.flags})
        self.bake_failed = False  # a check of the gates of the phase baking now failed: the bake can end

    def bind(self, record: Recorder, phases: tuple[Phase, ...], stopping: Callable[[], bool]) -> None:
        """Check the gates of these phases for the rollout recording through ``record``; ``stopping`` says when it
        is told to stop (a check it waits on then ends at once)."""
        self.record = record
        self.phases = phases
        self._stopping = stopping
        record.subscribe(self._on_event)

    def _on_event(self, e: ev.Event) -> None:
        if isinstance(e, ev.GateWaiting) and e.kind == ev.GATE_BAKE:
            i = e.phase - 1
            if 0 <= i < len(self.phases) and self.phases[i].gate:
                self._stop_bake()
                self._checks[i] = []
                self.bake_failed = False
                self._task = asyncio.get_running_loop().create_task(self._bake(i))
        elif isinstance(e, ev.RolloutFinished):
            self._stop_bake()

    def _stop_bake(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _bake(self, i: int) -> None:
        while True:
            verdicts = await self._round(i)
            if any(v.state == FAILED for v in verdicts):
                # the verdict is the worst check: it cannot get better, so the bake need not go on
                self.bake_failed = True
                self.record.poke()
                return
            await asyncio.sleep(self.metrics.interval)

    async def _round(self, i: int) -> list[Verdict]:
        phase = self.phases[i]
        shared = self.source() if self.source is not None else None
        verdicts = await evaluate(self.metrics, phase.gate, self.record.revision, source=shared, **self.source_kw)
        for v in verdicts:
            _journal_quietly(self.journal, self.record.rollout_id, i, phase.name, v)
        self._checks.setdefault(i, []).extend(verdicts)
        return verdicts

    def _wire(self, verdicts: list[Verdict]) -> tuple[ev.GateVerdict, ...]:
        return tuple(v.wire(tuple(kill_switches(self.flags, self.journal, [v.series])) if v.state == FAILED
                            else ()) for v in verdicts)

    async def check(self, phase: Phase) -> tuple[bool, str, tuple[ev.GateVerdict, ...]]:
        """The phase's gates: (True, lines) when every check held, else (False, the lines of what did not); then
        every gate's verdict."""
        i = self.phases.index(phase)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not await self._unless_stopped(self._round(i)):
            self._checks.pop(i, None)
            return False, "not checked: the deploy was stopped while the source answered", ()
        checks = self._checks.pop(i, [])
        verdicts = [worst([v for v in checks if v.gate == g]) for g in phase.gate]
        lines = [v.text(phase.name) for v in verdicts]
        for line in lines:
            self.record.log("GATE", line.removeprefix("GATE "))  # the entry's kind says GATE once
        bad = [line for v, line in zip(verdicts, lines, strict=True) if v.state != PASSED]
        wire = self._wire(verdicts)
        if bad:  # before the wait is announced: whoever shows the failed gate has its suspect with it
            await self._name_suspects(i + 1, wire)
        return (not bad), "; ".join(bad + self.hints(verdicts) if bad else lines), wire

    async def _name_suspects(self, waiting: int, wire: tuple[ev.GateVerdict, ...], *, changed: bool = False) -> None:
        """Record the suspect of each failed series (engine/breach.py), unless the deploy is told to stop first;
        changed: only a suspect that differs from the one named last (a gate checked again while it waits)."""
        named: list[ev.SuspectNamed] = []

        async def judge() -> None:
            try:
                named.extend(await self.breach.judge(self.record.rollout_id, waiting, wire, only_changed=changed))
            except Exception as e:  # noqa: BLE001 - a suspect that cannot be named never stops a gate
                named.extend(ev.SuspectNamed(self.record.rollout_id, phase=waiting, series=v.series,
                                             verdict=ev.UNKNOWN_SUSPECT,
                                             words=f"{v.series}: not judged ({type(e).__name__})")
                             for v in map(lambda x: ev.GateVerdict(*x), wire) if v.state == FAILED)

        if await self._unless_stopped(judge()):
            for e in named:
                self.record.emit(e)

    async def _unless_stopped(self, work) -> bool:
        """Await ``work`` unless the deploy is told to stop first (abort, Ctrl+C, SIGTERM): a source that is slow
        to answer never holds the deploy, its lock or its client. True when the work finished."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.record.until(self._stopping))
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stop.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False

    def hints(self, verdicts: list[Verdict]) -> list[str]:
        """'kill switch: controlroom flag new_search off' for each kill switch guarding a failed series."""
        failed = [v.series for v in verdicts if v.state == FAILED]
        return [f"kill switch: controlroom flag {name} off" for name in kill_switches(self.flags, self.journal, failed)]

    async def recheck(self, phase: Phase, by: Actor, *, log: bool = True, log_ok: bool = True) -> tuple[
            bool, list[str], tuple]:
        """Check the phase's gates once more (journaled). Their verdicts go to the deploy log, by ``by``, when
        they all hold (and ``log_ok``) or ``log`` (a client polling while a flipped flag's rate window turns logs
        only its last try). Returns (every gate holds, their lines, then the kill switches to flip when a guarded
        one failed, every gate's verdict)."""
        i = self.phases.index(phase)
        verdicts = await self._round(i)
        self._checks.pop(i, None)
        ok = all(v.state == PASSED for v in verdicts)
        lines = [v.text(phase.name) for v in verdicts]
        if (ok and log_ok) or log:
            for line in lines:
                self.record.log("GATE", line.removeprefix("GATE "), by)
        wire = self._wire(verdicts)
        if not ok:  # the series grew since: its suspect may be told now (said again only when it changed)
            await self._name_suspects(i + 1, wire, changed=True)
        return ok, lines + ([] if ok else self.hints(verdicts)), wire

    async def holds_now(self, waiting: ev.GateWaiting) -> bool:
        """Check again the gates a deploy waits at (a resume does this): True when they hold now, and the deploy then
        waits for the operator only (announced: a plain proceed goes on)."""
        if waiting.kind != ev.GATE_FAILED or not 0 < waiting.phase <= len(self.phases):
            return False
        ok, line, verdicts = await self.check(self.phases[waiting.phase - 1])
        if not ok:
            return False
        self.announce(self.held(waiting, [line], verdicts))
        return True

    def held(self, waiting: ev.GateWaiting, lines: list[str], verdicts: tuple = ()) -> ev.GateWaiting:
        """The wait once a failed gate holds when checked again: for the operator only, saying why, its verdicts."""
        return ev.GateWaiting(self.record.rollout_id, phase=waiting.phase, name=waiting.name,
                              kind=ev.GATE_OPERATOR, verdicts=tuple(verdicts),
                              reason=f"gate {' and '.join(waiting.failed)} holds now ({'; '.join(lines)}); "
                                     f"waiting for the operator to start {waiting.name}")

    def fails_again(self, failed: ev.GateWaiting, lines: list[str], verdicts: tuple) -> None:
        """A gate that held when checked again fails once more: its verdicts to the deploy log, and the wait is at
        a failed gate again (announced)."""
        phase = self.phases[failed.phase - 1]
        for line in lines[:len(phase.gate)]:
            self.record.log("GATE", line.removeprefix("GATE "))
        self.announce(ev.GateWaiting(self.record.rollout_id, phase=failed.phase, name=failed.name,
                                     kind=ev.GATE_FAILED, failed=failed.failed, verdicts=verdicts,
                                     reason=f"gate {' and '.join(failed.failed)} fails again: {'; '.join(lines)}"))

    def announce(self, waiting: ev.GateWaiting) -> None:
        """What the deploy waits for now, said to everyone (the engine still waits for proceed)."""
        self.record.emit(waiting)


def kill_switches(flags: FlagsSettings, journal, series: list[str]) -> list[str]:
    """The kill switches guarding any of these series that are not off yet (as the journal's flag history has
    them), in the config's order."""
    history = FlagHistory(journal) if journal is not None else None
    return [flag.name for flag in flags.guarding(series)
            if (history.value(flag.name, flag.default) if history is not None else flag.default) != "off"]


def keeper_of(rollout) -> GateKeeper | None:
    """The GateKeeper checking this engine's gates, if any."""
    return rollout.gates


def _journal_quietly(journal, rollout_id: int, i: int, name: str, v: Verdict) -> None:
    """Into the journal's events, unpublished: clients need the verdict (the deploy log), not every check."""
    e = GateEvaluated(rollout_id, phase=i, name=name, gate=v.gate, verdict=v.state,
                      value=None if v.value is None or math.isnan(v.value) else v.value, line=v.line, why=v.why)
    journal.record_quietly(e)


def keeper_for(cfg: Config, journal, *, source: SourceFactory | None = None) -> GateKeeper | None:
    """The gate keeper for a rollout of ``cfg`` (None when no phase has a gate), asking ``source`` (a factory of the
    shared metrics source; None: one opened per round)."""
    if not any(p.gate for p in cfg.phases):
        return None
    return GateKeeper(cfg.metrics, journal, flags=cfg.flags, source=source)


async def recheck(rollout, waiting: ev.GateWaiting) -> bool:
    """Check again the gates a deploy waits at (a resume does this): True when they hold now, and the deploy then
    waits for the operator only (held: a plain proceed goes on)."""
    keeper = rollout.gates
    return keeper is not None and await keeper.holds_now(waiting)
