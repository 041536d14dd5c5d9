"""relay identity: the relay_meta key/value table (holds relay_id)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No relay_id row is written here: binding an existing data folder to its
    # database is an explicit operator step (`sealdrop-relay init`), which
    # first checks that the blobs found match this database's rows.
    op.create_table(
        "relay_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("relay_meta")
