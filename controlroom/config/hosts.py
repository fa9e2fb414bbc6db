"""[inventory]: the hosts controlroom.toml writes (hosts, groups, [inventory.host.NAME]) merged with those of the
Ansible inventories (config/ansible.py) and the ssh_config (config/sshconfig.py) it names.

Each file is read to its first problem, a line naming the file and line; a host two files disagree on is a line
naming both. With any problem there are no hosts (a plan of half the fleet would only add noise).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from controlroom.config import ansible, sshconfig
from controlroom.config.inventory import Found, Host, HostOverride, PatternError, build_hosts, expand, merge
from controlroom.config.reader import Reader, kind_of, unreadable
from controlroom.config.settings import InventorySettings
from controlroom.core.errors import ConfigError

KEYS = ["hosts", "groups", "host", "ssh", "ansible", "ssh_config"]
_GROUP = ["hosts", "colo"]
_OVERRIDE = ["address", "port", "user", "colo"]
PORT = "must be a TCP port from 1 to 65535, got {v}"


@dataclass
class Inventory:
    """What [inventory] gives: hosts and groups (hosts None when a bad value was noted: hosts from a half-read
    inventory are only noise), where each host is written, and the notes of the files read."""

    hosts: list[Host] | None = None
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    origins: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: InventorySettings = field(default_factory=InventorySettings)


def read_inventory(r: Reader, data: dict, base: Path) -> Inventory:
    """The hosts of controlroom.toml merged with those of the Ansible inventories and the ssh_config it names."""
    if "inventory" not in data:
        raise r.fail("inventory", "missing: the config needs an [inventory] table with hosts")
    inv = r.table(data["inventory"], "inventory", KEYS)
    before, files_before = r.count(), len(r.file_errors)
    patterns: list[tuple[str, str, str | None, str]] = []  # (pattern, group, colo, dotted key)
    for pat in r.strings(inv, "inventory", "hosts"):
        patterns.append((pat, "default", None, "inventory.hosts"))
    groups_raw = inv.get("groups", {})
    r.table(groups_raw, "inventory.groups", list(groups_raw) if isinstance(groups_raw, dict) else [])
    for gname, g in groups_raw.items():
        d = f"inventory.groups.{gname}"
        if gname == "all":
            # 'all' always means every host (--hosts all); a group of that name would be silently replaced
            r.bad(d, "the group name 'all' is reserved for every host; pick another name")
            continue
        with r.section():
            r.table(g, d, _GROUP)
            colo = r.string(g, d, "colo")
            gpats = r.strings(g, d, "hosts")
            if not gpats:
                r.bad(f"{d}.hosts", "a group needs at least one host pattern")
            for pat in gpats:
                patterns.append((pat, gname, colo, f"{d}.hosts"))
    overrides: dict[str, HostOverride] = {}
    host_raw = inv.get("host", {})
    r.table(host_raw, "inventory.host", list(host_raw) if isinstance(host_raw, dict) else [])
    for hname, o in host_raw.items():
        d = f"inventory.host.{hname}"
        with r.section():
            r.table(o, d, _OVERRIDE)
            overrides[hname] = HostOverride(
                address=r.string(o, d, "address"),
                port=r.integer(o, d, "port", None, minimum=1, maximum=65535, why=PORT),
                user=r.string(o, d, "user"),
                colo=r.string(o, d, "colo"),
            )
    settings = _inventory_files(r, inv, base)
    if not patterns and not settings.ansible and settings.ssh_config is None and r.count() == before:
        raise r.fail("inventory", "no hosts: give inventory.hosts, at least one [inventory.groups.NAME], "
                                  "inventory.ansible or inventory.ssh_config")
    if r.count() != before:
        return Inventory(settings=settings)
    try:
        toml_hosts, toml_groups = build_hosts(patterns, overrides) if patterns else ([], {"all": ()})
    except PatternError as e:
        raise r.fail(e.key, str(e)) from None

    def at(dotted: str) -> str:
        line = r.lines.line(dotted)
        return f"{r.path}:{line}" if line else str(r.path)

    key_of: dict[str, str] = {}
    for pattern, _, _, key in patterns:  # build_hosts took them: each expands, no name twice
        for name in expand(pattern, key):
            key_of[name] = key
    # the other files, each read to its first problem; any problem means no hosts (only noise would follow)
    others: list[list[Found]] = []
    notes: list[str] = []
    for path in settings.ansible:
        if unreadable(path):  # noted already
            continue
        try:
            others.append(ansible.read(path))
        except ConfigError as e:
            r.errors.append(e)
    if settings.ssh_config is not None and not unreadable(settings.ssh_config):
        try:
            got = sshconfig.read(settings.ssh_config)
            others.append(got.hosts)
            notes += got.notes
        except ConfigError as e:
            r.errors.append(e)
    if r.count() != before or len(r.file_errors) != files_before:
        return Inventory(settings=settings, notes=notes)
    from_others = {f.name for found in others for f in found}
    known = set(toml_groups["all"]) | from_others
    for name in overrides:
        if name not in known:
            names = list(toml_groups["all"]) + sorted(from_others)
            close = difflib.get_close_matches(name, names, n=1) if len(known) <= 10_000 else []
            hint = f"; did you mean '{close[0]}'?" if close else ""
            r.bad(f"inventory.host.{name}", f"not a host in the inventory{hint}")
    if not others:  # controlroom.toml alone: its hosts as build_hosts made them
        origins = {h.name: (at(key_of[h.name]),) for h in toml_hosts}
        return Inventory(toml_hosts, toml_groups, origins, notes, settings)

    def said(name: str) -> dict[str, str]:
        o = overrides.get(name)
        if o is None:
            return {}
        return {k: at(f"inventory.host.{name}.{k}") for k in ("address", "port", "user") if getattr(o, k) is not None}

    mine = [Found(name=h.name, where=at(key_of[h.name]), address=h.address, port=h.port, user=h.user,
                  groups=(h.group,), colo=h.colo, said=said(h.name)) for h in toml_hosts]
    # an [inventory.host.NAME] for a host another file names: what controlroom.toml says of it
    mine += [Found(name=n, where=at(f"inventory.host.{n}"), address=o.address, port=o.port, user=o.user,
                   colo=o.colo, said=said(n)) for n, o in overrides.items() if n in from_others and n not in key_of]
    merged = merge([mine, *others])
    for problem in merged.problems:
        r.errors.append(ConfigError(problem))
    if merged.problems:
        return Inventory(settings=settings, notes=notes)
    if not merged.hosts:
        raise r.fail("inventory", "no hosts: the inventories it names name none")
    return Inventory(merged.hosts, merged.groups, merged.origins, notes, settings)


def _inventory_files(r: Reader, inv: dict, base: Path) -> InventorySettings:
    """[inventory] ansible and ssh_config: the files, each one checked to exist (a missing one noted)."""
    paths = tuple(r.resolve(base, x) for x in r.strings(inv, "inventory", "ansible"))
    for p in paths:
        if why := unreadable(p):
            r.missing_file("inventory.ansible", f"Ansible inventory {why}: {p}")
    ssh_path: Path | None = None
    if "ssh_config" in inv:
        v = inv["ssh_config"]
        if v is True:
            ssh_path = Path("~/.ssh/config").expanduser()
        elif isinstance(v, str) and v.strip():
            ssh_path = r.resolve(base, v)
        elif v is not False:
            r.bad("inventory.ssh_config", f"must be true, false or the path of an ssh_config, got {kind_of(v)}")
        if ssh_path is not None and (why := unreadable(ssh_path)):
            r.missing_file("inventory.ssh_config", f"ssh config {why}: {ssh_path}")
    return InventorySettings(ansible=paths, ssh_config=ssh_path)
