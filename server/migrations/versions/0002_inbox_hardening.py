"""inbox hardening: dismissed transfers, blocks, the inbox's keyset index

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add a column to a table with foreign keys
    # in every version alembic supports otherwise; on PostgreSQL it is a plain ALTER.
    with op.batch_alter_table("transfer_recipients") as batch:
        batch.add_column(sa.Column("dismissed_at", sa.BigInteger, nullable=True))
    op.create_index("ix_transfers_completed", "transfers", ["completed_at", "id"])
    op.create_table(
        "blocks",
        sa.Column("blocker", sa.String(64), sa.ForeignKey("accounts.handle"), primary_key=True),
        sa.Column("blocked", sa.String(64), sa.ForeignKey("accounts.handle"), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_blocks_blocked", "blocks", ["blocked"])


def downgrade() -> None:
    op.drop_index("ix_blocks_blocked", table_name="blocks")
    op.drop_table("blocks")
    op.drop_index("ix_transfers_completed", table_name="transfers")
    with op.batch_alter_table("transfer_recipients") as batch:
        batch.drop_column("dismissed_at")
