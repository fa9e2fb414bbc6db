"""[inventory] ansible: Ansible inventories in the forms Ansible's documentation ("How to build your inventory")
writes them, read as controlroom hosts and groups and merged with controlroom.toml's own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controlroom.config import ansible, config
from controlroom.core.errors import ConfigError, ConfigErrors
from tests.conftest import run_cli
from tests.waiting import wait_for

# the documentation's first example, INI and YAML
DOC_INI = """\
mail.example.com

[webservers]
foo.example.com
bar.example.com

[dbservers]
one.example.com
two.example.com
three.example.com
"""

DOC_YAML = """\
ungrouped:
  hosts:
    mail.example.com:
webservers:
  hosts:
    foo.example.com:
    bar.example.com:
dbservers:
  hosts:
    one.example.com:
    two.example.com:
    three.example.com:
"""

# the documentation's groups of groups (prod/test by children), in YAML
DOC_CHILDREN_YAML = """\
all:
  hosts:
    mail.example.com:
  children:
    webservers:
      hosts:
        foo.example.com:
        bar.example.com:
    dbservers:
      hosts:
        one.example.com:
        two.example.com:
        three.example.com:
    east:
      hosts:
        foo.example.com:
        one.example.com:
        two.example.com:
    west:
      hosts:
        bar.example.com:
        three.example.com:
    prod:
      children:
        east:
    test:
      children:
        west:
"""

# the documentation's inheriting variable values, INI: :children and :vars
DOC_CHILDREN_INI = """\
[atlanta]
host1
host2

[raleigh]
host2
host3

[southeast:children]
atlanta
raleigh

[southeast:vars]
some_server=foo.southeast.example.com
halon_system_timeout=30
self_destruct_countdown=60
escape_pods=2
ansible_user=deploy

[usa:children]
southeast
northeast
southwest
northwest
"""

# the documentation's connection variables, host aliases, ports and ranges
DOC_HOSTS_INI = """\
[targets]
localhost              ansible_connection=local
other1.example.com     ansible_connection=ssh        ansible_user=myuser
other2.example.com     ansible_connection=ssh        ansible_user=myotheruser

[aliased]
jumper ansible_port=5555 ansible_host=192.0.2.50
badwolf.example.com:5309

[webservers]
www[01:50].example.com

[databases]
db-[a:f].example.com

[stepped]
www[01:50:2].example.com
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def found(tmp_path: Path, name: str, text: str) -> dict[str, ansible.Found]:
    return {f.name: f for f in ansible.read(write(tmp_path, name, text))}


def load(tmp_path: Path, body: str) -> config.Config:
    (tmp_path / "known_hosts").touch()
    path = tmp_path / "controlroom.toml"
    path.write_text(textwrap.dedent(body) + '\n[inventory.ssh]\nknown_hosts = "known_hosts"\n')
    return config.load(path)


def errors_of(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ConfigErrors) as e:
        load(tmp_path, body)
    return [str(x) for x in e.value.errors]


# --------------------------------------------------------------------------------------------- the two forms


@pytest.mark.parametrize("name,text", [("hosts.ini", DOC_INI), ("hosts.yml", DOC_YAML)])
def test_the_documentations_first_inventory_gives_its_hosts_and_groups_in_both_forms(tmp_path, name, text):
    hosts = found(tmp_path, name, text)
    assert list(hosts) == ["mail.example.com", "foo.example.com", "bar.example.com", "one.example.com",
                           "two.example.com", "three.example.com"]
    assert hosts["mail.example.com"].groups == ("ungrouped",)
    assert hosts["foo.example.com"].groups == ("webservers",)
    assert hosts["three.example.com"].groups == ("dbservers",)
    assert hosts["two.example.com"].where == f"{tmp_path / name}:{9 if name.endswith('ini') else 11}"


def test_yaml_children_give_a_host_every_group_above_it(tmp_path):
    hosts = found(tmp_path, "hosts.yaml", DOC_CHILDREN_YAML)
    assert len(hosts) == 6
    assert hosts["foo.example.com"].groups == ("webservers", "east", "prod")
    assert hosts["three.example.com"].groups == ("dbservers", "west", "test")
    assert hosts["mail.example.com"].groups == ("ungrouped",)


