"""Database failures at the store boundary: an unreachable database is the
domain's ``StoreUnavailable`` (HTTP 503 ``store_unavailable``), not a 500.

``guard`` wraps a connection's context so that whatever the driver raises
while connecting, or when the connection dies mid-transaction, surfaces as
one error with a message safe to send to a client. ``describe`` gives the
operator the one-line cause (never the URL, which may hold a password).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .errors import RelayError, StoreUnavailable

C = TypeVar("C")

CLIENT_MESSAGE = "the relay's database is unreachable; try again in a few minutes"


def _asyncpg_unreachable() -> tuple[type[BaseException], ...]:
    """What asyncpg raises when the server is not there, refuses us, or is
    starting or shutting down; matched with ``isinstance``, never by class name.
    Imported when a failure is judged: a relay on SQLite never loads the driver."""
    from asyncpg import exceptions as pg

    return (
        pg.PostgresConnectionError,  # and its subclasses: the connection failed or broke
        pg.CannotConnectNowError,
        pg.AdminShutdownError,
        pg.CrashShutdownError,
        pg.InvalidCatalogNameError,  # the database does not exist
        pg.InvalidAuthorizationSpecificationError,  # no such role, pg_hba refuses, password
        pg.TooManyConnectionsError,
        pg.ClientConfigurationError,  # e.g. a TLS root certificate it cannot read
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 8:
        seen.append(cur)
        cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
    return seen


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be used now (not a bad query)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    asyncpg_unreachable = _asyncpg_unreachable()
    for e in _chain(exc):
        if isinstance(e, sa.exc.IntegrityError | sa.exc.ProgrammingError):
            return False
        if isinstance(e, OSError | TimeoutError | asyncio.TimeoutError):
            return True
        if isinstance(e, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
            return True
        if isinstance(e, asyncpg_unreachable):
            return True
        if isinstance(e, sa.exc.ResourceClosedError):
            return True
    return False


def describe(exc: BaseException) -> str:
    """The innermost cause on one line, for the operator."""
    inner = _chain(exc)[-1]
    text = " ".join(str(inner).split()) or type(inner).__name__
    return text[:200]


@contextmanager
def unavailable_on_failure() -> Iterator[None]:
    """Database failures inside become ``StoreUnavailable``; every other error
    passes unchanged."""
    try:
        yield
    except RelayError:
        raise
    except Exception as exc:
        if is_unreachable(exc):
            raise StoreUnavailable(CLIENT_MESSAGE) from exc
        raise


@asynccontextmanager
async def guard(cm: AbstractAsyncContextManager[C]) -> AsyncIterator[C]:
    """``async with guard(engine.begin()) as conn``: database failures become
    ``StoreUnavailable``; every other error passes unchanged."""
    with unavailable_on_failure():
        async with cm as conn:
            yield conn


class GuardedEngine:
    """The metadata store's engine: the same ``connect``/``begin`` as
    ``AsyncEngine``, each through ``guard``, so every store method, present or
    future, maps a dead database to ``StoreUnavailable`` in one place."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.raw = engine
        # Whatever else holds connections to the same database (the store's
        # SQLite thread) lets go of them too when the engine is disposed.
        self.on_dispose: list[Callable[[], Awaitable[None]]] = []

    def connect(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return guard(self.raw.connect())

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return guard(self.raw.begin())

    async def dispose(self) -> None:
        for hook in self.on_dispose:
            await hook()
        await self.raw.dispose()

    @property
    def url(self) -> sa.URL:
        return self.raw.url

    @property
    def dialect(self) -> sa.Dialect:
        return self.raw.dialect

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)
