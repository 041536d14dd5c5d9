"""The signed key bundle: a handle's encryption keys, bound to its signing key.

The relay stores and serves bundles but cannot make one: the Ed25519 signature
covers the handle, both encryption keys and the creation time, so a relay that
attaches its own encryption key to someone's name is caught by every client.

Wire form (JSON, see docs/container.md)::

    {"v": 1, "handle": "...", "signing_key": "<b64 Ed25519 public key>",
     "x25519": "age1…", "pq": "age1pq1…", "created": <unix seconds>,
     "sig": "<b64 Ed25519 signature>"}

The signature is over ``signed_message()``: a fixed LF-separated text form, so
that no JSON canonicalisation question can ever arise.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .errors import BundleError

_CONTEXT = b"sealdrop key bundle v1\n"
HANDLE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]")
_MAX_BUNDLE = 8192


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, size: int, what: str) -> bytes:
    if not isinstance(text, str):
        raise BundleError(f"key bundle field {what} is not a string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleError(f"key bundle field {what} is not valid base64") from exc
    if len(raw) != size or _b64(raw) != text:
        raise BundleError(f"key bundle field {what} has the wrong length or encoding")
    return raw


def check_handle(handle: str) -> str:
    if not isinstance(handle, str) or not HANDLE_RE.fullmatch(handle):
        raise BundleError(
            "invalid handle: use 3-64 lowercase letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return handle


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyBundle:
    handle: str
    signing_key: bytes  # Ed25519 public key, 32 bytes
    x25519: str  # age1… recipient
    pq: str  # age1pq1… recipient (ML-KEM-768 + X25519 hybrid)
    created: int  # unix seconds
    signature: bytes = b""

    def signed_message(self) -> bytes:
        return _CONTEXT + "\n".join(
            [
                f"handle: {self.handle}",
                f"signing_key: {_b64(self.signing_key)}",
                f"x25519: {self.x25519}",
                f"pq: {self.pq}",
                f"created: {self.created}",
            ]
        ).encode("ascii") + b"\n"

    @classmethod
    def create(
        cls, *, handle: str, signing_key: SigningKey, x25519: str, pq: str, created: int
    ) -> KeyBundle:
        unsigned = cls(
            handle=check_handle(handle),
            signing_key=bytes(signing_key.verify_key),
            x25519=x25519,
            pq=pq,
            created=created,
        )
        sig = signing_key.sign(unsigned.signed_message()).signature
        return cls(
            handle=unsigned.handle,
            signing_key=unsigned.signing_key,
            x25519=x25519,
            pq=pq,
            created=created,
            signature=sig,
        )

    def verify(self) -> KeyBundle:
        """Check the self-signature; returns self so parse().verify() chains."""
        try:
            VerifyKey(self.signing_key).verify(self.signed_message(), self.signature)
        except (BadSignatureError, ValueError) as exc:
            raise BundleError(
                f"the key bundle for {self.handle!r} has an invalid signature; "
                "it may have been tampered with"
            ) from exc
        return self

    def to_json(self) -> dict[str, object]:
        return {
            "v": 1,
            "handle": self.handle,
            "signing_key": _b64(self.signing_key),
            "x25519": self.x25519,
            "pq": self.pq,
            "created": self.created,
            "sig": _b64(self.signature),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: object) -> KeyBundle:
        """Parse strictly (unknown or missing fields refused); does not verify."""
        if not isinstance(obj, dict):
            raise BundleError("a key bundle must be a JSON object")
        expected = {"v", "handle", "signing_key", "x25519", "pq", "created", "sig"}
        if set(obj) != expected:
            raise BundleError("key bundle has missing or unexpected fields")
        if obj["v"] != 1:
            raise BundleError("unsupported key bundle version")
        created = obj["created"]
        if not isinstance(created, int) or isinstance(created, bool) or created < 0:
            raise BundleError("key bundle field created must be a non-negative integer")
        x25519, pq = obj["x25519"], obj["pq"]
        if not isinstance(x25519, str) or not x25519.startswith("age1") or x25519.startswith(
            "age1pq1"
        ):
            raise BundleError("key bundle field x25519 must be an age1… recipient")
        if not isinstance(pq, str) or not pq.startswith("age1pq1"):
            raise BundleError("key bundle field pq must be an age1pq1… recipient")
        if not x25519.isascii() or not pq.isascii() or "\n" in x25519 + pq:
            raise BundleError("key bundle recipients must be single-line ASCII")
        return cls(
            handle=check_handle(obj["handle"]),
            signing_key=_unb64(obj["signing_key"], 32, "signing_key"),
            x25519=x25519,
            pq=pq,
            created=created,
            signature=_unb64(obj["sig"], 64, "sig"),
        )

    @classmethod
    def loads(cls, text: str | bytes) -> KeyBundle:
        if len(text) > _MAX_BUNDLE:
            raise BundleError("key bundle too large")
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError("key bundle is not valid JSON") from exc
        return cls.from_json(obj)
