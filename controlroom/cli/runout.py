"""What `controlroom run` prints: hosts with identical output as one block (`web[001:150] (150): vm`), as pssh's
and Ansible's `-o` users expect, or one block per host (`--each`). Every output line is shown, cleaned.

Host names are compressed into the inventory's own pattern syntax (`web[001:003],web005`), so a group's name can be
given back to `--hosts`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from controlroom.core.text import clean, clean_lines

_NUMBERED = re.compile(r"^(.*?)(\d+)([^\d]*)$")
ERR = "[err] "  # before a stderr line, as the app's host view shows it


def compress(names: Iterable[str]) -> str:
    """`web001..web150` -> 'web[001:150]'; gaps and other names joined with ',' (a valid --hosts pattern).

    Names are grouped by what is around their last number and by its number of digits (a range keeps its
    width: web[001:150], while web9 and web10 stay two names); the order is the first appearance of each group,
    numbers ascending within it."""
    groups: dict[tuple[str, str, int], list[int]] = {}
    plain: list[str] = []
    order: list[object] = []
    for name in names:
        m = _NUMBERED.match(name)
        if m is None:
            plain.append(name)
            order.append(name)
            continue
        digits = m.group(2)
        key = (m.group(1), m.group(3), len(digits))  # [001:150] keeps 3 digits; [9:10] would not be web09
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(int(digits))
    out: list[str] = []
    for item in order:
        if isinstance(item, str):
            out.append(item)
            continue
        prefix, suffix, width = item
        nums = sorted(set(groups[item]))
        start = prev = nums[0]
        for n in [*nums[1:], None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            a, b = str(start).zfill(width), str(prev).zfill(width)
            out.append(f"{prefix}{a}{suffix}" if start == prev else f"{prefix}[{a}:{b}]{suffix}")
            if n is not None:
                start = prev = n
    return ",".join(out)


def output_lines(res) -> list[str]:
    """Every line the command printed: stdout's, then stderr's marked [err] (cleaned: hosts print anything)."""
    return clean_lines(res.stdout) + [ERR + line for line in clean_lines(res.stderr)]


def _what(res) -> tuple[str, list[str]]:
    """(the header's text, the lines below it) of one result."""
    if not res.ok and res.status != "exit":
        return f"{res.label}: {clean(res.reason)}", []  # it never ran: the reason is all there is
    lines = output_lines(res)
    if len(lines) == 1:
        line = lines[0].removeprefix(ERR) if not res.ok else lines[0]
        return (line if res.ok else f"{res.label}: {line}"), []
    return ("ok" if res.ok else res.label) + ("" if lines else " (no output)"), lines


def grouped(results: list, order: list[str] | None = None) -> list[str]:
    """Hosts with the same result and output as one block: 'web[001:150] (150): vm', its lines indented below.
    The blocks that went well first (most hosts first), then the failures (which the eye finds last, by the
    summary)."""
    blocks: dict[tuple, list] = {}
    for res in results:
        key = (res.ok, res.label, res.reason if not res.ok else "", res.stdout, res.stderr)
        blocks.setdefault(key, []).append(res)
    rank = {h: i for i, h in enumerate(order or [r.host for r in results])}
    out: list[str] = []
    for _key, members in sorted(blocks.items(), key=lambda kv: (not kv[0][0], -len(kv[1]),
                                                               min(rank.get(r.host, 0) for r in kv[1]))):
        names = sorted((r.host for r in members), key=lambda h: rank.get(h, 0))
        head, lines = _what(members[0])
        out.append(f"{clean(compress(names))} ({len(names)}): {head}")
        out += [f"    {line}" for line in lines]
    return out


def each(res, width: int, label: str) -> list[str]:
    """One host's block: 'web001  ok         0.12 s  vm', or its lines indented below when there are several."""
    lines = [] if not res.ok and res.status != "exit" else output_lines(res)
    if not lines:
        detail = clean(res.reason) if not res.ok and res.status != "exit" else ""
    elif len(lines) == 1:
        detail, lines = (lines[0] if res.ok else lines[0].removeprefix(ERR)), []
    else:
        detail = ""
    first = f"{clean(res.host):<{width}}  {label} {res.connect_s + res.run_s:6.2f} s" + (f"  {detail}" if detail else "")
    return [first] + [f"    {line}" for line in lines]


def host_json(res) -> dict:
    """`run --json`: one host's result, as it finishes. stdout and stderr are what the host printed (the SSH pool
    bounds them), raw: json.dumps escapes every control character."""
    from controlroom.cli.jsonout import when

    return {"host": res.host, "ok": res.ok, "result": res.label, "status": res.status, "exit_code": res.exit_code,
            "reason": None if res.ok else res.reason, "stdout": res.stdout, "stderr": res.stderr,
            "connect_seconds": round(res.connect_s, 3), "run_seconds": round(res.run_s, 3),
            **when(res.started_at or None, "started")}
