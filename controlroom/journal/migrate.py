"""``controlroom journal migrate``: an existing SQLite journal (STATE_DIR/journal.db) copied into an empty
PostgreSQL one, every table, ids kept, the identity sequences moved past them, the journal's own id (meta) kept
so that the leases on the hosts still name it. One transaction: a failed copy leaves the target empty.
"""

from __future__ import annotations

from pathlib import Path

from controlroom.core.errors import JournalError, UsageError
from controlroom.journal import fleetlock, pg, schema

# Every table of schema.VERSION and its columns, in the order they are copied ("user" is quoted where it is said).
TABLES: dict[str, tuple[str, ...]] = {
    "rollouts": ("id", "revision", "previous", "user", "status", "phase", "started_at", "finished_at", "pid",
                 "hostname", "phases", "uuid", "commit_hash"),
    "events": ("id", "rollout_id", "at", "type", "data"),
    "log": ("id", "at", "user", "origin", "kind", "text", "revision", "rollout_id"),
    "lock": ("id", "user", "origin", "at", "reason", "pid", "hostname", "rollout_id", "saved"),
    "host_runs": ("rollout_id", "host", "phase", "state", "step", "steps", "steps_done", "reason", "revision",
                  "previous", "updated_at"),
    "hosts": ("host", "live", "previous", "rollout_id", "updated_at"),
    "flag_changes": ("version", "at", "user", "flag", "old", "new", "reason", "hosts", "confirmed", "failed",
                     "state"),
    "flag_receipts": ("host", "version", "sha256", "status", "class", "reason", "at"),
    "stages": ("id", "at", "user", "revision", "commit_hash", "ok", "seconds", "reason"),
    "notify_sent": ("channel", "log_id", "at"),
}
BATCH = 5000


def _columns(cols: tuple[str, ...]) -> str:
    return ", ".join('"user"' if c == "user" else c for c in cols)


def migrate(state_dir: Path, url: str) -> dict[str, int]:
    """Copy STATE_DIR/journal.db into the empty journal at url; the rows moved, by table (meta: the journal's
    id). Raises UsageError when the target holds anything or a deploy runs on the source; JournalError naming
    either journal (the URL redacted) when one cannot be used."""
    path = schema.prepare(Path(state_dir), readonly=True)  # JournalError: no journal there
    if fleetlock.is_held(Path(state_dir)):
        raise UsageError(f"an operation runs on {path} now (it holds {Path(state_dir) / 'fleet.lock'}): migrate "
                         "once it ended and the server of that state directory is stopped")
    src = schema.connect(path)  # migrated to schema.VERSION first, so every column is there
    try:
        dst = pg.connect(url)
        try:
            return _copy(src, dst)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(src, dst: pg.Connection) -> dict[str, int]:
    held = {t: dst.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    held["meta"] = dst.execute("SELECT count(*) FROM meta WHERE key != 'schema_version'").fetchone()[0]
    if any(held.values()):
        what = ", ".join(f"{n} in {t}" for t, n in held.items() if n)
        raise UsageError(f"the journal {dst.path} is not empty ({what}): migrate into a new database")
    moved: dict[str, int] = {}
    dst.begin()
    try:
        for table, cols in TABLES.items():
            marks = ", ".join("?" * len(cols))
            insert = f"INSERT INTO {table} ({_columns(cols)}) VALUES ({marks})"
            cur = src.execute(f"SELECT {_columns(cols)} FROM {table}")
            n = 0
            while rows := cur.fetchmany(BATCH):
                dst.executemany(insert, rows)
                n += len(rows)
            moved[table] = n
        has_meta = src.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        meta = src.execute("SELECT key, value FROM meta").fetchall() if has_meta else []
        dst.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [r for r in meta if r[0] != "schema_version"])
        moved["meta"] = len(meta)
        for table in pg.IDENTITY_TABLES:
            dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 0) + 1"
                        f" FROM {table}), false)")
        dst.execute("COMMIT")
    except BaseException:
        if dst.in_transaction:
            try:
                dst.execute("ROLLBACK")
            except JournalError:
                pass
        raise
    return moved
