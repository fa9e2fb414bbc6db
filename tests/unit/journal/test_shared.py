"""The journal in PostgreSQL, shared by bastions (journal/pg.py): the record reads back as on SQLite (the first test
runs on both), its schema is versioned and set up once however many open it at once, a newer one is refused, the
URL's password is never said, `controlroom journal migrate` moves a SQLite journal over, and two bastions (two state
directories) on one journal see one fleet lock and one journal id."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from controlroom.config import config as config_mod
from controlroom.core import events as ev
from controlroom.core.errors import ConfigErrors, DeployLost, JournalError, JournalSetupError, LockedError
from controlroom.core.identity import Actor
from controlroom.journal import pg, record
from controlroom.journal.flags import CONFIRMED, FlagHistory, Receipt
from controlroom.journal.journal import Journal
from tests.conftest import run_cli
from tests.pg import SECRET_ROLE
from tests.together import FIRST_USE, run_together
from tests.unit.journal.test_locks import HOLDER
from tests.waiting import wait_for

PHASES = (("canary", ("web001",)), ("rest", ("web002", "web003")))


def a_deploy(j: Journal) -> int:
    """One deploy, recorded as the engine records it: started, web001 done, web002 failed, rolled back on web001."""
    rid = j.new_rollout("r2307", "r2306", Actor("alice"), [list(p) for p in PHASES], commit="c" * 40)
    j.record(ev.RolloutStarted(rid, revision="r2307", previous="r2306", user="alice", phases=PHASES))
    j.record(ev.PhaseStarted(rid, phase=0, name="canary", hosts=("web001",)))
    for state, step in (("running", 1), ("running", 2), ("done", 2)):
        j.record(ev.HostStateChanged(rid, host="web001", phase=0, state=state, step=step, steps=2, steps_done=step,
                                     revision="r2307" if state == "done" else None, previous="r2306"))
    j.record(ev.HostStateChanged(rid, host="web002", phase=1, state="failed", step=1, steps=2, reason="exit 1"))
    j.add_log(Actor("bob", "192.0.2.7"), "NOTE", "100% of the canary? yes")
    j.record(ev.OperatorAction(rid, user="bob", action="rollback", detail="1 hosts"))
    return rid


def test_the_record_reads_back_the_same_from_either_journal(open_journal, tmp_path):
    j = open_journal(tmp_path / "state")
    assert j.next_step() == ""
    rid = a_deploy(j)
    assert j.touched(rid) == {"web001"} and j.actions(rid) == {"rollback"}
    assert j.rollback_underway(rid)
    assert j.next_step() == f"`controlroom rollback` finishes the rollback of deploy #{rid}"
    runs = j.host_runs(rid)
    assert (runs["web001"].state, runs["web001"].revision, runs["web002"].reason) == ("done", "r2307", "exit 1")
    assert runs["web003"].state == "pending" and runs["web003"].phase == 1
    assert j.live_revisions() == {"web001": ("r2307", "r2306")}
    assert [t["state"] for t in j.transitions(rid, "web001")] == ["running", "running", "done"]
    rec = j.rollout(rid)
    assert (rec.revision, rec.user, rec.status, rec.phases) == ("r2307", "alice", "running", PHASES)
    assert len(j.rollout_uuid(rid)) == 32 and j.rollout_uuid(rid) == j.rollout_uuid(rid)
    [note] = [e for e in j.log() if e.kind == "NOTE"]
    assert (note.user, note.origin, note.text) == ("bob", "192.0.2.7", "100% of the canary? yes")
    j.record(ev.RolloutFinished(rid, status=ev.R_ROLLED_BACK, revision="r2307", done=1, failed=1, skipped=1,
                                seconds=3.0))
    assert not j.rollback_underway(rid) and j.next_step() == ""

    j.add_stage(Actor("alice"), "r2308", "d" * 40, True, 1.5, "")
    assert j.staged_ok("r2308", "d" * 40) and not j.staged_ok("r2309", None)
    flags = FlagHistory(j)
    change = {"version": 1, "at": 100.0, "user": "bob", "flag": "beehive", "old": "on", "new": "off",
              "reason": "on fire", "hosts": 1, "state": {"beehive": "off"}}
    flags.begun(change, [], ev.FlagChanged(0, flag="beehive", old="on", new="off", user="bob", reason="on fire",
                                           version=1, confirmed=0, total=1))
    flags.ended(change, 1, [], [Receipt("web001", 1, "a" * 64, CONFIRMED, at=101.0)], line="beehive on -> off",
                actor=Actor("bob"))
    flags.save(Receipt("web001", 1, "a" * 64, CONFIRMED, at=102.0))  # the same host again: replaced
    assert flags.receipts()["web001"].at == 102.0 and flags.value("beehive", "on") == "off"

    db = j.db
    [row] = record.deploys(db, user="alice")
    assert (row.id, row.revision, row.status, row.commit_hash) == (rid, "r2307", "rolled_back", "c" * 40)
    assert record.deploy(db).id == rid and record.deploy_numbers(db) == [rid]
    events = record.deploy_events(db, rid)
    assert [e.type for e in events][:2] == ["RolloutStarted", "PhaseStarted"]
    assert "LogEntryAdded" in [e.type for e in events]  # bob's note, recorded between the deploy's events
    assert [d["type"] if "type" in d else t for _, _, t, d in record.deploy_events_decoded(db, rid)] == [
        e.type for e in events]
    assert record.last_done(db, rid) is not None
    assert record.flags_at(db, 100.5) == (1, {"beehive": "off"})
    assert [(f["user"], f["failed"]) for f in record.flag_changes(db, user="bob")] == [("bob", [])]
    assert [(s["user"], s["ok"]) for s in record.stages(db, user="alice")] == [("alice", 1)]
    assert [e.type for e in record.events_of(db, [rid], ["RolloutFinished"])[rid]] == ["RolloutFinished"]

    first_id = j.journal_id()
    j2 = open_journal(tmp_path / "state")
    assert j2.journal_id() == first_id  # made once, kept
    assert j2.new_rollout("r2308", "r2307", Actor("carol"), []) == rid + 1


def test_a_shared_journal_is_set_up_once_by_eight_processes_opening_it_at_once(pg_url, tmp_path):
    child = FIRST_USE + (
        "j = Journal.open(sys.argv[1], url=sys.argv[3])\n"
        "j.add_log(Actor('p' + sys.argv[2]), 'NOTE', 'first use')\n"
        "print('ok', flush=True)\n"
    )
    results = run_together(child, [[str(tmp_path / f"bastion{i}"), str(i), pg_url] for i in range(8)])
    assert results == [(0, "ok\n", "")] * 8
    j = Journal.open(tmp_path / "bastion0", url=pg_url)
    try:
        assert sorted(e.user for e in j.log()) == [f"p{i}" for i in range(8)]
        assert j.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(pg.VERSION)
        tables = [r[0] for r in j.db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                                             " ORDER BY tablename")]
        assert tables == ["events", "flag_changes", "flag_receipts", "host_runs", "hosts", "lock", "log", "meta",
                          "notify_sent", "rollouts", "stages"]
    finally:
        j.close()


def test_a_shared_journal_from_a_newer_controlroom_is_refused_and_left_untouched(pg_url, tmp_path):
    Journal.open(tmp_path / "state", url=pg_url).close()
    db = pg.connect(pg_url)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(pg.VERSION + 1),))
    db.execute("DROP TABLE stages")  # nothing may bring it back
    for readonly in (False, True):
        with pytest.raises(JournalSetupError, match=rf"{pg_url} was written by a newer controlroom \(journal version"
                                                    rf" {pg.VERSION + 1}, this one knows up to {pg.VERSION}\)"):
            Journal.open(tmp_path / "state", url=pg_url, readonly=readonly)
    assert db.execute("SELECT to_regclass('stages')").fetchone()[0] is None
    db.close()


def test_a_password_in_the_config_is_refused_naming_the_line_and_never_said(tmp_path):
    (tmp_path / "controlroom.toml").write_text(
        '[inventory]\nhosts = ["web001"]\n[inventory.ssh]\nknown_hosts = "kh"\n[release]\nrepo = "."\n'
        '[deploy]\nsteps = ["true"]\n[state]\ndir = "state"\njournal = "postgresql://cr:s3cret@db:5432/cr"\n')
    (tmp_path / "kh").write_text("")
    with pytest.raises(ConfigErrors) as raised:
        config_mod.load(tmp_path / "controlroom.toml")
    assert str(raised.value).startswith(f"{tmp_path / 'controlroom.toml'}:11: state.journal: must not hold a password")
    assert "s3cret" not in str(raised.value)
    res = run_cli("check", "--config", str(tmp_path / "controlroom.toml"))
    assert res.returncode == 2 and "s3cret" not in res.stdout + res.stderr, res.stdout + res.stderr
    assert "state.journal: must not hold a password" in res.stderr

    # every spelling libpq reads as a secret is refused as well, never said
    written = (tmp_path / "controlroom.toml").read_text()
    for url in ("postgresql://cr@db/cr?password=s3cret", "postgresql://cr@db/cr?sslmode=require&sslpassword=s3cret",
                "postgresql://cr@db/cr?pass%77ord=s3cret"):
        (tmp_path / "controlroom.toml").write_text(written.replace("postgresql://cr:s3cret@db:5432/cr", url))
        with pytest.raises(ConfigErrors) as raised:
            config_mod.load(tmp_path / "controlroom.toml")
        assert "state.journal: must not hold a password" in str(raised.value) and "s3cret" not in str(raised.value)

    (tmp_path / "controlroom.toml").write_text(written.replace("cr:s3cret@db", "cr@db"))
    res = run_cli("check", "--config", str(tmp_path / "controlroom.toml"))
    assert f"state: {tmp_path / 'state'}, journal postgresql://cr@db:5432/cr" in res.stdout.splitlines()
    # check tries the journal too: no host "db" here, so the check fails, saying so in its one line
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("controlroom: journal: cannot connect to db:5432: "), res.stderr


def test_a_journal_that_cannot_be_reached_is_one_line_with_its_password_hidden(pg_cluster, tmp_path):
    url = f"postgresql://postgres:s3cret@127.0.0.1:{pg_cluster.port}/no_such_db"
    with pytest.raises(JournalError) as raised:
        Journal.open(tmp_path / "state", url=url)
    text = str(raised.value)
    assert text.startswith(f"cannot use the journal postgresql://postgres:***@127.0.0.1:{pg_cluster.port}/no_such_db:")
    assert "s3cret" not in text and "\n" not in text and 'database "no_such_db" does not exist' in text
    assert pg.redact("postgresql://db/cr?password=s3cret&sslmode=require") == (
        "postgresql://db/cr?password=***&sslmode=require")


CHECKED = ('[inventory]\nhosts = ["web001"]\n[inventory.ssh]\nknown_hosts = "kh"\n[release]\nrepo = "."\n'
           '[deploy]\nsteps = ["true"]\n[state]\ndir = "state"\njournal = "{}"\n')


def checked(tmp_path, url: str):
    """A config whose [state] journal is url; its path."""
    (tmp_path / "kh").write_text("")
    (tmp_path / "controlroom.toml").write_text(CHECKED.format(url))
    return str(tmp_path / "controlroom.toml")


def test_check_tries_the_shared_journal_and_says_it_is_reachable_and_its_schema(pg_url, tmp_path):
    config = checked(tmp_path, pg_url)
    res = run_cli("check", "--config", config)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == (
        f"journal: {pg_url} reachable, no journal yet (set up at its first use, schema v{pg.VERSION})")
    assert not (tmp_path / "state").exists()  # check writes nothing, there or in the database
    Journal.open(tmp_path / "state", url=pg_url).close()  # the first use sets it up
    res = run_cli("check", "--config", config)
    assert res.returncode == 0 and res.stderr == "", res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == f"journal: {pg_url} reachable, schema v{pg.VERSION}"
    c = json.loads(run_cli("check", "--json", "--config", config).stdout)
    assert c["ok"] and c["journal_check"] == {"ok": True, "said": f"{pg_url} reachable, schema v{pg.VERSION}"}
    db = pg.connect(pg_url)
    try:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(pg.VERSION - 1),))
        res = run_cli("check", "--config", config)
        assert res.returncode == 0 and res.stdout.splitlines()[-1] == (
            f"journal: {pg_url} reachable, schema v{pg.VERSION - 1} (migrated to v{pg.VERSION} at its first use)")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(pg.VERSION + 1),))
        res = run_cli("check", "--config", config)
        assert res.returncode == 2 and res.stderr.splitlines() == [
            f"controlroom: journal: {pg_url} was written by a newer controlroom (journal version {pg.VERSION + 1},"
            f" this one knows up to {pg.VERSION}): upgrade controlroom; the database was left as it is"], res.stderr
    finally:
        db.close()


def test_check_fails_in_one_line_when_nothing_listens_where_the_journal_is(pg_cluster, tmp_path):
    with socket.socket() as s:  # a port nobody listens on (bound, never listening, until the check is done)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        config = checked(tmp_path, f"postgresql://postgres@127.0.0.1:{port}/cr")
        res = run_cli("check", "--config", config)
        js = run_cli("check", "--json", "--config", config)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.splitlines() == [f"controlroom: journal: cannot connect to 127.0.0.1:{port}: Connection refused"]
    assert f"state: {tmp_path / 'state'}, journal postgresql://postgres@127.0.0.1:{port}/cr" in res.stdout
    assert js.returncode == 2 and json.loads(js.stdout)["journal_check"] == {
        "ok": False, "said": f"cannot connect to 127.0.0.1:{port}: Connection refused"}
    assert json.loads(js.stdout)["ok"] is False


def test_check_gives_up_on_a_journal_that_accepts_the_connection_but_never_answers(pg_cluster, tmp_path):
    with socket.socket() as s:  # the connection is queued (backlog), never accepted: nothing ever answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        port = s.getsockname()[1]
        res = run_cli("check", "--config", checked(tmp_path, f"postgresql://postgres@127.0.0.1:{port}/cr"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.splitlines() == [f"controlroom: journal: cannot connect to 127.0.0.1:{port}: connection timeout expired"]


def test_check_with_a_wrong_password_says_so_and_never_the_password(pg_cluster, tmp_path):
    db = pg_cluster.new_database(owner=SECRET_ROLE[0]).rpartition("/")[2]
    url = pg_cluster.secret_url(db)  # the password from PGPASSWORD (the config refuses one in the URL)
    res = run_cli("check", "--config", checked(tmp_path, url), env={"PGPASSWORD": "Wr0ngSecret"})
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.splitlines() == [f"controlroom: journal: cannot connect to 127.0.0.1:{pg_cluster.port}: FATAL:"
                                       f' password authentication failed for user "{SECRET_ROLE[0]}"']
    assert "Wr0ngSecret" not in res.stdout + res.stderr
    res = run_cli("check", "--config", checked(tmp_path, url), env={"PGPASSWORD": SECRET_ROLE[1]})
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == (
        f"journal: {url} reachable, no journal yet (set up at its first use, schema v{pg.VERSION})")
    # reachable, but not usable: an empty database where this role may not create the journal's tables
    res = run_cli("check", "--config", checked(tmp_path, pg_cluster.secret_url()), env={"PGPASSWORD": SECRET_ROLE[1]})
    assert res.returncode == 2 and res.stderr.splitlines() == [
        f"controlroom: journal: {pg_cluster.secret_url()} reachable, but empty, and {SECRET_ROLE[0]} may not create"
        " the journal's tables in it (GRANT CREATE ON SCHEMA)"], res.stdout + res.stderr
    for bad in (pg_cluster.secret_url(db, "Wr0ngSecret"), pg_cluster.secret_url(db, "Wr0ngSecret", in_query=True)):
        res = run_cli("check", "--config", checked(tmp_path, bad))  # refused by the config, never repeated
        assert res.returncode == 2 and "state.journal: must not hold a password" in res.stderr, res.stderr
        assert "Wr0ngSecret" not in res.stdout + res.stderr


@pytest.mark.parametrize("in_query", [False, True], ids=["in-the-user-part", "as-password="])
def test_journal_migrate_with_a_wrong_password_never_says_the_password(pg_cluster, tmp_path, in_query):
    Journal.open(tmp_path / "state").close()
    db = pg_cluster.new_database(owner=SECRET_ROLE[0]).rpartition("/")[2]
    for secret in ("Wr0ngSecret", "Wr0ng%zzSecret", "Wr0ng%41Secret"):  # %zz: libpq repeats the token it cannot read
        res = run_cli("journal", "migrate", "--from", str(tmp_path / "state"), "--to",
                      pg_cluster.secret_url(db, secret, in_query=in_query))
        out = res.stdout + res.stderr
        assert res.returncode != 0 and len(res.stderr.splitlines()) == 1 and "Traceback" not in out, out
        assert "Wr0ng" not in out and "Secret" not in out and "***" in res.stderr, out
        assert "password authentication failed" in out or "invalid percent-encoded token" in out, out
    res = run_cli("journal", "migrate", "--from", str(tmp_path / "state"), "--to",
                  pg_cluster.secret_url(db, SECRET_ROLE[1], in_query=in_query))
    assert res.returncode == 0, res.stdout + res.stderr  # the right one moves it (and is not said either)
    assert SECRET_ROLE[1] not in res.stdout + res.stderr and "***" in res.stdout


def test_every_form_of_the_password_is_scrubbed_from_what_is_said():
    url = "postgresql://cr:p%40ss@db/cr?pass%77ord=an%20other&password=third+one&sslmode=require"
    assert pg.redact(url) == "postgresql://cr:***@db/cr?pass%77ord=***&password=***&sslmode=require"
    assert pg.redact("postgresql:///cr?password=s3cret") == "postgresql:///cr?password=***"
    assert pg.redact("postgresql://db/cr?sslpassword=k3y&sslmode=verify-full") == (
        "postgresql://db/cr?sslpassword=***&sslmode=verify-full")
    assert pg.scrub("bad key k3y", "postgresql://db/cr?sslpassword=k3y") == "bad key ***"
    assert pg.redact("postgresql:///cr?sslmode=require") == "postgresql:///cr?sslmode=require"
    said = 'token "p%40ss", "p@ss", "an%20other", "an other", "third+one", "third one" sslmode require'
    assert pg.scrub(said, url) == 'token "***", "***", "***", "***", "***", "***" sslmode require'


def test_a_malformed_journal_url_is_one_line_exit_2_and_nothing_is_created(pg_cluster, tmp_path):
    base = ('[inventory]\nhosts = ["web001"]\n[inventory.ssh]\nknown_hosts = "kh"\n[release]\nrepo = "."\n'
            '[deploy]\nsteps = ["true"]\n[state]\ndir = "state"\njournal = "{}"\n')
    (tmp_path / "kh").write_text("")
    (tmp_path / "controlroom.toml").write_text(base.format("postgresql://[db/cr"))  # an unclosed IPv6 address
    res = run_cli("log", "add", "x", "--config", str(tmp_path / "controlroom.toml"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [
        f"controlroom: {tmp_path / 'controlroom.toml'}:11: state.journal: is not a URL (Invalid IPv6 URL)"]
    res = run_cli("journal", "migrate", "--from", str(tmp_path / "state"), "--to", "postgresql://[db/cr")
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr

    port = pg_cluster.port
    for url, said in ((f"postgresql://postgres@127.0.0.1:{port}/postgres?nosuch=1", 'parameter: "nosuch"'),
                      ("postgresql://postgres@127.0.0.1:notaport/postgres", "its port must be a number")):
        with pytest.raises(JournalSetupError, match=rf"^the journal .* is not a URL PostgreSQL takes: .*{said}"):
            Journal.open(tmp_path / "state", url=url)
        (tmp_path / "controlroom.toml").write_text(base.format(url))
        res = run_cli("log", "add", "x", "--config", str(tmp_path / "controlroom.toml"))
        assert res.returncode == 2 and len(res.stderr.splitlines()) == 1, res.stdout + res.stderr
    assert not (tmp_path / "state").exists()


def test_a_session_stuck_in_the_journals_setup_makes_opening_fail_in_one_line_not_wait_forever(pg_url, tmp_path,
                                                                                                  monkeypatch):
    import psycopg

    Journal.open(tmp_path / "state", url=pg_url).close()
    monkeypatch.setattr(pg, "OPEN_TIMEOUT", 0.3)
    stuck = psycopg.connect(pg_url, autocommit=True)  # a session in the setup's lock, in a transaction that stays
    stuck.execute("BEGIN")
    stuck.execute("SELECT pg_advisory_xact_lock(%s, %s)", (pg.KEY, pg.SETUP))
    try:
        with pytest.raises(JournalError, match=r"^the journal .* is busy: another session has held its setup lock"
                                               r" for over 0.3 s \(pg_locks"):
            Journal.open(tmp_path / "state", url=pg_url)
    finally:
        stuck.execute("ROLLBACK")
        stuck.close()
    j = Journal.open(tmp_path / "state", url=pg_url)  # once it is gone, the journal opens
    j.close()


def test_a_driver_whose_deploy_another_bastion_took_over_neither_parks_nor_lets_go_the_takers_lock(pg_url, tmp_path):
    a = Journal.open(tmp_path / "a", url=pg_url)
    b = Journal.open(tmp_path / "b", url=pg_url)
    try:
        rid = a.new_rollout("r2307", "r2306", Actor("alice"), [list(p) for p in PHASES])
        assert a.take_lock(Actor("alice"), "deploying r2307", rollout_id=rid).epoch == 1
        assert b.take_lock(Actor("bob"), "deploying r2307", rollout_id=rid).epoch == 2  # b drives it now
        with pytest.raises(DeployLost, match=rf"^this bastion lost deploy #{rid}: it was taken over by bob"):
            a.park_lock(rid, "r2307 halted: nobody answered")
        with pytest.raises(DeployLost, match=rf"^this bastion lost deploy #{rid}"):
            a.release_lock(Actor("alice"), rollout_id=rid, manual=False)
        lock = b.lock()
        assert lock is not None and not lock.parked and (lock.user, lock.reason) == ("bob", "deploying r2307")
        assert b.release_lock(Actor("bob"), rollout_id=rid, manual=False) is not None  # the taker's own goes
        assert b.lock() is None
    finally:
        a.close()
        b.close()


def test_journal_migrate_moves_every_table_keeps_the_ids_and_refuses_a_journal_that_is_not_empty(pg_url, tmp_path):
    state = tmp_path / "state"
    src = Journal.open(state)
    rid = a_deploy(src)
    src.take_lock(Actor("carol"), "NO DEPLOY PLEASE: db work")
    src.add_stage(Actor("alice"), "r2308", None, False, 2.0, "make failed")
    FlagHistory(src).save(Receipt("web001", 3, "a" * 64, CONFIRMED, at=1.0))
    journal_id, uuid = src.journal_id(), src.rollout_uuid(rid)
    log, counts = src.log(), {t: src.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                              for t in ("events", "log", "host_runs")}
    src.close()

    res = run_cli("journal", "migrate", "--from", str(state), "--to", pg_url)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"moved {state / 'journal.db'} to {pg_url}:"
    moved = dict(line.split()[:2] for line in lines[1:-1])
    assert moved == {"rollouts": "1", "events": str(counts["events"]), "log": str(counts["log"]), "lock": "1",
                     "host_runs": str(counts["host_runs"]), "hosts": "1", "flag_changes": "0", "flag_receipts": "1",
                     "stages": "1", "notify_sent": "0", "meta": "1"}

    j = Journal.open(tmp_path / "bastion-b", url=pg_url)
    try:
        assert j.log() == log and j.journal_id() == journal_id and j.rollout_uuid(rid) == uuid
        assert j.lock().describe().startswith("NO DEPLOY PLEASE — carol")
        assert j.host_runs(rid)["web001"].state == "done"
        assert j.new_rollout("r2309", "r2307", Actor("alice"), []) == rid + 1  # the sequences moved past the ids
        j.add_log(Actor("alice"), "NOTE", "after the move")
        assert [e.id for e in j.log()][-1] == log[-1].id + 1
    finally:
        j.close()

    again = run_cli("journal", "migrate", "--from", str(state), "--to", pg_url)
    assert again.returncode == 2 and again.stderr.startswith(f"controlroom: the journal {pg_url} is not empty ("), (
        again.stdout + again.stderr)


@pytest.fixture
def bastion_a(tmp_path, pg_url):
    """Bastion A: a deploy's process on state-a holding the shared journal's fleet lock and its lock row (#7)."""
    Journal.open(tmp_path / "state-a", url=pg_url).close()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "state-a"), pg_url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "holding\n", proc.communicate()
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_bastion_on_the_shared_journal_sees_the_first_ones_live_lock_and_its_journal_id(
        tmp_path, pg_url, bastion_a):
    a = Journal.open(tmp_path / "state-a", url=pg_url)
    b = Journal.open(tmp_path / "state-b", url=pg_url)  # another state directory: another bastion
    try:
        assert b.journal_id() == a.journal_id()  # the hosts' leases name it: bastion B is no stranger
        lock = b.lock()
        assert lock.live and lock.pid == bastion_a.pid and lock.hostname
        with pytest.raises(LockedError, match=rf"the fleet is locked by deploy #7 by alice since .* \(pid"
                                              rf" {bastion_a.pid} on {lock.hostname}\)"):
            b.take_lock(Actor("bob"), "deploying r2308", rollout_id=8)
        with pytest.raises(LockedError):
            b.fleet_lock().acquire("bob's deploy")
        assert b.fleet_lock().holder() == f"pid {bastion_a.pid} on {lock.hostname}: deploy #7"

        bastion_a.kill()  # bastion A dies: its session ends, and the lock with it
        bastion_a.wait()
        wait_for(lambda: b.lock().stale, 10, "bastion A's session to end")
        held = b.fleet_lock().acquire("bob's deploy")
        b.take_lock(Actor("bob"), "deploying r2308", rollout_id=8)
        assert [(e.kind, e.text) for e in a.log()][-1] == (
            "LOCK TAKEN OVER", f"stale lock of deploy #7 by alice (pid {bastion_a.pid} is gone)")
        assert a.lock().live and a.lock().pid == b.lock().pid  # A reads B's live lock now
        held.release()
    finally:
        a.close()
        b.close()


