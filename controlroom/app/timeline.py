"""The timeline of a deploy and the history list, in the app: what the server's ``record`` and ``history`` reads
answer, checked as every outside answer is (its shape, its size), drawn on one time axis with a cursor.

``RecordReader`` asks the server for a deploy's record page by page (server/wire.py record_page) into an
engine.record.Timeline, and for what came after (a live deploy). ``TimelineScreen`` shows it: the host grid, the
phase bars, the flags and the gates' values as they were at the cursor (``Timeline.at(i).board()``), the series on
the same axis as the events, and the entries around the cursor. A key only moves the cursor (a number); the
screen's 15 Hz repaint draws the moment once, whatever the keys did in between, so holding a key down on 100,000
events costs one seek a frame, never a rescan. Where the host grid's rows do not all fit (80x24), up/down and the
page keys scroll it (time stays) and the fleet pane's lower border says which rows are in view. While the deploy is
live, the cursor follows its end until the reader moves it back. Replay (`controlroom replay`): the cursor plays
the record at N times its pace, read-only.
``HistoryScreen`` lists deploys, rollbacks, stages and flag changes; enter on a deploy opens its timeline.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from controlroom.app import recordview as draw
from controlroom.core import events as ev
from controlroom.core.errors import ControlroomError
from controlroom.core.text import clean
from controlroom.engine import record as rec
from controlroom.engine.board import Board
from controlroom.server import wire
from widgets.footer import WholeFooter
from widgets.host_grid import HostGrid
from widgets.rollout import phase_bars

Send = Callable[..., Awaitable[dict | None]]  # link.send: a reply, or None (the refusal was shown)
REPAINT_HZ = 15
FOLLOW_EVERY = 1.0  # seconds between asks for what a live deploy recorded since
NARROW = 120  # columns: below this the flags, the lock and the gates at the cursor are said compact
MAX_EVENTS = 1_000_000  # a record longer than this is not read further (said so)
MINUTE = 60.0
SPEEDS = (0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 1000)
ENTRY_ROWS = 9


class BadAnswer(ControlroomError):
    """The server's answer is not what a record or history answer is."""


# ------------------------------------------------------------------------------------------------ the answers
def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_page(reply: object) -> dict:
    """A ``record`` reply as wire.record_page makes it, its events' data (JSON text) decoded in place, or
    BadAnswer naming what is wrong."""
    if not isinstance(reply, dict):
        raise BadAnswer("the server's record answer is not an object")
    deploy, evs, last = reply.get("deploy"), reply.get("events"), reply.get("last")
    if not isinstance(deploy, dict) or not isinstance(deploy.get("id"), int):
        raise BadAnswer("the server's record answer names no deploy")
    if not isinstance(evs, list) or len(evs) > wire.RECORD_PAGE:
        raise BadAnswer("the server's record answer has no list of events, or more than a page")
    if not isinstance(last, int) or isinstance(last, bool):
        raise BadAnswer("the server's record answer says not where its next page starts")
    size = 0
    for e in evs:
        if not (isinstance(e, list) and len(e) == 4 and isinstance(e[0], int) and _number(e[1])
                and isinstance(e[2], str) and isinstance(e[3], str)):
            raise BadAnswer("an event of the server's record answer is not [id, time, type, data]")
        size += len(e[3])
    if size > 2 * wire.RECORD_BYTES:
        raise BadAnswer("the server's record answer is larger than a page")
    data = _decoded([e[3] for e in evs])
    for e, d in zip(evs, data, strict=True):
        e[3] = d
    flags = reply.get("flags")
    if flags is not None and not (isinstance(flags, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                                   for k, v in flags.items())):
        raise BadAnswer("the flags of the server's record answer are not names and values")
    return reply


def _decoded(texts: list[str]) -> list[dict]:
    """Each event's data (JSON text) as an object, the page's in one decode; BadAnswer when one is not."""
    try:
        data = json.loads("[" + ",".join(texts) + "]")  # one call for the page: the open's largest cost
    except ValueError:
        data = None
    if not isinstance(data, list) or len(data) != len(texts) or not all(isinstance(d, dict) for d in data):
        raise BadAnswer("the data of an event of the server's record answer is not a JSON object")
    return data


