"""The client's side of case cards and the sender's record: judging a card against
the pinned sender (client/receive/cards.py), the inbox line (client/cli/caseline.py),
its JSON without PHI, the sender's record of each case (client/profile/sent.py) and
"you sent these already" (client/send/again.py)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sealdrop.client.cli.caseline import ago, case_line, local_time
from sealdrop.client.profile.contacts import Contact, ContactState
from sealdrop.client.profile.sent import SentCase, SentSummaries
from sealdrop.client.receive.cards import (
    INVALID,
    NONE,
    UNKNOWN,
    UNVERIFIED,
    VERIFIED,
    card_json,
    read_card,
)
from sealdrop.client.send.again import WINDOW, find_repeat
from sealdrop.crypto import age
from sealdrop.crypto.card import CardStudy, make_card, seal_card
from tests.client.receivekit import ALICE, BOB

TID = "c" * 32
CARD = make_card(label="Couronne 36 DUPONT", note="Teinte A2", file_count=3,
                 total_size=1_200_000_000,
                 studies=[CardStudy("DUPONT^Marie", ("CT",), "20261130", 412)])


def _item(blob: bytes | None, *, tid: str = TID, sender: str = ALICE.handle,
          sender_state: str = "verified") -> dict[str, Any]:
    return {"id": tid, "sender": sender, "sender_state": sender_state, "size": 1234,
            "sent_at": int(time.time()) - 7200,
            "card": None if blob is None else base64.b64encode(blob).decode()}


def _sealed(card: Any = CARD, tid: str = TID) -> bytes:
    """ALICE's card for BOB (the lab), as `send` seals it."""
    return seal_card(card, transfer_id=tid, sender=ALICE.handle,
                     signing_key=ALICE.signing_key,
                     recipients=[age.parse_recipient(BOB.bundle.pq)])


def _lab(state: ContactState | None) -> Any:
    """BOB's session as read_card uses it: its identity and ALICE pinned (or not)."""
    contact = None if state is None else Contact(handle=ALICE.handle, bundle=ALICE.bundle,
                                                 state=state, added=1)
    return SimpleNamespace(identity=BOB, contacts=SimpleNamespace(
        get=lambda h: contact if h == ALICE.handle else None))


def test_a_verified_contacts_card_is_shown_as_theirs() -> None:
    view = read_card(_lab(ContactState.VERIFIED), _item(_sealed()))
    assert view.state == VERIFIED and view.card == CARD
    line = case_line(_item(_sealed()), view)
    assert line.startswith(f"{ALICE.handle} ✓ · CT 412 img · DUPONT^Marie · Couronne 36 DUPONT")
    assert line.endswith("3 files · 1.2 GB · 2 h ago")


def test_an_unverified_contacts_card_is_shown_marked() -> None:
    view = read_card(_lab(ContactState.UNVERIFIED), _item(_sealed()))
    assert view.state == UNVERIFIED and view.card == CARD
    assert case_line(_item(_sealed()), view).startswith(f"{ALICE.handle} (unverified) · CT")


def test_a_strangers_card_is_not_opened_nor_shown() -> None:
    item = _item(_sealed(), sender_state="unknown")
    view = read_card(_lab(None), item)
    assert view.state == UNKNOWN and view.card is None
    line = case_line(item, view)
    assert "DUPONT" not in line and line == f"{ALICE.handle} · 1.2 KB · 2 h ago"


def test_no_card_falls_back_to_the_relays_word() -> None:
    view = read_card(_lab(ContactState.VERIFIED), _item(None))
    assert view.state == NONE
    assert case_line(_item(None), view) == f"{ALICE.handle} ✓ · 1.2 KB · 2 h ago"
    assert card_json(view, phi=True) == {"state": "none"}


def test_cards_that_do_not_verify_are_marked_and_show_nothing_of_their_claims() -> None:
    lab = _lab(ContactState.VERIFIED)
    moved = read_card(lab, _item(_sealed(), tid="d" * 32))  # the relay moved it
    assert moved.state == INVALID and "moved" in moved.problem and moved.card is None
    by_other = read_card(lab, _item(_sealed(), sender="cabinet-other"))  # not pinned: unknown
    assert by_other.state == UNKNOWN
    flipped = bytearray(_sealed())
    flipped[-3] ^= 1
    for raw in (bytes(flipped), b"not age at all"):
        assert read_card(lab, _item(raw)).state == INVALID
    assert read_card(lab, {**_item(None), "card": "%%% not base64"}).state == INVALID
    assert read_card(lab, {**_item(None), "card": 12}).state == INVALID
    line = case_line(_item(bytes(flipped)), read_card(lab, _item(bytes(flipped))))
    assert line == f"{ALICE.handle} ✓ · ✗ card does not verify · 1.2 KB · 2 h ago"


