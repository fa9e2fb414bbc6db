"""The journal: SQLite in WAL mode, the one truth of what happened.

It holds the deploy log, the lock, rollouts, host runs and every host transition. ``record`` commits an event and
only then hands it to subscribers, so nothing shown on a screen was ever unknown to the journal.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from controlroom.core import events as ev
from controlroom.core.errors import DeployLost, JournalError
from controlroom.core.identity import Actor
from controlroom.journal import schema
from controlroom.journal.cursors import ChatCursors
from controlroom.journal.locks import Lock, Locks, epoch_key
from controlroom.journal.pg import PgStore
from controlroom.journal.store import SqliteStore, Store, open_store


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
    """One SQLite database per state directory (safe for several processes: WAL, busy timeout), or one PostgreSQL
    database several bastions share (pg.py): its ``store`` (store.py) says which. The fleet lock's row is kept by
    ``locks`` (locks.py), the flag history by a FlagHistory (flags.py), both through ``writing``."""

    def __init__(self, where: Path | Store, *, readonly: bool = False) -> None:
        """Connect to an existing journal.db (a path), or the journal of a store (see Journal.open); raises
        JournalError naming the path or the database (never its password)."""
        self.store: Store = where if isinstance(where, (SqliteStore, PgStore)) else SqliteStore(Path(where))
        self.path = self.store.path
        self.readonly = readonly
        self._subscribers: list[Callable[[ev.Event], None]] = []
        self.db = self.store.connect(readonly=readonly)
        self.locks = Locks(self)
        self._own: set[int] | None = None  # the ids of the events this process wrote, once it follows (follow())
        self._ids: list[tuple[ev.Event, int]] = []  # this process's events written while following, and their ids
        self._fences: dict[int, int] = {}  # rollout id -> the driver epoch this process drives it with (fence())

    @classmethod
    def open(cls, state_dir: Path, *, readonly: bool = False, url: str | None = None) -> Journal:
        """Open state_dir/journal.db, creating both for the team (dir 0770 keeping setgid, file 0660, whatever the
        umask) and migrating it to the current schema; several processes may do this at once.

        readonly: never write, for a journal that is read-only for this user (`controlroom log`); nothing is
        created or migrated. Raises JournalError naming the path and what to do; JournalSetupError (exit 2) for a
        world-writable directory or file, or a file written by a newer controlroom.

        url: the PostgreSQL journal of [state] journal instead (state_dir stays this bastion's: socket, pid).
        """
        return cls(open_store(Path(state_dir), url, readonly=readonly), readonly=readonly)

    @property
    def shared(self) -> bool:
        """Whether several bastions may share this journal (PostgreSQL)."""
        return self.store.shared

    def fleet_lock(self):
        """A new handle on the fleet's OS lock for an operation (fleetlock.FleetLock, or pg.PgFleetLock on a
        shared journal): acquire() or LockedError, release()."""
        return self.store.fleet_lock()

    def chat_cursors(self) -> ChatCursors:
        """The chat channels' cursors on a connection of their own (cursors.py)."""
        return ChatCursors(self.store)

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        try:
            self.db.close()
        except sqlite3.Error:
            pass  # (a PostgreSQL connection's close never raises)

    def subscribe(self, fn: Callable[[ev.Event], None]) -> None:
        self._subscribers.append(fn)

    # ------------------------------------------------------------------------------------------ events
    @property
    def state_dir(self) -> Path:
        return self.store.state_dir

    def record(self, event: ev.Event) -> None:
        """Commit the event (and what it changes), then publish it to subscribers."""
        if not isinstance(event, ev.HostOutput):
            self.check_same_file()
            with self._tx():
                self._apply(event)
        self._publish(event)

    def record_quietly(self, event: ev.Event) -> None:
        """Commit the event without publishing it (a gate's every check: clients need the verdict, not each one)."""
        with self._tx():
            self._apply(event)

    def check_same_file(self) -> None:
        """Refuse to write when journal.db was deleted or replaced under us: our writes would go nowhere, and a
        second process on the new file would think the fleet free. (A shared journal has no file to replace.)"""
        if not self.store.checks_file:
            return
        try:
            st = os.stat(self.path)
            now = (st.st_dev, st.st_ino)
        except OSError:
            now = None
        first = getattr(self, "_identity", None)
        if first is None:
            self._identity = now
            return
        if now != first:
            then = self.next_step()  # as the file this process used says (it still reads that one)
            raise JournalError(f"{self.path}: the journal was deleted or replaced while this process used it; "
                               "stopping here. Look at who did it; " + (
                                   f"with the old file back in its place, {then}" if then else
                                   "`controlroom log` shows what the journal now there holds"))

    def _tx(self, immediate: bool = False) -> _Tx:
        return _Tx(self.db, immediate)

    @contextlib.contextmanager
    def writing(self, *, check: bool = False) -> Iterator[Writing]:
        """One write transaction for the parts of the journal that keep their own tables (the lock, the flag
        history): what it executes and records commits together, and what it publishes is published once it has.
        ``check``: refuse first when journal.db was replaced under us (check_same_file)."""
        if check:
            self.check_same_file()
        w = Writing(self.db, self._apply)
        with self._tx():
            yield w
        for e in w.published:
            self._publish(e)

    # ------------------------------------------------------------------------------------------ the lock (locks.py)
    def lock(self) -> Lock | None:
        return self.locks.current()

    def take_lock(self, actor: Actor, reason: str, **kw) -> Lock:
        return self.locks.take(actor, reason, **kw)

    def park_lock(self, rollout_id: int, reason: str) -> None:
        self.locks.park(rollout_id, reason)

    def release_lock(self, actor: Actor, **kw) -> Lock | None:
        return self.locks.release(actor, **kw)

    def fence(self, rollout_id: int, epoch: int) -> None:
        """This process drives the deploy with driver epoch ``epoch`` (shared journal; set as its lock is taken):
        each of the deploy's events it records checks, in its own transaction, that the journal's epoch is still
        that one, else DeployLost and nothing is written (another bastion took the deploy over)."""
        self._fences[rollout_id] = epoch

    def check_fence(self, rollout_id: int | None) -> None:
        """In a write transaction: DeployLost when this process drives deploy ``rollout_id`` with an epoch another
        bastion's taking has passed (the lock's own writes: parking it, letting it go)."""
        if rollout_id in self._fences:
            self._check_fence(rollout_id)

    def unfence(self, rollout_id: int) -> None:
        self._fences.pop(rollout_id, None)

    def _check_fence(self, rollout_id: int) -> None:
        mine = self._fences[rollout_id]
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (epoch_key(rollout_id),)).fetchone()
        if row is not None and str(row[0]) == str(mine):
            return
        holder = self.db.execute('SELECT "user", hostname, pid FROM lock WHERE id = 1 AND rollout_id = ?',
                                 (rollout_id,)).fetchone()
        by = f" by {holder[0]} on {holder[1]} (pid {holder[2]})" if holder and holder[2] else ""
        raise DeployLost(f"this bastion lost deploy #{rollout_id}: it was taken over{by} (driver epoch "
                         f"{row[0] if row else '?'}, this bastion's {mine}); it acts on nothing more for it")

    def _apply(self, e: ev.Event, origin: str | None = None) -> None:
        """origin: a log entry's (the SSH client address of whoever wrote it; None when unknown)."""
        db = self.db
        if self._fences and e.rollout_id in self._fences:
            self._check_fence(e.rollout_id)
        data = e.to_dict()
        if self._own is not None:  # a server following a shared journal: its own events are not the others'
            event_id = db.execute(
                "INSERT INTO events (rollout_id, at, type, data) VALUES (?, ?, ?, ?) RETURNING id",
                (e.rollout_id, e.at, e.event_type, json.dumps(data)),
            ).fetchone()[0]
            self._own.add(event_id)
            self._ids.append((e, event_id))
            if len(self._ids) > 10_000:  # recorded quietly and never published (a gate's every check): forgotten
                del self._ids[:5_000]
        else:
            db.execute(
                "INSERT INTO events (rollout_id, at, type, data) VALUES (?, ?, ?, ?)",
                (e.rollout_id, e.at, e.event_type, json.dumps(data)),
            )
        if isinstance(e, ev.RolloutStarted):
            db.execute("UPDATE rollouts SET status = ? WHERE id = ?", (ev.R_RUNNING, e.rollout_id))
            if not e.resumed:
                for phase, (_, hosts) in enumerate(e.phases):
                    db.executemany(
                        "INSERT INTO host_runs (rollout_id, host, phase, state, step, steps, steps_done,"
                        " reason, updated_at) VALUES (?, ?, ?, 'pending', 0, 0, 0, '', ?) ON CONFLICT DO NOTHING",
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
        elif isinstance(e, (ev.PhaseHalted, ev.RolloutInterrupted)):
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
                "INSERT INTO log (at, \"user\", origin, kind, text, revision, rollout_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (e.at, e.user, origin, e.kind, e.text, e.revision,
                 e.rollout_id or None),
            )

    # ------------------------------------------------------------------------------------------ log
    def add_log(self, actor: Actor, kind: str, text: str, revision: str | None = None,
                rollout_id: int = 0) -> LogEntry:
        """Append to the deploy log, by ``actor`` (its user and origin), committed, then published as
        LogEntryAdded."""
        e = ev.LogEntryAdded(rollout_id, user=actor.user, kind=kind, text=text, revision=revision)
        self.check_same_file()
        with self._tx():
            self._apply(e, actor.origin)
        self._publish(e)
        return LogEntry(0, e.at, actor.user, kind, text, revision, actor.origin)

    def log(self, limit: int = 200) -> list[LogEntry]:
        """The last `limit` entries of the deploy log, oldest first. Never waits for a writer (WAL)."""
        try:
            rows = self.db.execute(
                "SELECT id, at, \"user\", kind, text, revision, origin FROM log ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as e:
            raise schema.explain(e, self.db) from None
        return [LogEntry(*r) for r in reversed(rows)]

    def _publish(self, event: ev.Event) -> None:
        publish(self._subscribers, event)

    # ------------------------------------------------------------------------------------------ rollouts
    def new_rollout(self, revision: str, previous: str | None, actor: Actor, phases, *,
                    at: float | None = None, commit: str | None = None) -> int:
        """A new rollout by ``actor`` with a globally unique id (its receipts and leases on the hosts carry it);
        at: when it started (now unless given: a record written after the fact, as the demo's past deploy);
        commit: what its revision resolved to at its start (a tag moved later changes nothing), in the same write."""
        self.check_same_file()
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO rollouts (revision, previous, \"user\", status, phase, started_at, pid, hostname, phases,"
                " uuid, commit_hash) VALUES (?, ?, ?, 'starting', 0, ?, ?, ?, ?, ?, ?) RETURNING id",
                (revision, previous, actor.user, time.time() if at is None else at, os.getpid(), socket.gethostname(),
                 json.dumps(phases),
                 uuid.uuid4().hex, commit),
            )
            return int(cur.fetchone()[0])

    def rollout_uuid(self, rollout_id: int) -> str:
        row = self.db.execute("SELECT uuid FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        if not row or not row[0]:
            # a rollout from before uuids: give it one now, once
            with self._tx(immediate=True):
                row = self.db.execute("SELECT uuid FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
                if row and row[0]:
                    return row[0]
                value = uuid.uuid4().hex
                self.db.execute("UPDATE rollouts SET uuid = ? WHERE id = ?", (value, rollout_id))
                return value
        return row[0]

    def journal_id(self) -> str:
        """This journal's own id, made on first use: the leases on the hosts name it."""
        if getattr(self, "_journal_id", None):
            return self._journal_id
        with self._tx(immediate=True):
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("INSERT INTO meta (key, value) VALUES ('journal_id', ?) ON CONFLICT DO NOTHING",
                            (uuid.uuid4().hex,))
            self._journal_id = self.db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()[0]
        return self._journal_id

    # ------------------------------------------------------------------------------------------ other writers
    def follow(self) -> int:
        """Start telling this process's events from the other writers' (a server on a shared journal: the other
        bastions' servers); the id of the latest event now, for others_after."""
        self._own = set()
        self._ids = []
        return int(self.db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    def event_id(self, event: ev.Event) -> int | None:
        """The journal's id of an event this process recorded while following (every bastion's server knows the
        event by it), once it is published; None for one never written (host output) or when not following."""
        for i, (e, event_id) in enumerate(self._ids):
            if e is event:
                del self._ids[: i + 1]  # the ones before it were recorded quietly: never published
                return event_id
        return None

    def others_after(self, after_id: int, limit: int = 1000, *,
                     with_ids: bool = False) -> tuple[int, list[ev.Event]] | tuple[int, list[tuple[int, ev.Event]]]:
        """The events committed after ``after_id`` by other processes, in the journal's order, and the id to ask
        after next time (with_ids: each as (its journal id, the event)). An event this controlroom cannot read (a
        newer one's) is passed over."""
        rows = self.db.execute("SELECT id, type, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
                               (after_id, limit)).fetchall()
        own = self._own if self._own is not None else set()
        out: list[ev.Event] = []
        for event_id, kind, data in rows:
            after_id = event_id
            if event_id in own:
                own.discard(event_id)
                continue
            try:
                e = ev.from_wire({**json.loads(data), "type": kind})
            except ValueError:
                continue
            out.append((event_id, e) if with_ids else e)
        return after_id, out

    def _json(self, key: str) -> str:
        return self.db.dialect.json_text("data", key)

    def touched(self, rollout_id: int) -> set[str]:
        """Hosts that started a step (or a rollback step) in this rollout: they may run its code."""
        rows = self.db.execute(
            f"SELECT DISTINCT {self._json('host')} FROM events WHERE rollout_id = ? AND type = 'HostStateChanged'"
            f" AND {self._json('state')} IN ('running', 'checking', 'done', 'rolling_back')",
            (rollout_id,),
        ).fetchall()
        return {r[0] for r in rows}

    def actions(self, rollout_id: int) -> set[str]:
        """The operator actions (OperatorAction events) recorded for a rollout, by name: what marks its result."""
        rows = self.db.execute(
            f"SELECT DISTINCT {self._json('action')} FROM events WHERE rollout_id = ? AND type = "
            "'OperatorAction'", (rollout_id,)).fetchall()
        return {r[0] for r in rows if r[0]}

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
        q = ("SELECT id, revision, previous, \"user\", status, phase, started_at, finished_at, pid, hostname, phases"
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

    def rollback_underway(self, rollout_id: int) -> bool:
        """Whether a rollback of this rollout began and never ended (its server stopped in the middle)."""
        began = self.db.execute(
            "SELECT max(id) FROM events WHERE rollout_id = ? AND type = 'OperatorAction' AND"
            f" {self._json('action')} = 'rollback'", (rollout_id,)).fetchone()[0]
        return bool(began) and not self.db.execute(
            "SELECT 1 FROM events WHERE rollout_id = ? AND id > ? AND type IN ('RolloutFinished', 'RolloutStarted')"
            " LIMIT 1", (rollout_id, began)).fetchone()

    def next_step(self, rollout_id: int | None = None) -> str:
        """The command that carries the latest (or given) deploy on from where the journal says it stands, with
        what it does: finish a rollback its server left, resume a deploy that never ended, run a failed deploy's
        failed hosts again; "" when it ended and there is nothing to carry on."""
        try:
            rec = self.rollout(rollout_id)
            if rec is None:
                return ""
            if self.rollback_underway(rec.id):
                return f"`controlroom rollback` finishes the rollback of deploy #{rec.id}"
        except (sqlite3.Error, JournalError):
            return ""
        if rec.status == ev.R_FAILED:
            return (f"`controlroom deploy --resume` runs the failed hosts of deploy #{rec.id} again, "
                    "`controlroom rollback` undoes it")
        if rec.status in (ev.R_RUNNING, ev.R_PAUSED, ev.R_HALTED, ev.R_WAITING):
            return f"`controlroom deploy --resume` picks deploy #{rec.id} up, `controlroom rollback` undoes it"
        return ""

    def live_revisions(self) -> dict[str, tuple[str | None, str | None]]:
        """host -> (live, previous) as last recorded."""
        return {h: (live, prev) for h, live, prev in self.db.execute("SELECT host, live, previous FROM hosts")}

    def transitions(self, rollout_id: int, host: str | None = None) -> list[dict]:
        q = "SELECT data FROM events WHERE rollout_id = ? AND type = 'HostStateChanged'"
        rows = self.db.execute(q + " ORDER BY id", (rollout_id,)).fetchall()
        out = [json.loads(r[0]) for r in rows]
        return [d for d in out if host is None or d["host"] == host]

    # ------------------------------------------------------------------------------------------ stages
    def add_stage(self, actor: Actor, revision: str, commit: str | None, ok: bool, seconds: float,
                  reason: str) -> None:
        """One run of [release] stage: who ran it, for which revision and commit, and how it ended."""
        with self._tx():
            self.db.execute(
                "INSERT INTO stages (at, \"user\", revision, commit_hash, ok, seconds, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), actor.user, revision, commit, int(ok), seconds, reason))

    def staged_ok(self, revision: str, commit: str | None) -> bool:
        """Whether a stage of this commit (of this revision name when no repo pins it) succeeded."""
        if commit:
            row = self.db.execute("SELECT 1 FROM stages WHERE commit_hash = ? AND ok = 1 LIMIT 1", (commit,))
        else:
            row = self.db.execute("SELECT 1 FROM stages WHERE revision = ? AND ok = 1 LIMIT 1", (revision,))
        return row.fetchone() is not None


def next_step(state_dir: Path, rollout_id: int | None = None, *, or_log: bool = True, url: str | None = None) -> str:
    """Journal.next_step as the journal of state_dir says, read-only (it works on a full disk and for a user who
    may not write there): what a command prints after a failure. When it says nothing: `controlroom log`, or ""
    when not or_log. url: a shared journal's ([state] journal)."""
    log = "`controlroom log` shows where it stands" if or_log else ""
    try:
        j = Journal.open(Path(state_dir), readonly=True, url=url)
    except Exception:  # noqa: BLE001 - a hint never hides the failure it follows
        return log
    try:
        return j.next_step(rollout_id) or log
    finally:
        j.close()


def unreached(recorded: dict[str, tuple[str | None, str | None]], hosts) -> list[str]:
    """The names of ``hosts`` (the inventory) with no live revision in ``recorded`` (Journal.live_revisions):
    the hosts no deploy has reached yet, whose revision only asking one of them tells."""
    return [h.name for h in hosts if not recorded.get(h.name, (None, None))[0]]


class Writing:
    """One open write transaction of a journal (Journal.writing): its statements, the events it records (each
    applied to the journal's tables, published once committed) and the events only published then."""

    def __init__(self, db: sqlite3.Connection, apply: Callable[[ev.Event, str | None], None]) -> None:
        self._db = db
        self._apply = apply
        self.published: list[ev.Event] = []

    def execute(self, sql: str, args: tuple | list = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, args)

    def executemany(self, sql: str, rows: list) -> sqlite3.Cursor:
        return self._db.executemany(sql, rows)

    def record(self, event: ev.Event, origin: str | None = None) -> None:
        """Into the journal (a log entry by whoever is at ``origin``), and to subscribers once committed."""
        self._apply(event, origin)
        self.published.append(event)

    def publish(self, event: ev.Event) -> None:
        """To subscribers once committed, not written (what the lock row now says, say)."""
        self.published.append(event)


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
            self.db.begin()  # BEGIN IMMEDIATE on SQLite; on PostgreSQL BEGIN and the writers' advisory lock
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
            except (sqlite3.Error, JournalError):
                pass


def publish(subscribers, event: ev.Event) -> None:
    """Hand an event to each subscriber; one subscriber's error (a screen, a printer) never stops the others or
    changes what happened on the fleet. The error is said once per subscriber on stderr."""
    for fn in list(subscribers):
        try:
            fn(event)
        except Exception as e:  # noqa: BLE001 - see above
            if getattr(fn, "_controlroom_warned", False):
                continue
            try:
                fn._controlroom_warned = True
            except AttributeError:
                pass
            print(f"controlroom: warning: {getattr(fn, '__qualname__', fn)!s} failed on {event.event_type}: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
