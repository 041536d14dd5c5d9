"""chunk hashes name their algorithm: room for "blake3:<hex>" in transfer_chunks.sha256

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The column keeps its name: it holds the chunk's *tagged* hash (crypto.chunkhash):
# bare hex for SHA-256, as every record made before BLAKE3 already is (so they
# need no rewrite and keep verifying), "blake3:" + hex for BLAKE3.
TAGGED = 71  # len("blake3:") + 64


def upgrade() -> None:
    # Why nothing on SQLite: it does not enforce VARCHAR lengths, and widening
    # there would copy the whole table (batch mode) for no effect.
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column("transfer_chunks", "sha256",
                    type_=sa.String(TAGGED), existing_type=sa.String(64),
                    existing_nullable=False)


def downgrade() -> None:
    # A relay before 0006 cannot check a BLAKE3 record: refuse rather than
    # leave chunk records it would take for damaged blobs (`verify`, recovery).
    bind = op.get_bind()
    n = bind.execute(sa.text(
        "SELECT count(*) FROM transfer_chunks WHERE sha256 LIKE 'blake3:%'")).scalar_one()
    if n:
        raise RuntimeError(
            f"{n} chunk records use BLAKE3, which a relay before migration 0006 cannot "
            "check; let those transfers expire or delete them, then downgrade"
        )
    if bind.dialect.name == "sqlite":
        return
    op.alter_column("transfer_chunks", "sha256",
                    type_=sa.String(64), existing_type=sa.String(TAGGED),
                    existing_nullable=False)
