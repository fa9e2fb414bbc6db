"""Live and staged revisions, and the staging diff, from git."""

from __future__ import annotations

import subprocess
from pathlib import Path

from controlroom.config import Config
from controlroom.errors import ControlroomError


def _git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise ControlroomError("git is not installed; it is needed to read [release] repo") from None
    if out.returncode != 0:
        raise ControlroomError(f"{repo}: git {' '.join(args)}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'failed'}")
    return out.stdout.strip()


def name_of(repo: Path, ref: str) -> str:
    """A revision's name for people: its tag when it has one (r2307), else its short hash."""
    sha = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    try:
        return _git(repo, "describe", "--tags", "--exact-match", sha)
    except ControlroomError:
        return _git(repo, "rev-parse", "--short", sha)


def staged_revision(cfg: Config) -> str:
    """The revision to ship: [deploy] revision if set, else [release] staged resolved in [release] repo."""
    if cfg.deploy.revision:
        return cfg.deploy.revision
    if cfg.release.repo is None:
        raise ControlroomError(
            f"{cfg.path}: nothing to ship: set [deploy] revision, [release] repo, or pass --revision"
        )
    if not cfg.release.repo.exists():
        raise ControlroomError(f"{cfg.path}: release.repo: {cfg.release.repo} does not exist")
    return name_of(cfg.release.repo, cfg.release.staged)


def diff_stat(cfg: Config, live: str | None, staged: str) -> str:
    """`git diff --stat live..staged`, or '' when either side is unknown."""
    if cfg.release.repo is None or not live:
        return ""
    try:
        return _git(cfg.release.repo, "diff", "--stat", f"{live}..{staged}")
    except ControlroomError:
        return ""
