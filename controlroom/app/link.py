"""The app's link to the control-room server: connect (starting the server when none answers), attach, and merge
the snapshot and the numbered events into the board; the lock and the deploy log come from the server too.

Nothing here opens SSH or holds an engine: the server does both. When the server goes away (killed, stopped) the
link connects again, which starts a new server; its snapshot shows a deploy that nothing drives as halted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace

from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.engine.board import Board
from controlroom.server.client import Client, connect
from controlroom.server.wire import Lock
from widgets.deploy_log import entry_line

RECONNECT = 1.0  # seconds between attempts to reach the server again
HOST_LINES = 200  # lines of one host's output kept while its view is open (the view shows the last 200)


class Link:
    """The ControlRoom's side of the socket (mixed into it): connection, snapshot, events, journal, host output."""

    # ------------------------------------------------------------------------------------------- connection
    async def _link(self) -> None:
        """Connect, attach, follow; connect again whenever the server goes away, until the app closes."""
        said = False
        while not self.closing:
            try:
                client = await connect(self.cfg, read_only=self.read_only_asked, kind="web" if self.is_web else "app")
            except (ControlroomError, OSError) as e:  # OSError: a server dying as we knocked (reset)
                if not said:
                    self._say(str(e), title="Cannot reach the control-room server", severity="error", timeout=15)
                    said = True
                await asyncio.sleep(RECONNECT)
                continue
            if self.closing:
                await client.close()
                return
            said = False
            self.client = client
            self._hello(client)
            try:
                await client.request("attach")  # a fresh snapshot, then every event after it
                self.run_worker(self._load_revisions(), name="revisions", group="revisions", exclusive=True,
                                exit_on_error=False)
                await self._follow(client)
            except ControlroomError:
                pass
            finally:
                self.client = None
                await client.close()
            if self.closing:
                return
            self.busy = ""
            self._on_presence({"presence": [], "driver": None})  # nobody is known to be attached any more
            self._say("the control-room server went away: connecting again (a deploy it ran shows halted)",
                      severity="warning", timeout=10)
            await asyncio.sleep(RECONNECT)

    def _hello(self, client: Client) -> None:
        hello = client.hello
        self.user = str(hello.get("user") or self.user)
        self.may_act = client.may_act
        self.client_no = int(hello.get("client_no") or 0)
        client.ask_anyway = self.ask_anyway  # another person drives the deploy: the operator is asked first
        if hello.get("warning"):
            self._say(str(hello["warning"]), severity="warning", timeout=15)
        if not self.may_act:
            self.read_only_why = ("read-only (--read-only)" if self.read_only_asked
                                  else f"read-only: {self.user} is not among [access] operators")
            self.sub_title = f"{self.cfg.path} · {self.read_only_why}"
            self._say(f"{self.read_only_why}: you may watch, not act", title="Read-only", timeout=10)
        self.connected.set()
        self._offered = ()
        self.refresh_bindings()

    async def _follow(self, client: Client) -> None:
        while True:
            msg = await client.messages.get()
            op = msg.get("op")
            if op == "event":
                self._on_wire_event(msg)
            elif op == "snapshot":
                self._on_snapshot(msg)
                self._on_presence(msg)
            elif op == "presence":
                self._on_presence(msg)
            elif op == "closed":
                return

    async def send(self, op: str, **args) -> dict | None:
        """One intent to the server; its refusal or failure is shown as the server's one line. None when refused."""
        client = self.client
        if client is None:
            self._say("not connected to the control-room server (connecting again)", severity="error")
            return None
        try:
            return await client.request(op, **args)
        except ControlroomError as e:
            self._say(str(e), title="Refused" if "refused" in str(e) else "Not done", severity="error", timeout=10)
            return None

    # ------------------------------------------------------------------------------------------- state in
    def _on_snapshot(self, msg: dict) -> None:
        """The whole state (on attach, or after falling behind): the board is refilled in place (the panes hold
        it), and what the events would have said is taken from the snapshot."""
        try:
            fresh = Board.from_snapshot(msg["board"])
        except (ValueError, KeyError):
            return
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
            self._jump_to = board.halted.failed[0]
        if board.status is None and self.staged is not None:
            board.revision, board.previous = self.staged, self.live
        if board.status == ev.R_HALTED and not self.busy and board.rollout_id:
            self._say(f"deploy #{board.rollout_id} of {board.revision} by {board.user} stopped without "
                      "finishing: R resumes it, b rolls it back", title="A deploy is halted", severity="warning",
                      timeout=20)
        for host in list(self._followed):  # its output again, numbered as this server numbers it
            self._followed[host] = None
            self._want_host(host)
        board.dirty = True
        self.want_journal()

    def _on_wire_event(self, msg: dict) -> None:
        seq = int(msg.get("seq") or 0)
        if seq <= self.seq:
            return  # the snapshot had it
        self.seq = seq
        try:
            e = ev.from_wire(msg["event"])
        except (ValueError, KeyError, TypeError):
            return
        self._on_engine_event(e, seq)

    def _on_engine_event(self, e: ev.Event, seq: int = 0) -> None:
        """Every event the server numbered, in order: merge into the board, never paint here."""
        board = self.board
        board.apply(e)
        kind = type(e)
        if kind is ev.HostOutput:  # the hot path
            run = self._followed.get(e.host)
            if run is not None and seq > run.seq:
                run.output.append(e.line)
            return
        if kind is ev.HostStateChanged:
            if e.host in self._followed:
                self._want_host(e.host)  # its last command's result changed
            return
        if kind is ev.PhaseHalted and e.failed:
            self._jump_to = e.failed[0]
        elif kind is ev.RolloutStarted:
            self.busy = self.busy or "deploy"
            self.paused = False
            self._proceeded = None
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
        elif kind is ev.LogEntryAdded or kind is ev.LockChanged:
            self.want_journal()
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

    async def _load_revisions(self) -> None:
        reply = await self.send("revisions")
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
    def _on_presence(self, msg: dict) -> None:
        """Who is attached to the server and who drives its operation (the server's word, from peer creds)."""
        clients = msg.get("presence")
        if not isinstance(clients, list):
            return
        self.presence = [c for c in clients if isinstance(c, dict)]
        driver = msg.get("driver")
        self.driver = driver if isinstance(driver, dict) else None
        self._presence_dirty = True

    def driven_elsewhere(self) -> str | None:
        """The question to ask before acting on a deploy another person drives, or None (nobody else does)."""
        d = self.driver
        if d is None or not self.busy or str(d.get("user")) == self.user:
            return None
        if not any(c.get("no") == d.get("no") for c in self.presence):
            return None  # they left: nobody is at it (the server does not ask either)
        where = f" from {d['origin']}" if d.get("origin") else ""
        return f"{d.get('user')} is driving {self.board.revision or 'the deploy'}{where}; act anyway?"

    async def ask_anyway(self, question: str) -> bool:
        """The server says another person drives what an intent acts on: ask (once per driver and decision)."""
        d = self.driver or {}
        if self._accepted_driver is not None and self._accepted_driver == (d.get("user"), d.get("no")):
            return True  # asked just now, before the flow's own dialog
        from widgets.dialogs import ConfirmDialog

        answer = await self.push_screen_wait(
            ConfirmDialog("Another person drives this deploy", question, "Act anyway"))
        return bool(answer)

    # ------------------------------------------------------------------------------------------- journal
    def poll_journal(self) -> None:
        """Teammates may write to the journal from other processes: ask the server what it holds now."""
        if self.client is not None:
            self.want_journal()

    def want_journal(self) -> None:
        """Fetch the lock and the new deploy-log entries (one request at a time; a wish meanwhile asks again)."""
        if self._journal_fetching:
            self._journal_again = True
            return
        self._journal_fetching = True
        self.run_worker(self._fetch_journal(), name="journal", group="journal", exit_on_error=False)

    async def _fetch_journal(self) -> None:
        try:
            while self.client is not None and not self.closing:
                self._journal_again = False
                reply = await self.client.request("journal", since=self._last_log_id)
                for d in reply.get("log", ()):
                    if d["id"] > self._last_log_id:
                        self._last_log_id = d["id"]
                        self._new_entries.append(entry_line(d["at"], d["user"], d["kind"], d["text"],
                                                             d.get("revision")))  # cleaned there
                        self._log_dirty = True
                lock = Lock.from_wire(reply.get("lock"))
                if lock != self._lock:
                    self._lock = lock
                    self._lock_dirty = True
                if not self._journal_again:
                    break
        except (ControlroomError, TypeError, KeyError):
            pass
        finally:
            self._journal_fetching = False

    async def fresh_lock(self) -> Lock | None:
        """The lock as the server sees it now (before a dialog that depends on it)."""
        client = self.client
        if client is not None:
            try:
                reply = await client.request("journal", since=self._last_log_id)
                self._lock = Lock.from_wire(reply.get("lock"))
                self._lock_dirty = True
            except (ControlroomError, TypeError, KeyError):
                pass
        return self._lock

    # ------------------------------------------------------------------------------------------- one host
    def follow_host(self, host: str) -> None:
        """Ask the server for the host's recent output and last result; HostOutput events then extend it."""
        self._followed[host] = None  # known to be wanted; filled by the reply
        self._want_host(host)

    def unfollow_host(self, host: str) -> None:
        self._followed.pop(host, None)

    def _want_host(self, host: str) -> None:
        if host in self._host_fetching:
            self._host_fetching[host] = True  # ask again when the current request is answered
            return
        self._host_fetching[host] = False
        self.run_worker(self._fetch_host(host), name=f"host {host}", group="host-output", exit_on_error=False)

    async def _fetch_host(self, host: str) -> None:
        try:
            while host in self._followed and self.client is not None:
                reply = await self.client.request("output", host=host)
                run = self._followed.get(host)
                result = reply.get("result")
                result = SimpleNamespace(**result) if result else None
                if run is None and host in self._followed:
                    run = SimpleNamespace(output=deque(reply.get("lines", ()), maxlen=HOST_LINES),
                                          seq=int(reply.get("seq") or 0), result=None, revision=None,
                                          previous=None)
                    self._followed[host] = run
                if run is not None:
                    run.result, run.revision, run.previous = result, reply.get("revision"), reply.get("previous")
                if not self._host_fetching.get(host):
                    break
                self._host_fetching[host] = False
        except (ControlroomError, TypeError, KeyError):
            pass
        finally:
            self._host_fetching.pop(host, None)

    def _engine_host(self, host: str):
        """What the host view shows for a host: the server's record of it once fetched, else None (the board)."""
        return self._followed.get(host)
