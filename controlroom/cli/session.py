"""Headless `controlroom deploy`, `deploy --follow`, `deploy --detach` and `rollback`: clients of the server.
The server runs the operation; this process starts it (or attaches to it), prints it as it goes (cli.deploy.Printer),
answers its questions from the terminal (cli/questions.py; or leaves them to the server by --yes/--auto), and exits
with its result.

A dropped session never decides. Only a key the person typed answers a question: SIGHUP, a closed terminal (EOF or
EIO on it) or a lost stdin at any prompt detaches, as [d]etach does: the deploy waits in the server, the fleet
locked for it (parked, the lock row says why), until `deploy --resume`, `deploy --follow`, the app or `rollback`.
Ctrl+C on a terminal asks "[a]bort, or [d]etach"; Ctrl+C or SIGTERM without one interrupts the deploy (in-flight
hosts stopped and recorded as interrupted, the deploy halted with its lock parked, exit 130); a follower (--follow)
only detaches. SIGHUP or a closed stdout detaches. With no terminal to ask, a halt (or a gate that does not hold,
unless --override-gate) is parked in the server. Prompts are read on the event loop, so Ctrl+C at a question answers
it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from controlroom.cli.ask import RESUME_HINT, Detached, HungUp, SafeOut, ask, plan_view
from controlroom.cli.deploy import JsonPrinter, Printer
from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError, LockedError
from controlroom.core.text import clean
from controlroom.engine.board import Board
from controlroom.server.starter import Starting

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HUNG_UP = 129  # a question the terminal went away from: nothing was decided (128 + SIGHUP)
PARK_PATIENCE = 60.0  # seconds a detaching client waits for the server to say the deploy is parked


class Session:
    """One connection to the server, following one operation: prints its events, asks its questions, and knows
    how it ended (its RolloutFinished, and the server's `ended` for its number)."""

    def __init__(self, cfg: Config, client, *, interactive: bool, policy: str = "operator",
                 override: str | None = None, watching: bool = False, as_json: bool = False) -> None:
        self.cfg = cfg
        self.as_json = as_json  # --json: the events as JSON lines on stdout, every other line on stderr
        self.c = client
        self.interactive = interactive
        self.policy = policy
        self.override = override  # --override-gate: the reason sent with proceed at a gate that does not hold
        self.watching = watching  # --follow: a signal only detaches
        self.board = Board()
        self.lock: dict | None = None
        self.printer: Printer | JsonPrinter | None = None
        self.skip_seq = 0
        self.op = 0
        self.kind = "deploy"
        self.finished: ev.RolloutFinished | None = None
        self.ended: dict | None = None
        self.closed = False
        self.decisions: list[ev.Event] = []
        self.signals: list[signal.Signals] = []
        self.asking: asyncio.Future | None = None
        self.changed = asyncio.Event()
        self.interrupting = False
        self.detached = False
        self.hung_up = False
        self.asked = False  # a question of the deploy's was put to this terminal

    # ------------------------------------------------------------------------------------------ output
    def out(self, text: str, end: str = "\n", err: bool = False) -> None:
        """Every line this client prints: each through the neutraliser (a gate's reason, a lock's, an error the
        server relays carry outside text), the line breaks as asked."""
        if self.hung_up:
            return  # nobody reads any more: nothing is written to a terminal that went away
        text = "\n".join(clean(line, None) for line in text.split("\n"))
        self._write(text, end, sys.stderr if err or self.as_json else sys.stdout)

    def emit(self, obj: dict) -> None:
        """--json: one event as a JSON line on stdout (json.dumps escapes every control character)."""
        import json

        if not self.hung_up:
            self._write(json.dumps(obj, allow_nan=False), "\n", sys.stdout)

    def new_printer(self, hosts: dict | None) -> None:
        """What shows the operation's events from now on: the Printer's lines, or --json's objects."""
        if self.as_json:
            self.printer = JsonPrinter(self.emit)
        else:
            self.printer = Printer(plan_view(self.cfg, hosts), out=SafeOut(self))

    def _write(self, text: str, end: str, stream) -> None:
        try:
            print(text, end=end, file=stream, flush=True)
        except OSError:  # a closed pipe, or EIO from a terminal that went away: the deploy goes on
            self.hung_up = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            for stream in (sys.stdout, sys.stderr):
                try:
                    os.dup2(devnull, stream.fileno())
                except (OSError, ValueError):
                    pass
            raise HungUp() from None

    # ------------------------------------------------------------------------------------------ signals
    def _signal(self, sig: signal.Signals) -> None:
        self.signals.append(sig)
        if sig == signal.SIGHUP:
            self.hung_up = True  # its terminal is gone: write nothing more to it
        if self.asking is not None and not self.asking.done():
            self.asking.cancel()
        self.changed.set()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._signal, sig)

    # ------------------------------------------------------------------------------------------ messages
    async def attach(self) -> None:
        """Attach and read the snapshot: the board and the lock as the server sees them now."""
        await self.c.request("attach")
        while True:
            msg = await self.c.messages.get()
            if msg.get("op") == "snapshot":
                self.board = Board.from_snapshot(msg["board"])
                self.lock = msg.get("lock")
                self.skip_seq = msg.get("seq", 0)
                if self.watching and msg.get("policy"):
                    self.policy = msg["policy"]  # what the server answers by itself is not asked here
                return
            if msg.get("op") == "closed":
                raise ControlroomError(f"the server went away; {self._next_step()}")

    def following(self, reply: dict, kind: str) -> None:
        """Follow the operation the server just started (or the one it goes on with)."""
        self.op = reply["op"]
        self.kind = kind
        self.skip_seq = reply.get("seq", 0)
        self.new_printer(reply.get("hosts"))

    def consume(self, msg: dict) -> None:
        op = msg.get("op")
        if op == "event":
            e = ev.from_wire(msg["event"])
            self.board.apply(e)
            stale = type(e) is ev.HostStateChanged and msg["seq"] <= self.skip_seq  # the reply counted it
            if self.printer is not None and not stale and type(e) is not ev.HostOutput:
                self.printer(e)
            if isinstance(e, (ev.GateWaiting, ev.PhaseHalted)) and msg["seq"] > self.skip_seq:
                self.decisions.append(e)
            elif isinstance(e, ev.RolloutFinished):
                self.finished = e
        elif op == "snapshot":
            self.board = Board.from_snapshot(msg["board"])
        elif op == "ended" and (msg.get("no") == self.op or self.watching and not self.op):
            self.ended = msg
        elif op == "notice":  # what the server says about its config (a change that waits for this deploy)
            self.out(f"controlroom server: {msg.get('line', '')}", err=True)
        elif op == "closed":
            self.closed = True
        self.changed.set()

    async def pump(self) -> None:
        try:
            while not self.closed:
                self.consume(await self.c.messages.get())
        except Detached:  # the reader of our output left while an event was printed
            self.detached = True
            self.changed.set()

    async def request(self, op: str, **args) -> dict:
        return await self.c.request(op, **args)

    # ------------------------------------------------------------------------------------------ the loop
    async def run(self) -> int:
        """Follow to the end; returns the exit code (raises the operation's error as the server said it)."""
        pump = asyncio.ensure_future(self.pump())
        try:
            while True:
                if self.detached:
                    raise HungUp()
                if self.signals:
                    await self._on_signal(self.signals.pop(0))
                    continue
                if self.ended is not None or (self.watching and self.finished is not None):
                    return self._result()
                if self.closed:
                    raise ControlroomError(f"the server went away before the {self.kind} ended; "
                                           f"{self._next_step()} (see {self.cfg.state.dir}/server.log)")
                if self.decisions:
                    code = await self._decide(self.decisions.pop(0))
                    if code is not None:
                        return code
                    continue
                self.changed.clear()
                await self.changed.wait()
        finally:
            pump.cancel()

    def _result(self) -> int:
        end = self.ended
        if end is not None and end.get("error"):
            # an operation that failed (a full disk, say) and left its deploy unfinished: what carries it on
            rid = end.get("rollout_id")
            then = "" if "`controlroom " in end["error"] or int(end.get("exit") or 1) != 1 or not rid else \
                self._next_step(rid, False)
            err = ControlroomError(end["error"] + (f"; {then}" if then else ""))
            err.exit_code = int(end.get("exit") or 1)
            raise err
        fin = self.finished
        if fin is None:
            return 1
        if self.kind == "rollback":
            return 0 if fin.failed == 0 else 1
        return 0 if fin.status == ev.R_DONE else 1

    def _next_step(self, rollout_id: int | None = None, or_log: bool = True) -> str:
        """What to run now, as the journal says (the server may be gone)."""
        from controlroom.journal.journal import next_step

        return next_step(self.cfg.state.dir, rollout_id, or_log=or_log, url=self.cfg.state.journal)

    async def _on_signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            raise HungUp()
        if self.watching:  # a follower only watches unless it answered a question: leaving changes nothing
            self.out("detached: the deploy goes on in the server; `controlroom deploy --follow` follows it again",
                     err=True)
            raise Detached()
        if sig == signal.SIGINT and self.interactive and not self.interrupting:
            answer = await ask(self, "[a]bort, or [d]etach (the deploy goes on)? ")
            if answer in ("d", "detach"):
                self.out(f"detached: the {self.kind} goes on in the server; `controlroom deploy --follow` follows "
                         "it, `controlroom` shows it", err=True)
                raise Detached()
            if answer in ("a", "abort"):
                await self._intent("interrupt" if self.kind == "rollback" else "abort")
                return
            if answer is not None:
                return  # anything else: go on following
        # SIGTERM, Ctrl+C with no terminal, or Ctrl+C again at the question: stop the hosts in flight, now
        if not self.interrupting:
            self.interrupting = True
            self.out(f"\n{sig.name}: stopping the hosts in flight; the deploy stays halted and resumable", err=True)
            await self._intent("interrupt")

    async def _intent(self, op: str, **args) -> dict | None:
        try:
            return await self.request(op, **args)
        except ControlroomError as e:
            if self.ended is None and not self.closed:
                self.out(f"controlroom: {e}", err=True)
            return None

    # ------------------------------------------------------------------------------------------ questions
    def waits_for_a_person(self) -> bool:
        """The deploy stands at a question nobody here will answer by policy: a halt, a gate that does not hold,
        or an operator's wait its policy does not pass."""
        b = self.board
        if b.status == ev.R_HALTED and b.halted is not None:
            return True
        if b.status != ev.R_WAITING or b.gate is None or b.gate.kind == ev.GATE_BAKE:
            return False
        return b.gate.kind == ev.GATE_FAILED or self.policy == "operator"

    async def leave(self) -> None:
        """Detaching (a key, or the terminal gone): a deploy waiting for a decision is parked in the server, the
        fleet locked for it with the reason in the lock row, exactly as for a deploy with no terminal."""
        if self.kind != "deploy" or self.closed or not (self.op or self.watching) or not self.waits_for_a_person():
            return
        if self.watching and not (self.asked and self.c.may_act):
            return  # a follower that was not asked leaves the deploy as it found it
        try:
            await asyncio.wait_for(self.request("park"), PARK_PATIENCE)
        except (ControlroomError, TimeoutError):
            pass  # the server goes on with it either way; a resume finds it

    async def _decide(self, e: ev.Event) -> int | None:
        from controlroom.cli import questions as deployask

        b = self.board
        if isinstance(e, ev.GateWaiting):
            if e.kind == ev.GATE_BAKE or b.status != ev.R_WAITING or b.gate is None or b.gate.phase != e.phase:
                return None  # the engine goes on by itself, or someone answered already
            if self.policy in ("yes", "auto") and e.kind == ev.GATE_OPERATOR:
                return None  # the server answers it, by the deploy's policy
            if e.kind == ev.GATE_FAILED and self.override and self.c.may_act:
                self.out(f"overriding the gate before {e.name} (--override-gate): {self.override}")
                await self._intent("proceed", reason=self.override)
                return None
            if not self.interactive:
                if self.watching:
                    self.out(deployask.who_answers(self, e))
                    return None
                # a gate that failed or could not be checked: neither --auto nor --yes passes it
                self.out(f"stopped at a gate before {e.name}: {e.reason}; --auto and --yes never pass a gate that "
                         f"does not hold (--override-gate REASON does, on the record); the deploy stays resumable "
                         f"with {RESUME_HINT}")
                return await self._park()
            await deployask.answer_gate(self, e)
            return None
        if isinstance(e, ev.PhaseHalted):
            if b.status != ev.R_HALTED:
                return None
            if not self.interactive:
                if self.watching:
                    self.out(deployask.who_answers(self, e))
                    return 1
                code = await self._park()
                if code is not None:
                    self.out(f"halted in {e.name}; retry the failed hosts with {RESUME_HINT}, "
                             "or `controlroom rollback`")
                return code
            await deployask.answer_halt(self, e)
        return None

    async def _park(self) -> int | None:
        """No one here can answer: the server keeps the deploy waiting, the fleet locked for it."""
        reply = await self._intent("park")
        return 1 if reply and reply.get("parked") else None


