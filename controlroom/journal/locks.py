"""The fleet lock as the team sees it: who holds it, why, and whether that holder is still alive.

One row in the journal says who ("NO DEPLOY PLEASE" from a person, or the deploy that runs); the OS lock of
``fleetlock`` (or, on a shared journal, the PostgreSQL session of pg.PgFleetLock) says whether a deploy's process
is still there. ``Locks`` keeps the row of one journal (its
``locks``), through the journal's write transactions (Journal.writing): the lock changes in the same transactions
as the log entries that record them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from controlroom.core import events as ev
from controlroom.core.errors import LockedError
from controlroom.core.identity import Actor


class JournalWriter(Protocol):
    """What the lock (and the flag history) needs of a Journal: its connection to read, its store (where the OS
    lock lives: store.SqliteStore or pg.PgStore), and its write transactions (Journal.writing, giving a
    journal.Writing)."""

    db: Any
    store: Any

    def writing(self, *, check: bool = False) -> AbstractContextManager[Any]: ...

    def fence(self, rollout_id: int, epoch: int) -> None: ...

    def check_fence(self, rollout_id: int | None) -> None: ...


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
    epoch: int = 0  # on a shared journal, the driver epoch its taking gave the deploy (hostside.Operation.epoch)

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


def abandons(lock: Lock) -> str:
    """What releasing this lock gives up, in the operator's words."""
    if lock.rollout_id:
        return (f"abandons the lock kept for deploy #{lock.rollout_id} by {lock.user} ({lock.reason}); that deploy "
                "stays halted and `controlroom deploy --resume` can still finish it, but a new deploy may start first")
    return f"releases {lock.user}'s NO DEPLOY PLEASE ({lock.reason})"


def epoch_key(rollout_id: int) -> str:
    """The meta key of a deploy's driver epoch on a shared journal."""
    return f"epoch:{rollout_id}"


