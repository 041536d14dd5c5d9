"""What an idle `watch` poll costs the relay: one indexed inbox query besides
authentication (the account read, the nonce and the account's rate-limit
token, in one transaction), one commit; and migration 0005, which gives the
inbox query its index, up and down."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from sealdrop.server import schema
from sealdrop.server.db import make_engine

from .relaykit import RunningRelay, sign_headers, upload_blob
from .test_migration_0002 import _seed_upload, _to, _url


def _poll(relay: RunningRelay, handle: str) -> int:
    ident = relay.identities[handle]
    h = sign_headers(ident.signing_key, handle, "GET", "/v1/inbox",
                     hashlib.sha256(b"").hexdigest(), now=relay.clock())
    return relay.raw("GET", "/v1/inbox", headers=h)[0]


def _traffic(relay: RunningRelay) -> None:
    """Complete transfers for someone else, so a bad plan would have rows to scan."""
    alice, _ = relay.user("alice")
    relay.user("carol-lab")
    for _ in range(3):
        t = alice.create_transfer(["carol-lab"], 64)
        upload_blob(alice, t["id"], b"x" * 64)
        alice.complete(t["id"])


def test_an_idle_poll_is_four_statements_and_one_commit(relay: RunningRelay) -> None:
    _traffic(relay)
    relay.user("bob-lab")
    metrics = relay.relay.metrics
    assert _poll(relay, "bob-lab") == 200  # warm: pool connections opened
    before = (metrics.value("sealdrop_db_statements_total"),
              metrics.value("sealdrop_db_commits_total"))
    for _ in range(5):
        assert _poll(relay, "bob-lab") == 200
    statements = metrics.value("sealdrop_db_statements_total") - before[0]
    commits = metrics.value("sealdrop_db_commits_total") - before[1]
    # Per poll: the nonce, the account and its token bucket (one synced commit:
    # the bucket is shared by every relay process, server.ratelimit), the inbox
    # page. No recipients or cards query for an empty page.
    assert (statements, commits) == (20, 5)


def test_the_inbox_query_starts_from_the_callers_index(relay: RunningRelay) -> None:
    """The plan SQLite makes, without statistics (the relay never runs ANALYZE):
    it must start from the caller's rows in ix_transfer_recipients_inbox, not
    from every complete transfer on the relay."""
    if relay.relay.store.engine.dialect.name != "sqlite":
        return  # PostgreSQL plans by its statistics; the index exists there too
    _traffic(relay)
    relay.user("bob-lab")
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "transfer_recipients" in statement and "ORDER BY" in statement:
            seen.append((statement, params))

    raw = relay.relay.store.engine.raw
    event.listen(raw.sync_engine, "before_cursor_execute", capture)
    try:
        assert _poll(relay, "bob-lab") == 200
    finally:
        event.remove(raw.sync_engine, "before_cursor_execute", capture)
    assert len(seen) == 1
    statement, params = seen[0]

    async def plan() -> list[str]:
        async with raw.connect() as conn:
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            return [str(r[3]) for r in rows]

    steps = relay.run(plan())
    assert "ix_transfer_recipients_inbox" in steps[0], steps
    assert not any(s.startswith("SCAN") for s in steps), steps


def test_0005_up_down_up(db_url: str, tmp_path: Path) -> None:
    def indexes(conn: sa.Connection) -> set[str]:
        return {str(i["name"]) for i in sa.inspect(conn).get_indexes("transfer_recipients")}

    async def run() -> None:
        engine = make_engine(_url(db_url, tmp_path))
        try:
            await _to(engine, "0004")
            async with engine.begin() as conn:
                assert "ix_transfer_recipients_inbox" not in await conn.run_sync(indexes)
                await _seed_upload(conn, size=5, committed=0)
                await conn.execute(sa.text(
                    "INSERT INTO transfer_recipients (transfer_id, recipient) "
                    "VALUES (:i, 'alice')"), {"i": "a" * 32})
            await _to(engine, "head")
            assert await schema.current(engine) == schema.head()
            async with engine.connect() as conn:
                assert "ix_transfer_recipients_inbox" in await conn.run_sync(indexes)
            await _to(engine, "0004", down=True)
            async with engine.connect() as conn:
                assert "ix_transfer_recipients_inbox" not in await conn.run_sync(indexes)
                n = (await conn.execute(
                    sa.text("SELECT count(*) FROM transfer_recipients"))).scalar()
                assert n == 1
            await _to(engine, "head")
            async with engine.connect() as conn:
                assert "ix_transfer_recipients_inbox" in await conn.run_sync(indexes)
        finally:
            await engine.dispose()

    asyncio.run(run())
