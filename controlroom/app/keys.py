"""The control room's keys: one table for the footer, the command palette and the help screen."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    key: str
    action: str
    label: str
    help: str


# One table for the footer, the command palette and the help screen.
ACTIONS = (
    Action("d", "deploy", "Deploy", "Deploy the staged revision to the fleet, phase by phase"),
    Action(
        "g",
        "proceed",
        "Proceed",
        "Start the next phase (past a gate), or go on past an exceeded failure budget",
    ),
    Action("p", "pause", "Pause", "Start no new host; hosts in flight finish"),
    Action("p", "resume", "Resume", "Resume the paused rollout"),
    Action("R", "resume_deploy", "Resume deploy",
           "Carry on a deploy that stopped without finishing (halted, interrupted, its process gone)"),
    Action("a", "abort", "Abort", "Cancel the hosts in flight and skip the pending ones"),
    Action(
        "b", "rollback", "Roll back", "Put the previous revision back on every done host, latest phase first"
    ),
    Action("r", "retry", "Retry", "Run the selected failed host again"),
    Action("s", "skip", "Skip", "Give up on the selected host in this rollout (counts against the budget)"),
    Action("enter", "open_host", "Open host", "Show the selected host's live output, result and timings"),
    Action("l", "lock", "Lock", "Lock the fleet with a message: NO DEPLOY PLEASE"),
    Action("u", "unlock", "Unlock", "Release the fleet lock"),
    Action("m", "log_entry", "Log entry", "Add an entry to the deploy log"),
    Action("k", "kill_switch", "Kill switch",
           "Turn a kill switch off (or on) on every host, never blocked: type part of its name, enter, confirm"),
    Action("S", "stage", "Stage",
           "Run [release] stage for the staged revision in the server; its output streams, the diff pane follows"),
    Action("slash", "search_diff", "Search diff",
           "Search the staging diff: enter goes to the next match, n/N next/previous, escape closes"),
    Action("t", "timeline", "Timeline",
           "The current (or latest) deploy on one time axis: move through it and see the fleet as it was then"),
    Action("H", "history", "History",
           "Past deploys, rollbacks, stages and flag changes; enter on a deploy opens its timeline"),
    Action("question_mark", "help", "Help", "Keys, host symbols and what each pane is for"),
)
# The keys that move around rather than act: the help screen lists them after ACTIONS, the README the same.
NAV_KEYS = (
    ("tab, shift+tab", "Focus the next/previous pane: rollout, deploy log, flags, staging diff, metrics"),
    ("1-5", "Focus that pane (on small terminals its tab); the same digit again fills the screen with it, "
            "again or escape puts it back"),
    ("arrows", "Move the cursor in the focused pane: hosts in the grid, flags in the flags pane, lines elsewhere"),
    ("space, %", "In the flags pane: turn the selected flag on/off, or to a percentage (enter: its history)"),
    ("v", "In the flags pane: read every host's flags file back and name the hosts that drifted"),
    ("home, end", "In the timeline (t): the first event; the last (following a live deploy again). Left/right one "
                  "event, shift+left/right a minute, n/N the next/previous failure or gate, enter opens an entry"),
    ("escape", "Put a pane that fills the screen back; else dismiss the error in the status line"),
    ("ctrl+p", "Command palette: every action by name"),
    ("q", "Quit (a deploy keeps running in the server; `controlroom` re-attaches)"),
)
_KEY_NAMES = {"question_mark": "?", "enter": "enter", "slash": "/"}
# In the footer only while no rollout runs (an 80-column footer has room for the rollout's own actions only);
# their keys work all the time through a hidden twin binding with the argument 1.
SECONDARY = ("lock", "unlock", "log_entry", "stage", "quit")
# In the footer only when every pane is on screen (a wide terminal: an 80-column footer is full); the key works
# everywhere, and help and the palette always list it.
WIDE_ONLY = ("kill_switch",)
# Never in the footer (help and the palette list them): enter on the grid, `/` in the diff, the record's t and H.
HIDDEN = ("open_host", "search_diff", "timeline", "history")


def bindings(tabs: Iterable[str]) -> list[Binding]:
    out = []
    for a in (*ACTIONS, Action("q", "quit", "Quit", "Quit the control room")):
        if a.action in SECONDARY or a.action in WIDE_ONLY:
            # the kill switch goes first (priority), so a host's view, a modal screen, still hears it
            first = a.action in WIDE_ONLY
            out.append(Binding(a.key, f"{a.action}(0)", a.label, tooltip=a.help, priority=first))
            out.append(Binding(a.key, f"{a.action}(1)", a.label, show=False, priority=first))
        else:
            out.append(Binding(a.key, a.action, a.label, tooltip=a.help, show=a.action not in HIDDEN))
    out += [
        Binding(str(i + 1), f"show_tab('{t}')", f"Show pane {i + 1}", show=False) for i, t in enumerate(tabs)
    ]
    return out

# The intent each acting key sends: a read-only app sends it anyway when pressed, so the server's refusal says why.
INTENT_OF = {"d": "deploy", "g": "proceed", "p": "pause", "R": "resume", "a": "abort", "b": "rollback",
             "r": "retry", "s": "skip", "l": "lock", "u": "unlock", "m": "log_add", "k": "flag_set",
             "S": "stage"}
