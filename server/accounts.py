"""Accounts and invites: registration by invite code with a signed key bundle.

The relay never makes or changes a bundle: it checks the bundle's
self-signature and that it names the handle being registered, stores it
verbatim, and serves it verbatim. Every bundle registered or rotated is also
appended to the transparency log in the same transaction (``server.tlog``),
so a client can check that the bundle it is served is the one everybody
else sees (docs/transparency.md).
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

from sealdrop.crypto.bundle import HANDLE_RE, KeyBundle
from sealdrop.crypto.errors import BundleError
from sealdrop.crypto.protocol import INVITE_RE, ErrorCode, new_invite_code
from sealdrop.crypto.tlog.entries import bundle_digest

from .errors import Conflict, InvalidInput
from .metadata import Account, SqlMetadataStore

if TYPE_CHECKING:  # for types only: importing state imports aiohttp, which the
    # relay's commands other than serve never need (0.25 CPU-s at each start)
    from .state import Relay


def invite_hash(code: str) -> str:
    """Invites are stored hashed: a copy of the database registers nobody."""
    return hashlib.sha256(code.encode("ascii")).hexdigest()


async def create_invite(store: SqlMetadataStore, *, now: int, ttl: int) -> str:
    code = new_invite_code()
    await store.create_invite(invite_hash(code), now=now, expires_at=now + ttl)
    return code


def parse_bundle(obj: object) -> KeyBundle:
    try:
        return KeyBundle.from_json(obj).verify()
    except BundleError as exc:
        raise InvalidInput(str(exc), code=ErrorCode.BAD_BUNDLE) from None


def parse_registration(body: dict[str, Any]) -> tuple[str, str, KeyBundle]:
    """Handle, invite and the bundle, each well-formed. The bundle's
    self-signature is not checked yet: ``verified_bundle`` does that once
    the invite is known to be open."""
    if set(body) != {"handle", "invite", "bundle"}:
        raise InvalidInput(
            "registration body must have exactly the fields handle, invite and bundle",
            code=ErrorCode.BAD_JSON,
        )
    handle, invite = body["handle"], body["invite"]
    if not isinstance(handle, str) or not HANDLE_RE.fullmatch(handle):
        raise InvalidInput(
            "invalid handle: use 3-64 lowercase letters, digits, '.', '_' or '-'",
            code=ErrorCode.BAD_HANDLE,
        )
    if not isinstance(invite, str) or not INVITE_RE.fullmatch(invite):
        raise InvalidInput("malformed invite code", code=ErrorCode.BAD_INVITE)
    try:
        bundle = KeyBundle.from_json(body["bundle"])
    except BundleError as exc:
        raise InvalidInput(str(exc), code=ErrorCode.BAD_BUNDLE) from None
    if bundle.handle != handle:
        raise InvalidInput(
            "the key bundle names a different handle", code=ErrorCode.BUNDLE_HANDLE_MISMATCH
        )
    return handle, invite, bundle


async def check_invite(relay: Relay, invite: str) -> None:
    """``NotPermitted`` unless the invite is open now (claimed later, atomically)."""
    await relay.store.check_invite(invite_hash(invite), now=relay.now())


def verified_bundle(bundle: KeyBundle) -> KeyBundle:
    """The bundle with its self-signature checked."""
    try:
        return bundle.verify()
    except BundleError as exc:
        raise InvalidInput(str(exc), code=ErrorCode.BAD_BUNDLE) from None


def signing_key_b64(bundle: KeyBundle) -> str:
    return base64.b64encode(bundle.signing_key).decode("ascii")


async def register(
    relay: Relay, handle: str, invite: str, bundle: KeyBundle, *, nonce: str,
    nonce_expires_at: int,
) -> int:
    """Claim the invite, remember the request's nonce, add the account and log
    its bundle, all or nothing: a replayed registration leaves the invite open
    and adds no row. The key entry's log index."""
    return await relay.store.register(
        handle=handle,
        signing_key=signing_key_b64(bundle),
        bundle=bundle.dumps(),
        bundle_created=bundle.created,
        invite_hash=invite_hash(invite),
        now=relay.now(),
        nonce=nonce,
        nonce_expires_at=nonce_expires_at,
        bundle_digest=bundle_digest(bundle),
    )


async def rotate(
    relay: Relay, account: Account, body: dict[str, Any]
) -> tuple[KeyBundle, int]:
    """The new bundle, stored and logged, and its key entry's log index."""
    if set(body) != {"bundle"}:
        raise InvalidInput("the body must be {\"bundle\": {...}}", code=ErrorCode.BAD_JSON)
    bundle = parse_bundle(body["bundle"])
    if bundle.handle != account.handle:
        raise InvalidInput(
            "the key bundle names a different handle", code=ErrorCode.BUNDLE_HANDLE_MISMATCH
        )
    if signing_key_b64(bundle) != account.signing_key:
        raise Conflict(
            "a rotated bundle must be signed by the account's existing signing key",
            code=ErrorCode.SIGNING_KEY_MISMATCH,
        )
    index = await relay.store.rotate_bundle(
        handle=account.handle,
        signing_key=account.signing_key,
        bundle=bundle.dumps(),
        bundle_created=bundle.created,
        bundle_digest=bundle_digest(bundle),
        now=relay.now(),
    )
    return bundle, index
