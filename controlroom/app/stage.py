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
from pathlib import Path

from controlroom.app.keys import SECONDARY
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.core.text import clean, took
from controlroom.engine.live import live_by_host
from controlroom.server.notify import failure_line
from controlroom.sources import stagediff
from widgets.diff_view import prepare_lexers
from widgets.stage_view import MAX_LINES, StageScreen
from widgets.staging_diff import StagingDiffPane
from widgets.status_line import StatusLine

STAGE_KINDS = ("STAGE OK", "STAGE FAILED")


class StageActions:
    """Mixed into the ControlRoom app (before Link): the staging diff pane, the stage key, chat failures."""

    _diff_checking = False
    _diff_again = False
    _diff_key: tuple | None = None  # (staged commit, live side) the pane shows
    _stage_running = False
    _stage_title = ""
    _stage_result = ""
    _stage_lines: deque | None = None
    _live_base: dict | None = None  # host -> revision, by the journal at the pane's last look
    _live_dirty = False  # a host took (or gave back) a revision since the pane's live line was drawn

    # ------------------------------------------------------------------------------------------- queries
    @property
    def staging_diff(self) -> StagingDiffPane:
        return self.main.query_one(StagingDiffPane)

    @property
    def status_line(self) -> StatusLine:
        return self.main.query_one(StatusLine)

    # ------------------------------------------------------------------------------------------- offered
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "search_diff":
            return True
        if action == "stage":
            if parameters == (0,) and action in SECONDARY and self.board.active:
                return False  # the footer has room for the rollout's own keys only; the key still works
            return self.may_act
        return super().check_action(action, parameters)  # type: ignore[misc]

    # ------------------------------------------------------------------------------------------- events
    def _on_engine_event(self, e: ev.Event, seq: int = 0) -> None:
        kind = type(e)
        if kind is ev.AnnouncementFailed:
            self._chat_failed(e)
            return
        if kind is ev.LogEntryAdded and e.kind in STAGE_KINDS:
            self._stage_logged(e)
        if kind is ev.HostStateChanged and e.state in (ev.DONE, ev.ROLLED_BACK) or kind is ev.RolloutStarted:
            self._live_dirty = True
        super()._on_engine_event(e, seq)  # type: ignore[misc]

    # ------------------------------------------------------------------------------------------- live side
    def _board_live(self) -> dict[str, str]:
        """host -> the revision it runs by the board's host events (done: the deploy's; rolled back: its own)."""
        return {n: hv.revision for n, hv in self.board.hosts.items()
                if hv.state in (ev.DONE, ev.ROLLED_BACK) and hv.revision}

    def _live_now(self, base: dict[str, str], over: dict[str, str]):
        """revision -> hosts: the journal's record at the last look, then what the host events said since."""
        m = dict(base)
        fill = self.unreached_live or self.live
        if over and not m and fill:  # nothing recorded yet: the hosts the events did not name run what one said
            m = {h.name: fill for h in self.cfg.hosts}
        m.update(over)
        return stagediff.counts_of(m)

    def fleet_live(self):
        """revision -> hosts of the inventory running it now, as the events say (what `d` tells the operator)."""
        m = dict(self._live_base or {})
        fill = self.unreached_live or self.live
        if fill:
            for h in self.cfg.hosts:
                m.setdefault(h.name, fill)
        m.update(self._board_live())
        return stagediff.counts_of(m)

    def follow_live(self) -> None:
        """The staging diff's live side follows the host events, not its poll: the line is drawn again, and the
        diff is loaded from the new side once most hosts run another revision."""
        if not self._live_dirty:
            return
        self._live_dirty = False
        try:
            pane = self.staging_diff
        except Exception:  # noqa: BLE001 - not composed yet
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
            self.want_diff(force=True)
        else:
            pane.show_live(line)

    def _chat_failed(self, e: ev.AnnouncementFailed) -> None:
        line = failure_line(e)
        with contextlib.suppress(Exception):  # not composed yet, or going away: the server log has it
            self.status_line.say(line, e.at)
        if e.gave_up:
            self._say(line, title="Chat", severity="warning", timeout=10)

    def _stage_logged(self, e: ev.LogEntryAdded) -> None:
        with contextlib.suppress(Exception):
            self.staging_diff.show_stage(f"{e.kind} {e.text}")
        self.want_diff()

    # ------------------------------------------------------------------------------------------- the diff
    def on_staging_diff_pane_stale(self, message: StagingDiffPane.Stale) -> None:
        self.want_diff()

    async def _load_revisions(self) -> None:
        await super()._load_revisions()  # type: ignore[misc]
        self.want_diff()  # the server said what the fleet runs: the diff at once, not at the pane's next look

    def want_diff(self, *, force: bool = False) -> None:
        """Look whether the staged ref or the live side moved, and show the diff again if so (force: load it
        anyway). One look at a time; a wish meanwhile looks again after it."""
        if self._diff_checking:
            self._diff_again = self._diff_again or force
            return
        self._diff_checking = True
        self.run_worker(self._check_diff(force), name="staging diff", group="staging-diff", exit_on_error=False)

    async def _check_diff(self, force: bool) -> None:
        try:
            while not self.closing:
                self._diff_again = False
                await self._look(force)
                if not self._diff_again:
                    break
                force = True
        finally:
            self._diff_checking = False

    async def _look(self, force: bool) -> None:
        cfg = self.cfg
        live, unreached = self.live, self.unreached_live
        hosts_known = self.revisions_loaded.is_set()
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
        if self.closing:
            return
        try:
            pane = self.staging_diff
        except Exception:  # noqa: BLE001 - not composed yet
            return
        if problem:
            self._diff_key = None
            pane.show_problem(problem)
        elif diff is not None:
            self._diff_key = key
            pane.show(diff)
            if diff.staged != self.staged and self.revisions_loaded.is_set():
                self.staged = diff.staged  # the staged ref moved: what a deploy would ship now
                if self.board.status is None:
                    self.board.revision = diff.staged
                    self.board.dirty = True

    # ------------------------------------------------------------------------------------------- search
    def action_search_diff(self) -> None:
        """`/`: search the staging diff (its tab first, on a small terminal)."""
        if self.screen is not self.main:
            return  # a dialog or a host's view is on top: `/` belongs to it
        if not self.main.has_class("-wide"):
            self.tabs.active = "tab-diff"
        self.staging_diff.action_search()

    # ------------------------------------------------------------------------------------------- stage
    def action_stage(self, _twin: int = 0) -> None:
        """`S`: run [release] stage in the server; its output streams into the stage view."""
        if self._stage_running:
            self._open_stage_view()  # it runs: show it again, never start a second one
            return
        if not self.cfg.release.stage:
            self._say(f"nothing to stage with: set [release] stage in {self.cfg.path}, "
                      "e.g. stage = \"make build REV={revision}\"", title="No stage command", severity="warning",
                      timeout=10)
            return
        self._once("stage", lambda: self.run_worker(self._stage_flow(), group="stage", exit_on_error=False))

    def _open_stage_view(self) -> None:
        if not isinstance(self.screen, StageScreen):
            self.push_screen(StageScreen(self._stage_title, self._stage_lines or (), self._stage_result))

    def _stage_view(self) -> StageScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, StageScreen)), None)

    async def _stage_flow(self) -> None:
        from controlroom.server.client import connect

        shown = self.staging_diff.diff if self._main is not None else None
        rev = clean((shown.staged if shown else None) or self.staged or "the staged revision", 80)
        self._stage_running, self._stage_result = True, ""
        self._stage_title, self._stage_lines = f"STAGE {rev}", deque(maxlen=MAX_LINES)
        self._open_stage_view()
        with contextlib.suppress(Exception):
            self.staging_diff.show_stage(f"staging {rev}...")
        try:
            result, ok = await self._stage_request(connect)
        finally:
            self._stage_running = False
        self._stage_result = result
        view = self._stage_view()
        if view is not None:
            view.finished(result)
        with contextlib.suppress(Exception):
            self.staging_diff.show_stage(result)
        self._say(result, title="Stage", severity="information" if ok else "error", timeout=10)
        self.want_diff()  # the pane follows what the stage left staged

    async def _stage_request(self, connect) -> tuple[str, bool]:
        try:
            c = await connect(self.cfg, read_only=self.read_only_asked)
        except (ControlroomError, OSError) as e:
            return f"STAGE not started: {clean(str(e), 200)}", False
        req = asyncio.ensure_future(c.request("stage", config=str(Path(self.cfg.path).resolve())))
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
        if self._stage_lines is not None:
            self._stage_lines.append(line)
        view = self._stage_view()
        if view is not None:
            view.add(line)
