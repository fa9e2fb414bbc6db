"""controlroom.toml -> frozen dataclasses, validated once at start.

Every problem is a ConfigError whose message is one line: ``file:line: dotted.key: what is wrong (what is allowed)``.
Nothing here touches a host; a config that fails to load never gets that far.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlroom.errors import ConfigError
from controlroom.inventory import Host, HostOverride, PatternError, Phase, build_hosts, plan_phases

ENV_VAR = "CONTROLROOM_CONFIG"
DEFAULT_NAME = "controlroom.toml"


# --------------------------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class SSHSettings:
    """Connection settings gathered once and shared by every connection."""

    known_hosts: Path
    user: str | None = None
    port: int | None = None
    identity_files: tuple[Path, ...] = ()
    config_files: tuple[Path, ...] = ()
    jump: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    max_parallel: int = 150
    max_startups: int = 50
    jump_max_startups: int = 10
    channels_per_connection: int = 8
    keepalive_interval: float = 5.0
    keepalive_count: int = 3


@dataclass(frozen=True)
class PhaseSpec:
    """One [[phase]] as written; inventory.plan_phases turns it into hosts."""

    name: str
    size: int | str | None  # a count, "N%", or None for "the rest"
    hosts: tuple[str, ...] = ()  # named hosts (a canary), patterns or groups
    parallel: int | None = None
    max_failed: int | str = 0  # a count or "N%" of the phase
    bake: float = 0.0
    gate: tuple[str, ...] = ()
    auto: bool = True  # start by itself once the previous phase is done and its gate holds


@dataclass(frozen=True)
class ReleaseSettings:
    repo: Path | None = None
    staged: str = "HEAD"
    live_command: str = "cat REVISION"


@dataclass(frozen=True)
class DeploySettings:
    steps: tuple[str, ...] = ()
    health: str | None = None
    rollback: tuple[str, ...] = ()
    step_timeout: float = 60.0
    revision: str | None = None


@dataclass(frozen=True)
class FlagSpec:
    name: str
    kind: str = "feature"  # "feature" or "kill_switch"
    description: str = ""
    default: bool = False


@dataclass(frozen=True)
class FlagsSettings:
    file: str | None = None
    reload: str | None = None
    flags: tuple[FlagSpec, ...] = ()


@dataclass(frozen=True)
class SeriesSpec:
    name: str
    query: str
    max: float | None = None
    min: float | None = None


@dataclass(frozen=True)
class MetricsSettings:
    source: str | None = None
    url: str | None = None
    interval: float = 5.0
    series: tuple[SeriesSpec, ...] = ()


@dataclass(frozen=True)
class NotifySettings:
    webhook: str | None = field(default=None, repr=False)  # a secret: never printed


@dataclass(frozen=True)
class StateSettings:
    dir: Path


@dataclass(frozen=True)
class Config:
    path: Path
    hosts: tuple[Host, ...]
    groups: dict[str, tuple[str, ...]]
    ssh: SSHSettings
    phase_specs: tuple[PhaseSpec, ...]
    phases: tuple[Phase, ...]
    release: ReleaseSettings
    deploy: DeploySettings
    flags: FlagsSettings
    metrics: MetricsSettings
    notify: NotifySettings
    state: StateSettings

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


# --------------------------------------------------------------------------------------------- locating


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config, then $CONTROLROOM_CONFIG, then ./controlroom.toml."""
    if explicit:
        p = Path(explicit).expanduser()
        where = "--config"
    elif os.environ.get(ENV_VAR):
        p = Path(os.environ[ENV_VAR]).expanduser()
        where = f"${ENV_VAR}"
    else:
        p = Path.cwd() / DEFAULT_NAME
        where = "the current directory"
        if not p.exists():
            raise ConfigError(
                f"no {DEFAULT_NAME} in the current directory; pass --config FILE or set ${ENV_VAR}"
                " (or run `controlroom demo` for a simulated fleet)"
            )
    if not p.exists():
        raise ConfigError(f"{p}: config file not found (from {where})")
    if not p.is_file():
        raise ConfigError(f"{p}: not a file (from {where})")
    return p


