"""Ansible inventories, INI and YAML, as Ansible's own documentation writes them: the hosts and groups a team
already keeps, read as controlroom hosts.

What is read: groups and their hosts, ``[group:children]`` / ``children:``, ``[group:vars]`` / ``vars:`` (and
``[all:vars]``), host variables on a host's line or under it, ranges (``www[01:50].example.com``,
``db-[a:f].example.com``, a step as in ``www[01:50:2]``) and ``host:port``. Of the variables only
``ansible_host``, ``ansible_port`` and ``ansible_user`` (and their old ``ansible_ssh_*`` names) mean something
here: a host's address, port and user. A host's own variables win over its groups', a child group's over its
parent's, as in Ansible; two groups of the same depth giving one host different values is an error naming both
lines (Ansible would pick one by the groups' names, silently). Anything else in the file is Ansible's business.

Every problem is one ConfigError line, ``FILE:LINE: what is wrong``. The file is read whole but never more than
MAX_BYTES; YAML is read with PyYAML's SafeLoader (what yaml.safe_load uses), node by node to keep the lines.
"""

from __future__ import annotations

import re
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path

from controlroom.config.inventory import MAX_PATTERN_HOSTS, Found
from controlroom.core.errors import ConfigError
from controlroom.core.text import clean

MAX_BYTES = 10 * 1024 * 1024  # an inventory is text a person keeps; anything bigger is a mistake
_MAPPED = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
}
_GROUP_NAME = re.compile(r"[A-Za-z0-9_-]+")
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_RANGE = re.compile(r"\[([^\]]*)\]")
_MAX_NODES = 1_000_000  # YAML nodes walked: aliases can make a small file a huge tree


def _shown(text: str) -> str:
    return repr(clean(text, 80))


class _File:
    """Where problems are: the file's name and a line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def at(self, line: int) -> str:
        return f"{self.path}:{line}"

    def error(self, line: int, message: str) -> ConfigError:
        return ConfigError(f"{self.at(line)}: {message}")


@dataclass
class _Group:
    name: str
    line: int
    hosts: list[tuple[str, int]] = field(default_factory=list)  # (host, line), in order
    children: list[tuple[str, int]] = field(default_factory=list)
    vars: dict[str, tuple[object, int]] = field(default_factory=dict)  # mapped key -> (value, line)


@dataclass
class _Inventory:
    """What a file says, before it is resolved into hosts."""

    file: _File
    groups: dict[str, _Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, tuple[object, int]]] = field(default_factory=dict)
    first_line: dict[str, int] = field(default_factory=dict)  # host -> the line that first names it
    count: int = 0

    def group(self, name: str, line: int) -> _Group:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = _Group(name, line)
        return g

    def add_host(self, group: str, name: str, line: int, variables: dict[str, tuple[object, int]]) -> None:
        if name not in self.first_line:
            self.count += 1
            if self.count > MAX_PATTERN_HOSTS:
                raise self.file.error(line, f"the inventory names more than {MAX_PATTERN_HOSTS} hosts")
            self.first_line[name] = line
        self.group(group, line).hosts.append((name, line))
        mine = self.host_vars.setdefault(name, {})
        for key, (value, at) in variables.items():
            if key in mine and mine[key][0] != value:
                raise self.file.error(
                    at, f"host {name!r}: {key} {value!r} here but {mine[key][0]!r} at line {mine[key][1]}"
                )
            mine[key] = (value, at)


def read(path: Path) -> list[Found]:
    """The hosts of an Ansible inventory file (INI or YAML), in the order the file names them."""
    text = read_text(path)
    f = _File(path)
    if _is_yaml(path, text):
        inv = _read_yaml(f, text)
    else:
        inv = _read_ini(f, text)
    return _resolve(inv)


def read_text(path: Path, what: str = "inventory") -> str:
    """The file's text: at most MAX_BYTES of UTF-8; one line naming the file otherwise."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: {what} is a directory, not a file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what}: {e.strerror or type(e).__name__}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: the {what} is larger than {MAX_BYTES // (1024 * 1024)} MB; not read")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {e.start})") from None


def _is_yaml(path: Path, text: str) -> bool:
    if path.suffix.lower() in (".yml", ".yaml", ".json"):
        return True
    if path.suffix.lower() == ".ini":
        return False
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        return s == "---" or s.startswith("{") or bool(re.fullmatch(r"[A-Za-z0-9_-]+:\s*(#.*)?", s))
    return False


# --------------------------------------------------------------------------------------------- ranges


