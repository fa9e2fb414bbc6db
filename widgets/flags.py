"""The flags pane: feature flags and kill switches (its own issue fills it in)."""

from __future__ import annotations

from textual.widgets import Static


class FlagsPane(Static):
    """A titled place in the layout; says what will be shown here, shows no made-up data."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            "Feature flags and kill switches, their state on the fleet and a switch to flip them, "
            "will be shown here.",
            **kwargs,
        )

    def on_mount(self) -> None:
        self.border_title = "Flags"
