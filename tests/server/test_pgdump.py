"""pg_dump / pg_restore at the edge (server.pgdump) and the backup manifest
(server.pgbackup): the connection goes through libpq's environment, never
argv; a failing pg_dump (the real one) is one line without the password; a
folder that is not a PostgreSQL backup is refused with a sentence."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from sealdrop.server import pgdump
from sealdrop.server.errors import ConfigError
from sealdrop.server.pgbackup import Manifest
from tests.server.relaykit import PG_URL


def test_libpq_env_from_the_relay_url() -> None:
    env = pgdump.libpq_env(
        "postgresql+asyncpg://relay:s3cret@db.example:6432/sealdrop?ssl=verify-full"
        "&sslrootcert=/etc/ca.pem&prepared_statement_cache_size=0",
        base={"PGDATABASE": "wrong", "PGPASSWORD": "stale", "PATH": "/usr/bin"})
    assert env["PGHOST"] == "db.example" and env["PGPORT"] == "6432"
    assert env["PGUSER"] == "relay" and env["PGPASSWORD"] == "s3cret"
    assert env["PGDATABASE"] == "sealdrop" and env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == "/etc/ca.pem" and env["PATH"] == "/usr/bin"
    assert env["PGCONNECT_TIMEOUT"] == "10"
    # no password in the URL: none inherited either (a .pgpass file may give one)
    bare = pgdump.libpq_env("postgresql://relay@/sealdrop?host=/run/postgresql",
                            base={"PGPASSWORD": "stale"})
    assert "PGPASSWORD" not in bare and bare["PGHOST"] == "/run/postgresql"


def test_error_line_keeps_the_errors_and_hides_the_password() -> None:
    err = ("pg_dump: error: connection to server at \"h\" failed: password s3cret rejected\n"
           "pg_dump: detail: whatever\n")
    line = pgdump.error_line("pg_dump", err, "s3cret")
    assert line == 'pg_dump failed: connection to server at "h" failed: password *** rejected'
    assert pgdump.error_line("pg_restore", "") == "pg_restore failed: no message"


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
def test_a_failing_pg_dump_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://relay:hunter2-secret@127.0.0.1:1/nowhere"
    with pytest.raises(ConfigError) as caught:
        asyncio.run(pgdump.dump(url, tmp_path / "relay.dump"))
    msg = caught.value.message
    assert msg.startswith("pg_dump failed: ") and "127.0.0.1" in msg and "port 1" in msg
    assert "\n" not in msg and "hunter2" not in msg
    assert not (tmp_path / "relay.dump").exists() or (tmp_path / "relay.dump").stat().st_size == 0


def test_manifest_round_trip_and_refusals(tmp_path: Path) -> None:
    m = Manifest(relay_id="ab" * 16, taken_at=1.5, blobs="s3://b/p", transfers=3, complete=2)
    m.write(tmp_path)
    with pytest.raises(ConfigError, match="has no relay.dump"):
        Manifest.read(tmp_path)
    (tmp_path / "relay.dump").write_bytes(b"PGDMP")
    assert Manifest.read(tmp_path) == m
    (tmp_path / "backup.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is damaged"):
        Manifest.read(tmp_path)
    sqlite_backup = tmp_path / "sqlite"
    sqlite_backup.mkdir()
    (sqlite_backup / "relay.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="backup of a SQLite relay: it is a data folder"):
        Manifest.read(sqlite_backup)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a sealdrop-relay backup"):
        Manifest.read(tmp_path / "empty")
    with pytest.raises(ConfigError, match="is not a backup folder"):
        Manifest.read(tmp_path / "nowhere")


@pytest.mark.skipif(not PG_URL, reason="needs SEALDROP_TEST_PG_URL")
def test_restore_names_a_database_it_cannot_use(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from sealdrop.server.config import async_url
    from sealdrop.server.db import make_engine

    url = make_url(async_url(PG_URL)).set(password="pw-secret",
                                          database="sealdrop_no_such_database")
    url = url.render_as_string(hide_password=False)

    async def run() -> None:
        engine = make_engine(url)
        try:
            await pgdump.require_empty(engine, url)
        finally:
            await engine.dispose()

    with pytest.raises(ConfigError) as caught:
        asyncio.run(run())
    msg = caught.value.message
    assert msg.startswith("cannot use the database postgresql+asyncpg://") and ":***@" in msg
    assert "sealdrop_no_such_database" in msg and "does not exist" in msg
    assert "pw-secret" not in msg and "\n" not in msg
