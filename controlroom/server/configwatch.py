"""The server's one config: the file it was started with, reloaded as a whole when it changes (LiveConfig), and what
is made of it (the SSH pool, the flag service, the chat notifier).

A client that names another file is refused with the path of the one in use (the same file under another name is
the same config). When the file changes (its identity, size or time: checked at every request and every second),
the server reads it again; every section takes effect at once (notify channels, metrics sources, access, flags,
release, deploy) or, for what an operation in flight is made of (the hosts and ssh settings of its pool, and the
phases made of those hosts), when that operation ends: the server says which, in one line, to the clients and in
its log. A file that no longer reads is said once, naming file, line and key, and the server keeps what it had.

Secrets named by an environment variable ([notify] webhook_env) are read from the server's own environment as it
was at start (the systemd unit's EnvironmentFile), never a client's. Each chat channel is watched as it sends, so
`server status` says which are configured and whether they work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path

from controlroom.config import config as config_mod
from controlroom.config.config import Config
from controlroom.core.errors import UsageError
from controlroom.core.text import clean
from controlroom.server import wire

# [section] as the config names it -> the Config fields it fills
SECTIONS = {
    "inventory": ("hosts", "groups"), "inventory.ssh": ("ssh",), "phase": ("phase_specs", "phases"),
    "release": ("release",), "deploy": ("deploy",), "flags": ("flags",), "metrics": ("metrics",),
    "notify": ("notify",), "state": ("state",), "access": ("access",),
}
POLL = 1.0  # how often the server looks at the file (and at every request)
FLEET = ("inventory", "inventory.ssh", "phase")  # what the pool and a running operation's plan are made of


def _stamp(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def changed_sections(old: Config, new: Config) -> list[str]:
    return [name for name, fields in SECTIONS.items() if any(getattr(old, f) != getattr(new, f) for f in fields)]


def keep(new: Config, old: Config, sections) -> Config:
    """new, with old's value of these sections."""
    return dataclasses.replace(new, **{f: getattr(old, f) for s in sections for f in SECTIONS[s]})


class ConfigFile:
    """The server's config file, and what it held when last read."""

    def __init__(self, cfg: Config, environ: dict[str, str]) -> None:
        self.path = Path(cfg.path).resolve()
        self.seen = _stamp(self.path)
        self.environ = dict(environ)  # the server's environment at start: where webhook_env is read

    def require_same(self, named: str) -> None:
        """UsageError unless ``named`` (a client's --config) is this file."""
        try:
            same = os.path.samefile(self.path, named)
        except (OSError, ValueError):
            same = False
        if not same:
            raise UsageError(f"refused: this server runs with {self.path}, not {clean(str(named), 200)}: use that "
                             "file, or `controlroom server stop` and start one with yours")

    def changed(self) -> bool:
        return _stamp(self.path) != self.seen

    def load(self) -> Config:
        """Read it again (ConfigError as config.load raises it); what was read is remembered, good or bad."""
        self.seen = _stamp(self.path)
        return config_mod.load(self.path)

    def notify_settings(self, cfg: Config):
        """[notify] with webhook_env resolved from the server's environment at start."""
        n = cfg.notify
        if n.webhook or not n.webhook_env:
            return n
        return dataclasses.replace(n, webhook=self.environ.get(n.webhook_env) or None, webhook_env=None)


class Watched:
    """A chat channel that remembers how its last send went (for `server status`)."""

    def __init__(self, channel) -> None:
        self.channel = channel
        self.name = channel.name
        self.state = "configured, nothing sent yet"

    async def send(self, text: str) -> None:
        try:
            await self.channel.send(text)
        except Exception as e:
            self.state = f"failing: {clean(str(e), 160)}"
            raise
        self.state = f"working (last sent {time.strftime('%H:%M:%S')})"

    async def close(self) -> None:
        await self.channel.close()


def channel_lines(cfg: Config, file: ConfigFile, channels: list[Watched]) -> list[str]:
    """One line per configured channel: its name and whether it works."""
    out = [f"{c.name}: {c.state}" for c in channels]
    n = cfg.notify
    if n.webhook_env and not n.webhook and not file.environ.get(n.webhook_env):
        out.append(f"webhook: not configured: [notify] webhook_env names {n.webhook_env}, which is not set in the "
                   "server's environment (its unit's EnvironmentFile)")
    return out


