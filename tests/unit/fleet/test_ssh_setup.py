"""The operator's own ssh setup is honoured: ~/.ssh/config (User, Port, IdentityFile, ProxyJump), ssh-agent, and
the jump host of controlroom.toml. Real SSH to the simulated fleet; HOME is a fresh directory for every test."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.waiting import wait_for


def bare_config(fleet, tmp_path: Path, ssh_extra: str = "", hosts: str = "web[001:004]") -> Path:
    """Hosts by name only: no user, no key, no ports; the rest must come from the operator's ssh setup."""
    path = tmp_path / "bare.toml"
    path.write_text(textwrap.dedent(f'''\
        [inventory]
        hosts = ["{hosts}"]

        [inventory.ssh]
        known_hosts = "{fleet.known_hosts}"
        connect_timeout = 5
        ''') + ssh_extra)
    return path


def user_ssh_config(text: str) -> None:
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "config").write_text(textwrap.dedent(text))


def ports_of(fleet) -> str:
    return "".join(f"Host {h.name}\n    Port {h.port}\n" for h in fleet.hosts)


def test_user_port_and_identity_file_come_from_the_operators_ssh_config(make_fleet, tmp_path):
    fleet = make_fleet(4)
    user_ssh_config(f"""\
        Host web*
            HostName 127.0.0.1
            User deploy
            IdentityFile {fleet.dir / "client_key"}
        """ + ports_of(fleet))
    res = run_cli("run", "echo $HOSTNAME", "--config", str(bare_config(fleet, tmp_path)))
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1].startswith("4 hosts: 4 ok")
    for h in fleet.hosts:
        assert any(line.startswith(h.name) and line.endswith(h.name) for line in lines[:-1])
        assert h.users == {"deploy"}


def test_proxyjump_in_the_operators_ssh_config_goes_through_the_jump_host(make_fleet, tmp_path):
    fleet = make_fleet(4)
    user_ssh_config(f"""\
        Host web002 web003 web004
            ProxyJump web001
        Host web*
            HostName 127.0.0.1
            User deploy
            IdentityFile {fleet.dir / "client_key"}
        """ + ports_of(fleet))
    res = run_cli("run", "true", "--hosts", "web[002:004]", "--config", str(bare_config(fleet, tmp_path)))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1].startswith("3 hosts: 3 ok")
    assert fleet.by_name["web001"].tunnels == 3
    assert fleet.by_name["web001"].commands == 0  # it only carried the connections


def test_the_jump_host_of_controlroom_toml_carries_every_connection(make_fleet, tmp_path):
    fleet = make_fleet(5)
    extra = f'user = "deploy"\nidentity_file = "{fleet.dir / "client_key"}"\nconfig = "{fleet.dir / "ssh_config"}"\n'
    extra += 'jump = "web001"\n'
    cfg = bare_config(fleet, tmp_path, extra, hosts="web[002:005]")
    res = run_cli("run", "cat REVISION", "--config", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1].startswith("4 hosts: 4 ok")
    assert fleet.by_name["web001"].tunnels == 4


@pytest.mark.skipif(
    shutil.which("ssh-agent") is None and not os.environ.get("CI"),
    reason="needs OpenSSH's ssh-agent (.ci/run installs it, and in CI this test never skips)",
)
def test_a_key_held_by_ssh_agent_logs_in_and_without_the_agent_the_host_says_auth(make_fleet, tmp_path):
    fleet = make_fleet(3)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, 10, "ssh-agent to listen", proc=agent)
        env = {"SSH_AUTH_SOCK": str(sock)}
        added = subprocess.run(["ssh-add", str(fleet.dir / "client_key")], env={**os.environ, **env},
                               capture_output=True, text=True, timeout=10)
        assert added.returncode == 0, added.stderr
        ports = "".join(f'{h.name} = {{ address = "127.0.0.1", port = {h.port} }}\n' for h in fleet.hosts)
        cfg = bare_config(fleet, tmp_path, 'user = "deploy"\n\n[inventory.host]\n' + ports, hosts="web[001:003]")

        with_agent = run_cli("run", "true", "--config", str(cfg), env=env)
        assert with_agent.returncode == 0, with_agent.stdout + with_agent.stderr
        assert with_agent.stdout.splitlines()[-1].startswith("3 hosts: 3 ok")

        without = run_cli("run", "true", "--config", str(cfg))
        assert without.returncode == 1
        assert without.stdout.splitlines()[-1].startswith("3 hosts: 3 auth")

        # the agent goes away with the operator's session while a process that was given it (the server) lives on
        agent.terminate()
        agent.wait(5)
        sock.unlink(missing_ok=True)
        gone = run_cli("run", "true", "--config", str(cfg), env={**env, "USER": "alice"}, timeout=60)
        assert gone.returncode == 1, gone.stdout + gone.stderr
        assert gone.stdout.splitlines()[-1].startswith("3 hosts: 3 auth")
        assert all(f"the ssh-agent of alice's session is gone ({sock} no longer exists)" in line
                   for line in gone.stdout.splitlines()[:-1]), gone.stdout
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(5)


def test_a_dead_jump_host_is_named_in_every_result_behind_it(make_fleet, tmp_path):
    fleet = make_fleet(3, "web001=refuse")
    extra = f'user = "deploy"\nidentity_file = "{fleet.dir / "client_key"}"\nconfig = "{fleet.dir / "ssh_config"}"\n'
    extra += 'jump = "web001"\n'
    res = run_cli("run", "true", "--config", str(bare_config(fleet, tmp_path, extra, hosts="web[002:003]")))
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert lines[-1].startswith("2 hosts: 2 refused")
    assert all("via jump host web001: connection refused" in line for line in lines[:-1])
