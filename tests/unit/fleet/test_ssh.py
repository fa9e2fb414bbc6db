"""The SSH pool against the simulated fleet: real asyncssh, real /bin/sh on every host, faults as real hosts fail."""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import subprocess
import sys
import textwrap

import asyncssh
import pytest

from controlroom.config import config
from controlroom.demo.fleet import Fleet
from controlroom.fleet.ssh import RESULT_CLASSES, TAIL_LINES, SSHPool, raise_nofile_limit, render
from tests.waiting import until

ONE_OF_EACH = "web001=refuse,web002=hang,web003=fail,web004=drop,web005=slow:1,web006=hostkey,web007=auth"
ONE_OF_EACH_LABELS = {  # what each host of ONE_OF_EACH (and a healthy web008) ends in
    "web001": "refused",
    "web002": "timeout",
    "web003": "exit 1",
    "web004": "dropped",
    "web005": "ok",
    "web006": "hostkey",
    "web007": "auth",
    "web008": "ok",
}


def pool_for(fleet: Fleet, **settings) -> SSHPool:
    """A pool built from the fleet's own controlroom.toml, with some [inventory.ssh] settings changed."""
    cfg = config.load(fleet.config_path)
    return SSHPool(dataclasses.replace(cfg.ssh, **settings), cfg.hosts)


def on_host(fleet: Fleet, name: str, *path: str):
    return fleet.dir.joinpath("hosts", name, *path)


# ------------------------------------------------------------------------------------------- result classes


async def test_each_broken_host_ends_in_its_own_result_class(make_fleet):
    fleet = make_fleet(8, ONE_OF_EACH)
    async with pool_for(fleet, connect_timeout=1.0) as pool:
        results = await pool.run_many([h.name for h in fleet.hosts], "echo $HOSTNAME")
    by_host = {r.host: r for r in results}
    assert {name: r.label for name, r in by_host.items()} == ONE_OF_EACH_LABELS
    assert all(r.status in RESULT_CLASSES for r in results)
    assert by_host["web001"].reason == "connection refused"
    assert by_host["web003"].stderr == "web003: simulated failure"
    assert by_host["web005"].stdout == "web005"
    assert "Permission denied" in by_host["web007"].reason
    assert "host key not verifiable" in by_host["web006"].reason


async def test_hung_host_ends_at_its_connect_timeout_as_timeout(make_fleet):
    fleet = make_fleet(2, "web001=hang")
    async with pool_for(fleet, connect_timeout=1.0) as pool:
        hung, healthy = await pool.run_many(["web001", "web002"], "true")
    assert (hung.label, healthy.label) == ("timeout", "ok")
    assert hung.reason == "connect timed out after 1 s"
    assert hung.connect_s >= 0.9  # it waited for the timeout, it did not give up early


async def test_slow_host_with_a_shorter_command_timeout_times_out(make_fleet):
    fleet = make_fleet(2, "web001=slow:1")
    async with pool_for(fleet) as pool:
        slow = await pool.run("web001", "echo done", timeout=0.5)
        quick = await pool.run("web002", "echo done")
    assert (slow.label, quick.label) == ("timeout", "ok")
    assert slow.reason == "timed out after 0.5 s"
    assert quick.stdout == "done"


async def test_command_timeout_comes_from_the_config_when_not_given(make_fleet):
    fleet = make_fleet(1, "web001=slow:1")
    async with pool_for(fleet, command_timeout=0.2) as pool:
        res = await pool.run("web001", "true")
    assert (res.label, res.reason) == ("timeout", "timed out after 0.2 s")


async def test_command_killed_by_a_signal_says_which(fleet):
    async with pool_for(fleet) as pool:
        res = await pool.run("web001", "kill -9 $$")
    assert res.label == "exit -1"
    assert res.reason == "killed by signal KILL"


async def test_flaky_host_fails_then_recovers(make_fleet):
    fleet = make_fleet(1, "web001=flaky:1")
    async with pool_for(fleet) as pool:
        first = await pool.run("web001", "echo fine")
        second = await pool.run("web001", "echo fine")
    assert (first.label, second.label) == ("exit 1", "ok")


