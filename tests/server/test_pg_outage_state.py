"""What a PostgreSQL outage must not leave behind in the state relay processes
share (issue 14): a lease whose holder could not release it while the
database was away (or whose take committed with its answer lost) is
released once it is back, not left to run out
(``LEASE_SECONDS``: every upload in flight would stall that long, gc skip);
and a chunk's commit is synced on PostgreSQL, so a database crash does not
take back a chunk the relay acknowledged. The whole fault, with relay
processes, nginx and a real restart: tests/e2e/test_pg_restart.py.

The outage is a TCP link in front of the run's PostgreSQL, cut and restored
(``test_db_down._Outage``): the real server, unreachable for one store only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from sealdrop.server.config import async_url
from sealdrop.server.db import make_engine
from sealdrop.server.errors import StoreUnavailable
from sealdrop.server.leases import LEASE_SECONDS, Leases
from sealdrop.server.metadata import SqlMetadataStore

from .relaykit import PG_URL, _pg_admin, migrate_url
from .test_db_down import _Outage, _pg_port
from .test_shared_state import T0, _upload

pytestmark = pytest.mark.skipif(not PG_URL, reason="SEALDROP_TEST_PG_URL not set")


@asynccontextmanager
async def _database() -> AsyncIterator[tuple[str, _Outage]]:
    """A fresh database: (its direct URL, a link to the server the test can cut)."""
    name = "sd_out_" + uuid.uuid4().hex[:12]
    await asyncio.to_thread(_pg_admin, f'CREATE DATABASE "{name}"')
    link = _Outage(_pg_port())
    try:
        url = async_url(f"{PG_URL.rsplit('/', 1)[0]}/{name}")
        await migrate_url(url)
        yield url, link
    finally:
        link.close()
        await asyncio.to_thread(_pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _through(url: str, link: _Outage) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}@127.0.0.1:{link.port}").geturl()


def test_a_lease_left_by_an_outage_is_released_once_the_database_is_back() -> None:
    async def run() -> None:
        async with _database() as (url, link):
            # Process A reaches the database through the link; process B directly.
            a, b = SqlMetadataStore.open(_through(url, link)), SqlMetadataStore.open(url)
            try:
                la, lb = Leases(a), Leases(b)
                for name in ("upload:t1", "gc"):
                    with pytest.raises(StoreUnavailable):
                        async with la.hold(name):
                            link.close()  # the database goes while A holds the lease
                    # B cannot have it while A's row is there and has not run out.
                    assert not await lb.try_take(name, lb.new_owner())
                    link.restore()
                    # Well before the row would run out, B gets it: A let go of
                    # it as soon as the database was back. (Without that, Busy
                    # after these 10 s, 20 s before the lease ran out.)
                    owner = lb.new_owner()
                    await lb.acquire(name, owner, wait=LEASE_SECONDS / 3)
                    await b.release_lease(name, owner)
            finally:
                await a.close()
                await b.close()

    asyncio.run(run())


class _AnswerLost(SqlMetadataStore):
    """A store whose lease takes commit and then fail, as when the database
    goes down between the commit and its answer. A stand-in: no real outage
    can be timed to fall in that gap."""

    async def take_lease(self, name: str, owner: str, *, now: int, until: int) -> bool:
        await super().take_lease(name, owner, now=now, until=until)
        raise StoreUnavailable("the relay's database is unreachable")


def test_a_take_whose_answer_was_lost_is_let_go() -> None:
    async def run() -> None:
        async with _database() as (url, _):
            a, b = _AnswerLost(make_engine(url)), SqlMetadataStore.open(url)
            try:
                la, lb = Leases(a), Leases(b)
                with pytest.raises(StoreUnavailable):
                    async with la.hold("upload:t4"):
                        pass
                holder = await b.lease_holder("upload:t4")
                assert holder is not None  # the row is there
                # The client's retry fails too, with another owner: the first
                # owner, who holds the row, must not be forgotten for it.
                with pytest.raises(StoreUnavailable):
                    async with la.hold("upload:t4"):
                        pass
                assert await b.lease_holder("upload:t4") == holder
                owner = lb.new_owner()
                # Without the release, Busy after 10 s: the row runs out after 30.
                await lb.acquire("upload:t4", owner, wait=LEASE_SECONDS / 3)
            finally:
                await a.close()
                await b.close()

    asyncio.run(run())


def test_the_holder_takes_over_its_own_lease_left_by_an_outage_at_once() -> None:
    async def run() -> None:
        async with _database() as (url, link):
            a = SqlMetadataStore.open(_through(url, link))
            try:
                la = Leases(a)
                with pytest.raises(StoreUnavailable):
                    async with la.hold("upload:t2"):
                        link.close()
                link.restore()
                # At once: the first poll finds its own ended hold and takes it
                # over (no wait for the background release, none for expiry).
                owner = la.new_owner()
                await la.acquire("upload:t2", owner, wait=0)
                held = await a.lease_holder("upload:t2")
                assert held is not None and held[0] == owner
            finally:
                await a.close()

    asyncio.run(run())


def test_a_chunk_commit_on_postgresql_is_synced(tmp_path: Path) -> None:
    """``advance`` runs without ``SET LOCAL synchronous_commit TO OFF`` on
    PostgreSQL; a lease (which may be lost in a crash) still does, which shows
    the listener would see it."""

    async def run() -> None:
        async with _database() as (url, _):
            store = SqlMetadataStore.open(url)
            seen: list[str] = []
            sa.event.listen(store.engine.raw.sync_engine, "before_cursor_execute",
                            lambda _c, _cur, statement, *_: seen.append(statement))
            try:
                await _upload(store, "t3")
                seen.clear()
                assert await store.advance("t3", old=0, new=10, sha256="00" * 32, now=T0)
                assert seen and not any("synchronous_commit" in s for s in seen), seen
                seen.clear()
                assert await store.take_lease("x", "o", now=T0, until=T0 + 1)
                assert any("synchronous_commit" in s for s in seen), seen
            finally:
                await store.close()

    asyncio.run(run())
