"""The journal: SQLite in WAL mode, the one truth of what happened.

It holds the deploy log, the lock, rollouts, host runs and every host transition. ``record`` commits an event and
only then hands it to subscribers, so nothing shown on a screen was ever unknown to the journal.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controlroom import events as ev
from controlroom import schema
from controlroom.errors import LockedError
from controlroom.identity import current_origin, current_user  # noqa: F401 - who did it; others import it from here


@dataclass(frozen=True)
class LogEntry:
    id: int
    at: float
    user: str
    kind: str
    text: str
    revision: str | None = None
    origin: str | None = None

    def line(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        rev = f" {self.revision}" if self.revision and self.revision not in self.text else ""
        text = f" {self.text}" if self.text else ""
        who = f"{self.user}@{self.origin}" if self.origin else self.user  # the SSH client address, when known
        return f"[{stamp}] [{who}] {self.kind}{rev}{text}"


@dataclass(frozen=True)
class Lock:
    user: str
    at: float
    reason: str
    pid: int | None
    hostname: str | None
    rollout_id: int | None
    origin: str | None = None
    stale: bool = False

    @property
    def parked(self) -> bool:
        """A deploy's lock kept while the deploy waits for a decision with no process driving it."""
        return bool(self.rollout_id) and not self.pid

    @property
    def live(self) -> bool:
        """Held by a deploy process that is running now."""
        return bool(self.rollout_id) and bool(self.pid) and not self.stale

    def describe(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.at))
        if self.parked:
            return f"deploy #{self.rollout_id} by {self.user}, {stamp}: {self.reason}"
        if self.rollout_id:
            what = f"deploy #{self.rollout_id} by {self.user} since {stamp} (pid {self.pid} on {self.hostname})"
            return what + (" — stale: that process is gone" if self.stale else "")
        return f"NO DEPLOY PLEASE — {self.user}, {stamp}: {self.reason}"


@dataclass(frozen=True)
class RolloutRecord:
    id: int
    revision: str
    previous: str | None
    user: str
    status: str
    phase: int
    started_at: float
    finished_at: float | None
    pid: int | None
    hostname: str | None
    phases: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class HostRunRecord:
    host: str
    phase: int
    state: str
    step: int
    steps: int
    steps_done: int
    reason: str
    revision: str | None
    previous: str | None


