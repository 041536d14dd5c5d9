"""``sealdrop audit`` against a real relay and the real CLI: a practice sends two cases to a
lab, the lab receives them; both audits verify everything; then the relay's database is
edited behind its back (one signed receipt) and the practice's audit names it."""

from __future__ import annotations

import json
from pathlib import Path

from pypdf import PdfReader

from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.note import NoteSigner, sign_note
from tests.e2e.kit import Relay, User, make_case

LOG_VERIFICATION_STATUS = 20  # client.errors.LogVerificationError.exit_status


def test_audit_verifies_both_sides_then_names_an_edited_receipt(
    tmp_path: Path, relay: Relay, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    dest = tmp_path / "in"
    dest.mkdir()
    sent = []
    for marker in ("1", "2"):
        case = make_case(tmp_path / f"src{marker}", marker=marker)
        sent.append(practice.json("send", str(case), "--to", lab.handle,
                                  "--label", f"Couronne {marker} DUPONT")["transfer_id"])
    assert len(lab.json("receive", "--all", "--into", str(dest))["received"]) == 2

    text = practice.run("audit", "--json").stdout
    assert "DUPONT" not in text and "Couronne" not in text  # no label: no patient
    mine = json.loads(text)
    assert mine["ok"] is True and mine["failures"] == []
    assert mine["checkpoint"]["size"] >= 2 + 2 + 2 * 2  # keys, transfers, receipts
    assert [k["verified"] for k in mine["own_keys"]] == [True]
    (contact,) = mine["contacts"]
    assert contact["handle"] == lab.handle and contact["verified_by_phone"] is True
    assert contact["inclusion_verified"] is True
    assert sorted(t["id"] for t in mine["sent"]) == sorted(sent)
    for t in mine["sent"]:
        assert t["verified"] and t["commitment_verified"] and t["recipients"] == [lab.handle]
        assert sorted((r["recipient"], r["status"], r["verified"]) for r in t["receipts"]) == [
            (lab.handle, "downloaded", True), (lab.handle, "verified", True)]
    theirs = lab.json("audit")
    assert theirs["ok"] is True
    assert sorted((t["id"], t["sender"], t["inclusion_verified"])
                  for t in theirs["received"]) == sorted(
        (tid, practice.handle, True) for tid in sent)

    # --compare: the lab's checkpoint is a prefix of (or equal to) the practice's;
    # and the PDF, with the report on the terminal.
    theirs_note = tmp_path / "lab-checkpoint.txt"
    theirs_note.write_text(theirs["checkpoint"]["note"])
    pdf = tmp_path / "audit.pdf"
    human = practice.run("audit", "--compare", str(theirs_note), "--pdf", str(pdf)).stdout
    assert "one history" in human and "everything verified" in human
    assert human.count("signed receipt verified") == 4 and "DUPONT" not in human
    assert len(PdfReader(pdf).pages) == 1  # everything happened this month
    page = PdfReader(pdf).pages[0].extract_text()
    assert "Failures: 0" in page and sent[0] in page and "DUPONT" not in page
    # A second history of the same size, signed with the relay's own key: a split view.
    # (the note's text is what comes before its blank line: C2SP signed-note)
    cp = Checkpoint.parse(theirs["checkpoint"]["note"].split("\n\n", 1)[0] + "\n")
    forked = Checkpoint(cp.origin, cp.size, bytes(32))
    signer = NoteSigner.from_private_key_text((relay.data / "log-key").read_text().strip())
    theirs_note.write_text(sign_note(forked.text(), [signer]))
    split = practice.run("audit", "--json", "--compare", str(theirs_note), check=False)
    assert split.returncode == LOG_VERIFICATION_STATUS
    assert "two different histories" in split.stderr
    assert json.loads(split.stdout)["compared_with"]["consistent"] is False

    # The relay changes the time of one signed receipt: its signature no longer holds.
    relay.sql("UPDATE tlog_receipts SET at = at + 3600 WHERE transfer_id = ? "
              "AND status = 'verified'", sent[1])
    r = practice.run("audit", "--json", check=False)
    assert r.returncode == LOG_VERIFICATION_STATUS, r.stderr
    named = f"'verified' receipt of {lab.handle} for transfer {sent[1]}"
    assert named in r.stderr and "forged or altered" in r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is False and len(out["failures"]) == 1 and named in out["failures"][0]
    bad = next(t for t in out["sent"] if t["id"] == sent[1])
    assert [rc["signature_verified"] for rc in bad["receipts"]
            if rc["status"] == "verified"] == [False]
    # The other transfer still verifies.
    assert next(t for t in out["sent"] if t["id"] == sent[0])["verified"] is True