class _Lines:
    """Maps dotted keys to the line that defines them; tomllib does not keep positions."""

    _header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _key = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        arrays: dict[str, int] = {}
        prefix = ""
        in_multiline = None
        for no, line in enumerate(text.splitlines(), start=1):
            if in_multiline:
                if in_multiline in line:
                    in_multiline = None
                continue
            m = self._header.match(line)
            if m:
                name = ".".join(_unquote(p) for p in _split_dotted(m.group(2)))
                if m.group(1) == "[[":
                    arrays[name] = arrays.get(name, -1) + 1
                    name = f"{name}[{arrays[name]}]"
                else:
                    # a sub-table of the latest array element: [phase.x] after [[phase]]
                    for arr, idx in arrays.items():
                        if name.startswith(arr + "."):
                            name = f"{arr}[{idx}]" + name[len(arr) :]
                prefix = name
                self.lines.setdefault(prefix, no)
                continue
            m = self._key.match(line)
            if m:
                key = ".".join(_unquote(p) for p in _split_dotted(m.group(1)))
                full = f"{prefix}.{key}" if prefix else key
                self.lines.setdefault(full, no)
                rest = line[m.end() :]
                for q in ('"""', "'''"):
                    if rest.count(q) == 1:
                        in_multiline = q

    def line(self, dotted: str) -> int | None:
        parts = dotted
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            if "." not in parts and "[" not in parts:
                break
            cut = max(parts.rfind("."), parts.rfind("["))
            parts = parts[:cut]
        return None


def _split_dotted(s: str) -> list[str]:
    out, cur, quote = [], "", None
    for ch in s:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            cur += ch
        elif ch == ".":
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


# --------------------------------------------------------------------------------------------- reading


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: str) -> float | None:
    """'90s', '2m', '1h', '1m30s' -> seconds; None if not a duration."""
    m = _DURATION.match(value.strip())
    if not m or not any(m.groups()):
        return None
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


