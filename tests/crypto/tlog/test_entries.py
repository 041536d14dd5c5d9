"""sealdrop's log entries, the transfer commitment, receipts, and the chunk-list
digest that the relay and the sender must compute alike."""

from __future__ import annotations

import hashlib

import pytest
from nacl.signing import SigningKey

from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.chunklist import chunk_list_digest
from sealdrop.crypto.errors import LogFormatError, ReceiptError
from sealdrop.crypto.tlog.entries import (
    KeyEntry,
    Receipt,
    ReceiptEntry,
    TransferEntry,
    bundle_digest,
    parse_entry,
    receipt_digest,
    receipt_entry,
    receipt_message,
    sign_receipt,
    transfer_commitment,
    transfer_entry,
    verify_receipt,
)
from sealdrop.server.blobs import chunk_list_digest as relay_chunk_list_digest

SALT = bytes(range(32))
TID = "0123456789abcdef" * 2
DIGEST = "ab" * 32
KEY = SigningKey(b"\x07" * 32)


def _bundle(handle: str = "dr-rossi", created: int = 1_700_000_000) -> KeyBundle:
    return KeyBundle.create(
        handle=handle, signing_key=KEY, x25519="age1xxx", pq="age1pq1yyy", created=created
    )


def test_key_entry_is_the_digest_of_the_signed_message() -> None:
    b = _bundle()
    d = bundle_digest(b)
    assert d == hashlib.sha256(b.signed_message()).digest()
    e = KeyEntry.for_bundle(b)
    assert e.to_bytes() == b"sealdrop/key/v1\ndr-rossi\n" + d.hex().encode() + b"\n"
    assert parse_entry(e.to_bytes()) == e
    # Every field the bundle signs changes the digest; the signature does not.
    assert bundle_digest(_bundle(created=1_700_000_001)) != d
    assert bundle_digest(_bundle(handle="lab-milano")) != d


def test_transfer_commitment_binds_every_field_and_hides_them() -> None:
    c = transfer_commitment(SALT, TID, "dr-rossi", ["lab-b", "lab-a"], DIGEST)
    want = hashlib.sha256(
        b"sealdrop transfer commitment v1\n" + SALT + b"\n"
        + f"{TID}\ndr-rossi\nlab-a,lab-b\n{DIGEST}\n".encode()
    ).digest()
    assert c == want
    assert transfer_commitment(SALT, TID, "dr-rossi", ("lab-a", "lab-b"), DIGEST) == c
    assert transfer_commitment(SALT, TID, "dr-rossi", ["lab-b", "lab-a", "lab-b"], DIGEST) == c
    for other in (
        transfer_commitment(bytes(32), TID, "dr-rossi", ["lab-a", "lab-b"], DIGEST),
        transfer_commitment(SALT, "f" * 32, "dr-rossi", ["lab-a", "lab-b"], DIGEST),
        transfer_commitment(SALT, TID, "dr-bianchi", ["lab-a", "lab-b"], DIGEST),
        transfer_commitment(SALT, TID, "dr-rossi", ["lab-a"], DIGEST),
        transfer_commitment(SALT, TID, "dr-rossi", ["lab-a", "lab-b"], "cd" * 32),
    ):
        assert other != c
    e = transfer_entry(SALT, TID, "dr-rossi", ["lab-a", "lab-b"], DIGEST)
    assert e == TransferEntry(c)
    assert e.to_bytes() == f"sealdrop/transfer/v1\n{c.hex()}\n".encode()
    assert b"dr-rossi" not in e.to_bytes() and TID.encode() not in e.to_bytes()
    assert parse_entry(e.to_bytes()) == e


@pytest.mark.parametrize(
    ("salt", "tid", "sender", "recipients", "digest", "what"),
    [
        (SALT[:31], TID, "dr-rossi", ["lab-a"], DIGEST, "salt"),
        (SALT, TID.upper(), "dr-rossi", ["lab-a"], DIGEST, "transfer id"),
        (SALT, TID, "dr\nrossi", ["lab-a"], DIGEST, "sender"),
        (SALT, TID, "dr-rossi", ["lab-a,lab-b"], DIGEST, "recipient"),
        (SALT, TID, "dr-rossi", [], DIGEST, "at least one recipient"),
        (SALT, TID, "dr-rossi", ["lab-a"], DIGEST.upper(), "chunk-list digest"),
    ],
)
def test_commitment_refuses_ambiguous_fields(
    salt: bytes, tid: str, sender: str, recipients: list[str], digest: str, what: str
) -> None:
    with pytest.raises(LogFormatError, match=what):
        transfer_commitment(salt, tid, sender, recipients, digest)


def _receipt(status: str = "verified") -> Receipt:
    return Receipt(TID, b"\x11" * 32, "lab-a", status, 1_700_000_123)  # type: ignore[arg-type]


