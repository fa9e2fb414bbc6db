"""The control-room server: a deploy that outlives its client, several watchers, who did it from the socket's peer
credentials, and the faults (kill -9, stale socket, two starters, version mismatch, read-only)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from controlroom.config import config
from controlroom.core.identity import Actor
from controlroom.server import protocol as pr
from controlroom.server.client import connect
from tests.conftest import REPO, run_cli
from tests.waiting import until, wait_for


def cr(fleet, *args: str, user: str = "alice", **kw) -> subprocess.CompletedProcess:
    return run_cli(*args, "--config", str(fleet.config_path), env={"SUDO_USER": user}, **kw)


def server_pid(fleet) -> int | None:
    try:
        return int((Path(fleet.dir) / "state" / "server.lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture
def served(make_fleet):
    """A 10-host fleet; whatever server its tests start is stopped afterwards (servers_stopped)."""
    return make_fleet(10)


def revisions(fleet) -> set[str]:
    return {(Path(h.root) / "REVISION").read_text().strip() for h in fleet.hosts}


def test_a_detached_deploy_finishes_in_the_server_and_follow_shows_it_done(served):
    res = cr(served, "deploy", "--detach", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "deploy #1 runs in the server" in res.stdout
    follow = cr(served, "deploy", "--follow", timeout=120)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert "DEPLOY OK r2307" in follow.stdout or "done (10 done)" in follow.stdout, follow.stdout
    assert revisions(served) == {"r2307"}
    log = cr(served, "log").stdout
    assert "[alice] DEPLOY START" in log and "[alice] DEPLOY OK r2307 on 10 of 10 hosts" in log, log
    status = cr(served, "server", "status")
    assert status.returncode == 0 and f"server pid {server_pid(served)}" in status.stdout


def test_a_deploy_goes_on_when_its_follower_is_killed(served):
    text = served.config_path.read_text().replace('steps = [\n', 'steps = [\n    "sleep 0.3",\n', 1)
    served.config_path.write_text(text)
    assert cr(served, "deploy", "--detach", "--yes").returncode == 0
    env = dict(os.environ, SUDO_USER="alice")
    follower = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "deploy", "--follow", "--config",
                                 str(served.config_path)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    wait_for(lambda: any((Path(h.root) / "REVISION").read_text().strip() == "r2307" for h in served.hosts), 60,
             "a first host on the new revision")
    follower.send_signal(signal.SIGKILL)
    follower.wait(10)
    again = cr(served, "deploy", "--follow", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert revisions(served) == {"r2307"}
    assert "LOCK TAKEN OVER" not in cr(served, "log").stdout


async def test_two_watchers_see_the_same_numbered_events_and_an_intent_from_one_shows_in_both(served):
    cfg = config.load(served.config_path)
    a = await connect(cfg)
    b = await connect(cfg)
    try:
        await a.request("attach")
        await b.request("attach")
        snaps = [await a.messages.get(), await b.messages.get()]
        assert [s["op"] for s in snaps] == ["snapshot", "snapshot"] and snaps[0]["seq"] == snaps[1]["seq"]
        await a.request("lock", message="migration [bold]running[/]")

        async def lock_events(c):
            seen = []
            while not any(m["event"]["type"] == "LockChanged" for m in seen):
                m = await asyncio.wait_for(c.messages.get(), 10)
                if m["op"] == "event":  # the numbered events (presence messages come between them, unnumbered)
                    seen.append(m)
            return seen

        ea, eb = await lock_events(a), await lock_events(b)
        assert [m["seq"] for m in ea] == [m["seq"] for m in eb]
        assert [m["seq"] for m in ea] == list(range(snaps[0]["seq"] + 1, snaps[0]["seq"] + 1 + len(ea)))
        lock_entry = next(m["event"] for m in eb if m["event"]["type"] == "LogEntryAdded")
        assert lock_entry["kind"] == "LOCK" and lock_entry["text"] == "migration [bold]running[/]"
        assert lock_entry["user"] == (os.environ.get("SUDO_USER") or __import__("pwd").getpwuid(os.getuid())[0])
    finally:
        await a.close()
        await b.close()


async def test_a_watcher_of_another_bastions_server_on_a_shared_journal_sees_its_deploy_as_it_goes(served, pg_url):
    text = served.config_path.read_text()
    paths = {}
    for b in ("a", "b"):  # two bastions: two state directories, each its own server, one PostgreSQL journal
        paths[b] = Path(served.dir) / f"{b}.toml"
        paths[b].write_text(text.replace('dir = "state"', f'dir = "state-{b}"\njournal = "{pg_url}"'))
    watcher = await connect(config.load(paths["b"]))  # bastion b's server, where nothing runs
    try:
        await watcher.request("attach")
        snap = await watcher.messages.get()
        assert snap["op"] == "snapshot"
        deploy = asyncio.ensure_future(asyncio.to_thread(
            run_cli, "deploy", "--yes", "--config", str(paths["a"]), env={"SUDO_USER": "alice"}))
        seen: list[dict] = []
        while not any(m["event"]["type"] == "RolloutFinished" for m in seen):
            m = await asyncio.wait_for(watcher.messages.get(), 60)
            assert m["op"] != "closed", seen
            if m["op"] == "event":
                seen.append(m)
        res = await deploy
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        await watcher.close()
    events = [m["event"] for m in seen]
    assert [m["seq"] for m in seen] == list(range(snap["seq"] + 1, snap["seq"] + 1 + len(seen)))  # in order, none lost
    done = {e["host"] for e in events if e["type"] == "HostStateChanged" and e["state"] == "done"}
    assert done == {h.name for h in served.hosts}
    [started] = [e for e in events if e["type"] == "RolloutStarted"]
    assert (started["user"], started["revision"]) == ("alice", "r2307")
    assert any(e["type"] == "LogEntryAdded" and e["kind"] == "DEPLOY OK" for e in events)


async def test_watchers_of_either_bastions_server_see_one_deploy_with_the_same_event_numbers(served, pg_url):
    text = served.config_path.read_text()
    paths = {}
    for b in ("a", "b"):
        paths[b] = Path(served.dir) / f"{b}.toml"
        paths[b].write_text(text.replace('dir = "state"', f'dir = "state-{b}"\njournal = "{pg_url}"'))
    watchers = {b: await connect(config.load(paths[b])) for b in ("a", "b")}  # each bastion's server, started
    try:
        for w in watchers.values():
            await w.request("attach")
            assert (await w.messages.get())["op"] == "snapshot"
        deploy = await asyncio.to_thread(run_cli, "deploy", "--yes", "--config", str(paths["a"]),
                                         env={"SUDO_USER": "alice"})  # bastion a's server runs it
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        seen: dict[str, list[tuple[int, str]]] = {}
        for b, w in watchers.items():
            got: list[dict] = []
            while not any(m["event"]["type"] == "RolloutFinished" for m in got):
                m = await asyncio.wait_for(w.messages.get(), 60)
                assert m["op"] != "closed", got
                if m["op"] == "event":
                    got.append(m)
            # what the journal holds carries its number there (host output and lock notices are not journaled)
            seen[b] = [(m["event_id"], m["event"]["type"]) for m in got if "event_id" in m]
            assert seen[b][-1][1] == "RolloutFinished", seen[b]
    finally:
        for w in watchers.values():
            await w.close()
    # the journal's numbers, from the server that ran the deploy and from the one that read it from the journal
    assert seen["a"] == seen["b"], seen
    ids = [i for i, _ in seen["a"]]
    assert len(ids) > 10 and ids == sorted(set(ids)), ids
    assert sum(kind == "HostStateChanged" for _, kind in seen["a"]) >= 2 * len(served.hosts)


async def test_a_reconnecting_client_gets_only_the_events_after_its_number(served):
    cfg = config.load(served.config_path)
    a = await connect(cfg)
    await a.request("attach")
    snap = await a.messages.get()
    await a.close()
    b = await connect(cfg)
    try:
        await b.request("log_add", message="one")
        await b.request("log_add", message="two")
        c = await connect(cfg)
        await c.request("attach", since=snap["seq"])
        got = [await asyncio.wait_for(c.messages.get(), 10) for _ in range(2)]
        assert [m["op"] for m in got] == ["event", "event"]
        assert [m["seq"] for m in got] == [snap["seq"] + 1, snap["seq"] + 2]
        assert [m["event"]["text"] for m in got] == ["one", "two"]
        await c.close()
    finally:
        await b.close()


async def test_a_read_only_client_may_watch_but_not_act_and_is_told_why(served):
    cfg = config.load(served.config_path)
    c = await connect(cfg, read_only=True)
    try:
        assert not c.may_act
        with pytest.raises(Exception) as e:
            await c.request("lock", message="mine")
        assert "you may watch, not act" in str(e.value) and e.value.exit_code == 2
        await c.request("attach")
        assert (await c.messages.get())["op"] == "snapshot"
    finally:
        await c.close()
    assert "mine" not in cr(served, "log").stdout


def test_a_client_of_another_protocol_version_is_told_in_one_line(served):
    assert cr(served, "log", "add", "start the server").returncode == 0
    cfg = config.load(served.config_path)
    code = ("import sys; import controlroom.server.protocol as p; p.VERSION = 99; from controlroom.cli.main import main; "
            f"sys.exit(main(['deploy', '--follow', '--config', {str(served.config_path)!r}]))")
    # a server must be running for the mismatch to show: start one
    assert asyncio.run(_ping(cfg))
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and "version 1" in res.stderr and "client 99" in res.stderr, res.stderr


async def _ping(cfg) -> bool:
    c = await connect(cfg)
    await c.close()
    return True


def test_two_clients_starting_the_server_at_once_get_one_server(served):
    code = ("import asyncio, sys; from controlroom.config import config; from controlroom.server.client import connect\n"
            "async def go():\n"
            f"    c = await connect(config.load({str(served.config_path)!r}))\n"
            "    print(c.hello['pid']); await c.close()\n"
            "asyncio.run(go())\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    pids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(pids) == 1 and pids != {""}, pids
    assert str(server_pid(served)) in pids


def _argv(pid: int | None) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0") if pid else []


def test_a_server_started_for_anything_but_a_deploy_opens_no_connection_until_an_operation_asks(make_fleet):
    fleet = make_fleet(3)
    assert cr(fleet, "log", "add", "hello").returncode == 0  # starts the server: plain `serve`, no --warm
    status = cr(fleet, "server", "status")
    assert status.returncode == 0, status.stderr
    assert "serve" in _argv(server_pid(fleet)) and "--warm" not in _argv(server_pid(fleet))
    assert fleet.connections == 0
    assert "--warm" in run_cli("serve", "--help").stdout  # documented there, as internal


async def test_plain_serve_opens_no_connection_and_serve_warm_opens_the_fleets_at_once_running_nothing(make_fleet):
    from controlroom.server import server as server_mod

    for warm in (False, True):
        fleet = make_fleet(4, name=f"fleet-{warm}")
        cfg = config.load(fleet.config_path)
        srv = server_mod.Server(cfg, idle=3600, warm=warm)
        await srv.start()
        serving = asyncio.ensure_future(srv.serve())
        try:
            c = await connect(cfg, start=False)
            await c.request("attach")
            await c.request("status")
            pool = srv.live.pool
            if warm:  # nobody asked anything of the hosts: the server opened their connections by itself
                await until(lambda p=pool, f=fleet: p.warming == 0 and f.connections == 4, 30, "the warm connects")
                assert pool.handshakes == 4
            else:  # the connects would have begun before the first request was read
                assert (pool.handshakes, pool.warming, fleet.connections) == (0, 0, 0)
            assert [h.commands for h in fleet.hosts] == [0] * 4  # connections only: nothing ran on a host
            await c.close()
        finally:
            srv.stop()
            await serving


def test_a_stale_socket_file_is_replaced_and_a_server_killed_with_9_is_found_dead(served):
    state = Path(served.dir) / "state"
    state.mkdir(exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(state / "control.sock"))  # a socket file nobody listens on
    stale.close()
    assert cr(served, "deploy", "--detach", "--yes").returncode == 0
    pid = server_pid(served)
    cr(served, "deploy", "--follow", timeout=120)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
             .lower(), 10, "the server to die")
    status = cr(served, "server", "status")
    assert status.returncode == 1 and "no server runs" in status.stdout
    again = cr(served, "log", "add", "after")  # the journal is fine; the next server starts on the stale socket
    assert again.returncode == 0
    assert cr(served, "deploy", "--detach", "--yes", "--revision", "r2308").returncode == 0
    assert cr(served, "deploy", "--follow", timeout=120).returncode == 0
    assert revisions(served) == {"r2308"}


def test_kill_9_of_the_server_mid_deploy_then_resume_runs_no_step_twice(served):
    text = served.config_path.read_text()
    text = text.replace('steps = [\n', 'steps = [\n    "sleep 0.4 && echo s >> steps.log",\n', 1)
    text = text.replace('size = 2\nauto = false', 'size = 2')
    served.config_path.write_text(text)
    assert cr(served, "deploy", "--detach", "--yes").returncode == 0
    pid = server_pid(served)
    db = Path(served.dir) / "state" / "journal.db"

    def in_flight() -> bool:
        import sqlite3

        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return con.execute("SELECT count(*) FROM host_runs WHERE state = 'running'").fetchone()[0] > 0
        finally:
            con.close()

    wait_for(in_flight, 60, "hosts in flight")
    os.kill(pid, signal.SIGKILL)
    res = cr(served, "deploy", "--resume", "--yes", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert revisions(served) == {"r2307"}
    for h in served.hosts:
        assert (Path(h.root) / "steps.log").read_text().split() == ["s"], h.name


def test_a_server_that_cannot_start_says_why_in_one_line(make_fleet, tmp_path):
    fleet = make_fleet(2)
    long_dir = tmp_path / ("x" * 60) / ("y" * 60)
    text = fleet.config_path.read_text().replace('dir = "state"', f'dir = "{long_dir}"')
    fleet.config_path.write_text(text)
    res = run_cli("serve", "--config", str(fleet.config_path))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "longer than a Unix socket allows" in res.stderr


def test_an_idle_server_exits_by_itself(make_fleet):
    fleet = make_fleet(2)
    res = run_cli("serve", "--idle", "0.3", "--config", str(fleet.config_path), timeout=60)
    assert res.returncode == 0, res.stderr
    assert "listening on" in res.stdout and "stopped" in res.stdout
    assert not (Path(fleet.dir) / "state" / "control.sock").exists()


def test_the_wire_speaks_json_lines_with_a_version_handshake(served):
    assert cr(served, "log", "add", "hello").returncode == 0
    cfg = config.load(served.config_path)
    asyncio.run(_ping(cfg))
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(Path(served.dir) / "state" / "control.sock"))
    s.sendall(b'{"op":"hello","version":1}\n{"id":7,"op":"status"}\n')
    f = s.makefile("rb")
    hello, reply = json.loads(f.readline()), json.loads(f.readline())
    s.close()
    assert hello["ok"] and hello["version"] == pr.VERSION
    assert reply["id"] == 7 and reply["ok"] and reply["pid"] == server_pid(served)


async def test_a_watcher_that_falls_behind_gets_a_snapshot_and_the_engine_never_waits_for_it(make_fleet,
                                                                                          monkeypatch):
    from controlroom.server import server as server_mod

    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    monkeypatch.setattr(server_mod, "QUEUE", 4)
    srv = server_mod.Server(cfg, idle=3600)
    await srv.start()
    serving = asyncio.ensure_future(srv.serve())
    try:
        slow = socket.socket(socket.AF_UNIX)  # a watcher that reads nothing while the events pour out
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(str(srv.path))
        slow.sendall(pr.encode({"op": "hello", "version": pr.VERSION}) + pr.encode({"id": 1, "op": "attach"}))
        writer = await connect(cfg, start=False)
        big = "x" * 32000
        for i in range(200):  # ~6 MB of events: far more than the slow watcher's socket buffers hold
            await writer.request("log_add", message=f"{i} {big}")
        # the writer was never held up by the watcher that does not read: it got all its replies
        final = srv.seq
        assert final >= 200

        def read_all() -> list[dict]:
            f = slow.makefile("rb")
            out = []
            while True:
                msg = json.loads(f.readline())
                out.append(msg)
                if msg.get("seq") == final:
                    return out

        got = await asyncio.wait_for(asyncio.to_thread(read_all), 60)
        ops = [m.get("op") for m in got]
        assert ops.count("snapshot") >= 2, ops[:10]  # the first one, and the one it got instead of what it missed
        assert ops.count("event") < 200  # it was not sent what it had no room for
        seqs = [m["seq"] for m in got if m.get("op") in ("event", "snapshot")]
        assert seqs == sorted(seqs) and seqs[-1] == final  # in order, ending at the newest state
        slow.close()
        await writer.close()
    finally:
        srv.stop()
        await serving


async def test_a_disk_that_fills_as_the_deploy_starts_ends_the_deploy_with_its_number_not_its_start(make_fleet):
    # The deploy's reply writes nothing after the deploy took the fleet: a full disk then is the deploy's failure,
    # ended with its number (what the client's hint needs), never the reply's (a bare line, no way on).
    from controlroom.core import events as ev
    from controlroom.journal import record
    from controlroom.journal.journal import Journal, next_step
    from controlroom.server import server as server_mod
    from controlroom.sources import git as release
    from tests.disks import fill, small_tmpfs, unmount

    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    state = cfg.state.dir
    small_tmpfs(state)
    srv = server_mod.Server(cfg, idle=3600)
    serving = None
    try:
        await srv.start()
        srv.journal.subscribe(lambda e: type(e) is ev.RolloutStarted and fill(state))  # full as it is committed
        serving = asyncio.ensure_future(srv.serve())
        c = await connect(cfg, start=False)
        try:
            await c.request("attach")
            reply = await c.request("deploy", revision="r2307", policy="auto", confirm="all")
            assert reply["rollout_id"] == 1
            while (msg := await asyncio.wait_for(c.messages.get(), 30)).get("op") != "ended":
                pass
        finally:
            await c.close()
        await asyncio.wait_for(serving, 30)  # the server goes: nothing can be recorded any more
        assert msg["rollout_id"] == 1 and msg["exit"] == 1
        assert msg["error"].startswith(f"cannot write the journal {state / 'journal.db'}: the disk is full"), msg
        assert next_step(state, 1, or_log=False) == (
            "`controlroom deploy --resume` picks deploy #1 up, `controlroom rollback` undoes it")
        j = Journal.open(state, readonly=True)
        try:  # the commit it resolved to was recorded with the deploy, before the disk filled
            assert [d.commit_hash for d in record.deploys(j.db)] == [release.resolve(cfg.release.repo, "r2307")]
        finally:
            j.close()
    finally:
        srv.stop()
        if serving is not None:
            await asyncio.wait_for(serving, 30)
        unmount(state)


# ---------------------------------------------------------------------------------------- what the app asks for


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _stop(fleet) -> None:
    run_cli("server", "stop", "--force", "--config", str(fleet.config_path))
    pid = server_pid(fleet)
    wait_for(lambda: pid is None or _dead(pid), 60, "the server to stop")


async def test_a_server_started_after_a_deploy_shows_its_result_revisions_log_and_host_output(served):
    assert cr(served, "deploy", "--detach", "--yes").returncode == 0
    assert cr(served, "deploy", "--follow", timeout=120).returncode == 0
    cfg = config.load(served.config_path)
    c = await connect(cfg)
    try:  # the server that ran it: one host's commands as it ran them, and its last result
        out = await c.request("output", host="web001")
        assert any(line.startswith("$ ") and "r2307" in line for line in out["lines"]), out["lines"]
        assert out["result"]["label"] == "ok" and out["revision"] == "r2307" and isinstance(out["seq"], int)
        plan = await c.request("rollback_plan")
        assert (plan["rollout_id"], plan["hosts"], plan["others"], plan["previous"]) == (1, 10, 0, "r2306")
    finally:
        await c.close()
    _stop(served)
    c = await connect(cfg)  # a new server: it knows the deploy from the journal only
    try:
        await c.request("attach")
        snap = await asyncio.wait_for(c.messages.get(), 10)
        board = snap["board"]
        assert (board["status"], board["rollout_id"], board["finished"]["done"]) == ("done", 1, 10)
        assert {h["state"] for h in board["hosts"]} == {"done"} and snap["busy"] == ""
        revs = await c.request("revisions")
        assert (revs["staged"], revs["live"], revs["staged_error"], revs["live_error"]) == ("r2307", "r2307", None,
                                                                                            None)
        j = await c.request("journal", since=0)
        kinds = [e["kind"] for e in j["log"]]
        assert kinds[0] == "DEPLOY START" and kinds[-1] == "DEPLOY OK" and j["lock"] is None
        assert (await c.request("journal", since=j["log"][-1]["id"]))["log"] == []  # only what is new
    finally:
        await c.close()


async def test_a_deploy_whose_server_died_is_shown_halted_by_the_next_server(served):
    text = served.config_path.read_text().replace('steps = [\n', 'steps = [\n    "sleep 0.5",\n', 1)
    served.config_path.write_text(text)
    assert cr(served, "deploy", "--detach", "--yes").returncode == 0
    wait_for(lambda: any((Path(h.root) / "REVISION").read_text().strip() == "r2307" for h in served.hosts), 60,
             "a first host on the new revision")
    pid = server_pid(served)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _dead(pid), 30, "the killed server to be gone")
    c = await connect(config.load(served.config_path))
    try:
        await c.request("attach")
        snap = await asyncio.wait_for(c.messages.get(), 10)
        assert snap["board"]["status"] == "halted" and snap["busy"] == "" and snap["engine_status"] is None
        assert snap["board"]["rollout_id"] == 1
    finally:
        await c.close()


async def test_taking_over_a_teammates_lock_needs_takeover_and_goes_on_the_record(served):
    from controlroom.journal.journal import Journal

    cfg = config.load(served.config_path)
    j = Journal.open(cfg.state.dir)
    j.take_lock(Actor("mygrant"), "db migration")
    j.close()
    c = await connect(cfg)
    try:
        with pytest.raises(Exception, match="locked: NO DEPLOY PLEASE — mygrant"):
            await c.request("lock", message="mine now")
        reply = await c.request("lock", message="mine now", takeover=True)
        assert "mine now" in reply["describe"]
        log = (await c.request("journal", since=0))["log"]
        assert [e["kind"] for e in log][-2:] == ["LOCK TAKEN OVER", "LOCK"], log
    finally:
        await c.close()


def test_a_client_gone_in_the_middle_of_its_requests_leaves_nothing_half_done(served):
    assert cr(served, "log", "add", "the server runs").returncode == 0
    for op in ('{"id":1,"op":"lock","message":"half"}', '{"id":2,"op":"deploy","policy":"yes"}'):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(Path(served.dir) / "state" / "control.sock"))
        s.sendall(b'{"op":"hello","version":1}\n')
        s.makefile("rb").readline()  # the server has said hello: the request is in the middle of being done
        s.sendall(op.encode() + b"\n")
        s.close()  # gone before its answer
        wait_for(lambda: cr(served, "server", "status").returncode == 0, 30, "the server to answer")
    log = cr(served, "log").stdout
    lines = log.splitlines()
    locked = any(" LOCK half" in line for line in lines)
    # each request was done whole or not at all: a lock entry goes with the lock, a deploy that started ended
    assert locked == ("NO DEPLOY PLEASE" in lines[0] and "half" in lines[0]), log
    if any("DEPLOY START" in line for line in lines):
        follow = cr(served, "deploy", "--follow", timeout=120)
        assert follow.returncode == 0 and revisions(served) == {"r2307"}, follow.stdout + follow.stderr
    else:
        assert revisions(served) == {"r2306"}
    assert locked, log  # the lock request was read before the client went: it is done, and the deploy was refused


# ---------------------------------------------------------------------------------------- the table of requests


async def test_every_request_the_protocol_names_has_one_handler_and_an_unknown_one_is_refused_in_one_line(make_fleet):
    from controlroom.core.errors import ControlroomError
    from controlroom.server import server as server_mod
    from controlroom.server.ops import OPERATORS, WATCHERS
    from controlroom.server.wire import REQUESTS

    fleet = make_fleet(2)
    cfg = config.load(fleet.config_path)
    srv = server_mod.Server(cfg, idle=3600)
    await srv.start()
    serving = asyncio.ensure_future(srv.serve())
    try:
        # one table: every op a client may send has its handler there (hello is the door's, before any request)
        assert set(srv.handlers) == set(REQUESTS) - {"hello"}
        reads = {op for op, h in srv.handlers.items() if h.who == WATCHERS}
        assert reads == {"attach", "status", "output", "journal", "revisions", "rollback_plan", "metrics", "flags",
                         "flag_history", "flags_verify", "record", "history", "figures"}
        assert all(h.intent and h.who == OPERATORS for op, h in srv.handlers.items() if op not in reads)
        assert all(h.drives for h in srv.handlers.values() if h.decides)  # who decides on a deploy drives it
        c = await connect(cfg, start=False)
        with pytest.raises(ControlroomError) as e:
            await c.request("no_such_op")
        assert str(e.value) == "unknown request 'no_such_op'"
        assert e.value.exit_code == 2 and "\n" not in str(e.value)
        assert (await c.request("status"))["pid"] == os.getpid()  # the connection goes on
        # a read-only client may make what the table gives watchers, and none of what it gives operators
        watcher = await connect(cfg, start=False, read_only=True)
        assert (await watcher.request("journal"))["lock"] is None
        for op, h in srv.handlers.items():
            if h.intent:
                with pytest.raises(ControlroomError, match="you may watch, not act") as e:
                    await watcher.request(op, host="web001", message="x", flag="f", value="on")
                assert e.value.exit_code == 2
        await watcher.close()
        await c.close()
    finally:
        srv.stop()
        await serving


async def test_the_lock_has_one_shape_in_the_snapshot_and_the_journal_reply_and_says_what_unlocking_abandons(served):
    from controlroom.server.wire import Lock, abandons

    cfg = config.load(served.config_path)
    c = await connect(cfg)
    try:
        said = (await c.request("lock", message="NO DEPLOY PLEASE: migration"))["describe"]
        await c.request("attach")
        snap = await asyncio.wait_for(c.messages.get(), 10)
        assert snap["op"] == "snapshot"
        in_reply = (await c.request("journal", since=2**62))["lock"]
        assert snap["lock"] == in_reply  # the same fields, the same values, wherever the lock travels
        lock = Lock.from_wire(in_reply)
        assert lock.to_wire() == in_reply and lock.describe() == said and not lock.live and not lock.parked
        assert abandons(lock) == f"releases {lock.user}'s NO DEPLOY PLEASE (NO DEPLOY PLEASE: migration)"
    finally:
        await c.close()


async def test_the_gates_and_the_metrics_pane_read_the_one_metrics_source_the_server_keeps(gated_fleet, monkeypatch):
    from controlroom.core import events as ev
    from controlroom.engine import gates
    from controlroom.server import server as server_mod
    from controlroom.sources import metrics

    made, opened_per_round = [], []  # every source the server made, and any a gate keeper opened for itself
    real = metrics.make_source
    monkeypatch.setattr(metrics, "make_source", lambda s, **kw: made.append(s) or real(s, **kw))
    monkeypatch.setattr(gates, "make_source", lambda s, **kw: opened_per_round.append(s) or real(s, **kw))
    cfg = config.load(gated_fleet.config_path)
    srv = server_mod.Server(cfg, idle=3600)
    await srv.start()
    serving = asyncio.ensure_future(srv.serve())
    c = await connect(cfg, start=False)
    try:
        await c.request("metrics", points=10)  # the pane's poll: the server makes its source
        assert len(made) == 1
        await c.request("attach")
        await c.request("deploy")

        async def failed_gate() -> None:
            while True:
                msg = await c.messages.get()
                if msg.get("op") == "event" and msg["event"].get("type") == "GateWaiting" \
                        and ev.from_wire(msg["event"]).kind == ev.GATE_FAILED:
                    return

        await asyncio.wait_for(failed_gate(), 120)  # the canary's gate was checked, and failed, against it
        await c.request("metrics", points=10)
        assert len(made) == 1 and opened_per_round == []  # one source: the pane's polls and the gate's checks
        await c.request("abort")
    finally:
        await c.close()
        srv.stop()
        await serving
