"""The native X25519 recipient type (``age1…`` / ``AGE-SECRET-KEY-1…``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

from . import bech32
from .errors import HeaderError, RecipientError
from .format import Stanza
from .primitives import FILE_KEY_SIZE, b64decode, b64encode, hkdf_sha256, unwrap_key, wrap_key

STANZA_TYPE = "X25519"
_INFO = b"age-encryption.org/v1/X25519"
_RECIPIENT_HRP = "age"
_IDENTITY_HRP = "age-secret-key-"
_BODY_SIZE = FILE_KEY_SIZE + 16


def _shared(secret: bytes, public: bytes) -> bytes:
    # An all-zero shared secret means a low-order point: the result would be
    # known to anyone, so the spec says abort rather than treat it as no match.
    # libsodium refuses to return it (RuntimeError); check both ways.
    try:
        shared = crypto_scalarmult(secret, public)
    except RuntimeError:
        shared = bytes(32)
    if shared == bytes(32):
        raise HeaderError("X25519 share is a low-order point; the file may be tampered with")
    return shared


class X25519Recipient:
    pq = False

    def __init__(self, public_key: bytes) -> None:
        if len(public_key) != 32:
            raise RecipientError("an X25519 public key is 32 bytes")
        self.public_key = public_key

    @classmethod
    def parse(cls, text: str) -> X25519Recipient:
        try:
            hrp, data = bech32.decode(text)
        except ValueError as exc:
            raise RecipientError(f"malformed X25519 recipient: {exc}") from exc
        if hrp != _RECIPIENT_HRP or text != text.lower():
            raise RecipientError("malformed X25519 recipient: expected an age1… string")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode(_RECIPIENT_HRP, self.public_key)

    def __repr__(self) -> str:
        return f"X25519Recipient({self})"

    def wrap(self, file_key: bytes, rand: Callable[[int], bytes]) -> list[Stanza]:
        ephemeral = rand(32)
        share = crypto_scalarmult_base(ephemeral)
        shared = _shared(ephemeral, self.public_key)
        key = hkdf_sha256(shared, share + self.public_key, _INFO)
        return [Stanza(STANZA_TYPE, (b64encode(share),), wrap_key(key, file_key))]


class X25519Identity:
    def __init__(self, secret_key: bytes) -> None:
        if len(secret_key) != 32:
            raise RecipientError("an X25519 secret key is 32 bytes")
        self._secret = secret_key
        self.public_key = crypto_scalarmult_base(secret_key)

    @classmethod
    def generate(cls, rand: Callable[[int], bytes]) -> X25519Identity:
        return cls(rand(32))

    @classmethod
    def parse(cls, text: str) -> X25519Identity:
        try:
            hrp, data = bech32.decode(text)
        except ValueError as exc:
            raise RecipientError(f"malformed X25519 identity: {exc}") from exc
        if hrp != _IDENTITY_HRP:
            raise RecipientError("malformed X25519 identity: expected AGE-SECRET-KEY-1…")
        return cls(data)

    def secret_bytes(self) -> bytes:
        return self._secret

    def encode(self) -> str:
        return bech32.encode(_IDENTITY_HRP, self._secret).upper()

    def recipient(self) -> X25519Recipient:
        return X25519Recipient(self.public_key)

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={self.recipient()})"

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for s in stanzas:
            if s.type != STANZA_TYPE:
                continue
            if len(s.args) != 1:
                raise HeaderError("invalid X25519 stanza: expected exactly one argument")
            try:
                share = b64decode(s.args[0])
            except ValueError as exc:
                raise HeaderError(f"invalid X25519 stanza share: {exc}") from exc
            if len(share) != 32:
                raise HeaderError("invalid X25519 stanza: the share is not 32 bytes")
            if len(s.body) != _BODY_SIZE:
                raise HeaderError("invalid X25519 stanza: the body is not 32 bytes")
            shared = _shared(self._secret, share)
            key = hkdf_sha256(shared, share + self.public_key, _INFO)
            file_key = unwrap_key(key, s.body)
            if file_key is not None:
                return file_key
        return None
