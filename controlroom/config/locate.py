"""Where the config is, and where its state directory is: what a deploy needs to begin its server before the
config is read whole (cli/start.py). Only the standard library's cheapest parts (no dataclasses, no config module),
so `controlroom deploy` spawns its server a few milliseconds into its run; config.py uses the same rules.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from controlroom.core.errors import ConfigError

ENV_VAR = "CONTROLROOM_CONFIG"
DEFAULT_NAME = "controlroom.toml"
PEEK_MAX = 1 << 20  # bytes of a config peek_state_dir reads: a bigger one is left to the full load


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config, then $CONTROLROOM_CONFIG, then ./controlroom.toml."""
    if explicit:
        p = Path(explicit).expanduser()
        where = "--config"
    elif os.environ.get(ENV_VAR):
        p = Path(os.environ[ENV_VAR]).expanduser()
        where = f"${ENV_VAR}"
    else:
        p = Path.cwd() / DEFAULT_NAME
        where = "the current directory"
        if not p.exists():
            raise ConfigError(
                f"no {DEFAULT_NAME} in the current directory; pass --config FILE or set ${ENV_VAR}"
                " (or run `controlroom demo` for a simulated fleet)"
            )
    if not p.exists():
        raise ConfigError(f"{p}: config file not found (from {where})")
    if not p.is_file():
        raise ConfigError(f"{p}: not a file (from {where})")
    return p


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "controlroom"


def resolve(base: Path, value: str) -> Path:
    """A path of the config: ~ expanded, a relative one taken from the config file's directory (``base``)."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def state_dir(base: Path, value: str | None) -> Path:
    """[state] dir as the config says it (``value``; None or "": not said), or the default."""
    return resolve(base, value) if value else default_state_dir()


def peek_state_dir(path: Path) -> Path | None:
    """The state directory the config at ``path`` names, read without checking the rest of it; None when that
    cannot be told so simply (unreadable, not TOML, [state] dir not a string): the full load says why. A guess
    the full load must confirm (cli/start.py compares), never a config's last word."""
    try:
        with open(path, "rb") as f:
            raw = f.read(PEEK_MAX + 1)
        if len(raw) > PEEK_MAX:
            return None
        state = tomllib.loads(raw.decode("utf-8")).get("state", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(state, dict):
        return None
    value = state.get("dir")
    if value is not None and not isinstance(value, str):
        return None
    return state_dir(path.parent.resolve(), value)
