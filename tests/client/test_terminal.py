"""The terminal gate (``cli/terminal.py``) over hostile strings (class 6).

Whatever a sender or a relay writes, what reaches the terminal holds no
character a terminal acts on, shows that something was there, and leaves
ordinary text (accents, other scripts) alone. JSON output keeps the exact
data for programs while being just as safe on a terminal.
"""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealdrop.client.cli.format import claimed_size, claimed_time
from sealdrop.client.cli.terminal import (
    for_terminal,
    json_for_terminal,
    lines_for_terminal,
    unsafe,
)

ESC = "\x1b"
HOSTILE = {
    "ansi colour and erase line": f"{ESC}[31mRED{ESC}[2K{ESC}[0m",
    "cursor up to overwrite a line": f"ok{ESC}[1A{ESC}[2Ksafety number verified",
    "OSC 52 clipboard write": f"{ESC}]52;c;cm0gLXJmIH4K\x07",
    "OSC 0 window title": f"{ESC}]0;pwned{ESC}\\",
    "OSC 8 hyperlink": f"{ESC}]8;;https://evil.example{ESC}\\click{ESC}]8;;{ESC}\\",
    "carriage return overwrite": "evil.exe\rreport.pdf",
    "backspaces": "report.pdf\x08\x08\x08exe",
    "newline forging a line": "note\nReceived 1234 from lab-dupont — safety number verified",
    "bell and NUL": "\x07\x00",
    "DEL": "a\x7fb",
    "C1 CSI (8-bit escape)": "\u009b31mRED",
    "C1 OSC and ST": "\u009d0;title\u009c",
    "bidi override": "scan\u202efdp.exe",
    "bidi isolates and marks": "\u2066a\u2069\u200f\u061c",
    "zero-width joiner and BOM": "rep\u200dort\ufeff.pdf",
    "line and paragraph separators": "a\u2028b\u2029c",
    "lone surrogate": "bad\udc80name",
    "forged escape with a backslash": "\\x1b[31m",
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_strings_are_neutralised(text: str) -> None:
    out = for_terminal(text)
    assert not any(unsafe(ch) for ch in out)
    assert out.isprintable()  # no control, format or separator character at all
    assert ESC not in out and "\n" not in out and "\r" not in out
    out.encode("utf-8")  # printable on any UTF-8 terminal: no lone surrogate left
    assert out != text  # something visibly changed


def test_escapes_are_visible_and_unambiguous() -> None:
    assert for_terminal(f"{ESC}[31mRED") == "\\x1b[31mRED"
    assert for_terminal("scan\u202efdp.exe") == "scan\\u202efdp.exe"
    assert for_terminal("\u009b") == "\\x9b"
    assert for_terminal("a\nb\tc") == "a\\x0ab\\x09c"
    # A backslash is doubled: the text "\x1b" cannot pass for an escape we made.
    assert for_terminal("\\x1b") == "\\\\x1b"
    assert for_terminal(f"{ESC}") != for_terminal("\\x1b")


@pytest.mark.parametrize("text", [
    "Couronne zircone 36, teinte A2", "Dr Müller — prothèse", "歯科技工所", "عيادة الأسنان",
    "IM0001.dcm", "scan 2024-06-01.stl", "", "émoji 🦷 ok",
])
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert for_terminal(text) == text


def test_non_strings_and_none() -> None:
    assert for_terminal(None) == "-"
    assert for_terminal(12345) == "12345"
    assert for_terminal(["\x1b"]) == "['\\\\x1b']"  # repr's own escape, backslash doubled


def test_a_note_keeps_its_lines_each_made_safe() -> None:
    assert lines_for_terminal("Couronne 36\r\nteinte A2\n") == ["Couronne 36", "teinte A2", ""]
    assert lines_for_terminal(f"a{ESC}[2K\rb") == ["a\\x1b[2K\\x0db"]
    assert lines_for_terminal(None) == []


@given(st.text())
def test_any_text_comes_out_printable(text: str) -> None:
    out = for_terminal(text)
    # Python's "printable" also excludes spaces other than " " (U+00A0...): harmless.
    assert all(unicodedata.category(ch) == "Zs" for ch in out if not ch.isprintable())
    assert not any(unsafe(ch) for ch in out)
    out.encode("utf-8")


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=20,
))
def test_json_output_keeps_the_exact_data_and_is_terminal_safe(obj: object) -> None:
    text = json_for_terminal(obj)
    assert not any(unsafe(ch) for ch in text)
    assert json.loads(text) == obj


def test_json_output_keeps_accents_readable() -> None:
    text = json_for_terminal({"note": f"teinte A2 é {ESC}[31m \u202e \u009b"})
    assert "é" in text and "\\u001b" in text and "\\u202e" in text and "\\u009b" in text


def test_claimed_sizes_and_times_from_a_relay() -> None:
    assert claimed_size(1500).strip() == "1.5 KB"
    assert claimed_size(f"{ESC}[31m").strip() == "\\x1b[31m"
    assert claimed_size(-1).strip() == "-1" and claimed_size(True).strip() == "True"
    assert claimed_time(None) == "-"
    assert claimed_time(f"x{ESC}") == "x\\x1b"
    assert claimed_time(10**20) == str(10**20)  # beyond any date: shown, not a crash