def test_receipt_message_sign_and_verify() -> None:
    r = _receipt()
    assert receipt_message(r) == (
        b"sealdrop receipt v1\n"
        + f"transfer: {TID}\ncommitment: {'11' * 32}\nrecipient: lab-a\n".encode()
        + b"status: verified\nat: 1700000123\n"
    )
    sig = sign_receipt(r, KEY)
    verify_receipt(r, sig, bytes(KEY.verify_key))
    verify_receipt(r, sig, KEY.verify_key)
    # A relay that turns "downloaded" into "verified", moves the time, or signs
    # with a key of its own is caught, and the message names the recipient.
    downloaded = _receipt("downloaded")
    with pytest.raises(ReceiptError, match="lab-a's key"):
        verify_receipt(downloaded, sig, bytes(KEY.verify_key))
    moved = Receipt(TID, r.commitment, "lab-a", "verified", r.at + 1)
    with pytest.raises(ReceiptError):
        verify_receipt(moved, sig, bytes(KEY.verify_key))
    with pytest.raises(ReceiptError):
        verify_receipt(r, sign_receipt(r, SigningKey(b"\x08" * 32)), bytes(KEY.verify_key))
    with pytest.raises(ReceiptError):
        verify_receipt(r, sig[:63], bytes(KEY.verify_key))
    with pytest.raises(ReceiptError):
        verify_receipt(r, sig, b"short")


def test_receipt_entry_is_salted() -> None:
    r = _receipt()
    sig = sign_receipt(r, KEY)
    d = receipt_digest(SALT, r, sig)
    assert d == hashlib.sha256(SALT + receipt_message(r) + sig).digest()
    assert receipt_digest(bytes(32), r, sig) != d
    e = receipt_entry(SALT, r, sig)
    assert e == ReceiptEntry(d)
    assert parse_entry(e.to_bytes()) == e
    with pytest.raises(LogFormatError, match="64 bytes"):
        receipt_digest(SALT, r, sig[:-1])


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ((TID, b"\x11" * 32, "lab-a", "delivered", 1), "status"),
        ((TID, b"\x11" * 32, "lab-a", "verified", -1), "time"),
        ((TID, b"\x11" * 32, "lab-a", "verified", True), "time"),
        ((TID, b"\x11" * 31, "lab-a", "verified", 1), "32 bytes"),
        ((TID, b"\x11" * 32, "LAB", "verified", 1), "recipient"),
        (("xyz", b"\x11" * 32, "lab-a", "verified", 1), "transfer id"),
    ],
)
def test_receipt_fields_checked(fields: tuple[object, ...], what: str) -> None:
    with pytest.raises(LogFormatError, match=what):
        Receipt(*fields)  # type: ignore[arg-type]


GOOD = KeyEntry("dr-rossi", b"\x22" * 32).to_bytes()


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"sealdrop/key/v2\ndr-rossi\n" + b"22" * 32 + b"\n", "unknown type"),
        (b"sealdrop/key/v1\ndr-rossi\n" + b"22" * 32, "newline"),
        (b"sealdrop/key/v1\ndr-rossi\n" + b"22" * 32 + b"\n\n", "number of lines"),
        (b"sealdrop/key/v1\n" + b"22" * 32 + b"\n", "number of lines"),
        (b"sealdrop/key/v1\nDr-Rossi\n" + b"22" * 32 + b"\n", "handle"),
        (b"sealdrop/key/v1\ndr-rossi\n" + b"2G" * 32 + b"\n", "hex"),
        (b"sealdrop/key/v1\ndr-rossi\n" + b"AB" * 32 + b"\n", "hex"),
        (b"sealdrop/transfer/v1\n" + b"22" * 31 + b"\n", "hex"),
        (b"sealdrop/transfer/v1\n" + b"22" * 32 + b"\r\n", "hex"),
        (b"sealdrop/receipt/v1\n" + b"22" * 32 + b"\nextra\n", "number of lines"),
        (b"sealdrop/receipt/v1\n\xff" + b"22" * 32 + b"\n", "ASCII"),
        (b"x" * 513, "longer than 512"),
        (b"", "newline"),
    ],
)
def test_parse_entry_is_strict(data: bytes, what: str) -> None:
    assert parse_entry(GOOD) == KeyEntry("dr-rossi", b"\x22" * 32)
    with pytest.raises(LogFormatError, match=what):
        parse_entry(data)


def test_chunk_list_digest_is_the_relays() -> None:
    chunks = [(4096, "aa" * 32), (8192, "blake3:" + "bb" * 32), (9000, "cc" * 32)]
    want = hashlib.sha256(
        f"4096 {'aa' * 32}\n8192 blake3:{'bb' * 32}\n9000 {'cc' * 32}\n".encode()
    ).hexdigest()
    assert chunk_list_digest(chunks) == want == relay_chunk_list_digest(chunks)
    assert chunk_list_digest(iter(chunks[:2])) != want
    assert chunk_list_digest([]) == hashlib.sha256(b"").hexdigest()
