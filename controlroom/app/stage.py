"""The staged revision in the app: the staging diff pane kept current, the stage key, and chat failures shown.

- The pane asks (every few seconds, one look at a time) whether the staged ref or the live side moved; the look
  runs git and reads the journal in a thread, never on the event loop, and only a moved side loads the diff again.
  A stage (ours, or one a teammate ran from the CLI) makes it look at once: the pane follows the staged ref.
- `S` asks the server to stage (op `stage`) over a connection of its own, as `controlroom stage` does, so the
  output lines come to this flow only; they stream into the stage view, and the result ("STAGE OK r2307 in 2 s")
  shows there, in the pane and as a notification.
- A chat channel that fails in the server (AnnouncementFailed) shows in the status line, one line, never a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from pathlib import Path

from controlroom.app.coalesce import Coalesced
from controlroom.app.room import Room
from controlroom.app.ui import Flows, Ui
from controlroom.config.config import Config
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.core.text import clean, took
from controlroom.engine.live import live_by_host
from controlroom.server.client import connect
from controlroom.sources import stagediff
from widgets.diff_view import prepare_lexers
from widgets.stage_view import MAX_LINES, StageScreen
from widgets.staging_diff import StagingDiffPane
from widgets.status_line import StatusLine

STAGE_KINDS = ("STAGE OK", "STAGE FAILED")


class StagingDiff:
    """The staging diff pane's controller: its looks at git and the journal, and its live side kept current from
    the host events."""

    def __init__(self, cfg: Config, room: Room, ui: Ui, pane: Callable[[], StagingDiffPane | None]) -> None:
        self._cfg = cfg
        self._room = room
        self.board = room.board
        self._ui = ui
        self._pane = pane
        self._diff_key: tuple | None = None  # (staged commit, live side) the pane shows
        self._live_base: dict | None = None  # host -> revision, by the journal at the pane's last look
        self._live_dirty = False  # a host took (or gave back) a revision since the pane's live line was drawn
        self._force = False  # the next look loads the diff even if neither side moved
        self._looks = Coalesced(self._look, lambda work: ui.run(work, name="staging diff", group="staging-diff"))

    # ------------------------------------------------------------------------------------------- events
    def on_event(self, e: ev.Event, seq: int = 0) -> None:
        """HostStateChanged, RolloutStarted, LogEntryAdded."""
        kind = type(e)
        if kind is ev.LogEntryAdded:
            if e.kind in STAGE_KINDS:
                pane = self._pane()
                if pane is not None:
                    pane.show_stage(f"{e.kind} {e.text}")
                self.want()
        elif kind is ev.RolloutStarted or e.state in (ev.DONE, ev.ROLLED_BACK):
            self._live_dirty = True

    # ------------------------------------------------------------------------------------------- live side
    def _board_live(self) -> dict[str, str]:
        """host -> the revision it runs by the board's host events (done: the deploy's; rolled back: its own)."""
        return {n: hv.revision for n, hv in self.board.hosts.items()
                if hv.state in (ev.DONE, ev.ROLLED_BACK) and hv.revision}

    def _live_now(self, base: dict[str, str], over: dict[str, str]):
        """revision -> hosts: the journal's record at the last look, then what the host events said since."""
        m = dict(base)
        fill = self._room.unreached_live or self._room.live
        if over and not m and fill:  # nothing recorded yet: the hosts the events did not name run what one said
            m = {h.name: fill for h in self._cfg.hosts}
        m.update(over)
        return stagediff.counts_of(m)

    def fleet_live(self):
        """revision -> hosts of the inventory running it now, as the events say (what `d` tells the operator)."""
        m = dict(self._live_base or {})
        fill = self._room.unreached_live or self._room.live
        if fill:
            for h in self._cfg.hosts:
                m.setdefault(h.name, fill)
        m.update(self._board_live())
        return stagediff.counts_of(m)

    def follow_live(self) -> None:
        """The staging diff's live side follows the host events, not its poll: the line is drawn again, and the
        diff is loaded from the new side once most hosts run another revision."""
        if not self._live_dirty:
            return
        self._live_dirty = False
        pane = self._pane()
        if pane is None:  # not composed yet
            return
        d = pane.diff
        if d is None or self._live_base is None:
            return
        counts = self._live_now(self._live_base, self._board_live())
        if not counts:
            return
        line = stagediff.live_line(counts)
        if line == d.live_line:
            return
        if counts.most_common(1)[0][0] != d.live:
            self.want(force=True)
        else:
            pane.show_live(line)

    # ------------------------------------------------------------------------------------------- the diff
    def want(self, *, force: bool = False) -> None:
        """Look whether the staged ref or the live side moved, and show the diff again if so (force: load it
        anyway). One look at a time; a wish meanwhile looks again after it."""
        self._force = self._force or force
        self._looks.want()

    async def _look(self) -> None:
        force, self._force = self._force, False
        cfg = self._cfg
        live, unreached = self._room.live, self._room.unreached_live
        hosts_known = self._room.revisions_loaded.is_set()
        over = self._board_live()  # read here, on the loop: the thread reads no board
        note = f"asked {cfg.phases[0].hosts[0]}" if cfg.phases and cfg.phases[0].hosts else "asked a host"

        def read() -> tuple[tuple | None, stagediff.StagingDiff | None, str]:
            try:
                base = live_by_host(cfg, unrecorded=unreached)
                counts = self._live_now(base, over)
                if not counts and live is None and not hosts_known:
                    return None, None, ""  # the server has not said what the fleet runs yet
                name, commit = stagediff.staged_commit(cfg)
                key = (commit, tuple(sorted(counts.items())) or live)
                self._live_base = base
                if key == self._diff_key and not force:
                    return key, None, ""
                d = stagediff.load(cfg, staged=name, counts=counts, live=live, live_note=note)
                prepare_lexers(d.lines)  # Pygments' first lookup is slow: here, not while drawing
                return key, d, ""
            except ControlroomError as err:
                return None, None, str(err)
            except Exception as err:  # noqa: BLE001 - git hung past its timeout, a journal it cannot read: one line
                return None, None, f"cannot read the staging diff: {type(err).__name__}: {clean(str(err), 200)}"

        key, diff, problem = await asyncio.to_thread(read)  # git and the journal, off the event loop
        if self._ui.closing:
            return
        pane = self._pane()
        if pane is None:  # not composed yet
            return
        if problem:
            self._diff_key = None
            pane.show_problem(problem)
        elif diff is not None:
            self._diff_key = key
            pane.show(diff)
            if diff.staged != self._room.staged and self._room.revisions_loaded.is_set():
                self._room.staged = diff.staged  # the staged ref moved: what a deploy would ship now
                if self.board.status is None:
                    self.board.revision = diff.staged
                    self.board.dirty = True


