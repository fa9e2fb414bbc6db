"""The app's plain parts on their own: the one coalescing refresh (app/coalesce.py), the one dispatcher of the
server's events (app/dispatch.py) and which link messages supersede others (app/link.py). No server: asyncio
tasks and events only."""

from __future__ import annotations

import asyncio
import gc
import warnings

from controlroom.app.coalesce import Coalesced
from controlroom.app.dispatch import Dispatcher
from controlroom.core import events as ev


class Refresh:
    """A refresh that holds until told to finish, counting its runs and how many ever ran at once."""

    def __init__(self, answer: object = True) -> None:
        self.runs = 0
        self.at_once = self.most_at_once = 0
        self.started = asyncio.Event()
        self.go_on = asyncio.Event()
        self.answer = answer
        self.tasks: list[asyncio.Task] = []

    async def __call__(self) -> object:
        self.runs += 1
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        self.started.set()
        await self.go_on.wait()
        self.at_once -= 1
        return self.answer

    def start(self, work) -> None:
        self.tasks.append(asyncio.ensure_future(work()))


async def test_a_wish_runs_the_refresh_and_it_ends_idle():
    r = Refresh()
    r.go_on.set()
    look = Coalesced(r, r.start)
    look.want()
    assert look.running
    await r.tasks[0]
    assert r.runs == 1 and not look.running


async def test_wishes_during_a_refresh_run_it_once_more_after_it_never_beside_it():
    r = Refresh()
    look = Coalesced(r, r.start)
    look.want()
    await r.started.wait()
    for _ in range(5):
        look.want()
    assert len(r.tasks) == 1  # no second refresh started beside the first
    r.go_on.set()
    await r.tasks[0]
    assert r.runs == 2 and r.most_at_once == 1 and not look.running
    look.want()  # idle again: a wish starts it at once
    await r.tasks[1]
    assert r.runs == 3


async def test_a_refresh_that_failed_is_not_run_again_for_the_wishes_it_saw():
    r = Refresh(answer=False)
    look = Coalesced(r, r.start)
    look.want()
    await r.started.wait()
    look.want()
    r.go_on.set()
    await r.tasks[0]
    assert r.runs == 1 and not look.running
    look.want()  # a new wish after the failure tries again
    await r.tasks[1]
    assert r.runs == 2


async def test_a_refresh_that_raised_leaves_the_helper_idle_for_the_next_wish():
    runs = []

    async def broken() -> None:
        runs.append(1)
        raise RuntimeError("the server went away")

    tasks: list[asyncio.Task] = []
    look = Coalesced(broken, lambda work: tasks.append(asyncio.ensure_future(work())))
    look.want()
    await asyncio.gather(tasks[0], return_exceptions=True)
    assert not look.running
    look.want()
    await asyncio.gather(tasks[1], return_exceptions=True)
    assert len(runs) == 2


def test_a_refresh_whose_start_never_runs_it_leaves_no_coroutine_that_was_never_awaited():
    # the app exiting cancels the workers it had not started yet: nothing may be left made but never awaited
    look = Coalesced(Refresh(), lambda work: None)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        look.want()
        del look
        gc.collect()
    assert [str(w.message) for w in said if issubclass(w.category, RuntimeWarning)] == []


def test_the_dispatcher_gives_each_event_to_the_handlers_of_its_kind_in_the_order_they_were_added():
    heard: list[tuple[str, str, int]] = []
    d = Dispatcher()
    d.add(lambda e, seq: heard.append(("board", type(e).__name__, seq)), ev.PhaseStarted, ev.LogEntryAdded)
    d.add(lambda e, seq: heard.append(("markers", type(e).__name__, seq)), ev.PhaseStarted)
    d.add(lambda e, seq: heard.append(("flags", type(e).__name__, seq)), ev.FlagChanged)
    d(ev.PhaseStarted(1, phase=0, name="canary", hosts=2), 7)
    d(ev.LogEntryAdded(1, user="ann", kind="NOTE", text="hello"), 8)
    d(ev.RolloutPaused(1, user="ann"), 9)  # nobody asked for it: nobody hears it
    assert heard == [("board", "PhaseStarted", 7), ("markers", "PhaseStarted", 7), ("board", "LogEntryAdded", 8)]


def test_a_fresher_snapshot_or_presence_supersedes_an_older_one_and_no_event_supersedes_another():
    from controlroom.app.link import EngineEvents, LinkLost, PresenceChanged, SnapshotArrived

    older, newer = SnapshotArrived({"seq": 1}), SnapshotArrived({"seq": 2})
    assert older.can_replace(newer) and not older.can_replace(LinkLost())
    assert PresenceChanged([], None).can_replace(PresenceChanged([{"no": 1}], None))
    e = EngineEvents([(ev.RolloutPaused(1, user="ann"), 5)])
    assert not e.can_replace(EngineEvents([(ev.RolloutPaused(1, user="ann"), 6)]))  # every event merged, in order
