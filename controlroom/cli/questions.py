"""The questions a headless deploy asks on a terminal (cli.session.Session), with the same answers as the app.

At a gate that does not hold: [k]ill switch (the one guarding the failed series: flipped off with a confirm, then
the gate checked again while the metrics turn), [c]heck again, [o]verride (a typed reason; empty is no), roll[b]ack,
[a]bort, [d]etach. At a wait for the operator: [y]es (go on), [k]ill switch, roll[b]ack, [a]bort, [d]etach. At a
halt: [r]etry, [s]kip, [p]roceed, [a]bort, roll[b]ack, [d]etach. Aborting and rolling back ask again ([y/N]);
anything else typed asks again; nothing is ever read out of a terminal that went away (ask raises HungUp).
"""

from __future__ import annotations

import asyncio
import time

from controlroom.cli.ask import RESUME_HINT, Conversation, Detached, ask, confirm
from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.engine.board import Board

RECHECK_PATIENCE = 45.0  # seconds a gate is checked again after its kill switch flipped (a rate window must turn)


def who_answers(s: Conversation, e: ev.Event) -> str:
    """What the deploy waits for and who may answer it, for a follower that cannot (no terminal, or watching)."""
    ops = s.cfg.access.operators
    who = ", ".join(ops) if ops else "any operator of this state directory"
    what = (f"halted in {e.name}" if isinstance(e, ev.PhaseHalted)
            else f"waits at the gate before {e.name}" if e.kind == ev.GATE_FAILED
            else f"waits for the operator to start {e.name}")
    how = ("`controlroom deploy --follow` on a terminal, the app (`controlroom`), `controlroom deploy --resume`"
           + (" [--override-gate REASON]" if isinstance(e, ev.GateWaiting) and e.kind == ev.GATE_FAILED else "")
           + " or `controlroom rollback`")
    return f"the deploy {what}; {who} may answer: {how}"


def hosts_of(cfg: Config, board: Board) -> dict:
    """The board's hosts as a follower reads them: (phase, steps done, state)."""
    n = len(cfg.deploy.steps)
    out = {}
    for name, h in board.hosts.items():
        done = n if h.state in (ev.DONE, ev.CHECKING) else max(0, h.step - 1) if h.state == ev.RUNNING else 0
        out[name] = (h.phase, done, h.state)
    return out