class LiveConfig:
    """The config the server runs with and what is made of it: the SSH pool (warm between operations), the flag
    service and the chat notifier. ``reload`` reads the file again when it changed and applies it; what an operation
    in flight is made of (FLEET) waits for ``settle``, which the operation's end calls.

    ``say`` sends a message to every attached client; ``on_chat_failure`` publishes a chat channel's failure (an
    event, not journaled)."""

    def __init__(self, cfg: Config, board, *, say: Callable[[dict], None],
                 on_chat_failure: Callable[[object], None]) -> None:
        self.cfg = cfg
        self.board = board
        self.file = ConfigFile(cfg, dict(os.environ))  # the one config; secrets as at start
        self.notes: deque[str] = deque(maxlen=5)  # what was last said about it (`server status`)
        self.channels: list[Watched] = []
        self.journal = None
        self.pool = None
        self.flags = None  # flagpush.FlagService: flag changes, receipts, stragglers (never behind the fleet lock)
        self.notifier = None  # notify.Notifier: the deploy log to chat, from the journal (a deploy never waits)
        self._say = say
        self._on_chat_failure = on_chat_failure
        self._pending: Config | None = None  # a config read while an operation ran: its FLEET sections wait for it

    def start(self, journal) -> None:
        """Make the pool, the flag service and the notifier, on the journal just opened."""
        from controlroom.engine.flagpush import FlagService
        from controlroom.fleet.ssh import SSHPool

        self.journal = journal
        self.pool = SSHPool(self.cfg.ssh, self.cfg.hosts)
        self.flags = FlagService(self.cfg, self.pool, journal)
        self.flags.start()
        self.notifier = self._make_notifier(self.cfg)

    async def close(self) -> None:
        if self.flags is not None:
            await self.flags.close()
        if self.notifier is not None:
            await self.notifier.close()
        if self.pool is not None:
            await self.pool.close()

    def require_same(self, named: str) -> None:
        """The client names the config it was given: refused unless it is the server's own file."""
        self.file.require_same(named)

    async def reload(self, running: str = "") -> list[str]:
        """When the config file changed, read it and apply it; the lines said about it. ``running``: the name of
        the operation in flight ("" for none), whose FLEET sections wait for its end."""
        from controlroom.core.errors import ConfigError

        cf = self.file
        if not cf.changed():
            return []
        try:
            new = cf.load()
        except ConfigError as e:
            return self.say([f"{e}: not reloaded; the server goes on with the config it had"])
        old = self.cfg
        sections = changed_sections(old, new)
        notes = []
        if "state" in sections:
            new = keep(new, old, ["state"])
            notes.append(f"{cf.path}: [state] dir changed: this server stays with {old.state.dir}; "
                         "`controlroom server stop`, and the next command starts one for the new one")
        waiting = [s for s in sections if s in FLEET]
        if waiting and running:
            self._pending = new
            new = keep(new, old, FLEET)
            notes.append(f"{cf.path}: {', '.join(f'[{s}]' for s in waiting)} changed while a {running} runs: "
                         f"{'they apply' if len(waiting) > 1 else 'it applies'} when it ends (or `controlroom "
                         "server stop --force` now, it stays resumable)")
        else:
            self._pending = None
        now = [s for s in sections if s != "state" and not (running and s in FLEET)]
        await self._apply(old, new)
        if now:
            notes.append(f"{cf.path}: reloaded; {', '.join(f'[{s}]' for s in now)} took effect")
        return self.say(notes)

    async def _apply(self, old: Config, new: Config) -> None:
        from controlroom.engine.flagpush import FlagService
        from controlroom.fleet.ssh import SSHPool

        self.cfg = new
        fleet = new.hosts != old.hosts or new.ssh != old.ssh
        if fleet:  # never while an operation runs (reload kept them)
            pool, self.pool = self.pool, SSHPool(new.ssh, new.hosts)
            await pool.close()
            self.board.plan([(p.name, p.hosts, p.max_failed, p.auto) for p in new.phases])
        if fleet or new.flags != old.flags:
            await self.flags.close()
            self.flags = FlagService(new, self.pool, self.journal)
            self.flags.start()
        if new.notify != old.notify:
            await self.notifier.close()
            self.notifier = self._make_notifier(new)

    def settle(self) -> None:
        """An operation ended: the FLEET sections that waited for it take effect."""
        new, self._pending = self._pending, None
        if new is None:
            return

        async def go():
            await self._apply(self.cfg, new)
            self.say([f"{self.file.path}: reloaded; the operation ended, "
                      f"{', '.join(f'[{s}]' for s in FLEET)} took effect"])

        asyncio.ensure_future(go())

    def _make_notifier(self, cfg: Config):
        """Chat: tails the deploy log; a channel's failure goes to every attached client (the app's status line)."""
        from controlroom.server.notify import Notifier, channels_of

        self.channels = [Watched(c) for c in channels_of(self.file.notify_settings(cfg), cfg.state.journal)]
        notifier = Notifier(self.journal.store, self.channels, on_failure=self._on_chat_failure)
        notifier.start()
        return notifier

    async def watch(self, running: Callable[[], str]) -> None:
        """Look at the file every POLL seconds, for as long as the server serves."""
        while True:
            await asyncio.sleep(POLL)
            try:
                await self.reload(running())
            except Exception:  # a bug of ours: said in the log, and the server goes on with what it has
                traceback.print_exc()

    def say(self, lines: list[str]) -> list[str]:
        """Into the log and to every attached client (wire.notice); kept for `server status`."""
        for line in lines:
            print(f"controlroom server: {line}", file=sys.stderr, flush=True)
            self.notes.append(line)
            self._say(wire.notice(line))
        return lines

    def channel_lines(self) -> list[str]:
        return channel_lines(self.cfg, self.file, self.channels)
