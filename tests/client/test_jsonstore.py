"""The profile's JSON stores share one bounded reader and one atomic writer."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sealdrop.client.errors import ClientError, ContactError
from sealdrop.client.profile.jsonstore import read_section, write_section


def test_a_written_store_reads_back_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "profile" / "s.json"
    write_section(path, "items", {"a": {"n": 1}}, what="the test store")
    assert read_section(path, "items", what="the test store", max_bytes=1024) == {"a": {"n": 1}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_missing_store_is_empty(tmp_path: Path) -> None:
    assert read_section(tmp_path / "none.json", "items", what="x", max_bytes=10) == {}


@pytest.mark.parametrize("raw", [
    b"{nope",                                 # not JSON
    b"\xff\xfe{}",                            # not UTF-8
    b'{"v": 2, "items": {}}',                 # a version this code does not know
    b'{"v": 1}',                              # no section
    b'{"v": 1, "items": []}',                 # the section is not an object
    b"[1, 2]",                                # not an object at all
    b'{"v": 1, "items": {"a": "' + b"x" * 200 + b'"}}',  # past the bound
])
def test_a_damaged_store_raises_the_stores_own_error_with_its_hint(
        tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(raw)
    with pytest.raises(ContactError, match=r"^the test store .* is damaged$") as info:
        read_section(path, "items", what="the test store", max_bytes=100,
                     error=ContactError, hint="delete it")
    assert info.value.hint == "delete it"


def test_an_unreadable_store_says_why(tmp_path: Path) -> None:
    (tmp_path / "s.json").mkdir()  # a folder where the file should be
    with pytest.raises(ClientError, match="cannot read the test store"):
        read_section(tmp_path / "s.json", "items", what="the test store", max_bytes=100)
