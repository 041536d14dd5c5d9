"""Upgrades are explicit: only `sealdrop-relay db upgrade` (and `init` on an empty
database) migrates. A relay refuses a schema it does not know, older or newer,
in `serve`, `/readyz` and every operator command, with a sentence that says what
to run, and the refusal leaves the schema where it was. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sealdrop.server import schema
from sealdrop.server.config import async_url
from sealdrop.server.db import make_engine

from .relaykit import RelayProcess, RunningRelay, make_config, start_relay_thread

NEWER = "9999"  # a revision from a future version: this code cannot know it
OLDEST = "0001"


def _url(db_url: str, data: Path) -> str:
    return async_url(db_url or f"sqlite:///{data / 'relay.db'}")


def _db(url: str, fn: Any) -> Any:
    async def run() -> Any:
        engine = make_engine(url)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _revision(url: str) -> str | None:
    rev: str | None = _db(url, schema.current)
    return rev


def _stamp(url: str, revision: str) -> None:
    """Set the recorded revision, as another version's migration would."""

    async def run(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"),
                               {"r": revision})

    _db(url, run)


def _tables(url: str) -> set[str]:
    async def run(engine: Any) -> set[str]:
        async with engine.connect() as conn:
            names: list[str] = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        return set(names)

    result: set[str] = _db(url, run)
    return result


