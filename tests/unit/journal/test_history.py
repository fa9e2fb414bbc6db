"""What the journal keeps for the chat and the flags, asked for by what it means: each chat channel's cursors
(ChatCursors) and the flag history (FlagHistory), against a real journal on disk."""

from __future__ import annotations

import os

import pytest

from controlroom.core import events as ev
from controlroom.core.errors import JournalError
from controlroom.core.identity import Actor
from controlroom.journal.cursors import ChatCursors
from controlroom.journal.flags import CONFIRMED, FAILED, PENDING, FlagHistory, Receipt
from controlroom.journal.journal import Journal


@pytest.fixture
def journal(open_journal, tmp_path):
    return open_journal(tmp_path / "state")  # on SQLite, then on PostgreSQL (conftest.py)


@pytest.fixture
def sqlite_journal(tmp_path):
    j = Journal.open(tmp_path / "state")
    yield j
    j.close()


def test_a_new_channel_starts_at_the_present_and_keeps_its_place_across_a_restart(journal):
    journal.add_log(Actor("alice"), "NOTE", "before the channel existed")
    cursors = ChatCursors(journal.store)
    try:
        start = cursors.start("webhook", "log")
        assert cursors.log_after(start, 100) == []  # the history before it is not announced
        journal.add_log(Actor("bob", "192.0.2.7"), "LOCK", "db migration", "r2307")
        rows = cursors.log_after(start, 100)
        assert [(user, kind, text, revision) for _, _, user, kind, text, revision in rows] == [
            ("bob", "LOCK", "db migration", "r2307")]
        cursors.sent("webhook", rows[-1][0])
    finally:
        cursors.close()
    again = ChatCursors(journal.store)  # the next server
    try:
        assert again.start("webhook", "log") == rows[-1][0]
        assert again.log_after(rows[-1][0], 100) == []
    finally:
        again.close()


def test_a_phase_done_comes_with_its_deploys_user_and_revision(journal):
    rid = journal.new_rollout("r2307", "r2306", Actor("alice"), [["canary", ["web001"]]])
    cursors = ChatCursors(journal.store)
    try:
        start = cursors.start("webhook.events", "events")
        journal.record(ev.PhaseCompleted(rid, phase=0, name="canary", done=1, failed=0, skipped=0, seconds=1.5))
        [(_, _, data, user, revision)] = cursors.phases_after(start, 100)
        assert (user, revision) == ("alice", "r2307") and '"canary"' in data
    finally:
        cursors.close()


def test_a_cursor_points_only_into_the_log_or_the_events(journal):
    cursors = ChatCursors(journal.store)
    try:
        with pytest.raises(ValueError, match="log or events"):
            cursors.start("webhook", "lock; DROP TABLE log")
    finally:
        cursors.close()


def test_a_journal_that_cannot_be_read_is_a_journal_error_in_sqlites_words(sqlite_journal, tmp_path):
    cursors = ChatCursors(sqlite_journal.path)
    try:
        sqlite_journal.db.execute("DROP TABLE notify_sent")  # what a damaged file would do
        with pytest.raises(JournalError, match="no such table: notify_sent"):
            cursors.start("webhook", "log")
    finally:
        cursors.close()
    with pytest.raises(JournalError):
        ChatCursors(tmp_path / "nowhere" / "journal.db")
    assert not os.path.exists(tmp_path / "nowhere")


def test_a_flag_change_is_pending_until_its_push_ends_then_says_who_from_where(journal):
    history = FlagHistory(journal)
    change = {"version": 1, "at": 100.0, "user": "bob", "flag": "new_search", "old": "on", "new": "off",
              "reason": "search is slow", "hosts": 2, "state": {"new_search": "off"}}
    pending = [Receipt("web001", 1, "a" * 64, PENDING), Receipt("web002", 1, "a" * 64, PENDING)]
    history.begun(change, pending, ev.FlagChanged(0, flag="new_search", old="on", new="off", user="bob",
                                                  reason="search is slow", version=1, confirmed=0, total=2))
    assert [c["version"] for c in history.pending()] == [1]
    assert {h: r.status for h, r in history.receipts().items()} == {"web001": PENDING, "web002": PENDING}
    done = [Receipt("web001", 1, "a" * 64, CONFIRMED, at=101.0),
            Receipt("web002", 1, "a" * 64, FAILED, "refused", "connection refused", 101.0)]
    history.ended(change, 1, [["web002", "refused", "connection refused"]], done,
                  line="new_search on -> off (search is slow) 1/2", actor=Actor("bob", "192.0.2.7"))
    assert history.pending() == []
    [last] = history.changes("new_search")
    assert (last["confirmed"], last["failed"], last["state"]) == (
        1, [["web002", "refused", "connection refused"]], {"new_search": "off"})
    assert history.value("new_search", "on") == "off" and history.value("beehive", "on") == "on"
    assert history.receipts()["web002"] == done[1]
    [entry] = [e for e in journal.log() if e.kind == "FLAG"]
    assert (entry.user, entry.origin, entry.text) == ("bob", "192.0.2.7", "new_search on -> off (search is slow) 1/2")
