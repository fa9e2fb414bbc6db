"""The staging diff pane: what the staged revision changes against the live one (its own issue fills it in)."""

from __future__ import annotations

from textual.widgets import Static


class StagingDiffPane(Static):
    """A titled place in the layout; says what will be shown here, shows no made-up data."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            "The staged revision's changes against the live one (files, commits, diff) will be shown here.",
            **kwargs,
        )

    def on_mount(self) -> None:
        self.border_title = "Staging diff"
