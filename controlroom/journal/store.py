"""Where a journal is kept, and what differs with the place: how a connection to it is opened, and how the fleet
lock that proves an operation alive is held there. ``SqliteStore`` is the embedded default (STATE_DIR/journal.db,
the flock of fleetlock.py); ``pg.PgStore`` a PostgreSQL database several bastions share. A Journal is given one.
"""

from __future__ import annotations

from pathlib import Path

from controlroom.journal import fleetlock, pg, schema
from controlroom.journal.dialect import SQLITE


class SqliteStore:
    """STATE_DIR/journal.db and STATE_DIR/fleet.lock."""

    dialect = SQLITE
    shared = False  # one bastion's
    checks_file = True  # a journal.db deleted or replaced under us is refused (Journal.check_same_file)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.state_dir = self.path.parent

    def connect(self, *, readonly: bool = False) -> schema.JournalConnection:
        return schema.connect(self.path, readonly=readonly)

    def fleet_lock(self) -> fleetlock.FleetLock:
        return fleetlock.FleetLock(self.state_dir)

    def fleet_is_held(self, db) -> bool:
        return fleetlock.is_held(self.state_dir)

    def fleet_holds_here(self) -> bool:
        return fleetlock.holds_here(self.state_dir)


Store = SqliteStore | pg.PgStore


def open_store(state_dir: Path, url: str | None = None, *, readonly: bool = False) -> Store:
    """The journal of this state directory: in PostgreSQL at url when given ([state] journal), else journal.db
    there (created for the team unless readonly, see schema.prepare)."""
    if url:
        return pg.PgStore(url, Path(state_dir))
    return SqliteStore(schema.prepare(Path(state_dir), readonly=readonly))
