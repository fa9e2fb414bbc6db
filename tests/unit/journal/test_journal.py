"""The journal on disk: made for the team, refused when anyone could rewrite it, readable when read-only, clear when
the disk or the file fails, safe when many processes open it first at once, and migrated from older versions.

The operator's view is `controlroom log` in a subprocess (one line on stderr, the exit status). A journal that is
read-only for a person is made real: the CLI runs as another user (nobody) when the tests run as root, since root
ignores permission bits."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from controlroom.core.errors import JournalError
from controlroom.core.identity import Actor
from controlroom.journal import schema
from controlroom.journal.journal import Journal
from tests.disks import fill, small_tmpfs
from tests.servers import stop_servers
from tests.together import FIRST_USE, run_together
from tests.waiting import wait_for

CONFIG = """\
[inventory]
hosts = ["web001"]
[inventory.ssh]
known_hosts = "known_hosts"
[release]
repo = "."
[deploy]
steps = ["true"]
[state]
dir = "state"
"""


@pytest.fixture
def site() -> Path:
    """A directory with a controlroom.toml whose state dir is ./state, readable by every user (unlike tmp_path)."""
    d = Path(tempfile.mkdtemp(prefix="cr-journal-", dir="/tmp"))
    os.chmod(d, 0o755)
    (d / "controlroom.toml").write_text(CONFIG)
    (d / "known_hosts").write_text("")
    for f in ("controlroom.toml", "known_hosts"):
        os.chmod(d / f, 0o644)
    yield d
    stop_servers(d)  # `log add` and `lock` start the control-room server: it ends with the test
    subprocess.run(["umount", str(d / "state")], capture_output=True)  # a test's small tmpfs, if any
    for sub in (d, *d.rglob("*")):
        if sub.is_dir():
            os.chmod(sub, 0o755)
    shutil.rmtree(d, ignore_errors=True)


def other_user() -> list[str]:
    """A prefix that runs a command as a user the permission bits apply to: nobody under root, else ourselves."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def cr(site: Path, *args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(site), "SUDO_USER": "mygrant"}
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "controlroom.cli", *args],
        cwd=site, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def one_line_error(res: subprocess.CompletedProcess) -> str:
    """The single `controlroom: ...` line a failure must print, with no traceback."""
    assert "Traceback" not in res.stderr and "exception" not in res.stderr.lower(), res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("controlroom: "), res.stderr
    return lines[0]


def log_texts(res: subprocess.CompletedProcess) -> list[str]:
    assert res.returncode == 0, res.stderr
    return [line.split("] ", 2)[2] for line in res.stdout.splitlines()]


# --------------------------------------------------------------------------------------------- the state directory


