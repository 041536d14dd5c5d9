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
import json
import subprocess
from pathlib import Path
from typing import Any

from sealdrop.client.profile.receipts import ReceiptStore
from sealdrop.crypto.tlog import entries
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.crypto.tlog.proofbundle import ProofBundle, verify_bundle
from tests.e2e.kit import User, make_case


def _log(user: User) -> dict[str, Any]:
    return dict(json.loads((user.home / "log.json").read_text())["log"])


def _refused(r: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("sealdrop: error:"), r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


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
        assert _proved(kept, tid, salt, commitment, _log(lab)) == logged[status]

    # The sender's status checks both receipts and keeps them with their proofs.
    (row,) = practice.json("status", tid)["transfers"]
    assert row["recipients"][0]["receipts"] == {"downloaded": "signed", "verified": "signed"}
    assert sorted((r["recipient"], r["status"]) for r in row["receipts"]) == [
        (lab.handle, "downloaded"), (lab.handle, "verified")]
    pinned = _log(practice)
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

    # The relay now serves another entry where the lab's "verified" receipt was:
    # the lab's next command that talks to the relay refuses, naming the receipt.
    other = entries.TransferEntry(bytes(32)).to_bytes()
    lab.relay.sql("update tlog_entries set data = ? where idx = ?", other, logged["verified"])
    r = lab.run("inbox", check=False)
    _refused(r, 25, f'your "verified" receipt for transfer {tid}', "altered or replaced")
    assert ReceiptStore(lab.home).load()[tid]["receipts"]["verified"]["rechecked"] is False
