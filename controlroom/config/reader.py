"""Reading controlroom.toml: where each key is written, typed reads that collect errors, and command templates.

Every problem becomes a ConfigError whose message is one line: ``file:line: dotted.key: what is wrong``. The reader
notes a bad value and goes on with the default, so `controlroom check` can report every error in one run; a file
that does not exist is noted apart and reported after the values (fix the config first, then the files).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from controlroom.config.locate import resolve
from controlroom.core.errors import ConfigError, ConfigErrors

MAX_ERRORS = 20  # what `check` shows of one run; the count of the rest follows


class _Lines:
    """Maps dotted keys to the line that defines them; tomllib does not keep positions."""

    _header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _key = re.compile(
        r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
    )

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


MAX_SECONDS = 30 * 86400  # no duration of the config is longer than this


def _duration(seconds: float) -> str:
    """0.5 -> "0.5 s", 3600 -> "1 h (3600 s)", 2592000 -> "30 days (2592000 s)"."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit} ({seconds:.0f} s)"
    return f"{seconds:g} s"


def parse_duration(value: str) -> float | None:
    """'90s', '2m', '1h', '1m30s' -> seconds; None if not a duration."""
    m = _DURATION.match(value.strip())
    if not m or not any(m.groups()):
        return None
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


class Reader:
    """Typed reads of the parsed TOML that note errors (with file:line) and go on."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)
        self.errors: list[ConfigError] = []  # bad values, in the order they were found
        self.file_errors: list[ConfigError] = []  # files that do not exist: reported after the values

    def fail(self, dotted: str, message: str) -> ConfigError:
        line = self.lines.line(dotted)
        where = f"{self.path}:{line}" if line else str(self.path)
        err = ConfigError(f"{where}: {dotted}: {message}")
        err.line = line or 0  # type: ignore[attr-defined]  # to report in the order of the file
        return err

    def bad(self, dotted: str, message: str, default: Any = None) -> Any:
        """Note a bad value and go on with ``default``."""
        self.errors.append(self.fail(dotted, message))
        return default

    def missing_file(self, dotted: str, message: str) -> None:
        self.file_errors.append(self.fail(dotted, message))

    @contextlib.contextmanager
    def section(self) -> Iterator[None]:
        """A part of the config that cannot go on after an error raised inside it; the next part still runs."""
        try:
            yield
        except ConfigError as e:
            self.errors.append(e)

    def count(self) -> int:
        return len(self.errors)

    def raise_errors(self) -> None:
        """Raise everything noted as one ConfigErrors (str: the first line): bad values in the order of the file,
        then missing files."""

        def line(e: ConfigError) -> int:
            return getattr(e, "line", 0)

        errs = sorted(self.errors, key=line) + sorted(self.file_errors, key=line)
        if errs:
            raise ConfigErrors(errs)

    def table(self, value: Any, dotted: str, allowed: list[str]) -> dict[str, Any]:
        """The table itself; raises if it is not one. Unknown keys are noted, one error each."""
        if not isinstance(value, dict):
            raise self.fail(dotted, f"must be a table, got {kind_of(value)}")
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.bad(
                    f"{dotted}.{key}" if dotted else key,
                    f"unknown key{hint} (allowed: {', '.join(allowed)})",
                )
        return value

    def string(self, t: dict, dotted: str, key: str, default: Any = None, required: bool = False) -> Any:
        if key not in t:
            if required:
                return self.bad(dotted, f"missing required key '{key}'", default)
            return default
        v = t[key]
        if not isinstance(v, str):
            return self.bad(f"{dotted}.{key}", f"must be a string, got {kind_of(v)}", default)
        if required and not v.strip():
            return self.bad(f"{dotted}.{key}", "must not be empty", default)
        return v

    def strings(self, t: dict, dotted: str, key: str, default: tuple = ()) -> tuple[str, ...]:
        if key not in t:
            return default
        v = t[key]
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list):
            return self.bad(f"{dotted}.{key}", f"must be a list of strings, got {kind_of(v)}", default)
        for x in v:
            if not isinstance(x, str):
                return self.bad(
                    f"{dotted}.{key}",
                    f"must be a list of strings, got a list holding {kind_of(x)} ({x!r})",
                    default,
                )
        return tuple(v)

    def integer(
        self,
        t: dict,
        dotted: str,
        key: str,
        default: Any,
        minimum: int = 1,
        maximum: int | None = None,
        why: str = "",
    ) -> Any:
        if key not in t:
            return default
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, int):
            return self.bad(f"{dotted}.{key}", f"must be a whole number, got {kind_of(v)}", default)
        if v < minimum:
            return self.bad(f"{dotted}.{key}", f"must be at least {minimum}, got {v}", default)
        if maximum is not None and v > maximum:
            return self.bad(
                f"{dotted}.{key}", why.format(v=v) or f"must be at most {maximum}, got {v}", default
            )
        return v

    def seconds(self, t: dict, dotted: str, key: str, default: float, allow_zero: bool = False,
                minimum: float | None = None, maximum: float = MAX_SECONDS) -> float:
        """A duration: a number of seconds or "90s", "2m", "1h"; finite, never negative, and in range (an
        interval of a nanosecond is a busy loop, a bake of 1e300 s a gate that never decides)."""
        if key not in t:
            return default
        v = t[key]
        d = f"{dotted}.{key}"
        if isinstance(v, str):
            parsed = parse_duration(v)
            if parsed is None:
                never = " (a duration is never negative)" if v.strip().startswith("-") else ""
                return self.bad(
                    d, f'must be seconds or a duration like "90s", "2m", "1h", got {v!r}{never}', default
                )
            v = parsed
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            return self.bad(d, f"must be a number of seconds, got {kind_of(v)}", default)
        try:
            v = float(v)
        except OverflowError:  # an integer too large for a float
            return self.bad(d, f"must be at most {_duration(maximum)}, got {t[key]}", default)
        if not math.isfinite(v):
            return self.bad(d, f"must be a finite number of seconds, got {v}", default)
        if v < 0 or (v == 0 and not allow_zero):
            return self.bad(
                d, f"must be {'zero or more' if allow_zero else 'more than zero'} seconds, got {v:g}", default
            )
        if minimum is not None and v < minimum and not (v == 0 and allow_zero):
            return self.bad(d, f"must be at least {_duration(minimum)}, got {v:g} s", default)
        if v > maximum:
            return self.bad(d, f"must be at most {_duration(maximum)}, got {v:g} s", default)
        return v

    def number(self, t: dict, dotted: str, key: str) -> float | None:
        """A threshold: a finite number (NaN is never crossed, nor is infinity)."""
        if key not in t:
            return None
        v = t[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return self.bad(f"{dotted}.{key}", f"must be a number, got {kind_of(v)}")
        try:
            v = float(v)
        except OverflowError:
            v = math.inf
        if not math.isfinite(v):
            return self.bad(f"{dotted}.{key}", f"must be a finite number, got {t[key]}")
        return v

    def boolean(self, t: dict, dotted: str, key: str, default: bool) -> bool:
        if key not in t:
            return default
        v = t[key]
        if not isinstance(v, bool):
            return self.bad(f"{dotted}.{key}", f"must be true or false, got {kind_of(v)}", default)
        return v

    def count_or_percent(self, t: dict, dotted: str, key: str, default: Any, minimum: int) -> Any:
        if key not in t:
            return default
        v = t[key]
        d = f"{dotted}.{key}"
        if isinstance(v, bool):
            return self.bad(d, f'must be a count or a percentage like "10%", got {kind_of(v)}', default)
        if isinstance(v, int):
            if v < minimum:
                return self.bad(d, f"must be at least {minimum}, got {v}", default)
            return v
        if isinstance(v, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*%\s*", v):
            pct = float(v.strip().rstrip("%"))
            if pct > 100:
                return self.bad(d, f"must be at most 100%, got {v}", default)
            if pct <= 0 and minimum > 0:
                return self.bad(d, f"must be more than 0%, got {v}", default)
            return f"{pct:g}%"
        return self.bad(d, f'must be a count or a percentage like "10%", got {v!r}', default)

    def resolve(self, base: Path, value: str) -> Path:
        return resolve(base, value)

    def template(self, dotted: str, template: str, allowed: tuple[str, ...]) -> None:
        """Note what is wrong with a shell command template (see template_problem)."""
        problem = template_problem(template, allowed)
        if problem:
            self.bad(dotted, problem)


def unreadable(path: Path) -> str | None:
    """Why a file the config names cannot be used (missing, not a file, not readable by us), or None."""
    try:
        if not path.is_file():
            return "file not found"
        with path.open("rb"):
            return None
    except OSError as e:
        return f"cannot read it ({e.strerror or type(e).__name__})"


def kind_of(v: Any) -> str:
    return {
        bool: "a boolean",
        int: "a whole number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(v), type(v).__name__)


# --------------------------------------------------------------------------------------------- templates

PLACEHOLDERS = ("revision", "previous", "host")  # what ssh.render fills in, shell-quoted
_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def template_problem(template: str, allowed: tuple[str, ...] = PLACEHOLDERS) -> str | None:
    """What is wrong with a shell command template, as one line; None when nothing is.

    ``{revision}``-style placeholders are filled in already shell-quoted, so one written inside quotes
    (``echo "{revision}"``, ``'{revision}'``) would be quoted twice: the value would show its quotes, or stand
    unquoted between two pairs of them. ``$VAR`` and ``${VAR}`` are the shell's; ``${revision}`` is refused as
    ambiguous. Inside single quotes, other ``{words}`` are literal text (``awk '{print $1}'``); anywhere else an
    unknown ``{word}`` is a misspelt placeholder.
    """
    allowed_text = ", ".join(f"{{{a}}}" for a in allowed) if allowed else "none here"
    shown = template if len(template) <= 120 else template[:120] + "..."
    stack: list[str] = []  # quoting contexts: "'", '"', "$(" (a command substitution), "(", "`"
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        top = stack[-1] if stack else ""
        if top == "'":
            m = _NAME.match(template, i)
            if m and m.group(1) in PLACEHOLDERS:
                return _quoted(m.group(0), shown)
            if c == "'":
                stack.pop()
            i += 1
            continue
        if c == "\\":
            i += 2
            continue
        if c == "$" and template.startswith("{", i + 1):
            m = _NAME.match(template, i + 1)
            if m and m.group(1) in PLACEHOLDERS:
                return (
                    f"${{{m.group(1)}}} in {shown!r} is a shell variable; write {{{m.group(1)}}} for controlroom's "
                    "value (it is shell-quoted for you)"
                )
            end = template.find("}", i + 2)  # ${HOME}, ${x:-y}: the shell's
            i = n if end < 0 else end + 1
            continue
        if c == "$" and template.startswith("(", i + 1):
            stack.append("$(")
            i += 2
            continue
        m = _NAME.match(template, i)
        if m:
            name = m.group(1)
            if top == '"' and name in PLACEHOLDERS:
                return _quoted(m.group(0), shown)
            if name not in allowed:
                if name in PLACEHOLDERS:
                    return f"placeholder {m.group(0)} in {shown!r} is not filled in here (allowed: {allowed_text})"
                return f"unknown placeholder {m.group(0)} in {shown!r} (allowed: {allowed_text})"
            i = m.end()
            continue
        if top == '"':
            if c == '"':
                stack.pop()
            elif c == "`":
                stack.append("`")
        elif c in "'\"":
            stack.append(c)
        elif c == "`":
            if top == "`":
                stack.pop()
            else:
                stack.append("`")
        elif c == "(" and top in ("$(", "("):
            stack.append("(")
        elif c == ")" and top in ("$(", "("):
            stack.pop()
        i += 1
    return None


def _quoted(placeholder: str, shown: str) -> str:
    return (
        f"placeholder {placeholder} is inside quotes in {shown!r}; controlroom shell-quotes the value itself, "
        "so remove the quotes around it"
    )
