"""The server's one config: the file it was started with, reloaded as a whole when it changes (serverops.py).

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

import dataclasses
import os
import time
from pathlib import Path

from controlroom.config import config as config_mod
from controlroom.config.config import Config
from controlroom.core.errors import UsageError
from controlroom.core.text import clean

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
