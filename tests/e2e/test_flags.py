"""Feature flags and kill switches: a change pushed through the server to every host, a receipt from each, the
stragglers named and retried, never held up by the fleet lock or a running deploy; verify, compare-and-set,
history, and the reference reader an application uses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from controlroom.config import config
from controlroom.core.errors import ConfigError, ControlroomError
from controlroom.core.identity import Actor
from controlroom.fleet import flagfile as fl
from controlroom.server.client import connect
from tests import waiting
from tests.conftest import REPO, run_cli
from tests.disks import fill, small_tmpfs, unmount
from tests.servers import kill_server, stop_servers

OLD = b'version = 0\nchanged_by = "by hand"\n\n[flags.new_search]\nenabled = "on"\n'


def cr(fleet, *args: str, user: str = "alice", **kw) -> subprocess.CompletedProcess:
    return run_cli(*args, "--config", str(fleet.config_path), env={"SUDO_USER": user}, **kw)


def flags_file(host) -> dict:
    return tomllib.loads((Path(host.root) / "flags.toml").read_text())


def temp_files(fleet) -> list[str]:
    return [str(p) for h in fleet.hosts for p in Path(h.root).glob(".flags.toml.tmp-*")]


def test_kill_switch_with_a_refusing_and_a_failing_host_exits_1_naming_both_while_the_fleet_is_locked(
        make_fleet):
    fleet = make_fleet(10, faults="web003=refuse,web005=fail")
    for h in fleet.hosts:
        (Path(h.root) / "flags.toml").write_bytes(OLD)
    assert cr(fleet, "lock", "NO DEPLOY PLEASE: database migration").returncode == 0

    res = cr(fleet, "flag", "new_search", "off", "--yes", "--reason", "search is slow")

    assert res.returncode == 1, res.stdout + res.stderr
    assert "new_search on -> off on 8/10 hosts" in res.stdout
    lines = [line.split() for line in res.stdout.splitlines()]
    assert ["web003", "refused", "connection", "refused"] in lines
    assert ["web005", "exit", "1", "web005:", "simulated", "failure"] in lines
    for h in fleet.hosts:
        if h.name in ("web003", "web005"):
            assert (Path(h.root) / "flags.toml").read_bytes() == OLD  # the old file, whole
            continue
        f = flags_file(h)
        assert f["version"] == 1 and f["changed_by"] == "alice"
        assert f["flags"]["new_search"] == {"enabled": "off"} and f["flags"]["beehive"] == {"enabled": "on"}
        assert f["flags"]["photo_page_v2"] == {"enabled": "10%", "groups": ["staff"]}
    assert temp_files(fleet) == []
    assert "NO DEPLOY PLEASE" in cr(fleet, "log").stdout  # the lock is still held: it stopped nothing

    table = cr(fleet, "flags")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "new_search" in line)
    assert "kill switch" in row and " off " in row and "8/10 · web003 refused · web005 exit 1" in row
    assert "alice" in row and "(search is slow)" in row
    assert "retrying in the background: web003, web005" in table.stdout
    gone = cr(fleet, "flags", "--dismiss")
    assert "no longer retried: web003, web005" in gone.stdout, gone.stdout + gone.stderr
    assert "retrying" not in cr(fleet, "flags").stdout


def test_a_kill_switch_lands_while_a_deploy_runs_and_the_log_says_who_and_why(make_fleet):
    fleet = make_fleet(10)
    text = fleet.config_path.read_text().replace("steps = [\n", 'steps = [\n    "sleep 1",\n', 1)
    fleet.config_path.write_text(text)
    assert cr(fleet, "deploy", "--detach", "--yes").returncode == 0

    res = cr(fleet, "flag", "beehive", "off", "--yes", "--reason", "sheds load", user="bob")

    assert res.returncode == 0, res.stdout + res.stderr
    assert "beehive on -> off on 10/10 hosts" in res.stdout
    assert {flags_file(h)["flags"]["beehive"]["enabled"] for h in fleet.hosts} == {"off"}
    follow = cr(fleet, "deploy", "--follow", timeout=180)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    log = cr(fleet, "log").stdout.splitlines()
    flag_at = next(i for i, line in enumerate(log) if "FLAG beehive" in line)
    assert log[flag_at].endswith("[bob] FLAG beehive on -> off (sheds load) 10/10"), log[flag_at]
    start = next(i for i, line in enumerate(log) if "DEPLOY START" in line)
    ok = next(i for i, line in enumerate(log) if "DEPLOY OK" in line)
    assert start < flag_at < ok  # it landed in the middle of the deploy, not after it


def test_the_same_push_through_real_sshd_and_verify_names_a_drifted_host(any_make_fleet):
    fleet = any_make_fleet(hosts=3)

    res = cr(fleet, "flag", "new_search", "off", "--yes")

    assert res.returncode == 0, res.stdout + res.stderr
    assert "new_search on -> off on 3/3 hosts" in res.stdout
    for h in fleet.hosts:
        assert flags_file(h)["flags"]["new_search"] == {"enabled": "off"}
    assert temp_files(fleet) == []
    assert cr(fleet, "flags", "--verify").returncode == 0
    drifted = fleet.hosts[1]
    with open(Path(drifted.root) / "flags.toml", "a") as f:
        f.write('[flags.extra]\nenabled = "on"\n')
    res = cr(fleet, "flags", "--verify")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "verify: 2/3 hosts hold the flags file they were sent" in res.stdout
    assert [line.split()[:2] for line in res.stdout.splitlines() if line.startswith("  ") and "drifted" in line] \
        == [[drifted.name, "drifted"]]


async def test_a_change_decided_on_a_stale_version_is_refused_naming_who_changed_it(make_fleet):
    fleet = make_fleet(4)
    cfg = config.load(fleet.config_path)
    a = await connect(cfg)
    b = await connect(cfg)
    try:
        seen_a = next(f for f in (await a.request("flags"))["flags"] if f["name"] == "beehive")
        seen_b = next(f for f in (await b.request("flags"))["flags"] if f["name"] == "beehive")
        done = await a.request("flag_set", flag="beehive", value="off", reason="a", expect=seen_a["version"])
        assert (done["confirmed"], done["total"]) == (4, 4)
        with pytest.raises(ControlroomError) as refused:
            await b.request("flag_set", flag="beehive", value="50%", reason="b", expect=seen_b["version"])
        now = next(f for f in (await b.request("flags"))["flags"] if f["name"] == "beehive")
        assert f"beehive was changed by {now['changed_by']} at " in str(refused.value)
        assert "now off, version 1" in str(refused.value)
        again = await b.request("flag_set", flag="beehive", value="50%", reason="b", expect=now["version"])
        assert again["old"] == "off" and again["new"] == "50%"
        history = (await b.request("flag_history", flag="beehive"))["changes"]
        assert [(c["version"], c["old"], c["new"], c["reason"], c["confirmed"], c["hosts"]) for c in history] == [
            (2, "off", "50%", "b", 4, 4), (1, "on", "off", "a", 4, 4)]
    finally:
        await a.close()
        await b.close()
    assert {flags_file(h)["flags"]["beehive"]["enabled"] for h in fleet.hosts} == {"50%"}


def test_a_straggler_is_retried_in_the_background_until_it_confirms(make_fleet):
    fleet = make_fleet(5, faults="web002=flaky:2")
    res = cr(fleet, "flag", "enable_feature_video", "on", "--yes")
    assert res.returncode == 1 and "web002  exit 1" in res.stdout, res.stdout + res.stderr

    def confirmed():
        out = cr(fleet, "flags").stdout
        row = next(line for line in out.splitlines() if "enable_feature_video" in line)
        return " 5/5 " in row and "retrying" not in out

    waiting.wait_for(confirmed, 60, "web002 to confirm on a retry")
    assert flags_file(fleet.by_name["web002"])["flags"]["enable_feature_video"] == {"enabled": "on"}


def test_an_unknown_flag_or_a_bad_value_exits_2_before_any_server_is_asked(make_fleet):
    fleet = make_fleet(2)
    typo = cr(fleet, "flag", "new_serch", "off", "--yes")
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr.strip().splitlines() == [
        "controlroom: no flag 'new_serch'; did you mean 'new_search'? (flags: new_search, beehive, "
        "enable_feature_video, photo_page_v2)"]
    for bad, says in (("maybe", "must be on, off or a percentage like \"25%\", got 'maybe'"),
                      ("150%", "a percentage must be from 0% to 100%, got '150%'")):
        res = cr(fleet, "flag", "new_search", bad, "--yes")
        assert res.returncode == 2 and res.stderr.strip() == f"controlroom: new_search: {says}", res.stderr
    assert not (Path(fleet.dir) / "state" / "control.sock").exists()


@pytest.mark.parametrize("table, key, says", [
    ('[flags.NewSearch]\nkind = "kill_switch"\n', "flags.NewSearch", "must match [a-z][a-z0-9_]*"),
    ('[flags.beehive]\ndefault = "maybe"\n', "flags.beehive.default", "must be on, off or a percentage"),
    ('[flags.beehive]\ndefault = "101%"\n', "flags.beehive.default", "from 0% to 100%"),
    ('[flags.beehive]\nusers = [7]\n', "flags.beehive.users", "must be a list of strings"),
    ('[flags.beehive]\nkind = "killswitch"\n', "flags.beehive.kind", '"feature" or "kill_switch"'),
    ('[flags.beehive]\ndefualt = "on"\n', "flags.beehive.defualt", "did you mean 'default'"),
])
def test_a_flags_mistake_in_the_config_is_one_line_with_file_line_and_key(tmp_path, table, key, says):
    (tmp_path / "known_hosts").touch()
    path = tmp_path / "controlroom.toml"
    path.write_text('[inventory]\nhosts = ["web[01:03]"]\n\n[inventory.ssh]\nknown_hosts = "known_hosts"\n\n'
                    '[flags]\nfile = "flags.toml"\n\n' + table)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    line = str(err.value)
    assert line.startswith(f"{path}:{10 if key == 'flags.NewSearch' else 11}: {key}: "), line
    assert says in line and "\n" not in line


def test_a_flag_table_in_the_config_gives_kind_default_users_and_groups(tmp_path):
    (tmp_path / "known_hosts").touch()
    path = tmp_path / "controlroom.toml"
    path.write_text('[inventory]\nhosts = ["web[01:03]"]\n[inventory.ssh]\nknown_hosts = "known_hosts"\n'
                    '[flags.beta]\ndefault = " 12.50% "\nusers = ["alice"]\ngroups = ["staff"]\n'
                    '[flags.off_switch]\nkind = "kill_switch"\ndefault = true\n')
    cfg = config.load(path)
    assert cfg.flags.file == "flags.toml"
    beta, switch = cfg.flags.flags
    assert (beta.kind, beta.default, beta.users, beta.groups) == ("feature", "12.5%", ("alice",), ("staff",))
    assert switch.kill_switch and switch.default == "on"


def test_the_reference_reader_buckets_users_stably_and_honours_users_and_groups(tmp_path):
    path = tmp_path / "flags.toml"
    f = fl.FlagsFile(3, "alice", time.time(), {
        "on_for_all": fl.FlagValue("on"), "off_for_all": fl.FlagValue("off", users=("bob",), groups=("staff",)),
        "quarter": fl.FlagValue("25%")})
    path.write_bytes(f.render())
    assert fl.parse(path.read_bytes()) == fl.FlagsFile(3, "alice", float(int(f.changed_at)), f.flags)
    p = str(path)
    assert fl.enabled("on_for_all", 1, path=p) and not fl.enabled("missing", 1, path=p)
    assert not fl.enabled("off_for_all", "carol", path=p)
    assert fl.enabled("off_for_all", "bob", path=p) and fl.enabled("off_for_all", 9, groups=["staff"], path=p)
    inside = {u for u in range(4000) if fl.enabled("quarter", u, path=p)}
    assert 850 < len(inside) < 1150  # about a quarter
    assert inside == {u for u in range(4000) if fl.enabled("quarter", u, path=p)}  # the same users each time
    path.write_bytes(fl.FlagsFile(4, "alice", time.time(), {"quarter": fl.FlagValue("50%")}).render())
    assert inside < {u for u in range(4000) if fl.enabled("quarter", u, path=p)}  # growing keeps them in
    assert not fl.enabled("quarter", None, path=p)


async def test_a_straggler_that_comes_back_gets_the_current_flags_before_anything_else_runs_on_it(make_fleet):
    from controlroom.engine.flagpush import FlagService
    from controlroom.fleet.ssh import SSHPool
    from controlroom.journal.journal import Journal

    fleet = make_fleet(3, faults="web002=fail")
    cfg = config.load(fleet.config_path)
    journal = Journal.open(cfg.state.dir)
    pool = SSHPool(cfg.ssh, cfg.hosts)
    service = FlagService(cfg, pool, journal, backoff=(3600.0, 3600.0))  # no retry of its own in this story
    service.start()
    try:
        done = await service.change("new_search", "off", Actor("alice"), reason="slow")
        assert done["failed"] == [["web002", "exit 1", "web002: simulated failure"]]
        fleet.set_fault("web002", None)
        await pool.close()  # the host went away and comes back: the next command needs a new connection
        res = await pool.run("web002", "cat flags.toml")
        assert res.ok and tomllib.loads(res.stdout)["flags"]["new_search"] == {"enabled": "off"}
        assert service.state()["flags"][0]["receipt"] == {"confirmed": 3, "total": 3, "failed": []}
        assert service.history.changes("new_search")[0]["confirmed"] == 3
    finally:
        await service.close()
        await pool.close()
        journal.close()


# ------------------------------------------------------------------------------------------------ a crash mid-push


def db_rows(fleet, sql: str, *params) -> list[tuple]:
    db = Path(fleet.dir) / "state" / "journal.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def holds_version(host, version: int) -> bool:
    path = Path(host.root) / "flags.toml"
    return path.exists() and flags_file(host)["version"] == version


@pytest.mark.slow
def test_kill_9_mid_push_is_settled_at_the_next_start_the_log_and_chat_say_what_happened(make_fleet):
    # two hosts that never answer hold the push's two lanes: web001-web003 are written, web006-web010 wait
    fleet = make_fleet(10, faults="web004=hang,web005=hang")
    chat = Path(fleet.dir) / "chat.txt"
    base = fleet.config_path.read_text().replace("connect_timeout = 5\n", "connect_timeout = T\nmax_parallel = 2\n")
    base += f'\n[notify]\ncommand = "cat >> {chat}"\n'
    fleet.config_path.write_text(base.replace("= T\n", "= 60\n"))
    push = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "flag", "new_search", "off", "--yes",
                             "--reason", "search is slow", "--config", str(fleet.config_path)], cwd=REPO,
                            env=dict(os.environ, SUDO_USER="alice"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        waiting.wait_for(lambda: all(holds_version(fleet.by_name[h], 1) for h in ("web001", "web002", "web003")),
                         60, "the push to reach web001-web003", push)
        kill_server(Path(fleet.dir) / "state")
        out, err = push.communicate(timeout=30)
    finally:
        if push.poll() is None:
            push.kill()
    assert push.returncode == 1, out + err
    assert err.strip().splitlines() == [
        "controlroom: the server went away while it pushed new_search; the change is on the record, and the next "
        "server start asks the hosts and logs what happened: `controlroom flags` starts it and shows how the "
        "change stands"], err
    # on the record before the hosts: the change pending, each host's receipt pending, no FLAG line yet
    assert db_rows(fleet, "SELECT version, user, flag, old, new, hosts, failed FROM flag_changes") == [
        (1, "alice", "new_search", "on", "off", 10, None)]
    assert db_rows(fleet, "SELECT DISTINCT version, status FROM flag_receipts") == [(1, "pending")]
    assert not db_rows(fleet, "SELECT 1 FROM log WHERE kind = 'FLAG'")
    assert not any(holds_version(fleet.by_name[f"web{n:03d}"], 1) for n in range(6, 11))

    fleet.config_path.write_text(base.replace("= T\n", "= 2\n"))  # the hung hosts are given up sooner this time
    # bob, from elsewhere, starts the next server: it settles alice's change before anything else is pushed
    shown = run_cli("flags", "--config", str(fleet.config_path), env={"SUDO_USER": "bob",
                                                                      "SSH_CLIENT": "10.9.9.9 50000 22"})
    assert shown.returncode == 0, shown.stdout + shown.stderr
    line = waiting.wait_for(lambda: db_rows(fleet, "SELECT user, origin, text FROM log WHERE kind = 'FLAG'"), 60,
                            "the FLAG line of the settled change")
    assert line == [("alice", None, "new_search on -> off (search is slow) 3/10, 5 not written: web006, web007, "
                                    "web008, web009, web010, 2 unknown: web004, web005 (settled after a restart)")]
    waiting.wait_for(lambda: chat.exists() and "FLAG new_search" in chat.read_text(), 30, "the chat line")
    assert chat.read_text().splitlines() == [f"[alice] FLAG {line[0][2]}"]
    # the hosts the dead server never wrote are retried and confirm; the two that never answer stay named
    waiting.wait_for(lambda: db_rows(fleet, "SELECT confirmed FROM flag_changes") == [(8,)], 60,
                     "web006-web010 to confirm on a retry")
    failed = json.loads(db_rows(fleet, "SELECT failed FROM flag_changes")[0][0])
    assert [(h, cls) for h, cls, _ in failed] == [("web004", "unknown"), ("web005", "unknown")]
    assert all(holds_version(fleet.by_name[f"web{n:03d}"], 1) for n in (1, 2, 3, 6, 7, 8, 9, 10))
    row = next(r for r in cr(fleet, "flags").stdout.splitlines() if "new_search" in r)
    assert "8/10 · web004 timeout · web005 timeout" in row, row  # as their latest retry found them


def test_a_flag_change_the_journal_cannot_record_is_one_line_and_no_host_is_written(make_fleet):
    fleet = make_fleet(3)
    state = Path(fleet.dir) / "state"
    state.mkdir()
    small_tmpfs(state)
    try:
        assert cr(fleet, "flags").returncode == 0  # the server runs, its journal made
        fill(state)  # then the disk under the journal fills
        try:
            res = cr(fleet, "flag", "new_search", "off", "--yes")
        finally:
            (state / "filler").unlink()
        assert res.returncode == 1, res.stdout + res.stderr
        assert res.stderr.strip().splitlines() == [
            f"controlroom: cannot write the journal {state / 'journal.db'}: the disk is full; free space on it "
            f"(`df -h {state}`), then try again"], res.stderr
        assert not any(holds_version(h, 1) for h in fleet.hosts)  # not on the record, so not pushed
        done = cr(fleet, "flag", "new_search", "off", "--yes")  # trying again works
        assert done.returncode == 0 and "new_search on -> off on 3/3 hosts" in done.stdout, done.stdout + done.stderr
    finally:
        stop_servers(fleet.dir)
        unmount(state)


def test_a_hosts_hash_line_is_believed_only_in_the_shape_controlroom_prints():
    from controlroom.fleet import flagfile as fl

    good = "a" * 64
    assert fl.reported_hash(f"{fl.SUM}{good}\n") == good
    assert fl.reported_hash(f"noise\n{fl.SUM}missing\n") == "missing"
    for hostile in (f"{fl.SUM}\x1b]0;owned\x07{good}", f"{fl.SUM}{good}x", f"{fl.SUM}" + "f" * 100_000, fl.SUM):
        assert fl.reported_hash(hostile + "\n") is None, hostile[:80]
