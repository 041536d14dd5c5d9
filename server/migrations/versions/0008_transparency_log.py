"""the transparency log (issue 15): head, entries, subtree hashes, key history, receipts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# RFC 9162 2.1.1: the hash of the empty tree is SHA-256 of nothing.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def upgrade() -> None:
    # One row: the tree's size and root, locked by every append (server.tlog),
    # so appends from every relay process on the database are serialised.
    head = op.create_table(
        "tlog_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "size": 0, "root": EMPTY_ROOT}])
    # The leaves' data, by index: what entry bundles (tile/entries/...) serve.
    op.create_table(
        "tlog_entries",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    # Every complete subtree's hash (level 0: the leaf hashes): ~2n rows, so a
    # tile and the right edge an append needs are reads, never recomputations.
    op.create_table(
        "tlog_hashes",
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    # Every bundle an account registered or rotated to, with its key entry:
    # the accounts row holds only the current one.
    op.create_table(
        "key_log",
        sa.Column("log_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("handle", sa.String(64), sa.ForeignKey("accounts.handle"), nullable=False),
        sa.Column("bundle_digest", sa.String(64), nullable=False),
        sa.Column("bundle", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_key_log_handle", "key_log", ["handle"])
    # The current bundle's key entry (null: registered before this migration,
    # until the relay's start logs it).
    op.add_column("accounts", sa.Column("log_index", sa.BigInteger, nullable=True))
    # A complete transfer's entry and the salt of its commitment (null before
    # completion, and for transfers completed before this migration).
    op.add_column("transfers", sa.Column("log_salt", sa.LargeBinary, nullable=True))
    op.add_column("transfers", sa.Column("log_index", sa.BigInteger, nullable=True))
    # Receipts a recipient signed, as received with its ack, and their entry.
    op.create_table(
        "tlog_receipts",
        sa.Column("transfer_id", sa.String(32),
                  sa.ForeignKey("transfers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("recipient", sa.String(64), sa.ForeignKey("accounts.handle"),
                  primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("sig", sa.LargeBinary, nullable=False),
        sa.Column("log_index", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    # The log goes with its tables: clients that pinned this relay's checkpoints
    # will call a relay that comes back up without it a rollback, as it is.
    op.drop_table("tlog_receipts")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): batch mode would copy
    # and drop ``accounts``, which the other tables' foreign keys refuse.
    op.drop_column("transfers", "log_index")
    op.drop_column("transfers", "log_salt")
    op.drop_column("accounts", "log_index")
    op.drop_index("ix_key_log_handle", table_name="key_log")
    op.drop_table("key_log")
    op.drop_table("tlog_hashes")
    op.drop_table("tlog_entries")
    op.drop_table("tlog_head")
