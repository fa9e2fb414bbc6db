"""`controlroom log`, `lock` and `unlock`, and the Printer that shows a headless deploy as it goes (cli/session.py
runs the deploy), in the spirit of the Flickr deploy page."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError, JournalError, LockedError, UsageError
from controlroom.core.text import LINE_LIMIT, clean

if TYPE_CHECKING:  # `controlroom deploy` through a running server never opens the journal itself
    from controlroom.journal.journal import Journal


def _journal(cfg: Config) -> Journal:
    from controlroom.journal.journal import Journal

    return Journal.open(cfg.state.dir, url=cfg.state.journal)


# --------------------------------------------------------------------------------------------- log and lock


def _ask_server(cfg: Config, op: str, **args) -> dict:
    """One intent to the server of this state directory (started when none answers); its reply."""
    import asyncio

    from controlroom.server.client import connect

    async def go() -> dict:
        c = await connect(cfg)
        try:
            return await c.request(op, **args)
        finally:
            await c.close()

    return asyncio.run(go())


def cmd_log(cfg: Config, args: argparse.Namespace) -> int:
    if args.words:  # `log add` is an intent: the server writes it, naming who asked
        if args.words[0] != "add" or len(args.words) < 2:
            raise UsageError("usage: controlroom log [-n N] | controlroom log add MSG")
        text = " ".join(args.words[1:]).strip()
        if not text:
            raise UsageError("log add needs a message")
        print(clean(_ask_server(cfg, "log_add", message=text)["line"], LINE_LIMIT))
        return 0
    if args.n < 1:
        raise UsageError("-n must be at least 1")
    from controlroom.journal.journal import Journal

    try:
        j = _journal(cfg)
    except JournalError:
        try:
            j = Journal.open(cfg.state.dir, readonly=True, url=cfg.state.journal)  # a journal read-only for this user can still be read
        except JournalError:
            db = Path(cfg.state.dir) / "journal.db"
            if not os.access(cfg.state.dir, os.X_OK) or db.exists() and not os.access(db, os.R_OK):
                return _log_from_server(cfg, args.n, args.json)  # the server's alone (its own user): ask it
            raise
    lock = j.lock()
    if args.json:
        _log_json(lock, j.log(args.n))
        return 0
    if lock:
        print(clean(lock.describe(), LINE_LIMIT))
    warn = sys.stdout.isatty() and not os.environ.get("NO_COLOR")  # a marked result in the warning colour
    for e in j.log(args.n):
        line = clean(e.line(), LINE_LIMIT)  # a message is one line on the terminal, whatever it holds
        marked = warn and e.kind.startswith("DEPLOY ") and ev.MARK_SYMBOL in e.text
        print(f"\x1b[1;33m{line}\x1b[0m" if marked else line)
    return 0


def lock_json(lock) -> dict:
    """`log --json`'s first line when the fleet is locked: {"lock": {...}}."""
    from controlroom.cli.jsonout import when

    return {"lock": {"user": lock.user, **when(lock.at), "reason": lock.reason, "rollout_id": lock.rollout_id,
                     "pid": lock.pid, "hostname": lock.hostname, "origin": lock.origin, "stale": lock.stale,
                     "parked": lock.parked, "describe": lock.describe()}}


def entry_json(e) -> dict:
    """One deploy-log entry as `log --json` prints it."""
    from controlroom.cli.jsonout import when

    return {"id": e.id, **when(e.at), "user": e.user, "origin": e.origin, "kind": e.kind, "revision": e.revision,
            "text": e.text}


def _log_json(lock, entries) -> None:
    from controlroom.cli.jsonout import emit

    if lock:
        emit(lock_json(lock))
    for e in entries:
        emit(entry_json(e))


def _log_from_server(cfg: Config, n: int, as_json: bool = False) -> int:
    """`controlroom log` for a teammate: the journal is the server's user's alone, the socket is the way in."""
    import asyncio

    from controlroom.journal.journal import LogEntry
    from controlroom.server.client import connect
    from controlroom.server.wire import Lock

    async def go() -> dict:
        c = await connect(cfg, start=False)
        try:
            return await c.request("journal", since=0)
        finally:
            await c.close()

    reply = asyncio.run(go())
    if as_json:
        _log_json(Lock(**reply["lock"]) if reply.get("lock") else None,
                  [LogEntry(**e) for e in reply.get("log", [])[-n:]])
        return 0
    if reply.get("lock"):
        print(clean(Lock.from_wire(reply["lock"]).describe(), LINE_LIMIT))
    for e in reply.get("log", [])[-n:]:  # oldest first, as the journal gives them
        print(clean(LogEntry(**e).line(), LINE_LIMIT))
    return 0


