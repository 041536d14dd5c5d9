"""The relay's domain errors: what went wrong, in the relay's own terms.

Stores and domain modules raise these and know nothing of HTTP; the HTTP edge
(``server.middleware``) is the one place that maps each class to a status and
renders it as ``{"error": ..., "code": ...}``. Every error carries a stable
machine ``code`` (``sealdrop.crypto.protocol.ErrorCode``, documented in
docs/protocol.md) and a one-line lowercase message that names what was wrong.
The message goes to the client verbatim, so it must never contain a secret,
a request body, or anything the relay was not told by that same client.
"""

from __future__ import annotations

from sealdrop.crypto.protocol import ErrorCode


class RelayError(Exception):
    """Root of the relay's errors; also what operator commands report as an error."""

    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code.value


class InvalidInput(RelayError):
    """The caller sent something malformed or outside the rules."""

    code = ErrorCode.BAD_REQUEST


class Unauthenticated(RelayError):
    """The request is not provably from a registered account."""

    code = ErrorCode.UNAUTHORIZED


class NotPermitted(RelayError):
    """The caller is known but may not do this."""

    code = ErrorCode.FORBIDDEN


class NotFound(RelayError):
    """Also used for 'exists but is not yours': the relay never tells a caller
    who is not a party to a transfer that it exists, so ids cannot be probed."""

    code = ErrorCode.NOT_FOUND


class Conflict(RelayError):
    """The request contradicts the current state (already registered, complete, ...)."""

    code = ErrorCode.CONFLICT


class OffsetMismatch(Conflict):
    """A chunk was sent for an offset other than the committed one.

    ``committed`` is the offset the sender should resume from, when known (the
    HTTP edge sends it back so the client need not ask)."""

    code = ErrorCode.OFFSET_MISMATCH

    def __init__(self, message: str, *, committed: int | None = None) -> None:
        super().__init__(message)
        self.committed = committed


class TooLarge(RelayError):
    """Something is over one of the relay's size limits."""

    code = ErrorCode.TOO_LARGE


class QuotaExceeded(RelayError):
    """The sender's live transfers would exceed the account quota."""

    code = ErrorCode.QUOTA_EXCEEDED


class RateLimited(RelayError):
    """Too many requests from one account or address; ``retry_after`` in seconds."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageFull(RelayError):
    """The relay's own storage is full: not the client's fault, nothing was kept."""

    code = ErrorCode.INSUFFICIENT_STORAGE


class StoreUnavailable(RelayError):
    """The blob store or database is inconsistent or unreachable."""

    code = ErrorCode.STORE_UNAVAILABLE


class Busy(RelayError):
    """Another request, in this relay process or another, holds the transfer's
    lock (``server.leases``) longer than a request waits: nothing was changed,
    send it again (HTTP 503 with ``Retry-After``, which clients retry)."""

    code = ErrorCode.UPLOAD_BUSY

    def __init__(self, message: str, *, code: ErrorCode | None = None,
                 retry_after: int = 1) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class ConfigError(RelayError):
    """The operator's configuration is invalid, or cannot do what was asked."""

    code = ErrorCode.CONFIG_ERROR
