"""initial schema: accounts, invites, transfers, recipients, chunks, nonces

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("handle", sa.String(64), primary_key=True),
        sa.Column("signing_key", sa.String(64), nullable=False, unique=True),
        sa.Column("bundle", sa.Text, nullable=False),
        sa.Column("bundle_created", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "invites",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("used_by", sa.String(64), nullable=True),
        sa.Column("used_at", sa.BigInteger, nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sender", sa.String(64), sa.ForeignKey("accounts.handle"), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("committed", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("completed_at", sa.BigInteger, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_transfers_sender", "transfers", ["sender"])
    op.create_index("ix_transfers_expires_at", "transfers", ["expires_at"])
    op.create_index("ix_transfers_state_updated", "transfers", ["state", "updated_at"])
    op.create_table(
        "transfer_recipients",
        sa.Column(
            "transfer_id",
            sa.String(32),
            sa.ForeignKey("transfers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "recipient", sa.String(64), sa.ForeignKey("accounts.handle"), primary_key=True
        ),
        sa.Column("downloaded_at", sa.BigInteger, nullable=True),
        sa.Column("verified_at", sa.BigInteger, nullable=True),
    )
    op.create_index(
        "ix_transfer_recipients_recipient", "transfer_recipients", ["recipient"]
    )
    op.create_table(
        "transfer_chunks",
        sa.Column(
            "transfer_id",
            sa.String(32),
            sa.ForeignKey("transfers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("end_offset", sa.BigInteger, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "nonces",
        sa.Column("nonce", sa.String(32), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_nonces_expires_at", "nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_table("nonces")
    op.drop_table("transfer_chunks")
    op.drop_table("transfer_recipients")
    op.drop_table("transfers")
    op.drop_table("invites")
    op.drop_table("accounts")
