"""The record as it is read back: past deploys, their events, stages and flag changes. SELECTs only.

Every query here reads what journal.py wrote and changes nothing, so it works on a journal opened read-only. A
deploy's events are read through the ``events_rollout`` index (schema version 5): a timeline never scans the events
of every other deploy. The events that belong to no deploy (rollout_id 0: flag changes, locks, notes) are taken
between the deploy's first and last event id, through the same index.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from controlroom.journal import schema


@dataclass(frozen=True)
class DeployRow:
    """One deploy (a rollouts row) as the record keeps it."""

    id: int
    revision: str
    previous: str | None
    user: str
    status: str
    started_at: float
    finished_at: float | None
    commit_hash: str | None


class EventRow(NamedTuple):
    """One journaled event, undecoded: its id (the journal's order), rollout, time, type and JSON data."""

    id: int
    rollout_id: int
    at: float
    type: str
    data: str

    def decoded(self) -> dict:
        return json.loads(self.data)


def _rows(db: sqlite3.Connection, q: str, args: Iterable = ()) -> list[tuple]:
    try:
        return db.execute(q, tuple(args)).fetchall()
    except sqlite3.Error as e:
        raise schema.explain(e, db) from None


_DEPLOY = 'SELECT id, revision, previous, "user", status, started_at, finished_at, commit_hash FROM rollouts'


def deploys(db: sqlite3.Connection, *, since: float | None = None, user: str | None = None) -> list[DeployRow]:
    """The deploys that started (never the ones that lost the race for the lock), oldest first."""
    where, args = ["status != 'starting'"], []
    if since is not None:
        where.append("started_at >= ?")
        args.append(since)
    if user:
        where.append('"user" = ?')
        args.append(user)
    return [DeployRow(*r) for r in _rows(db, f"{_DEPLOY} WHERE {' AND '.join(where)} ORDER BY id", args)]


def deploy(db: sqlite3.Connection, number: int | None = None) -> DeployRow | None:
    """One deploy by its number (`controlroom log`'s #N), or the latest when number is None."""
    if number is None:
        rows = _rows(db, f"{_DEPLOY} WHERE status != 'starting' ORDER BY id DESC LIMIT 1")
    else:
        rows = _rows(db, f"{_DEPLOY} WHERE id = ? AND status != 'starting'", (number,))
    return DeployRow(*rows[0]) if rows else None


def deploy_numbers(db: sqlite3.Connection) -> list[int]:
    """Every deploy's number, oldest first: what an unknown number is told exists."""
    return [r[0] for r in _rows(db, "SELECT id FROM rollouts WHERE status != 'starting' ORDER BY id")]


_EVENT = "SELECT id, rollout_id, at, type, data FROM events"


def deploy_events(db: sqlite3.Connection, number: int, *, types: Iterable[str] | None = None,
                  after_id: int = 0) -> list[EventRow]:
    """A deploy's events in the journal's order, with the events of no deploy (flags, locks, notes) recorded
    between its first and its last (after_id: only those past it, for a timeline following a live deploy)."""
    kinds = tuple(types or ())
    of_type = f" AND type IN ({', '.join('?' * len(kinds))})" if kinds else ""
    own = list(map(EventRow._make, _rows(
        db, f"{_EVENT} WHERE rollout_id = ? AND id > ?{of_type} ORDER BY id", (number, after_id, *kinds))))
    span = _rows(db, "SELECT min(id), max(id) FROM events WHERE rollout_id = ?", (number,))[0]
    if span[0] is None:
        return own
    first, last = max(span[0], after_id), span[1]
    loose = list(map(EventRow._make, _rows(
        db, f"{_EVENT} WHERE rollout_id = 0 AND id > ? AND id < ?{of_type} ORDER BY id", (first, last, *kinds))))
    if not loose:
        return own
    return sorted(own + loose, key=lambda r: r.id)


def deploy_events_decoded(db: sqlite3.Connection, number: int, *, after_id: int = 0
                          ) -> list[tuple[int, float, str, dict]]:
    """deploy_events as (id, at, type, data decoded), decoded in one go: a 100,000-event deploy is one
    json.loads of one array, not 100,000 calls."""
    own = _rows(db, "SELECT id, at, type, data FROM events WHERE rollout_id = ? AND id > ? ORDER BY id",
                (number, after_id))
    if not own:
        return []
    first, last = own[0][0], own[-1][0]
    if after_id:
        first = max(after_id, _rows(db, "SELECT min(id) FROM events WHERE rollout_id = ?", (number,))[0][0])
    loose = _rows(db, "SELECT id, at, type, data FROM events WHERE rollout_id = 0 AND id > ? AND id < ?"
                      " ORDER BY id", (first, last))
    rows = sorted(own + loose) if loose else own
    data = json.loads("[" + ",".join([r[3] for r in rows]) + "]")
    return [(r[0], r[1], r[2], d) for r, d in zip(rows, data, strict=True)]


def events_of(db: sqlite3.Connection, numbers: Iterable[int], types: Iterable[str]) -> dict[int, list[EventRow]]:
    """The events of these types of each of these deploys (its own only), in order: what the figures need."""
    out: dict[int, list[EventRow]] = {}
    kinds = tuple(types)
    marks = ", ".join("?" * len(kinds))
    for n in numbers:
        out[n] = list(map(EventRow._make, _rows(
            db, f"{_EVENT} WHERE rollout_id = ? AND type IN ({marks}) ORDER BY id", (n, *kinds))))
    return out


def last_done(db: sqlite3.Connection, number: int) -> float | None:
    """When the last host of a deploy finished running it (its latest move to done), None when none did."""
    return _rows(db, "SELECT max(at) FROM events WHERE rollout_id = ? AND type = 'HostStateChanged'"
                     f" AND {db.dialect.json_text('data', 'state')} = 'done'", (number,))[0][0]


def flags_at(db: sqlite3.Connection, at: float) -> tuple[int, dict[str, str]]:
    """(version, every flag's value) as the flag history had them at that time; (0, {}) before any change (each
    flag then has its config default, which the journal does not know)."""
    rows = _rows(db, "SELECT version, state FROM flag_changes WHERE at <= ? ORDER BY version DESC LIMIT 1", (at,))
    if not rows:
        return 0, {}
    return int(rows[0][0]), json.loads(rows[0][1] or "{}")


_FLAG = 'SELECT version, at, "user", flag, old, new, reason, hosts, confirmed, failed FROM flag_changes'
_FLAG_KEYS = ("version", "at", "user", "flag", "old", "new", "reason", "hosts", "confirmed", "failed")


def flag_changes(db: sqlite3.Connection, *, since: float | None = None, until: float | None = None,
                 user: str | None = None) -> list[dict]:
    """Flag changes, oldest first: who, when, from, to, why, and their receipt (hosts, confirmed, failed; failed
    None while the push runs)."""
    where, args = ["1 = 1"], []
    for cond, value in (("at >= ?", since), ("at <= ?", until), ('"user" = ?', user)):
        if value is not None and value != "":
            where.append(cond)
            args.append(value)
    out = [dict(zip(_FLAG_KEYS, r, strict=True))
           for r in _rows(db, f"{_FLAG} WHERE {' AND '.join(where)} ORDER BY version", args)]
    for d in out:
        d["failed"] = None if d["failed"] is None else json.loads(d["failed"])
    return out


_STAGE_KEYS = ("id", "at", "user", "revision", "commit_hash", "ok", "seconds", "reason")
_STAGE_COLUMNS = ", ".join('"user"' if k == "user" else k for k in _STAGE_KEYS)


def stages(db: sqlite3.Connection, *, since: float | None = None, user: str | None = None) -> list[dict]:
    """Stage runs, oldest first: who, when, which revision and commit, ok, how long, why not."""
    where, args = ["1 = 1"], []
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    if user:
        where.append('"user" = ?')
        args.append(user)
    q = f"SELECT {_STAGE_COLUMNS} FROM stages WHERE {' AND '.join(where)} ORDER BY id"
    return [dict(zip(_STAGE_KEYS, r, strict=True)) for r in _rows(db, q, args)]


def deploy_events_page(db: sqlite3.Connection, number: int, *, after_id: int = 0, limit: int = 1000
                       ) -> list[tuple[int, float, str, str]]:
    """One page of deploy_events: (id, at, type, data as JSON text) of at most ``limit`` of the deploy's own events
    after ``after_id``, with the events of no deploy between them (as deploy_events has them); the next page is
    after the last id of this one. What the server answers a client's ``record`` read with, page by page."""
    own = _rows(db, "SELECT id, at, type, data FROM events WHERE rollout_id = ? AND id > ? ORDER BY id LIMIT ?",
                (number, after_id, max(1, limit)))
    if not own:
        return []
    first = own[0][0]
    if after_id:
        first = max(after_id, _rows(db, "SELECT min(id) FROM events WHERE rollout_id = ?", (number,))[0][0])
    loose = _rows(db, "SELECT id, at, type, data FROM events WHERE rollout_id = 0 AND id > ? AND id < ?"
                      " ORDER BY id", (first, own[-1][0]))
    return sorted(own + loose) if loose else own
