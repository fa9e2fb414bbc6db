"""The operations the server runs on the fleet (deploy, resume, rollback) and the intents that start, park, drop
or interrupt them: a mixin of Server (server.py).

Every operation gets a number; when it ends, every attached client is sent ``{"op": "ended", "no": N, "name":
..., "rollout_id": ..., "error": line or None, "exit": code}`` after the events it caused, so a headless client
following it knows how it ended even when no RolloutFinished came (interrupted, refused by the hosts' leases, a
journal that cannot record). A server whose journal fails exits: it cannot write anything any more.

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
import traceback

from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError, JournalError, LockedError, UsageError
from controlroom.core.identity import session_origin
from controlroom.engine import gates
from controlroom.server import configwatch as serverconfig
from controlroom.server import protocol as pr

POLICIES = ("operator", "auto", "yes")
BUSY_WAIT = 5.0  # how long a refused request waits for the running operation to say who it is


class OpsMixin:
    """Needs from Server: cfg, config_file, config_notes, journal, pool, flags, notifier, channels, board, clients,
    rollout, op, op_name, busy, seq, stop()."""

    op_no = 0
    policy = "operator"
    _cancel_why = ""

    # ------------------------------------------------------------------------------------------ who and where
    @staticmethod
    def origin_of(peer: pr.Peer) -> str | None:
        """From the peer's SSH session as sshd set it up, never from the client's own environment."""
        return session_origin(peer.pid)

    # ------------------------------------------------------------------------------------------ the config
    _pending_cfg = None  # a config read while an operation ran, whose fleet sections wait for its end

    def check_config(self, named: str) -> None:
        """The client names the config it was given: refused unless it is the server's own file."""
        self.config_file.require_same(named)

    async def reload_config(self) -> list[str]:
        """When the config file changed, read it and apply it (serverconfig.py); the lines said about it."""
        from controlroom.core.errors import ConfigError

        cf = self.config_file
        if not cf.changed():
            return []
        try:
            new = cf.load()
        except ConfigError as e:
            return self._say_config([f"{e}: not reloaded; the server goes on with the config it had"])
        old = self.cfg
        sections = serverconfig.changed_sections(old, new)
        notes = []
        if "state" in sections:
            new = serverconfig.keep(new, old, ["state"])
            notes.append(f"{cf.path}: [state] dir changed: this server stays with {old.state.dir}; "
                         "`controlroom server stop`, and the next command starts one for the new one")
        waiting = [s for s in sections if s in serverconfig.FLEET]
        if waiting and self.busy:
            self._pending_cfg = new
            new = serverconfig.keep(new, old, serverconfig.FLEET)
            notes.append(f"{cf.path}: {', '.join(f'[{s}]' for s in waiting)} changed while a {self.op_name} runs: "
                         f"{'they apply' if len(waiting) > 1 else 'it applies'} when it ends (or `controlroom "
                         "server stop --force` now, it stays resumable)")
        else:
            self._pending_cfg = None
        now = [s for s in sections if s != "state" and not (self.busy and s in serverconfig.FLEET)]
        await self._apply_config(old, new)
        if now:
            notes.append(f"{cf.path}: reloaded; {', '.join(f'[{s}]' for s in now)} took effect")
        return self._say_config(notes)

    async def _apply_config(self, old, new) -> None:
        from controlroom.engine.flagpush import FlagService
        from controlroom.fleet.ssh import SSHPool

        self.cfg = new
        fleet = new.hosts != old.hosts or new.ssh != old.ssh
        if fleet:  # never while an operation runs (reload_config kept them)
            pool, self.pool = self.pool, SSHPool(new.ssh, new.hosts)
            await pool.close()
            self.board.plan([(p.name, p.hosts, p.max_failed, p.auto) for p in new.phases])
        if fleet or new.flags != old.flags:
            await self.flags.close()
            self.flags = FlagService(new, self.pool, self.journal)
            self.flags.start()
        if new.notify != old.notify:
            await self.notifier.close()
            self.notifier = self._make_notifier(new)

    def _apply_pending(self) -> None:
        """An operation ended: the fleet sections that waited for it take effect."""
        new, self._pending_cfg = self._pending_cfg, None
        if new is None:
            return

        async def go():
            await self._apply_config(self.cfg, new)
            self._say_config([f"{self.config_file.path}: reloaded; the operation ended, "
                              f"{', '.join(f'[{s}]' for s in serverconfig.FLEET)} took effect"])

        asyncio.ensure_future(go())

    def _make_notifier(self, cfg):
        """Chat: tails the deploy log; a channel's failure goes to every attached client (the app's status line)."""
        from controlroom.server.notify import Notifier, channels_of

        self.channels = [serverconfig.Watched(c) for c in channels_of(self.config_file.notify_settings(cfg))]
        notifier = Notifier(self.journal.path, self.channels, on_failure=self._committed)
        notifier.start()
        return notifier

    async def _config_watch(self) -> None:
        while True:
            await asyncio.sleep(serverconfig.POLL)
            try:
                await self.reload_config()
            except Exception:  # a bug of ours: said in the log, and the server goes on with what it has
                traceback.print_exc()

    def _say_config(self, lines: list[str]) -> list[str]:
        """Into the log and to every attached client (``{"op": "notice", "line": ...}``); kept for `server status`."""
        for line in lines:
            print(f"controlroom server: {line}", file=sys.stderr, flush=True)
            self.config_notes.append(line)
            for c in self.clients:
                if c.attached:
                    c.put({"op": "notice", "line": line})
        return lines

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
                asyncio.get_running_loop().call_soon(self.stop)
        msg = {"op": "ended", "no": no, "name": name, "rollout_id": rid, "error": error, "exit": code}
        for c in self.clients:
            if c.attached:
                c.put(msg)
        self._apply_pending()

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

    async def _op_metrics(self, c, msg: dict) -> dict:
        """Every series now and over the window (metrics.snapshot), read from the source as asked."""
        from controlroom.sources.metrics import MetricsError, make_source, snapshot

        points = msg.get("points")
        points = points if isinstance(points, int) and 0 < points <= 1000 else 60
        settings = self.cfg.metrics
        # one source kept open between polls (its connections reused: bench/metrics.py, 1.7x -> 1.03x the floor),
        # made again when the config's [metrics] changes
        kept = self._metrics_source
        if kept is None or kept.settings != settings:
            if kept is not None:
                await kept.aclose()
            try:
                kept = make_source(settings)
            except MetricsError:
                kept = None  # snapshot says why, per series
            self._metrics_source = kept
        return await snapshot(settings, points, source=kept)

    def _passes(self, e: ev.GateWaiting) -> bool:
        # only a wait for the operator: a gate that failed or could not be checked is never passed by --yes
        return e.kind == ev.GATE_OPERATOR and self.policy in ("yes", "auto")

    def _apply_policy(self, r, policy: str) -> None:
        """Answer the engine's waits as the deploy was asked to (an operator, --auto or --yes), even with no
        client attached. A resume may change the policy of the deploy it goes on with."""
        self.policy = policy
        loop = asyncio.get_running_loop()

        def on(e: ev.Event) -> None:
            if isinstance(e, ev.GateWaiting) and r is self.rollout and self._passes(e):
                loop.call_soon(r.proceed, r.actor)
            elif isinstance(e, ev.GateWaiting) and e.kind == ev.GATE_FAILED and gates.keeper_of(r) is not None \
                    and (self._gate_watch is None or self._gate_watch.done()):
                self._gate_watch = loop.create_task(self._watch_gate(r, e))

        r.subscribe(on)

    _gate_watch: asyncio.Task | None = None

    async def _watch_gate(self, r, failed: ev.GateWaiting) -> None:
        """While a deploy an operator drives waits at a gate that did not hold, check it again every interval so
        that what every client shows is what holds now: once it holds, the wait is for the operator only (g goes
        on, the PASSED verdict in the log); should it fail again, it is a failed gate again (a reason to pass it).
        Headless policies keep their wait as it is (a parked deploy goes on only with `deploy --resume`)."""
        keeper, phase = gates.keeper_of(r), r.phases[failed.phase - 1]
        while True:
            await asyncio.sleep(max(0.5, self.cfg.metrics.interval))
            w = r.waiting
            if w is None or w.phase != failed.phase or r is not self.rollout or not self.busy:
                return  # it went on, or ended
            if self.policy != "operator":
                continue
            # the log gets the verdicts when they change: PASSED once it holds, FAILED should it fail again
            ok, lines, verdicts = await keeper.recheck(phase, r.actor, log=False, log_ok=w.kind == ev.GATE_FAILED)
            if r.waiting is not w:
                continue  # answered or checked by someone meanwhile
            if ok and w.kind == ev.GATE_FAILED:
                keeper.announce(keeper.held(failed, lines, verdicts))
            elif not ok and w.kind == ev.GATE_OPERATOR:
                keeper.fails_again(failed, lines, verdicts)

    def _reply(self, r) -> dict:
        """What a follower needs: the operation's number, and every host as it stands at event number seq."""
        return {"rollout_id": r.id, "revision": r.revision, "op": self.op_no, "seq": self.seq,
                "hosts": {n: [h.phase, h.steps_done, h.state] for n, h in r.hosts.items()}}

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

    def _loaded(self, actor, policy: str = "operator"):
        from controlroom.engine.rollout import Rollout

        r = self._wired(Rollout.load(self.cfg, self.pool, self.journal, actor=actor, gates=self._gate_keeper(),
                                     confirm="config" if policy == "operator" else "none"))
        self._apply_policy(r, policy)
        return r

    def _unpark(self, r, actor) -> None:
        """The deploy goes on: its lock is live again, held by this server."""
        lock = self.journal.lock()
        if lock is not None and lock.parked and lock.rollout_id == r.id:
            self.journal.take_lock(actor, f"deploying {r.revision}", rollout_id=r.id)

    # ------------------------------------------------------------------------------------------ intents
    async def _op_deploy(self, c, msg: dict) -> dict:
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
        r = self._engine(revision=str(revision), actor=c.actor,
                         confirm=confirm if policy == "operator" else "none", force_reason=force)
        self._apply_policy(r, policy)
        self.rollout = r
        reply = await self._started(r, self._run("deploy", r.run(), r))
        if commit and r.id:
            self.journal.pin_commit(r.id, commit)
        return reply

    _staging = False
    _metrics_source = None  # the metrics source the pane's polls share (see _op_metrics)

    async def _op_stage(self, c, msg: dict) -> dict:
        """Run [release] stage for a revision (default: the staged one), its output streamed to the asker as
        ``{"op": "stage_output", "line": ...}`` before the reply. One stage at a time; beside any deploy."""
        from controlroom.engine import stage
        from controlroom.sources import git as release

        if msg.get("config"):
            self.check_config(msg["config"])  # the stage command is the server's config's, never a client's
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
                                        lambda line: c.put({"op": "stage_output", "line": line}), pool=self.pool)
        finally:
            self._staging = False
        deadline = time.monotonic() + 5  # the output goes out before the reply (which is written directly)
        while not c.queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return {"revision": res.revision, "commit": res.commit, "staged": res.ok, "seconds": res.seconds,
                "reason": res.reason}

    async def _op_resume(self, c, msg: dict) -> dict:
        policy = self._policy_of(msg)
        by = c.actor
        r = self.rollout
        if self.busy and r is not None and self.op_name in ("deploy", "resume") and r.status in (ev.R_HALTED,
                                                                                                ev.R_WAITING):
            # it waits here for a decision: retry the failed hosts of its phase, or pass the gate as now asked
            self.policy = policy
            self._unpark(r, by)
            retried = []
            if r.status == ev.R_HALTED:
                retried = [h.name for h in r.hosts.values() if h.state == ev.FAILED and h.phase == r.phase_index]
                for h in retried:
                    r.retry(h, by)
            gate = self.board.gate if r.status == ev.R_WAITING else None
            if gate is not None and (self._passes(gate) or await gates.recheck(r, gate)):
                r.proceed(by)
                gate = None
            return {**self._reply(r), "retried": retried, "waiting": ev.to_wire(gate) if gate else None}
        await self._claim()
        r = self._loaded(by, policy)
        self.rollout = r
        return await self._started(r, self._run("resume", r.resume_run(retry_failed=True), r))

    async def _op_gate_check(self, c, msg: dict) -> dict:
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
            if self._passes(held):
                self._unpark(r, c.actor)
            keeper.announce(held)  # the engine still waits for proceed; this says why, now (a policy may answer it)
        return {"passed": ok, "lines": lines}

    async def _op_rollback(self, c, msg: dict) -> dict:
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

    async def _op_park(self, c, msg: dict) -> dict:
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

    async def _op_interrupt(self, c, msg):
        if self.busy and self.op_name == "rollback":
            r = self.rollout
            await self._drop(f"rollback of deploy #{r.id if r else '?'} interrupted: the hosts in flight were "
                             "stopped; `controlroom rollback` again finishes it")
            return
        self._current().interrupt(c.actor)

    async def _op_unlock(self, c, msg):
        force = bool(msg.get("force"))
        if force and self._parked_here():
            await self._drop(f"deploy #{self.rollout.id} abandoned: {c.peer.user} unlocked the fleet")
        old = self.journal.release_lock(c.actor, force=force)
        return {"was": old.describe() if old else None}
