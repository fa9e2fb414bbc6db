"""Flags: ``Flag`` (one configured feature flag or kill switch), the [flags] section of controlroom.toml that lists
them (``FlagsSettings``: the file on the hosts, its reload command, each [flags.NAME] table), and the rules of a
flag's name and value that the config, the CLI, the app and the hosts' file share.

A kill switch is a Flag of kind "kill_switch" and may name the series it guards (``guards = ["errors_5xx"]``): when a
gate on one of them fails, the halt offers that kill switch first. Guards are checked against [metrics.series] once
the metrics are read (``check_guards``), each unknown name one ``file:line: flags.NAME.guards: ...`` line.

A flag's value on the hosts (fleet/flagfile.py: FlagValue, FlagsFile), its push and receipts (engine/flagpush.py:
FlagService) and its history (journal/flags.py: FlagHistory) build on the Flag defined here.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from controlroom.config.reader import Reader, kind_of
from controlroom.config.settings import MetricsSettings

FEATURE, KILL_SWITCH = "feature", "kill_switch"  # a Flag's kinds
NAME_RULE = "[a-z][a-z0-9_]*"
_NAME = re.compile(rf"^{NAME_RULE}$")
_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
VALUES = 'on, off or a percentage like "25%"'


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def flag_value(value: object) -> str:
    """'on', 'off' or 'N%' (N from 0 to 100, as written without trailing zeros); ValueError saying what is allowed."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("on", "off"):
            return v
        m = _PCT.match(v)
        if m:
            pct = float(m.group(1))
            if pct > 100:
                raise ValueError(f"a percentage must be from 0% to 100%, got {value!r}")
            return f"{pct:g}%"
    raise ValueError(f"must be {VALUES}, got {value!r}")


def percent(value: str) -> float:
    """The share of users a value lets in, from 0 to 100."""
    return 100.0 if value == "on" else 0.0 if value == "off" else float(value.rstrip("%"))


@dataclass(frozen=True)
class Flag:
    """One configured flag ([flags.NAME]): what it is and its value before anyone changes it."""

    name: str
    kind: str = FEATURE  # FEATURE or KILL_SWITCH
    description: str = ""
    default: str = "off"  # "on", "off" or "N%" (a percentage of users, bucketed by the application)
    users: tuple[str, ...] = ()  # named users who always get it (Etsy's `feature` allow-lists)
    groups: tuple[str, ...] = ()
    guards: tuple[str, ...] = ()  # a kill switch: the series it guards (a failed gate on one offers it first)

    @property
    def kill_switch(self) -> bool:
        return self.kind == KILL_SWITCH


@dataclass(frozen=True)
class FlagsSettings:
    """The [flags] section: where the flags file lives on every host, what reloads it, and every Flag."""

    file: str = "flags.toml"  # the flags file on every host; relative means the login (home) directory
    reload: str | None = None  # run on the host after the file is in place
    flags: tuple[Flag, ...] = ()

    def flag(self, name: str) -> Flag | None:
        return next((f for f in self.flags if f.name == name), None)

    def guarding(self, series: tuple[str, ...] | list[str]) -> tuple[Flag, ...]:
        """The kill switches that guard any of these series, in the config's order."""
        return tuple(f for f in self.flags if f.kill_switch and any(s in f.guards for s in series))


FLAGS_KEYS = ["file", "reload"]
FLAG_KEYS = ["kind", "description", "default", "users", "groups", "guards"]


def read_flags(r: Reader, data: dict) -> FlagsSettings:
    """[flags] and every [flags.NAME]; bad values are noted on the reader and their defaults used."""
    fl = data.get("flags", {})
    if not isinstance(fl, dict):
        raise r.fail("flags", f"must be a table, got {kind_of(fl)}")
    flags: list[Flag] = []
    for key, val in fl.items():
        if key in FLAGS_KEYS:
            continue
        d = f"flags.{key}"
        if not isinstance(val, dict):
            close = difflib.get_close_matches(key, FLAGS_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            r.bad(d, f"unknown key{hint} (allowed: {', '.join(FLAGS_KEYS)}, or a [flags.NAME] table)")
            continue
        if not valid_name(key):
            r.bad(d, f"flag name {key!r} must match {NAME_RULE} (lower case, digits, _)")
        r.table(val, d, FLAG_KEYS)
        kind = r.string(val, d, "kind", FEATURE)
        if kind not in (FEATURE, KILL_SWITCH):
            r.bad(f"{d}.kind", f'must be "{FEATURE}" or "{KILL_SWITCH}", got {kind!r}')
        default = val.get("default", "off")
        if isinstance(default, bool):  # true/false read as on/off
            default = "on" if default else "off"
        try:
            default = flag_value(default)
        except ValueError as e:
            r.bad(f"{d}.default", str(e))
            default = "off"
        guards = r.strings(val, d, "guards")
        if guards and kind != KILL_SWITCH:
            r.bad(f"{d}.guards", 'only a kill switch guards a series: add kind = "kill_switch", or leave guards out')
            guards = ()
        flags.append(
            Flag(
                name=key,
                kind=kind,
                description=r.string(val, d, "description", ""),
                default=default,
                users=r.strings(val, d, "users"),
                groups=r.strings(val, d, "groups"),
                guards=guards,
            )
        )
    file = r.string(fl, "flags", "file", "flags.toml")
    if not file.strip() or file.endswith("/") or "\n" in file or "\0" in file:
        r.bad("flags.file", f"must be a file path on the hosts (relative means the login directory), got {file!r}")
    reload = r.string(fl, "flags", "reload")
    if reload is not None:
        r.template("flags.reload", reload, ())
    return FlagsSettings(file=file, reload=reload, flags=tuple(flags))


def check_guards(r: Reader, flags: FlagsSettings, metrics: MetricsSettings) -> None:
    """Each guarded series must be one of [metrics.series]: one error for each that is not."""
    known = sorted(s.name for s in metrics.series)
    for spec in flags.flags:
        for name in spec.guards:
            if name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            r.bad(f"flags.{spec.name}.guards",
                  f"guards unknown series {name!r}{hint} (define it under [metrics.series])")
