"""Headless `controlroom deploy` and `rollback`: drive the engine and answer its questions, from the terminal or by
--yes/--auto.

Ctrl+C (and SIGTERM, SIGHUP) stops a running deploy at once: the in-flight hosts' commands end on the hosts, those
hosts are recorded as interrupted, and the deploy is left halted with the fleet locked for it, as for any halt. At
a question, Ctrl+C answers it at once: the prompt is read on the event loop, never from a thread that would block.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from controlroom import events as ev
from controlroom.config import Config
from controlroom.deploycli import Printer, _journal
from controlroom.errors import ControlroomError, LockedError, UsageError  # noqa: F401
from controlroom.journal import current_user

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop:
    """What a stop signal does now: cancel the question being asked, interrupt the rollout being driven."""

    def __init__(self) -> None:
        self.signalled: str | None = None
        self.asking: asyncio.Future | None = None
        self.rollout = None
        self.main: asyncio.Task | None = None  # cancelled by a stop signal when there is no rollout to interrupt
        self.user = ""

    def __call__(self, sig: signal.Signals) -> None:
        first = self.signalled is None
        self.signalled = sig.name
        if self.asking is not None and not self.asking.done():
            self.asking.cancel()
        if self.rollout is not None:
            if first:
                print(f"\n{sig.name}: stopping the hosts in flight; the deploy stays halted and resumable",
                      file=sys.stderr, flush=True)
            self.rollout.interrupt(self.user)
        elif self.main is not None:
            self.main.cancel()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self, sig)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def ask(stop: _Stop, question: str) -> str | None:
    """One answer from the terminal, lower-cased; "" at end of input; None when a stop signal came first."""
    loop = asyncio.get_running_loop()
    print(question, end="", flush=True)
    fut: asyncio.Future = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not fut.done():
            fut.set_result(sys.stdin.readline())

    try:
        loop.add_reader(fd, readable)
    except (PermissionError, ValueError, OSError):  # not pollable (a regular file): read it directly
        line = sys.stdin.readline()
        return line.strip().lower()
    stop.asking = fut
    try:
        line = await fut
    except asyncio.CancelledError:
        if stop.signalled:
            print(file=sys.stdout, flush=True)
            return None
        raise
    finally:
        stop.asking = None
        loop.remove_reader(fd)
    return line.strip().lower()


async def _park(rollout, task: asyncio.Task, reason: str) -> None:
    """Stop driving a rollout that waits for a decision: it stays resumable and keeps the fleet locked for it."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    rollout.journal.park_lock(rollout.id, reason)


