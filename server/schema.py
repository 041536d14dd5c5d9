"""Explicit schema upgrades: only ``sealdrop-relay db upgrade`` (and ``init``
on an empty database) migrates; everything else checks.

A relay whose code and database disagree on the schema must not run: an older
relay on a newer schema could write rows the newer code misreads, and a newer
relay on an older schema fails on missing columns mid-request. So ``serve``,
``/readyz`` and every operator command compare the database's alembic revision
with the newest one this code ships, and refuse with a sentence that says what
to run. Upgrading under a running relay is the operator's explicit act.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .db import MIGRATIONS
from .dbfail import describe, guard, is_unreachable
from .errors import ConfigError, StoreUnavailable


class SchemaMismatch(ConfigError):
    """The database's schema is not the one this relay's code was written for."""

    def __init__(self, message: str, *, current: str | None, head: str) -> None:
        super().__init__(message)
        self.current = current
        self.head = head


def _script() -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def known_revisions() -> list[str]:
    """Every revision this code ships, oldest first."""
    return [rev.revision for rev in reversed(list(_script().walk_revisions()))]


def head() -> str:
    revs = known_revisions()
    return revs[-1]


def judge(current: str | None) -> None:
    """Raise ``SchemaMismatch`` unless ``current`` is this code's head revision."""
    newest = head()
    if current == newest:
        return
    if current is None:
        msg = (
            "the database holds no relay schema; for a new relay run `sealdrop-relay init`, "
            "otherwise check database_url: it may point at the wrong database"
        )
    elif current in known_revisions():
        msg = (
            f"the database schema is at revision {current}, older than this relay's {newest}; "
            "stop every relay process, back up, then run `sealdrop-relay db upgrade`"
        )
    else:
        msg = (
            f"the database schema is at revision {current}, which this relay does not know "
            f"(it knows up to {newest}): a newer sealdrop-relay upgraded it; run that version, "
            f"or roll back with its `sealdrop-relay db downgrade {newest}` first"
        )
    raise SchemaMismatch(msg, current=current, head=newest)


def read_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    rev = MigrationContext.configure(connection).get_current_revision()
    return str(rev) if rev is not None else None


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The operator's one-line error for a database the command cannot reach."""
    return StoreUnavailable(
        f"cannot reach the database ({describe(exc)}); check that it runs and that "
        "database_url, its password and its tls settings are right"
    )


async def _run(engine: AsyncEngine, fn: Callable[[sa.Connection], Any], *, write: bool) -> Any:
    try:
        async with guard(engine.begin() if write else engine.connect()) as conn:
            return await conn.run_sync(fn)
    except StoreUnavailable as exc:
        raise unavailable(exc.__cause__ or exc) from exc
    except Exception as exc:
        if is_unreachable(exc):
            raise unavailable(exc) from exc
        raise


async def current(engine: AsyncEngine) -> str | None:
    """The database's revision (``None``: no relay schema at all)."""
    rev: str | None = await _run(engine, read_revision, write=False)
    return rev


def run_alembic(connection: sa.Connection, action: str, target: str) -> None:
    """One alembic command (``upgrade`` or ``downgrade`` to ``target``) on ``connection``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    if connection.dialect.name == "sqlite":
        # pysqlite opens a transaction only before DML, so DDL would run (and
        # stay) one statement at a time: a migration refused halfway (0006 down
        # with BLAKE3 records) would leave 0007's tables dropped under a
        # revision that still says head. One explicit transaction for the run.
        connection.exec_driver_sql("BEGIN")
    getattr(command, action)(cfg, target)


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Migrate to this code's head; returns (before, after). A revision this code
    does not know is refused: alembic would fail on it with a traceback."""
    before = await current(engine)
    if before is not None and before not in known_revisions():
        judge(before)
    newest = head()
    if before != newest:
        await _run(engine, lambda c: run_alembic(c, "upgrade", newest), write=True)
    return before, newest


async def downgrade(engine: AsyncEngine, target: str) -> tuple[str | None, str]:
    """Migrate down to ``target``, an older revision this code knows."""
    revs = known_revisions()
    if target not in revs:
        raise ConfigError(
            f"unknown revision {target!r}; this relay knows " + ", ".join(revs)
        )
    before = await current(engine)
    if before is None or before not in revs:
        judge(before)
    if revs.index(target) > revs.index(before or ""):
        raise ConfigError(
            f"the schema is at {before}, older than {target}; use `sealdrop-relay db upgrade`"
        )
    if before != target:
        await _run(engine, lambda c: run_alembic(c, "downgrade", target), write=True)
    return before, target
