"""Database schema (SQLAlchemy Core) and engine creation (migrations: ``schema``).

Times are integer unix seconds everywhere, so SQLite and PostgreSQL agree
without any time-zone question. The schema itself is created only by the
alembic migrations shipped in ``server/migrations``; the table objects here
mirror them for queries, and a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("handle", sa.String(64), primary_key=True),
    sa.Column("signing_key", sa.String(64), nullable=False, unique=True),
    sa.Column("bundle", sa.Text, nullable=False),
    sa.Column("bundle_created", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # The current bundle's key entry in the transparency log (migration 0008;
    # null until logged: accounts registered before 0008 are logged at start).
    sa.Column("log_index", sa.BigInteger, nullable=True),
)

invites = sa.Table(
    "invites",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("used_by", sa.String(64), nullable=True),
    sa.Column("used_at", sa.BigInteger, nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
)

transfers = sa.Table(
    "transfers",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("sender", sa.String(64), sa.ForeignKey("accounts.handle"), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("committed", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # uploading | complete
    sa.Column("digest", sa.String(64), nullable=True),  # blobs.chunk_list_digest
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("completed_at", sa.BigInteger, nullable=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    # Once complete: the transfer entry in the transparency log and the salt of
    # its commitment (migration 0008; null for transfers completed before it).
    sa.Column("log_salt", sa.LargeBinary, nullable=True),
    sa.Column("log_index", sa.BigInteger, nullable=True),
    sa.Index("ix_transfers_sender", "sender"),
    sa.Index("ix_transfers_expires_at", "expires_at"),
    sa.Index("ix_transfers_state_updated", "state", "updated_at"),
    # The inbox's keyset order (migration 0002).
    sa.Index("ix_transfers_completed", "completed_at", "id"),
)

recipients = sa.Table(
    "transfer_recipients",
    metadata,
    sa.Column(
        "transfer_id",
        sa.String(32),
        sa.ForeignKey("transfers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("recipient", sa.String(64), sa.ForeignKey("accounts.handle"), primary_key=True),
    sa.Column("downloaded_at", sa.BigInteger, nullable=True),
    sa.Column("verified_at", sa.BigInteger, nullable=True),
    # Set once the recipient dismissed (refused) the transfer: it leaves their
    # inbox for good, and the sender sees when (migration 0002).
    sa.Column("dismissed_at", sa.BigInteger, nullable=True),
    sa.Index("ix_transfer_recipients_recipient", "recipient"),
    # Where an inbox poll starts: the caller's undismissed rows (migration 0005).
    sa.Index("ix_transfer_recipients_inbox", "recipient", "dismissed_at", "transfer_id"),
)

# Who refuses transfers from whom: the blocker's inbox hides the blocked
# account's transfers and the relay refuses new ones (migration 0002). Made by
# the blocker itself or by the operator on its behalf.
blocks = sa.Table(
    "blocks",
    metadata,
    sa.Column("blocker", sa.String(64), sa.ForeignKey("accounts.handle"), primary_key=True),
    sa.Column("blocked", sa.String(64), sa.ForeignKey("accounts.handle"), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_blocks_blocked", "blocked"),
)

# One row per committed chunk: where it ends and its hash, tagged with its
# algorithm (crypto.chunkhash: bare hex for SHA-256, "blake3:<hex>"; the column
# kept its old name, migration 0006). What start-up recovery and `verify`
# re-hash a blob against, chunk by chunk.
chunks = sa.Table(
    "transfer_chunks",
    metadata,
    sa.Column(
        "transfer_id",
        sa.String(32),
        sa.ForeignKey("transfers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("end_offset", sa.BigInteger, primary_key=True),
    sa.Column("sha256", sa.String(71), nullable=False),
)

nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("nonce", sa.String(32), primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Index("ix_nonces_expires_at", "expires_at"),
)

# Facts about this relay as a whole (migration 0003). ``relay_id`` binds the
# database to its blob store, which holds the same id in a marker file, so a
# data folder pointed at the wrong database is refused instead of emptied.
relay_meta = sa.Table(
    "relay_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# A transfer's case card (migration 0004): ciphertext the sender sealed for the
# recipients, bound to the transfer id inside; the relay only stores and serves it.
cards = sa.Table(
    "transfer_cards",
    metadata,
    sa.Column(
        "transfer_id",
        sa.String(32),
        sa.ForeignKey("transfers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("card", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# State that relay processes share instead of keeping it in memory (migration
# 0007). A lease is a named lock with an owner and an expiry (server.leases):
# "upload:<transfer id>" around a chunk write, "gc" for the one gc running.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(80), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

# One token bucket per rate-limit key (server.ratelimit). Times in fractional
# seconds here, unlike everywhere else: a bucket refills many tokens a second.
rate_buckets = sa.Table(
    "rate_buckets",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # How many requests the bucket's last update let through.
    sa.Column("granted", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_rate_buckets_updated_at", "updated_at"),
)

# The transparency log (migration 0008, server.tlog, docs/transparency.md).
# One head row (id 1): size and root, locked by every append.
tlog_head = sa.Table(
    "tlog_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary, nullable=False),
)

# The leaves' data (crypto.tlog.entries), by index.
tlog_entries = sa.Table(
    "tlog_entries",
    metadata,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Every complete subtree's hash: (level, idx) covers leaves
# [idx * 2**level, (idx + 1) * 2**level); level 0 holds the leaf hashes.
tlog_hashes = sa.Table(
    "tlog_hashes",
    metadata,
    sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
)

# Every bundle an account registered or rotated to, with its key entry.
key_log = sa.Table(
    "key_log",
    metadata,
    sa.Column("log_index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("handle", sa.String(64), sa.ForeignKey("accounts.handle"), nullable=False),
    sa.Column("bundle_digest", sa.String(64), nullable=False),  # hex
    sa.Column("bundle", sa.Text, nullable=False),  # JSON text exactly as stored
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_key_log_handle", "handle"),
)

# The receipts recipients signed (crypto.tlog.entries.Receipt) and their entry.
tlog_receipts = sa.Table(
    "tlog_receipts",
    metadata,
    sa.Column(
        "transfer_id",
        sa.String(32),
        sa.ForeignKey("transfers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("recipient", sa.String(64), sa.ForeignKey("accounts.handle"), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),  # downloaded | verified
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("sig", sa.LargeBinary, nullable=False),
    sa.Column("log_index", sa.BigInteger, nullable=False),
)

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The file of a SQLite ``engine`` (None: not SQLite, or in memory)."""
    db = engine.url.database
    if engine.dialect.name != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return db