async def _settle(rollout, task: asyncio.Task, moved: asyncio.Event) -> None:
    """Wait until no host is in flight (a halt lets them finish; cutting them off mid-step helps nobody)."""
    while not task.done() and any(h.state in ev.IN_FLIGHT for h in rollout.hosts.values()):
        moved.clear()
        waiter = asyncio.ensure_future(moved.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()


async def _drive(rollout, start, stop: _Stop, *, interactive: bool, assume_yes: bool, auto: bool) -> int:
    """Run the rollout and answer its questions. Returns the exit code (raises what run() raises)."""
    decisions: asyncio.Queue = asyncio.Queue()
    moved = asyncio.Event()

    def watch(e: ev.Event) -> None:
        if isinstance(e, (ev.GateWaiting, ev.PhaseHalted)):
            decisions.put_nowait(e)
        elif isinstance(e, ev.HostStateChanged):
            moved.set()

    rollout.subscribe(watch)
    stop.rollout = rollout
    task = asyncio.ensure_future(start())
    user = rollout.user
    while not task.done():
        getter = asyncio.ensure_future(decisions.get())
        await asyncio.wait([task, getter], return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            break
        e = getter.result()
        if isinstance(e, ev.GateWaiting):
            if e.kind == ev.GATE_BAKE:
                continue  # the engine goes on by itself once the bake time is out
            if assume_yes or (auto and e.kind == ev.GATE_OPERATOR):
                rollout.proceed(user)
                continue
            if not interactive:  # --auto at a gate that failed or could not be checked
                gates = " and ".join(e.failed) or "?"
                print(f"stopped at a gate before {e.name}: {e.reason}; --auto does not pass a gate that does not "
                      "hold (--yes does); the deploy stays resumable with `controlroom deploy --resume`", flush=True)
                await _park(rollout, task, f"{rollout.revision} waits at gate {gates} before {e.name}: "
                            "`controlroom deploy --resume` or `controlroom rollback`")
                break
            answer = await ask(stop, f"Start {e.name}? [y]es / [a]bort: ")
            if answer is None:
                continue  # a stop signal: the rollout was interrupted, run() ends with it
            if answer in ("y", "yes"):
                rollout.proceed(user)
            else:
                rollout.abort(user)
        elif isinstance(e, ev.PhaseHalted):
            if not interactive:
                await _settle(rollout, task, moved)
                if task.done():
                    break
                print(f"halted in {e.name}; retry the failed hosts with `controlroom deploy --resume`, "
                      "or `controlroom rollback`", flush=True)
                await _park(rollout, task, f"{rollout.revision} halted in {e.name} ({', '.join(e.failed)} failed): "
                            "`controlroom deploy --resume` or `controlroom rollback`")
                break
            await _answer_halt(rollout, e, stop)
    try:
        fin = await task
    except asyncio.CancelledError:
        return 1
    if rollout.status == ev.R_ROLLED_BACK:
        return 1
    return 0 if fin.status == ev.R_DONE else 1


async def _answer_halt(rollout, e: ev.PhaseHalted, stop: _Stop) -> None:
    user = rollout.user
    while True:
        answer = await ask(stop, "[r]etry failed hosts, [s]kip them, [p]roceed anyway, [a]bort, roll[b]ack? ")
        if answer is None:
            return
        failed = [h for h in rollout.phases[e.phase].hosts if rollout.hosts[h].state == ev.FAILED]
        if answer in ("r", "retry"):
            for h in failed:
                rollout.retry(h, user)
        elif answer in ("s", "skip"):
            for h in failed:
                rollout.skip(h, user)
        elif answer in ("p", "proceed"):
            rollout.proceed(user)
        elif answer in ("a", "abort"):
            rollout.abort(user)
        elif answer in ("b", "rollback"):
            await rollout.rollback(user)
        else:
            continue
        return


def _check_args(args: argparse.Namespace, interactive: bool) -> None:
    from controlroom import release

    if args.force and not (args.reason and args.reason.strip()):
        raise UsageError("--force needs --reason TEXT: say why, it goes into the deploy log")
    if args.reason and not args.force:
        raise UsageError("--reason goes with --force")
    if not interactive and not (args.auto or args.yes):
        raise UsageError("no terminal to ask at the gates: pass --auto (go on by itself) or --yes (answer yes)")
    if args.revision is not None:
        release.validate_revision(args.revision)


def deploy(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom import release
    from controlroom.rollout import Rollout
    from controlroom.ssh import SSHPool, raise_nofile_limit

    interactive = sys.stdin.isatty()
    _check_args(args, interactive)
    user = current_user()
    warning = raise_nofile_limit(len(cfg.hosts))
    if warning:
        print(warning, file=sys.stderr)
    journal = _journal(cfg)
    stop = _Stop()
    stop.user = user

    async def go() -> int:
        stop.install()
        async with SSHPool(cfg.ssh, cfg.hosts) as pool:
            confirm = "none" if args.auto or args.yes else "all"
            if args.resume:
                rollout = Rollout.load(cfg, pool, journal, user=user, confirm=confirm)
                rollout.subscribe(Printer(rollout))

                def run():  # a resume retries the failed hosts of this and earlier phases, once it holds the deploy
                    return rollout.resume_run(retry_failed=True)
            else:
                revision = args.revision or release.staged_revision(cfg)
                rollout = Rollout(cfg, pool, journal, revision=revision, user=user, confirm=confirm,
                                  force_reason=args.reason if args.force else None)
                lock = journal.lock()
                if lock and (lock.live or (not lock.stale and not args.force)):
                    # say so before asking anything; run() checks again, atomically, when it takes the lock
                    hint = "; to deploy anyway use --force --reason TEXT" if not lock.live else ""
                    # the same words as take_lock's, whichever check the second of two deploys runs into
                    what = f" by {lock.describe()}" if lock.live else f": {lock.describe()}{hint}"
                    raise LockedError(f"the fleet is locked{what}")
                if interactive and not args.yes:
                    plan = ", ".join(f"{p.name} {len(p.hosts)}" for p in rollout.phases)
                    answer = await ask(stop, f"Deploy {revision} to {len(rollout.hosts)} hosts ({plan})? [y/N] ")
                    if answer not in ("y", "yes"):
                        print("not deploying")
                        return 130 if answer is None else 1
                rollout.subscribe(Printer(rollout))
                run = rollout.run
            return await _drive(rollout, run, stop, interactive=interactive, assume_yes=args.yes, auto=args.auto)

    return asyncio.run(go())


def rollback(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom.rollout import Rollout
    from controlroom.ssh import SSHPool

    interactive = sys.stdin.isatty()
    if not interactive and not args.yes:
        raise UsageError("no terminal to confirm the rollback: pass --yes")
    user = current_user()
    journal = _journal(cfg)
    stop = _Stop()

    async def go() -> int:
        stop.install()
        async with SSHPool(cfg.ssh, cfg.hosts) as pool:
            rollout = Rollout.load(cfg, pool, journal, user=user)
            lock = journal.lock()
            if lock and lock.rollout_id == rollout.id and lock.live:
                raise LockedError(f"deploy #{rollout.id} is still running ({lock.describe()}); abort it there first")
            targets = rollout.rollback_targets()
            if not targets:
                print(f"deploy #{rollout.id} of {rollout.revision}: no host to roll back")
                return 0
            if not args.yes:
                answer = await ask(stop, f"Roll back {rollout.revision} on {len(targets)} hosts (done, failed after "
                                   "a step, or in flight) to their previous revision? [y/N] ")
                if answer not in ("y", "yes"):
                    print("not rolling back")
                    return 130 if answer is None else 1
            rollout.subscribe(Printer(rollout))
            stop.main = asyncio.current_task()
            try:
                fin = await rollout.rollback(user)
            except asyncio.CancelledError:
                if not stop.signalled:
                    raise
                raise ControlroomError(f"rollback of deploy #{rollout.id} interrupted ({stop.signalled}): the hosts "
                                       "in flight were stopped; `controlroom rollback` again finishes it") from None
            return 0 if fin.failed == 0 else 1

    return asyncio.run(go())
