"""Group commit for request nonces: the nonces of concurrent requests are
remembered in one synced transaction instead of one each.

Why: every signed request stores its nonce before it acts (docs/protocol.md,
"Signed requests"), and that row must survive a power loss, or a request
captured in the last moments before it could be replayed after the restart.
So each nonce commit is synced (SQLite ``synchronous=FULL``: an fsync of the
WAL, ~2 ms on the reference machine, under the database's one write lock).
One such commit per request capped ``scripts/bench_relay``: five requests a
transfer, five fsyncs in a row. Requests that arrive while a batch is being
committed wait for the next batch, which takes all of them: under load one
fsync covers tens of requests; an idle relay commits a batch of one, exactly as
before. Nothing is answered before its nonce's batch is committed.

A nonce listed twice in one batch, or already stored, is a replay: only its
first use in the database's order is accepted (``INSERT ... ON CONFLICT DO
NOTHING RETURNING``, so several relay processes sharing PostgreSQL agree).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# Stores a batch of (nonce, expires_at) in one transaction and returns the
# nonces it inserted (those not already stored).
StoreBatch = Callable[[list[tuple[str, int]]], Awaitable[set[str]]]

# Bound on one batch, so one statement stays well within every database's
# limit on bound parameters (SQLite's default is 32766; two per row).
MAX_BATCH = 500


class NonceBatcher:
    """``remember(nonce, expires_at)``: True the first time, False for a replay."""

    def __init__(self, store_batch: StoreBatch) -> None:
        self._store_batch = store_batch
        self._pending: list[tuple[str, int, asyncio.Future[bool]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def remember(self, nonce: str, *, expires_at: int) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((nonce, expires_at, fut))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        # Shielded: a request cancelled while it waits (the client went away)
        # must not cancel the batch that the other requests wait for.
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            first: dict[str, int] = {}
            for nonce, expires_at, _ in batch:
                first.setdefault(nonce, expires_at)
            try:
                fresh = await self._store_batch(list(first.items()))
            except BaseException as exc:  # noqa: BLE001 - each waiter gets the failure
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for nonce, _, fut in batch:
                # The first waiter of a nonce the database took gets True; a
                # second use of it in the same batch is a replay like any other.
                accepted = nonce in fresh
                fresh.discard(nonce)
                if not fut.done():
                    fut.set_result(accepted)
