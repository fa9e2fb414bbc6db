"""What people and hosts wrote reaches the terminal as visible text: no escape sequence, one line, bounded."""

from __future__ import annotations

import pytest

from controlroom.core.text import ELLIPSIS, LIMIT, NEWLINE, clean, clean_lines

ATTACKS = {
    "clipboard write (OSC 52)": "\x1b]52;c;cm0gLXJmIH4=\x07",
    "clear screen": "\x1b[2J\x1b[H",
    "retitle the terminal": "\x1b]0;you have been owned\x07",
    "OSC ended by ST": "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\",
    "device control string": "\x1bP+q544e\x1b\\",
    "8-bit CSI": "\x9b2J",
    "8-bit OSC": "\x9d0;title\x9c",
    "backspace over text": "ok\b\b\bFAILED",
    "carriage return overwrite": "DEPLOY OK\rDEPLOY FAILED",
    "NUL and DEL": "a\x00b\x7fc",
    "bidi override": "safe\u202eevil",
    "unicode line separator": "one\u2028two\u2029three\x85four",
}


def is_harmless(s: str) -> bool:
    return all(
        not (
            ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF or c in "\u2028\u2029\u202e"
        )
        for c in s
    )


@pytest.mark.parametrize("what", ATTACKS)
def test_escape_sequences_and_control_characters_become_visible_text(what):
    shown = clean(ATTACKS[what])
    assert is_harmless(shown), repr(shown)
    assert len(shown.splitlines()) == 1
    shown.encode("utf-8")  # printable on any UTF-8 terminal, no UnicodeEncodeError


def test_nothing_is_dropped_silently_each_control_character_has_a_stand_in():
    assert clean("\x1b[2J") == "^[[2J"
    assert clean("\x1b]0;title\x07") == "^[]0;title^G"
    assert clean("\x9b31m") == "\\x9b31m"
    assert clean("ok\rFAILED") == "ok^MFAILED"
    assert clean("a\x7f") == "a^?"
    assert clean("safe\u202eevil") == "safe\\u202eevil"


def test_a_message_with_newlines_is_one_line_with_visible_separators():
    assert clean("db migration\n[2026-06-18 13:12:13] [boss] DEPLOY OK r9999") == (
        f"db migration{NEWLINE}[2026-06-18 13:12:13] [boss] DEPLOY OK r9999"
    )
    assert clean("a\r\nb") == f"a{NEWLINE}b"


def test_ordinary_text_passes_unchanged_including_markup_like_brackets_and_unicode():
    for s in ("[/]", "[bold red]x", "r2307 ✓ done · 2/2", "naïve café — 東京", "tabs\tgo"):
        assert clean(s) == s.replace("\t", " ")


def test_a_100_kb_message_is_cut_to_the_limit_and_says_so():
    shown = clean("x" * 100_000)
    assert len(shown) == LIMIT and shown.endswith(ELLIPSIS)
    assert len(clean("\x1b" * 100_000, limit=80)) == 80
    assert clean("short", limit=80) == "short"
    assert clean("x" * 81, limit=80).endswith(ELLIPSIS)
    assert len(clean("y" * 10_000, limit=None)) == 10_000


def test_invalid_text_and_odd_values_never_raise():
    assert clean(b"\xff\xfeok\x1b[2J") == "\\xff\\xfeok^[[2J"
    assert clean("ab\udcff") == "ab\\xff"  # a byte smuggled in by surrogateescape
    assert clean("lone \ud800 surrogate") == "lone \\ud800 surrogate"
    assert clean(None) == ""
    assert clean(42) == "42"


def test_host_output_keeps_its_lines_each_cleaned():
    out = "fetching r2307\r\n\x1b[32mok\x1b[0m\nprogress 10%\rprogress 100%\n"
    assert clean_lines(out) == ["fetching r2307", "^[[32mok^[[0m", "progress 10%^Mprogress 100%"]
    assert clean_lines("") == []
    assert clean_lines("no newline at the end") == ["no newline at the end"]
    assert all(len(line) <= 1000 for line in clean_lines("z" * 5000 + "\nshort"))


# ------------------------------------------------------------------------------------------- the CLI printers

HOSTILE = (
    "db done\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x1b]0;title\x07\n[2026-06-18 13:12:13] [boss] DEPLOY OK r9999"
)


def test_controlroom_log_prints_a_hostile_message_as_one_visible_line_without_escape_bytes(fleet):
    from tests.conftest import run_cli

    cfg = ["--config", str(fleet.config_path)]
    added = run_cli("log", "add", HOSTILE, *cfg)
    assert added.returncode == 0, added.stderr
    shown = run_cli("log", *cfg)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    lines = [line for line in shown.stdout.splitlines() if "db done" in line]
    assert len(lines) == 1, shown.stdout
    assert (
        "^[]52;c;cm0gLXJmIH4=^G^[[2J^[]0;title^G ⏎ [2026-06-18 13:12:13] [boss] DEPLOY OK r9999" in lines[0]
    )
    assert not any(line.startswith("[2026-06-18 13:12:13] [boss]") for line in shown.stdout.splitlines())


def test_controlroom_lock_and_unlock_show_a_hostile_reason_as_text_and_a_huge_one_bounded(fleet):
    from tests.conftest import run_cli

    cfg = ["--config", str(fleet.config_path)]
    locked = run_cli("lock", "[/] \x1b[2J migration\nuntil 14:00 " + "x" * 100_000, *cfg)
    assert locked.returncode == 0, locked.stderr
    assert "\x1b" not in locked.stdout and len(locked.stdout) < 2000
    assert "[/] ^[[2J migration ⏎ until 14:00 xxx" in locked.stdout and "…" in locked.stdout
    log = run_cli("log", *cfg)
    assert "\x1b" not in log.stdout and all(len(line) < 2000 for line in log.stdout.splitlines())
    unlocked = run_cli("unlock", *cfg)
    assert unlocked.returncode == 0, unlocked.stderr
    assert "\x1b" not in unlocked.stdout and "[/] ^[[2J migration ⏎ until" in unlocked.stdout


def test_controlroom_run_shows_what_a_host_printed_without_its_escape_sequences(fleet):
    from tests.conftest import run_cli

    res = run_cli(
        "run",
        r"printf 'ok\033]0;owned\007\033[2J\n'",
        "--hosts",
        "web001",
        "--config",
        str(fleet.config_path),
    )
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "ok^[]0;owned^G^[[2J" in res.stdout
