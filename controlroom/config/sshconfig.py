"""The ``Host`` entries of an ssh_config (``~/.ssh/config``) as controlroom hosts.

A name written in a ``Host`` line without wildcards (``*``, ``?``, ``[``) or negation (``!``) is a host; its
address, port and user are what ssh would use: ``HostName`` (with ``%h`` and ``%%``), ``Port`` and ``User``
from every block that matches it, the first value of each winning (wildcard blocks and the lines before the
first ``Host`` included), as ssh_config(5) says. ``Include`` is followed (globs, relative to the directory of
the file being read, at most 16 deep); ``Match`` blocks are skipped with a note, since what they match is known
only when ssh connects. Hosts read here are in the group ``ssh_config``.

These values are for comparing with the other sources (a host controlroom.toml gives another address is an error)
and for showing; the host itself is reached by its name, with the ssh_config read by the SSH pool, so ProxyJump,
IdentityFile and the rest of its block apply as they do for ssh.
"""

from __future__ import annotations

import fnmatch
import glob
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from controlroom.config.ansible import read_text
from controlroom.config.inventory import Found
from controlroom.core.errors import ConfigError
from controlroom.core.text import clean

GROUP = "ssh_config"
MAX_DEPTH = 16  # Include within Include, as OpenSSH allows
MAX_FILES = 256
_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)(?:(?:\s*=\s*|\s+)(.*?))?\s*$")
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_WILD = re.compile(r"[*?\[\]!]")


@dataclass
class _Block:
    patterns: tuple[str, ...]  # () for the lines before the first Host: they apply to every host
    where: str
    settings: dict[str, tuple[str, str]] = field(default_factory=dict)  # keyword -> (value, FILE:LINE)


@dataclass(frozen=True)
class SSHConfigRead:
    hosts: list[Found]
    notes: list[str]  # one line each: a Match block skipped, an Include that matched nothing, a name not usable


def read(path: Path) -> SSHConfigRead:
    blocks: list[_Block] = [_Block((), str(path))]
    names: dict[str, str] = {}  # concrete host -> the line that names it first
    notes: list[str] = []
    files = [0]

    def read_file(p: Path, depth: int) -> None:
        files[0] += 1
        if files[0] > MAX_FILES:
            raise ConfigError(f"{p}: more than {MAX_FILES} files included")
        text = read_text(p, "ssh config")
        skipping = False
        for no, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{p}:{no}"
            m = _LINE.match(raw)
            if m is None:
                raise ConfigError(f"{where}: cannot read {clean(line, 80)!r}: write a keyword and its value")
            keyword, rest = m.group(1).lower(), m.group(2) or ""
            try:
                args = shlex.split(rest, comments=True)
            except ValueError as e:
                raise ConfigError(f"{where}: cannot read {clean(line, 80)!r}: {e}") from None
            if keyword == "match":
                notes.append(f"{where}: Match block skipped (controlroom reads Host entries only)")
                skipping = True
                continue
            if keyword == "host":
                skipping = False
                if not args:
                    raise ConfigError(f"{where}: Host needs at least one name or pattern")
                blocks.append(_Block(tuple(args), where))
                for a in args:
                    if _WILD.search(a):
                        continue
                    if not _NAME.fullmatch(a):
                        notes.append(f"{where}: host {clean(a, 80)!r} skipped: controlroom names use letters, "
                                     "digits, '.', '-' and '_'")
                        continue
                    names.setdefault(a, where)
                continue
            if keyword == "include":
                if depth >= MAX_DEPTH:
                    raise ConfigError(f"{where}: Include nested more than {MAX_DEPTH} deep")
                for a in args:
                    target = Path(a).expanduser()
                    if not target.is_absolute():
                        target = p.parent / target
                    matched = sorted(glob.glob(str(target))) if _WILD.search(str(target)) else [str(target)]
                    if not matched or (len(matched) == 1 and not Path(matched[0]).exists()):
                        notes.append(f"{where}: Include {clean(a, 80)!r} matched no file")
                        continue
                    for t in matched:
                        if Path(t).is_file():
                            read_file(Path(t), depth + 1)
                continue
            if skipping or keyword not in ("hostname", "port", "user"):
                continue
            if not args:
                raise ConfigError(f"{where}: {m.group(1)} needs a value")
            if not args[0].isprintable() or any(c.isspace() for c in args[0]):
                raise ConfigError(f"{where}: {m.group(1)} must be one word of printable text, got "
                                  f"{clean(args[0], 80)!r}")
            block = blocks[-1]
            block.settings.setdefault(keyword, (args[0], where))

    read_file(path, 0)
    out: list[Found] = []
    for name, where in names.items():
        got: dict[str, tuple[str, str]] = {}
        for b in blocks:
            if b.patterns and not _matches(name, b.patterns):
                continue
            for k, v in b.settings.items():
                got.setdefault(k, v)
        said: dict[str, str] = {}
        address = port = user = None
        if "hostname" in got:
            value, said["address"] = got["hostname"]
            address = value.replace("%h", name).replace("%%", "%")
        if "port" in got:
            value, said["port"] = got["port"]
            if not value.isdigit() or not 1 <= int(value) <= 65535:
                raise ConfigError(f"{said['port']}: Port must be a TCP port from 1 to 65535, got {clean(value, 40)!r}")
            port = int(value)
        if "user" in got:
            user, said["user"] = got["user"]
        out.append(Found(name=name, where=where, address=address, port=port, user=user, groups=(GROUP,),
                         said=said, by_ssh=True))
    return SSHConfigRead(out, notes)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    """ssh_config(5) PATTERNS: some positive pattern matches and no negated one does."""
    hit = False
    for p in patterns:
        if p.startswith("!"):
            if fnmatch.fnmatchcase(name, p[1:]):
                return False
        elif fnmatch.fnmatchcase(name, p):
            hit = True
    return hit
