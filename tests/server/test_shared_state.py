"""The state relay processes share through the database (issue 14), tested with
two independent stores on one database, each with its own engine, as two
relay processes would have: the upload lease excludes, a dead holder's lease
runs out, rate buckets are shared and exact under concurrency, and one gc
runs at a time. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from sealdrop.crypto import chunkhash
from sealdrop.crypto.protocol import ErrorCode
from sealdrop.server import ops
from sealdrop.server.blobs import LocalBlobStore
from sealdrop.server.config import load_config
from sealdrop.server.db import accounts, leases, rate_buckets
from sealdrop.server.errors import Busy, QuotaExceeded
from sealdrop.server.leases import LEASE_SECONDS, Leases
from sealdrop.server.locks import TransferLocks, exclusive, upload_lease
from sealdrop.server.metadata import SqlMetadataStore
from sealdrop.server.ratelimit import RateLimit
from sealdrop.server.writelocks import position

from .relaykit import migrate_url
from .test_migration_0002 import _url

T0 = 1_800_000_000


class Clock:
    """A clock the test sets; both stores read it, as synced hosts would."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def two_stores(url: str) -> AsyncIterator[tuple[SqlMetadataStore, SqlMetadataStore]]:
    await migrate_url(url)
    a, b = SqlMetadataStore.open(url), SqlMetadataStore.open(url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def _run(db_url: str, tmp_path: Path,
         test: Callable[[SqlMetadataStore, SqlMetadataStore], Awaitable[None]]) -> None:
    async def run() -> None:
        async with two_stores(_url(db_url, tmp_path)) as (a, b):
            await test(a, b)

    asyncio.run(run())


async def _rows(store: SqlMetadataStore, table: sa.Table) -> list[tuple[object, ...]]:
    async with store.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(sa.select(table))]


async def _upload(store: SqlMetadataStore, tid: str) -> None:
    """An account and its transfer of 30 bytes, nothing uploaded yet."""
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(accounts).values(
            handle="alice", signing_key="k", bundle="{}", bundle_created=1, created_at=1,
            disabled=False))
    await store.create_transfer(transfer_id=tid, sender="alice", to=["alice"], size=30,
                                now=T0, expires_at=T0 + 3600, quota=10**9)


def _shared_blobs(tmp_path: Path) -> tuple[LocalBlobStore, LocalBlobStore]:
    """One blob folder as two relay processes see it: a store each."""
    blobs_a = LocalBlobStore(tmp_path / "blobs")
    blobs_a.create_dirs()
    return blobs_a, LocalBlobStore(tmp_path / "blobs")


def _chunk(data: bytes) -> str:
    h = chunkhash.new("blake3")
    h.update(data)
    return chunkhash.tag("blake3", h.hexdigest())


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


# -- the upload lease ------------------------------------------------------------


def test_a_lease_excludes_the_other_store_until_released(db_url: str, tmp_path: Path) -> None:
    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        name = upload_lease("a" * 32)
        assert await a.take_lease(name, "A", now=T0, until=T0 + 30)
        assert not await b.take_lease(name, "B", now=T0 + 1, until=T0 + 31)
        assert not await a.take_lease(name, "A2", now=T0 + 1, until=T0 + 31)  # nor a 2nd holder
        assert await b.lease_holder(name) == ("A", T0 + 30)
        # another name is free
        assert await b.take_lease(upload_lease("b" * 32), "B", now=T0, until=T0 + 30)
        # release by someone else is no release
        await b.release_lease(name, "B")
        assert not await b.take_lease(name, "B", now=T0 + 2, until=T0 + 32)
        await a.release_lease(name, "A")
        assert await b.lease_holder(name) is None
        assert await b.take_lease(name, "B", now=T0 + 2, until=T0 + 32)
        assert await a.lease_holder(name) == ("B", T0 + 32)

    _run(db_url, tmp_path, test)


def test_racing_takers_get_one_lease(db_url: str, tmp_path: Path) -> None:
    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        for round_ in range(5):
            name = f"upload:{round_:032d}"
            got = await asyncio.gather(*(
                store.take_lease(name, f"{i}", now=T0, until=T0 + 30)
                for i, store in enumerate([a, b] * 10)))
            assert sum(got) == 1, got
            winner = (await a.lease_holder(name) or ("", 0))[0]
            assert got[int(winner)] is True

    _run(db_url, tmp_path, test)


