"""A blob store and its database are bound by a relay id: no configuration
mistake lets serve, gc, backup or verify act on the wrong database.

The proof of issue 13's first bullet: a data folder holding real transfers,
pointed at a fresh, empty database (SQLite and PostgreSQL), is refused by every
command with a sentence; every blob survives; once the right configuration is
back the transfers download and verify.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop.client.relay_api import RelayClient
from sealdrop.server.blobs import WRITE_LOCKS_FILE

from .relaykit import (
    PG_URL,
    Identity,
    RelayProcess,
    fresh_database,
    invite_via_cli,
    make_identity,
    upload_blob,
)

MiB = 1024 * 1024
DB_KINDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def blob_files(data: Path) -> dict[str, str]:
    """Every file under the blob folder, with its SHA-256: what must survive.
    Not the write-locks file, which holds no data (a PostgreSQL relay makes it
    on its first chunk; server.writelocks)."""
    root = data / "blobs"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() and p.name != WRITE_LOCKS_FILE
    }


class Sent:
    def __init__(self, proc: RelayProcess) -> None:
        self.proc = proc
        self.a: Identity = make_identity("alice")
        self.b: Identity = make_identity("bob-lab")
        self.blobs: dict[str, bytes] = {}
        self.partial = ""

    def clients(self, proc: RelayProcess | None = None) -> tuple[RelayClient, RelayClient]:
        url = (proc or self.proc).base_url
        return (RelayClient(url, handle="alice", signing_key=self.a.signing_key),
                RelayClient(url, handle="bob-lab", signing_key=self.b.signing_key))


def populate(proc: RelayProcess) -> Sent:
    """A relay with two complete transfers and one upload in progress."""
    sent = Sent(proc)
    proc.cli("init")
    proc.start()
    try:
        alice, bob = sent.clients()
        alice.register(invite_via_cli(proc), sent.a.bundle)
        bob.register(invite_via_cli(proc), sent.b.bundle)
        for size in (MiB + 7, 3000):
            blob = os.urandom(size)
            tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
            upload_blob(alice, tid, blob, chunk_size=MiB // 2)
            alice.complete(tid)
            sent.blobs[tid] = blob
        sent.partial = alice.create_transfer(["bob-lab"], 4000)["id"]
        alice.upload_chunk(sent.partial, 0, os.urandom(1000))
    finally:
        proc.stop()
    return sent


def assert_downloads(sent: Sent, proc: RelayProcess) -> None:
    proc.start()
    try:
        alice, bob = sent.clients(proc)
        assert sorted(t["id"] for t in bob.inbox()) == sorted(sent.blobs)
        for tid, blob in sent.blobs.items():
            got = io.BytesIO()
            bob.download(tid, got)
            assert got.getvalue() == blob
        assert alice.upload_offset(sent.partial) == 1000
    finally:
        proc.stop()


def refused(proc: RelayProcess, *args: str) -> str:
    r = proc.cli(*args, check=False)
    assert r.returncode == 1, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("sealdrop-relay: error: "), r.stderr
    return line


def refused_serve(proc: RelayProcess) -> str:
    with pytest.raises(RuntimeError) as e:
        proc.start()
    proc.stop()
    assert proc.proc is not None and proc.proc.returncode == 1
    return str(e.value)


@pytest.fixture(params=DB_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def other_db(kind: str, tmp_path: Path) -> Iterator[str]:
    """A second brand-new, empty database of the same kind: the wrong one."""
    if kind == "sqlite":
        (tmp_path / "elsewhere").mkdir()
        yield f"sqlite:///{tmp_path / 'elsewhere' / 'relay.db'}"
        return
    yield from fresh_database(kind, tmp_path / "elsewhere")


@pytest.fixture
def right_db(kind: str, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database(kind, tmp_path / "data")


def test_a_data_folder_pointed_at_an_empty_database_is_refused_by_every_command(
    tmp_path: Path, right_db: str, other_db: str
) -> None:
    data = tmp_path / "data"
    sent = populate(RelayProcess(data, right_db, tmp_path / "relay.log"))
    before = blob_files(data)
    assert len(before) == 4  # the marker, two complete blobs, one partial

    # The database URL lost (the gc unit did not read it), or a fresh database
    # named by mistake: both look like an empty relay full of orphan blobs.
    wrongs = [other_db] + ([""] if right_db else [])
    for wrong in wrongs:
        proc = RelayProcess(data, wrong, tmp_path / "wrong.log")
        for args in (("gc",), ("gc", "--force"), ("backup", "--to", str(tmp_path / "bk")),
                     ("verify", "--repair"), ("init",), ("invite", "create")):
            line = refused(proc, *args)
            assert "not this relay's database" in line or "fresh or foreign database" in line
            assert "nothing was changed" in line
        assert "fresh or foreign database" in refused_serve(proc)
        assert blob_files(data) == before
        assert not (tmp_path / "bk").exists() or not any((tmp_path / "bk").iterdir())
    if right_db and (data / "relay.db").exists():
        # The SQLite fallback the wrong commands opened got no schema, let alone
        # a relay id: they refused before writing anything.
        con = sqlite3.connect(data / "relay.db")
        try:
            assert con.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'relay_meta'"
            ).fetchone() == (0,)
        finally:
            con.close()

    # The right configuration is back: everything is there, downloads and verifies.
    proc = RelayProcess(data, right_db, tmp_path / "relay.log")
    assert json.loads(proc.cli("verify", "--json").stdout)["ok"]
    assert json.loads(proc.cli("gc", "--json").stdout)["orphan_blobs_deleted"] == 0
    assert blob_files(data) == before
    assert_downloads(sent, proc)


def test_two_bound_relays_are_never_mixed(tmp_path: Path, kind: str) -> None:
    """Relay A's data folder with relay B's database: both ids exist and differ."""
    gen_a = fresh_database(kind, tmp_path / "a")
    gen_b = fresh_database(kind, tmp_path / "b")
    db_a, db_b = next(gen_a), next(gen_b)
    try:
        a = RelayProcess(tmp_path / "a", db_a, tmp_path / "a.log")
        populate(a)
        b = RelayProcess(tmp_path / "b", db_b, tmp_path / "b.log")
        b.cli("init")
        before = blob_files(tmp_path / "a")
        # SQLite's default database lives in the data folder: name B's file.
        wrong = db_b or f"sqlite:///{tmp_path / 'b' / 'relay.db'}"
        mixed = RelayProcess(tmp_path / "a", wrong, tmp_path / "mixed.log")
        line = refused(mixed, "gc")
        assert "two different relays" in line
        assert "two different relays" in refused(mixed, "init")
        assert "two different relays" in refused_serve(mixed)
        assert blob_files(tmp_path / "a") == before
    finally:
        for gen in (gen_a, gen_b):
            gen.close()


def _unbind(data: Path, db_url: str) -> None:
    """Make a bound relay look like one from before the binding existed (and
    so from before the transparency log's key: relay_meta goes whole)."""
    (data / "blobs" / "relay-id").unlink()
    (data / "log-key").unlink()
    if not db_url:
        con = sqlite3.connect(data / "relay.db")
        try:
            con.execute("DELETE FROM relay_meta")
            con.commit()
        finally:
            con.close()
        return
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("DELETE FROM relay_meta")
        finally:
            await conn.close()

    asyncio.run(run())


def test_an_existing_install_is_adopted_by_init_only(tmp_path: Path, right_db: str,
                                                     other_db: str) -> None:
    data = tmp_path / "data"
    sent = populate(RelayProcess(data, right_db, tmp_path / "relay.log"))
    _unbind(data, right_db)
    before = blob_files(data)
    proc = RelayProcess(data, right_db, tmp_path / "relay.log")
    # Never silently: serve and gc say what to do.
    assert "sealdrop-relay init" in refused(proc, "gc")
    assert "sealdrop-relay init" in refused_serve(proc)
    # init does not adopt a database that lacks the blobs' transfers.
    wrong = RelayProcess(data, other_db, tmp_path / "wrong.log")
    assert "holds none of their transfers" in refused(wrong, "init")
    assert blob_files(data) == before
    assert not (data / "blobs" / "relay-id").exists()
    # The right database holds every blob's row: init binds both sides.
    out = proc.cli("init").stdout
    rid = (data / "blobs" / "relay-id").read_text().strip()
    assert rid in out and len(rid) == 32
    assert "two different relays" not in proc.cli("gc", check=False).stderr
    assert_downloads(sent, proc)


def test_a_new_relay_binds_itself_and_a_damaged_marker_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    proc = RelayProcess(data, "", tmp_path / "relay.log")
    proc.cli("init")  # a brand-new relay is bound by init (serve never creates a schema)
    proc.start()
    proc.stop()
    marker = data / "blobs" / "relay-id"
    rid = marker.read_text().strip()
    con = sqlite3.connect(data / "relay.db")
    try:
        assert con.execute("SELECT value FROM relay_meta WHERE key='relay_id'").fetchone() \
            == (rid,)
    finally:
        con.close()
    marker.write_text("not an id\n")
    assert "does not hold a relay id" in refused(proc, "gc")


def test_backup_carries_the_binding_and_the_copy_serves(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sent = populate(RelayProcess(data, "", tmp_path / "relay.log"))
    proc = RelayProcess(data, "", tmp_path / "relay.log")
    proc.cli("backup", "--to", str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "blobs" / "relay-id").read_text() == \
        (data / "blobs" / "relay-id").read_text()
    assert_downloads(sent, RelayProcess(tmp_path / "copy", "", tmp_path / "copy.log"))