async def test_host_that_dropped_is_reconnected_on_the_next_command(make_fleet):
    fleet = make_fleet(1, "web001=drop")
    async with pool_for(fleet) as pool:
        dropped = await pool.run("web001", "echo hi")
        fleet.call(fleet.set_fault, "web001", None)
        again = await pool.run("web001", "echo hi")
    assert dropped.label == "dropped"
    assert (again.label, again.stdout) == ("ok", "hi")
    assert pool.handshakes == 2


# ------------------------------------------------------------------------------------------- connections


async def test_pool_reuses_one_connection_per_host(make_fleet):
    fleet = make_fleet(5)
    names = [h.name for h in fleet.hosts]
    async with pool_for(fleet) as pool:
        # the first round runs three commands per host at once: they must share one handshake
        first = await asyncio.gather(*(pool.run(n, "echo $HOSTNAME") for n in names for _ in range(3)))
        more = await pool.run_many(names, "true")
        assert pool.handshakes == len(names)
    assert all(r.ok for r in [*first, *more])
    assert sorted(r.stdout for r in first) == sorted(names * 3)


async def test_the_pool_prefers_aes_gcm_and_an_ssh_config_that_names_ciphers_is_obeyed(make_fleet, tmp_path):
    fleet = make_fleet(2)
    names = [h.name for h in fleet.hosts]
    async with pool_for(fleet) as pool:
        assert all(r.ok for r in await pool.run_many(names, "true"))
        ciphers = {pool._conns[n].get_extra_info("send_cipher") for n in names}
    assert ciphers == {"aes256-gcm@openssh.com"}, ciphers  # asyncssh's own first choice is chacha20-poly1305
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host *\n    Ciphers aes128-ctr\n")
    async with pool_for(fleet, config_files=(ssh_config,)) as pool:
        assert all(r.ok for r in await pool.run_many(names, "true"))
        ciphers = {pool._conns[n].get_extra_info("send_cipher") for n in names}
    assert ciphers == {"aes128-ctr"}, ciphers
    plain = tmp_path / "plain_config"
    plain.write_text("Host *\n    ServerAliveInterval 0\n")  # an ssh_config without Ciphers: ours again
    async with pool_for(fleet, config_files=(plain,)) as pool:
        assert all(r.ok for r in await pool.run_many(names, "true"))
        ciphers = {pool._conns[n].get_extra_info("send_cipher") for n in names}
    assert ciphers == {"aes256-gcm@openssh.com"}, ciphers


async def test_output_streams_line_by_line_while_the_command_runs(fleet):
    # the command prints one line, then waits for a file the test creates only once it has seen that line
    seen: list[tuple[str, str]] = []
    go = on_host(fleet, "web001", "go")

    def on_line(stream: str, line: str) -> None:
        seen.append((stream, line))
        if line == "first":
            go.touch()

    cmd = "echo first; echo warming >&2; while [ ! -e go ]; do sleep 0.01; done; echo second"
    async with pool_for(fleet) as pool:
        res = await pool.run("web001", cmd, timeout=20, on_line=on_line)
    assert res.label == "ok"
    assert [line for stream, line in seen if stream == "out"] == ["first", "second"]
    assert ("err", "warming") in seen


async def test_a_failing_line_callback_does_not_cost_the_host_its_connection(fleet):
    def broken(stream: str, line: str) -> None:
        raise RuntimeError("screen went away")

    async with pool_for(fleet) as pool:
        first = await pool.run("web001", "echo hi", on_line=broken)
        again = await pool.run("web001", "echo hi")
        assert pool.handshakes == 1
    assert "RuntimeError: screen went away" in first.reason
    assert (again.label, again.stdout) == ("ok", "hi")


async def test_result_keeps_output_tails_and_timings(fleet):
    async with pool_for(fleet) as pool:
        res = await pool.run("web002", "for i in $(seq 1 100); do echo line $i; done; echo broke >&2; exit 3")
    assert (res.host, res.status, res.exit_code, res.label) == ("web002", "exit", 3, "exit 3")
    lines = res.stdout.split("\n")
    assert len(lines) == TAIL_LINES
    assert lines[-1] == "line 100" and lines[0] == f"line {100 - TAIL_LINES + 1}"
    assert res.stderr == "broke"
    assert res.connect_s > 0 and res.run_s > 0
    assert res.started_at > 0


