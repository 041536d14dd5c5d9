"""The store's SQLite thread (server.sqlrun): durability settings around an
unsynced commit, rollback on a refusal, the work counted on the async engine,
a database that cannot be opened as ``store_unavailable``, and concurrent
writers of two stores on one file without "database is locked"."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from sealdrop.server import schema
from sealdrop.server.db import count_work, make_engine, nonces, sqlite_twin
from sealdrop.server.errors import Conflict, StoreUnavailable
from sealdrop.server.metadata import SqlMetadataStore
from sealdrop.server.sqlrun import SqliteRunner

from .test_migration_0002 import _url

FULL, NORMAL = 2, 1  # PRAGMA synchronous


def _synchronous(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())


def _nonce_count(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(nonces)).scalar_one())


async def _migrated(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    engine = make_engine(url)
    try:
        await schema.upgrade(engine)
    finally:
        await engine.dispose()
    return url


def test_an_unsynced_commit_leaves_the_connection_synced(tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(await _migrated(tmp_path / "r.db"))
        runner = SqliteRunner(sqlite_twin(engine))
        try:
            assert await runner.write(_synchronous) == FULL
            assert await runner.write(_synchronous, synced=False) == NORMAL
            assert await runner.write(_synchronous) == FULL
            assert await runner.read(_synchronous) == FULL

            def fails(conn: sa.Connection) -> None:
                assert _synchronous(conn) == NORMAL
                raise Conflict("refused")

            with pytest.raises(Conflict):
                await runner.write(fails, synced=False)
            assert await runner.write(_synchronous) == FULL
        finally:
            await runner.close()
            await engine.dispose()

    asyncio.run(run())


def test_a_refusal_rolls_the_whole_transaction_back(tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(await _migrated(tmp_path / "r.db"))
        runner = SqliteRunner(sqlite_twin(engine))
        try:
            def insert_then_refuse(conn: sa.Connection) -> None:
                conn.execute(sa.insert(nonces).values(nonce="n1", expires_at=9))
                raise Conflict("refused after a write")

            for synced in (True, False):
                with pytest.raises(Conflict):
                    await runner.write(insert_then_refuse, synced=synced)
                assert await runner.read(_nonce_count) == 0
            # The connection is still good for the next transaction.
            await runner.write(
                lambda c: c.execute(sa.insert(nonces).values(nonce="n2", expires_at=9))
            )
            assert await runner.read(_nonce_count) == 1
        finally:
            await runner.close()
            await engine.dispose()

    asyncio.run(run())


def test_the_work_is_counted_on_the_async_engine(tmp_path: Path) -> None:
    """``count_work`` listens on the engine the app made; the store's SQLite
    thread runs on its twin, whose statements and commits still reach it."""

    async def run() -> None:
        store = SqlMetadataStore.open(await _migrated(tmp_path / "r.db"))
        counts = {"statements": 0, "commits": 0}

        def inc(key: str) -> None:
            counts[key] += 1

        count_work(store.engine.raw, statement=lambda: inc("statements"),
                   commit=lambda: inc("commits"))
        try:
            assert await store.remember_nonce("a" * 32, expires_at=10)
            assert counts == {"statements": 1, "commits": 1}
            assert await store.get_account("nobody") is None
            assert counts == {"statements": 2, "commits": 1}
            assert not await store.remember_nonce("a" * 32, expires_at=10)  # a replay
            assert counts == {"statements": 3, "commits": 2}
        finally:
            await store.close()

    asyncio.run(run())


def test_a_database_that_cannot_be_opened_is_store_unavailable(tmp_path: Path) -> None:
    async def run() -> None:
        path = tmp_path / "r.db"
        store = SqlMetadataStore.open(await _migrated(path))
        try:
            assert await store.get_account("nobody") is None
            # The file is gone and a directory stands at its path; the store lets
            # go of its connection, as after a failure, and cannot open another.
            for suffix in ("", "-wal", "-shm"):
                p = Path(f"{path}{suffix}")
                if p.exists():
                    p.rename(f"{p}.away")
            path.mkdir()
            await store.engine.dispose()
            with pytest.raises(StoreUnavailable):
                await store.get_account("nobody")
            with pytest.raises(StoreUnavailable):
                await store.remember_nonce("b" * 32, expires_at=10)
            # Back: the next transaction opens a connection again.
            path.rmdir()
            for suffix in ("", "-wal", "-shm"):
                away = Path(f"{path}{suffix}.away")
                if away.exists():
                    away.rename(f"{path}{suffix}")
            assert await store.remember_nonce("b" * 32, expires_at=10)
        finally:
            await store.close()

    asyncio.run(run())


def test_two_stores_on_one_file_write_concurrently_without_locked_errors(
    tmp_path: Path,
) -> None:
    """Two relay processes sharing one SQLite file, as two stores (two threads,
    two connections): every synced and unsynced write succeeds, none is lost;
    one store's writers never wait on the busy handler for each other."""

    async def run() -> None:
        url = await _migrated(tmp_path / "r.db")
        a, b = SqlMetadataStore.open(url), SqlMetadataStore.open(url)
        try:
            async def one(store: SqlMetadataStore, i: int) -> bool:
                return await store.remember_nonce(f"{i:032x}", expires_at=10)

            got = await asyncio.gather(
                *(one(a if i % 2 else b, i) for i in range(400)),
                *(a.purge_nonces(0) for _ in range(20)),
            )
            assert all(got[:400])
            assert await a._run.read(_nonce_count) == 400
            # A nonce both stores saw: exactly one of them accepted it.
            twice = await asyncio.gather(one(a, 10_000), one(b, 10_000))
            assert sorted(twice) == [False, True]
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_a_cancelled_caller_leaves_the_transaction_whole(tmp_path: Path) -> None:
    """A request cancelled while its transaction runs (the client went away):
    the transaction still commits or rolls back whole, and the store goes on."""

    async def run() -> None:
        engine = make_engine(await _migrated(tmp_path / "r.db"))
        runner = SqliteRunner(sqlite_twin(engine))
        try:
            started = asyncio.Event()
            loop = asyncio.get_running_loop()

            def slow_insert(conn: sa.Connection) -> None:
                loop.call_soon_threadsafe(started.set)
                conn.execute(sa.insert(nonces).values(nonce="c1", expires_at=9))
                time.sleep(0.2)
                conn.execute(sa.insert(nonces).values(nonce="c2", expires_at=9))

            task = asyncio.create_task(runner.write(slow_insert))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await runner.write(_nonce_count) == 2  # after it, on the same thread
            assert await runner.read(_nonce_count) == 2
        finally:
            await runner.close()
            await engine.dispose()

    asyncio.run(run())


