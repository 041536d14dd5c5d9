"""The sender's kept DICOM summaries (client/profile/sent.py), read by ``status``."""

from __future__ import annotations

import os
from pathlib import Path

from sealdrop.client.profile.sent import MAX_AGE_DAYS, SentSummaries
from tests.client.receivekit import ALICE, BOB

SUMMARY = {"v": 2, "studies": [{"patient_name": "DUPONT^Marie", "series_count": 1}]}
RID = "ab" * 16


def test_kept_encrypted_and_read_back(tmp_path: Path) -> None:
    store = SentSummaries(tmp_path, ALICE)
    store.save(RID, SUMMARY)
    (path,) = (tmp_path / "sent").iterdir()
    assert path.name == f"{RID}.age"
    assert b"DUPONT" not in path.read_bytes()  # age-encrypted to the user's own key
    assert path.stat().st_mode & 0o077 == 0
    assert store.load(RID) == SUMMARY
    assert SentSummaries(tmp_path, BOB).load(RID) is None  # not ours: nothing, no error


def test_nothing_kept_without_dicom_and_missing_or_damaged_is_none(tmp_path: Path) -> None:
    store = SentSummaries(tmp_path, ALICE)
    store.save(RID, {})
    assert not (tmp_path / "sent").exists()
    assert store.load(RID) is None
    store.save(RID, SUMMARY)
    (tmp_path / "sent" / f"{RID}.age").write_bytes(b"age-encryption.org/v1\ngarbage")
    assert store.load(RID) is None
    assert store.load("../../etc/passwd") is None  # a relay's id that is no file name


def test_old_summaries_are_pruned(tmp_path: Path) -> None:
    store = SentSummaries(tmp_path, ALICE)
    store.save(RID, SUMMARY)
    old = tmp_path / "sent" / f"{RID}.age"
    past = 1_700_000_000
    os.utime(old, (past, past))
    store.save("cd" * 16, SUMMARY, now=past + (MAX_AGE_DAYS + 1) * 86400)
    assert not old.exists() and store.load("cd" * 16) == SUMMARY
