"""The first moments of `controlroom deploy` (with --resume or --detach) and `controlroom rollback`: the command
line is checked, then the server of the state directory is begun (server/starter.py), before this process imports
the rest of itself (cli/session.py: asyncio, the printer, the questions). On two CPUs the server's interpreter then
starts beside the client's imports instead of after them. `deploy --follow` starts no server.

Every refusal of the command line comes first, so a command that is refused starts nothing."""

from __future__ import annotations

import argparse
import sys

from controlroom.config.config import Config
from controlroom.core.errors import UsageError
from controlroom.server.starter import Starting, begin


def early(cmd: str, cfg: Config, args: argparse.Namespace) -> Starting | None:
    """Check the command line of `deploy` or `rollback` (UsageError, one line, exit 2), then begin its server
    unless it only follows; what was begun goes to the session, which connects."""
    interactive = sys.stdin.isatty()
    if cmd == "rollback":
        if not interactive and not args.yes:
            raise UsageError("no terminal to confirm the rollback: pass --yes")
    elif args.follow:
        _override_has_a_reason(args)
        return None
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
    return begin(cfg, warm=True)  # a deploy's, resume's or rollback's first work is on the hosts: --warm


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
