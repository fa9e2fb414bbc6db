"""`controlroom diff [--stat]` (live -> staged: the commits, the files, the diff) and `controlroom stage [--revision R]`.

The live revision is the one most hosts run by the journal's record (a mixed fleet says so: "live: r2306 on 148
hosts, r2305 on 2"); with nothing recorded yet, the server asks the first host. Everything git prints that a person
wrote (subjects, authors, paths, the diff's lines) is cleaned before it reaches the terminal; colour only on a TTY.
A live revision git no longer has is named as the journal or the host has it, with why there is no diff (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from controlroom.config.config import Config
from controlroom.core.errors import ControlroomError, UsageError
from controlroom.core.text import clean, took
from controlroom.engine.live import live_counts
from controlroom.sources import git as release
from controlroom.sources import stagediff

GREEN, RED, CYAN, BOLD, DIM, RESET = "\x1b[32m", "\x1b[31m", "\x1b[36m", "\x1b[1m", "\x1b[2m", "\x1b[0m"
# the data functions live in the core module stagediff (the app's pane uses them too); kept here by their old names
live_line, commits, files, _age = stagediff.live_line, stagediff.commits, stagediff.files, stagediff.age


# --------------------------------------------------------------------------------------------- diff


def _live_from_server(cfg: Config) -> str | None:
    from controlroom.server.client import connect

    async def go() -> str | None:
        c = await connect(cfg)
        try:
            reply = await c.request("revisions")
        finally:
            await c.close()
        if reply.get("live_error") and not reply.get("live"):
            raise ControlroomError(f"the live revision is unknown: {clean(reply['live_error'], 300)}")
        return reply.get("live")

    return asyncio.run(go())


def diff_json(d: stagediff.StagingDiff, counts) -> dict:
    """`diff --stat --json`: live -> staged, the commits and the files (git's text cleaned and bounded in size, as
    stagediff reads it; the patch itself is not in it)."""
    from controlroom.cli.jsonout import when

    added, removed = d.totals
    return {"live": d.live, "live_commit": d.live_commit or None, "live_line": d.live_line,
            "live_hosts": dict(counts.most_common()) if counts else None,  # revision -> hosts, by the journal
            "staged": d.staged, "staged_commit": d.staged_commit, "same": d.same, "problem": d.problem or None,
            "cut": list(d.cut),
            "commits": [{"hash": c.hash, "author": c.author, **when(c.at), "subject": c.subject} for c in d.commits],
            "files": [{"path": f.path, "added": int(f.added) if f.added.isdigit() else None,
                       "removed": int(f.removed) if f.removed.isdigit() else None, "binary": not f.added.isdigit()}
                      for f in d.files],
            "added": added, "removed": removed}


def cmd_diff(cfg: Config, args: argparse.Namespace) -> int:
    if cfg.release.repo is None:
        raise UsageError(f"{cfg.path}: nothing to compare: set [release] repo")
    staged = args.revision or release.staged_revision(cfg)
    release.pin(cfg, staged)  # an unknown staged revision is refused before the server is asked anything
    counts = live_counts(cfg)
    live = None if counts else _live_from_server(cfg)
    asked = f"asked {cfg.phases[0].hosts[0] if cfg.phases else 'a host'}"
    d = stagediff.load(cfg, staged=staged, counts=counts, live=live, live_note=asked, stat=args.stat or args.json)
    if args.json:
        from controlroom.cli.jsonout import emit

        emit(diff_json(d, counts))
        return 1 if d.problem else 0
    tty = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def paint(text: str, colour: str) -> str:
        return f"{colour}{text}{RESET}" if tty else text

    out: list[str] = [d.live_line, d.staged_line]
    if d.problem:
        out.append(d.problem)
        print("\n".join(out))
        return 1
    if d.same:
        out.append("nothing to show: the fleet runs the staged commit")
        print("\n".join(out))
        return 0
    if d.cut:
        out.append(paint(f"shown in part: {', '.join(d.cut)}", DIM))
    out.append("")
    out.append(paint(f"{len(d.commits)} commit{'s' if len(d.commits) != 1 else ''}", BOLD))
    now = time.time()
    for c in d.commits:
        out.append(f"  {paint(c.hash, CYAN)}  {c.author}  {paint(stagediff.age(now - c.at), DIM)}  {c.subject}")
    added, removed = d.totals
    out.append("")
    out.append(paint(f"{len(d.files)} file{'s' if len(d.files) != 1 else ''} changed, +{added} -{removed}", BOLD))
    for f in d.files:
        out.append(f"  {paint('+' + f.added, GREEN)} {paint('-' + f.removed, RED)}  {f.path}")
    print("\n".join(out))
    if args.stat:
        return 0
    print()
    colour = {stagediff.META: BOLD, stagediff.ADDED: GREEN, stagediff.REMOVED: RED, stagediff.HUNK: CYAN,
              stagediff.NOTE: DIM}
    lines = [paint(line, colour[k]) if k in colour else line for line, k in zip(d.lines, d.kinds, strict=True)]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# --------------------------------------------------------------------------------------------- stage


def cmd_stage(cfg: Config, args: argparse.Namespace) -> int:
    """Ask the server to stage; print its output as it comes, then `STAGE OK r2307 in 2 s` (0) or why not (1)."""
    from controlroom.server.client import connect

    if args.revision is not None:
        release.validate_revision(args.revision)
    if not cfg.release.stage:
        raise UsageError(f"{cfg.path}: nothing to stage with: set [release] stage, e.g. \"make build REV={{revision}}\"")

    async def go() -> int:
        c = await connect(cfg)
        try:
            req = asyncio.ensure_future(c.request("stage", revision=args.revision,
                                                  config=str(Path(cfg.path).resolve())))
            while True:
                getter = asyncio.ensure_future(c.messages.get())
                await asyncio.wait([req, getter], return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    _show(getter.result())
                else:
                    getter.cancel()
                if req.done():
                    while not c.messages.empty():
                        _show(c.messages.get_nowait())
                    break
            reply = req.result()
        finally:
            await c.close()
        rev = clean(reply["revision"], 80)
        if reply["staged"]:
            print(f"STAGE OK {rev} in {took(reply['seconds'])}", flush=True)
            return 0
        print(f"STAGE FAILED {rev}: {clean(reply['reason'], 200)} after {took(reply['seconds'])}", flush=True)
        return 1

    return asyncio.run(go())


def _show(msg: dict) -> None:
    if msg.get("op") == "stage_output":
        print(f"  {clean(msg.get('line'), 2000)}", flush=True)
