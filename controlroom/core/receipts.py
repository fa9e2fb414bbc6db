"""A flag change's receipt from the fleet, as the CLI's table and the app's dialogs show it: one line.

The receipt is the plain data FlagService.fleet_receipt gives (and the server sends): ``{"confirmed": N, "total": M,
"failed": [[host, class, reason], ...]}``, or None for a flag never changed.
"""

from __future__ import annotations

SHOWN = 5  # failed hosts named before "N more"


def receipt_text(rc: dict | None) -> str:
    """'150/150' or '148/150 · web020 refused · web030 exit 1'."""
    if not rc:
        return "never changed"
    text = f"{rc['confirmed']}/{rc['total']}"
    for host, cls, _ in rc["failed"][:SHOWN]:
        text += f" · {host} {cls}"
    if len(rc["failed"]) > SHOWN:
        text += f" · {len(rc['failed']) - SHOWN} more"
    return text
