"""The rollout pane: what is shipped, where it stands, one bar per phase, the summary, and the host grid."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from controlroom.core import events as ev
from controlroom.core.text import clean
from controlroom.engine.board import Board, PhaseView
from widgets.deploy_log import LockView, clock
from widgets.host_grid import HostGrid
from widgets.repaint import update_in_place
from widgets.states import (
    COLOR,
    LABEL,
    MARKED_COLOR,
    MARKED_SYMBOL,
    ORDER,
    STATUS_LABEL,
    SYMBOL,
    duration,
    status_look,
)

BAR_WIDTH = 16
BAR_CHAR = {
    ev.PENDING: "·",
    ev.CONNECTING: "▒",
    ev.RUNNING: "▒",
    ev.CHECKING: "▒",
    ev.DONE: "█",
    ev.FAILED: "✗",
    ev.SKIPPED: "⊘",
    ev.ROLLING_BACK: "↺",
    ev.ROLLED_BACK: "↩",
}
IN_FLIGHT = ev.IN_FLIGHT


def revision_line(board: Board) -> Text:
    """`r2306 -> r2307  ▶ RUNNING` (the live revision is `?` until known)."""
    t = Text()
    t.append(clean(board.previous or "?", 64), style="bold")
    t.append(" -> ")
    t.append(clean(board.revision or "?", 64), style="bold")
    t.append("   ")
    symbol, label, color = status_look(board.status, board.finished)  # a marked result: ⚠, never a plain ✓
    t.append(f"{symbol} {label}", style=color)
    if board.active and board.marks:  # went past a failed gate or a budget: said for the rest of the deploy
        t.append(f"  {MARKED_SYMBOL} {ev.marks_text(board.marks)}", style=MARKED_COLOR)
    if board.user and board.status is not None:
        t.append(f"  by {clean(board.user, 64)}", style="dim")
    return t


def _key(t: Text, key: str, acting: bool) -> None:
    """A key the person may press, or, for a watcher who may not act, who does."""
    if acting:
        t.append(key, style="bold reverse")
    else:
        t.append("an operator", style="bold")


def context_line(board: Board, now: float | None = None, acting: bool = True) -> Text:
    """Where the rollout stands and for how long: `stage 1 (2 of 3) · running for 2 min 58 s`. A watcher who may
    not act (read-only) is not offered keys it cannot use: the line says an operator's decision is awaited."""
    t = Text()
    status = board.status
    phases = board.phases
    if status is None:
        t.append("staged, not deployed: ", style="dim")
        _key(t, "d", acting)
        t.append(
            f" deploys it to {board.total} hosts in {len(phases)} phase{'s' if len(phases) != 1 else ''}"
        )
        return t
    elapsed = duration(board.elapsed(now))
    if status in ev.ROLLOUT_FINAL:
        _, label, color = status_look(status, board.finished)
        t.append(f"{label.lower()} after {elapsed}", style="" if label == STATUS_LABEL[status] else color)
        return t
    i = board.phase_index
    name = phases[i].name if 0 <= i < len(phases) else "?"  # phase names are cleaned by the board
    where = f"{name} ({i + 1} of {len(phases)})"
    if status == ev.R_HALTED and board.halted is not None:
        h = board.halted
        names = ", ".join(clean(n, 64) for n in h.failed[:3])
        names += f" and {len(h.failed) - 3} more" if len(h.failed) > 3 else ""
        t.append(f"{clean(h.name, 64)} HALTED", style="bold red")
        t.append(f": {names} failed (budget {h.max_failed}); ")
        if acting:
            t.append("r", style="bold reverse")
            t.append(" retry or ")
            t.append("s", style="bold reverse")
            t.append(" skip the selected host, ")
            t.append("a", style="bold reverse")
            t.append(" abort")
        else:
            t.append("an operator", style="bold")
            t.append(" retries, skips or aborts")
    elif board.gate is not None and status != ev.R_PAUSED:
        g = board.gate
        t.append(f"{clean(g.name, 64)} waits", style="bold yellow")
        if g.reason:
            t.append(f": {clean(g.reason)}")
        t.append(" · ")
        _key(t, "g", acting)
        # a gate that failed or could not be checked: g offers the choices (kill switch first), not a pass
        t.append(" decides: kill switch, check again, roll back" if g.kind == ev.GATE_FAILED else " proceeds")
    elif status == ev.R_PAUSED:
        t.append(f"paused in {where}", style="bold yellow")
        t.append(": no new host starts; ")
        _key(t, "p", acting)
        t.append(" resumes")
    else:
        t.append(where, style="bold")
    t.append(f" · running for {elapsed}")
    return t