def test_a_reader_never_waits_for_a_writer_and_a_blocked_write_gives_up_with_journal_error(pg_url, tmp_path):
    j = Journal.open(tmp_path / "state", url=pg_url)
    j.add_log(Actor("alice"), "NOTE", "before")
    other = pg.connect(pg_url)  # another bastion, in the middle of a write that never ends
    other.begin()
    other.execute("INSERT INTO log (at, \"user\", kind, text) VALUES (0, 'bob', 'NOTE', 'uncommitted')")
    try:
        assert [e.text for e in j.log()] == ["before"]  # a read returns at once
        with pytest.raises(JournalError) as raised:
            j.add_log(Actor("alice"), "NOTE", "during")  # waits pg.BUSY_TIMEOUT, not for ever
        assert str(raised.value).startswith(f"the journal {pg_url} is busy: another session has held its write lock")
    finally:
        other.execute("ROLLBACK")
        other.close()
    j.add_log(Actor("alice"), "NOTE", "after")  # nothing was left half done
    assert [e.text for e in j.log()] == ["before", "after"]
    j.close()


def test_a_follower_gets_the_other_writers_events_in_order_and_never_its_own(pg_url, tmp_path):
    a = Journal.open(tmp_path / "state-a", url=pg_url)
    b = Journal.open(tmp_path / "state-b", url=pg_url)
    try:
        a.add_log(Actor("alice"), "NOTE", "before b followed")
        last = b.follow()
        a.add_log(Actor("alice"), "NOTE", "one")
        b.add_log(Actor("bob"), "NOTE", "b's own")
        rid = a.new_rollout("r2307", "r2306", Actor("alice"), [["all", ["web001"]]])
        a.record(ev.RolloutStarted(rid, revision="r2307", previous="r2306", user="alice", phases=(("all", ("web001",)),)))
        last, events = b.others_after(last)
        assert [(type(e).__name__, getattr(e, "text", None)) for e in events] == [
            ("LogEntryAdded", "one"), ("RolloutStarted", None)]
        assert events[1].phases == (("all", ("web001",)),)  # as it was recorded, tuples and all
        assert b.others_after(last) == (last, [])
    finally:
        a.close()
        b.close()


