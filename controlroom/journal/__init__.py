"""The journal: SQLite in WAL mode (STATE_DIR/journal.db, the embedded default) or PostgreSQL shared by several
bastions ([state] journal, pg.py), the one truth of what happened (deploy log, rollouts, host events, locks, flag
history, chat cursors). The only place SQL is written.

May import: controlroom.core, controlroom.config.
"""
