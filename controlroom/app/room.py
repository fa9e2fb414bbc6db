"""What the app knows of its server beyond the board: who we are and may we act, what the server runs now (busy,
paused, rolling back), the staged and live revisions, who else is attached and who drives.

`Room` merges the server's snapshot and its numbered events into the Board and this state; it never paints (the
app's 15 Hz flush does) and holds no Textual: what it has to say goes through the `say` it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.identity import current_user
from controlroom.engine.board import Board

# the events the board never hears: a flag change and a chat failure are the flags pane's and the status line's
NOT_BOARD = (ev.FlagChanged, ev.AnnouncementFailed)
BOARD_EVENTS = tuple(k for k in ev.EVENT_TYPES.values() if k not in NOT_BOARD)


class Room:
    """The board and the state around it, as the server said."""

    def __init__(self, cfg: Config, say: Callable[..., None]) -> None:
        self._say = say
        self.board = Board()
        self.board.plan([(p.name, p.hosts, p.max_failed, p.auto) for p in cfg.phases])
        self.user = current_user()  # until the server says who we are (from the socket's peer credentials)
        self.may_act = False  # until the server's hello says we may
        self.read_only_why = ""
        self.client_no = 0  # our number in the presence list
        self.seq = 0  # the number of the last event merged into the board
        self.busy = ""  # what the server runs now: deploy, resume, rollback, rerun, or nothing
        self.paused = False
        self.rolling_back = False
        self.staged: str | None = None  # the revision a deploy ships
        self.live: str | None = None  # what the fleet runs now
        self.unreached_live: str | None = None  # what the hosts no deploy has reached run (asked of one of them)
        self.revisions_loaded = asyncio.Event()
        self.last_finished: ev.RolloutFinished | None = None
        self.proceeded: object = None  # the gate or halt the operator already said go to
        self.jump_to: str | None = None  # the grid's cursor goes there at the next flush (a failed host)
        self.presence: list[dict] = []  # the server's attached clients: user, origin, client, role
        self.driver: dict | None = None  # who drives the server's operation now
        self.presence_dirty = False

    @property
    def driven(self) -> bool:
        """The rollout on the board is run by the server now (a halted one may be waiting with nothing driving)."""
        return bool(self.busy)

    # ------------------------------------------------------------------------------------------- the server says
    def hello(self, hello: dict, may_act: bool) -> None:
        self.user = str(hello.get("user") or self.user)
        self.may_act = may_act
        self.client_no = int(hello.get("client_no") or 0)

    def snapshot(self, msg: dict) -> bool:
        """The whole state (on attach, or after falling behind): the board is refilled in place (the panes hold
        it), and what the events would have said is taken from the snapshot. False: not a snapshot."""
        try:
            fresh = Board.from_snapshot(msg["board"])
        except (ValueError, KeyError):
            return False
        vars(self.board).update(vars(fresh))
        self.seq = int(msg.get("seq") or 0)
        self.busy = str(msg.get("busy") or "")
        self.rolling_back = self.busy == "rollback"
        engine = msg.get("engine_status")
        self.paused = engine == ev.R_PAUSED
        board = self.board
        if engine and board.status not in ev.ROLLOUT_FINAL and engine != board.status:
            board.status = engine  # the engine's own status says what it waits on now
            if engine != ev.R_HALTED:
                board.halted = None
        self.last_finished = board.finished
        if board.status == ev.R_HALTED and board.halted is not None and board.halted.failed:
            self.jump_to = board.halted.failed[0]
        if board.status is None and self.staged is not None:
            board.revision, board.previous = self.staged, self.live
        if board.status == ev.R_HALTED and not self.busy and board.rollout_id:
            self._say(f"deploy #{board.rollout_id} of {board.revision} by {board.user} stopped without "
                      "finishing: R resumes it, b rolls it back", title="A deploy is halted", severity="warning",
                      timeout=20)
        board.dirty = True
        return True

    def event(self, e: ev.Event, seq: int = 0) -> None:
        """Every event the server numbered, in order (but a flag change and a chat failure): merge into the board,
        never paint here."""
        board = self.board
        board.apply(e)
        kind = type(e)
        if kind is ev.HostOutput or kind is ev.HostStateChanged:  # the hot path: the grid's flush shows them
            return
        if kind is ev.PhaseHalted and e.failed:
            self.jump_to = e.failed[0]
        elif kind is ev.RolloutStarted:
            self.busy = self.busy or "deploy"
            self.paused = False
            self.proceeded = None
        elif kind is ev.RolloutPaused:
            self.paused = True
        elif kind is ev.RolloutResumed:
            if self.paused:
                self.paused = False
            else:  # the engine left a halt (the failed hosts were retried, skipped or proceeded past)
                board.halted = None
                board.status = ev.R_WAITING if board.gate is not None else ev.R_RUNNING
        elif kind is ev.OperatorAction and e.action == "rollback":
            self.busy = "rollback"
            self.rolling_back = True
        elif kind is ev.RolloutInterrupted:
            self.busy = ""
            board.status = ev.R_HALTED
        elif kind is ev.RolloutFinished:
            self._finished(e)
        if self.paused and board.status == ev.R_RUNNING:
            board.status = ev.R_PAUSED  # the phase began, but no host starts while paused
        board.dirty = True

    def _finished(self, fin: ev.RolloutFinished) -> None:
        self.last_finished = fin
        self.busy = ""
        self.rolling_back = False
        self.paused = False
        if fin.status == ev.R_DONE:
            self.live = fin.revision
        mark = ev.marks_text(fin.marks, fin.skipped)  # a marked result is never told as plain good news
        sev = "information" if fin.status in (ev.R_DONE, ev.R_ROLLED_BACK) and not mark else "warning"
        self._say(f"{fin.done} done, {fin.failed} failed, {fin.skipped} skipped", severity=sev,
                  title=f"Rollout of {fin.revision}: {fin.status.replace('_', ' ')}"
                        + (f" {ev.MARK_SYMBOL} {mark}" if mark else ""))

    def revisions(self, reply: dict | None) -> None:
        """The server's `revisions` answer: what is staged, what runs."""
        if reply is not None:
            self.staged, self.live = reply.get("staged"), reply.get("live")
            self.unreached_live = reply.get("unreached")  # what the hosts no deploy reached run
            if reply.get("staged_error"):
                self._say(reply["staged_error"], title="No staged revision", severity="error", timeout=10)
            if reply.get("live_error"):
                self._say(reply["live_error"], title="Live revision unknown", severity="warning")
            if self.board.status is None:
                self.board.revision, self.board.previous = self.staged, self.live
                self.board.dirty = True
        self.revisions_loaded.set()

    # ------------------------------------------------------------------------------------------- presence
    def set_presence(self, clients: object, driver: object) -> None:
        """Who is attached to the server and who drives its operation (the server's word, from peer creds)."""
        if not isinstance(clients, list):
            return
        self.presence = [c for c in clients if isinstance(c, dict)]
        self.driver = driver if isinstance(driver, dict) else None
        self.presence_dirty = True

    def driven_elsewhere(self) -> str | None:
        """The question to ask before acting on a deploy another person drives, or None (nobody else does)."""
        d = self.driver
        if d is None or not self.busy or str(d.get("user")) == self.user:
            return None
        if not any(c.get("no") == d.get("no") for c in self.presence):
            return None  # they left: nobody is at it (the server does not ask either)
        where = f" from {d['origin']}" if d.get("origin") else ""
        return f"{d.get('user')} is driving {self.board.revision or 'the deploy'}{where}; act anyway?"
