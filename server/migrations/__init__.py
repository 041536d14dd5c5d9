"""Alembic migrations of the relay's schema, run by ``sealdrop-relay init``/``serve``."""
