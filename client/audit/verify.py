"""The audit's checks: what this profile knows, held against the whole log (pure).

``gather`` hands over the log's every entry, already checked against the
signed checkpoint's root (``check_entries``), and the profile's own facts
(its key, its pinned contacts, its sent and received transfers, and what
the relay says of them). Because every entry is in hand and the root was
recomputed from all of them, "included" here means "this exact entry is in
the tree the relay signed": no proof per item is needed, and no entry can be
hidden from the audit.

The checks, each a failure sentence when it does not hold:
- every key entry for our own handle is a bundle this profile made, and the
  bundle in use is logged;
- each pinned contact's bundle is logged, and no newer key entry for that
  handle differs from the pinned bundle (a key change the relay served, or
  could serve, to others);
- each sent transfer's commitment, recomputed from our own record (id,
  sender, recipients, chunk-list digest) and the salt the relay gives, is
  logged; each receipt the relay shows, or the sender's record kept, is
  signed by the recipient's pinned key and logged, and a tlog-proof kept
  with it verifies with the pinned log key alone (a transfer the relay
  deleted is checked from the sender's record: ``SentFacts.own_record_only``);
- each received transfer's commitment, as this profile checked it on receipt,
  is still logged.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sealdrop.crypto.errors import LogError, ReceiptError
from sealdrop.crypto.tlog.entries import (
    KeyEntry,
    Receipt,
    ReceiptEntry,
    TransferEntry,
    parse_entry,
    receipt_entry,
    transfer_commitment,
    verify_receipt,
)
from sealdrop.crypto.tlog.merkle import MemoryHashes, leaf_hash
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.crypto.tlog.proofbundle import ProofBundle, verify_bundle

from .model import (
    ContactKey,
    Failure,
    KeyEvent,
    ReceiptCheck,
    ReceivedTransfer,
    SentTransfer,
    utc_day,
)


def check_entries(entries: Sequence[bytes], size: int, root: bytes) -> None:
    """Raise LogError unless ``entries`` are exactly the ``size`` leaves of the tree
    whose root the relay signed."""
    if len(entries) != size:
        raise LogError(f"the relay served {len(entries)} log entries for a checkpoint of "
                       f"{size}")
    tree = MemoryHashes([leaf_hash(e) for e in entries])
    if tree.root() != root:
        raise LogError("the log entries the relay served do not hash to the root it signed: "
                       "its tiles and its checkpoint disagree")


@dataclass(frozen=True, slots=True)
class LogIndex:
    """Where each entry is, parsed once; the entries that do not parse, as failures."""

    key_entries: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # handle ->
    positions: dict[bytes, int] = field(default_factory=dict)  # entry bytes -> first index
    failures: list[Failure] = field(default_factory=list)

    @classmethod
    def build(cls, entries: Sequence[bytes]) -> LogIndex:
        index = cls()
        for i, data in enumerate(entries):
            index.positions.setdefault(data, i)
            try:
                entry = parse_entry(data)
            except LogError:
                index.failures.append(Failure(
                    text=f"log entry {i} is malformed: the relay logged something that is "
                         "not a sealdrop entry"))
                continue
            if isinstance(entry, KeyEntry):
                index.key_entries.setdefault(entry.handle, []).append(
                    (i, entry.bundle_digest.hex()))
        return index

    def find(self, entry: KeyEntry | TransferEntry | ReceiptEntry) -> int | None:
        return self.positions.get(entry.to_bytes())


# -- own key and contacts -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnKeyFacts:
    handle: str
    digest: str  # hex, of the bundle in use (bundle.json)
    created: int
    made: tuple[str, ...]  # every bundle digest this profile registered (logstate "own")


def audit_own_keys(own: OwnKeyFacts, log: LogIndex) -> tuple[list[KeyEvent], list[Failure]]:
    events: list[KeyEvent] = []
    failures: list[Failure] = []
    made = {own.digest, *own.made}
    logged = log.key_entries.get(own.handle, [])
    for index, digest in logged:
        if digest in made:
            events.append(KeyEvent(bundle_digest=digest, log_index=index, verified=True,
                                   created=own.created if digest == own.digest else None))
            continue
        events.append(KeyEvent(bundle_digest=digest, log_index=index, verified=False,
                               created=None))
        failures.append(Failure(text=(
            f"the relay logged a key for {own.handle} (log entry {index}) that this profile "
            "never made: someone may be receiving transfers meant for you")))
    if own.digest not in {d for _, d in logged}:
        events.append(KeyEvent(bundle_digest=own.digest, log_index=None, verified=False,
                               created=own.created))
        failures.append(Failure(at=own.created, text=(
            f"this profile's key (made {utc_day(own.created)}) is not in the relay's log")))
    return events, failures


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactFacts:
    handle: str
    safety_number: str
    verified_by_phone: bool
    added: int
    digest: str  # hex, of the pinned bundle
    signing_key: bytes  # the pinned bundle's, for receipts


def audit_contacts(contacts: Sequence[ContactFacts], log: LogIndex
                   ) -> tuple[list[ContactKey], list[Failure]]:
    rows: list[ContactKey] = []
    failures: list[Failure] = []
    for c in contacts:
        logged = log.key_entries.get(c.handle, [])
        at = next((i for i, d in logged if d == c.digest), None)
        rows.append(ContactKey(handle=c.handle, safety_number=c.safety_number,
                               verified_by_phone=c.verified_by_phone, added=c.added,
                               log_index=at, inclusion_verified=at is not None))
        if at is None:
            failures.append(Failure(at=c.added, text=(
                f"the key pinned for contact {c.handle} is not in the relay's log: the relay "
                "served this profile a key it did not log")))
            continue
        newer = [i for i, d in logged if i > at and d != c.digest]
        if newer:
            failures.append(Failure(text=(
                f"the relay logged a different key for contact {c.handle} (log entry "
                f"{newer[-1]}) than the one pinned here: call {c.handle} and compare "
                "safety numbers before sending")))
    return rows, failures


# -- transfers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayReceipt:
    """A receipt as the relay shows it to the sender: unverified."""

    recipient: str
    status: str
    at: int
    sig: bytes
    log_index: int | None
    proof: str | None = None  # the tlog-proof the sender's record kept with it


@dataclass(frozen=True, slots=True, kw_only=True)
class SentFacts:
    relay_id: str
    at: int
    sender: str
    recipients: tuple[str, ...]  # from the sender's own record
    digest: str  # the chunk-list digest (own record if kept, else the relay's)
    salt: bytes | None  # from the relay; None: it shows no log entry
    log_index: int | None  # the relay's claim
    receipts: tuple[RelayReceipt, ...] = ()
    own_record_only: bool = False  # the relay no longer has it


def audit_sent(facts: SentFacts, log: LogIndex, keys: Mapping[str, bytes],
               log_key: tuple[str, str] | None = None
               ) -> tuple[SentTransfer, list[Failure]]:
    """``keys``: each pinned contact's signing key, by handle; ``log_key``: the
    pinned log's (origin, vkey), to check kept tlog-proofs."""
    failures: list[Failure] = []
    what = f"transfer {facts.relay_id} (sent {utc_day(facts.at)})"
    commitment: bytes | None = None
    found: int | None = None
    try:
        if facts.salt is not None:
            commitment = transfer_commitment(facts.salt, facts.relay_id, facts.sender,
                                             facts.recipients, facts.digest)
            found = log.find(TransferEntry(commitment))
    except LogError:
        commitment = None
    if facts.salt is None:
        # Strict on purpose: the relay could drop the field to keep a transfer out
        # of the audit. Only a transfer completed before the relay had a log has
        # none honestly, and those expire with the relay's retention.
        failures.append(Failure(at=facts.at, text=(
            f"the relay shows no log entry for {what} (only a transfer completed before "
            "the relay had a log has none)")))
    elif found is None:
        failures.append(Failure(at=facts.at, text=(
            f"{what} is not in the relay's log as this profile sent it (id, recipients and "
            "ciphertext): the relay hid it or changed it")))
    checks = []
    for r in facts.receipts:
        check, failure = _audit_receipt(r, facts, commitment, log, keys.get(r.recipient), what,
                                        log_key)
        checks.append(check)
        if failure is not None:
            failures.append(failure)
    return SentTransfer(relay_id=facts.relay_id, at=facts.at, recipients=facts.recipients,
                        log_index=found if found is not None else facts.log_index,
                        commitment_verified=found is not None,
                        receipts=tuple(checks),
                        own_record_only=facts.own_record_only), failures