def test_a_dead_holders_lease_runs_out_and_its_commit_is_refused(
        db_url: str, tmp_path: Path) -> None:
    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        tid = "c" * 32
        name = upload_lease(tid)
        await _upload(a, tid)
        # A takes the lease, writes its chunk... and stops (killed, or stalled).
        assert await a.take_lease(name, "A", now=T0, until=T0 + LEASE_SECONDS)
        # Until the lease runs out, B cannot take it; from then on it can.
        assert not await b.take_lease(name, "B", now=T0 + LEASE_SECONDS - 1,
                                      until=T0 + 2 * LEASE_SECONDS)
        assert await b.take_lease(name, "B", now=T0 + LEASE_SECONDS,
                                  until=T0 + 2 * LEASE_SECONDS)
        # A comes back: it can neither renew nor commit (the commit is fenced).
        assert not await a.renew_lease(name, "A", until=T0 + 99)
        assert not await a.advance(tid, old=0, new=10, sha256="x" * 64, now=T0,
                                   fence=(name, "A"))
        assert (await b.progress(tid)) == ("uploading", 0)
        # The holder commits; an unfenced commit (operator tooling) still works as before.
        assert await b.advance(tid, old=0, new=10, sha256="y" * 64, now=T0, fence=(name, "B"))
        assert await b.renew_lease(name, "B", until=T0 + 99)
        assert await b.lease_holder(name) == ("B", T0 + 99)
        assert (await a.progress(tid)) == ("uploading", 10)
        assert await a.chunks(tid) == [(10, "y" * 64)]

    _run(db_url, tmp_path, test)


def test_a_waiting_request_gets_the_lease_once_free_or_busy_in_bounded_time(
        db_url: str, tmp_path: Path) -> None:
    blobs_a, blobs_b = _shared_blobs(tmp_path)

    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        clock = Clock()
        la, lb = Leases(a, clock), Leases(b, clock)
        tid = "d" * 32
        order: list[str] = []

        async def holder(release: asyncio.Event) -> None:
            async with exclusive(TransferLocks(), la, blobs_a, tid):
                order.append("a in")
                await release.wait()
                order.append("a out")

        release = asyncio.Event()
        task = asyncio.create_task(holder(release))
        while not order:
            await asyncio.sleep(0.01)
        # B waits a bounded time, then answers busy, retried by clients.
        with pytest.raises(Busy) as e:
            async with exclusive(TransferLocks(), lb, blobs_b, tid, wait=0.3):
                order.append("b in (wrong)")
        assert e.value.code == ErrorCode.UPLOAD_BUSY
        # B waits again; A lets go meanwhile: B gets in after A is out, never before.
        asyncio.get_running_loop().call_later(0.2, release.set)
        async with exclusive(TransferLocks(), lb, blobs_b, tid, wait=30):
            order.append("b in")
        await task
        assert order == ["a in", "a out", "b in"]
        assert await a.lease_holder(upload_lease(tid)) is None  # released on the way out

    _run(db_url, tmp_path, test)


