"""journal.db on disk: its tables and their versions, how a connection to it is opened, and what its failures mean.

The schema version is SQLite's ``PRAGMA user_version``. ``MIGRATIONS[n]`` takes a database from version n to n + 1;
opening a journal runs the missing ones in one IMMEDIATE transaction, so several processes opening an old or a new
file at once agree on one schema. A file written by a newer controlroom is refused and left untouched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

from controlroom.core.errors import JournalError, JournalSetupError
from controlroom.journal.dialect import SQLITE

# Version 1: the tables as they were before the journal had versions (a file with user_version 0 that already has
# them is a version 1 file: CREATE TABLE IF NOT EXISTS leaves it as it is).
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, rollout_id INTEGER, at REAL, type TEXT, data TEXT);
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY, at REAL, user TEXT, origin TEXT, kind TEXT, text TEXT, revision TEXT,
    rollout_id INTEGER);
CREATE TABLE IF NOT EXISTS lock (
    id INTEGER PRIMARY KEY CHECK (id = 1), user TEXT, origin TEXT, at REAL, reason TEXT, pid INTEGER,
    hostname TEXT, rollout_id INTEGER, saved TEXT);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY, revision TEXT, previous TEXT, user TEXT, status TEXT, phase INTEGER,
    started_at REAL, finished_at REAL, pid INTEGER, hostname TEXT, phases TEXT);
CREATE TABLE IF NOT EXISTS host_runs (
    rollout_id INTEGER, host TEXT, phase INTEGER, state TEXT, step INTEGER, steps INTEGER,
    steps_done INTEGER, reason TEXT, revision TEXT, previous TEXT, updated_at REAL,
    PRIMARY KEY (rollout_id, host));
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY, live TEXT, previous TEXT, rollout_id INTEGER, updated_at REAL);
"""

# Version 2: a rollout's globally unique id, which host-side receipts carry (the local id repeats across journals).
SCHEMA_V2 = """
ALTER TABLE rollouts ADD COLUMN uuid TEXT;
"""

# Version 3: flag history (every change: who, when, from, to, why, its receipt) and each host's latest flags
# receipt (the version it was sent, that file's sha256, confirmed or why not), so stragglers outlive a server.
# flag_changes.failed is NULL while a change's push runs (flags.py, FlagHistory.begun): one still NULL when a server
# starts is a change whose server died mid-push, settled then by asking the hosts.
SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS flag_changes (
    version INTEGER PRIMARY KEY, at REAL, user TEXT, flag TEXT, old TEXT, new TEXT, reason TEXT, hosts INTEGER,
    confirmed INTEGER, failed TEXT, state TEXT);
CREATE INDEX IF NOT EXISTS flag_changes_flag ON flag_changes (flag, version);
CREATE TABLE IF NOT EXISTS flag_receipts (
    host TEXT PRIMARY KEY, version INTEGER, sha256 TEXT, status TEXT, class TEXT, reason TEXT, at REAL);
"""

# Version 4: the commit a deploy pinned at its start; each stage run (who, which revision and commit, how it ended);
# how far each chat channel has sent the deploy log (its last sent log id), so nothing is sent twice or lost.
SCHEMA_V4 = """
ALTER TABLE rollouts ADD COLUMN commit_hash TEXT;
CREATE TABLE IF NOT EXISTS stages (
    id INTEGER PRIMARY KEY, at REAL, user TEXT, revision TEXT, commit_hash TEXT, ok INTEGER, seconds REAL,
    reason TEXT);
