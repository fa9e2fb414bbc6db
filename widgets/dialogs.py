"""Dialogs: a confirmation that says exactly what will happen, a failed gate's choices, a one-line prompt, and the
help screen."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from controlroom.core import events as ev
from controlroom.core.text import clean
from widgets.states import COLOR, LABEL, SYMBOL


def clean_body(body: str) -> str:
    """A dialog's body keeps its own paragraphs; each line of it is cleaned (the parts came from people)."""
    return "\n".join(clean(line, 2000) for line in body.split("\n"))


class ConfirmDialog(ModalScreen[str | None]):
    """Ask before something that cannot be undone. Dismisses with "yes" (or the reason typed), else None.

    With ``reason`` set, the dialog holds an input that must not be empty (forcing past a lock needs a why).
    """

    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical {
        width: 72; max-width: 100%; height: auto; max-height: 100%;
        border: thick $error; background: $surface; padding: 1 2;
    }
    ConfirmDialog #confirm-title { text-style: bold; width: 100%; }
    ConfirmDialog #confirm-body { width: 100%; margin: 1 0; }
    ConfirmDialog #confirm-keys { color: $text-muted; width: 100%; }
    ConfirmDialog Horizontal { height: auto; align: right middle; margin-top: 1; }
    ConfirmDialog Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("n", "cancel", "Cancel", show=False),
        Binding("y", "confirm", "Confirm", show=False),
    ]

    def __init__(self, title: str, body: str, confirm: str, *, reason: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Vertical():
            # titles and bodies name hosts, people and their reasons: text, never markup
            yield Label(clean(self.title_text), id="confirm-title", markup=False)
            yield Static(clean_body(self.body), id="confirm-body", markup=False)
            if self.reason is not None:
                yield Input(placeholder=self.reason, id="confirm-reason")
                yield Static("enter confirms · esc cancels", id="confirm-keys")
            else:
                yield Static(f"y: {self.confirm_label.lower()} · n or esc: cancel", id="confirm-keys")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button(self.confirm_label, variant="error", id="confirm")

    def on_mount(self) -> None:
        if self.reason is not None:
            self.query_one(Input).focus()
        else:
            self.query_one("#cancel", Button).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_confirm(self) -> None:
        if self.reason is None:
            self.dismiss("yes")
            return
        text = self.query_one(Input).value.strip()
        if not text:
            self.notify("say why: the reason goes into the deploy log", severity="warning")
            self.query_one(Input).focus()
            return
        self.dismiss(text)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#confirm")
    def _pressed_confirm(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _pressed_cancel(self) -> None:
        self.dismiss(None)


class OverrideDialog(ConfirmDialog):
    """Going on past what does not hold: a gate that failed or could not be checked, an exceeded failure budget, a
    skip past it. Names the failing values and asks for a typed reason (one key never passes: enter on an empty
    reason refuses, escape cancels). Dismisses with the reason, or None."""

    DEFAULT_CSS = """
    OverrideDialog > Vertical { border: thick $warning; }
    """

    def __init__(self, title: str, failing: list[str], consequence: str, confirm: str) -> None:
        lines = "\n".join(f"  ✗ {line}" for line in failing)
        body = f"What does not hold:\n{lines}\n\n{consequence}"
        super().__init__(title, body, confirm, reason="why go on anyway (the deploy log keeps it, with your name)")
        self.failing = failing


class QuitDialog(ModalScreen[str | None]):
    """Quit while a deploy runs in the server: it keeps running (quit), or abort it first. Dismisses with "quit",
    "abort", or None (stay)."""

    DEFAULT_CSS = """
    QuitDialog { align: center middle; }
    QuitDialog > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $warning; background: $surface; padding: 1 2;
    }
    QuitDialog #quit-title { text-style: bold; width: 100%; }
    QuitDialog #quit-body { width: 100%; margin: 1 0; }
    QuitDialog #quit-keys { color: $text-muted; width: 100%; }
    QuitDialog Horizontal { height: auto; align: right middle; margin-top: 1; }
    QuitDialog Button { margin-left: 2; }
    """

    BINDINGS = [
        Binding("escape", "stay", "Stay"),
        Binding("n", "stay", "Stay", show=False),
        Binding("y", "quit", "Quit", show=False),
        Binding("q", "quit", "Quit", show=False),
        Binding("a", "abort", "Abort", show=False),
    ]

    def __init__(self, body: str | Callable[[], str | None], *, may_abort: bool = True) -> None:
        """``body``: the text, or a function giving it now (a count of hosts in flight): the dialog follows it
        and closes (as "stay") once it gives None, when what it said is no longer so."""
        super().__init__()
        self.title_text = "Quit? The deploy keeps running"
        self._body_of = body if callable(body) else None
        self.body = (body() if callable(body) else body) or ""
        self.may_abort = may_abort

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="quit-title", markup=False)
            yield Static(clean_body(self.body), id="quit-body", markup=False)
            keys = "y or q: quit, the deploy keeps running · " + ("a: abort it, then quit · " if self.may_abort else "")
            yield Static(keys + "n or esc: stay", id="quit-keys", markup=False)
            with Horizontal():
                yield Button("Stay", id="stay")
                if self.may_abort:
                    yield Button("Abort the deploy and quit", variant="error", id="abort")
                yield Button("Quit, keep it running", variant="primary", id="quit")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()
        if self._body_of is not None:
            self.set_interval(1 / 4, self._follow, name="quit-body")  # the screen's: stops when it closes

    def _follow(self) -> None:
        if not self.is_current:
            return  # another dialog is on top, or this one is closing
        body = self._body_of() if self._body_of is not None else self.body
        if body is None:
            self._body_of = None
            self.dismiss(None)
        elif body != self.body:
            self.body = body
            self.query_one("#quit-body", Static).update(clean_body(body))

    def action_stay(self) -> None:
        self.dismiss(None)

    def action_quit(self) -> None:
        self.dismiss("quit")

    def action_abort(self) -> None:
        if self.may_abort:
            self.dismiss("abort")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)


