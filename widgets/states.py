"""How each host state and rollout status looks: a symbol AND a colour, never colour alone.

The symbols carry the meaning on a monochrome screen (NO_COLOR) and in `tmux capture-pane`; the colours come from
component classes in the widgets' CSS so a theme can change them.
"""

from __future__ import annotations

from controlroom.core import events as ev
from controlroom.core.text import took

SYMBOL = {
    ev.PENDING: "·",
    ev.CONNECTING: "○",
    ev.RUNNING: "▶",
    ev.CHECKING: "◎",
    ev.DONE: "✓",
    ev.FAILED: "✗",
    ev.SKIPPED: "⊘",
    ev.ROLLING_BACK: "↺",
    ev.ROLLED_BACK: "↩",
}

LABEL = {
    ev.PENDING: "pending",
    ev.CONNECTING: "connecting",
    ev.RUNNING: "running",
    ev.CHECKING: "checking",
    ev.DONE: "done",
    ev.FAILED: "failed",
    ev.SKIPPED: "skipped",
    ev.ROLLING_BACK: "rolling back",
    ev.ROLLED_BACK: "rolled back",
}

# the order counts and legends are shown in: what needs attention first, then progress
ORDER = (
    ev.FAILED,
    ev.CONNECTING,
    ev.RUNNING,
    ev.CHECKING,
    ev.ROLLING_BACK,
    ev.DONE,
    ev.ROLLED_BACK,
    ev.SKIPPED,
    ev.PENDING,
)

# colours for Rich markup outside the grid (the grid reads its colours from component classes)
COLOR = {
    ev.PENDING: "grey62",
    ev.CONNECTING: "cyan",
    ev.RUNNING: "bright_blue",
    ev.CHECKING: "magenta",
    ev.DONE: "green",
    ev.FAILED: "bold red",
    ev.SKIPPED: "yellow",
    ev.ROLLING_BACK: "dark_orange",
    ev.ROLLED_BACK: "dark_orange",
}

STATUS_LABEL = {
    None: "READY",
    ev.R_RUNNING: "RUNNING",
    ev.R_PAUSED: "PAUSED",
    ev.R_HALTED: "HALTED",
    ev.R_WAITING: "WAITING",
    ev.R_DONE: "DONE",
    ev.R_FAILED: "FAILED",
    ev.R_ABORTED: "ABORTED",
    ev.R_ROLLED_BACK: "ROLLED BACK",
}

STATUS_SYMBOL = {
    None: "·",
    ev.R_RUNNING: "▶",
    ev.R_PAUSED: "⏸",
    ev.R_HALTED: "✗",
    ev.R_WAITING: "⏸",
    ev.R_DONE: "✓",
    ev.R_FAILED: "✗",
    ev.R_ABORTED: "⊘",
    ev.R_ROLLED_BACK: "↩",
}

STATUS_COLOR = {
    None: "grey62",
    ev.R_RUNNING: "bright_blue",
    ev.R_PAUSED: "yellow",
    ev.R_HALTED: "bold red",
    ev.R_WAITING: "yellow",
    ev.R_DONE: "bold green",
    ev.R_FAILED: "bold red",
    ev.R_ABORTED: "yellow",
    ev.R_ROLLED_BACK: "dark_orange",
}


# a result marked for good (past a failed gate, past a failure budget, hosts skipped): the warning symbol and
# colour, never a plain green ✓
MARKED_SYMBOL = ev.MARK_SYMBOL
MARKED_COLOR = "bold yellow"


def status_look(status: str | None, finished: ev.RolloutFinished | None = None) -> tuple[str, str, str]:
    """(symbol, label, colour) of a rollout status; a finished deploy whose result is marked says so, a DONE one in
    the warning symbol and colour: ('⚠', 'DONE past a failed gate', 'bold yellow')."""
    mark = ev.marks_text(finished.marks, finished.skipped) if finished is not None else ""
    if not mark or status != finished.status:
        return STATUS_SYMBOL[status], STATUS_LABEL[status], STATUS_COLOR[status]
    if status == ev.R_DONE:
        return MARKED_SYMBOL, f"{STATUS_LABEL[status]} {mark}", MARKED_COLOR
    return STATUS_SYMBOL[status], f"{STATUS_LABEL[status]} {mark}", STATUS_COLOR[status]  # already no ✓


def duration(seconds: float) -> str:
    """340 ms, 12 s, 2 min 58 s, 1 h 04 min: how a person says it (work that ran never took "0 s")."""
    if 0 < seconds < 1:
        return took(seconds)
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