# --------------------------------------------------------------------------------------------- the commands


def _refuse_if_locked(lock: dict | None, force: bool) -> None:
    """Say so before asking anything; the server checks again, atomically, when the deploy takes the lock."""
    if lock and (lock.get("live") or (not lock.get("stale") and not force)):
        hint = "; to deploy anyway use --force --reason TEXT" if not lock.get("live") else ""
        # the same words as the journal's, whichever check the second of two deploys runs into
        what = f" by {lock['describe']}" if lock.get("live") else f": {lock['describe']}{hint}"
        follow = ""
        if lock.get("live") and lock.get("rollout_id") and lock.get("elsewhere"):
            # a shared journal's deploy another bastion's server drives: only that bastion's --follow reaches it
            there = clean(str(lock.get("hostname") or "another bastion"), 80)
            follow = (f"; deploy #{lock['rollout_id']} runs on {there} (by {clean(str(lock.get('user')), 40)}); "
                      f"`controlroom deploy --follow` on {there} attaches to it")
        elif lock.get("live") and lock.get("rollout_id"):
            follow = "; `controlroom deploy --follow` attaches to it"
        raise LockedError(f"the fleet is locked{what}{follow}")


def _session(cfg: Config, body, *, policy: str = "operator", override: str | None = None,
             watching: bool = False, as_json: bool = False, starting: Starting | None = None) -> int:
    """Connect (starting the server if none answers, unless watching; ``starting``: what cli/start.py began),
    attach, run body(session). SIGHUP, a closed terminal or pipe, and [d]etach leave the operation to the server (a
    deploy at a question parked there)."""
    from controlroom.server.client import connect

    interactive = sys.stdin.isatty()

    async def go() -> int:
        s = None
        # a server this deploy, resume or rollback starts opens the fleet's connections at once (serve --warm)
        c = await connect(cfg, start=not watching, read_only=watching and not interactive and override is None,
                          warm=not watching, starting=starting)
        try:
            s = Session(cfg, c, interactive=interactive and c.may_act, policy=policy, override=override,
                        watching=watching, as_json=as_json)
            s.install()
            await s.attach()
            return await body(s)
        except Detached:
            if not (s.op or s.watching):
                return HUNG_UP  # at the question before anything started: nothing was decided
            await s.leave()
            return 0
        finally:
            await c.close()

    return asyncio.run(go())


