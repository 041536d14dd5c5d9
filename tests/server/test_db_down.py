"""The database's failures are sentences: a command that cannot reach it prints
one line (no traceback), a bad TLS setting in the URL is refused with a hint, and
while a running relay's PostgreSQL is away its API answers 503
`store_unavailable`, then recovers once it is back."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sealdrop.server.config import async_url, load_config
from sealdrop.server.errors import ConfigError
from sealdrop.server.logs import LOGGER_NAME
from tests.e2e.kit import Link, free_port

from .relaykit import PG_URL, RelayProcess, _pg_admin, make_config, start_relay_thread

needs_pg = pytest.mark.skipif(not PG_URL, reason="SEALDROP_TEST_PG_URL not set")


def _closed_port() -> int:
    """A port where nothing listens, and nothing else in the run will (see
    tests.e2e.kit.free_port)."""
    return free_port()


def _one_line_error(result: object) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 1, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("sealdrop-relay: error: ")
    return lines[0]


def test_a_database_where_nothing_listens_is_a_one_line_error(tmp_path: Path) -> None:
    url = f"postgresql://sealdrop:s3cret-pw@127.0.0.1:{_closed_port()}/sealdrop"
    p = RelayProcess(tmp_path / "data", url, tmp_path / "relay.log")
    (tmp_path / "data").mkdir()
    for args in (("init",), ("gc",), ("db", "upgrade"), ("db", "current"),
                 ("serve", "--host", "127.0.0.1", "--port", "0")):
        line = _one_line_error(p.cli(*args, check=False))
        assert line.startswith("sealdrop-relay: error: cannot reach the database ("), args
        assert "check that it runs" in line
        assert "s3cret-pw" not in line  # the URL's password never reaches a log


@needs_pg
def test_a_missing_database_is_a_one_line_error(tmp_path: Path) -> None:
    url = PG_URL.rsplit("/", 1)[0] + "/sd_no_such_database"
    p = RelayProcess(tmp_path / "data", url, tmp_path / "relay.log")
    (tmp_path / "data").mkdir()
    line = _one_line_error(p.cli("db", "current", check=False))
    assert 'database "sd_no_such_database" does not exist' in line


def test_sslmode_is_taken_as_libpq_means_it() -> None:
    assert async_url("postgresql://u@db/x?sslmode=verify-full") == (
        "postgresql+asyncpg://u@db/x?ssl=verify-full")
    assert async_url("postgres://u@db/x?application_name=a&sslmode=require") == (
        "postgresql+asyncpg://u@db/x?application_name=a&ssl=require")
    assert async_url("postgresql://u@db/x") == "postgresql+asyncpg://u@db/x"
    with pytest.raises(ConfigError, match="sslmode=on is not a tls mode; use one of disable"):
        async_url("postgresql://u@db/x?sslmode=on")
    with pytest.raises(ConfigError, match="sslrootcert= .*set PGSSLROOTCERT in the relay's"):
        async_url("postgresql://u@db/x?sslmode=verify-full&sslrootcert=/etc/ca.pem")


def test_a_bad_tls_setting_is_refused_before_connecting(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(ConfigError, match="sslcert= "):
        load_config(tmp_path / "data", env={
            "SEALDROP_RELAY_DATABASE_URL": "postgresql://u@db/x?sslcert=/c.pem"})
    p = RelayProcess(tmp_path / "data", "postgresql://u@db/x?sslmode=yes", tmp_path / "r.log")
    line = _one_line_error(p.cli("gc", check=False))
    assert "sslmode=yes is not a tls mode" in line


@needs_pg
def test_sslmode_reaches_postgresql(tmp_path: Path) -> None:
    """The test server has no TLS: `disable` and `prefer` connect, `require`
    fails as a sentence naming the refusal."""
    for mode in ("disable", "prefer"):
        p = RelayProcess(tmp_path / mode, f"{PG_URL}?sslmode={mode}", tmp_path / "r.log")
        (tmp_path / mode).mkdir()
        result = p.cli("db", "current", "--json", check=False)
        assert "Traceback" not in result.stderr
        assert "head" in json.loads(result.stdout), result.stderr
    # The documented password file rides in the URL too (asyncpg's passfile=).
    passfile = tmp_path / "pgpass"
    passfile.write_text("127.0.0.1:*:*:*:unused\n")
    passfile.chmod(0o600)
    p = RelayProcess(tmp_path / "pf", f"{PG_URL}?sslmode=prefer&passfile={passfile}",
                     tmp_path / "r.log")
    (tmp_path / "pf").mkdir()
    result = p.cli("db", "current", "--json", check=False)
    assert "head" in json.loads(result.stdout), result.stderr
    p = RelayProcess(tmp_path / "req", f"{PG_URL}?sslmode=require", tmp_path / "r.log")
    (tmp_path / "req").mkdir()
    line = _one_line_error(p.cli("db", "current", check=False))
    assert "cannot reach the database" in line and "rejected SSL upgrade" in line


class _Outage(Link):
    """A TCP link to PostgreSQL that the test cuts (every open connection and
    the listener, as a database outage does) and restores on the same port."""

    def close(self) -> None:
        # A listener closed while a thread waits in accept() keeps accepting on
        # Linux; shutting it down first wakes that thread and stops it.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        super().close()

    def restore(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, name="db-link", daemon=True).start()


def _pg_port() -> int:
    port = urlsplit(PG_URL).port
    assert port is not None
    return port


@needs_pg
def test_api_answers_503_store_unavailable_while_postgresql_is_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    name = "sd_down_" + uuid.uuid4().hex[:12]
    _pg_admin(f'CREATE DATABASE "{name}"')
    link = _Outage(_pg_port())
    parts = urlsplit(PG_URL)
    url = f"postgresql://{parts.username}@127.0.0.1:{link.port}/{name}"
    cfg = make_config(tmp_path / "data", url)
    running, stop = start_relay_thread(cfg)
    try:
        _, alice = running.user("alice")
        status, _, body = running.raw("GET", "/v1/inbox", sign=alice)
        assert status == 200, body

        link.close()
        for path in ("/v1/inbox", "/v1/transfers"):
            status, _, body = running.raw("GET", path, sign=alice)
            assert status == 503, body
            assert json.loads(body) == {
                "error": "the relay's database is unreachable; try again in a few minutes",
                "code": "store_unavailable"}
        status, _, body = running.raw(
            "POST", "/v1/transfers", sign=alice, body=b"{}",
            headers={"Content-Type": "application/json"})
        assert status == 503, body
        status, _, body = running.raw("GET", "/readyz")
        assert status == 503 and json.loads(body)["failing"] == ["database"]
        # The operator's log names the route and the cause's type; the client
        # saw only "unreachable".
        logged = [r.fields for r in caplog.records  # type: ignore[attr-defined]
                  if r.getMessage() == "store_unavailable"]
        assert {f["route"] for f in logged} == {"/v1/inbox", "/v1/transfers"}
        assert all(f["cause"] for f in logged)
        assert not any(r.getMessage() == "internal_error" for r in caplog.records)

        link.restore()
        status, _, body = running.raw("GET", "/v1/inbox", sign=alice)
        assert status == 200, body
        assert running.raw("GET", "/readyz")[0] == 200
    finally:
        stop()
        link.close()
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_guard_maps_only_an_unusable_database(tmp_path: Path) -> None:
    """A bad query or a domain error passes unchanged: only a database that
    cannot be used becomes `store_unavailable` (else every bug would be a 503)."""
    import asyncio

    import sqlalchemy as sa

    from sealdrop.server.db import make_engine
    from sealdrop.server.dbfail import CLIENT_MESSAGE, guard
    from sealdrop.server.errors import NotFound, StoreUnavailable

    async def run() -> None:
        engine = make_engine(async_url(f"sqlite:///{tmp_path / 'g.db'}"))
        try:
            async with guard(engine.begin()) as conn:
                await conn.execute(sa.text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
                await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            with pytest.raises(sa.exc.IntegrityError):
                async with guard(engine.begin()) as conn:
                    await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            with pytest.raises(NotFound):
                async with guard(engine.connect()):
                    raise NotFound("no transfer")
        finally:
            await engine.dispose()
        gone = make_engine(async_url(f"postgresql://u@127.0.0.1:{_closed_port()}/x"))
        try:
            with pytest.raises(StoreUnavailable, match=CLIENT_MESSAGE):
                async with guard(gone.connect()) as conn:
                    await conn.execute(sa.text("SELECT 1"))
        finally:
            await gone.dispose()

    asyncio.run(run())