def sqlite_twin(engine: AsyncEngine) -> sa.Engine:
    """A synchronous (pysqlite) engine on the SQLite file of ``engine``, with the
    same pragmas, for ``server.sqlrun.SqliteRunner``'s one thread.

    Its statements and commits are reported to ``engine``'s own listeners, so
    ``count_work`` (and anything else listening on ``engine``) sees the store's
    work whichever engine ran it."""
    path = sqlite_file(engine)
    if path is None:
        raise ValueError("sqlite_twin needs a SQLite database in a file")
    twin = sa.create_engine(
        sa.URL.create("sqlite", database=path),
        # Each connection is made, used and closed on one runner thread; the
        # check would only refuse the pool's clean-up from elsewhere at exit.
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=2,  # the runner's reader and writer
        max_overflow=0,
    )
    event.listen(twin, "connect", _sqlite_pragmas)
    target = engine.sync_engine.dispatch

    def _statement(*args: Any) -> None:
        target.before_cursor_execute(*args)

    def _commit(conn: Any) -> None:
        target.commit(conn)

    event.listen(twin, "before_cursor_execute", _statement)
    event.listen(twin, "commit", _commit)
    return twin


def count_work(
    engine: AsyncEngine, *, statement: Callable[[], None], commit: Callable[[], None]
) -> None:
    """Call ``statement`` before every SQL statement and ``commit`` at every commit.

    Why: a commit is what a write costs (SQLite's WAL append and, when the
    commit is synced, its fsync; PostgreSQL's WAL flush), and statements are
    round trips to the database. The relay exports both as counters, so
    ``scripts/bench_relay`` can say how many of each a transfer costs and a
    test can pin what an idle inbox poll costs."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _statement(*_args: Any) -> None:
        statement()

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(*_args: Any) -> None:
        commit()