def test_ini_children_and_group_vars_reach_the_hosts_of_the_child_groups(tmp_path):
    hosts = found(tmp_path, "hosts", DOC_CHILDREN_INI)
    assert list(hosts) == ["host1", "host2", "host3"]
    assert hosts["host2"].groups == ("atlanta", "southeast", "usa", "raleigh")
    assert {h.user for h in hosts.values()} == {"deploy"}  # [southeast:vars] ansible_user
    assert hosts["host1"].said["user"] == f"{tmp_path / 'hosts'}:18"
    assert hosts["host1"].address is None and hosts["host1"].port is None


def test_connection_variables_host_port_and_ranges_as_the_documentation_writes_them(tmp_path):
    hosts = found(tmp_path, "inventory.ini", DOC_HOSTS_INI)
    assert hosts["other1.example.com"].user == "myuser"
    assert hosts["other2.example.com"].user == "myotheruser"
    assert (hosts["jumper"].address, hosts["jumper"].port) == ("192.0.2.50", 5555)
    assert hosts["badwolf.example.com"].port == 5309
    www = [n for n in hosts if n.startswith("www")]
    assert www[:2] == ["www01.example.com", "www02.example.com"] and www[49] == "www50.example.com"
    assert len(www) == 50  # the stepped range names hosts already named: one host each, in both groups
    assert hosts["www03.example.com"].groups == ("webservers", "stepped")
    assert hosts["www02.example.com"].groups == ("webservers",)
    assert [n for n in hosts if n.startswith("db-")] == [f"db-{c}.example.com" for c in "abcdef"]


def test_yaml_host_and_group_vars_map_to_address_port_and_user(tmp_path):
    hosts = found(tmp_path, "inv.yml", """\
        all:
          vars:
            ansible_user: ops
          children:
            webservers:
              vars:
                ansible_port: 2222
              hosts:
                web[1:3]:
                  ansible_host: 10.0.0.7
                jumper:
                  ansible_port: 5555
                  ansible_host: 192.0.2.50
        """)
    assert [(h.name, h.address, h.port, h.user) for h in hosts.values()] == [
        ("web1", "10.0.0.7", 2222, "ops"), ("web2", "10.0.0.7", 2222, "ops"), ("web3", "10.0.0.7", 2222, "ops"),
        ("jumper", "192.0.2.50", 5555, "ops"),
    ]


