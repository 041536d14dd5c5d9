"""The restore drill of a PostgreSQL + S3 relay, as issue 14 words it, on a real
relay process, real PostgreSQL (SEALDROP_TEST_PG_URL), real SeaweedFS with
bucket versioning and the real `sealdrop` client: transfers of several chunks,
one upload killed midway, `sealdrop-relay backup`, then one transfer expired
and gc'd and one retracted; the database dropped and every object deleted;
`sealdrop-relay restore`, `verify`, and every transfer complete at the backup
downloads byte-identical. Then the bad paths on the same relay: a second
restore refused (the database is not empty), a drill over the live prefix
refused, and the drill script (deploy/restore-drill) with a blob's versions
gone: it names that transfer, writes nothing live and cleans up after itself;
and, first, `backup` refusing the bucket before its versioning is on."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop.server import pgrestore
from sealdrop.server.config import load_config
from sealdrop.server.errors import ConfigError
from tests.e2e.kit import RELAY, Relay, User, make_case, tree, wait_for
from tests.s3kit import Seaweed, s3_bucket, seaweed  # noqa: F401
from tests.server.relaykit import PG_URL, fresh_database

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs SEALDROP_TEST_PG_URL")

MiB = 1024 * 1024
PART = 5 * MiB
DRILL_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "restore-drill"


def _sql(url: str, *queries: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            for q in queries:
                await conn.execute(q)
        finally:
            await conn.close()

    asyncio.run(run())


def _tables(url: str) -> int:
    import asyncpg

    async def run() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        finally:
            await conn.close()

    return asyncio.run(run())


def _setup(data: Path, bucket: str, endpoint: str, db_url: str, prefix: str = "relay") -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / "relay.toml").write_text(
        f'blobs = "s3://{bucket}/{prefix}"\ns3_endpoint = "{endpoint}"\n'
        f'database_url = "{db_url}"\n')


def _cmd(env: dict[str, str], data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RELAY, *args, "--data", str(data)], env=env, capture_output=True,
                          text=True, timeout=300)


def _wipe_bucket(seaweed: Seaweed, bucket: str) -> None:  # noqa: F811
    """A lost bucket's current state: every object deleted (delete markers on a
    versioned bucket) and every multipart upload aborted."""
    c = seaweed.client()
    for key in seaweed.objects(bucket):
        c.delete_object(Bucket=bucket, Key=key)
    for u in c.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        c.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[list[str]]:
    """Two fresh PostgreSQL databases: the relay's and a drill's."""
    gens = [fresh_database("postgresql", tmp_path) for _ in range(2)]
    urls = [next(g) for g in gens]
    try:
        yield urls
    finally:
        for g in gens:
            next(g, None)


def _invites(db_url: str, n: int) -> list[str]:
    """Invites made in this process: a `sealdrop-relay invite create` each
    would start a Python process for every user."""
    from sealdrop.server.accounts import create_invite
    from sealdrop.server.config import async_url
    from sealdrop.server.db import make_engine
    from sealdrop.server.metadata import SqlMetadataStore

    async def run() -> list[str]:
        engine = make_engine(async_url(db_url))
        try:
            store = SqlMetadataStore(engine)
            return [await create_invite(store, now=int(time.time()), ttl=3600)
                    for _ in range(n)]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_backup_wipe_restore_verify_and_every_transfer_downloads(
    tmp_path: Path, seaweed: Seaweed, s3_bucket: str, databases: list[str],  # noqa: F811
) -> None:
    bucket, (db_url, drill_db) = s3_bucket, databases
    data = tmp_path / "relay-data"
    _setup(data, bucket, seaweed.endpoint, db_url)
    relay = Relay(data, tmp_path / "relay.log")
    relay._invites = _invites(db_url, 2)  # noqa: SLF001 - what the kit's template does
    target = tmp_path / "backups"

    # A bucket that keeps no versions: backup refuses and writes nothing.
    refused = _cmd(relay.env, data, "backup", "--into", str(target))
    assert refused.returncode == 1
    assert "does not keep versions" in refused.stderr
    assert "no backup was written" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert list(target.iterdir()) == []  # the half-written slot is gone
    seaweed.client().put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    relay.start()
    practice, lab = User(tmp_path, "cabinet-martin", relay), User(tmp_path, "labo", relay)
    practice.init()
    lab.init()
    practice.trust(lab)
    lab.trust(practice)
    cases = {name: make_case(tmp_path / "src", marker=name, big=big)
             for name, big in (("multi", 11 * MiB), ("small", 0), ("expired", 0),
                               ("retracted", 0))}
    # Asked for 1 MiB chunks, the client fits them to S3's 5 MiB: "multi" has three.
    small = ("--chunk-size", str(MiB))
    sent = {name: practice.json("send", str(case), "--to", lab.handle, *small)["transfer_id"]
            for name, case in cases.items()}
    partial_case = make_case(tmp_path / "src", marker="partial", big=11 * MiB)
    with relay.throttled(up=4 * MiB):
        proc = practice.popen("send", str(partial_case), "--to", lab.handle, "--json", *small)
        wait_for(lambda: relay.metric("sealdrop_upload_bytes_total")
                 >= 11 * MiB + PART, 120, "a chunk of the partial upload committed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    relay.link.drop_connections()

    made = _cmd(relay.env, data, "backup", "--into", str(target))
    assert made.returncode == 0, made.stderr
    (slot,) = [p for p in target.iterdir()]
    assert sorted(p.name for p in slot.iterdir()) == ["backup.json", "log-key", "relay.dump",
                                                         "relay.toml"]
    manifest = json.loads((slot / "backup.json").read_text())
    assert manifest["transfers"] == 5 and manifest["complete"] == 4
    assert manifest["blobs"] == f"s3://{bucket}/relay"
    assert "5 transfer(s) (4 complete)" in made.stdout

    # After the backup: one transfer expires and gc deletes it, one is retracted.
    _sql(db_url.replace("+asyncpg", ""),
         f"UPDATE transfers SET expires_at = 1 WHERE id = '{sent['expired']}'")
    gc = _cmd(relay.env, data, "gc", "--json")
    assert gc.returncode == 0 and json.loads(gc.stdout)["transfers_deleted"] == 1, gc.stderr
    practice.run("retract", sent["retracted"])
    assert f"relay/blobs/{sent['expired']}" not in seaweed.objects(bucket)
    assert f"relay/blobs/{sent['retracted']}" not in seaweed.objects(bucket)

    # The disaster: the database's contents and the bucket's objects gone.
    relay.stop()
    _sql(db_url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    _wipe_bucket(seaweed, bucket)
    assert seaweed.objects(bucket) == [] and seaweed.uploads(bucket) == []

    restored = _cmd(relay.env, data, "restore", "--from", str(slot))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    out = restored.stdout
    assert "0 blob(s) already current, 4 brought back" in out
    (partial_id,) = [ln.split()[1] for ln in out.splitlines() if ln.startswith("partial: ")]
    assert "lost:" not in out and "missing:" not in out and "orphan:" not in out
    assert out.rstrip().endswith("restore ok")
    assert sorted(seaweed.objects(bucket)) == sorted(
        [f"relay/blobs/{t}" for t in sent.values()] + ["relay/relay-id"])

    # verify --repair rolls back the partial upload, and nothing else.
    repaired = _cmd(relay.env, data, "verify", "--repair", "--json")
    removed = json.loads(repaired.stdout)["removed"]
    assert [(r["transfer"], r["problem"], r["action"]) for r in removed] == [
        (partial_id, "missing", "rolled_back")]

    # Every transfer complete at the backup downloads and verifies, byte-identical.
    relay.start()
    try:
        dest = tmp_path / "in"
        dest.mkdir()
        got = lab.json("receive", "--all", "--into", str(dest), timeout=300)
        assert got["failed"] == [], got
        for name in ("multi", "small", "expired", "retracted"):
            assert tree(dest / cases[name].name) == tree(cases[name]), name
    finally:
        relay.close()

    # Bad paths on the restored relay, in this process (the command's one-line
    # error is the same path as backup's refusal above): a second restore into
    # the now full database, and a drill over the live prefix.
    cfg = load_config(data, env={})
    with pytest.raises(ConfigError, match="is not empty .* nothing was changed"):
        asyncio.run(pgrestore.restore(cfg, slot))
    with pytest.raises(ConfigError, match="never over its blobs"):
        asyncio.run(pgrestore.restore(cfg, slot, drill=True))

    # A drill beside the live relay, with one blob's versions all gone: it names
    # that transfer and its sender, restores the rest, writes nothing live, and
    # deletes its own copies.
    c = seaweed.client()
    gone = sent["small"]
    for v in c.list_object_versions(Bucket=bucket, Prefix=f"relay/blobs/{gone}")["Versions"]:
        c.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    live = seaweed.objects(bucket)
    ran = subprocess.run(
        [str(DRILL_SCRIPT), str(target)], capture_output=True, text=True, timeout=300,
        env={**relay.env, "SEALDROP_RELAY_BIN": RELAY, "SEALDROP_DRILL_DATABASE_URL": drill_db,
             "TMPDIR": str(tmp_path)})
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert f"missing: {gone} sender=cabinet-martin: the bucket holds no version" in ran.stdout
    assert f"lost: {gone} " in ran.stdout and "3 brought back" in ran.stdout
    assert "restore incomplete: 1 complete transfer(s) lost" in ran.stdout
    assert f"into the drill database and s3://{bucket}/relay/drill-" in ran.stderr
    assert "FAILED (1)" in ran.stderr
    assert seaweed.objects(bucket) == live  # nothing of the live relay written
    left = c.list_object_versions(Bucket=bucket, Prefix="relay/drill-")
    assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []
    assert [p.name for p in tmp_path.glob("sealdrop-drill.*")] == []
    assert _tables(drill_db) == 0  # the drill's database is empty again