def check_history(reply: object) -> list[dict]:
    """A ``history`` reply's items, or BadAnswer."""
    items = reply.get("items") if isinstance(reply, dict) else None
    if not isinstance(items, list) or len(items) > wire.HISTORY_MAX:
        raise BadAnswer("the server's history answer has no list of items, or too many")
    out = []
    for i in items:
        if not (isinstance(i, dict) and isinstance(i.get("kind"), str) and isinstance(i.get("id"), int)
                and _number(i.get("at"))):
            raise BadAnswer("an item of the server's history answer is not kind, id, time")
        out.append(i)
    return out


class Record:
    """A deploy's record as the app has read it: the Timeline, the deploy's row, whether the server drives it,
    and the event id its next page starts after."""

    def __init__(self, page: dict) -> None:
        d = page["deploy"]
        self.deploy = {k: d.get(k) for k in ("id", "revision", "previous", "user", "status", "started_at",
                                             "finished_at")}
        self.tl = rec.Timeline(int(d["id"]), user=str(d.get("user") or ""), flags=page.get("flags") or {})
        self.live = bool(page.get("live"))
        self.last = 0
        self.more = False  # the server has more past ``last`` already
        self.truncated = False

    def take(self, page: dict) -> list[rec.Entry]:
        """Add a page's events (those past what we have: a page asked twice adds nothing)."""
        tl = self.tl
        rows = [(event_id, float(at), type_, data) for event_id, at, type_, data in page["events"]
                if event_id > tl.last_id]
        room = MAX_EVENTS - len(tl)
        if len(rows) > room:
            rows, self.truncated = rows[:max(room, 0)], True
        out = tl.add_rows(rows)  # one loop for the page: what add() does for each
        self.last = max(self.last, int(page["last"]))
        self.more = bool(page.get("more")) and bool(page["events"])
        self.live = bool(page.get("live"))
        if isinstance(page["deploy"].get("status"), str):
            self.deploy["status"] = page["deploy"]["status"]
        return out


class RecordReader:
    """Reads a deploy's record from the server, page by page; ``send`` is the link's."""

    def __init__(self, send: Send) -> None:
        self._send = send

    async def open(self, number: int | None) -> Record | None:
        """Deploy ``number``'s whole record as it stands (the latest deploy's for None); None when refused."""
        reply = await self._send("record", **({"deploy": number} if number is not None else {}))
        if reply is None:
            return None
        page = check_page(reply)
        r = Record(page)
        r.take(page)
        while r.more and not r.truncated:
            if await self.more(r) is None:
                break
        return r

    async def more(self, r: Record) -> list[rec.Entry] | None:
        """The events recorded after what ``r`` has (one page); None when refused."""
        reply = await self._send("record", deploy=r.tl.number, after=r.last)
        if reply is None:
            return None
        return r.take(check_page(reply))