def test_card_json_holds_phi_only_when_asked() -> None:
    view = read_card(_lab(ContactState.VERIFIED), _item(_sealed()))
    plain = card_json(view, phi=False)
    assert plain == {"state": "verified", "file_count": 3, "total_size": 1_200_000_000,
                     "more_studies": 0, "studies": [{"modalities": ["CT"], "image_count": 412}]}
    full = card_json(view, phi=True)
    assert full["label"] == "Couronne 36 DUPONT" and full["note_line"] == "Teinte A2"
    assert full["studies"][0]["patient_name"] == "DUPONT^Marie"
    assert full["studies"][0]["study_date"] == "20261130"
    # a sender who writes a name where the modality goes does not get it into JSON
    sly = make_card(label="", note="", file_count=1, total_size=1,
                    studies=[CardStudy("", ("Dupont",), "", 1)])
    view = read_card(_lab(ContactState.VERIFIED), _item(_sealed(sly)))
    assert card_json(view, phi=False)["studies"][0]["modalities"] == ["?"]


def test_the_line_is_terminal_safe() -> None:
    evil = make_card(label="\x1b[2J\x1b]52;c;AAAA\x07 label", note="", file_count=1,
                     total_size=1, studies=[CardStudy("X\x1b[31m", ("CT",), "", 1)])
    line = case_line(_item(_sealed(evil)), read_card(_lab(ContactState.VERIFIED),
                                                     _item(_sealed(evil))))
    assert "\x1b" not in line and "\x07" not in line


def test_times_as_people_say_them() -> None:
    now = time.mktime((2026, 12, 1, 15, 0, 0, 0, 0, -1))
    assert local_time(int(now) - 3600, now) == "14:00"
    assert local_time(int(now) - 86400, now) == "2026-11-30 15:00"
    assert local_time("\x1b[31m", now) == "\\x1b[31m"
    assert [ago(int(now) - d, now) for d in (5, 300, 7200, 3 * 86400)] == [
        "just now", "5 min ago", "2 h ago", "3 d ago"]


def test_the_senders_record_reads_old_files_and_changes_under_update(tmp_path: Path) -> None:
    store = SentSummaries(tmp_path, ALICE)
    store.save("ab" * 16, {"v": 2, "studies": []})  # a version-1 style record: summary only
    old = store.case("ab" * 16)
    assert old is not None and old.label == "" and old.recipients == ()
    case = SentCase(relay_id="cd" * 16, label="Couronne 36", recipients=("labo-dupont",),
                    file_count=3, size=10, created=100, content="k")
    store.save_case(case)
    assert b"Couronne" not in (tmp_path / "sent" / f"{'cd' * 16}.age").read_bytes()
    assert store.update("cd" * 16, retracted_at=200) == SentCase(
        **{**case.to_json(), "recipients": ("labo-dupont",), "receipts": (),
           "retracted_at": 200})
    assert store.update("ef" * 16, retracted_at=1) is None  # no record: nothing made
    assert [c.relay_id for c in store.cases()] == ["cd" * 16, "ab" * 16]  # newest first
    assert SentSummaries(tmp_path, BOB).cases() == []  # not ours: unreadable, skipped


def test_a_repeat_is_the_same_files_to_the_same_recipients_completed_within_a_day() -> None:
    now = 1_000_000
    done = SentCase(relay_id="a" * 32, recipients=("lab-b", "lab-a"), file_count=3,
                    content="K", completed_at=now - 3600)
    assert find_repeat([done], "K", ["lab-a", "lab-b"], now=now) is not None
    assert find_repeat([done], "other", ["lab-a", "lab-b"], now=now) is None
    assert find_repeat([done], "K", ["lab-a"], now=now) is None
    assert find_repeat([done], "K", ["lab-a", "lab-b"], now=now - 3600 + WINDOW) is None
    unfinished = SentCase(relay_id="b" * 32, recipients=("lab-a",), content="K")
    retracted = SentCase(relay_id="c" * 32, recipients=("lab-a",), content="K",
                         completed_at=now, retracted_at=now)
    assert find_repeat([unfinished, retracted], "K", ["lab-a"], now=now) is None
    rep = find_repeat([done], "K", ["lab-a", "lab-b"], now=now)
    assert rep is not None and rep.message("10:42") == (
        f"you sent these 3 file(s) to lab-b, lab-a at 10:42 (transfer {'a' * 32})")


def test_only_recent_records_are_read_when_asked(tmp_path: Path) -> None:
    import os

    store = SentSummaries(tmp_path, ALICE)
    store.save_case(SentCase(relay_id="aa" * 16, created=1))
    store.save_case(SentCase(relay_id="bb" * 16, created=2))
    old = tmp_path / "sent" / f"{'aa' * 16}.age"
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    assert [c.relay_id for c in store.cases(since=time.time() - 86400)] == ["bb" * 16]
    assert len(store.cases()) == 2