def expand(pattern: str, f: _File, line: int) -> list[str]:
    """Ansible's host ranges: ``[01:50]`` (zero-padded to the width written), ``[1:50:2]`` (a step), ``[a:f]``;
    several in one name multiply out. Anything else between brackets is an unknown range form."""
    m = _RANGE.search(pattern)
    if m is None:
        if "[" in pattern or "]" in pattern:
            raise f.error(line, f"unknown range form in {_shown(pattern)}: write [01:50], [a:f] or [1:50:2]")
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end() :]
    parts = m.group(1).split(":")
    bad = f.error(line, f"unknown range form [{clean(m.group(1), 40)}] in {_shown(pattern)}: "
                        "write [01:50], [a:f] or [1:50:2]")
    if len(parts) not in (2, 3):
        raise bad
    beg, end = parts[0], parts[1]
    step_text = parts[2] if len(parts) == 3 else "1"
    if not step_text.isdigit() or int(step_text) < 1:
        raise bad
    step = int(step_text)
    if beg == "":
        beg = "0"
    if beg.isdigit() and end.isdigit():
        if beg.startswith("0") and len(beg) > 1 and len(beg) != len(end):
            raise f.error(line, f"range [{m.group(1)}] in {_shown(pattern)}: a zero-padded range gives both ends "
                                "the same width ([01:50], not [01:5])")
        width = len(beg) if beg.startswith("0") and len(beg) > 1 else 0
        a, b = int(beg), int(end)
        if a > b:
            raise f.error(line, f"range [{m.group(1)}] in {_shown(pattern)} runs backwards")
        if (b - a) // step + 1 > MAX_PATTERN_HOSTS:
            raise f.error(line, f"{_shown(pattern)} names more than {MAX_PATTERN_HOSTS} hosts")
        seq = [str(n).zfill(width) for n in range(a, b + 1, step)]
    elif len(beg) == 1 and len(end) == 1 and beg in string.ascii_letters and end in string.ascii_letters:
        i, j = string.ascii_letters.index(beg), string.ascii_letters.index(end)
        if i > j:
            raise f.error(line, f"range [{m.group(1)}] in {_shown(pattern)} runs backwards")
        seq = list(string.ascii_letters[i : j + 1 : step])
    else:
        raise bad
    rest = expand(tail, f, line) if tail else [""]
    if len(seq) * len(rest) > MAX_PATTERN_HOSTS:
        raise f.error(line, f"{_shown(pattern)} names more than {MAX_PATTERN_HOSTS} hosts")
    return [head + s + r for s in seq for r in rest]


def _host_and_port(spec: str, f: _File, line: int) -> tuple[str, int | None]:
    """``badwolf.example.com:5309`` -> the name and its port; a name without one -> (name, None)."""
    outside = _RANGE.sub("", spec)  # a range's colons are not a port's
    if outside.count(":") == 1 and "[" not in outside and "]" not in outside:
        name, _, port = spec.rpartition(":")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise f.error(line, f"bad port in {_shown(spec)}: write host:PORT with a port from 1 to 65535")
        return name, int(port)
    return spec, None


def _hosts(spec: str, f: _File, line: int) -> tuple[list[str], int | None]:
    pattern, port = _host_and_port(spec, f, line)
    names = expand(pattern, f, line)
    for n in names:
        if not _HOST_NAME.fullmatch(n):
            raise f.error(line, f"bad host name {_shown(n)}: use letters, digits, '.', '-' and '_'")
    return names, port


def _value(key: str, value: object, f: _File, line: int) -> object:
    """A mapped variable's value as controlroom takes it: a port a number from 1 to 65535, the rest text."""
    field_name = _MAPPED[key]
    if field_name == "port":
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise f.error(line, f"{key} must be a TCP port from 1 to 65535, got {_shown(str(value))}")
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise f.error(line, f"{key} must be a name or an address, got {_shown(str(value))}")
    text = str(value).strip()
    if any(c.isspace() for c in text) or not text.isprintable():
        raise f.error(line, f"{key} must be one word, got {_shown(text)}")
    return text


# --------------------------------------------------------------------------------------------- INI

_HEADER = re.compile(r"^\[([^\]]*)\]\s*([#;].*)?$")


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v


