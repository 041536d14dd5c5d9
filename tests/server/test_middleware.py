"""The HTTP edge: domain error class -> status in one table, error answers,
and the three middlewares (errors, metrics, access log) each doing its part."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.http_exceptions import ContentLengthError, TransferEncodingError

from sealdrop.crypto.protocol import ErrorCode
from sealdrop.server import errors, http_parse
from sealdrop.server.blobs import LocalBlobStore
from sealdrop.server.config import load_config
from sealdrop.server.logs import LOGGER_NAME
from sealdrop.server.metadata import SqlMetadataStore
from sealdrop.server.metrics import Metrics
from sealdrop.server.middleware import (
    HttpCode,
    access_log_middleware,
    error_middleware,
    metrics_middleware,
    status_of,
)
from sealdrop.server.ratelimit import RateLimit
from sealdrop.server.state import RELAY_KEY, Relay

# The statuses clients have always seen for each kind of error.
EXPECTED_STATUS: dict[type[errors.RelayError], int] = {
    errors.RelayError: 400,
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.NotPermitted: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.OffsetMismatch: 409,
    http_parse.LengthRequired: 411,
    errors.TooLarge: 413,
    errors.QuotaExceeded: 413,
    http_parse.RangeNotSatisfiable: 416,
    errors.RateLimited: 429,
    errors.StoreUnavailable: 503,
    errors.Busy: 503,
    errors.StorageFull: 507,
    errors.ConfigError: 400,  # operator commands only; never raised while serving
}


def _error_classes() -> set[type[errors.RelayError]]:
    out: set[type[errors.RelayError]] = set()
    for module in (errors, http_parse):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, errors.RelayError) and obj.__module__ == module.__name__:
                out.add(obj)
    return out


def test_every_error_class_has_its_status() -> None:
    assert _error_classes() == set(EXPECTED_STATUS)
    for cls, status in EXPECTED_STATUS.items():
        exc = cls("x") if cls is not http_parse.RangeNotSatisfiable else cls("x", size=1)
        assert status_of(exc) == status, cls


def test_domain_errors_carry_no_http() -> None:
    for cls in _error_classes():
        assert not hasattr(cls, "status"), cls
        assert not hasattr(cls("x") if cls is not http_parse.RangeNotSatisfiable
                           else cls("x", size=1), "headers"), cls
        assert isinstance(cls.code, ErrorCode), cls


# -- the middlewares on a tiny application ----------------------------------------------


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    config = load_config(tmp_path, env={})
    store = SqlMetadataStore.open("sqlite+aiosqlite://")
    yield Relay(
        config=config,
        store=store,
        blobs=LocalBlobStore(tmp_path / "blobs"),
        logger=logging.getLogger(LOGGER_NAME),
        metrics=Metrics(),
        limiter=RateLimit(rate=1.0, burst=1),
    )
    await store.close()


def _raising(exc: BaseException) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise exc

    return handler


CASES: list[tuple[BaseException, int, str, dict[str, str]]] = [
    (errors.InvalidInput("bad", code=ErrorCode.BAD_JSON), 400, "bad_json", {}),
    (errors.Unauthenticated("no", code=ErrorCode.INVALID_SIGNATURE), 401,
     "invalid_signature", {}),
    (errors.NotPermitted("no", code=ErrorCode.ACCOUNT_DISABLED), 403, "account_disabled", {}),
    (errors.NotFound("gone", code=ErrorCode.TRANSFER_NOT_FOUND), 404, "transfer_not_found", {}),
    (errors.OffsetMismatch("moved", committed=1000), 409, "offset_mismatch",
     {"Upload-Offset": "1000"}),
    (errors.OffsetMismatch("moved"), 409, "offset_mismatch", {}),
    (http_parse.LengthRequired("need length"), 411, "length_required", {}),
    (errors.TooLarge("big", code=ErrorCode.CHUNK_TOO_LARGE), 413, "chunk_too_large", {}),
    (errors.QuotaExceeded("full"), 413, "quota_exceeded", {}),
    (http_parse.RangeNotSatisfiable("past", size=10), 416, "range_not_satisfiable",
     {"Content-Range": "bytes */10"}),
    (errors.RateLimited("slow", retry_after=7), 429, "rate_limited", {"Retry-After": "7"}),
    (errors.StoreUnavailable("down"), 503, "store_unavailable", {}),
    (errors.Busy("held", retry_after=2), 503, "upload_busy", {"Retry-After": "2"}),
    (errors.StorageFull("full"), 507, "insufficient_storage", {}),
    (web.HTTPNotFound(), 404, "not_found", {}),
    (web.HTTPMethodNotAllowed("PUT", ["GET"]), 405, "method_not_allowed", {"Allow": "GET"}),
    (web.HTTPRequestEntityTooLarge(100, 200), 413, "body_too_large", {}),
    (web.HTTPTooManyRequests(), 429, "http_error", {}),
    (ConnectionResetError("gone"), 400, "incomplete_body", {}),
    (asyncio.IncompleteReadError(b"", 10), 400, "incomplete_body", {}),
    (web.RequestPayloadError("bad chunk"), 400, "incomplete_body", {}),
    (ContentLengthError("short"), 400, "incomplete_body", {}),
    (TransferEncodingError("bad"), 400, "incomplete_body", {}),
    (RuntimeError("a bug"), 500, "internal_error", {}),
]


async def _serve(aiohttp_client, relay: Relay, handler):  # type: ignore[no-untyped-def]
    app = web.Application(
        middlewares=[access_log_middleware, metrics_middleware, error_middleware]
    )
    app[RELAY_KEY] = relay
    app.router.add_post("/v1/things/{id}", handler)
    return await aiohttp_client(app)


@pytest.mark.parametrize("exc, status, code, headers", CASES,
                         ids=[f"{type(c[0]).__name__}-{c[1]}" for c in CASES])
async def test_error_answers(aiohttp_client, relay: Relay, exc: BaseException,  # type: ignore[no-untyped-def]
                             status: int, code: str, headers: dict[str, str]) -> None:
    client = await _serve(aiohttp_client, relay, _raising(exc))
    resp = await client.post("/v1/things/abc")
    body = json.loads(await resp.read())
    assert resp.status == status and body["code"] == code
    assert isinstance(body["error"], str) and body["error"] == body["error"].strip()
    assert resp.headers["Cache-Control"] == "no-store"
    for name, value in headers.items():
        assert resp.headers[name] == value
    if "Upload-Offset" not in headers:
        assert "Upload-Offset" not in resp.headers
    # the metrics middleware counted the answer the error middleware made
    assert relay.metrics.value("sealdrop_http_requests_total", method="POST",
                               route="/v1/things/{id}", status=str(status)) == 1
    assert relay.metrics.value("sealdrop_internal_errors_total") == (1 if status == 500 else 0)


async def test_internal_error_hides_the_exception(aiohttp_client, relay: Relay) -> None:  # type: ignore[no-untyped-def]
    client = await _serve(aiohttp_client, relay, _raising(RuntimeError("secret detail")))
    resp = await client.post("/v1/things/abc")
    assert resp.status == 500 and b"secret detail" not in await resp.read()


async def test_access_log_records_every_answer(aiohttp_client, relay: Relay,  # type: ignore[no-untyped-def]
                                               caplog: pytest.LogCaptureFixture) -> None:
    async def ok(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    client = await _serve(aiohttp_client, relay, ok)
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    await client.post("/v1/things/abc")
    await client.get("/nowhere")
    lines = [r.fields for r in caplog.records if r.getMessage() == "request"]  # type: ignore[attr-defined]
    assert [(f["method"], f["route"], f["status"]) for f in lines] == [
        ("POST", "/v1/things/{id}", 204), ("GET", "unmatched", 404)]
    assert all(isinstance(f["duration_s"], float) for f in lines)


async def test_redirects_pass_through(aiohttp_client, relay: Relay) -> None:  # type: ignore[no-untyped-def]
    client = await _serve(aiohttp_client, relay, _raising(web.HTTPFound("/elsewhere")))
    resp = await client.post("/v1/things/abc", allow_redirects=False)
    assert resp.status == 302
    assert relay.metrics.value("sealdrop_http_requests_total", method="POST",
                               route="/v1/things/{id}", status="302") == 1


def test_http_layer_codes_are_not_protocol_codes() -> None:
    assert not {c.value for c in HttpCode} & {c.value for c in ErrorCode}
