"""The relay on the S3 blob store (real SeaweedFS, tests/s3kit.py), on SQLite and,
with SEALDROP_TEST_PG_URL, PostgreSQL: the part-size policy, a tampered
chunk, ranged downloads, the S3 server stopped mid-upload, verify and gc."""

from __future__ import annotations

import io
import json
import os

import pytest

from sealdrop.client.relay_api import RelayError
from sealdrop.crypto import chunkhash
from sealdrop.server import ops
from sealdrop.server.s3blobs import S3BlobStore
from sealdrop.server.s3url import parse
from tests.s3kit import Seaweed, s3_bucket, seaweed  # noqa: F401 - fixtures

from .relaykit import RunningRelay, upload_blob

MiB = 1024 * 1024
PART = 5 * MiB


@pytest.fixture
def s3_relay(relay_factory, seaweed: Seaweed, s3_bucket: str) -> RunningRelay:  # noqa: F811
    store = S3BlobStore(parse(f"s3://{s3_bucket}/r", endpoint=seaweed.endpoint))
    return relay_factory(blobs=store)  # type: ignore[no-any-return]


def _verify(relay: RunningRelay) -> ops.VerifyReport:
    return relay.run(ops.verify(relay.relay.store, relay.relay.blobs, repair=False))  # type: ignore[no-any-return]


def test_info_says_the_smallest_chunk_and_small_chunks_are_refused(
    s3_relay: RunningRelay,
) -> None:
    status, _, body = s3_relay.raw("GET", "/v1/info")
    assert status == 200 and json.loads(body)["min_chunk_bytes"] == PART
    alice, _ = s3_relay.user("alice")
    s3_relay.user("bob")
    assert alice.upload_bounds() == (s3_relay.config.max_chunk_bytes, PART, "blake3")
    blob = os.urandom(PART + 1000)
    t = alice.create_transfer(["bob"], len(blob))
    with pytest.raises(RelayError) as e:
        alice.upload_chunk(t["id"], 0, blob[:MiB])
    assert e.value.status == 400 and e.value.code == "chunk_too_small"
    assert "5242880" in str(e.value)
    # a transfer's last chunk may be small; one chunk for a small transfer too
    upload_blob(alice, t["id"], blob, chunk_size=PART)
    alice.complete(t["id"])
    small = alice.create_transfer(["bob"], 10)
    upload_blob(alice, small["id"], b"0123456789")
    assert alice.complete(small["id"])["state"] == "complete"


def test_tampered_chunk_then_send_download_verify(
    s3_relay: RunningRelay, seaweed: Seaweed, s3_bucket: str,  # noqa: F811
) -> None:
    alice, _ = s3_relay.user("alice")
    bob, _ = s3_relay.user("bob")
    blob = os.urandom(2 * PART + 12345)
    t = alice.create_transfer(["bob"], len(blob))
    upload_blob(alice, t["id"], blob[:PART], chunk_size=PART)
    # the body is not what its hash header says: refused, nothing kept
    digest = chunkhash.hex_digest("blake3", blob[PART:2 * PART])
    tampered = bytearray(blob[PART:2 * PART])
    tampered[4096] ^= 1
    with pytest.raises(RelayError) as e:
        alice.upload_chunk(t["id"], PART, tampered, hex_digest=digest, algorithm="blake3")
    assert e.value.status == 400 and e.value.code == "checksum_mismatch"
    assert alice.upload_offset(t["id"]) == PART
    upload_blob(alice, t["id"], blob, chunk_size=PART, algorithm="blake3")
    done = alice.complete(t["id"])
    assert done["state"] == "complete"
    # one object, no multipart upload left behind
    assert seaweed.objects(s3_bucket) == ["r/blobs/" + t["id"], "r/relay-id"]
    assert seaweed.uploads(s3_bucket) == []
    out = io.BytesIO()
    assert bob.download(t["id"], out) == len(blob)
    assert out.getvalue() == blob
    # a ranged download, served from S3
    status, headers, body = s3_relay.raw(
        "GET", f"/v1/transfers/{t['id']}/data",
        headers={"Range": f"bytes={PART - 5}-{PART + 4}"}, sign=s3_relay.identities["bob"])
    assert status == 206 and body == blob[PART - 5:PART + 5]
    report = _verify(s3_relay)
    assert report.ok and report.checked == 1
    # a blob changed behind the relay's back is found
    seaweed.client().put_object(Bucket=s3_bucket, Key="r/blobs/" + t["id"], Body=blob[::-1])
    assert _verify(s3_relay).tampered == [t["id"]]


def test_s3_stopped_mid_upload_answers_503_then_resumes(
    s3_relay: RunningRelay, seaweed: Seaweed, s3_bucket: str,  # noqa: F811
) -> None:
    alice, _ = s3_relay.user("alice")
    s3_relay.user("bob")
    blob = os.urandom(2 * PART + 7)
    t = alice.create_transfer(["bob"], len(blob))
    upload_blob(alice, t["id"], blob[:PART], chunk_size=PART)
    seaweed.kill()
    try:
        status, _, body = s3_relay.raw("GET", "/readyz")
        assert status == 503
        with pytest.raises(RelayError) as e:
            alice.upload_chunk(t["id"], PART, blob[PART:2 * PART])
        assert e.value.status == 503 and e.value.code == "store_unavailable"
        assert "Traceback" not in str(e.value) and "object store" in str(e.value)
        assert alice.upload_offset(t["id"]) == PART  # nothing committed
    finally:
        seaweed.start()
    upload_blob(alice, t["id"], blob, chunk_size=PART)
    assert alice.complete(t["id"])["state"] == "complete"
    assert seaweed.uploads(s3_bucket) == []
    assert seaweed.objects(s3_bucket) == ["r/blobs/" + t["id"], "r/relay-id"]
    assert _verify(s3_relay).ok


def test_gc_aborts_abandoned_and_orphan_uploads(
    s3_relay: RunningRelay, seaweed: Seaweed, s3_bucket: str,  # noqa: F811
) -> None:
    alice, _ = s3_relay.user("alice")
    s3_relay.user("bob")
    blob = os.urandom(PART + 1)
    abandoned = alice.create_transfer(["bob"], len(blob))
    upload_blob(alice, abandoned["id"], blob[:PART], chunk_size=PART)
    # an upload no row names (its row deleted by a crash between the two deletes)
    orphan = "f" * 32
    s3 = seaweed.client()
    up = s3.create_multipart_upload(Bucket=s3_bucket, Key="r/blobs/" + orphan)
    s3.upload_part(Bucket=s3_bucket, Key="r/blobs/" + orphan, UploadId=up["UploadId"],
                   PartNumber=1, Body=b"x" * 100)
    assert seaweed.uploads(s3_bucket) == sorted(
        "r/blobs/" + k for k in (abandoned["id"], orphan))
    relay = s3_relay.relay
    report = s3_relay.run(ops.gc(relay.store, relay.blobs, relay.config, now=relay.now()))
    assert report.orphan_blobs == 1 and report.deleted == []
    assert seaweed.uploads(s3_bucket) == ["r/blobs/" + abandoned["id"]]
    # no chunk for longer than abandoned_upload_seconds: the upload is aborted
    s3_relay.clock.advance(relay.config.abandoned_upload_seconds + 10)
    report = s3_relay.run(ops.gc(relay.store, relay.blobs, relay.config, now=relay.now()))
    assert report.deleted == [abandoned["id"]]
    assert seaweed.uploads(s3_bucket) == [] and seaweed.objects(s3_bucket) == ["r/relay-id"]
    assert _verify(s3_relay).ok
