"""Signed receipts: the recipient signs them, the sender checks them (docs/transparency.md).

A recipient signs "downloaded" and "verified" for a transfer it placed, over
the transfer's log commitment (``crypto.tlog.entries.Receipt``), with its own
identity key; the relay logs them. ``status`` then believes a receipt only if
its signature verifies with the recipient's PINNED key and the log holds it:
"verified (signed receipt)". A status the relay reports without a receipt is
shown as the relay's word. A receipt that does not verify, or that the log
does not hold, is a forgery: a loud refusal naming the recipient.
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
    signed: dict[tuple[str, str], bool] = {}
    # A transfer completed before the relay logged: every status is the relay's word.
    for item in _receipts(transfer, relay_id) if where is not None else ():
        handle, status = item["recipient"], item["status"]
        if handle not in recipients:
            raise ForgedReceiptError(
                f"the relay shows a receipt for transfer {relay_id} from {handle}, who is "
                "not one of its recipients", hint=CALL)
        assert where is not None
        _check_one(log, contacts, relay_id, where, item)
        signed[(handle, status)] = True
    out: dict[str, ReceiptCheck] = {}
    for r in transfer.get("recipients", []):
        handle = str(r["handle"])

        def word(status: str, at_key: str, _h: str = handle, _r: dict[str, Any] = r
                 ) -> str | None:
            if signed.get((_h, status)):
                return SIGNED
            return CLAIMED if _r.get(at_key) is not None else None
        out[handle] = ReceiptCheck(handle, word("downloaded", "downloaded_at"),
                                   word("verified", "verified_at"))
    return out


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
               item: dict[str, Any]) -> None:
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
        log.check_logged(item["log_index"],
                         entries.receipt_entry(where.salt, receipt, item["sig"]).to_bytes(),
                         f"{handle}'s \"{status}\" receipt for transfer {relay_id}")
    except LogInclusionError as exc:
        raise ForgedReceiptError(
            f"{handle}'s \"{status}\" receipt for transfer {relay_id} is not in the relay's "
            f"log: {exc}", hint=CALL) from exc


def signed_for(signing_key: SigningKey, me: str, relay_id: str, logged: TransferLog | None,
               status: entries.ReceiptStatus) -> tuple[int, bytes] | None:
    """Our signed receipt for ``status`` when the transfer is logged (``logged``),
    else None (a relay without a log: a plain acknowledgement)."""
    if logged is None or not logged.commitment:
        return None
    return sign(signing_key, relay_id, logged.commitment, me, status)