def pid_alive(pid: int | None, hostname: str | None = None) -> bool:
    """Whether a process of this machine (or, when hostname names another machine, maybe of that one) lives."""
    if not pid:
        return False
    if hostname and hostname != socket.gethostname():
        return True  # another machine's process: we cannot tell, so it is not stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    """One SQLite database per state directory; safe for several processes (WAL, busy timeout)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """Connect to an existing journal.db (see Journal.open); raises JournalError naming the path."""
        self.path = path
        self.readonly = readonly
        self._subscribers: list[Callable[[ev.Event], None]] = []
        self.db = schema.connect(path, readonly=readonly)

    @classmethod
    def open(cls, state_dir: Path, *, readonly: bool = False) -> Journal:
        """Open state_dir/journal.db, creating both for the team (dir 0770 keeping setgid, file 0660, whatever the
        umask) and migrating it to the current schema; several processes may do this at once.

        readonly: never write, for a journal that is read-only for this user (`controlroom log`); nothing is
        created or migrated. Raises JournalError naming the path and what to do; JournalSetupError (exit 2) for a
        world-writable directory or file, or a file written by a newer controlroom.
        """
        return cls(schema.prepare(Path(state_dir), readonly=readonly), readonly=readonly)

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        try:
            self.db.close()
        except sqlite3.Error:
            pass

    def subscribe(self, fn: Callable[[ev.Event], None]) -> None:
        self._subscribers.append(fn)

    # ------------------------------------------------------------------------------------------ events
    def record(self, event: ev.Event) -> None:
        """Commit the event (and what it changes), then publish it to subscribers."""
        if not isinstance(event, ev.HostOutput):
            with self._tx():
                self._apply(event)
        for fn in self._subscribers:
            fn(event)

    def _tx(self, immediate: bool = False) -> _Tx:
        return _Tx(self.db, immediate)

    def _apply(self, e: ev.Event) -> None:
        db = self.db
        data = e.to_dict()
        db.execute(
            "INSERT INTO events (rollout_id, at, type, data) VALUES (?, ?, ?, ?)",
            (e.rollout_id, e.at, e.event_type, json.dumps(data)),
        )
        if isinstance(e, ev.RolloutStarted):
            db.execute("UPDATE rollouts SET status = ? WHERE id = ?", (ev.R_RUNNING, e.rollout_id))
            if not e.resumed:
                for phase, (_, hosts) in enumerate(e.phases):
                    db.executemany(
                        "INSERT OR IGNORE INTO host_runs (rollout_id, host, phase, state, step, steps, steps_done,"
                        " reason, updated_at) VALUES (?, ?, ?, 'pending', 0, 0, 0, '', ?)",
                        [(e.rollout_id, h, phase, e.at) for h in hosts],
                    )
        elif isinstance(e, ev.HostStateChanged):
            done = e.steps_done
            db.execute(
                "UPDATE host_runs SET state = ?, step = ?, steps = ?, reason = ?, revision = COALESCE(?, revision),"
                " previous = COALESCE(?, previous), steps_done = ?, updated_at = ?"
                " WHERE rollout_id = ? AND host = ?",
                (e.state, e.step, e.steps, e.reason, e.revision, e.previous, done, e.at, e.rollout_id, e.host),
            )
            if e.state in (ev.DONE, ev.ROLLED_BACK) and e.revision:
                db.execute(
                    "INSERT INTO hosts (host, live, previous, rollout_id, updated_at) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT(host) DO UPDATE SET live = excluded.live, previous = excluded.previous,"
                    " rollout_id = excluded.rollout_id, updated_at = excluded.updated_at",
                    (e.host, e.revision, e.previous, e.rollout_id, e.at),
                )
        elif isinstance(e, ev.PhaseStarted):
            db.execute("UPDATE rollouts SET phase = ?, status = ? WHERE id = ?", (e.phase, ev.R_RUNNING, e.rollout_id))
        elif isinstance(e, ev.PhaseHalted):
            db.execute("UPDATE rollouts SET status = ? WHERE id = ?", (ev.R_HALTED, e.rollout_id))
        elif isinstance(e, ev.GateWaiting):
            db.execute("UPDATE rollouts SET status = ?, phase = ? WHERE id = ?", (ev.R_WAITING, e.phase, e.rollout_id))
        elif isinstance(e, (ev.GatePassed, ev.RolloutResumed)):
            db.execute("UPDATE rollouts SET status = ? WHERE id = ?", (ev.R_RUNNING, e.rollout_id))
        elif isinstance(e, ev.RolloutPaused):
            db.execute("UPDATE rollouts SET status = ? WHERE id = ?", (ev.R_PAUSED, e.rollout_id))
        elif isinstance(e, ev.RolloutFinished):
            db.execute(
                "UPDATE rollouts SET status = ?, finished_at = ? WHERE id = ?", (e.status, e.at, e.rollout_id)
            )
        elif isinstance(e, ev.LogEntryAdded):
            db.execute(
                "INSERT INTO log (at, user, origin, kind, text, revision, rollout_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (e.at, e.user, current_origin(), e.kind, e.text, e.revision, e.rollout_id or None),
            )

    # ------------------------------------------------------------------------------------------ log
    def add_log(self, user: str, kind: str, text: str, revision: str | None = None, rollout_id: int = 0) -> LogEntry:
        """Append to the deploy log (committed, then published as LogEntryAdded)."""
        e = ev.LogEntryAdded(rollout_id, user=user, kind=kind, text=text, revision=revision)
        self.record(e)
        return LogEntry(0, e.at, user, kind, text, revision, current_origin())

    def log(self, limit: int = 200) -> list[LogEntry]:
        """The last `limit` entries of the deploy log, oldest first. Never waits for a writer (WAL)."""
        try:
            rows = self.db.execute(
                "SELECT id, at, user, kind, text, revision, origin FROM log ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as e:
            raise schema.explain(e, self.db) from None
        return [LogEntry(*r) for r in reversed(rows)]

    # ------------------------------------------------------------------------------------------ lock
    def lock(self) -> Lock | None:
        row = self.db.execute(
            "SELECT user, at, reason, pid, hostname, rollout_id, origin FROM lock WHERE id = 1"
        ).fetchone()
        if not row:
            return None
        user, at, reason, pid, hostname, rollout_id, origin = row
        return Lock(user, at, reason, pid, hostname, rollout_id, origin, stale=bool(pid) and not pid_alive(pid, hostname))

    def take_lock(
        self,
        user: str,
        reason: str,
        *,
        rollout_id: int | None = None,
        force_reason: str | None = None,
        takeover: bool = False,
    ) -> Lock:
        """Take the fleet lock, atomically. A deploy passes its rollout_id and holds the lock while it runs.

        Raises LockedError naming the holder when the fleet is locked by a person (unless force_reason is given)
        or by a live deploy (always). A lock left by a dead process is taken over, with a log entry.
        """
        pid = os.getpid() if rollout_id else None
        host = socket.gethostname() if rollout_id else None
        now = time.time()
        notes: list[tuple[str, str]] = []
        saved: str | None = None
        with self._tx(immediate=True):
            cur = self.lock()
            if cur is not None:
                if rollout_id and cur.rollout_id == rollout_id:
                    # the same deploy going on (resume, rollback): its own lock, parked or left by a dead process
                    if cur.stale:
                        notes.append(("LOCK TAKEN OVER", f"stale lock of deploy #{cur.rollout_id} by {cur.user} "
                                      f"(pid {cur.pid} is gone)"))
                    saved = self._saved()
                elif cur.live and cur.pid != os.getpid():
                    raise LockedError(f"the fleet is locked by {cur.describe()}")
                elif cur.rollout_id and cur.stale:
                    notes.append(("LOCK TAKEN OVER", f"stale lock of deploy #{cur.rollout_id} by {cur.user} "
                                  f"(pid {cur.pid} is gone)"))
                elif rollout_id and force_reason:
                    notes.append(("FORCE", f"deploy past the lock of {cur.describe()}: {force_reason}"))
                    if not cur.rollout_id:
                        saved = json.dumps([cur.user, cur.origin, cur.at, cur.reason])  # put back afterwards
                elif not rollout_id and not cur.rollout_id and cur.user == user:
                    pass  # the same person updates their message
                elif takeover:
                    notes.append(("LOCK TAKEN OVER", f"lock of {cur.describe()}"))
                else:
                    raise LockedError(
                        f"the fleet is locked: {cur.describe()}"
                        + ("; to deploy anyway use --force --reason TEXT" if rollout_id else "")
                    )
            self.db.execute(
                "INSERT OR REPLACE INTO lock (id, user, origin, at, reason, pid, hostname, rollout_id, saved)"
                " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (user, current_origin(), now, reason, pid, host, rollout_id, saved),
            )
            entries = [ev.LogEntryAdded(rollout_id or 0, user=user, kind=kind, text=text) for kind, text in notes]
            if not rollout_id:
                entries.append(ev.LogEntryAdded(0, user=user, kind="LOCK", text=reason))
            for e in entries:
                self._apply(e)
        for e in entries:
            self._publish(e)
        lock = Lock(user, now, reason, pid, host, rollout_id, current_origin())
        self._publish(ev.LockChanged(rollout_id or 0, held=True, user=user, reason=reason))
        return lock

    def _saved(self) -> str | None:
        row = self.db.execute("SELECT saved FROM lock WHERE id = 1").fetchone()
        return row[0] if row else None

    def park_lock(self, rollout_id: int, reason: str) -> None:
        """The deploy's process is leaving while the deploy waits for a decision: keep the fleet locked for it."""
        with self._tx(immediate=True):
            self.db.execute(
                "UPDATE lock SET pid = NULL, hostname = NULL, reason = ?, at = ? WHERE id = 1 AND rollout_id = ?",
                (reason, time.time(), rollout_id),
            )
        self._publish(ev.LockChanged(rollout_id, held=True, user=None, reason=reason))

    def release_lock(self, user: str, *, rollout_id: int | None = None, manual: bool = True) -> Lock | None:
        """Release the lock. A person cannot release a live deploy's lock; a deploy releases only its own."""
        entries: list[ev.LogEntryAdded] = []
        restored = None
        with self._tx(immediate=True):
            cur = self.lock()
            if cur is None:
                return None
            if rollout_id is not None:
                if cur.rollout_id != rollout_id:
                    return None
            elif cur.live:
                raise LockedError(f"cannot unlock: held by the running {cur.describe()}")
            saved = self._saved()
            self.db.execute("DELETE FROM lock WHERE id = 1")
            if saved and rollout_id is not None:
                # a forced deploy is over: the person's lock it went past holds again
                restored = json.loads(saved)
                self.db.execute(
                    "INSERT INTO lock (id, user, origin, at, reason) VALUES (1, ?, ?, ?, ?)", tuple(restored)
                )
                entries.append(ev.LogEntryAdded(rollout_id, user=user, kind="LOCK RESTORED",
                                                text=f"{restored[0]}: {restored[3]}"))
            if manual:
                text = f"released the lock of {cur.user} ({cur.reason})" if cur.user != user else cur.reason
                entries.append(ev.LogEntryAdded(0, user=user, kind="UNLOCK", text=text))
            for e in entries:
                self._apply(e)
        for e in entries:
            self._publish(e)
        if restored:
            self._publish(ev.LockChanged(rollout_id or 0, held=True, user=restored[0], reason=restored[3]))
        else:
            self._publish(ev.LockChanged(rollout_id or 0, held=False, user=user, reason=""))
        return cur

    def _publish(self, event: ev.Event) -> None:
        for fn in self._subscribers:
            fn(event)

    # ------------------------------------------------------------------------------------------ rollouts
    def new_rollout(self, revision: str, previous: str | None, user: str, phases) -> int:
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO rollouts (revision, previous, user, status, phase, started_at, pid, hostname, phases)"
                " VALUES (?, ?, ?, 'starting', 0, ?, ?, ?, ?)",
                (revision, previous, user, time.time(), os.getpid(), socket.gethostname(), json.dumps(phases)),
            )
            return int(cur.lastrowid)

    def discard_rollout(self, rollout_id: int) -> None:
        """Forget a rollout that never started (it lost the race for the lock)."""
        with self._tx():
            self.db.execute("DELETE FROM rollouts WHERE id = ? AND status = 'starting'", (rollout_id,))

    def claim_rollout(self, rollout_id: int) -> None:
        """This process now drives the rollout (after a resume)."""
        with self._tx():
            self.db.execute(
                "UPDATE rollouts SET pid = ?, hostname = ? WHERE id = ?", (os.getpid(), socket.gethostname(), rollout_id)
            )

    def rollout(self, rollout_id: int | None = None) -> RolloutRecord | None:
        """One rollout, or the latest when rollout_id is None."""
        q = ("SELECT id, revision, previous, user, status, phase, started_at, finished_at, pid, hostname, phases"
             " FROM rollouts ")
        row = (
            self.db.execute(q + "WHERE id = ?", (rollout_id,)).fetchone()
            if rollout_id
            else self.db.execute(q + "ORDER BY id DESC LIMIT 1").fetchone()
        )
        if not row:
            return None
        phases = tuple((name, tuple(hosts)) for name, hosts in json.loads(row[10] or "[]"))
        return RolloutRecord(*row[:10], phases=phases)

    def host_runs(self, rollout_id: int) -> dict[str, HostRunRecord]:
        rows = self.db.execute(
            "SELECT host, phase, state, step, steps, steps_done, reason, revision, previous FROM host_runs"
            " WHERE rollout_id = ?",
            (rollout_id,),
        ).fetchall()
        return {r[0]: HostRunRecord(*r) for r in rows}

    def live_revisions(self) -> dict[str, tuple[str | None, str | None]]:
        """host -> (live, previous) as last recorded."""
        return {h: (live, prev) for h, live, prev in self.db.execute("SELECT host, live, previous FROM hosts")}

    def transitions(self, rollout_id: int, host: str | None = None) -> list[dict]:
        q = "SELECT data FROM events WHERE rollout_id = ? AND type = 'HostStateChanged'"
        rows = self.db.execute(q + " ORDER BY id", (rollout_id,)).fetchall()
        out = [json.loads(r[0]) for r in rows]
        return [d for d in out if host is None or d["host"] == host]


class _Tx:
    """BEGIN IMMEDIATE .. COMMIT, ROLLBACK on error; a write the file or the disk refuses raises JournalError.

    Always IMMEDIATE (`immediate` is kept for the callers that say so): every transaction here writes, and taking
    the write lock first means any wait happens at BEGIN, bounded by schema.BUSY_TIMEOUT, instead of a failure later
    on a stale read snapshot (SQLITE_BUSY_SNAPSHOT), which no busy timeout waits out.
    """

    def __init__(self, db: sqlite3.Connection, immediate: bool = False) -> None:
        self.db = db
        self.immediate = immediate

    def __enter__(self) -> _Tx:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise schema.explain(e, self.db) from None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as e:
                self._rollback()
                raise schema.explain(e, self.db) from None
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise schema.explain(exc, self.db) from None

    def _rollback(self) -> None:
        if self.db.in_transaction:  # SQLite may have rolled back already (a full disk, an I/O error)
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
