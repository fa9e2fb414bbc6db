"""The command palette's own commands: every action of the key table (app/keys.py) that is offered now, with its
key ("Pause (p)"), and one command a kill switch ("Kill switch beehive (now on)"). Textual's own system commands
(theme, keys, screenshot, quit) come from its SystemCommandsProvider beside this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from controlroom.app.keys import _KEY_NAMES, ACTIONS


@dataclass(frozen=True)
class Command:
    title: str
    help: str
    run: Callable[[], object]


class Commanded(Protocol):
    """What the palette asks of the app: is an action offered, and the commands of the moment (kill switches)."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None: ...

    def palette_extras(self) -> Iterable[tuple[str, str, Callable[[], object]]]: ...


def commands(app: Commanded) -> list[Command]:
    """The palette's commands now: the offered actions (each runs the app's action_<name>), then the app's
    commands of the moment."""
    out = []
    for a in ACTIONS:
        if app.check_action(a.action, ()):
            key = _KEY_NAMES.get(a.key, a.key)
            out.append(Command(f"{a.label} ({key})", a.help, getattr(app, f"action_{a.action}")))
    out += [Command(title, help_, run) for title, help_, run in app.palette_extras()]
    return out


class ActionsProvider(Provider):
    """The control room's commands in the palette, built from the one key table."""

    def _commands(self) -> list[Command]:
        return commands(cast(Commanded, self.app))  # the provider is only ever the ControlRoom's

    async def discover(self) -> Hits:
        for c in self._commands():
            yield DiscoveryHit(c.title, c.run, help=c.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for c in self._commands():
            score = matcher.match(c.title)
            if score > 0:
                yield Hit(score, matcher.highlight(c.title), c.run, text=c.title, help=c.help)