def waiting_line(board: Board) -> Text:
    t = Text()
    if board.status is None or board.status in ev.ROLLOUT_FINAL:
        return t
    left = board.total - board.count(*ev.FINAL)
    flying = board.count(*IN_FLIGHT)
    t.append(f"waiting for {left} host{'s' if left != 1 else ''}", style="bold")
    t.append(f" · {flying} in flight · {board.count(ev.DONE)} done")
    failed = board.count(ev.FAILED)
    if failed:
        t.append(f" · {SYMBOL[ev.FAILED]} {failed} failed", style=COLOR[ev.FAILED])
    return t


def _bar(phase: PhaseView, width: int = BAR_WIDTH) -> Text:
    total = phase.total or 1
    shares = []
    for s in ORDER:
        n = phase.counts.get(s, 0)
        if n > 0:
            shares.append([s, n * width / total])
    # every non-empty state gets at least one cell, so one failed host in 5,000 still shows
    cells = {s: max(1, int(x)) for s, x in shares}
    while sum(cells.values()) > width:
        biggest = max(cells, key=lambda k: cells[k])
        cells[biggest] -= 1
    rest = sorted(shares, key=lambda sx: sx[1] - int(sx[1]), reverse=True)
    i = 0
    while sum(cells.values()) < width and rest:
        cells[rest[i % len(rest)][0]] += 1
        i += 1
    t = Text()
    for s in ORDER:
        if cells.get(s):
            t.append(BAR_CHAR[s] * cells[s], style=COLOR[s])
    return t


def phase_seconds(seconds: float) -> str:
    """How long a finished phase took, to a tenth of a second (a snapshot test fixes it)."""
    return f"{seconds:.1f} s"


def phase_marker(board: Board, i: int) -> tuple[str, str]:
    phase = board.phases[i]
    if board.halted is not None and board.halted.phase == i:
        return "✗", "bold red"
    if board.gate is not None and board.gate.phase == i:
        return "⏸", "yellow"
    if phase.seconds is not None or (phase.total and phase.final == phase.total and board.status is not None):
        if phase.counts.get(ev.FAILED):
            return "✗", "red"
        # a phase whose hosts were skipped did not ship everywhere: never a ✓
        return (SYMBOL[ev.SKIPPED], COLOR[ev.SKIPPED]) if phase.counts.get(ev.SKIPPED) else ("✓", "green")
    if board.active and i == board.phase_index:
        return "▶", "bright_blue"
    return "·", "grey62"


def phase_bars(board: Board) -> Text:
    t = Text()
    w = max((len(p.name) for p in board.phases), default=5)
    digits = len(str(max((p.total for p in board.phases), default=1)))
    for i, p in enumerate(board.phases):
        if i:
            t.append("\n")
        mark, style = phase_marker(board, i)
        t.append(f"{mark} ", style=style)
        t.append(f"{p.name:<{w}} ", style="bold" if i == board.phase_index and board.active else "")
        t.append_text(_bar(p))
        t.append(f" {p.final:>{digits}}/{p.total:<{digits}} ")
        parts = [(s, p.counts.get(s, 0)) for s in ORDER if p.counts.get(s, 0)]
        for j, (s, n) in enumerate(parts):
            if j:
                t.append(" · ", style="dim")
            t.append(f"{n} {LABEL[s]}", style=COLOR[s] if s != ev.PENDING else "dim")
        if p.seconds is not None:
            t.append(f" ({phase_seconds(p.seconds)})", style="dim")
    return t


def summary(board: Board, limit: int = 8) -> Text:
    f = board.finished
    t = Text()
    if f is None:
        return t
    symbol, label, color = status_look(f.status, f)  # 'DONE past a failed gate' in the warning colour
    t.append(f"{symbol} {label}", style=color)
    t.append(
        f": {clean(board.previous or '?', 64)} -> {clean(f.revision, 64)} in {duration(f.seconds)}\n",
        style="bold",
    )
    t.append(f"{f.done} done", style=COLOR[ev.DONE])
    t.append(" · ")
    t.append(f"{f.failed} failed", style=COLOR[ev.FAILED] if f.failed else "")
    t.append(" · ")
    t.append(f"{f.skipped} skipped", style=COLOR[ev.SKIPPED] if f.skipped else "")
    rolled = board.count(ev.ROLLED_BACK)
    if rolled:
        t.append(f" · {rolled} rolled back", style=COLOR[ev.ROLLED_BACK])
    for host, reason in f.failed_hosts[:limit]:
        t.append("\n")
        t.append(f"{SYMBOL[ev.FAILED]} {clean(host, 64)}", style=COLOR[ev.FAILED])
        t.append(f"  {clean(reason)}")
    if len(f.failed_hosts) > limit:
        t.append(f"\n... and {len(f.failed_hosts) - limit} more failed hosts (enter on a host shows why)")
    return t


