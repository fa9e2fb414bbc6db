"""Live and staged revisions, and the staging diff, from git.

A revision is a name people and shells read (r2307, 4f1c2ab, release/2024-06-01): ``validate_revision`` keeps it to
``[A-Za-z0-9._/-]+`` with no leading '-' and no '..', so it can never be read as an option or a range. Every git
call that takes a revision puts it after ``--end-of-options`` and resolves it with ``rev-parse --verify`` first.
What git prints is bytes (``run_git``): read up to a cap, within a deadline, decoded only where it is shown.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from controlroom.config.revision import MAX_REVISION, revision_problem  # noqa: F401 - the rule, read here too
from controlroom.core.errors import ControlroomError, UsageError
from controlroom.core.text import clean

if TYPE_CHECKING:
    from controlroom.config.config import Config

class GitFailed(ControlroomError):
    """git ran and said no (a non-zero exit), as opposed to not answering in time or not being there."""


class UnknownRevision(ControlroomError):
    """git has no commit of that name (never had, or no longer: rewritten history, a deleted branch)."""


def validate_revision(rev: str) -> str:
    """The revision itself when it is a safe name; else UsageError (exit 2) with one line saying why."""
    problem = revision_problem(rev)
    if problem:
        raise UsageError(f"{problem} (a revision is a tag, branch or commit name like r2307)")
    return rev


GIT_TIMEOUT = 30.0  # seconds for the whole of one git command: a git that hangs (a lock, a textconv) ends there
OUTPUT_LIMIT = 4 * 1024 * 1024  # bytes of one git command's output read by default; past it git is stopped
_ERR_LIMIT = 64 * 1024  # bytes of its stderr kept (the last line says why it failed)


def run_git(repo: Path, *args: str, limit: int = OUTPUT_LIMIT, timeout: float | None = None) -> tuple[bytes, bool]:
    """git's stdout as bytes, and whether it was cut at ``limit`` bytes (git is stopped there, not read to its end).

    Bounded in time too: past ``timeout`` (GIT_TIMEOUT) git and whatever it started (a textconv, a hook) are
    killed and a ControlroomError says so. A failing git is a ControlroomError with its last stderr line, cleaned.
    Nothing is decoded here: git's output is bytes (paths and text in any encoding, CR and NUL included).
    """
    timeout = GIT_TIMEOUT if timeout is None else timeout
    try:
        proc = subprocess.Popen(["git", "-C", str(repo), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise ControlroomError("git is not installed; it is needed to read [release] repo") from None
    out, err = bytearray(), bytearray()
    cut = False
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            assert proc.stdout is not None and proc.stderr is not None
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map() and not cut:
                left = deadline - time.monotonic()
                if left <= 0:
                    what = next((a for a in args if not a.startswith("-") and "=" not in a), "")
                    raise ControlroomError(f"{repo}: git {what} did not finish within {timeout:g} s and was stopped")
                for key, _ in sel.select(left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf: bytearray = key.data
                    room = (limit if buf is out else _ERR_LIMIT) - len(buf)
                    buf += chunk[:max(room, 0)]
                    if buf is out and len(chunk) > room:
                        cut = True  # enough: the rest is never read
    finally:
        if cut or proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # git and what it started: nothing goes on behind us
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    if proc.returncode != 0 and not cut:
        lines = bytes(err).strip().splitlines()
        why = clean(lines[-1], 300) if lines else f"exit {proc.returncode}"
        raise GitFailed(f"{repo}: git {clean(' '.join(args), 150)}: {why}")
    return bytes(out), cut


def _git(repo: Path, *args: str) -> str:
    """A short answer of git (a hash, a tag, a list of names) as text; bytes that are not UTF-8 are kept as
    surrogates (`clean` shows them as ``\\xe9``; `revision_problem` refuses them)."""
    out, _ = run_git(repo, *args)
    return out.decode("utf-8", "surrogateescape").strip()


def resolve(repo: Path, ref: str) -> str:
    """The full commit hash a ref names; UnknownRevision if it names no commit (another ControlroomError if git
    could not be asked). Never read as an option."""
    try:
        sha = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    except GitFailed:
        sha = ""
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
        raise UnknownRevision(f"{repo}: {clean(ref, 80)!r} does not name a commit")
    return sha


def tags(repo: Path) -> list[str]:
    """The repository's tags that are safe revision names, newest first."""
    try:
        out = _git(repo, "tag", "--list", "--sort=-creatordate")
    except ControlroomError:
        return []
    return [t for t in out.split("\n") if revision_problem(t) is None]


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
    except UnknownRevision:
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
    except GitFailed:
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
        out = _git(cfg.release.repo, "diff", "--stat", "--end-of-options", a, b)
    except ControlroomError:
        return ""
    return "\n".join(clean(line, 1000) for line in out.split("\n"))
