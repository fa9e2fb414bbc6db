"""What differs between the journal's two SQL dialects, said explicitly (SQLite, the embedded default, and
PostgreSQL, the journal several bastions share). Everything else the journal writes is portable SQL: ``"user"``
quoted (a reserved word in PostgreSQL), ``INSERT .. ON CONFLICT``, ``RETURNING id``, ``1 = 1``.

Placeholders are ``?`` (the DB-API qmark style) in every statement; the PostgreSQL connection (pg.py) binds them
as psycopg's ``%s``, changing nothing else in the text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str

    def json_text(self, column: str, key: str) -> str:
        """The text of a JSON object's top-level ``key`` in ``column`` (a TEXT column holding JSON)."""
        if not key.isidentifier():
            raise ValueError(f"not a JSON key the journal uses: {key!r}")
        if self.name == "postgresql":
            return f"({column}::json ->> '{key}')"
        return f"json_extract({column}, '$.{key}')"


SQLITE = Dialect("sqlite")
POSTGRESQL = Dialect("postgresql")
