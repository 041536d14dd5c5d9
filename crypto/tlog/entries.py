"""sealdrop's log entries: the leaf data of the relay's transparency log.

Three kinds, each short LF-terminated ASCII text (at most 512 bytes)::

    sealdrop/key/v1\\n<handle>\\n<bundle digest hex>\\n
    sealdrop/transfer/v1\\n<commitment hex>\\n
    sealdrop/receipt/v1\\n<receipt digest hex>\\n

What a reader of the whole log learns (docs/transparency.md): every handle and
the digest of each of its bundles (bundles are public anyway), and how many
transfers and receipts there were, when. Nothing else: a transfer entry is a
salted commitment to (id, sender, recipients, chunk-list digest), and a
receipt entry a salted hash of the signed receipt, both salted with the
transfer's 32-byte random salt, which only the sender and the recipients get
from the relay. Without the salt a reader cannot test a guess of who sent what
to whom.

A receipt is a recipient's own statement, signed with the Ed25519 key of its
bundle, that it downloaded (or downloaded and verified: every hash and the
sender's signature checked) a transfer. The sender checks the signature
itself, so it no longer takes the relay's word for "delivered".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ..bundle import KeyBundle, check_handle
from ..errors import BundleError, LogFormatError, ReceiptError
from ..protocol import is_transfer_id

MAX_ENTRY_SIZE = 512
SALT_SIZE = 32
KEY_TYPE = "sealdrop/key/v1"
TRANSFER_TYPE = "sealdrop/transfer/v1"
RECEIPT_TYPE = "sealdrop/receipt/v1"
_COMMITMENT_CONTEXT = b"sealdrop transfer commitment v1\n"
_RECEIPT_CONTEXT = b"sealdrop receipt v1\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")

ReceiptStatus = Literal["downloaded", "verified"]
RECEIPT_STATUSES: tuple[ReceiptStatus, ...] = ("downloaded", "verified")


def _digest32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise LogFormatError(f"the {what} of a log entry must be 32 bytes")
    return value


def _handle(handle: str, what: str) -> str:
    try:
        return check_handle(handle)
    except BundleError as exc:
        raise LogFormatError(f"the {what} {handle!r} is not a valid handle") from exc


def bundle_digest(bundle: KeyBundle) -> bytes:
    """SHA-256 of the bundle's signed message: handle, signing key, both age
    recipients and the creation time (the self-signature is checked apart)."""
    return hashlib.sha256(bundle.signed_message()).digest()


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A bundle registered or rotated for ``handle``."""

    handle: str
    bundle_digest: bytes

    def __post_init__(self) -> None:
        _handle(self.handle, "handle")
        _digest32(self.bundle_digest, "bundle digest")

    @classmethod
    def for_bundle(cls, bundle: KeyBundle) -> KeyEntry:
        return cls(bundle.handle, bundle_digest(bundle))

    def to_bytes(self) -> bytes:
        return f"{KEY_TYPE}\n{self.handle}\n{self.bundle_digest.hex()}\n".encode("ascii")


@dataclass(frozen=True, slots=True)
class TransferEntry:
    """A completed transfer, as its salted commitment."""

    commitment: bytes

    def __post_init__(self) -> None:
        _digest32(self.commitment, "transfer commitment")

    def to_bytes(self) -> bytes:
        return f"{TRANSFER_TYPE}\n{self.commitment.hex()}\n".encode("ascii")


@dataclass(frozen=True, slots=True)
class ReceiptEntry:
    """A signed receipt, as its salted hash (``receipt_digest``)."""

    digest: bytes

    def __post_init__(self) -> None:
        _digest32(self.digest, "receipt digest")

    def to_bytes(self) -> bytes:
        return f"{RECEIPT_TYPE}\n{self.digest.hex()}\n".encode("ascii")


Entry = KeyEntry | TransferEntry | ReceiptEntry


def _hex32(text: str, what: str) -> bytes:
    if not _HEX64.fullmatch(text):
        raise LogFormatError(f"the {what} in a log entry is not 64 lower-case hex digits")
    return bytes.fromhex(text)


def parse_entry(data: bytes) -> Entry:
    """Parse one log entry strictly: the exact bytes ``to_bytes`` makes, or
    LogFormatError."""
    if len(data) > MAX_ENTRY_SIZE:
        raise LogFormatError(f"a log entry of {len(data)} bytes is longer than {MAX_ENTRY_SIZE}")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise LogFormatError("a log entry is not ASCII text") from exc
    if not text.endswith("\n"):
        raise LogFormatError("a log entry does not end with a newline")
    kind, *fields = text[:-1].split("\n")
    entry: Entry
    if kind == KEY_TYPE and len(fields) == 2:
        entry = KeyEntry(_handle(fields[0], "handle"), _hex32(fields[1], "bundle digest"))
    elif kind == TRANSFER_TYPE and len(fields) == 1:
        entry = TransferEntry(_hex32(fields[0], "transfer commitment"))
    elif kind == RECEIPT_TYPE and len(fields) == 1:
        entry = ReceiptEntry(_hex32(fields[0], "receipt digest"))
    elif kind in (KEY_TYPE, TRANSFER_TYPE, RECEIPT_TYPE):
        raise LogFormatError(f"a {kind} log entry has the wrong number of lines")
    else:
        raise LogFormatError("a log entry has an unknown type")
    if entry.to_bytes() != data:  # belt and braces: one encoding per entry
        raise LogFormatError("a log entry is not in its canonical form")
    return entry


