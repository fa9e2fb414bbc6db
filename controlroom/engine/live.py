"""What the fleet runs by the journal's record: host -> revision, read from a state directory's journal.

The staging diff (sources/stagediff.py) compares the live revision with the staged one; the revisions are the
journal's, read here for the diff's callers (`controlroom diff`, the app's staging pane): sources read no journal.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from controlroom.config.config import Config


def live_counts(cfg: Config, unrecorded: str | None = None) -> Counter:
    """revision -> how many hosts run it, by the journal's record (empty when nothing is recorded or the journal
    cannot be read). With ``unrecorded`` (what the fleet ran when a host was asked), the inventory's hosts that no
    deploy has reached yet count as running it: in the middle of a first deploy, the 2 canary hosts on r2307 are
    not the whole fleet."""
    return Counter(live_by_host(cfg, unrecorded).values())


def live_by_host(cfg: Config, unrecorded: str | None = None) -> dict[str, str]:
    """host -> the revision it runs, as live_counts counts them (a client then follows the host events)."""
    from controlroom.journal.journal import Journal, unreached

    if not cfg.state.journal and not (Path(cfg.state.dir) / "journal.db").exists():
        return {}
    try:
        j = Journal.open(Path(cfg.state.dir), readonly=True, url=cfg.state.journal)
    except Exception:  # noqa: BLE001 - unreadable journal: the caller asks the server instead
        return {}
    try:
        recorded = j.live_revisions()
    finally:
        j.close()
    out = {h: live for h, (live, _) in recorded.items() if live}
    if out and unrecorded:
        out.update(dict.fromkeys(unreached(recorded, cfg.hosts), unrecorded))
    return out
