"""Migration 0007 (leases and rate buckets, the state relay processes share)
adds its two tables beside a relay's data, goes back down without touching
that data, and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from sealdrop.server import schema
from sealdrop.server.db import make_engine, metadata

from .test_migration_0002 import _seed_upload, _shape, _to, _url


def test_0007_up_down_up(db_url: str, tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(_url(db_url, tmp_path))
        try:
            await _to(engine, "0006")
            async with engine.begin() as conn:
                shape = await conn.run_sync(_shape)
                assert "leases" not in shape and "rate_buckets" not in shape
                await _seed_upload(conn, size=9, committed=6)
            await _to(engine, "head")
            assert await schema.current(engine) == schema.head()
            async with engine.begin() as conn:
                assert await conn.run_sync(_shape) == {
                    t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
                await conn.execute(sa.text(
                    "INSERT INTO leases (name, owner, expires_at) VALUES ('gc', 'host:1:a', 5)"))
                await conn.execute(sa.text(
                    "INSERT INTO rate_buckets (key, tokens, updated_at) "
                    "VALUES ('acct:alice', 2.5, 1700000000.25)"))
                row = (await conn.execute(sa.text(
                    "SELECT tokens, updated_at, granted FROM rate_buckets"))).one()
                # fractional seconds and tokens survive: the bucket needs them
                assert tuple(row) == (2.5, 1700000000.25, 0)
                # one lease per name
                try:
                    async with conn.begin_nested():
                        await conn.execute(sa.text(
                            "INSERT INTO leases (name, owner, expires_at) "
                            "VALUES ('gc', 'other', 9)"))
                except sa.exc.IntegrityError:
                    pass
                else:
                    raise AssertionError("a second row for one lease name was accepted")
            await _to(engine, "0006", down=True)
            async with engine.connect() as conn:
                shape = await conn.run_sync(_shape)
                assert "leases" not in shape and "rate_buckets" not in shape
                # the relay's own data is untouched
                got = (await conn.execute(sa.text(
                    "SELECT id, committed FROM transfers"))).all()
                assert [tuple(r) for r in got] == [("a" * 32, 6)]
            await _to(engine, "head")
            async with engine.connect() as conn:
                assert (await conn.execute(sa.text("SELECT count(*) FROM leases"))).scalar() == 0
                assert (await conn.execute(sa.text(
                    "SELECT count(*) FROM rate_buckets"))).scalar() == 0
        finally:
            await engine.dispose()

    asyncio.run(run())
