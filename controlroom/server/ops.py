"""The server's operations on the fleet (deploy, resume, rollback, stage) and every request a client may make:
one object (Operations) and one table of handlers (``Operations.handlers``: op -> Handler, a read or an intent and
who may make it), through which the server (server.py) dispatches each request; what they hold is wire.py's.

Every operation gets a number; when it ends, every attached client is sent wire.ended after the events it caused,
so a headless client following it knows how it ended even when no RolloutFinished came (interrupted, refused by
the hosts' leases, a journal that cannot record). A server whose journal fails exits: it cannot write any more.

A deploy waiting for a decision that no one will give (a halt, or a gate --auto does not pass, with no terminal to
ask) is *parked*: it stays in the server, halted or waiting, and the fleet's lock row says why; `deploy --resume`
goes on with it, `rollback` undoes it, `unlock --force` or a forced deploy abandons it (the server stops driving
it; it stays resumable from the journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError, JournalError, LockedError, UsageError
from controlroom.core.identity import Actor, session_origin
from controlroom.engine import gates
from controlroom.server import protocol as pr
from controlroom.server import views, wire
from controlroom.server.answers import Answers
from controlroom.server.configwatch import LiveConfig
from controlroom.server.metricsfeed import SharedSource

POLICIES = ("operator", "auto", "yes")
BUSY_WAIT = 5.0  # how long a refused request waits for the running operation to say who it is
WATCHERS, OPERATORS = "watchers", "operators"  # who may make a request, by [access]


@dataclass(frozen=True)
class Handler:
    """What the server does for one op. ``run(client, msg)`` returns the reply's fields (or None)."""

    run: Callable[..., Awaitable[dict | None]]
    intent: bool = False  # it acts (operators only; a config it names must be the server's); a read only looks
    drives: bool = False  # the asker drives the operation after it (presence)
    decides: bool = False  # a decision on the running operation: refused while another person drives it (anyway)
    goes_on: bool = False  # it may take a parked deploy on: checked first (overrides), its lock made live again

    @property
    def who(self) -> str:
        return OPERATORS if self.intent else WATCHERS


# ------------------------------------------------------------------------------------------ who
def origin_of(peer: pr.Peer) -> str | None:
    """From the peer's SSH session as sshd set it up, never from the client's own environment."""
    return session_origin(peer.pid)


def _reason(msg: dict) -> str | None:
    """The optional typed reason of an intent (proceed, skip), as sent; the engine cleans and bounds it."""
    reason = msg.get("reason")
    return reason if isinstance(reason, str) else None