# ------------------------------------------------------------------------------------------------ dialogs
class EntryScreen(ModalScreen[None]):
    """What one entry is: its values, a gate's verdicts, a flag's receipt, a host's output. escape closes."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("enter", "close", "Close", show=False)]
    DEFAULT_CSS = """
    EntryScreen { align: center middle; }
    EntryScreen > VerticalScroll { width: 90%; height: 80%; border: round $accent; padding: 0 1;
                                   background: $surface; }
    """

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_text = clean(title, 200)
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = self.title_text
            yield Static(Text(self.body), id="entry-body")

    def show(self, body: str) -> None:
        self.body = body
        if self.is_mounted:
            self.query_one("#entry-body", Static).update(Text(body))

    def action_close(self) -> None:
        self.dismiss(None)


# ------------------------------------------------------------------------------------------------ the timeline
class TimelineScreen(Screen):
    """One deploy's record on one time axis, with the fleet as it was at the cursor."""

    BINDINGS = [
        Binding("left", "step(-1)", "Back", show=False),
        Binding("right", "step(1)", "On", show=False),
        Binding("shift+left", "minute(-1)", "-1 min", show=False),
        Binding("shift+right", "minute(1)", "+1 min", show=False),
        Binding("home", "seek(0)", "Start", show=False),
        # the fleet's rows, when they do not all fit (80x24): the pane's lower border says so and how far down
        Binding("up", "fleet_rows(-1)", "Fleet up", show=False),
        Binding("down", "fleet_rows(1)", "Fleet down", show=False),
        Binding("pageup", "fleet_page(-1)", "Fleet page up", show=False),
        Binding("pagedown", "fleet_page(1)", "Fleet page down", show=False),
        Binding("end", "seek(-1)", "End (follow)"),
        Binding("n", "next", "Next failure/gate"),
        Binding("N", "previous", "Previous failure/gate"),
        Binding("enter", "open", "Open entry"),
        Binding("escape", "close", "Close"),
        # replay only (check_action offers them there)
        Binding("space", "play", "Pause/play"),
        Binding("plus", "speed(1)", "Faster"),
        Binding("minus", "speed(-1)", "Slower"),
        Binding("q", "quit_replay", "Quit"),
    ]
    REPLAY_ONLY = ("play", "speed", "quit_replay")
    DEFAULT_CSS = """
    TimelineScreen { layout: vertical; }
    TimelineScreen #tl-header { height: 1; }
    TimelineScreen #tl-main { height: 1fr; min-height: 8; }
    TimelineScreen #tl-left { width: 2fr; border: round $primary; }
    TimelineScreen #tl-right { width: 1fr; border: round $primary; }
    TimelineScreen #tl-grid { height: 1fr; }
    TimelineScreen #tl-bars { height: auto; }
    TimelineScreen #tl-held { margin: 1 0; }
    TimelineScreen.-narrow #tl-held { margin: 0; }
    TimelineScreen #tl-axis { height: auto; border: round $primary; text-wrap: nowrap; text-overflow: clip; }
    TimelineScreen #tl-entries { height: auto; border: round $primary; text-wrap: nowrap;
                                 text-overflow: ellipsis; }
    TimelineScreen #tl-header, TimelineScreen #tl-hint { text-wrap: nowrap; text-overflow: ellipsis; }
    TimelineScreen #tl-hint { height: 1; color: $warning; text-style: bold; }
    """

    def __init__(self, reader: RecordReader, number: int | None, *, output: Send | None = None,
                 current: Callable[[], int] = lambda: 0, speed: float | None = None,
                 quit: Callable[[], None] | None = None) -> None:
        """reader: the record's source; number: the deploy (None: the latest); output: asks the server for a host's
        output; current: the deploy the server holds now (its hosts' output is the one it keeps); speed: replay
        at this many times the record's pace (read-only, plays at once); quit: what closing a replay does."""
        super().__init__()
        self._reader = reader
        self._number = number
        self._output = output
        self._current = current
        self.replay = speed is not None
        self.speed = float(speed or 1)
        self._quit = quit
        self.record: Record | None = None
        self.axis = draw.Axis()
        self.cursor = -1
        self.following = True  # the cursor stays at the end as the record grows
        self.shown: int | None = None  # the entry the screen shows now (None: nothing drawn yet)
        self.at: rec.FleetAt | None = None
        self.board = Board()
        self.playing = self.replay
        self.ended = False
        self._play_clock = 0.0  # replay: seconds of the record played
        self._play_last = 0.0
        self._laid_out = False
        self._error = ""
        self._drawn: tuple | None = None  # what the last repaint drew from: the same again draws nothing

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.REPLAY_ONLY:
            return self.replay
        return True

    def compose(self) -> ComposeResult:
        yield Static(id="tl-header")
        with Horizontal(id="tl-main"):
            with Vertical(id="tl-left"):
                grid = HostGrid(self.board, id="tl-grid")
                grid.can_focus = False  # the arrows move through time here, not over the hosts
                yield grid
                yield Static(id="tl-bars")
            with Vertical(id="tl-right"):
                yield Static(id="tl-flags")
                yield Static(id="tl-held")
                yield Static(id="tl-gates")
        yield Static(id="tl-axis")
        yield Static(id="tl-entries")
        yield Static(id="tl-hint")
        yield WholeFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#tl-left").border_title = "Fleet at the cursor"
        self.query_one("#tl-right").border_title = "Flags, lock, gates at the cursor"
        self.query_one("#tl-axis").border_title = "One time axis: the gated series and the events"
        self.query_one("#tl-entries").border_title = "Entries (enter opens one)"
        self.query_one("#tl-hint", Static).update("reading the record from the server...")
        self.run_worker(self._load(), name="timeline", group="timeline", exclusive=True, exit_on_error=False)
        self.set_interval(1 / REPAINT_HZ, self.repaint, name="timeline-repaint")

    async def _load(self) -> None:
        try:
            r = await self._reader.open(self._number)
        except ControlroomError as e:
            self._error = str(e)
            self.query_one("#tl-hint", Static).update(clean(self._error))
            return
        if r is None:
            self._error = "the server did not give this deploy's record"
            self.query_one("#tl-hint", Static).update(self._error)
            return
        self.record = r
        self.axis.add(r.tl.events)
        self.cursor = 0 if self.replay else len(r.tl) - 1
        self._play_last = time.monotonic()
        self.set_interval(FOLLOW_EVERY, self._follow, name="timeline-follow")
        self.repaint()

    async def _follow(self) -> None:
        r = self.record
        if r is None or self.replay or not self._still_live():
            return
        try:
            while True:
                new = await self._reader.more(r)
                if not new:
                    break
                self.axis.add(new)
                if self.following:
                    self.cursor = len(r.tl) - 1
                if len(new) < wire.RECORD_PAGE // 2:
                    break
        except ControlroomError as e:
            self._error = str(e)

    def _still_live(self) -> bool:
        r = self.record
        if r is None:
            return False
        if r.live:
            return True
        end = r.tl.at(len(r.tl) - 1).status if len(r.tl) else None
        return end not in ("done", "failed", "aborted", "rolled_back")

    # ------------------------------------------------------------------------------------------- keys
    def _move(self, i: int, *, follow: bool = False) -> None:
        r = self.record
        if r is None or not len(r.tl):
            return
        n = len(r.tl)
        self.cursor = max(0, min(n - 1, i))
        # end follows again; any other move stops following, unless it stayed at the end
        self.following = follow or (self.following and self.cursor == n - 1 and not self.replay)
        if self.replay:
            self._play_clock = r.tl.events[self.cursor].at - (r.tl.began or 0.0)
            self.ended = False

    def action_step(self, step: int) -> None:
        self._move(self.cursor + step)

    def action_minute(self, step: int) -> None:
        r = self.record
        if r is None or not len(r.tl):
            return
        t = r.tl.events[max(self.cursor, 0)].at + step * MINUTE
        i = r.tl.index_at(t)
        if step < 0:
            self._move(max(i, 0))
        else:
            self._move(i if i > self.cursor else self.cursor + 1)

    def action_seek(self, where: int) -> None:
        r = self.record
        if r is None:
            return
        if where < 0:
            self._move(len(r.tl) - 1, follow=True)
            if self.replay:
                self.playing, self.ended = False, True
        else:
            self._move(0)

    def action_fleet_rows(self, step: int) -> None:
        """up/down: the fleet's grid a row up or down (time stays where it is)."""
        grid = self.query_one(HostGrid)
        grid.scroll_to(y=grid.scroll_offset.y + step, animate=False, immediate=True)
        self._say_fleet_rows()

    def action_fleet_page(self, step: int) -> None:
        """pageup/pagedown: the fleet's grid a page up or down (the last row of a page is the next one's first)."""
        grid = self.query_one(HostGrid)
        page = max(grid.scrollable_content_region.height - 1, 1)
        grid.scroll_to(y=grid.scroll_offset.y + step * page, animate=False, immediate=True)
        self._say_fleet_rows()

    def _say_fleet_rows(self) -> None:
        """The fleet pane's lower border: which of the grid's rows are in view and the keys that scroll it, when
        they do not all fit; nothing when they do."""
        grid = self.query_one(HostGrid)
        rows, room = grid.virtual_size.height, grid.scrollable_content_region.height
        if room <= 0 or rows <= room:
            said = ""
        else:
            top = min(max(int(grid.scroll_offset.y), 0), rows - room)
            said = f"rows {top + 1}-{top + room} of {rows}: ↑↓ PgUp/PgDn scroll"
        pane = self.query_one("#tl-left")
        if pane.border_subtitle != said:
            pane.border_subtitle = said

    def action_next(self) -> None:
        self._jump(1)

    def action_previous(self) -> None:
        self._jump(-1)

    def _jump(self, direction: int) -> None:
        r = self.record
        if r is None:
            return
        tl, i = r.tl, self.cursor
        if direction > 0:
            found = [x for x in (tl.next_failure(i), tl.next_gate(i)) if x is not None]
            target = min(found) if found else None
        else:
            found = [x for x in (tl.previous_failure(i), tl.previous_gate(i)) if x is not None]
            target = max(found) if found else None
        if target is None:
            self.notify("no " + ("later" if direction > 0 else "earlier") + " failure or gate", timeout=3)
            return
        self._move(target)

    def action_play(self) -> None:
        if not self.replay:
            return
        if self.ended:
            self._move(0)
        self.playing = not self.playing
        self._play_last = time.monotonic()

    def action_speed(self, step: int) -> None:
        if not self.replay:
            return
        faster = [s for s in SPEEDS if s > self.speed]
        slower = [s for s in SPEEDS if s < self.speed]
        self.speed = float((faster[0] if faster else SPEEDS[-1]) if step > 0 else (slower[-1] if slower
                                                                                   else SPEEDS[0]))

    def action_close(self) -> None:
        if self.replay and self._quit is not None:
            self._quit()
        else:
            self.dismiss()

    def action_quit_replay(self) -> None:
        self.action_close()

    def action_open(self) -> None:
        r = self.record
        if r is None or not 0 <= self.cursor < len(r.tl):
            return
        e = r.tl.events[self.cursor]
        title = f"deploy #{r.tl.number}, event {self.cursor + 1}: {e.type}"
        screen = EntryScreen(title, draw.detail(e))
        self.app.push_screen(screen)
        if e.kind == rec.K_HOST and e.values.get("host"):
            self.run_worker(self._host_output(screen, e), name="entry-output", group="entry-output",
                            exclusive=True, exit_on_error=False)

    async def _host_output(self, screen: EntryScreen, e: rec.Entry) -> None:
        r = self.record
        host = str(e.values.get("host"))
        body = draw.detail(e)
        if self._output is None or r is None or self._current() != r.tl.number:
            screen.show(body + f"\n\nthe server keeps no output of deploy #{r.tl.number if r else '?'}'s hosts:"
                               " it keeps the latest lines of each host of the deploy it holds now only")
            return
        reply = await self._output("output", host=host)
        lines = reply.get("lines") if isinstance(reply, dict) else None
        if not isinstance(lines, list) or not lines:
            screen.show(body + f"\n\nthe server has no output of {clean(host, 80)} for this deploy")
            return
        text = "\n".join(clean(str(x), 500) for x in lines[-200:] if isinstance(x, str))
        screen.show(body + f"\n\n{clean(host, 80)}'s latest output as the server keeps it (its last lines in"
                           f" this deploy, not only this step's):\n{text}")

    # ------------------------------------------------------------------------------------------- painting
    def _tick_replay(self) -> None:
        r = self.record
        now = time.monotonic()
        dt, self._play_last = now - self._play_last, now
        if r is None or not self.playing or not len(r.tl):
            return
        self._play_clock += dt * self.speed
        began = r.tl.began or 0.0
        i = r.tl.index_at(began + self._play_clock)
        self.cursor = max(0, i)
        if self.cursor >= len(r.tl) - 1:
            self.cursor = len(r.tl) - 1
            self.playing, self.ended = False, True

    def repaint(self) -> None:
        """Draw the moment at the cursor when it moved (or the record grew)."""
        if not self.is_mounted:
            return
        self._say_fleet_rows()  # the grid's rows follow its size and the plan, which a resize or a page changes
        if self.replay:
            self._tick_replay()
        r = self.record
        if r is None:
            return
        # everything the drawing depends on: a change of any of them (the server no longer drives the deploy, an
        # error) redraws, so nothing shown is left from before
        key = (self.cursor, len(r.tl), self.following, self.playing, self.ended, self.speed, r.live, r.truncated,
               self._error)
        if key == self._drawn:
            return
        self._drawn = key
        tl = r.tl
        at = tl.at(self.cursor)
        prev, self.at = self.at, at
        grid = self.query_one(HostGrid)
        if prev is None or list(prev.hosts) != list(at.hosts) or not self._laid_out:
            self._whole(at, tl.number)  # the plan itself changed (or the first look): laid out again
            self.board.replanned = True
            grid.relayout()
            self._laid_out = True
        else:
            changed = bring(self.board, prev, at, tl.number)  # a step costs what it changed
            if changed:
                grid.hosts_changed(changed)
        grid.refresh()
        self.query_one("#tl-header", Static).update(draw.header(tl, r.deploy, at, self.cursor))
        self.query_one("#tl-bars", Static).update(phase_bars(self.board))
        # a narrow terminal (80x24: the pane is 25 columns by 7 lines): every fact at the cursor in a line of its own
        narrow = self.size.width < NARROW
        self.set_class(narrow, "-narrow")
        self.query_one("#tl-gates", Static).update(draw.gates_lines(at, compact=narrow))
        self.query_one("#tl-flags", Static).update(draw.flags_line(at, compact=narrow))
        self.query_one("#tl-held", Static).update(draw.held_lines(at, compact=narrow))
        width = self.size.width - 2  # inside the axis pane's border
        self.query_one("#tl-axis", Static).update(
            Text("\n").join(draw.axis_rows(self.axis, tl, width, at.at)))
        rows = max(3, min(ENTRY_ROWS, self.size.height - 20 - len(self.axis.series)))  # 80x24: the grid stays
        self.query_one("#tl-entries", Static).update(draw.entries_lines(tl, self.cursor, rows))
        self.query_one("#tl-hint", Static).update(self.hint())
        self.shown = self.cursor

    def _whole(self, at: rec.FleetAt, number: int) -> None:
        fresh = at.board()
        fresh.rollout_id = number
        vars(self.board).update(vars(fresh))

    def hint(self) -> str:
        r = self.record
        if self._error:
            return clean(self._error)
        extra = " (the record is longer than the app reads: the rest is not shown)" if r and r.truncated else ""
        if self.replay:
            speed = f"{self.speed:g}x"
            if self.ended:
                return "replay ended: home and space play it again, q quits" + extra
            return (f"replay {'playing' if self.playing else 'paused'} at {speed}: space pause/play, left/right"
                    " step, home/end seek, +/- speed, q quits (read-only)" + extra)
        if not self._still_live():
            return "the deploy ended: left/right move, n/N next/previous failure or gate, enter opens" + extra
        if self.following:
            return "following the live deploy (left moves back)" + extra
        return "following: off, end to follow" + extra

    def on_resize(self, event: events.Resize) -> None:
        self._drawn = None