def test_a_flag_change_another_live_bastion_is_still_pushing_is_left_to_it_and_settled_once_that_bastion_is_gone(
        pg_url, tmp_path):
    a = Journal.open(tmp_path / "state-a", url=pg_url)
    b = Journal.open(tmp_path / "state-b", url=pg_url)
    try:
        change = {"version": 7, "at": 100.0, "user": "alice", "flag": "beehive", "old": "on", "new": "off",
                  "reason": "on fire", "hosts": 2, "state": {"beehive": "off"}}
        FlagHistory(a).begun(change, [], ev.FlagChanged(0, flag="beehive", old="on", new="off", user="alice",
                                                        reason="on fire", version=7, confirmed=0, total=2))
        # bastion b's server starts while bastion a's still pushes the change: nothing pending for b to settle
        assert FlagHistory(b).pending() == []
        FlagHistory(a).ended(change, 2, [], [], line="beehive on -> off", actor=Actor("alice"))
        assert FlagHistory(b).pending() == []  # ended: nobody's to settle

        later = {**change, "version": 8}
        FlagHistory(a).begun(later, [], ev.FlagChanged(0, flag="beehive", old="on", new="off", user="alice",
                                                       reason="on fire", version=8, confirmed=0, total=2))
        assert FlagHistory(b).pending() == [] and FlagHistory(b).pushed_elsewhere() == {8}  # nor its stragglers
        assert FlagHistory(a).pushed_elsewhere() == set()  # its own push is not another's
        a.close()  # bastion a dies mid-push: its session ends, and the change is b's to settle
        wait_for(lambda: [c["version"] for c in FlagHistory(b).pending()] == [8], 10,
                 "the dead bastion's push to be pending for the other")
        assert FlagHistory(b).pushed_elsewhere() == set()
    finally:
        a.close()
        b.close()
