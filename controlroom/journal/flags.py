"""The flag history in the journal: every change (who, when, from, to, why, how many hosts confirmed) and each
host's latest flags receipt, so that stragglers outlive a server. Journal holds their SQL; this is their typed face.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controlroom.core import events as ev
from controlroom.core.identity import Actor


class ReceiptStatus(StrEnum):
    """Where one host stands with one flag change (the journal's and the wire's string is the value)."""

    CONFIRMED = "confirmed"  # the host holds the version, hash checked, reloaded
    FAILED = ev.FAILED.value  # tried, and it did not take: cls and reason say why (retried in the background)
    PENDING = ev.PENDING.value  # meant for the host, not answered yet
    DISMISSED = "dismissed"  # the operator stopped waiting for it


CONFIRMED, FAILED, PENDING, DISMISSED = ReceiptStatus


@dataclass(frozen=True)
class Receipt:
    """What one host holds, or was last meant to hold: the version, its sha256, and whether it confirmed."""

    host: str
    version: int
    sha256: str
    status: ReceiptStatus
    cls: str = ""  # the failure's class: refused, auth, timeout, exit 1, hash, ...
    reason: str = ""
    at: float = 0.0

    def wire(self) -> dict:
        return {"host": self.host, "version": self.version, "status": self.status, "class": self.cls,
                "reason": self.reason, "at": self.at}


class FlagHistory:
    """The flag tables of a journal: its changes, the latest first, and each host's latest receipt."""

    def __init__(self, journal) -> None:
        self.j = journal

    def changes(self, name: str | None = None, limit: int = 50, version: int | None = None) -> list[dict]:
        """The latest changes first (of one flag, or the one of that version)."""
        return self.j.flag_changes(name, limit, version)

    def pending(self) -> list[dict]:
        """The changes whose push never ended (their server died mid-way), the oldest first."""
        return list(reversed(self.j.flag_changes(limit=1000, pending=True)))

    def value(self, name: str, default: str) -> str:
        """The flag's value as its latest change left it (``default`` when it never changed)."""
        last = self.changes(name, limit=1)
        return last[0]["new"] if last else default

    def begun(self, change: dict, receipts: list[Receipt], event: ev.Event) -> None:
        """A change (version, at, user, flag, old, new, reason, hosts, state: every flag's value) is on the record as
        pending, with each target's receipt as pending and its event, before any host is written."""
        self.j.flag_change_begun({k: change[k] for k in ("version", "at", "user", "flag", "old", "new", "reason",
                                                          "hosts", "state")},
                                 [_row(r) for r in receipts], event)

    def ended(self, change: dict, confirmed: int, failed: list, receipts: list[Receipt], *, line: str,
              actor: Actor) -> None:
        """The push ended (or was settled): receipts, count, how it stands for every client (FlagChanged) and the
        deploy log's FLAG ``line`` by ``actor`` (who changed it), in one transaction."""
        self.j.flag_change_ended(
            change["version"], confirmed, failed, [_row(r) for r in receipts],
            ev.FlagChanged(0, flag=change["flag"], old=change["old"], new=change["new"], user=change["user"],
                           reason=change["reason"], version=change["version"], confirmed=confirmed,
                           total=change["hosts"], failed=tuple(tuple(f) for f in failed)),
            ev.LogEntryAdded(0, user=actor.user, kind="FLAG", text=line), actor=actor)

    def finished(self, version: int, confirmed: int, failed: list) -> None:
        """A change's count after the fact (a straggler confirmed late)."""
        self.j.flag_change_counted(version, confirmed, failed)

    def save(self, *receipts: Receipt) -> None:
        """Keep each host's latest receipt, all in one transaction."""
        self.j.save_flag_receipts([_row(r) for r in receipts])

    def receipts(self) -> dict[str, Receipt]:
        return {r[0]: Receipt(r[0], r[1], r[2], ReceiptStatus(r[3]), *r[4:]) for r in self.j.flag_receipts()}


def _row(r: Receipt) -> tuple:
    return (r.host, r.version, r.sha256, r.status, r.cls, r.reason, r.at)