def test_a_holder_stalled_past_its_lease_cuts_nothing_the_next_one_committed(
        db_url: str, tmp_path: Path) -> None:
    """Two processes on one blob folder. A stalled holder (a paused VM) must
    never cut bytes another process committed after taking its lease over:
    - stalled inside its write, it holds the blob's write lock, so the new
      holder waits (503 upload_busy) rather than write bytes it could cut;
    - stalled before the write lock, it finds its lease gone under it and
      touches nothing.
    Without the write lock, the first case ended with B's committed chunk cut
    to nothing by A's clean-up, and the upload stuck at `complete`."""
    blobs_a, blobs_b = _shared_blobs(tmp_path)
    tid = "e" * 32
    one, two = b"0123456789", b"abcdefghij"

    class Stalling(LocalBlobStore):
        """A's store, whose next write lock waits until the test lets it go on:
        the process stalled between taking its lease and its write lock."""

        gate: asyncio.Event | None = None

        def write_lock(self, key: str, *, wait: float) -> AbstractAsyncContextManager[None]:
            inner = super().write_lock(key, wait=wait)
            gate = self.gate

            @asynccontextmanager
            async def stalled() -> AsyncIterator[None]:
                if gate is not None:
                    await gate.wait()
                async with inner:
                    yield

            return stalled()

    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        await _upload(a, tid)
        clock = Clock()
        # No renewal during the test: A is stalled, it could not renew.
        la = Leases(a, clock, renew_every=3600)
        lb = Leases(b, clock, renew_every=3600)

        # 1. A holds the upload and is inside its write when it stalls.
        inside, wake = asyncio.Event(), asyncio.Event()

        async def a_writes() -> None:
            with pytest.raises(Busy):  # its commit is refused: B took the lease
                async with exclusive(TransferLocks(), la, blobs_a, tid) as lease:
                    assert lease is not None
                    await blobs_a.write_chunk(tid, 0, _body(one), length=10, digest=_chunk(one))
                    inside.set()
                    await wake.wait()  # stalled, past its lease
                    if not await a.advance(tid, old=0, new=10, sha256=_chunk(one), now=T0,
                                           fence=lease.fence, release=True):
                        raise Busy("overtaken", code=ErrorCode.UPLOAD_BUSY)

        task = asyncio.create_task(a_writes())
        await inside.wait()
        clock.now += LEASE_SECONDS
        # B takes the lease over, but not the blob: A may still write or cut it.
        with pytest.raises(Busy) as busy:
            async with exclusive(TransferLocks(), lb, blobs_b, tid, wait=0.5):
                raise AssertionError("B wrote while A was inside its write")
        assert busy.value.code == ErrorCode.UPLOAD_BUSY
        wake.set()
        await task
        assert await a.progress(tid) == ("uploading", 0)  # A committed nothing

        async def b_commits(at: int, data: bytes) -> None:
            async with exclusive(TransferLocks(), lb, blobs_b, tid) as lease:
                assert lease is not None
                await blobs_b.write_chunk(tid, at, _body(data), length=len(data),
                                          digest=_chunk(data))
                assert await b.advance(tid, old=at, new=at + len(data), sha256=_chunk(data),
                                       now=T0, fence=lease.fence, release=True)
                lease.released = True

        # B, once A is out, writes and commits the first chunk.
        await b_commits(0, one)

        # 2. A takes the lease for the next chunk and stalls before the write lock;
        # meanwhile its lease runs out and B writes that chunk.
        Stalling.gate = asyncio.Event()
        stalling = Stalling(tmp_path / "blobs")
        reached: list[str] = []

        async def a_stalls() -> None:
            async with exclusive(TransferLocks(), la, stalling, tid):
                reached.append("A wrote")

        task = asyncio.create_task(a_stalls())
        while await a.lease_holder(upload_lease(tid)) is None:
            await asyncio.sleep(0.01)
        clock.now += LEASE_SECONDS
        await b_commits(10, two)
        Stalling.gate.set()
        with pytest.raises(Busy):
            await task
        assert reached == []
        # B's two committed chunks are whole on disk.
        assert blobs_a.partial_path(tid).read_bytes() == one + two
        assert await a.progress(tid) == ("uploading", 20)
        await stalling.close()

    try:
        _run(db_url, tmp_path, test)
    finally:
        asyncio.run(blobs_a.close())
        asyncio.run(blobs_b.close())


def test_write_locks_exclude_two_stores_of_one_process_and_let_go_on_close(
        tmp_path: Path) -> None:
    """OFD locks, not POSIX record locks: two stores in one process exclude each
    other (POSIX locks would let both in), other keys are free, and closing a
    store lets go of what it held."""
    blobs_a, blobs_b = _shared_blobs(tmp_path)
    k1, k2 = "1" * 32, "2" * 32
    assert position(k1) != position(k2) and 0 <= position(k1) < 2**62

    async def run() -> None:
        async with blobs_a.write_lock(k1, wait=1):
            with pytest.raises(Busy):
                async with blobs_b.write_lock(k1, wait=0.2):
                    pass
            async with blobs_b.write_lock(k2, wait=0.2):
                pass
        async with blobs_b.write_lock(k1, wait=0.2):
            pass
        lock = blobs_a.write_lock(k1, wait=1)
        await lock.__aenter__()
        await blobs_a.close()  # a process that exits lets go
        async with blobs_b.write_lock(k1, wait=0.2):
            pass
        await blobs_b.close()

    asyncio.run(run())