def _read_ini(f: _File, text: str) -> _Inventory:
    inv = _Inventory(f)
    group, kind = "ungrouped", "hosts"
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            m = _HEADER.match(line)
            if m is None:
                raise f.error(no, f"cannot read section header {_shown(line)}: write [group], [group:children] "
                                  "or [group:vars]")
            name, _, kind = m.group(1).strip().partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "children", "vars"):
                raise f.error(no, f"section [{clean(m.group(1), 60)}] has unknown type {kind!r} "
                                  "(children or vars)")
            if not _GROUP_NAME.fullmatch(name):
                raise f.error(no, f"bad group name {_shown(name)}: use letters, digits, '_' and '-'")
            group = name
            inv.group(group, no)
            continue
        if kind == "vars":
            key, eq, value = line.partition("=")
            if not eq or not key.strip():
                raise f.error(no, f"expected key=value in [{group}:vars], got {_shown(line)}")
            key = key.strip()
            if key in _MAPPED:
                inv.group(group, no).vars[key] = (_value(key, _unquote(value.strip()), f, no), no)
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as e:
            raise f.error(no, f"cannot read {_shown(line)}: {e}") from None
        if not tokens:
            continue
        if kind == "children":
            if len(tokens) != 1 or not _GROUP_NAME.fullmatch(tokens[0]):
                raise f.error(no, f"[{group}:children] lists group names, one a line; got {_shown(line)}")
            if tokens[0] == group:
                raise f.error(no, f"group {group!r} cannot be its own child")
            inv.group(group, no).children.append((tokens[0], no))
            inv.group(tokens[0], no)
            continue
        names, port = _hosts(tokens[0], f, no)
        variables: dict[str, tuple[object, int]] = {}
        for t in tokens[1:]:
            key, eq, value = t.partition("=")
            if not eq or not key:
                raise f.error(no, f"expected key=value after the host, got {_shown(t)}")
            if key in _MAPPED:
                variables[key] = (_value(key, value, f, no), no)
        if port is not None:
            variables.setdefault("ansible_port", (port, no))
        for n in names:
            inv.add_host(group, n, no, variables)
    return inv


# --------------------------------------------------------------------------------------------- YAML


def _read_yaml(f: _File, text: str) -> _Inventory:
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise f.error(line, f"invalid YAML: {clean(e.problem or e.context or 'unreadable', 120)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{f.path}: invalid YAML: {clean(str(e), 120)}") from None
    finally:
        loader.dispose()
    inv = _Inventory(f)
    if root is None:
        return inv
    walked = [0]

    def line_of(node) -> int:
        return node.start_mark.line + 1

    def scalar(node) -> object:
        if not isinstance(node, yaml.ScalarNode):
            raise f.error(line_of(node), "expected a single value here")
        return construct(node)

    def construct(node) -> object:
        try:
            return loader.construct_object(node)
        except yaml.YAMLError as e:  # a tag the safe loader does not know (!!python/...): refused, never run
            raise f.error(line_of(node), f"cannot read this value: {clean(getattr(e, 'problem', None) or e, 120)}") \
                from None

    def mapping(node, what: str) -> list[tuple[yaml.Node, yaml.Node]]:
        walked[0] += 1
        if walked[0] > _MAX_NODES:
            raise f.error(line_of(node), "the inventory is too deeply shared (YAML aliases); write it out")
        if isinstance(node, yaml.ScalarNode) and construct(node) is None:
            return []
        if not isinstance(node, yaml.MappingNode):
            raise f.error(line_of(node), f"{what} must be a mapping")
        return node.value

    def variables(node, what: str) -> dict[str, tuple[object, int]]:
        out: dict[str, tuple[object, int]] = {}
        for k, v in mapping(node, what):
            key = scalar(k)
            if isinstance(key, str) and key in _MAPPED:
                out[key] = (_value(key, scalar(v), f, line_of(v)), line_of(k))
        return out

    def group(name: object, node, at: int, depth: int) -> None:
        if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
            raise f.error(at, f"bad group name {_shown(str(name))}: use letters, digits, '_' and '-'")
        if depth > 100:
            raise f.error(at, "groups nest more than 100 deep")
        g = inv.group(name, at)
        for k, v in mapping(node, f"group {name!r}"):
            key = scalar(k)
            if key == "hosts":
                for hk, hv in mapping(v, f"the hosts of {name!r}"):
                    spec = scalar(hk)
                    if not isinstance(spec, str):
                        raise f.error(line_of(hk), f"bad host name {_shown(str(spec))}")
                    names, port = _hosts(spec, f, line_of(hk))
                    hvars = variables(hv, f"host {spec!r}")
                    if port is not None:
                        hvars.setdefault("ansible_port", (port, line_of(hk)))
                    for n in names:
                        inv.add_host(name, n, line_of(hk), hvars)
            elif key == "children":
                for ck, cv in mapping(v, f"the children of {name!r}"):
                    child = scalar(ck)
                    if child == name:
                        raise f.error(line_of(ck), f"group {name!r} cannot be its own child")
                    g.children.append((str(child), line_of(ck)))
                    group(child, cv, line_of(ck), depth + 1)
            elif key == "vars":
                for vk, (value, vline) in variables(v, f"the vars of {name!r}").items():
                    g.vars[vk] = (value, vline)
            else:
                raise f.error(line_of(k), f"group {name!r}: unknown key {_shown(str(key))} "
                                          "(hosts, children or vars)")

    for k, v in mapping(root, "the inventory"):
        group(scalar(k), v, line_of(k), 0)
    return inv


