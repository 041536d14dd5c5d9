"""Request authentication: every call is signed with the account's Ed25519 key.

The signed text and the header formats are the protocol module's
(``sealdrop.crypto.protocol``, docs/protocol.md "Signed requests"); this module
checks them against the account's key, the clock window and the nonce store,
and turns a failure into ``Unauthenticated``. The nonce is remembered in the
database until the window closes, so each signed request is usable once
across every relay process sharing the database.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from aiohttp import web

from sealdrop.crypto.protocol import (
    SIGNATURE_HEADERS,
    ErrorCode,
    ProtocolError,
    SignedHeaders,
    parse_signed_headers,
)

from .clientaddr import client_address
from .errors import NotPermitted, RateLimited, Unauthenticated
from .metadata import Account
from .state import RELAY_KEY, Relay


def parse_headers(request: web.Request) -> SignedHeaders:
    """The request's signature headers, or ``Unauthenticated`` naming the bad one."""
    # Looked up through the case-insensitive multidict, every value kept:
    # a repeated signature header is an error, not "the first one wins".
    multi: dict[str, Sequence[str]] = {
        name: request.headers.getall(name, []) for name in SIGNATURE_HEADERS
    }
    try:
        return parse_signed_headers(multi)
    except ProtocolError as exc:
        raise Unauthenticated(str(exc), code=exc.code) from None


def _fail(relay: Relay, reason: ErrorCode, message: str) -> Unauthenticated:
    relay.metrics.inc("sealdrop_auth_failures_total", reason=reason.value)
    return Unauthenticated(message, code=reason)


def check_signature(
    relay: Relay,
    request: web.Request,
    signed: SignedHeaders,
    signing_key_b64: str,
    body_sha256: str,
) -> None:
    """Timestamp window and signature; raises ``Unauthenticated``."""
    check_timestamp(relay, signed)
    if not _verifies(request, signed, signing_key_b64, body_sha256):
        raise _fail(
            relay, ErrorCode.INVALID_SIGNATURE, "the request signature does not verify"
        )


def check_timestamp(relay: Relay, signed: SignedHeaders) -> None:
    now = relay.now()
    skew = relay.config.clock_skew_seconds
    if abs(int(signed.timestamp) - now) > skew:
        raise _fail(
            relay,
            ErrorCode.STALE_TIMESTAMP,
            f"request timestamp is more than {skew} s from the relay's clock; check the "
            "computer's clock",
        )


def _verifies(
    request: web.Request, signed: SignedHeaders, signing_key_b64: str, body_sha256: str
) -> bool:
    try:
        key = base64.b64decode(signing_key_b64)
    except (binascii.Error, ValueError):
        key = b""
    return signed.verifies(key, request.method, request.raw_path, body_sha256)


def client_of(request: web.Request) -> str:
    """The client's address: the peer, or X-Forwarded-For when the peer is a
    trusted proxy (``server.clientaddr``). In memory only, never logged."""
    relay = request.app[RELAY_KEY]
    return client_address(
        request.remote, request.headers.getall("X-Forwarded-For", []), relay.trusted_proxies
    )


def _limited(relay: Relay, wait: float) -> RateLimited:
    relay.metrics.inc("sealdrop_rate_limited_total")
    return RateLimited(
        "too many requests; slow down", retry_after=relay.limiter.retry_after(wait)
    )


def take_registration_token(relay: Relay, address: str) -> None:
    """Spend one of ``address``'s registration tokens (in memory:
    ``server.ratelimit``), or ``RateLimited``. A signed request's token is
    spent with its nonce (``authenticate``)."""
    wait = relay.registrations.take(address)
    if wait > 0:
        raise _limited(relay, wait)


def nonce_expiry(relay: Relay, signed: SignedHeaders) -> int:
    """Until when the nonce must be remembered: past the request's clock window."""
    return max(int(signed.timestamp), relay.now()) + relay.config.clock_skew_seconds + 1


def _disabled() -> NotPermitted:
    return NotPermitted(
        "this account has been disabled by the relay operator",
        code=ErrorCode.ACCOUNT_DISABLED,
    )


async def _signer(relay: Relay, request: web.Request, signed: SignedHeaders,
                  body_sha256: str) -> Account:
    """The account whose key verifies the signature: from ``store.keys`` when it
    is there (no database read), else read. A cached key that does not verify is
    forgotten and the account read again: its key may have changed meanwhile."""
    keys = relay.store.keys
    account = keys.get(signed.handle)
    if account is not None:
        check_timestamp(relay, signed)
        if _verifies(request, signed, account.signing_key, body_sha256):
            return account
        keys.forget(signed.handle)
    account = await relay.store.get_account(signed.handle)
    if account is None:
        # Same answer as a bad signature: an unauthenticated caller learns nothing.
        raise _fail(
            relay, ErrorCode.INVALID_SIGNATURE, "the request signature does not verify"
        )
    check_signature(relay, request, signed, account.signing_key, body_sha256)
    if account.disabled:
        raise _disabled()
    keys.put(account)  # only after its signature verified
    return account


async def authenticate(request: web.Request, body_sha256: str) -> Account:
    """The account that signed this request; else ``Unauthenticated`` or ``NotPermitted``.

    The account's key may come from memory (``server.keycache``); the
    transaction that commits the nonce reads the account again, and the request
    acts only if it still holds that key and is not disabled. The same
    transaction spends the account's rate-limit token (``server.ratelimit``),
    shared by every relay process on the database."""
    relay = request.app[RELAY_KEY]
    signed = parse_headers(request)
    account = await _signer(relay, request, signed, body_sha256)
    fresh, state = await relay.store.remember_nonce_as(
        signed.nonce, expires_at=nonce_expiry(relay, signed), handle=account.handle
    )
    if state is None or state[0] != account.signing_key:
        # Gone, or registered again with another key (a restored backup, say).
        relay.store.keys.forget(account.handle)
        raise _fail(
            relay, ErrorCode.INVALID_SIGNATURE, "the request signature does not verify"
        )
    if state[1]:
        relay.store.keys.forget(account.handle)
        raise _disabled()
    if not fresh:
        raise _fail(
            relay,
            ErrorCode.REPLAYED_REQUEST,
            "this signed request was already used (replay refused)",
        )
    if not state[2]:
        # The batch spent what the bucket held: a token is 1/rate seconds away at best.
        raise _limited(relay, relay.limiter.wait(0.0))
    return account
