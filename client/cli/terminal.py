"""Text from a sender or the relay, made safe to print on a terminal.

A note, a file name, a handle, a transfer id or a relay's error message is
written by someone else: a hostile sender or a hostile relay. Printed as is,
an escape sequence in it can recolour or erase lines, rewrite the window
title, move the cursor to fake a "safety number verified" line, or (OSC 52)
write the clipboard; a right-to-left override (U+202E) makes
``scan<U+202E>fdp.exe`` read as ``scanexe.pdf``. ``for_terminal`` is the one
gate: every such string passes it before ``click.echo``.

Nothing is dropped silently: each character that a terminal could act on is
shown as a visible escape (``\\x1b``, ``\\u202e``), so the reader sees that
something was there, and a backslash is doubled so that no text can forge one.
Ordinary text, accents and scripts of every language pass unchanged.
"""

from __future__ import annotations

import json
import unicodedata

# Categories a terminal acts on or that change how text around them reads:
# Cc (C0 controls, DEL, C1 controls such as U+009B CSI), Cf (format: bidi
# embeddings, overrides and isolates, zero-width joiners, BOM), Zl/Zp (line
# and paragraph separators), Cs (lone surrogates: not even printable), and
# Co/Cn (private use, unassigned: no meaning a reader can check).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def unsafe(ch: str) -> bool:
    """Whether a terminal could act on ``ch`` (see ``_UNSAFE_CATEGORIES``)."""
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def for_terminal(text: object) -> str:
    """``text`` as one printable line: every unsafe character as a visible escape.

    Accepts any value (a relay may send a number where a string belongs);
    ``None`` becomes ``-``.
    """
    if text is None:
        return "-"
    s = text if isinstance(text, str) else str(text)
    if s.isprintable() and "\\" not in s:
        return s  # the common case, no copy
    return "".join(
        "\\\\" if ch == "\\" else _escape(ch) if unsafe(ch) else ch for ch in s
    )


def lines_for_terminal(text: object) -> list[str]:
    """A multi-line text (a note) as safe lines: split on line breaks, each made
    safe; the caller indents them so none can pass for a line of ours."""
    if text is None:
        return []
    s = text if isinstance(text, str) else str(text)
    return [for_terminal(line) for line in s.replace("\r\n", "\n").split("\n")]


def json_for_terminal(obj: object) -> str:
    """JSON text with the same meaning as ``obj``, safe on a terminal.

    ``json.dumps`` escapes C0 controls but, with ``ensure_ascii=False`` (kept
    so that accents stay readable), lets DEL, C1 controls and bidi overrides
    through raw. They can only sit inside JSON strings, where ``\\uXXXX`` means
    the same character: so a program reading the output gets the exact data,
    and a person looking at it gets no escape sequence.
    """
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(_json_escape(ch) if unsafe(ch) else ch for ch in text)


def _json_escape(ch: str) -> str:
    n = ord(ch)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000  # outside the BMP: a UTF-16 surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"