def bring(board: Board, prev: rec.FleetAt, at: rec.FleetAt, number: int) -> set[str]:
    """Bring ``board`` from the moment ``prev`` to ``at`` (the same plan): by the hosts that changed, or, when
    nearly all did (a far jump), as the board of the moment; the hosts whose cell changed."""
    changed = {n for n, h in at.hosts.items() if prev.hosts.get(n) != h}
    if len(changed) > len(at.hosts) * 3 // 4:  # ~4 us a host moved, ~3 us a host in a new board: about even
        fresh = at.board()
        fresh.rollout_id, fresh.replanned = number, False
        vars(board).update(vars(fresh))
    else:
        moved(board, prev, at, changed)
    return changed


def moved(board: Board, prev: rec.FleetAt, at: rec.FleetAt, changed: set[str] | None = None) -> set[str]:
    """Bring ``board`` (what prev.board() made, then moved) to the moment ``at`` of the same plan, as
    FleetAt.board() would draw it, applying only the hosts whose state differs (``changed``, when the caller
    knows them); those hosts. A 5,000-host board rebuilt at every step costs ~30 ms; this costs what moved."""
    if changed is None:
        changed = {n for n, h in at.hosts.items() if prev.hosts.get(n) != h}
    stamp = at.at or 0.0
    for n in changed:
        h = at.hosts[n]
        board.apply(ev.HostStateChanged(0, host=n, phase=h.phase, state=h.state, reason=h.reason,
                                        revision=h.revision, at=stamp))
        if h.revision is None:
            board.hosts[n].revision = None
    for p, view in zip(at.phases, board.phases, strict=False):
        view.started = p.started
        view.seconds = (p.ended - p.started) if p.ended is not None and p.started is not None else None
    board.revision, board.previous, board.status, board.phase_index = at.revision, at.previous, at.status, at.phase
    board.dirty = True
    return changed


