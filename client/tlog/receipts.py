"""Signed receipts: the recipient signs them, the sender checks them (docs/transparency.md).

A recipient signs "downloaded" and "verified" for a transfer it placed, over
the transfer's log commitment (``crypto.tlog.entries.Receipt``), with its own
identity key; the relay logs them. ``status`` then believes a receipt only if
its signature verifies with the recipient's PINNED key and the log holds it:
"verified (signed receipt)". A status the relay reports without a receipt is
shown as the relay's word. A receipt that does not verify, or that the log
does not hold, is a forgery: a loud refusal naming the recipient. Each
receipt checked is handed back with its tlog-proof (``kept_receipt``) for
the sender's record. The recipient's side, ``check_own``: the relay logged
our own receipt where its ack's answer says (docs/transparency.md,
"Receipt proofs").
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from sealdrop.crypto.errors import LogError
from sealdrop.crypto.tlog import entries

from ..errors import ForgedReceiptError, LogInclusionError
from ..profile.contacts import ContactStore
from ..relay_api import RelayNotFound
from .logclient import CALL, LogClient, TransferLog

STATUSES = ("downloaded", "verified")
SIGNED = "signed"  # the recipient's own signed receipt, verified and logged
CLAIMED = "claimed"  # only the relay says so


def sign(signing_key: SigningKey, relay_id: str, commitment: bytes, recipient: str,
         status: entries.ReceiptStatus, *, at: int | None = None) -> tuple[int, bytes]:
    """(time, signature) of our receipt for ``relay_id``, as ``RelayClient.ack`` sends it."""
    when = int(time.time()) if at is None else at
    receipt = entries.Receipt(transfer_id=relay_id, commitment=commitment, recipient=recipient,
                              status=status, at=when)
    return when, entries.sign_receipt(receipt, signing_key)


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    """What ``status`` may say for one recipient: per status, SIGNED, CLAIMED or None."""

    handle: str
    downloaded: str | None
    verified: str | None
    # Each signed receipt checked here, as the sender keeps it (``kept_receipt``).
    kept: tuple[dict[str, Any], ...] = ()


def check_receipts(log: LogClient, contacts: ContactStore, me: str,
                   transfer: dict[str, Any], *, required: bool = False
                   ) -> dict[str, ReceiptCheck] | None:
    """Each recipient's receipts of a sent, complete ``transfer`` (the relay's
    answer), checked; None when the profile follows no log or the transfer
    is not complete. Raises ForgedReceiptError naming the recipient.
    ``required``: the transfer must have a log entry (the sender's own record
    says it is newer than the pin: ``LogClient.requires_log``)."""
    if log.pinned() is None or transfer.get("state") != "complete":
        return None
    relay_id = str(transfer["id"])
    recipients = [str(r["handle"]) for r in transfer.get("recipients", [])]
    where = log.check_transfer(relay_id, transfer, sender=me, recipients=recipients,
                               digest=str(transfer.get("digest") or ""), required=required)
    signed: dict[tuple[str, str], dict[str, Any]] = {}
    # A transfer completed before the relay logged: every status is the relay's word.
    for item in _receipts(transfer, relay_id) if where is not None else ():
        handle, status = item["recipient"], item["status"]
        if handle not in recipients:
            raise ForgedReceiptError(
                f"the relay shows a receipt for transfer {relay_id} from {handle}, who is "
                "not one of its recipients", hint=CALL)
        assert where is not None
        signed[(handle, status)] = _check_one(log, contacts, relay_id, where, item)
    out: dict[str, ReceiptCheck] = {}
    for r in transfer.get("recipients", []):
        handle = str(r["handle"])

        def word(status: str, at_key: str, _h: str = handle, _r: dict[str, Any] = r
                 ) -> str | None:
            if signed.get((_h, status)):
                return SIGNED
            return CLAIMED if _r.get(at_key) is not None else None
        out[handle] = ReceiptCheck(
            handle, word("downloaded", "downloaded_at"), word("verified", "verified_at"),
            tuple(k for (h, _), k in sorted(signed.items()) if h == handle))
    return out


def kept_receipt(recipient: str, status: str, at: int, sig: bytes, log_index: int,
                 proof: str | None) -> dict[str, Any]:
    """A checked receipt as the sender's record (``profile.sent``) and the
    recipient's receipts store keep it: enough to check it again offline, with
    the transfer's commitment and salt, the signer's pinned key and the log's
    key (``audit.verify``; ``verify_bundle``)."""
    return {"recipient": recipient, "status": status, "at": at,
            "sig": base64.b64encode(sig).decode("ascii"), "log_index": log_index,
            "proof": proof}


def _receipts(transfer: dict[str, Any], relay_id: str) -> Sequence[dict[str, Any]]:
    items = transfer.get("receipts", [])
    out = []
    if not isinstance(items, list):
        raise ForgedReceiptError(f"the relay answered malformed receipts for {relay_id}")
    for item in items:
        try:
            handle, status, at = str(item["recipient"]), item["status"], item["at"]
            sig = base64.b64decode(item["sig"], validate=True)
            index = item["log_index"]
            if status not in STATUSES or type(at) is not int or type(index) is not int:
                raise ValueError("bad field")
        except (TypeError, KeyError, ValueError, binascii.Error) as exc:
            raise ForgedReceiptError(
                f"the relay answered a malformed receipt for transfer {relay_id}",
                hint=CALL) from exc
        out.append({"recipient": handle, "status": status, "at": at, "sig": sig,
                    "log_index": index})
    return out


def _check_one(log: LogClient, contacts: ContactStore, relay_id: str, where: TransferLog,
               item: dict[str, Any]) -> dict[str, Any]:
    handle, status = item["recipient"], item["status"]
    contact = contacts.get(handle)
    if contact is None:
        try:
            bundle, index = log.relay.get_logged_bundle(handle)
        except RelayNotFound as exc:
            raise LogInclusionError(
                f"the relay shows a receipt for transfer {relay_id} from {handle}, but no "
                f"longer has the account {handle}: its signature cannot be checked",
                hint=CALL) from exc
        log.vouch_for(bundle, (bundle, index))
        key = bundle.signing_key
    else:
        key = contact.bundle.signing_key
    receipt = entries.Receipt(transfer_id=relay_id, commitment=where.commitment,
                              recipient=handle, status=status, at=item["at"])
    forged = (f"the relay shows a \"{status}\" receipt for transfer {relay_id} that "
              f"{handle} did NOT sign: the relay forged or altered it")
    try:
        entries.verify_receipt(receipt, item["sig"], VerifyKey(key))
    except LogError as exc:
        raise ForgedReceiptError(forged, hint=f"{handle} may not have received it; ask "
                                 f"them by phone, and {CALL}") from exc
    try:
        proof = log.check_logged(
            item["log_index"], entries.receipt_entry(where.salt, receipt, item["sig"]).to_bytes(),
            f"{handle}'s \"{status}\" receipt for transfer {relay_id}")
    except LogInclusionError as exc:
        raise ForgedReceiptError(
            f"{handle}'s \"{status}\" receipt for transfer {relay_id} is not in the relay's "
            f"log: {exc}", hint=CALL) from exc
    return kept_receipt(handle, status, item["at"], item["sig"], item["log_index"], proof)


def check_own(log: LogClient, me: str, key: VerifyKey, relay_id: str, where: TransferLog,
              status: str, signed: tuple[int, bytes], answer: dict[str, Any],
              cache: dict[str, bytes] | None = None) -> dict[str, Any] | None:
    """The recipient's side: our signed ``status`` receipt, which the relay's ack
    ``answer`` says it logged (its ``"receipts"``), is in the log where it says,
    as the entry we compute ourselves; the receipt kept with its tlog-proof.
    None when the answer lists no receipts at all (a relay older than this
    check: nothing to check). Raises LogInclusionError (exit 25)."""
    listed = answer.get("receipts")
    if listed is None:
        return None
    what = f"your \"{status}\" receipt for transfer {relay_id}"
    at, sig = signed
    mine = [r for r in listed if isinstance(r, dict) and r.get("recipient") == me
            and r.get("status") == status] if isinstance(listed, list) else []
    index = mine[0].get("log_index") if mine else None
    if type(index) is not int or index < 0:
        raise LogInclusionError(
            f"the relay accepted {what} but does not say where its log holds it",
            hint=CALL)
    receipt = entries.Receipt(transfer_id=relay_id, commitment=where.commitment,
                              recipient=me, status=status,  # type: ignore[arg-type]
                              at=at)
    # The relay keeps the first receipt of each status: after a retried ack,
    # the one logged may be an earlier signature of ours, at another time.
    first_at, first_sig = mine[0].get("at"), mine[0].get("sig")
    if type(first_at) is int and isinstance(first_sig, str) and first_at != at:
        try:
            sig = base64.b64decode(first_sig, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise LogInclusionError(f"the relay shows {what} malformed", hint=CALL) from exc
        receipt = entries.Receipt(transfer_id=relay_id, commitment=where.commitment,
                                  recipient=me, status=status,  # type: ignore[arg-type]
                                  at=first_at)
        at = first_at
    try:
        entries.verify_receipt(receipt, sig, key)
    except LogError as exc:
        raise LogInclusionError(f"the relay logged {what} with a signature that is not "
                                "ours", hint=CALL) from exc
    proof = log.check_served(index, entries.receipt_entry(where.salt, receipt, sig).to_bytes(),
                             what, cache)
    return kept_receipt(me, status, at, sig, index, proof)


def signed_for(signing_key: SigningKey, me: str, relay_id: str, logged: TransferLog | None,
               status: entries.ReceiptStatus) -> tuple[int, bytes] | None:
    """Our signed receipt for ``status`` when the transfer is logged (``logged``),
    else None (a relay without a log: a plain acknowledgement)."""
    if logged is None or not logged.commitment:
        return None
    return sign(signing_key, relay_id, logged.commitment, me, status)
