"""The flag history in the journal: every change (who, when, from, to, why, how many hosts confirmed) and each
host's latest flags receipt, so that stragglers outlive a server.

flag_changes.failed is NULL from the moment a change is recorded (before its first host is written) until its push
ended and the deploy log says so, in one transaction: a row still NULL at a server's start is a change whose server
died mid-push, to be settled by asking the hosts (flagpush.FlagService.start).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from enum import StrEnum

from controlroom.core import events as ev
from controlroom.core.identity import Actor
from controlroom.journal import pg, schema
from controlroom.journal.locks import JournalWriter


class ReceiptStatus(StrEnum):
    """Where one host stands with one flag change (the journal's and the wire's string is the value)."""

    CONFIRMED = "confirmed"  # the host holds the version, hash checked, reloaded
    FAILED = ev.FAILED.value  # tried, and it did not take: cls and reason say why (retried in the background)
    PENDING = ev.PENDING.value  # meant for the host, not answered yet
    DISMISSED = "dismissed"  # the operator stopped waiting for it


CONFIRMED, FAILED, PENDING, DISMISSED = ReceiptStatus


@dataclass(frozen=True)
class Receipt:
    """What one host holds, or was last meant to hold: the version, its sha256, and whether it confirmed."""

    host: str
    version: int
    sha256: str
    status: ReceiptStatus
    cls: str = ""  # the failure's class: refused, auth, timeout, exit 1, hash, ...
    reason: str = ""
    at: float = 0.0

    def wire(self) -> dict:
        return {"host": self.host, "version": self.version, "status": self.status, "class": self.cls,
                "reason": self.reason, "at": self.at}


KEYS = ("version", "at", "user", "flag", "old", "new", "reason", "hosts", "confirmed", "failed", "state")
_COLUMNS = ", ".join('"user"' if k == "user" else k for k in KEYS)  # "user" is a reserved word in PostgreSQL


class FlagHistory:
    """The flag tables of a journal: its changes, the latest first, and each host's latest receipt."""

    def __init__(self, journal: JournalWriter) -> None:
        self.j = journal

    def changes(self, name: str | None = None, limit: int = 50, version: int | None = None, *,
                pending: bool = False) -> list[dict]:
        """The latest changes first: of one flag, the one of that version, or (pending) those whose push never
        ended; ``failed`` is a list ([] while pending), ``state`` every flag's value at that version."""
        where, args = [], []
        if name:
            where, args = ["flag = ?"], [name]
        elif version is not None:
            where, args = ["version = ?"], [version]
        if pending:
            where.append("failed IS NULL")
        q = (f"SELECT {_COLUMNS} FROM flag_changes {'WHERE ' + ' AND '.join(where) if where else ''}"
             " ORDER BY version DESC LIMIT ?")
        try:
            rows = self.j.db.execute(q, (*args, limit)).fetchall()
        except sqlite3.Error as e:
            raise schema.explain(e, self.j.db) from None
        out = [dict(zip(KEYS, r, strict=True)) for r in rows]
        for d in out:
            d["pending"] = d["failed"] is None
            d["failed"] = json.loads(d["failed"] or "[]")
            d["state"] = json.loads(d["state"] or "{}")
        return out

    def pending(self) -> list[dict]:
        """The changes whose push never ended (their server died mid-way), the oldest first. On a shared journal,
        not a change another bastion's server is still pushing (its session holds the change's push lock)."""
        out = list(reversed(self._unended()))
        if out and self.j.store.shared:
            busy = self.pushed_elsewhere()
            out = [c for c in out if c["version"] not in busy]
        return out

    def _unended(self) -> list[dict]:
        return self.changes(limit=1000, pending=True)

    def pushed_elsewhere(self) -> set[int]:
        """On a shared journal, the versions of the changes another live bastion's server is pushing now (their
        push locks are held; empty on SQLite: one server)."""
        if not self.j.store.shared:
            return set()
        keys = pg.pushed_elsewhere(self.j.db)
        return {c["version"] for c in self._unended() if pg.push_key(c["version"])[1] in keys} if keys else set()

    def value(self, name: str, default: str) -> str:
        """The flag's value as its latest change left it (``default`` when it never changed)."""
        last = self.changes(name, limit=1)
        return last[0]["new"] if last else default

    def begun(self, change: dict, receipts: list[Receipt], event: ev.Event) -> None:
        """A change (version, at, user, flag, old, new, reason, hosts, state: every flag's value) is on the record as
        pending, with each target's receipt as pending and its event, in one transaction, before any host is
        written. On a shared journal this server's session holds the change's push lock until ended()."""
        shared = self.j.store.shared
        if shared:
            pg.hold_push(self.j.db, change["version"])
        try:
            self._begin(change, receipts, event)
        except BaseException:
            if shared:
                pg.let_push_go(self.j.db, change["version"])
            raise

    def _begin(self, change: dict, receipts: list[Receipt], event: ev.Event) -> None:
        with self.j.writing(check=True) as w:
            w.execute(
                'INSERT INTO flag_changes (version, at, "user", flag, old, new, reason, hosts, confirmed, failed, state)'
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?)",
                tuple(change[k] for k in ("version", "at", "user", "flag", "old", "new", "reason", "hosts"))
                + (json.dumps(change["state"]),))
            _save(w, receipts)
            w.record(event)

    def ended(self, change: dict, confirmed: int, failed: list, receipts: list[Receipt], *, line: str,
              actor: Actor, at: float | None = None) -> None:
        """The push ended (or was settled after a crash): its receipts, its count, how it stands for every client
        (FlagChanged) and the deploy log's FLAG ``line`` by ``actor`` (who changed it; origin None when unknown),
        in one transaction, so the log says it exactly when the journal knows it. ``at``: when (default now)."""
        when = {} if at is None else {"at": at}
        with self.j.writing(check=True) as w:
            _save(w, receipts)
            w.execute("UPDATE flag_changes SET confirmed = ?, failed = ? WHERE version = ?",
                      (confirmed, json.dumps(failed), change["version"]))
            w.record(ev.FlagChanged(0, flag=change["flag"], old=change["old"], new=change["new"], user=change["user"],
                                    reason=change["reason"], version=change["version"], confirmed=confirmed,
                                    total=change["hosts"], failed=tuple(tuple(f) for f in failed), **when),
                     actor.origin)
            w.record(ev.LogEntryAdded(0, user=actor.user, kind="FLAG", text=line, **when), actor.origin)
        if self.j.store.shared:
            pg.let_push_go(self.j.db, change["version"])

    def finished(self, version: int, confirmed: int, failed: list) -> None:
        """A change's count after the fact (a straggler confirmed late)."""
        with self.j.writing() as w:
            w.execute("UPDATE flag_changes SET confirmed = ?, failed = ? WHERE version = ? AND failed IS NOT NULL",
                      (confirmed, json.dumps(failed), version))

    def save(self, *receipts: Receipt) -> None:
        """Keep each host's latest receipt, all in one transaction."""
        with self.j.writing() as w:
            _save(w, receipts)

    def receipts(self) -> dict[str, Receipt]:
        """Every host's latest receipt."""
        try:
            rows = self.j.db.execute("SELECT host, version, sha256, status, class, reason, at FROM flag_receipts"
                                     ).fetchall()
        except sqlite3.Error as e:
            raise schema.explain(e, self.j.db) from None
        return {r[0]: Receipt(r[0], r[1], r[2], ReceiptStatus(r[3]), *r[4:]) for r in rows}


def _save(w, receipts) -> None:
    w.executemany("INSERT INTO flag_receipts (host, version, sha256, status, class, reason, at)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host) DO UPDATE SET version = excluded.version,"
                  " sha256 = excluded.sha256, status = excluded.status, class = excluded.class,"
                  " reason = excluded.reason, at = excluded.at", [(r.host, r.version, r.sha256, r.status, r.cls, r.reason, r.at)
                                                      for r in receipts])
