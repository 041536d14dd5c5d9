"""The audit's checks against a whole log (client/audit/verify.py): pure, real crypto.

Each test builds the log a relay would have built (crypto.tlog.entries), then
lets the relay lie in one way and checks the audit names it.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from nacl.signing import SigningKey

from sealdrop.client.audit.verify import (
    ContactFacts,
    LogIndex,
    OwnKeyFacts,
    ReceivedFacts,
    RelayReceipt,
    SentFacts,
    audit_contacts,
    audit_own_keys,
    audit_received,
    audit_sent,
    check_entries,
)
from sealdrop.crypto.errors import LogError
from sealdrop.crypto.tlog.entries import (
    KeyEntry,
    Receipt,
    receipt_entry,
    sign_receipt,
    transfer_entry,
)
from sealdrop.crypto.tlog.merkle import MemoryHashes, leaf_hash

T1 = "a" * 32
SALT = bytes(range(32))
DIGEST = hashlib.sha256(b"chunks").hexdigest()
LAB = SigningKey(b"\x01" * 32)
MINE, LABS = "11" * 32, "22" * 32
DAY = 1_790_000_000


def key(handle: str, digest: str) -> bytes:
    return KeyEntry(handle, bytes.fromhex(digest)).to_bytes()


def signed(status: str, at: int = DAY) -> tuple[Receipt, bytes]:
    commitment = transfer_entry(SALT, T1, "dr-martin", ["lab-dupont"], DIGEST).commitment
    r = Receipt(T1, commitment, "lab-dupont", status, at)  # type: ignore[arg-type]
    return r, sign_receipt(r, LAB)


def the_log() -> list[bytes]:
    (r1, s1), (r2, s2) = signed("downloaded"), signed("verified")
    return [key("dr-martin", MINE), key("lab-dupont", LABS),
            transfer_entry(SALT, T1, "dr-martin", ["lab-dupont"], DIGEST).to_bytes(),
            receipt_entry(SALT, r1, s1).to_bytes(), receipt_entry(SALT, r2, s2).to_bytes()]


def sent_facts(**changes: object) -> SentFacts:
    receipts = tuple(RelayReceipt(recipient="lab-dupont", status=r.status, at=r.at, sig=sig,
                                  log_index=3 + n)
                     for n, (r, sig) in enumerate([signed("downloaded"), signed("verified")]))
    facts = SentFacts(relay_id=T1, at=DAY, sender="dr-martin", recipients=("lab-dupont",),
                      digest=DIGEST, salt=SALT, log_index=2, receipts=receipts)
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


KEYS = {"lab-dupont": bytes(LAB.verify_key)}
COMMITMENT = transfer_entry(SALT, T1, "dr-martin", ["lab-dupont"], DIGEST).commitment


def test_entries_must_hash_to_the_signed_root() -> None:
    log = the_log()
    root = MemoryHashes([leaf_hash(e) for e in log]).root()
    check_entries(log, 5, root)
    with pytest.raises(LogError, match="do not hash to the root"):
        check_entries([log[0], log[2], log[1], *log[3:]], 5, root)  # reordered
    with pytest.raises(LogError, match="served 4 log entries for a checkpoint of 5"):
        check_entries(log[:4], 5, root)  # one hidden


def test_a_clean_log_verifies_everything() -> None:
    log = LogIndex.build(the_log())
    assert log.failures == []
    events, failures = audit_own_keys(
        OwnKeyFacts(handle="dr-martin", digest=MINE, created=DAY, made=(MINE,)), log)
    assert failures == [] and [(e.log_index, e.verified) for e in events] == [(0, True)]
    contact = ContactFacts(handle="lab-dupont", safety_number="1", verified_by_phone=True,
                           added=DAY, digest=LABS, signing_key=KEYS["lab-dupont"])
    rows, failures = audit_contacts([contact], log)
    assert failures == [] and rows[0].log_index == 1 and rows[0].inclusion_verified
    sent, failures = audit_sent(sent_facts(), log, KEYS)
    assert failures == [] and sent.verified and sent.log_index == 2
    assert [(r.status, r.log_index) for r in sent.receipts] == [("downloaded", 3),
                                                                ("verified", 4)]
    got, failures = audit_received(ReceivedFacts(
        relay_id=T1, at=DAY, sender="dr-martin", commitment=COMMITMENT, log_index=2), log)
    assert failures == [] and got.inclusion_verified and got.log_index == 2


def test_a_key_under_our_handle_that_we_never_made_is_named() -> None:
    log = LogIndex.build([*the_log(), key("dr-martin", "33" * 32)])
    events, failures = audit_own_keys(
        OwnKeyFacts(handle="dr-martin", digest=MINE, created=DAY, made=(MINE,)), log)
    assert [(e.log_index, e.verified) for e in events] == [(0, True), (5, False)]
    assert len(failures) == 1
    assert "logged a key for dr-martin (log entry 5) that this profile never made" in (
        failures[0].text)


def test_our_key_missing_from_the_log_is_named() -> None:
    log = LogIndex.build(the_log()[1:])
    _, failures = audit_own_keys(
        OwnKeyFacts(handle="dr-martin", digest=MINE, created=DAY, made=()), log)
    assert ["this profile's key" in f.text and "not in the relay's log" in f.text
            for f in failures] == [True]


def test_a_contact_key_not_logged_or_changed_later_is_named() -> None:
    contact = ContactFacts(handle="lab-dupont", safety_number="1", verified_by_phone=False,
                           added=DAY, digest=LABS, signing_key=KEYS["lab-dupont"])
    _, failures = audit_contacts([contact], LogIndex.build([the_log()[0]]))
    assert "key pinned for contact lab-dupont is not in the relay's log" in failures[0].text
    rows, failures = audit_contacts(
        [contact], LogIndex.build([*the_log(), key("lab-dupont", "44" * 32)]))
    assert rows[0].inclusion_verified
    assert "different key for contact lab-dupont (log entry 5)" in failures[0].text


def test_a_forged_receipt_is_named_with_its_recipient() -> None:
    log = LogIndex.build(the_log())
    facts = sent_facts()
    forged = dataclasses.replace(facts.receipts[1], at=DAY + 60)  # the relay edited the time
    sent, failures = audit_sent(dataclasses.replace(
        facts, receipts=(facts.receipts[0], forged)), log, KEYS)
    assert not sent.verified and sent.commitment_verified
    assert [r.signature_verified for r in sent.receipts] == [True, False]
    assert len(failures) == 1
    assert ("'verified' receipt of lab-dupont for transfer " + T1) in failures[0].text
    assert "forged or altered" in failures[0].text
    # A receipt whose signature is fine but which the relay never logged.
    _, failures = audit_sent(facts, LogIndex.build(the_log()[:4]), KEYS)
    assert ["'verified' receipt of lab-dupont" in f.text and "not in the relay's log" in f.text
            for f in failures] == [True]
    # A receipt from someone who is not a pinned contact cannot be checked.
    _, failures = audit_sent(facts, log, {})
    assert all("not a pinned contact" in f.text for f in failures) and len(failures) == 2


def test_a_transfer_logged_with_other_recipients_or_not_at_all_is_named() -> None:
    log = LogIndex.build(the_log())
    sent, failures = audit_sent(sent_facts(recipients=("lab-dupont", "lab-other"),
                                           receipts=()), log, KEYS)
    assert not sent.commitment_verified
    assert "is not in the relay's log as this profile sent it" in failures[0].text
    _, failures = audit_sent(sent_facts(salt=None, receipts=()), log, KEYS)
    assert failures[0].text.startswith("the relay shows no log entry for transfer " + T1)
    got, failures = audit_received(ReceivedFacts(
        relay_id=T1, at=DAY, sender="dr-martin", commitment=COMMITMENT, log_index=2),
        LogIndex.build([e for i, e in enumerate(the_log()) if i != 2]))
    assert not got.inclusion_verified
    assert "no longer in the relay's log: the relay removed or rewrote" in failures[0].text


def test_a_malformed_entry_is_a_failure() -> None:
    log = LogIndex.build([*the_log(), b"sealdrop/other/v1\nx\n"])
    assert ["log entry 5 is malformed" in f.text for f in log.failures] == [True]
