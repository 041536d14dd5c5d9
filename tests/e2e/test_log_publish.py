"""``sealdrop-relay log publish``: the log as static C2SP tlog-tiles files.

A reader with only ``sealdrop.crypto.tlog`` and file reads (no relay) opens
the published checkpoint with the log's vkey, proves a user's key entry is in
it and that a later publish extends it; a second publish writes only what is
new and never touches a full tile; no checkpoint is ever written before its
tiles; and the same layout lands in a real S3 bucket (SeaweedFS).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.tlog.checkpoint import Checkpoint, open_checkpoint
from sealdrop.crypto.tlog.entries import KeyEntry, TransferEntry
from sealdrop.crypto.tlog.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.crypto.tlog.tiles import TileHashes, split_entry_bundle
from sealdrop.server import logpublish, tlog
from sealdrop.server.db import make_engine
from sealdrop.server.logkey import open_relay_log
from sealdrop.server.metadata import SqlMetadataStore
from tests.e2e.kit import RELAY, Relay, User
from tests.s3kit import AWS_ENV, Seaweed, s3_bucket, seaweed  # noqa: F401


def _publish_cli(relay: Relay, to: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run([RELAY, "log", "publish", "--data", str(relay.data), "--to", to,
                          "--json"], env={**relay.env, **(env or {})}, capture_output=True,
                         text=True, timeout=120, umask=0o077)  # the relay units' umask
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def _append_behind(relay: Relay, n: int) -> None:
    """``n`` entries through the relay's own append, as a second writer on its file."""
    engine = sa.create_engine(f"sqlite:///{relay.data / 'relay.db'}", connect_args={"timeout": 30})
    try:
        with engine.begin() as conn:
            for _ in range(n):
                tlog.append(conn, TransferEntry(os.urandom(32)).to_bytes(), now=1)
    finally:
        engine.dispose()


