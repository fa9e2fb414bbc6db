"""Deploys written into a real journal through its own write API, at times the test chooses: the record the
history, timeline, figures and suspects tests read back.

``Recorder.clock`` is the time the journal's own stamps take (a rollout's start): journal.py's ``time`` is swapped
for one whose time() answers it, so a test can put a deploy a week ago. Every event is given its ``at``.
"""

from __future__ import annotations

import time as real_time
import types
from pathlib import Path

from controlroom.core import events as ev
from controlroom.core.identity import Actor
from controlroom.engine import stage as stage_module
from controlroom.engine.gates import GateEvaluated
from controlroom.journal import journal as journal_module
from controlroom.journal.flags import FlagHistory
from controlroom.journal.journal import Journal

CANARY = ("canary", ("web001",))
STAGE1 = ("stage 1", ("web002", "web003"))
STAGE2 = ("stage 2", ("web004", "web005", "web006"))
PHASES = (CANARY, STAGE1, STAGE2)
GATE = "errors_5xx < 5"


class Recorder:
    def __init__(self, state_dir: Path, monkeypatch) -> None:
        self.clock = real_time.time()
        fake = types.SimpleNamespace(**{n: getattr(real_time, n) for n in dir(real_time) if not n.startswith("_")})
        fake.time = lambda: self.clock
        monkeypatch.setattr(journal_module, "time", fake)
        monkeypatch.setattr(stage_module, "time", fake)
        self.j = Journal.open(state_dir)
        self.flag_version = 0
        self.flags: dict[str, str] = {"new_search": "off"}

    def close(self) -> None:
        self.j.close()

    # ------------------------------------------------------------------------------------------ pieces
    def start(self, at: float, revision: str, previous: str | None, user: str, phases=PHASES) -> int:
        self.clock = at
        rid = self.j.new_rollout(revision, previous, Actor(user), [[n, list(h)] for n, h in phases])
        self.rid, self.revision, self.previous, self.user = rid, revision, previous, user
        self.j.record(ev.RolloutStarted(rid, revision=revision, previous=previous, user=user, phases=phases, at=at))
        self.log(at, "DEPLOY START", f"{previous or '?'} -> {revision}")
        return rid

    def log(self, at: float, kind: str, text: str, rollout_id: int | None = None, user: str | None = None) -> None:
        self.j.record(ev.LogEntryAdded(self.rid if rollout_id is None else rollout_id, user=user or self.user,
                                       kind=kind, text=text, revision=self.revision, at=at))

    def phase(self, at: float, i: int, name: str, hosts: tuple[str, ...], *, fail: tuple[str, ...] = (),
              step: float = 1.0) -> float:
        """Phase i runs its hosts one after the other (connecting, running, done, or failed); its end time."""
        self.j.record(ev.PhaseStarted(self.rid, phase=i, name=name, hosts=len(hosts), at=at))
        t = at
        for h in hosts:
            for state in (ev.CONNECTING, ev.RUNNING):
                t += step / 4
                self.j.record(ev.HostStateChanged(self.rid, host=h, phase=i, state=state, step=1, steps=1, at=t))
            t += step / 2
            if h in fail:
                self.j.record(ev.HostStateChanged(self.rid, host=h, phase=i, state=ev.FAILED, reason="exit 1", at=t))
            else:
                self.j.record(ev.HostStateChanged(self.rid, host=h, phase=i, state=ev.DONE, revision=self.revision,
                                                  previous=self.previous, steps_done=1, at=t))
                self.last_done = t
        t += 0.1
        self.j.record(ev.PhaseCompleted(self.rid, phase=i, name=name, done=len(hosts) - len(fail), failed=len(fail),
                                        skipped=0, seconds=t - at, at=t))
        return t

    def check(self, at: float, phase: int, name: str, value: float, line: str | None = None) -> None:
        line = self.revision if line is None else line
        verdict = ev.GateState.PASSED if value < 5 else ev.GateState.FAILED
        self.j.record_quietly(GateEvaluated(self.rid, phase=phase, name=name, gate=GATE, verdict=verdict, value=value,
                                            line=line, why="", at=at))  # as gates._journal_quietly writes it

    def wait(self, at: float, phase: int, name: str, kind: str, value: float | None = None, reason: str = "") -> None:
        verdicts = ()
        failed = ()
        if value is not None:
            state = ev.GateState.PASSED if value < 5 else ev.GateState.FAILED
            verdicts = (tuple(ev.GateVerdict(GATE, "errors_5xx", self.revision, value, "<", 5.0, state)),)
            failed = (GATE,) if state == ev.GateState.FAILED else ()
        self.j.record(ev.GateWaiting(self.rid, phase=phase, name=name, reason=reason or kind, kind=kind,
                                     failed=failed, verdicts=verdicts, at=at))

    def halt(self, at: float, phase: int, name: str, failed: tuple[str, ...], max_failed: int = 0) -> None:
        self.j.record(ev.PhaseHalted(self.rid, phase=phase, name=name, failed=failed, max_failed=max_failed, at=at))
        self.log(at, "HALT", f"{name}: {len(failed)} failed")

    def passed(self, at: float, phase: int, name: str, by: str) -> None:
        self.j.record(ev.GatePassed(self.rid, phase=phase, name=name, by=by, at=at))

    def flag(self, at: float, flag: str, new: str, user: str, reason: str, *, hosts: int = 6,
             failed: list | None = None) -> None:
        """A flag change as flagpush records it: begun (pending), then ended with its receipt and FLAG line."""
        self.flag_version += 1
        v = self.flag_version
        old = self.flags.get(flag, "off")
        self.flags[flag] = new
        self.clock = at
        change = {"version": v, "at": at, "user": user, "flag": flag, "old": old, "new": new, "reason": reason,
                  "hosts": hosts, "state": dict(self.flags)}
        history = FlagHistory(self.j)
        history.begun(change, [], ev.FlagChanged(0, flag=flag, old=old, new=new, user=user, reason=reason,
                                                 version=v, confirmed=0, total=hosts, at=at))
        failed = failed or []
        ok = hosts - len(failed)
        history.ended(change, ok, failed, [], line=f"{flag} {old} -> {new}: {reason}", actor=Actor(user),
                      at=at + 0.5)

    def finish(self, at: float, status: str = ev.R_DONE, done: int = 6, failed: int = 0, marks=()) -> None:
        self.clock = at
        self.j.record(ev.RolloutFinished(self.rid, status=status, revision=self.revision, done=done, failed=failed,
                                         skipped=0, seconds=at - self.started_at(), marks=tuple(marks), at=at))

    def rollback(self, at: float, user: str, hosts: tuple[str, ...]) -> float:
        self.j.record(ev.OperatorAction(self.rid, user=user, action="rollback", detail=f"{len(hosts)} hosts", at=at))
        t = at
        for h in hosts:
            t += 0.5
            self.j.record(ev.HostStateChanged(self.rid, host=h, phase=0, state=ev.ROLLING_BACK, at=t))
            t += 0.5
            self.j.record(ev.HostStateChanged(self.rid, host=h, phase=0, state=ev.ROLLED_BACK,
                                              revision=self.previous, at=t))
        self.clock = t
        self.j.record(ev.RolloutFinished(self.rid, status=ev.R_ROLLED_BACK, revision=self.revision, done=len(hosts),
                                         failed=0, skipped=0, seconds=t - at, at=t))
        return t

    def stage(self, at: float, user: str, revision: str, ok: bool = True, reason: str = "ok") -> None:
        """A stage run as engine/stage.py records it (its row and its log line)."""
        self.clock = at
        stage_module.record(self.j, Actor(user), stage_module.StageResult(revision, None, ok, 12.0, reason))

    def started_at(self) -> float:
        return self.j.rollout(self.rid).started_at

    # ------------------------------------------------------------------------------------------ stories
    def simple(self, t0: float, revision: str, previous: str | None, user: str) -> int:
        """A deploy that goes well: every phase, every host done, then DEPLOY OK."""
        rid = self.start(t0, revision, previous, user)
        t = t0 + 1
        for i, (name, hosts) in enumerate(PHASES):
            t = self.phase(t, i, name, hosts) + 0.5
        self.finish(t)
        self.log(t, "DEPLOY OK", f"{revision} on 6 of 6 hosts")
        return rid

    def demo_story(self, t0: float, user: str = "alice", revision: str = "r2307",
                   previous: str = "r2306") -> dict[str, float]:
        """The demo's story: new_search turned on, the canary takes r2307, stage 1 starts, the gate after it fails at
        7.5, the kill switch new_search goes off, the gate holds again, the operator proceeds, done. Its times."""
        times = {}
        self.flag(t0 - 60, "new_search", "on", "bob", "launch the new search")
        rid = self.start(t0, revision, previous, user)
        times["start"] = t0
        t = self.phase(t0 + 1, 0, *CANARY)
        self.check(t + 1, 0, "canary", 1.0)
        self.wait(t + 1.5, 1, STAGE1[0], ev.GATE_OPERATOR, 1.0, "gate errors_5xx < 5 holds")
        self.passed(t + 2, 1, STAGE1[0], "auto")
        times["stage1"] = t + 2.5
        t = self.phase(t + 2.5, 1, *STAGE1)
        for k, value in enumerate((4.0, 6.0, 7.5)):
            self.check(t + 1 + k, 1, "stage 1", value)
        times["gate_failed"] = t + 4
        self.wait(t + 4, 2, STAGE2[0], ev.GATE_FAILED, 7.5, "gate errors_5xx < 5 failed")
        self.log(t + 4.1, "GATE", "stage 1 errors_5xx{r2307} 7.5 > 5: FAILED")
        times["kill"] = t + 10
        self.flag(t + 10, "new_search", "off", "carol", "kill switch: errors")
        self.check(t + 20, 1, "stage 1", 2.0)
        times["held"] = t + 20.5
        self.wait(t + 20.5, 2, STAGE2[0], ev.GATE_OPERATOR, 2.0, "gate errors_5xx < 5 holds now")
        self.passed(t + 25, 2, STAGE2[0], user)
        t = self.phase(t + 25.5, 2, *STAGE2)
        times["last_done"] = self.last_done
        self.finish(t + 0.2)
        self.log(t + 0.3, "DEPLOY OK", f"{revision} on 6 of 6 hosts")
        times["end"] = t + 0.3
        times["rid"] = rid
        return times
