"""The server's ``record`` and ``history`` reads as the app takes them: a deploy's record paged after an event id
(bounded in events and bytes, the events of no deploy between its own kept in order, the flags when it began on
the first page), an unknown deploy named with those that exist, the app's check of each answer's shape and size,
and the timeline the app builds from the pages equal to the one read from the journal. The board the timeline
screen brings to a moment (by the hosts that changed, or anew for a far jump) equals FleetAt.board()'s of it."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from controlroom.app.timeline import BadAnswer, Record, bring, check_history, check_page
from controlroom.core.errors import UsageError
from controlroom.engine.record import Timeline
from controlroom.journal import record as jrec
from controlroom.server import views, wire
from tests.records import Recorder

CFG = SimpleNamespace(flags=SimpleNamespace(flags=[SimpleNamespace(name="new_search", default="off"),
                                                  SimpleNamespace(name="other", default="on")]))


@pytest.fixture
def story(tmp_path, monkeypatch):
    r = Recorder(tmp_path / "state", monkeypatch)
    t0 = 1_790_000_000.0
    times = r.demo_story(t0)
    yield r, times
    r.close()


def pages(r, number, limit):
    out, after = [], 0
    while True:
        page = check_page(views.record_page(r.j, CFG, number, after, limit, None))
        out.append(page)
        if not page["more"]:
            return out
        after = page["last"]


def test_the_record_paged_is_the_journal_s_record_in_order_with_the_flags_at_its_start(story):
    r, times = story
    whole = jrec.deploy_events_decoded(r.j.db, times["rid"])
    got = pages(r, times["rid"], 3)
    assert len(got) > 3 and all(len(p["events"]) <= 3 + 10 for p in got)
    assert [tuple(e) for p in got for e in p["events"]] == [tuple(e) for e in whole]
    assert any(e[2] == "FlagChanged" for p in got for e in p["events"]), "the loose events are in the pages"
    assert got[0]["flags"] == {"new_search": "on", "other": "on"} and all(p["flags"] is None for p in got[1:])
    assert got[0]["deploy"]["id"] == times["rid"] and got[0]["deploy"]["user"] == "alice"
    # the app's timeline from the pages is the journal's
    rec = Record(got[0])
    for p in got:
        rec.take(p)
    rec.take(got[1])  # a page taken twice adds nothing
    tl = Timeline.read(r.j.db, times["rid"], defaults={"new_search": "off", "other": "on"})
    assert [e.text() for e in rec.tl.events] == [e.text() for e in tl.events]
    assert rec.tl.at(-1).flags == tl.at(-1).flags
    # the latest deploy when none is named
    assert views.record_page(r.j, CFG, None, 0, 5, times["rid"])["live"] is True


def test_a_page_is_bounded_in_bytes_and_the_next_starts_after_it(story, monkeypatch):
    r, times = story
    monkeypatch.setattr(wire, "RECORD_BYTES", 600)
    got = pages(r, times["rid"], wire.RECORD_PAGE)
    assert len(got) > 2
    whole = jrec.deploy_events_decoded(r.j.db, times["rid"])
    assert [e[0] for p in got for e in p["events"]] == [e[0] for e in whole]


def test_an_unknown_deploy_is_one_line_naming_those_that_exist(story):
    r, times = story
    with pytest.raises(UsageError) as e:
        views.record_page(r.j, CFG, 99, 0, 10, None)
    assert str(e.value) == f"there is no deploy #99; the record has #{times['rid']}"


def test_history_reply_lists_the_deploy_newest_first_bounded(story):
    r, times = story
    items = check_history(views.history_reply(r.j, None, 2))
    assert len(items) == 2
    full = check_history(views.history_reply(r.j, None, 500))
    assert any(i["kind"] == "deploy" and i["id"] == times["rid"] for i in full)
    assert [i["at"] for i in full] == sorted((i["at"] for i in full), reverse=True)


@pytest.mark.parametrize("bad", [
    None, [], {"deploy": None, "events": [], "last": 0},
    {"deploy": {"id": 1}, "events": "x", "last": 0},
    {"deploy": {"id": 1}, "events": [[1, 2.0, "T"]], "last": 0},
    {"deploy": {"id": 1}, "events": [[1, float("nan"), "T", "{}"]], "last": 0},
    {"deploy": {"id": 1}, "events": [["1", 2.0, "T", "{}"]], "last": 0},
    {"deploy": {"id": 1}, "events": [], "last": "0"},
    {"deploy": {"id": 1}, "events": [], "last": 0, "flags": {"a": 1}},
    {"deploy": {"id": 1}, "events": [[i, 1.0, "T", "{}"] for i in range(wire.RECORD_PAGE + 1)], "last": 0},
    # an event's data is the journal's JSON text of one object
    {"deploy": {"id": 1}, "events": [[1, 1.0, "T", {}]], "last": 0},
    {"deploy": {"id": 1}, "events": [[1, 1.0, "T", "{"]], "last": 0},
    {"deploy": {"id": 1}, "events": [[1, 1.0, "T", "[1]"]], "last": 0},
    {"deploy": {"id": 1}, "events": [[1, 1.0, "T", "{}, {}"]], "last": 0},
    {"deploy": {"id": 1}, "events": [[1, 1.0, "T", '{"a": 1'], [2, 1.0, "T", '"b": 2}']], "last": 0},
    {"deploy": {"id": 1}, "events": [[1, 1.0, "T", "{}" + " " * (2 * wire.RECORD_BYTES)]], "last": 0},
])
def test_the_app_refuses_a_record_answer_of_another_shape_or_size(bad):
    with pytest.raises(BadAnswer):
        check_page(bad)


@pytest.mark.parametrize("bad", [None, {"items": "x"}, {"items": [{"kind": "deploy", "id": "1", "at": 1.0}]},
                                 {"items": [{"kind": "deploy", "id": 1, "at": 1.0}] * (wire.HISTORY_MAX + 1)}])
def test_the_app_refuses_a_history_answer_of_another_shape_or_size(bad):
    with pytest.raises(BadAnswer):
        check_history(bad)


def test_the_board_moved_by_the_hosts_that_changed_is_the_board_of_the_moment(story):
    r, times = story
    tl = Timeline.read(r.j.db, times["rid"])
    prev = tl.at(0)
    board = prev.board()
    rng = random.Random(7)
    for k in range(200):
        i = rng.randrange(-1, len(tl)) if k % 3 == 0 else max(0, min(len(tl) - 1, prev.index + rng.choice((-1, 1))))
        at = tl.at(i)
        if list(at.hosts) != list(prev.hosts):
            board, prev = at.board(), at
            continue
        bring(board, prev, at, times["rid"])  # by the hosts that moved, or the whole board for a far jump
        want = at.board()
        assert {h: (v.state, v.revision) for h, v in board.hosts.items()} == \
               {h: (v.state, v.revision) for h, v in want.hosts.items()}, i
        assert [{s: n for s, n in p.counts.items() if n} for p in board.phases] == \
               [{s: n for s, n in p.counts.items() if n} for p in want.phases]  # a count gone to 0 draws as none
        assert [(p.started, p.seconds) for p in board.phases] == [(p.started, p.seconds) for p in want.phases]
        assert (board.status, board.phase_index) == (want.status, want.phase_index)
        prev = at
