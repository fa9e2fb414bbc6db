"""Start-up benchmark: what each `controlroom` command costs before it does its work.

Run by hand, never by CI; nothing here asserts on a timing. Each command runs as a fresh process, in rounds with
the order rotated; for each the report gives the process's CPU time (user + sys, median of the rounds: far steadier
than wall time on a busy machine), how many modules it imported and which of the heavy packages among them
(asyncio, sqlite3, httpx, asyncssh, textual). `python -c pass` and `python -c "import asyncssh"` are the scale:
a bare asyncssh script (the floor of bench/rollout.py) pays the second.

  log              `controlroom log` on an empty journal
  deploy --help    the parser alone
  check            the config read and summarised
  serve            `controlroom serve --idle 0.3`: the server's start, listening, then its idle exit (a cold
                   deploy starts one; it pays this before its first host is reached)

    .venv/bin/python bench/startup.py              # 7 rounds
    .venv/bin/python bench/startup.py --rounds 3

`python -X importtime -m controlroom.cli COMMAND` shows the same start-up module by module. The config is written
to a temporary directory (4 hosts on 127.0.0.1 that nothing connects to, a fresh key); nothing is left behind.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402 - beside this file

HEAVY = ("asyncio", "sqlite3", "httpx", "asyncssh", "textual")
CONFIG = """\
[inventory]
hosts = ["web[001:004]"]

[inventory.ssh]
user = "deploy"
known_hosts = "known_hosts"
identity_file = "key"

[deploy]
steps = ["true"]

[[phase]]
name = "all"
size = "100%"

[state]
dir = "state"
"""


def write_config(d: Path) -> Path:
    (d / "known_hosts").touch()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "key")], check=True,
                   capture_output=True, timeout=30)
    path = d / "controlroom.toml"
    path.write_text(CONFIG)
    return path


def commands(config: Path) -> dict[str, list[str]]:
    cr = [sys.executable, "-X", "importtime", "-m", "controlroom.cli"]
    c = ["--config", str(config)]
    return {
        "python -c pass": [sys.executable, "-X", "importtime", "-c", "pass"],
        "python -c 'import asyncssh'": [sys.executable, "-X", "importtime", "-c", "import asyncssh"],
        "log": [*cr, "log", *c],
        "deploy --help": [*cr, "deploy", "--help"],
        "check": [*cr, "check", *c],
        "serve (start, listen, idle exit)": [*cr, "serve", "--idle", "0.3", *c],
    }


def one(cmd: list[str], cwd: Path) -> tuple[float, float, set[str], int]:
    """(CPU s, wall s, modules imported, count) of one fresh process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:])}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    mods = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \| *(\S+)$", done.stderr, re.M))
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return cpu, wall, mods, len(mods)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    load_before = _common.loadavg()
    with tempfile.TemporaryDirectory(prefix="crstart-") as tmp:
        d = Path(tmp)
        cmds = commands(write_config(d))
        names = list(cmds)
        samples: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        seen: dict[str, tuple[set[str], int]] = {}
        for n in names:  # untimed: .pyc files, page cache
            one(cmds[n], d)
        for r in range(args.rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                cpu, wall, mods, count = one(cmds[n], d)
                samples[n].append((cpu, wall))
                seen[n] = (mods, count)
    print(f"start-up of each command, a fresh process, {args.rounds} rounds, rotating order")
    print(f"machine: {_common.machine_line()}")
    print(f"load average (1 min) before {load_before}, after {_common.loadavg()}")
    head = ("command", "CPU ms (median)", "CPU ms (min)", "wall ms (median)", "modules", "loads")
    rows = []
    for n in names:
        cpus = [c for c, _ in samples[n]]
        walls = [w for _, w in samples[n]]
        mods, count = seen[n]
        heavy = " ".join(h for h in HEAVY if h in mods) or "-"
        rows.append((n, f"{statistics.median(cpus) * 1000:.0f}", f"{min(cpus) * 1000:.0f}",
                     f"{statistics.median(walls) * 1000:.0f}", str(count), heavy))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        cells = zip(r, widths, strict=True)
        print("  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w) for i, (c, w) in enumerate(cells)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
