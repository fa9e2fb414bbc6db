"""Live and staged revisions, and the staging diff, from git.

A revision is a name people and shells read (r2307, 4f1c2ab, release/2024-06-01): ``validate_revision`` keeps it to
``[A-Za-z0-9._/-]+`` with no leading '-' and no '..', so it can never be read as an option or a range. Every git
call that takes a revision puts it after ``--end-of-options`` and resolves it with ``rev-parse --verify`` first.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from controlroom.errors import ControlroomError, UsageError

if TYPE_CHECKING:
    from controlroom.config import Config

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


def validate_revision(rev: str) -> str:
    """The revision itself when it is a safe name; else UsageError (exit 2) with one line saying why."""
    problem = revision_problem(rev)
    if problem:
        raise UsageError(f"{problem} (a revision is a tag, branch or commit name like r2307)")
    return rev


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise ControlroomError("git is not installed; it is needed to read [release] repo") from None
    if out.returncode != 0:
        err = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
        raise ControlroomError(f"{repo}: git {' '.join(args)}: {err}"[:500])
    return out.stdout.strip()


def resolve(repo: Path, ref: str) -> str:
    """The full commit hash a ref names; ControlroomError if it names no commit. Never read as an option."""
    sha = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
        raise ControlroomError(f"{repo}: {ref!r} does not name a commit")
    return sha


def tags(repo: Path) -> list[str]:
    """The repository's tags that are safe revision names, newest first."""
    try:
        out = _git(repo, "tag", "--list", "--sort=-creatordate")
    except ControlroomError:
        return []
    return [t for t in out.splitlines() if revision_problem(t) is None]


def nearest_tags(repo: Path, rev: str, n: int = 3) -> list[str]:
    """Up to n tags whose names are closest to rev (difflib), else the newest ones, for a 'did you mean'."""
    known = tags(repo)
    return difflib.get_close_matches(rev, known, n=n, cutoff=0.5) or known[:n]


def pin(cfg: Config, rev: str) -> str | None:
    """The commit hash rev names in [release] repo, resolved once (a deploy keeps it, so a tag moved afterwards
    changes nothing); None when no repo is configured. An unknown revision is a UsageError (exit 2) that names the
    nearest tags, raised before any host is touched."""
    validate_revision(rev)
    repo = cfg.release.repo
    if repo is None:
        return None
    if not repo.exists():
        raise UsageError(f"{cfg.path}: release.repo: {repo} does not exist")
    try:
        return resolve(repo, rev)
    except ControlroomError:
        near = nearest_tags(repo, rev)
        hint = f"; nearest tags: {', '.join(near)}" if near else ""
        raise UsageError(f"unknown revision {rev!r}: {repo} has no tag, branch or commit of that name{hint}") from None


def name_of(repo: Path, ref: str) -> str:
    """A revision's name for people: its tag when it has one that is a safe name (r2307), else its short hash."""
    sha = resolve(repo, ref)
    try:
        tag = _git(repo, "describe", "--tags", "--exact-match", "--end-of-options", sha)
        if revision_problem(tag) is None:
            return tag
    except ControlroomError:
        pass
    return _git(repo, "rev-parse", "--short", "--verify", "--end-of-options", sha)


def staged_revision(cfg: Config) -> str:
    """The revision to ship: [deploy] revision if set, else [release] staged resolved in [release] repo."""
    if cfg.deploy.revision:
        return validate_revision(cfg.deploy.revision)
    if cfg.release.repo is None:
        raise ControlroomError(
            f"{cfg.path}: nothing to ship: set [deploy] revision, [release] repo, or pass --revision"
        )
    if not cfg.release.repo.exists():
        raise ControlroomError(f"{cfg.path}: release.repo: {cfg.release.repo} does not exist")
    return name_of(cfg.release.repo, cfg.release.staged)


def diff_stat(cfg: Config, live: str | None, staged: str) -> str:
    """`git diff --stat live staged`, or '' when either side is unknown or not a safe revision name.

    ``live`` comes from a host, so it is untrusted: it is checked, then resolved to a commit before git sees it.
    """
    if cfg.release.repo is None or not live:
        return ""
    if revision_problem(live) or revision_problem(staged):
        return ""
    try:
        a, b = resolve(cfg.release.repo, live), resolve(cfg.release.repo, staged)
        return _git(cfg.release.repo, "diff", "--stat", "--end-of-options", a, b)
    except ControlroomError:
        return ""