def _audit_receipt(r: RelayReceipt, facts: SentFacts, commitment: bytes | None,
                   log: LogIndex, key: bytes | None, what: str,
                   log_key: tuple[str, str] | None = None
                   ) -> tuple[ReceiptCheck, Failure | None]:
    sig_ok, found, failure = False, None, None
    proof_ok: bool | None = None
    mine = f"the {r.status!r} receipt of {r.recipient} for {what}"
    if r.recipient not in facts.recipients:
        failure = f"the relay shows a receipt for {what} from {r.recipient}, not a recipient"
    elif commitment is None or facts.salt is None:
        failure = f"{mine} cannot be checked: the transfer itself is not logged"
    elif key is None:
        failure = f"{mine} cannot be checked: {r.recipient} is not a pinned contact here"
    else:
        try:
            receipt = Receipt(facts.relay_id, commitment, r.recipient,
                              r.status, r.at)  # type: ignore[arg-type]  # checked inside
        except LogError:
            receipt = None
        if receipt is None:
            failure = f"the relay shows a malformed receipt of {r.recipient} for {what}"
        else:
            try:
                verify_receipt(receipt, r.sig, key)
                sig_ok = True
                found = log.find(receipt_entry(facts.salt, receipt, r.sig))
            except ReceiptError:
                failure = (f"{mine} is not signed by {r.recipient}'s key: the relay forged "
                           "or altered it")
            except LogError:  # a signature of the wrong length: never logged
                found = None
            if sig_ok and found is None:
                failure = f"{mine} is not in the relay's log"
            if sig_ok and r.proof is not None and log_key is not None:
                proof_ok = _proof_holds(r.proof, receipt_entry(facts.salt, receipt, r.sig)
                                        .to_bytes(), *log_key)
                if not proof_ok and failure is None:
                    failure = (f"the log proof kept for {mine} does not verify with the "
                               "pinned log key: the relay showed a proof of something else")
    check = ReceiptCheck(recipient=r.recipient, status=r.status, at=r.at,
                         log_index=found if found is not None else r.log_index,
                         signature_verified=sig_ok, inclusion_verified=found is not None,
                         proof_verified=proof_ok)
    return check, None if failure is None else Failure(at=facts.at, text=failure)


