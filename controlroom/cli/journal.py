"""``controlroom journal migrate --from STATE_DIR --to URL``: a SQLite journal moved to PostgreSQL, and what moved."""

from __future__ import annotations

import argparse
from pathlib import Path

from controlroom.core.errors import UsageError
from controlroom.core.text import clean


def cmd_journal(args: argparse.Namespace) -> int:
    from controlroom.journal import pg
    from controlroom.journal.migrate import migrate

    if not pg.is_url(args.target):
        raise UsageError("journal migrate --to: expected a postgresql:// URL")
    source = Path(args.source).expanduser()
    moved = migrate(source, args.target)
    print(clean(f"moved {source / 'journal.db'} to {pg.redact(args.target)}:", None))
    width = max(map(len, moved))
    for table, n in moved.items():
        print(f"  {table:<{width}}  {n} row{'' if n == 1 else 's'}")
    print("point [state] journal at it in controlroom.toml (without the password) on every bastion that shares it")
    return 0
