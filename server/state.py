"""The relay's per-application state, reached from handlers through one typed key."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from .blobs import BlobStore
from .clientaddr import Network
from .config import RelayConfig
from .leases import Leases
from .locks import TransferLocks
from .logkey import LogSigner
from .metadata import SqlMetadataStore
from .metrics import Metrics
from .ratelimit import AddressBuckets, RateLimit


@dataclass(slots=True, kw_only=True)
class Relay:
    config: RelayConfig
    store: SqlMetadataStore
    blobs: BlobStore
    logger: logging.Logger
    metrics: Metrics
    limiter: RateLimit  # its buckets are rows of the database (server.ratelimit)
    # Orders this process's requests for one transfer; ``leases`` excludes the
    # other processes' (server.locks).
    locks: TransferLocks = field(default_factory=TransferLocks)
    clock: Callable[[], float] = time.time
    trusted_proxies: tuple[Network, ...] = ()  # parsed config.trusted_proxies
    # The transparency log's key and origin (server.logkey); set at start,
    # once the relay id is known.
    log: LogSigner | None = None
    leases: Leases = field(init=False)
    # Registrations by client address: in memory, never stored (server.ratelimit).
    registrations: AddressBuckets = field(init=False)

    def __post_init__(self) -> None:
        self.leases = Leases(self.store, self.clock)
        self.registrations = AddressBuckets(self.limiter)

    @property
    def upload_leases(self) -> Leases | None:
        """The upload leases, where other processes may write this relay's
        uploads (PostgreSQL); None on SQLite, one process per database."""
        return None if self.config.is_sqlite else self.leases

    def now(self) -> int:
        return int(self.clock())


CONFIG_KEY = web.AppKey("config", RelayConfig)
RELAY_KEY = web.AppKey("relay", Relay)
