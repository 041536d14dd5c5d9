"""Alembic environment: always run programmatically with a connection handed in
by ``server.schema.run_alembic`` (config.attributes["connection"]); no alembic.ini."""

from __future__ import annotations

from alembic import context

from sealdrop.server.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `sealdrop-relay init`, not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
