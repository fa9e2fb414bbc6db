"""The journal's tests that hold for both journals run on each: the embedded SQLite one and a PostgreSQL one
(a fresh database of the session's throwaway cluster, tests/pg.py)."""

from __future__ import annotations

import pytest

from controlroom.journal.journal import Journal


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str | None:
    """None (SQLite: STATE_DIR/journal.db), or the URL of a fresh PostgreSQL journal."""
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else None


@pytest.fixture
def open_journal(backend):
    """Journal.open(state_dir, ...) on this test's journal; every journal it opened is closed at the end."""
    opened: list[Journal] = []

    def open_(state, **kw) -> Journal:
        j = Journal.open(state, url=backend, **kw)
        opened.append(j)
        return j

    open_.url = backend
    yield open_
    for j in opened:
        j.close()