def _proof_holds(text: str, leaf: bytes, origin: str, vkey: str) -> bool:
    """The tlog-proof ``text`` proves ``leaf`` under a checkpoint signed by the
    pinned log key: offline, without the relay."""
    try:
        verify_bundle(ProofBundle.parse(text), leaf, origin, [NoteVerifier.from_vkey(vkey)])
    except LogError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedFacts:
    relay_id: str
    at: int
    sender: str  # the relay's word, for the report only ("" if it no longer says)
    commitment: bytes  # computed and checked by this profile when it received it
    log_index: int | None


def audit_received(facts: ReceivedFacts, log: LogIndex
                   ) -> tuple[ReceivedTransfer, list[Failure]]:
    found = log.find(TransferEntry(facts.commitment))
    failures = [] if found is not None else [Failure(at=facts.at, text=(
        f"transfer {facts.relay_id} (received {utc_day(facts.at)}) is no longer in the "
        "relay's log: the relay removed or rewrote its entry"))]
    return ReceivedTransfer(relay_id=facts.relay_id, at=facts.at, sender=facts.sender,
                            log_index=found if found is not None else facts.log_index,
                            inclusion_verified=found is not None), failures


# -- what the relay says, read leniently into facts ------------------------------


def relay_log_fields(t: Mapping[str, Any]) -> tuple[bytes | None, int | None]:
    """(salt, index) from a transfer's ``"log"`` object; (None, None) if absent or
    malformed (the check then names the transfer as not logged)."""
    log = t.get("log")
    if not isinstance(log, dict):
        return None, None
    index = log.get("index")
    try:
        salt = base64.b64decode(str(log.get("salt", "")), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    ok_index = index if type(index) is int and index >= 0 else None
    return (salt if len(salt) == 32 else None), ok_index


def relay_receipts(t: Mapping[str, Any]) -> tuple[RelayReceipt, ...]:
    """The receipts a relay answer (or a kept record, with ``"proof"``) lists."""
    out = []
    for r in t.get("receipts") or []:
        if not isinstance(r, dict):
            continue
        try:
            sig = base64.b64decode(str(r.get("sig", "")), validate=True)
        except (binascii.Error, ValueError):
            sig = b""
        at, index = r.get("at"), r.get("log_index")
        out.append(RelayReceipt(
            recipient=str(r.get("recipient", "")), status=str(r.get("status", "")),
            at=at if type(at) is int else -1, sig=sig,
            log_index=index if type(index) is int else None,
            proof=r["proof"] if isinstance(r.get("proof"), str) else None))
    return tuple(out)
