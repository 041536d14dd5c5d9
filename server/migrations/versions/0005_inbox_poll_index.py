"""inbox poll index: a recipient's undismissed transfers, found from the recipient

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Why: `watch` polls the inbox every 30 s from every lab. Without this
    # index SQLite's planner starts the inbox query from the transfers table
    # (state = 'complete'), i.e. from every complete transfer on the relay,
    # whoever it is for; with it the query starts from the caller's own
    # undismissed rows, so an idle poll reads a few index pages whatever the
    # relay holds (tests/server/test_inbox_poll.py shows the plan).
    op.create_index(
        "ix_transfer_recipients_inbox",
        "transfer_recipients",
        ["recipient", "dismissed_at", "transfer_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_transfer_recipients_inbox", table_name="transfer_recipients")
