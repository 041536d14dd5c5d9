"""Migration 0004 (case cards) adds transfer_cards to a relay that holds data, and
goes back down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from sealdrop.server import schema
from sealdrop.server.db import make_engine

from .test_migration_0002 import _seed_upload, _shape, _to, _url


def test_0004_up_down_up_keeps_the_transfers(db_url: str, tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(_url(db_url, tmp_path))
        try:
            await _to(engine, "0003")
            async with engine.begin() as conn:
                assert "transfer_cards" not in await conn.run_sync(_shape)
                await _seed_upload(conn, size=5, committed=0)
            await _to(engine, "head")
            assert await schema.current(engine) == schema.head()
            async with engine.begin() as conn:
                shape = await conn.run_sync(_shape)
                assert shape["transfer_cards"] == {"transfer_id", "card", "updated_at"}
                await conn.execute(sa.text(
                    "INSERT INTO transfer_cards (transfer_id, card, updated_at) "
                    "VALUES (:i, :c, 2)"), {"i": "a" * 32, "c": b"\x00sealed"})
            await _to(engine, "0003", down=True)
            async with engine.connect() as conn:
                shape = await conn.run_sync(_shape)
                assert "transfer_cards" not in shape
                n = (await conn.execute(sa.text("SELECT count(*) FROM transfers"))).scalar()
                assert n == 1  # the transfer survives; only its card went
            await _to(engine, "head")
            async with engine.connect() as conn:
                assert "transfer_cards" in await conn.run_sync(_shape)
        finally:
            await engine.dispose()

    asyncio.run(run())