def test_a_new_state_dir_is_the_servers_alone_and_keeps_the_setgid_bit_of_its_team_parent(tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    os.chmod(team, 0o2770)
    old = os.umask(0o077)
    try:
        Journal.open(team / "state").add_log(Actor("alice"), "NOTE", "hello")
    finally:
        os.umask(old)
    mode = (team / "state").stat().st_mode
    assert mode & stat.S_ISGID, oct(mode)  # what is created inside keeps the team's group (the socket's)
    assert mode & 0o777 == 0o710  # the group may pass through to the socket, open nothing
    assert (team / "state" / "journal.db").stat().st_mode & 0o777 == 0o600


def test_an_existing_team_state_dir_keeps_its_mode_and_setgid_bit(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o2750)
    Journal.open(state).add_log(Actor("alice"), "NOTE", "hello")
    assert stat.S_IMODE(state.stat().st_mode) == 0o2750


def test_a_world_writable_state_dir_is_refused_naming_it_and_how_to_fix_it(site):
    (site / "state").mkdir()
    os.chmod(site / "state", 0o777)
    for args in (["log"], ["log", "add", "hello"]):
        res = cr(site, *args)
        assert res.returncode == 2
        line = one_line_error(res)
        assert f"{site / 'state'} is world-writable" in line and f"chmod o-w {site / 'state'}" in line
    assert not (site / "state" / "journal.db").exists()  # nothing was created in it

    os.chmod(site / "state", 0o770)
    assert log_texts(cr(site, "log")) == []


def test_a_world_writable_journal_file_is_refused(site):
    assert cr(site, "log", "add", "hello").returncode == 0
    db = site / "state" / "journal.db"
    os.chmod(db, 0o666)
    res = cr(site, "log")
    assert res.returncode == 2
    line = one_line_error(res)
    assert f"{db} is world-writable" in line and f"chmod o-w {db}" in line


# --------------------------------------------------------------------------------------------- read-only journals


def make_read_only(state: Path) -> list[str]:
    """The state dir and its files readable, not writable, by the user of other_user(); returns its listing."""
    os.chmod(state, 0o555)
    for f in state.iterdir():
        os.chmod(f, 0o444)
    return sorted(p.name for p in state.iterdir())


def test_log_reads_a_journal_that_is_read_only_for_the_user_and_log_add_says_why_it_cannot_write(site):
    assert cr(site, "log", "add", "first").returncode == 0
    assert cr(site, "log", "add", "second").returncode == 0
    state = site / "state"
    stop_servers(site)  # the control-room server wrote them: it is the last writer, and it closes
    assert not (state / "journal.db-wal").exists()  # the last writer closed: everything is in journal.db
    files = make_read_only(state)

    assert log_texts(cr(site, "log", prefix=other_user())) == ["NOTE first", "NOTE second"]

    res = cr(site, "log", "add", "third", prefix=other_user())
    assert res.returncode == 1
    line = one_line_error(res)
    assert f"cannot write the journal {state / 'journal.db'}: it is read-only for" in line
    assert "`controlroom log` can still read it" in line
    assert sorted(p.name for p in state.iterdir()) == files  # nothing was created


def test_log_reads_a_read_only_journal_while_a_writer_has_entries_in_its_wal(site):
    state = site / "state"
    writer = Journal.open(state)  # a deploy running as the team, its newest entries still in journal.db-wal
    try:
        writer.db.execute("PRAGMA wal_autocheckpoint = 0")
        writer.add_log(Actor("alice"), "NOTE", "first")
        writer.add_log(Actor("alice"), "DEPLOY START", "r1 -> r2")
        assert (state / "journal.db-wal").stat().st_size > 0
        make_read_only(state)
        assert log_texts(cr(site, "log", prefix=other_user())) == ["NOTE first", "DEPLOY START r1 -> r2"]
    finally:
        writer.close()


def test_journal_open_readonly_never_creates_or_migrates(tmp_path):
    with pytest.raises(JournalError, match=r"no journal at .*journal\.db yet"):
        Journal.open(tmp_path / "state", readonly=True)
    assert not (tmp_path / "state").exists()
    j = Journal.open(tmp_path / "state")
    j.add_log(Actor("alice"), "NOTE", "hello")
    j.close()
    ro = Journal.open(tmp_path / "state", readonly=True)
    assert [e.text for e in ro.log()] == ["hello"]
    with pytest.raises(JournalError, match="read-only"):
        ro.add_log(Actor("alice"), "NOTE", "more")
    ro.close()


# --------------------------------------------------------------------------------------------- broken files and disks


# every command that opens the journal, and the server started by hand: each says the same one line, exit 1
COMMANDS = (["log"], ["log", "add", "again"], ["lock", "NO DEPLOY PLEASE"], ["flags"], ["deploy", "--yes"],
            ["serve", "--idle", "1"])


@pytest.mark.slow
def test_a_journal_overwritten_with_garbage_is_named_with_what_to_do(site):
    assert cr(site, "log", "add", "hello").returncode == 0
    stop_servers(site)  # the file is damaged with nobody holding it open (a server would keep its own view)
    db = site / "state" / "journal.db"
    db.write_bytes(os.urandom(8192))
    for args in COMMANDS:
        res = cr(site, *args)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        line = one_line_error(res)
        assert f"{db} is corrupted or not a controlroom journal" in line, line
        assert f"move it aside with its -wal and -shm files (`mkdir {db.parent}/bad && mv {db}* {db.parent}/bad/`)" \
            in line
    # what it says to do works: moved aside, the next command starts a new journal
    (db.parent / "bad").mkdir()
    for f in db.parent.glob("journal.db*"):
        f.rename(db.parent / "bad" / f.name)
    assert cr(site, "log", "add", "anew").returncode == 0
    assert log_texts(cr(site, "log")) == ["NOTE anew"]


def test_a_read_only_filesystem_under_the_journal_is_one_line_naming_it_and_how_to_remount(site):
    state = site / "state"
    small_tmpfs(state, "512k")
    assert cr(site, "log", "add", "before").returncode == 0
    stop_servers(site)
    # once the stopped server's last file is closed (it may still be exiting), the filesystem can be made read-only
    wait_for(lambda: subprocess.run(["mount", "-o", "remount,ro", str(state)], capture_output=True).returncode == 0,
             30, "the filesystem to be remounted read-only")
    assert log_texts(cr(site, "log")) == ["NOTE before"]  # reading still works
    for args in COMMANDS[1:]:
        res = cr(site, *args)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert one_line_error(res) == (
            f"controlroom: cannot write the journal {state / 'journal.db'}: the filesystem holding {state} is "
            f"mounted read-only; remount it read-write (`mount -o remount,rw {state}`) or give [state] dir a "
            "writable place; `controlroom log` can still read it"), args


def test_an_immutable_journal_is_one_line_naming_it_even_for_root(site):
    assert cr(site, "log", "add", "before").returncode == 0
    stop_servers(site)
    db = site / "state" / "journal.db"
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("no chattr here")
    try:
        for args in (["log", "add", "again"], ["lock", "NO DEPLOY PLEASE"]):
            res = cr(site, *args)
            assert res.returncode == 1, (args, res.stdout, res.stderr)
            assert f"cannot write the journal {db}: {db} is immutable or append-only (chattr); `chattr -i -a {db}`" \
                in one_line_error(res)
    finally:
        stop_servers(site)
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert log_texts(cr(site, "log")) == ["NOTE before"]


@pytest.mark.slow
def test_a_full_disk_fails_the_write_in_one_line_naming_the_journal_and_reading_still_works(site):
    state = site / "state"
    small_tmpfs(state, "512k")
    j = Journal.open(state)
    j.add_log(Actor("alice"), "NOTE", "before")
    fill(state)

    with pytest.raises(JournalError) as raised:
        for i in range(1000):
            j.add_log(Actor("alice"), "NOTE", f"entry {i} " + "x" * 500)
    assert str(raised.value).startswith(f"cannot write the journal {state / 'journal.db'}: the disk is full")
    assert "before" in [e.text for e in j.log()]  # the connection is usable: the failed write was rolled back
    j.close()

    for args in COMMANDS[1:]:
        res = cr(site, *args)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        line = one_line_error(res)
        assert str(state / "journal.db") in line and "the disk is full" in line, line
        assert f"free space on it (`df -h {state}`)" in line, line
    assert "NOTE before" in log_texts(cr(site, "log"))


def test_a_journal_closed_before_its_disk_filled_still_reads_and_names_the_next_step(site):
    # The last writer's close took its -wal and -shm away; a reader must not need to write them on a full disk.
    from controlroom.core import events as ev
    from controlroom.journal.journal import next_step

    state = site / "state"
    small_tmpfs(state, "512k")
    j = Journal.open(state)
    rid = j.new_rollout("r2", "r1", Actor("alice"), [["all", ["web001"]]])
    j.record(ev.RolloutStarted(rid, revision="r2", previous="r1", user="alice", phases=(("all", ("web001",)),)))
    j.add_log(Actor("alice"), "NOTE", "before")
    j.close()
    assert not (state / "journal.db-wal").exists()
    fill(state)

    for _ in range(2):  # the first read leaves nothing behind that hides the journal from the next
        assert next_step(state, or_log=False) == (
            f"`controlroom deploy --resume` picks deploy #{rid} up, `controlroom rollback` undoes it")
    assert "NOTE before" in log_texts(cr(site, "log"))  # and `controlroom log` reads it as well


def test_a_write_that_hits_an_io_error_raises_journal_error_naming_the_path(tmp_path):
    # a file size limit makes the kernel refuse the write, as a failing disk would
    script = (
        "import resource, signal, sys\n"
        "from controlroom.core.identity import Actor\n"
        "from controlroom.journal.journal import Journal\n"
        "from controlroom.core.errors import JournalError\n"
        "j = Journal.open(sys.argv[1])\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))\n"
        "try:\n"
        "    for i in range(10_000):\n"
        "        j.add_log(Actor('alice'), 'NOTE', 'x' * 1000)\n"
        "except JournalError as e:\n"
        "    print(e)\n"
    )
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path / "state")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.startswith(f"cannot read or write the journal {tmp_path / 'state' / 'journal.db'}: disk I/O")