def deploy(cfg: Config, args: argparse.Namespace, starting: Starting | None = None) -> int:
    """`controlroom deploy` run here (its command line checked by cli/start.py)."""
    from controlroom.cli.server import policy_of
    from controlroom.sources import git as release

    interactive = sys.stdin.isatty()
    policy = policy_of(args)

    async def body(s: Session) -> int:
        if args.resume:
            reply = await s.request("resume", policy=policy, config=str(Path(cfg.path).resolve()))
            s.following(reply, "deploy")
            if reply.get("retried") is not None:  # it waited in the server: it goes on from where it stood
                s.out(f"resuming deploy #{reply['rollout_id']} of {reply['revision']} in the server"
                      + (f": retrying {', '.join(reply['retried'])}" if reply["retried"] else ""))
                if reply.get("waiting"):
                    s.decisions.append(ev.from_wire(reply["waiting"]))
            return await s.run()
        _refuse_if_locked(s.lock, args.force)
        revision = args.revision or await asyncio.to_thread(release.staged_revision, cfg)
        if interactive and not args.yes:
            plan = ", ".join(f"{p.name} {len(p.hosts)}" for p in cfg.phases)
            answer = await ask(s, f"Deploy {revision} to {len(cfg.hosts)} hosts ({plan})? [y/N] ")
            if answer not in ("y", "yes"):
                s.out("not deploying")
                return 130 if answer is None else 1
            s.signals.clear()
        reply = await s.request("deploy", revision=revision, policy=policy, confirm="all", config=str(Path(cfg.path).resolve()),
                                force_reason=args.reason if args.force else None)
        s.following(reply, "deploy")
        return await s.run()

    return _session(cfg, body, policy=policy, override=args.override_gate, as_json=args.json, starting=starting)