class Locks:
    """The fleet lock row of one journal: take, park, release, and the lock as it stands (``current``)."""

    def __init__(self, journal: JournalWriter) -> None:
        self.journal = journal

    def current(self) -> Lock | None:
        """The lock as recorded, with its liveness from the OS lock (a holder that died is stale)."""
        row = self.journal.db.execute(
            'SELECT "user", at, reason, pid, hostname, rollout_id, origin FROM lock WHERE id = 1'
        ).fetchone()
        if not row:
            return None
        user, at, reason, pid, hostname, rollout_id, origin = row
        return Lock(user, at, reason, pid, hostname, rollout_id, origin, stale=bool(pid) and not self._alive(pid))

    def _alive(self, pid: int) -> bool:
        """Whether the operation recorded with pid still runs: it holds the fleet's OS lock (fleetlock)."""
        store = self.journal.store
        if store.fleet_holds_here():
            return pid == os.getpid()  # we hold it, so nobody else can
        return store.fleet_is_held(self.journal.db)

    def take(
        self,
        actor: Actor,
        reason: str,
        *,
        rollout_id: int | None = None,
        force_reason: str | None = None,
        takeover: bool = False,
    ) -> Lock:
        """Take the fleet lock for ``actor``, atomically. A deploy passes its rollout_id and holds the lock while it
        runs.

        Raises LockedError naming the holder when the fleet is locked by a person (unless force_reason is given)
        or by a live deploy (always). A lock left by a dead process is taken over, with a log entry.
        """
        user = actor.user
        pid = os.getpid() if rollout_id else None
        host = socket.gethostname() if rollout_id else None
        now = time.time()
        notes: list[tuple[str, str]] = []
        saved: str | None = None
        with self.journal.writing() as w:
            cur = self.current()
            if cur is not None:
                if rollout_id and cur.rollout_id == rollout_id:
                    # the same deploy going on (resume, rollback): its own lock, parked or left by a dead process
                    if cur.stale and self.journal.store.shared:
                        # a shared journal: the bastion that drove it is gone (killed, or cut off), this one goes on
                        notes.append(("TAKEN OVER", f"from {cur.hostname} by {user}: deploy #{cur.rollout_id} of "
                                      f"{cur.user} (pid {cur.pid} there is gone)"))
                    elif cur.stale:
                        notes.append(("LOCK TAKEN OVER", f"stale lock of deploy #{cur.rollout_id} by {cur.user} "
                                      f"(pid {cur.pid} is gone)"))
                    saved = self._saved(w)
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
            epoch = self._bump(w, rollout_id) if rollout_id and self.journal.store.shared else 0
            w.execute(
                'INSERT INTO lock (id, "user", origin, at, reason, pid, hostname, rollout_id, saved)'
                " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                ' "user" = excluded."user", origin = excluded.origin, at = excluded.at, reason = excluded.reason,'
                " pid = excluded.pid, hostname = excluded.hostname, rollout_id = excluded.rollout_id,"
                " saved = excluded.saved",
                (user, actor.origin, now, reason, pid, host, rollout_id, saved),
            )
            entries = [ev.LogEntryAdded(rollout_id or 0, user=user, kind=kind, text=text) for kind, text in notes]
            if not rollout_id:
                entries.append(ev.LogEntryAdded(0, user=user, kind="LOCK", text=reason))
            for e in entries:
                w.record(e, actor.origin)
            w.publish(ev.LockChanged(rollout_id or 0, held=True, user=user, reason=reason))
        return Lock(user, now, reason, pid, host, rollout_id, actor.origin, epoch=epoch)

    def _bump(self, w, rollout_id: int) -> int:
        """A new driver epoch for the deploy (this taking's), in the transaction that takes its lock; from now on
        the journal refuses this deploy's events from any driver with an older one (Journal.fence)."""
        key = epoch_key(rollout_id)
        row = w.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        epoch = (int(row[0]) if row and str(row[0]).isdigit() else 0) + 1
        w.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                  (key, str(epoch)))
        self.journal.fence(rollout_id, epoch)
        return epoch

    @staticmethod
    def _saved(w) -> str | None:
        row = w.execute("SELECT saved FROM lock WHERE id = 1").fetchone()
        return row[0] if row else None

    def park(self, rollout_id: int, reason: str) -> None:
        """The deploy's process is leaving while the deploy waits for a decision: keep the fleet locked for it."""
        with self.journal.writing() as w:
            self.journal.check_fence(rollout_id)  # a driver another bastion took over parks nothing of the taker's
            w.execute(
                "UPDATE lock SET pid = NULL, hostname = NULL, reason = ?, at = ? WHERE id = 1 AND rollout_id = ?",
                (reason, time.time(), rollout_id),
            )
            w.publish(ev.LockChanged(rollout_id, held=True, user=None, reason=reason))

    def release(self, actor: Actor, *, rollout_id: int | None = None, manual: bool = True,
                     force: bool = False) -> Lock | None:
        """Release the lock, by ``actor``. A person cannot release a live deploy's lock; a deploy releases only its
        own.

        A person releasing another person's lock, or the lock a halted deploy keeps (parked), must pass force:
        without it LockedError says what the release would abandon. Either way it goes into the deploy log.
        """
        user = actor.user
        entries: list[ev.LogEntryAdded] = []
        restored = None
        with self.journal.writing() as w:
            cur = self.current()
            if cur is None:
                return None
            if rollout_id is not None:
                if cur.rollout_id != rollout_id:
                    return None
                self.journal.check_fence(rollout_id)  # nor does it let the taker's lock go
            elif cur.live:
                raise LockedError(f"cannot unlock: held by the running {cur.describe()}")
            elif not force and (cur.rollout_id or cur.user != user):
                raise LockedError(f"the lock is {cur.describe()}; unlocking {abandons(cur)} "
                                  "(`controlroom unlock --force` to do it)")
            saved = self._saved(w)
            w.execute("DELETE FROM lock WHERE id = 1")
            if saved and rollout_id is not None:
                # a forced deploy is over: the person's lock it went past holds again
                restored = json.loads(saved)
                w.execute('INSERT INTO lock (id, "user", origin, at, reason) VALUES (1, ?, ?, ?, ?)', tuple(restored))
                entries.append(ev.LogEntryAdded(rollout_id, user=user, kind="LOCK RESTORED",
                                                text=f"{restored[0]}: {restored[3]}"))
            if manual:
                text = f"released the lock of {cur.user} ({cur.reason})" if cur.user != user else cur.reason
                if cur.rollout_id or cur.user != user:
                    text = f"forced: {abandons(cur)}"
                entries.append(ev.LogEntryAdded(0, user=user, kind="UNLOCK", text=text))
            for e in entries:
                w.record(e, actor.origin)
            if restored:
                w.publish(ev.LockChanged(rollout_id or 0, held=True, user=restored[0], reason=restored[3]))
            else:
                w.publish(ev.LockChanged(rollout_id or 0, held=False, user=user, reason=""))
        return cur
