"""Hosts, groups, colos, host patterns and phase planning.

``web[001:150].example.com`` expands to 150 zero-padded names; several ranges in one name multiply out.
Phases are planned deterministically: named hosts first, then inventory order.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
from dataclasses import dataclass, field


class PatternError(ValueError):
    """A bad host pattern or phase plan; key is the dotted config key it came from."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class HostOverride:
    address: str | None = None
    port: int | None = None
    user: str | None = None
    colo: str | None = None


@dataclass(frozen=True)
class Host:
    """One machine. address/port/user None mean: let ~/.ssh/config and the defaults decide."""

    name: str
    address: str | None = None
    port: int | None = None
    user: str | None = None
    group: str = "default"
    colo: str | None = None


@dataclass(frozen=True)
class Found:
    """A host as one source wrote it: controlroom.toml, an Ansible inventory or an ssh_config.

    where is the line that names the host ("FILE:LINE"); said holds, for each of address/port/user it gives, the
    line that gave it (a group's vars, an ssh_config Host block), so a disagreement names both lines.
    """

    name: str
    where: str
    address: str | None = None
    port: int | None = None
    user: str | None = None
    groups: tuple[str, ...] = ()
    colo: str | None = None
    said: dict[str, str] = field(default_factory=dict, compare=False)
    # what ssh itself will use for this host (an ssh_config's Host entry): compared with the other sources but
    # left out of the Host, so the host is reached by its name and the rest of its Host block (ProxyJump,
    # IdentityFile) applies as it does for ssh
    by_ssh: bool = False


@dataclass(frozen=True)
class Merged:
    """Every source's hosts as one inventory: hosts in order (the first source's first), groups ('all' holds
    every host), where each host was written, and one line per host two sources disagree on."""

    hosts: list[Host]
    groups: dict[str, tuple[str, ...]]
    origins: dict[str, tuple[str, ...]]
    problems: list[str]


def merge(sources: list[list[Found]]) -> Merged:
    """Merge the hosts of several sources. A host named twice is one host in the groups of both; given different
    addresses, ports or users it is a problem naming both lines (a value only one side gives is taken)."""
    order: list[str] = []
    merged: dict[str, dict] = {}
    origins: dict[str, list[str]] = {}
    groups: dict[str, dict[str, None]] = {}  # members in the order they joined, a dict to look them up
    problems: list[str] = []
    for found in sources:
        for f in found:
            m = merged.get(f.name)
            if m is None:
                if len(order) >= MAX_PATTERN_HOSTS:
                    problems.append(f"{f.where}: the inventory names more than {MAX_PATTERN_HOSTS} hosts; at most "
                                    f"{MAX_PATTERN_HOSTS} in all")
                    return Merged([], {"all": ()}, {}, problems)
                m = merged[f.name] = {"address": None, "port": None, "user": None, "colo": None, "group": None,
                                      "said": {}}
                order.append(f.name)
                origins[f.name] = []
            if f.where not in origins[f.name]:
                origins[f.name].append(f.where)
            for key in ("address", "port", "user", "colo"):
                value = getattr(f, key)
                if value is None:
                    continue
                if m[key] is None:
                    if f.by_ssh:
                        continue
                    m[key] = value
                    m["said"][key] = f.said.get(key, f.where)
                elif m[key] != value:
                    here = f.said.get(key, f.where)
                    problems.append(f"{m['said'][key]}: host {f.name!r} has {key} {m[key]!r} here but {value!r} "
                                    f"in {here}")
            for g in f.groups:
                if g == "all":
                    continue
                groups.setdefault(g, {})[f.name] = None
                if m["group"] is None:
                    m["group"] = g
    hosts = [
        Host(name=n, address=merged[n]["address"], port=merged[n]["port"], user=merged[n]["user"],
             group=merged[n]["group"] or "default", colo=merged[n]["colo"])
        for n in order
    ]
    position = {n: i for i, n in enumerate(order)}
    out = {g: tuple(sorted(v, key=position.__getitem__)) for g, v in groups.items()}
    out["all"] = tuple(order)
    return Merged(hosts, out, {n: tuple(w) for n, w in origins.items()}, problems)


def origin_lines(names: tuple[str, ...], origins: dict[str, tuple[str, ...]], base: str = "") -> list[str]:
    """Where the hosts are written, a line per run of hosts written on the same lines (a range is one line):
    ``web001 .. web150 (150 hosts)  controlroom.toml:2``; file names under base are shown relative to it."""
    prefix = base.rstrip("/") + "/" if base else ""

    def short(where: str) -> str:
        return where[len(prefix):] if prefix and where.startswith(prefix) else where

    out: list[str] = []
    i = 0
    while i < len(names):
        where = origins.get(names[i], ())
        j = i + 1
        while j < len(names) and origins.get(names[j], ()) == where:
            j += 1
        label = names[i] if j - i == 1 else f"{names[i]} .. {names[j - 1]} ({j - i} hosts)"
        out.append(f"{label:<32} {', '.join(short(w) for w in where)}")
        i = j
    return out