def selected_line(board: Board, host: str | None, focused: bool = True) -> Text:
    """`▸ web042.example.com  ✗ failed · exit 1 · stage 2 · enter opens it`."""
    t = Text(no_wrap=True, overflow="ellipsis")
    hv = board.hosts.get(host) if host else None
    if hv is None:
        return t
    t.append("▸ " if focused else "  ")
    t.append(clean(host, 200), style="bold")
    t.append("  ")
    t.append(f"{SYMBOL[hv.state]} {LABEL[hv.state]}", style=COLOR[hv.state])
    if hv.state == ev.RUNNING and hv.steps:
        t.append(f" step {hv.step}/{hv.steps}")
    if hv.reason:
        t.append(f" · {clean(hv.reason, 200)}")
    if 0 <= hv.phase < len(board.phases):
        t.append(f" · {board.phases[hv.phase].name}", style="dim")
    t.append(" · enter opens it", style="dim")
    return t


def legend() -> Text:
    t = Text()
    for i, s in enumerate(ev.HOST_STATES):
        if i:
            t.append("  ")
        t.append(f"{SYMBOL[s]} {LABEL[s]}", style=COLOR[s])
    return t


class RolloutPane(Vertical):
    """Revision line, context, phase bars, summary, host grid and legend; repainted by `refresh_board`."""

    def __init__(self, board: Board, **kwargs) -> None:
        super().__init__(**kwargs)
        self.board = board
        self.acting = True  # False for a watcher who may not act: no key is offered that it cannot use
        self._shown: dict[str, Text] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="revision-line")
        yield Static(id="lock-line")
        yield Static(id="context-line")
        yield Static(id="waiting-line")
        yield Static(id="phase-bars")
        yield Static(id="summary")
        yield HostGrid(self.board, id="host-grid")
        yield Static(id="grid-caption")
        yield Static(legend(), id="legend")

    def on_mount(self) -> None:
        self.border_title = "Rollout"
        self.show_lock(None)
        self.refresh_board()

    def set_acting(self, acting: bool) -> None:
        """Whether this person may act (the server said so at hello); the header's offers follow."""
        if acting != self.acting:
            self.acting = acting
            if self.is_mounted:
                self.refresh_board()

    def show_lock(self, lock: LockView | None) -> None:
        """A person's lock shows here too, so that it is seen even when the deploy log is another tab."""
        line = self.query_one("#lock-line", Static)
        line.display = lock is not None and not lock.rollout_id
        if line.display:
            t = Text()
            t.append("LOCKED", style="bold reverse red")
            t.append(f" NO DEPLOY PLEASE — {clean(lock.user, 64)}, {clock(lock.at)}", style="bold red")
            if lock.reason:
                t.append(f": {clean(lock.reason)}")
            line.update(t)

    @property
    def grid(self) -> HostGrid:
        return self.query_one(HostGrid)

    def _set(self, selector: str, text: Text) -> None:
        # most flushes change nothing here, so skip equal text; a change repaints the line, and lays the screen
        # out only when the line's height changes (repaint.py)
        if self._shown.get(selector) != text:
            self._shown[selector] = text
            update_in_place(self.query_one(selector, Static), text)

    def refresh_board(self, now: float | None = None) -> None:
        """Repaint the header, bars and summary from the board (the grid repaints its own rows)."""
        board = self.board
        now = now or time.time()
        self._set("#revision-line", revision_line(board))
        self._set("#context-line", context_line(board, now, self.acting))
        waiting = self.query_one("#waiting-line", Static)
        self._set("#waiting-line", waiting_line(board))
        if waiting.display != board.active:
            waiting.display = board.active
        self._set("#phase-bars", phase_bars(board))
        summ = self.query_one("#summary", Static)
        if summ.display != (board.finished is not None):
            summ.display = board.finished is not None
        if board.finished is not None:
            self._set("#summary", summary(board))
            summ.set_class(board.finished.status != ev.R_DONE, "-bad")
            summ.set_class(board.finished.status == ev.R_DONE and bool(board.finished.marks), "-marked")
        self.show_selected()

    def on_host_grid_cursor_moved(self, message: HostGrid.CursorMoved) -> None:
        self.show_selected()  # the message goes on up to the app, which re-offers retry and skip

    def on_host_grid_laid_out(self, message: HostGrid.LaidOut) -> None:
        self.show_selected()

    def show_selected(self) -> None:
        """Under the grid: the selected host's full name, state and reason (the grid may show glyphs only)."""
        grid = self.grid
        self._set("#grid-caption", selected_line(self.board, grid.cursor_host, grid.has_focus))

    def tick(self, now: float | None = None) -> None:
        """Once a second: the elapsed time moves."""
        if self.board.active:
            self._set("#context-line", context_line(self.board, now, self.acting))
