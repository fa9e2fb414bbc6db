"""[inventory] ssh_config: the Host entries of ~/.ssh/config (as ssh_config(5) writes them) as controlroom hosts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from controlroom.config import config, sshconfig
from controlroom.core.errors import ConfigError, ConfigErrors
from tests.conftest import run_cli

USER_CONFIG = """\
# as a person keeps it
User alice

Host bastion
    HostName bastion.example.com
    Port 2222

Host web1 web2
    HostName %h.internal.example.com

Host db1
    HostName=10.0.0.5
    User "postgres"

Match host *.corp exec "test -f /etc/corp"
    User corp

Host *.example.com !bastion.example.com
    User bob

Host *
    Port 22
    ServerAliveInterval 30

Include config.d/*
"""


def ssh_dir() -> Path:
    d = Path("~/.ssh").expanduser()  # the test's own HOME (tests/conftest.py)
    d.mkdir(parents=True, exist_ok=True)
    return d


def load(tmp_path: Path, body: str) -> config.Config:
    (tmp_path / "known_hosts").touch()
    path = tmp_path / "controlroom.toml"
    path.write_text(textwrap.dedent(body) + '\n[inventory.ssh]\nknown_hosts = "known_hosts"\n')
    return config.load(path)


def test_host_entries_without_wildcards_are_hosts_with_what_ssh_would_use():
    d = ssh_dir()
    (d / "config").write_text(USER_CONFIG)
    (d / "config.d").mkdir()
    (d / "config.d" / "lab").write_text("Host lab1\n  HostName 192.0.2.9\n  Port 2200\n")
    got = sshconfig.read(d / "config")
    hosts = {h.name: (h.address, h.port, h.user) for h in got.hosts}
    assert hosts == {
        "bastion": ("bastion.example.com", 2222, "alice"),
        "web1": ("web1.internal.example.com", 22, "alice"),
        "web2": ("web2.internal.example.com", 22, "alice"),
        "db1": ("10.0.0.5", 22, "alice"),  # the first User wins: the one before any Host
        "lab1": ("192.0.2.9", 22, "alice"),  # Host * came first: its Port wins, as in ssh
    }
    assert got.notes == [f"{d / 'config'}:15: Match block skipped (controlroom reads Host entries only)"]
    bastion = next(h for h in got.hosts if h.name == "bastion")
    assert bastion.where == f"{d / 'config'}:4" and bastion.said["port"] == f"{d / 'config'}:6"
    assert bastion.groups == ("ssh_config",)


def test_a_wildcard_block_gives_values_and_a_negated_name_is_left_out(tmp_path):
    p = tmp_path / "ssh_config"
    p.write_text("Host app1 app2\n  HostName %h.example.com\nHost *.example.com !app2.example.com\n  User bob\n"
                 "Host app2\n  User carol\n")
    hosts = {h.name: (h.address, h.user) for h in sshconfig.read(p).hosts}
    # matching is on the name given to ssh (app1), as ssh_config(5) does before canonicalisation
    assert hosts == {"app1": ("app1.example.com", None), "app2": ("app2.example.com", "carol")}


def test_include_nests_and_a_missing_include_is_a_note(tmp_path):
    (tmp_path / "a").write_text(f"Include {tmp_path / 'b'}\nInclude nothing-here\nHost one\n")
    (tmp_path / "b").write_text("Host two\n  Port 2022\n")
    got = sshconfig.read(tmp_path / "a")
    assert [(h.name, h.port) for h in got.hosts] == [("two", 2022), ("one", None)]
    assert got.notes == [f"{tmp_path / 'a'}:2: Include 'nothing-here' matched no file"]


def test_an_include_circle_stops_with_one_line(tmp_path):
    (tmp_path / "a").write_text("Include b\n")
    (tmp_path / "b").write_text("Include a\n")
    with pytest.raises(ConfigError) as e:
        sshconfig.read(tmp_path / "a")
    assert "nested more than 16 deep" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text,line,says", [
    ("Host web1\n  Port ssh\n", 2, "Port must be a TCP port"),
    ("Host\n", 1, "Host needs at least one name"),
    ("Host web1\n  HostName \"unclosed\n", 2, "No closing quotation"),
    ("Host web1\n  =oops\n", 2, "cannot read"),
    ("Host web1\n  User \"a\x1b]0;owned\x07\"\n", 2, "User must be one word of printable text, got 'a^[]0;owned^G'"),
])
def test_a_bad_line_is_one_line_naming_the_file_and_line(tmp_path, text, line, says):
    p = tmp_path / "ssh_config"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        sshconfig.read(p)
    assert str(e.value).startswith(f"{p}:{line}: ") and says in str(e.value), str(e.value)


def test_ssh_config_true_reads_the_users_config_and_merges_with_the_toml(tmp_path):
    (ssh_dir() / "config").write_text("Host web1\n  HostName 10.1.1.1\nHost jump\n  HostName 10.1.1.2\n")
    cfg = load(tmp_path, '[inventory]\nhosts = ["web1", "web2"]\nssh_config = true\n')
    assert [h.name for h in cfg.hosts] == ["web1", "web2", "jump"]
    # reached by name: ssh (the pool) reads the HostName, and whatever else the Host block says, itself
    assert cfg.host("jump").address is None and cfg.host("web1").address is None
    assert cfg.host("web1").group == "default"
    assert cfg.groups["ssh_config"] == ("web1", "jump")
    assert cfg.origins["web1"] == (f"{tmp_path / 'controlroom.toml'}:2", f"{ssh_dir() / 'config'}:1")
    res = run_cli("check", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"  jump                             {ssh_dir() / 'config'}:3" in res.stdout.splitlines()


def test_ssh_config_true_without_the_file_is_one_line(tmp_path):
    with pytest.raises(ConfigErrors) as e:
        load(tmp_path, '[inventory]\nhosts = ["web1"]\nssh_config = true\n')
    assert [str(x) for x in e.value.errors] == [
        f"{tmp_path / 'controlroom.toml'}:3: inventory.ssh_config: ssh config file not found: {ssh_dir() / 'config'}"
    ]


def test_a_port_the_toml_and_the_ssh_config_disagree_on_names_both_lines(tmp_path):
    p = tmp_path / "ssh_config"
    p.write_text("Host web1\n  Port 2201\n")
    with pytest.raises(ConfigErrors) as e:
        load(tmp_path, '[inventory]\nhosts = ["web1"]\nssh_config = "ssh_config"\n[inventory.host.web1]\nport = 2200\n')
    assert [str(x) for x in e.value.errors] == [
        f"{tmp_path / 'controlroom.toml'}:5: host 'web1' has port 2200 here but 2201 in {p}:2"
    ]


def test_the_simulated_fleet_reached_through_its_ssh_config_alone(make_fleet):
    """A config naming no host but `ssh_config = "ssh_config"` (the fleet's own, each Host with its HostName and
    Port): every host is found there and reached through it."""
    fleet = make_fleet(3)
    text = fleet.config_path.read_text()
    head, _, rest = text.partition("[inventory.ssh]")
    table = rest.index("[inventory.host]")
    after = rest.index("[release]")
    fleet.config_path.write_text('[inventory]\nssh_config = "ssh_config"\n\n[inventory.ssh]' + rest[:table]
                                 + rest[after:])
    cfg = config.load(fleet.config_path)
    assert [h.name for h in cfg.hosts] == ["web001", "web002", "web003"]
    assert cfg.ssh.config_files == (fleet.dir / "ssh_config",)
    res = run_cli("run", "true", cwd=fleet.dir)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("3 hosts: 3 ok")