@dataclass(frozen=True)
class PhaseSpec:
    """One [[phase]] as written in the config; plan_phases turns it into hosts."""

    name: str
    size: int | str | None  # a count, "N%", or None for "the rest"
    hosts: tuple[str, ...] = ()  # named hosts (a canary), patterns or groups
    parallel: int | None = None
    max_failed: int | str = 0  # a count or "N%" of the phase
    bake: float = 0.0
    gate: tuple[str, ...] = ()
    auto: bool = True  # start by itself once the previous phase is done and its gate holds


@dataclass(frozen=True)
class Phase:
    """One planned phase: its hosts in the order they start."""

    name: str
    hosts: tuple[str, ...]
    parallel: int
    max_failed: int
    bake: float
    gate: tuple[str, ...]
    auto: bool


MAX_PATTERN_HOSTS = 100_000  # hosts in a pattern and in the whole inventory: a typo like web[1:100000000]
# must not eat the bastion's memory
_RANGE = re.compile(r"\[(\d+):(\d+)\]")


def expand(pattern: str, key: str = "inventory.hosts") -> list[str]:
    """Expand ``web[001:150].example.com``; a name without ranges expands to itself."""
    if not pattern:
        raise PatternError(key, "empty host name")
    if any(c.isspace() for c in pattern):
        raise PatternError(key, f"bad host name {pattern!r}: no spaces allowed")
    parts = _RANGE.split(pattern)
    # parts: literal, start, end, literal, start, end, ..., literal
    literals = parts[0::3]
    ranges = []
    for start, end in zip(parts[1::3], parts[2::3], strict=True):
        a, b = int(start), int(end)
        if a > b:
            raise PatternError(
                key, f"range [{start}:{end}] in {pattern!r} runs backwards; write [{end}:{start}]"
            )
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        ranges.append((a, b, width))
    # the cap holds for the whole pattern: web[1:999]x[1:999] names 998,001 hosts though each range is small
    count = math.prod(b - a + 1 for a, b, _ in ranges)
    if count > MAX_PATTERN_HOSTS:
        raise PatternError(key, f"{pattern!r} names {count} hosts; at most {MAX_PATTERN_HOSTS} per pattern")
    for lit in literals:
        if any(c in lit for c in "[]"):
            raise PatternError(key, f"cannot read {pattern!r}: a range is written [001:150]")
        if lit and not re.fullmatch(r"[A-Za-z0-9._-]+", lit):
            raise PatternError(key, f"bad host name {pattern!r}: use letters, digits, '.', '-' and '_'")
    out = []
    for combo in itertools.product(*([str(n).zfill(w) for n in range(a, b + 1)] for a, b, w in ranges)):
        name = literals[0]
        for num, lit in zip(combo, literals[1:], strict=True):
            name += num + lit
        out.append(name)
    return out


def build_hosts(
    patterns: list[tuple[str, str, str | None, str]], overrides: dict[str, HostOverride]
) -> tuple[list[Host], dict[str, tuple[str, ...]]]:
    """(pattern, group, colo, key) -> hosts in inventory order, and groups by name ('all' holds every host)."""
    hosts: list[Host] = []
    where: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for pattern, group, colo, key in patterns:
        names = expand(pattern, key)
        if len(hosts) + len(names) > MAX_PATTERN_HOSTS:
            raise PatternError(
                key,
                f"the inventory names more than {MAX_PATTERN_HOSTS} hosts (at {pattern!r}); at most "
                f"{MAX_PATTERN_HOSTS} in all",
            )
        for name in names:
            if name in where:
                raise PatternError(key, f"duplicate host {name!r} (also in {where[name]})")
            where[name] = key
            o = overrides.get(name, HostOverride())
            hosts.append(
                Host(name=name, address=o.address, port=o.port, user=o.user, group=group, colo=o.colo or colo)
            )
            groups.setdefault(group, []).append(name)
    out = {g: tuple(v) for g, v in groups.items()}
    out["all"] = tuple(h.name for h in hosts)
    return hosts, out


