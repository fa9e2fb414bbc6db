"""Tab completion (argcomplete): commands and options come from the parser as it is built; host names, groups and
flag names from the config, read only when one of those arguments is completed.

Nothing here imports a command's module: building the parser stays as cheap as for any command, and argcomplete
itself is imported by cli.main only when the shell asks (``_ARGCOMPLETE`` set). A config that cannot be read or
does not validate completes nothing and prints nothing (argcomplete shows no error either: the shell just beeps).
Enable it in bash with ``eval "$(register-python-argcomplete controlroom)"``.
"""

from __future__ import annotations

MAX_CANDIDATES = 500  # a shell shows no more than this of a 10 000-host fleet
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a config larger than this is not read to complete a word


def _config(parsed_args):
    """The config the command line names (--config, else as `controlroom` finds it), or None: never an error."""
    import os

    try:
        from controlroom.config import config

        path = config.find_config(getattr(parsed_args, "config", None))
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            return None
        return config.load(path, require_known_hosts=False)
    except Exception:  # noqa: BLE001 - completion never fails aloud: an unreadable config completes nothing
        return None


def _bounded(words, prefix: str) -> list[str]:
    out: list[str] = []
    for w in words:
        if w.startswith(prefix) and w not in out:
            out.append(w)
            if len(out) >= MAX_CANDIDATES:
                break
    return out


def hosts(prefix: str, parsed_args, **_) -> list[str]:
    """--hosts: groups first, then host names; after a comma, the next name of the list (a,b,we<TAB>)."""
    cfg = _config(parsed_args)
    if cfg is None:
        return []
    head, _, last = prefix.rpartition(",")
    head = f"{head}," if head or prefix.startswith(",") else ""
    names = [g for g in cfg.groups if g != "all"] + [h.name for h in cfg.hosts]
    return [head + w for w in _bounded(names, last)]


def flags(prefix: str, parsed_args, **_) -> list[str]:
    """`flag NAME`: the flags of the config."""
    cfg = _config(parsed_args)
    return [] if cfg is None else _bounded((f.name for f in cfg.flags.flags), prefix)


def flag_values(prefix: str, **_) -> list[str]:
    """`flag NAME VALUE`: on, off (a percentage is typed)."""
    return [v for v in ("on", "off") if v.startswith(prefix)]