class Operations:
    """The fleet's operations in one server, and the handlers of every request.

    ``live``: the config and what is made of it (pool, flags, notifier); ``journal``, ``board``: the server's;
    ``publish``: an event into the numbered stream (host output); ``broadcast``: a message to every attached
    client; ``seq``: the number of the last event sent; ``stop``: ends the server; ``on_end``: called when an
    operation ends (the config's fleet sections that waited for it)."""

    def __init__(self, live: LiveConfig, journal, board, *, publish: Callable[[ev.Event], None],
                 broadcast: Callable[[dict], None], seq: Callable[[], int], stop: Callable[[], None],
                 on_end: Callable[[], None]) -> None:
        self.live = live
        self.journal = journal
        self.board = board
        self._publish = publish
        self._broadcast = broadcast
        self._seq = seq
        self._stop = stop
        self._on_end = on_end
        self.rollout = None
        self.op: asyncio.Task | None = None
        self.op_name = ""
        self.op_no = 0
        # who answers the waits of the deploy that runs: its policy, or an operator
        self.answers = Answers(interval=lambda: self.cfg.metrics.interval,
                               current=lambda r: r is self.rollout and self.busy)
        self._cancel_why = ""
        self._staging = False
        self.metrics = SharedSource()  # the one metrics source: the pane's polls and the gates read it

    def handlers(self, *, attach, status) -> dict[str, Handler]:
        """The one table of requests: op -> Handler. ``attach`` and ``status`` are the server's own (its clients,
        its stream); every other op is one of ours."""
        read, intent = (lambda fn: Handler(fn)), (lambda fn, **kw: Handler(fn, intent=True, **kw))
        return {
            # reads: anyone [access] lets watch
            "attach": read(attach), "status": read(status), "output": read(self._output_of),
            "journal": read(self._journal), "revisions": read(self._revisions),
            "rollback_plan": read(self._rollback_plan), "metrics": read(self._metrics),
            "flags": read(self._flags), "flag_history": read(self._flag_history),
            "flags_verify": read(self._flags_verify), "figures": read(self._figures),
            "record": read(self._record), "history": read(self._history),
            # operations on the fleet, and the decisions on one that runs
            "deploy": intent(self._deploy, drives=True), "resume": intent(self._resume, drives=True, decides=True),
            "rollback": intent(self._rollback, drives=True, decides=True),
            "pause": intent(self._pause, drives=True, decides=True),
            "unpause": intent(self._unpause, drives=True, decides=True, goes_on=True),
            "abort": intent(self._abort, drives=True, decides=True),
            "interrupt": intent(self._interrupt, drives=True, decides=True),
            "proceed": intent(self._proceed, drives=True, decides=True, goes_on=True),
            "retry": intent(self._retry, drives=True, decides=True, goes_on=True),
            "skip": intent(self._skip, drives=True, decides=True, goes_on=True),
            "park": intent(self._park), "gate_check": intent(self._gate_check), "stage": intent(self._stage),
            # the lock, the log, flags and the server itself: beside any operation
            "lock": intent(self._lock), "unlock": intent(self._unlock), "log_add": intent(self._log_add),
            "flag_set": intent(self._flag_set), "flag_dismiss": intent(self._flag_dismiss),
            "stop": intent(self._stop_server),
        }

    @property
    def cfg(self):
        return self.live.cfg

    @property
    def pool(self):
        return self.live.pool

    @property
    def flags(self):
        return self.live.flags

    @property
    def busy(self) -> bool:
        return self.op is not None and not self.op.done()

    @property
    def running(self) -> str:
        """The name of the operation in flight, "" for none."""
        return self.op_name if self.busy else ""

    def before_decision(self, op: str, msg: dict, actor: Actor) -> None:
        """A decision that takes a waiting deploy on: refused first when it may not (overrides), then a parked
        deploy's lock is live again."""
        if self.busy and self.rollout is not None:
            self.rollout.refusal(op, msg.get("host"), msg.get("reason"))  # before the lock
            self._unpark(self.rollout, actor)  # a parked deploy goes on: its lock is live again

    async def close(self) -> None:
        """Stop what runs (it stays resumable), waiting at most 30 s for it to say so; close the metrics source."""
        if self.op is not None and not self.op.done():
            if self.rollout is not None:
                self.rollout.interrupt(Actor("server stop"))  # the server itself, from nowhere but here
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self.op), 30)
        await self.metrics.aclose()

    # ------------------------------------------------------------------------------------------ operations
    def _run(self, name: str, coro, r=None) -> asyncio.Task:
        async def go():
            try:
                return await coro
            except ControlroomError as e:
                print(f"controlroom server: {name}: {e}", file=sys.stderr, flush=True)
                raise

        self.op_no += 1
        no = self.op_no
        self._cancel_why = ""
        self.op_name = name
        self.op = asyncio.ensure_future(go())
        rid = r.id if r is not None else 0
        self.op.add_done_callback(lambda t: self._ended(t, no, name, r.id if r is not None else rid))
        return self.op

    def _ended(self, t: asyncio.Task, no: int, name: str, rid: int) -> None:
        error, code = None, 0
        if t.cancelled():
            error, code = self._cancel_why or f"the {name} was stopped in the server", 1
        elif (e := t.exception()) is not None:
            error = str(e) if isinstance(e, ControlroomError) else f"internal error: {type(e).__name__}: {e}"
            code = getattr(e, "exit_code", 1)
            if isinstance(e, JournalError):
                # nothing can be recorded any more: this server goes; the next client starts one on the new journal
                print(f"controlroom server: exiting: {e}", file=sys.stderr, flush=True)
                asyncio.get_running_loop().call_soon(self._stop)
        self._broadcast(wire.ended(no=no, name=name, rollout_id=rid, error=error, exit=code))
        self._on_end()

    def _parked_here(self) -> bool:
        """The operation running here is a deploy waiting for a decision, its lock parked (nobody drives it)."""
        lock = self.journal.lock() if self.journal else None
        r = self.rollout
        return bool(self.busy and r is not None and lock is not None and lock.parked and lock.rollout_id == r.id)

    async def _drop(self, why: str) -> None:
        """Stop driving the operation here; what the journal and the lock row say stays (it stays resumable)."""
        if self.op is not None and not self.op.done():
            self._cancel_why = why
            self.op.cancel()
            with contextlib.suppress(BaseException):
                await self.op

    async def _claim(self, *, force: bool = False) -> None:
        """Return once no operation runs here (a forced deploy abandons a parked one), or raise LockedError
        naming the holder, in the words the journal's lock uses. Nothing may await between this and _run."""
        deadline = time.monotonic() + BUSY_WAIT
        while self.busy:
            r = self.rollout
            lock = self.journal.lock()
            if self._parked_here():
                if force:
                    await self._drop(f"deploy #{r.id} abandoned by a forced deploy")
                    continue
                raise LockedError(f"the fleet is locked: {lock.describe()}; to deploy anyway use --force --reason TEXT")
            if lock is not None and lock.live and r is not None and lock.rollout_id == r.id:
                raise LockedError(f"the fleet is locked by {lock.describe()}")
            if time.monotonic() > deadline:
                raise LockedError(f"the fleet is busy: {self.op_name} of deploy #{r.id if r else '?'} runs in "
                                  "the server")
            await asyncio.sleep(0.02)  # the operation is an instant from saying who it is

    async def _metrics(self, c, msg: dict) -> dict:
        points = msg.get("points")
        return await self.metrics.snapshot(self.cfg.metrics,
                                           points if isinstance(points, int) and 0 < points <= 1000 else 60)

    def _reply(self, r) -> dict:
        """What a follower needs: the operation's number, and every host as it stands at event number seq."""
        return wire.started(rollout_id=r.id, revision=r.revision, op=self.op_no, seq=self._seq(),
                            hosts={n: [h.phase, h.steps_done, h.state] for n, h in r.hosts.items()})

    async def _started(self, r, task: asyncio.Task, first=ev.RolloutStarted) -> dict:
        """Wait until the operation took the fleet (its first event) or failed to: the reply says which."""
        seen = asyncio.Event()
        r.subscribe(lambda e: isinstance(e, first) and seen.set())
        waiter = asyncio.ensure_future(seen.wait())
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not seen.is_set() and task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()
        return self._reply(r)

    @staticmethod
    def _policy_of(msg: dict) -> str:
        policy = msg.get("policy", "operator")
        if policy not in POLICIES:
            raise UsageError(f"policy must be one of {', '.join(POLICIES)}")
        return policy

    def _loaded(self, actor: Actor, policy: str = "operator"):
        from controlroom.engine.rollout import Rollout

        r = self._wired(Rollout.load(self.cfg, self.pool, self.journal, actor=actor, gates=self._gate_keeper(),
                                     confirm="config" if policy == "operator" else "none"))
        self.answers.apply(r, policy)
        return r

    def _unpark(self, r, actor: Actor) -> None:
        """The deploy goes on: its lock is live again, held by this server."""
        lock = self.journal.lock()
        if lock is not None and lock.parked and lock.rollout_id == r.id:
            self.journal.take_lock(actor, f"deploying {r.revision}", rollout_id=r.id)

    # ------------------------------------------------------------------------------------------ operations
    async def _deploy(self, c, msg: dict) -> dict:
        from controlroom.engine import stage
        from controlroom.sources import git as release

        policy = self._policy_of(msg)
        confirm = str(msg.get("confirm") or "config")
        if confirm not in ("config", "all"):
            raise UsageError("confirm must be config or all")
        revision = msg.get("revision")
        if revision is not None:
            release.validate_revision(str(revision))
        else:
            revision = await asyncio.to_thread(release.staged_revision, self.cfg)
        # resolved once, here: an unknown revision is refused before any host is touched, and a tag moved during
        # the deploy changes nothing
        commit = await asyncio.to_thread(release.pin, self.cfg, str(revision))
        force = str(msg.get("force_reason") or "").strip() or None
        stage.require_staged(self.cfg, self.journal, str(revision), commit, c.actor, force)
        await self._claim(force=bool(force))
        # the commit goes into the new rollout's row: nothing is written here once the deploy runs, where a write
        # that failed (a full disk) would be this reply's error instead of the deploy's, its number and hint lost
        r = self._engine(revision=str(revision), actor=c.actor,
                         confirm=confirm if policy == "operator" else "none", force_reason=force, commit=commit)
        self.answers.apply(r, policy)
        self.rollout = r
        return await self._started(r, self._run("deploy", r.run(), r))

    async def _stage(self, c, msg: dict) -> dict:
        """Run [release] stage for a revision (default: the staged one), its output streamed to the asker as
        ``{"op": "stage_output", "line": ...}`` before the reply. One stage at a time; beside any deploy."""
        from controlroom.engine import stage
        from controlroom.sources import git as release

        if msg.get("config"):
            self.live.require_same(msg["config"])  # the stage command is the server's config's, never a client's
        revision = msg.get("revision")
        if revision is not None:
            release.validate_revision(str(revision))
        else:
            revision = await asyncio.to_thread(release.staged_revision, self.cfg)
        commit = await asyncio.to_thread(release.pin, self.cfg, str(revision))
        stage.command_for(self.cfg, str(revision))  # one is configured
        if self._staging:
            raise LockedError("a stage already runs in the server; wait for it to end")
        self._staging = True
        try:
            res = await stage.run_stage(self.cfg, self.journal, str(revision), commit, c.actor,
                                        lambda line: c.put(wire.stage_output(line)), pool=self.pool)
        finally:
            self._staging = False
        deadline = time.monotonic() + 5  # the output goes out before the reply (which is written directly)
        while not c.queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return {"revision": res.revision, "commit": res.commit, "staged": res.ok, "seconds": res.seconds,
                "reason": res.reason}

    async def _resume(self, c, msg: dict) -> dict:
        policy = self._policy_of(msg)
        by = c.actor
        r = self.rollout
        if self.busy and r is not None and self.op_name in ("deploy", "resume") and r.status in (ev.R_HALTED,
                                                                                                ev.R_WAITING):
            # it waits here for a decision: retry the failed hosts of its phase, or pass the gate as now asked
            self.answers.policy = policy
            self._unpark(r, by)
            retried = []
            if r.status == ev.R_HALTED:
                retried = [h.name for h in r.hosts.values() if h.state == ev.FAILED and h.phase == r.phase_index]
                for h in retried:
                    r.retry(h, by)
            gate = self.board.gate if r.status == ev.R_WAITING else None
            if gate is not None and (self.answers.passes(gate) or await gates.recheck(r, gate)):
                r.proceed(by)
                gate = None
            return {**self._reply(r), "retried": retried, "waiting": ev.to_wire(gate) if gate else None}
        await self._claim()
        r = self._loaded(by, policy)
        self.rollout = r
        return await self._started(r, self._run("resume", r.resume_run(retry_failed=True), r))

    async def _gate_check(self, c, msg: dict) -> dict:
        """Check once more the gate a deploy waits at, having failed (after a kill switch was flipped, say). When
        it holds, the deploy waits for the operator only (a new GateWaiting everyone sees; `g` goes on), or goes on
        by itself when its policy passes such waits. ``quiet``: the verdict goes to the deploy log only when it
        holds (a client polling while the metrics turn). Replies ``{"passed": bool, "lines": [...]}``."""
        r = self._current()
        gate = self.board.gate
        keeper = gates.keeper_of(r)
        if r.status != ev.R_WAITING or gate is None or gate.kind != ev.GATE_FAILED or keeper is None \
                or not 0 < gate.phase <= len(r.phases):
            raise ControlroomError("no deploy waits at a failed gate: there is nothing to check again")
        ok, lines, verdicts = await keeper.recheck(r.phases[gate.phase - 1], c.actor, log=not msg.get("quiet"))
        if ok and self.board.gate is gate and r.status == ev.R_WAITING:
            held = keeper.held(gate, lines, verdicts)
            if self.answers.passes(held):
                self._unpark(r, c.actor)
            keeper.announce(held)  # the engine still waits for proceed; this says why, now (a policy may answer it)
        return {"passed": ok, "lines": lines}

    async def _rollback(self, c, msg: dict) -> dict:
        by = c.actor
        r = self.rollout
        if self.busy and self.op_name == "rollback":
            await self._claim()  # one rollback at a time: the second is told who runs the first
        if self.busy and r is not None:
            if self._parked_here():
                await self._drop(f"deploy #{r.id} halted; {by.user} rolls it back")
            else:
                r.abort(by)
                with contextlib.suppress(BaseException):
                    await asyncio.shield(self.op)
        await self._claim()
        if r is None or r.status not in ev.ROLLOUT_FINAL or r.cfg is not self.cfg:
            r = self._loaded(by)  # as the journal has it, with the server's config as it stands
            self.rollout = r
        targets = len(r.rollback_targets())
        if not targets:
            raise ControlroomError(f"deploy #{r.id} of {r.revision}: no host to roll back")
        task = self._run("rollback", r.rollback(by), r)
        return {**await self._started(r, task, first=ev.OperatorAction), "targets": targets}

    async def _park(self, c, msg: dict) -> dict:
        """Nobody will answer this deploy's question (no terminal): once no host is in flight, keep the fleet
        locked for it with the reason in the lock row. It stays halted (or waiting) in the server."""
        r = self._current()
        while self.busy and any(h.state in ev.IN_FLIGHT for h in r.hosts.values()):
            await asyncio.sleep(0.02)  # a halt lets the hosts in flight finish
        b = self.board
        if not self.busy or r is not self.rollout:
            return {"parked": None}
        after = "`controlroom deploy --resume` or `controlroom rollback`"
        if r.status == ev.R_HALTED and b.halted is not None:
            reason = f"{r.revision} halted in {b.halted.name} ({', '.join(b.halted.failed)} failed): {after}"
        elif r.status == ev.R_WAITING and b.gate is not None:
            what = f"at gate {' and '.join(b.gate.failed)}" if b.gate.failed else "for the operator"
            reason = f"{r.revision} waits {what} before {b.gate.name}: {after}"
        else:
            return {"parked": None}  # it went on meanwhile
        self.journal.park_lock(r.id, reason)
        return {"parked": reason}

    async def _interrupt(self, c, msg):
        if self.busy and self.op_name == "rollback":
            r = self.rollout
            await self._drop(f"rollback of deploy #{r.id if r else '?'} interrupted: the hosts in flight were "
                             "stopped; `controlroom rollback` again finishes it")
            return
        self._current().interrupt(c.actor)

    async def _unlock(self, c, msg):
        force = bool(msg.get("force"))
        if force and self._parked_here():
            await self._drop(f"deploy #{self.rollout.id} abandoned: {c.peer.user} unlocked the fleet")
        old = self.journal.release_lock(c.actor, force=force)
        return {"was": old.describe() if old else None}

    # ------------------------------------------------------------------------------------------ reads
    async def _output_of(self, c, msg: dict) -> dict:
        return views.host_output(self.rollout, str(msg.get("host", "")), self._seq())

    async def _journal(self, c, msg: dict) -> dict:
        since = msg.get("since")
        return views.journal_reply(self.journal, since if isinstance(since, int) else 0)

    async def _figures(self, c, msg: dict) -> dict:
        """The talk's line of the last week from the record (views.figures_line), in a thread: it runs git."""
        return await asyncio.to_thread(views.figures_line, self.journal.store, self.cfg)

    async def _record(self, c, msg: dict) -> dict:
        """A page of a deploy's record (the latest deploy's without ``deploy``), for the app's timeline."""
        r = self.rollout
        live = r.id if self.busy and r is not None else None
        return views.record_page(self.journal, self.cfg, msg.get("deploy"), int(msg.get("after") or 0),
                                 int(msg.get("limit") or wire.RECORD_PAGE), live)

    async def _history(self, c, msg: dict) -> dict:
        return views.history_reply(self.journal, msg.get("since"), int(msg.get("limit") or wire.HISTORY_MAX))

    async def _revisions(self, c, msg: dict) -> dict:
        return await views.revisions(self.cfg, self.journal, self.pool)

    async def _rollback_plan(self, c, msg: dict) -> dict:
        from controlroom.engine.rollout import Rollout

        r = self.rollout  # the one a rollback would reach, as _rollback picks it
        if r is None or (not self.busy and r.status not in ev.ROLLOUT_FINAL):
            r = Rollout.load(self.cfg, self.pool, self.journal, actor=c.actor)
        return views.rollback_plan(r)

    # ------------------------------------------------------------------------------------------ intents
    def _engine(self, **kw):
        from controlroom.engine.rollout import Rollout

        return self._wired(Rollout(self.cfg, self.pool, self.journal, gates=self._gate_keeper(), **kw))

    def _gate_keeper(self):
        """What checks a deploy's gates against [metrics] during the bake (None when no phase has a gate): it asks
        the server's one metrics source, the one the metrics pane reads."""
        settings = self.cfg.metrics
        return gates.keeper_for(self.cfg, self.journal, source=lambda: self.metrics.kept(settings))

    def _wired(self, r):
        """An engine the server drives: its host output joins the numbered stream."""
        r.subscribe(self._output)
        return r

    def _output(self, e: ev.Event) -> None:
        if type(e) is ev.HostOutput:
            self._publish(e)

    def _current(self):
        if self.rollout is None or not self.busy:
            raise ControlroomError("no deploy runs in the server")
        return self.rollout

    async def _pause(self, c, msg):
        self._current().pause(c.actor)

    async def _unpause(self, c, msg):
        self._current().resume(c.actor)

    async def _abort(self, c, msg):
        self._current().abort(c.actor)

    async def _proceed(self, c, msg):
        # past a gate that does not hold or an exceeded failure budget only with a typed reason (the engine says)
        self._current().proceed(c.actor, reason=_reason(msg))

    async def _retry(self, c, msg):
        r = self.rollout
        if r is not None and not self.busy and r.status == ev.R_FAILED:
            self._run("rerun", r.rerun([str(msg.get("host"))], c.actor))
            return
        self._current().retry(str(msg.get("host")), c.actor)

    async def _skip(self, c, msg):
        self._current().skip(str(msg.get("host")), c.actor, reason=_reason(msg))

    async def _lock(self, c, msg):
        text = str(msg.get("message", "")).strip()
        if not text:
            raise UsageError("lock needs a message: say why (it is what the team reads)")
        lock = self.journal.take_lock(c.actor, text, takeover=bool(msg.get("takeover")))
        return {"describe": lock.describe()}

    async def _log_add(self, c, msg):
        text = str(msg.get("message", "")).strip()
        if not text:
            raise UsageError("log add needs a message")
        return {"line": self.journal.add_log(c.actor, "NOTE", text).line()}

    # flags: none of these takes the fleet lock or waits for a running deploy (flagpush.py)
    async def _flags(self, c, msg):
        return self.flags.state()

    async def _flag_history(self, c, msg):
        return {"changes": self.flags.history.changes(msg.get("flag") or None, int(msg.get("limit") or 50))}

    async def _flags_verify(self, c, msg):
        return {"hosts": await self.flags.verify(msg.get("hosts"))}

    async def _flag_set(self, c, msg):
        expect = msg.get("expect")
        return await self.flags.change(str(msg.get("flag", "")), str(msg.get("value", "")), c.actor,
                                       reason=str(msg.get("reason") or ""), hosts=msg.get("hosts"),
                                       expect=expect if isinstance(expect, int) else None)

    async def _flag_dismiss(self, c, msg):
        return {"dismissed": self.flags.dismiss(list(msg.get("hosts") or []))}

    async def _stop_server(self, c, msg):
        if self.busy and not msg.get("force"):
            raise ControlroomError(f"a {self.op_name} runs in the server; `controlroom server stop --force` "
                                   "interrupts it (it stays resumable)")
        asyncio.get_running_loop().call_soon(self._stop)
