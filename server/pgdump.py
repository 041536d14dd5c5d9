"""pg_dump and pg_restore for a PostgreSQL relay: the edge that runs them.

Why the real tools: a custom-format dump is what a PostgreSQL operator already
knows how to keep, inspect (``pg_restore -l``) and restore by hand.

The connection goes to them through libpq's environment (PGHOST, PGPORT,
PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE...), never their argv: a command
line is visible to every user of the machine in ``ps``. ``-w``: they never
prompt. A failure is one line: the tool's own ``error:`` lines, which name
the server and the database but never the password.

The dump is taken in an exported snapshot (``exported_snapshot``): the
relay holds a REPEATABLE READ transaction open, reads the database's clock
inside it, and pg_dump dumps exactly that snapshot (``--snapshot``). So the
time recorded beside the dump is the dump's own, which is what
server.restore_plan measures object versions against.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from . import dbfail
from .db import transfers
from .errors import ConfigError
from .metadata import COMPLETE

# libpq's own settings that say where to connect: the relay's URL decides, not
# whatever the operator's shell happens to export.
_TARGET_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE",
                "PGSERVICE", "PGOPTIONS", "PGSSLMODE")
# URL query parameters passed on as libpq variables (asyncpg's ``ssl`` is
# libpq's sslmode).
_QUERY_VARS = {
    "sslmode": "PGSSLMODE", "ssl": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL",
    "host": "PGHOST", "port": "PGPORT", "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT", "target_session_attrs": "PGTARGETSESSIONATTRS",
}
_ERROR_LINES = 4


def libpq_env(url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a libpq tool connecting to ``url`` (pure)."""
    u = make_url(url)
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in _TARGET_VARS}
    pairs = {"PGHOST": u.host, "PGPORT": str(u.port) if u.port else None,
             "PGUSER": u.username, "PGPASSWORD": u.password, "PGDATABASE": u.database}
    env.update({k: v for k, v in pairs.items() if v})
    for key, value in u.query.items():
        var = _QUERY_VARS.get(key)
        if var is not None:
            env[var] = value if isinstance(value, str) else value[-1]
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def database_name(url: str) -> str:
    """The URL without its password: how errors name the database."""
    return make_url(url).render_as_string(hide_password=True)


def error_line(tool: str, stderr: str, secret: str | None = None) -> str:
    """The tool's failure as one line (pure): its ``error:`` lines, else its last ones."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln.split("error:", 1)[1].strip() for ln in lines if "error:" in ln]
    picked = (errors or lines[-_ERROR_LINES:])[:_ERROR_LINES]
    text = "; ".join(picked) or "no message"
    if secret:
        text = text.replace(secret, "***")
    return f"{tool} failed: {text}"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"{name} is not installed; install PostgreSQL's client tools "
            "(apt install postgresql-client, the server's major version or newer)"
        )
    return found


async def _run(tool: str, args: list[str], url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        _tool(tool), *args, env=libpq_env(url), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise ConfigError(error_line(tool, err.decode("utf-8", "replace"),
                                     make_url(url).password))


async def dump(url: str, dest: Path, *, snapshot: str | None = None) -> None:
    """``pg_dump --format=custom`` of the database at ``url`` into ``dest``."""
    args = ["-w", "--format=custom", "--no-owner", "--no-privileges", f"--file={dest}"]
    if snapshot is not None:
        args.append(f"--snapshot={snapshot}")
    await _run("pg_dump", args, url)


async def restore(url: str, source: Path) -> None:
    """``pg_restore`` of ``source`` into the (empty) database at ``url``, in one
    transaction: a restore that fails leaves the database as empty as it was.
    Objects end up owned by the relay's own role (``--no-owner``)."""
    name = make_url(url).database or ""
    await _run("pg_restore", ["-w", "--single-transaction", "--no-owner", "--no-privileges",
                              f"--dbname={name}", str(source)], url)


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str  # pg_export_snapshot()
    at: float  # the database's clock inside it (epoch seconds)
    transfers: int
    complete: int


@contextlib.asynccontextmanager
async def exported_snapshot(engine: AsyncEngine) -> AsyncIterator[Snapshot]:
    """A snapshot that pg_dump can dump, held open for the ``with`` body."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            row = (await conn.execute(sa.text(
                "SELECT pg_export_snapshot(), extract(epoch from clock_timestamp())"
            ))).one()
            counts = (await conn.execute(sa.select(
                sa.func.count(),
                sa.func.count().filter(transfers.c.state == COMPLETE),
            ).select_from(transfers))).one()
            yield Snapshot(str(row[0]), float(row[1]), int(counts[0]), int(counts[1]))


# Tables, views and sequences outside PostgreSQL's own schemas: what makes a
# database not empty, and what a drill drops again.
_OWN_RELATIONS = (
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') "
    "AND s.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND s.nspname NOT LIKE 'pg_toast%'"
)
_DROP = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}


async def require_empty(engine: AsyncEngine, url: str) -> None:
    """Refuse a database holding any table: a restore writes into an empty one only."""
    try:
        async with engine.connect() as conn:
            n = (await conn.execute(sa.text("SELECT count(*) " + _OWN_RELATIONS))).scalar_one()
    except Exception as exc:
        if not dbfail.is_unreachable(exc):
            raise
        raise ConfigError(f"cannot use the database {database_name(url)}: "
                          f"{dbfail.describe(exc)}; create it (createdb) or correct "
                          "database_url; nothing was changed") from exc
    if n:
        raise ConfigError(
            f"the database {database_name(url)} is not empty ({n} tables or sequences); "
            "a restore writes only into an empty database: create one (createdb), point "
            "database_url at it and run the restore again; nothing was changed"
        )


async def empty(engine: AsyncEngine) -> int:
    """Drop every table, view and sequence ``require_empty`` counts: a drill's
    database, which was empty before its restore, made empty again."""
    async with engine.begin() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT s.nspname, c.relname, c.relkind::text " + _OWN_RELATIONS))).all()
        for schema, name, kind in rows:
            q = ".".join('"' + str(n).replace('"', '""') + '"' for n in (schema, name))
            await conn.execute(sa.text(f"DROP {_DROP[kind]} IF EXISTS {q} CASCADE"))  # noqa: S608
    return len(rows)
