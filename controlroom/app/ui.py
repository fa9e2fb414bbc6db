"""What the app's controllers may do to the screen, and the guard that makes every action act once.

`Ui` is the narrow face of the Textual app a controller is given: say a line, ask with a dialog, show a screen, run
a worker, know what is on top. `Flows` runs each operator flow (a dialog, an intent on its way) at most once at a
time, and asks first whose deploy it is when another person drives it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.screen import Screen
from textual.worker import Worker

from controlroom.core.text import clean
from widgets.dialogs import ConfirmDialog

if TYPE_CHECKING:
    from controlroom.app.room import Room

# the flows that decide on the deploy the server runs: a second person is asked whose it is first
DECISION_FLOWS = ("proceed", "pause", "abort", "rollback", "retry", "skip", "resume_deploy")


class Ui:
    """The app as its controllers see it."""

    def __init__(self, app: App, closing: Callable[[], bool]) -> None:
        self._app = app
        self._closing = closing

    @property
    def closing(self) -> bool:
        """The app is shutting down: workers leave the screen alone."""
        return self._closing()

    @property
    def screen(self) -> Screen:
        return self._app.screen

    @property
    def screen_stack(self) -> list[Screen]:
        return self._app.screen_stack

    def say(self, message: str, **kw) -> None:
        """A notification whose text may hold what people or hosts wrote: cleaned, never markup."""
        if "title" in kw:
            kw["title"] = clean(kw["title"])
        self._app.notify(clean(message), markup=False, **kw)

    async def ask(self, screen: Screen):
        """Push a dialog and wait for its answer (from a worker)."""
        return await self._app.push_screen_wait(screen)

    def show(self, screen: Screen, callback: Callable[[Any], None] | None = None) -> None:
        self._app.push_screen(screen, callback=callback)

    def run(self, work: Coroutine[Any, Any, Any] | Callable[[], Coroutine[Any, Any, Any]], *, group: str,
            name: str = "", exclusive: bool = False) -> Worker:
        """A worker of the app for ``work``: a coroutine, or an async function it calls once it starts."""
        return self._app.run_worker(work, name=name, group=group, exclusive=exclusive, exit_on_error=False)

    def later(self, callback: Callable[[], Any]) -> None:
        self._app.call_later(callback)

    def refresh_bindings(self) -> None:
        self._app.refresh_bindings()


class Flows:
    """The flow under way per action: a second press while the first is still asking, or still being answered,
    does nothing."""

    def __init__(self, room: Room, ui: Ui) -> None:
        self._room = room
        self._ui = ui
        self._flows: dict[str, Worker] = {}
        self._accepted_driver: tuple | None = None  # the operator said "act anyway" over this driver

    def under_way(self, *flows: str) -> bool:
        return any(not w.is_finished for f, w in self._flows.items() if f in flows)

    def once(self, flow: str, start: Callable[[], Worker]) -> Worker | None:
        """Start the worker of ``flow`` unless one is still under way (a dialog open, an intent unanswered).

        A decision on a deploy another person drives asks first whose it is ("alice is driving r2307 from
        10.0.0.5; act anyway?"); only a yes starts the flow."""
        w = self._flows.get(flow)
        if w is not None and not w.is_finished:
            return None
        question = self._room.driven_elsewhere() if flow in DECISION_FLOWS else None
        if question is None:
            self._flows[flow] = w = start()
            return w
        driver = self._room.driver or {}

        async def ask_first() -> None:
            answer = await self._ui.ask(ConfirmDialog("Another person drives this deploy", question, "Act anyway"))
            if not answer:
                return
            self._accepted_driver = (driver.get("user"), driver.get("no"))  # the server asks the same: yes
            try:
                with contextlib.suppress(Exception):  # the flow says its own failure
                    await start().wait()
            finally:
                self._accepted_driver = None

        self._flows[flow] = w = self._ui.run(ask_first(), group=f"ask-{flow}")
        return w

    def run_once(self, flow: str, work: Callable[[], Coroutine[Any, Any, Any]], *, group: str | None = None,
                 exclusive: bool = False) -> Worker | None:
        """`once` for a coroutine: its worker runs in ``group`` (the flow's name by default)."""
        return self.once(flow, lambda: self._ui.run(work(), group=group or flow, exclusive=exclusive))

    async def ask_anyway(self, question: str) -> bool:
        """The server says another person drives what an intent acts on: ask (once per driver and decision)."""
        d = self._room.driver or {}
        if self._accepted_driver is not None and self._accepted_driver == (d.get("user"), d.get("no")):
            return True  # asked just now, before the flow's own dialog
        return bool(await self._ui.ask(
            ConfirmDialog("Another person drives this deploy", question, "Act anyway")))
