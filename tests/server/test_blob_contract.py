"""The BlobStore contract, case for case over both stores: LocalBlobStore and
S3BlobStore on a real SeaweedFS (tests/s3kit.py). Where S3 cannot do what a
file does (read a part back, cut a part off), the case says so and checks
what S3 does instead."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sealdrop.crypto import chunkhash
from sealdrop.crypto.protocol import ErrorCode
from sealdrop.server.blobs import BlobStore, LocalBlobStore
from sealdrop.server.errors import ConfigError, InvalidInput, StoreUnavailable
from sealdrop.server.s3blobs import S3BlobStore
from sealdrop.server.s3url import parse
from tests.s3kit import Seaweed, s3_bucket, seaweed  # noqa: F401 - fixtures

MiB = 1024 * 1024
KEY = "0123456789abcdef0123456789abcdef"


def tag(data: bytes, algorithm: str = "blake3") -> str:
    h = chunkhash.new(algorithm)
    h.update(data)
    return chunkhash.tag(algorithm, h.hexdigest())


async def pieces(data: bytes, n: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i:i + n]


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    s: BlobStore
    if request.param == "local":
        s = LocalBlobStore(tmp_path / "blobs")
    else:
        seaweed_server: Seaweed = request.getfixturevalue("seaweed")
        bucket = request.getfixturevalue("s3_bucket")
        s = S3BlobStore(parse(f"s3://{bucket}/relay1", endpoint=seaweed_server.endpoint))
    await s.open()
    await s.prepare()
    try:
        yield s
    finally:
        await s.close()


# Chunks of at least S3's smallest part, except the last: the relay's policy.
A, B, C = os.urandom(5 * MiB), os.urandom(5 * MiB + 17), os.urandom(1000)


async def write(s: BlobStore, offset: int, data: bytes, digest: str | None = None) -> None:
    await s.write_chunk(KEY, offset, pieces(data), length=len(data),
                        digest=digest or tag(data))


async def test_write_resume_finalize_read(store: BlobStore) -> None:
    await write(store, 0, A)
    # another store object (another relay process) resumes the same upload
    assert (await store.check_chunks(KEY, [(len(A), tag(A))], complete=False)) == (1, len(A))
    await write(store, len(A), B)
    await write(store, len(A) + len(B), C, tag(C, "sha256"))
    size = len(A) + len(B) + len(C)
    chunks = [(len(A), tag(A)), (len(A) + len(B), tag(B)), (size, tag(C, "sha256"))]
    assert await store.check_chunks(KEY, chunks, complete=False) == (3, size)
    assert [(b.key, b.complete, b.size) for b in await store.list()] == [(KEY, False, size)]
    assert await store.truncate_partial(KEY, size) == size
    await store.finalize(KEY, size)
    assert await store.check_chunks(KEY, chunks, complete=True) == (3, size)
    assert await store.check_chunks(KEY, [], complete=False) == (0, None)
    assert [(b.key, b.complete, b.size) for b in await store.list()] == [(KEY, True, size)]
    whole = A + B + C
    # ranged reads, across part boundaries and at the very end
    for start, end in ((0, size), (5 * MiB - 3, 5 * MiB + 5), (size - 10, size), (7, 8)):
        got = b"".join([b async for b in store.read(KEY, start, end)])
        assert got == whole[start:end]
    f = await store.open_file(KEY, size)
    if isinstance(store, S3BlobStore):
        assert f is None  # no local file: the relay serves `read`
    else:
        assert f is not None
        f.close()


async def test_a_second_store_object_resumes(store: BlobStore, tmp_path: Path) -> None:
    """What one relay process wrote, another one (a new store object) continues."""
    await write(store, 0, A)
    other: BlobStore
    if isinstance(store, S3BlobStore):
        other = S3BlobStore(store.location)
    else:
        other = LocalBlobStore(tmp_path / "blobs")
    await other.open()
    try:
        await write(other, len(A), C)
        await other.finalize(KEY, len(A) + len(C))
    finally:
        await other.close()
    got = b"".join([b async for b in store.read(KEY, 0, len(A) + len(C))])
    assert got == A + C


async def test_hash_mismatch_keeps_nothing(store: BlobStore) -> None:
    await write(store, 0, A)
    with pytest.raises(InvalidInput) as e:
        await write(store, len(A), B, tag(C))
    assert e.value.code == ErrorCode.CHECKSUM_MISMATCH
    # the partial blob is exactly as before: no part a finalize could include
    assert await store.check_chunks(KEY, [(len(A), tag(A))], complete=False) == (1, len(A))
    # the length server.transfers.complete checks before it finalises
    assert await store.truncate_partial(KEY, len(A) + len(B)) == len(A)
    if isinstance(store, S3BlobStore):  # and S3 refuses to finalise it anyway
        with pytest.raises(StoreUnavailable):
            await store.finalize(KEY, len(A) + len(B))
    await write(store, len(A), B)
    await store.finalize(KEY, len(A) + len(B))
    got = b"".join([b async for b in store.read(KEY, 0, len(A) + len(B))])
    assert hashlib.sha256(got).digest() == hashlib.sha256(A + B).digest()


async def test_mismatch_on_the_first_chunk_keeps_nothing(store: BlobStore) -> None:
    with pytest.raises(InvalidInput) as e:
        await write(store, 0, A, tag(B))
    assert e.value.code == ErrorCode.CHECKSUM_MISMATCH
    good, size = await store.check_chunks(KEY, [(len(A), tag(A))], complete=False)
    assert good == 0 and (size or 0) == 0


async def test_body_shorter_or_longer_than_declared(store: BlobStore) -> None:
    await write(store, 0, A)
    with pytest.raises(InvalidInput) as e:
        await store.write_chunk(KEY, len(A), pieces(B[:-1]), length=len(B), digest=tag(B))
    assert e.value.code == ErrorCode.INCOMPLETE_CHUNK
    with pytest.raises(InvalidInput) as e:
        await store.write_chunk(KEY, len(A), pieces(B + b"x"), length=len(B), digest=tag(B))
    assert e.value.code == ErrorCode.BAD_LENGTH
    assert await store.check_chunks(KEY, [], complete=False) == (0, len(A))


async def test_client_gone_mid_chunk(store: BlobStore) -> None:
    async def dies() -> AsyncIterator[bytes]:
        yield B[: 3 * MiB]
        raise ConnectionResetError("client gone")

    await write(store, 0, A)
    with pytest.raises(ConnectionResetError):
        await store.write_chunk(KEY, len(A), dies(), length=len(B), digest=tag(B))
    assert await store.check_chunks(KEY, [], complete=False) == (0, len(A))


async def test_check_chunks_finds_a_wrong_record(store: BlobStore) -> None:
    await write(store, 0, A)
    await write(store, len(A), C)
    size = len(A) + len(C)
    # a record whose end the blob does not have
    assert (await store.check_chunks(KEY, [(len(A), tag(A)), (size + 1, tag(C))],
                                     complete=False))[0] == 1
    await store.finalize(KEY, size)
    # a complete blob is re-hashed: a wrong hash is found
    assert await store.check_chunks(KEY, [(len(A), tag(A)), (size, tag(B))],
                                    complete=True) == (1, size)
    assert await store.check_chunks(KEY, [(len(A), tag(B))], complete=True) == (0, size)


async def test_rollback_then_resend(store: BlobStore) -> None:
    """A rolled-back offset: the chunk after it is sent again and replaces what
    was there; finalize takes exactly the committed size."""
    await write(store, 0, A)
    await write(store, len(A), B)
    after = await store.truncate_partial(KEY, len(A))
    if isinstance(store, S3BlobStore):
        assert after == len(A) + len(B)  # S3 cannot cut a part: it says so
    else:
        assert after == len(A)
    await write(store, len(A), B)
    await write(store, len(A) + len(B), C)
    size = len(A) + len(B) + len(C)
    await store.finalize(KEY, size)
    got = b"".join([b async for b in store.read(KEY, 0, size)])
    assert got == A + B + C


async def test_write_past_the_partial_blob_is_refused(store: BlobStore) -> None:
    if isinstance(store, LocalBlobStore):
        pytest.skip("a file takes a write past its end (server.transfers never asks)")
    await write(store, 0, A)
    with pytest.raises(StoreUnavailable):
        await write(store, len(A) + 1, C)
    with pytest.raises(StoreUnavailable):
        await write(store, 5, C)  # S3: no upload for a key that has none at offset > 0
    assert await store.check_chunks(KEY, [], complete=False) == (0, len(A))


async def test_delete_and_discard_partial(store: BlobStore) -> None:
    await write(store, 0, A)
    await store.discard_partial(KEY)
    assert await store.list() == []
    await write(store, 0, C)
    await store.finalize(KEY, len(C))
    await write(store, 0, A)  # a stale partial beside the complete blob
    assert sorted((b.complete, b.size) for b in await store.list()) == [
        (False, len(A)), (True, len(C))]
    await store.discard_partial(KEY)
    assert [(b.complete, b.size) for b in await store.list()] == [(True, len(C))]
    await store.delete(KEY)
    await store.delete(KEY)  # absent is fine
    assert await store.list() == []
    with pytest.raises(StoreUnavailable):
        [b async for b in store.read(KEY, 0, 1)]
    assert await store.check_chunks(KEY, [], complete=True) == (0, None)


async def test_backup_blob(store: BlobStore, tmp_path: Path) -> None:
    dest = tmp_path / "backup" / "blobs"
    await write(store, 0, C)
    await store.finalize(KEY, len(C))
    assert await store.backup_blob(KEY, dest, complete=True, length=len(C))
    copy = LocalBlobStore(dest)
    assert copy.complete_path(KEY).read_bytes() == C
    # finalised after the snapshot: the committed prefix becomes the partial copy
    assert await store.backup_blob(KEY, dest, complete=False, length=100)
    assert copy.partial_path(KEY).read_bytes() == C[:100]
    await store.delete(KEY)
    assert not await store.backup_blob(KEY, dest / "x", complete=True, length=len(C))


async def test_relay_id_marker(store: BlobStore) -> None:
    assert await store.read_relay_id() is None
    await store.write_relay_id("ab" * 16)
    assert await store.read_relay_id() == "ab" * 16
    with pytest.raises(ValueError):
        await store.write_relay_id("not an id")


async def test_a_damaged_marker_is_refused(store: BlobStore, seaweed: Seaweed) -> None:  # noqa: F811
    if isinstance(store, S3BlobStore):
        seaweed.client().put_object(Bucket=store.bucket, Key="relay1/relay-id", Body=b"junk\n")
    else:
        assert isinstance(store, LocalBlobStore)
        store.marker_path.write_text("junk\n")
    with pytest.raises(ConfigError, match="does not hold a relay id"):
        await store.read_relay_id()


async def test_min_chunk_bytes(store: BlobStore) -> None:
    assert store.min_chunk_bytes == (5 * MiB if isinstance(store, S3BlobStore) else 1)


async def test_ready(store: BlobStore) -> None:
    await store.ready()