def cmd_lock(cfg: Config, args: argparse.Namespace) -> int:
    """Lock the fleet. A lock someone holds already is named first and replaced only on a yes typed at a
    terminal (or --takeover); without a terminal the command is refused (exit 3) naming the holder."""
    msg = " ".join(args.message).strip()
    if not msg:
        raise UsageError("lock needs a message: say why (it is what the team reads)")
    from controlroom.server.wire import Lock

    d = _ask_server(cfg, "journal", since=2**62).get("lock")
    held = Lock.from_wire(d)
    takeover = False
    if held is not None and not held.stale and not held.rollout_id:  # a deploy's lock: the server refuses
        described = clean(held.describe(), LINE_LIMIT)
        if not args.takeover:
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                raise LockedError(f"the fleet is locked: {described}; `controlroom lock --takeover MSG` "
                                  "replaces it")
            print(f"the fleet is locked: {described}")
            if not _yes("Replace it with your lock? [y/N] "):
                print("not locking: the lock stays as it is")
                return 1
        takeover = True
    print(clean(f"locked: {_ask_server(cfg, 'lock', message=msg, takeover=takeover)['describe']}", LINE_LIMIT))
    return 0


def _yes(question: str) -> bool:
    """A yes typed at the terminal; the end of input (a terminal that went away) is a no."""
    try:
        return input(question).strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt, OSError):
        print()
        return False


def cmd_unlock(cfg: Config, args: argparse.Namespace) -> int:
    try:
        reply = _ask_server(cfg, "unlock", force=args.force)
    except ControlroomError as e:
        # another person's lock, or the one a halted deploy keeps: the server said what unlocking abandons (the
        # client's error carries the server's exit code, 3 for a lock)
        if args.force or not sys.stdin.isatty() or e.exit_code != LockedError.exit_code:
            raise
        print(clean(str(e), LINE_LIMIT))
        answer = typed_answer("Unlock anyway? [y/N] ")
        if answer not in ("y", "yes"):
            quietly_say("not unlocking")
            return 1 if answer is not None else 129
        reply = _ask_server(cfg, "unlock", force=True)
    was = reply.get("was")
    print(clean(f"unlocked (was: {was})", LINE_LIMIT) if was else "the fleet was not locked")
    return 0


def typed_answer(prompt: str) -> str | None:
    """A line the person typed, stripped and lower-cased; None when no one typed it: the end of input, a terminal
    that went away (EIO). A lost stdin is never an answer; Ctrl+C interrupts as anywhere (exit 130)."""
    try:
        line = input(prompt)
    except (EOFError, OSError):
        return None
    return line.strip().lower()


def quietly_say(text: str) -> None:
    """A last line for a terminal that may be gone: never an error of its own."""
    try:
        print(text, flush=True)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------- the printer


class JsonPrinter:
    """`deploy --json`: each event the Printer would see as one JSON object a line: {"event": its kind, its fields
    as the server sends them (core.events.to_wire; "at" epoch seconds), "time": ISO 8601 UTC}. Strings raw."""

    def __init__(self, emit) -> None:
        self.emit = emit

    def __call__(self, e: ev.Event) -> None:
        from controlroom.cli.jsonout import iso

        d = ev.to_wire(e)
        self.emit({"event": d.pop("type"), **d, "time": iso(d.get("at"))})


