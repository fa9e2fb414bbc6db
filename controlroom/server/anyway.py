"""Acting on a deploy another person drives, from a command line: "alice is driving r2307 from 10.0.0.5; act
anyway?" is answered by the CLI's --yes, or by the person at the terminal. Light (no asyncio until asked), so the
command line sets --yes before it imports its client."""

from __future__ import annotations

import sys

_YES = False  # the command line said --yes: act on another person's deploy without asking


def cli_answers(yes: bool) -> None:
    """The CLI's --yes for this process: acting on a deploy another person drives without asking."""
    global _YES
    _YES = bool(yes)


async def terminal_anyway(question: str) -> bool:
    """The question on the terminal; without one (or at its end), no, unless --yes. A terminal that goes away
    never says yes."""
    if _YES:
        return True
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    import asyncio

    from controlroom.core.text import clean

    def ask() -> bool:
        try:
            return input(f"{clean(question, 300)} [y/N] ").strip().lower() in ("y", "yes")
        except (EOFError, KeyboardInterrupt, OSError):
            return False

    return await asyncio.to_thread(ask)
