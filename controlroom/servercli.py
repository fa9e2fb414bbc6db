"""`controlroom serve`, `controlroom server status|stop`, and the deploy commands that go through the server:
`deploy --detach` (start it there and return) and `deploy --follow` (watch the deploy the server runs)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

from controlroom import events as ev
from controlroom.config import Config
from controlroom.errors import ControlroomError, UsageError
from controlroom.text import LINE_LIMIT, clean


def add_parsers(sub, common) -> None:
    s = sub.add_parser("serve", parents=[common], help="run the control-room server in the foreground (systemd)")
    s.add_argument("--idle", type=float, default=600.0, metavar="SECONDS",
                   help="exit after this long with no operation and no client (default 600; 0 never)")
    s.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    sv = sub.add_parser("server", parents=[common], help="the server of this state directory: status | stop")
    sv.add_argument("action", choices=("status", "stop"))
    sv.add_argument("--force", action="store_true", help="stop even while an operation runs (it stays resumable)")


def cmd_serve(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom.server import serve

    if args.idle < 0:
        raise UsageError("--idle must be 0 (never) or a number of seconds")
    return asyncio.run(serve(cfg, idle=args.idle or float("inf"), quiet=args.quiet))


def cmd_server(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom.client import NoServer, connect

    async def go() -> int:
        try:
            c = await connect(cfg, start=False)
        except NoServer as e:
            print(f"{e}")
            return 1 if args.action == "status" else 0
        try:
            if args.action == "status":
                st = await c.request("status")
                since = time.strftime("%Y-%m-%d %H:%M", time.localtime(st["since"]))
                what = f"; {st['busy']} of deploy #{st['rollout_id']} ({st['status']})" if st["busy"] else ""
                conns = f" ({st['connections']} connections of at most {st['max_connections']})" \
                    if "connections" in st else ""
                print(f"server pid {st['pid']} since {since}, {st['clients']} clients{conns}{what}")
                if st.get("config"):
                    print(clean(f"config: {st['config']}", LINE_LIMIT))
                channels = st.get("channels")
                if channels is not None:
                    print("chat: none configured ([notify])" if not channels else "chat:")
                    for line in channels:
                        print(clean(f"  {line}", LINE_LIMIT))
                for line in st.get("notes") or []:
                    print(clean(line, LINE_LIMIT))
                return 0
            await c.request("stop", force=args.force)
            await asyncio.wait_for(c.closed.wait(), 60)
            print("server stopped")
            return 0
        finally:
            await c.close()

    return asyncio.run(go())


# --------------------------------------------------------------------------------------------- deploy via the server


def policy_of(args: argparse.Namespace) -> str:
    return "yes" if args.yes else "auto" if args.auto else "operator"


def deploy_detached(cfg: Config, args: argparse.Namespace) -> int:
    """`deploy --detach`: the server starts the deploy; print its id and return at once."""
    from controlroom.client import connect

    async def go() -> int:
        c = await connect(cfg)
        try:
            if args.resume:
                reply = await c.request("resume", policy=policy_of(args))
            else:
                reply = await c.request("deploy", revision=args.revision, policy=policy_of(args),
                                        force_reason=args.reason if args.force else None)
            print(f"deploy #{reply['rollout_id']} runs in the server (pid {c.hello.get('pid')}); "
                  "`controlroom deploy --follow` follows it, `controlroom` shows it")
            return 0
        finally:
            await c.close()

    return asyncio.run(go())


class Follower:
    """Prints the server's deploy as it goes, from its snapshot and numbered events; knows when it is over."""

    def __init__(self, out=sys.stdout) -> None:
        self.out = out
        self.seq = 0
        self.status: str | None = None
        self.finished: dict | None = None
        self.halted: dict | None = None

    def say(self, text: str) -> None:
        print(clean(text, LINE_LIMIT), file=self.out, flush=True)

    def snapshot(self, snap: dict) -> None:
        self.seq = snap["seq"]
        b = snap["board"]
        self.status = b.get("status")
        counts: dict[str, int] = {}
        for h in b.get("hosts", []):
            counts[h["state"]] = counts.get(h["state"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        self.say(f"deploy #{b.get('rollout_id')} of {b.get('revision')}: {self.status} ({summary})")
        if b.get("finished"):
            self.finished = b["finished"]
        if b.get("halted"):
            self.halted = b["halted"]

    def event(self, msg: dict) -> None:
        seq = msg["seq"]
        if seq != self.seq + 1 and self.seq:
            raise ControlroomError(f"event {seq} came after {self.seq}: events were lost")
        self.seq = seq
        e = ev.from_wire(msg["event"])
        if isinstance(e, ev.RolloutStarted):
            self.say(f"{'resuming' if e.resumed else 'deploying'} {e.previous or '?'} -> {e.revision} "
                     f"(deploy #{e.rollout_id} by {e.user})")
            self.finished = self.halted = None
            self.status = ev.R_RUNNING
        elif isinstance(e, ev.PhaseStarted):
            self.say(f"{e.name}: {e.hosts} hosts")
        elif isinstance(e, ev.HostStateChanged) and e.state == ev.FAILED:
            self.say(f"  {e.host}  failed  {e.reason}")
        elif isinstance(e, ev.PhaseCompleted):
            extra = (f", {e.failed} failed" if e.failed else "") + (f", {e.skipped} skipped" if e.skipped else "")
            self.say(f"{e.name} ... {e.done} done{extra} ({e.seconds:.1f} s)")
        elif isinstance(e, ev.PhaseHalted):
            self.status = ev.R_HALTED
            self.halted = msg["event"]
            self.say(f"HALTED {e.name}: {len(e.failed)} failed, more than max_failed {e.max_failed}: "
                     + ", ".join(e.failed))
        elif isinstance(e, ev.GateWaiting):
            self.status = ev.R_WAITING
            self.say(f"  waiting: {e.reason}")
        elif isinstance(e, ev.RolloutInterrupted):
            self.status = ev.R_HALTED
            self.halted = msg["event"]
            self.say(f"INTERRUPTED by {e.user}: {len(e.hosts)} hosts in flight stopped")
        elif isinstance(e, ev.OperatorAction):
            self.say(f"  {e.user}: {e.action}{' ' + e.host if e.host else ''}")
        elif isinstance(e, ev.RolloutFinished):
            self.status = e.status
            self.finished = msg["event"]
            word = {ev.R_DONE: "DEPLOY OK", ev.R_FAILED: "DEPLOY FAILED", ev.R_ABORTED: "DEPLOY ABORTED",
                    ev.R_ROLLED_BACK: "ROLLBACK DONE"}.get(e.status, e.status)
            extra = (f", {e.failed} failed" if e.failed else "") + (f", {e.skipped} skipped" if e.skipped else "")
            self.say(f"{word} {e.revision}: {e.done} hosts{extra} in {e.seconds:.1f} s")
            for host, reason in e.failed_hosts:
                self.say(f"  {host}  {reason}")

    @property
    def over(self) -> bool:
        return self.finished is not None or self.status == ev.R_HALTED

    def exit_code(self) -> int:
        if self.finished is not None:
            return 0 if self.finished.get("status") == ev.R_DONE else 1
        return 1


def follow(cfg: Config, args: argparse.Namespace) -> int:
    """`deploy --follow`: attach to the server and print the deploy until it ends (or halts); exit with its result.
    Ctrl+C, a closed terminal or a closed pipe detaches: the deploy goes on in the server."""
    from controlroom.client import connect

    async def go() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        c = await connect(cfg, start=False, read_only=True)
        f = Follower()
        try:
            await c.request("attach")
            while not f.over:
                getter = asyncio.ensure_future(c.messages.get())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
                    print("detached: the deploy goes on in the server; `controlroom deploy --follow` follows it "
                          "again", file=sys.stderr)
                    return 0
                msg = getter.result()
                op = msg.get("op")
                if op == "snapshot":
                    f.snapshot(msg)
                    if f.finished is None and f.status in (None, *ev.ROLLOUT_FINAL):
                        f.say("no deploy runs in the server")
                        return 1
                elif op == "event":
                    f.event(msg)
                elif op == "closed":
                    raise ControlroomError("the server went away; `controlroom deploy --resume` picks the deploy up")
            if f.finished is None:
                print("halted: `controlroom deploy --resume` retries the failed hosts, `controlroom rollback` undoes "
                      "it", file=sys.stderr)
            return f.exit_code()
        finally:
            await c.close()

    try:
        return asyncio.run(go())
    except BrokenPipeError:
        return 0
