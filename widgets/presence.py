"""Who is attached to the control-room server, in one line: user, from where, app/CLI/web, watching or driving.

Hidden while this app is the only one attached. Names and addresses come from the server (peer credentials and
the session's origin) and are cleaned here; the line is never read as markup.
"""

from __future__ import annotations

from textual.widgets import Static

from controlroom.core.text import clean
from widgets.repaint import update_in_place

KIND = {"app": "app", "cli": "CLI", "web": "web"}


def presence_text(clients: list[dict], me: int = 0) -> str:
    """'attached: you (app, watching) · bob from 10.0.0.5 (CLI, driving)'; "" when no one else is attached."""
    if not any(c.get("no") != me for c in clients):
        return ""
    parts = []
    for c in clients:
        who = "you" if me and c.get("no") == me else clean(c.get("user"), 32)
        where = f" from {clean(c.get('origin'), 64)}" if c.get("origin") else ""
        kind = KIND.get(str(c.get("client")), clean(c.get("client"), 8))
        role = "driving" if c.get("role") == "driving" else "watching"
        parts.append(f"{who}{where} ({kind}, {role})")
    return "attached: " + " · ".join(parts)


class PresenceLine(Static):
    DEFAULT_CSS = """
    PresenceLine { height: 1; display: none; padding: 0 1; color: $text-muted; }
    PresenceLine.-shown { display: block; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.text = ""

    def show(self, clients: list[dict], me: int = 0) -> None:
        """Show who is attached now (hidden when we are alone)."""
        self.text = presence_text(clients, me)
        update_in_place(self, self.text)
        self.set_class(bool(self.text), "-shown")
