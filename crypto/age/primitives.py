"""The handful of primitives the age format is built from.

HKDF-SHA-256, HMAC-SHA-256, ChaCha20-Poly1305 with a fixed zero nonce for
wrapping file keys, and the spec's strict unpadded base64.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FILE_KEY_SIZE = 16
TAG_SIZE = 16
_ZERO_NONCE = bytes(12)
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _hmac_sha256(key: bytes, message: bytes) -> hmac.HMAC:
    # pyca's HMAC, not the standard library's: importing hmac loads a second
    # OpenSSL (_hashlib), 5-10 ms of each `sealdrop age` start, measured.
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(message)
    return h


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return _hmac_sha256(key, message).finalize()


def hmac_sha256_matches(key: bytes, message: bytes, mac: bytes) -> bool:
    """Whether ``mac`` is ``message``'s HMAC-SHA-256 under ``key``, compared in
    constant time (by pyca's ``verify``)."""
    try:
        _hmac_sha256(key, message).verify(mac)
    except InvalidSignature:
        return False
    return True


def wrap_key(key: bytes, file_key: bytes) -> bytes:
    # A fixed nonce is safe: every wrap key is derived fresh (new ephemeral
    # share or new salt) and used to encrypt exactly one message.
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)


def unwrap_key(key: bytes, body: bytes) -> bytes | None:
    """Open a wrapped file key; None when the tag does not verify (not ours)."""
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str | bytes) -> bytes:
    """Decode canonical unpadded base64, raising ValueError on anything else."""
    raw = text.encode("ascii", "strict") if isinstance(text, str) else bytes(text)
    if not set(raw) <= _B64_ALPHABET:
        raise ValueError("invalid base64 character")
    if len(raw) % 4 == 1:
        raise ValueError("invalid base64 length")
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("invalid base64") from exc
    # Non-canonical encodings (non-zero trailing bits) decode to the same
    # bytes as a canonical one; accepting them would make headers malleable.
    if b64encode(data).encode("ascii") != raw:
        raise ValueError("non-canonical base64")
    return data
