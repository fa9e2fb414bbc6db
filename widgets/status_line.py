"""The status line: one line over the footer saying what went wrong: out of sight (a chat channel that failed),
or an error whose notification is gone (it stays here until escape dismisses it).

Hidden until there is something to say; the latest notice replaces the one before, with its time. The text comes
from the server or the app (cleaned again here) and is never read as markup.
"""

from __future__ import annotations

import time

from textual.widgets import Static

from controlroom.core.text import clean


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; display: none; padding: 0 1; color: $text-warning; }
    StatusLine.-shown { display: block; }
    StatusLine.-error { color: $text-error; text-style: bold; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.text = ""

    def say(self, text: str, at: float | None = None, *, error: bool = False) -> None:
        """Show this notice (one line), stamped with its time; an error is marked so (not by colour alone)."""
        self.text = clean(text, 300)
        mark = "✗ " if error else ""
        self.update(f"{time.strftime('%H:%M:%S', time.localtime(at or time.time()))} {mark}{self.text}"
                    f"{' · escape dismisses' if error else ''}")
        self.set_class(error, "-error")
        self.add_class("-shown")

    @property
    def shown(self) -> bool:
        return self.has_class("-shown")

    def dismiss(self) -> None:
        self.text = ""
        self.remove_class("-shown", "-error")
