"""The server's one metrics source, kept open between the metrics pane's polls and the gates' checks (its
connections reused: bench/metrics.py, 1.7x -> 1.03x the floor), made again when the config's [metrics] changes.

A source replaced by a change of [metrics] is closed a while later (RETIRED_FOR), not at once: a gate check or a
poll may still be reading it. A gate keeper of a deploy started before the change keeps its own settings: it is
given the kept source only while that is for its settings, else it opens its own for each round (as before the
sharing)."""

from __future__ import annotations

import time

from controlroom.config.settings import MetricsSettings

# sources.metrics (and httpx) is imported when a source is first asked for: a server whose clients never read
# metrics and whose phases have no gate never pays for it
RETIRED_FOR = 60.0  # seconds a replaced source stays open for what still reads it


class SharedSource:
    def __init__(self) -> None:
        self._source = None
        self._retired: list[tuple[float, object]] = []  # (replaced at, source)

    def kept(self, settings: MetricsSettings):
        """The kept source when it is for these settings (made now when none is kept yet), else None: the
        gate keeper's factory (engine.gates.SourceFactory)."""
        from controlroom.sources.metrics import MetricsError, make_source

        if self._source is None:
            try:
                self._source = make_source(settings)
            except MetricsError:
                return None  # the keeper opens one itself, and says why it cannot, per gate
        return self._source if self._source.settings == settings else None

    async def source(self, settings: MetricsSettings):
        """The source for these settings (the kept one while they hold; a new one kept when they changed), or
        None when none can be made (what reads it says why, per series)."""
        from controlroom.sources.metrics import MetricsError, make_source

        kept = self._source
        if kept is None or kept.settings != settings:
            if kept is not None:
                self._retired.append((time.monotonic(), kept))
            try:
                kept = make_source(settings)
            except MetricsError:
                kept = None
            self._source = kept
        await self._close_retired()
        return kept

    async def snapshot(self, settings: MetricsSettings, points: int) -> dict:
        """Every series now and over the window (metrics.snapshot), read from the kept source."""
        from controlroom.sources.metrics import snapshot

        return await snapshot(settings, points, source=await self.source(settings))

    async def _close_retired(self, *, every: bool = False) -> None:
        now, still = time.monotonic(), []
        for since, source in self._retired:
            if every or now - since > RETIRED_FOR:
                await source.aclose()
            else:
                still.append((since, source))
        self._retired = still

    async def aclose(self) -> None:
        await self._close_retired(every=True)
        if self._source is not None:
            await self._source.aclose()
            self._source = None
