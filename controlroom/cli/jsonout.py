"""`--json`: what a command prints for scripts, one JSON object a line.

Every line is one ``json.dumps`` object (ASCII only: control characters and every non-ASCII character escaped, so
nothing in it reaches a terminal as a control sequence); strings are the raw text (a host's output, a reason, a
message as written), never the terminal-cleaned one. A time is two fields: ``<name>_at`` (``at`` alone for the
object's own time), epoch seconds, and ``<name>_time`` (``time``), ISO 8601 in UTC. The README's "Output for
scripts" documents each command's shape.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys


def iso(at: float | None) -> str | None:
    """epoch seconds -> '2026-12-02T04:15:51Z' (None stays None)."""
    if at is None:
        return None
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def when(at: float | None, name: str = "") -> dict:
    """{"at": 1764648951.2, "time": "2026-12-02T04:15:51Z"}, or {"<name>_at": ..., "<name>_time": ...}."""
    pre = f"{name}_" if name else ""
    return {f"{pre}at": at, f"{pre}time": iso(at)}


def number(v: float | None) -> float | None:
    """A float JSON can carry: NaN and the infinities are null (the object's status says why)."""
    return v if v is None or math.isfinite(v) else None


def emit(obj: dict, out=None) -> None:
    """One object, one line, flushed (a script reads it as it comes)."""
    print(json.dumps(obj, allow_nan=False), file=out or sys.stdout, flush=True)