class Stager:
    """`S`: run [release] stage in the server; its output streams into the stage view, its result into the pane."""

    def __init__(self, cfg: Config, room: Room, flows: Flows, ui: Ui, diff: StagingDiff,
                 pane: Callable[[], StagingDiffPane | None], *, read_only: bool) -> None:
        self._cfg = cfg
        self._room = room
        self._flows = flows
        self._ui = ui
        self._diff = diff
        self._pane = pane
        self._read_only = read_only
        self._running = False
        self._title = ""
        self._result = ""
        self._lines: deque | None = None

    def stage(self) -> None:
        if self._running:
            self._open_view()  # it runs: show it again, never start a second one
            return
        if not self._cfg.release.stage:
            self._ui.say(f"nothing to stage with: set [release] stage in {self._cfg.path}, "
                         "e.g. stage = \"make build REV={revision}\"", title="No stage command", severity="warning",
                         timeout=10)
            return
        self._flows.run_once("stage", self._flow)

    def _open_view(self) -> None:
        if not isinstance(self._ui.screen, StageScreen):
            self._ui.show(StageScreen(self._title, self._lines or (), self._result))

    def _view(self) -> StageScreen | None:
        return next((s for s in self._ui.screen_stack if isinstance(s, StageScreen)), None)

    def _show_stage(self, text: str) -> None:
        pane = self._pane()
        if pane is not None:
            with contextlib.suppress(Exception):
                pane.show_stage(text)

    async def _flow(self) -> None:
        pane = self._pane()
        shown = pane.diff if pane is not None else None
        rev = clean((shown.staged if shown else None) or self._room.staged or "the staged revision", 80)
        self._running, self._result = True, ""
        self._title, self._lines = f"STAGE {rev}", deque(maxlen=MAX_LINES)
        self._open_view()
        self._show_stage(f"staging {rev}...")
        try:
            result, ok = await self._stage_request(connect)
        finally:
            self._running = False
        self._result = result
        view = self._view()
        if view is not None:
            view.finished(result)
        self._show_stage(result)
        self._ui.say(result, title="Stage", severity="information" if ok else "error", timeout=10)
        self._diff.want()  # the pane follows what the stage left staged

    async def _stage_request(self, connect) -> tuple[str, bool]:
        try:
            c = await connect(self._cfg, read_only=self._read_only)
        except (ControlroomError, OSError) as e:
            return f"STAGE not started: {clean(str(e), 200)}", False
        req = asyncio.ensure_future(c.request("stage", config=str(Path(self._cfg.path).resolve())))
        getter: asyncio.Future | None = None
        try:
            while True:
                getter = asyncio.ensure_future(c.messages.get())
                await asyncio.wait([req, getter], return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    self._stage_output(getter.result())
                if req.done():
                    while not c.messages.empty():
                        self._stage_output(c.messages.get_nowait())
                    break
            reply = req.result()
        except ControlroomError as e:
            return f"STAGE not done: {clean(str(e), 200)}", False
        finally:
            for f in (req, getter):
                if f is not None and not f.done():
                    f.cancel()
            await c.close()
        rev = clean(reply.get("revision"), 80)
        if reply.get("staged"):
            return f"STAGE OK {rev} in {took(reply.get('seconds', 0))}", True
        return f"STAGE FAILED {rev}: {clean(reply.get('reason'), 200)} after {took(reply.get('seconds', 0))}", False

    def _stage_output(self, msg: dict) -> None:
        if msg.get("op") != "stage_output":
            return
        line = clean(msg.get("line"), 2000)
        if self._lines is not None:
            self._lines.append(line)
        view = self._view()
        if view is not None:
            view.add(line)


class ChatFailures:
    """A chat channel that failed in the server: its one line in the status line; a notification once it gave up."""

    def __init__(self, ui: Ui, status_line: Callable[[], StatusLine | None]) -> None:
        self._ui = ui
        self._status_line = status_line

    def on_event(self, e: ev.AnnouncementFailed, seq: int = 0) -> None:
        line = e.line()
        status = self._status_line()
        if status is not None:
            with contextlib.suppress(Exception):  # going away: the server log has it
                status.say(line, e.at)
        if e.gave_up:
            self._ui.say(line, title="Chat", severity="warning", timeout=10)