def select(selector: str, names: tuple[str, ...], groups: dict[str, tuple[str, ...]]) -> list[str]:
    """Hosts matching a comma-separated list of group names, range patterns or shell globs, in inventory order.

    Raises ValueError naming the first part that matched nothing, or saying the selection is empty.
    A name or a range is looked up, not scanned for: only a glob (*, ?, [abc]) reads the whole inventory.
    """
    parts = [p.strip() for p in selector.split(",")]
    if not any(parts):
        raise ValueError(
            f"{selector!r} names no host: give a group, a pattern like web[001:010] or names a,b"
        )
    known = set(names)
    by_short: dict[str, list[str]] = {}
    for n in names:
        by_short.setdefault(n.split(".", 1)[0], []).append(n)
    wanted: set[str] = set()
    for part in parts:
        if not part:
            continue
        if part in groups:
            wanted.update(groups[part])
            continue
        matched: set[str] = set()
        try:
            candidates = expand(part, "--hosts") if _RANGE.search(part) else [part]
        except PatternError as e:
            raise ValueError(str(e)) from None
        for c in candidates:
            if _GLOB.search(c):
                matched.update(fnmatch.filter(names, c))
                continue
            if c in known:
                matched.add(c)
            # short names match a host's first label: web001 selects web001.example.com
            matched.update(by_short.get(c, ()))
        if not matched:
            raise ValueError(f"{part!r} matches no host or group (groups: {', '.join(sorted(groups))})")
        wanted |= matched
    return [n for n in names if n in wanted]


_GLOB = re.compile(r"[*?\[]")


def _size(value: int | str | None, total: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    pct = float(value.rstrip("%"))
    return max(1, math.ceil(total * pct / 100))


def plan_phases(specs: tuple[PhaseSpec, ...] | list[PhaseSpec], hosts: list[Host], groups) -> list[Phase]:
    """Split the fleet into phases: counts or percentages of the whole fleet, the last phase taking the rest."""
    names = tuple(h.name for h in hosts)
    total = len(names)
    taken: set[str] = set()
    named_by_phase: list[list[str]] = []
    for i, spec in enumerate(specs):
        chosen: list[str] = []
        for sel in spec.hosts:
            try:
                found = select(sel, names, groups)
            except ValueError as e:
                raise PatternError(f"phase[{i}].hosts", str(e)) from None
            for n in found:
                if n in taken:
                    raise PatternError(
                        f"phase[{i}].hosts", f"host {n!r} is already named by an earlier phase"
                    )
                taken.add(n)
                chosen.append(n)
        named_by_phase.append(chosen)
    pool = [n for n in names if n not in taken]
    phases: list[Phase] = []
    remaining = total
    for i, spec in enumerate(specs):
        last = i == len(specs) - 1
        named = named_by_phase[i]
        want = _size(spec.size, total)
        if want is None:
            want = len(named) if (named and not last) else None
        if want is None and not last:
            raise PatternError(
                f"phase[{i}]",
                f'phase {spec.name!r} needs a size (a count or "N%") or hosts; only the last phase may leave '
                "size out to take the rest",
            )
        if last:
            rest = len(pool)
            if want is not None and isinstance(spec.size, int) and want > len(named) + rest:
                raise PatternError(
                    f"phase[{i}].size",
                    f"the last phase ({spec.name!r}) asks for {want} hosts but only {len(named) + rest} are left; "
                    "leave size out to take the rest",
                )
            if want is not None and want < len(named) + rest:
                left = len(named) + rest - want
                raise PatternError(
                    f"phase[{i}].size",
                    f"the last phase ({spec.name!r}) gets {want} of the {len(named) + rest} remaining hosts and "
                    f'would leave {left} out; give it size = "100%" or leave size out to take the rest',
                )
            members = named + pool
            pool = []
        else:
            if want < len(named):
                raise PatternError(
                    f"phase[{i}].size", f"size {want} is smaller than the {len(named)} hosts the phase names"
                )
            extra = want - len(named)
            if extra > len(pool) or (remaining - want) <= 0:
                raise PatternError(
                    f"phase[{i}].size",
                    f"phase {spec.name!r} needs {want} hosts but only {remaining} are left, so the phases "
                    f"after it would be empty; the fleet has {total} hosts",
                )
            members = named + pool[:extra]
            pool = pool[extra:]
        remaining -= len(members)
        if not members:
            raise PatternError(f"phase[{i}]", f"phase {spec.name!r} has no hosts left; the fleet has {total}")
        max_failed = spec.max_failed
        if isinstance(max_failed, str):
            max_failed = math.floor(len(members) * float(max_failed.rstrip("%")) / 100)
        parallel = spec.parallel or len(members)
        phases.append(
            Phase(
                name=spec.name,
                hosts=tuple(members),
                parallel=min(parallel, len(members)),
                max_failed=max_failed,
                bake=spec.bake,
                gate=spec.gate,
                auto=spec.auto,
            )
        )
    return phases
