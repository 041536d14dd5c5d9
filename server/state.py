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
from .locks import TransferLocks
from .metadata import SqlMetadataStore
from .metrics import Metrics
from .ratelimit import TokenBuckets


@dataclass(slots=True, kw_only=True)
class Relay:
    config: RelayConfig
    store: SqlMetadataStore
    blobs: BlobStore
    logger: logging.Logger
    metrics: Metrics
    limiter: TokenBuckets
    locks: TransferLocks = field(default_factory=TransferLocks)
    clock: Callable[[], float] = time.time
    trusted_proxies: tuple[Network, ...] = ()  # parsed config.trusted_proxies

    def now(self) -> int:
        return int(self.clock())


CONFIG_KEY = web.AppKey("config", RelayConfig)
RELAY_KEY = web.AppKey("relay", Relay)