def test_the_holder_renews_its_lease_while_it_works(db_url: str, tmp_path: Path) -> None:
    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        clock = Clock()
        la = Leases(a, clock, ttl=30, renew_every=0.05)
        async with la.hold("upload:" + "e" * 32) as held:
            clock.now += 100  # far past the first expiry: only renewal keeps it
            deadline = asyncio.get_running_loop().time() + 30
            while (await a.lease_holder("upload:" + "e" * 32)) != (held.owner, T0 + 130):
                assert asyncio.get_running_loop().time() < deadline, "never renewed"
                await asyncio.sleep(0.02)
            assert not await b.take_lease("upload:" + "e" * 32, "B", now=int(clock.now),
                                          until=int(clock.now) + 30)
        assert await _rows(a, leases) == []

    _run(db_url, tmp_path, test)


# -- rate buckets ----------------------------------------------------------------


def test_rate_buckets_are_shared_and_exact_under_concurrency(
        db_url: str, tmp_path: Path) -> None:
    """Every signed request's token is spent in its nonce batch's transaction
    (server.noncebatch): many concurrent requests of one account through two
    stores never get more than burst + rate * t between them."""
    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        clock = Clock()
        limit = RateLimit(rate=4.0, burst=10)
        for store in (a, b):
            store.rate_clock = clock
            store.rate_limit = limit
        await _upload(a, "f" * 32)  # the account alice
        sent = iter(range(10**6))

        async def one(store: SqlMetadataStore) -> tuple[bool, bool]:
            fresh, state = await store.remember_nonce_as(
                f"n{next(sent):031d}", expires_at=T0 + 60, handle="alice")
            assert state is not None and state[:2] == ("k", False)
            return fresh, state[2]

        async def flood(n: int) -> int:
            got = await asyncio.gather(*(one(s) for s in [a, b] * n))
            assert all(fresh for fresh, _ in got)  # every nonce was new
            return sum(allowed for _, allowed in got)

        # The clock stands still: the burst and not one more, over both stores.
        assert await flood(60) == 10
        # 2 s later: exactly rate * 2 more.
        clock.now += 2
        assert await flood(60) == 8
        # A fraction of a token is kept: half a token twice makes one, not zero.
        # (Steps a float adds exactly: the bucket's times are fractional seconds.)
        clock.now += 0.125
        assert await flood(5) == 0
        clock.now += 0.125
        assert await flood(5) == 1
        # A clock that steps back refills nothing and moves nothing back.
        clock.now -= 50
        assert await flood(5) == 0
        (key, tokens, at, _), = await _rows(a, rate_buckets)
        assert key == "acct:alice" and tokens == 0 and at == T0 + 2.25
        # A replay is refused as before, and spends a token like any signed request.
        clock.now = T0 + 2.25 + 1
        fresh, state = await b.remember_nonce_as(f"n{0:031d}", expires_at=T0 + 60,
                                                 handle="alice")
        assert fresh is False and state is not None and state[2] is True
        # Idle past burst / rate: full again, so gc may delete it (a missing row is full).
        clock.now = T0 + 2.25 + 1 + 10 / 4 - 0.125
        assert await b.purge_rate_buckets(limit) == 0
        clock.now += 0.25
        assert await b.purge_rate_buckets(limit) == 1
        assert await flood(60) == 10

    _run(db_url, tmp_path, test)


def test_without_a_limit_or_for_a_disabled_account_no_bucket_is_kept(
        db_url: str, tmp_path: Path) -> None:
    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        await _upload(a, "f" * 32)
        # operator commands and tests open stores without a limit
        for i in range(30):
            _, state = await a.remember_nonce_as(f"m{i:031d}", expires_at=T0, handle="alice")
            assert state is not None and state[2] is True
        assert await _rows(a, rate_buckets) == []
        # a disabled account is refused anyway: it spends nothing
        b.rate_limit = RateLimit(rate=1.0, burst=1)
        assert await a.set_disabled("alice", True)
        _, state = await b.remember_nonce_as("d" * 32, expires_at=T0, handle="alice")
        assert state == ("k", True, True)
        assert await _rows(b, rate_buckets) == []

    _run(db_url, tmp_path, test)


# -- the quota -------------------------------------------------------------------


