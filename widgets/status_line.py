"""The status line: one line over the footer saying what went wrong out of sight (a chat channel that failed).

Hidden until there is something to say; the latest notice replaces the one before, with its time. The text comes
from the server (cleaned again here) and is never read as markup.
"""

from __future__ import annotations

import time

from textual.widgets import Static

from controlroom.text import clean


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; display: none; padding: 0 1; color: $text-warning; }
    StatusLine.-shown { display: block; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.text = ""

    def say(self, text: str, at: float | None = None) -> None:
        """Show this notice (one line), stamped with its time."""
        self.text = clean(text, 300)
        self.update(f"{time.strftime('%H:%M:%S', time.localtime(at or time.time()))} {self.text}")
        self.add_class("-shown")
