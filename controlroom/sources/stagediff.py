"""The staging diff as data: live -> staged, read from git where the caller runs (the bastion holds the repo).

`controlroom diff` prints it, the app's staging diff pane draws it; neither reads git itself. Everything git prints
that a person wrote (subjects, authors, paths, the diff's lines) is cleaned here, so a caller only shows text.
The live side is the revision most hosts run by the journal's record (a mixed fleet says so: "live: r2306 on 148
hosts, r2305 on 2"); with nothing recorded yet the caller says what the server was told by a host.
No Textual, no Rich: plain data for a terminal printer or a line-API widget.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from controlroom.core.errors import ControlroomError, UsageError
from controlroom.core.text import clean
from controlroom.sources import git as release

if TYPE_CHECKING:
    from controlroom.config.config import Config

MAX_COMMITS = 500
LINE_LIMIT = 2000  # characters of one diff line as shown
MAX_PATCH_BYTES = 8 * 1024 * 1024  # of the diff read from git; past it the diff is cut, and says so
MAX_PATCH_LINES = 200_000
MAX_LOG_BYTES = 4 * 1024 * 1024  # of the commit list and of the list of files

# what a line of the diff is, for colouring (a printer or a widget picks the colour; NO_COLOR reads the text)
META, ADDED, REMOVED, HUNK, CONTEXT = "meta", "added", "removed", "hunk", "context"
NOTE = "dim"  # a line of ours in the diff (where it was cut), not git's


def line_kind(raw: str) -> str:
    """How a line of `git diff` output reads: META (diff/index/---/+++ headers), ADDED, REMOVED, HUNK, CONTEXT."""
    if raw.startswith(("+++", "---", "diff ", "index ", "new file", "deleted file", "rename ", "similarity ",
                       "old mode", "new mode", "Binary files")):
        return META
    if raw.startswith("+"):
        return ADDED
    if raw.startswith("-"):
        return REMOVED
    if raw.startswith("@@"):
        return HUNK
    return CONTEXT


@dataclass(frozen=True)
class Commit:
    hash: str
    author: str
    at: float  # commit time (epoch seconds)
    subject: str


@dataclass(frozen=True)
class FileChange:
    added: str  # a count, or '-' for a binary file
    removed: str
    path: str


@dataclass(frozen=True)
class StagingDiff:
    """live -> staged, ready to show: every string in it is cleaned."""

    live_line: str  # 'live: r2306 on 148 hosts, r2305 on 2' (or how the live revision is known)
    live: str  # the revision the diff starts from (the one most hosts run)
    staged: str  # the staged revision's name (r2307)
    live_commit: str
    staged_commit: str
    commits: list[Commit] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the diff itself, one cleaned line each ([] for --stat)
    kinds: list[str] = field(default_factory=list)  # line_kind of each line
    problem: str = ""  # why there is no diff though both sides are named (git no longer has the live revision)
    cut: list[str] = field(default_factory=list)  # what was cut short ('diff cut at 8 MB'), for the header

    @property
    def mixed(self) -> bool:
        return ", " in self.live_line

    @property
    def same(self) -> bool:
        """The fleet runs the staged commit: nothing to show."""
        return bool(self.live_commit) and self.live_commit == self.staged_commit

    @property
    def totals(self) -> tuple[int, int]:
        """(lines added, lines removed) over every file (binary files count 0)."""
        return (sum(int(f.added) for f in self.files if f.added.isdigit()),
                sum(int(f.removed) for f in self.files if f.removed.isdigit()))

    @property
    def staged_line(self) -> str:
        return f"staged: {self.staged} ({self.staged_commit[:10]})"


def counts_of(by_host: dict[str, str]) -> Counter:
    """revision -> hosts, in the order live_line shows them (most hosts first, then by name)."""
    return Counter(dict(sorted(Counter(by_host.values()).items(), key=lambda kv: (-kv[1], kv[0]))))


def live_line(counts: Counter) -> str:
    """'live: r2306 on 150 hosts' or, for a mixed fleet, 'live: r2306 on 148 hosts, r2305 on 2'."""
    parts = [f"{clean(rev, 80)} on {n}" + (" hosts" if i == 0 else "") for i, (rev, n) in
             enumerate(counts.most_common())]
    return "live: " + ", ".join(parts)


def age(seconds: float) -> str:
    """'3 days ago', '1 hour ago', 'just now'."""
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def _text(raw: bytes) -> str:
    """Bytes from git as text: UTF-8, each byte that is not kept as a surrogate `clean` shows as ``\\xe9``."""
    return raw.decode("utf-8", "surrogateescape")


def commits(repo: Path, a: str, b: str) -> tuple[list[Commit], bool]:
    """The commits in b and not in a, newest first (at most MAX_COMMITS), their text cleaned; and whether there
    are more. NUL-separated (``-z``, ``%x00``): a CR or any other byte in a subject or a name stays in its field."""
    out, cut = release.run_git(repo, "log", f"--max-count={MAX_COMMITS + 1}", "-z", "--no-show-signature",
                               "--format=%h%x00%an%x00%ct%x00%s", "--end-of-options", f"{a}..{b}",
                               limit=MAX_LOG_BYTES)
    fields = out.split(b"\0")
    rows = []
    for i in range(0, len(fields) - 3, 4):
        h, author, ct, subject = fields[i:i + 4]
        if not re.fullmatch(rb"[0-9a-f]{4,64}", h):
            cut = True  # not a commit's hash where one must be (a cut answer): stop rather than misread
            break
        at = float(ct) if ct.isdigit() else 0.0
        rows.append(Commit(clean(h, 40), clean(_text(author), 40), at, clean(_text(subject), 200)))
    return rows[:MAX_COMMITS], cut or len(rows) > MAX_COMMITS


def files(repo: Path, a: str, b: str) -> tuple[list[FileChange], bool]:
    """Each file changed from a to b with its +/- counts ('-' for a binary file's), paths cleaned (a byte that
    is not UTF-8 shows as ``\\xe9``); and whether git's answer was cut."""
    out, cut = release.run_git(repo, "diff", "--numstat", "-z", "--end-of-options", a, b, limit=MAX_LOG_BYTES)
    parts = [_text(p) for p in out.split(b"\0")]
    if cut:
        parts = parts[:-1]  # the last record may be partial
    rows = []
    i = 0
    while i < len(parts):
        if not parts[i].strip():
            i += 1
            continue
        fields = parts[i].split("\t")
        if len(fields) == 3 and fields[2] == "" and i + 2 < len(parts):  # a rename: old and new path follow
            rows.append(FileChange(clean(fields[0], 12), clean(fields[1], 12),
                                   clean(f"{parts[i + 1]} -> {parts[i + 2]}", 300)))
            i += 3
            continue
        if len(fields) >= 3:
            rows.append(FileChange(clean(fields[0], 12), clean(fields[1], 12), clean("\t".join(fields[2:]), 300)))
        i += 1
    return rows, cut


