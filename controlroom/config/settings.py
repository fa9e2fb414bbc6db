"""The settings a controlroom.toml gives, one frozen dataclass per section; config.load reads and checks them.
The [flags] section's (FlagsSettings, with each Flag) is in flags.py, beside the rules of a flag's name and value.

Plain data with no imports of our own, so any module may use them (ssh.py takes SSHSettings) without pulling in
the config reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SSHSettings:
    """Connection settings gathered once and shared by every connection."""

    known_hosts: Path
    user: str | None = None
    port: int | None = None
    identity_files: tuple[Path, ...] = ()
    config_files: tuple[Path, ...] = ()
    jump: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    max_parallel: int = 150
    max_startups: int = 50
    jump_max_startups: int = 10
    channels_per_connection: int = 8
    keepalive_interval: float = 5.0
    keepalive_count: int = 3
    agent_forwarding: bool = False  # hosts may use the operator's ssh-agent only when the config says so


@dataclass(frozen=True)
class InventorySettings:
    """Where hosts come from besides [inventory] hosts and groups: Ansible inventories, an ssh_config."""

    ansible: tuple[Path, ...] = ()  # [inventory] ansible: INI or YAML inventory files, in the order given
    ssh_config: Path | None = None  # [inventory] ssh_config: true means ~/.ssh/config; a path names another


@dataclass(frozen=True)
class ReleaseSettings:
    repo: Path | None = None
    staged: str = "HEAD"
    live_command: str = "cat REVISION"
    stage: str | None = None  # run on the bastion (or stage_host over SSH) to stage {revision}
    stage_host: str | None = None


@dataclass(frozen=True)
class DeploySettings:
    steps: tuple[str, ...] = ()
    health: str | None = None
    rollback: tuple[str, ...] = ()
    step_timeout: float = 60.0
    revision: str | None = None


@dataclass(frozen=True)
class SeriesSpec:
    name: str
    query: str
    max: float | None = None
    min: float | None = None
    unit: str = ""
    split: str | None = None  # a label: one line per value of it (e.g. the revision)


@dataclass(frozen=True)
class MetricsSettings:
    source: str | None = None
    url: str | None = None
    interval: float = 5.0
    window: float = 900.0  # what a sparkline shows
    token_env: str | None = None  # the environment variable holding the bearer token (never the token itself)
    series: tuple[SeriesSpec, ...] = ()
    timeout: float = 5.0  # seconds for one whole answer of the source (connect, headers, body)

    def spec(self, name: str) -> SeriesSpec | None:
        return next((x for x in self.series if x.name == name), None)


@dataclass(frozen=True)
class NotifySettings:
    webhook: str | None = field(default=None, repr=False)  # a secret: never printed
    webhook_env: str | None = None  # the name of the environment variable holding the webhook URL
    irker: str | None = None  # irc://host[:port]/#channel, sent through irkerd (JSON over TCP, port 6659)
    command: str | None = None  # a local command, each message on its stdin

    def webhook_url(self) -> str | None:
        """The webhook URL: [notify] webhook, else the variable webhook_env names (None when unset)."""
        import os

        if self.webhook:
            return self.webhook
        return os.environ.get(self.webhook_env) or None if self.webhook_env else None


@dataclass(frozen=True)
class StateSettings:
    dir: Path
    # The journal in PostgreSQL (a postgresql:// URL, never with a password: PGPASSWORD or ~/.pgpass give it), shared
    # by the bastions that name it; None: STATE_DIR/journal.db, the embedded SQLite default.
    journal: str | None = None
