"""`controlroom serve`, `controlroom server status|stop`, and the deploy commands that go through the server:
`deploy --detach` (start it there and return; `deploy --follow`, in cli/session.py, re-attaches)."""

from __future__ import annotations

import argparse
import asyncio
import time

from controlroom.config.config import Config
from controlroom.core.errors import UsageError
from controlroom.core.text import LINE_LIMIT, clean
from controlroom.server.starter import Starting


def cmd_serve(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom.server.server import serve

    if args.idle < 0:
        raise UsageError("--idle must be 0 (never) or a number of seconds")
    metrics = None
    if getattr(args, "metrics", None) is not None:
        from controlroom.server.exporter import parse_address  # prometheus-client only with --metrics

        metrics = parse_address(args.metrics)
    return asyncio.run(serve(cfg, idle=args.idle or float("inf"), quiet=args.quiet, metrics=metrics,
                             warm=args.warm))


def status_json(st: dict) -> dict:
    """`server status --json`: the server's status reply, its time as `since_at` and `since_time`."""
    from controlroom.cli.jsonout import when

    return {"running": True, "pid": st["pid"], **when(st["since"], "since"), "clients": st["clients"],
            "connections": st.get("connections"), "max_connections": st.get("max_connections"),
            "busy": st["busy"] or None, "rollout_id": st.get("rollout_id"), "status": st.get("status"),
            "config": st.get("config"),
            "channels": st.get("channels"), "notes": list(st.get("notes") or [])}


def cmd_server(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom.cli.jsonout import emit
    from controlroom.server.client import NoServer, connect

    async def go() -> int:
        try:
            c = await connect(cfg, start=False)
        except NoServer as e:
            if args.json and args.action == "status":
                emit({"running": False, "reason": str(e)})
            else:
                print(f"{e}")
            return 1 if args.action == "status" else 0
        try:
            if args.action == "status":
                st = await c.request("status")
                if args.json:
                    emit(status_json(st))
                    return 0
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


def deploy_detached(cfg: Config, args: argparse.Namespace, starting: Starting | None = None) -> int:
    """`deploy --detach`: the server starts the deploy; print its id and return at once. ``starting``: the server
    cli/start.py began (warm: it opens the fleet's connections at once)."""
    from controlroom.server.client import connect

    async def go() -> int:
        c = await connect(cfg, warm=True, starting=starting)
        try:
            if args.resume:
                reply = await c.request("resume", policy=policy_of(args))
            else:
                reply = await c.request("deploy", revision=args.revision, policy=policy_of(args),
                                        force_reason=args.reason if args.force else None)
            if args.json:
                from controlroom.cli.jsonout import emit

                emit({"rollout_id": reply["rollout_id"], "server_pid": c.hello.get("pid")})
                return 0
            print(f"deploy #{reply['rollout_id']} runs in the server (pid {c.hello.get('pid')}); "
                  "`controlroom deploy --follow` follows it, `controlroom` shows it")
            return 0
        finally:
            await c.close()

    return asyncio.run(go())
