"""Where the metadata store's transactions run: each is one synchronous function
over a SQLAlchemy ``Connection``, run whole, in one hop.

Why (measured for issue 17, ``scripts/bench_relay``): SQLAlchemy's async engine
over aiosqlite cost ~0.8 ms of CPU per statement (a greenlet switch, a handoff
to aiosqlite's thread and back, futex churn), against ~0.1 ms for synchronous
Core and ~0.02 ms for the sqlite3 module itself; a small transfer runs ~30
statements. So on SQLite one dedicated thread owns the connection and a whole
transaction (its statements and its commit) is one submission to it. That one
thread also serialises this process's writers, so they never sleep in SQLite's
busy handler waiting for each other; other processes (``sealdrop-relay``
commands, a second relay) still wait on the busy timeout as before.

PostgreSQL keeps its async engine: the same function runs in the engine's
greenlet (``AsyncConnection.run_sync``), each statement one round trip on
asyncpg's pool, as before.

Durability is the caller's to choose per write: ``synced=False`` commits
without waiting for the disk (SQLite ``synchronous=NORMAL`` for that commit,
PostgreSQL ``synchronous_commit=off``); every other commit is synced (SQLite
``synchronous=FULL``, the connection's setting). Database failures become
``StoreUnavailable`` here, as ``server.dbfail`` does for the async engine.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

from .dbfail import CLIENT_MESSAGE, GuardedEngine, unavailable_on_failure
from .errors import RelayError, StoreUnavailable

T = TypeVar("T")

Work = Callable[[sa.Connection], T]


class Runner(Protocol):
    async def read(self, fn: Work[T]) -> T:
        """Run ``fn`` on a connection outside any write transaction."""
        ...

    async def write(self, fn: Work[T], *, synced: bool = True) -> T:
        """Run ``fn`` in one transaction, committed when it returns, rolled back
        when it raises."""
        ...

    async def reset(self) -> None:
        """Let go of every open connection (the next transaction opens one)."""
        ...

    async def close(self) -> None: ...


class AsyncRunner:
    """On the async engine (PostgreSQL; SQLite in memory, which one connection
    of a second engine could not see): ``run_sync`` inside ``server.dbfail``'s guard."""

    def __init__(self, engine: GuardedEngine) -> None:
        self._engine = engine

    async def read(self, fn: Work[T]) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(fn)

    async def write(self, fn: Work[T], *, synced: bool = True) -> T:
        async with self._engine.begin() as conn:
            # (SQLite here is a database in memory: nothing to sync either way.)
            if not synced and conn.dialect.name != "sqlite":
                await conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return await conn.run_sync(fn)

    async def reset(self) -> None:
        return None

    async def close(self) -> None:
        return None


# What a lane's thread is asked to do, and the future its answer settles.
_Job = tuple["asyncio.Future[Any]", Callable[[], Any]]

# At most this many answers wait on a busy reader thread to be handed back together.
_ANSWER_BATCH = 16


def _settle(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, exc in answers:
        if fut.cancelled():
            continue  # the caller left; the transaction ran all the same
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)