def _salt(salt: bytes) -> bytes:
    if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
        raise LogFormatError(f"a transfer's log salt must be {SALT_SIZE} bytes")
    return salt


def _transfer_id(transfer_id: str) -> str:
    if not isinstance(transfer_id, str) or not is_transfer_id(transfer_id):
        raise LogFormatError("a transfer id is not 32 lower-case hex digits")
    return transfer_id


def transfer_commitment(
    salt: bytes, transfer_id: str, sender: str, recipients: list[str] | tuple[str, ...],
    digest: str,
) -> bytes:
    """SHA-256 binding a transfer's id, sender, recipients (as a set: order and
    repeats do not matter) and the relay's chunk-list digest of its ciphertext
    (``crypto.chunklist``), salted so that the entry reveals none of them."""
    if not recipients:
        raise LogFormatError("a transfer commitment needs at least one recipient")
    # A set: sorted and without repeats, so order and duplicates in what the
    # sender typed cannot make its commitment differ from the relay's.
    names = sorted({_handle(r, "recipient") for r in recipients})
    if not _HEX64.fullmatch(digest):
        raise LogFormatError("a chunk-list digest is not 64 lower-case hex digits")
    text = "\n".join(
        [_transfer_id(transfer_id), _handle(sender, "sender"), ",".join(names), digest]
    ) + "\n"
    return hashlib.sha256(
        _COMMITMENT_CONTEXT + _salt(salt) + b"\n" + text.encode("ascii")
    ).digest()


@dataclass(frozen=True, slots=True)
class Receipt:
    """A recipient's statement about a transfer, signed with its bundle's key."""

    transfer_id: str
    commitment: bytes  # the transfer's commitment, as in its log entry
    recipient: str
    status: ReceiptStatus
    at: int  # unix seconds, the recipient's clock

    def __post_init__(self) -> None:
        _transfer_id(self.transfer_id)
        _digest32(self.commitment, "transfer commitment")
        _handle(self.recipient, "recipient")
        if self.status not in RECEIPT_STATUSES:
            raise LogFormatError("a receipt's status must be 'downloaded' or 'verified'")
        if not isinstance(self.at, int) or isinstance(self.at, bool) or not 0 <= self.at < 2**63:
            raise LogFormatError("a receipt's time must be a non-negative unix time")


def receipt_message(r: Receipt) -> bytes:
    """The bytes a recipient signs: a fixed LF-separated text form."""
    return _RECEIPT_CONTEXT + (
        f"transfer: {r.transfer_id}\n"
        f"commitment: {r.commitment.hex()}\n"
        f"recipient: {r.recipient}\n"
        f"status: {r.status}\n"
        f"at: {r.at}\n"
    ).encode("ascii")


def sign_receipt(r: Receipt, signing_key: SigningKey) -> bytes:
    return signing_key.sign(receipt_message(r)).signature


def verify_receipt(r: Receipt, sig: bytes, verify_key: bytes | VerifyKey) -> None:
    """Raise ReceiptError unless ``sig`` is the recipient's signature of ``r``
    (``verify_key``: the signing key of the recipient's bundle)."""
    try:
        key = verify_key if isinstance(verify_key, VerifyKey) else VerifyKey(verify_key)
        key.verify(receipt_message(r), sig)
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise ReceiptError(
            f"the {r.status!r} receipt for transfer {r.transfer_id} was not signed by "
            f"{r.recipient}'s key: it is forged or altered",
        ) from exc


def receipt_digest(salt: bytes, r: Receipt, sig: bytes) -> bytes:
    """What a receipt entry logs: SHA-256(salt || message || signature)."""
    if len(sig) != 64:
        raise LogFormatError("a receipt signature must be 64 bytes")
    return hashlib.sha256(_salt(salt) + receipt_message(r) + sig).digest()


def receipt_entry(salt: bytes, r: Receipt, sig: bytes) -> ReceiptEntry:
    return ReceiptEntry(receipt_digest(salt, r, sig))


def transfer_entry(
    salt: bytes, transfer_id: str, sender: str, recipients: list[str] | tuple[str, ...],
    digest: str,
) -> TransferEntry:
    return TransferEntry(transfer_commitment(salt, transfer_id, sender, recipients, digest))
