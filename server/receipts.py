"""Signed receipts arriving with an ack: checked, then logged by the ack's
own transaction (``SqlMetadataStore.ack``).

A receipt is the recipient's own signed statement that it downloaded (or
downloaded and verified) a transfer (``sealdrop.crypto.tlog.entries``). The
relay checks the signature against the recipient's signing key before it
logs anything: a log entry for a receipt nobody signed would be the relay
vouching for it. The salted entry reveals to a log reader neither the
transfer nor the recipient.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sealdrop.crypto.errors import LogError
from sealdrop.crypto.protocol import ErrorCode
from sealdrop.crypto.tlog.entries import (
    Receipt,
    receipt_entry,
    transfer_commitment,
    verify_receipt,
)

from .errors import InvalidInput
from .metadata import Account, LoggedReceipt, Transfer

SIG_BYTES = 64


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, code=ErrorCode.BAD_RECEIPT)


def commitment_of(t: Transfer) -> bytes | None:
    """The commitment of ``t``'s transfer entry; None if it was never logged
    (completed before the relay kept a log)."""
    if t.log_salt is None or t.digest is None:
        return None
    return transfer_commitment(t.log_salt, t.id, t.sender, [r.handle for r in t.recipients],
                               t.digest)


def checked(
    who: Account, t: Transfer, status: str, body: Any, *, now: int, skew: int
) -> LoggedReceipt:
    """The receipt ``{"at": unix seconds, "sig": base64}`` that ``who`` sent
    with its ``status`` ack of ``t``, its signature verified, ready to log;
    ``InvalidInput`` (``bad_receipt``) naming what is wrong otherwise."""
    if not isinstance(body, dict) or set(body) != {"at", "sig"}:
        raise _bad('a receipt must be {"at": <unix seconds>, "sig": "<base64>"}')
    at, sig_b64 = body["at"], body["sig"]
    if not isinstance(at, int) or isinstance(at, bool) or not 0 <= at <= now + skew:
        raise _bad("the receipt's time must be a unix time no later than the relay's clock")
    if not isinstance(sig_b64, str):
        raise _bad("the receipt's signature must be base64 text")
    try:
        sig = base64.b64decode(sig_b64, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("the receipt's signature is not valid base64") from None
    if len(sig) != SIG_BYTES:
        raise _bad(f"the receipt's signature must be {SIG_BYTES} bytes")
    commitment = commitment_of(t)
    if commitment is None:
        raise _bad("this transfer was completed before the relay kept a log: send the ack "
                   "without a receipt")
    try:
        receipt = Receipt(t.id, commitment, who.handle, status, at)  # type: ignore[arg-type]
        verify_receipt(receipt, sig, base64.b64decode(who.signing_key))
        entry = receipt_entry(t.log_salt or b"", receipt, sig).to_bytes()
    except LogError as exc:
        raise _bad(str(exc)) from None
    return LoggedReceipt(status=status, at=at, sig=sig, entry=entry)