class _Lane:
    """One thread and the one connection it holds open.

    Why not ``run_in_executor``: measured on ``scripts/bench_relay``, its
    futures, chained callbacks and a wake-up of the event loop per call cost
    more CPU than the SQL of a short read, and the check-out and check-in of a
    pooled connection per transaction a sixth of the thread's time. Here a
    job is a queue entry, and a reader thread that has more jobs waiting hands
    back up to ``_ANSWER_BATCH`` answers with one wake-up (a writer answers
    at once: each commit is worth its own wake-up)."""

    def __init__(self, engine: sa.Engine, name: str, *, batch: bool) -> None:
        self._engine = engine
        self._batch = batch
        self._held: sa.Connection | None = None  # used on the thread only
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # A daemon: a command that never closes its store still exits; SQLite
        # rolls back whatever a killed thread left uncommitted.
        self._thread = threading.Thread(
            target=self._serve, name=f"sealdrop-sqlite-{name}", daemon=True
        )
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fut, fn))
        return fut

    async def stop(self) -> None:
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, fn = job
            try:
                answers.append((fut, fn(), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                answers.append((fut, None, exc))
            if not self._batch or len(answers) >= _ANSWER_BATCH or self._jobs.empty():
                self._hand_back(answers)
                answers = []

    @staticmethod
    def _hand_back(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for answer in answers:  # one loop in practice; tests may run several
            by_loop.setdefault(answer[0].get_loop(), []).append(answer)
        for target, mine in by_loop.items():
            try:
                target.call_soon_threadsafe(_settle, mine)
            except RuntimeError:
                pass  # that loop is closed: nobody waits for these answers

    def connection(self) -> sa.Connection:
        if self._held is None:
            self._held = self._engine.connect()
        return self._held

    def drop(self) -> None:
        """Close the held connection (after a failure, or to let go of the file)."""
        held, self._held = self._held, None
        if held is not None:
            try:
                held.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                held.invalidate()


class SqliteRunner:
    """Two threads on the SQLite file (``db.sqlite_twin``), each holding one
    connection: a transaction is one hop to a thread and back, whatever the
    number of its statements. Writes run one at a time on the writer thread;
    reads on the reader thread, so they never queue behind a synced commit's
    fsync (~3.7 ms here): WAL lets them read the last commit meanwhile."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._reads = _Lane(engine, "read", batch=True)
        self._writes = _Lane(engine, "write", batch=False)

    async def read(self, fn: Work[T]) -> T:
        return await self._run(self._reads.submit(lambda: self._read(self._reads, fn)))

    async def write(self, fn: Work[T], *, synced: bool = True) -> T:
        return await self._run(self._writes.submit(lambda: self._write(self._writes, fn, synced)))

    async def reset(self) -> None:
        for lane in (self._reads, self._writes):
            await lane.submit(lane.drop)
        self._engine.dispose()

    async def close(self) -> None:
        await self.reset()
        for lane in (self._reads, self._writes):
            await lane.stop()

    @staticmethod
    async def _run(answer: asyncio.Future[T]) -> T:
        # Not cancelled with the caller: once submitted, the transaction runs to
        # its commit or rollback on the thread, like a request whose client left.
        with unavailable_on_failure():
            return await answer

    @staticmethod
    def _read(lane: _Lane, fn: Work[T]) -> T:
        conn = lane.connection()
        try:
            out = fn(conn)
            # Ends the transaction SQLAlchemy began for the reads (pysqlite
            # begins none for a SELECT, so each statement reads the last commit).
            conn.rollback()
            return out
        except BaseException:
            lane.drop()  # after any failure, the next transaction starts afresh
            raise

    @classmethod
    def _write(cls, lane: _Lane, fn: Work[T], synced: bool) -> T:
        conn = lane.connection()
        try:
            if synced:
                with conn.begin():
                    return fn(conn)
            return cls._unsynced(conn, fn)
        except RelayError:
            raise  # a refusal: rolled back, the connection is fine
        except BaseException:
            lane.drop()
            raise

    @staticmethod
    def _unsynced(conn: sa.Connection, fn: Work[T]) -> T:
        # The durability setting is the connection's, so it is set around the
        # transaction on the driver connection: a setting, not a statement
        # of the transaction (and no commit of its own).
        raw = conn.connection.driver_connection
        if raw is None:  # never, for a connection checked out of the pool
            raise StoreUnavailable(CLIENT_MESSAGE)
        raw.execute("PRAGMA synchronous=NORMAL")
        try:
            with conn.begin():
                return fn(conn)
        finally:
            try:
                raw.execute("PRAGMA synchronous=FULL")
            except BaseException:
                # Never hand on a connection whose commits would not be synced.
                conn.invalidate()
                raise
