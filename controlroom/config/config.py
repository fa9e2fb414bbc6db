"""controlroom.toml -> frozen dataclasses, validated once at start.

Every problem is a ConfigError whose message is one line: ``file:line: dotted.key: what is wrong (what is allowed)``.
A config is read to the end before anything is raised: ``load`` raises ConfigErrors holding every problem found
(bad values first, then missing files), whose first line is what a command shows; `controlroom check` shows them all.
Nothing here touches a host; a config that fails to load never gets that far.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from controlroom.config.flags import FlagsSettings, check_guards, read_flags
from controlroom.config.gates import HOW_TO_WRITE, Gate
from controlroom.config.hosts import PORT, Inventory, read_inventory
from controlroom.config.inventory import Host, PatternError, Phase, PhaseSpec, plan_phases
from controlroom.config.locate import DEFAULT_NAME, ENV_VAR, default_state_dir, find_config, state_dir
from controlroom.config.reader import PLACEHOLDERS, Reader, parse_duration, template_problem, unreadable
from controlroom.config.revision import revision_problem
from controlroom.config.settings import (
    DeploySettings,
    InventorySettings,
    MetricsSettings,
    NotifySettings,
    ReleaseSettings,
    SeriesSpec,
    SSHSettings,
    StateSettings,
)
from controlroom.core.errors import ConfigError

__all__ = ["Config", "load", "find_config", "ENV_VAR", "DEFAULT_NAME", "default_state_dir", "parse_duration",
           "template_problem", "PLACEHOLDERS"]


# --------------------------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class AccessSettings:
    """[access]: who may act through the server (operators) and who may watch (watchers, and the operators); a
    person in neither is refused at the socket. Empty operators: everyone who may watch acts; empty watchers:
    everyone who reaches the socket watches."""

    operators: tuple[str, ...] = ()
    watchers: tuple[str, ...] = ()


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
    access: AccessSettings = field(default_factory=AccessSettings)
    inventory: InventorySettings = field(default_factory=InventorySettings)
    # where each host is written: "FILE:LINE" of controlroom.toml, an Ansible inventory, an ssh_config (in order)
    origins: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what reading the inventories passed over (a Match block), one line each
    _by_name: dict[str, Host] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {h.name: h for h in self.hosts})

    def host(self, name: str) -> Host:
        """The host of that name (a dict lookup); KeyError if there is none."""
        return self._by_name[name]


# --------------------------------------------------------------------------------------------- loading

_TOP = ["inventory", "phase", "release", "deploy", "flags", "metrics", "notify", "state", "access"]
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
    "agent_forwarding",
]
_PHASE = ["name", "size", "hosts", "parallel", "max_failed", "bake", "gate", "auto"]
_RELEASE = ["repo", "staged", "live_command", "stage", "stage_host"]
_DEPLOY = ["steps", "health", "rollback", "step_timeout", "revision"]
_METRICS = ["source", "url", "interval", "window", "token_env", "series", "timeout"]
_SERIES = ["query", "unit", "max", "min", "split"]
_NOTIFY = ["webhook", "webhook_env", "irker", "command"]
_STATE = ["dir", "journal"]


def load(path: str | os.PathLike[str] | None = None, *, require_known_hosts: bool = True) -> Config:
    """Find, read and validate the config.

    Raises ConfigError (exit 2) with a one-line message; when the file parses, ConfigErrors with every problem.
    """
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
    r = Reader(p, text)
    base = p.parent.resolve()
    r.table(data, "", _TOP)
    hosts: list[Host] | None = None
    groups: dict[str, tuple[str, ...]] = {}
    read = Inventory()
    with r.section():
        read = read_inventory(r, data, base)
        hosts, groups = read.hosts, read.groups
    ssh = SSHSettings(known_hosts=Path("~/.ssh/known_hosts").expanduser())
    with r.section():
        ssh = _ssh(r, data.get("inventory", {}), base, require_known_hosts)
    extra = read.settings.ssh_config
    if extra is not None and extra != Path("~/.ssh/config").expanduser() and extra not in ssh.config_files:
        # [inventory] ssh_config's hosts are reached through that file, as ssh would reach them (the pool reads
        # ~/.ssh/config by itself)
        ssh = dataclasses.replace(ssh, config_files=(*ssh.config_files, extra))
    specs: list[PhaseSpec] = []
    phases: list[Phase] = []
    with r.section():
        before = r.count()
        specs = _phase_specs(r, data)
        if hosts is not None and r.count() == before:  # a plan from half-read phases would only add noise
            try:
                phases = plan_phases(specs, hosts, groups)
            except PatternError as e:
                raise r.fail(e.key, str(e)) from None
    release = ReleaseSettings()
    with r.section():
        release = _release(r, data, base)
    deploy = DeploySettings()
    with r.section():
        deploy = _deploy(r, data)
    flags = FlagsSettings()
    with r.section():
        flags = read_flags(r, data)
    metrics = MetricsSettings()
    with r.section():
        before = r.count()
        metrics = _metrics(r, data)
        if r.count() == before:  # gates and guards can name only series that were read
            _gates(r, specs, metrics)
            check_guards(r, flags, metrics)
    notify = NotifySettings()
    with r.section():
        no = r.table(data.get("notify", {}), "notify", _NOTIFY)
        webhook = r.string(no, "notify", "webhook")
        if webhook is not None and not re.match(r"^https?://", webhook):
            r.bad("notify.webhook", "must start with http:// or https:// (value not shown: it is a secret)")
        webhook_env = r.string(no, "notify", "webhook_env")
        if webhook_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", webhook_env):
            r.bad("notify.webhook_env", f"must be an environment variable's name, got {webhook_env!r}")
        irker = r.string(no, "notify", "irker")
        if irker is not None and not re.fullmatch(r"ircs?://[A-Za-z0-9.\-\[\]:]+(:\d+)?/[^\s]+", irker):
            r.bad("notify.irker", f"must look like irc://host/#channel, got {irker!r}")
        command = r.string(no, "notify", "command")
        notify = NotifySettings(webhook=webhook, webhook_env=webhook_env, irker=irker, command=command)
    state = StateSettings(dir=default_state_dir())
    with r.section():
        st = r.table(data.get("state", {}), "state", _STATE)
        sdir = r.string(st, "state", "dir")
        state = StateSettings(dir=state_dir(base, sdir),  # the rule locate.peek_state_dir follows too
                              journal=_journal_url(r, r.string(st, "state", "journal")))
    access = AccessSettings()
    with r.section():
        acc = r.table(data.get("access", {}), "access", ["operators", "watchers"])
        access = AccessSettings(operators=r.strings(acc, "access", "operators"),
                                watchers=r.strings(acc, "access", "watchers"))
    r.raise_errors()
    assert hosts is not None  # no error noted means the inventory was read
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
        notify=notify,
        state=state,
        access=access,
        inventory=read.settings,
        origins=read.origins,
        notes=tuple(read.notes),
    )


def _ssh(r: Reader, inv: Any, base: Path, require_known_hosts: bool) -> SSHSettings:
    d = "inventory.ssh"
    s = r.table(inv.get("ssh", {}) if isinstance(inv, dict) else {}, d, _SSH)
    kh = r.resolve(base, r.string(s, d, "known_hosts", "~/.ssh/known_hosts"))
    if require_known_hosts and (why := unreadable(kh)):
        r.missing_file(
            f"{d}.known_hosts",
            f"{why}: {kh} (host keys are always checked; add the fleet's keys with ssh-keyscan)",
        )
    idents = tuple(r.resolve(base, x) for x in r.strings(s, d, "identity_file"))
    for i in idents:
        if why := unreadable(i):
            r.missing_file(f"{d}.identity_file", f"{why}: {i}")
    cfgs = tuple(r.resolve(base, x) for x in r.strings(s, d, "config"))
    for c in cfgs:
        if why := unreadable(c):
            r.missing_file(f"{d}.config", f"ssh config {why}: {c}")
    return SSHSettings(
        known_hosts=kh,
        user=r.string(s, d, "user"),
        port=r.integer(s, d, "port", None, maximum=65535, why=PORT),
        identity_files=idents,
        config_files=cfgs,
        jump=r.string(s, d, "jump"),
        connect_timeout=r.seconds(s, d, "connect_timeout", 10.0),
        command_timeout=r.seconds(s, d, "command_timeout", 60.0),
        max_parallel=r.integer(s, d, "max_parallel", 150),
        max_startups=r.integer(s, d, "max_startups", 50),
        jump_max_startups=r.integer(s, d, "jump_max_startups", 10),
        channels_per_connection=r.integer(
            s,
            d,
            "channels_per_connection",
            8,
            maximum=10,
            why="must be at most 10 (sshd's default MaxSessions), got {v}",
        ),
        keepalive_interval=r.seconds(s, d, "keepalive_interval", 5.0, minimum=0.1),
        keepalive_count=r.integer(s, d, "keepalive_count", 3),
        agent_forwarding=r.boolean(s, d, "agent_forwarding", False),
    )


def _phase_specs(r: Reader, data: dict) -> list[PhaseSpec]:
    phases_raw = data.get("phase", [])
    if not isinstance(phases_raw, list):
        raise r.fail("phase", "must be an array of tables: write each phase as [[phase]]")
    specs: list[PhaseSpec] = []
    seen_names: set[str] = set()
    for i, ph in enumerate(phases_raw):
        d = f"phase[{i}]"
        with r.section():
            r.table(ph, d, _PHASE)
            name = r.string(ph, d, "name", f"stage {i + 1}")
            if not name.strip():
                r.bad(f"{d}.name", 'must not be empty (leave name out for "stage N")')
            elif not name.isprintable():
                r.bad(f"{d}.name", f"must be one line of printable text, got {name!r}")
            elif name in seen_names:
                r.bad(f"{d}.name", f"duplicate phase name {name!r}")
            seen_names.add(name)
            gates = r.strings(ph, d, "gate")
            for g in gates:
                if Gate.read(g) is None:
                    r.bad(f"{d}.gate", f"cannot read gate {g!r}: {HOW_TO_WRITE}")
            specs.append(
                PhaseSpec(
                    name=name,
                    size=r.count_or_percent(ph, d, "size", None, minimum=1),
                    hosts=r.strings(ph, d, "hosts"),
                    parallel=r.integer(ph, d, "parallel", None),
                    max_failed=r.count_or_percent(ph, d, "max_failed", 0, minimum=0),
                    bake=r.seconds(ph, d, "bake", 0.0, allow_zero=True),
                    gate=gates,
                    auto=r.boolean(ph, d, "auto", True),
                )
            )
    if not specs and not phases_raw:
        specs.append(PhaseSpec(name="all", size=None))
    return specs


def _release(r: Reader, data: dict, base: Path) -> ReleaseSettings:
    rel = r.table(data.get("release", {}), "release", _RELEASE)
    repo = r.string(rel, "release", "repo")
    staged = r.string(rel, "release", "staged", "HEAD")
    if (
        not staged.strip()
        or staged.startswith("-")
        or not staged.isprintable()
        or any(c.isspace() for c in staged)
    ):
        r.bad(
            "release.staged",
            f"must be a git ref like \"refs/heads/staging\" (no spaces, no leading '-'), got {staged!r}",
        )
    live = r.string(rel, "release", "live_command", "cat REVISION")
    if not live.strip():
        r.bad("release.live_command", "must not be empty: it is how a host says which revision it runs")
    # the engine runs live_command as written: it is not a template, so {revision} there would stay as text
    r.template("release.live_command", live, ())
    stage = r.string(rel, "release", "stage")
    if stage is not None:
        if not stage.strip():
            r.bad("release.stage", "must not be empty: leave it out when there is nothing to stage")
        r.template("release.stage", stage, ("revision",))
    stage_host = r.string(rel, "release", "stage_host")
    return ReleaseSettings(repo=r.resolve(base, repo) if repo else None, staged=staged, live_command=live,
                           stage=stage, stage_host=stage_host)


def _deploy(r: Reader, data: dict) -> DeploySettings:
    dep = r.table(data.get("deploy", {}), "deploy", _DEPLOY)
    steps = r.strings(dep, "deploy", "steps")
    if "steps" in dep and isinstance(dep["steps"], list) and not dep["steps"]:
        r.bad("deploy.steps", "is empty: list the commands of a deploy, or leave steps out")
    rollback = r.strings(dep, "deploy", "rollback")
    for key, commands in (("steps", steps), ("rollback", rollback)):
        for k, cmd in enumerate(commands, start=1):
            if not cmd.strip():
                r.bad(f"deploy.{key}", f"command {k} of {len(commands)} is empty")
            else:
                r.template(f"deploy.{key}", cmd, PLACEHOLDERS)
    health = r.string(dep, "deploy", "health")
    if health is not None:
        if not health.strip():
            r.bad("deploy.health", "is empty: give a command, or leave health out for no health check")
        else:
            r.template("deploy.health", health, PLACEHOLDERS)
    revision = r.string(dep, "deploy", "revision")
    if revision is not None:
        problem = revision_problem(revision)
        if problem:
            r.bad("deploy.revision", f"{problem} (a tag, branch or commit name like r2307)")
    return DeploySettings(
        steps=steps,
        health=health,
        rollback=rollback,
        step_timeout=r.seconds(dep, "deploy", "step_timeout", 60.0),
        revision=revision,
    )


def _metrics(r: Reader, data: dict) -> MetricsSettings:
    me = r.table(data.get("metrics", {}), "metrics", _METRICS)
    source = r.string(me, "metrics", "source")
    if source is not None and source not in ("prometheus", "graphite"):
        r.bad("metrics.source", f'must be "prometheus" or "graphite", got {source!r}')
    url = r.string(me, "metrics", "url")
    if url is not None and not re.match(r"^https?://", url):
        r.bad("metrics.url", f"must start with http:// or https://, got {url!r}")
    series_raw = me.get("series", {})
    r.table(series_raw, "metrics.series", list(series_raw) if isinstance(series_raw, dict) else [])
    series = []
    for sname, sv in series_raw.items():
        d = f"metrics.series.{sname}"
        with r.section():
            r.table(sv, d, _SERIES)
            top, bottom = r.number(sv, d, "max"), r.number(sv, d, "min")
            if top is not None and bottom is not None and bottom > top:
                r.bad(f"{d}.min", f"must not be above max ({bottom:g} > {top:g}): every value would breach")
            series.append(
                SeriesSpec(
                    name=sname,
                    query=r.string(sv, d, "query", "", required=True),
                    max=top,
                    min=bottom,
                    unit=r.string(sv, d, "unit", ""),
                    split=r.string(sv, d, "split"),
                )
            )
    token_env = r.string(me, "metrics", "token_env")
    if token_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", token_env):
        r.bad("metrics.token_env", f"must name an environment variable (the token itself never goes in the file), "
              f"got {token_env[:3]!r}...")
    # the source is asked every interval (at most hourly, at least every half second), each answer has timeout
    interval = r.seconds(me, "metrics", "interval", 5.0, minimum=0.5, maximum=3600)
    window = r.seconds(me, "metrics", "window", 900.0)
    if window < interval:
        r.bad("metrics.window", f"must be at least the interval ({interval:g} s), got {window:g} s")
    return MetricsSettings(
        source=source or "prometheus", url=url, interval=interval, window=window, token_env=token_env,
        series=tuple(series), timeout=r.seconds(me, "metrics", "timeout", 5.0, maximum=600),
    )


def _gates(r: Reader, specs: list[PhaseSpec], metrics: MetricsSettings) -> None:
    known_series = {x.name for x in metrics.series}
    for i, sp in enumerate(specs):
        for g in sp.gate:
            gate = Gate.read(g)
            if gate is not None and not gate.finite:
                r.bad(f"phase[{i}].gate", f"gate {g[:60]!r}: its limit is not a finite number")
            elif gate is not None and gate.series not in known_series:
                close = difflib.get_close_matches(gate.series, sorted(known_series), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                r.bad(
                    f"phase[{i}].gate",
                    f"gate {g!r} names unknown series {gate.series!r}{hint} (define it under [metrics.series])",
                )


SECRET_KEYS = ("password", "sslpassword")  # the secrets among a postgresql:// URL's parameters


def secret_param(piece: str) -> bool:
    """Whether a piece of a postgresql:// URL's query (``key=value``) gives a secret; libpq decodes the key as it
    decodes the value, so ``pass%77ord=`` is one too. The config refuses them; journal/pg.py never says them."""
    return unquote_plus(piece.partition("=")[0]) in SECRET_KEYS


def _journal_url(r: Reader, url: str | None) -> str | None:
    """[state] journal: a postgresql:// URL without a password (the message never repeats the URL: it may hold one)."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError as e:  # postgresql://[bad: an unclosed IPv6 address
        return r.bad("state.journal", f"is not a URL ({e})")
    if parts.scheme not in ("postgresql", "postgres"):
        return r.bad("state.journal", "must be a postgresql:// URL (host, port, database; or just postgresql:// with "
                     "the PG* environment variables or a service file)")
    if parts.password is not None or any(secret_param(p) for p in parts.query.split("&")):
        return r.bad("state.journal", "must not hold a password: give it in PGPASSWORD or ~/.pgpass (or a service "
                     "file) instead")
    return url