# --------------------------------------------------------------------------------------------- many processes


def test_eight_processes_opening_a_fresh_state_dir_at_once_all_succeed_with_one_schema(tmp_path):
    child = FIRST_USE + (
        "j = Journal.open(sys.argv[1])\n"
        "j.add_log(Actor('p' + sys.argv[2]), 'NOTE', 'first use')\n"
        "print('ok', flush=True)\n"
    )
    for round_ in range(5):  # a race shows only sometimes: several fresh directories
        state = tmp_path / f"round{round_}" / "state"
        assert run_together(child, [[str(state), str(i)] for i in range(8)]) == [(0, "ok\n", "")] * 8
        j = Journal.open(state)
        assert sorted(e.user for e in j.log()) == [f"p{i}" for i in range(8)]
        assert j.db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
        assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = [r[0] for r in j.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        assert tables == ["events", "flag_changes", "flag_receipts", "host_runs", "hosts", "lock", "log",
                          "notify_sent", "rollouts", "stages"]
        j.close()


def test_a_reader_never_waits_for_a_writer_and_a_blocked_write_gives_up_with_journal_error(tmp_path):
    state = tmp_path / "state"
    j = Journal.open(state)
    j.add_log(Actor("alice"), "NOTE", "before")
    holder = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "db.execute(\"INSERT INTO log (at, user, kind, text) VALUES (0, 'bob', 'NOTE', 'uncommitted')\")\n"
        "print('holding', flush=True)\n"
        "sys.stdin.read()\n"
        "db.execute('ROLLBACK')\n"
    )
    p = subprocess.Popen([sys.executable, "-c", holder, str(state / "journal.db")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "holding\n"
        assert [e.text for e in j.log()] == ["before"]  # the app's read returns: WAL readers do not wait
        with pytest.raises(JournalError) as raised:
            j.add_log(Actor("alice"), "NOTE", "during")  # waits schema.BUSY_TIMEOUT, not for ever
        assert str(raised.value).startswith(f"the journal {state / 'journal.db'} is busy: another process has held")
        assert "which one is unknown" in str(raised.value)
    finally:
        p.stdin.close()
        p.wait(timeout=60)
    j.add_log(Actor("alice"), "NOTE", "after")  # nothing was left half done
    assert [e.text for e in j.log()] == ["before", "after"]
    j.close()


# --------------------------------------------------------------------------------------------- versions


def make_v1_journal(state: Path) -> None:
    """A journal as controlroom wrote it before the schema had versions (user_version 0)."""
    state.mkdir(parents=True)
    db = sqlite3.connect(state / "journal.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema.SCHEMA_V1)
    db.execute("INSERT INTO log (at, user, kind, text) VALUES (1, 'alice', 'NOTE', 'from the old days')")
    db.execute("INSERT INTO rollouts (revision, previous, user, status, phase, started_at, phases)"
               " VALUES ('r2', 'r1', 'alice', 'done', 0, 1, '[]')")
    db.close()
    os.chmod(state / "journal.db", 0o660)


def test_a_journal_from_before_versions_is_migrated_and_keeps_its_history(site):
    make_v1_journal(site / "state")
    assert log_texts(cr(site, "log")) == ["NOTE from the old days"]  # `log` opens it for writing: migrated
    j = Journal.open(site / "state")
    assert j.db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION == 5
    columns = [r[1] for r in j.db.execute("PRAGMA table_info(rollouts)")]
    assert columns[-2:] == ["uuid", "commit_hash"]
    assert j.db.execute("SELECT revision, uuid FROM rollouts").fetchall() == [("r2", None)]
    assert [e.text for e in j.log()] == ["from the old days"]
    j.close()


def test_a_journal_from_a_newer_controlroom_is_refused_and_left_untouched(site):
    state = site / "state"
    make_v1_journal(state)
    db = sqlite3.connect(state / "journal.db", isolation_level=None)
    db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    db.close()
    before = (state / "journal.db").read_bytes()
    for args in (["log"], ["log", "add", "hello"]):
        res = cr(site, *args)
        assert res.returncode == 2
        line = one_line_error(res)
        assert f"{state / 'journal.db'} was written by a newer controlroom" in line and "upgrade controlroom" in line
    assert (state / "journal.db").read_bytes() == before
    assert not (state / "journal.db-wal").exists()


# --------------------------------------------------------------------------------------------- what to run next


def test_the_next_step_a_failure_names_follows_the_journal_and_a_rollback_cut_short(tmp_path, open_journal):
    from controlroom.core import events as ev
    from controlroom.journal.journal import next_step as next_step_at

    def next_step(state):  # as this test's journal says (SQLite, then PostgreSQL: conftest.py)
        return next_step_at(state, url=open_journal.url)

    state = tmp_path / "state"
    assert next_step(state) == "`controlroom log` shows where it stands"  # no journal: still a command
    j = open_journal(state)
    try:
        assert j.next_step() == ""
        rid = j.new_rollout("r2", "r1", Actor("alice"), [["all", ["web001"]]])
        j.record(ev.RolloutStarted(rid, revision="r2", previous="r1", user="alice", phases=(("all", ("web001",)),)))
        assert j.next_step() == f"`controlroom deploy --resume` picks deploy #{rid} up, `controlroom rollback` undoes it"
        j.record(ev.PhaseHalted(rid, phase=0, name="all", failed=("web001",), max_failed=0))
        assert "`controlroom deploy --resume` picks deploy" in j.next_step()
        finished = dict(revision="r2", done=1, failed=0, skipped=0, seconds=1.0)
        j.record(ev.RolloutFinished(rid, status=ev.R_DONE, **finished))
        assert j.next_step() == "" and next_step(state) == "`controlroom log` shows where it stands"
        j.record(ev.OperatorAction(rid, user="bob", action="rollback", detail="1 hosts"))  # then its server died
        assert j.rollback_underway(rid)
        assert j.next_step() == next_step(state) == f"`controlroom rollback` finishes the rollback of deploy #{rid}"
        j.record(ev.RolloutFinished(rid, status=ev.R_ROLLED_BACK, **finished))
        assert not j.rollback_underway(rid) and j.next_step() == ""
        rid2 = j.new_rollout("r3", "r1", Actor("alice"), [["all", ["web001"]]])
        j.record(ev.RolloutStarted(rid2, revision="r3", previous="r1", user="alice", phases=(("all", ("web001",)),)))
        j.record(ev.RolloutFinished(rid2, status=ev.R_FAILED, **{**finished, "done": 0, "failed": 1}))
        assert j.next_step() == (f"`controlroom deploy --resume` runs the failed hosts of deploy #{rid2} again, "
                                 "`controlroom rollback` undoes it")
    finally:
        j.close()
