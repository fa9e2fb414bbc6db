"""The [flags] part of controlroom.toml: the file on the hosts, its reload command, and each [flags.NAME] table.

A kill switch may name the series it guards (``guards = ["errors_5xx"]``): when a gate on one of them fails, the halt
offers that kill switch first. Guards are checked against [metrics.series] once the metrics are read
(``check_guards``), each unknown name one ``file:line: flags.NAME.guards: ...`` line.
"""

from __future__ import annotations

import difflib

from controlroom.config.reader import Reader, kind_of
from controlroom.config.settings import FlagSpec, FlagsSettings, MetricsSettings

FLAGS_KEYS = ["file", "reload"]
FLAG_KEYS = ["kind", "description", "default", "users", "groups", "guards"]


def read_flags(r: Reader, data: dict) -> FlagsSettings:
    """[flags] and every [flags.NAME]; bad values are noted on the reader and their defaults used."""
    from controlroom.fleet.flagfile import NAME_RULE, flag_value, valid_name

    fl = data.get("flags", {})
    if not isinstance(fl, dict):
        raise r.fail("flags", f"must be a table, got {kind_of(fl)}")
    flag_specs: list[FlagSpec] = []
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
        kind = r.string(val, d, "kind", "feature")
        if kind not in ("feature", "kill_switch"):
            r.bad(f"{d}.kind", f'must be "feature" or "kill_switch", got {kind!r}')
        default = val.get("default", "off")
        if isinstance(default, bool):  # true/false read as on/off
            default = "on" if default else "off"
        try:
            default = flag_value(default)
        except ValueError as e:
            r.bad(f"{d}.default", str(e))
            default = "off"
        guards = r.strings(val, d, "guards")
        if guards and kind != "kill_switch":
            r.bad(f"{d}.guards", 'only a kill switch guards a series: add kind = "kill_switch", or leave guards out')
            guards = ()
        flag_specs.append(
            FlagSpec(
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
    return FlagsSettings(file=file, reload=reload, flags=tuple(flag_specs))


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