def test_a_child_groups_vars_win_over_its_parents_and_a_hosts_own_over_both(tmp_path):
    hosts = found(tmp_path, "hosts", """\
        [all:vars]
        ansible_user=everyone
        [web]
        web1
        web2 ansible_user=me
        [prod:children]
        web
        [prod:vars]
        ansible_user=produser
        [web:vars]
        ansible_user=webuser
        """)
    assert hosts["web1"].user == "webuser"
    assert hosts["web2"].user == "me"


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("text,line,says", [
    ("[web]\nweb[1:x].example.com\n", 2, "unknown range form [1:x]"),
    ("[web]\nweb[1-5]\n", 2, "unknown range form [1-5]"),
    ("[web]\nweb[01:5]\n", 2, "same width"),
    ("[web]\nweb[5:1]\n", 2, "runs backwards"),
    ("[web\nweb1\n", 1, "cannot read section header"),
    ("[web:foo]\nweb1\n", 1, "unknown type 'foo'"),
    ("[web]\nweb1 ansible_port=http\n", 2, "ansible_port must be a TCP port"),
    ("[web]\nweb1 oops\n", 2, "expected key=value"),
    ("[web:vars]\njust a line\n", 2, "expected key=value"),
    ("[web]\nweb1 ansible_host=a\nweb1 ansible_host=b\n", 3, "'b' here but 'a' at line 2"),
    ("[web]\nbad\x1b[2Jname\n", 2, "unknown range form"),
    ("[a:children]\nb\n[b:children]\na\n[b]\nh1\n", 1, "form a circle"),
])
def test_a_bad_ini_line_is_one_line_naming_the_file_and_line(tmp_path, text, line, says):
    p = tmp_path / "hosts.ini"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        ansible.read(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: "), msg
    assert says in msg
    assert "\n" not in msg and "\x1b" not in msg


@pytest.mark.parametrize("text,line,says", [
    ("all:\n  hosts:\n    web1:\n  childs:\n    x:\n", 4, "unknown key 'childs'"),
    ("all:\n  hosts:\n    web1:\n      ansible_port: [1, 2]\n", 4, "expected a single value"),
    ("all:\n  hosts:\n    web1\n  x: [\n", 5, "invalid YAML"),
    ("all:\n  hosts: [web1, web2]\n", 2, "must be a mapping"),
    ("all:\n  hosts:\n    web1:\n      ansible_port: 70000\n", 4, "from 1 to 65535"),
])
def test_a_bad_yaml_inventory_is_one_line_naming_the_file_and_line(tmp_path, text, line, says):
    p = tmp_path / "hosts.yml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        ansible.read(p)
    assert str(e.value).startswith(f"{p}:{line}: "), str(e.value)
    assert says in str(e.value)


@pytest.mark.parametrize("value", ["!!python/object/apply:os.getcwd []", "!!python/name:os.system"])
def test_yaml_is_read_safely_a_python_tag_is_refused_as_yaml(tmp_path, value):
    p = write(tmp_path, "hosts.yml", f"all:\n  hosts:\n    web1:\n      ansible_host: {value}\n")
    with pytest.raises(ConfigError) as e:
        ansible.read(p)
    assert str(e.value).startswith(f"{p}:4: ")


def test_an_inventory_larger_than_the_bound_is_not_read(tmp_path):
    p = tmp_path / "hosts.ini"
    with p.open("wb") as fh:
        fh.truncate(ansible.MAX_BYTES + 1)
    with pytest.raises(ConfigError) as e:
        ansible.read(p)
    assert str(e.value) == f"{p}: the inventory is larger than 10 MB; not read"


# --------------------------------------------------------------------------------------------- in the config


def test_ansible_hosts_merge_with_the_configs_own_and_their_groups_select_in_phases(tmp_path):
    write(tmp_path, "inventory.ini", DOC_INI)
    cfg = load(tmp_path, """\
        [inventory]
        hosts = ["canary1"]
        ansible = "inventory.ini"

        [[phase]]
        name = "canary"
        hosts = ["canary1", "mail.example.com"]

        [[phase]]
        name = "web"
        hosts = ["webservers"]

        [[phase]]
        name = "rest"
        """)
    assert [h.name for h in cfg.hosts] == ["canary1", "mail.example.com", "foo.example.com", "bar.example.com",
                                           "one.example.com", "two.example.com", "three.example.com"]
    assert cfg.groups["webservers"] == ("foo.example.com", "bar.example.com")
    assert [p.hosts for p in cfg.phases] == [("canary1", "mail.example.com"),
                                             ("foo.example.com", "bar.example.com"),
                                             ("one.example.com", "two.example.com", "three.example.com")]
    assert cfg.origins["canary1"] == (f"{tmp_path / 'controlroom.toml'}:2",)
    assert cfg.origins["foo.example.com"] == (f"{tmp_path / 'inventory.ini'}:4",)
    assert cfg.host("foo.example.com").group == "webservers"


def test_a_host_in_both_with_the_same_address_is_one_host_written_in_both(tmp_path):
    write(tmp_path, "inventory.ini", "[web]\nweb1 ansible_host=10.0.0.1 ansible_port=2222\nweb2\n")
    cfg = load(tmp_path, """\
        [inventory]
        ansible = "inventory.ini"
        [inventory.groups.canary]
        hosts = ["web1"]
        """)
    assert [h.name for h in cfg.hosts] == ["web1", "web2"]
    assert (cfg.host("web1").address, cfg.host("web1").port) == ("10.0.0.1", 2222)
    assert cfg.groups["canary"] == ("web1",) and cfg.groups["web"] == ("web1", "web2")
    assert cfg.origins["web1"] == (f"{tmp_path / 'controlroom.toml'}:4", f"{tmp_path / 'inventory.ini'}:2")


def test_a_host_twice_with_different_addresses_is_one_line_naming_both_files_and_lines(tmp_path):
    write(tmp_path, "inventory.ini", "[web]\nweb1 ansible_host=10.0.0.2\n")
    errs = errors_of(tmp_path, """\
        [inventory]
        hosts = ["web1"]
        ansible = "inventory.ini"
        [inventory.host.web1]
        address = "10.0.0.1"
        """)
    assert errs == [f"{tmp_path / 'controlroom.toml'}:5: host 'web1' has address '10.0.0.1' here but '10.0.0.2' "
                    f"in {tmp_path / 'inventory.ini'}:2"]


def test_an_override_in_the_config_may_give_what_the_inventory_leaves_out(tmp_path):
    write(tmp_path, "inventory.ini", "[web]\nweb1\n")
    cfg = load(tmp_path, """\
        [inventory]
        ansible = "inventory.ini"
        [inventory.host.web1]
        colo = "ams"
        port = 2200
        """)
    assert (cfg.host("web1").port, cfg.host("web1").colo, cfg.host("web1").group) == (2200, "ams", "web")


def test_a_missing_inventory_is_one_line_naming_the_config_line(tmp_path):
    errs = errors_of(tmp_path, '[inventory]\nhosts = ["a"]\nansible = "nope.ini"\n')
    assert errs == [f"{tmp_path / 'controlroom.toml'}:3: inventory.ansible: Ansible inventory file not found: "
                    f"{tmp_path / 'nope.ini'}"]


def test_a_bad_line_in_the_inventory_is_what_load_raises(tmp_path):
    write(tmp_path, "inventory.ini", "[web]\nweb[1:b]\n")
    errs = errors_of(tmp_path, '[inventory]\nansible = "inventory.ini"\n')
    assert errs == [f"{tmp_path / 'inventory.ini'}:2: unknown range form [1:b] in 'web[1:b]': write [01:50], [a:f] "
                    "or [1:50:2]"]


def test_check_says_where_each_host_came_from(tmp_path):
    write(tmp_path, "inventory.yml", DOC_YAML)
    load(tmp_path, '[inventory]\nhosts = ["canary1"]\nansible = "inventory.yml"\n')
    res = run_cli("check", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert "  canary1                          controlroom.toml:2" in out
    assert "  mail.example.com                 inventory.yml:3" in out
    assert "  webservers           2 hosts" in out


def test_check_shows_a_bad_inventory_line_and_exits_2(tmp_path):
    write(tmp_path, "inventory.ini", "[web]\nweb1 ansible_port=0\n")
    load_err = errors_of(tmp_path, '[inventory]\nansible = "inventory.ini"\n')
    res = run_cli("check", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"controlroom: {load_err[0]}"]


# --------------------------------------------------------------------------------------------- end to end


def test_the_demo_fleet_described_by_an_ansible_inventory_takes_a_deploy(tmp_path):
    """`controlroom fleet --inventory ansible` writes inventory.ini beside its config, the config names it, and a
    deploy through it reaches every host the inventory lists."""
    directory = tmp_path / "fleet"
    log = tmp_path / "fleet.out"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "fleet", "--hosts", "4", "--dir",
                                 str(directory), "--inventory", "ansible"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "fleet: ready" in log.read_text(), 60, "the fleet to be ready", proc=proc)
        inventory = (directory / "inventory.ini").read_text().splitlines()
        ports = json.loads((directory / "fleet.json").read_text())["hosts"]
        assert inventory[1] == "[web]"
        assert inventory[2:6] == [f"web{i:03d} ansible_host=127.0.0.1 ansible_port={ports[f'web{i:03d}']}"
                                  for i in range(1, 5)]
        toml = (directory / "controlroom.toml").read_text()
        assert 'ansible = "inventory.ini"' in toml and "[inventory.host]" not in toml and "hosts = [" not in toml
        check = run_cli("check", cwd=directory)
        assert check.returncode == 0, check.stderr
        assert "  web001 .. web004 (4 hosts)" not in check.stdout  # one line each: the inventory's own lines
        assert "  web004                           inventory.ini:6" in check.stdout.splitlines()
        res = run_cli("deploy", "--yes", cwd=directory, env={"SUDO_USER": "mygrant"})
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.splitlines()[-1].startswith("DEPLOY OK r2307: 4 of 4 hosts in ")
        assert {(directory / "hosts" / f"web{i:03d}" / "REVISION").read_text().strip() for i in range(1, 5)} == {
            "r2307"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
