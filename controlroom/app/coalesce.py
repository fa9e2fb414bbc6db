"""One coalescing refresh: "run this refresh now; if one is running, run it once more after it".

A pane that asks the server (the flags, the deploy log, a host's output) or git (the staging diff) again whenever
something may have changed must never have two looks under way, nor miss the change that came during a look:
`want()` starts the refresh, and a wish while it runs makes it run once more when it ends (any number of wishes
meanwhile: once); a refresh that returns False (it failed) is not repeated. Plain asyncio; the caller says how a
refresh is started (a Textual worker, in the app), and is given the refresh to call, not a coroutine made in
advance: a worker that never starts (the app exiting) leaves no coroutine that was never awaited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


class Coalesced:
    """`refresh` run one at a time, once more after a run if it was wanted during it."""

    def __init__(self, refresh: Callable[[], Awaitable[object]],
                 start: Callable[[Callable[[], Coroutine[Any, Any, None]]], object]) -> None:
        self._refresh = refresh
        self._start = start
        self._running = False
        self._again = False

    @property
    def running(self) -> bool:
        return self._running

    def want(self) -> None:
        """Refresh now, or once more after the refresh under way."""
        if self._running:
            self._again = True
            return
        self._running = True
        self._start(self._run)

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                if await self._refresh() is False or not self._again:  # False: it failed; no repeat
                    break
        finally:
            self._running = False
            self._again = False