def test_two_processes_creating_at_once_never_exceed_the_quota(
    db_url: str, tmp_path: Path
) -> None:
    """Issue 10, class 4: the quota check and the insert are one step across
    relay processes. One process's SQLite thread runs its own writers one at a
    time, so only two stores on one database show the race that BEGIN
    IMMEDIATE (SQLite) and the sender's row lock (PostgreSQL) close: exactly
    what fits is created, never more, and the rest is refused for the quota."""
    quota, size, creates = 10_000, 1000, 40

    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        async with a.engine.begin() as conn:
            await conn.execute(sa.insert(accounts).values(
                handle="alice", signing_key="k", bundle="{}", bundle_created=1, created_at=1,
                disabled=False))
        results = await asyncio.gather(*(
            (a if i % 2 else b).create_transfer(
                transfer_id=f"{i:032x}", sender="alice", to=["alice"], size=size, now=T0,
                expires_at=T0 + 3600, quota=quota)
            for i in range(creates)), return_exceptions=True)
        refused = [r for r in results if r is not None]
        assert all(isinstance(r, QuotaExceeded) for r in refused), refused
        assert len(results) - len(refused) == quota // size
        assert await a.count_transfers() == quota // size

    _run(db_url, tmp_path, test)


# -- gc leadership -----------------------------------------------------------------


def test_one_gc_at_a_time_and_a_dead_leader_lets_go(db_url: str, tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "cfg", env={})
    blobs = LocalBlobStore(tmp_path / "blobs")
    blobs.create_dirs()

    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        clock = Clock()
        la, lb = Leases(a, clock), Leases(b, clock)

        def gc(store: SqlMetadataStore, leases_: Leases) -> Awaitable[ops.GcReport | None]:
            return ops.gc_as_leader(store, blobs, cfg, now=int(clock.now), leases=leases_)

        # A's gc runs (held here mid-run); B's finds it and does nothing.
        owner = la.new_owner()
        assert await la.try_take(ops.GC_LEASE, owner)
        async with la.held(ops.GC_LEASE, owner):
            assert await gc(b, lb) is None
            assert await gc(a, la) is None  # nor a second one in the same process
        # A finished: B's next gc runs.
        assert isinstance(await gc(b, lb), ops.GcReport)
        # Concurrent gcs: never two at once, whatever the interleaving (the lease is
        # gone after each run, so both may run one after the other).
        results = await asyncio.gather(*(gc(s, lx) for s, lx in [(a, la), (b, lb)] * 4))
        assert any(isinstance(r, ops.GcReport) for r in results)
        # A leader that died keeps it until its lease runs out, then B takes over.
        assert await la.try_take(ops.GC_LEASE, la.new_owner())
        clock.now += LEASE_SECONDS - 1
        assert await gc(b, lb) is None
        clock.now += 1
        assert isinstance(await gc(b, lb), ops.GcReport)
        assert await _rows(a, leases) == []

    _run(db_url, tmp_path, test)


def test_a_dead_process_of_this_host_is_taken_over_at_once(db_url: str, tmp_path: Path) -> None:
    """A relay killed while holding a lease, on this host: the next waiter (or
    start-up recovery) sees its pid gone and need not wait the lease out."""
    import os
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process now
    host = socket.gethostname()[:32]

    async def test(a: SqlMetadataStore, b: SqlMetadataStore) -> None:
        clock = Clock()
        lb = Leases(b, clock)
        live = Leases(a, clock)  # a live holder in this very process
        dead_owner = f"{host}:{gone.pid}:0badf00d:1"
        assert await a.take_lease("upload:dead", dead_owner, now=T0, until=T0 + LEASE_SECONDS)
        async with lb.hold("upload:dead", wait=5) as held:
            assert await b.lease_holder("upload:dead") == (held.owner, T0 + LEASE_SECONDS)
        # Never a live one: in this process, another host, or a pid that runs.
        for holder in (live.new_owner(), f"other-host:{gone.pid}:0badf00d:1",
                       f"{host}:{os.getppid()}:0badf00d:1"):
            assert await a.take_lease("upload:live", holder, now=T0, until=T0 + LEASE_SECONDS)
            assert not lb.dead_here(holder)
            with pytest.raises(Busy):
                async with lb.hold("upload:live", wait=0.2):
                    pass
            await a.release_lease("upload:live", holder)
        # A pid reused by this process, under another token, was a process before us.
        assert lb.dead_here(f"{host}:{os.getpid()}:0badf00d:1")

    _run(db_url, tmp_path, test)