class Printer:
    """Lines as the deploy goes: a line per step and per phase as it completes, failed hosts with reasons."""

    def __init__(self, rollout, out=sys.stdout) -> None:
        self.r = rollout
        self.out = out
        self.width = max(len(p.name) for p in rollout.phases) + 2
        self.steps_printed: dict[int, int] = {}
        # counted as events come, so a line costs the same at 150 hosts as at 5 (no rescan of the phase)
        self.seen: dict[str, tuple[int, bool]] = {}
        self.passed: dict[tuple[int, int], int] = {}
        self.out_of: dict[int, int] = {}
        for hr in rollout.hosts.values():
            self._count(hr.name, hr.phase, hr.steps_done, hr.state in (ev.FAILED, ev.SKIPPED))

    def say(self, text: str) -> None:
        # host names, reasons and revisions came from hosts and people: no escape sequence reaches the terminal
        print(clean(text, None), file=self.out, flush=True)

    def dots(self, label: str, result: str) -> str:
        return f"{label} {'.' * max(3, 30 - len(label))} {result}"

    def __call__(self, e: ev.Event) -> None:
        r = self.r
        if isinstance(e, ev.RolloutStarted):
            verb = "resuming" if e.resumed else "deploying"
            self.say(f"{verb} {e.previous or '?'} -> {e.revision} to {len(r.hosts)} hosts in {len(r.phases)} phases "
                     f"(deploy #{e.rollout_id} by {e.user})")
        elif isinstance(e, ev.PhaseStarted):
            self.say(f"{e.name}: {e.hosts} hosts")
        elif isinstance(e, ev.HostStateChanged):
            self._steps(e)
            if e.state == ev.FAILED:
                self.say(f"  {e.host}  failed  {clean(e.reason)}")
            elif e.state == ev.ROLLED_BACK:
                self.say(f"  {e.host}  rolled back to {e.revision}")
        elif isinstance(e, ev.PhaseHalted):
            self.say(f"HALTED {e.name}: {len(e.failed)} failed, more than max_failed {e.max_failed}: "
                     + ", ".join(e.failed))
        elif isinstance(e, ev.PhaseCompleted):
            total = len(r.phases[e.phase].hosts)
            res = "ok" if not e.failed and not e.skipped else "done"
            extra = (f", {e.failed} failed" if e.failed else "") + (f", {e.skipped} skipped" if e.skipped else "")
            self.say(self.dots(e.name, f"{res} {e.done}/{total}{extra} ({e.seconds:.1f} s)"))
        elif isinstance(e, ev.GateWaiting):
            self.say(f"  waiting: {e.reason}")
        elif isinstance(e, ev.SuspectNamed):  # a failed gate's suspect, as the server judged it
            self.say(f"  {e.line()}")
        elif isinstance(e, ev.LogEntryAdded) and e.kind == "GATE":  # each verdict as the deploy log has it
            self.say(f"  GATE {e.revision + ' ' if e.revision else ''}{e.text}")
        elif isinstance(e, ev.RolloutInterrupted):
            self.say(f"INTERRUPTED by {e.user}: {len(e.hosts)} hosts in flight stopped")
        elif isinstance(e, ev.OperatorAction):
            detail = f" ({clean(e.detail)})" if e.detail else ""
            self.say(f"  {e.user}: {e.action}{' ' + e.host if e.host else ''}{detail}")
        elif isinstance(e, ev.RolloutFinished):
            extra = (f", {e.failed} failed" if e.failed else "") + (f", {e.skipped} skipped" if e.skipped else "")
            # 'DEPLOY OK r2307 ⚠ past a failed gate: ...' for a marked result (events.outcome)
            self.say(f"{ev.outcome(e)}: {e.done} of {len(r.hosts)} hosts{extra} in {e.seconds:.1f} s")
            for host, reason in e.failed_hosts:
                self.say(f"  {host}  {clean(reason)}")

    def _count(self, host: str, phase: int, steps_done: int, out: bool) -> None:
        done_before, out_before = self.seen.get(host, (0, False))
        for k in range(done_before + 1, steps_done + 1):
            self.passed[phase, k] = self.passed.get((phase, k), 0) + 1
        for k in range(steps_done + 1, done_before + 1):
            self.passed[phase, k] -= 1
        self.out_of[phase] = self.out_of.get(phase, 0) + out - out_before
        self.seen[host] = (steps_done, out)

    def _steps(self, e: ev.HostStateChanged) -> None:
        phase = e.phase
        self._count(e.host, phase, e.steps_done, e.state in (ev.FAILED, ev.SKIPPED))
        size = len(self.r.phases[phase].hosts)
        n = len(self.r.cfg.deploy.steps)
        out = self.out_of.get(phase, 0)
        printed = self.steps_printed.get(phase, 0)
        for k in range(printed + 1, n + 1):
            passed = self.passed.get((phase, k), 0)
            if passed + out < size or passed == 0:
                break
            name = self.r.cfg.deploy.steps[k - 1].split()[0]
            self.say(self.dots(f"  step {k}/{n} {name}", f"ok {passed}/{size}"))
            self.steps_printed[phase] = k
