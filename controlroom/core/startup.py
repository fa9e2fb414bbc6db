"""A controlroom process's start-up: no garbage collection while it imports.

`controlroom` run as a program (cli/main.py main() with no argv) turns the collector off first thing; each command
turns it back on once its start-up is done (collecting()): the server once it listens, a deploy or rollback once
its server is begun, every other command before it runs. Importing makes next to no garbage, and collecting during
it costs ~12 ms of each server's start (bench/rollout.py shows the start-up); what the start-up leaves is frozen
(gc.freeze), so later collections do not walk it again. A caller that passes argv (a test) keeps its collector as
it is.
"""

from __future__ import annotations

import gc

_off = False  # importing() turned the collector off, and collecting() has not turned it on yet


def importing() -> None:
    """Collection off for the start-up (only when it is on: a collector someone else turned off stays theirs)."""
    global _off
    if gc.isenabled():
        gc.disable()
        _off = True


def collecting() -> None:
    """The start-up is done: what it made is frozen, and collection is on again. Idempotent."""
    global _off
    if _off:
        _off = False
        gc.freeze()
        gc.enable()
