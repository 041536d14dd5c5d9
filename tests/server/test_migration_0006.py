"""Migration 0006 (room for BLAKE3 chunk records) keeps every SHA-256 chunk record
as it was, goes down only when no BLAKE3 record would be stranded, and up again,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from sealdrop.crypto import chunkhash
from sealdrop.server import schema
from sealdrop.server.blobs import chunk_list_digest
from sealdrop.server.db import make_engine

from .test_migration_0002 import _seed_upload, _to, _url

SHA = [chunkhash.tagged_digest(chunkhash.SHA256, b"one"),
       chunkhash.tagged_digest(chunkhash.SHA256, b"two")]
B3 = chunkhash.tagged_digest(chunkhash.BLAKE3, b"three")


async def _chunks(conn: sa.AsyncConnection) -> list[tuple[int, str]]:
    rows = await conn.execute(sa.text(
        "SELECT end_offset, sha256 FROM transfer_chunks ORDER BY end_offset"))
    return [(int(e), str(h)) for e, h in rows]


def test_0006_up_down_up_keeps_sha256_records(db_url: str, tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(_url(db_url, tmp_path))
        try:
            await _to(engine, "0005")
            async with engine.begin() as conn:
                await _seed_upload(conn, size=9, committed=6)
                for end, h in ((3, SHA[0]), (6, SHA[1])):
                    await conn.execute(sa.text(
                        "INSERT INTO transfer_chunks (transfer_id, end_offset, sha256) "
                        "VALUES (:i, :e, :h)"), {"i": "a" * 32, "e": end, "h": h})
                before = chunk_list_digest(await _chunks(conn))
            await _to(engine, "head")
            assert await schema.current(engine) == schema.head()
            async with engine.begin() as conn:
                # an upload started before the upgrade goes on with BLAKE3 records
                assert await _chunks(conn) == [(3, SHA[0]), (6, SHA[1])]
                assert chunk_list_digest(await _chunks(conn)) == before
                await conn.execute(sa.text(
                    "INSERT INTO transfer_chunks (transfer_id, end_offset, sha256) "
                    "VALUES (:i, 9, :h)"), {"i": "a" * 32, "h": B3})
                assert (await _chunks(conn))[-1] == (9, B3)
            # down with a BLAKE3 record: refused, nothing changed
            with pytest.raises(RuntimeError, match="BLAKE3"):
                await _to(engine, "0005", down=True)
            assert await schema.current(engine) == schema.head()
            async with engine.begin() as conn:
                assert (await _chunks(conn))[-1] == (9, B3)
                await conn.execute(sa.text("DELETE FROM transfer_chunks WHERE end_offset = 9"))
            await _to(engine, "0005", down=True)
            async with engine.connect() as conn:
                assert await _chunks(conn) == [(3, SHA[0]), (6, SHA[1])]
            await _to(engine, "head")
            async with engine.begin() as conn:
                await conn.execute(sa.text(
                    "INSERT INTO transfer_chunks (transfer_id, end_offset, sha256) "
                    "VALUES (:i, 9, :h)"), {"i": "a" * 32, "h": B3})
                assert await _chunks(conn) == [(3, SHA[0]), (6, SHA[1]), (9, B3)]
        finally:
            await engine.dispose()

    asyncio.run(run())
