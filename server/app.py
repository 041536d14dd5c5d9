"""The application factory: ``create_app(config)``.

Resources (database engine, blob store, background reaper) are opened and
closed in one ``cleanup_ctx`` generator; handlers reach them through the typed
``RELAY_KEY``. The error middleware is the only place that turns exceptions
into HTTP answers, always as ``{"error": ..., "code": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from . import ops
from .blobs import BlobStore, LocalBlobStore
from .config import RelayConfig
from .db import make_engine, migrate
from .errors import RelayError
from .logs import LOGGER_NAME
from .metadata import SqlMetadataStore
from .metrics import Metrics
from .ratelimit import TokenBuckets
from .routes import setup_routes
from .state import CONFIG_KEY, RELAY_KEY, Relay

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "body_too_large",
    415: "bad_content_type",
}


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": message, "code": code},
        status=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


_PAYLOAD_ERRORS = ("ClientPayloadError", "PayloadEncodingError", "ContentLengthError")


def _disconnected(relay: Relay, exc: BaseException) -> None:
    relay.logger.info("client_disconnected", extra={"fields": {"exception": type(exc).__name__}})


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    relay = request.app[RELAY_KEY]
    started = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except RelayError as exc:
        status = exc.status
        return _error(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, code, exc.reason.lower(), headers)
    except (ConnectionResetError, asyncio.IncompleteReadError) as exc:
        status = 400
        _disconnected(relay, exc)
        return _error(400, "incomplete_body", "the request body ended early")
    except Exception as exc:
        if type(exc).__name__ in _PAYLOAD_ERRORS:
            status = 400
            _disconnected(relay, exc)
            return _error(400, "incomplete_body", "the request body ended early or is malformed")
        relay.metrics.inc("sealdrop_internal_errors_total")
        relay.logger.error(
            "internal_error", exc_info=True, extra={"fields": {"route": _route_name(request)}}
        )
        return _error(500, "internal_error", "internal error; the relay operator can see the log")
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        relay.metrics.inc(
            "sealdrop_http_requests_total", method=request.method, route=route, status=str(status)
        )
        relay.metrics.observe("sealdrop_http_request_duration_seconds", elapsed, route=route)
        relay.logger.info(
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "duration_s": round(elapsed, 4),
                }
            },
        )


def _context(
    config: RelayConfig, clock: Callable[[], float], blobs: BlobStore | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(config.db_url)
        store = SqlMetadataStore(engine)
        local = LocalBlobStore(config.blob_dir)
        local.create_dirs()
        relay = Relay(
            config=config,
            store=store,
            blobs=blobs if blobs is not None else local,
            logger=logging.getLogger(LOGGER_NAME),
            metrics=Metrics(),
            limiter=TokenBuckets(rate=config.rate_per_second, burst=config.rate_burst),
            clock=clock,
        )
        try:
            await migrate(engine)
            repaired = await ops.recover(store, relay.blobs)
            if repaired:
                relay.logger.warning(
                    "recovered_partial_uploads", extra={"fields": {"count": repaired}}
                )
            app[RELAY_KEY] = relay
            reaper = asyncio.create_task(_reaper(relay))
            try:
                yield
            finally:
                reaper.cancel()
                try:
                    await reaper
                except asyncio.CancelledError:
                    pass
        finally:
            await engine.dispose()

    return ctx


async def _reaper(relay: Relay) -> None:
    """Background gc: expired transfers, abandoned uploads, old nonces."""
    while True:
        await asyncio.sleep(relay.config.gc_interval_seconds)
        try:
            report = await ops.gc(relay.store, relay.blobs, relay.config, now=relay.now())
            relay.metrics.inc("sealdrop_transfers_deleted_total", len(report.deleted), reason="gc")
            relay.logger.info("gc", extra={"fields": report.counts()})
        except Exception:
            relay.logger.error("gc_failed", exc_info=True)


def create_app(
    config: RelayConfig,
    *,
    clock: Callable[[], float] = time.time,
    blobs: BlobStore | None = None,
) -> web.Application:
    """The relay application. ``clock`` and ``blobs`` are for tests (time travel,
    fault injection); production passes only the configuration."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=config.max_json_bytes,
    )
    app[CONFIG_KEY] = config
    setup_routes(app)
    app.cleanup_ctx.append(_context(config, clock, blobs))
    return app