def follow(cfg: Config, args: argparse.Namespace) -> int:
    """`deploy --follow`: attach to the deploy the server runs and follow it as `deploy` does; on a terminal, answer
    its questions. Ctrl+C, a closed terminal or a closed pipe detaches: the deploy goes on in the server."""

    async def body(s: Session) -> int:
        from controlroom.cli.questions import follow_current

        return await follow_current(s)

    return _session(cfg, body, override=args.override_gate, watching=True, as_json=args.json)


def rollback(cfg: Config, args: argparse.Namespace, starting: Starting | None = None) -> int:
    """`controlroom rollback` (its command line checked by cli/start.py)."""

    async def body(s: Session) -> int:
        plan = await s.request("rollback_plan")
        if not plan["hosts"]:
            s.out(f"deploy #{plan['rollout_id']} of {plan['revision']}: no host to roll back")
            return 0
        if not args.yes:
            answer = await ask(s, f"Roll back {plan['revision']} on {plan['hosts']} hosts (done, failed after a "
                               "step, or in flight) to their previous revision? [y/N] ")
            if answer not in ("y", "yes"):
                s.out("not rolling back")
                return 130 if answer is None else 1
            s.signals.clear()
        reply = await s.request("rollback", config=str(Path(cfg.path).resolve()))
        s.following(reply, "rollback")
        return await s.run()

    return _session(cfg, body, starting=starting)


def cmd_deploy(cfg: Config, args: argparse.Namespace, starting: Starting | None = None) -> int:
    """`controlroom deploy`: --follow attaches, --detach leaves the deploy to the server, else it is run here. Its
    command line was checked, and its server begun, by cli/start.py (``starting``)."""
    if args.follow:
        return follow(cfg, args)
    if args.detach:
        from controlroom.cli.server import deploy_detached

        return deploy_detached(cfg, args, starting)
    return deploy(cfg, args, starting)


def cmd_rollback(cfg: Config, args: argparse.Namespace, starting: Starting | None = None) -> int:
    return rollback(cfg, args, starting)
