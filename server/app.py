"""The application factory: ``create_app(config)``.

Resources (database engine, blob store, background reaper) are opened and
closed in one ``cleanup_ctx`` generator; handlers reach them through the typed
``RELAY_KEY``. The middlewares (``server.middleware``) log, count and turn
exceptions into HTTP answers, always as ``{"error": ..., "code": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from . import binding, ops
from .blobs import BlobStore
from .blobstores import blob_store
from .clientaddr import networks
from .config import RelayConfig
from .db import count_work, make_engine
from .logkey import open_relay_log
from .logs import LOGGER_NAME
from .metadata import SqlMetadataStore
from .metrics import Metrics
from .middleware import access_log_middleware, error_middleware, metrics_middleware
from .ratelimit import RateLimit
from .routes import setup_routes
from .state import CONFIG_KEY, RELAY_KEY, Relay


def _context(
    config: RelayConfig, clock: Callable[[], float], blobs: BlobStore | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        chosen = blobs if blobs is not None else blob_store(config)
        await chosen.open()  # S3: a missing bucket or refused credentials stop here
        try:
            await chosen.prepare()
            async for _ in _serve(app, config, clock, chosen):
                yield
        finally:
            await chosen.close()

    return ctx


async def _serve(
    app: web.Application, config: RelayConfig, clock: Callable[[], float], blobs: BlobStore
) -> AsyncIterator[None]:
    """The relay on an open blob store: database, binding, recovery, reaper."""
    engine = make_engine(config.db_url)
    store = SqlMetadataStore(engine)
    relay = Relay(
        config=config,
        store=store,
        blobs=blobs,
        logger=logging.getLogger(LOGGER_NAME),
        metrics=Metrics(routes=_route_table(app)),
        limiter=RateLimit(rate=config.rate_per_second, burst=config.rate_burst),
        clock=clock,
        trusted_proxies=networks(config.trusted_proxies),
    )
    # Signed requests spend their account's token with their nonce.
    store.rate_limit, store.rate_clock = relay.limiter, clock
    count_work(
        engine,
        statement=lambda: relay.metrics.inc("sealdrop_db_statements_total"),
        commit=lambda: relay.metrics.inc("sealdrop_db_commits_total"),
    )
    try:
        # Refuse a schema this code does not know; only `db upgrade` migrates.
        await binding.require_schema(engine, blobs)
        # Before anything reads or repairs blobs: refuse a database that is
        # not this blob store's (a brand-new relay is bound here).
        await binding.bind(store, blobs, adopt=False)
        await _open_log(relay)
        repaired = await ops.recover(store, relay.blobs, relay.upload_leases)
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
        await store.close()  # its SQLite thread, then the engine


async def _open_log(relay: Relay) -> None:
    """The transparency log's key (made if missing: every process on the
    database must then be given that same file) and a key entry for every
    account registered before the relay kept a log."""
    cfg = relay.config
    relay.log, made = await open_relay_log(relay.store, cfg.log_origin, cfg.log_key_path)
    if made:
        relay.logger.warning("log_key_created", extra={"fields": {
            "path": str(cfg.log_key_path), "origin": relay.log.origin}})
    logged = await relay.store.log_unlogged_accounts(now=relay.now())
    if logged:
        relay.logger.info("log_accounts_backfilled", extra={"fields": {"count": logged}})


def _route_table(app: web.Application) -> list[tuple[str, str]]:
    """(method, route template) of every route: the label sets counted from zero."""
    return [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    ]


async def _reaper(relay: Relay) -> None:
    """Background gc: expired transfers, abandoned uploads, old nonces, full
    rate buckets; one gc at a time across every process on the database."""
    while True:
        await asyncio.sleep(relay.config.gc_interval_seconds)
        try:
            report = await ops.gc_as_leader(
                relay.store, relay.blobs, relay.config, now=relay.now(), locks=relay.locks,
                leases=relay.leases,
            )
            if report is None:
                # Another process (or `sealdrop-relay gc`) runs it: this round is theirs.
                relay.logger.info("gc_skipped", extra={"fields": {"reason": "another_gc"}})
                continue
            relay.metrics.inc("sealdrop_transfers_deleted_total", len(report.deleted), reason="gc")
            relay.logger.info("gc", extra={"fields": report.counts()})
        except Exception:
            relay.logger.error("gc_failed", exc_info=True)


def make_runner(app: web.Application) -> web.AppRunner:
    """The runner that serves ``app`` with the configured header timeout.

    aiohttp arms its keep-alive timer when a connection opens and again after
    each answer, and closes the connection if no complete request line and
    headers have arrived when it fires: so ``keepalive_timeout`` is the header
    timeout (a client dribbling its headers, slowloris, is cut off), and also
    how long an idle keep-alive connection stays open. Body timeouts are the
    handlers' (``server.http_parse``)."""
    config = app[CONFIG_KEY]
    return web.AppRunner(
        app, access_log=None, handle_signals=False,
        keepalive_timeout=config.header_timeout_seconds,
    )


def create_app(
    config: RelayConfig,
    *,
    clock: Callable[[], float] = time.time,
    blobs: BlobStore | None = None,
) -> web.Application:
    """The relay application. ``clock`` and ``blobs`` are for tests (time travel,
    fault injection); production passes only the configuration."""
    app = web.Application(
        # Outermost first: the log and the metrics see the error middleware's answers.
        middlewares=[access_log_middleware, metrics_middleware, error_middleware],
        client_max_size=config.max_json_bytes,
    )
    app[CONFIG_KEY] = config
    setup_routes(app)
    app.cleanup_ctx.append(_context(config, clock, blobs))
    return app
