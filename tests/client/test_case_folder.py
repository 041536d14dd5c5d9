"""The case folder checked before a download, and the receipt that remembers it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealdrop.client.errors import ReceiveError
from sealdrop.client.profile.receipts import ReceiptStore
from sealdrop.client.receive.transfer import AlreadyReceivedError, _check_case_folder

RID = "ab" * 16


def test_an_absent_or_empty_case_folder_is_free(tmp_path: Path) -> None:
    _check_case_folder(tmp_path, "2026-11-30 cabinet-martin abababab", RID)
    (tmp_path / "cabinet-martin" / "abababab").mkdir(parents=True)
    _check_case_folder(tmp_path, "cabinet-martin/abababab", RID)  # empty: used as is
    _check_case_folder(tmp_path, "cabinet-martin/cdcdcdcd", RID)  # parent exists: fine
    _check_case_folder(tmp_path, "", RID)  # flat: nothing to check before the download


@pytest.mark.parametrize("make", ["file", "nonempty", "link", "link-parent"])
def test_a_taken_case_folder_is_refused_with_what_to_do(tmp_path: Path, make: str) -> None:
    into = tmp_path / "in"
    into.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rel = "cabinet-martin/abababab"
    if make == "file":
        (into / "cabinet-martin").write_bytes(b"x")
    elif make == "nonempty":
        (into / rel).mkdir(parents=True)
        (into / rel / "old.stl").write_bytes(b"x")
    elif make == "link":
        (into / "cabinet-martin").mkdir()
        os.symlink(elsewhere, into / rel)
    else:
        os.symlink(elsewhere, into / "cabinet-martin")
    with pytest.raises(ReceiveError) as err:
        _check_case_folder(into, rel, RID)
    assert "nothing was downloaded" in str(err.value)
    assert err.value.hint is not None and "{id}" in err.value.hint
    assert not any(elsewhere.iterdir())


def test_the_receipt_keeps_its_first_time_and_folder_when_acked_later(tmp_path: Path) -> None:
    store = ReceiptStore(tmp_path)
    store.mark(RID, manifest_id="cd" * 16, acked=False, folder="/srv/in/2026-11-30 x abababab")
    first = store.load()[RID]
    store.mark(RID, manifest_id="cd" * 16, acked=True)  # as flush_acks does
    again = store.load()[RID]
    assert again == {**first, "acked": True}
    assert store.unacked() == []


def test_already_received_says_when_and_where(tmp_path: Path) -> None:
    exc = AlreadyReceivedError(RID, at=1_796_035_320, folder="/srv/in/2026-11-30 x abababab")
    assert str(exc).startswith(f"transfer {RID} was already received on ")
    assert str(exc).endswith(" into /srv/in/2026-11-30 x abababab")
    assert exc.to_json() == {"transfer_id": RID, "received_at": 1_796_035_320}
    assert exc.to_json(phi=True)["case_folder"] == "/srv/in/2026-11-30 x abababab"
    old = AlreadyReceivedError(RID, at=None, folder=None)  # a receipt from before
    assert "an unknown date" in str(old) and "not recorded" in str(old)
