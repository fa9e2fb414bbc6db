"""The rule a revision name obeys (a tag, branch or commit name): read by the config ([release] staged), the
host-side files (a receipt's previous revision) and git (sources.git), so it lives below all of them.

It imports the standard library only.
"""

from __future__ import annotations

import re

_REVISION = re.compile(r"[A-Za-z0-9._/-]+")
MAX_REVISION = 200


def revision_problem(rev: str) -> str | None:
    """What is wrong with a revision name, or None when it is a good one."""
    if not rev:
        return "empty revision"
    shown = repr(
        rev if len(rev) <= 60 else rev[:60] + "..."
    )  # repr: control characters never reach a terminal
    if len(rev) > MAX_REVISION:
        return f"revision {shown} is longer than {MAX_REVISION} characters"
    if rev.startswith("-"):
        return f"revision {shown} must not start with '-'"
    if ".." in rev:
        return f"revision {shown} must not contain '..'"
    if not _REVISION.fullmatch(rev):
        return f"revision {shown} may hold only letters, digits, '.', '_', '/' and '-'"
    return None
