"""Request authentication: every call is signed with the account's Ed25519 key.

The signed text (docs/protocol.md, "Signed requests")::

    sealdrop-request-v1\\n METHOD\\n path-with-query\\n timestamp\\n nonce\\n sha256(body) hex

joined by single LFs. Why each part: the method and raw path+query stop a
signature for one call from authorising another; the body hash binds the body
(for chunk uploads it is the declared chunk hash, checked against the bytes
before they are committed); the timestamp bounds the window in which a request
is accepted (±clock_skew); the nonce, remembered in the database until that
window closes, makes each signed request usable once, across every relay
process sharing the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from crypto.bundle import HANDLE_RE

from .errors import Forbidden, RateLimited, Unauthorized
from .metadata import Account
from .state import RELAY_KEY, Relay

CONTEXT = "sealdrop-request-v1"
H_HANDLE = "Sealdrop-Handle"
H_TIMESTAMP = "Sealdrop-Timestamp"
H_NONCE = "Sealdrop-Nonce"
H_SIGNATURE = "Sealdrop-Signature"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{22}")
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{86}")
_TS_RE = re.compile(r"[0-9]{1,12}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")


def signed_text(
    method: str, path_qs: str, timestamp: str, nonce: str, body_sha256: str
) -> bytes:
    return "\n".join([CONTEXT, method.upper(), path_qs, timestamp, nonce, body_sha256]).encode(
        "utf-8"
    )


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    handle: str
    timestamp: str
    nonce: str
    signature: bytes


def parse_headers(headers: Any) -> SignedHeaders:
    values = {h: headers.getall(h, []) for h in (H_HANDLE, H_TIMESTAMP, H_NONCE, H_SIGNATURE)}
    if not any(values.values()):
        raise Unauthorized(
            "this endpoint needs a signed request (Sealdrop-Handle, -Timestamp, -Nonce, "
            "-Signature headers)",
            code="auth_required",
        )
    for name, vals in values.items():
        if len(vals) != 1:
            raise Unauthorized(f"header {name} must appear exactly once", code="bad_auth_header")
    handle, ts, nonce, sig = (values[h][0] for h in (H_HANDLE, H_TIMESTAMP, H_NONCE, H_SIGNATURE))
    if not HANDLE_RE.fullmatch(handle):
        raise Unauthorized(f"header {H_HANDLE} is not a valid handle", code="bad_auth_header")
    if not _TS_RE.fullmatch(ts):
        raise Unauthorized(
            f"header {H_TIMESTAMP} must be unix seconds (digits only)", code="bad_auth_header"
        )
    if not _NONCE_RE.fullmatch(nonce):
        raise Unauthorized(
            f"header {H_NONCE} must be 16 random bytes in unpadded base64url",
            code="bad_auth_header",
        )
    if not _SIG_RE.fullmatch(sig):
        raise Unauthorized(
            f"header {H_SIGNATURE} must be a 64-byte signature in unpadded base64url",
            code="bad_auth_header",
        )
    try:
        raw_sig = b64url_decode(sig)
    except (binascii.Error, ValueError):
        raise Unauthorized(
            f"header {H_SIGNATURE} is not base64url", code="bad_auth_header"
        ) from None
    canonical_nonce = base64.urlsafe_b64encode(b64url_decode(nonce)).decode()[:22]
    if len(raw_sig) != 64 or nonce != canonical_nonce:
        raise Unauthorized(
            "signature or nonce has a non-canonical encoding", code="bad_auth_header"
        )
    return SignedHeaders(handle, ts, nonce, raw_sig)


def _fail(relay: Relay, reason: str, message: str) -> Unauthorized:
    relay.metrics.inc("sealdrop_auth_failures_total", reason=reason)
    return Unauthorized(message, code=reason)


def check_signature(
    relay: Relay,
    request: web.Request,
    signed: SignedHeaders,
    signing_key_b64: str,
    body_sha256: str,
) -> None:
    """Timestamp window and signature; raises ``Unauthorized``."""
    now = relay.now()
    skew = relay.config.clock_skew_seconds
    if abs(int(signed.timestamp) - now) > skew:
        raise _fail(
            relay,
            "stale_timestamp",
            f"request timestamp is more than {skew} s from the relay's clock; check the "
            "computer's clock",
        )
    message = signed_text(
        request.method, request.raw_path, signed.timestamp, signed.nonce, body_sha256
    )
    try:
        VerifyKey(base64.b64decode(signing_key_b64)).verify(message, signed.signature)
    except (BadSignatureError, ValueError, binascii.Error):
        raise _fail(relay, "invalid_signature", "the request signature does not verify") from None


async def consume(relay: Relay, signed: SignedHeaders, rate_key: str) -> None:
    """Rate limit, then remember the nonce (a second use is a replay)."""
    wait = relay.limiter.take(rate_key)
    if wait > 0:
        relay.metrics.inc("sealdrop_rate_limited_total")
        raise RateLimited(
            "too many requests; slow down", retry_after=relay.limiter.retry_after(wait)
        )
    expires = max(int(signed.timestamp), relay.now()) + relay.config.clock_skew_seconds + 1
    if not await relay.store.remember_nonce(signed.nonce, expires_at=expires):
        raise _fail(
            relay, "replayed_request", "this signed request was already used (replay refused)"
        )


async def authenticate(request: web.Request, body_sha256: str) -> Account:
    """The account that signed this request, or an ``Unauthorized``/``Forbidden`` error."""
    relay = request.app[RELAY_KEY]
    signed = parse_headers(request.headers)
    account = await relay.store.get_account(signed.handle)
    if account is None:
        # Same answer as a bad signature: an unauthenticated caller learns nothing.
        raise _fail(relay, "invalid_signature", "the request signature does not verify")
    check_signature(relay, request, signed, account.signing_key, body_sha256)
    if account.disabled:
        raise Forbidden("this account has been disabled by the relay operator",
                        code="account_disabled")
    await consume(relay, signed, "acct:" + account.handle)
    return account
