"""The flags file every host holds (each Flag's value there: config/flags.py defines the Flag), and a reference
reader.

The file (``[flags] file``, relative to the login directory) is TOML written with tomli-w::

    version = 7                        # one more at each change
    changed_by = "alice"
    changed_at = "2024-05-02T14:03:11Z"

    [flags.new_search]
    enabled = "off"                    # "on" | "off" | "N%"
    [flags.beta_ui]
    enabled = "10%"
    users = ["alice"]                  # only when set in the config
    groups = ["staff"]

It reaches each host with one command (``push_command``) that writes it to a temp file beside the target, syncs it,
renames it into place and prints the sha256 of the file now there; anything failing leaves the old file whole and
removes the temp file. The pushing itself (receipts, retries, verify) is flagpush.py, run by the server.

``enabled(name, user_id)`` is the reference reader an application can copy or import: on, off, a named user or
group, or a stable bucket of a hash of the flag's name and the user's id (the same user stays in or out as the
percentage only grows).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import tomli_w

from controlroom.config.flags import Flag, flag_value, percent

SUM = "controlroom-sha256:"  # the line of push/verify output that carries the hash
_SHA256 = re.compile(r"[0-9a-f]{64}")
HASH_CMD = "sha256sum"


# --------------------------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class FlagValue:
    enabled: str
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlagsFile:
    """What one version of the flags file says."""

    version: int
    changed_by: str
    changed_at: float
    flags: Mapping[str, FlagValue] = field(default_factory=dict)

    def render(self) -> bytes:
        """The file's bytes (tomli-w; flags in name order, so one state always gives one hash)."""
        doc: dict = {
            "version": self.version,
            "changed_by": self.changed_by,
            "changed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.changed_at)),
            "flags": {},
        }
        for name in sorted(self.flags):
            f = self.flags[name]
            t: dict = {"enabled": f.enabled}
            if f.users:
                t["users"] = list(f.users)
            if f.groups:
                t["groups"] = list(f.groups)
            doc["flags"][name] = t
        return tomli_w.dumps(doc).encode()

    def sha256(self) -> str:
        return hashlib.sha256(self.render()).hexdigest()

    def values(self) -> dict[str, str]:
        return {n: f.enabled for n, f in self.flags.items()}


def initial(specs: Iterable[Flag]) -> FlagsFile:
    """Version 0: every flag at its config default (what the fleet holds before the first change)."""
    return FlagsFile(0, "", 0.0, {s.name: FlagValue(s.default, s.users, s.groups) for s in specs})


def with_values(specs: Iterable[Flag], values: Mapping[str, str], *, version: int, by: str, at: float) -> FlagsFile:
    """The file for these values: every flag of the config, its value from ``values`` or its default; users and
    groups always from the config."""
    return FlagsFile(version, by, at, {s.name: FlagValue(values.get(s.name, s.default), s.users, s.groups)
                                       for s in specs})


