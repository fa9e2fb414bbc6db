"""The metrics pane: the key series and their thresholds (its own issue fills it in)."""

from __future__ import annotations

from textual.widgets import Static


class MetricsPane(Static):
    """A titled place in the layout; says what will be shown here, shows no made-up data."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            "Key metrics (errors, latency) as live sparklines against their thresholds will be shown here.",
            **kwargs,
        )

    def on_mount(self) -> None:
        self.border_title = "Metrics"