def test_senders_in_a_ring_create_concurrently_without_deadlock(
    db_url: str, tmp_path: Path
) -> None:
    """Ten accounts each sending to the next, all at once: each create locks its
    sender for the quota check while the foreign keys of the others' transfers
    point at that same row. On PostgreSQL a FOR UPDATE there deadlocked
    (``bench_relay``: 5 of 200 creates answered 500); every create must pass,
    and the quota still counts every one of them."""

    async def run() -> None:
        url = _url(db_url, tmp_path)
        engine = make_engine(url)
        try:
            await schema.upgrade(engine)
        finally:
            await engine.dispose()
        store = SqlMetadataStore.open(url)
        handles = [f"ring-{i}" for i in range(10)]
        try:
            for i, h in enumerate(handles):
                await store.register(
                    handle=h, signing_key=f"key-{i}", bundle="{}", bundle_created=1,
                    invite_hash=await _invite(store, i), now=1, nonce=f"{i:032x}",
                    nonce_expires_at=10, bundle_digest=bytes(32),
                )
            jobs = [
                store.create_transfer(
                    transfer_id=f"{n:032x}", sender=handles[n % 10],
                    to=[handles[(n + 1) % 10]], size=100, now=2, expires_at=999, quota=10**9,
                )
                for n in range(200)
            ]
            results = await asyncio.gather(*jobs, return_exceptions=True)
            assert [r for r in results if r is not None] == []
            assert await store.count_transfers() == 200
            assert {h: n for h, n, _ in await store.usage()} == dict.fromkeys(handles, 20)
        finally:
            await store.close()

    asyncio.run(run())


async def _invite(store: SqlMetadataStore, i: int) -> str:
    code_hash = f"{i:064x}"
    await store.create_invite(code_hash, now=1, expires_at=999)
    return code_hash
