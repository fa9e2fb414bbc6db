"""The record in the app: `t` opens the deploy's timeline (the fleet as it was at the cursor, the gated series on
the same axis), `H` the history list, and a replay plays a finished deploy to its end. Pilot against the real
server and the simulated fleet; waits poll what is shown (never a fixed sleep)."""

from __future__ import annotations

import re

import pytest

from controlroom.app.app import build_app
from controlroom.app.palette import commands as palette_commands
from controlroom.app.timeline import EntryScreen, HistoryScreen, TimelineScreen
from controlroom.config import config
from controlroom.core import events as ev
from tests.app.test_app_actions import SIZE, deploy_to_gate, make_app, start, until  # noqa: F401
from tests.e2e.test_gate_kill_switch import to_the_failed_gate
from widgets.dialogs import GateHaltDialog
from widgets.host_grid import HostGrid
from widgets.sparkline import figure


def shown(screen: TimelineScreen) -> bool:
    """The screen draws the moment at its cursor now (its 15 Hz repaint caught up with the keys)."""
    return screen.record is not None and screen.shown == screen.cursor


def text_of(screen: TimelineScreen, selector: str) -> str:
    return str(screen.query_one(selector).render())


def grid_states(screen: TimelineScreen) -> dict[str, str]:
    """Each host's state as the timeline's grid draws it (its board), with the row the grid renders for it."""
    grid = screen.query_one(HostGrid)
    assert grid.board is screen.board
    return {h: grid.board.hosts[h].state for h in grid.board.order}


def at_cursor(screen: TimelineScreen):
    return screen.record.tl.events[screen.cursor]


@pytest.mark.slow
async def test_t_at_a_failed_gate_moves_back_to_it_and_shows_the_fleet_and_the_value_as_they_were(gated_fleet):
    app = make_app(gated_fleet)
    async with app.run_test(size=SIZE) as pilot:
        await to_the_failed_gate(pilot)
        await pilot.press("escape")  # later: the deploy waits at the failed gate
        await until(pilot, lambda: not isinstance(app.screen, GateHaltDialog), "the dialog to close")
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TimelineScreen) and shown(app.screen), "the timeline")
        screen: TimelineScreen = app.screen
        tl = screen.record.tl
        assert screen.cursor == len(tl) - 1 and screen.following, "it opens at the end, following the live deploy"
        assert "following the live deploy" in text_of(screen, "#tl-hint")

        await pilot.press("home")
        await until(pilot, lambda: shown(screen) and screen.cursor == 0, "the cursor at the first event")
        assert "following: off, end to follow" in text_of(screen, "#tl-hint")
        assert at_cursor(screen).type == "RolloutStarted" or at_cursor(screen).kind in ("log", "lock", "deploy")
        assert set(grid_states(screen).values()) <= {ev.PENDING}, "before anything ran every host is pending"
        # n from the start: the next failure or gate, until the failed gate's wait
        for _ in range(50):
            e = at_cursor(screen)
            if e.type == "GateWaiting" and e.values.get("kind") == ev.GATE_FAILED:
                break
            await pilot.press("n")
            await until(pilot, lambda: shown(screen), "the cursor's moment drawn")
        e = at_cursor(screen)
        assert e.type == "GateWaiting" and e.failure
        states = grid_states(screen)
        assert [states[h] for h in ("web001", "web002")] == [ev.DONE, ev.DONE], "the canary done"
        assert {states[h] for h in states if h not in ("web001", "web002")} == {ev.PENDING}, "the rest pending"
        gates = text_of(screen, "#tl-gates")
        value = re.search(r"errors_5xx < 5\{r2307\} = ([\d.]+) failed", gates)
        verdict = next(v for v in map(tuple, e.values["verdicts"]) if v[2] == "r2307")
        assert value and float(value.group(1)) >= 5, gates  # the value then: it failed the gate
        assert value.group(1) == figure(verdict[3]), (gates, verdict)  # the one the gate's verdict had
        assert "new_search on" in text_of(screen, "#tl-flags")
        held = text_of(screen, "#tl-held")
        assert f"lock: {app.user}: deploy #{tl.number}" in held, held  # the deploy held the fleet then
        assert "waiting: " in held, held
        assert "stage 1" in text_of(screen, "#tl-entries") and "▶" in text_of(screen, "#tl-entries")
        axis = text_of(screen, "#tl-axis")
        assert "errors_5xx < 5{r2307}" in axis and "▲" in axis, axis
        bars = text_of(screen, "#tl-bars")
        assert "2/2" in bars and "0/1" in bars, bars

        # left goes one event back, and what is shown follows the cursor (never the text of before)
        before = screen.cursor
        await pilot.press("left")
        await until(pilot, lambda: shown(screen) and screen.cursor == before - 1, "one event back")
        assert f"event {before}/{len(screen.record.tl)}" in text_of(screen, "#tl-header")

        # enter on the gate's entry: its values
        await pilot.press("right")
        await until(pilot, lambda: shown(screen) and screen.cursor == before, "back on the gate")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, EntryScreen), "the entry's detail")
        body = app.screen.body
        assert re.search(r"errors_5xx < 5\{r2307\} = [\d.]+ failed", body), body
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, "the detail to close")
        await pilot.press("end")
        await until(pilot, lambda: shown(screen) and screen.following, "following again")
        assert "following the live deploy" in text_of(screen, "#tl-hint")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, TimelineScreen), "the timeline to close")


