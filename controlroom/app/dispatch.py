"""One dispatcher for the server's events: each goes, in order, to the controllers that asked for its kind (the
board first, so every controller sees the board as the event left it)."""

from __future__ import annotations

from collections.abc import Callable

from controlroom.core import events as ev

Handler = Callable[[ev.Event, int], None]


class Dispatcher:
    """kind of event -> the handlers that want it, in the order they were added."""

    def __init__(self) -> None:
        self._routes: dict[type, list[Handler]] = {}

    def add(self, handler: Handler, *kinds: type) -> None:
        for kind in kinds:
            self._routes.setdefault(kind, []).append(handler)

    def __call__(self, e: ev.Event, seq: int = 0) -> None:
        for handler in self._routes.get(type(e), ()):
            handler(e, seq)
