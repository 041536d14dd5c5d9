"""The alembic migrations and the table objects in server/db.py describe the same schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from sealdrop.server import schema
from sealdrop.server.db import make_engine, metadata


def test_migrations_match_table_objects(tmp_path: Path) -> None:
    async def run() -> dict[str, set[str]]:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
        try:
            assert await schema.upgrade(engine) == (None, schema.head())
            # Idempotent: a second upgrade finds the head and changes nothing.
            assert await schema.upgrade(engine) == (schema.head(), schema.head())
            assert await schema.current(engine) == schema.head()
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: {t: {col["name"] for col in sa.inspect(c).get_columns(t)}
                               for t in sa.inspect(c).get_table_names() if t != "alembic_version"}
                )
        finally:
            await engine.dispose()

    found = asyncio.run(run())
    assert found == {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