class Recording(logpublish.DirTarget):
    """A folder target that checks, at each checkpoint write, that every tile
    of that checkpoint's size is already in place and synced."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.written: list[str] = []
        self.unsynced = 0

    async def write(self, path: str, data: bytes, cache: str) -> None:
        if path == logpublish.CHECKPOINT:
            size = int(data.decode().split("\n")[1])
            assert self.unsynced == 0, "the checkpoint came before its tiles were synced"
            for p, *_ in logpublish.files_for_size(size):
                assert (self.root / p).is_file(), f"checkpoint {size} written before {p}"
            assert cache == "no-store"
        else:
            self.unsynced += 1
        self.written.append(path)
        await super().write(path, data, cache)

    async def sync(self) -> None:
        await super().sync()
        self.unsynced = 0


def _publish_here(relay: Relay, target: logpublish.Target) -> logpublish.PublishReport:
    async def run() -> logpublish.PublishReport:
        engine = make_engine(f"sqlite+aiosqlite:///{relay.data / 'relay.db'}")
        try:
            store = SqlMetadataStore(engine)
            log, _ = await open_relay_log(store, "", relay.data / "log-key")
            return await logpublish.publish(store, log, target)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _reader(relay: Relay) -> tuple[str, NoteVerifier]:
    (vkey,) = relay.sql("select value from relay_meta where key = 'log_vkey'")[0]
    verifier = NoteVerifier.from_vkey(vkey)
    return verifier.name, verifier


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def test_a_published_folder_proves_keys_and_grows_append_only(tmp_path: Path,
                                                                relay: Relay) -> None:
    users = [User(tmp_path, h, relay) for h in ("cabinet-a", "labo-b")]
    for u in users:
        u.init()
    out = tmp_path / "www" / "log"
    first_report = _publish_cli(relay, str(out))
    origin, verifier = _reader(relay)

    def files(root: Path) -> Callable[[str], bytes]:
        return lambda path: (root / path).read_bytes()

    def checkpoint() -> Checkpoint:
        return open_checkpoint((out / "checkpoint").read_text(), origin, [verifier])

    first = checkpoint()
    assert first.size == first_report["size"] >= 2
    # labo-b's key entry, proved from the files alone.
    bob = KeyBundle.loads((users[1].home / "bundle.json").read_text())
    entries = split_entry_bundle((out / f"tile/entries/000.p/{first.size}").read_bytes())
    i = entries.index(KeyEntry.for_bundle(bob).to_bytes())
    proof = inclusion_proof(i, first.size, TileHashes(first.size, files(out)))
    verify_inclusion(i, first.size, leaf_hash(entries[i]), proof, first.root)
    assert not list(out.rglob(".*.tmp"))
    # Readable by the web server even under the units' umask 0077: the log is public.
    assert {p.stat().st_mode & 0o777 for p in out.rglob("*")
            if p.name != logpublish.LOCK_NAME} == {0o644, 0o755}

    # Past a full tile, published again (in this process, recording the writes).
    before = _snapshot(out)
    _append_behind(relay, 300)
    rec = Recording(out)
    report = _publish_here(relay, rec)
    second = checkpoint()
    assert second.size == first.size + 300 == report.size
    assert rec.written[-1] == "checkpoint" and rec.written.count("checkpoint") == 1
    after = _snapshot(out)
    # Nothing published before changed but the checkpoint; only new files written.
    assert {p: v for p, v in after.items() if p in before and p != "checkpoint"} == {
        p: v for p, v in before.items() if p != "checkpoint"}
    assert set(rec.written) == set(after) - set(before) | {"checkpoint"}
    assert {"tile/0/000", "tile/entries/000", f"tile/0/001.p/{second.size - 256}",
            "tile/1/000.p/1"} <= set(rec.written)
    assert report.written == len(rec.written) - 1
    hashes = TileHashes(second.size, files(out))
    verify_consistency(first.size, second.size,
                       consistency_proof(first.size, second.size, hashes),
                       first.root, second.root)
    bundle = split_entry_bundle((out / "tile/entries/000").read_bytes())
    assert b"".join(leaf_hash(e) for e in bundle) == (out / "tile/0/000").read_bytes()

    # Once more with nothing new: nothing written at all.
    again = Recording(out)
    report = _publish_here(relay, again)
    assert again.written == [] and (report.written, report.checkpoint) == (0, False)
    assert _snapshot(out) == after

    # A folder holding a later checkpoint of this log (the database went back):
    # refused before anything is written.
    elsewhere = tmp_path / "ahead"
    elsewhere.mkdir()
    log_key = (relay.data / "log-key").read_text().strip()
    from sealdrop.crypto.tlog.note import NoteSigner, sign_note

    ahead = Checkpoint(origin, second.size + 1, second.root)
    (elsewhere / "checkpoint").write_text(
        sign_note(ahead.text(), [NoteSigner.from_private_key_text(log_key)]))
    with pytest.raises(logpublish.PublishError, match="restored from an older backup"):
        _publish_here(relay, logpublish.DirTarget(elsewhere))
    assert [p.name for p in elsewhere.iterdir()] == ["checkpoint"]


@pytest.fixture
def relay_data(tmp_path: Path, relay_template: tuple[Path, list[str]]) -> Iterator[Relay]:
    """A relay's data folder, never started: publishing needs only its database and key."""
    r = Relay(tmp_path / "relay-data", tmp_path / "relay.log", template=relay_template)
    try:
        yield r
    finally:
        r.close()


def test_publish_to_s3(relay_data: Relay, seaweed: Seaweed,  # noqa: F811
                       s3_bucket: str) -> None:  # noqa: F811
    relay = relay_data
    _append_behind(relay, 5)
    report = _publish_cli(relay, f"s3://{s3_bucket}/log",
                          {**AWS_ENV, "SEALDROP_LOG_PUBLISH_S3_ENDPOINT": seaweed.endpoint})
    assert report["size"] == 5 and report["checkpoint_written"] is True
    s3 = seaweed.client()

    def get(path: str) -> tuple[bytes, str]:
        obj = s3.get_object(Bucket=s3_bucket, Key="log/" + path)
        return obj["Body"].read(), obj.get("CacheControl", "")

    note, cache = get("checkpoint")
    assert cache == "no-store"
    origin, verifier = _reader(relay)
    cp = open_checkpoint(note.decode(), origin, [verifier])
    tile, cache = get("tile/0/000.p/5")
    assert cache == "public, max-age=60" and len(tile) == 5 * 32
    entries = split_entry_bundle(get("tile/entries/000.p/5")[0])
    proof = inclusion_proof(3, 5, TileHashes(5, lambda p: get(p)[0]))
    verify_inclusion(3, 5, leaf_hash(entries[3]), proof, cp.root)
