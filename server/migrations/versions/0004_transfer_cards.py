"""case cards: one opaque, sender-sealed card per transfer (transfer_cards)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A table beside transfers, not a column: the card is read only for the
    # inbox, so the transfer rows every upload touches stay small. Ciphertext
    # only (crypto/card.py); the relay never parses it.
    op.create_table(
        "transfer_cards",
        sa.Column(
            "transfer_id",
            sa.String(32),
            sa.ForeignKey("transfers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("card", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("transfer_cards")
