"""The relay's wire protocol, the one copy both sides import.

Everything a client and the relay must agree on byte for byte lives here: the
signed-request text and its headers, the other ``Sealdrop-*`` headers, the
formats of transfer ids, nonces and invite codes, the default chunk size and
the machine error codes of docs/protocol.md. It does no I/O: time and
randomness are parameters, so the server's tests sign requests with the same
code the client does without borrowing either side's internals.

The signed text (docs/protocol.md, "Signed requests")::

    sealdrop-request-v1 LF METHOD LF path-with-query LF timestamp LF nonce LF sha256(body) hex

Why each part: the method and raw path+query stop a signature for one call
from authorising another; the body hash binds the body (for chunk uploads it
is the declared chunk hash, which the relay checks against the bytes before
committing them); the timestamp bounds the window in which the relay accepts
the request; the nonce, remembered by the relay until that window closes,
makes each signed request usable once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .bundle import HANDLE_RE
from .errors import SealdropCryptoError

API_PREFIX = "/v1"
SIGNING_CONTEXT = "sealdrop-request-v1"

# -- headers -----------------------------------------------------------------

H_HANDLE = "Sealdrop-Handle"
H_TIMESTAMP = "Sealdrop-Timestamp"
H_NONCE = "Sealdrop-Nonce"
H_SIGNATURE = "Sealdrop-Signature"
SIGNATURE_HEADERS = (H_HANDLE, H_TIMESTAMP, H_NONCE, H_SIGNATURE)
H_CHUNK_SHA256 = "Sealdrop-Chunk-Sha256"
# A chunk upload carries exactly one of these (crypto.chunkhash.HEADERS).
H_CHUNK_BLAKE3 = "Sealdrop-Chunk-Blake3"
H_TRANSFER_STATE = "Sealdrop-Transfer-State"
H_BLOB_DIGEST = "Sealdrop-Blob-Digest"
# The tus-style offset header: the committed offset of a resumable upload.
H_UPLOAD_OFFSET = "Upload-Offset"

# -- formats -----------------------------------------------------------------

NONCE_BYTES = 16
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{22}")  # 16 bytes, unpadded base64url
SIGNATURE_RE = re.compile(r"[A-Za-z0-9_-]{86}")  # 64 bytes, unpadded base64url
TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")  # unix seconds
# Transfer ids are 16 random bytes as 32 lowercase hex digits (made by the relay).
TRANSFER_ID_BYTES = 16
TRANSFER_ID_RE = re.compile(r"[0-9a-f]{32}")
# Invite codes are made as 32 hex digits too (never a leading '-', easy to read
# out on the phone); the relay accepts any 16-64 base64url characters so that
# codes an operator made by other means still work.
INVITE_BYTES = 16
INVITE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")

# The ciphertext is uploaded in chunks of this size: large enough that the
# per-request signature, hash and fsync cost vanish, small enough to resume
# cheaply. The relay accepts any chunk up to its configured maximum.
DEFAULT_CHUNK_SIZE = 12 * 1024 * 1024
# The shortest expiry a relay accepts for a transfer, in seconds (the longest is
# the relay's own max_expiry_seconds, said in GET /v1/info).
MIN_EXPIRY_SECONDS = 60
# The smallest chunk a client uploads (below it the per-request cost dominates):
# a relay's max_chunk_bytes may not be lower, and clients adapt down to it
# (``GET /v1/info``).
MIN_CHUNK_SIZE = 64 * 1024

# The inbox is paged (docs/protocol.md, "Inbox"): a page holds at most
# INBOX_MAX_PAGE transfers (INBOX_DEFAULT_PAGE without ``limit``), and one
# request may filter on at most INBOX_MAX_SENDERS sender handles, so that the
# query stays well inside an HTTP request line.
INBOX_DEFAULT_PAGE = 100
INBOX_MAX_PAGE = 500
INBOX_MAX_SENDERS = 32

# A transfer's case card (crypto/card.py, docs/card.md) is at most this many
# bytes of ciphertext: a 16 KiB padded card plus an age header for many hybrid
# recipients. The relay refuses a larger one (``card_too_large``).
MAX_CARD_BYTES = 40 * 1024

Random = Callable[[int], bytes]


def new_transfer_id(rand: Random = os.urandom) -> str:
    return rand(TRANSFER_ID_BYTES).hex()


def new_invite_code(rand: Random = os.urandom) -> str:
    return rand(INVITE_BYTES).hex()


def is_transfer_id(text: str) -> bool:
    return TRANSFER_ID_RE.fullmatch(text) is not None


# -- error codes -------------------------------------------------------------


class ErrorCode(StrEnum):
    """The relay's machine-readable error codes (the ``code`` of a JSON error
    body, docs/protocol.md "Errors"). Clients branch on these, never on text."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    LENGTH_REQUIRED = "length_required"
    TOO_LARGE = "too_large"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    RATE_LIMITED = "rate_limited"
    INSUFFICIENT_STORAGE = "insufficient_storage"
    STORE_UNAVAILABLE = "store_unavailable"
    UPLOAD_BUSY = "upload_busy"
    CONFIG_ERROR = "config_error"
    # authentication
    AUTH_REQUIRED = "auth_required"
    BAD_AUTH_HEADER = "bad_auth_header"
    STALE_TIMESTAMP = "stale_timestamp"
    INVALID_SIGNATURE = "invalid_signature"
    REPLAYED_REQUEST = "replayed_request"
    ACCOUNT_DISABLED = "account_disabled"
    # request shape
    BAD_JSON = "bad_json"
    BAD_CONTENT_TYPE = "bad_content_type"
    BODY_TOO_LARGE = "body_too_large"
    UNEXPECTED_BODY = "unexpected_body"
    BAD_HEADER = "bad_header"
    MISSING_HEADER = "missing_header"
    # accounts
    BAD_HANDLE = "bad_handle"
    BAD_BUNDLE = "bad_bundle"
    BAD_INVITE = "bad_invite"
    INVALID_INVITE = "invalid_invite"
    HANDLE_TAKEN = "handle_taken"
    BUNDLE_HANDLE_MISMATCH = "bundle_handle_mismatch"
    SIGNING_KEY_MISMATCH = "signing_key_mismatch"
    STALE_BUNDLE = "stale_bundle"
    ACCOUNT_NOT_FOUND = "account_not_found"
    NOT_YOUR_ACCOUNT = "not_your_account"
    # transfers
    BAD_TRANSFER_ID = "bad_transfer_id"
    TRANSFER_NOT_FOUND = "transfer_not_found"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    DUPLICATE_RECIPIENT = "duplicate_recipient"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    BAD_SIZE = "bad_size"
    BAD_EXPIRY = "bad_expiry"
    TRANSFER_TOO_LARGE = "transfer_too_large"
    QUOTA_EXCEEDED = "quota_exceeded"
    # inbox paging and blocks
    BAD_CURSOR = "bad_cursor"
    BLOCKED_BY_RECIPIENT = "blocked_by_recipient"
    # uploads and downloads
    BAD_LENGTH = "bad_length"
    BAD_CHECKSUM = "bad_checksum"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    CHUNK_TOO_LARGE = "chunk_too_large"
    CHUNK_TOO_SMALL = "chunk_too_small"
    CHUNK_PAST_END = "chunk_past_end"
    INCOMPLETE_CHUNK = "incomplete_chunk"
    OFFSET_MISMATCH = "offset_mismatch"
    ALREADY_COMPLETE = "already_complete"
    INCOMPLETE_UPLOAD = "incomplete_upload"
    BAD_RANGE = "bad_range"
    # case cards
    BAD_CARD = "bad_card"
    CARD_TOO_LARGE = "card_too_large"
    # transparency log (docs/transparency.md)
    BAD_RECEIPT = "bad_receipt"


