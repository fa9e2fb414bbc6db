"""`controlroom history`, `controlroom timeline DEPLOY`, `controlroom replay DEPLOY`'s checks and `controlroom stats`: the record, read back.

Everything printed went through core.text.clean (names, reasons, log texts and host output are only text); a bad
argument is one line and exit 2, and an unknown deploy number names the ones that exist.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import time

from controlroom.config.config import Config
from controlroom.core.errors import JournalError, UsageError
from controlroom.core.text import clean
from controlroom.engine.history import exists_line, history_items
from controlroom.journal import record
from controlroom.journal.journal import Journal


def _say(line: object) -> None:
    print(clean(line, None))


def _open(cfg: Config) -> Journal:
    """The journal to read: opened (and migrated, so its index is there) when we may, else read-only."""
    try:
        return Journal.open(cfg.state.dir, url=cfg.state.journal)
    except JournalError:
        return Journal.open(cfg.state.dir, readonly=True, url=cfg.state.journal)


# ---------------------------------------------------------------------------------------------- --since
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """A time from an age (7d, 12h, 30m, 2w, 90s) or a local date/time (2026-12-01, 2026-12-01T10:00,
    2026-12-01 10:00:05); UsageError for anything else."""
    now = time.time() if now is None else now
    s = text.strip()
    m = _AGE.fullmatch(s)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return dt.datetime.fromisoformat(s).timestamp()
    except ValueError:
        raise UsageError(f"--since {clean(text, 60)!r}: give a date (2026-12-01, 2026-12-01T10:00) or an age"
                         " (7d, 12h, 30m)") from None


# ---------------------------------------------------------------------------------------------- history
def cmd_history(cfg: Config, args: argparse.Namespace) -> int:
    since = parse_since(args.since) if args.since else None
    j = _open(cfg)
    try:
        items = history_items(j.db, since=since, user=args.user, failed=args.failed)
    finally:
        j.close()
    if args.json:
        _say(json.dumps([{k: clean(v, None) if isinstance(v, str) else v for k, v in i.items()} for i in items]))
        return 0
    if not items:
        _say("nothing in the record" + (" that matches" if since or args.user or args.failed else ""))
        return 0
    width = max(len(clean(i["user"], 24)) for i in items)
    for i in items:
        took = "" if i["seconds"] is None else f"  ({_took(i['seconds'])})"
        _say(f"{_stamp(i['at'])}  {clean(i['user'], 24):<{width}}  {i['what']}  {i['result']}{took}")
    return 0


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _took(seconds: float) -> str:
    from controlroom.engine.figures import duration

    return duration(seconds)


# ---------------------------------------------------------------------------------------------- timeline
def deploy_number(db, text: str) -> int:
    """The deploy `text` names (3, #3, last); UsageError naming what exists when there is no such deploy."""
    s = text.strip()
    numbers = record.deploy_numbers(db)
    if s == "last":
        if not numbers:
            raise UsageError("there is no deploy in the record yet")
        return numbers[-1]
    digits = s.removeprefix("#")
    if not digits.isdigit():
        raise UsageError(f"DEPLOY {clean(text, 40)!r}: give a deploy's number as `controlroom log` names it"
                         f" (#3 or 3) or last; {exists_line(numbers)}")
    n = int(digits)
    if n not in numbers:
        raise UsageError(f"there is no deploy #{n}; {exists_line(numbers)}")
    return n


def cmd_timeline(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom.engine.record import Timeline

    j = _open(cfg)
    try:
        n = deploy_number(j.db, args.deploy)
        row = record.deploy(j.db, n)
        tl = Timeline.read(j.db, n, defaults={f.name: f.default for f in cfg.flags.flags})
    finally:
        j.close()
    if args.json:
        end = tl.at(len(tl) - 1)
        _say(json.dumps({"deploy": {"id": n, "revision": row.revision, "previous": row.previous, "user": row.user,
                                    "status": row.status, "started_at": row.started_at,
                                    "finished_at": row.finished_at},
                         "flags_at_start": tl.at(-1).flags,
                         "events": [e.to_dict() for e in tl.events], "end": end.to_dict()}, default=str))
        return 0
    if args.markdown:
        _say_lines(tl.markdown())
        return 0
    _say(f"deploy #{n} {row.previous or '?'} -> {row.revision} by {row.user}: {row.status}, {len(tl)} events")
    start = tl.at(-1).flags
    if start:
        _say("flags at its start: " + ", ".join(f"{k} {v}" for k, v in sorted(start.items())))
    for e in tl.events:
        mark = "!" if e.failure else " "
        _say(f"{e.stamp()} {mark} {clean(e.user, 24):<10} {e.kind:<6} {e.text()}")
    return 0


def replay_target(cfg: Config, args: argparse.Namespace) -> tuple[int, float]:
    """`controlroom replay DEPLOY --speed N`: the deploy (one that exists, else UsageError naming those that do)
    and the speed, checked before the app opens."""
    speed = args.speed
    if not 0 < speed <= 1000:  # NaN and inf too
        raise UsageError("--speed must be more than 0 and at most 1000 (times the record's pace)")
    j = _open(cfg)
    try:
        return deploy_number(j.db, args.deploy), float(speed)
    finally:
        j.close()


def _say_lines(text: str) -> None:
    for line in text.splitlines():
        _say(line)


# ---------------------------------------------------------------------------------------------- stats
def cmd_stats(cfg: Config, args: argparse.Namespace) -> int:
    from controlroom.engine import figures

    if not 0 < args.days < 100_000:  # NaN and inf too
        raise UsageError("--days must be more than 0 (and a number of days)")
    j = _open(cfg)
    try:
        f = figures.compute(j.db, cfg.release.repo, days=args.days,
                            kill_switches={s.name for s in cfg.flags.flags if s.kill_switch})
    finally:
        j.close()
    if args.json:
        _say(json.dumps(f.to_dict()))
        return 0
    for line in f.text():
        _say(line)
    return 0
