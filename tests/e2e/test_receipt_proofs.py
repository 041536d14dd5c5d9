"""Signed receipts keep their tlog-proofs, on both sides, against a real relay
(docs/transparency.md, "Receipt proofs").

The sender's ``status`` keeps each receipt it checked, with the C2SP
tlog-proof, in its own record of the transfer: the proof verifies offline with
the pinned log key, and ``audit`` still checks the receipts once the relay
deleted the transfer. The recipient checks that the relay logged its own
receipts where the ack's answer says, keeps the proofs, and refuses (exit 25)
when the relay later serves another entry in their place.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from sealdrop.client.profile.receipts import ReceiptStore
from sealdrop.crypto.tlog import entries
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.crypto.tlog.proofbundle import ProofBundle, verify_bundle
from tests.e2e.kit import User, log_state, make_case, refused, tree


def _proved(kept: dict[str, Any], tid: str, salt: bytes, commitment: bytes,
            pinned: dict[str, Any]) -> int:
    """The index a kept receipt's tlog-proof proves, checked offline: no relay."""
    sig = base64.b64decode(kept["sig"])
    receipt = entries.Receipt(transfer_id=tid, commitment=commitment,
                              recipient=kept["recipient"], status=kept["status"],
                              at=kept["at"])
    leaf = entries.receipt_entry(salt, receipt, sig).to_bytes()
    verify_bundle(ProofBundle.parse(kept["proof"]), leaf, pinned["origin"],
                  [NoteVerifier.from_vkey(pinned["vkey"])])
    return int(ProofBundle.parse(kept["proof"]).index)


def test_receipts_keep_their_proofs_past_the_relay_and_an_edited_one_is_refused(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid = practice.json("send", str(make_case(tmp_path / "s")), "--to",
                        lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    lab.run("receive", tid, "--into", str(dest))

    # The recipient checked where the relay logged its two receipts, and kept the proofs.
    got = ReceiptStore(lab.home).load()[tid]
    salt, commitment = bytes.fromhex(got["salt"]), bytes.fromhex(got["commitment"])
    mine = got["receipts"]
    assert sorted(mine) == ["downloaded", "verified"]
    logged = dict(lab.relay.sql(
        "select status, log_index from tlog_receipts where transfer_id = ?", tid))
    for status, kept in mine.items():
        assert kept["recipient"] == lab.handle and kept["rechecked"] is False
        assert _proved(kept, tid, salt, commitment, log_state(lab)) == logged[status]

    # The sender's status checks both receipts and keeps them with their proofs.
    (row,) = practice.json("status", tid)["transfers"]
    assert row["recipients"][0]["receipts"] == {"downloaded": "signed", "verified": "signed"}
    assert sorted((r["recipient"], r["status"]) for r in row["receipts"]) == [
        (lab.handle, "downloaded"), (lab.handle, "verified")]
    pinned = log_state(practice)
    for kept in row["receipts"]:
        assert _proved(kept, tid, salt, commitment, pinned) == logged[kept["status"]]

    # The relay no longer has it: the sender's record still shows and proves them,
    # and the audit checks the transfer and both receipts from that record.
    practice.run("retract", tid)
    assert not practice.relay.sql("select id from transfers where id = ?", tid)
    (gone,) = practice.json("status", tid)["transfers"]
    assert gone["state"] == "retracted"
    assert sorted(r["status"] for r in gone["receipts"]) == ["downloaded", "verified"]
    assert all(r["proof"].startswith("c2sp.org/tlog-proof@v1\n") for r in gone["receipts"])
    report = practice.json("audit")
    (sent,) = [t for t in report["sent"] if t["id"] == tid]
    assert sent["own_record_only"] and sent["commitment_verified"] and sent["verified"]
    assert sorted((r["status"], r["proof_verified"]) for r in sent["receipts"]) == [
        ("downloaded", True), ("verified", True)]
    assert report["ok"], report["failures"]

    # A relay that says it logged the lab's "verified" receipt of a second transfer
    # at an entry that is not it (here: a row it made up before the ack, pointing
    # at the first transfer's receipt): the receive refuses once the files are
    # placed and recorded. The first transfer's receipts were checked once more.
    tid2 = practice.json("send", str(make_case(tmp_path / "s2")), "--to",
                         lab.handle)["transfer_id"]
    at, sig = mine["verified"]["at"], base64.b64decode(mine["verified"]["sig"])
    lab.relay.sql("insert into tlog_receipts (transfer_id, recipient, status, at, sig, "
                  "log_index) values (?, ?, 'verified', ?, ?, ?)", tid2, lab.handle, at, sig,
                  logged["verified"])
    dest2 = tmp_path / "in2"
    dest2.mkdir()
    r = lab.run("receive", tid2, "--into", str(dest2), check=False)
    refused(r, 25, f'your "verified" receipt for transfer {tid2}')
    assert tree(dest2)
    got2 = ReceiptStore(lab.home).load()
    assert tid2 in got2 and sorted(got2[tid2]["receipts"]) == ["downloaded"]
    assert all(k["rechecked"] is True for k in got2[tid]["receipts"].values())

    # The relay now serves another entry where the lab's "downloaded" receipt of
    # the second transfer was: its next command that talks to the relay refuses.
    index = got2[tid2]["receipts"]["downloaded"]["log_index"]
    other = entries.TransferEntry(bytes(32)).to_bytes()
    lab.relay.sql("update tlog_entries set data = ? where idx = ?", other, index)
    r = lab.run("inbox", check=False)
    refused(r, 25, f'your "downloaded" receipt for transfer {tid2}', "altered or replaced")
    kept = ReceiptStore(lab.home).load()[tid2]["receipts"]["downloaded"]
    assert kept["rechecked"] is False


def test_a_receipt_from_an_account_the_relay_no_longer_has_cannot_pass(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    """The sender no longer pins the recipient (``contacts remove``), so the
    receipt's key must come from the relay, which says the account is gone: the
    receipt cannot be checked, and ``status`` stops (exit 25) rather than show a
    "verified" it cannot prove."""
    practice, lab = pair
    case = make_case(tmp_path / "src")
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    lab.run("receive", "--all", "--into", str(dest))
    practice.run("contacts", "remove", lab.handle)
    relay = practice.relay
    relay.sql("update accounts set handle = 'gone-' || handle where handle = ?", lab.handle)
    refused(practice.run("status", tid, check=False), 25,
            f"no longer has the account {lab.handle}")