CREATE TABLE IF NOT EXISTS notify_sent (channel TEXT PRIMARY KEY, log_id INTEGER, at REAL);
"""

# Version 5: a deploy's events by rollout and order, so a timeline (and the fleet at any moment of it) is read
# through an index instead of a scan of every event the journal holds (journal/record.py).
SCHEMA_V5 = """
CREATE INDEX IF NOT EXISTS events_rollout ON events (rollout_id, id);
"""

# A migration is SQL (statements separated by ';', none containing one) or a function of the connection; it runs
# inside the open transaction and must not COMMIT.
Migration = str | Callable[[sqlite3.Connection], None]
MIGRATIONS: Sequence[Migration] = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5)
VERSION = len(MIGRATIONS)

# How long a statement waits for a lock another connection holds, in seconds.
#   Writes: every transaction of ours is a few statements that commit in milliseconds (WAL, synchronous=NORMAL:
#   no fsync per commit). A write lock held longer than BUSY_TIMEOUT is not ours (a sqlite3 shell with an open
#   transaction, a stopped process): the write raises JournalError rather than freezing the caller, which for the
#   app is its event loop. The engine halts on it.
#   Reads: a WAL reader never waits for a writer. It waits only while a connection closes (its final checkpoint) or
#   recovers a crashed WAL, both short, so the same bound serves; a read that had to fail would be worse.
BUSY_TIMEOUT = 2.0
#   Opening: the first opener creates the schema, and a migration may take longer than a commit; an open happens
#   at start, not in the middle of a deploy.
OPEN_TIMEOUT = 10.0

SETUP_LOCK = "journal.db-setup"  # flock()ed by whoever sets the file up (WAL mode, migrations); holds no data


def prepare(state_dir: Path, *, readonly: bool = False) -> Path:
    """state_dir/journal.db, the directory and the (empty) file created for the team unless readonly.

    The directory is 0710 and the file 0600 whatever the umask: the server's user alone writes it (the team's
    group may pass through the directory to the server's socket); a setgid bit (inherited from a team parent) is
    kept. A world-writable directory or file is refused (JournalSetupError). Safe when several processes do it at
    once.
    """
    path = state_dir / "journal.db"
    missing = JournalError(f"no journal at {path} yet: nothing was logged or deployed with this state directory")
    if readonly and not state_dir.exists():
        raise missing
    try:
        if not readonly:
            try:
                state_dir.parent.mkdir(parents=True, exist_ok=True)
                state_dir.mkdir(mode=0o710)
                os.chmod(state_dir, 0o710 | (state_dir.stat().st_mode & stat.S_ISGID))
            except FileExistsError:
                pass  # ours from before, the team's, or another process's that got here first: left as it is
        _refuse_world_writable(state_dir, "state directory")
        if readonly and not path.exists():
            raise missing
        if not readonly:
            try:
                fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
                try:
                    os.fchmod(fd, 0o600)  # SQLite gives the -wal and -shm files the same mode
                finally:
                    os.close(fd)
            except FileExistsError:
                pass
        if path.exists():
            _refuse_world_writable(path, "journal")
    except OSError as e:
        raise journal_error(e, path) from None
    return path


def _refuse_world_writable(path: Path, what: str) -> None:
    if path.stat().st_mode & stat.S_IWOTH:
        raise JournalSetupError(
            f"the {what} {path} is world-writable: anyone could rewrite the deploy record; run `chmod o-w {path}`"
        )


class JournalConnection(sqlite3.Connection):
    """A connection that knows its file, so that every failure can name it, and its dialect (dialect.py)."""

    path: Path
    dialect = SQLITE

    def begin(self) -> None:
        """A write transaction, the write lock taken first (see journal._Tx)."""
        self.execute("BEGIN IMMEDIATE")


def connect(path: Path, *, readonly: bool = False) -> JournalConnection:
    """A connection to an existing journal.db, in WAL mode and migrated to VERSION (unless readonly).

    Read-only opens never write to the file, its directory or its -wal/-shm files, and work when all of them are
    read-only for this user. Raises JournalError naming the path and what to do; JournalSetupError for a file
    written by a newer controlroom (left untouched).
    """
    path = Path(path).absolute()
    if readonly:
        return _connect_readonly(path)
    db = _raw(path, "mode=rw")  # never create here: Journal.open made the file with the team's permissions
    try:
        db.execute(f"PRAGMA busy_timeout = {int(OPEN_TIMEOUT * 1000)}")
        version = _version(db)
        _refuse_newer(version, path)  # before anything writes to the file
        if version != VERSION or _mode(db) != "wal":
            # Switching to WAL takes an exclusive lock that SQLite does not wait for when a second opener is half
            # way through the same set-up (SQLITE_BUSY at once, to avoid a deadlock): openers take turns here.
            with _setup_lock(path):
                if _mode(db) != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                migrate(db, path)
        db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash, which is what we guard
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        return db
    except (sqlite3.Error, OSError) as e:
        db.close()
        raise journal_error(e, path) from None
    except BaseException:
        db.close()
        raise


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to VERSION, version by version, in one IMMEDIATE transaction (a no-op when it is there)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _version(db)
        _refuse_newer(version, path)
        for step in MIGRATIONS[version:]:
            if callable(step):
                step(db)
            else:
                for statement in step.split(";"):
                    if statement.strip():
                        db.execute(statement)
        if version != VERSION:
            db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _connect_readonly(path: Path) -> JournalConnection:
    if not path.exists():
        raise JournalError(f"no journal at {path} yet: nothing was logged or deployed with this state directory")
    try:
        db = _probe(_raw(path, "mode=ro"))
    except sqlite3.Error as e:
        # A WAL file read needs the -wal and -shm files, which a reader makes when they are missing: it cannot
        # without write access to the directory, nor on a full disk (no room for the -shm). After the last writer
        # closed cleanly they are gone and everything is in journal.db, which can then be read as an immutable
        # file. With a -wal that holds anything, that would hide its entries: say so instead.
        wal = Path(f"{path}-wal")
        if not _cannot_make_wal_files(e) or (wal.exists() and wal.stat().st_size):
            raise journal_error(e, path) from None
        try:
            db = _probe(_raw(path, "mode=ro&immutable=1"))
        except sqlite3.Error as e2:
            raise journal_error(e2, path) from None
    _refuse_newer(_version(db), path, db)
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    return db


def _cannot_make_wal_files(e: sqlite3.Error) -> bool:
    """Whether a read-only open failed for want of the -wal and -shm files it could not make: read-only here, or
    the -shm that finds no room (SQLite grows it by writing a byte into each page of it)."""
    extended = getattr(e, "sqlite_errorcode", None)
    return _code(e) in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN) or extended in (
        sqlite3.SQLITE_IOERR_SHMOPEN, sqlite3.SQLITE_IOERR_SHMSIZE, sqlite3.SQLITE_IOERR_SHMMAP)


def _raw(path: Path, params: str) -> JournalConnection:
    uri = f"file:{quote(str(path))}?{params}"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=OPEN_TIMEOUT, isolation_level=None, check_same_thread=False,
                             factory=JournalConnection)
    except sqlite3.Error as e:
        raise journal_error(e, path) from None
    db.path = path
    return db


def _probe(db: JournalConnection) -> JournalConnection:
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the file (and its WAL) for real
        return db
    except BaseException:
        db.close()
        raise


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _mode(db: sqlite3.Connection) -> str:
    return str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def _refuse_newer(version: int, path: Path, db: sqlite3.Connection | None = None) -> None:
    if version > VERSION:
        if db is not None:
            db.close()
        raise JournalSetupError(
            f"{path} was written by a newer controlroom (journal version {version}, this one knows up to"
            f" {VERSION}): upgrade controlroom; the file was left as it is"
        )


@contextlib.contextmanager
def _setup_lock(path: Path) -> Iterator[None]:
    lock_path = path.with_name(SETUP_LOCK)
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # whatever the umask; only its owner may, and needs to
        deadline = time.monotonic() + OPEN_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise JournalError(
                        f"the journal {path} is being set up by another process for over {OPEN_TIMEOUT:.0f} s"
                        f" (it holds {lock_path}); try again, or find it with `fuser {lock_path}`"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the flock


# ------------------------------------------------------------------------------------------------ failures
_FAILURES = {
    sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB,
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM,
}


def _code(e: BaseException) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_failure(e: BaseException) -> bool:
    """Whether this error is the file's or the disk's (to explain to the operator) rather than a bug of ours."""
    return isinstance(e, OSError) or (isinstance(e, sqlite3.Error) and _code(e) in _FAILURES)


def explain(e: sqlite3.Error, db: sqlite3.Connection) -> Exception:
    """What to raise for an error of a statement on db: JournalError when the file or the disk refused (full,
    read-only, corrupted, busy past the timeout, I/O error), else the error itself (a bug, with its traceback)."""
    if not is_failure(e):
        return e
    return journal_error(e, getattr(db, "path", None) or Path("journal.db"))


def journal_error(e: BaseException, path: Path) -> JournalError:
    """One line for the operator: which file, what went wrong, what to do."""
    code = _code(e)
    if isinstance(e, OSError):
        code = {errno.ENOSPC: sqlite3.SQLITE_FULL, errno.EDQUOT: sqlite3.SQLITE_FULL, errno.EACCES: sqlite3.SQLITE_PERM,
                errno.EPERM: sqlite3.SQLITE_PERM, errno.EROFS: sqlite3.SQLITE_READONLY}.get(e.errno or 0)
    where = path.parent
    if code == sqlite3.SQLITE_FULL:
        return JournalError(f"cannot write the journal {path}: the disk is full; free space on it (`df -h {where}`),"
                            " then try again")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN) and (
            why := _unwritable(path)):
        return JournalError(f"cannot write the journal {path}: {why}; `controlroom log` can still read it")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM) or (
        code == sqlite3.SQLITE_CANTOPEN and where.exists() and not os.access(where, os.W_OK)
    ):
        return JournalError(
            f"cannot write the journal {path}: it is read-only for {_me()}; the team needs write access to {where}"
            f" and its files (be in its group, and `chmod -R g+rwX {where}`); `controlroom log` can still read it"
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return JournalError(
            f"{path} is corrupted or not a controlroom journal ({e}): stop its server (`controlroom server stop"
            f" --force`), move it aside with its -wal and -shm files (`mkdir {where}/bad && mv {path}* {where}/bad/`)"
            ", then restore a backup there or let the next command start a new journal"
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return JournalError(
            f"the journal {path} is busy: another process has held its write lock for over {BUSY_TIMEOUT:.0f} s"
            f" (which one is unknown); try again, or find it with `fuser {path}`"
        )
    if code == sqlite3.SQLITE_IOERR:
        return JournalError(
            f"cannot read or write the journal {path}: disk I/O error ({e}); check the disk, its free space"
            f" (df -h {where}) and the file, then try again"
        )
    detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return JournalError(f"cannot open the journal {path}: {detail}")


FS_IOC_GETFLAGS, FS_IMMUTABLE_FL, FS_APPEND_FL = 0x80086601, 0x10, 0x20  # linux/fs.h


def _unwritable(path: Path) -> str | None:
    """Why nobody, root included, may write the journal here, when it is the filesystem's doing: mounted read-only,
    or the file or its directory made immutable (chattr); None otherwise (then it is a matter of permissions)."""
    where = path.parent
    there = where
    while not there.exists() and there.parent != there:
        there = there.parent  # a state directory not made yet: the filesystem it would be made on
    try:
        if os.statvfs(there).f_flag & os.ST_RDONLY:
            return (f"the filesystem holding {where} is mounted read-only; remount it read-write (`mount -o"
                    f" remount,rw {_mount_point(there)}`) or give [state] dir a writable place")
    except OSError:
        return None
    for p in (path, where):
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            flags = int.from_bytes(fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8))[:4], "little")
        except OSError:
            flags = 0  # a filesystem without attributes
        finally:
            os.close(fd)
        if flags & (FS_IMMUTABLE_FL | FS_APPEND_FL):
            return f"{p} is immutable or append-only (chattr); `chattr -i -a {p}` lets it be written"
    return None


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    dev = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == dev:
        path = path.parent
    return path


def _me() -> str:
    """This process's user, by its uid (not $USER, which survives setuid and sudo)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"
