"""Migration 0008 (the transparency log) adds its tables and columns beside a
relay's data with an empty tree (size 0, the empty root), goes back down
without touching that data, and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import sqlalchemy as sa

from sealdrop.server import schema
from sealdrop.server.db import make_engine, metadata

from .test_migration_0002 import _seed_upload, _shape, _to, _url

LOG_TABLES = {"tlog_head", "tlog_entries", "tlog_hashes", "key_log", "tlog_receipts"}


def test_0008_up_down_up(db_url: str, tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(_url(db_url, tmp_path))
        try:
            await _to(engine, "0007")
            async with engine.begin() as conn:
                assert not LOG_TABLES & set(await conn.run_sync(_shape))
                await _seed_upload(conn, size=9, committed=6)
            await _to(engine, "0008")
            async with engine.begin() as conn:
                shape = await conn.run_sync(_shape)
                assert LOG_TABLES <= set(shape)
                assert {"log_salt", "log_index"} <= shape["transfers"]
                assert "log_index" in shape["accounts"]
                head = (await conn.execute(sa.text("SELECT id, size, root FROM tlog_head"))).all()
                # RFC 9162: the empty tree's root is SHA-256 of nothing
                assert [(i, n, bytes(r)) for i, n, r in head] == [
                    (1, 0, hashlib.sha256(b"").digest())]
                # the seeded account and transfer are there, not yet logged
                row = (await conn.execute(sa.text(
                    "SELECT a.log_index, t.log_index, t.log_salt FROM accounts a "
                    "JOIN transfers t ON t.sender = a.handle"))).one()
                assert tuple(row) == (None, None, None)
                await conn.execute(sa.text(
                    "INSERT INTO tlog_hashes (level, idx, hash) VALUES (0, 0, :h)"),
                    {"h": b"\x01" * 32})
                try:
                    async with conn.begin_nested():
                        await conn.execute(sa.text(
                            "INSERT INTO tlog_hashes (level, idx, hash) VALUES (0, 0, :h)"),
                            {"h": b"\x02" * 32})
                except sa.exc.IntegrityError:
                    pass
                else:
                    raise AssertionError("a second hash for one (level, idx) was accepted")
            if schema.head() == "0008":
                async with engine.connect() as conn:
                    assert await conn.run_sync(_shape) == {
                        t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
            await _to(engine, "0007", down=True)
            async with engine.connect() as conn:
                shape = await conn.run_sync(_shape)
                assert not LOG_TABLES & set(shape)
                assert "log_index" not in shape["accounts"]
                assert not {"log_salt", "log_index"} & shape["transfers"]
                got = (await conn.execute(sa.text(
                    "SELECT id, sender, committed FROM transfers"))).all()
                assert [tuple(r) for r in got] == [("a" * 32, "alice", 6)]
            await _to(engine, "0008")
            async with engine.connect() as conn:
                assert (await conn.execute(sa.text(
                    "SELECT count(*) FROM tlog_hashes"))).scalar() == 0
                assert (await conn.execute(sa.text(
                    "SELECT size FROM tlog_head"))).scalar() == 0
        finally:
            await engine.dispose()

    asyncio.run(run())