@pytest.mark.slow
async def test_t_follows_a_live_deploy_H_lists_it_enter_opens_its_timeline_and_replay_plays_it_to_the_end(
        make_fleet):
    fleet = make_fleet(4)
    app = make_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        titles = [c.title for c in palette_commands(app)]
        assert "Timeline (t)" in titles and "History (H)" in titles, titles
        await deploy_to_gate(pilot)
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TimelineScreen) and shown(app.screen), "the timeline")
        live: TimelineScreen = app.screen
        assert live.following and "following the live deploy" in text_of(live, "#tl-hint")
        assert grid_states(live)["web003"] == ev.PENDING
        await pilot.press("g")  # the deploy goes on: the timeline follows its end as the server records it
        await until(pilot, lambda: shown(live) and live.record.tl.events[-1].type == "RolloutFinished"
                    and live.cursor == len(live.record.tl) - 1 and "the deploy ended" in text_of(live, "#tl-hint"),
                    "the timeline to follow the deploy to its end")
        assert set(grid_states(live).values()) == {ev.DONE}
        # enter on a host's entry: its output as the server keeps it (the deploy it holds is this one)
        last_host = max(i for i, e in enumerate(live.record.tl.events) if e.kind == "host")
        host = live.record.tl.events[last_host].values["host"]
        for _ in range(live.cursor - last_host):
            await pilot.press("left")
        await until(pilot, lambda: shown(live) and live.cursor == last_host, "the cursor on the last host entry")
        assert not live.following
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, EntryScreen) and "output" in app.screen.body,
                    "the host entry's output")
        assert f"{host}'s latest output as the server keeps it" in app.screen.body, app.screen.body
        assert "$ " in app.screen.body, app.screen.body
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is live, "the entry to close")
        await until(pilot, lambda: app.status == ev.R_DONE and not app.busy, "the deploy to finish")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, TimelineScreen), "the timeline to close")
        await pilot.press("H")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.loaded, "the history")
        items = app.screen.items
        assert items[0]["kind"] == "deploy" and items[0]["id"] == 1 and "DEPLOY OK" in items[0]["result"]
        await pilot.press("enter")  # the first item: the deploy
        await until(pilot, lambda: isinstance(app.screen, TimelineScreen) and shown(app.screen), "its timeline")
        assert app.screen.record.tl.number == 1
        assert "the deploy ended" in text_of(app.screen, "#tl-hint")

    replay = build_app(config.load(fleet.config_path), replay=(1, 10.0))
    async with replay.run_test(size=(80, 24)) as pilot:  # the smallest terminal: every part still on screen
        await until(pilot, lambda: isinstance(replay.screen, TimelineScreen) and replay.screen.ended
                    and shown(replay.screen), "the replay to end", timeout=60)
        screen = replay.screen
        await pilot.pause()
        assert "replay ended" in text_of(screen, "#tl-hint")
        regions = {w: screen.query_one(w).region for w in ("#tl-grid", "#tl-axis", "#tl-entries", "#tl-hint")}
        assert all(r.height > 0 and r.bottom <= 23 for r in regions.values()), regions  # above the footer
        assert regions["#tl-grid"].height >= 3, regions  # the fleet keeps room beside the axis and the entries
        assert set(grid_states(screen).values()) == {ev.DONE}, "the final grid"
        assert not replay.room.may_act, "a replay is read-only"
        # and says why as it is: no --read-only was typed
        assert replay.room.read_only_why == "read-only: a replay (controlroom replay)", replay.room.read_only_why
        await pilot.press("home")
        await until(pilot, lambda: shown(screen) and screen.cursor == 0 and not screen.ended, "back at the start")
        assert "replay paused" in text_of(screen, "#tl-hint") or "replay playing" in text_of(screen, "#tl-hint")


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_a_notification_over_the_timeline_covers_neither_the_fleet_nor_the_flags_and_gates_at_the_cursor(
        make_fleet, size):
    from tests.conftest import run_cli

    fleet = make_fleet(4)
    done = run_cli("deploy", "--yes", "--config", str(fleet.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    replay = build_app(config.load(fleet.config_path), replay=(1, 10.0))
    async with replay.run_test(size=size, notifications=True) as pilot:
        await until(pilot, lambda: isinstance(replay.screen, TimelineScreen) and shown(replay.screen), "the replay")
        screen = replay.screen
        replay.clear_notifications()
        replay.notify("Gate holds: GATE canary: errors_5xx{r2307} = 4.58 (max 5): PASSED · g starts stage 1")
        await until(pilot, lambda: screen.query("Toast") and all(t.region.height for t in screen.query("Toast")),
                    "the toast on screen")
        at_cursor = ("#tl-header", "#tl-grid", "#tl-bars", "#tl-flags", "#tl-held", "#tl-gates", "#tl-axis",
                     "#tl-hint")
        regions = {sel: screen.query_one(sel).region for sel in at_cursor}
        for toast in screen.query("Toast"):
            covered = [sel for sel, r in regions.items() if toast.region.overlaps(r)]
            assert not covered, f"a toast {toast.region} covers {covered}"


async def test_at_80x24_the_flags_the_lock_and_the_gates_at_the_cursor_all_fit_in_their_pane(make_fleet):
    from tests.conftest import run_cli

    fleet = make_fleet(4)
    done = run_cli("deploy", "--yes", "--config", str(fleet.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    replay = build_app(config.load(fleet.config_path), replay=(1, 10.0))
    async with replay.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(replay.screen, TimelineScreen) and replay.screen.ended
                    and shown(replay.screen), "the replay to end", timeout=60)
        screen = replay.screen
        await pilot.pause()
        right = screen.query_one("#tl-right")
        gates, flags = text_of(screen, "#tl-gates"), text_of(screen, "#tl-flags")
        assert gates and "lock: " in text_of(screen, "#tl-held") and len(screen.at.flags) >= 3, (gates, flags)
        parts = [screen.query_one(sel) for sel in ("#tl-flags", "#tl-held", "#tl-gates")]

        def fit() -> bool:  # polled: the layout follows the last repaint's content a refresh later
            return all(w.region.height and w.region.bottom <= right.content_region.bottom for w in parts)

        await until(pilot, fit, "the flags, the lock and the gates inside their pane (none cut off below it)")
        # one flag a line: "name value", each whole in the pane's 25 columns
        assert all(f"{name} {value}" in flags.splitlines() for name, value in screen.at.flags.items()), flags


def deployed_replay(make_fleet, hosts: int):
    """A fleet of ``hosts`` deployed once (`controlroom deploy --yes`), and the app that replays that deploy."""
    from tests.conftest import run_cli

    fleet = make_fleet(hosts)
    done = run_cli("deploy", "--yes", "--config", str(fleet.config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    return lambda: build_app(config.load(fleet.config_path), replay=(1, 10.0))


async def replay_ended(pilot) -> TimelineScreen:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, TimelineScreen) and app.screen.ended and shown(app.screen),
                "the replay to end", timeout=60)
    await pilot.pause()
    return app.screen


async def test_at_80x24_up_down_and_the_page_keys_bring_every_host_of_the_timeline_into_view_and_say_so(
        make_fleet):
    """At 80x24 the fleet's pane holds five of the grid's rows: the last phase's hosts are below them. up/down
    scroll the grid a row, pageup/pagedown a page (the moment at the cursor stays), and the pane's lower border says
    which rows are in view and the keys; at 160x48 every row fits and the border says nothing."""
    replay = deployed_replay(make_fleet, 10)
    app = replay()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await replay_ended(pilot)
        grid, pane = screen.query_one(HostGrid), screen.query_one("#tl-left")
        every = list(grid.board.order)
        rows, room = grid.virtual_size.height, grid.scrollable_content_region.height
        assert room < rows, (room, rows)  # the premise: the grid's rows do not all fit at 80x24
        assert every[-1] not in grid.visible_hosts, grid.visible_hosts
        assert pane.border_subtitle == f"rows 1-{room} of {rows}: ↑↓ PgUp/PgDn scroll", pane.border_subtitle
        cursor, seen = screen.cursor, set(grid.visible_hosts)
        for _ in range(rows - room):
            await pilot.press("down")
            seen |= set(grid.visible_hosts)
        assert seen == set(every), f"never in view: {sorted(set(every) - seen)}"
        assert every[-1] in grid.visible_hosts
        assert pane.border_subtitle == f"rows {rows - room + 1}-{rows} of {rows}: ↑↓ PgUp/PgDn scroll"
        await pilot.press("down")  # at the last row: it stays
        assert every[-1] in grid.visible_hosts and grid.scroll_offset.y == rows - room
        await pilot.press("pageup")
        await pilot.press("pageup")
        assert grid.scroll_offset.y == 0 and every[0] in grid.visible_hosts
        assert pane.border_subtitle.startswith("rows 1-")
        await pilot.press("pagedown")
        assert grid.scroll_offset.y == min(room - 1, rows - room) > 0, grid.scroll_offset
        await pilot.press("up")
        assert grid.scroll_offset.y == min(room - 1, rows - room) - 1
        assert screen.cursor == cursor and screen.shown == cursor, "the keys moved the grid, not the time"

    app = replay()
    async with app.run_test(size=(160, 48)) as pilot:  # a larger terminal: as it was, every host in view
        screen = await replay_ended(pilot)
        grid, pane = screen.query_one(HostGrid), screen.query_one("#tl-left")
        assert set(grid.visible_hosts) == set(grid.board.order)
        assert grid.virtual_size.height <= grid.scrollable_content_region.height
        assert not pane.border_subtitle, pane.border_subtitle


def footer_row(screen) -> str:
    """The screen's bottom line as the terminal gets it (the compositor's last strip)."""
    return screen._compositor.render_strips()[-1].text


async def test_at_80x24_the_timelines_footer_shows_whole_keys_only_and_nothing_past_them(make_fleet):
    """Its keys do not fit in 80 columns: Textual's compact footer ran them on under the palette's key (docked
    right: "⏎ Open" of "⏎ Open entry") and through the palette key's right margin (the line ended "^p palettel",
    the l of "esc Close"). Every key the footer shows is whole on the line, and nothing is drawn past them."""
    from textual.widgets._footer import FooterKey

    replay = deployed_replay(make_fleet, 4)
    app = replay()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await replay_ended(pilot)
        footer = screen.query_one("Footer")
        row = footer_row(screen)
        assert len(row) == 80 and footer.region.y == 23, (row, footer.region)
        keys = sorted((k for k in footer.query(FooterKey) if k.region.width), key=lambda k: k.region.x)
        assert keys, row
        past = list(row)  # the cells no shown key covers (its border and padding count as the key's)
        for k in keys:
            r, c, text = k.region, k.content_region, k.render().plain
            assert 0 <= r.x and r.right <= 80, f"{k.key_display} {r} runs past the line"
            assert row[c.x:c.right] == text, f"{text!r} is not whole on the line: {row[c.x:c.right]!r} in {row!r}"
            past[r.x:r.right] = [" "] * r.width
        assert not "".join(past).strip(), f"something past the whole keys: {row!r}"
        descriptions = [k.description for k in keys]
        assert descriptions[:4] == ["End (follow)", "Next failure/gate", "Previous failure/gate", "Open entry"], row
