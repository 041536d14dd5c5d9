"""state shared by relay processes: leases (upload locks, gc leadership) and rate buckets

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A lease: who holds a named lock ("upload:<transfer id>", "gc") and until
    # when (server.leases). A row whose expires_at has passed is free to take.
    op.create_table(
        "leases",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    # One token bucket per rate-limit key (server.ratelimit). Fractional
    # seconds, unlike every other time column: a bucket refills many tokens a
    # second. ``granted``: how many requests the last update let through.
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("granted", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_rate_buckets_updated_at", "rate_buckets", ["updated_at"])


def downgrade() -> None:
    # Nothing here outlives a restart of every relay process: a downgrade
    # (done with every process stopped) loses only held locks and buckets.
    op.drop_index("ix_rate_buckets_updated_at", table_name="rate_buckets")
    op.drop_table("rate_buckets")
    op.drop_table("leases")