class GateHaltDialog(ModalScreen[str | None]):
    """A gate failed and the next phase waits: what the operator can do, the kill switch first. Dismisses with
    "kill" (turn the guarding kill switch off; its confirmation follows), "recheck", "rollback", "proceed" (past
    the failed gate: OverrideDialog asks for the typed reason next), or None (decide later: g opens this again)."""

    DEFAULT_CSS = """
    GateHaltDialog { align: center middle; }
    GateHaltDialog > Vertical {
        width: 96; max-width: 100%; height: auto; max-height: 100%;
        border: thick $error; background: $surface; padding: 1 2;
    }
    GateHaltDialog #gate-title { text-style: bold; width: 100%; }
    GateHaltDialog #gate-body { width: 100%; margin: 1 0 0 0; }
    GateHaltDialog #gate-suspect { width: 100%; margin: 1 0; color: $warning; }
    GateHaltDialog #gate-choices { width: 100%; }
    GateHaltDialog #gate-keys { color: $text-muted; width: 100%; margin-top: 1; }
    """

    BINDINGS = [
        Binding("k", "choose('kill')", "Kill switch"),
        Binding("c", "choose('recheck')", "Check again"),
        Binding("b", "choose('rollback')", "Roll back"),
        Binding("g", "choose('proceed')", "Proceed anyway", show=False),
        Binding("escape", "choose('')", "Later"),
    ]

    def __init__(self, title: str, verdicts: str, *, kill_switch: str | None, guards: str = "",
                 may_rollback: bool = True, suspect: str = "") -> None:
        """suspect: the 'suspect: ...' lines of the failed series (show_suspect says them anew as they change)."""
        super().__init__()
        self.title_text = title
        self.verdicts = verdicts
        self.suspect = suspect
        self.kill_switch = kill_switch
        self.guards = guards
        self.may_rollback = may_rollback

    def choices(self) -> list[tuple[str, str, str]]:
        """(key, choice, what it does), in the order offered: the kill switch, checking again, rolling back."""
        out = []
        if self.kill_switch:
            out.append(("k", "kill", f"turn the kill switch {self.kill_switch} OFF on every host"
                        + (f" (it guards {self.guards})" if self.guards else "") + ", then check the gate again"))
        out.append(("c", "recheck", "check the gate again now"))
        if self.may_rollback:
            out.append(("b", "rollback", "roll back the hosts that took the new revision"))
        out.append(("g", "proceed", "go on past the failed gate anyway: asks for a typed reason; the deploy's "
                    "result stays marked"))
        return out

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(clean(self.title_text), id="gate-title", markup=False)
            yield Static(clean_body(self.verdicts), id="gate-body", markup=False)
            suspect = Static(clean_body(self.suspect), id="gate-suspect", markup=False)
            suspect.display = bool(self.suspect)
            yield suspect
            t = Text()
            for i, (key, _, what) in enumerate(self.choices()):
                if i:
                    t.append("\n")
                t.append(f" {key} ", style="bold reverse")
                t.append(f"  {clean(what)}")
            yield Static(t, id="gate-choices")
            yield Static("esc: decide later (g opens this again)", id="gate-keys", markup=False)

    def show_suspect(self, text: str) -> None:
        """The suspect lines as judged now (the series grew while the gate waits)."""
        self.suspect = text
        if self.is_mounted:
            line = self.query_one("#gate-suspect", Static)
            line.update(clean_body(text))
            line.display = bool(text)

    def action_choose(self, choice: str) -> None:
        offered = {c for _, c, _ in self.choices()}
        if not choice:
            self.dismiss(None)
        elif choice in offered:
            self.dismiss(choice)