async def test_empty_lines_in_output_are_kept(fleet):
    async with pool_for(fleet) as pool:
        res = await pool.run("web001", "printf 'a\\n\\nb\\n'")
    assert res.stdout == "a\n\nb"


# ------------------------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    "revision", ["x; touch pwned", "$(touch pwned)", "`touch pwned`", "it's && touch pwned"]
)
async def test_revision_with_shell_syntax_is_echoed_not_run(fleet, revision):
    async with pool_for(fleet) as pool:
        res = await pool.run("web001", render("echo {revision}", revision=revision))
    assert (res.label, res.stdout) == ("ok", revision)
    assert not on_host(fleet, "web001", "pwned").exists()


async def test_value_that_looks_like_a_placeholder_is_not_filled_in_again(fleet):
    cmd = render("echo {revision} {previous}", revision="{previous}", previous="y; touch pwned")
    async with pool_for(fleet) as pool:
        res = await pool.run("web001", cmd)
    assert (res.label, res.stdout) == ("ok", "{previous} y; touch pwned")
    assert not on_host(fleet, "web001", "pwned").exists()


def test_render_leaves_unknown_placeholders_alone():
    assert (
        render("deploy {revision} on {host} {other}", revision="r1", host="web001")
        == "deploy r1 on web001 {other}"
    )


# ------------------------------------------------------------------------------------------- host keys


async def test_changed_host_key_refuses_that_host_only(make_fleet):
    fleet = make_fleet(3)
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    lines = fleet.known_hosts.read_text().splitlines()
    lines = [f"{line.split(' ', 1)[0]} {stranger}" if line.startswith("[web002]") else line for line in lines]
    fleet.known_hosts.write_text("\n".join(lines) + "\n")
    async with pool_for(fleet) as pool:
        results = await pool.run_many(["web001", "web002", "web003"], "echo $HOSTNAME")
    assert [r.label for r in results] == ["ok", "hostkey", "ok"]


async def test_empty_known_hosts_accepts_no_host(make_fleet):
    fleet = make_fleet(3)
    fleet.known_hosts.write_text("")
    async with pool_for(fleet) as pool:
        results = await pool.run_many([h.name for h in fleet.hosts], "touch reached")
    assert [r.label for r in results] == ["hostkey"] * 3
    assert not any(on_host(fleet, h.name, "reached").exists() for h in fleet.hosts)


# ------------------------------------------------------------------------------------------- limits


async def test_at_most_channels_per_connection_commands_run_at_once_on_one_host(fleet):
    # Each command logs its start on the host and holds until the test, having seen 8 of them start, lets them go.
    # Bounded at 8 channels, exactly 8 hold together; unbounded, all 20 would start while the first 8 still hold.
    # The host-side log shows how many ran at once.
    cmd = textwrap.dedent("""\
        echo start >> runs.log
        echo started
        while [ ! -e release ]; do sleep 0.01; done
        echo end >> runs.log
    """)
    started = 0

    def on_line(stream: str, line: str) -> None:
        nonlocal started
        started += line == "started"
        if started == 8:
            on_host(fleet, "web005", "release").touch()

    async with pool_for(fleet, channels_per_connection=8) as pool:
        results = await asyncio.gather(
            *(pool.run("web005", cmd, timeout=30, on_line=on_line) for _ in range(20))
        )
        assert pool.handshakes == 1
    assert [r.label for r in results] == ["ok"] * 20
    running = peak = 0
    for event in on_host(fleet, "web005", "runs.log").read_text().split():
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert peak == 8


def test_nofile_limit_is_left_alone_or_warned_about_with_numbers():
    warning = raise_nofile_limit(10)
    assert warning is None or ("104" in warning and "10 hosts" in warning)


