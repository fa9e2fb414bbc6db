"""The flag dialogs: the confirmation that says exactly what a change will do (with an optional reason), the kill
switch picker filtered as you type, and one flag's history. Text from people and hosts is cleaned, never markup."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from controlroom.core.receipts import receipt_text
from controlroom.core.text import clean
from widgets.dialogs import clean_body
from widgets.flags import KILL_MARK


class FlagConfirmDialog(ModalScreen[str | None]):
    """"Turn beehive OFF on 150 hosts. Reason: __": enter does it. Dismisses with the reason ("" when none was
    typed), or None when cancelled."""

    DEFAULT_CSS = """
    FlagConfirmDialog { align: center middle; }
    FlagConfirmDialog > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $error; background: $surface; padding: 1 2;
    }
    FlagConfirmDialog #flag-confirm-title { text-style: bold; width: 100%; }
    FlagConfirmDialog #flag-confirm-body { width: 100%; margin: 1 0; }
    FlagConfirmDialog #flag-confirm-keys { color: $text-muted; width: 100%; }
    FlagConfirmDialog Horizontal { height: auto; align: right middle; margin-top: 1; }
    FlagConfirmDialog Button { margin-left: 2; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, body: str, confirm: str, *, reason: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm
        self.reason = reason  # offered, editable (a gate's halt says why already)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(clean(self.title_text), id="flag-confirm-title", markup=False)
            yield Static(clean_body(self.body), id="flag-confirm-body", markup=False)
            yield Label("Reason:", markup=False)
            yield Input(value=clean(self.reason, 300), id="flag-reason",
                        placeholder="why (optional: the deploy log and the history show it)")
            yield Static("enter does it · esc cancels", id="flag-confirm-keys", markup=False)
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button(self.confirm_label, variant="error", id="confirm")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        self.dismiss(self.query_one(Input).value.strip())

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class KillSwitchPicker(ModalScreen[str | None]):
    """`k`: the kill switches, filtered as you type; enter picks the highlighted one. Dismisses with its name."""

    DEFAULT_CSS = """
    KillSwitchPicker { align: center middle; }
    KillSwitchPicker > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $warning; background: $surface; padding: 1 2;
    }
    KillSwitchPicker #picker-title { text-style: bold; }
    KillSwitchPicker OptionList { height: auto; max-height: 12; margin-top: 1; }
    KillSwitchPicker #picker-keys { color: $text-muted; margin-top: 1; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("down", "move(1)", "Next", show=False),
        Binding("up", "move(-1)", "Previous", show=False),
    ]

    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.rows = [r for r in rows if r["kind"] == "kill_switch"]
        self.shown: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Kill switch: type part of its name", id="picker-title", markup=False)
            yield Input(placeholder="e.g. search", id="picker-filter")
            yield OptionList(id="picker-list")
            yield Static("enter picks (a confirmation follows) · ↑↓ move · esc cancels", id="picker-keys",
                         markup=False)

    def on_mount(self) -> None:
        self._fill("")
        self.query_one(Input).focus()

    def _fill(self, typed: str) -> None:
        typed = typed.strip().lower()
        ol = self.query_one(OptionList)
        ol.clear_options()
        self.shown = []
        for r in self.rows:
            if typed and typed not in r["name"].lower() and typed not in r.get("description", "").lower():
                continue
            value = clean(str(r["value"]), 8)
            label = Text(f"{KILL_MARK} ")
            label.append(clean(r["name"], 40), style="bold")
            label.append(f"  {value.upper() if value in ('on', 'off') else value}")
            if r.get("description"):
                label.append(f"  {clean(r['description'], 60)}", style="dim")
            ol.add_option(Option(label, id=r["name"]))
            self.shown.append(r["name"])
        if not self.shown:
            ol.add_option(Option(Text("no kill switch matches" if self.rows else
                                      "no kill switches in the config ([flags.NAME] kind = \"kill_switch\")"),
                                 disabled=True))
        else:
            ol.highlighted = 0

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def action_move(self, by: int) -> None:
        ol = self.query_one(OptionList)
        if self.shown:
            ol.highlighted = max(0, min(len(self.shown) - 1, (ol.highlighted or 0) + by))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        ol = self.query_one(OptionList)
        if self.shown:
            self.dismiss(self.shown[ol.highlighted or 0])

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class FlagHistoryScreen(ModalScreen[None]):
    """enter on a flag: every change of it, latest first: who, when, from, to, why, receipt."""

    DEFAULT_CSS = """
    FlagHistoryScreen { align: center middle; }
    FlagHistoryScreen > Vertical {
        width: 120; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    FlagHistoryScreen #history-title { text-style: bold; }
    FlagHistoryScreen DataTable { height: auto; max-height: 20; margin-top: 1; }
    FlagHistoryScreen #history-keys { color: $text-muted; margin-top: 1; }
    """

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("enter", "close", "Close", show=False),
    ]

    def __init__(self, flag: str, changes: list[dict]) -> None:
        super().__init__()
        self.flag = flag
        self.changes = changes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"History of {clean(self.flag, 40)}", id="history-title", markup=False)
            yield DataTable(id="history-table", cursor_type="row")
            if not self.changes:
                yield Static("never changed: it holds its default from the config", markup=False)
            yield Static("esc, q or enter closes", id="history-keys", markup=False)

    def on_mount(self) -> None:
        t = self.query_one(DataTable)
        for c in ("when", "who", "from", "to", "why", "receipt"):
            t.add_column(c, key=c)
        for row in self.lines():
            t.add_row(*(Text(c) for c in row))
        t.focus()

    def lines(self) -> list[tuple[str, ...]]:
        """One row a change as plain cleaned text (the tests read these)."""
        out = []
        for ch in self.changes:
            rc = {"confirmed": ch["confirmed"], "total": ch["hosts"], "failed": ch["failed"]}
            out.append((time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ch["at"])), clean(ch["user"], 32),
                        clean(ch["old"], 8), clean(ch["new"], 8), clean(ch["reason"] or "", 120),
                        clean(receipt_text(rc), 200)))
        return out

    def action_close(self) -> None:
        self.dismiss(None)
