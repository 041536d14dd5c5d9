"""The relay's error root and the few subclasses handlers map to HTTP statuses.

Every error carries a stable machine ``code`` (snake_case, documented in
docs/protocol.md) and a one-line lowercase message that names what was wrong.
The message goes to the client verbatim, so it must never contain a secret,
a request body, or anything the relay was not told by that same client.
"""

from __future__ import annotations


class RelayError(Exception):
    """Root of the relay's domain errors. ``status`` is the HTTP status to send."""

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class BadRequest(RelayError):
    status = 400
    code = "bad_request"


class Unauthorized(RelayError):
    status = 401
    code = "unauthorized"


class Forbidden(RelayError):
    status = 403
    code = "forbidden"


class NotFound(RelayError):
    """Also used for 'exists but is not yours': the relay never says 403 to a
    caller who is not a party to a transfer, so ids cannot be probed."""

    status = 404
    code = "not_found"


class Conflict(RelayError):
    status = 409
    code = "conflict"


class LengthRequired(RelayError):
    status = 411
    code = "length_required"


class TooLarge(RelayError):
    status = 413
    code = "too_large"


class RangeNotSatisfiable(RelayError):
    status = 416
    code = "range_not_satisfiable"


class RateLimited(RelayError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class InsufficientStorage(RelayError):
    """The relay's own disk is full: not the client's fault, nothing was kept."""

    status = 507
    code = "insufficient_storage"


class ConfigError(RelayError):
    """The operator's configuration is invalid (raised before serving)."""

    code = "config_error"


class StoreError(RelayError):
    """The blob store or database is inconsistent or unreachable."""

    status = 503
    code = "store_unavailable"