def patch_lines(repo: Path, a: str, b: str) -> tuple[list[str], list[str], bool]:
    """The diff from a to b: (cleaned lines, their line_kind, whether it was cut at MAX_PATCH_BYTES or
    MAX_PATCH_LINES). Lines end at LF only: a lone CR inside a line shows as ``^M``, it never starts a line."""
    # paths as their bytes (not git's octal quoting; `clean` shows what is not UTF-8), a/ b/ whatever the config
    patch, cut = release.run_git(repo, "-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff",
                                 "--src-prefix=a/", "--dst-prefix=b/", "--end-of-options", a, b, limit=MAX_PATCH_BYTES)
    raw = patch.split(b"\n") if patch else []
    if raw and raw[-1] == b"":
        raw.pop()
    elif cut and raw:
        raw.pop()  # cut in the middle of a line: that line is not shown half
    if len(raw) > MAX_PATCH_LINES:
        raw, cut = raw[:MAX_PATCH_LINES], True
    text = [_text(r) for r in raw]
    return [clean(t, LINE_LIMIT) for t in text], [line_kind(t) for t in text], cut


def load(cfg: Config, *, counts: Counter, staged: str | None = None, live: str | None = None,
         live_note: str = "", stat: bool = False) -> StagingDiff:
    """live -> staged from [release] repo. ``staged`` defaults to the staged revision; the live side is the
    revision most hosts run by ``counts`` (the journal's record, engine.live.live_counts), else ``live`` (what a host said,
    ``live_note`` saying how it is known). Raises ControlroomError (one line) when the staged revision or the
    live one is unknown; a live revision git no longer has keeps its name, and ``problem`` says why there is no
    diff. Blocking (git runs): call it off an event loop."""
    repo = cfg.release.repo
    if repo is None:
        raise UsageError(f"{cfg.path}: nothing to compare: set [release] repo")
    staged = staged or release.staged_revision(cfg)
    b = release.pin(cfg, staged)
    if counts:
        live = counts.most_common(1)[0][0]
        head = live_line(counts)
    elif live:
        head = f"live: {clean(live, 80)}" + (f" ({live_note})" if live_note else "")
    else:
        raise ControlroomError("the live revision is unknown: no host answered with one")
    if release.revision_problem(live):
        raise ControlroomError(f"the live revision {clean(live, 80)!r} is not a revision name git can be asked about")
    d = StagingDiff(head, clean(live, 80), clean(staged, 80), "", b)
    try:
        a = release.resolve(repo, live)
    except release.UnknownRevision:
        # the journal or a host names it, git has it no more (history rewritten, a branch deleted and gc'd): the
        # name as they have it, and why there is nothing to compare
        return replace(d, problem=f"git has no {clean(live, 80)} any more in {clean(str(repo), 120)} (rewritten "
                                  "history or a deleted branch): nothing to compare the staged revision with")
    d = replace(d, live_commit=a)
    if a == b:
        return d
    shown, more = commits(repo, a, b)
    d.commits.extend(shown)
    if more:
        d.cut.append(f"the first {len(shown)} commits")
    changed, cut = files(repo, a, b)
    d.files.extend(changed)
    if cut:
        d.cut.append(f"the first {len(changed)} files")
    if not stat:
        lines, kinds, cut = patch_lines(repo, a, b)
        d.lines.extend(lines)
        d.kinds.extend(kinds)
        if cut:
            d.cut.append(f"diff cut after {len(lines)} lines")
            d.lines.append(f"… the diff is cut here, after {len(lines)} lines: it is longer than controlroom "
                           f"reads ({MAX_PATCH_BYTES // 2**20} MB or {MAX_PATCH_LINES} lines); "
                           f"`git diff {d.live} {d.staged}` in {clean(str(repo), 120)} shows all of it")
            d.kinds.append(NOTE)
    return d


def staged_commit(cfg: Config) -> tuple[str, str]:
    """(name, commit) of the staged revision now: cheap enough to ask every few seconds (it follows the ref)."""
    name = release.staged_revision(cfg)
    commit = release.pin(cfg, name)
    if commit is None:
        raise ControlroomError(f"{cfg.path}: nothing to compare: set [release] repo")
    return name, commit