class PromptDialog(ModalScreen[str | None]):
    """One line of text (a lock message, a log entry). Dismisses with the text, or None when cancelled."""

    DEFAULT_CSS = """
    PromptDialog { align: center middle; }
    PromptDialog > Vertical {
        width: 72; max-width: 100%; height: auto; border: thick $primary; background: $surface; padding: 1 2;
    }
    PromptDialog #prompt-title { text-style: bold; }
    PromptDialog #prompt-body { margin: 1 0 0 0; color: $text-muted; }
    PromptDialog Input { margin-top: 1; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, body: str, *, placeholder: str = "", value: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.placeholder = placeholder
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(clean(self.title_text), id="prompt-title", markup=False)
            yield Static(clean_body(self.body), id="prompt-body", markup=False)
            yield Input(value=clean(self.value), placeholder=self.placeholder, id="prompt-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self.dismiss(text)
        else:
            self.notify("type something, or esc to cancel", severity="warning")


HELP_INTRO = (
    "controlroom ships the staged revision to the fleet in phases and shows every host on the way.\n\n"
    "A deploy starts with d, which first says what it will ship, to how many hosts in which phases, past which gates "
    "(y goes, n does not). The canary phase runs first; the next phase waits for you (g proceeds) when the "
    "phase says so. When more hosts fail than a phase allows, the rollout halts by itself: the cursor goes to "
    "the failed host; retry it (r) or skip it (s), or abort (a). enter opens a host's live output, result and "
    "timings. Every action is also in the command palette (ctrl+p) and in the footer. Destructive actions "
    "(abort, roll back, skip, deploying past a lock) ask first and say what will happen; acting on a deploy another "
    "person drives asks whose it is first. A gate that fails (or cannot be checked) offers its kill switch first, "
    "checking again and rolling back; going past it, past a failure budget, or skipping a host past one needs a "
    "typed reason, and the deploy's result stays marked ⚠."
)


class HelpScreen(ModalScreen[None]):
    """`?`: the keys, the host symbols and what each pane is for."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 110; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 2;
    }
    HelpScreen Static { margin-top: 1; }
    """

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text("controlroom — help", style="bold"))
            yield Static(HELP_INTRO)
            t = Text()
            width = max((len(k) for k, _ in self.keys), default=4)
            for i, (key, what) in enumerate(self.keys):
                if i:
                    t.append("\n")
                t.append(f"{key:>{width}}", style="bold")
                t.append(f"  {what}")
            yield Static(t)
            hosts = Text("Hosts in the grid:\n")
            for i, s in enumerate(ev.HOST_STATES):
                if i:
                    hosts.append("   ")
                hosts.append(f"{SYMBOL[s]} {LABEL[s]}", style=COLOR[s])
            yield Static(hosts)
            yield Static("esc, q or ? closes this help.")

    def action_close(self) -> None:
        self.dismiss(None)
