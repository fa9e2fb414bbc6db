"""The demo's past: a finished deploy of the demo fleet an hour ago (r2305 -> r2306, by alice), in its journal, so
`controlroom history`, `controlroom timeline 1` and the app's H show a record at once and a newcomer can try them.

Written through the journal's own API, event by event, as the engine records a real deploy of this fleet (the plan
of its config, each host connecting, running its steps, checking and done, the canary's bake and gate checks, the
operator starting stage 1, the end): not run, because a run takes the bake and a round of SSH to every host before
the app could open. It is written once the server is up (the staged revision built through it), so the server shows
the fleet as the story begins (READY to deploy r2307), as it did before the demo had a past; a server started later
shows the journal's last deploy, as after any deploy.
"""

from __future__ import annotations

from controlroom.config.config import Config
from controlroom.config.gates import Gate
from controlroom.core import events as ev
from controlroom.core.identity import Actor
from controlroom.engine.gates import GateEvaluated
from controlroom.engine.overrides import finished_entry
from controlroom.journal.journal import Journal

PAST_REVISION, PAST_PREVIOUS, PAST_USER = "r2306", "r2305", "alice"
AGO = 3600.0  # seconds: it started an hour before the demo
STEP = 0.4  # seconds a step takes on a host
GATE_VALUE = 0.1  # errors_5xx on r2306, as the simulated fleet answers it (metrics_sim.GOOD_RATIO)


def record_past_deploy(cfg: Config, now: float) -> int | None:
    """Write the past deploy into cfg's journal, unless it holds a deploy already (a demo attached to a fleet that
    has a record); its number, or None when nothing was written."""
    j = Journal.open(cfg.state.dir, url=cfg.state.journal)
    try:
        if j.rollout() is not None:
            return None
        return _write(j, cfg, now - AGO)
    finally:
        j.close()


def _write(j: Journal, cfg: Config, t: float) -> int:
    phases = tuple((p.name, tuple(p.hosts)) for p in cfg.phases)
    hosts = sum(len(h) for _, h in phases)
    actor = Actor(PAST_USER, "demo")
    began = t
    rid = j.new_rollout(PAST_REVISION, PAST_PREVIOUS, actor, [[n, list(h)] for n, h in phases], at=t)

    def log(kind: str, text: str, at: float) -> None:
        j.record(ev.LogEntryAdded(rid, user=PAST_USER, kind=kind, text=text, revision=PAST_REVISION, at=at))

    log("DEPLOY START", f"{PAST_PREVIOUS} -> {PAST_REVISION} to {hosts} hosts in {len(phases)} phases", t)
    j.record(ev.RolloutStarted(rid, revision=PAST_REVISION, previous=PAST_PREVIOUS, user=PAST_USER, phases=phases,
                               at=t))
    steps = len(cfg.deploy.steps)
    for i, phase in enumerate(cfg.phases):
        t += 0.5
        start = t
        j.record(ev.PhaseStarted(rid, phase=i, name=phase.name, hosts=len(phase.hosts), at=t))
        for h in phase.hosts:  # the hosts of a phase run side by side: each a little after the one before
            at = t = t + 0.01
            j.record(ev.HostStateChanged(rid, host=h, phase=i, state=ev.CONNECTING, at=at))
            for k in range(1, steps + 1):
                at += STEP
                j.record(ev.HostStateChanged(rid, host=h, phase=i, state=ev.RUNNING, step=k, steps=steps,
                                             steps_done=k - 1, at=at))
            at += STEP
            j.record(ev.HostStateChanged(rid, host=h, phase=i, state=ev.CHECKING, steps=steps, steps_done=steps,
                                         at=at))
            j.record(ev.HostStateChanged(rid, host=h, phase=i, state=ev.DONE, revision=PAST_REVISION,
                                         previous=PAST_PREVIOUS, steps=steps, steps_done=steps, seconds=at - t + 0.1,
                                         at=at + 0.1))
        t += steps * STEP + 0.6
        j.record(ev.PhaseCompleted(rid, phase=i, name=phase.name, done=len(phase.hosts), failed=0, skipped=0,
                                   seconds=t - start, at=t))
        if i + 1 < len(cfg.phases):
            t = _boundary(j, rid, cfg, i, t, log)
    t += 0.2
    fin = ev.RolloutFinished(rid, status=ev.R_DONE, revision=PAST_REVISION, done=hosts, failed=0, skipped=0,
                             seconds=t - began, at=t)
    j.record(fin)
    log(*finished_entry(PAST_REVISION, hosts, fin), t)
    return rid


def _boundary(j: Journal, rid: int, cfg: Config, i: int, t: float, log) -> float:
    """Between phase i and the next: its bake with the gate's checks, then the operator (or auto) going on."""
    prev, nxt = cfg.phases[i], cfg.phases[i + 1]
    verdicts: tuple = ()
    if prev.bake:
        j.record(ev.GateWaiting(rid, phase=i + 1, name=nxt.name, reason=f"baking {prev.bake:g} s",
                                kind=ev.GATE_BAKE, at=t))
        checks = max(1, int(prev.bake // max(1.0, cfg.metrics.interval)))
        for k in range(checks):
            for gate in prev.gate:
                j.record_quietly(GateEvaluated(rid, phase=i, name=prev.name, gate=gate, verdict="passed",
                                               value=GATE_VALUE, line=PAST_REVISION, why="",
                                               at=t + k * cfg.metrics.interval))
        t += prev.bake
        for gate in prev.gate:
            g = Gate.parse(gate)
            v = ev.GateVerdict(gate, g.series, PAST_REVISION, GATE_VALUE, g.op, g.threshold, "passed")
            verdicts += (v,)
            log("GATE", v.text(prev.name, g.limit()).removeprefix("GATE "), t)
    if not prev.auto:
        j.record(ev.GateWaiting(rid, phase=i + 1, name=nxt.name, kind=ev.GATE_OPERATOR, verdicts=verdicts,
                                reason=f"{prev.name} done; waiting for the operator to start {nxt.name}", at=t))
        t += 20.0  # the operator looked at the canary first
        j.record(ev.GatePassed(rid, phase=i + 1, name=nxt.name, by=PAST_USER, at=t))
        log("PROCEED", f"started {nxt.name} ({len(nxt.hosts)} hosts)", t)
    else:
        j.record(ev.GatePassed(rid, phase=i + 1, name=nxt.name, by="auto", at=t))
    return t