# ------------------------------------------------------------------------------------------------ history
class HistoryScreen(Screen):
    """Deploys, rollbacks, stages and flag changes, newest first: who, when, what, result, how long."""

    BINDINGS = [Binding("escape", "close", "Close")]
    DEFAULT_CSS = """
    HistoryScreen #history-list { height: 1fr; }
    HistoryScreen #history-title { height: 1; text-style: bold; }
    """

    def __init__(self, send: Send, open_deploy: Callable[[int], None]) -> None:
        super().__init__()
        self._send = send
        self._open_deploy = open_deploy
        self.items: list[dict] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("History: reading it from the server...", id="history-title")
        yield OptionList(id="history-list")
        yield WholeFooter(compact=True)

    def on_mount(self) -> None:
        self.run_worker(self._load(), name="history", group="history", exclusive=True, exit_on_error=False)

    async def _load(self) -> None:
        title = self.query_one("#history-title", Static)
        try:
            reply = await self._send("history")
            items = check_history(reply) if reply is not None else None
        except ControlroomError as e:
            title.update(clean(str(e)))
            return
        if items is None:
            title.update("History: the server did not give it")
            return
        self.items = items
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(history_line(i), id=f"h{k}") for k, i in enumerate(items)])
        title.update(f"History: {len(items)} items, newest first (enter on a deploy opens its timeline,"
                     " escape closes)" if items else "History: nothing in the record yet")
        if items:
            options.highlighted = 0
        self.loaded = True
        options.focus()

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        k = int(str(message.option.id)[1:])
        item = self.items[k]
        if item.get("kind") in ("deploy", "rollback"):
            self._open_deploy(int(item["id"]))
        else:
            self.notify("only a deploy (or its rollback) has a timeline", timeout=3)

    def action_close(self) -> None:
        self.dismiss()


def history_line(i: dict) -> str:
    """One item: when, who, what, result, how long (every part cleaned)."""
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(i["at"])))
    took = i.get("seconds")
    took_s = f"  ({took:.1f} s)" if _number(took) else ""
    mark = {True: "✓", False: "✗"}.get(i.get("ok"), "·")
    return clean(f"{mark} {at}  {str(i.get('user') or '')[:24]:<12}  {i.get('kind')!s:<8} {i.get('what') or ''}"
                 f"  {i.get('result') or ''}{took_s}", 400)