async def follow_current(s: Conversation) -> int:
    """--follow: print the deploy the server runs as it stands, what it waits for and who may answer, then
    follow it as `deploy` does (and answer its questions, on a terminal)."""
    b = s.board
    counts: dict[str, int] = {}
    for h in b.hosts.values():
        counts[h.state] = counts.get(h.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    if b.status is None or (b.status in ev.ROLLOUT_FINAL and b.finished is None):
        s.out("no deploy runs in the server")
        return 1
    s.out(f"deploy #{b.rollout_id} of {b.revision}: {b.status} ({summary})")
    s.new_printer(hosts_of(s.cfg, b))
    if b.finished is not None:
        s.finished = b.finished
        s.printer(b.finished)
        return s._result()
    if b.status == ev.R_HALTED and b.halted is None:  # interrupted, or nothing here drives it any more
        s.out(f"halted: {RESUME_HINT} goes on with it, `controlroom rollback` undoes it")
        return 1
    if s.waits_for_a_person() or (b.gate is not None and b.gate.kind == ev.GATE_BAKE):
        wait = b.halted if b.status == ev.R_HALTED else b.gate
        if isinstance(wait, ev.PhaseHalted):
            s.printer(wait)
        else:
            s.out(f"  waiting: {wait.reason}")
        if s.waits_for_a_person():
            if not s.interactive:
                s.out(who_answers(s, wait))
                if isinstance(wait, ev.PhaseHalted):
                    return 1
            else:
                s.decisions.append(wait)
    return await s.run()


def _waiting_at(s: Conversation, e: ev.GateWaiting):
    def still() -> bool:
        b = s.board
        return b.status == ev.R_WAITING and b.gate is not None and b.gate.phase == e.phase and b.gate.kind == e.kind
    return still


async def answer_gate(s: Conversation, e: ev.GateWaiting) -> None:
    still = _waiting_at(s, e)
    failed = e.kind == ev.GATE_FAILED
    s.asked = True
    if failed:
        s.out(f"The gate before {e.name} does not hold: {' and '.join(e.failed)} (the waiting line says why)")
    while still():
        switches = await _switches(s, e)
        kill = f"[k]ill switch {switches[0]['name']}, " if switches else ""
        if failed:
            question = f"{kill}[c]heck again, [o]verride, roll[b]ack, [a]bort, [d]etach? "
        else:
            question = f"Start {e.name}? [y]es, {kill}roll[b]ack, [a]bort, [d]etach: "
        answer = await ask(s, question, still=still)
        if answer is None:
            return
        if answer in ("d", "detach"):
            _say_detached(s)
        if answer in ("y", "yes") and not failed:
            await s._intent("proceed")
            return
        if answer in ("k", "kill") and switches:
            if await _kill(s, e, switches[0], still) and failed:
                await _recheck(s, e, RECHECK_PATIENCE, still)
        elif answer in ("c", "check") and failed:
            await _recheck(s, e, 0.0, still)
        elif answer in ("o", "override") and failed:
            reason = await _typed_reason(s, "pass the gate that does not hold", still)
            if reason:
                await s._intent("proceed", reason=reason)
                return
        elif answer in ("b", "rollback"):
            if await _rollback(s, still):
                return
        elif answer in ("a", "abort"):
            if await _abort(s, still):
                return


async def answer_halt(s: Conversation, e: ev.PhaseHalted) -> None:
    def still() -> bool:
        return s.board.status == ev.R_HALTED

    s.asked = True
    while still():
        answer = await ask(s, "[r]etry failed hosts, [s]kip them, [p]roceed anyway, [a]bort, roll[b]ack, "
                              "[d]etach? ", still=still)
        if answer is None:
            return
        failed = [n for n in s.board.hosts_in(ev.FAILED) if s.board.hosts[n].phase == e.phase]
        if answer in ("d", "detach"):
            _say_detached(s)
        elif answer in ("r", "retry"):
            for h in failed:
                await s._intent("retry", host=h)
            return
        elif answer in ("s", "skip", "p", "proceed"):
            # skipping the failed hosts or going on with them failed leaves the phase past its budget: only on
            # purpose, with a typed reason the deploy log records (the server refuses it without one)
            what = "skip the failed hosts" if answer.startswith("s") else "go on past the failure budget"
            reason = await _typed_reason(s, what, still)
            if not reason:
                continue
            if answer.startswith("s"):
                for h in failed:
                    await s._intent("skip", host=h, reason=reason)
            else:
                await s._intent("proceed", reason=reason)
            return
        elif answer in ("a", "abort"):
            if await _abort(s, still):
                return
        elif answer in ("b", "rollback"):
            if await _rollback(s, still):
                return


async def _typed_reason(s: Conversation, what: str, still) -> str | None:
    """The reason a person types for going past what does not hold (the server refuses it without one); empty,
    or nobody there, is no."""
    return await ask(s, f"Why {what}? (the deploy log records it; empty: no) ", raw=True, still=still)


def _say_detached(s: Conversation) -> None:
    s.out("detached: the deploy waits in the server, the fleet locked for it; `controlroom deploy --follow` or "
          "`controlroom deploy --resume` answers it, `controlroom` shows it", err=True)
    raise Detached()


async def _abort(s: Conversation, still) -> bool:
    pending = len(s.board.hosts_in(ev.PENDING))
    if not await confirm(s, f"Abort {s.board.revision}? The deploy ends; {pending} pending hosts are skipped.",
                         still):
        return False
    await s._intent("abort")
    return True


async def _rollback(s: Conversation, still) -> bool:
    if not s.cfg.deploy.rollback:
        s.out("no [deploy] rollback steps in the config: nothing to roll back with")
        return False
    if not await confirm(s, f"Roll back {s.board.revision} on the hosts it reached to their previous revision?",
                         still):
        return False
    reply = await s._intent("rollback")
    if reply:
        s.following(reply, "deploy")  # the deploy ends rolled back: exit 1, as a deploy that failed
    return True


async def _switches(s: Conversation, e: ev.GateWaiting) -> list[dict]:
    """The kill switches to offer, not off yet: at a failed gate the ones guarding its failed series, else all."""
    try:
        state = await s.request("flags")
    except Exception:  # noqa: BLE001 - no flags to offer is not a reason to stop asking
        return []
    series = e.failed_series() if e.kind == ev.GATE_FAILED else None
    specs = s.cfg.flags.guarding(series) if series is not None else [f for f in s.cfg.flags.flags if f.kill_switch]
    names = [f.name for f in specs]
    rows = [r for r in state["flags"] if r["name"] in names and r["value"] != "off"]
    rows.sort(key=lambda r: names.index(r["name"]))
    return [{**r, "hosts": state["hosts"]} for r in rows]


async def _kill(s: Conversation, e: ev.GateWaiting, row: dict, still) -> bool:
    name = row["name"]
    if not await confirm(s, f"Turn the kill switch {name} OFF on {row['hosts']} hosts (now {row['value']})?", still):
        return False
    why = f"{' and '.join(e.failed)} failed before {e.name}" if e.failed else f"before {e.name}"
    done = await s._intent("flag_set", flag=name, value="off", reason=why, expect=row["version"])
    if done is None:
        return False
    s.out(f"  {done['flag']} {done['old']} -> {done['new']} on {done['confirmed']}/{done['total']} hosts in "
          f"{done['seconds']:.1f} s" + "".join(f"; {h} {cls}" for h, cls, _ in done["failed"][:5]))
    return bool(done["confirmed"])


async def _recheck(s: Conversation, e: ev.GateWaiting, patience: float, still) -> None:
    """Check the gate again, every metrics interval for up to patience seconds (a flipped flag takes a rate window
    to show); only the last try of a gate that still fails goes into the deploy log."""
    if patience:
        s.out(f"  checking {' and '.join(e.failed)} again while the metrics turn (up to {patience:g} s)")
    until = time.monotonic() + patience
    interval = max(0.5, s.cfg.metrics.interval)
    while still():
        last = time.monotonic() + interval > until
        reply = await s._intent("gate_check", quiet=not last)
        if reply is None:
            return
        if reply.get("passed") or last:  # its verdict is in the deploy log now: the Printer shows it
            if not reply.get("passed"):
                s.out("  the gate still does not hold")
            return
        await asyncio.sleep(interval)  # the next look at the metrics
