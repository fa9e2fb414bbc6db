"""Processes started together: each says it is ready, then all go at once (the barrier: closing their stdin)."""

from __future__ import annotations

import subprocess
import sys

# a child's preamble: it opens a journal and writes one entry only once every child is ready
FIRST_USE = (
    "import sys\n"
    "from controlroom.core.identity import Actor\n"
    "from controlroom.journal.journal import Journal\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"  # the barrier: everyone starts when the test closes the pipes
)


def run_together(script: str, argvs: list[list[str]], *, timeout: float = 60) -> list[tuple[int, str, str]]:
    """Run ``python -c script ARGS`` once per argv, all released at once once each printed "ready"; each one's
    (return code, stdout after "ready", stderr). A child left running at the end is killed."""
    procs = [subprocess.Popen([sys.executable, "-c", script, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n"
        for p in procs:
            p.stdin.close()
        results = [(p.stdout.read(), p.stderr.read()) for p in procs]
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, results, strict=True)]
