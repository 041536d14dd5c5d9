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

The same transaction reads back the accounts of the requests in the batch
(``remember_as``: one indexed query per batch), so the relay's cache of
signing keys (``server.keycache``) is checked against the database in the
very transaction that lets the request act: an account disabled, or a handle
whose key changed, is refused however it got into the cache. It also spends
the accounts' rate-limit tokens (``server.ratelimit``): one statement per
account in the batch, no commit of its own; an account with ``n`` requests
in the batch asks for ``n`` tokens, and the first ones in arrival order get
those granted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# An account as the batch's transaction saw it: (signing key, disabled,
# whether its rate limit let this request through).
AccountState = tuple[str, bool, bool]

# Stores a batch of (nonce, expires_at) in one transaction and returns the
# nonces it inserted (those not already stored); in the same transaction it
# reads the accounts of the handles given, each with how many requests of
# the batch it signed, and answers (signing key, disabled, how many of those
# requests its rate limit grants) for those that exist.
StoreBatch = Callable[
    [list[tuple[str, int]], dict[str, int]],
    Awaitable[tuple[set[str], dict[str, tuple[str, bool, int]]]],
]

# What one waiter learns: whether its nonce was fresh, and its account's state
# (None: no handle asked for, or no such account).
_Answer = tuple[bool, AccountState | None]

# Bound on one batch, so one statement stays well within every database's
# limit on bound parameters (SQLite's default is 32766; two per row).
MAX_BATCH = 500


class NonceBatcher:
    """``remember(nonce, expires_at)``: True the first time, False for a replay.
    ``remember_as(..., handle)`` also answers the account's state as of that commit."""

    def __init__(self, store_batch: StoreBatch) -> None:
        self._store_batch = store_batch
        self._pending: list[tuple[str, int, str | None, asyncio.Future[_Answer]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def remember(self, nonce: str, *, expires_at: int) -> bool:
        fresh, _ = await self._enqueue(nonce, expires_at, None)
        return fresh

    async def remember_as(
        self, nonce: str, *, expires_at: int, handle: str
    ) -> tuple[bool, AccountState | None]:
        return await self._enqueue(nonce, expires_at, handle)

    async def _enqueue(self, nonce: str, expires_at: int, handle: str | None) -> _Answer:
        fut: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._pending.append((nonce, expires_at, handle, fut))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        # Shielded: a request cancelled while it waits (the client went away)
        # must not cancel the batch that the other requests wait for.
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            first: dict[str, int] = {}
            handles: dict[str, int] = {}
            for nonce, expires_at, handle, _ in batch:
                first.setdefault(nonce, expires_at)
                if handle is not None:
                    handles[handle] = handles.get(handle, 0) + 1
            try:
                fresh, states = await self._store_batch(list(first.items()), handles)
            except BaseException as exc:  # noqa: BLE001 - each waiter gets the failure
                for _, _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            granted = {h: state[2] for h, state in states.items()}
            for nonce, _, handle, fut in batch:
                # The first waiter of a nonce the database took gets True; a
                # second use of it in the same batch is a replay like any other.
                accepted = nonce in fresh
                fresh.discard(nonce)
                answer: AccountState | None = None
                if handle is not None and handle in states:
                    key, disabled, _ = states[handle]
                    # The first requests of the account in the batch get its tokens.
                    answer = (key, disabled, granted[handle] > 0)
                    granted[handle] -= 1
                if not fut.done():
                    fut.set_result((accepted, answer))
