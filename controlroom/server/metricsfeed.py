"""The server's one metrics source: kept open between the metrics pane's polls and the gates' checks (its
connections reused: bench/metrics.py, 1.7x -> 1.03x the floor), made again when the config's [metrics] changes."""

from __future__ import annotations

from controlroom.config.settings import MetricsSettings

# sources.metrics (and httpx) is imported when a source is first asked for: a server whose clients never read
# metrics never pays for it


class SharedSource:
    def __init__(self) -> None:
        self._source = None

    async def source(self, settings: MetricsSettings):
        """The source for these settings (the kept one while they hold), or None when none can be made (what
        reads it says why, per series)."""
        from controlroom.sources.metrics import MetricsError, make_source

        kept = self._source
        if kept is None or kept.settings != settings:
            if kept is not None:
                await kept.aclose()
            try:
                kept = make_source(settings)
            except MetricsError:
                kept = None
            self._source = kept
        return kept

    async def snapshot(self, settings: MetricsSettings, points: int) -> dict:
        """Every series now and over the window (metrics.snapshot), read from the kept source."""
        from controlroom.sources.metrics import snapshot

        return await snapshot(settings, points, source=await self.source(settings))

    async def aclose(self) -> None:
        if self._source is not None:
            await self._source.aclose()
            self._source = None