# -- signed requests -----------------------------------------------------------


class ProtocolError(SealdropCryptoError):
    """A signed request's headers are missing, malformed or non-canonical.

    ``code`` is the ``ErrorCode`` the relay answers with."""

    def __init__(self, message: str, *, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


def signed_text(
    method: str, path_qs: str, timestamp: str, nonce: str, body_sha256: str
) -> bytes:
    """The exact bytes a request signature covers."""
    return "\n".join(
        [SIGNING_CONTEXT, method.upper(), path_qs, timestamp, nonce, body_sha256]
    ).encode("utf-8")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_request(
    signing_key: SigningKey,
    handle: str,
    method: str,
    path_qs: str,
    body_sha256: str,
    *,
    timestamp: int,
    nonce: bytes,
) -> dict[str, str]:
    """The four signature headers for one request."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a request nonce is {NONCE_BYTES} bytes")
    ts = str(int(timestamp))
    nonce_text = _b64url(nonce)
    sig = signing_key.sign(signed_text(method, path_qs, ts, nonce_text, body_sha256)).signature
    return {
        H_HANDLE: handle,
        H_TIMESTAMP: ts,
        H_NONCE: nonce_text,
        H_SIGNATURE: _b64url(sig),
    }


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """The parsed, canonical signature headers of one request."""

    handle: str
    timestamp: str
    nonce: str
    signature: bytes

    def verifies(
        self, verify_key: bytes, method: str, path_qs: str, body_sha256: str
    ) -> bool:
        """Whether the signature is ``verify_key``'s over this request."""
        message = signed_text(method, path_qs, self.timestamp, self.nonce, body_sha256)
        try:
            VerifyKey(verify_key).verify(message, self.signature)
        except (BadSignatureError, ValueError):
            return False
        return True


def parse_signed_headers(headers: Mapping[str, Sequence[str]]) -> SignedHeaders:
    """Validate the four signature headers, given each header's list of values.

    Raises ``ProtocolError`` naming the header at fault. Encodings must be
    canonical so that one signed request has exactly one textual form (a nonce
    with other trailing bits would otherwise dodge the replay check).
    """
    values = {h: list(headers.get(h, ())) for h in SIGNATURE_HEADERS}
    if not any(values.values()):
        raise ProtocolError(
            "this endpoint needs a signed request (Sealdrop-Handle, -Timestamp, -Nonce, "
            "-Signature headers)",
            code=ErrorCode.AUTH_REQUIRED,
        )
    for name, vals in values.items():
        if len(vals) != 1:
            raise ProtocolError(
                f"header {name} must appear exactly once", code=ErrorCode.BAD_AUTH_HEADER
            )
    handle, ts, nonce, sig = (values[h][0] for h in SIGNATURE_HEADERS)
    if not HANDLE_RE.fullmatch(handle):
        raise ProtocolError(
            f"header {H_HANDLE} is not a valid handle", code=ErrorCode.BAD_AUTH_HEADER
        )
    if not TIMESTAMP_RE.fullmatch(ts):
        raise ProtocolError(
            f"header {H_TIMESTAMP} must be unix seconds (digits only)",
            code=ErrorCode.BAD_AUTH_HEADER,
        )
    if not NONCE_RE.fullmatch(nonce):
        raise ProtocolError(
            f"header {H_NONCE} must be 16 random bytes in unpadded base64url",
            code=ErrorCode.BAD_AUTH_HEADER,
        )
    if not SIGNATURE_RE.fullmatch(sig):
        raise ProtocolError(
            f"header {H_SIGNATURE} must be a 64-byte signature in unpadded base64url",
            code=ErrorCode.BAD_AUTH_HEADER,
        )
    try:
        raw_sig = _b64url_decode(sig)
        raw_nonce = _b64url_decode(nonce)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            f"header {H_SIGNATURE} is not base64url", code=ErrorCode.BAD_AUTH_HEADER
        ) from None
    if len(raw_sig) != 64 or _b64url(raw_nonce) != nonce or _b64url(raw_sig) != sig:
        raise ProtocolError(
            "signature or nonce has a non-canonical encoding", code=ErrorCode.BAD_AUTH_HEADER
        )
    return SignedHeaders(handle, ts, nonce, raw_sig)
