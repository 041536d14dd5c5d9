"""The case folder's name (client/receive/layout.py): safe from any sender or relay value."""

from __future__ import annotations

import datetime
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealdrop.client.receive.layout import (
    DEFAULT_LAYOUT,
    MAX_COMPONENT_BYTES,
    CaseInfo,
    Layout,
    LayoutError,
    component,
)

WHEN = datetime.datetime(2026, 11, 30, 10, 42, 7)
RID = "3f9a2c1e" + "0" * 24
_WINDOWS_BAD = set('<>:"/\\|?*')


def _case(sender: str = "cabinet-martin", label: str | None = None, rid: str = RID) -> CaseInfo:
    return CaseInfo(relay_id=rid, sender=sender, when=WHEN, label=label)


def _assert_safe(name: str) -> None:
    assert name and name not in (".", "..")
    assert not (_WINDOWS_BAD & set(name))
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name)
    assert unicodedata.normalize("NFC", name) == name
    assert len(name.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert name == name.strip(" .")  # Windows drops trailing dots and spaces
    assert PureWindowsPath(name).name == name and not PureWindowsPath(name).is_reserved()


def test_the_default_names_a_case_by_date_sender_and_short_id() -> None:
    layout = Layout.parse(None)
    assert layout.template == DEFAULT_LAYOUT and layout.unique and not layout.flat
    assert layout.folder(_case()) == "2026-11-30 cabinet-martin 3f9a2c1e"


def test_placeholders_and_nesting() -> None:
    layout = Layout.parse("{sender}/{date} {time} {label} {id}")
    assert layout.folder(_case(label="Couronne 36")) == \
        "cabinet-martin/2026-11-30 10h42 Couronne 36 3f9a2c1e"
    # No card yet (another change wires the label in): never an empty name.
    assert Layout.parse("{label}").folder(_case()) == "unlabelled"


@pytest.mark.parametrize("template", ["{flat}", "", "  "])
def test_flat_means_straight_into_into(template: str) -> None:
    layout = Layout.parse(template)
    assert layout.flat and not layout.unique and layout.folder(_case()) == ""


@pytest.mark.parametrize(("template", "says"), [
    ("/srv/{id}", "absolute"),
    ("{date}/../{id}", "'..'"),
    ("{date}//{id}", "empty"),
    ("./{id}", "'.'"),
    ("{patient}", "unknown placeholder {patient}"),
    ("{id!r}", "unknown placeholder"),
    ("{date:%Y}", "unknown placeholder"),
    ("{date", "malformed"),
    ("cases/{flat}", "whole layout"),
])
def test_bad_templates_are_refused_with_what_to_change(template: str, says: str) -> None:
    with pytest.raises(LayoutError) as err:
        Layout.parse(template)
    assert says in str(err.value)


def test_a_layout_without_id_is_not_unique() -> None:
    assert not Layout.parse("{sender}").unique
    assert Layout.parse("{sender}/{id}").unique


@pytest.mark.parametrize(("value", "expected"), [
    ("..", "_"),
    (".", "_"),
    ("", "_"),
    ("../../etc", "-..-etc"),
    ("a/b\\c:d", "a-b-c-d"),
    ("CON", "_CON"),
    ("nul.txt", "_nul.txt"),
    ("Couronne 36. ", "Couronne 36"),
    ("DUPONT\u202e^Marie\x1b[2J", "DUPONT ^Marie [2J"),
    ("line\nbreak\ttab", "line break tab"),
    ("e\u0301", "\u00e9"),  # NFC: one code point, as macOS and Windows agree
])
def test_hostile_values_become_one_safe_component(value: str, expected: str) -> None:
    assert component(value) == expected
    _assert_safe(component(value))


def test_long_values_are_bounded_without_splitting_a_character() -> None:
    name = component("é" * 500)
    assert name == "é" * (MAX_COMPONENT_BYTES // 2)
    folder = Layout.parse("{date} {sender} {label} {id}").folder(
        _case(sender="x" * 300, label="ü" * 300))
    _assert_safe(folder)


@settings(max_examples=300, deadline=None)
@given(sender=st.text(), label=st.one_of(st.none(), st.text()),
       rid=st.text(min_size=0, max_size=40))
def test_any_sender_label_or_id_stays_one_folder_under_into(
    sender: str, label: str | None, rid: str,
) -> None:
    into = PurePosixPath("/srv/lab/incoming")
    for template in (DEFAULT_LAYOUT, "{label}", "{sender}/{label} {id}", "{id}{label}{sender}"):
        layout = Layout.parse(template)
        rel = layout.folder(_case(sender=sender, label=label, rid=rid))
        parts = rel.split("/")
        assert len(parts) == len(layout.parts)  # no value adds or removes a level
        for part in parts:
            _assert_safe(part)
        assert (into / rel).parent.is_relative_to(into)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_component_is_idempotent_and_safe(value: str) -> None:
    once = component(value)
    _assert_safe(once)
    assert component(once) == once


def test_the_name_is_usable_on_this_file_system(tmp_path: Path) -> None:
    hostile = "\u202e\x00CON:..\\/" + "é" * 200
    rel = Layout.parse("{sender}/{label} {id}").folder(_case(sender=hostile, label=hostile))
    (tmp_path / rel).mkdir(parents=True)
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
            if p.is_dir() and not any(p.iterdir())] == [rel]
