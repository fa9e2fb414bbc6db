"""`controlroom diff [--stat]` (live -> staged: the commits, the files, the diff) and `controlroom stage [--revision R]`.

The live revision is the one most hosts run by the journal's record (a mixed fleet says so: "live: r2306 on 148
hosts, r2305 on 2"); with nothing recorded yet, the server asks the first host. Everything git prints that a person
wrote (subjects, authors, paths, the diff's lines) is cleaned before it reaches the terminal; colour only on a TTY.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path

from controlroom import release
from controlroom.config import Config
from controlroom.errors import ControlroomError, UsageError
from controlroom.text import clean

GREEN, RED, CYAN, BOLD, DIM, RESET = "\x1b[32m", "\x1b[31m", "\x1b[36m", "\x1b[1m", "\x1b[2m", "\x1b[0m"
MAX_COMMITS = 500


def add_parsers(sub, common) -> None:
    d = sub.add_parser("diff", parents=[common], help="what the staged revision changes: live -> staged")
    d.add_argument("--stat", action="store_true", help="commits and files only, not the diff itself")
    d.add_argument("--revision", "-r", metavar="R", help="compare with this revision (default: [release] staged)")
    s = sub.add_parser("stage", parents=[common], help="run [release] stage for the staged revision (or R)")
    s.add_argument("--revision", "-r", metavar="R", help="revision to stage (default: [release] staged)")


# --------------------------------------------------------------------------------------------- diff


def live_counts(cfg: Config) -> Counter:
    """revision -> how many hosts run it, by the journal's record (empty when nothing is recorded)."""
    from controlroom.journal import Journal

    if not (Path(cfg.state.dir) / "journal.db").exists():
        return Counter()
    j = Journal.open(Path(cfg.state.dir), readonly=True)
    try:
        return Counter(live for live, _ in j.live_revisions().values() if live)
    finally:
        j.close()


def live_line(counts: Counter) -> str:
    """'live: r2306 on 150 hosts' or, for a mixed fleet, 'live: r2306 on 148 hosts, r2305 on 2'."""
    parts = [f"{clean(rev, 80)} on {n}" + (" hosts" if i == 0 else "") for i, (rev, n) in
             enumerate(counts.most_common())]
    return "live: " + ", ".join(parts)


def _live_from_server(cfg: Config) -> str | None:
    from controlroom.client import connect

    async def go() -> str | None:
        c = await connect(cfg)
        try:
            reply = await c.request("revisions")
        finally:
            await c.close()
        if reply.get("live_error") and not reply.get("live"):
            raise ControlroomError(f"the live revision is unknown: {reply['live_error']}")
        return reply.get("live")

    return asyncio.run(go())


def _age(seconds: float) -> str:
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def commits(repo: Path, a: str, b: str) -> list[tuple[str, str, float, str]]:
    """(short hash, author, commit time, subject) of the commits in b and not in a, newest first."""
    out = release._git(repo, "log", f"--max-count={MAX_COMMITS}", "--format=%h%x1f%an%x1f%ct%x1f%s",
                       "--end-of-options", f"{a}..{b}")
    rows = []
    for line in out.splitlines():
        h, author, ct, subject = (line.split("\x1f") + ["", "", "0", ""])[:4]
        rows.append((h, author, float(ct or 0), subject))
    return rows


def files(repo: Path, a: str, b: str) -> list[tuple[str, str, str]]:
    """(added, removed, path) for each file changed from a to b ('-' for a binary file's counts)."""
    out = release._git(repo, "diff", "--numstat", "-z", "--end-of-options", a, b)
    rows, parts = [], out.split("\0")
    i = 0
    while i < len(parts):
        if not parts[i].strip():
            i += 1
            continue
        fields = parts[i].split("\t")
        if len(fields) == 3 and fields[2] == "" and i + 2 < len(parts):  # a rename: old and new path follow
            rows.append((fields[0], fields[1], f"{parts[i + 1]} -> {parts[i + 2]}"))
            i += 3
            continue
        if len(fields) >= 3:
            rows.append((fields[0], fields[1], "\t".join(fields[2:])))
        i += 1
    return rows


def cmd_diff(cfg: Config, args: argparse.Namespace) -> int:
    repo = cfg.release.repo
    if repo is None:
        raise UsageError(f"{cfg.path}: nothing to compare: set [release] repo")
    staged = args.revision or release.staged_revision(cfg)
    b = release.pin(cfg, staged)
    counts = live_counts(cfg)
    if counts:
        live = counts.most_common(1)[0][0]
        head = live_line(counts)
    else:
        live = _live_from_server(cfg)
        if not live:
            raise ControlroomError("the live revision is unknown: no host answered with one")
        head = f"live: {clean(live, 80)} (asked {cfg.phases[0].hosts[0] if cfg.phases else 'a host'})"
    if release.revision_problem(live):
        raise ControlroomError(f"the live revision {clean(live, 80)!r} is not a revision name git can be asked about")
    a = release.pin(cfg, live)
    assert b is not None and a is not None
    tty = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def paint(text: str, colour: str) -> str:
        return f"{colour}{text}{RESET}" if tty else text

    out: list[str] = [head, f"staged: {clean(staged, 80)} ({b[:10]})"]
    if a == b:
        out.append("nothing to show: the fleet runs the staged commit")
        print("\n".join(out))
        return 0
    rows = commits(repo, a, b)
    out.append("")
    out.append(paint(f"{len(rows)} commit{'s' if len(rows) != 1 else ''}", BOLD))
    now = time.time()
    for h, author, ct, subject in rows:
        out.append(f"  {paint(h, CYAN)}  {clean(author, 40)}  {paint(_age(now - ct), DIM)}  {clean(subject, 200)}")
    fs = files(repo, a, b)
    added = sum(int(x) for x, _, _ in fs if x.isdigit())
    removed = sum(int(y) for _, y, _ in fs if y.isdigit())
    out.append("")
    out.append(paint(f"{len(fs)} file{'s' if len(fs) != 1 else ''} changed, +{added} -{removed}", BOLD))
    for x, y, path in fs:
        out.append(f"  {paint('+' + x, GREEN)} {paint('-' + y, RED)}  {clean(path, 300)}")
    print("\n".join(out))
    if args.stat:
        return 0
    print()
    patch = release._git(repo, "diff", "--no-color", "--no-ext-diff", "--end-of-options", a, b)
    lines = []
    for raw in patch.splitlines():
        line = clean(raw, 2000)
        if raw.startswith(("+++", "---", "diff ", "index ")):
            line = paint(line, BOLD)
        elif raw.startswith("+"):
            line = paint(line, GREEN)
        elif raw.startswith("-"):
            line = paint(line, RED)
        elif raw.startswith("@@"):
            line = paint(line, CYAN)
        lines.append(line)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# --------------------------------------------------------------------------------------------- stage


def cmd_stage(cfg: Config, args: argparse.Namespace) -> int:
    """Ask the server to stage; print its output as it comes, then `STAGE OK r2307 in 2 s` (0) or why not (1)."""
    from controlroom.client import connect

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
            print(f"STAGE OK {rev} in {reply['seconds']:.0f} s", flush=True)
            return 0
        print(f"STAGE FAILED {rev}: {clean(reply['reason'], 200)} after {reply['seconds']:.0f} s", flush=True)
        return 1

    return asyncio.run(go())


def _show(msg: dict) -> None:
    if msg.get("op") == "stage_output":
        print(f"  {clean(msg.get('line'), 2000)}", flush=True)
