"""The flags pane: every feature flag and kill switch, its value, its fleet receipt, who changed it and when.

A kill switch is marked with a symbol as well as a colour (NO_COLOR still shows it). What people and hosts wrote
(names, reasons, failure classes) is cleaned and shown as text, never as markup. The pane only shows and asks:
`space` (on/off), `%` (a percentage), `enter` (the flag's history) and `v` (read every host's file back) post a
message the app acts on.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from controlroom.core.text import clean

KILL_MARK = "⚠"  # a kill switch, on a monochrome screen too
KEYS_LINE = "space on/off · % percentage · enter history · v verify · k kill switch"
FEATURE_MARK = "·"
# what matters in an emergency first: a narrow pane shows the mark, the name, the value and the receipt
COLUMNS = ("flag", "value", "receipt", "kind", "changed")


def kind_label(kind: str) -> str:
    return "kill switch" if kind == "kill_switch" else "feature"


def value_style(value: str) -> str:
    return "bold green" if value == "on" else "bold red" if value == "off" else "bold yellow"


def when(at: float) -> str:
    """HH:MM today, else the date too."""
    if not at:
        return ""
    lt = time.localtime(at)
    same_day = time.strftime("%Y-%m-%d", lt) == time.strftime("%Y-%m-%d")
    return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", lt)


def receipt_line(rc: dict | None) -> str:
    """'150/150', '148/150 · web020 refused · web030 exit 1', or while a push runs '37/150 · 113 pushing'."""
    if not rc:
        return "never changed"
    bad = [f for f in rc["failed"] if f[1] != "pending"]
    pending = len(rc["failed"]) - len(bad)
    text = f"{rc['confirmed']}/{rc['total']}" + (f" · {pending} pushing" if pending else "")
    for host, cls, _why in bad[:5]:
        text += f" · {host} {cls}"
    if len(bad) > 5:
        text += f" · {len(bad) - 5} more"
    return clean(text, 200)


def changed_text(row: dict) -> str:
    if not row.get("changed_by"):
        return f"default {clean(str(row.get('default', '')), 8)}"
    why = f" ({clean(row['reason'], 80)})" if row.get("reason") else ""
    return f"{clean(row['changed_by'], 32)} {when(row.get('changed_at') or 0)}{why}"


class FlagTable(DataTable):
    """One row a flag; the cursor picks the flag the keys act on."""

    # not in the footer (an 80-column footer has room for the rollout's keys only): the pane's own line says them
    BINDINGS = [
        Binding("space", "flip", "On/off", tooltip="Turn the selected flag on or off on every host", show=False),
        Binding("percent_sign", "percent", "Percentage", tooltip="Set the selected flag to a percentage",
                show=False),
        Binding("enter", "history", "History", tooltip="Who changed the selected flag, when, from, to and why",
                show=False),
        Binding("v", "verify", "Verify", tooltip="Read every host's flags file back (sha256) and name the drifted",
                show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)

    def on_mount(self) -> None:
        for c in COLUMNS:
            self.add_column(c, key=c)

    def _update_dimensions(self, new_rows) -> None:
        # Textual's DataTable sizes its columns for new rows when next idle, but keeps the rows it drew before that
        # in a cache whose key has no column width: a row painted between add_row and that idle stayed cut at its
        # header's width ("⚠ ne", "kill") for good. A flag's name must show whole: drop those drawings.
        widths = [c.content_width for c in self.ordered_columns]
        super()._update_dimensions(new_rows)
        if widths != [c.content_width for c in self.ordered_columns]:
            self._clear_caches()
            self.refresh()

    @property
    def selected_flag(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value if key is not None else None

    def _post(self, cls) -> None:
        name = self.selected_flag
        if name is not None:
            self.post_message(cls(name))

    def action_flip(self) -> None:
        self._post(FlagsPane.Flip)

    def action_percent(self) -> None:
        self._post(FlagsPane.Percent)

    def action_history(self) -> None:
        self._post(FlagsPane.History)

    def action_verify(self) -> None:
        self.post_message(FlagsPane.Verify())


class FlagsPane(Vertical):
    """The flags as the server last said (`show`), and a line with the pane's keys under them."""

    DEFAULT_CSS = """
    FlagsPane #flag-table { height: 1fr; }
    FlagsPane #flags-keys { color: $text-muted; height: auto; }
    """

    class Flip(Message):
        """space on a flag: turn it on or off."""

        def __init__(self, flag: str) -> None:
            super().__init__()
            self.flag = flag

    class Percent(Flip):
        """% on a flag: set it to a percentage."""

    class History(Flip):
        """enter on a flag: its history."""

    class Verify(Message):
        """v: read every host's flags file back now."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[dict] = []
        self.summary = "asking the server for the flags…"
        self.verified = ""  # what the last read-back of every host's file found

    def compose(self) -> ComposeResult:
        yield Static(self.summary, id="flags-summary", markup=False)
        yield FlagTable(id="flag-table")
        yield Static(KEYS_LINE, id="flags-keys", markup=False)

    def on_mount(self) -> None:
        self.border_title = "Flags"

    @property
    def table(self) -> FlagTable:
        return self.query_one(FlagTable)

    def row_of(self, name: str) -> dict | None:
        return next((r for r in self.rows if r["name"] == name), None)

    def line_of(self, name: str) -> str:
        """The row of one flag as plain text, as the operator reads it (the tests read it too)."""
        r = self.row_of(name)
        if r is None:
            return ""
        return "  ".join(c.plain for c in self.cells(r))

    @staticmethod
    def cells(r: dict) -> tuple[Text, ...]:
        kill = r["kind"] == "kill_switch"
        value = clean(str(r["value"]), 8)
        name = Text(f"{KILL_MARK if kill else FEATURE_MARK} ", style="bold red" if kill else "dim")
        name.append(clean(r["name"], 40), style="bold" if kill else "")
        return (
            name,
            Text(value.upper() if value in ("on", "off") else value, style=value_style(value)),
            Text(receipt_line(r.get("receipt")),
                 style="yellow" if (r.get("receipt") or {}).get("failed") else ""),
            Text(kind_label(r["kind"]), style="bold red" if kill else "dim"),
            Text(changed_text(r)),
        )

    def show_verified(self, rows: list[dict]) -> None:
        """What `flags_verify` found: every host holds what it was sent, or the hosts that do not and why."""
        bad = [r for r in rows if r["status"] not in ("ok", "unpushed")]
        text = f"verified {time.strftime('%H:%M:%S')}: {len(rows) - len(bad)}/{len(rows)} hold what they were sent"
        for r in bad[:5]:
            text += f" · {r['host']} {r['status']}"
        if len(bad) > 5:
            text += f" · {len(bad) - 5} more"
        self.verified = clean(text, 300)
        self._show_summary()

    def _show_summary(self) -> None:
        text = self.summary + (f"\n{self.verified}" if self.verified else "")
        self.query_one("#flags-summary", Static).update(Text(text))

    def show(self, state: dict) -> None:
        """Show the server's `flags` answer, keeping the cursor on the flag it was on."""
        self.rows = list(state.get("flags") or ())
        hosts = int(state.get("hosts") or 0)
        summary = f"{clean(str(state.get('file', '')), 40)} v{state.get('version', 0)} · {hosts} hosts"
        if state.get("retrying"):
            summary += " · retrying " + clean(", ".join(state["retrying"]), 200)
        if not self.rows:
            summary += " · no flags: add [flags.NAME] tables to the config"
        self.summary = summary
        self._show_summary()
        table = self.table
        keep = table.selected_flag
        table.clear()
        for r in self.rows:
            table.add_row(*self.cells(r), key=r["name"])
        if keep is not None:
            idx = next((i for i, r in enumerate(self.rows) if r["name"] == keep), 0)
            table.move_cursor(row=idx, animate=False)
