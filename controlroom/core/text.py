"""Untrusted text made safe to show: what people and hosts wrote reaches a terminal as visible characters only.

Lock reasons, log messages, host output, failure reasons, host names and revisions come from people and from
hosts. Written raw to a terminal, an escape sequence in them clears the operator's screen (ESC [ 2 J), retitles the
terminal (ESC ] 0 ; ... BEL) or writes the clipboard (OSC 52); a newline forges a second log line. `clean` turns
every control character into a visible stand-in instead of dropping it, so the reader sees that something was there:

- C0 controls and DEL in caret notation: ESC -> ``^[``, BEL -> ``^G``, a lone CR -> ``^M``, DEL -> ``^?``;
  with ESC gone, the rest of an escape sequence (``[2J``, ``]0;title``) is plain text;
- C1 controls (8-bit CSI \\x9b, OSC \\x9d, ...), lone surrogates, bidi overrides and Unicode line separators as
  ``\\x9b``, ``\\u202e``; bytes that are not UTF-8 as ``\\xff``;
- a tab as a space, and in `clean` a newline as `` ⏎ ``, so one message is one line;
- longer than ``limit`` characters: cut, ending in ``…``.

The core needs no Textual or Rich for this; the app still never passes such text as markup.
"""

from __future__ import annotations

import re

LIMIT = 500  # characters of one message, reason or name, as shown
LINE_LIMIT = 1000  # characters of one line of host output
NEWLINE = " ⏎ "
ELLIPSIS = "…"

# Everything a terminal (or a line splitter) could act on: C0, DEL, C1, the bidi controls that reorder what is
# shown (Trojan Source), the Unicode line and paragraph separators (str.splitlines breaks on them, and on \x1c-\x1e
# and \x85, all covered here), and lone surrogates (not encodable: print() would raise).
_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_BREAK = re.compile("\r\n|\n")


def _visible(m: re.Match[str]) -> str:
    c = m.group()
    o = ord(c)
    if c == "\t":
        return " "
    if c == "\n":
        return NEWLINE
    if o < 0x20:
        return "^" + chr(o + 0x40)
    if o == 0x7F:
        return "^?"
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8, smuggled in by the surrogateescape error handler
        return f"\\x{o - 0xDC00:02x}"
    if o <= 0xFF:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}"


def _as_str(text: object) -> str:
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text).decode("utf-8", "backslashreplace")
    return str(text)


def clean(text: object, limit: int | None = LIMIT) -> str:
    """`text` as one line of visible, harmless characters, at most ``limit`` long (None: unbounded).

    Never raises: None is "", bytes are decoded (invalid bytes shown as ``\\xff``), other objects go through str().
    The result has no control character, no ESC, no newline and no surrogate, so it can be printed, put in a Log
    line or a Content as it is. Nothing is dropped silently: every control character has a visible stand-in, and a
    cut ends in ``…``.
    """
    s = _as_str(text)
    cut = limit is not None and len(s) > limit
    if cut:
        s = s[: limit + 1]  # every character shows as at least one: no need to look further
    if _BAD.search(s) is not None:
        s = _BAD.sub(_visible, _LINE_BREAK.sub("\n", s))
    if limit is not None and (cut or len(s) > limit):
        s = s[: max(limit - 1, 0)] + ELLIPSIS if limit > 0 else ""
    return s


def clean_lines(text: object, limit: int | None = LINE_LIMIT) -> list[str]:
    """Host output as separate lines (split at LF and CRLF, a trailing newline ends the last line), each `clean`.

    A lone CR shows as ``^M`` rather than letting a line overwrite itself (``ok\\rFAILED``).
    """
    s = _as_str(text)
    if not s:
        return []
    parts = _LINE_BREAK.split(s)
    if parts and parts[-1] == "":
        parts.pop()
    return [clean(p, limit) for p in parts]


def took(seconds: float) -> str:
    """How long work that ran took: '340 ms' under a second (never '0 s'), else whole seconds ('12 s')."""
    s = max(float(seconds or 0.0), 0.0)
    if s < 1:
        return f"{max(round(s * 1000), 1) if s > 0 else 0} ms"
    return f"{s:.0f} s"
