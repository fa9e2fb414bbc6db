"""How far each chat channel has announced the journal: its cursors (``notify_sent``), and what came after them.

A channel has two cursors: the deploy log (``log``) and the events table, for what the log does not say (a phase
done). A channel new to a journal starts at the present: the history before it is not announced. Its own
connection (the notifier tails the journal the server writes through another one). Any failure of the file is a
JournalError whose message is SQLite's.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from controlroom.core.errors import JournalError
from controlroom.journal import pg, schema
from controlroom.journal.dialect import SQLITE

TABLES = ("log", "events")  # what a cursor may point into


class ChatCursors:
    """The cursors of the chat channels in the journal at ``where`` (journal.db's path, or a Journal's store);
    ``close()`` when done."""

    def __init__(self, where: Path | Any) -> None:
        if isinstance(where, (str, Path)):
            self._db = schema.connect(Path(where))  # JournalError naming the path
        else:
            self._db = where.connect()
        self._leading = False

    def close(self) -> None:
        self._db.close()  # on a shared journal, the announcing ends with the session (see leading)

    def leading(self) -> bool:
        """Whether these cursors announce the journal now. Always on SQLite (one server per journal); on a shared
        journal, the one connection of all the bastions' servers that holds the chat's advisory lock (taken here
        when free, held until this connection closes), so a line is never announced by two bastions."""
        if self._leading:
            return True
        if self._db.dialect is SQLITE:
            self._leading = True
        else:
            with _failing():
                self._leading = bool(self._db.execute("SELECT pg_try_advisory_lock(?, ?)",
                                                      (pg.KEY, pg.CHAT)).fetchone()[0])
        return self._leading

    def start(self, key: str, table: str) -> int:
        """The cursor ``key`` into ``table`` (log or events): as last sent, or, for a key new to this journal, the
        table's latest id now (recorded, so a restart goes on from there)."""
        if table not in TABLES:
            raise ValueError(f"a cursor points into {' or '.join(TABLES)}, not {table!r}")
        with _failing():
            row = self._db.execute("SELECT log_id FROM notify_sent WHERE channel = ?", (key,)).fetchone()
            if row is not None:
                return int(row[0])
            last = int(self._db.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])
        self.sent(key, last)
        return last

    def sent(self, key: str, last_id: int) -> None:
        """The channel has announced everything up to ``last_id`` of its cursor ``key``."""
        with _failing():
            self._db.execute("INSERT INTO notify_sent (channel, log_id, at) VALUES (?, ?, ?) ON CONFLICT (channel) "
                             "DO UPDATE SET log_id = excluded.log_id, at = excluded.at", (key, last_id, time.time()))

    def log_after(self, log_id: int, limit: int) -> list[tuple[int, float, str, str, str, str | None]]:
        """(id, at, user, kind, text, revision) of the deploy log's entries after ``log_id``, oldest first."""
        with _failing():
            return self._db.execute('SELECT id, at, "user", kind, text, revision FROM log WHERE id > ? ORDER BY id '
                                    "LIMIT ?", (log_id, limit)).fetchall()

    def phases_after(self, event_id: int, limit: int) -> list[tuple[int, float, str, str | None, str | None]]:
        """(id, at, data, the rollout's user, its revision) of the PhaseCompleted events after ``event_id``,
        oldest first."""
        with _failing():
            return self._db.execute(
                'SELECT e.id, e.at, e.data, r."user", r.revision FROM events e LEFT JOIN rollouts r ON r.id = '
                "e.rollout_id WHERE e.id > ? AND e.type = 'PhaseCompleted' ORDER BY e.id LIMIT ?",
                (event_id, limit)).fetchall()


class _failing:
    """sqlite3.Error -> JournalError with SQLite's words (the notifier says it in one line and goes on)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        if isinstance(exc, sqlite3.Error) or pg.is_error(exc):
            raise JournalError(" ".join(str(exc).split())) from None
