"""Migration 0002 (dismissals, blocks, the inbox index) upgrades a relay that holds
data, and goes back down and up again without losing any, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sealdrop.server import schema
from sealdrop.server.config import async_url
from sealdrop.server.db import make_engine, metadata


def _url(db_url: str, tmp_path: Path) -> str:
    return async_url(db_url or f"sqlite:///{tmp_path / 'm.db'}")


def _to(engine: Any, revision: str, *, down: bool = False) -> Any:
    def step(conn: sa.Connection) -> None:
        schema.run_alembic(conn, "downgrade" if down else "upgrade", revision)

    async def run() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(step)

    return run()


async def _seed_upload(conn: Any, *, size: int, committed: int) -> None:
    """An account 'alice' and her transfer 'aaaa…' still uploading: the rows
    every migration test carries across its revisions."""
    await conn.execute(sa.text(
        "INSERT INTO accounts (handle, signing_key, bundle, bundle_created, "
        "created_at, disabled) VALUES ('alice', 'k', '{}', 1, 1, false)"))
    await conn.execute(sa.text(
        "INSERT INTO transfers (id, sender, size, committed, state, created_at, "
        "updated_at, expires_at) VALUES "
        "(:i, 'alice', :s, :c, 'uploading', 1, 1, 99999999999)"),
        {"i": "a" * 32, "s": size, "c": committed})


def _shape(conn: sa.Connection) -> dict[str, set[str]]:
    insp = sa.inspect(conn)
    return {t: {c["name"] for c in insp.get_columns(t)}
            for t in insp.get_table_names() if t != "alembic_version"}


def test_0002_up_down_up_keeps_the_data(db_url: str, tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(_url(db_url, tmp_path))
        try:
            await _to(engine, "0001")
            async with engine.begin() as conn:
                assert "blocks" not in await conn.run_sync(_shape)
                for h in ("alice", "bob-lab"):
                    await conn.execute(sa.text(
                        "INSERT INTO accounts (handle, signing_key, bundle, bundle_created, "
                        "created_at, disabled) VALUES (:h, :k, '{}', 1, 1, false)"),
                        {"h": h, "k": "key-" + h})
                await conn.execute(sa.text(
                    "INSERT INTO transfers (id, sender, size, committed, state, created_at, "
                    "updated_at, completed_at, expires_at) VALUES "
                    "(:i, 'alice', 5, 5, 'complete', 1, 1, 1, 99999999999)"), {"i": "a" * 32})
                await conn.execute(sa.text(
                    "INSERT INTO transfer_recipients (transfer_id, recipient, verified_at) "
                    "VALUES (:i, 'bob-lab', 7)"), {"i": "a" * 32})
            await _to(engine, "head")
            assert await schema.current(engine) == schema.head()
            async with engine.connect() as conn:
                shape = await conn.run_sync(_shape)
                assert shape == {t.name: {c.name for c in t.columns}
                                 for t in metadata.sorted_tables}
                row = (await conn.execute(sa.text(
                    "SELECT verified_at, dismissed_at FROM transfer_recipients"))).one()
                assert tuple(row) == (7, None)
            async with engine.begin() as conn:
                await conn.execute(sa.text(
                    "INSERT INTO blocks (blocker, blocked, created_at) "
                    "VALUES ('bob-lab', 'alice', 3)"))
                await conn.execute(sa.text("UPDATE transfer_recipients SET dismissed_at = 9"))
            await _to(engine, "0001", down=True)
            async with engine.connect() as conn:
                shape = await conn.run_sync(_shape)
                assert "blocks" not in shape
                assert "dismissed_at" not in shape["transfer_recipients"]
                row = (await conn.execute(sa.text(
                    "SELECT transfer_id, recipient, verified_at FROM transfer_recipients"))).one()
                assert tuple(row) == ("a" * 32, "bob-lab", 7)
                assert (await conn.execute(sa.text("SELECT count(*) FROM transfers"))
                        ).scalar_one() == 1
            await _to(engine, "head")
            assert await schema.current(engine) == schema.head()
            async with engine.connect() as conn:
                assert (await conn.execute(sa.text("SELECT count(*) FROM blocks"))
                        ).scalar_one() == 0
        finally:
            await engine.dispose()

    asyncio.run(run())
