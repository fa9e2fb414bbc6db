"""The controlroom.toml and ssh_config that target a fleet on 127.0.0.1: the simulated one (demo/fleet.py) and
the real-sshd test bed (tests/realsshd.py) write theirs with the same functions, so both run the same deploy."""

from __future__ import annotations

import json
import os
from pathlib import Path

BAKE_ENV = "CONTROLROOM_DEMO_BAKE"  # the canary's bake in a fleet with metrics ("10s" unless set; at most 20 s)


def write_ssh_config(directory: Path, hosts: list[tuple[str, int, str | None]]) -> None:
    """DIR/ssh_config mapping each (name, port, user) host to 127.0.0.1:port, for `ssh -F`."""
    lines = ["# written by `controlroom fleet`: each simulated host's address and port", ""]
    for name, port, user in hosts:
        lines += [f"Host {name}", "    HostName 127.0.0.1", f"    Port {port}"]
        lines += [f"    User {user}"] if user else []
        lines.append("")
    (directory / "ssh_config").write_text("\n".join(lines))


def write_ansible_inventory(path: Path, hosts: list[tuple[str, int, str | None]], group: str) -> None:
    """An Ansible INI inventory of the (name, port, user) hosts on 127.0.0.1, all in one group, as Ansible's
    documentation writes one: ansible_host and ansible_port on each host's line, ansible_user when it has one."""
    lines = [f"# Written by `controlroom fleet --inventory ansible`: {len(hosts)} simulated hosts on 127.0.0.1",
             f"[{group}]"]
    for name, port, user in hosts:
        lines.append(f"{name} ansible_host=127.0.0.1 ansible_port={port}" + (f" ansible_user={user}" if user else ""))
    lines += ["", f"[{group}:vars]", "ansible_connection=ssh", ""]
    path.write_text("\n".join(lines))


def write_fleet_config(path: Path, hosts: list[tuple[str, int, str | None]], prefix: str, width: int,
                       metrics_url: str | None = None, stage: bool = False, inventory: str = "toml") -> None:
    """The controlroom.toml that targets a fleet of (name, port, user) hosts on 127.0.0.1, named prefix001...

    One writer for the simulated fleet and the real-sshd test bed (tests/realsshd.py), so both run the same
    steps, health check, rollback and phases. A host's user, when given, overrides [inventory.ssh] user.
    With metrics_url (the simulated fleet's own Prometheus API), the config has [metrics] and a gate on the canary.
    With stage, [release] stage runs the demo repo's `make build` (a second or two), and a deploy needs it first.
    With inventory="ansible", the hosts are in an Ansible INI inventory beside the config (inventory.ini, the group
    named prefix) and the config names it as [inventory] ansible instead of listing them.
    """
    n = len(hosts)
    first, last = hosts[0][0], hosts[-1][0]
    pattern = f"{prefix}[{1:0{width}d}:{n:0{width}d}]" if n > 1 else first
    phases = demo_phases(n, gate=metrics_url is not None)
    # each host's port, given here rather than through ssh_config: asyncssh re-reads an ssh_config on every
    # connection, which for 150 Host blocks costs more CPU than the handshakes (bench/fanout.py)
    hosts_table = "[inventory.host]                   # where each simulated host listens\n" + "".join(
        f'{name} = {{ address = "127.0.0.1", port = {port}{f", user = {json.dumps(user)}" if user else ""} }}\n'
        for name, port, user in hosts
    )
    hosts_lines = f'hosts = ["{pattern}"]\n'
    if inventory == "ansible":
        write_ansible_inventory(path.parent / "inventory.ini", hosts, prefix)
        hosts_lines = 'ansible = "inventory.ini"          # the hosts, as an Ansible inventory (`controlroom fleet ' \
            '--inventory ansible`)\n'
        hosts_table = ""
    guards = 'guards = ["errors_5xx"]          # a failed gate on errors_5xx offers this kill switch first\n' \
        if metrics_url else ""
    stage_line = 'stage = "make build REV={revision}"      # `controlroom stage`, or S in the app\n' if stage else ""
    text = f'''# Written by `controlroom fleet` for a simulated fleet of {n} hosts ({first} .. {last}) on 127.0.0.1.
[inventory]
{hosts_lines}
[inventory.ssh]
user = "deploy"
known_hosts = "known_hosts"        # the fleet's own host keys; checking is always strict
identity_file = "client_key"
connect_timeout = 5
command_timeout = 30
keepalive_interval = 2
keepalive_count = 3

{hosts_table}
[release]
repo = "repo"
staged = "refs/heads/staging"
{stage_line}live_command = "cat REVISION 2>/dev/null || echo none"

[deploy]
steps = [
    "mkdir -p releases/{{revision}} && echo {{revision}} > releases/{{revision}}/REVISION",
    "ln -sfn releases/{{revision}} current && cp current/REVISION REVISION",
]
health = "test -s REVISION"
rollback = ["ln -sfn releases/{{previous}} current && echo {{previous}} > REVISION"]
step_timeout = 20
{phases}
[flags]
file = "flags.toml"                # in each host's home directory, as on a real fleet

[flags.new_search]
kind = "kill_switch"
description = "the new search backend; off sends searches to the old one"
default = "on"
{guards}
[flags.beehive]
kind = "kill_switch"
description = "the Beehive backend; off sheds its load"
default = "on"

[flags.enable_feature_video]
description = "video uploads"
default = "off"

[flags.photo_page_v2]
description = "the new photo page, for a share of the members"
default = "10%"
groups = ["staff"]

[state]
dir = "state"
'''
    if metrics_url:
        from controlroom.demo.metrics_sim import metrics_config

        text += metrics_config(metrics_url)
    path.write_text(text)


def demo_bake() -> str:
    """The canary's bake: $CONTROLROOM_DEMO_BAKE when it is a duration of at most 20 s, else "10s"."""
    from controlroom.config.reader import parse_duration

    value = os.environ.get(BAKE_ENV, "").strip()
    seconds = parse_duration(value) if value else None
    return value if seconds is not None and 0 < seconds <= 20 else "10s"


def demo_phases(n: int, gate: bool = False) -> str:
    """Three phases in the Flickr spirit: a canary of 2, 10% of the fleet, then the rest. With gate, the canary
    bakes (demo_bake) and must hold errors_5xx under 5% before stage 1; a failed check ends the bake at once."""
    gated = (f'bake = "{demo_bake()}"\ngate = ["errors_5xx < 5"]         # checked every interval while it bakes\n'
             if gate else "")
    if n >= 4:
        return '''
[[phase]]
name = "canary"
size = 2
auto = false                       # wait for the operator after the canary
''' + gated + '''

[[phase]]
name = "stage 1"
size = "10%"
max_failed = 1

[[phase]]
name = "stage 2"
size = "100%"
max_failed = "2%"
'''
    return '''
[[phase]]
name = "all"
'''