class _Reader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)

    def fail(self, dotted: str, message: str) -> ConfigError:
        line = self.lines.line(dotted)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {dotted}: {message}")

    def table(self, value: Any, dotted: str, allowed: list[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(dotted, f"must be a table, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise self.fail(
                    f"{dotted}.{key}" if dotted else key,
                    f"unknown key{hint} (allowed: {', '.join(allowed)})",
                )
        return value

    def string(self, t: dict, dotted: str, key: str, default: Any = None, required: bool = False) -> Any:
        if key not in t:
            if required:
                raise self.fail(dotted, f"missing required key '{key}'")
            return default
        v = t[key]
        if not isinstance(v, str):
            raise self.fail(f"{dotted}.{key}", f"must be a string, got {_kind(v)}")
        if required and not v.strip():
            raise self.fail(f"{dotted}.{key}", "must not be empty")
        return v

    def strings(self, t: dict, dotted: str, key: str, default: tuple = ()) -> tuple[str, ...]:
        if key not in t:
            return default
        v = t[key]
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list):
            raise self.fail(f"{dotted}.{key}", f"must be a list of strings, got {_kind(v)}")
        for x in v:
            if not isinstance(x, str):
                raise self.fail(f"{dotted}.{key}", f"must be a list of strings, got a list holding {_kind(x)} ({x!r})")
        return tuple(v)

    def integer(self, t: dict, dotted: str, key: str, default: Any, minimum: int = 1) -> Any:
        if key not in t:
            return default
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(f"{dotted}.{key}", f"must be a whole number, got {_kind(v)}")
        if v < minimum:
            raise self.fail(f"{dotted}.{key}", f"must be at least {minimum}, got {v}")
        return v

    def seconds(self, t: dict, dotted: str, key: str, default: float, allow_zero: bool = False) -> float:
        if key not in t:
            return default
        v = t[key]
        if isinstance(v, str):
            parsed = parse_duration(v)
            if parsed is None:
                raise self.fail(
                    f"{dotted}.{key}", f"must be seconds or a duration like \"90s\", \"2m\", \"1h\", got {v!r}"
                )
            v = parsed
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(f"{dotted}.{key}", f"must be a number of seconds, got {_kind(v)}")
        if not math.isfinite(v):
            raise self.fail(f"{dotted}.{key}", f"must be a finite number of seconds, got {v}")
        if v < 0 or (v == 0 and not allow_zero):
            raise self.fail(
                f"{dotted}.{key}", f"must be {'zero or more' if allow_zero else 'more than zero'} seconds, got {v}"
            )
        return float(v)

    def number(self, t: dict, dotted: str, key: str) -> float | None:
        if key not in t:
            return None
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(f"{dotted}.{key}", f"must be a number, got {_kind(v)}")
        return float(v)

    def boolean(self, t: dict, dotted: str, key: str, default: bool) -> bool:
        if key not in t:
            return default
        v = t[key]
        if not isinstance(v, bool):
            raise self.fail(f"{dotted}.{key}", f"must be true or false, got {_kind(v)}")
        return v

    def count_or_percent(self, t: dict, dotted: str, key: str, default: Any, minimum: int) -> Any:
        if key not in t:
            return default
        v = t[key]
        if isinstance(v, bool):
            raise self.fail(f"{dotted}.{key}", f'must be a count or a percentage like "10%", got {_kind(v)}')
        if isinstance(v, int):
            if v < minimum:
                raise self.fail(f"{dotted}.{key}", f"must be at least {minimum}, got {v}")
            return v
        if isinstance(v, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*%\s*", v):
            pct = float(v.strip().rstrip("%"))
            if pct > 100:
                raise self.fail(f"{dotted}.{key}", f"must be at most 100%, got {v}")
            if pct <= 0 and minimum > 0:
                raise self.fail(f"{dotted}.{key}", f"must be more than 0%, got {v}")
            return f"{pct:g}%"
        raise self.fail(f"{dotted}.{key}", f'must be a count or a percentage like "10%", got {v!r}')

    def resolve(self, base: Path, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)


def _kind(v: Any) -> str:
    return {
        bool: "a boolean",
        int: "a whole number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(v), type(v).__name__)


# --------------------------------------------------------------------------------------------- loading

_TOP = ["inventory", "phase", "release", "deploy", "flags", "metrics", "notify", "state"]
_INVENTORY = ["hosts", "groups", "host", "ssh"]
_GROUP = ["hosts", "colo"]
_OVERRIDE = ["address", "port", "user", "colo"]
_SSH = [
    "user",
    "port",
    "known_hosts",
    "identity_file",
    "config",
    "jump",
    "connect_timeout",
    "command_timeout",
    "max_parallel",
    "max_startups",
    "jump_max_startups",
    "channels_per_connection",
    "keepalive_interval",
    "keepalive_count",
]
_PHASE = ["name", "size", "hosts", "parallel", "max_failed", "bake", "gate", "auto"]
_RELEASE = ["repo", "staged", "live_command"]
_DEPLOY = ["steps", "health", "rollback", "step_timeout", "revision"]
_FLAGS = ["file", "reload"]
_FLAG = ["kind", "description", "default"]
_METRICS = ["source", "url", "interval", "series"]
_SERIES = ["query", "max", "min"]
_NOTIFY = ["webhook"]
_STATE = ["dir"]

_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>|==|!=)\s*(-?\d+(\.\d+)?)\s*$")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "controlroom"


def load(path: str | os.PathLike[str] | None = None, *, require_known_hosts: bool = True) -> Config:
    """Find, read and validate the config. Raises ConfigError (exit 2) with a one-line message."""
    p = find_config(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            msg = msg[: m.start()].strip()
            raise ConfigError(f"{p}:{m.group(1)}:{m.group(2)}: invalid TOML: {msg}") from None
        raise ConfigError(f"{p}: invalid TOML: {msg}") from None
    return _build(p, text, data, require_known_hosts=require_known_hosts)


def _build(p: Path, text: str, data: dict, *, require_known_hosts: bool) -> Config:
    r = _Reader(p, text)
    base = p.parent.resolve()
    r.table(data, "", _TOP)
    if "inventory" not in data:
        raise r.fail("inventory", "missing: the config needs an [inventory] table with hosts")

    # inventory ---------------------------------------------------------------------------------
    inv = r.table(data["inventory"], "inventory", _INVENTORY)
    patterns: list[tuple[str, str, str | None, str]] = []  # (pattern, group, colo, dotted key)
    for pat in r.strings(inv, "inventory", "hosts"):
        patterns.append((pat, "default", None, "inventory.hosts"))
    groups_raw = inv.get("groups", {})
    r.table(groups_raw, "inventory.groups", list(groups_raw) if isinstance(groups_raw, dict) else [])
    for gname, g in groups_raw.items():
        d = f"inventory.groups.{gname}"
        if gname == "all":
            # 'all' always means every host (--hosts all); a group of that name would be silently replaced
            raise r.fail(d, "the group name 'all' is reserved for every host; pick another name")
        r.table(g, d, _GROUP)
        colo = r.string(g, d, "colo")
        gpats = r.strings(g, d, "hosts")
        if not gpats:
            raise r.fail(f"{d}.hosts", "a group needs at least one host pattern")
        for pat in gpats:
            patterns.append((pat, gname, colo, f"{d}.hosts"))
    overrides: dict[str, HostOverride] = {}
    host_raw = inv.get("host", {})
    r.table(host_raw, "inventory.host", list(host_raw) if isinstance(host_raw, dict) else [])
    for hname, o in host_raw.items():
        d = f"inventory.host.{hname}"
        r.table(o, d, _OVERRIDE)
        overrides[hname] = HostOverride(
            address=r.string(o, d, "address"),
            port=r.integer(o, d, "port", None, minimum=1),
            user=r.string(o, d, "user"),
            colo=r.string(o, d, "colo"),
        )
        if overrides[hname].port is not None and overrides[hname].port > 65535:
            raise r.fail(f"{d}.port", f"must be a TCP port from 1 to 65535, got {overrides[hname].port}")
    if not patterns:
        raise r.fail("inventory", "no hosts: give inventory.hosts or at least one [inventory.groups.NAME]")
    try:
        hosts, groups = build_hosts(patterns, overrides)
    except PatternError as e:
        raise r.fail(e.key, str(e)) from None
    unknown_overrides = [n for n in overrides if n not in groups["all"]]
    if unknown_overrides:
        close = difflib.get_close_matches(unknown_overrides[0], groups["all"], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise r.fail(f"inventory.host.{unknown_overrides[0]}", f"not a host in the inventory{hint}")

    # ssh -----------------------------------------------------------------------------------------
    s = r.table(inv.get("ssh", {}), "inventory.ssh", _SSH)
    d = "inventory.ssh"
    kh = r.resolve(base, r.string(s, d, "known_hosts", "~/.ssh/known_hosts"))
    if require_known_hosts and not kh.is_file():
        raise r.fail(
            f"{d}.known_hosts",
            f"file not found: {kh} (host keys are always checked; add the fleet's keys with ssh-keyscan)",
        )
    idents = tuple(r.resolve(base, x) for x in r.strings(s, d, "identity_file"))
    for i in idents:
        if not i.is_file():
            raise r.fail(f"{d}.identity_file", f"file not found: {i}")
    cfgs = tuple(r.resolve(base, x) for x in r.strings(s, d, "config"))
    for c in cfgs:
        if not c.is_file():
            raise r.fail(f"{d}.config", f"ssh config file not found: {c}")
    port = r.integer(s, d, "port", None)
    if port is not None and port > 65535:
        raise r.fail(f"{d}.port", f"must be a TCP port from 1 to 65535, got {port}")
    ssh = SSHSettings(
        known_hosts=kh,
        user=r.string(s, d, "user"),
        port=port,
        identity_files=idents,
        config_files=cfgs,
        jump=r.string(s, d, "jump"),
        connect_timeout=r.seconds(s, d, "connect_timeout", 10.0),
        command_timeout=r.seconds(s, d, "command_timeout", 60.0),
        max_parallel=r.integer(s, d, "max_parallel", 150),
        max_startups=r.integer(s, d, "max_startups", 50),
        jump_max_startups=r.integer(s, d, "jump_max_startups", 10),
        channels_per_connection=r.integer(s, d, "channels_per_connection", 8),
        keepalive_interval=r.seconds(s, d, "keepalive_interval", 5.0),
        keepalive_count=r.integer(s, d, "keepalive_count", 3),
    )
    if ssh.channels_per_connection > 10:
        raise r.fail(
            f"{d}.channels_per_connection",
            f"must be at most 10 (sshd's default MaxSessions), got {ssh.channels_per_connection}",
        )

    # phases --------------------------------------------------------------------------------------
    phases_raw = data.get("phase", [])
    if not isinstance(phases_raw, list):
        raise r.fail("phase", "must be an array of tables: write each phase as [[phase]]")
    specs: list[PhaseSpec] = []
    seen_names: set[str] = set()
    for i, ph in enumerate(phases_raw):
        d = f"phase[{i}]"
        r.table(ph, d, _PHASE)
        name = r.string(ph, d, "name", f"stage {i + 1}")
        if name in seen_names:
            raise r.fail(f"{d}.name", f"duplicate phase name {name!r}")
        seen_names.add(name)
        named = r.strings(ph, d, "hosts")
        size = r.count_or_percent(ph, d, "size", None, minimum=1)
        for g in r.strings(ph, d, "gate"):
            if not _GATE.match(g):
                raise r.fail(f"{d}.gate", f"cannot read gate {g!r}: write it as 'SERIES < NUMBER' (<, <=, >, >=, ==, !=)")
        specs.append(
            PhaseSpec(
                name=name,
                size=size,
                hosts=named,
                parallel=r.integer(ph, d, "parallel", None),
                max_failed=r.count_or_percent(ph, d, "max_failed", 0, minimum=0),
                bake=r.seconds(ph, d, "bake", 0.0, allow_zero=True),
                gate=r.strings(ph, d, "gate"),
                auto=r.boolean(ph, d, "auto", True),
            )
        )
    if not specs:
        specs.append(PhaseSpec(name="all", size=None))
    try:
        phases = plan_phases(specs, hosts, groups)
    except PatternError as e:
        raise r.fail(e.key, str(e)) from None

    # release / deploy ------------------------------------------------------------------------------
    rel = r.table(data.get("release", {}), "release", _RELEASE)
    repo = r.string(rel, "release", "repo")
    release = ReleaseSettings(
        repo=r.resolve(base, repo) if repo else None,
        staged=r.string(rel, "release", "staged", "HEAD"),
        live_command=r.string(rel, "release", "live_command", "cat REVISION"),
    )
    dep = r.table(data.get("deploy", {}), "deploy", _DEPLOY)
    steps = r.strings(dep, "deploy", "steps")
    for st in steps:
        _check_placeholders(r, "deploy.steps", st)
    rollback = r.strings(dep, "deploy", "rollback")
    for st in rollback:
        _check_placeholders(r, "deploy.rollback", st)
    deploy = DeploySettings(
        steps=steps,
        health=r.string(dep, "deploy", "health"),
        rollback=rollback,
        step_timeout=r.seconds(dep, "deploy", "step_timeout", 60.0),
        revision=r.string(dep, "deploy", "revision"),
    )

    # flags ---------------------------------------------------------------------------------------------
    fl = data.get("flags", {})
    if not isinstance(fl, dict):
        raise r.fail("flags", f"must be a table, got {_kind(fl)}")
    flag_specs: list[FlagSpec] = []
    for key, val in fl.items():
        if key in _FLAGS:
            continue
        d = f"flags.{key}"
        if not isinstance(val, dict):
            close = difflib.get_close_matches(key, _FLAGS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise r.fail(d, f"unknown key{hint} (allowed: {', '.join(_FLAGS)}, or a [flags.NAME] table)")
        r.table(val, d, _FLAG)
        kind = r.string(val, d, "kind", "feature")
        if kind not in ("feature", "kill_switch"):
            raise r.fail(f"{d}.kind", f"must be \"feature\" or \"kill_switch\", got {kind!r}")
        flag_specs.append(
            FlagSpec(
                name=key,
                kind=kind,
                description=r.string(val, d, "description", ""),
                default=r.boolean(val, d, "default", False),
            )
        )
    flags = FlagsSettings(
        file=r.string(fl, "flags", "file"), reload=r.string(fl, "flags", "reload"), flags=tuple(flag_specs)
    )

    # metrics ---------------------------------------------------------------------------------------
    me = r.table(data.get("metrics", {}), "metrics", _METRICS)
    source = r.string(me, "metrics", "source")
    if source is not None and source not in ("prometheus", "graphite", "json"):
        raise r.fail("metrics.source", f'must be "prometheus", "graphite" or "json", got {source!r}')
    url = r.string(me, "metrics", "url")
    if url is not None and not re.match(r"^https?://", url):
        raise r.fail("metrics.url", f"must start with http:// or https://, got {url!r}")
    series_raw = me.get("series", {})
    r.table(series_raw, "metrics.series", list(series_raw) if isinstance(series_raw, dict) else [])
    series = []
    for sname, sv in series_raw.items():
        d = f"metrics.series.{sname}"
        r.table(sv, d, _SERIES)
        series.append(
            SeriesSpec(
                name=sname,
                query=r.string(sv, d, "query", required=True),
                max=r.number(sv, d, "max"),
                min=r.number(sv, d, "min"),
            )
        )
    metrics = MetricsSettings(
        source=source, url=url, interval=r.seconds(me, "metrics", "interval", 5.0), series=tuple(series)
    )
    known_series = {x.name for x in series}
    for i, sp in enumerate(specs):
        for g in sp.gate:
            m = _GATE.match(g)
            if m and m.group(1) not in known_series:
                close = difflib.get_close_matches(m.group(1), sorted(known_series), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise r.fail(
                    f"phase[{i}].gate",
                    f"gate {g!r} names unknown series {m.group(1)!r}{hint} (define it under [metrics.series])",
                )

    # notify / state ----------------------------------------------------------------------------------
    no = r.table(data.get("notify", {}), "notify", _NOTIFY)
    webhook = r.string(no, "notify", "webhook")
    if webhook is not None and not re.match(r"^https?://", webhook):
        raise r.fail("notify.webhook", "must start with http:// or https:// (value not shown: it is a secret)")
    st = r.table(data.get("state", {}), "state", _STATE)
    sdir = r.string(st, "state", "dir")
    state = StateSettings(dir=r.resolve(base, sdir) if sdir else default_state_dir())

    return Config(
        path=p,
        hosts=tuple(hosts),
        groups=groups,
        ssh=ssh,
        phase_specs=tuple(specs),
        phases=tuple(phases),
        release=release,
        deploy=deploy,
        flags=flags,
        metrics=metrics,
        notify=NotifySettings(webhook=webhook),
        state=state,
    )


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _check_placeholders(r: _Reader, dotted: str, step: str) -> None:
    for m in _PLACEHOLDER.finditer(step):
        if m.group(1) not in ("revision", "previous", "host"):
            raise r.fail(
                dotted, f"unknown placeholder {{{m.group(1)}}} in {step!r} (allowed: {{revision}}, {{previous}}, {{host}})"
            )
