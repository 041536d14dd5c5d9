"""The relay's HTTP middlewares, one concept each, and its error answers.

``create_app`` installs them outermost first::

    access_log_middleware → metrics_middleware → error_middleware → handler

so the access log and the metrics see the status of every answer, including
the error answers the innermost one makes. ``error_middleware`` is the only
place that turns exceptions into HTTP answers, always as
``{"error": ..., "code": ...}``; ``STATUS`` is the one table from domain error
class (``server.errors``) to HTTP status. Only a redirect-like
``HTTPException`` or a cancellation (the client went away) gets past it: the
outer two record the former with its status and the latter as 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import PayloadEncodingError

from sealdrop.crypto.protocol import H_UPLOAD_OFFSET, ErrorCode

from .errors import (
    Busy,
    Conflict,
    InvalidInput,
    NotFound,
    NotPermitted,
    OffsetMismatch,
    QuotaExceeded,
    RateLimited,
    RelayError,
    StorageFull,
    StoreUnavailable,
    TooLarge,
    Unauthenticated,
)
from .http_parse import BodyTimeout, LengthRequired, RangeNotSatisfiable
from .state import RELAY_KEY, Relay

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpCode(StrEnum):
    """Codes of answers the HTTP layer makes itself (docs/protocol.md, "Errors").
    Not in ``ErrorCode``: no relay rule produces them, and no client branches on them."""

    INCOMPLETE_BODY = "incomplete_body"
    REQUEST_TIMEOUT = "request_timeout"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_READY = "not_ready"
    INTERNAL_ERROR = "internal_error"
    HTTP_ERROR = "http_error"


Code = ErrorCode | HttpCode

# Domain error class -> HTTP status; a class not listed answers as its nearest
# listed base class (ConfigError, for one, only ever reaches an operator).
STATUS: dict[type[RelayError], int] = {
    RelayError: 400,
    InvalidInput: 400,
    Unauthenticated: 401,
    NotPermitted: 403,
    NotFound: 404,
    Conflict: 409,
    LengthRequired: 411,
    TooLarge: 413,
    QuotaExceeded: 413,
    RangeNotSatisfiable: 416,
    RateLimited: 429,
    StoreUnavailable: 503,
    Busy: 503,
    StorageFull: 507,
}

# aiohttp's own HTTP errors (unknown route, wrong method, ...), by status.
_HTTP_CODES: dict[int, Code] = {
    400: ErrorCode.BAD_REQUEST,
    404: ErrorCode.NOT_FOUND,
    405: HttpCode.METHOD_NOT_ALLOWED,
    411: ErrorCode.LENGTH_REQUIRED,
    413: ErrorCode.BODY_TOO_LARGE,
    415: ErrorCode.BAD_CONTENT_TYPE,
}

# What reading a request body raises when the client sent a broken body or
# went away mid-body: never the relay's fault, so never a 500.
_BROKEN_BODY = (web.RequestPayloadError, PayloadEncodingError, ClientPayloadError)
_CUT_OFF = (ConnectionResetError, asyncio.IncompleteReadError)


def status_of(exc: RelayError) -> int:
    for cls in type(exc).__mro__:
        if issubclass(cls, RelayError) and cls in STATUS:
            return STATUS[cls]
    return STATUS[RelayError]  # not reached: the loop ends at RelayError


def _error_headers(exc: RelayError) -> dict[str, str]:
    """The headers some errors carry so the client can act without asking again."""
    if isinstance(exc, RateLimited | Busy):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, OffsetMismatch) and exc.committed is not None:
        return {H_UPLOAD_OFFSET: str(exc.committed)}
    if isinstance(exc, RangeNotSatisfiable):
        return {"Content-Range": f"bytes */{exc.size}"}
    return {}


def error_response(
    status: int, code: Code, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": message, "code": code},
        status=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def route_name(request: web.Request) -> str:
    """The route template (never the path: it holds transfer ids and handles)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _disconnected(relay: Relay, exc: BaseException) -> None:
    relay.logger.info("client_disconnected", extra={"fields": {"exception": type(exc).__name__}})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every exception becomes a JSON error answer; unexpected ones a logged 500."""
    try:
        return await handler(request)
    except RelayError as exc:
        if isinstance(exc, StoreUnavailable):
            # The operator needs the cause: its type, and the sentence (which
            # names S3's error code, never a bucket, key or URL: server.s3faults).
            request.app[RELAY_KEY].logger.warning("store_unavailable", extra={"fields": {
                "route": route_name(request),
                "cause": type(exc.__cause__ or exc).__name__,
                "error": exc.message,
            }})
        return error_response(status_of(exc), exc.code, exc.message, _error_headers(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, HttpCode.HTTP_ERROR)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, code, exc.reason.lower(), headers)
    except BodyTimeout as exc:
        request.app[RELAY_KEY].metrics.inc("sealdrop_body_timeouts_total")
        resp = error_response(408, HttpCode.REQUEST_TIMEOUT, f"{exc}; send it again")
        # The rest of the body is still on its way: the connection cannot carry
        # another request, and must not be held open waiting for it.
        resp.force_close()
        return resp
    except _CUT_OFF as exc:
        _disconnected(request.app[RELAY_KEY], exc)
        return error_response(400, HttpCode.INCOMPLETE_BODY, "the request body ended early")
    except _BROKEN_BODY as exc:
        _disconnected(request.app[RELAY_KEY], exc)
        return error_response(
            400, HttpCode.INCOMPLETE_BODY, "the request body ended early or is malformed"
        )
    except Exception:
        relay = request.app[RELAY_KEY]
        relay.metrics.inc("sealdrop_internal_errors_total")
        relay.logger.error(
            "internal_error", exc_info=True, extra={"fields": {"route": route_name(request)}}
        )
        return error_response(
            500, HttpCode.INTERNAL_ERROR, "internal error; the relay operator can see the log"
        )


Observer = Callable[[web.Request, int, float], None]


async def _observed(
    request: web.Request, handler: Handler, observe: Observer
) -> web.StreamResponse:
    """Run ``handler``; then tell ``observe`` the answer's status and the seconds
    it took, whether it returned, raised an ``HTTPException`` (a redirect) or was
    cancelled (500: the client went away)."""
    started = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        observe(request, status, time.perf_counter() - started)


def _count(request: web.Request, status: int, seconds: float) -> None:
    metrics = request.app[RELAY_KEY].metrics
    route = route_name(request)
    metrics.inc(
        "sealdrop_http_requests_total", method=request.method, route=route, status=str(status)
    )
    metrics.observe("sealdrop_http_request_duration_seconds", seconds, route=route)


def _log(request: web.Request, status: int, seconds: float) -> None:
    request.app[RELAY_KEY].logger.info(
        "request",
        extra={
            "fields": {
                "method": request.method,
                "route": route_name(request),
                "status": status,
                "duration_s": round(seconds, 4),
            }
        },
    )


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request count by method, route and status; duration by route."""
    return await _observed(request, handler, _count)


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One structured log line per request: method, route template, status, duration."""
    return await _observed(request, handler, _log)
