"""What a stopped command, a result and a host key mean on real OpenSSH, and the same on the simulated fleet.

Tests taking ``any_make_fleet`` run twice: on the simulated fleet ([sim]) and on real sshd hosts ([sshd]).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import subprocess
import sys

import asyncssh
import pytest

from controlroom.config import config
from controlroom.config.inventory import Host
from controlroom.fleet.ssh import SSHPool
from tests.conftest import run_cli
from tests.waiting import never_appears, until, wait_for


def pool_for(fleet, **settings) -> SSHPool:
    cfg = config.load(fleet.config_path)
    return SSHPool(dataclasses.replace(cfg.ssh, **settings), cfg.hosts)


# ------------------------------------------------------------------------------------------- stopped commands


async def test_closing_a_channel_leaves_its_command_running_unless_it_has_a_pty(any_make_fleet):
    # what any client that merely closes its channel gets: the reason SSHPool.run has to kill the command itself
    fleet = any_make_fleet(hosts=1)
    root = fleet.by_name["web001"].root
    cfg = config.load(fleet.config_path)
    host = cfg.hosts[0]
    async with asyncssh.connect(host.address, port=host.port, username=host.user or cfg.ssh.user,
                                known_hosts=str(fleet.known_hosts), client_keys=[str(fleet.dir / "client_key")]) as conn:
        plain = await conn.create_process("echo up; sleep 1; touch plain")
        # the hangup must come before the touch: 20 s of room for a loaded host to see the close (the plain one
        # shows what happens without it; never_appears waits for every command to end, so a hangup that never
        # comes still fails, at the touch)
        tty = await conn.create_process("echo up; sleep 20; touch tty", term_type="xterm")
        for proc in (plain, tty):
            assert (await proc.stdout.readline()).strip() == "up"
            proc.close()
        await until(lambda: (root / "plain").exists())
    assert await never_appears(root / "tty", root)


async def test_a_fleet_started_with_sighup_ignored_still_hangs_up_a_command_whose_pty_closes(tmp_path):
    # `nohup controlroom fleet` (or a suite run under nohup) passes SIGHUP ignored to every command it starts, as an
    # ignored signal stays ignored through exec; sshd's commands start with the default, and so do the fleet's
    directory, log = tmp_path / "fleet", tmp_path / "fleet.out"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "fleet", "--hosts", "1", "--dir",
                                 str(directory)], stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        wait_for(lambda: "fleet: ready" in log.read_text(), 60, "the fleet to be ready", proc=proc)
        root = directory / "hosts" / "web001"
        cfg = config.load(directory / "controlroom.toml")
        host = cfg.hosts[0]
        async with asyncssh.connect(host.address, port=host.port, username=host.user or cfg.ssh.user,
                                    known_hosts=str(directory / "known_hosts"),
                                    client_keys=[str(directory / "client_key")]) as conn:
            tty = await conn.create_process("echo up; sleep 20; touch tty", term_type="xterm")
            assert (await tty.stdout.readline()).strip() == "up"
            tty.close()
        assert await never_appears(root / "tty", root)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


async def test_a_timed_out_step_never_finishes_on_the_host(any_make_fleet):
    fleet = any_make_fleet(hosts=1)
    root = fleet.by_name["web001"].root
    marker = root / "marker"
    async with pool_for(fleet) as pool:
        res = await pool.run("web001", "sleep 5; touch marker", timeout=1)
        assert (res.label, res.reason) == ("timeout", "timed out after 1 s")
        # the same connection still serves the next command
        again = await pool.run("web001", "cat REVISION")
    assert (again.label, again.stdout) == ("ok", "r2306")
    assert await never_appears(marker, root)


async def test_a_cancelled_step_never_finishes_on_the_host_and_the_cancel_still_propagates(any_make_fleet):
    # what abort, skip, quit and Ctrl+C do to a host's task: cancel it
    fleet = any_make_fleet(hosts=1)
    root = fleet.by_name["web001"].root
    marker = root / "marker"
    seen: list[str] = []
    async with pool_for(fleet, channels_per_connection=1) as pool:
        task = asyncio.create_task(
            pool.run("web001", "echo started; sleep 5; touch marker", timeout=30, on_line=lambda s, line: seen.append(line))
        )
        await until(lambda: "started" in seen)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # its channel was given back: with one channel per connection, the next command runs at once
        after = await pool.run("web001", "echo next", timeout=10)
    assert (after.label, after.stdout) == ("ok", "next")
    assert seen == ["started"]
    assert await never_appears(marker, root)


async def test_a_command_that_ignores_term_is_killed(any_make_fleet):
    fleet = any_make_fleet(hosts=1)
    root = fleet.by_name["web001"].root
    marker = root / "marker"
    async with pool_for(fleet) as pool:
        res = await pool.run("web001", "trap '' TERM; sleep 5; touch marker", timeout=1)
    assert res.label == "timeout"
    assert await never_appears(marker, root)


async def test_the_wrappers_own_line_never_reaches_the_output(any_make_fleet):
    fleet = any_make_fleet(hosts=1)
    seen: list[tuple[str, str]] = []
    async with pool_for(fleet) as pool:
        res = await pool.run("web001", "echo one; echo two >&2; echo three", on_line=lambda s, line: seen.append((s, line)))
    assert res.stdout == "one\nthree"
    assert res.stderr == "two"
    assert sorted(seen) == [("err", "two"), ("out", "one"), ("out", "three")]


# ------------------------------------------------------------------------------------------- results on real sshd


async def test_real_sshd_runs_commands_and_names_each_result(make_real_fleet):
    fleet = make_real_fleet(hosts=2)
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
    try:
        cfg = config.load(fleet.config_path)
        hosts = [*cfg.hosts, Host("web009", address="127.0.0.1", port=refusing.getsockname()[1])]
        async with SSHPool(cfg.ssh, hosts) as pool:
            ok = await pool.run("web001", "echo $HOSTNAME; cat REVISION; pwd")
            failed = await pool.run("web002", "echo broke >&2; exit 3")
            killed = await pool.run("web002", "kill -9 $$")
            refused = await pool.run("web009", "true")
    finally:
        refusing.close()
    assert (ok.label, ok.stdout) == ("ok", f"web001\nr2306\n{fleet.by_name['web001'].root}")
    assert (failed.label, failed.stderr) == ("exit 3", "broke")
    assert (killed.label, killed.reason) == ("exit -1", "killed by signal KILL")
    assert (refused.label, refused.reason) == ("refused", "connection refused")


async def test_real_sshd_with_a_wrong_known_hosts_entry_refuses_that_host_only(make_real_fleet):
    fleet = make_real_fleet(hosts=3)
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    lines = fleet.known_hosts.read_text().splitlines()
    lines = [f"{line.split(' ', 1)[0]} {stranger}" if line.startswith("[web002]") else line for line in lines]
    fleet.known_hosts.write_text("\n".join(lines) + "\n")
    async with pool_for(fleet) as pool:
        results = await pool.run_many(["web001", "web002", "web003"], "touch reached")
    assert [r.label for r in results] == ["ok", "hostkey", "ok"]
    assert "host key not verifiable" in results[1].reason
    assert not (fleet.by_name["web002"].root / "reached").exists()


def test_controlroom_run_on_real_sshd_hosts(make_real_fleet):
    fleet = make_real_fleet(hosts=3)
    res = run_cli("run", "cat REVISION", cwd=fleet.dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("3 hosts: 3 ok")
