"""What the app's confirmations and refusals say: built from the config and the board as they are now, cleaned,
never markup (the dialogs show them as text). Plain functions: nothing here draws."""

from __future__ import annotations

from collections import Counter

from controlroom.core import events as ev
from controlroom.core.text import clean


def plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def deploy_plan(cfg, revision: str, live: Counter, lock) -> str:
    """What `d` will do: the revision, what runs now (revision -> hosts), hosts and phases, the gates and the waits
    for the operator, and who holds the lock."""
    phases = cfg.phases
    total = len(cfg.hosts)
    sizes = ", ".join(f"{p.name} {len(p.hosts)}" for p in phases)
    lines = [f"Ship {revision} to {total} host{plural(total, '', 's')} in {len(phases)} "
             f"phase{plural(len(phases), '', 's')}: {sizes}."]
    if live:
        lines.append("Live now: " + ", ".join(f"{rev} on {n} host{plural(n, '', 's')}"
                                              for rev, n in live.most_common()) + ".")
    else:
        lines.append("Live now: unknown (no host has said yet).")
    gated = [f"after {p.name}: {' and '.join(p.gate)}" for p in phases if p.gate]
    lines.append("Gates: " + ("; ".join(gated) if gated else "none") + ".")
    waits = [p.name for p in phases[:-1] if not p.auto]
    if waits:
        lines.append(f"Waits for you (g) after {', '.join(waits)}.")
    if lock is None:
        lines.append("Lock: the fleet is not locked; the deploy takes the lock while it runs.")
    elif lock.stale:
        lines.append(f"Lock: {lock.describe()} (stale: its process is gone; the deploy takes it over).")
    else:
        lines.append(f"Lock: {lock.describe()}.")
    return "\n".join(clean(line, 2000) for line in lines)


def why_no_resume(room) -> str:
    """R with nothing to resume: what is so instead (room: may_act, read_only_why, rolling_back, board)."""
    board = room.board
    if not room.may_act:
        return f"{room.read_only_why or 'read-only'}: you may watch, not act"
    if board.status is None:
        return "no deploy has run: nothing to resume (d deploys)"
    what = f"deploy #{board.rollout_id} of {board.revision}"
    if board.status in ev.ROLLOUT_FINAL:
        return f"{what} ended {board.status.replace('_', ' ')}: nothing to resume (d deploys)"
    if room.rolling_back:
        return "a rollback runs: nothing to resume"
    if board.status == ev.R_PAUSED:
        return f"{what} is paused: p resumes it"
    return f"{what} is running: nothing to resume"
