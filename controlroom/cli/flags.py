"""`controlroom flags [--verify]` and `controlroom flag NAME on|off|N%`, through the server (flagpush.py).

A flag name or value the config does not allow is refused here, before any server is asked (exit 2, with a
did-you-mean). `flag` exits 0 when every host confirmed, 1 naming each straggler and why.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from controlroom.config.config import Config
from controlroom.config.flags import flag_value, valid_name
from controlroom.core.errors import ControlroomError, UsageError
from controlroom.core.receipts import receipt_text
from controlroom.core.text import LINE_LIMIT, clean


def say(text: str, out=None) -> None:
    print(clean(text, LINE_LIMIT), file=out or sys.stdout, flush=True)


def _select(cfg: Config, pattern: str | None) -> list[str] | None:
    if pattern is None:
        return None
    from controlroom.config import inventory

    try:
        return inventory.select(pattern, tuple(h.name for h in cfg.hosts), cfg.groups)
    except ValueError as e:
        raise UsageError(f"--hosts: {e}") from None


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at)) if at else ""


def print_table(state: dict) -> None:
    rows = state["flags"]
    say(f"flags: version {state['version']} of {state['file']} on {state['hosts']} hosts")
    if not rows:
        say("  none: add [flags.NAME] tables to the config")
    width = max([len(r["name"]) for r in rows] + [4])
    for r in rows:
        kind = "kill switch" if r["kind"] == "kill_switch" else "feature"
        who = f"  {r['changed_by']} {_when(r['changed_at'])}" if r["changed_by"] else ""
        why = f"  ({r['reason']})" if r["reason"] else ""
        say(f"  {r['name']:<{width}}  {kind:<11}  {r['value']:<5}  {receipt_text(r['receipt'])}{who}{why}")
    if state["retrying"]:
        say(f"retrying in the background: {', '.join(state['retrying'])} (`controlroom flags --dismiss` stops it)")


def flags_json(state: dict) -> dict:
    """`flags --json`: the flags as the server has them, each with its fleet receipt."""
    from controlroom.cli.jsonout import when

    def receipt(rc: dict | None) -> dict | None:
        if not rc:
            return None
        return {"confirmed": rc["confirmed"], "total": rc["total"],
                "failed": [{"host": h, "class": cls, "reason": why} for h, cls, why in rc["failed"]]}

    return {"version": state["version"], "file": state["file"], "hosts": state["hosts"],
            "flags": [{"name": r["name"], "kind": r["kind"], "value": r["value"], "receipt": receipt(r["receipt"]),
                       "changed_by": r["changed_by"] or None, **when(r["changed_at"] or None, "changed"),
                       "reason": r["reason"]} for r in state["flags"]],
            "retrying": list(state["retrying"])}


def cmd_flags(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom.cli.jsonout import emit
    from controlroom.server.client import connect

    hosts = _select(cfg, args.hosts)

    async def go() -> int:
        c = await connect(cfg)
        try:
            if args.dismiss:
                gone = (await c.request("flag_dismiss", hosts=hosts or []))["dismissed"]
                say(f"no longer retried: {', '.join(gone)}" if gone else "no straggler to dismiss")
                return 0
            state = await c.request("flags")
            if args.json:
                out = flags_json(state)
                if args.verify:
                    rows = (await c.request("flags_verify", hosts=hosts))["hosts"]
                    out["verify"] = [{"host": r["host"], "status": r["status"], "reason": r["reason"]} for r in rows]
                emit(out)
                return 1 if any(r["status"] not in ("ok", "unpushed") for r in out.get("verify", [])) else 0
            print_table(state)
            if not args.verify:
                return 0
            rows = (await c.request("flags_verify", hosts=hosts))["hosts"]
            bad = [r for r in rows if r["status"] not in ("ok", "unpushed")]
            say(f"verify: {len(rows) - len(bad)}/{len(rows)} hosts hold the flags file they were sent"
                + ("" if bad else " (sha256 read back from each)"))
            for r in bad:
                say(f"  {r['host']}  {r['status']}  {r['reason']}")
            return 1 if bad else 0
        finally:
            await c.close()

    return asyncio.run(go())


def _confirm(prompt: str) -> bool | None:
    """True for a typed yes; None when nobody typed (the input ended, the terminal went away)."""
    from controlroom.cli.deploy import typed_answer

    answer = typed_answer(prompt)
    return None if answer is None else answer in ("y", "yes")


def cmd_flag(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom.cli.deploy import quietly_say
    from controlroom.engine.flagpush import unknown_flag
    from controlroom.server.client import connect

    if not valid_name(args.name) or cfg.flags.flag(args.name) is None:
        raise UsageError(unknown_flag(args.name, [f.name for f in cfg.flags.flags]))
    try:
        value = flag_value(args.value)
    except ValueError as e:
        raise UsageError(f"{args.name}: {e}") from None
    hosts = _select(cfg, args.hosts)
    if not args.yes and not sys.stdin.isatty():
        raise UsageError("no terminal to confirm on: add --yes to change a flag from a script")

    async def go() -> int:
        c = await connect(cfg)
        try:
            while True:
                state = await c.request("flags")
                row = next(r for r in state["flags"] if r["name"] == args.name)
                n = len(hosts) if hosts is not None else state["hosts"]
                if not args.yes:
                    what = value.upper() if value in ("on", "off") else f"to {value}"
                    reason = f" Reason: {args.reason}." if args.reason else ""
                    yes = _confirm(clean(f"Turn {args.name} {what} on {n} hosts (now {row['value']}).{reason} "
                                         "Go? [y/N] ", LINE_LIMIT))
                    if not yes:
                        quietly_say("nothing changed")
                        return 1 if yes is not None else 129
                try:
                    done = await c.request("flag_set", flag=args.name, value=value, reason=args.reason,
                                           hosts=hosts, expect=row["version"])
                    break
                except ControlroomError:
                    if c.closed.is_set():  # the server died mid-push: its next start settles the change
                        raise ControlroomError(
                            f"the server went away while it pushed {args.name}; the change is on the record, and "
                            "the next server start asks the hosts and logs what happened: `controlroom flags` "
                            "starts it and shows how the change stands") from None
                    # changed by someone else since we looked (compare-and-set): they are named; on a terminal,
                    # look again and confirm again
                    now = next(r for r in (await c.request("flags"))["flags"] if r["name"] == args.name)
                    if now["version"] == row["version"] or args.yes:
                        raise
                    say(f"{args.name} was changed by {now['changed_by']} at {_when(now['changed_at'])} "
                        f"to {now['value']} while you decided", sys.stderr)
            took = f"{done['seconds']:.1f} s"
            say(f"{args.name} {done['old']} -> {done['new']} on {done['confirmed']}/{done['total']} hosts in "
                f"{took} (version {done['version']})")
            for host, cls, why in done["failed"]:
                say(f"  {host}  {cls}  {why}")
            if done["failed"]:
                say("the stragglers are retried in the background; `controlroom flags` shows them")
                return 1
            return 0
        finally:
            await c.close()

    return asyncio.run(go())
