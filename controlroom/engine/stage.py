"""The one-step stage: `[release] stage = "make build REV={revision}"`, run on the bastion (here, in [release] repo
or the config's directory) or on `[release] stage_host` over SSH (a host of the inventory, through the pool).

Its output streams, line by line, to whoever asked; how it ended goes into the journal (the ``stages`` table, keyed
by the commit the revision named) and the deploy log (``STAGE OK r2307 in 42 s``), which the notifier announces.
With a stage command configured, a deploy refuses a commit that has no successful stage on the record, unless it
is forced (``--force --reason``), which the log says.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controlroom.core.errors import ControlroomError, UsageError
from controlroom.core.identity import Actor
from controlroom.core.text import clean, took
from controlroom.journal import pg

if TYPE_CHECKING:
    from controlroom.config.config import Config
    from controlroom.journal.journal import Journal

STAGE_TIMEOUT = 3600.0  # a build may take long; it is not a deploy step
LINE_BYTES = 4096  # of one output line read; the rest of a longer line is dropped
LINE_LIMIT = 1000  # characters of one output line as sent on (cleaned: one line, control characters visible)


class NotStaged(UsageError):
    """A deploy of a revision that has not been staged successfully, with a stage command configured."""


@dataclass(frozen=True)
class StageResult:
    revision: str
    commit: str | None
    ok: bool
    seconds: float
    reason: str  # "ok", "exit 2", "timeout", ...


def command_for(cfg: Config, revision: str) -> str:
    """The stage command with {revision} filled in, shell-quoted (never read as more than one word)."""
    from controlroom.fleet.ssh import render

    if not cfg.release.stage:
        raise UsageError(f"{cfg.path}: nothing to stage with: set [release] stage, e.g. \"make build REV={{revision}}\"")
    return render(cfg.release.stage, revision=revision)


async def run_stage(cfg: Config, journal: Journal, revision: str, commit: str | None, actor: Actor,
                    out: Callable[[str], None], pool=None, timeout: float = STAGE_TIMEOUT) -> StageResult:
    """Run the stage command for ``revision`` (pinned to ``commit``), streaming each output line (cleaned) to
    ``out``; record and log how it ended, by ``actor``. Never raises for the command's failure: the result says it."""
    command = command_for(cfg, revision)
    journal.add_log(actor, "STAGE START", f"{revision}" + (f" on {cfg.release.stage_host}" if cfg.release.stage_host
                                                           else ""), revision)
    start = time.monotonic()
    if cfg.release.stage_host:
        if pool is None:
            raise ControlroomError("staging on [release] stage_host needs the server's connections")
        res = await pool.run(cfg.release.stage_host, command, timeout=timeout,
                             on_line=lambda _stream, line: out(clean(line, LINE_LIMIT)))
        ok, reason = res.ok, res.label if not res.ok else "ok"
        if not res.ok and res.reason and res.reason != "ok":
            reason = f"{res.label} {clean(res.reason, 120)}".strip()
    else:
        ok, reason = await _run_here(cfg, command, out, timeout)
    seconds = time.monotonic() - start
    result = StageResult(revision, commit, ok, seconds, reason)
    record(journal, actor, result)
    return result


async def _run_here(cfg: Config, command: str, out: Callable[[str], None], timeout: float) -> tuple[bool, str]:
    where = cfg.release.repo if cfg.release.repo and cfg.release.repo.exists() else Path(cfg.path).parent
    try:
        proc = await asyncio.create_subprocess_shell(
            command, cwd=str(where), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=pg.child_env(cfg.state.journal))
    except OSError as e:
        return False, f"cannot run it: {e.strerror or e}"

    async def pump() -> None:
        assert proc.stdout is not None
        async for line in lines_of(proc.stdout):
            out(clean(line, LINE_LIMIT))

    try:
        await asyncio.wait_for(asyncio.gather(pump(), proc.wait()), timeout)
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        return False, f"timeout after {timeout:g} s"
    except asyncio.CancelledError:
        _kill(proc)
        raise
    return (proc.returncode == 0), ("ok" if proc.returncode == 0 else f"exit {proc.returncode}")


async def lines_of(stream: asyncio.StreamReader, cut: int = LINE_BYTES):
    """The lines of a command's output as bytes (split at LF only: a CR stays in its line, where `clean` shows
    it as ``^M``), each at most ``cut`` bytes: the rest of a longer line is read and dropped, never kept whole
    (a build that prints a megabyte without a newline costs no more than a short line)."""
    buf, dropping = b"", False
    while chunk := await stream.read(65536):
        buf += chunk
        while (i := buf.find(b"\n")) >= 0:
            line, buf = buf[:i], buf[i + 1:]
            if not dropping:
                yield line[:cut]
            dropping = False
        if len(buf) > cut:
            if not dropping:
                yield buf[:cut] + b"\xe2\x80\xa6"  # '…': the line goes on past what is shown
            buf, dropping = b"", True
    if buf and not dropping:
        yield buf


def _kill(proc) -> None:
    import os
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the whole build, not only the shell


def record(journal: Journal, actor: Actor, r: StageResult) -> None:
    """The stage's row and its log line (``STAGE OK r2307 in 42 s`` / ``STAGE FAILED r2307: exit 2 after 3 s``)."""
    journal.add_stage(actor, r.revision, r.commit, r.ok, r.seconds, r.reason)
    if r.ok:
        journal.add_log(actor, "STAGE OK", f"{r.revision} in {took(r.seconds)}", r.revision)
    else:
        journal.add_log(actor, "STAGE FAILED", f"{r.revision}: {r.reason} after {took(r.seconds)}", r.revision)


def staged_ok(journal: Journal, revision: str, commit: str | None) -> bool:
    """Whether the record holds a successful stage of this commit (of this revision name when no repo pins it)."""
    return journal.staged_ok(revision, commit)


def require_staged(cfg: Config, journal: Journal, revision: str, commit: str | None, actor: Actor,
                   force_reason: str | None) -> None:
    """With a stage command configured: NotStaged (exit 2) unless this commit was staged successfully; a forced
    deploy goes past, and the log says so."""
    if not cfg.release.stage or staged_ok(journal, revision, commit):
        return
    if force_reason:
        journal.add_log(actor, "FORCE", f"{revision} deployed without a successful stage: {force_reason}", revision)
        return
    raise NotStaged(f"{revision} has not been staged successfully: run `controlroom stage --revision {revision}` "
                    "first, or deploy with --force --reason TEXT")