# --------------------------------------------------------------------------------------------- resolving


def _resolve(inv: _Inventory) -> list[Found]:
    f = inv.file
    parents: dict[str, list[str]] = {}
    for g in inv.groups.values():
        for child, _ in g.children:
            parents.setdefault(child, []).append(g.name)
    depth: dict[str, int] = {}

    def depth_of(name: str, path: tuple[str, ...]) -> int:
        if name in depth:
            return depth[name]
        if name in path:
            g = inv.groups[name]
            raise f.error(g.line, f"groups {' -> '.join((*path[path.index(name):], name))} form a circle")
        ps = [p for p in parents.get(name, []) if p != "all"]
        d = 1 + max((depth_of(p, (*path, name)) for p in ps), default=0) if name != "all" else 0
        depth[name] = d
        return d

    for name in inv.groups:
        depth_of(name, ())
    ancestors: dict[str, list[str]] = {}

    def up(name: str) -> list[str]:
        if name not in ancestors:
            out: list[str] = []
            for p in parents.get(name, []):
                for a in (p, *up(p)):
                    if a not in out:
                        out.append(a)
            ancestors[name] = out
        return ancestors[name]

    direct: dict[str, list[str]] = {}
    for g in inv.groups.values():
        for host, _ in g.hosts:
            mine = direct.setdefault(host, [])
            if g.name not in mine:
                mine.append(g.name)
    by_groups: dict[tuple[str, ...], tuple[tuple[str, ...], dict[str, tuple[object, str]]]] = {}

    def from_groups(host: str, mine: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, tuple[object, str]]]:
        """The groups a host is in (its own and every one above them) and what their vars give it; hosts in the
        same groups share the answer (a range of 50,000 hosts is resolved once)."""
        if mine in by_groups:
            return by_groups[mine]
        member: list[str] = []
        for g in mine:
            for a in (g, *up(g)):
                if a not in member:
                    member.append(a)
        if "ungrouped" in member and len(member) > 1:
            member.remove("ungrouped")  # as in Ansible: a host in any other group is not ungrouped
        values: dict[str, tuple[object, str]] = {}
        for key in ("address", "port", "user"):
            best: list[tuple[int, object, int]] = []
            for gname in (*member, "all"):
                for k, (v, line) in inv.groups[gname].vars.items() if gname in inv.groups else ():
                    if _MAPPED[k] == key:
                        best.append((depth[gname], v, line))
            if not best:
                continue
            top = max(d for d, _, _ in best)
            chosen = [(v, line) for d, v, line in best if d == top]
            for v, line in chosen[1:]:
                if v != chosen[0][0]:
                    raise f.error(chosen[0][1], f"host {host!r} gets {key} {chosen[0][0]!r} from this group but "
                                                f"{v!r} from line {line} (groups of the same depth); give the host "
                                                "its own value")
            values[key] = (chosen[0][0], f.at(chosen[0][1]))
        answer = by_groups[mine] = (tuple(g for g in member if g != "all") or ("ungrouped",), values)
        return answer

    out: list[Found] = []
    for host in inv.first_line:
        groups, values = from_groups(host, tuple(direct[host]))
        given = dict(values)
        for k, (v, line) in inv.host_vars[host].items():  # a host's own vars win over its groups'
            given[_MAPPED[k]] = (v, f.at(line))
        out.append(Found(name=host, where=f.at(inv.first_line[host]),
                         address=given["address"][0] if "address" in given else None,  # type: ignore[arg-type]
                         port=given["port"][0] if "port" in given else None,  # type: ignore[arg-type]
                         user=given["user"][0] if "user" in given else None,  # type: ignore[arg-type]
                         groups=groups, said={k: w for k, (_, w) in given.items()}))
    return out