def _in_fresh_interpreter(soft: int, hard: int, hosts: int) -> str:
    code = (
        "import resource; from controlroom.fleet.ssh import raise_nofile_limit\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
        f"print(raise_nofile_limit({hosts})); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    return out.stdout


def test_nofile_limit_is_raised_when_the_hard_limit_allows():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != -1 and hard < 664:
        pytest.skip(f"hard open-files limit {hard} is below what the test raises to")
    assert _in_fresh_interpreter(100, hard, 150).splitlines() == ["None", "664"]


def test_nofile_limit_stuck_below_need_warns_with_the_numbers():
    warning, soft = _in_fresh_interpreter(64, 64, 1000).splitlines()
    assert soft == "64"
    assert warning.startswith("warning: open-files limit is 64, below 4064 (4 x 1000 hosts + 64)")
    assert "ulimit -n" in warning


# ------------------------------------------------------------------------------------------- bounds and liveness


async def test_handshakes_in_flight_stay_within_max_startups(make_fleet):
    fleet = make_fleet(24)
    async with pool_for(fleet, max_startups=4) as pool:
        results = await pool.run_many([h.name for h in fleet.hosts], "true")
    assert [r.label for r in results] == ["ok"] * 24
    assert 1 <= fleet.most_handshaking <= 4


async def test_without_a_tight_bound_the_fleet_sees_many_handshakes_at_once(make_fleet):
    # the measure above can tell: unbounded (50 allowed), 24 hosts do handshake side by side
    fleet = make_fleet(24)
    async with pool_for(fleet, max_startups=50) as pool:
        await pool.run_many([h.name for h in fleet.hosts], "true")
    assert fleet.most_handshaking > 4


async def test_a_host_that_goes_silent_mid_command_is_noticed_by_keepalives_as_dropped(make_fleet):
    fleet = make_fleet(2, "web002=silent")
    async with pool_for(fleet, keepalive_interval=0.5, keepalive_count=2, command_timeout=60) as pool:
        ok, silent = await pool.run_many(["web001", "web002"], "echo hi")
    assert ok.label == "ok"
    # dropped, not timeout: the keepalives gave up long before the 60 s command timeout
    assert silent.label == "dropped", silent



async def test_an_idle_pooled_connection_sends_no_keepalives_a_busy_one_does(make_fleet):
    fleet = make_fleet(2)
    async with pool_for(fleet, keepalive_interval=0.1, keepalive_count=3) as pool:
        assert [r.label for r in await pool.run_many(["web001", "web002"], "true")] == ["ok", "ok"]
        assert pool.keepalives_on == 0  # nothing in flight: no connection keeps alive
        # web002 runs a silent second (a keepalive every 0.1 s without data) while web001's connection idles
        busy = await pool.run("web002", "sleep 1")
        assert pool.keepalives_on == 0
    assert busy.ok
    assert fleet.by_name["web002"].keepalives > 0  # what the hosts saw
    assert fleet.by_name["web001"].keepalives == 0
    assert fleet.connections == 2


async def test_a_pooled_connection_that_died_while_idle_is_replaced_by_one_new_connect(make_fleet):
    fleet = make_fleet(2)
    connected: list[str] = []

    async def came_back(host: str) -> None:
        connected.append(host)

    async with pool_for(fleet, keepalive_interval=0.1, keepalive_count=2, command_timeout=60) as pool:
        pool.on_connect = came_back
        first = await pool.run("web001", "echo one")
        fleet.call(fleet.cut, "web001")  # power-cycled between deploys: the pool's connection is dead, unknown
        second = await pool.run("web001", "echo $HOSTNAME")
        assert pool.handshakes == 2  # one new connect, not a retry loop
        again = await pool.run("web001", "true")
    assert (first.label, second.label, again.label) == ("ok", "ok", "ok"), second
    assert second.stdout == "web001"
    assert fleet.by_name["web001"].commands == 3  # the dead connection started nothing: each command ran once
    assert fleet.connections == 2
    assert connected == ["web001", "web001"]  # the new connection is announced as one just opened


# ------------------------------------------------------------------------------------------- warm connects


async def test_warm_opens_every_connection_in_the_background_runs_nothing_and_commands_reuse_them(make_fleet):
    fleet = make_fleet(6)
    names = [h.name for h in fleet.hosts]
    announced: list[str] = []

    async def came_back(host: str) -> None:
        announced.append(host)

    async with pool_for(fleet) as pool:
        pool.on_connect = came_back
        pool.warm(names)
        await until(lambda: pool.warming == 0 and fleet.connections == 6, 30, "the warm connects to end")
        assert pool.handshakes == 6
        assert [h.commands for h in fleet.hosts] == [0] * 6  # connections only: nothing ran on a host
        assert announced == []  # on_connect waits for the first command that uses the connection
        results = await pool.run_many(names, "echo $HOSTNAME")
        again = await pool.run("web001", "true")
    assert [r.stdout for r in results] == names and again.ok
    assert pool.handshakes == 6 and fleet.connections == 6  # the commands used the warm connections
    assert sorted(announced) == names  # each announced once, when first used, as for a connection just opened


async def test_a_command_for_a_host_being_warmed_takes_that_connects_outcome(make_fleet):
    fleet = make_fleet(3, "web002=hostkey,web003=hang")
    async with pool_for(fleet, connect_timeout=1.0) as cold:
        expected = await cold.run_many(["web001", "web002", "web003"], "true")
    async with pool_for(fleet, connect_timeout=1.0) as pool:
        pool.warm(["web001", "web002", "web003"])
        assert pool.warming == 3
        results = await pool.run_many(["web001", "web002", "web003"], "true")  # while the connects are under way
        assert pool.handshakes == 3  # one connect each: the warm one's outcome, never a second try
    assert [(r.label, r.reason) for r in results] == [(r.label, r.reason) for r in expected]
    assert [r.label for r in results] == ["ok", "hostkey", "timeout"]


async def test_a_host_whose_warm_connect_failed_is_connected_anew_by_the_next_command(make_fleet):
    fleet = make_fleet(1, "web001=refuse")
    async with pool_for(fleet) as pool:
        pool.warm(["web001"])
        await until(lambda: pool.warming == 0, 30, "the warm connect to fail")
        first = await pool.run("web001", "true")
    assert (first.label, first.reason) == ("refused", "connection refused")


async def test_closing_the_pool_cancels_warm_connects_still_under_way(make_fleet):
    fleet = make_fleet(2, "web001=hang")
    pool = pool_for(fleet, connect_timeout=60.0)
    pool.warm(["web001", "web002"])
    await until(lambda: fleet.by_name["web001"].accepted == 1, 30, "the hung host to accept the warm connect")
    await asyncio.wait_for(pool.close(), 10)  # not the 60 s connect timeout
    assert pool.warming == 0


# ------------------------------------------------------------------------------------------- jump hosts


@pytest.mark.parametrize("fault, label, reason", [
    ("hang", "timeout", "connect timed out after 1 s"),
    ("refuse", "refused", "connection refused"),
])
async def test_a_dead_jump_host_fails_every_host_behind_it_at_once_naming_the_jump_host(make_fleet, fault, label,
                                                                                       reason):
    fleet = make_fleet(21, f"web001={fault}")
    jump = f"127.0.0.1:{fleet.by_name['web001'].port}"
    behind = [h.name for h in fleet.hosts[1:]]
    async with pool_for(fleet, jump=jump, connect_timeout=1.0) as pool:
        results = await pool.run_many(behind, "touch reached")
        # one try for all 20 hosts, not one after another (150 hosts at 10 s each would take 25 minutes)
        assert pool.jump_attempts == 1
    assert [r.label for r in results] == [label] * 20
    assert {r.reason for r in results} == {f"via jump host {jump}: {reason}"}
    if fault == "hang":
        assert fleet.by_name["web001"].accepted == 1  # what the jump host itself saw
    assert not any(on_host(fleet, name, "reached").exists() for name in behind)


async def test_a_jump_host_that_failed_is_tried_again_once_its_failure_is_forgotten(make_fleet):
    fleet = make_fleet(3, "web001=hang")
    jump = f"127.0.0.1:{fleet.by_name['web001'].port}"
    async with pool_for(fleet, jump=jump, connect_timeout=0.5) as pool:
        first = await pool.run("web002", "true")
        pool.jump_retry_after = 0.0  # as if the remembered time had passed
        second = await pool.run("web003", "true")
        second_attempts = pool.jump_attempts
    assert (first.label, second.label) == ("timeout", "timeout")
    assert second_attempts == 2
    assert fleet.by_name["web001"].accepted == 2