def _refusal(result: Any) -> str:
    """The one-line error of a refused command."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sealdrop-relay: error: ")
    return lines[0]


@pytest.fixture
def proc(tmp_path: Path, db_url: str) -> Any:
    p = RelayProcess(tmp_path / "data", db_url, tmp_path / "relay.log")
    p.cli("init")
    yield p
    p.stop()


COMMANDS: list[tuple[str, ...]] = [
    ("serve", "--host", "127.0.0.1", "--port", "0"),
    ("gc",),
    ("verify",),
    ("invite", "create"),
    ("account", "list"),
    ("init",),
]


def test_a_newer_schema_is_refused_by_every_command_and_left_alone(
    proc: RelayProcess, tmp_path: Path
) -> None:
    url = _url(proc.db_url, proc.data_dir)
    _stamp(url, NEWER)
    for args in [*COMMANDS, ("backup", "--to", str(tmp_path / "bk"))]:
        line = _refusal(proc.cli(*args, check=False))
        assert f"revision {NEWER}, which this relay does not know" in line, (args, line)
        assert f"db downgrade {schema.head()}" in line
    # `db upgrade` of this older code cannot go anywhere from an unknown revision.
    line = _refusal(proc.cli("db", "upgrade", check=False))
    assert "does not know" in line
    assert _revision(url) == NEWER
    assert not (tmp_path / "bk").exists()
    current = proc.cli("db", "current", "--json", check=False)
    assert current.returncode == 1
    assert json.loads(current.stdout) == {
        "current": NEWER, "head": schema.head(), "state": "mismatch"}


def test_an_older_schema_is_refused_until_db_upgrade(proc: RelayProcess) -> None:
    url = _url(proc.db_url, proc.data_dir)
    down = proc.cli("db", "downgrade", OLDEST)
    assert down.stdout.strip() == f"schema downgraded from {schema.head()} to {OLDEST}"
    assert _revision(url) == OLDEST
    assert "blocks" not in _tables(url)
    for args in COMMANDS:
        line = _refusal(proc.cli(*args, check=False))
        assert f"revision {OLDEST}, older than this relay's {schema.head()}" in line, args
        assert "run `sealdrop-relay db upgrade`" in line
    # Nothing above migrated, not even `init` or `serve`.
    assert _revision(url) == OLDEST
    assert "blocks" not in _tables(url)
    up = proc.cli("db", "upgrade")
    assert up.stdout.strip() == f"schema upgraded from {OLDEST} to {schema.head()}"
    assert _revision(url) == schema.head()
    assert "blocks" in _tables(url)
    assert proc.cli("db", "upgrade").stdout.strip() == f"schema already at {schema.head()}"
    assert json.loads(proc.cli("db", "current", "--json").stdout)["state"] == "current"
    # The rollback dropped the relay id with its table (migration 0003), so
    # serve names the half-bound pair, and `init` binds it again after
    # checking that the database holds the rows of the blobs.
    assert "fresh or foreign database" in _refusal(proc.cli("gc", check=False))
    proc.cli("init")
    proc.start()  # serves now


def test_db_downgrade_refuses_what_it_cannot_do(proc: RelayProcess) -> None:
    line = _refusal(proc.cli("db", "downgrade", "nonsense", check=False))
    assert "unknown revision 'nonsense'" in line and OLDEST in line
    proc.cli("db", "downgrade", OLDEST)
    line = _refusal(proc.cli("db", "downgrade", schema.head(), check=False))
    assert f"older than {schema.head()}" in line and "db upgrade" in line
    assert _revision(_url(proc.db_url, proc.data_dir)) == OLDEST


def test_an_empty_database_is_refused_with_a_hint_not_created(
    tmp_path: Path, db_url: str
) -> None:
    """Only `init` creates a schema: `serve` on the wrong (empty) database says so."""
    p = RelayProcess(tmp_path / "data", db_url, tmp_path / "relay.log")
    (tmp_path / "data").mkdir()
    for args in (("serve", "--host", "127.0.0.1", "--port", "0"), ("gc",)):
        line = _refusal(p.cli(*args, check=False))
        assert "holds no relay schema" in line and "database_url" in line
    assert _revision(_url(db_url, tmp_path / "data")) is None


def test_the_relay_app_refuses_to_start_on_an_unknown_schema(
    tmp_path: Path, db_url: str
) -> None:
    cfg = make_config(tmp_path / "data", db_url)
    with pytest.raises(schema.SchemaMismatch, match="holds no relay schema"):
        start_relay_thread(cfg, migrate=False)
    _db(cfg.db_url, schema.upgrade)
    _stamp(cfg.db_url, NEWER)
    with pytest.raises(schema.SchemaMismatch, match=f"revision {NEWER}"):
        start_relay_thread(cfg, migrate=False)
    assert _revision(cfg.db_url) == NEWER


def test_readyz_refuses_a_schema_changed_under_a_running_relay(relay: RunningRelay) -> None:
    status, _, body = relay.raw("GET", "/readyz")
    assert status == 200, body
    _stamp(relay.config.db_url, NEWER)
    status, _, body = relay.raw("GET", "/readyz")
    assert status == 503
    assert json.loads(body) == {
        "error": "relay not ready", "code": "not_ready", "failing": ["schema"]}
    _stamp(relay.config.db_url, schema.head())
    assert relay.raw("GET", "/readyz")[0] == 200


def test_judge_names_each_case() -> None:
    schema.judge(schema.head())
    for rev, words in ((None, "no relay schema"), (OLDEST, "db upgrade"),
                       (NEWER, "does not know")):
        if rev == schema.head():
            continue
        with pytest.raises(schema.SchemaMismatch, match=words) as info:
            schema.judge(rev)
        assert info.value.current == rev and info.value.head == schema.head()
    assert schema.known_revisions()[0] == OLDEST
    assert schema.known_revisions()[-1] == schema.head()


def test_readyz_names_the_database_when_it_goes_between_its_two_reads(
    relay: RunningRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database answers the ping, then is gone for the schema read (a
    restart at that moment, which tests/e2e/test_pg_restart.py's polls of
    /readyz may hit): /readyz says `database`, not `schema`. A stand-in for
    the second read, which no real outage can be timed to hit."""
    from sealdrop.server.errors import StoreUnavailable

    async def gone() -> str | None:
        raise StoreUnavailable("the relay's database is unreachable")

    monkeypatch.setattr(relay.relay.store, "schema_revision", gone)
    status, _, body = relay.raw("GET", "/readyz")
    assert status == 503
    assert json.loads(body)["failing"] == ["database"]
