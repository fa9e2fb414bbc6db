"""The journal: SQLite in WAL mode, the one truth of what happened (deploy log, rollouts, host events, locks,
flag history, chat cursors). The only place SQL is written.

May import: controlroom.core, controlroom.config.
"""
