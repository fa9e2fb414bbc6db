"""SQL is written only in the journal package: no module of controlroom/ outside controlroom/journal/ (nor widgets/)
imports sqlite3, calls execute(), or holds SQL in a string. What the journal stores is asked for by what it means
(Journal.staged_ok, FlagHistory.changes, ChatCursors.log_after), never by a query written elsewhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
JOURNAL = ROOT / "controlroom" / "journal"
EXECUTE = {"execute", "executemany", "executescript"}
SQL = re.compile(r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+(OR\s+[A-Z]+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b|"
                 r"\bDELETE\s+FROM\b|\b(CREATE|ALTER|DROP)\s+(TABLE|INDEX|VIEW)\b|\bPRAGMA\s+\w+|"
                 r"\bBEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED)\b|\bON\s+CONFLICT\b")


def sql_in(source: str) -> list[str]:
    """Where this module's source writes SQL: its sqlite3 imports, its execute() calls, its strings of SQL."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "sqlite3"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlite3":
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in EXECUTE:
            found.append(f"line {node.lineno}: .{node.func.attr}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append(f"line {node.lineno}: SQL in {node.value[:60]!r}")
    return found


def modules_outside_the_journal() -> list[Path]:
    return sorted(p for top in ("controlroom", "widgets") for p in (ROOT / top).rglob("*.py")
                  if JOURNAL not in p.parents)


def test_no_module_outside_the_journal_writes_sql():
    offences = [f"{p.relative_to(ROOT)} {where}" for p in modules_outside_the_journal()
                for where in sql_in(p.read_text(encoding="utf-8"))]
    assert not offences, "SQL outside controlroom/journal/:\n" + "\n".join(offences)


def test_the_check_sees_each_way_of_writing_sql():
    planted = '''
import sqlite3
from sqlite3 import connect
def f(journal, rid):
    journal.db.execute("UPDATE rollouts SET commit_hash = ? WHERE id = ?", ("abc", rid))
    journal.db.executemany(q, [])
    return f"SELECT coalesce(max(id), 0) FROM {rid}"
'''
    found = sql_in(planted)
    assert [w.split(": ", 1)[1].split(" ", 1)[0] for w in found].count(".execute()") == 1
    assert any("import sqlite3" in w for w in found) and any("from sqlite3" in w for w in found)
    assert any(".executemany()" in w for w in found)
    assert sum("SQL in" in w for w in found) == 2  # the UPDATE and the f-string's SELECT ... FROM


def test_words_of_prose_are_not_sql():
    assert sql_in('"""Select a host from the list; update the set of flags; insert into the log."""') == []


def test_the_journal_itself_is_where_the_sql_is():
    assert any(sql_in(p.read_text(encoding="utf-8")) for p in JOURNAL.glob("*.py"))