def parse(data: bytes) -> FlagsFile:
    """Read a flags file; ValueError when it is not one."""
    try:
        doc = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"not a flags file: {e}") from None
    flags = {}
    for name, t in (doc.get("flags") or {}).items():
        if not isinstance(t, dict):
            raise ValueError(f"flags.{name}: not a table")
        flags[name] = FlagValue(flag_value(t.get("enabled", "off")), tuple(t.get("users", ())),
                                tuple(t.get("groups", ())))
    at = doc.get("changed_at", 0)
    if isinstance(at, str):
        try:
            at = float(time.mktime(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)
        except ValueError:
            at = 0.0
    return FlagsFile(int(doc.get("version", 0)), str(doc.get("changed_by", "")), float(at or 0), flags)


# --------------------------------------------------------------------------------------------- on the host


def _temp(path: str, token: str) -> tuple[str, str]:
    """(directory of path, the temp file's path beside it): same directory, so the rename is atomic."""
    directory, sep, name = path.rpartition("/")
    return (directory + sep) or ".", f"{directory}{sep}.{name}.tmp-{token}"


def push_command(path: str, data: bytes, token: str, reload: str | None = None) -> str:
    """Shell text: write data to a temp file beside path, sync it, rename it over path, print the sha256 of the
    file now at path (``controlroom-sha256:HASH``), then run reload. Any failure before the rename leaves the
    old file whole; the temp file is removed on every way out, as are temp files a killed earlier push left."""
    _, tmp = _temp(path, token)
    _, pattern = _temp(path, "")
    q, t = shlex.quote(path), shlex.quote(tmp)
    lines = [
        "umask 022",
        # only shell builtins but for sync, mv and the hash: a process less per host is time saved on 150 of them
        f"cr_t={t}; trap '[ ! -e \"$cr_t\" ] || rm -f -- \"$cr_t\"' EXIT; trap 'exit 143' TERM HUP INT",
        # temp files an earlier push left when it was killed mid-way
        f'for cr_o in {shlex.quote(pattern)}????????*; do [ ! -e "$cr_o" ] || rm -f -- "$cr_o"; done',
        f"if [ -d {q} ]; then echo {shlex.quote(path + ': is a directory')} >&2; exit 1; fi",
        f"printf '%s' {shlex.quote(data.decode())} > \"$cr_t\" || exit 1",
        # sync FILE (fsync) where coreutils has it, a whole sync elsewhere
        'sync -- "$cr_t" 2>/dev/null || sync || exit 1',
        f'mv -f -- "$cr_t" {q} || exit 1',
        f'cr_s=$({HASH_CMD} -- {q}) || exit 1; echo "{SUM}${{cr_s%% *}}"',
    ]
    if reload:
        lines.append(f"( {reload}\n) || exit $?")
    return "\n".join(lines)


def verify_command(path: str) -> str:
    """Shell text printing ``controlroom-sha256:HASH`` of the host's flags file, or ``controlroom-sha256:missing``."""
    q = shlex.quote(path)
    return f'if cr_s=$({HASH_CMD} -- {q} 2>/dev/null); then echo "{SUM}${{cr_s%% *}}"; else echo "{SUM}missing"; fi'


def reported_hash(stdout: str) -> str | None:
    """The flags file's hash as the host reports it: 64 hex digits, or "missing" when it has no file; None for
    anything else (no such line, or one in a shape push_command never prints: a host's answer is not trusted)."""
    for line in stdout.splitlines():
        if line.startswith(SUM):
            got = line[len(SUM):].strip()
            return got if got == "missing" or _SHA256.fullmatch(got) else None
    return None


# --------------------------------------------------------------------------------------------- the reader


DEFAULT_PATH = "~/flags.toml"
_cache: dict[str, tuple[tuple, dict]] = {}


def bucket(name: str, user_id: object) -> float:
    """Where a user falls for a flag, from 0 (inclusive) to 100 (exclusive): stable across processes and hosts,
    and different per flag, so the same 10% of users are not the guinea pigs of every flag."""
    digest = hashlib.sha256(f"{name}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def _load(path: str) -> dict:
    p = os.path.expanduser(path)
    try:
        st = os.stat(p)
    except OSError:
        return {}
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    hit = _cache.get(p)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        with open(p, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return hit[1] if hit else {}  # a file mid-replace cannot happen (rename), but never crash the caller
    flags = doc.get("flags") or {}
    _cache[p] = (key, flags)
    return flags


def enabled(name: str, user_id: object = None, *, groups: Iterable[str] = (), path: str | None = None) -> bool:
    """Whether flag ``name`` is on for this user, as the host's flags file says (re-read when it changes).

    "on" and "off" are for everyone; a user in the flag's ``users`` or ``groups`` gets it whatever the value;
    "N%" lets in the users whose ``bucket(name, user_id)`` is below N (no user id: out). An unknown flag, or no
    file, is off. ``path`` defaults to $CONTROLROOM_FLAGS, then ~/flags.toml.
    """
    t = _load(path or os.environ.get("CONTROLROOM_FLAGS") or DEFAULT_PATH).get(name)
    if not isinstance(t, dict):
        return False
    value = str(t.get("enabled", "off"))
    if value == "on":
        return True
    if user_id is not None and str(user_id) in {str(u) for u in t.get("users", ())}:
        return True
    if set(groups) & set(t.get("groups", ())):
        return True
    if value == "off" or user_id is None:
        return False
    try:
        return bucket(name, user_id) < percent(value)
    except ValueError:
        return False
