"""The first moments of `controlroom deploy` (with --resume or --detach) and `controlroom rollback`: the command
line is checked, then the server of the state directory is begun (server/starter.py) from a peek at the config
(config/locate.py: where it is, the [state] dir it names), before this process reads the config whole or imports
the rest of itself (cli/session.py: asyncio, the printer, the questions). On two CPUs the server's interpreter then
starts beside the client's work instead of after it. finish() then checks what the peek guessed against the
config as loaded, checks the journal, and lets the server go. `deploy --follow` starts no server.

Every refusal of the command line comes first, so a command that is refused spawns nothing; a config that fails
to load withdraws the server begun, which has made nothing (it makes its files only after its go)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from controlroom.config.locate import find_config, peek_state_dir
from controlroom.core.errors import ConfigError, UsageError
from controlroom.server import starter

if TYPE_CHECKING:
    from controlroom.config.config import Config


def early(cmd: str, args: argparse.Namespace) -> starter.Early | None:
    """Check the command line of `deploy` or `rollback` (UsageError, one line, exit 2), then begin its server
    from a peek at its config, unless it only follows. None: nothing begun (it follows, or the config cannot be
    peeked at: the full load says why, and finish() begins the server then)."""
    if not begins(cmd, args):
        return None
    try:
        config = find_config(getattr(args, "config", None))
        state = peek_state_dir(config)
        # a deploy's, resume's or rollback's first work is on the hosts: --warm
        return starter.early(config, state, warm=True) if state is not None else None
    except (ConfigError, UsageError):  # no config there, or a socket path too long: the full load's to say
        return None


def finish(cmd: str, args: argparse.Namespace, begun: starter.Early | None, cfg: Config) -> starter.Starting | None:
    """The server begun early made cfg's (or begun now), its journal checked; None for `deploy --follow`."""
    if _follows(cmd, args):
        return None
    return starter.finish(begun, cfg, warm=True)


def _follows(cmd: str, args: argparse.Namespace) -> bool:
    """`deploy --follow`: it attaches to a server's deploy and starts none."""
    return cmd == "deploy" and args.follow


def begins(cmd: str, args: argparse.Namespace) -> bool:
    """Whether the command line is one that starts a server (UsageError, one line, when it is refused)."""
    interactive = sys.stdin.isatty()
    if cmd == "rollback":
        if not interactive and not args.yes:
            raise UsageError("no terminal to confirm the rollback: pass --yes")
    elif _follows(cmd, args):
        _override_has_a_reason(args)
        return False
    elif args.detach:
        _force_has_a_reason(args)
        if not (args.auto or args.yes):
            raise UsageError("--detach leaves nobody to answer at the phase boundaries: add --auto or --yes (a gate "
                             "that does not hold still waits, for `controlroom deploy --follow` or the app)")
        if args.override_gate is not None:
            raise UsageError("--override-gate needs a client to pass the gate: use it with `deploy` or "
                             "`deploy --follow`, not --detach")
    else:
        check_deploy(args, interactive)
    return True


def check_deploy(args: argparse.Namespace, interactive: bool) -> None:
    """`controlroom deploy` (run here, not --detach or --follow): what its options must say."""
    from controlroom.sources import git as release

    _force_has_a_reason(args)
    if args.reason and not args.force:
        raise UsageError("--reason goes with --force")
    _override_has_a_reason(args)
    if not interactive and not (args.auto or args.yes):
        raise UsageError("no terminal to ask at the gates: pass --auto (go on by itself) or --yes (answer yes)")
    if args.revision is not None:
        release.validate_revision(args.revision)


def _force_has_a_reason(args: argparse.Namespace) -> None:
    if args.force and not (args.reason and args.reason.strip()):
        raise UsageError("--force needs --reason TEXT: say why, it goes into the deploy log")


def _override_has_a_reason(args: argparse.Namespace) -> None:
    if args.override_gate is not None and not args.override_gate.strip():
        raise UsageError("--override-gate needs a reason: say why the deploy may pass a gate that does not hold")
